"""The ``sciatica-outcomes derive`` command: derived frames from the store, written to a folder.

Python equivalent::

    from sciatica_outcomes.config import ClinicalConfig
    from sciatica_outcomes.derive import derive_all

    derived = derive_all("data/outcomes.duckdb", ClinicalConfig.from_toml("clinic.toml"))
    derived.analysis_frame.write_parquet("out/analysis_frame.parquet")
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.defaults import DEFAULT_DB
from sciatica_outcomes.errors import DataValidationError, SciaticaOutcomesError

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from sciatica_outcomes.derive.frames import Derived

# Only typer and light modules load at import; the command imports polars, DuckDB and the derive stage.

__all__ = ["derive_command", "write_derived"]

_MEASURE_COLUMNS = (
    "episode_id",
    "assessed_on",
    "measure",
    "value",
    "stopped_reason",
    "cap_min",
    "instrument_version",
)


def write_derived(derived: Derived, out: Path, *, source: str) -> dict[str, Path]:
    """Write the derived frames and a provenance record to ``out``.

    Files: ``analysis_frame.parquet``, ``episode_summary.parquet``, ``alerts.csv`` (one row per alert:
    ``episode_id, date, kind, source, flags, action_taken, unactioned``), ``scored_measures.parquet``,
    ``scoring_problems.csv``, ``work_episodes.parquet`` and ``return_to_work.parquet``
    (:mod:`sciatica_outcomes.derive.work`) and ``derive_provenance.json`` (configuration with sources, data
    cut, row counts, source). The CSV files are spreadsheet-safe
    (:func:`~sciatica_outcomes.outputs.write_safe_csv`).
    """
    from sciatica_outcomes.outputs import write_safe_csv

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "analysis_frame": out / "analysis_frame.parquet",
        "episode_summary": out / "episode_summary.parquet",
        "alerts": out / "alerts.csv",
        "scored_measures": out / "scored_measures.parquet",
        "scoring_problems": out / "scoring_problems.csv",
        "work_episodes": out / "work_episodes.parquet",
        "return_to_work": out / "return_to_work.parquet",
        "provenance": out / "derive_provenance.json",
    }
    derived.analysis_frame.write_parquet(paths["analysis_frame"])
    derived.episode_summary.write_parquet(paths["episode_summary"])
    write_safe_csv(derived.alerts, paths["alerts"])
    derived.scored_measures.write_parquet(paths["scored_measures"])
    write_safe_csv(derived.scoring_problems, paths["scoring_problems"])
    derived.work_episodes.write_parquet(paths["work_episodes"])
    derived.return_to_work.write_parquet(paths["return_to_work"])
    provenance = {
        "source": source,
        "data_cut": derived.data_cut.isoformat() if derived.data_cut else None,
        "config": derived.config.to_dict(),
        "rows": {
            "analysis_frame": derived.analysis_frame.height,
            "episode_summary": derived.episode_summary.height,
            "alerts": derived.alerts.height,
            "unactioned_red_flags": int(derived.alerts["unactioned"].fill_null(False).sum()),
            "scored_measures": derived.scored_measures.height,
            "scoring_problems": derived.scoring_problems.height,
            "work_episodes": derived.work_episodes.height,
            "return_to_work": derived.return_to_work.height,
        },
    }
    paths["provenance"].write_text(json.dumps(provenance, indent=1, default=str) + "\n", encoding="utf-8")
    return paths


def derive_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the derived files.")],
    db: Annotated[Path, typer.Option("--db", help="DuckDB store to read.")] = DEFAULT_DB,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file overriding clinical thresholds.")
    ] = None,
    data_cut: Annotated[
        str | None,
        typer.Option("--data-cut", help="Last date the data cover (YYYY-MM-DD); default: latest date."),
    ] = None,
    write_scores: Annotated[
        bool,
        typer.Option(
            "--write-scores", help="Also upsert questionnaire scores into the store's measures table."
        ),
    ] = False,
) -> None:
    """Derive the analysis frame, episode summary and red-flag alerts from the store."""
    from rich.console import Console

    from sciatica_outcomes.config import ClinicalConfig
    from sciatica_outcomes.derive.frames import derive_all
    from sciatica_outcomes.store import Store

    console = Console()
    t0 = time.perf_counter()
    try:
        cfg = ClinicalConfig.from_toml(config) if config is not None else ClinicalConfig()
        cut = _parse_date(data_cut)
        with Store(db, read_only=not write_scores) as store:
            derived = derive_all(store, cfg, cut)
            if write_scores and derived.scored_measures.height:
                rules = "; ".join(sorted(set(derived.scored_measures["derived_from"].unique().to_list()))[:5])
                store.write(
                    "measures",
                    derived.scored_measures.select(_MEASURE_COLUMNS),
                    source=f"sciatica_outcomes.scoring.score_questionnaires ({rules})",
                )
        paths = write_derived(derived, out, source=str(db))
    except DataValidationError as exc:
        typer.echo(f"derive: {exc}", err=True)
        raise typer.Exit(1) from exc
    except SciaticaOutcomesError as exc:
        typer.echo(f"derive: {exc}", err=True)
        raise typer.Exit(2) from exc
    _print(console, derived, paths, time.perf_counter() - t0)


def _parse_date(text: str | None) -> date | None:
    if text is None:
        return None
    from sciatica_outcomes.errors import UnusableInputError

    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise UnusableInputError(f"--data-cut must be a date YYYY-MM-DD, got {text!r}") from exc


def _mean(series: pl.Series) -> float | None:
    """Mean of a numeric or boolean column; ``None`` when it has no value (empty or all null)."""
    value = series.mean()
    return float(value) if isinstance(value, int | float) else None


def _shown(value: float | None, spec: str, *, scale: float = 1.0) -> str:
    """``value * scale`` formatted by ``spec``, or ``n/a`` when there is no value (never a made-up 0)."""
    return "n/a" if value is None else spec.format(scale * value)


def _print(console: Console, derived: Derived, paths: dict[str, Path], elapsed: float) -> None:
    import polars as pl

    summary = derived.episode_summary
    alerts = derived.alerts
    unactioned = int(alerts["unactioned"].fill_null(False).sum())
    observed = summary.filter(pl.col("program_observed"))
    completed = int(summary["n_completed"].sum())
    rows = [
        ("episodes", f"{summary.height:,}"),
        ("analysis rows (episode x assessment)", f"{derived.analysis_frame.height:,}"),
        ("mean adherence (completed / prescribed)", _shown(_mean(summary["adherence"]), "{:.3f}")),
        ("dropout, programs fully observed (%)", _shown(_mean(observed["dropout"]), "{:.1f}", scale=100)),
        (
            "flares per 100 completed sessions",
            _shown(float(summary["n_flares"].sum()) / completed if completed else None, "{:.2f}", scale=100),
        ),
        ("stalled progression (episodes)", f"{int(summary['stalled'].sum()):,}"),
        ("red-flag alerts", f"{int((alerts['kind'] == 'red_flag').sum()):,}"),
        ("neuro-worsening review signals", f"{int((alerts['kind'] == 'neuro_worsening').sum()):,}"),
        ("questionnaires refused (see scoring_problems.csv)", f"{derived.scoring_problems.height:,}"),
    ]
    rows.append(("[bold red]UNACTIONED red-flag alerts[/bold red]", f"[bold red]{unactioned:,}[/bold red]"))
    print_table(console, make_table("Derived metrics", ("figure", "value"), rows, width=console.width))
    if unactioned:
        console.print(
            f"[bold red]{unactioned} red-flag alert(s) have no recorded action: "
            f"review {paths['alerts']} now.[/]"
        )
    console.print(f"Wrote {len(paths)} files to {paths['alerts'].parent} in {elapsed:.1f} s")
