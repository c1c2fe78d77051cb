"""Formula parsing and design matrices: R's term order and coefficient names, codings, splines, errors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from lmm_golden import CASES, load_data

from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import Design, parse_formula
from sciatica_outcomes.models.formula import deparse


def frame() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    n = 30
    return pl.DataFrame(
        {
            "y": rng.normal(size=n),
            "week": np.tile(np.arange(0, 30, 3.0), 3),
            "adherence": rng.uniform(size=n),
            "age": rng.normal(50, 10, n),
            "group": np.repeat(["b", "a", "c"], 10),
            "flag": np.tile([True, False], 15),
            "patient": np.repeat([1, 2, 3], 10),
        }
    )


def names(formula: str, reference: dict | None = None) -> list[str]:
    design, x = Design.build(parse_formula(formula), frame(), reference)
    assert x.shape[1] == len(design.column_names)
    return design.column_names


def test_terms_in_r_order_and_names() -> None:
    """R orders terms by degree, then appearance; interaction variables by first appearance."""
    assert names("y ~ week * adherence + age + (week | patient)") == [
        "(Intercept)",
        "week",
        "adherence",
        "age",
        "week:adherence",
    ]
    assert names("y ~ adherence:week + week + adherence") == [
        "(Intercept)",
        "week",
        "adherence",
        "adherence:week",
    ]
    assert names("y ~ 0 + week") == ["week"]
    assert names("y ~ week - 1") == ["week"]
    assert names("y ~ (week + age + adherence)^2") == [
        "(Intercept)",
        "week",
        "age",
        "adherence",
        "week:age",
        "week:adherence",
        "age:adherence",
    ]


def test_factor_coding_and_reference() -> None:
    assert names("y ~ week * group") == [
        "(Intercept)",
        "week",
        "groupb",
        "groupc",
        "week:groupb",
        "week:groupc",
    ]
    assert names("y ~ group", {"group": "c"}) == ["(Intercept)", "groupa", "groupb"]
    # R's rule (checked with model.matrix): contrasts when the term without the factor is in the model,
    # indicators otherwise
    assert names("y ~ week + week:group") == ["(Intercept)", "week", "week:groupb", "week:groupc"]
    assert names("y ~ group:week") == ["(Intercept)", "groupa:week", "groupb:week", "groupc:week"]
    assert names("y ~ 0 + week:group") == ["week:groupa", "week:groupb", "week:groupc"]
    assert names("y ~ 0 + group") == ["groupa", "groupb", "groupc"]
    assert names("y ~ flag + factor(patient)") == [
        "(Intercept)",
        "flagTRUE",
        "factor(patient)2",
        "factor(patient)3",
    ]
    with pytest.raises(ModelSpecificationError, match="reference level 'z'"):
        names("y ~ group", {"group": "z"})
    with pytest.raises(ModelSpecificationError, match="not factors"):
        names("y ~ week", {"group": "a"})


def test_transforms_deparse_like_r() -> None:
    got = names("y ~ log1p(week) + pmax(week-12,0) + I(week^2) + ns(week, df=3)")
    assert got == [
        "(Intercept)",
        "log1p(week)",
        "pmax(week - 12, 0)",
        "I(week^2)",
        "ns(week, df = 3)1",
        "ns(week, df = 3)2",
        "ns(week, df = 3)3",
    ]
    _, x = Design.build(parse_formula("y ~ pmax(week - 12, 0) + I(week^2)"), frame())
    w = frame()["week"].to_numpy()
    assert np.array_equal(x[:, 1], np.maximum(w - 12, 0)) and np.array_equal(x[:, 2], w**2)


def test_ns_basis_reproduces_r_through_golden_fit() -> None:
    """The spline case's fitted values depend on the exact basis; its estimates match R (test_lmm)."""
    case = next(c for c in CASES if c["name"] == "spline_time")
    data = load_data(case)
    design, x = Design.build(parse_formula(case["formula"]), data)
    # properties of splines::ns: zero at the left boundary, linear beyond the boundary knots
    assert np.allclose(design.matrix(pl.DataFrame({"week": [0.0], "adherence": [0.5]}))[0, 1:4], 0.0)
    hi = float(data["week"].max())
    pts = design.matrix(pl.DataFrame({"week": [hi + 1, hi + 2, hi + 3], "adherence": [0.5] * 3}))[:, 1:4]
    assert np.allclose(pts[2] - pts[1], pts[1] - pts[0])
    assert x.shape == (data.height, 5)


def test_ns_with_knots_and_new_data_levels() -> None:
    design, _ = Design.build(parse_formula("y ~ ns(week, knots = c(6, 12)) + group"), frame())
    assert design.column_names[1:4] == [
        "ns(week, knots = c(6, 12))1",
        "ns(week, knots = c(6, 12))2",
        "ns(week, knots = c(6, 12))3",
    ]
    new = design.matrix(pl.DataFrame({"week": [3.0], "group": ["zzz"]}))
    assert np.isnan(new[0, -2:]).all()  # unseen level: not silently coded as the reference


def test_random_terms() -> None:
    f = parse_formula("y ~ week + (1 | clinic) + (week | patient)")
    assert [(t.group, t.variables) for t in f.random] == [("clinic", (None,)), ("patient", (None, "week"))]
    f = parse_formula("y ~ week + (1 | patient) + (0 + week | patient)")
    assert [t.variables for t in f.random] == [(None,), ("week",)]
    f = parse_formula("y ~ week + (week || patient)")
    assert [t.variables for t in f.random] == [(None,), ("week",)]
    assert f.groups == ["patient"]
    assert f.columns() == ["patient", "week", "y"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("y week", "unexpected 'week'"),
        ("week + age", "expected 'response ~ terms'"),
        ("y ~ week $ 2", "cannot read"),
        ("y ~ week + (factor(g) | patient)", "not supported"),
        ("y ~ week + (week:age | patient)", "interactions inside random terms"),
        ("y ~ week + 2", "is not a term"),
        ("y ~ (week", "unexpected end"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ModelSpecificationError, match=match):
        parse_formula(text)


def test_design_errors_name_the_problem() -> None:
    with pytest.raises(ModelSpecificationError, match="column 'dose'"):
        Design.build(parse_formula("y ~ dose"), frame())
    with pytest.raises(ModelSpecificationError, match="categorical but is used in arithmetic"):
        Design.build(parse_formula("y ~ log(group)"), frame())
    with pytest.raises(ModelSpecificationError, match="less than the number of distinct values"):
        Design.build(parse_formula("y ~ poly(patient, 3)"), frame())
    with pytest.raises(ModelSpecificationError, match="poly\\(\\) accepts"):
        Design.build(parse_formula("y ~ poly(week, 2, coefs = 1)"), frame())
    with pytest.raises(ModelSpecificationError, match="factor\\(\\) takes one column"):
        Design.build(parse_formula("y ~ factor(group, levels = 2)"), frame())


def test_deparse_numbers() -> None:
    f = parse_formula("y ~ pmax(week - 1e6, 0.5) + I(week * 2.50)")
    assert [deparse(v.node) for v in f.variables.values()] == ["pmax(week - 1e+06, 0.5)", "I(week * 2.5)"]


def labels(formula: str) -> list[str]:
    return [":".join(t) for t in parse_formula(formula).terms]


def test_precedence_and_associativity_as_r() -> None:
    """Expected labels printed by R 4.2.2: ``attr(terms(f), "term.labels")`` (issue 14)."""
    assert labels("y ~ a + b * c") == ["a", "b", "c", "b:c"]
    assert labels("y ~ a + b / c") == ["a", "b", "b:c"]
    assert labels("y ~ a - b * c") == ["a"]
    assert labels("y ~ a * b:c") == ["a", "b:c", "a:b:c"]
    assert labels("y ~ a * b %in% c") == ["a", "b:c", "a:b:c"]
    assert labels("y ~ (a + b)/c") == ["a", "b", "a:b:c"]
    assert labels("y ~ a * b - a") == ["b", "a:b"]
    assert labels("y ~ a*b - a + a") == ["b", "a", "a:b"]
    assert labels("y ~ b:a + a") == ["a", "b:a"]
    assert labels("y ~ -a:b") == []
    f = parse_formula("y ~ 0 + a + 1")
    assert f.intercept and labels("y ~ 0 + a + 1") == ["a"]
    assert not parse_formula("y ~ -1 + a").intercept


def test_zero_or_one_before_an_interaction_and_a_random_term() -> None:
    """``0 + week * group`` ended in a KeyError ('__int0__') before issue 14."""
    f = parse_formula("y ~ 0 + week * group + (week | patient)")
    assert not f.intercept and [t.variables for t in f.random] == [(None, "week")]
    assert names("y ~ 0 + week * group + (week | patient)") == [
        "week",
        "groupa",
        "groupb",
        "groupc",
        "week:groupb",
        "week:groupc",
    ]
    assert names("y ~ 1 + week * group") == names("y ~ week * group")


def test_factor_of_a_numeric_column_orders_levels_numerically() -> None:
    """R: ``levels(factor(c(2, 4, 8, 12, 26)))`` is 2, 4, 8, 12, 26 (reference 2, not 12)."""
    data = pl.DataFrame({"y": np.arange(10.0), "week": [2.0, 4.0, 8.0, 12.0, 26.0] * 2})
    design, x = Design.build(parse_formula("y ~ factor(week)"), data)
    assert design.column_names == [
        "(Intercept)",
        "factor(week)4",
        "factor(week)8",
        "factor(week)12",
        "factor(week)26",
    ]
    assert np.array_equal(x[:, 1], (data["week"] == 4.0).to_numpy().astype(float))
    # new data holding the levels as text (as the emmeans grid does) map to the same columns
    new = design.matrix(pl.DataFrame({"week": ["12", "2", "5"]}))
    assert np.array_equal(new[:2], x[[3, 0]]) and np.isnan(new[2, 1:]).all()
    with pytest.raises(ModelSpecificationError, match="takes a column name"):
        Design.build(parse_formula('y ~ relevel(factor(week), ref = "12")'), data)
    relevelled, _ = Design.build(parse_formula("y ~ factor(week)"), data, {"week": 12})
    assert relevelled.column_names[1:3] == ["factor(week)2", "factor(week)4"]


def test_relevel_sets_the_reference_level() -> None:
    assert names('y ~ relevel(group, ref = "c")') == [
        "(Intercept)",
        'relevel(group, ref = "c")a',
        'relevel(group, ref = "c")b',
    ]
    with pytest.raises(ModelSpecificationError, match="sets its reference level in the formula"):
        names('y ~ relevel(group, ref = "c")', {"group": "a"})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("y ~ .", "'.' \\(all other columns\\) is not supported"),
        ("y ~ week * (1 | patient)", "random-effects term inside an operator"),
        ("y ~ (week + age)^1", "invalid power"),
        ("y ~ offset(week)", "is not supported"),
        ("y ~ C(group, base = 2)", "reference=\\{column: level\\}"),
        ("y ~ week | age", "cannot be read as model terms"),
        ("y ~ week * y", "response 'y' is also on the right-hand side"),
    ],
)
def test_refused_formulas_name_the_term(text: str, match: str) -> None:
    with pytest.raises(ModelSpecificationError, match=match):
        parse_formula(text)


def test_scale_and_poly_keep_training_values_for_new_data() -> None:
    design, x = Design.build(parse_formula("y ~ scale(age) + poly(week, 2)"), frame())
    age = frame()["age"].to_numpy()
    assert np.allclose(x[:, 1], (age - age.mean()) / age.std(ddof=1), rtol=0, atol=1e-13)
    # orthonormal, orthogonal to the intercept
    assert np.allclose(x[:, 2:].T @ x[:, 2:], np.eye(2), atol=1e-13) and np.allclose(
        x[:, 2:].sum(0), 0, atol=1e-13
    )
    one = design.matrix(frame().head(1))
    assert np.allclose(one, x[:1], rtol=0, atol=1e-12)  # one row: the training centre, scale and alpha
