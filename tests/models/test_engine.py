"""Profiled deviance engine: analytic gradients, closed-form small-matrix algebra, lme4's deviance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lmm_golden import CASES, REFERENCE
from tolerances import DEVIANCE_STOP, ROUNDING

from sciatica_outcomes.models import GrowthModel, LevelSpec, ProfiledDeviance
from sciatica_outcomes.models.engine import batched_inv_logdet


def nested_problem(seed: int = 1):
    rng = np.random.default_rng(seed)
    n_pat, n_cl = 120, 5
    parent = np.sort(rng.integers(0, n_cl, n_pat))
    g1 = np.repeat(np.arange(n_pat), rng.integers(2, 7, n_pat))
    g2 = parent[g1]
    n = g1.size
    week = rng.uniform(0, 26, n)
    x = np.column_stack([np.ones(n), week, rng.normal(size=n)])
    y = (
        x @ [10, 0.5, 1]
        + rng.normal(0, 3, n_pat)[g1]
        + rng.normal(0, 0.2, n_pat)[g1] * week
        + rng.normal(size=n)
    )
    y += rng.normal(0, 2, n_cl)[g2]
    z1 = np.column_stack([np.ones(n), week])
    l1 = LevelSpec(2, np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([0, 1, 2]))
    l2 = LevelSpec(1, np.array([0]), np.array([0]), np.array([3]))
    return x, y, z1, g1, l1, np.ones((n, 1)), g2, l2


def fd_grad(fn, x, h=1e-6):
    return np.array([(fn(x + e) - fn(x - e)) / (2 * h) for e in np.eye(x.size) * h])


def fd_atol(f: float, h: float = 1e-6) -> float:
    """Error of a central difference at step h: rounding ROUNDING |f| / h (tests/models/tolerances.py); the
    truncation h^2 |f^(3)| / 6 is 1e-12 |f^(3)| (measured 1e-8 here, from the truncation at h = 1e-3)."""
    return ROUNDING * abs(f) / h


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("reml", [False, True])
def test_analytic_gradients_match_finite_differences(nested: bool, reml: bool) -> None:
    x, y, z1, g1, l1, z2, g2, l2 = nested_problem()
    if nested:
        eng = ProfiledDeviance(x, y, z1, g1, l1, z2, g2, l2)
        theta = np.array([1.3, 0.05, 0.2, 0.7])
    else:
        eng = ProfiledDeviance(x, y, z1, g1, l1)
        theta = np.array([1.3, 0.05, 0.2])
    f, g = eng.deviance(theta, reml, grad=True)
    fd = fd_grad(lambda t: eng.deviance(t, reml)[0], theta)
    assert np.allclose(g, fd, rtol=0, atol=fd_atol(f))  # absolute: the same for a gradient of 2 or of 700
    vp = np.r_[theta, 1.1]
    fvp, gvp = eng.deviance_vp(vp, reml, grad=True)
    fdvp = fd_grad(lambda v: eng.deviance_vp(v, reml)[0], vp)
    assert np.allclose(gvp, fdvp, rtol=0, atol=fd_atol(fvp))


def test_deviance_vp_at_sigma_hat_equals_profiled_deviance() -> None:
    """Profiling sigma out of lmerTest's deviance gives lme4's profiled deviance."""
    x, y, z1, g1, l1, *_ = nested_problem()
    eng = ProfiledDeviance(x, y, z1, g1, l1)
    theta = np.array([1.0, 0.1, 0.3])
    for reml in (False, True):
        fx = eng.fixed(theta, reml)
        d_vp = eng.deviance_vp(np.r_[theta, fx["sigma"]], reml)[0]
        assert d_vp == pytest.approx(eng.deviance(theta, reml)[0], rel=ROUNDING)  # two evaluations


@pytest.mark.parametrize("q", [1, 2, 3, 5])
def test_closed_form_inverses(q: int) -> None:
    rng = np.random.default_rng(q)
    m = rng.normal(size=(50, q, q))
    a = m @ np.swapaxes(m, 1, 2) + np.eye(q)
    inv, logdet = batched_inv_logdet(np.moveaxis(a, 0, -1))
    # closed forms against LAPACK on well-conditioned SPD matrices (eigenvalues >= 1): rounding only;
    # np.allclose's defaults are ample (a wrong cofactor is off by O(1))
    assert np.allclose(np.moveaxis(inv, -1, 0), np.linalg.inv(a))
    assert np.allclose(logdet, np.linalg.slogdet(a)[1])


def test_deviance_at_lme4_theta_equals_remlcrit() -> None:
    """Our deviance evaluated at lme4's theta is lme4's REMLcrit (nested case)."""
    case = next(c for c in CASES if c["name"] == "nested_clinic")
    ref = json.loads((REFERENCE / "nested_clinic.json").read_text())
    from lmm_golden import load_data  # noqa: PLC0415

    m = GrowthModel(case["formula"]).fit(load_data(case))
    # the same theta (15 digits), no optimizer involved: two implementations' rounding, ROUNDING |D| (1e-8)
    d_r = ref["deviance"]
    assert m.engine_.deviance(np.asarray(ref["theta"]), True)[0] == pytest.approx(d_r, abs=ROUNDING * d_r)
    # and our optimum is no worse: within DEVIANCE_STOP of the minimum (stopping rule), plus that rounding
    assert m.result_.deviance <= d_r + DEVIANCE_STOP + ROUNDING * d_r


@pytest.mark.parametrize("name", ["unbalanced_missing", "uncorrelated_slopes"])
def test_chunked_evaluation_equals_the_whole_batch(name: str) -> None:
    """Blocks of patients (a large model's bounded-memory path) give the same deviance, gradient and fit."""
    import polars as pl  # noqa: PLC0415

    case = next(c for c in CASES if c["name"] == name)
    frame = pl.read_csv(REFERENCE / case["data"])
    whole = GrowthModel(case["formula"]).fit(frame)
    eng = whole.engine_
    assert eng.m1 < ProfiledDeviance.chunk_size  # the golden fit itself is not chunked
    ProfiledDeviance.chunk_size, saved = 37, ProfiledDeviance.chunk_size  # 37 does not divide the patients
    try:
        assert eng._chunked() and len(eng._slices()) == -(-eng.m1 // 37)
        for reml in (True, False):
            d0, g0 = eng.deviance(whole.theta_ * 1.1, reml, grad=True)
            ProfiledDeviance.chunk_size = saved
            d1, g1 = eng.deviance(whole.theta_ * 1.1, reml, grad=True)
            ProfiledDeviance.chunk_size = 37
            assert abs(d0 - d1) < ROUNDING * abs(d1)
            np.testing.assert_allclose(g0, g1, rtol=1e-10, atol=1e-10 * np.abs(g1).max())
        vp = np.r_[whole.theta_, whole.sigma_]
        cov_chunked = eng.covbeta(vp)
        assert "state" not in eng.fixed(whole.theta_, True)
        refit = GrowthModel(case["formula"]).fit(frame)
    finally:
        ProfiledDeviance.chunk_size = saved
    np.testing.assert_allclose(cov_chunked, eng.covbeta(vp), rtol=1e-10)
    np.testing.assert_allclose(refit.beta_, whole.beta_, rtol=1e-10, atol=1e-10 * np.abs(whole.beta_).max())
    se_a, se_b = whole.summary["se"].to_numpy(), refit.summary["se"].to_numpy()
    np.testing.assert_allclose(se_b, se_a, rtol=1e-10)
    assert abs(refit.result_.loglik - whole.result_.loglik) < 2 * ROUNDING * abs(2 * whole.result_.loglik)
