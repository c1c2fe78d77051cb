"""Work outcomes: WPAI:SHP scores, Work Ability Score responders and the patient's global verdict.

WPAI:SHP (Work Productivity and Activity Impairment questionnaire, specific health problem; Reilly et al.,
PharmacoEconomics 1993;4:353; free to use from its authors). From the six answers of a ``work`` row
(``schemas.work``), as proportions reported in percent (x 100):

- absenteeism (work time missed) ``= Q2 / (Q2 + Q4)``;
- presenteeism (impairment while working) ``= Q5 / 10``;
- overall work impairment ``= Q2 / (Q2 + Q4) + (1 - Q2 / (Q2 + Q4)) x Q5 / 10``;
- activity impairment ``= Q6 / 10``.

Questions 2-5 are asked only of people in paid work (Q1 = yes); the ingest engine refuses them otherwise.
A score that cannot be computed is null and its ``*_reason`` column says why (:data:`WPAI_REASONS`); a score
that exists has a null reason. Two conventions that follow from the formulas, stated so they can be checked:

- absenteeism is undefined when ``Q2 + Q4 = 0`` (no working time at all in the 7 days: domain.md §8);
- presenteeism needs ``Q4 > 0``: whoever did not work in the 7 days is told to skip Q5, so a Q5 given with
  ``Q4 = 0`` is not scored; overall work impairment then equals absenteeism (1, i.e. 100 %, when Q2 > 0),
  because the presenteeism term is multiplied by ``1 - absenteeism = 0``.

Work Ability Score (WAS: the first item of the Work Ability Index, 0-10, higher better; Ilmarinen, Occup Med
2007;57:160; Ahlstrom et al., Scand J Work Environ Health 2010;36:404): a responder improved by at least the
smallest detectable change, ``ClinicalConfig.mcid["was"].absolute`` = 1.92 points (ICC 0.89 in sick-listed
chronic musculoskeletal pain). **VERIFY**: domain.md §8 takes this SDC from a thesis, not yet from a primary
text; it is a configured value, override it when a verified one is available.

Global verdict: on the 7-point patient global impression of change (measure ``pgic``: 1 completely recovered,
2 much better, 3 slightly better, 4 unchanged, 5 slightly worse, 6 much worse, 7 worse than ever) success
is "completely recovered" or "much better", ``pgic <= ClinicalConfig.pgic_success_max`` (= 2) (Haugen et
al., 2011, PMC3175874; Kamper et al., J Man Manip Ther 2009;17:163).
"""

from __future__ import annotations

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import UnusableInputError

__all__ = ["WPAI_REASONS", "WPAI_SCORES", "pgic_success", "was_responder", "wpai_scores"]

#: The four WPAI:SHP scores, in percent (columns added by :func:`wpai_scores`).
WPAI_SCORES: tuple[str, ...] = (
    "wpai_absenteeism_pct",
    "wpai_presenteeism_pct",
    "wpai_work_impairment_pct",
    "wpai_activity_impairment_pct",
)
#: Why a WPAI:SHP score is undefined (the ``*_reason`` columns).
WPAI_REASONS: dict[str, str] = {
    "not_employed": "question 1 answered no: the work scores apply only to people in paid work",
    "q1_missing": "question 1 (currently employed) not answered",
    "hours_missing": "question 2 or 4 (hours missed because of the problem, hours worked) not answered",
    "no_work_time": "no hours missed or worked in the 7 days (Q2 + Q4 = 0): absenteeism is 0 / 0",
    "did_not_work": "no hours worked in the 7 days (Q4 = 0): there is no productivity while working",
    "q5_missing": "question 5 (effect while working) not answered",
    "q6_missing": "question 6 (effect on regular activities) not answered",
}

_ITEMS = (
    "wpai_q1_employed",
    "wpai_q2_hours_missed_health",
    "wpai_q4_hours_worked",
    "wpai_q5_work_impairment",
    "wpai_q6_activity_impairment",
)


def _reason(*cases: tuple[pl.Expr, str]) -> pl.Expr:
    """The first reason whose condition holds (null when none does)."""
    out: pl.Expr = pl.lit(None, pl.String)
    for cond, code in reversed(cases):
        out = pl.when(cond).then(pl.lit(code)).otherwise(out)
    return out


def wpai_scores(work: pl.DataFrame) -> pl.DataFrame:
    """Add the four WPAI:SHP scores (percent) and the reason each undefined one is null.

    Parameters
    ----------
    work : polars.DataFrame
        Rows of the ``work`` table (at least ``wpai_q1_employed, wpai_q2_hours_missed_health,
        wpai_q4_hours_worked, wpai_q5_work_impairment, wpai_q6_activity_impairment``).

    Returns
    -------
    polars.DataFrame
        The input with :data:`WPAI_SCORES` (Float64, 0-100) and, for each, ``<score>_reason`` (String, a
        code of :data:`WPAI_REASONS`, null when the score is defined). No row is dropped.

    Raises
    ------
    UnusableInputError
        If a WPAI column is missing.

    Notes
    -----
    With ``A = Q2 / (Q2 + Q4)`` and ``P = Q5 / 10``: absenteeism ``100 A``, presenteeism ``100 P`` (Q4 > 0),
    overall work impairment ``100 (A + (1 - A) P)`` (``100 A`` when Q4 = 0), activity impairment
    ``100 Q6 / 10``. Vectorised polars expressions; no loop over rows.

    Validated against: ten hand-worked examples in ``tests/scoring/test_work.py`` (Reilly et al. 1993
    scoring rules as given in domain.md §8).
    """
    missing = [c for c in _ITEMS if c not in work.columns]
    if missing:
        raise UnusableInputError(f"wpai_scores needs the WPAI:SHP columns {missing} of the work table")
    q1 = pl.col("wpai_q1_employed")
    q2 = pl.col("wpai_q2_hours_missed_health").cast(pl.Float64)
    q4 = pl.col("wpai_q4_hours_worked").cast(pl.Float64)
    q5 = pl.col("wpai_q5_work_impairment").cast(pl.Float64)
    q6 = pl.col("wpai_q6_activity_impairment").cast(pl.Float64)
    not_employed = q1.is_not_null() & ~q1
    no_q1 = q1.is_null()
    no_hours = q2.is_null() | q4.is_null()
    abs_reason = _reason(
        (no_q1, "q1_missing"),
        (not_employed, "not_employed"),
        (no_hours, "hours_missing"),
        (q2 + q4 == 0, "no_work_time"),
    )
    pres_reason = _reason(
        (no_q1, "q1_missing"),
        (not_employed, "not_employed"),
        (q4.is_null(), "hours_missing"),
        (q4 == 0, "did_not_work"),
        (q5.is_null(), "q5_missing"),
    )
    # in percent directly (100 A, 10 Q5, 10 Q6), so whole answers give exact percentages
    absent = 100.0 * q2 / (q2 + q4)
    present = 10.0 * q5
    # overall: defined with absenteeism; the presenteeism term is needed only when some work was done
    work_reason = pl.coalesce(abs_reason, pl.when(q4 > 0).then(pres_reason))
    overall = pl.when(q4 > 0).then(absent + (100.0 - absent) * q5 / 10.0).otherwise(absent)
    act_reason = _reason((q6.is_null(), "q6_missing"))
    scored = (
        (absent, abs_reason),
        (present, pres_reason),
        (overall, work_reason),
        (10.0 * q6, act_reason),
    )
    return work.with_columns(
        expr
        for name, (value, reason) in zip(WPAI_SCORES, scored, strict=True)
        for expr in (
            pl.when(reason.is_null()).then(value).otherwise(None).cast(pl.Float64).alias(name),
            reason.alias(f"{name}_reason"),
        )
    )


def was_responder(change: pl.Expr, config: ClinicalConfig | None = None) -> pl.Expr:
    """Work Ability Score responder: improvement (``change``, higher better) of at least the SDC.

    Parameters
    ----------
    change : polars.Expr
        Follow-up WAS minus baseline WAS.
    config : ClinicalConfig, optional
        ``mcid["was"].absolute`` is the threshold (1.92 points; VERIFY, see the module docstring).

    Returns
    -------
    polars.Expr
        Boolean; null where ``change`` is null.
    """
    config = config or ClinicalConfig()
    sdc = config.mcid["was"].absolute
    if sdc is None:
        raise UnusableInputError("mcid.was.absolute (the Work Ability Score SDC) is not configured")
    return change >= sdc


def pgic_success(pgic: pl.Expr, config: ClinicalConfig | None = None) -> pl.Expr:
    """Success on the 7-point PGIC: "completely recovered" or "much better" (``pgic <= pgic_success_max``).

    Parameters
    ----------
    pgic : polars.Expr
        The ``pgic`` measure (1-7, 1 = completely recovered).
    config : ClinicalConfig, optional
        ``pgic_success_max`` (default 2; Haugen et al. 2011).

    Returns
    -------
    polars.Expr
        Boolean; null where ``pgic`` is null.
    """
    config = config or ClinicalConfig()
    return pgic <= config.pgic_success_max
