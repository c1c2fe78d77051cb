"""The synthetic work table: it passes every ingest rule, and it holds exactly the planted events."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.ingest import validate_paths
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


def test_other_tables_do_not_depend_on_the_work_parameters() -> None:
    a = generate_cohort(n_patients=60, seed=3)
    b = generate_cohort(n_patients=60, seed=3, work_intercept=-2.0, was_intercept=3.0)
    for name in ("episodes", "sessions", "session_exercises", "questionnaire_items", "symptom_checks"):
        assert a.tables[name].equals(b.tables[name]), name
    not_was = pl.col("measure") != "was"
    assert a.tables["measures"].filter(not_was).equals(b.tables["measures"].filter(not_was))
    assert not a.tables["work"].equals(b.tables["work"])


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
