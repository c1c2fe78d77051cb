"""Every questionnaire and item the toolkit accepts has a topic paraphrase, anchors and a source."""

from __future__ import annotations

import pytest

from sciatica_outcomes.schemas.vocabulary import INSTRUMENT_CODES
from sciatica_outcomes.scoring import INSTRUMENTS
from sciatica_outcomes.scoring.questionnaire_text import ITEM_TOPICS, QUESTIONNAIRE_TEXTS


def test_every_instrument_of_the_table_has_anchors_wording_and_source() -> None:
    assert set(QUESTIONNAIRE_TEXTS) == set(INSTRUMENT_CODES)
    for text in QUESTIONNAIRE_TEXTS.values():
        assert text.anchors and text.wording and text.source


@pytest.mark.parametrize("code", [c for c in INSTRUMENT_CODES if c in INSTRUMENTS])
def test_item_topics_match_the_scored_items_exactly(code: str) -> None:
    items = INSTRUMENTS[code].items
    if items is None:  # PSFS: the patient names the activities
        assert code not in ITEM_TOPICS
        return
    assert set(ITEM_TOPICS[code]) == {i for v in items.values() for i in v}


def test_licensed_instruments_say_they_are_paraphrased() -> None:
    for code in ("odi", "rmdq"):
        assert "paraphrase" in QUESTIONNAIRE_TEXTS[code].wording
    assert "Mapi Research Trust" in QUESTIONNAIRE_TEXTS["odi"].wording
