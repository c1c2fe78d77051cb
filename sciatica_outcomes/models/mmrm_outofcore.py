"""MMRM fits from where the data live: the cross products per missingness pattern computed by DuckDB.

Derivation. Subject ``i`` with visit set ``S_i`` contributes ``y_i = X_i beta + e_i``, ``e_i ~ N(0,
Sigma[S_i, S_i])``. With ``z_it = [x_it, y_it]`` (the design row and the response of visit ``t``, both
scaled by ``sqrt(w_it)`` under weights) and ``W_k = Sigma[S_k, S_k]^-1`` for pattern ``k``, every term of
the REML criterion is linear in the per-pattern sums

.. math::

    M_k[s, t] = \\sum_{i: S_i = S_k} z_{is} z_{it}' \\qquad (s, t \\in S_k),

    X'V^{-1}X = \\sum_k \\sum_{s,t} W_k[s,t] M_k[s,t]_{xx}, \\quad X'V^{-1}y = \\sum_k \\sum_{s,t} W_k[s,t]
    M_k[s,t]_{xy}, \\quad y'V^{-1}y = \\sum_k \\sum_{s,t} W_k[s,t] M_k[s,t]_{yy},

and ``sum_i log|Sigma_i| = sum_k n_k log|Sigma[S_k, S_k]|``. The gradient, the observed Hessian (central
differences of it), ``d vcov(beta) / d theta`` (Satterthwaite) and the Kenward-Roger blocks ``P_a = -sum
W G_a W . M_xx``, ``Q_ab = sum W G_a W G_b W . M_xx``, ``n_k tr(W G_a W G_b)`` (and ``R_ab`` with the second
derivatives) are functions of the same ``M_k`` and ``n_k``: they need nothing else. So a ``GROUP BY
pattern, s, t`` over the pairs of a subject's rows (a self-join on the subject) returns everything the fit
needs: ``#patterns x |S_k|^2 x (p + 1)^2`` numbers, independent of the number of subjects. The optimiser then
runs :class:`~sciatica_outcomes.models.mmrm.MMRM`'s own code on them (``MMRM._fit_patterns``): same start,
same steps, the statistics differing from the in-memory ones by the order of summation only.

What needs more than the pattern sums, and is refused out of core: empirical (sandwich) covariances
(``sum_i X_i' W r_i r_i' W X_i`` is quartic in ``z_i``), between-within df (which terms vary within a
subject: a property of the rows) and ``sp_exp`` (its positions are the distinct coordinate points, not the
visits). Per-subject predictions and residuals need the subject's rows: pass them to
:meth:`MMRMResult.predict <sciatica_outcomes.models.mmrm.MMRMResult.predict>`.

The SQL goes through the growth model's design layer (:func:`~sciatica_outcomes.models.sqlstats.design_sql`,
:class:`~sciatica_outcomes.models.sqlstats.SqlDialect`): numeric terms, functions, factors, interactions,
``poly(x, d, raw = TRUE)`` and ``ns()`` are supported, orthogonal ``poly()`` and ``scale()`` refused with
the same messages. :func:`pattern_queries` writes it for any dialect; :func:`mmrm_statistics` runs it on
DuckDB.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.formula import Design, parse_formula
from sciatica_outcomes.models.inference import type3_contrasts
from sciatica_outcomes.models.mmrm import (
    MMRM,
    RowsDropped,
    _as_names,
    _CovSpec,
    _FitInputs,
    _natural_key,
    _Patterns,
    _visit_levels,
)
from sciatica_outcomes.models.outofcore import _SRC, _run, check_gram_rank, resolve_variables
from sciatica_outcomes.models.sandwich import check_weight_count
from sciatica_outcomes.models.sqlstats import DUCKDB, DesignSql, SqlDialect, column_kind, design_sql

if TYPE_CHECKING:
    import duckdb

__all__ = ["MAX_POSITIONS", "MMRMStatistics", "mmrm_statistics", "pattern_queries"]

#: covariance positions (visits, times the groups of a group-specific covariance) a pattern key can hold:
#: the key is ``sum 2^position``, exact in a double up to 2^53
MAX_POSITIONS = 50
_POS = "__so_pos"
_VPOS = "__so_visit_pos"


@dataclass
class MMRMStatistics:
    """The pattern statistics and what the fit needs besides them (:func:`mmrm_statistics`)."""

    patterns: _Patterns
    structure: str | _CovSpec
    labels: list[str]
    inputs: _FitInputs
    seconds: float


def pattern_queries(
    d: DesignSql, subject: str, position: str, weight: str | None, source: str, dialect: SqlDialect = DUCKDB
) -> str:
    """The per-pattern cross products of ``z = [x, y]`` over ``source`` (complete rows: ``d.where``).

    Parameters
    ----------
    d : DesignSql
        Design columns and the complete-row filter (:func:`~sciatica_outcomes.models.sqlstats.design_sql`).
    subject : str
        Subject column (quoted).
    position : str
        Integer covariance position of a row (``0 .. T - 1``, or ``group * T + visit``).
    weight : str, optional
        Observation weight expression; rows are scaled by its square root.
    source : str
        Table expression.
    dialect : SqlDialect
        Target engine (the query uses ``WITH``, a window sum and an inner self-join only).

    Returns
    -------
    str
        One row per (pattern, s, t) with ``s <= t``: ``pat`` (``sum 2^position`` of the subject's rows),
        ``pa``, ``pb`` (positions), ``n`` (subjects: pairs of the pattern at ``s, t``) and ``m_i_j =
        sum z_is[i] z_it[j]`` for all ``i, j`` in ``0 .. p`` (``y`` last), ordered by ``pat, pa, pb``.
    """
    z = [*d.x, d.y]
    if weight is not None:
        z = [f"({e}) * sqrt({weight})" for e in z]
    cols = ", ".join(f"{e} AS z{j}" for j, e in enumerate(z))
    rows = f"SELECT {subject} AS s, {position} AS pos, {cols} FROM {source} WHERE {d.where}"
    pattern = "SELECT r.*, CAST(sum(power(2.0, r.pos)) OVER (PARTITION BY r.s) AS BIGINT) AS pat FROM r"
    k = len(z)
    sums = ", ".join(f"sum(a.z{i} * b.z{j}) AS m_{i}_{j}" for i in range(k) for j in range(k))
    return (
        f"WITH r AS ({rows}), rp AS ({pattern}) "
        f"SELECT a.pat AS pat, a.pos AS pa, b.pos AS pb, count(*) AS n, {sums} "
        "FROM rp AS a JOIN rp AS b ON a.s = b.s AND a.pos <= b.pos "
        "GROUP BY a.pat, a.pos, b.pos ORDER BY a.pat, a.pos, b.pos"
    )


def _case(conds: Sequence[str], values: Sequence[str]) -> str:
    whens = " ".join(f"WHEN {c} THEN {v}" for c, v in zip(conds, values, strict=True))
    return f"(CASE {whens} END)"


def _refuse(model: MMRM) -> None:
    """Refuse what the pattern sums cannot give, naming why and what to do instead."""
    if model.covariance == "sp_exp" or _as_names(model.coordinates):
        raise ModelSpecificationError(
            "sp_exp out of core is not supported: its covariance positions are the distinct coordinate "
            "points of the rows, not the visits; fit it in memory (--engine memory) or use a visit structure"
        )
    if model.vcov != "asymptotic":
        raise ModelSpecificationError(
            f"vcov={model.vcov!r} needs each subject's residual cross products (quartic in the rows), which "
            "the pattern sums do not hold: use vcov='asymptotic' out of core or fit in memory"
        )
    if model.ddf == "between-within":
        raise ModelSpecificationError(
            "between-within df need to know which terms vary within a subject, a property of the rows: "
            "use ddf='satterthwaite', 'kenward-roger' or 'residual' out of core, or fit in memory"
        )


def _type3(design: Design, n_rows: int = 0) -> list[tuple[str, FloatArray]]:
    """Type III hypothesis matrices without the rows.

    ``type3_contrasts`` computes ``T = (X_s'X_s)^-1 X_s'X``; the sum-coded design is ``X_s = X K`` with
    ``K`` fixed by the codings alone, so ``T = K^-1`` for every full-rank ``X``: it is computed here on
    generated rows (random factor codes and numeric columns), the same function on other rows.
    """
    formula = design.formula
    p = len(design.column_names)
    n = max(n_rows, 40 * p + 40)
    rng = np.random.default_rng(20261202)
    data: dict[str, FloatArray] = {}
    for lab, var in formula.variables.items():
        if var.kind == "factor":
            data[lab] = rng.integers(0, len(var.levels), n).astype(np.int64)
        else:
            data[lab] = rng.standard_normal((n, len(var.suffixes)))
    x = design._matrix(data, n)
    if np.linalg.matrix_rank(x) < p:  # pragma: no cover - 40 rows per column of random codes
        return _type3(design, 4 * n)
    return type3_contrasts(x, design._matrix(data, n, sum_coding=True), design.term_columns)


def mmrm_statistics(model: MMRM, rel: duckdb.DuckDBPyRelation) -> MMRMStatistics:
    """Resolve the design and compute the pattern statistics of ``model`` on ``rel`` by DuckDB.

    Parameters
    ----------
    model : MMRM
        The estimator (its parameters are read, nothing is fitted here).
    rel : duckdb.DuckDBPyRelation
        The data (:func:`~sciatica_outcomes.models.outofcore.open_source`), one row per subject and visit.

    Returns
    -------
    MMRMStatistics

    Raises
    ------
    ModelSpecificationError
        As :meth:`MMRM.fit` (unknown columns, random terms, duplicated subject-visit rows, a subject in two
        covariance groups, visits without a complete row, rank deficiency, unidentifiable covariance), and
        what the pattern sums cannot give (:func:`_refuse`) or SQL cannot evaluate.
    UnusableInputError
        No complete row.
    """
    t0 = time.perf_counter()
    _refuse(model)
    dia = DUCKDB
    parsed = parse_formula(model.formula)
    model._check_formula(parsed)
    kinds = {c: column_kind(str(t)) for c, t in zip(rel.columns, rel.types, strict=True)}
    needed = sorted(
        set(parsed.columns())
        | {model.subject, model.visit}
        | ({model.group} if model.group else set())
        | ({model.weights} if model.weights else set())
    )
    missing = [c for c in needed if c not in kinds]
    if missing:
        raise ModelSpecificationError(
            f"formula {model.formula!r} uses columns {missing} the data do not have; available: "
            f"{', '.join(rel.columns)}"
        )
    q = dia.ident
    subj, vis = q(model.subject), q(model.visit)
    base = f"{subj} IS NOT NULL AND {vis} IS NOT NULL"
    head = _run(
        rel, f"SELECT count(*) AS total, count(*) FILTER (WHERE {base}) AS based FROM {_SRC}", "count"
    )
    total, based = int(head["total"][0]), int(head["based"][0])
    # visit levels in the in-memory order (numeric, natural or the given order), matched by raw value
    distinct = rel.query(_SRC, f"SELECT DISTINCT {vis} AS v FROM {_SRC} WHERE {base}")
    if distinct is None:  # pragma: no cover - a SELECT always gives a relation
        raise ModelSpecificationError("the visit query returned nothing")
    raw = distinct.pl()["v"].rename(model.visit)
    if raw.len() == 0:
        raise UnusableInputError(f"no row has a {model.visit!r} and a {model.subject!r}; nothing to fit")
    text, levels = _visit_levels(raw, model.visit_levels)
    value_of = dict(zip(text.to_list(), raw.to_list(), strict=True))
    numeric_visit = raw.dtype.is_numeric()
    conds = [
        f"{dia.to_double(vis)} = {dia.double(float(value_of[lv]))}"
        if numeric_visit
        else f"{dia.to_text(vis)} = {dia.string(str(value_of[lv]))}"
        for lv in levels
    ]
    label_sql = _case(conds, [dia.string(lv) for lv in levels])
    vpos_sql = _case(conds, [str(j) for j in range(len(levels))])
    others = [q(c) for c in needed if c != model.visit]
    rows_src = (
        f"(SELECT {', '.join([*others, f'{label_sql} AS {vis}', f'{vpos_sql} AS {_VPOS}'])} FROM {_SRC} "
        f"WHERE {base}) AS __so_rows"
    )
    kinds_r = {c: kinds[c] for c in needed}
    kinds_r[model.visit] = "categorical"
    visit_enum = pl.Series(model.visit, levels, dtype=pl.Enum(levels))
    resolve_variables(
        rel,
        parsed,
        kinds_r,
        "TRUE",
        dict(model.reference or {}),
        source=rows_src,
        given={model.visit: visit_enum},
    )
    design = Design.assemble(parsed)
    d0 = design_sql(design, {}, model.subject, None, kinds_r, "TRUE", dia)
    # complete rows as MMRM._prepare defines them: a finite response, then finite covariates (factor
    # columns not null, the covariance group not null)
    ok_y = f"NOT {dia.not_finite(d0.y)}"
    x_parts = [f"NOT {dia.not_finite(e)}" for e in d0.x if e != "1.0"]
    for var in parsed.variables.values():
        if var.kind == "factor":
            x_parts += [f"{q(c)} IS NOT NULL" for c in var.columns]
            x_parts += [dia.not_nan(q(c)) for c in var.columns if kinds_r.get(c) == "float"]
    if model.group is not None:
        x_parts.append(f"{q(model.group)} IS NOT NULL")
    ok_x = " AND ".join(x_parts) if x_parts else "TRUE"
    kept = f"({ok_y}) AND ({ok_x})"
    agg = [
        f"count(*) FILTER (WHERE NOT ({ok_y})) AS miss_y",
        f"count(*) FILTER (WHERE ({ok_y}) AND NOT ({ok_x})) AS miss_x",
        f"count(*) FILTER (WHERE {kept}) AS kept",
    ]
    info: dict[str, tuple[str, Any]] = {}
    for var in parsed.variables.values():
        for col in var.columns:
            if var.kind == "factor":
                info[col] = ("factor", [str(v) for v in var.levels])
            elif col not in info:
                info[col] = ("numeric", None)
    numeric_cols = [c for c, (k, _) in info.items() if k == "numeric"]
    agg += [f"avg({dia.to_double(q(c))}) FILTER (WHERE {kept}) AS cm_{j}" for j, c in enumerate(numeric_cols)]
    w_sql = None
    if model.weights is not None:
        if kinds_r[model.weights] not in ("numeric", "float"):
            wtype = rel.types[rel.columns.index(model.weights)]
            raise ModelSpecificationError(f"weights column {model.weights!r} must be numeric, got {wtype}")
        w_sql = dia.to_double(q(model.weights))
        agg += [
            f"count(*) FILTER (WHERE {kept} AND NOT (coalesce({dia.isfinite}({w_sql}), false) "
            f"AND {w_sql} > 0)) AS bad_w",
            f"sum(ln({w_sql})) FILTER (WHERE {kept} AND {w_sql} > 0) AS log_w",
        ]
    tot = _run(rel, f"SELECT {', '.join(agg)} FROM {rows_src}", "row counts")
    n_kept = int(tot["kept"][0])
    if n_kept == 0:
        raise UnusableInputError(
            f"no row has a response and every covariate of {model.formula!r}; nothing to fit"
        )
    if model.weights is not None:
        check_weight_count(int(tot["bad_w"][0]), model.weights)
    for j, c in enumerate(numeric_cols):
        info[c] = ("numeric", float(tot[f"cm_{j}"][0]))
    present = _run(rel, f"SELECT DISTINCT {_VPOS} AS p FROM {rows_src} WHERE {kept}", "visits")["p"]
    model._check_visits_kept(levels, [levels[int(j)] for j in present])
    dup = _run(
        rel,
        f"SELECT {subj} AS s, {vis} AS v, count(*) AS c FROM {rows_src} WHERE {kept} GROUP BY {subj}, {vis} "
        f"HAVING count(*) > 1 ORDER BY 1, 2",
        "duplicate visits",
    )
    if dup["c"].shape[0]:
        model._check_no_duplicates(int(dup["c"].sum()), list(zip(dup["s"][:3], dup["v"][:3], strict=True)))
    group_levels: list[str] = []
    position = _VPOS
    if model.group is not None:
        g = dia.to_text(q(model.group))
        vals = _run(rel, f"SELECT DISTINCT {g} AS g FROM {rows_src} WHERE {kept}", "group levels")["g"]
        group_levels = sorted((str(v) for v in vals), key=_natural_key)
        moved = _run(
            rel,
            f"SELECT {subj} AS s FROM {rows_src} WHERE {kept} GROUP BY {subj} HAVING count(DISTINCT {g}) > 1 "
            "ORDER BY 1 LIMIT 1",
            "covariance groups",
        )["s"]
        if moved.shape[0]:
            model._refuse_moved_subject(moved[0])
        gcode = _case(
            [f"{g} = {dia.string(lv)}" for lv in group_levels], [str(j) for j in range(len(group_levels))]
        )
        position = f"({gcode} * {len(levels)} + {_VPOS})"
    n_pos = max(len(group_levels), 1) * len(levels)
    if n_pos > MAX_POSITIONS:
        raise ModelSpecificationError(
            f"{n_pos} covariance positions (visits x groups); out of core at most {MAX_POSITIONS}: fit in "
            "memory (--engine memory)"
        )
    d = DesignSql(x=d0.x, y=d0.y, z1=[], z2=[], inner=subj, outer=None, where=kept, names=d0.names)
    res = _run(rel, pattern_queries(d, subj, position, w_sql, rows_src, dia), "pattern statistics")
    pats = _assemble_patterns(res, len(d.x), n_pos, n_kept)
    check_gram_rank(
        sum(np.einsum("aiaj->ij", ten) for ten in pats.tensors)[: pats.p, : pats.p], design.column_names
    )
    struct, labels = model._visit_positions(pats, levels, group_levels)
    dropped = RowsDropped(
        rows_in=total,
        missing_subject_or_visit=total - based,
        missing_response=int(tot["miss_y"][0]),
        missing_covariate=int(tot["miss_x"][0]),
    )
    p = len(d.x)
    inputs = _FitInputs(
        design=design,
        levels=levels,
        group_levels=group_levels,
        dropped=dropped,
        log_weight_sum=0.0 if model.weights is None else float(tot["log_w"][0]),
        column_info=info,
        type3=_type3(design),
        coef_df=np.full(p, float(n_kept - p)) if model.ddf == "residual" else None,
        engine="duckdb",
    )
    return MMRMStatistics(pats, struct, labels, inputs, time.perf_counter() - t0)


def _assemble_patterns(res: dict[str, Any], p: int, n_pos: int, n_obs: int) -> _Patterns:
    """The ``(m, p + 1, m, p + 1)`` tensor of each pattern from the rows of :func:`pattern_queries`."""
    k = p + 1
    pat = np.asarray(res["pat"], dtype=np.int64)
    pa = np.asarray(res["pa"], dtype=np.int64)
    pb = np.asarray(res["pb"], dtype=np.int64)
    blocks = np.stack(
        [np.asarray(res[f"m_{i}_{j}"], dtype=float) for i in range(k) for j in range(k)], axis=1
    )
    blocks = blocks.reshape(-1, k, k)
    keys, first = np.unique(pat, return_index=True)
    bounds = [*first.tolist(), pat.shape[0]]
    bits = (keys[:, None] >> np.arange(n_pos)[None, :]) & 1
    sets, counts, tensors = [], [], []
    for j in range(keys.shape[0]):  # loop over missingness patterns
        vis = np.flatnonzero(bits[j]).astype(np.int64)
        index = np.full(n_pos, -1, dtype=np.int64)
        index[vis] = np.arange(vis.shape[0])
        sl = slice(bounds[j], bounds[j + 1])
        ia, ib, blk = index[pa[sl]], index[pb[sl]], blocks[sl]
        ten = np.zeros((vis.shape[0], k, vis.shape[0], k))
        ten[ia, :, ib, :] = blk
        ten[ib, :, ia, :] = blk.transpose(0, 2, 1)
        sets.append(vis)
        counts.append(int(np.asarray(res["n"])[sl][ia == ib][0]))
        tensors.append(ten)
    return _Patterns(sets, np.asarray(counts), tensors, n_obs, p, n_pos)
