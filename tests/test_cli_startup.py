"""The command line answers at once and each command loads only what it uses.

Import guards run in fresh interpreters (``sys.modules`` of this test process is polluted by other tests).
Timings are not asserted here (a timed unit test measures the machine, not the code); ``benchmarks/cli.py``
times ``--help`` and ``fit`` as whole processes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from sciatica_outcomes import __version__
from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.cli import app

HEAVY = ("scipy", "pandera", "duckdb", "nbconvert", "papermill", "matplotlib", "pandas", "polars", "numpy")


def _modules_after(code: str) -> set[str]:
    """Top-level package names imported by a fresh interpreter running ``code``."""
    probe = (
        code
        + "\nimport sys, json\nprint('MODULES ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def test_importing_the_cli_loads_no_heavy_library() -> None:
    loaded = _modules_after("import sciatica_outcomes.cli")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_importing_the_package_loads_no_heavy_library() -> None:
    loaded = _modules_after("import sciatica_outcomes; sciatica_outcomes.__version__")
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_public_name_still_imports_on_use() -> None:
    loaded = _modules_after("from sciatica_outcomes import GrowthModel; GrowthModel")
    assert {"polars", "numpy"} <= loaded


def test_fit_from_a_file_needs_neither_pandera_nor_the_store_nor_the_report_stack(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n, per = 60, 5
    patient = np.repeat(np.arange(n), per)
    week = np.tile(np.array([0.0, 2, 6, 12, 26]), n)
    y = 40 - 0.8 * week + rng.normal(0, 4, n)[patient] + rng.normal(0, 3, n * per)
    data = tmp_path / "frame.csv"
    pl.DataFrame({"patient": patient, "week": week, "y": y}).write_csv(data)
    code = (
        "import sys\nfrom sciatica_outcomes.cli import app\n"
        f"sys.argv = ['sciatica-outcomes', 'fit', '--data', {str(data)!r}, '--formula', "
        "'y ~ week + (1 | patient)', '--quiet']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    )
    loaded = _modules_after(code)
    assert "polars" in loaded  # the fit did run
    assert not loaded & {"pandera", "duckdb", "nbconvert", "papermill", "matplotlib", "pandas"}, sorted(
        loaded & {"pandera", "duckdb", "nbconvert", "papermill", "matplotlib", "pandas"}
    )


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    found: list[list[str]] = [[]]
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        found.append([name])
        found.extend([name, sub] for sub in getattr(cmd, "commands", {}))
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "(root)")
def test_every_help_is_plain(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    noise = re.findall(r"<(?:bool|str|int|float|path|list\[[^\]]*\]|[a-z ]+ range)>", result.output)
    assert not noise, noise
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"sciatica-outcomes {__version__}"


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_tables_never_cut_a_number(width: int) -> None:
    rng = np.random.default_rng(width)
    header = ["provider", "n", "observed", "expected", "o_minus_e", "band", "shrunken_high", "rank_shrunken"]
    rows = [
        [
            f"CL{i:02d} long clinic name",
            f"{rng.integers(1, 100_000):,}",
            f"{rng.normal(0, 1e4):.6g}",
            f"{rng.normal():.4g}",
            f"[{rng.normal():.4g}, {rng.normal():.4g}]",
            "within 95% limits",
            f"{rng.normal(0, 1e6):.6g}",
            str(i),
        ]
        for i in range(12)
    ]
    console = Console(width=width, record=True, color_system=None)
    print_table(console, make_table("t", header, rows, numeric=[1, 2, 3, 4, 6, 7], width=width))
    text = console.export_text()
    lines = text.splitlines()
    for row in rows:
        for cell in (row[j] for j in (1, 2, 3, 4, 6)):
            assert any(cell in line for line in lines), (cell, text)
    assert "…" not in text
