"""MMRM observation weights and empirical (sandwich) covariances (``models/sandwich.py``).

References (``tests/reference/mmrm/``, openpharma/mmrm's fev_data):

- ``fev_sas_listings.json`` (``make_sas_fixtures.py``): SAS PROC MIXED ``EMPIRICAL`` covariances of
  ``FEV1 = ARMCD`` for seven structures with and without ``WEIGHT``, SAS's weighted unstructured listing and
  mmrm's own summary of the same weighted fit;
- ``fev_sandwich.json`` (``sandwich_reference.R``): ``nlme::gls`` with ``varFixed(~ 1 / WEIGHT)`` and
  ``clubSandwich::vcovCR`` CR0 / CR3 / CR2 with ``coef_test`` Satterthwaite df, and mmrm's bias-reduced
  estimator transcribed into R.

Tolerances (``tolerances.py``): covariances of beta at ``GOLDEN_SE`` (on the correlation scale), df at
``GOLDEN_DF``; values SAS prints with few digits at half a unit of the last printed digit or the golden
tolerance, whichever is larger (SAS stops its optimizer ~1.6e-6 below our maximum log-likelihood, which moves
its UN estimates by 4e-5 relative, more than their printed rounding).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from tolerances import (
    GOLDEN_DEVIANCE,
    GOLDEN_DF,
    GOLDEN_ESTIMATE,
    GOLDEN_LOGLIK,
    GOLDEN_SE,
    covariance_rel,
    rel,
    se_through_theta,
)

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import MMRM, numerical_jacobian
from sciatica_outcomes.models.mmrm import _build_patterns, _Criterion, _sigma
from sciatica_outcomes.models.sandwich import EmpiricalInference

REF = Path(__file__).parents[1] / "reference" / "mmrm"
SAS = json.loads((REF / "fev_sas_listings.json").read_text(encoding="utf-8"))
CLUB = json.loads((REF / "fev_sandwich.json").read_text(encoding="utf-8"))
FEV = pl.read_csv(REF / "fev_data.csv", null_values="NA")
SAS_REF = {"RACE": "Asian", "SEX": "Male", "ARMCD": "PBO", "AVISIT": "VIS4"}
KINDS = {"CR0": "empirical", "CR3": "empirical-jackknife", "CR2": "empirical-bias-reduced"}


def _se_theta(model: MMRM) -> tuple[np.ndarray, np.ndarray]:
    """``SE_theta`` of ``beta(theta)`` and ``Sigma(theta)`` of a (weighted) fit (``tolerances.mmrm_se_theta``
    with the rows scaled by ``sqrt(w)``, as the fit scales them)."""
    res = model.result_
    prep = model._prepare(FEV)
    sw = np.ones(prep["y"].shape[0]) if prep["weights"] is None else np.sqrt(prep["weights"])
    pats = _build_patterns(
        prep["subject"], prep["visit"], prep["x"] * sw[:, None], prep["y"] * sw, len(res.visits)
    )
    crit = _Criterion(pats, res.structure, res.reml)

    def beta(theta: np.ndarray) -> np.ndarray:
        ev = crit.evaluate(theta)
        assert ev is not None
        return ev.beta

    jac_b = numerical_jacobian(beta, res.theta)
    jac_s = numerical_jacobian(lambda th: _sigma(th, res.structure, len(res.visits)), res.theta)
    return se_through_theta(jac_b, res.theta_cov), se_through_theta(jac_s, res.theta_cov)


def _fit(formula: str, cov: str, **kw: object) -> MMRM:
    return MMRM(formula, subject="USUBJID", visit="AVISIT", covariance=cov, **kw).fit(FEV)  # type: ignore[arg-type]


# --- weights ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def weighted_us() -> MMRM:
    return _fit("FEV1 ~ RACE + SEX + ARMCD * AVISIT", "us", weights="WEIGHT", reference=SAS_REF)


def test_weighted_fit_matches_sas_listing(weighted_us: MMRM) -> None:
    """SAS ``WEIGHT WEIGHT;`` (``R_i = W^-1/2 Sigma W^-1/2``): -2 Res Log Like, estimates, SEs, UN(i, j).

    SAS's last iteration is a gap ``G`` = 1.6e-6 below our maximum log-likelihood (measured, inside
    ``GOLDEN_LOGLIK``), so by ``tolerances``' argument its estimates lie within ``sqrt(2 G) SE_theta`` of
    ours; each printed value is compared at half a unit of its last digit plus that radius (measured:
    estimates within 7.2e-5, UN within 9.2e-4), SEs at ``GOLDEN_SE`` (6.6e-5 measured).
    """
    sas = SAS["weighted_us"]
    res = weighted_us.result_
    gap = 0.5 * (sas["minus2_reml"] - (-2 * res.loglik))
    assert 0 <= gap < GOLDEN_LOGLIK
    radius = np.sqrt(2 * gap)
    se_b, se_s = _se_theta(weighted_us)
    assert len(sas["fixed"]) == len(res.coef_names)
    for j, (row, ref) in enumerate(zip(res.summary.iter_rows(named=True), sas["fixed"], strict=True)):
        assert abs(row["estimate"] - ref["estimate"]) < 0.5e-4 + radius * se_b[j], (row["term"], ref)
        assert rel(row["se"], ref["se"]) < GOLDEN_SE, (row["term"], ref)
    visits = res.visits
    for key, value in sas["un"].items():
        i, j = (visits.index(f"VIS{c}") for c in key[3:-1].split(","))
        digits = 0.5e-5 if abs(value) < 0.1 else 0.5e-4
        assert abs(res.covariance[i, j] - value) < digits + radius * se_s[i, j], key


def test_weighted_fit_matches_mmrm_and_gls(weighted_us: MMRM) -> None:
    """mmrm's summary of the same weighted fit (estimates, SEs, Satterthwaite df and covariance as printed),
    and ``gls(weights = varFixed(~ 1 / WEIGHT))`` at full precision (log-likelihood, estimates, SEs).

    SAS's weighted Satterthwaite df (407 for the intercept) disagree with mmrm's (170.19) and ours; mmrm
    documents matching SAS for the estimates only, so the df are checked against mmrm.
    """
    res = weighted_us.result_
    mm = SAS["mmrm_weighted_us"]
    for row, ref in zip(res.summary.iter_rows(named=True), mm["fixed"], strict=True):
        assert row["term"] == ref["term"]
        assert abs(row["estimate"] - ref["estimate"]) <= 0.5e-4 + 1e-9
        assert abs(row["se"] - ref["se"]) <= 0.5e-4 + 1e-9
        assert abs(row["df"] - ref["df"]) <= 0.5e-2 + GOLDEN_DF * ref["df"]
    order = [res.visits.index(v) for v in mm["covariance_order"]]
    got = res.covariance[np.ix_(order, order)]
    want = np.array([mm["covariance"][v] for v in mm["covariance_order"]])
    assert np.max(np.abs(got - want)) <= 0.5e-4 + 1e-9
    for key in ("us_weighted", "cs_weighted", "csh_weighted", "ar1_weighted"):
        ref_g = CLUB["fits"][key]
        fit = _fit("FEV1 ~ ARMCD * AVISIT", ref_g["structure"], weights="WEIGHT").result_
        assert fit.coef_names == ref_g["terms"]
        assert abs(fit.loglik - ref_g["loglik"]) < GOLDEN_LOGLIK
        se = fit.summary["se"].to_numpy()
        assert rel(fit.beta, ref_g["coef"], floor=se) < GOLDEN_ESTIMATE
        assert rel(se, ref_g["se"]) < GOLDEN_SE


def test_unit_weights_are_no_weights() -> None:
    data = FEV.with_columns(pl.lit(1.0).alias("ONE"))
    a = MMRM("FEV1 ~ ARMCD + AVISIT", subject="USUBJID", visit="AVISIT", covariance="ar1").fit(data).result_
    b = MMRM("FEV1 ~ ARMCD + AVISIT", subject="USUBJID", visit="AVISIT", covariance="ar1", weights="ONE")
    b = b.fit(data).result_
    assert np.allclose(a.beta, b.beta, rtol=1e-9)
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    assert b.to_dict()["weights"] == "ONE"


def test_weights_refusals_name_the_fix() -> None:
    bad = FEV.with_columns(
        pl.when(pl.col("USUBJID") == "PT2").then(0.0).otherwise(pl.col("WEIGHT")).alias("W")
    )
    with pytest.raises(ModelSpecificationError, match="positive weight"):
        MMRM("FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", weights="W").fit(bad)
    with pytest.raises(ModelSpecificationError, match="must be numeric"):
        MMRM("FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", weights="ARMCD").fit(FEV)
    with pytest.raises(ModelSpecificationError, match="NOPE"):
        MMRM("FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", weights="NOPE").fit(FEV)
    # a missing weight on a row without a response is not needed (the row is dropped for its response)
    ok = FEV.with_columns(pl.when(pl.col("FEV1").is_null()).then(None).otherwise(pl.col("WEIGHT")).alias("W"))
    MMRM("FEV1 ~ ARMCD", subject="USUBJID", visit="AVISIT", covariance="cs", weights="W").fit(ok)


# --- empirical covariances ---------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(SAS["empirical"]["fits"]))
def test_empirical_matches_sas_covb(key: str) -> None:
    """SAS ``EMPIRICAL`` ``COVB`` of ``FEV1 = ARMCD`` for every structure, with and without weights, and the
    TRT - PBO estimate and SE; the -2 Res Log Like (SAS's last iteration) to ``GOLDEN_DEVIANCE``.

    Measured: covariance within 6.9e-5 (toep, weighted) on the correlation scale, -2 l_R within 1.0e-5
    (csh: SAS stops a gap ``G`` = 5.2e-6 below our maximum, so its TRT - PBO estimate is compared at
    ``GOLDEN_ESTIMATE`` plus ``sqrt(2 G) SE_theta``, the radius of ``tolerances``).
    """
    ref = SAS["empirical"]["fits"][key]
    cov = key.removesuffix("_weighted")
    model = _fit("FEV1 ~ ARMCD", cov, weights="WEIGHT" if ref["weighted"] else None, vcov="empirical")
    res = model.result_
    assert isinstance(res.inference, EmpiricalInference)
    assert covariance_rel(res.inference.vcov_beta, ref["covb"]) < GOLDEN_SE
    row = res.summary.row(1, named=True)
    diff = ref["trt_minus_pbo"]
    gap = max(0.5 * (ref["minus2_reml"] - (-2 * res.loglik)), 0.0)
    radius = np.sqrt(2 * gap) * _se_theta(model)[0][1]
    tol = GOLDEN_ESTIMATE * max(abs(diff["estimate"]), diff["se"]) + radius
    assert abs(row["estimate"] - diff["estimate"]) < tol
    assert rel(row["se"], diff["se"]) < GOLDEN_SE
    assert abs(-2 * res.loglik - ref["minus2_reml"]) < GOLDEN_DEVIANCE
    assert res.to_dict()["vcov"] == "empirical"


@pytest.mark.parametrize("key", list(CLUB["fits"]))
def test_empirical_and_jackknife_match_clubsandwich(key: str) -> None:
    """mmrm "Empirical" = CR0 and "Empirical-Jackknife" = CR3 of ``clubSandwich::vcovCR`` on the gls fit,
    with ``coef_test`` Satterthwaite df (``FEV1 ~ ARMCD * AVISIT``; measured within 1.5e-7 and 4.6e-7)."""
    ref = CLUB["fits"][key]
    for cr in ("CR0", "CR3"):
        res = _fit(
            "FEV1 ~ ARMCD * AVISIT",
            ref["structure"],
            weights="WEIGHT" if ref["weighted"] else None,
            vcov=KINDS[cr],
        ).result_
        assert covariance_rel(res.inference.vcov_beta, ref[cr]["vcov"]) < GOLDEN_SE
        assert rel(res.summary["df"].to_numpy(), ref[cr]["df"]) < GOLDEN_DF


@pytest.mark.parametrize("key", list(CLUB["fits"]))
def test_bias_reduced_matches_mmrm_and_its_df_clubsandwich(key: str) -> None:
    """mmrm "Empirical-Bias-Reduced": the covariance as mmrm's src/empirical.cpp computes it (transcribed
    into R at the gls fit; measured within 1.4e-7), the df as clubSandwich's CR2 ``df_Satt`` (2.4e-6).

    clubSandwich's CR2 covariance builds its adjustment matrices differently (3.1e-4 here; mmrm's own tests
    compare the two at 1e-3), so only a loose check of it."""
    ref = CLUB["fits"][key]
    res = _fit(
        "FEV1 ~ ARMCD * AVISIT",
        ref["structure"],
        weights="WEIGHT" if ref["weighted"] else None,
        vcov="empirical-bias-reduced",
    ).result_
    assert covariance_rel(res.inference.vcov_beta, ref["mmrm_br"]) < GOLDEN_SE
    assert covariance_rel(res.inference.vcov_beta, ref["CR2"]["vcov"]) < 1e-3
    assert rel(res.summary["df"].to_numpy(), ref["CR2"]["df"]) < GOLDEN_DF


def test_empirical_df_equals_mmrms_dense_formula() -> None:
    """The O(N p) df (``G = diag(d) - C Phi C'``) equal mmrm's ``tr(G)^2 / tr(G^2)`` with the N x N
    ``I - H`` built densely, for every kind and a multi-row F test (rounding only)."""
    data = FEV.filter(pl.col("USUBJID").is_in([f"PT{i}" for i in range(1, 41)]))
    for kind in ("empirical", "empirical-jackknife", "empirical-bias-reduced"):
        res = (
            MMRM("FEV1 ~ ARMCD + AVISIT", subject="USUBJID", visit="AVISIT", covariance="us", vcov=kind)
            .fit(data)
            .result_
        )
        inf = res.inference
        assert isinstance(inf, EmpiricalInference)
        xt, bmat, starts = inf.whitened, inf.leverage, inf.starts
        assert xt is not None and bmat is not None and starts is not None and inf.vcov_model is not None
        n = xt.shape[0]
        sub = np.repeat(np.arange(starts.shape[0]), np.diff(np.r_[starts, n]))
        imh = np.eye(n) - xt @ inf.vcov_model @ xt.T
        lmat = np.array([[0, 1, 0, 0, 0], [0, 0, 1, -1, 0], [1, 0.5, 0, 0, 0.25]], dtype=float)
        for l_row, got in zip(lmat, inf.empirical_df(lmat), strict=True):
            b = bmat @ l_row
            m = imh * b[None, :]  # column j scaled: M[:, subject] = (I - H)[:, S_i] b_i
            mm = np.zeros((n, starts.shape[0]))
            np.add.at(mm.T, sub, m.T)
            g = mm.T @ mm
            assert got == pytest.approx(np.trace(g) ** 2 / np.sum(g * g), rel=1e-9)


def test_empirical_reaches_contrasts_emmeans_and_anova() -> None:
    res = _fit("FEV1 ~ ARMCD * AVISIT", "ar1", vcov="empirical").result_
    asy = _fit("FEV1 ~ ARMCD * AVISIT", "ar1").result_
    inf = res.inference
    assert isinstance(inf, EmpiricalInference)
    em = res.emmeans("ARMCD", by="AVISIT").means
    grid = np.zeros((1, len(res.coef_names)))
    grid[0, 0] = 1.0
    one = res.contrast(grid)
    assert one["se"][0] == pytest.approx(np.sqrt(inf.vcov_beta[0, 0]), rel=1e-12)
    assert one["df"][0] == pytest.approx(inf.empirical_df(grid)[0], rel=1e-12)
    assert not np.allclose(em["se"].to_numpy(), asy.emmeans("ARMCD", by="AVISIT").means["se"].to_numpy())
    tab = res.anova()
    f1 = res.f_test(np.eye(len(res.coef_names))[[1]])
    assert f1["f"] == pytest.approx(res.summary["t"][1] ** 2, rel=1e-9)
    assert f1["den_df"] == pytest.approx(res.summary["df"][1], rel=1e-9)
    assert tab.filter(pl.col("term") == "ARMCD:AVISIT")["num_df"][0] == 3


def test_vcov_refusals_name_the_fix() -> None:
    frame = pl.DataFrame({"other": [1.0]})
    with pytest.raises(ModelSpecificationError, match="asymptotic, empirical"):
        MMRM("y ~ x", subject="id", visit="v", vcov="sandwich").fit(frame)
    with pytest.raises(ModelSpecificationError, match="cannot be combined"):
        MMRM("y ~ x", subject="id", visit="v", vcov="empirical", ddf="kenward-roger").fit(frame)


def test_jackknife_refuses_a_subject_with_leverage_one() -> None:
    """A factor level seen in one subject only: ``I - H_ii`` is singular for it, the jackknife undefined
    (inverting it would give an SE of 40 instead of 0.6 and NaN df, silently); bias-reduced uses mmrm's
    pseudo-inverse square root and stays finite."""
    data = FEV.with_columns(
        pl.when(pl.col("USUBJID") == "PT2").then(pl.lit("solo")).otherwise(pl.col("RACE")).alias("R2")
    )
    with pytest.raises(ModelSpecificationError, match="leverage"):
        MMRM(
            "FEV1 ~ R2 + AVISIT",
            subject="USUBJID",
            visit="AVISIT",
            covariance="cs",
            vcov="empirical-jackknife",
        ).fit(data)
    br = MMRM(
        "FEV1 ~ R2 + AVISIT",
        subject="USUBJID",
        visit="AVISIT",
        covariance="cs",
        vcov="empirical-bias-reduced",
    ).fit(data)
    assert np.isfinite(br.result_.summary["df"].to_numpy()).all()
