"""CensoredGrowthModel: identity with the ML growth model, its gradient, quadrature, recovery and messages.

The independent R reference (exact likelihood by ``mvtnorm``) is ``test_censored_reference.py``. Here:

* without censored values the likelihood is Gaussian: the engine's deviance equals the dense
  multivariate-normal log-density at any parameters (rounding, ``1e-9`` relative) and the fit equals
  ``GrowthModel(reml=False)``: log-likelihood ``1e-6`` absolute, estimates ``1e-5`` relative (both fits stop
  on the Newton decrement ``< 1e-5``, ``tests/models/tolerances.py``);
* the analytic gradient of the quadrature deviance against central differences, with the conditional modes
  solved to ``1e-14`` so that the differences are not limited by the modes' stopping rule (a mode error
  ``delta`` moves ``log det H`` at first order, ``delta / h`` in a difference of step ``h``);
* quadrature: ``nagq = 5`` against ``15`` nodes, and the reported quadrature error;
* recovery on a simulated cohort with 30 % of the values at a cap: the naive growth model's slope is biased by
  many standard errors, the censored model's is not.
"""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models import GrowthModel
from sciatica_outcomes.models import censored as censored_module
from sciatica_outcomes.models.censored import (
    CensoredGrowthModel,
    _clipped_normal_mean,
    censored_likelihood_ratio_test,
)

WEEKS = np.array([0.0, 2.0, 6.0, 12.0, 26.0])


def _cohort(n: int, seed: int, cap_quantile: float | None = 0.7, slope_sd: float = 0.02) -> pl.DataFrame:
    """Patients at weeks 0-26, random intercept and slope; ``y`` capped at a quantile, ``y_true`` not."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n), WEEKS.size)
    w = np.tile(WEEKS, n)
    group = np.where(g % 2 == 0, "a", "b")
    b = rng.normal(size=(n, 2)) * [0.4, slope_sd]
    truth = 1.5 + 0.05 * w + 0.2 * (group == "b") + b[g, 0] + b[g, 1] * w + rng.normal(size=w.size) * 0.3
    cap = float(np.quantile(truth, cap_quantile)) if cap_quantile is not None else math.inf
    y = np.minimum(truth, cap)
    return pl.DataFrame(
        {
            "id": g,
            "week": w,
            "group": group,
            "y": y,
            "y_true": truth,
            "cap": np.full(w.size, cap),
            "at_cap": truth >= cap,
        }
    )


# ---------------------------------------------------------------------------------------------------------
# no censoring: the Gaussian likelihood and the ML growth model
# ---------------------------------------------------------------------------------------------------------
def test_engine_without_censoring_is_the_gaussian_marginal_likelihood() -> None:
    data = _cohort(30, 1, cap_quantile=None)
    model = CensoredGrowthModel("y ~ week + (week | id)", upper=1e9).fit(data)
    eng = model.engine_
    rng = np.random.default_rng(5)
    for _ in range(3):  # any parameters, not only the optimum
        par = model.par_ + rng.normal(size=model.par_.size) * 0.05
        lam, beta, sigma = eng.unpack(par)
        sigma_b = lam @ lam.T
        dense = 0.0
        for i in range(30):  # the dense reference, patient by patient
            rows = eng.g == i
            zi, xi, yi = eng.z[rows], eng.x[rows], eng.c[rows]
            cov = zi @ sigma_b @ zi.T + sigma**2 * np.eye(rows.sum())
            dense += stats.multivariate_normal(xi @ beta, cov).logpdf(yi)
        dev = eng.evaluate(par, grad=False)[0]
        assert abs(-dev / 2.0 - dense) < 1e-9 * abs(dense)


@pytest.mark.parametrize(
    "formula", ["y ~ week * group + (week | id)", "y ~ week + (1 | id) + (0 + week | id)"]
)
def test_no_censored_value_gives_the_ml_growth_model(formula: str) -> None:
    data = _cohort(80, 2, cap_quantile=None)
    ml = GrowthModel(formula, reml=False).fit(data)
    fit = CensoredGrowthModel(formula, upper="cap", nagq=5).fit(data)
    assert fit.result_.diagnostics.share_censored == 0.0
    assert abs(fit.result_.loglik - ml.result_.loglik) < 1e-6
    np.testing.assert_allclose(fit.beta_, ml.beta_, rtol=1e-5)
    assert fit.sigma_ == pytest.approx(ml.sigma_, rel=1e-5)
    vc_ml = ml.variance_components["variance"].to_numpy()
    np.testing.assert_allclose(fit.variance_components["variance"].to_numpy(), vc_ml, rtol=1e-4)
    # the analytic gradient vanishes at the ML optimum (it is the ML growth model's deviance)
    lam = fit.sigma_ * fit.structure_.specs["id"].template(np.asarray(ml.theta_))
    par = np.concatenate([lam[fit.engine_.tri], ml.beta_, [math.log(ml.sigma_)]])
    grad = fit.engine_.evaluate(par)[1]
    assert grad is not None
    assert np.max(np.abs(grad * fit._scale(fit.sigma_))) < 1e-3


# ---------------------------------------------------------------------------------------------------------
# gradient and quadrature
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("formula", "nagq"),
    [
        ("y ~ week + group + (week | id)", 1),
        ("y ~ week + group + (week | id)", 5),
        ("y ~ week + (1 | id)", 7),
    ],
)
def test_gradient_matches_central_differences(
    formula: str, nagq: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(censored_module, "_INNER_TOL", 1e-14)
    data = _cohort(40, 3, cap_quantile=0.75).with_columns(low=pl.lit(1.2))
    model = CensoredGrowthModel(formula, upper="cap", lower="low", nagq=nagq).fit(data)
    d = model.result_.diagnostics
    assert d.n_censored_right > 0 and d.n_censored_left > 0
    eng = model.engine_
    par = model.par_ + np.random.default_rng(4).normal(size=model.par_.size) * 0.05
    grad = eng.evaluate(par)[1]
    assert grad is not None
    fd = np.empty_like(par)
    for k in range(par.size):
        step = 1e-5 * max(1.0, abs(float(par[k])))
        up, dn = par.copy(), par.copy()
        up[k] += step
        dn[k] -= step
        fd[k] = (eng.evaluate(up, grad=False)[0] - eng.evaluate(dn, grad=False)[0]) / (2 * step)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-5)


def test_quadrature_converges_and_reports_its_error() -> None:
    data = _cohort(120, 6, cap_quantile=0.7)
    five = CensoredGrowthModel("y ~ week + (week | id)", upper="cap", nagq=5).fit(data)
    fifteen = CensoredGrowthModel("y ~ week + (week | id)", upper="cap", nagq=15).fit(data)
    d5, d15 = five.result_.diagnostics, fifteen.result_.diagnostics
    assert d5.nagq == 5 and d5.n_nodes == 25 and d5.nagq_check == 9
    assert d5.quadrature_error == pytest.approx(d5.loglik_check - five.result_.loglik, abs=1e-12)
    # 5 nodes are within a small fraction of a log-likelihood unit of 15; 15 and 19 agree closely
    assert abs(five.result_.loglik - fifteen.result_.loglik) < 0.05
    assert abs(d15.quadrature_error) < 1e-4
    se = five.summary["se"].to_numpy()
    assert np.all(np.abs(five.beta_ - fifteen.beta_) < 0.05 * se)
    # Laplace is a rougher approximation of the same likelihood
    laplace = CensoredGrowthModel("y ~ week + (week | id)", upper="cap", nagq=1).fit(data)
    assert abs(laplace.result_.loglik - fifteen.result_.loglik) > abs(
        five.result_.loglik - fifteen.result_.loglik
    )


# ---------------------------------------------------------------------------------------------------------
# recovery
# ---------------------------------------------------------------------------------------------------------
def test_recovers_the_uncapped_slope_where_the_naive_model_is_biased() -> None:
    data = _cohort(600, 11, cap_quantile=0.7)
    fit = CensoredGrowthModel("y ~ week + group + (week | id)", censored="at_cap", nagq=5).fit(data)
    share = fit.result_.diagnostics.share_censored
    assert 0.28 < share < 0.32
    est = dict(zip(fit.summary["term"].to_list(), fit.summary["estimate"].to_list(), strict=True))
    se = dict(zip(fit.summary["term"].to_list(), fit.summary["se"].to_list(), strict=True))
    naive = dict(
        zip(fit.naive_.summary["term"].to_list(), fit.naive_.summary["estimate"].to_list(), strict=True)
    )
    assert abs(est["week"] - 0.05) < 3 * se["week"]
    assert abs(est["groupb"] - 0.2) < 3 * se["groupb"]
    assert naive["week"] < 0.05 - 10 * se["week"]  # the capped values pull the naive slope down
    sd = fit.variance_components.filter(pl.col("group") == "Residual")["sd"][0]
    assert abs(sd - 0.3) < 0.03
    # the same fit from the cap column: identical
    by_column = CensoredGrowthModel("y ~ week + group + (week | id)", upper="cap", nagq=5).fit(data)
    assert by_column.result_.loglik == pytest.approx(fit.result_.loglik, abs=1e-8)


# ---------------------------------------------------------------------------------------------------------
# inference
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_fit() -> CensoredGrowthModel:
    return CensoredGrowthModel("y ~ week + group + (1 | id)", upper="cap", nagq=5).fit(_cohort(80, 8))


def test_profile_interval_is_where_the_deviance_rises_by_z_squared(small_fit: CensoredGrowthModel) -> None:
    out = small_fit.profile_interval({"week": 26.0}, label="change at week 26")
    assert out["label"] == "change at week 26"
    z = stats.norm.ppf(0.975)
    vec = np.zeros(small_fit.beta_.size)
    vec[small_fit.design_.column_names.index("week")] = 26.0
    for limit in (out["profile_low"], out["profile_high"]):
        dev, _ = small_fit._constrained_fit(vec, limit, small_fit.par_)
        assert dev - small_fit.result_.deviance == pytest.approx(z**2, abs=1e-4)
    # close to the Wald interval in a large sample, but not equal to it
    assert out["profile_low"] < out["estimate"] < out["profile_high"]
    assert abs(out["profile_low"] - out["wald_low"]) < 0.2 * out["se"]
    assert out["profile_low"] != pytest.approx(out["wald_low"], abs=1e-9)


def test_expected_observed_mean_is_the_mean_of_the_capped_outcome(small_fit: CensoredGrowthModel) -> None:
    cap = float(_cohort(80, 8)["cap"][0])
    om = small_fit.observed_means("group", at={"week": [12.0]}, upper=cap)
    assert om.columns == [
        "group",
        "latent_mean",
        "latent_low",
        "latent_high",
        "expected_observed",
        "expected_observed_low",
        "expected_observed_high",
    ]
    em = small_fit.emmeans("group", at={"week": [12.0]}).means
    np.testing.assert_allclose(om["latent_mean"].to_numpy(), em["emmean"].to_numpy(), rtol=1e-12)
    # Monte Carlo of min(Y, cap) with Y = latent mean + b + e at the fitted parameters
    rng = np.random.default_rng(0)
    sd_b = small_fit.variance_components["sd"][0]
    draws = rng.normal(size=400_000) * sd_b + rng.normal(size=400_000) * small_fit.sigma_
    for mean, expected in zip(om["latent_mean"], om["expected_observed"], strict=True):
        sample = np.minimum(mean + draws, cap)
        assert abs(expected - sample.mean()) < 4 * sample.std() / math.sqrt(sample.size)
        assert expected < min(mean, cap)
    assert (om["expected_observed_low"] < om["expected_observed"]).all()
    # no limit at all: the expected observed value is the latent mean
    mu = np.array([[0.3, 1.0]])
    np.testing.assert_allclose(_clipped_normal_mean(mu, 0.5, -math.inf, math.inf), mu, rtol=1e-15)


def test_likelihood_ratio_test(small_fit: CensoredGrowthModel) -> None:
    data = _cohort(80, 8)
    smaller = CensoredGrowthModel("y ~ week + (1 | id)", upper="cap", nagq=5).fit(data)
    lrt = censored_likelihood_ratio_test(smaller, small_fit)
    assert lrt.df == 1
    assert lrt.statistic == pytest.approx(2 * (small_fit.result_.loglik - smaller.result_.loglik), rel=1e-12)
    other = CensoredGrowthModel("y ~ week + (1 | id)", upper="cap", nagq=3).fit(data)
    with pytest.raises(ModelSpecificationError, match="different quadrature"):
        censored_likelihood_ratio_test(other, small_fit)


def test_result_to_dict_has_the_quadrature_and_the_censoring(small_fit: CensoredGrowthModel) -> None:
    out = json.loads(small_fit.result_.to_json())
    assert out["model"] == "censored" and out["approximation"] == "adaptive Gauss-Hermite (nAGQ = 5)"
    assert out["quadrature"]["nagq"] == 5 and out["quadrature"]["nodes_per_patient"] == 5
    assert out["censoring"]["n_right"] == small_fit.result_.diagnostics.n_censored_right > 0
    assert out["censoring"]["share"] == pytest.approx(out["censoring"]["n_right"] / out["n_obs"])
    assert [r["term"] for r in out["fixed_effects"]] == ["(Intercept)", "week", "groupb"]


# ---------------------------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"formula": "y ~ week + (1 | clinic) + (week | id)"}, ModelSpecificationError, "clinic as a fixed"),
        ({"upper": None}, ModelSpecificationError, "no censoring given"),
        ({"nagq": 0}, ModelSpecificationError, "nagq must be an integer from 1 to 50"),
        ({"upper": "no_such"}, ModelSpecificationError, "upper column 'no_such' is not in the data"),
        ({"upper": "group"}, ModelSpecificationError, "upper column 'group' must be numeric"),
        ({"upper": None, "censored": "week"}, ModelSpecificationError, "must be boolean"),
        ({"upper": -100.0}, UnusableInputError, "all 100 rows are censored"),
        ({"lower": 5.0}, ModelSpecificationError, "upper limit at or below the lower limit"),
        ({"formula": "y ~ week"}, ModelSpecificationError, "has no random-effects term"),
    ],
)
def test_refusals_name_the_problem(kwargs: dict[str, object], error: type, message: str) -> None:
    data = _cohort(20, 9).with_columns(clinic=pl.col("id") % 3)
    args: dict[str, object] = {"formula": "y ~ week + (1 | id)", "upper": "cap", **kwargs}
    with pytest.raises(error, match=message):
        CensoredGrowthModel(**args).fit(data)  # type: ignore[arg-type]


def test_missing_censoring_flag_is_refused_not_guessed() -> None:
    data = _cohort(20, 9).with_columns(
        at_cap=pl.when(pl.col("id") == 3).then(None).otherwise(pl.col("at_cap"))
    )
    with pytest.raises(ModelSpecificationError, match="missing in 5 row"):
        CensoredGrowthModel("y ~ week + (1 | id)", censored="at_cap").fit(data)
