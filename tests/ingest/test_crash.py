"""Faults during an ingest: a SIGKILL mid-ingest leaves the store exactly as it was; a full disk fails fast,
rolls back (or says what was committed), releases the lock and leaves no empty report."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import StoreError
from sciatica_outcomes.ingest import ingest_paths
from sciatica_outcomes.store import CANONICAL_TABLES, Store
from sciatica_outcomes.synth import generate_cohort, write_cohort

REPO = Path(__file__).resolve().parents[2]

_CHILD = textwrap.dedent(
    """
    import sys, time
    from sciatica_outcomes.ingest import ingest_paths

    def step(stage, detail):
        # inside the transaction: sessions and session_exercises are written, nothing is committed
        if stage == "stored" and detail == "session_exercises":
            print("IN_TRANSACTION", flush=True)
            time.sleep(120)

    ingest_paths(sys.argv[1], db=sys.argv[2], on_progress=step)
    print("COMMITTED", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_mid_ingest_leaves_previous_state(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    first = generate_cohort(n_patients=60, seed=1)
    write_cohort(first, tmp_path / "first")
    ingest_paths(tmp_path / "first", db=db)
    with Store(db, read_only=True) as store:
        before = {name: store.read(name) for name in (*CANONICAL_TABLES, "ingest_log", "quarantine")}

    # a newer export: other episodes (inserts) and changed sessions of the first ones (updates)
    second = generate_cohort(n_patients=120, seed=2)
    write_cohort(second, tmp_path / "second")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "second"), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "IN_TRANSACTION", proc.stderr.read() if proc.stderr else line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    with Store(db, read_only=True) as store:
        for name, frame in before.items():
            assert_frame_equal(store.read(name), frame)

    # the store is usable: the same ingest now completes and lands the newer export
    res = ingest_paths(tmp_path / "second", db=db)
    assert res.written
    with Store(db, read_only=True) as store:
        sessions = store.read("sessions")
        log = store.read("ingest_log")
    assert log["ingest_id"].n_unique() == 2
    expected_ids = pl.concat(
        [first.tables["sessions"]["session_id"], second.tables["sessions"]["session_id"]]
    )
    assert sessions.height == expected_ids.n_unique()


_ENOSPC = 'IO Error: Could not write file "{db}": No space left on device'
_WRITER = "sciatica-outcomes-ingest-writer"


def _fail_on_writer(
    monkeypatch: pytest.MonkeyPatch, db: Path, statement: str, *, after: bool = False
) -> None:
    """Make the writer thread's first statement starting with ``statement`` fail as on a full disk.

    The failure is raised from the store's own statement call, on the writer thread only, exactly where
    DuckDB raises when a write or the COMMIT cannot reach the disk (``after``: once the statement ran).
    """
    real = Store._exec
    fired: list[str] = []

    def exec_(self: Store, sql: str, params: object = None) -> list[tuple[object, ...]]:
        hit = not fired and threading.current_thread().name == _WRITER and sql.strip().startswith(statement)
        if hit and not after:
            fired.append(sql)
            raise duckdb.IOException(_ENOSPC.format(db=db))
        out = real(self, sql, params)  # type: ignore[arg-type]
        if hit:
            fired.append(sql)
            raise duckdb.IOException(_ENOSPC.format(db=db))
        return out

    monkeypatch.setattr(Store, "_exec", exec_)


def _snapshot(db: Path) -> dict[str, pl.DataFrame]:
    with Store(db, read_only=True) as store:
        return {name: store.read(name) for name in (*CANONICAL_TABLES, "ingest_log", "quarantine")}


def _ingest_with_deadline(source: Path, db: Path, seconds: float = 120) -> BaseException | None:
    """Run ``ingest_paths`` on a thread; fail the test if it does not return (a hang) within ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            ingest_paths(source, db=db)
            outcome.append(None)
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the ingest hung: the writer thread left the main thread waiting"
    return outcome[0]


@pytest.fixture(scope="module")
def two_exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("exports")
    write_cohort(generate_cohort(n_patients=40, seed=1), root / "first")
    second = root / "second"
    write_cohort(generate_cohort(n_patients=60, seed=2), second)
    # one bad row, so that the final writes include quarantine rows
    lines = (second / "sessions.csv").read_text().splitlines()
    fields = lines[2].split(",")
    fields[6] = "7/10"
    lines[2] = ",".join(fields)
    (second / "sessions.csv").write_text("\n".join(lines) + "\n")
    return root / "first", second


@pytest.mark.parametrize(
    "statement",
    [
        'INSERT INTO "sessions"',  # a table in the middle of the ingest
        "INSERT INTO quarantine",  # the final writes
        "INSERT INTO ingest_log",
        "COMMIT",
    ],
)
def test_a_full_disk_fails_fast_rolls_back_and_says_nothing_was_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_exports: tuple[Path, Path], statement: str
) -> None:
    first, second = two_exports
    db = tmp_path / "store.duckdb"
    ingest_paths(first, db=db)
    before = _snapshot(db)
    reports_before = sorted(p.name for p in tmp_path.iterdir())
    _fail_on_writer(monkeypatch, db, statement)
    error = _ingest_with_deadline(second, db)
    assert isinstance(error, StoreError)
    assert str(error) == (
        f"cannot write store {db}: {_ENOSPC.format(db=db)}; nothing of this ingest was stored (the "
        "transaction was rolled back): free disk space (or fix the store's permissions) and run the ingest "
        "again"
    )
    monkeypatch.undo()
    after = _snapshot(db)
    for name, frame in before.items():
        assert_frame_equal(after[name], frame)
    # no report of the failed ingest (and no empty file)
    assert sorted(p.name for p in tmp_path.iterdir()) == reports_before


def test_a_commit_that_fails_after_landing_is_reported_as_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_exports: tuple[Path, Path]
) -> None:
    _first, second = two_exports
    db = tmp_path / "store.duckdb"
    _fail_on_writer(monkeypatch, db, "COMMIT", after=True)
    error = _ingest_with_deadline(second, db)
    assert isinstance(error, StoreError)
    assert "; ingest 1 was nevertheless committed in full: free disk space before the next ingest" in str(
        error
    )
    monkeypatch.undo()
    with Store(db, read_only=True) as store:
        assert store.read("ingest_log")["ingest_id"].unique().to_list() == [1]


def test_the_lock_is_released_after_a_failed_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_exports: tuple[Path, Path]
) -> None:
    first, second = two_exports
    db = tmp_path / "store.duckdb"
    _fail_on_writer(monkeypatch, db, "COMMIT")
    assert isinstance(_ingest_with_deadline(first, db), StoreError)
    # another process can now take the store's write lock and ingest
    code = (
        "import sys; from sciatica_outcomes.ingest import ingest_paths as f; f(sys.argv[1], db=sys.argv[2])"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(second), str(db)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    monkeypatch.undo()
    with Store(db, read_only=True) as store:
        assert store.read("ingest_log")["ingest_id"].unique().to_list() == [1]


def test_cli_full_disk_exits_2_with_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_exports: tuple[Path, Path]
) -> None:
    first, _second = two_exports
    db = tmp_path / "store.duckdb"
    _fail_on_writer(monkeypatch, db, "INSERT INTO ingest_log")
    res = CliRunner().invoke(app, ["ingest", str(first), "--db", str(db)])
    assert res.exit_code == 2
    assert res.output.startswith(f"error: cannot write store {db}: ")
    assert "nothing of this ingest was stored" in res.output
    assert res.output.count("\n") == 1  # one line, no traceback


def test_reports_that_cannot_be_written_leave_no_file_and_the_commit_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_exports: tuple[Path, Path]
) -> None:
    _first, second = two_exports
    db = tmp_path / "store.duckdb"
    report_dir = tmp_path / "reports"
    real = Path.write_text

    def full_disk(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if report_dir in self.parents:
            real(self, data[: len(data) // 2], *args, **kwargs)  # type: ignore[arg-type]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)
    res = CliRunner().invoke(app, ["ingest", str(second), "--db", str(db), "--report-dir", str(report_dir)])
    monkeypatch.undo()
    assert res.exit_code == 2
    with Store(db, read_only=True) as store:
        stored = sum(store.read(t).height for t in CANONICAL_TABLES)
        quarantined = store.read("quarantine").height
    assert res.output.splitlines()[-1] == (
        f"error: ingest 1 was committed ({stored:,} rows stored, {quarantined:,} quarantined), but the "
        f"reports could not be written to {report_dir} (No space left on device): free space there (or pass "
        "--report-dir) and re-create the reports with `sciatica-outcomes validate SOURCES --report FILE "
        "--html FILE`"
    )
    assert quarantined > 0
    assert list(report_dir.iterdir()) == []  # neither an empty report nor a temporary file is left


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs (needs root and mount(8); skipped elsewhere: the tests above run everywhere)."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=False, capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


@pytest.mark.parametrize("free_kib", [300, 1200, 2400])
def test_a_really_full_disk_ends_with_the_truth(tmp_path: Path, small_tmpfs: Path, free_kib: int) -> None:
    source = tmp_path / "cohort"
    write_cohort(generate_cohort(n_patients=600, seed=3), source)
    (small_tmpfs / "filler").write_bytes(b"\0" * (8 * 2**20 - free_kib * 2**10))
    db = small_tmpfs / "store.duckdb"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "sciatica_outcomes.cli", "ingest", str(source), "--db", str(db)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,  # it used to hang here, holding the store's lock
    )
    (small_tmpfs / "filler").unlink()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], proc.stderr
    assert not [p.name for p in small_tmpfs.iterdir() if p.suffix in (".json", ".html")]  # no empty report
    with Store(db, read_only=True) as store:  # the lock is free and the store opens
        ids = store.read("ingest_log")["ingest_id"].unique().to_list()
        stored = sum(store.read(t).height for t in CANONICAL_TABLES)
    if "nothing of this ingest was stored" in lines[0]:
        assert ids == [] and stored == 0
    else:
        assert ids == [1] and ("was committed" in lines[0]), lines[0]
