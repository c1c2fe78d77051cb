"""Separation of a binomial outcome by the fixed-effects design (Konis's linear program), and in MixedGLM.

R's ``detectseparation`` is not installed here (and its CRAN build is not available for this R 4.2.2), so the
expected results are derived by hand from the cones of directions of the constructed data sets (each test
says why), and a data set the LP calls separated must make the GLM likelihood rise without bound.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import special

from sciatica_outcomes.models.glmm import MixedGLM
from sciatica_outcomes.models.separation import detect_separation

REF_DIR = Path(__file__).resolve().parents[1] / "reference" / "glmm"


def _design(week: np.ndarray, group_b: np.ndarray | None = None) -> np.ndarray:
    cols = [np.ones(week.size), week]
    if group_b is not None:
        cols.append(group_b.astype(float))
    return np.column_stack(cols)


def _loglik(x: np.ndarray, y: np.ndarray, beta: np.ndarray) -> float:
    eta = x @ beta
    return float(np.sum(y * eta - np.logaddexp(0.0, eta)))


def test_complete_separation_by_week() -> None:
    """y = 1 exactly from week 4: every direction has d_week >= 0 and d0 in [-4 d_week, -3 d_week]."""
    week = np.tile(np.arange(8.0), 30)
    y = (week >= 4).astype(float)
    x = _design(week)
    check = detect_separation(x, y, names=["(Intercept)", "week"])
    assert check.separated and check.kind == "complete"
    assert check.infinite == {"(Intercept)": "-inf", "week": "+inf"}
    # the likelihood rises without bound along the direction (-3.5, 1)
    d = np.array([-3.5, 1.0])
    assert _loglik(x, y, 10 * d) > _loglik(x, y, d) and _loglik(x, y, 40 * d) > -1e-6  # sup = 0


@pytest.mark.parametrize("m", [40, 5000])
def test_quasi_complete_separation_by_a_group_without_events(m: int) -> None:
    """Group B never responds; group A responds at some weeks and not at others: x'd = 0 on A's rows forces
    d0 = d_week = 0, and B's rows give d_B <= 0: only the group coefficient is infinite (-inf). With 5,000
    patients (30,000 rows) the LPs go through constraint generation from 2,000-row working sets."""
    rng = np.random.default_rng(3)
    week = np.tile(np.arange(6.0), m)
    b = np.repeat(np.arange(m) % 2 == 1, 6)
    y = np.where(b, 0.0, (rng.random(week.size) < 0.5).astype(float))
    check = detect_separation(_design(week, b), y, names=["(Intercept)", "week", "groupB"])
    assert check.separated and check.kind == "quasi-complete"
    assert check.infinite == {"groupB": "-inf"}


def test_not_separated_when_outcomes_overlap() -> None:
    d = pl.read_csv(REF_DIR / "responders.csv")
    x = np.column_stack([np.ones(d.height), d["week"].to_numpy(), d["age"].to_numpy()])
    check = detect_separation(x, d["responder"].to_numpy().astype(float))
    assert not check.separated and check.kind == "none" and check.infinite == {}
    assert check.message() is None


def test_trials_all_or_none_count_as_separating_rows() -> None:
    """With trials, a row of 0 < y < n successes forces x'd = 0; all-or-none rows are inequalities."""
    week = np.arange(6.0)
    n = np.full(6, 5.0)
    x = _design(week)
    separated = detect_separation(x, np.array([0, 0, 0, 5, 5, 5.0]), n)
    assert separated.separated and separated.kind == "complete"
    mixed = detect_separation(x, np.array([0, 0, 2, 5, 5, 5.0]), n)  # week 2 has 2 of 5
    # directions with d0 + 2 d1 = 0, d1 >= 0 separate all the other rows: quasi-complete
    assert mixed.separated and mixed.kind == "quasi-complete"
    assert mixed.infinite == {"x0": "-inf", "x1": "+inf"}
    overlap = detect_separation(x, np.array([0, 2, 1, 3, 2, 5.0]), n)
    assert not overlap.separated


def test_mixed_glm_reports_separation_as_data_and_a_warning() -> None:
    rng = np.random.default_rng(11)
    m = 60
    pid = np.repeat(np.arange(m), 6)
    week = np.tile(np.arange(6.0), m)
    group = np.where(pid % 2 == 1, "B", "A")
    eta = -0.5 + 0.3 * week + rng.normal(0.0, 0.8, m)[pid]
    y = np.where(group == "B", 0, (rng.random(pid.size) < special.expit(eta)).astype(int))
    frame = pl.DataFrame({"patient": pid.astype(str), "week": week, "group": group, "responder": y})
    fit = MixedGLM("responder ~ week + group + (1 | patient)", family="binomial").fit(frame)
    sep = fit.result_.separation
    assert sep is not None and sep.separated and sep.infinite == {"groupB": "-inf"}
    messages = fit.result_.diagnostics.messages
    assert any(
        msg.startswith("warning: quasi-complete separation") and "groupB (-inf)" in msg for msg in messages
    )
    out = json.loads(fit.result_.to_json())
    assert out["separation"]["infinite"] == {"groupB": "-inf"}
    # the non-separated responder data: reported as checked and clean
    clean = MixedGLM("responder ~ week + age + (1 | patient)", family="binomial").fit(
        pl.read_csv(REF_DIR / "responders.csv")
    )
    assert clean.result_.separation is not None and not clean.result_.separation.separated
    assert not any("separation" in msg for msg in clean.result_.diagnostics.messages)


def test_poisson_fits_carry_no_separation_check() -> None:
    d = pl.read_csv(REF_DIR / "grouseticks.csv").with_columns(pl.col("BROOD", "YEAR").cast(pl.String))
    fit = MixedGLM("TICKS ~ YEAR + (1 | BROOD)", family="poisson").fit(d)
    assert fit.result_.separation is None and fit.result_.to_dict()["separation"] is None
