"""The quarterly report's front page: its dates and a summary in words, for the clinical lead.

The summary is generated from the same numbers as the sections of the report, a sentence each for the
episodes seen, improvement, responders, adherence, safety, return to work (from the Work section,
:mod:`sciatica_outcomes.reports.work`) and data coverage, each compared with the previous
quarter and (in a one-clinic report) with the whole network, and with a published reference where the domain
brief gives one (:data:`PUBLISHED_REFERENCES`). Every number in a sentence goes through
:func:`~sciatica_outcomes.reports.privacy.safe_count`, :func:`~sciatica_outcomes.reports.privacy.safe_percent`
or :func:`~sciatica_outcomes.reports.privacy.safe_rate`; a withheld number gives a sentence that says it is
withheld. A sentence never states an all-clear the data cannot support: a table without rows gives "not
recorded".

The network's numbers are shown as shares, means and rates only, never as counts: a clinic's count beside
the network's would give away the count of the other clinics together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypedDict, cast

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.reports.privacy import (
    SUPPRESSED,
    SuppressionRule,
    safe_count,
    safe_percent,
    safe_rate,
    suppress_counts,
)
from sciatica_outcomes.reports.quarterly import (
    Quarter,
    QuarterlyInputs,
    adherence_summary,
    end_of_episode_outcomes,
    patient_flow,
    published_flow,
    safety_summary,
)
from sciatica_outcomes.reports.work import QOD_REFERENCE, RTW_WEEK, WorkMetrics, work_metrics
from sciatica_outcomes.schemas.catalogs import label_for

__all__ = [
    "PUBLISHED_REFERENCES",
    "FrontPage",
    "QuarterMetrics",
    "Reference",
    "data_dates",
    "front_page",
    "month_label",
    "quarter_metrics",
    "summary_sentences",
    "work_sentence",
]


class QuarterMetrics(TypedDict):
    """The raw numbers behind the front page for one quarter (counts unsuppressed: never print them as is).

    ``odi_end_n`` counts the episodes ended in the quarter with a baseline and a follow-up ODI,
    ``odi_responders`` those of them whose improvement reached the absolute MCID and ``odi_mean_change`` their
    mean change (negative = better). ``*_recorded`` say whether the table behind a number has rows (sessions:
    in the quarter; outcomes and red-flag screens: up to its end): without them the number is "not recorded",
    not zero. ``shown`` holds the counts ``active, enrolled, ended, completed, odi_end`` as the report's
    tables show them (the patient flow's :func:`~sciatica_outcomes.reports.quarterly.flow_display` and the
    end-of-episode table's suppression of ``n_with_end``): a sentence prints those strings, so that it never
    tells a count that a table withholds by complementary suppression.
    """

    quarter: str
    rule: SuppressionRule
    active: int
    enrolled: int
    ended: int
    completed: int
    odi_end_n: int
    odi_responders: int
    odi_mean_change: float | None
    patient_weeks: int
    weeks_met: int
    completed_sessions: int
    flares: int
    open_unactioned: int
    sessions_recorded: bool
    outcomes_recorded: bool
    red_flags_recorded: bool
    shown: dict[str, str]


@dataclass(frozen=True)
class Reference:
    """A published figure the front page compares with, with its source (``shared/domain.md``)."""

    text: str
    source: str
    caveat: str = ""


#: Published references the summary cites (``shared/domain.md`` §7). Only the mean ODI improvement has one
#: that is close enough to compare with: the domain brief gives no published share of patients reaching the
#: ODI MCID, adherence to a 2-3 sessions a week prescription, or flare rate for such programs, so those
#: sentences compare with last quarter and the network only. The return-to-work sentence cites the US
#: Quality Outcomes Database (:data:`sciatica_outcomes.reports.work.QOD_REFERENCE`, domain.md §8).
PUBLISHED_REFERENCES: dict[str, Reference] = {
    "odi_improvement": Reference(
        text="non-operative patients with disc-related sciatica in SPORT improved by 18 to 23 points at 3 "
        "months",
        source="Lurie et al., J Bone Joint Surg Am 2008;90:1811",
        caveat="a different ODI version and population",
    ),
}


def _sessions_in(inputs: QuarterlyInputs, qt: Quarter) -> bool:
    sessions = inputs.history["sessions"]
    return sessions.filter(pl.col("session_date").is_between(qt.start, qt.end)).height > 0


def _rows_up_to(inputs: QuarterlyInputs, table: str, column: str, day: date) -> bool:
    return inputs.history[table].filter(pl.col(column) <= day).height > 0


def quarter_metrics(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> QuarterMetrics:
    """The front page's numbers for the report's quarter or an earlier one (same definitions as the report).

    Parameters
    ----------
    inputs : QuarterlyInputs
        The report's inputs (:func:`~sciatica_outcomes.reports.quarterly.load_inputs`).
    quarter : Quarter, optional
        An earlier quarter (its data as they stood at its end); default: the report's quarter.

    Returns
    -------
    QuarterMetrics
        Raw counts, a mean and flags (suppress before showing: :func:`summary_sentences` does).
    """
    qt = quarter or inputs.quarter
    flow_frame = patient_flow(inputs, quarter)
    flow = dict(flow_frame.iter_rows())
    # as the report's flow table prints them: suppressed across the published set, under the audience's rule
    flow_shown = published_flow(inputs, quarter)
    adherence = adherence_summary(inputs, quarter)
    safety = safety_summary(inputs, quarter)
    ends = end_of_episode_outcomes(inputs, quarter)
    # the end-of-episode table suppresses n_with_end as one column over the outcomes (as the report does)
    end_shown = dict(
        zip(
            ends["outcome"],
            suppress_counts(ends, ["n_with_end"], rule=inputs.rule)["n_with_end"],
            strict=True,
        )
    )
    odi = ends.filter(pl.col("outcome") == "odi").row(0, named=True)
    recorded = _rows_up_to(inputs, "measures", "assessed_on", qt.end) or _rows_up_to(
        inputs, "questionnaire_items", "assessed_on", qt.end
    )
    mean_change = odi["mean_change"]
    return {
        "quarter": qt.label,
        "rule": inputs.rule,
        "active": int(flow["active in quarter"]),
        "enrolled": int(flow["enrolled in quarter"]),
        "ended": int(sum(v for k, v in flow.items() if k.startswith("ended: "))),
        "completed": int(flow["ended: completed"]),
        "odi_end_n": int(odi["n_with_end"] or 0),
        "odi_responders": int(odi["responders_mcid"] or 0),
        "odi_mean_change": float(mean_change) if isinstance(mean_change, int | float) else None,
        "patient_weeks": int(adherence["patient_weeks"]),
        "weeks_met": int(adherence["weeks_met"]),
        "completed_sessions": int(safety["completed_sessions"]),
        "flares": int(safety["flares"]),
        "open_unactioned": int(safety["open_unactioned"].height),
        "sessions_recorded": _sessions_in(inputs, qt),
        "outcomes_recorded": recorded,
        "red_flags_recorded": _rows_up_to(inputs, "symptom_checks", "checked_on", qt.end),
        "shown": {
            "active": flow_shown["active in quarter"],
            "enrolled": flow_shown["enrolled in quarter"],
            "ended": flow_shown["ended"],
            "completed": flow_shown["ended: completed"],
            "odi_end": end_shown["odi"],
        },
    }


WITHHELD = "withheld for privacy"
#: What a comparison says when there is nothing to compare with (no earlier quarter in the store).
NO_DATA = "no data"


def _share(
    m: QuarterMetrics | None, part: str, whole: str, needs: str, *, withheld_with: tuple[str, ...] = ()
) -> str:
    """A share as the comparison shows it: a percentage, "withheld for privacy" or "not recorded".

    ``withheld_with`` names counts of ``m["shown"]`` that the report withholds: if any of them is withheld the
    share is too (with the other count shown, the share would give it back).
    """
    if m is None:
        return NO_DATA
    values: Mapping[str, object] = m
    if not values[needs]:
        return "not recorded"
    if any(m["shown"][k] == SUPPRESSED for k in withheld_with):
        return WITHHELD
    value = safe_percent(cast(int, values[part]), cast(int, values[whole]), rule=m["rule"])
    if value == SUPPRESSED:
        return WITHHELD
    return "none to compare" if value == "-" else value


def _mean_improvement(m: QuarterMetrics | None) -> str:
    """Mean ODI improvement in points, withheld when it is the mean of 1-10 episodes."""
    if m is None:
        return NO_DATA
    if not m["outcomes_recorded"]:
        return "not recorded"
    if m["odi_mean_change"] is None or m["odi_end_n"] == 0:
        return "none to compare"
    if safe_count(m["odi_end_n"], m["rule"]) == SUPPRESSED:
        return WITHHELD
    return f"{-m['odi_mean_change']:.1f} points"


def _flare_rate(m: QuarterMetrics | None) -> str:
    if m is None:
        return NO_DATA
    if not m["sessions_recorded"]:
        return "not recorded"
    value = safe_rate(m["flares"], m["completed_sessions"], rule=m["rule"])
    if value == SUPPRESSED:
        return WITHHELD
    return "none to compare" if value == "-" else f"{value} per 100 sessions"


def _compare(previous: str, network: str | None) -> str:
    """``(last quarter: 71%; network: 70%)``; the network part only in a one-clinic report."""
    parts = [f"last quarter: {previous}"]
    if network is not None:
        parts.append(f"network: {network}")
    return f"({'; '.join(parts)})"


def work_sentence(current: WorkMetrics, previous: WorkMetrics | None, network: WorkMetrics | None) -> str:
    """The sentence about return to work, compared with last quarter and the network (shares only).

    Parameters
    ----------
    current, previous : WorkMetrics
        This quarter's and the previous quarter's (:func:`~sciatica_outcomes.reports.work.work_metrics`;
        ``previous`` None when the store has nothing before this quarter).
    network : WorkMetrics or None
        The whole network's in a one-clinic report.

    Returns
    -------
    str
        "Of N patients off work because of their back or leg pain at enrolment, X% were back at full or
        modified duties by week 12 (last quarter: Y%; network: Z%); for reference, ..." with the numbers as
        the Work section prints them; "not recorded" without work assessments; "withheld for privacy" where
        the section withholds the share.
    """
    cmp = _compare(
        NO_DATA if previous is None else previous["share"], None if network is None else network["share"]
    )
    what = f"back at full or modified duties by week {RTW_WEEK:g}"
    if not current["recorded"]:
        return "Return to work: not recorded (no work assessments up to the end of the quarter)."
    if current["share"] == "none to compare":
        return (
            "Return to work: no episode active in the quarter was off work because of back or leg pain at "
            f"enrolment and assessed again {cmp}."
        )
    if current["share"] == WITHHELD:
        return (
            "The share of patients off work because of their back or leg pain at enrolment who were "
            f"{what} is {WITHHELD} {cmp}."
        )
    return (
        f"Of {current['n_shown']} patients off work because of their back or leg pain at enrolment, "
        f"{current['share']} were {what} (Kaplan-Meier) {cmp}; for reference, {QOD_REFERENCE}."
    )


def summary_sentences(
    current: QuarterMetrics,
    previous: QuarterMetrics | None,
    network: QuarterMetrics | None,
    *,
    config: ClinicalConfig,
    scope: str,
    missing_tables: list[str],
    work: tuple[WorkMetrics, WorkMetrics | None, WorkMetrics | None] | None = None,
) -> list[str]:
    """The front page's sentences, from the numbers of this quarter, the last one and the network.

    Parameters
    ----------
    current, previous : QuarterMetrics
        This quarter's and the previous quarter's numbers (:func:`quarter_metrics`; ``previous`` None when
        the store has nothing before this quarter).
    network : QuarterMetrics or None
        The whole network's numbers for this quarter in a one-clinic report; ``None`` in a report on all
        clinics (it is the network) or when no network comparison is made.
    config : ClinicalConfig
        Thresholds (the ODI MCID, the prescription).
    scope : str
        Who the report covers, e.g. "all clinics" or "clinic CL03".
    missing_tables : list of str
        Canonical tables without rows in the quarter (:func:`~sciatica_outcomes.reports.quarterly.coverage`
        status other than "recorded").
    work : tuple of WorkMetrics, optional
        This quarter's, the previous quarter's and the network's return to work
        (:func:`~sciatica_outcomes.reports.work.work_metrics`); given, its sentence
        (:func:`~sciatica_outcomes.reports.work.work_sentence`) comes before the data coverage.

    Returns
    -------
    list of str
        Episodes, improvement, responders, adherence, safety, [return to work,] data coverage, in that
        order. A count of 1-10, or a share, mean or rate computed from one, is never printed: its sentence
        says it is withheld.
    """
    qt = current["quarter"]
    sentences: list[str] = []
    # 1. who was seen
    # counts as the patient-flow table shows them (complementary suppression included)
    shown = current["shown"]
    active, enrolled, ended, completed = (shown[k] for k in ("active", "enrolled", "ended", "completed"))
    if previous is None:
        prev = "no earlier quarter in the store"
    else:
        prev_active = previous["shown"]["active"]
        prev = f"last quarter: {WITHHELD if prev_active == SUPPRESSED else prev_active} active"
    if active == SUPPRESSED:
        sentences.append(f"In {qt}, the number of episodes active ({scope}) is {WITHHELD}.")
    else:
        counts = ", ".join(
            f"{v} {what}" if v != SUPPRESSED else f"{what}: {WITHHELD}"
            for v, what in (
                (enrolled, "newly enrolled"),
                (ended, "ended"),
                (completed, "completed the program"),
            )
        )
        sentences.append(f"In {qt}, {active} episodes were active ({scope}): {counts} ({prev}).")
    mcid = config.mcid["odi"].absolute
    # 2. improvement (ODI) at the end of the episode
    ref = PUBLISHED_REFERENCES["odi_improvement"]
    n_end = shown["odi_end"]
    improvement = _mean_improvement(current)
    cmp = _compare(_mean_improvement(previous), None if network is None else _mean_improvement(network))
    if not current["outcomes_recorded"]:
        sentences.append(
            "Improvement in disability (ODI): not recorded (no outcome measures up to the end of the "
            "quarter)."
        )
    elif current["odi_end_n"] == 0:
        sentences.append(
            f"Improvement in disability (ODI): no episode ended in {qt} with a baseline and a follow-up ODI "
            f"{cmp}."
        )
    elif improvement == WITHHELD:
        sentences.append(
            "Improvement in disability (ODI) among the episodes that ended in the quarter with a baseline "
            f"and a follow-up ODI: {WITHHELD} (10 or fewer episodes) {cmp}."
        )
    else:
        change = current["odi_mean_change"] or 0.0
        verb = "improved" if change <= 0 else "worsened"
        who = f"the {n_end} episodes" if n_end != SUPPRESSED else f"the episodes (their number {WITHHELD})"
        sentences.append(
            f"Among {who} that ended in {qt} with a baseline and a follow-up ODI, disability "
            f"{verb} by {abs(change):.1f} points on average on the 0-100 scale {cmp}; for reference, "
            f"{ref.text} ({ref.source}; {ref.caveat})."
        )
    # 3. responders (share reaching the ODI MCID)
    end = ("odi_end",)
    share = _share(current, "odi_responders", "odi_end_n", "outcomes_recorded", withheld_with=end)
    cmp = _compare(
        _share(previous, "odi_responders", "odi_end_n", "outcomes_recorded", withheld_with=end),
        None
        if network is None
        else _share(network, "odi_responders", "odi_end_n", "outcomes_recorded", withheld_with=end),
    )
    what = f"improved by at least the ODI MCID of {mcid:g} points"
    if not current["outcomes_recorded"]:
        sentences.append(f"The share of episodes that {what}: not recorded.")
    elif current["odi_end_n"] == 0:
        sentences.append(f"The share of episodes that {what}: none ended with a follow-up ODI {cmp}.")
    elif share == WITHHELD:
        sentences.append(f"The share of those episodes that {what} is {WITHHELD} {cmp}.")
    else:
        sentences.append(
            f"{safe_count(current['odi_responders'], current['rule'])} of them ({share}) {what} {cmp}."
        )
    # 4. adherence
    share = _share(current, "weeks_met", "patient_weeks", "sessions_recorded")
    cmp = _compare(
        _share(previous, "weeks_met", "patient_weeks", "sessions_recorded"),
        None if network is None else _share(network, "weeks_met", "patient_weeks", "sessions_recorded"),
    )
    rx = "the prescribed 2-3 sessions a week"
    if not current["sessions_recorded"]:
        sentences.append(f"Adherence to {rx}: not recorded (no session is recorded in the quarter).")
    elif share == WITHHELD:
        sentences.append(f"The share of patient-weeks that met {rx} is {WITHHELD} {cmp}.")
    else:
        weeks = safe_count(current["patient_weeks"], current["rule"])
        sentences.append(f"{share} of the {weeks} patient-weeks of active episodes met {rx} {cmp}.")
    # 5. safety: red flags first, then flares
    if not current["red_flags_recorded"]:
        red = (
            "Red-flag screens are not recorded, so this report cannot say whether any red flag awaits action"
        )
    elif current["open_unactioned"] == 0:
        red = "No red-flag alert awaits action"
    else:
        n_open = safe_count(current["open_unactioned"], current["rule"])
        n_open = (
            f"Between {current['rule'].low} and {current['rule'].high}" if n_open == SUPPRESSED else n_open
        )
        red = f"{n_open} red-flag alert(s) have no action recorded (see above)"
    rate = _flare_rate(current)
    cmp = _compare(_flare_rate(previous), None if network is None else _flare_rate(network))
    if not current["sessions_recorded"]:
        flares = "flares: not recorded (no session is recorded in the quarter)"
    elif rate == WITHHELD:
        flares = f"the flare rate is {WITHHELD} {cmp}"
    else:
        flares = (
            f"flares followed {rate.removesuffix(' per 100 sessions')} of every 100 completed sessions {cmp}"
        )
    sentences.append(f"{red}; {flares}.")
    # 6. return to work (the Work section's Kaplan-Meier share by week 12)
    if work is not None:
        sentences.append(work_sentence(*work))
    # 7. data coverage, and how many ended episodes have an end score
    both = ("odi_end", "ended")
    share = _share(current, "odi_end_n", "ended", "outcomes_recorded", withheld_with=both)
    cmp = _compare(
        _share(previous, "odi_end_n", "ended", "outcomes_recorded", withheld_with=both),
        None
        if network is None
        else _share(network, "odi_end_n", "ended", "outcomes_recorded", withheld_with=both),
    )
    if missing_tables:
        names = ", ".join(label_for("table", t) for t in missing_tables)
        tables = f"Not recorded in the quarter: {names} (the sections that use them say so)"
    else:
        tables = "Every kind of record has rows in the quarter"
    if current["ended"] == 0:
        capture = "no episode ended in the quarter"
    elif share in (WITHHELD, "not recorded"):
        capture = f"the share of ended episodes with a follow-up ODI is {share} {cmp}"
    else:
        capture = f"{share} of the episodes that ended have a follow-up ODI {cmp}"
    sentences.append(f"{tables}; {capture}.")
    return sentences


def month_label(day: date) -> str:
    """``September 2026``: a month and year, never a day (no exact dates in a report)."""
    return f"{day:%B %Y}"


def data_dates(inputs: QuarterlyInputs, generated: date) -> str:
    """The data cut and the report date as one sentence (months only for the data).

    Parameters
    ----------
    inputs : QuarterlyInputs
        The report's inputs.
    generated : date
        The day the report is generated (not a patient date).
    """
    qt = inputs.quarter
    log = inputs.ingest_log
    latest = log["ingested_at_utc"].max() if log.height else None
    ingest = (
        f"; the store was last updated in {month_label(latest.date())}"
        if hasattr(latest, "date") and latest is not None
        else ""
    )
    return (
        f"Data as they stood at the end of {month_label(qt.end)} (quarter {qt.label}, {qt.start:%B} to "
        f"{qt.end:%B %Y}){ingest}. Report generated on {generated.day} {generated:%B %Y}."
    )


@dataclass(frozen=True)
class FrontPage:
    """What the front page shows: the dates, the summary sentences and the numbers they came from."""

    dates: str
    sentences: list[str]
    current: QuarterMetrics
    previous: QuarterMetrics | None
    network: QuarterMetrics | None


def front_page(
    inputs: QuarterlyInputs,
    missing_tables: list[str],
    *,
    network: QuarterlyInputs | None = None,
    generated: date | None = None,
) -> FrontPage:
    """The front page of a quarterly report.

    Parameters
    ----------
    inputs : QuarterlyInputs
        The report's inputs.
    missing_tables : list of str
        Canonical tables without rows in the quarter (from the coverage panel).
    network : QuarterlyInputs, optional
        The same quarter for all clinics, in a one-clinic report (compared with as "network").
    generated : date, optional
        The report's date (default: today, UTC).

    Returns
    -------
    FrontPage
    """
    day = generated or datetime.now(UTC).date()
    current = quarter_metrics(inputs)
    earlier = inputs.quarter.shift(-1)
    first = inputs.history["episodes"]["start_date"].min()
    has_previous = isinstance(first, date) and first <= earlier.end
    previous = quarter_metrics(inputs, earlier) if has_previous else None
    net = quarter_metrics(network) if network is not None else None
    scope = f"clinic {inputs.clinic}" if inputs.clinic else "all clinics of the network"
    work = (
        work_metrics(inputs),
        work_metrics(inputs, earlier) if has_previous else None,
        work_metrics(network) if network is not None else None,
    )
    sentences = summary_sentences(
        current, previous, net, config=inputs.config, scope=scope, missing_tables=missing_tables, work=work
    )
    return FrontPage(data_dates(inputs, day), sentences, current, previous, net)
