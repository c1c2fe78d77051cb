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
from sciatica_outcomes.errors import DataValidationError, StoreError
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
]

#: Default location of the store (relative to the working directory); ``--db`` overrides it.

#: The six canonical tables, in dependency order (``schemas.vocabulary``).
CANONICAL_TABLES: tuple[str, ...] = tuple(TABLE_SPECS)

_DUCK_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "VARCHAR",
    pl.Int64: "BIGINT",
    pl.Float64: "DOUBLE",
    pl.Date: "DATE",
    pl.Boolean: "BOOLEAN",
    pl.Datetime: "TIMESTAMP",
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ddl(table: str, schema: Mapping[str, pl.DataType]) -> str:
    cols = ", ".join(f"{_q(c)} {_DUCK_TYPES[t.base_type()]}" for c, t in schema.items())
    return f"CREATE TABLE IF NOT EXISTS {_q(table)} ({cols})"


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
        self.path = Path(path)
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
        # rows are returned sorted by key, so DuckDB may insert in parallel without keeping order
        self._exec("SET preserve_insertion_order = false")
        if not read_only:
            self._create()
        self._check_version()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if not self._closed:
            self._con.close()
            self._closed = True

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    def _create(self) -> None:
        with self.transaction():
            for name, spec in TABLE_SPECS.items():
                self._exec(_ddl(name, spec.dtypes))
            self._exec(_ddl(INGEST_LOG_TABLE, INGEST_LOG_SCHEMA))
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
            self._exec("ROLLBACK")
            raise
        self._exec("COMMIT")

    # ------------------------------------------------------------------ reading
    def read(self, table: str, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """Return a whole table as a polars frame, sorted by its key.

        Parameters
        ----------
        table : str
            A canonical table, ``"ingest_log"`` or ``"quarantine"``.
        columns : sequence of str, optional
            Read only these columns (default: all).

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
        cols = ", ".join(_q(c) for c in schema)
        keys = ", ".join(_q(c) for c in order)
        # typing gaps: duckdb's stubs say to_arrow_table may return None (so polars' overload gives
        # "DataFrame | Series"), and polars' cast takes a Mapping keyed by column-or-selector, which a
        # dict keyed by str does not match (Mapping keys are invariant)
        frame: pl.DataFrame = pl.from_arrow(  # type: ignore[assignment]
            self._con.sql(f"SELECT {cols} FROM {_q(table)} ORDER BY {keys}").to_arrow_table()
        )
        return frame.cast(dict(schema))  # type: ignore[arg-type]

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
        rows_quarantined`` and ``counts`` (a :class:`WriteCounts`, or None when nothing was written).
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
                }
            )
        frame = pl.DataFrame(rows, schema=INGEST_LOG_SCHEMA)
        self._con.register("_log_rows", frame)
        try:
            self._exec("INSERT INTO ingest_log SELECT * FROM _log_rows")
        finally:
            self._con.unregister("_log_rows")

    def append_quarantine(self, frame: pl.DataFrame) -> int:
        """Append quarantined rows, skipping rows already quarantined from the same file content.

        Parameters
        ----------
        frame : polars.DataFrame
            Columns of :data:`QUARANTINE_SCHEMA`.

        Returns
        -------
        int
            Rows added (a re-ingest of the same file adds none).
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
                    WHERE q.sha256 IS NOT DISTINCT FROM n.sha256 AND q.table_name = n.table_name
                      AND q.row_number = n.row_number AND q.source_path = n.source_path
                      AND q.record = n.record
                )
                """
            )
            return self._count("quarantine") - before
        finally:
            self._con.unregister("_q_rows")

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

    def _upsert(self, table: str, frame: pl.DataFrame, *, validated: bool = False) -> WriteCounts:
        """Upsert inside the caller's transaction (``validated``: keys already unique and non-null)."""
        frame = self._conform(table, frame, check_keys=not validated)
        n = frame.height
        if n == 0:
            return WriteCounts(table, 0, 0, 0)
        spec = TABLE_SPECS[table]
        cols = list(spec.dtypes)
        col_sql = ", ".join(_q(c) for c in cols)
        # string views pass to DuckDB without copying (the default large_string conversion copies them)
        self._con.register("_incoming", frame.to_arrow(compat_level=pl.CompatLevel.newest()))
        try:
            if self._count(table) == 0:
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
        finally:
            self._con.unregister("_incoming")

    def write_ingest(
        self,
        parts: Sequence[IngestPart],
        quarantine: pl.DataFrame,
        *,
        on_step: Callable[[str, str], None] | None = None,
    ) -> tuple[int, list[WriteCounts]]:
        """Store one ingest in a single transaction: upserts, quarantine rows and log entries.

        Parameters
        ----------
        parts : sequence of IngestPart
            One entry per source table (:class:`~sciatica_outcomes.schemas.store_tables.IngestPart`:
            ``table``, ``frame`` with its valid canonical rows, ``source_path``, ``source_format``,
            ``sha256``, ``rows_read``, ``rows_quarantined``). Frames must come from validation (keys unique
            within the frame and non-null; not re-checked here). Parts are upserted in table dependency order,
            each on its own, so the counts of every source are exact (a later source with the same key
            updates an earlier one).
        quarantine : polars.DataFrame
            Rejected rows (columns of :data:`~sciatica_outcomes.schemas.store_tables.QUARANTINE_ROW_SCHEMA`:
            :data:`QUARANTINE_SCHEMA` without ``ingest_id``, which is filled in here).
        on_step : callable, optional
            Called as ``on_step(stage, table)`` inside the transaction after each part is written (progress
            reporting).

        Returns
        -------
        tuple of (int, list of WriteCounts)
            The ingest id and the counts per part, in the order of ``parts``.
        """
        order = {t: i for i, t in enumerate(CANONICAL_TABLES)}
        writer = self.writer(on_step=on_step)
        try:
            for i in sorted(range(len(parts)), key=lambda i: order[parts[i]["table"]]):
                writer.submit(i, parts[i])
        except BaseException:
            writer.abort()
            raise
        ingest_id, counts = writer.finish(quarantine)
        return ingest_id, [counts[i] for i in range(len(parts))]

    def writer(self, *, on_step: Callable[[str, str], None] | None = None) -> IngestWriter:
        """Open one ingest transaction served by a background thread (see :class:`IngestWriter`)."""
        self._writable()
        return IngestWriter(self, on_step)


class IngestWriter:
    """One ingest transaction, written on a background thread while the caller validates the next table.

    DuckDB and polars release the GIL, so storing table *k* overlaps validating table *k + 1*. Every
    statement of the transaction (BEGIN, upserts, quarantine, log, COMMIT or ROLLBACK) runs on the writer
    thread, in submission order; an error is re-raised by :meth:`finish` after the rollback. Use through
    :meth:`Store.writer`; call :meth:`finish` or :meth:`abort` exactly once.
    """

    def __init__(self, store: Store, on_step: Callable[[str, str], None] | None) -> None:
        self._store = store
        self._on_step = on_step
        self._queue: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
        self._parts: dict[Any, IngestPart] = {}
        self._counts: dict[Any, WriteCounts] = {}
        self._error: BaseException | None = None
        self._ingest_id: int | None = None
        self._thread = threading.Thread(target=self._run, name="sciatica-outcomes-ingest-writer", daemon=True)
        self._thread.start()

    def submit(self, key: Any, part: IngestPart) -> None:
        """Queue a part (see :meth:`Store.write_ingest`); parts must arrive in table dependency order."""
        self._parts[key] = part
        self._queue.put(("part", key, part))

    def finish(self, quarantine: pl.DataFrame) -> tuple[int, dict[Any, WriteCounts]]:
        """Write the quarantine rows and the log entries, commit, and return the ingest id and the counts."""
        self._queue.put(("finish", quarantine, None))
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._ingest_id is None:  # pragma: no cover - finish always sets it when no error occurred
            raise StoreError("the ingest writer stopped without committing")
        return self._ingest_id, dict(self._counts)

    def abort(self) -> None:
        """Roll the transaction back and stop the thread."""
        self._queue.put(("abort", None, None))
        self._thread.join()

    def _run(self) -> None:
        store = self._store
        started = False
        try:
            store._exec("BEGIN TRANSACTION")
            started = True
            while True:
                kind, a, b = self._queue.get()
                if kind == "part":
                    self._counts[a] = store._upsert(b["table"], b["frame"], validated=True)
                    if self._on_step is not None:
                        self._on_step("stored", b["table"])
                elif kind == "finish":
                    self._finish(a)
                    store._exec("COMMIT")
                    return
                else:
                    store._exec("ROLLBACK")
                    return
        except BaseException as exc:
            self._error = exc
            if started:
                with suppress(duckdb.Error):
                    store._exec("ROLLBACK")
            # drain until the caller finishes or aborts
            while self._queue.get()[0] == "part":
                pass

    def _finish(self, quarantine: pl.DataFrame) -> None:
        store = self._store
        ingest_id = store.next_ingest_id()
        if not quarantine.is_empty():
            store.append_quarantine(quarantine.with_columns(pl.lit(ingest_id, pl.Int64).alias("ingest_id")))
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
                }
                for key, p in self._parts.items()
            ]
        )
        self._ingest_id = ingest_id
