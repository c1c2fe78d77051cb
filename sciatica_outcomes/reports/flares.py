"""'Are flare-ups becoming less frequent?': the flare rate over the program weeks, from a GLMM.

The question a clinical lead asks of the safety section. The data are the flare panel of the derive stage
(:func:`~sciatica_outcomes.derive.flare_panel`: per episode and program week, the completed sessions at
risk of a detectable flare and the flares among them) for every program session dated up to the end of the
quarter, and the model is a Poisson GLMM with the sessions at risk as exposure and a random intercept per
episode, by adaptive Gauss-Hermite quadrature (9 nodes; flares are rare, where the Laplace approximation
overstates the between-episode SD)::

    flares ~ program_week + (1 | episode_id) + offset(log(at_risk))

With episodes from at least :data:`~sciatica_outcomes.models.glmm.MIN_CLINICS_RANDOM` (5) clinics the
episodes are nested in clinics, ``flares ~ program_week + (1 | clinic_id) + (1 | episode_id)``, by the
Laplace approximation (quadrature is not defined for two grouping factors, as in glmer), provided the
Laplace approximation is adequate for the data (on the episodes-only model its episode SD agrees with the
quadrature one within 10% + 0.05; with flares as rare as the synthetic cohort's it does not: 1.30 against
0.00). Otherwise, or when the nested fit fails or does not converge, the episodes-only model answers
(:func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics`).

The rate ratio per 4 program weeks ``exp(4 beta_week)`` with its Wald interval answers the question; the
fitted rate per 100 sessions averaged over episodes (``exp(eta + s^2 / 2)``, comparable with the pooled
observed rates) is the curve. The model is fitted
only with at least ``min_flares`` flares (20) in at least ``ClinicalConfig.min_episodes_followed`` episodes;
otherwise the answer says it is not yet estimable, and without session data that it is not recorded. Counts
in the answer go through the audience's suppression rule; the weekly observed rates are shown only where
neither the flares nor the other sessions of that week are withheld under the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import flare_panel, session_pain
from sciatica_outcomes.models.glmm import fit_patients_in_clinics
from sciatica_outcomes.reports.privacy import SUPPRESSED, SuppressionRule, rule_for

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "FLARE_FORMULA",
    "FLARE_FORMULA_CLINICS",
    "FlareTrend",
    "flare_rates_by_group",
    "flare_trend",
    "plot_flare_trend",
]

#: the model of the flare rate over program weeks (offset ``log(at_risk)``)
FLARE_FORMULA = "flares ~ program_week + (1 | episode_id)"
#: the same with episodes nested in clinics (enough clinics)
FLARE_FORMULA_CLINICS = "flares ~ program_week + (1 | clinic_id) + (1 | episode_id)"
#: fewest flares for which the trend is modelled
MIN_FLARES = 20
#: the rate ratio is reported per this many program weeks
PER_WEEKS = 4


@dataclass(frozen=True)
class FlareTrend:
    """The answer to 'are flare-ups becoming less frequent?', as data and as a sentence.

    Attributes
    ----------
    status : {"estimated", "not_yet_estimable", "not_recorded"}
        Whether the model was fitted, the data were too few, or no session data were ingested.
    sentence : str
        The answer in words, with its numbers (counts under the audience rule).
    rate_ratio, ci_low, ci_high, p : float or None
        Rate ratio per :data:`PER_WEEKS` program weeks with its 95% Wald interval and p-value.
    curve : polars.DataFrame
        ``program_week, rate_per_100, ci_low, ci_high`` (model, averaged over episodes) and
        ``observed_per_100`` (null where withheld).
    n_episodes, n_flares, n_at_risk : int
        Episodes, flares and sessions at risk in the model (shown through the rule).
    formula, approximation : str
        The model, for the methods section.
    converged : bool
    """

    status: Literal["estimated", "not_yet_estimable", "not_recorded"]
    sentence: str
    rate_ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None
    curve: pl.DataFrame
    n_episodes: int
    n_flares: int
    n_at_risk: int
    formula: str = FLARE_FORMULA
    approximation: str = "adaptive Gauss-Hermite (nAGQ = 9)"
    converged: bool = True


def _empty_curve() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "program_week": pl.Int64,
            "rate_per_100": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
            "observed_per_100": pl.Float64,
        }
    )


def _count(n: int, rule: SuppressionRule) -> str:
    return "a withheld number of" if rule.is_small(n) else f"{n:,}"


def _cell(n: int, rule: SuppressionRule) -> str:
    return SUPPRESSED if rule.is_small(n) else f"{n:,}"


def flare_trend(
    sessions: pl.DataFrame | None,
    session_exercises: pl.DataFrame | None,
    episodes: pl.DataFrame,
    end: date,
    config: ClinicalConfig | None = None,
    rule: SuppressionRule | None = None,
) -> FlareTrend:
    """Model the flare rate over the program weeks of every program session up to ``end``.

    Parameters
    ----------
    sessions, session_exercises : polars.DataFrame or None
        Canonical tables (``None`` or empty: not recorded).
    episodes : polars.DataFrame
        Canonical episodes of the report's clinic(s).
    end : datetime.date
        Last day of the quarter: sessions after it are ignored.
    config : ClinicalConfig, optional
        ``program_weeks``, ``flare_rise_points``, ``min_episodes_followed``.
    rule : SuppressionRule, optional
        The audience's rule for the counts (default: the network rule).

    Returns
    -------
    FlareTrend
    """
    config = config or ClinicalConfig()
    rule = rule or rule_for("network")
    if sessions is None or sessions.height == 0:
        return FlareTrend(
            "not_recorded",
            "Whether flare-ups are becoming less frequent is not recorded: no session data were ingested.",
            None, None, None, None, _empty_curve(), 0, 0, 0,
        )  # fmt: skip
    s = sessions.filter(pl.col("session_date") <= end).join(episodes.select("episode_id"), on="episode_id")
    ex = None
    if session_exercises is not None and "pain_during" in session_exercises.columns:
        ex = session_exercises.join(s.select("session_id"), on="session_id")
    panel = flare_panel(session_pain(s, ex, config), episodes, config).filter(pl.col("at_risk") > 0)
    n_eps = panel["episode_id"].n_unique()
    n_flares = int(panel["flares"].sum())
    n_risk = int(panel["at_risk"].sum())
    counts = (
        f"{_count(n_flares, rule)} flare-ups in {_count(n_risk, rule)} sessions of "
        f"{_count(n_eps, rule)} episodes"
    )
    if n_flares < MIN_FLARES or n_eps < config.min_episodes_followed:
        return FlareTrend(
            "not_yet_estimable",
            "Whether flare-ups are becoming less frequent is not yet estimable: "
            f"{counts} up to the end of the quarter (the trend is modelled once there are at least "
            f"{MIN_FLARES} flare-ups in at least {config.min_episodes_followed} episodes).",
            None, None, None, None, _empty_curve(), n_eps, n_flares, n_risk,
        )  # fmt: skip
    data = panel.with_columns(pl.col("at_risk").cast(pl.Float64).log().alias("log_at_risk"))
    model, _ = fit_patients_in_clinics(
        "flares ~ program_week", "(1 | episode_id)", data, family="poisson", offset="log_at_risk"
    )
    row = model.summary.filter(pl.col("term") == "program_week").row(0, named=True)
    rr, lo, hi = (math.exp(PER_WEEKS * row[k]) for k in ("estimate", "ci_low", "ci_high"))
    weeks = list(range(config.program_weeks))
    em = model.emmeans("program_week", at={"program_week": weeks}).means
    observed = (
        panel.group_by("program_week")
        .agg(pl.col("flares").sum(), pl.col("at_risk").sum())
        .with_columns(
            pl.when(
                ~pl.col("flares").is_between(rule.low, rule.high)
                & ~(pl.col("at_risk") - pl.col("flares")).is_between(rule.low, rule.high)
                & ~pl.col("at_risk").is_between(rule.low, rule.high)
            )
            .then(100.0 * pl.col("flares") / pl.col("at_risk"))
            .alias("observed_per_100")
        )
        .select(pl.col("program_week").cast(pl.Int64), "observed_per_100")
    )
    # the average over patients of exp(eta + b), b ~ N(0, s^2), is exp(eta + s^2 / 2): the rate comparable
    # with the pooled observed rates (the rate at b = 0, a median patient's, is lower); the interval is that
    # of eta with s^2 at its estimate. With a random intercept only the rate ratio is the same on both scales.
    # Nested in clinics, s^2 is the sum of the episode and clinic intercept variances.
    half_var = 0.5 * float(model.variance_components["variance"].sum())
    curve = (
        pl.DataFrame(
            {
                "program_week": np.array(weeks, dtype=np.int64),
                "rate_per_100": 100.0 * np.exp(em["emmean"].to_numpy() + half_var),
                "ci_low": 100.0 * np.exp(em["ci_low"].to_numpy() + half_var),
                "ci_high": 100.0 * np.exp(em["ci_high"].to_numpy() + half_var),
            }
        )
        .join(observed, on="program_week", how="left")
        .sort("program_week")
    )
    change = (1.0 - rr) * 100.0
    interval = f"95% CI {(1.0 - hi) * 100.0:.0f}% to {(1.0 - lo) * 100.0:.0f}%"
    first, last = curve["rate_per_100"][0], curve["rate_per_100"][-1]
    if hi < 1.0:
        verdict = (
            f"Yes: flare-ups became less frequent over the program weeks, by {change:.0f}% every "
            f"{PER_WEEKS} weeks ({interval} fewer)"
        )
    elif lo > 1.0:
        verdict = (
            f"No: flare-ups became more frequent over the program weeks, by {-change:.0f}% every "
            f"{PER_WEEKS} weeks (95% CI {(lo - 1.0) * 100.0:.0f}% to {(hi - 1.0) * 100.0:.0f}% more)"
        )
    else:
        verdict = (
            "Not detectably: the flare-up rate did not change clearly over the program weeks (rate ratio "
            f"per {PER_WEEKS} weeks {rr:.2f}, 95% CI {lo:.2f} to {hi:.2f})"
        )
    sentence = (
        f"{verdict}; the average rate went from {first:.1f} to {last:.1f} per 100 sessions between "
        f"program weeks 0 and {weeks[-1]}. Model: {counts} up to the end of the quarter."
    )
    return FlareTrend(
        "estimated", sentence, rr, lo, hi, float(row["p"]), curve, n_eps, n_flares, n_risk,
        formula=model.formula, approximation=model.result_.method, converged=model.result_.converged,
    )  # fmt: skip


def plot_flare_trend(trend: FlareTrend, ax: Axes | None = None) -> Axes:
    """The modelled flare rate per 100 sessions over program weeks (95% CI band), with the observed rates.

    Parameters
    ----------
    trend : FlareTrend
        An estimated trend (:func:`flare_trend` with ``status == "estimated"``).
    ax : matplotlib.axes.Axes, optional
        Axes to draw on (a new figure if None).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting only when drawn

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    c = trend.curve
    weeks = c["program_week"].to_numpy()
    ax.fill_between(weeks, c["ci_low"].to_numpy(), c["ci_high"].to_numpy(), alpha=0.25, color="#1f77b4", lw=0)
    ax.plot(
        weeks,
        c["rate_per_100"].to_numpy(),
        color="#1f77b4",
        lw=2,
        label="model (average over patients, 95% CI)",
    )
    obs = c.filter(pl.col("observed_per_100").is_not_null())
    if obs.height:
        ax.plot(
            obs["program_week"].to_numpy(),
            obs["observed_per_100"].to_numpy(),
            "o",
            color="#444444",
            ms=4,
            label="observed (all patients pooled)",
        )
    ax.set_ylim(bottom=0)
    ax.set_xticks(weeks)
    ax.set_xlabel("program week")
    ax.set_ylabel("flare-ups per 100 sessions")
    ax.legend(frameon=False, fontsize="small")
    return ax


def flare_rates_by_group(
    sessions: pl.DataFrame | None,
    session_exercises: pl.DataFrame | None,
    episodes: pl.DataFrame,
    groups: pl.DataFrame,
    group: str,
    end: date,
    config: ClinicalConfig | None = None,
    rule: SuppressionRule | None = None,
) -> tuple[pl.DataFrame, bool | None]:
    """The change of the flare rate over the program weeks by group (e.g. adherence group), from one GLMM.

    Parameters
    ----------
    sessions, session_exercises, episodes : polars.DataFrame
        Canonical tables (sessions ``None`` or empty: an empty result).
    groups : polars.DataFrame
        ``episode_id`` and the ``group`` column (episodes without a group are left out).
    group : str
        Name of the grouping column.
    end : datetime.date
        Sessions after it are ignored.
    config : ClinicalConfig, optional
    rule : SuppressionRule, optional
        The audience's rule: a group whose episodes or flares are withheld under it gets no estimate.

    Returns
    -------
    table : polars.DataFrame
        One row per group level: ``group, episodes, flares`` (shown through the rule, as text),
        ``rate_ratio_per_4_weeks, ci_low, ci_high, p`` (null where not estimable), then a row ``"ratio (level
        / reference)"`` with the ratio of the two groups' rate ratios and its p-value.
    converged : bool or None
        Whether the GLMM converged (None: not fitted).

    Notes
    -----
    ``flares ~ program_week * group + (1 | episode_id)`` with offset ``log(at_risk)``, Poisson, adaptive
    Gauss-Hermite (9 nodes), or with ``(1 | clinic_id)`` added (Laplace) for episodes of at least 5 clinics
    where Laplace is adequate (:func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics`); the rate
    ratio per 4 weeks of level ``g`` is ``exp(4 (b_week + b_week:g))``, a Wald contrast of the fit.
    """
    config = config or ClinicalConfig()
    rule = rule or rule_for("network")
    columns = ["group", "episodes", "flares", "rate_ratio_per_4_weeks", "ci_low", "ci_high", "p"]
    empty = pl.DataFrame(
        schema={c: (pl.String if c in ("group", "episodes", "flares") else pl.Float64) for c in columns}
    )
    if sessions is None or sessions.height == 0:
        return empty, None
    s = sessions.filter(pl.col("session_date") <= end)
    ex = None
    if session_exercises is not None and "pain_during" in session_exercises.columns:
        ex = session_exercises.join(s.select("session_id"), on="session_id")
    panel = (
        flare_panel(session_pain(s, ex, config), episodes, config)
        .filter(pl.col("at_risk") > 0)
        .join(groups.select("episode_id", pl.col(group).cast(pl.String)).drop_nulls(), on="episode_id")
        .with_columns(pl.col("at_risk").cast(pl.Float64).log().alias("log_at_risk"))
    )
    levels = sorted(panel[group].unique().to_list())
    per = panel.group_by(group).agg(pl.col("episode_id").n_unique().alias("n_ep"), pl.col("flares").sum())
    counts = {r[group]: (int(r["n_ep"]), int(r["flares"])) for r in per.iter_rows(named=True)}
    estimable = len(levels) >= 2 and all(
        counts[g][1] >= MIN_FLARES
        and counts[g][0] >= config.min_episodes_followed
        and not rule.is_small(counts[g][0])
        for g in levels
    )
    rows: list[dict[str, object]] = []
    if not estimable:
        for g in levels:
            n_ep, n_fl = counts[g]
            rows.append(
                {"group": g, "episodes": _cell(n_ep, rule), "flares": _cell(n_fl, rule)}
                | {c: None for c in columns[3:]}
            )
        return pl.DataFrame(rows, schema=empty.schema), None
    model, _ = fit_patients_in_clinics(
        f"flares ~ program_week * {group}",
        "(1 | episode_id)",
        panel,
        family="poisson",
        offset="log_at_risk",
        reference={group: levels[0]},
    )
    names = list(model.design_.column_names)
    week = names.index("program_week")
    for g in levels:
        contrast = np.zeros(len(names))
        contrast[week] = PER_WEEKS
        if g != levels[0]:
            contrast[names.index(f"program_week:{group}{g}")] = PER_WEEKS
        est = model.inference_.contrast(contrast[None, :]).row(0, named=True)
        n_ep, n_fl = counts[g]
        rows.append(
            {
                "group": g,
                "episodes": _cell(n_ep, rule),
                "flares": _cell(n_fl, rule),
                "rate_ratio_per_4_weeks": math.exp(est["estimate"]),
                "ci_low": math.exp(est["ci_low"]),
                "ci_high": math.exp(est["ci_high"]),
                "p": est["p"],
            }
        )
    for g in levels[1:]:
        contrast = np.zeros(len(names))
        contrast[names.index(f"program_week:{group}{g}")] = PER_WEEKS
        est = model.inference_.contrast(contrast[None, :]).row(0, named=True)
        rows.append(
            {
                "group": f"ratio ({g} / {levels[0]})",
                "episodes": "",
                "flares": "",
                "rate_ratio_per_4_weeks": math.exp(est["estimate"]),
                "ci_low": math.exp(est["ci_low"]),
                "ci_high": math.exp(est["ci_high"]),
                "p": est["p"],
            }
        )
    return pl.DataFrame(rows, schema=empty.schema), model.result_.converged
