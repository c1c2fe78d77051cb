"""Pain response to sessions: pain-monitoring bands, spikes, flares, week-to-week rise and trend."""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive._common import (
    attach_episodes,
    combined_code,
    completed_sessions,
    exercise_rows_to_sessions,
    max_int,
    min_int,
    sort_by_code,
)

__all__ = ["episode_pain", "flare_panel", "session_pain", "weekly_pain"]


def session_pain(
    sessions: pl.DataFrame,
    session_exercises: pl.DataFrame | None = None,
    config: ClinicalConfig | None = None,
) -> pl.DataFrame:
    """Classify the pain response of every completed session.

    Parameters
    ----------
    sessions : polars.DataFrame
        Canonical sessions (``pain_before, pain_after, pain_next_day`` 0-10, any may be null).
    session_exercises : polars.DataFrame, optional
        Canonical exercise rows; their highest ``pain_during`` counts as activity pain.
    config : ClinicalConfig, optional
        Pain bands, flare rise and the settling window.

    Returns
    -------
    polars.DataFrame
        One row per completed session: ``session_id, episode_id, session_date, pain_before, pain_after,
        pain_next_day, activity_pain, pain_band, spike, settle_check, settled, flare, settle_unknown``.

    Notes
    -----
    - ``activity_pain = max(pain_after, max pain_during)``; ``pain_band`` = "safe" when
      ``<= pain_safe_max`` (2), "acceptable" when ``<= pain_acceptable_max`` (5), else "high_risk"
      (Thomee 1997 pain-monitoring model).
    - ``spike``: ``pain_after - pain_before >= flare_rise_points`` or
      ``pain_next_day - pain_before >= flare_rise_points`` (2 points).
    - ``settle_check``: the next-day rating; when it is missing, the ``pain_before`` of the episode's next
      completed session if that starts within ``settle_hours`` (48 h = 2 calendar days).
    - ``settled = settle_check - pain_before < flare_rise_points``; ``flare = spike & ~settled``; a spike
      without any check is ``settle_unknown`` (not counted as a flare, reported).

    Validated against: the planted flares of the synthetic cohort (``tests/derive/test_pain.py``); rule
    from Thomee, Phys Ther 1997;77:1690 and Silbernagel et al., AJSM 2007;35:897 (domain.md §3).
    """
    config = config or ClinicalConfig()
    done = _completed_with_pain(sessions)
    during = None
    if session_exercises is not None and "pain_during" in session_exercises.columns:
        rows = exercise_rows_to_sessions(
            session_exercises.select("session_id", pl.col("pain_during").cast(pl.Float64)), done
        )
        during = _max_pain_during(rows, done)
    return _coded_session_pain(done, during, config).drop("_e", "_s")


def _completed_with_pain(sessions: pl.DataFrame) -> pl.DataFrame:
    """Completed sessions (sorted, coded) with ``pain_before, pain_after, pain_next_day`` as floats."""
    s = sessions
    for col in ("pain_before", "pain_after", "pain_next_day"):
        if col not in s.columns:
            s = s.with_columns(pl.lit(None, pl.Float64).alias(col))
    return completed_sessions(s, pl.col("pain_before", "pain_after", "pain_next_day").cast(pl.Float64))


def _max_pain_during(rows: pl.DataFrame, done: pl.DataFrame) -> pl.Series:
    """Highest ``pain_during`` of each completed session (aligned with ``done``; null without exercise rows).

    ``rows`` are exercise rows with the row number ``_row`` of their session in ``done`` (see
    :func:`~sciatica_outcomes.derive._common.exercise_rows_to_sessions`) and a float ``pain_during``.
    """
    per = (
        sort_by_code(rows.select(pl.col("_row").cast(pl.Int64), "pain_during"), "_row")
        .group_by("_row", maintain_order=True)
        .agg(pl.col("pain_during").max())
    )
    return (
        done.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
        .join(per, on="_row", how="left", maintain_order="left")["pain_during"]
        .alias("_during")
    )


def _coded_session_pain(done: pl.DataFrame, during: pl.Series | None, config: ClinicalConfig) -> pl.DataFrame:
    """:func:`session_pain` of the sorted, coded completed sessions of :func:`_completed_with_pain`.

    ``during`` is the highest activity pain of each session (:func:`_max_pain_during`), or None. The result
    keeps the episode and session codes ``_e, _s`` and the row order of ``done``.
    """
    done = done.with_columns(
        during.alias("_during") if during is not None else pl.lit(None, pl.Float64).alias("_during")
    )
    settle_days = config.settle_hours / 24.0
    rise = config.flare_rise_points
    # sorted by episode: the next row is the episode's next completed session unless the episode changes
    same_episode = pl.col("_e") == pl.col("_e").shift(-1)
    nxt_date = pl.when(same_episode).then(pl.col("session_date").shift(-1))
    nxt_before = pl.when(same_episode).then(pl.col("pain_before").shift(-1))
    within = (nxt_date - pl.col("session_date")).dt.total_days() <= settle_days
    out = done.with_columns(
        pl.max_horizontal("pain_after", "_during").alias("activity_pain"),
        pl.coalesce(pl.col("pain_next_day"), pl.when(within).then(nxt_before)).alias("settle_check"),
    ).with_columns(
        pl.when(pl.col("activity_pain").is_null())
        .then(None)
        .when(pl.col("activity_pain") <= config.pain_safe_max)
        .then(pl.lit("safe"))
        .when(pl.col("activity_pain") <= config.pain_acceptable_max)
        .then(pl.lit("acceptable"))
        .otherwise(pl.lit("high_risk"))
        .alias("pain_band"),
        (
            ((pl.col("pain_after") - pl.col("pain_before")) >= rise).fill_null(False)
            | ((pl.col("pain_next_day") - pl.col("pain_before")) >= rise).fill_null(False)
        ).alias("spike"),
        ((pl.col("settle_check") - pl.col("pain_before")) < rise).alias("settled"),
    )
    return out.with_columns(
        (pl.col("spike") & (pl.col("settled") == False)).fill_null(False).alias("flare"),  # noqa: E712
        (pl.col("spike") & pl.col("settled").is_null()).alias("settle_unknown"),
    ).select(
        "session_id",
        "episode_id",
        "session_date",
        "pain_before",
        "pain_after",
        "pain_next_day",
        "activity_pain",
        "pain_band",
        "spike",
        "settle_check",
        "settled",
        "flare",
        "settle_unknown",
        "_e",
        "_s",
    )


def weekly_pain(
    session_pain_frame: pl.DataFrame,
    episodes: pl.DataFrame,
    config: ClinicalConfig | None = None,
) -> pl.DataFrame:
    """Weekly mean pre-session pain per episode and week-to-week rises.

    Parameters
    ----------
    session_pain_frame : polars.DataFrame
        Output of :func:`session_pain`.
    episodes : polars.DataFrame
        Canonical episodes (``start_date``).
    config : ClinicalConfig, optional
        ``weekly_rise_points``.

    Returns
    -------
    polars.DataFrame
        ``episode_id, program_week, mean_pain_before, n_sessions, rise, rising`` with ``program_week =
        floor((session_date - start_date) / 7)``, ``rise`` = change from the previous observed week and
        ``rising = rise >= weekly_rise_points`` (pain must not rise week to week: Thomee 1997).
    """
    config = config or ClinicalConfig()
    return _weekly_pain(attach_episodes(session_pain_frame, episodes, "start_date"), config)


def _weekly_pain(d: pl.DataFrame, config: ClinicalConfig) -> pl.DataFrame:
    """:func:`weekly_pain` of session pain rows with ``start_date`` and the episode code ``_ek``."""
    d = d.with_columns(
        ((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("program_week")
    )
    w_min = min_int(d["program_week"])
    n_w = max_int(d["program_week"]) - w_min + 2
    n_e = max_int(d["_ek"]) + 1
    d = sort_by_code(
        d.select(
            "episode_id",
            "_ek",
            "program_week",
            "pain_before",
            (pl.col("program_week") - w_min + 1).fill_null(0).alias("_w"),
        ).with_columns(combined_code([("_ek", n_e), ("_w", n_w)]).alias("_o")),
        "_o",
    )
    return (
        d.group_by("_o", maintain_order=True)
        .agg(
            pl.col("episode_id", "_ek", "program_week").first(),
            pl.col("pain_before").mean().alias("mean_pain_before"),
            pl.len().alias("n_sessions"),
        )
        .with_columns(
            pl.when(pl.col("_ek") == pl.col("_ek").shift(1))
            .then(pl.col("mean_pain_before").diff())
            .alias("rise")
        )
        .with_columns((pl.col("rise") >= config.weekly_rise_points).fill_null(False).alias("rising"))
        .select("episode_id", "program_week", "mean_pain_before", "n_sessions", "rise", "rising")
    )


def flare_panel(
    session_pain_frame: pl.DataFrame,
    episodes: pl.DataFrame,
    config: ClinicalConfig | None = None,
) -> pl.DataFrame:
    """Flares per episode and program week, with the sessions at risk: the data of the flare-rate GLMM.

    Parameters
    ----------
    session_pain_frame : polars.DataFrame
        Output of :func:`session_pain` (one row per completed session).
    episodes : polars.DataFrame
        Canonical episodes (``start_date``; ``clinic_id`` is carried when present).
    config : ClinicalConfig, optional
        ``flare_rise_points`` and ``program_weeks``.

    Returns
    -------
    polars.DataFrame
        One row per episode and program week with a completed session: ``episode_id, clinic_id,
        program_week, completed, at_risk, flares, settle_unknown``, for weeks ``0 <= program_week <
        program_weeks`` (``program_week = floor((session_date - start_date) / 7)``).

    Notes
    -----
    ``at_risk`` counts completed sessions whose ``pain_before`` is recorded and at most ``10 -
    flare_rise_points``: a flare (a rise of ``flare_rise_points`` that does not settle) can be observed only
    there. ``flares / at_risk`` is the binomial outcome of ``MixedGLM(family="binomial", trials="at_risk")``
    and ``flares`` with ``offset = log(at_risk)`` the Poisson one.

    Validated against: the flare decline planted in the synthetic cohort (``tests/derive/test_pain.py``,
    ``tests/models/test_glmm.py``).
    """
    config = config or ClinicalConfig()
    cols = ["start_date", *(["clinic_id"] if "clinic_id" in episodes.columns else [])]
    d = attach_episodes(session_pain_frame, episodes, *cols).with_columns(
        ((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("program_week")
    )
    if "clinic_id" not in d.columns:
        d = d.with_columns(pl.lit(None, pl.String).alias("clinic_id"))
    d = d.filter(pl.col("program_week").is_between(0, config.program_weeks - 1))
    n_w = config.program_weeks
    n_e = max_int(d["_ek"]) + 1
    at_risk = pl.col("pain_before").is_not_null() & (pl.col("pain_before") <= 10 - config.flare_rise_points)
    d = sort_by_code(
        d.select(
            "episode_id",
            "clinic_id",
            "_ek",
            "program_week",
            at_risk.alias("_risk"),
            pl.col("flare").fill_null(False).alias("_flare"),
            pl.col("settle_unknown").fill_null(False).alias("_unknown"),
        ).with_columns(combined_code([("_ek", n_e), ("program_week", n_w)]).alias("_o")),
        "_o",
    )
    return (
        d.group_by("_o", maintain_order=True)
        .agg(
            pl.col("episode_id", "clinic_id", "program_week").first(),
            pl.len().alias("completed"),
            pl.col("_risk").sum().alias("at_risk"),
            (pl.col("_flare") & pl.col("_risk")).sum().alias("flares"),
            pl.col("_unknown").sum().alias("settle_unknown"),
        )
        .select(
            "episode_id",
            "clinic_id",
            pl.col("program_week").cast(pl.Int64),
            *(pl.col(c).cast(pl.Int64) for c in ("completed", "at_risk", "flares", "settle_unknown")),
        )
    )


def episode_pain(
    session_pain_frame: pl.DataFrame,
    episodes: pl.DataFrame,
    config: ClinicalConfig | None = None,
) -> pl.DataFrame:
    """Per-episode pain response: flare count and rate, band counts, weekly rises and the pain trend.

    Returns
    -------
    polars.DataFrame
        ``episode_id, n_completed_with_pain, n_spikes, n_flares, n_settle_unknown, flare_rate_per_100,
        n_high_risk, n_rising_weeks, pain_before_slope_per_week``.

    Notes
    -----
    ``flare_rate_per_100 = 100 * n_flares / n_completed`` (completed sessions); the trend is the least-squares
    slope of ``pain_before`` on weeks since start, ``sum((t - t̄)(y - ȳ)) / sum((t - t̄)^2)``, null with
    fewer than two distinct weeks.
    """
    config = config or ClinicalConfig()
    d = attach_episodes(session_pain_frame, episodes, "start_date")
    d = sort_by_code(d, "_ek").with_columns(
        ((pl.col("session_date") - pl.col("start_date")).dt.total_days() / 7.0).alias("_t")
    )
    y = d.filter(pl.col("pain_before").is_not_null())
    tc = pl.col("_t") - pl.col("_t").mean()
    slope = y.group_by("_ek", maintain_order=True).agg(
        pl.col("episode_id").first(),
        pl.when((tc**2).sum() > 0)
        .then((tc * (pl.col("pain_before") - pl.col("pain_before").mean())).sum() / (tc**2).sum())
        .alias("pain_before_slope_per_week"),
    )
    counts = d.group_by("_ek", maintain_order=True).agg(
        pl.col("episode_id").first(),
        pl.len().alias("n_completed"),
        pl.col("pain_before").is_not_null().sum().alias("n_completed_with_pain"),
        pl.col("spike").sum().alias("n_spikes"),
        pl.col("flare").sum().alias("n_flares"),
        pl.col("settle_unknown").sum().alias("n_settle_unknown"),
        (pl.col("pain_band") == "high_risk").sum().alias("n_high_risk"),
    )
    rising = (
        _weekly_pain(d, config)
        .group_by("episode_id", maintain_order=True)
        .agg(pl.col("rising").sum().alias("n_rising_weeks"))
    )
    return (
        episodes.select("episode_id")
        .join(counts.drop("_ek"), on="episode_id", how="left")
        .join(rising, on="episode_id", how="left")
        .join(slope.drop("_ek"), on="episode_id", how="left")
        .with_columns(
            pl.col("n_completed", "n_completed_with_pain", "n_spikes", "n_flares", "n_settle_unknown")
            .fill_null(0)
            .cast(pl.Int64),
            pl.col("n_high_risk", "n_rising_weeks").fill_null(0).cast(pl.Int64),
        )
        .with_columns(
            pl.when(pl.col("n_completed") > 0)
            .then(100.0 * pl.col("n_flares") / pl.col("n_completed"))
            .alias("flare_rate_per_100")
        )
        .select(
            "episode_id",
            "n_completed_with_pain",
            "n_spikes",
            "n_flares",
            "n_settle_unknown",
            "flare_rate_per_100",
            "n_high_risk",
            "n_rising_weeks",
            "pain_before_slope_per_week",
        )
        .sort("episode_id")
    )
