"""The batched derive (one range of episodes at a time) gives exactly the frames of the in-memory derive."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import derive_all
from sciatica_outcomes.derive.batched import derive_all_batched, derive_batches, write_derived_batched
from sciatica_outcomes.derive.cli import write_derived
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import generate_cohort

FRAMES = (
    "analysis_frame",
    "episode_summary",
    "alerts",
    "outcomes",
    "scored_measures",
    "scoring_problems",
    "work_assessments",
    "return_to_work",
    "work_episodes",
)
PER_BATCH = 37


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose first range of episodes has no capped test and whose questionnaires fail scoring
    in several ranges (scoring problems cite questionnaire rows of the whole table)."""
    cohort = generate_cohort(n_patients=300, seed=8, red_flag_prob=0.08)
    tables = dict(cohort.tables)
    first = tables["episodes"]["episode_id"].sort().head(PER_BATCH).implode()
    tables["measures"] = tables["measures"].with_columns(
        pl.when(pl.col("episode_id").is_in(first)).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("stopped_reason", "cap_min")
    )
    items = tables["questionnaire_items"]
    ids = tables["episodes"]["episode_id"].sort()
    broken = pl.Series([ids[5], ids[120], ids[290]]).implode()
    # keep one item of every questionnaire of the broken episodes: too few answers to score
    keep = ~pl.col("episode_id").is_in(broken) | (
        pl.int_range(pl.len()).over("episode_id", "assessed_on", "instrument") == 0
    )
    # and an out-of-range answer in two more: a problem citing its row of the whole table
    odd = pl.Series([ids[10], ids[200]]).implode()
    first_item = pl.int_range(pl.len()).over("episode_id") == 0
    wrong = pl.when(pl.col("episode_id").is_in(odd) & first_item).then(99).otherwise(pl.col("response"))
    tables["questionnaire_items"] = items.filter(keep).with_columns(wrong.alias("response"))
    db = tmp_path_factory.mktemp("batched") / "s.duckdb"
    with Store(db) as store:
        for name, frame in tables.items():
            store.write(name, frame, source="synthetic cohort")
    return db


def test_batched_derive_equals_the_in_memory_derive(store_path: Path) -> None:
    config = ClinicalConfig(dropout_gap_weeks=3.0)
    whole = derive_all(store_path, config)
    cited = whole.scoring_problems.filter(pl.col("row").is_not_null())
    assert cited.height == 2, "the fixture must produce problems citing a row"
    assert cited["row"].min() > 0
    ranges = list(derive_batches(store_path, config, episodes_per_batch=PER_BATCH))
    assert len(ranges) == 9  # 300 episodes in ranges of 37
    # the first range has no capped test, yet it has the store's _censored columns
    assert ranges[0].outcomes["stopped_reason"].null_count() == ranges[0].outcomes.height
    assert any(c.endswith("_censored") for c in ranges[0].analysis_frame.columns)
    batched = derive_all_batched(store_path, config, episodes_per_batch=PER_BATCH)
    assert batched.data_cut == whole.data_cut
    for name in FRAMES:
        assert_frame_equal(getattr(batched, name), getattr(whole, name))


def test_batched_files_equal_the_in_memory_files(store_path: Path, tmp_path: Path) -> None:
    whole = write_derived(derive_all(store_path), tmp_path / "whole", source=str(store_path))
    parts = write_derived_batched(store_path, tmp_path / "batched", episodes_per_batch=50)
    assert sorted(p.name for p in (tmp_path / "batched").iterdir()) == sorted(p.name for p in whole.values())
    for key, path in whole.items():
        if path.suffix == ".parquet":
            assert_frame_equal(pl.read_parquet(parts[key]), pl.read_parquet(path))
        elif path.suffix == ".json":
            assert json.loads(parts[key].read_text()) == json.loads(path.read_text())
        else:
            assert parts[key].read_bytes() == path.read_bytes(), key


def test_batch_size_must_be_positive(store_path: Path) -> None:
    with pytest.raises(UnusableInputError, match="at least 1"):
        next(derive_batches(store_path, episodes_per_batch=0))
