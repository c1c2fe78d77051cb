"""Work outcomes: work status over the episode, time to return to work, change in WAS and WPAI:SHP scores.

Three frames, all vectorised polars (no loop over rows or episodes):

- :func:`work_assessments`: every ``work`` row with its day, week and visit (the same windows as the
  measures, :func:`~sciatica_outcomes.scoring.assign_visits`), whether the patient is at work (full or
  modified duties) and the four WPAI:SHP scores with their reasons
  (:func:`~sciatica_outcomes.scoring.work.wpai_scores`);
- :func:`return_to_work`: for the patients in paid work who were off work because of back or leg pain at
  enrolment (the return-to-work population), the time from episode start to the return to full or modified
  duties, right-censored at the last assessment. Kaplan-Meier estimates come from
  ``models.survival.kaplan_meier(frame, time="time_weeks", event="event")``;
- :func:`work_episodes`: one row per episode with a work assessment: employment at enrolment, work status at
  start, discharge and follow-up, the return to work, and the change in WAS and in each WPAI:SHP score from
  baseline to the last follow-up visit, with WAS responders by its smallest detectable change.

Definitions (documented once here; thresholds are :class:`~sciatica_outcomes.config.ClinicalConfig`
fields):

- *start* is the baseline visit (``w0``); *discharge* the visit window whose target week is
  ``program_weeks`` (``w12`` by default: the end of the program phase); *follow-up* the latest visit window
  after it (``w26``). A status is null where the visit has no work assessment.
- *return to work*: the first assessment after the baseline assessment with work status ``full_duties`` or
  ``modified_duties``. Its time is the ``return_to_work_date`` recorded on or before that assessment (after
  the baseline assessment) when there is one (``time_source = "return_date"``), else the assessment date, an
  upper bound (``"assessment_date"``). Without a return the episode is censored at its last assessment
  (``event = 0``). An episode with no assessment after baseline has no time (``followed = False``), so it is
  counted but never enters a curve.
- *WAS responder*: improvement of at least ``mcid["was"].absolute`` (the SDC, 1.92 points; VERIFY, see
  :mod:`sciatica_outcomes.scoring.work`).

Sources: return to work among those off work at baseline, right-censored at last follow-up (Asher et al.,
J Neurosurg Spine 2017;27:370); work status in the ICHOM low-back-pain set (Clement et al., Acta Orthop
2015;86:523); domain.md §8.
"""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.schemas.vocabulary import AT_WORK_STATUSES, OFF_WORK_BACK_LEG, PAID_WORK_STATUSES
from sciatica_outcomes.scoring import BASELINE_LABEL, assign_visits
from sciatica_outcomes.scoring.work import WPAI_SCORES, was_responder, wpai_scores

__all__ = [
    "RETURN_TO_WORK_COLUMNS",
    "WORK_EPISODE_COLUMNS",
    "discharge_and_follow_up_visits",
    "return_to_work",
    "work_assessments",
    "work_episodes",
]

#: Columns of :func:`return_to_work`.
RETURN_TO_WORK_COLUMNS: tuple[str, ...] = (
    "episode_id",
    "clinic_id",
    "followed",
    "time_days",
    "time_weeks",
    "event",
    "time_source",
    "last_assessed_day",
)

_SCORE_CHANGE = tuple(f"{s}_change" for s in WPAI_SCORES)

#: Columns of :func:`work_episodes`, in order.
WORK_EPISODE_COLUMNS: tuple[str, ...] = (
    "episode_id",
    "clinic_id",
    "employment_at_enrolment",
    "work_status_start",
    "work_status_discharge",
    "work_status_follow_up",
    "off_work_at_enrolment",
    "returned_to_work",
    "return_to_work_weeks",
    "was_baseline",
    "was_last",
    "was_change",
    "was_responder",
    *(f"{s}_baseline" for s in WPAI_SCORES),
    *_SCORE_CHANGE,
)

_WORK_DTYPES: dict[str, pl.DataType] = {
    "wpai_q1_employed": pl.Boolean(),
    "wpai_q2_hours_missed_health": pl.Float64(),
    "wpai_q3_hours_missed_other": pl.Float64(),
    "wpai_q4_hours_worked": pl.Float64(),
    "wpai_q5_work_impairment": pl.Int64(),
    "wpai_q6_activity_impairment": pl.Int64(),
    "return_to_work_date": pl.Date(),
}


def discharge_and_follow_up_visits(config: ClinicalConfig | None = None) -> tuple[str | None, str | None]:
    """Labels of the discharge visit (target week ``program_weeks``) and the follow-up visit (the latest one).

    Parameters
    ----------
    config : ClinicalConfig, optional
        Visit windows and program length.

    Returns
    -------
    tuple of (str or None, str or None)
        ``(discharge, follow_up)``; None where no window fits.
    """
    config = config or ClinicalConfig()
    windows = config.visit_windows
    discharge = next((k for k, w in windows.items() if w.target_week == config.program_weeks), None)
    later = sorted((w.target_week, k) for k, w in windows.items() if w.target_week > config.program_weeks)
    return discharge, later[-1][1] if later else None


def _typed(work: pl.DataFrame) -> pl.DataFrame:
    """The work table with every optional column present (null when the source lacks it)."""
    extra = [pl.lit(None, dtype).alias(c) for c, dtype in _WORK_DTYPES.items() if c not in work.columns]
    out = work.with_columns(extra) if extra else work
    return out.with_columns(pl.col("assessed_on").cast(pl.Date))


def work_assessments(
    work: pl.DataFrame, episodes: pl.DataFrame, config: ClinicalConfig | None = None
) -> pl.DataFrame:
    """Every work assessment with its visit, at-work flag and WPAI:SHP scores.

    Parameters
    ----------
    work : polars.DataFrame
        The ``work`` table.
    episodes : polars.DataFrame
        The ``episodes`` table (``episode_id, clinic_id, start_date``).
    config : ClinicalConfig, optional
        Visit windows.

    Returns
    -------
    polars.DataFrame
        The work rows of known episodes, sorted by ``episode_id, assessed_on``, with ``clinic_id,
        start_date, day, week, visit`` (as :func:`~sciatica_outcomes.scoring.assign_visits`),
        ``in_paid_work``, ``at_work`` (full or modified duties) and the columns of
        :func:`~sciatica_outcomes.scoring.work.wpai_scores`.
    """
    config = config or ClinicalConfig()
    ep = episodes.select("episode_id", "clinic_id", pl.col("start_date").cast(pl.Date))
    rows = _typed(work).join(ep, on="episode_id", how="inner")
    out = assign_visits(rows, config).with_columns(
        pl.col("employment_status").is_in(list(PAID_WORK_STATUSES)).alias("in_paid_work"),
        pl.col("work_status").is_in(list(AT_WORK_STATUSES)).alias("at_work"),
    )
    return wpai_scores(out).sort("episode_id", "assessed_on")


def return_to_work(assessments: pl.DataFrame) -> pl.DataFrame:
    """Time to return to full or modified duties for those off work because of back or leg pain at enrolment.

    Parameters
    ----------
    assessments : polars.DataFrame
        Output of :func:`work_assessments`.

    Returns
    -------
    polars.DataFrame
        One row per episode whose baseline (``w0``) assessment finds the patient in paid work and off work
        because of back or leg pain (:data:`RETURN_TO_WORK_COLUMNS`): ``followed`` (an assessment after
        baseline exists), ``time_days`` / ``time_weeks`` since episode start (null when not followed),
        ``event`` (1 returned, 0 censored at the last assessment), ``time_source`` (``return_date``,
        ``assessment_date`` or ``last_assessment`` for a censored time) and ``last_assessed_day``.

    Notes
    -----
    ``T_i = d(return_to_work_date)`` when recorded on or before the first assessment back, else the day of
    that assessment; ``C_i`` = day of the last assessment. Days count from ``start_date``.
    """
    base = assessments.filter(pl.col("visit") == BASELINE_LABEL).select(
        "episode_id",
        "clinic_id",
        pl.col("day").alias("_base_day"),
        (pl.col("in_paid_work") & (pl.col("work_status") == OFF_WORK_BACK_LEG)).alias("_off"),
    )
    pop = base.filter(pl.col("_off"))
    later = assessments.join(pop.select("episode_id", "_base_day"), on="episode_id").filter(
        pl.col("day") > pl.col("_base_day")
    )
    rtw_day = (pl.col("return_to_work_date") - pl.col("start_date")).dt.total_days()
    back = later.filter(pl.col("at_work")).group_by("episode_id").agg(pl.col("day").min().alias("_back_day"))
    dated = (
        later.join(back, on="episode_id")
        .filter(pl.col("day") <= pl.col("_back_day"), pl.col("return_to_work_date").is_not_null())
        .group_by("episode_id")
        .agg(rtw_day.min().cast(pl.Int32).alias("_date_day"))
    )
    last = later.group_by("episode_id").agg(pl.col("day").max().alias("last_assessed_day"))
    out = (
        pop.join(back, on="episode_id", how="left")
        .join(dated, on="episode_id", how="left")
        .join(last, on="episode_id", how="left")
        .with_columns(
            pl.col("last_assessed_day").is_not_null().alias("followed"),
            pl.col("_back_day").is_not_null().cast(pl.Int64).alias("event"),
        )
        .with_columns(
            pl.when(pl.col("event") == 1)
            .then(pl.coalesce("_date_day", "_back_day"))
            .otherwise(pl.col("last_assessed_day"))
            .cast(pl.Float64)
            .alias("time_days"),
            pl.when(pl.col("event") == 0)
            .then(pl.when(pl.col("followed")).then(pl.lit("last_assessment")))
            .when(pl.col("_date_day").is_not_null())
            .then(pl.lit("return_date"))
            .otherwise(pl.lit("assessment_date"))
            .alias("time_source"),
        )
        .with_columns((pl.col("time_days") / 7.0).alias("time_weeks"))
    )
    return out.select(RETURN_TO_WORK_COLUMNS).sort("episode_id")


def work_episodes(
    assessments: pl.DataFrame,
    rtw: pl.DataFrame,
    outcomes: pl.DataFrame,
    config: ClinicalConfig | None = None,
) -> pl.DataFrame:
    """One row per episode with a work assessment: status at start, discharge, follow-up; WAS and WPAI change.

    Parameters
    ----------
    assessments : polars.DataFrame
        Output of :func:`work_assessments`.
    rtw : polars.DataFrame
        Output of :func:`return_to_work`.
    outcomes : polars.DataFrame
        The long outcome table (:func:`~sciatica_outcomes.derive.outcome_measures`); its ``was`` rows give
        the Work Ability Score.
    config : ClinicalConfig, optional
        Visit windows, program length and the WAS SDC.

    Returns
    -------
    polars.DataFrame
        :data:`WORK_EPISODE_COLUMNS`: ``employment_at_enrolment`` (baseline row), ``work_status_start /
        _discharge / _follow_up``, ``off_work_at_enrolment`` (the return-to-work population),
        ``returned_to_work`` and ``return_to_work_weeks`` (null when censored or not in the population),
        ``was_baseline, was_last`` (last follow-up visit), ``was_change``, ``was_responder``, and per WPAI
        score its baseline value and change to the last follow-up visit with both scores defined.
    """
    config = config or ClinicalConfig()
    discharge, follow = discharge_and_follow_up_visits(config)
    labelled = assessments.filter(pl.col("visit").is_not_null())
    status = labelled.pivot(on="visit", index="episode_id", values="work_status", aggregate_function="first")
    base_cols = labelled.filter(pl.col("visit") == BASELINE_LABEL).select(
        "episode_id",
        pl.col("employment_status").alias("employment_at_enrolment"),
        *[pl.col(s).alias(f"{s}_baseline") for s in WPAI_SCORES],
    )

    def visit_col(label: str | None, name: str) -> pl.Expr:
        return (
            pl.col(label) if label is not None and label in status.columns else pl.lit(None, pl.String)
        ).alias(name)

    statuses = status.select(
        "episode_id",
        visit_col(BASELINE_LABEL, "work_status_start"),
        visit_col(discharge, "work_status_discharge"),
        visit_col(follow, "work_status_follow_up"),
    )
    follow_rows = labelled.filter(pl.col("visit") != BASELINE_LABEL).sort("episode_id", "day")
    wpai_last = follow_rows.group_by("episode_id", maintain_order=True).agg(
        *[pl.col(s).drop_nulls().last().alias(f"_{s}_last") for s in WPAI_SCORES]
    )
    was = _was_change(outcomes, config)
    episodes = assessments.select("episode_id", "clinic_id").unique("episode_id", keep="first")
    out = (
        episodes.join(base_cols, on="episode_id", how="left")
        .join(statuses, on="episode_id", how="left")
        .join(
            rtw.select(
                "episode_id",
                pl.lit(True).alias("off_work_at_enrolment"),
                pl.when(pl.col("followed")).then(pl.col("event") == 1).alias("returned_to_work"),
                pl.when(pl.col("event") == 1).then(pl.col("time_weeks")).alias("return_to_work_weeks"),
            ),
            on="episode_id",
            how="left",
        )
        .join(wpai_last, on="episode_id", how="left")
        .join(was, on="episode_id", how="left")
        .with_columns(
            pl.col("off_work_at_enrolment").fill_null(False),
            *[(pl.col(f"_{s}_last") - pl.col(f"{s}_baseline")).alias(f"{s}_change") for s in WPAI_SCORES],
        )
    )
    return out.select(WORK_EPISODE_COLUMNS).sort("episode_id")


def _was_change(outcomes: pl.DataFrame, config: ClinicalConfig) -> pl.DataFrame:
    """Baseline and last follow-up Work Ability Score, change and responder, per episode."""
    was = outcomes.filter(pl.col("measure") == "was", pl.col("visit").is_not_null())
    base = was.filter(pl.col("visit") == BASELINE_LABEL).select(
        "episode_id", pl.col("value").alias("was_baseline")
    )
    last = (
        was.filter(pl.col("visit") != BASELINE_LABEL)
        .sort("episode_id", "day")
        .group_by("episode_id", maintain_order=True)
        .agg(pl.col("value").last().alias("was_last"))
    )
    change = pl.col("was_last") - pl.col("was_baseline")
    return (
        base.join(last, on="episode_id", how="full", coalesce=True)
        .with_columns(change.alias("was_change"))
        .with_columns(was_responder(pl.col("was_change"), config).alias("was_responder"))
        .unique("episode_id", keep="first")
    )
