"""The ``sciatica-outcomes`` command: a thin shell over the Python API.

Each stage registers its own commands here; every command can be reproduced in a few lines of Python.
Exit codes: 0 success, 1 data problems found, 2 unusable input or arguments.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sciatica_outcomes import synth
from sciatica_outcomes.derive.cli import derive_command

app = typer.Typer(
    name="sciatica-outcomes",
    help="Outcomes analytics for strength-training programs in chronic sciatica.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()


class TableFormat(StrEnum):
    """File formats the synthetic cohort can be written in."""

    csv = "csv"
    parquet = "parquet"


def _print_summary(cohort: synth.Cohort, title: str) -> None:
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for figure, value in synth.cohort_summary(cohort).iter_rows():
        shown = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
        table.add_row(figure, shown)
    console.print(table)


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
    t0 = time.perf_counter()
    cohort = synth.generate_cohort(n_patients=patients, n_clinics=clinics, seed=seed)
    paths = synth.write_cohort(cohort, out, fmt=fmt.value)
    elapsed = time.perf_counter() - t0
    if not quiet:
        _print_summary(cohort, f"Synthetic cohort (seed {seed})")
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
) -> None:
    """Run the whole product on a synthetic cohort: generate, then summarise."""
    data_dir = out / "cohort"
    cohort = synth.generate_cohort(n_patients=patients, n_clinics=clinics, seed=seed)
    synth.write_cohort(cohort, data_dir)
    _print_summary(cohort, "Synthetic cohort")
    console.print(f"Cohort tables and truth.json: {data_dir}")


app.command("derive")(derive_command)


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
