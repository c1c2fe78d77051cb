"""Wald inference with Satterthwaite degrees of freedom, for any estimator with a deviance.

The machinery needs only three things from an estimator: the fixed effects ``beta`` at the optimum, the
function ``vcov(beta)(varpar)`` of the variance parameters, and the deviance (or its gradient) as a
function of ``varpar``. :func:`satterthwaite_from_deviance` turns them into a :class:`WaldInference` that
tests contrasts ``L beta`` (t-tests per row, F-tests per matrix) exactly as ``lmerTest`` does; the growth
model supplies ``varpar = (theta, sigma)``, a residual-covariance model (MMRM) supplies its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypedDict

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models._dist import chi2_sf, f_sf, t_ppf, t_sf

__all__ = [
    "DDF_METHODS",
    "LMM_DDF_METHODS",
    "AsymptoticInference",
    "BetweenWithinInference",
    "CoefficientDfInference",
    "FTest",
    "KenwardRoger",
    "KenwardRogerFTest",
    "KenwardRogerInference",
    "KenwardRogerLinearInference",
    "LikelihoodRatioTest",
    "ResidualInference",
    "WaldInference",
    "between_within_df",
    "check_ddf",
    "kenward_roger",
    "likelihood_ratio",
    "numerical_hessian",
    "numerical_jacobian",
    "satterthwaite_from_deviance",
    "type3_contrasts",
    "vcov_varpar_from_hessian",
    "with_kenward_roger",
]

#: denominator-df methods of the fixed-effects tests (``--ddf`` of the ``fit`` command); "between-within"
#: and "residual" (SAS ``DDFM=BW`` and ``DDFM=RESIDUAL``) are defined for the MMRM only
DDF_METHODS = (
    "satterthwaite",
    "kenward-roger",
    "kenward-roger-linear",
    "between-within",
    "residual",
)
#: the methods of estimators with random effects (GrowthModel): no between-within or residual counts
LMM_DDF_METHODS = DDF_METHODS[:3]


def check_ddf(ddf: str, reml: bool, methods: Sequence[str] = DDF_METHODS) -> None:
    """Refuse an unknown denominator-df method, or Kenward-Roger on an ML fit (one rule for every estimator).

    Parameters
    ----------
    ddf : str
        The requested method.
    reml : bool
        Whether the fit is REML.
    methods : sequence of str
        The estimator's methods (:data:`DDF_METHODS` for the MMRM, :data:`LMM_DDF_METHODS` for the
        growth model).

    Raises
    ------
    ModelSpecificationError
        ``ddf`` is not in ``methods``, or it is a Kenward-Roger method and ``reml`` is false (KR is
        defined for the REML fit, as in pbkrtest and SAS ``DDFM=KR``).
    """
    if ddf not in methods:
        raise ModelSpecificationError(f"ddf {ddf!r} is not a method; use one of {', '.join(methods)}")
    if ddf.startswith("kenward-roger") and not reml:
        raise ModelSpecificationError(
            "Kenward-Roger inference needs a REML fit: use reml=True (drop --ml) or ddf 'satterthwaite'"
        )


def _steps(x: FloatArray, rel: float) -> FloatArray:
    return rel * np.maximum(np.abs(x), 1e-2)


def numerical_jacobian(
    fn: Callable[[FloatArray], FloatArray], x: FloatArray, rel: float = 1e-4, richardson: bool = False
) -> FloatArray:
    """Jacobian of an array-valued function by central differences (optionally one Richardson step).

    Parameters
    ----------
    fn : callable
        Maps a vector of length ``k`` to an array of any shape ``s``.
    x : numpy.ndarray
        Point of evaluation.
    rel : float
        Relative step (``h_j = rel * max(|x_j|, 0.01)``).
    richardson : bool
        Add one Richardson extrapolation step (error ``O(h^4)`` instead of ``O(h^2)``, twice the cost).

    Returns
    -------
    numpy.ndarray
        Shape ``(k, *s)``: derivative with respect to each ``x_j``.

    Notes
    -----
    ``D(h) = (f(x + h e_j) - f(x - h e_j)) / 2h`` (error ``O(h^2)``, about ``1e-8`` relative at the default
    step); ``(4 D(h/2) - D(h)) / 3`` cancels the ``h^2`` term, as ``numDeriv``'s Richardson extrapolation.
    """
    x = np.asarray(x, dtype=float)
    h = _steps(x, rel)
    out = []
    for j in range(x.shape[0]):  # one pass per parameter (k is small)
        e = np.zeros_like(x)
        e[j] = h[j]
        d1 = (np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * h[j])
        if richardson:
            d2 = (np.asarray(fn(x + e / 2)) - np.asarray(fn(x - e / 2))) / h[j]
            d1 = (4 * d2 - d1) / 3
        out.append(d1)
    return np.stack(out)


def numerical_hessian(
    fn: Callable[[FloatArray], float],
    x: FloatArray,
    gradient: Callable[[FloatArray], FloatArray] | None = None,
    rel: float = 1e-4,
) -> FloatArray:
    """Hessian of a scalar function: Jacobian of its analytic gradient when given, else second differences.

    Returns
    -------
    numpy.ndarray
        Symmetric ``(k, k)`` matrix.
    """
    x = np.asarray(x, dtype=float)
    if gradient is not None:
        h = numerical_jacobian(gradient, x, rel)
        return 0.5 * (h + h.T)
    k = x.shape[0]
    step = _steps(x, max(rel, 1e-3))

    def second(hs: FloatArray) -> FloatArray:
        out = np.empty((k, k))
        for i in range(k):
            for j in range(i, k):
                ei = np.zeros(k)
                ej = np.zeros(k)
                ei[i], ej[j] = hs[i], hs[j]
                val = (fn(x + ei + ej) - fn(x + ei - ej) - fn(x - ei + ej) + fn(x - ei - ej)) / (
                    4 * hs[i] * hs[j]
                )
                out[i, j] = out[j, i] = val
        return out

    return (4 * second(step / 2) - second(step)) / 3  # Richardson: second differences lose more digits


def vcov_varpar_from_hessian(hessian: FloatArray, tol: float = 1e-8) -> tuple[FloatArray, FloatArray]:
    """``2 H^+`` from the positive eigenvalues of the deviance Hessian (as ``lmerTest:::as_lmerModLT``).

    Returns
    -------
    vcov, eigenvalues : numpy.ndarray
        The asymptotic covariance of the variance parameters and the Hessian's eigenvalues (descending).
    """
    vals, vecs = np.linalg.eigh(hessian)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    pos = vals > tol
    inv = (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T
    return 2.0 * inv, vals


class FTest(TypedDict):
    """A joint F-test (:meth:`WaldInference.f_test`): statistic, numerator and denominator df, p-value."""

    f: float
    num_df: float
    den_df: float
    p: float


@dataclass(frozen=True)
class WaldInference:
    """Everything needed for Satterthwaite t- and F-tests of linear contrasts of the fixed effects.

    Attributes
    ----------
    names : tuple of str
        Coefficient names.
    beta : numpy.ndarray
        Estimates, ``(p,)``.
    vcov_beta : numpy.ndarray
        ``(p, p)``.
    jacobian : numpy.ndarray
        ``(k, p, p)``: derivative of ``vcov(beta)`` with respect to each variance parameter.
    vcov_varpar : numpy.ndarray
        ``(k, k)``: ``2 H^+`` with ``H`` the Hessian of the deviance in ``varpar``.
    hessian_eigenvalues : numpy.ndarray
        Eigenvalues of ``H`` (all positive at a proper optimum).
    """

    names: tuple[str, ...]
    beta: FloatArray
    vcov_beta: FloatArray
    jacobian: FloatArray
    vcov_varpar: FloatArray
    hessian_eigenvalues: FloatArray

    #: the denominator-df method of :meth:`variance_and_df`, :meth:`contrast` and :meth:`f_test`
    ddf_method: ClassVar[str] = "satterthwaite"

    def _as_matrix(self, contrast: FloatArray | Sequence[float] | dict[str, float]) -> FloatArray:
        if isinstance(contrast, dict):
            unknown = set(contrast) - set(self.names)
            if unknown:
                raise ModelSpecificationError(
                    f"contrast names {sorted(unknown)} are not coefficients; they are {list(self.names)}"
                )
            row = np.array([float(contrast.get(nm, 0.0)) for nm in self.names])
            return row[None, :]
        mat = np.atleast_2d(np.asarray(contrast, dtype=float))
        if mat.shape[1] != len(self.names):
            raise ModelSpecificationError(
                f"contrast has {mat.shape[1]} columns; the model has {len(self.names)} coefficients "
                f"({', '.join(self.names)})"
            )
        return mat

    def satterthwaite(self, contrast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Variance and Satterthwaite df of each row ``l`` of a contrast matrix.

        Notes
        -----
        ``v(l) = l' V(varpar) l``, ``g_k = l' (dV / d varpar_k) l`` and
        ``df = 2 v^2 / (g' W g)`` with ``W = vcov(varpar)`` (``lmerTest::contest1D``).

        Validated against lmerTest 3.1-3 ``contest1D`` / ``summary`` (see ``tests/reference``).
        """
        mat = self._as_matrix(contrast)
        var = np.einsum("ij,jk,ik->i", mat, self.vcov_beta, mat)
        grad = np.einsum("ij,ajk,ik->ia", mat, self.jacobian, mat)
        denom = np.einsum("ia,ab,ib->i", grad, self.vcov_varpar, grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            df = 2.0 * var**2 / denom
        return var, df

    def variance_and_df(self, contrast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Variance and denominator df of each row of a contrast matrix by :attr:`ddf_method`.

        Satterthwaite here (:meth:`satterthwaite`); :class:`KenwardRogerInference` overrides it.
        """
        return self.satterthwaite(contrast)

    def contrast(
        self,
        contrast: FloatArray | Sequence[float] | dict[str, float],
        rhs: float = 0.0,
        level: float = 0.95,
        labels: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """t-test of each row of ``L beta = rhs`` with Satterthwaite (or Kenward-Roger) df.

        Returns
        -------
        polars.DataFrame
            Columns ``term, estimate, se, df, t, p, ci_low, ci_high``.

        Notes
        -----
        ``t = (l' beta - rhs) / sqrt(l' V l)``, ``p = 2 P(T_df > |t|)``, CI ``l' beta +- t_{df, 1-a/2} se``.

        Validated against lmerTest 3.1-3 ``contest(m, L, joint = FALSE, confint = TRUE)``.
        """
        mat = self._as_matrix(contrast)
        est = mat @ self.beta
        var, df = self.variance_and_df(mat)
        se = np.sqrt(var)
        t = (est - rhs) / se
        p = 2.0 * t_sf(np.abs(t), df)
        q = t_ppf(0.5 + level / 2.0, df)
        if labels is None:
            labels = [f"contrast {i + 1}" for i in range(mat.shape[0])]
        return pl.DataFrame(
            {
                "term": list(labels),
                "estimate": est,
                "se": se,
                "df": df,
                "t": t,
                "p": p,
                "ci_low": est - q * se,
                "ci_high": est + q * se,
            }
        )

    def f_test(self, contrast: FloatArray, rhs: FloatArray | float = 0.0, eps: float = 1.49e-8) -> FTest:
        """Joint F-test of ``L beta = rhs`` with Satterthwaite denominator df (``lmerTest::contestMD``).

        Notes
        -----
        With the eigen-decomposition ``L V L' = P D P'`` (rank ``q``), ``F = sum_m (P_m' (L beta - rhs))^2 /
        d_m / q``; each ``t_m`` gets its own Satterthwaite ``nu_m`` and the denominator df is
        ``2 E / (E - q)`` with ``E = sum nu_m / (nu_m - 2)`` (2 if any ``nu_m <= 2``).
        """
        mat = self._as_matrix(contrast)
        vl = mat @ self.vcov_beta @ mat.T
        vals, vecs = np.linalg.eigh(vl)
        vals, vecs = vals[::-1], vecs[:, ::-1]
        pos = vals > max(eps * vals[0], 0.0)
        q = int(pos.sum())
        ptl = (vecs.T @ mat)[:q]
        diff = ptl @ self.beta - (vecs.T @ np.broadcast_to(np.asarray(rhs, dtype=float), (mat.shape[0],)))[:q]
        f = float(np.sum(diff**2 / vals[:q]) / q)
        grad = np.einsum("ij,ajk,ik->ia", ptl, self.jacobian, ptl)
        nu = 2.0 * vals[:q] ** 2 / np.einsum("ia,ab,ib->i", grad, self.vcov_varpar, grad)
        if q == 1:
            ddf = float(nu[0])
        elif np.all(np.abs(np.diff(nu)) < 1e-8):
            ddf = float(nu.mean())
        elif np.any(nu <= 2):
            ddf = 2.0
        else:
            e = float(np.sum(nu / (nu - 2)))
            ddf = 2 * e / (e - q)
        return {"f": f, "num_df": float(q), "den_df": ddf, "p": float(f_sf(f, q, ddf))}


def satterthwaite_from_deviance(
    names: Sequence[str],
    beta: FloatArray,
    varpar: FloatArray,
    covbeta: Callable[[FloatArray], FloatArray],
    deviance: Callable[[FloatArray], float] | None = None,
    gradient: Callable[[FloatArray], FloatArray] | None = None,
    hessian: FloatArray | None = None,
) -> WaldInference:
    """Build :class:`WaldInference` from an estimator's ``vcov(beta)(varpar)`` and deviance.

    Parameters
    ----------
    names, beta : coefficient names and estimates.
    varpar : numpy.ndarray
        Variance parameters at the optimum (``(theta, sigma)`` for lme4-type models).
    covbeta : callable
        ``varpar -> vcov(beta)``.
    deviance, gradient : callable, optional
        The deviance in ``varpar`` and/or its gradient; the Hessian is taken from the gradient when given.
    hessian : numpy.ndarray, optional
        A precomputed Hessian of the deviance (overrides ``deviance``/``gradient``).

    Returns
    -------
    WaldInference

    Notes
    -----
    ``vcov(varpar) = 2 H^+`` (positive eigenvalues only) and ``J_k = d vcov(beta) / d varpar_k``, by central
    differences (of the analytic gradient for ``H``), as ``lmerTest:::as_lmerModLT`` does with ``numDeriv``.
    """
    varpar = np.asarray(varpar, dtype=float)
    if hessian is None:
        if gradient is None and deviance is None:
            raise ModelSpecificationError(
                "satterthwaite_from_deviance needs a deviance, a gradient or a Hessian"
            )
        hessian = numerical_hessian(deviance, varpar, gradient=gradient)  # type: ignore[arg-type]
    vcov_vp, eig = vcov_varpar_from_hessian(hessian)
    jac = numerical_jacobian(covbeta, varpar)
    return WaldInference(
        names=tuple(names),
        beta=np.asarray(beta, dtype=float),
        vcov_beta=np.asarray(covbeta(varpar)),
        jacobian=jac,
        vcov_varpar=vcov_vp,
        hessian_eigenvalues=eig,
    )


@dataclass(frozen=True)
class KenwardRoger:
    """The Kenward-Roger adjustment at the REML estimate (:func:`kenward_roger`).

    Attributes
    ----------
    phi : numpy.ndarray
        ``(p, p)`` unadjusted ``Phi = (X' V^-1 X)^-1``.
    phi_adjusted : numpy.ndarray
        ``(p, p)`` adjusted covariance of beta, ``Phi_A``.
    p_mats : numpy.ndarray
        ``(k, p, p)``: ``P_a = X' (dV^-1 / d gamma_a) X``.
    w : numpy.ndarray
        ``(k, k)``: inverse expected (REML) information of the covariance parameters ``gamma``.
    condition : float
        Smallest absolute eigenvalue of ``2 x`` the expected information (``pbkrtest``'s ``condi``; a
        generalised inverse is used below ``1e-10``).
    """

    phi: FloatArray
    phi_adjusted: FloatArray
    p_mats: FloatArray
    w: FloatArray
    condition: float

    def _a1_a2(self, mat: FloatArray) -> tuple[float, float]:
        theta = mat.T @ np.linalg.solve(mat @ self.phi @ mat.T, mat)
        u = np.einsum("ij,jk,akl,lm->aim", theta, self.phi, self.p_mats, self.phi)  # Theta Phi P_a Phi
        tr = np.einsum("aii->a", u)
        a1 = float(tr @ self.w @ tr)
        a2 = float(np.einsum("ab,aij,bji->", self.w, u, u))
        return a1, a2

    def ddf_1d(self, contrast: FloatArray) -> FloatArray:
        """Kenward-Roger df of each row ``l`` of a contrast matrix (``pbkrtest::Lb_ddf`` with one row).

        Notes
        -----
        With one row ``Theta = l l' / (l' Phi l)``, so ``A1 = A2 = g' W g``, ``g_a = l' Phi P_a Phi l /
        (l' Phi l)``, and the df follow from :func:`_kr_ddf` with ``q = 1``.
        """
        mat = np.atleast_2d(np.asarray(contrast, dtype=float))
        v = np.einsum("ij,jk,ik->i", mat, self.phi, mat)
        pl_ = np.einsum("ij,jk,akl,lm,im->ia", mat, self.phi, self.p_mats, self.phi, mat)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = pl_ / v[:, None]
        a = np.einsum("ia,ab,ib->i", g, self.w, g)
        return _kr_ddf(a, a, 1)[0]

    def f_test(
        self, beta: FloatArray, contrast: FloatArray, rhs: FloatArray | float = 0.0
    ) -> KenwardRogerFTest:
        """Kenward-Roger F-test of ``L beta = rhs`` (``pbkrtest::KRmodcomp`` / ``pbkrtest:::.KR_adjust``).

        Notes
        -----
        ``Theta = L' (L Phi L')^-1 L``, ``A1 = sum_ab W_ab tr(Theta Phi P_a Phi) tr(Theta Phi P_b Phi)``,
        ``A2 = sum_ab W_ab tr(Theta Phi P_a Phi Theta Phi P_b Phi)``; ``F = lambda W / q`` with the Wald
        statistic ``W`` on ``Phi_A``, denominator df ``m`` and scale ``lambda = m (1 - A2 / q) / (m - 2)``
        (Kenward & Roger 1997, eqs. 3.7-3.12).
        """
        mat = np.atleast_2d(np.asarray(contrast, dtype=float))
        q = int(np.linalg.matrix_rank(mat))
        if q < mat.shape[0]:
            raise ModelSpecificationError(
                f"the contrast matrix has rank {q} but {mat.shape[0]} rows; "
                "remove the linearly dependent rows"
            )
        a1, a2 = self._a1_a2(mat)
        ddf, scale = _kr_ddf(np.array([a1]), np.array([a2]), q)
        d = mat @ np.asarray(beta, dtype=float) - np.broadcast_to(
            np.asarray(rhs, dtype=float), (mat.shape[0],)
        )
        wald = float(d @ np.linalg.solve(mat @ self.phi_adjusted @ mat.T, d))
        f_u = wald / q
        m, lam = float(ddf[0]), float(scale[0])
        return {
            "f": lam * f_u,
            "num_df": float(q),
            "den_df": m,
            "p": float(f_sf(lam * f_u, q, m)),
            "f_scaling": lam,
            "f_unscaled": f_u,
        }


class KenwardRogerFTest(FTest):
    """A Kenward-Roger F-test: :class:`FTest` plus the scale factor ``lambda`` and the unscaled ``W / q``."""

    f_scaling: float
    f_unscaled: float


def _kr_ddf(a1: FloatArray, a2: FloatArray, q: int) -> tuple[FloatArray, FloatArray]:
    """Denominator df ``m`` and F scale ``lambda`` from ``A1``, ``A2`` (``pbkrtest:::.KR_adjust``).

    Notes
    -----
    ``B = (A1 + 6 A2) / (2q)``, ``g = ((q+1) A1 - (q+4) A2) / ((q+2) A2)``, ``c_1, c_2, c_3 = (g, q - g,
    q + 2 - g) / (3q + 2(1 - g))``, ``rho = (1 - A2/q)^2 / (1 - c_2 B)^2 (1 + c_1 B) / (1 - c_3 B) / q``,
    ``m = 4 + (q + 2) / (q rho - 1)`` and ``lambda = m (1 - A2/q) / (m - 2)`` (1 when ``|m - 2| < 0.01``).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (a1 + 6.0 * a2) / (2.0 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        den = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        v0 = 1.0 + c1 * b
        v1 = 1.0 - c2 * b
        v2 = 1.0 - c3 * b
        v0 = np.where(np.abs(v0) < 1e-10, 0.0, v0)
        num = 1.0 - a2 / q
        ratio = np.where((np.abs(num) < 1e-14) & (np.abs(v1) < 1e-14), 1.0, num / v1)
        rho = ratio**2 * v0 / v2 / q
        ddf = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scale = np.where(np.abs(ddf - 2.0) < 0.01, 1.0, ddf * num / (ddf - 2.0))
    return ddf, scale


def kenward_roger(
    phi_inv: FloatArray,
    p_mats: FloatArray,
    q_mats: FloatArray,
    ktrace: FloatArray,
    w: FloatArray | None = None,
    r_mats: FloatArray | None = None,
) -> KenwardRoger:
    """Kenward-Roger adjusted covariance of beta for a covariance structure linear in its parameters.

    Parameters
    ----------
    phi_inv : numpy.ndarray
        ``(p, p)``: ``X' V^-1 X`` at the REML estimate.
    p_mats : numpy.ndarray
        ``(k, p, p)``: ``P_a = -X' V^-1 G_a V^-1 X`` with ``V = sum_a gamma_a G_a``.
    q_mats : numpy.ndarray
        ``(k, k, p, p)``: ``Q_ab = X' V^-1 G_a V^-1 G_b V^-1 X``.
    ktrace : numpy.ndarray
        ``(k, k)``: ``tr(V^-1 G_a V^-1 G_b)``.
    w : numpy.ndarray, optional
        ``(k, k)`` covariance of ``gamma`` to use instead of the inverse expected information (SAS PROC
        MIXED and mmrm use the inverse observed information, ``2 H^-1`` of the REML criterion).
    r_mats : numpy.ndarray, optional
        ``(k, k, p, p)``: ``R_ab = X' V^-1 (d^2 V / d gamma_a d gamma_b) V^-1 X`` of a covariance that is not
        linear in ``gamma`` (omitted: 0, the linear or "Kenward-Roger-linear" adjustment).

    Returns
    -------
    KenwardRoger

    Notes
    -----
    ``Phi = (X'V^-1X)^-1``; ``2 I_E = [tr(V^-1 G_a V^-1 G_b) - 2 tr(Phi Q_ab) + tr(Phi P_a Phi P_b)]`` (the
    expected REML information, times 2), ``W = 2 (2 I_E)^-1`` (a generalised inverse when its smallest
    absolute eigenvalue is below ``1e-10``) and

    ``Phi_A = Phi + 2 Phi [sum_ab W_ab (Q_ab - P_a Phi P_b - R_ab / 4)] Phi``

    with ``R_ab = 0`` since ``V`` is linear in ``gamma`` (Kenward & Roger 1997, eq. 3.3; ``pbkrtest``'s
    ``vcovAdj``). Any estimator whose ``V`` is linear in its covariance parameters (the growth model in
    ``VarCorr`` elements and ``sigma^2``) supplies the four summed blocks; their cost is the estimator's.

    Validated against pbkrtest 0.5.2 ``vcovAdj(m)``, ``Lb_ddf`` and ``KRmodcomp`` (via lmerTest 3.1-3
    ``summary(m, ddf = "Kenward-Roger")``; ``tests/reference/lmm/make_kr_reference.R``).
    """
    phi = np.linalg.inv(phi_inv)
    phi = 0.5 * (phi + phi.T)
    pp = np.asarray(p_mats, dtype=float)
    qq = np.asarray(q_mats, dtype=float)
    phi_p = np.einsum("ij,ajk->aik", phi, pp)  # Phi P_a
    ie2 = (
        np.asarray(ktrace, dtype=float)
        - 2.0 * np.einsum("ij,abji->ab", phi, qq)
        + np.einsum("aij,bji->ab", phi_p, phi_p)
    )
    ie2 = 0.5 * (ie2 + ie2.T)
    condition = float(np.min(np.abs(np.linalg.eigvalsh(ie2))))
    if w is not None:
        w = np.asarray(w, dtype=float)
    elif condition > 1e-10:
        w = 2.0 * np.linalg.inv(ie2)
    else:  # MASS::ginv's tolerance
        w = 2.0 * np.linalg.pinv(ie2, rcond=float(np.sqrt(np.finfo(float).eps)), hermitian=True)
    w = 0.5 * (w + w.T)
    pphip = np.einsum("aij,bjk->abik", np.einsum("aij,jk->aik", pp, phi), pp)  # P_a Phi P_b
    inner = qq - pphip
    if r_mats is not None:
        inner = inner - 0.25 * np.asarray(r_mats, dtype=float)
    uu = np.einsum("ab,abij->ij", w, inner)
    adj = phi + 2.0 * phi @ uu @ phi
    return KenwardRoger(phi=phi, phi_adjusted=0.5 * (adj + adj.T), p_mats=pp, w=w, condition=condition)


@dataclass(frozen=True)
class KenwardRogerInference(WaldInference):
    """:class:`WaldInference` whose t- and F-tests use the Kenward-Roger adjusted covariance and df.

    ``vcov_beta``, ``jacobian`` and ``vcov_varpar`` keep the unadjusted (Satterthwaite) pieces, so
    :meth:`satterthwaite` still answers with Satterthwaite; :meth:`variance_and_df`, :meth:`contrast` and
    :meth:`f_test` use ``kr``.
    """

    kr: KenwardRoger | None = None

    ddf_method: ClassVar[str] = "kenward-roger"

    def _kr(self) -> KenwardRoger:
        if self.kr is None:
            raise ModelSpecificationError("KenwardRogerInference was built without its adjustment (kr=None)")
        return self.kr

    @property
    def vcov_adjusted(self) -> FloatArray:
        """The Kenward-Roger adjusted covariance of beta, ``Phi_A``."""
        return self._kr().phi_adjusted

    def variance_and_df(self, contrast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``l' Phi_A l`` and the Kenward-Roger df of each row (``contest1D(ddf = "Kenward-Roger")``)."""
        mat = self._as_matrix(contrast)
        kr = self._kr()
        return np.einsum("ij,jk,ik->i", mat, kr.phi_adjusted, mat), kr.ddf_1d(mat)

    def f_test(self, contrast: FloatArray, rhs: FloatArray | float = 0.0, eps: float = 1.49e-8) -> FTest:
        """Kenward-Roger F-test of ``L beta = rhs`` (:meth:`KenwardRoger.f_test`; ``eps`` is unused)."""
        return self._kr().f_test(self.beta, self._as_matrix(contrast), rhs)


@dataclass(frozen=True)
class AsymptoticInference(WaldInference):
    """:class:`WaldInference` with Wald z tests (``df = inf``) and chi-squared joint tests, as ``glmer``.

    For models whose fixed effects have no finite-sample reference distribution (generalised linear mixed
    models): ``contrast`` gives ``z = l' beta / sqrt(l' V l)`` with normal p-values and intervals (in the
    ``t`` column, ``df`` infinite); ``f_test`` gives ``F = W / q`` with ``W`` the Wald chi-squared statistic
    on ``q`` df, ``den_df`` infinite and ``p = P(chi2_q > W)``.

    Validated against lme4 1.1-31 ``summary(glmer)`` (``tests/reference/glmm``).
    """

    ddf_method: ClassVar[str] = "asymptotic"

    def variance_and_df(self, contrast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``l' V l`` and an infinite df for each row of the contrast matrix."""
        mat = self._as_matrix(contrast)
        var = np.einsum("ij,jk,ik->i", mat, self.vcov_beta, mat)
        return var, np.full(mat.shape[0], np.inf)

    def f_test(self, contrast: FloatArray, rhs: FloatArray | float = 0.0, eps: float = 1.49e-8) -> FTest:
        """Wald chi-squared test of ``L beta = rhs`` reported as ``F = W / q`` with ``den_df = inf``."""
        mat = self._as_matrix(contrast)
        vl = mat @ self.vcov_beta @ mat.T
        vals, vecs = np.linalg.eigh(vl)
        pos = vals > max(eps * float(vals.max()), 0.0)
        q = int(pos.sum())
        diff = vecs[:, pos].T @ (
            mat @ self.beta - np.broadcast_to(np.asarray(rhs, dtype=float), (mat.shape[0],))
        )
        w = float(np.sum(diff**2 / vals[pos]))
        return {"f": w / q, "num_df": float(q), "den_df": float("inf"), "p": float(chi2_sf(w, q))}


@dataclass(frozen=True)
class KenwardRogerLinearInference(KenwardRogerInference):
    """:class:`KenwardRogerInference` of the first-order ("linear") adjustment, ``R_ab`` left out."""

    ddf_method: ClassVar[str] = "kenward-roger-linear"


def with_kenward_roger(wald: WaldInference, kr: KenwardRoger, ddf: str) -> KenwardRogerInference:
    """The Wald pieces of ``wald`` with the Kenward-Roger adjustment ``kr`` for ``ddf`` (a KR method)."""
    cls = KenwardRogerLinearInference if ddf == "kenward-roger-linear" else KenwardRogerInference
    return cls(
        names=wald.names,
        beta=wald.beta,
        vcov_beta=wald.vcov_beta,
        jacobian=wald.jacobian,
        vcov_varpar=wald.vcov_varpar,
        hessian_eigenvalues=wald.hessian_eigenvalues,
        kr=kr,
    )


@dataclass(frozen=True)
class LikelihoodRatioTest:
    """Result of a likelihood-ratio test of nested models (as ``anova(m0, m1)`` prints it)."""

    loglik_small: float
    loglik_large: float
    df_small: int
    df_large: int
    statistic: float
    df: int
    p: float
    refitted_ml: bool

    def to_dict(self) -> dict[str, float | int | bool]:
        """Plain-data form."""
        return dict(self.__dict__)


def likelihood_ratio(
    loglik_small: float, loglik_large: float, df_small: int, df_large: int, refitted_ml: bool
) -> LikelihoodRatioTest:
    """Chi-square likelihood-ratio test of a smaller model nested in a larger one.

    Notes
    -----
    ``chi2 = 2 (l_1 - l_0)`` on ``k_1 - k_0`` df, ``p = P(chi2_df > chi2)``.

    Validated against ``anova(m0, m1)`` of lme4 1.1-31 (refits REML fits with ML).
    """
    if df_large <= df_small:
        raise ModelSpecificationError(
            f"the larger model must have more parameters ({df_large} vs {df_small}); swap the arguments"
        )
    stat = max(2.0 * (loglik_large - loglik_small), 0.0)
    dfd = df_large - df_small
    return LikelihoodRatioTest(
        loglik_small,
        loglik_large,
        df_small,
        df_large,
        stat,
        dfd,
        float(chi2_sf(stat, dfd)),
        refitted_ml,
    )


# --------------------------------------------------------------------------------------------------
# fixed (counting) denominator df: SAS DDFM=BW and DDFM=RESIDUAL
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoefficientDfInference(WaldInference):
    """:class:`WaldInference` whose df are counts fixed per coefficient (``coef_df``), not estimated.

    A contrast gets the smallest df of the coefficients it involves (non-zero weights), as mmrm's
    ``h_df_min_bw``; t- and F-tests use ``vcov_beta`` (model-based or empirical) as they are.
    """

    coef_df: FloatArray | None = None

    def _coef_df(self) -> FloatArray:
        if self.coef_df is None:
            raise ModelSpecificationError(f"{type(self).__name__} was built without its df (coef_df=None)")
        return self.coef_df

    def _df_of(self, mat: FloatArray) -> FloatArray:
        involved = np.abs(mat) > 0
        out: FloatArray = np.where(involved, self._coef_df()[None, :], np.inf).min(axis=1)
        return out

    def variance_and_df(self, contrast: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``l' V l`` and the smallest df of the coefficients each row involves."""
        mat = self._as_matrix(contrast)
        return np.einsum("ij,jk,ik->i", mat, self.vcov_beta, mat), self._df_of(mat)

    def f_test(self, contrast: FloatArray, rhs: FloatArray | float = 0.0, eps: float = 1.49e-8) -> FTest:
        """Wald F-test of ``L beta = rhs`` on ``q = rank(L V L')`` and the smallest involved df.

        Notes
        -----
        ``F = (L beta - rhs)' (L V L')^+ (L beta - rhs) / q`` (eigenvalues above ``eps`` times the
        largest), denominator df the minimum over every coefficient with a non-zero weight in ``L``.
        """
        mat = self._as_matrix(contrast)
        vals, vecs = np.linalg.eigh(mat @ self.vcov_beta @ mat.T)
        vals, vecs = vals[::-1], vecs[:, ::-1]
        q = int((vals > max(eps * vals[0], 0.0)).sum())
        rhs_v = np.broadcast_to(np.asarray(rhs, dtype=float), (mat.shape[0],))
        diff = (vecs.T @ (mat @ self.beta - rhs_v))[:q]
        f = float(np.sum(diff**2 / vals[:q]) / q)
        ddf = float(self._df_of(np.abs(mat).sum(axis=0)[None, :])[0])
        return {"f": f, "num_df": float(q), "den_df": ddf, "p": float(f_sf(f, q, ddf))}


@dataclass(frozen=True)
class BetweenWithinInference(CoefficientDfInference):
    """Between-within df (SAS ``DDFM=BW``, :func:`between_within_df`)."""

    ddf_method: ClassVar[str] = "between-within"


@dataclass(frozen=True)
class ResidualInference(CoefficientDfInference):
    """Residual df ``N - rank(X)`` for every contrast (SAS ``DDFM=RESIDUAL``, mmrm ``"Residual"``)."""

    ddf_method: ClassVar[str] = "residual"


def between_within_df(
    x: FloatArray, subject: IntArray, term_columns: Sequence[tuple[str, Sequence[int]]]
) -> FloatArray:
    """Between-within df of every coefficient (SAS PROC MIXED ``DDFM=BW``).

    Parameters
    ----------
    x : numpy.ndarray
        ``N x p`` fixed-effects design of the fitted rows.
    subject : numpy.ndarray
        Subject code of each row.
    term_columns : sequence of (term, columns)
        The columns of each model term (the intercept is a term).

    Returns
    -------
    numpy.ndarray
        ``(p,)``: ``S - rank(X_B)`` for the columns of between-subject terms, ``N - rank(X) - (S -
        rank(X_B))`` for the others.

    Notes
    -----
    As SAS documents it: a term whose columns change within some subject is a within-subject term,
    otherwise (the intercept included) a between-subject term; ``X_B`` are the columns of the
    between-subject terms and ``S`` the number of subjects with a fitted row. The residual df ``N -
    rank(X)`` split into ``S - rank(X_B)`` between and the rest within. SAS further partitions the within
    df when several within-subject terms contain classification variables; this (as mmrm) does not.
    mmrm also gives the intercept the within df; SAS (and this) the between df.

    Validated against SAS PROC MIXED ``EMPIRICAL`` listings of openpharma/mmrm (``DDFM=BW`` with
    ``FEV1 = ARMCD``: 195 for the intercept and ARMCD) and mmrm's ``h_df_bw_calc`` counts.
    """
    order = np.argsort(subject, kind="stable")
    xs, s = x[order], subject[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    spread = np.maximum.reduceat(xs, starts, axis=0) - np.minimum.reduceat(xs, starts, axis=0)
    scale = np.maximum(np.abs(x).max(axis=0), 1e-300)
    varies = (spread > 1e-10 * scale).any(axis=0)
    between = np.zeros(x.shape[1], dtype=bool)
    for _, cols in term_columns:  # loop over model terms
        c = list(cols)
        between[c] = not bool(varies[c].any())
    n_sub = starts.shape[0]
    df_between = n_sub - (int(np.linalg.matrix_rank(x[:, between])) if between.any() else 0)
    df_within = x.shape[0] - int(np.linalg.matrix_rank(x)) - df_between
    return np.where(between, float(df_between), float(df_within))


def type3_contrasts(
    x: FloatArray, x_sum: FloatArray, term_columns: Sequence[tuple[str, Sequence[int]]]
) -> list[tuple[str, FloatArray]]:
    """SAS-style Type III hypothesis matrices of every term except the intercept.

    Parameters
    ----------
    x : numpy.ndarray
        ``N x p`` design as fitted (treatment coding of factors).
    x_sum : numpy.ndarray
        The same model with sum-to-zero coding of every factor (same column space, same columns per term).
    term_columns : sequence of (term, columns)

    Returns
    -------
    list of (term, numpy.ndarray)
        Each term's ``L`` (rows = the term's columns), in the fitted parametrisation.

    Notes
    -----
    Under sum coding the Type III hypothesis of a term is that its own coefficients are zero; with
    ``X_s beta_s = X beta``, ``beta_s = T beta`` and ``T = (X_s' X_s)^-1 X_s' X``, so ``L = T[cols]``
    (entries below ``sqrt(eps)`` set to 0). Numeric covariates are not centred: a factor's Type III test
    in an interaction with a covariate is at covariate 0, as SAS's. mmrm's ``h_type3_contrasts`` (its
    ``car::Anova(type = "III")``) is the same construction.

    Validated against SAS PROC MIXED ``htype=3`` (openpharma/mmrm design/anova, ``test3_1``, ``test3_2``)
    and the Type 3 table of its weighted unstructured listing (design/SAS/sas_weighted.txt).
    """
    tmat = np.asarray(np.linalg.solve(x_sum.T @ x_sum, x_sum.T @ x), dtype=np.float64)
    tmat[np.abs(tmat) < np.sqrt(np.finfo(float).eps)] = 0.0
    return [(term, tmat[list(cols)]) for term, cols in term_columns if term != "(Intercept)"]
