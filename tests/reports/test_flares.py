"""'Are flare-ups becoming less frequent?': the modelled answer, its honesty without data, its privacy."""

from __future__ import annotations

import math

import numpy as np
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
    # 8 clinics, but flares this rare make the Laplace approximation (the only one of a nested model)
    # inadequate (episode SD 1.30 by Laplace, 0.00 by quadrature): the episodes-only quadrature model is kept
    assert f.formula == FLARE_FORMULA and f.approximation == "adaptive Gauss-Hermite (nAGQ = 9)"


def test_fewer_than_five_clinics_keep_the_episodes_only_model(cohort: Cohort) -> None:
    """4 clinics: no clinic random intercept (its variance is barely estimable), quadrature as before; the
    planted decline is still found."""
    t = cohort.tables
    end = t["sessions"]["session_date"].max()
    eps = t["episodes"].filter(pl.col("clinic_id").is_in(["CL01", "CL02", "CL03", "CL06"]))
    f = flare_trend(t["sessions"], t["session_exercises"], eps, end)
    assert f.status == "estimated" and f.converged
    assert f.formula == FLARE_FORMULA and f.approximation == "adaptive Gauss-Hermite (nAGQ = 9)"
    assert f.ci_high < 1.0


def _clinic_panel(seed: int, codes_shared: bool) -> pl.DataFrame:
    """200 episodes x 8 weeks in 6 clinics, ~3 flares a week (counts where Laplace is accurate)."""
    rng = np.random.default_rng(seed)
    n_ep, weeks = 200, 8
    ep = np.repeat(np.arange(n_ep), weeks)
    clinic = ep % 6
    week = np.tile(np.arange(weeks, dtype=float), n_ep)
    eta = 1.0 - 0.05 * week + rng.normal(0.0, 0.4, n_ep)[ep] + rng.normal(0.0, 0.3, 6)[clinic]
    return pl.DataFrame(
        {
            # shared codes: E000 in two clinics, crossed rather than nested
            "episode_id": [f"E{i % 100:03d}" if codes_shared else f"E{i:03d}" for i in ep],
            "clinic_id": [f"CL{c}" for c in clinic],
            "program_week": week,
            "flares": rng.poisson(np.exp(eta)),
        }
    )


def test_clinics_nested_when_enough_and_laplace_adequate_else_the_episodes_only_model() -> None:
    """6 clinics and counts where Laplace agrees with quadrature: the clinic intercept is added. Episode
    codes shared by two clinics make the nested model a design error: the episodes-only model answers (a
    failed fit is data, never a traceback); so does the rare-flare cohort (see the first test)."""
    from sciatica_outcomes.models.glmm import fit_patients_in_clinics  # noqa: PLC0415

    nested, yes = fit_patients_in_clinics(
        "flares ~ program_week", "(1 | episode_id)", _clinic_panel(5, False), family="poisson"
    )
    assert yes and nested.formula == "flares ~ program_week + (1 | clinic_id) + (1 | episode_id)"
    assert nested.result_.n_groups == {"episode_id": 200, "clinic_id": 6}
    assert nested.result_.method == "Laplace"
    crossed, no = fit_patients_in_clinics(
        "flares ~ program_week", "(1 | episode_id)", _clinic_panel(5, True), family="poisson"
    )
    assert not no and crossed.formula == FLARE_FORMULA
    assert crossed.result_.n_groups == {"episode_id": 100}


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
