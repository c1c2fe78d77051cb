"""Growth-model fits from where the data live: the sufficient statistics computed by DuckDB.

:meth:`GrowthModel.fit_from <sciatica_outcomes.models.lmm.GrowthModel.fit_from>` opens a source
(:func:`open_source`: a DuckDB relation, a Parquet file, directory or glob, a CSV file, or a table of a
DuckDB file such as the store), resolves the design with queries (column types, complete rows, grouping
levels, factor levels, spline knots) and runs the statistics passes that
:mod:`~sciatica_outcomes.models.sqlstats` writes. Only per-patient statistics reach Python: ``Z'Z``, ``Z'[X
y]`` per patient (``q (q + 1) / 2 + q (p + 1) + 1`` doubles each, plus the patient key), per clinic for a
nested model, and the totals; the rows never do. The optimiser, Satterthwaite df and single-level
Kenward-Roger then run on those arrays exactly as for an in-memory fit.
"""

from __future__ import annotations

import glob as _glob
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.formula import Design, ModelFormula, _eval_numeric, _Spline, resolve_factor
from sciatica_outcomes.models.sqlstats import (
    DUCKDB,
    DesignSql,
    column_kind,
    complete_filter,
    design_sql,
    numeric_sql,
    spline_knot_query,
    statistics_queries,
    variable_sql,
)

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "DataSource",
    "SufficientStatistics",
    "check_gram_rank",
    "compute_statistics",
    "open_owned",
    "open_source",
    "resolve_variables",
]

#: a source :func:`open_source` accepts
DataSource = Any  # duckdb.DuckDBPyRelation | str | Path (kept loose: DuckDB is imported lazily)

_SRC = "__so_source"


def _sql_path(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def open_source(source: DataSource, table: str | None = None) -> duckdb.DuckDBPyRelation:
    """A DuckDB relation over the data, read lazily (nothing is loaded here).

    :func:`open_owned` also returns the connection it opened (``None`` for a relation given), so that the
    caller can close it and free DuckDB's memory once the statistics are computed.

    Parameters
    ----------
    source : duckdb.DuckDBPyRelation, str or pathlib.Path
        A relation; a Parquet file, a directory of Parquet files (read recursively) or a glob such as
        ``"visits/*.parquet"``; a ``.csv`` file; or a DuckDB database file (the store) with ``table``.
    table : str, optional
        Table (or view) of a DuckDB database file.

    Raises
    ------
    UnusableInputError
        A missing file, an unknown suffix, a glob matching nothing, a database without ``table`` or
        without that table.
    """
    return open_owned(source, table)[0]


def open_owned(
    source: DataSource, table: str | None = None, config: Mapping[str, Any] | None = None
) -> tuple[duckdb.DuckDBPyRelation, duckdb.DuckDBPyConnection | None]:
    """:func:`open_source` and the connection opened for it (``None`` when ``source`` is a relation).

    ``config`` are DuckDB settings of that connection, e.g. ``{"memory_limit": "3GB", "threads": 2,
    "temp_directory": "/scratch"}`` (DuckDB spills beyond its memory limit).
    """
    import duckdb  # noqa: PLC0415 - DuckDB loads only for out-of-core fits

    if isinstance(source, duckdb.DuckDBPyRelation):
        if table is not None:
            raise UnusableInputError("table= applies to a DuckDB database file, not to a relation")
        return source, None
    if not isinstance(source, str | Path):
        raise UnusableInputError(
            f"expected a DuckDB relation or a path (Parquet, CSV, DuckDB file), got {type(source).__name__}"
        )
    text = str(source)
    path = Path(text)
    con = duckdb.connect(config=dict(config or {}))
    if any(ch in text for ch in "*?["):
        if not _glob.glob(text, recursive=True):
            raise UnusableInputError(f"no file matches {text!r}")
        return con.sql(f"SELECT * FROM read_parquet({_sql_path(text)}, union_by_name = true)"), con
    if not path.exists():
        con.close()
        raise UnusableInputError(f"data {text!r} does not exist")
    if path.is_dir():
        if not any(path.rglob("*.parquet")):
            raise UnusableInputError(f"directory {text!r} holds no .parquet file")
        pattern = str(path / "**" / "*.parquet")
        return con.sql(f"SELECT * FROM read_parquet({_sql_path(pattern)}, union_by_name = true)"), con
    suffix = path.suffix.lower()
    if table is not None or suffix in (".duckdb", ".db"):
        if table is None:
            raise UnusableInputError(f"{text!r} is a DuckDB file: name the table with --table (table=)")
        con.close()
        try:
            db = duckdb.connect(text, read_only=True, config=dict(config or {}))
        except duckdb.Error as exc:
            raise UnusableInputError(f"cannot open DuckDB file {text!r}: {str(exc).splitlines()[0]}") from exc
        names = {r[0] for r in db.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if table not in names:
            db.close()
            raise UnusableInputError(f"{text!r} has no table {table!r}; tables: {', '.join(sorted(names))}")
        return db.table(table), db
    if suffix in (".parquet", ".pq"):
        return con.sql(f"SELECT * FROM read_parquet({_sql_path(text)})"), con
    if suffix == ".csv":
        return con.sql(f"SELECT * FROM read_csv({_sql_path(text)}, header = true)"), con
    raise UnusableInputError(
        f"data {text!r}: expected a .parquet, .csv or DuckDB file, a directory of Parquet files or a glob"
    )


@dataclass
class SufficientStatistics:
    """What the statistics passes return (arrays in the engine's layout, batch axis last)."""

    design: Design
    n: int
    n_dropped: int
    wtw: FloatArray
    c11: FloatArray
    f1: FloatArray
    inner_levels: pl.Series
    nested: tuple[IntArray, FloatArray, FloatArray, FloatArray] | None  # parent, c12, c22, f2
    outer_levels: pl.Series | None
    column_info: dict[str, tuple[str, Any]]
    time_bounds: tuple[float, float]
    seconds: float


def _run(rel: duckdb.DuckDBPyRelation, sql: str, what: str) -> dict[str, Any]:
    import duckdb  # noqa: PLC0415

    try:
        out: dict[str, Any] = rel.query(_SRC, sql).fetchnumpy()  # type: ignore[union-attr]
        return out
    except duckdb.Error as exc:
        raise ModelSpecificationError(
            f"the {what} query failed in DuckDB: {str(exc).splitlines()[0]}; check the formula's columns "
            "and their types"
        ) from exc


def _stack(res: dict[str, Any], prefix: str, ku: int, kv: int, sym: bool) -> FloatArray:
    first = np.asarray(res[f"{prefix}_0_0"]) if ku and kv else np.empty(0)
    m = first.shape[0] if first.ndim else 1
    out = np.empty((ku, kv, m))
    for a in range(ku):  # loops over the (few) design columns; each is one vector of groups
        for b in range(a if sym else 0, kv):
            out[a, b] = np.asarray(res[f"{prefix}_{a}_{b}"], dtype=float)
            if sym:
                out[b, a] = out[a, b]
    return out


def compute_statistics(
    rel: duckdb.DuckDBPyRelation,
    formula: ModelFormula,
    groups: list[str],
    z_terms: Callable[[str], dict[str, list[tuple[str | None, ...]]]],
    reference: dict[str, Any],
    time: str,
) -> tuple[SufficientStatistics, str]:
    """Resolve the design and run the statistics passes on ``rel``.

    Parameters
    ----------
    rel : duckdb.DuckDBPyRelation
        The data (:func:`open_source`).
    formula : ModelFormula
        Parsed formula; its variables are resolved here (levels, knots), as ``Design.build`` does.
    groups : list of str
        Grouping factors of the formula (one, or two nested).
    z_terms : callable
        Inner grouping column -> (grouping column -> variables of its random terms, in lme4's order).
    reference : dict
        Reference levels of factors.
    time : str
        Time column (the bounds of the trajectory plot).

    Returns
    -------
    statistics : SufficientStatistics
    inner : str
        The inner grouping factor (more levels; the first named on a tie, as the in-memory fit).
    """
    import time as _time  # noqa: PLC0415

    t0 = _time.perf_counter()
    text = formula.text
    kinds = {c: column_kind(str(t)) for c, t in zip(rel.columns, rel.types, strict=True)}
    cols = formula.columns()
    missing = [c for c in cols if c not in kinds]
    if missing:
        raise ModelSpecificationError(
            f"formula {text!r} uses column(s) {missing} that the data do not have; available columns: "
            f"{', '.join(rel.columns)}"
        )
    other = [c for c in cols if kinds[c] == "other" and c not in groups]
    if other:
        raise ModelSpecificationError(
            f"formula {text!r}: column(s) {other} are neither numeric, text nor boolean "
            f"({', '.join(str(rel.types[rel.columns.index(c)]) for c in other)}); cast them in the data"
        )
    where = complete_filter(cols, kinds, DUCKDB)
    gsel = ", ".join(f"count(DISTINCT {DUCKDB.ident(g)}) AS g{i}" for i, g in enumerate(groups))
    head = _run(
        rel, f"SELECT count(*) AS total, count(*) FILTER (WHERE {where}) AS kept, {gsel} FROM {_SRC}", "count"
    )
    total, kept = int(head["total"][0]), int(head["kept"][0])
    if kept == 0:
        raise UnusableInputError(f"no complete rows: all {total} rows miss one of {cols} (formula {text!r})")
    counts = {g: int(head[f"g{i}"][0]) for i, g in enumerate(groups)}
    inner = max(groups, key=lambda g: (counts[g], -groups.index(g)))
    outer = next((g for g in groups if g != inner), None)
    resolve_variables(rel, formula, kinds, where, reference)
    design = Design.assemble(formula)
    d = design_sql(design, z_terms(inner), inner, outer, kinds, where, DUCKDB)
    # reference-grid means, variable means (Design.build sets them) and the time range: in the totals pass
    extra: list[str] = []
    var_means: dict[str, int] = {}
    for lab, var in formula.variables.items():
        if var.kind == "numeric":
            var_means[lab] = len(var.suffixes)
            for e in variable_sql(var, kinds, DUCKDB, text):
                extra.append(f"avg({e}) AS vm_{len(extra)}")  # complete rows: no NaN left
    info: dict[str, tuple[str, Any]] = {}
    for var in formula.variables.values():
        for col in var.columns:
            if var.kind == "factor":
                info[col] = ("factor", list(var.levels))
            elif col not in info:
                info[col] = ("numeric", None)
    numeric_cols = [c for c, (k, _) in info.items() if k == "numeric"]
    extra += [f"avg({DUCKDB.to_double(DUCKDB.ident(c))}) AS cm_{j}" for j, c in enumerate(numeric_cols)]
    timed = time in cols and kinds.get(time) in ("numeric", "float")
    if timed:
        tq = DUCKDB.to_double(DUCKDB.ident(time))
        extra += [f"min({tq}) AS t_lo", f"max({tq}) AS t_hi"]
    queries = statistics_queries(d, _SRC, DUCKDB, extra)
    tot = _run(rel, queries["totals"], "totals")
    k = 0
    for lab, width in var_means.items():
        formula.variables[lab].mean = np.array([float(tot[f"vm_{k + j}"][0]) for j in range(width)])
        k += width
    for j, c in enumerate(numeric_cols):
        info[c] = ("numeric", float(tot[f"cm_{j}"][0]))
    bounds = (float(tot["t_lo"][0]), float(tot["t_hi"][0])) if timed else (0.0, 1.0)
    _check_finite(tot, d, text, formula.response_label)
    w_dim = len(d.x) + 1
    wtw = _stack(tot, "ww", w_dim, w_dim, sym=True)[:, :, 0]
    res = _run(rel, queries["inner"], "per-patient statistics")
    q1 = len(d.z1)
    c11 = _stack(res, "c11", q1, q1, sym=True)
    f1 = _stack(res, "f1", q1, w_dim, sym=False)
    inner_levels = pl.Series(inner, res["g1"])
    nested = None
    outer_levels = None
    if outer is not None:
        g2 = pl.Series(outer, res["g2"])
        if inner_levels.is_duplicated().any():
            shared = inner_levels.filter(inner_levels.is_duplicated()).unique().sort().head(3).to_list()
            raise ModelSpecificationError(
                f"grouping factors {inner!r} and {outer!r} are crossed, not nested: {inner} "
                f"{shared} appear(s) in more than one {outer}. This engine fits nested designs exactly, "
                "not crossed ones; give each patient a code unique across clinics, or fit in lme4"
            )
        parent = g2.rle_id().cast(pl.Int64).to_numpy()
        ores = _run(rel, queries["outer"], "per-clinic statistics")
        q2 = len(d.z2)
        nested = (
            parent,
            _stack(res, "c12", q1, q2, sym=False),
            _stack(ores, "c22", q2, q2, sym=True),
            _stack(ores, "f2", q2, w_dim, sym=False),
        )
        outer_levels = pl.Series(outer, ores["g2"])
    stats = SufficientStatistics(
        design=design,
        n=int(tot["n"][0]),
        n_dropped=total - kept,
        wtw=wtw,
        c11=c11,
        f1=f1,
        inner_levels=inner_levels,
        nested=nested,
        outer_levels=outer_levels,
        column_info=info,
        time_bounds=bounds,
        seconds=_time.perf_counter() - t0,
    )
    return stats, inner


def resolve_variables(
    rel: duckdb.DuckDBPyRelation,
    formula: ModelFormula,
    kinds: Mapping[str, str],
    where: str,
    reference: Mapping[str, Any],
    source: str = _SRC,
    given: Mapping[str, pl.Series] | None = None,
) -> None:
    """Resolve the formula's variables by queries, as :meth:`Design.build` does on a frame.

    Factor levels come from a ``SELECT DISTINCT`` (or from ``given``: a column -> its values with their
    dtype, e.g. the MMRM's visit as an ``Enum`` in visit order), the columns of ``poly(x, d, raw = TRUE)``
    are set and what SQL cannot evaluate is refused, ``ns()`` knots are type-7 quantiles by SQL.

    Parameters
    ----------
    rel : duckdb.DuckDBPyRelation
        The data; ``source`` is the table expression the queries read (``_SRC``: the relation itself).
    formula : ModelFormula
        Parsed formula; its variables are changed in place.
    kinds : mapping
        :func:`~sciatica_outcomes.models.sqlstats.column_kind` of each column of ``source``.
    where : str
        Rows the levels and knots are taken from.
    reference : mapping
        Reference levels of factors; an entry naming no factor is refused.
    source : str
        Table expression (a subquery with an alias) over the view of ``rel``.
    given : mapping, optional
        Values of factor columns known already (no query).
    """
    reference = dict(reference)
    text = formula.text
    for lab, var in formula.variables.items():
        node = var.node
        if node.kind == "name" and kinds.get(node.value) in ("categorical", "boolean"):
            var.kind = "factor"
        if var.kind == "factor":
            from sciatica_outcomes.models.formula import _factor_column  # noqa: PLC0415

            column = _factor_column(node, text)
            q = DUCKDB.ident(column)
            if given is not None and column in given:
                resolve_factor(var, given[column], reference, text)
                continue
            res = _run(rel, f"SELECT DISTINCT {q} AS v FROM {source} WHERE {where}", f"levels of {lab!r}")
            values = res["v"].tolist()
            if kinds[column] == "boolean":
                series = pl.Series(column, values, dtype=pl.Boolean)
            elif kinds[column] == "categorical":
                series = pl.Series(column, [str(v) for v in values], dtype=pl.String)
            else:
                series = pl.Series(column, values, dtype=pl.Float64)
            resolve_factor(var, series, reference, text)
        elif node.kind == "call" and node.value in ("poly", "scale"):
            variable_sql(var, kinds, DUCKDB, text)  # sets poly's columns; refuses what SQL cannot do
        elif node.kind == "call" and node.value == "ns":
            opts = dict(zip(node.names[1:], node.args[1:], strict=True))
            if set(opts) - {"df", "knots"} or any(nm is None for nm in node.names[1:]):
                raise ModelSpecificationError(
                    f"formula {text!r}: ns() accepts ns(x, df = k) or ns(x, knots = c(...)) only"
                )
            x = numeric_sql(node.args[0], kinds, DUCKDB, text)
            df = int(opts["df"].value) if "df" in opts else None
            sql, _ = spline_knot_query(x, df, "knots" in opts, source, where, DUCKDB)
            res = _run(rel, sql, f"knots of {lab!r}")
            boundary = np.array([float(res["lo"][0]), float(res["hi"][0])])
            if "knots" in opts:
                knots = np.atleast_1d(_eval_numeric(opts["knots"], pl.DataFrame(), text, var, True))
            elif "q" in res:
                knots = np.asarray(res["q"][0], dtype=float)
            else:
                knots = np.empty(0)
            var.spline = _Spline(np.sort(np.asarray(knots, dtype=float)), boundary)
            var.suffixes = [str(j + 1) for j in range(var.spline.knots.shape[0] + 1)]
    if reference:
        raise ModelSpecificationError(
            f"reference levels given for {sorted(reference)}, which are not factors of the formula"
        )


def check_gram_rank(xtx: FloatArray, names: list[str]) -> None:
    """Refuse a rank-deficient fixed-effects design seen through its Gram matrix ``X'X`` (no rows needed).

    The aliased columns are those with a negligible diagonal of ``R`` in the QR decomposition of the
    symmetric root of ``X'X`` (which has the ``R`` of ``X`` up to signs).
    """
    p = xtx.shape[0]
    rank = np.linalg.matrix_rank(xtx) if p else 0
    if rank < p:
        vals, vecs = np.linalg.eigh(xtx)
        root = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T  # R of QR(root) is R of QR(X)
        _, r = np.linalg.qr(root)
        aliased = [names[j] for j in np.flatnonzero(np.abs(np.diag(r)) < 1e-7 * np.abs(r).max())]
        raise ModelSpecificationError(
            f"the fixed-effects design is rank deficient (rank {rank} of {p} columns); columns "
            f"{aliased or names} are combinations of others: remove them"
        )


def _check_finite(tot: dict[str, Any], d: DesignSql, text: str, response: str) -> None:
    """Refuse non-finite design values (``log(0)``, a division by zero) as the in-memory fit does."""
    names = [*d.names, response]
    p = len(d.x)
    for j in range(p + 1 + len(d.z1) + len(d.z2)):
        bad = int(tot[f"bad_{j}"][0])
        if not bad:
            continue
        if j == p:
            raise ModelSpecificationError(
                f"response {response!r} is not finite in {bad} row(s); check the transformation and the "
                "values"
            )
        if j < p:
            raise ModelSpecificationError(f"fixed-effect column {names[j]!r} is not finite in {bad} row(s)")
        raise ModelSpecificationError(f"a random-effects column of {text!r} has non-finite values")
