"""Schema of ``symptom_checks``: one row per red-flag screen."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, DateWindow, ForeignKey, TableSpec
from sciatica_outcomes.schemas.vocabulary import ACTIONS, RED_FLAG_COLUMNS

__all__ = ["ACTIONS", "RED_FLAG_COLUMNS", "SYMPTOM_CHECKS", "SymptomChecksModel"]


class SymptomChecksModel(pa.DataFrameModel):
    """Columns of ``symptom_checks``: the five red-flag answers are required booleans."""

    episode_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Episode code")
    checked_on: Series[pl.Date] = pa.Field(description="Date of the screen")
    saddle_numbness: Series[pl.Boolean] = pa.Field(description="Saddle (perineal) numbness")
    bladder_bowel_change: Series[pl.Boolean] = pa.Field(description="New bladder or bowel disturbance")
    progressive_weakness: Series[pl.Boolean] = pa.Field(description="Progressive leg weakness")
    bilateral_symptoms: Series[pl.Boolean] = pa.Field(description="Bilateral leg symptoms")
    new_numbness: Series[pl.Boolean] = pa.Field(description="New numbness")
    action_taken: Series[pl.String] | None = pa.Field(
        nullable=True, isin=list(ACTIONS), description="none, referred_urgent, referred_routine"
    )


SYMPTOM_CHECKS = TableSpec(
    name="symptom_checks",
    model=SymptomChecksModel,
    key=("episode_id", "checked_on"),
    description="One row per red-flag screen.",
    foreign_keys=(ForeignKey(("episode_id",), "episodes", ("episode_id",)),),
    date_window=DateWindow("checked_on", days_before_start=14, days_after_end=7),
)
