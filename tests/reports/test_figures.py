"""Tests of the report figures' privacy rules."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import polars as pl

from sciatica_outcomes.reports.figures import drawable_units, funnel_plot
from sciatica_outcomes.reports.privacy import suppress_counts


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
