"""The patient flow suppressed across the published set (network, clinics, quarters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports.privacy import feasible_ranges, leaked, rule_for
from sciatica_outcomes.reports.published import FLOW_STAGES, NETWORK, OTHER_ENDS, flow_counts, flow_pattern
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import generate_cohort


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("published") / "outcomes.duckdb"
    with Store(path) as store:
        for name, frame in generate_cohort(n_patients=160, n_clinics=2, seed=5).tables.items():
            store.write(name, frame, source="synthetic")
    return path


def test_flow_counts_are_the_reports_patient_flow(db: Path) -> None:
    inputs = q.load_inputs(db, "2026Q2", "CL01")
    assert inputs.network_episodes is not None
    counts = flow_counts(inputs.network_episodes, ["2025Q4", "2026Q1", "2026Q2"])
    for label in ("2025Q4", "2026Q1", "2026Q2"):
        flow = dict(q.patient_flow(inputs, q.Quarter.parse(label)).iter_rows())
        row = counts.filter((pl.col("clinic_id") == "CL01") & (pl.col("quarter") == label)).row(0, named=True)
        assert {s: row[s] for s in flow} == flow
        assert row["ended"] == flow["active in quarter"] - flow["still active at end of quarter"]
        minor = ("ended: referred", "ended: surgery", "ended: injection", "ended: other")
        assert row[OTHER_ENDS] == sum(flow[s] for s in minor)


def test_the_pattern_leaks_nothing_and_internal_withholds_nothing(db: Path) -> None:
    inputs = q.load_inputs(db, "2026Q2")
    assert inputs.network_episodes is not None
    pattern = flow_pattern(inputs.network_episodes, "2026Q2")
    assert pattern.units[0] == NETWORK and len(pattern.units) == 3
    values, withheld = pattern.values.ravel(), pattern.withheld.ravel()
    # every small published count is withheld, and none can be solved or narrowed from the rest
    small = (values >= 1) & (values <= 10) & pattern.published.ravel()
    assert small.any() and withheld[small].all()
    lo, hi = feasible_ranges(values, withheld, pattern.identities(), targets=small)
    assert not (leaked(lo, hi, withheld) & small).any()
    # the network's own flow identities hold in the counts the pattern suppressed
    for k in range(len(pattern.quarters)):
        v = dict(zip(FLOW_STAGES, pattern.values[0, k], strict=True))
        assert v["active in quarter"] == v["active at start of quarter"] + v["enrolled in quarter"]
    assert np.array_equal(pattern.values[0], pattern.values[1:].sum(axis=0))
    exact = flow_pattern(inputs.network_episodes, "2026Q2", rule_for("internal"))
    assert not (exact.withheld & exact.published).any() and not (exact.published[:, :, -1]).any()
    assert "*" not in exact.shown("CL01", "2026Q2").values()


def test_published_flow_follows_the_audience(db: Path) -> None:
    internal = q.load_inputs(db, "2026Q2", "CL02", rule=q.report_rule(None, None, "CL02"))
    exact = q.published_flow(internal)
    flow = dict(q.patient_flow(internal).iter_rows())
    assert {s: exact[s] for s in flow} == {s: str(n) for s, n in flow.items()}
    network = q.load_inputs(db, "2026Q2", "CL02", rule=q.report_rule("network", None, "CL02"))
    shown = q.published_flow(network)
    for stage, text in shown.items():
        if stage in flow and text != "*":
            assert text == str(flow[stage]) and not 1 <= flow[stage] <= 10
    # a quarter before any data has no episodes at all
    assert set(q.published_flow(network, q.Quarter.parse("2019Q1")).values()) == {"0"}


def test_the_integer_program_withholds_less_than_the_greedy_and_leaks_nothing(db: Path) -> None:
    inputs = q.load_inputs(db, "2026Q2")
    assert inputs.network_episodes is not None
    cheapest = flow_pattern(inputs.network_episodes, "2026Q2")
    greedy = flow_pattern(inputs.network_episodes, "2026Q2", method="greedy")
    for pattern in (cheapest, greedy):
        values, withheld = pattern.values.ravel(), pattern.withheld.ravel()
        targets = withheld & pattern.published.ravel() & (values > 0)
        lo, hi = feasible_ranges(values, withheld, pattern.identities(), targets=targets)
        assert not (leaked(lo, hi, withheld) & targets).any()
    shown = cheapest.published & ~cheapest.withheld
    assert shown.sum() > (greedy.published & ~greedy.withheld).sum()
    # every small published count is withheld, whatever the method
    small = (cheapest.values >= 1) & (cheapest.values <= 10) & cheapest.published
    assert cheapest.withheld[small].all()
