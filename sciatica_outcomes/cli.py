"""The ``sciatica-outcomes`` command: a thin shell over the Python API.

Each stage registers its own commands here; every command can be reproduced in a few lines of Python.
Exit codes: 0 success, 1 data problems found, 2 unusable input or arguments.

Start-up: importing this module loads typer and the stages' light ``cli`` modules only; every command imports
what it runs inside its body (``tests/test_cli_startup.py`` fails if SciPy, pandera, DuckDB, nbconvert or
matplotlib load at import, or if ``--help`` takes a second).
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sciatica_outcomes._cli_help import install as _plain_help_labels
from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes._version import __version__
from sciatica_outcomes.derive.cli import derive_command
from sciatica_outcomes.errors import SciaticaOutcomesError
from sciatica_outcomes.ingest.cli import ingest_command, pseudonymize_command, schemas_app, validate_command
from sciatica_outcomes.ingest.cli_template import template_command
from sciatica_outcomes.models.cli import fit_command
from sciatica_outcomes.reports.cli import report_app
from sciatica_outcomes.reports.cli_compare import compare_clinics_command, responders_command
from sciatica_outcomes.reports.cli_guide import schemas_guide_command
from sciatica_outcomes.reports.cli_work import work_status_command

if TYPE_CHECKING:
    from rich.console import Console

    from sciatica_outcomes import synth

_plain_help_labels()

app = typer.Typer(
    name="sciatica-outcomes",
    help="Outcomes analytics for strength-training programs in chronic sciatica.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"sciatica-outcomes {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Outcomes analytics for strength-training programs in chronic sciatica."""


def _console() -> Console:
    from rich.console import Console

    return Console()


def _exit_on_write_error(exc: OSError, what: str) -> typer.Exit:
    """One line on stderr for an output that cannot be written; exit code 2."""
    where = exc.filename or "the output directory"
    typer.echo(
        f"error: cannot write {what} to {where}: {exc.strerror or exc}; choose a writable --out", err=True
    )
    return typer.Exit(2)


class TableFormat(StrEnum):
    """File formats the synthetic cohort can be written in."""

    csv = "csv"
    parquet = "parquet"


def _print_summary(console: Console, cohort: synth.Cohort, title: str) -> None:
    from sciatica_outcomes import synth

    rows = [
        (figure, f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}")
        for figure, value in synth.cohort_summary(cohort).iter_rows()
    ]
    print_table(console, make_table(title, ("figure", "value"), rows, width=console.width))


@app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the tables and truth.json.")],
    patients: Annotated[int, typer.Option("--patients", min=1, help="Number of episodes.")] = 1000,
    clinics: Annotated[int, typer.Option("--clinics", min=1, help="Number of clinics.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same bytes).")] = 0,
    fmt: Annotated[TableFormat, typer.Option("--format", help="Table file format.")] = TableFormat.csv,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the summary.")] = False,
) -> None:
    """Generate a calibrated synthetic cohort with known ground truth."""
    from sciatica_outcomes import synth

    console = _console()
    t0 = time.perf_counter()
    cohort = synth.generate_cohort(n_patients=patients, n_clinics=clinics, seed=seed)
    try:
        paths = synth.write_cohort(cohort, out, fmt=fmt.value)
    except OSError as exc:
        raise _exit_on_write_error(exc, "the cohort") from None
    elapsed = time.perf_counter() - t0
    if not quiet:
        _print_summary(console, cohort, f"Synthetic cohort (seed {seed})")
        size = sum(p.stat().st_size for p in paths.values())
        console.print(f"Wrote {len(paths)} files ({size / 2**20:,.1f} MiB) to {out} in {elapsed:.1f} s")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", help="Directory for the demo outputs.")] = Path(
        "reports/demo"
    ),
    patients: Annotated[int, typer.Option("--patients", min=1)] = 1000,
    clinics: Annotated[int, typer.Option("--clinics", min=1)] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 2026,
    quarter: Annotated[str, typer.Option("--quarter", help="Quarter of the demo report.")] = "2026Q3",
) -> None:
    """Run the whole product on a synthetic cohort: generate, ingest, derive, fit, render the report."""
    from sciatica_outcomes import synth
    from sciatica_outcomes.derive import derive_all
    from sciatica_outcomes.derive.cli import write_derived
    from sciatica_outcomes.ingest import ingest_paths
    from sciatica_outcomes.reports.cli import render_cohort, render_quarterly

    console = _console()
    t0 = time.perf_counter()
    try:
        data_dir = out / "cohort"
        db = out / "outcomes.duckdb"
        cohort = synth.generate_cohort(n_patients=patients, n_clinics=clinics, seed=seed)
        synth.write_cohort(cohort, data_dir)
        _print_summary(console, cohort, "1. Synthetic cohort")
        console.print(f"   tables and truth.json: {data_dir}")

        result = ingest_paths(data_dir, db)
        rows = [
            (
                str(row["table"]),
                f"{row['rows_read']:,}",
                f"{row.get('rows_stored', 0) or 0:,}",
                f"{row['rows_quarantined']:,}",
            )
            for row in result.summary().iter_rows(named=True)
        ]
        header = ("table", "rows read", "stored", "quarantined")
        print_table(console, make_table("2. Ingest into the DuckDB store", header, rows, width=console.width))
        console.print(f"   store: {db}; validation report: {result.reports.get('html', '-')}")

        paths = write_derived(derive_all(db), out / "derived", source=str(db))
        console.print(
            f"3. Derived metrics: {', '.join(sorted(p.name for p in paths.values()))} in {out / 'derived'}"
        )

        report = render_quarterly(db, quarter, out / f"quarterly-{quarter}")
        console.print(
            f"4. Growth models fitted and quarterly report rendered ({len(report.figures)} figures, "
            f"{len(report.tables)} tables) in {report.seconds:.1f} s"
        )
        cohort_report = render_cohort(db, out / "cohort-analysis")
        console.print(
            f"5. Researcher's cohort analysis rendered ({len(cohort_report.figures)} figures, "
            f"{len(cohort_report.tables)} tables, CSV and LaTeX): {cohort_report.html}"
        )
        console.print(f"Demo finished in {time.perf_counter() - t0:.1f} s. Open the quarterly report:")
        typer.echo(str(report.html))
    except OSError as exc:
        raise _exit_on_write_error(exc, "the demo") from None
    except SciaticaOutcomesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


app.command("derive")(derive_command)
app.add_typer(report_app, name="report")
app.command("validate")(validate_command)
app.command("ingest")(ingest_command)
app.command("pseudonymize")(pseudonymize_command)
app.command("template")(template_command)
schemas_app.command("guide")(schemas_guide_command)
app.add_typer(schemas_app, name="schemas")
app.command("fit")(fit_command)
app.command("responders")(responders_command)
app.command("compare-clinics")(compare_clinics_command)
app.command("work-status")(work_status_command)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
