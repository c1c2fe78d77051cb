"""Ingest in chunks (large CSV files) gives exactly the results of the whole-file ingest.

Every test ingests the same dirty files twice, whole (``chunk_bytes=None``) and in chunks of a few lines
(``chunk_bytes=CHUNK``), and compares everything a user sees: issues and their messages, cascades, counts,
the store's tables, quarantine and log, and the JSON report.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sciatica_outcomes.ingest import ingest_paths, validate_paths
from sciatica_outcomes.ingest.chunked import scan_csv
from sciatica_outcomes.ingest.pipeline import IngestResult
from sciatica_outcomes.schemas.vocabulary import CANONICAL_TABLES
from sciatica_outcomes.store import Store

CHUNK = 6000  # bytes: every table file of the dirty cohort is read in several chunks
_LOG_VOLATILE = ("ingested_at_utc", "package_version")


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory, csv_dir: Path) -> Path:
    """The test cohort with problems spread over the files: every cross-chunk rule has work to do."""
    out = tmp_path_factory.mktemp("dirty")
    for f in csv_dir.glob("*.csv"):
        shutil.copy(f, out / f.name)
    for name, keep in (
        ("sessions", 900),
        ("session_exercises", 400),
        ("questionnaire_items", 300),
        ("symptom_checks", 200),
    ):
        (out / f"{name}.csv").write_text("\n".join(_lines(out / f"{name}.csv")[:keep]) + "\n")
    ep = _lines(out / "episodes.csv")
    eh = ep[0].split(",")
    rejected_episode = ep[5].split(",")[eh.index("episode_id")]
    cells = ep[5].split(",")
    cells[eh.index("end_date")] = "2001-01-01"  # before the start: the episode is rejected
    cells[eh.index("end_reason")] = "completed"
    ep[5] = ",".join(cells)
    for i in (3, len(ep) - 4):  # free text redacted in two chunks: one notice with the total
        cells = ep[i].split(",")
        cells[eh.index("program")] = "call 555-123-4567 or a.b@example.org"
        ep[i] = ",".join(cells)
    ep.append(ep[-10])  # a duplicate episode, far from its first copy
    ep.insert(40, "")  # a blank line
    (out / "episodes.csv").write_text("\n".join(ep) + "\n")

    se = _lines(out / "sessions.csv")
    sh = se[0].split(",")
    first = se[1].split(",")
    day = first[sh.index("session_date")]
    episode = first[sh.index("episode_id")]
    se[7] = se[7].replace(",completed,", ",complet,", 1)
    se.append(f"SX1,{episode},{day},completed,45,true,7/10,5,,4,buttock")
    se.append(f"SX2,NOPE01,{day},completed,45,true,3,5,,4,thigh")  # unknown episode
    se.append(f"SX3,{rejected_episode},{day},completed,45,true,3,5,,4,thigh")  # parent rejected
    se.append(f"SX4,{episode},1999-01-01,completed,45,true,3,5,,4,thigh")  # outside the episode
    se.append(se[2])  # a duplicate session, chunks away from the first copy
    se.insert(100, "")
    (out / "sessions.csv").write_text("\n".join(se) + "\n")

    ex = _lines(out / "session_exercises.csv")
    xh = ex[0].split(",")
    cells = ex[-1].split(",")
    cells[xh.index("session_id")] = "SNOPE"
    ex.append(",".join(cells))  # unknown session
    cells[xh.index("session_id")] = "SX1"
    ex.append(",".join(cells))  # its session was rejected
    (out / "session_exercises.csv").write_text("\n".join(ex) + "\n")

    # one table in two files with a key in both
    ms = _lines(out / "measures.csv")
    (out / "more").mkdir()
    (out / "more" / "measures.csv").write_text("\n".join([ms[0], *ms[300:420], ms[5]]) + "\n")
    (out / "measures.csv").write_text("\n".join(ms[:300]) + "\n")
    return out


def _inputs(dirty: Path) -> list[Path]:
    return [*sorted(dirty.glob("*.csv")), dirty / "more" / "measures.csv"]


def _store_state(db: Path) -> dict[str, pl.DataFrame]:
    with Store(db, read_only=True) as store:
        out = {t: store.read(t) for t in CANONICAL_TABLES}
        out["quarantine"] = store.read("quarantine")
        out["ingest_log"] = store.read("ingest_log").drop(_LOG_VOLATILE, strict=False)
    return out


def _same_results(a: IngestResult, b: IngestResult) -> None:
    assert_frame_equal(a.validation.issues, b.validation.issues)
    assert_frame_equal(a.validation.cascades, b.validation.cascades)
    assert_frame_equal(a.validation.counts(), b.validation.counts())
    assert_frame_equal(a.summary(), b.summary())
    assert a.validation.notices == b.validation.notices
    assert (a.written, a.absent, a.quarantine_added) == (b.written, b.absent, b.quarantine_added)
    for ta, tb in zip(a.validation.tables, b.validation.tables, strict=True):
        assert_frame_equal(ta.quarantine, tb.quarantine)
    if a.reports:
        ja = json.loads(a.reports["json"].read_text())
        jb = json.loads(b.reports["json"].read_text())
        ja.pop("generated_at_utc"), jb.pop("generated_at_utc")
        assert ja == jb


def test_the_dirty_files_are_read_in_chunks(dirty: Path) -> None:
    src = scan_csv(dirty / "sessions.csv", "sessions", chunk_bytes=CHUNK)
    assert src is not None and src.chunks is not None
    chunks = list(src.chunks())
    assert len(chunks) > 5
    assert sum(raw.height for raw, _ in chunks) == src.rows_read
    assert [rid for _, rid in chunks] == [0, *list(pl.Series([r.height for r, _ in chunks]).cum_sum())[:-1]]
    assert scan_csv(dirty / "sessions.csv", "sessions", chunk_bytes=10**9) is None  # small: read whole


def test_chunked_ingest_equals_whole_file_ingest(dirty: Path, tmp_path: Path) -> None:
    whole = ingest_paths(_inputs(dirty), db=tmp_path / "w" / "s.duckdb", chunk_bytes=None)
    parts = ingest_paths(_inputs(dirty), db=tmp_path / "c" / "s.duckdb", chunk_bytes=CHUNK)
    rules = set(whole.validation.errors["rule"].to_list())
    assert {"duplicate_key", "foreign_key", "parent_rejected", "outside_episode", "type"} <= rules
    assert whole.validation.issues.filter(pl.col("rule") == "redacted").height == 1
    assert whole.validation.issues.filter(pl.col("rule") == "blank_row").height == 2
    _same_results(whole, parts)
    sa, sb = _store_state(whole.db), _store_state(parts.db)
    for name in sa:
        assert_frame_equal(sa[name], sb[name])
    # the same files again: every row unchanged, nothing quarantined twice
    again_w = ingest_paths(_inputs(dirty), db=whole.db, chunk_bytes=None)
    again_c = ingest_paths(_inputs(dirty), db=parts.db, chunk_bytes=CHUNK)
    _same_results(again_w, again_c)
    assert again_c.summary()["inserted"].sum() == 0


def test_chunked_replace_and_strict_equal_whole_file(dirty: Path, tmp_path: Path) -> None:
    first = [dirty / "episodes.csv", dirty / "sessions.csv"]
    for db, chunk in ((tmp_path / "w.duckdb", None), (tmp_path / "c.duckdb", CHUNK)):
        ingest_paths(first, db=db, chunk_bytes=chunk)
    short = tmp_path / "short" / "sessions.csv"
    short.parent.mkdir()
    lines = _lines(dirty / "sessions.csv")
    short.write_text("\n".join(lines[:-40]) + "\n")  # a newer export without its last rows
    w = ingest_paths([short], db=tmp_path / "w.duckdb", replace=True, chunk_bytes=None)
    c = ingest_paths([short], db=tmp_path / "c.duckdb", replace=True, chunk_bytes=CHUNK)
    assert w.absent["sessions"] > 0
    _same_results(w, c)
    sw, sc = _store_state(tmp_path / "w.duckdb"), _store_state(tmp_path / "c.duckdb")
    for name in sw:
        assert_frame_equal(sw[name], sc[name])
    sw_ = ingest_paths(first, db=tmp_path / "ws.duckdb", strict=True, chunk_bytes=None)
    sc_ = ingest_paths(first, db=tmp_path / "cs.duckdb", strict=True, chunk_bytes=CHUNK)
    assert not sw_.written and not sc_.written
    _same_results(sw_, sc_)


def test_chunked_validate_equals_whole_file_validate(dirty: Path, tmp_path: Path) -> None:
    whole = validate_paths(_inputs(dirty), chunk_bytes=None)
    parts = validate_paths(_inputs(dirty), chunk_bytes=CHUNK)
    assert_frame_equal(whole.issues, parts.issues)
    assert_frame_equal(whole.counts(), parts.counts())
    assert whole.notices == parts.notices


def test_a_file_changed_between_chunked_passes_is_refused(dirty: Path, tmp_path: Path) -> None:
    path = tmp_path / "sessions.csv"
    shutil.copy(dirty / "sessions.csv", path)
    src = scan_csv(path, "sessions", chunk_bytes=CHUNK)
    assert src is not None and src.chunks is not None
    path.write_text(path.read_text().replace("completed", "missed", 1))
    with pytest.raises(Exception, match="changed while it was being ingested"):
        list(src.chunks())


def test_a_record_spanning_lines_is_read_whole(tmp_path: Path, dirty: Path) -> None:
    lines = _lines(dirty / "episodes.csv")
    h = lines[0].split(",")
    cells = lines[3].split(",")
    cells[h.index("program")] = '"two\nlines"'
    lines[3] = ",".join(cells)
    path = tmp_path / "episodes.csv"
    path.write_text("\n".join(lines) + "\n")
    assert scan_csv(path, "episodes", chunk_bytes=CHUNK) is None
