"""Training dose and progression: weekly volume-load by muscle group, progression events, stalls."""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive.pain import session_pain
from sciatica_outcomes.schemas.catalogs import exercise_catalog

__all__ = ["BAND_ORDER", "episode_progression", "exercise_progression", "weekly_dose"]

#: Resistance-band colours from lightest to heaviest (Thera-Band sequence).
BAND_ORDER: tuple[str, ...] = ("yellow", "red", "green", "blue", "black", "silver", "gold")

_DIMENSIONS = ("load_kg", "band_rank", "reps", "hold_s", "sets")


def _exercise_rows(sessions: pl.DataFrame, session_exercises: pl.DataFrame) -> pl.DataFrame:
    """Completed-session exercise rows with catalog attributes, one row per session x exercise."""
    cat = exercise_catalog().select(
        pl.col("code").alias("exercise"), "muscle_group", "category", "family", "family_level"
    )
    ex = session_exercises
    for col, dtype in (
        ("sets", pl.Int64),
        ("reps", pl.Int64),
        ("hold_s", pl.Float64),
        ("load_kg", pl.Float64),
        ("band", pl.String),
    ):
        if col not in ex.columns:
            ex = ex.with_columns(pl.lit(None, dtype).alias(col))
    band_rank = {b: i for i, b in enumerate(BAND_ORDER)}
    ex = ex.select(
        "session_id",
        "exercise",
        pl.col("sets").cast(pl.Float64).fill_null(1.0).alias("sets"),
        pl.col("reps").cast(pl.Float64),
        pl.col("hold_s").cast(pl.Float64),
        pl.col("load_kg").cast(pl.Float64),
        pl.col("band")
        .cast(pl.String)
        .str.to_lowercase()
        .replace_strict(band_rank, default=None, return_dtype=pl.Int64)
        .alias("band_rank"),
    )
    done = sessions.filter(pl.col("status") == "completed").select("session_id", "episode_id", "session_date")
    return (
        ex.join(done, on="session_id")
        .join(cat, on="exercise", how="left")
        .with_columns(
            (pl.col("sets") * pl.col("reps") * pl.col("load_kg")).alias("volume_load_kg"),
            (pl.col("sets") * pl.col("reps")).alias("reps_total"),
            (pl.col("sets") * pl.col("reps").fill_null(1.0) * pl.col("hold_s")).alias("tut_s"),
        )
    )


def weekly_dose(
    episodes: pl.DataFrame, sessions: pl.DataFrame, session_exercises: pl.DataFrame
) -> pl.DataFrame:
    """Weekly training dose per episode and muscle group.

    Returns
    -------
    polars.DataFrame
        ``episode_id, program_week, muscle_group, n_sessions, n_exercise_rows, volume_load_kg, reps_total,
        tut_s``.

    Notes
    -----
    Per exercise row: ``volume_load_kg = sets x reps x load_kg`` (loaded exercises only), ``reps_total =
    sets x reps``, ``tut_s = sets x max(reps, 1) x hold_s`` (time under tension of holds); summed per
    ``program_week = floor((session_date - start_date) / 7)`` and catalog ``muscle_group`` (exercises missing
    from the catalog fall in muscle group ``"uncatalogued"``).
    """
    rows = _exercise_rows(sessions, session_exercises).join(
        episodes.select("episode_id", "start_date"), on="episode_id"
    )
    return (
        rows.with_columns(
            ((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("program_week"),
            pl.col("muscle_group").fill_null("uncatalogued"),
        )
        .group_by("episode_id", "program_week", "muscle_group")
        .agg(
            pl.col("session_id").n_unique().alias("n_sessions"),
            pl.len().alias("n_exercise_rows"),
            pl.col("volume_load_kg").sum(),
            pl.col("reps_total").sum(),
            pl.col("tut_s").sum(),
        )
        .sort("episode_id", "program_week", "muscle_group")
    )


def exercise_progression(sessions: pl.DataFrame, session_exercises: pl.DataFrame) -> pl.DataFrame:
    """Progression events per episode, exercise family and session.

    Returns
    -------
    polars.DataFrame
        One row per episode x session x exercise family: ``episode_id, session_id, session_date, family,
        exercise, family_level, load_kg, band_rank, reps, hold_s, sets, progressed, regressed, progression``
        (``"variant"``, ``"load_kg"``, ``"band_rank"``, ``"reps"``, ``"hold_s"``, ``"sets"`` or null).

    Notes
    -----
    Compared with the previous session of the same episode and family: a harder variant
    (``family_level`` up) is a progression; for the same exercise, any dose dimension up (load, band, reps,
    hold, sets) with none down is a progression; a lower variant or any dimension down with none up is a
    regression.
    """
    rows = (
        _exercise_rows(sessions, session_exercises)
        .with_columns(pl.col("family").fill_null(pl.col("exercise")), pl.col("family_level").fill_null(1))
        .sort("family_level")  # group_by keeps row order within groups: last() = highest variant
        .group_by("episode_id", "session_id", "session_date", "family")
        .agg(
            pl.col("exercise").last(),
            pl.col("family_level").max(),
            *[pl.col(d).max() for d in _DIMENSIONS],
        )
        .sort("episode_id", "family", "session_date", "session_id")
    )
    cols = ("exercise", "family_level", *_DIMENSIONS)
    # rows are sorted by episode and family: the previous row is the same series unless a boundary is crossed
    boundary = (pl.col("episode_id") != pl.col("episode_id").shift(1)) | (
        pl.col("family") != pl.col("family").shift(1)
    )
    rows = rows.with_columns(boundary.fill_null(True).alias("_boundary")).with_columns(
        pl.when(~pl.col("_boundary")).then(pl.col(c).shift(1)).alias(f"_prev_{c}") for c in cols
    )
    prev = {c: pl.col(f"_prev_{c}") for c in cols}
    same = (pl.col("exercise") == prev["exercise"]).fill_null(False)
    rows = rows.with_columns(
        *[(same & (pl.col(d) > prev[d])).fill_null(False).alias(f"_up_{d}") for d in _DIMENSIONS],
        *[(same & (pl.col(d) < prev[d])).fill_null(False).alias(f"_down_{d}") for d in _DIMENSIONS],
        (pl.col("family_level") > prev["family_level"]).fill_null(False).alias("_level_up"),
        (pl.col("family_level") < prev["family_level"]).fill_null(False).alias("_level_down"),
    ).with_columns(
        pl.any_horizontal([f"_up_{d}" for d in _DIMENSIONS]).alias("_any_up"),
        pl.any_horizontal([f"_down_{d}" for d in _DIMENSIONS]).alias("_any_down"),
    )
    any_up, any_down = pl.col("_any_up"), pl.col("_any_down")
    level_up, level_down = pl.col("_level_up"), pl.col("_level_down")
    kind = pl.when(level_up).then(pl.lit("variant"))
    for d in _DIMENSIONS:
        kind = kind.when(pl.col(f"_up_{d}") & ~any_down).then(pl.lit(d))
    return rows.with_columns(
        (level_up | (any_up & ~any_down & ~level_down)).alias("progressed"),
        (level_down | (any_down & ~any_up & ~level_up)).alias("regressed"),
        kind.otherwise(None).alias("progression"),
    ).select(pl.exclude("^_.*$"))


def episode_progression(
    episodes: pl.DataFrame,
    sessions: pl.DataFrame,
    session_exercises: pl.DataFrame,
    config: ClinicalConfig | None = None,
    session_pain_frame: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-episode progression summary and the stalled-progression flag.

    Parameters
    ----------
    episodes, sessions, session_exercises : polars.DataFrame
        Canonical tables.
    config : ClinicalConfig, optional
        ``program_weeks``, ``progression_guideline_weeks`` and ``progression_stall_weeks``.
    session_pain_frame : polars.DataFrame, optional
        Output of :func:`~sciatica_outcomes.derive.session_pain` (computed when not given).

    Returns
    -------
    polars.DataFrame
        One row per episode: ``episode_id, n_progression_sessions, mean_weeks_between_progressions,
        longest_no_progression_weeks, behind_guideline, stalled, stalled_since, stall_not_tolerated``.

    Notes
    -----
    Completed sessions with logged exercises inside the program phase (``day < 7 * program_weeks``) are
    split into stretches at each session with a progression; a stretch runs from its first session to the
    next progression (or, for the last stretch, to the last session). ``behind_guideline``: some stretch is
    longer than ``progression_guideline_weeks`` (2); ``stalled``: some stretch longer than
    ``progression_stall_weeks`` (4) in which no session was a flare (the load was tolerated), dated
    ``stalled_since`` at its start; ``stall_not_tolerated``: such a stretch contained a flare (not
    progressing was then appropriate).
    """
    config = config or ClinicalConfig()
    if session_pain_frame is None:
        session_pain_frame = session_pain(sessions, session_exercises, config)
    prog = exercise_progression(sessions, session_exercises)
    per_session = (
        prog.group_by("episode_id", "session_id", "session_date")
        .agg(pl.col("progressed").any())
        .join(episodes.select("episode_id", "start_date"), on="episode_id")
        .filter((pl.col("session_date") - pl.col("start_date")).dt.total_days() < config.program_days)
        .join(session_pain_frame.select("session_id", "flare"), on="session_id", how="left")
        .sort("episode_id", "session_date", "session_id")
        .with_columns(pl.col("progressed").cum_sum().over("episode_id").alias("_stretch"))
    )
    stretches = (
        per_session.group_by("episode_id", "_stretch")
        .agg(
            pl.col("session_date").min().alias("_from"),
            pl.col("session_date").max().alias("_last"),
            pl.col("flare").fill_null(False).any().alias("_flare"),
        )
        .sort("episode_id", "_stretch")
        .with_columns(pl.col("_from").shift(-1).over("episode_id").alias("_next"))
        .with_columns(
            (pl.coalesce("_next", "_last") - pl.col("_from")).dt.total_days().alias("_days"),
        )
    )
    guideline = 7 * config.progression_guideline_weeks
    stall = 7 * config.progression_stall_weeks
    stretch_summary = stretches.group_by("episode_id").agg(
        (pl.col("_days").max() / 7.0).alias("longest_no_progression_weeks"),
        (pl.col("_days") > guideline).any().alias("behind_guideline"),
        ((pl.col("_days") > stall) & ~pl.col("_flare")).any().alias("stalled"),
        pl.col("_from").filter((pl.col("_days") > stall) & ~pl.col("_flare")).min().alias("stalled_since"),
        ((pl.col("_days") > stall) & pl.col("_flare")).any().alias("stall_not_tolerated"),
    )
    events = (
        per_session.filter(pl.col("progressed"))
        .group_by("episode_id")
        .agg(
            pl.len().alias("n_progression_sessions"),
            (pl.col("session_date").diff().dt.total_days().mean() / 7.0).alias(
                "mean_weeks_between_progressions"
            ),
        )
    )
    return (
        episodes.select("episode_id")
        .join(events, on="episode_id", how="left")
        .join(stretch_summary, on="episode_id", how="left")
        .with_columns(
            pl.col("n_progression_sessions").fill_null(0).cast(pl.Int64),
            pl.col("stalled", "stall_not_tolerated").fill_null(False),
        )
        .sort("episode_id")
    )
