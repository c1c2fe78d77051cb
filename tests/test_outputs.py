"""Tests of the output writers: atomic files and the one spreadsheet-safe CSV rule."""

from __future__ import annotations

import csv
import errno
import os
import stat
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from sciatica_outcomes.outputs import (
    atomic_output,
    neutralise_cell,
    neutralise_frame,
    restore_cells,
    write_safe_csv,
)

#: (cell as held, cell as written): what a spreadsheet would evaluate gets a leading apostrophe.
CELLS = [
    ("-1-1", "'-1-1"),  # LibreOffice and Excel show -2
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("+1+1", "'+1+1"),
    ("-", "'-"),
    (" =1+1", "' =1+1"),  # leading blanks are trimmed by some importers
    ("\t=1", "'\t=1"),
    ("\rx", "'\rx"),
    ("x-1", "x-1"),
    ("\uff1d1+1", "'\uff1d1+1"),  # full-width equals sign
    ("'=1+1", "''=1+1"),  # already quoted: one more, so that the rule can be undone exactly
    ("'abc", "'abc"),
    ("-1.5", "-1.5"),  # plain numbers are read as themselves
    ("+3", "+3"),
    ("-2e3", "-2e3"),
    ("CL01", "CL01"),
    ("a=b", "a=b"),
    ("", ""),
]


@pytest.mark.parametrize(("held", "written"), CELLS)
def test_each_cell_is_written_by_the_rule(held: str, written: str) -> None:
    assert neutralise_cell(held) == written
    assert neutralise_frame(pl.DataFrame({"c": [held]}))["c"].to_list() == [written]


def test_safe_csv_keeps_numbers_numbers_and_quotes_formulas(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "provider": ["-1-1", "CL02", "=1+1"],
            "o_minus_e": [-2.5, -1.0, 0.0],
            "n": [-3, 4, 5],
            "band": pl.Series(["@x", "within", "above"], dtype=pl.Categorical),
        }
    )
    path = write_safe_csv(frame, tmp_path / "out" / "t.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["provider", "o_minus_e", "n", "band"],
        ["'-1-1", "-2.5", "-3", "'@x"],
        ["CL02", "-1.0", "4", "within"],
        ["'=1+1", "0.0", "5", "above"],
    ]
    # numeric cells are unquoted in the file, so a spreadsheet reads them as numbers
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[1] == '"\'-1-1",-2.5,-3,"\'@x"'


@given(st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=20))
def test_neutralising_is_undone_exactly_and_the_scalar_rule_agrees(cells: list[str | None]) -> None:
    frame = pl.DataFrame({"c": cells}, schema={"c": pl.String})
    safe = neutralise_frame(frame)
    assert safe["c"].to_list() == [None if c is None else neutralise_cell(c) for c in cells]
    assert_frame_equal(restore_cells(safe), frame)


def test_atomic_output_leaves_no_file_when_the_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous")
    with pytest.raises(OSError, match="No space left"), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_atomic_output_mode_is_set_before_the_content(tmp_path: Path) -> None:
    target = tmp_path / "key.csv"
    with atomic_output(target, mode=0o600) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
        tmp.write_text("secret")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "secret"
