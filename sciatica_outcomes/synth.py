"""Calibrated synthetic cohort with known ground truth.

The generator writes the six canonical tables of ``DESIGN.md`` (episodes, sessions, session_exercises,
measures, questionnaire_items, symptom_checks) for a strength-training program in chronic sciatica, plus a
``truth.json`` with every generating parameter and every planted event, so that ingest, derivations and models
can be tested against known truth.

Generating model
----------------
For patient ``i`` in clinic ``c``, outcome ``k`` and time ``t`` (weeks since episode start, negative baseline
days count as 0) the latent value is

.. math::

    y_{ik}(t) = \\mu_k + \\beta^{age}_k (age_i - 48) + a_{ck} + u_{0ik}
        + \\left(\\rho_k + \\gamma_k (p_i - \\bar p) + r_{ck} + u_{1ik}\\right) g(t) + \\varepsilon_{ikt},

    g(t) = \\tau \\left(1 - e^{-t/\\tau}\\right),

so ``g'(0) = 1`` and ``rho_k`` is the population rate of change per week at the start of the program, and the
curve approaches a plateau: with the default ``tau = 12`` weeks, 71 % of the 26-week change is reached by
week 12 (``g(12) / g(26)``). ``p_i`` is the patient's adherence propensity (probability of attending each
prescribed session, Beta distributed), ``(u_0, u_1)`` are bivariate normal patient random effects with the
stated SDs and correlation, ``a_c, r_c`` clinic random intercept and slope effects, and ``epsilon`` the
measurement error. Walking and sitting tolerance are generated on the log-minute scale and measured by a test
capped at ``cap_min`` (value = cap and ``stopped_reason = "cap"`` when the latent tolerance exceeds the cap).

Missing data: between consecutive program visits a patient drops out with probability
``logistic(b0 + b_w * max(0, last observed leg pain - baseline leg pain) + b_a * (pbar - p_i))`` (missing at
random: it depends only on observed worsening and observed adherence); intermittent visits are missed
completely at random; the discharge (week 12) and follow-up (week 26) measures are missing for completers with
their own probabilities (the APTA registry saw only 30 % discharge capture); a few episodes end early by
surgery or injection.

Work and the global verdict (:func:`_work_tables`, its own random stream): employment at enrolment; for paid
workers a work status at every attended visit from a random-intercept logistic model on the week, the most
recent recorded ODI and the recorded share of sessions completed, whose parameters are planted in
``truth["work"]["glmm"]`` (conditional, subject-specific log odds: the scale of the fitted GLMM);
return-to-work dates, hours, sick leave and WPAI:SHP answers consistent with the status; the Work Ability
Score, PGIC, satisfaction and EQ-5D index and VAS from the latent ODI and its change.

Calibration (``shared/domain.md`` §7): baseline ODI ~ N(42, 14) (SPORT nonoperative 40.6-43.5), leg NPRS
~ N(6, 1.8), ODI change about -19 at 26 weeks (SPORT -17 to -25), leg pain 6 -> 3 (Albert & Manniche 2012:
4.4 -> 1.4), walking test capped at 30 min with about 5 % at cap at baseline rising to about 30-45 %
(Rainville 2012: 6 % -> 46 %), dropout 20-35 %.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import special

from sciatica_outcomes._typing import BoolArray, FloatArray, IntArray
from sciatica_outcomes.schemas.vocabulary import (
    AT_WORK_STATUSES,
    CANONICAL_TABLES,
    EMPLOYMENT_STATUSES,
    EXERCISE_CODES,
    MUSCLE_GROUPS,
    ODI_SECTIONS,
    OFF_WORK_BACK_LEG,
    PAID_WORK_STATUSES,
    RED_FLAG_COLUMNS,
    SCIATICA_ITEMS,
    SESSION_STATUSES,
    SIDES,
    STOPPED_REASONS,
    SYMPTOM_EXTENTS,
    WORK_NOT_APPLICABLE,
    WORK_STATUSES,
)
from sciatica_outcomes.schemas.vocabulary import BANDS as ALL_BANDS

__all__ = [
    "TABLES",
    "Cohort",
    "OutcomeParams",
    "SynthConfig",
    "cohort_summary",
    "effective_weeks",
    "generate_cohort",
    "write_cohort",
]

#: Canonical table names, in the order they are written.
TABLES: tuple[str, ...] = CANONICAL_TABLES

SBI_ITEMS: tuple[str, ...] = SCIATICA_ITEMS
PSFS_ITEMS: tuple[str, ...] = ("activity_1", "activity_2", "activity_3")
RED_FLAG_FIELDS: tuple[str, ...] = RED_FLAG_COLUMNS
SYMPTOM_EXTENT: tuple[str, ...] = SYMPTOM_EXTENTS
SESSION_STATUS: tuple[str, ...] = SESSION_STATUSES
#: The synthetic programs progress through the five lightest band colours.
BANDS: tuple[str, ...] = ALL_BANDS[:5]
#: Centres of the work-status model's covariates (``truth["work"]["glmm"]["design"]``): the ODI per 10 points
#: above 42 (the calibrated baseline mean) and adherence per 10 percentage points above 80 %.
WORK_ODI_CENTRE: float = 42.0
WORK_ADHERENCE_CENTRE: float = 0.8
#: The work-status GLMM whose parameters the generator plants.
WORK_GLMM_FORMULA = "at_work ~ week + odi_10 + adherence_10 + (1 | episode_id)"


@dataclass(frozen=True)
class OutcomeParams:
    """Generating parameters of one outcome (see the module docstring for the model).

    Parameters
    ----------
    intercept : float
        Population mean at week 0 (log-minutes for tolerance outcomes).
    sd_intercept, sd_rate : float
        Between-patient SDs of the random intercept and of the random rate.
    corr : float
        Correlation of the patient random intercept and rate.
    rate : float
        Population change per effective week ``g(t)`` at mean adherence.
    adherence_effect : float
        Change in the rate per unit of adherence propensity above the population mean.
    residual_sd : float
        Measurement error SD.
    clinic_sd, clinic_rate_sd : float
        SDs of the clinic random intercept and rate effects.
    age_effect : float
        Change in the intercept per year of age above 48.
    """

    intercept: float
    sd_intercept: float
    rate: float
    sd_rate: float
    corr: float
    adherence_effect: float
    residual_sd: float
    clinic_sd: float
    clinic_rate_sd: float
    age_effect: float = 0.0


def _default_outcomes() -> dict[str, OutcomeParams]:
    return {
        "odi": OutcomeParams(42.0, 12.5, -1.8, 0.6, -0.3, -1.5, 5.0, 3.0, 0.15, 0.1),
        "nprs_leg": OutcomeParams(6.0, 1.5, -0.30, 0.12, -0.2, -0.25, 0.9, 0.3, 0.03),
        "nprs_back": OutcomeParams(4.8, 1.8, -0.20, 0.10, -0.2, -0.20, 1.0, 0.3, 0.03),
        "walk_tolerance_min": OutcomeParams(math.log(9.0), 0.65, 0.075, 0.03, 0.0, 0.08, 0.25, 0.1, 0.01),
        "sit_tolerance_min": OutcomeParams(math.log(25.0), 0.60, 0.06, 0.025, 0.0, 0.06, 0.25, 0.1, 0.01),
        "sbi": OutcomeParams(14.0, 3.5, -0.65, 0.2, -0.2, -0.5, 2.0, 0.8, 0.05),
        "psfs": OutcomeParams(3.8, 1.2, 0.30, 0.10, 0.0, 0.3, 0.8, 0.3, 0.03),
    }


@dataclass(frozen=True)
class SynthConfig:
    """All generating parameters of a synthetic cohort; written whole to ``truth.json``.

    The defaults are calibrated from ``shared/domain.md`` §7 (see the module docstring).
    """

    n_patients: int = 1000
    n_clinics: int = 8
    seed: int = 0
    enrol_start: date = date(2025, 1, 6)
    data_cut: date = date(2026, 9, 30)
    program: str = "strength_v1"
    program_weeks: int = 12
    visit_weeks: tuple[int, ...] = (0, 2, 4, 6, 8, 10, 12, 26)
    questionnaire_weeks: tuple[int, ...] = (0, 6, 12, 26)
    grc_weeks: tuple[int, ...] = (12, 26)
    discharge_week: int = 12
    followup_week: int = 26
    tau_weeks: float = 12.0
    outcomes: dict[str, OutcomeParams] = field(default_factory=_default_outcomes)
    severity_loading: float = 0.6
    responsiveness_loading: float = 0.6
    adherence_mean: float = 0.8
    adherence_concentration: float = 8.0
    walk_cap_min: float = 30.0
    sit_cap_min: float = 90.0
    fatigue_share: float = 0.15
    dropout_logit: float = -3.1
    dropout_worsening: float = 0.6
    dropout_adherence: float = 2.0
    intermittent_missing: float = 0.05
    discharge_missing: float = 0.25
    followup_missing: float = 0.35
    ice_prob: float = 0.03
    flare_prob: float = 0.03
    flare_settle_prob: float = 0.75
    #: planted decline of flare risk: odds ratio per program week (centred at mid-program, where the
    #: probability is ``flare_prob`` for a typical patient) and the SD of the patient's log-odds
    flare_odds_ratio_per_week: float = 0.93
    flare_patient_sd: float = 0.6
    red_flag_prob: float = 0.005
    red_flag_unactioned_prob: float = 0.2
    progression_interval_probs: tuple[float, float, float] = (0.3, 0.55, 0.15)
    stall_prob: float = 0.12
    odi_missing_section_prob: float = 0.08
    pain_next_day_missing: float = 0.05
    #: work (``_work_tables``): employment mix at enrolment in the order of ``EMPLOYMENT_STATUSES``; patients
    #: at or above ``retirement_age`` are retired
    employment_mix: tuple[float, ...] = (0.60, 0.08, 0.03, 0.05, 0.06, 0.13, 0.05)
    retirement_age: int = 67
    #: work status of paid workers, a random-intercept logistic model (``_work_tables``): logit P(at work) =
    #: work_intercept + work_week_effect * week + work_odi_effect * (recorded ODI - 42) / 10
    #: + work_adherence_effect * 10 * (recorded adherence - 0.8) + u_i, u_i ~ N(0, work_patient_sd^2)
    work_intercept: float = 0.8
    work_week_effect: float = 0.06
    work_odi_effect: float = -0.8
    work_adherence_effect: float = 0.25
    work_patient_sd: float = 2.5
    #: at work with a latent logit above this margin = full duties, below it modified duties
    full_duties_margin: float = 1.5
    off_work_other_prob: float = 0.03
    #: draws of the status process behind the expected return-to-work curve in truth.json
    work_truth_draws: int = 200
    #: Work Ability Score = was_intercept + was_odi_effect * (latent ODI - 42) / 10
    #: + was_off_work_effect * [off work because of back or leg pain] + N(0, was_sd), 0-10
    was_intercept: float = 5.8
    was_odi_effect: float = -1.0
    was_off_work_effect: float = -1.5
    was_sd: float = 1.2
    #: PGIC = 1 + #(pgic_cuts >= s), satisfaction = 1 + #(satisfaction_cuts < 0.8 s + N(0, 0.6)), with
    #: s = -(latent ODI change) / 10 + N(0, 1)
    pgic_cuts: tuple[float, ...] = (2.5, 1.5, 0.5, -0.5, -1.5, -2.5)
    satisfaction_cuts: tuple[float, ...] = (-1.5, -0.5, 0.5, 1.5)
    #: EQ-5D index = eq5d_intercept + eq5d_odi_effect * latent ODI / 10 + N(0, eq5d_sd) (as given, no value
    #: set); EQ VAS = eq5d_vas_intercept + eq5d_vas_odi_effect * latent ODI / 10 + N(0, eq5d_vas_sd)
    eq5d_intercept: float = 0.95
    eq5d_odi_effect: float = -0.09
    eq5d_sd: float = 0.08
    eq5d_vas_intercept: float = 88.0
    eq5d_vas_odi_effect: float = -6.0
    eq5d_vas_sd: float = 10.0

    def __post_init__(self) -> None:
        if self.n_patients < 1:
            raise ValueError(f"n_patients must be >= 1, got {self.n_patients}")
        if self.n_clinics < 1:
            raise ValueError(f"n_clinics must be >= 1, got {self.n_clinics}")
        if self.data_cut <= self.enrol_start:
            raise ValueError(f"data_cut ({self.data_cut}) must be after enrol_start ({self.enrol_start})")
        if self.discharge_week not in self.visit_weeks or self.followup_week not in self.visit_weeks:
            raise ValueError("discharge_week and followup_week must be among visit_weeks")
        if not 0 < self.adherence_mean < 1:
            raise ValueError(f"adherence_mean must lie in (0, 1), got {self.adherence_mean}")
        if len(self.employment_mix) != len(EMPLOYMENT_STATUSES) or not math.isclose(
            sum(self.employment_mix), 1.0
        ):
            raise ValueError(
                f"employment_mix must give {len(EMPLOYMENT_STATUSES)} shares summing to 1 "
                f"({', '.join(EMPLOYMENT_STATUSES)}), got {self.employment_mix}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready data (dates as ISO strings)."""
        out = dataclasses.asdict(self)
        out["enrol_start"] = self.enrol_start.isoformat()
        out["data_cut"] = self.data_cut.isoformat()
        return out


@dataclass(frozen=True)
class Cohort:
    """A generated cohort: the canonical tables and the ground truth."""

    tables: dict[str, pl.DataFrame]
    truth: dict[str, Any]
    config: SynthConfig


def effective_weeks(weeks: npt.ArrayLike, tau: float) -> FloatArray:
    """Time transform of the generating curve, ``g(t) = tau * (1 - exp(-max(t, 0) / tau))``.

    Parameters
    ----------
    weeks : array_like
        Weeks since episode start.
    tau : float
        Time constant in weeks (``SynthConfig.tau_weeks``).

    Returns
    -------
    numpy.ndarray
        Effective weeks; ``g'(0) = 1`` so a rate per effective week is the initial rate per week.
    """
    t = np.maximum(np.asarray(weeks, dtype=np.float64), 0.0)
    out: FloatArray = tau * (1.0 - np.exp(-t / tau))
    return out


# --------------------------------------------------------------------------------------------------
# generation
# --------------------------------------------------------------------------------------------------


def _items_with_sum(rng: np.random.Generator, totals: FloatArray, n_items: int, item_max: int) -> IntArray:
    """Integer item responses in ``0..item_max`` whose row sums equal ``totals`` exactly.

    Responses start near the even share ``totals / n_items`` with noise, then the difference to the target
    is removed one unit at a time on randomly chosen items that still have room (vectorised over rows).
    """
    n = totals.shape[0]
    totals = np.clip(totals, 0, n_items * item_max).astype(np.int64)
    share = totals[:, None] / n_items
    items = np.clip(np.rint(share + rng.normal(0.0, 0.8, (n, n_items))), 0, item_max).astype(np.int64)
    for _ in range(n_items * item_max):
        diff = totals - items.sum(axis=1)
        if not diff.any():
            break
        noise = rng.random((n, n_items))
        room_up = items < item_max
        room_down = items > 0
        up = np.where(room_up, noise, -1.0).argmax(axis=1)
        down = np.where(room_down, noise, -1.0).argmax(axis=1)
        rows = np.arange(n)
        items[rows[diff > 0], up[diff > 0]] += 1
        items[rows[diff < 0], down[diff < 0]] -= 1
    return items


def _labels(names: tuple[str, ...] | list[str], codes: npt.ArrayLike) -> pl.Series:
    """String labels from integer codes into ``names`` (``-1`` = null), without a numpy string array."""
    codes = np.asarray(codes, dtype=np.int64)
    out = pl.Series(list(names), dtype=pl.String).gather(np.maximum(codes, 0))
    missing = np.flatnonzero(codes < 0)
    return out.scatter(missing, None) if missing.size else out


def _id_series(prefix: str, numbers: npt.ArrayLike, width: int) -> pl.Series:
    """Vectorised identifier codes such as ``EP000123``."""
    return (
        pl.DataFrame({"n": np.asarray(numbers, dtype=np.int64)})
        .select((pl.lit(prefix) + pl.col("n").cast(pl.String).str.zfill(width)).alias("id"))
        .to_series()
    )


def _dates(base_days: IntArray, offsets: IntArray) -> pl.Series:
    """Dates from epoch-day integers (``base_days + offsets``)."""
    return pl.Series((base_days + offsets).astype(np.int32)).cast(pl.Date)


class _Effects(TypedDict):
    """Latent per-episode and per-clinic effects of one outcome (the ground truth of its growth model)."""

    level: FloatArray
    rate: FloatArray
    clinic_intercept: FloatArray
    clinic_rate: FloatArray


def _logistic(x: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-x))
    return out


def _ffill_columns(values: FloatArray) -> FloatArray:
    """Carry the last non-NaN value of each row forward along the columns (NaN before the first one)."""
    cols = np.arange(values.shape[1])[None, :]
    idx = np.maximum.accumulate(np.where(np.isnan(values), 0, cols), axis=1)
    out: FloatArray = np.take_along_axis(values, idx, axis=1)
    return out


class _WorkRows(TypedDict):
    """The attended visits of paid workers, in episode then visit order, and the work model's covariates."""

    ep: IntArray
    day: FloatArray
    eta_fixed: FloatArray
    post: BoolArray
    first_row: IntArray
    last_row: IntArray


def _draw_status(
    cfg: SynthConfig, rng: np.random.Generator, rows: _WorkRows, n: int, reps: int
) -> tuple[IntArray, FloatArray, FloatArray]:
    """``reps`` draws of the work status at every row: codes into ``WORK_STATUSES``, ``u`` and ``y*``.

    ``y* = eta_fixed + u_i + e`` with ``u_i ~ N(0, work_patient_sd^2)`` and ``e`` standard logistic: at work
    when ``y* > 0`` (so ``P(at work) = logistic(eta_fixed + u_i)``, the GLMM), full duties when
    ``y* > full_duties_margin``; then, independently of ``y*``, a row (baseline included: a patient may enrol
    while off work for another reason) is off work for other reasons with probability ``off_work_other_prob``.
    """
    m = rows["ep"].shape[0]
    code = {w: i for i, w in enumerate(WORK_STATUSES)}
    u = rng.normal(0.0, cfg.work_patient_sd, (reps, n))
    ystar = rows["eta_fixed"][None, :] + u[:, rows["ep"]] + rng.logistic(0.0, 1.0, (reps, m))
    status = np.where(
        ystar > cfg.full_duties_margin,
        code["full_duties"],
        np.where(ystar > 0, code["modified_duties"], code[OFF_WORK_BACK_LEG]),
    )
    other = rng.random((reps, m)) < cfg.off_work_other_prob
    status = np.where(other, code["off_work_other"], status)
    return status.astype(np.int64), u, ystar


def _returns(
    rows: _WorkRows, status: IntArray, uniform: FloatArray, n: int
) -> tuple[BoolArray, BoolArray, BoolArray, FloatArray, BoolArray]:
    """Return to work per draw: who is off at baseline, the first row back and the planted return day.

    A patient in paid work whose baseline row is off work because of back or leg pain returns at the first
    later row at full or modified duties; the return day is drawn uniformly among the days after the previous
    assessment (and after the start) up to that row's day. Every later row at work after a row off work
    because of back or leg pain is a *transition* (its own return day, used for the sick-leave days); only
    the first one is the return to work.

    Returns
    -------
    off0 : (reps, n) bool
    first_back, transition : (reps, rows) bool
    return_day : (reps, rows) float
        The drawn return day on transition rows (NaN elsewhere).
    at_work : (reps, rows) bool
    """
    ep, day, post = rows["ep"], rows["day"], rows["post"]
    at_work = np.isin(status, [WORK_STATUSES.index(w) for w in AT_WORK_STATUSES])
    off_back = status == WORK_STATUSES.index(OFF_WORK_BACK_LEG)
    off0 = np.zeros((status.shape[0], n), dtype=bool)
    off0[:, ep[~post]] = off_back[:, ~post]
    prev = np.r_[0, np.arange(ep.shape[0] - 1)]
    prev_day = np.maximum(day[prev], 0.0)
    transition = post[None, :] & at_work & off_back[:, prev]
    cand = at_work & post[None, :] & off0[:, ep]
    cs = np.cumsum(cand, axis=1)
    within: IntArray = cs - (cs - cand)[:, rows["first_row"][ep]]
    first_back = cand & (within == 1)
    ret = prev_day[None, :] + 1.0 + np.floor(uniform * (day - prev_day)[None, :])
    # the first row back after baseline follows a baseline row off work, or rows off for other reasons
    return_day = np.where(transition | first_back, ret, np.nan)
    return off0, first_back, transition | first_back, return_day, at_work


def _km_pooled(
    rows: _WorkRows, off0: BoolArray, first_back: BoolArray, return_day: FloatArray, grid: IntArray
) -> FloatArray:
    """Kaplan-Meier survival of the return to work on ``grid`` days, pooled over the draws (rows of arrays).

    Per draw and episode off work at baseline and assessed again: the return day of its first row back
    (event), else censored at its last assessment. Pooling the draws is one Kaplan-Meier estimate on
    ``reps x`` the patients: the value the estimator converges to for this cohort's visits and covariates.
    """
    reps, n = off0.shape
    ep = rows["ep"]
    event_day = np.full((reps, n), np.inf)
    r_i, c_i = np.nonzero(first_back)
    event_day[r_i, ep[c_i]] = return_day[r_i, c_i]
    last = rows["last_row"]
    followed = np.zeros(n, dtype=bool)
    followed[ep[last]] = rows["post"][last]
    last_day = np.full(n, np.nan)
    last_day[ep[last]] = rows["day"][last]
    pop = off0 & followed[None, :]
    event = np.isfinite(event_day) & pop
    time = np.where(event, event_day, last_day[None, :])[pop]
    ev = event[pop]
    if time.size == 0:
        return np.ones(grid.shape[0])
    order = np.argsort(time, kind="stable")
    t_sorted, e_sorted = time[order], ev[order]
    uniq, first_idx = np.unique(t_sorted, return_index=True)
    deaths = np.add.reduceat(e_sorted.astype(np.float64), first_idx)
    at_risk = t_sorted.shape[0] - first_idx
    surv_at = np.cumprod(1.0 - deaths / at_risk)
    pos = np.searchsorted(uniq, grid, side="right") - 1
    out: FloatArray = np.where(pos >= 0, surv_at[np.maximum(pos, 0)], 1.0)
    return out


def _work_tables(
    cfg: SynthConfig,
    start: IntArray,
    age: IntArray,
    odi: _Effects,
    odi_recorded: FloatArray,
    adherence: FloatArray,
    vday: IntArray,
    vw: IntArray,
    observed: BoolArray,
    ep_ids: pl.Series,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
    """The ``work`` table, the work and global-verdict measures and the work part of ``truth.json``.

    Everything here comes from its own random stream ``default_rng([seed, 17])``, so the other tables do not
    change with the work parameters. Employment at enrolment is drawn from ``employment_mix`` (retired at
    ``retirement_age`` and above) and is constant over the episode; work status is assessed at every
    attended visit.

    Work status (paid workers: employed or self-employed) is a random-intercept logistic model, the GLMM
    that :func:`sciatica_outcomes.models.work.work_status_model` fits: at the assessment on day ``d`` of
    patient ``i``

    ``logit P(at work) = work_intercept + work_week_effect * d / 7 + work_odi_effect * (ODI_id - 42) / 10
    + work_adherence_effect * 10 * (A_i - 0.8) + u_i``, ``u_i ~ N(0, work_patient_sd^2)``,

    where ``ODI_id`` is the most recent ODI score recorded on or before the assessment (the baseline ODI until
    the week-6 questionnaire) and ``A_i`` the share of the patient's recorded sessions that were completed.
    Both are what the data show (so the fitted model has exactly the generating covariates; a latent ODI
    or adherence propensity would enter the model with measurement error and attenuate its coefficient).
    The coefficients are *conditional* (subject-specific) log odds ratios: they compare the same patient
    (same ``u_i``); the population-averaged log odds ratios are smaller, about ``beta / sqrt(1 + 0.346
    sigma^2)`` (Zeger, Liang & Albert, Biometrics 1988;44:1049). There is no clinic effect
    (``clinic_sd = 0``). As a latent-variable model: ``y* = eta + u_i + e``, ``e`` standard logistic, at work
    when ``y* > 0`` and on full duties when ``y* > full_duties_margin`` (modified duties in between).
    Independently, an assessment after baseline is "off work for other reasons" with probability
    ``off_work_other_prob`` (missing completely at random for the model, which leaves these rows out).

    Return to work: for a paid worker off work because of back or leg pain at baseline, the first later
    assessment at full or modified duties; the return day is drawn uniformly after the previous assessment
    (and after the start) up to that assessment, and recorded there (``return_to_work_date``). Hours worked,
    sick-leave days and WPAI:SHP answers follow the status (full duties: contracted hours, no hours missed;
    modified: a share of them; off work: none worked, all missed).

    Work Ability Score: ``was_intercept + was_odi_effect * (latent ODI - 42) / 10 + was_off_work_effect *
    [off work because of back or leg pain] + N(0, was_sd)``, rounded and clipped to 0-10, for paid workers at
    the questionnaire weeks. Global verdict at the ``grc_weeks`` visits (every patient): with ``D`` the latent
    ODI change from baseline and ``s = -D / 10 + N(0, 1)``, PGIC = 1 + the number of ``pgic_cuts`` at or
    above ``s`` (an ordinal probit: ``P(PGIC <= k) = Phi(-D / 10 - c_k)``); satisfaction = 1 + the number of
    ``satisfaction_cuts`` below ``0.8 s + N(0, 0.6)``. EQ-5D at the questionnaire weeks (every patient,
    accepted as given: no value set): index ``eq5d_intercept + eq5d_odi_effect * latent ODI / 10 + N(0,
    eq5d_sd)``, clipped to -0.3..1 and rounded to 3 decimals; VAS ``eq5d_vas_intercept + eq5d_vas_odi_effect
    * latent ODI / 10 + N(0, eq5d_vas_sd)``, rounded and clipped to 0-100.

    Expected values (``truth["work"]["expected"]``): the Kaplan-Meier survival of the return to work that
    the estimator converges to for this cohort's visits and covariates, pooled over ``work_truth_draws``
    fresh draws of the status process (its own stream ``[seed, 17, 1]``; fewer draws for a large cohort, at
    most about 4 million rows x draws, at least one): the share back by week 12 is
    ``1 - S(84 days)``, the median the first day with ``S <= 0.5``.
    """
    rng = np.random.default_rng([cfg.seed, 17])
    n = start.shape[0]
    n_status = len(EMPLOYMENT_STATUSES)
    drawn = np.asarray(rng.choice(n_status, size=n, p=np.asarray(cfg.employment_mix)), dtype=np.int64)
    emp: IntArray = np.where(age >= cfg.retirement_age, EMPLOYMENT_STATUSES.index("retired"), drawn)
    paid = np.isin(emp, [EMPLOYMENT_STATUSES.index(e) for e in PAID_WORK_STATUSES])
    hours_choice = np.array([40.0, 37.5, 30.0, 24.0, 20.0])
    contracted = hours_choice[rng.choice(5, size=n, p=[0.55, 0.15, 0.1, 0.1, 0.1])]
    modified_share = np.asarray(rng.uniform(0.4, 0.9, n), dtype=np.float64)

    # one row per attended visit (episode-major, visits in order: np.nonzero of the visit matrix)
    ep_idx, vis_idx = np.nonzero(observed)
    day = vday[ep_idx, vis_idx].astype(np.float64)
    is_paid = paid[ep_idx]
    code = {w: i for i, w in enumerate(WORK_STATUSES)}
    odi_now = _ffill_columns(odi_recorded)[ep_idx, vis_idx]
    eta_fixed = (
        cfg.work_intercept
        + cfg.work_week_effect * day / 7.0
        + cfg.work_odi_effect * (odi_now - WORK_ODI_CENTRE) / 10.0
        + cfg.work_adherence_effect * 10.0 * (adherence[ep_idx] - WORK_ADHERENCE_CENTRE)
    )
    # the status process on the rows of paid workers
    pw = np.flatnonzero(is_paid)
    p_ep = ep_idx[pw]
    starts = np.flatnonzero(np.r_[True, p_ep[1:] != p_ep[:-1]]) if pw.size else np.zeros(0, np.int64)
    ends = np.r_[starts[1:] - 1, pw.size - 1] if pw.size else np.zeros(0, np.int64)
    first_row = np.zeros(n, dtype=np.int64)
    first_row[p_ep[starts]] = starts
    rows: _WorkRows = {
        "ep": p_ep,
        "day": day[pw],
        "eta_fixed": eta_fixed[pw],
        "post": vis_idx[pw] > 0,
        "first_row": first_row,
        "last_row": ends,
    }
    st, u_all, _ = _draw_status(cfg, rng, rows, n, 1)
    u = u_all[0]
    uniform = rng.random((1, pw.size))
    off0_r, first_back_r, transition_r, ret_r, _ = _returns(rows, st, uniform, n)
    status = np.full(ep_idx.shape[0], code[WORK_NOT_APPLICABLE], dtype=np.int64)
    status[pw] = st[0]
    off0 = off0_r[0] & paid
    first_back = np.zeros(ep_idx.shape[0], dtype=bool)
    first_back[pw] = first_back_r[0]
    transition = np.zeros(ep_idx.shape[0], dtype=bool)
    transition[pw] = transition_r[0]
    ret_day = np.full(ep_idx.shape[0], np.nan)
    ret_day[pw] = ret_r[0]
    prev = np.r_[0, np.arange(ep_idx.shape[0] - 1)]
    hours_worked = np.where(
        status == code["full_duties"],
        contracted[ep_idx],
        np.where(
            status == code["modified_duties"],
            np.round(contracted[ep_idx] * modified_share[ep_idx] * 2) / 2,
            0.0,
        ),
    )
    # sick-leave days (working days, 5 a week) in the last 4 weeks: off work since before the window (or since
    # the previous assessment, drawn, after a row at work); back at work: the working days off between the
    # window start and the return day; otherwise about 1 day in 10 assessments
    off_back = status == code[OFF_WORK_BACK_LEG]
    was_at_work = np.isin(status[prev], [code[w] for w in AT_WORK_STATUSES]) & (vis_idx > 0)
    since = np.minimum(28.0, day - np.maximum(day[prev], 0.0))
    off_days = np.where(was_at_work, np.ceil(rng.random(ep_idx.shape[0]) * np.maximum(since, 1.0)), 28.0)
    window_off = np.clip(ret_day - (day - 28.0), 0.0, 28.0)
    sick = np.where(
        off_back,
        np.maximum(1.0, np.round(off_days * 20.0 / 28.0)),
        np.where(transition, np.round(window_off * 20.0 / 28.0), rng.binomial(1, 0.1, ep_idx.shape[0])),
    )
    sick = np.where(status == code["off_work_other"], 0.0, sick)
    # WPAI:SHP and WAS at the questionnaire weeks
    q_week = np.isin(vw[vis_idx], np.asarray(cfg.questionnaire_weeks))
    m_now = odi["level"][ep_idx] + odi["rate"][ep_idx] * effective_weeks(day / 7.0, cfg.tau_weeks)
    q2 = np.where(off_back, contracted[ep_idx], contracted[ep_idx] - hours_worked)
    q2 = np.where(status == code["off_work_other"], 0.0, q2)
    q3 = np.where(status == code["off_work_other"], contracted[ep_idx], 0.0)
    q5 = np.clip(np.rint(m_now / 8.0 + rng.normal(0.0, 1.0, ep_idx.shape[0])), 0, 10)
    q6 = np.clip(np.rint(m_now / 8.0 + rng.normal(0.0, 1.2, ep_idx.shape[0])), 0, 10)
    was = np.clip(
        np.rint(
            cfg.was_intercept
            + cfg.was_odi_effect * (m_now - 42.0) / 10.0
            + cfg.was_off_work_effect * off_back
            + rng.normal(0.0, cfg.was_sd, ep_idx.shape[0])
        ),
        0,
        10,
    )
    wq = q_week & is_paid  # work questions 2-5
    day_i = day.astype(np.int64)
    work = pl.DataFrame(
        {
            "episode_id": ep_ids.gather(ep_idx),
            "assessed_on": _dates(start[ep_idx], day_i),
            "employment_status": _labels(EMPLOYMENT_STATUSES, emp[ep_idx]),
            "work_status": _labels(WORK_STATUSES, status),
            "hours_contracted": np.where(is_paid, contracted[ep_idx], np.nan),
            "hours_worked": np.where(is_paid, hours_worked, np.nan),
            "sick_leave_days_4wk": np.where(is_paid, sick, np.nan),
            "wpai_q1_employed": pl.Series(is_paid).scatter(np.flatnonzero(~q_week), None),
            "wpai_q2_hours_missed_health": np.where(wq, q2, np.nan),
            "wpai_q3_hours_missed_other": np.where(wq, q3, np.nan),
            "wpai_q4_hours_worked": np.where(wq, hours_worked, np.nan),
            "wpai_q5_work_impairment": np.where(wq & (hours_worked > 0), q5, np.nan),
            "wpai_q6_activity_impairment": np.where(q_week, q6, np.nan),
            "return_to_work_day": np.where(first_back, start[ep_idx] + ret_day, np.nan),
        }
    )
    work = (
        work.with_columns(pl.col(pl.Float64).fill_nan(None))
        .with_columns(
            pl.col("sick_leave_days_4wk", "wpai_q5_work_impairment", "wpai_q6_activity_impairment").cast(
                pl.Int64
            ),
            pl.col("return_to_work_day").cast(pl.Int32).cast(pl.Date).alias("return_to_work_date"),
        )
        .drop("return_to_work_day")
        .sort("episode_id", "assessed_on")
    )
    # the global verdict: PGIC and satisfaction at the grc weeks, EQ-5D at the questionnaire weeks
    change = odi["rate"][ep_idx] * effective_weeks(day / 7.0, cfg.tau_weeks)  # latent ODI change
    s = -change / 10.0 + rng.normal(0.0, 1.0, ep_idx.shape[0])
    pgic = 1.0 + (s[:, None] <= np.asarray(cfg.pgic_cuts)[None, :]).sum(axis=1)
    sat_latent = 0.8 * s + rng.normal(0.0, 0.6, ep_idx.shape[0])
    satisfaction = 1.0 + (sat_latent[:, None] > np.asarray(cfg.satisfaction_cuts)[None, :]).sum(axis=1)
    eq_index = np.round(
        np.clip(
            cfg.eq5d_intercept
            + cfg.eq5d_odi_effect * m_now / 10.0
            + rng.normal(0.0, cfg.eq5d_sd, ep_idx.shape[0]),
            -0.3,
            1.0,
        ),
        3,
    )
    eq_vas = np.clip(
        np.rint(
            cfg.eq5d_vas_intercept
            + cfg.eq5d_vas_odi_effect * m_now / 10.0
            + rng.normal(0.0, cfg.eq5d_vas_sd, ep_idx.shape[0])
        ),
        0,
        100,
    )
    g_week = np.isin(vw[vis_idx], np.asarray(cfg.grc_weeks))
    parts = [
        (q_week & is_paid, "was", was, None),
        (g_week, "pgic", pgic, None),
        (g_week, "satisfaction", satisfaction, None),
        (q_week, "eq5d_index", eq_index, None),
        (q_week, "eq5d_vas", eq_vas, None),
    ]
    measures = pl.concat(
        [
            pl.DataFrame(
                {
                    "episode_id": ep_ids.gather(ep_idx[mask]),
                    "assessed_on": _dates(start[ep_idx[mask]], day_i[mask]),
                    "measure": pl.repeat(name, int(mask.sum()), dtype=pl.String, eager=True),
                    "value": value[mask].astype(np.float64),
                    "stopped_reason": pl.repeat(None, int(mask.sum()), dtype=pl.String, eager=True),
                    "cap_min": pl.repeat(None, int(mask.sum()), dtype=pl.Float64, eager=True),
                    "instrument_version": pl.repeat(version, int(mask.sum()), dtype=pl.String, eager=True),
                }
            )
            for mask, name, value, version in parts  # five measures, each vectorised over rows
        ]
    )

    # expected return to work: pooled Kaplan-Meier over fresh draws of the status process
    grid = np.arange(0, 7 * int(max(vw)) + 29)
    # at most ~4 million rows x draws (a registry-sized cohort needs one draw: it pools its own patients)
    reps = max(1, min(cfg.work_truth_draws, int(4_000_000 // max(pw.size, 1))))
    rng_truth = np.random.default_rng([cfg.seed, 17, 1])
    st_t, _, _ = _draw_status(cfg, rng_truth, rows, n, reps)
    off0_t, first_t, _, ret_t, _ = _returns(rows, st_t, rng_truth.random((reps, pw.size)), n)
    surv = _km_pooled(rows, off0_t & paid[None, :], first_t, ret_t, grid)
    reached = np.flatnonzero(surv <= 0.5)
    share12 = float(1.0 - surv[84])
    in_pop = np.flatnonzero(off0)
    planted_day = np.full(n, np.nan)
    planted_day[ep_idx[first_back]] = ret_day[first_back]
    g12 = np.isin(vw[vis_idx], [cfg.discharge_week])
    d12 = change[g12]
    cuts = np.asarray(cfg.pgic_cuts)
    from_normal = special.ndtr(-d12[:, None] / 10.0 - cuts[None, :2])
    glmm_rows = is_paid & (status != code["off_work_other"])
    truth: dict[str, Any] = {
        "model": "work status: random-intercept logistic model (see glmm); return to work = first assessment "
        "at full or modified duties after a baseline off work because of back or leg pain, the day drawn "
        "uniformly since the previous assessment; WAS = was_intercept + was_odi_effect * (latent ODI - 42) / "
        "10 + was_off_work_effect * [off work] + N(0, was_sd), rounded and clipped to 0-10; PGIC, "
        "satisfaction: ordinal models of s = -(latent ODI change) / 10 + N(0, 1); EQ-5D index and VAS linear "
        "in the latent ODI",
        "glmm": {
            "formula": WORK_GLMM_FORMULA,
            "family": "binomial (logit link)",
            "scale": "conditional (subject-specific) log odds: the coefficients compare assessments of the "
            "same patient (same u_i); population-averaged log odds ratios are smaller, about beta / "
            "sqrt(1 + 0.346 sigma_u^2) (Zeger, Liang & Albert 1988)",
            "coefficients": {
                "(Intercept)": cfg.work_intercept,
                "week": cfg.work_week_effect,
                "odi_10": cfg.work_odi_effect,
                "adherence_10": cfg.work_adherence_effect,
            },
            "sigma_u": cfg.work_patient_sd,
            "clinic_sd": 0.0,
            "design": {
                "rows": "work assessments of patients in paid work (employed, self-employed) at enrolment, "
                "leaving out 'off work for other reasons' (drawn independently of the status)",
                "response": "1 = full or modified duties, 0 = off work because of back or leg pain",
                "week": "(assessed_on - start_date) in days / 7",
                "odi_10": "(most recent ODI recorded on or before the assessment - "
                f"{WORK_ODI_CENTRE:g}) / 10",
                "adherence_10": "10 * (completed / recorded sessions of the episode - "
                f"{WORK_ADHERENCE_CENTRE:g})",
                "group": "episode_id (one episode per patient in the synthetic cohort)",
                "odi_centre": WORK_ODI_CENTRE,
                "adherence_centre": WORK_ADHERENCE_CENTRE,
            },
            "realised": {
                "n_rows": int(glmm_rows.sum()),
                "n_episodes": int(np.unique(ep_idx[glmm_rows]).shape[0]),
                "sd_u": float(u[paid].std()) if paid.any() else None,
                "share_at_work": float((status[glmm_rows] != code[OFF_WORK_BACK_LEG]).mean())
                if glmm_rows.any()
                else None,
            },
        },
        "expected": {
            "share_back_by_week12_off_work_at_enrolment": share12,
            "median_return_to_work_days": float(grid[reached[0]]) if reached.size else None,
            "return_to_work_survival_days": {str(t): float(surv[t]) for t in (28, 42, 56, 84, 126, 182)},
            "return_to_work_draws": reps,
            # mean over the paid workers' baseline assessments: the off-work effect enters at the share off
            # work because of back or leg pain at enrolment (rounding and clipping to 0-10 left out)
            "was_mean_at_baseline": cfg.was_intercept
            + cfg.was_odi_effect * (float(odi["level"][paid].mean()) - 42.0) / 10.0
            + cfg.was_off_work_effect
            * (float(off_back[(vis_idx == 0) & is_paid].mean()) if paid.any() else 0.0),
            "pgic_success_share_at_discharge": float(from_normal[:, 1].mean()) if d12.size else None,
            "pgic_success_definition": "PGIC 1 or 2 (completely recovered or much better); conditional on "
            "the latent ODI change of the patients assessed at the discharge visit",
            "eq5d_index_mean_at_baseline": cfg.eq5d_intercept
            + cfg.eq5d_odi_effect * float(odi["level"].mean()) / 10.0,
        },
        "realised": {
            "employment_at_enrolment": {e: int((emp == i).sum()) for i, e in enumerate(EMPLOYMENT_STATUSES)},
            "n_paid_work": int(paid.sum()),
            "n_off_work_back_leg_at_enrolment": int(off0.sum()),
            "n_returns_observed": int(first_back.sum()),
        },
        "events": {
            "return_to_work": pl.DataFrame(
                {"episode_id": ep_ids.gather(in_pop), "return_day": planted_day[in_pop]}
            )
            .with_columns(pl.col("return_day").fill_nan(None).cast(pl.Int64))
            .to_dicts()
        },
    }
    return work, measures, truth


def generate_cohort(config: SynthConfig | None = None, **overrides: Any) -> Cohort:
    """Generate a synthetic cohort with known truth.

    Parameters
    ----------
    config : SynthConfig, optional
        Generating parameters; defaults to ``SynthConfig()``.
    **overrides
        Field overrides applied to ``config`` (e.g. ``n_patients=500, seed=3``).

    Returns
    -------
    Cohort
        ``tables`` maps each canonical table name to a polars frame; ``truth`` holds the configuration,
        the planted events (dropouts, red-flag screens, flare sessions, stalled progression, surgery or
        injection) and the expected population values.

    Notes
    -----
    The same configuration (including ``seed``) always yields identical tables. The generating model is
    documented in the module docstring.
    """
    cfg = config or SynthConfig()
    if overrides:
        cfg = dataclasses.replace(cfg, **overrides)
    rng = np.random.default_rng(cfg.seed)
    n, k_clin = cfg.n_patients, cfg.n_clinics
    epoch = date(1970, 1, 1)
    cut_day = (cfg.data_cut - epoch).days
    enrol_day = (cfg.enrol_start - epoch).days

    # ---- episodes --------------------------------------------------------------------------------
    clinic_w = rng.dirichlet(np.full(k_clin, 2.0))
    clinic = rng.choice(k_clin, size=n, p=clinic_w)
    n_ther = rng.integers(2, 5, size=k_clin)
    therapist = np.floor(rng.random(n) * n_ther[clinic]).astype(np.int64)
    span = max(cut_day - enrol_day - 7, 1)
    start = enrol_day + rng.integers(0, span, size=n)
    age = np.clip(np.rint(rng.normal(48.0, 13.0, n)), 18, 89).astype(np.int64)
    sex = np.where(rng.random(n) < 0.55, "F", "M")
    duration = (12 + np.rint(rng.lognormal(math.log(20.0), 0.8, n))).astype(np.int64)
    side = rng.choice(np.array(SIDES), size=n, p=[0.47, 0.47, 0.06])  # left, right, bilateral
    spw = np.where(rng.random(n) < 0.6, 2, 3)
    a = cfg.adherence_mean * cfg.adherence_concentration
    b = (1 - cfg.adherence_mean) * cfg.adherence_concentration
    propensity = rng.beta(a, b, n)
    patient_no = rng.permutation(n) + 1

    # ---- latent outcome effects -------------------------------------------------------------------
    severity = rng.standard_normal(n)
    responsiveness = rng.standard_normal(n)
    effects: dict[str, _Effects] = {}
    ls, lr = cfg.severity_loading, cfg.responsiveness_loading
    for name, p in cfg.outcomes.items():
        z0 = ls * severity + math.sqrt(1 - ls**2) * rng.standard_normal(n)
        z1 = lr * responsiveness + math.sqrt(1 - lr**2) * rng.standard_normal(n)
        u0 = p.sd_intercept * z0
        u1 = p.sd_rate * (p.corr * z0 + math.sqrt(1 - p.corr**2) * z1)
        a_c = p.clinic_sd * rng.standard_normal(k_clin)
        r_c = p.clinic_rate_sd * rng.standard_normal(k_clin)
        effects[name] = {
            "level": p.intercept + p.age_effect * (age - 48) + a_c[clinic] + u0,
            "rate": p.rate + p.adherence_effect * (propensity - cfg.adherence_mean) + r_c[clinic] + u1,
            "clinic_intercept": a_c,
            "clinic_rate": r_c,
        }

    def latent(name: str, idx: IntArray, weeks: FloatArray, noise: bool = True) -> FloatArray:
        e = effects[name]
        val = e["level"][idx] + e["rate"][idx] * effective_weeks(weeks, cfg.tau_weeks)
        if noise:
            val = val + cfg.outcomes[name].residual_sd * rng.standard_normal(idx.shape[0])
        return val

    # ---- visit schedule and complete latent data --------------------------------------------------
    vw = np.asarray(cfg.visit_weeks, dtype=np.int64)
    n_vis = vw.shape[0]
    jitter = rng.integers(-3, 4, size=(n, n_vis))
    jitter[:, vw == 0] = -rng.integers(0, 8, size=(n, int((vw == 0).sum())))
    vday = vw[None, :] * 7 + jitter  # days from start
    vweek = vday / 7.0
    rows = np.repeat(np.arange(n), n_vis)
    leg_obs = np.clip(np.rint(latent("nprs_leg", rows, vweek.ravel())), 0, 10).reshape(n, n_vis)

    # ---- stopping events: red-flag referral, surgery/injection, MAR dropout ------------------------
    prog_idx = np.flatnonzero(vw <= cfg.program_weeks)
    disch_i = int(np.flatnonzero(vw == cfg.discharge_week)[0])
    follow_i = int(np.flatnonzero(vw == cfg.followup_week)[0])
    big = 10**6
    intermittent = rng.random((n, n_vis)) < cfg.intermittent_missing
    intermittent[:, 0] = False
    intermittent[:, disch_i] = False
    intermittent[:, follow_i] = False

    red_flag = rng.random(n) < cfg.red_flag_prob
    rf_visit = rng.integers(1, disch_i, size=n)  # a program visit after baseline, before discharge
    rf_unactioned = rng.random(n) < cfg.red_flag_unactioned_prob
    rf_kinds = rng.integers(0, len(RED_FLAG_FIELDS), size=n)
    rf_second = np.where(rng.random(n) < 0.3, rng.integers(0, len(RED_FLAG_FIELDS), size=n), -1)
    red_flag &= ~intermittent[np.arange(n), rf_visit]  # a screen exists only at an attended visit
    rf_day = np.where(red_flag, vday[np.arange(n), rf_visit], big)

    ice = rng.random(n) < cfg.ice_prob
    ice_day = np.where(ice, rng.integers(7, cfg.program_weeks * 7, size=n), big)
    ice_kind = np.where(rng.random(n) < 0.5, "surgery", "injection")

    dropout_day = np.full(n, big, dtype=np.int64)
    last_leg = leg_obs[:, 0].astype(float)
    base_leg = leg_obs[:, 0].astype(float)
    for j in range(1, prog_idx.shape[0]):
        alive = dropout_day == big
        worsening = np.maximum(0.0, last_leg - base_leg)
        logit = (
            cfg.dropout_logit
            + cfg.dropout_worsening * worsening
            + cfg.dropout_adherence * (cfg.adherence_mean - propensity)
        )
        drop = alive & (rng.random(n) < 1.0 / (1.0 + np.exp(-logit)))
        lo, hi = np.maximum(vday[:, j - 1], 0) + 1, vday[:, j]
        when = lo + np.floor(rng.random(n) * np.maximum(hi - lo, 1)).astype(np.int64)
        dropout_day = np.where(drop, when, dropout_day)
        seen = (dropout_day > vday[:, j]) & ~intermittent[:, j]
        last_leg = np.where(seen, leg_obs[:, j], last_leg)
    # a red flag only exists if its screening visit happened before any other stop; an actioned one
    # (urgent referral) ends the episode the day after the screen
    red_flag &= rf_day < np.minimum(dropout_day, ice_day)
    rf_day = np.where(red_flag, rf_day, big)
    referral_day = np.where(red_flag & ~rf_unactioned, rf_day, big)
    stop_day = np.minimum(
        np.minimum(dropout_day, ice_day), np.where(referral_day < big, referral_day + 1, big)
    )
    stop_reason = np.select(
        [referral_day + 1 == stop_day, ice_day == stop_day, dropout_day == stop_day],
        ["referred", "ice", "dropped_out"],
        "completed",
    )
    stop_reason = np.where(stop_day >= big, "completed", stop_reason)

    discharge_missing = rng.random(n) < cfg.discharge_missing
    followup_missing = rng.random(n) < cfg.followup_missing
    attended = (vday < stop_day[:, None]) & ~intermittent
    attended[:, disch_i] &= ~discharge_missing
    attended[:, follow_i] &= ~followup_missing
    observed = attended & ((start[:, None] + vday) <= cut_day)

    # episode end
    planned_end = np.where(followup_missing, vday[:, disch_i], vday[:, follow_i])
    end_off = np.select(
        [stop_reason == "referred", stop_reason == "ice", stop_reason == "dropped_out"],
        [referral_day, ice_day, dropout_day],
        planned_end,
    )
    ended = (start + end_off) <= cut_day
    end_reason = np.where(stop_reason == "ice", ice_kind, stop_reason)
    episodes = pl.DataFrame(
        {
            "episode_id": _id_series("EP", np.arange(1, n + 1), 6),
            "patient_id": _id_series("PT", patient_no, 6),
            "clinic_id": _id_series("CL", clinic + 1, 2),
            "therapist_id": _id_series("TH", (clinic + 1) * 10 + therapist + 1, 4),
            "program": np.full(n, cfg.program),
            "start_date": _dates(start, np.zeros(n, dtype=np.int64)),
            "end_date": _dates(start, end_off),
            "end_reason": end_reason,
            "age_at_start": age,
            "sex": sex,
            "symptom_duration_weeks": duration,
            "affected_side": side,
            "prescribed_sessions_per_week": spw,
        }
    ).with_columns(
        pl.when(pl.Series(ended)).then(pl.col("end_date")).otherwise(None).alias("end_date"),
        pl.when(pl.Series(ended)).then(pl.col("end_reason")).otherwise(None).alias("end_reason"),
    )

    # ---- measures ---------------------------------------------------------------------------------
    ep_idx, vis_idx = np.nonzero(observed)
    m_day = vday[ep_idx, vis_idx]
    m_week = m_day / 7.0
    m_wk = vw[vis_idx]
    m_date = start[ep_idx] + m_day
    measure_frames: list[pl.DataFrame] = []
    item_frames: list[pl.DataFrame] = []

    def add_measure(
        mask: BoolArray,
        measure: str,
        value: FloatArray,
        stopped: pl.Series | None = None,
        cap: float | None = None,
        version: str | None = None,
    ) -> None:
        cnt = int(mask.sum())
        measure_frames.append(
            pl.DataFrame(
                {
                    "episode_id": ep_idx[mask],
                    "assessed_day": m_date[mask],
                    "measure": _labels([measure], np.zeros(cnt, dtype=np.int64)),
                    "value": value[mask].astype(float),
                    "stopped_reason": (
                        stopped.filter(pl.Series(mask))
                        if stopped is not None
                        else pl.repeat(None, cnt, dtype=pl.String, eager=True)
                    ),
                    "cap_min": pl.repeat(cap, cnt, dtype=pl.Float64, eager=True),
                    "instrument_version": pl.repeat(version, cnt, dtype=pl.String, eager=True),
                    "visit_week": m_wk[mask],
                },
                schema_overrides={
                    "stopped_reason": pl.String,
                    "cap_min": pl.Float64,
                    "instrument_version": pl.String,
                },
            )
        )

    allm = np.ones(ep_idx.shape[0], dtype=bool)
    leg_m = leg_obs[ep_idx, vis_idx]
    add_measure(allm, "nprs_leg", leg_m)
    back_m = np.clip(np.rint(latent("nprs_back", ep_idx, m_week)), 0, 10)
    add_measure(allm, "nprs_back", back_m)
    for name, cap in (
        ("walk_tolerance_min", cfg.walk_cap_min),
        ("sit_tolerance_min", cfg.sit_cap_min),
    ):
        minutes = np.exp(latent(name, ep_idx, m_week))
        at_cap = minutes >= cap
        fatigue = rng.random(ep_idx.shape[0]) < cfg.fatigue_share
        value = np.where(at_cap, cap, np.maximum(np.round(minutes, 1), 0.1))
        code = {reason: i for i, reason in enumerate(STOPPED_REASONS)}
        stopped = _labels(
            STOPPED_REASONS,
            np.where(at_cap, code["cap"], np.where(fatigue, code["fatigue"], code["symptom"])),
        )
        add_measure(allm, name, value, stopped, cap)

    q_mask = np.isin(m_wk, np.asarray(cfg.questionnaire_weeks))
    qi = np.flatnonzero(q_mask)
    # ODI 2.1a from items: score = sum / (5 x answered) x 100
    odi_latent = np.clip(latent("odi", ep_idx[qi], m_week[qi]), 0, 100)
    odi_items = _items_with_sum(rng, np.rint(odi_latent / 2.0), len(ODI_SECTIONS), 5)
    answered = np.ones_like(odi_items, dtype=bool)
    miss_sec = rng.random(qi.shape[0]) < cfg.odi_missing_section_prob
    answered[miss_sec, ODI_SECTIONS.index("sex_life")] = False
    odi_score = np.round((odi_items * answered).sum(axis=1) / (5.0 * answered.sum(axis=1)) * 100.0, 2)
    odi_full = np.full(ep_idx.shape[0], np.nan)
    odi_full[qi] = odi_score
    odi_recorded = np.full((n, n_vis), np.nan)  # the recorded ODI per episode and visit (work model)
    odi_recorded[ep_idx[qi], vis_idx[qi]] = odi_score
    add_measure(q_mask, "odi", odi_full, version="2.1a")
    sbi_latent = np.clip(latent("sbi", ep_idx[qi], m_week[qi]), 0, 24)
    sbi_items = _items_with_sum(rng, np.rint(sbi_latent), len(SBI_ITEMS), 6)
    sbi_full = np.full(ep_idx.shape[0], np.nan)
    sbi_full[qi] = sbi_items.sum(axis=1)
    add_measure(q_mask, "sbi", sbi_full)
    psfs_latent = np.clip(latent("psfs", ep_idx[qi], m_week[qi]), 0, 10)
    psfs_items = _items_with_sum(rng, np.rint(psfs_latent * 3.0), len(PSFS_ITEMS), 10)
    psfs_full = np.full(ep_idx.shape[0], np.nan)
    psfs_full[qi] = np.round(psfs_items.mean(axis=1), 2)
    add_measure(q_mask, "psfs", psfs_full)
    # global rating of change (-7..+7, higher = better) anchored on the latent ODI change
    g_mask = np.isin(m_wk, np.asarray(cfg.grc_weeks))
    gi = np.flatnonzero(g_mask)
    odi_change = effects["odi"]["rate"][ep_idx[gi]] * effective_weeks(m_week[gi], cfg.tau_weeks)
    grc_full = np.full(ep_idx.shape[0], np.nan)
    grc_full[gi] = np.clip(np.rint(-odi_change / 3.0 + rng.normal(0, 1.5, gi.shape[0])), -7, 7)
    add_measure(g_mask, "grc", grc_full)

    for instrument, items, names, mask_ans in (
        ("odi", odi_items, ODI_SECTIONS, answered),
        ("sbi", sbi_items, SBI_ITEMS, np.ones_like(sbi_items, dtype=bool)),
        ("psfs", psfs_items, PSFS_ITEMS, np.ones_like(psfs_items, dtype=bool)),
    ):
        r, c = np.nonzero(mask_ans)
        item_frames.append(
            pl.DataFrame(
                {
                    "episode_id": ep_idx[qi][r],
                    "assessed_day": m_date[qi][r],
                    "instrument": _labels([instrument], np.zeros(r.shape[0], dtype=np.int64)),
                    "item": _labels(names, c),
                    "response": items[r, c],
                    "instrument_version": pl.repeat(
                        "2.1a" if instrument == "odi" else None, r.shape[0], dtype=pl.String, eager=True
                    ),
                },
                schema_overrides={"instrument_version": pl.String},
            )
        )

    ep_ids = episodes["episode_id"]

    measures = (
        pl.concat(measure_frames)
        .with_columns(pl.col("assessed_day").cast(pl.Int32).cast(pl.Date).alias("assessed_on"))
        .sort(["episode_id", "assessed_on", "measure"])
    )
    measures = measures.with_columns(ep_ids.gather(measures["episode_id"]).alias("episode_id")).select(
        "episode_id",
        "assessed_on",
        "measure",
        "value",
        "stopped_reason",
        "cap_min",
        "instrument_version",
    )
    items_df = (
        pl.concat(item_frames)
        .with_columns(pl.col("assessed_day").cast(pl.Int32).cast(pl.Date).alias("assessed_on"))
        .sort(["episode_id", "assessed_on", "instrument", "item"])
    )
    items_df = items_df.with_columns(ep_ids.gather(items_df["episode_id"]).alias("episode_id")).select(
        "episode_id", "assessed_on", "instrument", "item", "response", "instrument_version"
    )

    # ---- symptom checks at program visits ----------------------------------------------------------
    chk = observed & (vw[None, :] <= cfg.program_weeks)
    c_ep, c_vis = np.nonzero(chk)
    flags = np.zeros((c_ep.shape[0], len(RED_FLAG_FIELDS)), dtype=bool)
    planted = red_flag[c_ep] & (c_vis == rf_visit[c_ep])
    pr = np.flatnonzero(planted)
    flags[pr, rf_kinds[c_ep[pr]]] = True
    sec = rf_second[c_ep[pr]]
    flags[pr[sec >= 0], sec[sec >= 0]] = True
    action = np.where(planted, np.where(rf_unactioned[c_ep], "", "referred_urgent"), "none")
    symptom_checks = pl.DataFrame(
        {
            "episode_id": ep_ids.gather(c_ep),
            "checked_on": _dates(start[c_ep], vday[c_ep, c_vis]),
            **{f: flags[:, j] for j, f in enumerate(RED_FLAG_FIELDS)},
            "action_taken": action,
        }
    ).with_columns(pl.when(pl.col("action_taken") != "").then(pl.col("action_taken")).alias("action_taken"))

    # ---- sessions -----------------------------------------------------------------------------------
    per_ep = spw * cfg.program_weeks
    s_ep = np.repeat(np.arange(n), per_ep)
    s_pos = np.arange(s_ep.shape[0]) - np.repeat(np.cumsum(per_ep) - per_ep, per_ep)
    s_spw = spw[s_ep]
    s_week = s_pos // s_spw
    s_slot = s_pos % s_spw
    offsets = np.where(s_spw == 2, np.array([0, 3, 0])[s_slot], np.array([0, 2, 4])[s_slot])
    s_day = s_week * 7 + offsets
    keep = (s_day < stop_day[s_ep]) & ((start[s_ep] + s_day) <= cut_day)
    s_ep, s_week, s_day = s_ep[keep], s_week[keep], s_day[keep]
    ns = s_ep.shape[0]
    u = rng.random(ns)
    completed = u < propensity[s_ep]
    status = _labels(SESSION_STATUS, np.where(completed, 0, np.where(rng.random(ns) < 0.7, 1, 2)))
    pain_latent = latent("nprs_leg", s_ep, s_day / 7.0, noise=False) + rng.normal(0, 0.6, ns)
    pain_before = np.clip(np.rint(pain_latent), 0, 10)
    # Flare risk falls over the program: among completed sessions whose pain before allows a rise of 2
    # points (pain before <= 8), logit P(flare) = logit(flare_prob) + log(OR) (week - mid) + b_i, with
    # b_i ~ N(-sd^2 / 2, sd^2) so that the mean risk stays near flare_prob. b comes from its own stream, so
    # the other tables do not depend on these two parameters.
    flare_b = np.random.default_rng([cfg.seed, 16]).normal(0.0, cfg.flare_patient_sd, n)
    flare_b -= 0.5 * cfg.flare_patient_sd**2
    mid_week = (cfg.program_weeks - 1) / 2.0
    flare_logit = (
        math.log(cfg.flare_prob / (1.0 - cfg.flare_prob))
        + math.log(cfg.flare_odds_ratio_per_week) * (s_week - mid_week)
        + flare_b[s_ep]
    )
    flare_p = 1.0 / (1.0 + np.exp(-flare_logit))
    flare = completed & (pain_before <= 8) & (rng.random(ns) < flare_p)
    settled = rng.random(ns) < cfg.flare_settle_prob
    rise = rng.integers(2, 4, size=ns)
    small = rng.choice(np.array([-1, 0, 0, 1]), size=ns)
    small2 = rng.choice(np.array([-1, 0, 0, 1]), size=ns)
    pain_after = np.where(flare, np.minimum(pain_before + rise, 10), np.clip(pain_before + small, 0, 10))
    pain_next = np.where(
        flare,
        np.where(settled, pain_before + rng.integers(0, 2, size=ns), np.minimum(pain_before + rise, 10)),
        np.clip(pain_before + small2, 0, 10),
    )
    next_missing = ~flare & (rng.random(ns) < cfg.pain_next_day_missing)
    extent_score = pain_latent / 2.5 + rng.normal(0, 0.6, ns)
    extent = _labels(SYMPTOM_EXTENT, np.clip(np.floor(extent_score / 0.8).astype(np.int64), 0, 4))
    session_no = np.arange(1, ns + 1)
    sessions = (
        pl.DataFrame(
            {
                "session_id": _id_series("SE", session_no, 8),
                "episode_id": ep_ids.gather(s_ep),
                "session_date": _dates(start[s_ep], s_day),
                "status": status,
                "duration_min": np.clip(np.rint(rng.normal(45, 8, ns)), 20, 90),
                "warmup_neural_glides": rng.random(ns) < 0.85,
                "pain_before": pain_before,
                "pain_after": pain_after,
                "pain_next_day": np.where(next_missing, np.nan, pain_next),
                "rpe": np.clip(np.rint(rng.normal(5, 1.3, ns)), 0, 10),
                "symptom_extent": extent,
            }
        )
        .with_columns(pl.col("pain_next_day").fill_nan(None))
        .with_columns(
            *[
                pl.when(pl.col("status") == "completed").then(pl.col(c)).otherwise(None).alias(c)
                for c in (
                    "duration_min",
                    "warmup_neural_glides",
                    "pain_before",
                    "pain_after",
                    "pain_next_day",
                    "rpe",
                    "symptom_extent",
                )
            ],
        )
        .with_columns(
            pl.col(c).cast(pl.Int64)
            for c in ("duration_min", "pain_before", "pain_after", "pain_next_day", "rpe")
        )
    )

    # ---- session exercises (dose and progression) --------------------------------------------------
    interval = rng.choice(np.array([1, 2, 3]), size=n, p=list(cfg.progression_interval_probs))
    stalled = rng.random(n) < cfg.stall_prob
    stall_week = np.where(stalled, rng.integers(3, 7, size=n), big)
    gm_choice = rng.integers(0, 3, size=n)  # bridge / kettlebell deadlift / banded hip thrust
    core_choice = rng.integers(0, 2, size=n)  # bird-dog / pelvic control
    ham_choice = rng.integers(0, 2, size=n)  # nordic regression / hamstring stretch
    kb_start = np.where(sex == "F", 6.0, 8.0)
    ci = np.flatnonzero(completed)
    e_ep = s_ep[ci]
    e_week = s_week[ci]
    level = np.minimum(e_week, stall_week[e_ep]) // interval[e_ep]
    slot_names = MUSCLE_GROUPS  # one exercise per muscle group and session
    n_slots = len(slot_names)
    r_sess = np.repeat(ci, n_slots)
    r_ep = np.repeat(e_ep, n_slots)
    r_lvl = np.repeat(level, n_slots)
    slot = np.tile(np.arange(n_slots), ci.shape[0])
    ex_names = EXERCISE_CODES
    ex = {name: i for i, name in enumerate(ex_names)}
    exercise = np.full(r_sess.shape[0], -1, dtype=np.int64)
    sets = np.full(r_sess.shape[0], 3, dtype=np.int64)
    reps = np.full(r_sess.shape[0], np.nan)
    hold = np.full(r_sess.shape[0], np.nan)
    load = np.full(r_sess.shape[0], np.nan)
    band = np.full(r_sess.shape[0], -1, dtype=np.int64)
    lv = r_lvl.astype(float)
    # core: bird-dog (hold 5 s + 2 s per level, then the reaching variant) or pelvic control
    m = (slot == 0) & (core_choice[r_ep] == 0)
    adv = m & (r_lvl >= 4)
    exercise[m & ~adv], hold[m & ~adv], reps[m & ~adv] = (
        ex["bird_dog"],
        np.minimum(5 + 2 * lv[m & ~adv], 20),
        8,
    )
    exercise[adv], reps[adv] = ex["bird_dog_reach"], np.minimum(8 + 2 * (lv[adv] - 4), 15)
    m = (slot == 0) & (core_choice[r_ep] == 1)
    adv = m & (r_lvl >= 3)
    exercise[m & ~adv], reps[m & ~adv] = ex["pelvic_tilt"], 10 + 2 * lv[m & ~adv]
    exercise[adv], hold[adv], reps[adv] = (
        ex["abdominal_bracing"],
        np.minimum(10 + 5 * (lv[adv] - 3), 45),
        6,
    )
    # gluteus maximus: bridge -> single-leg bridge; kettlebell deadlift by load; hip thrust by band
    m = (slot == 1) & (gm_choice[r_ep] == 0)
    adv = m & (r_lvl >= 3)
    exercise[m & ~adv], reps[m & ~adv] = ex["glute_bridge"], 10 + 2 * lv[m & ~adv]
    exercise[adv], reps[adv] = ex["single_leg_bridge"], np.minimum(8 + 2 * (lv[adv] - 3), 15)
    m = (slot == 1) & (gm_choice[r_ep] == 1)
    exercise[m], reps[m], load[m] = ex["kb_deadlift"], 10, np.minimum(kb_start[r_ep[m]] + 2 * lv[m], 32)
    m = (slot == 1) & (gm_choice[r_ep] == 2)
    exercise[m], reps[m] = ex["banded_hip_thrust"], np.where(lv[m] >= len(BANDS), 15, 12)
    band[m] = np.minimum(r_lvl[m], len(BANDS) - 1)
    # gluteus medius: clamshell -> lateral band walk, band colour by level
    m = slot == 2
    adv = m & (r_lvl >= 3)
    exercise[m & ~adv], reps[m & ~adv] = ex["clamshell"], 12
    band[m & ~adv] = r_lvl[m & ~adv]
    exercise[adv], reps[adv] = ex["lateral_band_walk"], 10
    band[adv] = np.minimum(r_lvl[adv] - 3, len(BANDS) - 1)
    # hamstrings: Nordic regression by reps, or stretch (mobility, not progressed)
    m = (slot == 3) & (ham_choice[r_ep] == 0)
    exercise[m], reps[m] = ex["nordic_regression"], np.minimum(4 + lv[m], 10)
    sets[m] = np.where(r_lvl[m] >= 2, 3, 2)
    m = (slot == 3) & (ham_choice[r_ep] == 1)
    exercise[m], hold[m], reps[m], sets[m] = ex["hamstring_stretch"], 30, 1, 3
    # neural glides: slider, then tensioner after four progressions
    m = slot == 4
    adv = m & (r_lvl >= 4)
    exercise[m & ~adv], reps[m & ~adv] = ex["neural_glide_slider"], 10
    exercise[adv], reps[adv] = ex["neural_glide_tensioner"], 10
    sets[m] = 2
    pb = pain_before[r_sess]
    pain_during = np.clip(pb + rng.choice(np.array([-1, 0, 0, 1]), size=r_sess.shape[0]), 0, 10)
    modified = rng.random(r_sess.shape[0]) < 0.04
    session_exercises = pl.DataFrame(
        {
            "session_id": sessions["session_id"].gather(r_sess),
            "exercise": _labels(ex_names, exercise),
            "set_index": np.ones(r_sess.shape[0], dtype=np.int64),
            "sets": sets,
            "reps": reps,
            "hold_s": hold,
            "load_kg": load,
            "band": _labels(BANDS, band),
            "pain_during": pain_during,
            "modified": modified,
        }
    ).with_columns(
        pl.col("reps", "hold_s").fill_nan(None).cast(pl.Int64),
        pl.col("load_kg").fill_nan(None),
        pl.col("pain_during").cast(pl.Int64),
    )

    # ---- work: employment, work status, return to work, WAS, WPAI, global verdict (own random stream) --
    n_recorded = np.bincount(s_ep, minlength=n)
    adherence_share = np.where(
        n_recorded > 0,
        np.bincount(s_ep, weights=completed.astype(np.float64), minlength=n) / np.maximum(n_recorded, 1),
        WORK_ADHERENCE_CENTRE,
    )
    work, work_measures, work_truth = _work_tables(
        cfg, start, age, effects["odi"], odi_recorded, adherence_share, vday, vw, observed, ep_ids
    )
    measures = pl.concat([measures, work_measures]).sort(["episode_id", "assessed_on", "measure"])

    # ---- truth ---------------------------------------------------------------------------------------
    ep_arr = episodes["episode_id"].to_numpy()
    dropped = (stop_reason == "dropped_out") & ((start + dropout_day) <= cut_day)
    # episodes whose whole program phase lies before the data cut: the denominator of the dropout share
    program_observed = (start + cfg.program_weeks * 7) <= cut_day
    sess_ids = sessions["session_id"].to_numpy()
    fl = np.flatnonzero(flare)
    rf = np.flatnonzero(red_flag & ((start + rf_day) <= cut_day))
    rf_flags = [
        sorted(
            {RED_FLAG_FIELDS[rf_kinds[i]]} | ({RED_FLAG_FIELDS[rf_second[i]]} if rf_second[i] >= 0 else set())
        )
        for i in rf
    ]
    ice_seen = (stop_reason == "ice") & ((start + ice_day) <= cut_day)
    g12, g26 = (float(effective_weeks(w, cfg.tau_weeks)) for w in (12, 26))
    truth: dict[str, Any] = {
        "generator": "sciatica_outcomes.synth",
        "config": cfg.to_dict(),
        "model": {
            "time_transform": "g(t) = tau * (1 - exp(-max(t, 0) / tau)), t in weeks since start",
            "share_of_26_week_change_by_week_12": g12 / g26,
            "effective_weeks": {
                "6": float(effective_weeks(6, cfg.tau_weeks)),
                "12": g12,
                "26": g26,
            },
            "adherence_reference": cfg.adherence_mean,
            "log_scale_outcomes": ["walk_tolerance_min", "sit_tolerance_min"],
        },
        "clinic_effects": {
            name: {
                "clinic_ids": [f"CL{c + 1:02d}" for c in range(k_clin)],
                "intercept": effects[name]["clinic_intercept"].round(6).tolist(),
                "rate": effects[name]["clinic_rate"].round(6).tolist(),
            }
            for name in cfg.outcomes
        },
        "expected": {
            "baseline_mean": {
                "odi": cfg.outcomes["odi"].intercept,
                "nprs_leg": cfg.outcomes["nprs_leg"].intercept,
                "walk_tolerance_median_min": math.exp(cfg.outcomes["walk_tolerance_min"].intercept),
            },
            "baseline_sd": {
                "odi": math.sqrt(
                    cfg.outcomes["odi"].sd_intercept ** 2
                    + cfg.outcomes["odi"].residual_sd ** 2
                    + cfg.outcomes["odi"].clinic_sd ** 2
                ),
            },
            "mean_adherence_propensity": cfg.adherence_mean,
            "flare_rate_per_100_completed_sessions": 100 * cfg.flare_prob,
            "flares": {
                "odds_ratio_per_week": cfg.flare_odds_ratio_per_week,
                "patient_sd": cfg.flare_patient_sd,
                "prob_at_mid_program": cfg.flare_prob,
                "mid_program_week": mid_week,
                "at_risk": "completed sessions with pain before <= 8 (a rise of 2 points is possible)",
                "derived_flare": "a planted flare that did not settle (probability 1 - flare_settle_prob)",
            },
        },
        "realised": {
            "n_episodes": n,
            "n_sessions": ns,
            "n_completed_sessions": int(completed.sum()),
            "n_flares": int(fl.shape[0]),
            "n_flares_unsettled": int((flare & ~settled).sum()),
            "n_dropouts": int(dropped.sum()),
            "n_ended": int(ended.sum()),
            "n_program_observed": int(program_observed.sum()),
            "dropout_share": float(dropped[program_observed].mean()) if program_observed.any() else None,
            "baseline_latent_mean": {name: float(effects[name]["level"].mean()) for name in cfg.outcomes},
            "rate_latent_mean": {name: float(effects[name]["rate"].mean()) for name in cfg.outcomes},
            "n_red_flags": int(rf.shape[0]),
        },
        "events": {
            "dropouts": pl.DataFrame(
                {
                    "episode_id": ep_arr[dropped],
                    "dropout_on": _dates(start[dropped], dropout_day[dropped]).cast(pl.String),
                }
            ).to_dicts(),
            "red_flags": [
                {
                    "episode_id": ep_arr[i],
                    "checked_on": (epoch + timedelta(days=int(start[i] + rf_day[i]))).isoformat(),
                    "flags": f,
                    "action_taken": None if rf_unactioned[i] else "referred_urgent",
                }
                for i, f in zip(rf, rf_flags, strict=True)
            ],
            "flares": pl.DataFrame(
                {"session_id": sess_ids[fl], "rise": rise[fl], "settled_within_48h": settled[fl]}
            ).to_dicts(),
            "stalled_progression": pl.DataFrame(
                {"episode_id": ep_arr[stalled], "from_week": stall_week[stalled]}
            ).to_dicts(),
            "surgery_or_injection": pl.DataFrame(
                {"episode_id": ep_arr[ice_seen], "kind": ice_kind[ice_seen]}
            ).to_dicts(),
        },
        "work": work_truth,
        "episodes": {
            "adherence_propensity_mean": float(propensity.mean()),
            "progression_interval_weeks_counts": {str(w): int((interval == w).sum()) for w in (1, 2, 3)},
        },
    }
    tables = {
        "episodes": episodes,
        "sessions": sessions,
        "session_exercises": session_exercises,
        "measures": measures,
        "questionnaire_items": items_df,
        "symptom_checks": symptom_checks,
        "work": work,
    }
    return Cohort(tables=tables, truth=truth, config=cfg)


def write_cohort(cohort: Cohort, out: str | Path, fmt: Literal["csv", "parquet"] = "csv") -> dict[str, Path]:
    """Write the canonical tables and ``truth.json`` to a directory.

    Parameters
    ----------
    cohort : Cohort
        Output of :func:`generate_cohort`.
    out : str or Path
        Directory (created if missing).
    fmt : {"csv", "parquet"}
        File format of the tables; CSV has a header row and ISO dates.

    Returns
    -------
    dict[str, Path]
        Path of every file written, keyed by table name (and ``"truth"``).
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in TABLES:
        frame = cohort.tables[name]
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            frame.write_csv(path)
        else:
            frame.write_parquet(path, compression="zstd", statistics=False)
        paths[name] = path
    truth_path = out / "truth.json"
    truth_path.write_text(json.dumps(cohort.truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    paths["truth"] = truth_path
    return paths


def cohort_summary(cohort: Cohort) -> pl.DataFrame:
    """One row per headline figure of a generated cohort (used by ``sciatica-outcomes demo``)."""
    t = cohort.tables
    ep = t["episodes"]
    meas = t["measures"]
    base = meas.join(ep.select("episode_id", "start_date"), on="episode_id").filter(
        pl.col("assessed_on") <= pl.col("start_date")
    )
    walk = meas.filter(pl.col("measure") == "walk_tolerance_min")
    rows = [
        ("episodes", float(ep.height)),
        ("clinics", float(ep["clinic_id"].n_unique())),
        ("sessions scheduled", float(t["sessions"].height)),
        (
            "sessions completed",
            float(t["sessions"].filter(pl.col("status") == "completed").height),
        ),
        ("exercise rows", float(t["session_exercises"].height)),
        ("measures", float(meas.height)),
        ("questionnaire items", float(t["questionnaire_items"].height)),
        ("symptom checks", float(t["symptom_checks"].height)),
        ("baseline ODI mean", base.filter(pl.col("measure") == "odi")["value"].mean()),
        ("baseline leg NPRS mean", base.filter(pl.col("measure") == "nprs_leg")["value"].mean()),
        (
            "walking tests at 30-min cap (%)",
            100.0 * walk.filter(pl.col("stopped_reason") == "cap").height / max(walk.height, 1),
        ),
        (
            "dropout during the program (%)",
            100.0 * (cohort.truth["realised"]["dropout_share"] or 0.0),
        ),
        ("planted red-flag screens", float(cohort.truth["realised"]["n_red_flags"])),
        ("planted flares", float(cohort.truth["realised"]["n_flares"])),
    ]
    return pl.DataFrame(rows, schema=["figure", "value"], orient="row")
