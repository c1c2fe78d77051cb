"""Adherence to the prescribed 2-3 sessions a week, longest gap and dropout."""

from __future__ import annotations

from datetime import date

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive._common import (
    attach_episodes,
    combined_code,
    episode_windows,
    max_int,
    run_starts,
    sort_by_code,
)
from sciatica_outcomes.schemas.vocabulary import END_REASONS

__all__ = ["episode_adherence", "weekly_adherence"]

#: End reasons that stop the program for a reason other than dropping out (an unexplained "other" does not).
_STOP_REASONS = tuple(r for r in END_REASONS if r not in ("dropped_out", "other"))


def weekly_adherence(
    episodes: pl.DataFrame,
    sessions: pl.DataFrame,
    config: ClinicalConfig | None = None,
    data_cut: date | None = None,
) -> pl.DataFrame:
    """Completed sessions per ISO week against the prescription.

    Parameters
    ----------
    episodes, sessions : polars.DataFrame
        Canonical tables.
    config : ClinicalConfig, optional
        Program length and the default prescription.
    data_cut : date, optional
        Last date the data can cover; defaults to no cut (episode ends and program length only).

    Returns
    -------
    polars.DataFrame
        One row per episode x ISO week (Monday ``week_start``) overlapping the episode's observed program
        window: ``episode_id, week_start, iso_year, iso_week, days_in_window, completed, scheduled,
        prescribed, ratio, met``.

    Notes
    -----
    ``prescribed = spw * days_in_window / 7`` (a partial first or last week is prorated),
    ``ratio = completed / prescribed``, ``met = completed >= floor(prescribed)`` (whole sessions).
    """
    config = config or ClinicalConfig()
    win = episode_windows(episodes, config, data_cut)
    return _weekly_adherence(win, _inside(sessions, win)).drop("_ek")


def _inside(sessions: pl.DataFrame, win: pl.DataFrame) -> pl.DataFrame:
    """Sessions inside their episode's observed window, with the episode code ``_ek`` (episode_id order).

    Returns ``episode_id, session_date, status, _ek`` stably sorted by ``_ek``.
    """
    rows = attach_episodes(
        sessions.select("episode_id", "session_date", "status"), win, "start_date", "exposure_end"
    ).filter(pl.col("session_date").is_between(pl.col("start_date"), pl.col("exposure_end")))
    return sort_by_code(rows.select("episode_id", "session_date", "status", "_ek"), "_ek")


def _weekly_adherence(win: pl.DataFrame, inside: pl.DataFrame) -> pl.DataFrame:
    """:func:`weekly_adherence` from the episode windows and the sessions of :func:`_inside`."""
    win = win.with_columns(pl.col("episode_id").rank("dense").cast(pl.Int64).alias("_ek")).filter(
        pl.col("exposure_days") > 0
    )
    weeks = (
        win.select(
            "episode_id",
            "_ek",
            "spw",
            "start_date",
            "exposure_end",
            pl.date_ranges(
                pl.col("start_date").dt.truncate("1w"), pl.col("exposure_end").dt.truncate("1w"), "1w"
            ).alias("week_start"),
        )
        .explode("week_start")
        .with_columns(
            (
                (
                    pl.min_horizontal(pl.col("week_start") + pl.duration(days=6), "exposure_end")
                    - pl.max_horizontal("week_start", "start_date")
                ).dt.total_days()
                + 1
            ).alias("days_in_window")
        )
    )
    sessions = inside.select("_ek", "status", pl.col("session_date").dt.truncate("1w").alias("week_start"))
    # one integer key per (episode, week): weeks are 7 days apart from the earliest Monday
    first = pl.concat([weeks["week_start"], sessions["week_start"]]).min()
    last = pl.concat([weeks["week_start"], sessions["week_start"]]).max()
    n_weeks = (last - first).days // 7 + 1 if isinstance(first, date) and isinstance(last, date) else 1
    n_e = max_int(win["_ek"]) + 1
    week_no = ((pl.col("week_start") - pl.lit(first, pl.Date)).dt.total_days() // 7).alias("_wk")

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(week_no).with_columns(
            combined_code([("_ek", n_e), ("_wk", n_weeks)]).alias("_o")
        )

    counts = (
        sort_by_code(keyed(sessions), "_o")
        .group_by("_o", maintain_order=True)
        .agg(
            (pl.col("status") == "completed").sum().cast(pl.Int64).alias("completed"),
            pl.len().cast(pl.Int64).alias("scheduled"),
        )
    )
    return (
        sort_by_code(keyed(weeks), "_o")
        .join(counts, on="_o", how="left", maintain_order="left")
        .with_columns(
            pl.col("completed", "scheduled").fill_null(0),
            (pl.col("spw") * pl.col("days_in_window") / 7.0).alias("prescribed"),
            pl.col("week_start").dt.iso_year().alias("iso_year"),
            pl.col("week_start").dt.week().alias("iso_week"),
        )
        .with_columns(
            (pl.col("completed") / pl.col("prescribed")).alias("ratio"),
            (pl.col("completed") >= pl.col("prescribed").floor()).alias("met"),
        )
        .select(
            "episode_id",
            "week_start",
            "iso_year",
            "iso_week",
            "days_in_window",
            "completed",
            "scheduled",
            "prescribed",
            "ratio",
            "met",
            "_ek",
        )
    )


def episode_adherence(
    episodes: pl.DataFrame,
    sessions: pl.DataFrame,
    config: ClinicalConfig | None = None,
    data_cut: date | None = None,
) -> pl.DataFrame:
    """Per-episode adherence ratio, longest gap and dropout.

    Parameters
    ----------
    episodes, sessions : polars.DataFrame
        Canonical tables.
    config : ClinicalConfig, optional
        Program length, default prescription and the dropout gap.
    data_cut : date, optional
        Last date the data can cover (episodes still running are observed up to it).

    Returns
    -------
    polars.DataFrame
        One row per episode: ``episode_id, spw, exposure_days, program_observed, n_scheduled, n_completed,
        n_missed, n_cancelled, prescribed_sessions, adherence, weeks_met_share, longest_gap_days,
        last_completed_on, dropout, dropout_source, dropout_on``.

    Notes
    -----
    Within the observed program window ``[start, min(start + program_days - 1, end_date, data_cut)]``:

    - ``prescribed_sessions = spw * exposure_days / 7``; ``adherence = n_completed / prescribed_sessions``.
    - ``longest_gap_days``: the longest run of days without a completed session, counting from the start
      to the first completed session, between completed sessions, and from the last one to the window end
      (``exposure_days`` when none was completed).
    - Dropout: ``end_reason == "dropped_out"`` (``dropout_source = "recorded"``, ``dropout_on = end_date``);
      otherwise, unless the recorded end reason is completed, referred, surgery or injection, an episode
      whose last completed session (or start) lies more than ``dropout_gap_weeks`` before the end of its
      observed program window is a dropout by inactivity (``dropout_on`` = the day after the last completed
      session).
    """
    config = config or ClinicalConfig()
    win = episode_windows(episodes, config, data_cut)
    inside = _inside(sessions, win)
    counts = inside.group_by("_ek", maintain_order=True).agg(
        pl.col("episode_id").first(),
        pl.len().cast(pl.Int64).alias("n_scheduled"),
        (pl.col("status") == "completed").sum().cast(pl.Int64).alias("n_completed"),
        (pl.col("status") == "missed").sum().cast(pl.Int64).alias("n_missed"),
        (pl.col("status") == "cancelled").sum().cast(pl.Int64).alias("n_cancelled"),
    )
    # distinct completed days per episode, in date order
    done = inside.filter(pl.col("status") == "completed").select("_ek", "episode_id", "session_date")
    day0, day1 = done["session_date"].min(), done["session_date"].max()
    n_days = (day1 - day0).days + 1 if isinstance(day0, date) and isinstance(day1, date) else 1
    n_e = max_int(done["_ek"]) + 1
    day = (pl.col("session_date") - pl.lit(day0, pl.Date)).dt.total_days().alias("_day")
    done = sort_by_code(
        done.with_columns(day).with_columns(combined_code([("_ek", n_e), ("_day", n_days)]).alias("_o")), "_o"
    ).filter(run_starts("_o"))
    gaps = done.group_by("_ek", maintain_order=True).agg(
        pl.col("episode_id").first(),
        pl.col("session_date").diff().dt.total_days().max().alias("_between"),
        pl.col("session_date").min().alias("_first"),
        pl.col("session_date").max().alias("last_completed_on"),
    )
    weekly = (
        _weekly_adherence(win, inside)
        .group_by("_ek", maintain_order=True)
        .agg(pl.col("episode_id").first(), pl.col("met").mean().alias("weeks_met_share"))
    )
    out = (
        win.join(counts.drop("_ek"), on="episode_id", how="left")
        .join(gaps.drop("_ek"), on="episode_id", how="left")
        .join(weekly.drop("_ek"), on="episode_id", how="left")
        .with_columns(pl.col("n_scheduled", "n_completed", "n_missed", "n_cancelled").fill_null(0))
        .with_columns((pl.col("spw") * pl.col("exposure_days") / 7.0).alias("prescribed_sessions"))
    )
    lead = (pl.col("_first") - pl.col("start_date")).dt.total_days()
    tail = (pl.col("exposure_end") - pl.col("last_completed_on")).dt.total_days()
    idle_from = pl.coalesce(pl.col("last_completed_on") + pl.duration(days=1), pl.col("start_date"))
    idle_days = (pl.col("exposure_end") - idle_from).dt.total_days() + 1
    gap_days = config.dropout_gap_weeks * 7
    recorded = pl.col("end_reason") == "dropped_out"
    other_reason = pl.col("end_reason").is_in(list(_STOP_REASONS)).fill_null(False)
    inactive = ~recorded.fill_null(False) & ~other_reason & (idle_days > gap_days)
    out = out.with_columns(
        pl.when(pl.col("prescribed_sessions") > 0)
        .then(pl.col("n_completed") / pl.col("prescribed_sessions"))
        .alias("adherence"),
        pl.when(pl.col("last_completed_on").is_null())
        .then(pl.col("exposure_days"))
        .otherwise(pl.max_horizontal(lead, pl.col("_between").fill_null(0), tail))
        .alias("longest_gap_days"),
        (recorded.fill_null(False) | inactive).alias("dropout"),
        pl.when(recorded.fill_null(False))
        .then(pl.lit("recorded"))
        .when(inactive)
        .then(pl.lit("inactivity"))
        .alias("dropout_source"),
        pl.when(recorded.fill_null(False))
        .then(pl.col("end_date"))
        .when(inactive)
        .then(idle_from)
        .alias("dropout_on"),
    )
    return out.select(
        "episode_id",
        "spw",
        "exposure_days",
        "program_observed",
        "n_scheduled",
        "n_completed",
        "n_missed",
        "n_cancelled",
        "prescribed_sessions",
        "adherence",
        "weeks_met_share",
        "longest_gap_days",
        "last_completed_on",
        "dropout",
        "dropout_source",
        "dropout_on",
    ).sort("episode_id")
