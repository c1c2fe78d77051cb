"""``report cohort|quarterly``: parameters are checked against the store before a notebook runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.store import Store


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_cohort_report_with_an_unknown_outcome_is_a_user_error(
    report_store: dict[str, Path], tmp_path: Path
) -> None:
    code, out = _run(
        "report", "cohort", "--db", str(report_store["db"]), "--outcome", "nosuch", "--out", str(tmp_path)
    )
    assert code == 2
    assert "unknown outcome 'nosuch'" in out and "odi" in out
    assert "Traceback" not in out
    assert not (tmp_path / "report.html").exists()


def test_cohort_report_on_an_outcome_without_values_names_the_ones_present(
    report_store: dict[str, Path], tmp_path: Path
) -> None:
    code, out = _run(
        "report", "cohort", "--db", str(report_store["db"]), "--outcome", "rmdq", "--out", str(tmp_path)
    )
    assert code == 2
    assert "has no values in the store" in out and "walk_tolerance_min" in out


@pytest.mark.parametrize("kind", ["cohort", "quarterly"])
def test_reports_on_an_empty_store_say_so(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    with Store(db):
        pass
    extra = ["--quarter", "2026Q3"] if kind == "quarterly" else []
    code, out = _run("report", kind, "--db", str(db), *extra, "--out", str(tmp_path / "r"))
    assert code == 2
    assert "holds no episodes" in " ".join(out.split())
    assert "Traceback" not in out


def test_report_on_a_missing_store_is_a_user_error(tmp_path: Path) -> None:
    code, out = _run("report", "cohort", "--db", str(tmp_path / "none.duckdb"), "--out", str(tmp_path / "r"))
    assert code == 2
    assert "does not exist" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--audience", "internal"], "give --clinic"),
        (["--audience", "press"], "'press' is not one of internal, network, public"),
        (["--suppress-threshold", "-1"], "threshold must be 1 or more"),
        (["--clinic", "CL01", "--suppress-threshold", "5"], "network and public audiences only"),
    ],
)
def test_a_bad_audience_is_a_user_error(
    report_store: dict[str, Path], tmp_path: Path, args: list[str], says: str
) -> None:
    code, out = _run(
        "report",
        "quarterly",
        "--db",
        str(report_store["db"]),
        "--quarter",
        "2026Q2",
        *args,
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 2, out
    assert says in " ".join(out.split()) and "Traceback" not in out
    assert not (tmp_path / "r").exists()
