"""Model formulas in lme4 syntax: parsing, model frames and design matrices named as R names them.

A formula such as ``walk ~ week * adherence + age + (1 | clinic) + (week | patient)`` is parsed once into a
:class:`ModelFormula` (fixed terms in R's order, random-effect terms per grouping factor). Building the
design from a frame gives a :class:`Design` whose column names are those R prints (``(Intercept)``,
``week:adherence``, ``groupB``, ``ns(week, df = 3)1``, ``pmax(week - 12, 0)``) and which can rebuild the
same columns for new data (stored factor levels, spline knots), as ``predict`` and ``emmeans`` need.

Supported in the fixed part: R's formula grammar with R's precedence (``^`` > ``:`` > ``%in%`` > ``*``,
``/`` > ``+``, ``-``; ``a + b * c`` is ``a + b + c + b:c``) and R's term expansion (``a:b``, ``a * b``,
``(a + b)^2``, ``a / b``, ``b %in% a``, ``-`` removing terms, intercept removal with ``0 +`` or ``- 1``),
term order and factor coding as ``terms.formula`` and ``model.matrix``; numeric columns, categorical
columns (string, categorical, enum or boolean; treatment coding, reference level chosen with
``reference=`` or ``relevel(f, ref = "b")``), ``factor(x)`` (levels of a numeric column in numeric order, as
R), arithmetic inside calls, ``log``, ``log1p``, ``exp``, ``sqrt``, ``abs``, ``pmax``, ``pmin``,
``I(...)``, ``poly(x, d)`` (orthogonal as ``stats::poly``, or ``raw = TRUE``), ``scale(x)``, natural cubic
splines ``ns(x, df = k)`` or ``ns(x, knots = c(...))`` (as ``splines::ns``) and piecewise-linear hinges
such as ``pmax(week - 12, 0)``. ``poly``, ``scale``, ``ns`` and factor levels keep their training values
for new data, as R's ``predict`` does. ``.``, ``offset()`` and ``C()`` are refused with a message. Random
terms: ``(1 | g)``, ``(x | g)``, ``(0 + x | g)``, ``(x || g)`` with numeric ``x``; at most two grouping
factors, the first nested in the second.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.errors import ModelSpecificationError

__all__ = ["Design", "ModelFormula", "RandomTerm", "parse_formula"]

# --------------------------------------------------------------------------------------------------
# tokens and expressions
# --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<name>[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`)|(?P<op>\|\||%in%|[~+\-*/:^|(),=]))"
)


@dataclass(frozen=True)
class Node:
    """A node of a parsed R expression."""

    kind: str  # name, num, str, call, binop, neg, paren
    value: Any = None
    args: tuple[Node, ...] = ()
    names: tuple[str | None, ...] = ()


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ModelSpecificationError(
                f"formula {text!r}: cannot read {text[pos:]!r} at character {pos + 1}; "
                "use column names, numbers, + - * / : ^ %in% | ~ ( ) and function calls"
            )
        kind = m.lastgroup or "op"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


# binding powers as R's grammar (gram.y): ~ < | || < + - < * / < %in% < : < unary - + < ^ (right-assoc)
_BINARY = {"~": 1, "|": 2, "||": 2, "+": 5, "-": 5, "*": 6, "/": 6, "%in%": 7, ":": 8, "^": 11}
_UNARY_BP = 10


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def error(self, msg: str) -> ModelSpecificationError:
        return ModelSpecificationError(f"formula {self.text!r}: {msg}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of formula")
        if value is not None and tok[1] != value:
            raise self.error(f"expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.expr(0)
        if self.peek() is not None:
            raise self.error(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def expr(self, min_bp: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _BINARY:
                return left
            bp = _BINARY[tok[1]]
            if bp < min_bp:  # left-associative: the right operand is parsed at bp + 1
                return left
            self.take()
            right = self.expr(bp if tok[1] == "^" else bp + 1)
            left = Node("binop", tok[1], (left, right))

    def prefix(self) -> Node:
        kind, val = self.take()
        if kind == "num":
            return Node("num", float(val))
        if kind == "str":
            return Node("str", val[1:-1])
        if kind == "name":
            name = val.strip("`")
            if self.peek() == ("op", "("):
                self.take("(")
                args: list[Node] = []
                names: list[str | None] = []
                while self.peek() != ("op", ")"):
                    if (
                        self.peek() is not None
                        and self.peek()[0] == "name"  # type: ignore[index]
                        and self.i + 1 < len(self.tokens)
                        and self.tokens[self.i + 1] == ("op", "=")
                    ):
                        names.append(self.take()[1])
                        self.take("=")
                    else:
                        names.append(None)
                    args.append(self.expr(2))
                    if self.peek() == ("op", ","):
                        self.take(",")
                self.take(")")
                return Node("call", name, tuple(args), tuple(names))
            if name in ("TRUE", "FALSE"):
                return Node("num", 1.0 if name == "TRUE" else 0.0)
            return Node("name", name)
        if val == "(":
            inner = self.expr(0)
            self.take(")")
            return Node("paren", None, (inner,))
        if val in ("-", "+"):
            operand = self.expr(_UNARY_BP)
            return Node("neg", None, (operand,)) if val == "-" else operand
        raise self.error(f"unexpected {val!r}")


def _fmt_num(x: float) -> str:
    """Format a number as R's deparse does (15 significant digits, ``1e+06`` style)."""
    if float(x).is_integer() and abs(x) < 1e15:
        ax = abs(x)
        if ax >= 1e5 and ax == 10 ** round(math.log10(ax)):
            return f"{x:.0e}"
        return str(int(x))
    s = f"{x:.15g}"
    if "e" in s:
        mant, exp = s.split("e")
        sign = exp[0]
        return f"{mant}e{sign}{int(exp[1:]):02d}"
    return s


def deparse(node: Node) -> str:
    """R-style text of an expression (``pmax(week - 12, 0)``, ``ns(week, df = 3)``, ``week^2``)."""
    k = node.kind
    if k == "name":
        return node.value if re.fullmatch(r"[A-Za-z.][A-Za-z0-9_.]*", node.value) else f"`{node.value}`"
    if k == "num":
        return _fmt_num(node.value)
    if k == "str":
        return f'"{node.value}"'
    if k == "paren":
        return f"({deparse(node.args[0])})"
    if k == "neg":
        return f"-{deparse(node.args[0])}"
    if k == "call":
        parts = [
            f"{nm} = {deparse(a)}" if nm else deparse(a) for a, nm in zip(node.args, node.names, strict=True)
        ]
        return f"{node.value}({', '.join(parts)})"
    op = node.value
    left, right = (deparse(a) for a in node.args)
    if op in ("^", ":", "/"):  # R's deparse writes these without spaces
        return f"{left}{op}{right}"
    return f"{left} {op} {right}"


def _names_in(node: Node) -> list[str]:
    if node.kind == "name":
        return [node.value]
    out: list[str] = []
    for a in node.args:
        out.extend(_names_in(a))
    return out


# --------------------------------------------------------------------------------------------------
# variables (columns of the model frame) and their encoders
# --------------------------------------------------------------------------------------------------

_UNARY = {"log": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs}


def _bspline_basis(x: FloatArray, knots: FloatArray, deriv: int = 0) -> FloatArray:
    """Cubic B-spline basis as ``splines::splineDesign(knots, x, 4, derivs)`` (one column per spline)."""
    from scipy.interpolate import BSpline  # noqa: PLC0415 - 0.4 s to import; only ns() terms need it

    n_basis = knots.shape[0] - 4
    out = np.empty((x.shape[0], n_basis))
    right = knots[-1]
    for j in range(n_basis):  # a loop over the (few) basis functions, not over rows
        c = np.zeros(n_basis)
        c[j] = 1.0
        spl = BSpline(knots, c, 3, extrapolate=True)
        if deriv:
            spl = spl.derivative(deriv)
        vals = spl(x)
        # splineDesign takes the right boundary into the last non-empty interval (left-continuous there)
        at_right = x == right
        if at_right.any():
            xs = np.nextafter(right, -np.inf)
            vals = np.where(at_right, spl(np.array([xs]))[0], vals)
        out[:, j] = vals
    return out


@dataclass
class _Spline:
    """State of ``ns(x, ...)``: interior and boundary knots and the constraint rotation."""

    knots: FloatArray
    boundary: FloatArray

    @classmethod
    def from_data(cls, x: FloatArray, df: int | None, knots: FloatArray | None) -> _Spline:
        boundary = np.array([np.min(x), np.max(x)], dtype=float)
        if knots is None:
            if df is None:
                df = 1
            n_inner = int(df) - 1
            if n_inner < 0:
                raise ModelSpecificationError(f"ns(): df must be >= 1, got {df}")
            probs = np.linspace(0.0, 1.0, n_inner + 2)[1:-1]
            knots = np.quantile(x, probs) if n_inner else np.empty(0)  # type 7 = R's default
        return cls(np.sort(np.asarray(knots, dtype=float)), boundary)

    def basis(self, x: FloatArray) -> FloatArray:
        b0, b1 = self.boundary
        aknots = np.sort(np.concatenate([np.repeat(self.boundary, 4), self.knots]))
        xc = np.clip(x, b0, b1)
        basis = _bspline_basis(xc, aknots)
        for pivot, side in ((b0, x < b0), (b1, x > b1)):
            if side.any():
                piv = np.array([pivot])
                v0 = _bspline_basis(piv, aknots)[0]
                v1 = _bspline_basis(piv, aknots, deriv=1)[0]
                basis[side] = v0[None, :] + (x[side] - pivot)[:, None] * v1[None, :]
        const = _bspline_basis(self.boundary, aknots, deriv=2)
        const = const[:, 1:]
        basis = basis[:, 1:]
        q, _ = np.linalg.qr(const.T, mode="complete")
        out: FloatArray = (basis @ q)[:, 2:]
        return out


@dataclass
class Variable:
    """One variable of the model frame: an expression of data columns, numeric or categorical."""

    node: Node
    label: str
    kind: str = "numeric"  # numeric | factor
    levels: list[Any] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=lambda: [""])
    spline: _Spline | None = None
    mean: FloatArray | None = None
    #: numeric values of the levels when a factor is made of a numeric column (``factor(week)``)
    level_values: list[float] | None = None
    #: ``poly(x, d)``: R's ``attr(, "coefs")`` (alpha, norm2), kept for new data as ``makepredictcall``
    poly_coefs: tuple[FloatArray, FloatArray] | None = None
    #: ``scale(x)``: centre and scale of the training data, kept for new data
    scaling: tuple[float, float] | None = None

    @property
    def columns(self) -> list[str]:
        """Data columns the variable reads."""
        return sorted(set(_names_in(self.node)))


def _column(frame: pl.DataFrame, name: str, formula: str) -> pl.Series:
    if name not in frame.columns:
        raise ModelSpecificationError(
            f"formula {formula!r} uses column {name!r}, which the data do not have; "
            f"available columns: {', '.join(frame.columns)}"
        )
    return frame.get_column(name)


def _is_categorical(s: pl.Series) -> bool:
    return s.dtype in (pl.String, pl.Categorical, pl.Boolean) or isinstance(s.dtype, pl.Enum)


def _eval_numeric(node: Node, frame: pl.DataFrame, formula: str, var: Variable, fit: bool) -> FloatArray:
    k = node.kind
    if k == "num":
        return np.asarray(node.value, dtype=float)
    if k == "name":
        s = _column(frame, node.value, formula)
        if _is_categorical(s):
            raise ModelSpecificationError(
                f"formula {formula!r}: column {node.value!r} is categorical but is used in arithmetic"
            )
        return s.cast(pl.Float64).to_numpy()
    if k == "paren":
        return _eval_numeric(node.args[0], frame, formula, var, fit)
    if k == "neg":
        return -_eval_numeric(node.args[0], frame, formula, var, fit)
    if k == "binop":
        a, b = (_eval_numeric(x, frame, formula, var, fit) for x in node.args)
        ops = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "^": np.power}
        if node.value not in ops:
            raise ModelSpecificationError(f"formula {formula!r}: operator {node.value!r} inside a call")
        return ops[node.value](a, b)
    if k == "call":
        fn = node.value
        if fn in _UNARY and len(node.args) == 1:
            with np.errstate(all="ignore"):
                return _UNARY[fn](_eval_numeric(node.args[0], frame, formula, var, fit))
        if fn == "I" and len(node.args) == 1:
            return _eval_numeric(node.args[0], frame, formula, var, fit)
        if fn in ("pmax", "pmin") and len(node.args) >= 2:
            vals = [_eval_numeric(a, frame, formula, var, fit) for a in node.args]
            red = np.maximum if fn == "pmax" else np.minimum
            out = vals[0]
            for v in vals[1:]:
                out = red(out, v)
            return out
        if fn == "c":
            return np.array([float(_eval_numeric(a, frame, formula, var, fit)) for a in node.args])
    raise ModelSpecificationError(
        f"formula {formula!r}: {deparse(node)!r} is not supported; supported functions are "
        "log, log1p, exp, sqrt, abs, pmax, pmin, I, ns, poly, scale, factor and relevel"
    )


def _factor_column(node: Node, formula: str) -> str:
    """The data column of a factor: ``f``, ``factor(f)`` or ``relevel(f, ref = "b")``."""
    inner = node.args[0] if node.kind == "call" and node.args else node
    if node.kind == "call" and node.value == "factor" and len(node.args) != 1:
        raise ModelSpecificationError(
            f"formula {formula!r}: {deparse(node)!r}: factor() takes one column; give a reference level "
            "with reference={column: level} or relevel(column, ref = level)"
        )
    if inner.kind != "name":
        raise ModelSpecificationError(f"formula {formula!r}: {deparse(node)!r} takes a column name")
    return str(inner.value)


def _relevel_ref(node: Node, formula: str) -> str | None:
    """The ``ref`` of ``relevel(f, ref = "b")`` (``None`` for other factors)."""
    if node.kind != "call" or node.value != "relevel":
        return None
    ok = len(node.args) == 2 and node.names[1] in (None, "ref") and node.args[1].kind in ("str", "num")
    if not ok:
        raise ModelSpecificationError(f'formula {formula!r}: write relevel(column, ref = "level")')
    val = node.args[1].value
    return _fmt_num(val) if node.args[1].kind == "num" else str(val)


def _call_options(node: Node, formula: str, allowed: dict[str, str]) -> dict[str, Node]:
    """Arguments after the first of a call, by name (positional ones take the names of ``allowed``)."""
    names = list(allowed)
    out: dict[str, Node] = {}
    for i, (nm, arg) in enumerate(zip(node.names[1:], node.args[1:], strict=True)):
        key = nm if nm is not None else (names[i] if i < len(names) else None)
        if key not in allowed or key in out:
            raise ModelSpecificationError(
                f"formula {formula!r}: {deparse(node)!r}: {node.value}() accepts {node.value}(x, "
                f"{', '.join(f'{k} = {v}' for k, v in allowed.items())}) only"
            )
        out[key] = arg
    return out


def _flag(node: Node | None, default: bool, formula: str) -> bool:
    if node is None:
        return default
    if node.kind != "num" or node.value not in (0.0, 1.0):
        raise ModelSpecificationError(f"formula {formula!r}: expected TRUE or FALSE, found {deparse(node)!r}")
    return bool(node.value)


def _poly(var: Variable, frame: pl.DataFrame, formula: str, fit: bool) -> FloatArray:
    """``poly(x, degree)`` as R's ``stats::poly``: orthogonal (QR of the centred Vandermonde) or raw.

    On new data the orthogonal basis is rebuilt from the training ``alpha`` and ``norm2`` with R's
    three-term recurrence, as ``predict`` does through ``makepredictcall``.
    """
    node = var.node
    opts = _call_options(node, formula, {"degree": "d", "raw": "FALSE"})
    deg_node = opts.get("degree")
    degree = 1 if deg_node is None else deg_node.value
    if deg_node is not None and (deg_node.kind != "num" or not float(degree).is_integer() or degree < 1):
        raise ModelSpecificationError(
            f"formula {formula!r}: {deparse(node)!r}: the degree must be an integer >= 1"
        )
    degree = int(degree)
    raw = _flag(opts.get("raw"), False, formula)
    x = _eval_numeric(node.args[0], frame, formula, var, fit)
    x = np.broadcast_to(np.asarray(x, dtype=float), (frame.height,))
    out = np.full((x.shape[0], degree), np.nan)
    ok = np.isfinite(x)
    if fit:
        var.suffixes = [str(j + 1) for j in range(degree)]
    if raw:
        out[ok] = x[ok, None] ** np.arange(1, degree + 1)[None, :]
        return out
    if fit:
        xs = x[ok]
        if np.unique(xs).shape[0] <= degree:
            raise ModelSpecificationError(
                f"formula {formula!r}: {deparse(node)!r}: the degree must be less than the number of "
                f"distinct values ({np.unique(xs).shape[0]})"
            )
        xbar = float(np.mean(xs))
        xc = xs - xbar
        vander = xc[:, None] ** np.arange(degree + 1)[None, :]
        q, r = np.linalg.qr(vander)
        z = q * np.diag(r)[None, :]  # qr.qy(QR, diag(R)): independent of the signs of the QR
        norm2 = np.sum(z**2, axis=0)
        alpha = (np.sum(xc[:, None] * z**2, axis=0) / norm2 + xbar)[:degree]
        var.poly_coefs = (alpha, np.concatenate([[1.0], norm2]))
        out[ok] = (z / np.sqrt(norm2)[None, :])[:, 1:]
        return out
    if var.poly_coefs is None:
        raise ModelSpecificationError(
            f"formula {formula!r}: poly() coefficients are set when the model is fitted"
        )
    alpha, norm2 = var.poly_coefs
    xs = x[ok]
    z = np.ones((xs.shape[0], degree + 1))
    z[:, 1] = xs - alpha[0]
    for i in range(1, degree):  # R's recurrence over the (few) degrees, not over rows
        z[:, i + 1] = (xs - alpha[i]) * z[:, i] - (norm2[i + 1] / norm2[i]) * z[:, i - 1]
    out[ok] = (z / np.sqrt(norm2[1:])[None, :])[:, 1:]
    return out


def _scale(var: Variable, frame: pl.DataFrame, formula: str, fit: bool) -> FloatArray:
    """``scale(x)`` (centre by the mean, divide by the SD), with the training values kept for new data."""
    node = var.node
    opts = _call_options(node, formula, {"center": "TRUE", "scale": "TRUE"})
    x = _eval_numeric(node.args[0], frame, formula, var, fit)
    x = np.broadcast_to(np.asarray(x, dtype=float), (frame.height,))
    if fit:
        ok = np.isfinite(x)
        center = float(np.mean(x[ok])) if _flag(opts.get("center"), True, formula) else 0.0
        dev = x[ok] - center
        if _flag(opts.get("scale"), True, formula):
            # R: sqrt(sum(x^2) / (n - 1)) of the centred values (the SD when centred)
            sd = float(np.sqrt(np.sum(dev**2) / max(dev.shape[0] - 1, 1)))
        else:
            sd = 1.0
        var.scaling = (center, sd)
    if var.scaling is None:
        raise ModelSpecificationError(f"formula {formula!r}: scale() is set when the model is fitted")
    center, sd = var.scaling
    return ((x - center) / sd).reshape(-1, 1)


def resolve_factor(var: Variable, s: pl.Series, reference: dict[str, Any], formula_text: str) -> None:
    """Set the levels of a factor variable from its data column (all rows, or only its distinct values).

    The reference level (``reference`` keyed by column or label, or ``relevel(f, ref = ...)``) comes first;
    a used ``reference`` entry is removed from the mapping, so that entries left over name no factor.
    """
    node, lab = var.node, var.label
    column = _factor_column(node, formula_text)
    var.level_values = None
    if s.dtype == pl.Boolean:
        levels: list[Any] = ["FALSE", "TRUE"]
    elif isinstance(s.dtype, pl.Enum):
        levels = list(s.dtype.categories.to_list())
    elif s.dtype.is_numeric():
        # R: factor(x) has levels sort(unique(x)), printed as as.character(x)
        values = np.unique(s.drop_nulls().cast(pl.Float64).to_numpy())
        values = values[np.isfinite(values)]
        var.level_values = [float(v) for v in values]
        levels = [_fmt_num(v) for v in values]
    else:
        levels = sorted(s.drop_nulls().cast(pl.String).unique().to_list())
    ref_key = column if column in reference else lab
    rel = _relevel_ref(node, formula_text)
    if rel is not None:
        if ref_key in reference:
            raise ModelSpecificationError(
                f"{lab!r} sets its reference level in the formula; remove {ref_key!r} from reference"
            )
        reference[ref_key] = rel
    if ref_key in reference:
        ref = str(reference.pop(ref_key))
        if ref not in levels:
            raise ModelSpecificationError(
                f"reference level {ref!r} for {lab!r} is not among its levels {levels}"
            )
        if var.level_values is not None:
            pos = levels.index(ref)
            var.level_values = [
                var.level_values[pos],
                *var.level_values[:pos],
                *var.level_values[pos + 1 :],
            ]
        levels = [ref, *[lv for lv in levels if lv != ref]]
    if len(levels) < 2:
        raise ModelSpecificationError(
            f"factor {lab!r} has {len(levels)} level(s) in the data; a factor needs at least 2"
        )
    var.levels = levels


def _eval_variable(var: Variable, frame: pl.DataFrame, formula: str, fit: bool) -> FloatArray:
    """Numeric matrix (n x k) of a numeric variable, or integer level codes (-1 = unseen) of a factor."""
    node = var.node
    if var.kind == "factor":
        s = _column(frame, _factor_column(node, formula), formula)
        code_range = np.arange(len(var.levels), dtype=np.int64)
        if var.level_values is not None:  # a numeric column: match by value (new data may hold text)
            vals = s.cast(pl.Float64, strict=False)
            lut = pl.DataFrame(
                {"__v": var.level_values, "__code": code_range}, schema_overrides={"__v": pl.Float64}
            )
        else:
            vals = s.cast(pl.String) if s.dtype != pl.Boolean else s.cast(pl.String).str.to_uppercase()
            lut = pl.DataFrame({"__v": [str(v) for v in var.levels], "__code": code_range})
        codes = pl.DataFrame({"__v": vals}).join(lut, on="__v", how="left", maintain_order="left")["__code"]
        return codes.fill_null(-1).to_numpy()
    if node.kind == "call" and node.value == "poly":
        return _poly(var, frame, formula, fit)
    if node.kind == "call" and node.value == "scale":
        return _scale(var, frame, formula, fit)
    if node.kind == "call" and node.value == "ns":
        x = _eval_numeric(node.args[0], frame, formula, var, fit)
        if fit:
            opts = dict(zip(node.names[1:], node.args[1:], strict=True))
            unknown = set(opts) - {"df", "knots"}
            if unknown or any(nm is None for nm in node.names[1:]):
                raise ModelSpecificationError(
                    f"formula {formula!r}: ns() accepts ns(x, df = k) or ns(x, knots = c(...)) only"
                )
            df = int(opts["df"].value) if "df" in opts else None
            knots = (
                np.atleast_1d(_eval_numeric(opts["knots"], frame, formula, var, fit))
                if "knots" in opts
                else None
            )
            finite = x[np.isfinite(x)]
            var.spline = _Spline.from_data(finite, df, knots)
            width = var.spline.knots.shape[0] + 1
            var.suffixes = [str(j + 1) for j in range(width)]
        if var.spline is None:
            raise ModelSpecificationError(f"formula {formula!r}: ns() knots are set when the model is fitted")
        out = np.full((x.shape[0], len(var.suffixes)), np.nan)
        ok = np.isfinite(x)
        out[ok] = var.spline.basis(x[ok])
        return out
    x = np.asarray(_eval_numeric(node, frame, formula, var, fit), dtype=float)
    if x.ndim == 0:
        x = np.full(frame.height, float(x))
    return x.reshape(-1, 1)


# --------------------------------------------------------------------------------------------------
# formula structure
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | group)``: variables (``None`` = intercept) and grouping factor."""

    group: str
    variables: tuple[str | None, ...]  # labels; None = (Intercept)


@dataclass
class ModelFormula:
    """A parsed mixed-model formula."""

    text: str
    response: Node
    intercept: bool
    terms: list[tuple[str, ...]]  # fixed terms (tuples of variable labels), in R's order
    variables: dict[str, Variable]
    random: list[RandomTerm]
    random_variables: dict[str, Variable]

    @property
    def response_label(self) -> str:
        """R's text of the response."""
        return deparse(self.response)

    @property
    def groups(self) -> list[str]:
        """Grouping factors, in order of first appearance."""
        seen: list[str] = []
        for t in self.random:
            if t.group not in seen:
                seen.append(t.group)
        return seen

    def columns(self) -> list[str]:
        """Every data column the model reads."""
        cols = set(_names_in(self.response)) | set(self.groups)
        for v in (*self.variables.values(), *self.random_variables.values()):
            cols |= set(v.columns)
        return sorted(cols)


def _is_bar(node: Node) -> bool:
    return node.kind == "paren" and node.args[0].kind == "binop" and node.args[0].value in ("|", "||")


def _flatten_sum(node: Node, out: list[tuple[int, Node]], sign: int = 1) -> None:
    if node.kind == "binop" and node.value in ("+", "-"):
        _flatten_sum(node.args[0], out, sign)
        _flatten_sum(node.args[1], out, sign if node.value == "+" else -sign)
    elif node.kind == "neg":
        _flatten_sum(node.args[0], out, -sign)
    else:
        out.append((sign, node))


_Term = frozenset[str]


def _uniq(terms: list[_Term]) -> list[_Term]:
    """R's ``TrimRepeats``: drop repeated terms, keeping the first."""
    out: list[_Term] = []
    for t in terms:
        if t and t not in out:
            out.append(t)
    return out


class _Expander:
    """Formula operators to terms exactly as R's ``terms.formula`` (``EncodeVars`` in R's ``model.c``).

    ``a + b`` concatenates, ``a:b`` takes every union of a term of ``a`` with one of ``b``, ``a * b`` is
    ``a + b + a:b``, ``a / b`` is ``a + (all variables of a):b``, ``b %in% a`` is ``b:(all variables of a)``,
    ``(a + b)^k`` multiplies out ``k`` times, ``a - b`` removes the terms of ``b`` from ``a``; ``1`` and ``0``
    switch the intercept on and off (the other way round when subtracted). Variables are numbered in order
    of first appearance; random-effect bars are collected when they are summands of the right-hand side.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.order: dict[str, Node] = {}
        self.intercept = True
        self.parity = True
        self.bars: list[Node] = []

    def error(self, node: Node, why: str) -> ModelSpecificationError:
        return ModelSpecificationError(f"formula {self.text!r}: {deparse(node)!r} {why}")

    def variable(self, node: Node) -> list[_Term]:
        if node.kind == "name" and node.value == ".":
            raise ModelSpecificationError(
                f"formula {self.text!r}: '.' (all other columns) is not supported, because a mixed-model "
                "frame holds identifiers and visit columns too; list the predictors explicitly"
            )
        if node.kind == "call" and node.value in ("offset", "C", "strata", "cluster"):
            raise self.error(
                node,
                "is not supported; for a reference level use reference={column: level} or relevel()"
                if node.value == "C"
                else "is not supported; write the model without it",
            )
        label = deparse(node)
        self.order.setdefault(label, node)
        return [frozenset({label})]

    def delete(self, left: list[_Term], right: Node) -> list[_Term]:
        self.parity = not self.parity
        drop = self.encode(right)
        self.parity = not self.parity
        return [t for t in left if t not in drop]

    def encode(self, node: Node, top: bool = False) -> list[_Term]:
        k = node.kind
        if k == "num":
            if node.value in (0.0, 1.0):
                self.intercept = self.parity if node.value == 1.0 else not self.parity
                return []
            raise ModelSpecificationError(
                f"formula {self.text!r}: the number {_fmt_num(node.value)} is not a term"
            )
        if k in ("name", "call"):
            return self.variable(node)
        if k == "paren":
            if _is_bar(node):
                if not (top and self.parity):
                    raise self.error(
                        node, "is a random-effects term inside an operator; add random terms with '+' only"
                    )
                self.bars.append(node.args[0])
                return []
            return self.encode(node.args[0])
        if k == "neg":
            return self.delete([], node.args[0])
        if k == "binop":
            op = node.value
            left, right = node.args
            if op == "+":
                a = self.encode(left, top)
                return _uniq(a + self.encode(right, top))
            if op == "-":
                return self.delete(self.encode(left, top), right)
            if op in (":", "*", "/", "%in%"):
                a = self.encode(left)
                b = self.encode(right)
                if op == ":":
                    return _uniq([x | y for x in a for y in b])
                if op == "*":
                    return _uniq(a + b + [x | y for x in a for y in b])
                if op == "/":
                    whole = frozenset().union(*a)
                    return _uniq(a + [whole | y for y in b])
                whole = frozenset().union(*b)
                return _uniq([x | whole for x in a])
            if op == "^":
                if right.kind != "num" or not float(right.value).is_integer() or right.value < 2:
                    raise self.error(node, "has an invalid power; write (a + b)^k with an integer k >= 2")
                base = self.encode(left)
                term, cur = base, base
                for _ in range(int(right.value) - 1):  # R's PowerTerms
                    term = _uniq([x | y for x in base for y in cur])
                    cur = term
                return term
        raise self.error(node, "cannot be read as model terms; use + - * / : ^ %in% and ( )")


def _random_term(bar: Node, text: str, random: list[RandomTerm], random_vars: dict[str, Variable]) -> None:
    lhs, grp = bar.args
    if grp.kind != "name":
        raise ModelSpecificationError(
            f"formula {text!r}: grouping factor {deparse(grp)!r} must be a column name; for "
            "nested patients write (1 | clinic) + (week | patient) with unique patient codes"
        )
    rparts: list[tuple[int, Node]] = []
    _flatten_sum(lhs, rparts)
    has_int = True
    rv: list[str | None] = []
    for s2, n2 in rparts:
        if n2.kind == "num" and n2.value in (0.0, 1.0):
            has_int = (n2.value == 1.0) == (s2 > 0)
            continue
        if s2 < 0:
            raise ModelSpecificationError(f"formula {text!r}: cannot subtract {deparse(n2)!r}")
        lab = deparse(n2)
        if n2.kind == "call" and n2.value in ("ns", "factor", "poly", "relevel"):
            raise ModelSpecificationError(
                f"formula {text!r}: random term {lab!r} is not supported; use numeric variables"
            )
        if n2.kind == "binop":
            raise ModelSpecificationError(
                f"formula {text!r}: interactions inside random terms ({lab!r}) are not supported"
            )
        random_vars.setdefault(lab, Variable(n2, lab))
        rv.append(lab)
    cols: list[str | None] = [None] if has_int else []
    cols += rv
    if not cols:
        raise ModelSpecificationError(f"formula {text!r}: empty random term ({deparse(bar)})")
    if bar.value == "||":
        random.extend(RandomTerm(grp.value, (c,)) for c in cols)
    else:
        random.append(RandomTerm(grp.value, tuple(cols)))


def parse_formula(text: str) -> ModelFormula:
    """Parse an lme4 formula with R's grammar.

    Parameters
    ----------
    text : str
        For example ``"walk ~ week * adherence + age + (week | patient)"``.

    Returns
    -------
    ModelFormula
        Response, fixed terms in R's order (by degree, then appearance), variables and random terms.

    Raises
    ------
    ModelSpecificationError
        On syntax errors or unsupported terms; the message quotes the formula and the offending part.

    Notes
    -----
    Operator precedence is R's (``^`` > unary ``-`` > ``:`` > ``%in%`` > ``*``, ``/`` > ``+``, ``-``; all
    left-associative but ``^``) and the terms are expanded as R's ``terms.formula``: ``a + b * c`` is
    ``a + b + c + b:c``. Validated against: ``attr(terms(f), "term.labels")`` and
    ``colnames(model.matrix(f, data))`` on 300+ random formulas (``tests/reference/formula``).
    """
    root = _Parser(text).parse()
    if root.kind != "binop" or root.value != "~":
        raise ModelSpecificationError(f"formula {text!r}: expected 'response ~ terms'")
    response, rhs = root.args
    expander = _Expander(text)
    found = expander.encode(rhs, top=True)
    random: list[RandomTerm] = []
    random_vars: dict[str, Variable] = {}
    for bar in expander.bars:
        _random_term(bar, text, random, random_vars)
    labels = list(expander.order)
    rank = {lab: i for i, lab in enumerate(labels)}
    # R's SortTerms: by number of variables, otherwise in order of appearance (a stable sort)
    terms = sorted((tuple(sorted(t, key=rank.__getitem__)) for t in found), key=len)
    used = {lab for t in terms for lab in t}
    if deparse(response) in used:
        raise ModelSpecificationError(
            f"formula {text!r}: the response {deparse(response)!r} is also on the right-hand side; remove it"
        )
    variables = {}
    for lab in labels:
        if lab not in used:
            continue
        node = expander.order[lab]
        kind = "factor" if node.kind == "call" and node.value in ("factor", "relevel") else "numeric"
        variables[lab] = Variable(node, lab, kind=kind)
    return ModelFormula(
        text=text,
        response=response,
        intercept=expander.intercept,
        terms=terms,
        variables=variables,
        random=random,
        random_variables=random_vars,
    )


# --------------------------------------------------------------------------------------------------
# design matrices
# --------------------------------------------------------------------------------------------------


def _codings(formula: ModelFormula) -> list[list[tuple[str, str]]]:
    """How each variable of each term enters the design, by R's rules (``TermCode`` and ``modelmatrix``).

    A factor in term ``T`` is coded by contrasts when ``T`` without it is empty or contained in an earlier
    term, by indicators (all levels) otherwise; without an intercept, the first factor of the first term
    holding a factor is coded by indicators.
    """
    sets = [frozenset(t) for t in formula.terms]
    coding: list[list[tuple[str, str]]] = []
    for j, term in enumerate(formula.terms):
        codes: list[tuple[str, str]] = []
        for lab in term:
            if formula.variables[lab].kind == "numeric":
                codes.append((lab, "numeric"))
                continue
            rest = sets[j] - {lab}
            contrast = not rest or any(rest <= sets[i] for i in range(j))
            codes.append((lab, "contrast" if contrast else "indicator"))
        coding.append(codes)
    if not formula.intercept:
        for codes in coding:
            first = next((i for i, (_, how) in enumerate(codes) if how != "numeric"), None)
            if first is not None:
                codes[first] = (codes[first][0], "indicator")
                break
    return coding


@dataclass
class Design:
    """Fixed-effects design built from a fitted formula; rebuilds the same columns for new data."""

    formula: ModelFormula
    column_names: list[str]
    term_columns: list[tuple[str, list[int]]]  # (term label, column indices)
    coding: list[list[tuple[str, str]]]  # per term: (variable label, "numeric" | "contrast" | "indicator")

    @classmethod
    def build(
        cls, formula: ModelFormula, frame: pl.DataFrame, reference: dict[str, Any] | None = None
    ) -> tuple[Design, FloatArray]:
        """Resolve variable kinds, levels and spline knots on ``frame``; return the design and X."""
        reference = dict(reference or {})
        data: dict[str, FloatArray] = {}
        for lab, var in formula.variables.items():
            node = var.node
            if node.kind == "name" and _is_categorical(_column(frame, node.value, formula.text)):
                var.kind = "factor"
            if var.kind == "factor":
                s = _column(frame, _factor_column(node, formula.text), formula.text)
                resolve_factor(var, s, reference, formula.text)
            data[lab] = _eval_variable(var, frame, formula.text, fit=True)
            if var.kind == "numeric":
                var.mean = np.nanmean(data[lab], axis=0)
        if reference:
            raise ModelSpecificationError(
                f"reference levels given for {sorted(reference)}, which are not factors of the formula"
            )
        design = cls.assemble(formula)
        return design, design._matrix(data, frame.height)

    @classmethod
    def assemble(cls, formula: ModelFormula) -> Design:
        """Column names, term columns and codings of a formula whose variables are resolved.

        :meth:`build` resolves the variables (kinds, factor levels, knots) on a frame first; an out-of-core
        statistics pass (:mod:`~sciatica_outcomes.models.sqlstats`) resolves them with queries.
        """
        names: list[str] = ["(Intercept)"] if formula.intercept else []
        term_columns: list[tuple[str, list[int]]] = []
        if formula.intercept:
            term_columns.append(("(Intercept)", [0]))
        coding = _codings(formula)
        for term, codes in zip(formula.terms, coding, strict=True):
            labels_per_var: list[list[str]] = []
            for lab, how in codes:
                var = formula.variables[lab]
                if how == "numeric":
                    labels_per_var.append([lab + s for s in var.suffixes])
                elif how == "contrast":
                    labels_per_var.append([lab + str(lv) for lv in var.levels[1:]])
                else:
                    labels_per_var.append([lab + str(lv) for lv in var.levels])
            combos = [""]
            first = True
            for labs in labels_per_var:  # first variable varies fastest, as in R
                combos = [c + ("" if first else ":") + lab_ for lab_ in labs for c in combos]
                first = False
            start = len(names)
            names.extend(combos)
            term_columns.append((":".join(term), list(range(start, len(names)))))
        return cls(formula, names, term_columns, coding)

    def _matrix(self, data: dict[str, FloatArray], n: int, sum_coding: bool = False) -> FloatArray:
        cols: list[FloatArray] = [np.ones(n)] if self.formula.intercept else []
        for codes in self.coding:
            block = np.ones((n, 1))
            for lab, how in codes:
                var = self.formula.variables[lab]
                if how == "numeric":
                    m = data[lab]
                else:
                    codes_ = data[lab]
                    if how == "contrast" and sum_coding:  # R's contr.sum: last level -1 in every column
                        m = (codes_[:, None] == np.arange(len(var.levels) - 1)[None, :]).astype(float)
                        m[codes_ == len(var.levels) - 1] = -1.0
                    else:
                        lv = np.arange(1 if how == "contrast" else 0, len(var.levels))
                        m = (codes_[:, None] == lv[None, :]).astype(float)
                    m[codes_ < 0] = np.nan
                # the first variable varies fastest, as in the column names (and as R builds them)
                block = (block[:, None, :] * m[:, :, None]).reshape(n, -1)
            cols.append(block)
        return np.column_stack(cols) if cols else np.empty((n, 0))

    def matrix(self, frame: pl.DataFrame, sum_coding: bool = False) -> FloatArray:
        """Design matrix of new data with the fitted levels and knots (unseen levels give NaN rows).

        ``sum_coding`` codes the contrast-coded factors by R's ``contr.sum`` instead of treatment contrasts
        (same columns per term and the same column space; Type III hypotheses are built on it).
        """
        data = {
            lab: _eval_variable(var, frame, self.formula.text, fit=False)
            for lab, var in self.formula.variables.items()
        }
        return self._matrix(data, frame.height, sum_coding)

    def random_matrix(self, frame: pl.DataFrame, term: RandomTerm) -> FloatArray:
        """Columns of one random term for ``frame`` (n x len(term.variables))."""
        cols = []
        for lab in term.variables:
            if lab is None:
                cols.append(np.ones(frame.height))
            else:
                var = self.formula.random_variables[lab]
                s_cols = var.columns
                for c in s_cols:
                    if _is_categorical(_column(frame, c, self.formula.text)):
                        raise ModelSpecificationError(
                            f"formula {self.formula.text!r}: random slope {lab!r} uses categorical column "
                            f"{c!r}; only numeric random slopes are supported"
                        )
                cols.append(_eval_variable(var, frame, self.formula.text, fit=True)[:, 0])
        return np.column_stack(cols)

    def response(self, frame: pl.DataFrame) -> FloatArray:
        """The response vector."""
        dummy = Variable(self.formula.response, self.formula.response_label)
        return _eval_variable(dummy, frame, self.formula.text, fit=False)[:, 0]
