"""``sciatica-outcomes work-status``: the work-status GLMM as an audience may see it.

Python equivalent::

    from sciatica_outcomes.models.work import work_status_summary
    table, methods, model = work_status_summary(tables)     # or a Derived, or a store path
    model.odds_ratios, model.shares, model.diagnostics

The model (:mod:`sciatica_outcomes.models.work`): ``at_work ~ week + odi_10 + adherence_10 + (1 |
episode_id)``, binomial, among patients in paid work at enrolment; episodes nested in clinics where the rule
of :func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics` allows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sciatica_outcomes.errors import SciaticaOutcomesError, UnusableInputError
from sciatica_outcomes.models.cli_trial import load_canonical_tables, load_config, print_frame

if TYPE_CHECKING:
    import polars as pl


__all__ = ["work_status_command"]

_AUDIENCE_HELP = (
    "Who reads the output: network (default) or public withhold counts from 1 to the threshold, and the "
    "observed share of a visit whose assessments, or patients at work or off work, are withheld; internal "
    "(exact counts) only for the data of one clinic."
)


def _load(tables_dir: Path | None, db: Path | None) -> dict[str, pl.DataFrame]:
    """The canonical tables from a store, or every canonical table file of a directory (CSV or Parquet)."""
    import polars as pl

    from sciatica_outcomes.schemas.vocabulary import CANONICAL_TABLES

    if db is not None or tables_dir is None or not tables_dir.is_dir():
        return load_canonical_tables(tables_dir, db)  # its messages for a missing store or directory
    out: dict[str, pl.DataFrame] = {}
    for name in CANONICAL_TABLES:
        path = next(
            (p for p in (tables_dir / f"{name}.parquet", tables_dir / f"{name}.csv") if p.exists()), None
        )
        if path is None:
            continue
        try:
            out[name] = (
                pl.read_parquet(path)
                if path.suffix == ".parquet"
                else pl.read_csv(path, infer_schema_length=10000, try_parse_dates=True)
            )
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UnusableInputError(f"cannot read {str(path)!r}: {exc}") from exc
    # the tables the work-status model reads (sessions give the adherence, measures the ODI)
    missing = [n for n in ("episodes", "work", "measures", "sessions") if n not in out]
    if missing:
        raise UnusableInputError(
            f"{str(tables_dir)!r} has no {', '.join(f'{n}.csv' for n in missing)} (or .parquet): the "
            "work-status model needs the episodes, work, measures and sessions tables"
        )
    return out


def work_status_command(
    tables: Annotated[
        Path | None, typer.Option("--tables", help="Directory of canonical tables (CSV or Parquet).")
    ] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB store.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML overriding visit windows.")] = None,
    clinics: Annotated[
        bool, typer.Option("--clinics/--no-clinics", help="Nest episodes in clinics where the rule allows.")
    ] = True,
    nagq: Annotated[int, typer.Option("--nagq", help="Quadrature nodes of the episodes-only model.")] = 9,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the tables.")] = False,
    audience: Annotated[str, typer.Option("--audience", help=_AUDIENCE_HELP)] = "network",
    suppress_threshold: Annotated[
        int | None,
        typer.Option("--suppress-threshold", help="Largest withheld count (network, public; default 10)."),
    ] = None,
) -> None:
    """Work status over time: odds ratios of being at work and the predicted share at work by visit.

    A mixed-effects logistic regression of full or modified duties (against off work because of back or leg
    pain) among patients in paid work at enrolment, on time, the most recent ODI and the share of sessions
    completed. Counts follow the audience's rule (network by default).
    """
    from sciatica_outcomes.reports.cli_compare import _rule

    if not 1 <= nagq <= 25:
        typer.echo(f"error: --nagq must be a whole number from 1 to 25, got {nagq}", err=True)
        raise typer.Exit(code=2)
    try:
        cfg = load_config(config)
        canonical = _load(tables, db)
        if "work" not in canonical or canonical["work"].height == 0:
            raise UnusableInputError(
                "the data have no work table (work status per assessment): ingest a work.csv to model it"
            )
        rule = _rule(audience, suppress_threshold, canonical)
        from sciatica_outcomes.derive import derive_all  # the heavy modules only once the input is usable
        from sciatica_outcomes.models.work import work_status_summary
        from sciatica_outcomes.reports.work import shares_for_audience

        derived = derive_all(canonical, cfg)
        _, methods, model = work_status_summary(derived, config=cfg, clinics=clinics, nagq=nagq)
    except SciaticaOutcomesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    shares = shares_for_audience(model, rule)
    n_ep = "withheld" if rule.is_small(model.n_episodes) else f"{model.n_episodes:,}"
    n_rows = "withheld" if rule.is_small(model.n_assessments) else f"{model.n_assessments:,}"
    if json_out is not None:
        out: dict[str, Any] = {
            "status": model.status,
            "reason": model.reason,
            "formula": model.formula,
            "clinic_note": model.clinic_note,
            "methods": methods,
            "n_episodes": n_ep,
            "n_assessments": n_rows,
            "odds_ratios": model.odds_ratios.to_dicts(),
            "fixed_effects": model.fixed_effects.to_dicts(),
            "random_effects": model.variance_components.to_dicts(),
            "shares": shares.to_dicts(),
            "diagnostics": model.diagnostics,
            "audience": rule.to_dict(),
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1, default=str) + "\n", encoding="utf-8")
    if quiet:
        return
    from rich.console import Console

    from sciatica_outcomes._terminal import print_table
    from sciatica_outcomes.models.cli import varcorr_table

    console = Console()
    if model.status != "estimated":
        console.print(f"Work status model not fitted: {model.reason}.")
        return
    console.print(f"[bold]{model.formula}[/]  binomial (logit)  {model.diagnostics['approximation']}")
    console.print(f"episodes {n_ep}, assessments {n_rows}; {model.clinic_note}")
    print_frame(
        console,
        model.odds_ratios,
        "Odds ratios of being at work (conditional on the patient)",
        ["label", "odds_ratio", "ci_low", "ci_high", "p"],
    )
    print_table(console, varcorr_table(model.variance_components, console.width))
    print_frame(
        console,
        shares,
        "Share at work by visit (population-averaged prediction)",
        ["visit", "n_assessments", "observed_share", "predicted_share", "ci_low", "ci_high"],
    )
    for msg in model.diagnostics["messages"]:
        console.print(msg if msg.startswith("warning:") else f"note: {msg}")
    console.print(rule.describe())
    console.print(methods)
    if json_out is not None:
        console.print(f"Wrote {json_out}")
    if not model.diagnostics["converged"]:
        sys.stderr.write("warning: the optimizer's convergence checks failed; see the diagnostics\n")
