"""Growth-model benchmark: this engine beside statsmodels MixedLM and lme4, one run.

Model: ``y ~ week * adherence + (week | patient)`` (random intercept and slope, 4 fixed effects), REML,
10 visits per patient over 26 weeks in raw week units, simulated by
``sciatica_outcomes.models.frames.simulate_growth`` for 1,000 / 10,000 / 100,000 patients.

Each fit runs in its own process under ``/usr/bin/time -v`` (peak resident memory of that process, data
loading included); the wall time is the fit alone, measured inside the process (this engine: everything
``GrowthModel.fit`` does, including Satterthwaite inference; statsmodels: ``MixedLM.fit(reml=True,
method=["lbfgs"])``; lme4: ``lmer(...)`` with its default optimizer). A competitor that does not finish
within 10 minutes is stopped and its larger sizes are skipped; the whole run is capped near 25 minutes.

Run: ``.venv/bin/python benchmarks/lmm.py [--sizes 1000,10000,100000] [--skip statsmodels,lme4]``.
"""

from __future__ import annotations

import argparse
import json
import re
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
TOTAL_BUDGET = 25 * 60.0

OURS = """
import json, sys, time
import polars as pl
from sciatica_outcomes.models import GrowthModel
frame = pl.read_parquet(sys.argv[1])
t0 = time.perf_counter()
m = GrowthModel(sys.argv[2]).fit(frame)
sec = time.perf_counter() - t0
print("RESULT " + json.dumps({"seconds": sec, "beta": m.beta_.tolist(), "loglik": m.result_.loglik,
      "converged": m.result_.converged, "evaluations": m.result_.diagnostics.n_evaluations}))
"""

STATSMODELS = """
import json, sys, time, warnings
import pandas as pd
import statsmodels.formula.api as smf
frame = pd.read_parquet(sys.argv[1])
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = smf.mixedlm("y ~ week * adherence", frame, groups="patient", re_formula="~week").fit(
        reml=True, method=["lbfgs"])
sec = time.perf_counter() - t0
print("RESULT " + json.dumps({"seconds": sec, "beta": fit.fe_params.tolist(), "loglik": float(fit.llf),
      "converged": bool(fit.converged)}))
"""

LME4 = r"""
suppressPackageStartupMessages({library(lme4); library(data.table); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1])
t0 <- proc.time()[["elapsed"]]
m <- lmer(as.formula(args[2]), data = d, REML = TRUE)
sec <- proc.time()[["elapsed"]] - t0
msgs <- m@optinfo$conv$lme4$messages
cat("RESULT ", toJSON(list(seconds = sec, beta = unname(fixef(m)), loglik = as.numeric(logLik(m)),
    converged = length(msgs) == 0, messages = msgs), auto_unbox = TRUE, digits = NA), "\n", sep = "")
"""


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run one fit; return its RESULT json plus peak RSS, or an error/timeout note."""
    full = ["/usr/bin/time", "-v", *cmd] if Path("/usr/bin/time").exists() else cmd
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"not finished within {timeout / 60:.0f} min (stopped)"}
    match = re.search(r"^RESULT (.*)$", proc.stdout, flags=re.MULTILINE)
    if proc.returncode != 0 or match is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"failed (exit {proc.returncode}): {' | '.join(tail)}"}
    out = json.loads(match.group(1))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    out["peak_mb"] = int(rss.group(1)) / 1024 if rss else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--skip", default="", help="comma-separated: statsmodels, lme4")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    rscript = shutil.which("Rscript")
    if rscript is None:
        skip.add("lme4")
        print("Rscript not found: lme4 column skipped")
    start = time.perf_counter()
    rows: list[dict] = []
    given_up: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        scripts = {"ours": tmpdir / "ours.py", "statsmodels": tmpdir / "sm.py", "lme4": tmpdir / "lme4.R"}
        scripts["ours"].write_text(OURS)
        scripts["statsmodels"].write_text(STATSMODELS)
        scripts["lme4"].write_text(LME4)
        for n in sizes:
            frame = simulate_growth(n, visits=10, seed=2026)
            pq = tmpdir / f"d{n}.parquet"
            csv = tmpdir / f"d{n}.csv"
            frame.write_parquet(pq)
            if "lme4" not in skip:
                frame.write_csv(csv)
            cmds = {
                "ours": [sys.executable, str(scripts["ours"]), str(pq), FORMULA],
                "statsmodels": [sys.executable, str(scripts["statsmodels"]), str(pq)],
                "lme4": [rscript or "Rscript", str(scripts["lme4"]), str(csv), FORMULA],
            }
            ref = None
            for tool in ("ours", "statsmodels", "lme4"):
                row = {"patients": n, "rows": frame.height, "tool": tool}
                left = TOTAL_BUDGET - (time.perf_counter() - start)
                if tool in skip:
                    continue
                if tool in given_up:
                    row["error"] = f"skipped: {given_up[tool]}"
                elif left < 30:
                    row["error"] = "skipped: 25-minute budget of the benchmark run used up"
                else:
                    row.update(run_child(cmds[tool], min(CHILD_TIMEOUT, left)))
                    if "error" in row and "not finished" in row["error"]:
                        given_up[tool] = f"did not finish {n:,} patients within 10 minutes"
                if tool == "ours" and "beta" in row:
                    ref = row
                if ref is not None and "beta" in row:
                    row["max_abs_diff_beta"] = float(np.max(np.abs(np.subtract(row["beta"], ref["beta"]))))
                    row["loglik_minus_ours"] = row["loglik"] - ref["loglik"]
                rows.append(row)
                print(f"  done {tool} n={n:,}: {row.get('seconds', row.get('error'))}", flush=True)
    print()
    header = (
        f"{'patients':>9} {'rows':>9}  {'tool':<12} {'fit s':>8} {'peak MB':>8} "
        f"{'max|dbeta|':>11} {'dloglik':>10}  {'conv':<5} note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(
                f"{r['patients']:>9,} {r['rows']:>9,}  {r['tool']:<12} {'-':>8} {'-':>8} {'-':>11} "
                f"{'-':>10}  {'-':<5} {r['error']}"
            )
            continue
        diff = r.get("max_abs_diff_beta", float("nan"))
        dll = r.get("loglik_minus_ours", float("nan"))
        msgs = r.get("messages") or []
        note = "; ".join(" ".join(str(m).split()) for m in (msgs if isinstance(msgs, list) else [msgs]))
        print(
            f"{r['patients']:>9,} {r['rows']:>9,}  {r['tool']:<12} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} "
            f"{diff:>11.2e} {dll:>+10.2e}  {r['converged']!s:<5} {note}"
        )
    by = {(r["tool"], r["patients"]): r for r in rows if "seconds" in r}
    print()
    for n in sizes:
        ours = by.get(("ours", n))
        if ours is None:
            continue
        parts = [f"{n:,} patients: this engine {ours['seconds']:.2f} s"]
        for tool in ("statsmodels", "lme4"):
            other = by.get((tool, n))
            if other is not None:
                parts.append(f"{other['seconds'] / ours['seconds']:.0f}x faster than {tool}")
        print(", ".join(parts))
    print(
        f"(dloglik = competitor's log-likelihood minus this engine's; total benchmark time "
        f"{(time.perf_counter() - start) / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
