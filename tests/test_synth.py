"""Tests of the synthetic cohort generator against its own ground truth (truth.json)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sciatica_outcomes.schemas import exercise_catalog
from sciatica_outcomes.synth import (
    RED_FLAG_FIELDS,
    TABLES,
    Cohort,
    SynthConfig,
    effective_weeks,
    generate_cohort,
    write_cohort,
)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _with_weeks(cohort: Cohort) -> pl.DataFrame:
    ep = cohort.tables["episodes"].select("episode_id", "start_date")
    return (
        cohort.tables["measures"]
        .join(ep, on="episode_id")
        .with_columns(((pl.col("assessed_on") - pl.col("start_date")).dt.total_days() / 7).alias("week"))
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_same_bytes(tmp_path: Path, fmt: str) -> None:
    for run in ("a", "b"):
        write_cohort(generate_cohort(n_patients=300, seed=42), tmp_path / run, fmt=fmt)
    write_cohort(generate_cohort(n_patients=300, seed=43), tmp_path / "c", fmt=fmt)
    first, second, other = (_digest(tmp_path / r) for r in ("a", "b", "c"))
    assert first == second
    assert set(first) == {f"{t}.{fmt}" for t in TABLES} | {"truth.json"}
    assert all(first[name] != other[name] for name in first)


def test_written_tables_round_trip(tmp_path: Path, cohort_1000: Cohort) -> None:
    write_cohort(cohort_1000, tmp_path, fmt="parquet")
    for name in TABLES:
        assert pl.read_parquet(tmp_path / f"{name}.parquet").equals(cohort_1000.tables[name])
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["config"]["n_patients"] == 1000
    assert truth["config"]["outcomes"]["odi"]["intercept"] == 42.0


def test_keys_are_unique_and_foreign_keys_resolve(cohort_1000: Cohort) -> None:
    t = cohort_1000.tables
    keys = {
        "episodes": ["episode_id"],
        "sessions": ["session_id"],
        "session_exercises": ["session_id", "exercise", "set_index"],
        "measures": ["episode_id", "assessed_on", "measure"],
        "questionnaire_items": ["episode_id", "assessed_on", "instrument", "item"],
        "symptom_checks": ["episode_id", "checked_on"],
    }
    for name, key in keys.items():
        assert t[name].select(key).is_duplicated().sum() == 0, name
    episodes = set(t["episodes"]["episode_id"])
    for name in ("sessions", "measures", "questionnaire_items", "symptom_checks"):
        assert set(t[name]["episode_id"]) <= episodes, name
    assert set(t["session_exercises"]["session_id"]) <= set(t["sessions"]["session_id"])
    assert set(t["session_exercises"]["exercise"]) <= set(exercise_catalog()["code"])
    ep = t["episodes"]
    assert ep.filter(pl.col("end_date") < pl.col("start_date")).height == 0
    # nothing after the data cut, nothing after an episode's end
    cut = cohort_1000.config.data_cut
    assert t["sessions"]["session_date"].max() <= cut
    late = t["sessions"].join(ep, on="episode_id").filter(pl.col("session_date") > pl.col("end_date"))
    assert late.height == 0


def test_value_ranges(cohort_1000: Cohort) -> None:
    m = cohort_1000.tables["measures"]
    bounds = {"nprs_leg": (0, 10), "nprs_back": (0, 10), "odi": (0, 100), "sbi": (0, 24), "psfs": (0, 10)}
    for measure, (lo, hi) in bounds.items():
        v = m.filter(pl.col("measure") == measure)["value"]
        assert v.len() > 0
        assert lo <= v.min() and v.max() <= hi, measure
    s = cohort_1000.tables["sessions"].filter(pl.col("status") == "completed")
    for col in ("pain_before", "pain_after", "rpe"):
        assert s[col].null_count() == 0
        assert s[col].min() >= 0 and s[col].max() <= 12, col  # a flare may rise above 10 only if before <= 7
    assert s["pain_after"].max() <= 10


def test_baseline_calibration(cohort_3000: Cohort) -> None:
    """Realised baseline means sit within 4 standard errors of the truth; SDs match domain.md §7."""
    d = _with_weeks(cohort_3000).filter(pl.col("week") <= 0)
    truth = cohort_3000.truth
    for measure, total_sd in (("odi", 14.0), ("nprs_leg", 1.8)):
        v = d.filter(pl.col("measure") == measure)["value"].to_numpy()
        se = total_sd / math.sqrt(v.size)
        assert abs(v.mean() - truth["realised"]["baseline_latent_mean"][measure]) < 4 * se + 0.02, measure
        assert abs(v.std() - total_sd) < 0.1 * total_sd, measure
    # the population mean itself is within clinic-effect noise of the calibration target
    assert abs(truth["realised"]["baseline_latent_mean"]["odi"] - 42.0) < 4.0


def test_walking_cap_share_rises_from_baseline(cohort_3000: Cohort) -> None:
    cfg = cohort_3000.config
    w = _with_weeks(cohort_3000).filter(pl.col("measure") == "walk_tolerance_min")
    capped = w.filter(pl.col("stopped_reason") == "cap")
    assert (capped["value"] == cfg.walk_cap_min).all()
    assert w["value"].max() <= cfg.walk_cap_min
    assert set(w["stopped_reason"].unique()) == {"cap", "symptom", "fatigue"}
    share = w.group_by(pl.col("week").round(0).alias("wk")).agg(
        (pl.col("stopped_reason") == "cap").mean().alias("share")
    )
    at = dict(zip(share["wk"].to_list(), share["share"].to_list(), strict=True))
    baseline = w.filter(pl.col("week") <= 0)["stopped_reason"].eq("cap").mean()
    assert 0.02 <= baseline <= 0.10  # Rainville 2012: 6 % completed the test at intake
    assert 0.25 <= at[26.0] <= 0.55  # 46 % after treatment


def test_dropout_share_within_band(cohort_3000: Cohort) -> None:
    realised = cohort_3000.truth["realised"]
    assert 0.20 <= realised["dropout_share"] <= 0.35
    ep = cohort_3000.tables["episodes"]
    dropped = set(ep.filter(pl.col("end_reason") == "dropped_out")["episode_id"])
    assert dropped == {e["episode_id"] for e in cohort_3000.truth["events"]["dropouts"]}


def test_dropout_is_missing_at_random_on_observed_worsening(cohort_3000: Cohort) -> None:
    """Patients whose leg pain worsened from baseline drop out more often (MAR mechanism)."""
    d = _with_weeks(cohort_3000).filter(pl.col("measure") == "nprs_leg")
    base = d.filter(pl.col("week") <= 0).select("episode_id", pl.col("value").alias("base"))
    worse = (
        d.filter(pl.col("week").is_between(1, 3))
        .join(base, on="episode_id")
        .with_columns((pl.col("value") > pl.col("base")).alias("worse"))
    )
    dropped = {e["episode_id"] for e in cohort_3000.truth["events"]["dropouts"]}
    worse = worse.with_columns(pl.col("episode_id").is_in(list(dropped)).alias("dropped"))
    rates = worse.group_by("worse").agg(pl.col("dropped").mean()).sort("worse")["dropped"].to_list()
    assert rates[1] > rates[0] + 0.05


def test_ols_recovers_population_slope() -> None:
    """Without dropout, OLS of the outcome on g(week) recovers the realised mean rate of change."""
    cohort = generate_cohort(n_patients=3000, seed=7, dropout_logit=-50.0, ice_prob=0.0, red_flag_prob=0.0)
    d = _with_weeks(cohort)
    for measure, tol in (("odi", 0.12), ("nprs_leg", 0.02)):
        x = d.filter(pl.col("measure") == measure)
        g = effective_weeks(x["week"].to_numpy(), cohort.config.tau_weeks)
        design = np.column_stack([np.ones_like(g), g])
        beta = np.linalg.lstsq(design, x["value"].to_numpy(), rcond=None)[0]
        assert abs(beta[1] - cohort.truth["realised"]["rate_latent_mean"][measure]) < tol, measure
        assert abs(beta[1] - cohort.config.outcomes[measure].rate) < 3 * tol, measure


def test_most_of_the_26_week_gain_by_week_12(cohort_3000: Cohort) -> None:
    share = cohort_3000.truth["model"]["share_of_26_week_change_by_week_12"]
    assert 0.6 <= share <= 0.85
    d = _with_weeks(cohort_3000).filter(pl.col("measure") == "odi")
    means = d.group_by(pl.col("week").round(0).alias("wk")).agg(pl.col("value").mean())
    at = dict(zip(means["wk"].to_list(), means["value"].to_list(), strict=True))
    observed_share = (at[0.0] - at[12.0]) / (at[0.0] - at[26.0])
    assert 0.55 <= observed_share <= 0.95


def test_planted_flares_match_the_session_log(cohort_3000: Cohort) -> None:
    s = cohort_3000.tables["sessions"].filter(pl.col("status") == "completed")
    flares = pl.DataFrame(cohort_3000.truth["events"]["flares"])
    spiked = set(s.filter(pl.col("pain_after") - pl.col("pain_before") >= 2)["session_id"])
    assert spiked == set(flares["session_id"])
    unsettled_truth = set(flares.filter(~pl.col("settled_within_48h"))["session_id"])
    unsettled_log = set(s.filter(pl.col("pain_next_day") - pl.col("pain_before") >= 2)["session_id"])
    assert unsettled_log == unsettled_truth
    rate = 100 * flares.height / s.height
    assert abs(rate - 100 * cohort_3000.config.flare_prob) < 0.6
    settled_share = flares["settled_within_48h"].mean()
    assert 0.65 <= settled_share <= 0.85


def test_planted_red_flags_match_symptom_checks(cohort_3000: Cohort) -> None:
    checks = cohort_3000.tables["symptom_checks"]
    positive = checks.filter(pl.any_horizontal(list(RED_FLAG_FIELDS)))
    truth = cohort_3000.truth["events"]["red_flags"]
    assert len(truth) > 0
    assert {(r["episode_id"], r["checked_on"]) for r in truth} == {
        (e, d.isoformat()) for e, d in positive.select("episode_id", "checked_on").iter_rows()
    }
    unactioned = positive.filter(pl.col("action_taken").is_null()).height
    assert unactioned == sum(r["action_taken"] is None for r in truth)
    referred = cohort_3000.tables["episodes"].filter(pl.col("end_reason") == "referred")["episode_id"]
    assert set(referred) <= {r["episode_id"] for r in truth if r["action_taken"] == "referred_urgent"}


def test_load_progression_every_one_to_two_weeks(cohort_3000: Cohort) -> None:
    ex = cohort_3000.tables["session_exercises"].join(
        cohort_3000.tables["sessions"].select("session_id", "episode_id", "session_date"), on="session_id"
    )
    kb = ex.filter(pl.col("exercise") == "kb_deadlift").sort("episode_id", "session_date")
    steps = kb.with_columns(pl.col("load_kg").diff().over("episode_id").alias("step"))
    assert steps.filter(pl.col("step") < 0).height == 0  # load never decreases
    stalled = {e["episode_id"] for e in cohort_3000.truth["events"]["stalled_progression"]}
    span = (
        kb.filter(~pl.col("episode_id").is_in(list(stalled)))
        .group_by("episode_id")
        .agg(
            (pl.col("load_kg").max() - pl.col("load_kg").min()).alias("gain"),
            ((pl.col("session_date").max() - pl.col("session_date").min()).dt.total_days() / 7).alias("wk"),
        )
        .filter(pl.col("wk") >= 8)
    )
    # 2 kg per progression: every 1-3 weeks gives 2/3 to 2 kg per week over 8+ weeks
    per_week = (span["gain"] / span["wk"]).to_numpy()
    assert np.median(per_week) > 0.6
    assert set(ex["exercise"].unique()) >= {"glute_bridge", "single_leg_bridge", "clamshell", "bird_dog"}


def test_odi_items_score_to_the_stored_odi(cohort_1000: Cohort) -> None:
    items = cohort_1000.tables["questionnaire_items"].filter(pl.col("instrument") == "odi")
    scored = items.group_by("episode_id", "assessed_on").agg(
        (pl.col("response").sum() / (5 * pl.len()) * 100).round(2).alias("score"), pl.len().alias("n")
    )
    odi = cohort_1000.tables["measures"].filter(pl.col("measure") == "odi")
    joined = odi.join(scored, on=["episode_id", "assessed_on"], how="full", coalesce=True)
    assert joined.filter(pl.col("score").is_null() | pl.col("value").is_null()).height == 0
    assert (joined["score"] - joined["value"]).abs().max() < 1e-9
    assert set(joined["n"].unique()) == {9, 10}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="n_patients"):
        SynthConfig(n_patients=0)
    with pytest.raises(ValueError, match="data_cut"):
        generate_cohort(n_patients=10, data_cut=SynthConfig().enrol_start)
