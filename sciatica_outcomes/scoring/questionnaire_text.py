"""What each questionnaire item asks and what its response codes mean, for the data guide.

The ODI is licensed (copyright J. Fairbank, distributed by Mapi Research Trust) and this package ships its
scoring logic only, never its wording (the team's domain brief, §1); the RMDQ is paraphrased the same way.
Every item is therefore described by a **neutral paraphrase of its topic**, not the wording of the form:
enter the answers from the licensed form the patient filled in. ``tests/scoring/test_questionnaire_text.py``
fails when an item code of :data:`~sciatica_outcomes.scoring.instruments.INSTRUMENTS` has no entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# the item topics live with the schemas, so that the REDCap dictionary uses the same texts (re-exported)
from sciatica_outcomes.schemas.item_topics import ITEM_TOPICS

__all__ = ["ITEM_TOPICS", "QUESTIONNAIRE_TEXTS", "QuestionnaireText"]


@dataclass(frozen=True)
class QuestionnaireText:
    """How one questionnaire is answered.

    Parameters
    ----------
    anchors : str
        What the response codes mean (lowest and highest, or each code).
    wording : str
        Where the item wording comes from and whether it may be reproduced.
    source : str
        Citation of the instrument.
    """

    anchors: str
    wording: str
    source: str


_PARAPHRASE = "Neutral topic paraphrases, not the questionnaire's wording"

#: Per instrument code: anchors, wording note and source.
QUESTIONNAIRE_TEXTS: Mapping[str, QuestionnaireText] = MappingProxyType(
    {
        "odi": QuestionnaireText(
            "each section offers six statements; 0 = the first statement (no limitation in that activity) to "
            "5 = the last (the most severe limitation)",
            f"{_PARAPHRASE}: the ODI is copyright J. Fairbank, distributed by Mapi Research Trust "
            "(licence terms and fees may apply); use your licensed form",
            "Fairbank & Pynsent, Spine 2000;25:2940; modified ODI: Fritz & Irrgang, Phys Ther 2001;81:776",
        ),
        "rmdq": QuestionnaireText(
            "1 = the statement was ticked (it describes the patient today), 0 = not ticked or not applicable",
            f"{_PARAPHRASE}; use the published form, whose item numbers these are",
            "Roland & Morris, Spine 1983;8:141",
        ),
        "sbi": QuestionnaireText(
            "0 = not bothersome to 6 = extremely bothersome",
            f"{_PARAPHRASE}; use the form of Patrick et al.",
            "Patrick et al., Spine 1995;20:1899; Grovle et al., Eur Spine J 2010 (PMC2899809)",
        ),
        "sfi": QuestionnaireText(
            "how often the symptom occurred: 0 = never, higher = more often, 6 = the most frequent option",
            f"{_PARAPHRASE}; use the form of Patrick et al.",
            "Patrick et al., Spine 1995;20:1899; Grovle et al., Eur Spine J 2010 (PMC2899809)",
        ),
        "psfs": QuestionnaireText(
            "0 = unable to perform the activity to 10 = able to perform it at the level before the problem",
            "The patient names 3 to 5 activities; give each a short code of your own (e.g. climbing_stairs) "
            "and keep the same code for the same activity at every visit",
            "Stratford et al., Physiother Can 1995;47:258",
        ),
        "promis_pf": QuestionnaireText(
            "1 to 5 (the form's five response options)",
            "Items and raw-to-T-score tables are form-specific (HealthMeasures); the toolkit does not score "
            "them: enter the T-score as measure promis_pf",
            "HealthMeasures PROMIS Physical Function scoring manual",
        ),
        "promis_pi": QuestionnaireText(
            "1 to 5 (the form's five response options)",
            "Items and raw-to-T-score tables are form-specific (HealthMeasures); the toolkit does not score "
            "them: enter the T-score as measure promis_pi",
            "HealthMeasures PROMIS Pain Interference scoring manual",
        ),
    }
)
