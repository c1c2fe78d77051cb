"""Marginal means and contrasts against emmeans 1.8.4 (``lmer.df = "satterthwaite"``), tests/reference/lmm.

Tolerances: the golden set of ``tests/models/tolerances.py``: means and contrasts 1e-5 of ``max(|b|, SE)``,
SE 1e-4 and df 1e-3 relative, interval limits 1e-3 of the SE (they inherit the df through the t quantile),
Tukey-adjusted p 1e-3 relative (1e-8 absolute in the far tail, where ``ptukey`` itself is only that accurate).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from lmm_golden import CASE_NAMES, REFERENCE
from tolerances import GOLDEN_DF, GOLDEN_ESTIMATE, GOLDEN_SE, GOLDEN_TUKEY_ATOL, rel

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import parse_emmeans_spec


@pytest.mark.parametrize("name", CASE_NAMES)
def test_emmeans_match_r(golden: dict, name: str) -> None:
    """emmeans(m, specs, at = ..., lmer.df = "satterthwaite"): grid, means, SE, df, CI."""
    case, r, m = golden[name]
    spec = case["emmeans"]
    em = m.emmeans(spec["specs"], at=spec["at"], by=spec.get("by")).means
    table = pl.DataFrame(r["emmeans"]["table"])
    assert em.height == table.height
    for col in [*spec["specs"], *spec.get("by", [])]:
        mine = em[col].cast(pl.String).to_list()
        theirs = table[col].cast(pl.String).to_list()
        if em[col].dtype == pl.Float64:  # grid values: the `at` values copied, or covariate means
            assert np.allclose(em[col].to_numpy(), table[col].cast(pl.Float64).to_numpy())
        else:
            assert mine == theirs
    se = table["SE"].to_numpy()
    assert rel(em["emmean"], table["emmean"], se) < GOLDEN_ESTIMATE
    assert rel(em["se"], se) < GOLDEN_SE
    assert rel(em["df"], table["df"]) < GOLDEN_DF
    assert rel(em["ci_low"], table["lower.CL"], se) < GOLDEN_DF
    assert rel(em["ci_high"], table["upper.CL"], se) < GOLDEN_DF


@pytest.mark.parametrize("name", ["factor_interaction", "unbalanced_missing", "spline_time"])
def test_pairwise_contrasts_match_r(golden: dict, name: str) -> None:
    """pairs(emm): estimates, SE, df, t and Tukey-adjusted p."""
    case, r, m = golden[name]
    spec = case["emmeans"]
    pairs = m.emmeans(spec["specs"], at=spec["at"], by=spec.get("by")).contrasts("pairwise")
    table = pl.DataFrame(r["pairs"]["table"])
    assert pairs.height == table.height
    if name == "factor_interaction":
        assert pairs["contrast"].to_list() == table["contrast"].to_list()
    se = table["SE"].to_numpy()
    assert rel(pairs["estimate"], table["estimate"], se) < GOLDEN_ESTIMATE
    assert rel(pairs["se"], se) < GOLDEN_SE
    assert rel(pairs["df"], table["df"]) < GOLDEN_DF
    assert rel(pairs["t"], table["t.ratio"], 1.0) < GOLDEN_SE
    # ptukey (R) and scipy's studentized range are accurate to ~1e-8 absolute, not relative, far in the tail
    p_r = table["p.value"].to_numpy()
    assert np.allclose(pairs["p_adjusted"].to_numpy(), p_r, rtol=GOLDEN_DF, atol=GOLDEN_TUKEY_ATOL)


#: tests/reference/lmm/emmeans_df.R: the README's R call, emmeans' default call (Kenward-Roger) and the
#: fall-backs past emmeans' observation limits, on two golden cases; the same means in this package's terms
DF_REFERENCE = json.loads((REFERENCE / "emmeans_df.json").read_text(encoding="utf-8"))
README_CALLS = {
    "unbalanced_missing": {"specs": "week", "at": {"week": [0, 6, 12, 26]}},
    "factor_interaction": {"specs": "group", "by": "week", "at": {"week": [12]}},
}


@pytest.mark.parametrize("name", list(README_CALLS))
def test_readme_r_call_reproduces_means_and_pairs(golden: dict, name: str) -> None:
    """The README's ``emmeans(m, ..., lmer.df = "satterthwaite")`` (lme4 and emmeans attached only)."""
    _, _, m = golden[name]
    r = DF_REFERENCE["cases"][name]
    assert 'lmer.df = "satterthwaite"' in r["readme"]["call"] and r["readme"]["df_method"] == "satterthwaite"
    em = m.emmeans(**README_CALLS[name])
    table = pl.DataFrame(r["readme"]["table"])
    se = table["SE"].to_numpy()
    assert rel(em.means["emmean"], table["emmean"], se) < GOLDEN_ESTIMATE
    assert rel(em.means["se"], se) < GOLDEN_SE
    assert rel(em.means["df"], table["df"]) < GOLDEN_DF
    pairs = em.contrasts()
    theirs = pl.DataFrame(r["readme_pairs"]["table"])
    assert pairs["contrast"].to_list() == theirs["contrast"].to_list()
    assert rel(pairs["estimate"], theirs["estimate"], theirs["SE"].to_numpy()) < GOLDEN_ESTIMATE
    assert rel(pairs["se"], theirs["SE"]) < GOLDEN_SE
    assert rel(pairs["df"], theirs["df"]) < GOLDEN_DF
    p_r = theirs["p.value"].to_numpy()
    assert np.allclose(pairs["p_adjusted"].to_numpy(), p_r, rtol=GOLDEN_DF, atol=GOLDEN_TUKEY_ATOL)


def test_emmeans_default_call_is_kenward_roger_not_ours(golden: dict) -> None:
    """emmeans' default for an lmer fit (pbkrtest installed, n <= pbkrtest.limit) is Kenward-Roger: its df
    and adjusted SE are not this package's, far outside the golden tolerances (df 12% apart at week 26)."""
    _, _, m = golden["unbalanced_missing"]
    r = DF_REFERENCE["cases"]["unbalanced_missing"]
    assert r["default"]["df_method"] == "kenward-roger" and "lmer.df" not in r["default"]["call"]
    em = m.emmeans(**README_CALLS["unbalanced_missing"]).means
    kr = pl.DataFrame(r["default"]["table"])
    assert rel(em["emmean"], kr["emmean"], kr["SE"].to_numpy()) < GOLDEN_ESTIMATE  # same means
    assert rel(em["df"], kr["df"]) > 100 * GOLDEN_DF
    assert rel(em["se"], kr["SE"]) > 10 * GOLDEN_SE


def test_other_contrast_methods_and_adjustments(golden: dict) -> None:
    _, _, m = golden["factor_interaction"]
    em = m.emmeans("group", by="week", at={"week": [12]})
    # identities on one fit (no optimizer involved): rounding only, np.allclose's defaults are ample
    rev = em.contrasts("revpairwise", adjust="none")
    pw = em.contrasts("pairwise", adjust="none")
    assert rev["contrast"].to_list() == ["control - strength", "walking - strength", "walking - control"]
    assert np.allclose(
        np.sort(np.abs(rev["estimate"].to_numpy())), np.sort(np.abs(pw["estimate"].to_numpy()))
    )
    trt = em.contrasts("trt.vs.ctrl")
    assert trt["contrast"].to_list() == ["control - strength", "walking - strength"]
    bonf = em.contrasts("pairwise", adjust="bonferroni")
    assert np.allclose(bonf["p_adjusted"], np.minimum(pw["p"] * 3, 1))
    holm = em.contrasts("pairwise", adjust="holm")
    assert (holm["p_adjusted"] <= bonf["p_adjusted"] + 1e-15).all()
    with pytest.raises(ModelSpecificationError, match="not supported"):
        em.contrasts("poly")


def test_equal_weights_over_factors(golden: dict) -> None:
    """A mean over a factor is the unweighted average of the cell means (emmeans' default)."""
    _, _, m = golden["factor_interaction"]
    overall = m.emmeans("week", at={"week": [12]}).means["emmean"][0]
    cells = m.emmeans(["group"], at={"week": [12]}).means["emmean"].to_numpy()
    assert overall == pytest.approx(cells.mean(), rel=1e-12)


def test_emmeans_errors(golden: dict) -> None:
    _, _, m = golden["factor_interaction"]
    with pytest.raises(ModelSpecificationError, match="not a predictor"):
        m.emmeans("dose")
    with pytest.raises(ModelSpecificationError, match="not in the data"):
        m.emmeans("group", at={"group": ["yoga"]})


def test_parse_emmeans_spec() -> None:
    assert parse_emmeans_spec("week=0,6,12,26") == (["week"], {"week": [0.0, 6.0, 12.0, 26.0]}, [])
    assert parse_emmeans_spec("group|week") == (["group"], {}, ["week"])
    assert parse_emmeans_spec("week=0,12;group") == (["week", "group"], {"week": [0.0, 12.0]}, [])
    assert parse_emmeans_spec("group|week=0,26") == (["group"], {"week": [0.0, 26.0]}, ["week"])
    with pytest.raises(ModelSpecificationError, match="expected"):
        parse_emmeans_spec("1week=3")
