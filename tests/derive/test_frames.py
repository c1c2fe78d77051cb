"""The analysis frame and episode summary from frames and from a real DuckDB store."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import Derived, analysis_frame, derive_all, episode_summary
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import Cohort, generate_cohort


def test_analysis_frame_layout(cohort_3000: Cohort, derived_3000: Derived) -> None:
    af = derived_3000.analysis_frame
    ids = ["episode_id", "patient_id", "clinic_id", "therapist_id", "assessed_on", "day", "week", "visit"]
    assert af.columns[:8] == ids
    for col in (
        "odi",
        "nprs_leg",
        "walk_tolerance_min_censored",
        "odi_change",
        "baseline_odi",
        "age",
        "adherence_so_far",
        "adherence_overall",
    ):
        assert col in af.columns, col
    assert af.select(["episode_id", "assessed_on"]).is_duplicated().sum() == 0
    m = cohort_3000.tables["measures"]
    assert af.height == m.select("episode_id", "assessed_on").unique().height
    # each visit label at most once per episode; every episode has a baseline
    assert af.filter(pl.col("visit").is_not_null()).select("episode_id", "visit").is_duplicated().sum() == 0
    assert (
        af.filter(pl.col("visit") == "w0")["episode_id"].n_unique() == cohort_3000.tables["episodes"].height
    )
    assert (af["week"] - af["day"] / 7).abs().max() < 1e-12
    # values are the recorded ones; censored flags mirror stopped_reason == cap
    walk = m.filter(pl.col("measure") == "walk_tolerance_min")
    joined = walk.join(af, on=["episode_id", "assessed_on"])
    assert (joined["value"] == joined["walk_tolerance_min"]).all()
    assert (joined["walk_tolerance_min_censored"] == (joined["stopped_reason"] == "cap")).all()
    base = af.filter(pl.col("visit") == "w0")
    assert (base["odi_change"].drop_nulls() == 0).all()
    assert (
        af.filter(pl.col("day") <= 0)["adherence_so_far"].null_count() == af.filter(pl.col("day") <= 0).height
    )


def test_share_at_cap_agrees_with_raw_counts(cohort_3000: Cohort, derived_3000: Derived) -> None:
    af = derived_3000.analysis_frame
    m = cohort_3000.tables["measures"].filter(pl.col("measure") == "walk_tolerance_min")
    assert int(af["walk_tolerance_min_censored"].sum()) == m.filter(pl.col("stopped_reason") == "cap").height
    share = af.group_by("visit").agg(pl.col("walk_tolerance_min_censored").mean()).drop_nulls("visit")
    at = dict(share.iter_rows())
    # Rainville 2012 calibration of the generator: ~6 % at intake, rising after treatment (test_synth bands)
    assert 0.02 <= at["w0"] <= 0.10
    assert at["w26"] > at["w12"] > at["w0"]


def test_episode_summary_one_row_per_episode(cohort_3000: Cohort, derived_3000: Derived) -> None:
    s = derived_3000.episode_summary
    assert s.height == cohort_3000.tables["episodes"].height
    assert s["episode_id"].is_unique().all()
    for col in ("adherence", "dropout", "n_flares", "stalled", "n_unactioned_red_flags", "odi_change"):
        assert col in s.columns, col
    assert s["n_red_flag_alerts"].sum() == cohort_3000.truth["realised"]["n_red_flags"]


def test_questionnaire_scores_fill_missing_measures(cohort_1000: Cohort) -> None:
    tables = dict(cohort_1000.tables)
    tables["measures"] = tables["measures"].filter(pl.col("measure") != "odi")
    d = derive_all(tables)
    full = derive_all(cohort_1000.tables)
    a = d.analysis_frame.select("episode_id", "assessed_on", "odi")
    b = full.analysis_frame.select("episode_id", "assessed_on", "odi")
    joined = a.join(b, on=["episode_id", "assessed_on"])
    assert joined["odi"].null_count() == joined["odi_right"].null_count()
    assert ((joined["odi"] - joined["odi_right"]).abs().max() or 0) < 0.01


def test_store_and_path_sources_agree_with_frames(tmp_path: Path) -> None:
    cohort = generate_cohort(n_patients=150, seed=4)
    db = tmp_path / "outcomes.duckdb"
    with Store(db) as store:
        for name, frame in cohort.tables.items():
            store.write(name, frame, source="synthetic cohort")
        from_store = analysis_frame(store)
    from_path = episode_summary(db)
    from_frames = derive_all(cohort.tables)
    assert from_store.equals(from_frames.analysis_frame)
    assert from_path.equals(from_frames.episode_summary)


def test_config_changes_results(cohort_1000: Cohort) -> None:
    strict = derive_all(cohort_1000.tables, ClinicalConfig(dropout_gap_weeks=1.0))
    default = derive_all(cohort_1000.tables)
    assert strict.episode_summary["dropout"].sum() >= default.episode_summary["dropout"].sum()


def test_bad_sources() -> None:
    with pytest.raises(UnusableInputError, match="episodes"):
        analysis_frame({"sessions": pl.DataFrame()})
    with pytest.raises(UnusableInputError, match="Store"):
        analysis_frame(42)
