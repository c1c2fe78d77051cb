"""The report runner executes a real notebook with papermill on this environment's kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sciatica_outcomes.errors import ReportParameterError, SciaticaOutcomesError
from sciatica_outcomes.reports.runner import notebook_parameters, run_notebook

MINI = Path(__file__).parent / "data" / "mini_report.ipynb"


def test_runs_renders_and_writes_provenance(tmp_path: Path) -> None:
    result = run_notebook(str(MINI), tmp_path, {"n_rows": 3})
    page = result.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Mini report</title>" in page
    # no code, no prompts, no stderr or stdout chatter
    assert "import matplotlib" not in page and "ReportWriter" not in page
    assert "must not reach the HTML" not in page and "stdout chatter" not in page
    # the table is suppressed and the figure is inline with its alt text
    assert "<td>*</td>" in page and "<td>4</td>" not in page
    assert 'alt="A line falling from 3 to 1 then rising to 2"' in page
    assert "data:image/png;base64," in page
    assert [p.name for p in result.figures] == ["trend.png"]
    assert [p.name for p in result.tables] == ["counts.csv"]
    csv_text = result.tables[0].read_text(encoding="utf-8")
    assert '"\'=cmd"' in csv_text and ',"4"' not in csv_text
    prov = json.loads(result.provenance.read_text(encoding="utf-8"))
    assert prov["parameters"] == {"title": "Mini report", "n_rows": 3, "label": "=cmd"}
    assert prov["models"] == [{"formula": "y ~ week"}]
    assert prov["dataset"] == "mini"
    assert prov["run_seconds"] > 0


def test_unknown_parameter_is_refused_before_running(tmp_path: Path) -> None:
    with pytest.raises(ReportParameterError, match="unknown report parameter"):
        run_notebook(str(MINI), tmp_path, {"n_rowz": 2})
    assert not (tmp_path / "report.html").exists()


def test_validation_hook_runs_first(tmp_path: Path) -> None:
    def reject(params: dict) -> None:
        if params["n_rows"] > 3:
            raise ReportParameterError("n_rows must be at most 3")

    with pytest.raises(ReportParameterError, match="at most 3"):
        run_notebook(str(MINI), tmp_path, {"n_rows": 5}, validate=reject)


def test_failing_notebook_reports_the_error(tmp_path: Path) -> None:
    with pytest.raises(SciaticaOutcomesError, match="failed while executing"):
        run_notebook(str(MINI), tmp_path, {"n_rows": "not a number"})


def test_parameters_are_read_from_the_notebook() -> None:
    assert notebook_parameters(MINI) == {"title": "Mini report", "n_rows": 3, "label": "=cmd"}
