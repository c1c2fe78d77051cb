"""Tests of the MMRM: golden values from R, parameter recovery, batching, inference and errors.

Golden values come from ``tests/reference/mmrm/gls_reference.R`` (R 4, nlme 3.1-162, emmeans 1.8.4-1,
lmerTest 3.1-3) on the four committed datasets written by ``tests/reference/mmrm/make_data.py``:

- ``nlme::gls(f, correlation = corSymm(form = ~ vnum | id), weights = varIdent(form = ~ 1 | visit),
  method = "REML")`` (us), ``corCompSymm`` (cs; csh with varIdent), ``corAR1`` (ar1; ar1h with varIdent),
  ``corARMA(p = T - 1)`` (toep; toeph with varIdent): fixed effects |d| <= 1e-5 max(|b|, se_b) (relative,
  floored at the standard error for coefficients near zero), SE 1e-4 relative, covariance of the visits 1e-4
  relative, log-likelihood, AIC and BIC 1e-5 absolute;
- ``emmeans(fit, ~ visit, mode = "satterthwaite")`` and ``pairs(emmeans(fit, ~ group | visit))``: estimates
  1e-5 relative, SE 1e-4 relative;
- Satterthwaite df: against ``lmerTest::lmer(f + (1 | id))`` for compound symmetry (the same model when the
  correlation is positive) 1e-6 relative; against the emmeans computation for gls (numerical ``apVar``
  Hessian by ``fdHess``) 5e-2 relative for LS means and pairs.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import polars as pl
import pytest

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import MMRM, MMRMResult, fit_mmrm
from sciatica_outcomes.models.mmrm import _build_patterns, _Criterion, _sigma, _theta_start
from sciatica_outcomes.scoring import assign_visits
from sciatica_outcomes.synth import generate_cohort

matplotlib.use("Agg")

REF = Path(__file__).resolve().parents[1] / "reference" / "mmrm"
SPECS = {
    "synth_odi": ("odi ~ visit * group + baseline_odi + visit:baseline_odi", "episode_id", "group"),
    "mar5": ("y ~ visit * arm + base", "id", "arm"),
    "small4": ("y ~ visit + arm + visit:arm + sex + age", "id", "arm"),
    "hetero6": ("y ~ visit * trt", "id", "trt"),
}
STRUCTURES = ("us", "cs", "csh", "ar1", "ar1h", "toep", "toeph")
# small4 / us is a boundary fit (see test_boundary_fit_reported_as_data)
GOLDEN = [(d, s) for d in SPECS for s in STRUCTURES if (d, s) != ("small4", "us")]


def _load(name: str) -> tuple[pl.DataFrame, dict]:
    return pl.read_csv(REF / f"{name}.csv"), json.loads((REF / f"{name}.json").read_text())


_FITS: dict[tuple[str, str], tuple[MMRMResult, dict, dict]] = {}


def _fit(name: str, structure: str) -> tuple[MMRMResult, dict, dict]:
    if (name, structure) not in _FITS:
        frame, ref = _load(name)
        formula, subject, _ = SPECS[name]
        res = MMRM(formula, subject, "visit", covariance=structure, visit_levels=ref["visits"]).fit(frame)
        _FITS[(name, structure)] = (res.result_, ref["fits"][structure], ref)
    return _FITS[(name, structure)]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


# ---------------------------------------------------------------------------------------------------
# golden tests against R
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "structure"), GOLDEN)
def test_gls_golden(name: str, structure: str) -> None:
    res, r, _ = _fit(name, structure)
    assert res.converged, res.diagnostics["message"]
    assert res.coef_names == r["coef_names"]
    se_r = np.asarray(r["se"])
    beta_r = np.asarray(r["estimate"])
    assert np.all(np.abs(res.beta - beta_r) <= 1e-5 * np.maximum(np.abs(beta_r), se_r))
    assert _rel(res.summary["se"], se_r) < 1e-4
    assert _rel(res.covariance, np.asarray(r["sigma"])) < 1e-4
    assert abs(res.loglik - r["loglik"]) < 1e-5
    assert abs(res.aic - r["aic"]) < 1e-5
    assert abs(res.bic - r["bic"]) < 1e-5


@pytest.mark.parametrize(("name", "structure"), GOLDEN)
def test_emmeans_golden(name: str, structure: str) -> None:
    res, r, ref = _fit(name, structure)
    emm = res.lsmeans()
    assert emm["visit"].to_list() == r["emmeans"]["visit"] == ref["visits"]
    assert _rel(emm["emmean"], r["emmeans"]["estimate"]) < 1e-5
    assert _rel(emm["se"], r["emmeans"]["se"]) < 1e-4
    pairs = res.pairs(ref["group"], by="visit")
    assert pairs["visit"].to_list() == r["pairs"]["visit"]
    assert pairs["contrast"].to_list() == r["pairs"]["contrast"]
    est_r = np.asarray(r["pairs"]["estimate"])
    se_r = np.asarray(r["pairs"]["se"])
    assert np.all(np.abs(pairs["estimate"].to_numpy() - est_r) <= 1e-5 * np.maximum(np.abs(est_r), se_r))
    assert _rel(pairs["se"], se_r) < 1e-4
    if r["apvar_matrix"]:
        assert _rel(emm["df"], r["emmeans"]["df"]) < 5e-2
        assert _rel(pairs["df"], r["pairs"]["df"]) < 5e-2


@pytest.mark.parametrize("name", list(SPECS))
def test_cs_satterthwaite_equals_lmertest_random_intercept(name: str) -> None:
    res, r, _ = _fit(name, "cs")
    assert res.variance_parameters.filter(pl.col("name") == "rho")["estimate"][0] > 0
    assert r["lmer"]["coef_names"] == res.coef_names
    assert _rel(res.summary["estimate"], r["lmer"]["estimate"]) < 1e-5
    assert _rel(res.summary["se"], r["lmer"]["se"]) < 1e-4
    assert _rel(res.summary["df"], r["lmer"]["df"]) < 1e-6
    assert abs(res.loglik - r["lmer"]["loglik"]) < 1e-5


def test_ml_fit_matches_gls_ml() -> None:
    frame, ref = _load("mar5")
    res = fit_mmrm(frame, SPECS["mar5"][0], "id", "visit", "us", visit_levels=ref["visits"], reml=False)
    r = ref["ml_us"]
    assert res.converged
    assert _rel(res.beta, r["estimate"]) < 1e-5
    # nlme scales the ML vcov(beta) by N / (N - p) (as for REML); the MMRM reports (X' V^-1 X)^-1
    n, p = res.n_obs, len(res.coef_names)
    assert _rel(res.summary["se"], np.asarray(r["se"]) * math.sqrt((n - p) / n)) < 1e-4
    assert _rel(res.covariance, np.asarray(r["sigma"])) < 1e-4
    assert abs(res.loglik - r["loglik"]) < 1e-5


def test_boundary_fit_reported_as_data() -> None:
    """small4 / us: 40 subjects, 45 % missing, 10 covariance parameters: a boundary (singular) optimum.

    R's gls stops at a lower REML log-likelihood and returns a non-positive-definite apVar; the fit here
    goes at least as high and reports the boundary and the failed convergence checks on the result.
    """
    res, r, _ = _fit("small4", "us")
    assert res.loglik >= r["loglik"] - 1e-8
    assert r["apvar_matrix"] is False
    d = res.diagnostics
    assert d["boundary"] is True
    assert d["converged"] is False
    assert "not converged" in d["message"]
    assert d["hessian_positive_definite"] is False
    assert res.to_dict()["diagnostics"]["converged"] is False


# ---------------------------------------------------------------------------------------------------
# the batched likelihood
# ---------------------------------------------------------------------------------------------------


def test_batched_criterion_equals_dense_computation() -> None:
    """-2 log L_R from pattern statistics equals the dense GLS formula with the full block-diagonal V."""
    frame, ref = _load("small4")
    res = MMRM(SPECS["small4"][0], "id", "visit", covariance="toeph", visit_levels=ref["visits"])
    prep = res._prepare(frame)
    x, y, subj, vis = prep["x"], prep["y"], prep["subject"], prep["visit"]
    pats = _build_patterns(subj, vis, x, y, 4)
    crit = _Criterion(pats, "toeph", reml=True)
    theta = np.array([0.3, 0.5, 0.7, 0.9, 0.4, -0.2, 0.1])
    sigma = _sigma(theta, "toeph", 4)
    v = np.where(subj[:, None] == subj[None, :], sigma[np.ix_(vis, vis)], 0.0)
    vinv = np.linalg.inv(v)
    a = x.T @ vinv @ x
    beta = np.linalg.solve(a, x.T @ vinv @ y)
    r = y - x @ beta
    n, p = x.shape
    dense = (n - p) * math.log(2 * math.pi) + np.linalg.slogdet(v)[1] + np.linalg.slogdet(a)[1] + r @ vinv @ r
    ev = crit.evaluate(theta)
    assert ev is not None
    assert ev.value == pytest.approx(dense, rel=1e-12)
    np.testing.assert_allclose(ev.beta, beta, rtol=1e-10)
    # analytic gradient against central differences of the criterion
    _, grad = crit.value_and_grad(theta)
    eps = 1e-6
    fd = np.array(
        [
            (crit.evaluate(theta + eps * e).value - crit.evaluate(theta - eps * e).value) / (2 * eps)
            for e in np.eye(7)
        ]
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


def test_duplicated_subjects_and_row_order_do_not_change_the_fit() -> None:
    frame, ref = _load("mar5")
    base = fit_mmrm(frame, SPECS["mar5"][0], "id", "visit", "us", visit_levels=ref["visits"])
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    again = fit_mmrm(shuffled, SPECS["mar5"][0], "id", "visit", "us", visit_levels=ref["visits"])
    np.testing.assert_allclose(again.beta, base.beta, rtol=1e-8)
    np.testing.assert_allclose(again.covariance, base.covariance, rtol=1e-6)
    # under ML, two copies of every subject have the same optimum (REML's log|X'V^-1X| does not double)
    ml = fit_mmrm(frame, SPECS["mar5"][0], "id", "visit", "us", visit_levels=ref["visits"], reml=False)
    doubled = pl.concat([frame, frame.with_columns(("copy_" + pl.col("id")).alias("id"))])
    twice = fit_mmrm(doubled, SPECS["mar5"][0], "id", "visit", "us", visit_levels=ref["visits"], reml=False)
    np.testing.assert_allclose(twice.beta, ml.beta, rtol=1e-6)
    np.testing.assert_allclose(twice.covariance, ml.covariance, rtol=1e-5)
    assert twice.n_subjects == 2 * base.n_subjects
    assert twice.diagnostics["n_patterns"] == base.diagnostics["n_patterns"]
    assert twice.patterns["n_subjects"].sum() == twice.n_subjects


# ---------------------------------------------------------------------------------------------------
# parameter recovery with known truth
# ---------------------------------------------------------------------------------------------------


def _mvn_mar(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = 5
    mu = np.array([40.0, 34.0, 30.0, 27.0, 25.0])
    sd = np.array([8.0, 9.0, 10.0, 11.0, 12.0])
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    sigma = np.outer(sd, sd) * (0.3 + 0.7 * 0.75**lag)
    y = mu + rng.multivariate_normal(np.zeros(t), sigma, n)
    observed = np.ones((n, t), dtype=bool)
    for j in range(1, t):  # dropout more likely after a high (bad) observed value: MAR
        p = 1 / (1 + np.exp(-(-2.0 + 0.15 * (y[:, j - 1] - mu[j - 1]))))
        observed[:, j] = observed[:, j - 1] & (rng.random(n) >= p)
    i, j = np.nonzero(observed)
    frame = pl.DataFrame({"id": i, "visit": j + 1, "y": y[i, j]})
    naive = np.array([y[observed[:, k], k].mean() for k in range(t)])
    return frame, mu, sigma, naive


def test_recovers_means_and_covariance_under_mar_dropout() -> None:
    frame, mu, sigma, naive = _mvn_mar(4000, seed=11)
    res = fit_mmrm(frame, "y ~ visit", "id", "visit", "us")
    emm = res.lsmeans()
    z = (emm["emmean"].to_numpy() - mu) / emm["se"].to_numpy()
    assert np.all(np.abs(z) < 4), z
    # the observed-case means are biased downwards by the MAR dropout (sicker patients leave)
    assert naive[-1] < mu[-1] - 6 * emm["se"][-1]
    np.testing.assert_allclose(res.covariance, sigma, rtol=0.12)
    assert res.converged and not res.diagnostics["boundary"]
    # the CIs use Satterthwaite df; with 4,000 subjects they are close to normal
    assert emm["df"].min() > 1000


def _odi_by_visit(cohort_frame: dict[str, pl.DataFrame]) -> pl.DataFrame:
    ep = cohort_frame["episodes"].select("episode_id", "start_date")
    m = cohort_frame["measures"].filter(pl.col("measure") == "odi").join(ep, on="episode_id")
    return assign_visits(m).filter(pl.col("visit").is_not_null()).select("episode_id", "visit", "value")


def test_recovers_synthetic_cohort_visit_means_and_covariance() -> None:
    """ODI at w0, w6, w12, w26 of the synthetic cohort: truth = complete-data moments of a large cohort.

    The truth cohort (8,000 episodes) has every missingness mechanism switched off; the analysed cohort
    (3,000 episodes, other seed) has dropout that does not depend on outcomes (MCAR), missed visits,
    missing discharge and follow-up questionnaires and the data cut.
    """
    truth = generate_cohort(
        n_patients=8000,
        seed=101,
        dropout_logit=-50.0,
        intermittent_missing=0.0,
        discharge_missing=0.0,
        followup_missing=0.0,
        ice_prob=0.0,
        red_flag_prob=0.0,
        data_cut=datetime.date(2030, 1, 1),
    )
    wide = (
        _odi_by_visit(truth.tables)
        .pivot(on="visit", index="episode_id", values="value")
        .select("w0", "w6", "w12", "w26")
        .drop_nulls()
        .to_numpy()
    )
    true_mu = wide.mean(axis=0)
    true_sigma = np.cov(wide, rowvar=False)
    analysed = generate_cohort(n_patients=3000, seed=7, dropout_worsening=0.0, dropout_adherence=0.0)
    frame = _odi_by_visit(analysed.tables)
    res = fit_mmrm(frame, "value ~ visit", "episode_id", "visit", "us")
    assert res.visits == ["w0", "w6", "w12", "w26"]
    emm = res.lsmeans()
    se = np.sqrt(emm["se"].to_numpy() ** 2 + np.diag(true_sigma) / wide.shape[0])
    z = (emm["emmean"].to_numpy() - true_mu) / se
    assert np.all(np.abs(z) < 4), z
    np.testing.assert_allclose(res.covariance, true_sigma, rtol=0.15)
    assert res.n_subjects > 2500
    assert res.diagnostics["n_patterns"] > 3


# ---------------------------------------------------------------------------------------------------
# inference helpers, output and errors
# ---------------------------------------------------------------------------------------------------


def test_contrast_f_test_and_anova_are_consistent() -> None:
    res, _, _ = _fit("mar5", "us")
    one = res.contrast({"armplacebo": 1.0})
    row = res.summary.filter(pl.col("term") == "armplacebo")
    assert one["estimate"][0] == pytest.approx(row["estimate"][0])
    assert one["df"][0] == pytest.approx(row["df"][0])
    f1 = res.f_test(np.eye(len(res.coef_names))[[res.coef_names.index("armplacebo")]])
    assert f1["f"] == pytest.approx(row["t"][0] ** 2)
    assert f1["den_df"] == pytest.approx(row["df"][0])
    tab = res.anova()
    assert tab["term"].to_list()[0] == "(Intercept)"
    inter = tab.filter(pl.col("term") == "visit:arm")
    assert inter["num_df"][0] == 4
    assert 0 <= inter["p"][0] <= 1


def test_to_dict_json_and_plot() -> None:
    res, _, _ = _fit("synth_odi", "us")
    out = json.loads(res.to_json())
    assert out["model"] == "mmrm"
    assert out["covariance"]["visits"] == ["w6", "w12", "w26"]
    assert np.allclose(out["covariance"]["matrix"], res.covariance)
    assert [r["term"] for r in out["fixed_effects"]] == res.coef_names
    assert "visitw12:grouplow" in res.coef_names
    assert set(out["fixed_effects"][0]) == {"term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high"}
    ax = res.plot(by="group")
    assert len(ax.get_lines()) >= 2


def test_pandas_input_numeric_visits_and_dropped_rows_are_counted() -> None:
    frame, _ref = _load("hetero6")
    pdf = frame.to_pandas()
    pdf.loc[pdf.index[:5], "y"] = np.nan
    res = fit_mmrm(pd.DataFrame(pdf), "y ~ visit * trt", "id", "visit", "ar1")
    assert res.visits == [str(v) for v in range(1, 7)]
    assert res.diagnostics["rows_dropped"]["missing_response"] == 5
    assert res.n_obs == frame.height - 5


def test_structures_have_their_shape() -> None:
    t = 4
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    for s in ("cs", "csh", "ar1", "ar1h", "toep", "toeph", "us"):
        target = np.outer([2.0, 3, 4, 5], [2.0, 3, 4, 5]) * 0.6**lag
        theta = _theta_start(target, s)
        sig = _sigma(theta, s, t)
        corr = sig / np.sqrt(np.outer(np.diag(sig), np.diag(sig)))
        assert np.all(np.linalg.eigvalsh(sig) > 0)
        if s in ("cs", "csh"):
            assert np.allclose(corr[lag > 0], corr[1, 0])
        if s in ("ar1", "ar1h"):
            assert np.allclose(corr[lag == 2], corr[1, 0] ** 2)
        if s in ("cs", "ar1", "toep"):
            assert np.allclose(np.diag(sig), sig[0, 0])
        if s in ("toep", "toeph", "us"):
            assert np.allclose(corr, 0.6**lag, atol=1e-8)


def test_errors_name_the_problem() -> None:
    frame, _ref = _load("mar5")
    with pytest.raises(ModelSpecificationError, match="covariance must be one of"):
        MMRM("y ~ visit", "id", "visit", covariance="unstructured")
    with pytest.raises(ModelSpecificationError, match="random terms"):
        MMRM("y ~ visit + (1 | id)", "id", "visit").fit(frame)
    with pytest.raises(ModelSpecificationError, match="repeat a"):
        MMRM("y ~ visit", "id", "visit").fit(pl.concat([frame, frame.head(2)]))
    with pytest.raises(ModelSpecificationError, match="not in the data"):
        MMRM("y ~ visit", "patient", "visit").fit(frame)
    with pytest.raises(ModelSpecificationError, match="rank deficient"):
        MMRM("y ~ visit + base + I(2 * base)", "id", "visit").fit(frame)
    with pytest.raises(ModelSpecificationError, match="not among visit_levels"):
        MMRM("y ~ visit", "id", "visit", visit_levels=["V1", "V2"]).fit(frame)
    apart = pl.DataFrame({"id": [1, 1, 2, 2, 3], "visit": [1, 2, 2, 3, 1], "y": [1.0, 2, 3, 4, 5]})
    with pytest.raises(ModelSpecificationError, match="never observed in the same"):
        MMRM("y ~ visit", "id", "visit", covariance="us").fit(apart)
