"""Scale benchmark: growth models fitted from Parquet with the sufficient statistics computed by DuckDB.

Model: ``y ~ week * adherence + (week | patient)`` (random intercept and slope, 4 fixed effects), REML, 8 to
10 visits per patient over 26 weeks (as ``benchmarks/lmm.py``, with a varying number of visits).

For each size (default 10^5 and 10^6 patients; ``--sizes 100000,1000000,10000000``) one run, side by side,
each step in its own process under ``/usr/bin/time -v`` (peak resident memory of that process):

- ``generate``: the data straight to a directory of Parquet files, 100,000 patients per file (vectorised
  NumPy per chunk, so memory stays bounded by the chunk);
- ``stats``: the DuckDB statistics pass alone (``outofcore.compute_statistics``: complete rows, design,
  per-patient ``Z'Z``, ``Z'[X y]``, totals), and the bytes per patient of what it returns;
- ``fit_from``: the whole out-of-core fit (``GrowthModel.fit_from`` on a glob over the directory,
  Satterthwaite df included; the DuckDB connection is closed before the optimiser), split into the
  statistics pass and the optimiser, with the peak memory of each phase (``VmHWM`` read and reset
  through ``/proc/self/clear_refs`` between them);
- ``memory``: ``pl.read_parquet`` and ``GrowthModel.fit`` (sizes up to ``--memory-max``);
- ``lme4``: ``lmer`` on the CSV (sizes up to ``--lme4-max``, default 10^5 only; it does not finish at 10^6).

DuckDB runs with ``threads = 2`` and ``memory_limit = --duckdb-memory`` (default 3 GB; it spills beyond).
The load of the machine (``uptime``) is printed before and after: other jobs share its 2 cores, so each
step's CPU time (user + system, all threads, from ``/usr/bin/time``) is printed beside its wall time.

Measured 2026-12-02 on the shared 2-core, 24 GB machine (load average 5 to 18 from other jobs during the
runs, so the wall times are inflated several-fold; CPU = user + system seconds of the process)::

    patients  rows         step       wall s  CPU s  stats s  optim s  peak MiB
    10^5      899,735      stats         1.4    1.2                       220
    10^5                   fit_from      8.8    2.0      0.7      8.1     220
    10^5                   memory        9.0    2.0                       357
    10^5                   lme4        153.9   16.9                       705  (convergence warning)
    10^6      8,999,330    generate      2.2                              156  (136 MiB Parquet)
    10^6                   stats        21.3    3.4                       677
    10^6                   fit_from     92.9   11.7     18.8     74.1     636  (31.0 s wall at load 7)
    10^6                   memory       66.0   14.6                      1885  (37.7 s wall at load 7)
    10^7      90,000,118   generate     71.7                                   (1.36 GB Parquet)
    10^7                   stats       210.5   29.7                      3222
    10^7                   fit_from    485.0  105.4    246.5    238.5    3844  (stats phase; optimiser 2776)

The statistics returned are 120 bytes per patient (``n_i``, 3 of ``Z'Z``, 10 of ``Z'[X y]``, the key).
Estimates of ``fit_from`` and ``memory`` agree to 5e-11 (max |d beta|) at every size; lme4 to 6e-8.

Run: ``.venv/bin/python benchmarks/scale.py [--sizes 100000,1000000] [--skip lme4,memory] [--keep DIR]``.
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

FORMULA = "y ~ week * adherence + (week | patient)"
CHUNK = 100_000
CHILD_TIMEOUT = 1800.0

GENERATE = """
import sys, json, time
from pathlib import Path
import numpy as np
import polars as pl
n, out, seed, chunk = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
t0 = time.perf_counter()
rows = 0
cov = np.array([[64.0, -0.3 * 8 * 0.4], [-0.3 * 8 * 0.4, 0.16]])
chol = np.linalg.cholesky(cov)
for k, start in enumerate(range(0, n, chunk)):
    m = min(chunk, n - start)
    rng = np.random.default_rng([seed, k])
    visits = rng.integers(8, 11, m)
    pid = np.repeat(np.arange(start, start + m, dtype=np.int64), visits)
    first = np.r_[0, np.cumsum(visits)[:-1]]
    r = pid.shape[0]
    week = rng.uniform(0.0, 26.0, r)
    week[first] = 0.0
    adherence = rng.beta(8.0, 2.0, m) - 0.8
    b = rng.standard_normal((m, 2)) @ chol.T
    i = pid - start
    a = adherence[i]
    y = (40.0 + b[i, 0]) + (-1.0 + b[i, 1]) * week + 2.0 * a - 0.5 * week * a + 4.0 * rng.standard_normal(r)
    part = pl.DataFrame({"patient": pid, "week": week, "adherence": a, "y": y})
    part.write_parquet(out / f"part-{k:05d}.parquet")
    rows += r
sec = time.perf_counter() - t0
size = sum(p.stat().st_size for p in out.glob("*.parquet"))
print("RESULT " + json.dumps({"seconds": sec, "rows": rows, "bytes": size}))
"""

COMMON = """
import sys, json, time
from pathlib import Path
import duckdb
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
con = duckdb.connect(config={"threads": 2, "memory_limit": sys.argv[3]})
rel = con.sql(f"SELECT * FROM read_parquet('{sys.argv[1]}/*.parquet')")
"""

STATS = (
    COMMON
    + """
from sciatica_outcomes.models import GrowthModel
from sciatica_outcomes.models.formula import parse_formula
from sciatica_outcomes.models.lmm import _Structure
from sciatica_outcomes.models.outofcore import compute_statistics
f = parse_formula(sys.argv[2])
st = _Structure(f)
t0 = time.perf_counter()
s, inner = compute_statistics(rel, f, st.groups, lambda g: {g: [t.variables for t in st.terms]}, {}, "week")
sec = time.perf_counter() - t0
m = s.c11.shape[-1]
q, d = s.f1.shape[0], s.f1.shape[1]
held = s.c11.nbytes + s.f1.nbytes + s.inner_levels.estimated_size()
sent = (1 + q * (q + 1) // 2 + q * d) * 8 + 8  # n_i, upper Z'Z, Z'[X y], the patient key
print("RESULT " + json.dumps({"seconds": sec, "patients": m, "rows": s.n, "bytes_per_patient_sent": sent,
      "bytes_per_patient_held": held / m}))
"""
)

FIT_FROM = (
    COMMON
    + """
import sciatica_outcomes.models.outofcore as oc
from sciatica_outcomes.models import GrowthModel
phase = {}
orig = oc.compute_statistics
def wrapped(*a, **k):
    out = orig(*a, **k)
    phase["stats_peak_mb"] = hwm()
    phase["reset"] = reset_hwm()
    return out
oc.compute_statistics = wrapped
t0 = time.perf_counter()
config = {"threads": 2, "memory_limit": sys.argv[3]}
m = GrowthModel(sys.argv[2]).fit_from(sys.argv[1] + "/*.parquet", duckdb_config=config)
sec = time.perf_counter() - t0
st = m.result_.extras["statistics_seconds"]
print("RESULT " + json.dumps({"seconds": sec, "stats_seconds": st, "optimiser_seconds": sec - st,
      "stats_peak_mb": phase["stats_peak_mb"], "optimiser_peak_mb": hwm() if phase["reset"] else None,
      "beta": m.beta_.tolist(), "se": m.summary["se"].to_list(), "loglik": m.result_.loglik,
      "converged": m.result_.converged, "evaluations": m.result_.diagnostics.n_evaluations}))
"""
)

MEMORY = """
import sys, json, time
import polars as pl
from sciatica_outcomes.models import GrowthModel
t0 = time.perf_counter()
frame = pl.read_parquet(sys.argv[1] + "/*.parquet")
read = time.perf_counter() - t0
m = GrowthModel(sys.argv[2]).fit(frame)
sec = time.perf_counter() - t0
print("RESULT " + json.dumps({"seconds": sec, "read_seconds": read, "beta": m.beta_.tolist(),
      "se": m.summary["se"].to_list(), "loglik": m.result_.loglik, "converged": m.result_.converged}))
"""

LME4 = r"""
suppressPackageStartupMessages({library(lme4); library(data.table); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1])
t0 <- proc.time()[["elapsed"]]
m <- lmer(as.formula(args[2]), data = d, REML = TRUE)
sec <- proc.time()[["elapsed"]] - t0
cat("RESULT ", toJSON(list(seconds = sec, beta = unname(fixef(m)), loglik = as.numeric(logLik(m)),
    converged = length(m@optinfo$conv$lme4$messages) == 0), auto_unbox = TRUE, digits = NA), "\n", sep = "")
"""


def run_child(cmd: list[str], timeout: float) -> dict:
    """Run one step; return its RESULT json plus the peak RSS of the process, or an error note."""
    full = ["/usr/bin/time", "-v", *cmd] if Path("/usr/bin/time").exists() else cmd
    t0 = time.perf_counter()
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
    out["process_seconds"] = time.perf_counter() - t0
    cpu = [re.search(rf"{k} time \(seconds\): ([0-9.]+)", proc.stderr) for k in ("User", "System")]
    out["cpu_seconds"] = sum(float(c.group(1)) for c in cpu if c is not None) if all(cpu) else None
    return out


def uptime() -> str:
    """The machine's load (other jobs share it)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--skip", default="", help="comma-separated: memory, lme4, stats")
    parser.add_argument("--memory-max", type=int, default=1_000_000, help="largest size fitted in memory")
    parser.add_argument("--lme4-max", type=int, default=100_000, help="largest size fitted by lme4")
    parser.add_argument("--duckdb-memory", default="3GB")
    parser.add_argument("--keep", default=None, help="directory for the data (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    skip = set(filter(None, args.skip.split(",")))
    rscript = shutil.which("Rscript")
    if rscript is None:
        skip.add("lme4")
    print(f"before: {uptime()}", flush=True)
    start = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        scripts = {}
        for name, text in (
            ("generate", GENERATE),
            ("stats", STATS),
            ("fit_from", FIT_FROM),
            ("memory", MEMORY),
            ("lme4", LME4),
        ):
            scripts[name] = Path(tmp) / (f"{name}.R" if name == "lme4" else f"{name}.py")
            scripts[name].write_text(text)
        for n in sizes:
            data = base / f"patients_{n}"
            py = sys.executable
            steps: list[tuple[str, list[str]]] = [
                ("generate", [py, str(scripts["generate"]), str(n), str(data), "2026", str(CHUNK)])
            ]
            if "stats" not in skip:
                steps.append(("stats", [py, str(scripts["stats"]), str(data), FORMULA, args.duckdb_memory]))
            steps.append(("fit_from", [py, str(scripts["fit_from"]), str(data), FORMULA, args.duckdb_memory]))
            if "memory" not in skip and n <= args.memory_max:
                steps.append(("memory", [py, str(scripts["memory"]), str(data), FORMULA]))
            if "lme4" not in skip and n <= args.lme4_max:
                csv = base / f"patients_{n}.csv"
                steps.append(("lme4", [rscript or "Rscript", str(scripts["lme4"]), str(csv), FORMULA]))
            ref = None
            for step, cmd in steps:
                if step == "generate" and (data / "part-00000.parquet").exists() and args.keep:
                    row = {"patients": n, "step": step, "note": "reused"}
                    rows.append(row)
                    continue
                if step == "lme4":
                    import polars as pl  # noqa: PLC0415 - only for the CSV lme4 reads

                    pl.read_parquet(str(data / "*.parquet")).write_csv(cmd[2])
                row = {"patients": n, "step": step, **run_child(cmd, CHILD_TIMEOUT)}
                if step == "fit_from" and "beta" in row:
                    ref = row
                elif ref is not None and "beta" in row:
                    row["max_abs_diff_beta"] = float(np.max(np.abs(np.subtract(row["beta"], ref["beta"]))))
                    row["loglik_minus_fit_from"] = row["loglik"] - ref["loglik"]
                rows.append(row)
                print(f"  done {step} n={n:,}: {row.get('seconds', row.get('error'))}", flush=True)
            if not args.keep:
                shutil.rmtree(data, ignore_errors=True)
    print(f"after: {uptime()}")
    print()
    header = (
        f"{'patients':>10} {'step':<9} {'seconds':>8} {'cpu s':>7} {'stats s':>8} {'optim s':>8} "
        f"{'peak MiB':>9} "
        f"{'stats MiB':>9} {'optim MiB':>9}  note"
    )
    print(header)
    print("-" * len(header))

    def f(v: object, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        if "error" in r:
            print(f"{r['patients']:>10,} {r['step']:<9} {r['error']}")
            continue
        note = []
        if r["step"] == "generate" and "rows" in r:
            note.append(f"{r['rows']:,} rows, {r['bytes'] / 2**20:.0f} MiB Parquet")
        if r["step"] == "stats":
            note.append(
                f"{r['bytes_per_patient_sent']} B/patient from DuckDB, "
                f"{r['bytes_per_patient_held']:.0f} B/patient held"
            )
        if "max_abs_diff_beta" in r:
            note.append(f"max|dbeta| {r['max_abs_diff_beta']:.1e}, dloglik {r['loglik_minus_fit_from']:+.1e}")
        if "converged" in r:
            note.append(f"converged {r['converged']}")
        if "read_seconds" in r:
            note.append(f"read {r['read_seconds']:.1f} s")
        print(
            f"{r['patients']:>10,} {r['step']:<9} {f(r.get('seconds'), '8.1f'):>8} "
            f"{f(r.get('cpu_seconds'), '7.1f'):>7} "
            f"{f(r.get('stats_seconds'), '8.1f'):>8} {f(r.get('optimiser_seconds'), '8.1f'):>8} "
            f"{f(r.get('peak_mb'), '9.0f'):>9} {f(r.get('stats_peak_mb'), '9.0f'):>9} "
            f"{f(r.get('optimiser_peak_mb'), '9.0f'):>9}  {'; '.join(note)}"
        )
    print(f"(total benchmark time {(time.perf_counter() - start) / 60:.1f} min)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
