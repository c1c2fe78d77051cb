"""Shared helpers of the derive stage: table access, data cut, each episode's observed program window.

Integer keys
------------
At registry scale (10^5 episodes, 10^7 exercise rows) string-keyed joins, group-bys and multi-key sorts
dominate derivation. The helpers at the end of this module map ``episode_id`` and ``session_id`` to dense
integer codes once, in an order that equals the string order, so that later steps group, window and sort
on integers and translate back to the identifiers only at the end:

- :func:`completed_sessions` sorts the completed sessions once by ``episode_id, session_date, session_id``
  and numbers episodes (``_e``) and sessions (``_s``) in that order;
- :func:`exercise_rows_to_sessions` attaches each exercise row to its completed session by hashing only
  the first row of every run of equal ``session_id`` (exports list a session's exercises together);
- :func:`attach_episodes` does the same for any frame with an ``episode_id`` column and the episodes table.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Protocol, TypeAlias

import numpy as np
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.schemas.vocabulary import CANONICAL_TABLES


def max_int(series: pl.Series, default: int = 0) -> int:
    """Largest value of an integer column, ``default`` when it has none (empty or all null)."""
    value = series.max()
    return int(value) if isinstance(value, int | float) else default


def min_int(series: pl.Series, default: int = 0) -> int:
    """Smallest value of an integer column, ``default`` when it has none (empty or all null)."""
    value = series.min()
    return int(value) if isinstance(value, int | float) else default


class TableSource(Protocol):
    """Anything with the canonical tables, such as a :class:`~sciatica_outcomes.store.Store`."""

    def tables(self) -> Mapping[str, pl.DataFrame]:
        """The canonical tables keyed by name."""
        ...


Source: TypeAlias = "TableSource | str | Path | Mapping[str, pl.DataFrame]"
"""A Store (or anything with ``tables()``), a path to a DuckDB store, or a mapping of table name to frame."""

TABLE_NAMES: tuple[str, ...] = CANONICAL_TABLES
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "episodes": ("episode_id", "patient_id", "clinic_id", "start_date"),
    "sessions": ("session_id", "episode_id", "session_date", "status"),
    "session_exercises": ("session_id", "exercise"),
    "measures": ("episode_id", "assessed_on", "measure", "value"),
    "questionnaire_items": ("episode_id", "assessed_on", "instrument", "item", "response"),
    "symptom_checks": ("episode_id", "checked_on"),
    "work": ("episode_id", "assessed_on", "employment_status", "work_status"),
}


def load_tables(source: Source) -> dict[str, pl.DataFrame]:
    """Return the canonical tables of a Store, a DuckDB path or a mapping of frames.

    Missing optional tables become empty frames; a missing ``episodes`` table or a missing required column
    raises :class:`UnusableInputError` naming table and column.
    """
    if isinstance(source, str | Path):
        from sciatica_outcomes.store import Store  # noqa: PLC0415 - the store is optional for frame input

        tables: Mapping[str, pl.DataFrame]
        with Store(source, read_only=True) as store:
            tables = store.tables()
    elif hasattr(source, "tables") and callable(source.tables):
        tables = source.tables()
    elif isinstance(source, Mapping):
        tables = dict(source)
    else:
        raise UnusableInputError(
            f"expected a Store, a path to a DuckDB store or a mapping of table name to polars frame; "
            f"got {type(source).__name__}"
        )
    if "episodes" not in tables:
        raise UnusableInputError("the episodes table is required for derivation and was not supplied")
    out: dict[str, pl.DataFrame] = {}
    for name in TABLE_NAMES:
        frame = tables.get(name)
        if frame is None:
            frame = pl.DataFrame(schema=dict.fromkeys(REQUIRED[name], pl.String))
        if not isinstance(frame, pl.DataFrame):
            raise UnusableInputError(f"table {name} must be a polars DataFrame, got {type(frame).__name__}")
        missing = [c for c in REQUIRED[name] if c not in frame.columns]
        if missing:
            raise UnusableInputError(f"table {name} lacks required column(s) {missing}")
        out[name] = frame
    return out


def resolve_data_cut(tables: Mapping[str, pl.DataFrame], data_cut: date | None) -> date | None:
    """The data cut: the given date, else the latest date recorded in any table (None if there is none)."""
    if data_cut is not None:
        return data_cut
    candidates: list[object] = []
    for name, col in (
        ("sessions", "session_date"),
        ("measures", "assessed_on"),
        ("symptom_checks", "checked_on"),
        ("work", "assessed_on"),
        ("episodes", "start_date"),
        ("episodes", "end_date"),
    ):
        frame = tables.get(name)
        if frame is not None and col in frame.columns and frame.height and frame.schema[col] == pl.Date:
            candidates.append(frame[col].max())
    dates = [c for c in candidates if isinstance(c, date)]
    return max(dates) if dates else None


def episode_windows(episodes: pl.DataFrame, config: ClinicalConfig, data_cut: date | None) -> pl.DataFrame:
    """Each episode's observed program window.

    Returns ``episode_id, start_date, end_date, end_reason, spw, program_end, exposure_end, exposure_days,
    program_observed``: ``spw`` = prescribed sessions per week (configured default when missing),
    ``program_end = start + program_days - 1``, ``exposure_end = min(program_end, end_date, data_cut)``
    (inclusive), ``exposure_days = exposure_end - start + 1`` (>= 0), ``program_observed`` = the whole
    program phase lies before the data cut (``start + program_days <= data_cut``: the denominator of the
    dropout share).
    """
    cut = pl.lit(data_cut, pl.Date) if data_cut is not None else pl.lit(None, pl.Date)
    ep = episodes
    for col, dtype in (
        ("end_date", pl.Date),
        ("end_reason", pl.String),
        ("prescribed_sessions_per_week", pl.Float64),
    ):
        if col not in ep.columns:
            ep = ep.with_columns(pl.lit(None, dtype).alias(col))
    program_end = pl.col("start_date") + pl.duration(days=config.program_days - 1)
    out = ep.select(
        "episode_id",
        "start_date",
        "end_date",
        "end_reason",
        pl.col("prescribed_sessions_per_week")
        .cast(pl.Float64)
        .fill_null(config.default_sessions_per_week)
        .alias("spw"),
        program_end.alias("program_end"),
    ).with_columns(
        pl.min_horizontal("program_end", "end_date", cut).alias("exposure_end"),
        ((pl.col("program_end") < cut).fill_null(True) if data_cut is not None else pl.lit(True)).alias(
            "program_observed"
        ),
    )
    return out.with_columns(
        ((pl.col("exposure_end") - pl.col("start_date")).dt.total_days() + 1).clip(0).alias("exposure_days")
    )


def run_starts(*columns: str) -> pl.Expr:
    """True on the first row and wherever any of ``columns`` differs from the previous row (nulls equal)."""
    changed = pl.any_horizontal([pl.col(c).ne_missing(pl.col(c).shift(1)) for c in columns])
    return changed | (pl.int_range(pl.len()) == 0)


def run_codes(*columns: str) -> pl.Expr:
    """Run number (0, 1, ...) of equal consecutive ``columns``: a dense code on a frame sorted by them."""
    return (run_starts(*columns).cast(pl.Int64).cum_sum() - 1).set_sorted()


def completed_sessions(sessions: pl.DataFrame, *columns: str | pl.Expr) -> pl.DataFrame:
    """Completed sessions, sorted once, with integer episode and session codes.

    Parameters
    ----------
    sessions : polars.DataFrame
        Canonical sessions.
    *columns : str or polars.Expr
        Further columns to keep.

    Returns
    -------
    polars.DataFrame
        ``session_id, episode_id, session_date, *columns, _e, _s`` sorted by ``episode_id, session_date,
        session_id``; ``_e`` numbers the episodes and ``_s`` the (episode, date, session) keys in that
        order, so sorting by the codes is sorting by the identifiers.
    """
    return (
        sessions.filter(pl.col("status") == "completed")
        .select("session_id", "episode_id", "session_date", *columns)
        .sort("episode_id", "session_date", "session_id")
        .with_columns(
            run_codes("episode_id").alias("_e"),
            run_codes("episode_id", "session_date", "session_id").alias("_s"),
        )
    )


def first_of_runs(frame: pl.DataFrame, code: str) -> pl.DataFrame:
    """One row per value of a dense sorted code (row ``i`` holds code ``i``)."""
    return frame.filter(run_starts(code))


def _match_runs(frame: pl.DataFrame, key: str, table: pl.DataFrame, index: str) -> pl.DataFrame:
    """Inner join of ``frame`` with ``table`` on string ``key``, hashing one row per run of equal keys.

    ``table`` carries a non-negative integer column ``index``; the result is ``frame`` with ``index``
    added, rows repeated or dropped exactly as ``frame.join(table, on=key)`` would. Only the first row of
    each run of equal keys in ``frame`` is hashed, so a frame grouped by ``key`` costs one lookup per group;
    when every run matches at most one row of ``table`` the rows are then attached by array lookup.
    """
    runs = frame.select(pl.col(key), run_starts(key).alias("_start"))
    n_rows = runs.height
    starts = runs["_start"]
    run = (starts.cast(pl.Int64).cum_sum() - 1).to_numpy()
    heads = runs.filter("_start").select(key).with_row_index("_run")
    matched = heads.join(table.select(key, index), on=key, how="inner")
    if matched["_run"].n_unique() == matched.height:
        lut = np.full(heads.height, -1, dtype=np.int64)
        lut[matched["_run"].to_numpy()] = matched[index].to_numpy()
        idx = lut[run] if n_rows else np.zeros(0, dtype=np.int64)
        return frame.with_columns(pl.Series(index, idx)).filter(pl.col(index) >= 0)
    out = frame.with_columns(pl.Series("_run", run)).join(
        matched.select("_run", index), on="_run", how="inner", maintain_order="left"
    )
    return out.drop("_run")


def exercise_rows_to_sessions(session_exercises: pl.DataFrame, done: pl.DataFrame) -> pl.DataFrame:
    """Exercise rows of completed sessions, each with the row number ``_row`` of its session in ``done``.

    Same rows as ``session_exercises.join(done, on="session_id")`` (inner), without hashing every row.
    """
    return _match_runs(
        session_exercises, "session_id", done.select("session_id").with_row_index("_row"), "_row"
    )


def attach_episodes(frame: pl.DataFrame, episodes: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``frame`` inner-joined with ``episodes`` on ``episode_id``, adding ``columns`` and the code ``_ek``.

    ``_ek`` is the dense rank of ``episode_id`` among the episodes (string order), so that grouping and
    sorting by ``_ek`` is grouping and sorting by ``episode_id``. Rows repeat or drop exactly as in the
    string join.
    """
    eps = (
        episodes.select("episode_id", *columns)
        .with_row_index("_eprow")
        .with_columns(pl.col("episode_id").rank("dense").cast(pl.Int64).alias("_ek"))
    )
    out = _match_runs(frame, "episode_id", eps, "_eprow")
    idx = out["_eprow"]
    return out.with_columns(*[eps[c].gather(idx) for c in (*columns, "_ek")]).drop("_eprow")


def sort_by_code(frame: pl.DataFrame, code: str) -> pl.DataFrame:
    """``frame`` stably sorted by the non-null integer column ``code`` and flagged sorted.

    Derived keys follow the order of the session rows they come from (episode, then date), so they are
    nearly sorted; numpy's stable sort (timsort) runs in close to linear time on such input, and a sorted
    key lets ``group_by(code, maintain_order=True)`` aggregate contiguous slices instead of hashing.
    """
    key = frame[code].to_numpy()
    if key.size > 1 and not bool(np.all(key[1:] >= key[:-1])):
        frame = frame[np.argsort(key, kind="stable")]
    return frame.with_columns(pl.col(code).set_sorted())


def combined_code(columns: list[tuple[str, int]]) -> pl.Expr:
    """One Int64 code ordering like the tuple of non-negative integer ``columns`` (name, number of values).

    Raises
    ------
    OverflowError
        When the product of the value counts does not fit in 63 bits.
    """
    size = 1
    expr: pl.Expr | None = None
    for name, n in columns:
        size *= max(n, 1)
        col = pl.col(name).cast(pl.Int64)
        expr = col if expr is None else expr * max(n, 1) + col
    if expr is None:
        raise ValueError("combined_code needs at least one column")
    if size >= 2**62:
        raise OverflowError(f"combined code of {[c for c, _ in columns]} needs {size} values (> 2**62)")
    return expr
