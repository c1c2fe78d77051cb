"""Profiled (RE)ML deviance of a linear mixed model from per-group sufficient statistics.

The model is ``y = X beta + Z1 b1 + Z2 b2 + e`` with ``b1`` one block of ``q1`` effects per inner group
(patient), optionally ``b2`` one block of ``q2`` effects per outer group (clinic) in which the inner groups
are nested, ``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``, ``e ~ N(0, sigma^2 I)`` (Bates et al. 2015).

One vectorised pass over the rows computes, per inner group ``i``, ``Z1'Z1``, ``Z1'[X y]`` and ``Z1'Z2``,
per outer group ``Z2'Z2`` and ``Z2'[X y]``, and ``[X y]'[X y]``. Every evaluation of the deviance and of its
gradient then costs ``O(groups)`` small-matrix operations, batched over groups, independent of the number of
rows. The nested level is eliminated by blocks (Schur complements per clinic).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict, cast

import numpy as np

from sciatica_outcomes._typing import FloatArray, IntArray

__all__ = ["FixedAtTheta", "KenwardRogerBlocks", "LevelSpec", "ProfiledDeviance", "RandomEffectModes"]

_LOG2PI = float(np.log(2.0 * np.pi))


def batched_inv_logdet(a: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Inverse and log-determinant of a stack of small SPD matrices (closed forms for 1x1, 2x2, 3x3).

    Parameters
    ----------
    a : numpy.ndarray
        Shape ``(q, q, m)``: ``m`` symmetric positive definite matrices, batch axis last.

    Returns
    -------
    inv, logdet : numpy.ndarray
        Shapes ``(q, q, m)`` and ``(m,)``.

    Notes
    -----
    2x2: ``A^-1 = [[d, -b], [-b, a]] / (ad - b^2)``; 3x3: adjugate over determinant.
    """
    q = a.shape[0]
    if q == 1:
        return 1.0 / a, np.log(a[0, 0])
    if q == 2:
        p, r, s = a[0, 0], a[0, 1], a[1, 1]
        det = p * s - r * r
        inv = np.empty_like(a)
        inv[0, 0] = s / det
        inv[1, 1] = p / det
        inv[0, 1] = inv[1, 0] = -r / det
        return inv, np.log(det)
    if q == 3:
        a00, a01, a02 = a[0, 0], a[0, 1], a[0, 2]
        a11, a12, a22 = a[1, 1], a[1, 2], a[2, 2]
        c00 = a11 * a22 - a12 * a12
        c01 = a02 * a12 - a01 * a22
        c02 = a01 * a12 - a02 * a11
        c11 = a00 * a22 - a02 * a02
        c12 = a01 * a02 - a00 * a12
        c22 = a00 * a11 - a01 * a01
        det = a00 * c00 + a01 * c01 + a02 * c02
        inv = np.empty_like(a)
        inv[0, 0], inv[1, 1], inv[2, 2] = c00 / det, c11 / det, c22 / det
        inv[0, 1] = inv[1, 0] = c01 / det
        inv[0, 2] = inv[2, 0] = c02 / det
        inv[1, 2] = inv[2, 1] = c12 / det
        return inv, np.log(det)
    stack = np.moveaxis(a, -1, 0)
    chol = np.linalg.cholesky(stack)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    # numpy's stubs type linalg results as floating[Any] whatever the input; the input here is float64
    return np.moveaxis(cast("FloatArray", np.linalg.inv(stack)), 0, -1), logdet


def _bm(a: FloatArray, b: FloatArray) -> FloatArray:
    """Batched product ``(i, j, m) x (j, k, m) -> (i, k, m)`` by q^2 vectorised multiply-adds."""
    out = np.zeros((a.shape[0], b.shape[1], a.shape[2]))
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i] += a[i, j] * b[j]
    return out


def _t(a: FloatArray) -> FloatArray:
    """Batched transpose (view)."""
    return a.transpose(1, 0, 2)


def _cl(c: FloatArray, b: FloatArray) -> FloatArray:
    """Constant ``(i, j)`` matrix times batch ``(j, k, m)``."""
    out = np.zeros((c.shape[0], *b.shape[1:]))
    for i in range(c.shape[0]):
        for j in range(c.shape[1]):
            if c[i, j] != 0.0:
                out[i] += c[i, j] * b[j]
    return out


def _cr(b: FloatArray, c: FloatArray) -> FloatArray:
    """Batch ``(i, j, m)`` times constant ``(j, k)``."""
    out = np.zeros((b.shape[0], c.shape[1], b.shape[2]))
    for j in range(c.shape[0]):
        for k in range(c.shape[1]):
            if c[j, k] != 0.0:
                out[:, k] += b[:, j] * c[j, k]
    return out


def _sp(a: FloatArray, b: FloatArray) -> FloatArray:
    """``sum_m a_m b_m`` for batches ``(i, j, m)`` and ``(j, k, m)`` -> ``(i, k)`` (one GEMM per ``j``)."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for j in range(a.shape[1]):
        out += a[:, j, :] @ b[j].T
    return out


def _add_identity(a: FloatArray) -> FloatArray:
    for i in range(a.shape[0]):
        a[i, i] += 1.0
    return a


def _group_cross(g: IntArray, u: FloatArray, v: FloatArray, m: int, sym: bool = False) -> FloatArray:
    """Per-group cross products ``sum_{rows of group} u_r v_r'``, shape ``(ku, kv, m)``, by bincount."""
    ku, kv = u.shape[1], v.shape[1]
    out = np.empty((ku, kv, m))
    for a in range(ku):  # loops over the (few) columns; each bincount is one vectorised pass over rows
        for b in range(a if sym else 0, kv):
            out[a, b] = np.bincount(g, weights=u[:, a] * v[:, b], minlength=m)
            if sym:
                out[b, a] = out[a, b]
    return out


@dataclass(frozen=True)
class LevelSpec:
    """Structure of the relative covariance factor of one grouping level.

    ``rows``, ``cols`` give the positions of the free lower-triangular entries of the ``q x q`` template
    ``Lambda`` and ``index`` the position of each in the parameter vector ``theta``.
    """

    q: int
    rows: IntArray
    cols: IntArray
    index: IntArray

    def template(self, theta: FloatArray) -> FloatArray:
        """The ``q x q`` lower-triangular ``Lambda`` for ``theta``."""
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta[self.index]
        return lam

    def gather(self, grad_lambda: FloatArray, n_theta: int) -> FloatArray:
        """Gradient with respect to ``theta`` from the gradient with respect to the template entries."""
        # with weights, bincount returns float64; numpy's stubs say intp whatever the weights
        return cast(
            "FloatArray",
            np.bincount(self.index, weights=grad_lambda[self.rows, self.cols], minlength=n_theta),
        )


@dataclass(frozen=True)
class _Outer:
    """Sufficient statistics of the outer (clinic) level of a nested model."""

    level: LevelSpec
    m2: int
    parent: IntArray  # outer group of each inner group
    cstarts: IntArray  # first inner group of each outer group
    c12: FloatArray
    c22: FloatArray
    f2: FloatArray


@dataclass(frozen=True)
class _OuterState:
    """The outer level's part of one evaluation (:meth:`ProfiledDeviance._solve`)."""

    l2: FloatArray
    ainv_e: FloatArray
    scinv: FloatArray
    b2: FloatArray


@dataclass(frozen=True)
class _State:
    """One evaluation of the blocks at ``theta``, shared by the deviance, its gradient and the BLUPs."""

    l1: FloatArray
    c11l: FloatArray
    ainv: FloatArray
    b1: FloatArray
    logdet: float
    s: FloatArray
    outer: _OuterState | None


class FixedAtTheta(TypedDict):
    """What :meth:`ProfiledDeviance.fixed` returns (``state`` unless the evaluation was chunked)."""

    beta: FloatArray
    sxx_inv: FloatArray
    r2: float
    sigma: float
    state: NotRequired[_State]


class RandomEffectModes(TypedDict):
    """What :meth:`ProfiledDeviance.random_effects` returns (``b2``, ``cov2`` for nested models only)."""

    b1: FloatArray
    cov1: FloatArray
    b2: NotRequired[FloatArray]
    cov2: NotRequired[FloatArray]


class KenwardRogerBlocks(TypedDict):
    """What :meth:`ProfiledDeviance.kenward_roger_blocks` returns (``k`` covariance parameters).

    With ``V = sum_a gamma_a G_a``: ``phi_inv = X' V^-1 X``, ``p_mats[a] = -X' V^-1 G_a V^-1 X``,
    ``q_mats[a, b] = X' V^-1 G_a V^-1 G_b V^-1 X`` and ``ktrace[a, b] = tr(V^-1 G_a V^-1 G_b)``.
    """

    phi_inv: FloatArray
    p_mats: FloatArray
    q_mats: FloatArray
    ktrace: FloatArray


class ProfiledDeviance:
    """Sufficient statistics of one model and its profiled deviance as a function of ``theta``.

    A single-level model with more than ``chunk_size`` patients evaluates the deviance and its gradient in
    blocks of ``chunk_size`` patients (sums accumulated; the gradient's blocks recomputed once ``S`` is
    known), so the temporaries of an evaluation stay bounded whatever the number of patients.

    Parameters
    ----------
    x : numpy.ndarray
        Fixed-effects design, ``(n, p)``.
    y : numpy.ndarray
        Response, ``(n,)``.
    z1 : numpy.ndarray
        Random-effects columns of the inner level, ``(n, q1)``.
    g1 : numpy.ndarray
        Inner group index of each row, ``0 .. n1 - 1``.
    level1 : LevelSpec
        Template structure of the inner level.
    z2, g2, level2 : optional
        The same for the outer level; ``parent[i]`` (the outer group of inner group ``i``) is derived
        and must be unique (nesting), which the caller checks.

    Notes
    -----
    With ``A = I + Lambda' Z'Z Lambda`` and ``S = W'W - W'Z Lambda A^{-1} Lambda' Z'W`` for ``W = [X y]``,
    ``S`` partitions into ``S_XX = R_X'R_X``, ``beta = S_XX^{-1} S_Xy`` and the penalised residual sum of
    squares ``r^2 = S_yy - S_yX beta``. The profiled deviances are

    ``d_ML = log|A| + n (1 + log(2 pi r^2 / n))`` and
    ``d_REML = log|A| + log|S_XX| + (n - p) (1 + log(2 pi r^2 / (n - p)))``.

    For any smooth ``phi(S)`` with ``Psi = d phi / d S`` the gradient with respect to the full ``Lambda`` is
    ``2 [Z'Z Lambda (A^{-1} + B Psi B') - Z'W Psi B']`` with ``B = A^{-1} Lambda' Z'W``; the gradient for
    a template entry is the sum over its diagonal blocks. For the nested level the blocks of ``A^{-1}`` and
    ``B`` come from the Schur complement per clinic ``S_c = H_c - sum_i E_i' A_i^{-1} E_i``.

    Validated against lme4 1.1-31 ``getME(m, "devfun")(theta)`` and ``REMLcrit(m)``
    (``tests/models/test_engine.py``, ``tests/reference/lmm``).
    """

    #: patients per block of a chunked evaluation (single-level models above this size)
    chunk_size: int = 1 << 18

    def __init__(
        self,
        x: FloatArray,
        y: FloatArray,
        z1: FloatArray,
        g1: IntArray,
        level1: LevelSpec,
        z2: FloatArray | None = None,
        g2: IntArray | None = None,
        level2: LevelSpec | None = None,
    ) -> None:
        n, p = x.shape
        self.n, self.p = n, p
        self.level1, self.level2 = level1, level2
        self.n_theta = int(level1.index.max()) + 1
        if level2 is not None:
            self.n_theta = max(self.n_theta, int(level2.index.max()) + 1)
        w = np.column_stack([x, y])
        self.d = p + 1
        m1 = int(g1.max()) + 1
        self.m1 = m1
        self.c11 = _group_cross(g1, z1, z1, m1, sym=True)
        self.f1 = _group_cross(g1, z1, w, m1)
        self.wtw = w.T @ w
        self.nested = z2 is not None
        self._outer: _Outer | None = None
        if z2 is not None:
            if g2 is None or level2 is None:
                raise ValueError("a nested model needs the outer group index g2 and its level2 with z2")
            m2 = int(g2.max()) + 1
            parent = np.zeros(m1, dtype=np.int64)
            parent[g1] = g2
            order_ok = np.all(np.diff(parent) >= 0)
            if not order_ok:
                raise ValueError("inner groups must be numbered in order of their outer group")
            self._outer = _Outer(
                level=level2,
                m2=m2,
                parent=parent,
                cstarts=np.flatnonzero(np.r_[True, np.diff(parent) != 0]),
                c12=_group_cross(g1, z1, z2, m1),
                c22=_group_cross(g2, z2, z2, m2, sym=True),
                f2=_group_cross(g2, z2, w, m2),
            )
        self.n_evals = 0

    @classmethod
    def from_statistics(
        cls,
        n: int,
        c11: FloatArray,
        f1: FloatArray,
        wtw: FloatArray,
        level1: LevelSpec,
        nested: tuple[LevelSpec, IntArray, FloatArray, FloatArray, FloatArray] | None = None,
    ) -> ProfiledDeviance:
        """The engine from sufficient statistics computed elsewhere (e.g. by SQL, no rows in memory).

        Parameters
        ----------
        n : int
            Number of rows.
        c11, f1 : numpy.ndarray
            Per inner group ``Z1'Z1`` ``(q1, q1, m1)`` and ``Z1'[X y]`` ``(q1, p + 1, m1)``.
        wtw : numpy.ndarray
            ``[X y]'[X y]``, ``(p + 1, p + 1)``.
        level1 : LevelSpec
            Template structure of the inner level.
        nested : tuple, optional
            ``(level2, parent, c12, c22, f2)`` for patients nested in clinics: the outer level's template,
            the outer group of each inner group (non-decreasing), per inner group ``Z1'Z2`` ``(q1, q2,
            m1)``, per outer group ``Z2'Z2`` ``(q2, q2, m2)`` and ``Z2'[X y]`` ``(q2, p + 1, m2)``.

        Returns
        -------
        ProfiledDeviance
            The same engine as the constructor builds from the rows with these statistics (Kenward-Roger
            of a nested model, which needs the rows, excepted).
        """
        self = cls.__new__(cls)
        d = wtw.shape[0]
        self.n, self.p, self.d = int(n), d - 1, d
        self.level1 = level1
        self.n_theta = int(level1.index.max()) + 1
        self.m1 = c11.shape[-1]
        self.c11, self.f1, self.wtw = c11, f1, wtw
        self.nested = nested is not None
        self._outer = None
        self.level2 = None
        if nested is not None:
            level2, parent, c12, c22, f2 = nested
            if not np.all(np.diff(parent) >= 0):
                raise ValueError("inner groups must be numbered in order of their outer group")
            self.level2 = level2
            self.n_theta = max(self.n_theta, int(level2.index.max()) + 1)
            self._outer = _Outer(
                level=level2,
                m2=c22.shape[-1],
                parent=parent,
                cstarts=np.flatnonzero(np.r_[True, np.diff(parent) != 0]),
                c12=c12,
                c22=c22,
                f2=f2,
            )
        self.n_evals = 0
        return self

    # ---------------------------------------------------------------------------------------------
    def _solve(self, theta: FloatArray) -> _State:
        self.n_evals += 1
        l1 = self.level1.template(theta)
        c11l = _cr(self.c11, l1)  # (q1, q1, m1): C Lambda
        a = _add_identity(_cl(l1.T, c11l))
        ainv, logdet_blocks = batched_inv_logdet(a)
        g1 = _cl(l1.T, self.f1)  # (q1, d, m1)
        b1 = _bm(ainv, g1)
        s = self.wtw - _sp(_t(g1), b1)
        logdet = float(logdet_blocks.sum())
        outer_state = None
        if self._outer is not None:
            o = self._outer
            l2 = o.level.template(theta)
            e = _cl(l1.T, _cr(o.c12, l2))  # (q1, q2, m1)
            ainv_e = _bm(ainv, e)
            cs = o.cstarts
            h = _add_identity(_cl(l2.T, _cr(o.c22, l2)))
            sc = h - np.add.reduceat(_bm(_t(e), ainv_e), cs, axis=-1)
            scinv, ldc = batched_inv_logdet(sc)
            g2 = _cl(l2.T, o.f2)
            gt = g2 - np.add.reduceat(_bm(_t(ainv_e), g1), cs, axis=-1)
            b2 = _bm(scinv, gt)  # (q2, d, m2)
            s = s - _sp(_t(gt), b2)
            b1 = _bm(ainv, g1 - _bm(e, b2[:, :, o.parent]))
            logdet += float(ldc.sum())
            outer_state = _OuterState(l2=l2, ainv_e=ainv_e, scinv=scinv, b2=b2)
        return _State(l1=l1, c11l=c11l, ainv=ainv, b1=b1, logdet=logdet, s=0.5 * (s + s.T), outer=outer_state)

    def _grad_lambda(self, st: _State, psi: FloatArray) -> FloatArray:
        """Gradient of ``log|A| + phi(S)`` with respect to ``theta`` given ``Psi = d phi / d S``."""
        l1, ainv, b1 = st.l1, st.ainv, st.b1
        bpsi1 = _cr(b1, psi)  # (q1, d, m1)
        if self._outer is None or st.outer is None:
            m = ainv + _bm(bpsi1, _t(b1))
            g_l1 = 2.0 * (_sp(st.c11l, m) - _sp(self.f1, _t(bpsi1)))
            return self.level1.gather(g_l1, self.n_theta)
        o = self._outer
        l2, ainv_e, scinv, b2 = st.outer.l2, st.outer.ainv_e, st.outer.scinv, st.outer.b2
        par = o.parent
        # inverse blocks: A_ii = Ainv + Ainv E S^-1 E' Ainv ; A_ic = -Ainv E S^-1
        a_ic = -_bm(ainv_e, scinv[:, :, par])  # (q1, q2, m1)
        a_ii = ainv - _bm(a_ic, _t(ainv_e))
        bpsi2 = _cr(b2, psi)  # (q2, d, m2)
        m_ii = a_ii + _bm(bpsi1, _t(b1))
        m_ci = _t(a_ic) + _bm(bpsi2[:, :, par], _t(b1))  # (q2, q1, m1)
        g_l1 = 2.0 * (_sp(st.c11l, m_ii) + _sp(_cr(o.c12, l2), m_ci) - _sp(self.f1, _t(bpsi1)))
        m_cc = scinv + _bm(bpsi2, _t(b2))
        m_ic = a_ic + _bm(bpsi1, _t(b2[:, :, par]))  # (q1, q2, m1)
        g_l2 = 2.0 * (_sp(_cr(o.c22, l2), m_cc) + _sp(_cr(_t(o.c12), l1), m_ic) - _sp(o.f2, _t(bpsi2)))
        return self.level1.gather(g_l1, self.n_theta) + o.level.gather(g_l2, self.n_theta)

    # ---------------------------------------------------------------------------------------------
    def _pieces(self, s: FloatArray) -> tuple[FloatArray, FloatArray, float, float]:
        p = self.p
        sxx = s[:p, :p]
        chol = np.linalg.cholesky(sxx)
        ld_x = 2.0 * float(np.log(np.diag(chol)).sum())
        sxx_inv = cast("FloatArray", np.linalg.inv(sxx))  # float64 in, float64 out (stubs say floating)
        beta = sxx_inv @ s[:p, p]
        r2 = float(s[p, p] - s[p, :p] @ beta)
        return sxx_inv, beta, r2, ld_x

    def _chunked(self) -> bool:
        return self._outer is None and self.m1 > self.chunk_size

    def _slices(self) -> list[slice]:
        c = max(int(self.chunk_size), 1)
        return [slice(i, min(i + c, self.m1)) for i in range(0, self.m1, c)]

    def _block(
        self, l1: FloatArray, sl: slice
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """``C Lambda``, ``A^-1``, ``log|A|``, ``G`` and ``B`` of the patients ``sl`` (as :meth:`_solve`)."""
        c11l = _cr(self.c11[:, :, sl], l1)
        ainv, logdet = batched_inv_logdet(_add_identity(_cl(l1.T, c11l)))
        g1 = _cl(l1.T, self.f1[:, :, sl])
        return c11l, ainv, logdet, g1, _bm(ainv, g1)

    def _s_logdet(self, theta: FloatArray) -> tuple[FloatArray, float]:
        """``S`` and ``log|A|`` at ``theta``: from :meth:`_solve`, or block by block for large models."""
        if not self._chunked():
            st = self._solve(theta)
            return st.s, st.logdet
        self.n_evals += 1
        l1 = self.level1.template(theta)
        s = self.wtw.copy()
        logdet = 0.0
        for sl in self._slices():  # a loop over blocks of patients (bounded memory), vectorised inside
            _, _, ld, g1, b1 = self._block(l1, sl)
            s -= _sp(_t(g1), b1)
            logdet += float(ld.sum())
        return 0.5 * (s + s.T), logdet

    def _gradient(self, theta: FloatArray, psi: FloatArray, st: _State | None) -> FloatArray:
        """:meth:`_grad_lambda`, block by block when the model is chunked (``st`` is then ``None``)."""
        if st is not None:
            return self._grad_lambda(st, psi)
        l1 = self.level1.template(theta)
        g = np.zeros(self.n_theta)
        for sl in self._slices():
            c11l, ainv, _, _, b1 = self._block(l1, sl)
            bpsi1 = _cr(b1, psi)
            m = ainv + _bm(bpsi1, _t(b1))
            g_l1 = 2.0 * (_sp(c11l, m) - _sp(self.f1[:, :, sl], _t(bpsi1)))
            g += self.level1.gather(g_l1, self.n_theta)
        return g

    def _evaluate(self, theta: FloatArray) -> tuple[FloatArray, float, _State | None]:
        if self._chunked():
            s, logdet = self._s_logdet(theta)
            return s, logdet, None
        st = self._solve(theta)
        return st.s, st.logdet, st

    def deviance(self, theta: FloatArray, reml: bool, grad: bool = False) -> tuple[float, FloatArray | None]:
        """Profiled REML or ML deviance at ``theta`` and, if asked, its gradient."""
        s, logdet, st = self._evaluate(theta)
        try:
            sxx_inv, beta, r2, ld_x = self._pieces(s)
        except np.linalg.LinAlgError:
            return np.inf, (np.full(self.n_theta, np.nan) if grad else None)
        nu = self.n - self.p if reml else self.n
        dev = logdet + nu * (1.0 + np.log(2.0 * np.pi * r2 / nu))
        if reml:
            dev += ld_x
        if not grad:
            return float(dev), None
        v = np.r_[-beta, 1.0]
        psi = (nu / r2) * np.outer(v, v)
        if reml:
            psi[: self.p, : self.p] += sxx_inv
        return float(dev), self._gradient(theta, psi, st)

    def deviance_vp(
        self, varpar: FloatArray, reml: bool, grad: bool = False
    ) -> tuple[float, FloatArray | None]:
        """Deviance at ``(theta, sigma)`` profiled over beta only, as ``lmerTest`` defines it.

        Notes
        -----
        ``d(theta, sigma) = log|A| + r^2 / sigma^2 + n log(2 pi sigma^2)``, plus
        ``log|S_XX| - p log(2 pi sigma^2)`` for REML (``lmerTest:::devfun_vp``).
        """
        theta, sigma = varpar[:-1], float(varpar[-1])
        s, logdet, st = self._evaluate(theta)
        sxx_inv, beta, r2, ld_x = self._pieces(s)
        s2 = sigma * sigma
        nu = self.n - self.p if reml else self.n
        dev = logdet + r2 / s2 + nu * np.log(2.0 * np.pi * s2)
        if reml:
            dev += ld_x
        if not grad:
            return float(dev), None
        v = np.r_[-beta, 1.0]
        psi = np.outer(v, v) / s2
        if reml:
            psi[: self.p, : self.p] += sxx_inv
        g_theta = self._gradient(theta, psi, st)
        g_sigma = -2.0 * r2 / (s2 * sigma) + 2.0 * nu / sigma
        return float(dev), np.r_[g_theta, g_sigma]

    def fixed(self, theta: FloatArray, reml: bool) -> FixedAtTheta:
        """Beta, ``S_XX^{-1}``, penalised RSS, sigma and the deviance pieces at ``theta``."""
        s, _, st = self._evaluate(theta)
        sxx_inv, beta, r2, _ = self._pieces(s)
        nu = self.n - self.p if reml else self.n
        out: FixedAtTheta = {"beta": beta, "sxx_inv": sxx_inv, "r2": r2, "sigma": float(np.sqrt(r2 / nu))}
        if st is not None:
            out["state"] = st
        return out

    def covbeta(self, varpar: FloatArray) -> FloatArray:
        """``vcov(beta) = sigma^2 S_XX(theta)^{-1}`` (``lmerTest:::get_covbeta``)."""
        s, _ = self._s_logdet(varpar[:-1])
        p = self.p
        return float(varpar[-1]) ** 2 * cast("FloatArray", np.linalg.inv(s[:p, :p]))  # as in _pieces

    def random_effects(self, theta: FloatArray, beta: FloatArray) -> RandomEffectModes:
        """Conditional modes ``b = Lambda u`` and blocks of ``Lambda A^{-1} Lambda'`` (times sigma^2).

        Returns arrays with the group axis first: ``b1 (m1, q1)``, ``cov1 (m1, q1, q1)`` (and ``b2``,
        ``cov2`` for the outer level).
        """
        st = self._solve(theta)
        v = np.r_[-beta, 1.0]
        l1 = st.l1
        u1 = np.tensordot(st.b1, v, axes=(1, 0))  # (q1, m1)
        b1 = (l1 @ u1).T
        if self._outer is None or st.outer is None:
            return {"b1": b1, "cov1": np.moveaxis(_cr(_cl(l1, st.ainv), l1.T), -1, 0)}
        l2 = st.outer.l2
        scinv = st.outer.scinv
        a_ic = -_bm(st.outer.ainv_e, scinv[:, :, self._outer.parent])
        a_ii = st.ainv - _bm(a_ic, _t(st.outer.ainv_e))
        return {
            "b1": b1,
            "cov1": np.moveaxis(_cr(_cl(l1, a_ii), l1.T), -1, 0),
            "b2": (l2 @ np.tensordot(st.outer.b2, v, axes=(1, 0))).T,
            "cov2": np.moveaxis(_cr(_cl(l2, scinv), l2.T), -1, 0),
        }

    def kenward_roger_blocks(self, theta: FloatArray, sigma: float, e_mats: FloatArray) -> KenwardRogerBlocks:
        """The pieces of the Kenward-Roger adjustment, summed over patients from per-patient blocks.

        Parameters
        ----------
        theta : numpy.ndarray
            Relative covariance parameters.
        sigma : float
            Residual SD.
        e_mats : numpy.ndarray
            ``(k_re, q1, q1)`` symmetric 0/1 matrices: the derivative of a patient's random-effects
            covariance ``D = sum_a gamma_a E_a`` with respect to each of its elements ``gamma_a`` (the
            lower-triangular elements of each term's ``VarCorr`` block, as ``pbkrtest`` parametrises it).
            The residual variance ``sigma^2`` (``G = I``) is appended as the last parameter.

        Returns
        -------
        KenwardRogerBlocks
            ``k = k_re + 1`` parameters.

        Notes
        -----
        Per patient ``i``, with ``s = sigma^2``, ``C = Z'Z``, ``F0 = Z'X`` and ``B = Lambda A^-1 Lambda'``,
        ``V^-1 = (I - Z B Z') / s`` gives ``Z' V^-1 = N Z'`` with ``N = (I - C B) / s``, so that
        ``K = Z'V^-1 Z = N C``, ``F = Z'V^-1 X = N F0``, ``Z'V^-2 X = N F``, ``Z'V^-2 Z = N K`` and, summed
        over patients, ``X'V^-1 X = (X'X - sum F0' B F0) / s``, ``X'V^-(k+1) X = (X'V^-k X - sum (N^k F0)' B
        F0) / s`` and ``tr V^-2 = (n - 2 sum tr(BC) + sum tr(BCBC)) / s^2``. For a random-effects parameter
        ``G_a = Z E_a Z'``: ``P_a = -sum F' E_a F``, ``Q_ab = sum F' E_a K E_b F``, ``Q_a,sigma = sum F' E_a
        N F``, ``tr(V^-1 G_a V^-1 G_b) = sum tr(K E_a K E_b)``, ``tr(V^-1 G_a V^-1) = sum tr(E_a N K)``;
        for ``sigma^2``: ``P = -X'V^-2 X``, ``Q = X'V^-3 X``. Every product is a ``q x q`` or ``q x p``
        block per patient, batched; no ``n x n`` matrix is formed.
        """
        if self._outer is not None:
            raise NotImplementedError("Kenward-Roger blocks are implemented for one grouping level")
        p = self.p
        st = self._solve(theta)
        s = float(sigma) ** 2
        lam = st.l1
        c = np.moveaxis(self.c11, -1, 0)  # (m, q, q)
        f0 = np.moveaxis(self.f1[:, :p, :], -1, 0)  # (m, q, p)
        ainv = np.moveaxis(st.ainv, -1, 0)
        b = lam @ ainv @ lam.T  # (m, q, q)
        q = c.shape[1]
        nmat = (np.eye(q) - c @ b) / s
        k_blk = nmat @ c
        k_blk = 0.5 * (k_blk + k_blk.transpose(0, 2, 1))
        f = nmat @ f0
        f0t_b = f0.transpose(0, 2, 1) @ b  # (m, p, q)
        xtx = self.wtw[:p, :p]
        phi_inv = (xtx - np.einsum("mpq,mqr->pr", f0t_b, f0)) / s
        g2 = nmat @ f  # Z'V^-2 X
        xv2x = (phi_inv - np.einsum("mqp,mqr,mrs->ps", f, b, f0)) / s
        xv3x = (xv2x - np.einsum("mqp,mqr,mrs->ps", g2, b, f0)) / s
        zv2z = nmat @ k_blk
        bc = b @ c
        tr_v2 = (self.n - 2.0 * np.einsum("mqq->", bc) + np.einsum("mqr,mrq->", bc, bc)) / (s * s)
        e = np.asarray(e_mats, dtype=float)
        k_re = e.shape[0]
        k = k_re + 1
        ef = np.einsum("aqr,mrp->amqp", e, f, optimize=True)  # (k_re, m, q, p)
        p_mats = np.empty((k, p, p))
        p_mats[:k_re] = -np.einsum("mqp,amqr->apr", f, ef, optimize=True)
        p_mats[k_re] = -xv2x
        kef = np.einsum("mqr,bmrs->bmqs", k_blk, ef, optimize=True)
        q_mats = np.empty((k, k, p, p))
        q_mats[:k_re, :k_re] = np.einsum("amqp,bmqs->abps", ef, kef, optimize=True)
        q_as = np.einsum("amqp,mqs->aps", ef, g2, optimize=True)
        q_mats[:k_re, k_re] = q_as
        q_mats[k_re, :k_re] = q_as.transpose(0, 2, 1)
        q_mats[k_re, k_re] = xv3x
        ke = np.einsum("mqr,ars->amqs", k_blk, e, optimize=True)
        ktrace = np.empty((k, k))
        ktrace[:k_re, :k_re] = np.einsum("amqs,bmsq->ab", ke, ke, optimize=True)
        kt_s = np.einsum("aqr,mrq->a", e, zv2z, optimize=True)
        ktrace[:k_re, k_re] = ktrace[k_re, :k_re] = kt_s
        ktrace[k_re, k_re] = tr_v2
        return {"phi_inv": 0.5 * (phi_inv + phi_inv.T), "p_mats": p_mats, "q_mats": q_mats, "ktrace": ktrace}

    def kenward_roger_blocks_nested(
        self,
        theta: FloatArray,
        sigma: float,
        e_mats: tuple[FloatArray, FloatArray],
        rows: tuple[FloatArray, FloatArray, FloatArray, IntArray, IntArray],
    ) -> KenwardRogerBlocks:
        """:meth:`kenward_roger_blocks` for patients nested in clinics (``V`` block-diagonal by clinic).

        Parameters
        ----------
        theta, sigma : the variance parameters.
        e_mats : tuple of numpy.ndarray
            ``(k1, q1, q1)`` and ``(k2, q2, q2)``: derivative matrices of the patient and clinic covariance
            blocks; ``sigma^2`` is appended last.
        rows : tuple
            ``(x, z1, z2, g1, g2)``, the rows the statistics were computed from (rows of a patient
            contiguous, patients ordered by clinic).

        Notes
        -----
        With ``W = s I + Z1 D1 Z1'`` (block-diagonal by patient, ``W^-1 = (I - Z1 B0 Z1') / s``) and ``M =
        s Lambda2 S^-1 Lambda2'`` per clinic (``S`` the engine's Schur complement), ``V^-1 = W^-1 - W^-1 Z2 M
        Z2' W^-1``. ``V^-1`` is applied to ``n x k`` row arrays by per-patient and per-clinic sums (bincount)
        and gathers, never as a matrix: ``T = V^-1 X``, ``P_a = -sum (Z'T)' E_a (Z'T)`` per group, ``Q_ab =
        (G_a T)' V^-1 (G_b T)``. The traces use ``Z1_i' V^-1 Z1_j = delta_ij K_i - h_i M h_j'`` (``K_i =
        Z1_i'W^-1 Z1_i``, ``h_i = Z1_i' W^-1 Z2``), so the sum over pairs of patients of a clinic is a
        ``q2 x q2`` product per clinic; ``tr V^-2 = tr W^-2 - 2 tr(M Z2'W^-3 Z2) + tr(M H2 M H2)`` with
        ``H2 = Z2' W^-2 Z2``. Cost ``O(n p k)`` for ``k`` parameters, linear in the rows.
        """
        o = self._outer
        if o is None:
            raise ValueError("kenward_roger_blocks_nested needs a nested model; use kenward_roger_blocks")
        x, z1, z2, g1, g2 = rows
        m1, m2 = self.m1, o.m2
        st = self._solve(theta)
        if st.outer is None:  # pragma: no cover - a nested engine always has the outer state
            raise ValueError("nested state missing")
        s = float(sigma) ** 2
        l1, l2 = st.l1, st.outer.l2
        b0 = l1 @ np.moveaxis(st.ainv, -1, 0) @ l1.T  # (m1, q1, q1)
        mm = s * (l2 @ np.moveaxis(st.outer.scinv, -1, 0) @ l2.T)  # (m2, q2, q2)
        q1 = b0.shape[1]

        def gsum(g: IntArray, u: FloatArray, v: FloatArray, m: int) -> FloatArray:
            return np.moveaxis(_group_cross(g, u, v, m), -1, 0)  # (m, ku, kv)

        def winv(y: FloatArray) -> FloatArray:
            coef = b0 @ gsum(g1, z1, y, m1)  # (m1, q1, k)
            out: FloatArray = (y - np.einsum("nq,nqk->nk", z1, coef[g1])) / s
            return out

        wz2 = winv(z2)

        def vinv(y: FloatArray) -> FloatArray:
            wy = winv(y)
            out: FloatArray = wy - np.einsum("nq,nqk->nk", wz2, (mm @ gsum(g2, z2, wy, m2))[g2])
            return out

        t = vinv(x)
        z1t = gsum(g1, z1, t, m1)
        z2t = gsum(g2, z2, t, m2)
        e1, e2 = (np.asarray(e, dtype=float) for e in e_mats)
        k1, k2 = e1.shape[0], e2.shape[0]
        k = k1 + k2 + 1
        p = x.shape[1]
        p_mats = np.empty((k, p, p))
        p_mats[:k1] = -np.einsum("mqp,aqr,mrs->aps", z1t, e1, z1t, optimize=True)
        p_mats[k1 : k1 + k2] = -np.einsum("mqp,aqr,mrs->aps", z2t, e2, z2t, optimize=True)
        p_mats[-1] = -(t.T @ t)
        ys = [np.einsum("nq,qr,nrp->np", z1, e1[a], z1t[g1], optimize=True) for a in range(k1)]
        ys += [np.einsum("nq,qr,nrp->np", z2, e2[c], z2t[g2], optimize=True) for c in range(k2)]
        ys.append(t)
        vys = [vinv(y) for y in ys]
        q_mats = np.empty((k, k, p, p))
        for a in range(k):  # k (<= ~10) parameters; each product is one pass over the rows
            for b in range(k):
                q_mats[a, b] = ys[a].T @ vys[b]
        # traces
        c11 = np.moveaxis(self.c11, -1, 0)
        c12 = np.moveaxis(o.c12, -1, 0)  # (m1, q1, q2)
        nmat = (np.eye(q1) - c11 @ b0) / s
        kw = nmat @ c11
        kw = 0.5 * (kw + kw.transpose(0, 2, 1))  # Z1'W^-1 Z1 per patient
        h1 = nmat @ c12  # Z1'W^-1 Z2 per patient
        hh = gsum(g2, z2, wz2, m2)
        hh = 0.5 * (hh + hh.transpose(0, 2, 1))  # Z2'W^-1 Z2 per clinic
        h2 = gsum(g2, wz2, wz2, m2)  # Z2'W^-2 Z2
        mp = mm[o.parent]  # M of each patient's clinic
        u = h1 @ mp @ h1.transpose(0, 2, 1)  # h M h' per patient
        kt = np.empty((k, k))
        ke = np.einsum("mqr,ars->amqs", kw, e1, optimize=True)
        ue = np.einsum("mqr,ars->amqs", u, e1, optimize=True)
        sig = np.stack(
            [np.add.reduceat(h1.transpose(0, 2, 1) @ e1[a] @ h1, o.cstarts, axis=0) for a in range(k1)]
        )
        msig = np.einsum("mqr,amrs->amqs", mm, sig)
        kt[:k1, :k1] = (
            np.einsum("amqs,bmsq->ab", ke, ke, optimize=True)
            - 2.0 * np.einsum("amqs,bmsq->ab", ke, ue, optimize=True)
            + np.einsum("amqs,bmsq->ab", msig, msig, optimize=True)
        )
        j = h1 - h1 @ mp @ hh[o.parent]  # Z1_i' V^-1 Z2
        kt[:k1, k1 : k1 + k2] = np.einsum("aqr,mrs,cst,mqt->ac", e1, j, e2, j, optimize=True)
        kt[k1 : k1 + k2, :k1] = kt[:k1, k1 : k1 + k2].T
        kc = hh - hh @ mm @ hh  # Z2' V^-1 Z2
        kce = np.einsum("mqr,crs->cmqs", kc, e2)
        kt[k1 : k1 + k2, k1 : k1 + k2] = np.einsum("amqs,bmsq->ab", kce, kce, optimize=True)
        # Z1_i' V^-2 Z1_i = Z1'W^-2 Z1 - (N h M h' + its transpose) + h M H2 M h', with Z1'W^-2 = N Z1'W^-1
        cross = nmat @ h1 @ mp @ h1.transpose(0, 2, 1)
        zv2z1 = (
            nmat @ kw
            - (cross + cross.transpose(0, 2, 1))
            + h1 @ mp @ h2[o.parent] @ mp @ h1.transpose(0, 2, 1)
        )
        kt[:k1, -1] = kt[-1, :k1] = np.einsum("aqr,mrq->a", e1, zv2z1)
        vz2 = vinv(z2)
        zv2z2 = gsum(g2, vz2, vz2, m2)
        kt[k1 : k1 + k2, -1] = kt[-1, k1 : k1 + k2] = np.einsum("aqr,mrq->a", e2, zv2z2)
        bc = b0 @ c11
        tr_w2 = (self.n - 2.0 * np.einsum("mqq->", bc) + np.einsum("mqr,mrq->", bc, bc)) / (s * s)
        z2w3z2 = gsum(g2, wz2, winv(wz2), m2)
        mh2 = mm @ h2
        kt[-1, -1] = tr_w2 - 2.0 * np.einsum("mqr,mrq->", mm, z2w3z2) + np.einsum("mqr,mrq->", mh2, mh2)
        phi_inv = x.T @ t
        return {"phi_inv": 0.5 * (phi_inv + phi_inv.T), "p_mats": p_mats, "q_mats": q_mats, "ktrace": kt}
