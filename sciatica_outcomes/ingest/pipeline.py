"""Read, validate and store: ``validate_paths`` and ``ingest_paths``.

Examples
--------
>>> from sciatica_outcomes.ingest import ingest_paths
>>> result = ingest_paths(["reports/demo/cohort"], db="data/outcomes.duckdb")  # doctest: +SKIP
>>> result.summary()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from sciatica_outcomes.defaults import DEFAULT_MAX_EXAMPLES
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.chunked import CHUNK_BYTES, Scratch, scan_csv, validate_chunked
from sciatica_outcomes.ingest.privacy import check_identifiers
from sciatica_outcomes.ingest.readers import (
    read_csv_raw,
    read_csv_table,
    read_excel_tables,
    read_parquet_table,
)
from sciatica_outcomes.ingest.report import write_html_report, write_json_report
from sciatica_outcomes.ingest.sources import ROW, SHAPE, Notice, SourceTable, file_digest, redcap_export_kind
from sciatica_outcomes.ingest.validate import TableResult, ValidationResult, validate_sources
from sciatica_outcomes.ingest.wide import LAYOUTS, WIDE_TABLES, VisitsMapping, read_mapping
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.store_tables import QUARANTINE_ROW_SCHEMA, IngestPart, WriteCounts
from sciatica_outcomes.store import DEFAULT_DB, Store, check_store_path

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "IngestResult",
    "ProgressCallback",
    "collect_files",
    "ingest_paths",
    "read_sources",
    "validate_paths",
]

#: Examples shown per rule in the HTML report (counts are always exact; the JSON report lists every issue).

#: ``callback(stage, detail)``: stages are ``read`` (detail = file), ``validated``, ``stored`` (detail =
#: table, called inside the transaction), ``quarantined`` and ``committed``.
ProgressCallback = Callable[[str, str], None]

_CSV = (".csv", ".tsv", ".txt")
_PARQUET = (".parquet", ".pq")
_EXCEL = (".xlsx", ".xlsm")
_JSON = (".json",)
_SUPPORTED = _CSV + _PARQUET + _EXCEL + _JSON


def collect_files(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, bool]], list[Notice]]:
    """Expand directories into their supported files (not recursive).

    Returns
    -------
    tuple
        ``(path, explicit)`` pairs (``explicit`` is False for files found in a directory) and notices for
        directory entries that were skipped.

    Raises
    ------
    UnusableInputError
        If a path does not exist or a directory holds no supported file.
    """
    out: list[tuple[Path, bool]] = []
    notices: list[Notice] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            usable = [f for f in found if f.suffix.lower() in _SUPPORTED]
            for f in found:
                if f.suffix.lower() not in _SUPPORTED:
                    notices.append(
                        Notice(str(f), None, "skipped_file", f"{f.name} skipped: not a supported format")
                    )
            if not usable:
                raise UnusableInputError(f"{p}: the directory holds no .csv, .parquet, .xlsx or .json file")
            out.extend((f, False) for f in usable)
        elif p.is_file():
            out.append((p, True))
        else:
            raise UnusableInputError(f"{p}: no such file or directory")
    return out, notices


def _redcap_kind(path: Path, dictionary: str | Path | None) -> str | None:
    """``"raw"`` or ``"labels"`` for a REDCap export (recognised from its header), else ``None``."""
    if path.suffix.lower() not in _CSV:
        return None
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    with open(path, "rb") as fh:
        head = fh.read(1 << 16).decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        cells = next(csv.reader(io.StringIO(head.split("\n", 1)[0].rstrip("\r"))), [])
    except csv.Error:
        return None
    kind = redcap_export_kind(cells)
    if kind is not None:
        return kind
    from sciatica_outcomes.schemas.redcap import redcap_dictionary as shipped  # noqa: PLC0415

    frame = shipped()
    if dictionary is not None:
        try:
            frame = pl.read_csv(dictionary, infer_schema=False)
        except (OSError, pl.exceptions.PolarsError):
            frame = shipped()  # an unreadable dictionary is refused, with its reason, by the reader
    return redcap_export_kind(cells, frame)


def _is_redcap_dictionary(path: Path) -> bool:
    if path.suffix.lower() not in _CSV:
        return False
    with open(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    return bool(head) and "Variable / Field Name" in head[0]


def _is_fhir_bundle(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace")
    return '"resourceType"' in head and '"Bundle"' in head


def read_sources(
    paths: Iterable[str | Path],
    *,
    table: str | None = None,
    redcap_dictionary: str | Path | None = None,
    redcap_mapping: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    layout: str = "long",
    mapping: str | Path | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    delimiter: str | None = None,
    chunk_bytes: int | None = CHUNK_BYTES,
) -> tuple[list[SourceTable], list[Notice]]:
    """Read every source into raw tables, refusing identifier columns.

    Parameters
    ----------
    paths : iterable of str or Path
        Files and directories. A file's table is its stem (``sessions.csv``) unless ``table`` is given;
        workbooks hold one sheet per table; a CSV whose header is a REDCap export
        (raw or labels) is read through the project mapping;
        a JSON file is a FHIR R4 Bundle.
    table : str, optional
        Table of every plain file given (``--table``).
    redcap_dictionary, redcap_mapping : str or Path, optional
        REDCap data dictionary and mapping (default: the ones shipped in ``data/schemas/redcap/``). A data
        dictionary among ``paths`` is used as ``redcap_dictionary``.
    on_progress : callable, optional
        Called as ``on_progress("read", path)`` after each file.
    layout : str
        ``long`` (default: one file per canonical table) or ``visits-wide`` (``--layout``): plain files
        not named after another table (``episodes.csv`` stays episodes) are wide visit sheets, reshaped
        into ``measures`` and ``questionnaire_items`` (:mod:`sciatica_outcomes.ingest.wide`).
    mapping : str or Path, optional
        Mapping file naming the wide sheet's columns (``--mapping``, TOML or CSV); implies ``visits-wide``.
    decimal, thousands : str
        Number format of CSV files (``--decimal``, ``--thousands``): decimal mark ``.`` (default) or ``,``;
        thousands separator (default none). Never guessed: a ``7,5`` without ``--decimal ,`` is a type
        error whose message names the option.
    delimiter : str, optional
        Field delimiter of CSV files (``--delimiter``); sniffed when not given.
    chunk_bytes : int or None
        A plain CSV file larger than this is read in chunks of about this many bytes (the memory budget,
        :data:`~sciatica_outcomes.ingest.chunked.CHUNK_BYTES`; None: read every file whole). Its source's
        ``chunks`` yields the rows again; validate such sources with :func:`validate_paths` or
        :func:`ingest_paths`, which then validate and store chunk by chunk.

    Returns
    -------
    tuple
        The source tables and the notices about skipped files.

    Raises
    ------
    UnusableInputError
        Unreadable file, unknown table, or a file that cannot be parsed at all.
    IdentifierColumnError
        A file with a direct-identifier column.
    """
    if table is not None and table not in TABLE_SPECS:
        raise UnusableInputError(
            f"unknown table {table!r} (--table): expected one of {', '.join(TABLE_SPECS)}"
        )
    fmt = _number_format(decimal, thousands, delimiter)
    if layout not in LAYOUTS:
        raise UnusableInputError(
            f"unknown layout {layout!r} (--layout): expected one of {', '.join(LAYOUTS)}"
        )
    names = read_mapping(mapping) if mapping is not None else None
    wide = layout == "visits-wide" or names is not None
    if wide and table is not None:
        raise UnusableInputError(
            "--table and --layout visits-wide (or --mapping) exclude each other: a wide visit sheet is "
            "reshaped into measures and questionnaire_items; drop --table"
        )
    paths_given = [str(p) for p in paths] if not isinstance(paths, str | Path) else [str(paths)]
    files, notices = collect_files(paths_given)
    dictionaries = [p for p, _ in files if _is_redcap_dictionary(p)]
    if dictionaries and redcap_dictionary is None:
        redcap_dictionary = dictionaries[0]
    files = [(p, e) for p, e in files if p not in dictionaries]
    sources: list[SourceTable] = []
    # a plain CSV is hashed by its reader from the very bytes it parses; other formats are hashed here,
    # beside the parse, and refused if the file changed between the hash and the read
    plain_csv = {
        p for p, _ in files if p.suffix.lower() in _CSV and _redcap_kind(p, redcap_dictionary) is None
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        stamps = {p: _stamp(p) for p, _ in files if p not in plain_csv}
        digests = {p: pool.submit(file_digest, p) for p in stamps}
        for path, explicit in files:

            def sha(path: Path = path) -> str:
                return digests[path].result().sha256

            suffix = path.suffix.lower()
            stem = path.stem.strip().lower()
            if suffix in _JSON:
                if not _is_fhir_bundle(path):
                    if explicit:
                        raise UnusableInputError(f"{path}: a .json source must be a FHIR R4 Bundle")
                    notices.append(
                        Notice(str(path), None, "skipped_file", f"{path.name} skipped: not a FHIR Bundle")
                    )
                    continue
                from sciatica_outcomes.ingest.fhir import read_fhir_bundle  # noqa: PLC0415

                got = read_fhir_bundle(path, sha())
            elif suffix in _CSV and path not in plain_csv:
                from sciatica_outcomes.ingest.redcap import read_redcap_export  # noqa: PLC0415

                got = read_redcap_export(path, sha(), dictionary=redcap_dictionary, mapping=redcap_mapping)
            elif (
                wide
                and suffix in _CSV + _EXCEL + _PARQUET
                and (stem not in TABLE_SPECS or stem in WIDE_TABLES)
            ):
                got = _read_wide(path, suffix, sha, names, fmt)
            elif suffix in _EXCEL:
                got = read_excel_tables(path, sha(), table=table or (stem if stem in TABLE_SPECS else None))
                _refuse_wide_as_long(got, str(path))
            else:
                target = table or stem
                if target not in TABLE_SPECS:
                    # a file in a directory is refused too: skipping it would pass a wrong name quietly
                    _refuse_wide_unnamed(path, suffix, fmt)
                    raise UnusableInputError(
                        f"{path}: cannot tell which table this file holds: name it after a table "
                        f"({', '.join(TABLE_SPECS)}), pass --table, or give a REDCap export "
                        "('CSV (raw data)' or 'CSV (labels)') or a FHIR R4 Bundle (.json)"
                    )
                chunked = (
                    scan_csv(
                        path,
                        target,
                        chunk_bytes=chunk_bytes,
                        delimiter=fmt.delimiter,
                        decimal=fmt.decimal,
                        thousands=fmt.thousands,
                    )
                    if chunk_bytes is not None and suffix in _CSV
                    else None
                )
                if suffix in _PARQUET:
                    got = [read_parquet_table(path, target, sha())]
                elif chunked is not None:
                    got = [chunked]
                else:
                    got = [
                        read_csv_table(
                            path,
                            target,
                            typed=TABLE_SPECS[target].dtypes,
                            delimiter=fmt.delimiter,
                            decimal=fmt.decimal,
                            thousands=fmt.thousands,
                        )
                    ]
                _refuse_wide_as_long(got, str(path))
            if path in stamps and _stamp(path) != stamps[path]:
                raise UnusableInputError(
                    f"{path}: the file changed while it was being read, so nothing was stored; ingest it "
                    "again once it is no longer being written or replaced"
                )
            for src in got:
                # column selection by name shares the buffers (``drop`` would copy every column)
                check_identifiers(src.raw[[c for c in src.raw.columns if c not in (ROW, SHAPE)]], src.path)
            sources.extend(got)
            if on_progress is not None:
                on_progress("read", str(path))
    if not sources:
        raise UnusableInputError(
            f"nothing to ingest in {', '.join(map(str, paths_given))}: no file is named after a table "
            f"({', '.join(TABLE_SPECS)}), a REDCap export or a FHIR R4 Bundle; rename the "
            "files or pass --table"
        )
    return sources, notices


@dataclass(frozen=True)
class _NumberFormat:
    decimal: str = "."
    thousands: str | None = None
    delimiter: str | None = None


#: Decimal marks, thousands separators and delimiters the options accept (``--thousands space`` is a blank,
#: ``nbsp`` the no-break space some spreadsheets write).
_DECIMALS = (".", ",")
_THOUSANDS = {".": ".", ",": ",", "'": "'", "space": " ", "nbsp": "\u00a0", " ": " "}
_DELIMITER_NAMES = {",": ",", ";": ";", "tab": "\t", "\t": "\t", "|": "|"}


def _number_format(decimal: str, thousands: str | None, delimiter: str | None) -> _NumberFormat:
    """Check the number-format options; refuse combinations that cannot be read unambiguously."""
    if decimal not in _DECIMALS:
        raise UnusableInputError(f"--decimal {decimal!r}: expected '.' or ','")
    sep = None
    if thousands is not None:
        if thousands not in _THOUSANDS:
            raise UnusableInputError(
                f"--thousands {thousands!r}: expected one of {', '.join(repr(t) for t in _THOUSANDS)}"
            )
        sep = _THOUSANDS[thousands]
        if sep == decimal:
            raise UnusableInputError(
                f"--thousands {thousands!r} is also the decimal mark (--decimal {decimal!r}); they must "
                "differ"
            )
    delim = None
    if delimiter is not None:
        if delimiter not in _DELIMITER_NAMES:
            raise UnusableInputError(
                f"--delimiter {delimiter!r}: expected one of {', '.join(repr(d) for d in _DELIMITER_NAMES)}"
            )
        # a delimiter that is also the decimal mark is given on purpose: such cells are quoted
        delim = _DELIMITER_NAMES[delimiter]
    return _NumberFormat(decimal, sep, delim)


def _read_wide(
    path: Path, suffix: str, sha: Callable[[], str], mapping: VisitsMapping | None, fmt: _NumberFormat
) -> list[SourceTable]:
    """Read a wide visit sheet as text and reshape it (identifier headers are refused before reshaping)."""
    from sciatica_outcomes.ingest.wide import reshape_visits  # noqa: PLC0415

    if suffix in _CSV:
        sheet = read_csv_table(
            path, "measures", delimiter=fmt.delimiter, decimal=fmt.decimal, thousands=fmt.thousands
        )
    elif suffix in _EXCEL:
        sheets = read_excel_tables(path, sha(), table="measures")
        if len(sheets) != 1:
            raise UnusableInputError(
                f"{path}: a visits-wide workbook must hold one sheet (this one has {len(sheets)} named after "
                "tables); save the visit sheet on its own"
            )
        sheet = sheets[0]
    else:
        sheet = read_parquet_table(path, "measures", sha())
        sheet.raw = sheet.raw.with_columns(pl.exclude(ROW).cast(pl.String))
    check_identifiers(sheet.raw[[c for c in sheet.raw.columns if c != ROW]], sheet.path)
    return reshape_visits(sheet, mapping)


def _wide_message(path: str, table: str, wide_cols: list[str]) -> str:
    shown = ", ".join(wide_cols[:5]) + (", ..." if len(wide_cols) > 5 else "")
    long = "measure, value" if table == "measures" else "instrument, item, response"
    return (
        f"{path}: this looks like a wide visit sheet (one row per visit, a column per measure or item: "
        f"{shown}), but it is read as the long table {table}, which needs the columns {long}; pass "
        "--layout visits-wide (or --mapping FILE naming its columns) to reshape it"
    )


def _refuse_wide_as_long(sources: list[SourceTable], path: str) -> None:
    """One message (not one per row) for a wide visit sheet read as a long table."""
    from sciatica_outcomes.ingest.wide import looks_wide  # noqa: PLC0415

    for src in sources:
        if src.table not in WIDE_TABLES:
            continue
        cols = [c for c in src.raw.columns if c != ROW]
        lacking = [c for c in TABLE_SPECS[src.table].required_columns if c not in cols]
        wide_cols = looks_wide(cols)
        if lacking and wide_cols:
            raise UnusableInputError(_wide_message(path, src.table, wide_cols))


def _refuse_wide_unnamed(path: Path, suffix: str, fmt: _NumberFormat) -> None:
    """A file named after no table whose header is a wide visit sheet's: say so and how to read it."""
    if suffix not in _CSV:
        return
    from sciatica_outcomes.ingest.wide import looks_wide  # noqa: PLC0415

    try:
        header, _ = read_csv_raw(path, delimiter=fmt.delimiter, decimal=fmt.decimal)
    except UnusableInputError:
        return
    wide_cols = looks_wide([c for c in header.columns if c != ROW])
    if wide_cols and {"episode_id", "assessed_on"} & set(header.columns):
        shown = ", ".join(wide_cols[:5]) + (", ..." if len(wide_cols) > 5 else "")
        raise UnusableInputError(
            f"{path}: this looks like a wide visit sheet (one row per visit, columns {shown}); pass "
            "--layout visits-wide (or --mapping FILE naming its columns) to reshape it into measures and "
            "questionnaire_items"
        )


def _stamp(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is replaced or rewritten: device, inode, size and modification time."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


#: Tables whose rows must belong to an episode (foreign key and date window checks need the stored episodes).
_REFER_TO_EPISODES = frozenset(
    name for name, spec in TABLE_SPECS.items() if any(fk.table == "episodes" for fk in spec.foreign_keys)
)


def _reference(store: Store, tables: set[str]) -> dict[str, pl.DataFrame]:
    ref: dict[str, pl.DataFrame] = {}
    if tables & _REFER_TO_EPISODES:
        ref["episodes"] = store.read("episodes", columns=["episode_id", "start_date", "end_date"])
    if "session_exercises" in tables:
        ref["sessions"] = store.read("sessions", columns=["session_id"])
    return ref


def _scratch(store: Store | None, tables: set[str]) -> Scratch:
    """The scratch database of a chunked ingest, with the store's rows that ``_reference`` would read."""
    scratch = Scratch.open()
    try:
        if store is not None:
            if tables & _REFER_TO_EPISODES:
                sql = "SELECT episode_id, start_date, end_date FROM episodes"
                scratch.add_reference("episodes", store.read_batches(sql))
            if "session_exercises" in tables:
                scratch.add_reference("sessions", store.read_batches("SELECT session_id FROM sessions"))
    except BaseException:
        scratch.close()
        raise
    return scratch


def _committed(
    validation: ValidationResult,
    db: Path,
    ingest_id: int,
    counts: list[WriteCounts],
    absent: dict[str, int],
    quarantine_added: int,
    replace: bool,
    out_dir: Path,
    max_examples: int,
    on_progress: ProgressCallback | None,
) -> IngestResult:
    """The result of a committed ingest (whole-file or chunked), with its reports written.

    The ingest is committed: a report that cannot be written is told, not raised (the data are stored).
    """
    if on_progress is not None:
        on_progress("committed", str(db))
    reports, error = _write_reports(validation, out_dir, f"{db.stem}_ingest_{ingest_id}", max_examples)
    return IngestResult(
        validation,
        db,
        True,
        ingest_id,
        counts,
        reports,
        error,
        absent=absent,
        replaced=replace,
        quarantine_added=quarantine_added,
    )


def _is_chunked(sources: Iterable[SourceTable]) -> bool:
    return any(s.chunks is not None for s in sources)


def validate_paths(
    paths: Iterable[str | Path],
    *,
    table: str | None = None,
    db: str | Path | None = None,
    redcap_dictionary: str | Path | None = None,
    redcap_mapping: str | Path | None = None,
    layout: str = "long",
    mapping: str | Path | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    delimiter: str | None = None,
    chunk_bytes: int | None = CHUNK_BYTES,
) -> ValidationResult:
    """Validate files without storing anything.

    Parameters
    ----------
    paths : iterable of str or Path
        Files and directories (see :func:`read_sources`).
    table : str, optional
        Table of every plain file given.
    db : str or Path, optional
        An existing store whose episodes and sessions foreign keys may point to.
    redcap_dictionary, redcap_mapping, layout, mapping, decimal, thousands, delimiter, chunk_bytes
        See :func:`read_sources`.

    Returns
    -------
    ValidationResult
        Every problem found, the valid and the rejected rows (the valid rows of a file read in chunks are
        counted, not kept: ``rows_valid``).
    """
    sources, notices = read_sources(
        paths,
        table=table,
        redcap_dictionary=redcap_dictionary,
        redcap_mapping=redcap_mapping,
        layout=layout,
        mapping=mapping,
        decimal=decimal,
        thousands=thousands,
        delimiter=delimiter,
        chunk_bytes=chunk_bytes,
    )
    if _is_chunked(sources):
        tables = {s.table for s in sources}
        if db is not None and Path(db).exists():
            with Store(db, read_only=True) as store:
                scratch = _scratch(store, tables)
        else:
            scratch = _scratch(None, tables)
        try:
            return _with_notices(validate_chunked(sources, scratch, keep_valid=True), notices)
        finally:
            scratch.close()
    reference: dict[str, pl.DataFrame] = {}
    if db is not None and Path(db).exists():
        with Store(db, read_only=True) as store:
            reference = _reference(store, {s.table for s in sources})
    result = validate_sources(sources, reference=reference)
    return _with_notices(result, notices)


def _with_notices(result: ValidationResult, notices: list[Notice]) -> ValidationResult:
    if not notices:
        return result
    from sciatica_outcomes.ingest.validate import _notice_issues  # noqa: PLC0415

    result.issues = pl.concat([_notice_issues(notices), result.issues])
    result.notices = notices + result.notices
    return result


@dataclass
class IngestResult:
    """Outcome of :func:`ingest_paths`.

    Attributes
    ----------
    validation : ValidationResult
        Every problem found and the rows per source.
    db : Path
        The store written to.
    written : bool
        False when ``strict`` refused the ingest because some row failed (nothing was written).
    ingest_id : int or None
        Id of the ``ingest_log`` entries of this ingest (None when nothing was written).
    counts : list of WriteCounts
        Upsert counts per source table, in the order of ``validation.tables``.
    reports : dict of str to Path
        ``json`` and ``html`` reports written next to the store (only complete files).
    report_error : str or None
        Why a report could not be written (e.g. ``No space left on device``); the ingest itself is
        unaffected: what ``written`` and ``counts`` say was committed is in the store.
    absent : dict of str to int
        Per table ingested: rows that were in the store before and whose key is in none of this ingest's
        sources of the table (a newer export from which rows were deleted). Kept, unless ``replaced``.
    replaced : bool
        True when ``replace`` deleted the ``absent`` rows in the ingest's transaction.
    quarantine_added : int
        Rows added to the store's quarantine: rejected rows whose content (table and raw values) was
        already quarantined by an earlier ingest, under any file name, are not added again.
    """

    validation: ValidationResult
    db: Path
    written: bool
    ingest_id: int | None
    counts: list[WriteCounts] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)
    report_error: str | None = None
    absent: dict[str, int] = field(default_factory=dict)
    replaced: bool = False
    quarantine_added: int = 0

    def summary(self) -> pl.DataFrame:
        """One row per source table: rows read, stored (inserted, updated, unchanged), quarantined, errors.

        ``not_in_export`` is the table's count in :attr:`absent` (null when nothing was written): rows in
        the store that this ingest's sources of the table do not hold (deleted when :attr:`replaced`).
        """
        base = self.validation.counts()
        if self.written:
            extra = pl.DataFrame(
                {
                    "inserted": [c.inserted for c in self.counts],
                    "updated": [c.updated for c in self.counts],
                    "unchanged": [c.unchanged for c in self.counts],
                },
                schema={"inserted": pl.Int64, "updated": pl.Int64, "unchanged": pl.Int64},
            )
        else:
            zeros = [0] * base.height
            extra = pl.DataFrame(
                {"inserted": zeros, "updated": zeros, "unchanged": zeros},
                schema={"inserted": pl.Int64, "updated": pl.Int64, "unchanged": pl.Int64},
            )
        out = pl.concat([base, extra], how="horizontal")
        stored = pl.col("rows_valid") if self.written else pl.lit(0, pl.Int64)
        absent = (
            pl.col("table").replace_strict(self.absent, default=0, return_dtype=pl.Int64)
            if self.written
            else pl.lit(None, pl.Int64)
        )
        return out.with_columns(stored.alias("rows_stored"), absent.alias("not_in_export")).select(
            "file",
            "table",
            "format",
            "rows_read",
            "rows_stored",
            "inserted",
            "updated",
            "unchanged",
            "rows_quarantined",
            "not_in_export",
            "errors",
        )


def ingest_paths(
    paths: Iterable[str | Path] | str | Path,
    db: str | Path = DEFAULT_DB,
    *,
    table: str | None = None,
    strict: bool = False,
    report_dir: str | Path | None = None,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    redcap_dictionary: str | Path | None = None,
    redcap_mapping: str | Path | None = None,
    on_progress: ProgressCallback | None = None,
    replace: bool = False,
    layout: str = "long",
    mapping: str | Path | None = None,
    decimal: str = ".",
    thousands: str | None = None,
    delimiter: str | None = None,
    chunk_bytes: int | None = CHUNK_BYTES,
) -> IngestResult:
    """Validate sources and store them in one transaction; quarantine the rows that fail.

    Parameters
    ----------
    paths : path or iterable of paths
        Files and directories (a directory such as the synthetic cohort's output is read whole; a .json
        file that is not a FHIR Bundle, such as ``truth.json``, is skipped with a notice; a CSV or Parquet
        file that is not named after a table is refused, as is a directory with nothing to ingest: no
        store is created then).
    db : str or Path
        The DuckDB store (created if missing).
    table : str, optional
        Table of every plain file given (``--table``).
    strict : bool
        If True and any row fails, write nothing (``written`` is False); otherwise store the valid rows and
        quarantine the others.
    report_dir : str or Path, optional
        Where the JSON and HTML reports go (default: next to the store).
    max_examples : int
        Example lines per distinct offending value in the HTML report (counts stay exact).
    redcap_dictionary, redcap_mapping : str or Path, optional
        REDCap data dictionary and mapping (default: the shipped ones).
    on_progress : callable, optional
        Progress callback, see :data:`ProgressCallback`.
    replace : bool
        The sources are the whole export of their tables (``--replace``): rows of those tables that are in
        the store but in none of the sources (deleted from the export) are deleted in the same
        transaction. A row of the export that is rejected keeps its stored version. Refused (nothing
        stored) if rows of another table in the store point to a row that would be deleted.
    layout, mapping, decimal, thousands, delimiter
        Wide visit sheets and number format of CSV files, see :func:`read_sources`.
    chunk_bytes : int or None
        Memory budget: a plain CSV file larger than this many bytes is read, validated and stored in
        chunks of about this size (:mod:`sciatica_outcomes.ingest.chunked`; default
        :data:`~sciatica_outcomes.ingest.chunked.CHUNK_BYTES`), with the same checks, messages, reports and
        counts; None reads every file whole.

    Returns
    -------
    IngestResult
        For every source, ``rows_read == rows_stored + rows_quarantined`` when written; ``absent`` tells,
        per table, how many stored rows the export lacks (deleted when ``replace``).

    Raises
    ------
    UnusableInputError
        Unreadable file, unknown table or unparseable file, a file that changed during the ingest, or a
        ``replace`` that would leave rows pointing to deleted ones (nothing is written).
    IdentifierColumnError
        A direct identifier column (nothing is written).
    StoreError
        The store cannot be opened.

    Notes
    -----
    The whole ingest (upserts of every table, quarantine rows, ``ingest_log`` entries) is one DuckDB
    transaction: a crash before the commit leaves the store as it was. Re-ingesting an unchanged file
    changes no data row and adds no quarantine row (the attempt is logged with ``rows_unchanged``); the
    same bad rows under another file name are not quarantined twice.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    db = check_store_path(db)  # before reading anything: DuckDB would open a CSV as a throw-away database
    sources, notices = read_sources(
        paths,
        table=table,
        redcap_dictionary=redcap_dictionary,
        redcap_mapping=redcap_mapping,
        on_progress=on_progress,
        layout=layout,
        mapping=mapping,
        decimal=decimal,
        thousands=thousands,
        delimiter=delimiter,
        chunk_bytes=chunk_bytes,
    )
    if _is_chunked(sources):
        return _ingest_chunked(sources, notices, db, strict, report_dir, max_examples, on_progress, replace)
    with Store(db) as store:
        reference = _reference(store, {s.table for s in sources})
        out_dir = Path(report_dir) if report_dir is not None else db.parent
        if strict:
            validation = _with_notices(validate_sources(sources, reference=reference), notices)
            if on_progress is not None:
                on_progress("validated", "")
            if not validation.ok:
                reports, error = _write_reports(validation, out_dir, f"{db.stem}_refused", max_examples)
                return IngestResult(validation, db, False, None, [], reports, error)
            order = {t: i for i, t in enumerate(TABLE_SPECS)}
            writer = store.writer(on_step=on_progress, replace=replace)
            try:
                for i in sorted(
                    range(len(validation.tables)), key=lambda i: order[validation.tables[i].source.table]
                ):
                    writer.submit(i, _part(validation.tables[i]))
            except BaseException:
                writer.abort()
                raise
        else:
            # store each table on the writer thread while the next one is validated
            writer = store.writer(on_step=on_progress, replace=replace)
            try:
                validation = _with_notices(
                    validate_sources(
                        sources, reference=reference, on_table=lambda i, t: writer.submit(i, _part(t))
                    ),
                    notices,
                )
            except BaseException:
                writer.abort()
                raise
            if on_progress is not None:
                on_progress("validated", "")
        ingest_id, by_position = writer.finish(_quarantine_of(validation))
        counts = [by_position[i] for i in range(len(validation.tables))]
    return _committed(
        validation,
        db,
        ingest_id,
        counts,
        writer.absent,
        writer.quarantine_added,
        replace,
        out_dir,
        max_examples,
        on_progress,
    )


#: DuckDB's memory limit on the store while a chunked ingest writes it (the store's buffer pool would
#: otherwise hold up to 80 % of the machine's memory of the transaction's pages).
STORE_MEMORY_LIMIT = "512MB"


def _ingest_chunked(
    sources: list[SourceTable],
    notices: list[Notice],
    db: Path,
    strict: bool,
    report_dir: str | Path | None,
    max_examples: int,
    on_progress: ProgressCallback | None,
    replace: bool,
) -> IngestResult:
    """:func:`ingest_paths` of sources of which some are read in chunks (see :mod:`~.chunked`)."""
    tables = {s.table for s in sources}
    out_dir = Path(report_dir) if report_dir is not None else db.parent
    with Store(db) as store:
        limit = store.query("SELECT current_setting('memory_limit')")[0][0]
        store.query(f"SET memory_limit = '{STORE_MEMORY_LIMIT}'")
        try:
            read_notices = [list(s.notices) for s in sources]
            if strict:
                # validate everything first; store (a second pass) only when no row failed
                scratch = _scratch(store, tables)
                try:
                    validation = _with_notices(validate_chunked(sources, scratch), notices)
                finally:
                    scratch.close()
                if on_progress is not None:
                    on_progress("validated", "")
                if not validation.ok:
                    reports, error = _write_reports(validation, out_dir, f"{db.stem}_refused", max_examples)
                    return IngestResult(validation, db, False, None, [], reports, error)
                for src, kept in zip(sources, read_notices, strict=True):
                    src.notices[:] = kept
            scratch = _scratch(store, tables)
            try:
                writer = store.writer(on_step=on_progress, replace=replace)
                try:
                    validation = _with_notices(
                        validate_chunked(sources, scratch, on_part=writer.submit), notices
                    )
                except BaseException:
                    writer.abort()
                    raise
                if on_progress is not None and not strict:
                    on_progress("validated", "")
                # the valid rows are spooled in the scratch folder until the writer has stored them
                ingest_id, by_position = writer.finish(_quarantine_of(validation))
            finally:
                scratch.close()
            counts = [by_position[i] for i in range(len(validation.tables))]
        finally:
            store.query(f"SET memory_limit = '{limit}'")
    return _committed(
        validation,
        db,
        ingest_id,
        counts,
        writer.absent,
        writer.quarantine_added,
        replace,
        out_dir,
        max_examples,
        on_progress,
    )


def _part(t: TableResult) -> IngestPart:
    return {
        "table": t.source.table,
        "frame": t.valid,
        "source_path": t.source.path,
        "source_format": t.source.fmt,
        "sha256": t.source.sha256,
        "rows_read": t.rows_read,
        "rows_quarantined": t.rows_quarantined,
        "rejected_keys": t.rejected_keys,
    }


def _quarantine_of(validation: ValidationResult) -> pl.DataFrame:
    frames = [t.quarantine for t in validation.tables if t.rows_quarantined]
    if frames:
        return pl.concat(frames)
    return pl.DataFrame(schema=QUARANTINE_ROW_SCHEMA)


def _write_reports(
    validation: ValidationResult, out_dir: Path, stem: str, max_examples: int
) -> tuple[dict[str, Path], str | None]:
    """Write the JSON and HTML reports; return those written and why the others could not be."""
    written: dict[str, Path] = {}
    try:
        written["json"] = write_json_report(validation, out_dir / f"{stem}.report.json")
        written["html"] = write_html_report(
            validation, out_dir / f"{stem}.report.html", max_examples=max_examples
        )
    except OSError as exc:
        what = "the HTML report" if written else "the reports"
        return written, f"{what} could not be written to {out_dir} ({exc.strerror or exc})"
    return written, None
