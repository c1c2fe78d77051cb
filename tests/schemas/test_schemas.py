"""Tests of the canonical schemas: agreement with the reference data, exports up to date."""

from __future__ import annotations

import json
from pathlib import Path

import pandera.errors as pe
import polars as pl
import pytest

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.schemas import TABLE_SPECS, exercise_catalog, measure_catalog, table_spec
from sciatica_outcomes.schemas.frictionless import export_schemas, table_schema
from sciatica_outcomes.synth import TABLES, Cohort

REPO = Path(__file__).resolve().parents[2]


def test_columns_and_dtypes_match_the_synthetic_reference(cohort_1000: Cohort) -> None:
    assert tuple(TABLE_SPECS) == TABLES
    for name, spec in TABLE_SPECS.items():
        assert spec.dtypes == dict(cohort_1000.tables[name].schema), name


def test_pandera_models_accept_the_synthetic_cohort(cohort_1000: Cohort) -> None:
    for name, spec in TABLE_SPECS.items():
        spec.schema.validate(cohort_1000.tables[name], lazy=True)


def test_pandera_models_reject_out_of_range_values(cohort_1000: Cohort) -> None:
    bad = cohort_1000.tables["sessions"].head(5).with_columns(pl.lit(11, pl.Int64).alias("pain_before"))
    with pytest.raises(pe.SchemaErrors) as info:
        TABLE_SPECS["sessions"].schema.validate(bad, lazy=True)
    assert set(info.value.failure_cases["column"].to_list()) == {"pain_before"}


def test_keys_are_unique_in_the_reference(cohort_1000: Cohort) -> None:
    for name, spec in TABLE_SPECS.items():
        assert not cohort_1000.tables[name].select(spec.key).is_duplicated().any(), name


def test_catalog_codes_are_the_allowed_values() -> None:
    ex = TABLE_SPECS["session_exercises"].schema.columns["exercise"].checks
    assert (
        next(c for c in ex if c.name == "isin").statistics["allowed_values"]
        == exercise_catalog()["code"].to_list()
    )
    me = TABLE_SPECS["measures"].schema.columns["measure"].checks
    assert (
        next(c for c in me if c.name == "isin").statistics["allowed_values"]
        == measure_catalog()["code"].to_list()
    )


def test_unknown_table_is_unusable_input() -> None:
    with pytest.raises(UnusableInputError, match="unknown table 'patients'"):
        table_spec("patients")


def test_frictionless_schema_has_keys_constraints_and_foreign_keys() -> None:
    s = table_schema(TABLE_SPECS["sessions"])
    fields = {f["name"]: f for f in s["fields"]}
    assert s["primaryKey"] == ["session_id"]
    assert s["foreignKeys"] == [
        {"fields": ["episode_id"], "reference": {"resource": "episodes", "fields": ["episode_id"]}}
    ]
    assert fields["pain_before"]["constraints"] == {"minimum": 0, "maximum": 10}
    assert fields["status"]["constraints"]["enum"] == ["completed", "missed", "cancelled"]
    assert fields["session_date"]["type"] == "date" and fields["session_date"]["constraints"]["required"]
    assert "required" not in fields.get("rpe", {}).get("constraints", {})


def test_committed_schema_files_are_up_to_date(tmp_path: Path) -> None:
    written = export_schemas(tmp_path)
    committed = REPO / "data" / "schemas"
    stale = [
        str(p.relative_to(tmp_path))
        for p in written
        if not (committed / p.relative_to(tmp_path)).exists()
        or (committed / p.relative_to(tmp_path)).read_bytes() != p.read_bytes()
    ]
    assert not stale, f"run `sciatica-outcomes schemas export`: stale {stale}"
    for p in written:
        if p.suffix == ".json":
            json.loads(p.read_text())
