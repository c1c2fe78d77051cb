"""Adherence, longest gap and dropout: hand-worked cases and agreement with the synthetic truth."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import Derived, episode_adherence, weekly_adherence
from sciatica_outcomes.synth import Cohort

MON = date(2025, 3, 3)  # a Monday


def _episodes(**extra: list) -> pl.DataFrame:
    base = {
        "episode_id": ["A"],
        "patient_id": ["P"],
        "clinic_id": ["C"],
        "start_date": [MON + timedelta(days=2)],  # Wednesday
        "end_date": [None],
        "end_reason": [None],
        "prescribed_sessions_per_week": [2],
    }
    base.update(extra)
    return pl.DataFrame(base, schema_overrides={"end_date": pl.Date, "end_reason": pl.String})


def _sessions(days: list[int], status: list[str] | None = None) -> pl.DataFrame:
    start = MON + timedelta(days=2)
    return pl.DataFrame(
        {
            "session_id": [f"S{i}" for i in range(len(days))],
            "episode_id": ["A"] * len(days),
            "session_date": [start + timedelta(days=d) for d in days],
            "status": status or ["completed"] * len(days),
        }
    )


def test_hand_worked_adherence_gap_and_weeks() -> None:
    cfg = ClinicalConfig(program_weeks=2)  # 14 days: Wed 5 Mar .. Tue 18 Mar
    s = _sessions([0, 2, 5, 9, 12], ["completed", "missed", "completed", "completed", "cancelled"])
    a = episode_adherence(_episodes(), s, cfg, data_cut=date(2025, 12, 31)).row(0, named=True)
    assert a["exposure_days"] == 14 and a["prescribed_sessions"] == pytest.approx(4.0)
    assert (a["n_completed"], a["n_missed"], a["n_cancelled"]) == (3, 1, 1)
    assert a["adherence"] == pytest.approx(0.75)
    assert a["longest_gap_days"] == 5  # last completed on day 9, window ends day 13 -> gap 4; 0->5 is 5
    assert not a["dropout"]
    w = weekly_adherence(_episodes(), s, cfg, data_cut=date(2025, 12, 31))
    # ISO weeks: Wed-Sun (5 days), Mon-Sun (7), Mon-Tue (2)
    assert w["days_in_window"].to_list() == [5, 7, 2]
    assert w["completed"].to_list() == [1, 2, 0]  # day 0 | days 5, 9 | day 12 was cancelled
    assert w["prescribed"].to_list() == pytest.approx([10 / 7, 2.0, 4 / 7])
    assert w["met"].to_list() == [True, True, True]  # completed >= floor(prescribed): 1>=1, 2>=2, 0>=0


def test_dropout_recorded_inactive_and_completed() -> None:
    cfg = ClinicalConfig(program_weeks=12, dropout_gap_weeks=2)
    cut = date(2025, 12, 31)
    s = _sessions([0, 3, 7])  # nothing after day 7 of an 84-day program
    silent = episode_adherence(_episodes(), s, cfg, cut).row(0, named=True)
    assert silent["dropout"] and silent["dropout_source"] == "inactivity"
    assert silent["dropout_on"] == MON + timedelta(days=2 + 8)
    done = episode_adherence(_episodes(end_reason=["completed"]), s, cfg, cut).row(0, named=True)
    assert not done["dropout"]
    end = MON + timedelta(days=2 + 9)
    recorded = episode_adherence(_episodes(end_reason=["dropped_out"], end_date=[end]), s, cfg, cut).row(
        0, named=True
    )
    assert recorded["dropout_source"] == "recorded" and recorded["dropout_on"] == end
    assert recorded["exposure_days"] == 10
    # a running episode observed for less than the gap is not a dropout
    early = episode_adherence(_episodes(), s, cfg, MON + timedelta(days=2 + 12)).row(0, named=True)
    assert not early["dropout"]


def test_adherence_matches_truth(cohort_3000: Cohort, derived_3000: Derived) -> None:
    s = derived_3000.episode_summary
    truth = cohort_3000.truth
    assert int(s["n_completed"].sum()) == truth["realised"]["n_completed_sessions"]
    # completed / scheduled is Binomial(propensity) per episode: its mean estimates the mean propensity
    # (SD of propensity 0.13 over 3,000 episodes: SE ~ 0.003; tolerance 0.01 ~ 3 SE)
    share = (s["n_completed"] / s["n_scheduled"]).mean()
    assert abs(share - truth["episodes"]["adherence_propensity_mean"]) < 0.01
    # against the prescription, partial weeks of short episodes add a small upward bias: tolerance 0.02
    assert abs(s["adherence"].mean() - truth["episodes"]["adherence_propensity_mean"]) < 0.02


def test_dropout_matches_truth(cohort_3000: Cohort, derived_3000: Derived) -> None:
    s = derived_3000.episode_summary
    truth = cohort_3000.truth
    observed = s.filter(pl.col("program_observed"))
    assert observed.height == truth["realised"]["n_program_observed"]
    planted = {e["episode_id"] for e in truth["events"]["dropouts"]}
    found = set(s.filter(pl.col("dropout"))["episode_id"])
    assert planted <= found  # every planted dropout found
    assert len(found - planted) <= 0.005 * s.height  # inactivity-only extras are rare
    assert abs(observed["dropout"].mean() - truth["realised"]["dropout_share"]) < 0.01
