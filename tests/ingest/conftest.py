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
