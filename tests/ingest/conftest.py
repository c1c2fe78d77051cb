"""Fixtures of the ingest tests: a small synthetic cohort written in each file format."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from openpyxl import Workbook

from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.synth import Cohort, generate_cohort, write_cohort


@pytest.fixture(scope="session")
def small_cohort() -> Cohort:
    """A 150-episode cohort (seed 7): every table populated, fast to write in every format."""
    return generate_cohort(n_patients=150, seed=7)


@pytest.fixture(scope="session")
def tiny_cohort() -> Cohort:
    """A 30-episode cohort (seed 8) for formats whose readers walk rows (Excel)."""
    return generate_cohort(n_patients=30, seed=8)


@pytest.fixture(scope="session")
def csv_dir(tmp_path_factory: pytest.TempPathFactory, small_cohort: Cohort) -> Path:
    out = tmp_path_factory.mktemp("csv")
    write_cohort(small_cohort, out)
    return out


@pytest.fixture(scope="session")
def parquet_dir(tmp_path_factory: pytest.TempPathFactory, small_cohort: Cohort) -> Path:
    out = tmp_path_factory.mktemp("parquet")
    write_cohort(small_cohort, out, fmt="parquet")
    return out


def sort_by_key(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Sort a canonical frame by its primary key (the order ``Store.read`` returns)."""
    return frame.sort(list(TABLE_SPECS[table].key))


def write_workbook(tables: dict[str, pl.DataFrame], path: Path) -> Path:
    """Write canonical frames to an .xlsx workbook, one sheet per table, with native cell types."""
    wb = Workbook(write_only=True)
    for name, frame in tables.items():
        ws = wb.create_sheet(name)
        ws.append(frame.columns)
        for row in frame.iter_rows():
            ws.append(list(row))
    wb.save(path)
    return path


def with_verdict_measures(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The tables with PGIC and satisfaction beside every GRC, EQ-5D index and VAS beside every ODI.

    For round trips of measures the synthetic cohort may not generate: values follow the GRC and ODI of the
    same row (PGIC 1-7 and satisfaction 1-5 from the GRC; index 1 - ODI/100 to 3 decimals, VAS 100 - ODI).
    """
    m = tables["measures"]
    new = ("pgic", "satisfaction", "eq5d_index", "eq5d_vas")
    grc = m.filter(pl.col("measure") == "grc")
    odi = m.filter(pl.col("measure") == "odi").with_columns(
        pl.lit(None, pl.String).alias("instrument_version")
    )
    added = [
        grc.with_columns(
            pl.lit("pgic").alias("measure"), (4 - pl.col("value") / 2).round().clip(1, 7).alias("value")
        ),
        grc.with_columns(
            pl.lit("satisfaction").alias("measure"),
            (3 + pl.col("value") / 3).round().clip(1, 5).alias("value"),
        ),
        odi.with_columns(
            pl.lit("eq5d_index").alias("measure"), (1 - pl.col("value") / 100).round(3).alias("value")
        ),
        odi.with_columns(pl.lit("eq5d_vas").alias("measure"), (100 - pl.col("value")).round().alias("value")),
    ]
    out = dict(tables)
    out["measures"] = pl.concat([m.filter(~pl.col("measure").is_in(new)), *added])
    return out
