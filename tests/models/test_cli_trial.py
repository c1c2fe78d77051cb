"""End-to-end tests of ``fit --model mmrm``, ``responders`` and ``compare-clinics``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import polars as pl
from tolerances import GOLDEN_ESTIMATE, GOLDEN_LOGLIK, rel
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.models import MMRM
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
    est = np.array([r["estimate"] for r in got["fixed_effects"]])
    assert rel(est, ref["estimate"], ref["se"]) < GOLDEN_ESTIMATE
    assert got["covariance"]["visits"] == ["V1", "V2", "V3", "V4", "V5"]
    assert abs(got["loglik"] - ref["loglik"]) < GOLDEN_LOGLIK
    no_subject = [a for a in args if a not in ("--subject", "id")]
    bad = runner.invoke(app, no_subject)
    assert bad.exit_code == 2
    assert "--subject" in bad.output


def test_fit_mmrm_group_specific_and_spatial_covariance(tmp_path: Path) -> None:
    """``--covariance-group`` and ``--coordinates`` reach the estimator: the fit is the API's, the JSON names
    the group, the coordinates and the covariance's rows; sp_exp without coordinates exits 2."""
    frame = pl.read_csv(REF / "fev_data.csv", null_values="NA")
    data = tmp_path / "fev.csv"
    frame.write_csv(data)
    base = [
        "fit",
        "--model",
        "mmrm",
        "--data",
        str(data),
        "--formula",
        "FEV1 ~ AVISIT",
        "--subject",
        "USUBJID",
    ]
    base += ["--visit", "AVISIT", "--quiet"]
    runs = {
        "csh": (["--covariance-group", "ARMCD"], {"group": "ARMCD"}),
        "sp_exp": (
            ["--coordinates", "VISITN", "--coordinates", "VISITN2"],
            {"coordinates": ["VISITN", "VISITN2"]},
        ),
    }
    got = {}
    for cov, (extra, kw) in runs.items():
        out = tmp_path / f"{cov}.json"
        res = runner.invoke(app, [*base, "--covariance", cov, *extra, "--json", str(out)])
        assert res.exit_code == 0, res.output
        got[cov] = json.loads(out.read_text())
        api = MMRM("FEV1 ~ AVISIT", "USUBJID", "AVISIT", covariance=cov, **kw).fit(frame).result_
        assert got[cov]["loglik"] == api.loglik
        assert got[cov]["covariance"]["labels"] == api.covariance_labels
    assert got["csh"]["covariance"]["group"] == "ARMCD"
    assert got["csh"]["covariance"]["labels"][4] == "TRT:VIS1"
    sp = got["sp_exp"]["covariance"]
    assert sp["coordinates"] == ["VISITN", "VISITN2"]
    assert sp["matrix"] is None and len(sp["labels"]) == 537  # one point per row: parameters only
    bad = runner.invoke(app, [*base, "--covariance", "sp_exp"])
    assert bad.exit_code == 2
    assert "needs coordinates" in bad.output


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


def test_compare_clinics_csv_neutralises_a_code_a_spreadsheet_would_evaluate(tmp_path: Path) -> None:
    cohort = tmp_path / "cohort"
    write_cohort(generate_cohort(n_patients=700, seed=6), cohort)
    episodes = pl.read_csv(cohort / "episodes.csv", infer_schema=False)
    # "-1-1" is a valid clinic code (letters, digits, _ . -) and shows as -2 in a spreadsheet
    first = episodes["clinic_id"].sort()[0]
    episodes.with_columns(pl.col("clinic_id").replace(first, "-1-1")).write_csv(cohort / "episodes.csv")
    out = tmp_path / "clinics.csv"
    res = runner.invoke(app, ["compare-clinics", "--tables", str(cohort), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    providers = [r["provider"] for r in rows]
    assert "'-1-1" in providers and "-1-1" not in providers
    # numbers stay numbers: unquoted in the file, negative values included
    text = out.read_text(encoding="utf-8")
    o_minus_e = [float(r["o_minus_e"]) for r in rows]
    assert any(v < 0 for v in o_minus_e)
    negative = next(r["o_minus_e"] for r in rows if float(r["o_minus_e"]) < 0)
    assert f",{negative}," in text or f",{negative}\n" in text
    assert f'"{negative}"' not in text
