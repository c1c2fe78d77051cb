"""Scoring stage: questionnaire instruments, visit windows, change from baseline and responders."""

from sciatica_outcomes.scoring.instruments import (
    INSTRUMENTS,
    Instrument,
    ScoredQuestionnaires,
    odi_band,
    score_questionnaires,
)

__all__ = [
    "INSTRUMENTS",
    "Instrument",
    "ScoredQuestionnaires",
    "odi_band",
    "score_questionnaires",
]
