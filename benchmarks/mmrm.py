"""Benchmark: MMRM with unstructured covariance over 5 visits, up to 100,000 patients.

    .venv/bin/python benchmarks/mmrm.py [--patients 100000 10000]

Data: two arms, a baseline covariate, five visits with monotone missing-at-random dropout and intermittent
missed visits (``y ~ visit * arm + base``, 11 fixed effects, 15 covariance parameters). Each size is fitted
in a fresh subprocess so peak memory is the fit's own: wall time of ``MMRM(...).fit`` (REML, Satterthwaite
df for every coefficient, LS means), peak resident memory of the process (``ru_maxrss``) and the peak of
Python/numpy allocations during the fit (``tracemalloc``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import polars as pl

from sciatica_outcomes.models.mmrm import MMRM


def simulate(n: int, seed: int = 1) -> pl.DataFrame:
    """Long frame: ``id, visit, arm, base, y`` with MAR dropout."""
    rng = np.random.default_rng(seed)
    t = 5
    sd = np.array([6.0, 7.0, 8.0, 9.0, 10.0])
    lag = np.abs(np.subtract.outer(np.arange(t), np.arange(t)))
    sigma = np.outer(sd, sd) * (0.3 + 0.7 * 0.7**lag)
    arm = np.where(rng.random(n) < 0.5, "control", "active")
    base = rng.normal(42.0, 12.0, n)
    mu = np.array([40.0, 35.0, 31.0, 28.0, 26.0]) + (arm == "active")[:, None] * np.array(
        [0, -1, -2, -3, -4.0]
    )
    y = mu + 0.3 * (base[:, None] - 42.0) + rng.standard_normal((n, t)) @ np.linalg.cholesky(sigma).T
    observed = np.ones((n, t), dtype=bool)
    for j in range(1, t):
        p = 1.0 / (1.0 + np.exp(-(-2.5 + 0.1 * (y[:, j - 1] - mu[:, j - 1]))))
        observed[:, j] = observed[:, j - 1] & (rng.random(n) >= p)
    observed[:, 1:] &= rng.random((n, t - 1)) >= 0.05
    i, j = np.nonzero(observed)
    return pl.DataFrame({"id": i, "visit": j + 1, "arm": arm[i], "base": base[i], "y": y[i, j]})


def run_one(n: int) -> dict[str, float]:
    """Fit once and measure (called in a subprocess)."""
    frame = simulate(n)
    tracemalloc.start()
    t0 = time.perf_counter()
    res = MMRM("y ~ visit * arm + base", "id", "visit", covariance="us").fit(frame).result_
    lsm = res.lsmeans()
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "patients": n,
        "rows": frame.height,
        "patterns": res.diagnostics["n_patterns"],
        "wall_s": wall,
        "fit_s": res.diagnostics["fit_seconds"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_traced_mib": peak / 2**20,
        "converged": bool(res.converged),
        "iterations": res.diagnostics["iterations"],
        "newton_steps": res.diagnostics["newton_steps"],
        "lsmean_last_visit": float(lsm["emmean"][-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one)))
        return
    rows = []
    for n in args.patients:  # one subprocess per size: peak memory is per fit
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], check=True, capture_output=True, text=True
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    head = ("patients", "rows", "patterns", "wall_s", "peak_rss_mib", "peak_traced_mib", "converged")
    print("MMRM, unstructured covariance, 5 visits, y ~ visit * arm + base (REML, Satterthwaite, LS means)")
    print(" | ".join(f"{h:>15}" for h in head))
    for r in rows:
        cells = [
            f"{r['patients']:>15,}",
            f"{r['rows']:>15,}",
            f"{r['patterns']:>15}",
            f"{r['wall_s']:>15.2f}",
            f"{r['peak_rss_mib']:>15.0f}",
            f"{r['peak_traced_mib']:>15.0f}",
            f"{r['converged']!s:>15}",
        ]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()
