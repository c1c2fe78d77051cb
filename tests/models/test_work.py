"""The work-status GLMM (models/work.py): its frame, agreement with R, recovery of the planted model, answers.

Reference values: ``tests/reference/work/make_work_reference.R`` (lme4 1.1-31 ``glmer`` with bobyqa,
``nAGQ = 1`` and ``9``; glmmTMB 1.1.5) on ``work_status.csv`` (``make_data.py``: the analysis frame of a
400-episode synthetic cohort, seed 7). Tolerances, as ``tests/models/test_glmm.py`` derives them:

* glmmTMB's Laplace approximation is exact (TMB optimises the random effects to machine precision and
  differentiates exactly; nlminb stopped on "relative convergence"): log-likelihood ``GOLDEN_LOGLIK``
  (1e-5 absolute), fixed effects 1e-4 of ``max(|R|, SE)``, SEs and theta 1e-3 relative (glmmTMB's SEs come
  from its own Hessian, ours from central differences of the analytic gradient). Measured: 6e-12, 1.6e-7,
  1.7e-6.
* glmer with ``nAGQ = 9``: bobyqa stops a gap ``G`` below the maximum, which moves an estimate by up to
  ``sqrt(2 G)`` SE; the tolerance is ``max(1e-4, 2 sqrt(2 G))`` of ``max(|R|, SE)``, ``G`` = our
  log-likelihood minus glmer's (for 0/1 data glmer's logLik needs no saturated-model correction). Measured:
  ``G`` 4.5e-6, estimates 3.9e-6.
* glmer with ``nAGQ = 1`` does not evaluate the Laplace approximation exactly (PIRLS weights of an earlier
  iterate): our deviance at glmer's estimates must equal the exact Laplace deviance the R script computes
  there to 1e-8 relative, and our estimates are within ``max(1e-2, 2 sqrt(2 G))`` of glmer's. Measured:
  equal to 1e-15, estimates 4.4e-4.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import polars as pl
import pytest
from scipy import special
from tolerances import GOLDEN_LOGLIK, rel

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import derive_all
from sciatica_outcomes.models.glmm import MixedGLM
from sciatica_outcomes.models.work import (
    WORK_STATUS_COLUMNS,
    WORK_STATUS_FIXED,
    WorkStatusModel,
    work_status_frame,
    work_status_model,
    work_status_summary,
)
from sciatica_outcomes.synth import generate_cohort

matplotlib.use("Agg")
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "work"
FORMULA = f"{WORK_STATUS_FIXED} + (1 | episode_id)"
TERMS = ("(Intercept)", "week", "odi_10", "adherence_10")


@pytest.fixture(scope="module")
def reference() -> tuple[pl.DataFrame, dict[str, dict[str, Any]]]:
    data = pl.read_csv(REFERENCE / "work_status.csv")
    cases = json.loads((REFERENCE / "work_reference.json").read_text(encoding="utf-8"))["cases"]
    return data, {c["name"]: c for c in cases}


def _r(case: dict[str, Any], key: str) -> list[float]:
    return [float(case[key][t]) for t in TERMS]


def test_laplace_agrees_with_glmmtmb_and_glmer(
    reference: tuple[pl.DataFrame, dict[str, dict[str, Any]]],
) -> None:
    data, cases = reference
    m = MixedGLM(FORMULA, family="binomial", nagq=1).fit(data)
    assert m.result_.converged and m.result_.n_obs == cases["glmmtmb_laplace"]["nobs"] == data.height
    se = m.result_.fixed_effects["se"].to_list()
    tmb = cases["glmmtmb_laplace"]
    assert m.result_.loglik == pytest.approx(tmb["loglik"], abs=GOLDEN_LOGLIK)
    assert rel(list(m.beta_), _r(tmb, "fixef"), floor=_r(tmb, "se")) < 1e-4
    assert rel(se, _r(tmb, "se")) < 1e-3
    assert m.theta_[0] == pytest.approx(tmb["theta"], rel=1e-3)
    glmer = cases["glmer_nagq1"]
    par = np.r_[glmer["theta"], _r(glmer, "fixef")]
    assert m.engine_.deviance(par) == pytest.approx(glmer["exact_laplace_deviance_at_estimates"], rel=1e-8)
    gap = m.result_.loglik - glmer["loglik"]
    assert gap >= -GOLDEN_LOGLIK  # ours at least as high
    tol = max(1e-2, 2.0 * math.sqrt(2.0 * max(gap, 0.0)))
    assert rel(list(m.beta_), _r(glmer, "fixef"), floor=_r(glmer, "se")) < tol


def test_quadrature_agrees_with_glmer_nagq9(
    reference: tuple[pl.DataFrame, dict[str, dict[str, Any]]],
) -> None:
    data, cases = reference
    case = cases["glmer_nagq9"]
    m = MixedGLM(FORMULA, family="binomial", nagq=9).fit(data)
    gap = m.result_.loglik - case["loglik"]
    assert gap >= -GOLDEN_LOGLIK
    tol = max(1e-4, 2.0 * math.sqrt(2.0 * max(gap, 0.0)))
    assert rel(list(m.beta_), _r(case, "fixef"), floor=_r(case, "se")) < tol
    assert rel(m.result_.fixed_effects["se"].to_list(), _r(case, "se")) < max(1e-3, tol)
    assert m.theta_[0] == pytest.approx(case["theta"], rel=max(1e-3, tol))


# ---------------------------------------------------------------------------------------------------------
# the analysis frame, by hand
# ---------------------------------------------------------------------------------------------------------
def _hand_tables() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    d = date.fromisoformat
    start = d("2025-03-03")
    rows = [
        # episode, date, employment, status
        ("EP1", "2025-03-01", "employed", "off_work_back_leg"),
        ("EP1", "2025-03-17", "employed", "modified_duties"),
        ("EP1", "2025-04-14", "employed", "off_work_other"),
        ("EP1", "2025-05-26", "employed", "full_duties"),
        ("EP2", "2025-03-03", "retired", "not_applicable"),
        ("EP2", "2025-04-14", "retired", "not_applicable"),
        ("EP3", "2025-03-03", "self_employed", "full_duties"),
        ("EP3", "2025-04-14", "retired", "not_applicable"),
    ]
    assessments = pl.DataFrame(
        {
            "episode_id": [r[0] for r in rows],
            "clinic_id": ["CL01"] * len(rows),
            "assessed_on": [d(r[1]) for r in rows],
            "employment_status": [r[2] for r in rows],
            "work_status": [r[3] for r in rows],
        }
    ).with_columns(
        ((pl.col("assessed_on") - pl.lit(start)).dt.total_days() / 7.0).alias("week"),
        pl.lit(None, pl.String).alias("visit"),
    )
    outcomes = pl.DataFrame(
        {
            "episode_id": ["EP1", "EP1", "EP1", "EP3"],
            "assessed_on": [d("2025-03-01"), d("2025-04-14"), d("2025-04-14"), d("2025-03-04")],
            "measure": ["odi", "odi", "nprs_leg", "odi"],
            "value": [52.0, 32.0, 4.0, 20.0],
        }
    )
    summary = pl.DataFrame(
        {"episode_id": ["EP1", "EP2", "EP3"], "n_completed": [18, 0, 0], "n_scheduled": [20, 0, 0]}
    )
    return assessments, outcomes, summary


def test_frame_takes_the_paid_workers_the_latest_odi_and_the_adherence() -> None:
    frame, counts = work_status_frame(*_hand_tables())
    assert frame.columns == list(WORK_STATUS_COLUMNS)
    # EP2 never in paid work; EP3 in paid work at its first assessment (retired later: that row left out)
    assert counts == {"n_paid_episodes": 2, "n_off_work_other": 1, "n_not_applicable": 1}
    assert frame["episode_id"].to_list() == ["EP1", "EP1", "EP1", "EP3"]
    assert frame["at_work"].to_list() == [0, 1, 1, 1]
    # the most recent ODI on or before the assessment: baseline 52 until the 14 April score (32); EP3's
    # only ODI is a day after its assessment, so that row has none (the model leaves it out)
    assert frame["odi"].to_list() == [52.0, 52.0, 32.0, None]
    assert frame["odi_10"].to_list()[:3] == pytest.approx([1.0, 1.0, -1.0])
    assert frame["adherence_10"].to_list()[:3] == pytest.approx([1.0, 1.0, 1.0])  # 18/20 = 0.9
    assert frame["adherence"][3] is None  # no sessions recorded


def test_frame_names_missing_columns() -> None:
    assessments, outcomes, summary = _hand_tables()
    with pytest.raises(ValueError, match=r"episode summary with columns \['n_scheduled'\]"):
        work_status_frame(assessments, outcomes, summary.drop("n_scheduled"))


def test_too_few_data_are_answers_not_errors() -> None:
    frame, counts = work_status_frame(*_hand_tables())
    few = work_status_model(frame, counts=counts)
    assert few.status == "not_yet_estimable" and "fewer than" in few.reason
    assert few.odds_ratios.height == 0 and "not fitted" in few.methods()
    none = work_status_model(frame.clear())
    assert none.status == "not_recorded"
    cfg = ClinicalConfig(min_episodes_followed=1)
    same = work_status_model(frame.with_columns(pl.lit(1, pl.Int64).alias("at_work")), config=cfg)
    assert same.status == "not_yet_estimable" and "same work status" in same.reason


# ---------------------------------------------------------------------------------------------------------
# recovery of the planted model
# ---------------------------------------------------------------------------------------------------------
def _se_theta(model: MixedGLM) -> float:
    """SE of the patient SD (theta, scale 1) from ``2 H^-1`` of the deviance Hessian at the optimum."""
    check = model.optimum_.check
    free = check["free"]
    cov = np.linalg.inv(check["hessian"][np.ix_(free, free)] / 2.0)
    return float(math.sqrt(cov[0, 0]))


def _recovery(n: int, seed: int, nagq: int = 9) -> tuple[WorkStatusModel, dict[str, Any], dict[str, Any]]:
    cohort = generate_cohort(n_patients=n, seed=seed)
    derived = derive_all(cohort.tables)
    frame, counts = work_status_frame(derived.work_assessments, derived.outcomes, derived.episode_summary)
    fitted = work_status_model(frame, counts=counts, clinics=False, nagq=nagq)
    return fitted, cohort.truth["work"]["glmm"], cohort.truth


def _z_scores(fitted: WorkStatusModel, glmm: dict[str, Any]) -> dict[str, float]:
    fe = fitted.fixed_effects
    assert fitted.model is not None
    z = {
        t: (float(fe.filter(pl.col("term") == t)["estimate"][0]) - glmm["coefficients"][t])
        / float(fe.filter(pl.col("term") == t)["se"][0])
        for t in TERMS
    }
    z["sigma_u"] = (float(fitted.model.theta_[0]) - glmm["sigma_u"]) / _se_theta(fitted.model)
    return z


def test_recovers_the_planted_glmm_on_a_small_cohort() -> None:
    """n = 500 episodes (about 320 paid workers, 1,800 assessments): every parameter within 3 SE."""
    fitted, glmm, truth = _recovery(500, seed=21)
    assert fitted.status == "estimated" and fitted.diagnostics["converged"]
    assert not fitted.diagnostics["separation"] and not fitted.diagnostics["with_clinics"]
    assert fitted.n_assessments == glmm["realised"]["n_rows"]  # the model sees the generator's rows
    assert fitted.n_missing_covariate == 0
    z = _z_scores(fitted, glmm)
    assert all(abs(v) < 3.0 for v in z.values()), z
    # the population-averaged share at each visit: the fitted one against the same integral at the true
    # parameters, on the same rows (within its simulation interval widened by 1.5), and near the observed
    assert fitted.model is not None
    rows = fitted.shares
    assert rows["visit"].to_list() == ["w0", "w6", "w12", "w26"]
    assert (rows["predicted_share"].diff().drop_nulls() > 0).all()  # more patients at work over time
    assert ((rows["observed_share"] - rows["predicted_share"]).abs() < 0.06).all()
    true_share = _true_shares(fitted, glmm)
    half = 1.5 * (rows["ci_high"] - rows["ci_low"]) / 2
    assert ((rows["predicted_share"] - pl.Series(true_share)).abs() <= half).all(), (rows, true_share)
    assert truth["work"]["expected"]["share_back_by_week12_off_work_at_enrolment"] > 0.5


def _true_shares(fitted: WorkStatusModel, glmm: dict[str, Any]) -> list[float]:
    """The population-averaged share per visit at the planted parameters (20-node Gauss-Hermite)."""
    assert fitted.model is not None
    beta = np.array([glmm["coefficients"][t] for t in TERMS])
    z_k, w_k = np.polynomial.hermite.hermgauss(20)
    out = []
    for visit in fitted.shares["visit"].to_list():
        rows = fitted.model.design_.matrix(fitted.rows.filter(pl.col("visit") == visit))
        p = special.expit(rows @ beta + math.sqrt(2.0) * glmm["sigma_u"] * z_k[:, None])
        out.append(float((w_k @ p).mean() / math.sqrt(math.pi)))
    return out


@pytest.mark.slow
def test_recovers_the_planted_glmm_on_a_large_cohort() -> None:
    """n = 20,000 episodes: every parameter within 2 SE of the planted value."""
    fitted, glmm, _ = _recovery(20_000, seed=1)
    z = _z_scores(fitted, glmm)
    print("z-scores at n = 20,000:", {k: round(v, 2) for k, v in z.items()})
    assert fitted.diagnostics["converged"]
    assert all(abs(v) < 2.0 for v in z.values()), z


def test_summary_is_display_ready() -> None:
    cohort = generate_cohort(n_patients=300, seed=4)
    table, methods, model = work_status_summary(cohort.tables, clinics=False)
    assert model.status == "estimated"
    assert table.columns == ["Term", "Odds ratio", "95% CI", "p"]
    text = " ".join(table["Term"].to_list())
    assert "Oswestry Disability Index" in text and "per 4 weeks" in text
    assert "_" not in text and not set(table["Term"]) & {"week", "odi_10", "adherence_10"}  # words, not codes
    # the time row is per 4 weeks: exp(4 beta)
    beta = float(model.odds_ratios.filter(pl.col("term") == "week")["estimate"][0])
    assert table["Odds ratio"][0] == f"{math.exp(4 * beta):.2f}"
    assert "conditional on the patient" in methods and "Gauss-Hermite" in methods
    assert "clinic omitted" not in methods  # clinics=False says 'by request'
    assert "by request" in methods
    # the figure draws the shares it is given: a withheld observed share is not drawn
    shown = model.shares.with_columns(
        pl.when(pl.col("visit") == "w26")
        .then(None)
        .otherwise(pl.col("observed_share"))
        .alias("observed_share")
    )
    ax = model.plot(shares=shown)
    assert len(ax.collections[-1].get_offsets()) == model.shares.height - 1
    assert list(ax.lines[0].get_ydata()) == model.shares["predicted_share"].to_list()


@pytest.mark.slow
def test_interval_coverage_over_seeds() -> None:
    """95% Wald intervals over 100 synthetic cohorts of 400 episodes cover the planted values about 95%.

    With 100 cohorts a coverage of 0.95 is observed within about +-0.044 (2 binomial SE); the check is
    coverage >= 0.88 for every parameter (fixed effects and the patient SD) and a mean z-score (bias) within
    +-0.3 (3 SE of a mean of 100 standard normals).
    """
    zs = []
    for seed in range(100):  # one cohort per seed
        fitted, glmm, _ = _recovery(400, seed=1000 + seed)
        zs.append(_z_scores(fitted, glmm))
    frame = pl.DataFrame(zs)
    cover = frame.select((pl.all().abs() < 1.959964).mean())
    bias = frame.select(pl.all().mean())
    print("coverage of 95% intervals over 100 seeds:", cover.to_dicts()[0])
    print("mean z-score:", bias.to_dicts()[0])
    assert all(v >= 0.88 for v in cover.row(0)), cover
    assert all(abs(v) < 0.3 for v in bias.row(0)), bias


def _reference_frame(data: pl.DataFrame) -> pl.DataFrame:
    """The committed reference rows as a :func:`work_status_frame` (no visit labels)."""
    return data.with_columns(
        pl.lit(date(2025, 1, 6)).alias("assessed_on"),
        pl.lit(None, pl.String).alias("visit"),
        (pl.col("odi_10") * 10 + 42).alias("odi"),
        (pl.col("adherence_10") / 10 + 0.8).alias("adherence"),
    ).select(WORK_STATUS_COLUMNS)


def test_clinic_note_and_design_errors_are_stated(
    reference: tuple[pl.DataFrame, dict[str, dict[str, Any]]],
) -> None:
    data, cases = reference
    frame = _reference_frame(data)
    three = frame.with_columns(
        pl.col("clinic_id").replace_strict({f"CL0{i}": f"C{i % 3}" for i in range(1, 9)}).alias("clinic_id")
    )
    fitted = work_status_model(three, nagq=1)
    assert fitted.clinic_note == "clinic omitted: 3 clinic(s), and a clinic random intercept needs at least 5"
    assert (
        not fitted.diagnostics["with_clinics"] and "(Laplace; clinic omitted: 3 clinic(s)" in fitted.methods()
    )
    # the same fit as glmmTMB's (no visit labels: the shares fall back to whole weeks)
    assert fitted.model is not None
    assert fitted.model.result_.loglik == pytest.approx(cases["glmmtmb_laplace"]["loglik"], abs=1e-5)
    assert fitted.shares.height > 4 and fitted.shares["n_assessments"].sum() == data.height
    # a design the model cannot fit is an answer, not a traceback
    flat = frame.with_columns(pl.lit(0.0).alias("adherence_10"))
    bad = work_status_model(flat, clinics=False, nagq=1)
    assert bad.status == "not_yet_estimable" and "rank deficient" in bad.reason
