"""The t, F and chi-squared tails of ``models._dist`` equal ``scipy.stats`` (same special functions)."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose
from scipy import stats

from sciatica_outcomes.models._dist import chi2_sf, f_sf, t_ppf, t_sf

DF = np.array([0.7, 1.0, 2.5, 7.0, 30.0, 1e3, 1e7, np.inf])


def test_t_tail_and_quantile() -> None:
    x = np.linspace(-8, 8, 33)[:, None]
    assert_allclose(t_sf(x, DF), stats.t.sf(x, DF), rtol=1e-12, atol=0)
    q = np.array([1e-6, 0.025, 0.5, 0.9, 0.975, 1 - 1e-6])[:, None]
    assert_allclose(t_ppf(q, DF), stats.t.ppf(q, DF), rtol=1e-12, atol=1e-300)


def test_f_and_chi2_tails() -> None:
    x = np.linspace(0.01, 40, 25)[:, None]
    for dfn in (1.0, 2.0, 4.5):
        assert_allclose(f_sf(x, dfn, DF[:-1]), stats.f.sf(x, dfn, DF[:-1]), rtol=1e-12, atol=0)
    assert_allclose(chi2_sf(x, DF[:-2]), stats.chi2.sf(x, DF[:-2]), rtol=1e-12, atol=0)
