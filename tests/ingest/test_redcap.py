"""REDCap exports of the shipped project, raw and labels, built from the dictionary and a synthetic cohort."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import IdentifierColumnError, UnusableInputError
from sciatica_outcomes.ingest import ingest_paths, validate_paths
from sciatica_outcomes.ingest.redcap import redcap_export_frame, write_redcap_export
from sciatica_outcomes.ingest.sources import redcap_export_kind
from sciatica_outcomes.schemas.redcap import redcap_dictionary, redcap_mapping
from sciatica_outcomes.store import CANONICAL_TABLES, Store
from sciatica_outcomes.synth import Cohort
from tests.ingest.conftest import sort_by_key, with_verdict_measures

LABEL = dict(
    zip(redcap_dictionary()["Variable / Field Name"], redcap_dictionary()["Field Label"], strict=True)
)


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    """An export as header and rows of cells (a label export's header may repeat ``Complete?``)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *rows])


@pytest.fixture(scope="module")
def flat(small_cohort: Cohort) -> pl.DataFrame:
    return redcap_export_frame(small_cohort.tables)


def test_the_export_has_one_row_per_record_event_and_session(
    small_cohort: Cohort, flat: pl.DataFrame
) -> None:
    t = small_cohort.tables
    # not one instance per set, measure or item: the session log is the only repeating instrument
    assert set(flat["redcap_repeat_instrument"].drop_nulls()) == {"session_log"}
    assert flat.filter(pl.col("redcap_repeat_instrument") == "session_log").height == t["sessions"].height
    visits = t["measures"].select("episode_id", "assessed_on").unique().height
    assert flat.height == t["episodes"].height + t["sessions"].height + visits
    # the matrix holds each exercise of a session on the session's own row
    row = flat.filter(pl.col("sess_id") == t["session_exercises"]["session_id"][0]).row(0, named=True)
    first = t["session_exercises"].row(0, named=True)
    sets_field = redcap_mapping().filter(
        pl.col("keys") == f"exercise={first['exercise']}", pl.col("column") == "sets"
    )["field_name"][0]
    assert row[sets_field] == str(first["sets"])
    done = t["session_exercises"].filter(pl.col("session_id") == first["session_id"]).height
    assert sum(row[f] is not None for f in flat.columns if f.startswith("x_") and f.endswith("_sets")) == done


@pytest.mark.parametrize("labels", [False, True], ids=["raw", "labels"])
def test_raw_and_label_exports_land_the_canonical_tables(
    tmp_path: Path, small_cohort: Cohort, labels: bool
) -> None:
    folder = tmp_path / "exports"
    export = write_redcap_export(small_cohort.tables, folder / "Project_DATA_2026-12-01.csv", labels=labels)
    header, _ = _read(export)
    assert redcap_export_kind(header, redcap_dictionary()) == ("labels" if labels else "raw")
    assert ("Episode code (pseudonymous)" in header) == labels
    res = ingest_paths(folder, db=tmp_path / "o.duckdb")
    assert res.validation.ok, res.validation.errors.head()
    assert {t.source.fmt for t in res.validation.tables} == {"redcap"}
    with Store(tmp_path / "o.duckdb", read_only=True) as store:
        for name in CANONICAL_TABLES:
            assert_frame_equal(store.read(name), sort_by_key(name, small_cohort.tables[name]))


@pytest.mark.parametrize("labels", [False, True], ids=["raw", "labels"])
def test_planted_defects_are_reported_at_their_export_line_and_column(
    tmp_path: Path, small_cohort: Cohort, flat: pl.DataFrame, labels: bool
) -> None:
    export = write_redcap_export(small_cohort.tables, tmp_path / "export.csv", labels=labels)
    header, rows = _read(export)
    names = flat.columns
    idx = flat.with_row_index()

    def line_of(frame: pl.DataFrame, k: int = 0) -> int:
        return int(frame["index"][k]) + 2  # header is line 1

    visit = line_of(idx.filter(pl.col("t_walk_min").is_not_null()), 3)
    session = line_of(idx.filter(pl.col("x_bridge_reps").is_not_null()), 5)
    cancelled = line_of(idx.filter(pl.col("sess_status") == "cancelled"), 2)
    plants = [(visit, "t_walk_min", "abc", "type"), (session, "x_bridge_reps", "ten", "type"),
              (cancelled, "sess_rpe", "11", "range")]  # fmt: skip
    if not labels:
        # codes a label export cannot hold (it would be refused as an unknown label)
        item = line_of(idx.filter(pl.col("odi_lifting").is_not_null()), 4)
        screen = line_of(idx.filter(pl.col("rf_saddle").is_not_null()), 1)
        plants += [(item, "odi_lifting", "7", "response_range"), (screen, "rf_saddle", "2", "type")]
    for line, field, value, _ in plants:
        rows[line - 2][names.index(field)] = value
    _write(export, header, rows)
    res = validate_paths([export])
    shown = {f: (LABEL[f] if labels else f) for _, f, _, _ in plants}
    got = {(r["row"], r["column"], r["value"], r["rule"]) for r in res.errors.iter_rows(named=True)}
    assert {(line, shown[f], v, rule) for line, f, v, rule in plants} <= got
    # nothing else is reported, and nowhere else (reps that do not parse also leave the dose missing)
    assert {(r, c) for r, c, _, _ in got} == {(line, shown[f]) for line, f, _, _ in plants}
    assert len(got) == len(plants) + 1


def test_a_label_that_is_no_choice_of_its_field_exits_2_naming_line_column_and_value(
    tmp_path: Path, small_cohort: Cohort, flat: pl.DataFrame
) -> None:
    export = write_redcap_export(small_cohort.tables, tmp_path / "labels.csv", labels=True)
    header, rows = _read(export)
    line = int(flat.with_row_index().filter(pl.col("sess_status").is_not_null())["index"][1]) + 2
    rows[line - 2][flat.columns.index("sess_status")] = "Attended late"
    _write(export, header, rows)
    db = tmp_path / "o.duckdb"
    res = CliRunner().invoke(app, ["ingest", str(export), "--db", str(db)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert f"line {line}, column 'Session status': 'Attended late' is not a choice label" in " ".join(
        res.output.split()
    )
    assert not db.exists()


def test_a_label_export_without_the_record_id_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Project_DATA_LABELS.csv").write_text("Record ID,Repeat Instrument\nE1,\n")
    with pytest.raises(UnusableInputError, match="record id column \\('Episode code \\(pseudonymous\\)'\\)"):
        validate_paths([tmp_path])


def test_unmapped_columns_and_values_on_rows_of_another_instrument_are_reported(
    tmp_path: Path, small_cohort: Cohort, flat: pl.DataFrame
) -> None:
    session_row = pl.col("redcap_repeat_instrument") == "session_log"
    odd = flat.with_columns(
        pl.when(session_row).then(pl.lit("free text")).alias("visit_comment"),
        # a leg-pain rating typed on a session row of the log: the visit form's field is not read there
        pl.when(
            session_row & (pl.int_range(pl.len()) == flat.with_row_index().filter(session_row)["index"][0])
        )
        .then(pl.lit("5"))
        .otherwise(pl.col("t_nprs_leg"))
        .alias("t_nprs_leg"),
    )
    odd.write_csv(tmp_path / "export.csv")
    res = validate_paths([tmp_path / "export.csv"])
    assert res.ok
    messages = res.issues.filter(pl.col("rule") == "unmapped")["message"].to_list()
    assert any("visit_comment is not in the mapping" in m for m in messages)
    assert any("hold values in fields of form pain_tolerance" in m for m in messages)


def test_a_redcap_export_with_identifier_fields_is_refused(tmp_path: Path, flat: pl.DataFrame) -> None:
    flat.with_columns(pl.lit("Ann").alias("first_name")).write_csv(tmp_path / "export.csv")
    with pytest.raises(IdentifierColumnError, match="first_name"):
        validate_paths([tmp_path / "export.csv"])


def test_data_the_project_cannot_hold_is_refused_by_the_writer(small_cohort: Cohort) -> None:
    t = dict(small_cohort.tables)
    se = t["session_exercises"]
    t["session_exercises"] = pl.concat([se, se.head(1)])
    with pytest.raises(UnusableInputError, match="two rows for one session_log"):
        redcap_export_frame(t)
    t = dict(small_cohort.tables)
    t["session_exercises"] = se.with_columns(pl.lit(2, pl.Int64).alias("set_index"))
    with pytest.raises(UnusableInputError, match=r"set_index has \d+ value\(s\) for exercise="):
        redcap_export_frame(t)
    t = dict(small_cohort.tables)
    t["measures"] = small_cohort.tables["measures"].with_columns(pl.lit("x").alias("instrument_version"))
    with pytest.raises(
        UnusableInputError, match=r"instrument_version has \d+ value\(s\) for measure=nprs_leg"
    ):
        redcap_export_frame(t)
    t["measures"] = small_cohort.tables["measures"].with_columns(pl.lit("sf36").alias("measure"))
    with pytest.raises(UnusableInputError, match="no measure, item or exercise of the REDCap project"):
        redcap_export_frame(t)


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        (["record_id", "redcap_event_name", "ep_patient_id"], "raw"),
        (["record_id", "ep_patient_id", "ep_clinic_id", "ep_start_date"], "raw"),  # a classic project
        (["Episode code (pseudonymous)", "Event Name", "Patient code (pseudonymous)"], "labels"),
        (["Episode code (pseudonymous)", "Patient code (pseudonymous)", "Clinic code"], "labels"),
        (["episode_id", "patient_id", "clinic_id", "start_date"], None),  # a canonical episodes.csv
        (["record_id", "Clinic code"], None),
    ],
)
def test_exports_are_recognised_from_their_header(header: list[str], kind: str | None) -> None:
    assert redcap_export_kind(header, redcap_dictionary()) == kind


def test_a_label_export_is_read_through_the_projects_own_dictionary(
    tmp_path: Path, tiny_cohort: Cohort
) -> None:
    # the clinic styled a label in REDCap (HTML) and relabelled a choice: the export shows the plain label
    d = redcap_dictionary().with_columns(
        pl.when(pl.col("Variable / Field Name") == "ep_clinic_id")
        .then(pl.lit("<b>Clinic</b> code"))
        .otherwise(pl.col("Field Label"))
        .alias("Field Label"),
        pl.when(pl.col("Variable / Field Name") == "ep_side")
        .then(pl.lit("left, Left leg | right, Right leg | bilateral, Both legs"))
        .otherwise(pl.col("Choices, Calculations, OR Slider Labels"))
        .alias("Choices, Calculations, OR Slider Labels"),
    )
    d.write_csv(tmp_path / "Project_DataDictionary.csv")
    export = write_redcap_export(tiny_cohort.tables, tmp_path / "Project_DATA_LABELS.csv", labels=True)
    header, rows = _read(export)
    side = header.index("Side of the leg symptoms")
    for r in rows:
        r[side] = {"Left": "Left leg", "Right": "Right leg"}.get(r[side], r[side])
    _write(export, header, rows)
    res = ingest_paths([export, tmp_path / "Project_DataDictionary.csv"], db=tmp_path / "o.duckdb")
    assert res.validation.ok, res.validation.errors.head()
    with Store(tmp_path / "o.duckdb", read_only=True) as store:
        assert_frame_equal(store.read("episodes"), sort_by_key("episodes", tiny_cohort.tables["episodes"]))


@pytest.mark.parametrize("labels", [False, True], ids=["raw", "labels"])
def test_work_rules_are_reported_at_the_export_line_and_field_and_quarantine_the_row(
    tmp_path: Path, small_cohort: Cohort, flat: pl.DataFrame, labels: bool
) -> None:
    export = write_redcap_export(small_cohort.tables, tmp_path / "export.csv", labels=labels)
    header, rows = _read(export)
    idx = flat.with_row_index()

    def line_of(frame: pl.DataFrame, k: int = 0) -> int:
        return int(frame["index"][k]) + 2

    paid = idx.filter(pl.col("work_hours_contracted").cast(pl.Float64) < 99)
    plants = [
        (line_of(paid, 0), "work_hours_worked", "99", "hours_above_contracted"),
        (line_of(idx.filter(pl.col("wpai_q1") == "0"), 0), "wpai_q2", "3", "wpai_needs_employed"),
        (line_of(paid, 1), "work_sick_days", "29", "range"),
        (
            line_of(idx.filter(pl.col("work_status") == "full_duties"), 0),
            "work_return_date",
            "2001-01-01",
            "before_start",
        ),
    ]
    if not labels:  # a label export refuses a label that is no choice (tested above)
        plants.append((line_of(idx.filter(pl.col("work_status").is_not_null()), 3), "work_status", "holiday",
                       "allowed_values"))  # fmt: skip
    assert len({line for line, *_ in plants}) == len(plants)  # one defect per export row
    for line, field, value, _ in plants:
        rows[line - 2][flat.columns.index(field)] = value
    _write(export, header, rows)
    res = validate_paths([export])
    shown = {f: (LABEL[f] if labels else f) for _, f, _, _ in plants}
    work = res.errors.filter(pl.col("table") == "work")
    got = {(r["row"], r["column"], r["value"], r["rule"]) for r in work.iter_rows(named=True)}
    assert got == {(line, shown[f], v, rule) for line, f, v, rule in plants}
    assert res.errors.height == work.height  # nothing else is reported
    (table,) = [t for t in res.tables if t.source.table == "work"]
    assert table.rows_quarantined == len(plants)
    assert table.rows_valid == small_cohort.tables["work"].height - len(plants)


@pytest.mark.parametrize("labels", [False, True], ids=["raw", "labels"])
def test_pgic_satisfaction_and_eq5d_land_through_raw_and_label_exports(
    tmp_path: Path, tiny_cohort: Cohort, labels: bool
) -> None:
    tables = with_verdict_measures(tiny_cohort.tables)
    counts = tables["measures"].group_by("measure").len()
    assert set(counts.filter(pl.col("len") > 0)["measure"]) >= {
        "pgic",
        "satisfaction",
        "eq5d_index",
        "eq5d_vas",
    }
    export = write_redcap_export(tables, tmp_path / "exports" / "Project_DATA.csv", labels=labels)
    header, _ = _read(export)
    if labels:
        assert "Satisfaction with the treatment" in header and "EQ VAS: health today (0-100)" in header
    res = ingest_paths(export, db=tmp_path / "o.duckdb")
    assert res.validation.ok, res.validation.errors.head()
    with Store(tmp_path / "o.duckdb", read_only=True) as store:
        for name in CANONICAL_TABLES:
            assert_frame_equal(store.read(name), sort_by_key(name, tables[name]))
