"""A process killed with SIGKILL in the middle of an ingest leaves the store exactly as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

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
