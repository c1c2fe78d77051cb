"""Write the datasets of the MMRM golden tests (deterministic; run from the repository root).

    .venv/bin/python tests/reference/mmrm/make_data.py
    Rscript tests/reference/mmrm/gls_reference.R

Four datasets, each with at least one subject observed at every visit:

- ``synth_odi``: ODI at weeks 6, 12 and 26 of the calibrated synthetic cohort (400 episodes, seed 21) with the
  baseline ODI and the adherence group (completed / prescribed sessions >= 0.8); missingness as generated
  (dropout, missed visits, missing discharge and follow-up questionnaires).
- ``mar5``: five visits, two arms, 160 subjects, heterogeneous variances, monotone dropout that depends on the
  last observed value (missing at random) plus intermittent missed visits.
- ``small4``: four visits, three arms, 40 subjects, a factor (sex) and a numeric (age) covariate, about 45 %
  of visits missing at random positions (every subject keeps at least one).
- ``hetero6``: six visits, two arms, 120 subjects, strongly increasing variances and AR-like correlation,
  some subjects seen once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from sciatica_outcomes.scoring import assign_visits
from sciatica_outcomes.synth import generate_cohort

HERE = Path(__file__).resolve().parent


def _ar_corr(t: int, rho: float) -> np.ndarray:
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    return rho**lag


def synth_odi() -> pl.DataFrame:
    """ODI by visit from the synthetic cohort, with baseline and adherence group."""
    cohort = generate_cohort(n_patients=400, seed=21)
    ep = cohort.tables["episodes"]
    ses = cohort.tables["sessions"]
    adher = (
        ses.group_by("episode_id")
        .agg((pl.col("status") == "completed").sum().alias("done"))
        .join(ep.select("episode_id", "prescribed_sessions_per_week"), on="episode_id")
        .with_columns(
            pl.when(pl.col("done") / (12 * pl.col("prescribed_sessions_per_week")) >= 0.8)
            .then(pl.lit("high"))
            .otherwise(pl.lit("low"))
            .alias("group")
        )
    )
    m = cohort.tables["measures"].filter(pl.col("measure") == "odi")
    m = assign_visits(m.join(ep.select("episode_id", "start_date"), on="episode_id"))
    base = m.filter(pl.col("visit") == "w0").select("episode_id", pl.col("value").alias("baseline_odi"))
    out = (
        m.filter(pl.col("visit").is_in(["w6", "w12", "w26"]))
        .select("episode_id", "visit", pl.col("value").alias("odi"))
        .join(base, on="episode_id")
        .join(adher.select("episode_id", "group"), on="episode_id")
        .sort("episode_id", "visit")
    )
    return out


def mar5(seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n, t = 160, 5
    sd = np.array([4.0, 5.0, 6.0, 7.5, 9.0])
    corr = 0.3 + 0.7 * _ar_corr(t, 0.7)
    sigma = np.outer(sd, sd) * corr
    arm = np.where(rng.random(n) < 0.5, "placebo", "active")
    base = rng.normal(40.0, 8.0, n)
    means = np.array([30.0, 27.0, 25.0, 23.0, 22.0])
    effect = np.array([0.0, -1.0, -2.5, -3.5, -4.0])
    y = (
        means[None, :]
        + (arm == "active")[:, None] * effect[None, :]
        + 0.4 * (base[:, None] - 40.0)
        + rng.multivariate_normal(np.zeros(t), sigma, n)
    )
    observed = np.ones((n, t), dtype=bool)
    alive = np.ones(n, dtype=bool)
    for j in range(1, t):  # monotone dropout driven by the previous observed value (MAR)
        p_drop = 1.0 / (1.0 + np.exp(-(-3.0 + 0.12 * (y[:, j - 1] - 30.0))))
        alive &= rng.random(n) >= p_drop
        observed[:, j] = alive
    observed[:, 1:] &= rng.random((n, t - 1)) >= 0.08
    observed[0] = True
    i, j = np.nonzero(observed)
    return pl.DataFrame(
        {
            "id": [f"S{k:03d}" for k in i],
            "visit": [f"V{v + 1}" for v in j],
            "arm": arm[i],
            "base": np.round(base[i], 3),
            "y": np.round(y[i, j], 4),
        }
    )


def small4(seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n, t = 40, 4
    sd = np.array([3.0, 3.5, 4.5, 5.0])
    corr = np.array([[1, 0.6, 0.4, 0.2], [0.6, 1, 0.5, 0.3], [0.4, 0.5, 1, 0.55], [0.2, 0.3, 0.55, 1]])
    sigma = np.outer(sd, sd) * corr
    arm = np.array(["A", "B", "C"])[rng.integers(0, 3, n)]
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    age = np.round(rng.normal(50.0, 12.0, n))
    arm_eff = {"A": 0.0, "B": -1.5, "C": -3.0}
    y = (
        np.array([10.0, 9.0, 8.0, 7.5])[None, :]
        + np.array([arm_eff[a] for a in arm])[:, None] * np.linspace(0.0, 1.0, t)[None, :]
        + (sex == "M")[:, None] * 1.2
        + 0.05 * (age[:, None] - 50.0)
        + rng.multivariate_normal(np.zeros(t), sigma, n)
    )
    observed = rng.random((n, t)) >= 0.45
    none = ~observed.any(axis=1)
    observed[none, rng.integers(0, t, int(none.sum()))] = True
    observed[0] = True
    i, j = np.nonzero(observed)
    return pl.DataFrame(
        {
            "id": [f"P{k:02d}" for k in i],
            "visit": [f"wk{(v + 1) * 4}" for v in j],
            "arm": arm[i],
            "sex": sex[i],
            "age": age[i],
            "y": np.round(y[i, j], 4),
        }
    )


def hetero6(seed: int = 9) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n, t = 120, 6
    sd = np.array([1.0, 1.5, 2.2, 3.0, 4.0, 5.5])
    sigma = np.outer(sd, sd) * _ar_corr(t, 0.8)
    trt = np.where(rng.random(n) < 0.5, "ctl", "trt")
    y = (
        np.linspace(5.0, 2.0, t)[None, :]
        + (trt == "trt")[:, None] * np.linspace(0.0, -1.5, t)[None, :]
        + rng.multivariate_normal(np.zeros(t), sigma, n)
    )
    observed = rng.random((n, t)) >= 0.25
    single = rng.random(n) < 0.1
    observed[single] = False
    observed[single, rng.integers(0, t, int(single.sum()))] = True
    observed[:3] = True
    i, j = np.nonzero(observed)
    return pl.DataFrame(
        {
            "id": [f"H{k:03d}" for k in i],
            "visit": j + 1,
            "trt": trt[i],
            "y": np.round(y[i, j], 4),
        }
    )


#: dataset name -> (builder, formula, visit levels in order, group factor compared in pairs)
DATASETS = {
    "synth_odi": (
        synth_odi,
        "odi ~ visit * group + baseline_odi + visit:baseline_odi",
        "episode_id",
        "group",
    ),
    "mar5": (mar5, "y ~ visit * arm + base", "id", "arm"),
    "small4": (small4, "y ~ visit + arm + visit:arm + sex + age", "id", "arm"),
    "hetero6": (hetero6, "y ~ visit * trt", "id", "trt"),
}


def main() -> None:
    for name, (build, *_rest) in DATASETS.items():
        frame = build()
        frame.write_csv(HERE / f"{name}.csv")
        print(name, frame.height, "rows")


if __name__ == "__main__":
    main()
