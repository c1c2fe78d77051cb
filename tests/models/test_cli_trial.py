"""End-to-end tests of ``fit --model mmrm``, ``responders`` and ``compare-clinics``."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.synth import generate_cohort, write_cohort

REF = Path(__file__).resolve().parents[1] / "reference" / "mmrm"
runner = CliRunner()


def test_fit_mmrm_json_matches_r(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    args = ["fit", "--model", "mmrm", "--data", str(REF / "mar5.csv"), "--formula", "y ~ visit * arm + base"]
    args += ["--subject", "id", "--visit", "visit", "--covariance", "us", "--json", str(out), "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    ref = json.loads((REF / "mar5.json").read_text())["fits"]["us"]
    assert [r["term"] for r in got["fixed_effects"]] == ref["coef_names"]
    assert got["covariance"]["visits"] == ["V1", "V2", "V3", "V4", "V5"]
    assert abs(got["loglik"] - ref["loglik"]) < 1e-5
    no_subject = [a for a in args if a not in ("--subject", "id")]
    bad = runner.invoke(app, no_subject)
    assert bad.exit_code == 2
    assert "--subject" in bad.output


def test_responders_and_compare_clinics(tmp_path: Path) -> None:
    write_cohort(generate_cohort(n_patients=700, seed=6), tmp_path / "cohort")
    csv = tmp_path / "resp.csv"
    res = runner.invoke(
        app, ["responders", "--tables", str(tmp_path / "cohort"), "--out", str(csv), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    frame = pl.read_csv(csv)
    assert set(frame["method"]) == {"observed (Wilson)", "model-based (MMRM)"}
    js = tmp_path / "cmp.json"
    res = runner.invoke(
        app, ["compare-clinics", "--tables", str(tmp_path / "cohort"), "--out", str(js), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(js.read_text())
    assert sum(r["n"] for r in payload["rows"]) == payload["diagnostics"]["rows_used"]
    missing = runner.invoke(app, ["responders", "--tables", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
