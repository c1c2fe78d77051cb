"""GrowthModel: golden agreement with lme4/lmerTest, diagnostics, predictions and input errors.

Expected values come from ``tests/reference/lmm/make_reference.R`` (lme4 1.1-31 with bobyqa, lmerTest 3.1-3).
Tolerances: ``tests/models/tolerances.py`` (golden: fixed effects 1e-5 of ``max(|b|, se)``, SE and variance
components 1e-4 relative, Satterthwaite df 1e-3 relative, log-likelihood 1e-5 absolute; fit against fit:
the optimizer's stopping rule).
"""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import polars as pl
import pytest
import statsmodels.formula.api as smf
from lmm_golden import CASE_NAMES, load_data
from scipy import stats
from tolerances import (
    EPS,
    GOLDEN_DEVIANCE,
    GOLDEN_DF,
    GOLDEN_ESTIMATE,
    GOLDEN_LOGLIK,
    GOLDEN_P_ATOL,
    GOLDEN_SE,
    LOGLIK_STOP,
    NEWTON_RADIUS,
    ROUNDING,
    growth_model_se_theta,
    rel,
)

from sciatica_outcomes.derive import analysis_frame
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models import GrowthModel, fit_standard, likelihood_ratio_test, standard_formula
from sciatica_outcomes.models.frames import simulate_growth
from sciatica_outcomes.models.lmm import _to_polars
from sciatica_outcomes.synth import generate_cohort


@pytest.mark.parametrize("name", CASE_NAMES)
def test_fixed_effects_match_lmertest(golden: dict, name: str) -> None:
    """summary(lmer(...)) with lmerTest: names, estimates, SE, Satterthwaite df, t, p."""
    _, r, m = golden[name]
    fe = m.summary
    assert fe["term"].to_list() == r["fixed"]["term"]
    se_r = np.asarray(r["fixed"]["se"])
    assert rel(fe["estimate"], r["fixed"]["estimate"], se_r) < GOLDEN_ESTIMATE
    assert rel(fe["se"], se_r) < GOLDEN_SE
    assert rel(fe["df"], r["fixed"]["df"]) < GOLDEN_DF
    assert rel(fe["t"], r["fixed"]["t"], 1.0) < GOLDEN_SE  # t = estimate / SE: the SE's relative error
    p_r = np.asarray(r["fixed"]["p"])
    assert np.allclose(fe["p"].to_numpy(), p_r, rtol=GOLDEN_DF, atol=GOLDEN_P_ATOL)
    # the same fit's interval: (ci_high - estimate) / se is t.ppf up to rounding (a few eps x |t|)
    q = fe["ci_high"].to_numpy() - fe["estimate"].to_numpy()
    assert np.allclose(q / fe["se"].to_numpy(), [math.nan if d <= 0 else _tq(d) for d in fe["df"]], rtol=1e-9)


def _tq(df: float) -> float:
    return float(stats.t.ppf(0.975, df))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_likelihood_and_variance_components_match_lme4(golden: dict, name: str) -> None:
    """logLik, REMLcrit/deviance, AIC, BIC, sigma and as.data.frame(VarCorr(m))."""
    _, r, m = golden[name]
    res = m.result_
    assert abs(res.loglik - r["loglik"]) < GOLDEN_LOGLIK
    assert abs(res.deviance - r["deviance"]) < GOLDEN_DEVIANCE
    assert abs(res.aic - r["aic"]) < GOLDEN_DEVIANCE and abs(res.bic - r["bic"]) < GOLDEN_DEVIANCE
    assert rel(res.sigma, r["sigma"]) < GOLDEN_SE
    assert res.n_obs == r["nobs"]
    assert res.n_groups == r["ngrps"]
    vc = m.variance_components
    assert vc["group"].to_list() == r["varcorr"]["grp"]
    assert [v or "" for v in vc["term1"].to_list()] == r["varcorr"]["var1"]
    assert [v or "" for v in vc["term2"].to_list()] == r["varcorr"]["var2"]
    vcov_r = np.asarray(r["varcorr"]["vcov"])
    # variances relative; covariances relative to the product of the SDs (i.e. on the correlation scale)
    scale = np.where(vc["term2"].is_null().to_numpy(), np.abs(vcov_r), 0.0)
    sds = {
        (g, t): v
        for g, t, v, t2 in vc.select("group", "term1", "variance", "term2").iter_rows()
        if t2 is None
    }
    for i, row in enumerate(vc.iter_rows(named=True)):
        if row["term2"] is not None:
            scale[i] = math.sqrt(sds[(row["group"], row["term1"])] * sds[(row["group"], row["term2"])])
    assert rel(vc["variance"], vcov_r, np.maximum(scale, 1e-12)) < GOLDEN_SE
    assert res.converged, res.diagnostics
    assert res.diagnostics.singular == r["singular"]


def test_lme4_default_optimizer_warnings_and_our_likelihood(golden: dict) -> None:
    """Where lme4's default optimizer (nloptwrap) warns of non-convergence, this engine's optimum is at least
    as high as lme4's default fit and equal (golden 1e-5) to the bobyqa fit: the test says which cases these
    are."""
    warned = []
    for name, (_, r, m) in golden.items():
        default = r["default_optimizer"]
        if any("failed to converge" in msg for msg in default["messages"]):
            warned.append(name)
            # ours stops within LOGLIK_STOP of the maximum, and both are rounded to ROUNDING |log L|
            slack = LOGLIK_STOP + ROUNDING * abs(default["loglik"])
            assert m.result_.loglik >= default["loglik"] - slack
            assert abs(m.result_.loglik - r["loglik"]) < GOLDEN_LOGLIK
    assert sorted(warned) == ["factor_interaction", "unbalanced_missing"]


def test_likelihood_ratio_test_matches_anova(golden: dict) -> None:
    """anova(m_small, m): both refitted with ML; chi-square, df and p."""
    case, r, m = golden["unbalanced_missing"]
    small = GrowthModel(case["lrt_small"], reml=True).fit(load_data(case))
    lrt = likelihood_ratio_test(small, m)
    assert lrt.refitted_ml
    assert abs(lrt.loglik_small - r["lrt"]["loglik"][0]) < GOLDEN_LOGLIK
    assert abs(lrt.loglik_large - r["lrt"]["loglik"][1]) < GOLDEN_LOGLIK
    assert (lrt.df_small, lrt.df_large) == tuple(int(v) for v in r["lrt"]["npar"])
    assert lrt.df == r["lrt"]["df"]
    assert abs(lrt.statistic - r["lrt"]["chisq"]) < GOLDEN_DEVIANCE  # 2 x the difference of log-likelihoods
    assert rel(lrt.p, r["lrt"]["p"]) < GOLDEN_DF
    with pytest.raises(ModelSpecificationError, match="more parameters"):
        likelihood_ratio_test(m, small)


def test_joint_f_test_matches_contest(golden: dict) -> None:
    """contest(m, L, joint = TRUE): F, numerator and Satterthwaite denominator df."""
    _, r, m = golden["factor_interaction"]
    names = m.summary["term"].to_list()
    rows = [names.index(c) for c in r["f_test"]["coefficients"]]
    f = m.f_test(np.eye(len(names))[rows])
    assert rel(f["f"], r["f_test"]["f"]) < 2 * GOLDEN_SE  # F, a square of t: twice t's relative error
    assert f["num_df"] == r["f_test"]["num_df"]
    assert rel(f["den_df"], r["f_test"]["den_df"]) < GOLDEN_DF
    assert rel(f["p"], r["f_test"]["p"]) < GOLDEN_DF


def test_reference_level_and_contrast_api(golden: dict) -> None:
    _, _, m = golden["factor_interaction"]
    assert "groupcontrol" in m.summary["term"].to_list()  # reference "strength" chosen in the case
    one = m.contrast({"week": 1.0, "week:groupcontrol": 1.0})
    assert one.height == 1
    beta = dict(zip(m.summary["term"], m.summary["estimate"], strict=True))
    # identities on one fit (no optimizer involved): rounding of a 2-term sum, and of F = t^2 by another route
    assert one["estimate"][0] == pytest.approx(beta["week"] + beta["week:groupcontrol"], rel=1e-12)
    f1 = m.f_test(np.eye(len(beta))[[1]])
    assert f1["f"] == pytest.approx(m.summary["t"][1] ** 2, rel=1e-9)
    with pytest.raises(ModelSpecificationError, match="not coefficients"):
        m.contrast({"nope": 1.0})


def test_cross_check_with_statsmodels_mixedlm() -> None:
    """On a small simulated data set (week rescaled, where MixedLM converges well) REML estimates agree as
    closely as the two optimizers' stopping rules allow."""
    data = simulate_growth(150, visits=6, seed=4)
    ours = GrowthModel("y ~ week * adherence + (week | patient)").fit(data)
    sm = smf.mixedlm("y ~ week * adherence", data.to_pandas(), groups="patient", re_formula="~week").fit(
        reml=True, method=["lbfgs"]
    )
    assert ours.result_.converged and sm.converged
    gap = ours.result_.loglik - sm.llf  # statsmodels' distance below the maximum, plus ours (tolerances.py)
    # ours stops within LOGLIK_STOP of the maximum; both log-likelihoods are rounded to ROUNDING |log L|
    assert gap >= -(LOGLIK_STOP + ROUNDING * abs(sm.llf))
    # L-BFGS-B stops when an iteration gains less than factr * eps of -llf / n, relative (statsmodels' default
    # factr = 1e7); ten such iterations more to the maximum: 10 * 1e7 * eps * |llf| (6e-5 here; measured 8e-8)
    assert gap <= 10 * 1e7 * EPS * abs(sm.llf)
    # statsmodels' beta is within sqrt(2 gap) SE_theta(beta) of the optimum, ours within NEWTON_RADIUS
    # SE_theta (Cauchy-Schwarz, tight when its theta error lies along the direction that moves beta most:
    # measured 0.9 of the bound; its beta is the GLS beta at its theta to 1e-12)
    _, se_theta = growth_model_se_theta(ours)
    bound = (math.sqrt(2 * max(gap, 0.0) + ROUNDING * abs(sm.llf)) + NEWTON_RADIUS) * se_theta
    assert np.all(np.abs(ours.beta_ - sm.fe_params.to_numpy()) <= bound)


def test_recovers_simulated_parameters() -> None:
    data = simulate_growth(3000, visits=8, seed=7)
    m = GrowthModel("y ~ week * adherence + (week | patient)").fit(data)
    fe = m.summary
    truth = [40.0, -1.0, 2.0, -0.5]
    z = (fe["estimate"].to_numpy() - truth) / fe["se"].to_numpy()
    assert np.all(np.abs(z) < 4.5)
    vc = m.variance_components
    assert vc["sd"][0] == pytest.approx(8.0, rel=0.1)
    assert vc["sd"][1] == pytest.approx(0.4, rel=0.1)
    assert m.sigma_ == pytest.approx(4.0, rel=0.05)


def test_ml_refit_and_to_dict(golden: dict) -> None:
    case, _, m = golden["nested_clinic"]
    ml = m.refit(reml=False)
    fresh = GrowthModel(case["formula"], reml=False).fit(load_data(case))
    assert not ml.result_.reml and ml.result_.converged and fresh.result_.converged
    # the refit on the stored statistics is the ML fit: both stop at lambda^2 < 1e-10 (tolerances.py), so
    # log L within LOGLIK_STOP each (plus rounding) and beta within NEWTON_RADIUS SE_theta(beta) each
    ll = fresh.result_.loglik
    assert abs(ml.result_.loglik - ll) <= 2 * LOGLIK_STOP + ROUNDING * abs(ll)
    assert np.all(np.abs(ml.beta_ - fresh.beta_) <= 2 * NEWTON_RADIUS * growth_model_se_theta(fresh)[1])
    d = m.to_dict()
    for key in (
        "fixed_effects",
        "random_effects",
        "sigma",
        "loglik",
        "aic",
        "bic",
        "reml",
        "n_obs",
        "n_groups",
    ):
        assert key in d
    assert set(d["fixed_effects"][0]) == {"term", "estimate", "se", "df", "t", "p", "ci_low", "ci_high"}
    assert set(d["random_effects"][0]) == {"group", "term1", "term2", "variance", "sd", "corr"}
    assert d["converged"] is True and d["diagnostics"]["optimizer"].startswith("L-BFGS-B")
    assert d["n_groups"] == {"patient": 500, "clinic": 8}


def test_predict_population_and_patient(golden: dict) -> None:
    case, _, m = golden["balanced_ml"]
    data = load_data(case)
    pop = m.predict(pl.DataFrame({"week": [0.0, 10.0], "adherence": [0.7, 0.7]}))
    beta = m.beta_
    # identities on one fit (no optimizer involved): x' beta by a matrix product vs. by hand, rounding only
    assert pop["fit"][1] == pytest.approx(beta[0] + 10 * beta[1] + 0.7 * beta[2] + 7 * beta[3], rel=1e-12)
    assert (pop["ci_low"] < pop["fit"]).all() and (pop["fit"] < pop["ci_high"]).all()
    new = data.head(3).vstack(data.head(1).with_columns(pl.lit("NEW").alias("patient")))
    cond = m.predict(new, include_random=True)
    assert cond["known_group"].to_list() == [True, True, True, False]
    assert cond["fit_conditional"][3] == cond["fit"][3]  # an unknown patient adds exactly 0.0
    # patient-level prediction equals X beta + Z b for the patient's BLUPs
    re = m.ranef()["patient"].filter(pl.col("patient") == data["patient"][0])
    row = cond.row(0, named=True)
    expected = row["fit"] + re["(Intercept)"][0] + re["week"][0] * row["week"]
    assert row["fit_conditional"] == pytest.approx(expected, rel=1e-12)
    assert (cond["se_conditional"] >= cond["se"] - 1e-12).all()  # adds z' Var(b | y) z >= 0, up to rounding


def test_missing_values_dropped_and_counted_pandas_input() -> None:
    data = simulate_growth(80, visits=5, seed=2).with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("y")).alias("y")
    )
    m = GrowthModel("y ~ week + (week | patient)").fit(data.to_pandas())
    dropped = int(data["y"].null_count())
    assert m.result_.diagnostics.n_dropped_incomplete == dropped
    assert m.result_.n_obs == data.height - dropped
    assert any("dropped" in msg for msg in m.result_.diagnostics.messages)


def test_singular_fit_is_flagged(golden: dict) -> None:
    _, _, m = golden["singular_boundary"]
    d = m.result_.diagnostics
    assert d.singular and d.converged
    assert any("singular" in msg for msg in d.messages)


def test_crossed_design_refused() -> None:
    data = pl.DataFrame(
        {
            "y": np.arange(12, dtype=float),
            "week": np.tile([0.0, 1.0, 2.0], 4),
            "patient": np.repeat([1, 2], 6),
            "therapist": np.tile(["a", "b"], 6),
        }
    )
    with pytest.raises(ModelSpecificationError, match="crossed, not nested"):
        GrowthModel("y ~ week + (1 | therapist) + (1 | patient)").fit(data)


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        ("y ~ week", "no random-effects term"),
        ("y ~ week + (1 | a) + (1 | b) + (1 | c)", "3 grouping factors"),
        ("y ~ week + (week | clinic:patient)", "must be a column name"),
        ("y ~ week +", "unexpected end"),
        ("y ~ week + bs(week, df = 3) + (1 | patient)", None),
    ],
)
def test_bad_formulas(formula: str, match: str | None) -> None:
    data = simulate_growth(20, visits=4, seed=1)
    with pytest.raises(ModelSpecificationError, match=match or "not supported"):
        GrowthModel(formula).fit(data)


def test_input_errors_name_column_row_and_value() -> None:
    data = simulate_growth(30, visits=4, seed=1)
    with pytest.raises(ModelSpecificationError, match="'age'"):
        GrowthModel("y ~ week + age + (1 | patient)").fit(data)
    bad = data.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(-3.0).otherwise(pl.col("week")).alias("week")
    )
    with pytest.raises(ModelSpecificationError, match=r"sqrt\(week\).*1 row.*data row 5.*-3\.0"):
        GrowthModel("y ~ sqrt(week) + (1 | patient)").fit(bad)
    dup = data.with_columns((pl.col("week") * 2).alias("week2"))
    with pytest.raises(ModelSpecificationError, match="rank deficient"):
        GrowthModel("y ~ week + week2 + (1 | patient)").fit(dup)
    with pytest.raises(UnusableInputError, match="polars or pandas"):
        GrowthModel("y ~ week + (1 | patient)").fit({"y": [1]})
    with pytest.raises(UnusableInputError, match="no complete rows"):
        GrowthModel("y ~ week + (1 | patient)").fit(
            data.with_columns(pl.lit(None, dtype=pl.Float64).alias("y"))
        )


def test_plots_return_axes(golden: dict) -> None:
    matplotlib.use("Agg")
    _, _, m = golden["factor_interaction"]
    ax = m.plot_trajectory(by="group")
    assert len(ax.get_lines()) == 3
    ax2 = m.plot_fixed_effects()
    assert len(ax2.get_yticklabels()) == m.summary.height - 1
    plt.close("all")


def test_pandas_and_polars_give_the_same_fit() -> None:
    data = simulate_growth(60, visits=5, seed=3)
    pdf = pd.DataFrame(data.to_dict(as_series=False))
    assert _to_polars(pdf).equals(data)  # the pandas input reaches the model unchanged (copied, not computed)
    a = GrowthModel("y ~ week + adherence + (week | patient)").fit(data)
    b = GrowthModel("y ~ week + adherence + (week | patient)").fit(pdf)
    assert a.result_.converged and b.result_.converged
    # two fits, each stopped at lambda^2 < 1e-10 (tolerances.py): theta and beta within NEWTON_RADIUS SE_theta
    # of the optimum each, log L within LOGLIK_STOP each (not bitwise: the stopping point moves between CPUs)
    se_theta, se_beta = growth_model_se_theta(a)
    assert np.all(np.abs(a.theta_ - b.theta_) <= 2 * NEWTON_RADIUS * se_theta)
    assert np.all(np.abs(a.beta_ - b.beta_) <= 2 * NEWTON_RADIUS * se_beta)
    assert abs(a.result_.loglik - b.result_.loglik) <= 2 * LOGLIK_STOP + ROUNDING * abs(a.result_.loglik)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_conditional_modes_match_ranef(golden: dict, name: str) -> None:
    """ranef(m, condVar = TRUE): BLUPs of the first five levels (to GOLDEN_SE = 1e-4 of their conditional SD
    or of the random-effect SD) and conditional SDs (1e-4 relative)."""
    _, r, m = golden[name]
    ours = m.ranef()
    for block in r["ranef"]:
        terms = block["terms"] if isinstance(block["terms"], list) else [block["terms"]]
        levels = block["level"] if isinstance(block["level"], list) else [block["level"]]
        frame = ours[block["group"]]
        rows = frame.filter(pl.col(block["group"]).cast(pl.String).is_in(levels))
        rows = rows.sort(pl.col(block["group"]).cast(pl.String))
        assert rows[block["group"]].cast(pl.String).to_list() == sorted(levels)
        order = np.argsort(levels)
        sd_term = dict(zip(m.variance_components["term1"], m.variance_components["sd"], strict=False))
        for j, term in enumerate(terms):
            expected = np.asarray(block["values"][j], dtype=float)[order]
            if block["cond_sd"] is not None:
                cond = np.asarray(block["cond_sd"][j], dtype=float)[order]
                assert rel(rows[f"{term}__cond_sd"], cond) < GOLDEN_SE
                scale = cond
            else:
                scale = np.full(expected.shape, sd_term[term])
            assert np.max(np.abs(rows[term].to_numpy() - expected) / scale) < GOLDEN_SE


def test_optimizer_detects_and_leaves_a_boundary_maximum(golden: dict) -> None:
    """With a slope SD at zero the gradient vanishes by symmetry; the second-order check must see that the
    deviance falls into the interior, and the escape must find a lower start (lme4's optimum is interior)."""
    _, r, m = golden["uncorrelated_slopes"]
    lower = m.structure_.lower()
    bad = m.theta_.copy()
    bad[1] = 0.0
    check = m._check(bad, lower, True)
    assert check["inward"][1] and not check["ok"]
    start = m._escape(bad, check, lower, True)
    assert start is not None
    assert m.engine_.deviance(start, True)[0] < m.engine_.deviance(bad, True)[0]
    assert m.theta_[1] > 0.01 and abs(m.result_.loglik - r["loglik"]) < GOLDEN_LOGLIK


def test_fit_standard_on_the_derived_analysis_frame() -> None:
    cohort = generate_cohort(n_patients=200, n_clinics=3, seed=31)
    af = analysis_frame(cohort.tables)
    m = fit_standard(af, "nprs_leg")
    assert m.formula == standard_formula("nprs_leg", af["clinic_id"].n_unique())
    assert m.result_.converged
    assert m.summary.filter(pl.col("term") == "week")["estimate"][0] < 0  # leg pain falls over the program
    with pytest.raises(UnusableInputError, match="not a column"):
        fit_standard(af, "unknown_measure")
