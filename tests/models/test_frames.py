"""Growth frames from canonical tables and the simulator."""

from __future__ import annotations

import polars as pl
import pytest

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.models.frames import growth_frame, simulate_growth
from sciatica_outcomes.synth import generate_cohort


def test_growth_frame_from_synthetic_tables() -> None:
    tables = generate_cohort(n_patients=60, seed=4).tables
    f = growth_frame(tables, "walk_tolerance_min", log=True)
    assert f.columns == ["patient", "clinic", "week", "y", "adherence", "age", "sex"]
    n = tables["measures"].filter(tables["measures"]["measure"] == "walk_tolerance_min").height
    assert f.height == n  # every measure row kept
    assert f["week"].min() >= 0 and f["adherence"].is_between(0, 1).all()
    with pytest.raises(UnusableInputError, match="no rows of measure"):
        growth_frame(tables, "unknown")
    with pytest.raises(UnusableInputError, match="needs the 'sessions' table"):
        growth_frame({"episodes": tables["episodes"], "measures": tables["measures"]}, "odi")


def test_simulate_growth_shape_and_determinism() -> None:
    a = simulate_growth(50, visits=4, seed=3)
    assert a.height == 200 and a["patient"].n_unique() == 50
    assert a.equals(simulate_growth(50, visits=4, seed=3))
    assert a.group_by("patient").agg(pl.col("week").min())["week"].max() == 0.0  # first visit at week 0
