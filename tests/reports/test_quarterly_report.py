"""End to end: synthetic cohort -> CSV -> ingest -> quarterly report executed for real -> HTML and outputs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sciatica_outcomes.errors import ReportParameterError
from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports.cli import render_quarterly
from sciatica_outcomes.reports.quarterly import Quarter
from sciatica_outcomes.reports.runner import CHROMIUM_FLAGS, chromium_path
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import generate_cohort

SECTIONS = (
    "Red flags needing action",
    "Headline figures",
    "Data coverage",
    "Patient flow",
    "Case mix",
    "Adherence",
    "Outcomes",
    "Walking tolerance",
    "Sitting tolerance",
    "Leg pain",
    "Disability (ODI)",
    "Safety",
    "Are flare-ups becoming less frequent?",
    "Time to clinically important improvement",
    "Work",
    "Dose and progression",
    "Trend over the last five quarters",
    "Risk-adjusted comparison",
    "Data quality",
    "Methods",
    "Provenance",
)
FIGURES = {
    "patient_flow.png",
    "adherence.png",
    "trajectory_walk_tolerance_min.png",
    "trajectory_sit_tolerance_min.png",
    "trajectory_nprs_leg.png",
    "trajectory_odi.png",
    "pain_bands.png",
    "flare_trend.png",
    "trend_adherence.png",
    "time_to_mcid.png",
    "return_to_work.png",
    "funnel.png",
}


@pytest.fixture(scope="module")
def rendered(report_store: dict[str, Path]) -> dict[str, Path]:
    root, db = report_store["root"], report_store["db"]
    out = root / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sciatica_outcomes.cli",
            "report",
            "quarterly",
            "--db",
            str(db),
            "--quarter",
            "2026Q2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("report.html")
    return {**report_store, "out": out}


def test_every_section_and_figure_is_there(rendered: dict[str, Path]) -> None:
    page = (rendered["out"] / "report.html").read_text(encoding="utf-8")
    for section in SECTIONS:
        assert re.search(rf"<h[23][^>]*>{re.escape(section)}", page), section
    assert {p.name for p in (rendered["out"] / "figures").glob("*.png")} == FIGURES
    # every figure is inline with a real alt text, and nothing is fetched from elsewhere
    imgs = re.findall(r'<img src="([^"]{0,40})[^"]*" alt="([^"]*)"', page)
    assert len(imgs) == len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") and len(alt) > 20 for src, alt in imgs)
    assert "http://" not in page and "https://" not in page
    assert "import " not in page and "Traceback" not in page and "failed to compute" not in page


def test_numbers_match_an_independent_count(rendered: dict[str, Path]) -> None:
    flow = pl.read_csv(rendered["out"] / "tables" / "patient_flow.csv", infer_schema=False)
    shown = dict(flow.iter_rows())
    episodes = pl.read_csv(rendered["cohort"] / "episodes.csv", try_parse_dates=True)
    enrolled = episodes.filter(
        pl.col("start_date").dt.year().eq(2026) & pl.col("start_date").dt.quarter().eq(2)
    )
    assert shown["enrolled in quarter"] in (str(enrolled.height), "*")
    # the network report prints the published set's pattern (a count above 10 may be a complement there)
    inputs = q.load_inputs(rendered["db"], "2026Q2")
    assert shown == q.published_flow(inputs)
    assert enrolled.height > 10


def test_no_small_counts_identifiers_or_dates_in_any_output(rendered: dict[str, Path]) -> None:
    cohort = rendered["cohort"]
    identifiers: set[str] = set()
    dates: set[str] = set()
    for name, cols in {
        "episodes": ["episode_id", "patient_id", "therapist_id"],
        "sessions": ["session_id"],
    }.items():
        frame = pl.read_csv(cohort / f"{name}.csv", infer_schema=False)
        for c in cols:
            identifiers |= set(frame[c].to_list())
    for name, cols in {
        "episodes": ["start_date", "end_date"],
        "sessions": ["session_date"],
        "measures": ["assessed_on"],
        "symptom_checks": ["checked_on"],
    }.items():
        frame = pl.read_csv(cohort / f"{name}.csv", infer_schema=False)
        for c in cols:
            dates |= {d for d in frame[c].drop_nulls().to_list()}
    token = re.compile(r"(?:EP|PT|TH|SE)\d{4,8}|\d{4}-\d{2}-\d{2}")
    files = [p for p in rendered["out"].rglob("*") if p.is_file() and p.suffix in {".html", ".csv", ".json"}]
    assert len(files) > 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
        found = set(token.findall(text))
        assert not (found & identifiers), (path.name, sorted(found & identifiers)[:5])
        assert not (found & dates), (path.name, sorted(found & dates)[:5])
    # every count column of every exported table is either suppressed or outside 1-10
    for csv_path in (rendered["out"] / "tables").glob("*.csv"):
        table = pl.read_csv(csv_path, infer_schema=False)
        for col in (
            "n",
            "alerts",
            "sessions",
            "rows",
            "responders_mcid",
            "responders_30pct",
            "at_cap_end",
            "active",
            "enrolled",
            "ended",
            "completed",
        ):
            if col in table.columns:
                values = [v for v in table[col].to_list() if v not in ("*", None)]
                assert not [v for v in values if 1 <= int(v) <= 10], (csv_path.name, col)


def test_provenance_records_data_models_and_config(rendered: dict[str, Path]) -> None:
    prov = json.loads((rendered["out"] / "provenance.json").read_text(encoding="utf-8"))
    assert set(prov["data_sha256"]) == {
        "episodes",
        "sessions",
        "session_exercises",
        "measures",
        "questionnaire_items",
        "symptom_checks",
        "work",
    }
    assert prov["schema_version"] and prov["package_version"]
    growth = [m for m in prov["models"] if m["purpose"] in ("growth model", "censored growth model")]
    assert {m["outcome"] for m in growth} == {
        "walk_tolerance_min",
        "sit_tolerance_min",
        "nprs_leg",
        "odi",
    }
    assert all(m["converged"] for m in growth)
    # the capped tolerance tests: the censored growth model, ML, with its quadrature check recorded
    censored = {m["outcome"]: m for m in growth if m["purpose"] == "censored growth model"}
    assert set(censored) == {"walk_tolerance_min", "sit_tolerance_min"}
    assert all(not m["reml"] and m["formula"].startswith("log(") for m in censored.values())
    assert all("quadrature_error" in m["diagnostics"] for m in censored.values())
    compare = [m for m in prov["models"] if m["purpose"] == "risk-adjusted comparison"]
    assert compare and compare[0]["diagnostics"]["case_mix"].startswith("improvement ~ baseline")
    assert prov["config"]["values"]["mcid"]["odi"]["absolute"] == 10.0
    assert prov["quarter"] == "2026Q2" and prov["run_seconds"] > 0


def test_bad_parameters_fail_fast_with_exit_code_2(rendered: dict[str, Path], tmp_path: Path) -> None:
    for args, message in (
        (["--quarter", "2026Q9"], "quarter must look like"),
        (["--quarter", "2031Q1"], "outside the data"),
        (["--quarter", "2026Q2", "--clinic", "CL77"], "unknown clinic"),
    ):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sciatica_outcomes.cli",
                "report",
                "quarterly",
                "--db",
                str(rendered["db"]),
                "--out",
                str(tmp_path / "r"),
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
        assert not (tmp_path / "r" / "report.html").exists()


def test_report_renders_in_headless_chromium_with_all_images(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    browser = chromium_path()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Chromium (Debian package 'chromium') for the browser test")
        pytest.skip("Chromium is not installed")
    html = rendered["out"] / "report.html"
    proc = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-images-loaded="(\d+)"', proc.stdout)
    assert body is not None, "the page's load handler did not run"
    total, loaded = int(body.group(1)), int(body.group(2))
    assert total == len(FIGURES) and loaded == total


def _cli_report(db: Path, quarter: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sciatica_outcomes.cli",
            "report",
            "quarterly",
            "--db",
            str(db),
            "--quarter",
            quarter,
            "--out",
            str(out),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _text(html: Path) -> str:
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", html.read_text(encoding="utf-8"), flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_store_without_red_flag_screens_or_exercises_says_not_recorded(tmp_path: Path) -> None:
    cohort = generate_cohort(n_patients=300, n_clinics=2, seed=5)
    db = tmp_path / "partial.duckdb"
    with Store(db) as store:
        for name, frame in cohort.tables.items():
            if name not in ("symptom_checks", "session_exercises"):
                store.write(name, frame, source="synthetic")
    proc = _cli_report(db, "2026Q1", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = _text(tmp_path / "r" / "report.html")
    assert "Red-flag screens: not recorded" in text
    assert "has an action recorded" not in text  # no all-clear without any screen
    assert (
        "Training dose and load progression: not recorded (the exercise logs, table session_exercises, were "
        "not ingested)" in text
    )
    assert "progressed at least once" not in text
    assert re.search(r"symptom_checks not ingested red-flag screens", text), "coverage panel names the table"


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small fresh cohort (a new program's whole history), its quarters and its smallest clinic."""
    cohort = generate_cohort(n_patients=250, n_clinics=3, seed=2026)
    db = tmp_path_factory.mktemp("fresh") / "outcomes.duckdb"
    with Store(db) as store:
        for name, frame in cohort.tables.items():
            store.write(name, frame, source="synthetic")
    ep = cohort.tables["episodes"]
    first, cut = ep["start_date"].min(), max(ep["start_date"].max(), ep["end_date"].max())
    assert isinstance(first, date) and isinstance(cut, date)
    quarters = []
    qt = Quarter(first.year, (first.month - 1) // 3 + 1)
    while qt.start <= cut:
        quarters.append(qt.label)
        qt = qt.shift(1)
    smallest = ep.group_by("clinic_id").len().sort("len", "clinic_id")["clinic_id"][0]
    return {"db": db, "quarters": quarters, "smallest": smallest, "episodes": ep}


def _renders_or_refuses(db: Path, quarter: str, clinic: str | None, out: Path) -> str:
    """Render one quarter in-process: "rendered", or "refused" when the parameters are refused (exit 2)."""
    try:
        result = render_quarterly(db, quarter, out, clinic=clinic)
    except ReportParameterError as exc:  # the CLI's exit 2 (ValueError): one sentence, no traceback
        message = str(exc)
        assert "\n" not in message and "Traceback" not in message
        assert "active in" in message and "report on all clinics together" in message, message
        return "refused"
    text = _text(result.html)
    assert "Traceback" not in text
    return "rendered"


def test_first_quarter_of_a_new_program_renders_or_is_refused(
    fresh_store: dict[str, Any], tmp_path: Path
) -> None:
    # the quarter that crashed ("The spline has internal repeated knots"), through the CLI: exit 0 or 2
    first = fresh_store["quarters"][0]
    proc = _cli_report(fresh_store["db"], first, tmp_path / "all")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = _text(tmp_path / "all" / "report.html")
    assert "not yet estimable (fewer than 20 episodes followed to week 26)" in text
    proc = _cli_report(fresh_store["db"], first, tmp_path / "one", "--clinic", fresh_store["smallest"])
    assert proc.returncode in (0, 2), proc.stderr[-3000:]
    if proc.returncode == 2:
        assert "Traceback" not in proc.stderr and "a quarterly report needs at least 11" in proc.stderr


@pytest.mark.slow
def test_every_quarter_of_a_fresh_cohort_renders_or_is_refused(
    fresh_store: dict[str, Any], tmp_path: Path
) -> None:
    outcomes = {}
    for quarter in fresh_store["quarters"]:
        for clinic in (None, fresh_store["smallest"]):
            out = tmp_path / f"{quarter}-{clinic or 'all'}"
            outcomes[quarter, clinic] = _renders_or_refuses(fresh_store["db"], quarter, clinic, out)
    assert len(fresh_store["quarters"]) >= 6
    assert all(outcomes[q, None] == "rendered" for q in fresh_store["quarters"])
    # the smallest clinic is refused exactly in the quarters with 10 or fewer active episodes (counted here)
    ep = fresh_store["episodes"].filter(pl.col("clinic_id") == fresh_store["smallest"])
    for label in fresh_store["quarters"]:
        qt = Quarter.parse(label)
        active = ep.filter(
            (pl.col("start_date") <= qt.end)
            & (pl.col("end_date").is_null() | (pl.col("end_date") >= qt.start))
        ).height
        expected = "refused" if active <= 10 else "rendered"
        assert outcomes[label, fresh_store["smallest"]] == expected, (label, active)


def test_csv_exports_write_numbers_as_numbers(rendered: dict[str, Path]) -> None:
    tables = rendered["out"] / "tables"
    change = pl.read_csv(tables / "change_odi.csv")
    assert change.schema["week"] == pl.Int64 and change["week"].to_list() == [6, 12, 26]
    assert change.schema["change"] == pl.Float64
    trend = pl.read_csv(tables / "trend.csv")
    for col in ("active", "enrolled", "weeks_meeting_prescription_pct", "odi_responders_pct"):
        if trend.schema[col] == pl.String:  # text only when a cell is withheld, then "*" is the only text
            assert {v for v in trend[col] if not v.isdigit()} == {"*"}, col
        else:
            assert trend.schema[col].is_numeric(), col
    number_text = re.compile(r'"(\d{1,3}(,\d{3})+|\d+(\.\d+)?%)"')
    for path in tables.glob("*.csv"):
        text = path.read_text(encoding="utf-8")
        assert not number_text.search(text), (path.name, number_text.search(text))


def test_front_page_dates_summary_and_populations(rendered: dict[str, Path]) -> None:
    text = _text(rendered["out"] / "report.html")
    assert "Data as they stood at the end of June 2026 (quarter 2026Q2, April to June 2026)" in text
    assert re.search(r"Report generated on \d{1,2} [A-Z][a-z]+ 20\d\d\.", text)
    summary = text.split("Summary")[1].split("Headline figures")[0]
    assert summary.count("(last quarter: ") >= 5
    assert "episodes were active (all clinics of the network)" in summary
    # every section says whom it describes; no code or unexplained band in the text
    assert text.count("Population:") >= 12
    for code in ("gluteus_maximus", "high_risk", "o minus e", "converged: True", "crippled", " 6.0 "):
        assert code not in text, code
    assert "safe (0-2)" in text and "high risk (above 5)" in text and "moderate disability (21-40)" in text


@pytest.fixture(scope="module")
def internal_report(report_store: dict[str, Path]) -> dict[str, Any]:
    """The internal report of the smallest clinic that has a report in 2026Q2 (the clinic's own staff)."""
    with Store(report_store["db"], read_only=True) as store:
        clinics = store.read("episodes")["clinic_id"].value_counts(sort=True)["clinic_id"].to_list()
    params = {"db": str(report_store["db"]), "quarter": "2026Q2"}
    for clinic in reversed(clinics):
        try:
            q.validate_parameters({**params, "clinic": clinic})
        except ReportParameterError:
            continue
        break
    out = report_store["root"] / f"report-internal-{clinic}"
    result = render_quarterly(report_store["db"], "2026Q2", out, clinic=clinic)
    return {"clinic": clinic, "out": out, "html": result.html.read_text(encoding="utf-8")}


def test_an_internal_report_shows_the_clinics_own_counts_exactly(internal_report: dict[str, Any]) -> None:
    page = internal_report["html"]
    assert "Audience: internal" in page
    headline = re.search(r'<div class="headline">(.*?)</div>\s*</div>', page, re.S)
    assert headline is not None
    assert "*" not in re.sub(r"<[^>]+>", "", headline.group(1))
    flow = pl.read_csv(internal_report["out"] / "tables" / "patient_flow.csv", infer_schema=False)
    assert "*" not in flow["n"].to_list()
    shown = dict(zip(flow["stage"], flow["n"].cast(pl.Int64), strict=True))
    assert shown["active in quarter"] == shown["active at start of quarter"] + shown["enrolled in quarter"]
    manifest = json.loads((internal_report["out"] / "report_manifest.json").read_text(encoding="utf-8"))
    assert manifest["audience"] == {"audience": "internal", "withheld_from": None, "withheld_to": None}


def test_methods_name_the_censored_model_for_capped_tests_and_reml_for_the_others(
    rendered: dict[str, Path],
) -> None:
    page = (rendered["out"] / "report.html").read_text(encoding="utf-8")
    methods = dict(re.findall(r"<li>([A-Z][A-Za-z ()]+): <code>[^<]*</code> \(([^;]*);", page))
    assert methods["Walking tolerance"].startswith("censored (Tobit) growth model: the ")
    assert "right-censored at log(cap)" in methods["Sitting tolerance"]
    assert methods["Leg pain"] == "REML, Satterthwaite df"
    # the capped count in the sentence is the store's count of capped tests among the fitted ones
    n_cap = int(
        re.search(r"the ([\d,]+) tests stopped at the cap", methods["Walking tolerance"])[1].replace(",", "")
    )
    assert n_cap > 0
    assert "under-estimated" not in page
