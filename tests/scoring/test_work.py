"""WPAI:SHP scores on ten hand-worked examples, WAS responders and PGIC success.

Each example writes its arithmetic: A = Q2 / (Q2 + Q4), P = Q5 / 10, overall = A + (1 - A) P,
activity = Q6 / 10, all x 100 (Reilly et al., PharmacoEconomics 1993;4:353, as in domain.md §8).
"""

from __future__ import annotations

import math

import polars as pl
import pytest

from sciatica_outcomes.config import ClinicalConfig, Mcid
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.scoring.work import (
    WPAI_REASONS,
    WPAI_SCORES,
    pgic_success,
    was_responder,
    wpai_scores,
)

N = None
#: (Q1, Q2, Q4, Q5, Q6) -> (absenteeism, presenteeism, overall, activity) in %, and the reasons of the nulls
EXAMPLES: list[
    tuple[tuple[bool | None, float | None, float | None, int | None, int | None], tuple, tuple]
] = [
    # 1. A = 8 / (8 + 32) = 0.2; P = 5 / 10 = 0.5; overall = 0.2 + 0.8 x 0.5 = 0.6; activity = 6 / 10
    ((True, 8, 32, 5, 6), (20.0, 50.0, 60.0, 60.0), (N, N, N, N)),
    # 2. no hours missed: A = 0 / 40 = 0; P = 0.3; overall = 0 + 1 x 0.3 = 0.3; activity 0.4
    ((True, 0, 40, 3, 4), (0.0, 30.0, 30.0, 40.0), (N, N, N, N)),
    # 3. off all week: A = 40 / (40 + 0) = 1; no work so no P (Q5 skipped); overall = A = 1; activity 0.9
    ((True, 40, 0, N, 9), (100.0, N, 100.0, 90.0), (N, "did_not_work", N, N)),
    # 4. Q2 + Q4 = 0 (holiday week): A = 0 / 0 undefined, so overall undefined; P needs Q4 > 0
    ((True, 0, 0, N, 2), (N, N, N, 20.0), ("no_work_time", "did_not_work", "no_work_time", N)),
    # 5. retired, Q1 = no: only activity = 7 / 10
    ((False, N, N, N, 7), (N, N, N, 70.0), ("not_employed", "not_employed", "not_employed", N)),
    # 6. A = 10 / (10 + 30) = 0.25; P = 0.8; overall = 0.25 + 0.75 x 0.8 = 0.85; activity 1.0
    ((True, 10, 30, 8, 10), (25.0, 80.0, 85.0, 100.0), (N, N, N, N)),
    # 7. A = 2 / (2 + 18) = 0.1; Q5 missing: P and overall undefined; activity 0
    ((True, 2, 18, N, 0), (10.0, N, N, 0.0), (N, "q5_missing", "q5_missing", N)),
    # 8. Q1 missing: no work score; Q6 missing too
    ((N, N, N, N, N), (N, N, N, N), ("q1_missing", "q1_missing", "q1_missing", "q6_missing")),
    # 9. Q2 missing: A undefined (and overall); P = 2 / 10 = 0.2 still defined (Q4 = 37.5 > 0)
    ((True, N, 37.5, 2, 3), (N, 20.0, N, 30.0), ("hours_missing", N, "hours_missing", N)),
    # 10. A = 7.5 / (7.5 + 22.5) = 0.25; P = 1.0; overall = 0.25 + 0.75 x 1 = 1.0; activity 0.5
    ((True, 7.5, 22.5, 10, 5), (25.0, 100.0, 100.0, 50.0), (N, N, N, N)),
]


def _frame() -> pl.DataFrame:
    q = list(zip(*[e[0] for e in EXAMPLES], strict=True))
    return pl.DataFrame(
        {
            "wpai_q1_employed": pl.Series(q[0], dtype=pl.Boolean),
            "wpai_q2_hours_missed_health": pl.Series(q[1], dtype=pl.Float64),
            "wpai_q3_hours_missed_other": pl.Series([0.0] * len(EXAMPLES), dtype=pl.Float64),
            "wpai_q4_hours_worked": pl.Series(q[2], dtype=pl.Float64),
            "wpai_q5_work_impairment": pl.Series(q[3], dtype=pl.Int64),
            "wpai_q6_activity_impairment": pl.Series(q[4], dtype=pl.Int64),
        }
    )


@pytest.mark.parametrize("i", range(len(EXAMPLES)), ids=lambda i: f"example{i + 1}")
def test_hand_worked_examples(i: int) -> None:
    out = wpai_scores(_frame())
    _, expected, reasons = EXAMPLES[i]
    row = out.row(i, named=True)
    for name, want, why in zip(WPAI_SCORES, expected, reasons, strict=True):
        got = row[name]
        if want is None:
            assert got is None, (name, got)
        else:
            assert got is not None and math.isclose(got, want, abs_tol=1e-12), (name, got, want)
        assert row[f"{name}_reason"] == why, name
        assert why is None or why in WPAI_REASONS


def test_scores_keep_every_row_and_column() -> None:
    frame = _frame()
    out = wpai_scores(frame)
    assert out.height == frame.height and out.columns[: frame.width] == frame.columns
    assert out.select(frame.columns).equals(frame)
    with pytest.raises(UnusableInputError, match="wpai_q5_work_impairment"):
        wpai_scores(frame.drop("wpai_q5_work_impairment"))


def test_was_responder_uses_the_configured_sdc() -> None:
    change = pl.DataFrame({"c": [1.0, 1.92, 2.0, -3.0, None]})
    default = change.select(was_responder(pl.col("c")))["c"].to_list()
    assert default == [False, True, True, False, None]
    cfg = ClinicalConfig().replace(mcid={**ClinicalConfig().mcid, "was": Mcid(1.0, None, None, "test")})
    assert change.select(was_responder(pl.col("c"), cfg))["c"].to_list() == [True, True, True, False, None]
    assert "VERIFY" in ClinicalConfig().mcid["was"].source


def test_pgic_success_is_completely_recovered_or_much_better() -> None:
    pgic = pl.DataFrame({"p": [1, 2, 3, 4, 7, None]})
    assert pgic.select(pgic_success(pl.col("p")))["p"].to_list() == [True, True, False, False, False, None]
    strict = ClinicalConfig().replace(pgic_success_max=1)
    assert pgic.select(pgic_success(pl.col("p"), strict))["p"].to_list()[:2] == [True, False]
