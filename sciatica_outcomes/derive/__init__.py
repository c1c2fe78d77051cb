"""Derive stage: adherence, dose and progression, pain response and flares, red flags, analysis frames."""

from sciatica_outcomes.derive.adherence import episode_adherence, weekly_adherence
from sciatica_outcomes.derive.dose import BAND_ORDER, episode_progression, exercise_progression, weekly_dose
from sciatica_outcomes.derive.frames import (
    Derived,
    analysis_frame,
    derive_all,
    episode_summary,
    outcome_measures,
)
from sciatica_outcomes.derive.pain import episode_pain, session_pain, weekly_pain
from sciatica_outcomes.derive.redflags import ALERT_COLUMNS, SYMPTOM_EXTENT_ORDER, red_flag_alerts

__all__ = [
    "ALERT_COLUMNS",
    "BAND_ORDER",
    "SYMPTOM_EXTENT_ORDER",
    "Derived",
    "analysis_frame",
    "derive_all",
    "episode_adherence",
    "episode_pain",
    "episode_progression",
    "episode_summary",
    "exercise_progression",
    "outcome_measures",
    "red_flag_alerts",
    "session_pain",
    "weekly_adherence",
    "weekly_dose",
    "weekly_pain",
]
