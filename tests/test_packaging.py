"""The wheel is a complete product: built, installed into a new venv, it renders both reports anywhere.

Run by ``make wheel-test`` (part of ``make test``): builds the wheel from this checkout, installs the locked
dependencies and the wheel into a new virtual environment, and runs ``sciatica-outcomes demo`` from a
directory outside the source tree, so nothing can be found through the checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sciatica_outcomes._version import __version__

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.packaging


def _run(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT)], ROOT)
    (found,) = dist.glob("sciatica_outcomes-*.whl")
    return found


def test_wheel_carries_the_notebooks_and_catalogs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "sciatica_outcomes/_notebooks/quarterly_report.ipynb",
        "sciatica_outcomes/_notebooks/cohort_analysis.ipynb",
        "sciatica_outcomes/schemas/data/exercises.csv",
        "sciatica_outcomes/schemas/data/measures.csv",
        "sciatica_outcomes/schemas/data/data-guide.html",
    ):
        assert path in names, path
    assert wheel.name.startswith(f"sciatica_outcomes-{__version__}-")
    assert not any(n.startswith(("tests/", "notebooks/", "data/")) for n in names)


def test_installed_wheel_renders_both_reports_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--quiet", "-r", str(ROOT / "requirements.lock")], tmp_path)
    _run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(py), "-c", "import sciatica_outcomes, sys; print(sciatica_outcomes.__file__)"], work)
    assert str(venv) in where.stdout, where.stdout  # the installed copy, not the checkout
    cli = str(venv / "bin" / "sciatica-outcomes")
    assert _run([cli, "--version"], work).stdout.strip() == f"sciatica-outcomes {__version__}"
    _run([cli, "demo", "--out", "demo-out", "--patients", "200", "--clinics", "3"], work, timeout=1200)
    for report in ("quarterly-2026Q3", "cohort-analysis"):
        html = work / "demo-out" / report / "report.html"
        text = html.read_text(encoding="utf-8")
        assert text.lstrip().lower().startswith("<!doctype html") or "<html" in text[:500]
        assert "Traceback" not in text
        provenance = json.loads((html.parent / "provenance.json").read_text(encoding="utf-8"))
        assert provenance["package_version"] == __version__
