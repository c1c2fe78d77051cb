"""The import rule of docs/architecture.md: data flow one way, and so do imports.

Every module of the package is parsed with ``ast`` (imports inside functions and ``TYPE_CHECKING`` blocks
count too: they are dependencies all the same) and each import is checked against the order below, which is
written here once. A stage may import the shared modules, its own modules and the stages to its left; never
a stage to its right, and never a private (``_``) name or module of another stage.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sciatica_outcomes"

#: The pipeline, left to right: sources -> validate (ingest) -> store -> derive (scoring, derive) -> model
#: -> report. A module of a stage may import the stages before it.
STAGES: tuple[str, ...] = ("ingest", "store", "scoring", "derive", "models", "reports")
#: The shared vocabulary every stage may import (they import only one another): the canonical schemas and
#: vocabularies, the exception hierarchy, the clinical configuration and the version; plus plumbing that
#: imports no stage (default paths and settings, type aliases, lazy re-exports, terminal tables and help
#: for the CLIs, safe output files).
SHARED: frozenset[str] = frozenset(
    {
        "schemas",
        "errors",
        "config",
        "_version",
        "defaults",
        "_typing",
        "_lazy",
        "_terminal",
        "_cli_help",
        "outputs",
    }
)
#: Modules that may import only the shared ones.
LEAVES: frozenset[str] = frozenset({"synth"})
#: Modules that assemble everything: the ``sciatica-outcomes`` command and the package's public API.
TOP: frozenset[str] = frozenset({"cli", "__init__"})
#: The one hand-off to a stage on the right: ingest writes its validated frames through the store's public
#: writer (the arrow "validate -> store" is a call), after checking that ``--db`` can be a store. Only these
#: names; the column schemas and records they exchange live in ``schemas.store_tables``. The store never
#: imports ingest.
HANDOFF: dict[tuple[str, str], frozenset[str]] = {
    ("ingest", "store"): frozenset({"Store", "DEFAULT_DB", "check_store_path"})
}


def _unit(dotted: str) -> str:
    """The stage (or shared/leaf/top unit) of a dotted module name inside the package."""
    parts = dotted.split(".")
    assert parts[0] == "sciatica_outcomes", dotted
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def _imports(path: Path, name: str) -> list[tuple[int, str, str | None]]:
    """``(line, imported module, imported name or None)`` for every package import of module ``name``."""
    here = name.split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.startswith("sciatica_outcomes")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if not module.startswith("sciatica_outcomes"):
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                # ``from package import submodule`` imports the submodule
                out.append((node.lineno, sub, None) if _is_module(sub) else (node.lineno, module, alias.name))
    return out


def _allowed(importer: str, module: str, name: str | None) -> str | None:
    """None when the import is allowed, else the reason it is not."""
    src, dst = _unit(importer), _unit(module)
    private = any(p.startswith("_") for p in module.split(".")[2:]) or (name or "").startswith("_")
    if src in TOP or src == dst:
        return None
    if dst in SHARED:
        return None
    if src in SHARED:
        return f"shared module {src} imports {dst}: shared modules may import only {sorted(SHARED)}"
    if src in LEAVES:
        return f"{src} imports {dst}: it may import only the shared modules {sorted(SHARED)}"
    if dst in TOP:
        return f"{src} imports the package root or the top-level CLI, which import every stage"
    if src not in STAGES or dst not in STAGES:
        unknown = src if src not in STAGES else dst
        return f"{unknown} is in no stage: add it to STAGES, SHARED, LEAVES or TOP of this test"
    if private:
        return f"{src} imports the private {module}{'.' + name if name else ''} of stage {dst}"
    if (dst, src) in HANDOFF:
        return f"{src} imports {dst}, which hands its output to {src} through {src}'s API (a cycle)"
    if STAGES.index(dst) < STAGES.index(src):
        return None
    handoff = HANDOFF.get((src, dst))
    if handoff is not None and name in handoff:
        return None
    return f"{src} imports {dst}, a stage to its right (order: {' -> '.join(STAGES)})"


def _violations(modules: dict[Path, str]) -> list[str]:
    """Every import of the given files (path -> dotted module name) that breaks the rule, with the reason."""
    bad = []
    for path, importer in sorted(modules.items()):
        for line, module, name in _imports(path, importer):
            reason = _allowed(importer, module, name)
            if reason is not None:
                what = f"{module} import {name}" if name else module
                bad.append(f"{importer} line {line} ({what}): {reason}")
    return bad


def _package_modules() -> dict[Path, str]:
    return {path: _module_name(path) for path in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_known_stage() -> None:
    units = {_unit(name) for name in _package_modules().values()}
    assert units <= set(STAGES) | SHARED | LEAVES | TOP, units - (set(STAGES) | SHARED | LEAVES | TOP)
    assert set(STAGES) <= units


def test_imports_follow_the_pipeline() -> None:
    assert _violations(_package_modules()) == []


@pytest.mark.parametrize(
    ("importer", "module", "name", "fails"),
    [
        ("sciatica_outcomes.ingest.pipeline", "sciatica_outcomes.reports.quarterly", "load_inputs", True),
        ("sciatica_outcomes.derive.frames", "sciatica_outcomes.models.lmm", "GrowthModel", True),
        ("sciatica_outcomes.store", "sciatica_outcomes.ingest.validate", "validate_sources", True),
        ("sciatica_outcomes.scoring.visits", "sciatica_outcomes.derive", "derive_all", True),
        ("sciatica_outcomes.ingest.pipeline", "sciatica_outcomes.store", "QUARANTINE_SCHEMA", True),
        ("sciatica_outcomes.ingest.pipeline", "sciatica_outcomes.store", "Store", False),
        ("sciatica_outcomes.reports.quarterly", "sciatica_outcomes.derive", "derive_all", False),
        ("sciatica_outcomes.reports.quarterly", "sciatica_outcomes.derive._common", "load_tables", True),
        ("sciatica_outcomes.reports.quarterly", "sciatica_outcomes.models.mmrm", "_sigma", True),
        ("sciatica_outcomes.synth", "sciatica_outcomes.scoring.instruments", "ODI_SECTIONS", True),
        ("sciatica_outcomes.synth", "sciatica_outcomes.schemas.vocabulary", "BANDS", False),
        ("sciatica_outcomes.schemas.registry", "sciatica_outcomes.store", "Store", True),
        ("sciatica_outcomes.reports.runner", "sciatica_outcomes", "__version__", True),
        ("sciatica_outcomes.cli", "sciatica_outcomes.reports.cli", "report_app", False),
        ("sciatica_outcomes.models.cli", "sciatica_outcomes.derive", "analysis_frame", False),
        ("sciatica_outcomes.derive.cli", "sciatica_outcomes.store", "Store", False),
    ],
)
def test_the_rule_itself(importer: str, module: str, name: str, fails: bool) -> None:
    assert (_allowed(importer, module, name) is not None) is fails


def test_a_wrong_way_import_is_found_in_source(tmp_path: Path) -> None:
    # imports inside functions and relative imports count, as a module of derive would write them
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from __future__ import annotations\n\n"
        "def f():\n    from ..models.lmm import GrowthModel\n    from .frames import derive_all\n"
        "    from sciatica_outcomes.schemas import vocabulary\n",
        encoding="utf-8",
    )
    bad = _violations({probe: "sciatica_outcomes.derive.probe"})
    assert len(bad) == 1, bad
    assert bad[0].startswith("sciatica_outcomes.derive.probe line 4 (sciatica_outcomes.models.lmm import")
    assert "to its right" in bad[0]


def test_every_committed_notebook_cell_has_a_unique_id_and_no_output() -> None:
    """nbformat 4.5 cell ids (missing ids become a hard error in future nbformat), no outputs committed."""
    notebooks = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        nb = json.loads(path.read_text(encoding="utf-8"))
        ids = [c.get("id") for c in nb["cells"]]
        assert None not in ids, f"{path.name}: cell {ids.index(None)} has no id"
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c["outputs"] == [] and c["execution_count"] is None for c in code), path.name
