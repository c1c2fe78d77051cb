"""End-to-end tests of validate_paths and ingest_paths on real files and a real store."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import IdentifierColumnError, UnusableInputError
from sciatica_outcomes.ingest import ingest_paths, pipeline, validate_paths
from sciatica_outcomes.schemas.redcap import redcap_dictionary
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


def _with_bad_session(csv_dir: Path, out: Path) -> Path:
    """A copy of the cohort whose sessions.csv has one bad cell (pain_before 11 on line 3).

    The cell is a whole number, so the fast typed read takes the file; the range error then makes
    validation read it again as text.
    """
    shutil.copytree(csv_dir, out)
    lines = (out / "sessions.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[6] = "11"
    lines[2] = ",".join(fields)
    (out / "sessions.csv").write_text("\n".join(lines) + "\n")
    return out


def _swap(path: Path) -> None:
    """Replace ``path`` by another export: the first data line (the bad one) removed, a new row added."""
    lines = path.read_text().splitlines()
    fields = lines[1].split(",")
    fields[0] = fields[0] + "X"
    swapped = path.with_name(path.name + ".new")
    swapped.write_text("\n".join([lines[0], *lines[3:], ",".join(fields)]) + "\n")
    os.replace(swapped, path)


def test_a_source_swapped_before_its_text_reread_is_refused(
    tmp_path: Path, csv_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _with_bad_session(csv_dir, tmp_path / "cohort")
    db = tmp_path / "o.duckdb"
    sessions = src / "sessions.csv"
    first_sha = hashlib.sha256(sessions.read_bytes()).hexdigest()
    real = pipeline.validate_sources
    target = [sessions]

    def swap_then_validate(*args: object, **kwargs: object) -> object:
        # every file has been read (the typed fast read); the bad row makes validation re-read sessions.csv
        _swap(target[0])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "validate_sources", swap_then_validate)
    with pytest.raises(UnusableInputError) as info:
        ingest_paths(src, db=db)
    now_sha = hashlib.sha256(sessions.read_bytes()).hexdigest()
    assert str(info.value) == (
        f"{sessions}: the file changed while it was being ingested (sha256 {first_sha[:12]}... when first "
        f"read, {now_sha[:12]}... when read again), so nothing was stored; ingest it again once it is no "
        "longer being written or replaced"
    )
    with Store(db, read_only=True) as store:
        assert store.read("ingest_log").is_empty()
        assert store.read("quarantine").is_empty()
        assert all(store.read(t).is_empty() for t in CANONICAL_TABLES)
    # through the CLI: exit 2 and the same sentence, no traceback
    again = _with_bad_session(csv_dir, tmp_path / "again")
    target[0] = again / "sessions.csv"
    res = CliRunner().invoke(app, ["ingest", str(again), "--db", str(db)])
    assert res.exit_code == 2
    assert res.output.startswith(f"error: {target[0]}: the file changed while it was being ingested")
    assert res.output.count("\n") == 1


def test_the_stored_hash_is_that_of_the_bytes_validated(tmp_path: Path, csv_dir: Path) -> None:
    # the re-read of a source with a problem keeps the hash of what was read, and the bad row is quarantined
    src = _with_bad_session(csv_dir, tmp_path / "cohort")
    db = tmp_path / "o.duckdb"
    res = ingest_paths(src, db=db)
    with Store(db, read_only=True) as store:
        log = store.read("ingest_log")
        q = store.quarantined("sessions")
    sha = dict(zip(log["table_name"], log["sha256"], strict=True))
    for name in CANONICAL_TABLES:
        assert sha[name] == hashlib.sha256((src / f"{name}.csv").read_bytes()).hexdigest()
    assert q["row_number"].to_list() == [3]
    table = next(t for t in res.validation.tables if t.source.table == "sessions")
    assert table.source.raw.schema["pain_before"] == pl.String  # it was re-read as text


def test_a_parquet_file_replaced_while_read_is_refused(
    tmp_path: Path, parquet_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "cohort"
    shutil.copytree(parquet_dir, src)
    db = tmp_path / "o.duckdb"
    real = pipeline.read_parquet_table

    def replaced_after_hashing(path: Path, table: str, sha256: str) -> object:
        if table == "sessions":  # hashed already; another export lands before the reader opens it
            frame = pl.read_parquet(path).head(5)
            frame.write_parquet(path.with_name("tmp.parquet"))
            os.replace(path.with_name("tmp.parquet"), path)
        return real(path, table, sha256)

    monkeypatch.setattr(pipeline, "read_parquet_table", replaced_after_hashing)
    with pytest.raises(
        UnusableInputError, match=r"sessions\.parquet: the file changed while it was being read"
    ):
        ingest_paths(src, db=db)
    assert not db.exists() or Store(db, read_only=True).read("ingest_log").is_empty()


def test_the_same_bad_rows_under_another_file_name_are_quarantined_once(
    tmp_path: Path, csv_dir: Path
) -> None:
    src = _with_bad_session(csv_dir, tmp_path / "cohort")
    db = tmp_path / "o.duckdb"
    first = ingest_paths(src, db=db)
    rejected = sum(t.rows_quarantined for t in first.validation.tables)
    assert first.quarantine_added == rejected > 0
    # the same sessions under another name, and in another directory
    shutil.copy(src / "sessions.csv", tmp_path / "sessions_2026-04.csv")
    renamed = ingest_paths(tmp_path / "sessions_2026-04.csv", db=db, table="sessions")
    (tmp_path / "b").mkdir()
    shutil.copy(src / "sessions.csv", tmp_path / "b" / "sessions.csv")
    moved = ingest_paths(tmp_path / "b" / "sessions.csv", db=db)
    for res in (renamed, moved):
        assert res.validation.tables[0].rows_quarantined == 1  # still reported as rejected by this ingest
        assert res.quarantine_added == 0
    with Store(db, read_only=True) as store:
        q = store.read("quarantine")
        log = store.read("ingest_log")
    assert q.height == rejected
    assert q.filter(pl.col("table_name") == "sessions")["source_path"].to_list() == [
        str(src / "sessions.csv")
    ]
    # the log keeps what each ingest rejected
    assert log.filter(pl.col("table_name") == "sessions")["rows_quarantined"].to_list() == [1, 1, 1]


def _drop_sessions(csv_dir: Path, out: Path, n: int) -> tuple[Path, list[str]]:
    """A newer export: the last ``n`` sessions deleted from sessions.csv and their exercises from theirs."""
    out.mkdir()
    sessions = pl.read_csv(csv_dir / "sessions.csv", infer_schema=False)
    gone = sessions["session_id"].tail(n).to_list()
    sessions.head(sessions.height - n).write_csv(out / "sessions.csv")
    exercises = pl.read_csv(csv_dir / "session_exercises.csv", infer_schema=False)
    exercises.filter(~pl.col("session_id").is_in(gone)).write_csv(out / "session_exercises.csv")
    return out, gone


def test_rows_missing_from_a_newer_export_are_told_and_replace_deletes_them(
    tmp_path: Path, csv_dir: Path
) -> None:
    db = tmp_path / "o.duckdb"
    ingest_paths(csv_dir, db=db)
    with Store(db, read_only=True) as store:
        exercises_before = store.read("session_exercises")
    newer, gone = _drop_sessions(csv_dir, tmp_path / "newer", 6)
    n_ex = exercises_before.filter(pl.col("session_id").is_in(gone)).height
    assert n_ex > 0
    kept = ingest_paths(newer, db=db)
    assert kept.absent == {"sessions": 6, "session_exercises": n_ex}
    summary = kept.summary()
    assert dict(zip(summary["table"], summary["not_in_export"], strict=True)) == kept.absent
    with Store(db, read_only=True) as store:
        assert store.read("sessions")["session_id"].is_in(gone).sum() == 6  # kept, and said so
    # sessions alone with --replace: their exercises in the store would point nowhere, so it is refused
    with pytest.raises(UnusableInputError) as info:
        ingest_paths(newer / "sessions.csv", db=db, replace=True)
    assert str(info.value) == (
        f"--replace would delete 6 sessions row(s) that are not in this export, but {n_ex} session_exercises "
        "row(s) in the store point to them, so nothing was stored: ingest the session_exercises export "
        "together with this one, or leave out --replace"
    )
    replaced = ingest_paths(newer, db=db, replace=True)
    assert replaced.replaced and replaced.absent == {"sessions": 6, "session_exercises": n_ex}
    with Store(db, read_only=True) as store:
        sessions = store.read("sessions")
        exercises = store.read("session_exercises")
        log = store.read("ingest_log")
    assert not sessions["session_id"].is_in(gone).any()
    assert sessions.height == pl.read_csv(newer / "sessions.csv", infer_schema=False).height
    assert exercises.height == exercises_before.height - n_ex
    last = log.filter(pl.col("ingest_id") == replaced.ingest_id)
    assert dict(zip(last["table_name"], last["rows_deleted"], strict=True)) == {
        "sessions": 6,
        "session_exercises": n_ex,
    }
    assert log.filter(pl.col("ingest_id") < replaced.ingest_id)["rows_deleted"].sum() == 0


def test_replace_keeps_the_stored_version_of_a_rejected_row(tmp_path: Path, csv_dir: Path) -> None:
    db = tmp_path / "o.duckdb"
    ingest_paths(csv_dir, db=db)
    bad = _with_bad_session(csv_dir, tmp_path / "bad")
    res = ingest_paths(bad / "sessions.csv", db=db, replace=True)
    assert res.absent == {"sessions": 0}
    with Store(db, read_only=True) as store:
        assert (
            store.read("sessions").height == pl.read_csv(csv_dir / "sessions.csv", infer_schema=False).height
        )


def test_rows_missing_from_an_export_split_over_several_files(tmp_path: Path, csv_dir: Path) -> None:
    db = tmp_path / "o.duckdb"
    ingest_paths(csv_dir, db=db)
    newer, gone = _drop_sessions(csv_dir, tmp_path / "newer", 4)
    sessions = pl.read_csv(newer / "sessions.csv", infer_schema=False)
    half = sessions.height // 2
    # two files of the same table, one of them with a rejected row
    sessions.head(half).write_csv(tmp_path / "part1.csv")
    bad = sessions.slice(half).with_columns(
        pl.when(pl.int_range(pl.len()) == 20)
        .then(pl.lit("11"))
        .otherwise(pl.col("pain_before"))
        .alias("pain_before")
    )
    bad.write_csv(tmp_path / "part2.csv")
    parts = [tmp_path / "part1.csv", tmp_path / "part2.csv"]
    res = ingest_paths(parts, db=db, table="sessions")
    assert [t.rows_quarantined for t in res.validation.tables] == [0, 1]
    assert res.absent == {"sessions": 4}
    with pytest.raises(UnusableInputError, match="--replace would delete 4 sessions row"):
        ingest_paths(parts, db=db, table="sessions", replace=True)
    with Store(db, read_only=True) as store:
        assert store.read("sessions")["session_id"].is_in(gone).sum() == 4


#: Identifiers planted in a source; none of them may be found anywhere in the store.
_PLANTED = ("123-45-6789", "555-123-4567", "jane.roe", "Jane Roe", "1970-01-02", "00123456", "555-987-6543")


def _store_text(db: Path) -> str:
    """Every cell of every table of the DuckDB file, as text."""
    import duckdb  # noqa: PLC0415

    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        assert {"episodes", "quarantine", "ingest_log"} <= set(tables)
        parts = [str(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables]
    finally:
        con.close()
    return "\n".join(parts)


def test_identifier_values_are_quarantined_and_free_text_is_redacted(tmp_path: Path, csv_dir: Path) -> None:
    episodes = pl.read_csv(csv_dir / "episodes.csv", infer_schema=False)
    note = "call Jane Roe on 555-123-4567 or jane.roe@example.org, DOB 1970-01-02, MRN 00123456"
    row = pl.int_range(pl.len())
    planted = episodes.with_columns(
        pl.when(row == 0)
        .then(pl.lit("123-45-6789"))
        .when(row == 1)
        .then(pl.lit("555-123-4567"))
        .otherwise(pl.col("patient_id"))
        .alias("patient_id"),
        pl.when(row == 2)
        .then(pl.lit("jane.roe@example.org"))
        .otherwise(pl.col("therapist_id"))
        .alias("therapist_id"),
        pl.when(row == 3).then(pl.lit(note)).otherwise(pl.col("program")).alias("program"),
        # a column of no table, not named like an identifier: never stored, not even in the quarantine
        pl.lit("Jane Roe 555-987-6543").alias("remarks"),
    )
    src = tmp_path / "in" / "episodes.csv"
    src.parent.mkdir()
    planted.write_csv(src)
    db = tmp_path / "o.duckdb"
    res = ingest_paths(src, db=db)
    assert res.written and res.summary()["rows_quarantined"].to_list() == [3]
    errors = res.validation.errors.sort("row")
    assert errors.select("row", "column", "value", "rule").rows() == [
        (2, "patient_id", "[SSN]", "identifier_value"),
        (3, "patient_id", "[phone]", "identifier_value"),
        (4, "therapist_id", "[e-mail]", "identifier_value"),  # reported once, not also as a bad format
    ]
    assert errors["message"][0] == (
        "patient_id [SSN] looks like a social security number (NNN-NN-NNNN), not a pseudonymous code: "
        "identifiers must not enter the store; replace the column with random codes, e.g. "
        f"`sciatica-outcomes pseudonymize {src} --column patient_id --as patient_id --key KEY.csv --out OUT` "
        "(keep KEY.csv apart from the data)"
    )
    notice = res.validation.issues.filter(pl.col("rule") == "redacted")
    assert notice.select("column", "message", "severity").rows() == [
        (
            "program",
            "program: 5 identifiers (1 e-mail, 1 date of birth, 1 MRN, 1 phone, 1 name) redacted in 1 cell "
            "before storing; keep names, phone numbers, e-mail addresses, dates of birth and record numbers "
            "out of free text at the source",
            "warning",
        )
    ]
    with Store(db, read_only=True) as store:
        stored = store.read("episodes")
        quarantine = store.read("quarantine")
    episode = planted["episode_id"][3]
    assert stored.filter(pl.col("episode_id") == episode)["program"].to_list() == [
        "call [name] on [phone] or [e-mail], [date of birth], [MRN]"
    ]
    assert stored.height == episodes.height - 3
    assert quarantine["record"].str.contains('"patient_id":"[SSN]"', literal=True).sum() == 1
    assert not quarantine["record"].str.contains("remarks").any()
    text = _store_text(db)
    assert [v for v in _PLANTED if v in text] == []
    report = res.reports["json"].read_text()
    assert [v for v in _PLANTED if v in report] == []
    html = res.reports["html"].read_text()
    assert [v for v in _PLANTED if v in html] == []
    from sciatica_outcomes.ingest.report import RULE_DESCRIPTIONS  # noqa: PLC0415

    assert RULE_DESCRIPTIONS["identifier_value"] in html and RULE_DESCRIPTIONS["redacted"] in html


def test_a_file_with_an_identifier_column_leaves_no_store(tmp_path: Path, csv_dir: Path) -> None:
    episodes = pl.read_csv(csv_dir / "episodes.csv", infer_schema=False)
    src = tmp_path / "episodes.csv"
    episodes.with_columns(pl.lit("00123456").alias("mrn")).write_csv(src)
    db = tmp_path / "o.duckdb"
    with pytest.raises(IdentifierColumnError, match="'mrn' looks like a medical record"):
        ingest_paths(src, db=db)
    assert not db.exists()
    ingest_paths(csv_dir / "episodes.csv", db=db)  # a store that exists gains nothing from the refused file
    with pytest.raises(IdentifierColumnError):
        ingest_paths(src, db=db)
    assert "00123456" not in _store_text(db)


def test_a_file_named_after_no_table_is_refused_even_in_a_directory(tmp_path: Path, csv_dir: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(csv_dir, folder)
    shutil.copy(csv_dir / "episodes.csv", folder / "patients.csv")
    db = tmp_path / "o.duckdb"
    with pytest.raises(UnusableInputError, match=r"patients\.csv.*episodes, sessions.*--table"):
        ingest_paths(folder, db=db)
    assert not db.exists()


def test_a_folder_with_nothing_ingestible_creates_no_store(tmp_path: Path, csv_dir: Path) -> None:
    folder = tmp_path / "only"
    folder.mkdir()
    (folder / "truth.json").write_text('{"seed": 7}')
    db = tmp_path / "o.duckdb"
    for run in (lambda: validate_paths([folder]), lambda: ingest_paths(folder, db=db)):
        with pytest.raises(UnusableInputError, match="nothing to ingest"):
            run()
    assert not db.exists()
    res = CliRunner().invoke(app, ["ingest", str(folder), "--db", str(db)])
    assert res.exit_code == 2, res.output
    assert "nothing to ingest" in res.output and "Traceback" not in res.output
    assert not db.exists()


def test_a_redcap_labels_export_in_a_folder_is_read_not_refused(tmp_path: Path) -> None:
    labels = redcap_dictionary()["Field Label"].head(4).to_list()
    folder = tmp_path / "redcap"
    folder.mkdir()
    header = ",".join(f'"{v}"' for v in labels)
    (folder / "Project_DATA_LABELS_2026-01-01.csv").write_text(f"{header}\nE1,P1,C1,T1\n")
    res = validate_paths([folder])
    assert {t.source.fmt for t in res.tables} == {"redcap"}
    # the episode lacks its required fields: reported at the export's line
    assert 2 in set(res.errors["row"].to_list())
