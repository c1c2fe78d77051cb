"""Tests of visit windows, change from baseline, responders (both directions) and censored tests."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sciatica_outcomes.config import ClinicalConfig, Mcid, VisitWindow
from sciatica_outcomes.scoring import assign_visits, cap_share, change_from_baseline, flag_end_of_episode

START = date(2025, 1, 6)


def long(rows: list[tuple[str, int, str, float, str | None]]) -> pl.DataFrame:
    """Rows of (episode, day since start, measure, value, stopped_reason)."""
    return pl.DataFrame(
        {
            "episode_id": [r[0] for r in rows],
            "assessed_on": [START + timedelta(days=r[1]) for r in rows],
            "start_date": [START] * len(rows),
            "measure": [r[2] for r in rows],
            "value": [float(r[3]) for r in rows],
            "stopped_reason": [r[4] for r in rows],
        },
        schema_overrides={"stopped_reason": pl.String},
    )


def test_visit_labels_last_baseline_and_closest_follow_up() -> None:
    f = long(
        [
            ("A", -10, "odi", 50, None),
            ("A", -2, "odi", 48, None),  # last in the baseline window -> w0
            ("A", 40, "odi", 40, None),
            ("A", 43, "odi", 38, None),  # closest to day 42 -> w6
            ("A", 85, "odi", 30, None),  # w12 (window 74..98)
            ("A", 120, "odi", 30, None),  # outside every window
            ("B", -20, "odi", 60, None),  # before the baseline window
            ("B", 41, "odi", 50, None),
            ("B", 43, "odi", 50, None),  # tie at distance 1 -> later date
        ]
    )
    v = assign_visits(f).sort("episode_id", "day")
    assert v["visit"].to_list() == [None, "w0", None, "w6", "w12", None, None, None, "w6"]
    assert v["week"].to_list()[4] == pytest.approx(85 / 7)


def test_change_and_responders_higher_is_worse() -> None:
    # ODI 50 -> 39: improvement 11 >= 10 (MCID), 22 % < 30 %; 50 -> 35: 30 % exactly -> relative responder
    f = long(
        [
            ("A", 0, "odi", 50, None),
            ("A", 42, "odi", 39, None),
            ("A", 84, "odi", 35, None),
            ("B", 0, "nprs_leg", 6, None),
            ("B", 42, "nprs_leg", 5, None),
            ("B", 84, "nprs_leg", 0, None),
        ]
    )
    c = change_from_baseline(assign_visits(f)).sort("episode_id", "day")
    odi = c.filter(pl.col("measure") == "odi")
    assert odi["change"].to_list() == [0.0, -11.0, -15.0]
    assert odi["pct_change"].to_list()[1] == pytest.approx(-22.0)
    assert odi["responder_mcid"].to_list() == [False, True, True]
    assert odi["responder_relative"].to_list() == [False, False, True]
    assert odi["recovered"].to_list() == [None, None, None]  # no recovered threshold for ODI
    leg = c.filter(pl.col("measure") == "nprs_leg")
    assert leg["responder_mcid"].to_list() == [False, False, True]
    assert leg["recovered"].to_list() == [False, False, True]  # NRS 0 = recovered (Kamper 2010)


def test_change_and_responders_higher_is_better() -> None:
    # PSFS 3 -> 5 is an improvement of 2 (threshold 2); 3 -> 1 is a worsening, never a responder
    f = long(
        [
            ("A", 0, "psfs", 3, None),
            ("A", 42, "psfs", 5, None),
            ("B", 0, "psfs", 3, None),
            ("B", 42, "psfs", 1, None),
        ]
    )
    c = change_from_baseline(assign_visits(f)).filter(pl.col("visit") == "w6").sort("episode_id")
    assert c["improvement"].to_list() == [2.0, -2.0]
    assert c["responder_mcid"].to_list() == [True, False]
    # the same numbers on a higher-is-worse scale reverse the call
    g = change_from_baseline(assign_visits(f.with_columns(pl.lit("nprs_back").alias("measure"))))
    assert g.filter(pl.col("visit") == "w6").sort("episode_id")["responder_mcid"].to_list() == [False, True]


def test_censored_tolerance_tests_are_bounds_not_values() -> None:
    cfg = ClinicalConfig(mcid={"walk_tolerance_min": _walk_mcid(5.0)})
    f = long(
        [
            ("A", 0, "walk_tolerance_min", 10, "symptom"),
            ("A", 42, "walk_tolerance_min", 30, "cap"),  # at least +20: sure responder
            ("B", 0, "walk_tolerance_min", 28, "symptom"),
            ("B", 42, "walk_tolerance_min", 30, "cap"),  # at least +2: undetermined, not "no"
            ("C", 0, "walk_tolerance_min", 30, "cap"),
            ("C", 42, "walk_tolerance_min", 20, "symptom"),  # upper bound only
        ]
    )
    c = change_from_baseline(assign_visits(f), cfg).filter(pl.col("visit") == "w6").sort("episode_id")
    assert c["censored"].to_list() == [True, True, False]
    assert c["change_bound"].to_list() == ["lower", "lower", "upper"]
    assert c["responder_mcid"].to_list() == [True, None, None]
    share = cap_share(change_from_baseline(assign_visits(f), cfg))
    w6 = share.filter(pl.col("visit") == "w6").row(0, named=True)
    assert (w6["n_tests"], w6["n_at_cap"]) == (3, 2)


def _walk_mcid(points: float) -> Mcid:
    return Mcid(points, None, None, "test threshold")


def test_version_mismatch_refuses_change() -> None:
    f = long([("A", 0, "odi", 50, None), ("A", 42, "odi", 30, None)]).with_columns(
        pl.Series("instrument_version", ["2.1a", "1.0"])
    )
    c = change_from_baseline(assign_visits(f)).sort("day")
    assert c["version_mismatch"].to_list() == [False, True]
    assert c["change"].to_list()[1] is None and c["responder_mcid"].to_list()[1] is None


def test_custom_windows() -> None:
    cfg = ClinicalConfig(visit_windows={"w52": VisitWindow(52, 28, 28)})
    v = assign_visits(
        long([("A", 0, "odi", 1, None), ("A", 360, "odi", 1, None), ("A", 84, "odi", 1, None)]), cfg
    )
    assert sorted(v["visit"].drop_nulls().to_list()) == ["w0", "w52"]


@settings(max_examples=50, deadline=None)
@given(
    st.floats(1, 100, allow_nan=False),
    st.floats(0, 100, allow_nan=False),
    st.sampled_from(["odi", "psfs", "nprs_leg", "rmdq"]),
)
def test_responder_is_monotone_in_improvement(base: float, follow: float, measure: str) -> None:
    f = long([("A", 0, measure, base, None), ("A", 42, measure, follow, None)])
    c = change_from_baseline(assign_visits(f)).filter(pl.col("visit") == "w6").row(0, named=True)
    better = measure == "psfs"
    assert c["improvement"] == pytest.approx((follow - base) if better else (base - follow))
    # a patient who improves by more than the threshold is a responder; one who worsens never is
    if c["improvement"] < 0:
        assert c["responder_mcid"] is False
    if c["responder_mcid"]:
        assert c["improvement"] > 0


def test_end_of_episode_window_edges() -> None:
    end = date(2026, 3, 31)
    before = [-1, 0, 1, 13, 14, 15, 40]  # days before the end date (-1: after it)
    frame = pl.DataFrame(
        {
            "assessed_on": [end - timedelta(days=d) for d in before] + [end],
            "end_date": [end] * len(before) + [None],  # the last episode is ongoing
        },
        schema={"assessed_on": pl.Date, "end_date": pl.Date},
    )
    flags = flag_end_of_episode(frame)["at_end"].to_list()
    assert flags == [False, True, True, True, True, False, False, False]
    week = flag_end_of_episode(frame, ClinicalConfig().replace(end_window_days=7))["at_end"].to_list()
    assert week == [False, True, True, False, False, False, False, False]
