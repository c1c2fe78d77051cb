"""Bounded-memory ingest: large CSV files are read, validated and stored in chunks.

A plain CSV file (UTF-8, one record per line) larger than the chunk size (:data:`CHUNK_BYTES`, the
``chunk_bytes`` argument of :func:`~sciatica_outcomes.ingest.ingest_paths` and
:func:`~sciatica_outcomes.ingest.validate_paths`) is never held in memory whole. The ingest then runs every
source through this module instead of :func:`~sciatica_outcomes.ingest.validate.validate_sources`:

1. **read** (:func:`scan_csv`, from :func:`~sciatica_outcomes.ingest.read_sources`): one pass over the
   file in chunks of about ``chunk_bytes``, cut at line breaks, each parsed with the header in front:
   SHA-256 of the bytes, line numbers, blank lines, cell sizes. A file where some record spans lines
   (a quoted line break), that does not parse, is not UTF-8, or needs the whole file for a rule (a
   generated key column, a ZIP-code header) is read whole as before.
2. **keys**: per table, in dependency order, every chunk of every source is parsed and checked
   (the same :func:`~sciatica_outcomes.ingest.validate._first_pass` as the in-memory path) and its parsed
   keys are staged in a scratch DuckDB database; one ``GROUP BY`` finds the keys given more than once.
3. **validate and store**: every chunk is checked again, now with the duplicate keys, the foreign keys
   (looked up in the scratch tables of this ingest's valid parent rows and of the store's rows) and the
   episode windows; its valid rows are spooled to a Parquet file and its valid parent keys go to the
   scratch database before the next chunk is read. The store's transaction then takes each source's
   spooled rows in one ``INSERT ... SELECT`` (DuckDB streams one large statement to the database file,
   whereas rows appended by many statements stay in memory until the commit).

Every rule, message, report and count is that of the in-memory path (``tests/ingest/test_chunked.py``
ingests the test fixtures both ways, with chunks of a few lines, and compares issues, quarantine, counts
and store). Memory is bounded by a few chunks plus the scratch database's limit
(:data:`SCRATCH_MEMORY_LIMIT`; it spills to disk beyond it), whatever the file size; what still grows with
the data are the problems found (issues and quarantined rows are kept for the reports).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.privacy import _is_zip_header, scrub_text_columns
from sciatica_outcomes.ingest.readers import (
    _DELIMITERS,
    _SNIFF_BYTES,
    MAX_LINE_BYTES,
    _check_cell_sizes,
    _check_csv_columns,
    _check_header_line,
    _clean_header,
    _has_multiline_records,
    _polars_csv,
    _refuse_binary,
    blank_notice,
    sniff_csv,
)
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable
from sciatica_outcomes.ingest.validate import (
    _BAD,
    _RID,
    CASCADE_SCHEMA,
    Redactions,
    TableResult,
    ValidationResult,
    _at_source_columns,
    _check_foreign_key,
    _check_window,
    _decimal_comma_notice,
    _empty_issues,
    _first_pass,
    _flag_duplicates,
    _notice_issues,
    _p,
    _quarantine,
    _Work,
    redaction_notices,
)
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.store_tables import IngestPart

__all__ = ["CHUNK_BYTES", "SCRATCH_MEMORY_LIMIT", "Scratch", "scan_csv", "validate_chunked"]

#: Default chunk size, in bytes of CSV: a larger CSV file is ingested in chunks of about this size. Measured
#: peak of a 1 GB sessions file: about 1 GB (the whole-file ingest: about 4 GB); it depends on the chunk
#: size (raw text, parsed columns and checks of one chunk), :data:`SCRATCH_MEMORY_LIMIT` and the store's
#: buffers, not on the file's size (``benchmarks/ingest.py --sessions-mb``).
CHUNK_BYTES = 32 << 20

#: Memory limit of the scratch DuckDB database holding the keys of a chunked ingest (it spills to a
#: temporary folder beyond it).
SCRATCH_MEMORY_LIMIT = "256MB"

#: Called as ``on_part(position, part)`` for every chunk's valid rows (``part["final"]`` on the last).
PartCallback = Callable[[int, IngestPart], None]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ------------------------------------------------------------------------------------------------ reading
class _WholeFileError(Exception):
    """The file must be read whole (the in-memory reader gives its exact result or error)."""


def _bodies(path: Path, start: int, chunk_bytes: int, digest: Any) -> Iterator[bytes]:
    """The file's bytes after ``start`` in pieces of about ``chunk_bytes`` cut after a line break.

    ``digest`` is updated with every byte of the file (those before ``start`` included).
    """
    with open(path, "rb") as fh:
        head = fh.read(start)
        digest.update(head)
        rest = b""
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                break
            digest.update(block)
            data = rest + block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            rest = data[cut + 1 :]
            yield data[: cut + 1]
        if rest:
            yield rest


def _blank_rows(raw: pl.DataFrame) -> pl.Series | None:
    """Mask of fully blank rows (None when there is none), as ``readers._drop_blank_rows`` finds them."""
    data_cols = [c for c in raw.columns if c != ROW]
    if not data_cols or raw.select(pl.col(data_cols[0]).null_count()).item() == 0:
        return None
    blank = raw.select(pl.all_horizontal(pl.col(data_cols).is_null()).alias("b")).to_series()
    return blank if blank.any() else None


@dataclass
class _CsvFile:
    """Where a chunked CSV's rows are: header bytes and format, for the passes after the first."""

    path: Path
    table: str
    header: bytes
    delimiter: str
    chunk_bytes: int
    sha256: str

    def chunks(self) -> Iterator[tuple[pl.DataFrame, int]]:
        """The rows again, chunk by chunk: ``(raw rows with ROW, position of the first)``; refused (nothing
        is stored) if the file's bytes are no longer those first read."""
        digest = hashlib.sha256()
        line, rid = 2, 0
        changed = False
        for body in _bodies(self.path, len(self.header), self.chunk_bytes, digest):
            data = self.header + body
            try:
                raw = _clean_header(_polars_csv(data, self.delimiter), str(self.path))
            except (pl.exceptions.PolarsError, UnusableInputError):
                changed = True
                break
            if _has_multiline_records(data, raw):
                changed = True
                break
            n = raw.height
            raw = raw.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + line).alias(ROW))
            line += n
            blank = _blank_rows(raw)
            if blank is not None:
                raw = raw.filter(~blank)
            yield raw, rid
            rid += raw.height
        now = digest.hexdigest()
        if changed or now != self.sha256:
            raise UnusableInputError(
                f"{self.path}: the file changed while it was being ingested (sha256 {self.sha256[:12]}... "
                f"when first read, {now[:12]}... when read again), so nothing was stored; ingest it again "
                "once it is no longer being written or replaced"
            )


def scan_csv(
    path: Path,
    table: str,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    delimiter: str | None = None,
    decimal: str = ".",
    thousands: str | None = None,
) -> SourceTable | None:
    """Read a large CSV file in chunks (the first pass: checks, hash, line numbers, blank lines).

    Parameters
    ----------
    path : Path
        The file.
    table : str
        Its canonical table.
    chunk_bytes : int
        Chunk size (:data:`CHUNK_BYTES`); a file no larger is not chunked.
    delimiter, decimal, thousands
        As :func:`~sciatica_outcomes.ingest.readers.read_csv_table`.

    Returns
    -------
    SourceTable or None
        A source whose ``chunks`` yields the rows again (``raw`` holds the header's columns and no row;
        ``n_rows`` counts the rows), or None when the file is to be read whole (small, not UTF-8, a record
        spanning lines, unparseable, a header needing the whole file): the in-memory reader then gives
        its result or its error exactly.

    Raises
    ------
    UnusableInputError
        A binary file, a header line over the limit, too many columns, a cell over the size limit: the
        errors of the in-memory reader, with the same messages.
    """
    shown = str(path)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size <= chunk_bytes:
        return None
    with open(path, "rb") as fh:
        head = fh.read(max(_SNIFF_BYTES, MAX_LINE_BYTES + 1))
    sample = head[:_SNIFF_BYTES]
    if not sample.strip():
        return None
    _refuse_binary(sample, shown)
    _check_header_line(head, shown)
    candidates = _DELIMITERS.replace(",", "") if decimal == "," else _DELIMITERS
    encoding, sniffed, _bom = sniff_csv(sample, candidates)
    if encoding not in ("utf-8", "ascii") or (delimiter is None and decimal == "," and sniffed == ","):
        return None
    delimiter = delimiter or sniffed
    _check_csv_columns(head, delimiter, shown)
    end = head.find(b"\n")
    if end < 0:
        return None
    header = head[: end + 1]
    spec = TABLE_SPECS[table]
    try:
        columns = _clean_header(_polars_csv(header, delimiter), shown).columns
    except (pl.exceptions.PolarsError, UnusableInputError):
        return None
    if any(_is_zip_header(c) for c in columns) or any(c not in columns for c in spec.generated_key_columns):
        return None  # a rule over the whole file's cells
    try:
        n_rows, blanks, first_blank = _first_read(path, header, delimiter, chunk_bytes, shown)
    except _WholeFileError:
        return None
    sha, rows, cell_error = n_rows
    if cell_error is not None:
        raise cell_error
    notices = [blank_notice(shown, table, "line", blanks, first_blank)] if blanks else []
    empty = pl.DataFrame(schema={**dict.fromkeys(columns, pl.String), ROW: pl.Int64})
    src = SourceTable(table, shown, "csv", sha, empty, notices, decimal=decimal, thousands=thousands)
    src.n_rows = rows
    src.chunks = _CsvFile(path, table, header, delimiter, chunk_bytes, sha).chunks
    return src


def _first_read(
    path: Path, header: bytes, delimiter: str, chunk_bytes: int, shown: str
) -> tuple[tuple[str, int, UnusableInputError | None], int, list[int]]:
    digest = hashlib.sha256()
    line, rows, blanks = 2, 0, 0
    first_blank: list[int] = []
    cell_error: UnusableInputError | None = None
    for body in _bodies(path, len(header), chunk_bytes, digest):
        data = header + body
        try:
            raw = _clean_header(_polars_csv(data, delimiter), shown)
        except (pl.exceptions.PolarsError, UnusableInputError) as exc:
            raise _WholeFileError from exc
        if _has_multiline_records(data, raw):
            raise _WholeFileError
        n = raw.height
        raw = raw.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + line).alias(ROW))
        line += n
        if cell_error is None:
            try:
                _check_cell_sizes(raw, shown, "line")
            except UnusableInputError as exc:
                cell_error = exc  # raised once the whole file parsed (a parse error comes first)
        blank = _blank_rows(raw)
        if blank is not None:
            k = int(blank.sum())
            blanks += k
            if len(first_blank) < 10:
                first_blank.extend(raw.filter(blank)[ROW].head(10 - len(first_blank)).to_list())
            n -= k
        rows += n
    return (digest.hexdigest(), rows, cell_error), blanks, first_blank


# --------------------------------------------------------------------------------------------- scratch
@dataclass
class Scratch:
    """The scratch DuckDB database of a chunked ingest: staged keys, this ingest's valid parents, the store's.

    Attributes
    ----------
    reference : set of str
        Parent tables of the store copied in (``ref_episodes``, ``ref_sessions``).
    """

    con: duckdb.DuckDBPyConnection
    folder: Path
    reference: set[str] = field(default_factory=set)

    @classmethod
    def open(cls) -> Scratch:
        """A new in-memory database that spills to a temporary folder beyond :data:`SCRATCH_MEMORY_LIMIT`."""
        folder = Path(tempfile.mkdtemp(prefix="sciatica-outcomes-ingest-"))
        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{SCRATCH_MEMORY_LIMIT}'")
        con.execute(f"SET temp_directory = '{folder}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("CREATE TABLE valid_episodes (k VARCHAR, start_date DATE, end_date DATE)")
        con.execute("CREATE TABLE ref_episodes (k VARCHAR, start_date DATE, end_date DATE)")
        con.execute("CREATE TABLE valid_sessions (k VARCHAR)")
        con.execute("CREATE TABLE ref_sessions (k VARCHAR)")
        for t in ("episodes", "sessions"):
            con.execute(
                f"CREATE TABLE rejected_{t} (v VARCHAR, parent_file VARCHAR, parent_row BIGINT, seq BIGINT)"
            )
        return cls(con, folder)

    def close(self) -> None:
        """Close the database and remove its folder."""
        self.con.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def add_reference(self, table: str, batches: Iterator[pl.DataFrame]) -> None:
        """Copy the store's rows of a parent table (``episodes``: id and dates; ``sessions``: id) in."""
        for frame in batches:
            self.insert(f"ref_{table}", frame)
        self.reference.add(table)

    def insert(self, table: str, frame: pl.DataFrame) -> None:
        """Append ``frame`` (columns in the table's order) to ``table``."""
        if frame.is_empty():
            return
        self.con.register("_frame", frame.to_arrow())
        try:
            self.con.execute(f"INSERT INTO {table} SELECT * FROM _frame")
        finally:
            self.con.unregister("_frame")

    def frame(self, sql: str, **frames: pl.DataFrame) -> pl.DataFrame:
        """Result of ``sql`` as a polars frame, with ``frames`` registered under their names."""
        for name, f in frames.items():
            self.con.register(name, f.to_arrow())
        try:
            got: pl.DataFrame = pl.from_arrow(self.con.sql(sql).to_arrow_table())  # type: ignore[assignment]
            return got
        finally:
            for name in frames:
                self.con.unregister(name)


# ------------------------------------------------------------------------------------------ validation
def _chunks_of(src: SourceTable) -> Iterator[tuple[SourceTable, int]]:
    """Chunk sources of ``src`` and the position of each one's first row (a whole source is one chunk)."""
    if src.chunks is None:
        yield src, 0
        return
    for raw, rid in src.chunks():
        yield (
            SourceTable(
                src.table, src.path, src.fmt, src.sha256, raw, decimal=src.decimal, thousands=src.thousands
            ),
            rid,
        )


@dataclass
class _SourceState:
    """What is kept of one source while its chunks pass: problems, counts and the rejected keys."""

    source: SourceTable
    read_notices: list[Notice]
    issues: list[pl.DataFrame] = field(default_factory=list)
    quarantine: list[pl.DataFrame] = field(default_factory=list)
    rejected: list[pl.DataFrame] = field(default_factory=list)
    first_notices: list[Notice] | None = None
    tally: Redactions = field(default_factory=dict)
    n_valid: int = 0
    valid: list[pl.DataFrame] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def validate_chunked(
    sources: Sequence[SourceTable],
    scratch: Scratch,
    *,
    on_part: PartCallback | None = None,
    keep_valid: bool = False,
) -> ValidationResult:
    """Validate (and hand to the store chunk by chunk) sources of which some are read in chunks.

    Parameters
    ----------
    sources : sequence of SourceTable
        As :func:`~sciatica_outcomes.ingest.validate.validate_sources`; a source with ``chunks`` is
        validated chunk by chunk, the others as one chunk.
    scratch : Scratch
        The scratch database, with the store's parent rows copied in (:meth:`Scratch.add_reference`).
    on_part : callable, optional
        Called once per source, in table dependency order (the ingest's writer), with a part whose
        ``parquet`` files (in ``scratch``'s folder: keep it open until the writer is done) hold the
        source's valid rows.
    keep_valid : bool
        Keep the valid rows of the sources read whole in their ``TableResult.valid`` (chunked sources
        never keep theirs: ``n_valid`` counts them).

    Returns
    -------
    ValidationResult
        As :func:`~sciatica_outcomes.ingest.validate.validate_sources`.
    """
    # a fast typed read is read as text at once (the in-memory path does so for a source with a problem:
    # the values are the same, and reports show the cells as written)
    sources = [s.reread() if s.reread is not None else s for s in sources]
    positions: dict[str, list[int]] = {}
    for i, src in enumerate(sources):
        positions.setdefault(src.table, []).append(i)
    in_ingest = set(positions)
    notices: list[Notice] = []
    cascades: list[pl.DataFrame] = []
    results: dict[int, TableResult] = {}
    issue_parts: dict[int, list[pl.DataFrame]] = {}
    seq = 0
    for table, spec in TABLE_SPECS.items():
        if table not in positions:
            continue
        srcs = [sources[i] for i in positions[table]]
        n_dups = _stage_keys(scratch, srcs, table)
        states = [_SourceState(s, list(s.notices)) for s in srcs]
        table_notices = _not_checked(srcs, table, in_ingest, scratch.reference)
        for si, (i, st) in enumerate(zip(positions[table], states, strict=True)):
            for chunk, _rid in _chunks_of(st.source):
                w = _first_pass(chunk, st.tally)
                if st.first_notices is None:
                    st.first_notices = list(chunk.notices)
                if n_dups:
                    _chunk_duplicates(scratch, w, table, si, len(srcs))
                for fk in spec.foreign_keys:
                    if fk.table in in_ingest or fk.table in scratch.reference:
                        _chunk_foreign_key(scratch, w, fk.columns[0], fk.table, in_ingest)
                if spec.date_window is not None and (
                    "episodes" in in_ingest or "episodes" in scratch.reference
                ):
                    _chunk_window(scratch, w, spec, in_ingest)
                seq = _chunk_done(
                    scratch, st, w, table, spec.columns, list(spec.key), seq, i, on_part, keep_valid
                )
                cascades.extend(w.cascades)
                del w
            if on_part is not None:
                on_part(i, _final_part(st))
        notices.extend(table_notices)
        for i, st in zip(positions[table], states, strict=True):
            src = st.source
            src.notices[:] = st.read_notices + redaction_notices(src, st.tally) + (st.first_notices or [])
            issues = pl.concat([_empty_issues(True), *st.issues])
            key = list(spec.key)
            rejected = (
                pl.concat(st.rejected)
                if st.rejected
                else pl.DataFrame(schema={k: spec.dtypes[k] for k in key})
            )
            quarantine = pl.concat(st.quarantine)
            valid_schema = {c: spec.dtypes[c] for c in spec.columns}
            valid = pl.concat(st.valid) if st.valid else pl.DataFrame(schema=valid_schema)
            chunked = src.chunks is not None or not keep_valid
            results[i] = TableResult(src, valid, quarantine, rejected, st.n_valid if chunked else None)
            _decimal_comma_notice(src, issues)
            issue_parts[i] = [_notice_issues(src.notices), issues.drop(_RID)]
    order = sorted(results)
    frames = [f for i in order for f in issue_parts[i]] + [_notice_issues(notices)]
    all_issues = pl.concat(frames) if frames else _empty_issues()
    file_notices = [n for i in order for n in results[i].source.notices]
    cascade = (
        scrub_text_columns(pl.concat(cascades), ["value"])
        if cascades
        else pl.DataFrame(schema=CASCADE_SCHEMA)
    )
    return ValidationResult([results[i] for i in order], all_issues, file_notices + notices, cascades=cascade)


def _not_checked(
    srcs: Sequence[SourceTable], table: str, in_ingest: set[str], reference: set[str]
) -> list[Notice]:
    """The ``not_checked`` notices of ``_table_pass``: foreign keys and windows without parent rows."""
    spec = TABLE_SPECS[table]
    out: list[Notice] = []
    for fk in spec.foreign_keys:
        if fk.table in in_ingest or fk.table in reference:
            continue
        out.extend(
            Notice(
                s.path,
                table,
                "not_checked",
                f"foreign key {fk.columns[0]} -> {fk.table} not checked: "
                f"no {fk.table} in this ingest or the store",
                fk.columns[0],
            )
            for s in srcs
        )
    win = spec.date_window
    if win is not None and "episodes" not in in_ingest and "episodes" not in reference:
        out.extend(
            Notice(
                s.path,
                table,
                "not_checked",
                f"{win.date_column} inside the episode not checked: no episodes in this ingest or the store",
                win.date_column,
            )
            for s in srcs
        )
    return out


def _stage_keys(scratch: Scratch, srcs: Sequence[SourceTable], table: str) -> int:
    """Stage the parsed keys of every row of ``table``; keep those given more than once in ``dups``."""
    spec = TABLE_SPECS[table]
    key = [_p(k) for k in spec.key]
    con = scratch.con
    cols = ", ".join(f"{_q(k)} {_duck_type(spec.dtypes[c])}" for k, c in zip(key, spec.key, strict=True))
    con.execute("DROP TABLE IF EXISTS keys")
    con.execute("DROP TABLE IF EXISTS dups")
    con.execute(f"CREATE TABLE keys ({cols}, __src BIGINT, __rid BIGINT, __where VARCHAR)")
    for si, src in enumerate(srcs):
        for chunk, rid in _chunks_of(src):
            w = _first_pass(chunk, {})
            where = (
                pl.format("{} row {}", pl.lit(src.path), pl.col(ROW))
                if len(srcs) > 1
                else pl.format("row {}", pl.col(ROW))
            )
            frame = w.frame.filter(pl.all_horizontal(pl.col(key).is_not_null())).select(
                *key,
                pl.lit(si, pl.Int64).alias("__src"),
                (pl.col(_RID).cast(pl.Int64) + rid).alias("__rid"),
                where.alias("__where"),
            )
            scratch.insert("keys", frame)
            del w, frame
    group = ", ".join(_q(k) for k in key)
    con.execute(
        f"CREATE TABLE dups AS SELECT {group}, string_agg(__where, ', ' ORDER BY __src, __rid) AS __all "
        f"FROM keys GROUP BY {group} HAVING count(*) > 1"
    )
    con.execute("DROP TABLE keys")
    return int(con.execute("SELECT count(*) FROM dups").fetchall()[0][0])


def _duck_type(dtype: pl.DataType) -> str:
    base = dtype.base_type()
    if base == pl.Int64:
        return "BIGINT"
    if base == pl.Float64:
        return "DOUBLE"
    if base == pl.Date:
        return "DATE"
    if base == pl.Boolean:
        return "BOOLEAN"
    return "VARCHAR"


def _chunk_duplicates(scratch: Scratch, w: _Work, table: str, si: int, n_sources: int) -> None:
    spec = TABLE_SPECS[table]
    key = [_p(k) for k in spec.key]
    rows = w.frame.filter(pl.all_horizontal(pl.col(key).is_not_null())).select(pl.col(_RID), *key)
    on = " AND ".join(f"c.{_q(k)} = d.{_q(k)}" for k in key)
    mine = scratch.frame(
        f"SELECT c.{_q(_RID)}, d.__all FROM _chunk c JOIN dups d ON {on} ORDER BY c.{_q(_RID)}", _chunk=rows
    )
    if mine.height:
        _flag_duplicates(w, spec, mine.cast({_RID: pl.UInt32}))


def _heads_frame(w: _Work, column: str) -> pl.DataFrame:
    heads, _run = w.runs(_p(column))
    return heads.filter(pl.col("v").is_not_null()).unique()


def _chunk_foreign_key(scratch: Scratch, w: _Work, fk_col: str, parent: str, in_ingest: set[str]) -> None:
    heads = _heads_frame(w, fk_col)
    if heads.is_empty():
        return
    sources = []
    if parent in in_ingest:
        sources.append(f"SELECT k FROM valid_{parent}")
    if parent in scratch.reference:
        sources.append(f"SELECT k FROM ref_{parent}")
    present = scratch.frame(
        f"SELECT v FROM _heads WHERE v IN ({' UNION ALL '.join(sources)})", _heads=heads
    ).get_column("v")
    rejected = scratch.frame(
        f"SELECT v, arg_min(parent_file, seq) AS parent_file, arg_min(parent_row, seq) AS parent_row "
        f"FROM rejected_{parent} WHERE v IN (SELECT v FROM _heads) GROUP BY v",
        _heads=heads,
    ).cast({"v": pl.String, "parent_file": pl.String, "parent_row": pl.Int64})
    _check_foreign_key(w, fk_col, parent, present.cast(pl.String), rejected)


def _chunk_window(scratch: Scratch, w: _Work, spec: Any, in_ingest: set[str]) -> None:
    heads = _heads_frame(w, "episode_id")
    parts = []
    if "episodes" in in_ingest:
        parts.append("SELECT k, start_date, end_date FROM valid_episodes WHERE k IN (SELECT v FROM _heads)")
    if "episodes" in scratch.reference:
        skip = " AND k NOT IN (SELECT k FROM valid_episodes)" if "episodes" in in_ingest else ""
        parts.append(
            f"SELECT k, start_date, end_date FROM ref_episodes WHERE k IN (SELECT v FROM _heads){skip}"
        )
    episodes = scratch.frame(" UNION ALL ".join(parts), _heads=heads) if not heads.is_empty() else None
    frame = (
        episodes.rename({"k": "episode_id"}).cast(
            {"episode_id": pl.String, "start_date": pl.Date, "end_date": pl.Date}
        )
        if episodes is not None
        else pl.DataFrame(schema={"episode_id": pl.String, "start_date": pl.Date, "end_date": pl.Date})
    )
    _check_window(w, spec, frame)


def _chunk_done(
    scratch: Scratch,
    st: _SourceState,
    w: _Work,
    table: str,
    columns: Sequence[str],
    key: list[str],
    seq: int,
    position: int,
    on_part: PartCallback | None,
    keep_valid: bool,
) -> int:
    """Issues, quarantine, valid rows and parent keys of one checked chunk; returns the next ``seq``."""
    issues = pl.concat([_empty_issues(True), *w.issues]) if w.issues else _empty_issues(True)
    if w.source.source_columns is not None:
        issues = _at_source_columns(issues, w.source.source_columns)
    issues = scrub_text_columns(issues.sort(_RID, "column", "rule", nulls_last=True), ["value", "message"])
    st.issues.append(issues)
    st.quarantine.append(_quarantine(w, issues))
    valid = w.frame.filter(~pl.col(_BAD)).select([pl.col(_p(c)).alias(c) for c in columns])
    rejected_rows = w.frame.filter(pl.col(_BAD))
    st.rejected.append(rejected_rows.select([pl.col(_p(c)).alias(c) for c in key]).drop_nulls())
    st.n_valid += valid.height
    if table == "episodes":
        scratch.insert("valid_episodes", valid.select("episode_id", "start_date", "end_date"))
    elif table == "sessions":
        scratch.insert("valid_sessions", valid.select("session_id"))
    if table in ("episodes", "sessions") and rejected_rows.height:
        rej = rejected_rows.select(
            pl.col(_p(key[0])).cast(pl.String).alias("v"),
            pl.lit(w.source.path, pl.String).alias("parent_file"),
            pl.col(ROW).cast(pl.Int64).alias("parent_row"),
            (pl.int_range(pl.len(), dtype=pl.Int64) + seq).alias("seq"),
        ).drop_nulls("v")
        scratch.insert(f"rejected_{table}", rej)
        seq += rejected_rows.height
    if keep_valid and st.source.chunks is None:
        st.valid.append(valid)
    if on_part is not None and valid.height:
        # spooled, and stored by one statement at the source's end (see ``Store._upsert_files``)
        path = scratch.folder / f"valid_{position}_{len(st.files):06d}.parquet"
        valid.write_parquet(path)
        st.files.append(str(path))
    return seq


def _part(st: _SourceState, frame: pl.DataFrame, *, final: bool) -> IngestPart:
    src = st.source
    part: IngestPart = {
        "table": src.table,
        "frame": frame,
        "source_path": src.path,
        "source_format": src.fmt,
        "sha256": src.sha256,
        "rows_read": src.rows_read,
        "rows_quarantined": sum(q.height for q in st.quarantine),
        "rejected_keys": None,
        "final": final,
    }
    return part


def _final_part(st: _SourceState) -> IngestPart:
    """The last part of a source: no rows, its totals and every rejected key (the store counts with them)."""
    spec = TABLE_SPECS[st.source.table]
    empty = pl.DataFrame(schema={c: spec.dtypes[c] for c in spec.columns})
    part = _part(st, empty, final=True)
    key = list(spec.key)
    part["parquet"] = list(st.files)
    part["rejected_keys"] = (
        pl.concat(st.rejected) if st.rejected else pl.DataFrame(schema={k: spec.dtypes[k] for k in key})
    )
    return part
