"""Marginal means and contrasts against emmeans 1.8.4 (``lmer.df = "satterthwaite"``), tests/reference/lmm.

Tolerances: means 1e-5 relative to their SE, SE 1e-4 and df 1e-3 relative, Tukey-adjusted p 1e-3 relative
(1e-8 absolute in the far tail, where ``ptukey`` itself is only that accurate).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from lmm_golden import CASE_NAMES

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import parse_emmeans_spec


def rel(a, b, floor=1e-300) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


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
        if em[col].dtype == pl.Float64:
            assert np.allclose(em[col].to_numpy(), table[col].cast(pl.Float64).to_numpy())
        else:
            assert mine == theirs
    se = table["SE"].to_numpy()
    assert rel(em["emmean"], table["emmean"], se) < 1e-5
    assert rel(em["se"], se) < 1e-4
    assert rel(em["df"], table["df"]) < 1e-3
    assert rel(em["ci_low"], table["lower.CL"], se) < 1e-3
    assert rel(em["ci_high"], table["upper.CL"], se) < 1e-3


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
    assert rel(pairs["estimate"], table["estimate"], se) < 1e-5
    assert rel(pairs["se"], se) < 1e-4
    assert rel(pairs["df"], table["df"]) < 1e-3
    assert rel(pairs["t"], table["t.ratio"], 1.0) < 1e-4
    # ptukey (R) and scipy's studentized range are accurate to ~1e-8 absolute, not relative, far in the tail
    assert np.allclose(pairs["p_adjusted"].to_numpy(), table["p.value"].to_numpy(), rtol=1e-3, atol=1e-8)


def test_other_contrast_methods_and_adjustments(golden: dict) -> None:
    _, _, m = golden["factor_interaction"]
    em = m.emmeans("group", by="week", at={"week": [12]})
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
