"""Tests of the responder analysis: Wilson intervals, observed counts and the model-based estimate.

Golden values: ``prop.test(k, n, correct = FALSE)$conf.int`` (R 4 stats), printed with 12 decimals; a closed
formula, so the tolerance is the printed precision (``tolerances.printed(12)`` = 5e-11 absolute).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from tolerances import printed

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models.responders import (
    GLMM_ASSUMPTION,
    MODEL_ASSUMPTION,
    OBSERVED_ASSUMPTION,
    glmm_responders,
    model_based_responders,
    observed_responders,
    responder_analysis,
    responder_frame,
    wilson_interval,
)
from sciatica_outcomes.synth import generate_cohort


def test_wilson_matches_prop_test() -> None:
    low, high = wilson_interval([0, 3, 488, 10], [10, 10, 1139, 10])
    tol = printed(12)
    np.testing.assert_allclose(low, [0.0, 0.107791267406, 0.399995431901, 0.722467200137], atol=tol)
    np.testing.assert_allclose(high, [0.277532799863, 0.603221852539, 0.457377610753, 1.0], atol=tol)
    lo0, hi0 = wilson_interval(0, 0)
    assert np.isnan(lo0) and np.isnan(hi0)


def test_observed_counts_by_hand() -> None:
    f = pl.DataFrame(
        {
            "episode_id": ["A", "A", "B", "B", "C", "C", "D"],
            "measure": ["odi"] * 7,
            "visit": ["w0", "w6", "w0", "w6", "w0", "w6", "w0"],
            "responder_mcid": [None, True, None, False, None, None, None],
            "responder_relative": [None, True, None, True, None, False, None],
            "clinic_id": ["X"] * 7,
        },
        schema_overrides={"responder_mcid": pl.Boolean, "responder_relative": pl.Boolean},
    )
    out = observed_responders(f)
    mcid = out.filter(pl.col("definition") == "mcid").row(0, named=True)
    assert (mcid["n_assessed"], mcid["n_determined"], mcid["n_undetermined"], mcid["n_responders"]) == (
        3,
        2,
        1,
        1,
    )
    assert mcid["share"] == pytest.approx(0.5)
    rel = out.filter(pl.col("definition") == "relative").row(0, named=True)
    assert (rel["n_determined"], rel["n_responders"]) == (3, 2)
    assert rel["assumption"] == OBSERVED_ASSUMPTION
    assert observed_responders(f, by="clinic_id")["clinic_id"].to_list() == ["X", "X"]


def _simulated(n: int, seed: int) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """ODI-like data: baseline ~ N(45, 10), change at w6/w12/w26 with MAR dropout on the observed change."""
    rng = np.random.default_rng(seed)
    base = rng.normal(45.0, 10.0, n)
    mean = np.array([-6.0, -11.0, -14.0])
    slope = np.array([-0.10, -0.20, -0.25])
    sd = np.array([8.0, 9.0, 10.0])
    corr = np.array([[1, 0.6, 0.5], [0.6, 1, 0.7], [0.5, 0.7, 1]])
    change = (
        mean
        + slope * (base[:, None] - 45.0)
        + rng.multivariate_normal(np.zeros(3), np.outer(sd, sd) * corr, n)
    )
    truth = {
        "mcid": (-change >= 10.0).mean(axis=0),
        "relative": (-change >= 0.3 * np.abs(base)[:, None]).mean(axis=0),
    }
    observed = np.ones((n, 3), dtype=bool)
    for j in (1, 2):  # patients who improved little leave more often (MAR on the observed change)
        p = 1 / (1 + np.exp(-(-1.5 + 0.15 * (change[:, j - 1] - mean[j - 1]))))
        observed[:, j] = observed[:, j - 1] & (rng.random(n) >= p)
    i, j = np.nonzero(observed)
    visits = np.array(["w6", "w12", "w26"])
    follow = pl.DataFrame(
        {
            "episode_id": i,
            "measure": "odi",
            "visit": visits[j],
            "value": base[i] + change[i, j],
            "baseline": base[i],
            "change": change[i, j],
        }
    )
    baseline = pl.DataFrame(
        {
            "episode_id": np.arange(n),
            "measure": "odi",
            "visit": "w0",
            "value": base,
            "baseline": base,
            "change": 0.0,
        }
    )
    frame = pl.concat([baseline, follow]).with_columns(
        pl.when(pl.col("visit") == "w0")
        .then(None)
        .otherwise(-pl.col("change") >= 10.0)
        .alias("responder_mcid"),
        pl.when(pl.col("visit") == "w0")
        .then(None)
        .otherwise(-pl.col("change") >= 0.3 * pl.col("baseline").abs())
        .alias("responder_relative"),
    )
    return frame, truth


def test_model_based_share_recovers_truth_under_mar_while_observed_is_biased() -> None:
    frame, truth = _simulated(3000, seed=5)
    mod = model_based_responders(frame, ClinicalConfig(), n_draws=500)
    obs = observed_responders(frame)
    assert mod["assumption"][0] == MODEL_ASSUMPTION
    assert mod["converged"].all()
    for definition in ("mcid", "relative"):
        m = mod.filter(pl.col("definition") == definition)
        o = obs.filter(pl.col("definition") == definition)
        assert m["visit"].to_list() == ["w6", "w12", "w26"]
        half = (m["ci_high"] - m["ci_low"]).to_numpy() / 2
        err = np.abs(m["share"].to_numpy() - truth[definition])
        assert np.all(err < 2.5 * half), (err, half)
        # at w26 the completers are the better responders: the observed share overstates
        assert o["share"][-1] - truth[definition][-1] > 3 * half[-1]
    assert mod["n_patients"][0] == 3000


def test_responder_analysis_on_cohort_and_refusals() -> None:
    cohort = generate_cohort(n_patients=600, seed=12)
    odi = responder_frame(cohort.tables, "odi")
    both = responder_analysis(odi)
    assert set(both["method"]) == {"observed (Wilson)", "model-based (MMRM)"}
    assert both.filter(pl.col("method") == "observed (Wilson)")["share"].is_between(0, 1).all()
    walk = responder_frame(cohort.tables, "walk_tolerance_min")
    out = responder_analysis(walk)
    assert set(out["method"]) == {"observed (Wilson)"}
    assert "capped" in out["note"][0] or "MCID" in out["note"][0]
    with pytest.raises(ModelSpecificationError, match="one measure"):
        model_based_responders(pl.concat([odi, odi.with_columns(pl.lit("x").alias("measure"))]))


def test_glmm_share_moves_from_the_completers_towards_the_truth_under_mar() -> None:
    """The responder GLMM (a sensitivity analysis to the MMRM) on the MAR simulation: at week 26 its share
    lies between the observed completers' share and the truth. The binary calls carry less of the dropout
    information than the continuous changes the MMRM uses, so it moves only part of the way (week 26, MCID:
    observed 0.770, GLMM 0.713, MMRM 0.660, truth 0.665): a sensitivity analysis, not a replacement."""
    frame, truth = _simulated(3000, seed=5)
    glmm = glmm_responders(frame, n_draws=300)
    obs = observed_responders(frame)
    assert glmm["assumption"][0] == GLMM_ASSUMPTION and glmm["converged"].all()
    for definition in ("mcid", "relative"):
        g = glmm.filter(pl.col("definition") == definition)
        o = obs.filter(pl.col("definition") == definition)
        assert g["visit"].to_list() == ["w6", "w12", "w26"]
        t = truth[definition]
        assert o["share"][-1] > g["share"][-1] > t[-1] - 0.01  # moved towards the truth from the completers
        lo, hi = g["ci_low"].to_numpy(), g["ci_high"].to_numpy()
        assert np.all((lo < g["share"].to_numpy()) & (g["share"].to_numpy() < hi))
        assert abs(g["share"][0] - t[0]) < 2.5 * (hi[0] - lo[0]) / 2  # week 6: nobody has left yet
    assert glmm["n_patients"][0] == 3000


def test_glmm_responders_nest_patients_in_clinics_only_where_laplace_is_adequate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cohort of 8 clinics. Binary calls at 3 visits: the Laplace patient SD (1.21) is 22% below the 9-node
    quadrature one (1.56), so the nested (Laplace-only) model is not used and the shares are those of the
    patients-only model, with or without the clinic column. With the adequacy rule opened, the nested model
    (b = b_patient + b_clinic in the population average) gives shares close to those (clinic SD 0.04)."""
    from sciatica_outcomes.models import glmm  # noqa: PLC0415

    cohort = generate_cohort(n_patients=600, seed=12)
    odi = responder_frame(cohort.tables, "odi")
    assert odi["clinic_id"].n_unique() >= glmm.MIN_CLINICS_RANDOM
    kept = glmm_responders(odi, n_draws=200)
    plain = glmm_responders(odi.drop("clinic_id"), n_draws=200)
    assert np.allclose(kept["share"].to_numpy(), plain["share"].to_numpy(), rtol=1e-12, atol=0)
    monkeypatch.setattr(glmm, "LAPLACE_SD_REL", math.inf)
    nested = glmm_responders(odi, n_draws=200)
    assert nested["converged"].all() and nested.height == plain.height
    a, b = nested["share"].to_numpy(), plain["share"].to_numpy()
    assert not np.allclose(a, b, rtol=0, atol=1e-6) and np.max(np.abs(a - b)) < 0.03
    assert np.all((nested["ci_low"].to_numpy() < a) & (a < nested["ci_high"].to_numpy()))
