"""The input template: generated from the schemas, a filled copy validates clean and lands the same tables as
the equivalent canonical CSVs, and planted defects are reported at their sheet, row and column."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.ingest.template import LISTS_SHEET, README_SHEET, TEMPLATE_XLSX, write_template
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.documentation import EXAMPLE_ROWS, coded_columns
from sciatica_outcomes.schemas.frictionless import table_schema
from sciatica_outcomes.schemas.vocabulary import ODI_SECTIONS
from sciatica_outcomes.store import Store

runner = CliRunner()

#: Rows a clinic adds below the example rows, per table, in canonical column order (None = empty cell).
#: A second episode (open, no therapist), its sessions and exercises, a full ODI, a red-flag screen.
EXTRA_ROWS: dict[str, list[list[Any]]] = {
    "episodes": [
        ["E0002", "P0002", "C02", None, None, date(2026, 4, 1), None, None, 62, "M", None, "right", 3]
    ],
    "sessions": [
        ["S0002", "E0002", date(2026, 4, 2), "missed", None, None, None, None, None, None, None],
        ["S0003", "E0001", date(2026, 3, 5), "completed", 50, False, 4, 3, None, 5, "thigh"],
    ],
    "session_exercises": [
        ["S0001", "abdominal_bracing", 1, 2, None, 30, None, None, 2, None],
        ["S0003", "kb_deadlift", 1, 3, 8, None, 12.5, None, 4, True],
        ["S0003", "kb_deadlift", 2, 2, 8, None, 16.0, None, 5, False],
    ],
    "measures": [
        [  # a capped walking test at the end of the episode
            "E0001",
            date(2026, 5, 22),
            "walk_tolerance_min",
            30.0,
            "cap",
            30.0,
            None,
        ],
        ["E0002", date(2026, 4, 1), "nprs_leg", 7.0, None, None, None],
    ],
    "questionnaire_items": [
        ["E0002", date(2026, 4, 1), "odi", section, i % 6, "2.1a"] for i, section in enumerate(ODI_SECTIONS)
    ],
    "symptom_checks": [["E0002", date(2026, 4, 1), False, False, False, True, False, "referred_routine"]],
    "work": [  # a retired patient: only the WPAI activity question applies
        ["E0002", date(2026, 4, 1), "retired", "not_applicable", None, None, None, False]
        + [None] * 4
        + [6, None]
    ],
}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):  # openpyxl reads date cells back as datetimes
        value = value.date()
    return value.isoformat() if isinstance(value, date) else str(value)


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, Path]:
    """A filled Excel template and the same rows as canonical CSV files (from the CSV template)."""
    (xlsx,) = write_template(tmp_path / "xlsx")
    csvs = write_template(tmp_path / "csv", "csv")
    wb = load_workbook(xlsx)
    for table, rows in EXTRA_ROWS.items():
        for row in rows:
            assert len(row) == len(TABLE_SPECS[table].columns), table
            wb[table].append(row)
    wb.save(xlsx)
    for path in csvs:
        with path.open("a", encoding="utf-8", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(
                [[_text(v) for v in row] for row in EXTRA_ROWS[path.stem]]
            )
    return xlsx, tmp_path / "csv"


def test_workbook_has_a_sheet_per_table_with_header_comments_and_example(tmp_path: Path) -> None:
    (path,) = write_template(tmp_path)
    assert path.name == TEMPLATE_XLSX
    wb = load_workbook(path)
    assert wb.sheetnames == [README_SHEET, *TABLE_SPECS, LISTS_SHEET]
    assert wb[LISTS_SHEET].sheet_state == "hidden"
    for table, spec in TABLE_SPECS.items():
        ws = wb[table]
        header = [c.value for c in ws[1]]
        assert header == list(spec.columns)
        fields = {f["name"]: f for f in table_schema(spec)["fields"]}
        for cell in ws[1]:
            assert cell.comment is not None, (table, cell.value)
            assert cell.comment.text.startswith(fields[cell.value].get("description", cell.value))
        example = [c.value for c in ws[2]]
        assert [_text(v) or None for v in example] == list(EXAMPLE_ROWS[table].values())


def _validations(ws: Any) -> dict[str, Any]:
    """Column letter -> its data validation (each covers one column from row 2 down)."""
    out = {}
    for dv in ws.data_validations.dataValidation:
        (rng,) = str(dv.sqref).split()
        assert rng.endswith("1048576") and rng[0] == rng.split(":")[1][0], rng
        out[rng.split(":")[0].rstrip("0123456789")] = dv
    return out


def test_coded_columns_have_drop_down_lists_of_exactly_their_codes(tmp_path: Path) -> None:
    (path,) = write_template(tmp_path)
    wb = load_workbook(path)
    lists = wb[LISTS_SHEET]
    for table in TABLE_SPECS:
        ws = wb[table]
        dvs = _validations(ws)
        letters = {c.value: c.column_letter for c in ws[1]}
        for column, codes in coded_columns(table).items():
            dv = dvs[letters[column]]
            assert dv.type == "list"
            sheet, cells = dv.formula1.split("!")
            assert sheet == f"'{LISTS_SHEET}'"
            first, last = (c.replace("$", "") for c in cells.split(":"))
            listed = [c.value for row in lists[first:last] for c in row]
            assert tuple(listed) == codes, (table, column)


def test_numbers_and_dates_are_range_checked(tmp_path: Path) -> None:
    (path,) = write_template(tmp_path)
    wb = load_workbook(path)
    for table, spec in TABLE_SPECS.items():
        ws = wb[table]
        dvs = _validations(ws)
        letters = {c.value: c.column_letter for c in ws[1]}
        for field in table_schema(spec)["fields"]:
            dv = dvs.get(letters[field["name"]])
            cons = field.get("constraints", {})
            if field["type"] == "date":
                assert dv is not None and dv.type == "date"
            elif field["type"] == "integer":
                assert dv is not None and dv.type == "whole"
                assert (float(dv.formula1), float(dv.formula2)) == (cons["minimum"], cons["maximum"])
            elif field["type"] == "number" and "exclusiveMinimum" in cons:
                assert dv is not None and dv.type == "custom"
                assert f">{cons['exclusiveMinimum']}" in dv.formula1 and f"<={cons['maximum']}" in dv.formula1
    # the example's date cells are real dates shown as YYYY-MM-DD
    cell = wb["episodes"]["F2"]
    assert wb["episodes"]["F1"].value == "start_date"
    assert cell.number_format == "yyyy-mm-dd" and cell.value.date() == date(2026, 3, 2)


def test_blank_templates_validate_clean(tmp_path: Path) -> None:
    (xlsx,) = write_template(tmp_path / "x")
    write_template(tmp_path / "c", "csv")
    for target in (xlsx, tmp_path / "c"):
        res = runner.invoke(app, ["validate", str(target), "--report", str(tmp_path / "r.json")])
        assert res.exit_code == 0, res.output
        report = json.loads((tmp_path / "r.json").read_text())
        assert [i for i in report["issues"] if i["severity"] == "error"] == []


def test_filled_template_validates_clean_and_lands_the_same_tables_as_csv(
    filled: tuple[Path, Path], tmp_path: Path
) -> None:
    xlsx, csv_dir = filled
    res = runner.invoke(app, ["validate", str(xlsx)])
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output  # the README and lists sheets are named, not silently ignored
    for source, db in ((xlsx, tmp_path / "x.duckdb"), (csv_dir, tmp_path / "c.duckdb")):
        res = runner.invoke(app, ["ingest", str(source), "--db", str(db), "--strict"])
        assert res.exit_code == 0, res.output
    with (
        Store(tmp_path / "x.duckdb", read_only=True) as xs,
        Store(tmp_path / "c.duckdb", read_only=True) as cs,
    ):
        for table in TABLE_SPECS:
            got, want = xs.read(table), cs.read(table)
            assert got.height == 1 + len(EXTRA_ROWS[table]), table
            assert got.equals(want), table


def test_planted_defects_are_reported_at_their_sheet_row_and_column(
    filled: tuple[Path, Path], tmp_path: Path
) -> None:
    xlsx, _ = filled
    wb = load_workbook(xlsx)
    planted = {  # (sheet, row, column): bad value
        ("episodes", 3, "age_at_start"): 95,
        ("sessions", 4, "pain_before"): 11,
        ("session_exercises", 4, "load_kg"): -5,
        ("measures", 3, "measure"): "walk_tolerence_min",
        ("questionnaire_items", 5, "instrument"): "oswestry",
        ("symptom_checks", 2, "saddle_numbness"): "maybe",
        ("work", 2, "work_status"): "on_holiday",
        ("work", 3, "hours_contracted"): 30,  # the retired patient: hours only in paid work
    }
    for (sheet, row, column), value in planted.items():
        ws = wb[sheet]
        col = [c.value for c in ws[1]].index(column) + 1
        ws.cell(row=row, column=col, value=value)
    wb.save(xlsx)
    report = tmp_path / "r.json"
    res = runner.invoke(app, ["validate", str(xlsx), "--report", str(report)])
    assert res.exit_code == 1, res.output
    errors = [i for i in json.loads(report.read_text())["issues"] if i["severity"] == "error"]
    found = {(i["file"].rsplit("#", 1)[1], i["row"], i["column"]): i["value"] for i in errors}
    for key, value in planted.items():
        assert key in found, (key, sorted(found))
        assert found[key] == str(value), key
    assert all(i["file"] == f"{xlsx}#{i['file'].rsplit('#', 1)[1]}" for i in errors)


def test_csv_template_is_header_and_example_row(tmp_path: Path) -> None:
    paths = write_template(tmp_path, "csv")
    assert [p.name for p in paths] == [f"{t}.csv" for t in TABLE_SPECS]
    for path in paths:
        with path.open(encoding="utf-8", newline="") as fh:
            header, example, *rest = list(csv.reader(fh))
        assert rest == []
        assert header == list(TABLE_SPECS[path.stem].columns)
        assert example == [v or "" for v in EXAMPLE_ROWS[path.stem].values()]


def test_cli_never_overwrites_a_template(tmp_path: Path) -> None:
    res = runner.invoke(app, ["template", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert str(tmp_path / TEMPLATE_XLSX) in res.output
    (tmp_path / TEMPLATE_XLSX).write_bytes(b"filled")
    again = runner.invoke(app, ["template", "--out", str(tmp_path)])
    assert again.exit_code == 2
    assert "already exists" in again.output and "Traceback" not in again.output
    assert (tmp_path / TEMPLATE_XLSX).read_bytes() == b"filled"
    csv_run = runner.invoke(app, ["template", "--out", str(tmp_path), "--format", "csv"])
    assert csv_run.exit_code == 0, csv_run.output
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(f"{t}.csv" for t in TABLE_SPECS)


def test_cli_out_that_is_a_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    res = runner.invoke(app, ["template", "--out", str(tmp_path / "f")])
    assert res.exit_code == 2
    assert "choose a writable --out" in res.output and "Traceback" not in res.output
