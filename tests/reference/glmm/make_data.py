"""Write the GLMM reference data sets (fixed seeds): lme4's cbpp and grouseticks, and synthetic sets.

Run from this folder: ``python make_data.py``; then ``Rscript make_glmm_reference.R`` writes the JSON
reference values (lme4 ``glmer``, glmmTMB ``nbinom2``) that ``tests/models/test_glmm.py`` reads.
The synthetic sets mimic the program's repeated outcomes: flares per week with completed sessions as
exposure (Poisson and overdispersed), responders (MCID reached) at the visits, and flares out of sessions.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def patients(rng: np.random.Generator, m: int, weeks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pid = np.repeat(np.arange(m), weeks.size)
    week = np.tile(weeks, m).astype(float)
    return pid, week


def main() -> None:
    rng = np.random.default_rng(20261202)
    # flares per program week (0-11), sessions completed that week as exposure; random intercept and slope
    m = 120
    pid, week = patients(rng, m, np.arange(12))
    sd0, sd1, rho = 0.7, 0.06, -0.3
    cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    b = rng.multivariate_normal([0.0, 0.0], cov, m)
    sessions = rng.integers(1, 4, pid.size)
    group = np.where(np.arange(m) % 2 == 0, "high", "low")[pid]
    eta = -2.0 + (-0.07 + b[pid, 1]) * week + b[pid, 0] + 0.3 * (group == "low") + np.log(sessions)
    flares = rng.poisson(np.exp(eta))
    size = 1.5  # overdispersed counts: gamma-Poisson with shape 1.5
    flares_nb = rng.poisson(np.exp(eta) * rng.gamma(size, 1.0 / size, pid.size))
    pl.DataFrame(
        {
            "patient": [f"P{i:03d}" for i in pid],
            "week": week,
            "adherence": group,
            "sessions": sessions,
            "log_sessions": np.log(sessions),
            "flares": flares,
            "flares_nb": flares_nb,
            "flared_sessions": np.minimum(flares, sessions),
        }
    ).write_csv("flares.csv")
    # responders (ODI MCID reached) at weeks 2, 4, 8, 12, 26
    m = 200
    pid, week = patients(rng, m, np.array([2, 4, 8, 12, 26]))
    b0 = rng.normal(0.0, 1.2, m)
    b1 = rng.normal(0.0, 0.04, m)
    age = np.round(rng.normal(48.0, 12.0, m), 0)[pid]
    eta = -1.5 + (0.12 + b1[pid]) * week + b0[pid] - 0.02 * (age - 48.0)
    pl.DataFrame(
        {
            "patient": [f"R{i:03d}" for i in pid],
            "week": week,
            "age": age,
            "responder": (rng.random(pid.size) < 1.0 / (1.0 + np.exp(-eta))).astype(int),
        }
    ).write_csv("responders.csv")
    nested(np.random.default_rng(20261203))


def nested(rng: np.random.Generator) -> None:
    """Patients nested in clinics: 12 clinics x 20-30 patients x 6 weeks (own random stream)."""
    n_clinics = 12
    per_clinic = rng.integers(20, 31, n_clinics)
    clinic_of = np.repeat(np.arange(n_clinics), per_clinic)  # one entry per patient
    m = clinic_of.size
    weeks = np.arange(6)
    pid, week = patients(rng, m, weeks)
    cid = clinic_of[pid]
    c0 = rng.normal(0.0, 0.4, n_clinics)  # clinic random intercept
    b0 = rng.normal(0.0, 0.6, m)
    b1 = rng.normal(0.0, 0.08, m)
    sessions = rng.integers(1, 4, pid.size)
    group = np.where(np.arange(m) % 2 == 0, "high", "low")[pid]
    eta = -1.6 + (-0.08 + b1[pid]) * week + b0[pid] + c0[cid] + 0.3 * (group == "low") + np.log(sessions)
    mu = np.exp(eta)
    size = 2.0
    # responders: ODI MCID reached at the weekly visit, clinic and patient random intercepts
    r0 = rng.normal(0.0, 0.9, m)
    eta_r = -1.2 + 0.35 * week + r0[pid] + 1.2 * c0[cid] - 0.3 * (group == "low")
    pl.DataFrame(
        {
            # patient codes unique across clinics (nested, not crossed)
            "clinic": [f"C{c:02d}" for c in cid],
            "patient": [f"N{i:03d}" for i in pid],
            "week": week.astype(float),
            "adherence": group,
            "sessions": sessions,
            "log_sessions": np.log(sessions),
            "flares": rng.poisson(mu),
            "flares_nb": rng.poisson(mu * rng.gamma(size, 1.0 / size, pid.size)),
            "responder": (rng.random(pid.size) < 1.0 / (1.0 + np.exp(-eta_r))).astype(int),
        }
    ).write_csv("nested.csv")


if __name__ == "__main__":
    main()
