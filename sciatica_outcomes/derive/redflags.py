"""Red-flag alerts for clinician review: symptom checks, session red-flag fields, sustained distal spread.

The toolkit flags for review; it never diagnoses. An alert with no action recorded is *unactioned* and every
report must show it.
"""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive._common import run_codes
from sciatica_outcomes.schemas.vocabulary import ACTION_NONE, SYMPTOM_EXTENTS

__all__ = ["ALERT_COLUMNS", "SYMPTOM_EXTENT_ORDER", "red_flag_alerts"]

#: Symptom extent from proximal to distal (domain.md §3: log the most distal extent per session).
SYMPTOM_EXTENT_ORDER: tuple[str, ...] = SYMPTOM_EXTENTS

#: Columns of the alerts frame (and of ``alerts.csv``).
ALERT_COLUMNS: tuple[str, ...] = (
    "episode_id",
    "date",
    "kind",
    "source",
    "flags",
    "action_taken",
    "unactioned",
)

_NO_ACTION = ("", ACTION_NONE)


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "episode_id": pl.String,
            "date": pl.Date,
            "kind": pl.String,
            "source": pl.String,
            "flags": pl.String,
            "action_taken": pl.String,
            "unactioned": pl.Boolean,
        }
    )


def _boolean_alerts(frame: pl.DataFrame, date_col: str, source: str, fields: list[str]) -> pl.DataFrame:
    if not fields or frame.height == 0:
        return _empty()
    action = (
        pl.col("action_taken").cast(pl.String).str.strip_chars()
        if "action_taken" in frame.columns
        else pl.lit(None, pl.String)
    )
    flagged = frame.with_columns(pl.col(fields).cast(pl.Boolean).fill_null(False)).filter(
        pl.any_horizontal(fields)
    )
    names = pl.concat_list([pl.when(pl.col(f)).then(pl.lit(f)) for f in fields]).list.drop_nulls()
    return flagged.select(
        pl.col("episode_id").cast(pl.String),
        pl.col(date_col).cast(pl.Date).alias("date"),
        pl.lit("red_flag").alias("kind"),
        pl.lit(source).alias("source"),
        names.list.join(";").alias("flags"),
        action.alias("action_taken"),
        (action.is_null() | action.str.to_lowercase().is_in(list(_NO_ACTION))).alias("unactioned"),
    )


def red_flag_alerts(
    symptom_checks: pl.DataFrame,
    sessions: pl.DataFrame | None = None,
    config: ClinicalConfig | None = None,
) -> pl.DataFrame:
    """Every red-flag alert, one row per flagged check or session run.

    Parameters
    ----------
    symptom_checks : polars.DataFrame
        Canonical symptom checks (boolean red-flag fields, optional ``action_taken``).
    sessions : polars.DataFrame, optional
        Canonical sessions; red-flag boolean fields present on sessions are screened too, and
        ``symptom_extent`` is scanned for sustained distal spread.
    config : ClinicalConfig, optional
        ``red_flag_fields``, ``peripheralisation_levels`` and ``peripheralisation_sessions``.

    Returns
    -------
    polars.DataFrame
        Columns :data:`ALERT_COLUMNS`, unactioned red flags first, then by kind and date: ``kind`` is
        "red_flag" (a check or session with any configured red-flag field true) or "neuro_worsening"
        (sustained distal spread); ``flags`` lists the fields that were true (``;``-separated);
        ``unactioned`` is true when no action is recorded (null, empty or "none").

    Notes
    -----
    Red flag: any of ``saddle_numbness, bladder_bowel_change, progressive_weakness, bilateral_symptoms,
    new_numbness`` true (BMJ Best Practice CES; NHS Lothian RefHelp; NICE CKS sciatica; domain.md §3).
    Sustained distal spread: ``peripheralisation_sessions`` (3) consecutive completed sessions whose
    ``symptom_extent`` is at least ``peripheralisation_levels`` (2) levels more distal than the episode's
    first recorded extent (Albert et al., Eur Spine J 2012;21:630); one alert per run, dated at the session
    that completes the run. It is a review signal, not a red flag: sessions record no action, so its
    ``unactioned`` is null and it sorts after the red flags.

    Validated against: the planted red-flag screens of the synthetic cohort, all found and none invented
    (``tests/derive/test_redflags.py``).
    """
    config = config or ClinicalConfig()
    fields = list(config.red_flag_fields)
    parts = [_empty()]
    present = [f for f in fields if f in symptom_checks.columns]
    parts.append(_boolean_alerts(symptom_checks, "checked_on", "symptom_check", present))
    if sessions is not None and sessions.height:
        sess_fields = [f for f in fields if f in sessions.columns]
        parts.append(_boolean_alerts(sessions, "session_date", "session", sess_fields))
        if "symptom_extent" in sessions.columns:
            parts.append(_spread_alerts(sessions, config))
    return (
        pl.concat(parts, how="vertical_relaxed")
        .select(ALERT_COLUMNS)
        .sort(
            [pl.col("unactioned").fill_null(False), pl.col("kind") != "red_flag", "date", "episode_id"],
            descending=[True, False, False, False],
        )
    )


def _spread_alerts(sessions: pl.DataFrame, config: ClinicalConfig) -> pl.DataFrame:
    order = {name: i for i, name in enumerate(SYMPTOM_EXTENT_ORDER)}
    s = (
        sessions.filter((pl.col("status") == "completed") & pl.col("symptom_extent").is_not_null())
        .select(
            "episode_id",
            "session_date",
            pl.col("symptom_extent").replace_strict(order, default=None, return_dtype=pl.Int64).alias("_lv"),
        )
        .filter(pl.col("_lv").is_not_null())
        .sort("episode_id", "session_date")
    )
    # sorted by episode: integer run codes replace string-keyed windows
    s = s.with_columns(run_codes("episode_id").alias("_e"))
    s = s.with_columns(
        ((pl.col("_lv") - pl.col("_lv").first().over("_e")) >= config.peripheralisation_levels).alias(
            "_spread"
        )
    ).with_columns(run_codes("_e", "_spread").alias("_run"))
    s = s.with_columns(pl.int_range(pl.len()).over("_run").alias("_pos"))
    hits = s.filter(pl.col("_spread") & (pl.col("_pos") == config.peripheralisation_sessions - 1))
    return hits.select(
        pl.col("episode_id").cast(pl.String),
        pl.col("session_date").alias("date"),
        pl.lit("neuro_worsening").alias("kind"),
        pl.lit("session").alias("source"),
        pl.format(
            "sustained_peripheralisation: {} sessions >= {} levels more distal than the first session",
            pl.lit(config.peripheralisation_sessions),
            pl.lit(config.peripheralisation_levels),
        ).alias("flags"),
        pl.lit(None, pl.String).alias("action_taken"),
        pl.lit(None, pl.Boolean).alias("unactioned"),
    )
