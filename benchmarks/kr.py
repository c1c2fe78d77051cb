"""Kenward-Roger benchmark: this engine's KR beside pbkrtest's, in one run.

Model: ``y ~ week * adherence + (week | patient)`` (random intercept and slope, 4 fixed effects), REML,
10 visits per patient over 26 weeks, simulated by ``sciatica_outcomes.models.frames.simulate_growth`` for
1,000 / 10,000 / 100,000 patients (the data of ``benchmarks/lmm.py``).

Each tool runs in its own process under ``/usr/bin/time -v`` (peak resident memory) with a 10-minute limit
and an address-space limit of 16 GB (the machine has no swap: a dense ``n_obs x n_obs`` matrix must fail, not
take the machine down). Columns:

- ``fit s``: the REML fit (this engine: ``GrowthModel(ddf="kenward-roger").fit``, KR included; lme4:
  ``lmer`` with bobyqa);
- ``KR s``: the Kenward-Roger step alone (this engine: ``GrowthModel._kenward_roger`` at the optimum, i.e.
  the per-patient blocks, ``Phi_A`` and the df of every coefficient; pbkrtest 0.5.2: ``vcovAdj(m)``);
- ``summary s``: pbkrtest only, ``summary(m, ddf = "Kenward-Roger")`` (lmerTest 3.1-3 calls ``vcovAdj``
  once per coefficient);
- ``max rel dse / ddf``: largest relative difference of the KR standard errors and df from this engine's.

A tool that fails or does not finish a size is not run at larger sizes.

Run: ``.venv/bin/python benchmarks/kr.py [--sizes 1000,10000,100000] [--skip pbkrtest]``.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sciatica_outcomes.models.frames import simulate_growth

FORMULA = "y ~ week * adherence + (week | patient)"
CHILD_TIMEOUT = 600.0
MEMORY_LIMIT = 16 * 1024**3

OURS = """
import json, sys, time
import polars as pl
from sciatica_outcomes.models import GrowthModel
frame = pl.read_parquet(sys.argv[1])
t0 = time.perf_counter()
m = GrowthModel(sys.argv[2], ddf="kenward-roger").fit(frame)
sec = time.perf_counter() - t0
t1 = time.perf_counter()
inf = m._kenward_roger(m.theta_, m.sigma_)
var, df = inf.variance_and_df(__import__("numpy").eye(len(m.beta_)))
kr_sec = time.perf_counter() - t1
print("RESULT " + json.dumps({"seconds": sec, "kr_seconds": kr_sec, "se": var.__pow__(0.5).tolist(),
      "df": df.tolist(), "converged": m.result_.converged}))
"""

PBKRTEST = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest); library(pbkrtest); library(data.table);
  library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1])
t0 <- proc.time()[["elapsed"]]
m <- lmer(as.formula(args[2]), data = d, REML = TRUE, control = lmerControl(optimizer = "bobyqa"))
sec <- proc.time()[["elapsed"]] - t0
cat("FIT ", sec, "\n", sep = "")
t1 <- proc.time()[["elapsed"]]
va <- vcovAdj(m)
kr_sec <- proc.time()[["elapsed"]] - t1
cat("VCOVADJ ", kr_sec, "\n", sep = "")
t2 <- proc.time()[["elapsed"]]
cf <- coef(summary(m, ddf = "Kenward-Roger"))
sum_sec <- proc.time()[["elapsed"]] - t2
cat("RESULT ", toJSON(list(seconds = sec, kr_seconds = kr_sec, summary_seconds = sum_sec,
    se = unname(cf[, "Std. Error"]), df = unname(cf[, "df"]), converged = TRUE), auto_unbox = TRUE,
    digits = NA), "\n", sep = "")
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run one tool; return its RESULT json plus peak RSS, or where it stopped."""
    full = ["/usr/bin/time", "-v", *cmd] if Path("/usr/bin/time").exists() else cmd
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            full, capture_output=True, text=True, timeout=timeout, check=False, preexec_fn=_limit_memory
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stage = "vcovAdj" if "FIT " in out else "the fit"
        done = re.search(r"^FIT (.*)$", out, flags=re.MULTILINE)
        note = f" (fit took {float(done.group(1)):.1f} s)" if done else ""
        return {"error": f"stopped in {stage} after {timeout / 60:.0f} min{note}"}
    match = re.search(r"^RESULT (.*)$", proc.stdout, flags=re.MULTILINE)
    if proc.returncode != 0 or match is None:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if "\t" not in ln]
        tail = [ln for ln in lines if ln.strip() and not ln.startswith("Command")][:2]
        stage = "vcovAdj" if "FIT " in proc.stdout else "the fit"
        if "VCOVADJ " in proc.stdout:
            stage = "summary"
        return {
            "error": f"failed in {stage} after {time.perf_counter() - t0:.0f} s (exit {proc.returncode}): "
            + " | ".join(tail)[:160]
        }
    out = json.loads(match.group(1))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    out["peak_mb"] = int(rss.group(1)) / 1024 if rss else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--skip", default="", help="comma-separated: pbkrtest")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    rscript = shutil.which("Rscript")
    if rscript is None:
        skip.add("pbkrtest")
        print("Rscript not found: pbkrtest column skipped")
    start = time.perf_counter()
    rows: list[dict] = []
    given_up: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        scripts = {"ours": tmpdir / "ours.py", "pbkrtest": tmpdir / "pbkrtest.R"}
        scripts["ours"].write_text(OURS)
        scripts["pbkrtest"].write_text(PBKRTEST)
        for n in sizes:
            frame = simulate_growth(n, visits=10, seed=2026)
            pq, csv = tmpdir / f"d{n}.parquet", tmpdir / f"d{n}.csv"
            frame.write_parquet(pq)
            if "pbkrtest" not in skip:
                frame.write_csv(csv)
            cmds = {
                "ours": [sys.executable, str(scripts["ours"]), str(pq), FORMULA],
                "pbkrtest": [rscript or "Rscript", str(scripts["pbkrtest"]), str(csv), FORMULA],
            }
            ref = None
            for tool in ("ours", "pbkrtest"):
                if tool in skip:
                    continue
                row: dict = {"patients": n, "rows": frame.height, "tool": tool}
                if tool in given_up:
                    row["error"] = f"skipped: {given_up[tool]}"
                else:
                    row.update(run_child(cmds[tool], CHILD_TIMEOUT))
                    if "error" in row:
                        given_up[tool] = f"stopped at {n:,} patients"
                if tool == "ours" and "se" in row:
                    ref = row
                if ref is not None and "se" in row:
                    row["dse"] = float(np.max(np.abs(np.divide(row["se"], ref["se"]) - 1)))
                    row["ddf"] = float(np.max(np.abs(np.divide(row["df"], ref["df"]) - 1)))
                rows.append(row)
                print(f"  done {tool} n={n:,}: {row.get('kr_seconds', row.get('error'))}", flush=True)
    print()
    header = (
        f"{'patients':>9} {'rows':>9}  {'tool':<9} {'fit s':>8} {'KR s':>8} {'summary s':>9} {'peak MB':>8} "
        f"{'max rel dse':>11} {'max rel ddf':>11}  note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(
                f"{r['patients']:>9,} {r['rows']:>9,}  {r['tool']:<9} {'-':>8} {'-':>8} {'-':>9} {'-':>8} "
                f"{'-':>11} {'-':>11}  {r['error']}"
            )
            continue
        summ = r.get("summary_seconds")
        print(
            f"{r['patients']:>9,} {r['rows']:>9,}  {r['tool']:<9} {r['seconds']:>8.2f} "
            f"{r['kr_seconds']:>8.3f} "
            f"{'-' if summ is None else f'{summ:.2f}':>9} {r['peak_mb']:>8.0f} "
            f"{r.get('dse', float('nan')):>11.2e} {r.get('ddf', float('nan')):>11.2e}"
        )
    print(f"(total benchmark time {(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
