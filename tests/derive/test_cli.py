"""End-to-end test of ``sciatica-outcomes derive`` on a real DuckDB store (run as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import polars as pl

from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import generate_cohort

CLI = [sys.executable, "-m", "sciatica_outcomes.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=300)


def test_derive_writes_frames_alerts_and_provenance(tmp_path: Path) -> None:
    cohort = generate_cohort(n_patients=300, seed=8, red_flag_prob=0.08)
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        for name, frame in cohort.tables.items():
            store.write(name, frame, source="synthetic cohort")
    (tmp_path / "c.toml").write_text("dropout_gap_weeks = 3\n[mcid.odi]\nabsolute = 8.0\n")
    out = tmp_path / "out"
    r = run("derive", "--db", str(db), "--out", str(out), "--config", str(tmp_path / "c.toml"))
    assert r.returncode == 0, r.stderr
    assert "UNACTIONED" in r.stdout
    af = pl.read_parquet(out / "analysis_frame.parquet")
    summary = pl.read_parquet(out / "episode_summary.parquet")
    alerts = pl.read_csv(out / "alerts.csv", try_parse_dates=True)
    assert summary.height == 300 and af.height > 300
    assert alerts.columns[:7] == [
        "episode_id",
        "date",
        "kind",
        "source",
        "flags",
        "action_taken",
        "unactioned",
    ]
    planted = cohort.truth["events"]["red_flags"]
    red = alerts.filter(pl.col("kind") == "red_flag")
    assert red.height == len(planted)
    assert int(red["unactioned"].sum()) == sum(p["action_taken"] is None for p in planted)
    prov = json.loads((out / "derive_provenance.json").read_text())
    assert prov["config"]["values"]["dropout_gap_weeks"] == 3.0
    assert prov["config"]["values"]["mcid"]["odi"]["absolute"] == 8.0
    assert prov["rows"]["alerts"] == alerts.height
    rtw = pl.read_parquet(out / "return_to_work.parquet")
    assert (
        rtw.height == prov["rows"]["return_to_work"] == len(cohort.truth["work"]["events"]["return_to_work"])
    )
    assert pl.read_parquet(out / "work_episodes.parquet").height == prov["rows"]["work_episodes"] > 0


def test_derive_bad_input_exit_codes(tmp_path: Path) -> None:
    missing = run("derive", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "bad.toml").write_text("flare_rise = 3\n")
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.write("episodes", generate_cohort(n_patients=5, seed=1).tables["episodes"], source="t")
    bad = run("derive", "--db", str(db), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "bad.toml"))
    assert bad.returncode == 2 and "unknown configuration key 'flare_rise'" in bad.stderr


def test_write_scores_upserts_questionnaire_scores_with_provenance(tmp_path: Path) -> None:
    cohort = generate_cohort(n_patients=60, seed=12)
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        for name, frame in cohort.tables.items():
            kept = (
                frame.filter(pl.col("measure") != "sbi") if name == "measures" else frame
            )  # SBI as items only
            store.write(name, kept, source="synthetic cohort")
    r = run("derive", "--db", str(db), "--out", str(tmp_path / "out"), "--write-scores")
    assert r.returncode == 0, r.stderr
    with Store(db, read_only=True) as store:
        sbi = store.read("measures").filter(pl.col("measure") == "sbi")
        log = store.read("ingest_log")
    n_sbi = cohort.tables["measures"].filter(pl.col("measure") == "sbi").height
    assert sbi.height == n_sbi
    assert log.filter(pl.col("source_path").str.contains("score_questionnaires"))["rows_read"].item() > n_sbi


def _figure(stdout: str, label: str) -> str:
    """The value printed on the row of the derived-metrics table whose label is ``label``."""
    (line,) = [ln for ln in stdout.splitlines() if ln.strip().startswith(label)]
    return line.split()[-1]


def test_summary_says_na_for_figures_without_data_never_zero(tmp_path: Path) -> None:
    # episodes but no sessions: adherence is a real 0 over the observed windows, while flares per 100
    # completed sessions has no denominator; with the data cut before every start no window is observed,
    # so there is no adherence to average either (it used to print 0.000)
    db = tmp_path / "s.duckdb"
    episodes = generate_cohort(n_patients=5, seed=1).tables["episodes"]
    with Store(db) as store:
        store.write("episodes", episodes, source="t")
    whole = run("derive", "--db", str(db), "--out", str(tmp_path / "a"))
    assert whole.returncode == 0, whole.stderr
    assert _figure(whole.stdout, "mean adherence") == "0.000"
    assert _figure(whole.stdout, "flares per 100 completed sessions") == "n/a"
    before = episodes["start_date"].min() - timedelta(days=1)
    cut = run("derive", "--db", str(db), "--out", str(tmp_path / "b"), "--data-cut", before.isoformat())
    assert cut.returncode == 0, cut.stderr
    assert _figure(cut.stdout, "mean adherence") == "n/a"
    assert _figure(cut.stdout, "episodes") == "5"
