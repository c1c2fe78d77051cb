"""Integer-coded derivation against straightforward string-keyed references on shuffled input.

The dose, progression and pain functions group and sort on integer codes of ``episode_id`` and
``session_id`` (``sciatica_outcomes/derive/_common.py``). The references below are the direct
formulations (string joins, group-bys and sorts); outputs must be identical, also when the tables
arrive in no particular order.
"""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import (
    BAND_ORDER,
    derive_all,
    episode_adherence,
    episode_pain,
    episode_progression,
    exercise_progression,
    session_pain,
    weekly_adherence,
    weekly_dose,
    weekly_pain,
)
from sciatica_outcomes.schemas.catalogs import exercise_catalog
from sciatica_outcomes.synth import Cohort

_DIMENSIONS = ("load_kg", "band_rank", "reps", "hold_s", "sets")


def _ref_rows(sessions: pl.DataFrame, ex: pl.DataFrame) -> pl.DataFrame:
    cat = exercise_catalog().select(
        pl.col("code").alias("exercise"), "muscle_group", "category", "family", "family_level"
    )
    ex = ex.select(
        "session_id",
        "exercise",
        pl.col("sets").cast(pl.Float64).fill_null(1.0),
        pl.col("reps").cast(pl.Float64),
        pl.col("hold_s").cast(pl.Float64),
        pl.col("load_kg").cast(pl.Float64),
        pl.col("band")
        .str.to_lowercase()
        .replace_strict({b: i for i, b in enumerate(BAND_ORDER)}, default=None, return_dtype=pl.Int64)
        .alias("band_rank"),
    )
    done = sessions.filter(pl.col("status") == "completed").select("session_id", "episode_id", "session_date")
    return ex.join(done, on="session_id").join(cat, on="exercise", how="left")


def _ref_weekly_dose(episodes: pl.DataFrame, sessions: pl.DataFrame, ex: pl.DataFrame) -> pl.DataFrame:
    return (
        _ref_rows(sessions, ex)
        .join(episodes.select("episode_id", "start_date"), on="episode_id")
        .with_columns(
            ((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("program_week"),
            pl.col("muscle_group").fill_null("uncatalogued"),
        )
        .group_by("episode_id", "program_week", "muscle_group")
        .agg(
            pl.col("session_id").n_unique().alias("n_sessions"),
            pl.len().alias("n_exercise_rows"),
            (pl.col("sets") * pl.col("reps") * pl.col("load_kg")).sum().alias("volume_load_kg"),
            (pl.col("sets") * pl.col("reps")).sum().alias("reps_total"),
            (pl.col("sets") * pl.col("reps").fill_null(1.0) * pl.col("hold_s")).sum().alias("tut_s"),
        )
        .sort("episode_id", "program_week", "muscle_group")
    )


def _ref_exercise_progression(sessions: pl.DataFrame, ex: pl.DataFrame) -> pl.DataFrame:
    rows = (
        _ref_rows(sessions, ex)
        .with_columns(pl.col("family").fill_null(pl.col("exercise")), pl.col("family_level").fill_null(1))
        .group_by("episode_id", "session_id", "session_date", "family")
        .agg(
            pl.col("exercise").sort_by("family_level").last(),
            pl.col("family_level").max(),
            *[pl.col(d).max() for d in _DIMENSIONS],
        )
        .sort("episode_id", "family", "session_date", "session_id")
    )
    series = ["episode_id", "family"]
    prev = {c: pl.col(c).shift(1).over(series) for c in ("exercise", "family_level", *_DIMENSIONS)}
    same = (pl.col("exercise") == prev["exercise"]).fill_null(False)
    up = {d: (same & (pl.col(d) > prev[d])).fill_null(False) for d in _DIMENSIONS}
    down = {d: (same & (pl.col(d) < prev[d])).fill_null(False) for d in _DIMENSIONS}
    any_up, any_down = pl.any_horizontal(list(up.values())), pl.any_horizontal(list(down.values()))
    level_up = (pl.col("family_level") > prev["family_level"]).fill_null(False)
    level_down = (pl.col("family_level") < prev["family_level"]).fill_null(False)
    kind = pl.when(level_up).then(pl.lit("variant"))
    for d in _DIMENSIONS:
        kind = kind.when(up[d] & ~any_down).then(pl.lit(d))
    return rows.with_columns(
        (level_up | (any_up & ~any_down & ~level_down)).alias("progressed"),
        (level_down | (any_down & ~any_up & ~level_up)).alias("regressed"),
        kind.otherwise(None).alias("progression"),
    )


def _ref_session_pain(sessions: pl.DataFrame, ex: pl.DataFrame, config: ClinicalConfig) -> pl.DataFrame:
    during = ex.group_by("session_id").agg(pl.col("pain_during").cast(pl.Float64).max().alias("_during"))
    done = (
        sessions.filter(pl.col("status") == "completed")
        .select(
            "session_id",
            "episode_id",
            "session_date",
            pl.col("pain_before", "pain_after", "pain_next_day").cast(pl.Float64),
        )
        .sort("episode_id", "session_date", "session_id")
        .join(during, on="session_id", how="left", maintain_order="left")
    )
    rise = config.flare_rise_points
    nxt = (pl.col("session_date").shift(-1).over("episode_id") - pl.col("session_date")).dt.total_days()
    check = pl.coalesce(
        "pain_next_day",
        pl.when(nxt <= config.settle_hours / 24.0).then(pl.col("pain_before").shift(-1).over("episode_id")),
    )
    activity = pl.max_horizontal("pain_after", "_during")
    spike = ((pl.col("pain_after") - pl.col("pain_before")) >= rise).fill_null(False) | (
        (pl.col("pain_next_day") - pl.col("pain_before")) >= rise
    ).fill_null(False)
    settled = (pl.col("settle_check") - pl.col("pain_before")) < rise
    return (
        done.with_columns(activity.alias("activity_pain"), check.alias("settle_check"))
        .with_columns(
            pl.when(pl.col("activity_pain") <= config.pain_safe_max)
            .then(pl.lit("safe"))
            .when(pl.col("activity_pain") <= config.pain_acceptable_max)
            .then(pl.lit("acceptable"))
            .when(pl.col("activity_pain").is_not_null())
            .then(pl.lit("high_risk"))
            .alias("pain_band"),
            spike.alias("spike"),
            settled.alias("settled"),
        )
        .with_columns(
            (pl.col("spike") & pl.col("settled").not_()).fill_null(False).alias("flare"),
            (pl.col("spike") & pl.col("settled").is_null()).alias("settle_unknown"),
        )
        .drop("_during")
    )


def _ref_weekly_pain(sp: pl.DataFrame, episodes: pl.DataFrame, config: ClinicalConfig) -> pl.DataFrame:
    return (
        sp.join(episodes.select("episode_id", "start_date"), on="episode_id")
        .with_columns(
            ((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("program_week")
        )
        .group_by("episode_id", "program_week")
        .agg(pl.col("pain_before").mean().alias("mean_pain_before"), pl.len().alias("n_sessions"))
        .sort("episode_id", "program_week")
        .with_columns(pl.col("mean_pain_before").diff().over("episode_id").alias("rise"))
        .with_columns((pl.col("rise") >= config.weekly_rise_points).fill_null(False).alias("rising"))
    )


@pytest.fixture(scope="module", params=["as generated", "shuffled"])
def tables(request: pytest.FixtureRequest, cohort_1000: Cohort) -> dict[str, pl.DataFrame]:
    t = dict(cohort_1000.tables)
    if request.param == "shuffled":
        # no order to rely on: rows of a session apart, episodes interleaved
        t = {name: frame.sample(fraction=1.0, shuffle=True, seed=7) for name, frame in t.items()}
    return t


def _same(actual: pl.DataFrame, expected: pl.DataFrame, by: list[str] | None = None) -> None:
    if by is not None:  # the reference's order among equal keys is arbitrary
        actual, expected = actual.sort(by, maintain_order=True), expected.sort(by, maintain_order=True)
    assert_frame_equal(actual, expected.select(actual.columns), check_exact=True, check_dtypes=False)
    assert actual.height > 0


def test_weekly_dose_matches_reference(tables: dict[str, pl.DataFrame]) -> None:
    ep, s, ex = tables["episodes"], tables["sessions"], tables["session_exercises"]
    actual, expected = weekly_dose(ep, s, ex), _ref_weekly_dose(ep, s, ex)
    _same(actual.drop("volume_load_kg", "tut_s"), expected.drop("volume_load_kg", "tut_s"))
    # sums of floats: the same terms, possibly added in another order
    assert_frame_equal(actual.select("volume_load_kg", "tut_s"), expected.select("volume_load_kg", "tut_s"))


def test_exercise_progression_matches_reference(tables: dict[str, pl.DataFrame]) -> None:
    s, ex = tables["sessions"], tables["session_exercises"]
    actual = exercise_progression(s, ex)
    expected = _ref_exercise_progression(s, ex)
    _same(actual, expected)
    assert actual["progressed"].sum() > 0


def test_session_and_weekly_pain_match_reference(tables: dict[str, pl.DataFrame]) -> None:
    cfg = ClinicalConfig()
    ep, s, ex = tables["episodes"], tables["sessions"], tables["session_exercises"]
    sp = session_pain(s, ex, cfg)
    _same(sp, _ref_session_pain(s, ex, cfg), by=["episode_id", "session_date", "session_id"])
    _same(weekly_pain(sp, ep, cfg), _ref_weekly_pain(sp, ep, cfg))
    shuffled = sp.sample(fraction=1.0, shuffle=True, seed=3)
    _same(weekly_pain(shuffled, ep, cfg), _ref_weekly_pain(shuffled, ep, cfg))
    # the pain summary does not depend on the order of the session rows (sums up to rounding)
    assert_frame_equal(episode_pain(shuffled, ep, cfg), episode_pain(sp, ep, cfg))


def test_progression_summary_independent_of_order_and_shared_intermediates(
    tables: dict[str, pl.DataFrame], cohort_1000: Cohort
) -> None:
    cfg = ClinicalConfig()
    ep, s, ex = tables["episodes"], tables["sessions"], tables["session_exercises"]
    summary = episode_progression(ep, s, ex, cfg)
    original = cohort_1000.tables
    expected = episode_progression(
        original["episodes"], original["sessions"], original["session_exercises"], cfg
    )
    _same(summary, expected)
    # derive_all shares the coded sessions between pain and progression: same as the public functions
    derived = derive_all(tables, cfg, cohort_1000.config.data_cut).episode_summary
    _same(derived.select(summary.columns), summary)


def test_adherence_independent_of_row_order(tables: dict[str, pl.DataFrame], cohort_1000: Cohort) -> None:
    cfg, cut = ClinicalConfig(), cohort_1000.config.data_cut
    original = cohort_1000.tables
    for fn in (weekly_adherence, episode_adherence):
        actual = fn(tables["episodes"], tables["sessions"], cfg, cut)
        _same(actual, fn(original["episodes"], original["sessions"], cfg, cut))


def test_adherence_so_far_independent_of_row_order(
    tables: dict[str, pl.DataFrame], cohort_1000: Cohort
) -> None:
    cfg, cut = ClinicalConfig(), cohort_1000.config.data_cut
    cols = ["episode_id", "assessed_on", "adherence_so_far", "adherence_overall"]
    actual = derive_all(tables, cfg, cut).analysis_frame.select(cols)
    expected = derive_all(cohort_1000.tables, cfg, cut).analysis_frame.select(cols)
    _same(actual, expected)
    assert actual["adherence_so_far"].is_not_null().sum() > 0
