"""What a person filling in the canonical tables needs beyond the schema: labels, units and an example row.

The pandera models say what is *allowed*; this module says what a code *means* in plain words
(:func:`value_labels`), which unit a number is in (:data:`COLUMN_UNITS`) and gives one filled example row per
table (:data:`EXAMPLE_ROWS`), consistent across the tables (one episode, one session). The data guide
(``docs/data-guide.md``) and the ``template`` command are generated from these and from the schemas;
``tests/schemas/test_documentation.py`` fails when a code, a numeric column or a column of a table has no
entry here, so a schema change cannot leave the guide behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog
from sciatica_outcomes.schemas.frictionless import table_schema
from sciatica_outcomes.schemas.registry import TABLE_SPECS

__all__ = [
    "COLUMN_UNITS",
    "EXAMPLE_ROWS",
    "INSTRUMENT_LABELS",
    "ROW_RULES",
    "TYPE_NAMES",
    "ColumnDoc",
    "coded_columns",
    "column_docs",
    "value_labels",
]

_END_REASONS = {
    "completed": "Completed the program",
    "dropped_out": "Stopped attending before the end (dropped out)",
    "referred": "Referred on (e.g. to a physician or specialist)",
    "surgery": "Went on to surgery",
    "injection": "Went on to a spinal injection",
    "other": "Other reason",
}
_SEXES = {"F": "Female", "M": "Male", "X": "Other or not stated"}
_SIDES = {"left": "Left leg", "right": "Right leg", "bilateral": "Both legs"}
_SESSION_STATUSES = {
    "completed": "Session took place",
    "missed": "Patient did not attend",
    "cancelled": "Cancelled in advance (by the patient or the clinic)",
}
_SYMPTOM_EXTENTS = {
    "back_only": "Back only",
    "buttock": "Down to the buttock",
    "thigh": "Down to the thigh, above the knee",
    "below_knee": "Below the knee",
    "foot": "Down to the foot",
}
_BANDS = {
    "yellow": "Yellow (lightest)",
    "red": "Red",
    "green": "Green",
    "blue": "Blue",
    "black": "Black",
    "silver": "Silver",
    "gold": "Gold (heaviest)",
}
_STOPPED_REASONS = {
    "symptom": "Stopped by symptoms",
    "fatigue": "Stopped by fatigue",
    "cap": "Reached the test's time cap (the true tolerance is longer: censored)",
}
_ACTIONS = {
    "none": "No action taken",
    "referred_urgent": "Referred urgently",
    "referred_routine": "Referred routinely",
}
_EMPLOYMENT_STATUSES = {
    "employed": "Employed (working for an employer, including while on sick leave)",
    "self_employed": "Self-employed",
    "student": "Student",
    "homemaker": "Homemaker",
    "unemployed": "Unemployed",
    "retired": "Retired",
    "other": "Other situation outside paid work (e.g. disability pension)",
}
_WORK_STATUSES = {
    "full_duties": "At work, full duties",
    "modified_duties": "At work, modified duties or reduced hours",
    "off_work_back_leg": "Off work because of back or leg pain (full or partial sick leave)",
    "off_work_other": "Off work for other reasons",
    "not_applicable": "Not in paid work",
}
#: ``questionnaire_items.instrument``: plain name of every questionnaire code.
INSTRUMENT_LABELS: Mapping[str, str] = MappingProxyType(
    {
        "odi": "Oswestry Disability Index",
        "rmdq": "Roland-Morris Disability Questionnaire (24 items)",
        "sbi": "Sciatica Bothersomeness Index",
        "sfi": "Sciatica Frequency Index",
        "psfs": "Patient-Specific Functional Scale",
        "promis_pf": "PROMIS Physical Function short form",
        "promis_pi": "PROMIS Pain Interference short form",
    }
)

_LABELS: dict[tuple[str, str], Mapping[str, str]] = {
    ("episodes", "end_reason"): _END_REASONS,
    ("episodes", "sex"): _SEXES,
    ("episodes", "affected_side"): _SIDES,
    ("sessions", "status"): _SESSION_STATUSES,
    ("sessions", "symptom_extent"): _SYMPTOM_EXTENTS,
    ("session_exercises", "band"): _BANDS,
    ("measures", "stopped_reason"): _STOPPED_REASONS,
    ("questionnaire_items", "instrument"): INSTRUMENT_LABELS,
    ("symptom_checks", "action_taken"): _ACTIONS,
    ("work", "employment_status"): _EMPLOYMENT_STATUSES,
    ("work", "work_status"): _WORK_STATUSES,
}


def coded_columns(table: str) -> dict[str, tuple[str, ...]]:
    """Columns of ``table`` restricted to a list of codes, with the codes in display order.

    Parameters
    ----------
    table : str
        A canonical table.

    Returns
    -------
    dict of str to tuple of str
        Column name to its allowed codes (from the pandera model's ``isin`` check).
    """
    spec = TABLE_SPECS[table]
    out: dict[str, tuple[str, ...]] = {}
    for name, col in spec.schema.columns.items():
        for check in col.checks:
            if check.name == "isin":
                out[name] = tuple(check.statistics["allowed_values"])
    return out


def value_labels(table: str, column: str) -> dict[str, str]:
    """Plain label of every allowed code of a coded column, in display order.

    Parameters
    ----------
    table, column : str
        A coded column (one of :func:`coded_columns`).

    Returns
    -------
    dict of str to str
        Code to label. Exercise and measure codes take their labels from the catalogs.

    Raises
    ------
    KeyError
        If the column is not coded.
    """
    codes = coded_columns(table)[column]
    if (table, column) == ("session_exercises", "exercise"):
        labels = dict(exercise_catalog().select("code", "name").iter_rows())
    elif (table, column) == ("measures", "measure"):
        labels = dict(measure_catalog().select("code", "label").iter_rows())
    else:
        labels = dict(_LABELS[(table, column)])
    return {code: labels[code] for code in codes}


#: Unit of every numeric column (``tests/schemas/test_documentation.py``: none may be missing).
COLUMN_UNITS: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        ("episodes", "age_at_start"): "years",
        ("episodes", "symptom_duration_weeks"): "weeks",
        ("episodes", "prescribed_sessions_per_week"): "sessions per week",
        ("sessions", "duration_min"): "minutes",
        ("sessions", "pain_before"): "NPRS points (0 no pain, 10 worst imaginable)",
        ("sessions", "pain_after"): "NPRS points (0 no pain, 10 worst imaginable)",
        ("sessions", "pain_next_day"): "NPRS points (0 no pain, 10 worst imaginable)",
        ("sessions", "rpe"): "points (0 rest, 10 maximal effort)",
        ("session_exercises", "set_index"): "row number",
        ("session_exercises", "sets"): "sets",
        ("session_exercises", "reps"): "repetitions per set",
        ("session_exercises", "hold_s"): "seconds",
        ("session_exercises", "load_kg"): "kg",
        ("session_exercises", "pain_during"): "NPRS points (0 no pain, 10 worst imaginable)",
        ("measures", "value"): "the measure's unit (measure catalog)",
        ("measures", "cap_min"): "minutes",
        ("questionnaire_items", "response"): "the item's response code (questionnaires below)",
        ("work", "hours_contracted"): "hours per week",
        ("work", "hours_worked"): "hours per week",
        ("work", "sick_leave_days_4wk"): "days (in the last 4 weeks)",
        ("work", "wpai_q2_hours_missed_health"): "hours (in the last 7 days)",
        ("work", "wpai_q3_hours_missed_other"): "hours (in the last 7 days)",
        ("work", "wpai_q4_hours_worked"): "hours (in the last 7 days)",
        ("work", "wpai_q5_work_impairment"): "points (0 no effect, 10 completely prevented working)",
        ("work", "wpai_q6_activity_impairment"): "points (0 no effect, 10 completely prevented activities)",
    }
)

#: Allowed values that depend on another column of the row (checked by the ingest engine, not by pandera).
ROW_RULES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        (
            "measures",
            "value",
        ): "within the range of its `measure` (measure catalog); a capped test at most `cap_min`",
        ("questionnaire_items", "response"): "within the response range of its `instrument` (questionnaires)",
        ("session_exercises", "reps"): "`reps` or `hold_s` (or both) in every row",
        ("session_exercises", "hold_s"): "`reps` or `hold_s` (or both) in every row",
        ("work", "work_status"): "`not_applicable` exactly when `employment_status` is not paid work "
        "(`employed`, `self_employed`)",
        ("work", "hours_contracted"): "only for people in paid work",
        ("work", "hours_worked"): "only for people in paid work; at most `hours_contracted`",
        ("work", "sick_leave_days_4wk"): "only for people in paid work",
        ("work", "wpai_q2_hours_missed_health"): "only when `wpai_q1_employed` is true",
        ("work", "wpai_q3_hours_missed_other"): "only when `wpai_q1_employed` is true",
        ("work", "wpai_q4_hours_worked"): "only when `wpai_q1_employed` is true; questions 2 + 3 + 4 at "
        "most 168 hours",
        ("work", "wpai_q5_work_impairment"): "only when `wpai_q1_employed` is true",
        ("work", "return_to_work_date"): "only with `work_status` `full_duties` or `modified_duties`; not "
        "before the episode start, not after `assessed_on`",
    }
)

#: One filled row per table, as text exactly as a CSV cell holds it (``None`` = empty cell). The rows belong
#: together: episode ``E0001`` of patient ``P0001``, its first session ``S0001``, and the baseline
#: measurements on the start date. They validate clean (``tests/schemas/test_documentation.py``).
EXAMPLE_ROWS: Mapping[str, Mapping[str, str | None]] = MappingProxyType(
    {
        "episodes": {
            "episode_id": "E0001",
            "patient_id": "P0001",
            "clinic_id": "C01",
            "therapist_id": "T01",
            "program": "strength-12wk",
            "start_date": "2026-03-02",
            "end_date": "2026-05-22",
            "end_reason": "completed",
            "age_at_start": "47",
            "sex": "F",
            "symptom_duration_weeks": "26",
            "affected_side": "left",
            "prescribed_sessions_per_week": "2",
        },
        "sessions": {
            "session_id": "S0001",
            "episode_id": "E0001",
            "session_date": "2026-03-03",
            "status": "completed",
            "duration_min": "45",
            "warmup_neural_glides": "true",
            "pain_before": "5",
            "pain_after": "4",
            "pain_next_day": "4",
            "rpe": "6",
            "symptom_extent": "below_knee",
        },
        "session_exercises": {
            "session_id": "S0001",
            "exercise": "banded_hip_thrust",
            "set_index": "1",
            "sets": "3",
            "reps": "10",
            "hold_s": None,
            "load_kg": None,
            "band": "green",
            "pain_during": "3",
            "modified": "false",
        },
        "measures": {
            "episode_id": "E0001",
            "assessed_on": "2026-03-02",
            "measure": "walk_tolerance_min",
            "value": "18.5",
            "stopped_reason": "symptom",
            "cap_min": "30",
            "instrument_version": None,
        },
        "questionnaire_items": {
            "episode_id": "E0001",
            "assessed_on": "2026-03-02",
            "instrument": "odi",
            "item": "pain_intensity",
            "response": "3",
            "instrument_version": "2.1a",
        },
        "symptom_checks": {
            "episode_id": "E0001",
            "checked_on": "2026-03-02",
            "saddle_numbness": "false",
            "bladder_bowel_change": "false",
            "progressive_weakness": "false",
            "bilateral_symptoms": "false",
            "new_numbness": "false",
            "action_taken": "none",
        },
        "work": {
            "episode_id": "E0001",
            "assessed_on": "2026-03-02",
            "employment_status": "employed",
            "work_status": "modified_duties",
            "hours_contracted": "37.5",
            "hours_worked": "20",
            "sick_leave_days_4wk": "6",
            "wpai_q1_employed": "true",
            "wpai_q2_hours_missed_health": "8",
            "wpai_q3_hours_missed_other": "0",
            "wpai_q4_hours_worked": "20",
            "wpai_q5_work_impairment": "6",
            "wpai_q6_activity_impairment": "5",
            "return_to_work_date": None,
        },
    }
)


#: Plain name of every Frictionless field type.
TYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "string": "text",
        "integer": "whole number",
        "number": "number",
        "date": "date (YYYY-MM-DD)",
        "boolean": "true / false",
    }
)
_PATTERNS = {
    r"^[A-Za-z0-9_.\-]{1,64}$": "a code of 1-64 letters, digits, _ . or - (no spaces)",
    r"^[a-z0-9_]{1,64}$": "a code of 1-64 lower-case letters, digits or _",
}
_CATALOG_COLUMNS = {
    ("session_exercises", "exercise"): "a code of the exercise catalog (data/schemas/exercises.csv)",
    ("measures", "measure"): "a code of the measure catalog (data/schemas/measures.csv)",
}


@dataclass(frozen=True)
class ColumnDoc:
    """Everything a person filling in one column needs to know.

    Attributes
    ----------
    table, name : str
        The column.
    meaning : str
        What it records (the model's description).
    type : str
        Plain type name (:data:`TYPE_NAMES`).
    unit : str
        Unit of a number (:data:`COLUMN_UNITS`), else empty.
    allowed : str
        Allowed values in words; codes in backticks.
    required : str
        ``required``, ``optional``, or how a generated key column is filled in when absent.
    example : str or None
        Value of the example row (:data:`EXAMPLE_ROWS`); ``None`` = empty cell.
    field : dict
        The column's Frictionless field (``type``, ``constraints``), for machine use.
    """

    table: str
    name: str
    meaning: str
    type: str
    unit: str
    allowed: str
    required: str
    example: str | None
    field: Mapping[str, Any]


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def _allowed(table: str, field: Mapping[str, Any]) -> str:
    cons = field.get("constraints", {})
    name = field["name"]
    if (table, name) in _CATALOG_COLUMNS:
        return _CATALOG_COLUMNS[(table, name)]
    if "enum" in cons:
        return "; ".join(f"`{code}` {label}" for code, label in value_labels(table, name).items())
    parts = []
    if "minimum" in cons and "maximum" in cons:
        parts.append(f"{_num(cons['minimum'])} to {_num(cons['maximum'])}")
    else:
        if "minimum" in cons:
            parts.append(f"at least {_num(cons['minimum'])}")
        if "exclusiveMinimum" in cons:
            parts.append(f"more than {_num(cons['exclusiveMinimum'])}")
        if "maximum" in cons:
            parts.append(f"at most {_num(cons['maximum'])}")
        if "exclusiveMaximum" in cons:
            parts.append(f"less than {_num(cons['exclusiveMaximum'])}")
    if "pattern" in cons:
        parts.append(_PATTERNS.get(cons["pattern"], f"matches `{cons['pattern']}`"))
    if field["type"] == "boolean":
        parts.append("`true` or `false`")
    if field["type"] == "date":
        parts.append("a calendar date")
    if field["type"] in ("integer", "number") and not parts:
        parts.append("a number")
    if (table, name) in ROW_RULES:
        parts.append(ROW_RULES[(table, name)])
    if cons.get("unique"):
        parts.append("unique")
    return ", ".join(parts) if parts else "any text"


def column_docs(table: str) -> tuple[ColumnDoc, ...]:
    """Documentation of every column of a canonical table, in canonical column order.

    Parameters
    ----------
    table : str
        A canonical table.

    Returns
    -------
    tuple of ColumnDoc
        One per column.
    """
    spec = TABLE_SPECS[table]
    out = []
    for field in table_schema(spec)["fields"]:
        name = field["name"]
        if name in spec.generated_key_columns:
            required = "column optional: numbered from the row order when absent"
        else:
            required = "required" if field.get("constraints", {}).get("required") else "optional"
        out.append(
            ColumnDoc(
                table=table,
                name=name,
                meaning=field.get("description", ""),
                type=TYPE_NAMES[field["type"]],
                unit=COLUMN_UNITS.get((table, name), ""),
                allowed=_allowed(table, field),
                required=required,
                example=EXAMPLE_ROWS[table][name],
                field=MappingProxyType(field),
            )
        )
    return tuple(out)
