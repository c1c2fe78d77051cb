"""Canonical table schemas (one pandera model per table) and the exercise and measure catalogs.

Names are imported on first use (``sciatica_outcomes._lazy``), so importing this package or its ``cli``
module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sciatica_outcomes._lazy import lazy_exports

if TYPE_CHECKING:
    from sciatica_outcomes.schemas._spec import (
        CODE_PATTERN,
        SCHEMA_VERSION,
        DateWindow,
        ForeignKey,
        TableSpec,
    )
    from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog
    from sciatica_outcomes.schemas.episodes import EPISODES, EpisodesModel
    from sciatica_outcomes.schemas.measures import MEASURES, MeasuresModel
    from sciatica_outcomes.schemas.questionnaire_items import QUESTIONNAIRE_ITEMS, QuestionnaireItemsModel
    from sciatica_outcomes.schemas.registry import TABLE_SPECS, table_spec
    from sciatica_outcomes.schemas.session_exercises import SESSION_EXERCISES, SessionExercisesModel
    from sciatica_outcomes.schemas.sessions import SESSIONS, SessionsModel
    from sciatica_outcomes.schemas.symptom_checks import SYMPTOM_CHECKS, SymptomChecksModel
    from sciatica_outcomes.schemas.work import WORK, WorkModel

_EXPORTS: dict[str, str] = {
    "CODE_PATTERN": "sciatica_outcomes.schemas._spec",
    "DateWindow": "sciatica_outcomes.schemas._spec",
    "EPISODES": "sciatica_outcomes.schemas.episodes",
    "EpisodesModel": "sciatica_outcomes.schemas.episodes",
    "ForeignKey": "sciatica_outcomes.schemas._spec",
    "MEASURES": "sciatica_outcomes.schemas.measures",
    "MeasuresModel": "sciatica_outcomes.schemas.measures",
    "QUESTIONNAIRE_ITEMS": "sciatica_outcomes.schemas.questionnaire_items",
    "QuestionnaireItemsModel": "sciatica_outcomes.schemas.questionnaire_items",
    "SCHEMA_VERSION": "sciatica_outcomes.schemas._spec",
    "SESSIONS": "sciatica_outcomes.schemas.sessions",
    "SESSION_EXERCISES": "sciatica_outcomes.schemas.session_exercises",
    "SYMPTOM_CHECKS": "sciatica_outcomes.schemas.symptom_checks",
    "SessionExercisesModel": "sciatica_outcomes.schemas.session_exercises",
    "SessionsModel": "sciatica_outcomes.schemas.sessions",
    "SymptomChecksModel": "sciatica_outcomes.schemas.symptom_checks",
    "TABLE_SPECS": "sciatica_outcomes.schemas.registry",
    "TableSpec": "sciatica_outcomes.schemas._spec",
    "WORK": "sciatica_outcomes.schemas.work",
    "WorkModel": "sciatica_outcomes.schemas.work",
    "exercise_catalog": "sciatica_outcomes.schemas.catalogs",
    "measure_catalog": "sciatica_outcomes.schemas.catalogs",
    "table_spec": "sciatica_outcomes.schemas.registry",
}

__all__ = [
    "CODE_PATTERN",
    "EPISODES",
    "MEASURES",
    "QUESTIONNAIRE_ITEMS",
    "SCHEMA_VERSION",
    "SESSIONS",
    "SESSION_EXERCISES",
    "SYMPTOM_CHECKS",
    "TABLE_SPECS",
    "WORK",
    "DateWindow",
    "EpisodesModel",
    "ForeignKey",
    "MeasuresModel",
    "QuestionnaireItemsModel",
    "SessionExercisesModel",
    "SessionsModel",
    "SymptomChecksModel",
    "TableSpec",
    "WorkModel",
    "exercise_catalog",
    "measure_catalog",
    "table_spec",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
