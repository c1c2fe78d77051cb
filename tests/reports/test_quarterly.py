"""Quarterly report computations on a real DuckDB store filled with a synthetic cohort."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import ReportParameterError
from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports.privacy import suppress_table
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.store_tables import INGEST_LOG_SCHEMA, QUARANTINE_SCHEMA
from sciatica_outcomes.scoring import ODI_BANDS, odi_band
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


def test_case_mix_display_withholds_it_all_where_the_flow_withholds_the_active_count(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = q.load_inputs(db, "2026Q2", clinic="CL02", rule=q.report_rule("network", None, "CL02"))
    mix = q.case_mix(inputs)
    shown = q.case_mix_display(inputs, mix)
    assert shown.select("characteristic", "category").equals(mix.select("characteristic", "category"))
    for text, n in zip(shown["n"], mix["n"], strict=True):
        assert text == "*" if 1 <= n <= 10 else text in ("*", str(n))
    # where the flow withholds the active count, the categories (which add up to it) are withheld too
    flow = q.published_flow(inputs)
    monkeypatch.setattr(q, "published_flow", lambda *args, **kwargs: {**flow, "active in quarter": "*"})
    assert set(q.case_mix_display(inputs, mix)["n"]) == {"*"}
    internal = q.load_inputs(db, "2026Q2", clinic="CL02", rule=q.report_rule(None, None, "CL02"))
    assert q.case_mix_display(internal)["n"].to_list() == [str(n) for n in q.case_mix(internal)["n"]]


def test_parameter_validation(db: Path) -> None:
    q.validate_parameters({"db": str(db), "quarter": "2026Q2", "clinic": "CL01"})
    with pytest.raises(ReportParameterError, match="outside the data"):
        q.validate_parameters({"db": str(db), "quarter": "2019Q1"})
    with pytest.raises(ReportParameterError, match="unknown clinic"):
        q.validate_parameters({"db": str(db), "quarter": "2026Q2", "clinic": "CL99"})
    with pytest.raises(ReportParameterError, match="does not exist"):
        q.validate_parameters({"db": str(db.parent / "nope.duckdb"), "quarter": "2026Q2"})


def test_data_span_ends_at_the_latest_end_date_not_the_latest_start(tmp_path: Path) -> None:
    # 30 episodes all started in 2026Q1 and ended in 2026Q2: 2026Q2 lies inside the data (they were active),
    # 2026Q3 after it; with no end date at all, the span stops at the last start
    episodes = generate_cohort(n_patients=30, seed=3).tables["episodes"]
    reason = episodes["end_reason"].drop_nulls()[0]
    ended = episodes.with_columns(
        pl.lit(date(2026, 2, 2)).alias("start_date"),
        pl.lit(date(2026, 5, 15)).alias("end_date"),
        pl.lit(reason).alias("end_reason"),
    )
    for name, frame, inside, outside in [
        ("ended", ended, "2026Q2", "2026Q3"),
        (
            "open",
            ended.with_columns(
                pl.lit(None, pl.Date).alias("end_date"), pl.lit(None, pl.String).alias("end_reason")
            ),
            "2026Q1",
            "2026Q2",
        ),
    ]:
        path = tmp_path / f"{name}.duckdb"
        with Store(path) as store:
            store.write("episodes", frame, source="t")
        q.validate_parameters({"db": str(path), "quarter": inside})
        with pytest.raises(ReportParameterError, match=r"outside the data .* between 2026Q1 and 2026Q1"):
            q.validate_parameters({"db": str(path), "quarter": outside})


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
    n[q.OTHER_ENDS] = sum(ended[2:])
    reasons = [s for s in shown if s.startswith("ended: ")]
    # the minor reasons are merged when one of them is small, and then all of them
    merged = any(1 <= e <= 10 for e in ended[2:])
    assert (q.OTHER_ENDS in shown) == merged
    assert reasons == (
        ["ended: completed", "ended: dropped out", q.OTHER_ENDS]
        if merged
        else [f"ended: {r}" for r in _REASONS]
    )
    for stage, text in shown.items():
        if text != "*":
            assert not (1 <= n[stage] <= 10), (stage, n[stage])
    # identities: whole = sum of parts; shown whole minus shown parts must be 0 or more than 10
    identities = [
        ("active in quarter", ["active at start of quarter", "enrolled in quarter"]),
        ("active in quarter", [*reasons, "still active at end of quarter"]),
        ("active in quarter", ["ended", "still active at end of quarter"]),
        ("ended", reasons),
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


def _tiny_inputs(
    baseline_odi: list[float | None],
    end_odi_days_before: int | None = None,
    config: ClinicalConfig | None = None,
) -> q.QuarterlyInputs:
    """One clinic, one episode per baseline ODI value, all active in 2026Q1 (ended in it when an end ODI
    is asked for, measured that many days before the end)."""
    quarter = q.Quarter.parse("2026Q1")
    start, end = date(2026, 1, 5), date(2026, 3, 20)
    n = len(baseline_odi)
    ids = [f"EP{i:03d}" for i in range(n)]
    ended = end_odi_days_before is not None
    columns: dict[str, dict[str, list[object]]] = {
        "episodes": {
            "episode_id": ids,
            "patient_id": [f"PT{i:03d}" for i in range(n)],
            "clinic_id": ["CL01"] * n,
            "start_date": [start] * n,
            "end_date": [end if ended else None] * n,
            "end_reason": ["completed" if ended else None] * n,
            "age_at_start": [50] * n,
            "sex": ["F"] * n,
            "symptom_duration_weeks": [20] * n,
            "affected_side": ["left"] * n,
        },
        "measures": {
            "episode_id": [e for e, v in zip(ids, baseline_odi, strict=True) if v is not None],
            "assessed_on": [start] * sum(v is not None for v in baseline_odi),
            "measure": ["odi"] * sum(v is not None for v in baseline_odi),
            "value": [v for v in baseline_odi if v is not None],
        },
    }
    if ended:
        day = end - timedelta(days=end_odi_days_before)
        m = columns["measures"]
        m["episode_id"] += ids
        m["assessed_on"] += [day] * n
        m["measure"] += ["odi"] * n
        m["value"] += [30.0] * n
    tables = {name: spec.empty() for name, spec in TABLE_SPECS.items()}
    for name, data in columns.items():
        tables[name] = pl.DataFrame(data).select(
            pl.col(c).cast(t) if c in data else pl.lit(None, t).alias(c)
            for c, t in TABLE_SPECS[name].dtypes.items()
        )
    return q.QuarterlyInputs(
        quarter=quarter,
        clinic=None,
        config=config or ClinicalConfig(),
        tables=q.as_of(tables, quarter.end),
        history=tables,
        quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA),
        ingest_log=pl.DataFrame(schema=INGEST_LOG_SCHEMA),
    )


def test_case_mix_odi_bands_are_the_scoring_bands() -> None:
    # every band edge, just above it, and 20.4 (where the report's own bands once said "minimal")
    values = [0.0, 20.0, 20.4, 20.5, 40.0, 40.3, 60.0, 60.01, 80.0, 80.1, 100.0, None]
    mix = q.case_mix(_tiny_inputs(values)).filter(pl.col("characteristic") == "baseline ODI")
    shown = dict(zip(mix["category"], mix["n"], strict=True))
    expected = Counter(
        pl.DataFrame({"s": values}, schema={"s": pl.Float64})
        .select(odi_band(pl.col("s"), label=True).fill_null("not recorded"))
        .to_series()
        .to_list()
    )
    assert shown == dict(expected)
    assert shown == {
        "minimal disability (0-20)": 2,
        "moderate disability (21-40)": 3,
        "severe disability (41-60)": 2,
        "crippling back pain (61-80)": 2,
        "bed-bound (81-100)": 2,
        "not recorded": 1,
    }
    # in the order of the scale, "not recorded" last (never alphabetical)
    assert list(mix["category"]) == [*(label for _, _, label in ODI_BANDS), "not recorded"]


def test_end_of_episode_completeness_uses_the_configured_window() -> None:
    values = [40.0] * 12
    ten_days = _tiny_inputs(values, end_odi_days_before=10)
    comp = q.data_quality(ten_days)["completeness"].filter(pl.col("measure") == "odi").row(0, named=True)
    assert (comp["baseline_n"], comp["baseline_of"], comp["end_n"], comp["end_of"]) == (12, 12, 12, 12)
    week = _tiny_inputs(values, end_odi_days_before=10, config=ClinicalConfig().replace(end_window_days=7))
    comp = q.data_quality(week)["completeness"].filter(pl.col("measure") == "odi").row(0, named=True)
    assert (comp["end_n"], comp["end_of"]) == (0, 12)
    # the end-of-episode outcomes read the same derived frame: 12 ended with an ODI change of -10
    ends = q.end_of_episode_outcomes(ten_days).filter(pl.col("outcome") == "odi").row(0, named=True)
    assert (ends["n_baseline"], ends["n_with_end"], ends["mean_change"]) == (12, 12, -10.0)
    assert ends["responders_mcid"] == 12 and ends["responders_30pct"] == 0


# --- early and partial data (issue 13, item 3) -----------------------------------------------------------


def _first_quarter(cohort: Cohort) -> q.Quarter:
    first = cohort.tables["episodes"]["start_date"].min()
    assert isinstance(first, date)
    return q.Quarter(first.year, (first.month - 1) // 3 + 1)


def test_estimable_week_is_the_nth_latest_follow_up() -> None:
    # episode k is last seen at week k (k = 1..30), each also at week 0
    weeks = pl.DataFrame(
        {
            "episode_id": [f"E{k}" for k in range(1, 31)] * 2,
            "week": [0.0] * 30 + [float(k) for k in range(1, 31)],
        }
    )
    # 20 episodes are seen at week 11 or later (11..30), only 19 at week 12 or later
    assert q.estimable_week(weeks, 20) == 11.0
    assert q.estimable_week(weeks, 30) == 1.0
    assert q.estimable_week(weeks, 31) is None


def test_growth_time_keeps_only_knots_before_the_estimable_week() -> None:
    assert q.growth_time(26.4) == q.GROWTH_TIME == "ns(week, knots = c(6, 12))"
    assert q.growth_time(12.0) == "ns(week, knots = c(6))"
    assert q.growth_time(6.0) == "week"


def test_early_quarters_fit_and_never_estimate_beyond_the_follow_up(db: Path, cohort: Cohort) -> None:
    cfg = ClinicalConfig()
    first = _first_quarter(cohort)
    seen_cut = False
    for k in range(3):  # the first quarters of a new program: follow-up shorter than 26 weeks
        inputs = q.load_inputs(db, first.shift(k))
        models = q.outcome_models(inputs)  # the first one raised "The spline has internal repeated knots"
        frame = inputs.derived().analysis_frame
        bounds = q.outcome_bounds(inputs)
        for outcome, mod in models.items():
            m = frame.filter(pl.col(outcome).is_not_null()).with_columns(
                (pl.col("day").clip(lower_bound=0) / 7.0).alias("week")
            )
            last = m.group_by("episode_id").agg(pl.col("week").max())["week"]
            # the rule, counted independently: enough episodes reach the estimable week, fewer go beyond it
            assert (last >= mod.estimable_week).sum() >= cfg.min_episodes_followed
            assert (last > mod.estimable_week).sum() < cfg.min_episodes_followed
            assert mod.trajectory["week"].max() <= mod.estimable_week
            beyond = mod.changes.filter(pl.col("week") > mod.estimable_week)
            assert beyond["estimate"].null_count() == beyond.height
            assert beyond["note"].str.starts_with("not yet estimable (fewer than 20 episodes").all()
            within = mod.changes.filter(pl.col("week") <= mod.estimable_week)
            assert within["estimate"].null_count() == 0 and within["note"].null_count() == within.height
            lo, hi = bounds[outcome]
            if outcome in q.CAPPED_OUTCOMES:  # censored model: the latent tolerance has no cap
                assert mod.method == "censored growth model" and mod.bounds == (lo, None)
                hi = None
            for col in ("estimate", "ci_low", "ci_high"):
                assert lo is None or mod.trajectory[col].min() >= lo  # type: ignore[operator]
                assert hi is None or mod.trajectory[col].max() <= hi  # type: ignore[operator]
            seen_cut |= beyond.height > 0
    assert seen_cut  # the first quarters do have weeks that are not yet estimable


def test_capped_tolerance_is_fitted_by_the_censored_growth_model(db: Path, cohort: Cohort) -> None:
    inputs = q.load_inputs(db, _first_quarter(cohort).shift(3))
    models = q.outcome_models(inputs)
    frame = inputs.derived().analysis_frame
    for outcome in q.CAPPED_OUTCOMES:
        mod = models[outcome]
        assert mod.method == "censored growth model" and mod.spec["purpose"] == "censored growth model"
        assert mod.formula.startswith(f"log({outcome}) ~ ") and "(1 | clinic_id)" not in mod.formula
        flags = frame.filter(pl.col(outcome).is_not_null())[f"{outcome}_censored"]
        assert mod.n_at_cap == int(flags.sum()) > 0  # the tests at the cap, kept as data
        diag = mod.spec["diagnostics"]
        assert diag["n_censored_right"] == mod.n_at_cap and mod.spec["converged"]
        assert math.isfinite(diag["quadrature_error"])
        # median minutes (censored model): exp of the latent mean, inside its interval, rising with training
        traj = mod.trajectory
        assert (traj["ci_low"] < traj["estimate"]).all() and (traj["estimate"] < traj["ci_high"]).all()
        assert traj["estimate"][-1] > traj["estimate"][0]
        # a capped test is a lower bound: the naive growth model of the same log minutes (caps taken as
        # values) gives a smaller rise over the trajectory than the censored model
        rows = frame.filter(pl.col(outcome).is_not_null()).with_columns(
            (pl.col("day").clip(lower_bound=0) / 7.0).alias("week")
        )
        naive = q.GrowthModel(mod.formula, reml=False).fit(rows)
        top = float(traj["week"][-1])
        em = naive.emmeans("week", at={"week": [0.0, top]}).means["emmean"]
        censored_rise = math.log(traj["estimate"][-1] / traj["estimate"][0])
        assert censored_rise > em[1] - em[0] > 0


def test_outcome_bounds_are_the_scales_and_the_recorded_caps(db: Path, cohort: Cohort) -> None:
    inputs = q.load_inputs(db, "2026Q2")
    bounds = q.outcome_bounds(inputs)
    assert bounds["odi"] == (0.0, 100.0) and bounds["nprs_leg"] == (0.0, 10.0)
    caps = cohort.tables["measures"].filter(pl.col("measure") == "walk_tolerance_min")["cap_min"].max()
    assert bounds["walk_tolerance_min"] == (0.0, caps)


@pytest.fixture(scope="module")
def partial_db(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's cohort without the symptom_checks and session_exercises tables."""
    path = tmp_path_factory.mktemp("partial") / "outcomes.duckdb"
    with Store(path) as store:
        for name, frame in cohort.tables.items():
            if name not in ("symptom_checks", "session_exercises"):
                store.write(name, frame, source="synthetic")
    return path


def test_coverage_names_tables_not_ingested_or_empty_for_the_quarter(
    partial_db: Path, db: Path, cohort: Cohort
) -> None:
    cov = q.coverage(q.load_inputs(partial_db, "2026Q2"))
    status = dict(zip(cov["table"], cov["status"], strict=True))
    assert list(cov["table"]) == list(q.TABLE_USES)
    assert status["symptom_checks"] == status["session_exercises"] == "not ingested"
    assert status["episodes"] == status["sessions"] == status["measures"] == "recorded"
    note = q.coverage_note(cov, "symptom_checks")
    assert note == "the red-flag screens, table symptom_checks, were not ingested"
    # the full store: every table recorded in a later quarter; before the first enrolment nothing is
    full = q.coverage(q.load_inputs(db, "2026Q2"))
    assert full["status"].to_list() == ["recorded"] * len(q.TABLE_USES) and full["ingested"].all()
    before = q.coverage(q.load_inputs(db, _first_quarter(cohort).shift(-1)))
    assert before["ingested"].all() and not before["up_to_end"].any()
    assert set(before["status"]) == {"no rows up to the end of the quarter"}


def test_trend_says_whether_sessions_were_recorded(partial_db: Path, cohort: Cohort) -> None:
    inputs = q.load_inputs(partial_db, _first_quarter(cohort).shift(1))
    tr = q.trend(inputs)
    assert tr["sessions_recorded"].to_list() == [False, False, False, True, True]


def test_clip_to_range_cuts_the_band_and_says_so() -> None:
    traj = pl.DataFrame(
        {
            "week": [0.0, 13.0, 26.0],
            "estimate": [40.0, 5.0, -3.0],
            "ci_low": [35.0, -8.0, -20.0],
            "ci_high": [45.0, 18.0, 14.0],
        }
    )
    cut, clipped = q.clip_to_range(traj, (0.0, 100.0))
    assert clipped
    assert cut["estimate"].to_list() == [40.0, 5.0, 0.0] and cut["ci_low"].to_list() == [35.0, 0.0, 0.0]
    assert cut["ci_high"].to_list() == [45.0, 18.0, 14.0]
    same, clipped = q.clip_to_range(traj.head(1), (0.0, 100.0))
    assert not clipped and same.equals(traj.head(1))
    _, clipped = q.clip_to_range(traj, (None, None))
    assert not clipped


def test_report_rule_defaults_to_internal_for_a_clinic_and_network_for_all() -> None:
    assert q.report_rule(None, None, "CL01").audience == "internal"
    assert not q.report_rule("", None, "CL01").withholds
    net = q.report_rule(None, None, None)
    assert (net.audience, net.low, net.high) == ("network", 1, 10)
    assert q.report_rule("public", 5, "CL01").high == 5
    assert q.min_active_episodes(q.report_rule("network", 20, None)) == 21
    for bad in (
        ("internal", None, None),
        ("internal", 5, "CL01"),
        ("press", None, None),
        ("public", 0, None),
    ):
        with pytest.raises(ReportParameterError):
            q.report_rule(*bad)


def test_flow_display_is_exact_under_internal_and_withholds_under_network() -> None:
    stages = ["active at start of quarter", "enrolled in quarter", "active in quarter"]
    stages += [f"ended: {r.replace('_', ' ')}" for r in q.END_REASONS]
    stages.append("still active at end of quarter")
    counts = [10, 8, 18, 6, 3, 0, 0, 0, 0, 9]
    flow = pl.DataFrame({"stage": stages, "n": counts})
    internal = q.flow_display(flow, q.report_rule("internal", None, "CL01"))
    assert [internal[s] for s in stages] == [str(c) for c in counts] and internal["ended"] == "9"
    network = q.flow_display(flow)
    assert network["enrolled in quarter"] == "*" and network["ended: completed"] == "*"
    assert "ended: dropped out" in network and q.OTHER_ENDS not in network  # no minor reason is small


def test_small_minor_end_reasons_are_merged_so_the_dropouts_survive() -> None:
    stages = ["active at start of quarter", "enrolled in quarter", "active in quarter"]
    stages += [f"ended: {r.replace('_', ' ')}" for r in q.END_REASONS]
    stages.append("still active at end of quarter")
    # 3 referred and 20 other: on their own the 3 is withheld and the dropouts (14, the smallest other cell)
    # with it; merged, "other ends" is 23 and nothing needs withholding
    counts = [60, 40, 100, 30, 14, 3, 0, 0, 20, 33]
    unmerged_line = suppress_table([30, 14, 3, 0, 0, 20, 33])
    assert unmerged_line.mask[:, 0].tolist() == [False, True, True, False, False, False, False]
    flow = pl.DataFrame({"stage": stages, "n": counts})
    network = q.flow_display(flow)
    assert network["ended: dropped out"] == "14" and network[q.OTHER_ENDS] == "23"
    assert "*" not in network.values()
    assert not any(s.startswith("ended: referred") for s in network)
    unmerged = dict(zip(stages, [str(c) for c in counts], strict=True))
    assert q.flow_display(flow, q.report_rule("internal", None, "CL01")) == unmerged | {"ended": "67"}
    # the trend's and figure's flow keys follow the merged stages
    assert q.merge_small_ends(dict(zip(stages, counts, strict=True)))[q.OTHER_ENDS] == 23


def test_a_one_clinic_report_shows_only_its_own_quarantine_and_sources(db: Path) -> None:
    with Store(db, read_only=True) as store:
        episodes = store.read("episodes")
    mine = episodes.filter(pl.col("clinic_id") == "CL01")["episode_id"][0]
    theirs = episodes.filter(pl.col("clinic_id") == "CL02")["episode_id"][0]

    def bad(table: str, record: dict[str, str], rule: str, source: str) -> dict[str, object]:
        errors = [{"column": "x", "value": "", "rule": rule, "message": "bad"}]
        return {
            "ingest_id": 1,
            "source_path": source,
            "sha256": "0" * 64,
            "table_name": table,
            "row_number": 2,
            "record": json.dumps(record),
            "errors": json.dumps(errors),
        }

    quarantine = pl.DataFrame(
        [
            bad("episodes", {"episode_id": "EPX", "clinic_id": "CL01"}, "range", "exports/CL01/episodes.csv"),
            bad("measures", {"episode_id": mine, "value": "x"}, "type", "exports/CL01/measures.csv"),
            bad("measures", {"episode_id": theirs, "value": "x"}, "type", "exports/CL02/measures.csv"),
            bad("episodes", {"episode_id": "EPY", "clinic_id": "CL02"}, "range", "exports/CL02/episodes.csv"),
        ],
        schema=QUARANTINE_SCHEMA,
    )
    log = pl.DataFrame(
        {
            "source_path": ["exports/CL01/episodes.csv", "exports/CL02/episodes.csv", "exports/CL010.csv"],
            "sha256": ["a" * 64, "b" * 64, "c" * 64],
            "table_name": ["episodes"] * 3,
        }
    ).with_columns(pl.lit(None, pl.Datetime("us")).alias("ingested_at_utc"))
    base = q.load_inputs(db, "2026Q2", "CL01", rule=q.report_rule(None, None, "CL01"))
    inputs = dataclasses.replace(base, quarantine=quarantine, ingest_log=log)
    dq = q.data_quality(inputs)["quarantine"]
    assert dq.rows() == [("episodes", "range", 1), ("measures", "type", 1)]
    prov = q.provenance(inputs)
    assert [s["source_path"] for s in prov["sources"]] == ["exports/CL01/episodes.csv"]
    assert prov["audience"]["audience"] == "internal"
    everyone = dataclasses.replace(inputs, clinic=None)
    assert q.data_quality(everyone)["quarantine"]["rows"].sum() == 4
    assert len(q.provenance(everyone)["sources"]) == 3


def test_model_specifications_carry_no_small_count(tmp_path: Path) -> None:
    from sciatica_outcomes.reports.display import ReportWriter  # noqa: PLC0415

    spec = {"purpose": "risk-adjusted comparison", "n_obs": 7, "diagnostics": {"rows_used": 7, "rows_in": 30}}
    w = ReportWriter(tmp_path, rule=q.report_rule(None, None, None))
    w.record_model(spec)
    w.record_model({"n_episodes": 4, "converged": True, "level": 3})
    manifest = json.loads(w.finish(sources=[{"n": 5, "path": "x"}]).read_text(encoding="utf-8"))
    assert manifest["models"][0] == {
        "purpose": "risk-adjusted comparison",
        "n_obs": "*",
        "diagnostics": {"rows_used": "*", "rows_in": 30},
    }
    assert manifest["models"][1] == {"n_episodes": "*", "converged": True, "level": 3}
    assert manifest["sources"] == [{"n": "*", "path": "x"}]
    internal = ReportWriter(tmp_path / "i", rule=q.report_rule(None, None, "CL01"))
    internal.record_model(spec)
    assert internal.models == [spec]


def test_provider_comparison_publishes_nothing_of_a_withheld_clinic(db: Path) -> None:
    full = q.provider_comparison(q.load_inputs(db, "2026Q2", rule=q.report_rule("network", 1, None)))
    assert full is not None and "*" not in full["providers"]["n"].to_list()
    sizes = full["providers"]["n"].cast(pl.Int64)
    # a threshold at the smallest clinic's count withholds it, and a complement with it
    rule = q.report_rule("network", int(sizes.min()), None)
    view = q.provider_comparison(q.load_inputs(db, "2026Q2", rule=rule))
    assert view is not None
    prov = view["providers"]
    hidden = prov.filter(pl.col("n") == "*")
    assert hidden.height >= 2
    assert prov["unit"].to_list()[-hidden.height :] == sorted(hidden["unit"].to_list())
    stats = ["o_minus_e", "band", "shrunken", "shrunken_low", "shrunken_high"]
    assert hidden.select(stats).null_count().row(0) == (hidden.height,) * len(stats)
    assert view["spec"]["diagnostics"]["rows_used"] == "*"
    assert full["spec"]["diagnostics"]["rows_used"] == int(sizes.sum())
