"""Tests of the DuckDB store: round trip, idempotent upserts, transactions, logs and quarantine."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sciatica_outcomes.errors import DataValidationError, StoreError
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.store import CANONICAL_TABLES, Store
from sciatica_outcomes.synth import Cohort


def _sorted(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(list(TABLE_SPECS[table].key))


def test_round_trip_equals_synth(tmp_path: Path, cohort_1000: Cohort) -> None:
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        for name in CANONICAL_TABLES:
            counts = store.write(name, cohort_1000.tables[name], source=f"synth:{name}")
            assert counts.inserted == cohort_1000.tables[name].height
    with Store(db, read_only=True) as store:
        got = store.tables()
        log = store.read("ingest_log")
    for name in CANONICAL_TABLES:
        assert_frame_equal(got[name], _sorted(name, cohort_1000.tables[name]))
    assert log.height == len(CANONICAL_TABLES)
    assert log["rows_inserted"].sum() == sum(t.height for t in cohort_1000.tables.values())


def test_rewrite_is_idempotent_and_updates_are_counted(tmp_path: Path, cohort_1000: Cohort) -> None:
    sessions = cohort_1000.tables["sessions"]
    with Store(tmp_path / "s.duckdb") as store:
        store.write("sessions", sessions, source="a")
        again = store.write("sessions", sessions, source="a")
        assert (again.inserted, again.updated, again.unchanged) == (0, 0, sessions.height)
        changed = sessions.with_columns(
            pl.when(pl.int_range(pl.len()) < 10)
            .then(pl.lit("cancelled"))
            .otherwise(pl.col("status"))
            .alias("status")
        )
        n_diff = int((changed["status"] != sessions["status"]).sum())
        extra = sessions.head(3).with_columns(pl.col("session_id") + "X")
        counts = store.write("sessions", pl.concat([changed, extra]), source="b")
        assert (counts.inserted, counts.updated) == (3, n_diff)
        assert counts.unchanged == sessions.height - n_diff
        stored = store.read("sessions")
    assert stored.height == sessions.height + 3
    expected = _sorted("sessions", pl.concat([changed, extra]))
    assert_frame_equal(stored, expected)


def test_write_rejects_duplicate_and_null_keys_and_rolls_back(tmp_path: Path, cohort_1000: Cohort) -> None:
    ep = cohort_1000.tables["episodes"]
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(DataValidationError, match="duplicate keys"):
            store.write("episodes", pl.concat([ep, ep.head(1)]), source="x")
        with pytest.raises(DataValidationError, match="empty key"):
            store.write("episodes", ep.with_columns(pl.lit(None, pl.String).alias("episode_id")), source="x")
        with pytest.raises(DataValidationError, match="age_at_start is String"):
            store.write("episodes", ep.with_columns(pl.col("age_at_start").cast(pl.String)), source="x")
        assert store.read("episodes").is_empty()
        assert store.read("ingest_log").is_empty()


def test_missing_optional_columns_are_stored_as_null(tmp_path: Path, cohort_1000: Cohort) -> None:
    items = cohort_1000.tables["questionnaire_items"].drop("instrument_version")
    with Store(tmp_path / "s.duckdb") as store:
        store.write("questionnaire_items", items, source="x")
        got = store.read("questionnaire_items")
    assert got.columns == list(TABLE_SPECS["questionnaire_items"].dtypes)
    assert got["instrument_version"].null_count() == got.height


def test_read_only_and_unknown_tables(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing.duckdb", read_only=True)
    with Store(tmp_path / "s.duckdb") as store:
        with pytest.raises(StoreError, match="unknown table"):
            store.read("patients")
        assert store.read("quarantine").is_empty()
    with Store(tmp_path / "s.duckdb", read_only=True) as store, pytest.raises(Exception, match="read-only"):
        store.write("episodes", pl.DataFrame(), source="x")


def test_transaction_rolls_back_on_error(tmp_path: Path, cohort_1000: Cohort) -> None:
    ep = cohort_1000.tables["episodes"]
    with Store(tmp_path / "s.duckdb") as store:
        store.write("episodes", ep.head(5), source="a")
        with pytest.raises(RuntimeError, match="boom"), store.transaction():
            store._upsert("episodes", ep)
            raise RuntimeError("boom")
        assert store.read("episodes").height == 5


def test_quarantine_is_retrievable_and_not_duplicated(tmp_path: Path) -> None:
    q = pl.DataFrame(
        {
            "source_path": ["f.csv", "f.csv"],
            "sha256": ["abc", "abc"],
            "table_name": ["sessions", "sessions"],
            "row_number": [3, 7],
            "record": ['{"session_id":"S1","pain_before":"7/10"}', '{"session_id":"S2","pain_before":"11"}'],
            "errors": ["[]", "[]"],
        }
    )
    with Store(tmp_path / "s.duckdb") as store:
        store.write_ingest([], q)
        store.write_ingest([], q)
        got = store.quarantined("sessions")
    assert got["row_number"].to_list() == [3, 7]
    assert got["pain_before"].to_list() == ["7/10", "11"]


def test_writer_thread_error_rolls_back_and_is_raised(tmp_path: Path, cohort_1000: Cohort) -> None:
    ep = cohort_1000.tables["episodes"]
    part = {
        "table": "episodes",
        "frame": ep,
        "source_path": "episodes.csv",
        "source_format": "csv",
        "sha256": "0" * 64,
        "rows_read": ep.height,
        "rows_quarantined": 0,
    }
    bad = {**part, "table": "sessions", "frame": ep}  # episode columns are not session columns
    with Store(tmp_path / "s.duckdb") as store:
        writer = store.writer()
        writer.submit(0, part)
        writer.submit(1, bad)
        with pytest.raises(DataValidationError, match="cannot write sessions"):
            writer.finish(pl.DataFrame())
        assert store.read("episodes").is_empty()
        assert store.read("ingest_log").is_empty()
        # the connection is usable afterwards
        ingest_id, counts = store.write_ingest([part], pl.DataFrame())
    assert (ingest_id, counts[0].inserted) == (1, ep.height)


@pytest.mark.parametrize("kind", ["csv", "parquet", "json", "empty"])
def test_a_file_that_is_not_a_duckdb_database_is_refused(
    tmp_path: Path, cohort_1000: Cohort, kind: str
) -> None:
    # DuckDB opens a CSV, Parquet or JSON file as a throw-away in-memory database: writes would be lost
    path = tmp_path / f"outcomes.{'duckdb' if kind == 'empty' else kind}"
    episodes = cohort_1000.tables["episodes"].head(20)
    if kind == "csv":
        episodes.write_csv(path)
    elif kind == "parquet":
        episodes.write_parquet(path)
    elif kind == "json":
        episodes.write_json(path)
    else:
        path.touch()
    before = path.read_bytes()
    what = "an empty file" if kind == "empty" else "a file without DuckDB's header"
    expected = (
        f"{path} is not a DuckDB database ({what}; DuckDB would open it as a temporary in-memory database "
        "and keep nothing): pass --db an existing .duckdb store or a new path"
    )
    for read_only in (False, True):
        with pytest.raises(StoreError) as info:
            Store(path, read_only=read_only)
        assert str(info.value) == expected
    assert path.read_bytes() == before


def test_a_directory_is_refused_and_real_stores_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is a directory, not a DuckDB database: pass --db a file such as"):
        Store(tmp_path)
    db = tmp_path / "new" / "s.duckdb"
    with Store(db):
        pass
    assert db.read_bytes()[8:12] == b"DUCK"
    with Store(db, read_only=True) as store:
        assert store.read("episodes").is_empty()
