"""Derive stage: adherence, dose and progression, pain response and flares, red flags, work, analysis frames.

Names are imported on first use (``sciatica_outcomes._lazy``), so importing this package or its ``cli``
module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sciatica_outcomes._lazy import lazy_exports

if TYPE_CHECKING:
    from sciatica_outcomes.derive.adherence import episode_adherence, weekly_adherence
    from sciatica_outcomes.derive.dose import (
        BAND_ORDER,
        episode_progression,
        exercise_progression,
        weekly_dose,
    )
    from sciatica_outcomes.derive.frames import (
        Derived,
        analysis_frame,
        derive_all,
        episode_summary,
        outcome_measures,
    )
    from sciatica_outcomes.derive.pain import episode_pain, flare_panel, session_pain, weekly_pain
    from sciatica_outcomes.derive.redflags import ALERT_COLUMNS, SYMPTOM_EXTENT_ORDER, red_flag_alerts
    from sciatica_outcomes.derive.work import return_to_work, work_assessments, work_episodes

_EXPORTS: dict[str, str] = {
    "ALERT_COLUMNS": "sciatica_outcomes.derive.redflags",
    "BAND_ORDER": "sciatica_outcomes.derive.dose",
    "Derived": "sciatica_outcomes.derive.frames",
    "SYMPTOM_EXTENT_ORDER": "sciatica_outcomes.derive.redflags",
    "analysis_frame": "sciatica_outcomes.derive.frames",
    "derive_all": "sciatica_outcomes.derive.frames",
    "episode_adherence": "sciatica_outcomes.derive.adherence",
    "episode_pain": "sciatica_outcomes.derive.pain",
    "flare_panel": "sciatica_outcomes.derive.pain",
    "episode_progression": "sciatica_outcomes.derive.dose",
    "episode_summary": "sciatica_outcomes.derive.frames",
    "exercise_progression": "sciatica_outcomes.derive.dose",
    "outcome_measures": "sciatica_outcomes.derive.frames",
    "red_flag_alerts": "sciatica_outcomes.derive.redflags",
    "return_to_work": "sciatica_outcomes.derive.work",
    "session_pain": "sciatica_outcomes.derive.pain",
    "weekly_adherence": "sciatica_outcomes.derive.adherence",
    "weekly_dose": "sciatica_outcomes.derive.dose",
    "weekly_pain": "sciatica_outcomes.derive.pain",
    "work_assessments": "sciatica_outcomes.derive.work",
    "work_episodes": "sciatica_outcomes.derive.work",
}

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
    "flare_panel",
    "outcome_measures",
    "red_flag_alerts",
    "return_to_work",
    "session_pain",
    "weekly_adherence",
    "weekly_dose",
    "weekly_pain",
    "work_assessments",
    "work_episodes",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
