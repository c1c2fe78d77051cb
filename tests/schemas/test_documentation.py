"""Labels, units and example rows of ``schemas.documentation`` cover every code, number and column."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.ingest import validate_paths
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas import documentation as doc


@pytest.mark.parametrize(
    ("table", "column"), [(t, c) for t in TABLE_SPECS for c in doc.coded_columns(t)], ids=str
)
def test_every_code_has_a_plain_label(table: str, column: str) -> None:
    labels = doc.value_labels(table, column)
    assert tuple(labels) == doc.coded_columns(table)[column]
    assert all(label.strip() and label != code for code, label in labels.items())


def test_labels_exist_only_for_coded_columns() -> None:
    coded = {(t, c) for t in TABLE_SPECS for c in doc.coded_columns(t)}
    assert set(doc._LABELS) <= coded
    assert coded - set(doc._LABELS) == {("session_exercises", "exercise"), ("measures", "measure")}


def test_coded_columns_reads_the_model() -> None:
    assert doc.coded_columns("episodes") == {
        "end_reason": ("completed", "dropped_out", "referred", "surgery", "injection", "other"),
        "sex": ("F", "M", "X"),
        "affected_side": ("left", "right", "bilateral"),
    }
    with pytest.raises(KeyError):
        doc.value_labels("episodes", "age_at_start")


def test_every_numeric_column_has_a_unit_and_no_other() -> None:
    numeric = {
        (t, c) for t, spec in TABLE_SPECS.items() for c, dtype in spec.dtypes.items() if dtype.is_numeric()
    }
    assert set(doc.COLUMN_UNITS) == numeric


@pytest.mark.parametrize("table", list(TABLE_SPECS))
def test_example_row_has_exactly_the_columns(table: str) -> None:
    assert list(doc.EXAMPLE_ROWS[table]) == list(TABLE_SPECS[table].columns)


def test_example_rows_validate_clean(tmp_path: Path) -> None:
    for table, row in doc.EXAMPLE_ROWS.items():
        pl.DataFrame({k: [v] for k, v in row.items()}, schema=dict.fromkeys(row, pl.String)).write_csv(
            tmp_path / f"{table}.csv"
        )
    result = validate_paths(tmp_path)
    assert result.ok, result.errors
    assert {t.source.table: t.rows_valid for t in result.tables} == dict.fromkeys(TABLE_SPECS, 1)


def test_row_rules_name_real_columns() -> None:
    assert all(column in TABLE_SPECS[table].columns for table, column in doc.ROW_RULES)
