"""The computations behind the quarterly clinic outcome report.

Every figure and table of ``notebooks/quarterly_report.ipynb`` comes from a function here, so the report can
be reproduced from Python in a few lines::

    from sciatica_outcomes.reports import quarterly
    inputs = quarterly.load_inputs("data/outcomes.duckdb", "2026Q3")
    quarterly.patient_flow(inputs)

Data are taken *as of the last day of the quarter*: rows dated after it are ignored and an episode that ended
later is still active, so re-running a past quarter's report on a newer store gives the same numbers unless
data about that past were corrected. Which episodes count for which section is defined once, in
:data:`COHORT_RULES`, and printed in the report's methods.

The report derives nothing itself: visits, baselines, changes, responders, adherence, progression and alerts
come from the derive stage (:meth:`QuarterlyInputs.derived`, ``derive_all`` of the tables as of the end of
the quarter), estimates and intervals from the models stage, clinical bands from ``scoring``, and every
threshold from :class:`~sciatica_outcomes.config.ClinicalConfig`. What it adds is the quarter's selection
of episodes, the aggregation for display and the suppression of small counts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import Derived, derive_all, session_pain, weekly_adherence, weekly_dose
from sciatica_outcomes.errors import ModelSpecificationError, ReportParameterError, UnusableInputError
from sciatica_outcomes.models.censored import CensoredGrowthModel
from sciatica_outcomes.models.compare import compare_providers, episode_outcomes
from sciatica_outcomes.models.lmm import GrowthModel
from sciatica_outcomes.models.responders import responder_frame
from sciatica_outcomes.models.survival import kaplan_meier, time_to_improvement
from sciatica_outcomes.reports.privacy import (
    HIGH,
    NETWORK_RULE,
    SUPPRESSED,
    SuppressionRule,
    rule_for,
    suppress_counts,
    suppress_table,
)
from sciatica_outcomes.reports.published import MINOR_END_REASONS, OTHER_ENDS, FlowPattern, flow_pattern
from sciatica_outcomes.reports.units import withhold_comparison
from sciatica_outcomes.schemas import SCHEMA_VERSION, TABLE_SPECS
from sciatica_outcomes.schemas.catalogs import label_for, label_map, measure_catalog
from sciatica_outcomes.schemas.vocabulary import CANONICAL_TABLES, END_REASONS
from sciatica_outcomes.scoring.instruments import ODI_BANDS, odi_band
from sciatica_outcomes.scoring.visits import BASELINE_LABEL
from sciatica_outcomes.store import Store

if TYPE_CHECKING:
    from polars.expr.whenthen import ChainedThen, Then

__all__ = [
    "CASE_MIX_ORDER",
    "COHORT_RULES",
    "END_REASONS",
    "GROWTH_KNOTS",
    "GROWTH_RANDOM",
    "GROWTH_TIME",
    "KM_OUTCOMES",
    "PAIN_BANDS",
    "REPORT_OUTCOMES",
    "TABLE_USES",
    "AdherenceSummary",
    "DataQuality",
    "DoseProgression",
    "ModelSpec",
    "OutcomeModel",
    "ProgressionCounts",
    "Provenance",
    "ProviderSpec",
    "ProviderView",
    "Quarter",
    "QuarterlyInputs",
    "SafetySummary",
    "TimeToImprovement",
    "adherence_summary",
    "as_of",
    "band_shares",
    "case_mix",
    "case_mix_display",
    "clip_to_range",
    "coverage",
    "coverage_note",
    "data_quality",
    "dose_progression",
    "end_of_episode_outcomes",
    "estimable_week",
    "flow_display",
    "growth_time",
    "load_inputs",
    "merge_small_ends",
    "outcome_bounds",
    "outcome_models",
    "pain_band_labels",
    "patient_flow",
    "provenance",
    "provider_comparison",
    "published_flow",
    "report_rule",
    "safety_summary",
    "table_hashes",
    "time_to_improvement_summary",
    "trend",
    "validate_parameters",
]

#: Which episodes count for which section of the report (printed in the methods section).
COHORT_RULES: dict[str, str] = {
    "enrolled": "episodes whose start date falls in the quarter",
    "active": "episodes that started on or before the last day of the quarter and had not ended before its "
    "first day",
    "ended": "episodes whose end date falls in the quarter, by recorded end reason",
    "outcomes": "change from baseline: episodes that ended in the quarter; model-based trajectories: every "
    "assessment of every episode up to the last day of the quarter",
    "safety": "red-flag screens and sessions dated in the quarter, plus every unactioned red-flag alert "
    "still open at the end of the quarter whatever its date",
    "adherence": "sessions scheduled in the quarter for episodes active in the quarter",
    "work": "episodes active in the quarter in paid work (employed or self-employed) at their enrolment work "
    "assessment with a later work assessment up to the last day of the quarter; return to work: those of "
    "them off work because of back or leg pain at enrolment, censored at their last assessment",
    "trend": "the same definitions applied to each of the four previous quarters",
}


class DataQuality(TypedDict):
    """:func:`data_quality`: quarantined rows by rule and measure completeness."""

    quarantine: pl.DataFrame
    completeness: pl.DataFrame


class AdherenceSummary(TypedDict):
    """:func:`adherence_summary`: adherence to the prescription in a quarter."""

    patient_weeks: int
    weeks_met: int
    met_share: float | None
    mean_ratio: float | None
    by_program_week: pl.DataFrame
    episode_ratio: pl.DataFrame


class SafetySummary(TypedDict):
    """:func:`safety_summary`: red-flag alerts, flares and pain-response bands in a quarter."""

    open_unactioned: pl.DataFrame
    alerts_by_flag: pl.DataFrame
    completed_sessions: int
    flares: int
    flare_rate_per_100: float | None
    spikes: int
    settle_unknown: int
    pain_bands: pl.DataFrame


class ProgressionCounts(TypedDict):
    """Load progression of the active episodes (raw counts: suppress before showing)."""

    n_episodes: int
    n_progressed: int
    mean_weeks_between: float | None
    n_behind_guideline: int
    n_stalled: int


class DoseProgression(TypedDict):
    """:func:`dose_progression`: weekly dose by muscle group and load progression."""

    by_muscle_group: pl.DataFrame
    progression: ProgressionCounts


class TimeToImprovement(TypedDict):
    """:func:`time_to_improvement_summary`: Kaplan-Meier curves (coarsened) and medians."""

    curves: pl.DataFrame
    medians: pl.DataFrame


class ModelSpec(TypedDict):
    """What the report's provenance records of one growth model."""

    purpose: str
    outcome: str
    formula: str
    reml: bool
    n_obs: int
    n_episodes: int
    converged: bool
    diagnostics: dict[str, Any]


class ProviderSpec(TypedDict):
    """What the report's provenance records of the risk-adjusted comparison."""

    outcome: str
    visit: str
    level: str
    residual_sd: float
    between_sd: float
    diagnostics: dict[str, Any]


class Provenance(TypedDict):
    """:func:`provenance`: what a quarterly report records of its data, schema and configuration."""

    quarter: str
    clinic: str | None
    data_sha256: dict[str, str]
    schema_version: str
    sources: list[dict[str, Any]]
    config: dict[str, Any]
    cohort_rules: dict[str, str]
    audience: dict[str, object]


class ProviderView(TypedDict):
    """:func:`provider_comparison`: the units as the report shows them, the funnel limits, the spec."""

    level: str
    providers: pl.DataFrame
    limits: pl.DataFrame
    spec: ProviderSpec


_QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
#: The date column of every table dated within its episode (the tables' date-window rule).
_DATE_COLUMNS: dict[str, str] = {
    name: spec.date_window.date_column for name, spec in TABLE_SPECS.items() if spec.date_window is not None
}


@dataclass(frozen=True, order=True)
class Quarter:
    """A calendar quarter such as ``2026Q3`` (1 July - 30 September 2026)."""

    year: int
    number: int

    @classmethod
    def parse(cls, label: str) -> Quarter:
        """Parse ``YYYYQn``; raises ``ReportParameterError`` on anything else."""
        m = _QUARTER.match(str(label).strip())
        if m is None:
            raise ReportParameterError(f"quarter must look like 2026Q3 (year, 'Q', 1-4); got {label!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def label(self) -> str:
        """``YYYYQn``."""
        return f"{self.year}Q{self.number}"

    @property
    def start(self) -> date:
        """First day of the quarter."""
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def end(self) -> date:
        """Last day of the quarter."""
        nxt = Quarter(self.year + (self.number == 4), self.number % 4 + 1)
        return nxt.start - timedelta(days=1)

    def shift(self, quarters: int) -> Quarter:
        """The quarter ``quarters`` later (negative: earlier)."""
        idx = self.year * 4 + (self.number - 1) + quarters
        return Quarter(idx // 4, idx % 4 + 1)

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class QuarterlyInputs:
    """Everything a quarterly report reads, as of the end of the quarter.

    Attributes
    ----------
    quarter : Quarter
    clinic : str or None
        The clinic the report is restricted to, or ``None`` for all clinics.
    config : ClinicalConfig
    tables : dict of polars.DataFrame
        The six canonical tables as of the end of the quarter (and restricted to the clinic).
    history : dict of polars.DataFrame
        The same tables unrestricted by date (for the trend over previous quarters), clinic-restricted.
    quarantine, ingest_log : polars.DataFrame
        The store's quarantine and ingest log (data quality and provenance).
    db : Path
        The store the inputs were read from.
    store_rows : dict of int
        Rows of each canonical table in the whole store (every clinic, every date): zero means the table was
        never ingested (:func:`coverage`); empty when unknown, then :attr:`history` stands in.
    rule : SuppressionRule
        The audience's suppression rule (:func:`report_rule`); every count the report shows goes through it.
    network_episodes : polars.DataFrame or None
        The episodes of every clinic, unrestricted (the published set's patient flow,
        :func:`published_flow`); ``None``: :attr:`history`'s episodes stand in.
    """

    quarter: Quarter
    clinic: str | None
    config: ClinicalConfig
    tables: dict[str, pl.DataFrame]
    history: dict[str, pl.DataFrame]
    quarantine: pl.DataFrame
    ingest_log: pl.DataFrame
    db: Path = field(default=Path("."))
    store_rows: dict[str, int] = field(default_factory=dict)
    rule: SuppressionRule = NETWORK_RULE
    network_episodes: pl.DataFrame | None = None
    _patterns: dict[Quarter, FlowPattern] = field(default_factory=dict, init=False, repr=False, compare=False)
    _derived: dict[Quarter, Derived] = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, quarter: Quarter | None = None) -> Derived:
        """The derive stage's frames as of the end of ``quarter`` (default: the report's quarter).

        ``derive_all`` of :attr:`tables` (or of :attr:`history` as of the end of an earlier quarter, for the
        trend) with the data cut at the quarter's last day; computed once per quarter.
        """
        q = quarter or self.quarter
        if q not in self._derived:
            tables = self.tables if q == self.quarter else as_of(self.history, q.end)
            self._derived[q] = derive_all(tables, self.config, data_cut=q.end)
        return self._derived[q]


def as_of(tables: dict[str, pl.DataFrame], day: date) -> dict[str, pl.DataFrame]:
    """The canonical tables as they stood at the end of ``day``.

    Episodes that started after ``day`` are dropped; an end date (and reason) after ``day`` is cleared, so the
    episode counts as active; dated rows after ``day`` are dropped.
    """
    ep = tables["episodes"].filter(pl.col("start_date") <= day)
    ended_later = pl.col("end_date").is_not_null() & (pl.col("end_date") > day)
    ep = ep.with_columns(
        pl.when(ended_later).then(None).otherwise(pl.col("end_date")).alias("end_date"),
        pl.when(ended_later).then(None).otherwise(pl.col("end_reason")).alias("end_reason"),
    )
    out = {"episodes": ep}
    for name, col in _DATE_COLUMNS.items():
        out[name] = tables[name].filter(pl.col(col) <= day).join(ep.select("episode_id"), on="episode_id")
    out["session_exercises"] = tables["session_exercises"].join(
        out["sessions"].select("session_id"), on="session_id"
    )
    return out


def _restrict_clinic(tables: dict[str, pl.DataFrame], clinic: str | None) -> dict[str, pl.DataFrame]:
    if clinic is None:
        return tables
    ep = tables["episodes"].filter(pl.col("clinic_id") == clinic)
    out = {"episodes": ep}
    for name in _DATE_COLUMNS:
        out[name] = tables[name].join(ep.select("episode_id"), on="episode_id")
    out["session_exercises"] = tables["session_exercises"].join(
        out["sessions"].select("session_id"), on="session_id"
    )
    return out


def report_rule(audience: str | None, threshold: int | None, clinic: str | None) -> SuppressionRule:
    """The suppression rule of a quarterly report.

    Parameters
    ----------
    audience : {"internal", "network", "public"} or None
        Who reads the report; ``None`` or ``""``: ``internal`` for a one-clinic report (the clinic's own
        staff), ``network`` for all clinics.
    threshold : int or None
        Largest withheld count under ``network`` / ``public`` (``None``: the default 10).
    clinic : str or None
        The report's clinic (``None`` or ``""``: all clinics).

    Returns
    -------
    SuppressionRule

    Raises
    ------
    ReportParameterError
        An unknown audience, a threshold below 1 or given with ``internal``, or ``internal`` without a
        clinic (an internal report is one clinic's own: the network's counts are no one clinic's to see).
    """
    chosen = audience or ("internal" if clinic else "network")
    if chosen == "internal" and not clinic:
        raise ReportParameterError(
            "the internal audience is one clinic's own staff: give --clinic, or use --audience network"
        )
    try:
        return rule_for(chosen, threshold)
    except ValueError as exc:
        raise ReportParameterError(f"{exc}; see sciatica-outcomes report quarterly --help") from exc


def validate_parameters(params: dict[str, Any]) -> None:
    """Check the quarterly report's parameters against the store before anything runs.

    Raises
    ------
    ReportParameterError
        Malformed or out-of-range quarter, unknown clinic, missing store, unreadable config file, unknown
        audience or bad threshold (:func:`report_rule`), or 10 or fewer episodes active in the quarter (for
        the clinic when one is given): every section of such a
        report would describe a handful of identifiable patients, so none is rendered
        (:data:`MIN_ACTIVE_EPISODES`).
    """
    quarter = Quarter.parse(params.get("quarter", ""))
    rule = report_rule(params.get("audience"), params.get("suppress_threshold") or None, params.get("clinic"))
    db = Path(str(params.get("db", "")))
    if not db.is_file():
        raise ReportParameterError(f"store {db} does not exist: ingest data first (sciatica-outcomes ingest)")
    with Store(db, read_only=True) as store:
        ep = store.read("episodes")
    if ep.height == 0:
        raise ReportParameterError(f"store {db} holds no episodes: nothing to report")
    first, last, last_end = ep["start_date"].min(), ep["start_date"].max(), ep["end_date"].max()
    if not isinstance(first, date) or not isinstance(last, date):
        raise ReportParameterError(f"store {db} holds no episode start dates: re-ingest the episodes table")
    if quarter.end < first or quarter.start > (max(last, last_end) if isinstance(last_end, date) else last):
        raise ReportParameterError(
            f"quarter {quarter} lies outside the data (episodes start from {first} to {last}); "
            f"choose a quarter between {_quarter_of(first)} and {_quarter_of(last)}"
        )
    clinic = params.get("clinic")
    if clinic not in (None, ""):
        known = sorted(ep["clinic_id"].unique().to_list())
        if clinic not in known:
            raise ReportParameterError(f"unknown clinic {clinic!r}; the store holds {', '.join(known)}")
    cfg = params.get("config")
    if cfg not in (None, ""):
        ClinicalConfig.from_toml(cfg)
    scope = ep if clinic in (None, "") else ep.filter(pl.col("clinic_id") == clinic)
    # as the report sees the data: an episode ended after the quarter was still open at its end
    scope = scope.with_columns(
        pl.when(pl.col("end_date") <= quarter.end).then(pl.col("end_date")).alias("end_date")
    )
    active = scope.filter(_episode_sets(scope, quarter)["active"]).height
    needed = min_active_episodes(rule)
    if active < needed:
        where = f"clinic {clinic}" if clinic not in (None, "") else "the store"
        raise ReportParameterError(
            f"{where} has {'no' if active == 0 else f'between 1 and {needed - 1}'} episode(s) active in "
            f"{quarter}: a quarterly report needs at least {needed}, or it would describe identifiable "
            "patients; report on all clinics together, or on a longer period"
        )


#: Fewest episodes active in the quarter for which a quarterly report is rendered (counts of 1-10 are never
#: shown, and every statistic of the report would otherwise come from 10 or fewer patients).
MIN_ACTIVE_EPISODES = HIGH + 1


def min_active_episodes(rule: SuppressionRule = NETWORK_RULE) -> int:
    """Fewest active episodes for a report under ``rule``: :data:`MIN_ACTIVE_EPISODES`, or the threshold + 1.

    The internal audience keeps the minimum too: its counts are exact, but every model-based statistic of
    the report would still come from a handful of patients.
    """
    return max(MIN_ACTIVE_EPISODES, rule.high + 1)


def _quarter_of(day: date) -> Quarter:
    return Quarter(day.year, (day.month - 1) // 3 + 1)


def load_inputs(
    db: str | Path,
    quarter: str | Quarter,
    clinic: str | None = None,
    config: ClinicalConfig | None = None,
    rule: SuppressionRule = NETWORK_RULE,
) -> QuarterlyInputs:
    """Read the store once and prepare the inputs of a quarterly report.

    Parameters
    ----------
    db : str or Path
        The DuckDB store.
    quarter : str or Quarter
        E.g. ``"2026Q3"``.
    clinic : str, optional
        Restrict to one clinic (``clinic_id``).
    config : ClinicalConfig, optional
        Clinical thresholds; defaults to the documented defaults.
    rule : SuppressionRule, default :data:`~sciatica_outcomes.reports.privacy.NETWORK_RULE`
        The audience's rule (:func:`report_rule`).
    """
    q = quarter if isinstance(quarter, Quarter) else Quarter.parse(quarter)
    with Store(db, read_only=True) as store:
        tables = store.tables()
        quarantine = store.read("quarantine")
        log = store.read("ingest_log")
    history = _restrict_clinic(tables, clinic or None)
    return QuarterlyInputs(
        quarter=q,
        clinic=clinic or None,
        config=config or ClinicalConfig(),
        tables=as_of(history, q.end),
        history=history,
        quarantine=quarantine,
        ingest_log=log,
        db=Path(db),
        store_rows={name: frame.height for name, frame in tables.items()},
        rule=rule,
        network_episodes=tables["episodes"],
    )


#: What each canonical table feeds in the quarterly report (the coverage panel).
TABLE_USES: dict[str, str] = {
    "episodes": "every section",
    "sessions": "adherence, flares and pain monitoring, training dose",
    "session_exercises": "pain during exercise, training dose and load progression",
    "measures": "outcomes, baselines of the case mix, time to improvement, risk-adjusted comparison",
    "questionnaire_items": "questionnaire scores (e.g. ODI) where no score was recorded as a measure",
    "symptom_checks": "red-flag screens and alerts",
    "work": "work status, return to work, work ability and sick leave (the Work section)",
}


def coverage(inputs: QuarterlyInputs) -> pl.DataFrame:
    """Which canonical tables the report has data from: ingested at all, up to the end of the quarter, in it.

    A section that depends on a table without rows in the quarter must say "not recorded" rather than give
    an all-clear (no red-flag screen is not the same as no red flag); :func:`coverage_note` words the reason.

    Returns
    -------
    polars.DataFrame
        One row per canonical table: ``table``, ``used_for`` (:data:`TABLE_USES`), ``ingested`` (the store
        holds rows of it, any clinic, any date), ``up_to_end`` (rows for the report's clinic, or any clinic,
        dated up to the end of the quarter), ``in_quarter`` (rows dated in the quarter; episodes: active in
        it; exercise rows: of sessions dated in it) and ``status``: "recorded", "no rows in the quarter",
        "no rows up to the end of the quarter", "no rows for clinic X" or "not ingested". No counts (a count
        of rows could tell a count of patients).
    """
    q = inputs.quarter
    t = inputs.tables
    sessions_in_q = t["sessions"].filter(pl.col("session_date").is_between(q.start, q.end))
    in_quarter: dict[str, bool] = {
        "episodes": t["episodes"].filter(_episode_sets(t["episodes"], q)["active"]).height > 0,
        "sessions": sessions_in_q.height > 0,
        "session_exercises": t["session_exercises"]
        .join(sessions_in_q.select("session_id"), on="session_id")
        .height
        > 0,
    }
    for name, col in _DATE_COLUMNS.items():
        if name not in in_quarter:
            in_quarter[name] = t[name].filter(pl.col(col).is_between(q.start, q.end)).height > 0
    rows = []
    for name in CANONICAL_TABLES:
        stored = inputs.store_rows.get(name, inputs.history[name].height)
        in_scope = inputs.history[name].height > 0
        up_to_end = t[name].height > 0
        if stored == 0:
            status = "not ingested"
        elif not in_scope and inputs.clinic:
            status = f"no rows for clinic {inputs.clinic}"
        elif not up_to_end:
            status = "no rows up to the end of the quarter"
        elif not in_quarter[name]:
            status = "no rows in the quarter"
        else:
            status = "recorded"
        rows.append((name, TABLE_USES[name], stored > 0, up_to_end, in_quarter[name], status))
    return pl.DataFrame(
        rows,
        schema={
            "table": pl.String,
            "used_for": pl.String,
            "ingested": pl.Boolean,
            "up_to_end": pl.Boolean,
            "in_quarter": pl.Boolean,
            "status": pl.String,
        },
        orient="row",
    )


def coverage_note(cov: pl.DataFrame, table: str) -> str:
    """Why a table gives the report nothing, as a clause in words, with the table's name for the data team.

    E.g. "the red-flag screens, table symptom_checks, were not ingested"; the words come from the label
    catalog (``label_for("table", ...)``).

    Parameters
    ----------
    cov : polars.DataFrame
        :func:`coverage`.
    table : str
        A canonical table name.
    """
    status = cov.filter(pl.col("table") == table)["status"].item()
    what = f"the {label_for('table', table)}, table {table},"
    if status == "not ingested":
        return f"{what} were not ingested"
    if status == "recorded":
        return f"{what} have rows in the quarter"
    return f"{what} have {status}"


def _episode_sets(ep: pl.DataFrame, q: Quarter) -> dict[str, pl.Expr]:
    return {
        "enrolled": pl.col("start_date").is_between(q.start, q.end),
        "active": (pl.col("start_date") <= q.end)
        & (pl.col("end_date").is_null() | (pl.col("end_date") >= q.start)),
        "ended": pl.col("end_date").is_between(q.start, q.end),
    }


def patient_flow(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> pl.DataFrame:
    """Counts of the patient flow through the program in a quarter (CONSORT-style).

    Returns
    -------
    polars.DataFrame
        Columns ``stage`` and ``n``: active at the start of the quarter, newly enrolled, active in the
        quarter, ended in the quarter by reason (completed, dropped out, referred, surgery, injection,
        other), and still active at the end. ``active in quarter = active at start + enrolled`` and
        ``active in quarter = ended + still active``.
    """
    q = quarter or inputs.quarter
    ep = as_of(inputs.history, q.end)["episodes"] if quarter is not None else inputs.tables["episodes"]
    sets = _episode_sets(ep, q)
    flags = ep.select(
        sets["enrolled"].alias("enrolled"),
        sets["active"].alias("active"),
        sets["ended"].alias("ended"),
        pl.col("end_reason").fill_null("other"),
    )
    n_active = int(flags["active"].sum())
    n_enrolled = int(flags["enrolled"].sum())
    ended = flags.filter(pl.col("ended"))
    rows: list[tuple[str, int]] = [
        ("active at start of quarter", n_active - n_enrolled),
        ("enrolled in quarter", n_enrolled),
        ("active in quarter", n_active),
    ]
    rows += [(f"ended: {r.replace('_', ' ')}", int((ended["end_reason"] == r).sum())) for r in END_REASONS]
    rows.append(("still active at end of quarter", n_active - ended.height))
    return pl.DataFrame(rows, schema={"stage": pl.String, "n": pl.Int64}, orient="row")


def merge_small_ends(counts: Mapping[str, int], rule: SuppressionRule = NETWORK_RULE) -> dict[str, int]:
    """Merge the minor end reasons into one "other ends" stage when any of them is a small count.

    Merging comes before withholding, so that a handful of referrals does not cost the dropout count its
    place: with the minor reasons as one cell, a small referral count needs no complementary suppression of
    the dropouts unless the merged cell is itself small. All four minor reasons are merged together, never
    only the small ones (which reasons were merged would tell that each of them is 1-10).

    Parameters
    ----------
    counts : mapping of str to int
        :func:`patient_flow` as ``{stage: n}``.
    rule : SuppressionRule
        Nothing is merged when the rule withholds nothing (``internal``).

    Returns
    -------
    dict of str to int
        The stages in order, the minor reasons replaced by :data:`OTHER_ENDS` where merged.
    """
    minor = [f"ended: {r}" for r in MINOR_END_REASONS]
    if not rule.withholds or not any(rule.is_small(counts.get(k, 0)) for k in minor):
        return dict(counts)
    out: dict[str, int] = {}
    for stage, n in counts.items():
        if stage in minor:
            out[OTHER_ENDS] = out.get(OTHER_ENDS, 0) + n
        else:
            out[stage] = n
    return out


def published_flow(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> dict[str, str]:
    """The patient flow of a quarter as the report prints it, suppressed across the published set.

    Under ``internal`` the clinic's own flow is exact (:func:`flow_display`). Under ``network`` and
    ``public`` the flow of the network and of every clinic, in every quarter up to the report's, is
    suppressed as one system (:func:`~sciatica_outcomes.reports.published.flow_pattern`), so that no
    withheld count follows from this report together with the other clinics' reports, the network's report
    and the reports of other quarters (their trend tables included); the pattern is computed once per report.

    Returns
    -------
    dict of str to str
        ``{stage: text}`` as :func:`flow_display`.
    """
    q = quarter or inputs.quarter
    if not inputs.rule.withholds:
        return flow_display(patient_flow(inputs, quarter), inputs.rule)
    if inputs.quarter not in inputs._patterns:
        episodes = inputs.network_episodes
        if episodes is None:
            episodes = inputs.history["episodes"]
        inputs._patterns[inputs.quarter] = flow_pattern(episodes, inputs.quarter.label, inputs.rule)
    return inputs._patterns[inputs.quarter].shown(inputs.clinic, q.label)


def flow_display(flow: pl.DataFrame, rule: SuppressionRule = NETWORK_RULE) -> dict[str, str]:
    """Suppressed display strings of :func:`patient_flow`, respecting the flow's own identities.

    The flow has two partitions of the episodes active in the quarter, whose total the report shows: active
    at start + enrolled, and the end reasons + still active (the reasons sum to the number ended). Each
    partition is suppressed as a table of its own (primary and complementary suppression,
    :func:`~sciatica_outcomes.reports.privacy.suppress_table`), the second with every reason as its own cell,
    so that no withheld cell is the total minus the shown ones. "Ended" is shown only when "still active" is
    (it is then the total minus it anyway) and it is not 1-10; a total of 1-10 withholds everything. The band
    is ``rule``'s (nothing is withheld under ``internal``). Before anything is withheld, the minor end
    reasons are merged into "other ends" when one of them is small (:func:`merge_small_ends`), so the
    returned stages are those of the merged flow.
    """
    n = merge_small_ends(dict(flow.iter_rows()), rule)
    reasons = [s for s in n if s.startswith("ended: ")]
    shown: dict[str, str] = {}
    still = "still active at end of quarter"
    for line in (["active at start of quarter", "enrolled in quarter"], [*reasons, still]):
        res = suppress_table([n[k] for k in line], rule=rule)
        for k, v in zip(line, res.shown()[:, 0], strict=True):
            shown[k] = str(v)
    active = n["active in quarter"]
    ended = sum(n[r] for r in reasons)
    shown["active in quarter"] = SUPPRESSED if rule.is_small(active) else str(active)
    hide_ended = shown[still] == SUPPRESSED or rule.is_small(ended)
    shown["ended"] = SUPPRESSED if hide_ended else str(ended)
    return {k: shown[k] for k in [*n, "ended"]}


def _band(col: str, edges: list[float], labels: list[str]) -> pl.Expr:
    """Label ``col`` by bins ``[-inf, e1), [e1, e2), ..., [ek, inf)``; nulls are "not recorded"."""
    expr: Then | ChainedThen = pl.when(pl.col(col).is_null()).then(pl.lit("not recorded"))
    for edge, label in zip(edges, labels, strict=False):
        expr = expr.when(pl.col(col) < edge).then(pl.lit(label))
    return expr.otherwise(pl.lit(labels[-1]))


#: Case-mix characteristics with their categories in display order ("not recorded" always comes last).
CASE_MIX_ORDER: dict[str, tuple[str, ...]] = {
    "sex": tuple(label_map("sex").values()),
    "age band": ("under 40", "40-59", "60 and over"),
    "symptom duration": ("under 12 weeks", "12-25 weeks", "26-51 weeks", "52 weeks or more"),
    "affected side": tuple(label_map("side").values()),
    "baseline ODI": tuple(label for _, _, label in ODI_BANDS),
    "baseline leg pain": ("0-3", "4-6", "7-10"),
}


def case_mix(inputs: QuarterlyInputs) -> pl.DataFrame:
    """Case mix of the episodes active in the quarter: counts by characteristic and category.

    Returns
    -------
    polars.DataFrame
        ``characteristic, category, n`` for sex, age band, symptom duration, affected side, baseline ODI band
        (:func:`~sciatica_outcomes.scoring.odi_band`, Fairbank & Pynsent 2000) and baseline leg pain band,
        categories in the order of :data:`CASE_MIX_ORDER` (ordered bands lowest first, "not recorded" last)
        and labelled from the catalogs (``Female``, not ``F``). A category no episode falls in is left out.
        Baselines are the derive stage's (``baseline_<m>`` of the episode summary: the value at visit w0).
    """
    ep = inputs.tables["episodes"].filter(_episode_sets(inputs.tables["episodes"], inputs.quarter)["active"])
    summary = inputs.derived().episode_summary
    base = summary.select(
        "episode_id",
        *(
            (
                pl.col(f"baseline_{m}") if f"baseline_{m}" in summary.columns else pl.lit(None, pl.Float64)
            ).alias(m)
            for m in ("odi", "nprs_leg")
        ),
    )
    d = ep.join(base, on="episode_id", how="left").with_columns(
        _band("age_at_start", [40, 60], ["under 40", "40-59", "60 and over"]).alias("age band"),
        _band(
            "symptom_duration_weeks",
            [12, 26, 52],
            ["under 12 weeks", "12-25 weeks", "26-51 weeks", "52 weeks or more"],
        ).alias("symptom duration"),
        odi_band(pl.col("odi"), label=True).fill_null("not recorded").alias("baseline ODI"),
        _band("nprs_leg", [4, 7], ["0-3", "4-6", "7-10"]).alias("baseline leg pain"),
        pl.col("sex").replace(label_map("sex")).fill_null("not recorded"),
        pl.col("affected_side").replace(label_map("side")).fill_null("not recorded").alias("affected side"),
    )
    parts = []
    for c, order in CASE_MIX_ORDER.items():
        rank = {label: i for i, label in enumerate((*order, "not recorded"))}
        parts.append(
            d.group_by(pl.col(c).alias("category"))
            .agg(pl.len().cast(pl.Int64).alias("n"))
            .with_columns(pl.lit(c).alias("characteristic"))
            # a category outside the list (a new code) is kept, after the known ones, never dropped
            .sort(
                pl.col("category").replace_strict(rank, default=len(rank), return_dtype=pl.Int64), "category"
            )
        )
    return pl.concat(parts).select("characteristic", "category", "n")


def case_mix_display(inputs: QuarterlyInputs, mix: pl.DataFrame | None = None) -> pl.DataFrame:
    """The case mix as the report prints it: ``characteristic, category, n`` with ``n`` as text.

    Each characteristic is suppressed as a table of its own with its total, the episodes active in the
    quarter (:func:`~sciatica_outcomes.reports.privacy.suppress_counts`). That total is a count of the
    patient flow, suppressed across the published set (:func:`published_flow`): where the flow withholds
    it, the categories of any characteristic would add up to it, so every category is withheld as well.

    Parameters
    ----------
    inputs : QuarterlyInputs
    mix : polars.DataFrame, optional
        :func:`case_mix` of ``inputs`` (computed when not given).

    Returns
    -------
    polars.DataFrame
        The rows of :func:`case_mix` in its order, ``n`` a string column (``*`` where withheld).
    """
    mix = case_mix(inputs) if mix is None else mix
    if mix.is_empty():
        return mix.with_columns(pl.col("n").cast(pl.String))
    if inputs.rule.withholds and published_flow(inputs)["active in quarter"] == SUPPRESSED:
        return mix.with_columns(pl.lit(SUPPRESSED).alias("n"))
    parts = [part for _, part in mix.group_by("characteristic", maintain_order=True)]
    return pl.concat([suppress_counts(part, ["n"], rule=inputs.rule) for part in parts])


def _own_quarantine(inputs: QuarterlyInputs) -> pl.DataFrame:
    """The quarantined rows of the report's clinic (all of them for an all-clinic report)."""
    qr = inputs.quarantine
    if not inputs.clinic or qr.height == 0:
        return qr
    episodes = inputs.history["episodes"]["episode_id"].cast(pl.String)
    sessions = inputs.history["sessions"]["session_id"].cast(pl.String)

    def field(name: str) -> pl.Expr:
        return pl.col("record").str.json_path_match(f"$.{name}")

    mine = (
        (field("clinic_id") == inputs.clinic)
        | field("episode_id").is_in(episodes.implode())
        | field("session_id").is_in(sessions.implode())
    )
    return qr.filter(mine.fill_null(False))


def data_quality(inputs: QuarterlyInputs) -> DataQuality:
    """Rows quarantined by rule and measure completeness at baseline and at the end of the episode.

    Returns
    -------
    DataQuality
        ``"quarantine"``: ``table, rule, rows`` (all ingests up to now; a quarantined row counts once per
        rule it broke; in a one-clinic report only rows whose raw record names the clinic, or one of its
        episodes or sessions: another clinic's data quality is not this report's to show);
        ``"completeness"``: ``measure, baseline_n, baseline_of, end_n, end_of`` for the
        episodes enrolled in (baseline) and ended in (end) the quarter: a baseline is a value at visit w0, an
        end assessment one within ``ClinicalConfig.end_window_days`` of the end date (the derive stage's
        ``visit`` and ``at_end``).
    """
    qr = _own_quarantine(inputs)
    if qr.height:
        errors = qr.select(
            "table_name",
            pl.col("errors").str.json_decode(pl.List(pl.Struct({"rule": pl.String, "column": pl.String}))),
        ).explode("errors")
        by_rule = (
            errors.select("table_name", pl.col("errors").struct.field("rule").alias("rule"))
            .group_by("table_name", "rule")
            .agg(pl.len().cast(pl.Int64).alias("rows"))
            .sort("table_name", "rule")
            .rename({"table_name": "table"})
        )
    else:
        by_rule = pl.DataFrame(schema={"table": pl.String, "rule": pl.String, "rows": pl.Int64})
    ep = inputs.tables["episodes"]
    sets = _episode_sets(ep, inputs.quarter)
    m = inputs.derived().outcomes
    enrolled = ep.filter(sets["enrolled"]).select("episode_id")
    ended = ep.filter(sets["ended"]).select("episode_id")
    at_base = m.filter(pl.col("visit") == BASELINE_LABEL)
    at_end = m.filter(pl.col("at_end"))
    measures = list(REPORT_OUTCOMES)
    rows = []
    for meas in measures:
        b = at_base.filter(pl.col("measure") == meas).select("episode_id").unique()
        e = at_end.filter(pl.col("measure") == meas).select("episode_id").unique()
        rows.append(
            (
                meas,
                enrolled.join(b, on="episode_id").height,
                enrolled.height,
                ended.join(e, on="episode_id").height,
                ended.height,
            )
        )
    completeness = pl.DataFrame(
        rows,
        schema={
            "measure": pl.String,
            "baseline_n": pl.Int64,
            "baseline_of": pl.Int64,
            "end_n": pl.Int64,
            "end_of": pl.Int64,
        },
        orient="row",
    )
    return {"quarantine": by_rule, "completeness": completeness}


def table_hashes(tables: dict[str, pl.DataFrame]) -> dict[str, str]:
    """SHA-256 of each canonical table's content (sorted rows as CSV), for the report's provenance."""
    out: dict[str, str] = {}
    for name in CANONICAL_TABLES:
        frame = tables[name]
        payload = frame.sort(frame.columns).write_csv().encode("utf-8")
        out[name] = hashlib.sha256(payload).hexdigest()
    return out


def provenance(inputs: QuarterlyInputs) -> Provenance:
    """Provenance entries of a quarterly report: data hashes, sources, schema version, configuration.

    Returns
    -------
    Provenance
        ``"quarter"`` and ``"clinic"`` (``None`` for all clinics), ``"data_sha256"`` (per canonical table,
        :func:`table_hashes`), ``"schema_version"``, ``"sources"`` (one record per ingested file and table:
        ``source_path, sha256, table_name, ingested_at_utc``), ``"config"``
        (:meth:`~sciatica_outcomes.config.ClinicalConfig.to_dict`), ``"cohort_rules"``
        (:data:`COHORT_RULES`) and ``"audience"`` (:meth:`SuppressionRule.to_dict`).

    Notes
    -----
    A one-clinic report lists only the clinic's own sources: the store keeps no row-level lineage, so a
    source counts as the clinic's when its path names the clinic (``CL01`` in ``exports/CL01/episodes.csv``);
    files shared by several clinics are left out (the content hashes of the clinic's data identify what the
    report read). No other clinic's file path appears in a one-clinic report.
    """
    sources = (
        inputs.ingest_log.select("source_path", "sha256", "table_name", "ingested_at_utc")
        .unique(["sha256", "table_name"])
        .sort("table_name", "source_path")
    )
    if inputs.clinic:
        own = rf"(?i)(^|[^A-Za-z0-9]){re.escape(inputs.clinic)}([^A-Za-z0-9]|$)"
        sources = sources.filter(pl.col("source_path").str.contains(own))
    return {
        "quarter": inputs.quarter.label,
        "clinic": inputs.clinic,
        "audience": inputs.rule.to_dict(),
        "data_sha256": table_hashes(inputs.tables),
        "schema_version": SCHEMA_VERSION,
        "sources": json.loads(sources.write_json()),
        "config": inputs.config.to_dict(),
        "cohort_rules": COHORT_RULES,
    }


# ------------------------------------------------------------------------------------------------------
# adherence, safety, outcomes at the end of the episode, trend
# ------------------------------------------------------------------------------------------------------


def _mean(series: pl.Series) -> float | None:
    """Mean of a numeric or boolean column; ``None`` when it has no value (empty or all null)."""
    value = series.mean()
    return float(value) if isinstance(value, int | float) else None


def _active(
    inputs: QuarterlyInputs, quarter: Quarter | None = None
) -> tuple[Quarter, dict[str, pl.DataFrame]]:
    q = quarter or inputs.quarter
    tables = inputs.tables if quarter is None else as_of(inputs.history, q.end)
    ep = tables["episodes"].filter(_episode_sets(tables["episodes"], q)["active"])
    return q, {**tables, "episodes": ep}


def adherence_summary(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> AdherenceSummary:
    """Adherence to the 2-3 sessions/week prescription in the quarter.

    Returns
    -------
    AdherenceSummary
        ``"patient_weeks"`` (ISO weeks of active episodes overlapping the quarter), ``"weeks_met"`` (those
        with at least the prescribed whole number of completed sessions), ``"met_share"`` (their share),
        ``"mean_ratio"``
        (mean of completed / prescribed per patient-week), ``"by_program_week"`` (frame ``program_week,
        mean, q25, q75, n``: completed sessions per patient-week by week of the program) and
        ``"episode_ratio"`` (per-episode adherence ratio of the episodes ended in the quarter).
    """
    q, t = _active(inputs, quarter)
    cfg = inputs.config
    weekly = weekly_adherence(t["episodes"], t["sessions"], cfg, data_cut=q.end)
    in_q = weekly.filter(
        (pl.col("week_start") <= q.end) & (pl.col("week_start") >= q.start - timedelta(days=6))
    ).join(t["episodes"].select("episode_id", "start_date"), on="episode_id")
    in_q = in_q.with_columns(
        ((pl.col("week_start") - pl.col("start_date")).dt.total_days() // 7 + 1)
        .cast(pl.Int32)
        .alias("program_week"),
        (pl.col("completed") * 7.0 / pl.col("days_in_window")).alias("per_week"),
    )
    by_week = (
        in_q.filter(pl.col("days_in_window") == 7)
        .group_by("program_week")
        .agg(
            pl.col("completed").mean().alias("mean"),
            pl.col("completed").quantile(0.25, "linear").alias("q25"),
            pl.col("completed").quantile(0.75, "linear").alias("q75"),
            pl.len().cast(pl.Int64).alias("n"),
        )
        .sort("program_week")
    )
    ended = t["episodes"].filter(_episode_sets(t["episodes"], q)["ended"]).select("episode_id")
    per_episode = inputs.derived(q).episode_summary.join(ended, on="episode_id")
    return {
        "patient_weeks": in_q.height,
        "weeks_met": int(in_q["met"].sum()) if in_q.height else 0,
        "met_share": _mean(in_q["met"]),
        "mean_ratio": _mean(in_q["ratio"]),
        "by_program_week": by_week,
        "episode_ratio": per_episode.select("episode_id", "adherence", "longest_gap_days", "dropout"),
    }


def safety_summary(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> SafetySummary:
    """Red-flag alerts, flares and pain-response categories for the quarter.

    Returns
    -------
    SafetySummary
        ``"open_unactioned"`` (red-flag alerts dated up to the end of the quarter with no action recorded,
        whatever their date: frame with ``weeks_open`` instead of dates), ``"alerts_by_flag"`` (counts of
        red-flag alerts dated in the quarter by flag, and of sustained-distal-spread signals),
        ``"completed_sessions"``, ``"flares"``, ``"flare_rate_per_100"``, ``"spikes"``,
        ``"settle_unknown"`` and ``"pain_bands"`` (completed sessions of the quarter by pain-monitoring
        band code, in the order of :data:`PAIN_BANDS`: safe, acceptable, high risk).
    """
    q, t = _active(inputs, quarter)
    cfg = inputs.config
    alerts = inputs.derived(q).alerts
    date_col = "alert_on" if "alert_on" in alerts.columns else "date"
    red = alerts.filter(pl.col("kind") == "red_flag")
    open_unactioned = red.filter(pl.col("unactioned").fill_null(False)).with_columns(
        ((pl.lit(q.end) - pl.col(date_col)).dt.total_days() // 7).alias("weeks_open")
    )
    in_q = alerts.filter(pl.col(date_col).is_between(q.start, q.end))
    by_flag = (
        in_q.with_columns(
            pl.when(pl.col("kind") == "red_flag")
            .then(pl.col("flags"))
            .otherwise(pl.lit("sustained distal spread (review)"))
            .str.split(";")
            .alias("flag")
        )
        .explode("flag")
        .group_by("flag")
        .agg(pl.len().cast(pl.Int64).alias("alerts"))
        .sort("flag")
    )
    sessions = t["sessions"].filter(pl.col("session_date").is_between(q.start, q.end))
    exercises = t["session_exercises"].join(sessions.select("session_id"), on="session_id")
    pain = session_pain(sessions, exercises, cfg)
    completed = pain.height
    bands = (
        pain.group_by("pain_band")
        .agg(pl.len().cast(pl.Int64).alias("sessions"))
        .sort(pl.col("pain_band").replace_strict(_PAIN_RANK, default=len(_PAIN_RANK), return_dtype=pl.Int64))
        .rename({"pain_band": "band"})
    )
    flares = int(pain["flare"].sum()) if completed else 0
    return {
        "open_unactioned": open_unactioned.select("weeks_open", "flags", "kind").sort(
            "weeks_open", descending=True
        ),
        "alerts_by_flag": by_flag,
        "completed_sessions": completed,
        "flares": flares,
        "flare_rate_per_100": 100.0 * flares / completed if completed else None,
        "spikes": int(pain["spike"].sum()) if completed else 0,
        "settle_unknown": int(pain["settle_unknown"].sum()) if completed else 0,
        "pain_bands": bands,
    }


#: The pain-monitoring bands of ``derive.session_pain`` in order, safe first (Thomee 1997).
PAIN_BANDS: tuple[str, ...] = ("safe", "acceptable", "high_risk")
_PAIN_RANK = {band: i for i, band in enumerate(PAIN_BANDS)}


def pain_band_labels(config: ClinicalConfig) -> dict[str, str]:
    """Display labels of the pain-monitoring bands with their ranges: ``{"safe": "safe (0-2)", ...}``.

    Words from the label catalog, ranges from ``ClinicalConfig.pain_safe_max`` and ``pain_acceptable_max``
    (activity pain is the highest of the pain during and after the session, 0-10).
    """
    words = label_map("pain_band")
    lo, hi = config.pain_safe_max, config.pain_acceptable_max
    ranges = {"safe": f"0-{lo:g}", "acceptable": f"above {lo:g} up to {hi:g}", "high_risk": f"above {hi:g}"}
    return {band: f"{words[band]} ({ranges[band]})" for band in PAIN_BANDS}


def band_shares(
    bands: pl.DataFrame, count_col: str = "sessions", rule: SuppressionRule = NETWORK_RULE
) -> pl.DataFrame:
    """Shares of a count breakdown that a figure may draw when the total is printed beside it.

    The counts go through :func:`~sciatica_outcomes.reports.privacy.suppress_counts` first (1-10, and the
    complementary cells that would let one be worked out from the total): a share times the printed total is
    the count, so a withheld count gets no share (null) and its label says so.

    Returns
    -------
    polars.DataFrame
        ``band`` (label, `` (withheld)`` appended where suppressed) and ``share`` (percent of the total, null
        where withheld).
    """
    total = int(bands[count_col].sum()) if bands.height else 0
    if total == 0:
        return pl.DataFrame(schema={"band": pl.String, "share": pl.Float64})
    withheld = suppress_counts(bands, [count_col], rule=rule)[count_col] == SUPPRESSED
    return bands.select(
        pl.when(withheld).then(pl.col("band") + " (withheld)").otherwise(pl.col("band")).alias("band"),
        pl.when(withheld).then(None).otherwise(100.0 * pl.col(count_col) / total).alias("share"),
    )


#: Outcomes of the quarterly report, with labels and units.
REPORT_OUTCOMES: dict[str, tuple[str, str]] = {
    "walk_tolerance_min": ("Walking tolerance", "minutes"),
    "sit_tolerance_min": ("Sitting tolerance", "minutes"),
    "nprs_leg": ("Leg pain", "NPRS 0-10"),
    "odi": ("Disability (ODI)", "% 0-100"),
}


def end_of_episode_outcomes(inputs: QuarterlyInputs, quarter: Quarter | None = None) -> pl.DataFrame:
    """Change from baseline to the last assessment of each episode that ended in the quarter.

    Returns
    -------
    polars.DataFrame
        One row per outcome: ``outcome, n_baseline, n_with_end, mean_change, median_change, responders_mcid,
        responders_30pct, at_cap_end`` where responders count episodes whose improvement from baseline
        reached the absolute MCID / 30 % (null where the outcome has no threshold), and ``at_cap_end`` counts
        end tests stopped at their cap (their change is a lower bound). Counts are raw: suppress before
        showing. Baseline, change, responder flags and censoring are the derive stage's (long outcomes frame).
    """
    q, t = _active(inputs, quarter)
    ended = t["episodes"].filter(_episode_sets(t["episodes"], q)["ended"])
    scored = (
        inputs.derived(q)
        .outcomes.filter(pl.col("measure").is_in(list(REPORT_OUTCOMES)))
        .join(ended.select("episode_id"), on="episode_id")
    )
    last = (
        scored.filter(pl.col("day") > inputs.config.baseline_after_days)
        .sort("assessed_on")
        .group_by("episode_id", "measure")
        .agg(pl.all().last())
    )
    with_base = (
        scored.filter(pl.col("visit") == "w0")
        .group_by("measure")
        .agg(pl.col("episode_id").n_unique().cast(pl.Int64).alias("n_baseline"))
    )
    summary = (
        last.filter(pl.col("change").is_not_null())
        .group_by("measure")
        .agg(
            pl.len().cast(pl.Int64).alias("n_with_end"),
            pl.col("change").mean().alias("mean_change"),
            pl.col("change").median().alias("median_change"),
            pl.col("responder_mcid").sum().cast(pl.Int64).alias("responders_mcid"),
            pl.col("responder_relative").sum().cast(pl.Int64).alias("responders_30pct"),
            pl.col("responder_mcid").is_not_null().any().alias("_has_mcid"),
            pl.col("responder_relative").is_not_null().any().alias("_has_rel"),
            pl.col("censored").sum().cast(pl.Int64).alias("at_cap_end"),
        )
    )
    base = pl.DataFrame({"measure": list(REPORT_OUTCOMES)})
    out = base.join(with_base, on="measure", how="left").join(summary, on="measure", how="left")
    return (
        out.with_columns(
            pl.when(pl.col("_has_mcid")).then(pl.col("responders_mcid")).alias("responders_mcid"),
            pl.when(pl.col("_has_rel")).then(pl.col("responders_30pct")).alias("responders_30pct"),
            pl.col("n_baseline", "n_with_end").fill_null(0),
        )
        .drop("_has_mcid", "_has_rel")
        .rename({"measure": "outcome"})
    )


def trend(inputs: QuarterlyInputs, n_previous: int = 4) -> pl.DataFrame:
    """Headline figures for this quarter and the ``n_previous`` quarters before it (same definitions).

    Returns
    -------
    polars.DataFrame
        One row per quarter (oldest first): ``quarter, active, enrolled, ended, completed, patient_weeks,
        weeks_met, adherence_met_share, completed_sessions, flares, flare_rate_per_100, odi_end_n,
        odi_responders, sessions_recorded`` (whether any session is dated in the quarter: without one,
        adherence and flares are not recorded, not zero) with raw counts (show a share or a rate only when
        its counts may be shown: ``safe_percent``, ``safe_rate``), plus ``active_shown, enrolled_shown,
        ended_shown, completed_shown``: the flow counts as each quarter's flow table shows them
        (:func:`published_flow`), so that the trend withholds exactly what that quarter's flow table
        withholds, across the published set (suppressing the
        trend's columns on their own would let one table give away what the other hides).
    """
    rows = []
    for k in range(n_previous, -1, -1):
        qk = inputs.quarter.shift(-k)
        flow_frame = patient_flow(inputs, qk)
        flow = dict(flow_frame.iter_rows())
        shown = published_flow(inputs, qk)
        adh = adherence_summary(inputs, qk)
        safe = safety_summary(inputs, qk)
        outc = end_of_episode_outcomes(inputs, qk).filter(pl.col("outcome") == "odi")
        sessions = inputs.history["sessions"]
        recorded = sessions.filter(pl.col("session_date").is_between(qk.start, qk.end)).height > 0
        rows.append(
            {
                "quarter": qk.label,
                "active": flow["active in quarter"],
                "enrolled": flow["enrolled in quarter"],
                "ended": sum(v for s, v in flow.items() if s.startswith("ended:")),
                "completed": flow["ended: completed"],
                "patient_weeks": adh["patient_weeks"],
                "weeks_met": adh["weeks_met"],
                "adherence_met_share": adh["met_share"],
                "completed_sessions": safe["completed_sessions"],
                "flares": safe["flares"],
                "flare_rate_per_100": safe["flare_rate_per_100"],
                "odi_end_n": int(outc["n_with_end"][0] or 0),
                "odi_responders": int(outc["responders_mcid"][0] or 0),
                "active_shown": shown["active in quarter"],
                "enrolled_shown": shown["enrolled in quarter"],
                "ended_shown": shown["ended"],
                "completed_shown": shown["ended: completed"],
                "sessions_recorded": recorded,
            }
        )
    return pl.DataFrame(rows)


#: Interior knots (weeks) of the growth model's natural cubic spline: improvement can be fast early and level
#: off (the shape the cohort analysis' model comparison favours). A knot is used only where the rule of
#: :func:`estimable_week` leaves enough follow-up beyond it (:func:`growth_time`).
GROWTH_KNOTS: tuple[float, ...] = (6.0, 12.0)
#: Growth-model time shape when the data reach beyond both knots.
GROWTH_TIME = "ns(week, knots = c(6, 12))"
#: Random part per episode: intercept and linear week slope.
GROWTH_RANDOM = "(week | episode_id)"


def growth_time(estimable: float) -> str:
    """The growth model's time shape for data followed up to week ``estimable``.

    A natural spline needs its interior knots strictly inside the range of the data and data beyond each
    knot to estimate the slope after it; a knot of :data:`GROWTH_KNOTS` is kept only when it lies before
    ``estimable`` (so at least ``ClinicalConfig.min_episodes_followed`` episodes are observed beyond it).
    With no knot left the shape is a straight line in ``week``.

    Parameters
    ----------
    estimable : float
        The latest estimable week (:func:`estimable_week`).

    Returns
    -------
    str
        ``"ns(week, knots = c(6, 12))"``, ``"ns(week, knots = c(6))"`` or ``"week"``.
    """
    knots = [k for k in GROWTH_KNOTS if k < estimable]
    if not knots:
        return "week"
    return f"ns(week, knots = c({', '.join(f'{k:g}' for k in knots)}))"


def estimable_week(weeks: pl.DataFrame, min_episodes: int) -> float | None:
    """The latest week at or beyond which at least ``min_episodes`` episodes have an assessment.

    Parameters
    ----------
    weeks : polars.DataFrame
        ``episode_id, week``: the assessments of one outcome.
    min_episodes : int
        ``ClinicalConfig.min_episodes_followed``.

    Returns
    -------
    float or None
        The ``min_episodes``-th largest of the episodes' last assessment weeks (every week up to it has at
        least ``min_episodes`` episodes observed at or beyond it, the next one has fewer); ``None`` when
        fewer than ``min_episodes`` episodes have the outcome at all.
    """
    last = weeks.group_by("episode_id").agg(pl.col("week").max())["week"].sort(descending=True)
    if last.len() < min_episodes:
        return None
    value = last[min_episodes - 1]
    return float(value)


def outcome_bounds(inputs: QuarterlyInputs) -> dict[str, tuple[float | None, float | None]]:
    """The range of each report outcome, within which model-based curves are drawn.

    Lower and upper bounds come from the measure catalog (``min``, ``max``: ODI 0-100, NPRS 0-10); a capped
    tolerance test has no catalog maximum, its upper bound is the largest ``cap_min`` recorded for it (no
    test can last longer than its cap), or none when no cap is recorded.

    Returns
    -------
    dict
        ``{outcome: (lower, upper)}``, ``None`` where unbounded.
    """
    cat = measure_catalog().filter(pl.col("code").is_in(list(REPORT_OUTCOMES)))
    caps = (
        inputs.tables["measures"]
        .filter(pl.col("cap_min").is_not_null())
        .group_by("measure")
        .agg(pl.col("cap_min").max())
        if "cap_min" in inputs.tables["measures"].columns
        else pl.DataFrame(schema={"measure": pl.String, "cap_min": pl.Float64})
    )
    cap = dict(caps.iter_rows())
    out: dict[str, tuple[float | None, float | None]] = {}
    for code, lo, hi in cat.select("code", "min", "max").iter_rows():
        upper = hi if hi is not None else cap.get(code)
        out[code] = (
            None if lo is None else float(lo),
            None if upper is None else float(upper),
        )
    return out


def clip_to_range(
    trajectory: pl.DataFrame, bounds: tuple[float | None, float | None]
) -> tuple[pl.DataFrame, bool]:
    """Cut a drawn curve and its band at the ends of the outcome's range.

    Parameters
    ----------
    trajectory : polars.DataFrame
        ``week, estimate, ci_low, ci_high``.
    bounds : tuple of float or None
        Lower and upper end of the range (:func:`outcome_bounds`; ``None``: unbounded).

    Returns
    -------
    tuple of (polars.DataFrame, bool)
        The clipped frame and whether any value was outside the range (the report then says so).
    """
    cols = ("estimate", "ci_low", "ci_high")
    lo, hi = bounds
    clipped = trajectory.with_columns(pl.col(*cols).clip(lo, hi))
    return clipped, not trajectory.select(cols).equals(clipped.select(cols))


@dataclass(frozen=True)
class OutcomeModel:
    """A fitted growth model of one outcome with what the report shows of it.

    ``trajectory`` stops at ``estimable_week`` (or ``horizon``) and is clipped to ``bounds`` (``clipped``
    says whether anything was); ``changes`` has one row per requested week, with null estimates and a
    ``note`` for the weeks beyond ``estimable_week``. ``observed`` has the mean and the median per two-week
    bin (a censored model's median curve is drawn against the observed medians, which are the uncapped
    medians while fewer than half of a bin's tests are at the cap).
    """

    outcome: str
    formula: str
    n_obs: int
    n_episodes: int
    trajectory: pl.DataFrame
    observed: pl.DataFrame
    changes: pl.DataFrame
    spec: ModelSpec
    estimable_week: float = 0.0
    bounds: tuple[float | None, float | None] = (None, None)
    clipped: bool = False
    #: ``"growth model"`` or, for a capped tolerance test, ``"censored growth model"``: then the trajectory
    #: and the changes are the median minutes (censored model), ``exp`` of the latent mean of log minutes
    method: str = "growth model"
    #: fitted rows stopped at the cap (a censored growth model's data, kept as data for the report)
    n_at_cap: int = 0


#: tolerance tests stopped at a time cap: fitted by the censored growth model on log minutes
CAPPED_OUTCOMES: tuple[str, ...] = ("walk_tolerance_min", "sit_tolerance_min")
#: Gauss-Hermite nodes per random effect of the report's censored growth models
CENSORED_NAGQ = 5


def censored_outcome_fit(
    m: pl.DataFrame,
    outcome: str,
    time_shape: str,
    several: bool,
    grid: pl.DataFrame,
    weeks: tuple[float, ...],
) -> tuple[CensoredGrowthModel, pl.DataFrame, pl.DataFrame]:
    """The censored growth model of a capped tolerance test: trajectory and changes in median minutes.

    Model: ``log(y) ~ time_shape [+ clinic_id] + (week | episode_id)`` with the rows whose
    ``<outcome>_censored`` is true right-censored at their (capped) value, by maximum likelihood (adaptive
    Gauss-Hermite quadrature, :data:`CENSORED_NAGQ` nodes); with several clinics the clinic is a fixed
    effect (the censored model fits one random level), and the means average the clinics with equal weights.
    On the log scale the latent mean is the mean log minutes of a test without a cap, so ``exp`` of it is the
    median minutes (censored model).

    Parameters
    ----------
    m : polars.DataFrame
        The outcome's rows with ``week``, ``episode_id``, ``<outcome>_censored`` (and ``clinic_id``).
    outcome : str
        The tolerance measure (minutes, > 0).
    time_shape : str
        :func:`growth_time` of the estimable week.
    several : bool
        Whether the rows come from several clinics.
    grid : polars.DataFrame
        ``week`` values of the trajectory.
    weeks : tuple of float
        Weeks of the changes from week 0.

    Returns
    -------
    model : CensoredGrowthModel
    trajectory : polars.DataFrame
        ``week, estimate, ci_low, ci_high``: median minutes (censored model) with the 95 % interval (``exp``
        of the Wald interval of the latent mean).
    changes : polars.DataFrame
        ``estimate, se, df, ci_low, ci_high, p`` per week of ``weeks``: the change in median minutes from week
        0 (delta method; ``df`` infinite, Wald z).
    """
    formula = f"log({outcome}) ~ {time_shape}" + (" + clinic_id" if several else "") + f" + {GROWTH_RANDOM}"
    model = CensoredGrowthModel(formula, censored=f"{outcome}_censored", nagq=CENSORED_NAGQ).fit(m)
    vcov = model.vcov_
    z = 1.959963984540054

    def latent(at_weeks: list[float]) -> tuple[np.ndarray, np.ndarray]:
        em = model.emmeans("week", at={"week": at_weeks})
        return np.asarray(em.weights, dtype=np.float64), em.means["emmean"].to_numpy()

    w_grid, mean = latent(grid["week"].to_list())
    se = np.sqrt(np.einsum("gi,ij,gj->g", w_grid, vcov, w_grid))
    trajectory = grid.with_columns(
        pl.Series("estimate", np.exp(mean)),
        pl.Series("ci_low", np.exp(mean - z * se)),
        pl.Series("ci_high", np.exp(mean + z * se)),
    )
    w_ch, a = latent([0.0, *weeks])
    return model, trajectory, median_changes(w_ch, a, vcov)


def median_changes(weights: np.ndarray, log_means: np.ndarray, vcov: np.ndarray) -> pl.DataFrame:
    """Changes of median minutes from the first grid row, ``exp(l_w' beta) - exp(l_0' beta)``, delta method.

    Parameters
    ----------
    weights : numpy.ndarray
        ``(1 + k, p)`` contrast rows of the log-scale means (the first is week 0).
    log_means : numpy.ndarray
        ``weights @ beta``.
    vcov : numpy.ndarray
        Covariance of ``beta``.

    Returns
    -------
    polars.DataFrame
        ``estimate, se, df, ci_low, ci_high, p`` per later row (Wald z, ``df`` infinite).
    """
    from scipy import stats  # noqa: PLC0415 - the report module stays import-light

    a = log_means
    est = np.exp(a[1:]) - np.exp(a[0])
    grad = np.exp(a[1:])[:, None] * weights[1:] - np.exp(a[0]) * weights[0][None, :]
    se = np.sqrt(np.einsum("gi,ij,gj->g", grad, vcov, grad))
    z = float(stats.norm.ppf(0.975))
    return pl.DataFrame(
        {
            "estimate": est,
            "se": se,
            "df": np.full(est.size, np.inf),
            "ci_low": est - z * se,
            "ci_high": est + z * se,
            "p": 2.0 * stats.norm.sf(np.abs(est / se)),
        }
    )


def outcome_models(
    inputs: QuarterlyInputs, weeks: tuple[float, ...] = (6.0, 12.0, 26.0), horizon: float = 26.0
) -> dict[str, OutcomeModel]:
    """Fit the report's growth model to every outcome using all assessments up to the end of the quarter.

    Model (lme4 notation): ``y ~ ns(week, knots = c(6, 12)) + (week | episode_id)``, plus
    ``(1 | clinic_id)`` when the report covers several clinics; REML; week = days since start / 7, baseline
    assessments before the start at week 0. Model-based estimates are shown only up to the latest week with
    at least ``ClinicalConfig.min_episodes_followed`` episodes observed at or beyond it
    (:func:`estimable_week`); knots not before that week are dropped (:func:`growth_time`), so early data
    get a simpler shape instead of a spline the data cannot support. Returns, per outcome, the population
    trajectory over ``0..min(horizon, estimable week)`` with 95 % CIs, clipped to the outcome's range
    (:func:`outcome_bounds`), the observed means by two-week bin (with their n), and the estimated change
    from week 0 to each of ``weeks`` (``L beta`` contrasts with Satterthwaite df; null with a ``note`` beyond
    the estimable week). Outcomes with fewer such episodes, or with none followed beyond week 0, are left
    out. The rows are the derive stage's analysis frame (every assessment with the outcome, recorded or
    scored from items). Capped tolerance tests (:data:`CAPPED_OUTCOMES`, with the frame's ``<m>_censored``)
    are fitted by the censored growth model (:func:`censored_outcome_fit`): a test stopped at its cap is a
    lower bound, not a value (a test with no recorded stop reason counts as exact), and the trajectory is the
    median minutes (censored model), bounded below only; the count of tests at the cap is kept
    (``n_at_cap``).
    """
    several = inputs.tables["episodes"]["clinic_id"].n_unique() > 1
    frame = inputs.derived().analysis_frame
    n_min = inputs.config.min_episodes_followed
    bounds = outcome_bounds(inputs)
    out: dict[str, OutcomeModel] = {}
    for outcome in REPORT_OUTCOMES:
        if outcome not in frame.columns:
            continue
        m = frame.filter(pl.col(outcome).is_not_null()).with_columns(
            (pl.col("day").clip(lower_bound=0) / 7.0).alias("week")
        )
        reach = estimable_week(m.select("episode_id", "week"), n_min)
        if reach is None or reach <= 0:
            continue  # the report says: not yet estimable
        top = min(horizon, reach)
        grid = pl.DataFrame({"week": [*(w / 2 for w in range(int(top * 2) + 1) if w / 2 < top), top]})
        lo, hi = bounds.get(outcome, (None, None))
        censored = outcome in CAPPED_OUTCOMES and f"{outcome}_censored" in m.columns
        fitted: GrowthModel | CensoredGrowthModel
        if censored:
            # a test without a recorded stopped_reason is taken as exact (the derive stage's flag is null)
            m = m.with_columns(pl.col(f"{outcome}_censored").fill_null(False))
            fitted, raw, contrasts = censored_outcome_fit(
                m, outcome, growth_time(reach), several, grid, weeks
            )
            formula = fitted.formula
            hi = None  # the latent tolerance has no cap
        else:
            formula = f"{outcome} ~ {growth_time(reach)} + {GROWTH_RANDOM}"
            if several:
                formula += " + (1 | clinic_id)"
            model = GrowthModel(formula).fit(m)
            fitted = model
            raw = model.predict(grid).select("week", pl.col("fit").alias("estimate"), "ci_low", "ci_high")
            x = model.design_.matrix(pl.DataFrame({"week": [0.0, *weeks]}))
            contrasts = model.contrast(x[1:] - x[0])
        traj, clipped = clip_to_range(raw, (lo, hi))
        observed = (
            m.with_columns(((pl.col("week") / 2).round(0) * 2).alias("bin"))
            .group_by("bin")
            .agg(
                pl.col(outcome).mean().alias("mean"),
                pl.col(outcome).median().alias("median"),
                pl.len().cast(pl.Int64).alias("n"),
            )
            .rename({"bin": "week"})
            .filter(pl.col("week") <= horizon)
            .sort("week")
        )
        ok = pl.col("week") <= reach
        changes = contrasts.with_columns(pl.Series("week", list(weeks))).select(
            "week",
            *(
                pl.when(ok).then(pl.col(c)).alias(c)
                for c in ("estimate", "se", "df", "ci_low", "ci_high", "p")
            ),
            pl.when(ok)
            .then(pl.lit(None, pl.String))
            .otherwise(
                pl.format(
                    "not yet estimable (fewer than {} episodes followed to week {})",
                    pl.lit(n_min),
                    pl.col("week").round(0).cast(pl.Int64),
                )
            )
            .alias("note"),
        )
        method = "censored growth model" if censored else "growth model"
        spec: ModelSpec = {
            "purpose": method,
            "outcome": outcome,
            "formula": formula,
            "reml": not censored,
            "n_obs": m.height,
            "n_episodes": m["episode_id"].n_unique(),
            "converged": fitted.result_.diagnostics.converged,
            "diagnostics": fitted.result_.diagnostics.to_dict(),
        }
        out[outcome] = OutcomeModel(
            outcome,
            formula,
            m.height,
            spec["n_episodes"],
            traj,
            observed,
            changes,
            spec,
            estimable_week=reach,
            bounds=(lo, hi),
            clipped=clipped,
            method=method,
            n_at_cap=int(m[f"{outcome}_censored"].sum()) if censored else 0,
        )
    return out


def dose_progression(inputs: QuarterlyInputs) -> DoseProgression:
    """Training dose by muscle group and load progression of the episodes active in the quarter.

    Returns
    -------
    DoseProgression
        ``"by_muscle_group"``: ``muscle_group, episodes, mean_weekly_reps, mean_weekly_volume_kg,
        mean_weekly_tut_s`` over the patient-weeks in the quarter; ``"progression"``: counts of active
        episodes with at least one progression, mean weeks between progressions, behind the 1-2 week
        guideline, and stalled while tolerating the load (``n_*`` keys; raw counts, suppress before showing).
    """
    q, t = _active(inputs, None)
    dose = weekly_dose(t["episodes"], t["sessions"], t["session_exercises"]).join(
        t["episodes"].select("episode_id", "start_date"), on="episode_id"
    )
    week_start = pl.col("start_date") + pl.duration(days=7 * pl.col("program_week"))
    in_q = dose.filter((week_start >= q.start - timedelta(days=6)) & (week_start <= q.end))
    by_group = (
        in_q.group_by("muscle_group")
        .agg(
            pl.col("episode_id").n_unique().cast(pl.Int64).alias("episodes"),
            pl.col("reps_total").mean().alias("mean_weekly_reps"),
            pl.col("volume_load_kg").mean().alias("mean_weekly_volume_kg"),
            pl.col("tut_s").mean().alias("mean_weekly_tut_s"),
        )
        .sort("muscle_group")
    )
    prog = inputs.derived().episode_summary.join(t["episodes"].select("episode_id"), on="episode_id")
    with_sessions = prog.filter(pl.col("n_progression_sessions").is_not_null())
    return {
        "by_muscle_group": by_group,
        "progression": {
            "n_episodes": with_sessions.height,
            "n_progressed": int((with_sessions["n_progression_sessions"] > 0).sum()),
            "mean_weeks_between": _mean(with_sessions["mean_weeks_between_progressions"]),
            "n_behind_guideline": int(with_sessions["behind_guideline"].fill_null(False).sum()),
            "n_stalled": int(with_sessions["stalled"].fill_null(False).sum()),
        },
    }


#: Outcomes whose time to a clinically important improvement the report shows (they have an MCID).
KM_OUTCOMES: dict[str, str] = {"odi": "Disability (ODI)", "nprs_leg": "Leg pain"}


def _coarse_steps(curve: pl.DataFrame, rule: SuppressionRule = NETWORK_RULE) -> pl.DataFrame:
    """Rows of a Kaplan-Meier curve at which more than 10 events (the rule's threshold; under ``internal``
    any event) have accrued since the previous kept row.

    A curve has one row per distinct event time (visit weeks here: a few dozen at most), so the greedy
    accumulation runs over those rows, not over patients.
    """
    keep = np.zeros(curve.height, dtype=bool)
    accrued = 0
    step = max(rule.high, 0) if rule.withholds else 0
    for i, events in enumerate(curve["n_events"].to_numpy()):
        accrued += int(events)
        if accrued > step:
            keep[i], accrued = True, 0
    return curve.filter(pl.Series(keep))


def time_to_improvement_summary(inputs: QuarterlyInputs) -> TimeToImprovement:
    """Kaplan-Meier time to the first visit with a clinically important improvement (absolute MCID).

    Uses every episode with a baseline and at least one follow-up visit up to the end of the quarter; an
    episode that has not reached the MCID is censored at its last follow-up visit.

    Returns
    -------
    TimeToImprovement
        ``"curves"``: ``outcome, time, share_improved, ci_low, ci_high`` (cumulative share, ``1 - S(t)``,
        the Kaplan-Meier estimate itself) at a subset of the event times chosen so that no step tells a
        count of 1-10: a point is kept once more than 10 events have accrued since the previous kept point
        (the first step is then more than 10 episodes of a shown total), and each curve stops before 10 or
        fewer episodes remain at risk (the usual rule for published survival curves);
        ``"medians"``: ``outcome, n, n_events, median_weeks, ci_low, ci_high`` (raw counts: suppress before
        showing).
    """
    curves, medians = [], []
    for outcome, label in KM_OUTCOMES.items():
        rf = responder_frame(inputs.tables, outcome, inputs.config)
        tti = time_to_improvement(rf, "mcid")
        if tti.height == 0:
            continue
        km = kaplan_meier(tti)
        curves.append(
            _coarse_steps(km.curves.filter(pl.col("n_at_risk") >= inputs.rule.min_group), inputs.rule).select(
                pl.lit(label).alias("outcome"),
                "time",
                (1 - pl.col("survival")).alias("share_improved"),
                (1 - pl.col("ci_high")).alias("ci_low"),
                (1 - pl.col("ci_low")).alias("ci_high"),
            )
        )
        medians.append(
            km.medians.select(
                pl.lit(label).alias("outcome"),
                pl.col("n").cast(pl.Int64),
                pl.col("n_events").cast(pl.Int64),
                pl.col("median").alias("median_weeks"),
                "ci_low",
                "ci_high",
            )
        )
    empty_c = pl.DataFrame(
        schema={
            "outcome": pl.String,
            "time": pl.Float64,
            "share_improved": pl.Float64,
            "ci_low": pl.Float64,
            "ci_high": pl.Float64,
        }
    )
    return {
        "curves": pl.concat(curves) if curves else empty_c,
        "medians": pl.concat(medians) if medians else pl.DataFrame(),
    }


def provider_comparison(
    inputs: QuarterlyInputs, outcome: str = "odi", visit: str = "w12"
) -> ProviderView | None:
    """Risk-adjusted comparison of clinics (all-clinic report) or of therapists (one-clinic report).

    Improvement in ``outcome`` at ``visit`` (12 weeks by default) is compared with what each episode's case
    mix predicts (:func:`sciatica_outcomes.models.compare.compare_providers`); therapists are shown under
    neutral labels (``therapist 1`` = the largest caseload), never by their codes.

    Returns
    -------
    ProviderView or None
        ``"level"`` (clinic or therapist), ``"providers"`` (``unit, n, o_minus_e, band, shrunken,
        shrunken_low, shrunken_high`` as the audience may see them, :func:`withhold_units`: ``n`` is text,
        ``*`` where withheld, and a withheld unit has nothing else, comes after the shown ones and gets its
        label after them), ``"limits"`` (funnel limits over volumes), ``"spec"`` (case-mix formula, SDs,
        rows used; the row counts withheld when a unit is); None when fewer than two units have an
        outcome, too few episodes support the case-mix model, or every unit's count is withheld.
    """
    level = "therapist_id" if inputs.clinic else "clinic_id"
    try:
        frame = episode_outcomes(inputs.tables, outcome, visit=visit, config=inputs.config)
    except UnusableInputError:
        return None  # no assessment at that visit yet: the report says so
    frame = frame.filter(~pl.col("censored").fill_null(False))
    if frame.height == 0 or frame[level].n_unique() < 2:
        return None
    try:
        result = compare_providers(frame, level=level)
    except (UnusableInputError, ModelSpecificationError):
        # too few episodes for the case-mix model, or a case-mix factor with one level among them (e.g.
        # one sex only): the report says that no comparison can be made
        return None
    rule = inputs.rule
    # nothing of a unit whose n is withheld: no interval (its width gives n), no band, no estimate, and a
    # place after the shown units (by code, not by size); the units withheld are those compare-clinics and
    # responders --by withhold from the same data (reports.units), so that no output gives another's away
    prov = withhold_comparison(
        result.providers.sort("n", descending=True).select(
            pl.col("provider").cast(pl.String),
            pl.col("n").cast(pl.Int64),
            "o_minus_e",
            "band",
            "shrunken",
            "shrunken_low",
            "shrunken_high",
        ),
        inputs.tables,
        outcome,
        level,
        rule,
        config=inputs.config,
    )
    withheld = prov["n"] == SUPPRESSED
    if withheld.all():
        return None  # no unit may be shown: the report says that no comparison can be made
    if level == "therapist_id":
        # numbered after withholding, so that a label tells no withheld therapist's place by caseload
        prov = prov.with_columns(pl.format("therapist {}", pl.int_range(1, pl.len() + 1)).alias("unit"))
    else:
        prov = prov.with_columns(pl.col("provider").alias("unit"))
    diagnostics = dict(result.diagnostics)
    if withheld.any():
        # the model's row counts are the units' total: withheld with the units' counts
        diagnostics.update({k: SUPPRESSED for k in diagnostics if k.startswith(("rows_", "dropped_"))})
    # the grid ends at a round volume above the largest unit, so that its end does not tell that count
    largest = result.providers["n"].max()
    n_max = max(int(largest) if isinstance(largest, int | float) else 0, 20)
    n_max = 50 * (n_max // 50 + 1)
    limits = result.funnel_limits([float(v) for v in range(2, n_max + 1)])
    return {
        "level": "therapist" if level == "therapist_id" else "clinic",
        "providers": prov.select(
            "unit", "n", "o_minus_e", "band", "shrunken", "shrunken_low", "shrunken_high"
        ),
        "limits": limits,
        "spec": {
            "outcome": outcome,
            "visit": visit,
            "level": level,
            "residual_sd": result.residual_sd,
            "between_sd": result.between_sd,
            "diagnostics": diagnostics,
        },
    }
