"""A REDCap project that maps 1:1 onto the canonical tables: data dictionary, mapping, repeating forms.

One REDCap instrument (form) per canonical table. The record is the episode (``record_id`` =
``episode_id``); ``episodes`` is the non-repeating form, every other form is a repeating instrument (one
instance per session, exercise row, measure, item answer or red-flag screen). Field names carry a short prefix
per form so that they are unique in the project and at most 26 characters long (REDCap's recommended
maximum). Choice codes are the canonical codes, so a raw export needs no recoding; yes/no fields export
``1``/``0``.

A clinic builds the capture project by uploading ``data/schemas/redcap/data_dictionary.csv`` (Project Setup,
Data Dictionary) and enabling repeating instruments as in ``repeating_instruments.csv``.
"""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.schemas.registry import TABLE_SPECS

__all__ = [
    "DICTIONARY_COLUMNS",
    "FORM_PREFIX",
    "RECORD_ID",
    "redcap_dictionary",
    "redcap_field_names",
    "redcap_mapping",
    "repeating_instruments",
]

#: Column headers of a REDCap data dictionary, in REDCap's order.
DICTIONARY_COLUMNS: tuple[str, ...] = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)

RECORD_ID = "record_id"

#: Field-name prefix of every form.
FORM_PREFIX: dict[str, str] = {
    "episodes": "ep_",
    "sessions": "se_",
    "session_exercises": "sx_",
    "measures": "me_",
    "questionnaire_items": "qi_",
    "symptom_checks": "sc_",
}

_SHORT = {
    "prescribed_sessions_per_week": "sessions_per_week",
    "symptom_duration_weeks": "symptom_weeks",
    "warmup_neural_glides": "warmup_glides",
    "instrument_version": "version",
    "progressive_weakness": "prog_weakness",
    "bladder_bowel_change": "bladder_bowel",
}


def redcap_field_names(table: str) -> dict[str, str]:
    """REDCap field name of every canonical column of ``table`` (``episode_id`` is ``record_id``)."""
    out: dict[str, str] = {}
    for column in TABLE_SPECS[table].columns:
        if column == "episode_id":
            out[column] = RECORD_ID
        else:
            out[column] = FORM_PREFIX[table] + _SHORT.get(column, column)
    return out


def _label(column: str) -> str:
    return column.replace("_", " ").capitalize()


def redcap_dictionary() -> pl.DataFrame:
    """The REDCap data dictionary of the capture project (all columns String, REDCap's header)."""
    rows: list[dict[str, str]] = [
        {
            "Variable / Field Name": RECORD_ID,
            "Form Name": "episodes",
            "Field Type": "text",
            "Field Label": "Episode code (pseudonymous)",
            "Required Field?": "y",
        }
    ]
    for table, spec in TABLE_SPECS.items():
        names = redcap_field_names(table)
        for column, col in spec.schema.columns.items():
            if column == "episode_id":
                continue
            dtype = spec.dtypes[column].base_type()
            row = {
                "Variable / Field Name": names[column],
                "Form Name": table,
                "Field Label": col.description or _label(column),
                "Field Annotation": f"canonical: {table}.{column}",
            }
            allowed = next((c.statistics["allowed_values"] for c in col.checks if c.name == "isin"), None)
            lo = next((c.statistics["min_value"] for c in col.checks if "min_value" in c.statistics), None)
            hi = next((c.statistics["max_value"] for c in col.checks if "max_value" in c.statistics), None)
            if allowed is not None:
                row["Field Type"] = "dropdown"
                row["Choices, Calculations, OR Slider Labels"] = " | ".join(f"{a}, {a}" for a in allowed)
            elif dtype == pl.Boolean:
                row["Field Type"] = "yesno"
            else:
                row["Field Type"] = "text"
                validation = {pl.Int64: "integer", pl.Float64: "number", pl.Date: "date_ymd"}.get(dtype)
                if validation:
                    row["Text Validation Type OR Show Slider Number"] = validation
                if dtype in (pl.Int64, pl.Float64):
                    if lo is not None:
                        row["Text Validation Min"] = str(lo)
                    if hi is not None:
                        row["Text Validation Max"] = str(hi)
            if not col.nullable and column in spec.required_columns:
                row["Required Field?"] = "y"
            rows.append(row)
    return pl.DataFrame(
        [{c: r.get(c, "") for c in DICTIONARY_COLUMNS} for r in rows],
        schema=dict.fromkeys(DICTIONARY_COLUMNS, pl.String),
    )


def redcap_mapping() -> pl.DataFrame:
    """Mapping of REDCap fields to canonical columns: ``form_name, field_name, table, column``."""
    rows = [
        {"form_name": table, "field_name": field, "table": table, "column": column}
        for table in TABLE_SPECS
        for column, field in redcap_field_names(table).items()
    ]
    return pl.DataFrame(
        rows,
        schema={"form_name": pl.String, "field_name": pl.String, "table": pl.String, "column": pl.String},
    )


def repeating_instruments() -> pl.DataFrame:
    """Repeating-instrument setup of the project (REDCap's upload format for a classic project)."""
    forms = [t for t in TABLE_SPECS if t != "episodes"]
    return pl.DataFrame({"form_name": forms, "custom_form_label": [""] * len(forms)})
