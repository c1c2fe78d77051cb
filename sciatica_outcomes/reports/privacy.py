"""Privacy by construction for every table, figure label and CSV the reports write.

One suppression function serves every count a report shows: cells with a value from 1 to 10 are suppressed
(primary suppression), and further cells are suppressed until no suppressed value can be recovered from the
row, column and grand totals (complementary suppression), following the CMS cell-size suppression policy
(``shared/domain.md`` §5). Percentages are derived only from shown counts. CSV exports neutralise cells that a
spreadsheet would run as a formula (:mod:`sciatica_outcomes.outputs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import polars as pl
from scipy.optimize import linprog

# one spreadsheet-safe CSV writer for every CSV the product writes (re-exported here for the reports)
from sciatica_outcomes.outputs import neutralise_cell, write_safe_csv

__all__ = [
    "AUDIENCES",
    "SUPPRESSED",
    "Audience",
    "SuppressedTable",
    "SuppressionRule",
    "audit_suppression",
    "neutralise_cell",
    "rule_for",
    "safe_count",
    "safe_percent",
    "safe_rate",
    "suppress_counts",
    "suppress_table",
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
    """

    values: np.ndarray
    mask: np.ndarray
    row_total_mask: np.ndarray
    col_total_mask: np.ndarray
    grand_total_suppressed: bool
    primary: np.ndarray

    def shown(self) -> np.ndarray:
        """Counts as an object array with :data:`SUPPRESSED` in suppressed cells."""
        out = self.values.astype(object)
        out[self.mask] = SUPPRESSED
        return out


def _is_small(x: np.ndarray, low: int = LOW, high: int = HIGH) -> np.ndarray:
    return (x >= low) & (x <= high)


def _pinned_cells(
    values: np.ndarray, mask: np.ndarray, row_known: np.ndarray, col_known: np.ndarray, grand_known: bool
) -> np.ndarray:
    """Suppressed cells whose value an attacker can pin down to a single number from what is shown.

    The attacker knows every shown cell, the row and column totals flagged as known, the grand total when
    known, and that counts are non-negative. For each suppressed cell the smallest and largest
    feasible value is found by linear programming; a cell is pinned when the two coincide.
    """
    idx = np.argwhere(mask)
    pinned = np.zeros_like(mask)
    if idx.shape[0] == 0:
        return pinned
    n_rows, n_cols = values.shape
    k = idx.shape[0]
    a_eq: list[np.ndarray] = []
    b_eq: list[float] = []
    # a line of one cell has no total beyond the cell itself, so it adds no constraint
    if n_cols > 1:
        for r in np.flatnonzero(row_known):
            sel = idx[:, 0] == r
            if sel.any():
                a_eq.append(sel.astype(float))
                b_eq.append(float(values[r][mask[r]].sum()))
    if n_rows > 1:
        for c in np.flatnonzero(col_known):
            sel = idx[:, 1] == c
            if sel.any():
                a_eq.append(sel.astype(float))
                b_eq.append(float(values[:, c][mask[:, c]].sum()))
    if grand_known:
        a_eq.append(np.ones(k))
        b_eq.append(float(values[mask].sum()))
    if not a_eq:
        return pinned
    a = np.vstack(a_eq)
    b = np.asarray(b_eq)
    for j in range(k):
        cost = np.zeros(k)
        cost[j] = 1.0
        lo = linprog(cost, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        hi = linprog(-cost, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
        if lo.status == 0 and hi.status == 0 and abs(-hi.fun - lo.fun) < 0.5:
            pinned[tuple(idx[j])] = True
    return pinned


def suppress_table(
    counts: np.ndarray | Sequence[Sequence[int]],
    *,
    totals_known: bool = True,
    rule: SuppressionRule | None = None,
) -> SuppressedTable:
    """Suppress a table of counts so that no value from 1 to 10 is shown or derivable.

    Parameters
    ----------
    counts : array_like of int, shape (rows, columns)
        Non-negative counts. A one-dimensional breakdown is a table with one column.
    totals_known : bool, default True
        Whether row, column and grand totals are public (shown here or elsewhere in the report). The safe
        default assumes they are.
    rule : SuppressionRule, optional
        The audience's rule (:func:`rule_for`): counts from ``rule.low`` to ``rule.high`` are withheld where
        the notes below say 1-10. Default: the network rule (1-10). A rule that withholds nothing
        (``internal``) returns the table with nothing suppressed.

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
       that is pinned to a single value triggers one more complementary suppression in its row and column,
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
    low, high = (LOW, HIGH) if rule is None else (rule.low, rule.high)

    def small(x: np.ndarray) -> np.ndarray:
        return _is_small(x, low, high)

    primary = small(values)
    mask = primary.copy()
    row_tot = values.sum(axis=1)
    col_tot = values.sum(axis=0)
    mask[small(row_tot), :] |= values[small(row_tot), :] > 0
    mask[:, small(col_tot)] |= values[:, small(col_tot)] > 0
    grand = int(values.sum())
    if high < low:  # the rule withholds nothing
        none = np.zeros(values.shape, dtype=bool)
        return SuppressedTable(
            values=values,
            mask=none,
            row_total_mask=np.zeros(values.shape[0], dtype=bool),
            col_total_mask=np.zeros(values.shape[1], dtype=bool),
            grand_total_suppressed=False,
            primary=none,
        )

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

    row_known = ~small(row_tot) if totals_known else np.zeros(values.shape[0], dtype=bool)
    col_known = ~small(col_tot) if totals_known else np.zeros(values.shape[1], dtype=bool)
    grand_known = totals_known and not (low <= grand <= high)
    if totals_known:
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
            pinned = _pinned_cells(values, mask, row_known, col_known, grand_known) & (values > 0)
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
                if _pinned_cells(values, mask, row_known, col_known, grand_known).any():
                    grand_known = False
                break
    return SuppressedTable(
        values=values,
        mask=mask,
        row_total_mask=~row_known if totals_known else small(row_tot),
        col_total_mask=~col_known if totals_known else small(col_tot),
        grand_total_suppressed=not grand_known if totals_known else bool(low <= grand <= high),
        primary=primary,
    )


def audit_suppression(table: SuppressedTable, rule: SuppressionRule | None = None) -> list[str]:
    """Independently check a suppressed table; return a list of violations (empty when safe).

    Checks that no shown cell or shown total is 1-10 (``rule.low`` to ``rule.high`` under ``rule``; default
    the network rule) and that no suppressed non-zero cell can be pinned to its value from the shown cells
    and the totals (linear-programming bounds).
    """
    low, high = (LOW, HIGH) if rule is None else (rule.low, rule.high)
    problems: list[str] = []
    v, m = table.values, table.mask
    shown_small = _is_small(v, low, high) & ~m
    for r, c in np.argwhere(shown_small):
        problems.append(f"cell ({r}, {c}) = {v[r, c]} is shown")
    row_tot, col_tot = v.sum(axis=1), v.sum(axis=0)
    for r in np.flatnonzero(_is_small(row_tot, low, high) & ~table.row_total_mask):
        problems.append(f"row total {r} = {row_tot[r]} is shown")
    for c in np.flatnonzero(_is_small(col_tot, low, high) & ~table.col_total_mask):
        problems.append(f"column total {c} = {col_tot[c]} is shown")
    pinned = _pinned_cells(
        v, m, ~table.row_total_mask, ~table.col_total_mask, not table.grand_total_suppressed
    ) & (v > 0)
    for r, c in np.argwhere(pinned):
        problems.append(f"suppressed cell ({r}, {c}) = {v[r, c]} is derivable from the totals")
    return problems


def suppress_counts(
    frame: pl.DataFrame,
    count_cols: Sequence[str],
    *,
    totals_known: bool = True,
    within: Mapping[str, str] | None = None,
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
        result = suppress_table(values, totals_known=totals_known)
        shown = result.shown()
        shown[nulls] = "-"  # not a count (e.g. no threshold defined): shown as a dash, never as 0
        out = frame.with_columns(
            pl.Series(c, [str(x) for x in shown[:, j]], dtype=pl.String) for j, c in enumerate(count_cols)
        )
    for part, whole in within.items():
        p, w = pl.col(part).fill_null(0), pl.col(whole).fill_null(0)
        withheld = p.is_between(LOW, HIGH) | (w - p).is_between(LOW, HIGH) | w.is_between(LOW, HIGH)
        text = (
            pl.when(pl.col(part).is_null())
            .then(pl.lit("-"))
            .when(withheld)
            .then(pl.lit(SUPPRESSED))
            .otherwise(pl.col(part).cast(pl.Int64).cast(pl.String))
        )
        out = out.with_columns(frame.select(text.alias(part)).to_series())
    return out


def safe_count(n: int) -> str:
    """A count as report text: ``*`` for 1-10, else the number with thousands separators (0 is shown)."""
    return SUPPRESSED if LOW <= n <= HIGH else f"{n:,}"


def safe_percent(numerator: int, denominator: int, *, suppressed: bool = False, digits: int = 0) -> str:
    """Format ``numerator / denominator`` as a percentage only when neither count is a small cell.

    A percentage is withheld (``*``) when the numerator was suppressed, when the numerator or the complement
    ``denominator - numerator`` is 1-10 (either would be derivable from the percentage and a shown total), or
    when the denominator is 1-10.
    """
    if denominator <= 0:
        return "-"
    rest = denominator - numerator
    if suppressed or any(LOW <= x <= HIGH for x in (numerator, rest, denominator)):
        return SUPPRESSED
    return f"{100.0 * numerator / denominator:.{digits}f}%"


def safe_rate(numerator: int, denominator: int, *, per: float = 100.0, digits: int = 1) -> str:
    """Format the rate ``per * numerator / denominator`` (e.g. flares per 100 sessions) when it is safe.

    Withheld (``*``) under the rule of :func:`safe_percent`: when the numerator, its complement or the
    denominator is 1-10, since the rate times a shown denominator gives the count back.
    """
    if denominator <= 0:
        return "-"
    if any(LOW <= x <= HIGH for x in (numerator, denominator - numerator, denominator)):
        return SUPPRESSED
    return f"{per * numerator / denominator:.{digits}f}"
