"""Benchmark of the derive stage on a 100,000-episode synthetic cohort generated at run time.

Prints one row per step (rows in, rows out, seconds) and the agreement of derived figures with the
generator's truth. Run with ``make bench`` or ``.venv/bin/python benchmarks/derive.py [n_patients]``.
"""

from __future__ import annotations

import sys
import time

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import (
    derive_all,
    episode_adherence,
    episode_pain,
    episode_progression,
    red_flag_alerts,
    session_pain,
    weekly_adherence,
    weekly_dose,
)
from sciatica_outcomes.derive.frames import _outcomes
from sciatica_outcomes.scoring import score_questionnaires
from sciatica_outcomes.synth import generate_cohort


def main(n_patients: int = 100_000) -> None:
    t0 = time.perf_counter()
    cohort = generate_cohort(n_patients=n_patients, seed=2026)
    gen = time.perf_counter() - t0
    t = cohort.tables
    cut = cohort.config.data_cut
    cfg = ClinicalConfig()
    rows: list[tuple[str, int, int, float]] = []

    def step(name: str, n_in: int, fn):
        start = time.perf_counter()
        out = fn()
        rows.append((name, n_in, out.height, time.perf_counter() - start))
        return out

    step(
        "score_questionnaires",
        t["questionnaire_items"].height,
        lambda: score_questionnaires(t["questionnaire_items"], cfg).measures,
    )
    step("visits + change (long outcomes)", t["measures"].height, lambda: _outcomes(t, cfg)[0])
    step(
        "weekly_adherence",
        t["sessions"].height,
        lambda: weekly_adherence(t["episodes"], t["sessions"], cfg, cut),
    )
    step(
        "episode_adherence",
        t["sessions"].height,
        lambda: episode_adherence(t["episodes"], t["sessions"], cfg, cut),
    )
    sp = step(
        "session_pain", t["sessions"].height, lambda: session_pain(t["sessions"], t["session_exercises"], cfg)
    )
    step("episode_pain", sp.height, lambda: episode_pain(sp, t["episodes"], cfg))
    step(
        "weekly_dose",
        t["session_exercises"].height,
        lambda: weekly_dose(t["episodes"], t["sessions"], t["session_exercises"]),
    )
    step(
        "episode_progression",
        t["session_exercises"].height,
        lambda: episode_progression(t["episodes"], t["sessions"], t["session_exercises"], cfg, sp),
    )
    step(
        "red_flag_alerts",
        t["symptom_checks"].height + t["sessions"].height,
        lambda: red_flag_alerts(t["symptom_checks"], t["sessions"], cfg),
    )
    start = time.perf_counter()
    derived = derive_all(t, cfg, cut)
    total = time.perf_counter() - start
    rows.append(
        (
            "derive_all (analysis_frame + episode_summary + alerts)",
            sum(f.height for f in t.values()),
            derived.analysis_frame.height,
            total,
        )
    )

    pl.Config.set_tbl_rows(50)
    pl.Config.set_tbl_width_chars(140)
    pl.Config.set_fmt_str_lengths(80)
    print(
        f"cohort: {n_patients:,} episodes, {t['sessions'].height:,} sessions, "
        f"{t['session_exercises'].height:,} exercise rows, {t['measures'].height:,} measures "
        f"(generated in {gen:.1f} s)"
    )
    print(
        pl.DataFrame(rows, schema=["step", "rows_in", "rows_out", "seconds"], orient="row").with_columns(
            pl.col("seconds").round(2)
        )
    )

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
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
