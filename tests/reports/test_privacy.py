"""Property and example tests of small-cell suppression and spreadsheet-safe CSV export."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sciatica_outcomes.reports import privacy
from sciatica_outcomes.reports.privacy import (
    SUPPRESSED,
    SuppressedTable,
    audit_suppression,
    feasible_ranges,
    leaked,
    neutralise_cell,
    protect_linked,
    rule_for,
    safe_count,
    safe_percent,
    safe_rate,
    suppress_counts,
    suppress_table,
    withhold_units,
    write_safe_csv,
)

# counts drawn to hit the 1-10 band often, with zeros and large values mixed in
cell = st.one_of(st.just(0), st.integers(1, 10), st.integers(11, 60), st.integers(61, 5000))
tables = st.tuples(st.integers(1, 5), st.integers(1, 4)).flatmap(
    lambda shape: arrays(np.int64, shape, elements=cell)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables)
def test_no_small_cell_is_shown_or_derivable(counts: np.ndarray) -> None:
    result = suppress_table(counts)
    assert audit_suppression(result) == []
    assert not (((counts >= 1) & (counts <= 10)) & ~result.mask).any()
    # primary cells are a subset of the mask; zeros and large cells are only masked as complements
    assert (result.mask | ~result.primary).all()


@settings(max_examples=100, deadline=None)
@given(tables)
def test_every_line_hides_more_than_one_value_or_a_large_sum(counts: np.ndarray) -> None:
    result = suppress_table(counts)
    for axis in (0, 1):
        vals = counts if axis == 1 else counts.T
        mask = result.mask if axis == 1 else result.mask.T
        for line_vals, line_mask in zip(vals, mask, strict=True):
            hidden = line_vals[line_mask]
            if line_mask.all():
                continue
            assert hidden.size != 1 or line_vals.size == 1
            assert hidden.sum() == 0 or hidden.sum() > 10


def test_one_small_cell_gets_a_complement() -> None:
    # a single 4 among large counts: the 4 and the smallest other cell of its row and column are hidden
    counts = np.array([[4, 50, 70], [30, 40, 90]])
    result = suppress_table(counts)
    assert result.primary[0, 0]
    assert result.mask[0, 0] and result.mask[0, 1] and result.mask[1, 0]
    assert audit_suppression(result) == []
    shown = result.shown()
    assert shown[0, 0] == SUPPRESSED and shown[1, 2] == 90


def test_nothing_suppressed_when_all_counts_are_large_or_zero() -> None:
    counts = np.array([[0, 25], [40, 13]])
    result = suppress_table(counts)
    assert not result.mask.any()


def test_a_naive_table_fails_the_audit() -> None:
    """The audit is not vacuous: primary suppression alone leaves the value derivable from the total."""
    counts = np.array([[3], [50], [70]])
    naive = suppress_table(counts, totals_known=False)
    assert naive.mask[:, 0].tolist() == [True, False, False]
    assert any("derivable" in p for p in audit_suppression(naive))
    assert audit_suppression(suppress_table(counts)) == []


def test_suppress_counts_on_a_frame() -> None:
    frame = pl.DataFrame({"status": ["completed", "dropped_out", "referred"], "n": [120, 31, 2]})
    out = suppress_counts(frame, ["n"])
    assert out["n"].to_list() == ["120", SUPPRESSED, SUPPRESSED]
    with pytest.raises(ValueError, match="not in the frame"):
        suppress_counts(frame, ["missing"])


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [(50, 100, "50%"), (5, 100, SUPPRESSED), (95, 100, SUPPRESSED), (3, 8, SUPPRESSED), (0, 40, "0%")],
)
def test_safe_percent(num: int, den: int, expected: str) -> None:
    assert safe_percent(num, den) == expected


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        suppress_table([[1, -2]])


@given(st.text(max_size=30))
def test_neutralised_cells_never_start_a_formula(text: str) -> None:
    out = neutralise_cell(text)
    assert isinstance(out, str)
    if out.startswith(("=", "+", "-", "@", "\t", "\r", "\n")):
        float(out)  # only a plain number (which a spreadsheet reads as itself) is left as written
        assert re.fullmatch(r"[+-][0-9.eE+-]+", out)
    assert out in (text, "'" + text)


def test_write_safe_csv_neutralises_strings_not_numbers(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"clinic": ['=HYPERLINK("x")', "+1+1", "CL01", "@SUM(A1)"], "change": [-3.5, 2.0, -1.0, 0.0]}
    )
    path = write_safe_csv(frame, tmp_path / "t.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert [r[0] for r in rows[1:]] == ['\'=HYPERLINK("x")', "'+1+1", "CL01", "'@SUM(A1)"]
    assert [float(r[1]) for r in rows[1:]] == [-3.5, 2.0, -1.0, 0.0]


def test_safe_count_withholds_one_to_ten_only() -> None:
    from sciatica_outcomes.reports.privacy import safe_count  # noqa: PLC0415

    assert [safe_count(n) for n in (0, 1, 10, 11, 12345)] == ["0", "*", "*", "11", "12,345"]


def test_band_shares_give_no_share_to_a_withheld_count() -> None:
    from sciatica_outcomes.reports.quarterly import band_shares  # noqa: PLC0415

    bands = pl.DataFrame({"band": ["acceptable", "high_risk", "safe"], "sessions": [300, 4, 120]})
    got = band_shares(bands)
    # 4 is withheld, and so is 120 (the smallest other count): otherwise 4 = total - 300 - 120
    assert got["band"].to_list() == ["acceptable", "high_risk (withheld)", "safe (withheld)"]
    assert got["share"][0] == pytest.approx(100 * 300 / 424) and got["share"].null_count() == 2
    clean = band_shares(bands.with_columns(pl.Series("sessions", [300, 40, 120])))
    assert clean["share"].to_list() == pytest.approx([100 * 300 / 460, 100 * 40 / 460, 100 * 120 / 460])
    assert band_shares(bands.head(0)).is_empty()


def test_safe_rate_follows_the_percent_rule() -> None:
    from sciatica_outcomes.reports.privacy import safe_rate  # noqa: PLC0415

    # 2 flares in 97 sessions: 2.1 per 100 times the printed 97 gives 2 back, so it is withheld
    assert safe_rate(2, 97) == "*"
    assert safe_rate(0, 97) == "0.0" and safe_rate(20, 1000) == "2.0"
    assert safe_rate(95, 100) == "*"  # the complement (5 sessions without) is a small count
    assert safe_rate(0, 5) == "*" and safe_rate(0, 0) == "-"


def test_nested_counts_are_suppressed_as_partitions_of_their_whole() -> None:
    frame = pl.DataFrame({"outcome": ["odi", "leg", "walk"], "n": [27, 40, 8], "n_events": [19, 20, 3]})
    shown = suppress_counts(frame, ["n"], within={"n_events": "n"})
    # 27 - 19 = 8 never improved: the events are withheld; 8 episodes withhold everything in their row
    assert shown["n_events"].to_list() == ["*", "20", "*"]
    assert shown["n"][2] == "*"
    chain = pl.DataFrame({"active": [45, 30], "ended": [20, 29], "completed": [12, 15]})
    got = suppress_counts(chain, ["active"], within={"ended": "active", "completed": "ended"})
    # 20 - 12 = 8 ended otherwise; 30 - 29 = 1 still active
    assert got.select("ended", "completed").rows() == [("20", "*"), ("*", "15")]


@given(
    st.lists(st.integers(0, 40), min_size=2, max_size=6),
    st.data(),
)
@settings(max_examples=300, deadline=None)
def test_no_nested_count_or_its_complement_of_one_to_ten_is_shown(
    wholes: list[int], data: st.DataObject
) -> None:
    parts = [data.draw(st.integers(0, w)) for w in wholes]
    frame = pl.DataFrame({"whole": wholes, "part": parts})
    shown = suppress_counts(frame, ["whole"], within={"part": "whole"})
    for w, p, sw, sp in zip(wholes, parts, shown["whole"], shown["part"], strict=True):
        if sp != "*":
            assert not (1 <= p <= 10) and not (1 <= w - p <= 10) and not (1 <= w <= 10)
        if sw != "*":
            assert not (1 <= w <= 10)


def test_safe_csv_neutralises_categorical_and_enum_text(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": ["=1+1", "x"]}).with_columns(
        pl.col("a").cast(pl.Categorical).alias("c"), pl.col("a").cast(pl.Enum(["=1+1", "x"])).alias("e")
    )
    with open(write_safe_csv(frame, tmp_path / "t.csv"), newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1] == ["'=1+1", "'=1+1", "'=1+1"]


def test_rule_for_audiences() -> None:

    internal = rule_for("internal")
    assert not internal.withholds and not internal.is_small(1) and not internal.is_small(10)
    network = rule_for("network")
    assert network.withholds and network.is_small(1) and network.is_small(10)
    assert not network.is_small(0) and not network.is_small(11)
    assert rule_for("public", threshold=5).is_small(5) and not rule_for("public", threshold=5).is_small(6)
    for bad in (("clinic", None), ("internal", 5), ("network", 0)):
        with pytest.raises(ValueError):
            rule_for(*bad)


thresholds = st.integers(1, 25)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables, thresholds)
def test_a_rules_threshold_bounds_what_is_withheld(counts: np.ndarray, threshold: int) -> None:
    rule = rule_for("public", threshold=threshold)
    result = suppress_table(counts, rule=rule)
    assert audit_suppression(result, rule=rule) == []
    assert not (((counts >= 1) & (counts <= threshold)) & ~result.mask).any()


def test_the_internal_rule_suppresses_nothing_and_a_higher_threshold_more() -> None:
    counts = np.array([[3, 40], [12, 60]])
    wide = np.array([[30, 40], [12, 60]])
    none = suppress_table(counts, rule=rule_for("internal"))
    assert not none.mask.any() and not none.grand_total_suppressed
    assert not none.row_total_mask.any() and not none.col_total_mask.any()
    # 12 is shown under the default 1-10 band and withheld under 1-15 (with complements)
    assert not suppress_table(wide).mask.any()
    assert suppress_table(wide, rule=rule_for("network", threshold=15)).mask[1, 0]
    # the audit with the wider band finds the default table unsafe
    assert audit_suppression(suppress_table(wide), rule=rule_for("network", threshold=15))


def test_the_internal_rule_shows_every_count_and_the_threshold_moves_the_band() -> None:
    counts = np.array([[3, 40], [12, 7]])
    internal = suppress_table(counts, rule=rule_for("internal"))
    assert not internal.mask.any() and audit_suppression(internal) == []
    five = suppress_table(counts, rule=rule_for("public", threshold=5))
    assert five.mask[0, 0] and not five.primary[1, 1]  # 7 is above a threshold of 5: not primary
    assert audit_suppression(five) == []
    default = suppress_table(counts)
    assert default.primary[1, 1] and default.mask[1, 1]
    frame = pl.DataFrame({"n": [4, 50]})
    assert suppress_counts(frame, ["n"], rule=rule_for("internal"))["n"].to_list() == ["4", "50"]
    assert suppress_counts(frame, ["n"])["n"].to_list() == ["*", "*"]
    assert safe_percent(4, 50, rule=rule_for("internal")) == "8%" and safe_percent(4, 50) == "*"
    assert safe_count(4, rule_for("internal")) == "4" and safe_count(4) == "*"
    assert safe_count(7, rule_for("network", threshold=5)) == "7"
    assert safe_rate(4, 50, rule=rule_for("internal")) == "8.0" and safe_rate(4, 50) == "*"


def test_the_audit_flags_a_cell_narrowed_into_the_band_not_only_a_pinned_one() -> None:
    # a column 4 | 5 | 90 with its total shown, 4 and 5 hidden: each lies in 0..9, so both are known small
    naive = SuppressedTable(
        values=np.array([[4], [5], [90]]),
        mask=np.array([[True], [True], [False]]),
        row_total_mask=np.array([True, True, True]),
        col_total_mask=np.array([False]),
        grand_total_suppressed=False,
        primary=np.array([[True], [True], [False]]),
    )
    problems = audit_suppression(naive)
    assert problems and all("narrowed to 0..9" in p for p in problems)
    fixed = suppress_table([[4], [5], [90]])
    assert fixed.mask[2, 0] and audit_suppression(fixed) == []


def test_feasible_ranges_and_protect_linked_on_a_chain() -> None:
    # a = b + c (a total and its parts), c = d (this quarter's end is the next quarter's start)
    values = np.array([30, 25, 5, 5])
    ids = np.array([[1, -1, -1, 0], [0, 0, 1, -1]])
    lo, hi = feasible_ranges(values, [False, False, True, False], ids)
    assert (lo[2], hi[2]) == (5, 5)  # pinned by either identity
    lo, hi = feasible_ranges(values, [False, True, True, True], ids)
    assert (lo[2], hi[2]) == (0, 30)
    mask = protect_linked(values, ids)
    assert mask[2] and mask[3]
    lo, hi = feasible_ranges(values, mask, ids)
    assert not leaked(lo, hi, mask).any()
    assert not protect_linked(values, ids, rule=rule_for("internal")).any()
    # what an earlier report published (a shown, b withheld) stays as it was
    grown = protect_linked(
        values, ids, fixed=[True, True, False, False], withheld=[False, True, False, False]
    )
    assert grown.tolist() == [False, True, True, True]
    # with a and b both published, c = a - b whatever else is withheld
    with pytest.raises(ValueError, match="already published"):
        protect_linked(values, ids, fixed=[True, True, False, False], withheld=[False, False, False, False])


def _table_system(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 2x2 table and its row, column and grand totals as counts tied by identities."""
    r, c = cells.shape
    values = np.r_[cells.ravel(), cells.sum(axis=1), cells.sum(axis=0), cells.sum()]
    ids = []
    for i in range(r):
        row = np.zeros(values.size)
        row[i * c : (i + 1) * c], row[r * c + i] = 1, -1
        ids.append(row)
    for j in range(c):
        col = np.zeros(values.size)
        col[j : r * c : c], col[r * c + r + j] = 1, -1
        ids.append(col)
    grand = np.zeros(values.size)
    grand[r * c : r * c + r], grand[-1] = 1, -1
    ids.append(grand)
    return values, np.asarray(ids)


@pytest.mark.parametrize("cells", [[[3, 40], [25, 60]], [[3, 4], [30, 50]], [[12, 2], [7, 90]]])
def test_the_integer_program_finds_the_cheapest_safe_pattern(cells: list[list[int]]) -> None:
    values, ids = _table_system(np.asarray(cells))
    cost = values + 1.0
    best = protect_linked(values, ids, cost=cost)
    lo, hi = feasible_ranges(values, best, ids)
    assert not (leaked(lo, hi, best) & (values > 0)).any()
    # every cheaper pattern that withholds the small counts, by brute force, leaks
    small = (values >= 1) & (values <= 10)
    free = np.flatnonzero(~small)
    cheaper = 0
    for bits in range(2**free.size):
        mask = small.copy()
        mask[free] = [(bits >> k) & 1 for k in range(free.size)]
        if cost[mask].sum() >= cost[best].sum():
            continue
        cheaper += 1
        lo, hi = feasible_ranges(values, mask, ids)
        assert (leaked(lo, hi, mask) & (values > 0)).any(), mask
    assert cheaper > 0
    greedy = protect_linked(values, ids, cost=cost, method="greedy")
    assert cost[greedy].sum() >= cost[best].sum()


def test_the_greedy_decides_when_the_integer_program_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    values, ids = _table_system(np.array([[3, 40], [25, 60]]))
    greedy = protect_linked(values, ids, method="greedy")
    monkeypatch.setattr(privacy, "_protect_milp", lambda *args, **kwargs: None)
    assert protect_linked(values, ids).tolist() == greedy.tolist()


def test_withhold_units_leaves_a_withheld_unit_nothing_but_its_code() -> None:
    units = pl.DataFrame(
        {
            "provider": ["B", "A", "D", "C"],
            "n": [40, 30, 12, 4],
            "limit95": [1.2, 1.4, 2.3, 3.9],  # 1.96 s / sqrt(n): its width gives n back
            "shrunken": [0.5, -1.0, 2.0, 0.1],
            "rank_shrunken": [2, 4, 1, 3],
        }
    )
    got = withhold_units(units, rank_col="rank_shrunken", rank_by="shrunken")
    # 4 is small and 12 its complement; shown units ranked among themselves, withheld ones by code
    assert got["provider"].to_list() == ["B", "A", "C", "D"]
    assert got["n"].to_list() == ["40", "30", "*", "*"]
    assert got["rank_shrunken"].to_list() == [1, 2, None, None]
    assert got.filter(pl.col("n") == "*").select("limit95", "shrunken").null_count().row(0) == (2, 2)
    internal = withhold_units(units, rule=rule_for("internal"))
    assert internal["n"].to_list() == ["40", "30", "12", "4"] and internal["limit95"].null_count() == 0
    one = withhold_units(units.with_columns(pl.Series("n", [40, 30, 12, 1])), rule=rule_for("internal"))
    assert one.row(3, named=True)["n"] == "1" and one.row(3, named=True)["shrunken"] is None
