"""``sciatica-outcomes report quarterly|cohort``: render a report notebook to HTML from the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sciatica_outcomes.defaults import DEFAULT_DB
from sciatica_outcomes.errors import SciaticaOutcomesError, StoreError

if TYPE_CHECKING:
    from sciatica_outcomes.reports.runner import ReportResult

# Only typer and light modules load at import; papermill, nbconvert and the report code load when a report
# is rendered.

__all__ = ["render_cohort", "render_quarterly", "report_app"]

report_app = typer.Typer(
    help="Render the quarterly clinic report or the researcher's cohort analysis.", no_args_is_help=True
)


def _err(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message, soft_wrap=True)  # one line, whatever the terminal's width


def render_quarterly(
    db: str | Path,
    quarter: str,
    out: str | Path | None = None,
    *,
    clinic: str | None = None,
    config: str | Path | None = None,
    pdf: bool = False,
    timeout_s: float = 900.0,
    audience: str | None = None,
    suppress_threshold: int | None = None,
) -> ReportResult:
    """Render the quarterly outcome report (``notebooks/quarterly_report.ipynb``).

    Parameters are validated against the store before anything runs (unknown quarter, clinic, audience or
    config file raise ``ReportParameterError``). The report lands in ``out`` (default
    ``reports/<quarter>[-<clinic>]``). ``audience`` defaults to ``internal`` with a clinic and ``network``
    without (:func:`~sciatica_outcomes.reports.quarterly.report_rule`); ``suppress_threshold`` is the largest
    withheld count under ``network`` / ``public`` (default 10).
    """
    from sciatica_outcomes.reports import quarterly
    from sciatica_outcomes.reports.runner import run_notebook

    params: dict[str, Any] = {
        "db": str(Path(db).resolve()),
        "quarter": quarter,
        "clinic": clinic or "",
        "config": str(Path(config).resolve()) if config else "",
        "audience": audience or "",
        "suppress_threshold": suppress_threshold or 0,  # 0: the default
    }
    rule = quarterly.report_rule(audience, suppress_threshold, clinic)
    target = Path(out) if out else Path("reports") / (quarter + (f"-{clinic}" if clinic else ""))
    with_prov = {"report_kind": "quarterly", "audience": rule.to_dict()}
    return run_notebook(
        "quarterly_report.ipynb",
        target,
        params,
        validate=quarterly.validate_parameters,
        timeout_s=timeout_s,
        pdf=pdf,
        provenance=with_prov,
    )


def render_cohort(
    db: str | Path,
    out: str | Path | None = None,
    *,
    outcome: str = "odi",
    config: str | Path | None = None,
    pdf: bool = False,
    timeout_s: float = 1200.0,
    audience: str = "network",
    suppress_threshold: int | None = None,
) -> ReportResult:
    """Render the researcher's cohort analysis (``notebooks/cohort_analysis.ipynb``) into ``out``.

    Parameters are validated against the store before anything runs (missing or empty store, unknown outcome
    or one without values, unreadable config, unknown audience or threshold, fewer episodes with the outcome
    than the minimum size raise ``ReportParameterError``). ``audience`` (``internal``, ``network`` or
    ``public``) and ``suppress_threshold`` choose the suppression rule
    (:func:`sciatica_outcomes.reports.privacy.rule_for`); individual trajectories are drawn only for
    ``internal``.
    """
    from sciatica_outcomes.reports import cohort
    from sciatica_outcomes.reports.runner import run_notebook

    db_path = Path(db).resolve()
    params: dict[str, Any] = {
        "db": str(db_path),
        "outcome": outcome,
        "config": str(Path(config).resolve()) if config else "",
        "audience": audience,
        "suppress_threshold": suppress_threshold,
    }
    target = Path(out) if out else Path("reports") / "cohort"
    params["out_dir"] = str(target.resolve())
    return run_notebook(
        "cohort_analysis.ipynb",
        target,
        params,
        validate=cohort.validate_parameters,
        timeout_s=timeout_s,
        pdf=pdf,
        provenance={"report_kind": "cohort", "audience": audience},
    )


def _done(result: ReportResult) -> None:
    size = result.html.stat().st_size / 1024
    _err(
        f"Report: {result.html} ({size:,.0f} KiB, {len(result.figures)} figures, "
        f"{len(result.tables)} tables, {result.seconds:.1f} s)"
    )
    if result.pdf:
        _err(f"PDF: {result.pdf}")
    typer.echo(str(result.html))


def _fail(exc: Exception) -> None:
    _err(f"[red]error:[/red] {exc}")
    # unusable input (bad parameter, unreadable store or config) is exit 2; a report that failed to run is 1
    raise typer.Exit(code=2 if isinstance(exc, ValueError | StoreError) else 1)


@report_app.command("quarterly")
def quarterly_command(
    quarter: Annotated[str, typer.Option("--quarter", help="Quarter such as 2026Q3.")],
    db: Annotated[Path, typer.Option("--db", help="DuckDB store.")] = DEFAULT_DB,
    clinic: Annotated[str | None, typer.Option("--clinic", help="Restrict to one clinic_id.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report directory.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of clinical thresholds.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print to PDF with headless Chromium.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Overall time limit in seconds.")] = 900.0,
    audience: Annotated[
        str | None,
        typer.Option(
            "--audience",
            help="Who reads the report: internal (the clinic's own staff: its counts exact; needs --clinic), "
            "network or public (counts from 1 to the threshold withheld). Default: internal with --clinic, "
            "network without.",
        ),
    ] = None,
    suppress_threshold: Annotated[
        int | None,
        typer.Option(
            "--suppress-threshold",
            help="Largest withheld count for the network and public audiences (default 10, CMS policy).",
        ),
    ] = None,
) -> None:
    """Render the quarterly clinic outcome report."""
    try:
        _done(
            render_quarterly(
                db,
                quarter,
                out,
                clinic=clinic,
                config=config,
                pdf=pdf,
                timeout_s=timeout,
                audience=audience,
                suppress_threshold=suppress_threshold,
            )
        )
    except SciaticaOutcomesError as exc:
        _fail(exc)


@report_app.command("cohort")
def cohort_command(
    db: Annotated[Path, typer.Option("--db", help="DuckDB store.")] = DEFAULT_DB,
    out: Annotated[Path | None, typer.Option("--out", help="Report directory.")] = None,
    outcome: Annotated[str, typer.Option("--outcome", help="Primary outcome (a measure code).")] = "odi",
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of clinical thresholds.")] = None,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print to PDF with headless Chromium.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Overall time limit in seconds.")] = 1200.0,
    audience: Annotated[
        str,
        typer.Option(
            "--audience",
            help="Who reads it: internal (counts exact, individual trajectories drawn without identifiers), "
            "network or public (counts 1-10 withheld).",
        ),
    ] = "network",
    suppress_threshold: Annotated[
        int | None,
        typer.Option("--suppress-threshold", help="Largest count withheld for network/public (default 10)."),
    ] = None,
) -> None:
    """Render the researcher's cohort analysis."""
    try:
        _done(
            render_cohort(
                db,
                out,
                outcome=outcome,
                config=config,
                pdf=pdf,
                timeout_s=timeout,
                audience=audience,
                suppress_threshold=suppress_threshold,
            )
        )
    except SciaticaOutcomesError as exc:
        _fail(exc)
