"""Write the golden-test datasets (CSV) and their cases (``cases.json``) for ``make_reference.R``.

Run from the repository root: ``.venv/bin/python tests/reference/lmm/make_datasets.py``, then
``Rscript tests/reference/lmm/make_reference.R``. Same code, same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from sciatica_outcomes.models.frames import growth_frame
from sciatica_outcomes.synth import generate_cohort

HERE = Path(__file__).parent
WEEKS = [0, 6, 12, 26]


def _round(frame: pl.DataFrame) -> pl.DataFrame:
    """Round floats to 10 significant digits so that CSV text is exactly what both sides read."""
    return frame.with_columns(pl.col(pl.Float64).round_sig_figs(10))


def balanced(seed: int = 101) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n, weeks = 150, np.arange(0, 20, 2.0)
    pid = np.repeat(np.arange(n), weeks.size)
    week = np.tile(weeks, n)
    adh = rng.uniform(0.4, 1.0, n)[pid]
    b0 = rng.normal(0, 6, n)[pid]
    b1 = rng.normal(0, 0.3, n)[pid]
    y = 45 - 0.8 * week + 3 * adh - 0.6 * week * adh + b0 + b1 * week + rng.normal(0, 3, pid.size)
    return pl.DataFrame({"patient": [f"P{i:04d}" for i in pid], "week": week, "adherence": adh, "y": y})


def factor_groups(seed: int = 202) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 240
    visits = rng.integers(3, 9, n)
    pid = np.repeat(np.arange(n), visits)
    week = np.concatenate([np.sort(np.r_[0.0, rng.uniform(0, 26, k - 1)]) for k in visits])
    group = np.array(["control", "strength", "walking"])[rng.integers(0, 3, n)]
    sex = np.where(rng.random(n) < 0.55, "F", "M")
    slope = {"control": -0.2, "strength": -0.6, "walking": -0.4}
    g = group[pid]
    rate = np.vectorize(slope.get)(g)
    y = (
        30
        + np.where(g == "walking", 1.5, 0.0)
        + np.where(sex[pid] == "M", -2.0, 0.0)
        + rate * week
        + rng.normal(0, 5, n)[pid]
        + rng.normal(0, 0.15, n)[pid] * week
        + rng.normal(0, 3, pid.size)
    )
    return pl.DataFrame({"patient": pid + 1, "week": week, "group": g, "sex": sex[pid], "y": y})


def near_singular(seed: int = 303) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 120
    visits = rng.integers(4, 8, n)
    pid = np.repeat(np.arange(n), visits)
    week = np.concatenate([np.sort(rng.uniform(0, 12, k)) for k in visits])
    y = 6 - 0.25 * week + rng.normal(0, 1.2, n)[pid] + rng.normal(0, 1.0, pid.size)  # no slope variance
    return pl.DataFrame({"patient": pid + 1, "week": week, "y": y})


def main() -> None:
    tables = {}
    for seed, n, clinics in ((21, 400, 8), (22, 500, 8)):
        tables[seed] = generate_cohort(n_patients=n, n_clinics=clinics, seed=seed).tables
    datasets = {
        "balanced": balanced(),
        "unbalanced_odi": growth_frame(tables[21], "odi"),
        "nested_clinic": growth_frame(tables[22], "nprs_leg"),
        "uncorrelated_sit": growth_frame(tables[21], "sit_tolerance_min", log=True),
        "factor_groups": factor_groups(),
        "near_singular": near_singular(),
        "singular": near_singular(301),
        "spline_walk": growth_frame(tables[22], "walk_tolerance_min", log=True),
        "log1p_hinge_odi": growth_frame(tables[22], "odi"),
    }
    for name, frame in datasets.items():
        _round(frame).write_csv(HERE / f"{name}.csv")
    cases = [
        {
            "name": "balanced_ml",
            "data": "balanced.csv",
            "formula": "y ~ week * adherence + (week | patient)",
            "reml": False,
            "emmeans": {"specs": ["week"], "at": {"week": WEEKS}},
        },
        {
            "name": "unbalanced_missing",
            "data": "unbalanced_odi.csv",
            "formula": "y ~ week * adherence + age + (week | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": WEEKS}},
            "lrt_small": "y ~ week + adherence + age + (week | patient)",
        },
        {
            "name": "nested_clinic",
            "data": "nested_clinic.csv",
            "formula": "y ~ week * adherence + age + (1 | clinic) + (week | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": WEEKS}},
        },
        {
            "name": "uncorrelated_slopes",
            "data": "uncorrelated_sit.csv",
            "formula": "y ~ week + adherence + sex + (1 | patient) + (0 + week | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": WEEKS}},
        },
        {
            "name": "factor_interaction",
            "data": "factor_groups.csv",
            "formula": "y ~ week * group + sex + (week | patient)",
            "reml": True,
            "reference": {"group": "strength"},
            "emmeans": {"specs": ["group"], "by": ["week"], "at": {"week": [0, 12, 26]}},
            "f_test_prefix": "group",
        },
        {
            "name": "near_singular",
            "data": "near_singular.csv",
            "formula": "y ~ week + (week | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": [0, 6, 12]}},
        },
        {
            "name": "singular_boundary",
            "data": "singular.csv",
            "formula": "y ~ week + (week | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": [0, 6, 12]}},
        },
        {
            "name": "spline_time",
            "data": "spline_walk.csv",
            "formula": "y ~ ns(week, df = 3) + adherence + (week | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": WEEKS}},
        },
        {
            "name": "log1p_hinge",
            "data": "log1p_hinge_odi.csv",
            "formula": "y ~ log1p(week) + pmax(week - 12, 0) + adherence + age + (log1p(week) | patient)",
            "reml": True,
            "emmeans": {"specs": ["week"], "at": {"week": WEEKS}},
        },
    ]
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
