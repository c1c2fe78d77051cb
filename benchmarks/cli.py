"""Whole-process benchmark of the command line: ``--help`` start-up, and ``fit`` beside ``Rscript`` + lme4.

What a user waits for is the whole process: interpreter start, imports, reading the CSV, the fit, writing the
results. Each run here is one fresh process, timed from outside with a monotonic clock:

- ``sciatica-outcomes --help`` and every subcommand's ``--help`` (best of 3);
- ``sciatica-outcomes fit --data d.csv --formula F --json out.json --quiet`` (REML, Satterthwaite df)
  against ``Rscript fit.R d.csv F out.json``, which loads lme4, reads the same CSV with
  ``data.table::fread`` (R's fastest reader), fits ``lmer(F, REML = TRUE)`` and writes the fixed effects
  as JSON. Runs alternate (ours, R, ours, R, ...) so both see the same machine load; the best of
  ``--repeat`` runs of each is shown, with the ratio and the largest difference between the two sets of
  fixed-effect estimates.

Data: ``simulate_growth(n, visits=10)`` (``y ~ week * adherence + (week | patient)``).
Run: ``.venv/bin/python benchmarks/cli.py [--sizes 10000,100000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sciatica_outcomes.models.frames import simulate_growth

FORMULA = "y ~ week * adherence + (week | patient)"
CLI = str(Path(sys.executable).with_name("sciatica-outcomes"))
COMMANDS = [
    [],
    ["synth"],
    ["demo"],
    ["derive"],
    ["validate"],
    ["ingest"],
    ["pseudonymize"],
    ["fit"],
    ["responders"],
    ["compare-clinics"],
    ["report"],
    ["report", "quarterly"],
    ["report", "cohort"],
    ["schemas", "export"],
]

LME4 = r"""
suppressPackageStartupMessages({library(lme4); library(data.table); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1])
m <- lmer(as.formula(args[2]), data = d, REML = TRUE)
writeLines(toJSON(list(beta = unname(fixef(m)), loglik = as.numeric(logLik(m))), digits = NA), args[3])
"""


def timed(cmd: list[str], timeout: float = 1800) -> float:
    """Wall seconds of one whole process (raises if it fails)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    print("--help as a whole process (best of 3):")
    worst = 0.0
    for command in COMMANDS:
        best = min(timed([CLI, *command, "--help"]) for _ in range(3))
        worst = max(worst, best)
        print(f"  sciatica-outcomes {' '.join([*command, '--help']):<32} {best:6.3f} s")
    print(f"  slowest: {worst:.3f} s")

    rscript = shutil.which("Rscript")
    if rscript is None:
        print("Rscript not found: the fit comparison needs R with lme4, data.table and jsonlite")
        return
    print(f"\nfit {FORMULA!r} from CSV, whole process, best of {args.repeat} (runs alternate):")
    header = f"{'patients':>9} {'rows':>10}  {'ours s':>7} {'lme4 s':>7} {'lme4/ours':>9} {'max|dbeta|':>11}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        script = tmpdir / "fit.R"
        script.write_text(LME4, encoding="utf-8")
        for n in (int(s) for s in args.sizes.split(",")):
            frame = simulate_growth(n, visits=10, seed=2026)
            csv = tmpdir / f"d{n}.csv"
            frame.write_csv(csv)
            ours_json, r_json = tmpdir / f"ours{n}.json", tmpdir / f"r{n}.json"
            ours_cmd = [
                CLI,
                "fit",
                "--data",
                str(csv),
                "--formula",
                FORMULA,
                "--json",
                str(ours_json),
                "--quiet",
            ]
            r_cmd = [rscript, str(script), str(csv), FORMULA, str(r_json)]
            ours_t, r_t = [], []
            for _ in range(args.repeat):
                ours_t.append(timed(ours_cmd))
                r_t.append(timed(r_cmd))
            ours_beta = [row["estimate"] for row in json.loads(ours_json.read_text())["fixed_effects"]]
            r_beta = json.loads(r_json.read_text())["beta"]
            diff = float(np.max(np.abs(np.subtract(ours_beta, r_beta))))
            print(
                f"{n:>9,} {frame.height:>10,}  {min(ours_t):>7.2f} {min(r_t):>7.2f} "
                f"{min(r_t) / min(ours_t):>8.1f}x {diff:>11.2e}"
            )


if __name__ == "__main__":
    main()
