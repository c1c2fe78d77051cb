"""Observation weights and empirical (sandwich) covariances of an MMRM's fixed effects.

Weights follow SAS PROC MIXED's ``WEIGHT`` statement (and ``mmrm(weights = )``): the residual covariance of
subject ``i`` is ``R_i = W_i^{-1/2} Sigma_i W_i^{-1/2}`` with ``W_i`` the diagonal of its rows' weights, so
every quadratic form of the likelihood is that of the rows scaled by ``sqrt(w)`` under ``Sigma`` and
``log|R_i| = log|Sigma_i| - sum_j log w_ij``.

The empirical covariances are mmrm's (``vcov = "Empirical"``, ``"Empirical-Jackknife"``,
``"Empirical-Bias-Reduced"``): with the whitened rows ``X~_i = L_i^{-1} W_i^{1/2} X_i`` and residuals
``r~_i = L_i^{-1} W_i^{1/2} (y_i - X_i beta)`` (``Sigma_i = L_i L_i'``), ``Phi = (X' V^{-1} X)^{-1}`` and
``H_ii = X~_i Phi X~_i'``,

.. math::

    V_E = \\Phi \\Big(\\sum_i X~_i' A_i r~_i r~_i' A_i X~_i\\Big) \\Phi,

with ``A_i = I`` (Empirical, SAS ``EMPIRICAL``, clubSandwich CR0), ``(I - H_ii)^{-1}`` (jackknife, CR3) or
``(I - H_ii)^{-1/2}`` (bias-reduced, Bell and McCaffrey 2002, CR2). Their Satterthwaite df for a contrast
``l`` are mmrm's ``tr(G)^2 / tr(G^2)`` with ``G = M' M``, ``M = [(I - H)_{., i} A_i X~_i Phi l]_i``: written
with ``b_i = A_i X~_i Phi l``, ``d_i = b_i' b_i`` and ``c_i = X~_i' b_i`` (``I - H`` is a projection),
``G = diag(d) - C Phi C'``, so both traces cost ``O(N p)`` instead of mmrm's ``N x N`` matrix.

Everything is batched by missingness pattern (subjects of a pattern share ``L_i``): loops run over
patterns only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models._dist import f_sf
from sciatica_outcomes.models.inference import FTest, WaldInference

__all__ = [
    "VCOV_METHODS",
    "EmpiricalInference",
    "check_vcov",
    "check_weight_count",
    "empirical_inference",
    "observation_weights",
]

#: covariance of the fixed effects: model-based, or mmrm's three empirical (sandwich) estimators
VCOV_METHODS = ("asymptotic", "empirical", "empirical-jackknife", "empirical-bias-reduced")


def check_vcov(vcov: str, ddf: str) -> None:
    """Refuse an unknown covariance method, or an empirical covariance with Kenward-Roger df.

    Raises
    ------
    ModelSpecificationError
        ``vcov`` not in :data:`VCOV_METHODS`; Kenward-Roger (which adjusts the model-based covariance)
        requested with an empirical one (as mmrm and SAS ``EMPIRICAL`` refuse it).
    """
    if vcov not in VCOV_METHODS:
        raise ModelSpecificationError(f"vcov {vcov!r} is not a method; use one of {', '.join(VCOV_METHODS)}")
    if vcov != "asymptotic" and ddf.startswith("kenward-roger"):
        raise ModelSpecificationError(
            f"ddf {ddf!r} adjusts the model-based covariance and cannot be combined with vcov {vcov!r}; use "
            "ddf 'satterthwaite', 'between-within' or 'residual' with an empirical covariance"
        )


def _weight_column(weights: str | None) -> set[str]:
    return set() if weights is None else {weights}


def observation_weights(frame: pl.DataFrame, column: str) -> FloatArray:
    """The weights of the fitted rows, checked: finite and positive on every row with a response.

    Raises
    ------
    ModelSpecificationError
        The column is not numeric, or a row has a missing, non-finite, zero or negative weight (SAS drops
        such rows silently; here they are refused so that nothing is lost unnoticed).
    """
    s = frame[column]
    if not s.dtype.is_numeric():
        raise ModelSpecificationError(f"weights column {column!r} must be numeric, got {s.dtype}")
    w = s.cast(pl.Float64).to_numpy()
    check_weight_count(int((~np.isfinite(w) | ~(w > 0)).sum()), column)
    return w


def check_weight_count(n_bad: int, column: str) -> None:
    """Refuse ``n_bad`` fitted rows with a missing, non-finite, zero or negative weight (in memory or SQL)."""
    if n_bad:
        raise ModelSpecificationError(
            f"{n_bad} rows with a response have a missing, zero, negative or infinite weight in "
            f"{column!r}; give every such row a positive weight or drop it before fitting"
        )


@dataclass(frozen=True)
class _Block:
    """The rows of one missingness pattern: visits, subjects, design and response (``(n_k, m, .)``)."""

    visits: IntArray
    subjects: IntArray
    x: FloatArray
    y: FloatArray


def pattern_blocks(subject: IntArray, visit: IntArray, x: FloatArray, y: FloatArray, t: int) -> list[_Block]:
    """Rows grouped by the subject's set of observed visits, as ``(subjects, visits, .)`` arrays.

    The order is that of :func:`sciatica_outcomes.models.mmrm._build_patterns` (pattern, subject, visit).
    """
    n_sub = int(subject.max()) + 1
    bits = np.bincount(subject, weights=np.exp2(visit), minlength=n_sub).astype(np.int64)
    row_bits = bits[subject]
    order = np.lexsort((visit, subject, row_bits))
    xs, ys, subs, row_bits = x[order], y[order], subject[order], row_bits[order]
    patterns, first_row = np.unique(row_bits, return_index=True)
    bounds = [*first_row.tolist(), row_bits.shape[0]]
    out: list[_Block] = []
    for j, pat in enumerate(patterns.tolist()):  # loop over missingness patterns
        vis = np.flatnonzero((int(pat) >> np.arange(t)) & 1)
        m = vis.shape[0]
        sl = slice(bounds[j], bounds[j + 1])
        out.append(
            _Block(vis, subs[sl][::m], xs[sl].reshape(-1, m, x.shape[1]), ys[sl].reshape(-1, m)),
        )
    return out


def _inverse_sqrt(a: FloatArray) -> FloatArray:
    """Symmetric pseudo-inverse square root of a stack of symmetric matrices (mmrm's pseudoInverseSqrt)."""
    vals, vecs = np.linalg.eigh(a)
    top = np.max(np.abs(vals), axis=-1, keepdims=True)
    tol = np.finfo(float).eps * a.shape[-1] * top
    inv = np.where(vals > tol, 1.0 / np.sqrt(np.where(vals > tol, vals, 1.0)), 0.0)
    out: FloatArray = np.einsum("nij,nj,nkj->nik", vecs, inv, vecs)
    return out


@dataclass(frozen=True)
class EmpiricalInference(WaldInference):
    """:class:`WaldInference` with an empirical covariance of beta and mmrm's empirical Satterthwaite df.

    ``vcov_beta`` is the empirical covariance; ``vcov_model`` keeps the model-based ``(X' V^-1 X)^-1``.
    ``whitened`` (``X~``, ``N x p``), ``leverage`` (``B = A X~ Phi``, ``N x p``) and ``starts`` (first row
    of each subject) are the per-row pieces of the df (module docstring).
    """

    vcov_model: FloatArray | None = None
    whitened: FloatArray | None = None
    leverage: FloatArray | None = None
    starts: IntArray | None = None
    kind: str = "empirical"

    ddf_method: ClassVar[str] = "satterthwaite"

    def _pieces(self) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
        if self.vcov_model is None or self.whitened is None or self.leverage is None or self.starts is None:
            raise ModelSpecificationError("EmpiricalInference was built without its per-row pieces")
        return self.vcov_model, self.whitened, self.leverage, self.starts

    def empirical_df(self, contrast: FloatArray) -> FloatArray:
        """mmrm's Satterthwaite df of each row ``l`` under the empirical covariance (module docstring).

        Validated against ``clubSandwich::coef_test(gls_fit, vcovCR(gls_fit, type), test =
        "Satterthwaite")`` (``df_Satt``), as openpharma/mmrm's tests compare its df with it.
        """
        mat = self._as_matrix(contrast)
        phi, xt, bmat, starts = self._pieces()
        out = np.empty(mat.shape[0])
        for r, l_row in enumerate(mat):  # loop over contrast rows (a few)
            b = bmat @ l_row
            d = np.add.reduceat(b * b, starts)
            c = np.add.reduceat(xt * b[:, None], starts, axis=0)
            cphi = c @ phi
            q = np.einsum("ip,ip->i", c, cphi)
            ctc = c.T @ c
            tr = float(d.sum() - q.sum())
            fro2 = float((d * d).sum() - 2.0 * (d * q).sum() + np.trace(phi @ ctc @ phi @ ctc))
            out[r] = tr * tr / fro2 if fro2 > 0 else np.nan
        return out

    def variance_and_df(self, contrast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``l' V_E l`` and the empirical Satterthwaite df of each row."""
        mat = self._as_matrix(contrast)
        return np.einsum("ij,jk,ik->i", mat, self.vcov_beta, mat), self.empirical_df(mat)

    def f_test(self, contrast: FloatArray, rhs: FloatArray | float = 0.0, eps: float = 1.49e-8) -> FTest:
        """F-test of ``L beta = rhs`` on ``V_E`` (mmrm ``h_df_md_sat``: per eigen-row empirical df)."""
        mat = self._as_matrix(contrast)
        vl = mat @ self.vcov_beta @ mat.T
        vals, vecs = np.linalg.eigh(vl)
        vals, vecs = vals[::-1], vecs[:, ::-1]
        q = int((vals > max(eps * vals[0], 0.0)).sum())
        ptl = (vecs.T @ mat)[:q]
        rhs_v = np.broadcast_to(np.asarray(rhs, dtype=float), (mat.shape[0],))
        diff = ptl @ self.beta - (vecs.T @ rhs_v)[:q]
        f = float(np.sum(diff**2 / vals[:q]) / q)
        ddf = _combine_df(self.empirical_df(ptl))
        return {"f": f, "num_df": float(q), "den_df": ddf, "p": float(f_sf(f, q, ddf))}


def _combine_df(nu: FloatArray) -> float:
    """Denominator df of a multi-row F from the rows' df (lmerTest / mmrm ``h_md_denom_df``)."""
    q = nu.shape[0]
    if q == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1.49e-8):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    e = float(np.sum(nu / (nu - 2)))
    return float(2 * e / (e - q))


def empirical_inference(
    wald: WaldInference, blocks: list[_Block], sigma: FloatArray, kind: str
) -> EmpiricalInference:
    """The empirical covariance ``kind`` of the fit whose Wald pieces are ``wald`` (module docstring).

    Parameters
    ----------
    wald : WaldInference
        Model-based inference of the fit (``beta``, ``vcov_beta = Phi``).
    blocks : list
        :func:`pattern_blocks` of the weighted rows (``sqrt(w) x``, ``sqrt(w) y``).
    sigma : numpy.ndarray
        Fitted ``T x T`` covariance of the visits.
    kind : {"empirical", "empirical-jackknife", "empirical-bias-reduced"}

    Returns
    -------
    EmpiricalInference

    Raises
    ------
    ModelSpecificationError
        Jackknife with a subject of leverage 1 (``I - H_ii`` singular).

    Notes
    -----
    Validated against SAS PROC MIXED ``EMPIRICAL`` (``COVB``, with and without ``WEIGHT``) for every
    structure and ``clubSandwich::vcovCR(gls_fit, type = "CR0" | "CR3" | "CR2")`` with ``df_Satt``.
    """
    phi = np.asarray(wald.vcov_beta, dtype=float)
    beta = np.asarray(wald.beta, dtype=float)
    p = beta.shape[0]
    meat = np.zeros((p, p))
    xts, bs, subs = [], [], []
    for blk in blocks:  # loop over missingness patterns
        m = blk.visits.shape[0]
        chol = np.linalg.cholesky(sigma[np.ix_(blk.visits, blk.visits)])
        li = np.linalg.inv(chol)
        xt = np.einsum("uv,nvp->nup", li, blk.x)
        rt = np.einsum("uv,nv->nu", li, blk.y - blk.x @ beta)
        if kind == "empirical":
            a = np.broadcast_to(np.eye(m), (xt.shape[0], m, m))
        else:
            i_h = np.eye(m) - np.einsum("nup,pq,nvq->nuv", xt, phi, xt)
            if kind == "empirical-jackknife":
                lowest = np.linalg.eigvalsh(i_h)[:, 0]
                if np.any(lowest < 1e-10):
                    raise ModelSpecificationError(
                        f"{int((lowest < 1e-10).sum())} subject(s) alone determine a coefficient (leverage "
                        "1, e.g. a factor level seen in one subject), so the jackknife covariance is "
                        "undefined; use vcov 'empirical-bias-reduced' (pseudo-inverse) or merge that level"
                    )
                a = np.linalg.inv(i_h)
            else:
                a = _inverse_sqrt(i_h)
        ax = np.einsum("nuv,nvp->nup", a, xt)  # A_i X~_i (A_i symmetric)
        z = np.einsum("nup,nu->np", ax, rt)
        meat += z.T @ z
        xts.append(xt.reshape(-1, p))
        bs.append((ax @ phi).reshape(-1, p))
        subs.append(np.repeat(blk.subjects, m))
    sub_rows = np.concatenate(subs)
    order = np.argsort(sub_rows, kind="stable")
    sub_sorted = sub_rows[order]
    starts = np.flatnonzero(np.r_[True, sub_sorted[1:] != sub_sorted[:-1]])
    vcov = phi @ meat @ phi
    return EmpiricalInference(
        names=wald.names,
        beta=wald.beta,
        vcov_beta=0.5 * (vcov + vcov.T),
        jacobian=wald.jacobian,
        vcov_varpar=wald.vcov_varpar,
        hessian_eigenvalues=wald.hessian_eigenvalues,
        vcov_model=phi,
        whitened=np.concatenate(xts)[order],
        leverage=np.concatenate(bs)[order],
        starts=starts,
        kind=kind,
    )
