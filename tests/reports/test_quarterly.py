"""Quarterly report computations on a real DuckDB store filled with a synthetic cohort."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sciatica_outcomes.errors import ReportParameterError
from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import Cohort, generate_cohort


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(n_patients=600, n_clinics=4, seed=21)


@pytest.fixture(scope="module")
def db(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "outcomes.duckdb"
    with Store(path) as store:
        for name, frame in cohort.tables.items():
            store.write(name, frame, source="synthetic")
    return path


def test_quarter_parsing_and_arithmetic() -> None:
    qt = q.Quarter.parse("2026Q3")
    assert (qt.start, qt.end) == (date(2026, 7, 1), date(2026, 9, 30))
    assert q.Quarter.parse("2024Q1").end == date(2024, 3, 31)
    assert qt.shift(-4).label == "2025Q3" and qt.shift(2).label == "2027Q1"
    for bad in ("2026Q5", "2026-Q3", "Q3 2026", ""):
        with pytest.raises(ReportParameterError, match="2026Q3"):
            q.Quarter.parse(bad)


def test_as_of_never_shows_the_future(cohort: Cohort) -> None:
    day = date(2025, 12, 31)
    t = q.as_of(cohort.tables, day)
    assert t["episodes"]["start_date"].max() <= day
    assert t["sessions"]["session_date"].max() <= day
    assert t["measures"]["assessed_on"].max() <= day
    ended_later = cohort.tables["episodes"].filter(pl.col("end_date") > day)["episode_id"]
    still = t["episodes"].filter(pl.col("episode_id").is_in(ended_later.to_list()))
    assert still.height > 0 and still["end_date"].null_count() == still.height


def test_patient_flow_identities(db: Path, cohort: Cohort) -> None:
    inputs = q.load_inputs(db, "2026Q2")
    flow = dict(q.patient_flow(inputs).iter_rows())
    assert flow["active in quarter"] == flow["active at start of quarter"] + flow["enrolled in quarter"]
    ended = sum(v for k, v in flow.items() if k.startswith("ended:"))
    assert flow["active in quarter"] == ended + flow["still active at end of quarter"]
    # independent count from the raw episodes table
    ep = cohort.tables["episodes"]
    enrolled = ep.filter(pl.col("start_date").is_between(date(2026, 4, 1), date(2026, 6, 30))).height
    assert flow["enrolled in quarter"] == enrolled
    in_q2 = pl.col("end_date").is_between(date(2026, 4, 1), date(2026, 6, 30))
    completed = ep.filter(in_q2 & (pl.col("end_reason") == "completed")).height
    assert flow["ended: completed"] == completed


def test_clinic_restriction_and_case_mix(db: Path) -> None:
    all_clinics = q.load_inputs(db, "2026Q2")
    one = q.load_inputs(db, "2026Q2", clinic="CL02")
    assert set(one.tables["episodes"]["clinic_id"].unique()) == {"CL02"}
    mix = q.case_mix(one)
    active = dict(q.patient_flow(one).iter_rows())["active in quarter"]
    for _, part in mix.group_by("characteristic"):
        assert part["n"].sum() == active  # every characteristic partitions the active episodes
    assert q.case_mix(all_clinics)["n"].sum() > mix["n"].sum()


def test_parameter_validation(db: Path) -> None:
    q.validate_parameters({"db": str(db), "quarter": "2026Q2", "clinic": "CL01"})
    with pytest.raises(ReportParameterError, match="outside the data"):
        q.validate_parameters({"db": str(db), "quarter": "2019Q1"})
    with pytest.raises(ReportParameterError, match="unknown clinic"):
        q.validate_parameters({"db": str(db), "quarter": "2026Q2", "clinic": "CL99"})
    with pytest.raises(ReportParameterError, match="does not exist"):
        q.validate_parameters({"db": str(db.parent / "nope.duckdb"), "quarter": "2026Q2"})


def test_completeness_and_provenance(db: Path) -> None:
    inputs = q.load_inputs(db, "2026Q1")
    dq = q.data_quality(inputs)
    comp = dq["completeness"]
    assert (comp["baseline_n"] <= comp["baseline_of"]).all() and (comp["end_n"] <= comp["end_of"]).all()
    assert dq["quarantine"].height == 0  # nothing was quarantined in a clean synthetic store
    prov = q.provenance(inputs)
    assert set(prov["data_sha256"]) == set(inputs.tables)
    assert prov["data_sha256"] == q.provenance(q.load_inputs(db, "2026Q1"))["data_sha256"]
    assert prov["data_sha256"] != q.provenance(q.load_inputs(db, "2025Q4"))["data_sha256"]


def test_time_to_improvement_curves_never_step_by_a_small_count(db: Path) -> None:
    from sciatica_outcomes.models.responders import responder_frame  # noqa: PLC0415
    from sciatica_outcomes.models.survival import kaplan_meier, time_to_improvement  # noqa: PLC0415

    # one clinic: about 19 episodes at risk, so no step of more than 10 events with more than 10 at risk
    assert q.time_to_improvement_summary(q.load_inputs(db, "2026Q3", clinic="CL02"))["curves"].is_empty()
    inputs = q.load_inputs(db, "2026Q3")
    tti = q.time_to_improvement_summary(inputs)
    for outcome, label in q.KM_OUTCOMES.items():
        rf = responder_frame(inputs.tables, outcome, inputs.config)
        curves = kaplan_meier(time_to_improvement(rf, "mcid")).curves
        shown = tti["curves"].filter(pl.col("outcome") == label)
        full = curves.with_columns(pl.col("n_events").cum_sum().alias("cum_events"))
        at = full.join(shown.select("time", "share_improved"), on="time", how="inner")
        # every shown point is the Kaplan-Meier estimate itself, with more than 10 episodes still at risk
        assert at.height == shown.height > 0
        assert at["share_improved"].to_list() == pytest.approx((1 - at["survival"]).to_list())
        assert (at["n_at_risk"] > 10).all()
        # each step (from 0, then from the previous shown point) spans more than 10 events
        steps = at["cum_events"].diff().fill_null(at["cum_events"][0])
        assert (steps > 10).all()
        # the raw curve has small steps and a small tail: the rule does cut something
        assert (curves["n_events"] <= 10).any() and (curves["n_at_risk"] <= 10).any()


_REASONS = ["completed", "dropped out", "referred", "surgery", "injection", "other"]


@given(st.integers(0, 40), st.integers(0, 40), st.lists(st.integers(0, 25), min_size=6, max_size=6))
@settings(max_examples=300, deadline=None)
def test_flow_display_leaves_no_withheld_count_to_subtraction(
    start: int, enrolled: int, ended: list[int]
) -> None:
    active = start + enrolled
    scale = sum(ended)
    if scale > active:  # the reasons cannot end more episodes than were active
        ended = [e * active // scale for e in ended]
    still = active - sum(ended)
    stages = ["active at start of quarter", "enrolled in quarter", "active in quarter"]
    stages += [f"ended: {r}" for r in _REASONS] + ["still active at end of quarter"]
    values = [start, enrolled, active, *ended, still]
    shown = q.flow_display(pl.DataFrame({"stage": stages, "n": values}))
    n = dict(zip(stages, values, strict=True)) | {"ended": sum(ended)}
    for stage, text in shown.items():
        if text != "*":
            assert not (1 <= n[stage] <= 10), (stage, n[stage])
    # identities: whole = sum of parts; shown whole minus shown parts must be 0 or more than 10
    identities = [
        ("active in quarter", ["active at start of quarter", "enrolled in quarter"]),
        ("active in quarter", [*(f"ended: {r}" for r in _REASONS), "still active at end of quarter"]),
        ("active in quarter", ["ended", "still active at end of quarter"]),
        ("ended", [f"ended: {r}" for r in _REASONS]),
    ]
    for whole, parts in identities:
        if shown[whole] == "*":
            continue
        hidden = [p for p in parts if shown[p] == "*"]
        rest = sum(n[p] for p in hidden)
        assert rest == 0 or rest > 10, (whole, hidden, rest)
        assert len([p for p in hidden if n[p] > 0]) != 1, (whole, hidden)


def test_no_quarterly_report_for_ten_or_fewer_active_episodes(tmp_path: Path) -> None:
    small = generate_cohort(n_patients=40, n_clinics=3, seed=3)
    path = tmp_path / "small.duckdb"
    with Store(path) as store:
        for name, frame in small.tables.items():
            store.write(name, frame, source="synthetic")
    params = {"db": str(path), "quarter": "2026Q2", "clinic": "CL01"}
    flow = dict(q.patient_flow(q.load_inputs(path, "2026Q2", clinic="CL01")).iter_rows())
    assert 1 <= flow["active in quarter"] <= 10
    with pytest.raises(ReportParameterError, match="between 1 and 10 episode"):
        q.validate_parameters(params)
    q.validate_parameters({**params, "clinic": ""})  # all clinics together: enough episodes
    # a one-clinic quarter whose case mix has one sex only: no comparison, no exception
    assert q.provider_comparison(q.load_inputs(path, "2026Q1", clinic="CL01")) is None
