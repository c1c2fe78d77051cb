"""End-to-end tests of ``sciatica-outcomes fit`` (real subprocess, real files, real store)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from lmm_golden import REFERENCE
from tolerances import GOLDEN_DF, GOLDEN_ESTIMATE, GOLDEN_LOGLIK, GOLDEN_SE, rel
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import generate_cohort

CLI = [sys.executable, "-m", "sciatica_outcomes.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=300)


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command in-process (same code path, without paying the interpreter start-up again)."""
    res = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)


def test_fit_csv_json_matches_r(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    r = run(
        "fit",
        "--data",
        str(REFERENCE / "factor_groups.csv"),
        "--formula",
        "y ~ week * group + sex + (week | patient)",
        "--reference",
        "group=strength",
        "--emmeans",
        "group|week=0,12,26",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "Fixed effects" in r.stdout
    got = json.loads(out.read_text())
    expected = json.loads((REFERENCE / "factor_interaction.json").read_text())
    for key in (
        "fixed_effects",
        "random_effects",
        "sigma",
        "loglik",
        "aic",
        "bic",
        "reml",
        "n_obs",
        "n_groups",
    ):
        assert key in got
    assert [f["term"] for f in got["fixed_effects"]] == expected["fixed"]["term"]
    est = np.array([f["estimate"] for f in got["fixed_effects"]])
    assert rel(est, expected["fixed"]["estimate"], expected["fixed"]["se"]) < GOLDEN_ESTIMATE
    assert abs(got["loglik"] - expected["loglik"]) < GOLDEN_LOGLIK
    assert got["converged"] is True and got["reml"] is True
    assert len(got["emmeans"]) == 9
    table = expected["emmeans"]["table"]
    emm = [e["emmean"] for e in got["emmeans"]]
    assert rel(emm, [e["emmean"] for e in table], [e["SE"] for e in table]) < GOLDEN_ESTIMATE


def test_fit_ml_parquet(tmp_path: Path) -> None:
    data = tmp_path / "b.parquet"
    pl.read_csv(REFERENCE / "balanced.csv").write_parquet(data)
    r = invoke(
        "fit",
        "--data",
        str(data),
        "--formula",
        "y ~ week * adherence + (week | patient)",
        "--ml",
        "--quiet",
        "--json",
        str(tmp_path / "o.json"),
    )
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "o.json").read_text())
    expected = json.loads((REFERENCE / "balanced_ml.json").read_text())
    assert got["reml"] is False
    assert abs(got["loglik"] - expected["loglik"]) < GOLDEN_LOGLIK


def test_fit_from_store_standard_model(tmp_path: Path) -> None:
    cohort = generate_cohort(n_patients=250, n_clinics=4, seed=12)
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        for name, frame in cohort.tables.items():
            store.write(name, frame, source="synthetic cohort")
    out = tmp_path / "fit.json"
    r = run("fit", "--db", str(db), "--outcome", "odi", "--emmeans", "week=0,6,12,26", "--json", str(out))
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["formula"] == "odi ~ week * adherence_overall + age + (1 | clinic_id) + (week | episode_id)"
    assert got["n_groups"]["clinic_id"] <= 4
    week = next(f for f in got["fixed_effects"] if f["term"] == "week")
    assert week["estimate"] < 0  # ODI improves over the program
    bad = invoke("fit", "--db", str(db), "--outcome", "nonsense")
    assert bad.returncode == 2 and "not in the analysis frame" in bad.stderr


def test_fit_bad_arguments_exit_2(tmp_path: Path) -> None:
    r = invoke("fit", "--data", str(tmp_path / "none.csv"), "--formula", "y ~ week + (1 | patient)")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = invoke("fit", "--data", str(REFERENCE / "balanced.csv"), "--formula", "y ~ week + (1 | nope)")
    assert r.returncode == 2 and "nope" in r.stderr
    r = invoke("fit", "--formula", "y ~ week + (1 | patient)")
    assert r.returncode == 2 and "exactly one of --data" in r.stderr
    r = invoke(
        "fit",
        "--data",
        str(REFERENCE / "balanced.csv"),
        "--formula",
        "y ~ week + (1|patient)",
        "--reference",
        "x",
    )
    assert r.returncode == 2 and "COLUMN=LEVEL" in r.stderr
    (tmp_path / "f.txt").write_text("a")
    r = invoke("fit", "--data", str(tmp_path / "f.txt"), "--formula", "y ~ week + (1 | patient)")
    assert r.returncode == 2 and ".csv or .parquet" in r.stderr


def test_fit_ddf_kenward_roger_json_matches_pbkrtest(tmp_path: Path) -> None:
    """``fit --ddf kenward-roger --json``: rows per coefficient, lmerTest's KR estimate, se, df, t, p."""
    out = tmp_path / "kr.json"
    data = ["--data", str(REFERENCE / "unbalanced_odi.csv")]
    formula = ["--formula", "y ~ week * adherence + age + (week | patient)"]
    r = run("fit", *data, *formula, "--ddf", "kenward-roger", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "Kenward-Roger" in r.stdout
    got = json.loads(out.read_text())
    assert got["ddf_method"] == "kenward-roger"
    expected = json.loads((REFERENCE / "kr_reference.json").read_text())["unbalanced_missing"]["fixed"]
    rows = got["fixed_effects"]
    assert [row["term"] for row in rows] == expected["term"]
    for key in ("estimate", "se", "df", "t", "p"):
        floor = np.asarray(expected["se"]) if key == "estimate" else (1.0 if key == "t" else 1e-300)
        tol = GOLDEN_ESTIMATE if key == "estimate" else (GOLDEN_DF if key == "p" else GOLDEN_SE)
        assert rel([row[key] for row in rows], expected[key], floor) < tol, key
    sat = tmp_path / "sat.json"
    assert invoke("fit", *data, *formula, "--quiet", "--json", str(sat)).returncode == 0
    assert json.loads(sat.read_text())["ddf_method"] == "satterthwaite"


def test_fit_ddf_kenward_roger_refusals_are_one_sentence() -> None:
    data = str(REFERENCE / "nested_clinic.csv")
    nested = "y ~ week * adherence + age + (1 | clinic) + (week | patient)"
    for extra in (
        ["--ml"],
        ["--model", "mmrm", "--subject", "patient", "--visit", "week", "--ml"],
    ):
        r = invoke("fit", "--data", data, "--formula", nested, "--ddf", "kenward-roger", *extra)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "satterthwaite" in lines[0], r.stderr
    r = invoke("fit", "--data", data, "--formula", nested, "--ddf", "kr")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_fit_mmrm_ddf_kenward_roger_names_the_method(tmp_path: Path) -> None:
    out = tmp_path / "mmrm.json"
    fev = tmp_path / "fev.csv"  # R's NA written as empty cells
    pl.read_csv(REFERENCE.parent / "mmrm" / "fev_data.csv", null_values="NA").write_csv(fev)
    model = ["--model", "mmrm", "--subject", "USUBJID", "--visit", "AVISIT", "--covariance", "cs"]
    formula = ["--formula", "FEV1 ~ ARMCD + AVISIT"]
    r = invoke(
        "fit", "--data", str(fev), *formula, *model, "--ddf", "kenward-roger", "--quiet", "--json", str(out)
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(out.read_text())
    assert got["ddf_method"] == "kenward-roger"
    assert {"term", "estimate", "se", "df", "t", "p"} <= set(got["fixed_effects"][0])


def _fixed(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    fe = json.loads(path.read_text(encoding="utf-8"))["fixed_effects"]
    return [r["term"] for r in fe], np.array([r["estimate"] for r in fe]), np.array([r["se"] for r in fe])


def test_fit_engine_duckdb_equals_memory_on_parquet_directory_glob_and_table(tmp_path: Path) -> None:
    formula = "y ~ week * adherence + age + (1 | clinic) + (week | patient)"
    frame = pl.read_csv(REFERENCE / "nested_clinic.csv")
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, part in enumerate(frame.partition_by("clinic")):
        part.write_parquet(shards / f"p{i}.parquet")
    db = tmp_path / "obs.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("f", frame.to_arrow())
        con.execute("CREATE TABLE visits AS SELECT * FROM f")
    base = tmp_path / "memory.json"
    r = invoke(
        "fit", "--data", str(REFERENCE / "nested_clinic.csv"), "--formula", formula, "--json", str(base)
    )
    assert r.returncode == 0, r.stderr
    terms, est, se = _fixed(base)
    runs = {
        "dir": ("--data", str(shards), "--engine", "duckdb"),
        "glob": ("--data", str(shards / "*.parquet"), "--engine", "duckdb"),
        "glob_memory": ("--data", str(shards / "*.parquet")),
        "table": ("--db", str(db), "--table", "visits", "--engine", "duckdb"),
        "table_memory": ("--db", str(db), "--table", "visits"),
    }
    for name, args in runs.items():
        out = tmp_path / f"{name}.json"
        r = invoke("fit", *args, "--formula", formula, "--json", str(out), "--quiet")
        assert r.returncode == 0, (name, r.stderr)
        t2, e2, s2 = _fixed(out)
        assert t2 == terms
        assert rel(e2, est, floor=se) < 1e-10 and rel(s2, se) < 1e-10, name
        engine = json.loads(out.read_text(encoding="utf-8")).get("engine")
        assert engine == ("duckdb" if "--engine" in args else None), name


def test_fit_engine_duckdb_refusals_exit_2(tmp_path: Path) -> None:
    data = str(REFERENCE / "balanced.csv")
    f = "y ~ week + (1 | patient)"
    mmrm = ("--formula", "y ~ week", "--model", "mmrm", "--subject", "patient", "--visit", "week")
    cases = [
        (("--data", data, "--formula", "y ~ week", "--model", "mmrm"), "needs --subject and --visit"),
        (("--data", data, *mmrm, "--vcov", "empirical"), "residual cross products"),
        (("--data", data), "needs --formula"),
        (("--db", str(tmp_path / "x.duckdb"), "--formula", f), "needs --table"),
        (("--data", str(tmp_path / "none.parquet"), "--formula", f), "does not exist"),
        (("--data", data, "--formula", "y ~ poly(week, 2) + (1 | patient)"), "raw = TRUE"),
    ]
    for args, match in cases:
        r = invoke("fit", *args, "--engine", "duckdb")
        assert r.returncode == 2 and match in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = invoke("fit", "--data", data, "--table", "t", "--formula", f)
    assert r.returncode == 2 and "--table applies to --db" in r.stderr
