"""Benchmark of the derive stage on synthetic cohorts generated at run time (10,000 and 100,000 episodes).

Prints, per cohort size, one row per step (rows in, rows out, wall seconds, CPU seconds of all threads,
the process's peak resident memory during the step and its rise over the step's start) and the total of
``derive_all``; then the agreement of derived figures with the
generator's truth for the largest cohort.

With ``--baseline REV`` the derive package of git revision ``REV`` is loaded side by side (its
``sciatica_outcomes/derive/*.py`` written to a temporary package) and every step is timed for both
versions on the same cohort in the same process, alternating, with a check that the frames are identical.

``derive_all`` is also timed once per version in a fresh process (row "derive_all (fresh process)"),
free of the memory the earlier steps leave behind. Run with ``make bench`` or
``.venv/bin/python benchmarks/derive.py [--sizes 10000 100000] [--baseline REV]``.

With ``--store-sizes N ...`` (e.g. ``--store-sizes 100000 1000000``) the derive of a DuckDB store is measured
instead: a store of N episodes is built (a generated cohort of 10,000 episodes repeated with distinct
identifiers, written by ``Store.write``; under ``benchmarks/out/``, removed afterwards), then, each in a
fresh process, the in-memory ``derive_all(store)`` (up to ``--in-memory-up-to`` episodes, default 100,000:
it needs about 70 MB per 1,000 episodes) and the batched ``write_derived_batched(store, out)``
(:mod:`sciatica_outcomes.derive.batched`, ``--batch`` episodes per range) are timed, with the peak resident
memory of each process (``VmHWM``), and the batched files are compared with the in-memory frames.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
from polars.testing import assert_frame_equal

import sciatica_outcomes.derive as current
from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.scoring import score_questionnaires
from sciatica_outcomes.synth import generate_cohort

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRSS:
    """Peak resident set size of this process while the block runs, sampled every 5 ms (Linux).

    ``peak`` is the process's peak (cohort tables included); ``growth`` its rise over the size at entry.
    """

    def __enter__(self) -> _PeakRSS:
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def growth(self) -> float:
        return self.peak - self.start


def load_baseline(rev: str) -> ModuleType:
    """Import the derive package of git revision ``rev`` as a separate package ``_derive_baseline``."""
    out = Path(tempfile.mkdtemp(prefix="derive_baseline_")) / "_derive_baseline"
    out.mkdir()
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", rev, "sciatica_outcomes/derive/"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        if name.endswith(".py"):
            text = subprocess.run(
                ["git", "show", f"{rev}:{name}"], cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
            (out / Path(name).name).write_text(text.replace("sciatica_outcomes.derive", "_derive_baseline"))
    sys.path.insert(0, str(out.parent))
    return importlib.import_module("_derive_baseline")


def _steps(t: dict[str, pl.DataFrame], cfg: ClinicalConfig, cut: Any) -> list[tuple[str, int, Callable]]:
    """(name, rows in, function of the derive package) for every timed step."""
    ep, s, ex = t["episodes"], t["sessions"], t["session_exercises"]

    def sp(m: ModuleType) -> pl.DataFrame:
        return m.session_pain(s, ex, cfg)

    items, checks = t["questionnaire_items"], t["symptom_checks"]
    return [
        ("score_questionnaires", items.height, lambda m: score_questionnaires(items, cfg).measures),
        ("visits + change (long outcomes)", t["measures"].height, lambda m: m.outcome_measures(t, cfg)),
        ("weekly_adherence", s.height, lambda m: m.weekly_adherence(ep, s, cfg, cut)),
        ("episode_adherence", s.height, lambda m: m.episode_adherence(ep, s, cfg, cut)),
        ("session_pain", s.height, sp),
        ("episode_pain (+ session_pain)", s.height, lambda m: m.episode_pain(sp(m), ep, cfg)),
        ("weekly_dose", ex.height, lambda m: m.weekly_dose(ep, s, ex)),
        ("exercise_progression", ex.height, lambda m: m.exercise_progression(s, ex)),
        ("episode_progression (+ session_pain)", ex.height, lambda m: m.episode_progression(ep, s, ex, cfg)),
        ("red_flag_alerts", checks.height + s.height, lambda m: m.red_flag_alerts(checks, s, cfg)),
        ("derive_all (total)", sum(f.height for f in t.values()), lambda m: m.derive_all(t, cfg, cut)),
    ]


def _frames(out: Any) -> list[pl.DataFrame]:
    if isinstance(out, pl.DataFrame):
        return [out]
    return [out.analysis_frame, out.episode_summary, out.alerts, out.outcomes]


def _identical(a: Any, b: Any) -> bool:
    try:
        for x, y in zip(_frames(a), _frames(b), strict=True):
            assert_frame_equal(x, y, check_exact=True)
    except AssertionError:
        return False
    return True


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float, float]:
    with _PeakRSS() as mem:
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return out, wall, cpu, mem


def run_size(n_patients: int, baseline: ModuleType | None) -> tuple[list[tuple], Any]:
    """Time every step on one generated cohort; returns the table rows and the cohort with its derivation."""
    t0 = time.perf_counter()
    cohort = generate_cohort(n_patients=n_patients, seed=2026)
    gen = time.perf_counter() - t0
    t, cut, cfg = cohort.tables, cohort.config.data_cut, ClinicalConfig()
    print(
        f"cohort: {n_patients:,} episodes, {t['sessions'].height:,} sessions, "
        f"{t['session_exercises'].height:,} exercise rows, {t['measures'].height:,} measures "
        f"(generated in {gen:.1f} s)",
        flush=True,
    )
    rows: list[tuple] = []
    derived = None
    for name, n_in, fn in _steps(t, cfg, cut):
        base = None
        if baseline is not None:
            base, b_wall, b_cpu, b_mem = _timed(lambda fn=fn: fn(baseline))
        out, wall, cpu, mem = _timed(lambda fn=fn: fn(current))
        row: tuple = (n_patients, name, n_in, _frames(out)[0].height, wall, cpu, mem.peak, mem.growth)
        if baseline is not None:
            row += (b_wall, b_cpu, b_mem.peak, b_mem.growth, b_wall / wall, _identical(base, out))
        rows.append(row)
        derived = out
        del base, out
    return rows, (cohort, derived)


def _child(n_patients: int, rev: str | None) -> None:
    """Time ``derive_all`` once in this (fresh) process and print the figures as one JSON line."""
    module = load_baseline(rev) if rev else current
    cohort = generate_cohort(n_patients=n_patients, seed=2026)
    _out, wall, cpu, mem = _timed(
        lambda: module.derive_all(cohort.tables, ClinicalConfig(), cohort.config.data_cut)
    )
    print(json.dumps({"seconds": wall, "cpu_s": cpu, "peak_mb": mem.peak, "grow_mb": mem.growth}))


def fresh_derive_all(n_patients: int, rev: str | None) -> dict[str, float]:
    """``derive_all`` timed in a new process (no memory left over from earlier steps)."""
    cmd = [sys.executable, __file__, "--child", str(n_patients)] + (["--baseline", rev] if rev else [])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


OUT = ROOT / "benchmarks" / "out"
_BLOCK = 10_000
_ID_COLUMNS = {
    "episodes": ("episode_id", "patient_id"),
    "sessions": ("session_id", "episode_id"),
    "session_exercises": ("session_id",),
    "measures": ("episode_id",),
    "questionnaire_items": ("episode_id",),
    "symptom_checks": ("episode_id",),
}


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process (``VmHWM``, reset by exec), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return _rss_peak_mb()


def _build_store(db: Path, n_patients: int) -> dict[str, int]:
    """A store of ``n_patients`` episodes: one generated block of 10,000 repeated with distinct ids."""
    from sciatica_outcomes.store import Store  # noqa: PLC0415

    block = generate_cohort(n_patients=min(n_patients, _BLOCK), seed=2026).tables
    rows = dict.fromkeys(block, 0)
    with Store(db) as store:
        for b in range(-(-n_patients // _BLOCK)):
            prefix = f"B{b:04d}-"
            for name, frame in block.items():
                tiled = frame.with_columns(
                    (pl.lit(prefix) + pl.col(c)).alias(c)
                    for c in _ID_COLUMNS.get(name, ("episode_id",))
                    if c in frame.columns
                )
                store.write(name, tiled, source="benchmark")
                rows[name] += tiled.height
    return rows


def _store_child(task: str, db: Path, out: Path, batch: int) -> None:
    """One measurement in this (fresh) process, printed as one JSON line."""
    from sciatica_outcomes.derive.batched import write_derived_batched  # noqa: PLC0415
    from sciatica_outcomes.derive.cli import write_derived  # noqa: PLC0415

    t0 = time.perf_counter()
    if task == "build":
        rows = _build_store(db, batch)
        print(json.dumps({"seconds": time.perf_counter() - t0, "rows": sum(rows.values()), **rows}))
        return
    if task == "memory":
        paths = write_derived(current.derive_all(db), out, source=str(db))
    else:
        paths = write_derived_batched(db, out, episodes_per_batch=batch)
    seconds = time.perf_counter() - t0
    rows = json.loads(paths["provenance"].read_text())["rows"]
    print(json.dumps({"seconds": seconds, "peak_mb": _vm_hwm_mb(), "rows": rows}))


def _store_run(task: str, db: Path, out: Path, batch: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--store-child", task, "--db", str(db), "--out", str(out)]
    done = subprocess.run([*cmd, "--batch", str(batch)], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same_files(a: Path, b: Path) -> bool:
    for name in ("analysis_frame.parquet", "episode_summary.parquet", "scored_measures.parquet"):
        if not pl.read_parquet(a / name).equals(pl.read_parquet(b / name)):
            return False
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in ("alerts.csv", "scoring_problems.csv"))


def store_sizes(sizes: list[int], batch: int, in_memory_up_to: int) -> None:
    """Derive from a DuckDB store: in memory and batched, peak memory of each (see the module notes)."""
    import shutil  # noqa: PLC0415

    print(f"{'episodes':>9} {'input rows':>11} {'build s':>8} {'path':>8} {'seconds':>8} {'peak MB':>8} same")
    for n in sizes:
        work = OUT / f"derive_store_{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        db = work / "s.duckdb"
        built = _store_run("build", db, work, n)
        results = {}
        for task in ("memory", "batched"):
            if task == "memory" and n > in_memory_up_to:
                continue
            results[task] = _store_run(task, db, work / task, batch)
        same = _same_files(work / "memory", work / "batched") if len(results) == 2 else None
        for task, got in results.items():
            print(
                f"{n:>9,} {built['rows']:>11,} {built['seconds']:>8.1f} {task:>8} {got['seconds']:>8.1f} "
                f"{got['peak_mb']:>8,.0f} {'' if task == 'memory' else same}",
                flush=True,
            )
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--baseline", help="git revision whose derive package is timed side by side")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store-sizes", type=int, nargs="+", help="derive from a store of these sizes")
    parser.add_argument("--batch", type=int, default=20_000, help="episodes per range of the batched derive")
    parser.add_argument("--in-memory-up-to", type=int, default=100_000)
    parser.add_argument("--store-child", help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.baseline)
        return
    if args.store_child:
        _store_child(args.store_child, args.db, args.out, args.batch)
        return
    if args.store_sizes:
        store_sizes(args.store_sizes, args.batch, args.in_memory_up_to)
        return
    baseline = load_baseline(args.baseline) if args.baseline else None
    pl.Config.set_tbl_rows(100)
    pl.Config.set_tbl_width_chars(200)
    pl.Config.set_fmt_str_lengths(60)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_tbl_hide_column_data_types(True)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_tbl_formatting("ASCII_MARKDOWN")
    all_rows: list[tuple] = []
    last = None
    for n in args.sizes:
        rows, last = run_size(n, baseline)
        fresh = fresh_derive_all(n, None)
        row: tuple = (n, "derive_all (fresh process)", rows[-1][2], rows[-1][3], *fresh.values())
        if baseline is not None:
            base = fresh_derive_all(n, args.baseline)
            row += (base["seconds"], base["cpu_s"], base["peak_mb"], base["grow_mb"])
            row += (base["seconds"] / fresh["seconds"], None)
        all_rows.extend([*rows, row])
    schema = ["patients", "step", "rows_in", "rows_out", "seconds", "cpu_s", "peak_mb", "grow_mb"]
    if baseline is not None:
        schema += ["base_seconds", "base_cpu_s", "base_peak_mb", "base_grow_mb", "speedup", "identical"]
    table = pl.DataFrame(all_rows, schema=schema, orient="row", infer_schema_length=None)
    print(
        table.with_columns(
            pl.col("^.*seconds$|^.*cpu_s$|speedup$").round(2), pl.col("^.*_mb$").round(0).cast(pl.Int64)
        )
    )
    print(f"process peak RSS: {_rss_peak_mb():,.0f} MB (ru_maxrss)")
    assert last is not None
    cohort, derived = last
    _truth_checks(cohort, derived)


def _rss_peak_mb() -> float:
    import resource  # noqa: PLC0415 - Unix only, used for the closing line

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _truth_checks(cohort: Any, derived: Any) -> None:
    cfg = ClinicalConfig()
    s = derived.episode_summary
    truth = cohort.truth
    observed = s.filter(pl.col("program_observed"))
    planted_flags = {(r["episode_id"], r["checked_on"]) for r in truth["events"]["red_flags"]}
    red = derived.alerts.filter(pl.col("kind") == "red_flag")
    found_flags = {(e, d.isoformat()) for e, d in red.select("episode_id", "date").iter_rows()}
    fl = pl.DataFrame(truth["events"]["flares"])
    stalled_truth = {e["episode_id"] for e in truth["events"]["stalled_progression"]}
    full = s.filter(pl.col("exposure_days") >= cfg.program_days)
    full_stalls = full.filter(pl.col("episode_id").is_in(list(stalled_truth)))
    checks = [
        (
            "mean completed/scheduled vs propensity mean",
            (s["n_completed"] / s["n_scheduled"]).mean(),
            truth["episodes"]["adherence_propensity_mean"],
        ),
        (
            "mean adherence (completed/prescribed)",
            s["adherence"].mean(),
            truth["episodes"]["adherence_propensity_mean"],
        ),
        ("dropout share, programs observed", observed["dropout"].mean(), truth["realised"]["dropout_share"]),
        (
            "flares (unsettled spikes)",
            float(s["n_flares"].sum()),
            float(truth["realised"]["n_flares_unsettled"]),
        ),
        ("pain spikes", float(s["n_spikes"].sum()), float(fl.height)),
        (
            "red-flag alerts found / planted",
            float(len(found_flags & planted_flags)),
            float(len(planted_flags)),
        ),
        ("red-flag alerts not planted", float(len(found_flags - planted_flags)), 0.0),
        (
            "unactioned red flags",
            float(red["unactioned"].sum()),
            float(sum(r["action_taken"] is None for r in truth["events"]["red_flags"])),
        ),
        ("planted stalls flagged (full program)", full_stalls["stalled"].mean(), 1.0),
        (
            "stall flags on non-planted (full program)",
            full.filter(~pl.col("episode_id").is_in(list(stalled_truth)))["stalled"].mean(),
            0.0,
        ),
    ]
    print(
        pl.DataFrame(checks, schema=["figure", "derived", "truth"], orient="row").with_columns(
            pl.col("derived", "truth").round(4)
        )
    )


if __name__ == "__main__":
    main()
