"""End-to-end tests of the ingest commands through the real CLI app (real files, real store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.store import Store

runner = CliRunner()


def _corrupt_copy(csv_dir: Path, out: Path) -> Path:
    shutil.copytree(csv_dir, out)
    lines = (out / "sessions.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[6] = "7/10"  # pain_before on line 3
    lines[2] = ",".join(fields)
    (out / "sessions.csv").write_text("\n".join(lines) + "\n")
    return out


def test_validate_exit_codes_and_reports(tmp_path: Path, csv_dir: Path) -> None:
    clean = runner.invoke(app, ["validate", str(csv_dir)])
    assert clean.exit_code == 0, clean.output
    bad = _corrupt_copy(csv_dir, tmp_path / "bad")
    res = runner.invoke(
        app, ["validate", str(bad), "--report", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")]
    )
    assert res.exit_code == 1, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    issue = next(i for i in report["issues"] if i["severity"] == "error" and i["table"] == "sessions")
    assert (issue["row"], issue["column"], issue["value"], issue["rule"]) == (
        3,
        "pain_before",
        "7/10",
        "type",
    )
    html = (tmp_path / "r.html").read_text()
    assert "Value of the wrong type (type): 1<" in html and "7/10" in html
    unknown = runner.invoke(app, ["validate", str(tmp_path / "r.json")])
    assert unknown.exit_code == 2
    (tmp_path / "people.csv").write_text("a\n1\n")
    odd = runner.invoke(app, ["validate", str(tmp_path / "people.csv")])
    assert odd.exit_code == 2 and "cannot tell which table" in odd.output


def test_ingest_strict_and_identifier_refusal(tmp_path: Path, csv_dir: Path) -> None:
    bad = _corrupt_copy(csv_dir, tmp_path / "bad")
    db = tmp_path / "o.duckdb"
    strict = runner.invoke(app, ["ingest", str(bad), "--db", str(db), "--strict"])
    assert strict.exit_code == 1, strict.output
    with Store(db, read_only=True) as store:
        assert store.read("sessions").is_empty()
    ok = runner.invoke(app, ["ingest", str(bad), "--db", str(db)])
    assert ok.exit_code == 0, ok.output
    assert "quarantined" in ok.output
    with Store(db, read_only=True) as store:
        assert store.quarantined("sessions")["row_number"].to_list() == [3]
        # the exercises of the rejected session cannot point to it: quarantined too, naming the session's line
        orphans = store.quarantined("session_exercises")
    assert orphans.height > 0 and orphans["errors"].str.contains("parent_rejected").all()
    assert orphans["errors"].str.contains("sessions.csv line 3 but that row was rejected").all()
    ep = pl.read_csv(csv_dir / "episodes.csv", infer_schema=False).with_columns(
        pl.lit("x@y.org").alias("Email")
    )
    ep.write_csv(tmp_path / "episodes.csv")
    refused = runner.invoke(app, ["ingest", str(tmp_path / "episodes.csv"), "--db", str(db)])
    assert refused.exit_code == 2
    assert "pseudonymize" in refused.output and "Email" in refused.output


def test_schemas_export_and_pseudonymize(tmp_path: Path, csv_dir: Path) -> None:
    res = runner.invoke(app, ["schemas", "export", "--out", str(tmp_path / "schemas")])
    assert res.exit_code == 0
    assert (tmp_path / "schemas" / "sessions.schema.json").exists()
    ep = pl.read_csv(csv_dir / "episodes.csv", infer_schema=False)
    ep.rename({"patient_id": "mrn"}).with_columns(pl.lit("Ann Example").alias("patient_name")).write_csv(
        tmp_path / "raw.csv"
    )
    out = tmp_path / "clean" / "episodes.csv"
    res = runner.invoke(
        app,
        [
            "pseudonymize",
            str(tmp_path / "raw.csv"),
            "--column",
            "mrn",
            "--key",
            str(tmp_path / "key" / "key.csv"),
            "--out",
            str(out),
            "--drop",
            "patient_name",
        ],
    )
    assert res.exit_code == 0, res.output
    ingested = runner.invoke(app, ["ingest", str(out), "--db", str(tmp_path / "o.duckdb")])
    assert ingested.exit_code == 0, ingested.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_ingest_refuses_a_db_that_is_not_a_duckdb_file(tmp_path: Path, csv_dir: Path, suffix: str) -> None:
    # DuckDB would open it as an in-memory database: "rows stored", exit 0 and nothing kept
    db = tmp_path / f"episodes{suffix}"
    episodes = pl.read_csv(csv_dir / "episodes.csv")
    {".csv": episodes.write_csv, ".parquet": episodes.write_parquet, ".json": episodes.write_json}[suffix](db)
    before = db.read_bytes()
    res = runner.invoke(app, ["ingest", str(csv_dir), "--db", str(db)])
    assert res.exit_code == 2
    assert res.output == (
        f"error: {db} is not a DuckDB database (a file without DuckDB's header; DuckDB would open it as a "
        "temporary in-memory database and keep nothing): pass --db an existing .duckdb store or a new path\n"
    )
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [db.name]  # no report either


def test_ingest_tells_rows_missing_from_the_export_and_replace_deletes_them(
    tmp_path: Path, csv_dir: Path
) -> None:
    db = tmp_path / "o.duckdb"
    assert runner.invoke(app, ["ingest", str(csv_dir), "--db", str(db)]).exit_code == 0
    sessions = pl.read_csv(csv_dir / "sessions.csv", infer_schema=False)
    used = pl.read_csv(csv_dir / "session_exercises.csv", infer_schema=False)["session_id"].unique()
    # two sessions without exercises are deleted from the newer export
    gone = sessions.filter(~pl.col("session_id").is_in(used.implode()))["session_id"].head(2)
    assert gone.len() == 2
    newer = tmp_path / "newer"
    newer.mkdir()
    sessions.filter(~pl.col("session_id").is_in(gone.implode())).write_csv(newer / "sessions.csv")
    res = runner.invoke(app, ["ingest", str(newer), "--db", str(db)])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert (
        "note 2 sessions row(s) in the store are not in this export; they are kept (pass --replace to delete "
        "them if this export is the whole table)"
    ) in flat
    res = runner.invoke(app, ["ingest", str(newer), "--db", str(db), "--replace"])
    assert res.exit_code == 0, res.output
    assert "note 2 sessions row(s) not in this export were deleted (--replace)" in " ".join(
        res.output.split()
    )
    with Store(db, read_only=True) as store:
        stored = store.read("sessions")["session_id"]
    assert stored.len() == sessions.height - 2 and not stored.is_in(gone.implode()).any()
