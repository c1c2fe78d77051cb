"""Ingest stage: read every source a clinic has, validate every row, quarantine bad rows, store good ones."""

from sciatica_outcomes.ingest.pipeline import (
    DEFAULT_MAX_EXAMPLES,
    IngestResult,
    collect_files,
    ingest_paths,
    read_sources,
    validate_paths,
)
from sciatica_outcomes.ingest.privacy import (
    PseudonymizeResult,
    check_identifiers,
    find_identifier_columns,
    pseudonymize,
    random_codes,
)
from sciatica_outcomes.ingest.report import report_dict, write_html_report, write_json_report
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable
from sciatica_outcomes.ingest.validate import ISSUE_SCHEMA, TableResult, ValidationResult, validate_sources

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "ISSUE_SCHEMA",
    "ROW",
    "IngestResult",
    "Notice",
    "PseudonymizeResult",
    "SourceTable",
    "TableResult",
    "ValidationResult",
    "check_identifiers",
    "collect_files",
    "find_identifier_columns",
    "ingest_paths",
    "pseudonymize",
    "random_codes",
    "read_sources",
    "report_dict",
    "validate_paths",
    "validate_sources",
    "write_html_report",
    "write_json_report",
]
