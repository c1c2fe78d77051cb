"""Time to clinically important improvement, and capped tolerance tests, as right-censored data.

- :func:`time_to_improvement`: per episode, the week of the first follow-up visit at which the responder
  threshold (MCID or relative) is met (an event), or the week of the last follow-up assessment (censored).
- :func:`tolerance_times`: walking or sitting tolerance tests as survival data in minutes: a test stopped by
  symptoms or fatigue is an event at that minute, a test stopped at its cap is right-censored at the cap
  (the true tolerance is longer; domain.md §2, Rainville et al. 2012).
- :func:`kaplan_meier`: Kaplan-Meier curves (statsmodels ``SurvfuncRight``), median with confidence interval,
  and a log-rank test across groups (statsmodels ``survdiff``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.duration.survfunc import SurvfuncRight, survdiff

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.scoring import BASELINE_LABEL

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["KaplanMeierResult", "kaplan_meier", "time_to_improvement", "tolerance_times"]


def _need(frame: pl.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"{what} needs columns {list(cols)}; missing {missing} (see models.responders.responder_frame)"
        )


def time_to_improvement(
    frame: pl.DataFrame, definition: str = "mcid", by: str | Sequence[str] | None = None
) -> pl.DataFrame:
    """First follow-up visit at which the improvement threshold is met, or censoring at the last one.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`~sciatica_outcomes.models.responders.responder_frame` for one measure (needs
        ``episode_id, visit, week`` and ``responder_mcid`` / ``responder_relative``).
    definition : {"mcid", "relative"}
        Responder definition.
    by : str or sequence of str, optional
        Episode-level columns to keep (e.g. ``"clinic_id"``) for grouped curves.

    Returns
    -------
    polars.DataFrame
        One row per episode with at least one follow-up assessment: ``episode_id, [by], time_weeks, event``
        (``event`` 1 = threshold met at ``time_weeks``; 0 = censored at the last follow-up assessment),
        ``n_undetermined`` (follow-up calls that could not be made, counted as not met) and the frame
        count of episodes without any follow-up assessment in ``excluded_no_follow_up`` (same value on
        every row), so nothing is dropped silently.

    Notes
    -----
    ``T_i = min{week_iv : responder_iv}``; otherwise ``C_i = max{week_iv}`` over follow-up visits ``v``.
    A capped tolerance test whose lower bound does not reach the threshold is undetermined and does not
    count as an event (conservative); a capped test whose bound already meets it is an event.
    """
    col = {"mcid": "responder_mcid", "relative": "responder_relative"}.get(definition)
    if col is None:
        raise UnusableInputError(f"definition must be 'mcid' or 'relative', got {definition!r}")
    by_l = [] if by is None else [by] if isinstance(by, str) else list(by)
    _need(frame, ["episode_id", "visit", "week", col, *by_l], "time_to_improvement")
    all_eps = frame["episode_id"].n_unique()
    follow = frame.filter((pl.col("visit") != BASELINE_LABEL) & pl.col("visit").is_not_null())
    out = (
        follow.group_by("episode_id")
        .agg(
            *[pl.col(b).first() for b in by_l],
            pl.col("week").filter(pl.col(col).fill_null(False)).min().alias("_event_week"),
            pl.col("week").max().alias("_last_week"),
            pl.col(col).is_null().sum().cast(pl.Int64).alias("n_undetermined"),
        )
        .with_columns(
            pl.coalesce("_event_week", "_last_week").alias("time_weeks"),
            pl.col("_event_week").is_not_null().cast(pl.Int64).alias("event"),
        )
        .drop("_event_week", "_last_week")
        .sort("episode_id")
    )
    return out.with_columns(pl.lit(all_eps - out.height).alias("excluded_no_follow_up"))


def tolerance_times(
    frame: pl.DataFrame, censor_reasons: Sequence[str] = ("cap",), by: str | Sequence[str] = "visit"
) -> pl.DataFrame:
    """Tolerance tests (minutes) as right-censored observations.

    Parameters
    ----------
    frame : polars.DataFrame
        Rows of one tolerance measure with ``value`` (minutes) and ``stopped_reason``.
    censor_reasons : sequence of str
        ``stopped_reason`` values that mark a censored test (``ClinicalConfig.censor_reasons``).
    by : str or sequence of str
        Columns kept for grouping (default the visit).

    Returns
    -------
    polars.DataFrame
        ``[by], time, event``: ``event = 0`` for a test stopped at its cap (the tolerance exceeds ``time``).
    """
    by_l = [by] if isinstance(by, str) else list(by)
    _need(frame, ["value", "stopped_reason", *by_l], "tolerance_times")
    return frame.filter(pl.col("value").is_not_null()).select(
        *by_l,
        pl.col("value").cast(pl.Float64).alias("time"),
        (~pl.col("stopped_reason").is_in(list(censor_reasons)).fill_null(False))
        .cast(pl.Int64)
        .alias("event"),
    )


@dataclass(frozen=True)
class KaplanMeierResult:
    """Kaplan-Meier curves, medians and the log-rank test.

    Attributes
    ----------
    curves : polars.DataFrame
        ``group, time, n_at_risk, n_events, survival, se, ci_low, ci_high`` at each event time.
    medians : polars.DataFrame
        ``group, n, n_events, median, ci_low, ci_high`` (null where the curve does not reach 0.5 or the
        interval is open).
    logrank : dict or None
        ``statistic, df, p`` of the log-rank test across groups (None for one group).
    """

    curves: pl.DataFrame
    medians: pl.DataFrame
    logrank: dict[str, float] | None

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {"medians": self.medians.to_dicts(), "logrank": self.logrank, "curves": self.curves.to_dicts()}

    def plot(self, ax: Axes | None = None, cumulative: bool = False) -> Axes:
        """Step plot of the curves (``1 - S`` when ``cumulative``); returns the axes."""
        import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        for (g,), sub in self.curves.group_by("group", maintain_order=True):
            t = np.r_[0.0, sub["time"].to_numpy()]
            s = np.r_[1.0, sub["survival"].to_numpy()]
            ax.step(t, 1 - s if cumulative else s, where="post", label=str(g))
        ax.set_ylim(0, 1)
        ax.set_ylabel("cumulative share" if cumulative else "survival")
        ax.legend()
        return ax


def kaplan_meier(
    data: pl.DataFrame,
    time: str = "time_weeks",
    event: str = "event",
    group: str | None = None,
    level: float = 0.95,
) -> KaplanMeierResult:
    """Kaplan-Meier estimate per group with median and log-rank test.

    Parameters
    ----------
    data : polars.DataFrame
        One row per subject (or test) with a time and an event indicator (1 event, 0 right-censored).
    time, event : str
        Column names.
    group : str, optional
        Grouping column; curves per level and a log-rank test across levels.
    level : float
        Confidence level (pointwise log-log intervals of ``S(t)``; Brookmeyer-Crowley interval of the
        median, as statsmodels computes them).

    Returns
    -------
    KaplanMeierResult

    Notes
    -----
    ``S(t) = prod_{t_j <= t} (1 - d_j / n_j)``; Greenwood ``Var S = S^2 sum d_j / (n_j (n_j - d_j))``;
    log-rank ``sum_j (O_j - E_j)`` standardised by its hypergeometric variance, chi-square on ``k - 1`` df.
    Validated against: ``survival::survfit(Surv(time, event) ~ group, conf.type = "log-log")`` and
    ``survival::survdiff(Surv(time, event) ~ group)`` (R survival 3.5-3), values in
    ``tests/models/test_survival.py``.
    """
    _need(data, [time, event] + ([group] if group else []), "kaplan_meier")
    clean = data.filter(pl.col(time).is_not_null() & pl.col(event).is_not_null())
    if clean.height == 0:
        raise UnusableInputError("kaplan_meier: no row has both a time and an event indicator")
    bad = clean.filter(pl.col(time) < 0).height
    if bad:
        raise UnusableInputError(f"kaplan_meier: {bad} rows have a negative time")
    groups = ["all"] if group is None else sorted(clean[group].drop_nulls().unique().to_list(), key=str)
    alpha = 1.0 - level
    curves, medians = [], []
    for g in groups:  # loop over groups
        sub = clean if group is None else clean.filter(pl.col(group) == g)
        t = sub[time].cast(pl.Float64).to_numpy()
        e = sub[event].cast(pl.Int64).to_numpy()
        sf = SurvfuncRight(t, e)
        if sf.surv_times.shape[0]:
            low, high = _pointwise_ci(sf, alpha)
        else:
            low = high = np.empty(0)
        curves.append(
            pl.DataFrame(
                {
                    "group": [str(g)] * sf.surv_times.shape[0],
                    "time": sf.surv_times,
                    "n_at_risk": sf.n_risk.astype(np.int64),
                    "n_events": sf.n_events.astype(np.int64),
                    "survival": sf.surv_prob,
                    "se": sf.surv_prob_se,
                    "ci_low": low,
                    "ci_high": high,
                },
                schema_overrides={"time": pl.Float64, "survival": pl.Float64, "se": pl.Float64},
            )
        )
        med = float(sf.quantile(0.5)) if np.any(sf.surv_prob <= 0.5) else float("nan")
        try:  # the cloglog transform is undefined where S is 0 or 1: that limit is NaN (null), not a warning
            with np.errstate(divide="ignore", invalid="ignore"):
                lo_m, hi_m = sf.quantile_ci(0.5, alpha=alpha, method="cloglog")
        except (ValueError, IndexError):
            lo_m, hi_m = float("nan"), float("nan")
        medians.append((str(g), int(t.shape[0]), int(e.sum()), med, float(lo_m), float(hi_m)))
    med_frame = pl.DataFrame(
        medians, schema=["group", "n", "n_events", "median", "ci_low", "ci_high"], orient="row"
    ).with_columns(pl.col("median", "ci_low", "ci_high").fill_nan(None))
    logrank = None
    if group is not None and len(groups) > 1:
        stat, p = survdiff(
            clean[time].cast(pl.Float64).to_numpy(),
            clean[event].cast(pl.Int64).to_numpy(),
            clean[group].cast(pl.String).to_numpy(),
        )
        logrank = {"statistic": float(stat), "df": float(len(groups) - 1), "p": float(p)}
    return KaplanMeierResult(pl.concat(curves), med_frame, logrank)


def _pointwise_ci(sf: SurvfuncRight, alpha: float) -> tuple[FloatArray, FloatArray]:
    """Pointwise log-log (cloglog) interval of S(t), as ``survfit(conf.type = "log-log")``."""
    s = sf.surv_prob
    se = sf.surv_prob_se
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(s)
        se_ll = se / (s * np.abs(log_s))
        low = np.exp(-np.exp(np.log(-log_s) + z * se_ll))
        high = np.exp(-np.exp(np.log(-log_s) - z * se_ll))
    ok = (s > 0) & (s < 1)
    return np.where(ok, low, np.nan), np.where(ok, high, np.nan)
