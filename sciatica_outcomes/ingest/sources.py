"""Source tables: raw rows of one canonical table from one file, with row numbers as a person sees them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

__all__ = [
    "ROW",
    "SHAPE",
    "FileDigest",
    "Notice",
    "SourceTable",
    "file_digest",
    "file_sha256",
    "redcap_export_kind",
]

#: Name of the column carrying the source row number (CSV line with the header as line 1; spreadsheet row;
#: Parquet row counted from 1; FHIR Bundle entry counted from 1).
ROW = "__row"

#: Name of the column carrying a structural problem of the source record (a FHIR entry whose JSON has a value
#: of the wrong kind at some path); null when the record is well formed. Validation rejects a row with a
#: shape problem (rule ``fhir_shape``) and reports only that problem for it.
SHAPE = "__shape"

_NEWLINE = ord("\n")


@dataclass(frozen=True)
class Notice:
    """A file-level finding that rejects no row (skipped blank lines, ignored columns, unchecked rules)."""

    file: str
    table: str | None
    rule: str
    message: str
    column: str | None = None
    row: int | None = None


@dataclass
class SourceTable:
    """Raw rows of one canonical table read from one source.

    Attributes
    ----------
    table : str
        Canonical table name.
    path : str
        Source path as given (plus ``#sheet`` for a spreadsheet sheet).
    fmt : str
        ``csv``, ``parquet``, ``excel``, ``redcap`` or ``fhir``.
    sha256 : str
        Hash of the source file's bytes (the same for every table read from one file).
    raw : polars.DataFrame
        Columns as read (String for text formats, native types for Parquet) plus :data:`ROW`.
    notices : list of Notice
        File-level findings.
    reread : callable, optional
        For a CSV read with typed number columns (the fast path of
        :func:`~sciatica_outcomes.ingest.readers.read_csv_table`): reads the same file as text. Validation
        calls it for a source with any problem, so that reports and quarantine show cells as written.
    source_columns : polars.DataFrame, optional
        For a source whose rows are assembled from another layout (a REDCap export, a reshaped wide visit
        sheet, :mod:`sciatica_outcomes.ingest.wide`): one String column per canonical column, row-aligned
        with ``raw``, holding the source header each cell came from (null: the canonical name). Validation
        reports problems under that header. None: every cell is in the column of its own name.
    decimal : str
        Decimal mark of the numbers in a text source (``"."``, or ``","`` when declared with ``--decimal``).
    thousands : str or None
        Thousands separator allowed in the numbers of a text source (``--thousands``); None: none allowed.
    chunks : callable, optional
        For a CSV file larger than the ingest's chunk size (:mod:`sciatica_outcomes.ingest.chunked`): yields
        the file's rows in chunks, each ``(raw rows, position of its first row in the source)``; ``raw``
        then holds no row (only the header's columns) and ``n_rows`` counts the rows.
    n_rows : int, optional
        Data rows of a source read in chunks (None: ``raw.height``).
    """

    table: str
    path: str
    fmt: str
    sha256: str
    raw: pl.DataFrame
    notices: list[Notice] = field(default_factory=list)
    reread: Callable[[], SourceTable] | None = None
    source_columns: pl.DataFrame | None = None
    decimal: str = "."
    thousands: str | None = None
    chunks: Callable[[], Iterator[tuple[pl.DataFrame, int]]] | None = None
    n_rows: int | None = None

    @property
    def rows_read(self) -> int:
        """Number of data rows read from the source."""
        return self.raw.height if self.n_rows is None else self.n_rows


@dataclass(frozen=True)
class FileDigest:
    """What one pass over a file's bytes tells: its SHA-256 and its line breaks."""

    sha256: str
    line_breaks: int
    ends_with_break: bool

    @property
    def lines(self) -> int:
        """Number of lines (a last line without a break counts)."""
        return self.line_breaks + (0 if self.ends_with_break else 1)


def file_digest(path: str | Path, chunk: int = 1 << 20) -> FileDigest:
    """SHA-256 and line-break count of a file, in one chunked pass.

    The file is read into one reused buffer (no copy per block); line breaks are counted with a vectorised
    comparison, which is faster than ``bytes.count``. hashlib releases the GIL while hashing, so the digest
    of one file runs beside the parsing of another.
    """
    h = hashlib.sha256()
    breaks = 0
    last = -1
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            block = np.frombuffer(buf, dtype=np.uint8, count=n)
            breaks += int(np.count_nonzero(block == _NEWLINE))
            last = int(block[-1])
    return FileDigest(h.hexdigest(), breaks, last == _NEWLINE)


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    return file_digest(path, chunk).sha256


#: Header cells REDCap writes only in a "CSV (labels)" export.
REDCAP_LABEL_COLUMNS: frozenset[str] = frozenset(
    {"Repeat Instrument", "Repeat Instance", "Event Name", "Data Access Group", "Complete?"}
)


def redcap_export_kind(header: Sequence[str], dictionary: pl.DataFrame | None = None) -> str | None:
    """Whether a CSV header is a REDCap export: ``"raw"``, ``"labels"`` or ``None``.

    Parameters
    ----------
    header : sequence of str
        The cells of the file's first line.
    dictionary : polars.DataFrame, optional
        The project's data dictionary (``Field Label`` column); without it only REDCap's own columns count.

    Returns
    -------
    str or None
        ``"raw"`` when REDCap's system columns (``redcap_event_name``, ``redcap_repeat_instrument``) are
        present, or the header starts with ``record_id`` followed by field names of the dictionary;
        ``"labels"`` when REDCap's label columns (``Event Name``, ``Repeat Instrument``, ``Complete?``) or
        two or more field labels of the dictionary are; otherwise ``None``.
    """
    cells = {c.strip() for c in header}
    if cells & {"redcap_repeat_instrument", "redcap_event_name"}:
        return "raw"
    if cells & REDCAP_LABEL_COLUMNS:
        return "labels"
    if dictionary is not None and "Field Label" in dictionary.columns:
        labels = {str(v).strip() for v in dictionary["Field Label"].drop_nulls().to_list()}
        names = (
            set(dictionary["Variable / Field Name"].to_list())
            if "Variable / Field Name" in dictionary.columns
            else set()
        )
        if len(cells & labels) >= 2 and len(cells & names) < 2:
            return "labels"
        if header and header[0].strip() == "record_id" and len(cells & names) >= 3:
            return "raw"  # a classic project's export: no event or repeat columns
    return None
