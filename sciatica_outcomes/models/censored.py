"""Censored (Tobit) growth model: a linear mixed model for outcomes measured by tests stopped at a cap.

:class:`CensoredGrowthModel` fits ``y_ij = x_ij' beta + z_ij' b_i + e_ij`` with ``b_i ~ N(0, Sigma)``
(one block of ``q = 1`` or ``2`` random effects per patient, correlated or not) and ``e_ij ~ N(0, sigma^2)``,
where some ``y_ij`` are known only to lie at or beyond a limit: right-censored (a walking test stopped at its
30-minute cap: ``Y >= c``) or left-censored (``Y <= c``). Limits may differ per observation (a column of
caps). This is the Tobit growth model of Wang, Zhang, McArdle & Salthouse (Multivariate Behav Res 2008), as
R's ``GLMMadaptive::mixed_model(family = censored.normal())`` with per-observation limits.

Likelihood
----------
Given ``b_i`` the observations of a patient are independent. With ``b_i = L u_i`` (``L`` lower triangular,
``Sigma = L L'``, ``u_i ~ N(0, I_q)``) and ``t_ij = kappa_ij (mu_ij - c_ij) / sigma``, ``mu_ij = x_ij' beta +
z_ij' L u_i``, the negative log joint density of patient ``i`` is

``h_i(u) = sum_j rho_ij(t_ij) + n_i^obs (log sigma + log(2 pi) / 2) + u'u / 2 + q log(2 pi) / 2``

with ``rho = t^2 / 2`` for an exact value (``kappa = -1``, ``c = y``) and ``rho = -log Phi(t)`` for a censored
one (``kappa = +1`` right, ``-1`` left; ``log Phi`` by ``scipy.special.log_ndtr``, its derivatives through the
inverse Mills ratio ``lambda = phi / Phi``). ``h_i`` is strictly convex in ``u``. The marginal likelihood
``L_i = int exp(-h_i(u)) du`` is approximated by adaptive Gauss-Hermite quadrature (Pinheiro & Bates 1995;
GLMMadaptive, lme4's ``nAGQ``): the batched Newton iteration (all patients at once, step halving per patient)
gives each patient's conditional mode ``u_i`` and ``H_i = d^2 h_i / du du'``; with ``B_i = chol(H_i^-1)`` and
the tensor grid of ``nagq`` nodes ``z_k`` per dimension,

``log L_i = (q / 2) log 2 + log |B_i| + log sum_k w_k exp(|z_k|^2 - h_i(u_i + sqrt(2) B_i z_k))``.

``nagq = 1`` is the Laplace approximation. A patient without a censored value has a quadratic ``h_i``: its
Laplace term is the exact Gaussian marginal (``N(X_i beta, Z_i Sigma Z_i' + sigma^2 I)``), so only patients
with a censored value are integrated over nodes, and with no censored value at all the fit is the ML growth
model (``GrowthModel(reml=False)``).

Gradient and optimizer
----------------------
The gradient of the quadrature deviance is analytic in ``(theta, beta, log sigma)`` (``theta``: the entries of
``L``) and exact for the approximation: ``d log L_i = d log|B_i| - sum_k pi_k [dh_i(u_k) at fixed u +
grad_u h_i(u_k)' (du_i + sqrt(2) dB_i z_k)]`` (``pi_k`` the normalised terms), where the move of the mode is
``du_i = -H_i^-1 d(grad_u h_i)`` and ``dH_i`` includes the move of the mode through the third derivative of
``rho`` (as the GLMM's ``_agq_gradient``). The optimum is found by the shared
:class:`~sciatica_outcomes.models.optimize.BoundedNewton` (L-BFGS-B, then projected Newton steps on forward
differences of the analytic gradient; the diagonal of ``L`` bounded at 0), started from the naive ML growth
model. Wald z tests use the observed information (that Hessian): ``Cov = 2 H^-1``. Without censored values
the deviance is the ML growth model's, exactly.

Speed: only patients with a censored value are integrated over nodes, only their censored rows are evaluated
at the nodes (the exact rows through sufficient statistics), group sums are sparse products: 100,000 patients
(5 visits, 30 % censored, correlated intercept and slope, ``nagq = 5``: 25 nodes) fit in about 40 s of CPU.

Clinic level
------------
One grouping factor (patients) is fitted. A clinic random intercept, ``(1 | clinic_id)``, is refused with a
message: put clinic in the fixed part (``+ clinic_id``), a fixed clinic effect, which with a few clinics is
the honest choice (its patients' estimates are conditional on the clinics in the data).

Validated against an independent R implementation of the exact likelihood (``mvtnorm``'s ``dmvnorm`` for the
observed part, ``pmvnorm`` for the censored part given it, maximised by ``optim``;
``tests/reference/censored/``) and against ``GrowthModel(reml=False)`` without censoring.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import polars as pl
from scipy import optimize, sparse, special, stats

from sciatica_outcomes._typing import BoolArray, FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.base import Estimator, FrameLike, complete_rows
from sciatica_outcomes.models.emmeans import EmmeansResult, emmeans, predictor_info
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

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "CensoredDiagnostics",
    "CensoredGrowthModel",
    "CensoredResult",
    "censored_likelihood_ratio_test",
]

SINGULAR_TOL = 1e-4  # a diagonal element of L below this (relative to sigma): a boundary fit
_INNER_TOL = 1e-10  # conditional modes: max |Newton step| in u (u is on the N(0, 1) scale)
_LOG2PI = math.log(2.0 * math.pi)
_ROOT2 = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------------------------
# row terms: rho(t) and its first three derivatives
# ---------------------------------------------------------------------------------------------------------
def _rho(t: FloatArray, cens: BoolArray, third: bool = False) -> tuple[FloatArray, ...]:
    """``rho``, ``rho'``, ``rho''`` (and ``rho'''``) per row: ``t^2 / 2`` exact, ``-log Phi(t)`` censored.

    Notes
    -----
    With ``lambda = phi(t) / Phi(t)`` (computed as ``exp(log phi - log Phi)``, stable in both tails):
    ``rho' = -lambda``, ``rho'' = lambda (t + lambda)``, ``rho''' = lambda (1 - (t + lambda)(t + 2 lambda))``.
    """
    rho = 0.5 * t * t
    d1 = t.copy()
    d2 = np.ones_like(t)
    d3 = np.zeros_like(t)
    if cens.any():
        tc = t[cens]
        log_cdf = special.log_ndtr(tc)
        lam = np.exp(-0.5 * tc * tc - 0.5 * _LOG2PI - log_cdf)
        tl = tc + lam
        rho[cens] = -log_cdf
        d1[cens] = -lam
        d2[cens] = lam * tl
        if third:
            d3[cens] = lam * (1.0 - tl * (tc + 2.0 * lam))
    return (rho, d1, d2, d3) if third else (rho, d1, d2)


def _bmm(a: FloatArray, b: FloatArray) -> FloatArray:
    """Batched product of small matrices over the last two axes (a sum over the short inner axis).

    numpy's ``matmul`` spends most of its time per matrix on 2 x 2 stacks; elementwise sums are 5-10x faster.
    """
    out = a[..., :, 0, None] * b[..., None, 0, :]
    for j in range(1, a.shape[-1]):  # the inner dimension: q <= 3 (or the nodes' q)
        out = out + a[..., :, j, None] * b[..., None, j, :]
    return np.asarray(out, dtype=np.float64)


def _bmv(a: FloatArray, v: FloatArray) -> FloatArray:
    """Batched matrix-vector product ``a @ v`` over the last axis of ``a`` (short) and of ``v``."""
    out = a[..., 0] * v[..., None, 0]
    for j in range(1, a.shape[-1]):  # q <= 3
        out = out + a[..., j] * v[..., None, j]
    return np.asarray(out, dtype=np.float64)


def _indicator(index: IntArray, n_groups: int) -> sparse.csr_matrix:
    """Sparse ``(n_groups, len(index))`` 0/1 matrix: row ``i`` sums the rows whose ``index`` is ``i``."""
    n = index.size
    return sparse.csr_matrix((np.ones(n), (index, np.arange(n))), shape=(n_groups, n))


def _group_sum(indicator: sparse.csr_matrix, v: FloatArray) -> FloatArray:
    """Group sums over the first axis of ``v`` (any trailing shape) by the indicator matrix."""
    flat = v.reshape(v.shape[0], -1)
    out = np.asarray(indicator @ flat, dtype=np.float64)
    return out.reshape((indicator.shape[0], *v.shape[1:]))


def _gauss_hermite_grid(nagq: int, q: int) -> tuple[FloatArray, FloatArray]:
    """Tensor grid ``(K, q)`` of Gauss-Hermite nodes and the log of ``w_k exp(|z_k|^2)``."""
    z1, w1 = np.polynomial.hermite.hermgauss(nagq)
    grids = np.meshgrid(*([z1] * q), indexing="ij")
    wgrids = np.meshgrid(*([w1] * q), indexing="ij")
    nodes = np.stack([gr.ravel() for gr in grids], axis=1)
    logw = np.sum([np.log(wg.ravel()) for wg in wgrids], axis=0) + np.sum(nodes**2, axis=1)
    return np.asarray(nodes, dtype=np.float64), np.asarray(logw, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------------
# the likelihood engine
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Mode:
    """Conditional modes and the per-row and per-patient pieces at them."""

    u: FloatArray  # (m, q)
    t: FloatArray  # (n,)
    d1: FloatArray
    d2: FloatArray
    d3: FloatArray
    h: FloatArray  # (m,): h_i(u_i) with its constants
    hess: FloatArray  # (m, q, q)
    hinv: FloatArray  # (m, q, q)
    logdet: FloatArray  # (m,)
    max_step: float
    iterations: int


class _Engine:
    """Quadrature deviance of the censored growth model and its gradient, vectorised over patients.

    Rows are sorted by patient (``g``, ``starts``). ``kappa`` and ``c`` give ``t = kappa (mu - c) / sigma``;
    ``cens`` marks censored rows.
    """

    def __init__(
        self,
        x: FloatArray,
        z: FloatArray,
        g: IntArray,
        kappa: FloatArray,
        c: FloatArray,
        cens: BoolArray,
        tri: tuple[IntArray, IntArray],
        nagq: int,
    ) -> None:
        self.x, self.z, self.g, self.kappa, self.c, self.cens = x, z, g, kappa, c, cens
        self.n, self.p = x.shape
        self.q = z.shape[1]
        self.starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        self.m = self.starts.size
        self.tri = tri
        self.n_theta = tri[0].size
        self.diag = np.flatnonzero(tri[0] == tri[1])
        self.n_par = self.n_theta + self.p + 1
        self._sum_all = _indicator(g, self.m)
        self.n_obs_exact = self.gsum((~cens).astype(np.float64))  # (m,)
        # patients with a censored value: integrated over the nodes; the rest are exact Gaussians
        pat_cens = self.gsum(cens.astype(np.float64)) > 0
        self.pat_cens = pat_cens
        self.rows_c = np.flatnonzero(pat_cens[g])
        gc = g[self.rows_c]
        self.gc = np.asarray(np.cumsum(np.r_[True, gc[1:] != gc[:-1]]) - 1, dtype=np.int64) if gc.size else gc
        self.starts_c = np.flatnonzero(np.r_[True, gc[1:] != gc[:-1]]) if gc.size else np.zeros(0, np.int64)
        self.idx_c = np.flatnonzero(pat_cens)
        # the censored rows themselves, numbered by their patient among idx_c (each has one at least)
        self.rows_cr = np.flatnonzero(cens)
        gcr = g[self.rows_cr]
        self.gcc = np.searchsorted(self.idx_c, gcr)
        self.starts_cr = (
            np.flatnonzero(np.r_[True, gcr[1:] != gcr[:-1]]) if gcr.size else np.zeros(0, np.int64)
        )
        # group sums as products with sparse 0/1 matrices (patients x rows): 10x faster than reduceat on
        # the (rows x nodes) arrays
        self._sum_c = _indicator(self.gc, self.idx_c.size)
        self._sum_cr = _indicator(self.gcc, self.idx_c.size)
        self._u = np.zeros((self.m, self.q))
        self._cache: dict[tuple[bytes, int], tuple[float, FloatArray | None, FloatArray]] = {}
        self._mode_cache: tuple[bytes, _Mode] | None = None
        self.n_evals = 0
        self.max_inner = 0
        self.set_nagq(nagq)

    def set_nagq(self, nagq: int) -> None:
        """Use ``nagq`` nodes per dimension for the patients with a censored value."""
        self.nagq = nagq
        self.nodes, self.logw = _gauss_hermite_grid(nagq, self.q)

    # -- parameters ----------------------------------------------------------------------------------
    def unpack(self, par: FloatArray) -> tuple[FloatArray, FloatArray, float]:
        """``(L, beta, sigma)`` from ``(theta, beta, log sigma)``."""
        lam = np.zeros((self.q, self.q))
        lam[self.tri] = par[: self.n_theta]
        return lam, par[self.n_theta : self.n_theta + self.p], float(np.exp(par[-1]))

    def gsum(self, v: FloatArray) -> FloatArray:
        """Sum over each patient's rows (first axis)."""
        return _group_sum(self._sum_all, v)

    def gsum_c(self, v: FloatArray) -> FloatArray:
        """Sum over the rows of each patient with a censored value (rows ``rows_c``)."""
        return _group_sum(self._sum_c, v)

    def gsum_cr(self, v: FloatArray) -> FloatArray:
        """Sum over the censored rows of each patient with a censored value (rows ``rows_cr``)."""
        return _group_sum(self._sum_cr, v)

    # -- conditional modes -----------------------------------------------------------------------------
    def modes(self, par: FloatArray) -> _Mode:
        """Batched Newton iteration for every patient's conditional mode, with per-patient step halving."""
        key = par.tobytes()
        if self._mode_cache is not None and self._mode_cache[0] == key:
            return self._mode_cache[1]
        lam, beta, sigma = self.unpack(par)
        eta = self.x @ beta
        a = self.z @ lam
        g, kappa, c, cens, q = self.g, self.kappa, self.c, self.cens, self.q
        const = self.n_obs_exact * (math.log(sigma) + 0.5 * _LOG2PI) + 0.5 * q * _LOG2PI
        aa = (a[:, :, None] * a[:, None, :]).reshape(self.n, q * q)
        eye = np.eye(q)

        def pieces(uu: FloatArray) -> tuple[FloatArray, ...]:
            t = kappa * (eta + np.sum(a * uu[g], axis=1) - c) / sigma
            rho, d1, d2 = _rho(t, cens)
            h = self.gsum(rho) + 0.5 * np.sum(uu * uu, axis=1) + const
            return t, d1, d2, h

        def hessian(d2: FloatArray) -> FloatArray:
            return self.gsum(d2[:, None] * aa).reshape(self.m, q, q) / sigma**2 + eye

        u = self._u.copy()
        t, d1, d2, h = pieces(u)
        max_step, it = math.inf, 0
        for it in range(1, 101):  # noqa: B007 - the count is reported
            grad = self.gsum((d1 * kappa)[:, None] * a) / sigma + u
            step = np.linalg.solve(hessian(d2), grad[:, :, None])[:, :, 0]
            max_step = float(np.max(np.abs(step))) if step.size else 0.0
            if not math.isfinite(max_step):
                raise FloatingPointError("the conditional modes diverged")
            if max_step < _INNER_TOL:
                break
            scale = np.ones(self.m)
            u_new = u - step
            t_n, d1_n, d2_n, h_n = pieces(u_new)
            # a patient whose step is already below the tolerance is not halved: its h moves by rounding
            # only (h can be near 0, where a relative tolerance alone would halve it 40 times per iteration)
            moving = np.max(np.abs(step), axis=1) >= _INNER_TOL
            for _ in range(40):  # step halving, for the patients whose h went up
                worse = ~(h_n <= h + 1e-13 * np.maximum(np.abs(h), 1.0)) & moving
                if not worse.any():
                    break
                scale = np.where(worse, scale / 2.0, scale)
                u_new = u - scale[:, None] * step
                t_n, d1_n, d2_n, h_n = pieces(u_new)
            u, t, d1, d2, h = u_new, t_n, d1_n, d2_n, h_n
        _, d1, d2, d3 = _rho(t, cens, third=True)
        hess = hessian(d2)
        hinv = np.linalg.inv(hess)
        logdet = np.asarray(np.linalg.slogdet(hess)[1], dtype=np.float64)
        self._u = u
        self.max_inner = max(self.max_inner, it)
        md = _Mode(u, t, d1, d2, d3, h, hess, np.asarray(hinv, dtype=np.float64), logdet, max_step, it)
        self._mode_cache = (key, md)
        return md

    # -- deviance and gradient ------------------------------------------------------------------------
    def evaluate(self, par: FloatArray, grad: bool = True) -> tuple[float, FloatArray | None, FloatArray]:
        """``-2 log L``, its gradient (or None) and the per-patient ``log L_i`` at ``par``."""
        key = (par.tobytes(), self.nagq)
        hit = self._cache.get(key)
        if hit is not None and (hit[1] is not None or not grad):
            return hit
        self.n_evals += 1
        out = self._evaluate(par, grad)
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[key] = out
        return out

    def _evaluate(self, par: FloatArray, grad: bool) -> tuple[float, FloatArray | None, FloatArray]:
        md = self.modes(par)
        lam, _, sigma = self.unpack(par)
        q, p, nt, npar = self.q, self.p, self.n_theta, self.n_par
        x, z, g, kappa = self.x, self.z, self.g, self.kappa
        a = z @ lam
        # Laplace (exact for a patient without a censored value)
        loglik = 0.5 * q * _LOG2PI - 0.5 * md.logdet - md.h
        use_nodes = self.nagq > 1 and self.idx_c.size > 0
        if not grad:
            if use_nodes:
                loglik[self.idx_c] = self._nodes(par, md, None)[0]
            return float(-2.0 * np.sum(loglik)), None, loglik
        u_rows = md.u[g]
        rows_t, cols_t = self.tri
        # D = d t / d par at fixed u, (n, P)
        dt = np.empty((self.n, npar))
        ks = kappa / sigma
        dt[:, :nt] = ks[:, None] * z[:, rows_t] * u_rows[:, cols_t]
        dt[:, nt : nt + p] = ks[:, None] * x
        dt[:, -1] = -md.t
        # d (grad_u h) / d par at fixed u: (m, q, P)
        dgrad = ((md.d2 * ks)[:, None] * a)[:, :, None] * dt[:, None, :]
        dgrad = self.gsum(dgrad)
        zd1 = self.gsum((md.d1 * ks)[:, None] * z)  # (m, q): sum_j rho' kappa z_jr / sigma
        for k, (r, col) in enumerate(zip(rows_t, cols_t, strict=True)):  # <= 3 parameters
            dgrad[:, col, k] += zd1[:, r]
        dgrad[:, :, -1] -= self.gsum((md.d1 * ks)[:, None] * a)
        du = -_bmm(md.hinv, dgrad)  # (m, q, P)
        # dH / d par, total: (m, q, q, P)
        s2 = sigma**2
        wz = np.asarray(self.gsum((md.d2 / s2)[:, None, None] * z[:, :, None] * a[:, None, :]))
        dh_mat = np.zeros((self.m, q, q, npar))
        for k, (r, col) in enumerate(zip(rows_t, cols_t, strict=True)):  # (e_c w_r' + w_r e_c')
            dh_mat[:, col, :, k] += wz[:, r, :]
            dh_mat[:, :, col, k] += wz[:, r, :]
        dh_mat[:, :, :, -1] -= 2.0 * (md.hess - np.eye(q))
        if self.idx_c.size:  # rho''' is 0 on exact rows: the third-derivative terms over censored patients
            rc, ic = self.rows_c, self.idx_c
            ac = a[rc]
            aa = ac[:, :, None] * ac[:, None, :]  # (n_c, q, q)
            d3s = md.d3[rc] / s2
            dh_mat[ic] += self.gsum_c((d3s[:, None, None] * aa)[..., None] * dt[rc][:, None, None, :])
            # the move of the mode: sum_c du_c dH/du_c, dH/du_c = sum_j rho''' kappa a_jc / sigma^3 a_j a_j'
            gcu = self.gsum_c((d3s * ks[rc])[:, None, None, None] * ac[:, :, None, None] * aa[:, None, :, :])
            du_c = du[ic]
            for col in range(q):  # q <= 3
                dh_mat[ic] += gcu[:, col, :, :, None] * du_c[:, col, None, None, :]
        dlogdet = np.sum(md.hinv[..., None] * dh_mat, axis=(1, 2))  # tr(H^-1 dH), both symmetric
        dh_fixed = self.gsum(md.d1[:, None] * dt)  # (m, P)
        dh_fixed[:, -1] += self.n_obs_exact
        grad_u = self.gsum((md.d1 * ks)[:, None] * a) + md.u  # ~0 at the mode
        dlog = -0.5 * dlogdet - dh_fixed - np.sum(grad_u[:, :, None] * du, axis=1)
        if use_nodes:
            ll_c, dlog_c = self._nodes(par, md, (du, dh_mat))
            loglik[self.idx_c] = ll_c
            assert dlog_c is not None
            dlog[self.idx_c] = dlog_c
        return float(-2.0 * np.sum(loglik)), -2.0 * np.sum(dlog, axis=0), loglik

    def _nodes(
        self, par: FloatArray, md: _Mode, moves: tuple[FloatArray, FloatArray] | None
    ) -> tuple[FloatArray, FloatArray | None]:
        """Adaptive Gauss-Hermite ``log L_i`` (and its gradient) of the patients with a censored value.

        Notes
        -----
        The exact rows of these patients enter every node through per-patient sufficient statistics of
        ``r = y - x' beta`` (``sum r^2``, ``A'r``, ``A'A``, ``X'r``, ``X'A``, ``Z'r``, ``Z'A``,
        computed once): their part of ``h`` is the quadratic ``(r'r - 2 u'A'r + u'A'A u) / (2 sigma^2)``.
        Only the censored rows are evaluated at each node.
        """
        lam, beta, sigma = self.unpack(par)
        q, p, nt, npar = self.q, self.p, self.n_theta, self.n_par
        s2 = sigma**2
        ic, rows = self.idx_c, self.rows_c
        mc = ic.size
        # exact rows of the censored patients: sufficient statistics (weight 0 on the censored rows)
        wex = (~self.cens[rows]).astype(np.float64)
        xr_, zr_ = self.x[rows], self.z[rows]
        ar_ = zr_ @ lam
        r = wex * (self.c[rows] - xr_ @ beta)
        s0 = self.gsum_c(r * r)
        s1 = self.gsum_c(ar_ * r[:, None])  # (mc, q)
        s2m = self.gsum_c((wex[:, None, None] * ar_[:, :, None]) * ar_[:, None, :])  # (mc, q, q)
        # censored rows
        cr = self.rows_cr
        gcc = self.gcc
        xc, zc = self.x[cr], self.z[cr]
        ac = zc @ lam
        ks = self.kappa[cr] / sigma
        off = ks * (xc @ beta - self.c[cr])
        ksa = ks[:, None] * ac
        hinv = md.hinv[ic]
        bchol = np.linalg.cholesky(hinv)  # (mc, q, q): B B' = H^-1
        u0 = md.u[ic]
        n_ex = self.n_obs_exact[ic]
        const = n_ex * (math.log(sigma) + 0.5 * _LOG2PI) + 0.5 * q * _LOG2PI
        nodes = self.nodes  # (K, q)
        # u at every node of every patient, one (mc, K) array per component (contiguous, not (mc, K, q))
        uk = [
            u0[:, i, None] + _ROOT2 * sum(bchol[:, i, j, None] * nodes[None, :, j] for j in range(q))
            for i in range(q)
        ]
        quad = s0[:, None] + sum(
            uk[i] * (-2.0 * s1[:, i, None] + sum(s2m[:, i, j, None] * uk[j] for j in range(q)))
            for i in range(q)
        )  # (mc, K)
        ukg = [ui[gcc] for ui in uk]  # (n_cr, K) each
        t = off[:, None] + sum(ksa[:, i, None] * ukg[i] for i in range(q))  # (n_cr, K)
        log_cdf = special.log_ndtr(t)
        hk = quad / (2.0 * s2) - self.gsum_cr(log_cdf) + 0.5 * sum(ui * ui for ui in uk) + const[:, None]
        terms = self.logw[None, :] - hk
        logdet_b = 0.5 * np.linalg.slogdet(hinv)[1]
        lse = special.logsumexp(terms, axis=1)
        loglik = np.asarray(0.5 * q * math.log(2.0) + logdet_b + lse, dtype=np.float64)
        if moves is None:
            return loglik, None
        pi = np.exp(terms - lse[:, None])  # (mc, K): normalised terms of the quadrature sum
        du, dh_mat = moves[0][ic], moves[1][ic]
        # dB = B Phi(B^-1 dV B^-T), dV = -V dH V, Phi: lower triangle with the diagonal halved
        dh_p = np.moveaxis(dh_mat, 3, 1)  # (mc, P, q, q)
        dv = -_bmm(_bmm(hinv[:, None], dh_p), hinv[:, None])
        binv = np.linalg.inv(bchol)[:, None]
        inner = _bmm(_bmm(binv, dv), np.swapaxes(binv, 2, 3))
        low = np.tril(np.ones((q, q)), -1) + 0.5 * np.eye(q)
        db = np.moveaxis(
            _bmm(np.asarray(bchol[:, None], dtype=np.float64), inner * low), 1, 3
        )  # (mc, q, q, P)
        xr = self.gsum_c(xr_ * r[:, None])  # (mc, p)
        xa = self.gsum_c((wex[:, None, None] * xr_[:, :, None]) * ar_[:, None, :])  # (mc, p, q)
        zr = self.gsum_c(zr_ * r[:, None])
        za = self.gsum_c((wex[:, None, None] * zr_[:, :, None]) * ar_[:, None, :])  # (mc, q, q)
        # node averages with the weights pi: of u, u u', u z', z
        piu = [pi * ui for ui in uk]
        ubar = np.stack([pu.sum(axis=1) for pu in piu], axis=1)  # (mc, q)
        uu = np.stack([np.stack([np.sum(pu * uj, axis=1) for uj in uk], axis=1) for pu in piu], axis=1)
        uz = np.stack([pu @ nodes for pu in piu], axis=1)  # (mc, q, q)
        zbar = pi @ nodes
        # per censored row, node averages of rho' kappa / sigma (times u_k, times z_k)
        d1 = -np.exp(-0.5 * t * t - 0.5 * _LOG2PI - log_cdf) * ks[:, None]  # (n_cr, K)
        pd1 = pi[gcc] * d1
        d1bar = pd1.sum(axis=1)
        d1u = np.stack([np.sum(pd1 * ug, axis=1) for ug in ukg], axis=1)
        d1z = pd1 @ nodes
        rows_t, cols_t = self.tri
        out = np.empty((mc, npar))
        # sum_k pi_k dh(u_k) at fixed u
        zs = (
            self.gsum_cr(zc[:, :, None] * d1u[:, None, :])
            - (zr[:, :, None] * ubar[:, None, :] - _bmm(za, uu)) / s2
        )
        out[:, :nt] = zs[:, rows_t, cols_t]
        out[:, nt : nt + p] = self.gsum_cr(d1bar[:, None] * xc) - (xr - _bmv(xa, ubar)) / s2
        tsum = self.gsum_cr(np.sum(pd1 * t, axis=1) * sigma / self.kappa[cr])
        out[:, -1] = -tsum - np.sum(pi * quad, axis=1) / s2 + n_ex
        # sum_k pi_k grad_u h(u_k)' (du + sqrt(2) dB z_k)
        g1 = self.gsum_cr(d1bar[:, None] * ac) - (s1 - _bmv(s2m, ubar)) / s2 + ubar
        g2 = (
            self.gsum_cr(ac[:, :, None] * d1z[:, None, :])
            - (s1[:, :, None] * zbar[:, None, :] - _bmm(s2m, uz)) / s2
            + uz
        )
        out += np.sum(g1[:, :, None] * du, axis=1) + _ROOT2 * np.sum(g2[..., None] * db, axis=(1, 2))
        dlogdet = np.sum(hinv[..., None] * dh_mat, axis=(1, 2))
        return loglik, -0.5 * dlogdet - out


# ---------------------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CensoredDiagnostics(ConvergenceDiagnostics):
    """Convergence diagnostics of a censored fit, with the quadrature check and the censoring, as data.

    Attributes
    ----------
    nagq : int
        Gauss-Hermite nodes per random-effect dimension (1 = Laplace).
    n_nodes : int
        Nodes per patient with a censored value (``nagq ** q``, a tensor grid).
    nagq_check : int
        Nodes per dimension of the check evaluation (``nagq + 4``).
    loglik_check : float
        Log-likelihood at the optimum with ``nagq_check`` nodes.
    quadrature_error : float
        ``loglik_check - loglik``: the estimated error of the reported log-likelihood.
    n_censored_right, n_censored_left : int
        Rows at or beyond their upper (lower) limit.
    share_censored : float
        Share of the fitted rows that are censored.
    n_patients_censored : int
        Patients with at least one censored row (the ones integrated over the nodes).
    """

    nagq: int = 1
    n_nodes: int = 1
    nagq_check: int = 5
    loglik_check: float = math.nan
    quadrature_error: float = math.nan
    n_censored_right: int = 0
    n_censored_left: int = 0
    share_censored: float = 0.0
    n_patients_censored: int = 0


@dataclass(frozen=True)
class CensoredResult(ModelResult):
    """Result of a :class:`CensoredGrowthModel` fit: the numbers a paper or a report needs, as data.

    Attributes
    ----------
    formula : str
        Model formula as given.
    method : str
        ``"Laplace"`` or ``"adaptive Gauss-Hermite (nAGQ = k)"``.
    fixed_effects : polars.DataFrame
        ``term, estimate, se, df, t, p, ci_low, ci_high`` of the latent (uncensored) outcome; ``t`` is the
        Wald z from the observed information, ``df`` infinite.
    random_effects : polars.DataFrame
        ``group, term1, term2, variance, sd, corr`` as ``as.data.frame(VarCorr(m))``, with the residual.
    sigma : float
        Residual SD of the latent outcome.
    loglik, deviance, aic, bic : float
        Maximum log-likelihood (of the quadrature approximation), ``-2 loglik`` and the criteria counting
        ``beta``, the random-effect parameters and ``sigma``.
    diagnostics : CensoredDiagnostics
        Convergence, boundary, the quadrature error estimate and the censoring counts.
    """

    formula: str
    method: str
    fixed_effects: pl.DataFrame
    random_effects: pl.DataFrame
    sigma: float
    loglik: float
    deviance: float
    aic: float
    bic: float
    n_obs: int
    n_groups: dict[str, int]
    theta: tuple[float, ...]
    diagnostics: CensoredDiagnostics
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Whether the optimizer's final checks passed."""
        return self.diagnostics.converged

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``fit --censored-at ... --json`` schema)."""
        d = self.diagnostics
        out: dict[str, Any] = {
            "model": "censored",
            "formula": self.formula,
            "method": "ML",
            "approximation": self.method,
            "quadrature": {
                "nagq": d.nagq,
                "nodes_per_patient": d.n_nodes,
                "nagq_check": d.nagq_check,
                "loglik_check": d.loglik_check,
                "quadrature_error": d.quadrature_error,
            },
            "censoring": {
                "n_right": d.n_censored_right,
                "n_left": d.n_censored_left,
                "share": d.share_censored,
                "n_patients": d.n_patients_censored,
            },
            "ddf_method": "asymptotic",
            "n_obs": self.n_obs,
            "n_groups": dict(self.n_groups),
            "fixed_effects": self.fixed_effects.to_dicts(),
            "random_effects": self.random_effects.select(RANDOM_COLUMNS).to_dicts(),
            "sigma": self.sigma,
            "loglik": self.loglik,
            "deviance": self.deviance,
            "aic": self.aic,
            "bic": self.bic,
            "theta": list(self.theta),
            "converged": self.converged,
            "diagnostics": d.to_dict(),
        }
        out.update(self.extras)
        return _clean_dict(out)


# ---------------------------------------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------------------------------------
Limit = float | int | str | None


class CensoredGrowthModel(Estimator):
    """Growth model (linear mixed model) for an outcome censored at per-observation limits (Tobit).

    Parameters
    ----------
    formula : str
        lme4 formula with one grouping factor (patients), e.g. ``"log(walk_min) ~ week + (week | id)"``;
        uncorrelated random effects as ``(1 | id) + (0 + week | id)`` or ``(week || id)``. At most 3 random
        effects per patient.
    upper : float or str, optional
        Upper limit (right-censoring), on the scale of the response as the formula computes it: a number or a
        column of per-observation limits. A value at or beyond its limit is right-censored at the limit; a
        missing limit (null or NaN) means no censoring for that row.
    lower : float or str, optional
        Lower limit (left-censoring, e.g. 0 for a test that can end at 0), as ``upper``.
    censored : str, optional
        Boolean column marking right-censored rows explicitly (the analysis frame's ``<measure>_censored``):
        a marked row's value is its limit. Combined with ``upper``, a row is right-censored if either says so.
    nagq : int
        Gauss-Hermite nodes per random-effect dimension (a tensor grid of ``nagq ** q`` nodes around each
        patient's conditional mode); 1 is the Laplace approximation. Only patients with a censored value are
        integrated; the others contribute their exact Gaussian likelihood.
    reference : mapping, optional
        Reference level per categorical column (treatment coding).
    time : str
        Name of the time column (plots and the profile intervals of the change over time).
    level : float
        Confidence level of the intervals.

    Attributes
    ----------
    result_ : CensoredResult
    beta_ : numpy.ndarray
        Fixed effects of the latent (uncensored) outcome.
    theta_ : numpy.ndarray
        Lower triangle of ``L`` (``Sigma = L L'``, on the outcome's scale), lme4's order.
    sigma_ : float
        Residual SD.
    vcov_ : numpy.ndarray
        Covariance of ``beta_`` from the observed information.
    naive_ : GrowthModel
        The ML growth model that treats the censored values as exact (the starting point; the naive fit of a
        sensitivity analysis).
    inference_ : AsymptoticInference
        Wald z tests of linear contrasts (and :meth:`emmeans`).

    Notes
    -----
    See the module docstring for the likelihood, the quadrature, the gradient and the clinic level.
    """

    def __init__(
        self,
        formula: str,
        upper: Limit = None,
        lower: Limit = None,
        censored: str | None = None,
        nagq: int = 5,
        reference: Mapping[str, Any] | None = None,
        time: str = "week",
        level: float = 0.95,
    ) -> None:
        self.formula = formula
        self.upper = upper
        self.lower = lower
        self.censored = censored
        self.nagq = nagq
        self.reference = reference
        self.time = time
        self.level = level

    # ------------------------------------------------------------------------------------------------
    def _validate_params(self) -> None:
        nagq: object = self.nagq
        if isinstance(nagq, bool) or not isinstance(nagq, int) or not 1 <= nagq <= 50:
            raise ModelSpecificationError(f"nagq must be an integer from 1 to 50, not {self.nagq!r}")
        if not 0.0 < self.level < 1.0:
            raise ModelSpecificationError(f"level must lie in (0, 1), not {self.level}")
        for name in ("upper", "lower"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | str)):
                raise ModelSpecificationError(
                    f"{name} must be a number or a column name, not {type(value).__name__} {value!r}"
                )
            if isinstance(value, float) and math.isnan(value):
                raise ModelSpecificationError(f"{name} is NaN; leave it out (None) for no censoring")
        if self.censored is not None and not isinstance(self.censored, str):
            raise ModelSpecificationError(f"censored must be a column name, not {self.censored!r}")
        if self.upper is None and self.lower is None and self.censored is None:
            raise ModelSpecificationError(
                "no censoring given: set upper= (a cap, number or column), lower= or censored= (a boolean "
                "column); without censoring use GrowthModel(reml=False)"
            )
        self._check_random(parse_formula(self.formula))

    def _check_random(self, formula: ModelFormula) -> None:
        groups = formula.groups
        if not groups:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has no random-effects term such as (week | patient); a censored "
                "regression without random effects is a Tobit model (statsmodels' or R's censReg)"
            )
        if len(groups) > 1:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has {len(groups)} grouping factors ({', '.join(groups)}); "
                "CensoredGrowthModel fits one grouping factor (patients): model the clinic as a fixed effect "
                "(drop its random term and add the clinic column to the fixed part)"
            )
        q = sum(len(t.variables) for t in formula.random)
        if q > 3:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has {q} random effects per {groups[0]}; the quadrature takes at "
                "most 3 (intercept and slopes)"
            )

    # ------------------------------------------------------------------------------------------------
    def _limit(self, frame: pl.DataFrame, rows: IntArray, value: Limit, name: str) -> FloatArray:
        """Per-row limit (NaN = none) of the kept rows ``rows`` of ``frame``."""
        if value is None:
            return np.full(rows.size, np.nan)
        if isinstance(value, str):
            if value not in frame.columns:
                raise ModelSpecificationError(
                    f"{name} column {value!r} is not in the data; available columns: "
                    f"{', '.join(frame.columns)}"
                )
            col = frame[value]
            if not col.dtype.is_numeric():
                raise ModelSpecificationError(
                    f"{name} column {value!r} must be numeric (the limit of each row), not {col.dtype}"
                )
            out = col.cast(pl.Float64).fill_null(float("nan")).to_numpy()[rows]
            return np.asarray(out, dtype=np.float64)
        if not math.isfinite(float(value)):
            raise ModelSpecificationError(f"{name} = {value} is not a finite number")
        return np.full(rows.size, float(value))

    def _prepare(self, data: FrameLike) -> pl.DataFrame:
        self.formula_ = parse_formula(self.formula)
        frame = _to_polars(data)
        kept, self.n_dropped_ = complete_rows(frame, self.formula_.columns(), f"formula {self.formula!r}")
        rows: IntArray = kept["__row"].to_numpy().astype(np.int64)
        upper = self._limit(frame, rows, self.upper, "upper")
        lower = self._limit(frame, rows, self.lower, "lower")
        flag = np.zeros(rows.size, dtype=bool)
        if self.censored is not None:
            if self.censored not in frame.columns:
                raise ModelSpecificationError(
                    f"censored column {self.censored!r} is not in the data; available columns: "
                    f"{', '.join(frame.columns)}"
                )
            col = frame[self.censored]
            if col.dtype != pl.Boolean:
                raise ModelSpecificationError(
                    f"censored column {self.censored!r} must be boolean (true = stopped at the limit), not "
                    f"{col.dtype}"
                )
            vals = col.to_numpy()[rows]
            missing = col.is_null().to_numpy()[rows]
            if missing.any():
                raise ModelSpecificationError(
                    f"censored column {self.censored!r} is missing in {int(missing.sum())} row(s) with a "
                    "value; fill it (false = an exact value) or drop those rows"
                )
            flag = vals.astype(bool)
        group = self.formula_.groups[0]
        self.group_ = group
        kept = kept.with_columns(
            pl.Series("__upper", upper), pl.Series("__lower", lower), pl.Series("__flag", flag)
        )
        return kept.sort(group, maintain_order=True).with_columns(pl.col(group).rle_id().alias("__g"))

    def _censoring(self, frame: pl.DataFrame, y: FloatArray) -> tuple[FloatArray, FloatArray, BoolArray]:
        """``kappa``, ``c`` and the censored mask from the limits; refuses contradictory limits."""
        upper = frame["__upper"].to_numpy()
        lower = frame["__lower"].to_numpy()
        flag = frame["__flag"].to_numpy().astype(bool)
        both = np.isfinite(upper) & np.isfinite(lower) & (upper <= lower)
        if both.any():
            i = int(np.flatnonzero(both)[0])
            raise ModelSpecificationError(
                f"{int(both.sum())} row(s) have an upper limit at or below the lower limit, first at data "
                f"row {int(frame['__row'][i])} (upper {upper[i]:g}, lower {lower[i]:g}); check the limit "
                "columns"
            )
        right = flag | (np.isfinite(upper) & (y >= upper))
        left = ~right & np.isfinite(lower) & (y <= lower)
        c = np.where(flag, y, np.where(right, upper, np.where(left, lower, y)))
        kappa = np.where(right, 1.0, -1.0)
        cens = right | left
        if cens.all():
            raise UnusableInputError(
                f"all {y.size} rows are censored: the model needs exact values to estimate the residual SD"
            )
        self.n_right_, self.n_left_ = int(right.sum()), int(left.sum())
        return kappa, c, cens

    def fit(self, data: FrameLike) -> Self:
        """Fit the model by maximum likelihood (adaptive Gauss-Hermite quadrature, or Laplace).

        Parameters
        ----------
        data : polars.DataFrame or pandas.DataFrame
            One row per observation; rows missing a model variable are dropped and counted.

        Returns
        -------
        CensoredGrowthModel
            ``self``, fitted.

        Raises
        ------
        ModelSpecificationError
            Bad ``nagq``, limits, formula (more than one grouping factor), unknown columns, a rank-deficient
            design.
        UnusableInputError
            No complete row, or every row censored.
        """
        from sciatica_outcomes.models.lmm import GrowthModel, _Structure  # noqa: PLC0415 - cycle-free import

        t0 = time.perf_counter()
        self._validate_params()
        frame = self._prepare(data)
        design, x = Design.build(self.formula_, frame, dict(self.reference or {}))
        y = design.response(frame)
        if not np.all(np.isfinite(y)):
            i = int(np.flatnonzero(~np.isfinite(y))[0])
            raise ModelSpecificationError(
                f"response {self.formula_.response_label!r} is not finite in {int((~np.isfinite(y)).sum())} "
                f"row(s), first at data row {int(frame['__row'][i])}; check the transformation and the values"
            )
        p = x.shape[1]
        if np.linalg.matrix_rank(x) < p:
            raise ModelSpecificationError(
                f"the fixed-effects design is rank deficient ({p} columns): some of "
                f"{', '.join(design.column_names)} are combinations of others; remove them"
            )
        kappa, c, cens = self._censoring(frame, y)
        structure = _Structure(self.formula_)
        structure.layout(self.group_)
        spec = structure.specs[self.group_]
        z = np.column_stack([design.random_matrix(frame, t) for t, *_ in structure.term_slices])
        if not (np.all(np.isfinite(z)) and np.all(np.isfinite(x))):
            raise ModelSpecificationError(f"a column of {self.formula!r} has non-finite values")
        g: IntArray = frame["__g"].to_numpy().astype(np.int64)
        self.structure_ = structure
        self.design_ = design
        self.column_info_ = predictor_info(design, frame)
        self._levels = frame.select("__g", self.group_).unique("__g", keep="first").sort("__g")[self.group_]
        if self.time in frame.columns and frame[self.time].dtype.is_numeric():
            tt = frame[self.time].cast(pl.Float64).to_numpy()
            self._time_bounds = (float(tt.min()), float(tt.max()))
        else:
            self._time_bounds = (0.0, 1.0)
        tri = (np.asarray(spec.rows, dtype=np.int64), np.asarray(spec.cols, dtype=np.int64))
        engine = _Engine(x, z, g, kappa, c, cens, tri, int(self.nagq))
        self.engine_ = engine
        self._re_names = [
            ["(Intercept)" if v is None else str(v) for v in t.variables] for t, *_ in structure.term_slices
        ]
        # start: the naive ML growth model on the same rows (censored values at their limits)
        naive_frame = frame.drop("__row", "__upper", "__lower", "__flag", "__g")
        naive = GrowthModel(self.formula, reml=False, reference=self.reference, time=self.time).fit(
            naive_frame
        )
        self.naive_ = naive
        self._optimise(naive)
        self._finish(time.perf_counter() - t0)
        return self

    # ------------------------------------------------------------------------------------------------
    def _optimise(self, naive: Any) -> None:
        eng = self.engine_
        sigma0 = float(naive.sigma_)
        theta0 = sigma0 * np.asarray(naive.theta_, dtype=np.float64)
        theta0[eng.diag] = np.maximum(theta0[eng.diag], 0.1 * sigma0 / self._z_rms()[eng.tri[0][eng.diag]])
        start = np.concatenate([theta0, np.asarray(naive.beta_, dtype=np.float64), [math.log(sigma0)]])
        lower = np.full(eng.n_par, -np.inf)
        lower[eng.diag] = 0.0
        scale = self._scale(sigma0)
        perturb = np.zeros(eng.n_par)
        perturb[eng.diag] = 0.1 * scale[eng.diag]
        minimiser = self._minimiser(lower, scale)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self.optimum_ = minimiser.minimise(start, perturb)
        self.par_ = self.optimum_.x

    def _z_rms(self) -> FloatArray:
        return np.asarray(np.maximum(np.sqrt(np.mean(self.engine_.z**2, axis=0)), 1e-12), dtype=np.float64)

    def _scale(self, sigma0: float) -> FloatArray:
        eng = self.engine_
        scale = np.ones(eng.n_par)
        scale[: eng.n_theta] = sigma0 / self._z_rms()[eng.tri[0]]
        x_rms = np.maximum(np.sqrt(np.mean(eng.x**2, axis=0)), 1e-12)
        scale[eng.n_theta : eng.n_theta + eng.p] = sigma0 / x_rms
        return scale

    def _fg(self, par: FloatArray) -> tuple[float, FloatArray]:
        eng = self.engine_
        try:
            f, gr, _ = eng.evaluate(par)
        except (FloatingPointError, np.linalg.LinAlgError):  # far from the optimum: a step too far
            eng._u = np.zeros_like(eng._u)
            eng._mode_cache = None
            return math.inf, np.zeros(eng.n_par)
        assert gr is not None
        if not (math.isfinite(f) and np.all(np.isfinite(gr))):
            return math.inf, np.zeros(eng.n_par)
        return f, gr

    def _minimiser(self, lower: FloatArray, scale: FloatArray) -> BoundedNewton:
        return BoundedNewton(
            self._fg,
            lower,
            scale,
            gradient_tol=1e-5,
            max_restarts=2,
            hessian=lambda v: _forward_hessian(self._fg, v, scale),
        )

    def _finish(self, seconds: float) -> None:
        eng = self.engine_
        par = self.par_
        lam, beta, sigma = eng.unpack(par)
        dev = eng.evaluate(par)[0]
        md = eng.modes(par)
        nt, p = eng.n_theta, eng.p
        check = self.optimum_.check
        free = check["free"]
        hess = check["hessian"]
        hf = hess[np.ix_(free, free)]
        eig: FloatArray = np.asarray(np.linalg.eigvalsh(hf) if hf.size else np.zeros(0), dtype=np.float64)
        pd_ = bool(eig.size == 0 or eig.min() > 0)
        cov = np.full((eng.n_par, eng.n_par), np.nan)
        cov[np.ix_(free, free)] = np.linalg.pinv(hf / 2.0)
        self.cov_par_ = cov
        vb = cov[nt : nt + p, nt : nt + p]
        names = tuple(self.design_.column_names)
        self.beta_ = beta
        self.theta_ = par[:nt]
        self.sigma_ = sigma
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
        singular = bool(np.any(par[eng.diag] < SINGULAR_TOL * sigma))
        gnorm = float(check["grad_norm"])
        msgs = list(self.optimum_.messages)
        if singular:
            msgs.append("boundary (singular) fit: a random-effect SD is estimated as (nearly) zero")
        if self.n_dropped_:
            msgs.append(f"{self.n_dropped_} row(s) dropped for a missing model variable")
        decrement = float(check["decrement"])
        converged = bool((check["ok"] or (singular and decrement < 1e-5)) and md.max_step < 1e-6)
        if not converged:
            msgs.append(
                f"not converged: Newton decrement {decrement:.3g}, Hessian "
                f"{'positive definite' if pd_ else 'not positive definite'}"
            )
        # quadrature check: the log-likelihood at the optimum with nagq + 4 nodes
        nagq = int(self.nagq)
        check_nagq = nagq + 4
        eng.set_nagq(check_nagq)
        dev_check = eng.evaluate(par, grad=False)[0]
        eng.set_nagq(nagq)
        loglik = -dev / 2.0
        n_cens = self.n_right_ + self.n_left_
        diag = CensoredDiagnostics(
            optimizer="L-BFGS-B + projected Newton",
            n_evaluations=eng.n_evals,
            n_restarts=self.optimum_.restarts,
            gradient_norm=gnorm,
            hessian_positive_definite=pd_,
            hessian_min_eigenvalue=float(eig.min()) if eig.size else float("nan"),
            singular=singular,
            converged=converged,
            messages=tuple(msgs),
            n_dropped_incomplete=int(self.n_dropped_),
            fit_seconds=float(seconds),
            nagq=nagq,
            n_nodes=nagq**eng.q,
            nagq_check=check_nagq,
            loglik_check=-dev_check / 2.0,
            quadrature_error=-dev_check / 2.0 - loglik,
            n_censored_right=self.n_right_,
            n_censored_left=self.n_left_,
            share_censored=n_cens / eng.n,
            n_patients_censored=int(eng.idx_c.size),
        )
        k = eng.n_par
        method = "Laplace" if nagq == 1 else f"adaptive Gauss-Hermite (nAGQ = {nagq})"
        self.result_ = CensoredResult(
            formula=self.formula,
            method=method,
            fixed_effects=fixed,
            random_effects=self._varcorr(lam, sigma),
            sigma=sigma,
            loglik=loglik,
            deviance=dev,
            aic=dev + 2.0 * k,
            bic=dev + k * math.log(eng.n),
            n_obs=eng.n,
            n_groups={self.group_: eng.m},
            theta=tuple(float(v) for v in par[:nt]),
            diagnostics=diag,
            extras={"decrement": decrement, "inner_iterations": eng.max_inner},
        )

    def _varcorr(self, lam: FloatArray, sigma: float) -> pl.DataFrame:
        st = self.structure_
        sig = lam @ lam.T
        rows: list[dict[str, Any]] = []
        for label, (_, off, k, _ids), names in zip(
            st.group_labels(), st.term_slices, self._re_names, strict=True
        ):
            rows += varcorr_rows(label, names, sig[off : off + k, off : off + k])
        return varcorr_frame(rows, sigma)

    # ------------------------------------------------------------------------------------------------
    @property
    def variance_components(self) -> pl.DataFrame:
        """Variance components as ``as.data.frame(VarCorr(m))``, with the residual row."""
        self._check_fitted()
        return self.result_.random_effects

    def emmeans(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
    ) -> EmmeansResult:
        """Marginal means of the latent (uncensored) outcome, ``l' beta``, with Wald z intervals.

        See :func:`sciatica_outcomes.models.emmeans.emmeans`. On a log scale ``exp`` of a latent mean is the
        median of the uncensored outcome; :meth:`observed_means` gives the expected observed (capped) value.
        """
        return emmeans(self, specs, by=by, at=at, level=self.level if level is None else level)

    def _grid_z(self, grid: pl.DataFrame, at: Mapping[str, Sequence[Any]] | None) -> FloatArray:
        """Random-effects design at the grid points (intercept 1, slopes the grid's values)."""
        names = [nm for block in self._re_names for nm in block]
        zg = np.ones((grid.height, len(names)))
        for k, name in enumerate(names):
            if name == "(Intercept)":
                continue
            if name in grid.columns and grid[name].dtype.is_numeric():
                zg[:, k] = grid[name].cast(pl.Float64).to_numpy()
            elif name in (at or {}):
                zg[:, k] = float(next(iter((at or {})[name])))
            else:
                info = self.column_info_.get(name)
                zg[:, k] = float(info[1]) if info is not None and info[0] == "numeric" else 0.0
        return zg

    def observed_means(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
        upper: float | None = None,
        lower: float | None = None,
        n_nodes: int = 30,
    ) -> pl.DataFrame:
        """Latent means and the expected observed (censored) outcome ``E[min(max(Y, lower), upper)]``.

        Parameters
        ----------
        specs, by, at, level
            As :meth:`emmeans`.
        upper, lower : float, optional
            The limits of the observed outcome on the response scale; default the model's numeric ``upper`` /
            ``lower`` (a column of limits needs the value here).
        n_nodes : int
            Gauss-Hermite nodes of the integral over the random effects.

        Returns
        -------
        polars.DataFrame
            The ``specs``/``by`` columns; ``latent_mean``, ``latent_low``, ``latent_high`` (``l' beta``, Wald
            z interval: the mean of the uncensored outcome); ``expected_observed``, ``expected_observed_low``,
            ``expected_observed_high`` (the population mean of the value a test stopped at the limits
            records, ``E_b E_e [clip(l' beta + z' b + e, lower, upper)]``, by the Tobit mean given ``b`` in
            closed form and Gauss-Hermite quadrature over ``z' b ~ N(0, z' Sigma z)``; delta-method interval
            through all the parameters).

        Raises
        ------
        ModelSpecificationError
            No numeric limit given or stored.
        """
        self._check_fitted()
        hi = upper if upper is not None else (self.upper if isinstance(self.upper, int | float) else None)
        lo = lower if lower is not None else (self.lower if isinstance(self.lower, int | float) else None)
        if hi is None and lo is None:
            raise ModelSpecificationError(
                "the expected observed outcome needs a limit: give upper= (and/or lower=) on the response "
                "scale"
            )
        lev = self.level if level is None else level
        em = self.emmeans(specs, by=by, at=at, level=lev)
        means = em.means
        grid = means.select([*em.specs, *em.by])
        weights = em.weights  # (cells, p): the latent mean of a cell is weights @ beta
        zg = self._grid_z(grid, at)
        hi_v = math.inf if hi is None else float(hi)
        lo_v = -math.inf if lo is None else float(lo)
        z_k, w_k = np.polynomial.hermite.hermgauss(n_nodes)
        eng = self.engine_

        def expected(par: FloatArray) -> FloatArray:
            lam, beta, sigma = eng.unpack(par)
            mean = weights @ beta
            tau = np.sqrt(np.einsum("gi,ij,gj->g", zg, lam @ lam.T, zg))
            mu = mean[:, None] + _ROOT2 * tau[:, None] * z_k[None, :]
            val = _clipped_normal_mean(mu, sigma, lo_v, hi_v)
            return np.asarray(val @ w_k / math.sqrt(math.pi), dtype=np.float64)

        par = self.par_
        est = expected(par)
        free = np.isfinite(np.diag(self.cov_par_))
        jac = np.zeros((est.size, par.size))
        for j in np.flatnonzero(free):  # a few parameters
            step = 1e-6 * max(1.0, abs(float(par[j])))
            up, dn = par.copy(), par.copy()
            up[j] += step
            dn[j] -= step
            jac[:, j] = (expected(up) - expected(dn)) / (2.0 * step)
        cov = np.where(np.isfinite(self.cov_par_), self.cov_par_, 0.0)
        se = np.sqrt(np.einsum("gi,ij,gj->g", jac, cov, jac))
        zq = float(stats.norm.ppf(0.5 + lev / 2.0))
        return grid.with_columns(
            pl.Series("latent_mean", means["emmean"].to_numpy()),
            pl.Series("latent_low", means["ci_low"].to_numpy()),
            pl.Series("latent_high", means["ci_high"].to_numpy()),
            pl.Series("expected_observed", est),
            pl.Series("expected_observed_low", est - zq * se),
            pl.Series("expected_observed_high", est + zq * se),
        )

    # ------------------------------------------------------------------------------------------------
    def _constrained_fit(
        self, contrast: FloatArray, value: float, start: FloatArray
    ) -> tuple[float, FloatArray]:
        """Minimum deviance with ``contrast' beta = value`` and the full parameter vector there.

        ``beta = contrast value / |contrast|^2 + N delta`` with ``N`` an orthonormal basis of the contrast's
        null space: the contrast is one parameter held fixed, ``(theta, delta, log sigma)`` are refitted.
        """
        eng = self.engine_
        nt, p = eng.n_theta, eng.p
        base = contrast * value / float(contrast @ contrast)
        null = np.linalg.svd(contrast[None, :])[2][1:].T  # (p, p - 1)

        def full(v: FloatArray) -> FloatArray:
            return np.concatenate([v[:nt], base + null @ v[nt : nt + p - 1], v[-1:]])

        def fg(v: FloatArray) -> tuple[float, FloatArray]:
            f, gr = self._fg(full(v))
            return f, np.concatenate([gr[:nt], null.T @ gr[nt : nt + p], gr[-1:]])

        v0 = np.concatenate([start[:nt], null.T @ (start[nt : nt + p] - base), start[-1:]])
        scale = self._scale(self.sigma_)
        sc = np.concatenate([scale[:nt], np.full(p - 1, float(np.min(scale[nt : nt + p]))), scale[-1:]])
        lower = np.full(v0.size, -np.inf)
        lower[eng.diag] = 0.0
        # Newton steps on the information at the unconstrained optimum mapped to (theta, delta, log sigma):
        # the Hessian changes little along the profile, and no Hessian is recomputed per point
        jac = np.zeros((eng.n_par, v0.size))
        jac[:nt, :nt] = np.eye(nt)
        jac[nt : nt + p, nt : nt + p - 1] = null
        jac[-1, -1] = 1.0
        h_full = np.where(np.isfinite(self.optimum_.check["hessian"]), self.optimum_.check["hessian"], 0.0)
        h_v = jac.T @ h_full @ jac
        opt = BoundedNewton(fg, lower, sc, gradient_tol=1e-6, max_restarts=0, hessian=lambda _w: h_v)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            v = opt.newton(np.maximum(v0, lower), max_iter=40)
        return fg(v)[0], full(v)

    def profile_interval(
        self, contrast: Mapping[str, float] | Sequence[float], level: float | None = None, label: str = ""
    ) -> dict[str, Any]:
        """Profile-likelihood interval of a linear combination ``l' beta`` (a slope, a change over time).

        Parameters
        ----------
        contrast : mapping or sequence
            ``{coefficient: weight}`` or one weight per coefficient (e.g. ``{"week": 26}``: the change at week
            26 of a linear trend).
        level : float, optional
            Confidence level (default the model's).
        label : str
            Name of the combination in the result.

        Returns
        -------
        dict
            ``label, estimate, se, wald_low, wald_high, profile_low, profile_high, level``: the profile
            limits are where the signed root deviance ``sign(psi - psi_hat) sqrt(D(psi) - D_hat)``,
            ``D(psi)`` the deviance refitted with ``l' beta = psi``, equals ``-/+ z_(1 - alpha / 2)`` (root
            finding by Brent's method).
        """
        self._check_fitted()
        lev = self.level if level is None else level
        mat = self.inference_._as_matrix(dict(contrast) if isinstance(contrast, Mapping) else list(contrast))
        vec = np.asarray(mat[0], dtype=np.float64)
        est = float(vec @ self.beta_)
        se = float(math.sqrt(vec @ self.vcov_ @ vec))
        zq = float(stats.norm.ppf(0.5 + lev / 2.0))
        dev0 = self.result_.deviance
        cache: dict[float, FloatArray] = {}

        def root(psi: float) -> float:
            near = min(cache, key=lambda k: abs(k - psi)) if cache else None
            start = self.par_ if near is None else cache[near]
            dev, par = self._constrained_fit(vec, psi, start)
            cache[psi] = par
            return math.copysign(math.sqrt(max(dev - dev0, 0.0)), psi - est)

        limits = []
        for sign in (-1.0, 1.0):
            target = sign * zq
            inner, outer = est, est + sign * 1.5 * zq * se
            f_out = root(outer) - target
            for _ in range(20):  # widen until the signed root passes the target
                if sign * f_out > 0:
                    break
                inner, outer = outer, outer + sign * zq * se
                f_out = root(outer) - target
            lo_b, hi_b = sorted((inner, outer))
            limits.append(
                optimize.brentq(lambda v, t=target: root(v) - t, lo_b, hi_b, xtol=1e-8 * max(se, 1e-12))
            )
        return {
            "label": label,
            "estimate": est,
            "se": se,
            "wald_low": est - zq * se,
            "wald_high": est + zq * se,
            "profile_low": float(limits[0]),
            "profile_high": float(limits[1]),
            "level": lev,
        }

    def ranef(self) -> pl.DataFrame:
        """Conditional modes per patient (``b_i = L u_i``) with their conditional SDs (Laplace)."""
        self._check_fitted()
        eng = self.engine_
        md = eng.modes(self.par_)
        lam, _, _ = eng.unpack(self.par_)
        b = md.u @ lam.T
        cov = np.einsum("ij,mjk,lk->mil", lam, md.hinv, lam)
        cols: dict[str, Any] = {self.group_: self._levels}
        for k, name in enumerate(nm for block in self._re_names for nm in block):
            cols[name] = b[:, k]
            cols[f"sd_{name}"] = np.sqrt(cov[:, k, k])
        return pl.DataFrame(cols)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Forest plot of the fixed effects of the latent outcome with their Wald intervals."""
        self._check_fitted()
        return self.result_.plot(ax)


def _forward_hessian(
    fg: Callable[[FloatArray], tuple[float, FloatArray]], x: FloatArray, scale: FloatArray
) -> FloatArray:
    """Symmetrised forward differences of the analytic gradient, step ``1e-6 max(|x_j|, scale_j)`` (inward).

    ``P + 1`` gradient evaluations instead of the ``2 P`` of central differences; the truncation error,
    ``O(step)``, is about ``1e-6`` relative, far below what the standard errors need.
    """
    g0 = fg(x)[1]
    k = x.size
    h = np.empty((k, k))
    for j in range(k):  # k gradient evaluations (k: the few parameters)
        step = 1e-6 * max(abs(float(x[j])), float(scale[j]))
        e = np.zeros(k)
        e[j] = step
        h[j] = (fg(x + e)[1] - g0) / step
    return np.asarray(0.5 * (h + h.T), dtype=np.float64)


def _clipped_normal_mean(mu: FloatArray, sigma: float, lower: float, upper: float) -> FloatArray:
    """``E[clip(Y, lower, upper)]`` for ``Y ~ N(mu, sigma^2)`` (Tobit mean; infinite limits allowed).

    Notes
    -----
    ``lower Phi(a) + mu (Phi(b) - Phi(a)) - sigma (phi(b) - phi(a)) + upper (1 - Phi(b))`` with ``a = (lower -
    mu) / sigma``, ``b = (upper - mu) / sigma``; a term with an infinite limit is 0.
    """
    out = np.zeros_like(mu)
    cdf_hi, pdf_hi = np.ones_like(mu), np.zeros_like(mu)
    cdf_lo, pdf_lo = np.zeros_like(mu), np.zeros_like(mu)
    if math.isfinite(upper):
        b = (upper - mu) / sigma
        cdf_hi, pdf_hi = special.ndtr(b), np.exp(-0.5 * b * b) / math.sqrt(2.0 * math.pi)
        out += upper * (1.0 - cdf_hi)
    if math.isfinite(lower):
        a = (lower - mu) / sigma
        cdf_lo, pdf_lo = special.ndtr(a), np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi)
        out += lower * cdf_lo
    out += mu * (cdf_hi - cdf_lo) - sigma * (pdf_hi - pdf_lo)
    return np.asarray(out, dtype=np.float64)


def censored_likelihood_ratio_test(
    small: CensoredGrowthModel, large: CensoredGrowthModel
) -> LikelihoodRatioTest:
    """Likelihood-ratio test of nested censored growth models fitted to the same rows and limits.

    Parameters
    ----------
    small, large : CensoredGrowthModel
        Fitted with the same rows, censoring and ``nagq``; ``small`` nested in ``large`` (fewer fixed effects,
        or uncorrelated random effects inside correlated ones).

    Returns
    -------
    LikelihoodRatioTest
        ``chi2 = 2 (l_1 - l_0)`` on the difference in parameters (``beta``, ``L``, ``sigma``). A test of a
        variance at its boundary (a random slope's SD = 0) is conservative with this chi-squared reference.

    Raises
    ------
    ModelSpecificationError
        Different rows, censoring or quadrature (the log-likelihoods are not comparable).
    """
    for mdl in (small, large):
        mdl._check_fitted()
    a, b = small.result_, large.result_
    da, db = a.diagnostics, b.diagnostics
    if a.n_obs != b.n_obs or (da.n_censored_right, da.n_censored_left) != (
        db.n_censored_right,
        db.n_censored_left,
    ):
        raise ModelSpecificationError(
            f"models were fitted to different rows or censoring ({a.n_obs} rows, {da.n_censored_right} + "
            f"{da.n_censored_left} censored vs {b.n_obs}, {db.n_censored_right} + {db.n_censored_left}); a "
            "likelihood-ratio test needs the same data"
        )
    if da.nagq != db.nagq:
        raise ModelSpecificationError(
            f"models use different quadrature (nagq {da.nagq} vs {db.nagq}); refit with the same nagq"
        )
    return likelihood_ratio(a.loglik, b.loglik, small.engine_.n_par, large.engine_.n_par, False)
