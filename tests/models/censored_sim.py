"""Walking tolerance as the synthetic cohort generates it, for the censored-model recovery tests.

The generating model is ``sciatica_outcomes.synth``'s for ``walk_tolerance_min`` (its ``OutcomeParams``,
``tau_weeks``, visit weeks and the 30-minute cap of ``SynthConfig``): on the log-minute scale

``y*_ij = mu + u_0i + (rho + u_1i) g(t_ij) + e_ij``,  ``g(t) = tau (1 - exp(-t / tau))``,

with ``(u_0, u_1)`` bivariate normal and ``e`` the measurement error; the recorded value is
``min(y*, log 30)`` (a test stopped at the cap). The cohort's clinic intercept and rate effects and its
adherence effect on the rate (``adherence_effect`` times the SD of the Beta adherence propensity) enter as
independent normal patient-level variation of the intercept and the rate (their variances added to the
patient SDs), and its missing-at-random dropout is left out, so that ``y ~ g + (g | patient)`` is the true
model and the truth is known exactly: the 26-week change of the latent outcome is ``rho g(26)``. Visits after
baseline are missed completely at random (``missing``). At the cap: about 4, 12, 20 and 30 % of the tests at
weeks 0, 6, 12 and 26 (the demo cohort: 5, 13, 22 and 33 %).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from sciatica_outcomes.synth import SynthConfig, effective_weeks

CONFIG = SynthConfig()
WALK = CONFIG.outcomes["walk_tolerance_min"]
LOG_CAP = math.log(CONFIG.walk_cap_min)
FORMULA = "log_walk ~ eweek + (eweek | patient)"
#: true 26-week change of the latent log walking tolerance
TRUE_CHANGE_26 = WALK.rate * float(effective_weeks(26.0, CONFIG.tau_weeks))
TRUE_SLOPE = WALK.rate
_A = CONFIG.adherence_mean * CONFIG.adherence_concentration
_B = (1.0 - CONFIG.adherence_mean) * CONFIG.adherence_concentration
_ADHERENCE_SD = math.sqrt(_A * _B / ((_A + _B) ** 2 * (_A + _B + 1.0)))
SD_INTERCEPT = math.hypot(WALK.sd_intercept, WALK.clinic_sd)
SD_RATE = math.sqrt(WALK.sd_rate**2 + WALK.clinic_rate_sd**2 + (WALK.adherence_effect * _ADHERENCE_SD) ** 2)


def simulate_walk(n_patients: int, seed: int, missing: float = 0.1) -> pl.DataFrame:
    """Capped log walking tolerance of ``n_patients`` at the cohort's visit weeks.

    Parameters
    ----------
    n_patients : int
        Patients.
    seed : int
        Seed of ``numpy.random.default_rng``.
    missing : float
        Probability that a visit after baseline is missed (completely at random).

    Returns
    -------
    polars.DataFrame
        ``patient, week, eweek`` (effective weeks ``g(week)``), ``latent`` (uncapped log-minutes),
        ``log_walk`` (capped at ``log 30``) and ``at_cap``.
    """
    rng = np.random.default_rng(seed)
    weeks = np.asarray(CONFIG.visit_weeks, dtype=np.float64)
    z0 = rng.standard_normal(n_patients)
    z1 = rng.standard_normal(n_patients)
    u0 = SD_INTERCEPT * z0
    u1 = SD_RATE * (WALK.corr * z0 + math.sqrt(1.0 - WALK.corr**2) * z1)
    pid = np.repeat(np.arange(n_patients), weeks.size)
    week = np.tile(weeks, n_patients)
    g = effective_weeks(week, CONFIG.tau_weeks)
    latent = (
        WALK.intercept
        + u0[pid]
        + (WALK.rate + u1[pid]) * g
        + WALK.residual_sd * rng.standard_normal(pid.size)
    )
    keep = (week == 0) | (rng.random(pid.size) >= missing)
    at_cap = latent >= LOG_CAP
    return pl.DataFrame(
        {
            "patient": pid,
            "week": week,
            "eweek": g,
            "latent": latent,
            "log_walk": np.where(at_cap, LOG_CAP, latent),
            "at_cap": at_cap,
        }
    ).filter(pl.Series(keep))
