"""GLMM benchmark: MixedGLM beside lme4::glmer and glmmTMB in one run, same data, same model.

Models (``sciatica_outcomes.models.frames.simulate_flares``: 12 program weeks per patient, 1-3 sessions a
week, a planted decline of the flare rate of 0.93 per week):

- ``poisson-slope``: ``flares ~ week + (week | patient)`` with ``offset(log_sessions)``, Laplace
  (glmer ``nAGQ = 1``; glmmTMB ``poisson``);
- ``binomial-agq``: ``flared_sessions`` out of ``sessions`` ~ ``week + (1 | patient)``, adaptive
  Gauss-Hermite with 9 nodes (glmer ``nAGQ = 9``; glmmTMB has no quadrature: Laplace, marked);
- ``poisson-nested``: patients nested in 20 clinics (clinic SD 0.3), ``flares ~ week + (1 | clinic) +
  (week | patient)`` with ``offset(log_sessions)``, Laplace.

Each tool runs in its own process under ``/usr/bin/time -v`` (peak resident memory) with a time limit
(``--timeout``, default 10 min). Columns: fit seconds (the fitting call only, data already in memory), the
log-likelihood (glmer's nAGQ > 1 value plus the saturated log-likelihood it omits, so that the three are on
one scale), the largest difference of the fixed effects from this package's in units of this package's SE, and
the speed ratio (tool seconds / this package's seconds). A tool that fails or does not finish a size is not
run at larger sizes.

Run: ``.venv/bin/python benchmarks/glmm.py [--sizes 1000,10000,100000] [--models poisson-slope,binomial-agq]
[--skip glmer,glmmTMB]``.
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

from sciatica_outcomes.models.frames import simulate_flares

MODELS = {
    "poisson-slope": {
        "formula": "flares ~ week + (week | patient)",
        "family": "poisson",
        "offset": "log_sessions",
        "trials": None,
        "nagq": 1,
        "r": "flares ~ week + (week | patient) + offset(log_sessions)",
    },
    "binomial-agq": {
        "formula": "flared_sessions ~ week + (1 | patient)",
        "family": "binomial",
        "offset": None,
        "trials": "sessions",
        "nagq": 9,
        "r": "cbind(flared_sessions, sessions - flared_sessions) ~ week + (1 | patient)",
    },
    "poisson-nested": {
        "formula": "flares ~ week + (1 | clinic) + (week | patient)",
        "family": "poisson",
        "offset": "log_sessions",
        "trials": None,
        "nagq": 1,
        "r": "flares ~ week + (1 | clinic) + (week | patient) + offset(log_sessions)",
        "clinics": 20,
    },
}
MEMORY_LIMIT = 16 * 1024**3

OURS = """
import json, sys, time
import polars as pl
from sciatica_outcomes.models import MixedGLM
spec = json.loads(sys.argv[2])
frame = pl.read_parquet(sys.argv[1])
t0 = time.perf_counter()
m = MixedGLM(spec["formula"], family=spec["family"], offset=spec["offset"], trials=spec["trials"],
             nagq=spec["nagq"]).fit(frame)
sec = time.perf_counter() - t0
print("RESULT " + json.dumps({"seconds": sec, "loglik": m.result_.loglik, "beta": m.beta_.tolist(),
      "se": m.summary["se"].to_list(), "converged": m.result_.converged}))
"""

R_SCRIPT = r"""
suppressPackageStartupMessages({library(lme4); library(glmmTMB); library(data.table); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1]); spec <- fromJSON(args[2]); tool <- args[3]
d$patient <- factor(d$patient)
if ("clinic" %in% names(d)) d$clinic <- factor(d$clinic)
fam <- if (spec$family == "poisson") poisson else binomial
t0 <- proc.time()[["elapsed"]]
if (tool == "glmer") {
  m <- glmer(as.formula(spec$r), data = d, family = fam, nAGQ = spec$nagq,
             control = glmerControl(optimizer = "bobyqa"))
  sec <- proc.time()[["elapsed"]] - t0
  ll <- as.numeric(logLik(m))
  if (spec$nagq > 1) {
    y <- d[[all.vars(as.formula(spec$r))[1]]]; n <- if (is.null(spec$trials)) 1 else d[[spec$trials]]
    sat <- if (spec$family == "binomial") dbinom(y, n, y / n, log = TRUE) else dpois(y, y, log = TRUE)
    ll <- ll + sum(sat)
  }
  beta <- unname(fixef(m))
} else {
  m <- glmmTMB(as.formula(spec$r), data = d, family = fam)
  sec <- proc.time()[["elapsed"]] - t0
  ll <- as.numeric(logLik(m)); beta <- unname(fixef(m)$cond)
}
cat("RESULT ", toJSON(list(seconds = sec, loglik = ll, beta = beta, converged = TRUE), auto_unbox = TRUE,
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
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout / 60:.0f} min"}
    match = re.search(r"^RESULT (.*)$", proc.stdout, flags=re.MULTILINE)
    if proc.returncode != 0 or match is None:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if "\t" not in ln]
        tail = [ln for ln in lines if ln.strip() and not ln.startswith("Command")][:2]
        return {"error": f"failed after {time.perf_counter() - t0:.0f} s: " + " | ".join(tail)[:160]}
    out = json.loads(match.group(1))
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    out["peak_mb"] = int(rss.group(1)) / 1024 if rss else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--skip", default="", help="comma-separated: glmer,glmmTMB")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per tool and size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    rscript = shutil.which("Rscript")
    if rscript is None:
        skip |= {"glmer", "glmmTMB"}
        print("Rscript not found: the R columns are skipped")
    start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "ours.py").write_text(OURS)
        (tmpdir / "peer.R").write_text(R_SCRIPT)
        for name in args.models.split(","):
            spec = MODELS[name]
            given_up: set[str] = set()
            for n in sizes:
                frame = simulate_flares(n, weeks=12, seed=2026, n_clinics=spec.get("clinics"))
                pq, csv = tmpdir / f"d{n}.parquet", tmpdir / f"d{n}.csv"
                frame.write_parquet(pq)
                frame.write_csv(csv)
                ref: dict | None = None
                for tool in ("ours", "glmer", "glmmTMB"):
                    if tool in skip:
                        continue
                    row: dict = {"model": name, "patients": n, "rows": frame.height, "tool": tool}
                    if tool in given_up:
                        row["error"] = "skipped (did not finish a smaller size)"
                    else:
                        cmd = (
                            [sys.executable, str(tmpdir / "ours.py"), str(pq), json.dumps(spec)]
                            if tool == "ours"
                            else [
                                rscript or "Rscript",
                                str(tmpdir / "peer.R"),
                                str(csv),
                                json.dumps(spec),
                                tool,
                            ]
                        )
                        row.update(run_child(cmd, args.timeout))
                        if "error" in row:
                            given_up.add(tool)
                    if tool == "ours" and "beta" in row:
                        ref = row
                    if ref is not None and "beta" in row:
                        row["dbeta_se"] = max(
                            abs(b - r) / s
                            for b, r, s in zip(row["beta"], ref["beta"], ref["se"], strict=True)
                        )
                        row["dll"] = row["loglik"] - ref["loglik"]
                        row["ratio"] = row["seconds"] / ref["seconds"]
                    if tool == "glmmTMB" and spec["nagq"] > 1:
                        row["note"] = "Laplace (glmmTMB has no quadrature)"
                    rows.append(row)
                    print(f"  done {name} {tool} n={n:,}: {row.get('seconds', row.get('error'))}", flush=True)
    print()
    header = (
        f"{'model':<14} {'patients':>9} {'rows':>10}  {'tool':<8} {'fit s':>8} {'x ours':>7} {'peak MB':>8} "
        f"{'loglik':>16} {'ll - ours':>10} {'max |db|/SE':>11}  note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(
                f"{r['model']:<14} {r['patients']:>9,} {r['rows']:>10,}  {r['tool']:<8} {'-':>8} {'-':>7} "
                f"{'-':>8} {'-':>16} {'-':>10} {'-':>11}  {r['error']}"
            )
            continue
        print(
            f"{r['model']:<14} {r['patients']:>9,} {r['rows']:>10,}  {r['tool']:<8} {r['seconds']:>8.2f} "
            f"{r.get('ratio', 1.0):>7.1f} {r['peak_mb']:>8.0f} {r['loglik']:>16.6f} "
            f"{r.get('dll', 0.0):>10.2e} {r.get('dbeta_se', 0.0):>11.2e}  {r.get('note', '')}"
        )
    print(f"(total benchmark time {(time.perf_counter() - start) / 60:.1f} min)")


if __name__ == "__main__":
    main()
