"""Numerical tolerances of the models tests, each derived from the algorithm that produced the numbers.

Golden comparisons with R
-------------------------
Expected values come from the committed R scripts and are stored with 15 significant digits:
``tests/reference/lmm/make_reference.R`` (lme4 1.1-31 ``lmer`` with bobyqa, lmerTest 3.1-3, emmeans 1.8.4) and
``tests/reference/mmrm/gls_reference.R`` (nlme 3.1-162 ``gls``, emmeans 1.8.4-1, lmerTest 3.1-3). R's
optimizers stop earlier than this package's: bobyqa's trust region and gls's nlminb/optim leave the
log-likelihood up to ~1e-7 below its maximum (measured: 1.3e-7 on mar5/toeph), so R's variance parameters
carry relative errors of about 1e-6 to 1e-5. The golden tolerances (issue 5) follow from that:

- ``GOLDEN_ESTIMATE`` 1e-5 of ``max(|R|, SE)``: fixed effects, marginal means and their contrasts, which
  are (nearly) orthogonal to the variance parameters; relative, but judged against the standard error for a
  value near zero (:func:`rel` with ``floor=se``);
- ``GOLDEN_SE`` 1e-4 relative: everything at first order in the variance parameters: standard errors,
  sigma, variance components and covariance matrices (covariances on the correlation scale,
  :func:`covariance_rel`), conditional SDs and BLUPs (relative to their conditional SD), t statistics
  (relative to ``max(|t|, 1)``); an F statistic, a square of t, gets twice that;
- ``GOLDEN_DF`` 1e-3 relative: Satterthwaite df (second derivatives: numDeriv in lmerTest, central
  differences of the analytic gradient here), the p-values and interval limits that follow from them;
  ``GOLDEN_DF_APVAR`` 5e-2 for gls, whose Cov(theta) is nlme's forward-difference ``fdHess`` (``apVar``);
- ``GOLDEN_LOGLIK`` 1e-5 absolute: at an optimum an error delta of the parameters moves log L by
  O(delta^2) only; ``GOLDEN_DEVIANCE`` = 2 x that for -2 log L plus constants (deviance, REMLcrit, AIC, BIC,
  the likelihood-ratio statistic).

This package's own stopping error (below) is at most 7.1e-6 standard errors, far inside these. Closed
formulas checked against R printouts (Wilson intervals, Kaplan-Meier, log-rank) involve no optimizer: the
tolerance is the printed precision, :func:`printed`.

Two fits of this package (or a fit and another optimizer's)
-----------------------------------------------------------
Both optimizers stop on the Newton decrement of the deviance ``D = -2 log L`` in the variance parameters
``theta``: the growth model is converged only when ``lambda = sqrt(g' H^-1 g) < gradient_tol = 1e-5``
(``GrowthModel._check``, profiled deviance), the MMRM when ``g' H^-1 g < 1e-10`` (``mmrm._optimise``):
both ``lambda^2 < NEWTON_DECREMENT_SQ = 1e-10``. Near the optimum ``theta - theta* ~ H^-1 g``, so

- ``D(theta) - D(theta*) ~ lambda^2 / 2``: log L within ``LOGLIK_STOP = lambda^2 / 4 = 2.5e-11``;
- for any smooth ``q(theta)`` (theta itself, the GLS ``beta(theta)``, ``Sigma(theta)``), by Cauchy-Schwarz in
  the ``H`` metric, ``|q(theta) - q(theta*)| <= lambda sqrt(dq' H^-1 dq) = lambda / sqrt(2) SE_theta(q)``:
  within ``NEWTON_RADIUS = 7.1e-6`` of ``SE_theta(q) = sqrt(dq' Cov(theta) dq)``, ``Cov(theta) = 2 H^-1``,
  the delta-method standard error of ``q`` through ``theta`` (:func:`se_through_theta`).

Two fits that both stopped differ by at most the sum of their radii. The CPU, the BLAS, its thread count and
the row order only move where inside its radius each fit stops (the issue's 4e-8 relative difference of beta
between two row orders is 2e-6 SE_theta(beta)). Another optimizer that stops a gap ``G`` below the
maximum log-likelihood (``G`` measured as this package's log L minus its own) is within ``sqrt(2 G)
SE_theta(q)`` by the same argument (``lambda^2 = 4 G``).

Rounding: one evaluation of a deviance is a sum over groups or patterns with cancellation (the penalised
residual sum of squares is a difference of much larger sums); its rounding error was measured up to 3e-13 of
``|D|`` (this package against lme4 at lme4's theta). Comparisons of two evaluations add ``ROUNDING |D|``
with ``ROUNDING = 1e-12``; a central difference with step ``h`` adds ``ROUNDING |D| / h``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from sciatica_outcomes.models import MMRM, GrowthModel, numerical_hessian, numerical_jacobian
from sciatica_outcomes.models.mmrm import _Criterion, _sigma

EPS = float(np.finfo(float).eps)

# golden comparisons with R (see the module docstring)
GOLDEN_ESTIMATE = 1e-5
GOLDEN_SE = 1e-4
GOLDEN_DF = 1e-3
GOLDEN_DF_APVAR = 5e-2
GOLDEN_LOGLIK = 1e-5
GOLDEN_DEVIANCE = 2 * GOLDEN_LOGLIK
#: absolute floor of p-value comparisons: a p-value far in the tail (1e-44 in balanced_ml) is checked
#: through its t statistic (GOLDEN_SE), not relatively
GOLDEN_P_ATOL = 1e-12
#: Tukey-adjusted p: R's ptukey and scipy's studentized range are accurate to ~1e-8 absolute in the far tail
GOLDEN_TUKEY_ATOL = 1e-8

# this package's stopping rule (see the module docstring)
NEWTON_DECREMENT_SQ = 1e-10
NEWTON_RADIUS = math.sqrt(NEWTON_DECREMENT_SQ / 2)  # 7.1e-6 SE_theta per fit
DEVIANCE_STOP = NEWTON_DECREMENT_SQ / 2  # 5e-11 on -2 log L per fit
LOGLIK_STOP = NEWTON_DECREMENT_SQ / 4  # 2.5e-11 on log L per fit
ROUNDING = 1e-12  # relative rounding level of one deviance evaluation (measured <= 3e-13)


def rel(a: Any, b: Any, floor: Any = 1e-300) -> float:
    """Largest ``|a - b| / max(|b|, floor)``; ``floor`` may be an array (e.g. the standard errors)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.asarray(floor, dtype=float))))


def covariance_rel(a: Any, b: Any) -> float:
    """Largest difference of two covariance matrices, variances relative and covariances on the correlation
    scale (relative to ``sqrt(b_ii b_jj)``), as the variance components are compared."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sd = np.sqrt(np.diag(b))
    return float(np.max(np.abs(a - b) / np.outer(sd, sd)))


def printed(decimals: int) -> float:
    """Tolerance for a closed formula against a value copied from an R printout with ``decimals`` decimals:
    100 times the printout's rounding (``0.5 * 10^-decimals``); double precision adds nothing visible."""
    return 50.0 * 10.0**-decimals


def se_through_theta(jacobian: np.ndarray, theta_cov: np.ndarray) -> np.ndarray:
    """Delta-method standard errors ``sqrt(dq' Cov(theta) dq)`` of ``q(theta)`` through ``theta``.

    ``jacobian`` has shape ``(k, *s)`` (as :func:`~sciatica_outcomes.models.numerical_jacobian` returns);
    the result has shape ``s``.
    """
    j = jacobian.reshape(jacobian.shape[0], -1)
    return np.sqrt(np.einsum("ki,kl,li->i", j, theta_cov, j)).reshape(jacobian.shape[1:])


def growth_model_se_theta(model: GrowthModel) -> tuple[np.ndarray, np.ndarray]:
    """``SE_theta`` of theta and of ``beta(theta)`` of a fitted growth model.

    ``Cov(theta) = 2 H^-1`` with ``H`` the Hessian of the profiled deviance (central differences of its
    analytic gradient); ``beta(theta)`` is the engine's GLS solution at ``theta``.
    """
    eng, reml, theta = model.engine_, model.result_.reml, model.theta_
    hess = numerical_hessian(
        lambda t: eng.deviance(t, reml)[0], theta, gradient=lambda t: eng.deviance(t, reml, grad=True)[1]
    )
    cov = 2.0 * np.linalg.inv(hess)
    jac = numerical_jacobian(lambda t: np.asarray(eng.fixed(t, reml)["beta"]), theta)
    return np.sqrt(np.diag(cov)), se_through_theta(jac, cov)


def mmrm_se_theta(model: MMRM, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``SE_theta`` of theta, of ``beta(theta)`` and of ``Sigma(theta)`` of a fitted MMRM.

    ``Cov(theta)`` is the fit's ``theta_cov`` (``2 H^-1``, observed Hessian of the REML criterion);
    ``beta(theta)`` is the GLS solution of the criterion rebuilt from ``frame`` (the data of the fit).
    """
    res = model.result_
    pats, struct, _ = model._patterns(model._prepare(frame))  # positions: visits, (group, visit) or points
    crit = _Criterion(pats, struct, res.reml)

    def beta(theta: np.ndarray) -> np.ndarray:
        ev = crit.evaluate(theta)
        assert ev is not None
        return ev.beta

    def sigma(theta: np.ndarray) -> np.ndarray:
        return _sigma(theta, struct, pats.t)

    jac_beta, jac_sigma = (numerical_jacobian(fn, res.theta) for fn in (beta, sigma))
    return (
        np.sqrt(np.diag(res.theta_cov)),
        se_through_theta(jac_beta, res.theta_cov),
        se_through_theta(jac_sigma, res.theta_cov),
    )


def sas_printed(text: str) -> float:
    """Half a unit of the last digit of a number as a SAS listing prints it (``"44.6313"`` -> 5e-5)."""
    mantissa = text.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(text.lower().split("e")[1]) if "e" in text.lower() else 0
    return 0.5 * 10.0 ** (exponent - decimals)


def optimizer_gap_radius(gap: float) -> float:
    """Radius, in ``SE_theta`` units, between this package's fit and another optimizer's that stopped ``gap``
    below the maximum log-likelihood (``sqrt(2 gap)``, see the module docstring) plus this fit's own
    ``NEWTON_RADIUS``."""
    return math.sqrt(2.0 * max(gap, 0.0)) + NEWTON_RADIUS
