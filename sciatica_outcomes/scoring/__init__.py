"""Scoring stage: questionnaire instruments, visit windows, change from baseline and responders."""

from sciatica_outcomes.scoring.instruments import (
    INSTRUMENTS,
    Instrument,
    ScoredQuestionnaires,
    odi_band,
    score_questionnaires,
)
from sciatica_outcomes.scoring.visits import BASELINE_LABEL, assign_visits, cap_share, change_from_baseline

__all__ = [
    "BASELINE_LABEL",
    "INSTRUMENTS",
    "Instrument",
    "ScoredQuestionnaires",
    "assign_visits",
    "cap_share",
    "change_from_baseline",
    "odi_band",
    "score_questionnaires",
]
