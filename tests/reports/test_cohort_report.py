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
from sciatica_outcomes.errors import ReportParameterError
from sciatica_outcomes.ingest import ingest_paths
from sciatica_outcomes.reports import cohort
from sciatica_outcomes.reports.privacy import SUPPRESSED, rule_for
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.synth import generate_cohort, write_cohort

SECTIONS = (
    "Patient flow and missing data",
    "Table 1: baseline characteristics by adherence group",
    "Observed course over time",
    "Shape of improvement over time",
    "Growth model and dose-response",
    "Marginal means by adherence group",
    "Sensitivity analysis",
    "Work outcomes",
    "Models in this report",
    "Provenance",
)
FIGURES = {
    "flow",
    "spaghetti",
    "dose_response",
    "diagnostics_residuals",
    "diagnostics_random_effects",
    "return_to_work",
    "work_status_by_visit",
}
TABLES = {
    "table1",
    "model_comparison",
    "fixed_effects",
    "emmeans",
    "emmeans_contrasts",
    "sensitivity",
    "mmrm_vs_growth",
    "mmrm_fixed_effects",
    "variance_components",
    "models",
    "missing_data",
    "return_to_work_at_risk",
    "was_fixed_effects",
    "was_change",
    "work_status_odds_ratios",
    "work_status_by_visit",
}


def _report(db: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sciatica_outcomes.cli", "report", "cohort", "--db", str(db)]
    return subprocess.run(
        [*command, "--out", str(out), *args], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def rendered(report_store: dict[str, Path]) -> Path:
    """The report for the default (network) audience."""
    out = report_store["root"] / "cohort-report"
    proc = _report(report_store["db"], out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def rendered_internal(report_store: dict[str, Path]) -> Path:
    out = report_store["root"] / "cohort-report-internal"
    proc = _report(report_store["db"], out, "--audience", "internal")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 synthetic episodes: below the minimum size of every report."""
    root = tmp_path_factory.mktemp("small-store")
    write_cohort(generate_cohort(n_patients=8, n_clinics=2, seed=3), root / "cohort")
    db = root / "small.duckdb"
    assert ingest_paths(root / "cohort", db).written
    return db


def _text(page: str) -> str:
    """The page without its embedded images (base64 could spell anything)."""
    return re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", page)


def test_a_store_below_the_minimum_size_is_refused(small_store: Path, tmp_path: Path) -> None:
    proc = _report(small_store, tmp_path / "r")
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "between 1 and 10 episodes with odi" in message and "needs at least 11" in message
    assert "Traceback" not in proc.stderr and " 8 " not in message
    assert not (tmp_path / "r" / "report.html").exists()


def test_the_minimum_size_follows_the_audiences_threshold(report_store: dict[str, Path]) -> None:
    params = {"db": str(report_store["db"]), "outcome": "odi", "config": "", "audience": "public"}
    cohort.validate_parameters({**params, "suppress_threshold": 699})
    with pytest.raises(ReportParameterError, match="needs at least 701"):
        cohort.validate_parameters({**params, "suppress_threshold": 700})
    assert cohort.minimum_episodes(rule_for("internal")) == 11
    assert cohort.minimum_episodes(rule_for("network")) == 11
    assert cohort.minimum_episodes(rule_for("network", threshold=20)) == 21


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--audience", "clinic"), "unknown audience 'clinic'"),
        (("--audience", "internal", "--suppress-threshold", "5"), "network and public audiences only"),
        (("--suppress-threshold", "0"), "must be 1 or more"),
    ],
)
def test_bad_audience_options_are_user_errors(
    report_store: dict[str, Path], tmp_path: Path, args: tuple[str, ...], expected: str
) -> None:
    proc = _report(report_store["db"], tmp_path / "r", *args)
    assert proc.returncode == 2 and expected in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def test_individual_trajectories_only_for_the_internal_audience(
    rendered: Path, rendered_internal: Path, report_store: dict[str, Path]
) -> None:
    figures = {
        audience: {f["name"]: f for f in json.loads((d / "provenance.json").read_text())["figures"]}
        for audience, d in (("network", rendered), ("internal", rendered_internal))
    }
    assert "randomly chosen episodes" in figures["internal"]["spaghetti"]["alt"]
    assert "randomly chosen" not in figures["network"]["spaghetti"]["alt"]
    network_page = (rendered / "report.html").read_text(encoding="utf-8")
    assert "drawn only for the internal audience" in network_page
    assert "Audience: network. Counts from 1 to 10 are withheld (shown as *)" in network_page
    internal_page = (rendered_internal / "report.html").read_text(encoding="utf-8")
    assert "shown exactly" in internal_page
    # no identifier of an episode, patient or therapist anywhere in either page or table
    ep = cohort.load_cohort(report_store["db"]).episodes
    ids = set(ep["episode_id"]) | set(ep["patient_id"]) | set(ep["therapist_id"])
    outputs = [network_page, internal_page] + [
        p.read_text(encoding="utf-8") for d in (rendered, rendered_internal) for p in (d / "tables").glob("*")
    ]
    found = {m for page in outputs for m in re.findall(r"\b(?:EP|PT|TH)\d{4,6}\b", _text(page))}
    assert not found & ids


def _frame(n_per_week: dict[float, int]) -> pl.DataFrame:
    weeks = [w for w, n in n_per_week.items() for _ in range(n)]
    return pl.DataFrame(
        {
            "episode_id": [f"e{i}" for i in range(len(weeks))],
            "week": weeks,
            "odi": np.linspace(10, 60, len(weeks)),
        }
    )


def test_observed_bins_keep_only_bins_above_the_threshold() -> None:
    frame = _frame({0.0: 30, 6.0: 11, 12.0: 10, 26.0: 15})
    network = cohort.observed_bins(frame, "odi", rule_for("network"))
    assert network["week"].to_list() == [0.0, 6.0, 26.0] and network["n"].to_list() == [30, 11, 15]
    # the internal audience sees exact counts but no mean of 10 or fewer assessments
    assert cohort.observed_bins(frame, "odi", rule_for("internal"))["week"].to_list() == [0.0, 6.0, 26.0]
    assert cohort.observed_bins(frame, "odi", rule_for("public", threshold=14))["week"].to_list() == [
        0.0,
        26.0,
    ]
    first = frame.filter(pl.col("week") == 0)["odi"]
    assert network["mean"][0] == pytest.approx(first.mean())
    assert network["q25"][0] == pytest.approx(first.quantile(0.25, "linear"))


def test_trajectory_sample_is_internal_only_and_carries_no_identifier() -> None:
    rng = np.random.default_rng(1)
    frame = pl.DataFrame(
        {
            "episode_id": np.repeat([f"EP{i:06d}" for i in range(60)], 3),
            "week": np.tile([0.0, 6.0, 12.0], 60),
            "odi": rng.uniform(0, 100, 180),
        }
    )
    for audience in ("network", "public"):
        assert cohort.trajectory_sample(frame, "odi", rule_for(audience)).is_empty()
    sample = cohort.trajectory_sample(frame, "odi", rule_for("internal"))
    assert sample.columns == ["line", "week", "odi"]
    assert sample["line"].n_unique() == cohort.TRAJECTORY_SAMPLE and sample.height == 3 * 40
    # every drawn point is one of the frame's assessments, whole episodes at a time
    assert sample.join(frame, on=["week", "odi"], how="anti").is_empty()
    assert (sample.group_by("line").len()["len"] == 3).all()
    few = frame.filter(pl.col("episode_id").is_in(["EP000001", "EP000002"]))
    assert cohort.trajectory_sample(few, "odi", rule_for("internal"))["line"].n_unique() == 2


def test_table_one_counts_follow_the_audience_rule() -> None:
    ep = _episodes(
        ["F"] * 20 + ["M"] * 15,
        ["F"] * 14 + ["M"] * 12,
        ["right"] * 29 + ["left"] * 5 + ["bilateral"],
        ["right"] * 9 + ["left"] * 17,
    )
    data = cohort.CohortData(pl.DataFrame(), ep, ClinicalConfig())
    internal = {
        r["characteristic"]: r
        for r in cohort.table_one(data, rule=rule_for("internal")).iter_rows(named=True)
    }
    assert (
        internal["affected side: bilateral"]["high"] == "1 (3%)" and internal["episodes, n"]["high"] == "35"
    )
    wide = {
        r["characteristic"]: r
        for r in cohort.table_one(data, rule=rule_for("network", threshold=12)).iter_rows(named=True)
    }
    # 12 men in the low group are shown under 1-10 and withheld under 1-12
    network = {r["characteristic"]: r for r in cohort.table_one(data).iter_rows(named=True)}
    assert network["sex: M"]["low"] == "12 (46%)" and wide["sex: M"]["low"] == "*"


def test_sections_figures_and_exported_tables(rendered: Path) -> None:
    page = (rendered / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert re.search(rf"<h2[^>]*>{re.escape(section)}", page), section
    assert {p.stem for p in (rendered / "figures").glob("*.png")} == FIGURES
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
    assert len(prov["data_sha256"]) == len(TABLE_SPECS) and prov["outcome"] == "odi"


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


def test_growth_formula_has_the_quarterly_models_random_part() -> None:
    assert cohort.growth_formula("odi", "week") == "odi ~ week + (week | episode_id)"
    assert (
        cohort.growth_formula(
            "odi", "week + pmax(week - 12, 0)", by="adherence_group", covariates=("age", "sex"), clinics=4
        )
        == "odi ~ (week + pmax(week - 12, 0)) * adherence_group + age + sex + (week | episode_id)"
        " + (1 | clinic_id)"
    )
    assert cohort.growth_formula("odi", "log1p(week)", by="g", clinics=2) == (
        "odi ~ log1p(week) * g + (week | episode_id) + (1 | clinic_id)"
    )


def test_every_model_result_prints_its_formula_with_the_clinic_random_effect(rendered: Path) -> None:
    comp = pl.read_csv(rendered / "tables" / "model_comparison.csv")
    assert comp["formula"].str.ends_with("(week | episode_id) + (1 | clinic_id)").all()
    prov = json.loads((rendered / "provenance.json").read_text(encoding="utf-8"))
    growth = [m for m in prov["models"] if m.get("model") not in ("MMRM", "GLMM")]
    # 8 growth models of the outcome and the Work Ability Score's
    assert len(growth) == 9 and all(m["formula"].endswith("+ (1 | clinic_id)") for m in growth)
    glmms = [m for m in prov["models"] if m.get("model") == "GLMM"]
    assert {m["purpose"] for m in glmms} == {"flare-ups by adherence group", "sensitivity: responders"}
    assert all(m["formula"].endswith("(1 | episode_id)") and m["converged"] for m in glmms)
    page = (rendered / "report.html").read_text(encoding="utf-8")
    captions = re.findall(r"<caption>(.*?)</caption>", page)
    by_name = dict(zip([t["name"] for t in prov["tables"]], captions, strict=True))
    formulas = {m["purpose"]: m["formula"] for m in prov["models"]}
    for table, purpose in (
        ("fixed_effects", "dose-response"),
        ("variance_components", "dose-response"),
        ("emmeans", "marginal means"),
        ("emmeans_contrasts", "marginal means"),
        ("sensitivity", "sensitivity: all episodes"),
        ("mmrm_fixed_effects", "sensitivity: MMRM"),
        ("was_fixed_effects", "Work Ability Score growth model"),
        ("was_change", "Work Ability Score growth model"),
    ):
        assert f"Model: {formulas[purpose]}" in by_name[table], table
    assert formulas["sensitivity: MMRM"].endswith("+ clinic_id")
    models = pl.read_csv(rendered / "tables" / "models.csv")
    assert models["formula"].to_list() == [m["formula"] for m in prov["models"]]


def test_marginal_means_come_from_the_model_printed_beside_them(
    rendered: Path, report_store: dict[str, Path]
) -> None:
    prov = json.loads((rendered / "provenance.json").read_text(encoding="utf-8"))
    formula = next(m["formula"] for m in prov["models"] if m["purpose"] == "marginal means")
    assert " + age + sex + " in formula  # adjusted as the dose-response model it is described with
    frame = cohort.model_frame(cohort.load_cohort(report_store["db"]), "odi")
    from sciatica_outcomes.models.lmm import GrowthModel  # noqa: PLC0415

    model = GrowthModel(formula).fit(frame.filter(pl.col("adherence_group").is_not_null()))
    expected = model.emmeans(["adherence_group"], at={"week": [0, 6, 12, 26]}, by="week").means
    shown = pl.read_csv(rendered / "tables" / "emmeans.csv")
    assert shown["emmean"].to_numpy() == pytest.approx(expected["emmean"].to_numpy(), rel=1e-9)


def _simulated(n_episodes: int = 90, small_clinic: int = 5, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    clinic = np.r_[np.repeat(["A", "B"], (n_episodes - small_clinic) // 2), ["C"] * small_clinic]
    clinic = np.r_[clinic, ["A"] * (n_episodes - clinic.size)]
    weeks = np.array([0.0, 6.0, 12.0, 26.0])
    ep = np.repeat(np.arange(n_episodes), weeks.size)
    week = np.tile(weeks, n_episodes)
    b0 = rng.normal(0, 8, n_episodes)[ep]
    b1 = rng.normal(0, 0.2, n_episodes)[ep]
    shift = pl.Series(clinic[ep]).replace_strict({"A": 2.0, "B": -2.0, "C": 0.0}).to_numpy()
    y = 45 + b0 + shift + (-0.8 + b1) * week + rng.normal(0, 4, ep.size)
    return pl.DataFrame(
        {"episode_id": [f"e{i}" for i in ep], "clinic_id": clinic[ep], "week": week, "odi": y}
    )


def test_qq_points_leave_out_single_extreme_values_outside_internal() -> None:
    v = np.random.default_rng(0).normal(size=100)
    s = np.sort(v)
    network = cohort.qq_points(v, rule_for("network"))
    # 11 values lie beyond each end of every drawn quantile
    assert network["sample"].min() >= s[10] and network["sample"].max() <= s[89]
    assert network["probability"].min() == pytest.approx(0.11)
    assert cohort.qq_points(v, rule_for("public", threshold=49)).is_empty()
    internal = cohort.qq_points(v, rule_for("internal"))
    assert internal.height == 100 and internal["sample"].min() < s[1]
    assert internal["theoretical"].to_numpy() == pytest.approx(
        __import__("scipy").stats.norm.ppf((np.arange(100) + 0.5) / 100)
    )


def test_model_diagnostics_pool_rows_and_hide_small_clinics_outside_internal() -> None:
    from sciatica_outcomes.models.lmm import GrowthModel  # noqa: PLC0415

    frame = _simulated()
    model = GrowthModel(cohort.growth_formula("odi", "week", clinics=3)).fit(frame)
    internal = cohort.model_diagnostics(model, frame, rule_for("internal"))
    assert not internal.binned and internal.residuals.height == frame.height == internal.n_rows
    fitted = model.predict(frame, include_random=True)["fit_conditional"].to_numpy()
    assert internal.residuals["residual"].to_numpy() == pytest.approx(frame["odi"].to_numpy() - fitted)
    assert internal.clinics is not None and internal.clinics.height == 3
    assert set(internal.qq) == {"residuals", "episode_id: (Intercept)", "episode_id: week"}
    network = cohort.model_diagnostics(model, frame, rule_for("network"))
    assert network.binned and network.residuals.height == 20
    assert (network.residuals["n"] > 10).all() and network.residuals["n"].sum() == frame.height
    assert network.residuals["residual"].mean() == pytest.approx(
        internal.residuals["residual"].mean(), abs=1.0
    )
    # clinic C has 5 episodes: its intercept is not drawn for the network audience, nor one more clinic's
    # (the total number of episodes minus the two drawn clinics' sizes would give 5 back)
    assert network.clinics is not None and network.clinics.height == 1
    wide = cohort.model_diagnostics(model, frame, rule_for("public", threshold=40))
    assert wide.residuals.height == min(20, frame.height // 41) and (wide.residuals["n"] > 40).all()


def _missing_case() -> cohort.CohortData:
    """Four episodes whose every visit is in a known missing-data category (windows of the default config)."""
    from datetime import date, timedelta  # noqa: PLC0415

    start = date(2026, 1, 1)
    late = date(2026, 7, 10) - timedelta(days=60)  # still open, 60 days in on the data date
    episodes = pl.DataFrame(
        {
            "episode_id": ["A", "B", "C", "D"],
            "start_date": [start, start, start, late],
            "end_date": [
                start + timedelta(days=190),
                start + timedelta(days=30),
                start + timedelta(40),
                None,
            ],
            "end_reason": ["completed", "dropped_out", "dropped_out", None],
        }
    )
    visits = [("A", 0, "w0"), ("A", 42, "w6"), ("A", 84, "w12"), ("A", 182, "w26"), ("B", 0, "w0")]
    visits += [("C", 1, "w0"), ("C", 20, None), ("D", 0, "w0"), ("D", 30, None)]
    starts = dict(zip(episodes["episode_id"], episodes["start_date"], strict=True))
    frame = pl.DataFrame(
        {
            "episode_id": [e for e, _, _ in visits],
            "assessed_on": [starts[e] + timedelta(days=d) for e, d, _ in visits],
            "visit": [v for _, _, v in visits],
            "odi": [40.0] * len(visits),
        }
    )
    return cohort.CohortData(frame, episodes, ClinicalConfig())


def test_missing_data_puts_every_episode_in_one_category_per_visit() -> None:
    counts = cohort.missing_data(_missing_case(), "odi")
    assert counts["visit"].to_list() == ["w0", "w6", "w12", "w26"]
    assert counts.select(cohort.MISSING_CATEGORIES).rows() == [
        (4, 0, 0, 0),
        (1, 2, 1, 0),  # A seen; B ended on day 30, before the window opens on day 35; C and D missed it
        (1, 0, 2, 1),  # D is 60 days in: the week-12 window (days 74-98) has not closed
        (1, 0, 2, 1),
    ]
    assert (counts["enrolled"] == 4).all()
    internal = cohort.missing_data_display(counts, rule_for("internal"))
    assert internal.row(1) == ("w6", 6, "1", "2", "1", "0", "33%")
    network = cohort.missing_data_display(counts, rule_for("network"))
    shown = network.select(cohort.MISSING_CATEGORIES).to_numpy()
    assert set(shown.ravel()) <= {"*", "0"} and set(network["observed of due"]) <= {"*", "-"}
    flow = cohort.follow_up_flow(_missing_case(), "odi")
    assert flow == [
        ("enrolled", 4),
        ("with baseline", 4),
        ("with follow-up at week 6", 1),
        ("with follow-up at week 12", 1),
        ("with follow-up at week 26", 1),
        ("completed the program", 1),
    ]


def test_parts_of_a_shown_total_and_the_sensitivity_rows_follow_the_rule() -> None:
    network, internal = rule_for("network"), rule_for("internal")
    assert cohort.shown_part(394, 700, network) == "394"
    assert cohort.shown_part(695, 700, network) == "*" and cohort.shown_part(5, 700, network) == "*"
    assert cohort.shown_part(5, 700, internal) == "5"
    rows = pl.DataFrame(
        {
            "analysis": ["all episodes", "completers only", "completers only"],
            "episodes": [700, 8, 8],
            "week": [12, 12, 26],
            "change": [-9.5, -12.0, -14.0],
        }
    )
    net = cohort.sensitivity_display(rows, 700, network)
    assert net["episodes"].to_list() == ["700", "*", "*"] and net["change"].to_list() == [-9.5, None, None]
    own = cohort.sensitivity_display(rows, 700, internal)
    # the internal audience sees the count, but no model estimate of 10 or fewer episodes
    assert own["episodes"].to_list() == ["700", "8", "8"] and own["change"].to_list() == [-9.5, None, None]


def test_flow_missing_data_and_the_caveats_are_in_the_report(rendered: Path) -> None:
    page = " ".join((rendered / "report.html").read_text(encoding="utf-8").split())
    missing = pl.read_csv(rendered / "tables" / "missing_data.csv", infer_schema=False)
    assert missing["visit"].to_list() == ["w0", "w6", "w12", "w26"]
    prov = json.loads((rendered / "provenance.json").read_text(encoding="utf-8"))
    flow_alt = next(f["alt"] for f in prov["figures"] if f["name"] == "flow")
    for visit, week, observed in missing.select("visit", "week", "observed").iter_rows():
        stage = "with baseline" if visit == "w0" else f"with follow-up at week {float(week):g}"
        assert f"{stage}: {observed}" in flow_alt
    assert "the adherence groups are defined after baseline" in page
    assert "associations with adherence, not effects of it" in page
    assert "This is <em>not</em> a test of missing at random" in page
    assert "lean on that assumption" not in page


def test_every_figure_is_also_written_as_svg_and_pdf(rendered: Path) -> None:
    figures = rendered / "figures"
    for name in FIGURES:
        svg = (figures / f"{name}.svg").read_text(encoding="utf-8")
        assert "<svg" in svg and "</svg>" in svg and "<dc:date>" not in svg, name
        pdf = (figures / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and b"/CreationDate" not in pdf, name
        assert b"/FontType 3" not in pdf and b"/Subtype /Type3" not in pdf, name  # TrueType, not Type 3
    prov = json.loads((rendered / "provenance.json").read_text(encoding="utf-8"))
    assert prov["vector_figures"]["flow"] == ["figures/flow.svg", "figures/flow.pdf"]
    assert set(prov["vector_figures"]) == FIGURES


def test_model_records_carry_no_withheld_count() -> None:
    from sciatica_outcomes.models.lmm import GrowthModel  # noqa: PLC0415

    frame = _simulated(n_episodes=2, small_clinic=0)  # 8 rows
    model = GrowthModel("odi ~ week + (1 | episode_id)").fit(frame)
    network = cohort.model_record(model, "test", rule_for("network"), note="x")
    assert network["n_obs"] == "*" and network["formula"] == "odi ~ week + (1 | episode_id)"
    assert network["note"] == "x" and network["purpose"] == "test" and network["reml"] is True
    internal = cohort.model_record(model, "test", rule_for("internal"))
    assert internal["n_obs"] == 8
    assert network["diagnostics"].keys() == internal["diagnostics"].keys()


def test_notebook_paths_from_notebooks_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    monkeypatch.delenv(cohort.DB_ENV, raising=False)
    monkeypatch.delenv(cohort.REPORTS_ENV, raising=False)
    db, out = cohort.notebook_paths(start=repo / "notebooks")
    assert (db, out) == (repo.resolve() / "data" / "outcomes.duckdb", repo.resolve() / "reports" / "cohort")
    # a relative store is taken from the top of the repository, not from notebooks/
    assert cohort.notebook_paths("mine.duckdb", start=repo / "notebooks")[0] == repo.resolve() / "mine.duckdb"
    monkeypatch.setenv(cohort.DB_ENV, str(tmp_path / "clinic.duckdb"))
    monkeypatch.setenv(cohort.REPORTS_ENV, str(tmp_path / "out"))
    db, out = cohort.notebook_paths(start=repo / "notebooks")
    assert (db, out) == ((tmp_path / "clinic.duckdb").resolve(), (tmp_path / "out").resolve() / "cohort")
    with pytest.raises(ReportParameterError, match="outside notebooks/"):
        cohort.notebook_paths(out_dir="notebooks/results", start=repo / "notebooks")


def test_the_committed_notebook_has_no_outputs() -> None:
    from sciatica_outcomes.reports.runner import find_notebook, notebook_parameters  # noqa: PLC0415

    path = find_notebook("cohort_analysis.ipynb")
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert notebook_parameters(path) == {
        "db": "",
        "outcome": "odi",
        "config": "",
        "audience": "network",
        "suppress_threshold": None,
        "out_dir": "",
    }


def test_the_notebook_runs_in_notebooks_with_its_defaults_and_writes_nothing_there(
    report_store: dict[str, Path], tmp_path: Path
) -> None:
    """As a researcher opening it in Jupyter: working directory notebooks/, the store from the environment."""
    import os  # noqa: PLC0415

    from sciatica_outcomes.reports import runner  # noqa: PLC0415

    source = runner.find_notebook("cohort_analysis.ipynb")
    folder = source.parent
    before = sorted(p.name for p in folder.iterdir())
    runner._write_kernelspec(tmp_path / "kernel")
    env = {
        **os.environ,
        "JUPYTER_PATH": str(tmp_path / "kernel"),
        "MPLBACKEND": "Agg",
        cohort.DB_ENV: str(report_store["db"]),
        cohort.REPORTS_ENV: str(tmp_path / "reports"),
    }
    command = [sys.executable, "-m", "papermill", str(source), str(tmp_path / "run.ipynb")]
    proc = subprocess.run(
        [*command, "--kernel", runner.KERNEL_NAME, "--cwd", str(folder), "--no-progress-bar"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "reports" / "cohort"
    assert (out / "tables" / "table1.csv").is_file() and (out / "figures" / "flow.svg").is_file()
    assert (out / "report_manifest.json").is_file()
    assert sorted(p.name for p in folder.iterdir()) == before


def test_small_adherence_groups_get_no_model_based_means() -> None:
    frame = pl.DataFrame(
        {
            "episode_id": [f"e{i}" for i in range(40)] + ["e0"],
            "adherence_group": ["high"] * 29 + ["low"] * 11 + ["high"],
        }
    )
    assert cohort.small_groups(frame, rule_for("network")) == []
    assert cohort.small_groups(frame, rule_for("public", threshold=11)) == ["low"]
    assert cohort.small_groups(frame.filter(pl.col("adherence_group") == "high"), rule_for("internal")) == [
        "high"
    ]
    # the internal audience sees exact counts, but no marginal mean of 10 or fewer episodes
    assert cohort.small_groups(frame.head(35), rule_for("internal")) == ["low"]


def test_naive_vs_censored_for_a_capped_test(report_store: dict[str, Path]) -> None:
    data = cohort.load_cohort(report_store["db"])
    frame = cohort.model_frame(data, "walk_tolerance_min")
    table, naive, censored = cohort.censored_sensitivity(frame, "walk_tolerance_min", "week", 4)
    assert table["week"].to_list() == [6.0, 12.0, 26.0]
    assert (
        censored.formula
        == naive.formula
        == "log(walk_tolerance_min) ~ week + clinic_id + (week | episode_id)"
    )
    # the tests at the cap, counted independently
    near26 = frame.filter((pl.col("week") - 26.0).abs() <= 1.0)
    assert table["at_cap"][2] == near26["walk_tolerance_min_censored"].sum() > 0
    assert table["n"][2] == near26.height
    # a test at the cap is a lower bound: the censored model sees more improvement than the naive one
    assert (table["censored_change"] > table["naive_change"]).all()
    assert (table["naive_low"] < table["naive_change"]).all() and (
        table["censored_high"] > table["censored_change"]
    ).all()
    record = cohort.model_record(censored, "sensitivity", rule_for("network"))
    assert (
        record["model"] == "censored"
        and record["reml"] is False
        and record["diagnostics"]["n_censored_right"] > 0
    )
    with pytest.raises(ReportParameterError, match="'odi' is not a capped test"):
        cohort.censored_sensitivity(cohort.model_frame(data, "odi"), "odi", "week", 4)


# --- work outcomes (issue 17) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work_data(report_store: dict[str, Path]) -> cohort.CohortData:
    return cohort.load_cohort(report_store["db"])


@pytest.fixture(scope="module")
def work_truth(report_store: dict[str, Path]) -> dict[str, float]:
    truth = json.loads((report_store["cohort"] / "truth.json").read_text(encoding="utf-8"))
    expected: dict[str, float] = truth["work"]["expected"]
    return expected


def test_return_to_work_recovers_the_truth_and_its_at_risk_table_tells_no_small_count(
    work_data: cohort.CohortData, work_truth: dict[str, float]
) -> None:
    rule = rule_for("network")
    res = cohort.return_to_work_analysis(work_data, rule)
    s = res.summary
    assert res.n > 100 and res.n_shown == f"{res.n:,}"
    assert s.share is not None and s.ci_low is not None and s.ci_high is not None
    truth = work_truth["share_back_by_week12_off_work_at_enrolment"]
    se = (s.ci_high - s.share if truth > s.share else s.share - s.ci_low) / 1.959964
    assert abs(s.share - truth) <= 2 * se, (s.share, truth, se)
    median = work_truth["median_return_to_work_days"] / 7.0
    assert s.median_low is not None and s.median_high is not None
    assert s.median_low <= median <= s.median_high
    # at-risk table: every shown number, and every difference of consecutive shown numbers, is 0 or > 10
    tab = res.at_risk
    still = np.array([int(v.replace(",", "")) for v in tab["still_off_and_followed"]])
    back = np.array([int(v.replace(",", "")) for v in tab["returned_before"]])
    censored = res.n - still - back
    for series in (still, back, censored, np.diff(still), np.diff(back), np.diff(censored)):
        assert not ((np.abs(series) >= 1) & (np.abs(series) <= 10)).any(), series
    # the internal audience sees every candidate week
    full = cohort.return_to_work_analysis(work_data, rule_for("internal")).at_risk
    assert full.height > tab.height and tab["week"].is_in(full["week"].implode()).all()


def test_table_one_has_work_rows_with_catalog_labels_and_no_small_count(work_data: cohort.CohortData) -> None:
    t1 = cohort.table_one(work_data, rule=rule_for("network"))
    work = t1.filter(pl.col("characteristic").str.contains("(?i)work|employ|WPAI"))
    labels = work["characteristic"].to_list()
    assert "employment at enrolment: Self-employed" in labels
    assert (
        "work status at enrolment: Off work because of back or leg pain (full or partial sick leave)"
        in labels
    )
    assert {"baseline Work Ability Score, 0-10", "baseline WPAI activity impairment, %"} <= set(labels)
    assert not any("_" in lab.split(": ")[-1] for lab in labels), "raw codes in Table 1"
    for lv in ("high", "low"):
        for text in work[lv].to_list():
            count = re.match(r"^(\d+) \(", text)
            assert count is None or not 1 <= int(count.group(1)) <= 10, text
    # minor categories are merged before anything is withheld (the synthetic cohort has a few of them)
    assert any(
        lab.startswith("work status at enrolment: Off work for other reasons, or not") for lab in labels
    )
    exact = cohort.table_one(work_data, rule=rule_for("internal"))
    assert exact.filter(
        pl.col("characteristic") == "work status at enrolment: Off work for other reasons"
    ).height


def test_work_ability_growth_model_recovers_the_baseline_mean(
    work_data: cohort.CohortData, work_truth: dict[str, float]
) -> None:
    fit = cohort.was_growth(work_data, rule_for("network"))
    assert fit is not None
    model, changes = fit
    assert model.formula == "was ~ ns(week, knots = c(6, 12)) + (week | episode_id) + (1 | clinic_id)"
    assert model.result_.diagnostics.converged
    icpt = model.summary.filter(pl.col("term") == "(Intercept)").row(0, named=True)
    # truth: WAS = 5.5 - 1.2 (latent ODI - 42) / 10 - 1.5 [off work for back/leg pain] + N(0, 1.2), rounded
    # and clipped to 0-10
    assert abs(icpt["estimate"] - work_truth["was_mean_at_baseline"]) <= 2 * icpt["se"]
    # work ability improves with the ODI: positive changes, growing from week 6 to week 26
    assert changes["week"].to_list() == [6.0, 12.0, 26.0]
    assert (changes["ci_low"] > 0).all() and changes["estimate"].is_sorted()


def test_work_status_model_recovers_the_planted_effects_and_shows_no_small_count(
    work_data: cohort.CohortData, report_store: dict[str, Path]
) -> None:
    """The cohort report's GLMM of being at work: the planted conditional log odds within 3 SE."""
    truth = json.loads((report_store["cohort"] / "truth.json").read_text(encoding="utf-8"))["work"]["glmm"]
    ws = cohort.work_status_analysis(work_data, rule_for("network"))
    assert ws.model.status == "estimated" and ws.model.diagnostics["converged"]
    fe = ws.model.fixed_effects
    for term, beta in truth["coefficients"].items():
        row = fe.filter(pl.col("term") == term).row(0, named=True)
        assert abs(row["estimate"] - beta) <= 3 * row["se"], (term, row, beta)
    assert ws.table.columns == ["Term", "Odds ratio", "95% CI", "p"] and ws.table.height == 4
    assert not ws.table["Term"].str.contains("_").any(), "raw codes in the odds-ratio table"
    assert ws.n_episodes == f"{ws.model.n_episodes:,}" and ws.model.n_episodes > 100
    for text in ws.shares["n_assessments"].to_list():
        assert text == SUPPRESSED or int(text) > 10, text
    # a visit's observed share is withheld with its count (share x n gives the count back)
    hidden = ws.shares.filter(pl.col("n_assessments") == SUPPRESSED)
    assert hidden["observed_share"].null_count() == hidden.height
