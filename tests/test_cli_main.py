"""The top-level commands (``synth``, ``demo``): user errors are one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from sciatica_outcomes.cli import app


def test_synth_into_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(
        app, ["synth", "--patients", "20", "--out", str(blocker / "cohort"), "--quiet"]
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot write the cohort to ")
    assert "choose a writable --out" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_demo_too_small_for_a_report_says_why(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "--out", str(tmp_path / "d"), "--patients", "5", "--clinics", "1"]
    )
    assert result.exit_code == 2
    assert "episode(s) active in 2026Q3" in result.output
    assert "Traceback" not in result.output
