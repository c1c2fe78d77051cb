"""SQL generation of the sufficient statistics (models/sqlstats.py), evaluated by DuckDB against NumPy."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pytest

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models.formula import _Spline, parse_formula
from sciatica_outcomes.models.sqlstats import (
    DUCKDB,
    SqlDialect,
    column_kind,
    complete_filter,
    numeric_sql,
    spline_pieces,
    variable_sql,
)


def _eval(exprs: list[str], x: np.ndarray) -> np.ndarray:
    con = duckdb.connect()
    con.register("xs", pl.DataFrame({"x": x}).to_arrow())
    sel = ", ".join(f"{e} AS c{j}" for j, e in enumerate(exprs))
    res = con.execute(f"SELECT {sel} FROM xs").fetchnumpy()
    return np.column_stack([np.asarray(res[f"c{j}"], dtype=float) for j in range(len(exprs))])


@pytest.mark.parametrize(("knots", "boundary"), [([], [0.0, 26.0]), ([3.0, 9.5, 14.0], [0.0, 26.0])])
def test_spline_pieces_reproduce_the_ns_basis_inside_and_outside_the_boundary(
    knots: list[float], boundary: list[float]
) -> None:
    spline = _Spline(np.array(knots), np.array(boundary))
    rng = np.random.default_rng(3)
    x = np.r_[rng.uniform(-10.0, 40.0, 400), knots, boundary]
    f = parse_formula("y ~ ns(x, df = 2) + (1 | g)")
    var = f.variables["ns(x, df = 2)"]
    var.spline = spline
    got = _eval(variable_sql(var, {"x": "float"}, DUCKDB, f.text), x)
    want = spline.basis(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13 * np.abs(want).max())
    breaks, coef, _ = spline_pieces(spline)
    assert coef.shape == (4, len(knots) + 1, len(knots) + 1)
    assert breaks.tolist() == [boundary[0], *knots, boundary[1]]


def test_log1p_is_accurate_for_tiny_arguments_without_a_log1p_function() -> None:
    x = np.array([1e-18, -3e-12, 1e-9, 2e-5, 0.3, 5.0, 0.0])
    got = _eval([DUCKDB.log1p('"x"')], x)[:, 0]
    np.testing.assert_allclose(got, np.log1p(x), rtol=4 * np.finfo(float).eps, atol=0)
    assert SqlDialect("spark", quote_char="`", has_log1p=True).log1p("`x`") == "log1p(`x`)"


def test_identifiers_literals_and_the_complete_row_filter() -> None:
    assert DUCKDB.ident('we"ird') == '"we""ird"'
    assert DUCKDB.string("it's") == "'it''s'"
    spark = SqlDialect("spark", quote_char="`", string_type="STRING", quantile_fn="percentile")
    assert spark.ident("a`b") == "`a``b`"
    assert spark.quantiles("`x`", [0.25, 0.5]) == "percentile(`x`, array(0.25, 0.5))"
    assert spark.to_text("`g`") == "CAST(`g` AS STRING)"
    assert DUCKDB.quantiles('"x"', [0.5]) == 'quantile_cont("x", [0.5])'
    assert _eval([DUCKDB.double(0.1) + " - 0.1"], np.zeros(1))[0, 0] == 0.1 - 0.1
    kinds = {"a": "float", "b": "numeric", "c": "categorical"}
    where = complete_filter(["a", "b", "c"], kinds, DUCKDB)
    con = duckdb.connect()
    frame = pl.DataFrame(
        {"a": [1.0, float("nan"), None, 2.0], "b": [1, 2, 3, None], "c": ["x", "y", "z", "w"]}
    )
    con.register("t", frame.to_arrow())
    assert con.execute(f"SELECT count(*) FROM t WHERE {where}").fetchone() == (1,)
    assert [column_kind(t) for t in ("VARCHAR", "BOOLEAN", "DOUBLE", "BIGINT", "DECIMAL(4,1)", "DATE")] == [
        "categorical",
        "boolean",
        "float",
        "numeric",
        "numeric",
        "other",
    ]


def test_unsupported_expressions_are_refused_by_name() -> None:
    f = parse_formula("y ~ cos(week) + (1 | g)")
    with pytest.raises(ModelSpecificationError, match="'cos\\(week\\)' is not supported out of core"):
        numeric_sql(f.variables["cos(week)"].node, {"week": "float"}, DUCKDB, f.text)
    f = parse_formula("y ~ group + (1 | g)")
    with pytest.raises(ModelSpecificationError, match="categorical but is used in arithmetic"):
        numeric_sql(
            parse_formula("y ~ log(group) + (1 | g)").variables["log(group)"].node,
            {"group": "categorical"},
            DUCKDB,
            f.text,
        )
