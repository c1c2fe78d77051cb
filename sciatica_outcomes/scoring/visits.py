"""Visit windows, baseline, change from baseline, responders and censored tolerance tests.

All functions take the long ``measures`` layout (one row per episode x date x measure) joined to the episode
start date, and add columns; none drops a row.
"""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.schemas.catalogs import measure_catalog

__all__ = [
    "BASELINE_LABEL",
    "assign_visits",
    "cap_share",
    "change_from_baseline",
    "flag_end_of_episode",
]

#: Visit label of the baseline assessment.
BASELINE_LABEL = "w0"


def _need(frame: pl.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UnusableInputError(f"{what} needs columns {list(columns)}; missing {missing}")


def assign_visits(frame: pl.DataFrame, config: ClinicalConfig | None = None) -> pl.DataFrame:
    """Add ``day``, ``week`` and the ``visit`` label of every assessment date.

    Parameters
    ----------
    frame : polars.DataFrame
        Rows with ``episode_id, assessed_on, start_date`` (e.g. measures joined to episodes).
    config : ClinicalConfig, optional
        Baseline window and follow-up visit windows.

    Returns
    -------
    polars.DataFrame
        The input with ``day`` (days since start, Int32), ``week`` (``day / 7``) and ``visit`` (String):
        ``"w0"`` on the last assessment date inside the baseline window, the window label (e.g. ``"w12"``) on
        the assessment date closest to the window's target day (ties go to the later date), null elsewhere.
        Each label occurs on at most one date per episode; all rows of that date carry it.

    Notes
    -----
    Baseline window: ``-baseline_before_days <= day <= baseline_after_days``. Window ``k``:
    ``7 t_k - before_k <= day <= 7 t_k + after_k``, the visit is ``argmin |day - 7 t_k|``.
    """
    config = config or ClinicalConfig()
    _need(frame, ("episode_id", "assessed_on", "start_date"), "assign_visits")
    out = frame.with_columns(
        (pl.col("assessed_on") - pl.col("start_date")).dt.total_days().cast(pl.Int32).alias("day"),
    ).with_columns((pl.col("day") / 7.0).alias("week"))
    dates = out.select("episode_id", "day").unique()
    labelled: list[pl.DataFrame] = []
    base = dates.filter(pl.col("day").is_between(-config.baseline_before_days, config.baseline_after_days))
    labelled.append(
        base.group_by("episode_id")
        .agg(pl.col("day").max())
        .with_columns(pl.lit(BASELINE_LABEL).alias("visit"))
    )
    for label, win in config.visit_windows.items():
        lo, hi = win.bounds_days
        target = 7.0 * win.target_week
        inside = dates.filter(pl.col("day").is_between(lo, hi))
        best = (
            inside.with_columns((pl.col("day") - target).abs().alias("_dist"))
            .sort("episode_id", "_dist", "day", descending=[False, False, True])
            .group_by("episode_id", maintain_order=True)
            .first()
            .select("episode_id", "day", pl.lit(label).alias("visit"))
        )
        labelled.append(best)
    labels = pl.concat(labelled).unique(["episode_id", "day"], keep="first")
    return out.join(labels, on=["episode_id", "day"], how="left")


def flag_end_of_episode(frame: pl.DataFrame, config: ClinicalConfig | None = None) -> pl.DataFrame:
    """Add ``at_end``: the assessment is an end-of-episode (discharge) assessment.

    Parameters
    ----------
    frame : polars.DataFrame
        Rows with ``assessed_on`` and the episode's ``end_date`` (null while the episode is ongoing).
    config : ClinicalConfig, optional
        ``end_window_days``, the length of the end-of-episode window.

    Returns
    -------
    polars.DataFrame
        The input with ``at_end`` (Boolean, never null): ``0 <= end_date - assessed_on <= end_window_days``
        days; false for ongoing episodes and for assessments after the end date.
    """
    config = config or ClinicalConfig()
    _need(frame, ("assessed_on", "end_date"), "flag_end_of_episode")
    before_end = (pl.col("end_date") - pl.col("assessed_on")).dt.total_days()
    return frame.with_columns(
        before_end.is_between(0, config.end_window_days).fill_null(False).alias("at_end")
    )


def change_from_baseline(frame: pl.DataFrame, config: ClinicalConfig | None = None) -> pl.DataFrame:
    """Add baseline, change, percent change, responder and recovered flags to long measures.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`assign_visits` with ``measure, value`` and optionally ``stopped_reason`` and
        ``instrument_version``.
    config : ClinicalConfig, optional
        MCIDs (absolute, relative, recovered) and censoring reasons.

    Returns
    -------
    polars.DataFrame
        The input with ``censored`` (test stopped at its cap), ``baseline`` (value at the ``w0`` visit of
        the same measure), ``baseline_censored``, ``change`` (value - baseline), ``pct_change``
        (100 x change / |baseline|; null when the baseline is 0), ``improvement`` (change signed so that
        positive = better, by the measure's direction in the measure catalog), ``change_bound`` ("exact",
        "lower" when the follow-up is censored, "upper" when the baseline is censored, "unknown" when
        both are),
        ``version_mismatch`` (baseline and follow-up instrument versions differ: change set to null),
        ``responder_mcid``, ``responder_relative`` and ``recovered`` (null where the measure has no
        threshold configured, or where change is null).

    Notes
    -----
    With direction ``d = -1`` when higher is worse and ``+1`` when higher is better:

    - ``improvement = d * (value - baseline)``
    - ``responder_mcid = improvement >= mcid.absolute``
    - ``responder_relative = improvement >= mcid.relative * |baseline|`` (baseline != 0)
    - ``recovered = value <= mcid.recovered`` (higher worse) or ``value >= mcid.recovered`` (higher better)

    A capped tolerance test (``stopped_reason`` in ``censor_reasons``) is right-censored: its value is a
    lower bound, never the true tolerance, so its change is a bound and it is never a responder by value
    alone unless the bound already meets the threshold.

    Validated against: Ostelo et al., Spine 2008;33:90 (ODI 10 / NPRS 2 / RMDQ 5 points or 30 %); hand-worked
    examples in ``tests/scoring/test_visits.py`` in both directions.
    """
    config = config or ClinicalConfig()
    _need(frame, ("episode_id", "measure", "value", "visit"), "change_from_baseline")
    out = frame
    if "stopped_reason" not in out.columns:
        out = out.with_columns(pl.lit(None, pl.String).alias("stopped_reason"))
    if "instrument_version" not in out.columns:
        out = out.with_columns(pl.lit(None, pl.String).alias("instrument_version"))
    out = out.with_columns(
        pl.col("stopped_reason").is_in(list(config.censor_reasons)).fill_null(False).alias("censored")
    )
    base = out.filter(pl.col("visit") == BASELINE_LABEL).select(
        "episode_id",
        "measure",
        pl.col("value").alias("baseline"),
        pl.col("censored").alias("baseline_censored"),
        pl.col("instrument_version").alias("_base_version"),
    )
    out = out.join(base, on=["episode_id", "measure"], how="left")
    cat = measure_catalog().select(
        pl.col("code").alias("measure"), pl.col("higher_is_better").alias("_better")
    )
    mcid = pl.DataFrame(
        {
            "measure": list(config.mcid),
            "_abs": [m.absolute for m in config.mcid.values()],
            "_rel": [m.relative for m in config.mcid.values()],
            "_rec": [m.recovered for m in config.mcid.values()],
        },
        schema={"measure": pl.String, "_abs": pl.Float64, "_rel": pl.Float64, "_rec": pl.Float64},
    )
    out = out.join(cat, on="measure", how="left").join(mcid, on="measure", how="left")
    direction = pl.when(pl.col("_better")).then(1.0).otherwise(-1.0)
    mismatch = (
        pl.col("_base_version").is_not_null()
        & pl.col("instrument_version").is_not_null()
        & (pl.col("_base_version") != pl.col("instrument_version"))
    )
    out = out.with_columns(mismatch.fill_null(False).alias("version_mismatch"))
    change = pl.when(pl.col("version_mismatch")).then(None).otherwise(pl.col("value") - pl.col("baseline"))
    out = out.with_columns(change.alias("change")).with_columns(
        pl.when(pl.col("baseline") != 0)
        .then(100.0 * pl.col("change") / pl.col("baseline").abs())
        .otherwise(None)
        .alias("pct_change"),
        (direction * pl.col("change")).alias("improvement"),
        pl.when(pl.col("change").is_null())
        .then(None)
        .when(pl.col("censored") & pl.col("baseline_censored"))
        .then(pl.lit("unknown"))
        .when(pl.col("censored"))
        .then(pl.lit("lower"))
        .when(pl.col("baseline_censored"))
        .then(pl.lit("upper"))
        .otherwise(pl.lit("exact"))
        .alias("change_bound"),
    )

    # a censored follow-up bounds the improvement from below ('lower'): a responder call is sure only when
    # the bound already meets the threshold, otherwise undetermined (null); 'upper'/'unknown' bounds: null.
    def call(threshold: pl.Expr, usable: pl.Expr) -> pl.Expr:
        meets = pl.col("improvement") >= threshold
        return (
            pl.when(~usable | pl.col("change_bound").is_null())
            .then(None)
            .when(pl.col("change_bound") == "exact")
            .then(meets)
            .when((pl.col("change_bound") == "lower") & meets)
            .then(True)
            .otherwise(None)
        )

    out = out.with_columns(
        call(pl.col("_abs"), pl.col("_abs").is_not_null()).alias("responder_mcid"),
        call(
            pl.col("_rel") * pl.col("baseline").abs(),
            pl.col("_rel").is_not_null() & (pl.col("baseline") != 0),
        ).alias("responder_relative"),
        pl.when(pl.col("_rec").is_null() | pl.col("value").is_null())
        .then(None)
        .when(pl.col("_better"))
        .then(pl.col("value") >= pl.col("_rec"))
        .otherwise(pl.col("value") <= pl.col("_rec"))
        .alias("recovered"),
    )
    return out.drop("_base_version", "_better", "_abs", "_rel", "_rec")


def cap_share(frame: pl.DataFrame, by: str | list[str] = "visit") -> pl.DataFrame:
    """Share of tolerance tests that reached their cap, per measure and grouping.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`change_from_baseline` (needs ``measure, censored``).
    by : str or list of str
        Grouping columns besides ``measure`` (default ``visit``).

    Returns
    -------
    polars.DataFrame
        ``measure, <by>, n_tests, n_at_cap, share_at_cap`` for measures with at least one test carrying a
        ``stopped_reason``.

    Notes
    -----
    ``share_at_cap = n_at_cap / n_tests``; capped tests are counted, never averaged as if the cap were the
    true tolerance (Rainville et al., Spine J 2012;12:101).
    """
    by = [by] if isinstance(by, str) else list(by)
    tests = frame.filter(pl.col("stopped_reason").is_not_null().any().over("measure"))
    return (
        tests.group_by(["measure", *by])
        .agg(pl.len().alias("n_tests"), pl.col("censored").sum().cast(pl.Int64).alias("n_at_cap"))
        .with_columns((pl.col("n_at_cap") / pl.col("n_tests")).alias("share_at_cap"))
        .sort(["measure", *by], nulls_last=True)
    )
