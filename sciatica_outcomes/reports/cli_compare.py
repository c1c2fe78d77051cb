"""``sciatica-outcomes responders`` and ``compare-clinics``: model results as an audience may see them.

Python equivalents::

    from sciatica_outcomes.models import responder_frame, responder_analysis, episode_outcomes
    from sciatica_outcomes.reports.privacy import rule_for, withhold_units
    responder_analysis(responder_frame(tables, "odi"))
    cmp = compare_providers(episode_outcomes(tables, "odi", "w12"))
    withhold_units(cmp.providers, rule=rule_for("network"))
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sciatica_outcomes.defaults import DEFAULT_CASE_MIX
from sciatica_outcomes.errors import SciaticaOutcomesError, UnusableInputError
from sciatica_outcomes.models.cli_trial import load_canonical_tables, load_config, print_frame, write_frame

if TYPE_CHECKING:
    import polars as pl

    from sciatica_outcomes.reports.privacy import SuppressionRule

# Only typer and light modules load at import; each command imports the models it runs.

__all__ = ["compare_clinics_command", "responders_command"]

_AUDIENCE_HELP = (
    "Who reads the output: network (default) or public withhold counts from 1 to the threshold and every "
    "statistic of a withheld unit; internal (exact counts) only for the data of one clinic."
)
_THRESHOLD_HELP = "Largest withheld count for the network and public audiences (default 10, CMS policy)."


def _rule(audience: str, threshold: int | None, tables: Mapping[str, pl.DataFrame]) -> SuppressionRule:
    """The audience's rule; ``internal`` only for data of one clinic (exact counts are that clinic's own)."""
    from sciatica_outcomes.reports.privacy import rule_for

    if audience == "internal":
        clinics = (
            tables["episodes"]["clinic_id"].n_unique() if "clinic_id" in tables["episodes"].columns else 1
        )
        if clinics > 1:
            raise UnusableInputError(
                f"the internal audience is one clinic's own staff and the data hold {clinics} clinics: use "
                "--audience network or public"
            )
    try:
        return rule_for(audience, threshold)
    except ValueError as exc:
        raise UnusableInputError(str(exc)) from exc


def _withhold_responders(res: pl.DataFrame, rule: SuppressionRule) -> pl.DataFrame:
    """Responder shares as the audience may see them: no share or interval of a withheld count.

    A row's ``n_determined`` and ``n_undetermined`` split its ``n_assessed`` and ``n_responders`` is a part of
    ``n_determined``: each is withheld when it, its complement or its whole is small
    (:func:`~sciatica_outcomes.reports.privacy.suppress_counts` with ``within``); the share and its Wilson
    interval give the counts back, so they go with them.
    """
    import polars as pl

    from sciatica_outcomes.reports.privacy import SUPPRESSED, suppress_counts

    counts = ["n_assessed", "n_determined", "n_undetermined", "n_responders"]
    shown = suppress_counts(
        res,
        ["n_assessed"],
        totals_known=False,
        within={"n_determined": "n_assessed", "n_undetermined": "n_assessed", "n_responders": "n_determined"},
        rule=rule,
    )
    # a model-based row has no n_assessed: its n_determined (patients in the model) stands on its own
    model_row = res["n_assessed"].is_null()
    small_model = model_row & res["n_determined"].fill_null(0).is_between(rule.low, rule.high)
    shown = shown.with_columns(
        pl.when(pl.lit(small_model))
        .then(pl.lit(SUPPRESSED))
        .otherwise(pl.col("n_determined"))
        .alias("n_determined")
    )
    # a share of fewer than min_group patients (one, under internal) is a row-level value
    few = pl.lit(res["n_determined"].fill_null(0) < rule.min_group)
    hidden = pl.any_horizontal(pl.col(c) == SUPPRESSED for c in counts).fill_null(False) | few
    return shown.with_columns(
        pl.when(hidden).then(None).otherwise(pl.col(c)).alias(c) for c in ("share", "ci_low", "ci_high")
    )


def _withhold_groups(
    res: pl.DataFrame, by: str, hidden: list[str | None], cells: dict[tuple[str | None, str, str], str]
) -> pl.DataFrame:
    """Observed rows of the withheld units: every count ``*``, no share or interval; listed after the others.

    ``cells`` (:func:`withheld_responder_cells`) withholds the responders, share and interval of a shown
    unit's row. The shown rows keep their order; the withheld units' rows follow, ordered by their label
    (never by size); the model-based rows (overall, no unit) come last as before.
    """
    import polars as pl

    from sciatica_outcomes.reports.privacy import SUPPRESSED

    if not hidden and not cells:
        return res
    counts = ["n_assessed", "n_determined", "n_undetermined", "n_responders"]
    observed = pl.col("n_assessed").is_not_null() | pl.col("n_undetermined").is_not_null()
    unit = pl.col(by).cast(pl.String)
    is_hidden = observed & (
        unit.is_in([h for h in hidden if h is not None]) | (unit.is_null() & (None in hidden))
    )
    key = pl.concat_str([unit.fill_null("\x00"), pl.col("definition"), pl.col("visit")], separator="\x1f")

    def keys(level: str | None) -> list[str]:
        return [
            "\x1f".join(["\x00" if u is None else u, d, v])
            for (u, d, v), x in cells.items()
            if level in (None, x)
        ]

    in_cell, in_split = observed & key.is_in(keys(None)), observed & key.is_in(keys("split"))
    res = res.with_columns(
        *(
            pl.when(in_split).then(pl.lit(SUPPRESSED)).otherwise(pl.col(c)).alias(c)
            for c in ("n_determined", "n_undetermined")
        ),
        pl.when(in_cell).then(pl.lit(SUPPRESSED)).otherwise(pl.col("n_responders")).alias("n_responders"),
        *(pl.when(in_cell).then(None).otherwise(pl.col(c)).alias(c) for c in ("share", "ci_low", "ci_high")),
    )
    blanked = res.with_columns(
        *(pl.when(is_hidden).then(pl.lit(SUPPRESSED)).otherwise(pl.col(c)).alias(c) for c in counts),
        *(
            pl.when(is_hidden).then(None).otherwise(pl.col(c)).alias(c)
            for c in ("share", "ci_low", "ci_high")
        ),
        is_hidden.alias("__hidden"),
        observed.alias("__observed"),
    )
    shown = blanked.filter(pl.col("__observed") & ~pl.col("__hidden"))
    withheld = blanked.filter(pl.col("__hidden")).sort(
        pl.col(by).cast(pl.String), nulls_last=True, maintain_order=True
    )
    rest = blanked.filter(~pl.col("__observed"))
    return pl.concat([shown, withheld, rest]).drop("__hidden", "__observed")


# ---------------------------------------------------------------------------------------------------
# responders and compare-clinics
# ---------------------------------------------------------------------------------------------------


def responders_command(
    measure: Annotated[str, typer.Option("--measure", help="Outcome measure, e.g. odi, nprs_leg.")] = "odi",
    tables: Annotated[
        Path | None, typer.Option("--tables", help="Directory of canonical tables (CSV or Parquet).")
    ] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB store.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Group the observed shares, e.g. clinic_id.")] = None,
    model: Annotated[bool, typer.Option("--model/--no-model", help="Add the MMRM-based share.")] = True,
    config: Annotated[Path | None, typer.Option("--config", help="TOML overriding MCIDs / windows.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write a tidy .csv or .json here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the table.")] = False,
    audience: Annotated[str, typer.Option("--audience", help=_AUDIENCE_HELP)] = "network",
    suppress_threshold: Annotated[
        int | None, typer.Option("--suppress-threshold", help=_THRESHOLD_HELP)
    ] = None,
) -> None:
    """Share reaching the MCID (absolute and relative) by visit: observed (Wilson) and model-based.

    Counts, shares and intervals follow the audience's rule (network by default): a share whose counts are
    withheld is not shown.
    """
    from rich.console import Console

    from sciatica_outcomes.models.responders import responder_analysis, responder_frame
    from sciatica_outcomes.reports.units import unit_counts, withheld_responder_cells, withheld_units

    try:
        cfg = load_config(config)
        canonical = load_canonical_tables(tables, db)
        rule = _rule(audience, suppress_threshold, canonical)
        frame = responder_frame(canonical, measure, cfg)
        res = _withhold_responders(responder_analysis(frame, cfg, by=by, model=model), rule)
        if by is not None:
            # the units compare-clinics withholds, and their complements across every published count
            counts = unit_counts(frame, by)
            hidden = withheld_units(counts, by, rule)
            cells = withheld_responder_cells(counts, by, hidden, rule)
            res = _withhold_groups(res, by, hidden, cells)
    except SciaticaOutcomesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    assumptions = sorted(set(res["assumption"].drop_nulls().to_list()))
    write_frame(res, out, {"measure": measure, "assumptions": assumptions, "audience": rule.to_dict()})
    if not quiet:
        console = Console()
        cols = [
            "method",
            "definition",
            *([by] if by else []),
            "visit",
            "n_determined",
            "share",
            "ci_low",
            "ci_high",
        ]
        print_frame(console, res, f"Responders: {measure}", cols)
        console.print(rule.describe())
        for a in assumptions:
            console.print(f"assumption: {a}")
        for note in sorted(set(res["note"].drop_nulls().to_list())):
            console.print(f"note: {note}")
        if out is not None:
            console.print(f"Wrote {out}")


def compare_clinics_command(
    measure: Annotated[str, typer.Option("--measure", help="Outcome measure, e.g. odi.")] = "odi",
    visit: Annotated[str, typer.Option("--visit", help="Follow-up visit label, e.g. w12.")] = "w12",
    level: Annotated[str, typer.Option("--level", help="clinic_id or therapist_id.")] = "clinic_id",
    case_mix: Annotated[str, typer.Option("--case-mix", help="Case-mix formula.")] = DEFAULT_CASE_MIX,
    tables: Annotated[
        Path | None, typer.Option("--tables", help="Directory of canonical tables (CSV or Parquet).")
    ] = None,
    db: Annotated[Path | None, typer.Option("--db", help="DuckDB store.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML overriding visit windows.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write a tidy .csv or .json here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print the table.")] = False,
    audience: Annotated[str, typer.Option("--audience", help=_AUDIENCE_HELP)] = "network",
    suppress_threshold: Annotated[
        int | None, typer.Option("--suppress-threshold", help=_THRESHOLD_HELP)
    ] = None,
) -> None:
    """Risk-adjusted comparison: observed - expected improvement, funnel limits, shrunken estimates.

    Under the network and public audiences (network by default) a unit whose count is withheld shows
    nothing but its code, after the shown units: no interval, limit, band, estimate or rank (an interval's
    width gives n back), ranks are among the shown units, and the model's row counts are withheld with it.
    """
    from rich.console import Console

    from sciatica_outcomes.models.compare import compare_providers, episode_outcomes
    from sciatica_outcomes.reports.privacy import SUPPRESSED
    from sciatica_outcomes.reports.units import withhold_comparison

    try:
        canonical = load_canonical_tables(tables, db)
        rule = _rule(audience, suppress_threshold, canonical)
        cfg = load_config(config)
        frame = episode_outcomes(canonical, measure, visit, cfg)
        res = compare_providers(frame, level=level, case_mix=case_mix)
        # the units responders --by withholds (their counts at every visit, this n among them)
        providers = withhold_comparison(
            res.providers,
            canonical,
            measure,
            level,
            rule,
            config=cfg,
            case_mix=case_mix,
            rank_col="rank_shrunken",
            rank_by="shrunken",
        )
    except SciaticaOutcomesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    diagnostics = dict(res.diagnostics)
    withheld = providers["n"] == SUPPRESSED
    if withheld.any():
        diagnostics.update({k: SUPPRESSED for k in diagnostics if k.startswith(("rows_", "dropped_"))})
    # with every unit withheld, the model's SDs would be statistics of units the output does not show
    sds = (None, None) if withheld.all() else (res.residual_sd, res.between_sd)
    write_frame(
        providers,
        out,
        {
            "measure": measure,
            "visit": visit,
            "case_mix": res.case_mix.to_dicts(),
            "residual_sd": sds[0],
            "between_sd": sds[1],
            "diagnostics": diagnostics,
            "audience": rule.to_dict(),
        },
    )
    if not quiet:
        console = Console()
        cols = ["provider", "n", "observed", "expected", "o_minus_e", "band", "shrunken", "shrunken_low"]
        cols += ["shrunken_high", "rank_shrunken"]
        print_frame(console, providers, f"{measure} improvement at {visit} by {level}", cols)
        console.print(rule.describe())
        sd_text = (
            "SDs withheld (every unit is)"
            if sds[0] is None
            else (f"residual SD {res.residual_sd:.3g}; between SD {res.between_sd:.3g}")
        )
        console.print(f"case mix: {case_mix}; {sd_text}")
        if out is not None:
            console.print(f"Wrote {out}")
