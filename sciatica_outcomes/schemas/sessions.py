"""Schema of ``sessions``: one row per scheduled session."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, DateWindow, ForeignKey, TableSpec
from sciatica_outcomes.schemas.vocabulary import SESSION_STATUSES, SYMPTOM_EXTENTS

__all__ = ["SESSIONS", "SESSION_STATUSES", "SYMPTOM_EXTENTS", "SessionsModel"]


class SessionsModel(pa.DataFrameModel):
    """Columns of ``sessions``; pain and effort on 0-10 numeric scales."""

    session_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Session code")
    episode_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Episode code")
    session_date: Series[pl.Date] = pa.Field(description="Scheduled date")
    status: Series[pl.String] = pa.Field(
        isin=list(SESSION_STATUSES), description="completed, missed, cancelled"
    )
    duration_min: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=1, le=240, description="Session length in minutes"
    )
    warmup_neural_glides: Series[pl.Boolean] | None = pa.Field(
        nullable=True, description="Neural glides done in the warm-up"
    )
    pain_before: Series[pl.Int64] | None = pa.Field(nullable=True, ge=0, le=10, description="NPRS before")
    pain_after: Series[pl.Int64] | None = pa.Field(nullable=True, ge=0, le=10, description="NPRS after")
    pain_next_day: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=0, le=10, description="NPRS next morning"
    )
    rpe: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=0, le=10, description="Rating of perceived exertion"
    )
    symptom_extent: Series[pl.String] | None = pa.Field(
        nullable=True, isin=list(SYMPTOM_EXTENTS), description="Most distal symptom extent"
    )


SESSIONS = TableSpec(
    name="sessions",
    model=SessionsModel,
    key=("session_id",),
    description="One row per scheduled session of an episode.",
    foreign_keys=(ForeignKey(("episode_id",), "episodes", ("episode_id",)),),
    date_window=DateWindow("session_date", days_before_start=0, days_after_end=0),
)
