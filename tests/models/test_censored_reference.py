"""CensoredGrowthModel against the independent exact-likelihood R reference (issue 15, validation (a)).

Reference: ``tests/reference/censored/make_censored_reference.R`` with ``censored_likelihood.R`` (R 4.2.2,
mvtnorm 1.1-3, numDeriv): each patient's exact marginal likelihood, the observed rows by ``dmvnorm`` and the
censored rows given them by ``pmvnorm`` (TVPACK for up to 3 censored rows) or, for 4-6 censored rows, by the
exact identity ``P = E_{b | y_o} prod Phi`` (a q-dimensional Gauss-Hermite rule over the Gaussian posterior of
the random effects given the observed rows, not around the conditional mode), maximised by ``optim`` BFGS
then Newton steps with the numDeriv Hessian. Data: ``make_data.py`` (three designs of 150 patients: a random
intercept with a constant cap; a correlated intercept and slope with per-row caps and ``week * arm``; left
censoring at 0 with right censoring at 10).

What the reference's numbers are worth (all stored in the JSON and asserted below):

* its log-likelihood: the identity with twice the nodes, a brute-force Gauss-Hermite rule over every censored
  patient and GenzBretz agree with it to ``R_LOGLIK_ACCURACY`` (Miwa with its maximum 4096
  steps is recorded: it was 1.4e-5 off on design_b, the reason the reference does not use it);
* its optimum: the last Newton decrement ``g' (-H)^-1 g`` is below 1e-12 (log L within 5e-13 of the maximum
  of its likelihood), so its estimates are within ``sqrt(2 G)`` SE of the exact optimum (tolerances.py);
* its SEs: Richardson-extrapolated Hessian (numDeriv), relative accuracy ~1e-6.

The package's fit carries its own approximation, the adaptive Gauss-Hermite rule with ``nagq`` nodes per
dimension; its error is the quadrature error, measured here, not assumed:

* ``test_loglik_at_same_parameters``: the package's likelihood at R's optimum and at the generating truth,
  evaluated with ``EXACT_NAGQ`` + 10 nodes (71 for q = 2, 70 for q = 1; within 1e-7 of the value with 10
  nodes fewer, the gap added to the tolerance), equals R's to ``SAME_POINT_TOL`` = 1e-8 or 3 x R's own
  accuracy (measured: 9e-12 design_a, 2e-11 design_b; design_c -3.3e-6, which is R's own error there: its
  identity with 120 nodes is 3.31e-6 above its 240-node, Miwa and brute-force values, which the package's
  71-node value matches to 1e-8): the two likelihoods are the same function, the strongest check;
* ``test_fit_matches_reference`` (fits at ``FIT_NAGQ``): estimates within 1e-3 of ``max(|R|, SE)``
  (the issue's 1e-3 relative, judged against the SE for a coefficient near 0), standard errors 1e-2
  relative, random-effect SDs and sigma 1e-3 relative, the correlation 1e-3 absolute; the log-likelihood *at
  the package's optimum*, evaluated with ``EXACT_NAGQ`` nodes, within 1e-4 of R's maximum (the issue's
  tolerance; two optima of one function differ by O(delta^2) in log L);
* the log-likelihood the fit *reports* (its own ``nagq``) is within 1e-4 of R's maximum only with enough
  nodes: ``FIT_NAGQ`` gives 25 nodes for q = 1 (error 1e-8) but 9 / 15 for the two q = 2 designs, where the
  reported value is off by +3.1e-3 / -2.9e-3 (design_b / design_c; measured and asserted against the fit's
  own ``quadrature_error`` estimate, which must bracket it within a factor 3). The slow test fits design_c at
  35 nodes and asserts the reported value directly (at 25 nodes it is still 2.3e-4 off).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tolerances import rel

from sciatica_outcomes.models.censored import CensoredGrowthModel

REF_DIR = Path(__file__).resolve().parents[1] / "reference" / "censored"
REFERENCE = json.loads((REF_DIR / "censored_reference.json").read_text())
CASES: dict[str, dict[str, Any]] = REFERENCE["cases"]
for _case in CASES.values():  # jsonlite writes a vector of length 1 as a scalar
    _case["random_terms"] = (
        [_case["random_terms"]] if isinstance(_case["random_terms"], str) else _case["random_terms"]
    )

#: nodes per dimension of the fits (kept fast: the three fits take ~5 s)
FIT_NAGQ = {"design_a": 25, "design_b": 9, "design_c": 15}
#: nodes per dimension of the evaluations taken as exact (quadrature error < 1e-8 at these points, measured
#: against the same evaluation with 8 more nodes)
EXACT_NAGQ = {1: 60, 2: 61}
#: the two likelihoods at one point: the package's at EXACT_NAGQ against R's, up to R's own accuracy (its
#: deterministic checks at the optimum, x3) or 1e-8, whichever is larger
SAME_POINT_TOL = 1e-8
ISSUE_LOGLIK = 1e-4
ISSUE_ESTIMATE = 1e-3
SE_TOL = 1e-2
VARCOMP_TOL = 1e-3
#: the R log-likelihood's own accuracy (its checks in the JSON), asserted so that a regenerated reference
#: that lost accuracy fails here
R_LOGLIK_ACCURACY = 1e-5


def _fit(name: str) -> CensoredGrowthModel:
    case = CASES[name]
    data = pl.read_csv(REF_DIR / case["file"])
    return CensoredGrowthModel(
        case["formula"], upper=case["upper"], lower=case["lower"], nagq=FIT_NAGQ[name]
    ).fit(data)


@pytest.fixture(scope="module")
def fits() -> dict[str, CensoredGrowthModel]:
    return {name: _fit(name) for name in CASES}


def _engine_par(model: CensoredGrowthModel, r_par: list[float], case: dict[str, Any]) -> np.ndarray:
    """The package's parameter vector ``(theta = L[tri], beta, log sigma)`` of R's ``(beta, log sd, atanh
    corr, log sigma)``."""
    k, q = len(case["terms"]), len(case["random_terms"])
    beta = np.asarray(r_par[:k])
    sds = np.exp(r_par[k : k + q])
    corr = math.tanh(r_par[k + q]) if q == 2 else 0.0
    sigma_b = np.outer(sds, sds) * (np.eye(q) + corr * (1.0 - np.eye(q)))
    lam = np.linalg.cholesky(sigma_b)
    return np.concatenate([lam[model.engine_.tri], beta, [r_par[-1]]])


def _loglik(model: CensoredGrowthModel, par: np.ndarray, nagq: int) -> float:
    """The package's log-likelihood at ``par`` with ``nagq`` nodes (the fit's own setting restored)."""
    eng = model.engine_
    eng.set_nagq(nagq)
    try:
        return -0.5 * float(eng.evaluate(np.asarray(par, dtype=np.float64), grad=False)[0])
    finally:
        eng.set_nagq(int(model.nagq))


@pytest.mark.parametrize("name", list(CASES))
def test_reference_is_accurate(name: str) -> None:
    case = CASES[name]
    acc = case["accuracy"]
    # the identity with twice the nodes and the brute-force rule are deterministic; GenzBretz is randomised
    # (error bound 1e-9 per probability); Miwa is recorded, not asserted (1e-5 off on design_b)
    for key in ("loglik_identity_2x_nodes", "loglik_gauss_hermite_all_200"):
        assert abs(acc[key] - case["loglik"]) < R_LOGLIK_ACCURACY, key
    assert abs(acc["loglik_genzbretz"] - case["loglik"]) < R_LOGLIK_ACCURACY
    assert case["newton"][-1]["newton_decrement_sq"] < 1e-10
    share = (case["n_right_censored"] + case["n_left_censored"]) / case["nobs"]
    assert 0.10 <= share <= 0.40


@pytest.mark.parametrize("name", list(CASES))
def test_loglik_at_same_parameters(fits: dict[str, CensoredGrowthModel], name: str) -> None:
    case, model = CASES[name], fits[name]
    nagq = EXACT_NAGQ[len(case["random_terms"])]
    acc = case["accuracy"]
    r_error = max(
        abs(acc[k] - case["loglik"]) for k in ("loglik_identity_2x_nodes", "loglik_gauss_hermite_all_200")
    )
    for r_par, r_ll in ((case["par"], case["loglik"]), (case["truth_par"], case["loglik_at_truth"])):
        par = _engine_par(model, r_par, case)
        ours = _loglik(model, par, nagq + 10)
        gap = abs(ours - _loglik(model, par, nagq))  # the quadrature's own convergence at this point
        assert gap < 1e-6
        assert abs(ours - r_ll) < max(SAME_POINT_TOL, 3.0 * r_error) + gap


@pytest.mark.parametrize("name", list(CASES))
def test_fit_matches_reference(fits: dict[str, CensoredGrowthModel], name: str) -> None:
    case, model = CASES[name], fits[name]
    res = model.result_
    assert res.converged
    fe = res.fixed_effects
    assert fe["term"].to_list() == case["terms"]
    r_beta = np.array([case["estimates"][t] for t in case["terms"]])
    r_se = np.array([case["se"][t] for t in case["terms"]])
    assert rel(model.beta_, r_beta, floor=r_se) < ISSUE_ESTIMATE
    assert rel(fe["se"].to_numpy(), r_se) < SE_TOL
    vc = model.variance_components
    sds = vc.filter(pl.col("sd").is_not_null() & (pl.col("group") != "Residual"))["sd"].to_numpy()
    assert rel(sds, [case["sd"][t] for t in case["random_terms"]]) < VARCOMP_TOL
    assert rel(model.sigma_, case["sigma"]) < VARCOMP_TOL
    if case["corr"] is not None:
        corr = vc.filter(pl.col("corr").is_not_null())["corr"].item()
        assert abs(corr - case["corr"]) < VARCOMP_TOL
    # the exact log-likelihood at the package's optimum: within the issue's 1e-4 of R's maximum, and not above
    # it by more than R's own accuracy (R's is the maximum of the same function)
    exact_at_ours = _loglik(model, model.par_, EXACT_NAGQ[len(case["random_terms"])])
    assert -ISSUE_LOGLIK < exact_at_ours - case["loglik"] < R_LOGLIK_ACCURACY
    # the reported log-likelihood (the fit's own nagq): its actual error against its estimate
    error = res.loglik - exact_at_ours
    estimate = res.diagnostics.quadrature_error
    if FIT_NAGQ[name] >= 25:
        assert abs(res.loglik - case["loglik"]) < ISSUE_LOGLIK
    else:
        assert abs(error) < 3.0 * abs(estimate) + 1e-8


@pytest.mark.slow
def test_design_c_reported_loglik_at_35_nodes() -> None:
    # 25 nodes are not enough here: the reported value is +2.3e-4 above R's maximum (measured)
    case = CASES["design_c"]
    data = pl.read_csv(REF_DIR / case["file"])
    model = CensoredGrowthModel(case["formula"], upper=case["upper"], lower=case["lower"], nagq=35).fit(data)
    assert abs(model.result_.loglik - case["loglik"]) < ISSUE_LOGLIK
