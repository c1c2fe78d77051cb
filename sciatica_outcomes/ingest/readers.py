"""Readers for tabular sources: CSV (delimiter and encoding sniffed), Parquet and Excel workbooks.

Every reader returns :class:`~sciatica_outcomes.ingest.sources.SourceTable` objects whose ``raw`` frame keeps
the values exactly as read (text formats: strings) plus the row number a person sees in the source: the CSV
line (header = line 1), the spreadsheet row, the Parquet row counted from 1. Nothing is converted here;
parsing and checking happen in :mod:`sciatica_outcomes.ingest.validate`. The one exception is the fast
path of :func:`read_csv_table`: number and true/false columns may be read by polars' own parsers, which
accept only cells the strict parser reads to the same value; a source read that way is read again as text
as soon as validation finds a problem in it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable

__all__ = [
    "MAX_CELL_BYTES",
    "MAX_COLUMNS",
    "MAX_LINE_BYTES",
    "MAX_SHEET_ROWS",
    "MAX_XLSX_UNCOMPRESSED",
    "detect_encoding",
    "read_csv_raw",
    "read_csv_table",
    "read_excel_tables",
    "read_parquet_table",
    "sniff_csv",
]

_SNIFF_BYTES = 1 << 16

# Limits: a pathological file is refused within seconds, with a message naming the limit, instead of
# running for minutes or filling the memory. Every canonical table has fewer than 30 columns and short
# cells; spreadsheets are read row by row in Python (openpyxl), which is what bounds their size.

#: Most columns a source may have (CSV header, Parquet schema, sheet header): a wider file is not one of
#: the canonical tables, and polars and the header checks slow down with every column.
MAX_COLUMNS = 1_000
#: Longest CSV header line, in bytes (checked before anything parses the file: a 50 MB line without a line
#: break would otherwise go through the delimiter sniffer and the parser whole).
MAX_LINE_BYTES = 1 << 20
#: Largest cell, in bytes (UTF-8), of any text source: no canonical value comes near it; a bigger one is a
#: broken export (an unclosed quote swallowing the rest of the file) or not data.
MAX_CELL_BYTES = 1 << 20
#: Most data rows per workbook sheet: openpyxl yields cells one by one in Python (about 20-40 thousand rows
#: per second on a 15-column sheet), so a bigger sheet takes minutes; export it as CSV or Parquet instead.
MAX_SHEET_ROWS = 200_000
#: Largest total uncompressed size an .xlsx (a zip archive) may declare, checked from the zip's directory
#: before openpyxl opens it: a zip bomb of a few hundred KB can declare gigabytes of sheet XML.
MAX_XLSX_UNCOMPRESSED = 256 << 20
_DELIMITERS = ",;\t|"
_DUPLICATED = re.compile(r"^(.*)_duplicated_\d+$")


def detect_encoding(data: bytes) -> str:
    """Encoding of bytes that are not UTF-8.

    Windows-1252 (the encoding of spreadsheet CSV exports in Western Europe and the Americas) is chosen when
    the bytes decode under it; otherwise ``charset_normalizer``'s best guess, else latin-1. Statistical
    detection is unreliable on short files, which is why cp1252 is tried first; the chosen encoding is always
    reported as a notice so that a wrong guess is visible.
    """
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # noqa: PLC0415 - only for non-UTF-8 files

    best = from_bytes(data).best()
    return best.encoding if best is not None else "latin-1"


def sniff_csv(sample: bytes, delimiters: str = _DELIMITERS) -> tuple[str, str, bool]:
    """Guess the encoding and delimiter of a CSV file from its first bytes.

    Parameters
    ----------
    sample : bytes
        The first bytes of the file (64 KiB is plenty).
    delimiters : str
        Candidate delimiters (default ``, ; TAB |``; a file with decimal commas is sniffed without ``,``).

    Returns
    -------
    tuple of (str, str, bool)
        Python codec name, delimiter, and whether the file starts with a byte-order mark.

    Notes
    -----
    UTF-8 (with or without BOM) and UTF-16 with BOM are recognised exactly; otherwise the sample is decoded
    as UTF-8 and, failing that, the encoding is detected with ``charset_normalizer`` (typically cp1252 or
    latin-1 from spreadsheet exports). The delimiter is the one of ``, ; TAB |`` that :class:`csv.Sniffer`
    finds consistent over the first lines, else the most frequent one in the header line.
    """
    bom = False
    if sample.startswith(codecs.BOM_UTF8):
        encoding, bom, sample = "utf-8", True, sample[len(codecs.BOM_UTF8) :]
    elif sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding, bom = "utf-16", True
    else:
        cut = sample.rfind(b"\n") if len(sample) >= _SNIFF_BYTES else len(sample)
        try:
            sample[: cut if cut > 0 else len(sample)].decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError:
            encoding = detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    if encoding == "utf-16":
        text = text.lstrip("\ufeff")
    lines = text.splitlines()[:20]
    head = "\n".join(lines)
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=delimiters).delimiter
    except csv.Error:
        first = lines[0] if lines else ""
        delimiter = max(delimiters, key=first.count) if first and any(d in first for d in delimiters) else ","
    return encoding, delimiter, bom


def _clean_header(frame: pl.DataFrame, path: str) -> pl.DataFrame:
    names = frame.columns
    dup = sorted({m.group(1) for c in names if (m := _DUPLICATED.match(c))})
    if dup:
        raise UnusableInputError(
            f"{path}: column(s) {', '.join(repr(d) for d in dup)} appear more than once in the header; "
            "rename or remove the extra copies"
        )
    cleaned = [c.lstrip("\ufeff").strip() for c in names]
    if len(set(cleaned)) != len(cleaned):
        raise UnusableInputError(
            f"{path}: header has duplicate column names after trimming spaces: {cleaned}"
        )
    if any(c == "" for c in cleaned):
        raise UnusableInputError(f"{path}: header has an empty column name; every column needs a name")
    return frame.rename(dict(zip(names, cleaned, strict=True)))


def _csv_line_numbers(text: str, delimiter: str, n_rows: int) -> list[int]:
    """Starting line of every record (header = line 1) for files whose quoted fields span lines.

    This is the rare path (a cell containing a line break); it walks the records with :mod:`csv` once.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    next(reader, None)
    starts: list[int] = []
    prev_end = reader.line_num
    for _record in reader:
        starts.append(prev_end + 1)
        prev_end = reader.line_num
    if len(starts) != n_rows:
        raise UnusableInputError(
            f"cannot number the rows: the CSV parser saw {len(starts)} records and polars {n_rows}; "
            "check the file for unbalanced quotes"
        )
    return starts


def _drop_blank_rows(
    raw: pl.DataFrame, path: str, table: str | None, unit: str
) -> tuple[pl.DataFrame, list[Notice]]:
    data_cols = [c for c in raw.columns if c != ROW]
    if not data_cols:
        return raw, []
    if raw.select(pl.col(data_cols[0]).null_count()).item() == 0:
        return raw, []
    blank = raw.select(pl.all_horizontal(pl.col(data_cols).is_null()).alias("b")).to_series()
    n_blank = int(blank.sum())
    if not n_blank:
        return raw, []
    where = raw.filter(blank)[ROW].head(10).to_list()
    return raw.filter(~blank), [blank_notice(path, table, unit, n_blank, where)]


def blank_notice(path: str, table: str | None, unit: str, n_blank: int, where: list[int]) -> Notice:
    """The notice of ``n_blank`` skipped blank lines or rows, ``where`` the first (at most) 10 of them."""
    shown = ", ".join(str(r) for r in where) + (" ..." if n_blank > len(where) else "")
    return Notice(
        path, table, "blank_row", f"{n_blank} blank {unit}(s) skipped ({unit} {shown}): they hold no data"
    )


def _file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UnusableInputError(f"{path}: cannot read file ({exc.strerror})") from exc


def _sha256_beside(data: bytes) -> Callable[[], str]:
    """Start hashing ``data`` on a thread (hashlib releases the GIL); return a function giving the digest."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sciatica-outcomes-sha256")
    future = pool.submit(lambda: hashlib.sha256(data).hexdigest())
    pool.shutdown(wait=False)
    return future.result


def read_csv_table(
    path: str | Path,
    table: str,
    sha256: str = "",
    *,
    typed: Mapping[str, pl.DataType] | None = None,
    data: bytes | None = None,
    delimiter: str | None = None,
    decimal: str = ".",
    thousands: str | None = None,
) -> SourceTable:
    """Read a CSV file as strings with line numbers.

    Parameters
    ----------
    path : str or Path
        The file.
    table : str
        Canonical table the file holds.
    sha256 : str
        Hash of ``data`` if the caller has it; empty (the default): the SHA-256 of the bytes that are
        parsed is computed here, beside the parse.
    typed : mapping of str to polars.DataType, optional
        Canonical types of the table's columns. When given, a fast first attempt reads the whole-number,
        decimal and true/false columns with polars' own number parser (dates and text stay text); if any
        cell of those columns does not parse, the file is read as text instead. The attempt's values are
        exactly those the strict parser gives (polars accepts a subset of what it accepts: tested), and
        the returned source can ``reread`` itself as text, which validation does for any source with a
        problem so that reports and quarantine show the cells exactly as written.
    data : bytes, optional
        The file's bytes if the caller has read them; otherwise the file is read here, once. Every pass
        (sniffing, parsing, line numbers) works on these bytes, so the hash is that of what is validated.
    delimiter : str, optional
        The field delimiter (``--delimiter``); sniffed from the first lines when not given.
    decimal, thousands : str
        Number format of the file (``--decimal``, ``--thousands``), kept on the source for the parser of
        :mod:`~sciatica_outcomes.ingest.validate`; a non-default format reads the file as text (``typed``
        is ignored), and a file with decimal commas is sniffed for ``;``, TAB or ``|`` only.

    Returns
    -------
    SourceTable
        ``raw`` holds every column as String (empty cells are null; with ``typed``, possibly typed number
        and Boolean columns) and :data:`ROW`, the line number of the record (header = line 1). Fully blank
        lines are dropped and reported as a notice.

    Raises
    ------
    UnusableInputError
        If the file cannot be read or parsed (ragged lines, duplicate header names). The ``reread`` of a
        typed read raises it too when the file's bytes are no longer those first read (the file was
        replaced or rewritten during the ingest): the text read must show the rows that were validated.
    """
    path = Path(path)
    if data is None:
        data = _file_bytes(path)
    if decimal != "." or thousands is not None:
        typed = None
    digest = _sha256_beside(data) if typed or not sha256 else (lambda: sha256)
    if typed:
        got = _read_csv_typed(data, path, table, typed, delimiter)
        if got is not None:
            raw, notices = got
            first = digest()
            src = SourceTable(table, str(path), "csv", sha256 or first, raw, notices)
            src.reread = lambda: _reread_as_text(path, table, first, src.sha256, delimiter)
            return src
    raw, notices = read_csv_raw(path, table, data=data, delimiter=delimiter, decimal=decimal)
    return SourceTable(
        table, str(path), "csv", sha256 or digest(), raw, notices, decimal=decimal, thousands=thousands
    )


def _reread_as_text(
    path: Path, table: str, first: str, sha256: str, delimiter: str | None = None
) -> SourceTable:
    """The text read of a typed read, refused when the file no longer holds the bytes first read."""
    data = _file_bytes(path)
    now = hashlib.sha256(data).hexdigest()
    if now != first:
        raise UnusableInputError(
            f"{path}: the file changed while it was being ingested (sha256 {first[:12]}... when first read, "
            f"{now[:12]}... when read again), so nothing was stored; ingest it again once it is no longer "
            "being written or replaced"
        )
    raw, notices = read_csv_raw(path, table, data=data, delimiter=delimiter)
    return SourceTable(table, str(path), "csv", sha256, raw, notices)


#: Canonical types polars' CSV parser may read directly: its integer, float and Boolean parsers accept a
#: subset of what the strict parser of ``ingest.validate`` accepts, with the same values
#: (``tests/ingest/test_readers.py::test_typed_csv_read_accepts_only_what_the_strict_parser_accepts``).
#: Dates are not among them: polars guesses date formats.
_TYPED_READ = (pl.Int64, pl.Float64, pl.Boolean)


def _read_csv_typed(
    data: bytes,
    path: Path,
    table: str,
    typed: Mapping[str, pl.DataType],
    delimiter_given: str | None = None,
) -> tuple[pl.DataFrame, list[Notice]] | None:
    """The fast attempt of :func:`read_csv_table`; None when the file needs the text read."""
    sample = data[:_SNIFF_BYTES]
    if not sample.strip():
        return None
    _refuse_binary(sample, str(path))
    _check_header_line(data, str(path))
    encoding, delimiter, _bom = sniff_csv(sample)
    delimiter = delimiter_given or delimiter
    _check_csv_columns(data, delimiter, str(path))
    if encoding not in ("utf-8", "ascii"):
        return None
    try:
        header = pl.read_csv(data, separator=delimiter, infer_schema=False, n_rows=0).columns
        overrides = {
            c: typed[name]
            for c in header
            if (name := c.lstrip("\ufeff").strip()) in typed and typed[name].base_type() in _TYPED_READ
        }
        if not overrides:
            return None
        raw = pl.read_csv(
            data,
            separator=delimiter,
            infer_schema=False,
            schema_overrides=overrides,
            raise_if_empty=False,
            empty_string_is_null=True,
        )
    except pl.exceptions.PolarsError:
        return None
    try:
        raw = _clean_header(raw, str(path))
    except UnusableInputError:
        return None
    return _number_rows(raw, data, None, str(path), table, delimiter, [])


def read_csv_raw(
    path: str | Path,
    table: str | None = None,
    *,
    data: bytes | None = None,
    delimiter: str | None = None,
    decimal: str = ".",
) -> tuple[pl.DataFrame, list[Notice]]:
    """Read a CSV file as strings plus :data:`ROW`; return the frame and the file-level notices.

    See :func:`read_csv_table`; ``table`` only labels the notices, ``data`` are the file's bytes if the
    caller has read them (the file is read once otherwise), ``delimiter`` is the field delimiter (sniffed
    when None, without ``,`` when ``decimal`` is ``,``).
    """
    path = Path(path)
    shown = str(path)
    if data is None:
        data = _file_bytes(path)
    sample = data[:_SNIFF_BYTES]
    notices: list[Notice] = []
    if not sample.strip():
        empty = Notice(shown, table, "empty_file", "the file is empty: no header and no rows")
        return pl.DataFrame(schema={ROW: pl.Int64}), [empty]
    _refuse_binary(sample, shown)
    _check_header_line(data, shown)
    candidates = _DELIMITERS.replace(",", "") if decimal == "," else _DELIMITERS
    encoding, sniffed, _bom = sniff_csv(sample, candidates)
    if delimiter is None and decimal == "," and sniffed == ",":
        raise UnusableInputError(
            f"{shown}: with --decimal , the fields must be separated by ';', a tab or '|', and the first "
            "lines hold none of them; pass --delimiter (e.g. --delimiter ';') or check the file's format"
        )
    delimiter = delimiter or sniffed
    _check_csv_columns(data, delimiter, shown)
    text: str | None = None
    source = data
    if encoding not in ("utf-8", "ascii"):
        text = _decode(data, encoding, shown, "the encoding its first 64 KiB are in")
        source = text.lstrip("\ufeff").encode("utf-8")
        notices.append(Notice(shown, table, "encoding", f"decoded as {encoding} (not UTF-8)"))
    try:
        raw = _polars_csv(source, delimiter)
    except pl.exceptions.ComputeError as exc:
        if "utf-8" not in str(exc).lower() or text is not None:
            raise _unparseable(shown, delimiter, exc) from exc
        body = data.removeprefix(codecs.BOM_UTF8)
        enc = detect_encoding(body)
        text = _decode(body, enc, shown, "the encoding detected for the whole file")
        notices.append(Notice(shown, table, "encoding", f"decoded as {enc} (invalid UTF-8 further in)"))
        source = text.lstrip("\ufeff").encode("utf-8")
        try:
            raw = _polars_csv(source, delimiter)
        except pl.exceptions.ComputeError as exc2:
            raise _unparseable(shown, delimiter, exc2) from exc2
    raw = _clean_header(raw, shown)
    return _number_rows(raw, source, text, shown, table, delimiter, notices)


def _check_header_line(data: bytes, shown: str) -> None:
    """Refuse a CSV whose header line exceeds :data:`MAX_LINE_BYTES` (scans at most that many bytes)."""
    end = data.find(b"\n", 0, MAX_LINE_BYTES + 1)
    if end < 0 and len(data) > MAX_LINE_BYTES:
        raise UnusableInputError(
            f"{shown}: the header line is longer than {MAX_LINE_BYTES:,} bytes (MAX_LINE_BYTES), so this is "
            "not a table export (or its line breaks are missing); export the table again as CSV"
        )


def _check_columns(n: int, shown: str) -> None:
    if n > MAX_COLUMNS:
        raise UnusableInputError(
            f"{shown}: {n:,} columns, more than the {MAX_COLUMNS:,} a source may have (MAX_COLUMNS); every "
            "table has fewer than 30: export one table per file"
        )


def _check_csv_columns(data: bytes, delimiter: str, shown: str) -> None:
    """Refuse a CSV whose header has more than :data:`MAX_COLUMNS` fields (the header is already bounded)."""
    end = data.find(b"\n")
    line = (data if end < 0 else data[:end]).decode("utf-8", errors="replace")
    try:
        fields = next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        fields = line.split(delimiter)
    _check_columns(len(fields), shown)


def _check_cell_sizes(raw: pl.DataFrame, shown: str, unit: str) -> None:
    """Refuse a source with a text cell over :data:`MAX_CELL_BYTES`, naming its column and line or row."""
    text = [c for c, t in raw.schema.items() if t == pl.String]
    if not text or raw.height == 0:
        return
    longest = raw.select(pl.col(text).str.len_bytes().max()).row(0)
    over = [(c, n) for c, n in zip(text, longest, strict=True) if n is not None and n > MAX_CELL_BYTES]
    if not over:
        return
    column, size = over[0]
    at = raw.filter(pl.col(column).str.len_bytes() > MAX_CELL_BYTES)[ROW][0]
    raise UnusableInputError(
        f"{shown}: {unit} {at}, column {column}: a cell of {size:,} bytes, more than {MAX_CELL_BYTES:,} "
        "(MAX_CELL_BYTES); such a cell is a broken export (often an unclosed quote): fix the file"
    )


def _unparseable(shown: str, delimiter: str, exc: Exception) -> UnusableInputError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UnusableInputError(f"{shown}: cannot parse as CSV (delimiter {delimiter!r}): {first}")


#: Share of control bytes (other than tab, line feed, carriage return, form feed) above which a file is not
#: text: spreadsheet and database CSV exports hold none; one NUL byte is enough (text formats never hold it,
#: UTF-16 files are recognised by their byte-order mark before this check).
MAX_CONTROL_SHARE = 0.01
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


def _refuse_binary(sample: bytes, shown: str) -> None:
    """Refuse a file whose first bytes are not text (NUL bytes or many control bytes), naming the fix."""
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    nul = sample.find(b"\x00")
    control = len(sample) - len(sample.translate(None, _CONTROL))
    if nul >= 0 or control > MAX_CONTROL_SHARE * len(sample):
        where = (
            f"a NUL byte at byte {nul + 1:,}"
            if nul >= 0
            else f"{control:,} control bytes in its first {len(sample):,} bytes"
        )
        raise UnusableInputError(
            f"{shown}: not a text file ({where}): a CSV source must be text; export the table again as "
            "CSV (UTF-8), or give a spreadsheet a .xlsx name"
        )


def _decode(data: bytes, encoding: str, shown: str, why: str) -> str:
    """Decode strictly; a byte the encoding lacks is refused with its line (the file mixes encodings)."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise UnusableInputError(
            f"{shown}: line {line:,} holds byte 0x{byte}, which is neither UTF-8 nor {encoding} ({why}): "
            "the file mixes text encodings; save it again as CSV (UTF-8) and ingest that"
        ) from None


def _number_rows(
    raw: pl.DataFrame,
    source: bytes,
    text: str | None,
    shown: str,
    table: str | None,
    delimiter: str,
    notices: list[Notice],
) -> tuple[pl.DataFrame, list[Notice]]:
    """Add :data:`ROW` (the line where each record starts) and drop fully blank lines with a notice.

    ``source`` are the UTF-8 bytes that were parsed, ``text`` their decoded text if already at hand.
    """
    if _has_multiline_records(source, raw):
        if text is None:
            text = source.decode("utf-8")
        starts = _csv_line_numbers(text.lstrip("\ufeff"), delimiter, raw.height)
        raw = raw.with_columns(pl.Series(ROW, starts, dtype=pl.Int64))
    else:
        raw = raw.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias(ROW))
    _check_cell_sizes(raw, shown, "line")
    raw, blank = _drop_blank_rows(raw, shown, table, "line")
    return raw, notices + blank


def _has_multiline_records(source: bytes, raw: pl.DataFrame) -> bool:
    """Whether some record spans several lines (a quoted cell with a line break).

    Counting line breaks in the bytes (a memchr scan) settles it without looking at the cells: one record
    per line means ``header + rows`` lines (polars keeps blank lines as empty rows).
    """
    lines = source.count(b"\n") + (0 if source.endswith(b"\n") else 1)
    return lines > raw.height + 1


def _polars_csv(source: Any, delimiter: str) -> pl.DataFrame:
    return pl.read_csv(
        source,
        separator=delimiter,
        infer_schema=False,
        raise_if_empty=False,
        empty_string_is_null=True,
    )


def read_parquet_table(path: str | Path, table: str, sha256: str) -> SourceTable:
    """Read a Parquet file with its native column types; rows are numbered from 1."""
    shown = str(path)
    try:
        _check_columns(len(pl.read_parquet_schema(path)), shown)
        raw = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnusableInputError(f"{shown}: cannot read as Parquet: {exc}") from exc
    raw = _clean_header(raw, shown).with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + 1).alias(ROW))
    _check_cell_sizes(raw, shown, "row")
    raw, blank = _drop_blank_rows(raw, shown, table, "row")
    return SourceTable(table, shown, "parquet", sha256, raw, blank)


def _cell_text(value: Any) -> str | None:
    """Text of one spreadsheet cell as a person would type it (numbers without a spurious ``.0``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    text = str(value)
    return text if text != "" else None


def _too_many_rows(where: str, what: str) -> None:
    raise UnusableInputError(
        f"{where}: the sheet {what}, and a workbook sheet may have at most {MAX_SHEET_ROWS:,} data rows "
        "(MAX_SHEET_ROWS: spreadsheets are read cell by cell); export the table as CSV or Parquet and "
        "ingest that"
    )


def _check_xlsx_size(path: Path, shown: str) -> None:
    """Refuse an .xlsx whose zip directory declares more than :data:`MAX_XLSX_UNCOMPRESSED` bytes."""
    import zipfile  # noqa: PLC0415

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise UnusableInputError(f"{shown}: cannot read as an .xlsx workbook (a zip archive): {exc}") from exc
    if total > MAX_XLSX_UNCOMPRESSED:
        raise UnusableInputError(
            f"{shown}: the workbook unpacks to {total:,} bytes, more than {MAX_XLSX_UNCOMPRESSED:,} "
            "(MAX_XLSX_UNCOMPRESSED; a zip bomb or a sheet far too large to read cell by cell); export the "
            "tables as CSV or Parquet and ingest those"
        )


def read_excel_tables(path: str | Path, sha256: str, table: str | None = None) -> list[SourceTable]:
    """Read an ``.xlsx`` workbook: one sheet per canonical table.

    Parameters
    ----------
    path : str or Path
        The workbook.
    sha256 : str
        Hash of the file.
    table : str, optional
        Table of a single-sheet workbook whose sheet is not named after a table.

    Returns
    -------
    list of SourceTable
        One per sheet named after a canonical table (sheets with other names are skipped with a notice);
        values as text (dates as ``YYYY-MM-DD``, whole numbers without ``.0``), :data:`ROW` = spreadsheet row.

    Notes
    -----
    openpyxl yields cells row by row, so this reader walks the rows in Python; spreadsheets stop at
    1,048,576 rows, which keeps that affordable. Use CSV or Parquet for larger extracts.
    """
    from openpyxl import load_workbook  # noqa: PLC0415 - optional at import time

    from sciatica_outcomes.schemas import TABLE_SPECS  # noqa: PLC0415

    shown = str(path)
    _check_xlsx_size(Path(path), shown)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise UnusableInputError(f"{shown}: cannot read as an .xlsx workbook: {exc}") from exc
    out: list[SourceTable] = []
    skipped: list[Notice] = []
    try:
        names = list(wb.sheetnames)
        for sheet in names:
            name = sheet.strip().lower()
            if name in TABLE_SPECS:
                target = name
            elif table is not None and len(names) == 1:
                target = table
            else:
                skipped.append(
                    Notice(shown, None, "skipped_sheet", f"sheet {sheet!r} skipped: not named after a table")
                )
                continue
            ws = wb[sheet]
            rows = ws.iter_rows(values_only=True)
            declared = ws.max_row if isinstance(ws.max_row, int) else 0
            if declared - 1 > MAX_SHEET_ROWS:
                _too_many_rows(f"{shown}#{sheet}", f"declares {declared - 1:,} data rows")
            header = next(rows, None)
            where = f"{shown}#{sheet}"
            if header is None:
                out.append(
                    SourceTable(
                        target,
                        where,
                        "excel",
                        sha256,
                        pl.DataFrame(schema={ROW: pl.Int64}),
                        [Notice(where, target, "empty_file", "the sheet is empty")],
                    )
                )
                continue
            last = max((i for i, h in enumerate(header) if h not in (None, "")), default=-1)
            cols = [_cell_text(h) or "" for h in header[: last + 1]]
            data: list[list[str | None]] = [[] for _ in cols]
            row_no: list[int] = []
            extra_cells: list[int] = []
            _check_columns(len(cols), f"{shown}#{sheet}")
            for i, values in enumerate(rows, start=2):
                if i > MAX_SHEET_ROWS + 1:
                    _too_many_rows(where, f"goes on past row {MAX_SHEET_ROWS + 1:,}")
                if values is None:
                    continue
                texts = [_cell_text(v) for v in values]
                if any(t is not None for t in texts[last + 1 :]):
                    extra_cells.append(i)
                if all(t is None for t in texts[: last + 1]) and i not in extra_cells:
                    continue
                row_no.append(i)
                for j in range(len(cols)):
                    data[j].append(texts[j] if j < len(texts) else None)
            raw = pl.DataFrame(
                {c: pl.Series(c, d, dtype=pl.String) for c, d in zip(cols, data, strict=True)}
                | {ROW: pl.Series(ROW, row_no, dtype=pl.Int64)}
            )
            raw = _clean_header(raw, where)
            _check_cell_sizes(raw, where, "row")
            notices: list[Notice] = []
            if extra_cells:
                notices.append(
                    Notice(
                        where,
                        target,
                        "cell_outside_header",
                        f"{len(extra_cells)} row(s) have values right of the last named column "
                        f"(first: row {extra_cells[0]}); they are not read",
                    )
                )
            out.append(SourceTable(target, where, "excel", sha256, raw, notices))
    finally:
        wb.close()
    if out and skipped:
        out[0].notices.extend(skipped)
    elif skipped:
        raise UnusableInputError(
            f"{shown}: no sheet is named after a canonical table ({', '.join(TABLE_SPECS)}); "
            "rename the sheets or pass --table for a single-sheet workbook"
        )
    return out
