"""Execute a parameterized report notebook headless and render it to self-contained HTML.

The notebook runs with papermill on a kernel that is this very Python environment (a kernelspec written to a
private directory at run time), so a fresh machine needs no registered Jupyter kernel. The run has an overall
time limit. Beside ``report.html`` the runner leaves the executed notebook, ``tables/*.csv``,
``figures/*.png`` and ``provenance.json``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import nbformat

from sciatica_outcomes._version import __version__
from sciatica_outcomes.errors import ReportParameterError, SciaticaOutcomesError
from sciatica_outcomes.reports.html import notebook_to_html

__all__ = ["KERNEL_NAME", "ReportResult", "find_notebook", "notebook_parameters", "run_notebook"]

KERNEL_NAME = "sciatica-outcomes"
MANIFEST = "report_manifest.json"


@dataclass(frozen=True)
class ReportResult:
    """Paths of everything a report run wrote."""

    html: Path
    notebook: Path
    provenance: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    pdf: Path | None = None
    seconds: float = 0.0


def find_notebook(name: str) -> Path:
    """Locate a report notebook: a path, the copy packaged in the wheel, or the repository's ``notebooks/``.

    An installed wheel carries the notebooks as package data (``sciatica_outcomes/_notebooks/``, see
    ``[tool.hatch.build.targets.wheel.force-include]`` in pyproject.toml); a source checkout
    (editable install) reads them from ``notebooks/`` at the top of the repository.
    """
    if Path(name).suffix == ".ipynb" and Path(name).is_file():
        return Path(name)
    packaged = resources.files("sciatica_outcomes").joinpath("_notebooks", name)
    candidates = [Path(str(packaged))]
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        candidates.append(checkout / "notebooks" / name)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(c) for c in candidates)
    raise SciaticaOutcomesError(f"report notebook {name!r} not found (looked in {looked})")


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The parameters a notebook declares in its ``parameters``-tagged cell, with their literal defaults."""
    # nbformat ships py.typed but leaves read() unannotated
    nb: nbformat.NotebookNode = nbformat.read(str(path), as_version=4)  # type: ignore[no-untyped-call]
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise SciaticaOutcomesError(f"notebook {path} has no cell tagged 'parameters'")
    declared: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and node.value is not None:
                    declared[target.id] = ast.literal_eval(node.value)
    return declared


def _write_kernelspec(root: Path) -> None:
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "sciatica-outcomes (this environment)",
        "language": "python",
        "env": {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def run_notebook(
    name: str,
    out_dir: str | Path,
    parameters: Mapping[str, Any],
    *,
    validate: Callable[[dict[str, Any]], None] | None = None,
    timeout_s: float = 900.0,
    pdf: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> ReportResult:
    """Run a report notebook and render it.

    Parameters
    ----------
    name : str
        Notebook file name in ``notebooks/`` (e.g. ``"quarterly_report.ipynb"``).
    out_dir : str or Path
        Report directory (created); the notebook runs with it as working directory.
    parameters : mapping
        Values for the notebook's ``parameters`` cell. A name the notebook does not declare is an error.
    validate : callable, optional
        Checks the complete parameter set before anything runs; raises ``ReportParameterError``.
    timeout_s : float
        Overall time limit of the execution.
    pdf : bool
        Also print the HTML to PDF with headless Chromium (``chromium`` must be installed).
    provenance : mapping, optional
        Extra provenance entries (data hashes, schema version, ...) merged into ``provenance.json``.

    Returns
    -------
    ReportResult
        Paths of the HTML page, executed notebook, provenance, tables and figures.

    Raises
    ------
    ReportParameterError
        Unknown parameter names or values rejected by ``validate``.
    SciaticaOutcomesError
        The notebook failed or ran out of time (the message names the failing cell's error).
    """
    source = find_notebook(name)
    declared = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ReportParameterError(
            f"unknown report parameter(s) {unknown} for {name}; the notebook accepts {sorted(declared)}"
        )
    params = {**declared, **dict(parameters)}
    if validate is not None:
        validate(params)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    executed = out / source.name.replace(".ipynb", ".executed.ipynb")
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sciatica-kernel-") as kdir:
        _write_kernelspec(Path(kdir))
        env = dict(os.environ)
        env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [kdir, env.get("JUPYTER_PATH", "")]))
        env["MPLBACKEND"] = "Agg"
        cmd = [
            sys.executable,
            "-m",
            "papermill",
            str(source),
            str(executed),
            "--kernel",
            KERNEL_NAME,
            "--cwd",
            str(out),
            "--parameters_yaml",
            json.dumps(params, default=str),
            "--no-progress-bar",
            "--execution-timeout",
            str(int(timeout_s)),
        ]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise SciaticaOutcomesError(f"report {name} did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        raise SciaticaOutcomesError(
            f"report {name} failed while executing (executed notebook kept at {executed}):\n{tail}"
        )
    html_path = out / "report.html"
    html_path.write_text(notebook_to_html(executed), encoding="utf-8")
    seconds = time.perf_counter() - t0
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    record = {
        "report": name,
        "package_version": __version__,
        "python": sys.version.split()[0],
        "parameters": params,
        "started_utc": started.isoformat(timespec="seconds"),
        "run_seconds": round(seconds, 2),
        **dict(provenance or {}),
        **manifest,
    }
    prov_path = out / "provenance.json"
    prov_path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
    pdf_path = print_pdf(html_path) if pdf else None
    return ReportResult(
        html=html_path,
        notebook=executed,
        provenance=prov_path,
        tables=sorted((out / "tables").glob("*.csv")),
        figures=sorted((out / "figures").glob("*.png")),
        pdf=pdf_path,
        seconds=seconds,
    )


def chromium_path() -> str | None:
    """Path of a headless-capable Chromium, or ``None`` when none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def print_pdf(html_path: Path) -> Path:
    """Print an HTML report to PDF with headless Chromium; returns the PDF path."""
    browser = chromium_path()
    if browser is None:
        raise SciaticaOutcomesError("--pdf needs Chromium (Debian package 'chromium'); it is not installed")
    pdf_path = html_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="sciatica-chromium-") as profile:
        cmd = [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0 or not pdf_path.exists():
        reason = proc.stderr.strip()[-300:]
        raise SciaticaOutcomesError(f"Chromium could not print {html_path} to PDF: {reason}")
    return pdf_path
