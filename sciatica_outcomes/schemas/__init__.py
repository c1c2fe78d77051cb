"""Canonical table schemas (one pandera model per table) and the exercise and measure catalogs."""

from sciatica_outcomes.schemas._spec import CODE_PATTERN, SCHEMA_VERSION, DateWindow, ForeignKey, TableSpec
from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog
from sciatica_outcomes.schemas.episodes import EPISODES, EpisodesModel
from sciatica_outcomes.schemas.measures import MEASURES, MeasuresModel
from sciatica_outcomes.schemas.questionnaire_items import QUESTIONNAIRE_ITEMS, QuestionnaireItemsModel
from sciatica_outcomes.schemas.registry import TABLE_SPECS, table_spec
from sciatica_outcomes.schemas.session_exercises import SESSION_EXERCISES, SessionExercisesModel
from sciatica_outcomes.schemas.sessions import SESSIONS, SessionsModel
from sciatica_outcomes.schemas.symptom_checks import SYMPTOM_CHECKS, SymptomChecksModel

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
    "DateWindow",
    "EpisodesModel",
    "ForeignKey",
    "MeasuresModel",
    "QuestionnaireItemsModel",
    "SessionExercisesModel",
    "SessionsModel",
    "SymptomChecksModel",
    "TableSpec",
    "exercise_catalog",
    "measure_catalog",
    "table_spec",
]
