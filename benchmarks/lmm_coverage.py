"""Parameter recovery: coverage of the 95% CI of the population slope across synthetic cohorts.

For each seed, ``generate_cohort(n_patients, seed=seed)`` draws leg pain (NPRS) for a program whose
generating model is ``level + (rho + gamma (p - 0.8) + r_c + u_1) g(t)`` with ``g(t) = 12 (1 - e^(-t/12))``
(``sciatica_outcomes.synth``), clinic random intercepts and rates, missing-at-random dropout and intermittent
missed visits. The growth model

    y ~ g * adh + (g | clinic) + (g | patient),   adh = observed adherence - 0.8

is fitted by REML and the Satterthwaite 95% CI of the ``g`` coefficient is compared with the true
``rho = -0.30`` per effective week. The check passes when coverage lies in 93-97%.

Run: ``.venv/bin/python benchmarks/lmm_coverage.py [--seeds 200] [--patients 800]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl
from scipy import stats

from sciatica_outcomes.models import GrowthModel
from sciatica_outcomes.models.frames import growth_frame
from sciatica_outcomes.synth import SynthConfig, effective_weeks, generate_cohort

FORMULA = "y ~ g * adh + (g | clinic) + (g | patient)"


def one(seed: int, n_patients: int) -> dict[str, float]:
    cohort = generate_cohort(n_patients=n_patients, seed=seed)
    tau = cohort.config.tau_weeks
    frame = growth_frame(cohort.tables, "nprs_leg")
    frame = frame.with_columns(
        pl.Series("g", effective_weeks(frame["week"].to_numpy(), tau)),
        (pl.col("adherence") - cohort.config.adherence_mean).alias("adh"),
    )
    m = GrowthModel(FORMULA).fit(frame)
    row = m.summary.filter(pl.col("term") == "g").row(0, named=True)
    return {
        "estimate": row["estimate"],
        "se": row["se"],
        "df": row["df"],
        "ci_low": row["ci_low"],
        "ci_high": row["ci_high"],
        "converged": float(m.result_.converged),
        "singular": float(m.result_.diagnostics.singular),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--patients", type=int, default=800)
    args = parser.parse_args()
    truth = SynthConfig().outcomes["nprs_leg"].rate
    t0 = time.perf_counter()
    res = pl.DataFrame([one(seed, args.patients) for seed in range(args.seeds)])
    covered = (res["ci_low"] <= truth) & (truth <= res["ci_high"])
    k, n = int(covered.sum()), res.height
    lo, hi = stats.binomtest(k, n).proportion_ci(0.95)
    z_cov = float(((res["estimate"] - truth).abs() <= 1.959964 * res["se"]).mean())
    print(f"Coverage of the 95% Satterthwaite CI for the population slope (truth rho = {truth}):")
    print(f"  seeds {n}, patients per cohort {args.patients}, model {FORMULA}")
    print(f"  covered {k}/{n} = {100 * k / n:.1f}%  (binomial 95% CI {100 * lo:.1f}-{100 * hi:.1f}%)")
    print(f"  normal-quantile CI would cover {100 * z_cov:.1f}%")
    print(
        f"  mean estimate {res['estimate'].mean():.4f} (bias {res['estimate'].mean() - truth:+.4f}), "
        f"SD of estimates {res['estimate'].std():.4f}, mean SE {res['se'].mean():.4f}, "
        f"median df {float(np.median(res['df'])):.1f}"
    )
    print(
        f"  converged {int(res['converged'].sum())}/{n}, "
        f"singular (boundary) fits {int(res['singular'].sum())}/{n}, {time.perf_counter() - t0:.0f} s"
    )
    verdict = "PASS" if 0.93 <= k / n <= 0.97 else "OUTSIDE 93-97%"
    print(f"  target 93-97%: {verdict}")


if __name__ == "__main__":
    main()
