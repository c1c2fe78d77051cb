"""Agreement of the growth-model engine with R (lme4 + lmerTest + emmeans + pbkrtest) on the golden cases.

Reads ``tests/reference/lmm/cases.json`` and the JSON that ``make_reference.R`` wrote, fits every case and
prints the largest differences: fixed effects and emmeans relative to their SE, SE, Satterthwaite df and
variance components (variances relative; covariances on the correlation scale) relative, log-likelihood
absolute; the last line is the golden tolerance of each column (``tests/models/tolerances.py``). Then the
Kenward-Roger table (``make_kr_reference.R``: lmerTest ``summary(m, ddf = "Kenward-Roger")`` and
``pbkrtest::KRmodcomp``): per coefficient our SE and df, R's, the absolute and relative difference and the
tolerance ``tests/models/test_kr.py`` asserts (``GOLDEN_SE`` relative for our own fit). The MMRM's agreement
tables (nlme, SAS PROC MIXED including KR): ``tests/reference/mmrm/agreement.py``.

Run: ``.venv/bin/python benchmarks/lmm_agreement.py``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sciatica_outcomes.models import GrowthModel

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "reference" / "lmm"
sys.path.insert(0, str(REFERENCE.parents[1] / "models"))  # tolerances.py and mmrm_sas.py of the tests

from mmrm_sas import Row, print_rows, row  # noqa: E402
from tolerances import GOLDEN_DF, GOLDEN_ESTIMATE, GOLDEN_LOGLIK, GOLDEN_SE  # noqa: E402


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
    print(
        f"{'tolerance':<20} {'':>6} {GOLDEN_ESTIMATE:>8.1e} {GOLDEN_SE:>8.1e} {GOLDEN_DF:>8.1e} "
        f"{GOLDEN_SE:>8.1e} {GOLDEN_LOGLIK:>9.1e} {GOLDEN_ESTIMATE:>8.1e} {GOLDEN_DF:>8.1e}"
    )
    print("(dloglik = this engine minus lme4 with bobyqa; positive = higher likelihood here)")
    kenward_roger(cases)


def kenward_roger(cases: list[dict[str, Any]]) -> None:
    """Our Kenward-Roger fit against lmerTest / pbkrtest, per coefficient and for KRmodcomp."""
    kr_ref = json.loads((REFERENCE / "kr_reference.json").read_text(encoding="utf-8"))
    rows: list[Row] = []
    for case in cases:
        name = str(case["name"])
        if name not in kr_ref:
            continue
        r = kr_ref[name]
        data = pl.read_csv(REFERENCE / str(case["data"]))
        ref_levels = case.get("reference")
        m = GrowthModel(str(case["formula"]), reference=ref_levels, ddf="kenward-roger").fit(data)
        fe = m.summary
        for term, se, df, se_r, df_r in zip(
            fe["term"], fe["se"], fe["df"], r["fixed"]["se"], r["fixed"]["df"], strict=True
        ):
            rows.append(row(name, f"SE {term}", se, se_r, GOLDEN_SE * abs(se_r)))
            rows.append(row(name, f"df {term}", df, df_r, GOLDEN_SE * abs(df_r)))
        k = r["krmodcomp"]
        ft = m.f_test(np.eye(len(r["names"]))[1:])
        rows.append(row(name, "KRmodcomp F", ft["f"], k["f"], 2 * GOLDEN_SE * abs(k["f"])))
        rows.append(row(name, "KRmodcomp den df", ft["den_df"], k["den_df"], GOLDEN_SE * abs(k["den_df"])))
    print_rows("Kenward-Roger: lmerTest summary(ddf = 'Kenward-Roger') and pbkrtest::KRmodcomp", rows)


if __name__ == "__main__":
    main()
