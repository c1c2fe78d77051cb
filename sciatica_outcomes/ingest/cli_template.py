"""``sciatica-outcomes template``: write blank input templates (Excel workbook or CSV files) from the schemas.

Only typer and light modules load at import; openpyxl and the schemas load when the template is written.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from sciatica_outcomes.errors import SciaticaOutcomesError

__all__ = ["TemplateFormat", "template_command"]


class TemplateFormat(StrEnum):
    """File formats of the input template."""

    xlsx = "xlsx"
    csv = "csv"


def template_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the template (created if missing).")],
    fmt: Annotated[
        TemplateFormat,
        typer.Option("--format", help="xlsx: one workbook, a sheet per table; csv: one file per table."),
    ] = TemplateFormat.xlsx,
) -> None:
    """Write an input template: every table's columns, comments, drop-down lists and an example row."""
    from sciatica_outcomes.ingest.template import write_template

    try:
        written = write_template(out, fmt.value)
    except SciaticaOutcomesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(
            f"error: cannot write the template to {exc.filename or out}: {exc.strerror or exc}; "
            "choose a writable --out",
            err=True,
        )
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(str(path))
    first = written[0] if fmt is TemplateFormat.xlsx else out
    typer.echo(
        f"Fill it in (row 2 of each table is an example: overwrite or delete it), then check it with "
        f"`sciatica-outcomes validate {first}`."
    )
