"""Tail probabilities and quantiles of the t, F and chi-squared distributions from ``scipy.special``.

``scipy.stats`` costs about 0.8 s to import; the functions here are the special functions it evaluates
(``stdtr``, ``stdtrit``, ``fdtrc``, ``chdtrc``), so a fit from the command line does not pay for the rest.
``tests/models/test_dist.py`` checks them against ``scipy.stats`` on a grid (relative 1e-12).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = ["chi2_sf", "f_sf", "t_ppf", "t_sf"]

ArrayLike = npt.ArrayLike


def t_sf(x: ArrayLike, df: ArrayLike) -> npt.NDArray[np.float64]:
    """``P(T_df > x)``, as ``scipy.stats.t.sf(x, df)`` (``df = inf`` is the normal distribution)."""
    return np.asarray(special.stdtr(df, -np.asarray(x, dtype=float)), dtype=float)


def t_ppf(q: ArrayLike, df: ArrayLike) -> npt.NDArray[np.float64]:
    """The ``q`` quantile of ``T_df``, as ``scipy.stats.t.ppf(q, df)``."""
    return np.asarray(special.stdtrit(df, q), dtype=float)


def f_sf(x: ArrayLike, dfn: ArrayLike, dfd: ArrayLike) -> npt.NDArray[np.float64]:
    """``P(F_{dfn, dfd} > x)``, as ``scipy.stats.f.sf(x, dfn, dfd)``."""
    return np.asarray(special.fdtrc(dfn, dfd, x), dtype=float)


def chi2_sf(x: ArrayLike, df: ArrayLike) -> npt.NDArray[np.float64]:
    """``P(chi2_df > x)``, as ``scipy.stats.chi2.sf(x, df)``."""
    return np.asarray(special.chdtrc(df, x), dtype=float)
