"""End-to-end tests of validate_paths and ingest_paths on real files and a real store."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sciatica_outcomes.errors import IdentifierColumnError, UnusableInputError
from sciatica_outcomes.ingest import ingest_paths, validate_paths
from sciatica_outcomes.store import CANONICAL_TABLES, Store
from sciatica_outcomes.synth import Cohort
from tests.ingest.conftest import sort_by_key


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_round_trip_lands_identical_tables(
    fmt: str, tmp_path: Path, small_cohort: Cohort, csv_dir: Path, parquet_dir: Path
) -> None:
    src = csv_dir if fmt == "csv" else parquet_dir
    result = ingest_paths(src, db=tmp_path / "o.duckdb")
    assert result.written and result.validation.ok
    summary = result.summary()
    assert (summary["rows_read"] == summary["rows_stored"] + summary["rows_quarantined"]).all()
    with Store(tmp_path / "o.duckdb", read_only=True) as store:
        for name in CANONICAL_TABLES:
            assert_frame_equal(store.read(name), sort_by_key(name, small_cohort.tables[name]))
    # truth.json is skipped with a notice, not read as data and not silently ignored
    notices = result.validation.issues.filter(pl.col("rule") == "skipped_file")
    assert notices["file"].str.ends_with("truth.json").any()


def test_reingest_changes_nothing_and_newer_export_upserts(tmp_path: Path, csv_dir: Path) -> None:
    db = tmp_path / "o.duckdb"
    first = ingest_paths(csv_dir, db=db)
    with Store(db, read_only=True) as store:
        before = store.tables()
    again = ingest_paths(csv_dir, db=db)
    assert sum(c.inserted + c.updated for c in again.counts) == 0
    assert sum(c.unchanged for c in again.counts) == sum(c.inserted for c in first.counts)
    with Store(db, read_only=True) as store:
        for name, frame in store.tables().items():
            assert_frame_equal(frame, before[name])
    newer = tmp_path / "newer"
    newer.mkdir()
    sessions = pl.read_csv(csv_dir / "sessions.csv", infer_schema=False)
    changed = sessions.with_columns(
        pl.when(pl.int_range(pl.len()) < 4).then(pl.lit("9")).otherwise(pl.col("rpe")).alias("rpe")
    )
    n_changed = int((changed["rpe"].fill_null("") != sessions["rpe"].fill_null("")).sum())
    changed.write_csv(newer / "sessions.csv")
    res = ingest_paths(newer / "sessions.csv", db=db)
    assert (res.counts[0].inserted, res.counts[0].updated) == (0, n_changed)
    with Store(db, read_only=True) as store:
        log = store.read("ingest_log")
        stored = store.read("sessions")
    assert log["ingest_id"].n_unique() == 3
    assert (
        stored.filter(pl.col("session_id").is_in(changed.head(4)["session_id"].implode()))["rpe"].to_list()
        == [9] * 4
    )


def test_corrupted_file_reports_every_problem_with_line_numbers(tmp_path: Path, csv_dir: Path) -> None:
    lines = (csv_dir / "sessions.csv").read_text().splitlines()
    header = lines[0]
    good = lines[1:4]
    episode, day = good[0].split(",")[1:3]
    y, m, d = day.split("-")
    bad = [
        f"SX1,{episode},{day},completed,45,true,7/10,5,,4,buttock",  # line 5: pain "7/10"
        f"SX2,{episode},{d}/{m}/{y},complete,45,maybe,11,5.5,,4,thigh",  # line 6: five problems
        f"SX3,NOPE01,{day},completed,45,true,3,5,,4,thigh",  # line 7: unknown episode
    ]
    path = tmp_path / "sessions.csv"
    path.write_text("\n".join([header, *good, *bad]) + "\n")
    res = validate_paths([path, csv_dir / "episodes.csv"])
    errs = res.errors.filter(pl.col("file") == str(path))
    got = {(r, c, rule) for r, c, rule in errs.select("row", "column", "rule").iter_rows()}
    assert got == {
        (5, "pain_before", "type"),
        (6, "session_date", "type"),
        (6, "status", "allowed_values"),
        (6, "warmup_neural_glides", "type"),
        (6, "pain_before", "range"),
        (6, "pain_after", "integer"),
        (7, "episode_id", "foreign_key"),
    }
    row5 = errs.filter(pl.col("row") == 5).row(0, named=True)
    assert row5["value"] == "7/10" and "not a whole number" in row5["message"]
    counts = res.counts().filter(pl.col("file") == str(path)).row(0, named=True)
    assert (counts["rows_read"], counts["rows_valid"], counts["rows_quarantined"]) == (6, 3, 3)


def test_ingest_quarantines_bad_rows_and_strict_writes_nothing(tmp_path: Path, csv_dir: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(csv_dir, src)
    text = (src / "measures.csv").read_text().splitlines()
    text[3] = text[3].replace("EP", "EQ", 1)  # line 4: unknown episode
    (src / "measures.csv").write_text("\n".join(text) + "\n")
    strict = ingest_paths(src, db=tmp_path / "s.duckdb", strict=True)
    assert not strict.written
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        assert all(store.read(t).is_empty() for t in CANONICAL_TABLES)
        assert store.read("ingest_log").is_empty()
    res = ingest_paths(src, db=tmp_path / "o.duckdb")
    assert res.written and not res.validation.ok
    with Store(tmp_path / "o.duckdb", read_only=True) as store:
        q = store.quarantined("measures")
        log = store.read("ingest_log")
    assert q["row_number"].to_list() == [4]
    assert q["episode_id"][0].startswith("EQ")
    assert "foreign_key" in q["errors"][0]
    m = log.filter(pl.col("table_name") == "measures").row(0, named=True)
    assert m["rows_read"] == m["rows_stored"] + m["rows_quarantined"]
    assert m["rows_quarantined"] == 1
    assert res.reports["json"].exists() and res.reports["html"].exists()


def test_unusable_inputs_and_identifiers_are_refused(tmp_path: Path, csv_dir: Path) -> None:
    with pytest.raises(UnusableInputError, match="no such file"):
        validate_paths([tmp_path / "missing.csv"])
    odd = tmp_path / "patients.csv"
    odd.write_text("a,b\n1,2\n")
    with pytest.raises(UnusableInputError, match="cannot tell which table"):
        validate_paths([odd])
    ep = pl.read_csv(csv_dir / "episodes.csv", infer_schema=False).with_columns(
        pl.lit("0123456").alias("MRN")
    )
    ep.write_csv(tmp_path / "episodes.csv")
    with pytest.raises(IdentifierColumnError, match=r"pseudonymize .*--column MRN"):
        ingest_paths(tmp_path / "episodes.csv", db=tmp_path / "o.duckdb")
