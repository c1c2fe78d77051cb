"""Tests of the validation engine: the invariant as a property, agreement with pandera, strict parsing."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandera.errors as pe
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sciatica_outcomes.ingest import ROW, SourceTable, ingest_paths, validate_paths, validate_sources
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.store import CANONICAL_TABLES, Store
from sciatica_outcomes.synth import generate_cohort

# ------------------------------------------------------------------------------------------ property
_BASE = generate_cohort(n_patients=12, seed=21)
_RAW = {
    name: pl.read_csv(_BASE.tables[name].write_csv().encode(), infer_schema=False)
    for name in CANONICAL_TABLES
}

#: (table, column, corrupt value, rules any of which must be reported for that cell)
_CELL_CORRUPTIONS: dict[str, list[tuple[str, str, str, set[str]]]] = {
    "wrong_type": [
        ("sessions", "rpe", "seven", {"type"}),
        ("sessions", "session_date", "2025-13-45", {"type"}),
        ("measures", "value", "7/10", {"type"}),
        ("episodes", "age_at_start", "4O", {"type"}),
        ("symptom_checks", "saddle_numbness", "maybe", {"type"}),
        ("session_exercises", "sets", "3.5", {"integer"}),
    ],
    "out_of_range": [
        ("sessions", "pain_before", "11", {"range"}),
        ("episodes", "age_at_start", "150", {"range"}),
        ("measures", "value", "1000", {"measure_range", "above_cap"}),
        ("questionnaire_items", "response", "-1", {"range", "response_range"}),
        ("session_exercises", "load_kg", "-2.5", {"range"}),
    ],
    "missing_key": [
        ("sessions", "session_id", "", {"required_value"}),
        ("measures", "measure", "", {"required_value"}),
        ("symptom_checks", "checked_on", "", {"required_value"}),
    ],
    "stray_unicode": [
        ("sessions", "status", "completed\u200b", {"allowed_values"}),
        ("measures", "episode_id", "EP\u00e90001", {"format"}),
        ("session_exercises", "exercise", "glute_bridge\u00a0", {"allowed_values"}),
    ],
}


@dataclass(frozen=True)
class _Corruption:
    kind: str
    table: str
    row: int  # 0-based data row
    column: str
    value: str
    rules: frozenset[str]


@st.composite
def _corruptions(draw: st.DrawFn) -> tuple[list[_Corruption], set[str], set[str], set[str]]:
    n = draw(st.integers(1, 6))
    out: list[_Corruption] = []
    used: set[tuple[str, int]] = set()
    for _ in range(n):
        kind = draw(st.sampled_from([*_CELL_CORRUPTIONS, "duplicate_key", "swapped_dates"]))
        if kind == "duplicate_key":
            table = draw(st.sampled_from(["sessions", "measures"]))
            column = TABLE_SPECS[table].key[-1]
            value, rules = "", frozenset({"duplicate_key"})
        elif kind == "swapped_dates":
            table, column, value, rules = "episodes", "end_date", "", frozenset({"end_before_start"})
        else:
            table, column, value, rule_set = draw(st.sampled_from(_CELL_CORRUPTIONS[kind]))
            rules = frozenset(rule_set)
        height = _RAW[table].height
        row = draw(st.integers(1, height - 1))
        if (table, row) in used or (kind == "duplicate_key" and (table, row - 1) in used):
            continue
        used.add((table, row))
        if kind == "duplicate_key":
            used.add((table, row - 1))
        out.append(_Corruption(kind, table, row, column, value, rules))
    empty = set(draw(st.sets(st.sampled_from(["symptom_checks", "questionnaire_items"]), max_size=1)))
    header_only = set(draw(st.sets(st.sampled_from(["session_exercises"]), max_size=1)))
    extra = set(draw(st.sets(st.sampled_from(list(CANONICAL_TABLES)), max_size=2)))
    return out, empty, header_only, extra


def _set_cell(frame: pl.DataFrame, row: int, column: str, value: str | None) -> pl.DataFrame:
    lit = pl.lit(value if value != "" else None, pl.String)
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row).then(lit).otherwise(pl.col(column)).alias(column)
    )


def _apply(
    corruptions: list[_Corruption], empty: set[str], header_only: set[str], extra: set[str]
) -> tuple[dict[str, pl.DataFrame], list[_Corruption]]:
    frames = dict(_RAW)
    expected: list[_Corruption] = []
    for c in corruptions:
        f = frames[c.table]
        if c.kind == "duplicate_key":
            key = TABLE_SPECS[c.table].key
            for k in key:
                f = _set_cell(f, c.row, k, f[k][c.row - 1])
            expected.append(c)
            expected.append(_Corruption(c.kind, c.table, c.row - 1, c.column, "", c.rules))
        elif c.kind == "swapped_dates":
            start, end = f["start_date"][c.row], f["end_date"][c.row]
            if end is None or end == start:
                continue
            f = _set_cell(_set_cell(f, c.row, "start_date", end), c.row, "end_date", start)
            expected.append(c)
        else:
            f = _set_cell(f, c.row, c.column, c.value)
            expected.append(c)
        frames[c.table] = f
    for t in extra:
        frames[t] = frames[t].with_columns(pl.lit("free text, not stored").alias("notes"))
    for t in header_only:
        frames[t] = frames[t].head(0)
    expected = [c for c in expected if c.table not in empty | header_only]
    return frames, expected


def _write(frames: dict[str, pl.DataFrame], empty: set[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        path = out / f"{name}.csv"
        if name in empty:
            path.write_text("")
        else:
            frame.write_csv(path)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_corruptions())
def test_rows_read_equal_stored_plus_quarantined_and_every_corruption_is_reported(
    case: tuple[list[_Corruption], set[str], set[str], set[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    corruptions, empty, header_only, extra = case
    frames, expected = _apply(corruptions, empty, header_only, extra)
    out = tmp_path_factory.mktemp("corrupt")
    _write(frames, empty, out)
    res = validate_paths([out])
    for t in res.tables:
        written = 0 if t.source.table in empty else frames[t.source.table].height
        assert t.rows_read == written
        assert t.rows_read == t.rows_valid + t.rows_quarantined
        assert t.quarantine["row_number"].is_unique().all()
    errors = res.errors
    for c in expected:
        hit = errors.filter(
            (pl.col("table") == c.table)
            & (pl.col("row") == c.row + 2)
            & (pl.col("column") == c.column)
            & pl.col("rule").is_in(list(c.rules))
        )
        assert hit.height >= 1, (
            f"{c} not reported; got {errors.filter(pl.col('table') == c.table).to_dicts()}"
        )
        if c.kind in _CELL_CORRUPTIONS and c.value:
            assert hit["value"][0] == c.value
        if c.kind == "stray_unicode" and any(ch in c.value for ch in ("\u200b", "\u00a0")):
            assert "<U+" in hit["message"][0], "invisible characters must be visible in the message"
        quarantined = next(t for t in res.tables if t.source.table == c.table).quarantine
        assert c.row + 2 in quarantined["row_number"].to_list()
    for table in extra - empty:
        notes = res.issues.filter(
            (pl.col("rule") == "unknown_column") & (pl.col("column") == "notes") & (pl.col("table") == table)
        )
        assert notes.height == 1 and notes["row"][0] == 1
    # a row is quarantined exactly when it has at least one error
    for t in res.tables:
        err_rows = set(errors.filter(pl.col("file") == t.source.path)["row"].drop_nulls().to_list())
        assert err_rows == set(t.quarantine["row_number"].to_list())


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_corruptions())
def test_store_counts_match_validation(
    case: tuple[list[_Corruption], set[str], set[str], set[str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    corruptions, empty, header_only, extra = case
    frames, _ = _apply(corruptions, empty, header_only, extra)
    out = tmp_path_factory.mktemp("corrupt_store")
    _write(frames, empty, out)
    res = ingest_paths(out, db=out / "o.duckdb")
    with Store(out / "o.duckdb", read_only=True) as store:
        log = store.read("ingest_log")
        quarantine = store.read("quarantine")
        for t in res.validation.tables:
            assert store.read(t.source.table).height == t.rows_valid
    assert (log["rows_read"] == log["rows_stored"] + log["rows_quarantined"]).all()
    assert quarantine.height == sum(t.rows_quarantined for t in res.validation.tables)
    assert log["rows_read"].sum() == sum(0 if n in empty else f.height for n, f in frames.items())


# ---------------------------------------------------------------------------- agreement with pandera
def _typed_source(table: str, frame: pl.DataFrame) -> SourceTable:
    raw = frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + 1).alias(ROW))
    return SourceTable(table, f"{table}.parquet", "parquet", "0" * 64, raw)


def test_compiled_checks_agree_with_pandera_on_every_column_check() -> None:
    """Corrupt typed frames; the polars engine must flag exactly the cells pandera flags (column checks)."""
    t = _BASE.tables
    bad = {
        "sessions": t["sessions"].with_columns(
            pl.when(pl.int_range(pl.len()) % 7 == 0)
            .then(12)
            .otherwise(pl.col("pain_after"))
            .alias("pain_after"),
            pl.when(pl.int_range(pl.len()) % 11 == 0)
            .then(pl.lit("done"))
            .otherwise(pl.col("status"))
            .alias("status"),
            pl.when(pl.int_range(pl.len()) % 13 == 0)
            .then(pl.lit("S 1"))
            .otherwise(pl.col("session_id"))
            .alias("session_id"),
        ),
        "episodes": t["episodes"].with_columns(
            pl.when(pl.int_range(pl.len()) % 3 == 0)
            .then(12)
            .otherwise(pl.col("age_at_start"))
            .alias("age_at_start"),
            pl.when(pl.int_range(pl.len()) % 4 == 0).then(None).otherwise(pl.col("sex")).alias("sex"),
        ),
        "session_exercises": t["session_exercises"].with_columns(
            pl.when(pl.int_range(pl.len()) % 5 == 0).then(0.0).otherwise(pl.col("load_kg")).alias("load_kg"),
            pl.when(pl.int_range(pl.len()) % 9 == 0)
            .then(pl.lit("yoga"))
            .otherwise(pl.col("exercise"))
            .alias("exercise"),
        ),
    }
    column_rules = {"range", "allowed_values", "format", "required_value"}
    for table, frame in bad.items():
        spec = TABLE_SPECS[table]
        with pytest.raises(pe.SchemaErrors) as info:
            spec.schema.validate(frame, lazy=True)
        fc = info.value.failure_cases.filter(
            pl.col("index").is_not_null()
            & (pl.col("check") != "field_uniqueness")
            & (pl.col("schema_context") == "Column")
        )
        expected = {(c, int(i) + 1) for c, i in fc.select("column", "index").iter_rows()}
        res = validate_sources([_typed_source(table, frame)])
        got = {
            (c, r)
            for c, r, rule in res.errors.select("column", "row", "rule").iter_rows()
            if rule in column_rules
        }
        assert got == expected, table


# ---------------------------------------------------------------------------------- strict parsing
@pytest.mark.parametrize(
    ("column", "text", "parsed", "rule"),
    [
        ("pain_before", "7", 7, None),
        ("pain_before", " 7 ", 7, None),
        ("pain_before", "7.0", 7, None),
        ("pain_before", "NA", None, None),
        ("pain_before", "7/10", None, "type"),
        ("pain_before", "7.5", None, "integer"),
        ("pain_before", "seven", None, "type"),
        ("session_date", "2025-03-04", "2025-03-04", None),
        ("session_date", "04/03/2025", None, "type"),
        ("session_date", "2025-02-30", None, "type"),
        ("warmup_neural_glides", "Yes", True, None),
        ("warmup_neural_glides", "0", False, None),
        ("warmup_neural_glides", "2", None, "type"),
        ("status", " completed", None, "allowed_values"),
    ],
)
def test_parsing_is_strict(column: str, text: str, parsed: object, rule: str | None) -> None:
    row = _RAW["sessions"].head(1).with_columns(pl.lit(text).alias(column))
    raw = row.with_columns(pl.lit(2, pl.Int64).alias(ROW))
    res = validate_sources([SourceTable("sessions", "s.csv", "csv", "0" * 64, raw)])
    rules = res.errors.filter(pl.col("column") == column)["rule"].to_list()
    if rule is None:
        assert rules == []
        value = res.tables[0].valid[column][0]
        assert (value.isoformat() if hasattr(value, "isoformat") else value) == parsed
    else:
        assert rules == [rule]
        assert res.tables[0].rows_quarantined == 1


def test_cross_table_rules_use_the_store(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _BASE.tables["episodes"].write_csv(src / "episodes.csv")
    ingest_paths(src / "episodes.csv", db=tmp_path / "o.duckdb")
    sessions = _RAW["sessions"]
    shifted = _set_cell(sessions, 0, "session_date", "1999-01-01")
    shifted.write_csv(src / "sessions.csv")
    alone = validate_paths([src / "sessions.csv"])
    assert "not_checked" in alone.issues["rule"].to_list()
    assert alone.ok
    with_store = validate_paths([src / "sessions.csv"], db=tmp_path / "o.duckdb")
    err = with_store.errors.row(0, named=True)
    assert (err["row"], err["column"], err["rule"]) == (2, "session_date", "outside_episode")
    res = ingest_paths(src / "sessions.csv", db=tmp_path / "o.duckdb")
    assert res.summary()["rows_quarantined"].to_list() == [1]
    shutil.rmtree(src)


@given(st.lists(st.one_of(st.none(), st.sampled_from(["EP1", "EP2", "EP3", ""])), max_size=40))
@settings(max_examples=200, deadline=None)
def test_runs_rebuild_the_column_and_split_at_every_change(values: list[str | None]) -> None:
    from sciatica_outcomes.ingest.validate import _runs  # noqa: PLC0415

    frame = pl.concat(  # several chunks, as a read file has
        [pl.DataFrame({"c": values[:5]}, schema={"c": pl.String}), pl.DataFrame({"c": values[5:]})],
        rechunk=False,
    )
    heads, run = _runs(frame, "c")
    assert heads["v"].gather(run).to_list() == values
    h = heads["v"].to_list()
    assert all(a != b for a, b in itertools.pairwise(h))
    assert run.to_list() == sorted(run.to_list())
