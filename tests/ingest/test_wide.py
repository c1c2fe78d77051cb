"""Wide visit spreadsheets (``--layout visits-wide``, ``--mapping``): reshaped into the long tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest import ingest_paths, validate_paths
from sciatica_outcomes.ingest.wide import read_mapping
from sciatica_outcomes.store import Store
from tests.ingest.conftest import write_workbook

runner = CliRunner()
_VISIT = ["episode_id", "assessed_on"]


def _to_wide(measures: pl.DataFrame, items: pl.DataFrame) -> pl.DataFrame:
    """The visits-wide form of long ``measures`` and ``questionnaire_items`` text frames."""
    parts = [measures.pivot(on="measure", index=_VISIT, values="value")]
    for attr in ("stopped_reason", "cap_min"):
        sub = measures.filter(pl.col(attr).is_not_null())
        sub = sub.with_columns(pl.format("{}.{}", pl.col("measure"), pl.lit(attr)).alias("__c"))
        parts.append(sub.pivot(on="__c", index=_VISIT, values=attr))
    versions = pl.concat(
        [
            measures.select(*_VISIT, pl.col("measure").alias("i"), "instrument_version"),
            items.select(*_VISIT, pl.col("instrument").alias("i"), "instrument_version"),
        ]
    ).filter(pl.col("instrument_version").is_not_null())
    versions = versions.unique().with_columns(pl.format("{}.instrument_version", pl.col("i")).alias("__c"))
    parts.append(versions.pivot(on="__c", index=_VISIT, values="instrument_version"))
    named = items.with_columns(pl.format("{}.{}", pl.col("instrument"), pl.col("item")).alias("__c"))
    parts.append(named.pivot(on="__c", index=_VISIT, values="response"))
    wide = parts[0]
    for p in parts[1:]:
        wide = wide.join(p, on=_VISIT, how="full", coalesce=True)
    return wide.sort(_VISIT)


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory: pytest.TempPathFactory, csv_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("long")
    for t in ("episodes", "measures", "questionnaire_items"):
        (out / f"{t}.csv").write_bytes((csv_dir / f"{t}.csv").read_bytes())
    return out


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory: pytest.TempPathFactory, long_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("wide")
    (out / "episodes.csv").write_bytes((long_dir / "episodes.csv").read_bytes())
    m = pl.read_csv(long_dir / "measures.csv", infer_schema=False)
    q = pl.read_csv(long_dir / "questionnaire_items.csv", infer_schema=False)
    _to_wide(m, q).write_csv(out / "visits.csv")
    return out


def _tables(db: Path) -> dict[str, pl.DataFrame]:
    with Store(db, read_only=True) as store:
        return {t: store.read(t) for t in ("episodes", "measures", "questionnaire_items")}


def test_wide_sheet_lands_the_same_tables_as_its_long_equivalent(
    tmp_path: Path, long_dir: Path, wide_dir: Path
) -> None:
    long = ingest_paths([long_dir], tmp_path / "long.duckdb")
    wide = ingest_paths([wide_dir], tmp_path / "wide.duckdb", layout="visits-wide")
    assert long.validation.ok and wide.validation.ok, wide.validation.errors
    a, b = _tables(tmp_path / "long.duckdb"), _tables(tmp_path / "wide.duckdb")
    assert a["measures"].height > 1000 and a["questionnaire_items"].height > 1000
    for t in a:
        assert_frame_equal(a[t], b[t])
    reshaped = [n for n in wide.validation.notices if n.rule == "reshaped"]
    assert len(reshaped) == 1 and f"{a['measures'].height:,} measures rows" in reshaped[0].message


def _planted(dir_: Path, wide_dir: Path) -> Path:
    dir_.mkdir()
    (dir_ / "episodes.csv").write_bytes((wide_dir / "episodes.csv").read_bytes())
    wide = pl.read_csv(wide_dir / "visits.csv", infer_schema=False)
    row = pl.int_range(pl.len())
    wide = wide.with_columns(
        pl.when(row == 2).then(pl.lit("7,5")).otherwise(pl.col("nprs_leg")).alias("nprs_leg"),
        pl.when(row == 4).then(pl.lit("EP_UNKNOWN")).otherwise(pl.col("episode_id")).alias("episode_id"),
        pl.when(row == 6).then(pl.lit("9")).otherwise(pl.col("odi.lifting")).alias("odi.lifting"),
        pl.when(row == 8)
        .then(pl.lit("bored"))
        .otherwise(pl.col("walk_tolerance_min.stopped_reason"))
        .alias("walk_tolerance_min.stopped_reason"),
    )
    wide.write_csv(dir_ / "visits.csv")
    return dir_


def test_every_planted_defect_is_reported_at_its_line_and_source_column(
    tmp_path: Path, wide_dir: Path
) -> None:
    bad = _planted(tmp_path / "bad", wide_dir)
    res = validate_paths([bad], layout="visits-wide")
    err = res.errors.filter(pl.col("file").str.ends_with("visits.csv"))
    got = {(r["row"], r["column"], r["value"], r["rule"]) for r in err.iter_rows(named=True)}
    # data line i of the sheet is line i + 2 (header = line 1)
    assert (4, "nprs_leg", "7,5", "type") in got
    assert (8, "odi.lifting", "9", "response_range") in got
    assert (10, "walk_tolerance_min.stopped_reason", "bored", "allowed_values") in got
    unknown = {(r[0], r[1], r[3]) for r in got if r[2] == "EP_UNKNOWN"}
    assert unknown == {(6, "episode_id", "foreign_key")}
    # line 4 keeps its good measures: only nprs_leg is quarantined from it
    m = next(t for t in res.tables if t.source.table == "measures")
    line4 = m.quarantine.filter(pl.col("row_number") == 4)
    assert [json.loads(r)["measure"] for r in line4["record"]] == ["nprs_leg"]
    assert json.loads(line4["errors"][0])[0]["column"] == "nprs_leg"
    wide = pl.read_csv(wide_dir / "visits.csv", infer_schema=False)
    cells_line4 = wide.row(2, named=True)
    stored_line4 = m.valid.filter(
        (pl.col("episode_id") == cells_line4["episode_id"])
        & (pl.col("assessed_on").cast(pl.String) == cells_line4["assessed_on"])
    )
    n_measures = sum(
        1 for c, v in cells_line4.items() if v is not None and c in set(m.valid["measure"].to_list())
    )
    assert stored_line4.height == n_measures - 1 and "nprs_leg" not in stored_line4["measure"].to_list()
    # the message of the decimal comma names the option
    msg = err.filter(pl.col("value") == "7,5")["message"][0]
    assert "--decimal ," in msg


def test_mapping_file_names_columns_and_problems_name_the_sheets_headers(tmp_path: Path) -> None:
    eps = "episode_id,patient_id,clinic_id,start_date,age_at_start,sex\nEP1,PT1,CL1,2026-01-01,40,F\n"
    (tmp_path / "episodes.csv").write_text(eps)
    (tmp_path / "clinic.csv").write_text(
        "Episode,Visit date,Leg pain (0-10),Oswestry %,ODI version,ODI Q3,Notes\n"
        "EP1,2026-01-02,6,40,2.1a,3,first\n"
        "EP1,2026-02-02,12,30,2.1a,2,\n"
    )
    toml = tmp_path / "map.toml"
    toml.write_text(
        "[columns]\n"
        '"Episode" = "episode_id"\n"Visit date" = "assessed_on"\n"Leg pain (0-10)" = "nprs_leg"\n'
        '"Oswestry %" = "odi"\n"ODI version" = "odi.instrument_version"\n"ODI Q3" = "odi.lifting"\n'
    )
    csvmap = tmp_path / "map.csv"
    csvmap.write_text(
        "column,target\nEpisode,episode_id\nVisit date,assessed_on\nLeg pain (0-10),nprs_leg\n"
        "Oswestry %,odi\nODI version,odi.instrument_version\nODI Q3,odi.lifting\n"
    )
    assert read_mapping(toml) == read_mapping(csvmap).__class__(read_mapping(csvmap).columns, str(toml))
    for mp in (toml, csvmap):
        res = validate_paths([tmp_path / "episodes.csv", tmp_path / "clinic.csv"], mapping=mp)
        err = res.errors
        assert err.select("row", "column", "value", "rule").rows() == [
            (3, "Leg pain (0-10)", "12", "measure_range")
        ]
        m = next(t for t in res.tables if t.source.table == "measures")
        assert m.valid.sort("assessed_on", "measure").select(
            "measure", "value", "instrument_version"
        ).rows() == [
            ("nprs_leg", 6.0, None),
            ("odi", 40.0, "2.1a"),
            ("odi", 30.0, "2.1a"),
        ]
        notes = [n for n in res.notices if n.rule == "unknown_column"]
        assert [n.column for n in notes] == ["Notes"]


def test_bad_mapping_files_are_refused_with_the_line_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("column,target\nLeg,nprs_legg\n")
    with pytest.raises(UnusableInputError, match=r"line 2: column 'Leg' is mapped to 'nprs_legg'"):
        read_mapping(bad)
    bad.write_text("column,target\nA,odi\nB,odi\n")
    with pytest.raises(UnusableInputError, match="both mapped to 'odi'"):
        read_mapping(bad)
    toml = tmp_path / "m.toml"
    toml.write_text("columns = 3\n")
    with pytest.raises(UnusableInputError, match=r"\[columns\] table"):
        read_mapping(toml)


def test_a_wide_sheet_read_as_long_gets_one_message_with_the_fix(tmp_path: Path, wide_dir: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "measures.csv").write_bytes((wide_dir / "visits.csv").read_bytes())
    res = runner.invoke(app, ["validate", str(d / "measures.csv")])
    assert res.exit_code == 2, res.output
    assert res.output.count("error:") == 1 and "missing_column" not in res.output
    flat = " ".join(res.output.split())
    assert "looks like a wide visit sheet" in flat and "--layout visits-wide" in flat
    # named after no table: the same hint instead of "cannot tell which table"
    res = runner.invoke(app, ["validate", str(wide_dir / "visits.csv")])
    assert res.exit_code == 2 and "--layout visits-wide" in " ".join(res.output.split())
    # declared: the sheet validates (exit 0)
    ok = runner.invoke(app, ["validate", str(wide_dir), "--layout", "visits-wide"])
    assert ok.exit_code == 0, ok.output


def test_a_wide_sheet_without_its_visit_columns_is_refused(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("episode_id,date,odi\nEP1,2026-01-01,30\n")
    with pytest.raises(UnusableInputError, match="needs a assessed_on column"):
        validate_paths([tmp_path / "v.csv"], layout="visits-wide")
    (tmp_path / "w.csv").write_text("episode_id,assessed_on,visit\nEP1,2026-01-01,1\n")
    with pytest.raises(UnusableInputError, match="no measure or questionnaire-item column"):
        validate_paths([tmp_path / "w.csv"], layout="visits-wide")
    res = runner.invoke(app, ["validate", str(tmp_path / "w.csv"), "--layout", "wide"])
    assert res.exit_code == 2 and "unknown layout 'wide'" in res.output


def test_a_european_wide_sheet_lands_the_same_tables(tmp_path: Path, long_dir: Path, wide_dir: Path) -> None:
    euro = tmp_path / "euro"
    euro.mkdir()
    (euro / "episodes.csv").write_bytes((wide_dir / "episodes.csv").read_bytes())
    wide = pl.read_csv(wide_dir / "visits.csv", infer_schema=False)
    numbers = [c for c in wide.columns if c not in _VISIT and not c.endswith(("_version", "_reason"))]
    wide.with_columns(pl.col(numbers).str.replace(".", ",", literal=True)).write_csv(
        euro / "visits.csv", separator=";"
    )
    line = (euro / "visits.csv").read_text().splitlines()[1]
    assert ";" in line and re.search(r"\d,\d", line)
    ep = pl.read_csv(long_dir / "episodes.csv", infer_schema=False)
    ep.write_csv(euro / "episodes.csv", separator=";")
    long = ingest_paths([long_dir], tmp_path / "long.duckdb")
    got = ingest_paths([euro], tmp_path / "euro.duckdb", layout="visits-wide", decimal=",")
    assert long.validation.ok and got.validation.ok, got.validation.errors
    a, b = _tables(tmp_path / "long.duckdb"), _tables(tmp_path / "euro.duckdb")
    for t in a:
        assert_frame_equal(a[t], b[t])


def test_a_wide_workbook_and_parquet_land_the_same_tables(
    tmp_path: Path, long_dir: Path, wide_dir: Path
) -> None:
    wide = pl.read_csv(wide_dir / "visits.csv", infer_schema=False)
    for name in ("xlsx", "parquet"):
        d = tmp_path / name
        d.mkdir()
        (d / "episodes.csv").write_bytes((wide_dir / "episodes.csv").read_bytes())
        if name == "xlsx":
            write_workbook({"visits": wide}, d / "visits.xlsx")
        else:
            wide.write_parquet(d / "visits.parquet")
        got = ingest_paths([d], tmp_path / f"{name}.duckdb", layout="visits-wide")
        assert got.validation.ok, got.validation.errors
    ingest_paths([long_dir], tmp_path / "long.duckdb")
    a = _tables(tmp_path / "long.duckdb")
    for name in ("xlsx", "parquet"):
        b = _tables(tmp_path / f"{name}.duckdb")
        for t in a:
            assert_frame_equal(a[t], b[t])


def test_a_visit_given_twice_is_a_duplicate_at_both_lines_and_measure_columns(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text(
        "episode_id,assessed_on,odi,nprs_leg\nEP1,2026-01-01,30,5\nEP1,2026-01-02,20,4\nEP1,2026-01-01,31,\n"
    )
    res = validate_paths([tmp_path / "v.csv"], layout="visits-wide")
    dup = res.errors.filter(pl.col("rule") == "duplicate_key").select("row", "column").sort("row").rows()
    assert dup == [(2, "odi"), (4, "odi")]
    valid = res.tables[0].valid.sort("assessed_on", "measure")
    assert valid.select("measure", "value").rows() == [("nprs_leg", 5.0), ("nprs_leg", 4.0), ("odi", 20.0)]


def test_an_identifier_column_of_a_wide_sheet_is_refused_before_reshaping(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("episode_id,assessed_on,Patient name,odi\nEP1,2026-01-01,Ann Lee,30\n")
    res = runner.invoke(app, ["validate", str(tmp_path / "v.csv"), "--layout", "visits-wide"])
    assert res.exit_code == 2 and "Patient name" in res.output and "Ann Lee" not in res.output


def test_a_stopped_reason_without_its_value_is_reported_at_the_value_column(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text(
        "episode_id,assessed_on,walk_tolerance_min,walk_tolerance_min.stopped_reason,odi\n"
        "EP1,2026-01-01,12,symptom,30\n"
        "EP1,2026-02-01,,fatigue,20\n"
    )
    res = validate_paths([tmp_path / "v.csv"], layout="visits-wide")
    assert res.errors.select("row", "column", "rule").rows() == [(3, "walk_tolerance_min", "required_value")]
    assert res.tables[0].rows_read == 4 and res.tables[0].rows_valid == 3
