"""The researcher's cohort analysis notebook, executed for real on a synthetic store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.reports import cohort

SECTIONS = (
    "Table 1: baseline characteristics by adherence group",
    "Individual trajectories",
    "Shape of improvement over time",
    "Growth model and dose-response",
    "Marginal means by adherence group",
    "Sensitivity analysis",
    "Provenance",
)
TABLES = {
    "table1",
    "model_comparison",
    "fixed_effects",
    "emmeans",
    "emmeans_contrasts",
    "sensitivity",
    "mmrm_vs_growth",
    "mmrm_fixed_effects",
}


@pytest.fixture(scope="module")
def rendered(report_store: dict[str, Path]) -> Path:
    out = report_store["root"] / "cohort-report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sciatica_outcomes.cli",
            "report",
            "cohort",
            "--db",
            str(report_store["db"]),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_sections_figures_and_exported_tables(rendered: Path) -> None:
    page = (rendered / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert re.search(rf"<h2[^>]*>{re.escape(section)}", page), section
    assert {p.name for p in (rendered / "figures").glob("*.png")} == {"spaghetti.png", "dose_response.png"}
    for name in TABLES:
        assert (rendered / "tables" / f"{name}.csv").is_file(), name
        tex = (rendered / "tables" / f"{name}.tex").read_text(encoding="utf-8")
        assert tex.startswith("\\begin{table}") and "\\toprule" in tex and "\\bottomrule" in tex
    assert "Traceback" not in page and "failed to compute" not in page


def test_model_comparison_prefers_a_curved_shape(rendered: Path) -> None:
    """The synthetic cohort improves along a plateauing curve: every curved shape beats a straight line."""
    comp = pl.read_csv(rendered / "tables" / "model_comparison.csv")
    aic = dict(zip(comp["shape"], comp["AIC"], strict=True))
    assert all(aic[s] < aic["linear"] for s in aic if s != "linear")
    assert comp["converged"].all()


def test_mmrm_and_growth_model_agree_on_the_adherence_contrast(rendered: Path) -> None:
    both = pl.read_csv(rendered / "tables" / "mmrm_vs_growth.csv")
    assert both["week"].to_list() == [6, 12, 26]
    gap = (pl.col("growth_model") - pl.col("mmrm")).abs()
    ok = both.select((gap < 2 * pl.max_horizontal("growth_se", "mmrm_se")).all()).item()
    assert ok


def test_provenance_lists_every_model(rendered: Path) -> None:
    prov = json.loads((rendered / "provenance.json").read_text(encoding="utf-8"))
    purposes = {m["purpose"] for m in prov["models"]}
    assert {
        "dose-response",
        "marginal means",
        "sensitivity: all episodes",
        "sensitivity: completers only",
    } <= purposes
    assert len(prov["data_sha256"]) == 6 and prov["outcome"] == "odi"


def test_smd_against_hand_computation() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([2.0, 3.0, 4.0, 5.0, np.nan])
    # means 2.5 and 3.5, both sample variances 5/3: SMD = -1 / sqrt(5/3)
    assert cohort.smd(a, b) == pytest.approx(-1 / np.sqrt(5 / 3))
    pa, pb = np.array([1.0, 1, 0, 0]), np.array([1.0, 0, 0, 0])
    assert cohort.smd(pa, pb, binary=True) == pytest.approx(0.25 / np.sqrt((0.25 + 0.1875) / 2))
    assert np.isnan(cohort.smd(np.array([]), b))


def test_latex_escapes_and_formats(tmp_path: Path) -> None:
    frame = pl.DataFrame({"term": ["week:adherence_overall", "50% & more"], "estimate": [-1.23456, None]})
    tex = cohort.to_latex(frame, tmp_path / "t.tex", "Effects of 100%", "tab:x", digits=2).read_text(
        encoding="utf-8"
    )
    assert r"week:adherence\_overall & -1.23 \\" in tex
    assert r"50\% \& more & -- \\" in tex and r"\caption{Effects of 100\%}" in tex


def _episodes(
    sex_high: list[str], sex_low: list[str], side_high: list[str], side_low: list[str]
) -> pl.DataFrame:
    n_h, n_l = len(sex_high), len(sex_low)
    rng = np.random.default_rng(5)
    return pl.DataFrame(
        {
            "adherence_group": ["high"] * n_h + ["low"] * n_l,
            "sex": sex_high + sex_low,
            "affected_side": side_high + side_low,
            "age_at_start": rng.normal(50, 10, n_h + n_l),
        }
    )


def test_table_one_leaves_no_category_to_subtraction_and_no_smd_from_withheld_cells() -> None:
    from sciatica_outcomes.config import ClinicalConfig  # noqa: PLC0415

    # side, high group: 12 right, 5 left, 1 bilateral (n 18); low group: 9 right, 13 left, 0 bilateral
    ep = _episodes(
        ["F"] * 10 + ["M"] * 8,
        ["F"] * 14 + ["M"] * 8,
        ["right"] * 12 + ["left"] * 5 + ["bilateral"],
        ["right"] * 9 + ["left"] * 13,
    )
    t1 = cohort.table_one(cohort.CohortData(pl.DataFrame(), ep, ClinicalConfig()))
    rows = {r["characteristic"]: r for r in t1.iter_rows(named=True)}
    assert rows["episodes, n"]["high"] == "18" and rows["episodes, n"]["low"] == "22"
    high = [rows[f"affected side: {s}"]["high"] for s in ("bilateral", "left", "right")]
    # 1 and 5 are withheld; right (12) must go too, or 18 - 12 - 5 would give the bilateral 1 back
    assert high == ["*", "*", "*"]
    for r in t1.iter_rows(named=True):
        if "*" in (r["high"], r["low"]) and r["characteristic"] != "episodes, n":
            assert r["SMD"] == "*", r
    # sex: 10 women and 8 men in the high group are both withheld, and so is their SMD
    assert (rows["sex: F"]["high"], rows["sex: M"]["high"], rows["sex: F"]["SMD"]) == ("*", "*", "*")
    assert rows["age, years"]["SMD"] != "*"
    # a group of 1-10 withholds both group sizes (the cohort total is printed elsewhere)
    few = _episodes(["F"] * 8, ["F"] * 20 + ["M"] * 15, ["left"] * 8, ["left"] * 20 + ["right"] * 15)
    t1 = cohort.table_one(cohort.CohortData(pl.DataFrame(), few, ClinicalConfig()))
    assert t1.row(0, named=True) == {"characteristic": "episodes, n", "high": "*", "low": "*", "SMD": ""}


def test_latex_of_a_report_table_is_written_after_suppression(tmp_path: Path) -> None:
    from sciatica_outcomes.reports.display import ReportWriter  # noqa: PLC0415

    w = ReportWriter(tmp_path)
    frame = pl.DataFrame(
        {"analysis": ["all episodes", "completers only"], "episodes": [40, 8], "change": [-9.5, -12.25]}
    )
    w.table(frame, "sensitivity", "Change", n_col="episodes", digits=2, latex=True)
    tex = (tmp_path / "tables" / "sensitivity.tex").read_text(encoding="utf-8")
    # 8 completers: withheld with their estimate; 40 as well (the column total would give 8 back)
    assert r"completers only & * & -- \\" in tex and r"all episodes & * & -9.5 \\" in tex
    assert "12.25" not in tex and " 8 " not in tex and "40" not in tex


def test_adherence_groups_follow_the_configured_cut(report_store: dict[str, Path]) -> None:
    default = cohort.load_cohort(report_store["db"]).episodes
    lower = cohort.load_cohort(report_store["db"], ClinicalConfig().replace(adherence_high_min=0.5)).episodes
    for episodes, cut in ((default, 0.8), (lower, 0.5)):
        observed = episodes.filter(pl.col("adherence").is_not_null())
        expected = observed.select(
            pl.when(pl.col("adherence") >= cut).then(pl.lit("high")).otherwise(pl.lit("low"))
        )
        assert observed["adherence_group"].to_list() == expected.to_series().to_list()
    assert (lower["adherence_group"] == "high").sum() > (default["adherence_group"] == "high").sum()
