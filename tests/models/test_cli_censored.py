"""``fit --censored-at``: the censored growth model end to end (file in, JSON out, messages)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.models.censored import CensoredGrowthModel
from sciatica_outcomes.models.cli_censored import censoring_limit


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    res = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(21)
    n = 60
    g = np.repeat(np.arange(n), 4)
    w = np.tile([0.0, 6.0, 12.0, 26.0], n)
    y = np.exp(2.2 + 0.04 * w + rng.normal(size=n)[g] * 0.4 + rng.normal(size=w.size) * 0.3)
    frame = pl.DataFrame({"patient": g, "week": w, "walk": np.minimum(y, 30.0), "cap": np.full(w.size, 30.0)})
    path = tmp_path_factory.mktemp("censored") / "walk.csv"
    frame.with_columns(log_cap=pl.col("cap").log()).write_csv(path)
    return path


def test_json_holds_estimates_se_loglik_and_the_quadrature(capped: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    r = invoke(
        "fit", "--data", str(capped), "--formula", "log(walk) ~ week + (1 | patient)",
        "--censored-at", "log_cap", "--nagq", "7", "--json", str(out), "--emmeans", "week=0,26",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "at the cap" in r.stdout and "quadrature error" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["model"] == "censored" and doc["quadrature"]["nagq"] == 7
    assert doc["approximation"] == "adaptive Gauss-Hermite (nAGQ = 7)"
    assert doc["censoring"]["n_right"] > 0
    direct = CensoredGrowthModel("log(walk) ~ week + (1 | patient)", upper="log_cap", nagq=7).fit(
        pl.read_csv(capped)
    )
    assert doc["loglik"] == pytest.approx(direct.result_.loglik, abs=1e-9)
    fe = {row["term"]: row for row in doc["fixed_effects"]}
    assert fe["week"]["estimate"] == pytest.approx(float(direct.beta_[1]), rel=1e-12)
    assert fe["week"]["se"] > 0 and fe["week"]["z"] == fe["week"]["t"]
    assert [m["week"] for m in doc["latent_means"]] == [0.0, 26.0]


def test_a_number_is_a_constant_cap_with_five_nodes_by_default(capped: Path, tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    r = invoke(
        "fit", "--data", str(capped), "--formula", "walk ~ week + (1 | patient)", "--censored-at", "30",
        "--json", str(out), "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert doc["quadrature"]["nagq"] == 5 and doc["censoring"]["n_right"] > 0
    assert (
        censoring_limit("30") == 30.0 and censoring_limit("cap") == "cap" and censoring_limit("inf") == "inf"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--censored-at", "no_such"], "upper column 'no_such' is not in the data"),
        (["--censored-at", "30", "--family", "poisson"], "drop --model, --ml"),
        (["--censored-at", "30", "--nagq", "0"], "nagq must be an integer from 1 to 50"),
        (["--nagq", "5"], "add --family or --censored-at"),
    ],
)
def test_user_errors_exit_2_with_a_sentence(capped: Path, extra: list[str], message: str) -> None:
    r = invoke("fit", "--data", str(capped), "--formula", "walk ~ week + (1 | patient)", *extra)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
