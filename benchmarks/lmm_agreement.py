"""Agreement of the growth-model engine with R (lme4 + lmerTest + emmeans) on the golden cases.

Reads ``tests/reference/lmm/cases.json`` and the JSON that ``make_reference.R`` wrote, fits every case and
prints the largest differences: fixed effects and emmeans relative to their SE, SE, Satterthwaite df and
variance components (variances relative; covariances on the correlation scale) relative, log-likelihood
absolute. Issue 5 tolerances: 1e-5, 1e-4, 1e-3, 1e-4 and 1e-5 (absolute) respectively.

Run: ``.venv/bin/python benchmarks/lmm_agreement.py``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import polars as pl

from sciatica_outcomes.models import GrowthModel

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "reference" / "lmm"


def rel(a: object, b: object, floor: object = 1e-300) -> float:
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a_ - b_) / np.maximum(np.abs(b_), floor)))


def main() -> None:
    cases = json.loads((REFERENCE / "cases.json").read_text(encoding="utf-8"))
    header = (
        f"{'case':<20} {'rows':>6} {'beta/se':>8} {'se':>8} {'df':>8} {'varcomp':>8} {'dloglik':>9} "
        f"{'emm/se':>8} {'emm df':>8} {'fit s':>6}  lme4 default optimizer"
    )
    print(header)
    print("-" * len(header))
    for case in cases:
        r = json.loads((REFERENCE / f"{case['name']}.json").read_text(encoding="utf-8"))
        data = pl.read_csv(REFERENCE / case["data"])
        t0 = time.perf_counter()
        m = GrowthModel(case["formula"], reml=case["reml"], reference=case.get("reference")).fit(data)
        sec = time.perf_counter() - t0
        fe = m.summary
        se_r = np.asarray(r["fixed"]["se"])
        vc = m.variance_components
        sds = {
            (g, t): v
            for g, t, v, t2 in vc.select("group", "term1", "variance", "term2").iter_rows()
            if t2 is None
        }
        scale = [
            abs(row["variance"])
            if row["term2"] is None
            else math.sqrt(sds[(row["group"], row["term1"])] * sds[(row["group"], row["term2"])])
            for row in vc.iter_rows(named=True)
        ]
        spec = case["emmeans"]
        em = m.emmeans(spec["specs"], at=spec["at"], by=spec.get("by")).means
        emt = pl.DataFrame(r["emmeans"]["table"])
        default = r["default_optimizer"]
        warned = any("failed to converge" in msg for msg in default["messages"])
        note = (
            f"warned; its logLik {default['loglik'] - m.result_.loglik:+.1e} vs ours"
            if warned
            else "no warning"
        )
        print(
            f"{case['name']:<20} {data.height:>6} {rel(fe['estimate'], r['fixed']['estimate'], se_r):>8.1e} "
            f"{rel(fe['se'], se_r):>8.1e} {rel(fe['df'], r['fixed']['df']):>8.1e} "
            f"{rel(vc['variance'], r['varcorr']['vcov'], np.maximum(scale, 1e-12)):>8.1e} "
            f"{m.result_.loglik - r['loglik']:>+9.1e} "
            f"{rel(em['emmean'], emt['emmean'], emt['SE'].to_numpy()):>8.1e} "
            f"{rel(em['df'], emt['df']):>8.1e} "
            f"{sec:>6.2f}  {note}"
        )
    print("(dloglik = this engine minus lme4 with bobyqa; positive = higher likelihood here)")


if __name__ == "__main__":
    main()
