"""Export the canonical schemas as Frictionless Table Schemas, with the catalogs and the REDCap files.

``sciatica-outcomes schemas export`` writes ``data/schemas/<table>.schema.json`` (fields, types, constraints,
``primaryKey``, ``foreignKeys``), ``exercises.csv``, ``measures.csv``, ``labels.csv`` and ``redcap/`` (data
dictionary, mapping, events, instrument designations, repeating instruments). The output is deterministic so
that a test can fail when the committed files are stale.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from sciatica_outcomes.defaults import DEFAULT_SCHEMA_DIR
from sciatica_outcomes.schemas._spec import SCHEMA_VERSION, TableSpec
from sciatica_outcomes.schemas.redcap import (
    event_designations,
    redcap_dictionary,
    redcap_events,
    redcap_mapping,
    repeating_instruments,
)
from sciatica_outcomes.schemas.registry import TABLE_SPECS

__all__ = ["DEFAULT_SCHEMA_DIR", "export_schemas", "table_schema"]

#: Where ``schemas export`` writes by default (relative to the repository root).

_TYPES = {
    pl.String: "string",
    pl.Int64: "integer",
    pl.Float64: "number",
    pl.Date: "date",
    pl.Boolean: "boolean",
}
#: Boolean spellings the ingest accepts (case-insensitive), listed for Frictionless tools.
TRUE_VALUES = ["true", "True", "TRUE", "t", "yes", "Yes", "y", "1"]
FALSE_VALUES = ["false", "False", "FALSE", "f", "no", "No", "n", "0"]


def _num(x: Any) -> Any:
    return int(x) if isinstance(x, float) and x.is_integer() else x


def table_schema(spec: TableSpec) -> dict[str, Any]:
    """Frictionless Table Schema of one canonical table.

    Parameters
    ----------
    spec : TableSpec
        The table.

    Returns
    -------
    dict
        ``fields`` (name, type, description, constraints: required, minimum, maximum, exclusiveMinimum,
        exclusiveMaximum, enum, pattern, unique), ``primaryKey``, ``foreignKeys``, ``missingValues`` and the
        schema version.
    """
    fields = []
    for name, col in spec.schema.columns.items():
        dtype = spec.dtypes[name].base_type()
        field: dict[str, Any] = {"name": name, "type": _TYPES[dtype]}
        if col.description:
            field["description"] = col.description
        if dtype == pl.Date:
            field["format"] = "%Y-%m-%d"
        if dtype == pl.Boolean:
            field["trueValues"] = TRUE_VALUES
            field["falseValues"] = FALSE_VALUES
        cons: dict[str, Any] = {}
        if not col.nullable and name in spec.required_columns:
            cons["required"] = True
        for chk in col.checks:
            st = chk.statistics
            if chk.name == "greater_than_or_equal_to":
                cons["minimum"] = _num(st["min_value"])
            elif chk.name == "greater_than":
                cons["exclusiveMinimum"] = _num(st["min_value"])
            elif chk.name == "less_than_or_equal_to":
                cons["maximum"] = _num(st["max_value"])
            elif chk.name == "less_than":
                cons["exclusiveMaximum"] = _num(st["max_value"])
            elif chk.name == "in_range":
                cons["minimum"], cons["maximum"] = _num(st["min_value"]), _num(st["max_value"])
            elif chk.name == "isin":
                cons["enum"] = list(st["allowed_values"])
            elif chk.name == "str_matches":
                pat = st["pattern"]
                cons["pattern"] = pat.pattern if hasattr(pat, "pattern") else str(pat)
        if spec.key == (name,):
            cons["unique"] = True
        if cons:
            field["constraints"] = cons
        fields.append(field)
    out: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "schemaVersion": SCHEMA_VERSION,
        "fields": fields,
        "missingValues": ["", "NA"],
        "primaryKey": list(spec.key),
    }
    if spec.foreign_keys:
        out["foreignKeys"] = [
            {"fields": list(fk.columns), "reference": {"resource": fk.table, "fields": list(fk.ref_columns)}}
            for fk in spec.foreign_keys
        ]
    if spec.date_window is not None:
        w = spec.date_window
        out["episodeWindow"] = {
            "field": w.date_column,
            "daysBeforeStart": w.days_before_start,
            "daysAfterEnd": w.days_after_end,
        }
    if spec.not_before_start:
        out["notBeforeEpisodeStart"] = list(spec.not_before_start)
    return out


def export_schemas(out: str | Path = DEFAULT_SCHEMA_DIR) -> list[Path]:
    """Write every table schema, the catalogs and the REDCap files under ``out``.

    Returns
    -------
    list of Path
        Every file written, in a stable order.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, spec in TABLE_SPECS.items():
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(table_schema(spec), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    for catalog in ("exercises.csv", "measures.csv", "labels.csv"):
        data = resources.files("sciatica_outcomes.schemas").joinpath("data", catalog).read_bytes()
        (out / catalog).write_bytes(data)
        written.append(out / catalog)
    red = out / "redcap"
    red.mkdir(exist_ok=True)
    for fname, frame in (
        ("data_dictionary.csv", redcap_dictionary()),
        ("mapping.csv", redcap_mapping()),
        ("events.csv", redcap_events()),
        ("instrument_designations.csv", event_designations()),
        ("repeating_instruments.csv", repeating_instruments()),
    ):
        frame.write_csv(red / fname)
        written.append(red / fname)
    return written
