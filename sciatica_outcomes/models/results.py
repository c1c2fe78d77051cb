"""Frozen results of a fitted mixed model: tables, fit statistics and convergence diagnostics as data.

Every estimator's result (:class:`FitResult` of ``GrowthModel``, ``MMRMResult``, ``GLMMResult``) is a frozen
dataclass deriving from :class:`ModelResult`: the fixed effects as ``fixed_effects`` (``summary``), a
``converged`` flag, a JSON-ready ``to_dict()`` / ``to_json()`` and a ``plot()``.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "ConvergenceDiagnostics",
    "FitResult",
    "ModelResult",
    "forest_plot",
    "varcorr_frame",
    "varcorr_rows",
]

FIXED_COLUMNS = ("term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high")
RANDOM_COLUMNS = ("group", "term1", "term2", "variance", "sd", "corr")


def _clean(value: object) -> object:
    """JSON-ready copy: non-finite floats become ``None``, tuples lists, at any depth."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return _clean_dict(value)
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _clean_dict(value: Mapping[str, object]) -> dict[str, Any]:
    return {k: _clean(v) for k, v in value.items()}


@dataclass(frozen=True)
class ConvergenceDiagnostics:
    """How the optimum was reached and how good it is.

    Attributes
    ----------
    optimizer : str
        Optimizer chain used (``"L-BFGS-B + projected Newton"``).
    n_evaluations : int
        Deviance (and gradient) evaluations.
    n_restarts : int
        Extra optimizer runs made after the first.
    gradient_norm : float
        Max-abs projected gradient of the deviance at the optimum (0 for an exact optimum).
    hessian_positive_definite : bool
        Whether the Hessian of the profiled deviance in ``theta`` (free parameters) is positive definite.
    hessian_min_eigenvalue : float
        Smallest eigenvalue of that Hessian.
    singular : bool
        Boundary fit: a relative SD (diagonal of ``Lambda``) below ``1e-4`` (lme4's ``isSingular``).
    converged : bool
        Gradient below tolerance and Hessian positive definite (or the fit singular).
    messages : tuple of str
        Human-readable notes (boundary fit, restarts, dropped rows).
    n_dropped_incomplete : int
        Rows dropped because a model variable was missing.
    """

    optimizer: str
    n_evaluations: int
    n_restarts: int
    gradient_norm: float
    hessian_positive_definite: bool
    hessian_min_eigenvalue: float
    singular: bool
    converged: bool
    messages: tuple[str, ...] = ()
    n_dropped_incomplete: int = 0
    fit_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        out = dict(self.__dict__)
        out["messages"] = list(self.messages)
        return _clean_dict(out)


def forest_plot(summary: pl.DataFrame, ax: Axes | None = None, xlabel: str = "estimate (95% CI)") -> Axes:
    """Forest plot of fixed effects (``term, estimate, ci_low, ci_high``; the intercept left out).

    Parameters
    ----------
    summary : polars.DataFrame
        A fixed-effects table with :data:`FIXED_COLUMNS`.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure if None).
    xlabel : str
        Label of the estimate axis.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

    fe = summary.filter(pl.col("term") != "(Intercept)")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.4 * fe.height + 1))
    ypos = np.arange(fe.height)[::-1]
    est = fe["estimate"].to_numpy()
    ax.errorbar(
        est,
        ypos,
        xerr=[est - fe["ci_low"].to_numpy(), fe["ci_high"].to_numpy() - est],
        fmt="o",
        capsize=3,
    )
    ax.axvline(0.0, color="grey", lw=0.8)
    ax.set_yticks(ypos, fe["term"].to_list())
    ax.set_xlabel(xlabel)
    return ax


def varcorr_rows(group: str, names: Sequence[str], cov: Any) -> list[dict[str, Any]]:
    """Rows of ``as.data.frame(VarCorr(m))`` for one random-effects term: variances, then correlations.

    Parameters
    ----------
    group : str
        The grouping label as ``VarCorr`` prints it (``patient``, ``patient.1``).
    names : sequence of str
        The term's random-effect names (``(Intercept)``, ``week``).
    cov : numpy.ndarray
        Their covariance matrix.

    Returns
    -------
    list of dict
        ``group, term1, term2, variance, sd, corr``: one row per variance (``sd`` set), then one per pair
        ``j < i`` (``corr = cov_ij / (sd_i sd_j)``, NaN when an SD is 0).
    """
    sd = np.sqrt(np.diag(cov))
    q = len(names)
    rows: list[dict[str, Any]] = [
        {"group": group, "term1": names[i], "term2": None, "variance": cov[i, i], "sd": sd[i], "corr": None}
        for i in range(q)
    ]
    rows += [
        {
            "group": group,
            "term1": names[j],
            "term2": names[i],
            "variance": cov[i, j],
            "sd": None,
            "corr": cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else float("nan"),
        }
        for j in range(q)
        for i in range(j + 1, q)
    ]
    return rows


def varcorr_frame(rows: Sequence[Mapping[str, Any]], sigma: float | None = None) -> pl.DataFrame:
    """The variance-components table (columns :data:`RANDOM_COLUMNS`) from :func:`varcorr_rows` rows.

    With ``sigma`` (a Gaussian model's residual SD) the ``Residual`` row (variance ``sigma^2``) comes last, as
    in lme4's ``as.data.frame(VarCorr(m))``.
    """
    schema = {c: pl.String for c in RANDOM_COLUMNS[:3]} | {c: pl.Float64 for c in RANDOM_COLUMNS[3:]}
    residual = (
        []
        if sigma is None
        else [
            {
                "group": "Residual",
                "term1": None,
                "term2": None,
                "variance": sigma**2,
                "sd": sigma,
                "corr": None,
            }
        ]
    )
    return pl.DataFrame([*rows, *residual], schema=schema)


class ModelResult(ABC):
    """Base of the frozen results of every estimator.

    Subclasses are frozen dataclasses with a ``fixed_effects`` field (columns :data:`FIXED_COLUMNS`) and
    implement :attr:`converged` and :meth:`to_dict` (with at least
    :data:`~sciatica_outcomes.models.base.COMMON_KEYS`).
    """

    fixed_effects: pl.DataFrame

    @property
    def summary(self) -> pl.DataFrame:
        """Fixed-effects table: ``term, estimate, se, df, t, p, ci_low, ci_high``."""
        return self.fixed_effects

    @property
    @abstractmethod
    def converged(self) -> bool:
        """Whether the optimizer's final checks passed."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the fit."""

    def to_json(self, indent: int | None = 1) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Forest plot of the fixed effects with their intervals (:func:`forest_plot`)."""
        return forest_plot(self.summary, ax)


@dataclass(frozen=True)
class FitResult(ModelResult):
    """Result of fitting a growth model: the numbers a paper or a report needs, as data."""

    formula: str
    reml: bool
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
    diagnostics: ConvergenceDiagnostics
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Whether the optimizer's final checks passed."""
        return self.diagnostics.converged

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``fit --json`` schema)."""
        out: dict[str, Any] = {
            "model": "lmm",
            "formula": self.formula,
            "method": "REML" if self.reml else "ML",
            "fixed_effects": self.fixed_effects.select(FIXED_COLUMNS).to_dicts(),
            "random_effects": self.random_effects.select(RANDOM_COLUMNS).to_dicts(),
            "sigma": self.sigma,
            "loglik": self.loglik,
            "deviance": self.deviance,
            "aic": self.aic,
            "bic": self.bic,
            "reml": self.reml,
            "n_obs": self.n_obs,
            "n_groups": dict(self.n_groups),
            "theta": list(self.theta),
            "converged": self.converged,
            "diagnostics": self.diagnostics.to_dict(),
        }
        out.update(self.extras)
        return _clean_dict(out)
