"""The quarterly report's Work section on a synthetic cohort: recovery, privacy, coverage, the front page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports import work as wk
from sciatica_outcomes.reports.frontpage import front_page, work_sentence
from sciatica_outcomes.reports.privacy import SUPPRESSED, feasible_ranges, leaked, rule_for
from sciatica_outcomes.store import Store

QUARTER = "2026Q2"


@pytest.fixture(scope="module")
def truth(report_store: dict[str, Path]) -> dict[str, object]:
    data: dict[str, object] = json.loads((report_store["cohort"] / "truth.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def network(report_store: dict[str, Path]) -> q.QuarterlyInputs:
    return q.load_inputs(report_store["db"], QUARTER, rule=rule_for("network"))


@pytest.fixture(scope="module")
def smallest_clinic(report_store: dict[str, Path]) -> str:
    with Store(report_store["db"], read_only=True) as store:
        ep = store.read("episodes")
    return str(ep.group_by("clinic_id").len().sort("len", "clinic_id")["clinic_id"][0])


def test_share_back_by_week_12_and_median_recover_the_truth(
    network: q.QuarterlyInputs, truth: dict[str, object]
) -> None:
    expected = truth["work"]["expected"]  # type: ignore[index]
    section = wk.work_section(network)
    rtw = section.rtw
    assert section.status == "recorded" and rtw.share is not None
    assert rtw.ci_low is not None and rtw.ci_high is not None
    # the log-log interval is asymmetric: its half-width on the side of the truth is the 1.96 SE there
    true_share = expected["share_back_by_week12_off_work_at_enrolment"]
    se = (rtw.ci_high - rtw.share if true_share > rtw.share else rtw.share - rtw.ci_low) / 1.959964
    assert abs(rtw.share - true_share) <= 2 * se, (rtw.share, true_share, se)
    # the median weeks to return lies within its Brookmeyer-Crowley interval
    true_median = expected["median_return_to_work_days"] / 7.0
    assert rtw.median_low is not None and rtw.median_high is not None
    assert rtw.median_low <= true_median <= rtw.median_high, (rtw.median_low, true_median, rtw.median_high)
    # the population is the status table's cell "off work because of back or leg pain" at enrolment
    cell = section.counts.filter(pl.col("code") == "off_work_back_leg")["start"].item()
    assert rtw.n == cell and rtw.n_shown == f"{cell:,}" and rtw.n > 10
    # and an independent count from the canonical work table: paid, off work at the baseline visit
    work, ep = network.tables["work"], network.tables["episodes"]
    active = ep.filter(q._episode_sets(ep, network.quarter)["active"])["episode_id"]
    base = network.derived().work_assessments.filter(
        pl.col("visit") == "w0", pl.col("episode_id").is_in(active.implode())
    )
    later = work.join(base.select("episode_id", pl.col("assessed_on").alias("b")), on="episode_id").filter(
        pl.col("assessed_on") > pl.col("b")
    )
    off = base.filter(
        pl.col("work_status") == "off_work_back_leg",
        pl.col("episode_id").is_in(later["episode_id"].unique().implode()),
    )
    assert off.height == rtw.n


def test_section_numbers_and_sentences_for_the_network(network: q.QuarterlyInputs) -> None:
    section = wk.work_section(network)
    shown = section.status_table
    assert shown["work status"].to_list()[-1] == "Total"
    assert shown["at enrolment"][-1] == section.n_shown == f"{section.n:,}"
    # no shown count is 1-10 and the shown shares are the counts over the population
    for col in ("at enrolment", "latest"):
        for text in shown[col].to_list():
            assert text == SUPPRESSED or not 1 <= int(text.replace(",", "")) <= 10
    # the latest status of every episode in the population is counted once in each column
    assert int(section.counts["start"].sum()) == int(section.counts["latest"].sum()) == section.n
    # the WAS change is the mean of the derive stage's per-episode changes, with a t interval
    pop = wk.work_population(network)
    was = pop["was_change"].drop_nulls().to_numpy()
    row = section.scores.row(0, named=True)
    assert row["episodes"] == f"{was.size:,}"
    assert row["mean_change"] == pytest.approx(was.mean(), rel=1e-12)
    ci = stats.ttest_1samp(was, 0.0).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    text = " ".join(section.sentences)
    assert "82% of employed patients" in text and "not directly comparable" in text
    assert f"by week {wk.RTW_WEEK:g}" in text


def test_smallest_clinic_under_network_withholds_counts_and_every_interval(
    report_store: dict[str, Path], smallest_clinic: str
) -> None:
    inputs = q.load_inputs(report_store["db"], QUARTER, smallest_clinic, rule=rule_for("network"))
    section = wk.work_section(inputs)
    assert section.status == "recorded"
    for col in ("at enrolment", "latest"):
        for text in section.status_table[col].to_list():
            assert text == SUPPRESSED or not 1 <= int(text.replace(",", "")) <= 10
    rtw = section.rtw
    if rtw.n_shown == SUPPRESSED:
        # a withheld population gets no share, no interval, no median and no curve (intervals tell n)
        assert (rtw.share, rtw.ci_low, rtw.ci_high, rtw.median, rtw.median_low) == (None,) * 5
        assert rtw.curve.height == 0 and "withheld" in rtw.withheld
    if section.n_shown == SUPPRESSED:
        assert section.scores["episodes"].to_list() == [SUPPRESSED] * section.scores.height
        assert (
            section.scores.select(pl.exclude("measure", "episodes")).null_count().row(0)
            == (section.scores.height,) * 5
        )
        assert section.was_sdc == (SUPPRESSED, SUPPRESSED)
    # the same clinic's own staff see their counts exactly
    own = wk.work_section(
        q.load_inputs(report_store["db"], QUARTER, smallest_clinic, rule=rule_for("internal"))
    )
    assert own.n_shown == f"{own.n:,}" and SUPPRESSED not in own.status_table["at enrolment"].to_list()


def test_linked_status_counts_leave_nothing_to_subtraction(network: q.QuarterlyInputs) -> None:
    """The attacker's linear program: the two columns, their printed total and the flow's active episodes."""
    rule = network.rule
    section = wk.work_section(network)
    k = section.counts.height
    active = dict(q.patient_flow(network).iter_rows())["active in quarter"]
    active_shown = q.published_flow(network)["active in quarter"]
    values = np.r_[
        section.counts["start"].to_numpy(),
        section.counts["latest"].to_numpy(),
        section.n,
        active - section.n,
        active,
    ]
    shown = np.array(
        [
            *section.status_table["at enrolment"].to_list()[:k],
            *section.status_table["latest"].to_list()[:k],
            section.n_shown,
            SUPPRESSED,  # the active episodes outside the population are never printed
            active_shown,
        ]
    )
    withheld = shown == SUPPRESSED
    assert withheld[: 2 * k].any(), "the cohort has a small work-status cell to protect"
    ident = np.zeros((3, values.size))
    ident[0, :k] = ident[1, k : 2 * k] = 1.0
    ident[:2, 2 * k] = -1.0
    ident[2, 2 * k :] = (1.0, 1.0, -1.0)
    lo, hi = feasible_ranges(values, withheld, ident)
    small = (values >= 1) & (values <= rule.high)
    # no count of 1-10 can be pinned or narrowed into 0-10 (the others outside the population are derivable
    # when there are more than 10 of them, as a count that may be shown)
    assert small[withheld].any() and not (leaked(lo, hi, withheld, rule) & small).any()
    # the return-to-work population is not spent as a complement while anything else can be
    rtw_row = section.counts["code"].to_list().index("off_work_back_leg")
    assert not withheld[rtw_row]


def test_minor_statuses_are_merged_before_anything_is_withheld() -> None:
    pop = pl.DataFrame(
        {
            "status_start": ["full_duties"] * 40 + ["modified_duties"] * 20 + ["off_work_back_leg"] * 30
            + ["off_work_other"] * 3,
            "status_latest": ["full_duties"] * 70 + ["modified_duties"] * 15 + ["off_work_back_leg"] * 8
            + ["not_applicable"] * 0,
        }
    )  # fmt: skip
    merged = wk.status_counts(pop, rule_for("network"))
    assert merged["code"].to_list() == ["full_duties", "modified_duties", "off_work_back_leg", "other"]
    assert merged.filter(pl.col("code") == "other")["start"].item() == 3
    assert merged["status"][-1] == wk.OTHER_WORK_STATUSES
    # the internal audience sees every status on its own
    exact = wk.status_counts(pop, rule_for("internal"))
    assert exact["code"].to_list() == [
        "full_duties",
        "modified_duties",
        "off_work_back_leg",
        "off_work_other",
        "not_applicable",
    ]


def test_earliest_quarter_renders_without_an_all_clear(report_store: dict[str, Path]) -> None:
    with Store(report_store["db"], read_only=True) as store:
        first = store.read("episodes")["start_date"].min()
    earliest = q.Quarter(first.year, (first.month - 1) // 3 + 1)  # type: ignore[union-attr]
    inputs = q.load_inputs(report_store["db"], earliest, rule=rule_for("network"))
    section = wk.work_section(inputs)
    assert section.status in ("recorded", "no_population")
    text = " ".join(section.sentences)
    assert section.n > 0 or "no episode" in text.lower()
    if section.status == "recorded":
        assert section.rtw.share is None or section.rtw.n_shown != SUPPRESSED


def test_a_store_without_work_says_not_recorded_everywhere(
    report_store: dict[str, Path], tmp_path: Path
) -> None:
    with Store(report_store["db"], read_only=True) as store:
        tables = store.tables()
    db = tmp_path / "no-work.duckdb"
    with Store(db) as store:
        for name, frame in tables.items():
            if name != "work":
                store.write(name, frame, source="copy")
    inputs = q.load_inputs(db, QUARTER, rule=rule_for("network"))
    cov = q.coverage(inputs)
    assert cov.filter(pl.col("table") == "work")["status"].item() == "not ingested"
    section = wk.work_section(inputs, cov=cov)
    assert section.status == "not_recorded" and section.rtw.share is None
    assert section.sentences == [
        "Work outcomes: not recorded (the work assessments, table work, were not ingested)."
    ]
    metrics = wk.work_metrics(inputs)
    assert metrics["share"] == "not recorded"
    sentence = work_sentence(metrics, None, None)
    assert "not recorded" in sentence and "%" not in sentence


def test_no_one_off_work_at_enrolment_is_said_in_words() -> None:
    pop = pl.DataFrame(
        {"status_start": ["full_duties"] * 20, "followed": [True] * 20, "time_weeks": [None] * 20,
         "event": [None] * 20},
        schema_overrides={"time_weeks": pl.Float64, "event": pl.Int64},
    )  # fmt: skip
    rtw = wk.return_to_work_summary(pop, "0", rule_for("network"))
    assert rtw.n == 0 and rtw.share is None and rtw.curve.height == 0
    assert (
        rtw.share_text()
        == rtw.median_text()
        == "no episode off work because of back or leg pain at enrolment"
    )


def test_front_page_sentence_compares_shares_only() -> None:
    cur = {"quarter": "2026Q2", "recorded": True, "n_shown": "41", "share": "76%"}
    prev = {"quarter": "2026Q1", "recorded": True, "n_shown": "*", "share": "withheld for privacy"}
    net = {"quarter": "2026Q2", "recorded": True, "n_shown": "120", "share": "70%"}
    text = work_sentence(cur, prev, net)  # type: ignore[arg-type]
    assert text.startswith(
        "Of 41 patients off work because of their back or leg pain at enrolment, 76% were back"
    )
    assert "(last quarter: withheld for privacy; network: 70%)" in text
    assert "120" not in text, "the network is compared as a share, never a count"
    assert "Quality Outcomes Database" in text
    withheld = {**cur, "n_shown": "*", "share": "withheld for privacy"}
    assert "is withheld for privacy" in work_sentence(withheld, None, None)  # type: ignore[arg-type]
    assert "no data" in work_sentence(withheld, None, None)  # type: ignore[arg-type]
    none = {**cur, "share": "none to compare"}
    assert "no episode active in the quarter was off work" in work_sentence(none, cur, None)  # type: ignore[arg-type]


def test_front_page_carries_the_work_sentence(network: q.QuarterlyInputs) -> None:
    cov = q.coverage(network)
    missing = [t for t, s in zip(cov["table"], cov["status"], strict=True) if s != "recorded"]
    page = front_page(network, missing)
    work = [s for s in page.sentences if "back at full or modified duties" in s]
    assert len(work) == 1 and "last quarter:" in work[0]
    section = wk.work_section(network)
    assert f"{100 * section.rtw.share:.0f}%" in work[0]  # type: ignore[operator]
    assert page.sentences.index(work[0]) == len(page.sentences) - 2  # just before the data coverage
