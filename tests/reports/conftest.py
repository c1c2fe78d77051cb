"""A synthetic cohort ingested into a real DuckDB store, shared by the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sciatica_outcomes.ingest import ingest_paths
from sciatica_outcomes.synth import generate_cohort, write_cohort


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"root", "cohort", "db"}``: 700 synthetic episodes in 4 clinics, written as CSV and ingested."""
    root = tmp_path_factory.mktemp("report-store")
    cohort = generate_cohort(n_patients=700, n_clinics=4, seed=77)
    write_cohort(cohort, root / "cohort")
    db = root / "outcomes.duckdb"
    result = ingest_paths(root / "cohort", db)
    assert result.written
    return {"root": root, "cohort": root / "cohort", "db": db}
