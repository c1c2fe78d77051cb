"""Schema of ``episodes``: one row per patient's enrolment in a program."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, TableSpec
from sciatica_outcomes.schemas.vocabulary import END_REASONS, SEXES, SIDES

__all__ = ["END_REASONS", "EPISODES", "SEXES", "SIDES", "EpisodesModel"]


class EpisodesModel(pa.DataFrameModel):
    """Columns of ``episodes``.

    ``age_at_start`` stops at 89: HIPAA Safe Harbor (45 CFR 164.514(b)(2)) treats ages over 89 as
    identifying, so older patients are recorded as 89 (meaning "89 or over").
    """

    episode_id: Series[pl.String] = pa.Field(
        str_matches=CODE_PATTERN, description="Pseudonymous episode code"
    )
    patient_id: Series[pl.String] = pa.Field(
        str_matches=CODE_PATTERN, description="Pseudonymous patient code"
    )
    clinic_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Clinic code")
    therapist_id: Series[pl.String] | None = pa.Field(
        nullable=True, str_matches=CODE_PATTERN, description="Pseudonymous therapist code"
    )
    program: Series[pl.String] | None = pa.Field(nullable=True, description="Program name or version")
    start_date: Series[pl.Date] = pa.Field(description="First day of the program")
    end_date: Series[pl.Date] | None = pa.Field(nullable=True, description="Last day (empty while ongoing)")
    end_reason: Series[pl.String] | None = pa.Field(
        nullable=True, isin=list(END_REASONS), description="Why the episode ended"
    )
    age_at_start: Series[pl.Int64] = pa.Field(ge=16, le=89, description="Age in years (89 means 89 or over)")
    sex: Series[pl.String] = pa.Field(isin=list(SEXES), description="F, M or X (other or not stated)")
    symptom_duration_weeks: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=0, le=5200, description="Weeks with symptoms before the program"
    )
    affected_side: Series[pl.String] | None = pa.Field(
        nullable=True, isin=list(SIDES), description="Side of the sciatic symptoms"
    )
    prescribed_sessions_per_week: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=1, le=7, description="Prescribed supervised sessions per week (usually 2-3)"
    )


EPISODES = TableSpec(
    name="episodes",
    model=EpisodesModel,
    key=("episode_id",),
    description="One row per patient's enrolment in a strength-training program.",
)
