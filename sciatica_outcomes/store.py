"""The embedded DuckDB store: canonical tables, the ingest log and the quarantine.

One DuckDB file holds the six canonical tables (columns and types as in ``sciatica_outcomes.schemas``),
``ingest_log`` (one row per source table per ingest: path, sha256, schema version, counts) and ``quarantine``
(every rejected row with its raw values and its errors). Writes upsert by primary key inside one
transaction: re-writing identical rows changes nothing, changed rows replace the stored ones and are counted
as updates, and a crash before the commit leaves the previous state intact (DuckDB commits through its
write-ahead log).

Examples
--------
>>> from sciatica_outcomes.store import Store
>>> with Store("data/outcomes.duckdb", read_only=True) as store:  # doctest: +SKIP
...     sessions = store.read("sessions")
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from sciatica_outcomes._version import __version__
from sciatica_outcomes.defaults import DEFAULT_DB
from sciatica_outcomes.errors import DataValidationError, StoreError, UnusableInputError
from sciatica_outcomes.schemas import SCHEMA_VERSION, TABLE_SPECS
from sciatica_outcomes.schemas.store_tables import (
    INGEST_LOG_ORDER,
    INGEST_LOG_SCHEMA,
    QUARANTINE_ORDER,
    QUARANTINE_SCHEMA,
    IngestLogEntry,
    IngestPart,
    WriteCounts,
)
from sciatica_outcomes.schemas.vocabulary import INGEST_LOG_TABLE, QUARANTINE_TABLE

__all__ = [
    "CANONICAL_TABLES",
    "DEFAULT_DB",
    "INGEST_LOG_SCHEMA",
    "QUARANTINE_SCHEMA",
    "IngestWriter",
    "Store",
    "WriteCounts",
    "check_store_path",
]

#: Default location of the store (relative to the working directory); ``--db`` overrides it.

#: The six canonical tables, in dependency order (``schemas.vocabulary``).
CANONICAL_TABLES: tuple[str, ...] = tuple(TABLE_SPECS)

#: Columns added to ``ingest_log`` after schema 1.0.0 was first released, with their SQL default (stores
#: written before get them when next opened for writing; read-only they read as the default).
_LOG_ADDED = {"rows_deleted": "0"}

_DUCK_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR",
    pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE",
    pl.Date: "DATE",
    pl.Boolean: "BOOLEAN",
    pl.Datetime: "TIMESTAMP",
}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ddl(table: str, schema: Mapping[str, pl.DataType]) -> str:
    cols = ", ".join(f"{_q(c)} {_DUCK_TYPES[t.base_type()]}" for c, t in schema.items())
    return f"CREATE TABLE IF NOT EXISTS {_q(table)} ({cols})"


#: Bytes 8-11 of every DuckDB database file (after an 8-byte checksum of the first header block).
_DUCKDB_MAGIC = b"DUCK"
_MAGIC_OFFSET = 8


def check_store_path(path: str | Path) -> Path:
    """Refuse a path that exists but is not a DuckDB database file.

    DuckDB opens an existing CSV, Parquet or JSON file as an in-memory database whose writes are lost when
    the connection closes, so a store path is checked by the DuckDB magic header (``DUCK`` at byte 8), not
    by its extension. A path that does not exist yet is fine (the store is created there).

    Parameters
    ----------
    path : str or Path
        Store file (``--db``).

    Returns
    -------
    pathlib.Path
        ``path`` as a Path.

    Raises
    ------
    StoreError
        If ``path`` is a directory, cannot be read, or is a file without DuckDB's header (empty files
        included).
    """
    path = Path(path)
    if path.is_dir():
        raise StoreError(
            f"store {path} is a directory, not a DuckDB database: pass --db a file such as "
            f"{path / 'outcomes.duckdb'}"
        )
    if not path.exists():
        return path
    try:
        with open(path, "rb") as fh:
            head = fh.read(_MAGIC_OFFSET + len(_DUCKDB_MAGIC))
    except OSError as exc:
        raise StoreError(f"cannot read store {path} ({exc.strerror}): check its permissions") from exc
    if head[_MAGIC_OFFSET:] != _DUCKDB_MAGIC:
        what = "an empty file" if not head else "a file without DuckDB's header"
        raise StoreError(
            f"{path} is not a DuckDB database ({what}; DuckDB would open it as a temporary in-memory "
            "database and keep nothing): pass --db an existing .duckdb store or a new path"
        )
    return path


def _package_version() -> str:
    return __version__


class Store:
    """An embedded DuckDB store of the canonical tables.

    Parameters
    ----------
    path : str or Path
        DuckDB file; created (with its parent directory) unless ``read_only``.
    read_only : bool
        Open without write access (several readers may share the file; no writer may hold it).

    Raises
    ------
    StoreError
        If the file cannot be opened (missing in read-only mode, locked by another process, not a DuckDB
        file) or was written by an incompatible schema version.
    """

    def __init__(self, path: str | Path = DEFAULT_DB, *, read_only: bool = False) -> None:
        self.path = check_store_path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(
                f"store {self.path} does not exist: run `sciatica-outcomes ingest ... --db {self.path}` first"
            )
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            raise StoreError(
                f"cannot open store {self.path}: {exc}. Is another process writing to it? "
                "Close it, or pass another --db."
            ) from exc
        self._closed = False
        try:
            # rows are returned sorted by key, so DuckDB may insert in parallel without keeping order
            self._exec("SET preserve_insertion_order = false")
            if not read_only:
                self._create()
            self._check_version()
        except duckdb.Error as exc:
            self.close()
            raise StoreError(
                f"cannot prepare store {self.path}: {_first_line(exc)}; nothing was written to it "
                "(free disk space or fix its permissions, then run again)"
            ) from exc
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    def _reconnect(self) -> None:
        """Replace an invalidated connection (after a fatal DuckDB error) by a new one to the same file."""
        with suppress(duckdb.Error):
            self._con.close()
        try:
            self._con = duckdb.connect(str(self.path), read_only=self.read_only)
        except duckdb.Error as exc:
            self._closed = True
            raise StoreError(f"cannot reopen store {self.path}: {_first_line(exc)}") from exc
        self._closed = False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent); the file lock is released even if DuckDB reports an error."""
        if not self._closed:
            self._closed = True
            with suppress(duckdb.Error):
                self._con.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    def _create(self) -> None:
        with self.transaction():
            for name, spec in TABLE_SPECS.items():
                self._exec(_ddl(name, spec.dtypes))
            self._exec(_ddl(INGEST_LOG_TABLE, INGEST_LOG_SCHEMA))
            for column, default in _LOG_ADDED.items():
                self._exec(
                    f"ALTER TABLE {INGEST_LOG_TABLE} ADD COLUMN IF NOT EXISTS {_q(column)} "
                    f"BIGINT DEFAULT {default}"
                )
            self._exec(_ddl(QUARANTINE_TABLE, QUARANTINE_SCHEMA))
            self._exec("CREATE TABLE IF NOT EXISTS store_meta (key VARCHAR, value VARCHAR)")
            has = self._exec("SELECT count(*) FROM store_meta WHERE key = 'schema_version'")
            if has[0][0] == 0:
                self._exec("INSERT INTO store_meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])

    def _check_version(self) -> None:
        if "store_meta" not in self._existing_tables():
            return
        rows = self._exec("SELECT value FROM store_meta WHERE key = 'schema_version'")
        row = rows[0] if rows else None
        if row is not None and row[0].split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise StoreError(
                f"store {self.path} holds schema version {row[0]}, this package writes {SCHEMA_VERSION}: "
                "migrate the store or use a new --db"
            )

    def _exec(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Execute one statement and fetch its whole result (DuckDB needs results consumed)."""
        cur = self._con.execute(sql, params) if params is not None else self._con.execute(sql)
        # duckdb's stubs type description as never None; it is None for statements without a result
        return cur.fetchall() if cur.description is not None else []  # type: ignore[redundant-expr]

    def _unregister(self, name: str) -> None:
        # after a failed statement the transaction is aborted and unregister raises too: keep the first error
        with suppress(duckdb.Error):
            self._con.unregister(name)

    def _existing_tables(self) -> set[str]:
        rows = self._exec("SELECT table_name FROM duckdb_tables() WHERE NOT temporary")
        return {r[0] for r in rows}

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path} was opened read-only: open it with read_only=False to write")

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Run the body in one DuckDB transaction: commit on success, roll back on any exception."""
        self._exec("BEGIN TRANSACTION")
        try:
            yield self
        except BaseException:
            # a failed rollback (the connection may be invalidated) must not hide the original error
            with suppress(duckdb.Error):
                self._exec("ROLLBACK")
            raise
        self._exec("COMMIT")

    # ------------------------------------------------------------------ reading
    def read(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        *,
        where: str | None = None,
        params: Sequence[Any] | None = None,
    ) -> pl.DataFrame:
        """Return a whole table as a polars frame, sorted by its key.

        Parameters
        ----------
        table : str
            A canonical table, ``"ingest_log"`` or ``"quarantine"``.
        columns : sequence of str, optional
            Read only these columns (default: all).
        where : str, optional
            SQL condition on the table's columns selecting the rows to read (the derive stage reads one
            range of episodes at a time); ``?`` placeholders take ``params``. Default: every row.
        params : sequence, optional
            Values of the placeholders of ``where``.

        Returns
        -------
        polars.DataFrame
            Canonical tables have the canonical columns and dtypes (as produced by
            ``sciatica_outcomes.synth.generate_cohort``), sorted by primary key.
        """
        if table in TABLE_SPECS:
            schema: Mapping[str, pl.DataType] = TABLE_SPECS[table].dtypes
            order = TABLE_SPECS[table].key
        elif table == INGEST_LOG_TABLE:
            schema, order = INGEST_LOG_SCHEMA, INGEST_LOG_ORDER
        elif table == QUARANTINE_TABLE:
            schema, order = QUARANTINE_SCHEMA, QUARANTINE_ORDER
        else:
            raise StoreError(
                f"unknown table {table!r}: expected one of {', '.join(CANONICAL_TABLES)}, "
                "ingest_log, quarantine"
            )
        if columns is not None:
            unknown = [c for c in columns if c not in schema]
            if unknown:
                raise StoreError(f"table {table} has no column(s) {', '.join(unknown)}")
            schema = {c: schema[c] for c in columns}
            order = tuple(c for c in order if c in schema) or tuple(schema)[:1]
        if table not in self._existing_tables():
            return pl.DataFrame(schema=dict(schema))
        have = {
            r[0] for r in self._exec("SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table])
        }
        cols = ", ".join(
            _q(c) if c in have or table != INGEST_LOG_TABLE else f"{_LOG_ADDED[c]} AS {_q(c)}" for c in schema
        )
        keys = ", ".join(_q(c) for c in order)
        # typing gaps: duckdb's stubs say to_arrow_table may return None (so polars' overload gives
        # "DataFrame | Series"), and polars' cast takes a Mapping keyed by column-or-selector, which a
        # dict keyed by str does not match (Mapping keys are invariant)
        filtered = f" WHERE {where}" if where else ""
        query = f"SELECT {cols} FROM {_q(table)}{filtered} ORDER BY {keys}"
        frame: pl.DataFrame = pl.from_arrow(  # type: ignore[assignment]
            self._con.sql(query, params=list(params) if params else None).to_arrow_table()
        )
        return frame.cast(dict(schema))  # type: ignore[arg-type]

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one read-only SQL statement on the store and return its rows (small results: counts, bounds).

        Parameters
        ----------
        sql : str
            The statement; ``?`` placeholders take ``params``.
        params : sequence, optional
            Values of the placeholders.

        Returns
        -------
        list of tuple
            The result rows.
        """
        return self._exec(sql, params)

    def read_batches(self, sql: str, rows: int = 1 << 20) -> Iterator[pl.DataFrame]:
        """The result of a read-only query in frames of at most ``rows`` rows (bounded memory).

        Parameters
        ----------
        sql : str
            The query.
        rows : int
            Rows per frame.

        Yields
        ------
        polars.DataFrame
            The result, one batch at a time.
        """
        reader = self._con.sql(sql).to_arrow_reader(rows)
        for batch in reader:
            frame = pl.from_arrow(batch)
            if isinstance(frame, pl.DataFrame):
                yield frame

    def tables(self) -> dict[str, pl.DataFrame]:
        """Return the six canonical tables, keyed by name."""
        return {name: self.read(name) for name in CANONICAL_TABLES}

    def quarantined(self, table: str) -> pl.DataFrame:
        """Return the quarantined rows of one table with their raw values spread into columns.

        Returns
        -------
        polars.DataFrame
            ``ingest_id, source_path, row_number, errors`` followed by one String column per raw source
            column, exactly as read.
        """
        q = self.read("quarantine").filter(pl.col("table_name") == table)
        if q.is_empty():
            return q.select("ingest_id", "source_path", "row_number", "errors")
        records = pl.DataFrame(q["record"].str.json_decode(infer_schema_length=None)).unnest("record")
        records = records.select(pl.all().cast(pl.String))
        return pl.concat(
            [q.select("ingest_id", "source_path", "row_number", "errors"), records], how="horizontal"
        )

    # ------------------------------------------------------------------ writing
    def write(self, table: str, frame: pl.DataFrame, *, source: str) -> WriteCounts:
        """Upsert a canonical frame by primary key in one transaction and log it.

        Parameters
        ----------
        table : str
            Canonical table name.
        frame : polars.DataFrame
            Canonical columns (optional ones may be missing: they are stored as null); the key must be
            non-null and unique. Validate with ``sciatica_outcomes.ingest.validate_frames`` first.
        source : str
            Where the rows come from; recorded in ``ingest_log.source_path``.

        Returns
        -------
        WriteCounts
            Rows inserted, updated (key existed with different values) and unchanged.
        """
        self._writable()
        with self.transaction():
            counts = self._upsert(table, frame)
            ingest_id = self.next_ingest_id()
            self.append_log(
                [
                    {
                        "ingest_id": ingest_id,
                        "source_path": source,
                        "source_format": "frame",
                        "sha256": None,
                        "table_name": table,
                        "rows_read": frame.height,
                        "rows_quarantined": 0,
                        "counts": counts,
                    }
                ]
            )
        return counts

    def next_ingest_id(self) -> int:
        """The id the next ``ingest_log`` entry should use (call inside the writing transaction)."""
        return int(self._exec("SELECT coalesce(max(ingest_id), 0) + 1 FROM ingest_log")[0][0])

    def append_log(self, entries: Sequence[IngestLogEntry]) -> None:
        """Append ``ingest_log`` rows.

        Each entry holds ``ingest_id, source_path, source_format, sha256, table_name, rows_read,
        rows_quarantined`` and ``counts`` (a :class:`WriteCounts`, or None when nothing was written), and
        optionally ``rows_deleted`` (rows of the table removed by ``replace``; default 0).
        """
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = []
        for e in entries:
            c: WriteCounts | None = e["counts"]
            rows.append(
                {
                    "ingest_id": e["ingest_id"],
                    "ingested_at_utc": now,
                    "source_path": e["source_path"],
                    "source_format": e["source_format"],
                    "sha256": e["sha256"],
                    "table_name": e["table_name"],
                    "schema_version": SCHEMA_VERSION,
                    "package_version": _package_version(),
                    "rows_read": e["rows_read"],
                    "rows_stored": c.stored if c else 0,
                    "rows_inserted": c.inserted if c else 0,
                    "rows_updated": c.updated if c else 0,
                    "rows_unchanged": c.unchanged if c else 0,
                    "rows_quarantined": e["rows_quarantined"],
                    "rows_deleted": e.get("rows_deleted", 0),
                }
            )
        frame = pl.DataFrame(rows, schema=INGEST_LOG_SCHEMA)
        self._con.register("_log_rows", frame)
        try:
            names = ", ".join(_q(c) for c in INGEST_LOG_SCHEMA)
            self._exec(f"INSERT INTO ingest_log ({names}) SELECT {names} FROM _log_rows")
        finally:
            self._unregister("_log_rows")

    def append_quarantine(self, frame: pl.DataFrame) -> int:
        """Append quarantined rows, skipping rows whose content is already in the quarantine.

        A row's identity is its table and its raw values (``record``), not the file it came from: the same
        bad rows ingested again, from the same file or under another name, are quarantined once, so the
        quarantine counts every bad row once. Rows of one ingest are all added, even when two are equal
        (each is a row of the source).

        Parameters
        ----------
        frame : polars.DataFrame
            Columns of :data:`QUARANTINE_SCHEMA`.

        Returns
        -------
        int
            Rows added (a re-ingest of the same rows adds none).
        """
        if frame.is_empty():
            return 0
        # polars' cast takes a Mapping keyed by column-or-selector; a dict keyed by str does not match
        frame = frame.select(list(QUARANTINE_SCHEMA)).cast(dict(QUARANTINE_SCHEMA))  # type: ignore[arg-type]
        self._con.register("_q_rows", frame)
        try:
            before = self._count("quarantine")
            self._exec(
                """
                INSERT INTO quarantine
                SELECT n.* FROM _q_rows n
                WHERE NOT EXISTS (
                    SELECT 1 FROM quarantine q
                    WHERE q.table_name = n.table_name AND q.record = n.record
                )
                """
            )
            return self._count("quarantine") - before
        finally:
            self._unregister("_q_rows")

    def _count(self, table: str) -> int:
        return int(self._exec(f"SELECT count(*) FROM {_q(table)}")[0][0])

    def _conform(self, table: str, frame: pl.DataFrame, *, check_keys: bool = True) -> pl.DataFrame:
        spec = TABLE_SPECS.get(table)
        if spec is None:
            raise StoreError(f"unknown table {table!r}: expected one of {', '.join(CANONICAL_TABLES)}")
        missing = [c for c in spec.required_columns + spec.key if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"cannot write {table}: required column(s) {', '.join(dict.fromkeys(missing))} missing"
            )
        unknown = [c for c in frame.columns if c not in spec.dtypes]
        if unknown:
            raise DataValidationError(f"cannot write {table}: unknown column(s) {', '.join(unknown)}")
        wrong = [
            f"{c} is {frame.schema[c]}, expected {t}"
            for c, t in spec.dtypes.items()
            if c in frame.columns and frame.schema[c] != t and frame.schema[c] != pl.Null
        ]
        if wrong:
            raise DataValidationError(f"cannot write {table}: {'; '.join(wrong)}")
        out = frame.select(
            [
                pl.col(c).cast(t) if c in frame.columns else pl.lit(None, dtype=t).alias(c)
                for c, t in spec.dtypes.items()
            ]
        )
        if not check_keys:
            return out
        key = list(spec.key)
        null_keys = out.select(pl.any_horizontal(pl.col(key).is_null()).sum()).item()
        if null_keys:
            raise DataValidationError(f"cannot write {table}: {null_keys} row(s) with an empty key ({key})")
        if out.select(key).is_duplicated().any():
            raise DataValidationError(f"cannot write {table}: duplicate keys ({', '.join(key)})")
        return out

    def _upsert_files(self, table: str, files: Sequence[str], *, fresh: bool = False) -> WriteCounts:
        """:meth:`_upsert` of validated canonical rows spooled to Parquet files (a chunked ingest).

        One statement reads them all: DuckDB writes a large INSERT ... SELECT to the database file as it
        goes, whereas rows appended by many statements stay in memory until the commit.
        """
        if not files:
            return WriteCounts(table, 0, 0, 0)
        cols = ", ".join(_q(c) for c in TABLE_SPECS[table].dtypes)
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        self._exec(f"CREATE OR REPLACE TEMP VIEW _incoming AS SELECT {cols} FROM read_parquet([{listed}])")
        try:
            n = int(self._exec("SELECT count(*) FROM _incoming")[0][0])
            return self._upsert_incoming(table, n, fresh)
        finally:
            with suppress(duckdb.Error):
                self._exec("DROP VIEW IF EXISTS temp._incoming")

    def _upsert(
        self, table: str, frame: pl.DataFrame, *, validated: bool = False, fresh: bool = False
    ) -> WriteCounts:
        """Upsert inside the caller's transaction (``validated``: keys already unique and non-null;
        ``fresh``: the table held no row before this ingest and the ingest's keys are unique, so every row
        is new)."""
        frame = self._conform(table, frame, check_keys=not validated)
        n = frame.height
        if n == 0:
            return WriteCounts(table, 0, 0, 0)
        # string views pass to DuckDB without copying (the default large_string conversion copies them)
        self._con.register("_incoming", frame.to_arrow(compat_level=pl.CompatLevel.newest()))
        try:
            return self._upsert_incoming(table, n, fresh)
        finally:
            self._unregister("_incoming")

    def _upsert_incoming(self, table: str, n: int, fresh: bool) -> WriteCounts:
        """The upsert of the ``n`` rows of ``_incoming`` (a registered frame or a view)."""
        spec = TABLE_SPECS[table]
        cols = list(spec.dtypes)
        col_sql = ", ".join(_q(c) for c in cols)
        if n == 0:
            return WriteCounts(table, 0, 0, 0)
        if fresh or self._count(table) == 0:
            self._exec(f"INSERT INTO {_q(table)} SELECT {col_sql} FROM _incoming")
            return WriteCounts(table, n, 0, 0)
        on = " AND ".join(f"i.{_q(k)} = e.{_q(k)}" for k in spec.key)
        first_key = _q(spec.key[0])
        differs = " OR ".join(f"i.{_q(c)} IS DISTINCT FROM e.{_q(c)}" for c in cols if c not in spec.key)
        differs = differs or "FALSE"
        # count first, in one join that materialises nothing: an unchanged re-ingest stops here
        row = self._exec(
            f"""
            SELECT count(*) FILTER (e.{first_key} IS NULL),
                   count(*) FILTER (e.{first_key} IS NOT NULL AND ({differs}))
            FROM _incoming i LEFT JOIN {_q(table)} e ON {on}
            """
        )[0]
        inserted, updated = int(row[0]), int(row[1])
        if updated:
            self._exec(f"DELETE FROM {_q(table)} e USING _incoming i WHERE {on} AND ({differs})")
        if inserted or updated:
            # changed rows were deleted above, so the rows to add are exactly those without a match
            self._exec(
                f"""
                INSERT INTO {_q(table)}
                SELECT {", ".join(f"i.{_q(c)}" for c in cols)} FROM _incoming i
                ANTI JOIN {_q(table)} e ON {on}
                """
            )
        return WriteCounts(table, inserted, updated, n - inserted - updated)

    def write_ingest(
        self,
        parts: Sequence[IngestPart],
        quarantine: pl.DataFrame,
        *,
        on_step: Callable[[str, str], None] | None = None,
        replace: bool = False,
    ) -> tuple[int, list[WriteCounts]]:
        """Store one ingest in a single transaction: upserts, quarantine rows and log entries.

        Parameters
        ----------
        parts : sequence of IngestPart
            One entry per source table (:class:`~sciatica_outcomes.schemas.store_tables.IngestPart`:
            ``table``, ``frame`` with its valid canonical rows, ``source_path``, ``source_format``,
            ``sha256``, ``rows_read``, ``rows_quarantined``, and optionally ``rejected_keys``: the key
            columns of the source's rejected rows whose key parses; the source holds those rows too, so their
            stored versions are not counted as absent). Frames must come from validation (keys unique within
            the frame and non-null; not re-checked here). Parts are upserted in table dependency order, each
            on its own, so the counts of every source are exact (a later source with the same key updates an
            earlier one).
        quarantine : polars.DataFrame
            Rejected rows (columns of :data:`~sciatica_outcomes.schemas.store_tables.QUARANTINE_ROW_SCHEMA`:
            :data:`QUARANTINE_SCHEMA` without ``ingest_id``, which is filled in here).
        on_step : callable, optional
            Called as ``on_step(stage, table)`` inside the transaction after each part is written (progress
            reporting).
        replace : bool
            Delete the stored rows of the tables written whose key is in none of this ingest's sources of
            that table (see :class:`IngestWriter`).

        Returns
        -------
        tuple of (int, list of WriteCounts)
            The ingest id and the counts per part, in the order of ``parts``.
        """
        order = {t: i for i, t in enumerate(CANONICAL_TABLES)}
        writer = self.writer(on_step=on_step, replace=replace)
        try:
            for i in sorted(range(len(parts)), key=lambda i: order[parts[i]["table"]]):
                writer.submit(i, parts[i])
        except BaseException:
            writer.abort()
            raise
        ingest_id, counts = writer.finish(quarantine)
        return ingest_id, [counts[i] for i in range(len(parts))]

    def writer(
        self, *, on_step: Callable[[str, str], None] | None = None, replace: bool = False
    ) -> IngestWriter:
        """Open one ingest transaction served by a background thread (see :class:`IngestWriter`)."""
        self._writable()
        return IngestWriter(self, on_step, replace=replace)


class IngestWriter:
    """One ingest transaction, written on a background thread while the caller validates the next table.

    DuckDB and polars release the GIL, so storing table *k* overlaps validating table *k + 1*. Every
    statement of the transaction (BEGIN, upserts, quarantine, log, COMMIT or ROLLBACK) runs on the writer
    thread, in submission order. Use through :meth:`Store.writer`; call :meth:`finish` or :meth:`abort`
    exactly once.

    Errors fail fast and never leave the caller waiting: once a statement fails the transaction is rolled
    back, :meth:`submit` raises at once (the caller then calls :meth:`abort`), and :meth:`finish` raises
    after the thread has stopped, whether the failure came before, during or after the final writes and
    the COMMIT. A failure of DuckDB itself (a full disk, an I/O error) is raised as :class:`StoreError`
    saying whether the ingest was committed, which is checked in the store, not assumed.

    Before the commit, every table written is compared with the export: :attr:`absent` holds, per table,
    the rows that were in the store before this ingest and whose key is in none of this ingest's sources of
    that table (rows deleted from a newer export stay in the store otherwise, silently). With ``replace``
    they are deleted in the same transaction and counted in ``ingest_log.rows_deleted`` (on the table's
    last source); the ingest is refused (:class:`UnusableInputError`, nothing stored) if other stored rows
    would be left pointing to a deleted row.
    """

    def __init__(
        self, store: Store, on_step: Callable[[str, str], None] | None, *, replace: bool = False
    ) -> None:
        self._store = store
        self._on_step = on_step
        self._replace = replace
        #: Per table written: rows in the store before this ingest whose key is not in this export (deleted
        #: when ``replace``); filled in by :meth:`finish`.
        self.absent: dict[str, int] = {}
        #: Quarantine rows this ingest added (rows already quarantined with the same content are not).
        self.quarantine_added = 0
        self._parts_of: dict[str, list[Any]] = {}  # per table, the parts written, in order
        self._before: dict[str, int] = {}  # per table, rows in the store before this ingest
        # bounded: a source ingested in chunks waits for the store instead of queueing every chunk in memory
        self._queue: queue.Queue[tuple[str, Any, Any]] = queue.Queue(maxsize=2)
        self._staged: set[str] = set()  # tables whose export keys are staged in a temporary table
        self._parts: dict[Any, IngestPart] = {}
        self._counts: dict[Any, WriteCounts] = {}
        self._error: BaseException | None = None
        self._ingest_id: int | None = None
        self._pending_id: int | None = None
        self._thread = threading.Thread(target=self._run, name="sciatica-outcomes-ingest-writer", daemon=True)
        self._thread.start()

    def submit(self, key: Any, part: IngestPart) -> None:
        """Queue a part (see :meth:`Store.write_ingest`); parts must arrive in table dependency order.

        Raises
        ------
        StoreError or the writer's error
            If an earlier part failed to be written (call :meth:`abort` then).
        """
        if self._error is not None:
            raise self._failure()
        # the parts of a chunked source keep no rows here: their keys are staged in the store
        self._parts[key] = part if "final" not in part else {**part, "frame": part["frame"].clear()}
        self._queue.put(("part", key, part))

    def finish(self, quarantine: pl.DataFrame) -> tuple[int, dict[Any, WriteCounts]]:
        """Write the quarantine rows and the log entries, commit, and return the ingest id and the counts."""
        self._queue.put(("finish", quarantine, None))
        self._thread.join()
        if self._error is not None:
            raise self._failure()
        if self._ingest_id is None:  # pragma: no cover - finish always sets it when no error occurred
            raise StoreError("the ingest writer stopped without committing")
        return self._ingest_id, dict(self._counts)

    def abort(self) -> None:
        """Roll the transaction back and stop the thread."""
        self._queue.put(("abort", None, None))
        self._thread.join()

    def _failure(self) -> BaseException:
        """The error to raise: DuckDB's own errors become a StoreError that says what was committed."""
        exc = self._error
        if not isinstance(exc, duckdb.Error):
            return exc  # type: ignore[return-value]
        path = self._store.path
        committed = self._committed()
        fix = "free disk space (or fix the store's permissions) and run the ingest again"
        if committed is None:
            state = "whether it was committed could not be checked: the store could not be read afterwards"
            fix += " (an ingest that was committed changes nothing when run again)"
        elif committed:
            state = f"ingest {self._pending_id} was nevertheless committed in full"
            fix = "free disk space before the next ingest"
        else:
            state = "nothing of this ingest was stored (the transaction was rolled back)"
        error = StoreError(f"cannot write store {path}: {_first_line(exc)}; {state}: {fix}")
        error.__cause__ = exc
        return error

    def _committed(self) -> bool | None:
        """Whether this ingest's log entries are in the store (None if the store cannot be read).

        Before :meth:`finish` no ingest id exists and nothing can have been committed; after it the thread
        has stopped and the connection is the caller's again.
        """
        if self._pending_id is None:
            return False
        sql, params = "SELECT count(*) FROM ingest_log WHERE ingest_id = ?", [self._pending_id]
        try:
            return bool(self._store._exec(sql, params)[0][0])
        except duckdb.Error:
            pass
        # a failed COMMIT invalidates the database: read what is durable through a new connection
        try:
            self._store._reconnect()
            return bool(self._store._exec(sql, params)[0][0])
        except (duckdb.Error, StoreError):
            return None

    def _run(self) -> None:
        store = self._store
        started = False
        ended = False  # the caller's finish or abort message has been taken from the queue
        try:
            store._exec("BEGIN TRANSACTION")
            started = True
            while True:
                kind, a, b = self._queue.get()
                if kind == "part":
                    table = b["table"]
                    if table not in self._before:
                        self._before[table] = store._count(table)
                    chunked = "final" in b
                    fresh = chunked and self._before[table] == 0
                    if "parquet" in b:
                        counts = store._upsert_files(table, b["parquet"], fresh=fresh)
                    else:
                        counts = store._upsert(table, b["frame"], validated=True, fresh=fresh)
                    prev = self._counts.get(a)
                    if prev is not None:  # the next chunk of a source
                        counts = WriteCounts(
                            table,
                            prev.inserted + counts.inserted,
                            prev.updated + counts.updated,
                            prev.unchanged + counts.unchanged,
                        )
                    self._counts[a] = counts
                    parts = self._parts_of.setdefault(table, [])
                    if a not in parts:
                        parts.append(a)
                    if chunked and self._before[table]:
                        # (a table empty before this ingest has no stored row the export could lack)
                        self._stage_keys(table, b)
                    if self._on_step is not None and b.get("final", True):
                        self._on_step("stored", b["table"])
                elif kind == "finish":
                    ended = True
                    self._finish(a)
                    store._exec("COMMIT")
                    return
                else:
                    ended = True
                    store._exec("ROLLBACK")
                    return
        except BaseException as exc:
            self._error = exc
            if started:
                # a failed COMMIT may already have ended the transaction, or invalidated the connection
                with suppress(duckdb.Error):
                    store._exec("ROLLBACK")
            if not ended:
                # drain until the caller finishes or aborts (submit raises from now on)
                while self._queue.get()[0] == "part":
                    pass

    def _finish(self, quarantine: pl.DataFrame) -> None:
        store = self._store
        ingest_id = store.next_ingest_id()
        self._pending_id = ingest_id
        self.absent = self._compare_with_export()
        for table in self._staged:
            store._exec(f"DROP TABLE IF EXISTS temp.{_q('_export_' + table)}")
        if not quarantine.is_empty():
            self.quarantine_added = store.append_quarantine(
                quarantine.with_columns(pl.lit(ingest_id, pl.Int64).alias("ingest_id"))
            )
        if self._on_step is not None:
            self._on_step("quarantined", "quarantine")
        store.append_log(
            [
                {
                    "ingest_id": ingest_id,
                    "source_path": p["source_path"],
                    "source_format": p["source_format"],
                    "sha256": p["sha256"],
                    "table_name": p["table"],
                    "rows_read": p["rows_read"],
                    "rows_quarantined": p["rows_quarantined"],
                    "counts": self._counts.get(key),
                    "rows_deleted": (
                        self.absent.get(p["table"], 0)
                        if self._replace and self._parts_of[p["table"]][-1] == key
                        else 0
                    ),
                }
                for key, p in self._parts.items()
            ]
        )
        self._ingest_id = ingest_id

    def _compare_with_export(self) -> dict[str, int]:
        """Count (and with ``replace`` delete) stored rows whose key is in none of this ingest's sources."""
        absent: dict[str, int] = {}
        gone: list[str] = []
        try:
            for table in CANONICAL_TABLES:
                if table not in self._parts_of:
                    continue
                absent[table] = self._count_absent(table)
                if self._replace and absent[table]:
                    self._delete_absent(table)
                    gone.append(table)
            if self._replace:
                self._refuse_orphans(absent)
        finally:
            for table in gone:
                with suppress(duckdb.Error):
                    self._store._exec(f"DROP TABLE IF EXISTS temp.{_q('_gone_' + table)}")
        return absent

    def _stage_keys(self, table: str, part: IngestPart) -> None:
        """Add the keys of a chunk (its valid rows; the last part: the source's rejected keys) to the table's
        temporary table of export keys."""
        store = self._store
        key = list(TABLE_SPECS[table].key)
        staged = _q("_export_" + table)
        frames = [part["frame"].select(key)]
        if part.get("parquet"):
            frames = [pl.scan_parquet(part["parquet"]).select(key).collect()]
        rejected = part.get("rejected_keys")
        if rejected is not None and not rejected.is_empty():
            frames.append(rejected.select(key).cast({c: TABLE_SPECS[table].dtypes[c] for c in key}))
        if table not in self._staged:
            cols = ", ".join(_q(c) for c in key)
            store._con.register("_keys", frames[0].head(0).to_arrow(compat_level=pl.CompatLevel.newest()))
            try:
                store._exec(f"CREATE OR REPLACE TEMP TABLE {staged} AS SELECT {cols} FROM _keys")
            finally:
                store._unregister("_keys")
            self._staged.add(table)
        for frame in frames:
            if frame.is_empty():
                continue
            store._con.register("_keys", frame.to_arrow(compat_level=pl.CompatLevel.newest()))
            try:
                store._exec(f"INSERT INTO temp.{staged} SELECT * FROM _keys")
            finally:
                store._unregister("_keys")

    def _export_keys(self, table: str, *, rejected_only: bool = False) -> pl.DataFrame:
        """Keys of this ingest's rows of ``table``: stored rows and rejected rows whose key parses."""
        spec = TABLE_SPECS[table]
        key = list(spec.key)
        frames = []
        for part in (self._parts[k] for k in self._parts_of[table]):
            if not rejected_only:
                frames.append(part["frame"].select(key))
            rejected = part.get("rejected_keys")
            if rejected is not None and not rejected.is_empty():
                frames.append(rejected.select(key))
        if not frames:
            return pl.DataFrame(schema={c: spec.dtypes[c] for c in key})
        return pl.concat([f.cast({c: spec.dtypes[c] for c in key}) for f in frames])

    def _count_absent(self, table: str) -> int:
        store = self._store
        before = self._before[table]
        if before == 0:
            return 0  # every row of the table came from this ingest
        parts = self._parts_of[table]
        if len(parts) > 1:  # sources may share keys: compare the store with the union of their keys
            try:
                return int(store._exec(f"SELECT count(*) FROM ({self._absent_sql(table)})")[0][0])
            finally:
                store._unregister("_export_keys")
        # one source: its stored rows matched n - inserted stored keys (keys are unique within a source), and
        # a rejected row's key (never a stored row's of this ingest) may match one more stored row
        c = self._counts[parts[0]]
        matched = c.updated + c.unchanged
        rejected = self._export_keys(table, rejected_only=True).unique()
        if not rejected.is_empty():
            key = TABLE_SPECS[table].key
            on = " AND ".join(f"e.{_q(k)} = x.{_q(k)}" for k in key)
            store._con.register("_export_keys", rejected.to_arrow(compat_level=pl.CompatLevel.newest()))
            try:
                sql = f"SELECT count(*) FROM {_q(table)} e SEMI JOIN _export_keys x ON {on}"
                matched += int(store._exec(sql)[0][0])
            finally:
                store._unregister("_export_keys")
        return before - matched

    def _absent_sql(self, table: str) -> str:
        """Register this ingest's keys of ``table`` as ``_export_keys``; SQL of the stored rows without one.

        The caller unregisters ``_export_keys`` once the statement ran.
        """
        key = TABLE_SPECS[table].key
        on = " AND ".join(f"e.{_q(k)} = x.{_q(k)}" for k in key)
        cols = ", ".join(f"e.{_q(k)}" for k in key)
        if table in self._staged:  # a chunked ingest: the keys are in the store already
            return f"SELECT {cols} FROM {_q(table)} e ANTI JOIN temp.{_q('_export_' + table)} x ON {on}"
        keys = self._export_keys(table)
        self._store._con.register("_export_keys", keys.to_arrow(compat_level=pl.CompatLevel.newest()))
        return f"SELECT {cols} FROM {_q(table)} e ANTI JOIN _export_keys x ON {on}"

    def _delete_absent(self, table: str) -> None:
        store = self._store
        gone = _q("_gone_" + table)
        try:
            store._exec(f"CREATE OR REPLACE TEMP TABLE {gone} AS {self._absent_sql(table)}")
        finally:
            store._unregister("_export_keys")
        match = " AND ".join(f"e.{_q(k)} = g.{_q(k)}" for k in TABLE_SPECS[table].key)
        store._exec(f"DELETE FROM {_q(table)} e USING {gone} g WHERE {match}")

    def _refuse_orphans(self, deleted: Mapping[str, int]) -> None:
        store = self._store
        for child, spec in TABLE_SPECS.items():
            for fk in spec.foreign_keys:
                if not deleted.get(fk.table):
                    continue
                match = " AND ".join(
                    f"c.{_q(a)} = g.{_q(b)}" for a, b in zip(fk.columns, fk.ref_columns, strict=True)
                )
                n = int(
                    store._exec(
                        f"SELECT count(*) FROM {_q(child)} c SEMI JOIN {_q('_gone_' + fk.table)} g ON {match}"
                    )[0][0]
                )
                if n:
                    raise UnusableInputError(
                        f"--replace would delete {deleted[fk.table]:,} {fk.table} row(s) that are not in "
                        f"this export, but {n:,} {child} row(s) in the store point to them, so nothing was "
                        f"stored: ingest the {child} export together with this one, or leave out --replace"
                    )
