"""Scoring stage: questionnaire instruments, visit windows, change from baseline and responders.

Names are imported on first use (``sciatica_outcomes._lazy``), so importing this package or its ``cli``
module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sciatica_outcomes._lazy import lazy_exports

if TYPE_CHECKING:
    from sciatica_outcomes.scoring.instruments import (
        INSTRUMENTS,
        ODI_BANDS,
        Instrument,
        ScoredQuestionnaires,
        odi_band,
        score_questionnaires,
    )
    from sciatica_outcomes.scoring.visits import (
        BASELINE_LABEL,
        assign_visits,
        cap_share,
        change_from_baseline,
        flag_end_of_episode,
    )
    from sciatica_outcomes.scoring.work import (
        WPAI_REASONS,
        WPAI_SCORES,
        pgic_success,
        was_responder,
        wpai_scores,
    )

_EXPORTS: dict[str, str] = {
    "BASELINE_LABEL": "sciatica_outcomes.scoring.visits",
    "INSTRUMENTS": "sciatica_outcomes.scoring.instruments",
    "ODI_BANDS": "sciatica_outcomes.scoring.instruments",
    "Instrument": "sciatica_outcomes.scoring.instruments",
    "ScoredQuestionnaires": "sciatica_outcomes.scoring.instruments",
    "assign_visits": "sciatica_outcomes.scoring.visits",
    "cap_share": "sciatica_outcomes.scoring.visits",
    "change_from_baseline": "sciatica_outcomes.scoring.visits",
    "flag_end_of_episode": "sciatica_outcomes.scoring.visits",
    "odi_band": "sciatica_outcomes.scoring.instruments",
    "score_questionnaires": "sciatica_outcomes.scoring.instruments",
    "WPAI_REASONS": "sciatica_outcomes.scoring.work",
    "WPAI_SCORES": "sciatica_outcomes.scoring.work",
    "pgic_success": "sciatica_outcomes.scoring.work",
    "was_responder": "sciatica_outcomes.scoring.work",
    "wpai_scores": "sciatica_outcomes.scoring.work",
}

__all__ = [
    "BASELINE_LABEL",
    "INSTRUMENTS",
    "ODI_BANDS",
    "WPAI_REASONS",
    "WPAI_SCORES",
    "Instrument",
    "ScoredQuestionnaires",
    "assign_visits",
    "cap_share",
    "change_from_baseline",
    "flag_end_of_episode",
    "odi_band",
    "pgic_success",
    "score_questionnaires",
    "was_responder",
    "wpai_scores",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
