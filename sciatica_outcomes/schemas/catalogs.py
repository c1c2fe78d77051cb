"""Exercise and measure catalogs, shipped as data with the package.

The catalogs are CSV files in ``sciatica_outcomes/schemas/data`` so that a clinic can read them without
Python; ``sciatica-outcomes schemas export`` copies them next to the table schemas in ``data/schemas/``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import polars as pl

__all__ = ["exercise_catalog", "measure_catalog"]

_EXERCISE_SCHEMA = {
    "code": pl.String,
    "name": pl.String,
    "category": pl.String,
    "muscle_group": pl.String,
    "muscles": pl.String,
    "dose_type": pl.String,
    "family": pl.String,
    "family_level": pl.Int32,
    "description": pl.String,
}

_MEASURE_SCHEMA = {
    "code": pl.String,
    "label": pl.String,
    "unit": pl.String,
    "kind": pl.String,
    "higher_is_better": pl.Boolean,
    "min": pl.Float64,
    "max": pl.Float64,
    "integer": pl.Boolean,
    "cap_allowed": pl.Boolean,
    "loinc": pl.String,
    "versions": pl.String,
    "source": pl.String,
}


@cache
def _read(name: str, schema: tuple[tuple[str, pl.DataType], ...]) -> pl.DataFrame:
    text = resources.files("sciatica_outcomes.schemas").joinpath("data", name).read_bytes()
    return pl.read_csv(text, schema=dict(schema))


def exercise_catalog() -> pl.DataFrame:
    """Return the exercise catalog: one row per exercise code.

    Returns
    -------
    polars.DataFrame
        Columns ``code, name, category, muscle_group, muscles, dose_type, family, family_level,
        description``. ``category`` is one of stability, strength, mobility, neural; ``muscle_group``
        one of core, gluteus_maximus, gluteus_medius, hamstrings, neural; ``dose_type`` says how the
        dose is recorded (reps, hold, load, band); a higher ``family_level`` within a ``family`` is a
        harder variant (a progression).
    """
    return _read("exercises.csv", tuple(_EXERCISE_SCHEMA.items()))


def measure_catalog() -> pl.DataFrame:
    """Return the measure catalog: one row per measure code with its range and direction.

    Returns
    -------
    polars.DataFrame
        Columns ``code, label, unit, kind, higher_is_better, min, max, integer, cap_allowed, loinc,
        versions, source``. ``higher_is_better`` is the direction every downstream function honours;
        ``max`` is empty for capped performance tests, whose upper bound is the test's own ``cap_min``.
    """
    return _read("measures.csv", tuple(_MEASURE_SCHEMA.items()))
