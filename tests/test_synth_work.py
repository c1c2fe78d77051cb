"""The synthetic work table and global-verdict measures: ingest rules, planted events, the planted GLMM.

Work status is a random-intercept logistic model (``truth["work"]["glmm"]``, recovered by the fitted model in
``tests/models/test_work.py``); these tests check what the generator writes: every ingest rule passes, the
return dates are the planted ones, hours and WPAI answers agree with the status, status varies within
patients, the truth describes the model's own design, and PGIC, satisfaction and EQ-5D follow the ODI.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.ingest import validate_paths
from sciatica_outcomes.models.work import ADHERENCE_CENTRE, ODI_CENTRE, WORK_STATUS_FIXED
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.vocabulary import AT_WORK_STATUSES, OFF_WORK_BACK_LEG, PAID_WORK_STATUSES
from sciatica_outcomes.synth import Cohort, SynthConfig, generate_cohort, write_cohort


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(n_patients=400, seed=5)


def test_work_table_passes_every_ingest_rule(cohort: Cohort, tmp_path: Path) -> None:
    write_cohort(cohort, tmp_path)
    result = validate_paths(tmp_path)
    work = next(t for t in result.tables if t.source.table == "work")
    assert work.rows_quarantined == 0, result.errors.filter(pl.col("table") == "work")
    assert work.rows_valid == cohort.tables["work"].height > 0
    assert list(cohort.tables["work"].schema.items()) == list(TABLE_SPECS["work"].dtypes.items())


def test_return_dates_are_the_planted_returns_on_the_first_assessment_back(cohort: Cohort) -> None:
    work = cohort.tables["work"].join(
        cohort.tables["episodes"].select("episode_id", "start_date"), on="episode_id"
    )
    planted = pl.DataFrame(cohort.truth["work"]["events"]["return_to_work"], orient="row")
    base = work.sort("assessed_on").group_by("episode_id").first()
    off = base.filter(pl.col("work_status") == OFF_WORK_BACK_LEG)
    # the return-to-work population is exactly the paid workers off work at their first assessment
    assert set(off["episode_id"]) == set(planted["episode_id"])
    first_back = (
        work.filter(pl.col("episode_id").is_in(off["episode_id"].implode()))
        .filter(pl.col("work_status").is_in(list(AT_WORK_STATUSES)))
        .sort("assessed_on")
        .group_by("episode_id")
        .first()
        .join(planted, on="episode_id")
    )
    assert first_back.height > 20
    expected = first_back.select((pl.col("start_date") + pl.duration(days=pl.col("return_day"))).alias("d"))[
        "d"
    ]
    assert first_back["return_to_work_date"].to_list() == expected.to_list()
    # every recorded date is one of these (nobody else gets one, and never twice)
    dated = work.filter(pl.col("return_to_work_date").is_not_null())
    assert dated.height == first_back.height
    assert (dated["return_to_work_date"] <= dated["assessed_on"]).all()
    # planted returns within the observed visits are seen: the planted day precedes the first visit back
    assert (first_back["return_day"] >= 1).all()


def test_employment_mix_and_statuses(cohort: Cohort) -> None:
    work = cohort.tables["work"].join(
        cohort.tables["episodes"].select("episode_id", "age_at_start"), on="episode_id"
    )
    paid = pl.col("employment_status").is_in(list(PAID_WORK_STATUSES))
    assert work.filter(paid == (pl.col("work_status") == "not_applicable")).height == 0
    assert work.filter(pl.col("age_at_start") >= 67)["employment_status"].unique().to_list() == ["retired"]
    counts = cohort.truth["work"]["realised"]["employment_at_enrolment"]
    assert sum(counts.values()) == cohort.config.n_patients
    assert counts["employed"] / cohort.config.n_patients == pytest.approx(0.6 * 0.88, abs=0.08)
    # WAS only for paid workers, at the questionnaire weeks
    was = cohort.tables["measures"].filter(pl.col("measure") == "was")
    assert was.height > 0 and was["value"].is_between(0, 10).all()
    assert was.join(work, on=["episode_id", "assessed_on"]).filter(~paid).height == 0


#: measures drawn from the work stream (the others must not move with the work parameters)
WORK_STREAM_MEASURES = ["was", "pgic", "satisfaction", "eq5d_index", "eq5d_vas"]


def test_other_tables_do_not_depend_on_the_work_parameters() -> None:
    a = generate_cohort(n_patients=60, seed=3)
    b = generate_cohort(
        n_patients=60,
        seed=3,
        work_intercept=-2.0,
        work_patient_sd=0.5,
        work_week_effect=0.3,
        was_intercept=3.0,
        pgic_cuts=(3.0, 2.0, 1.0, 0.0, -1.0, -2.0),
        eq5d_intercept=0.8,
    )
    for name in ("episodes", "sessions", "session_exercises", "questionnaire_items", "symptom_checks"):
        assert a.tables[name].equals(b.tables[name]), name
    not_work = ~pl.col("measure").is_in(WORK_STREAM_MEASURES)
    assert a.tables["measures"].filter(not_work).equals(b.tables["measures"].filter(not_work))
    assert not a.tables["work"].equals(b.tables["work"])
    for measure in ("pgic", "eq5d_index"):
        one = pl.col("measure") == measure
        assert not a.tables["measures"].filter(one).equals(b.tables["measures"].filter(one)), measure


def test_status_hours_and_wpai_agree(cohort: Cohort) -> None:
    """Nobody at full duties misses hours or is absent; off work because of back or leg pain works 0 hours."""
    work = cohort.tables["work"]
    full = work.filter(pl.col("work_status") == "full_duties")
    off = work.filter(pl.col("work_status") == OFF_WORK_BACK_LEG)
    modified = work.filter(pl.col("work_status") == "modified_duties")
    assert full.height > 100 and off.height > 100 and modified.height > 50
    assert (full["hours_worked"] == full["hours_contracted"]).all()
    assert (full["wpai_q2_hours_missed_health"].drop_nulls() == 0).all()
    assert (off["hours_worked"] == 0).all() and (off["sick_leave_days_4wk"] >= 1).all()
    q = off.filter(pl.col("wpai_q2_hours_missed_health").is_not_null())
    assert (q["wpai_q2_hours_missed_health"] == q["hours_contracted"]).all()  # absenteeism 100 %
    assert (q["wpai_q4_hours_worked"] == 0).all()
    assert (modified["hours_worked"] < modified["hours_contracted"]).all()
    assert (modified["hours_worked"] > 0).all()


def test_work_status_varies_within_patients(cohort: Cohort) -> None:
    """The GLMM has within-patient variation to estimate: many paid workers change status over the episode."""
    work = cohort.tables["work"].filter(pl.col("employment_status").is_in(list(PAID_WORK_STATUSES)))
    at = work.with_columns(pl.col("work_status").is_in(list(AT_WORK_STATUSES)).alias("at"))
    per = at.group_by("episode_id").agg(pl.col("at").n_unique().alias("k"), pl.len().alias("n"))
    several = per.filter(pl.col("n") >= 3)
    assert several.height > 100
    assert 0.2 < (several["k"] == 2).mean() < 0.8
    # a return can be followed by a relapse: the process is not monotone
    relapse = (
        at.sort("episode_id", "assessed_on")
        .with_columns(pl.col("at").shift(1).over("episode_id").alias("before"))
        .filter(pl.col("before") & ~pl.col("at") & (pl.col("work_status") == OFF_WORK_BACK_LEG))
    )
    assert relapse.height > 10


def test_glmm_truth_is_the_models_design(cohort: Cohort) -> None:
    glmm = cohort.truth["work"]["glmm"]
    cfg = cohort.config
    assert glmm["coefficients"] == {
        "(Intercept)": cfg.work_intercept,
        "week": cfg.work_week_effect,
        "odi_10": cfg.work_odi_effect,
        "adherence_10": cfg.work_adherence_effect,
    }
    assert glmm["sigma_u"] == cfg.work_patient_sd and glmm["clinic_sd"] == 0.0
    assert glmm["formula"] == f"{WORK_STATUS_FIXED} + (1 | episode_id)"
    assert (glmm["design"]["odi_centre"], glmm["design"]["adherence_centre"]) == (
        ODI_CENTRE,
        ADHERENCE_CENTRE,
    )
    assert "conditional" in glmm["scale"]
    # the realised patient SD is a draw of sigma_u (about sigma / sqrt(2 n) of sampling SD)
    n = glmm["realised"]["n_episodes"]
    assert abs(glmm["realised"]["sd_u"] - cfg.work_patient_sd) < 4 * cfg.work_patient_sd / math.sqrt(2 * n)


def test_global_verdict_and_eq5d_follow_the_odi_change(cohort: Cohort) -> None:
    m = cohort.tables["measures"]
    pgic = m.filter(pl.col("measure") == "pgic")
    sat = m.filter(pl.col("measure") == "satisfaction")
    assert pgic.height > 100 and pgic["value"].is_between(1, 7).all() and (pgic["value"] % 1 == 0).all()
    assert sat.height == pgic.height and sat["value"].is_between(1, 5).all()
    index = m.filter(pl.col("measure") == "eq5d_index")
    vas = m.filter(pl.col("measure") == "eq5d_vas")
    assert index["value"].is_between(-1, 1).all() and vas["value"].is_between(0, 100).all()
    grc = m.filter(pl.col("measure") == "grc")
    assert set(zip(pgic["episode_id"], pgic["assessed_on"], strict=True)) == set(
        zip(grc["episode_id"], grc["assessed_on"], strict=True)
    )
    odi = m.filter(pl.col("measure") == "odi").select(
        "episode_id", "assessed_on", pl.col("value").alias("odi")
    )
    base = (
        odi.sort("assessed_on").group_by("episode_id").first().select("episode_id", pl.col("odi").alias("b"))
    )
    both = (
        pgic.select("episode_id", "assessed_on", pl.col("value").alias("pgic"))
        .join(
            sat.select("episode_id", "assessed_on", pl.col("value").alias("sat")),
            on=["episode_id", "assessed_on"],
        )
        .join(odi, on=["episode_id", "assessed_on"])
        .join(base, on="episode_id")
        .with_columns((pl.col("odi") - pl.col("b")).alias("change"))
    )
    # lower PGIC (better) with a larger ODI improvement; satisfaction higher with a better PGIC
    assert both.select(pl.corr("pgic", "change", method="spearman")).item() > 0.3
    assert both.select(pl.corr("sat", "pgic", method="spearman")).item() < -0.4
    eq = index.join(odi, on=["episode_id", "assessed_on"])
    assert eq.select(pl.corr("value", "odi")).item() < -0.5
    # share of PGIC success (1 or 2) at discharge against its expected value (binomial SE, 3 SE)
    truth = cohort.truth["work"]["expected"]
    start = cohort.tables["episodes"].select("episode_id", "start_date")
    at12 = pgic.join(start, on="episode_id").filter(
        ((pl.col("assessed_on") - pl.col("start_date")).dt.total_days() / 7).is_between(11, 13)
    )
    share = float((at12["value"] <= 2).mean())
    want = truth["pgic_success_share_at_discharge"]
    assert abs(share - want) <= 3 * math.sqrt(want * (1 - want) / at12.height), (share, want)
    # the EQ-5D index at baseline: mean of the planted line (clipping at -0.3 and 1 moves it < 0.005)
    b_idx = index.join(start, on="episode_id").filter(pl.col("assessed_on") <= pl.col("start_date"))
    se = math.sqrt(cohort.config.eq5d_sd**2 + (0.09 * 1.25) ** 2) / math.sqrt(b_idx.height)
    assert abs(b_idx["value"].mean() - truth["eq5d_index_mean_at_baseline"]) < 4 * se + 0.005


def test_truth_records_the_work_parameters_and_expectations(cohort: Cohort, tmp_path: Path) -> None:
    truth = json.loads(write_cohort(cohort, tmp_path)["truth"].read_text())
    cfg = truth["config"]
    assert cfg["work_odi_effect"] == SynthConfig().work_odi_effect
    expected = truth["work"]["expected"]
    surv = expected["return_to_work_survival_days"]
    assert expected["share_back_by_week12_off_work_at_enrolment"] == pytest.approx(1 - surv["84"])
    assert surv["28"] >= surv["56"] >= surv["84"] >= surv["182"]
    median = expected["median_return_to_work_days"]
    assert surv["28"] > 0.5 and 28 < median < 84


def test_a_bad_employment_mix_is_refused() -> None:
    with pytest.raises(ValueError, match="employment_mix must give 7 shares summing to 1"):
        SynthConfig(employment_mix=(0.5, 0.5))


def test_return_dates_fall_on_or_after_start(cohort: Cohort) -> None:
    work = cohort.tables["work"].join(
        cohort.tables["episodes"].select("episode_id", "start_date"), on="episode_id"
    )
    dated = work.filter(pl.col("return_to_work_date").is_not_null())
    assert (dated["return_to_work_date"] >= dated["start_date"] + timedelta(days=1)).all()
