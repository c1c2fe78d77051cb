"""Work outcomes on hand-built episodes (every case of the return-to-work rule); recovery against truth.json.

Recovery: the Kaplan-Meier share back at full or modified duties by week 12 among those off work at enrolment
lies within 2 (Greenwood) SE of the expected value of truth.json, and the expected median return-to-work time
lies inside the KM median's 95 % interval. The fast test uses the 1,000-episode fixture; the slow one 20,000.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl
import pytest

from sciatica_outcomes.derive import Derived, derive_all, return_to_work, work_assessments
from sciatica_outcomes.derive.work import (
    RETURN_TO_WORK_COLUMNS,
    WORK_EPISODE_COLUMNS,
    discharge_and_follow_up_visits,
)
from sciatica_outcomes.models.survival import kaplan_meier
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.synth import Cohort, generate_cohort

START = date(2026, 1, 5)
EPISODE_IDS = ["E1", "E2", "E3", "E4", "E5", "E6"]


def _episodes() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "episode_id": EPISODE_IDS,
            "patient_id": [f"P{i}" for i in range(1, 7)],
            "clinic_id": ["C1"] * 3 + ["C2"] * 3,
            "start_date": [START] * 6,
            "end_date": [START + timedelta(days=190)] * 6,
            "age_at_start": [40, 45, 50, 35, 70, 30],
            "sex": ["F", "M", "F", "M", "F", "M"],
        }
    )


def _work() -> pl.DataFrame:
    # (episode, day, employment, status, return day, Q1, Q2, Q4, Q5, Q6)
    rows = [
        # E1: off at enrolment, back on modified duties (return date day 35) at week 6, full duties later
        ("E1", 0, "employed", "off_work_back_leg", None, True, 40.0, 0.0, None, 8),
        ("E1", 14, "employed", "off_work_back_leg", None, None, None, None, None, None),
        ("E1", 42, "employed", "modified_duties", 35, None, None, None, None, None),
        ("E1", 84, "employed", "full_duties", None, True, 0.0, 40.0, 2, 3),
        ("E1", 182, "employed", "full_duties", None, None, None, None, None, None),
        # E2: back at week 6 with no return date: the assessment date bounds the return
        ("E2", 0, "self_employed", "off_work_back_leg", None, None, None, None, None, None),
        ("E2", 42, "self_employed", "full_duties", None, None, None, None, None, None),
        # E3: still off (then off for other reasons): censored at the last assessment, day 84
        ("E3", 0, "employed", "off_work_back_leg", None, None, None, None, None, None),
        ("E3", 42, "employed", "off_work_back_leg", None, None, None, None, None, None),
        ("E3", 84, "employed", "off_work_other", None, None, None, None, None, None),
        # E4: off at enrolment, never assessed again: counted, not followed
        ("E4", -3, "employed", "off_work_back_leg", None, None, None, None, None, None),
        # E5: retired; E6: at work at enrolment: neither is in the return-to-work population
        ("E5", 0, "retired", "not_applicable", None, False, None, None, None, 6),
        ("E6", 0, "employed", "full_duties", None, None, None, None, None, None),
        ("E6", 84, "employed", "off_work_back_leg", None, None, None, None, None, None),
    ]
    cols = list(zip(*rows, strict=True))
    frame = pl.DataFrame(
        {
            "episode_id": cols[0],
            "assessed_on": [START + timedelta(days=d) for d in cols[1]],
            "employment_status": cols[2],
            "work_status": cols[3],
            "return_to_work_date": [None if d is None else START + timedelta(days=d) for d in cols[4]],
            "wpai_q1_employed": pl.Series(cols[5], dtype=pl.Boolean),
            "wpai_q2_hours_missed_health": pl.Series(cols[6], dtype=pl.Float64),
            "wpai_q4_hours_worked": pl.Series(cols[7], dtype=pl.Float64),
            "wpai_q5_work_impairment": pl.Series(cols[8], dtype=pl.Int64),
            "wpai_q6_activity_impairment": pl.Series(cols[9], dtype=pl.Int64),
        },
        schema_overrides={"return_to_work_date": pl.Date},
    )
    spec = TABLE_SPECS["work"]
    return frame.with_columns(
        pl.lit(None, dtype).alias(c) for c, dtype in spec.dtypes.items() if c not in frame.columns
    ).select(spec.columns)


def _measures() -> pl.DataFrame:
    rows = [("E1", 0, 3.0), ("E1", 84, 6.0), ("E1", 182, 7.0), ("E2", 0, 5.0), ("E2", 42, 6.0)]
    cols = list(zip(*rows, strict=True))
    return pl.DataFrame(
        {
            "episode_id": cols[0],
            "assessed_on": [START + timedelta(days=d) for d in cols[1]],
            "measure": ["was"] * len(rows),
            "value": cols[2],
        }
    )


def _tables(**given: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Every canonical table (typed and empty unless given)."""
    return {name: given.get(name, spec.empty()) for name, spec in TABLE_SPECS.items()}


def test_return_to_work_covers_every_case() -> None:
    rtw = return_to_work(work_assessments(_work(), _episodes()))
    assert rtw.columns == list(RETURN_TO_WORK_COLUMNS)
    got = {r["episode_id"]: r for r in rtw.to_dicts()}
    assert set(got) == {"E1", "E2", "E3", "E4"}  # E5 retired, E6 at work at enrolment
    assert (got["E1"]["time_days"], got["E1"]["event"], got["E1"]["time_source"]) == (35.0, 1, "return_date")
    assert (got["E2"]["time_days"], got["E2"]["event"], got["E2"]["time_source"]) == (
        42.0,
        1,
        "assessment_date",
    )
    assert (got["E3"]["time_days"], got["E3"]["event"], got["E3"]["time_source"]) == (
        84.0,
        0,
        "last_assessment",
    )
    assert got["E3"]["time_weeks"] == 12.0
    assert (got["E4"]["followed"], got["E4"]["time_days"], got["E4"]["event"]) == (False, None, 0)
    km = kaplan_meier(rtw.filter(pl.col("followed")), time="time_days", event="event")
    # S(35) = 1 - 1/3; S(42) = 2/3 x (1 - 1/2) = 1/3; E3 censored at 84
    assert km.curves["survival"].to_list() == pytest.approx([2 / 3, 1 / 3])


def test_work_episodes_statuses_was_and_wpai_change() -> None:
    derived = derive_all(_tables(episodes=_episodes(), work=_work(), measures=_measures()))
    ep = derived.work_episodes
    assert ep.columns == list(WORK_EPISODE_COLUMNS)
    assert ep["episode_id"].to_list() == EPISODE_IDS
    e1 = ep.row(0, named=True)
    assert discharge_and_follow_up_visits() == ("w12", "w26")
    assert (e1["work_status_start"], e1["work_status_discharge"], e1["work_status_follow_up"]) == (
        "off_work_back_leg",
        "full_duties",
        "full_duties",
    )
    assert (e1["off_work_at_enrolment"], e1["returned_to_work"], e1["return_to_work_weeks"]) == (
        True,
        True,
        5.0,
    )
    # WAS 3 -> 7 at the last follow-up visit (w26): +4 >= SDC 1.92; E2 5 -> 6: +1, not a responder
    assert (e1["was_baseline"], e1["was_last"], e1["was_change"], e1["was_responder"]) == (
        3.0,
        7.0,
        4.0,
        True,
    )
    e2 = ep.row(1, named=True)
    assert (e2["was_change"], e2["was_responder"]) == (1.0, False)
    # WPAI at w0: A = 40 / (40 + 0) = 100 %, no presenteeism (did not work), overall 100 %, activity 80 %;
    # at w12: A = 0, P = 20 %, overall 20 %, activity 30 %
    assert e1["wpai_absenteeism_pct_baseline"] == 100.0 and e1["wpai_presenteeism_pct_baseline"] is None
    assert (e1["wpai_absenteeism_pct_change"], e1["wpai_work_impairment_pct_change"]) == (-100.0, -80.0)
    assert e1["wpai_presenteeism_pct_change"] is None
    assert e1["wpai_activity_impairment_pct_change"] == pytest.approx(-50.0)
    e3, e4, e5, e6 = (ep.row(i, named=True) for i in range(2, 6))
    assert (e3["returned_to_work"], e3["return_to_work_weeks"], e3["work_status_discharge"]) == (
        False,
        None,
        "off_work_other",
    )
    assert e4["off_work_at_enrolment"] and e4["returned_to_work"] is None  # not followed: unknown
    assert (e5["employment_at_enrolment"], e5["off_work_at_enrolment"]) == ("retired", False)
    assert e5["wpai_activity_impairment_pct_baseline"] == 60.0
    assert (e6["off_work_at_enrolment"], e6["work_status_discharge"]) == (False, "off_work_back_leg")
    # the long frame keeps every work row
    assert derived.work_assessments.height == _work().height
    assert derived.return_to_work.height == 4


def test_no_work_table_gives_empty_frames() -> None:
    derived = derive_all(_tables(episodes=_episodes()))
    assert derived.work_assessments.height == derived.return_to_work.height == 0
    assert derived.work_episodes.columns == list(WORK_EPISODE_COLUMNS)
    assert derived.work_episodes.height == 0


@pytest.fixture(scope="module")
def derived_1000(cohort_1000: Cohort) -> Derived:
    return derive_all(cohort_1000.tables)


def _recovery(
    cohort: Cohort, derived: Derived | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    derived = derived or derive_all(cohort.tables)
    rtw = derived.return_to_work.filter(pl.col("followed"))
    km = kaplan_meier(rtw, time="time_days", event="event")
    at84 = km.curves.filter(pl.col("time") <= 84).tail(1).row(0, named=True)
    return at84, km.medians.row(0, named=True), cohort.truth["work"]["expected"]


def test_share_back_by_week12_and_median_recover_truth(cohort_1000: Cohort, derived_1000: Derived) -> None:
    at84, median, expected = _recovery(cohort_1000, derived_1000)
    share = 1.0 - at84["survival"]
    want = expected["share_back_by_week12_off_work_at_enrolment"]
    assert abs(share - want) <= 2 * at84["se"], (share, want, at84["se"])
    assert median["ci_low"] <= expected["median_return_to_work_days"] <= median["ci_high"], median


def test_work_episodes_agree_with_the_planted_returns(cohort_1000: Cohort, derived_1000: Derived) -> None:
    derived = derived_1000
    planted = pl.DataFrame(cohort_1000.truth["work"]["events"]["return_to_work"], orient="row")
    rtw = derived.return_to_work
    assert set(rtw["episode_id"]) == set(planted["episode_id"])
    both = rtw.filter(pl.col("event") == 1).join(planted, on="episode_id")
    # a return found at an assessment carries its planted day as the return date
    assert (both["time_source"] == "return_date").all()
    assert both["time_days"].cast(pl.Int64).to_list() == both["return_day"].to_list()
    # censored returners were not yet back at their last assessment
    cens = rtw.filter(pl.col("event") == 0, pl.col("followed")).join(planted, on="episode_id")
    assert (cens["return_day"].is_null() | (cens["return_day"] > cens["time_days"])).all()
    # WAS responders follow the SDC on the change
    ep = derived.work_episodes.filter(pl.col("was_change").is_not_null())
    assert ep.height > 100
    assert (ep["was_responder"] == (ep["was_change"] >= 1.92)).all()
    assert ep["was_change"].mean() > 0  # work ability improves as the latent ODI falls


@pytest.mark.slow
def test_recovery_on_a_large_cohort() -> None:
    at84, median, expected = _recovery(generate_cohort(n_patients=20000, seed=1))
    share = 1.0 - at84["survival"]
    want = expected["share_back_by_week12_off_work_at_enrolment"]
    print(f"share back by week 12: KM {share:.4f} (SE {at84['se']:.4f}), expected {want:.4f}")
    print(
        f"median RTW: KM {median['median']} ({median['ci_low']}-{median['ci_high']}), expected "
        f"{expected['median_return_to_work_days']}"
    )
    assert abs(share - want) <= 2 * at84["se"]
    assert median["ci_low"] <= expected["median_return_to_work_days"] <= median["ci_high"]
