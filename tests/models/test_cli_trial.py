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
    shown = [r["n"] for r in payload["rows"]]
    if "*" in shown:
        assert payload["diagnostics"]["rows_used"] == "*"
    else:
        assert sum(int(n) for n in shown) == payload["diagnostics"]["rows_used"]
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
    o_minus_e = [float(r["o_minus_e"]) for r in rows if r["o_minus_e"]]
    assert any(v < 0 for v in o_minus_e)
    negative = next(r["o_minus_e"] for r in rows if r["o_minus_e"] and float(r["o_minus_e"]) < 0)
    assert f",{negative}," in text or f",{negative}\n" in text
    assert f'"{negative}"' not in text


def test_compare_clinics_and_responders_publish_nothing_of_a_withheld_unit(tmp_path: Path) -> None:
    # 4 clinics of 300 patients: the smallest has a handful of episodes with a 12-week ODI
    cohort = tmp_path / "cohort"
    write_cohort(generate_cohort(n_patients=300, n_clinics=4, seed=3), cohort)
    js = tmp_path / "cmp.json"
    res = runner.invoke(app, ["compare-clinics", "--tables", str(cohort), "--out", str(js), "--quiet"])
    assert res.exit_code == 0, res.output
    payload = json.loads(js.read_text())
    rows = payload["rows"]
    withheld = [r for r in rows if r["n"] == "*"]
    shown = [r for r in rows if r["n"] != "*"]
    assert len(withheld) >= 2 and shown  # the small clinic and its complement
    assert rows == shown + withheld  # withheld units come last, by code
    assert [r["provider"] for r in withheld] == sorted(r["provider"] for r in withheld)
    for r in withheld:
        assert {k for k, v in r.items() if v is not None} == {"provider", "n"}
    assert sorted(r["rank_shrunken"] for r in shown) == list(range(1, len(shown) + 1))
    assert payload["diagnostics"]["rows_used"] == "*" and payload["audience"]["audience"] == "network"
    # a threshold of 30 withholds the 24 of the second-smallest clinic as well, and a complement with it
    res = runner.invoke(
        app,
        [
            "compare-clinics",
            "--tables",
            str(cohort),
            "--out",
            str(js),
            "--quiet",
            "--suppress-threshold",
            "30",
        ],
    )
    assert res.exit_code == 0, res.output
    loose = json.loads(js.read_text())
    assert len([r for r in loose["rows"] if r["n"] == "*"]) > len(withheld)
    # internal is one clinic's own: refused for several clinics, with the fix in the message
    refused = runner.invoke(app, ["compare-clinics", "--tables", str(cohort), "--audience", "internal"])
    assert refused.exit_code == 2 and "--audience network" in refused.output
    out = tmp_path / "resp.csv"
    res = runner.invoke(
        app,
        [
            "responders",
            "--tables",
            str(cohort),
            "--by",
            "clinic_id",
            "--no-model",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    resp = pl.read_csv(out, infer_schema=False)
    hidden = resp.filter(pl.any_horizontal(pl.col("n_determined", "n_responders") == "*"))
    assert (
        hidden.height
        and hidden.select("share", "ci_low", "ci_high").null_count().row(0) == (hidden.height,) * 3
    )
    for col in ("n_assessed", "n_determined", "n_undetermined", "n_responders"):
        values = [int(v) for v in resp[col].drop_nulls().to_list() if v != "*"]
        assert not [v for v in values if 1 <= v <= 10], col


def test_an_internal_responder_share_of_one_patient_is_not_shown() -> None:
    # a therapist with one assessed episode: the share (0 or 1) and its interval are that patient's call
    from sciatica_outcomes.reports.cli_compare import _withhold_responders  # noqa: PLC0415
    from sciatica_outcomes.reports.privacy import rule_for  # noqa: PLC0415

    res = pl.DataFrame(
        {
            "therapist_id": ["T1", "T2"],
            "n_assessed": [14, 1],
            "n_determined": [14, 1],
            "n_undetermined": [0, 0],
            "n_responders": [9, 1],
            "share": [9 / 14, 1.0],
            "ci_low": [0.39, 0.21],
            "ci_high": [0.84, 1.0],
        }
    )
    shown = _withhold_responders(res, rule_for("internal"))
    assert shown["n_assessed"].to_list() == ["14", "1"]  # the clinic's own counts stay exact
    assert shown["share"].to_list() == [9 / 14, None] and shown["ci_low"].to_list() == [0.39, None]
