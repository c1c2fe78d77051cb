"""Long-format growth frames for the models: one row per patient and assessment of one measure.

``growth_frame`` is the minimal frame the growth model needs from the canonical tables (used by tests,
benchmarks and ``sciatica-outcomes fit`` until the derive stage's analysis frame is available).
``simulate_growth`` draws data from a known random-intercept-and-slope model at any size.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from sciatica_outcomes.errors import UnusableInputError

__all__ = ["growth_frame", "simulate_flares", "simulate_growth"]


def growth_frame(tables: Mapping[str, pl.DataFrame], measure: str, log: bool = False) -> pl.DataFrame:
    """One row per episode and assessment of ``measure``, with time, adherence and covariates.

    Parameters
    ----------
    tables : mapping of str to polars.DataFrame
        Canonical tables; needs ``episodes``, ``sessions`` and ``measures``.
    measure : str
        Measure code (``odi``, ``nprs_leg``, ``walk_tolerance_min``, ...).
    log : bool
        Model ``log(value)`` (for tolerance minutes) in the column ``y``.

    Returns
    -------
    polars.DataFrame
        ``patient, clinic, week, y, adherence, age, sex``; ``week = max(days since start, 0) / 7``,
        ``adherence`` = completed / scheduled sessions of the episode, ``age`` centred at 48 years.
    """
    for name in ("episodes", "sessions", "measures"):
        if name not in tables:
            raise UnusableInputError(f"growth_frame needs the {name!r} table; got {sorted(tables)}")
    ep = tables["episodes"].select(
        pl.col("episode_id").alias("patient"),
        pl.col("clinic_id").alias("clinic"),
        "start_date",
        (pl.col("age_at_start") - 48).cast(pl.Float64).alias("age"),
        "sex",
    )
    adh = (
        tables["sessions"]
        .group_by("episode_id")
        .agg((pl.col("status") == "completed").mean().alias("adherence"))
        .rename({"episode_id": "patient"})
    )
    meas = tables["measures"].filter(pl.col("measure") == measure)
    if meas.height == 0:
        raise UnusableInputError(f"no rows of measure {measure!r} in the measures table")
    value = pl.col("value").cast(pl.Float64)
    return (
        meas.select(
            pl.col("episode_id").alias("patient"), "assessed_on", (value.log() if log else value).alias("y")
        )
        .join(ep, on="patient", how="inner")
        .join(adh, on="patient", how="left")
        .with_columns(
            (
                ((pl.col("assessed_on") - pl.col("start_date")).dt.total_days().clip(lower_bound=0)) / 7.0
            ).alias("week"),
            pl.col("adherence").fill_null(0.0),
        )
        .select("patient", "clinic", "week", "y", "adherence", "age", "sex")
        .sort("patient", "week")
    )


def simulate_growth(
    n_patients: int,
    visits: int = 10,
    seed: int = 0,
    beta: tuple[float, float, float, float] = (40.0, -1.0, 2.0, -0.5),
    sd_intercept: float = 8.0,
    sd_slope: float = 0.4,
    corr: float = -0.3,
    sigma: float = 4.0,
    max_week: float = 26.0,
) -> pl.DataFrame:
    """Simulate ``y ~ week * adherence + (week | patient)`` with known parameters.

    Parameters
    ----------
    n_patients, visits : int
        Patients and visits per patient (visit weeks uniform on ``[0, max_week]``, first at 0).
    seed : int
        Random seed.
    beta : tuple
        ``(Intercept), week, adherence, week:adherence``.
    sd_intercept, sd_slope, corr, sigma : float
        Random-effect SDs and correlation, residual SD.

    Returns
    -------
    polars.DataFrame
        ``patient`` (int), ``week``, ``adherence`` (patient-level, centred), ``y``.
    """
    rng = np.random.default_rng(seed)
    n = n_patients * visits
    pid = np.repeat(np.arange(n_patients), visits)
    week = rng.uniform(0.0, max_week, size=(n_patients, visits))
    week[:, 0] = 0.0
    week = np.sort(week, axis=1).ravel()
    adherence = rng.beta(8.0, 2.0, n_patients) - 0.8
    cov = np.array(
        [[sd_intercept**2, corr * sd_intercept * sd_slope], [corr * sd_intercept * sd_slope, sd_slope**2]]
    )
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_patients)
    a = adherence[pid]
    y = (
        beta[0]
        + beta[1] * week
        + beta[2] * a
        + beta[3] * week * a
        + b[pid, 0]
        + b[pid, 1] * week
        + sigma * rng.standard_normal(n)
    )
    return pl.DataFrame({"patient": pid, "week": week, "adherence": a, "y": y})


def simulate_flares(
    n_patients: int,
    weeks: int = 12,
    seed: int = 0,
    rate_ratio_week: float = 0.93,
    base_rate: float = 0.2,
    sd_intercept: float = 0.6,
    sd_slope: float = 0.03,
    corr: float = -0.3,
    size: float | None = None,
    n_clinics: int | None = None,
    sd_clinic: float = 0.3,
) -> pl.DataFrame:
    """Simulate weekly flare counts with sessions as exposure and a known decline of the flare rate.

    ``flares_iw ~ Poisson(sessions_iw * base_rate * rate_ratio_week^week * exp(b0_i + b1_i week) * g_iw)``
    with ``(b0, b1)`` bivariate normal and, when ``size`` is given, ``g ~ Gamma(size, 1 / size)`` (negative
    binomial 2, ``Var = mu + mu^2 / size``); sessions completed per week are 1-3 (uniform).

    Parameters
    ----------
    n_patients, weeks : int
        Patients and program weeks (0 to ``weeks - 1``).
    seed : int
        Random seed.
    rate_ratio_week : float
        True rate ratio per program week (the planted decline).
    base_rate : float
        Flares per session at week 0 for a patient with ``b = 0``.
    sd_intercept, sd_slope, corr : float
        SDs (log scale) and correlation of the patient random intercept and slope.
    size : float, optional
        Negative-binomial size; Poisson when ``None``.
    n_clinics : int, optional
        Patients nested in this many clinics (patient ``i`` in clinic ``i mod n_clinics``) with a clinic
        random intercept of SD ``sd_clinic`` on the log rate (from its own random stream: sessions and patient
        effects are those of the same seed without clinics); adds the column ``clinic``.
    sd_clinic : float
        SD of the clinic random intercept.

    Returns
    -------
    polars.DataFrame
        ``patient`` (int), ``week``, ``sessions``, ``log_sessions``, ``flares``, and ``flared_sessions``
        (sessions with a flare, at most ``sessions``: a binomial outcome with trials ``sessions``).
    """
    rng = np.random.default_rng(seed)
    pid = np.repeat(np.arange(n_patients), weeks)
    week = np.tile(np.arange(weeks, dtype=float), n_patients)
    sessions = rng.integers(1, 4, pid.size)
    cov = np.array(
        [[sd_intercept**2, corr * sd_intercept * sd_slope], [corr * sd_intercept * sd_slope, sd_slope**2]]
    )
    b = rng.multivariate_normal(np.zeros(2), cov, size=n_patients)
    eta = np.log(base_rate) + (np.log(rate_ratio_week) + b[pid, 1]) * week + b[pid, 0] + np.log(sessions)
    clinic = None
    if n_clinics is not None:
        clinic = pid % n_clinics
        eta = eta + np.random.default_rng([seed, 1]).normal(0.0, sd_clinic, n_clinics)[clinic]
    mu = np.exp(eta)
    if size is not None:
        mu = mu * rng.gamma(size, 1.0 / size, pid.size)
    flares = rng.poisson(mu)
    return pl.DataFrame(
        {
            **({} if clinic is None else {"clinic": clinic}),
            "patient": pid,
            "week": week,
            "sessions": sessions,
            "log_sessions": np.log(sessions),
            "flares": flares,
            "flared_sessions": np.minimum(flares, sessions),
        }
    )
