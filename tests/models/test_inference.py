"""Estimator-independent inference: numerical derivatives, vcov(varpar), t/F tests, LRT."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import (
    WaldInference,
    likelihood_ratio,
    numerical_hessian,
    numerical_jacobian,
    satterthwaite_from_deviance,
    vcov_varpar_from_hessian,
)


def test_numerical_derivatives_on_known_functions() -> None:
    x = np.array([0.7, -1.3])
    jac = numerical_jacobian(lambda v: np.array([np.sin(v[0]) * v[1], v[0] ** 3]), x)
    exact = np.array([[np.cos(0.7) * -1.3, 3 * 0.7**2], [np.sin(0.7), 0.0]])
    # central differences at h = 1e-4 max(|x|, 0.01): truncation h^2 |f^(3)| / 6, 3e-9 relative here
    assert np.allclose(jac, exact, rtol=1e-7, atol=1e-9)
    # one Richardson step: truncation O(h^4), rounding eps |f| / h ~ 3e-12 dominates
    assert np.allclose(numerical_jacobian(np.exp, x, richardson=True), np.diag(np.exp(x)), rtol=1e-9)

    def f(v: np.ndarray) -> float:
        return float(v[0] ** 2 * v[1] + np.exp(v[1]))

    def g(v: np.ndarray) -> np.ndarray:
        return np.array([2 * v[0] * v[1], v[0] ** 2 + np.exp(v[1])])

    h_exact = np.array([[2 * x[1], 2 * x[0]], [2 * x[0], np.exp(x[1])]])
    assert np.allclose(numerical_hessian(f, x, gradient=g), h_exact, rtol=1e-7)  # as the Jacobian above
    # Richardson-extrapolated second differences at h = 1e-3 |x|: truncation O(h^4), rounding eps |f| / h^2
    # ~ 3e-9 relative (was rtol=1e-5, four orders looser than the method; measured 3e-10)
    assert np.allclose(numerical_hessian(f, x), h_exact, rtol=1e-7)


def test_vcov_varpar_uses_positive_eigenvalues_only() -> None:
    h = np.diag([4.0, 2.0, -1e-12])
    vcov, eig = vcov_varpar_from_hessian(h)
    assert np.allclose(vcov, np.diag([0.5, 1.0, 0.0]))
    assert np.allclose(eig, [4.0, 2.0, -1e-12])


def make_inference() -> WaldInference:
    """A toy model: vcov(beta) = s^2 (X'X)^-1 / t with varpar (t, s)."""
    xtx_inv = np.array([[0.5, 0.1], [0.1, 0.2]])

    def covbeta(vp: np.ndarray) -> np.ndarray:
        return vp[1] ** 2 * xtx_inv / vp[0]

    return satterthwaite_from_deviance(
        ["(Intercept)", "week"],
        np.array([1.0, 2.0]),
        np.array([2.0, 1.5]),
        covbeta,
        hessian=np.array([[3.0, 0.5], [0.5, 8.0]]),
    )


def test_satterthwaite_formula_and_t_test() -> None:
    inf = make_inference()
    lvec = np.array([1.0, 1.0])
    var = lvec @ inf.vcov_beta @ lvec
    grad = np.array([lvec @ j @ lvec for j in inf.jacobian])
    df_expected = 2 * var**2 / (grad @ inf.vcov_varpar @ grad)
    tab = inf.contrast(lvec, level=0.9)
    assert tab["df"][0] == pytest.approx(df_expected, rel=1e-9)
    assert tab["t"][0] == pytest.approx(3.0 / np.sqrt(var), rel=1e-12)
    assert tab["p"][0] == pytest.approx(2 * stats.t.sf(3.0 / np.sqrt(var), df_expected), rel=1e-9)
    q = stats.t.ppf(0.95, df_expected)
    assert tab["ci_high"][0] == pytest.approx(3.0 + q * np.sqrt(var), rel=1e-12)
    # F-test of one row equals the squared t; of two rows follows contestMD
    f1 = inf.f_test(lvec[None, :])
    assert f1["f"] == pytest.approx(tab["t"][0] ** 2) and f1["den_df"] == pytest.approx(df_expected)
    f2 = inf.f_test(np.eye(2))
    assert f2["num_df"] == 2 and f2["f"] == pytest.approx(
        inf.beta @ np.linalg.solve(inf.vcov_beta, inf.beta) / 2
    )
    with pytest.raises(ModelSpecificationError, match="3 columns"):
        inf.contrast([1.0, 0.0, 1.0])


def test_likelihood_ratio() -> None:
    lrt = likelihood_ratio(-105.0, -100.0, 5, 7, refitted_ml=True)
    assert lrt.statistic == 10.0 and lrt.df == 2
    assert lrt.p == pytest.approx(np.exp(-5.0))
    assert lrt.to_dict()["refitted_ml"] is True
    with pytest.raises(ModelSpecificationError, match="more parameters"):
        likelihood_ratio(-100.0, -105.0, 7, 5, refitted_ml=False)
