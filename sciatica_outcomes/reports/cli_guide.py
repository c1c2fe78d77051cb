"""``sciatica-outcomes schemas guide``: write the data guide (Markdown and HTML) generated from the schemas.

Only typer and light modules load at import; the guide generator (polars, pandera) loads when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["schemas_guide_command"]


def schemas_guide_command(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Directory for data-guide.md and data-guide.html (default: the checkout's "
            "docs/data-guide.md and the copy shipped in the package; run from the repository root).",
        ),
    ] = None,
) -> None:
    """Write the data guide: every table, column, code and questionnaire item, from the schemas."""
    from sciatica_outcomes.reports.data_guide import GUIDE_HTML, GUIDE_MARKDOWN, shipped_guide, write_guide

    if out is None:
        missing = [str(p.parent) for p in (GUIDE_MARKDOWN, GUIDE_HTML) if not p.parent.is_dir()]
        if missing:
            typer.echo(
                f"error: {', '.join(missing)} not found here: run from the root of a sciatica-outcomes "
                f"checkout, or pass --out DIR (the installed guide is {shipped_guide()})",
                err=True,
            )
            raise typer.Exit(2)
        targets = (GUIDE_MARKDOWN, GUIDE_HTML)
    else:
        targets = (out / "data-guide.md", out / "data-guide.html")
    try:
        written = write_guide(*targets)
    except OSError as exc:
        typer.echo(
            f"error: cannot write the guide to {exc.filename or out}: {exc.strerror or exc}; "
            "choose a writable --out",
            err=True,
        )
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(str(path))
