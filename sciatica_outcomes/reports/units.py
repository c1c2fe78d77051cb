"""Units (clinics, therapists, any grouping) as an audience may see them across the outputs that show them.

``responders --by``, ``compare-clinics`` and the quarterly report's provider comparison publish counts of
the same units: episodes assessed at each visit, in the risk-adjusted comparison, with a responder call,
responders. Each output withholding its own small cells would let one output give away what another withholds
(a unit's n in the comparison is its n assessed at 12 weeks in the responder table; a unit's count is the
network total minus the shown units). This module decides once, from all of a unit's counts, which units are
withheld whole (:func:`withheld_units`) and which responder counts of shown units are withheld
(:func:`withheld_responder_cells`), and applies the decision to a per-unit comparison
(:func:`withhold_comparison`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.defaults import DEFAULT_CASE_MIX
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.models.compare import case_mix_complete
from sciatica_outcomes.models.responders import RESPONDER_DEFINITIONS, responder_frame
from sciatica_outcomes.reports.privacy import SuppressionRule, feasible_ranges, withhold_units
from sciatica_outcomes.scoring import BASELINE_LABEL

__all__ = ["unit_counts", "withheld_responder_cells", "withheld_units", "withhold_comparison"]


def unit_counts(frame: pl.DataFrame, by: str, case_mix: str = DEFAULT_CASE_MIX) -> pl.DataFrame:
    """Every count that ``responders --by`` and ``compare-clinics`` publish of a unit, one column each.

    Parameters
    ----------
    frame : polars.DataFrame
        :func:`~sciatica_outcomes.models.responders.responder_frame` of one measure.
    by : str
        The unit column (``clinic_id``, ``therapist_id``, or any grouping of ``responders --by``).
    case_mix : str
        Case-mix formula of ``compare-clinics``; its complete rows give a unit's ``n`` there (the column is
        left out when the data lack the formula's columns: ``compare-clinics`` refuses them).

    Returns
    -------
    polars.DataFrame
        One row per unit (``by`` as text, a missing unit as null) and, per follow-up visit ``v`` and
        responder definition ``d``, integer columns ``v:assessed``, ``v:complete`` (the comparison's n),
        ``v:d:determined``, ``v:d:undetermined``, ``v:d:responders`` and ``v:d:non_responders``; 0 where a
        unit has no row. The same columns summed over the units are what the output without ``--by``
        (or the network) shows, so each column is a table with a known total.
    """
    follow = frame.filter(pl.col("visit") != BASELINE_LABEL).with_columns(pl.col(by).cast(pl.String))
    try:
        complete = pl.Series("__complete", case_mix_complete(follow, case_mix))
    except UnusableInputError:
        complete = None
    aggs = [pl.len().alias("assessed")]
    if complete is not None:
        follow = follow.with_columns(complete)
        aggs.append(pl.col("__complete").sum().alias("complete"))
    for d, col in RESPONDER_DEFINITIONS.items():  # loop over the two responder definitions
        call = pl.col(col)
        aggs += [
            call.is_not_null().sum().alias(f"{d}:determined"),
            call.is_null().sum().alias(f"{d}:undetermined"),
            call.fill_null(False).sum().alias(f"{d}:responders"),
            (call.is_not_null() & ~call.fill_null(False)).sum().alias(f"{d}:non_responders"),
        ]
    per = follow.group_by(by, "visit").agg(aggs)
    long = per.unpivot(index=[by, "visit"], variable_name="count").with_columns(
        (pl.col("visit") + ":" + pl.col("count")).alias("column"), pl.col("value").cast(pl.Int64)
    )
    wide = long.pivot(on="column", index=by, values="value", sort_columns=True).fill_null(0)
    return wide.sort(by, nulls_last=True)


#: The count columns of :func:`unit_counts` that are a unit's n (its episodes assessed at a visit, and in the
#: comparison); those with and without a responder call, responders and non-responders are parts of an n.
_N_KINDS = ("assessed", "complete")


def withheld_units(counts: pl.DataFrame, by: str, rule: SuppressionRule) -> list[str | None]:
    """The units an audience sees nothing of: one set for ``responders --by`` and ``compare-clinics``.

    Parameters
    ----------
    counts : polars.DataFrame
        :func:`unit_counts`.
    by : str
        Its unit column.
    rule : SuppressionRule
        The audience's rule.

    Returns
    -------
    list
        The withheld units' labels, sorted (empty when the rule withholds nothing).

    Notes
    -----
    A unit is withheld whole (every count, share, interval, funnel position, shrunken estimate and rank)
    when any of its n is in the rule's band (1-10): its episodes assessed at a visit, or in the comparison.
    Each n column has a published total (the output without ``--by``, the
    network), so the withheld units of a column together are its total minus the shown units: they are made
    at least two, with their sum in every n column 0 or above the threshold, by withholding the smallest
    shown non-zero unit of a column that fails, until none does. A withheld n is then bounded only by
    ``0 <= x <= S`` (``S`` the column's withheld sum), so none is pinned or narrowed into 1-10.

    Validated against: the linear-programming attacker of ``tests/reports/test_attack_units.py``
    (:func:`~sciatica_outcomes.reports.privacy.feasible_ranges` over every file of both outputs and the
    totals).
    """
    if not rule.withholds or counts.is_empty():
        return []
    n_cols = [c for c in counts.columns if c.rsplit(":", 1)[-1] in _N_KINDS]
    values = counts.select(n_cols).to_numpy().astype(np.int64)
    hidden = np.asarray(((values >= rule.low) & (values <= rule.high)).any(axis=1), dtype=bool)
    for _ in range(values.shape[0]):  # each pass withholds one more unit, or stops
        if not hidden.any() or hidden.all():
            break
        sums = values[hidden].sum(axis=0)
        failing = np.flatnonzero((sums >= rule.low) & (sums <= rule.high))
        if hidden.sum() == 1:  # one withheld unit is the total minus the others in every column
            failing = np.array([int(np.argmax(values[hidden][0]))])
        if failing.size == 0:
            break
        col = values[:, failing[0]]
        shown = np.flatnonzero(~hidden)
        nonzero = shown[col[shown] > 0]
        pool = nonzero if nonzero.size else shown
        hidden[pool[np.argmin(col[pool])]] = True
    labels = counts[by].to_list()
    return sorted((labels[i] for i in np.flatnonzero(hidden)), key=lambda x: (x is None, x or ""))


def withheld_responder_cells(
    counts: pl.DataFrame, by: str, hidden: list[str | None], rule: SuppressionRule
) -> dict[tuple[str | None, str, str], str]:
    """Responder counts of shown units that are withheld: ``(unit, definition, visit)``.

    Parameters
    ----------
    counts : polars.DataFrame
        :func:`unit_counts`.
    by : str
        Its unit column.
    hidden : list
        :func:`withheld_units` (withheld whole; their cells are not listed again).
    rule : SuppressionRule
        The audience's rule.

    Returns
    -------
    dict
        ``(unit, definition, visit)`` of shown units to what is withheld there: ``"responders"`` (responders,
        and so share and interval) or ``"split"`` (the determined and undetermined calls as well); their n
        assessed stays shown.

    Notes
    -----
    Per definition and visit a unit's shown n assessed ``a`` splits into determined ``d`` and undetermined
    ``u`` calls, and ``d`` into responders ``r`` and non-responders ``c``; the totals ``A, D, U, R, C`` are
    published. Primary: ``d`` or ``u`` in the band withholds the split (``d, u, r, c``), ``r`` or ``c`` the
    responders (``r, c``). Then the attacker's linear program
    (:func:`~sciatica_outcomes.reports.privacy.feasible_ranges` over every unit's ``a, d, u, r, c`` with
    ``d + u = a``, ``r + c = d`` and the five sums) bounds every withheld count; while one that is not 0 is
    pinned or narrowed into 0..threshold, the same level of the shown unit with the smallest non-zero part
    is withheld as well (a complementary suppression), the split first.
    """

    out: dict[tuple[str | None, str, str], str] = {}
    if not rule.withholds or counts.is_empty():
        return out
    labels = counts[by].to_list()
    is_hidden = np.array([lab in hidden for lab in labels])
    visits = sorted({c.split(":", 1)[0] for c in counts.columns if c != by})
    u, k = len(labels), 5
    # x = (a_1..a_u, d_.., un_.., r_.., c_.., A, D, U, R, C): d + un - a = 0, r + c - d = 0, sums = totals
    block = [np.arange(u) + j * u for j in range(k)]
    ident = np.zeros((2 * u + k, k * u + k))
    ident[np.arange(u), block[1]] = ident[np.arange(u), block[2]] = 1.0
    ident[np.arange(u), block[0]] = -1.0
    ident[u + np.arange(u), block[3]] = ident[u + np.arange(u), block[4]] = 1.0
    ident[u + np.arange(u), block[1]] = -1.0
    for j in range(k):
        ident[2 * u + j, block[j]] = 1.0
        ident[2 * u + j, k * u + j] = -1.0
    for visit in visits:  # loop over the few visits and the two definitions
        for d in RESPONDER_DEFINITIONS:
            if f"{visit}:{d}:determined" not in counts.columns:
                continue  # a definition the counts do not have (no calls made)
            parts = [
                counts[f"{visit}:{name}"].to_numpy().astype(np.int64)
                for name in ("assessed", f"{d}:determined", f"{d}:undetermined", f"{d}:responders")
            ]
            parts.append(parts[1] - parts[3])
            grid = np.stack(parts)  # (5, units)
            values = np.concatenate([grid.ravel(), grid.sum(axis=1)]).astype(float)
            small = (grid >= rule.low) & (grid <= rule.high)
            split = is_hidden | small[1] | small[2]  # d and u withheld
            resp = split | small[3] | small[4]  # r and c withheld
            for _ in range(2 * u + 2):  # each pass withholds one more unit's cell, or stops
                masks = [is_hidden, split, split, resp, resp, np.zeros(k, dtype=bool)]
                withheld = np.concatenate(masks)
                if not withheld.any():
                    break
                lo, hi = feasible_ranges(values, withheld, ident)
                bad = (withheld & (values > 0) & ((hi - lo < 0.5) | (hi < rule.high + 0.5)))[: k * u]
                bad_split = bad.reshape(k, u)[1:3].any()
                mask, rows = (split, grid[1:3]) if bad_split else (resp, grid[3:5])
                shown = np.flatnonzero(~mask)
                if not bad.any() or shown.size == 0:
                    break
                part = np.where(rows[:, shown] > 0, rows[:, shown], np.iinfo(np.int64).max).min(axis=0)
                mask[shown[np.argmin(part)]] = True
                resp |= split
            out.update({(labels[i], d, visit): "responders" for i in np.flatnonzero(resp & ~is_hidden)})
            out.update({(labels[i], d, visit): "split" for i in np.flatnonzero(split & ~is_hidden)})
    return out


def withhold_comparison(
    providers: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame],
    measure: str,
    level: str,
    rule: SuppressionRule,
    *,
    config: ClinicalConfig | None = None,
    case_mix: str = DEFAULT_CASE_MIX,
    rank_col: str | None = None,
    rank_by: str | None = None,
) -> pl.DataFrame:
    """A provider comparison's units as the audience may see them: the units :func:`withheld_units` withholds.

    Parameters
    ----------
    providers : polars.DataFrame
        One row per unit (``provider``, integer ``n``, statistics), e.g.
        :attr:`~sciatica_outcomes.models.compare.ProviderComparison.providers`.
    tables : mapping
        The canonical tables the comparison was computed from.
    measure, level : str
        The outcome and the unit column (``clinic_id``, ``therapist_id``).
    rule : SuppressionRule
        The audience's rule.
    config : ClinicalConfig, optional
        Visit windows and MCIDs.
    case_mix : str
        The comparison's case-mix formula.
    rank_col, rank_by : str, optional
        As in :func:`~sciatica_outcomes.reports.privacy.withhold_units`.

    Returns
    -------
    polars.DataFrame
        :func:`~sciatica_outcomes.reports.privacy.withhold_units` of ``providers`` with the shared withheld
        set: its units enter with ``n`` at the threshold (withheld, and two or more of them sum above it, so
        that no complement of its own is added), the other units are above the threshold already.
    """
    hidden = withheld_units(
        unit_counts(responder_frame(tables, measure, config), level, case_mix), level, rule
    )
    marked = providers.with_columns(
        pl.when(pl.col("provider").cast(pl.String).is_in([h for h in hidden if h is not None]))
        .then(pl.lit(rule.high))
        .otherwise(pl.col("n"))
        .alias("n")
    )
    return withhold_units(marked, rule=rule, rank_col=rank_col, rank_by=rank_by)
