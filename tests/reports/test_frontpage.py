"""The front page's sentences: numbers from known metrics, withheld numbers, and no unsupported all-clear."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.reports import frontpage as fp
from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports.privacy import NETWORK_RULE, safe_count

CFG = ClinicalConfig()


def metrics(**changes: object) -> fp.QuarterMetrics:
    base: dict[str, object] = {
        "quarter": "2026Q3",
        "rule": NETWORK_RULE,
        "active": 319,
        "enrolled": 147,
        "ended": 149,
        "completed": 103,
        "odi_end_n": 120,
        "odi_responders": 88,
        "odi_mean_change": -15.3,
        "patient_weeks": 1659,
        "weeks_met": 1178,
        "completed_sessions": 2802,
        "flares": 17,
        "open_unactioned": 0,
        "sessions_recorded": True,
        "outcomes_recorded": True,
        "red_flags_recorded": True,
    }
    merged = {**base, **changes}
    default_shown = {
        k: safe_count(int(merged[n]))  # type: ignore[call-overload]
        for k, n in (
            ("active", "active"),
            ("enrolled", "enrolled"),
            ("ended", "ended"),
            ("completed", "completed"),
            ("odi_end", "odi_end_n"),
        )
    }
    merged["shown"] = {**default_shown, **dict(changes.get("shown", {}))}  # type: ignore[call-overload]
    return merged  # type: ignore[return-value]


def sentences(
    current: fp.QuarterMetrics,
    previous: fp.QuarterMetrics | None = None,
    network: fp.QuarterMetrics | None = None,
    missing: list[str] | None = None,
) -> list[str]:
    return fp.summary_sentences(
        current,
        previous,
        network,
        config=CFG,
        scope="clinic CL03" if network is not None else "all clinics of the network",
        missing_tables=missing or [],
    )


def test_sentences_state_the_numbers_with_last_quarter_and_network() -> None:
    prev = metrics(quarter="2026Q2", active=328, odi_end_n=100, odi_responders=71, odi_mean_change=-14.0)
    net = metrics(
        odi_end_n=400, odi_responders=300, odi_mean_change=-16.25, weeks_met=1000, patient_weeks=2000
    )
    s = sentences(metrics(), prev, net)
    assert len(s) == 6
    assert s[0] == (
        "In 2026Q3, 319 episodes were active (clinic CL03): 147 newly enrolled, 149 ended, 103 completed the "
        "program (last quarter: 328 active)."
    )
    assert s[1].startswith(
        "Among the 120 episodes that ended in 2026Q3 with a baseline and a follow-up ODI, disability "
        "improved by 15.3 points on average on the 0-100 scale (last quarter: 14.0 points; network: 16.2 "
        "points); for reference, non-operative patients"
    )
    assert s[1].endswith(
        "(Lurie et al., J Bone Joint Surg Am 2008;90:1811; a different ODI version and population)."
    )
    # 88/120 = 73%, 71/100 = 71%, 300/400 = 75%
    assert s[2] == (
        "88 of them (73%) improved by at least the ODI MCID of 10 points (last quarter: 71%; network: 75%)."
    )
    # 1178/1659 = 71%; network 1000/2000 = 50%
    assert s[3] == (
        "71% of the 1,659 patient-weeks of active episodes met the prescribed 2-3 sessions a week "
        "(last quarter: 71%; network: 50%)."
    )
    # 17 / 2802 * 100 = 0.6
    assert s[4] == (
        "No red-flag alert awaits action; flares followed 0.6 of every 100 completed sessions "
        "(last quarter: 0.6 per 100 sessions; network: 0.6 per 100 sessions)."
    )
    # 120 / 149 = 81%
    assert s[5].startswith("Every kind of record has rows in the quarter; 81% of the episodes that ended")


def test_an_all_clinic_report_has_no_network_part_and_a_first_quarter_no_last_quarter() -> None:
    s = sentences(metrics(), None, None)
    assert all("network:" not in x for x in s)
    assert s[0].endswith("(no earlier quarter in the store).") and "all clinics of the network" in s[0]
    assert "(last quarter: no data)" in s[3]


def test_a_withheld_number_gives_a_sentence_that_says_so() -> None:
    # 5 responders of 120: the share (and the complement rule) is withheld; so is a mean of 7 episodes
    s = sentences(metrics(odi_responders=5), metrics(odi_end_n=7, odi_responders=3, odi_mean_change=-9.0))
    assert "is withheld for privacy" in s[2] and "5" not in re.sub(r"\(.*?\)", "", s[2])
    assert "last quarter: withheld for privacy" in s[1]
    s = sentences(metrics(odi_end_n=8, odi_responders=4, ended=9, completed=4, enrolled=6))
    assert "withheld for privacy (10 or fewer episodes)" in s[1]
    assert "newly enrolled: withheld for privacy" in s[0] and "completed the program: withheld" in s[0]
    # none of the planted counts of 1-10 (8 with an end ODI, 4 responders, 9 ended, 6 enrolled) is printed
    text = " ".join(s)
    for fixed in ("10 or fewer", "2-3 sessions", "0-100 scale", "MCID of 10"):
        text = text.replace(fixed, "")
    assert not {"8", "4", "9", "6"} & set(re.findall(r"\d[\d,.]*\d|\d", text)), text


def test_no_all_clear_without_the_data() -> None:
    missing = metrics(
        red_flags_recorded=False, sessions_recorded=False, outcomes_recorded=False, patient_weeks=0
    )
    s = sentences(missing, missing=["sessions", "symptom_checks", "measures"])
    assert "No red-flag alert awaits action" not in " ".join(s)
    assert s[4].startswith("Red-flag screens are not recorded, so this report cannot say whether")
    assert "flares: not recorded" in s[4]
    assert s[1].startswith("Improvement in disability (ODI): not recorded")
    assert "not recorded" in s[3]
    assert s[5].startswith(
        "Not recorded in the quarter: session logs, red-flag screens, outcome measures (the sections"
    )
    s = sentences(metrics(open_unactioned=4))
    assert s[4].startswith("Between 1 and 10 red-flag alert(s) have no action recorded")
    s = sentences(metrics(open_unactioned=14))
    assert s[4].startswith("14 red-flag alert(s) have no action recorded")


def test_month_label_and_dates_never_give_a_day_of_the_data(report_store: dict[str, Path]) -> None:
    inputs = q.load_inputs(report_store["db"], "2026Q2")
    text = fp.data_dates(inputs, date(2026, 12, 2))
    assert text.startswith("Data as they stood at the end of June 2026 (quarter 2026Q2, April to June 2026)")
    assert text.endswith("Report generated on 2 December 2026.")
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text)
    assert fp.month_label(date(2026, 9, 30)) == "September 2026"


def test_front_page_numbers_are_the_report_sections_numbers(report_store: dict[str, Path]) -> None:
    inputs = q.load_inputs(report_store["db"], "2026Q2")
    page = fp.front_page(inputs, [], generated=date(2026, 12, 2))
    odi = q.end_of_episode_outcomes(inputs).filter(pl.col("outcome") == "odi").row(0, named=True)
    flow = dict(q.patient_flow(inputs).iter_rows())
    cur = page.current
    assert cur["odi_end_n"] == odi["n_with_end"] and cur["odi_responders"] == odi["responders_mcid"]
    assert cur["active"] == flow["active in quarter"] and cur["completed"] == flow["ended: completed"]
    assert page.previous is not None and page.previous["quarter"] == "2026Q1"
    assert page.previous == fp.quarter_metrics(inputs, q.Quarter.parse("2026Q1"))
    assert f"{-odi['mean_change']:.1f} points on average" in page.sentences[1]
    assert f"In 2026Q2, {flow['active in quarter']:,} episodes were active" in page.sentences[0]
    # a one-clinic report compares with the network (all clinics, same quarter)
    one = q.load_inputs(report_store["db"], "2026Q2", clinic="CL02")
    page1 = fp.front_page(one, [], network=inputs, generated=date(2026, 12, 2))
    assert page1.network == cur
    assert "network:" in page1.sentences[3] and "clinic CL02" in page1.sentences[0]


@pytest.mark.parametrize("share", [0, 120])
def test_edge_shares_are_shown_when_safe(share: int) -> None:
    s = sentences(metrics(odi_responders=share))
    assert f"{share} of them ({round(100 * share / 120)}%)" in s[2]


def test_a_count_the_flow_table_withholds_is_withheld_in_the_sentence_too() -> None:
    # 19 ended, 14 completed: the other end reasons sum to 5, so the flow table withholds "completed"
    # (complementary suppression) although 14 is no small count; the sentence must not give it away
    cur = metrics(ended=19, completed=14, odi_end_n=17, odi_responders=12, shown={"completed": "*"})
    s = sentences(cur)
    assert not re.search(r"\b14\b", s[0]) and "completed the program: withheld for privacy" in s[0]
    # an end-score count withheld by its table: the share of ended episodes with it is withheld too
    cur = metrics(ended=40, odi_end_n=25, shown={"odi_end": "*"})
    s = sentences(cur)
    assert not re.search(r"\b25\b", " ".join(s))
    assert s[1].startswith("Among the episodes (their number withheld for privacy) that ended")
    assert "the share of ended episodes with a follow-up ODI is withheld for privacy" in s[5]
    assert "is withheld for privacy" in s[2]


def test_sentences_print_what_the_report_tables_show(report_store: dict[str, Path]) -> None:
    from sciatica_outcomes.reports.privacy import suppress_counts  # noqa: PLC0415

    for clinic in ("CL01", "CL02", "CL03", "CL04"):
        inputs = q.load_inputs(report_store["db"], "2026Q2", clinic=clinic)
        cur = fp.quarter_metrics(inputs)
        # the flow as the report prints it: suppressed across the published set
        flow = q.published_flow(inputs)
        assert cur["shown"]["completed"] == flow["ended: completed"]
        assert cur["shown"]["ended"] == flow["ended"]
        ends = q.end_of_episode_outcomes(inputs)
        table = dict(zip(ends["outcome"], suppress_counts(ends, ["n_with_end"])["n_with_end"], strict=True))
        assert cur["shown"]["odi_end"] == table["odi"]
        s = fp.summary_sentences(cur, None, None, config=CFG, scope=f"clinic {clinic}", missing_tables=[])
        if flow["active in quarter"] == "*":
            assert "episodes active (clinic" in s[0] and "is withheld for privacy" in s[0]
        elif flow["ended: completed"] == "*":
            assert "completed the program: withheld for privacy" in s[0]
        else:
            assert f"{flow['ended: completed']} completed the program" in s[0]
