"""Exercise, measure and label catalogs, shipped as data with the package.

The catalogs are CSV files in ``sciatica_outcomes/schemas/data`` so that a clinic can read them without
Python; ``sciatica-outcomes schemas export`` copies them next to the table schemas in ``data/schemas/``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import polars as pl

__all__ = [
    "LABEL_VOCABULARIES",
    "exercise_catalog",
    "label_for",
    "label_map",
    "labels_catalog",
    "measure_catalog",
]

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


_LABEL_SCHEMA = {"vocabulary": pl.String, "code": pl.String, "label": pl.String, "description": pl.String}

#: The labelled vocabularies (codes of ``schemas.vocabulary``). ``table``, ``muscle_group``,
#: ``exercise_category``, ``pain_band`` and ``red_flag`` are in ``labels.csv``; the coded columns of the
#: canonical tables take the labels of the data guide (:data:`_TABLE_COLUMNS`,
#: ``schemas.documentation.value_labels``), so a code has one label wherever it is shown; ``measure`` and
#: ``exercise`` labels come from their own catalogs.
LABEL_VOCABULARIES: tuple[str, ...] = (
    "table",
    "sex",
    "side",
    "end_reason",
    "muscle_group",
    "exercise_category",
    "pain_band",
    "red_flag",
    "action",
    "symptom_extent",
    "stopped_reason",
    "session_status",
    "employment_status",
    "work_status",
)
#: Vocabularies that are a coded column of a canonical table, labelled by the data guide.
_TABLE_COLUMNS: dict[str, tuple[str, str]] = {
    "sex": ("episodes", "sex"),
    "side": ("episodes", "affected_side"),
    "end_reason": ("episodes", "end_reason"),
    "action": ("symptom_checks", "action_taken"),
    "symptom_extent": ("sessions", "symptom_extent"),
    "stopped_reason": ("measures", "stopped_reason"),
    "session_status": ("sessions", "status"),
    "employment_status": ("work", "employment_status"),
    "work_status": ("work", "work_status"),
}


def labels_catalog() -> pl.DataFrame:
    """Return the label catalog: the words a report prints for the codes the data guide does not label.

    Returns
    -------
    polars.DataFrame
        Columns ``vocabulary, code, label, description`` (``description`` may be empty); within a vocabulary
        the rows are in display order (ordered categories such as symptom extent proximal to distal, pain
        bands safe to high risk). Vocabularies: ``table``, ``muscle_group``, ``exercise_category``,
        ``pain_band``, ``red_flag`` (the others of :data:`LABEL_VOCABULARIES` come from the data guide).
    """
    return _read("labels.csv", tuple(_LABEL_SCHEMA.items()))


def label_map(vocabulary: str) -> dict[str, str]:
    """``{code: label}`` of one vocabulary, in display order (``measure`` and ``exercise`` included).

    Raises
    ------
    KeyError
        For a vocabulary no catalog labels.
    """
    if vocabulary == "measure":
        cat = measure_catalog()
        return dict(zip(cat["code"], cat["label"], strict=True))
    if vocabulary == "exercise":
        cat = exercise_catalog()
        return dict(zip(cat["code"], cat["name"], strict=True))
    if vocabulary in _TABLE_COLUMNS:
        # the data guide's labels (imported here: schemas.documentation itself reads these catalogs)
        from sciatica_outcomes.schemas.documentation import value_labels  # noqa: PLC0415

        return value_labels(*_TABLE_COLUMNS[vocabulary])
    part = labels_catalog().filter(pl.col("vocabulary") == vocabulary)
    if part.height == 0:
        known = ", ".join(("measure", "exercise", *LABEL_VOCABULARIES))
        raise KeyError(f"no label catalog for {vocabulary!r}; known vocabularies: {known}")
    return dict(zip(part["code"], part["label"], strict=True))


def label_for(vocabulary: str, code: str) -> str:
    """The label of one code (``label_for("muscle_group", "gluteus_maximus")`` is "gluteus maximus").

    A code the catalog does not know is returned as written, so nothing is hidden; the tests check that
    every code of every vocabulary has a label.
    """
    return label_map(vocabulary).get(code, code)
