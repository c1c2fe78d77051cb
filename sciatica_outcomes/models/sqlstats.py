"""SQL for the growth model's per-patient sufficient statistics, generated from the formula's design.

The profiled-deviance engine (:mod:`~sciatica_outcomes.models.engine`) needs, per patient ``i``,
``Z1_i'Z1_i``, ``Z1_i'[X y]`` (and ``Z1_i'Z2`` when patients are nested in clinics), per clinic ``Z2'Z2`` and
``Z2'[X y]``, and the totals ``[X y]'[X y]`` and ``n``. Each is a sum of products of design columns, so a
``GROUP BY`` computes it where the data live. This module writes those queries; it runs nothing and imports
no database driver, so that another SQL engine (Spark SQL, a warehouse) can reuse it through a
:class:`SqlDialect`. :mod:`~sciatica_outcomes.models.outofcore` runs them on DuckDB.

Design columns as SQL expressions (:class:`DesignSql`): numeric columns and arithmetic (``+ - * / ^``),
``log``, ``log1p``, ``exp``, ``sqrt``, ``abs``, ``pmax``, ``pmin``, ``I()``, products of the columns of
interacting terms (first variable varying fastest, as ``model.matrix``), treatment-coded factor indicators
(levels from a ``SELECT DISTINCT``), ``poly(x, d, raw = TRUE)`` and natural splines ``ns(x, ...)``: the
basis is a cubic polynomial between consecutive knots, written as a ``CASE`` over the intervals once the
knots (type-7 quantiles, by SQL) are known. Orthogonal ``poly()`` and ``scale()`` are refused with a message
naming the term. Rows with a null (or a floating NaN) in any model column are excluded as
:func:`sciatica_outcomes.models.base.complete_rows` excludes them, and counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models.formula import Design, Node, Variable, _Spline, deparse

__all__ = [
    "DUCKDB",
    "DesignSql",
    "SqlDialect",
    "column_kind",
    "complete_filter",
    "design_sql",
    "numeric_sql",
    "spline_knot_query",
    "spline_pieces",
    "statistics_queries",
    "variable_sql",
]


@dataclass(frozen=True)
class SqlDialect:
    """How one SQL engine writes identifiers, literals and the few functions that differ between engines.

    Attributes
    ----------
    name : str
        Engine name (messages only).
    quote_char : str
        Identifier quote (``"`` in DuckDB and ANSI SQL, a backtick in Spark SQL).
    has_log1p : bool
        Whether ``log1p(x)`` exists; otherwise it is written with the accurate ``ln(u) x / (u - 1)``,
        ``u = 1 + x`` (Goldberg 1991, theorem 4).
    string_type : str
        Type name of a cast to text (``VARCHAR``; ``STRING`` in Spark SQL).
    quantile_fn : str
        Exact type-7 (linear interpolation) quantiles of a column for a list of probabilities,
        ``quantile_cont(x, [p1, p2])`` in DuckDB (``percentile(x, array(p1, p2))`` in Spark SQL).
    isfinite, isinf : str
        Names of the finiteness and infinity tests of a double. "Not NaN" is written ``isfinite(x) OR
        isinf(x)``, not ``NOT isnan(x)``: DuckDB 2.0.1 folds ``isnan`` of a Parquet column to false when
        the file's statistics (which leave NaN out) show none, and would keep NaN rows.
    """

    name: str
    quote_char: str = '"'
    has_log1p: bool = False
    isfinite: str = "isfinite"
    isinf: str = "isinf"
    string_type: str = "VARCHAR"
    quantile_fn: str = "quantile_cont"

    def ident(self, name: str) -> str:
        """A quoted identifier."""
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    @staticmethod
    def double(value: float) -> str:
        """A double literal, exact (``repr`` round-trips; the cast parses it correctly rounded)."""
        return f"CAST('{float(value)!r}' AS DOUBLE)"

    @staticmethod
    def string(value: str) -> str:
        """A string literal."""
        return "'" + str(value).replace("'", "''") + "'"

    def to_double(self, expr: str) -> str:
        """``expr`` as a double."""
        return f"CAST({expr} AS DOUBLE)"

    def log1p(self, expr: str) -> str:
        """``log(1 + x)``, accurate for small ``x``."""
        if self.has_log1p:
            return f"log1p({expr})"
        u = f"(1.0 + ({expr}))"
        return f"(CASE WHEN {u} = 1.0 THEN ({expr}) ELSE ln({u}) * ({expr}) / ({u} - 1.0) END)"

    def quantiles(self, expr: str, probs: Sequence[float]) -> str:
        """Type-7 quantiles of ``expr`` at ``probs`` (one list-valued aggregate)."""
        plist = ", ".join(repr(float(p)) for p in probs)
        if self.quantile_fn == "percentile":
            return f"percentile({expr}, array({plist}))"
        return f"{self.quantile_fn}({expr}, [{plist}])"

    def to_text(self, expr: str) -> str:
        """``expr`` as text."""
        return f"CAST({expr} AS {self.string_type})"

    def not_nan(self, expr: str) -> str:
        """True when ``expr`` (not null) is not NaN."""
        return f"({self.isfinite}({expr}) OR {self.isinf}({expr}))"

    def not_finite(self, expr: str) -> str:
        """True when ``expr`` is null, NaN or infinite."""
        return f"NOT coalesce({self.isfinite}({expr}), false)"


#: DuckDB (the default engine of :mod:`~sciatica_outcomes.models.outofcore`)
DUCKDB = SqlDialect("duckdb")


def column_kind(sql_type: str) -> str:
    """Kind of a SQL type: ``"categorical"``, ``"boolean"``, ``"float"`` (NaN possible), ``"numeric"``
    or ``"other"``."""
    t = sql_type.upper()
    if t.startswith("BOOL"):
        return "boolean"
    if t.startswith(("VARCHAR", "STRING", "TEXT", "ENUM", "CHAR")):
        return "categorical"
    if t in ("DOUBLE", "FLOAT", "REAL", "FLOAT4", "FLOAT8"):
        return "float"
    if t.startswith(("DECIMAL", "NUMERIC")) or t in (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "INT",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "LONG",
        "SHORT",
        "BYTE",
    ):
        return "numeric"
    return "other"


def complete_filter(columns: Sequence[str], kinds: Mapping[str, str], dialect: SqlDialect) -> str:
    """``WHERE`` condition of the complete rows: no null, and no NaN in a floating column."""
    parts = []
    for c in columns:
        q = dialect.ident(c)
        parts.append(f"{q} IS NOT NULL")
        if kinds[c] == "float":
            parts.append(dialect.not_nan(q))
    return " AND ".join(parts) if parts else "TRUE"


# --------------------------------------------------------------------------------------------------
# expressions
# --------------------------------------------------------------------------------------------------

_FUNCS = {"log": "ln", "exp": "exp", "sqrt": "sqrt", "abs": "abs"}


def numeric_sql(node: Node, kinds: Mapping[str, str], dialect: SqlDialect, formula: str) -> str:
    """A numeric expression of the formula (``log1p(week)``, ``pmax(week - 12, 0)``) as SQL."""
    k = node.kind
    if k == "num":
        return dialect.double(node.value)
    if k == "name":
        if kinds.get(node.value) in ("categorical", "boolean"):
            raise ModelSpecificationError(
                f"formula {formula!r}: column {node.value!r} is categorical but is used in arithmetic"
            )
        return dialect.to_double(dialect.ident(node.value))
    if k == "paren":
        return f"({numeric_sql(node.args[0], kinds, dialect, formula)})"
    if k == "neg":
        return f"(-{numeric_sql(node.args[0], kinds, dialect, formula)})"
    if k == "binop":
        a, b = (numeric_sql(x, kinds, dialect, formula) for x in node.args)
        if node.value in ("+", "-", "*", "/"):
            return f"({a} {node.value} {b})"
        if node.value == "^":
            return f"power({a}, {b})"
        raise ModelSpecificationError(f"formula {formula!r}: operator {node.value!r} inside a call")
    if k == "call":
        fn = node.value
        args = node.args
        if fn in _FUNCS and len(args) == 1:
            return f"{_FUNCS[fn]}({numeric_sql(args[0], kinds, dialect, formula)})"
        if fn == "log1p" and len(args) == 1:
            return dialect.log1p(numeric_sql(args[0], kinds, dialect, formula))
        if fn == "I" and len(args) == 1:
            return numeric_sql(args[0], kinds, dialect, formula)
        if fn in ("pmax", "pmin") and len(args) >= 2:
            parts = ", ".join(numeric_sql(a, kinds, dialect, formula) for a in args)
            return f"{'greatest' if fn == 'pmax' else 'least'}({parts})"
    raise ModelSpecificationError(
        f"formula {formula!r}: {deparse(node)!r} is not supported out of core; supported there are "
        "numeric columns, arithmetic, log, log1p, exp, sqrt, abs, pmax, pmin, I, factors, "
        "poly(x, d, raw = TRUE) and ns(); fit in memory (--engine memory) for the others"
    )


def spline_pieces(spline: _Spline) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The natural-spline basis of ``ns()`` as cubic pieces between its knots.

    Returns
    -------
    breaks : numpy.ndarray
        ``(r + 1,)``: lower boundary, interior knots, upper boundary.
    coef : numpy.ndarray
        ``(4, r, k)``: on ``[breaks[j], breaks[j + 1]]`` column ``c`` is ``sum_m coef[m, j, c] h^(3 - m)``
        with ``h = x - breaks[j]`` (scipy's ``PPoly`` layout).
    ends : numpy.ndarray
        ``(2, 2, k)``: value and first derivative at the lower and upper boundary (the basis is linear
        outside the boundary knots).

    Notes
    -----
    Column ``c`` of :meth:`_Spline.basis` is the cubic B-spline with coefficients ``(0, Q[:, 2 + c])``
    (``Q`` the rotation that removes the second derivatives at the boundary), so its polynomial pieces are
    exact (``PPoly.from_spline``); the two evaluations differ by rounding only.
    """
    from scipy.interpolate import BSpline, PPoly  # noqa: PLC0415 - only ns() terms need SciPy's splines

    from sciatica_outcomes.models.formula import _bspline_basis  # noqa: PLC0415

    aknots = np.sort(np.concatenate([np.repeat(spline.boundary, 4), spline.knots]))
    const = _bspline_basis(spline.boundary, aknots, deriv=2)[:, 1:]
    q, _ = np.linalg.qr(const.T, mode="complete")
    rot = q[:, 2:]
    k = rot.shape[1]
    breaks = np.concatenate([spline.boundary[:1], spline.knots, spline.boundary[1:]])
    r = breaks.shape[0] - 1
    coef = np.empty((4, r, k))
    for c in range(k):  # a loop over the (few) basis columns
        pp = PPoly.from_spline(BSpline(aknots, np.r_[0.0, rot[:, c]], 3))
        starts = pp.x[:-1]
        keep = pp.x[1:] > starts  # the non-empty intervals, in order
        coef[:, :, c] = pp.c[:, keep]
    h = breaks[-1] - breaks[-2]
    c0, c1, c2, c3 = coef[:, -1, :]
    ends = np.empty((2, 2, k))
    ends[0, 0], ends[0, 1] = coef[3, 0], coef[2, 0]
    ends[1, 0] = ((c0 * h + c1) * h + c2) * h + c3
    ends[1, 1] = (3.0 * c0 * h + 2.0 * c1) * h + c2
    return breaks, coef, ends


def _spline_sql(x: str, spline: _Spline, dialect: SqlDialect) -> list[str]:
    breaks, coef, ends = spline_pieces(spline)
    lit = dialect.double
    out = []
    for c in range(coef.shape[2]):
        below = f"{lit(ends[0, 0, c])} + {lit(ends[0, 1, c])} * ({x} - {lit(breaks[0])})"
        whens = [f"WHEN {x} < {lit(breaks[0])} THEN {below}"]
        for j in range(coef.shape[1]):
            h = f"({x} - {lit(breaks[j])})"
            a0, a1, a2, a3 = (lit(v) for v in coef[:, j, c])
            whens.append(
                f"WHEN {x} <= {lit(breaks[j + 1])} THEN (({a0} * {h} + {a1}) * {h} + {a2}) * {h} + {a3}"
            )
        tail = f"{lit(ends[1, 0, c])} + {lit(ends[1, 1, c])} * ({x} - {lit(breaks[-1])})"
        out.append(f"(CASE {' '.join(whens)} ELSE {tail} END)")
    return out


def _factor_sql(var: Variable, column: str, kinds: Mapping[str, str], dialect: SqlDialect) -> list[str]:
    """Indicator of every level of a factor (the coding picks which columns enter the design)."""
    col = dialect.ident(column)
    out = []
    for i, level in enumerate(var.levels):
        if var.level_values is not None:
            cond = f"{dialect.to_double(col)} = {dialect.double(var.level_values[i])}"
        elif kinds.get(column) == "boolean":  # levels FALSE, TRUE as the in-memory design names them
            cond = f"{col} = {'true' if level == 'TRUE' else 'false'}"
        else:
            cond = f"{dialect.to_text(col)} = {dialect.string(str(level))}"
        out.append(f"(CASE WHEN {cond} THEN 1.0 ELSE 0.0 END)")
    return out


def variable_sql(var: Variable, kinds: Mapping[str, str], dialect: SqlDialect, formula: str) -> list[str]:
    """SQL of the columns of one resolved variable (all levels of a factor, one per basis column else)."""
    from sciatica_outcomes.models.formula import _call_options, _factor_column, _flag  # noqa: PLC0415

    node = var.node
    if var.kind == "factor":
        return _factor_sql(var, _factor_column(node, formula), kinds, dialect)
    if node.kind == "call" and node.value == "ns":
        if var.spline is None:  # pragma: no cover - resolved by the caller first
            raise ModelSpecificationError(f"formula {formula!r}: ns() knots are not resolved")
        return _spline_sql(numeric_sql(node.args[0], kinds, dialect, formula), var.spline, dialect)
    if node.kind == "call" and node.value == "poly":
        opts = _call_options(node, formula, {"degree": "d", "raw": "FALSE"})
        if not _flag(opts.get("raw"), False, formula):
            raise ModelSpecificationError(
                f"formula {formula!r}: orthogonal {deparse(node)!r} needs its recurrence coefficients "
                "from the rows and is not supported out of core; write poly(x, d, raw = TRUE) or fit in "
                "memory (--engine memory)"
            )
        x = numeric_sql(node.args[0], kinds, dialect, formula)
        degree = 1 if "degree" not in opts else int(opts["degree"].value)
        var.suffixes = [str(j + 1) for j in range(degree)]
        return [x if j == 1 else f"power({x}, {dialect.double(j)})" for j in range(1, degree + 1)]
    if node.kind == "call" and node.value == "scale":
        raise ModelSpecificationError(
            f"formula {formula!r}: {deparse(node)!r} is not supported out of core; centre and scale the "
            "column in the data or fit in memory (--engine memory)"
        )
    return [numeric_sql(node, kinds, dialect, formula)]


# --------------------------------------------------------------------------------------------------
# the design and the statistics queries
# --------------------------------------------------------------------------------------------------


@dataclass
class DesignSql:
    """SQL expressions of every column the statistics need, and the row filter.

    ``x`` (fixed effects, in the design's column order), ``y`` (response), ``z1`` and ``z2`` (random
    effects of the inner and outer level, terms in the engine's order), ``inner`` and ``outer`` (grouping
    columns, quoted) and ``where`` (the complete rows).
    """

    x: list[str]
    y: str
    z1: list[str]
    z2: list[str]
    inner: str
    outer: str | None
    where: str
    names: list[str] = field(default_factory=list)  # design column names (messages)


def design_sql(
    design: Design,
    z_terms: Mapping[str, Sequence[tuple[str | None, ...]]],
    inner: str,
    outer: str | None,
    kinds: Mapping[str, str],
    where: str,
    dialect: SqlDialect = DUCKDB,
) -> DesignSql:
    """SQL of the fixed design (a :class:`Design` whose variables are resolved), response and random terms.

    Parameters
    ----------
    design : Design
        From :meth:`Design.assemble`, levels and knots set.
    z_terms : mapping
        Grouping column -> the variables of each of its random terms in the engine's order (``None`` is
        the intercept).
    inner, outer : str
        Inner (patient) and optional outer (clinic) grouping column.
    kinds : mapping
        :func:`column_kind` of each data column.
    where : str
        :func:`complete_filter`.
    dialect : SqlDialect
        Target engine.
    """
    formula = design.formula
    text = formula.text
    cols: dict[str, list[str]] = {}
    for lab, var in formula.variables.items():
        cols[lab] = variable_sql(var, kinds, dialect, text)
    x: list[str] = ["1.0"] if formula.intercept else []
    for codes in design.coding:
        block: list[str | None] = [None]
        for lab, how in codes:
            var = formula.variables[lab]
            m = cols[lab]
            if how == "contrast":
                m = m[1:]
            # the first variable varies fastest, as Design._matrix and R's model.matrix
            block = [mc if b is None else f"{b} * {mc}" for mc in m for b in block]
        x.extend("1.0" if b is None else b for b in block)
    y = numeric_sql(formula.response, kinds, dialect, text)

    def z_cols(grp: str) -> list[str]:
        out = []
        for term in z_terms.get(grp, ()):
            for lab in term:
                if lab is None:
                    out.append("1.0")
                    continue
                var = formula.random_variables[lab]
                for c in var.columns:
                    if kinds.get(c) in ("categorical", "boolean"):
                        raise ModelSpecificationError(
                            f"formula {text!r}: random slope {lab!r} uses categorical column {c!r}; only "
                            "numeric random slopes are supported"
                        )
                out.append(numeric_sql(var.node, kinds, dialect, text))
        return out

    return DesignSql(
        x=x,
        y=y,
        z1=z_cols(inner),
        z2=z_cols(outer) if outer is not None else [],
        inner=dialect.ident(inner),
        outer=None if outer is None else dialect.ident(outer),
        where=where,
        names=list(design.column_names),
    )


def _cross(prefix: str, u: Sequence[str], v: Sequence[str], sym: bool) -> list[str]:
    """``sum(u_a * v_b) AS prefix_a_b`` for every pair (``b >= a`` when symmetric)."""
    out = []
    for a, ua in enumerate(u):
        for b in range(a if sym else 0, len(v)):
            out.append(f"sum(({ua}) * ({v[b]})) AS {prefix}_{a}_{b}")
    return out


def statistics_queries(
    d: DesignSql, source: str, dialect: SqlDialect = DUCKDB, extra: Sequence[str] = ()
) -> dict[str, str]:
    """The statistics passes over ``source`` (a table, view or subquery name).

    ``extra`` are further aggregates of the totals pass (means for the reference grid, time bounds).

    Returns
    -------
    dict
        ``"totals"``: one row with ``n``, ``ww_a_b`` (``[X y]'[X y]``, ``b >= a``), and ``bad_j`` (rows
        where design column ``j`` (``y`` last, then ``z1``, ``z2``) is not finite); ``"inner"``: one row per
        inner group (ordered by outer group, then inner) with ``g1`` (and ``g2``), ``n_i``, ``c11_a_b``
        (``b >= a``), ``f1_a_j`` and ``c12_a_b``; ``"outer"`` (nested only): one row per outer group with
        ``g2``, ``c22_a_b`` and ``f2_a_j``.
    """
    w = [*d.x, d.y]
    bad = [
        f"count(*) FILTER (WHERE {dialect.not_finite(e)}) AS bad_{j}"
        for j, e in enumerate([*w, *d.z1, *d.z2])
    ]
    totals = ", ".join(["count(*) AS n", *_cross("ww", w, w, sym=True), *bad, *extra])
    out = {"totals": f"SELECT {totals} FROM {source} WHERE {d.where}"}
    keys = [d.inner] if d.outer is None else [d.outer, d.inner]
    key_sel = [f"{d.inner} AS g1"] + ([] if d.outer is None else [f"{d.outer} AS g2"])
    inner = [
        *key_sel,
        "count(*) AS n_i",
        *_cross("c11", d.z1, d.z1, sym=True),
        *_cross("f1", d.z1, w, sym=False),
    ]
    if d.outer is not None:
        inner += _cross("c12", d.z1, d.z2, sym=False)
    group = ", ".join(keys)
    out["inner"] = (
        f"SELECT {', '.join(inner)} FROM {source} WHERE {d.where} GROUP BY {group} ORDER BY {group}"
    )
    if d.outer is not None:
        outer = [f"{d.outer} AS g2", *_cross("c22", d.z2, d.z2, sym=True), *_cross("f2", d.z2, w, sym=False)]
        out["outer"] = (
            f"SELECT {', '.join(outer)} FROM {source} WHERE {d.where} GROUP BY {d.outer} ORDER BY {d.outer}"
        )
    return out


def spline_knot_query(
    x: str, df: int | None, has_knots: bool, source: str, where: str, dialect: SqlDialect = DUCKDB
) -> tuple[str, FloatArray]:
    """Boundary (min, max over finite values) and type-7 quantile knots of ``ns(x, df = k)``.

    Returns the query (columns ``lo``, ``hi`` and ``q`` a list, when the knots come from the data) and the
    quantile probabilities (``splines::ns``: ``df - 1`` equally spaced interior ones).
    """
    n_inner = 0 if has_knots else (1 if df is None else int(df)) - 1
    if n_inner < 0:
        raise ModelSpecificationError(f"ns(): df must be >= 1, got {df}")
    probs = np.linspace(0.0, 1.0, n_inner + 2)[1:-1]
    fin = f"{dialect.isfinite}({x})"
    sel = [f"min({x}) FILTER (WHERE {fin}) AS lo", f"max({x}) FILTER (WHERE {fin}) AS hi"]
    if n_inner:
        sel.append(f"{dialect.quantiles(x, probs.tolist())} FILTER (WHERE {fin}) AS q")
    return f"SELECT {', '.join(sel)} FROM {source} WHERE {where}", probs
