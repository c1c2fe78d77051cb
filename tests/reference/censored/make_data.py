"""Write the censored (Tobit) growth-model reference data sets (fixed seed).

Run from this folder: ``python make_data.py``; then ``Rscript make_censored_reference.R`` writes
``censored_reference.json`` (the exact maximum-likelihood fits) that
``tests/models/test_censored_reference.py`` reads. Every set has 150 patients with 3-6 visits among weeks
0, 2, 4, 6, 8, 10, 12, 26 (week 0 always), a latent outcome ``y*`` from a linear growth model and the
recorded value ``y``:

- ``design_a.csv``: ``y ~ week + (1 | id)``, right-censored at the constant cap 3.4 (``y = 3.4`` when
  ``y* >= 3.4``);
- ``design_b.csv``: ``y ~ week * arm + (week | id)``, correlated intercept and slope, a binary covariate
  ``arm`` and its interaction with week, per-observation caps in the column ``cap`` (log 20 or log 30 minutes,
  by clinic), right-censored at the row's cap;
- ``design_c.csv``: ``y ~ week + (week | id)``, left-censored at 0 (``y = 0`` when ``y* <= 0``) and
  right-censored at 10 (a 0-10 scale), 27 % of the rows at a limit (one patient at both).

The column ``cens`` records the direction (``-1`` left, ``0`` observed, ``1`` right) for the reader; the
fits find the censored rows from the limits alone (value at or beyond the limit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).parent
WEEKS = np.array([0, 2, 4, 6, 8, 10, 12, 26], dtype=float)
N_PATIENTS = 150


def schedule(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Patient index and week of each row: week 0 plus 2-5 other visits drawn without replacement."""
    n_visits = rng.integers(3, 7, m)
    keys = rng.random((m, WEEKS.size - 1))
    order = np.argsort(keys, axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(WEEKS.size - 1)[None, :], axis=1)
    chosen = np.concatenate([np.ones((m, 1), dtype=bool), rank < (n_visits - 1)[:, None]], axis=1)
    pid, col = np.nonzero(chosen)
    return pid, WEEKS[col]


def random_effects(rng: np.random.Generator, m: int, sd0: float, sd1: float, rho: float) -> np.ndarray:
    """``(m, 2)`` bivariate normal patient intercepts and slopes."""
    cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    return rng.multivariate_normal(np.zeros(2), cov, m)


def frame(
    pid: np.ndarray,
    week: np.ndarray,
    latent: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    **extra: np.ndarray,
) -> pl.DataFrame:
    """Recorded data: the value clipped to ``[lower, upper]`` and the censoring direction."""
    cens = np.where(latent >= upper, 1, np.where(latent <= lower, -1, 0))
    y = np.where(cens == 1, upper, np.where(cens == -1, lower, latent))
    return pl.DataFrame({"id": [f"P{i:03d}" for i in pid], "week": week, "y": y, **extra, "cens": cens})


def main() -> None:
    rng = np.random.default_rng(20261215)
    m = N_PATIENTS
    inf = np.full(1, np.inf)

    # (A) random intercept only, constant cap
    pid, week = schedule(rng, m)
    b = rng.normal(0.0, 0.6, m)
    latent = 2.4 + 0.04 * week + b[pid] + rng.normal(0.0, 0.35, pid.size)
    frame(pid, week, latent, -inf, np.full(pid.size, 3.4)).write_csv(HERE / "design_a.csv")

    # (B) correlated intercept + slope, caps by clinic (20 or 30 minutes on the log scale), arm x week
    pid, week = schedule(rng, m)
    b = random_effects(rng, m, 0.6, 0.025, -0.3)
    arm = (np.arange(m) % 2)[pid].astype(float)
    cap = np.where(np.arange(m) % 3 == 0, np.log(20.0), np.log(30.0))[pid]
    latent = (
        np.log(9.0)
        + (0.05 + 0.02 * arm + b[pid, 1]) * week
        - 0.1 * arm
        + b[pid, 0]
        + rng.normal(0.0, 0.25, pid.size)
    )
    frame(pid, week, latent, -inf, cap, arm=arm, cap=cap).write_csv(HERE / "design_b.csv")

    # (C) intercept + slope, left-censored at 0 and right-censored at 10, heavy censoring
    pid, week = schedule(rng, m)
    b = random_effects(rng, m, 4.5, 0.25, -0.3)
    latent = 5.0 + 0.12 * week + b[pid, 0] + b[pid, 1] * week + rng.normal(0.0, 1.5, pid.size)
    frame(pid, week, latent, np.zeros(pid.size), np.full(pid.size, 10.0)).write_csv(HERE / "design_c.csv")


if __name__ == "__main__":
    main()
