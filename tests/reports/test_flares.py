"""'Are flare-ups becoming less frequent?': the modelled answer, its honesty without data, its privacy."""

from __future__ import annotations

import math

import polars as pl
import pytest

from sciatica_outcomes.derive import flare_panel, session_pain
from sciatica_outcomes.reports.flares import (
    FLARE_FORMULA,
    MIN_FLARES,
    PER_WEEKS,
    flare_rates_by_group,
    flare_trend,
)
from sciatica_outcomes.reports.privacy import rule_for
from sciatica_outcomes.synth import Cohort, generate_cohort


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(n_patients=1000, seed=3)


def test_recovers_the_planted_decline_and_says_so(cohort: Cohort) -> None:
    t = cohort.tables
    end = t["sessions"]["session_date"].max()
    f = flare_trend(t["sessions"], t["session_exercises"], t["episodes"], end)
    assert f.status == "estimated" and f.converged
    truth = cohort.truth["expected"]["flares"]["odds_ratio_per_week"] ** PER_WEEKS
    # the planted odds ratio per week is, for flares this rare (< 1 per 100 sessions), the rate ratio
    se_log = (math.log(f.ci_high) - math.log(f.ci_low)) / (2 * 1.959964)
    assert abs(math.log(f.rate_ratio) - math.log(truth)) < 3 * se_log
    assert f.ci_high < 1.0 and f.sentence.startswith("Yes: flare-ups became less frequent")
    assert f"{(1 - f.rate_ratio) * 100:.0f}% every {PER_WEEKS} weeks" in f.sentence
    assert f.curve.height == 12 and f.curve["rate_per_100"].is_sorted(descending=True)
    assert (f.curve["ci_low"] < f.curve["rate_per_100"]).all()
    assert f.formula == FLARE_FORMULA


def test_observed_weekly_rates_only_where_no_count_is_withheld(cohort: Cohort) -> None:
    t = cohort.tables
    end = t["sessions"]["session_date"].max()
    eps = t["episodes"].filter(pl.col("clinic_id") == t["episodes"]["clinic_id"].min())
    f = flare_trend(t["sessions"], t["session_exercises"], eps, end)
    shown = f.curve.filter(pl.col("observed_per_100").is_not_null())["program_week"].to_list()
    panel = flare_panel(session_pain(t["sessions"], t["session_exercises"]), eps).filter(
        pl.col("at_risk") > 0
    )
    weekly = panel.group_by("program_week").agg(pl.col("flares").sum(), pl.col("at_risk").sum())
    for row in weekly.iter_rows(named=True):
        small = any(1 <= v <= 10 for v in (row["flares"], row["at_risk"] - row["flares"], row["at_risk"]))
        assert (row["program_week"] in shown) is (not small)


def test_not_recorded_without_sessions(cohort: Cohort) -> None:
    t = cohort.tables
    for sessions in (None, t["sessions"].head(0)):
        f = flare_trend(sessions, None, t["episodes"], t["sessions"]["session_date"].max())
        assert f.status == "not_recorded" and "not recorded" in f.sentence
        assert f.rate_ratio is None and f.curve.height == 0


def test_too_few_flares_is_not_yet_estimable_with_counts_under_the_audience_rule(cohort: Cohort) -> None:
    t = cohort.tables
    eps = t["episodes"].head(15)
    end = t["sessions"]["session_date"].max()
    network = flare_trend(t["sessions"], t["session_exercises"], eps, end)
    internal = flare_trend(t["sessions"], t["session_exercises"], eps, end, rule=rule_for("internal"))
    assert network.status == internal.status == "not_yet_estimable"
    assert network.n_flares < MIN_FLARES
    assert "not yet estimable" in network.sentence and network.rate_ratio is None
    if 1 <= network.n_flares <= 10:
        assert "a withheld number of flare-ups" in network.sentence
        assert f"{network.n_flares} flare-ups" not in network.sentence
    assert f"{internal.n_flares:,} flare-ups" in internal.sentence  # the clinic's own staff see the count


def test_flare_rates_by_group_from_one_model(cohort: Cohort) -> None:
    t = cohort.tables
    end = t["sessions"]["session_date"].max()
    # two arbitrary halves of the episodes: both carry the planted decline, so both ratios are below 1
    # and their ratio is near 1
    groups = t["episodes"].select(
        "episode_id",
        pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.lit("a")).otherwise(pl.lit("b")).alias("g"),
    )
    table, converged = flare_rates_by_group(
        t["sessions"], t["session_exercises"], t["episodes"], groups, "g", end
    )
    assert converged is True
    assert table["group"].to_list() == ["a", "b", "ratio (b / a)"]
    rr = table["rate_ratio_per_4_weeks"].to_list()
    assert rr[0] < 1 and rr[1] < 1
    lo, hi = table["ci_low"][2], table["ci_high"][2]
    assert lo < 1 < hi  # no planted difference between the halves
    assert rr[2] == pytest.approx(rr[1] / rr[0], rel=1e-9)
    # too few episodes in a group: no estimate, counts through the rule
    few = groups.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("c")).otherwise(pl.col("g")).alias("g")
    )
    table2, fitted = flare_rates_by_group(t["sessions"], t["session_exercises"], t["episodes"], few, "g", end)
    assert fitted is None and table2["rate_ratio_per_4_weeks"].null_count() == table2.height
    row_c = table2.filter(pl.col("group") == "c").row(0, named=True)
    assert row_c["episodes"] == "*"  # 5 episodes: withheld under the network rule
