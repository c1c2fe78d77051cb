"""Default locations and settings shared by the command line and the stages, in a module that imports nothing.

The command line builds its options from these at start-up without loading any stage; each stage re-exports
the ones it owns (``store.DEFAULT_DB``, ``ingest.pipeline.DEFAULT_MAX_EXAMPLES``, ...).
"""

from __future__ import annotations

from pathlib import Path

#: The DuckDB store used when ``--db`` is not given (relative to the working directory).
DEFAULT_DB = Path("data/outcomes.duckdb")

#: Examples shown per rule in the HTML validation report.
DEFAULT_MAX_EXAMPLES = 20

#: Where ``schemas export`` writes the Frictionless schemas, catalogs and REDCap files.
DEFAULT_SCHEMA_DIR = Path("data/schemas")

#: Case-mix model of the risk-adjusted provider comparison (``compare-clinics``, quarterly report).
DEFAULT_CASE_MIX = "improvement ~ baseline + age_at_start + log(symptom_duration_weeks) + sex + affected_side"
