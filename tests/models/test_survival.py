"""Tests of time to clinically important improvement, capped tolerance tests and Kaplan-Meier curves.

Golden values: R 4 / survival 3.5-3 on the 20-row example below::

    f <- survfit(Surv(time, event) ~ g, data = d, conf.type = "log-log"); summary(f); quantile(f, 0.5)
    survdiff(Surv(time, event) ~ g, data = d)$chisq

Tolerance: closed formulas (no optimizer) against values copied from R's printout, so the printed precision
(``tolerances.printed``): survival and its interval, printed with 10 or more decimals, 5e-9 absolute; log-rank
statistic and p, printed with 12 decimals, 5e-11 absolute.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from tolerances import printed

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.models.responders import responder_frame
from sciatica_outcomes.models.survival import kaplan_meier, time_to_improvement, tolerance_times
from sciatica_outcomes.synth import generate_cohort

EXAMPLE = pl.DataFrame(
    {
        "time": [6, 6, 12, 12, 12, 26, 26, 26, 6, 12, 26, 26, 6, 12, 12, 26, 26, 26, 12, 6],
        "event": [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1],
        "g": ["a"] * 10 + ["b"] * 10,
    }
)


def test_kaplan_meier_matches_survfit_and_survdiff() -> None:
    km = kaplan_meier(EXAMPLE, time="time", event="event", group="g")
    c = km.curves
    assert c["n_at_risk"].to_list() == [10, 7, 3, 10, 8, 5]
    assert c["n_events"].to_list() == [2, 3, 1, 1, 2, 3]
    tol = printed(10)
    np.testing.assert_allclose(c["survival"], [0.8, 0.4571428571, 0.3047619048, 0.9, 0.675, 0.27], atol=tol)
    np.testing.assert_allclose(
        c["ci_low"],
        [0.40869078163, 0.14298216276, 0.05353388460, 0.47300927136, 0.29058535740, 0.04135697291],
        atol=tol,
    )
    np.testing.assert_allclose(
        c["ci_high"],
        [0.9458726458, 0.7297791060, 0.6173675618, 0.9852813934, 0.8824967337, 0.5838146420],
        atol=tol,
    )
    assert km.medians["median"].to_list() == [12.0, 26.0]
    assert km.logrank is not None
    assert km.logrank["statistic"] == pytest.approx(0.212078931632, abs=printed(12))
    assert km.logrank["p"] == pytest.approx(0.645142815718, abs=printed(12))
    assert km.logrank["df"] == 1


def _frame(rows: list[tuple[str, str, float, bool | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "episode_id": [r[0] for r in rows],
            "visit": [r[1] for r in rows],
            "week": [r[2] for r in rows],
            "responder_mcid": [r[3] for r in rows],
            "responder_relative": [r[3] for r in rows],
        },
        schema_overrides={"responder_mcid": pl.Boolean, "responder_relative": pl.Boolean},
    )


def test_time_to_improvement_first_event_or_last_follow_up() -> None:
    f = _frame(
        [
            ("A", "w0", 0.0, None),
            ("A", "w6", 6.1, False),
            ("A", "w12", 12.0, True),
            ("A", "w26", 26.0, True),  # first event at 12
            ("B", "w0", 0.0, None),
            ("B", "w6", 6.0, False),
            ("B", "w12", 11.7, None),  # undetermined (capped test): not an event, censored at 11.7
            ("C", "w0", 0.0, None),  # no follow-up: excluded and counted
        ]
    )
    t = time_to_improvement(f)
    assert t["episode_id"].to_list() == ["A", "B"]
    assert t["time_weeks"].to_list() == [12.0, 11.7]
    assert t["event"].to_list() == [1, 0]
    assert t["n_undetermined"].to_list() == [0, 1]
    assert t["excluded_no_follow_up"][0] == 1


def test_capped_walking_tests_are_censored_and_median_exceeds_naive() -> None:
    cohort = generate_cohort(n_patients=800, seed=4)
    frame = responder_frame(cohort.tables, "walk_tolerance_min")
    tol = tolerance_times(frame.filter(pl.col("visit").is_in(["w0", "w26"])))
    capped = frame.filter(pl.col("stopped_reason") == "cap").height
    assert capped > 0
    assert (
        tol.filter(pl.col("event") == 0).height
        == frame.filter((pl.col("stopped_reason") == "cap") & pl.col("visit").is_in(["w0", "w26"])).height
    )
    km = kaplan_meier(tol, time="time", event="event", group="visit")
    med = dict(zip(km.medians["group"], km.medians["median"], strict=True))
    assert med["w26"] > med["w0"]  # walking tolerance improves
    assert km.logrank is not None and km.logrank["p"] < 1e-6
    # treating capped tests as exact underestimates the median at w26 (where many reach the cap)
    naive = tol.filter(pl.col("visit") == "w26")["time"].median()
    assert med["w26"] is None or med["w26"] >= naive


def test_time_to_mcid_on_synthetic_cohort_by_adherence() -> None:
    cohort = generate_cohort(n_patients=1200, seed=8)
    frame = responder_frame(cohort.tables, "odi")
    t = time_to_improvement(frame, by="clinic_id")
    assert t.height + t["excluded_no_follow_up"][0] == frame["episode_id"].n_unique()
    km = kaplan_meier(t)
    # about half reach the MCID by week 12 in the generator (rate -1.8 / week, tau 12 weeks)
    s12 = km.curves.filter(pl.col("time") <= 13)["survival"].min()
    assert 0.15 < s12 < 0.75
    ax = km.plot(cumulative=True)
    assert ax.get_ylim() == (0.0, 1.0)


def test_errors() -> None:
    with pytest.raises(UnusableInputError, match="negative"):
        kaplan_meier(pl.DataFrame({"time_weeks": [-1.0, 2.0], "event": [1, 0]}))
    with pytest.raises(UnusableInputError, match="definition"):
        time_to_improvement(_frame([("A", "w6", 6.0, True)]), definition="other")
    with pytest.raises(UnusableInputError, match="missing"):
        kaplan_meier(pl.DataFrame({"t": [1.0]}))
