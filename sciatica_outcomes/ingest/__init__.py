"""Ingest stage: read every source a clinic has, validate every row, quarantine bad rows, store good ones.

Names are imported on first use (``sciatica_outcomes._lazy``), so importing this package or its ``cli``
module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sciatica_outcomes._lazy import lazy_exports

if TYPE_CHECKING:
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
    from sciatica_outcomes.ingest.validate import (
        ISSUE_SCHEMA,
        TableResult,
        ValidationResult,
        validate_sources,
    )

_EXPORTS: dict[str, str] = {
    "DEFAULT_MAX_EXAMPLES": "sciatica_outcomes.ingest.pipeline",
    "ISSUE_SCHEMA": "sciatica_outcomes.ingest.validate",
    "IngestResult": "sciatica_outcomes.ingest.pipeline",
    "Notice": "sciatica_outcomes.ingest.sources",
    "PseudonymizeResult": "sciatica_outcomes.ingest.privacy",
    "ROW": "sciatica_outcomes.ingest.sources",
    "SourceTable": "sciatica_outcomes.ingest.sources",
    "TableResult": "sciatica_outcomes.ingest.validate",
    "ValidationResult": "sciatica_outcomes.ingest.validate",
    "check_identifiers": "sciatica_outcomes.ingest.privacy",
    "collect_files": "sciatica_outcomes.ingest.pipeline",
    "find_identifier_columns": "sciatica_outcomes.ingest.privacy",
    "ingest_paths": "sciatica_outcomes.ingest.pipeline",
    "pseudonymize": "sciatica_outcomes.ingest.privacy",
    "random_codes": "sciatica_outcomes.ingest.privacy",
    "read_sources": "sciatica_outcomes.ingest.pipeline",
    "report_dict": "sciatica_outcomes.ingest.report",
    "validate_paths": "sciatica_outcomes.ingest.pipeline",
    "validate_sources": "sciatica_outcomes.ingest.validate",
    "write_html_report": "sciatica_outcomes.ingest.report",
    "write_json_report": "sciatica_outcomes.ingest.report",
}

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
