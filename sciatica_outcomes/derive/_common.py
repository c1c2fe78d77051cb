"""Shared helpers of the derive stage: table access, data cut, each episode's observed program window."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import UnusableInputError

Source = Any  # a Store, a path to a DuckDB store, or a mapping of canonical table name -> frame

TABLE_NAMES: tuple[str, ...] = (
    "episodes",
    "sessions",
    "session_exercises",
    "measures",
    "questionnaire_items",
    "symptom_checks",
)
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "episodes": ("episode_id", "patient_id", "clinic_id", "start_date"),
    "sessions": ("session_id", "episode_id", "session_date", "status"),
    "session_exercises": ("session_id", "exercise"),
    "measures": ("episode_id", "assessed_on", "measure", "value"),
    "questionnaire_items": ("episode_id", "assessed_on", "instrument", "item", "response"),
    "symptom_checks": ("episode_id", "checked_on"),
}


def load_tables(source: Source) -> dict[str, pl.DataFrame]:
    """Return the canonical tables of a Store, a DuckDB path or a mapping of frames.

    Missing optional tables become empty frames; a missing ``episodes`` table or a missing required column
    raises :class:`UnusableInputError` naming table and column.
    """
    if isinstance(source, str | Path):
        from sciatica_outcomes.store import Store  # noqa: PLC0415 - the store is optional for frame input

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
    candidates: list[Any] = []
    for name, col in (
        ("sessions", "session_date"),
        ("measures", "assessed_on"),
        ("symptom_checks", "checked_on"),
        ("episodes", "start_date"),
        ("episodes", "end_date"),
    ):
        frame = tables.get(name)
        if frame is not None and col in frame.columns and frame.height and frame.schema[col] == pl.Date:
            candidates.append(frame[col].max())
    candidates = [c for c in candidates if c is not None]
    return max(candidates) if candidates else None


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
