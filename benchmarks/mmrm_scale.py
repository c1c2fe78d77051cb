"""Scale benchmark: the MMRM fitted from Parquet with the pattern statistics computed by DuckDB.

Model: ``y ~ visit * arm + base``, unstructured covariance of 6 visits (21 parameters), REML, Satterthwaite
df; 14 fixed effects. Data: two arms, a baseline covariate, monotone dropout (about 8 % per visit) and 5 %
intermittent missed visits, so subjects fall into a few dozen missingness patterns.

For each size (default 10^5 and 10^6 subjects; ``--sizes``) one run, each step in its own process under
``/usr/bin/time -v`` (peak resident memory of that process):

- ``generate``: the rows straight to a directory of Parquet files, 100,000 subjects per file;
- ``fit_from``: ``MMRM.fit_from`` on the directory (DuckDB: ``threads = 2``, ``memory_limit =
  --duckdb-memory``), split into the SQL statistics pass (``diagnostics["statistics_seconds"]``) and the
  rest (optimiser, Hessian, Satterthwaite, Type III);
- ``memory``: ``pl.read_parquet`` and ``MMRM.fit`` (sizes up to ``--memory-max``), and the largest
  difference of the two fits' estimates in units of their SE.

The machine's load (``uptime``) is printed before and after: its 2 cores are shared, so the CPU time
(user + system) of each step is printed beside the wall time.

Measured 2026-12-02 on the shared 2-core machine (load average 12 to 25 from other jobs, so wall times are
inflated several-fold; CPU = user + system seconds of the process)::

     subjects        rows step       wall s   CPU s  stats s  rest s  peak MiB  note
      100,000     473,001 fit_from     17.8     4.4      8.2     3.4       349  32 patterns, converged
                          memory       11.6     3.5              5.6       498  max |d beta| / SE = 1.2e-11
    1,000,000   4,721,764 fit_from     89.0    23.2     79.0     2.8      1002  32 patterns, converged
                          memory       76.0    20.8             70.2      2225  max |d beta| / SE = 2.8e-08
   10,000,000  47,236,608 generate    137.6    21.4                        239  471 MiB Parquet
                          fit_from   1218.2   256.1   1208.5     2.0      3349  32 patterns, converged

Run: ``.venv/bin/python benchmarks/mmrm_scale.py [--sizes 100000,1000000] [--memory-max 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FORMULA = "y ~ visit * arm + base"
CHUNK = 100_000
CHILD_TIMEOUT = 3600.0

GENERATE = """
import sys, json, time
from pathlib import Path
import numpy as np
import polars as pl
n, out, seed, chunk = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
t0 = time.perf_counter()
T = 6
sd = np.linspace(6.0, 9.0, T)
lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
sigma = np.outer(sd, sd) * 0.7 ** lag
chol = np.linalg.cholesky(sigma)
rows = 0
for k, start in enumerate(range(0, n, chunk)):
    m = min(chunk, n - start)
    rng = np.random.default_rng([seed, k])
    arm = rng.integers(0, 2, m)
    base = rng.normal(40.0, 8.0, m)
    mean = 30.0 + 0.5 * (base[:, None] - 40.0) - np.arange(T)[None, :] * (1.0 + 1.5 * arm[:, None])
    y = mean + rng.standard_normal((m, T)) @ chol.T
    last = np.minimum(rng.geometric(0.08, m), T)  # monotone dropout: visits 0 .. last - 1
    first = np.arange(T)[None, :] == 0
    seen = (np.arange(T)[None, :] < last[:, None]) & ((rng.random((m, T)) > 0.05) | first)
    sub, vis = np.nonzero(seen)
    frame = pl.DataFrame({
        "id": (start + sub).astype(np.int64),
        "visit": pl.Series([f"w{2 * v}" for v in range(T)])[vis],
        "arm": np.where(arm[sub] == 1, "strength", "usual"),
        "base": base[sub],
        "y": y[sub, vis],
    })
    frame.write_parquet(out / f"part-{k:05d}.parquet")
    rows += frame.height
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - t0}))
"""

FIT_FROM = """
import sys, json, time
from sciatica_outcomes.models import MMRM
path, mem = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
config = {"threads": 2, "memory_limit": mem}
m = MMRM(FORMULA, "id", "visit", covariance="us").fit_from(path, duckdb_config=config)
r = m.result_
print(json.dumps({"seconds": time.perf_counter() - t0, "stats": r.diagnostics["statistics_seconds"],
    "fit": r.diagnostics["fit_seconds"], "beta": r.beta.tolist(), "se": r.summary["se"].to_list(),
    "n_obs": r.n_obs, "patterns": r.diagnostics["n_patterns"], "converged": r.converged}))
"""

MEMORY = """
import sys, json, time
import polars as pl
from sciatica_outcomes.models import MMRM
path = sys.argv[1]
t0 = time.perf_counter()
frame = pl.read_parquet(path + "/*.parquet")
m = MMRM(FORMULA, "id", "visit", covariance="us").fit(frame)
r = m.result_
print(json.dumps({"seconds": time.perf_counter() - t0, "fit": r.diagnostics["fit_seconds"],
    "beta": r.beta.tolist(), "se": r.summary["se"].to_list(), "converged": r.converged}))
"""


def _run(code: str, *args: str) -> tuple[dict[str, float], float, float, float]:
    """Run ``code`` in a child under ``/usr/bin/time -v``: its JSON, wall s, CPU s, peak MiB."""
    src = f"FORMULA = {FORMULA!r}\n" + code
    proc = subprocess.run(
        ["/usr/bin/time", "-v", sys.executable, "-c", src, *args],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    err = proc.stderr

    def field(name: str) -> float:
        match = re.search(rf"{name}: ([0-9.:]+)", err)
        return float(match.group(1)) if match else float("nan")

    wall_text = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([0-9:.]+)", err)
    wall = float("nan")
    if wall_text:
        parts = [float(x) for x in wall_text.group(1).split(":")]
        wall = sum(p * 60.0**i for i, p in enumerate(reversed(parts)))
    cpu = field("User time \\(seconds\\)") + field("System time \\(seconds\\)")
    peak = field("Maximum resident set size \\(kbytes\\)") / 1024.0
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, cpu, peak


def main() -> None:
    """Print the table of the module docstring for the sizes asked."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--memory-max", type=int, default=1_000_000)
    ap.add_argument("--duckdb-memory", default="3GB")
    ap.add_argument("--keep", type=Path, default=None)
    args = ap.parse_args()
    print(
        "load before:", subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    )
    print(
        f"{'subjects':>9} {'rows':>11} {'step':<9} {'wall s':>7} {'CPU s':>7} {'stats s':>8} {'rest s':>7} "
        f"{'peak MiB':>9}  note"
    )
    root = Path(tempfile.mkdtemp(prefix="mmrm_scale_")) if args.keep is None else args.keep
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            out = root / f"n{n}"
            gen, wall, cpu, peak = _run(GENERATE, str(n), str(out), "18", str(CHUNK))
            size = sum(f.stat().st_size for f in out.glob("*.parquet")) / 2**20
            print(
                f"{n:>9,} {int(gen['rows']):>11,} {'generate':<9} {wall:>7.1f} {cpu:>7.1f} {'':>8} {'':>7} "
                f"{peak:>9.0f}  {size:.0f} MiB Parquet"
            )
            ooc, wall, cpu, peak = _run(FIT_FROM, str(out), args.duckdb_memory)
            rest = ooc["seconds"] - ooc["stats"]
            print(
                f"{'':>9} {'':>11} {'fit_from':<9} {wall:>7.1f} {cpu:>7.1f} {ooc['stats']:>8.1f} "
                f"{rest:>7.1f} {peak:>9.0f}  {int(ooc['patterns'])} patterns, converged {ooc['converged']}"
            )
            if n <= args.memory_max:
                mem, wall, cpu, peak = _run(MEMORY, str(out))
                diff = max(
                    abs(a - b) / s for a, b, s in zip(ooc["beta"], mem["beta"], mem["se"], strict=True)
                )
                print(
                    f"{'':>9} {'':>11} {'memory':<9} {wall:>7.1f} {cpu:>7.1f} {'':>8} {mem['fit']:>7.1f} "
                    f"{peak:>9.0f}  max |d beta| / SE = {diff:.1e}"
                )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(
        "load after:", subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()
    )


if __name__ == "__main__":
    main()
