"""All canonical table specifications, in dependency order."""

from __future__ import annotations

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.schemas._spec import TableSpec
from sciatica_outcomes.schemas.episodes import EPISODES
from sciatica_outcomes.schemas.measures import MEASURES
from sciatica_outcomes.schemas.questionnaire_items import QUESTIONNAIRE_ITEMS
from sciatica_outcomes.schemas.session_exercises import SESSION_EXERCISES
from sciatica_outcomes.schemas.sessions import SESSIONS
from sciatica_outcomes.schemas.symptom_checks import SYMPTOM_CHECKS
from sciatica_outcomes.schemas.work import WORK

__all__ = ["TABLE_SPECS", "table_spec"]

#: Canonical tables in dependency order (referenced tables first).
TABLE_SPECS: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (EPISODES, SESSIONS, SESSION_EXERCISES, MEASURES, QUESTIONNAIRE_ITEMS, SYMPTOM_CHECKS, WORK)
}


def table_spec(name: str) -> TableSpec:
    """Return the specification of a canonical table.

    Raises
    ------
    UnusableInputError
        If ``name`` is not a canonical table.
    """
    try:
        return TABLE_SPECS[name]
    except KeyError:
        raise UnusableInputError(
            f"unknown table {name!r}: expected one of {', '.join(TABLE_SPECS)} "
            "(name the file after its table or pass --table)"
        ) from None
