"""Privacy by construction for every table, figure label and CSV the reports write.

Who reads an output decides what it may show (:class:`SuppressionRule`, :func:`rule_for`): under the
``network`` and ``public`` audiences cells with a value from 1 to the threshold (default 10) are suppressed
(primary suppression), and further cells are suppressed until no suppressed value can be recovered from the
row, column and grand totals, nor narrowed into 0..threshold (complementary suppression), following the CMS
cell-size suppression policy (``shared/domain.md`` §5); under ``internal`` a clinic's own counts are exact.
Every function takes the rule as ``rule=`` and defaults to the network rule. Percentages are derived only from
shown counts. CSV exports neutralise cells that a spreadsheet would run as a formula
(:mod:`sciatica_outcomes.outputs`). :func:`protect_linked` suppresses a set of counts tied by arbitrary linear
identities (a patient flow over consecutive quarters, clinics and their network total), choosing the
complements of least cost by an integer program whose constraints the attacker's linear programs generate,
and :func:`feasible_ranges` is the attacker's view of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import polars as pl
from scipy.optimize import Bounds, LinearConstraint, linprog, milp
from scipy.sparse import csr_array

# one spreadsheet-safe CSV writer for every CSV the product writes (re-exported here for the reports)
from sciatica_outcomes.outputs import neutralise_cell, write_safe_csv

__all__ = [
    "AUDIENCES",
    "NETWORK_RULE",
    "SUPPRESSED",
    "Audience",
    "SuppressedTable",
    "SuppressionRule",
    "audit_suppression",
    "feasible_ranges",
    "leaked",
    "neutralise_cell",
    "protect_linked",
    "rule_for",
    "safe_count",
    "safe_percent",
    "safe_rate",
    "suppress_counts",
    "suppress_table",
    "withhold_units",
    "write_safe_csv",
]

#: What a report prints in place of a suppressed count.
SUPPRESSED = "*"
#: Smallest and largest count that may never be shown (CMS policy: 1-10; 0 may be shown).
LOW, HIGH = 1, 10

#: Who reads an output. ``internal``: the clinic's own staff (own counts exact); ``network``: the clinics of
#: the network and their funders; ``public``: anyone (a published report).
Audience = Literal["internal", "network", "public"]
AUDIENCES: tuple[Audience, ...] = get_args(Audience)


@dataclass(frozen=True)
class SuppressionRule:
    """Which counts an audience may see: counts from ``low`` to ``high`` are withheld.

    ``internal`` withholds no count of the clinic's own patients (``high < low``: the band is empty) but still
    shows no identifiers, exact dates or row-level values; ``network`` and ``public`` withhold 1 to
    ``threshold`` (default 10, the CMS cell-size rule, ``shared/domain.md`` §5).

    Attributes
    ----------
    audience : {"internal", "network", "public"}
        Who reads the output.
    low, high : int
        Smallest and largest withheld count; ``high < low`` means nothing is withheld.
    """

    audience: Audience
    low: int = LOW
    high: int = HIGH

    @property
    def withholds(self) -> bool:
        """True when some count is withheld under this rule."""
        return self.high >= self.low

    def is_small(self, n: int) -> bool:
        """True when the count ``n`` is withheld (``low <= n <= high``)."""
        return self.low <= n <= self.high

    @property
    def min_group(self) -> int:
        """Fewest patients behind a statistic (mean, interval, estimate) the audience may see.

        ``threshold + 1`` when counts are withheld; 2 under ``internal`` (a statistic of one patient is a
        row-level value, which no audience sees).
        """
        return self.high + 1 if self.withholds else 2

    def to_dict(self) -> dict[str, object]:
        """Plain-data form for the provenance: audience and the withheld band (``None`` when none is)."""
        return {
            "audience": self.audience,
            "withheld_from": self.low if self.withholds else None,
            "withheld_to": self.high if self.withholds else None,
        }

    def describe(self) -> str:
        """One plain sentence for a report's front page."""
        if not self.withholds:
            return f"Audience: {self.audience}. Counts of this clinic's own patients are shown exactly."
        return (
            f"Audience: {self.audience}. Counts from {self.low} to {self.high} are withheld (shown as "
            f"{SUPPRESSED}), with further cells withheld so that none can be worked out from the totals."
        )


def rule_for(audience: str, threshold: int | None = None) -> SuppressionRule:
    """The suppression rule of an audience.

    Parameters
    ----------
    audience : {"internal", "network", "public"}
        Who reads the output.
    threshold : int, optional
        Largest withheld count for ``network``/``public`` (default 10); not allowed for ``internal``.

    Returns
    -------
    SuppressionRule

    Raises
    ------
    ValueError
        For an unknown audience, a threshold below 1, or a threshold given with ``internal``.
    """
    if audience not in AUDIENCES:
        raise ValueError(f"audience {audience!r} is not one of {', '.join(AUDIENCES)}")
    if audience == "internal":
        if threshold is not None:
            raise ValueError("a suppression threshold applies to the network and public audiences only")
        return SuppressionRule("internal", low=1, high=0)
    high = HIGH if threshold is None else threshold
    if high < 1:
        raise ValueError(f"the suppression threshold must be 1 or more, not {high}")
    return SuppressionRule(audience, low=LOW, high=high)


#: The rule every privacy function applies when none is given: the network audience, 1-10 withheld.
NETWORK_RULE = SuppressionRule("network", low=LOW, high=HIGH)


@dataclass(frozen=True)
class SuppressedTable:
    """A count table after suppression.

    Attributes
    ----------
    values : numpy.ndarray
        The original counts (rows x columns); never shown where ``mask`` is True.
    mask : numpy.ndarray of bool
        True where a cell is suppressed.
    row_total_mask, col_total_mask : numpy.ndarray of bool
        True where a row total (per row) or column total (per column) must not be shown: it is 1-10, or it
        would let a suppressed cell be recovered.
    grand_total_suppressed : bool
        True when the grand total must not be shown (1-10, or it would reveal a suppressed cell).
    primary : numpy.ndarray of bool
        Cells suppressed because their own value is 1-10 (the rest of ``mask`` is complementary).
    rule : SuppressionRule
        The rule the table was suppressed under.
    """

    values: np.ndarray
    mask: np.ndarray
    row_total_mask: np.ndarray
    col_total_mask: np.ndarray
    grand_total_suppressed: bool
    primary: np.ndarray
    rule: SuppressionRule = NETWORK_RULE

    def shown(self) -> np.ndarray:
        """Counts as an object array with :data:`SUPPRESSED` in suppressed cells."""
        out = self.values.astype(object)
        out[self.mask] = SUPPRESSED
        return out


def _is_small(x: np.ndarray, rule: SuppressionRule = NETWORK_RULE) -> np.ndarray:
    return (x >= rule.low) & (x <= rule.high)


def feasible_ranges(
    values: np.ndarray | Sequence[float],
    withheld: np.ndarray | Sequence[bool],
    identities: np.ndarray | Sequence[Sequence[float]],
    *,
    lower: np.ndarray | Sequence[float] | None = None,
    targets: np.ndarray | Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What an attacker can tell about each withheld count: its smallest and largest feasible value.

    Parameters
    ----------
    values : array_like, shape (n,)
        Every count of the published set (shown and withheld).
    withheld : array_like of bool, shape (n,)
        True where the count is not published.
    identities : array_like, shape (m, n)
        Linear identities that hold among the counts and that the attacker knows: ``identities @ x = 0``
        (a total minus its parts, next quarter's start minus this quarter's end, a network count minus its
        clinics' counts, ...).
    lower : array_like, shape (n,), optional
        Known lower bounds (default 0: counts are non-negative).
    targets : array_like of bool, shape (n,), optional
        The withheld counts to bound (default all); the others keep ``(lower, inf)`` (not computed).

    Returns
    -------
    tuple of numpy.ndarray
        ``(lo, hi)`` for every count (equal to the value for a shown count; ``hi = inf`` when unbounded).

    Notes
    -----
    Linear programming (HiGHS) of ``min / max x_j`` subject to ``A_w x_w = -A_s v_s``, ``x_w >= lower``,
    over the withheld counts ``x_w`` given the shown counts ``v_s``: the attacker's tightest bounds from every
    published equality (integrality is ignored, which can only widen the range by less than one).
    """
    v = np.asarray(values, dtype=float)
    w = np.asarray(withheld, dtype=bool)
    a = np.asarray(identities, dtype=float).reshape(-1, v.size)
    lo_b = np.zeros(v.size) if lower is None else np.asarray(lower, dtype=float)
    lo, hi = v.copy(), v.copy()
    idx = np.flatnonzero(w)
    if idx.size == 0:
        return lo, hi
    rows = np.flatnonzero(np.abs(a[:, idx]).sum(axis=1) > 0)
    if rows.size == 0:
        lo[idx], hi[idx] = lo_b[idx], np.inf
        return lo, hi
    a_w = a[np.ix_(rows, idx)]
    b = -a[np.ix_(rows, np.flatnonzero(~w))] @ v[~w]
    bounds = [(float(lo_b[j]), None) for j in idx]
    want = np.ones(v.size, dtype=bool) if targets is None else np.asarray(targets, dtype=bool)
    lo[idx], hi[idx] = lo_b[idx], np.inf
    for k, j in enumerate(idx):
        if not want[j]:
            continue
        cost = np.zeros(idx.size)
        cost[k] = 1.0
        res_lo = linprog(cost, A_eq=a_w, b_eq=b, bounds=bounds, method="highs")
        res_hi = linprog(-cost, A_eq=a_w, b_eq=b, bounds=bounds, method="highs")
        lo[j] = res_lo.fun if res_lo.status == 0 else lo_b[j]
        hi[j] = -res_hi.fun if res_hi.status == 0 else np.inf
    return lo, hi


class _Audit:
    """The attacker's linear programs over one set of identities, sharing what earlier solves found.

    Every solve returns a feasible point of the attacker's system (a full vector of counts: the published
    ones at their values, the withheld ones as the solver set them), and the true counts are one. A point
    stays feasible for any withheld set that contains the counts it moved (a count withheld later, at its
    true value, keeps it feasible), so every point found is kept and used whenever it is valid. A withheld
    count is safe when a valid point has it above the threshold and two valid points differ in it by at
    least 0.5 (its largest feasible value then exceeds the threshold and its range is not a single value):
    such counts need no linear program of their own. The decisions equal those of solving a maximum (and,
    where the maximum is the value itself, a minimum) for every count.
    """

    def __init__(self, values: np.ndarray, identities: np.ndarray, rule: SuppressionRule) -> None:
        self.v = values.astype(float)
        self.a = identities
        self.rule = rule
        self.touched = np.abs(identities) > 0
        self.points: list[np.ndarray] = [self.v]
        self.moved: list[np.ndarray] = [np.zeros(self.v.size, dtype=bool)]
        self.solves = 0
        self.last = self.v  # the point of the latest solve

    def _range(self, withheld: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smallest and largest value of every count over the known points feasible for ``withheld``."""
        valid = ~(np.asarray(self.moved) & ~withheld).any(axis=1)
        pts = np.asarray(self.points)[valid]
        return pts.min(axis=0), pts.max(axis=0)

    def solve(self, withheld: np.ndarray, j: int, sense: float) -> tuple[float | None, np.ndarray | None]:
        """Optimise ``sense * x_j`` (+1: minimum, -1: maximum) and record the point.

        Returns the optimum (``None`` when unbounded) and the equality duals over all identities (zero for
        identities without a withheld count; ``None`` when the solve failed).
        """
        idx = np.flatnonzero(withheld)
        rows = np.flatnonzero(self.touched[:, idx].any(axis=1))
        if rows.size == 0:
            return (None if sense < 0 else 0.0), None
        a_w = csr_array(self.a[np.ix_(rows, idx)])
        b = -self.a[np.ix_(rows, np.flatnonzero(~withheld))] @ self.v[~withheld]
        cost = np.zeros(idx.size)
        cost[int(np.searchsorted(idx, j))] = sense
        res = linprog(cost, A_eq=a_w, b_eq=b, bounds=(0, None), method="highs")
        self.solves += 1
        if res.status != 0 or res.x is None:
            return (None if sense < 0 else 0.0), None
        point = self.v.copy()
        point[idx] = res.x
        self.last = point
        moved = np.abs(point - self.v) > 1e-9
        if moved.any():
            self.points.append(point)
            self.moved.append(moved)
            self.last = point
        duals = np.zeros(self.a.shape[0])
        duals[rows] = res.eqlin.marginals
        return float(sense * res.fun), duals

    def leaking(self, withheld: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """:func:`leaked` for the ``targets`` among the ``withheld`` counts (see the class notes)."""
        high = self.rule.high + 0.5
        out = np.zeros(self.v.size, dtype=bool)
        if not withheld.any() or not targets.any():
            return out
        if not self.touched[:, withheld].any():
            return out
        lo_k, hi_k = self._range(withheld)
        for j in np.flatnonzero(targets & withheld):
            if hi_k[j] >= high and hi_k[j] - lo_k[j] >= 0.5:
                continue  # certified by known points
            hi, _ = self.solve(withheld, int(j), -1.0)
            hi = np.inf if hi is None else hi
            lo_k, hi_k = np.minimum(lo_k, self.last), np.maximum(hi_k, self.last)
            if hi < high:
                out[j] = True
            elif hi < self.v[j] + 0.5 and hi_k[j] - lo_k[j] < 0.5:
                lo, _ = self.solve(withheld, int(j), 1.0)
                lo_k, hi_k = np.minimum(lo_k, self.last), np.maximum(hi_k, self.last)
                out[j] = hi - (0.0 if lo is None else lo) < 0.5
        return out


def _capacity_cut(
    audit: _Audit, withheld: np.ndarray, j: int, duals: np.ndarray, need: float, up: bool = True
) -> np.ndarray:
    """A cut ``coef @ y >= need`` that every pattern letting count ``j`` move by ``need`` satisfies.

    For any multipliers ``mu`` of the identities, weak duality bounds the attacker's largest move of
    ``x_j`` from its value (upwards, or downwards when not ``up``: ``s = +1, -1``), given the withheld set
    ``y``, by ``sum_i y_i (U_i g_i^+ + v_i g_i^-)`` with ``g = s e_j - A' mu`` (a withheld count moves
    within ``[-v_i, U_i]``, ``U_i`` unbounded; a published one not at all). The multipliers of the solve
    that found the move too small make the bound tight at the current pattern; coefficients are capped at
    ``need`` (a single such count suffices on its own). Both signs of the duals give valid cuts (the
    solver's sign convention aside); the tighter one at the current pattern is kept.
    """
    best: tuple[np.ndarray, float] | None = None
    for sign in (1.0, -1.0):
        g = -sign * (audit.a.T @ duals)
        g[j] += 1.0 if up else -1.0
        coef = np.where(g > 1e-9, np.inf, 0.0) + np.maximum(-g, 0.0) * audit.v
        coef = np.minimum(coef, need)
        coef[coef < 1e-9] = 0.0
        at_current = float(coef[withheld].sum())
        if best is None or at_current < float(best[0][withheld].sum()):
            best = (coef, at_current)
    assert best is not None
    return best[0]


def _protect_milp(
    v: np.ndarray,
    a: np.ndarray,
    *,
    rule: SuppressionRule,
    fix: np.ndarray,
    start: np.ndarray,
    price: np.ndarray,
    watch: np.ndarray,
    time_limit: float,
) -> np.ndarray | None:
    """The cheapest complementary set (integer program with cuts from the attacker's LPs), or ``None``.

    Binary ``y_i`` (withheld) for every free count, ``y = 1`` for the counts withheld from the start
    (``start``, the small ones among them); minimise ``price @ y`` subject to capacity cuts, added while
    the audit finds a sensitive count unprotected: every small withheld count (fixed or not) must reach
    ``threshold + 1`` in some feasible completion, and a withheld count above the threshold that is fixed
    as withheld (printed ``*`` by an earlier report) must be able to move up by one. A free complement that
    ends up pinned to its value is published instead (publishing a count every completion agrees on tells
    nothing new). ``None`` when ``scipy.optimize.milp`` stops at its time limit or finds no pattern (the
    caller falls back to the greedy).
    """
    free = ~fix
    high = float(rule.high)
    audit = _Audit(v, a, rule)
    sensitive = _is_small(v, rule) & watch & start
    big_fixed = fix & start & watch & (v > rule.high)
    cuts: list[np.ndarray] = []
    rhs: list[float] = []
    lower = start[free].astype(float)
    cost = price[free]
    deadline = time_limit
    y = start.copy()
    for _ in range(200):
        # audit: every sensitive count must reach threshold + 1; every fixed big one must move up by one
        lo_k, hi_k = audit._range(y)
        added = False
        for j in np.flatnonzero(sensitive & y):
            if hi_k[j] >= high + 1.0 - 1e-7:
                continue
            hi, duals = audit.solve(y, int(j), -1.0)
            lo_k, hi_k = np.minimum(lo_k, audit.last), np.maximum(hi_k, audit.last)
            if hi is None or hi >= high + 1.0 - 1e-7:
                continue
            cut = None if duals is None else _capacity_cut(audit, y, int(j), duals, high + 1.0 - v[j])
            if cut is None or not cut[free].any():
                return None  # cannot be closed by the free counts (the caller's greedy reports it)
            cuts.append(cut[free])
            rhs.append(high + 1.0 - v[j] - float(cut[fix & y].sum()))
            added = True
        for j in np.flatnonzero(big_fixed & y):
            # not pinned: some completion moves it by one, up or else down
            if hi_k[j] - lo_k[j] >= 0.5:
                continue
            hi, up_duals = audit.solve(y, int(j), -1.0)
            lo_k, hi_k = np.minimum(lo_k, audit.last), np.maximum(hi_k, audit.last)
            lo, down_duals = audit.solve(y, int(j), 1.0)
            lo_k, hi_k = np.minimum(lo_k, audit.last), np.maximum(hi_k, audit.last)
            if hi is None or lo is None or hi - lo >= 0.5:
                continue
            options = [
                _capacity_cut(audit, y, int(j), d, 1.0, up=up)
                for d, up in ((up_duals, True), (down_duals, False))
                if d is not None
            ]
            options = [c for c in options if c[free].any()]
            if not options:
                return None
            cuts.append(options[0][free])
            rhs.append(1.0 - float(options[0][fix & y].sum()))
            added = True
        if not added:
            break
        res = milp(
            cost,
            integrality=np.ones(cost.size),
            bounds=Bounds(lower, np.ones(cost.size)),
            constraints=LinearConstraint(np.vstack(cuts), lb=np.asarray(rhs), ub=np.inf),
            options={"time_limit": deadline},
        )
        if res.status != 0 or res.x is None:
            return None
        y = fix & start
        y[np.flatnonzero(free)] = res.x > 0.5
    else:
        return None
    # a free complement pinned to its value is published: the attacker's system is the same
    comp = y & free & ~_is_small(v, rule)
    pinned = np.zeros(v.size, dtype=bool)
    lo_k, hi_k = audit._range(y)
    for j in np.flatnonzero(comp):
        if hi_k[j] - lo_k[j] >= 0.5:
            continue
        hi, _ = audit.solve(y, int(j), -1.0)
        lo, _ = audit.solve(y, int(j), 1.0)
        lo_k, hi_k = np.minimum(lo_k, audit.last), np.maximum(hi_k, audit.last)
        pinned[j] = hi is not None and lo is not None and hi - lo < 0.5
    return y & ~pinned


def _leaking(
    values: np.ndarray,
    withheld: np.ndarray,
    identities: np.ndarray,
    targets: np.ndarray,
    rule: SuppressionRule,
) -> np.ndarray:
    """:func:`leaked` for ``targets``, with one linear program per count where one suffices."""
    return _Audit(values, identities, rule).leaking(withheld, targets)


def leaked(
    lo: np.ndarray, hi: np.ndarray, withheld: np.ndarray, rule: SuppressionRule = NETWORK_RULE
) -> np.ndarray:
    """Withheld counts an attacker pins to one value or narrows into ``0..threshold``.

    ``lo`` and ``hi`` are the attacker's bounds (:func:`feasible_ranges`); nothing leaks under ``internal``.
    """
    if not rule.withholds:
        return np.zeros_like(withheld, dtype=bool)
    out: np.ndarray = withheld & ((hi - lo < 0.5) | (hi < rule.high + 0.5))
    return out


def protect_linked(
    values: np.ndarray | Sequence[int],
    identities: np.ndarray | Sequence[Sequence[float]],
    *,
    rule: SuppressionRule = NETWORK_RULE,
    fixed: np.ndarray | Sequence[bool] | None = None,
    withheld: np.ndarray | Sequence[bool] | None = None,
    published: np.ndarray | Sequence[bool] | None = None,
    cost: np.ndarray | Sequence[float] | None = None,
    check: np.ndarray | Sequence[bool] | None = None,
    complements: bool = True,
    method: Literal["milp", "greedy"] = "milp",
    time_limit: float = 20.0,
) -> np.ndarray:
    """Withhold counts tied by linear identities so that none withheld can be solved or narrowed into 1-10.

    Parameters
    ----------
    values : array_like of int, shape (n,)
        The counts of the published set.
    identities : array_like, shape (m, n)
        ``identities @ values = 0`` (see :func:`feasible_ranges`).
    rule : SuppressionRule
        The audience's rule; under ``internal`` nothing is withheld.
    fixed : array_like of bool, shape (n,), optional
        Counts whose status may not change (already published, or already withheld, by an earlier report of
        the same set: the pattern of a past quarter is kept when a new quarter is added).
    withheld : array_like of bool, shape (n,), optional
        The status of the fixed counts (and counts to withhold from the start).
    published : array_like of bool, shape (n,), optional
        Counts that an output prints (default all). The others (the parts of a merged category, say) are
        unknowns of the attacker's system: never published, never checked, never chosen as complements.
    cost : array_like of float, shape (n,), optional
        What withholding each count costs (default its value): complements are the cheapest free counts.
    check : array_like of bool, shape (n,), optional
        Withheld counts to check for leaks (default every published one); narrowing the check to the counts
        a new step can affect saves linear programs, at the caller's responsibility.
    complements : bool, default True
        Also check the withheld counts above the threshold (a complement pinned by the others); an
        incremental caller may leave this to its last step (greedy only; the integer program always does).
    method : {"milp", "greedy"}, default "milp"
        ``milp``: the complements of least total ``cost`` (an integer program, ``scipy.optimize.milp``,
        with capacity cuts generated by the attacker's linear programs, after Fischetti and
        Salazar-Gonzalez 2001); ``greedy``: the cheapest count of a leaking identity, one leak at a time.
        The greedy is also the fallback when the integer program reaches ``time_limit``.
    time_limit : float, default 20
        Seconds allowed to each integer program solve.

    Returns
    -------
    numpy.ndarray of bool
        True where a count is withheld: every count of 1..threshold (unless fixed as shown, which the caller
        must not do), and complements among the non-fixed shown counts such that no withheld count is
        pinned or has a feasible maximum of ``threshold`` or less (the integer program asks ``threshold +
        1`` of every small count, and of a count fixed as withheld a move of one upwards). Greedy: the
        cheapest free count of the identities a leaking count appears in (the smallest non-zero first),
        repeated until nothing leaks.

    Raises
    ------
    ValueError
        When a leak cannot be closed because every count it depends on is fixed.
    """
    v = np.asarray(values, dtype=np.int64)
    a = np.asarray(identities, dtype=float).reshape(-1, v.size)
    pub = np.ones(v.size, dtype=bool) if published is None else np.asarray(published, dtype=bool)
    fix = np.zeros(v.size, dtype=bool) if fixed is None else np.asarray(fixed, dtype=bool)
    fix = fix | ~pub
    mask = np.zeros(v.size, dtype=bool) if withheld is None else np.asarray(withheld, dtype=bool).copy()
    mask |= ~pub
    if not rule.withholds:
        kept: np.ndarray = mask & fix
        return kept
    mask |= _is_small(v, rule) & ~fix
    touches = np.abs(a) > 0
    price = v.astype(float) if cost is None else np.asarray(cost, dtype=float)
    watch = pub if check is None else np.asarray(check, dtype=bool) & pub
    if method == "milp":
        best = _protect_milp(
            v, a, rule=rule, fix=fix, start=mask, price=price, watch=watch, time_limit=time_limit
        )
        if best is not None:
            return best
    small = _is_small(v, rule) & watch
    # first the small counts (the ones that matter, and few), then every withheld count (a complement pinned
    # by the others could still open a way to a small one); a complement that equals counts already fixed
    # as published tells nothing new and is left as it is
    phase_all = False
    audit = _Audit(v, a, rule)
    for _ in range(2 * v.size + 2):
        targets = (small if not phase_all else (v > 0) & watch) & mask
        leaks = np.flatnonzero(audit.leaking(mask, targets))
        if leaks.size == 0:
            if phase_all or not complements:
                return mask
            phase_all = True
            continue
        picks: set[int] = set()
        for j in leaks:
            related = touches[touches[:, j]].any(axis=0)
            pool = np.flatnonzero(related & ~mask & ~fix)
            if pool.size == 0:
                continue
            nonzero = pool[v[pool] > 0]
            pick = nonzero if nonzero.size else pool
            picks.add(int(pick[np.argmin(price[pick])]))
        if picks:
            mask[list(picks)] = True
            phase_all = False
            continue
        if phase_all and not small[leaks].any():
            return mask  # only complements pinned by fixed counts: nothing small can follow from them
        # no identity of a leaking count has a free count left: widen to every free count of the set
        pool = np.flatnonzero(~mask & ~fix)
        if pool.size == 0:
            raise ValueError("a withheld count can be worked out from counts already published")
        mask[pool[np.argmin(price[pool])]] = True
        phase_all = False
    return mask


def _cell_ranges(
    values: np.ndarray, mask: np.ndarray, row_known: np.ndarray, col_known: np.ndarray, grand_known: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Feasible range of every cell of a table given its shown cells and known totals."""
    n_rows, n_cols = values.shape
    flat = values.ravel()
    ids = np.arange(flat.size).reshape(values.shape)
    eqs: list[np.ndarray] = []
    totals: list[int] = []
    # a line of one cell has no total beyond the cell itself, so it adds no constraint
    if n_cols > 1:
        for r in np.flatnonzero(row_known):
            eqs.append(np.isin(np.arange(flat.size), ids[r]).astype(float))
            totals.append(int(values[r].sum()))
    if n_rows > 1:
        for c in np.flatnonzero(col_known):
            eqs.append(np.isin(np.arange(flat.size), ids[:, c]).astype(float))
            totals.append(int(values[:, c].sum()))
    if grand_known:
        eqs.append(np.ones(flat.size))
        totals.append(int(values.sum()))
    if not eqs:
        lo = np.where(mask.ravel(), 0.0, flat.astype(float))
        hi = np.where(mask.ravel(), np.inf, flat.astype(float))
        return lo.reshape(values.shape), hi.reshape(values.shape)
    # each known total is one more (shown) variable: sum(line) - total = 0
    k = len(eqs)
    a = np.hstack([np.vstack(eqs), -np.eye(k)])
    vals = np.r_[flat, np.asarray(totals)]
    withheld = np.r_[mask.ravel(), np.zeros(k, dtype=bool)]
    lo, hi = feasible_ranges(vals, withheld, a)
    return lo[: flat.size].reshape(values.shape), hi[: flat.size].reshape(values.shape)


def _pinned_cells(
    values: np.ndarray,
    mask: np.ndarray,
    row_known: np.ndarray,
    col_known: np.ndarray,
    grand_known: bool,
    rule: SuppressionRule = NETWORK_RULE,
) -> np.ndarray:
    """Suppressed cells an attacker can pin to one value or narrow into ``0..threshold`` from what is shown.

    The attacker knows every shown cell, the row and column totals flagged as known, the grand total when
    known, and that counts are non-negative. For each suppressed cell the smallest and largest feasible value
    is found by linear programming; a cell leaks when the two coincide or the largest is at most the
    threshold (it is then known to be a small count, or zero).
    """
    if not mask.any():
        return np.zeros_like(mask)
    lo, hi = _cell_ranges(values, mask, row_known, col_known, grand_known)
    return leaked(lo, hi, mask, rule)


def suppress_table(
    counts: np.ndarray | Sequence[Sequence[int]] | Sequence[int],
    *,
    totals_known: bool = True,
    rule: SuppressionRule | None = NETWORK_RULE,
) -> SuppressedTable:
    """Suppress a table of counts so that no value from 1 to 10 (the rule's band) is shown or derivable.

    Parameters
    ----------
    counts : array_like of int, shape (rows, columns)
        Non-negative counts. A one-dimensional breakdown is a table with one column.
    totals_known : bool, default True
        Whether row, column and grand totals are public (shown here or elsewhere in the report). The safe
        default assumes they are.
    rule : SuppressionRule, default :data:`NETWORK_RULE`
        The audience's rule (:func:`rule_for`); the 1-10 below is its band. Under ``internal`` nothing is
        suppressed.

    Returns
    -------
    SuppressedTable
        The counts with primary and complementary suppression masks.

    Notes
    -----
    1. Primary: every cell with ``1 <= n <= 10`` is suppressed; a row or column total of 1-10 is
       suppressed too, and so are all cells of that line.
    2. Complementary (when totals are known): in every row and column the suppressed cells must number 0 or
       at least 2 and their sum must be 0 or above 10 (so that neither a single value nor a small sum can be
       read off the total); otherwise the smallest shown non-zero cell of that line is suppressed as well
       (zeros are taken only when no non-zero cell is left). Repeated until no line changes.
    3. Audit: a linear program bounds every suppressed cell given the shown cells and the totals; any cell
       that is pinned to a single value, or whose largest feasible value is 10 or less (narrowed into the
       band), triggers one more complementary suppression in its row and column,
       until none is pinned; when nothing is left to hide in those lines, the row and column totals (and if
       need be the grand total) are withheld instead, as flagged on the result.

    Validated against the CMS cell-size suppression policy (resdac.org, 2024): no shown cell, and no cell
    derivable from shown cells and totals, has a value of 1-10; :func:`audit_suppression` checks the result
    independently and the property tests run it on random tables.
    """
    values = np.asarray(counts, dtype=np.int64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"counts must be one- or two-dimensional, got shape {values.shape}")
    if (values < 0).any():
        raise ValueError("counts must be non-negative; found a negative count")
    rule = rule or NETWORK_RULE
    low, high = rule.low, rule.high

    def is_small(x: np.ndarray) -> np.ndarray:
        return _is_small(x, rule)

    primary = is_small(values)
    mask = primary.copy()
    row_tot = values.sum(axis=1)
    col_tot = values.sum(axis=0)
    mask[is_small(row_tot), :] |= values[is_small(row_tot), :] > 0
    mask[:, is_small(col_tot)] |= values[:, is_small(col_tot)] > 0
    grand = int(values.sum())

    def line_needs_more(line_vals: np.ndarray, line_mask: np.ndarray) -> bool:
        n_supp = int(line_mask.sum())
        s = int(line_vals[line_mask].sum())
        return (n_supp == 1 and line_vals.shape[0] > 1) or (low <= s <= high and n_supp < line_vals.shape[0])

    def suppress_next(line_vals: np.ndarray, line_mask: np.ndarray) -> int | None:
        candidates = np.flatnonzero(~line_mask)
        if candidates.size == 0:
            return None
        nonzero = candidates[line_vals[candidates] > 0]
        pool = nonzero if nonzero.size else candidates
        return int(pool[np.argmin(line_vals[pool])])

    row_known = ~is_small(row_tot) if totals_known else np.zeros(values.shape[0], dtype=bool)
    col_known = ~is_small(col_tot) if totals_known else np.zeros(values.shape[1], dtype=bool)
    grand_known = totals_known and not rule.is_small(grand)
    if totals_known and rule.withholds:
        for _ in range(values.size + 2):
            changed = False
            for r in range(values.shape[0]):
                if line_needs_more(values[r], mask[r]):
                    j = suppress_next(values[r], mask[r])
                    if j is not None:
                        mask[r, j] = changed = True
            for c in range(values.shape[1]):
                if line_needs_more(values[:, c], mask[:, c]):
                    i = suppress_next(values[:, c], mask[:, c])
                    if i is not None:
                        mask[i, c] = changed = True
            if changed:
                continue
            pinned = _pinned_cells(values, mask, row_known, col_known, grand_known, rule) & (values > 0)
            if not pinned.any():
                break
            grew = False
            for r, c in np.argwhere(pinned):
                for i, j in (
                    (suppress_next(values[:, c], mask[:, c]), c),
                    (r, suppress_next(values[r], mask[r])),
                ):
                    if i is not None and j is not None:
                        mask[i, j] = grew = True
            if not grew:
                # every cell around the pinned ones is hidden already: the totals give it away, so the
                # row and column totals are withheld as well (only the grand total may remain)
                row_known[:] = False
                col_known[:] = False
                if (
                    _pinned_cells(values, mask, row_known, col_known, grand_known, rule) & (values > 0)
                ).any():
                    grand_known = False
                break
    return SuppressedTable(
        values=values,
        mask=mask,
        row_total_mask=~row_known if totals_known else is_small(row_tot),
        col_total_mask=~col_known if totals_known else is_small(col_tot),
        grand_total_suppressed=not grand_known if totals_known else rule.is_small(grand),
        primary=primary,
        rule=rule,
    )


def audit_suppression(table: SuppressedTable, rule: SuppressionRule | None = None) -> list[str]:
    """Independently check a suppressed table; return a list of violations (empty when safe).

    Checks, under the table's rule, that no shown cell or shown total is 1-10 and that no suppressed non-zero
    cell can be pinned to its value, or narrowed into 0-10, from the shown cells and the totals
    (linear-programming bounds of every suppressed cell: the interval an attacker can tell). ``rule``
    (default: the table's own) sets the band.
    """
    problems: list[str] = []
    v, m = table.values, table.mask
    rule = rule or table.rule
    shown_small = _is_small(v, rule) & ~m
    for r, c in np.argwhere(shown_small):
        problems.append(f"cell ({r}, {c}) = {v[r, c]} is shown")
    row_tot, col_tot = v.sum(axis=1), v.sum(axis=0)
    for r in np.flatnonzero(_is_small(row_tot, rule) & ~table.row_total_mask):
        problems.append(f"row total {r} = {row_tot[r]} is shown")
    for c in np.flatnonzero(_is_small(col_tot, rule) & ~table.col_total_mask):
        problems.append(f"column total {c} = {col_tot[c]} is shown")
    if not m.any() or not rule.withholds:
        return problems
    lo, hi = _cell_ranges(
        v, m, ~table.row_total_mask, ~table.col_total_mask, not table.grand_total_suppressed
    )
    for r, c in np.argwhere(m & (v > 0) & (hi - lo < 0.5)):
        problems.append(f"suppressed cell ({r}, {c}) = {v[r, c]} is derivable from the totals")
    for r, c in np.argwhere(m & (v > 0) & (hi - lo >= 0.5) & (hi < rule.high + 0.5)):
        problems.append(
            f"suppressed cell ({r}, {c}) = {v[r, c]} is narrowed to "
            f"{lo[r, c]:.0f}..{hi[r, c]:.0f} by the totals"
        )
    return problems


def suppress_counts(
    frame: pl.DataFrame,
    count_cols: Sequence[str],
    *,
    totals_known: bool = True,
    within: Mapping[str, str] | None = None,
    rule: SuppressionRule = NETWORK_RULE,
) -> pl.DataFrame:
    """Return ``frame`` with its count columns as display strings, suppressed cells shown as ``*``.

    Parameters
    ----------
    frame : polars.DataFrame
        One row per category; ``count_cols`` hold non-negative integer counts (one column per group).
    count_cols : sequence of str
        The count columns, treated as one table (rows x columns) for complementary suppression.
    totals_known : bool, default True
        See :func:`suppress_table`.
    within : mapping of str to str, optional
        Nested counts: ``{part: whole}`` where ``part`` counts a subset of the same row's ``whole`` (events
        among the episodes at risk, responders among those with an end score, enrolled among the active).
        The part and its complement ``whole - part`` are a partition of a shown total, so the part is
        withheld when either is 1-10, or when the whole is withheld for being 1-10. Parts are processed in
        the mapping's order, after ``count_cols``; a whole may itself be an earlier part. Parts are not part
        of the ``count_cols`` table (their sums across rows are not totals).
    rule : SuppressionRule, default :data:`NETWORK_RULE`
        The audience's rule; its band replaces 1-10 above.

    Returns
    -------
    polars.DataFrame
        Same rows and columns; every count column is a string column (``*`` where suppressed, ``-`` where
        the input was null: a null is not a count and takes part in suppression as 0).
    """
    within = dict(within or {})
    missing = [c for c in [*count_cols, *within, *within.values()] if c not in frame.columns]
    if missing:
        raise ValueError(f"count columns not in the frame: {missing}")
    out = frame
    if count_cols:
        values = frame.select(pl.col(c).fill_null(0).cast(pl.Int64) for c in count_cols).to_numpy()
        nulls = frame.select(pl.col(c).is_null() for c in count_cols).to_numpy()
        result = suppress_table(values, totals_known=totals_known, rule=rule)
        shown = result.shown()
        shown[nulls] = "-"  # not a count (e.g. no threshold defined): shown as a dash, never as 0
        out = frame.with_columns(
            pl.Series(c, [str(x) for x in shown[:, j]], dtype=pl.String) for j, c in enumerate(count_cols)
        )
    for part, whole in within.items():
        p, w = pl.col(part).fill_null(0), pl.col(whole).fill_null(0)
        lo, hi = rule.low, rule.high
        withheld = p.is_between(lo, hi) | (w - p).is_between(lo, hi) | w.is_between(lo, hi)
        text = (
            pl.when(pl.col(part).is_null())
            .then(pl.lit("-"))
            .when(withheld)
            .then(pl.lit(SUPPRESSED))
            .otherwise(pl.col(part).cast(pl.Int64).cast(pl.String))
        )
        out = out.with_columns(frame.select(text.alias(part)).to_series())
    return out


def withhold_units(
    units: pl.DataFrame,
    *,
    rule: SuppressionRule = NETWORK_RULE,
    n_col: str = "n",
    keep: Sequence[str] = ("provider",),
    rank_col: str | None = None,
    rank_by: str | None = None,
) -> pl.DataFrame:
    """A per-unit table (clinics, therapists) as an audience sees it: nothing of a unit whose n is withheld.

    Parameters
    ----------
    units : polars.DataFrame
        One row per unit: its count ``n_col``, its labels ``keep`` and statistics (observed, expected, O - E,
        funnel limits, band, shrunken estimate and interval, rank, ...).
    rule : SuppressionRule, default :data:`NETWORK_RULE`
        The audience's rule.
    n_col : str
        The unit's count (episodes).
    keep : sequence of str
        Label columns, kept for every unit (the first one orders the withheld units).
    rank_col, rank_by : str, optional
        A rank column to recompute among the shown units only (descending ``rank_by``), so that no shown
        rank tells where a withheld unit stands.

    Returns
    -------
    polars.DataFrame
        The same columns, ``n_col`` as text (``*`` where withheld). A unit is withheld when its n is, by
        :func:`suppress_counts` over the units with their total known (1-10, and the complements that keep a
        small one from being the total minus the others). A withheld unit keeps only its labels: every
        interval, limit, band, estimate and rank is null, because the width of an interval (``2 z s /
        sqrt(n)``) or a shrinkage factor gives n back. Shown units come first in their input order, withheld
        units after them ordered by their label, so that the order tells nothing of their size. A shown unit
        with fewer than ``rule.min_group`` episodes (one, under ``internal``) keeps its n but no statistic.
    """
    if units.is_empty():
        return units.with_columns(pl.col(n_col).cast(pl.String))
    shown_n = suppress_counts(units.select(n_col), [n_col], rule=rule)[n_col]
    withheld = shown_n == SUPPRESSED
    no_stats = withheld | (units[n_col] < rule.min_group)
    stats = [c for c in units.columns if c not in (n_col, *keep)]
    out = units.with_columns(
        shown_n.alias(n_col),
        *(pl.when(pl.lit(no_stats)).then(None).otherwise(pl.col(c)).alias(c) for c in stats),
        pl.lit(withheld).alias("__withheld"),
        pl.int_range(pl.len()).alias("__order"),
    )
    shown = out.filter(~pl.col("__withheld"))
    hidden = out.filter(pl.col("__withheld")).sort(keep[0] if keep else "__order")
    if rank_col is not None and rank_by is not None:
        shown = shown.with_columns(
            pl.col(rank_by).rank("ordinal", descending=True).cast(units.schema[rank_col]).alias(rank_col)
        )
        shown = shown.sort(rank_col)
    return pl.concat([shown, hidden]).drop("__withheld", "__order")


def safe_count(n: int, rule: SuppressionRule = NETWORK_RULE) -> str:
    """A count as report text: ``*`` for 1-10 (the rule's band), else the number with thousands separators."""
    return SUPPRESSED if rule.is_small(n) else f"{n:,}"


def safe_percent(
    numerator: int,
    denominator: int,
    *,
    suppressed: bool = False,
    digits: int = 0,
    rule: SuppressionRule = NETWORK_RULE,
) -> str:
    """Format ``numerator / denominator`` as a percentage only when neither count is a small cell.

    A percentage is withheld (``*``) when the numerator was suppressed, when the numerator or the complement
    ``denominator - numerator`` is 1-10 (either would be derivable from the percentage and a shown total), or
    when the denominator is 1-10 (the band of ``rule``; under ``internal`` only ``suppressed`` withholds).
    """
    if denominator <= 0:
        return "-"
    rest = denominator - numerator
    if suppressed or any(rule.is_small(x) for x in (numerator, rest, denominator)):
        return SUPPRESSED
    return f"{100.0 * numerator / denominator:.{digits}f}%"


def safe_rate(
    numerator: int,
    denominator: int,
    *,
    per: float = 100.0,
    digits: int = 1,
    rule: SuppressionRule = NETWORK_RULE,
) -> str:
    """Format the rate ``per * numerator / denominator`` (e.g. flares per 100 sessions) when it is safe.

    Withheld (``*``) under the rule of :func:`safe_percent`: when the numerator, its complement or the
    denominator is 1-10, since the rate times a shown denominator gives the count back.
    """
    if denominator <= 0:
        return "-"
    if any(rule.is_small(x) for x in (numerator, denominator - numerator, denominator)):
        return SUPPRESSED
    return f"{per * numerator / denominator:.{digits}f}"
