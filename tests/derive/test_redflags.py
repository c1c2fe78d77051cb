"""Red-flag alerts: every planted screen found, none invented, unactioned ones marked."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import red_flag_alerts
from sciatica_outcomes.synth import Cohort


def test_planted_red_flags_all_found_none_invented(red_flag_cohort: Cohort) -> None:
    alerts = red_flag_alerts(red_flag_cohort.tables["symptom_checks"], red_flag_cohort.tables["sessions"])
    red = alerts.filter(pl.col("kind") == "red_flag")
    planted = {
        (r["episode_id"], r["checked_on"], frozenset(r["flags"]), r["action_taken"])
        for r in red_flag_cohort.truth["events"]["red_flags"]
    }
    found = {
        (e, d.isoformat(), frozenset(f.split(";")), a)
        for e, d, f, a in red.select("episode_id", "date", "flags", "action_taken").iter_rows()
    }
    assert len(planted) > 30
    assert found == planted
    n_unactioned = sum(r["action_taken"] is None for r in red_flag_cohort.truth["events"]["red_flags"])
    assert n_unactioned > 0
    assert int(red["unactioned"].sum()) == n_unactioned
    # unactioned red flags come first
    assert red.head(n_unactioned)["unactioned"].all()
    assert alerts.head(n_unactioned)["kind"].to_list() == ["red_flag"] * n_unactioned


def test_no_red_flags_without_positive_fields(cohort_1000: Cohort) -> None:
    checks = cohort_1000.tables["symptom_checks"].with_columns(
        pl.lit(False).alias(c) for c in ClinicalConfig().red_flag_fields
    )
    assert red_flag_alerts(checks).height == 0


def test_session_fields_and_sustained_spread() -> None:
    d0 = date(2025, 1, 6)
    extent = ["back_only", "buttock", "below_knee", "foot", "below_knee", "thigh", "foot"]
    sessions = pl.DataFrame(
        {
            "session_id": [f"S{i}" for i in range(7)],
            "episode_id": ["A"] * 7,
            "session_date": [d0 + timedelta(days=2 * i) for i in range(7)],
            "status": ["completed"] * 7,
            "symptom_extent": extent,
            "saddle_numbness": [False, False, False, False, False, True, False],
        }
    )
    checks = pl.DataFrame(
        {"episode_id": ["A"], "checked_on": [d0], "progressive_weakness": [True], "action_taken": ["none"]}
    )
    alerts = red_flag_alerts(checks, sessions)
    red = alerts.filter(pl.col("kind") == "red_flag")
    assert red["source"].to_list() == ["symptom_check", "session"]
    assert red["unactioned"].to_list() == [True, True]  # 'none' recorded counts as no action
    spread = alerts.filter(pl.col("kind") == "neuro_worsening")
    # below_knee, foot, below_knee = 3 sessions >= 2 levels beyond back_only -> one alert on the third
    assert spread["date"].to_list() == [d0 + timedelta(days=8)]
    assert spread["unactioned"].to_list() == [None]
