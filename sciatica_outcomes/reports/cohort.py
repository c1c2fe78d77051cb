"""The computations behind the researcher's cohort analysis (``notebooks/cohort_analysis.ipynb``).

A publishable starting point: Table 1 by adherence group with standardized mean differences, growth-model
comparison over time shapes (linear, ``log1p``, natural spline, piecewise linear; ML fits compared by AIC,
BIC and likelihood-ratio tests where nested), the fixed effects of the chosen model with Satterthwaite df,
dose-response (adherence x time), marginal means at chosen weeks, and a completers-only sensitivity analysis.
Tables are written as CSV and as LaTeX (booktabs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import Derived, derive_all
from sciatica_outcomes.errors import ReportParameterError
from sciatica_outcomes.models.censored import CensoredGrowthModel
from sciatica_outcomes.models.lmm import GrowthModel, likelihood_ratio_test
from sciatica_outcomes.reports.display import to_latex
from sciatica_outcomes.reports.privacy import HIGH, SUPPRESSED, SuppressionRule, rule_for, suppress_table
from sciatica_outcomes.reports.quarterly import (
    GROWTH_RANDOM,
    MIN_ACTIVE_EPISODES,
    censored_outcome_fit,
    median_changes,
)
from sciatica_outcomes.reports.work import (
    MINOR_WORK_STATUSES,
    ReturnToWork,
    return_to_work_summary,
    shares_for_audience,
)
from sciatica_outcomes.schemas.catalogs import label_map
from sciatica_outcomes.schemas.vocabulary import MINOR_EMPLOYMENT_STATUSES, OFF_WORK_BACK_LEG

if TYPE_CHECKING:
    from sciatica_outcomes.models.work import WorkStatusModel

__all__ = [
    "ADHERENCE_CUT",
    "AT_RISK_WEEKS",
    "DB_ENV",
    "MISSING_CATEGORIES",
    "REPORTS_ENV",
    "TABLE_ONE_MERGES",
    "TIME_SHAPES",
    "TRAJECTORY_SAMPLE",
    "VECTOR_FORMATS",
    "WAS_TIME",
    "WORK_BASELINE_COLUMNS",
    "CohortData",
    "ModelDiagnostics",
    "ReturnToWorkAnalysis",
    "WorkStatusAnalysis",
    "clinic_count",
    "compare_time_shapes",
    "follow_up_flow",
    "growth_formula",
    "load_cohort",
    "minimum_episodes",
    "missing_data",
    "missing_data_display",
    "model_caption",
    "model_diagnostics",
    "model_frame",
    "model_record",
    "notebook_paths",
    "observed_bins",
    "qq_points",
    "report_rule",
    "return_to_work_analysis",
    "save_vector_figure",
    "sensitivity_display",
    "shown_count",
    "shown_part",
    "small_groups",
    "smd",
    "table_one",
    "to_latex",
    "trajectory_sample",
    "was_growth",
    "work_status_analysis",
]

#: Default adherence ratio separating the "high" and "low" adherence groups (completed / prescribed
#: sessions); the configured value is ``ClinicalConfig.adherence_high_min``.
ADHERENCE_CUT = ClinicalConfig().adherence_high_min

#: Time shapes compared by :func:`compare_time_shapes` (fixed part; random part ``(week | episode_id)``).
TIME_SHAPES: dict[str, str] = {
    "linear": "week",
    "log1p": "log1p(week)",
    "natural spline (knots 6, 12)": "ns(week, knots = c(6, 12))",
    "piecewise linear (hinge 12)": "week + pmax(week - 12, 0)",
}


#: Most individual trajectories drawn (internal audience only).
TRAJECTORY_SAMPLE = 40


def report_rule(audience: str, threshold: int | None = None) -> SuppressionRule:
    """The suppression rule of the cohort report's audience, with user errors as ``ReportParameterError``.

    Parameters
    ----------
    audience : {"internal", "network", "public"}
        Who reads the report (``--audience``).
    threshold : int, optional
        Largest withheld count for ``network``/``public`` (``--suppress-threshold``; default 10).

    Returns
    -------
    SuppressionRule
        :func:`~sciatica_outcomes.reports.privacy.rule_for` of the audience.

    Raises
    ------
    ReportParameterError
        An unknown audience, a threshold below 1, or a threshold given with ``internal``.
    """
    if audience not in ("internal", "network", "public"):
        raise ReportParameterError(
            f"unknown audience {audience!r}: give --audience internal, network or public"
        )
    if audience == "internal" and threshold is not None:
        raise ReportParameterError(
            "--suppress-threshold applies to the network and public audiences only: leave it out with "
            "--audience internal"
        )
    if threshold is not None and threshold < 1:
        raise ReportParameterError(
            f"--suppress-threshold must be 1 or more, not {threshold}: give the largest count to withhold"
        )
    return rule_for(audience, threshold)


def minimum_episodes(rule: SuppressionRule) -> int:
    """Fewest episodes with the outcome for which the cohort report is rendered.

    The quarterly report's minimum (:data:`~sciatica_outcomes.reports.quarterly.MIN_ACTIVE_EPISODES`, 11)
    for every audience, raised to ``rule.high + 1`` when the audience withholds more than 1-10: every
    statistic of a smaller cohort would describe identifiable patients.
    """
    return max(MIN_ACTIVE_EPISODES, rule.high + 1)


def shown_count(n: int, rule: SuppressionRule) -> str:
    """A count as report text under ``rule``: ``*`` when withheld, else the number with separators."""
    return SUPPRESSED if rule.is_small(n) else f"{n:,}"


#: Work columns of ``derive.work_episodes`` joined to :attr:`CohortData.episodes` (Table 1's work rows).
WORK_BASELINE_COLUMNS: tuple[str, ...] = (
    "employment_at_enrolment",
    "work_status_start",
    "wpai_work_impairment_pct_baseline",
    "wpai_activity_impairment_pct_baseline",
)


@dataclass(frozen=True)
class CohortData:
    """Analysis frame and episode summary of the cohort, with the adherence group attached.

    ``episodes`` carries the work columns of :data:`WORK_BASELINE_COLUMNS` (null without a work assessment
    at enrolment); ``return_to_work`` is the derive stage's time to return to work
    (:func:`~sciatica_outcomes.derive.return_to_work`) of those off work because of back or leg pain at
    enrolment. ``derived`` keeps every derived table (the work-status model reads the work assessments).
    """

    frame: pl.DataFrame
    episodes: pl.DataFrame
    config: ClinicalConfig
    return_to_work: pl.DataFrame = field(default_factory=pl.DataFrame)
    derived: Derived | None = field(default=None, repr=False, compare=False)


def load_cohort(db: str | Path, config: ClinicalConfig | None = None) -> CohortData:
    """Derive the analysis frame and episode summary from the store and add the adherence group.

    ``adherence_group`` is ``"high"`` when the episode's adherence ratio is at least
    ``config.adherence_high_min`` (0.8 by default) and ``"low"`` otherwise (null when no program time was
    observed).
    """
    path = Path(db)
    if not path.is_file():
        raise ReportParameterError(f"store {db} does not exist: ingest data first (sciatica-outcomes ingest)")
    cfg = config or ClinicalConfig()
    derived = derive_all(path, cfg)
    group = (
        pl.when(pl.col("adherence").is_null())
        .then(None)
        .when(pl.col("adherence") >= cfg.adherence_high_min)
        .then(pl.lit("high"))
        .otherwise(pl.lit("low"))
    )
    episodes = derived.episode_summary.with_columns(group.alias("adherence_group"))
    frame = derived.analysis_frame.join(
        episodes.select("episode_id", "adherence_group", "end_reason"), on="episode_id", how="left"
    )
    work = derived.work_episodes
    if work.width:
        episodes = episodes.join(
            work.select("episode_id", *WORK_BASELINE_COLUMNS), on="episode_id", how="left"
        )
    else:
        episodes = episodes.with_columns(pl.lit(None, pl.String).alias(c) for c in WORK_BASELINE_COLUMNS[:2])
        episodes = episodes.with_columns(pl.lit(None, pl.Float64).alias(c) for c in WORK_BASELINE_COLUMNS[2:])
    return CohortData(
        frame=frame, episodes=episodes, config=cfg, return_to_work=derived.return_to_work, derived=derived
    )


def model_frame(data: CohortData, outcome: str) -> pl.DataFrame:
    """Rows with the outcome observed; ``week`` from 0 (baseline assessments before the start count as 0)."""
    if outcome not in data.frame.columns:
        known = [c for c in data.frame.columns if f"baseline_{c}" in data.frame.columns]
        raise ReportParameterError(f"unknown outcome {outcome!r}; the analysis frame has {known}")
    return data.frame.filter(pl.col(outcome).is_not_null()).with_columns(
        pl.col("week").clip(lower_bound=0.0).alias("week")
    )


def smd(a: np.ndarray, b: np.ndarray, binary: bool = False) -> float:
    """Standardized mean difference between two groups.

    Notes
    -----
    Continuous: ``(mean_a - mean_b) / sqrt((s_a^2 + s_b^2) / 2)``; binary (proportions ``p``):
    ``(p_a - p_b) / sqrt((p_a (1 - p_a) + p_b (1 - p_b)) / 2)`` (Austin, Stat Med 2009;28:3083). Missing
    values are ignored; returns NaN when a group is empty or both variances are 0.
    """
    a = a[~np.isnan(a)]
    b = b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return math.nan
    if binary:
        pa, pb = a.mean(), b.mean()
        den = math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 2)
        return (pa - pb) / den if den > 0 else math.nan
    den = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2) if a.size > 1 and b.size > 1 else 0.0
    return (a.mean() - b.mean()) / den if den > 0 else math.nan


#: Table 1's minor work categories, merged into one level when one of them is small under the rule:
#: ``{column: (codes, label of the merged level)}``.
TABLE_ONE_MERGES: dict[str, tuple[tuple[str, ...], str]] = {
    "employment_at_enrolment": (
        MINOR_EMPLOYMENT_STATUSES,
        "Student, homemaker or other situation outside paid work",
    ),
    "work_status_start": (MINOR_WORK_STATUSES, "Off work for other reasons, or not in paid work"),
}


def table_one(
    data: CohortData, group: str = "adherence_group", rule: SuppressionRule | None = None
) -> pl.DataFrame:
    """Table 1: baseline characteristics by group with standardized mean differences.

    Counts go through ``rule`` (default: the network rule, 1-10 withheld; ``internal`` shows them exactly).
    Continuous rows show ``mean (SD)`` (withheld when a group has 10 or fewer values, or no more than the
    rule's threshold: a mean of a few patients is their row-level values); categorical rows
    ``n (%)`` per level. The counts of one characteristic form a table (levels x groups) whose group totals
    are shown, so they are suppressed together (:func:`~sciatica_outcomes.reports.privacy.suppress_table`,
    primary and complementary): a level cannot be worked out as the group size minus the others. The
    ``SMD`` column compares the two groups (first minus second in sorted order) and is withheld whenever a
    cell it is computed from is withheld (an SMD of two proportions and the group sizes gives the counts
    back). When one group has 1-10 episodes both group sizes are withheld (the total is shown elsewhere).

    Work rows (issue 17): employment and work status at enrolment (labels from the catalogs; an episode
    without a work assessment at enrolment is a level of its own for suppression, not shown), the baseline
    Work Ability Score and WPAI:SHP overall work and activity impairment (WPAI among those in paid work);
    "not recorded" in every cell when no episode has the value.
    """
    rule = rule or rule_for("network")
    stat_min = max(HIGH, rule.high)
    ep = data.episodes.filter(pl.col(group).is_not_null())
    levels = sorted(ep[group].unique().to_list())
    if len(levels) != 2:
        raise ReportParameterError(f"Table 1 compares two groups; {group!r} has {levels}")
    parts = {lv: ep.filter(pl.col(group) == lv) for lv in levels}
    sizes = [parts[lv].height for lv in levels]
    small_group = any(rule.is_small(n) for n in sizes)
    rows: list[dict[str, Any]] = []
    header = {"characteristic": "episodes, n", "SMD": ""}
    for lv, n in zip(levels, sizes, strict=True):
        header[lv] = SUPPRESSED if small_group else str(n)
    rows.append(header)
    continuous = [
        ("age, years", "age_at_start"),
        ("symptom duration, weeks", "symptom_duration_weeks"),
        ("baseline ODI, %", "baseline_odi"),
        ("baseline leg pain, 0-10", "baseline_nprs_leg"),
        ("baseline back pain, 0-10", "baseline_nprs_back"),
        ("baseline walking tolerance, min", "baseline_walk_tolerance_min"),
        ("baseline sitting tolerance, min", "baseline_sit_tolerance_min"),
        ("baseline Work Ability Score, 0-10", "baseline_was"),
        ("baseline WPAI overall work impairment, %", "wpai_work_impairment_pct_baseline"),
        ("baseline WPAI activity impairment, %", "wpai_activity_impairment_pct_baseline"),
    ]
    for label, col in continuous:
        if col not in ep.columns:
            continue
        row: dict[str, Any] = {"characteristic": label}
        if ep[col].null_count() == ep.height:
            # no value in any group (e.g. no work assessments): said, never a silent gap
            rows.append({"characteristic": label, **dict.fromkeys(levels, "not recorded"), "SMD": ""})
            continue
        arrays = {}
        for lv in levels:
            v = parts[lv][col].cast(pl.Float64).to_numpy()
            arrays[lv] = v
            ok = v[~np.isnan(v)]
            row[lv] = f"{ok.mean():.1f} ({ok.std(ddof=1):.1f})" if ok.size > stat_min else SUPPRESSED
        withheld = any(row[lv] == SUPPRESSED for lv in levels)
        row["SMD"] = SUPPRESSED if withheld else f"{smd(arrays[levels[0]], arrays[levels[1]]):.2f}"
        rows.append(row)
    categorical: list[tuple[str, str, dict[str, str] | None]] = [
        ("sex", "sex", None),
        ("affected side", "affected_side", None),
        ("employment at enrolment", "employment_at_enrolment", label_map("employment_status")),
        ("work status at enrolment", "work_status_start", label_map("work_status")),
    ]
    for label, col, catalog in categorical:
        if col not in ep.columns:
            continue
        names = catalog
        if names is not None and col in TABLE_ONE_MERGES:
            # minor categories become one level before anything is withheld (as in the quarterly report)
            codes, merged_label = TABLE_ONE_MERGES[col]
            minor = [(parts[lv][col] == c).sum() for c in codes for lv in levels]
            if rule.withholds and any(rule.is_small(int(k)) for k in minor):
                names = {**{c: v for c, v in names.items() if c not in codes}, "other_merged": merged_label}
                merge = pl.when(pl.col(col).is_in(list(codes))).then(pl.lit("other_merged"))
                parts = {
                    lv: p.with_columns(merge.otherwise(pl.col(col)).alias(col)) for lv, p in parts.items()
                }
                ep = ep.with_columns(merge.otherwise(pl.col(col)).alias(col))
        present = set(ep[col].drop_nulls().unique().to_list())
        if names is None:
            values = sorted(present)
        else:
            # catalog order, then any code outside the catalog (kept, never dropped)
            values = [c for c in names if c in present] + sorted(present - set(names))
        if not values:
            if names is not None:
                rows.append({"characteristic": label, **dict.fromkeys(levels, "not recorded"), "SMD": ""})
            continue
        flags = {lv: [(parts[lv][col] == v).fill_null(False) for v in values] for lv in levels}
        counts = np.array([[int(flags[lv][i].sum()) for lv in levels] for i in range(len(values))])
        # missing values count in the group total: they are a level of their own for suppression
        missing = np.array([[parts[lv][col].null_count() for lv in levels]])
        sup = suppress_table(np.vstack([counts, missing]), rule=rule)
        for i, value in enumerate(values):
            shown_value = value if names is None else names.get(value, value)
            row = {"characteristic": f"{label}: {shown_value}"}
            for j, lv in enumerate(levels):
                n, total = int(counts[i, j]), sizes[j]
                hidden = bool(sup.mask[i, j]) or small_group
                row[lv] = SUPPRESSED if hidden else (f"{n} ({100 * n / total:.0f}%)" if total else "-")
            if any(row[lv] == SUPPRESSED for lv in levels):
                row["SMD"] = SUPPRESSED
            else:
                a, b = (flags[lv][i].cast(pl.Float64).to_numpy() for lv in levels)
                row["SMD"] = f"{smd(a, b, binary=True):.2f}"
            rows.append(row)
    return pl.DataFrame(
        rows, schema={"characteristic": pl.String, **dict.fromkeys(levels, pl.String), "SMD": pl.String}
    )


def clinic_count(frame: pl.DataFrame) -> int:
    """Number of clinics in a frame (1 when it has no ``clinic_id``)."""
    return frame["clinic_id"].n_unique() if "clinic_id" in frame.columns else 1


def growth_formula(
    outcome: str,
    time: str,
    *,
    by: str | None = None,
    covariates: Sequence[str] = (),
    clinics: int = 1,
) -> str:
    """The cohort report's growth model in lme4 syntax, with the random part of the quarterly report.

    ``outcome ~ time [* by] [+ covariates] + (week | episode_id)``, plus ``(1 | clinic_id)`` when the
    data hold more than one clinic (episodes nested in clinics), as
    :func:`sciatica_outcomes.reports.quarterly.outcome_models`.

    Parameters
    ----------
    outcome : str
        Response column.
    time : str
        Time shape (a value of :data:`TIME_SHAPES`); parenthesised when it has several terms and interacts.
    by : str, optional
        Column interacting with the time shape (e.g. ``adherence_group``).
    covariates : sequence of str
        Further fixed terms (e.g. ``age``, ``sex``).
    clinics : int
        Number of clinics in the data.

    Returns
    -------
    str
        The formula, e.g. ``"odi ~ ns(week, knots = c(6, 12)) * adherence_group + age + sex +
        (week | episode_id) + (1 | clinic_id)"``.
    """
    shape = f"({time})" if by is not None and "+" in time else time
    fixed = [f"{shape} * {by}" if by is not None else shape, *covariates]
    random = [GROWTH_RANDOM, *(["(1 | clinic_id)"] if clinics > 1 else [])]
    return f"{outcome} ~ {' + '.join(fixed + random)}"


def censored_sensitivity(
    frame: pl.DataFrame, outcome: str, time: str, clinics: int, weeks: Sequence[float] = (6.0, 12.0, 26.0)
) -> tuple[pl.DataFrame, GrowthModel, CensoredGrowthModel]:
    """Naive vs censored growth model of a capped tolerance test, side by side (a sensitivity analysis).

    Both models are ``log(outcome) ~ time [+ clinic_id] + (week | episode_id)`` by maximum likelihood (the
    clinic a fixed effect in both, as the censored model fits one random level): the naive one takes a test
    stopped at its cap as the value (``GrowthModel``), the censored one as a lower bound
    (:func:`~sciatica_outcomes.reports.quarterly.censored_outcome_fit`). Changes from week 0 are in median
    minutes (``exp`` of the log-scale means, clinics weighted equally; delta-method intervals).

    Parameters
    ----------
    frame : polars.DataFrame
        :func:`model_frame` of a tolerance test (with ``<outcome>_censored``).
    outcome : str
        The tolerance measure.
    time : str
        Time shape (a value of :data:`TIME_SHAPES`).
    clinics : int
        Number of clinics in the data.
    weeks : sequence of float
        Weeks of the changes.

    Returns
    -------
    table : polars.DataFrame
        ``week, at_cap, n, naive_change, naive_low, naive_high, censored_change, censored_low,
        censored_high``: ``at_cap`` / ``n`` the tests at the cap among those within a week of ``week``.
    naive, censored : the two fits.

    Raises
    ------
    ReportParameterError
        The outcome has no ``<outcome>_censored`` column (not a capped test).
    """
    flag = f"{outcome}_censored"
    if flag not in frame.columns:
        raise ReportParameterError(
            f"{outcome!r} is not a capped test (the analysis frame has no {flag!r}); the naive-vs-censored "
            "comparison applies to walking and sitting tolerance"
        )
    rows = frame.with_columns(pl.col(flag).fill_null(False))  # no recorded stop reason: an exact value
    grid = pl.DataFrame({"week": [0.0]})
    censored, _, cens_changes = censored_outcome_fit(rows, outcome, time, clinics > 1, grid, tuple(weeks))
    naive = GrowthModel(censored.formula, reml=False).fit(rows)
    em = naive.emmeans("week", at={"week": [0.0, *weeks]})
    naive_changes = median_changes(
        np.asarray(em.weights, dtype=np.float64), em.means["emmean"].to_numpy(), naive.inference_.vcov_beta
    )
    near = [
        rows.filter((pl.col("week") - w).abs() <= 1.0).select(
            pl.lit(float(w)).alias("week"),
            pl.col(flag).sum().cast(pl.Int64).alias("at_cap"),
            pl.len().cast(pl.Int64).alias("n"),
        )
        for w in weeks
    ]
    table = pl.concat(
        [
            pl.concat(near),
            naive_changes.select(
                pl.col("estimate").alias("naive_change"),
                pl.col("ci_low").alias("naive_low"),
                pl.col("ci_high").alias("naive_high"),
            ),
            cens_changes.select(
                pl.col("estimate").alias("censored_change"),
                pl.col("ci_low").alias("censored_low"),
                pl.col("ci_high").alias("censored_high"),
            ),
        ],
        how="horizontal",
    )
    return table, naive, censored


def model_caption(title: str, formula: str, method: str = "REML, Satterthwaite df") -> str:
    """A table or figure caption that prints the model's formula beside its result."""
    return f"{title}. Model: {formula} ({method})"


def compare_time_shapes(
    frame: pl.DataFrame, outcome: str, shapes: dict[str, str] | None = None, clinics: int | None = None
) -> tuple[pl.DataFrame, dict[str, GrowthModel]]:
    """Fit the growth model with each time shape by ML and compare them.

    Every model has the random part of :func:`growth_formula` (``(week | episode_id)``, and
    ``(1 | clinic_id)`` with several clinics; ``clinics`` defaults to the number in ``frame``) so that only
    the mean curve differs. Returns a table ``shape, formula, n_par, loglik, AIC, BIC, LRT_vs_linear_p,
    converged, delta_AIC`` (likelihood-ratio test against the linear model for the shapes that nest it:
    spline and piecewise) and the fitted models.

    Validated against R: the same ML fits as ``lme4::lmer(..., REML = FALSE)``; ``anova()`` likelihood-ratio
    tests (tests/models golden cases cover the engine; this function only assembles them).
    """
    shapes = shapes or TIME_SHAPES
    n_clinics = clinic_count(frame) if clinics is None else clinics
    models: dict[str, GrowthModel] = {}
    rows = []
    for name, fixed in shapes.items():
        formula = growth_formula(outcome, fixed, clinics=n_clinics)
        models[name] = GrowthModel(formula, reml=False).fit(frame)
    base = models.get("linear")
    for name, model in models.items():
        fit = model.result_
        nested = base is not None and name in ("natural spline (knots 6, 12)", "piecewise linear (hinge 12)")
        p = likelihood_ratio_test(base, model).p if nested and base is not None else None
        rows.append(
            {
                "shape": name,
                "formula": model.formula,
                "n_par": len(model.beta_) + len(model.theta_) + 1,
                "loglik": _finite(fit.loglik),
                "AIC": _finite(fit.aic),
                "BIC": _finite(fit.bic),
                "LRT_vs_linear_p": p,
                "converged": fit.diagnostics.converged,
            }
        )
    table = pl.DataFrame(rows).with_columns((pl.col("AIC") - pl.col("AIC").min()).alias("delta_AIC"))
    return table.sort("AIC"), models


def _finite(value: float) -> float | None:
    """A fit statistic for the table: None (null) when the fit produced no finite value."""
    return value if math.isfinite(value) else None


def completers(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows of episodes that completed the program (``end_reason == "completed"``)."""
    return frame.filter(pl.col("end_reason") == "completed")


def fixed_effects_table(model: GrowthModel, terms: Sequence[str] | None = None) -> pl.DataFrame:
    """The model's fixed effects (estimate, SE, Satterthwaite df, t, p, 95 % CI), optionally some terms."""
    s = model.summary
    return s.filter(pl.col("term").is_in(list(terms))) if terms else s


def validate_parameters(params: dict[str, Any]) -> None:
    """Check the cohort analysis's parameters against the store before the notebook runs.

    Raises
    ------
    ReportParameterError
        Missing store, a store without episodes or measures, an outcome that is not a measure code or has
        no values in the store (the message lists the measures that do), an unreadable config file, an
        unknown audience or threshold (:func:`report_rule`), or fewer episodes with the outcome than
        :func:`minimum_episodes` (the report would describe identifiable patients; the message gives no
        exact count).
    """
    from sciatica_outcomes.schemas.catalogs import measure_catalog  # noqa: PLC0415
    from sciatica_outcomes.store import Store  # noqa: PLC0415

    db = Path(str(params.get("db", "")))
    if not db.is_file():
        raise ReportParameterError(f"store {db} does not exist: ingest data first (sciatica-outcomes ingest)")
    threshold = params.get("suppress_threshold")
    rule = report_rule(str(params.get("audience", "network")), None if threshold is None else int(threshold))
    cfg = params.get("config")
    if cfg not in (None, ""):
        ClinicalConfig.from_toml(cfg)
    with Store(db, read_only=True) as store:
        n_episodes = store.read("episodes", columns=["episode_id"]).height
        rows = store.read("measures", columns=["episode_id", "measure"])
    measures = rows["measure"]
    if n_episodes == 0 or measures.len() == 0:
        missing = "episodes" if n_episodes == 0 else "measures"
        raise ReportParameterError(
            f"store {db} holds no {missing}: ingest the clinic's {missing} table first "
            "(sciatica-outcomes ingest FILE --db STORE)"
        )
    present = sorted(set(measures.unique().to_list()))
    outcome = str(params.get("outcome", ""))
    if outcome not in set(measure_catalog()["code"].to_list()):
        raise ReportParameterError(
            f"unknown outcome {outcome!r}: give a measure code; the store holds {', '.join(present)}"
        )
    if outcome not in present:
        raise ReportParameterError(
            f"outcome {outcome!r} has no values in the store; the store holds {', '.join(present)}"
        )
    with_outcome = rows.filter(pl.col("measure") == outcome)["episode_id"].n_unique()
    need = minimum_episodes(rule)
    if with_outcome < need:
        raise ReportParameterError(
            f"store {db} has between 1 and {need - 1} episodes with {outcome}: the cohort report needs at "
            f"least {need}, or it would describe identifiable patients; ingest the other clinics' data into "
            "the same store, or wait for more episodes"
        )


def observed_bins(
    frame: pl.DataFrame, outcome: str, rule: SuppressionRule, width: float = 2.0
) -> pl.DataFrame:
    """Observed mean and middle half of the outcome by bin of weeks, for bins the audience may see.

    Parameters
    ----------
    frame : polars.DataFrame
        The model frame (:func:`model_frame`): ``week`` and the outcome.
    outcome : str
        Outcome column.
    rule : SuppressionRule
        The audience's rule; a bin is kept only with more than ``max(10, rule.high)`` assessments (a mean or
        quartile of fewer is close to row-level values).
    width : float
        Bin width in weeks (bins centred on multiples of ``width``).

    Returns
    -------
    polars.DataFrame
        ``week, mean, q25, q75, n`` (``n``: assessments in the bin), sorted by week.
    """
    keep = max(HIGH, rule.high)
    return (
        frame.with_columns(((pl.col("week") / width).round(0) * width).alias("bin"))
        .group_by("bin")
        .agg(
            pl.col(outcome).mean().alias("mean"),
            pl.col(outcome).quantile(0.25, "linear").alias("q25"),
            pl.col(outcome).quantile(0.75, "linear").alias("q75"),
            pl.len().cast(pl.Int64).alias("n"),
        )
        .rename({"bin": "week"})
        .filter(pl.col("n") > keep)
        .sort("week")
    )


def trajectory_sample(
    frame: pl.DataFrame, outcome: str, rule: SuppressionRule, size: int = TRAJECTORY_SAMPLE, seed: int = 7
) -> pl.DataFrame:
    """Individual trajectories to draw: only for the internal audience, and then without identifiers.

    Parameters
    ----------
    frame : polars.DataFrame
        The model frame (``episode_id, week`` and the outcome).
    outcome : str
        Outcome column.
    rule : SuppressionRule
        The audience's rule: any rule that withholds counts (``network``, ``public``) gets no rows.
    size : int
        Most episodes drawn (a random sample when there are more).
    seed : int
        Seed of the sample (the same store gives the same figure).

    Returns
    -------
    polars.DataFrame
        ``line, week, <outcome>``: ``line`` numbers the sampled episodes 0, 1, ... in random order (the
        episode, patient and clinic identifiers are not carried), sorted by line and week; empty when the
        audience may not see individual trajectories.
    """
    schema = {"line": pl.Int64, "week": pl.Float64, outcome: pl.Float64}
    if rule.withholds:
        return pl.DataFrame(schema=schema)
    ids = frame["episode_id"].unique().sort()
    rng = np.random.default_rng(seed)
    pick = rng.permutation(ids.len())[: min(size, ids.len())]
    lines = pl.DataFrame({"episode_id": ids.gather(pick), "line": np.arange(pick.size, dtype=np.int64)})
    return (
        frame.join(lines, on="episode_id", how="inner")
        .select("line", pl.col("week").cast(pl.Float64), pl.col(outcome).cast(pl.Float64))
        .sort("line", "week")
    )


@dataclass(frozen=True)
class ModelDiagnostics:
    """What the report draws to check a growth model, already fit for the audience.

    Attributes
    ----------
    residuals : polars.DataFrame
        ``fitted, residual`` per row (internal audience), or per bin of fitted values
        ``fitted, residual, q10, q90, n`` (``binned``; each bin holds more than ``max(10, rule.high)`` rows).
    binned : bool
        Whether ``residuals`` is binned.
    qq : dict of str to polars.DataFrame
        Normal QQ points ``theoretical, sample`` of the standardised residuals (``"residuals"``) and of
        each random effect per episode (``"episode_id: (Intercept)"``, ``"episode_id: week"``).
    clinics : polars.DataFrame or None
        ``estimate, ci_low, ci_high`` of the clinic intercepts whose clinic size the audience may see
        (sorted, unlabelled); None without a clinic random effect.
    n_rows : int
        Rows the model was fitted to.
    """

    residuals: pl.DataFrame
    binned: bool
    qq: dict[str, pl.DataFrame]
    clinics: pl.DataFrame | None
    n_rows: int


def qq_points(values: np.ndarray, rule: SuppressionRule, max_points: int = 400) -> pl.DataFrame:
    """Normal QQ points of a sample, with no single extreme value drawn outside the internal audience.

    Parameters
    ----------
    values : numpy.ndarray
        The sample (non-finite values are left out).
    rule : SuppressionRule
        For ``internal`` the probabilities run over the whole sample (``(i - 0.5) / n``); otherwise only
        quantiles with more than ``max(10, rule.high)`` values on either side are drawn, so that no point
        is one patient's value.
    max_points : int
        Most points drawn (quantiles at evenly spaced probabilities).

    Returns
    -------
    polars.DataFrame
        ``probability, theoretical, sample`` (standard normal and sample quantiles); empty when the
        sample is too small to draw any point.
    """
    from scipy.stats import norm  # noqa: PLC0415

    v = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    n = v.size
    empty = pl.DataFrame(schema={"probability": pl.Float64, "theoretical": pl.Float64, "sample": pl.Float64})
    if n == 0:
        return empty
    if rule.withholds:
        keep = max(HIGH, rule.high) + 1
        lo, hi = keep / n, 1 - keep / n
        if lo >= hi:
            return empty
        probs = np.linspace(lo, hi, min(max_points, n - 2 * keep + 1))
    else:
        probs = (np.arange(n) + 0.5) / n if n <= max_points else np.linspace(0.5 / n, 1 - 0.5 / n, max_points)
    return pl.DataFrame(
        {
            "probability": probs,
            "theoretical": norm.ppf(probs),
            "sample": np.quantile(v, probs, method="linear"),
        }
    )


def model_diagnostics(
    model: GrowthModel, frame: pl.DataFrame, rule: SuppressionRule, n_bins: int = 20
) -> ModelDiagnostics:
    """Residuals against fitted values, QQ points and random-effect distributions of a fitted growth model.

    Parameters
    ----------
    model : GrowthModel
        Fitted to ``frame``.
    frame : polars.DataFrame
        The rows the model was fitted to (response, predictors and grouping columns).
    rule : SuppressionRule
        The audience's rule: ``internal`` gets one point per row; otherwise rows are pooled into at most
        ``n_bins`` bins of fitted values, each with more than ``max(10, rule.high)`` rows, and QQ plots
        leave out the extreme quantiles (:func:`qq_points`). Clinic intercepts are drawn only for clinics
        whose episode count the audience may see.
    n_bins : int
        Most bins of fitted values.

    Returns
    -------
    ModelDiagnostics

    Notes
    -----
    Fitted values are conditional (``x' beta + z' b``, BLUPs included) and residuals are ``y`` minus them,
    as ``fitted()`` and ``resid()`` of an ``lmerMod``; the QQ plot shows residuals divided by ``sigma``.
    """
    response = model.formula_.response_label
    pred = model.predict(frame, include_random=True)
    res = pred.select(
        pl.col("fit_conditional").alias("fitted"),
        (pl.col(response) - pl.col("fit_conditional")).alias("residual"),
    ).filter(pl.col("residual").is_finite())
    n = res.height
    qq = {"residuals": qq_points(res["residual"].to_numpy() / model.sigma_, rule)}
    keep = max(HIGH, rule.high) + 1
    binned = rule.withholds
    if binned:
        bins = max(1, min(n_bins, n // keep))
        res = (
            res.with_columns(
                ((pl.col("fitted").rank("ordinal") - 1) * bins // max(n, 1)).cast(pl.Int64).alias("bin")
            )
            .group_by("bin")
            .agg(
                pl.col("fitted").mean(),
                pl.col("residual").quantile(0.1, "linear").alias("q10"),
                pl.col("residual").quantile(0.9, "linear").alias("q90"),
                pl.col("residual").mean(),
                pl.len().cast(pl.Int64).alias("n"),
            )
            .filter(pl.col("n") >= keep)
            .sort("bin")
            .select("fitted", "residual", "q10", "q90", "n")
        )
    ranef = model.ranef()
    episode = ranef.get("episode_id")
    if episode is not None:
        for col in episode.columns:
            if col != "episode_id" and not col.endswith("__cond_sd"):
                qq[f"episode_id: {col}"] = qq_points(episode[col].to_numpy(), rule)
    clinics = None
    if "clinic_id" in ranef:
        cl = ranef["clinic_id"]
        sizes = frame.group_by("clinic_id").agg(pl.col("episode_id").n_unique().alias("n"))
        cl = cl.join(sizes, on="clinic_id", how="left").with_columns(pl.col("n").fill_null(0))
        shown = suppress_table(cl["n"].to_numpy(), rule=rule).mask[:, 0]
        cl = cl.filter(pl.Series(~shown))
        clinics = cl.select(
            pl.col("(Intercept)").alias("estimate"),
            (pl.col("(Intercept)") - 1.96 * pl.col("(Intercept)__cond_sd")).alias("ci_low"),
            (pl.col("(Intercept)") + 1.96 * pl.col("(Intercept)__cond_sd")).alias("ci_high"),
        ).sort("estimate")
    return ModelDiagnostics(residuals=res, binned=binned, qq=qq, clinics=clinics, n_rows=n)


#: Categories of the missing-data table, in display order (each episode is in exactly one per visit).
MISSING_CATEGORIES: tuple[str, ...] = ("observed", "missed", "ended before the visit", "not yet due")


def _visit_windows(config: ClinicalConfig) -> list[tuple[str, float, float, float]]:
    """``(label, target week, first day, last day)`` of the baseline and each follow-up visit, by week."""
    out = [("w0", 0.0, float(-config.baseline_before_days), float(config.baseline_after_days))]
    for label, win in sorted(config.visit_windows.items(), key=lambda kv: kv[1].target_week):
        lo, hi = win.bounds_days
        out.append((label, float(win.target_week), lo, hi))
    return out


def missing_data(data: CohortData, outcome: str) -> pl.DataFrame:
    """Whether each enrolled episode has the outcome at each visit, and if not, why not.

    Every episode of the store counts once per visit (baseline ``w0`` and the configured follow-up visits)
    in one of :data:`MISSING_CATEGORIES`:

    - ``observed``: the outcome was recorded (or scored) at that visit;
    - ``ended before the visit``: the episode ended (completed, dropped out, surgery, ...) before the visit's
      window opened;
    - ``not yet due``: the episode is still open and the window had not closed by the data date (the latest
      assessment or end date in the store);
    - ``missed``: the visit was due and nothing was recorded in its window.

    Returns
    -------
    polars.DataFrame
        ``visit, week, observed, missed, ended before the visit, not yet due, enrolled`` (raw counts, one
        row per visit; each row sums to ``enrolled``). Show them through :func:`missing_data_display`.
    """
    windows = pl.DataFrame(
        _visit_windows(data.config), schema=["visit", "week", "lo", "hi"], orient="row"
    ).with_row_index("order")
    ep = data.episodes.select("episode_id", "start_date", "end_date")
    dates = [data.frame["assessed_on"].max(), ep["end_date"].max(), ep["start_date"].max()]
    data_date = max(d for d in dates if d is not None)
    seen = (
        data.frame.filter(pl.col(outcome).is_not_null() & pl.col("visit").is_not_null())
        .select("episode_id", "visit")
        .unique()
        .with_columns(pl.lit(True).alias("seen"))
    )
    grid = (
        ep.with_columns(
            (pl.col("end_date") - pl.col("start_date")).dt.total_days().alias("end_day"),
            (pl.lit(data_date) - pl.col("start_date")).dt.total_days().alias("data_day"),
        )
        .join(windows, how="cross")
        .join(seen, on=["episode_id", "visit"], how="left")
    )
    category = (
        pl.when(pl.col("seen").fill_null(False))
        .then(pl.lit("observed"))
        .when(pl.col("end_day").is_not_null() & (pl.col("end_day") < pl.col("lo")))
        .then(pl.lit("ended before the visit"))
        .when(pl.col("end_day").is_null() & (pl.col("data_day") < pl.col("hi")))
        .then(pl.lit("not yet due"))
        .otherwise(pl.lit("missed"))
    )
    counts = (
        grid.with_columns(category.alias("category"))
        .group_by("order", "visit", "week", "category")
        .len()
        .pivot("category", index=["order", "visit", "week"], values="len")
    )
    for c in MISSING_CATEGORIES:
        if c not in counts.columns:
            counts = counts.with_columns(pl.lit(0).alias(c))
    return (
        windows.select("order", "visit", "week")
        .join(counts.drop("visit", "week"), on="order", how="left")
        .sort("order")
        .select(
            "visit",
            "week",
            *(pl.col(c).fill_null(0).cast(pl.Int64) for c in MISSING_CATEGORIES),
        )
        .with_columns(pl.sum_horizontal(*MISSING_CATEGORIES).alias("enrolled"))
    )


def missing_data_display(counts: pl.DataFrame, rule: SuppressionRule) -> pl.DataFrame:
    """The missing-data table as shown: counts through ``rule``, and the share observed of those due.

    The categories of all visits form one table (visits x categories) whose row totals (the enrolled
    episodes) are shown, so they are suppressed together, primary and complementary
    (:func:`~sciatica_outcomes.reports.privacy.suppress_table`). ``observed of due`` is
    ``observed / (observed + missed)``, shown only when both counts are shown.

    Returns
    -------
    polars.DataFrame
        ``visit, week, observed, missed, ended before the visit, not yet due, observed of due`` as text.
    """
    values = counts.select(MISSING_CATEGORIES).to_numpy()
    sup = suppress_table(values, rule=rule)
    shown = sup.shown()
    cols = {
        c: [str(v) if isinstance(v, str) else f"{int(v):,}" for v in shown[:, j]]
        for j, c in enumerate(MISSING_CATEGORIES)
    }
    obs, miss = values[:, 0], values[:, 1]
    due = obs + miss
    ok = ~sup.mask[:, 0] & ~sup.mask[:, 1] & (due > 0)
    share = [
        f"{100 * o / d:.0f}%" if k else (SUPPRESSED if d > 0 else "-")
        for o, d, k in zip(obs, due, ok, strict=True)
    ]
    return pl.DataFrame(
        {
            "visit": counts["visit"],
            "week": counts["week"].cast(pl.Int64),
            **{c: pl.Series(c, v, dtype=pl.String) for c, v in cols.items()},
            "observed of due": share,
        }
    )


def shown_part(n: int, whole: int, rule: SuppressionRule) -> str:
    """A count that is part of a shown total: withheld when it, or the rest of the total, is withheld.

    As the ``within`` rule of :func:`~sciatica_outcomes.reports.privacy.suppress_counts`: the part and its
    complement ``whole - n`` partition a shown total, so either would give the other away.
    """
    if rule.is_small(n) or rule.is_small(whole - n) or rule.is_small(whole):
        return SUPPRESSED
    return f"{n:,}"


def follow_up_flow(data: CohortData, outcome: str) -> list[tuple[str, int]]:
    """The cohort's flow: enrolled, with a baseline outcome, with the outcome at each visit, completed.

    Returns
    -------
    list of (str, int)
        ``(stage, episodes)`` in order: ``enrolled`` (every episode of the store), ``with baseline``, one
        ``with follow-up at week <week>`` per configured visit (each counts the episodes with the outcome at
        that visit, whatever happened at the others), ``completed the program``
        (``end_reason == "completed"``).
    """
    counts = missing_data(data, outcome)
    enrolled = data.episodes.height
    stages = [("enrolled", enrolled)]
    for visit, week, observed in counts.select("visit", "week", "observed").iter_rows():
        # in words ("week 6"), not the visit code ("w6")
        stage = "with baseline" if visit == "w0" else f"with follow-up at week {week:g}"
        stages.append((stage, int(observed)))
    completed = int((data.episodes["end_reason"] == "completed").sum())
    stages.append(("completed the program", completed))
    return stages


def sensitivity_display(rows: pl.DataFrame, whole: int, rule: SuppressionRule) -> pl.DataFrame:
    """The sensitivity table as shown: episode counts through ``rule``, estimates of small subsets withheld.

    Parameters
    ----------
    rows : polars.DataFrame
        ``analysis, episodes, week, change, ci_low, ci_high``.
    whole : int
        The episodes of the full analysis, of which each subset's ``episodes`` is a part (:func:`shown_part`).
    rule : SuppressionRule
        The audience's rule; estimates from ``max(10, rule.high)`` or fewer episodes are withheld for every
        audience (a model of a handful of patients describes them).

    Returns
    -------
    polars.DataFrame
        ``episodes`` as text, the floating-point columns null where withheld.
    """
    keep = max(HIGH, rule.high)
    shown = [shown_part(int(n), whole, rule) for n in rows["episodes"]]
    withheld = pl.Series([s == SUPPRESSED for s in shown]) | (rows["episodes"] <= keep)
    stats = [c for c, t in rows.schema.items() if t.is_float()]
    return rows.with_columns(
        pl.Series("episodes", shown, dtype=pl.String),
        *(pl.when(withheld).then(None).otherwise(pl.col(c)).alias(c) for c in stats),
    )


def model_record(
    model: GrowthModel | CensoredGrowthModel, purpose: str, rule: SuppressionRule, **extra: Any
) -> dict[str, Any]:
    """What the provenance records of one fitted growth model, with its counts through ``rule``.

    Parameters
    ----------
    model : GrowthModel or CensoredGrowthModel
        A fitted model (a censored one is maximum likelihood: ``reml`` false).
    purpose : str
        What the report uses it for.
    rule : SuppressionRule
        The audience's rule: ``n_obs`` and every integer count ``n_*`` of the diagnostics that the audience
        may not see is recorded as ``*`` (the provenance shows no count a table withholds).
    **extra : object
        Further JSON-ready entries.

    Returns
    -------
    dict
        ``purpose, formula, reml, n_obs, converged, diagnostics`` (and ``model: "censored"`` for a censored
        growth model) and ``extra``.
    """
    diagnostics = model.result_.diagnostics.to_dict()

    def count(key: str, value: Any) -> Any:
        is_count = key.startswith("n_") and isinstance(value, int) and not isinstance(value, bool)
        return shown_count(value, rule) if is_count and rule.is_small(value) else value

    return {
        "purpose": purpose,
        "formula": model.formula,
        "reml": model.reml if isinstance(model, GrowthModel) else False,
        "n_obs": count("n_obs", model.result_.n_obs),
        "converged": model.result_.diagnostics.converged,
        "diagnostics": {k: count(k, v) for k, v in diagnostics.items()},
        **({} if isinstance(model, GrowthModel) else {"model": "censored"}),
        **extra,
    }


#: Vector formats written beside every PNG figure of the cohort report.
VECTOR_FORMATS: tuple[str, ...] = ("svg", "pdf")


def save_vector_figure(fig: Any, figures_dir: str | Path, name: str) -> list[Path]:
    """Write a figure as ``<name>.svg`` and ``<name>.pdf`` (vector, for publication) beside its PNG.

    Call it before :meth:`~sciatica_outcomes.reports.display.ReportWriter.figure`, which closes the figure.
    The files carry no creation date (the same data give the same bytes) and the PDF embeds TrueType fonts
    (``pdf.fonttype = 42``, which journals ask for instead of Type 3).

    Returns
    -------
    list of Path
        The files written.
    """
    import matplotlib as mpl  # noqa: PLC0415

    out = Path(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{fmt}" for fmt in VECTOR_FORMATS]
    with mpl.rc_context({"pdf.fonttype": 42, "svg.hashsalt": name}):
        fig.savefig(paths[0], format="svg", bbox_inches="tight", metadata={"Date": None})
        fig.savefig(paths[1], format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    return paths


#: Environment variables a notebook opened in Jupyter reads for its store and its output directory.
DB_ENV, REPORTS_ENV = "SCIATICA_OUTCOMES_DB", "SCIATICA_OUTCOMES_REPORTS"


def _repository_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "notebooks").is_dir():
            return folder
    return None


def notebook_paths(db: str = "", out_dir: str = "", start: str | Path | None = None) -> tuple[Path, Path]:
    """The store and the output directory of the cohort notebook, from wherever it is opened.

    Parameters
    ----------
    db : str
        The store; ``""``: ``$SCIATICA_OUTCOMES_DB``, else ``data/outcomes.duckdb`` at the top of the
        repository. A relative path is taken from the top of the repository (the notebook may be opened from
        ``notebooks/``), or from ``start`` outside a checkout.
    out_dir : str
        Where ``tables/``, ``figures/`` and the manifest go; ``""``: ``$SCIATICA_OUTCOMES_REPORTS/cohort``,
        else ``reports/cohort`` at the top of the repository (``reports/`` is ignored by git).
    start : str or Path, optional
        Where the notebook runs (default: the working directory).

    Returns
    -------
    tuple of Path
        Absolute store path and output directory.

    Raises
    ------
    ReportParameterError
        An output directory inside the repository's ``notebooks/`` folder (outputs would be committed with
        the notebooks).
    """
    import os  # noqa: PLC0415

    here = Path(start) if start is not None else Path.cwd()
    here = here.resolve()
    root = _repository_root(here)
    base = root or here

    def resolve(value: str) -> Path:
        path = Path(value).expanduser()
        return (path if path.is_absolute() else base / path).resolve()

    store = resolve(db or os.environ.get(DB_ENV, "") or "data/outcomes.duckdb")
    env_out = os.environ.get(REPORTS_ENV, "")
    out = (
        resolve(out_dir)
        if out_dir
        else (resolve(env_out) / "cohort" if env_out else base / "reports" / "cohort")
    )
    if root is not None and out.is_relative_to((root / "notebooks").resolve()):
        raise ReportParameterError(
            f"output directory {out} is inside {root / 'notebooks'}: give out_dir outside notebooks/ "
            f"(e.g. reports/cohort) so that no output is committed with the notebooks"
        )
    return store, out


def small_groups(frame: pl.DataFrame, rule: SuppressionRule, group: str = "adherence_group") -> list[str]:
    """Levels of ``group`` with too few episodes for a model-based statistic the audience may see.

    Parameters
    ----------
    frame : polars.DataFrame
        The model frame (``episode_id`` and ``group``; rows with a null group are not counted).
    rule : SuppressionRule
        A level needs more than ``max(10, rule.high)`` episodes (a marginal mean of fewer describes them).
    group : str
        The grouping column.

    Returns
    -------
    list of str
        The small levels, sorted; empty when every level is large enough. With fewer than two levels no
        comparison is possible and the level present (or ``"(none)"``) is returned.
    """
    keep = max(HIGH, rule.high)
    sizes = (
        frame.filter(pl.col(group).is_not_null())
        .group_by(group)
        .agg(pl.col("episode_id").n_unique().alias("n"))
        .sort(group)
    )
    few = sizes.filter(pl.col("n") <= keep)[group].to_list()
    if sizes.height < 2:
        return [str(v) for v in sizes[group].to_list()] or ["(none)"]
    return [str(v) for v in few]


#: Weeks of the return-to-work at-risk table (candidates; see :func:`return_to_work_analysis`).
AT_RISK_WEEKS: tuple[float, ...] = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 26.0)


@dataclass(frozen=True)
class ReturnToWorkAnalysis:
    """Kaplan-Meier return to full or modified duties of the cohort, as the audience may see it.

    Attributes
    ----------
    n, n_returned : int
        Episodes off work because of back or leg pain at enrolment with a later work assessment, and those
        who returned (raw: print through the rule).
    n_shown : str
        ``n`` under the rule.
    summary : ReturnToWork
        The share back by week 12, the median weeks and the coarse curve
        (:func:`~sciatica_outcomes.reports.work.return_to_work_summary`).
    at_risk : polars.DataFrame
        ``week, still_off_and_followed, returned_before`` (text): the at-risk table at the weeks of
        :data:`AT_RISK_WEEKS` that may be shown.
    """

    n: int
    n_returned: int
    n_shown: str
    summary: ReturnToWork
    at_risk: pl.DataFrame


def return_to_work_analysis(data: CohortData, rule: SuppressionRule) -> ReturnToWorkAnalysis:
    """Kaplan-Meier return to work of every episode off work because of back or leg pain at enrolment.

    The time is from the start of the program to the return to full or modified duties (the recorded return
    date, else the first assessment back), right-censored at the last work assessment
    (:func:`~sciatica_outcomes.derive.return_to_work`); episodes without a later assessment are counted out.
    The share by week 12, the median and the coarse curve are the quarterly report's
    (:func:`~sciatica_outcomes.reports.work.return_to_work_summary`), over the whole store.

    Parameters
    ----------
    data : CohortData
    rule : SuppressionRule
        The audience's rule: with ``n`` withheld nothing but the withheld count is shown; the share is
        withheld when the returns by week 12 or the others are 1-10; the at-risk table keeps a week only when
        the episodes still off work and followed, those returned before it, those censored before it, and
        each of their changes since the previous kept week are 0 or above the threshold (so that no
        difference of two shown numbers is 1-10), and stops before the risk set falls to the threshold.

    Returns
    -------
    ReturnToWorkAnalysis

    Notes
    -----
    ``1 - S(12)`` with the log-log interval of ``S``; median with the Brookmeyer-Crowley interval.
    Validated against: R ``survival::survfit(Surv(time, event) ~ 1, conf.type = "log-log")`` through
    :func:`~sciatica_outcomes.models.survival.kaplan_meier`.
    """
    rtw = data.return_to_work
    followed = (
        rtw.filter(pl.col("followed")).with_columns(pl.lit(OFF_WORK_BACK_LEG).alias("status_start"))
        if rtw.height
        else pl.DataFrame(schema={"status_start": pl.String, "followed": pl.Boolean, "time_weeks": pl.Float64,
                                  "event": pl.Int64})
    )  # fmt: skip
    n = followed.height
    n_shown = shown_count(n, rule)
    summary = return_to_work_summary(followed, n_shown, rule)
    at_risk_rows: list[tuple[str, str, str]] = []
    if n >= rule.min_group and not rule.is_small(n):
        times = followed["time_weeks"].to_numpy()
        events = followed["event"].to_numpy().astype(bool)
        prev = (n, 0, 0)
        for t in AT_RISK_WEEKS:  # loop over a handful of weeks, vectorised over episodes
            still = int((times >= t).sum())
            returned = int((events & (times < t)).sum())
            now = (still, returned, n - still - returned)
            deltas = (prev[0] - still, returned - prev[1], now[2] - prev[2])
            if t == 0.0 or not any(rule.is_small(x) for x in (*now, *deltas)):
                if rule.is_small(still) or still < rule.min_group:
                    break
                at_risk_rows.append((f"{t:g}", f"{still:,}", f"{returned:,}"))
                prev = now
    at_risk = pl.DataFrame(
        at_risk_rows,
        schema={"week": pl.String, "still_off_and_followed": pl.String, "returned_before": pl.String},
        orient="row",
    )
    return ReturnToWorkAnalysis(n, summary.n_returned, n_shown, summary, at_risk)


#: Time shape of the Work Ability Score growth model (the quarterly report's growth-model shape).
WAS_TIME = "ns(week, knots = c(6, 12))"


def was_growth(
    data: CohortData, rule: SuppressionRule, weeks: Sequence[float] = (6.0, 12.0, 26.0)
) -> tuple[GrowthModel, pl.DataFrame] | None:
    """Growth model of the Work Ability Score over weeks: changes from week 0 with 95% intervals.

    Model (lme4 notation): ``was ~ ns(week, knots = c(6, 12)) + (week | episode_id)`` plus ``(1 |
    clinic_id)`` with several clinics (:func:`growth_formula`), REML, Satterthwaite df; every WAS assessment
    (0-10, higher is better) of the store, baseline assessments before the start at week 0.

    Parameters
    ----------
    data : CohortData
    rule : SuppressionRule
        The audience's rule: no model with fewer than ``minimum_episodes(rule)`` episodes.
    weeks : sequence of float
        Weeks of the changes from week 0.

    Returns
    -------
    tuple of (GrowthModel, polars.DataFrame) or None
        The fit and ``week, estimate, se, df, ci_low, ci_high, p`` (change in points from week 0,
        ``L beta`` contrasts); None without enough WAS data.

    Notes
    -----
    Validated against: R ``lmerTest::lmer`` through :class:`~sciatica_outcomes.models.lmm.GrowthModel`
    (``tests/models``); the fit here is that estimator on the WAS rows.
    """
    if "was" not in data.frame.columns:
        return None
    frame = model_frame(data, "was")
    if (
        frame["episode_id"].n_unique() < minimum_episodes(rule)
        or frame.filter(pl.col("week") > 0).height == 0
    ):
        return None
    formula = growth_formula("was", WAS_TIME, clinics=clinic_count(frame))
    model = GrowthModel(formula).fit(frame)
    x = model.design_.matrix(pl.DataFrame({"week": [0.0, *weeks]}))
    changes = model.contrast(x[1:] - x[0]).with_columns(pl.Series("week", [float(w) for w in weeks]))
    return model, changes.select("week", "estimate", "se", "df", "ci_low", "ci_high", "p")


@dataclass(frozen=True)
class WorkStatusAnalysis:
    """The cohort report's model of being at work over time, as the audience may see it.

    Attributes
    ----------
    model : WorkStatusModel
        The fitted work-status GLMM (:func:`~sciatica_outcomes.models.work.work_status_model`), or why not.
    table : polars.DataFrame
        ``Term, Odds ratio, 95% CI, p`` (no counts).
    methods : str
        One sentence of Methods text.
    shares : polars.DataFrame
        Shares at work by visit with the observed share and its count withheld where the rule requires
        (:func:`~sciatica_outcomes.reports.work.shares_for_audience`); empty when not fitted.
    n_episodes, n_assessments : str
        The model's episodes and rows as report text under the rule.
    """

    model: WorkStatusModel
    table: pl.DataFrame
    methods: str
    shares: pl.DataFrame
    n_episodes: str
    n_assessments: str


def work_status_analysis(data: CohortData, rule: SuppressionRule) -> WorkStatusAnalysis:
    """Mixed-effects logistic regression of "working full or modified duties" over the program.

    Model: ``logit P(at work_ij) = b0 + b1 week_ij + b2 ODI_ij / 10 + b3 adherence_i / 10 + u_i`` with
    ``u_i ~ N(0, sigma_u^2)`` per episode (nested in clinics where the rule of
    :func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics` allows), among patients in paid work at
    enrolment (:func:`~sciatica_outcomes.models.work.work_status_summary`). The odds ratios are conditional on
    the patient; the shares by visit are averaged over ``u``.

    Parameters
    ----------
    data : CohortData
        From :func:`load_cohort` (its ``derived`` tables are used).
    rule : SuppressionRule
        The audience's rule for the counts and the observed shares.

    Returns
    -------
    WorkStatusAnalysis

    Notes
    -----
    Validated against: R ``lme4::glmer`` (nAGQ 1 and 9) and ``glmmTMB`` on ``tests/reference/work``
    through :class:`~sciatica_outcomes.models.glmm.MixedGLM` (``tests/models/test_work.py``).
    """
    from sciatica_outcomes.models.work import work_status_summary  # noqa: PLC0415 - the GLMM only when used

    if data.derived is None:
        raise ReportParameterError("the cohort data carry no derived tables: load them with load_cohort")
    table, methods, model = work_status_summary(data.derived, config=data.config)
    shares = shares_for_audience(model, rule) if model.status == "estimated" else pl.DataFrame()
    return WorkStatusAnalysis(
        model=model,
        table=table,
        methods=methods,
        shares=shares,
        n_episodes=shown_count(model.n_episodes, rule),
        n_assessments=shown_count(model.n_assessments, rule),
    )
