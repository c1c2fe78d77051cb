"""The exception hierarchy of sciatica-outcomes, in one place.

Every error a user can trigger subclasses :class:`SciaticaOutcomesError` and one built-in type
(``ValueError`` for bad input, ``RuntimeError`` for failures of the machinery), and its message names what was
expected, what was received and how to fix it. Problems found in the *data* are not raised one by one:
they are
collected and returned as data (see ``sciatica_outcomes.ingest``); a model's convergence problems are
reported on its result, not raised.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataValidationError",
    "IdentifierColumnError",
    "ModelSpecificationError",
    "NotFittedError",
    "ReportParameterError",
    "SciaticaOutcomesError",
    "StoreError",
    "UnusableInputError",
]


class SciaticaOutcomesError(Exception):
    """Base class of every error raised by sciatica-outcomes."""


class UnusableInputError(SciaticaOutcomesError, ValueError):
    """An input cannot be used at all (unreadable file, unknown table, wrong format): CLI exit code 2."""


class DataValidationError(SciaticaOutcomesError, ValueError):
    """Rows failed validation and the caller asked for strict behaviour: CLI exit code 1."""


class IdentifierColumnError(SciaticaOutcomesError, ValueError):
    """A column looks like a direct identifier (name, MRN, date of birth, ...) and is refused at ingest."""


class ConfigError(SciaticaOutcomesError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""


class ModelSpecificationError(SciaticaOutcomesError, ValueError):
    """A model formula or design cannot be fitted as specified (unknown column, unsupported term)."""


class NotFittedError(ModelSpecificationError, AttributeError):
    """A fitted-only attribute or method of an estimator was used before ``fit``.

    Also an ``AttributeError`` (as scikit-learn's), so ``hasattr(model, "result_")`` stays ``False`` on an
    unfitted model instead of raising.
    """


class ReportParameterError(SciaticaOutcomesError, ValueError):
    """A report parameter is invalid (unknown quarter, clinic or parameter name)."""


class StoreError(SciaticaOutcomesError, RuntimeError):
    """The DuckDB store could not be opened, read or written."""
