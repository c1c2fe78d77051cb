"""``sciatica-outcomes fit --family``: the GLMM branch end to end (files in, JSON out, messages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tolerances import GOLDEN_LOGLIK, rel
from typer.testing import CliRunner

from sciatica_outcomes.cli import app

REF_DIR = Path(__file__).resolve().parents[1] / "reference" / "glmm"
REFERENCE = {c["name"]: c for c in json.loads((REF_DIR / "glmm_reference.json").read_text())["cases"]}


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    res = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)


def test_poisson_with_offset_json_matches_glmmtmb(tmp_path: Path) -> None:
    case = REFERENCE["flares_poisson_slope_tmb"]
    out = tmp_path / "glmm.json"
    r = invoke(
        "fit", "--data", str(REF_DIR / "flares.csv"), "--formula", case["formula"], "--family", "poisson",
        "--offset", "log_sessions", "--json", str(out), "--emmeans", "adherence|week=0,11",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rate ratio" in r.stdout and "population-averaged" in r.stdout
    doc = json.loads(out.read_text())
    assert (
        doc["family"] == "poisson" and doc["approximation"] == "Laplace" and doc["ddf_method"] == "asymptotic"
    )
    assert abs(doc["loglik"] - case["loglik"]) < GOLDEN_LOGLIK
    fe = {row["term"]: row for row in doc["fixed_effects"]}
    assert set(fe) == set(case["fixef"])
    assert rel([fe[k]["estimate"] for k in case["fixef"]], list(case["fixef"].values())) < 1e-4
    assert all(row["z"] == row["t"] and row["ratio"] > 0 for row in doc["fixed_effects"])
    assert len(doc["response_means"]) == 4


def test_binomial_quadrature_through_the_cli(tmp_path: Path) -> None:
    case = REFERENCE["cbpp_agq25"]
    out = tmp_path / "agq.json"
    r = invoke(  # period is read as a number from the CSV: factor() makes it the factor R has
        "fit", "--data", str(REF_DIR / "cbpp.csv"), "--formula", "incidence ~ factor(period) + (1 | herd)",
        "--family", "binomial", "--trials", "size", "--nagq", "25", "--json", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["approximation"] == "adaptive Gauss-Hermite (nAGQ = 25)"
    assert abs(doc["loglik"] - (case["loglik"] + case["saturated_loglik"])) < GOLDEN_LOGLIK


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--family", "gamma"], "family 'gamma' is not supported"),
        (["--offset", "log_sessions"], "apply to a GLMM: add --family"),
        (["--family", "poisson", "--ml"], "drop --model, --ml, --ddf, --vcov and --weights"),
        (["--family", "poisson", "--nagq", "5"], "needs a single scalar random effect"),
    ],
)
def test_user_errors_exit_2_with_a_sentence(extra: list[str], message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sciatica_outcomes.cli", "fit", "--data", str(REF_DIR / "flares.csv"),
         "--formula", "flares ~ week + (week | patient)", *extra],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_nested_clinics_through_the_cli(tmp_path: Path) -> None:
    """Patients nested in clinics: glmmTMB's log-likelihood, both groups named, and quadrature refused."""
    case = REFERENCE["nested_negbin_tmb"]
    out = tmp_path / "nested.json"
    r = invoke(
        "fit", "--data", str(REF_DIR / "nested.csv"), "--formula", case["formula"], "--family", "negbin2",
        "--offset", "log_sessions", "--json", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert abs(doc["loglik"] - case["loglik"]) < GOLDEN_LOGLIK
    assert doc["n_groups"] == {"patient": 302, "clinic": 12}  # 12 clinics of 20-30 patients
    assert [(v["group"], v["term1"]) for v in doc["random_effects"]] == [
        ("patient", "(Intercept)"),
        ("clinic", "(Intercept)"),
    ]
    bad = invoke(
        "fit", "--data", str(REF_DIR / "nested.csv"), "--formula", case["formula"], "--family", "poisson",
        "--nagq", "9",
    )  # fmt: skip
    assert bad.returncode == 2 and "two grouping factors" in (bad.stdout + bad.stderr)
