"""Schema of ``questionnaire_items``: one row per answered questionnaire item."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, DateWindow, ForeignKey, TableSpec
from sciatica_outcomes.schemas.vocabulary import INSTRUMENT_CODES

__all__ = ["INSTRUMENT_RESPONSE_RANGE", "QUESTIONNAIRE_ITEMS", "QuestionnaireItemsModel"]

#: Allowed item responses per instrument (inclusive). ODI sections 0-5 (Fairbank & Pynsent 2000); RMDQ items
#: 0/1 (Roland & Morris 1983); SBI and SFI 0-6 (Patrick et al. 1995); PSFS 0-10 (Stratford et al. 1995);
#: PROMIS short-form items 1-5 (HealthMeasures scoring manuals).
INSTRUMENT_RESPONSE_RANGE: dict[str, tuple[int, int]] = {
    "odi": (0, 5),
    "rmdq": (0, 1),
    "sbi": (0, 6),
    "sfi": (0, 6),
    "psfs": (0, 10),
    "promis_pf": (1, 5),
    "promis_pi": (1, 5),
}


class QuestionnaireItemsModel(pa.DataFrameModel):
    """Columns of ``questionnaire_items``; ``response`` range depends on ``instrument``."""

    episode_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Episode code")
    assessed_on: Series[pl.Date] = pa.Field(description="Date the questionnaire was answered")
    instrument: Series[pl.String] = pa.Field(isin=list(INSTRUMENT_CODES), description="Questionnaire code")
    item: Series[pl.String] = pa.Field(str_matches=r"^[a-z0-9_]{1,64}$", description="Item code")
    response: Series[pl.Int64] = pa.Field(ge=0, le=10, description="Item response (coded)")
    instrument_version: Series[pl.String] | None = pa.Field(
        nullable=True, description="Questionnaire version (e.g. ODI 2.1a)"
    )


QUESTIONNAIRE_ITEMS = TableSpec(
    name="questionnaire_items",
    model=QuestionnaireItemsModel,
    key=("episode_id", "assessed_on", "instrument", "item"),
    description="One row per answered questionnaire item; scored into measures by the scoring stage.",
    foreign_keys=(ForeignKey(("episode_id",), "episodes", ("episode_id",)),),
    date_window=DateWindow("assessed_on", days_before_start=14, days_after_end=7),
)
