"""Tests of the tabular readers: sniffing, line numbers as a person sees them, unusable files."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest import ROW, SourceTable, readers, validate_paths
from sciatica_outcomes.ingest.readers import read_csv_table, read_parquet_table, sniff_csv
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.store import Store

HEADER = (
    "episode_id,checked_on,saddle_numbness,bladder_bowel_change,progressive_weakness,bilateral_symptoms,"
    "new_numbness,action_taken"
)
ROWS = [
    "EP1,2025-01-02,false,false,false,false,false,none",
    "EP1,2025-01-09,false,false,false,false,false,none",
    "EP1,2025-01-16,false,false,true,false,false,referred_urgent",
]


def test_sniffs_semicolons_bom_and_windows_encoding(tmp_path: Path) -> None:
    text = "\n".join([HEADER, *ROWS]).replace(",", ";").replace("referred_urgent", "référé")
    p = tmp_path / "symptom_checks.csv"
    p.write_bytes(text.encode("cp1252"))
    assert sniff_csv(p.read_bytes())[1] == ";"
    src = read_csv_table(p, "symptom_checks", "0")
    assert src.raw["action_taken"].to_list() == ["none", "none", "référé"]
    assert src.raw[ROW].to_list() == [2, 3, 4]
    assert [n.rule for n in src.notices] == ["encoding"]
    p.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    src = read_csv_table(p, "symptom_checks", "0")
    assert src.raw.columns[0] == "episode_id"
    assert src.raw["action_taken"].to_list() == ["none", "none", "référé"]
    (tmp_path / "u16").mkdir()
    u16 = tmp_path / "u16" / "symptom_checks.csv"
    u16.write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-16")
    assert read_csv_table(u16, "symptom_checks", "0").raw.height == 3


def test_line_numbers_count_blank_lines_and_multiline_cells(tmp_path: Path) -> None:
    p = tmp_path / "symptom_checks.csv"
    p.write_text(
        HEADER + "\n" + ROWS[0] + "\n\n" + ROWS[1].replace("none", '"no\nne"') + "\n" + ROWS[2] + "\n"
    )
    src = read_csv_table(p, "symptom_checks", "0")
    assert src.raw[ROW].to_list() == [2, 4, 6]
    assert [n.rule for n in src.notices] == ["blank_row"]
    res = validate_paths([p])
    err = res.errors.row(0, named=True)
    assert (err["row"], err["column"], err["rule"]) == (4, "action_taken", "allowed_values")


def test_empty_header_only_ragged_and_duplicate_header(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    empty = tmp_path / "a" / "symptom_checks.csv"
    empty.write_text("")
    res = validate_paths([empty])
    assert res.tables[0].rows_read == 0 and res.ok
    assert "empty_file" in res.issues["rule"].to_list()
    (tmp_path / "b").mkdir()
    header_only = tmp_path / "b" / "symptom_checks.csv"
    header_only.write_text(HEADER + "\n")
    assert validate_paths([header_only]).tables[0].rows_read == 0
    (tmp_path / "c").mkdir()
    ragged = tmp_path / "c" / "symptom_checks.csv"
    ragged.write_text(HEADER + "\n" + ROWS[0] + ",extra\n")
    with pytest.raises(UnusableInputError, match="cannot parse as CSV"):
        validate_paths([ragged])
    (tmp_path / "d").mkdir()
    dup = tmp_path / "d" / "symptom_checks.csv"
    dup.write_text(HEADER + ",new_numbness\n" + ROWS[0] + ",false\n")
    with pytest.raises(UnusableInputError, match="more than once"):
        validate_paths([dup])


def test_missing_required_column_rejects_every_row(tmp_path: Path) -> None:
    p = tmp_path / "symptom_checks.csv"
    p.write_text(
        "\n".join(
            [
                HEADER.replace(",new_numbness", ""),
                *(r.rsplit(",", 2)[0] + "," + r.rsplit(",", 1)[1] for r in ROWS),
            ]
        )
        + "\n"
    )
    res = validate_paths([p])
    t = res.tables[0]
    assert (t.rows_read, t.rows_quarantined) == (3, 3)
    assert set(res.errors["rule"]) == {"missing_column"}
    assert res.errors["row"].to_list() == [2, 3, 4]


def test_parquet_native_types_are_checked_not_coerced(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "episode_id": ["EP1", "EP1"],
            "checked_on": [datetime(2025, 1, 2), datetime(2025, 1, 9, 10)],
            "saddle_numbness": [False, True],
            "bladder_bowel_change": [0, 1],
            "progressive_weakness": ["false", "no"],
            "bilateral_symptoms": [False, False],
            "new_numbness": [False, False],
        }
    )
    p = tmp_path / "symptom_checks.parquet"
    frame.write_parquet(p)
    src = read_parquet_table(p, "symptom_checks", "0")
    assert src.raw[ROW].to_list() == [1, 2]
    res = validate_paths([p])
    errs = {(r["row"], r["column"], r["rule"]) for r in res.errors.iter_rows(named=True)}
    assert errs == {(2, "checked_on", "type")}
    assert res.tables[0].valid["bladder_bowel_change"].to_list() == [False]


# ------------------------------------------------------------------------ fast typed read of CSV files
EXERCISE_HEADER = "session_id,exercise,set_index,sets,reps,hold_s,load_kg,band,pain_during,modified"
EXERCISE_ROW = {
    "session_id": "SE1",
    "exercise": "bird_dog",
    "set_index": "1",
    "sets": "3",
    "reps": "10",
    "hold_s": "",
    "load_kg": "12.5",
    "band": "",
    "pain_during": "3",
    "modified": "false",
}
#: Cells people type into number and true/false columns, including ones neither parser should accept.
TRICKY = {
    "reps": [
        "7",
        "+7",
        "-7",
        "007",
        "-0",
        "+0",
        "7.0",
        "7.",
        "1e1",
        " 7",
        "7 ",
        "NA",
        "na",
        "nan",
        "inf",
        "0x10",
        "9223372036854775807",
        "9223372036854775808",
        "1_000",
        "1,000",
        "\u0663",
        "7/10",
        "-",
        "\u00a07",
        "7\u200b",
    ],
    "load_kg": [
        "7",
        "7.5",
        "7.50",
        ".5",
        "5.",
        "+5",
        "-5",
        "1e1",
        "1E1",
        "1e400",
        "inf",
        "-inf",
        "Infinity",
        "nan",
        "NaN",
        "-nan",
        "NA",
        "7,5",
        " 7.5",
        "7.5 ",
        "1_0",
        "0x1p3",
        "1.5e",
        "e5",
        "+.5",
        "5e+1",
        "nan(1)",
        "INF",
    ],
    "modified": [
        "true",
        "false",
        "True",
        "FALSE",
        "TRUE",
        "yes",
        "no",
        "1",
        "0",
        "t",
        "f",
        "T",
        " true",
        "NA",
        "tru",
    ],
}


def _outcome(src: SourceTable) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    from sciatica_outcomes.ingest import validate_sources  # noqa: PLC0415

    src.reread = None  # compare the typed read itself, not its re-read as text
    res = validate_sources([src])
    valid = res.tables[0].valid.rows()
    issues = res.errors.select("row", "column", "rule").sort("row", "column", "rule").rows()
    return valid, issues


def _compare_typed_and_text(tmp_path: Path, column: str, cell: str) -> bool:
    """Validate one row read both ways; return whether the typed read was used."""
    from sciatica_outcomes.schemas import TABLE_SPECS  # noqa: PLC0415

    values = {**EXERCISE_ROW, column: '"' + cell.replace('"', '""') + '"'}
    p = tmp_path / "session_exercises.csv"
    p.write_text(EXERCISE_HEADER + "\n" + ",".join(values.values()) + "\n", encoding="utf-8")
    typed = read_csv_table(p, "session_exercises", "0", typed=TABLE_SPECS["session_exercises"].dtypes)
    text = read_csv_table(p, "session_exercises", "0")
    assert text.raw.schema[column] == pl.String
    used = typed.raw.schema[column] != pl.String
    if used:
        assert _outcome(typed) == _outcome(text), (column, cell)
    return used


@pytest.mark.parametrize(("column", "cell"), [(c, v) for c, cells in TRICKY.items() for v in cells])
def test_typed_csv_read_accepts_only_what_the_strict_parser_accepts(
    tmp_path: Path, column: str, cell: str
) -> None:
    used = _compare_typed_and_text(tmp_path, column, cell)
    # plain numbers and true/false must take the fast path, or it is no faster than the text read
    if cell in ("7", "12.5", "7.5", "true", "false"):
        assert used


@given(
    column=st.sampled_from(list(TRICKY)),
    cell=st.text(alphabet="0123456789+-.eEinfaNAtrusl _,x\u00a0", max_size=8),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_typed_csv_read_agrees_with_the_strict_parser_on_random_cells(
    tmp_path: Path, column: str, cell: str
) -> None:
    _compare_typed_and_text(tmp_path, column, cell)


def test_problems_in_a_typed_read_are_reported_as_written(tmp_path: Path) -> None:
    from sciatica_outcomes.ingest import ingest_paths  # noqa: PLC0415

    good = ",".join(EXERCISE_ROW.values())
    bad = ",".join({**EXERCISE_ROW, "set_index": "02", "load_kg": "12.50", "pain_during": "11"}.values())
    sessions = tmp_path / "sessions.csv"
    sessions.write_text(
        "session_id,episode_id,session_date,status\nSE1,EP1,2025-01-02,completed\n", encoding="utf-8"
    )
    episodes = tmp_path / "episodes.csv"
    episodes.write_text(
        "episode_id,patient_id,clinic_id,start_date,age_at_start,sex\nEP1,PT1,CL01,2025-01-01,52,F\n",
        encoding="utf-8",
    )
    p = tmp_path / "session_exercises.csv"
    p.write_text(EXERCISE_HEADER + "\n" + good + "\n" + bad + "\n", encoding="utf-8")
    res = ingest_paths([episodes, sessions, p], db=tmp_path / "s.duckdb")
    err = res.validation.errors.filter(pl.col("table") == "session_exercises")
    assert err.select("row", "column", "value", "rule").rows() == [(3, "pain_during", "11", "range")]
    exercises = next(t for t in res.validation.tables if t.source.table == "session_exercises")
    assert exercises.source.raw.schema["load_kg"] == pl.String  # re-read as text because a row failed
    with Store(tmp_path / "s.duckdb", read_only=True) as store:
        q = store.quarantined("session_exercises")
        stored = store.read("session_exercises")
        log = store.read("ingest_log")
    digests = dict(zip(log["table_name"], log["sha256"], strict=True))
    for f in (episodes, sessions, p):  # the re-read source keeps its file's hash
        assert digests[f.stem] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert q.select("row_number", "set_index", "load_kg", "pain_during").rows() == [(3, "02", "12.50", "11")]
    assert stored.select("set_index", "load_kg").rows() == [(1, 12.5)]
    clean = next(t for t in res.validation.tables if t.source.table == "episodes")
    assert clean.source.reread is not None  # the clean file kept its fast typed read


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_non_finite_numbers_are_type_errors_in_text_and_typed_sources(tmp_path: Path, cell: str) -> None:
    from sciatica_outcomes.ingest import validate_sources  # noqa: PLC0415

    values = {**EXERCISE_ROW, "load_kg": cell}
    p = tmp_path / "session_exercises.csv"
    p.write_text(EXERCISE_HEADER + "\n" + ",".join(values.values()) + "\n", encoding="utf-8")
    res = validate_paths([p])
    assert res.errors.filter(pl.col("severity") == "error").select("column", "value", "rule").rows() == [
        ("load_kg", cell, "type")
    ]
    assert "not a finite number" in res.errors.filter(pl.col("rule") == "type")["message"][0]
    typed = pl.read_csv(p, schema_overrides={"load_kg": pl.Float64}, infer_schema=False).with_columns(
        pl.lit(2, pl.Int64).alias(ROW)
    )
    res = validate_sources([SourceTable("session_exercises", "x.parquet", "parquet", "0", typed)])
    assert res.errors.filter(pl.col("severity") == "error").select("column", "rule").rows() == [
        ("load_kg", "type")
    ]
    assert res.tables[0].rows_quarantined == 1


def test_typed_read_numbers_lines_of_multiline_cells_and_skips_blank_lines(tmp_path: Path) -> None:
    from sciatica_outcomes.schemas import TABLE_SPECS  # noqa: PLC0415

    p = tmp_path / "measures.csv"
    p.write_text(
        "episode_id,assessed_on,measure,value,stopped_reason,cap_min,instrument_version\n"
        "EP1,2025-01-02,nprs_leg,7.0,,,\n"
        "\n"
        'EP1,2025-01-02,odi,40,,,"2.1a\nUK"\n'
        "EP1,2025-01-09,nprs_leg,6,,,\n",
        encoding="utf-8",
    )
    src = read_csv_table(p, "measures", "0", typed=TABLE_SPECS["measures"].dtypes)
    assert src.reread is not None and src.raw.schema["value"] == pl.Float64  # the fast path was taken
    assert src.raw[ROW].to_list() == [2, 4, 6]
    assert src.raw["instrument_version"].to_list() == [None, "2.1a\nUK", None]
    assert [n.rule for n in src.notices] == ["blank_row"]
    text = read_csv_table(p, "measures", "0")
    assert text.raw[ROW].to_list() == [2, 4, 6] and [n.message for n in text.notices] == [
        n.message for n in src.notices
    ]


def test_an_encoding_that_turns_late_is_one_message_naming_the_line(tmp_path: Path) -> None:
    header = b"session_id,episode_id,session_date,status\n"
    body = b"".join(b"S%05d,E0001,2024-03-01,completed\n" % i for i in range(3000))
    # starts cp1252 (an e-acute in the first 64 KiB), then a byte cp1252 lacks on the last line
    path = tmp_path / "sessions.csv"
    path.write_bytes(header + b"S0,E0001,2024-03-01,caf\xe9\n" + body + b"S9,E0001,2024-03-01,\x81\n")
    with pytest.raises(
        UnusableInputError, match=r"line 3,003 holds byte 0x81, which is neither UTF-8 nor cp1252"
    ):
        read_csv_table(path, "sessions", typed=TABLE_SPECS["sessions"].dtypes)
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2, res.output
    assert "mixes text encodings" in res.output and "Traceback" not in res.output
    # UTF-8 that turns cp1252 late stays a notice, as for cp1252 files
    path.write_bytes(header + body + b"S9,E0001,2024-03-01,caf\xe9\n")
    src = read_csv_table(path, "sessions", typed=TABLE_SPECS["sessions"].dtypes)
    assert src.raw["status"][-1] == "café"
    assert [n.message for n in src.notices if n.rule == "encoding"] == [
        "decoded as cp1252 (invalid UTF-8 further in)"
    ]


@pytest.mark.parametrize(
    "content",
    [b"\x00" * 100_000, bytes(range(256)) * 40, b"session_id,status\nS1,completed\n\x00\x01\x02"],
    ids=["nul_bytes", "binary", "text_then_nul"],
)
def test_a_binary_file_named_like_a_table_is_not_a_text_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "sessions.csv"
    path.write_bytes(content)
    with pytest.raises(UnusableInputError, match="not a text file"):
        read_csv_table(path, "sessions", typed=TABLE_SPECS["sessions"].dtypes)
    db = tmp_path / "o.duckdb"
    res = CliRunner().invoke(app, ["ingest", str(path), "--db", str(db)])
    assert res.exit_code == 2, res.output[:300]
    assert "not a text file" in res.output and "Traceback" not in res.output
    assert not db.exists()


def test_limits_refuse_wide_files_long_header_lines_and_huge_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typed = TABLE_SPECS["sessions"].dtypes
    path = tmp_path / "sessions.csv"
    monkeypatch.setattr(readers, "MAX_COLUMNS", 5)
    path.write_text(
        "session_id,episode_id,session_date,status,rpe,pain_before\nS1,E1,2024-01-01,completed,3,2\n"
    )
    with pytest.raises(UnusableInputError, match=r"6 columns, more than the 5 .*\(MAX_COLUMNS\)"):
        read_csv_table(path, "sessions", typed=typed)
    pq = tmp_path / "sessions.parquet"
    pl.read_csv(path, infer_schema=False).write_parquet(pq)
    with pytest.raises(UnusableInputError, match=r"6 columns.*MAX_COLUMNS"):
        read_parquet_table(pq, "sessions", "")
    monkeypatch.setattr(readers, "MAX_COLUMNS", 1_000)
    monkeypatch.setattr(readers, "MAX_LINE_BYTES", 100)
    path.write_bytes(b"session_id," * 20)
    with pytest.raises(UnusableInputError, match=r"header line is longer than 100 bytes \(MAX_LINE_BYTES\)"):
        read_csv_table(path, "sessions", typed=typed)
    monkeypatch.setattr(readers, "MAX_CELL_BYTES", 50)
    # a huge text cell (status) and a huge number cell (rpe, which the typed read leaves to the text read)
    for row, column in (
        ("S2,E1,2024-01-01," + "x" * 60 + ",3", "status"),
        ("S2,E1,2024-01-01,missed," + "9" * 60, "rpe"),
    ):
        path.write_text(
            f"session_id,episode_id,session_date,status,rpe\nS1,E1,2024-01-01,completed,3\n{row}\n"
        )
        with pytest.raises(
            UnusableInputError, match=rf"line 3, column {column}: a cell of 6\d bytes.*MAX_CELL_BYTES"
        ):
            read_csv_table(path, "sessions", typed=typed)


def test_a_50_mb_line_is_refused_within_seconds(tmp_path: Path) -> None:
    no_break = tmp_path / "sessions.csv"
    no_break.write_bytes(b"a" * (50 << 20))
    header_then_line = tmp_path / "other" / "sessions.csv"
    header_then_line.parent.mkdir()
    header_then_line.write_bytes(b"session_id,status\nS1," + b"b" * (50 << 20))
    for path, what in ((no_break, "header line is longer"), (header_then_line, "line 2, column status")):
        t0 = time.perf_counter()
        res = CliRunner().invoke(app, ["validate", str(path)])
        elapsed = time.perf_counter() - t0
        assert res.exit_code == 2, res.output[:300]
        assert what in res.output and "Traceback" not in res.output
        assert elapsed < 5, elapsed
