"""Training dose and progression: weekly volume-load by muscle group, progression events, stalls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive._common import (
    combined_code,
    completed_sessions,
    exercise_rows_to_sessions,
    first_of_runs,
    max_int,
    min_int,
    run_starts,
    sort_by_code,
)
from sciatica_outcomes.derive.pain import session_pain
from sciatica_outcomes.schemas.catalogs import exercise_catalog
from sciatica_outcomes.schemas.vocabulary import BANDS

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

__all__ = ["BAND_ORDER", "episode_progression", "exercise_progression", "weekly_dose"]

#: Resistance-band colours from lightest to heaviest (Thera-Band sequence).
BAND_ORDER: tuple[str, ...] = BANDS

_DIMENSIONS = ("load_kg", "band_rank", "reps", "hold_s", "sets")


def _exercise_table(exercise: pl.Series) -> pl.DataFrame:
    """One row per distinct exercise code: catalog attributes and integer codes in string order.

    Returns ``exercise, _x, muscle_group, category, family, family_level, _f`` where ``_x`` is the row
    number (codes sorted by name), ``family`` and ``family_level`` are filled as in
    :func:`exercise_progression` (own code, level 1, when uncatalogued) and ``_f`` ranks ``family`` in
    string order (from 1).
    """
    cat = exercise_catalog().select(
        pl.col("code").alias("exercise"), "muscle_group", "category", "family", "family_level"
    )
    names = exercise.drop_nulls().unique().sort()
    table = (
        pl.DataFrame({"exercise": names})
        .with_row_index("_x")
        .join(cat, on="exercise", how="left", maintain_order="left")
    )
    if table.height != names.len():
        raise ValueError("the exercise catalog lists an exercise code more than once")
    return table.with_columns(
        pl.col("family").fill_null(pl.col("exercise")),
        pl.col("family_level").fill_null(1),
    ).with_columns(
        pl.col("family").rank("dense").cast(pl.Int64).alias("_f"),
    )


def _coded_exercise_rows(
    done: pl.DataFrame, session_exercises: pl.DataFrame, *extra: pl.Expr
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Exercise rows of the completed sessions ``done`` (see :func:`completed_sessions`), on integer codes.

    Returns the rows ``_row, _s, _e, _x, _f, family_level, sets, reps, hold_s, load_kg, band_rank`` and
    the ``extra`` columns (the same rows as joining the exercise rows with the completed sessions on
    ``session_id``; ``_row`` is the session's row in ``done``) and the exercise table of
    :func:`_exercise_table`; a row with no exercise code has null ``_x`` and ``_f`` and level 1.
    """
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
    table = _exercise_table(ex["exercise"].cast(pl.String))
    bands = ex["band"].cast(pl.String).drop_nulls().unique()
    band_rank = {b: i for i, b in enumerate(BAND_ORDER)}
    band_map = dict(
        zip(
            bands.to_list(),
            bands.str.to_lowercase().replace_strict(band_rank, default=None, return_dtype=pl.Int64).to_list(),
            strict=True,
        )
    )
    ex = ex.select(
        "session_id",
        pl.col("exercise")
        .cast(pl.String)
        .cast(pl.Enum(table["exercise"]))
        .to_physical()
        .cast(pl.Int64)
        .alias("_x"),
        pl.col("sets").cast(pl.Float64).fill_null(1.0).alias("sets"),
        pl.col("reps").cast(pl.Float64),
        pl.col("hold_s").cast(pl.Float64),
        pl.col("load_kg").cast(pl.Float64),
        pl.col("band")
        .cast(pl.String)
        .replace_strict(band_map, default=None, return_dtype=pl.Int64)
        .alias("band_rank"),
        *extra,
    )
    rows = exercise_rows_to_sessions(ex, done).drop("session_id")
    idx = rows["_row"]
    xi = rows["_x"]
    rows = rows.with_columns(
        done["_s"].gather(idx),
        done["_e"].gather(idx),
        table["_f"].gather(xi),
        table["family_level"].gather(xi).fill_null(1),
    )
    return rows, table


def _volumes() -> list[pl.Expr]:
    return [
        (pl.col("sets") * pl.col("reps") * pl.col("load_kg")).alias("volume_load_kg"),
        (pl.col("sets") * pl.col("reps")).alias("reps_total"),
        (pl.col("sets") * pl.col("reps").fill_null(1.0) * pl.col("hold_s")).alias("tut_s"),
    ]


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

    Grouping and sorting run on integer codes (:func:`completed_sessions`); the identifiers are restored
    at the end.
    """
    done = completed_sessions(sessions)
    rows, table = _coded_exercise_rows(done, session_exercises)
    eps = first_of_runs(done, "_e").select("_e", "episode_id")
    starts = eps.join(episodes.select("episode_id", "start_date"), on="episode_id").select("_e", "start_date")
    # muscle groups in string order; rows of exercises missing from the catalog (or with no code) fall in
    # "uncatalogued"
    filled = table["muscle_group"].fill_null("uncatalogued")
    groups = pl.concat([filled, pl.Series(["uncatalogued"])]).unique().sort()
    codes = (
        pl.DataFrame({"muscle_group": groups}).with_row_index("_m").with_columns(pl.col("_m").cast(pl.Int64))
    )
    x_to_m = filled.to_frame().join(codes, on="muscle_group", how="left", maintain_order="left")["_m"]
    no_code = codes.filter(pl.col("muscle_group") == "uncatalogued")["_m"].item()
    rows = rows.with_columns(
        x_to_m.gather(rows["_x"]).fill_null(no_code).alias("_m"),
        done["session_date"].gather(rows["_row"]),
        *_volumes(),
    ).join(starts, on="_e")
    rows = rows.with_columns(
        ((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("program_week")
    )
    w_min = min_int(rows["program_week"])
    n_w = max_int(rows["program_week"]) - w_min + 2
    n_e = max_int(done["_e"]) + 1
    n_m = groups.len()
    rows = sort_by_code(
        rows.select(
            "_e",
            "_s",
            "_m",
            "program_week",
            "volume_load_kg",
            "reps_total",
            "tut_s",
            (pl.col("program_week") - w_min + 1).fill_null(0).alias("_w"),
        ).with_columns(combined_code([("_e", n_e), ("_w", n_w), ("_m", n_m)]).alias("_o")),
        "_o",
    )
    out = rows.group_by("_o", maintain_order=True).agg(
        pl.col("_e", "program_week", "_m").first(),
        pl.col("_s").n_unique().cast(pl.UInt32).alias("n_sessions"),
        pl.len().alias("n_exercise_rows"),
        pl.col("volume_load_kg").sum(),
        pl.col("reps_total").sum(),
        pl.col("tut_s").sum(),
    )
    return out.select(
        eps["episode_id"].gather(out["_e"]),
        "program_week",
        groups.gather(out["_m"]).alias("muscle_group"),
        "n_sessions",
        "n_exercise_rows",
        "volume_load_kg",
        "reps_total",
        "tut_s",
    )


_LEVEL_SHIFT = 2**32


def _coded_progression(done: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """Progression rows on integer codes, sorted by ``_e, _f, _s`` (see :func:`exercise_progression`)."""
    n_e = max_int(done["_e"]) + 1
    n_s = max_int(done["_s"]) + 1
    n_f = max_int(rows["_f"]) + 1
    rows = sort_by_code(
        rows.select("_e", "_s", "_x", pl.col("_f").fill_null(0), "family_level", *_DIMENSIONS).with_columns(
            combined_code([("_e", n_e), ("_f", n_f), ("_s", n_s)]).alias("_o")
        ),
        "_o",
    )
    per = rows.group_by("_o", maintain_order=True).agg(
        pl.col("_e", "_f", "_s").first(),
        # highest variant of the family in the session (ties: the later exercise code)
        (pl.col("family_level").cast(pl.Int64) * _LEVEL_SHIFT + (pl.col("_x") + 1).fill_null(0))
        .max()
        .alias("_lx"),
        *[pl.col(d).max() for d in _DIMENSIONS],
    )
    per = per.with_columns(
        pl.col("_f").replace(0, None),
        (pl.col("_lx") // _LEVEL_SHIFT).alias("family_level"),
        (pl.col("_lx") % _LEVEL_SHIFT - 1).replace(-1, None).alias("_x"),
    )
    cols = ("_x", "family_level", *_DIMENSIONS)
    # rows are sorted by episode and family: the previous row is the same series unless a boundary is crossed
    boundary = run_starts("_e", "_f")
    per = per.with_columns(boundary.alias("_boundary")).with_columns(
        pl.when(~pl.col("_boundary")).then(pl.col(c).shift(1)).alias(f"_prev_{c}") for c in cols
    )
    prev = {c: pl.col(f"_prev_{c}") for c in cols}
    same = (pl.col("_x") == prev["_x"]).fill_null(False)
    per = per.with_columns(
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
    kind: Then | ChainedThen = pl.when(level_up).then(pl.lit("variant"))
    for d in _DIMENSIONS:
        kind = kind.when(pl.col(f"_up_{d}") & ~any_down).then(pl.lit(d))
    return per.with_columns(
        (level_up | (any_up & ~any_down & ~level_down)).alias("progressed"),
        (level_down | (any_down & ~any_up & ~level_up)).alias("regressed"),
        kind.otherwise(None).alias("progression"),
    ).select("_e", "_s", "_f", "_x", "family_level", *_DIMENSIONS, "progressed", "regressed", "progression")


def exercise_progression(sessions: pl.DataFrame, session_exercises: pl.DataFrame) -> pl.DataFrame:
    """Progression events per episode, exercise family and session.

    Returns
    -------
    polars.DataFrame
        One row per episode x session x exercise family, sorted by ``episode_id, family, session_date,
        session_id``: ``episode_id, session_id, session_date, family, exercise, family_level, load_kg,
        band_rank, reps, hold_s, sets, progressed, regressed, progression`` (``"variant"``, ``"load_kg"``,
        ``"band_rank"``, ``"reps"``, ``"hold_s"``, ``"sets"`` or null).

    Notes
    -----
    Compared with the previous session of the same episode and family: a harder variant
    (``family_level`` up) is a progression; for the same exercise, any dose dimension up (load, band, reps,
    hold, sets) with none down is a progression; a lower variant or any dimension down with none up is a
    regression. A session's exercise of a family is its highest variant; dose dimensions are the session's
    maxima. Exercises missing from the catalog form a family of their own at level 1.
    """
    done = completed_sessions(sessions)
    rows, table = _coded_exercise_rows(done, session_exercises)
    prog = _coded_progression(done, rows)
    sess = first_of_runs(done, "_s")
    families = table.select("_f", "family").unique("_f").sort("_f")["family"]
    s_idx, x_idx = prog["_s"], prog["_x"]
    return prog.select(
        sess["episode_id"].gather(s_idx),
        sess["session_id"].gather(s_idx),
        sess["session_date"].gather(s_idx),
        families.gather(prog["_f"] - 1).alias("family"),
        table["exercise"].gather(x_idx),
        pl.col("family_level").cast(table.schema["family_level"]),
        *_DIMENSIONS,
        "progressed",
        "regressed",
        "progression",
    )


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
    done = completed_sessions(sessions)
    rows, _ = _coded_exercise_rows(done, session_exercises)
    if session_pain_frame is None:
        session_pain_frame = session_pain(sessions, session_exercises, config)
    flare = (
        first_of_runs(done, "_s")
        .select("_s", "session_id")
        .join(session_pain_frame.select("session_id", "flare"), on="session_id", how="inner")
        .select("_s", "flare")
    )
    return _episode_progression(episodes, done, rows, config, flare)


def _episode_progression(
    episodes: pl.DataFrame,
    done: pl.DataFrame,
    rows: pl.DataFrame,
    config: ClinicalConfig,
    flare: pl.DataFrame,
) -> pl.DataFrame:
    """:func:`episode_progression` from coded sessions and exercise rows and a ``_s, flare`` frame."""
    prog = _coded_progression(done, rows)
    sess = first_of_runs(done, "_s")
    eps = first_of_runs(done, "_e").select("_e", "episode_id")
    starts = eps.join(episodes.select("episode_id", "start_date"), on="episode_id").select("_e", "start_date")
    per_session = prog.group_by("_s").agg(pl.col("progressed").any()).sort("_s")
    per_session = (
        per_session.with_columns(
            sess["_e"].gather(per_session["_s"]), sess["session_date"].gather(per_session["_s"])
        )
        .join(starts, on="_e", maintain_order="left")
        .filter((pl.col("session_date") - pl.col("start_date")).dt.total_days() < config.program_days)
        .join(flare, on="_s", how="left", maintain_order="left")
        .with_columns(pl.col("progressed").cum_sum().over("_e").alias("_stretch"))
    )
    stretches = (
        per_session.group_by("_e", "_stretch")
        .agg(
            pl.col("session_date").min().alias("_from"),
            pl.col("session_date").max().alias("_last"),
            pl.col("flare").fill_null(False).any().alias("_flare"),
        )
        .sort("_e", "_stretch")
        .with_columns(pl.col("_from").shift(-1).over("_e").alias("_next"))
        .with_columns(
            (pl.coalesce("_next", "_last") - pl.col("_from")).dt.total_days().alias("_days"),
        )
    )
    guideline = 7 * config.progression_guideline_weeks
    stall = 7 * config.progression_stall_weeks
    stretch_summary = stretches.group_by("_e").agg(
        (pl.col("_days").max() / 7.0).alias("longest_no_progression_weeks"),
        (pl.col("_days") > guideline).any().alias("behind_guideline"),
        ((pl.col("_days") > stall) & ~pl.col("_flare")).any().alias("stalled"),
        pl.col("_from").filter((pl.col("_days") > stall) & ~pl.col("_flare")).min().alias("stalled_since"),
        ((pl.col("_days") > stall) & pl.col("_flare")).any().alias("stall_not_tolerated"),
    )
    events = (
        per_session.filter(pl.col("progressed"))
        .group_by("_e")
        .agg(
            pl.len().alias("n_progression_sessions"),
            (pl.col("session_date").diff().dt.total_days().mean() / 7.0).alias(
                "mean_weeks_between_progressions"
            ),
        )
    )

    def keyed(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(eps["episode_id"].gather(frame["_e"])).drop("_e")

    return (
        episodes.select("episode_id")
        .join(keyed(events), on="episode_id", how="left")
        .join(keyed(stretch_summary), on="episode_id", how="left")
        .with_columns(
            pl.col("n_progression_sessions").fill_null(0).cast(pl.Int64),
            pl.col("stalled", "stall_not_tolerated").fill_null(False),
        )
        .sort("episode_id")
    )
