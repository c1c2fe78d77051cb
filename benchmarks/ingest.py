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

With ``--sessions-mb 200 1000 2000`` the peak memory of large files is measured instead: a sessions CSV of
about that many MB (with its episodes CSV) is written by repeating a generated 10,000-episode cohort with
distinct identifiers, optionally with problems planted every ``--bad-every`` rows (a type error, an unknown
episode and a duplicate key: the cross-chunk rules have work), and ingested into a new store in a fresh
process, whole (``chunk_bytes=None``: the ingest before chunking) and in chunks (the default
``CHUNK_BYTES``); the table gives seconds, rows and peak MiB (``VmHWM``) per size and path. Sizes whose
whole-file ingest would not fit are skipped with ``--whole-up-to MB``.
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


_ID_COLUMNS = {"episodes": ("episode_id", "patient_id"), "sessions": ("session_id", "episode_id")}


def _write_large(data: Path, sessions_mb: int, bad_every: int) -> None:
    """Episodes and sessions CSV files, the sessions about ``sessions_mb`` MB (one block at a time)."""
    block = generate_cohort(n_patients=10_000, seed=1).tables
    data.mkdir(parents=True, exist_ok=True)
    with open(data / "episodes.csv", "w") as fe, open(data / "sessions.csv", "w") as fs:
        b = 0
        while fs.tell() < sessions_mb * 1_000_000:
            prefix = f"B{b:04d}-"
            ep, se = (
                block[t].with_columns((pl.lit(prefix) + pl.col(c)).alias(c) for c in _ID_COLUMNS[t])
                for t in ("episodes", "sessions")
            )
            if bad_every:
                i = pl.int_range(pl.len())
                se = se.with_columns(pl.col(c).cast(pl.String) for c in se.columns).with_columns(
                    pl.when(i % bad_every == 7)
                    .then(pl.lit("7/10"))
                    .otherwise("pain_before")
                    .alias("pain_before"),
                    pl.when(i % bad_every == 11)
                    .then(pl.lit("EPNOPE"))
                    .otherwise("episode_id")
                    .alias("episode_id"),
                )
                se = pl.concat([se, se.gather_every(bad_every * 10)])  # duplicate keys
            fe.write(ep.write_csv(include_header=b == 0))
            fs.write(se.write_csv(include_header=b == 0))
            b += 1


def _large_child(data: Path, chunked: bool) -> dict[str, float]:
    db = data / "large.duckdb"
    for f in (db, db.with_name(db.name + ".wal")):
        f.unlink(missing_ok=True)
    t0 = time.perf_counter()
    files = [data / "episodes.csv", data / "sessions.csv"]
    res = ingest_paths(
        files, db=db, report_dir=data / "reports", **({} if chunked else {"chunk_bytes": None})
    )
    seconds = time.perf_counter() - t0
    s = res.summary()
    rows, stored, quarantined = (int(s[c].sum()) for c in ("rows_read", "rows_stored", "rows_quarantined"))
    assert rows == stored + quarantined, "rows must be conserved"
    db.unlink()
    return {"seconds": seconds, "rows": rows, "quarantined": quarantined, "peak_mib": _peak_mib()}


def large_files(sizes: list[int], bad_every: int, whole_up_to: int) -> None:
    """Peak memory of large sessions files, whole and chunked (see the module notes)."""
    print(
        f"{'sessions MB':>11} {'file MB':>8} {'rows':>11} {'quarantined':>11} {'path':>8} "
        f"{'seconds':>8} {'peak MiB':>9}"
    )
    for mb in sizes:
        data = OUT / f"large_{mb}"
        shutil.rmtree(data, ignore_errors=True)
        cmd = [sys.executable, __file__, "--child", "write-large", "--data", str(data), "--patients", str(mb)]
        subprocess.run([*cmd, "--bad-every", str(bad_every)], check=True)
        size = (data / "sessions.csv").stat().st_size / 1e6
        for path in ("chunked", "whole"):
            if path == "whole" and mb > whole_up_to:
                continue
            got = _run(f"large-{path}", data, "csv")
            print(
                f"{mb:>11,} {size:>8,.0f} {int(got['rows']):>11,} {int(got['quarantined']):>11,} {path:>8} "
                f"{got['seconds']:>8.1f} {got['peak_mib']:>9,.0f}",
                flush=True,
            )
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest is shown")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument(
        "--child",
        choices=[
            "generate",
            "plain",
            "duckdb",
            "pandera",
            "ingest",
            "write-large",
            "large-chunked",
            "large-whole",
        ],
    )
    parser.add_argument("--sessions-mb", type=int, nargs="+", help="measure large sessions files instead")
    parser.add_argument("--bad-every", type=int, default=0, help="plant problems every N session rows")
    parser.add_argument("--whole-up-to", type=int, default=1_000, help="largest MB ingested whole")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--fmt", default="csv")
    args = parser.parse_args()
    if args.child == "write-large":
        _write_large(args.data, args.patients, args.bad_every)
        return
    if args.child in ("large-chunked", "large-whole"):
        print(json.dumps(_large_child(args.data, args.child == "large-chunked")))
        return
    if args.sessions_mb:
        large_files(args.sessions_mb, args.bad_every, args.whole_up_to)
        return
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
