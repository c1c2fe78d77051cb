"""Round trips through every source format: the store must hold exactly the synthetic tables."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest import ingest_paths, readers, validate_paths
from sciatica_outcomes.ingest.fhir import write_fhir_bundle
from sciatica_outcomes.ingest.readers import read_excel_tables
from sciatica_outcomes.store import CANONICAL_TABLES, Store
from sciatica_outcomes.synth import Cohort
from tests.ingest.conftest import sort_by_key, with_verdict_measures, write_workbook


def _assert_store_equals(db: Path, cohort: Cohort, tables: tuple[str, ...] = CANONICAL_TABLES) -> None:
    with Store(db, read_only=True) as store:
        for name in tables:
            assert_frame_equal(store.read(name), sort_by_key(name, cohort.tables[name]))


def test_excel_round_trip(tmp_path: Path, tiny_cohort: Cohort) -> None:
    book = write_workbook(tiny_cohort.tables, tmp_path / "cohort.xlsx")
    res = ingest_paths(book, db=tmp_path / "o.duckdb")
    assert res.validation.ok
    assert {t.source.fmt for t in res.validation.tables} == {"excel"}
    _assert_store_equals(tmp_path / "o.duckdb", tiny_cohort)


def test_excel_rows_are_spreadsheet_rows(tmp_path: Path, small_cohort: Cohort) -> None:
    ep = (
        small_cohort.tables["episodes"]
        .head(6)
        .with_columns(
            pl.when(pl.int_range(pl.len()) == 3)
            .then(150)
            .otherwise(pl.col("age_at_start"))
            .alias("age_at_start")
        )
    )
    book = write_workbook({"episodes": ep, "Notes": pl.DataFrame({"x": ["free text"]})}, tmp_path / "e.xlsx")
    res = validate_paths([book])
    err = res.errors.row(0, named=True)
    assert (err["row"], err["column"], err["rule"], err["value"]) == (5, "age_at_start", "range", "150")
    assert "skipped_sheet" in res.issues["rule"].to_list()


def test_fhir_round_trip(tmp_path: Path, small_cohort: Cohort) -> None:
    src = tmp_path / "src"
    src.mkdir()
    small_cohort.tables["episodes"].write_csv(src / "episodes.csv")
    t = with_verdict_measures(small_cohort.tables)  # the work table and the work and verdict measures
    assert t["work"].height > 0 and {"was", "pgic", "satisfaction", "eq5d_index", "eq5d_vas"} <= set(
        t["measures"]["measure"]
    )
    write_fhir_bundle(t["measures"], t["questionnaire_items"], src / "bundle.json", work=t["work"])
    res = ingest_paths(src, db=tmp_path / "o.duckdb")
    assert res.validation.ok
    assert {t.source.fmt for t in res.validation.tables} == {"csv", "fhir"}
    with Store(tmp_path / "o.duckdb", read_only=True) as store:
        for name in ("episodes", "measures", "questionnaire_items", "work"):
            assert_frame_equal(store.read(name), sort_by_key(name, t[name]))


def test_fhir_loinc_codes_ordinal_answers_and_bad_values(tmp_path: Path, small_cohort: Cohort) -> None:
    ep = small_cohort.tables["episodes"].row(0, named=True)
    day = ep["start_date"].isoformat()
    ext = [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare",
            "valueReference": {"reference": f"EpisodeOfCare/{ep['episode_id']}"},
        }
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "x"}},
            {  # ODI by LOINC only
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "extension": ext,
                    "code": {"coding": [{"system": "http://loinc.org", "code": "97909-6"}]},
                    "effectiveDateTime": f"{day}T09:30:00+01:00",
                    "valueQuantity": {"value": 34},
                }
            },
            {  # pain NRS by LOINC with bodySite, value given as text "7/10"
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "extension": ext,
                    "code": {"coding": [{"system": "http://loinc.org", "code": "72514-3"}]},
                    "bodySite": {"text": "leg"},
                    "effectiveDateTime": day,
                    "valueQuantity": {"value": "7/10"},
                }
            },
            {
                "resource": {
                    "resourceType": "QuestionnaireResponse",
                    "status": "completed",
                    "extension": ext,
                    "questionnaire": "http://example.org/Questionnaire/odi|2.1a",
                    "authored": day,
                    "item": [
                        {
                            "linkId": "walking",
                            "answer": [
                                {
                                    "valueCoding": {
                                        "code": "LA-x",
                                        "extension": [
                                            {
                                                "url": "http://hl7.org/fhir/StructureDefinition/ordinalValue",
                                                "valueDecimal": 2,
                                            }
                                        ],
                                    }
                                }
                            ],
                        },
                        {"linkId": "lifting", "answer": [{"valueInteger": 9}]},
                    ],
                }
            },
        ],
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle))
    small_cohort.tables["episodes"].head(1).write_csv(tmp_path / "episodes.csv")
    res = validate_paths([path, tmp_path / "episodes.csv"])
    measures = next(t for t in res.tables if t.source.table == "measures")
    assert measures.valid.select("measure", "value", "assessed_on").row(0) == ("odi", 34.0, ep["start_date"])
    errs = {(r["row"], r["column"], r["rule"], r["value"]) for r in res.errors.iter_rows(named=True)}
    assert errs == {(3, "value", "type", "7/10"), (4, "response", "response_range", "9")}
    items = next(t for t in res.tables if t.source.table == "questionnaire_items")
    assert items.valid.select("item", "response", "instrument_version").row(0) == ("walking", 2, "2.1a")
    assert "skipped_resource" in res.issues["rule"].to_list()


def test_workbook_limits_refuse_long_sheets_and_zip_bombs(
    tmp_path: Path, tiny_cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    book = write_workbook({"sessions": tiny_cohort.tables["sessions"].head(6)}, tmp_path / "w.xlsx")
    monkeypatch.setattr(readers, "MAX_SHEET_ROWS", 5)
    with pytest.raises(
        UnusableInputError, match=r"w\.xlsx#sessions: the sheet .*at most 5 data rows \(MAX_SHEET_ROWS"
    ):
        read_excel_tables(book, "")
    monkeypatch.setattr(readers, "MAX_SHEET_ROWS", 6)
    assert read_excel_tables(book, "")[0].rows_read == 6
    with zipfile.ZipFile(book) as zf:
        declared = sum(i.file_size for i in zf.infolist())
    monkeypatch.setattr(readers, "MAX_XLSX_UNCOMPRESSED", declared - 1)
    with pytest.raises(UnusableInputError, match=rf"unpacks to {declared:,} bytes.*MAX_XLSX_UNCOMPRESSED"):
        read_excel_tables(book, "")
    # a real bomb: 64 MiB of one repeated byte packs into well under 1 MiB; refused before openpyxl unpacks it
    monkeypatch.setattr(readers, "MAX_XLSX_UNCOMPRESSED", 32 << 20)
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", b"<" * (64 << 20))
    assert bomb.stat().st_size < 1 << 20
    t0 = time.perf_counter()
    with pytest.raises(UnusableInputError, match="zip bomb"):
        read_excel_tables(bomb, "")
    assert time.perf_counter() - t0 < 1
