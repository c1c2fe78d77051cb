"""``sciatica-outcomes work-status``: the work-status GLMM end to end (tables in, JSON out, audience)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.models.work import work_status_summary
from sciatica_outcomes.reports.privacy import SUPPRESSED, rule_for
from sciatica_outcomes.reports.work import shares_for_audience
from sciatica_outcomes.synth import Cohort, generate_cohort, write_cohort


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(n_patients=300, seed=4)


@pytest.fixture(scope="module")
def table_dir(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables")
    write_cohort(cohort, out, fmt="parquet")
    return out


def test_json_is_the_model_under_the_audience_rule(cohort: Cohort, table_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ws.json"
    res = CliRunner().invoke(
        app, ["work-status", "--tables", str(table_dir), "--no-clinics", "--json", str(out)]
    )
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    assert got["status"] == "estimated" and got["diagnostics"]["converged"]
    assert got["clinic_note"] == "clinics not modelled (by request)"
    assert got["audience"]["audience"] == "network"
    # the same numbers as the Python API on the same tables
    _, _, model = work_status_summary(cohort.tables, clinics=False)
    assert [r["odds_ratio"] for r in got["odds_ratios"]] == pytest.approx(
        model.odds_ratios["odds_ratio"].to_list(), rel=1e-6
    )
    assert got["n_episodes"] == f"{model.n_episodes:,}"
    # a visit whose counts are small shows neither its count nor its observed share
    for row in got["shares"]:
        if row["n_assessments"] == SUPPRESSED:
            assert row["observed_share"] is None and row["predicted_share"] is not None
        else:
            n = int(row["n_assessments"])
            at = round(row["observed_share"] * n)
            assert n > 10 and at > 10 and n - at > 10
    assert "Odds ratios of being at work" in res.output and "conditional on the patient" in res.output


def test_shares_withhold_small_counts(cohort: Cohort) -> None:
    _, _, model = work_status_summary(cohort.tables, clinics=False)
    s = model.shares
    n = s["n_assessments"].to_list()
    assert all(v > 0 for v in n)
    # with a threshold above every visit's count, every count and observed share is withheld
    public = shares_for_audience(model, rule_for("public", max(n)))
    assert (public["n_assessments"] == SUPPRESSED).all() and public["observed_share"].is_null().all()
    assert public["predicted_share"].to_list() == s["predicted_share"].to_list()
    # withheld exactly where the assessments, those at work or those off work are 1 to 10
    net = shares_for_audience(model, rule_for("network"))
    at = [round(p * k) for p, k in zip(s["observed_share"].to_list(), n, strict=True)]
    small = [any(1 <= c <= 10 for c in (k, a, k - a)) for k, a in zip(n, at, strict=True)]
    assert (net["n_assessments"] == SUPPRESSED).to_list() == small
    assert not math.isnan(net["predicted_share"].sum())


@pytest.mark.parametrize(
    ("drop", "message"),
    [("work", "no work.csv"), ("sessions", "no sessions.csv")],
)
def test_missing_tables_exit_2_with_a_sentence(
    cohort: Cohort, tmp_path: Path, drop: str, message: str
) -> None:
    paths = write_cohort(cohort, tmp_path / "t")
    paths[drop].unlink()
    res = CliRunner().invoke(app, ["work-status", "--tables", str(tmp_path / "t")])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_other_user_errors_exit_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["work-status", "--tables", str(tmp_path / "none")])
    assert res.exit_code == 2 and "is not a directory" in res.output
    res = CliRunner().invoke(app, ["work-status", "--tables", str(tmp_path), "--nagq", "0"])
    assert res.exit_code == 2 and "--nagq must be a whole number from 1 to 25" in res.output
    empty = tmp_path / "e"
    empty.mkdir()
    pl.DataFrame({"episode_id": ["EP1"]}).write_csv(empty / "episodes.csv")
    res = CliRunner().invoke(app, ["work-status", "--tables", str(empty)])
    assert (
        res.exit_code == 2
        and "work-status model needs the episodes, work, measures and sessions" in res.output
    )
