"""Patient-flow counts suppressed across the published set, not report by report.

Every quarterly report prints the patient flow of its quarter and a five-quarter trend of it, for the network
and for each clinic. These counts are tied together by identities an attacker knows:

- within a flow: active = active at start + enrolled = ended + still active; ended = the sum of the end
  reasons;
- across quarters: still active at the end of a quarter = active at the start of the next one;
- across reports: the network's count = the sum of its clinics' counts (every stage, every quarter).

Suppressing each table on its own lets one report give away what another withholds: "still active at end" is
next quarter's active minus enrolled, all clinics minus the other clinics is a clinic. :func:`flow_pattern`
therefore decides, once for the whole published set (the network and every clinic, every quarter from the
first one with data), which flow counts are withheld, so that no withheld count can be solved or narrowed
into ``0..threshold`` from everything published together (linear programming over all identities,
:func:`~sciatica_outcomes.reports.privacy.protect_linked`). The pattern is built quarter by quarter, keeping
the decisions of earlier quarters: a new quarter's report withholds more of the new quarter rather than
un-publish (or newly withhold) what earlier reports printed, so all quarters' reports agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import polars as pl

from sciatica_outcomes.reports.privacy import (
    NETWORK_RULE,
    SUPPRESSED,
    SuppressionRule,
    protect_linked,
    suppress_table,
)
from sciatica_outcomes.schemas.vocabulary import END_REASONS

__all__ = [
    "FLOW_STAGES",
    "MINOR_END_REASONS",
    "NETWORK",
    "OTHER_ENDS",
    "FlowPattern",
    "flow_counts",
    "flow_pattern",
]

#: End reasons merged into "other ends" when one of them is a small count: every reason after the first two
#: of the vocabulary, completed and dropped out, which are always shown on their own (the dropout count is
#: what a reader needs most).
MINOR_END_REASONS: tuple[str, ...] = tuple(r for r in END_REASONS if r not in END_REASONS[:2])
#: The stage of the merged minor end reasons.
OTHER_ENDS = "ended: other ends (referred, surgery, injection, other)"
_REASON_STAGES = tuple(f"ended: {r.replace('_', ' ')}" for r in END_REASONS)
_MINOR_STAGES = tuple(f"ended: {r}" for r in MINOR_END_REASONS)
_START, _ENROLLED, _ACTIVE = "active at start of quarter", "enrolled in quarter", "active in quarter"
_STILL, _ENDED = "still active at end of quarter", "ended"
#: Every count of one flow: the stages of the flow table in order, then "ended" and "other ends".
FLOW_STAGES: tuple[str, ...] = (_START, _ENROLLED, _ACTIVE, *_REASON_STAGES, _STILL, _ENDED, OTHER_ENDS)
#: The unit label of the network (all clinics together).
NETWORK = ""


def _quarter_bounds(label: str) -> tuple[date, date]:
    year, number = int(label[:4]), int(label[-1])
    start = date(year, 3 * number - 2, 1)
    nxt = date(year + (number == 4), 3 * (number % 4) + 1, 1)
    return start, date.fromordinal(nxt.toordinal() - 1)


def flow_counts(episodes: pl.DataFrame, quarters: Sequence[str]) -> pl.DataFrame:
    """Every flow count of every clinic and quarter, as each quarter's report counts them (as of its end).

    Parameters
    ----------
    episodes : polars.DataFrame
        The episodes of every clinic (``clinic_id, start_date, end_date, end_reason``), unrestricted by date.
    quarters : sequence of str
        Quarter labels (``2026Q2``), oldest first.

    Returns
    -------
    polars.DataFrame
        ``clinic_id, quarter`` and one column per :data:`FLOW_STAGES` (``Int64``); one row per clinic and
        quarter, clinics sorted.
    """
    parts = []
    for label in quarters:  # a loop over quarters (a handful), not over patients
        start, end = _quarter_bounds(label)
        ep = episodes.filter(pl.col("start_date") <= end).with_columns(
            pl.when(pl.col("end_date") <= end).then(pl.col("end_date")).alias("end_date"),
            pl.when(pl.col("end_date") <= end).then(pl.col("end_reason").fill_null("other")).alias("reason"),
        )
        active = (pl.col("end_date").is_null() | (pl.col("end_date") >= start)).fill_null(False)
        enrolled = pl.col("start_date") >= start
        ended = pl.col("end_date").is_between(start, end).fill_null(False)
        aggs = [
            (active & ~enrolled).sum().alias(_START),
            enrolled.sum().alias(_ENROLLED),
            active.sum().alias(_ACTIVE),
            *(
                (ended & (pl.col("reason") == r)).sum().alias(s)
                for r, s in zip(END_REASONS, _REASON_STAGES, strict=True)
            ),
            (active & ~ended).sum().alias(_STILL),
            ended.sum().alias(_ENDED),
            (ended & pl.col("reason").is_in(list(MINOR_END_REASONS))).sum().alias(OTHER_ENDS),
        ]
        parts.append(ep.group_by("clinic_id").agg(aggs).with_columns(pl.lit(label).alias("quarter")))
    clinics = episodes.select(pl.col("clinic_id").unique().sort())
    grid = clinics.join(pl.DataFrame({"quarter": list(quarters)}), how="cross")
    out = grid.join(pl.concat(parts), on=["clinic_id", "quarter"], how="left")
    return out.select("clinic_id", "quarter", *(pl.col(s).fill_null(0).cast(pl.Int64) for s in FLOW_STAGES))


@dataclass(frozen=True)
class FlowPattern:
    """Which flow counts of the published set are withheld.

    Attributes
    ----------
    units : tuple of str
        :data:`NETWORK` first, then the clinics.
    quarters : tuple of str
        Oldest first.
    values : numpy.ndarray of int, shape (units, quarters, stages)
        The counts (:data:`FLOW_STAGES`).
    published : numpy.ndarray of bool
        Counts a report prints: the minor end reasons are not printed where they are merged into "other
        ends", and "other ends" is not printed where they are not.
    withheld : numpy.ndarray of bool
        Published counts printed as ``*`` (and every unpublished count, which the attacker does not see).
    rule : SuppressionRule
    """

    units: tuple[str, ...]
    quarters: tuple[str, ...]
    values: np.ndarray
    published: np.ndarray
    withheld: np.ndarray
    rule: SuppressionRule

    def shown(self, unit: str | None, quarter: str) -> dict[str, str]:
        """The flow of one unit and quarter as its report prints it: ``{stage: text}``, ``*`` where withheld.

        The stages are those of the flow table (the minor end reasons, or "other ends" where merged),
        followed by "ended". A quarter before the first one of the set (before any data) has no episodes:
        every count is 0.
        """
        u = self.units.index(unit or NETWORK)
        if _index(quarter) < _index(self.quarters[0]):
            return {s: "0" for s in FLOW_STAGES if s != OTHER_ENDS}
        k = self.quarters.index(quarter)
        out: dict[str, str] = {}
        for j, stage in enumerate(FLOW_STAGES):
            if stage == _ENDED or not self.published[u, k, j]:
                continue
            out[stage] = SUPPRESSED if self.withheld[u, k, j] else str(int(self.values[u, k, j]))
        if OTHER_ENDS in out:  # the merged cell takes the place of the minor reasons, before "still active"
            other = out.pop(OTHER_ENDS)
            still = out.pop(_STILL)
            out[OTHER_ENDS], out[_STILL] = other, still
        j = FLOW_STAGES.index(_ENDED)
        out[_ENDED] = SUPPRESSED if self.withheld[u, k, j] else str(int(self.values[u, k, j]))
        return out

    def identities(self) -> np.ndarray:
        """The identities among all counts (rows of ``A`` with ``A @ values.ravel() = 0``)."""
        return _identities(len(self.units), len(self.quarters))


def _identities(n_units: int, n_quarters: int) -> np.ndarray:
    n_stages = len(FLOW_STAGES)
    size = n_units * n_quarters * n_stages

    def idx(u: int, k: int, stage: str) -> int:
        return (u * n_quarters + k) * n_stages + FLOW_STAGES.index(stage)

    rows: list[dict[int, float]] = []
    for u in range(n_units):
        for k in range(n_quarters):
            rows.append({idx(u, k, _ACTIVE): 1, idx(u, k, _START): -1, idx(u, k, _ENROLLED): -1})
            rows.append({idx(u, k, _ACTIVE): 1, idx(u, k, _STILL): -1, idx(u, k, _ENDED): -1})
            rows.append({idx(u, k, _ENDED): 1, **{idx(u, k, s): -1 for s in _REASON_STAGES}})
            rows.append({idx(u, k, OTHER_ENDS): 1, **{idx(u, k, s): -1 for s in _MINOR_STAGES}})
            if k + 1 < n_quarters:
                rows.append({idx(u, k, _STILL): 1, idx(u, k + 1, _START): -1})
    if n_units > 1:
        for k in range(n_quarters):
            for stage in FLOW_STAGES:
                rows.append({idx(0, k, stage): 1, **{idx(u, k, stage): -1 for u in range(1, n_units)}})
    a = np.zeros((len(rows), size))
    for i, row in enumerate(rows):
        for j, c in row.items():
            a[i, j] = c
    return a


def _seed(values: np.ndarray, published: np.ndarray, rule: SuppressionRule) -> np.ndarray:
    """The table-by-table suppression of one flow (primary and complementary per partition), as a start."""
    mask = np.zeros(values.shape, dtype=bool)
    lines = [
        [_START, _ENROLLED],
        [
            *(s for j, s in enumerate(FLOW_STAGES) if s in _REASON_STAGES or s == OTHER_ENDS if published[j]),
            _STILL,
        ],
    ]
    for line in lines:
        cols = [FLOW_STAGES.index(s) for s in line]
        mask[cols] = suppress_table(values[cols], rule=rule).mask[:, 0]
    for s in (_ACTIVE, _ENDED):
        j = FLOW_STAGES.index(s)
        mask[j] = rule.is_small(int(values[j]))
    mask[FLOW_STAGES.index(_ENDED)] |= mask[FLOW_STAGES.index(_STILL)]
    out: np.ndarray = mask & published
    return out


def flow_pattern(
    episodes: pl.DataFrame,
    last_quarter: str,
    rule: SuppressionRule = NETWORK_RULE,
    first_quarter: str | None = None,
    method: Literal["milp", "greedy"] = "milp",
) -> FlowPattern:
    """Withhold flow counts across the network, every clinic and every quarter up to ``last_quarter``.

    Parameters
    ----------
    episodes : polars.DataFrame
        The episodes of every clinic, unrestricted by date (``clinic_id, start_date, end_date, end_reason``).
    last_quarter : str
        The report's quarter.
    rule : SuppressionRule
        The audience's rule; under ``internal`` nothing is withheld.
    first_quarter : str, optional
        The first quarter of the set (default: the quarter of the first start date, whatever the report's
        quarter, so that every quarter's report builds the same pattern).
    method : {"milp", "greedy"}, default "milp"
        How complements are chosen (:func:`~sciatica_outcomes.reports.privacy.protect_linked`): the
        cheapest set by an integer program (the greedy is its fallback), or the greedy from the
        table-by-table suppression of each flow.

    Returns
    -------
    FlowPattern

    Notes
    -----
    Quarter by quarter, oldest first: the minor end reasons are merged where one of them is small (for the
    network and each clinic on its own), the new quarter's small counts are withheld (with the greedy, the
    table-by-table suppression of each flow as a start), its "active at start" takes the status of last
    quarter's "still active" (the same number), and
    :func:`~sciatica_outcomes.reports.privacy.protect_linked` adds the complements of least cost among the
    new quarter's counts so that no withheld count of the set so far (this quarter's or an earlier one's)
    is pinned or has a feasible maximum of ``threshold`` or less given every identity and every published
    count; the earlier quarters' decisions are fixed. Cost: the count plus one, times 20 for the network,
    times 4 for the counts another cell repeats (active at start, still active, active, ended), times 3
    for the dropouts and times 10 more for active (a withheld active count withholds its report's case
    mix). Measured against the greedy (network rule, 2026Q2, every unit and quarter): 300 patients in 4
    clinics 206 -> 125 withheld of 300 published counts (the network's own 2026Q2 flow: completed 36 and
    dropped out 13 withheld -> nothing withheld), 700 patients 182 -> 100 of 294.
    """
    first = first_quarter or _first_quarter(episodes, last_quarter)
    quarters = _quarter_range(first, last_quarter)
    counts = flow_counts(episodes, quarters)
    clinics = counts["clinic_id"].unique().sort().to_list()
    per_clinic = counts.select(FLOW_STAGES).to_numpy().reshape(len(clinics), len(quarters), len(FLOW_STAGES))
    values = np.concatenate([per_clinic.sum(axis=0, keepdims=True), per_clinic], axis=0)
    units = (NETWORK, *clinics)
    minor = np.array([s in _MINOR_STAGES for s in FLOW_STAGES])
    other = np.array([s == OTHER_ENDS for s in FLOW_STAGES])
    small_minor = (values[:, :, minor] >= rule.low) & (values[:, :, minor] <= rule.high)
    merged = np.asarray(small_minor.any(axis=2)) & bool(rule.withholds)
    published = np.ones(values.shape, dtype=bool)
    published[:, :, minor] = ~merged[:, :, None]
    published[:, :, other] = merged[:, :, None]
    withheld = ~published
    if rule.withholds:
        a = _identities(len(units), len(quarters))
        shape = values.shape
        # a complement is cheapest in a clinic (the network's counts are what most readers need), and in a
        # count that no later quarter repeats (still active is next quarter's start); the dropouts are what
        # a reader needs most after that (the "the number of dropouts survives")
        cost = values.astype(float) + 1.0
        cost[0] *= 20.0
        for stage in (_START, _STILL, _ACTIVE, _ENDED):
            cost[:, :, FLOW_STAGES.index(stage)] *= 4.0
        cost[:, :, FLOW_STAGES.index(_REASON_STAGES[1])] *= 3.0
        # a withheld active count withholds the whole case mix of its report (quarterly.case_mix_display)
        cost[:, :, FLOW_STAGES.index(_ACTIVE)] *= 10.0
        for k in range(len(quarters)):
            for u in range(len(units)):
                withheld[u, k] |= _seed(values[u, k], published[u, k], rule) if method == "greedy" else False
            fixed = np.zeros(shape, dtype=bool)
            fixed[:, :k] = True
            if k:
                # active at the start is last quarter's still active: the same number, already decided
                start, still = FLOW_STAGES.index(_START), FLOW_STAGES.index(_STILL)
                withheld[:, k, start] = withheld[:, k - 1, still]
                fixed[:, k, start] = True
            upto = np.zeros(shape, dtype=bool)
            upto[:, : k + 1] = True
            # the set so far: quarters up to k (later quarters are not published yet)
            cols = upto.ravel()
            sub = a[:, cols]
            rows = np.abs(a[:, ~cols]).sum(axis=1) == 0
            # a new quarter reaches back only through last quarter's still active: check the two latest
            # quarters at each step and every quarter at the last one
            check = np.ones(shape, dtype=bool)
            mask = protect_linked(
                values.ravel()[cols],
                sub[rows],
                rule=rule,
                fixed=fixed.ravel()[cols],
                withheld=withheld.ravel()[cols],
                published=published.ravel()[cols],
                cost=cost.ravel()[cols],
                check=check.ravel()[cols],
                method=method,
            )
            flat = withheld.ravel().copy()
            flat[cols] = mask
            withheld = flat.reshape(shape)
    return FlowPattern(units, tuple(quarters), values, published, withheld & published | ~published, rule)


def _first_quarter(episodes: pl.DataFrame, last_quarter: str) -> str:
    first = episodes["start_date"].min()
    if not isinstance(first, date):
        return last_quarter
    return min(f"{first.year}Q{(first.month - 1) // 3 + 1}", last_quarter, key=_index)


def _index(label: str) -> int:
    return int(label[:4]) * 4 + int(label[-1]) - 1


def _shift(label: str, quarters: int) -> str:
    i = _index(label) + quarters
    return f"{i // 4}Q{i % 4 + 1}"


def _quarter_range(first: str, last: str) -> list[str]:
    return [_shift(first, i) for i in range(_index(last) - _index(first) + 1)]
