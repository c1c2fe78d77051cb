"""The vocabularies of ``schemas.vocabulary`` agree with the catalogs, the pandera models and the exports.

Each list is defined once (``sciatica_outcomes/schemas/vocabulary.py``); these tests fail when a catalog CSV,
a model's allowed values, the Frictionless export or a module elsewhere in the package spells out a list of
its own that differs.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import BAND_ORDER, SYMPTOM_EXTENT_ORDER
from sciatica_outcomes.derive._common import TABLE_NAMES
from sciatica_outcomes.reports import quarterly
from sciatica_outcomes.schemas import TABLE_SPECS, exercise_catalog, measure_catalog, vocabulary
from sciatica_outcomes.schemas.frictionless import table_schema
from sciatica_outcomes.schemas.questionnaire_items import INSTRUMENT_RESPONSE_RANGE
from sciatica_outcomes.scoring import INSTRUMENTS
from sciatica_outcomes.store import CANONICAL_TABLES as STORE_TABLES
from sciatica_outcomes.synth import TABLES as SYNTH_TABLES

V = vocabulary
REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "sciatica_outcomes"

#: Every enumerated column of the canonical tables and the vocabulary it must allow, in this order.
ENUMERATED: dict[tuple[str, str], tuple[str, ...]] = {
    ("episodes", "end_reason"): V.END_REASONS,
    ("episodes", "sex"): V.SEXES,
    ("episodes", "affected_side"): V.SIDES,
    ("sessions", "status"): V.SESSION_STATUSES,
    ("sessions", "symptom_extent"): V.SYMPTOM_EXTENTS,
    ("session_exercises", "exercise"): V.EXERCISE_CODES,
    ("session_exercises", "band"): V.BANDS,
    ("measures", "measure"): V.MEASURE_CODES,
    ("measures", "stopped_reason"): V.STOPPED_REASONS,
    ("questionnaire_items", "instrument"): V.INSTRUMENT_CODES,
    ("symptom_checks", "action_taken"): V.ACTIONS,
    ("work", "employment_status"): V.EMPLOYMENT_STATUSES,
    ("work", "work_status"): V.WORK_STATUSES,
}


def _isin(table: str, column: str) -> list[str] | None:
    checks = TABLE_SPECS[table].schema.columns[column].checks
    found = [c.statistics["allowed_values"] for c in checks if c.name == "isin"]
    return list(found[0]) if found else None


def test_catalog_csvs_hold_exactly_the_vocabulary_codes() -> None:
    ex = exercise_catalog()
    assert tuple(ex["code"]) == V.EXERCISE_CODES
    assert set(ex["category"]) == set(V.EXERCISE_CATEGORIES)
    assert set(ex["muscle_group"]) == set(V.MUSCLE_GROUPS)
    assert set(ex["dose_type"]) == set(V.DOSE_TYPES)
    me = measure_catalog()
    assert tuple(me["code"]) == V.MEASURE_CODES
    assert set(me["kind"]) == set(V.MEASURE_KINDS)


@pytest.mark.parametrize(("table", "column"), list(ENUMERATED))
def test_pandera_models_allow_exactly_the_vocabulary(table: str, column: str) -> None:
    assert _isin(table, column) == list(ENUMERATED[(table, column)])


def test_every_enumerated_column_takes_its_values_from_the_vocabulary() -> None:
    enumerated = {
        (name, column)
        for name, spec in TABLE_SPECS.items()
        for column in spec.schema.columns
        if _isin(name, column) is not None
    }
    assert enumerated == set(ENUMERATED)


@pytest.mark.parametrize("source", ["export", "committed"])
def test_frictionless_schemas_list_the_vocabulary_as_enums(source: str) -> None:
    for (table, column), words in ENUMERATED.items():
        if source == "export":
            schema = table_schema(TABLE_SPECS[table])
        else:
            path = REPO / "data" / "schemas" / f"{table}.schema.json"
            schema = json.loads(path.read_text(encoding="utf-8"))
        field = next(f for f in schema["fields"] if f["name"] == column)
        assert field["constraints"]["enum"] == list(words), (source, table, column)


def test_committed_catalogs_equal_the_packaged_ones() -> None:
    for name in ("exercises.csv", "measures.csv"):
        committed = pl.read_csv(REPO / "data" / "schemas" / name)
        assert tuple(committed["code"]) == (V.EXERCISE_CODES if name == "exercises.csv" else V.MEASURE_CODES)


def test_table_names_are_one_list() -> None:
    assert tuple(TABLE_SPECS) == V.CANONICAL_TABLES
    assert all(spec.name == name for name, spec in TABLE_SPECS.items())
    for other in (STORE_TABLES, SYNTH_TABLES, TABLE_NAMES):
        assert other == V.CANONICAL_TABLES
    # dependency order: every foreign key points to an earlier table
    position = {name: i for i, name in enumerate(V.CANONICAL_TABLES)}
    for name, spec in TABLE_SPECS.items():
        assert all(position[fk.table] < position[name] for fk in spec.foreign_keys), name
    assert not set(V.STORE_TABLES) & set(V.CANONICAL_TABLES)


def test_rules_and_stages_use_the_vocabulary() -> None:
    assert set(INSTRUMENT_RESPONSE_RANGE) == set(V.INSTRUMENT_CODES)
    assert INSTRUMENTS["odi"].items is not None and INSTRUMENTS["odi"].items["2.1a"] == V.ODI_SECTIONS
    assert INSTRUMENTS["sbi"].items is not None and INSTRUMENTS["sbi"].items["1"] == V.SCIATICA_ITEMS
    booleans = [c for c, t in TABLE_SPECS["symptom_checks"].dtypes.items() if t == pl.Boolean]
    assert tuple(booleans) == V.RED_FLAG_COLUMNS == ClinicalConfig().red_flag_fields
    assert SYMPTOM_EXTENT_ORDER == V.SYMPTOM_EXTENTS and BAND_ORDER == V.BANDS
    assert quarterly.END_REASONS == V.END_REASONS
    assert V.ACTION_NONE in V.ACTIONS


def _module_level_word_lists(tree: ast.Module) -> list[tuple[int, set[str]]]:
    """Literal lists, tuples and sets of three or more strings assigned at module or class level."""
    found = []
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for stmt in body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                for node in ast.walk(stmt.value):
                    if (
                        isinstance(node, ast.Tuple | ast.List | ast.Set)
                        and len(node.elts) >= 3
                        and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts)
                    ):
                        found.append((node.lineno, {e.value for e in node.elts}))  # type: ignore[union-attr]
    return found


def test_no_module_spells_out_a_vocabulary_of_its_own() -> None:
    vocabularies = {
        name: set(value) for name in V.__all__ if isinstance(value := getattr(V, name), tuple) and value
    }
    copies = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "vocabulary.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, words in _module_level_word_lists(tree):
            copies += [
                f"{path.relative_to(REPO)}:{line} copies {name}"
                for name, vocab in vocabularies.items()
                if words <= vocab
            ]
    assert copies == [], "import them from sciatica_outcomes.schemas.vocabulary: " + "; ".join(copies)
