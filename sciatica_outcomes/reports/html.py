"""Render an executed notebook as one self-contained HTML page without code.

The page carries its own CSS (readable on a phone and in print), every image inline as a data URI with its alt
text, and no code cells, prompts or stderr streams. Nothing is fetched from the network when it is opened.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import nbformat
from nbconvert.filters.markdown import markdown2html_mistune

__all__ = ["REPORT_CSS", "notebook_to_html"]

REPORT_CSS = """
:root { --fg: #1b1b1b; --muted: #5a5a5a; --accent: #0072B2; --alert: #b00020; --bg: #ffffff; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       background: var(--bg); margin: 0 auto; max-width: 60rem; padding: 1rem; line-height: 1.5; }
h1 { font-size: 1.7rem; border-bottom: 3px solid var(--accent); padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.1rem; }
a.anchor-link { display: none; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .92rem; display: block; overflow-x: auto;
        max-width: 100%; }
th, td { border: 1px solid #d0d0d0; padding: .3rem .55rem; text-align: right; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
thead th { background: #eef3f8; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: .9rem; }
.headline { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .6rem; }
.headline div { border: 1px solid #d0d0d0; border-radius: .4rem; padding: .6rem; }
.headline b { display: block; font-size: 1.5rem; }
.alert { border: 3px solid var(--alert); background: #fff0f0; padding: .8rem 1rem; border-radius: .4rem; }
.alert h3 { color: var(--alert); margin-top: 0; }
.note { color: var(--muted); font-size: .9rem; }
.population { color: var(--muted); font-size: .92rem; margin-top: -.2rem; }
.dates { font-weight: 600; }
ul.summary { padding-left: 1.2rem; } ul.summary li { margin: .35rem 0; }
.flow { font-family: ui-monospace, monospace; white-space: pre; overflow-x: auto; }
@media (max-width: 40rem) { body { padding: .5rem; font-size: .95rem; } th, td { padding: .2rem .3rem; } }
figure picture { display: block; }
@page {
  size: A4; margin: 15mm 14mm 17mm;
  @bottom-center { content: "Page " counter(page) " of " counter(pages); font: 8.5pt Arial, sans-serif;
                   color: #5a5a5a; }
}
@media print {
  body { max-width: none; font-size: 10pt; padding: 0; }
  ul.summary li { margin: .15rem 0; } p { margin: .45rem 0; }
  /* a heading never ends a page: it keeps the next block with it */
  h1, h2, h3 { break-after: avoid-page; page-break-after: avoid; break-inside: avoid; }
  h1 + *, h2 + *, h3 + *, .population { break-before: avoid-page; page-break-before: avoid; }
  .population { break-after: avoid-page; page-break-after: avoid; }
  figure, table, .alert, .headline div, ul.summary li, .population { break-inside: avoid; }
  .headline { grid-template-columns: repeat(3, 1fr); gap: .4rem; }
  .headline div { padding: .35rem .5rem; } .headline b { font-size: 1.25rem; }
  h2 { margin-top: 1.1rem; } h1 { margin-top: 0; }
  /* the front page (dates, red flags, summary, headline figures) stands on its own */
  h2#Data-coverage { break-before: page; }
  a { color: inherit; text-decoration: none; }
}
"""

_LOADED_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-loaded", String(ok));
});
</script>
"""


def _output_html(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return ""  # stdout/stderr chatter (warnings, progress) never reaches a report
    if kind == "error":
        name = html.escape(str(output.get("ename", "Error")))
        return f'<div class="alert"><h3>This section failed to compute</h3><p>{name}</p></div>'
    data = output.get("data", {})
    if "text/html" in data:
        value = data["text/html"]
        return value if isinstance(value, str) else "".join(value)
    if "text/markdown" in data:
        value = data["text/markdown"]
        return markdown2html_mistune(value if isinstance(value, str) else "".join(value))
    if "image/png" in data:
        alt = html.escape(str(output.get("metadata", {}).get("alt", "Figure")))
        payload = str(data["image/png"]).replace("\n", "")
        return f'<figure><img src="data:image/png;base64,{payload}" alt="{alt}"></figure>'
    if "image/svg+xml" in data:
        svg = data["image/svg+xml"]
        svg = svg if isinstance(svg, str) else "".join(svg)
        encoded = base64.b64encode(svg.encode("utf-8")).decode("ascii")
        return f'<figure><img src="data:image/svg+xml;base64,{encoded}" alt="Figure"></figure>'
    if "text/plain" in data:
        value = data["text/plain"]
        value = value if isinstance(value, str) else "".join(value)
        return f"<pre>{html.escape(value)}</pre>"
    return ""


def notebook_to_html(notebook: str | Path | nbformat.NotebookNode, *, title: str | None = None) -> str:
    """Return the HTML page of an executed notebook: markdown and outputs only, no code.

    Parameters
    ----------
    notebook : path or NotebookNode
        The executed notebook.
    title : str, optional
        Page title; defaults to the first level-1 heading of the notebook.

    Returns
    -------
    str
        A complete, self-contained HTML document.
    """
    if isinstance(notebook, nbformat.NotebookNode):
        nb = notebook
    else:
        # nbformat ships py.typed but leaves read() unannotated
        nb = nbformat.read(str(notebook), as_version=4)  # type: ignore[no-untyped-call]
    parts: list[str] = []
    for cell in nb.cells:
        if "remove-cell" in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "markdown":
            parts.append(markdown2html_mistune(cell.source))
            if title is None:
                first = next((ln for ln in cell.source.splitlines() if ln.startswith("# ")), None)
                title = first[2:].strip() if first else None
        elif cell.cell_type == "code":
            parts.extend(_output_html(o) for o in cell.get("outputs", []))
    page_title = html.escape(title or "Report")
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{page_title}</title>\n<style>{REPORT_CSS}</style>\n</head>\n<body>\n"
        f"{body}\n{_LOADED_SCRIPT}</body>\n</html>\n"
    )
