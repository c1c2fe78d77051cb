"""CSV number format (``--decimal``, ``--thousands``, ``--delimiter``): explicit, never guessed."""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest import ingest_paths, validate_paths, write_html_report
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.store import Store

runner = CliRunner()
_TABLES = ("episodes", "sessions", "session_exercises", "measures")


def _european(src: Path, out: Path, table: str) -> int:
    """Write ``src`` as a European export: ';' between fields, decimal commas; return the commas written."""
    frame = pl.read_csv(src, infer_schema=False)
    numbers = [c for c, t in TABLE_SPECS[table].dtypes.items() if t.is_numeric() and c in frame.columns]
    frame = frame.with_columns(pl.col(numbers).str.replace(".", ",", literal=True))
    frame.write_csv(out, separator=";")
    return int(frame.select(pl.col(numbers).str.contains(",", literal=True).sum()).sum_horizontal()[0])


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory, csv_dir: Path) -> tuple[Path, Path]:
    canon, euro = tmp_path_factory.mktemp("canon"), tmp_path_factory.mktemp("euro")
    commas = 0
    for t in _TABLES:
        (canon / f"{t}.csv").write_bytes((csv_dir / f"{t}.csv").read_bytes())
        commas += _european(csv_dir / f"{t}.csv", euro / f"{t}.csv", t)
    assert commas > 1000  # the export really writes decimal commas
    return canon, euro


def test_european_csv_lands_the_same_tables_as_the_canonical_one(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    canon, euro = dirs
    a = ingest_paths([canon], tmp_path / "a.duckdb")
    b = ingest_paths([euro], tmp_path / "b.duckdb", decimal=",")
    assert a.validation.ok and b.validation.ok, b.validation.errors.head()
    with (
        Store(tmp_path / "a.duckdb", read_only=True) as sa,
        Store(tmp_path / "b.duckdb", read_only=True) as sb,
    ):
        for t in _TABLES:
            assert sa.read(t).height > 0
            assert_frame_equal(sa.read(t), sb.read(t))
    # the CLI, with the delimiter given instead of sniffed
    res = runner.invoke(
        app, ["ingest", str(euro), "--db", str(tmp_path / "c.duckdb"), "--decimal", ",", "--delimiter", ";"]
    )
    assert res.exit_code == 0, res.output
    with (
        Store(tmp_path / "a.duckdb", read_only=True) as sa,
        Store(tmp_path / "c.duckdb", read_only=True) as sc,
    ):
        assert_frame_equal(sa.read("measures"), sc.read("measures"))


def test_without_the_option_a_decimal_comma_is_a_type_error_that_names_it(
    tmp_path: Path, dirs: tuple[Path, Path]
) -> None:
    _, euro = dirs
    res = validate_paths([euro / "episodes.csv", euro / "measures.csv"])
    err = res.errors.filter((pl.col("table") == "measures") & (pl.col("rule") == "type"))
    assert err.height > 0 and err["value"].str.contains(r"^-?\d+,\d+$").all()
    assert err["message"].str.contains("pass --decimal ,", literal=True).all()
    # and one notice says it once, first in the HTML report
    notes = [n for n in res.notices if n.rule == "decimal_comma"]
    assert len(notes) == 1 and notes[0].file.endswith("measures.csv")
    assert notes[0].message.startswith(f"{err.height:,} number cell(s) are written with a decimal comma")
    page = write_html_report(res, tmp_path / "r.html").read_text()
    assert page.index("Start here") < page.index("Sources") and html.escape(notes[0].message) in page


def _measures(tmp_path: Path, values: list[str]) -> Path:
    body = "".join(f"EP1;2026-01-0{i + 1};walk_tolerance_min;{v}\n" for i, v in enumerate(values))
    path = tmp_path / "measures.csv"
    path.write_text("episode_id;assessed_on;measure;value\n" + body)
    return path


def test_decimal_and_thousands_are_strict_nothing_is_reinterpreted(tmp_path: Path) -> None:
    path = _measures(tmp_path, ["7,5", "7.5", "1.234,5", "12.34", "1234", " 8,25 "])
    res = validate_paths([path], decimal=",")
    valid = res.tables[0].valid
    assert valid.sort("assessed_on")["value"].to_list() == [7.5, 1234.0, 8.25]
    bad = res.errors.select("row", "value", "rule").rows()
    assert bad == [(3, "7.5", "type"), (4, "1.234,5", "type"), (5, "12.34", "type")]
    assert "decimal mark ','" in res.errors["message"][0]
    res = validate_paths([path], decimal=",", thousands=".")
    valid = res.tables[0].valid.sort("assessed_on")
    assert valid["value"].to_list() == [7.5, 1234.5, 1234.0, 8.25]
    # a '.' that is not a thousands separator in its place (7.5, 12.34) is still refused, not read as 75
    assert res.errors.select("row", "value").rows() == [(3, "7.5"), (5, "12.34")]


def test_number_format_options_are_checked(tmp_path: Path) -> None:
    path = _measures(tmp_path, ["7,5"])
    with pytest.raises(UnusableInputError, match="also the decimal mark"):
        validate_paths([path], decimal=",", thousands=",")
    with pytest.raises(UnusableInputError, match=r"expected '\.' or ','"):
        validate_paths([path], decimal=";")
    comma = tmp_path / "d" / "measures.csv"
    comma.parent.mkdir()
    comma.write_text('episode_id,assessed_on,measure,value\nEP1,2026-01-01,odi,"7,5"\n')
    with pytest.raises(UnusableInputError, match="pass --delimiter"):
        validate_paths([comma], decimal=",")
    # a comma-delimited file with quoted decimal commas is read when the delimiter is given
    res = validate_paths([comma], decimal=",", delimiter=",")
    assert res.tables[0].valid["value"].to_list() == [7.5]
    cli = runner.invoke(app, ["validate", str(path), "--decimal", ",", "--thousands", ","])
    assert cli.exit_code == 2 and "must differ" in " ".join(cli.output.split())
