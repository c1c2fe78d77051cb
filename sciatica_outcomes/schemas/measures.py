"""Schema of ``measures``: one row per measurement (PROM score or performance test)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, DateWindow, ForeignKey, TableSpec
from sciatica_outcomes.schemas.vocabulary import MEASURE_CODES, STOPPED_REASONS

__all__ = ["MEASURES", "STOPPED_REASONS", "MeasuresModel"]


class MeasuresModel(pa.DataFrameModel):
    """Columns of ``measures``.

    The range of ``value`` depends on ``measure`` (``data/schemas/measures.csv``: ``min``, ``max``,
    ``integer``); capped tolerance tests must have ``value <= cap_min`` and ``value == cap_min`` when
    ``stopped_reason`` is ``cap``. These row rules are checked by the ingest engine.
    """

    episode_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Episode code")
    assessed_on: Series[pl.Date] = pa.Field(description="Date of the measurement")
    measure: Series[pl.String] = pa.Field(
        isin=list(MEASURE_CODES), description="Measure code from data/schemas/measures.csv"
    )
    value: Series[pl.Float64] = pa.Field(description="Score or minutes, on the measure's own scale")
    stopped_reason: Series[pl.String] | None = pa.Field(
        nullable=True, isin=list(STOPPED_REASONS), description="Tolerance tests: symptom, fatigue or cap"
    )
    cap_min: Series[pl.Float64] | None = pa.Field(
        nullable=True, gt=0, le=1440, description="Tolerance tests: time cap in minutes"
    )
    instrument_version: Series[pl.String] | None = pa.Field(
        nullable=True, description="Questionnaire version (e.g. ODI 2.1a)"
    )


MEASURES = TableSpec(
    name="measures",
    model=MeasuresModel,
    key=("episode_id", "assessed_on", "measure"),
    description="One row per measurement: PROM scores and walking or sitting tolerance tests.",
    foreign_keys=(ForeignKey(("episode_id",), "episodes", ("episode_id",)),),
    date_window=DateWindow("assessed_on", days_before_start=14, days_after_end=7),
)
