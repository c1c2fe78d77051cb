"""Schema of ``session_exercises``: one row per exercise (or set) within a session."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, ForeignKey, TableSpec
from sciatica_outcomes.schemas.vocabulary import BANDS, EXERCISE_CODES

__all__ = ["BANDS", "SESSION_EXERCISES", "SessionExercisesModel"]


class SessionExercisesModel(pa.DataFrameModel):
    """Columns of ``session_exercises``.

    ``set_index`` numbers the rows of one exercise within a session (1, 2, ...). A source without the column
    gets it from the order of the rows (first row of an exercise in a session is 1). Each row records the dose
    as ``reps`` or ``hold_s`` (at least one); an empty ``load_kg`` means bodyweight.
    """

    session_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Session code")
    exercise: Series[pl.String] = pa.Field(
        isin=list(EXERCISE_CODES), description="Exercise code from data/schemas/exercises.csv"
    )
    set_index: Series[pl.Int64] = pa.Field(
        ge=1, le=100, description="Row number of this exercise in the session"
    )
    sets: Series[pl.Int64] = pa.Field(ge=1, le=20, description="Number of sets")
    reps: Series[pl.Int64] | None = pa.Field(nullable=True, ge=1, le=200, description="Repetitions per set")
    hold_s: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=1, le=600, description="Hold per repetition (s)"
    )
    load_kg: Series[pl.Float64] | None = pa.Field(
        nullable=True, gt=0, le=300, description="External load in kg (empty = bodyweight)"
    )
    band: Series[pl.String] | None = pa.Field(nullable=True, isin=list(BANDS), description="Band colour")
    pain_during: Series[pl.Int64] | None = pa.Field(nullable=True, ge=0, le=10, description="NPRS during")
    modified: Series[pl.Boolean] | None = pa.Field(
        nullable=True, description="Exercise modified for symptoms"
    )


SESSION_EXERCISES = TableSpec(
    name="session_exercises",
    model=SessionExercisesModel,
    key=("session_id", "exercise", "set_index"),
    description="One row per exercise (or set) performed within a session.",
    foreign_keys=(ForeignKey(("session_id",), "sessions", ("session_id",)),),
    generated_key_columns=("set_index",),
)
