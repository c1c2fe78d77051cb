"""The store's own tables (``ingest_log`` and ``quarantine``) and the records ingest hands the store.

The validate stage (``sciatica_outcomes.ingest``) produces quarantine rows and one :class:`IngestPart` per
source table; the store (``sciatica_outcomes.store``) writes them in one transaction and answers with
:class:`WriteCounts`. Both sides import these definitions from here, so neither reaches into the other for
a column list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NotRequired, TypedDict

import polars as pl

__all__ = [
    "INGEST_LOG_ORDER",
    "INGEST_LOG_SCHEMA",
    "QUARANTINE_ORDER",
    "QUARANTINE_ROW_SCHEMA",
    "QUARANTINE_SCHEMA",
    "IngestLogEntry",
    "IngestPart",
    "WriteCounts",
]

#: Columns of ``ingest_log``: one row per source table per ingest.
INGEST_LOG_SCHEMA: dict[str, pl.DataType] = {
    "ingest_id": pl.Int64(),
    "ingested_at_utc": pl.Datetime("us"),
    "source_path": pl.String(),
    "source_format": pl.String(),
    "sha256": pl.String(),
    "table_name": pl.String(),
    "schema_version": pl.String(),
    "package_version": pl.String(),
    "rows_read": pl.Int64(),
    "rows_stored": pl.Int64(),
    "rows_inserted": pl.Int64(),
    "rows_updated": pl.Int64(),
    "rows_unchanged": pl.Int64(),
    "rows_quarantined": pl.Int64(),
    "rows_deleted": pl.Int64(),
}
#: Sort order of ``ingest_log`` when read.
INGEST_LOG_ORDER: tuple[str, ...] = ("ingest_id", "table_name", "source_path")

#: Columns of ``quarantine``: one row per rejected source row. ``record`` is a JSON object of the raw values
#: as read (strings), ``errors`` a JSON list of ``{column, value, rule, message}``.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "ingest_id": pl.Int64(),
    "source_path": pl.String(),
    "sha256": pl.String(),
    "table_name": pl.String(),
    "row_number": pl.Int64(),
    "record": pl.String(),
    "errors": pl.String(),
}
#: Columns of the quarantine rows validation produces: :data:`QUARANTINE_SCHEMA` without ``ingest_id``, which
#: the store fills in when it writes them.
QUARANTINE_ROW_SCHEMA: dict[str, pl.DataType] = {
    k: v for k, v in QUARANTINE_SCHEMA.items() if k != "ingest_id"
}
#: Sort order of ``quarantine`` when read.
QUARANTINE_ORDER: tuple[str, ...] = ("ingest_id", "source_path", "table_name", "row_number")


@dataclass(frozen=True)
class WriteCounts:
    """What one upsert did to one table.

    ``stored = inserted + updated + unchanged`` is the number of rows of the written frame now in the store.
    """

    table: str
    inserted: int
    updated: int
    unchanged: int

    @property
    def stored(self) -> int:
        """Rows of the written frame that are in the store after the write."""
        return self.inserted + self.updated + self.unchanged


class IngestPart(TypedDict):
    """One source table of an ingest, as validation hands it to the store's writer.

    ``frame`` holds the valid canonical rows (keys unique and non-null: validation checked them);
    ``rows_read = frame.height + rows_quarantined``. ``rejected_keys``, if given, holds the key columns of
    the rejected rows whose key parses (with the keys of ``frame``: the rows the source holds, which the
    store compares with what it has).
    """

    table: str
    frame: pl.DataFrame
    source_path: str
    source_format: str
    sha256: str | None
    rows_read: int
    rows_quarantined: int
    rejected_keys: NotRequired[pl.DataFrame | None]
    #: Set on the parts of a source ingested in chunks (:mod:`sciatica_outcomes.ingest.chunked`): one part
    #: per chunk, the last (``final``, no rows) with the source's totals and all its rejected keys.
    final: NotRequired[bool]
    #: Parquet files holding the valid rows of a chunked source (on its final part): written in one
    #: statement, so that DuckDB streams them to the database file.
    parquet: NotRequired[list[str]]


class IngestLogEntry(TypedDict):
    """One ``ingest_log`` row before the store adds the time stamp, versions and the split of ``counts``."""

    ingest_id: int
    source_path: str
    source_format: str
    sha256: str | None
    table_name: str
    rows_read: int
    rows_quarantined: int
    counts: WriteCounts | None
    rows_deleted: NotRequired[int]
