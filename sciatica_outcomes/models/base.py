"""The estimator contract every model of ``sciatica_outcomes.models`` implements.

As in scikit-learn and lifelines: configuration is stored by ``__init__`` unchanged (one attribute per
constructor argument, so :meth:`Estimator.get_params` can return them) and validated at ``fit``; ``fit(data)``
returns ``self``; fitted state ends in ``_``; using it before ``fit`` raises
:class:`~sciatica_outcomes.errors.NotFittedError` with a sentence saying so. Every fitted estimator has a
``summary`` (fixed columns :data:`SUMMARY_COLUMNS`), a JSON-ready ``to_dict()`` with at least the keys
:data:`COMMON_KEYS`, ``emmeans(specs, by=None, at=None, level=None)`` and ``plot(ax=None)``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeAlias, cast

from sciatica_outcomes.errors import ModelSpecificationError, NotFittedError, UnusableInputError

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    from matplotlib.axes import Axes

    from sciatica_outcomes.models.emmeans import EmmeansResult
    from sciatica_outcomes.models.results import ModelResult

__all__ = ["COMMON_KEYS", "SUMMARY_COLUMNS", "Estimator", "FrameLike", "complete_rows"]

FrameLike: TypeAlias = "pl.DataFrame | pd.DataFrame"
"""The data an estimator accepts: a polars or a pandas frame (pandas is converted)."""

#: columns of every estimator's ``summary`` (fixed effects), in this order
SUMMARY_COLUMNS: tuple[str, ...] = ("term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high")

#: top-level keys every estimator's ``to_dict()`` has: ``model`` names the family, ``method`` is
#: ``"REML"`` or ``"ML"``, ``fixed_effects`` are the rows of ``summary``
COMMON_KEYS: tuple[str, ...] = (
    "model",
    "formula",
    "method",
    "ddf_method",
    "n_obs",
    "fixed_effects",
    "loglik",
    "aic",
    "bic",
    "converged",
    "diagnostics",
)


class Estimator(ABC):
    """Base of the model estimators (``GrowthModel``, ``MMRM``).

    Subclasses store every constructor argument under its own name, check it in :meth:`_validate_params`
    (called first thing by ``fit``) and set ``result_`` at the end of a successful ``fit``.
    """

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, by name (as scikit-learn's ``get_params``).

        Returns
        -------
        dict
            ``{name: value}`` for every parameter of ``__init__``; ``type(m)(**m.get_params())`` is an
            unfitted estimator with the same configuration.
        """
        sig = inspect.signature(type(self).__init__)
        names = [
            name
            for name, par in sig.parameters.items()
            if name != "self" and par.kind not in (par.VAR_POSITIONAL, par.VAR_KEYWORD)
        ]
        return {name: getattr(self, name) for name in names}

    def _validate_params(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Check the configuration; raise ``ModelSpecificationError`` with a sentence (called by ``fit``)."""

    @abstractmethod
    def fit(self, data: FrameLike) -> Self:
        """Fit to ``data`` (a polars or pandas frame) and return ``self``."""

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has completed."""
        return "result_" in self.__dict__

    def _check_fitted(self) -> None:
        """Raise :class:`~sciatica_outcomes.errors.NotFittedError` unless :meth:`fit` has completed."""
        if not self.is_fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call .fit(frame) first")

    def _fitted(self) -> None:
        """Alias of :meth:`_check_fitted` (the name ``emmeans.FittedModel`` reads)."""
        self._check_fitted()

    if not TYPE_CHECKING:  # hidden from mypy, which would otherwise accept any attribute name

        def __getattr__(self, name: str) -> Any:
            # Only reached when normal lookup failed: a fitted-only attribute (``beta_``) before fit, or a
            # property (``summary``) whose getter raised NotFittedError, an AttributeError, before fit.
            public = not name.startswith("_")
            if public and not self.is_fitted and (name.endswith("_") or hasattr(type(self), name)):
                raise NotFittedError(
                    f"{type(self).__name__}.{name} needs a fitted model: call .fit(frame) before using it"
                )
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _result(self) -> ModelResult:
        """The frozen result of the fit (``result_``), after :meth:`_check_fitted`."""
        self._check_fitted()
        return cast("ModelResult", self.__dict__["result_"])

    @property
    def summary(self) -> pl.DataFrame:
        """Fixed effects with columns :data:`SUMMARY_COLUMNS` (``result_.summary``)."""
        return self._result().summary

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record of the fit with at least the keys :data:`COMMON_KEYS` (``result_.to_dict()``)."""
        return self._result().to_dict()

    @abstractmethod
    def emmeans(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
    ) -> EmmeansResult:
        """Estimated marginal means (:func:`sciatica_outcomes.models.emmeans.emmeans`)."""

    @abstractmethod
    def plot(self, ax: Axes | None = None) -> Axes:
        """The model's standard figure on ``ax`` (a new figure if ``None``); returns the axes."""


def complete_rows(frame: pl.DataFrame, columns: Sequence[str], what: str) -> tuple[pl.DataFrame, int]:
    """The rows of ``frame`` with every model column present, numbered by their original position.

    Parameters
    ----------
    frame : polars.DataFrame
        The data given to ``fit``.
    columns : sequence of str
        The columns the model uses (formula, and offset, trials or weights columns).
    what : str
        How the messages name the model (e.g. ``"formula 'y ~ week + (1 | patient)'"``).

    Returns
    -------
    rows : polars.DataFrame
        ``__row`` (the row's position in ``frame``) and ``columns``, rows with a null or NaN dropped.
    n_dropped : int
        Rows dropped for a missing value (counted in the fit's diagnostics, never silent).

    Raises
    ------
    ModelSpecificationError
        A column the data do not have (the message lists the available ones).
    UnusableInputError
        No complete row.
    """
    import polars as pl  # noqa: PLC0415 - the contract module stays import-light

    cols = list(dict.fromkeys(columns))
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ModelSpecificationError(
            f"{what} uses column(s) {missing} that the data do not have; available columns: "
            f"{', '.join(frame.columns)}"
        )
    rows = frame.select(cols).with_row_index("__row")
    incomplete = pl.any_horizontal(
        [
            pl.col(c).is_null() | (pl.col(c).is_nan() if rows[c].dtype.is_float() else pl.lit(False))
            for c in cols
        ]
    )
    kept = rows.filter(~incomplete)
    if kept.height == 0:
        raise UnusableInputError(f"no complete rows: all {rows.height} rows miss one of {cols} ({what})")
    return kept, rows.height - kept.height
