"""Frozen results of a fitted mixed model: tables, fit statistics and convergence diagnostics as data."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

__all__ = ["ConvergenceDiagnostics", "FitResult"]

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


@dataclass(frozen=True)
class FitResult:
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

    @property
    def summary(self) -> pl.DataFrame:
        """Fixed-effects table: ``term, estimate, se, df, t, p, ci_low, ci_high``."""
        return self.fixed_effects

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
