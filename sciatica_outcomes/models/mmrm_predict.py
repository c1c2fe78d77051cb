"""Predictions of an MMRM: marginal (``x' beta``) and conditional on a subject's observed visits.

For subject ``i`` with observed rows ``o`` (response and covariates present) and rows ``m`` to predict
(response missing), with ``R = W^{-1/2} Sigma W^{-1/2}`` the residual covariance of its rows (``W`` the
observation weights, the identity without weights) and ``S = R_mo R_oo^{-1}``:

.. math::

    \\hat y_m = X_m \\hat\\beta + S (y_o - X_o \\hat\\beta) = Z \\hat\\beta + S y_o, \\qquad Z = X_m - S X_o,

    \\operatorname{Var}(\\hat y_m - E[y_m | y_o]) = Z V Z', \\qquad
    \\operatorname{Var}(y_m - \\hat y_m) = Z V Z' + R_{mm} - S R_{om},

``V`` the covariance of ``beta`` the fit reports (model-based, Kenward-Roger adjusted or empirical), as
mmrm's ``src/predict.cpp`` and SAS PROC MIXED's ``OUTP=`` compute them. A subject without observed rows gets
``X_m beta`` with ``R_mm``. Rows with a response get the marginal ``x' beta`` and its standard error (as SAS's
``OUTP=``; mmrm returns the observed value itself).

Batched by the pair (observed visits, predicted visits): loops run over those patterns only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models._dist import t_ppf
from sciatica_outcomes.models.sandwich import observation_weights

if TYPE_CHECKING:
    from sciatica_outcomes.models.mmrm import MMRMResult

__all__ = ["predict_mmrm"]


def _codes(result: MMRMResult, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Subject codes ``0..n-1`` and visit positions of the rows; refuses unknown visits and duplicates."""
    for col in (result.subject, result.visit):
        if col not in frame.columns:
            raise ModelSpecificationError(
                f"column {col!r} is not in the data; predictions need the subject and visit of each row"
            )
    if frame[result.subject].null_count() or frame[result.visit].null_count():
        raise ModelSpecificationError(
            f"rows without {result.subject!r} or {result.visit!r} cannot be predicted; drop them first"
        )
    vis = frame[result.visit]
    if vis.dtype.is_numeric():
        text = vis.cast(pl.Float64).cast(pl.Int64).cast(pl.String)
    else:
        text = vis.cast(pl.String)
    unknown = sorted(set(text.to_list()) - set(result.visits))
    if unknown:
        raise ModelSpecificationError(
            f"visits {unknown} were not fitted (fitted: {result.visits}); predict only fitted visits"
        )
    visit = text.replace_strict(result.visits, list(range(len(result.visits))), return_dtype=pl.Int64)
    subject = np.unique(frame[result.subject].cast(pl.String).to_numpy(), return_inverse=True)[1]
    pairs = pl.DataFrame({"s": subject, "v": visit.to_numpy()})
    if pairs.is_duplicated().any():
        raise ModelSpecificationError(
            f"some ({result.subject}, {result.visit}) pairs occur twice; give each subject a visit once"
        )
    return subject.astype(np.int64), visit.to_numpy().astype(np.int64)


def predict_mmrm(
    result: MMRMResult, frame: pl.DataFrame, conditional: bool = True, level: float | None = None
) -> pl.DataFrame:
    """Predictions of ``frame``'s rows (:meth:`MMRMResult.predict`; formulas in the module docstring).

    Returns
    -------
    polars.DataFrame
        ``frame`` with ``fit, se, se_prediction, df, ci_low, ci_high, pi_low, pi_high`` and ``conditional``
        (whether the row's prediction used the subject's observed rows). ``se`` is the standard error of the
        estimated (conditional) mean, ``se_prediction`` adds the residual (conditional) variance; intervals
        use ``t`` quantiles with the df of the fit's method for ``Z``'s rows.
    """
    level = result.level if level is None else level
    if not 0 < level < 1:
        raise ModelSpecificationError(f"level must lie in (0, 1), got {level}")
    subject, visit = _codes(result, frame)
    n = frame.height
    x = result.design_matrix(frame)
    x_ok = np.isfinite(x).all(axis=1)
    design = result._view.design_
    try:
        y = design.response(frame)
    except ModelSpecificationError:  # no response column: every row is predicted
        y = np.full(n, np.nan)
    observed = np.isfinite(y) & x_ok & conditional
    if result.weights is not None:
        if result.weights not in frame.columns:
            raise ModelSpecificationError(
                f"the model is weighted by {result.weights!r}; give that column for the rows to predict"
            )
        w = np.ones(n)
        w[x_ok] = observation_weights(frame.filter(pl.Series(x_ok)), result.weights)
    else:
        w = np.ones(n)
    beta = result.beta
    fit = np.where(x_ok, np.nan_to_num(x) @ beta, np.nan)
    zrows = np.nan_to_num(x).copy()  # the contrast rows Z (X for rows without conditioning)
    resid_var = np.full(n, np.nan)
    sigma = result.covariance
    cond = np.zeros(n, dtype=bool)
    predict_rows = ~observed & x_ok
    t = len(result.visits)
    n_sub = int(subject.max()) + 1 if n else 0
    obs_bits = np.bincount(subject, weights=np.where(observed, np.exp2(visit), 0.0), minlength=n_sub)
    mis_bits = np.bincount(subject, weights=np.where(predict_rows, np.exp2(visit), 0.0), minlength=n_sub)
    key = obs_bits.astype(np.int64) * (1 << t) + mis_bits.astype(np.int64)
    # rows in the order (pattern pair, subject, visit); only rows that are observed or predicted
    use = observed | predict_rows
    rows = np.flatnonzero(use)
    rows = rows[np.lexsort((visit[rows], subject[rows], key[subject[rows]]))]
    row_key = key[subject[rows]]
    pats, first = np.unique(row_key, return_index=True)
    bounds = [*first.tolist(), rows.shape[0]]
    for j, pat in enumerate(pats.tolist()):  # loop over (observed, predicted) visit patterns
        o_vis = np.flatnonzero((int(pat) >> t >> np.arange(t)) & 1)
        m_vis = np.flatnonzero((int(pat) >> np.arange(t)) & 1)
        if m_vis.shape[0] == 0:
            continue
        k = o_vis.shape[0] + m_vis.shape[0]
        blk = rows[bounds[j] : bounds[j + 1]].reshape(-1, k)  # (subjects, visits in visit order)
        is_obs = observed[blk[0]]
        r_o, r_m = blk[:, is_obs], blk[:, ~is_obs]
        sd_m = 1.0 / np.sqrt(w[r_m])
        s_mm = sigma[np.ix_(m_vis, m_vis)][None] * sd_m[:, :, None] * sd_m[:, None, :]
        if o_vis.shape[0] == 0:
            resid_var[r_m] = np.einsum("nii->ni", s_mm)
            continue
        sd_o = 1.0 / np.sqrt(w[r_o])
        s_oo = sigma[np.ix_(o_vis, o_vis)][None] * sd_o[:, :, None] * sd_o[:, None, :]
        s_om = sigma[np.ix_(o_vis, m_vis)][None] * sd_o[:, :, None] * sd_m[:, None, :]
        s_mat = np.linalg.solve(s_oo, s_om).transpose(0, 2, 1)  # S = R_mo R_oo^-1, (n, m_m, m_o)
        z = x[r_m] - np.einsum("nmo,nop->nmp", s_mat, x[r_o])
        zrows[r_m] = z
        fit[r_m] = z @ beta + np.einsum("nmo,no->nm", s_mat, y[r_o])
        resid_var[r_m] = np.einsum("nii->ni", s_mm - np.einsum("nmo,nok->nmk", s_mat, s_om))
        cond[r_m] = True
    var, df = result.inference.variance_and_df(zrows)
    var = np.where(x_ok, var, np.nan)
    df = np.where(x_ok, df, np.nan)
    se = np.sqrt(var)
    se_pred = np.where(predict_rows, np.sqrt(var + np.nan_to_num(resid_var)), se)
    q = t_ppf(0.5 + level / 2.0, df)
    return frame.with_columns(
        pl.Series("fit", fit),
        pl.Series("se", se),
        pl.Series("se_prediction", se_pred),
        pl.Series("df", df),
        pl.Series("ci_low", fit - q * se),
        pl.Series("ci_high", fit + q * se),
        pl.Series("pi_low", fit - q * se_pred),
        pl.Series("pi_high", fit + q * se_pred),
        pl.Series("conditional", cond),
    )
