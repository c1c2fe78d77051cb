"""Pain-monitoring bands, spikes and flares: hand-worked cases and the planted flares of the cohort."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from sciatica_outcomes.derive import Derived, episode_pain, flare_panel, session_pain, weekly_pain
from sciatica_outcomes.synth import Cohort

D0 = date(2025, 5, 5)


def _s(rows: list[tuple[int, int | None, int | None, int | None]]) -> pl.DataFrame:
    """Rows of (day, pain_before, pain_after, pain_next_day), all completed sessions of episode A."""
    return pl.DataFrame(
        {
            "session_id": [f"S{i}" for i in range(len(rows))],
            "episode_id": ["A"] * len(rows),
            "session_date": [D0 + timedelta(days=r[0]) for r in rows],
            "status": ["completed"] * len(rows),
            "pain_before": [r[1] for r in rows],
            "pain_after": [r[2] for r in rows],
            "pain_next_day": [r[3] for r in rows],
        },
        schema_overrides={"pain_before": pl.Int64, "pain_after": pl.Int64, "pain_next_day": pl.Int64},
    )


def test_bands_spikes_and_flares() -> None:
    p = session_pain(
        _s(
            [
                (0, 2, 2, 2),  # safe, no spike
                (2, 3, 5, 3),  # acceptable, spike after, settled next day -> not a flare
                (4, 3, 6, 5),  # high risk, spike, next day +2 -> flare
                (7, 4, 5, 6),  # spike only next day (+2) and not settled -> flare
                (9, 4, 7, None),  # spike, no next-day rating; next session within 48 h has pain 4 -> settled
                (11, 4, 7, None),  # spike, next session 3 days later: settlement unknown
                (14, 4, 4, 4),
            ]
        )
    )
    bands = ["safe", "acceptable", "high_risk", "acceptable", "high_risk", "high_risk", "acceptable"]
    assert p["pain_band"].to_list() == bands
    assert p["spike"].to_list() == [False, True, True, True, True, True, False]
    assert p["flare"].to_list() == [False, False, True, True, False, False, False]
    assert p["settle_unknown"].to_list() == [False, False, False, False, False, True, False]
    e = episode_pain(p, pl.DataFrame({"episode_id": ["A"], "start_date": [D0]})).row(0, named=True)
    assert e["n_flares"] == 2 and e["flare_rate_per_100"] == pytest.approx(200 / 7)


def test_pain_during_counts_as_activity_pain() -> None:
    ex = pl.DataFrame(
        {"session_id": ["S0", "S0"], "exercise": ["clamshell", "bird_dog"], "pain_during": [3, 6]}
    )
    p = session_pain(_s([(0, 2, 2, 2)]), ex)
    assert p["activity_pain"].item() == 6 and p["pain_band"].item() == "high_risk"


def test_weekly_rise_and_trend() -> None:
    s = _s([(0, 3, 3, 3), (2, 3, 3, 3), (7, 5, 5, 5), (9, 5, 5, 5), (14, 4, 4, 4)])
    eps = pl.DataFrame({"episode_id": ["A"], "start_date": [D0]})
    w = weekly_pain(session_pain(s), eps)
    assert w["rising"].to_list() == [False, True, False]
    e = episode_pain(session_pain(s), eps).row(0, named=True)
    assert e["n_rising_weeks"] == 1
    assert e["pain_before_slope_per_week"] > 0


def test_flares_match_planted(cohort_3000: Cohort, derived_3000: Derived) -> None:
    truth = cohort_3000.truth
    flares = pl.DataFrame(truth["events"]["flares"])
    sp = session_pain(cohort_3000.tables["sessions"], cohort_3000.tables["session_exercises"])
    assert set(sp.filter("spike")["session_id"]) == set(flares["session_id"])
    unsettled = set(flares.filter(~pl.col("settled_within_48h"))["session_id"])
    assert set(sp.filter("flare")["session_id"]) == unsettled
    s = derived_3000.episode_summary
    rate = 100 * s["n_flares"].sum() / s["n_completed"].sum()
    expected = 100 * truth["realised"]["n_flares_unsettled"] / truth["realised"]["n_completed_sessions"]
    assert rate == pytest.approx(expected, abs=1e-9)
    # generating rate: 3 % spikes x 25 % unsettled = 0.75 per 100 (binomial SE ~ 0.04 with ~55,000 sessions)
    cfg = cohort_3000.config
    assert abs(rate - 100 * cfg.flare_prob * (1 - cfg.flare_settle_prob)) < 0.15


def test_flare_panel_counts_sessions_at_risk_by_program_week() -> None:
    s = _s(
        [
            (0, 2, 2, 2),  # week 0: at risk, no flare
            (2, 3, 6, 5),  # week 0: flare
            (4, 9, 10, 10),  # week 0: pain before 9 > 10 - 2: not at risk (a 2-point rise cannot be seen)
            (7, 4, 5, 6),  # week 1: flare (next day +2, not settled)
            (9, None, 5, 5),  # week 1: pain before not recorded: not at risk
            (11, 4, 7, None),  # week 1: spike, settlement unknown
            (90, 4, 7, 7),  # week 12: after the 12-week program phase, left out
        ]
    )
    eps = pl.DataFrame({"episode_id": ["A"], "start_date": [D0], "clinic_id": ["C1"]})
    panel = flare_panel(session_pain(s), eps)
    assert panel.columns == [
        "episode_id", "clinic_id", "program_week", "completed", "at_risk", "flares", "settle_unknown",
    ]  # fmt: skip
    assert panel["program_week"].to_list() == [0, 1]
    assert panel["completed"].to_list() == [3, 3]
    assert panel["at_risk"].to_list() == [2, 2]
    assert panel["flares"].to_list() == [1, 1]
    assert panel["settle_unknown"].to_list() == [0, 1]
    assert panel["clinic_id"].to_list() == ["C1", "C1"]


def test_flare_panel_of_the_cohort_holds_every_program_flare(cohort_3000: Cohort) -> None:
    t = cohort_3000.tables
    sp = session_pain(t["sessions"], t["session_exercises"])
    panel = flare_panel(sp, t["episodes"])
    weeks = (
        sp.join(t["episodes"].select("episode_id", "start_date"), on="episode_id")
        .with_columns(((pl.col("session_date") - pl.col("start_date")).dt.total_days() // 7).alias("w"))
        .filter(pl.col("w").is_between(0, 11))
    )
    assert panel["completed"].sum() == weeks.height
    # every planted flare needs pain before <= 8, so all derived flares of the program phase are at risk
    assert panel["flares"].sum() == weeks["flare"].sum()
    assert panel.select(pl.struct("episode_id", "program_week").is_unique().all()).item()
    assert (panel["at_risk"] <= panel["completed"]).all() and (panel["flares"] <= panel["at_risk"]).all()
