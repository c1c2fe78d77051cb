"""Factor x factor interaction columns hold the indicator their R-style name says."""

from __future__ import annotations

import numpy as np
import polars as pl

from sciatica_outcomes.models.formula import Design, parse_formula


def test_three_by_three_interaction_columns_match_their_names() -> None:
    frame = pl.DataFrame(
        {"y": [0.0] * 9, "a": ["a1", "a2", "a3"] * 3, "b": ["b1"] * 3 + ["b2"] * 3 + ["b3"] * 3}
    )
    design, x = Design.build(parse_formula("y ~ a * b"), frame)
    for la in ("a2", "a3"):
        for lb in ("b2", "b3"):
            col = x[:, design.column_names.index(f"a{la}:b{lb}")]
            expected = ((frame["a"] == la) & (frame["b"] == lb)).to_numpy().astype(float)
            assert np.array_equal(col, expected), (la, lb)
    # R's model.matrix order: a2:b2, a3:b2, a2:b3, a3:b3 (first factor fastest)
    names = [n for n in design.column_names if ":" in n]
    assert names == ["aa2:bb2", "aa3:bb2", "aa2:bb3", "aa3:bb3"]
