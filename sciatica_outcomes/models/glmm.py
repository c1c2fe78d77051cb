"""Generalised linear mixed models (glmer-type): binomial, Poisson and negative binomial outcomes over time.

:class:`MixedGLM` fits ``g(E[y | b]) = X beta + Z b + offset`` with one block ``b_i ~ N(0, Sigma)`` of ``q``
random effects per patient, by maximum likelihood on the Laplace approximation of the marginal likelihood
(vector random effects) or adaptive Gauss-Hermite quadrature (``nagq > 1``, one scalar random effect), as
``lme4::glmer`` and, for the negative binomial, ``glmmTMB(family = nbinom2)``.

Model and approximation
-----------------------
``b_i = Lambda u_i`` with ``Lambda`` lower triangular (lme4's relative covariance factor; for these families
the scale is 1, so ``Sigma = Lambda Lambda'``) and ``u_i ~ N(0, I_q)``. Per patient ``h_i(u) = -sum_j
log f(y_ij | eta_ij) + u'u / 2`` with ``eta = X beta + Z Lambda u + offset``. The conditional mode ``u_i`` and
``H_i = I + A_i' W_i A_i`` (``A_i = Z_i Lambda``, ``W = -d^2 log f / d eta^2``) come from a Newton iteration
batched over all patients (with step halving per patient), and

* Laplace: ``-2 log L = sum_i [2 h_i(u_i) + log det H_i]``;
* adaptive Gauss-Hermite (``q = 1``): ``log L_i = log(sqrt(2) s_i) - log(2 pi) / 2 + log sum_k w_k
  exp(z_k^2 - h_i(u_i + sqrt(2) s_i z_k))`` with ``s_i = H_i^(-1/2)`` and the ``nagq`` Gauss-Hermite nodes
  ``z_k`` and weights ``w_k`` (``nagq = 1`` is the Laplace approximation).

Patients nested in clinics (``(1 | clinic) + (1 + week | patient)``, patient codes unique across clinics):
the Laplace approximation over the joint vector of clinic and patient effects. Its Hessian has a ``q1 x q1``
block per patient coupled only to the patient's own clinic; the Newton step for the modes and ``log det H``
come from the Schur complement of the patient blocks (batched solves over all patients, one ``q2 x q2``
system per clinic, no loop), and the deviance has an analytic gradient through one adjoint solve
(:class:`_NestedEngine`). Quadrature (``nagq > 1``) with two grouping factors is refused, as by glmer.
Binomial fits check the fixed-effects design for complete or quasi-complete separation by Konis's linear
program (:mod:`sciatica_outcomes.models.separation`), reported as data and as a warning message.

The Laplace deviance has an analytic gradient in ``(theta, beta)`` (the envelope theorem for ``h_i(u_i)``,
and for ``log det H_i`` the derivative of ``W`` through ``eta`` including the move of ``u_i``, which needs
``dW / d eta``); the negative-binomial size and the quadrature deviance use central differences. The optimum
is found by L-BFGS-B (``Lambda``'s diagonal bounded at 0) followed by Newton steps on a finite-difference
Hessian until the Newton decrement ``g' H^-1 g`` is below ``1e-10``. ``vcov(beta)`` is the ``beta`` block of
``2 H^-1`` with ``H`` the Hessian of the deviance in ``(theta, beta)`` (glmer's ``use.hessian = TRUE``).
Fixed effects get Wald z tests (``df = inf``), as ``summary(glmer)``.

Validated against lme4 1.1-31 ``glmer`` (Laplace and ``nAGQ = 25``) and glmmTMB 1.1.5 ``nbinom2``
(``tests/reference/glmm/make_glmm_reference.R``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import polars as pl
from scipy import special

from sciatica_outcomes._typing import FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models.base import Estimator, FrameLike, complete_rows
from sciatica_outcomes.models.emmeans import EmmeansResult, emmeans, predictor_info
from sciatica_outcomes.models.engine import batched_inv_logdet
from sciatica_outcomes.models.formula import Design, ModelFormula, parse_formula
from sciatica_outcomes.models.inference import AsymptoticInference, LikelihoodRatioTest, likelihood_ratio
from sciatica_outcomes.models.lmm import _to_polars
from sciatica_outcomes.models.optimize import BoundedNewton
from sciatica_outcomes.models.results import (
    RANDOM_COLUMNS,
    ConvergenceDiagnostics,
    ModelResult,
    _clean_dict,
    varcorr_frame,
    varcorr_rows,
)
from sciatica_outcomes.models.separation import SeparationCheck, detect_separation

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "FAMILIES",
    "MIN_CLINICS_RANDOM",
    "GLMMResult",
    "MixedGLM",
    "fit_patients_in_clinics",
    "glmm_likelihood_ratio_test",
]

#: supported families and their (canonical or log) links
FAMILIES: dict[str, str] = {"binomial": "logit", "poisson": "log", "negbin2": "log"}

SINGULAR_TOL = 1e-4  # lme4::isSingular default
_INNER_TOL = 1e-10  # conditional modes: max |Newton step| in u (u is on the N(0, 1) scale)
_DECREMENT_TOL = 1e-10  # outer optimum: Newton decrement g' H^-1 g of the deviance
_LOG2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------------------
# families: log density and its first three derivatives in eta
# ---------------------------------------------------------------------------------------------------------
def _family_terms(
    family: str, y: FloatArray, trials: FloatArray, eta: FloatArray, size: float, constant: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``log f``, ``d log f / d eta``, ``W = -d^2 log f / d eta^2`` and ``dW / d eta`` per observation.

    Notes
    -----
    binomial (logit, ``n`` trials): ``log f = c + y eta - n log(1 + e^eta)``, ``d1 = y - n p``,
    ``W = n p (1 - p)``, ``dW = W (1 - 2 p)``. Poisson (log): ``log f = c + y eta - mu``, ``d1 = y - mu``,
    ``W = dW = mu``. Negative binomial 2 (log, size ``k``, ``Var = mu + mu^2 / k``): ``log f = c + y eta -
    (y + k) log(mu + k) + k log k``, ``d1 = k (y - mu) / (mu + k)``, ``W = k mu (y + k) / (mu + k)^2``,
    ``dW = k (y + k) mu (k - mu) / (mu + k)^3``. ``c`` (``constant``) holds the terms free of ``eta``.
    """
    if family == "binomial":
        p = special.expit(eta)
        ll = constant + y * eta - trials * np.logaddexp(0.0, eta)
        w = trials * p * (1.0 - p)
        return ll, y - trials * p, w, w * (1.0 - 2.0 * p)
    mu = np.exp(eta)
    if family == "poisson":
        return constant + y * eta - mu, y - mu, mu, mu
    k = size
    mk = mu + k
    ll = (
        constant
        + special.gammaln(y + k)
        - special.gammaln(k)
        + y * eta
        - (y + k) * np.log(mk)
        + k * np.log(k)
    )
    d1 = k * (y - mu) / mk
    w = k * mu * (y + k) / mk**2
    return ll, d1, w, k * (y + k) * mu * (k - mu) / mk**3


def _constant(family: str, y: FloatArray, trials: FloatArray) -> FloatArray:
    """The part of ``log f`` free of ``eta`` and of the size (binomial coefficient, ``-log y!``)."""
    if family == "binomial":
        out = special.gammaln(trials + 1.0) - special.gammaln(y + 1.0) - special.gammaln(trials - y + 1.0)
    else:
        out = -special.gammaln(y + 1.0)
    return np.asarray(out, dtype=np.float64)


def _stack_inv_logdet(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Inverse and log-determinant of ``(q, q, m)`` SPD matrices for ``q > 3`` (LAPACK per matrix)."""
    mats = np.moveaxis(a, -1, 0)
    inv = np.moveaxis(np.linalg.inv(mats), 0, -1)
    return np.asarray(inv, dtype=np.float64), np.asarray(np.linalg.slogdet(mats)[1], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# the likelihood engine
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Modes:
    """Conditional modes and the per-observation and per-patient pieces at them."""

    u: FloatArray  # (m, q)
    a: FloatArray  # (n, q): rows of Z Lambda
    aa: FloatArray  # (n, n_theta): products a_jr a_jc over the lower triangle
    ll: FloatArray
    d1: FloatArray
    w: FloatArray
    d3: FloatArray
    hinv: FloatArray  # (m, q, q)
    logdet: FloatArray  # (m,)
    h: FloatArray  # (m,): h_i(u_i)
    iterations: int
    max_step: float


class _Engine:
    """Laplace / adaptive Gauss-Hermite deviance of a one-level GLMM, vectorised over patients.

    Rows are sorted by patient; ``starts`` are the first row of each patient (``numpy.add.reduceat``).
    """

    def __init__(
        self,
        family: str,
        x: FloatArray,
        z: FloatArray,
        g: IntArray,
        y: FloatArray,
        trials: FloatArray,
        offset: FloatArray,
        nagq: int,
    ) -> None:
        self.family = family
        self.x, self.z, self.g, self.y, self.trials, self.offset = x, z, g, y, trials, offset
        self.n, self.p = x.shape
        self.q = z.shape[1]
        self.starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        self.m = self.starts.size
        self.constant = _constant(family, y, trials)
        self.nagq = nagq
        rows, cols = [], []
        for j in range(self.q):  # lme4's order: the lower triangle column by column
            for i in range(j, self.q):
                rows.append(i)
                cols.append(j)
        self.tri = (np.array(rows), np.array(cols))
        self.n_theta = len(rows)
        self.diag = np.flatnonzero(self.tri[0] == self.tri[1])
        self.theta_rms = np.sqrt(np.mean(z**2, axis=0))[self.tri[0]]
        self.n_size = 1 if family == "negbin2" else 0
        self.n_par = self.n_theta + self.p + self.n_size
        self._u = np.zeros((self.m, self.q))
        self._cache: tuple[bytes, _Modes] | None = None
        self.n_evals = 0
        self.max_inner = 0
        if nagq > 1:
            z_k, w_k = np.polynomial.hermite.hermgauss(nagq)
            self.nodes, self.log_weights = z_k, np.log(w_k) + z_k**2

    # -- parameters ----------------------------------------------------------------------------------
    def unpack(self, par: FloatArray) -> tuple[FloatArray, FloatArray, float]:
        """``(Lambda, beta, size)`` from the parameter vector ``(theta, beta, log size)``."""
        lam = np.zeros((self.q, self.q))
        lam[self.tri] = par[: self.n_theta]
        beta = par[self.n_theta : self.n_theta + self.p]
        size = float(np.exp(par[-1])) if self.n_size else 0.0
        return lam, beta, size

    def gsum(self, v: FloatArray) -> FloatArray:
        """Sum over each patient's rows (first axis)."""
        return np.add.reduceat(v, self.starts, axis=0)

    # -- conditional modes -----------------------------------------------------------------------------
    def _hessians(self, aa: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Inverses ``(m, q, q)`` and log-determinants of ``H_i = I + sum_j w_j a_j a_j'`` (closed forms)."""
        tri = self.gsum(w[:, None] * aa)  # (m, n_theta): the lower triangle of A'WA per patient
        hess = np.zeros((self.q, self.q, self.m))
        rows, cols = self.tri
        hess[rows, cols] = tri.T
        hess[cols, rows] = tri.T
        hess[np.arange(self.q), np.arange(self.q)] += 1.0
        inv, logdet = batched_inv_logdet(hess) if self.q <= 3 else _stack_inv_logdet(hess)
        return np.ascontiguousarray(np.moveaxis(inv, -1, 0)), logdet

    def modes(self, par: FloatArray) -> _Modes:
        """Batched Newton iteration for every patient's conditional mode, with per-patient step halving.

        Starts from the modes of the previous call (they move little between the optimizer's evaluations);
        the modes of the last ``par`` are cached.
        """
        key = par.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        lam, beta, size = self.unpack(par)
        eta_fix = self.x @ beta + self.offset
        a = self.z @ lam
        rows, cols = self.tri
        aa = a[:, rows] * a[:, cols]
        u = self._u.copy()
        g = self.g

        def pieces(uu: FloatArray) -> tuple[FloatArray, ...]:
            eta = eta_fix + np.einsum("nq,nq->n", a, uu[g])
            ll, d1, w, d3 = _family_terms(self.family, self.y, self.trials, eta, size, self.constant)
            h = -self.gsum(ll) + 0.5 * np.einsum("mq,mq->m", uu, uu)
            return ll, d1, w, d3, h

        ll, d1, w, d3, h = pieces(u)
        max_step = math.inf
        it = 0
        for it in range(1, 101):  # noqa: B007 - the count is reported
            grad = u - self.gsum(a * d1[:, None])
            hinv, _ = self._hessians(aa, w)
            step = np.einsum("mij,mj->mi", hinv, grad)
            max_step = float(np.max(np.abs(step))) if step.size else 0.0
            if not math.isfinite(max_step):
                raise FloatingPointError("the conditional modes diverged")
            if max_step < _INNER_TOL:
                break
            scale = np.ones(self.m)
            u_new, ll_n, d1_n, w_n, d3_n, h_n = u, ll, d1, w, d3, h
            for _ in range(40):  # step halving, for the patients whose h went up
                u_new = u - scale[:, None] * step
                ll_n, d1_n, w_n, d3_n, h_n = pieces(u_new)
                worse = ~(h_n <= h + 1e-12 * np.abs(h))
                if not worse.any():
                    break
                scale = np.where(worse, scale / 2.0, scale)
            u, ll, d1, w, d3, h = u_new, ll_n, d1_n, w_n, d3_n, h_n
        hinv, logdet = self._hessians(aa, w)
        self._u = u
        self.max_inner = max(self.max_inner, it)
        md = _Modes(u, a, aa, ll, d1, w, d3, hinv, logdet, h, it, max_step)
        self._cache = (key, md)
        return md

    # -- deviance ------------------------------------------------------------------------------------------
    def deviance(self, par: FloatArray) -> float:
        """``-2 log L`` (Laplace, or adaptive Gauss-Hermite when ``nagq > 1``) at ``par``."""
        self.n_evals += 1
        md = self.modes(par)
        if self.nagq == 1:
            return float(np.sum(2.0 * md.h + md.logdet))
        return float(-2.0 * np.sum(self._agq_loglik(par, md)))

    def _agq_loglik(self, par: FloatArray, md: _Modes) -> FloatArray:
        """Per-patient adaptive Gauss-Hermite log-likelihood (scalar random effect)."""
        _, beta, size = self.unpack(par)
        eta_fix = self.x @ beta + self.offset
        s = np.sqrt(md.hinv[:, 0, 0])  # conditional SD of u
        terms = np.empty((self.m, self.nagq))
        for k, (zk, lwk) in enumerate(zip(self.nodes, self.log_weights, strict=True)):  # loop over nodes
            uk = md.u[:, 0] + math.sqrt(2.0) * s * zk
            eta = eta_fix + md.a[:, 0] * uk[self.g]
            ll = _family_terms(self.family, self.y, self.trials, eta, size, self.constant)[0]
            terms[:, k] = lwk - (-self.gsum(ll) + 0.5 * uk**2)
        out = np.log(math.sqrt(2.0) * s) - 0.5 * _LOG2PI + special.logsumexp(terms, axis=1)
        return np.asarray(out, dtype=np.float64)

    def gradient(self, par: FloatArray) -> FloatArray:
        """Gradient of :meth:`deviance` (analytic for the Laplace part in ``(theta, beta)``)."""
        if self.nagq > 1:
            return self._agq_gradient(par)
        md = self.modes(par)
        g_out = np.zeros(self.n_par)
        a, d1, w, d3, hinv, u = md.a, md.d1, md.w, md.d3, md.hinv, md.u
        gi = self.g
        rows, cols = self.tri
        weights = np.where(rows == cols, 1.0, 2.0) * hinv[:, rows, cols]  # (m, n_theta)
        s = np.einsum("nt,nt->n", md.aa, weights[gi])  # a_j' H_i^-1 a_j
        c = d3 * s
        # beta: -2 X'd1 + X'c - sum_i CA_i' H_i^-1 (A'WX)_i
        ca = self.gsum(a * c[:, None])  # (m, q)
        awx = self.gsum(w[:, None, None] * a[:, :, None] * self.x[:, None, :])  # (m, q, p)
        gb = -2.0 * (self.x.T @ d1) + self.x.T @ c - np.einsum("mq,mqr,mrp->p", ca, hinv, awx)
        g_out[self.n_theta : self.n_theta + self.p] = gb
        # theta: Lambda[r, c] for each lower-triangle entry
        zd1 = self.gsum(self.z * d1[:, None])  # (m, q)
        awz = self.gsum(w[:, None, None] * a[:, :, None] * self.z[:, None, :])  # (m, q, q)
        cz = self.gsum(self.z * c[:, None])  # (m, q)
        hawz = np.einsum("mij,mjk->mik", hinv, awz)
        for t, (r, col) in enumerate(zip(*self.tri, strict=True)):  # loop over <= 6 parameters
            env = -2.0 * np.sum(u[:, col] * zd1[:, r])
            tr2 = 2.0 * np.sum(hawz[:, col, r])
            rhs = -awz[:, :, r] * u[:, col, None]
            rhs[:, col] += zd1[:, r]
            du = np.einsum("mij,mj->mi", hinv, rhs)
            third = np.sum(u[:, col] * cz[:, r]) + np.sum(ca * du)
            g_out[t] = env + tr2 + third
        if self.n_size:
            g_out[-1] = self._fd_gradient(par, [self.n_par - 1])[-1]
        return g_out

    def _agq_gradient(self, par: FloatArray) -> FloatArray:
        """Analytic gradient of the adaptive Gauss-Hermite deviance (scalar random effect).

        Notes
        -----
        With ``u_k = u + sqrt(2) s z_k`` and ``pi_k`` the normalised terms of the quadrature sum,
        ``d log L_i = ds / s - sum_k pi_k dh(u_k)``, where ``dh(u_k) = -sum_j d1_jk (d eta_jk at fixed u) +
        (u_k - sum_j d1_jk a_j) du_k``, ``du_k = du + sqrt(2) z_k ds``, ``du = -H^-1 d(grad h)``,
        ``ds = -s^3 dH / 2`` and ``dH`` the total derivative of ``H = 1 + sum_j w_j a_j^2`` (through ``a``
        and, by ``dW / d eta``, through ``eta`` including the move of ``u``). The negative-binomial size uses
        central differences.
        """
        md = self.modes(par)
        _, beta, size = self.unpack(par)
        x, z, gi = self.x, self.z[:, 0], self.g
        a, w, d1, d3, u = md.a[:, 0], md.w, md.d1, md.d3, md.u[:, 0]
        hvar = md.hinv[:, 0, 0]
        big_h, s = 1.0 / hvar, np.sqrt(hvar)
        awx = self.gsum((w * a)[:, None] * x)  # (m, p)
        zd1, awz = self.gsum(z * d1), self.gsum(w * a * z)
        du_b = -awx / big_h[:, None]
        du_l = (zd1 - awz * u) / big_h
        c = d3 * a * a
        dh_b = self.gsum(c[:, None] * (x + a[:, None] * du_b[gi]))
        dh_l = 2.0 * awz + self.gsum(c * (z * u[gi] + a * du_l[gi]))
        ds_b, ds_l = -0.5 * (s**3)[:, None] * dh_b, -0.5 * s**3 * dh_l
        eta_fix = x @ beta + self.offset
        k_n = self.nagq
        terms = np.empty((self.m, k_n))
        g_b = np.empty((self.m, k_n, self.p))
        g_l = np.empty((self.m, k_n))
        root2 = math.sqrt(2.0)
        for k, (zk, lwk) in enumerate(zip(self.nodes, self.log_weights, strict=True)):  # loop over nodes
            uk = u + root2 * s * zk
            ll, d1k, _, _ = _family_terms(
                self.family, self.y, self.trials, eta_fix + a * uk[gi], size, self.constant
            )
            terms[:, k] = lwk - (-self.gsum(ll) + 0.5 * uk**2)
            sx = self.gsum(d1k[:, None] * x)
            sz, sa = self.gsum(d1k * z), self.gsum(d1k * a)
            coef = uk - sa
            g_b[:, k] = -sx + coef[:, None] * (du_b + root2 * zk * ds_b)
            g_l[:, k] = -uk * sz + coef * (du_l + root2 * zk * ds_l)
        pi = np.exp(terms - special.logsumexp(terms, axis=1, keepdims=True))
        dlog_b = ds_b / s[:, None] - np.einsum("mk,mkp->mp", pi, g_b)
        dlog_l = ds_l / s - np.sum(pi * g_l, axis=1)
        out = np.zeros(self.n_par)
        out[0] = -2.0 * float(np.sum(dlog_l))
        out[1 : 1 + self.p] = -2.0 * np.sum(dlog_b, axis=0)
        if self.n_size:
            out[-1] = self._fd_gradient(par, [self.n_par - 1])[-1]
        return out

    def _fd_gradient(self, par: FloatArray, which: Sequence[int] | range) -> FloatArray:
        """Central differences of :meth:`deviance` in the parameters ``which``."""
        return _central_differences(self, par, which)


def _central_differences(
    eng: _Engine | _NestedEngine, par: FloatArray, which: Sequence[int] | range
) -> FloatArray:
    """Central differences of ``eng.deviance`` in the parameters ``which`` (modes restarted in place)."""
    out = np.zeros(eng.n_par)
    u_keep = eng._u.copy()
    for k in which:  # loop over parameters, not patients
        step = 1e-5 * max(1.0, abs(float(par[k])))
        up, dn = par.copy(), par.copy()
        up[k] += step
        dn[k] -= step
        eng._u = u_keep.copy()
        f_up = eng.deviance(up)
        eng._u = u_keep.copy()
        f_dn = eng.deviance(dn)
        out[k] = (f_up - f_dn) / (2.0 * step)
    eng._u = u_keep
    return out


# ---------------------------------------------------------------------------------------------------------
# two nested grouping factors: patients within clinics
# ---------------------------------------------------------------------------------------------------------
def _inv_stack(mats: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Inverses ``(k, q, q)`` and log-determinants of a stack of SPD matrices ``(k, q, q)``."""
    if mats.shape[0] == 0:
        return mats.copy(), np.zeros(0)
    q = mats.shape[1]
    if q <= 3:
        inv, logdet = batched_inv_logdet(np.ascontiguousarray(np.moveaxis(mats, 0, -1)))
        return np.ascontiguousarray(np.moveaxis(inv, -1, 0)), logdet
    inv, logdet = _stack_inv_logdet(np.moveaxis(mats, 0, -1))
    return np.ascontiguousarray(np.moveaxis(inv, -1, 0)), logdet


def _lower_triangle(q: int) -> tuple[IntArray, IntArray]:
    """lme4's order of a ``q x q`` lower triangle: column by column."""
    rows = [i for j in range(q) for i in range(j, q)]
    cols = [j for j in range(q) for _ in range(j, q)]
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


@dataclass
class _Factor:
    """The joint Hessian ``H`` of ``h`` in ``(u1, u2)``, factored by the Schur complement of the patients.

    ``H`` has one ``q1 x q1`` block ``H11_i`` per patient, one ``q2 x q2`` block ``H22_c`` per clinic and the
    coupling ``H12_i`` of each patient to its own clinic only; ``S_c = H22_c - sum_{i in c} H12_i' H11_i^-1
    H12_i`` and ``log det H = sum_i log det H11_i + sum_c log det S_c``.
    """

    h11inv: FloatArray  # (m, q1, q1)
    h12: FloatArray  # (m, q1, q2)
    p: FloatArray  # (m, q1, q2): H11_i^-1 H12_i
    sinv: FloatArray  # (C, q2, q2)
    logdet: float


@dataclass
class _NestedModes:
    """Joint conditional modes of a two-level model and the pieces at them."""

    u1: FloatArray  # (m, q1)
    u2: FloatArray  # (C, q2)
    a1: FloatArray  # (n, q1)
    a2: FloatArray  # (n, q2)
    ll: FloatArray
    d1: FloatArray
    w: FloatArray
    d3: FloatArray
    factor: _Factor
    h: FloatArray  # (C,): h restricted to each clinic and its patients
    iterations: int
    max_step: float


class _NestedEngine:
    """Laplace deviance of a GLMM with patients (``q1`` effects each) nested in clinics (``q2`` effects each).

    ``eta = X beta + offset + Z1 Lambda1 u1_i + Z2 Lambda2 u2_c``; rows sorted by clinic, then patient. The
    conditional modes come from Newton on the joint ``(u1, u2)`` with the Schur complement of the patient
    blocks (batched ``q1 x q1`` solves over all patients, a ``q2 x q2`` system per clinic), with step halving
    per clinic (``h`` is a sum of independent clinic terms). The deviance ``2 h(u) + log det H`` has an
    analytic gradient in ``(theta, beta)`` (see :meth:`gradient`); the negative-binomial size uses central
    differences.
    """

    nagq = 1

    def __init__(
        self,
        family: str,
        x: FloatArray,
        z1: FloatArray,
        g1: IntArray,
        z2: FloatArray,
        g2: IntArray,
        y: FloatArray,
        trials: FloatArray,
        offset: FloatArray,
    ) -> None:
        self.family = family
        self.x, self.z1, self.z2, self.g1, self.g2 = x, z1, z2, g1, g2
        self.y, self.trials, self.offset = y, trials, offset
        self.n, self.p = x.shape
        self.q1, self.q2 = z1.shape[1], z2.shape[1]
        self.starts1 = np.flatnonzero(np.r_[True, g1[1:] != g1[:-1]])  # first row of each patient
        self.starts2 = np.flatnonzero(np.r_[True, g2[1:] != g2[:-1]])  # first row of each clinic
        self.m, self.n_clinics = self.starts1.size, self.starts2.size
        self.pc = g2[self.starts1]  # clinic of each patient
        self.cstarts = np.flatnonzero(
            np.r_[True, self.pc[1:] != self.pc[:-1]]
        )  # first patient of each clinic
        self.constant = _constant(family, y, trials)
        self.tri1, self.tri2 = _lower_triangle(self.q1), _lower_triangle(self.q2)
        self.n_theta1, self.n_theta2 = self.tri1[0].size, self.tri2[0].size
        self.n_theta = self.n_theta1 + self.n_theta2
        self.diag = np.r_[
            np.flatnonzero(self.tri1[0] == self.tri1[1]),
            self.n_theta1 + np.flatnonzero(self.tri2[0] == self.tri2[1]),
        ]
        rms1 = np.sqrt(np.mean(z1**2, axis=0))
        rms2 = np.sqrt(np.mean(z2**2, axis=0))
        self.theta_rms = np.r_[rms1[self.tri1[0]], rms2[self.tri2[0]]]
        self.n_size = 1 if family == "negbin2" else 0
        self.n_par = self.n_theta + self.p + self.n_size
        self._u = np.zeros(self.m * self.q1 + self.n_clinics * self.q2)
        self._cache: tuple[bytes, _NestedModes] | None = None
        self.n_evals = 0
        self.max_inner = 0

    # -- parameters ----------------------------------------------------------------------------------
    def lambdas(self, par: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, float]:
        """``(Lambda1, Lambda2, beta, size)`` from ``(theta1, theta2, beta, log size)``."""
        lam1 = np.zeros((self.q1, self.q1))
        lam1[self.tri1] = par[: self.n_theta1]
        lam2 = np.zeros((self.q2, self.q2))
        lam2[self.tri2] = par[self.n_theta1 : self.n_theta]
        beta = par[self.n_theta : self.n_theta + self.p]
        size = float(np.exp(par[-1])) if self.n_size else 0.0
        return lam1, lam2, beta, size

    def unpack(self, par: FloatArray) -> tuple[FloatArray, FloatArray, float]:
        """``(Lambda, beta, size)`` with ``Lambda`` block diagonal (patients' block, then the clinics')."""
        lam1, lam2, beta, size = self.lambdas(par)
        lam = np.zeros((self.q1 + self.q2, self.q1 + self.q2))
        lam[: self.q1, : self.q1] = lam1
        lam[self.q1 :, self.q1 :] = lam2
        return lam, beta, size

    def _split(self, u: FloatArray) -> tuple[FloatArray, FloatArray]:
        k = self.m * self.q1
        return u[:k].reshape(self.m, self.q1), u[k:].reshape(self.n_clinics, self.q2)

    def sum1(self, v: FloatArray) -> FloatArray:
        """Sum over each patient's rows."""
        return np.add.reduceat(v, self.starts1, axis=0)

    def sum2(self, v: FloatArray) -> FloatArray:
        """Sum over each clinic's rows."""
        return np.add.reduceat(v, self.starts2, axis=0)

    # -- the joint Hessian --------------------------------------------------------------------------------
    def factor(self, a1: FloatArray, a2: FloatArray, w: FloatArray) -> _Factor:
        """Schur-complement factorisation of ``H = I + B' W B`` (``B`` = the rows ``[a1_j, a2_j]``)."""
        wa1 = w[:, None] * a1
        h11 = self.sum1(wa1[:, :, None] * a1[:, None, :]) + np.eye(self.q1)
        h12 = self.sum1(wa1[:, :, None] * a2[:, None, :])
        h22 = self.sum2((w[:, None] * a2)[:, :, None] * a2[:, None, :]) + np.eye(self.q2)
        h11inv, ld1 = _inv_stack(h11)
        p = np.einsum("mij,mjk->mik", h11inv, h12)
        s = h22 - np.add.reduceat(np.einsum("mji,mjk->mik", h12, p), self.cstarts, axis=0)
        sinv, ld2 = _inv_stack(s)
        return _Factor(h11inv, h12, p, sinv, float(np.sum(ld1) + np.sum(ld2)))

    def solve(self, f: _Factor, b1: FloatArray, b2: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``H^-1 (b1, b2)`` by block elimination of the patients (all patients and clinics at once)."""
        y1 = np.einsum("mij,mj->mi", f.h11inv, b1)
        r2 = b2 - np.add.reduceat(np.einsum("mij,mi->mj", f.h12, y1), self.cstarts, axis=0)
        x2 = np.einsum("cij,cj->ci", f.sinv, r2)
        x1 = y1 - np.einsum("mij,mj->mi", f.p, x2[self.pc])
        return x1, x2

    # -- conditional modes -----------------------------------------------------------------------------
    def modes(self, par: FloatArray) -> _NestedModes:
        """Joint Newton iteration for all conditional modes, with step halving per clinic (cached)."""
        key = par.tobytes()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        lam1, lam2, beta, size = self.lambdas(par)
        eta_fix = self.x @ beta + self.offset
        a1, a2 = self.z1 @ lam1, self.z2 @ lam2
        g1, g2, pc = self.g1, self.g2, self.pc
        u1, u2 = self._split(self._u.copy())

        def pieces(
            v1: FloatArray, v2: FloatArray
        ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
            eta = eta_fix + np.einsum("nq,nq->n", a1, v1[g1]) + np.einsum("nq,nq->n", a2, v2[g2])
            ll, d1, w, d3 = _family_terms(self.family, self.y, self.trials, eta, size, self.constant)
            pen1 = np.add.reduceat(0.5 * np.einsum("mq,mq->m", v1, v1), self.cstarts)
            h = -self.sum2(ll) + pen1 + 0.5 * np.einsum("cq,cq->c", v2, v2)
            return ll, d1, w, d3, h

        ll, d1, w, d3, h = pieces(u1, u2)
        max_step = math.inf
        it = 0
        for it in range(1, 101):  # noqa: B007 - the count is reported
            grad1 = u1 - self.sum1(a1 * d1[:, None])
            grad2 = u2 - self.sum2(a2 * d1[:, None])
            st1, st2 = self.solve(self.factor(a1, a2, w), grad1, grad2)
            max_step = max(float(np.max(np.abs(st1), initial=0.0)), float(np.max(np.abs(st2), initial=0.0)))
            if not math.isfinite(max_step):
                raise FloatingPointError("the conditional modes diverged")
            if max_step < _INNER_TOL:
                break
            scale = np.ones(self.n_clinics)
            n1, n2, new = u1, u2, (ll, d1, w, d3, h)
            for _ in range(40):  # step halving, for the clinics whose h went up
                n1 = u1 - scale[pc][:, None] * st1
                n2 = u2 - scale[:, None] * st2
                new = pieces(n1, n2)
                worse = ~(new[4] <= h + 1e-12 * np.abs(h))
                if not worse.any():
                    break
                scale = np.where(worse, scale / 2.0, scale)
            u1, u2 = n1, n2
            ll, d1, w, d3, h = new
        fac = self.factor(a1, a2, w)
        self._u = np.r_[u1.ravel(), u2.ravel()]
        self.max_inner = max(self.max_inner, it)
        md = _NestedModes(u1, u2, a1, a2, ll, d1, w, d3, fac, h, it, max_step)
        self._cache = (key, md)
        return md

    # -- deviance and gradient -------------------------------------------------------------------------
    def deviance(self, par: FloatArray) -> float:
        """``-2 log L`` (Laplace) at ``par``."""
        self.n_evals += 1
        md = self.modes(par)
        return float(2.0 * np.sum(md.h) + md.factor.logdet)

    def leverages(self, md: _NestedModes) -> tuple[FloatArray, FloatArray]:
        """Per row the patient and clinic parts ``v1_j, v2_j`` of ``H^-1 B_j'``."""
        f = md.factor
        pj = f.p[self.g1]  # (n, q1, q2)
        t = md.a2 - np.einsum("nij,ni->nj", pj, md.a1)
        v2 = np.einsum("nij,nj->ni", f.sinv[self.g2], t)
        v1 = np.einsum("nij,nj->ni", f.h11inv[self.g1], md.a1) - np.einsum("nij,nj->ni", pj, v2)
        return v1, v2

    def gradient(self, par: FloatArray) -> FloatArray:
        """Analytic gradient of :meth:`deviance` in ``(theta, beta)`` (central differences for the size).

        Notes
        -----
        For a parameter ``phi`` with ``e_j = d eta_j / d phi`` at fixed ``u`` and ``dB`` the derivative of
        the rows of ``B = [Z1 Lambda1, Z2 Lambda2]``: ``dD = -2 d1'e + tr(H^-1 dH)`` (envelope theorem),
        ``dH = dB' W B + B' W dB + B' diag(dW / d eta * d eta) B``, ``d eta = e + B du`` and
        ``du = H^-1 (dB' d1 - B' W e)``. With ``s_j = B_j H^-1 B_j'``, ``c_j = (dW / d eta)_j s_j`` and one
        joint solve ``r = H^-1 B' c`` (the adjoint of the move of the modes), ``dD = sum_j k_j e_j +
        sum_j d1_j dB_j r + 2 sum_j w_j dB_j H^-1 B_j'`` with ``k = -2 d1 + c - w (B r)``; for
        ``Lambda1[r, c]`` the sums are ``Z1' (k u1 + d1 r1 + 2 w v1)`` at ``(r, c)``, likewise for the
        clinics, and ``X' k`` for ``beta``.
        """
        md = self.modes(par)
        g1, g2 = self.g1, self.g2
        a1, a2, d1, w = md.a1, md.a2, md.d1, md.w
        v1, v2 = self.leverages(md)
        c = md.d3 * (np.einsum("nq,nq->n", a1, v1) + np.einsum("nq,nq->n", a2, v2))
        r1, r2 = self.solve(md.factor, self.sum1(a1 * c[:, None]), self.sum2(a2 * c[:, None]))
        br = np.einsum("nq,nq->n", a1, r1[g1]) + np.einsum("nq,nq->n", a2, r2[g2])
        k = -2.0 * d1 + c - w * br
        out = np.zeros(self.n_par)
        m1 = k[:, None] * md.u1[g1] + d1[:, None] * r1[g1] + 2.0 * w[:, None] * v1
        m2 = k[:, None] * md.u2[g2] + d1[:, None] * r2[g2] + 2.0 * w[:, None] * v2
        out[: self.n_theta1] = (self.z1.T @ m1)[self.tri1]
        out[self.n_theta1 : self.n_theta] = (self.z2.T @ m2)[self.tri2]
        out[self.n_theta : self.n_theta + self.p] = self.x.T @ k
        if self.n_size:
            out[-1] = self._fd_gradient(par, [self.n_par - 1])[-1]
        return out

    def conditional(self, par: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """``b1 = Lambda1 u1`` and ``b2 = Lambda2 u2`` with their conditional covariances (``Lambda [H^-1]
        Lambda'``, the diagonal blocks of the joint inverse)."""
        md = self.modes(par)
        lam1, lam2, _, _ = self.lambdas(par)
        f = md.factor
        psp = np.einsum("mij,mjk,mlk->mil", f.p, f.sinv[self.pc], f.p)
        cov1 = np.einsum("ij,mjk,lk->mil", lam1, f.h11inv + psp, lam1)
        cov2 = np.einsum("ij,cjk,lk->cil", lam2, f.sinv, lam2)
        return md.u1 @ lam1.T, cov1, md.u2 @ lam2.T, cov2

    def _fd_gradient(self, par: FloatArray, which: Sequence[int] | range) -> FloatArray:
        """Central differences of :meth:`deviance` in the parameters ``which``."""
        return _central_differences(self, par, which)


# ---------------------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GLMMResult(ModelResult):
    """Result of a :class:`MixedGLM` fit: the numbers a paper or a report needs, as data.

    Attributes
    ----------
    formula, family, link : str
        Model formula (as given), family and link.
    method : str
        ``"Laplace"`` or ``"adaptive Gauss-Hermite (nAGQ = k)"``.
    fixed_effects : polars.DataFrame
        ``term, estimate, se, df, t, p, ci_low, ci_high`` (``t`` is the Wald z, ``df`` is infinite).
    random_effects : polars.DataFrame
        ``group, term1, term2, variance, sd, corr`` as ``as.data.frame(VarCorr(m))``.
    loglik, deviance, aic, bic : float
        ``deviance = -2 loglik``; AIC and BIC count ``beta``, ``theta`` and the size.
    size : float or None
        Negative-binomial size ``k`` (``Var = mu + mu^2 / k``), ``None`` for other families.
    separation : SeparationCheck or None
        Binomial only: whether the fixed-effects design separates the outcome (Konis's linear program) and
        which coefficients are then infinite; a separated fit also carries a warning in ``diagnostics``.
    """

    formula: str
    family: str
    link: str
    method: str
    fixed_effects: pl.DataFrame
    random_effects: pl.DataFrame
    loglik: float
    deviance: float
    aic: float
    bic: float
    n_obs: int
    n_groups: dict[str, int]
    theta: tuple[float, ...]
    size: float | None
    diagnostics: ConvergenceDiagnostics
    separation: SeparationCheck | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Whether the optimizer's final checks passed."""
        return self.diagnostics.converged

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``fit --family ... --json`` schema)."""
        out: dict[str, Any] = {
            "model": "glmm",
            "formula": self.formula,
            "family": self.family,
            "link": self.link,
            "method": "ML",
            "approximation": self.method,
            "ddf_method": "asymptotic",
            "n_obs": self.n_obs,
            "n_groups": dict(self.n_groups),
            "fixed_effects": self.fixed_effects.to_dicts(),
            "random_effects": self.random_effects.select(RANDOM_COLUMNS).to_dicts(),
            "size": self.size,
            "loglik": self.loglik,
            "deviance": self.deviance,
            "aic": self.aic,
            "bic": self.bic,
            "theta": list(self.theta),
            "converged": self.converged,
            "diagnostics": self.diagnostics.to_dict(),
            "separation": None if self.separation is None else self.separation.to_dict(),
        }
        out.update(self.extras)
        return _clean_dict(out)


# ---------------------------------------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------------------------------------
class MixedGLM(Estimator):
    """Generalised linear mixed model for repeated binary and count outcomes, in lme4 syntax.

    Parameters
    ----------
    formula : str
        lme4 formula with one grouping factor, e.g. ``"flares ~ week + (week | patient)"``, or two nested
        ones, e.g. ``"flares ~ week + (1 | clinic) + (week | patient)"`` (the factor with more levels is the
        inner one; its codes must be unique across the outer one). For a binomial outcome with ``trials``, the
        response is the number of successes.
    family : {"binomial", "poisson", "negbin2"}
        Binomial (logit link), Poisson (log link) or negative binomial with ``Var = mu + mu^2 / k`` (log
        link, glmmTMB's ``nbinom2``).
    trials : str, optional
        Binomial only: column of the number of trials (glmer's ``cbind(successes, trials - successes)``);
        without it the response must be 0/1.
    offset : str, optional
        Column added to the linear predictor with coefficient 1, on the link scale (e.g. the log of the
        sessions completed, for a flare rate per session).
    nagq : int
        Quadrature nodes: 1 is the Laplace approximation (any number of random effects); more than 1 needs a
        single scalar random effect and one grouping factor, as glmer's ``nAGQ``.
    reference : mapping, optional
        Reference level per categorical column (treatment coding).
    level : float
        Confidence level of the intervals.

    Attributes
    ----------
    result_ : GLMMResult
    beta_, theta_ : numpy.ndarray
        Fixed effects and the lower triangle of ``Lambda`` (lme4's ``getME(m, "theta")``).
    size_ : float or None
        Negative-binomial size.
    inference_ : AsymptoticInference
        Wald z tests of linear contrasts and joint chi-squared tests.

    Notes
    -----
    ``g(E[y_ij | b_i]) = x_ij' beta + z_ij' b_i + offset_ij``, ``b_i = Lambda u_i``, ``u_i ~ N(0, I)``; see
    the module docstring for the Laplace and quadrature deviances and the optimizer.

    Validated against lme4 1.1-31 ``glmer`` (Laplace, ``nAGQ = 25``) and glmmTMB 1.1.5 ``nbinom2``
    (``tests/reference/glmm/``).
    """

    def __init__(
        self,
        formula: str,
        family: str = "binomial",
        trials: str | None = None,
        offset: str | None = None,
        nagq: int = 1,
        reference: Mapping[str, Any] | None = None,
        level: float = 0.95,
    ) -> None:
        self.formula = formula
        self.family = family
        self.trials = trials
        self.offset = offset
        self.nagq = nagq
        self.reference = reference
        self.level = level

    def _validate_params(self) -> None:
        if self.family not in FAMILIES:
            raise ModelSpecificationError(
                f"family {self.family!r} is not supported; use one of {', '.join(FAMILIES)}"
            )
        if self.trials is not None and self.family != "binomial":
            raise ModelSpecificationError("trials applies to the binomial family only")
        if isinstance(self.nagq, bool) or int(self.nagq) != self.nagq or not 1 <= self.nagq <= 100:
            raise ModelSpecificationError(f"nagq must be an integer from 1 to 100, not {self.nagq!r}")
        if not 0.0 < self.level < 1.0:
            raise ModelSpecificationError(f"level must lie in (0, 1), not {self.level}")
        formula = parse_formula(self.formula)
        self._check_random(formula)

    def _check_random(self, formula: ModelFormula) -> None:
        groups = formula.groups
        if not groups:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has no random-effects term such as (1 | patient); a GLM without "
                "random effects is statsmodels' GLM"
            )
        if len(groups) > 2:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has {len(groups)} grouping factors ({', '.join(groups)}); "
                "MixedGLM fits one grouping factor or two nested ones (patients within clinics): put the "
                "others in the fixed part"
            )
        if len(groups) == 2 and self.nagq > 1:
            raise ModelSpecificationError(
                f"nagq = {self.nagq} needs a single scalar random effect (as glmer's nAGQ); the formula has "
                f"two grouping factors ({', '.join(groups)}): use nagq = 1 (Laplace)"
            )
        for grp in groups:
            terms = [t for t in formula.random if t.group == grp]
            if len(terms) > 1:
                raise ModelSpecificationError(
                    f"formula {formula.text!r} has {len(terms)} random terms for {grp!r}; "
                    f"write them as one term, e.g. (1 + week | {grp})"
                )
        q = sum(len(t.variables) for t in formula.random)
        if self.nagq > 1 and q > 1:
            raise ModelSpecificationError(
                f"nagq = {self.nagq} needs a single scalar random effect (as glmer's nAGQ); the formula has "
                f"{q} random effects per {groups[0]}: use nagq = 1 (Laplace)"
            )

    # ------------------------------------------------------------------------------------------------
    def _prepare(self, data: FrameLike) -> pl.DataFrame:
        self.formula_ = parse_formula(self.formula)
        frame = _to_polars(data)
        extra = [c for c in (self.trials, self.offset) if c is not None]
        frame, self.n_dropped_ = complete_rows(frame, [*self.formula_.columns(), *extra], "the model")
        groups = self.formula_.groups
        counts = {g: frame[g].n_unique() for g in groups}
        # the inner factor has more levels (lme4's order of the terms: more levels first)
        group = max(groups, key=lambda g: (counts[g], -groups.index(g)))
        self.group_ = group
        self.outer_: str | None = next((g for g in groups if g != group), None)
        if self.outer_ is None:
            return frame.sort(group, maintain_order=True).with_columns(pl.col(group).rle_id().alias("__g"))
        outer = self.outer_
        pairs = frame.select(group, outer).unique()
        if pairs.height != counts[group]:
            shared = (
                pairs.group_by(group).len().filter(pl.col("len") > 1).sort(group)[group].head(3).to_list()
            )
            raise ModelSpecificationError(
                f"grouping factors {group!r} and {outer!r} are crossed, not nested: {group} {shared} "
                f"appear(s) in more than one {outer}. MixedGLM fits nested designs; give each {group} a code "
                f"unique across {outer}s, or fit crossed factors in lme4"
            )
        return frame.sort([outer, group], maintain_order=True).with_columns(
            pl.col(group).rle_id().alias("__g"), pl.col(outer).rle_id().alias("__g2")
        )

    def _check_response(self, frame: pl.DataFrame, y: FloatArray, trials: FloatArray) -> None:
        label = self.formula_.response_label
        if self.family == "binomial":
            bad = ~((y >= 0) & (y <= trials) & (y == np.round(y)))
            rule = (
                f"a whole number from 0 to the trials in {self.trials!r}"
                if self.trials
                else "0 or 1 (or give trials=COLUMN for counts of successes)"
            )
        else:
            bad = ~((y >= 0) & (y == np.round(y)))
            rule = "a whole number of events, 0 or more"
        bad |= ~np.isfinite(y)
        if self.trials is not None:
            bad |= ~((trials >= 1) & (trials == np.round(trials)))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ModelSpecificationError(
                f"response {label!r} must be {rule}: {int(bad.sum())} row(s) are not, first at data row "
                f"{int(frame['__row'][i])} (value {y[i]:g}"
                + (f", trials {trials[i]:g}" if self.trials else "")
                + ")"
            )

    def fit(self, data: FrameLike) -> Self:
        """Fit the model by maximum likelihood (Laplace or adaptive Gauss-Hermite).

        Parameters
        ----------
        data : polars.DataFrame or pandas.DataFrame
            One row per observation; rows missing a model variable are dropped and counted.

        Returns
        -------
        MixedGLM
            ``self``, fitted.

        Raises
        ------
        ModelSpecificationError
            Unknown family, bad formula or ``nagq``, unknown columns, a response outside the family's
            support, a rank-deficient design.
        """
        t0 = time.perf_counter()
        self._validate_params()
        frame = self._prepare(data)
        design, x = Design.build(self.formula_, frame, dict(self.reference or {}))
        y = design.response(frame)
        trials = (
            frame[self.trials].cast(pl.Float64).to_numpy()
            if self.trials is not None
            else np.ones(frame.height)
        )
        self._check_response(frame, y, trials)
        offset = (
            frame[self.offset].cast(pl.Float64).to_numpy()
            if self.offset is not None
            else np.zeros(frame.height)
        )
        if not np.all(np.isfinite(offset)):
            raise ModelSpecificationError(f"offset column {self.offset!r} has non-finite values")
        p = x.shape[1]
        if np.linalg.matrix_rank(x) < p:
            raise ModelSpecificationError(
                f"the fixed-effects design is rank deficient ({p} columns): some of "
                f"{', '.join(design.column_names)} are combinations of others; remove them"
            )
        term = next(t for t in self.formula_.random if t.group == self.group_)
        z = design.random_matrix(frame, term)
        if not np.all(np.isfinite(z)) or not np.all(np.isfinite(x)):
            raise ModelSpecificationError(f"a column of {self.formula!r} has non-finite values")
        g: IntArray = frame["__g"].to_numpy()
        self._levels = frame.select("__g", self.group_).unique("__g", keep="first").sort("__g")[self.group_]
        self._re_levels = [(self.group_, ["(Intercept)" if v is None else str(v) for v in term.variables])]
        engine: _Engine | _NestedEngine
        if self.outer_ is None:
            engine = _Engine(self.family, x, z, g, y, trials, offset, self.nagq)
        else:
            term2 = next(t for t in self.formula_.random if t.group == self.outer_)
            z2 = design.random_matrix(frame, term2)
            if not np.all(np.isfinite(z2)):
                raise ModelSpecificationError(f"a column of {self.formula!r} has non-finite values")
            g2: IntArray = frame["__g2"].to_numpy()
            self._levels2 = (
                frame.select("__g2", self.outer_).unique("__g2", keep="first").sort("__g2")[self.outer_]
            )
            self._re_levels.append(
                (self.outer_, ["(Intercept)" if v is None else str(v) for v in term2.variables])
            )
            engine = _NestedEngine(self.family, x, z, g, z2, g2, y, trials, offset)
        self.design_ = design
        self.column_info_ = predictor_info(design, frame)
        self.engine_ = engine
        self._re_names = [name for _, names in self._re_levels for name in names]
        self.separation_ = (
            detect_separation(x, y, trials, design.column_names) if self.family == "binomial" else None
        )
        self._optimise(engine, x, y, trials, offset)
        self._finish(time.perf_counter() - t0)
        return self

    # ------------------------------------------------------------------------------------------------
    def _start(self, x: FloatArray, y: FloatArray, trials: FloatArray, offset: FloatArray) -> FloatArray:
        """Starting values: a GLM without random effects by IRLS (beta), ``Lambda = I``, size 1."""
        if self.family == "binomial":
            mu = (y + 0.5) / (trials + 1.0)
            eta = special.logit(mu)
        else:
            eta = np.log(y + 0.1)
        beta = np.zeros(x.shape[1])
        for _ in range(25):
            if self.family == "binomial":
                p = special.expit(eta)
                w = trials * p * (1 - p)
                zt = eta - offset + (y - trials * p) / np.maximum(w, 1e-10)
            else:
                mu = np.exp(eta)
                w = mu
                zt = eta - offset + (y - mu) / np.maximum(mu, 1e-10)
            xw = x * w[:, None]
            new = np.linalg.solve(x.T @ xw + 1e-10 * np.eye(x.shape[1]), xw.T @ zt)
            done = np.max(np.abs(new - beta)) < 1e-8
            beta = new
            eta = x @ beta + offset
            if done:
                break
        eng = self.engine_
        theta = np.zeros(eng.n_theta)
        # a random-effect SD of 0.5 on the linear predictor per unit RMS of its column (lme4 starts at 1 on
        # the column's own scale, which for a slope in weeks means an SD of 1 log-unit per week)
        theta[eng.diag] = 0.5 / np.maximum(eng.theta_rms[eng.diag], 1e-12)
        parts = [theta, beta] + ([np.zeros(1)] if eng.n_size else [])
        return np.concatenate(parts)

    def _optimise(
        self,
        eng: _Engine | _NestedEngine,
        x: FloatArray,
        y: FloatArray,
        trials: FloatArray,
        offset: FloatArray,
    ) -> None:
        """The shared optimizer (``models/optimize.py``) on the deviance in ``(theta, beta)``.

        A diagonal element of ``Lambda`` at 0 is a stationary point by symmetry (its gradient vanishes even
        when the optimum is inside): the optimizer's second-order bound check sees it and restarts inward.
        """
        start = self._start(x, y, trials, offset)
        lower = np.full(eng.n_par, -np.inf)
        lower[eng.diag] = 0.0
        scale = np.ones(eng.n_par)
        scale[: eng.n_theta] = 1.0 / np.maximum(eng.theta_rms, 1e-12)
        scale[eng.n_theta : eng.n_theta + eng.p] = 1.0 / np.maximum(np.sqrt(np.mean(x**2, axis=0)), 1e-12)

        def fg(par: FloatArray) -> tuple[float, FloatArray]:
            try:
                return eng.deviance(par), eng.gradient(par)
            except FloatingPointError:  # the modes diverged far from the optimum: a step too far
                eng._u = np.zeros_like(eng._u)
                eng._cache = None
                return math.inf, np.zeros(eng.n_par)

        perturb = np.zeros(eng.n_par)
        perturb[eng.diag] = 0.1 * scale[eng.diag]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self.optimum_ = BoundedNewton(fg, lower, scale, gradient_tol=1e-5, max_restarts=2).minimise(
                start, perturb
            )
        self.par_ = self.optimum_.x

    def _finish(self, seconds: float) -> None:
        eng = self.engine_
        par = self.par_
        _, beta, size = eng.unpack(par)
        dev = eng.deviance(par)
        md = eng.modes(par)
        nt, p = eng.n_theta, eng.p
        check = self.optimum_.check
        free = check["free"]
        hess = check["hessian"]
        hf = hess[np.ix_(free, free)]
        eig: FloatArray = np.asarray(np.linalg.eigvalsh(hf) if hf.size else np.zeros(0), dtype=np.float64)
        pd = bool(eig.size == 0 or eig.min() > 0)
        # Cov(theta, beta) = 2 H^-1 over the free parameters: beta is never at a bound, so its block is always
        # there; a random-effect SD at its bound (a singular fit) is held fixed, as in lme4
        cov = np.full((eng.n_par, eng.n_par), np.nan)
        cov[np.ix_(free, free)] = np.linalg.pinv(hf / 2.0)
        vb = cov[nt : nt + p, nt : nt + p]
        names = tuple(self.design_.column_names)
        self.beta_ = beta
        self.theta_ = par[:nt]
        self.size_ = size if eng.n_size else None
        self.vcov_ = vb
        self.inference_ = AsymptoticInference(
            names=names,
            beta=beta,
            vcov_beta=vb,
            jacobian=np.zeros((0, p, p)),
            vcov_varpar=np.zeros((0, 0)),
            hessian_eigenvalues=eig,
        )
        fixed = self.inference_.contrast(np.eye(p), level=self.level, labels=list(names))
        singular = bool(np.any(par[eng.diag] < SINGULAR_TOL))
        grad = eng.gradient(par)
        gnorm = float(np.max(np.abs(grad[free]))) if free.any() else 0.0
        msgs = list(self.optimum_.messages)
        if singular:
            msgs.append("boundary (singular) fit: a random-effect SD is estimated as (nearly) zero")
        big = fixed.filter((pl.col("estimate").abs() > 10) & (pl.col("t").abs() < 0.5))
        separation = self.separation_.message() if self.separation_ is not None else None
        if separation is not None:
            msgs.append(separation)
        elif self.family == "binomial" and big.height:
            msgs.append(
                "possible complete separation: coefficient(s) "
                + ", ".join(big["term"].to_list())
                + " are large with a very large SE (the likelihood keeps rising along them)"
            )
        if self.n_dropped_:
            msgs.append(f"{self.n_dropped_} row(s) dropped for a missing model variable")
        decrement = check["decrement"]
        converged = bool((check["ok"] or (singular and decrement < 1e-5)) and md.max_step < 1e-6)
        if not converged:
            msgs.append(
                f"not converged: Newton decrement {decrement:.3g}, Hessian "
                f"{'positive definite' if pd else 'not positive definite'}"
            )
        diag = ConvergenceDiagnostics(
            optimizer="L-BFGS-B + projected Newton",
            n_evaluations=eng.n_evals,
            n_restarts=self.optimum_.restarts,
            gradient_norm=gnorm,
            hessian_positive_definite=pd,
            hessian_min_eigenvalue=float(eig.min()) if eig.size else float("nan"),
            singular=singular,
            converged=converged,
            messages=tuple(msgs),
            n_dropped_incomplete=int(self.n_dropped_),
        )
        k = eng.n_par
        method = "Laplace" if self.nagq == 1 else f"adaptive Gauss-Hermite (nAGQ = {self.nagq})"
        self.result_ = GLMMResult(
            formula=self.formula,
            family=self.family,
            link=FAMILIES[self.family],
            method=method,
            fixed_effects=fixed,
            random_effects=self._varcorr(par),
            loglik=-dev / 2.0,
            deviance=dev,
            aic=dev + 2.0 * k,
            bic=dev + k * math.log(eng.n),
            n_obs=eng.n,
            n_groups=(
                {self.group_: eng.m}
                if self.outer_ is None or not isinstance(eng, _NestedEngine)
                else {self.group_: eng.m, self.outer_: eng.n_clinics}
            ),
            theta=tuple(float(v) for v in par[:nt]),
            size=self.size_,
            diagnostics=diag,
            separation=self.separation_,
            extras={"seconds": seconds, "decrement": decrement, "inner_iterations": eng.max_inner},
        )

    def _varcorr(self, par: FloatArray) -> pl.DataFrame:
        """``VarCorr`` rows: the patients' term, then the clinics' (lme4's order)."""
        lam, _, _ = self.engine_.unpack(par)
        cov = lam @ lam.T
        rows: list[dict[str, Any]] = []
        off = 0
        for grp, names in self._re_levels:
            k = len(names)
            rows += varcorr_rows(grp, names, cov[off : off + k, off : off + k])
            off += k
        return varcorr_frame(rows)

    # ------------------------------------------------------------------------------------------------
    @property
    def variance_components(self) -> pl.DataFrame:
        """Variance components as ``as.data.frame(VarCorr(m))``."""
        self._check_fitted()
        return self.result_.random_effects

    def ratios(self, level: float | None = None) -> pl.DataFrame:
        """Fixed effects as odds ratios (binomial) or rate ratios (Poisson, negative binomial).

        Returns
        -------
        polars.DataFrame
            ``term, ratio, ci_low, ci_high, p``: ``exp`` of the estimate and of its Wald interval.
        """
        self._check_fitted()
        fe = self.inference_.contrast(
            np.eye(len(self.beta_)),
            level=self.level if level is None else level,
            labels=list(self.design_.column_names),
        )
        return fe.select(
            "term",
            pl.col("estimate").exp().alias("ratio"),
            pl.col("ci_low").exp(),
            pl.col("ci_high").exp(),
            "p",
        )

    def emmeans(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
    ) -> EmmeansResult:
        """Marginal means on the link scale (log odds, log rate) with Wald z intervals.

        See :func:`sciatica_outcomes.models.emmeans.emmeans`; :meth:`response_means` gives them on the
        response scale.
        """
        return emmeans(self, specs, by=by, at=at, level=self.level if level is None else level)

    def response_means(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
        n_nodes: int = 20,
    ) -> pl.DataFrame:
        """Marginal means on the response scale: conditional at ``b = 0`` and population-averaged.

        Returns
        -------
        polars.DataFrame
            The ``specs``/``by`` columns, ``conditional`` (``g^-1(l' beta)``, the mean of a patient whose
            random effects are 0) with its delta-method ``conditional_low/high`` (the link-scale interval
            transformed), and ``population`` (``E_b[g^-1(l' beta + z' b)]`` with ``b ~ N(0, Sigma)``, by
            Gauss-Hermite quadrature over the random effects at the grid's ``z``).

        Notes
        -----
        The population-averaged mean needs the random-effects design at the grid point: the intercept and
        the numeric random slopes take the grid's values of those predictors.
        """
        self._check_fitted()
        em = self.emmeans(specs, by=by, at=at, level=level)
        means = em.means
        inv = special.expit if self.family == "binomial" else np.exp
        eta = means["emmean"].to_numpy()
        grid = means.select([*em.specs, *em.by])
        zg = np.ones((means.height, len(self._re_names)))
        for k, name in enumerate(self._re_names):
            if name == "(Intercept)":
                continue
            if name in grid.columns and grid[name].dtype.is_numeric():
                zg[:, k] = grid[name].cast(pl.Float64).to_numpy()
            elif name in (at or {}):
                vals = list((at or {})[name])
                zg[:, k] = float(vals[0])
            else:
                info = self.column_info_.get(name)
                zg[:, k] = float(info[1]) if info is not None and info[0] == "numeric" else 0.0
        lam, _, _ = self.engine_.unpack(self.par_)
        sd = np.sqrt(np.einsum("gi,ij,gj->g", zg, lam @ lam.T, zg))  # SD of z'b at each grid point
        z_k, w_k = np.polynomial.hermite.hermgauss(n_nodes)
        pop = np.sum(w_k[None, :] * inv(eta[:, None] + math.sqrt(2.0) * sd[:, None] * z_k[None, :]), axis=1)
        pop = pop / math.sqrt(math.pi)
        return grid.with_columns(
            pl.Series("conditional", inv(eta)),
            pl.Series("conditional_low", inv(means["ci_low"].to_numpy())),
            pl.Series("conditional_high", inv(means["ci_high"].to_numpy())),
            pl.Series("population", pop),
        )

    def ranef(self, group: str | None = None) -> pl.DataFrame:
        """Conditional modes (``b = Lambda u``) with their conditional SDs, per level of one grouping factor.

        Parameters
        ----------
        group : str, optional
            The grouping factor: the patients (inner factor, the default) or, in a nested model, the clinics.
            The conditional SDs of a nested model come from the diagonal blocks of the joint ``H^-1``.

        Returns
        -------
        polars.DataFrame
            The group's levels, one column per random effect and ``sd_<effect>`` per effect.
        """
        self._check_fitted()
        eng = self.engine_
        groups = [g for g, _ in self._re_levels]
        grp = self.group_ if group is None else group
        if grp not in groups:
            raise ModelSpecificationError(
                f"group {grp!r} is not a grouping factor of the model; use one of {groups}"
            )
        names = dict(self._re_levels)[grp]
        if isinstance(eng, _NestedEngine):
            b1, cov1, b2, cov2 = eng.conditional(self.par_)
            b, cov, levels = (b1, cov1, self._levels) if grp == self.group_ else (b2, cov2, self._levels2)
        else:
            md = eng.modes(self.par_)
            lam, _, _ = eng.unpack(self.par_)
            b = md.u @ lam.T
            cov = np.einsum("ij,mjk,lk->mil", lam, md.hinv, lam)
            levels = self._group_levels()
        cols: dict[str, Any] = {grp: levels}
        for k, name in enumerate(names):
            cols[name] = b[:, k]
            cols[f"sd_{name}"] = np.sqrt(cov[:, k, k])
        return pl.DataFrame(cols)

    def _group_levels(self) -> pl.Series:
        return self._levels

    def plot(self, ax: Axes | None = None) -> Axes:
        """Forest plot of the ratios (odds or rate ratios) with their intervals, on a log axis."""
        import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

        rt = self.ratios().filter(pl.col("term") != "(Intercept)")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.4 * rt.height + 1))
        ypos = np.arange(rt.height)[::-1]
        r = rt["ratio"].to_numpy()
        ax.errorbar(
            r, ypos, xerr=[r - rt["ci_low"].to_numpy(), rt["ci_high"].to_numpy() - r], fmt="o", capsize=3
        )
        ax.axvline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(ypos, rt["term"].to_list())
        ax.set_xlabel(("odds" if self.family == "binomial" else "rate") + f" ratio ({self.level:.0%} CI)")
        return ax


def glmm_likelihood_ratio_test(small: MixedGLM, large: MixedGLM) -> LikelihoodRatioTest:
    """Likelihood-ratio test of nested GLMMs fitted to the same rows (as ``anova(m0, m1)`` of glmer).

    Parameters
    ----------
    small, large : MixedGLM
        Fitted models of the same family and approximation; ``small`` nested in ``large``.

    Returns
    -------
    LikelihoodRatioTest
        ``chi2 = 2 (l_1 - l_0)`` on the difference in parameters (``beta``, ``theta``, the size).

    Raises
    ------
    ModelSpecificationError
        Different rows, families or approximations (their log-likelihoods are not comparable).
    """
    for m in (small, large):
        m._check_fitted()
    a, b = small.result_, large.result_
    if a.n_obs != b.n_obs:
        raise ModelSpecificationError(
            f"models were fitted to different numbers of rows ({a.n_obs} vs {b.n_obs}); a likelihood-ratio "
            "test needs the same rows"
        )
    if (a.family, a.method) != (b.family, b.method):
        raise ModelSpecificationError(
            f"models differ in family or approximation ({a.family}, {a.method} vs {b.family}, {b.method}); "
            "their log-likelihoods are not comparable"
        )
    return likelihood_ratio(a.loglik, b.loglik, small.engine_.n_par, large.engine_.n_par, False)


#: fewest clinics for which the product's GLMMs add a clinic random intercept (a variance from fewer clinics
#: is barely estimable: with 2-4 clinics the patients' model is kept, as before)
MIN_CLINICS_RANDOM = 5
#: the nested model is a Laplace fit; it is used only where the Laplace approximation is adequate for the
#: data: on the patients-only model, the Laplace and the quadrature estimates of the patient SD agree within
#: this fraction of the quadrature one plus ``LAPLACE_SD_ABS`` (sparse events: Laplace overstates the SD)
LAPLACE_SD_REL = 0.1
LAPLACE_SD_ABS = 0.05


def _patient_sd(model: MixedGLM) -> float:
    return float(model.variance_components["sd"].drop_nulls()[0])


def fit_patients_in_clinics(
    fixed: str,
    patient_term: str,
    data: pl.DataFrame,
    clinic: str = "clinic_id",
    nagq: int = 9,
    **kwargs: Any,
) -> tuple[MixedGLM, bool]:
    """The product's GLMM: patients nested in clinics when there are enough clinics, else patients only.

    Parameters
    ----------
    fixed : str
        Response and fixed part, e.g. ``"flares ~ program_week"``.
    patient_term : str
        The patients' random term, e.g. ``"(1 | episode_id)"``.
    data : polars.DataFrame
        Model rows; ``clinic`` may be absent.
    clinic : str
        The clinic column.
    nagq : int
        Quadrature nodes of the patients-only model (the nested model is a Laplace fit: glmer and this
        package refuse quadrature with two grouping factors).
    **kwargs
        Passed to :class:`MixedGLM` (``family``, ``offset``, ``trials``, ``reference``, ``level``).

    Returns
    -------
    model : MixedGLM
        The fitted model.
    with_clinics : bool
        Whether it has the clinic random intercept ``(1 | clinic)``.

    Notes
    -----
    The rule: ``(1 | clinic)`` is added when (1) every row has a clinic and there are at least
    :data:`MIN_CLINICS_RANDOM` (5) clinics, and (2) the Laplace approximation the nested model needs is
    adequate for these data: with a scalar patient effect and ``nagq > 1``, the patients-only model is fitted
    both ways and the patient SDs must agree within ``LAPLACE_SD_REL`` (10%) of the quadrature SD plus
    ``LAPLACE_SD_ABS`` (0.05). With rare events (a few flares per episode) Laplace overstates the patient SD
    (1.30 against 0.00 on the synthetic cohort's flares), which would bias the population-averaged rates, so
    there the patients-only quadrature model is kept. A nested fit that fails (a design error, diverging
    modes) or does not converge also falls back to it: a report gets an answer, not a traceback.
    """
    single = MixedGLM(f"{fixed} + {patient_term}", nagq=nagq, **kwargs).fit(data)
    if not (
        clinic in data.columns
        and data[clinic].null_count() == 0
        and data[clinic].n_unique() >= MIN_CLINICS_RANDOM
    ):
        return single, False
    if single.nagq > 1:  # quadrature is only allowed for a scalar patient effect
        laplace = MixedGLM(f"{fixed} + {patient_term}", nagq=1, **kwargs).fit(data)
        sd_q = _patient_sd(single)
        if abs(_patient_sd(laplace) - sd_q) > LAPLACE_SD_REL * sd_q + LAPLACE_SD_ABS:
            return single, False
    try:
        nested = MixedGLM(f"{fixed} + (1 | {clinic}) + {patient_term}", nagq=1, **kwargs).fit(data)
    except (ModelSpecificationError, FloatingPointError, np.linalg.LinAlgError):
        return single, False
    return (nested, True) if nested.result_.converged else (single, False)
