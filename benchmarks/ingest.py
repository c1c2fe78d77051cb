"""Validate + store throughput against polars' plain read of the same files.

For each cohort size the synthetic cohort is generated at run time (never committed) and written as CSV and
as Parquet under ``benchmarks/out/`` (git-ignored). Each measurement runs in a fresh child process so that
its peak resident memory is its own:

- ``plain read``: ``pl.read_csv`` / ``pl.read_parquet`` of the six table files (polars infers types);
- ``duckdb load``: DuckDB's own ``CREATE TABLE t AS SELECT * FROM read_csv(...)`` / ``read_parquet(...)``
  of the same files into a new DuckDB file: no check at all, just what storing these rows in a DuckDB file
  costs when DuckDB reads them itself (the floor for any store that is a DuckDB file);
- ``pandera``: the pandera models' own polars validation of those typed frames (column checks only), for
  reference: the ingest compiles the same checks into its own expressions;
- ``validate+store``: ``ingest_paths`` into a new DuckDB file (read as text, strict parse, every check,
  cross-table rules, one transaction, reports).

The figure of merit is the ratio of validate+store time to plain read time (target: at most 3); the ratio
to DuckDB's own unchecked load shows what validation adds to the cost of the store itself. Measurements
are interleaved (read, load, ingest, read, ...) so that a slower spell of a shared machine touches all
three; the fastest run of each is shown. Run:

    .venv/bin/python benchmarks/ingest.py [--sizes 10000 100000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

from sciatica_outcomes.ingest import ingest_paths
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.synth import generate_cohort, write_cohort

OUT = Path(__file__).resolve().parent / "out"
TABLES = ("episodes", "sessions", "session_exercises", "measures", "questionnaire_items", "symptom_checks")


def _peak_mib() -> float:
    """Peak resident memory of this process in MiB.

    ``VmHWM`` belongs to the process's own address space (reset by exec); ``ru_maxrss`` is not used because
    Linux carries it over from the forked parent across exec.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(task: str, data: Path, fmt: str) -> dict[str, float]:
    files = [data / f"{t}.{fmt}" for t in TABLES]
    if task != "plain":
        TABLE_SPECS["sessions"].schema  # noqa: B018 - build the pandera schemas before timing
    t0 = time.perf_counter()
    if task == "plain":
        frames = [pl.read_csv(f) if fmt == "csv" else pl.read_parquet(f) for f in files]
        rows = sum(f.height for f in frames)
    elif task == "duckdb":
        db = data / f"bench_duckdb_{fmt}.duckdb"
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
        t0 = time.perf_counter()
        con = duckdb.connect(str(db))
        rows = 0
        for name, f in zip(TABLES, files, strict=True):
            reader = "read_csv" if fmt == "csv" else "read_parquet"
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM {reader}('{f}')")
            rows += con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        con.close()
    elif task == "pandera":
        frames = [pl.read_parquet(data / f"{t}.parquet") for t in TABLES]
        t0 = time.perf_counter()
        for name, frame in zip(TABLES, frames, strict=True):
            TABLE_SPECS[name].schema.validate(frame, lazy=True)
        rows = sum(f.height for f in frames)
    else:
        db = data / f"bench_{fmt}.duckdb"
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
        res = ingest_paths(files, db=db, report_dir=data / "reports")
        rows = sum(t.rows_read for t in res.validation.tables)
        assert res.validation.ok, "the synthetic cohort must validate cleanly"
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": rows, "peak_mib": _peak_mib()}


def _run(task: str, data: Path, fmt: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", task, "--data", str(data), "--fmt", fmt],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _generate(n: int) -> Path:
    """Write the cohort from a child process, so that this process stays small."""
    data = OUT / f"cohort_{n}"
    if data.exists():
        shutil.rmtree(data)
    subprocess.run(
        [sys.executable, __file__, "--child", "generate", "--data", str(data), "--patients", str(n)],
        check=True,
    )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest is shown")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--child", choices=["generate", "plain", "duckdb", "pandera", "ingest"])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--fmt", default="csv")
    args = parser.parse_args()
    if args.child == "generate":
        cohort = generate_cohort(n_patients=args.patients, seed=1)
        write_cohort(cohort, args.data, fmt="csv")
        write_cohort(cohort, args.data, fmt="parquet")
        return
    if args.child:
        print(json.dumps(_child(args.child, args.data, args.fmt)))
        return
    header = (
        f"{'patients':>9} {'format':>7} {'rows':>11} {'plain read s':>12} {'rows/s':>11} "
        f"{'duckdb load s':>13} {'validate+store s':>16} {'rows/s':>11} {'x read':>6} {'x load':>6} "
        f"{'peak MiB read':>13} {'peak MiB ingest':>15}"
    )
    print(header)
    pandera_lines = []
    for n in args.sizes:
        data = _generate(n)
        for fmt in ("csv", "parquet"):
            runs: dict[str, list[dict[str, float]]] = {"plain": [], "duckdb": [], "ingest": []}
            for _ in range(args.repeat):
                for task, got in runs.items():
                    got.append(_run(task, data, fmt))
            plain, load, ingest = (min(runs[t], key=lambda r: r["seconds"]) for t in runs)
            rows = int(plain["rows"])
            assert int(load["rows"]) == rows == int(ingest["rows"]), "every task must see every row"
            print(
                f"{n:>9,} {fmt:>7} {rows:>11,} {plain['seconds']:>12.2f} {rows / plain['seconds']:>11,.0f} "
                f"{load['seconds']:>13.2f} {ingest['seconds']:>16.2f} {rows / ingest['seconds']:>11,.0f} "
                f"{ingest['seconds'] / plain['seconds']:>6.2f} {ingest['seconds'] / load['seconds']:>6.2f} "
                f"{plain['peak_mib']:>13,.0f} {ingest['peak_mib']:>15,.0f}",
                flush=True,
            )
        pan = _run("pandera", data, "parquet")
        pandera_lines.append(
            f"{n:>9,} pandera polars validate (typed frames, column checks only): {pan['seconds']:.2f} s, "
            f"{pan['rows'] / pan['seconds']:,.0f} rows/s"
        )
        if not args.keep:
            shutil.rmtree(data)
    for line in pandera_lines:
        print(line)


if __name__ == "__main__":
    main()
