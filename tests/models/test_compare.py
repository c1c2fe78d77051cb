"""Tests of the risk-adjusted provider comparison: O - E, funnel limits and shrinkage with known truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from tolerances import EPS, printed

from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.compare import (
    DEFAULT_CASE_MIX,
    compare_clinics_and_therapists,
    compare_providers,
    episode_outcomes,
)
from sciatica_outcomes.synth import generate_cohort


def _simulated(seed: int, n_providers: int = 40, tau: float = 2.0, sigma: float = 8.0):
    """Improvement = 4 + 0.25 baseline - 0.05 (age - 50) + provider effect + noise; volumes 5..200."""
    rng = np.random.default_rng(seed)
    sizes = np.exp(rng.uniform(np.log(5), np.log(200), n_providers)).astype(int)
    effect = rng.normal(0.0, tau, n_providers)
    prov = np.repeat(np.arange(n_providers), sizes)
    n = prov.shape[0]
    base = rng.normal(45, 12, n)
    age = rng.normal(50, 12, n)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    y = 4 + 0.25 * base - 0.05 * (age - 50) + effect[prov] + rng.normal(0, sigma, n)
    frame = pl.DataFrame(
        {"clinic_id": [f"C{p:02d}" for p in prov], "baseline": base, "age": age, "sex": sex, "improvement": y}
    )
    truth = pl.DataFrame({"provider": [f"C{p:02d}" for p in range(n_providers)], "truth": effect})
    return frame, truth


def test_oe_funnel_limits_and_bands() -> None:
    frame, _ = _simulated(1)
    res = compare_providers(frame, case_mix="improvement ~ baseline + age + sex")
    p = res.providers
    assert p["n"].sum() == frame.height == res.diagnostics["rows_used"]
    # OLS with an intercept: residuals sum to zero, so the volume-weighted O - E is zero, up to the rounding
    # of n-term sums: n eps sum|y| (1.5e-8 here; measured 4.5e-11)
    rounding = frame.height * EPS * float(frame["improvement"].abs().sum())
    assert float((p["n"] * p["o_minus_e"]).sum()) == pytest.approx(0.0, abs=rounding)
    np.testing.assert_allclose(p["o_minus_e"], p["observed"] - p["expected"], atol=1e-10)
    np.testing.assert_allclose(p["limit95"], stats.norm.ppf(0.975) * res.residual_sd / np.sqrt(p["n"]))
    np.testing.assert_allclose(p["limit998"], stats.norm.ppf(0.999) * res.residual_sd / np.sqrt(p["n"]))
    # the funnel's limits at any volume: +- z s / sqrt(n), z = 1.959964 (95 %) and 3.090232 (99.8 %)
    lim = res.funnel_limits([4.0, 25.0])
    assert lim.columns == ["n", "lo95", "hi95", "lo998", "hi998"]
    # z typed with 6 decimals: compare z itself at that printed precision (rtol 1e-7 on the limits passed by
    # 1 %: 3.090232 is 9.9e-8 relative off norm.ppf(0.999))
    z = lim.select(pl.col("hi95", "hi998") * pl.col("n").sqrt() / res.residual_sd)
    np.testing.assert_allclose(z["hi95"], 1.959964, rtol=0, atol=printed(6))
    np.testing.assert_allclose(z["hi998"], 3.090232, rtol=0, atol=printed(6))
    np.testing.assert_allclose(lim["lo95"], -lim["hi95"])
    np.testing.assert_allclose(lim["lo998"], -lim["hi998"])
    at_units = res.funnel_limits(p["n"].cast(pl.Float64).to_list())
    np.testing.assert_allclose(at_units["hi95"], p["limit95"])
    np.testing.assert_allclose(at_units["hi998"], p["limit998"])
    above = p.filter(pl.col("o_minus_e") > pl.col("limit998"))
    assert (above["band"] == "above 99.8%").all()
    inside = p.filter(pl.col("o_minus_e").abs() <= pl.col("limit95"))
    assert (inside["band"] == "within 95%").all()
    assert res.case_mix["term"].to_list() == ["(Intercept)", "baseline", "age", "sexM"]
    assert res.case_mix.filter(pl.col("term") == "baseline")["estimate"][0] == pytest.approx(0.25, abs=0.03)
    assert sorted(p["rank_shrunken"].to_list()) == list(range(1, p.height + 1))


def test_shrinkage_recovers_provider_effects_better_than_raw() -> None:
    mse_raw, mse_shrunk = [], []
    for seed in range(3):  # a few replicate registries
        frame, truth = _simulated(10 + seed)
        res = compare_providers(frame, case_mix="improvement ~ baseline + age + sex")
        j = res.providers.join(truth, on="provider")
        centred = j["truth"] - j["truth"].mean()
        mse_raw.append(float(((j["o_minus_e"] - centred) ** 2).mean()))
        mse_shrunk.append(float(((j["shrunken"] - centred) ** 2).mean()))
        assert np.corrcoef(j["shrunken"], j["truth"])[0, 1] > 0.6
        assert res.between_sd == pytest.approx(2.0, rel=0.5)
        # small providers are pulled towards zero more than large ones
        small = j.filter(pl.col("n") < 15)
        assert (small["shrunken"].abs() < small["o_minus_e"].abs() + 1e-9).all()
        assert (j["shrunken_sd"] < j["se"]).all()
    assert np.mean(mse_shrunk) < 0.7 * np.mean(mse_raw)


def test_synthetic_cohort_clinics_and_therapists() -> None:
    cohort = generate_cohort(n_patients=2500, n_clinics=12, seed=9)
    frame = episode_outcomes(cohort.tables, "odi", "w12")
    both = compare_clinics_and_therapists(frame)
    assert set(both) == {"clinic_id", "therapist_id"}
    clinics = both["clinic_id"]
    assert clinics.diagnostics["case_mix"] == DEFAULT_CASE_MIX
    assert clinics.providers["n"].sum() == clinics.diagnostics["rows_used"] == frame.height
    assert clinics.diagnostics["shrinkage_converged"]
    out = clinics.to_dict()
    assert len(out["providers"]) == clinics.providers.height
    ax = clinics.funnel()
    assert ax.get_xlabel() == "episodes"


def test_refusals() -> None:
    cohort = generate_cohort(n_patients=300, seed=2)
    walk = episode_outcomes(cohort.tables, "walk_tolerance_min", "w12")
    assert walk["censored"].any()
    with pytest.raises(ModelSpecificationError, match="censored"):
        compare_providers(walk)
    frame, _ = _simulated(2)
    with pytest.raises(UnusableInputError, match="not in the data"):
        compare_providers(frame, level="therapist_id")
    with pytest.raises(UnusableInputError, match="needs columns"):
        compare_providers(frame, case_mix="improvement ~ baseline + duration")
    with pytest.raises(UnusableInputError, match="no odi assessment"):
        episode_outcomes(cohort.tables, "odi", "w99")
