"""Report figures (matplotlib): colour-blind-safe, labelled axes with units, privacy-aware.

Each function draws on an ``ax`` (created when ``None``) and returns the axes. Counts printed on a figure are
taken as display strings that have already been through suppression; observed group means are only drawn
for groups the audience may see a statistic of (``rule.min_group``: more than 10 patients under the network
and public audiences, at least 2 under internal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.patches import FancyBboxPatch

from sciatica_outcomes.reports.display import PALETTE
from sciatica_outcomes.reports.privacy import NETWORK_RULE, SUPPRESSED, SuppressionRule, suppress_counts

__all__ = [
    "PAIN_BAND_COLOURS",
    "adherence_plot",
    "axis_label",
    "bar_counts",
    "cohort_flow_diagram",
    "cohort_trajectories_plot",
    "drawable_units",
    "flow_diagram",
    "funnel_plot",
    "km_plot",
    "residual_figures",
    "trajectory_plot",
    "trend_plot",
]


#: Colours of the pain-monitoring bands, safe -> acceptable -> high risk, from the colour-blind-safe palette:
#: bluish green, orange, vermillion (traffic-light order that stays distinguishable without red-green vision).
PAIN_BAND_COLOURS: dict[str, str] = {"safe": PALETTE[2], "acceptable": PALETTE[1], "high_risk": PALETTE[3]}


def axis_label(label: str, unit: str, arrow: str, width: int = 40) -> str:
    r"""``"label (unit; arrow)"``, on two lines when longer than ``width`` characters (a long unit such as
    "median minutes (censored model)" otherwise runs past the top of the figure).

    Examples
    --------
    >>> axis_label("ODI", "points", "lower is better")
    'ODI (points; lower is better)'
    >>> axis_label("Walking tolerance", "median minutes (censored model)", "higher is better")
    'Walking tolerance\n(median minutes (censored model); higher is better)'
    """
    text = f"{label} ({unit}; {arrow})"
    return text if len(text) <= width else f"{label}\n({unit}; {arrow})"


def _axes(ax: Axes | None, size: tuple[float, float] = (7.0, 3.8)) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size)
    return new


def flow_diagram(stages: dict[str, str], ax: Axes | None = None, *, compact: bool = False) -> Axes:
    """CONSORT-style patient-flow diagram for one quarter.

    Parameters
    ----------
    stages : dict
        Display strings (already suppressed) for the stages of :func:`quarterly.patient_flow`, keyed by stage.
    compact : bool
        A taller layout for a phone screen (draw it on axes about 4 x 6.4 inches): the boxes stacked, the
        labels broken over lines, so that the text stays at its point size without running over the boxes.
    """
    ax = _axes(ax, (4.0, 6.4) if compact else (7.5, 4.6))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 16 if compact else 10)
    ax.axis("off")

    def box(x: float, y: float, text: str, w: float = 3.2, h: float = 1.1, color: str = PALETTE[0]) -> None:
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.05", fc="white", ec=color, lw=1.6
            )
        )
        ax.text(x, y, text, ha="center", va="center", fontsize=9)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": "#444"})

    ended = [k for k in stages if k.startswith("ended: ")]

    def end_line(key: str) -> str:
        # a merged stage names its parts in brackets: on a line of their own, inside the box
        name, _, parts = key.removeprefix("ended: ").partition(" (")
        return f"{name}: {stages[key]}" + (f"\n({parts}" if parts else "")

    lines = "\n".join(end_line(k) for k in ended)
    still = stages["still active at end of quarter"]
    if compact:
        start = stages["active at start of quarter"]
        box(2.5, 14.4, f"Active at start\nof quarter\nn = {start}", w=4.6, h=2.4)
        box(7.5, 14.4, f"Enrolled in\nquarter\nn = {stages['enrolled in quarter']}", w=4.6, h=2.4)
        box(5.0, 10.6, f"Active in quarter\nn = {stages['active in quarter']}", w=6.0, h=1.6)
        arrow(2.5, 13.1, 4.0, 11.5)
        arrow(7.5, 13.1, 6.0, 11.5)
        box(5.0, 5.6, f"Ended in quarter\n{lines}", w=7.6, h=5.6, color=PALETTE[1])
        box(5.0, 1.2, f"Still active at end of quarter\nn = {still}", w=7.6, h=1.6, color=PALETTE[2])
        arrow(5.0, 9.7, 5.0, 8.5)
        ax.plot([8.1, 9.5, 9.5], [10.6, 10.6, 1.2], color="#444", lw=1)
        arrow(9.5, 1.2, 8.9, 1.2)
        return ax
    box(2.3, 9.0, f"Active at start of quarter\nn = {stages['active at start of quarter']}")
    box(7.7, 9.0, f"Enrolled in quarter\nn = {stages['enrolled in quarter']}")
    box(5.0, 6.6, f"Active in quarter\nn = {stages['active in quarter']}", w=3.6)
    arrow(2.3, 8.4, 4.4, 7.2)
    arrow(7.7, 8.4, 5.6, 7.2)
    box(2.6, 3.0, f"Ended in quarter\n{lines}", w=4.2, h=3.6, color=PALETTE[1])
    box(7.7, 3.0, f"Still active at end\nof quarter\nn = {still}", w=3.4, h=1.6, color=PALETTE[2])
    arrow(4.4, 6.0, 2.9, 4.9)
    arrow(5.6, 6.0, 7.5, 3.9)
    return ax


def trajectory_plot(
    predicted: pl.DataFrame,
    observed: pl.DataFrame | None,
    *,
    label: str,
    unit: str,
    higher_is_better: bool,
    ax: Axes | None = None,
    color: str = PALETTE[0],
    horizon: float | None = None,
    bounds: tuple[float | None, float | None] = (None, None),
    rule: SuppressionRule = NETWORK_RULE,
    statistic: str = "mean",
) -> Axes:
    """Model-based mean (or median) trajectory with its 95 % confidence band, observed means overlaid.

    The curve is drawn where ``predicted`` has rows (the report stops it at the latest estimable week); when
    ``horizon`` lies beyond its last week, the weeks in between are shaded and labelled "not yet estimable".
    The band is drawn as given (the report clips it to the outcome's range) and the value axis never extends
    outside ``bounds``.

    Parameters
    ----------
    predicted : polars.DataFrame
        ``week, estimate, ci_low, ci_high`` (population curve from the growth model).
    observed : polars.DataFrame, optional
        ``week, mean, n`` observed means by (rounded) week; groups smaller than ``rule.min_group`` (10 or
        fewer patients under the network rule) are not drawn.
    label, unit : str
        Outcome name and unit for the axis label.
    higher_is_better : bool
        Printed in the axis label as the direction of improvement.
    horizon : float, optional
        Last week of the time axis (the report's 26 weeks); default: the last week of the curve or of the
        observed means.
    bounds : tuple of float or None
        Lower and upper end of the outcome's range (``None``: unbounded); the value axis stays inside it.
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        The audience's rule.
    statistic : {"mean", "median"}
        What the curve and the observed points are (the censored growth model of a capped test gives
        medians): the legend's words and the column of ``observed`` drawn (``mean`` or ``median``).
    """
    ax = _axes(ax)
    p = predicted.sort("week")
    ax.fill_between(p["week"], p["ci_low"], p["ci_high"], color=color, alpha=0.2, lw=0, label="95% CI")
    ax.plot(p["week"], p["estimate"], color=color, lw=2, label=f"model-based {statistic}")
    if observed is not None and observed.height:
        o = observed.filter(pl.col("n") >= rule.min_group)
        legend = f"observed {statistic} (n > {rule.min_group - 1})"
        ax.plot(o["week"], o[statistic], "o", color=PALETTE[1], ms=5, label=legend)
    last = p["week"].max() if p.height else 0.0
    stop = float(last) if isinstance(last, int | float) else 0.0
    if horizon is not None:
        if horizon > stop:
            ax.axvspan(stop, horizon, color="#999", alpha=0.12, lw=0, label="not yet estimable")
        ax.set_xlim(0, horizon)
    lo, hi = bounds
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom if lo is None else max(bottom, lo), top if hi is None else min(top, hi))
    arrow = "higher is better" if higher_is_better else "lower is better"
    ax.set_xlabel("weeks since start of program")
    ax.set_ylabel(axis_label(label, unit, arrow))
    ax.legend(loc="best", fontsize=8)
    return ax


def adherence_plot(
    weekly: pl.DataFrame, ax: Axes | None = None, rule: SuppressionRule = NETWORK_RULE
) -> Axes:
    """Completed sessions per program week against the 2-3 sessions/week prescription.

    Parameters
    ----------
    weekly : polars.DataFrame
        ``program_week, mean, q25, q75, n`` (completed sessions per patient-week).
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        Weeks with fewer than ``rule.min_group`` patient-weeks are not drawn.
    """
    ax = _axes(ax)
    w = weekly.filter(pl.col("n") >= rule.min_group).sort("program_week")
    ax.axhspan(2, 3, color=PALETTE[2], alpha=0.15, label="prescribed 2-3 per week")
    ax.fill_between(
        w["program_week"],
        w["q25"],
        w["q75"],
        color=PALETTE[0],
        alpha=0.2,
        lw=0,
        label="middle half of patients",
    )
    ax.plot(w["program_week"], w["mean"], color=PALETTE[0], lw=2, marker="o", ms=3, label="mean")
    ax.set_xlabel("program week")
    ax.set_ylabel("completed sessions per week")
    ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8)
    return ax


def trend_plot(
    trend: pl.DataFrame,
    columns: Sequence[str],
    labels: Sequence[str],
    unit: str,
    ax: Axes | None = None,
    *,
    share: bool = False,
) -> Axes:
    """Metrics over the last quarters (one line per column; null points, e.g. suppressed, are gaps).

    With ``share=True`` the values are percentages and the value axis runs from 0 to 100, so that a change
    of a few points is not drawn as a cliff; otherwise it starts at 0 when every value is non-negative.
    """
    ax = _axes(ax)
    x = np.arange(trend.height)
    for i, (col, lab) in enumerate(zip(columns, labels, strict=True)):
        y = trend[col].cast(pl.Float64).to_numpy()
        ax.plot(x, y, marker="o", color=PALETTE[i % len(PALETTE)], label=lab)
    ax.set_xticks(x, trend["quarter"].to_list())
    ax.set_xlabel("quarter")
    ax.set_ylabel(unit)
    if share:
        ax.set_ylim(0, 100)
    elif ax.get_ylim()[0] > 0:
        ax.set_ylim(bottom=0)
    ax.legend(loc="best", fontsize=8)
    return ax


def bar_counts(
    categories: Sequence[str],
    values: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    ax: Axes | None = None,
    colors: Sequence[str] | None = None,
    share: bool = False,
) -> Axes:
    """Horizontal bars of shares or counts (already safe to show), in the order given, first at the top.

    With ``share=True`` the values are percentages and the axis runs from 0 to 100.
    """
    ax = _axes(ax, (7.0, 0.5 + 0.45 * max(len(categories), 1)))
    y = np.arange(len(categories))
    ax.barh(y, values, color=list(colors) if colors else PALETTE[0])
    ax.set_yticks(y, list(categories))
    ax.invert_yaxis()
    if share:
        ax.set_xlim(0, 100)
    else:
        ax.set_xlim(left=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def _label_offsets(ax: Axes, units: pl.DataFrame, size: float = 7.0) -> list[float]:
    """Vertical offsets (points) of the funnel's labels: above the point, or below it when the label would
    overlap the label of a point to its left (width about 0.7 ``size`` per character, height ``size``)."""
    if units.is_empty():
        return []
    ax.autoscale_view()
    xy = ax.transData.transform(
        np.column_stack(
            [units["n"].cast(pl.Float64).to_numpy(), units["o_minus_e"].cast(pl.Float64).to_numpy()]
        )
    )
    pts = xy * 72.0 / ax.figure.dpi  # display pixels to points
    width = np.array([0.7 * size * len(str(x)) + 4 for x in units["unit"]])
    order = np.argsort(pts[:, 0], kind="stable")
    offsets = np.full(units.height, 3.0)
    placed: list[tuple[float, float, float]] = []  # left, bottom, width of the labels placed so far
    left = pts[:, 0] + 4
    for i in order:  # loop over the few units of a funnel plot
        dy = 3.0
        for dy in (3.0, -3.0 - size - 2, 3.0 + size + 2, -3.0 - 2 * size - 4):
            bottom = pts[i, 1] + dy
            clash = any(
                left[i] < pl_ + w and pl_ < left[i] + width[i] and bottom < pb + size and pb < bottom + size
                for pl_, pb, w in placed
            )
            if not clash:
                break
        offsets[i] = dy
        placed.append((left[i], pts[i, 1] + dy, width[i]))
    return offsets.tolist()


def funnel_plot(
    units: pl.DataFrame,
    limits: pl.DataFrame,
    *,
    label: str,
    unit: str,
    ax: Axes | None = None,
    rule: SuppressionRule = NETWORK_RULE,
    point_label: str = "clinic",
    **_: Any,
) -> Axes:
    """Funnel plot: observed minus expected change by volume, with 95 % and 99.8 % control limits.

    A point's position on the volume axis is its count, so only units whose count the report's table may
    show are drawn: the counts go through the same suppression as the table (``suppress_counts``: 1-10
    and the complementary cells that would let one be worked out from the total), and suppressed units are
    left off the plot.

    Parameters
    ----------
    units : polars.DataFrame
        ``unit, n, o_minus_e`` per clinic or therapist.
    limits : polars.DataFrame
        ``n, lo95, hi95, lo998, hi998`` over a grid of volumes.
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        The audience's rule (:func:`drawable_units`).
    point_label : str
        Legend entry of the points (``"clinic"``, ``"therapist"``).

    Labels of points close together are moved below their point in turn, so that two labels never print
    over each other (CL05 and CL04 at 44 and 52 episodes did).
    """
    ax = _axes(ax)
    units = drawable_units(units, rule)
    lim = limits.sort("n")
    ax.plot(lim["n"], lim["lo95"], "--", color="#666", lw=1, label="95% limits")
    ax.plot(lim["n"], lim["hi95"], "--", color="#666", lw=1)
    ax.plot(lim["n"], lim["lo998"], ":", color="#000", lw=1, label="99.8% limits")
    ax.plot(lim["n"], lim["hi998"], ":", color="#000", lw=1)
    ax.axhline(0, color="#999", lw=0.8)
    u = units
    ax.plot(u["n"], u["o_minus_e"], "o", color=PALETTE[0], label=point_label)
    for name, n, v, dy in zip(u["unit"], u["n"], u["o_minus_e"], _label_offsets(ax, u), strict=True):
        ax.annotate(str(name), (n, v), textcoords="offset points", xytext=(4, dy), fontsize=7)
    ax.set_xlabel("episodes with an outcome (volume)")
    ax.set_ylabel(f"observed minus expected\n{label} ({unit})")
    ax.legend(loc="best", fontsize=8)
    return ax


def drawable_units(units: pl.DataFrame, rule: SuppressionRule = NETWORK_RULE) -> pl.DataFrame:
    """Units whose count ``n`` survives suppression as a one-column table (the rows a funnel plot may draw).

    Parameters
    ----------
    units : polars.DataFrame
        ``unit, n, ...``; ``n`` may already be a display string (``*`` where the report withholds it).
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        The audience's rule.

    Returns
    -------
    polars.DataFrame
        The rows of ``units`` whose ``n`` the suppressed table shows: never a count of 1-10, nor a count
        withheld so that a small one cannot be recovered from the total, nor a unit with fewer than
        ``rule.min_group`` episodes (one, under ``internal``), whose statistics the table leaves empty.
    """
    if units.is_empty():
        return units
    if units.schema["n"] == pl.String:  # already suppressed by the caller
        shown_units = units.filter(pl.col("n") != SUPPRESSED).with_columns(pl.col("n").cast(pl.Int64))
        return shown_units.filter(pl.col("n") >= rule.min_group)
    shown = suppress_counts(units.select("n"), ["n"], rule=rule)["n"]
    return units.filter((shown != SUPPRESSED) & (units["n"] >= rule.min_group))


def km_plot(curves: pl.DataFrame, ax: Axes | None = None) -> Axes:
    """Cumulative share reaching a clinically important improvement (``1 - S(t)``) by outcome, with 95 % CI.

    Parameters
    ----------
    curves : polars.DataFrame
        ``outcome, time, share_improved, ci_low, ci_high`` at each event time.
    """
    ax = _axes(ax)
    for i, (key, part) in enumerate(curves.group_by("outcome", maintain_order=True)):
        color = PALETTE[i % len(PALETTE)]
        t = np.r_[0.0, part["time"].to_numpy()]
        ax.step(
            t,
            100 * np.r_[0.0, part["share_improved"].to_numpy()],
            where="post",
            color=color,
            lw=2,
            label=str(key[0]),
        )
        ax.fill_between(
            t,
            100 * np.r_[0.0, part["ci_low"].to_numpy()],
            100 * np.r_[0.0, part["ci_high"].to_numpy()],
            step="post",
            color=color,
            alpha=0.15,
            lw=0,
        )
    ax.set_xlabel("weeks since start of program")
    ax.set_ylabel("reached the MCID (%, cumulative)")
    ax.set_ylim(0, 100)
    ax.legend(loc="best", fontsize=8)
    return ax


def cohort_trajectories_plot(
    sample: pl.DataFrame,
    bins: pl.DataFrame,
    *,
    outcome: str,
    label: str,
    unit: str,
    higher_is_better: bool,
    ax: Axes | None = None,
) -> Axes:
    """The cohort's observed course: mean and middle half by bin, individual lines when allowed.

    Parameters
    ----------
    sample : polars.DataFrame
        ``line, week, <outcome>`` from :func:`sciatica_outcomes.reports.cohort.trajectory_sample` (empty
        outside the internal audience); each line is drawn thin and unlabelled.
    bins : polars.DataFrame
        ``week, mean, q25, q75`` from :func:`sciatica_outcomes.reports.cohort.observed_bins`.
    outcome, label, unit : str
        Outcome column, its name and unit for the axis label.
    higher_is_better : bool
        Printed in the axis label as the direction of improvement.
    """
    ax = _axes(ax)
    if sample.height:
        # one polyline with a gap (NaN) after each episode: all lines in one call, no loop over patients
        gaps = sample.select("line").unique().with_columns(pl.lit(None, pl.Float64).alias("week"))
        path = pl.concat(
            [
                sample.select("line", "week", pl.col(outcome).alias("y"), pl.lit(0).alias("k")),
                gaps.with_columns(pl.lit(None, pl.Float64).alias("y"), pl.lit(1).alias("k")),
            ]
        ).sort("line", "k", "week", nulls_last=True)
        ax.plot(
            path["week"].to_numpy(),
            path["y"].to_numpy(),
            color=PALETTE[0],
            alpha=0.25,
            lw=0.8,
            label="individual episodes (random sample)",
        )
    if bins.height:
        ax.fill_between(
            bins["week"], bins["q25"], bins["q75"], color=PALETTE[1], alpha=0.2, lw=0, label="middle half"
        )
        ax.plot(bins["week"], bins["mean"], color=PALETTE[1], lw=2.5, marker="o", label="observed mean")
    arrow = "higher is better" if higher_is_better else "lower is better"
    ax.set_xlabel("weeks since start of program")
    ax.set_ylabel(axis_label(label, unit, arrow))
    ax.legend(loc="best", fontsize=8)
    return ax


def _qq_panel(ax: Axes, points: pl.DataFrame, title: str) -> None:
    """A normal QQ panel with the line through the quartiles (as R's ``qqline``)."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("standard normal quantile")
    ax.set_ylabel("sample quantile")
    if points.is_empty():
        ax.text(0.5, 0.5, "too few values to draw", ha="center", va="center", transform=ax.transAxes)
        return
    x, y = points["theoretical"].to_numpy(), points["sample"].to_numpy()
    ax.plot(x, y, "o", ms=2.5, color=PALETTE[0], alpha=0.6)
    q1, q3 = np.quantile(y, [0.25, 0.75])
    z1, z3 = np.quantile(x, [0.25, 0.75])
    if z3 > z1:
        slope = (q3 - q1) / (z3 - z1)
        ax.plot(x, q1 + slope * (x - z1), color=PALETTE[3], lw=1)


def residual_figures(diagnostics: Any, *, label: str, unit: str) -> tuple[Any, Any]:
    """The two diagnostic figures of a growth model: residuals, and the random-effect distributions.

    Parameters
    ----------
    diagnostics : sciatica_outcomes.reports.cohort.ModelDiagnostics
        What :func:`~sciatica_outcomes.reports.cohort.model_diagnostics` allows the audience to see.
    label, unit : str
        Outcome name and unit for the axis labels.

    Returns
    -------
    tuple of matplotlib.figure.Figure
        (residuals vs fitted and the QQ plot of the standardised residuals; normal QQ plots of the
        episodes' random intercepts and slopes, and the clinic intercepts with 95 % intervals when the model
        has a clinic random effect).
    """
    fig1, (a1, a2) = plt.subplots(1, 2, figsize=(8.0, 3.4))
    r = diagnostics.residuals
    if diagnostics.binned:
        a1.fill_between(
            r["fitted"], r["q10"], r["q90"], color=PALETTE[0], alpha=0.2, lw=0, label="10th-90th pct"
        )
        a1.plot(r["fitted"], r["residual"], "o-", color=PALETTE[0], ms=3, label="mean residual per bin")
        a1.legend(loc="best", fontsize=7)
    else:
        a1.plot(r["fitted"], r["residual"], "o", ms=1.5, color=PALETTE[0], alpha=0.3)
    a1.axhline(0, color="#666", lw=0.8)
    a1.set_title("residuals vs fitted", fontsize=9)
    a1.set_xlabel(f"fitted {label} ({unit})")
    a1.set_ylabel(f"residual ({unit})")
    _qq_panel(a2, diagnostics.qq["residuals"], "standardised residuals")
    fig1.tight_layout()
    effects = [k for k in diagnostics.qq if k != "residuals"]
    n_panels = len(effects) + (diagnostics.clinics is not None)
    fig2, axes = plt.subplots(1, max(n_panels, 1), figsize=(3.0 * max(n_panels, 1) + 0.6, 3.2), squeeze=False)
    for ax, key in zip(axes[0], effects, strict=False):
        title = {"episode_id: (Intercept)": "episode intercepts", "episode_id: week": "episode week slopes"}
        _qq_panel(ax, diagnostics.qq[key], title.get(key, key))
    if diagnostics.clinics is not None:
        ax = axes[0][-1]
        c = diagnostics.clinics
        y = np.arange(c.height)
        est = c["estimate"].to_numpy()
        ax.errorbar(
            est,
            y,
            xerr=[est - c["ci_low"].to_numpy(), c["ci_high"].to_numpy() - est],
            fmt="o",
            ms=3,
            color=PALETTE[2],
            capsize=2,
        )
        ax.axvline(0, color="#666", lw=0.8)
        ax.set_yticks([])
        ax.set_title("clinic intercepts (95% interval)", fontsize=9)
        ax.set_xlabel(f"{label} ({unit})")
    fig2.tight_layout()
    return fig1, fig2


def cohort_flow_diagram(stages: Sequence[tuple[str, str]], ax: Axes | None = None) -> Axes:
    """The cohort's flow in a column of boxes: enrolled, baseline, follow-up at each visit, completed.

    Parameters
    ----------
    stages : sequence of (str, str)
        ``(stage, count as shown)`` in order (counts already through the audience rule, ``*`` if withheld),
        from :func:`sciatica_outcomes.reports.cohort.follow_up_flow`.
    """
    n = len(stages)
    ax = _axes(ax, (6.0, 0.95 * n + 0.3))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, n)
    ax.axis("off")
    for i, (stage, count) in enumerate(stages):
        y = n - i - 0.5
        last = i == n - 1
        color = PALETTE[2] if last else PALETTE[0]
        ax.add_patch(
            FancyBboxPatch((2.0, y - 0.3), 6.0, 0.6, boxstyle="round,pad=0.05", fc="white", ec=color, lw=1.6)
        )
        ax.text(5.0, y, f"{stage[:1].upper()}{stage[1:]}: n = {count}", ha="center", va="center", fontsize=10)
        if not last:
            ax.annotate(
                "",
                xy=(5.0, y - 0.62),
                xytext=(5.0, y - 0.38),
                arrowprops={"arrowstyle": "->", "color": "#444"},
            )
    return ax
