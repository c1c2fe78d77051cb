"""End-to-end tests of the ``sciatica-outcomes`` command (run as a real subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl

CLI = [sys.executable, "-m", "sciatica_outcomes.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=300)


def test_synth_writes_tables_and_truth(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    result = run("synth", "--patients", "200", "--clinics", "3", "--seed", "9", "--out", str(out))
    assert result.returncode == 0, result.stderr
    episodes = pl.read_csv(out / "episodes.csv")
    assert episodes.height == 200
    assert episodes["clinic_id"].n_unique() <= 3
    truth = json.loads((out / "truth.json").read_text())
    assert truth["config"]["seed"] == 9
    assert "Synthetic cohort" in result.stdout


def test_synth_parquet_and_bad_arguments(tmp_path: Path) -> None:
    ok = run("synth", "--patients", "50", "--format", "parquet", "--out", str(tmp_path), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert pl.read_parquet(tmp_path / "sessions.parquet").height > 0
    bad = run("synth", "--patients", "0", "--out", str(tmp_path))
    assert bad.returncode == 2
    assert "patients" in bad.stderr.lower()
