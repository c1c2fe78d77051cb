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

import numpy as np

__all__ = ["LevelSpec", "ProfiledDeviance"]

_LOG2PI = float(np.log(2.0 * np.pi))


def batched_inv_logdet(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse and log-determinant of a stack of small SPD matrices (closed forms for 1x1, 2x2, 3x3).

    Parameters
    ----------
    a : numpy.ndarray
        Shape ``(m, q, q)``, symmetric positive definite.

    Returns
    -------
    inv, logdet : numpy.ndarray
        Shapes ``(m, q, q)`` and ``(m,)``.
    """
    q = a.shape[-1]
    if q == 1:
        return 1.0 / a, np.log(a[:, 0, 0])
    if q == 2:
        p, r, s = a[:, 0, 0], a[:, 0, 1], a[:, 1, 1]
        det = p * s - r * r
        inv = np.empty_like(a)
        inv[:, 0, 0] = s / det
        inv[:, 1, 1] = p / det
        inv[:, 0, 1] = inv[:, 1, 0] = -r / det
        return inv, np.log(det)
    if q == 3:
        a00, a01, a02 = a[:, 0, 0], a[:, 0, 1], a[:, 0, 2]
        a11, a12, a22 = a[:, 1, 1], a[:, 1, 2], a[:, 2, 2]
        c00 = a11 * a22 - a12 * a12
        c01 = a02 * a12 - a01 * a22
        c02 = a01 * a12 - a02 * a11
        c11 = a00 * a22 - a02 * a02
        c12 = a01 * a02 - a00 * a12
        c22 = a00 * a11 - a01 * a01
        det = a00 * c00 + a01 * c01 + a02 * c02
        inv = np.empty_like(a)
        inv[:, 0, 0], inv[:, 1, 1], inv[:, 2, 2] = c00 / det, c11 / det, c22 / det
        inv[:, 0, 1] = inv[:, 1, 0] = c01 / det
        inv[:, 0, 2] = inv[:, 2, 0] = c02 / det
        inv[:, 1, 2] = inv[:, 2, 1] = c12 / det
        return inv, np.log(det)
    chol = np.linalg.cholesky(a)
    logdet = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return np.linalg.inv(a), logdet


def _group_cross(g: np.ndarray, u: np.ndarray, v: np.ndarray, m: int, sym: bool = False) -> np.ndarray:
    """Per-group cross products ``sum_{rows of group} u_r v_r'`` (shape ``(m, ku, kv)``) by bincount."""
    ku, kv = u.shape[1], v.shape[1]
    out = np.empty((m, ku, kv))
    for a in range(ku):  # loops over the (few) columns; each bincount is one vectorised pass over rows
        for b in range(a if sym else 0, kv):
            out[:, a, b] = np.bincount(g, weights=u[:, a] * v[:, b], minlength=m)
            if sym:
                out[:, b, a] = out[:, a, b]
    return out


@dataclass(frozen=True)
class LevelSpec:
    """Structure of the relative covariance factor of one grouping level.

    ``rows``, ``cols`` give the positions of the free lower-triangular entries of the ``q x q`` template
    ``Lambda`` and ``index`` the position of each in the parameter vector ``theta``.
    """

    q: int
    rows: np.ndarray
    cols: np.ndarray
    index: np.ndarray

    def template(self, theta: np.ndarray) -> np.ndarray:
        """The ``q x q`` lower-triangular ``Lambda`` for ``theta``."""
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta[self.index]
        return lam

    def gather(self, grad_lambda: np.ndarray, n_theta: int) -> np.ndarray:
        """Gradient with respect to ``theta`` from the gradient with respect to the template entries."""
        return np.bincount(self.index, weights=grad_lambda[self.rows, self.cols], minlength=n_theta)


class ProfiledDeviance:
    """Sufficient statistics of one model and its profiled deviance as a function of ``theta``.

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
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        z1: np.ndarray,
        g1: np.ndarray,
        level1: LevelSpec,
        z2: np.ndarray | None = None,
        g2: np.ndarray | None = None,
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
        if self.nested:
            m2 = int(g2.max()) + 1
            self.m2 = m2
            parent = np.zeros(m1, dtype=np.int64)
            parent[g1] = g2
            self.parent = parent
            order_ok = np.all(np.diff(parent) >= 0)
            if not order_ok:
                raise ValueError("inner groups must be numbered in order of their outer group")
            self.cstarts = np.flatnonzero(np.r_[True, np.diff(parent) != 0])
            self.c12 = _group_cross(g1, z1, z2, m1)
            self.c22 = _group_cross(g2, z2, z2, m2, sym=True)
            self.f2 = _group_cross(g2, z2, w, m2)
        self.n_evals = 0

    # ---------------------------------------------------------------------------------------------
    def _solve(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        self.n_evals += 1
        l1 = self.level1.template(theta)
        c11, f1 = self.c11, self.f1
        a = l1.T @ c11 @ l1
        a[:, range(l1.shape[0]), range(l1.shape[0])] += 1.0
        ainv, logdet = batched_inv_logdet(a)
        g1 = np.matmul(l1.T, f1)  # (m1, q1, d)
        b1 = ainv @ g1
        d = self.d
        s = self.wtw - np.tensordot(g1, b1, axes=([0, 1], [0, 1]))
        out = {"l1": l1, "ainv": ainv, "b1": b1, "logdet": float(logdet.sum())}
        if self.nested:
            l2 = self.level2.template(theta)
            e = l1.T @ self.c12 @ l2  # (m1, q1, q2)
            ainv_e = ainv @ e
            cs = self.cstarts
            h = l2.T @ self.c22 @ l2
            h[:, range(l2.shape[0]), range(l2.shape[0])] += 1.0
            sc = h - np.add.reduceat(np.swapaxes(e, 1, 2) @ ainv_e, cs, axis=0)
            scinv, ldc = batched_inv_logdet(sc)
            g2 = np.matmul(l2.T, self.f2)
            gt = g2 - np.add.reduceat(np.swapaxes(ainv_e, 1, 2) @ g1, cs, axis=0)
            b2 = scinv @ gt  # (m2, q2, d)
            s = s - np.tensordot(gt, b2, axes=([0, 1], [0, 1]))
            par = self.parent
            b1 = ainv @ (g1 - e @ b2[par])
            out.update(
                l2=l2, ainv_e=ainv_e, scinv=scinv, b1=b1, b2=b2, logdet=out["logdet"] + float(ldc.sum())
            )
        out["s"] = 0.5 * (s + s.T)
        if d != s.shape[0]:
            raise RuntimeError("internal dimension mismatch")
        return out

    def _grad_lambda(self, st: dict[str, np.ndarray], psi: np.ndarray) -> np.ndarray:
        """Gradient of ``log|A| + phi(S)`` with respect to ``theta`` given ``Psi = d phi / d S``."""
        l1, ainv, b1 = st["l1"], st["ainv"], st["b1"]
        bpsi1 = b1 @ psi  # (m1, q1, d)
        if not self.nested:
            m = ainv + bpsi1 @ np.swapaxes(b1, 1, 2)
            g_l1 = 2.0 * (
                np.tensordot(self.c11 @ l1, m, axes=([0, 2], [0, 1]))
                - np.tensordot(self.f1, bpsi1, axes=([0, 2], [0, 2]))
            )
            return self.level1.gather(g_l1, self.n_theta)
        l2, ainv_e, scinv, b2 = st["l2"], st["ainv_e"], st["scinv"], st["b2"]
        par = self.parent
        scinv_p = scinv[par]
        # inverse blocks: A_ii = Ainv + Ainv E S^-1 E' Ainv ; A_ic = -Ainv E S^-1
        a_ic = -ainv_e @ scinv_p  # (m1, q1, q2)
        a_ii = ainv - a_ic @ np.swapaxes(ainv_e, 1, 2)
        b2p = b2[par]
        bpsi2 = b2 @ psi  # (m2, q2, d)
        m_ii = a_ii + bpsi1 @ np.swapaxes(b1, 1, 2)
        m_ci = np.swapaxes(a_ic, 1, 2) + bpsi2[par] @ np.swapaxes(b1, 1, 2)  # (m1, q2, q1)
        g_l1 = 2.0 * (
            np.tensordot(self.c11 @ l1, m_ii, axes=([0, 2], [0, 1]))
            + np.tensordot(self.c12 @ l2, m_ci, axes=([0, 2], [0, 1]))
            - np.tensordot(self.f1, bpsi1, axes=([0, 2], [0, 2]))
        )
        m_cc = scinv + bpsi2 @ np.swapaxes(b2, 1, 2)
        m_ic = a_ic + bpsi1 @ np.swapaxes(b2p, 1, 2)  # (m1, q1, q2)
        g_l2 = 2.0 * (
            np.tensordot(self.c22 @ l2, m_cc, axes=([0, 2], [0, 1]))
            + np.tensordot(np.swapaxes(self.c12, 1, 2) @ l1, m_ic, axes=([0, 2], [0, 1]))
            - np.tensordot(self.f2, bpsi2, axes=([0, 2], [0, 2]))
        )
        return self.level1.gather(g_l1, self.n_theta) + self.level2.gather(g_l2, self.n_theta)

    # ---------------------------------------------------------------------------------------------
    def _pieces(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        p = self.p
        sxx = s[:p, :p]
        chol = np.linalg.cholesky(sxx)
        ld_x = 2.0 * float(np.log(np.diag(chol)).sum())
        sxx_inv = np.linalg.inv(sxx)
        beta = sxx_inv @ s[:p, p]
        r2 = float(s[p, p] - s[p, :p] @ beta)
        return sxx_inv, beta, r2, ld_x

    def deviance(self, theta: np.ndarray, reml: bool, grad: bool = False) -> tuple[float, np.ndarray | None]:
        """Profiled REML or ML deviance at ``theta`` and, if asked, its gradient."""
        st = self._solve(theta)
        try:
            sxx_inv, beta, r2, ld_x = self._pieces(st["s"])
        except np.linalg.LinAlgError:
            return np.inf, (np.full(self.n_theta, np.nan) if grad else None)
        nu = self.n - self.p if reml else self.n
        dev = st["logdet"] + nu * (1.0 + np.log(2.0 * np.pi * r2 / nu))
        if reml:
            dev += ld_x
        if not grad:
            return float(dev), None
        v = np.r_[-beta, 1.0]
        psi = (nu / r2) * np.outer(v, v)
        if reml:
            psi[: self.p, : self.p] += sxx_inv
        return float(dev), self._grad_lambda(st, psi)

    def deviance_vp(
        self, varpar: np.ndarray, reml: bool, grad: bool = False
    ) -> tuple[float, np.ndarray | None]:
        """Deviance at ``(theta, sigma)`` profiled over beta only, as ``lmerTest`` defines it.

        Notes
        -----
        ``d(theta, sigma) = log|A| + r^2 / sigma^2 + n log(2 pi sigma^2)``, plus
        ``log|S_XX| - p log(2 pi sigma^2)`` for REML (``lmerTest:::devfun_vp``).
        """
        theta, sigma = varpar[:-1], float(varpar[-1])
        st = self._solve(theta)
        sxx_inv, beta, r2, ld_x = self._pieces(st["s"])
        s2 = sigma * sigma
        nu = self.n - self.p if reml else self.n
        dev = st["logdet"] + r2 / s2 + nu * np.log(2.0 * np.pi * s2)
        if reml:
            dev += ld_x
        if not grad:
            return float(dev), None
        v = np.r_[-beta, 1.0]
        psi = np.outer(v, v) / s2
        if reml:
            psi[: self.p, : self.p] += sxx_inv
        g_theta = self._grad_lambda(st, psi)
        g_sigma = -2.0 * r2 / (s2 * sigma) + 2.0 * nu / sigma
        return float(dev), np.r_[g_theta, g_sigma]

    def fixed(self, theta: np.ndarray, reml: bool) -> dict[str, np.ndarray | float]:
        """Beta, ``S_XX^{-1}``, penalised RSS, sigma and the deviance pieces at ``theta``."""
        st = self._solve(theta)
        sxx_inv, beta, r2, _ = self._pieces(st["s"])
        nu = self.n - self.p if reml else self.n
        return {"beta": beta, "sxx_inv": sxx_inv, "r2": r2, "sigma": float(np.sqrt(r2 / nu)), "state": st}

    def covbeta(self, varpar: np.ndarray) -> np.ndarray:
        """``vcov(beta) = sigma^2 S_XX(theta)^{-1}`` (``lmerTest:::get_covbeta``)."""
        st = self._solve(varpar[:-1])
        p = self.p
        return float(varpar[-1]) ** 2 * np.linalg.inv(st["s"][:p, :p])

    def random_effects(self, theta: np.ndarray, beta: np.ndarray) -> dict[str, np.ndarray]:
        """Conditional modes ``b = Lambda u`` and blocks of ``Lambda A^{-1} Lambda'`` (times sigma^2)."""
        st = self._solve(theta)
        v = np.r_[-beta, 1.0]
        l1 = st["l1"]
        u1 = st["b1"] @ v
        out = {"b1": u1 @ l1.T}
        if self.nested:
            l2 = st["l2"]
            scinv = st["scinv"]
            par = self.parent
            a_ic = -st["ainv_e"] @ scinv[par]
            a_ii = st["ainv"] - a_ic @ np.swapaxes(st["ainv_e"], 1, 2)
            out["cov1"] = l1 @ a_ii @ l1.T
            out["b2"] = (st["b2"] @ v) @ l2.T
            out["cov2"] = l2 @ scinv @ l2.T
        else:
            out["cov1"] = l1 @ st["ainv"] @ l1.T
        return out
