"""Tests of the tabular readers: sniffing, line numbers as a person sees them, unusable files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest import ROW, validate_paths
from sciatica_outcomes.ingest.readers import read_csv_table, read_parquet_table, sniff_csv

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
