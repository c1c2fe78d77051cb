"""Tests of the report figures' privacy rules."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import polars as pl
import pytest
from matplotlib.transforms import Bbox

from sciatica_outcomes.reports.figures import (
    axis_label,
    drawable_units,
    flow_diagram,
    funnel_plot,
    trajectory_plot,
)
from sciatica_outcomes.reports.privacy import rule_for, suppress_counts, withhold_units


def _limits() -> pl.DataFrame:
    n = pl.Series("n", [float(v) for v in range(2, 101)])
    return pl.DataFrame({"n": n}).with_columns(
        (-2 / pl.col("n").sqrt()).alias("lo95"),
        (2 / pl.col("n").sqrt()).alias("hi95"),
        (-3 / pl.col("n").sqrt()).alias("lo998"),
        (3 / pl.col("n").sqrt()).alias("hi998"),
    )


def test_funnel_plot_leaves_off_units_whose_count_the_table_withholds() -> None:
    # clinic D has 4 episodes (withheld); the smallest other count (C, 12) is withheld as well so that D's
    # cannot be worked out from the total: C must not appear on the volume axis either
    units = pl.DataFrame(
        {"unit": ["A", "B", "C", "D"], "n": [60, 35, 12, 4], "o_minus_e": [1.0, -2.0, 0.5, 3.0]}
    )
    table = suppress_counts(units, ["n"])
    withheld = set(table.filter(pl.col("n") == "*")["unit"])
    assert withheld == {"C", "D"}
    assert drawable_units(units)["unit"].to_list() == ["A", "B"]
    fig, ax = plt.subplots()
    funnel_plot(units, _limits(), label="ODI", unit="points", ax=ax)
    points = next(line for line in ax.get_lines() if line.get_label() == "clinic")
    assert sorted(points.get_xdata().tolist()) == [35, 60]
    assert sorted(t.get_text() for t in ax.texts) == ["A", "B"]
    plt.close(fig)


def test_every_unit_is_drawn_when_no_count_is_withheld() -> None:
    units = pl.DataFrame({"unit": ["A", "B", "C"], "n": [60, 35, 22], "o_minus_e": [1.0, -2.0, 0.5]})
    assert drawable_units(units)["unit"].to_list() == ["A", "B", "C"]
    assert drawable_units(units.head(0)).is_empty()


def test_funnel_labels_of_neighbouring_clinics_do_not_print_over_each_other() -> None:
    # the demo's CL05 (44 episodes, +2.2) and CL04 (52, +2.6) printed as "CL05CL04"
    units = pl.DataFrame(
        {
            "unit": ["CL06", "CL03", "CL08", "CL07", "CL04", "CL05"],
            "n": [118, 99, 76, 60, 52, 44],
            "o_minus_e": [-0.3, 0.0, -1.3, -0.8, 2.6, 2.2],
        }
    )
    n = pl.Series("n", [float(v) for v in range(2, 151)])  # the report's grid and figure size
    limits = pl.DataFrame({"n": n}).with_columns(
        (k * 7.8 / pl.col("n").sqrt()).alias(c)
        for k, c in ((-1.96, "lo95"), (1.96, "hi95"), (-3.09, "lo998"), (3.09, "hi998"))
    )
    fig, ax = plt.subplots(figsize=(7.0, 3.8), dpi=110)
    funnel_plot(units, limits, label="ODI", unit="points", ax=ax, point_label="therapist")
    fig.canvas.draw()
    # with a gap of a few pixels: labels that touch read as one word ("CL05CL04")
    boxes = [
        Bbox.from_extents(b.x0 - 3, b.y0, b.x1 + 3, b.y1) for b in (t.get_window_extent() for t in ax.texts)
    ]
    assert len(boxes) == 6
    overlaps = [(i, j) for i in range(6) for j in range(i) if boxes[i].overlaps(boxes[j])]
    assert not overlaps, [(ax.texts[i].get_text(), ax.texts[j].get_text()) for i, j in overlaps]
    assert ax.get_legend_handles_labels()[1][-1] == "therapist"
    plt.close(fig)


def test_an_internal_funnel_leaves_off_a_unit_of_one_episode_whose_table_row_is_empty() -> None:
    # the one-clinic internal report's table (withhold_units) shows therapist T3's n = 1 and no statistic;
    # the funnel's caption formatted its empty O - E and the early-quarter report failed (TypeError)
    units = pl.DataFrame({"provider": ["T1", "T2", "T3"], "n": [14, 9, 1], "o_minus_e": [1.0, -2.0, 3.0]})
    internal = rule_for("internal")
    table = withhold_units(units, rule=internal).rename({"provider": "unit"})
    assert table.filter(pl.col("unit") == "T3")["o_minus_e"].to_list() == [None]
    drawn = drawable_units(table, internal)
    assert drawn["unit"].to_list() == ["T1", "T2"] and drawn["o_minus_e"].null_count() == 0


def test_trajectory_stops_at_the_estimable_week_and_stays_in_range() -> None:
    # a curve estimable to week 8 on a 26-week axis: the rest is shaded "not yet estimable"; the value axis
    # never extends below 0 even though the band reaches it
    predicted = pl.DataFrame(
        {
            "week": [0.0, 4.0, 8.0],
            "estimate": [40.0, 20.0, 3.0],
            "ci_low": [35.0, 12.0, 0.0],
            "ci_high": [45.0, 28.0, 9.0],
        }
    )
    observed = pl.DataFrame({"week": [0.0, 10.0], "mean": [41.0, 2.0], "n": [50, 12]})
    fig, ax = plt.subplots()
    trajectory_plot(
        predicted,
        observed,
        label="ODI",
        unit="%",
        higher_is_better=False,
        ax=ax,
        horizon=26.0,
        bounds=(0.0, 100.0),
    )
    assert ax.get_xlim() == (0.0, 26.0)
    assert ax.get_ylim()[0] >= 0.0
    curve = next(line for line in ax.get_lines() if line.get_label() == "model-based mean")
    assert max(curve.get_xdata()) == 8.0
    shaded = [p for p in ax.patches if p.get_label() == "not yet estimable"]
    assert len(shaded) == 1
    x0, x1 = shaded[0].get_x(), shaded[0].get_x() + shaded[0].get_width()
    assert (x0, x1) == (8.0, 26.0)
    plt.close(fig)


def test_a_long_axis_label_is_split_before_its_unit_and_a_short_one_is_not() -> None:
    assert axis_label("ODI", "points", "lower is better") == "ODI (points; lower is better)"
    long = axis_label("Walking tolerance", "median minutes (censored model)", "higher is better")
    first, second = long.split("\n")
    assert first == "Walking tolerance"
    assert second == "(median minutes (censored model); higher is better)"


@pytest.mark.parametrize("compact", [False, True])
def test_flow_diagram_keeps_the_merged_end_reasons_inside_their_box(compact: bool) -> None:
    # the demo's "other ends (referred, surgery, injection, other): *" ran over both sides of its box
    stages = {
        "active at start of quarter": "172",
        "enrolled in quarter": "147",
        "active in quarter": "319",
        "ended: completed": "*",
        "ended: dropped out": "44",
        "ended: other ends (referred, surgery, injection, other)": "*",
        "still active at end of quarter": "170",
    }
    fig, ax = plt.subplots(figsize=(4.0, 6.4) if compact else (7.5, 4.6))
    flow_diagram(stages, ax=ax, compact=compact)
    fig.canvas.draw()
    boxes = [p.get_window_extent() for p in ax.patches]
    texts = [t for t in ax.texts if t.get_text()]
    ended = next(t for t in texts if t.get_text().startswith("Ended in quarter"))
    assert "other ends: *\n(referred, surgery, injection, other)" in ended.get_text()
    for t in texts:
        ext = t.get_window_extent()
        inside = [b for b in boxes if b.x0 - 1 <= ext.x0 and ext.x1 <= b.x1 + 1 and b.y0 - 1 <= ext.y0]
        assert inside, t.get_text()
    plt.close(fig)
