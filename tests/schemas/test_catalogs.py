"""The label catalog: every code of every labelled vocabulary has words, in the vocabulary's order."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.schemas import vocabulary as voc
from sciatica_outcomes.schemas.catalogs import LABEL_VOCABULARIES, label_for, label_map, labels_catalog

REPO = Path(__file__).resolve().parents[2]

#: The codes each vocabulary of labels.csv must label, in display order.
CODES: dict[str, tuple[str, ...]] = {
    "table": voc.CANONICAL_TABLES,
    "sex": voc.SEXES,
    "side": voc.SIDES,
    "end_reason": voc.END_REASONS,
    "muscle_group": voc.MUSCLE_GROUPS,
    "exercise_category": voc.EXERCISE_CATEGORIES,
    "pain_band": ("safe", "acceptable", "high_risk"),
    "red_flag": voc.RED_FLAG_COLUMNS,
    "action": voc.ACTIONS,
    "symptom_extent": voc.SYMPTOM_EXTENTS,
    "stopped_reason": voc.STOPPED_REASONS,
    "session_status": voc.SESSION_STATUSES,
    "employment_status": voc.EMPLOYMENT_STATUSES,
    "work_status": voc.WORK_STATUSES,
}


def test_every_code_has_a_label_in_vocabulary_order() -> None:
    assert set(CODES) == set(LABEL_VOCABULARIES)
    cat = labels_catalog()
    # one label per code: the coded table columns are labelled by the data guide, the rest by labels.csv
    assert set(cat["vocabulary"]) == {"table", "muscle_group", "exercise_category", "pain_band", "red_flag"}
    for vocabulary, codes in CODES.items():
        labels = label_map(vocabulary)
        assert tuple(labels) == codes, vocabulary
        # a label is words, not the code again with its underscores
        assert all("_" not in label and label.strip() for label in labels.values()), vocabulary


def test_labels_replace_codes() -> None:
    assert label_for("muscle_group", "gluteus_maximus") == "gluteus maximus"
    assert label_for("pain_band", "high_risk") == "high risk"
    assert label_for("table", "symptom_checks") == "red-flag screens"
    assert label_for("measure", "odi") == "Oswestry Disability Index"
    assert (
        label_for("exercise", "kb_deadlift").lower().startswith("kettlebell")
        or "deadlift" in label_for("exercise", "kb_deadlift").lower()
    )
    # an unknown code is shown as written (never hidden); an unknown vocabulary is an error
    assert label_for("sex", "F") == "Female" and label_for("side", "bilateral") == "Both legs"
    assert label_for("sex", "Q") == "Q"
    with pytest.raises(KeyError, match="known vocabularies"):
        label_map("colour")


def test_committed_label_catalog_equals_the_packaged_one() -> None:
    committed = pl.read_csv(REPO / "data" / "schemas" / "labels.csv", infer_schema=False)
    assert committed.equals(labels_catalog().with_columns(pl.all().cast(pl.String)))
