"""MMRM covariance structures ad, adh, sp_exp and group-specific covariances against SAS PROC MIXED.

Reference values: ``tests/reference/mmrm/fev_sas_structures.json``, extracted by
``tests/reference/mmrm/sas_listings.py`` from openpharma/mmrm's SAS listings on ``fev_data`` (``REPEATED
AVISIT / subject=USUBJID type=ANTE(1)``, ``type=sp(exp)(VISITN)`` and ``sp(exp)(VISITN VISITN2)``,
``group=ARMCD`` with ANTE(1), AR(1), ARH(1), CS, CSH, TOEPH; ``DDFM=KR`` and ``KR(LINEAR)`` for ANTE(1) and
SP(EXP)) and mmrm's own listing of ``ad`` (SAS has no homogeneous ante-dependence).

Tolerances (``tests/models/tolerances.py``): SAS prints its estimates rounded (:func:`sas_printed`, half a
unit of the last printed digit) and stops its optimizer a gap ``G`` below the maximum log-likelihood,
measured from the 8-decimal -2 log L of its last iteration against ours; by the module's argument every
smooth function ``q(theta)`` of SAS's fit is then within ``sqrt(2 G) SE_theta(q)`` of ours (plus this fit's
own Newton radius), ``SE_theta(q)`` the delta-method standard error through ``theta``. Each value is
compared at ``sas_printed + optimizer_gap_radius(G) SE_theta(q)``: printed precision wherever SAS converged
tightly. Satterthwaite df (printed as integers) at half a unit plus ``GOLDEN_DF``; Kenward-Roger SE and df,
which depend on SAS's own second derivatives, at ``GOLDEN_DF`` as in ``test_mmrm.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from tolerances import (
    DEVIANCE_STOP,
    GOLDEN_DEVIANCE,
    GOLDEN_DF,
    NEWTON_RADIUS,
    ROUNDING,
    optimizer_gap_radius,
    rel,
    sas_printed,
    se_through_theta,
)

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import MMRM, numerical_jacobian
from sciatica_outcomes.models.mmrm import (
    COVARIANCE_STRUCTURES,
    _build_patterns,
    _CovSpec,
    _Criterion,
    _sas_gamma,
    _sas_sigma,
    _sigma,
    _theta_start,
)

REF = Path(__file__).resolve().parents[1] / "reference" / "mmrm"
SAS = json.loads((REF / "fev_sas_structures.json").read_text(encoding="utf-8"))
#: our SAS parameter order per block vs the listing's: CS prints Variance (residual part) before CS
LISTING_ORDER = {"cs": [1, 0]}


@pytest.fixture(scope="module")
def fev() -> pl.DataFrame:
    return pl.read_csv(REF / "fev_data.csv", null_values="NA")


def _model(case: dict[str, Any], **kw: Any) -> MMRM:
    return MMRM(
        case["formula"],
        "USUBJID",
        "AVISIT",
        covariance=case["structure"],
        reml=case.get("method", "REML") == "REML",
        group=case.get("group"),
        coordinates=case["coordinates"] or None,
        **kw,
    )


def _se_theta(model: MMRM, frame: pl.DataFrame, fn: Callable[[Any, Any], np.ndarray]) -> np.ndarray:
    """``SE_theta`` of ``fn(theta, evaluation)`` (the criterion rebuilt from the fit's data)."""
    res = model.result_
    prep = model._prepare(frame)
    pats, struct, _ = model._patterns(prep)
    crit = _Criterion(pats, struct, res.reml)

    def q(theta: np.ndarray) -> np.ndarray:
        ev = crit.evaluate(theta)
        assert ev is not None
        return np.asarray(fn(theta, ev), dtype=float)

    return se_through_theta(numerical_jacobian(q, res.theta), res.theta_cov)


def _sas_parameters(model: MMRM, frame: pl.DataFrame) -> Callable[[Any, Any], np.ndarray]:
    """``theta -> SAS's covariance parameters`` in the listing's order."""
    pats, struct, _ = model._patterns(model._prepare(frame))
    n_groups = struct.n_groups if isinstance(struct, _CovSpec) else 1
    order = LISTING_ORDER.get(model.covariance)

    def gamma(_theta: Any, ev: Any) -> np.ndarray:
        g = _sas_gamma(ev.sigma, struct, pats.t)
        if order is not None:
            g = g.reshape(n_groups, -1)[:, order].reshape(-1)
        return g

    return gamma


@pytest.mark.parametrize("name", list(SAS["cases"]))
def test_fit_matches_sas_listing(fev: pl.DataFrame, name: str) -> None:
    """-2 log L, covariance parameters, intercept, its SE and Satterthwaite df as SAS printed them."""
    case = SAS["cases"][name]
    model = _model(case).fit(fev)
    res = model.result_
    assert res.converged
    ours = -2.0 * res.loglik
    sas = float(case["neg2loglik_iterations"])
    # SAS's maximum is never above ours (beyond its printed digits), and within the golden deviance
    assert ours <= sas + sas_printed(case["neg2loglik_iterations"]) + ROUNDING * abs(sas)
    assert abs(ours - sas) < GOLDEN_DEVIANCE
    stat = "-2 Res Log Likelihood" if case["method"] == "REML" else "-2 Log Likelihood"
    assert abs(ours - float(case["fit_statistics"][stat])) <= sas_printed(case["fit_statistics"][stat])
    radius = optimizer_gap_radius((sas - ours) / 2.0)

    gamma_fn = _sas_parameters(model, fev)
    listed = case["covariance_parameters"]
    gamma = gamma_fn(None, _evaluation(model, fev))
    se_gamma = _se_theta(model, fev, gamma_fn)
    assert len(gamma) == len(listed)
    for g, se, par in zip(gamma, se_gamma, listed, strict=True):
        assert abs(g - float(par["estimate"])) <= sas_printed(par["estimate"]) + radius * se, (par, g, se)
    if case["group"] is not None:  # the listing's group levels, in our block order
        assert [p["group"] for p in listed] == [
            lvl for lvl in ("PBO", "TRT") for _ in range(len(listed) // 2)
        ]

    row = res.summary.row(0, named=True)
    se_beta = _se_theta(model, fev, lambda _t, ev: ev.beta)[0]
    se_se = _se_theta(model, fev, lambda _t, ev: np.sqrt(np.diag(ev.a_inv)))[0]
    assert abs(row["estimate"] - float(case["estimate"])) <= sas_printed(case["estimate"]) + radius * se_beta
    assert abs(row["se"] - float(case["se"])) <= sas_printed(case["se"]) + radius * se_se
    assert abs(row["df"] - float(case["df"])) <= sas_printed(case["df"]) + GOLDEN_DF * row["df"]


def _evaluation(model: MMRM, frame: pl.DataFrame) -> Any:
    prep = model._prepare(frame)
    pats, struct, _ = model._patterns(prep)
    return _Criterion(pats, struct, model.reml).evaluate(model.result_.theta)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_ad_matches_mmrm_listing(fev: pl.DataFrame, method: str) -> None:
    """``FEV1 ~ ad(AVISIT | USUBJID)``: mmrm's deviance, theta, Sigma, estimate, SE and df.

    mmrm prints its deviance to 4 decimals only; its gap below our maximum is bounded by that rounding,
    and the values follow at ``sqrt(2 G) SE_theta`` as for SAS.
    """
    r = SAS["mmrm_ad"][method]
    model = MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="ad", reml=method == "reml").fit(fev)
    res = model.result_
    ours = -2.0 * res.loglik
    dev = float(r["deviance"])
    assert abs(ours - dev) <= sas_printed(r["deviance"])
    radius = optimizer_gap_radius((dev + sas_printed(r["deviance"]) - ours) / 2.0)
    # mmrm's theta: log sd, then rho_k = x / sqrt(1 + x^2); ours: log sd, atanh(rho_k)
    mm = np.asarray(r["theta"], dtype=float)
    mm_rho = mm[1:] / np.sqrt(1.0 + mm[1:] ** 2)
    se_theta = np.sqrt(np.diag(res.theta_cov))
    assert np.all(np.abs(res.theta[0] - mm[0]) <= sas_printed(r["theta"][0]) + radius * se_theta[0])
    rho = np.tanh(res.theta[1:])
    se_rho = se_theta[1:] * (1.0 - rho**2)
    assert np.all(np.abs(rho - mm_rho) <= 1e-7 + radius * se_rho)
    se_sigma = _se_theta(model, fev, lambda _t, ev: ev.sigma)
    printed = np.vectorize(sas_printed)(np.asarray(r["sigma"]))
    assert np.all(np.abs(res.covariance - np.asarray(r["sigma"], dtype=float)) <= printed + radius * se_sigma)
    row = res.summary.row(0, named=True)
    se_beta = _se_theta(model, fev, lambda _t, ev: ev.beta)[0]
    assert abs(row["estimate"] - float(r["estimate"])) <= sas_printed(r["estimate"]) + radius * se_beta
    assert abs(row["se"] - float(r["se"])) <= sas_printed(r["se"])
    assert rel(row["df"], float(r["df"])) < GOLDEN_DF


KR_METHODS = {"KR": "kenward-roger", "KR(LINEAR)": "kenward-roger-linear"}


@pytest.fixture(scope="module")
def kr_fits(fev: pl.DataFrame) -> dict[str, MMRM]:
    return {name: _model(c, ddf=KR_METHODS[c["ddfm"]]).fit(fev) for name, c in SAS["kr"].items()}


@pytest.mark.parametrize("name", list(SAS["kr"]))
def test_kenward_roger_matches_sas(kr_fits: dict[str, MMRM], name: str) -> None:
    """LSMEANS difference TRT - PBO of ``FEV1 = ARMCD`` under ``DDFM=KR`` / ``KR(LINEAR)``.

    SE and df depend on ``W`` (SAS's and our second derivatives), so ``GOLDEN_DF`` as for the other
    structures (measured: adh 1.1e-4 SE, 4.0e-4 df; sp_exp 2.4e-6 and 8.3e-6).
    """
    case = SAS["kr"][name]
    res = kr_fits[name].result_
    row = res.summary.row(1, named=True)
    assert row["term"] == "ARMCDTRT"
    ref = case["difference"]
    assert abs(-2.0 * res.loglik - float(case["neg2loglik_iterations"])) < GOLDEN_DEVIANCE
    assert rel(row["estimate"], ref["Estimate"], row["se"]) < GOLDEN_DF
    assert rel(row["se"], ref["StdErr"]) < GOLDEN_DF
    assert rel(row["df"], ref["DF"]) < GOLDEN_DF
    assert res.inference.ddf_method == KR_METHODS[case["ddfm"]]


@pytest.mark.parametrize(("full", "linear"), [("kr_adh", "kr1_adh"), ("kr_spexp", "kr1_spexp")])
def test_kenward_roger_second_order_term_is_sas_difference(
    kr_fits: dict[str, MMRM], full: str, linear: str
) -> None:
    """The ``R_ab`` term (second derivatives in SAS's parameters: for sp_exp the range ``phi`` of
    ``exp(-d / phi)``) moves the SE as SAS's KR and KR(LINEAR) differ: sign and size within 1%."""
    ours = [kr_fits[n].result_.summary["se"][1] for n in (full, linear)]
    sas = [SAS["kr"][n]["difference"]["StdErr"] for n in (full, linear)]
    assert rel(ours[0] - ours[1], sas[0] - sas[1]) < 0.01


# --- structure algebra --------------------------------------------------------------------------------


def test_ante_dependence_correlation_is_product_of_successive_correlations() -> None:
    t = 5
    rho = np.array([0.8, -0.3, 0.5, 0.9])
    sd = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    theta = np.concatenate([np.log(sd), np.arctanh(rho)])
    sig = _sigma(theta, "adh", t)
    corr = sig / np.outer(sd, sd)
    for s in range(t):
        for u in range(s + 1, t):
            assert corr[s, u] == pytest.approx(np.prod(rho[s:u]), rel=1e-12)
    assert np.allclose(np.diag(sig), sd**2)
    assert np.all(np.linalg.eigvalsh(sig) > 0)
    ad = _sigma(np.concatenate([[np.log(2.0)], np.arctanh(rho)]), "ad", t)
    assert np.allclose(ad, 4.0 * corr)
    # round trips: start values and SAS's parameters reproduce Sigma
    for s, m in (("adh", sig), ("ad", ad)):
        assert np.allclose(_sigma(_theta_start(m, s), s, t), m)
        assert np.allclose(_sas_sigma(_sas_gamma(m, s, t), s, t), m)


def test_spatial_exponential_and_group_blocks() -> None:
    coords = np.array([[0.0], [1.0], [2.5], [6.0]])
    dist = np.abs(coords - coords.T)
    spec = _CovSpec("sp_exp", 4, 2, dist)
    theta = np.log([3.0, 2.0, 1.5, 0.5])  # group 1: sd 3, range 2; group 2: sd 1.5, range 0.5
    sig = _sigma(theta, spec, 8)
    assert np.allclose(sig[:4, :4], 9.0 * np.exp(-dist / 2.0))
    assert np.allclose(sig[4:, 4:], 2.25 * np.exp(-dist / 0.5))
    assert np.all(sig[:4, 4:] == 0)
    gamma = _sas_gamma(sig, spec, 8)
    assert np.allclose(gamma, [2.0, 9.0, 0.5, 2.25])  # SP(EXP) = range, Residual = sigma^2, per group
    assert np.allclose(_sas_sigma(gamma, spec, 8), sig)
    grouped = _CovSpec("toeph", 4, 3)
    target = np.outer([2.0, 3, 4, 5], [2.0, 3, 4, 5]) * 0.6 ** np.abs(np.subtract.outer(range(4), range(4)))
    full = np.kron(np.diag([1.0, 2.0, 0.5]), target)
    assert np.allclose(_sigma(_theta_start(full, grouped), grouped, 12), full, atol=1e-8)
    assert np.allclose(_sas_sigma(_sas_gamma(full, grouped, 12), grouped, 12), full)


def test_sp_exp_on_visit_numbers_is_ar1(fev: pl.DataFrame) -> None:
    """Equally spaced integer coordinates: exp(-|i - j| / phi) is AR(1) with rho = exp(-1 / phi)."""
    sp = MMRM("FEV1 ~ ARMCD", "USUBJID", "AVISIT", covariance="sp_exp", coordinates="VISITN").fit(fev)
    ar = MMRM("FEV1 ~ ARMCD", "USUBJID", "AVISIT", covariance="ar1").fit(fev)
    a, b = sp.result_, ar.result_
    assert abs(a.loglik - b.loglik) < 2 * DEVIANCE_STOP + ROUNDING * abs(b.loglik)
    se = b.summary["se"].to_numpy()
    assert np.all(np.abs(a.beta - b.beta) < 2 * NEWTON_RADIUS * se)
    pars = dict(a.variance_parameters.iter_rows())
    rho = dict(b.variance_parameters.iter_rows())["rho"]
    assert pars["range"] == pytest.approx(-1.0 / np.log(rho), rel=1e-4)
    assert a.covariance_labels == ["1", "2", "3", "4"]


def test_group_specific_covariance_with_group_specific_means_is_two_separate_fits(fev: pl.DataFrame) -> None:
    """With every fixed effect specific to the group the likelihood factorises: the grouped fit's REML
    log-likelihood is the sum of the two groups' own fits and each block their covariance."""
    formula = "FEV1 ~ ARMCD * AVISIT"
    both = MMRM(formula, "USUBJID", "AVISIT", covariance="adh", group="ARMCD").fit(fev).result_
    parts = [
        MMRM("FEV1 ~ AVISIT", "USUBJID", "AVISIT", covariance="adh").fit(fev.filter(pl.col("ARMCD") == arm))
        for arm in ("PBO", "TRT")
    ]
    assert abs(both.loglik - sum(p.result_.loglik for p in parts)) < 1e-6
    for g, p in enumerate(parts):
        blk = both.covariance[4 * g : 4 * g + 4, 4 * g : 4 * g + 4]
        assert np.allclose(blk, p.result_.covariance, rtol=1e-5)
    assert both.covariance_labels[:2] == ["PBO:VIS1", "PBO:VIS2"]
    assert both.variance_parameters["name"][0] == "sd[VIS1] | PBO"
    out = both.to_dict()["covariance"]
    assert out["group"] == "ARMCD" and len(out["labels"]) == 8


def test_many_positions_use_the_general_pattern_key() -> None:
    rng = np.random.default_rng(3)
    subject = np.repeat(np.arange(30), 3)
    visit = np.concatenate([rng.choice(4, 3, replace=False) for _ in range(30)])
    x = rng.normal(size=(90, 2))
    y = rng.normal(size=90)
    small = _build_patterns(subject, visit, x, y, 4)
    big = _build_patterns(subject, visit, x, y, 60)
    key = {tuple(v): (c, t) for v, c, t in zip(small.visit_sets, small.counts, small.tensors, strict=True)}
    assert len(big.visit_sets) == len(key)
    for v, c, t in zip(big.visit_sets, big.counts, big.tensors, strict=True):
        assert key[tuple(v)][0] == c
        assert np.allclose(key[tuple(v)][1], t)


def test_structures_are_listed_and_errors_name_the_fix(fev: pl.DataFrame) -> None:
    assert {"ad", "adh", "sp_exp"} <= set(COVARIANCE_STRUCTURES)
    with pytest.raises(ModelSpecificationError, match="sp_exp needs coordinates"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="sp_exp").fit(fev)
    with pytest.raises(ModelSpecificationError, match="used by covariance sp_exp only"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="ar1", coordinates="VISITN").fit(fev)
    with pytest.raises(ModelSpecificationError, match="not numeric"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="sp_exp", coordinates="SEX").fit(fev)
    with pytest.raises(ModelSpecificationError, match="not in the data"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="cs", group="ARM").fit(fev)
    with pytest.raises(ModelSpecificationError, match="more than one 'RACE' group"):
        moved = fev.with_columns(
            pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("Asian")).otherwise(pl.col("RACE")).alias("RACE")
        )
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="cs", group="RACE").fit(moved)
    with pytest.raises(ModelSpecificationError, match="share their coordinates"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="sp_exp", coordinates="FEV1_BL").fit(fev)
    no_vis4_trt = fev.filter(~((pl.col("ARMCD") == "TRT") & (pl.col("AVISIT") == "VIS4")))
    with pytest.raises(ModelSpecificationError, match=r"VIS4 \(ARMCD=TRT\) has no observation"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="adh", group="ARMCD").fit(no_vis4_trt)
    # a group with a missing visit is fine for a structure with one variance
    res = MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="ar1", group="ARMCD").fit(no_vis4_trt).result_
    assert res.converged
