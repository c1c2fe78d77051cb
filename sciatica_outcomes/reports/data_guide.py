"""The data guide: every canonical table, column, code and questionnaire item, generated from the schemas.

:func:`guide_blocks` reads the pandera models (through their Frictionless export), the catalogs, the plain
labels, units and example rows of ``schemas.documentation``, and the questionnaire definitions of
``scoring`` (items, response ranges, scoring rules) with their topic paraphrases; :func:`render_markdown`
and :func:`render_html` write the same blocks as ``docs/data-guide.md`` and as one self-contained HTML page
shipped with the package (``sciatica_outcomes/schemas/data/data-guide.html``, :func:`shipped_guide`).

The output is deterministic (no dates, no version but the schema version):
``tests/reports/test_data_guide.py`` regenerates it and fails when a committed copy is stale, naming the
command that refreshes it (``sciatica-outcomes schemas guide``, or ``make guide``).
"""

from __future__ import annotations

import html
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.schemas import SCHEMA_VERSION, TABLE_SPECS, exercise_catalog, measure_catalog
from sciatica_outcomes.schemas.documentation import INSTRUMENT_LABELS, column_docs
from sciatica_outcomes.schemas.frictionless import FALSE_VALUES, TRUE_VALUES
from sciatica_outcomes.schemas.questionnaire_items import INSTRUMENT_RESPONSE_RANGE
from sciatica_outcomes.schemas.vocabulary import INSTRUMENT_CODES
from sciatica_outcomes.scoring.instruments import INSTRUMENTS, Instrument
from sciatica_outcomes.scoring.questionnaire_text import ITEM_TOPICS, QUESTIONNAIRE_TEXTS

__all__ = [
    "GUIDE_HTML",
    "GUIDE_MARKDOWN",
    "Block",
    "guide_blocks",
    "render_html",
    "render_markdown",
    "shipped_guide",
    "write_guide",
]

#: Where the guide lives in a checkout of the repository (relative to its root).
GUIDE_MARKDOWN = Path("docs/data-guide.md")
GUIDE_HTML = Path("sciatica_outcomes/schemas/data/data-guide.html")
#: Command that regenerates both committed copies (from the repository root).
REGENERATE = "sciatica-outcomes schemas guide"

#: ClinicalConfig field holding each instrument's missing-item limit.
_MAX_MISSING = {"odi": "odi_max_missing", "rmdq": "rmdq_max_missing", "sbi": "sbi_max_missing"}
_MAX_MISSING["sfi"] = _MAX_MISSING["sbi"]


@dataclass(frozen=True)
class Block:
    """One element of the guide.

    Parameters
    ----------
    kind : {"h1", "h2", "h3", "p", "list", "table"}
        What the block is.
    text : str
        Heading or paragraph text; inline ``code`` in backticks.
    anchor : str
        Link target of a heading.
    header : tuple of str
        Column headers of a table.
    rows : tuple of tuple of str
        Table rows or list items (one cell each).
    """

    kind: str
    text: str = ""
    anchor: str = ""
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def _h(level: int, text: str, anchor: str) -> Block:
    return Block(f"h{level}", text, anchor)


def _p(text: str) -> Block:
    return Block("p", text)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> Block:
    return Block("table", header=header, rows=tuple(rows))


def _list(items: list[str]) -> Block:
    return Block("list", rows=tuple((i,) for i in items))


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _rst(text: str) -> str:
    """Docstring text as one paragraph with Markdown code spans."""
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(text.split()))


#: Allowed-value texts that name a catalog, linked to the catalog's section of the guide.
_LINKS = {
    "a code of the exercise catalog (data/schemas/exercises.csv)": (
        "a code of the [exercise catalog](#exercise-catalog)"
    ),
    "a code of the measure catalog (data/schemas/measures.csv)": (
        "a code of the [measure catalog](#measure-catalog)"
    ),
}


def _table_blocks(table: str) -> list[Block]:
    spec = TABLE_SPECS[table]
    blocks = [_h(2, f"`{table}`", f"table-{table}"), _p(spec.description)]
    facts = [f"Key: {', '.join(f'`{k}`' for k in spec.key)} (no two rows share it)."]
    for fk in spec.foreign_keys:
        cols = ", ".join(f"`{c}`" for c in fk.columns)
        facts.append(f"Every {cols} must be one of [`{fk.table}`](#table-{fk.table}).")
    if spec.date_window is not None:
        w = spec.date_window
        facts.append(
            f"`{w.date_column}` lies from {w.days_before_start} days before the episode's `start_date` to "
            f"{w.days_after_end} days after its `end_date` (no upper limit while the episode is open)."
        )
    doc = inspect.getdoc(spec.model) or ""
    facts.append(_rst(doc))
    blocks.append(_list(facts))
    rows = [
        (
            f"`{c.name}`",
            c.meaning,
            c.type,
            c.unit,
            _LINKS.get(c.allowed, c.allowed),
            c.required,
            "(empty)" if c.example is None else f"`{c.example}`",
        )
        for c in column_docs(table)
    ]
    header = ("Column", "Meaning", "Type", "Unit", "Allowed values", "Required", "Example")
    blocks.append(_table(header, rows))
    return blocks


def _catalog_blocks() -> list[Block]:
    ex = exercise_catalog()
    ms = measure_catalog()
    ex_rows = [
        (
            f"`{r['code']}`",
            r["name"],
            r["category"],
            r["muscle_group"].replace("_", " "),
            r["dose_type"],
            f"{r['family']} level {r['family_level']}",
        )
        for r in ex.iter_rows(named=True)
    ]
    ms_rows = []
    for r in ms.iter_rows(named=True):
        lo, hi = r["min"], r["max"]
        rng = f"{_num(lo)} to {_num(hi)}" if hi is not None else f"at least {_num(lo)}, up to `cap_min`"
        if r["integer"]:
            rng += ", whole numbers"
        ms_rows.append(
            (
                f"`{r['code']}`",
                r["label"],
                r["unit"],
                rng,
                "higher" if r["higher_is_better"] else "lower",
                "yes" if r["cap_allowed"] else "no",
                (r["versions"] or "").replace(";", ", "),
                r["source"],
            )
        )
    return [
        _h(2, "Exercise catalog", "exercise-catalog"),
        _p(
            "Codes of `session_exercises.exercise`. A higher level within a family is a harder variant "
            "(a progression); the dose is recorded as the dose type says."
        ),
        _table(("Code", "Exercise", "Category", "Muscle group", "Dose type", "Progression"), ex_rows),
        _h(2, "Measure catalog", "measure-catalog"),
        _p(
            "Codes of `measures.measure`, with the range `value` must lie in and the direction every report "
            "honours. Tolerance tests with a time cap record `cap_min`; a test stopped by the cap has "
            "`stopped_reason` `cap` and `value` equal to `cap_min`."
        ),
        _table(
            ("Code", "Measure", "Unit", "Allowed values", "Better when", "Time cap", "Versions", "Source"),
            ms_rows,
        ),
    ]


def _scoring_rule(inst: Instrument, config: ClinicalConfig) -> str:
    n_items = len(next(iter(inst.items.values()))) if inst.items else 0
    limit = getattr(config, _MAX_MISSING[inst.code], 0) if inst.code in _MAX_MISSING else 0
    field = _MAX_MISSING.get(inst.code)
    limit_text = "any item is empty" if limit == 0 else f"more than {limit} item(s) are empty"
    missing = f"refused when {limit_text} (`ClinicalConfig.{field}`)"
    if inst.rule == "percent_of_answered":
        return f"100 x sum of the answered sections / (5 x sections answered), 0-100 %; {missing}"
    if inst.rule == "sum":
        what = "number of items ticked" if inst.item_max == 1 else f"sum of the {n_items} items"
        return f"{what}, 0-{n_items * inst.item_max}; {missing}"
    if inst.rule == "mean":
        return (
            f"mean of the answered activities, {inst.item_min}-{inst.item_max}; needs "
            f"{config.psfs_min_items} to {config.psfs_max_items} activities"
        )
    return "each item is its own measure"


def _questionnaire_blocks(config: ClinicalConfig) -> list[Block]:
    blocks = [
        _h(2, "Questionnaires", "questionnaires"),
        _p(
            "`questionnaire_items` holds one row per answered item; the toolkit scores each questionnaire "
            "(one `episode_id`, `assessed_on` and `instrument`) into a `measures` row with the rule below, "
            "and refuses a questionnaire as a whole, with the reason, when its items do not fit the rule. "
            "An empty `response` is an item left unanswered. Record `instrument_version`: versions are not "
            "interchangeable. Item topics are neutral paraphrases, never the wording of a licensed form."
        ),
    ]
    overview = []
    for code in INSTRUMENT_CODES:
        lo, hi = INSTRUMENT_RESPONSE_RANGE[code]
        inst = INSTRUMENTS.get(code)
        if inst is None:
            score = f"not scored: enter the T-score as measure `{code}`"
            versions = "any"
        else:
            better = "higher is better" if inst.higher_is_better else "higher is worse"
            score = f"`{inst.measure}`: {_scoring_rule(inst, config)}; {better}"
            versions = ", ".join(inst.items) if inst.items else "any"
        overview.append((f"`{code}`", INSTRUMENT_LABELS[code], versions, f"{lo}-{hi}", score))
    blocks.append(_table(("Code", "Questionnaire", "Versions", "Responses", "Score"), overview))
    for code in INSTRUMENT_CODES:
        text = QUESTIONNAIRE_TEXTS[code]
        inst = INSTRUMENTS.get(code)
        blocks.append(_h(3, f"`{code}`: {INSTRUMENT_LABELS[code]}", f"instrument-{code}"))
        facts = [f"Responses: {text.anchors}.", f"Wording: {text.wording.rstrip('.')}."]
        if inst is not None:
            default = config.odi_default_version if code == "odi" else inst.default_version
            facts.append(f"Score: {_scoring_rule(inst, config)}.")
            facts.append(f"An empty `instrument_version` is read as version `{default}` (and reported).")
            facts.append(f"Scoring rule: {inst.source}.")
        facts.append(f"Source: {text.source}.")
        blocks.append(_list(facts))
        if inst is not None and inst.items is not None:
            topics = ITEM_TOPICS[code]
            items = list(dict.fromkeys(i for v in inst.items.values() for i in v))
            rows = [
                (
                    f"`{item}`",
                    topics[item],
                    ", ".join(v for v, its in inst.items.items() if item in its),
                )
                for item in items
            ]
            blocks.append(_table(("Item", "Topic (paraphrase)", "Versions"), rows))
    return blocks


def guide_blocks(config: ClinicalConfig | None = None) -> list[Block]:
    """The whole guide as a list of blocks, in reading order.

    Parameters
    ----------
    config : ClinicalConfig, optional
        Thresholds quoted in the scoring rules (missing-item limits, PSFS activity count); defaults to
        ``ClinicalConfig()``.

    Returns
    -------
    list of Block
        Headings, paragraphs, lists and tables.
    """
    config = config or ClinicalConfig()
    spellings = ", ".join(f"`{v}`" for v in TRUE_VALUES) + " / " + ", ".join(f"`{v}`" for v in FALSE_VALUES)
    blocks = [
        _h(1, "Data guide: the canonical tables", "top"),
        _p(
            f"Schema version {SCHEMA_VERSION}. Generated from the schemas by `{REGENERATE}`; do not edit by "
            "hand. Every table, column, code and questionnaire item the toolkit accepts is listed here."
        ),
        _list(
            [
                "Files: one CSV (or Parquet) file per table, named after the table (`episodes.csv`), or one "
                "Excel workbook with a sheet per table; `sciatica-outcomes template --out DIR` writes a "
                "workbook to fill in (`--format csv`: one CSV per table), with an example row.",
                "Missing values: an empty cell (or `NA`). Dates: `YYYY-MM-DD` (Excel date cells are read as "
                f"dates). True/false: {spellings}.",
                "Column order does not matter; column names must be spelt as below. A required column must "
                "be present and filled in every row; an optional column may be left out or left empty.",
                "Check files before storing them: `sciatica-outcomes validate DIR` lists every problem with "
                "its file, row and column.",
            ]
        ),
        _table(
            ("Table", "Holds"),
            [(f"[`{t}`](#table-{t})", s.description) for t, s in TABLE_SPECS.items()]
            + [
                ("[Exercise catalog](#exercise-catalog)", "exercise code"),
                ("[Measure catalog](#measure-catalog)", "measure code"),
                ("[Questionnaires](#questionnaires)", "questionnaire and item code"),
            ],
        ),
    ]
    for table in TABLE_SPECS:
        blocks += _table_blocks(table)
    blocks += _catalog_blocks()
    blocks += _questionnaire_blocks(config)
    return blocks


# ---- rendering -------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    """The guide as GitHub-flavoured Markdown.

    Parameters
    ----------
    blocks : list of Block
        From :func:`guide_blocks`.

    Returns
    -------
    str
        Markdown text ending in one newline; headings carry ``<a id>`` anchors for the links.
    """
    out: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append(f'{"#" * int(b.kind[1])} <a id="{b.anchor}"></a>{b.text}')
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {r[0]}" for r in b.rows))
        else:
            lines = ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then render `code` spans and [text](#anchor) links."""
    s = html.escape(text, quote=True)
    s = re.sub(r"\[([^\]]+)\]\((#[A-Za-z0-9_-]+)\)", r'<a href="\2">\1</a>', s)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", s)


_CSS = """
:root { --fg: #1b1b1b; --muted: #555; --accent: #0072B2; --line: #d0d0d0; --head: #eef3f8; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0 auto; max-width: 80rem; padding: 1rem; line-height: 1.45; }
h1 { font-size: 1.7rem; border-bottom: 3px solid var(--accent); padding-bottom: .3rem; }
h2 { font-size: 1.35rem; margin-top: 2.4rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
a { color: var(--accent); }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .88em;
       background: #f3f4f6; padding: 0 .2em; border-radius: .2em; white-space: nowrap; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .9rem; width: 100%; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; }
ul { padding-left: 1.3rem; }
@media (max-width: 44rem) {
  body { padding: .6rem; font-size: .95rem; }
  table, thead, tbody, tr, th, td { display: block; width: 100%; }
  thead { position: absolute; left: -9999px; }
  tr { border: 1px solid var(--line); border-radius: .4rem; margin-bottom: .7rem; padding: .3rem .5rem; }
  td { border: none; padding: .15rem 0; }
  td:empty { display: none; }
  code { white-space: normal; overflow-wrap: anywhere; }
  td::before { content: attr(data-label) ": "; font-weight: 600; color: var(--muted); }
  td:first-child { font-size: 1.05rem; }
  td:first-child::before { content: ""; }
}
@media print {
  body { max-width: none; font-size: 9.5pt; } h2, h3 { break-after: avoid; } tr { break-inside: avoid; }
}
"""


def render_html(blocks: list[Block]) -> str:
    """The guide as one self-contained HTML page (own CSS, nothing fetched; tables become cards on a phone).

    Parameters
    ----------
    blocks : list of Block
        From :func:`guide_blocks`.

    Returns
    -------
    str
        The HTML document.
    """
    title = next((b.text for b in blocks if b.kind == "h1"), "Data guide").replace("`", "")
    body: list[str] = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            body.append(f'<{b.kind} id="{b.anchor}">{_inline(b.text)}</{b.kind}>')
        elif b.kind == "p":
            body.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_inline(r[0])}</li>" for r in b.rows) + "</ul>")
        else:
            labels = [html.escape(h.replace("`", ""), quote=True) for h in b.header]
            head = "".join(f'<th scope="col">{_inline(h)}</th>' for h in b.header)
            rows = "".join(
                "<tr>"
                + "".join(f'<td data-label="{h}">{_inline(c)}</td>' for h, c in zip(labels, r, strict=True))
                + "</tr>"
                for r in b.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_guide(markdown: str | Path = GUIDE_MARKDOWN, html_path: str | Path = GUIDE_HTML) -> list[Path]:
    """Write the guide as Markdown and as HTML.

    Parameters
    ----------
    markdown : str or Path
        Markdown file (default: ``docs/data-guide.md`` of the checkout).
    html_path : str or Path
        HTML file (default: the copy shipped in the package).

    Returns
    -------
    list of Path
        The two files written.
    """
    blocks = guide_blocks()
    out = []
    for path, text in ((Path(markdown), render_markdown(blocks)), (Path(html_path), render_html(blocks))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out


def shipped_guide() -> Traversable:
    """The HTML guide installed with the package (open it in a browser)."""
    return resources.files("sciatica_outcomes.schemas").joinpath("data", "data-guide.html")
