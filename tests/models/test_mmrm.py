"""Tests of the MMRM: golden values from R, parameter recovery, batching, inference and errors.

Golden values come from ``tests/reference/mmrm/gls_reference.R`` (R 4, nlme 3.1-162, emmeans 1.8.4-1,
lmerTest 3.1-3) on the four committed datasets written by ``tests/reference/mmrm/make_data.py``:

- ``nlme::gls(f, correlation = corSymm(form = ~ vnum | id), weights = varIdent(form = ~ 1 | visit),
  method = "REML")`` (us), ``corCompSymm`` (cs; csh with varIdent), ``corAR1`` (ar1; ar1h with varIdent),
  ``corARMA(p = T - 1)`` (toep; toeph with varIdent): fixed effects, SE, covariance of the visits,
  log-likelihood, AIC and BIC;
- ``emmeans(fit, ~ visit, mode = "satterthwaite")`` and ``pairs(emmeans(fit, ~ group | visit))``: estimates,
  SE and Satterthwaite df (the emmeans computation for gls, with nlme's numerical ``apVar`` by ``fdHess``);
- ``lmerTest::lmer(f + (1 | id))`` for compound symmetry (the same model when the correlation is positive):
  estimates, SE, Satterthwaite df and log-likelihood.

Tolerances: the golden set of ``tests/models/tolerances.py`` (fixed effects and means 1e-5 of
``max(|b|, se)``, SE and covariances 1e-4 relative, df 1e-3 relative against lmerTest and 5e-2 against the
``fdHess`` apVar, log-likelihood 1e-5 and AIC/BIC 2e-5 absolute); fits of this package against each other:
the optimizer's stopping rule (same module).
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
from tolerances import (
    EPS,
    GOLDEN_DEVIANCE,
    GOLDEN_DF,
    GOLDEN_DF_APVAR,
    GOLDEN_ESTIMATE,
    GOLDEN_LOGLIK,
    GOLDEN_SE,
    LOGLIK_STOP,
    NEWTON_RADIUS,
    ROUNDING,
    covariance_rel,
    mmrm_se_theta,
    printed,
    rel,
)

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


# ---------------------------------------------------------------------------------------------------
# golden tests against R
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "structure"), GOLDEN)
def test_gls_golden(name: str, structure: str) -> None:
    res, r, _ = _fit(name, structure)
    assert res.converged, res.diagnostics["message"]
    assert res.coef_names == r["coef_names"]
    se_r = np.asarray(r["se"])
    assert rel(res.beta, r["estimate"], se_r) < GOLDEN_ESTIMATE
    assert rel(res.summary["se"], se_r) < GOLDEN_SE
    assert covariance_rel(res.covariance, r["sigma"]) < GOLDEN_SE
    assert abs(res.loglik - r["loglik"]) < GOLDEN_LOGLIK
    assert abs(res.aic - r["aic"]) < GOLDEN_DEVIANCE  # -2 log L + 2 k: twice the log-likelihood's error
    assert abs(res.bic - r["bic"]) < GOLDEN_DEVIANCE


@pytest.mark.parametrize(("name", "structure"), GOLDEN)
def test_emmeans_golden(name: str, structure: str) -> None:
    res, r, ref = _fit(name, structure)
    emm = res.lsmeans()
    assert emm["visit"].to_list() == r["emmeans"]["visit"] == ref["visits"]
    assert rel(emm["emmean"], r["emmeans"]["estimate"], r["emmeans"]["se"]) < GOLDEN_ESTIMATE
    assert rel(emm["se"], r["emmeans"]["se"]) < GOLDEN_SE
    pairs = res.pairs(ref["group"], by="visit")
    assert pairs["visit"].to_list() == r["pairs"]["visit"]
    assert pairs["contrast"].to_list() == r["pairs"]["contrast"]
    assert rel(pairs["estimate"], r["pairs"]["estimate"], r["pairs"]["se"]) < GOLDEN_ESTIMATE
    assert rel(pairs["se"], r["pairs"]["se"]) < GOLDEN_SE
    if r["apvar_matrix"]:
        assert rel(emm["df"], r["emmeans"]["df"]) < GOLDEN_DF_APVAR
        assert rel(pairs["df"], r["pairs"]["df"]) < GOLDEN_DF_APVAR


@pytest.mark.parametrize("name", list(SPECS))
def test_cs_satterthwaite_equals_lmertest_random_intercept(name: str) -> None:
    res, r, _ = _fit(name, "cs")
    assert res.variance_parameters.filter(pl.col("name") == "rho")["estimate"][0] > 0
    assert r["lmer"]["coef_names"] == res.coef_names
    assert rel(res.summary["estimate"], r["lmer"]["estimate"], r["lmer"]["se"]) < GOLDEN_ESTIMATE
    assert rel(res.summary["se"], r["lmer"]["se"]) < GOLDEN_SE
    assert rel(res.summary["df"], r["lmer"]["df"]) < GOLDEN_DF
    assert abs(res.loglik - r["lmer"]["loglik"]) < GOLDEN_LOGLIK


def test_ml_fit_matches_gls_ml() -> None:
    frame, ref = _load("mar5")
    res = fit_mmrm(frame, SPECS["mar5"][0], "id", "visit", "us", visit_levels=ref["visits"], reml=False)
    r = ref["ml_us"]
    assert res.converged
    # nlme scales the ML vcov(beta) by N / (N - p) (as for REML); the MMRM reports (X' V^-1 X)^-1
    n, p = res.n_obs, len(res.coef_names)
    se_r = np.asarray(r["se"]) * math.sqrt((n - p) / n)
    assert rel(res.beta, r["estimate"], se_r) < GOLDEN_ESTIMATE
    assert rel(res.summary["se"], se_r) < GOLDEN_SE
    assert covariance_rel(res.covariance, r["sigma"]) < GOLDEN_SE
    assert abs(res.loglik - r["loglik"]) < GOLDEN_LOGLIK


def test_boundary_fit_reported_as_data() -> None:
    """small4 / us: 40 subjects, 45 % missing, 10 covariance parameters: a boundary (singular) optimum.

    R's gls stops at a lower REML log-likelihood and returns a non-positive-definite apVar; the fit here
    goes at least as high and reports the boundary and the failed convergence checks on the result.
    """
    res, r, _ = _fit("small4", "us")
    assert res.loglik >= r["loglik"] - ROUNDING * abs(r["loglik"])  # not converged: no stopping-rule slack
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
    assert ev.value == pytest.approx(dense, rel=ROUNDING)  # two evaluations, each rounded to ROUNDING |value|
    # two backward-stable solves of A beta = b (A, b formed with O(eps) relative error): the forward error is
    # bounded normwise by ~p cond(A) eps (cond(A) = 5e5 here), not element-wise (a coefficient of 2e-3 sits
    # beside one of 11)
    bound = p * np.linalg.cond(a) * EPS * np.linalg.norm(beta)
    assert np.linalg.norm(ev.beta - beta) <= bound
    # analytic gradient against central differences of the criterion: rounding ROUNDING |f| / h dominates the
    # truncation h^2 |f^(3)| / 6 (1e-12 |f^(3)|) at h = 1e-6; it is absolute, not relative to the gradient
    _, grad = crit.value_and_grad(theta)
    eps = 1e-6
    fd = np.array(
        [
            (crit.evaluate(theta + eps * e).value - crit.evaluate(theta - eps * e).value) / (2 * eps)
            for e in np.eye(7)
        ]
    )
    np.testing.assert_allclose(grad, fd, rtol=0, atol=ROUNDING * abs(ev.value) / eps)


def _se_through_theta(model: MMRM, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SE_theta of theta, beta(theta) and Sigma(theta) of a fitted MMRM (delta method, Cov = 2 H^-1)."""
    return mmrm_se_theta(model, frame)


def _assert_same_optimum(a: MMRM, b: MMRM, frame_a: pl.DataFrame, frame_b: pl.DataFrame) -> None:
    """Two fits of the same optimum: theta, beta and Sigma within the sum of the two stopping radii.

    Each fit stops at g' H^-1 g < 1e-10 and is then within NEWTON_RADIUS = 7.1e-6 SE_theta of the optimum
    (tests/models/tolerances.py); another row order sums the pattern statistics in another order, and the
    optimizer stops elsewhere inside that radius (measured: 3e-6 SE_theta, a relative 5e-8 on beta).
    """
    assert a.result_.converged and b.result_.converged
    se_a, se_b = _se_through_theta(a, frame_a), _se_through_theta(b, frame_b)
    for name, qa, qb, sa, sb in zip(
        ("theta", "beta", "Sigma"),
        (a.result_.theta, a.result_.beta, a.result_.covariance),
        (b.result_.theta, b.result_.beta, b.result_.covariance),
        se_a,
        se_b,
        strict=True,
    ):
        assert np.all(np.abs(qa - qb) <= NEWTON_RADIUS * (sa + sb)), name


def test_duplicated_subjects_and_row_order_do_not_change_the_fit() -> None:
    frame, ref = _load("mar5")

    def fit(data: pl.DataFrame, reml: bool = True) -> MMRM:
        model = MMRM(SPECS["mar5"][0], "id", "visit", covariance="us", visit_levels=ref["visits"], reml=reml)
        return model.fit(data)

    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    base, again = fit(frame), fit(shuffled)
    _assert_same_optimum(base, again, frame, shuffled)
    ll = base.result_.loglik  # each within LOGLIK_STOP of the maximum, plus rounding of the sums
    assert abs(again.result_.loglik - ll) <= 2 * LOGLIK_STOP + ROUNDING * abs(ll)
    # under ML, two copies of every subject have the same optimum (REML's log|X'V^-1X| does not double) and
    # twice the log-likelihood (twice one fit's LOGLIK_STOP plus the doubled fit's)
    doubled = pl.concat([frame, frame.with_columns(("copy_" + pl.col("id")).alias("id"))])
    ml, twice = fit(frame, reml=False), fit(doubled, reml=False)
    _assert_same_optimum(ml, twice, frame, doubled)
    ll2 = twice.result_.loglik
    assert abs(ll2 - 2 * ml.result_.loglik) <= 3 * LOGLIK_STOP + ROUNDING * abs(ll2)
    one, two = base.result_, twice.result_
    assert two.n_subjects == 2 * one.n_subjects
    assert two.diagnostics["n_patterns"] == one.diagnostics["n_patterns"]
    assert two.patterns["n_subjects"].sum() == two.n_subjects


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
    # identities on one fit (no optimizer involved): the same contrast by two routes, rounding only (as the
    # growth model's test_reference_level_and_contrast_api)
    assert one["estimate"][0] == pytest.approx(row["estimate"][0], rel=1e-12)
    assert one["df"][0] == pytest.approx(row["df"][0], rel=1e-12)
    f1 = res.f_test(np.eye(len(res.coef_names))[[res.coef_names.index("armplacebo")]])
    assert f1["f"] == pytest.approx(row["t"][0] ** 2, rel=1e-9)
    assert f1["den_df"] == pytest.approx(row["df"][0], rel=1e-9)
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
        MMRM("y ~ visit", "id", "visit", covariance="unstructured").fit(frame)
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


# --- Kenward-Roger (SAS PROC MIXED DDFM=KR on openpharma/mmrm's fev_data) -------------------------------
FEV_KR_SAS = json.loads((REF / "fev_kr_sas.json").read_text(encoding="utf-8"))


KR_METHODS = ("satterthwaite", "kenward-roger", "kenward-roger-linear")


@pytest.fixture(scope="module")
def fev_fits() -> dict[tuple[str, str], MMRM]:
    data = pl.read_csv(REF / "fev_data.csv", null_values="NA")
    return {
        (cov, ddf): MMRM("FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", covariance=cov, ddf=ddf).fit(data)
        for cov in FEV_KR_SAS["structures"]
        for ddf in KR_METHODS
    }


@pytest.mark.parametrize("ddf", ["kenward-roger", "kenward-roger-linear"])
@pytest.mark.parametrize("cov", list(FEV_KR_SAS["structures"]))
def test_mmrm_kenward_roger_matches_sas(fev_fits: dict[tuple[str, str], MMRM], cov: str, ddf: str) -> None:
    """``FEV1 ~ ARMCD + cov(AVISIT | USUBJID)``: SE and df of ARMCDTRT as SAS ``DDFM=KR`` (and
    ``KR(FIRSTORDER)``) prints them, in SAS's covariance parameters.

    Both depend on ``W = Cov(gamma)``, the inverse observed information (second derivatives: SAS's at its
    optimum, central differences of the analytic gradient here), so both are compared at ``GOLDEN_DF``
    (measured at most 1.2e-4 for the SE and 3.7e-4 for the df, csh; ar1 and toeph within 1e-6). The cs KR
    value is printed with 4 digits: :func:`printed`.
    """
    sas = FEV_KR_SAS["structures"][cov]
    key = "se_kr" if ddf == "kenward-roger" else "se_kr_linear"
    kr = fev_fits[(cov, ddf)].result_
    row = kr.summary.row(1, named=True)
    assert row["term"] == "ARMCDTRT"
    se_tol = printed(4) / sas[key] if cov == "cs" and ddf == "kenward-roger" else GOLDEN_DF
    assert rel(row["se"], sas[key]) < se_tol
    assert rel(row["df"], sas["df"]) < GOLDEN_DF
    sat = fev_fits[(cov, "satterthwaite")].result_.summary.row(1, named=True)
    assert abs(row["se"] / sat["se"] - 1) > 1e-4  # not Satterthwaite: 0.07% (ar1 linear) to 3.5% (us)
    assert kr.inference.ddf_method == ddf


@pytest.mark.parametrize("cov", ["ar1", "ar1h", "csh", "toeph"])
def test_mmrm_kenward_roger_second_order_term_is_sas_difference(
    fev_fits: dict[tuple[str, str], MMRM], cov: str
) -> None:
    """The ``R_ab`` term moves the SE as SAS's KR and KR(FIRSTORDER) differ (sign and size, 10%)."""
    sas = FEV_KR_SAS["structures"][cov]
    ours = [fev_fits[(cov, d)].result_.summary["se"][1] for d in ("kenward-roger", "kenward-roger-linear")]
    assert rel(ours[0] - ours[1], sas["se_kr"] - sas["se_kr_linear"]) < 0.1


@pytest.mark.parametrize("cov", list(FEV_KR_SAS["structures"]))
def test_mmrm_kenward_roger_one_df_is_satterthwaite_with_the_same_w(
    fev_fits: dict[tuple[str, str], MMRM], cov: str
) -> None:
    """For one row KR's df is ``2 (l' Phi l)^2 / (g' W g)``: Satterthwaite's with the same ``W``.

    Equal up to rounding, so ``W = J Cov(theta) J'`` of SAS's parameters is the fit's ``Cov(theta)``.
    """
    inf = fev_fits[(cov, "kenward-roger")].result_.inference
    eye = np.eye(len(inf.names))
    _, df_kr = inf.variance_and_df(eye)
    _, df_sat = inf.satterthwaite(eye)
    assert np.allclose(df_kr, df_sat, rtol=1e-9)


def test_mmrm_kenward_roger_refusals() -> None:
    # configuration is checked at fit, before the data are looked at (none of these columns exist)
    frame = pl.DataFrame({"other": [1.0]})
    for ddf in ("kenward-roger", "kenward-roger-linear"):
        with pytest.raises(ModelSpecificationError, match="REML"):
            MMRM("y ~ x", subject="id", visit="v", ddf=ddf, reml=False).fit(frame)
    with pytest.raises(ModelSpecificationError, match="satterthwaite, kenward-roger, kenward-roger-linear"):
        MMRM("y ~ x", subject="id", visit="v", ddf="KR").fit(frame)
