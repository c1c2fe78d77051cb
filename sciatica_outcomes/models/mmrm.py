"""Mixed model for repeated measures (MMRM): visit as a category, structured residual covariance, REML.

The model for subject ``i`` observed at the visit subset ``S_i`` of ``T`` scheduled visits is

.. math::

    y_i = X_i \\beta + e_i, \\qquad e_i \\sim N(0, \\Sigma_{S_i S_i}(\\theta)),

with no random effects: all within-subject dependence is in the ``T x T`` covariance ``Sigma`` of the visits,
unstructured or structured (compound symmetry, AR(1), Toeplitz, ante-dependence, and their heterogeneous-
variance forms), or spatial exponential in the distance of the observations' coordinates (unequally spaced,
subject-specific times); optionally one covariance matrix per level of a group (the arm).
Subjects with any subset of visits contribute through their observed visits (likelihood-based, valid under
missing at random).

The likelihood is evaluated batched by missingness pattern: one vectorised pass over the rows computes, per
pattern ``k`` (visit set ``S_k``, ``n_k`` subjects), the cross-product tensor
``M_k[a, :, b, :] = sum_i z_ia z_ib'`` of the rows ``z = [x, y]``; every later evaluation of the REML
criterion, its gradient and the Satterthwaite quantities costs ``O(patterns x |S_k|^2 p^2)``, independent of
the number of subjects.

Public API: :class:`MMRM` (estimator) and :class:`MMRMResult` (frozen result), :data:`COVARIANCE_STRUCTURES`.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self, TypedDict, cast

import numpy as np
import pandas as pd
import polars as pl
import scipy.linalg
from scipy import optimize

from sciatica_outcomes._typing import FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.base import Estimator, FrameLike
from sciatica_outcomes.models.emmeans import EmmeansResult, _column_mean, emmeans
from sciatica_outcomes.models.formula import Design, ModelFormula, parse_formula
from sciatica_outcomes.models.inference import (
    BetweenWithinInference,
    FTest,
    ResidualInference,
    WaldInference,
    between_within_df,
    check_ddf,
    kenward_roger,
    type3_contrasts,
    vcov_varpar_from_hessian,
    with_kenward_roger,
)
from sciatica_outcomes.models.results import ModelResult
from sciatica_outcomes.models.sandwich import (
    _weight_column,
    check_vcov,
    empirical_inference,
    observation_weights,
    pattern_blocks,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["COVARIANCE_STRUCTURES", "MMRM", "MMRMDiagnostics", "MMRMResult", "RowsDropped", "fit_mmrm"]


class RowsDropped(TypedDict):
    """Rows read and rows dropped, by reason (never silently)."""

    rows_in: int
    missing_subject_or_visit: int
    missing_response: int
    missing_covariate: int


class _OptimiserReport(TypedDict):
    optimizer: str
    iterations: int
    newton_steps: int
    criterion: float
    gradient_norm: float
    newton_decrement: float
    converged: bool
    message: str


class MMRMDiagnostics(_OptimiserReport):
    """How the optimum was reached and how good it is (``MMRMResult.diagnostics``)."""

    hessian_positive_definite: bool
    hessian_min_eigenvalue: float
    boundary: bool
    n_patterns: int
    rows_dropped: RowsDropped
    fit_seconds: float
    #: where the pattern statistics were computed: "memory" (:meth:`MMRM.fit`) or "duckdb" (``fit_from``)
    engine: str
    #: seconds of the SQL statistics passes of ``fit_from`` (None in memory)
    statistics_seconds: float | None


#: Covariance structures of the visits and their meaning.
COVARIANCE_STRUCTURES: dict[str, str] = {
    "us": "unstructured: T variances and T(T-1)/2 covariances",
    "cs": "compound symmetry: one variance, one correlation",
    "csh": "heterogeneous compound symmetry: T variances, one correlation",
    "ar1": "first-order autoregressive over visit positions: one variance, rho^|i-j|",
    "ar1h": "heterogeneous AR(1): T variances, rho^|i-j|",
    "toep": "Toeplitz: one variance, T-1 band correlations",
    "toeph": "heterogeneous Toeplitz: T variances, T-1 band correlations",
    "ad": "first-order ante-dependence: one variance, T-1 correlations of successive visits, "
    "corr(s, t) = rho_s ... rho_(t-1)",
    "adh": "heterogeneous ante-dependence (SAS ANTE(1)): T variances, T-1 successive correlations",
    "sp_exp": "spatial exponential on numeric coordinates (SAS SP(EXP)): sigma^2 exp(-d / range), d the "
    "Euclidean distance of two observations' coordinates (unequally spaced, subject-specific times)",
}

_LOG2PI = math.log(2.0 * math.pi)
#: relative rounding level of one evaluation of the criterion (sums over patterns; tests/models/tolerances.py)
_ROUNDING = 1e-12
#: sp_exp's covariance is a matrix over all distinct coordinate points (times groups): its memory and the
#: cost of one evaluation grow with their square, so more points are refused (round the coordinates)
MAX_SP_EXP_POINTS = 2000
_HETERO = {"csh", "ar1h", "toeph", "adh"}


# --------------------------------------------------------------------------------------------------
# covariance structures: Sigma(theta), written with operations that accept complex theta (complex-step
# derivatives give dSigma/dtheta to machine precision)
# --------------------------------------------------------------------------------------------------


def _n_theta(structure: str | _CovSpec, t: int) -> int:
    if isinstance(structure, _CovSpec):
        return structure.n_groups * _n_theta(structure.name, structure.t)
    if structure == "sp_exp":
        return 2  # log sd, log range
    n_sd = t if structure in _HETERO or structure == "us" else 1
    if structure == "us":
        return t * (t + 1) // 2
    n_cor = {"cs": 1, "csh": 1, "ar1": 1, "ar1h": 1}.get(structure, t - 1)  # toep(h), ad(h): T - 1
    return n_sd + (n_cor if t > 1 else 0)


def _cs_lower(t: int) -> float:
    return -1.0 / (t - 1) if t > 1 else -1.0


def _pacf_to_acf(phi: FloatArray) -> FloatArray:
    """Autocorrelations ``r_1..r_K`` from partial autocorrelations ``phi_1..phi_K`` (Durbin-Levinson)."""
    k_max = phi.shape[0]
    r = np.zeros(k_max, dtype=phi.dtype)
    if k_max == 0:
        return r
    a = np.zeros(k_max, dtype=phi.dtype)  # AR coefficients of the current order
    r[0] = phi[0]
    a[0] = phi[0]
    for k in range(1, k_max):  # loop over lags (few)
        prev = a[:k].copy()
        r[k] = phi[k] * (1.0 - prev @ r[:k]) + prev @ r[:k][::-1]
        a[:k] = prev - phi[k] * prev[::-1]
        a[k] = phi[k]
    return r


def _acf_to_pacf(r: FloatArray) -> FloatArray:
    """Inverse of :func:`_pacf_to_acf` (for starting values)."""
    k_max = r.shape[0]
    phi = np.zeros(k_max)
    a = np.zeros(k_max)
    for k in range(k_max):
        prev = a[:k].copy()
        den = 1.0 - prev @ r[:k]
        num = r[k] - prev @ r[:k][::-1]
        phi[k] = num / den if den > 1e-12 else 0.0
        a[:k] = prev - phi[k] * prev[::-1]
        a[k] = phi[k]
    return phi


def _sigma(theta: FloatArray, structure: str | _CovSpec, t: int) -> FloatArray:
    """The ``T x T`` covariance of the visits for the unconstrained parameters ``theta``.

    For a :class:`_CovSpec` (group-specific or spatial) the block-diagonal covariance of all its positions
    (``t`` is then ignored).
    """
    if isinstance(structure, _CovSpec):
        spec = structure
        q = _n_theta(spec.name, spec.t)
        return _block_diag(
            [
                _sigma_block(theta[g * q : (g + 1) * q], spec.name, spec.t, spec.distances)
                for g in range(spec.n_groups)
            ]
        )
    return _sigma_block(theta, structure, t, None)


def _sigma_block(theta: FloatArray, structure: str, t: int, distances: FloatArray | None) -> FloatArray:
    """One group's covariance of its ``t`` positions (visits, or coordinate points with ``distances``)."""
    if structure == "sp_exp":
        if distances is None:  # pragma: no cover - _CovSpec always carries them
            raise ValueError("sp_exp needs the distances of its positions")
        return cast("FloatArray", np.exp(2.0 * theta[0]) * np.exp(-distances / np.exp(theta[1])))
    if structure == "us":
        lower = np.zeros((t, t), dtype=theta.dtype)
        lower[np.diag_indices(t)] = np.exp(theta[:t])
        rows, cols = np.tril_indices(t, -1)
        lower[rows, cols] = theta[t:]
        return lower @ lower.T
    n_sd = t if structure in _HETERO else 1
    sd = np.exp(theta[:n_sd]) * np.ones(t)
    rest = theta[n_sd:]
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    if t == 1:
        corr = np.ones((1, 1), dtype=theta.dtype)
    elif structure in ("cs", "csh"):
        lo = _cs_lower(t)
        rho = lo + (1.0 - lo) / (1.0 + np.exp(-rest[0]))
        corr = rho * np.ones((t, t), dtype=theta.dtype) + (1.0 - rho) * np.eye(t)
    elif structure in ("ar1", "ar1h"):
        rho = np.tanh(rest[0])
        powers = [np.ones((), dtype=theta.dtype)]
        for _ in range(1, t):  # rho^k for k = 0..T-1 (complex-safe integer powers)
            powers.append(powers[-1] * rho)
        corr = np.stack(powers)[lag]
    elif structure in ("ad", "adh"):
        corr = _ante_corr(np.tanh(rest), t)
    else:  # toep, toeph
        acf = _pacf_to_acf(np.tanh(rest))
        corr = np.concatenate([np.ones(1, dtype=theta.dtype), acf])[lag]
    return sd[:, None] * corr * sd[None, :]


@dataclass(frozen=True, eq=False)
class _CovSpec:
    """A covariance structure over ``n_groups`` blocks of ``t`` positions each (block diagonal).

    Positions are the visits (``t = T``, group-specific covariance: SAS ``REPEATED / GROUP=``, mmrm
    ``us(visit | group / subject)``) or, for ``sp_exp``, the distinct coordinate points of the data, with
    ``distances`` their Euclidean distances. Block ``g`` is the covariance of the subjects of group level
    ``g``, with its own parameters: ``theta`` concatenates the blocks' parameters (as ``gamma``, SAS's, does).
    """

    name: str
    t: int
    n_groups: int = 1
    distances: FloatArray | None = None

    def block(self, g: int) -> slice:
        """Rows and columns of group ``g`` in the block-diagonal covariance."""
        return slice(g * self.t, (g + 1) * self.t)


def _structure_name(structure: str | _CovSpec) -> str:
    return structure.name if isinstance(structure, _CovSpec) else structure


def _block_diag(blocks: list[FloatArray]) -> FloatArray:
    """Block-diagonal matrix of equal-sized square blocks (complex-safe)."""
    t = blocks[0].shape[0]
    out = np.zeros((len(blocks) * t, len(blocks) * t), dtype=blocks[0].dtype)
    for g, b in enumerate(blocks):  # loop over the (few) groups
        out[g * t : (g + 1) * t, g * t : (g + 1) * t] = b
    return out


def _closest_pair(distances: FloatArray) -> tuple[int, int]:
    """Two positions at the smallest positive distance (where ``sp_exp``'s range is read off Sigma)."""
    d = np.where(distances > 0, distances, np.inf)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j)


def _ante_corr(rho: FloatArray, t: int) -> FloatArray:
    """Ante-dependence correlations ``corr(s, u) = rho_s rho_(s+1) ... rho_(u-1)`` (complex-safe).

    ``rho_k`` is the correlation of visits ``k`` and ``k + 1``; the matrix is positive definite whenever
    every ``|rho_k| < 1`` (it is the correlation of a non-stationary AR(1) process).
    """
    corr = np.eye(t, dtype=rho.dtype)
    for k in range(1, t):  # band k from band k - 1 (loop over the few lags, vectorised along the band)
        s = np.arange(t - k)
        corr[s, s + k] = corr[s, s + k - 1] * rho[s + k - 1]
    return corr + corr.T - np.eye(t)


#: structures whose Sigma is linear in SAS's parameters (Kenward-Roger = Kenward-Roger-linear)
_LINEAR = ("us", "cs", "toep")


def _powers(rho: Any, t: int) -> Any:
    """``rho^0 .. rho^(T-1)`` by products (complex-safe)."""
    out = [np.ones_like(rho)]
    for _ in range(1, t):
        out.append(out[-1] * rho)
    return np.stack(out)


def _sas_sigma(gamma: FloatArray, structure: str | _CovSpec, t: int) -> FloatArray:
    """``Sigma`` from SAS PROC MIXED's covariance parameters ``gamma`` (complex-safe).

    ``us``: ``UN(i,j)``, the lower triangle; ``cs``: ``CS`` (covariance) and ``Residual``; ``toep``:
    ``TOEP(k)``, the covariance at lag ``k``; ``ar1``: ``Residual`` ``sigma^2`` and ``AR(1)`` ``rho``;
    ``ar1h``, ``csh``: ``Var(1..T)`` and ``rho``; ``toeph``: ``Var(1..T)`` and the lag correlations;
    ``adh``: ``Var(1..T)`` and ``Rho(1..T-1)`` (``ANTE(1)``); ``ad``: ``sigma^2`` and ``Rho(1..T-1)``;
    ``sp_exp``: ``SP(EXP)``, the range ``phi`` of ``sigma^2 exp(-d / phi)``, and ``Residual`` ``sigma^2``. A
    :class:`_CovSpec` concatenates the groups' parameters (SAS's order with ``GROUP=``).
    """
    if isinstance(structure, _CovSpec):
        spec = structure
        q = gamma.shape[0] // spec.n_groups
        blocks = [gamma[g * q : (g + 1) * q] for g in range(spec.n_groups)]
        if spec.name == "sp_exp":
            assert spec.distances is not None
            return _block_diag([b[1] * np.exp(-spec.distances / b[0]) for b in blocks])
        return _block_diag([_sas_sigma(b, spec.name, spec.t) for b in blocks])
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    if structure == "us":
        rows, cols = np.tril_indices(t)
        out = np.zeros((t, t), dtype=gamma.dtype)
        out[rows, cols] = gamma
        out[cols, rows] = gamma
        return out
    if structure == "cs":
        return cast("FloatArray", gamma[0] * np.ones((t, t)) + gamma[1] * np.eye(t))
    if structure == "toep":
        return gamma[lag]
    if structure == "ar1":
        return cast("FloatArray", gamma[0] * _powers(gamma[1], t)[lag])
    if structure == "ad":
        return cast("FloatArray", gamma[0] * _ante_corr(gamma[1:], t))
    sd = np.sqrt(gamma[:t])
    if structure == "ar1h":
        corr = _powers(gamma[t], t)[lag]
    elif structure == "csh":
        corr = gamma[t] * np.ones((t, t)) + (1.0 - gamma[t]) * np.eye(t)
    elif structure == "adh":
        corr = _ante_corr(gamma[t:], t)
    else:  # toeph
        corr = np.concatenate([np.ones(1, dtype=gamma.dtype), gamma[t:]])[lag]
    return cast("FloatArray", sd[:, None] * corr * sd[None, :])


def _sas_gamma(sigma: FloatArray, structure: str | _CovSpec, t: int) -> FloatArray:
    """SAS's covariance parameters of a ``Sigma`` of the structure (inverse of :func:`_sas_sigma`)."""
    if isinstance(structure, _CovSpec):
        spec = structure
        parts = []
        for g in range(spec.n_groups):  # loop over the (few) groups
            blk = sigma[spec.block(g), spec.block(g)]
            if spec.name == "sp_exp":
                assert spec.distances is not None
                i, j = _closest_pair(spec.distances)
                phi = -spec.distances[i, j] / np.log(blk[i, j] / blk[i, i])
                parts.append(np.stack([phi, blk[0, 0]]))
            else:
                parts.append(_sas_gamma(blk, spec.name, spec.t))
        return np.concatenate(parts)
    if structure == "us":
        return sigma[np.tril_indices(t)]
    if structure == "cs":
        return np.stack([sigma[0, 1], sigma[0, 0] - sigma[0, 1]])
    if structure == "toep":
        return sigma[0, :]
    if structure == "ar1":
        return np.stack([sigma[0, 0], sigma[0, 1] / sigma[0, 0]])
    var = np.diagonal(sigma)
    if structure in ("ad", "adh"):
        s = np.arange(t - 1)
        rho = sigma[s, s + 1] / np.sqrt(var[s] * var[s + 1])
        return np.concatenate([var if structure == "adh" else var[:1], rho])
    if structure in ("ar1h", "csh"):
        return np.concatenate([var, np.stack([sigma[0, 1] / np.sqrt(sigma[0, 0] * sigma[1, 1])])])
    return np.concatenate([var, sigma[0, 1:] / np.sqrt(sigma[0, 0] * var[1:])])


def _sas_derivatives(gamma: FloatArray, structure: str | _CovSpec, t: int) -> tuple[FloatArray, FloatArray]:
    """``G_a = dSigma / dgamma_a`` (complex step) and ``H_ab = d^2 Sigma / dgamma_a dgamma_b``.

    ``H`` is 0 for the linear structures and central differences of the complex-step ``G`` otherwise
    (step ``1e-4 max(|gamma_a|, 0.01)``, error ``O(h^2)``, about 1e-8 relative).
    """
    k = gamma.shape[0]

    def first(g: FloatArray) -> FloatArray:
        out = np.empty((k, t, t))
        for a in range(k):  # loop over the (few) covariance parameters
            gc = g.astype(complex)
            gc[a] += 1e-30j
            out[a] = _sas_sigma(gc, structure, t).imag / 1e-30
        return out

    g_mats = first(gamma)
    h_mats = np.zeros((k, k, t, t))
    if _structure_name(structure) not in _LINEAR:
        for a in range(k):
            h = 1e-4 * max(abs(float(gamma[a])), 1e-2)
            up, dn = gamma.copy(), gamma.copy()
            up[a] += h
            dn[a] -= h
            h_mats[a] = (first(up) - first(dn)) / (2.0 * h)
        h_mats = 0.5 * (h_mats + h_mats.transpose(1, 0, 2, 3))
    return g_mats, h_mats


def _sigma_jacobian(theta: FloatArray, structure: str | _CovSpec, t: int) -> FloatArray:
    """``dSigma / dtheta_j`` for every parameter (shape ``(q, T, T)``), by complex step.

    ``sp_exp`` (possibly many positions) analytically: ``2 Sigma`` for ``log sd`` and ``Sigma d / phi`` for
    ``log phi``, per group block.
    """
    q = theta.shape[0]
    if isinstance(structure, _CovSpec) and structure.name == "sp_exp":
        spec = structure
        assert spec.distances is not None
        out = np.zeros((q, t, t))
        for g in range(spec.n_groups):  # loop over the (few) groups
            blk = _sigma_block(theta[2 * g : 2 * g + 2], "sp_exp", spec.t, spec.distances)
            out[2 * g, spec.block(g), spec.block(g)] = 2.0 * blk
            out[2 * g + 1, spec.block(g), spec.block(g)] = blk * spec.distances / math.exp(theta[2 * g + 1])
        return out
    h = 1e-30
    out = np.empty((q, t, t))
    for j in range(q):  # loop over the (few) variance parameters
        tc = theta.astype(complex)
        tc[j] += 1j * h
        out[j] = _sigma(tc, structure, t).imag / h
    return out


def _theta_start(s0: FloatArray, structure: str | _CovSpec) -> FloatArray:
    """Unconstrained parameters approximating a positive definite starting covariance ``s0``."""
    if isinstance(structure, _CovSpec):
        spec = structure
        parts = []
        for g in range(spec.n_groups):  # loop over the (few) groups
            blk = s0[spec.block(g), spec.block(g)]
            if spec.name == "sp_exp":
                # sd from the variances, range: correlation exp(-1) at the median distance of two positions
                assert spec.distances is not None
                pos = spec.distances[spec.distances > 0]
                phi0 = float(np.median(pos)) if pos.size else 1.0
                parts.append(np.array([math.log(float(np.sqrt(np.mean(np.diag(blk))))), math.log(phi0)]))
            else:
                parts.append(_theta_start(blk, spec.name))
        return np.concatenate(parts)
    t = s0.shape[0]
    if structure == "us":
        chol = np.linalg.cholesky(s0)
        rows, cols = np.tril_indices(t, -1)
        return np.concatenate([np.log(np.diag(chol)), chol[rows, cols]])
    sd = np.sqrt(np.diag(s0))
    corr = s0 / np.outer(sd, sd)
    sd_part = np.log(sd) if structure in _HETERO else np.array([math.log(float(np.sqrt(np.mean(sd**2))))])
    if t == 1:
        return sd_part
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    band = np.array([corr[lag == k].mean() for k in range(1, t)])
    if structure in ("cs", "csh"):
        lo = _cs_lower(t)
        rho = float(np.clip(corr[lag > 0].mean(), lo + 0.05 * (1 - lo), 0.95))
        u = (rho - lo) / (1.0 - lo)
        cor_part = np.array([math.log(u / (1.0 - u))])
    elif structure in ("ar1", "ar1h"):
        cor_part = np.array([math.atanh(float(np.clip(band[0], -0.9, 0.9)))])
    elif structure in ("ad", "adh"):
        s = np.arange(t - 1)
        cor_part = np.arctanh(np.clip(corr[s, s + 1], -0.9, 0.9))
    else:
        pacf = np.clip(_acf_to_pacf(np.clip(band, -0.95, 0.95)), -0.9, 0.9)
        cor_part = np.arctanh(pacf)
    return np.concatenate([sd_part, cor_part])


def _variance_parameters(
    sigma: FloatArray, structure: str | _CovSpec, visits: list[str], groups: Sequence[str] = ()
) -> list[tuple[str, float]]:
    """Interpretable variance parameters (standard deviations and correlations) of a fitted ``Sigma``.

    With a :class:`_CovSpec`, each group's parameters are suffixed `` | <group level>``; ``sp_exp`` has
    ``sd`` and ``range`` (``phi`` of ``exp(-d / phi)``).
    """
    if isinstance(structure, _CovSpec):
        spec = structure
        out_g: list[tuple[str, float]] = []
        for g in range(spec.n_groups):  # loop over the (few) groups
            blk = sigma[spec.block(g), spec.block(g)]
            if spec.name == "sp_exp":
                phi = float(_sas_gamma(blk, _CovSpec("sp_exp", spec.t, 1, spec.distances), spec.t)[0])
                pars = [("sd", math.sqrt(float(blk[0, 0]))), ("range", phi)]
            else:
                pars = _variance_parameters(blk, spec.name, visits)
            out_g.extend((f"{n} | {groups[g]}" if spec.n_groups > 1 else n, v) for n, v in pars)
        return out_g
    t = sigma.shape[0]
    sd = np.sqrt(np.diag(sigma))
    corr = sigma / np.outer(sd, sd)
    out: list[tuple[str, float]] = []
    if structure == "us" or structure in _HETERO:
        out.extend((f"sd[{v}]", float(s)) for v, s in zip(visits, sd, strict=True))
    else:
        out.append(("sd", float(sd[0])))
    if structure == "us":
        rows, cols = np.tril_indices(t, -1)
        out.extend(
            (f"corr[{visits[c]},{visits[r]}]", float(corr[r, c])) for r, c in zip(rows, cols, strict=True)
        )
    elif t > 1 and structure in ("cs", "csh", "ar1", "ar1h"):
        out.append(("rho", float(corr[1, 0])))
    elif structure in ("ad", "adh"):
        out.extend((f"rho[{visits[k]},{visits[k + 1]}]", float(corr[k, k + 1])) for k in range(t - 1))
    elif t > 1:
        out.extend((f"rho_lag{k}", float(corr[k, 0])) for k in range(1, t))
    return out


# --------------------------------------------------------------------------------------------------
# sufficient statistics by missingness pattern and the REML criterion
# --------------------------------------------------------------------------------------------------


@dataclass
class _Patterns:
    """Per-pattern cross-product tensors of ``z = [x, y]``."""

    visit_sets: list[IntArray]  # visit indices of each pattern
    counts: IntArray  # subjects per pattern
    tensors: list[FloatArray]  # (m, p + 1, m, p + 1) per pattern
    n_obs: int
    p: int
    t: int


def _build_patterns(subject: IntArray, visit: IntArray, x: FloatArray, y: FloatArray, t: int) -> _Patterns:
    """Group subjects by their set of observed visits and accumulate cross products in one pass.

    ``visit`` is the position ``0 .. t - 1`` of each row: the visit, or with a :class:`_CovSpec` the
    (group, visit) or (group, coordinate point) position. Up to 50 positions a subject's set is a bit mask;
    beyond (``sp_exp`` on many distinct times) the sorted positions of each subject, padded, are compared.
    """
    n_sub = int(subject.max()) + 1
    if t <= 50:
        bits = np.bincount(subject, weights=np.exp2(visit), minlength=n_sub).astype(np.int64)
    else:
        by_subject = np.lexsort((visit, subject))
        n_rows = np.bincount(subject, minlength=n_sub)
        start = np.concatenate([[0], np.cumsum(n_rows)[:-1]])
        padded = np.full((n_sub, int(n_rows.max())), -1, dtype=np.int64)
        sub_sorted = subject[by_subject]
        padded[sub_sorted, np.arange(subject.shape[0]) - start[sub_sorted]] = visit[by_subject]
        bits = np.unique(padded, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    row_bits = bits[subject]
    order = np.lexsort((visit, subject, row_bits))
    z = np.column_stack([x, y])[order]
    row_bits = row_bits[order]
    visit_sorted, subject_sorted = visit[order], subject[order]
    patterns, first_row = np.unique(row_bits, return_index=True)
    bounds = [*first_row.tolist(), row_bits.shape[0]]
    sets: list[IntArray] = []
    counts: list[int] = []
    tensors: list[FloatArray] = []
    k = z.shape[1]
    for j in range(patterns.shape[0]):  # loop over missingness patterns
        lo = bounds[j]
        m = int(np.count_nonzero(subject_sorted[lo : bounds[j + 1]] == subject_sorted[lo]))
        vis = visit_sorted[lo : lo + m]
        block = z[bounds[j] : bounds[j + 1]].reshape(-1, m * k)
        tensors.append((block.T @ block).reshape(m, k, m, k))
        sets.append(vis)
        counts.append(block.shape[0])
    return _Patterns(sets, np.asarray(counts), tensors, int(y.shape[0]), x.shape[1], t)


@dataclass
class _Evaluation:
    value: float
    beta: FloatArray
    a_inv: FloatArray
    weights: list[FloatArray]
    sigma: FloatArray


class _Criterion:
    """The REML (or ML) criterion ``-2 log L(theta)`` of an MMRM from pattern statistics.

    Notes
    -----
    With ``W_k = Sigma_k^{-1}``, ``A = X' V^{-1} X = sum_k sum_ab W_k[a, b] C_k[a, b]`` and the GLS
    estimate ``beta(theta) = A^{-1} X' V^{-1} y``::

        -2 l_R = (N - p) log(2 pi) + sum_k n_k log|Sigma_k| + log|A| + r' V^{-1} r

    (the constant ``nlme::gls`` uses, so log-likelihoods compare with ``gls``); for ML
    ``N log(2 pi) + sum_k n_k log|Sigma_k| + r' V^{-1} r``. The gradient with respect to ``Sigma_k`` is
    ``n_k W_k - W_k (G_k + R_k) W_k`` with ``G_k[a, b] = tr(A^{-1} C_k[a, b])`` (REML only) and ``R_k`` the
    residual cross products of the pattern; the chain rule through ``dSigma / dtheta`` gives the gradient.
    """

    def __init__(self, pats: _Patterns, structure: str | _CovSpec, reml: bool) -> None:
        self.pats = pats
        self.structure = structure
        self.reml = reml
        p = pats.p
        n = pats.n_obs
        self.const = (n - p) * _LOG2PI if reml else n * _LOG2PI
        self.p = p

    def _weights(self, sigma: FloatArray) -> tuple[list[FloatArray], float] | None:
        ws: list[FloatArray] = []
        logdet = 0.0
        for vis, cnt in zip(self.pats.visit_sets, self.pats.counts, strict=True):
            sub = sigma[np.ix_(vis, vis)]
            try:
                chol = np.linalg.cholesky(sub)
            except np.linalg.LinAlgError:
                return None
            inv_l = np.linalg.inv(chol)
            ws.append(inv_l.T @ inv_l)
            logdet += float(cnt) * 2.0 * float(np.log(np.diag(chol)).sum())
        return ws, logdet

    def evaluate(self, theta: FloatArray) -> _Evaluation | None:
        sigma = _sigma(theta, self.structure, self.pats.t)
        got = self._weights(sigma)
        if got is None or not np.all(np.isfinite(sigma)):
            return None
        ws, logdet = got
        p = self.p
        q = np.zeros((p + 1, p + 1))
        for w, ten in zip(ws, self.pats.tensors, strict=True):
            q += np.einsum("ab,aibj->ij", w, ten)
        a = q[:p, :p]
        try:
            chol = np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            return None
        inv_l = np.linalg.inv(chol)
        a_inv = inv_l.T @ inv_l
        beta = a_inv @ q[:p, p]
        rss = float(q[p, p] - q[:p, p] @ beta)
        value = self.const + logdet + rss
        if self.reml:
            value += 2.0 * float(np.log(np.diag(chol)).sum())
        return _Evaluation(value, beta, a_inv, ws, sigma)

    def sigma_gradient(self, ev: _Evaluation) -> FloatArray:
        """Gradient of the criterion with respect to the full ``T x T`` matrix ``Sigma``."""
        p = self.p
        t = self.pats.t
        grad = np.zeros((t, t))
        v = np.concatenate([-ev.beta, [1.0]])
        for vis, cnt, w, ten in zip(
            self.pats.visit_sets, self.pats.counts, ev.weights, self.pats.tensors, strict=True
        ):
            inner = np.einsum("i,aibj,j->ab", v, ten, v)
            if self.reml:
                inner = inner + np.einsum("pq,apbq->ab", ev.a_inv, ten[:, :p, :, :p])
            grad[np.ix_(vis, vis)] += cnt * w - w @ inner @ w
        return grad

    def value_and_grad(self, theta: FloatArray) -> tuple[float, FloatArray]:
        ev = self.evaluate(theta)
        if ev is None:
            return math.inf, np.zeros_like(theta)
        gs = self.sigma_gradient(ev)
        jac = _sigma_jacobian(theta, self.structure, self.pats.t)
        return ev.value, np.einsum("ab,jab->j", gs, jac)

    def grad(self, theta: FloatArray) -> FloatArray:
        return self.value_and_grad(theta)[1]

    def hessian(self, theta: FloatArray) -> FloatArray:
        """Observed Hessian of the criterion: central differences of the analytic gradient."""
        qn = theta.shape[0]
        hess = np.empty((qn, qn))
        for j in range(qn):  # loop over the (few) variance parameters
            h = 1e-5 * max(1.0, abs(float(theta[j])))
            up, dn = theta.copy(), theta.copy()
            up[j] += h
            dn[j] -= h
            hess[:, j] = (self.grad(up) - self.grad(dn)) / (2.0 * h)
        return 0.5 * (hess + hess.T)

    def kenward_roger_blocks(
        self, ev: _Evaluation, g_mats: FloatArray, h_mats: FloatArray | None = None
    ) -> dict[str, FloatArray]:
        """Summed ``P_a``, ``Q_ab`` and ``tr(V^-1 G_a V^-1 G_b)`` for ``Sigma = sum_a gamma_a G_a``.

        Notes
        -----
        Per pattern ``k`` (visits ``S``, ``n_k`` subjects, ``W = Sigma_S^-1``, ``C[u, v] = sum x_iu x_iv'``):
        ``P_a = -sum_uv (W G_a W)[u, v] C[u, v]``, ``Q_ab = sum_uv (W G_a W G_b W)[u, v] C[u, v]`` and
        ``n_k tr(W G_a W G_b)``, with ``G_a`` restricted to ``S``: cost ``O(patterns)``; with the second
        derivatives ``H_ab`` of a non-linear structure also ``R_ab = sum_uv (W H_ab W)[u, v] C[u, v]``.
        """
        p = self.p
        k = g_mats.shape[0]
        p_mats = np.zeros((k, p, p))
        q_mats = np.zeros((k, k, p, p))
        ktrace = np.zeros((k, k))
        r_mats = np.zeros((k, k, p, p))
        for vis, cnt, w, ten in zip(
            self.pats.visit_sets, self.pats.counts, ev.weights, self.pats.tensors, strict=True
        ):
            c = ten[:, :p, :, :p]
            wg = np.einsum("uv,avw->auw", w, g_mats[:, vis][:, :, vis])  # W G_a
            wgw = wg @ w
            p_mats -= np.einsum("auv,uivj->aij", wgw, c)
            wgwgw = np.einsum("auv,bvw->abuw", wg, wgw)
            q_mats += np.einsum("abuv,uivj->abij", wgwgw, c)
            ktrace += float(cnt) * np.einsum("auv,bvu->ab", wg, wg)
            if h_mats is not None:
                whw = np.einsum("uv,abvw,wx->abux", w, h_mats[:, :, vis][:, :, :, vis], w)
                r_mats += np.einsum("abuv,uivj->abij", whw, c)
        return {"p_mats": p_mats, "q_mats": q_mats, "ktrace": ktrace, "r_mats": r_mats}

    def vcov_jacobian(self, theta: FloatArray, ev: _Evaluation) -> FloatArray:
        """``d vcov(beta) / d theta_j`` (shape ``(q, p, p)``), analytic: ``-V (dA/dtheta_j) V``."""
        p = self.p
        jac = _sigma_jacobian(theta, self.structure, self.pats.t)
        out = np.empty((theta.shape[0], p, p))
        for j in range(theta.shape[0]):  # loop over the (few) variance parameters
            da = np.zeros((p, p))
            for vis, w, ten in zip(self.pats.visit_sets, ev.weights, self.pats.tensors, strict=True):
                dw = -w @ jac[j][np.ix_(vis, vis)] @ w
                da += np.einsum("ab,apbq->pq", dw, ten[:, :p, :, :p])
            out[j] = -ev.a_inv @ da @ ev.a_inv
        return out


@dataclass
class _EmmeansView:
    """What :func:`sciatica_outcomes.models.emmeans.emmeans` reads from a fitted model."""

    design_: Design
    inference_: WaldInference
    column_info_: dict[str, tuple[str, Any]]

    def _fitted(self) -> None:
        return None  # a view exists only on a fitted result


# --------------------------------------------------------------------------------------------------
# the result
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MMRMResult(ModelResult):
    """A fitted MMRM.

    Attributes
    ----------
    fixed_effects : polars.DataFrame
        Fixed effects (also ``summary``): ``term, estimate, se, df, t, p, ci_low, ci_high`` (the ``ddf``
        method's df, two-sided p, ``level`` confidence interval); terms named as R prints them.
    covariance : numpy.ndarray
        Estimated ``T x T`` covariance matrix of the visits (rows and columns in the order of ``visits``).
    visits : list of str
        Visit levels in their order.
    variance_parameters : polars.DataFrame
        ``name, estimate``: standard deviations and correlations of the structure.
    loglik, aic, bic : float
        (Restricted) log-likelihood and information criteria as ``nlme`` computes them for ``gls``
        (``df = p + q``; BIC with ``log(N - p)`` under REML).
    diagnostics : dict
        Optimizer, iterations, gradient norm, convergence flag and message, Hessian positive definiteness,
        boundary flag, missingness patterns, rows dropped and why, fit time.
    """

    formula: str
    subject: str
    visit: str
    structure: str
    reml: bool
    level: float
    visits: list[str]
    coef_names: list[str]
    beta: FloatArray
    vcov: FloatArray
    fixed_effects: pl.DataFrame
    covariance: FloatArray
    variance_parameters: pl.DataFrame
    theta: FloatArray
    theta_cov: FloatArray
    loglik: float
    aic: float
    bic: float
    n_obs: int
    n_subjects: int
    diagnostics: MMRMDiagnostics
    patterns: pl.DataFrame
    inference: WaldInference = field(repr=False)
    _view: _EmmeansView = field(repr=False)
    #: labels of the rows and columns of ``covariance``: the visits, or with a group-specific covariance
    #: ``group:visit`` (block-diagonal), or for sp_exp the distinct coordinate points (``group:point``)
    covariance_labels: list[str] = field(default_factory=list)
    group: str | None = None
    coordinates: list[str] = field(default_factory=list)
    vcov_method: str = "asymptotic"
    weights: str | None = None
    _type3: list[tuple[str, FloatArray]] = field(default_factory=list, repr=False)

    @property
    def correlation(self) -> FloatArray:
        """Correlation matrix of the visits."""
        sd = np.sqrt(np.diag(self.covariance))
        corr: FloatArray = self.covariance / np.outer(sd, sd)
        return corr

    @property
    def converged(self) -> bool:
        """Whether the optimizer met its convergence criteria (see ``diagnostics``)."""
        return bool(self.diagnostics["converged"])

    def design_matrix(self, frame: pl.DataFrame) -> FloatArray:
        """Fixed-effects design of new data (fitted factor levels; columns in ``coef_names`` order)."""
        if self.visit in frame.columns:
            frame = frame.with_columns(pl.col(self.visit).cast(pl.String))
        return self._view.design_.matrix(frame)

    def predict(self, data: FrameLike, conditional: bool = True, level: float | None = None) -> pl.DataFrame:
        """Predictions with confidence and prediction intervals, conditional on the subject's observed visits.

        Parameters
        ----------
        data : polars.DataFrame or pandas.DataFrame
            Rows with the subject, the visit and the formula's covariates; the response where observed
            (missing or absent: the row is predicted). A weighted model needs the weights column.
        conditional : bool
            Condition the rows without a response on the same subject's rows with one (``E[y_m | y_o]``);
            ``False`` gives the marginal ``x' beta`` for every row.
        level : float, optional
            Level of the intervals (default: the fit's ``level``).

        Returns
        -------
        polars.DataFrame
            ``data`` with ``fit, se, se_prediction, df, ci_low, ci_high, pi_low, pi_high, conditional``.

        Notes
        -----
        ``y_m = Z beta + S y_o``, ``S = R_mo R_oo^-1``, ``Z = X_m - S X_o``; ``se^2 = Z V Z'`` and
        ``se_prediction^2 = Z V Z' + R_mm - S R_om`` (:mod:`~sciatica_outcomes.models.mmrm_predict`). Rows
        with a response get ``x' beta`` and its SE, as SAS's ``OUTP=``.

        Validated against: SAS PROC MIXED ``OUTPM=`` / ``OUTP=`` (``Pred``, ``StdErrPred``) of ``MODEL FEV1 =
        ARMCD`` for un, cs, ar(1) and toep on openpharma/mmrm's fev_data (design/predict_interval).
        """
        from sciatica_outcomes.models.mmrm_predict import predict_mmrm  # noqa: PLC0415 - import cycle

        return predict_mmrm(self, _as_polars(data), conditional=conditional, level=level)

    # ---- linear functions of beta ---------------------------------------------------------------
    def contrast(
        self,
        lmat: FloatArray | Sequence[Sequence[float]] | dict[str, float],
        names: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Estimates, SE, df, t, p and CI of the rows of ``L beta`` (the fit's ``ddf`` and ``vcov`` methods).

        Parameters
        ----------
        lmat : array_like or dict
            ``k x p`` matrix with columns in the order of ``coef_names``, or ``{coefficient: weight}``.
        names : sequence of str, optional
            Row labels.

        Returns
        -------
        polars.DataFrame
            Columns ``term, estimate, se, df, t, p, ci_low, ci_high``.

        Notes
        -----
        Satterthwaite: ``df = 2 (l' V l)^2 / (g' Cov(theta) g)``, ``g_j = l' (dV / dtheta_j) l`` (see
        :class:`MMRM`); Kenward-Roger, empirical, between-within and residual as their inference classes.
        """
        mat = lmat if isinstance(lmat, dict) else np.atleast_2d(np.asarray(lmat, dtype=float))
        return self.inference.contrast(mat, level=self.level, labels=names)

    def f_test(self, lmat: FloatArray | Sequence[Sequence[float]]) -> FTest:
        """F test of ``L beta = 0`` with the fit's df method (Satterthwaite: lmerTest's ``contestMD``)."""
        return self.inference.f_test(np.atleast_2d(np.asarray(lmat, dtype=float)))

    def anova(self, type: int | None = None) -> pl.DataFrame:
        """F test per model term with the fit's df method (and empirical covariance, when chosen).

        Parameters
        ----------
        type : {None, 3}
            ``None``: the marginal test of each term's own coefficients (intercept included; for a main
            effect in an interaction that is the effect at the reference levels). ``3``: SAS-style Type III
            tests (``htype=3``; :func:`~sciatica_outcomes.models.inference.type3_contrasts`), one row per
            term without the intercept.

        Returns
        -------
        polars.DataFrame
            ``term, num_df, den_df, F, p``.

        Notes
        -----
        Each row is :meth:`f_test` of the term's hypothesis matrix: Satterthwaite, Kenward-Roger,
        between-within or residual df as the model's ``ddf``. Validated against: SAS PROC MIXED ``Type 3
        Tests of Fixed Effects`` (``ddfm=satterthwaite``; openpharma/mmrm design/anova and
        design/SAS/sas_weighted.txt).
        """
        if type not in (None, 3):
            raise ModelSpecificationError(f"anova type must be None (marginal) or 3 (Type III), got {type!r}")
        if type == 3:
            tests = self._type3
        else:
            tests = []
            for term, cols in self._view.design_.term_columns:
                lmat = np.zeros((len(cols), self.beta.shape[0]))
                lmat[np.arange(len(cols)), cols] = 1.0
                tests.append((term, lmat))
        rows = []
        for term, lmat in tests:
            res = self.f_test(lmat)
            rows.append((term, res["num_df"], res["den_df"], res["f"], res["p"]))
        return pl.DataFrame(rows, schema=["term", "num_df", "den_df", "F", "p"], orient="row", strict=False)

    def emmeans(
        self,
        specs: str | Sequence[str] | None = None,
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
    ) -> EmmeansResult:
        """Estimated marginal (least-squares) means with emmeans defaults, and their contrasts.

        Parameters
        ----------
        specs : str or sequence of str, optional
            Predictors whose level combinations get a mean (default: the visit).
        by : str or sequence of str, optional
            Predictors to condition on (e.g. ``"visit"`` to compare groups within each visit).
        at : dict, optional
            Values of predictors in the reference grid.
        level : float, optional
            Confidence level (default: the fit's ``level``).

        Returns
        -------
        EmmeansResult
            ``means`` (``emmean, se, df, t, p, ci_low, ci_high``) and ``contrasts(method, adjust)``.

        Notes
        -----
        Reference grid: every factor at all levels, numeric predictors at their mean over the fitted rows;
        cell ``c`` has ``l_c = mean_{g in c} x_g`` (equal weights over other factors), Satterthwaite df.
        Validated against: ``emmeans::emmeans(gls_fit, ~ visit, mode = "satterthwaite")`` (the emmeans
        default for ``gls``) and ``pairs(emmeans(gls_fit, ~ group | visit))``.
        """
        spec = self.visit if specs is None else specs
        return emmeans(self._view, spec, by=by, at=at, level=self.level if level is None else level)

    def lsmeans(self, specs: str | Sequence[str] | None = None) -> pl.DataFrame:
        """LS means by visit (or by ``specs``): the ``means`` frame of :meth:`emmeans`."""
        return self.emmeans(specs).means

    def pairs(
        self, factor: str, by: str | None = None, method: str = "pairwise", adjust: str | None = "none"
    ) -> pl.DataFrame:
        """Differences of LS means between the levels of ``factor`` within each level of ``by``.

        Parameters
        ----------
        factor : str
            Factor whose levels are compared (e.g. treatment or adherence group).
        by : str, optional
            Factor to condition on (e.g. the visit).
        method : {"pairwise", "revpairwise", "trt.vs.ctrl"}
            ``pairwise``: earlier minus later level (emmeans ``pairs``); ``trt.vs.ctrl``: level minus first.
        adjust : {"none", "tukey", "bonferroni", "holm"}
            Multiplicity adjustment reported in ``p_adjusted`` (default none).

        Returns
        -------
        polars.DataFrame
            ``by`` column, ``contrast, estimate, se, df, t, p, p_adjusted``.
        """
        return self.emmeans(factor, by=by).contrasts(method=method, adjust=adjust)

    # ---- export ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the fit (coefficient names as R prints them)."""
        return {
            "model": "mmrm",
            "formula": self.formula,
            "subject": self.subject,
            "visit": self.visit,
            "method": "REML" if self.reml else "ML",
            "df_method": self.inference.ddf_method,
            "ddf_method": self.inference.ddf_method,
            "vcov": self.vcov_method,
            "weights": self.weights,
            "n_obs": self.n_obs,
            "n_subjects": self.n_subjects,
            "converged": self.converged,
            "fixed_effects": self.summary.to_dicts(),
            "covariance": {
                "structure": self.structure,
                "visits": list(self.visits),
                "group": self.group,
                "coordinates": list(self.coordinates),
                # rows and columns of the matrix; sp_exp on more than 100 distinct points: the parameters
                # alone describe it (the matrix would dominate the record), matrix and correlation are null
                "labels": list(self.covariance_labels),
                "matrix": self.covariance.tolist() if self.covariance.shape[0] <= 100 else None,
                "correlation": self.correlation.tolist() if self.covariance.shape[0] <= 100 else None,
                "parameters": dict(self.variance_parameters.iter_rows()),
            },
            # LS means by visit need the visit among the predictors (FEV1 ~ ARMCD has none)
            "lsmeans": self.lsmeans().to_dicts() if self.visit in self._view.column_info_ else [],
            "loglik": self.loglik,
            "aic": self.aic,
            "bic": self.bic,
            "diagnostics": _jsonable(self.diagnostics),
        }

    def to_json(self, indent: int | None = 1) -> str:
        """:meth:`to_dict` as JSON text (non-finite numbers as null)."""
        return json.dumps(_jsonable(self.to_dict()), indent=indent)

    def plot(self, ax: Axes | None = None, by: str | None = None) -> Axes:
        """LS means by visit with confidence intervals (one line per level of ``by``); returns the axes."""
        import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        specs = [self.visit] if by is None else [self.visit, by]
        emm = self.lsmeans(specs)
        x_of = {v: i for i, v in enumerate(self.visits)}
        parts = [(None, emm)] if by is None else [(k[0], g) for k, g in emm.group_by(by, maintain_order=True)]
        for label, sub in parts:
            xs = [x_of[str(v)] for v in sub[self.visit].to_list()]
            est = sub["emmean"].to_numpy()
            err = np.vstack([est - sub["ci_low"].to_numpy(), sub["ci_high"].to_numpy() - est])
            ax.errorbar(xs, est, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xticks(range(len(self.visits)), self.visits)
        ax.set_xlabel(self.visit)
        ax.set_ylabel(f"LS mean ({round(100 * self.level)} % CI)")
        if by is not None:
            ax.legend(title=by)
        return ax


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------------


def _as_names(columns: str | Sequence[str] | None) -> list[str]:
    """Column names given as one name, a sequence of names or None."""
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else [str(c) for c in columns]


def _natural_key(s: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", s))


def _visit_levels(col: pl.Series, given: Sequence[Any] | None) -> tuple[pl.Series, list[str]]:
    """Visit values as strings with their level order (numeric order, or natural order of labels)."""
    if col.dtype.is_numeric():
        vals = col.cast(pl.Float64)
        integral = bool((vals.drop_nulls() == vals.drop_nulls().round(0)).all())
        text = vals.cast(pl.Int64).cast(pl.String) if integral else vals.cast(pl.String)
        observed = sorted(set(vals.drop_nulls().to_list()))
        levels = [str(int(v)) if integral else str(v) for v in observed]
    else:
        text = col.cast(pl.String)
        if isinstance(col.dtype, pl.Enum):
            present = set(text.drop_nulls().to_list())
            levels = [v for v in col.dtype.categories.to_list() if v in present]
        else:
            levels = sorted(set(text.drop_nulls().to_list()), key=_natural_key)
    if given is not None:
        given_s = [str(v) for v in given]
        extra = sorted(set(text.drop_nulls().to_list()) - set(given_s))
        if extra:
            raise ModelSpecificationError(
                f"visit values {extra} are not among visit_levels {given_s}; add them or filter the rows"
            )
        if len(set(given_s)) != len(given_s):
            raise ModelSpecificationError(f"visit_levels {given_s} contain duplicates")
        levels = [v for v in given_s if v in set(text.drop_nulls().to_list())]
        missing = [v for v in given_s if v not in levels]
        if missing:
            raise ModelSpecificationError(
                f"visit_levels {missing} have no observations; drop them from visit_levels"
            )
    return text, levels


class _Prepared(TypedDict):
    """The rows an MMRM is fitted to, as arrays (:meth:`MMRM._prepare`)."""

    frame: pl.DataFrame
    design: Design
    x: FloatArray
    y: FloatArray
    subject: IntArray  # subject code 0 .. n_subjects - 1 of each row
    visit: IntArray  # visit position of each row
    levels: list[str]
    dropped: RowsDropped
    group: IntArray  # code of the covariance group of each row (0 without ``group``)
    group_levels: list[str]
    coordinates: FloatArray  # (rows, d) coordinates of sp_exp (d = 0 without ``coordinates``)
    weights: FloatArray | None  # observation weights of the rows (``weights=`` column), or None


@dataclass
class _FitInputs:
    """What :meth:`MMRM._fit_patterns` needs besides the pattern statistics (from the rows or from SQL).

    ``coef_df`` are the counting df of ``ddf="between-within"`` / ``"residual"`` (else None);
    ``empirical_rows`` the rows by pattern of an empirical covariance (else None); ``engine`` and
    ``statistics_seconds`` go into the diagnostics.
    """

    design: Design
    levels: list[str]
    group_levels: list[str]
    dropped: RowsDropped
    log_weight_sum: float
    column_info: dict[str, tuple[str, Any]]
    type3: list[tuple[str, FloatArray]]
    coef_df: FloatArray | None = None
    empirical_rows: Any = None
    engine: str = "memory"
    statistics_seconds: float | None = None


class MMRM(Estimator):
    """Mixed model for repeated measures with a structured residual covariance of the visits.

    Parameters
    ----------
    formula : str
        Fixed effects in R syntax without random terms, e.g.
        ``"odi ~ visit * adherence_group + baseline_odi + visit:baseline_odi"``.
    subject : str
        Column identifying the subject (episode or patient).
    visit : str
        Column of the scheduled visit; treated as a factor. Numeric visits (weeks) are ordered numerically,
        text labels in natural order (``w6 < w12 < w26``) unless ``visit_levels`` is given; the order sets
        the positions used by AR(1) and Toeplitz structures and the reference level.
    covariance : {"us", "cs", "csh", "ar1", "ar1h", "toep", "toeph", "ad", "adh", "sp_exp"}
        Covariance structure of the visits (see :data:`COVARIANCE_STRUCTURES`). ``sp_exp`` needs
        ``coordinates``.
    visit_levels : sequence, optional
        Explicit visit order.
    reference : dict, optional
        Reference levels of factors, e.g. ``{"group": "low"}``.
    reml : bool
        REML (default) or maximum likelihood.
    level : float
        Confidence level of intervals.
    max_iter : int
        Maximum optimizer iterations.
    ddf : {"satterthwaite", "kenward-roger", "kenward-roger-linear", "between-within", "residual"}
        Denominator df of the tests. Kenward-Roger (REML) is computed in SAS PROC MIXED's covariance
        parameters (``DDFM=KR``; "kenward-roger-linear" leaves out the second derivatives of ``Sigma``, SAS's
        ``DDFM=KR(FIRSTORDER)``), with ``W`` the inverse observed information. ``us``, ``cs`` and ``toep``
        are linear in those parameters, so the two coincide for them. "between-within" and "residual" are
        SAS's ``DDFM=BW`` and ``DDFM=RESIDUAL`` counts
        (:func:`~sciatica_outcomes.models.inference.between_within_df`; ``N - rank(X)``).
    weights : str, optional
        Column of positive observation weights (SAS ``WEIGHT``, ``mmrm(weights = )``): the residual
        covariance of a subject's rows is ``W^-1/2 Sigma W^-1/2``.
    vcov : {"asymptotic", "empirical", "empirical-jackknife", "empirical-bias-reduced"}
        Covariance of the fixed effects: model-based ``(X' V^-1 X)^-1``, or mmrm's empirical (sandwich)
        estimators (:mod:`~sciatica_outcomes.models.sandwich`; SAS ``EMPIRICAL`` is "empirical"), which
        every contrast, LS mean, F test and prediction then uses; with ``ddf="satterthwaite"`` their df are
        mmrm's empirical Satterthwaite df. Not with Kenward-Roger.
    group : str, optional
        Column whose levels get their own covariance matrix (same structure, own parameters; SAS ``REPEATED /
        GROUP=``, mmrm ``us(visit | group / subject)``); constant within subject, e.g. the randomised arm.
        ``result_.covariance`` is then block diagonal over ``group:visit`` (``covariance_labels``).
    coordinates : str or sequence of str, optional
        ``sp_exp`` only: numeric column(s) of each observation's time or position (e.g. days since
        baseline, unequally spaced and different between subjects); the covariance of two observations of a
        subject is ``sigma^2 exp(-d / phi)``, ``d`` their Euclidean distance (SAS ``type=SP(EXP)(c1 c2)``).
        ``result_.covariance`` is over the distinct coordinate points (``covariance_labels``).

    Notes
    -----
    Model: ``y_i = X_i beta + e_i``, ``e_i ~ N(0, Sigma[S_i, S_i])``. REML criterion (as ``nlme``)::

        -2 l_R(theta) = (N - p) log 2 pi + sum_i log|Sigma_i| + log|X' V^-1 X| + r' V^-1 r

    ``beta = (X' V^-1 X)^-1 X' V^-1 y`` and ``vcov(beta) = (X' V^-1 X)^-1`` at ``theta``-hat. Satterthwaite
    df for a contrast ``l``: ``2 (l' V l)^2 / (g' Cov(theta) g)``, ``g_j = l' dV/dtheta_j l`` (analytic),
    ``Cov(theta) = 2 H^-1`` with ``H`` the observed Hessian of ``-2 l_R`` (finite differences of the
    analytic gradient). Parameters: ``us`` the log-Cholesky factor of Sigma; other structures log standard
    deviations and transformed correlations (Toeplitz through partial autocorrelations, ante-dependence
    through ``atanh`` of the successive correlations, always positive definite; sp_exp ``log sigma`` and
    ``log phi``); a group-specific covariance concatenates the groups' parameters. The optimizer is BFGS
    followed by Newton steps on the observed Hessian.

    Validated against: ``nlme::gls(y ~ ..., correlation = corSymm(form = ~ vnum | id), weights =
    varIdent(form = ~ 1 | visit), method = "REML")`` (us), ``corCompSymm`` (cs, csh with varIdent),
    ``corAR1`` (ar1, ar1h), ``corARMA(p = T - 1)`` (toep, toeph); LS means and Satterthwaite df against
    ``emmeans::emmeans(fit, ~ visit)`` (mode "satterthwaite"); cs df against ``lmerTest::lmer(y ~ ... +
    (1 | id))``; adh against SAS PROC MIXED ``type=ANTE(1)``, sp_exp against ``type=SP(EXP)(VISITN)`` and
    ``SP(EXP)(VISITN VISITN2)``, group-specific adh, ar1, ar1h, cs, csh and toeph against ``REPEATED /
    GROUP=ARMCD`` (REML and ML), Kenward-Roger of every structure but ad against ``DDFM=KR`` and
    ``KR(FIRSTORDER)``/``KR(LINEAR)`` (openpharma/mmrm's SAS listings on its fev_data), ad against mmrm's
    ``ad(AVISIT | USUBJID)``. Weights, empirical covariances, between-within df, Type III tests and
    conditional predictions against SAS PROC MIXED (``WEIGHT``, ``EMPIRICAL``, ``DDFM=BW``, ``htype=3``,
    ``OUTP=``) on openpharma/mmrm's fev_data, ``nlme::gls(weights = varFixed(~ 1 / w))`` and
    ``clubSandwich::vcovCR`` (CR0, CR3, CR2 df). See ``tests/reference/mmrm/``.

    Examples
    --------
    >>> fit = MMRM("odi ~ visit * group + baseline", subject="episode_id", visit="visit").fit(frame)
    >>> fit.result_.summary, fit.result_.lsmeans(), fit.result_.pairs("group", by="visit")
    """

    def __init__(
        self,
        formula: str,
        subject: str,
        visit: str,
        covariance: str = "us",
        visit_levels: Sequence[Any] | None = None,
        reference: dict[str, Any] | None = None,
        reml: bool = True,
        level: float = 0.95,
        max_iter: int = 500,
        ddf: str = "satterthwaite",
        group: str | None = None,
        coordinates: str | Sequence[str] | None = None,
        weights: str | None = None,
        vcov: str = "asymptotic",
    ) -> None:
        # stored unchanged (get_params); checked by _validate_params at fit
        self.formula = formula
        self.subject = subject
        self.visit = visit
        self.covariance = covariance
        self.visit_levels = visit_levels
        self.reference = reference
        self.reml = reml
        self.level = level
        self.max_iter = max_iter
        self.ddf = ddf
        self.group = group
        self.coordinates = coordinates
        self.weights = weights
        self.vcov = vcov

    def _validate_params(self) -> None:
        """Check ``ddf``, ``vcov``, ``covariance`` and ``level`` (called by :meth:`fit`)."""
        check_ddf(self.ddf, self.reml)
        check_vcov(self.vcov, self.ddf)
        if self.covariance not in COVARIANCE_STRUCTURES:
            raise ModelSpecificationError(
                f"covariance must be one of {', '.join(COVARIANCE_STRUCTURES)}; got {self.covariance!r}"
            )
        if not 0 < self.level < 1:
            raise ModelSpecificationError(f"level must lie in (0, 1), got {self.level}")
        names = _as_names(self.coordinates)
        if self.covariance == "sp_exp" and not names:
            raise ModelSpecificationError(
                "covariance sp_exp needs coordinates: the numeric column(s) of each observation's time or "
                "position, e.g. coordinates='study_day'"
            )
        if names and self.covariance != "sp_exp":
            raise ModelSpecificationError(
                f"coordinates are used by covariance sp_exp only, not {self.covariance!r}; drop coordinates "
                "or use covariance='sp_exp'"
            )
        if len(set(names)) != len(names):
            raise ModelSpecificationError(f"coordinates {names} repeat a column; name each column once")

    # ---- data preparation ------------------------------------------------------------------------
    def _prepare(self, data: FrameLike) -> _Prepared:
        frame = _as_polars(data)
        parsed = parse_formula(self.formula)
        self._check_formula(parsed)
        for col in (self.subject, self.visit, *self._covariance_columns()):
            if col not in frame.columns:
                raise ModelSpecificationError(
                    f"column {col!r} is not in the data; available: {', '.join(frame.columns)}"
                )
        extra = self._covariance_columns()
        needed = sorted(
            set(parsed.columns()) | {self.subject, self.visit} | set(extra) | _weight_column(self.weights)
        )
        missing_cols = [c for c in needed if c not in frame.columns]
        if missing_cols:
            raise ModelSpecificationError(
                f"formula {self.formula!r} uses columns {missing_cols} the data do not have; "
                f"available: {', '.join(frame.columns)}"
            )
        n_in = frame.height
        frame = frame.select(needed)
        # rows unusable for the model are dropped and counted (never silently)
        null_subject = frame[self.subject].is_null() | frame[self.visit].is_null()
        frame = frame.filter(~null_subject)
        text, levels = _visit_levels(frame[self.visit], self.visit_levels)
        frame = frame.with_columns(text.cast(pl.Enum(levels)).alias(self.visit))
        design, x = Design.build(parsed, frame, self.reference)
        y = design.response(frame)
        coords = self._coordinates_of(frame)
        bad_y = ~np.isfinite(y)
        # the covariance group and the coordinates count as covariates (rows without them are dropped)
        ok_cov = np.isfinite(coords).all(axis=1)
        if self.group is not None:
            ok_cov &= frame[self.group].is_not_null().to_numpy()
        bad_x = ~(np.isfinite(x).all(axis=1) & ok_cov) & ~bad_y
        keep = ~(bad_y | bad_x)
        frame = frame.filter(pl.Series(keep))
        x, y, coords = x[keep], y[keep], coords[keep]
        if frame.height == 0:
            raise UnusableInputError(
                f"no row has a response and every covariate of {self.formula!r}; nothing to fit"
            )
        weights = None if self.weights is None else observation_weights(frame, self.weights)
        # visit levels that lost every row after dropping incomplete rows
        self._check_visits_kept(levels, frame[self.visit].cast(pl.String).unique().to_list())
        subj_codes = frame[self.subject].cast(pl.String).cast(pl.Categorical).to_physical().to_numpy()
        subj_codes = np.unique(subj_codes, return_inverse=True)[1].astype(np.int64)
        visit_codes = frame[self.visit].to_physical().to_numpy().astype(np.int64)
        dup = pl.DataFrame({"s": subj_codes, "v": visit_codes}).is_duplicated().to_numpy()
        if dup.any():
            ex = frame.filter(pl.Series(dup)).select(self.subject, self.visit).head(3).rows()
            self._check_no_duplicates(int(dup.sum()), ex)
        group_codes, group_levels = self._groups_of(frame, subj_codes)
        rank = np.linalg.matrix_rank(x)
        if rank < x.shape[1]:
            piv = scipy.linalg.qr(x, mode="economic", pivoting=True)[2]
            dropped = [design.column_names[j] for j in piv[rank:]]
            raise ModelSpecificationError(
                f"the design of {self.formula!r} is rank deficient (rank {rank} < {x.shape[1]} columns); "
                f"aliased columns: {dropped}; simplify the formula or check empty factor combinations"
            )
        return {
            "frame": frame,
            "design": design,
            "x": x,
            "y": y,
            "subject": subj_codes,
            "visit": visit_codes,
            "levels": levels,
            "dropped": {
                "rows_in": n_in,
                "missing_subject_or_visit": int(null_subject.sum()),
                "missing_response": int(bad_y.sum()),
                "missing_covariate": int(bad_x.sum()),
            },
            "group": group_codes,
            "group_levels": group_levels,
            "coordinates": coords,
            "weights": weights,
        }

    def _covariance_columns(self) -> list[str]:
        """The ``group`` and ``coordinates`` columns (checked to exist by :meth:`_prepare`)."""
        return [*([] if self.group is None else [self.group]), *_as_names(self.coordinates)]

    def _coordinates_of(self, frame: pl.DataFrame) -> FloatArray:
        """The sp_exp coordinates of the rows as floats (``(rows, 0)`` without ``coordinates``)."""
        names = _as_names(self.coordinates)
        for c in names:
            if not frame.schema[c].is_numeric():
                raise ModelSpecificationError(
                    f"coordinate column {c!r} is {frame.schema[c]}, not numeric; sp_exp needs numeric times "
                    "or positions (e.g. days since baseline)"
                )
        if not names:
            return np.zeros((frame.height, 0))
        return frame.select(pl.col(names).cast(pl.Float64)).to_numpy().astype(float)

    def _groups_of(self, frame: pl.DataFrame, subjects: IntArray) -> tuple[IntArray, list[str]]:
        """Covariance group codes of the rows; a subject must stay in one group."""
        if self.group is None:
            return np.zeros(frame.height, dtype=np.int64), []
        text = frame[self.group].cast(pl.String)
        levels = sorted(set(text.to_list()), key=_natural_key)
        codes = text.cast(pl.Enum(levels)).to_physical().to_numpy().astype(np.int64)
        pairs = np.unique(np.column_stack([subjects, codes]), axis=0)
        if pairs.shape[0] != np.unique(subjects).shape[0]:
            bad = int(np.flatnonzero(np.bincount(pairs[:, 0]) > 1)[0])
            self._refuse_moved_subject(frame[self.subject][int(np.argmax(subjects == bad))])
        return codes, levels

    # ---- checks shared by the in-memory and the out-of-core fit -----------------------------------
    def _check_formula(self, parsed: ModelFormula) -> None:
        if parsed.random:
            raise ModelSpecificationError(
                f"formula {self.formula!r} has random terms; an MMRM models within-subject dependence "
                "through the covariance structure instead; remove the (... | ...) terms"
            )

    def _check_visits_kept(self, levels: list[str], present: Sequence[str]) -> None:
        """Refuse visit levels that lost every row after dropping incomplete rows."""
        gone = [v for v in levels if v not in set(present)]
        if gone:
            raise ModelSpecificationError(
                f"visits {gone} have no row with a response and complete covariates; "
                "remove them with visit_levels or check the data"
            )

    def _check_no_duplicates(self, n_rows: int, examples: Sequence[tuple[Any, ...]]) -> None:
        """Refuse ``n_rows`` rows that repeat a (subject, visit) pair (``examples``: some of them)."""
        if n_rows:
            raise ModelSpecificationError(
                f"{n_rows} rows repeat a ({self.subject}, {self.visit}) pair, e.g. {list(examples)}; an MMRM "
                "needs at most one row per subject and visit: aggregate or deduplicate first"
            )

    def _refuse_moved_subject(self, subject: Any) -> None:
        raise ModelSpecificationError(
            f"subject {subject!r} has rows in more than one {self.group!r} group; a group-specific "
            f"covariance needs {self.group!r} constant within subject (e.g. the randomised arm)"
        )

    # ---- fitting ---------------------------------------------------------------------------------
    def fit(self, data: FrameLike) -> Self:
        """Fit the model to a long frame (one row per subject and visit); returns ``self``.

        Parameters
        ----------
        data : polars.DataFrame or pandas.DataFrame
            Columns of the formula, ``subject`` and ``visit``. Rows missing the response or a covariate
            are dropped and counted in ``result_.diagnostics["rows_dropped"]``.

        Raises
        ------
        ModelSpecificationError
            An unknown ``ddf`` or ``covariance``, Kenward-Roger with ML, ``level`` outside (0, 1) (checked
            here, not in ``__init__``); unknown columns, random terms, duplicated subject-visit rows,
            rank-deficient design, or an unstructured covariance whose visit pairs are never observed
            together.
        """
        t0 = time.perf_counter()
        self._validate_params()
        prep = self._prepare(data)
        x = prep["x"]
        pats, struct, labels = self._patterns(prep)
        design = prep["design"]
        wts = prep["weights"]
        empirical = None
        if self.vcov != "asymptotic":
            position, n_pos, xw, yw = self._rows  # weighted rows over the covariance positions
            if n_pos > 60:
                raise ModelSpecificationError(
                    f"an empirical covariance over {n_pos} covariance positions (sp_exp points x groups) is "
                    "not supported (at most 60): round the coordinates or use vcov='asymptotic'"
                )
            empirical = pattern_blocks(prep["subject"], position, xw, yw, n_pos)
        coef_df = None
        if self.ddf == "between-within":
            coef_df = between_within_df(x, prep["subject"], design.term_columns)
        elif self.ddf == "residual":
            coef_df = np.full(x.shape[1], float(x.shape[0] - np.linalg.matrix_rank(x)))
        inputs = _FitInputs(
            design=design,
            levels=prep["levels"],
            group_levels=prep["group_levels"],
            dropped=prep["dropped"],
            log_weight_sum=0.0 if wts is None else float(np.log(wts).sum()),
            column_info=_column_info(design.formula, prep["frame"]),
            type3=type3_contrasts(x, design.matrix(prep["frame"], sum_coding=True), design.term_columns),
            coef_df=coef_df,
            empirical_rows=empirical,
        )
        return self._fit_patterns(pats, struct, labels, inputs, t0)

    def fit_from(
        self, source: Any, table: str | None = None, duckdb_config: Mapping[str, Any] | None = None
    ) -> Self:
        """Fit from where the data live: the cross products per missingness pattern computed by DuckDB.

        Parameters
        ----------
        source : duckdb.DuckDBPyRelation, str or pathlib.Path
            A DuckDB relation; a Parquet file, a directory of Parquet files or a glob; a ``.csv`` file; or
            a DuckDB database file (the store) with ``table``
            (:func:`~sciatica_outcomes.models.outofcore.open_source`). One row per subject and visit.
        table : str, optional
            Table of a DuckDB database file.
        duckdb_config : mapping, optional
            Settings of the DuckDB connection opened for a path (``{"memory_limit": "3GB", "threads": 2}``);
            the connection is closed after the statistics pass.

        Returns
        -------
        MMRM
            ``self``, fitted: the estimates, SE, Satterthwaite or Kenward-Roger df, covariance, Type III
            tests and log-likelihood of :meth:`fit` on the same rows (to the rounding of the sums), with
            ``result_.diagnostics["statistics_seconds"]`` the time of the SQL passes.

        Raises
        ------
        ModelSpecificationError
            As :meth:`fit`; also what the pattern sums cannot give: ``vcov`` other than "asymptotic",
            ``ddf="between-within"`` and ``sp_exp`` (the message says why), and terms SQL cannot evaluate.
        UnusableInputError
            A missing or unreadable source.

        Notes
        -----
        The rows never reach Python: a ``GROUP BY pattern, s, t`` over the pairs of each subject's rows
        returns ``n_k`` and ``M_k[s, t] = sum_i z_is z_it'`` (``z = [x, y]``) per pattern ``k``
        (:mod:`~sciatica_outcomes.models.mmrm_outofcore` derives it); the optimiser, Satterthwaite and
        Kenward-Roger then run on them exactly as after :meth:`fit`, which builds the same tensors from the
        rows. Predictions need rows: pass them to :meth:`MMRMResult.predict`.

        Validated against: :meth:`fit` on the same data (``tests/models/test_mmrm_outofcore.py``: nlme
        golden cases, fev_data of SAS PROC MIXED).
        """
        from sciatica_outcomes.models.mmrm_outofcore import mmrm_statistics  # noqa: PLC0415 - import cycle
        from sciatica_outcomes.models.outofcore import open_owned  # noqa: PLC0415 - DuckDB loads lazily

        t0 = time.perf_counter()
        self._validate_params()
        rel, con = open_owned(source, table, duckdb_config)
        try:
            stats = mmrm_statistics(self, rel)
        finally:
            if con is not None:  # opened here: free DuckDB's memory before the optimiser runs
                con.close()
        stats.inputs.statistics_seconds = stats.seconds
        return self._fit_patterns(stats.patterns, stats.structure, stats.labels, stats.inputs, t0)

    def _fit_patterns(
        self, pats: _Patterns, struct: str | _CovSpec, labels: list[str], inputs: _FitInputs, t0: float
    ) -> Self:
        """Optimise the criterion on the pattern statistics and build the result (every fit path ends here).

        :meth:`fit` computes ``pats`` from the rows in memory; :meth:`fit_from` has DuckDB compute them
        (:mod:`~sciatica_outcomes.models.mmrm_outofcore`). From here on both run the same arithmetic.
        """
        t = pats.t
        p = pats.p
        crit = _Criterion(pats, struct, self.reml)
        crit.const -= inputs.log_weight_sum  # log|R_i| = log|Sigma_i| - sum_j log w_ij
        theta0 = _theta_start(_start_sigma(pats, _structure_name(struct) != "sp_exp"), struct)
        theta, report = _optimise(crit, theta0, self.max_iter)
        ev = crit.evaluate(theta)
        if ev is None:  # pragma: no cover - the optimizer only returns evaluable points
            raise RuntimeError("the fitted covariance is not positive definite")
        hess = crit.hessian(theta)
        theta_cov, eig_desc = vcov_varpar_from_hessian(hess)
        hess_pd = bool(eig_desc[-1] > 1e-8 * max(1.0, float(eig_desc[0])))
        design = inputs.design
        names = design.column_names
        inference = WaldInference(
            names=tuple(names),
            beta=ev.beta,
            vcov_beta=ev.a_inv,
            jacobian=crit.vcov_jacobian(theta, ev),
            vcov_varpar=theta_cov,
            hessian_eigenvalues=eig_desc,
        )
        if self.ddf.startswith("kenward-roger"):
            # SAS's parameters gamma, G_a = dSigma/dgamma_a, H_ab; Cov(gamma) = J Cov(theta) J' with J =
            # dgamma/dtheta: the inverse observed information, as SAS PROC MIXED DDFM=KR and mmrm use it
            gamma = _sas_gamma(ev.sigma, struct, t)
            g_mats, h_mats = _sas_derivatives(gamma, struct, t)
            jac = np.empty((theta.shape[0], gamma.shape[0]))
            for j in range(theta.shape[0]):  # complex step through theta -> Sigma -> gamma
                tc = theta.astype(complex)
                tc[j] += 1e-30j
                jac[j] = _sas_gamma(_sigma(tc, struct, t), struct, t).imag / 1e-30
            w_gamma = jac.T @ theta_cov @ jac
            linear = self.ddf == "kenward-roger-linear" or _structure_name(struct) in _LINEAR
            blocks = crit.kenward_roger_blocks(ev, g_mats, None if linear else h_mats)
            a_mat = cast("FloatArray", np.linalg.inv(ev.a_inv))  # X'V^-1X (float64; the stubs say floating)
            kr = kenward_roger(
                a_mat,
                blocks["p_mats"],
                blocks["q_mats"],
                blocks["ktrace"],
                w=w_gamma,
                r_mats=None if linear else blocks["r_mats"],
            )
            inference = with_kenward_roger(inference, kr, self.ddf)
        if inputs.empirical_rows is not None:
            inference = empirical_inference(inference, inputs.empirical_rows, ev.sigma, self.vcov)
        if inputs.coef_df is not None:
            cls = BetweenWithinInference if self.ddf == "between-within" else ResidualInference
            inference = cls(
                names=inference.names,
                beta=inference.beta,
                vcov_beta=inference.vcov_beta,
                jacobian=inference.jacobian,
                vcov_varpar=inference.vcov_varpar,
                hessian_eigenvalues=inference.hessian_eigenvalues,
                coef_df=inputs.coef_df,
            )
        summary = inference.contrast(np.eye(len(names)), level=self.level, labels=names)
        sigma = ev.sigma
        levels = inputs.levels
        sd = np.sqrt(np.diag(sigma))
        corr = sigma / np.outer(sd, sd)
        off = corr[~np.eye(t, dtype=bool)]
        if isinstance(struct, _CovSpec) and struct.name == "sp_exp":
            boundary = _sp_exp_boundary(theta, struct)
        else:
            boundary = bool(
                (off.size and np.max(np.abs(off)) > 0.999)
                or np.linalg.eigvalsh(corr).min() < 1e-6
                or sd.min() < 1e-6 * max(sd.max(), 1e-300)
            )
        q = theta.shape[0]
        loglik = -0.5 * ev.value
        n_eff = pats.n_obs - p if self.reml else pats.n_obs
        diag = MMRMDiagnostics(
            **report,
            hessian_positive_definite=hess_pd,
            hessian_min_eigenvalue=float(eig_desc[-1]),
            boundary=boundary,
            n_patterns=len(pats.visit_sets),
            rows_dropped=inputs.dropped,
            engine=inputs.engine,
            statistics_seconds=inputs.statistics_seconds,
            fit_seconds=time.perf_counter() - t0,
        )
        if not hess_pd:
            diag["message"] = (
                diag["message"] + "; Hessian not positive definite: Cov(theta) uses its positive eigenvalues"
            )
        patterns = pl.DataFrame(
            {
                "visits": [",".join(labels[i] for i in vis) for vis in pats.visit_sets],
                "n_subjects": pats.counts,
            }
        ).sort("n_subjects", descending=True)
        self.result_ = MMRMResult(
            formula=self.formula,
            subject=self.subject,
            visit=self.visit,
            structure=self.covariance,
            reml=self.reml,
            level=self.level,
            visits=levels,
            coef_names=names,
            beta=ev.beta,
            vcov=ev.a_inv,
            fixed_effects=summary,
            covariance=sigma,
            variance_parameters=pl.DataFrame(
                _variance_parameters(sigma, struct, levels, inputs.group_levels),
                schema=["name", "estimate"],
                orient="row",
            ),
            theta=theta,
            theta_cov=theta_cov,
            loglik=loglik,
            aic=-2.0 * loglik + 2.0 * (p + q),
            bic=-2.0 * loglik + math.log(n_eff) * (p + q),
            n_obs=pats.n_obs,
            n_subjects=int(pats.counts.sum()),
            diagnostics=diag,
            patterns=patterns,
            inference=inference,
            _view=_EmmeansView(design, inference, inputs.column_info),
            covariance_labels=labels,
            group=self.group,
            coordinates=_as_names(self.coordinates),
            vcov_method=self.vcov,
            weights=self.weights,
            _type3=inputs.type3,
        )
        return self

    def _patterns(self, prep: _Prepared) -> tuple[_Patterns, str | _CovSpec, list[str]]:
        """Missingness patterns over the covariance positions, the structure and the positions' labels.

        Without ``group`` and ``coordinates`` the positions are the visits and the structure its name.
        Otherwise a :class:`_CovSpec`: positions (group, visit) or, for sp_exp, (group, coordinate point),
        the distinct coordinate points of the data (a subject's rows need distinct points).
        """
        levels, x, y = prep["levels"], prep["x"], prep["y"]
        wts = prep["weights"]
        if wts is not None:  # weights: R_i = W^-1/2 Sigma W^-1/2, i.e. rows scaled by sqrt(w) under Sigma
            x, y = x * np.sqrt(wts)[:, None], y * np.sqrt(wts)
        n_groups = max(len(prep["group_levels"]), 1)
        if self.covariance == "sp_exp":
            points, point = np.unique(prep["coordinates"], axis=0, return_inverse=True)
            point = point.reshape(-1)
            if points.shape[0] * n_groups > MAX_SP_EXP_POINTS:
                raise ModelSpecificationError(
                    f"sp_exp has {points.shape[0]:,} distinct coordinate points"
                    + (f" in {n_groups} groups" if n_groups > 1 else "")
                    + f"; the covariance is computed over all of them, at most {MAX_SP_EXP_POINTS:,}: round "
                    "the coordinates (e.g. to whole days or weeks)"
                )
            diff = points[:, None, :] - points[None, :, :]
            spec = _CovSpec("sp_exp", points.shape[0], n_groups, np.sqrt((diff**2).sum(axis=2)))
            position = prep["group"] * spec.t + point
            point_labels = [",".join(f"{v:g}" for v in row) for row in points]
            dup = pl.DataFrame({"s": prep["subject"], "p": position}).is_duplicated().to_numpy()
            if dup.any():
                ex = prep["frame"].filter(pl.Series(dup)).select(self.subject, *_as_names(self.coordinates))
                raise ModelSpecificationError(
                    f"{int(dup.sum())} rows of a subject share their coordinates, e.g. {ex.head(2).rows()}; "
                    "sp_exp needs distinct coordinates within subject (their correlation would be 1)"
                )
            within = [f"{v}" for v in point_labels]
        elif self.group is not None:
            spec = _CovSpec(self.covariance, len(levels), n_groups)
            position = prep["group"] * spec.t + prep["visit"]
            within = list(levels)
        else:
            pats = _build_patterns(prep["subject"], prep["visit"], x, y, len(levels))
            self._rows = (prep["visit"], len(levels), x, y)  # for the empirical covariance
            return (pats, *self._visit_positions(pats, levels, []))
        pats = _build_patterns(prep["subject"], position, x, y, spec.n_groups * spec.t)
        self._rows = (position, spec.n_groups * spec.t, x, y)
        if spec.name != "sp_exp":
            return (pats, *self._visit_positions(pats, levels, prep["group_levels"]))
        return pats, spec, within

    def _visit_positions(
        self, pats: _Patterns, levels: list[str], group_levels: list[str]
    ) -> tuple[str | _CovSpec, list[str]]:
        """The structure over the visits (by ``group`` level when given) and its positions' labels, after
        checking that the patterns identify it (in-memory and out-of-core fits alike)."""
        if self.group is None:
            _check_identifiable(pats, self.covariance, levels, 1)
            return self.covariance, list(levels)
        n_groups = max(len(group_levels), 1)
        _check_identifiable(
            pats, self.covariance, [f"{v} ({self.group}={g})" for g in group_levels for v in levels], n_groups
        )
        return _CovSpec(self.covariance, len(levels), n_groups), [
            f"{g}:{v}" for g in group_levels for v in levels
        ]

    # ---- the estimator contract: the fitted result's tables, as GrowthModel has them ---------------
    @property
    def design_(self) -> Design:
        """The fixed-effects design of the fit."""
        self._check_fitted()
        return self.result_._view.design_

    @property
    def column_info_(self) -> dict[str, tuple[str, Any]]:
        """Reference-grid defaults of the predictors (factor levels, numeric means over fitted rows)."""
        self._check_fitted()
        return self.result_._view.column_info_

    @property
    def inference_(self) -> WaldInference:
        """Inference of the fixed effects (Satterthwaite or Kenward-Roger)."""
        self._check_fitted()
        return self.result_.inference

    def emmeans(
        self,
        specs: str | Sequence[str] | None = None,
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
    ) -> EmmeansResult:
        """Estimated marginal means (:meth:`MMRMResult.emmeans`; ``specs`` defaults to the visit).

        Parameters
        ----------
        specs : str or sequence of str, optional
            Predictors whose level combinations get a mean (default: the visit).
        by : str or sequence of str, optional
            Predictors to condition on.
        at : mapping, optional
            Values of predictors in the reference grid.
        level : float, optional
            Confidence level (default: ``level`` of the model).

        Returns
        -------
        EmmeansResult
            ``means`` and ``contrasts(method, adjust)``.
        """
        self._check_fitted()
        return self.result_.emmeans(specs, by=by, at=at, level=level)

    def plot(self, ax: Axes | None = None, by: str | None = None) -> Axes:
        """LS means by visit with confidence intervals (:meth:`MMRMResult.plot`); returns the axes."""
        self._check_fitted()
        return self.result_.plot(ax=ax, by=by)


def _sp_exp_boundary(theta: FloatArray, spec: _CovSpec) -> bool:
    """sp_exp at a boundary: a range far below the closest positions (independence) or far beyond the
    farthest (correlation 1), in some group."""
    assert spec.distances is not None
    d = spec.distances[spec.distances > 0]
    if d.size == 0:
        return True
    phi = np.exp(theta[1::2])
    return bool(np.any(phi < 1e-3 * d.min()) or np.any(phi > 1e3 * d.max()))


def _check_identifiable(pats: _Patterns, structure: str, labels: list[str], n_groups: int) -> None:
    """Refuse a covariance whose parameters the observed visits cannot identify.

    ``us``: every pair of visits (within a group) observed together in some subject; structures with a
    variance per visit: every visit observed (within each group of a group-specific covariance).
    """
    t = pats.t
    together = np.zeros((t, t), dtype=bool)
    for vis in pats.visit_sets:  # loop over missingness patterns
        together[np.ix_(vis, vis)] = True
    t_g = t // n_groups
    same_group = np.equal.outer(np.arange(t) // t_g, np.arange(t) // t_g)
    if structure in _HETERO and not np.diag(together).all():
        a = int(np.flatnonzero(~np.diag(together))[0])
        raise ModelSpecificationError(
            f"visit {labels[a]} has no observation, so its variance under {structure} is not identifiable; "
            "use a structure with one variance (e.g. ar1, cs) or drop the group"
        )
    if structure == "us" and not together[same_group].all():
        a, b = np.argwhere(~together & same_group)[0]
        raise ModelSpecificationError(
            f"visits {labels[a]!r} and {labels[b]!r} are never observed in the same "
            "subject, so their unstructured covariance is not identifiable; use toep, ar1 or cs"
        )


def _as_polars(data: object) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    if isinstance(data, pd.DataFrame):
        return pl.from_pandas(data)
    raise UnusableInputError(f"data must be a polars or pandas DataFrame, got {type(data).__name__}")


def _start_sigma(pats: _Patterns, positive_definite: bool = True) -> FloatArray:
    """Pairwise moment estimate of Sigma from OLS residuals, made positive definite.

    ``positive_definite=False`` skips that (an eigendecomposition) where only the variances are used
    (sp_exp, whose positions may be many).
    """
    p, t = pats.p, pats.t
    xtx = np.zeros((p + 1, p + 1))
    for ten in pats.tensors:
        m = ten.shape[0]
        xtx += np.einsum("aiaj->ij", ten) if m else 0.0
    beta = np.linalg.lstsq(xtx[:p, :p], xtx[:p, p], rcond=None)[0]
    v = np.concatenate([-beta, [1.0]])
    num = np.zeros((t, t))
    cnt = np.zeros((t, t))
    for vis, n_k, ten in zip(pats.visit_sets, pats.counts, pats.tensors, strict=True):
        num[np.ix_(vis, vis)] += np.einsum("i,aibj,j->ab", v, ten, v)
        cnt[np.ix_(vis, vis)] += n_k
    s0 = np.where(cnt > 0, num / np.maximum(cnt, 1), 0.0)
    var = np.diag(s0).copy()
    var = np.where(var > 0, var, max(float(var.max()), 1.0))
    sd = np.sqrt(var)
    if not positive_definite:
        return cast("FloatArray", np.diag(var))
    corr = s0 / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    w, vecs = np.linalg.eigh(0.5 * (corr + corr.T))
    w = np.maximum(w, 0.05)
    corr = vecs @ np.diag(w) @ vecs.T
    d = np.sqrt(np.diag(corr))
    corr = corr / np.outer(d, d)
    sigma: FloatArray = corr * np.outer(sd, sd)
    return sigma


def _optimise(crit: _Criterion, theta0: FloatArray, max_iter: int) -> tuple[FloatArray, _OptimiserReport]:
    """BFGS from ``theta0`` then Newton steps on the observed Hessian until the Newton decrement is tiny."""
    fun = crit.value_and_grad
    res = optimize.minimize(fun, theta0, jac=True, method="BFGS", options={"maxiter": max_iter, "gtol": 1e-6})
    theta = np.asarray(res.x, dtype=float)
    f, g = fun(theta)
    iters = int(res.nit)
    newton = 0
    decrement = math.inf
    converged = False
    message = f"BFGS: {res.message}"
    for _ in range(50):  # Newton polishing (a handful of steps from a nearby point)
        hess = crit.hessian(theta)
        try:
            evals, evecs = np.linalg.eigh(hess)
        except np.linalg.LinAlgError:
            break
        evals_c = np.maximum(np.abs(evals), 1e-8 * max(1.0, float(np.abs(evals).max())))
        step = -evecs @ ((evecs.T @ g) / evals_c)
        decrement = float(-g @ step)
        if decrement < 1e-10 and evals.min() > 0:
            converged = True
            break
        lam = 1.0
        for _ in range(30):  # step halving
            f_new, g_new = fun(theta + lam * step)
            if f_new <= f + 1e-4 * lam * float(g @ step) or (math.isfinite(f_new) and abs(f_new - f) < 1e-12):
                break
            lam *= 0.5
        else:
            # no decrease possible: converged if already at the optimum to rounding error, i.e. the
            # predicted decrease is below 1e-8 or below the rounding of the criterion itself (1e-12 |f|:
            # -2 log L of 10^6 subjects is ~3e7, whose evaluations differ by ~1e-6 from rounding alone)
            converged = decrement < max(1e-8, _ROUNDING * abs(f)) and evals.min() > 0
            if not converged:
                message += "; Newton line search failed"
            break
        theta = theta + lam * step
        f, g = f_new, g_new
        newton += 1
    if converged:
        message += f"; converged (Newton decrement {decrement:.2g})"
    else:
        message += f"; not converged (Newton decrement {decrement:.3g})"
    return theta, {
        "optimizer": "BFGS + Newton (observed Hessian)",
        "iterations": iters,
        "newton_steps": newton,
        "criterion": f,
        "gradient_norm": float(np.max(np.abs(g))),
        "newton_decrement": decrement,
        "converged": converged,
        "message": message,
    }


def _column_info(formula: ModelFormula, frame: pl.DataFrame) -> dict[str, tuple[str, Any]]:
    """Predictor columns for the emmeans reference grid: factor levels, or the mean over fitted rows."""
    info: dict[str, tuple[str, Any]] = {}
    for var in formula.variables.values():
        for col in var.columns:
            if var.kind == "factor":
                info[col] = ("factor", [str(v) for v in var.levels])
            elif col not in info:
                info[col] = ("numeric", _column_mean(frame, col))
    return info


def fit_mmrm(
    data: Any, formula: str, subject: str, visit: str, covariance: str = "us", **kwargs: Any
) -> MMRMResult:
    """Fit an :class:`MMRM` and return its result (a functional shortcut).

    Parameters
    ----------
    data : polars.DataFrame or pandas.DataFrame
        Long data, one row per subject and visit.
    formula, subject, visit, covariance
        As for :class:`MMRM`.
    **kwargs
        Other :class:`MMRM` parameters (``visit_levels``, ``reference``, ``reml``, ``level``, ``ddf``,
        ``group``, ``coordinates``, ``weights``, ``vcov``).

    Returns
    -------
    MMRMResult

    Notes
    -----
    See :class:`MMRM` for the model and formulas. Validated against: ``nlme::gls`` and SAS PROC
    MIXED listings (see :class:`MMRM`).
    """
    return MMRM(formula, subject, visit, covariance=covariance, **kwargs).fit(data).result_
