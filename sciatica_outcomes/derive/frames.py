"""Analysis-ready frames: the long outcome table, the analysis frame for models, the episode summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive._common import (
    Source,
    combined_code,
    episode_windows,
    load_tables,
    max_int,
    resolve_data_cut,
    sort_by_code,
)
from sciatica_outcomes.derive.adherence import _inside, episode_adherence
from sciatica_outcomes.derive.dose import _coded_exercise_rows, _episode_progression
from sciatica_outcomes.derive.pain import (
    _coded_session_pain,
    _completed_with_pain,
    _max_pain_during,
    episode_pain,
)
from sciatica_outcomes.derive.redflags import red_flag_alerts
from sciatica_outcomes.derive.work import return_to_work, work_assessments, work_episodes
from sciatica_outcomes.schemas.catalogs import measure_catalog
from sciatica_outcomes.scoring import (
    assign_visits,
    change_from_baseline,
    flag_end_of_episode,
    score_questionnaires,
)

__all__ = ["Derived", "analysis_frame", "derive_all", "episode_summary", "outcome_measures"]

_KEY = ["episode_id", "assessed_on", "measure"]
_COVARIATES = (
    ("age_at_start", "age", pl.Int64),
    ("sex", "sex", pl.String),
    ("symptom_duration_weeks", "symptom_duration_weeks", pl.Int64),
    ("affected_side", "affected_side", pl.String),
    ("prescribed_sessions_per_week", "prescribed_sessions_per_week", pl.Float64),
    ("therapist_id", "therapist_id", pl.String),
)


@dataclass(frozen=True)
class Derived:
    """Everything :func:`derive_all` computes from one set of canonical tables.

    Attributes
    ----------
    analysis_frame, episode_summary, alerts, outcomes : polars.DataFrame
        See :func:`analysis_frame`, :func:`episode_summary`,
        :func:`~sciatica_outcomes.derive.red_flag_alerts` and :func:`outcome_measures`.
    scored_measures, scoring_problems : polars.DataFrame
        Questionnaire scores with provenance and refused questionnaires
        (:func:`~sciatica_outcomes.scoring.score_questionnaires`).
    data_cut : date or None
        The data cut used.
    config : ClinicalConfig
        The configuration used (record ``config.to_dict()`` in provenance).
    work_assessments, return_to_work, work_episodes : polars.DataFrame
        Work outcomes (:mod:`sciatica_outcomes.derive.work`): every work assessment with visit and WPAI:SHP
        scores, time to return to work of those off work at enrolment, and one row per episode.
    """

    analysis_frame: pl.DataFrame
    episode_summary: pl.DataFrame
    alerts: pl.DataFrame
    outcomes: pl.DataFrame
    scored_measures: pl.DataFrame
    scoring_problems: pl.DataFrame
    data_cut: date | None
    config: ClinicalConfig
    work_assessments: pl.DataFrame = field(default_factory=pl.DataFrame)
    return_to_work: pl.DataFrame = field(default_factory=pl.DataFrame)
    work_episodes: pl.DataFrame = field(default_factory=pl.DataFrame)


def _measures_with_scores(
    tables: dict[str, pl.DataFrame], config: ClinicalConfig
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Recorded measures plus questionnaire scores for any (episode, date, measure) not already recorded."""
    measures = tables["measures"]
    for col, dtype in (
        ("stopped_reason", pl.String),
        ("cap_min", pl.Float64),
        ("instrument_version", pl.String),
    ):
        if col not in measures.columns:
            measures = measures.with_columns(pl.lit(None, dtype).alias(col))
    measures = measures.select(
        "episode_id",
        "assessed_on",
        "measure",
        pl.col("value").cast(pl.Float64),
        "stopped_reason",
        "cap_min",
        "instrument_version",
    )
    items = tables["questionnaire_items"]
    if items.height:
        scored = score_questionnaires(items, config)
        extra = scored.measures.join(measures, on=_KEY, how="anti").select(measures.columns)
        return pl.concat([measures, extra], how="vertical_relaxed"), scored.measures, scored.problems
    empty = score_questionnaires(items.clear() if items.width else _empty_items(), config)
    return measures, empty.measures, empty.problems


def _empty_items() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "episode_id": pl.String,
            "assessed_on": pl.Date,
            "instrument": pl.String,
            "item": pl.String,
            "response": pl.Int64,
        }
    )


def _outcomes(tables: dict[str, pl.DataFrame], config: ClinicalConfig) -> tuple[pl.DataFrame, ...]:
    measures, scored, problems = _measures_with_scores(tables, config)
    ep = tables["episodes"]
    end = pl.col("end_date") if "end_date" in ep.columns else pl.lit(None, pl.Date).alias("end_date")
    long = measures.join(ep.select("episode_id", "start_date", end), on="episode_id", how="inner")
    long = flag_end_of_episode(change_from_baseline(assign_visits(long, config), config), config)
    return long.drop("end_date").sort(_KEY), scored, problems


def outcome_measures(
    source: Source, config: ClinicalConfig | None = None, data_cut: date | None = None
) -> pl.DataFrame:
    """Long outcome table: every measure with its visit, baseline, change and responder flags.

    Parameters
    ----------
    source : Store, str, Path or Mapping[str, polars.DataFrame]
        A store, the path of a DuckDB store, or canonical tables (as ``generate_cohort(...).tables``).
    config : ClinicalConfig, optional
        Thresholds (defaults to ``ClinicalConfig()``).
    data_cut : date, optional
        Accepted for symmetry with the other frames; measures are used as recorded.

    Returns
    -------
    polars.DataFrame
        Recorded measures plus questionnaire scores not already recorded, with the columns added by
        :func:`~sciatica_outcomes.scoring.assign_visits`,
        :func:`~sciatica_outcomes.scoring.change_from_baseline` and
        :func:`~sciatica_outcomes.scoring.visits.flag_end_of_episode` (``at_end``: an end-of-episode
        assessment, within ``end_window_days`` of the episode's end).
    """
    config = config or ClinicalConfig()
    return _outcomes(load_tables(source), config)[0]


def _ordered_measures(present: list[str]) -> list[str]:
    order = measure_catalog()["code"].to_list()
    known = [m for m in order if m in present]
    return known + sorted(m for m in present if m not in order)


def _analysis(
    tables: dict[str, pl.DataFrame],
    long: pl.DataFrame,
    adherence: pl.DataFrame,
    config: ClinicalConfig,
    data_cut: date | None,
    capped_measures: Sequence[str] | None = None,
) -> pl.DataFrame:
    measures = _ordered_measures(long["measure"].unique().to_list())
    index = ["episode_id", "assessed_on"]
    rows = long.group_by(index).agg(pl.col("day").first(), pl.col("week").first(), pl.col("visit").first())
    values = long.pivot(on="measure", index=index, values="value", aggregate_function="first")
    change = long.pivot(on="measure", index=index, values="change", aggregate_function="first").rename(
        {m: f"{m}_change" for m in measures if m in long["measure"]}, strict=False
    )
    # measures with a capped test anywhere (``capped_measures``: given by the batched derive, which sees
    # one range of episodes at a time) get a ``_censored`` column
    capped = (
        long.filter(pl.col("stopped_reason").is_not_null().any().over("measure"))
        if capped_measures is None
        else long.filter(pl.col("measure").is_in(list(capped_measures)))
    )
    cens_cols: list[str] = []
    frame = rows.join(values, on=index, how="left").join(change, on=index, how="left")
    if capped.height:
        cens = capped.pivot(on="measure", index=index, values="censored", aggregate_function="first")
        cens_cols = [f"{m}_censored" for m in measures if m in cens.columns]
        frame = frame.join(
            cens.rename({m: f"{m}_censored" for m in cens.columns if m not in index}), on=index, how="left"
        )
    base = (
        long.filter(pl.col("visit") == "w0")
        .pivot(on="measure", index="episode_id", values="value", aggregate_function="first")
        .rename(lambda c: c if c == "episode_id" else f"baseline_{c}")
    )
    frame = frame.join(base, on="episode_id", how="left")
    ep = tables["episodes"]
    cov_exprs = [
        (pl.col(src).cast(dtype) if src in ep.columns else pl.lit(None, dtype)).alias(dst)
        for src, dst, dtype in _COVARIATES
    ]
    frame = frame.join(
        ep.select("episode_id", "patient_id", "clinic_id", *cov_exprs), on="episode_id", how="left"
    )
    # adherence so far: completed sessions in the program window up to the assessment date
    win = episode_windows(ep, config, data_cut)
    frame = frame.with_columns(_completed_so_far(tables["sessions"], win, frame).alias("_done"))
    frame = (
        frame.join(win.select("episode_id", "start_date", "exposure_end", "spw"), on="episode_id", how="left")
        .with_columns(
            (
                (pl.min_horizontal("assessed_on", "exposure_end") - pl.col("start_date")).dt.total_days() + 1
            ).alias("_days_so_far")
        )
        .with_columns(
            pl.when((pl.col("day") > 0) & (pl.col("_days_so_far") > 0))
            .then(pl.col("_done").fill_null(0) / (pl.col("spw") * pl.col("_days_so_far") / 7.0))
            .alias("adherence_so_far")
        )
        .join(adherence.select("episode_id", pl.col("adherence").alias("adherence_overall")), on="episode_id")
    )
    outcome_cols = [m for m in measures if m in frame.columns]
    change_cols = [f"{m}_change" for m in measures if f"{m}_change" in frame.columns]
    base_cols = [f"baseline_{m}" for m in measures if f"baseline_{m}" in frame.columns]
    return frame.select(
        "episode_id",
        "patient_id",
        "clinic_id",
        "therapist_id",
        "assessed_on",
        "day",
        "week",
        "visit",
        *outcome_cols,
        *cens_cols,
        *change_cols,
        *base_cols,
        "age",
        "sex",
        "symptom_duration_weeks",
        "affected_side",
        "prescribed_sessions_per_week",
        "adherence_so_far",
        "adherence_overall",
    ).sort("episode_id", "assessed_on")


def _completed_so_far(sessions: pl.DataFrame, win: pl.DataFrame, frame: pl.DataFrame) -> pl.Series:
    """Completed sessions of the episode's program window on or before each row's ``assessed_on``.

    Null when the episode has none by then (an as-of join backward by episode, computed as a binary
    search of the integer key ``(episode rank, day)`` over the running counts).
    """
    comp = _inside(sessions, win).filter(pl.col("status") == "completed")
    ranks = win.select("episode_id", pl.col("episode_id").rank("dense").cast(pl.Int64).alias("_ek")).unique(
        "episode_id"
    )
    rows = frame.select("episode_id", "assessed_on").join(
        ranks, on="episode_id", how="left", maintain_order="left"
    )
    dates = pl.concat([comp["session_date"], rows["assessed_on"]])
    day0, day1 = dates.min(), dates.max()
    if comp.height == 0 or not isinstance(day0, date) or not isinstance(day1, date):
        return pl.Series("_done", [None] * frame.height, dtype=pl.UInt32)
    n_days = (day1 - day0).days + 1
    n_e = max_int(ranks["_ek"]) + 1
    day = (pl.col("_date") - pl.lit(day0, pl.Date)).dt.total_days()
    key = combined_code([("_ek", n_e), ("_day", n_days)])
    counts = (
        sort_by_code(
            comp.select("_ek", pl.col("session_date").alias("_date"))
            .with_columns(day.alias("_day"))
            .with_columns(key.alias("_o")),
            "_o",
        )
        .group_by("_o", maintain_order=True)
        .agg(pl.col("_ek").first(), pl.len().alias("_n"))
        .with_columns(pl.col("_n").cum_sum().over("_ek").alias("_cum"))
    )
    probe = rows.select("_ek", pl.col("assessed_on").alias("_date")).with_columns(day.alias("_day"))
    probe_key = probe.select(key.alias("_o"))["_o"]
    known = probe_key.is_not_null().to_numpy()
    keys = counts["_o"].to_numpy()
    pos = np.searchsorted(keys, probe_key.fill_null(-1).to_numpy(), side="right") - 1
    ek = counts["_ek"].to_numpy()
    found = known & (pos >= 0) & (ek[np.clip(pos, 0, None)] == probe["_ek"].fill_null(-1).to_numpy())
    return pl.Series("_done", counts["_cum"].to_numpy()[np.clip(pos, 0, None)]).scatter(
        np.flatnonzero(~found), None
    )


def _summary(
    tables: dict[str, pl.DataFrame],
    long: pl.DataFrame,
    adherence: pl.DataFrame,
    pain: pl.DataFrame,
    progression: pl.DataFrame,
    alerts: pl.DataFrame,
) -> pl.DataFrame:
    ep = tables["episodes"]
    keep = [
        c
        for c in (
            "episode_id",
            "patient_id",
            "clinic_id",
            "therapist_id",
            "program",
            "start_date",
            "end_date",
            "end_reason",
            "age_at_start",
            "sex",
            "symptom_duration_weeks",
            "affected_side",
        )
        if c in ep.columns
    ]
    red = alerts.filter(pl.col("kind") == "red_flag")
    alert_counts = (
        alerts.group_by("episode_id")
        .agg(
            (pl.col("kind") == "red_flag").sum().alias("n_red_flag_alerts"),
            (pl.col("unactioned").fill_null(False)).sum().alias("n_unactioned_red_flags"),
            (pl.col("kind") == "neuro_worsening").sum().alias("n_neuro_worsening_alerts"),
        )
        .join(
            red.group_by("episode_id").agg(pl.col("date").min().alias("first_red_flag_on")),
            on="episode_id",
            how="left",
        )
    )
    follow = (
        long.filter(pl.col("visit").is_not_null() & (pl.col("visit") != "w0"))
        .sort("day")
        .group_by("episode_id", "measure")
        .agg(
            pl.col("visit").last().alias("last_visit"),
            pl.col("change").last(),
            pl.col("responder_mcid").last(),
            pl.col("censored").last(),
        )
    )
    measures = _ordered_measures(long["measure"].unique().to_list())
    wide = ep.select("episode_id")
    base = long.filter(pl.col("visit") == "w0").pivot(
        on="measure", index="episode_id", values="value", aggregate_function="first"
    )
    wide = wide.join(
        base.rename(lambda c: c if c == "episode_id" else f"baseline_{c}"), on="episode_id", how="left"
    )
    if follow.height:
        for col in ("last_visit", "change", "responder_mcid"):
            piv = follow.pivot(on="measure", index="episode_id", values=col, aggregate_function="first")
            wide = wide.join(
                piv.rename({c: f"{c}_{col}" for c in piv.columns if c != "episode_id"}),
                on="episode_id",
                how="left",
            )
    ordered = ["episode_id"] + [
        c
        for m in measures
        for c in (f"baseline_{m}", f"{m}_last_visit", f"{m}_change", f"{m}_responder_mcid")
        if c in wide.columns
    ]
    out = (
        ep.select(keep)
        .join(adherence, on="episode_id", how="left")
        .join(pain, on="episode_id", how="left")
        .join(progression, on="episode_id", how="left")
        .join(alert_counts, on="episode_id", how="left")
        .with_columns(
            pl.col("n_red_flag_alerts", "n_unactioned_red_flags", "n_neuro_worsening_alerts")
            .fill_null(0)
            .cast(pl.Int64)
        )
        .join(wide.select(ordered), on="episode_id", how="left")
    )
    return out.sort("episode_id")


def derive_all(source: Source, config: ClinicalConfig | None = None, data_cut: date | None = None) -> Derived:
    """Derive every frame of the stage in one pass over the canonical tables.

    Parameters
    ----------
    source : Store, str, Path or Mapping[str, polars.DataFrame]
        A store, the path of a DuckDB store, or canonical tables.
    config : ClinicalConfig, optional
        Thresholds (defaults to ``ClinicalConfig()``).
    data_cut : date, optional
        Last date the data cover; defaults to the latest date found in the tables.

    Returns
    -------
    Derived
        Analysis frame, episode summary, alerts, long outcomes, scored questionnaires and scoring problems.
    """
    config = config or ClinicalConfig()
    tables = load_tables(source)
    return derive_tables(tables, config, resolve_data_cut(tables, data_cut))


def derive_tables(
    tables: dict[str, pl.DataFrame],
    config: ClinicalConfig,
    cut: date | None,
    capped_measures: Sequence[str] | None = None,
) -> Derived:
    """:func:`derive_all` of canonical tables already loaded, with the data cut already resolved.

    Parameters
    ----------
    tables : dict of str to polars.DataFrame
        The canonical tables (:func:`~sciatica_outcomes.derive._common.load_tables`).
    config : ClinicalConfig
        Thresholds.
    cut : date or None
        The data cut.
    capped_measures : sequence of str, optional
        Measures that have a capped test (a ``stopped_reason``) in the whole store; default: those of
        ``tables``. The batched derive (:mod:`sciatica_outcomes.derive.batched`) passes the store's, so a
        range of episodes without a capped test still gets the ``_censored`` columns the whole store has.

    Returns
    -------
    Derived
        As :func:`derive_all`.
    """
    long, scored, problems = _outcomes(tables, config)
    adherence = episode_adherence(tables["episodes"], tables["sessions"], config, cut)
    # completed sessions and their exercise rows are sorted and coded once, for pain and progression
    exercises = tables["session_exercises"]
    done = _completed_with_pain(tables["sessions"])
    extra = [pl.col("pain_during").cast(pl.Float64)] if "pain_during" in exercises.columns else []
    rows, _ = _coded_exercise_rows(done, exercises, *extra)
    coded_pain = _coded_session_pain(done, _max_pain_during(rows, done) if extra else None, config)
    sp = coded_pain.drop("_e", "_s")
    pain = episode_pain(sp, tables["episodes"], config)
    progression = _episode_progression(
        tables["episodes"], done, rows, config, coded_pain.select("_s", "flare")
    )
    alerts = red_flag_alerts(tables["symptom_checks"], tables["sessions"], config)
    work_rows = work_assessments(tables["work"], tables["episodes"], config)
    rtw = return_to_work(work_rows)
    return Derived(
        analysis_frame=_analysis(tables, long, adherence, config, cut, capped_measures),
        episode_summary=_summary(tables, long, adherence, pain, progression, alerts),
        alerts=alerts,
        outcomes=long,
        scored_measures=scored,
        scoring_problems=problems,
        data_cut=cut,
        config=config,
        work_assessments=work_rows,
        return_to_work=rtw,
        work_episodes=work_episodes(work_rows, rtw, long, config),
    )


def analysis_frame(
    source: Source, config: ClinicalConfig | None = None, data_cut: date | None = None
) -> pl.DataFrame:
    """The long analysis-ready table the models and the quarterly report use.

    Parameters
    ----------
    source : Store, str, Path or Mapping[str, polars.DataFrame]
        A store, the path of a DuckDB store, or canonical tables (as ``generate_cohort(...).tables``).
    config : ClinicalConfig, optional
        Thresholds (defaults to ``ClinicalConfig()``).
    data_cut : date, optional
        Last date the data cover; defaults to the latest date found in the tables.

    Returns
    -------
    polars.DataFrame
        One row per episode x assessment date, sorted by ``episode_id, assessed_on``:

        - ``episode_id, patient_id, clinic_id, therapist_id``: identifiers;
        - ``assessed_on``, ``day`` (days since start), ``week`` (``day / 7``), ``visit`` ("w0" baseline,
          configured window labels such as "w6", "w12", "w26"; null outside the windows);
        - one column per outcome measure present (e.g. ``walk_tolerance_min, sit_tolerance_min, nprs_leg,
          nprs_back, odi, rmdq, sbi, psfs, grc``), on the measure's own scale (recorded measures, plus
          questionnaire scores where no measure was recorded);
        - ``<m>_censored`` for tests with a ``stopped_reason`` (true = stopped at the cap: the value is a
          lower bound, not the true tolerance);
        - ``<m>_change``: value minus the episode's baseline of the same measure (null across instrument
          versions);
        - ``baseline_<m>``: the baseline value of every measure;
        - ``age, sex, symptom_duration_weeks, affected_side, prescribed_sessions_per_week``: baseline
          covariates;
        - ``adherence_so_far``: completed sessions in the program window up to the assessment date over
          ``spw x days so far / 7`` (null at baseline, ``day <= 0``); ``adherence_overall``: the episode's
          adherence ratio.

    Notes
    -----
    Visits, baseline and change follow :func:`~sciatica_outcomes.scoring.assign_visits` and
    :func:`~sciatica_outcomes.scoring.change_from_baseline`; adherence follows
    :func:`~sciatica_outcomes.derive.episode_adherence`.
    """
    return derive_all(source, config, data_cut).analysis_frame


def episode_summary(
    source: Source, config: ClinicalConfig | None = None, data_cut: date | None = None
) -> pl.DataFrame:
    """One row per episode: adherence, dropout, pain response, progression, alerts and outcome change.

    Parameters
    ----------
    source : Store, str, Path or Mapping[str, polars.DataFrame]
        A store, the path of a DuckDB store, or canonical tables.
    config : ClinicalConfig, optional
        Thresholds (defaults to ``ClinicalConfig()``).
    data_cut : date, optional
        Last date the data cover; defaults to the latest date found in the tables.

    Returns
    -------
    polars.DataFrame
        Episode attributes, the columns of :func:`~sciatica_outcomes.derive.episode_adherence`,
        :func:`~sciatica_outcomes.derive.episode_pain` and
        :func:`~sciatica_outcomes.derive.episode_progression`,
        alert counts (``n_red_flag_alerts, n_unactioned_red_flags, n_neuro_worsening_alerts,
        first_red_flag_on``) and per outcome ``baseline_<m>, <m>_last_visit, <m>_change,
        <m>_responder_mcid`` at the last follow-up visit.
    """
    return derive_all(source, config, data_cut).episode_summary
