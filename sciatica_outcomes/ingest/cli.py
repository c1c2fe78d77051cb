"""Commands of the ingest stage: ``validate``, ``ingest``, ``schemas export`` and ``pseudonymize``.

Exit codes: 0 clean (or stored), 1 some row failed (``validate``; ``ingest --strict``), 2 unusable input
(unreadable file, unknown table, identifier column) with a one-line reason on stderr.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.defaults import DEFAULT_DB, DEFAULT_MAX_EXAMPLES, DEFAULT_SCHEMA_DIR
from sciatica_outcomes.errors import SciaticaOutcomesError, UnusableInputError

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console
    from rich.table import Table

# Start-up cost: only typer and this package's light modules load at import; each command imports the
# stage it runs (polars, pandera, DuckDB) in its body, so `--help` answers at once.

__all__ = ["ingest_command", "pseudonymize_command", "schemas_app", "validate_command"]


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


schemas_app = typer.Typer(help="Canonical table schemas.", no_args_is_help=True)

#: Inputs larger than this get a progress bar (they take more than a few seconds).
_PROGRESS_BYTES = 50 * 2**20


def _fail(exc: Exception) -> typer.Exit:
    _console(stderr=True).print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _table(frame: pl.DataFrame, title: str, width: int | None = None) -> Table:
    rows = [
        ["" if v is None else f"{v:,}" if isinstance(v, int) else str(v) for v in row]
        for row in frame.iter_rows()
    ]
    numeric = [j for j, c in enumerate(frame.columns) if frame.schema[c].is_numeric()]
    return make_table(title, frame.columns, rows, numeric=numeric, width=width)


def _size(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.iterdir() if f.is_file())
        elif p.is_file():
            total += p.stat().st_size
    return total


def validate_command(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Files or directories to validate.")],
    report: Annotated[Path | None, typer.Option("--report", help="Write every issue as JSON here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a readable HTML report here.")] = None,
    table: Annotated[str | None, typer.Option("--table", help="Table of every plain file given.")] = None,
    db: Annotated[
        Path | None, typer.Option("--db", help="Store whose episodes and sessions foreign keys may point to.")
    ] = None,
    max_examples: Annotated[
        int,
        typer.Option("--max-examples", min=1, help="Example lines per distinct value in the HTML report."),
    ] = DEFAULT_MAX_EXAMPLES,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="long (one file per table) or visits-wide (one row per episode x visit, a column per "
            "measure or INSTRUMENT.ITEM; reshaped into measures and questionnaire_items).",
        ),
    ] = "long",
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="TOML or CSV file naming a wide sheet's columns (column -> episode_id, assessed_on, "
            "measure code, MEASURE.cap_min, INSTRUMENT.ITEM, ...); implies --layout visits-wide.",
        ),
    ] = None,
    decimal: Annotated[
        str, typer.Option("--decimal", help="Decimal mark of numbers in CSV files: '.' or ','.")
    ] = ".",
    thousands: Annotated[
        str | None,
        typer.Option(
            "--thousands", help="Thousands separator allowed in CSV numbers: '.', ',', \"'\", space or nbsp."
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter", help="Field delimiter of CSV files: ',', ';', tab or '|' (default: sniffed)."
        ),
    ] = None,
) -> None:
    """Check files against the canonical schemas and report every problem at once (nothing is stored)."""
    from sciatica_outcomes.ingest.pipeline import validate_paths
    from sciatica_outcomes.ingest.report import write_html_report, write_json_report

    console = _console()
    try:
        result = validate_paths(
            paths,
            table=table,
            db=db,
            layout=layout,
            mapping=mapping,
            decimal=decimal,
            thousands=thousands,
            delimiter=delimiter,
        )
    except (SciaticaOutcomesError, OSError) as exc:
        raise _fail(exc) from None
    print_table(console, _table(result.counts(), "Validation", console.width))
    errors = result.errors
    if errors.height:
        import polars as pl

        by_rule = errors.group_by("rule").len("count").sort("count", descending=True)
        print_table(console, _table(by_rule, "Problems by rule", console.width))
        # the problems at their source first: rows rejected with their parent are summed up below
        roots = errors.filter(pl.col("rule") != "parent_rejected")
        shown = roots.head(10).select("file", "row", "column", "value", "message")
        print_table(
            console,
            _table(
                shown, f"First {shown.height} of {roots.height:,} problems at their source", console.width
            ),
        )
        if result.cascades.height:
            parents = result.cascades.select("parent_file", "parent_row").n_unique()
            console.print(
                f"{result.cascades.height:,} row(s) rejected only because the session or episode they "
                f"point to was rejected ({parents:,} parent row(s)); fix those rows first",
                highlight=False,
            )
    for n in result.notices:
        console.print(f"[yellow]note[/yellow] {n.file}: {n.message}", highlight=False)
    if report is not None:
        write_json_report(result, report)
        console.print(f"JSON report: {report}")
    if html is not None:
        write_html_report(result, html, max_examples=max_examples)
        console.print(f"HTML report: {html}")
    raise typer.Exit(0 if result.ok else 1)


def ingest_command(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="Files or directories to ingest.")],
    db: Annotated[Path, typer.Option("--db", help="DuckDB store (created if missing).")] = DEFAULT_DB,
    strict: Annotated[
        bool, typer.Option("--strict", help="Write nothing if any row fails (exit 1).")
    ] = False,
    table: Annotated[str | None, typer.Option("--table", help="Table of every plain file given.")] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Where the reports go (default: next to the store).")
    ] = None,
    max_examples: Annotated[
        int,
        typer.Option("--max-examples", min=1, help="Example lines per distinct value in the HTML report."),
    ] = DEFAULT_MAX_EXAMPLES,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="The files are the whole export of their tables: delete stored rows of those tables that "
            "are not in them, in the same transaction.",
        ),
    ] = False,
    layout: Annotated[
        str,
        typer.Option(
            "--layout",
            help="long (one file per table) or visits-wide (one row per episode x visit, a column per "
            "measure or INSTRUMENT.ITEM; reshaped into measures and questionnaire_items).",
        ),
    ] = "long",
    mapping: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="TOML or CSV file naming a wide sheet's columns (column -> episode_id, assessed_on, "
            "measure code, MEASURE.cap_min, INSTRUMENT.ITEM, ...); implies --layout visits-wide.",
        ),
    ] = None,
    decimal: Annotated[
        str, typer.Option("--decimal", help="Decimal mark of numbers in CSV files: '.' or ','.")
    ] = ".",
    thousands: Annotated[
        str | None,
        typer.Option(
            "--thousands", help="Thousands separator allowed in CSV numbers: '.', ',', \"'\", space or nbsp."
        ),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(
            "--delimiter", help="Field delimiter of CSV files: ',', ';', tab or '|' (default: sniffed)."
        ),
    ] = None,
) -> None:
    """Validate and store: good rows are upserted by key in one transaction, bad rows are quarantined."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from sciatica_outcomes.ingest.pipeline import ingest_paths

    console, err_console = _console(), _console(stderr=True)
    t0 = time.perf_counter()
    show_progress = sys.stderr.isatty() and _size(paths) > _PROGRESS_BYTES
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show_progress,
    )
    try:
        with progress:
            task = progress.add_task("reading", total=None)

            def step(stage: str, detail: str) -> None:
                progress.update(task, description=f"{stage} {Path(detail).name if detail else ''}".strip())

            result = ingest_paths(
                paths,
                db=db,
                table=table,
                strict=strict,
                report_dir=report_dir,
                max_examples=max_examples,
                on_progress=step,
                replace=replace,
                layout=layout,
                mapping=mapping,
                decimal=decimal,
                thousands=thousands,
                delimiter=delimiter,
            )
    except (SciaticaOutcomesError, OSError) as exc:
        raise _fail(exc) from None
    print_table(console, _table(result.summary(), f"Ingest into {db}", console.width))
    for n in result.validation.notices:
        console.print(f"[yellow]note[/yellow] {n.file}: {n.message}", highlight=False)
    for name, absent in result.absent.items():
        if absent and result.replaced:
            console.print(
                f"[yellow]note[/yellow] {absent:,} {name} row(s) not in this export were deleted (--replace)"
            )
        elif absent:
            console.print(
                f"[yellow]note[/yellow] {absent:,} {name} row(s) in the store are not in this export; they "
                "are kept (pass --replace to delete them if this export is the whole table)",
                highlight=False,
            )
    elapsed = time.perf_counter() - t0
    quarantined = sum(t.rows_quarantined for t in result.validation.tables)
    stored = sum(t.rows_valid for t in result.validation.tables)
    if result.report_error is not None:
        done = (
            f"ingest {result.ingest_id} was committed ({stored:,} rows stored, {quarantined:,} quarantined)"
            if result.written
            else f"nothing was stored (--strict: {result.validation.errors.height:,} problem(s))"
        )
        err_console.print(
            f"error: {done}, but {result.report_error}: free space there (or pass --report-dir) and "
            "re-create the reports with `sciatica-outcomes validate SOURCES --report FILE --html FILE`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    if not result.written:
        console.print(
            f"[red]--strict: nothing written[/red]: {result.validation.errors.height:,} problem(s); "
            f"report {result.reports['html']}"
        )
        raise typer.Exit(1)
    again = quarantined - result.quarantine_added
    if again:
        console.print(
            f"[yellow]note[/yellow] {again:,} of the {quarantined:,} rejected rows were already in the "
            "quarantine (same table and values, from an earlier ingest) and are not added again",
            highlight=False,
        )
    console.print(
        f"ingest {result.ingest_id}: {stored:,} rows stored, "
        f"{quarantined:,} quarantined in {elapsed:.1f} s; report {result.reports['html']}"
    )


@schemas_app.command("export")
def schemas_export_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the schema files.")] = DEFAULT_SCHEMA_DIR,
) -> None:
    """Write the Frictionless Table Schemas, the catalogs and the REDCap dictionary and mapping."""
    from sciatica_outcomes.schemas.frictionless import export_schemas

    console = _console()
    try:
        written = export_schemas(out)
    except OSError as exc:
        typer.echo(
            f"error: cannot write the schemas to {exc.filename or out}: {exc.strerror or exc}", err=True
        )
        raise typer.Exit(2) from None
    for p in written:
        console.print(str(p), highlight=False)


def pseudonymize_command(
    path: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV or Parquet file holding an identifier column.")
    ],
    column: Annotated[str, typer.Option("--column", help="Identifier column to replace with random codes.")],
    key: Annotated[
        Path, typer.Option("--key", help="Key file (crosswalk); reused if it exists. Keep it apart.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Output file (same format as the input).")],
    as_name: Annotated[
        str, typer.Option("--as", help="Name of the code column in the output.")
    ] = "patient_id",
    drop: Annotated[
        list[str] | None, typer.Option("--drop", help="Other identifier column to remove (repeatable).")
    ] = None,
    prefix: Annotated[str, typer.Option("--prefix", help="First characters of new codes.")] = "P",
) -> None:
    """Replace an identifier (e.g. MRN) with random codes; the crosswalk goes to a separate key file."""
    from sciatica_outcomes.ingest.privacy import pseudonymize

    console = _console()
    try:
        res = pseudonymize(
            path, column, key=key, out=out, new_name=as_name, drop=tuple(drop or ()), prefix=prefix
        )
    except (SciaticaOutcomesError, OSError) as exc:
        raise _fail(exc if isinstance(exc, SciaticaOutcomesError) else UnusableInputError(str(exc))) from None
    console.print(
        f"{res.rows:,} rows, {res.identifiers:,} identifiers: {res.new_codes:,} new codes, "
        f"{res.reused_codes:,} reused. Wrote {res.out}; key {res.key} (store it apart from the data)."
    )
