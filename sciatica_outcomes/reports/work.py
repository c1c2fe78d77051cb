"""The quarterly report's "Work" section: work status, return to work, work ability and sick leave.

Population (one for the whole section, printed with it): the episodes active in the quarter whose work
assessment at enrolment (visit ``w0``) finds the patient in paid work (employed or self-employed), with at
least one later work assessment up to the last day of the quarter. Everything comes from the derive stage's
work frames as of the end of the quarter (:mod:`sciatica_outcomes.derive.work`): the report derives nothing.

- **Work status** at enrolment and at the latest assessment (full duties; modified duties or reduced hours;
  off work because of back or leg pain; off work for other reasons or no longer in paid work), counts and
  shares. Under an audience that withholds counts, the two minor statuses (off work for other reasons, no
  longer in paid work) are merged into one row before anything is withheld whenever either of them is small,
  as the minor end reasons are (:func:`~sciatica_outcomes.reports.quarterly.merge_small_ends`). The two
  columns share their total (the population, which is printed), and the cell "off work because of back or
  leg pain at enrolment" is the return-to-work population, printed again with the Kaplan-Meier estimate; the
  counts are withheld as one linked system
  (:func:`~sciatica_outcomes.reports.privacy.protect_linked`) with that cell the last one chosen as a
  complement.
- **Return to work**: among those off work because of back or leg pain at enrolment, the Kaplan-Meier
  share back at full or modified duties by week 12 and the median time, with 95% intervals (log-log pointwise
  interval of ``S(12)``; Brookmeyer-Crowley interval of the median), right-censored at the last assessment
  (:func:`~sciatica_outcomes.derive.return_to_work`, :func:`~sciatica_outcomes.models.survival.kaplan_meier`).
  The share is withheld when the population is, or when the returns by week 12 or the others are 1-10 under
  the rule (share times population gives them back); no interval is published for a withheld population (the
  width of an interval tells its n). The curve is drawn at coarse steps only (a point once more than
  the threshold of returns has accrued since the last one) and stops before the risk set falls to the
  threshold (:func:`~sciatica_outcomes.reports.quarterly.time_to_improvement_summary` does the same).
  Compared with the US Quality Outcomes Database: 82% of employed patients back at work 3 months after lumbar
  surgery (Asher et al., J Neurosurg Spine 2017;27:370), a different population (surgical, every employed
  patient whether or not off work before surgery).
- **Work ability and productivity**: change from enrolment to the last follow-up visit in the Work Ability
  Score (0-10, higher better; Ilmarinen, Occup Med 2007;57:160) and the WPAI:SHP overall work impairment and
  activity impairment (%, lower better; Reilly et al., PharmacoEconomics 1993;4:353), mean with a 95%
  t-interval; the share reaching the WAS smallest detectable change (``ClinicalConfig.mcid["was"]``, 1.92
  points, VERIFY); sick-leave days in the last 4 weeks at enrolment and at the latest assessment. A row is
  withheld (its n and every statistic) when its n, or the rest of the population without it, is 1-10.

Without rows of the work table up to the end of the quarter the section says "not recorded" and names the
table (:func:`~sciatica_outcomes.reports.quarterly.coverage_note`); it never gives an all-clear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np
import polars as pl
from scipy import stats

from sciatica_outcomes.models.survival import kaplan_meier
from sciatica_outcomes.reports.privacy import (
    SUPPRESSED,
    SuppressionRule,
    protect_linked,
    safe_percent,
)
from sciatica_outcomes.reports.quarterly import (
    Quarter,
    QuarterlyInputs,
    _coarse_steps,
    _episode_sets,
    as_of,
    coverage,
    coverage_note,
    patient_flow,
    published_flow,
)
from sciatica_outcomes.schemas.catalogs import label_map
from sciatica_outcomes.schemas.vocabulary import AT_WORK_STATUSES, OFF_WORK_BACK_LEG
from sciatica_outcomes.scoring import BASELINE_LABEL

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from sciatica_outcomes.models.work import WorkStatusModel

__all__ = [
    "MINOR_WORK_STATUSES",
    "OTHER_WORK_STATUSES",
    "QOD_REFERENCE",
    "RTW_WEEK",
    "SCORE_ROWS",
    "WORK_POPULATION",
    "ReturnToWork",
    "WorkMetrics",
    "WorkSection",
    "plot_return_to_work",
    "return_to_work_summary",
    "score_changes",
    "shares_for_audience",
    "status_counts",
    "was_sdc_share",
    "work_metrics",
    "work_population",
    "work_section",
]

#: The week by which the share back at work is reported (the end of the program phase).
RTW_WEEK = 12.0
#: The section's population, in words (printed under its heading).
WORK_POPULATION = (
    "episodes active in the quarter whose work assessment at enrolment finds the patient employed or "
    "self-employed, with at least one later work assessment up to the end of the quarter"
)
#: Work statuses merged into one row when either is small under the audience's rule.
MINOR_WORK_STATUSES: tuple[str, ...] = ("off_work_other", "not_applicable")
#: The label of the merged row.
OTHER_WORK_STATUSES = "Off work for other reasons, or no longer in paid work"
#: The published reference of the return-to-work share (domain.md §8).
QOD_REFERENCE = (
    "the US Quality Outcomes Database reports 82% of employed patients back at work 3 months after lumbar "
    "spine surgery (Asher et al., J Neurosurg Spine 2017;27:370; a surgical population of every patient "
    "employed before surgery, whether or not off work then, so the figures are not directly comparable)"
)
#: Score rows of :func:`score_changes`: (label, baseline column, change column) in ``work_episodes``; the
#: sick-leave row is built from the assessments.
SCORE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("Work Ability Score (0-10, higher is better)", "was_baseline", "was_change"),
    ("WPAI overall work impairment (%, lower is better)", "wpai_work_impairment_pct_baseline",
     "wpai_work_impairment_pct_change"),
    ("WPAI activity impairment (%, lower is better)", "wpai_activity_impairment_pct_baseline",
     "wpai_activity_impairment_pct_change"),
)  # fmt: skip
_SICK_LEAVE = "Sick-leave days because of back or leg pain, last 4 weeks"
#: what a withheld share says (as the front page's sentences)
_WITHHELD = "withheld for privacy"


def _status_order() -> dict[str, str]:
    """``{code: label}`` of the work statuses in display order (the catalog's, best first)."""
    return label_map("work_status")


def work_population(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> pl.DataFrame:
    """One row per episode of the section's population (:data:`WORK_POPULATION`), raw values.

    Parameters
    ----------
    inputs : QuarterlyInputs
        The report's inputs.
    quarter : Quarter, optional
        An earlier quarter (its data as they stood at its end); default the report's.

    Returns
    -------
    polars.DataFrame
        ``episode_id, clinic_id, status_start, status_latest, sick_start, sick_latest`` (sick-leave days in
        the last 4 weeks at the enrolment and the latest assessment), the return-to-work columns ``followed,
        time_weeks, event`` (null outside the return-to-work population) and the score columns of
        :data:`SCORE_ROWS` with ``was_responder`` (from ``work_episodes``).
    """
    q = quarter or inputs.quarter
    derived = inputs.derived(quarter)
    episodes = inputs.tables["episodes"] if quarter is None else as_of(inputs.history, q.end)["episodes"]
    active = episodes.filter(_episode_sets(episodes, q)["active"]).select("episode_id")
    wa = derived.work_assessments
    if wa.height == 0:
        return _empty_population()
    base = wa.filter(pl.col("visit") == BASELINE_LABEL, pl.col("in_paid_work")).select(
        "episode_id",
        "clinic_id",
        pl.col("day").alias("_base_day"),
        pl.col("work_status").alias("status_start"),
        pl.col("sick_leave_days_4wk").alias("sick_start"),
    )
    base = base.unique("episode_id", keep="first").join(active, on="episode_id")
    latest = (
        wa.join(base.select("episode_id", "_base_day"), on="episode_id")
        .filter(pl.col("day") > pl.col("_base_day"))
        .sort("episode_id", "day")
        .group_by("episode_id", maintain_order=True)
        .agg(
            pl.col("work_status").last().alias("status_latest"),
            pl.col("sick_leave_days_4wk").last().alias("sick_latest"),
        )
    )
    scores = [c for _, b, ch in SCORE_ROWS for c in (b, ch)]
    we = derived.work_episodes.select("episode_id", *scores, "was_responder")
    rtw = derived.return_to_work.select("episode_id", "followed", "time_weeks", "event")
    return (
        base.join(latest, on="episode_id")
        .join(we, on="episode_id", how="left")
        .join(rtw, on="episode_id", how="left")
        .select(
            "episode_id",
            "clinic_id",
            "status_start",
            "status_latest",
            "sick_start",
            "sick_latest",
            "followed",
            "time_weeks",
            "event",
            *scores,
            "was_responder",
        )
        .sort("episode_id")
    )


def _empty_population() -> pl.DataFrame:
    scores = {c: pl.Float64 for _, b, ch in SCORE_ROWS for c in (b, ch)}
    return pl.DataFrame(
        schema={
            "episode_id": pl.String,
            "clinic_id": pl.String,
            "status_start": pl.String,
            "status_latest": pl.String,
            "sick_start": pl.Int64,
            "sick_latest": pl.Int64,
            "followed": pl.Boolean,
            "time_weeks": pl.Float64,
            "event": pl.Int64,
            **scores,
            "was_responder": pl.Boolean,
        }
    )


def status_counts(population: pl.DataFrame, rule: SuppressionRule) -> pl.DataFrame:
    """Work status at enrolment and at the latest assessment, raw counts, minor statuses merged if small.

    Parameters
    ----------
    population : polars.DataFrame
        :func:`work_population`.
    rule : SuppressionRule
        The audience's rule: under one that withholds, the statuses of :data:`MINOR_WORK_STATUSES` become one
        row (:data:`OTHER_WORK_STATUSES`) when either is 1-10 in either column (all of them, never only the
        small one, which would tell that it is small).

    Returns
    -------
    polars.DataFrame
        ``code, status, start, latest`` (``code`` ``"other"`` for the merged row), rows in the catalog's
        order; every status of a paid worker is a row, also at 0.
    """
    labels = _status_order()
    codes = list(labels)
    start = dict(population.group_by("status_start").len().iter_rows())
    latest = dict(population.group_by("status_latest").len().iter_rows())
    rows = [(c, labels[c], int(start.get(c, 0)), int(latest.get(c, 0))) for c in codes]
    minor = [r for r in rows if r[0] in MINOR_WORK_STATUSES]
    if rule.withholds and any(rule.is_small(r[2]) or rule.is_small(r[3]) for r in minor):
        merged = ("other", OTHER_WORK_STATUSES, sum(r[2] for r in minor), sum(r[3] for r in minor))
        rows = [r for r in rows if r[0] not in MINOR_WORK_STATUSES] + [merged]
    return pl.DataFrame(
        rows, schema={"code": pl.String, "status": pl.String, "start": pl.Int64, "latest": pl.Int64},
        orient="row",
    )  # fmt: skip


def _protect_status(
    counts: pl.DataFrame, active: int, active_withheld: bool, rule: SuppressionRule
) -> np.ndarray:
    """Withheld mask of ``[start cells, latest cells, population, others, active]`` as one linked system.

    Identities: the start cells sum to the population, and so do the latest cells; the population and the
    other active episodes (not in paid work at enrolment, or not assessed again) sum to the episodes active in
    the quarter, which the patient flow prints (or withholds: then the population is withheld too). The
    others are never printed: a count of them of 1-10 is withheld and must not follow from the rest
    (:func:`~sciatica_outcomes.reports.privacy.protect_linked`). The return-to-work cell at enrolment costs
    the most to withhold (it is the Kaplan-Meier population).
    """
    k = counts.height
    n = int(counts["start"].sum())
    values = np.r_[counts["start"].to_numpy(), counts["latest"].to_numpy(), n, active - n, active]
    ident = np.zeros((3, values.size))
    ident[0, :k] = 1.0
    ident[1, k : 2 * k] = 1.0
    ident[:2, 2 * k] = -1.0
    ident[2, 2 * k : 2 * k + 3] = (1.0, 1.0, -1.0)
    cost = values.astype(float) + 1.0
    cost[counts["code"].to_list().index(OFF_WORK_BACK_LEG)] += 10.0 * float(n + 1)
    withheld = np.zeros(values.size, dtype=bool)
    fixed = np.zeros(values.size, dtype=bool)
    fixed[-2:] = True
    withheld[-2] = rule.is_small(active - n)  # never printed: withheld when it matters, shown-like when not
    withheld[-1] = active_withheld
    if active_withheld:
        withheld[2 * k] = fixed[2 * k] = True
    mask: np.ndarray = protect_linked(values, ident, rule=rule, fixed=fixed, withheld=withheld, cost=cost)
    return mask[: 2 * k + 1]


@dataclass(frozen=True)
class ReturnToWork:
    """The Kaplan-Meier return to full or modified duties, as the audience may see it.

    Attributes
    ----------
    n, n_returned : int
        Episodes off work because of back or leg pain at enrolment (in the population) and those back by the
        latest assessment (raw: never print them as they are).
    n_shown : str
        ``n`` as the status table prints it (``*`` when withheld).
    share, ci_low, ci_high : float or None
        Share back by :data:`RTW_WEEK` (0-1) with its 95% interval; None when withheld or not estimable.
    median, median_low, median_high : float or None
        Median weeks to return with its 95% interval (None: not reached, open, or withheld).
    curve : polars.DataFrame
        ``week, share_back, ci_low, ci_high`` at the coarse steps that may be drawn (empty when none).
    withheld : str
        Why the share is not shown ("" when it is).
    """

    n: int
    n_returned: int
    n_shown: str
    share: float | None
    ci_low: float | None
    ci_high: float | None
    median: float | None
    median_low: float | None
    median_high: float | None
    curve: pl.DataFrame
    withheld: str = ""

    def share_text(self) -> str:
        """``"58% (95% CI 47% to 68%)"``, or why there is no share."""
        if self.n == 0:
            return "no episode off work because of back or leg pain at enrolment"
        if self.share is None:
            return self.withheld or "not estimable"
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            ci = f" (95% CI {100 * self.ci_low:.0f}% to {100 * self.ci_high:.0f}%)"
        return f"{100 * self.share:.0f}%{ci}"

    def median_text(self) -> str:
        """``"9.0 weeks (95% CI 7.1 to 12.3)"``, ``"not reached"`` or why there is none."""
        if self.n == 0:
            return self.share_text()
        if self.share is None and self.withheld:
            return self.withheld
        if self.median is None:
            return "not reached"
        lo, hi = self.median_low, self.median_high
        ci = f" (95% CI {lo:.1f} to {hi:.1f})" if lo is not None and hi is not None else " (95% CI open)"
        return f"{self.median:.1f} weeks{ci}"


def _empty_curve() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"week": pl.Float64, "share_back": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}
    )


def _as_float(x: object) -> float | None:
    """A finite number as a float, else None (NaN, infinity, or not a number)."""
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def return_to_work_summary(
    population: pl.DataFrame, n_shown: str, rule: SuppressionRule, week: float = RTW_WEEK
) -> ReturnToWork:
    """Kaplan-Meier return to work of the population's episodes off work because of pain at enrolment.

    Parameters
    ----------
    population : polars.DataFrame
        :func:`work_population`.
    n_shown : str
        The status table's cell for those off work because of back or leg pain at enrolment (``*`` withheld).
    rule : SuppressionRule
        The audience's rule.
    week : float
        The week of the reported share (default :data:`RTW_WEEK`).

    Returns
    -------
    ReturnToWork

    Notes
    -----
    ``share = 1 - S(week)`` with ``S`` the Kaplan-Meier estimate (``S(t) = prod_{t_j <= t} (1 - d_j / n_j)``)
    and the interval ``1 - `` the log-log pointwise interval of ``S(week)`` (``survfit(conf.type =
    "log-log")``). Validated against: R ``survival::survfit``, through
    :func:`~sciatica_outcomes.models.survival.kaplan_meier` (``tests/models/test_survival.py``).
    """
    data = population.filter(pl.col("status_start") == OFF_WORK_BACK_LEG, pl.col("followed").fill_null(False))
    n = data.height
    n_ret = int(data["event"].fill_null(0).sum())
    empty = ReturnToWork(n, n_ret, n_shown, None, None, None, None, None, None, _empty_curve())
    if n == 0:
        return ReturnToWork(n, 0, n_shown, None, None, None, None, None, None, _empty_curve(), "none")
    if n_shown == SUPPRESSED or n < rule.min_group:
        return ReturnToWork(
            n, n_ret, n_shown, None, None, None, None, None, None, _empty_curve(),
            f"{_WITHHELD} (10 or fewer episodes, or a number that would give one away)"
            if rule.withholds else "too few episodes",
        )  # fmt: skip
    km = kaplan_meier(data, time="time_weeks", event="event")
    curve = km.curves
    upto = curve.filter(pl.col("time") <= week)
    by_week = int(upto["n_events"].sum())
    if any(rule.is_small(x) for x in (by_week, n - by_week)):
        return replace(
            empty, withheld=f"{_WITHHELD} (10 or fewer returned by week {week:g}, or 10 or fewer did not)"
        )
    if upto.height:
        last = upto.row(-1, named=True)
        share = 1.0 - float(last["survival"])
        lo, hi = _as_float(1.0 - last["ci_high"]), _as_float(1.0 - last["ci_low"])
    else:
        share, lo, hi = 0.0, None, None
    med = km.medians.row(0, named=True)
    drawn = _coarse_steps(curve.filter(pl.col("n_at_risk") >= rule.min_group), rule).select(
        pl.col("time").alias("week"),
        (1 - pl.col("survival")).alias("share_back"),
        (1 - pl.col("ci_high")).alias("ci_low"),
        (1 - pl.col("ci_low")).alias("ci_high"),
    )
    return ReturnToWork(
        n, n_ret, n_shown, share, lo, hi, _as_float(med["median"]), _as_float(med["ci_low"]),
        _as_float(med["ci_high"]), drawn,
    )  # fmt: skip


def _mean_ci(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval (``t.test(x)$conf.int`` in R)."""
    m = float(x.mean())
    if x.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return m, m - half, m + half


def _row_withheld(n: int, total: int, rule: SuppressionRule, n_total_shown: bool) -> bool:
    """A row of ``n`` episodes of a population of ``total`` is withheld: its n (or the rest) is small, or
    the population's size is withheld (a row's n, or its interval's width, would tell it)."""
    if not n_total_shown:
        return True
    return n < rule.min_group or rule.is_small(n) or rule.is_small(total - n)


def score_changes(population: pl.DataFrame, rule: SuppressionRule, n_total_shown: bool) -> pl.DataFrame:
    """Work Ability Score, WPAI and sick-leave days at enrolment and latest, with the mean change.

    Parameters
    ----------
    population : polars.DataFrame
        :func:`work_population`.
    rule : SuppressionRule
        The audience's rule.
    n_total_shown : bool
        Whether the population's size is printed: when it is not, every row is withheld; when it is, a row
        whose n or whose complement in the population is 1-10 is withheld (n and statistics).

    Returns
    -------
    polars.DataFrame
        ``measure, episodes`` (text, ``*`` withheld), ``at_enrolment, latest, mean_change, ci_low, ci_high``
        (means; null where withheld), one row per :data:`SCORE_ROWS` and the sick-leave row.

    Notes
    -----
    Episodes with both values; ``change = latest - enrolment``; ``mean +- t_{0.975, n-1} s / sqrt(n)``.
    Validated against: R ``t.test(change)$conf.int`` (``tests/reports/test_work.py`` checks scipy's
    ``ttest_1samp`` interval, the same formula).
    """
    total = population.height
    rows: list[dict[str, object]] = []
    specs = [(label, pl.col(b), pl.col(b) + pl.col(ch)) for label, b, ch in SCORE_ROWS] + [
        (_SICK_LEAVE, pl.col("sick_start").cast(pl.Float64), pl.col("sick_latest").cast(pl.Float64))
    ]
    for label, start_expr, latest_expr in specs:
        pair = population.select(start_expr.alias("a"), latest_expr.alias("b")).drop_nulls()
        n = pair.height
        if n == 0 or _row_withheld(n, total, rule, n_total_shown):
            rows.append({"measure": label, "episodes": SUPPRESSED if n else "0"})
            continue
        a, b = pair["a"].to_numpy(), pair["b"].to_numpy()
        m, lo, hi = _mean_ci(b - a)
        rows.append(
            {
                "measure": label,
                "episodes": f"{n:,}",
                "at_enrolment": float(a.mean()),
                "latest": float(b.mean()),
                "mean_change": m,
                "ci_low": _as_float(lo),
                "ci_high": _as_float(hi),
            }
        )
    schema = {
        "measure": pl.String,
        "episodes": pl.String,
        "at_enrolment": pl.Float64,
        "latest": pl.Float64,
        "mean_change": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
    }
    return pl.DataFrame([{c: r.get(c) for c in schema} for r in rows], schema=schema)


def was_sdc_share(population: pl.DataFrame, rule: SuppressionRule, n_total_shown: bool) -> tuple[str, str]:
    """The share of episodes whose Work Ability Score improved by at least its smallest detectable change.

    Returns
    -------
    tuple of str
        ``(episodes, share)`` as printed: the episodes with a baseline and a follow-up WAS (``*`` when
        withheld as a row of :func:`score_changes`) and the percentage (``*`` when the responders or the
        others are 1-10, :func:`~sciatica_outcomes.reports.privacy.safe_percent`; ``-`` for no episode).
    """
    resp = population["was_responder"].drop_nulls()
    n, k = resp.len(), int(resp.sum())
    if n == 0:
        return "0", "-"
    if _row_withheld(n, population.height, rule, n_total_shown):
        return SUPPRESSED, SUPPRESSED
    return f"{n:,}", safe_percent(k, n, rule=rule)


@dataclass(frozen=True)
class WorkSection:
    """What the Work section shows for one unit and quarter.

    Attributes
    ----------
    status : {"recorded", "not_recorded", "no_population"}
        Whether work assessments exist up to the end of the quarter and whether any episode qualifies.
    reason : str
        Why nothing is shown ("" when recorded): a clause naming the table (:func:`coverage_note`).
    n : int
        The population's size (raw).
    n_shown : str
        The population's size as printed (``*`` withheld).
    counts : polars.DataFrame
        :func:`status_counts` (raw, for the privacy audit).
    status_table : polars.DataFrame
        ``work status, at enrolment, at enrolment (%), latest, latest (%)`` as printed.
    rtw : ReturnToWork
    scores : polars.DataFrame
        :func:`score_changes`.
    was_sdc : tuple of str
        :func:`was_sdc_share`: episodes with a WAS change and the share reaching its SDC, as printed.
    sentences : list of str
        The section's text, numbers through the rule.
    """

    status: Literal["recorded", "not_recorded", "no_population"]
    reason: str
    n: int
    n_shown: str
    counts: pl.DataFrame
    status_table: pl.DataFrame
    rtw: ReturnToWork
    scores: pl.DataFrame
    was_sdc: tuple[str, str] = ("0", "-")
    sentences: list[str] = field(default_factory=list)


def _shares(counts: np.ndarray, mask: np.ndarray, total: int, total_hidden: bool) -> list[str]:
    """Shares of a column as printed: none for a withheld cell or a withheld total."""
    return [
        "-" if total == 0 else SUPPRESSED if hidden or total_hidden else f"{100.0 * c / total:.0f}%"
        for c, hidden in zip(counts.tolist(), mask.tolist(), strict=True)
    ]


def work_section(
    inputs: QuarterlyInputs, quarter: Quarter | None = None, cov: pl.DataFrame | None = None
) -> WorkSection:
    """The Work section of a quarterly report (see the module docstring for every definition).

    Parameters
    ----------
    inputs : QuarterlyInputs
        The report's inputs.
    quarter : Quarter, optional
        An earlier quarter (for the front page's comparison); default the report's.
    cov : polars.DataFrame, optional
        :func:`~sciatica_outcomes.reports.quarterly.coverage` of the report's quarter (computed when needed).

    Returns
    -------
    WorkSection
    """
    q = quarter or inputs.quarter
    rule = inputs.rule
    empty_counts = pl.DataFrame(schema={"code": pl.String, "status": pl.String, "start": pl.Int64,
                                        "latest": pl.Int64})  # fmt: skip
    no_rtw = ReturnToWork(0, 0, "0", None, None, None, None, None, None, _empty_curve(), "none")
    work = inputs.history["work"]
    if work.filter(pl.col("assessed_on") <= q.end).height == 0:
        if quarter is None:
            cov = coverage(inputs) if cov is None else cov
            reason = coverage_note(cov, "work")
        else:
            reason = f"the work assessments, table work, have no rows up to the end of {q.label}"
        sentence = f"Work outcomes: not recorded ({reason})."
        return WorkSection("not_recorded", reason, 0, "0", empty_counts, pl.DataFrame(), no_rtw,
                           pl.DataFrame(), sentences=[sentence])  # fmt: skip
    pop = work_population(inputs, quarter)
    n = pop.height
    if n == 0:
        sentence = (
            "Work outcomes: no episode active in the quarter has a work assessment at enrolment in paid work "
            "and a later one yet."
        )
        return WorkSection("no_population", "", 0, "0", empty_counts, pl.DataFrame(), no_rtw,
                           pl.DataFrame(), sentences=[sentence])  # fmt: skip
    # the population is part of the episodes active in the quarter, whose number the flow prints
    flow = published_flow(inputs, quarter)
    active_n = int(dict(patient_flow(inputs, quarter).iter_rows())["active in quarter"])
    counts = status_counts(pop, rule)
    mask = _protect_status(counts, active_n, flow["active in quarter"] == SUPPRESSED, rule)
    k = counts.height
    start, latest = counts["start"].to_numpy(), counts["latest"].to_numpy()
    start_mask, latest_mask, total_mask = mask[:k], mask[k : 2 * k], bool(mask[-1])
    n_shown = SUPPRESSED if total_mask else f"{n:,}"
    table = pl.DataFrame(
        {
            "work status": counts["status"],
            "at enrolment": [SUPPRESSED if m else f"{v:,}" for v, m in zip(start, start_mask, strict=True)],
            "at enrolment (%)": _shares(start, start_mask, n, total_mask),
            "latest": [SUPPRESSED if m else f"{v:,}" for v, m in zip(latest, latest_mask, strict=True)],
            "latest (%)": _shares(latest, latest_mask, n, total_mask),
        }
    )
    total_row = {"work status": "Total", "at enrolment": n_shown, "at enrolment (%)": "100%"}
    total_row |= {"latest": n_shown, "latest (%)": "100%"}
    table = pl.concat([table, pl.DataFrame([total_row])])
    rtw_cell = table["at enrolment"][counts["code"].to_list().index(OFF_WORK_BACK_LEG)]
    rtw = return_to_work_summary(pop, rtw_cell, rule)
    scores = score_changes(pop, rule, n_total_shown=not total_mask)
    sdc = was_sdc_share(pop, rule, n_total_shown=not total_mask)
    section = WorkSection("recorded", "", n, n_shown, counts, table, rtw, scores, sdc)
    return replace(section, sentences=_section_sentences(section, counts, start_mask, latest_mask))


def _section_sentences(
    section: WorkSection, counts: pl.DataFrame, start_mask: np.ndarray, latest_mask: np.ndarray
) -> list[str]:
    """The section's text: who, at work at enrolment and latest, return to work, work ability."""
    codes = counts["code"].to_list()
    at = [i for i, c in enumerate(codes) if c in AT_WORK_STATUSES]
    n = section.n

    def at_work(col: str, mask: np.ndarray) -> str:
        if section.n_shown == SUPPRESSED or mask[at].any():
            return _WITHHELD
        k = int(counts[col].to_numpy()[at].sum())
        return f"{100.0 * k / n:.0f}%"

    who = section.n_shown if section.n_shown != SUPPRESSED else "A withheld number of"
    out = [
        f"{who} episodes in paid work "
        f"at enrolment: at work (full or modified duties) at enrolment {at_work('start', start_mask)}, at "
        f"the latest assessment {at_work('latest', latest_mask)}."
    ]
    rtw = section.rtw
    if rtw.n == 0:
        out.append("Return to work: no episode was off work because of back or leg pain at enrolment.")
    elif rtw.share is None:
        out.append(
            "Return to work among those off work because of back or leg pain at enrolment "
            f"({rtw.n_shown}): {rtw.withheld or 'not estimable'}."
        )
    else:
        out.append(
            f"Of the {rtw.n_shown} episodes off work because of back or leg pain at enrolment, "
            f"{rtw.share_text()} were back at full or modified duties by week {RTW_WEEK:g} (Kaplan-Meier, "
            f"censored at the last assessment); median time to return {rtw.median_text()}. For reference, "
            f"{QOD_REFERENCE}."
        )
    was = section.scores.row(0, named=True)
    if was["mean_change"] is None:
        out.append(
            f"Change in the Work Ability Score: {'not recorded' if was['episodes'] == '0' else _WITHHELD}."
        )
    else:
        out.append(
            f"The Work Ability Score changed by {was['mean_change']:+.1f} points on average (95% CI "
            f"{was['ci_low']:+.1f} to {was['ci_high']:+.1f}; {was['episodes']} episodes) from "
            f"{was['at_enrolment']:.1f} at enrolment (0-10, higher is better)"
            + (
                f"; {section.was_sdc[1]} improved by at least its smallest detectable change."
                if section.was_sdc[1].endswith("%")
                else "."
            )
        )
    return out


def plot_return_to_work(rtw: ReturnToWork, ax: Axes | None = None) -> Axes:
    """Cumulative share back at full or modified duties by week (coarse Kaplan-Meier steps, 95% CI band).

    The curve is drawn at the coarse steps of ``rtw.curve`` and stops where its risk set falls to the
    threshold; the share by :data:`RTW_WEEK` is marked with its interval (it is the published estimate even
    where the curve stopped earlier), and the QOD registry's 82% at 3 months (13 weeks) for reference.

    Parameters
    ----------
    rtw : ReturnToWork
        :func:`return_to_work_summary` with a drawable ``curve``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting only when drawn

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    c = rtw.curve
    t = np.r_[0.0, c["week"].to_numpy()]
    ax.step(t, 100 * np.r_[0.0, c["share_back"].to_numpy()], where="post", color="#0072B2", lw=2,
            label="back at work (Kaplan-Meier)")  # fmt: skip
    ax.fill_between(
        t,
        100 * np.r_[0.0, c["ci_low"].fill_null(0.0).to_numpy()],
        100 * np.r_[0.0, c["ci_high"].fill_null(1.0).to_numpy()],
        step="post", color="#0072B2", alpha=0.15, lw=0, label="95% CI",
    )  # fmt: skip
    if rtw.share is not None:
        # the published share by week 12 with its interval: the curve may stop before week 12 (its risk set
        # falls to the threshold), the estimate at week 12 is still shown
        err = None
        if rtw.ci_low is not None and rtw.ci_high is not None:
            err = [[100 * (rtw.share - rtw.ci_low)], [100 * (rtw.ci_high - rtw.share)]]
        ax.errorbar([RTW_WEEK], [100 * rtw.share], yerr=err, fmt="o", color="#0072B2", capsize=4,
                    label=f"by week {RTW_WEEK:g}: {100 * rtw.share:.0f}% (95% CI)")  # fmt: skip
    ax.plot([13.0], [82.0], marker="D", color="#D55E00", ls="none", label="QOD registry: 82% at 3 months")
    ax.axvline(RTW_WEEK, color="#777777", lw=0.8, ls=":")
    ax.set_xlim(0, max(26.0, float(t.max()) + 1.0))
    ax.set_ylim(0, 100)
    ax.set_xlabel("weeks since start of program")
    ax.set_ylabel("back at full or modified duties (%)")
    ax.legend(loc="lower right", fontsize=8)
    return ax


class WorkMetrics(TypedDict):
    """The front page's work numbers of one unit and quarter, as printed (strings through the rule)."""

    quarter: str
    recorded: bool
    n_shown: str
    share: str


def work_metrics(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> WorkMetrics:
    """The return-to-work share for the front page (:func:`work_section`'s numbers, as printed).

    ``share`` is a percentage, ``"withheld for privacy"``, ``"none to compare"`` (nobody off work at
    enrolment) or ``"not recorded"``.
    """
    section = work_section(inputs, quarter)
    q = quarter or inputs.quarter
    if section.status == "not_recorded":
        return {"quarter": q.label, "recorded": False, "n_shown": "0", "share": "not recorded"}
    rtw = section.rtw
    if rtw.n == 0:
        share = "none to compare"
    elif rtw.share is None:
        share = _WITHHELD if rtw.n >= 1 and rtw.withheld != "none" else "none to compare"
    else:
        share = f"{100 * rtw.share:.0f}%"
    return {"quarter": q.label, "recorded": True, "n_shown": rtw.n_shown, "share": share}


def shares_for_audience(model: WorkStatusModel, rule: SuppressionRule) -> pl.DataFrame:
    """The shares at work by visit under the audience's rule.

    A visit's ``n_assessments``, and with it its ``observed_share``, is withheld when the assessments, those
    at work or those off work number 1 to the threshold (``share x n`` gives both counts back). The
    model's predicted share and its interval come from every row of the model and stay.
    """
    s = model.shares
    n = s["n_assessments"].to_numpy()
    at = (s["observed_share"].to_numpy() * n).round()
    small = [
        rule.is_small(int(a)) or rule.is_small(int(b)) or rule.is_small(int(c))
        for a, b, c in zip(n, at, n - at, strict=True)
    ]  # a few visits
    hide = pl.Series(small, dtype=pl.Boolean)
    return s.with_columns(
        pl.when(hide)
        .then(pl.lit(SUPPRESSED))
        .otherwise(pl.col("n_assessments").cast(pl.String))
        .alias("n_assessments"),
        pl.when(hide).then(None).otherwise(pl.col("observed_share")).alias("observed_share"),
    )
