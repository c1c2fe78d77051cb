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

import numpy as np
import polars as pl
import pytest
from mmrm_sas import KR_METHODS, SAS, kr_rows, listing_rows, mmrm_ad_rows, model_of
from mmrm_sas import fev as mmrm_sas_fev
from tolerances import DEVIANCE_STOP, NEWTON_RADIUS, ROUNDING, rel, sas_printed

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import MMRM
from sciatica_outcomes.models.mmrm import (
    COVARIANCE_STRUCTURES,
    _build_patterns,
    _CovSpec,
    _sas_gamma,
    _sas_sigma,
    _sigma,
    _theta_start,
)


@pytest.fixture(scope="module")
def fev() -> pl.DataFrame:
    return mmrm_sas_fev()


@pytest.mark.parametrize("name", list(SAS["cases"]))
def test_fit_matches_sas_listing(fev: pl.DataFrame, name: str) -> None:
    """-2 log L, covariance parameters (SAS's parameterisation and order, per group), intercept, its SE and
    Satterthwaite df as SAS printed them (the rows of ``mmrm_sas.listing_rows``)."""
    case = SAS["cases"][name]
    model, rows = listing_rows(name, fev)
    assert model.result_.converged
    # SAS's maximum is never above ours beyond its printed digits
    ours, sas = -2.0 * model.result_.loglik, float(case["neg2loglik_iterations"])
    assert ours <= sas + sas_printed(case["neg2loglik_iterations"]) + ROUNDING * abs(sas)
    assert len(rows) == 5 + len(case["covariance_parameters"])
    bad = [r for r in rows if not r.ok]
    assert not bad, bad
    if case["group"] is not None:  # the listing's group levels, in our block order
        half = len(case["covariance_parameters"]) // 2
        assert [p["group"] for p in case["covariance_parameters"]] == ["PBO"] * half + ["TRT"] * half


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_ad_matches_mmrm_listing(fev: pl.DataFrame, method: str) -> None:
    """``FEV1 ~ ad(AVISIT | USUBJID)``: mmrm's deviance, theta, Sigma, estimate, SE and df (SAS has no
    homogeneous ante-dependence); mmrm's optimizer gap is bounded by its printed deviance."""
    rows = mmrm_ad_rows(method, fev)
    bad = [r for r in rows if not r.ok]
    assert not bad, bad


@pytest.fixture(scope="module")
def kr_fits(fev: pl.DataFrame) -> dict[str, MMRM]:
    return {name: model_of(c, ddf=KR_METHODS[c["ddfm"]]).fit(fev) for name, c in SAS["kr"].items()}


def test_kenward_roger_matches_sas(fev: pl.DataFrame, kr_fits: dict[str, MMRM]) -> None:
    """ARMCD TRT - PBO under ``DDFM=KR`` / ``KR(LINEAR)`` (adh, sp_exp; the others in ``test_mmrm.py``):
    SE and df depend on ``W`` (SAS's and our second derivatives), so ``GOLDEN_DF`` as in ``test_mmrm.py``
    (measured: adh 1.1e-4 SE, 4.0e-4 df; sp_exp 2.4e-6 and 8.3e-6)."""
    rows = kr_rows(fev, kr_fits, others=False)
    assert {r.case for r in rows} == {"adh KR", "adh KR(LINEAR)", "sp_exp KR", "sp_exp KR(LINEAR)"}
    bad = [r for r in rows if not r.ok]
    assert not bad, bad


@pytest.mark.parametrize("name", list(SAS["kr"]))
def test_kenward_roger_fit_is_sas_fit(kr_fits: dict[str, MMRM], name: str) -> None:
    case = SAS["kr"][name]
    res = kr_fits[name].result_
    assert res.summary["term"][1] == "ARMCDTRT"
    assert abs(-2.0 * res.loglik - float(case["neg2loglik_iterations"])) < 2e-5
    assert res.inference.ddf_method == KR_METHODS[case["ddfm"]]


@pytest.mark.parametrize(("full", "linear"), [("kr_adh", "kr1_adh"), ("kr_spexp", "kr1_spexp")])
def test_kenward_roger_second_order_term_is_sas_difference(
    kr_fits: dict[str, MMRM], full: str, linear: str
) -> None:
    """The ``R_ab`` term (second derivatives in SAS's parameters: for sp_exp the range ``phi`` of
    ``exp(-d / phi)``) moves the SE as SAS's KR and KR(LINEAR) differ: sign and size within 1%.

    This also settles which of mmrm's two sp_exp files is which: ``ddfm_covtype.R`` writes DDFM=KR to
    ``kr1_spexp`` and KR(LINEAR) to ``kr_spexp``; only that assignment matches."""
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


def test_sp_exp_refuses_more_points_than_it_can_hold(
    fev: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The covariance is over all distinct points x groups: beyond MAX_SP_EXP_POINTS the fit is refused."""
    monkeypatch.setattr("sciatica_outcomes.models.mmrm.MAX_SP_EXP_POINTS", 1000)
    many = fev.with_columns((pl.col("VISITN") + pl.int_range(pl.len()) / 1000.0).alias("DAY"))
    with pytest.raises(ModelSpecificationError, match=r"537 distinct coordinate points in 2 groups.*round"):
        MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="sp_exp", coordinates="DAY", group="ARMCD").fit(many)
    res = MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="sp_exp", coordinates="DAY").fit(many).result_
    assert res.converged and len(res.covariance_labels) == 537
