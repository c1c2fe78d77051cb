"""Print the agreement of :class:`sciatica_outcomes.models.MMRM` with the committed R references.

    .venv/bin/python tests/reference/mmrm/agreement.py

One row per dataset x covariance structure: the largest relative difference of the fixed effects, standard
errors, covariance matrix of the visits, LS means and their SE, the absolute difference of the
log-likelihood, and the largest relative difference of the Satterthwaite df (coefficients, LS means, pairs)
from the emmeans computation for gls. The golden tests (tests/models/test_mmrm.py) assert the same numbers
against the golden tolerances of tests/models/tolerances.py (there the fixed effects and means relative to
``max(|b|, se)`` and the covariance matrix on the correlation scale, which can only be smaller than here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sciatica_outcomes.models.mmrm import MMRM

HERE = Path(__file__).resolve().parent

#: dataset -> (formula, subject, group factor)
SPECS: dict[str, tuple[str, str, str]] = {
    "synth_odi": ("odi ~ visit * group + baseline_odi + visit:baseline_odi", "episode_id", "group"),
    "mar5": ("y ~ visit * arm + base", "id", "arm"),
    "small4": ("y ~ visit + arm + visit:arm + sex + age", "id", "arm"),
    "hetero6": ("y ~ visit * trt", "id", "trt"),
}
STRUCTURES = ("us", "cs", "csh", "ar1", "ar1h", "toep", "toeph")


def load(name: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The dataset and its R reference."""
    frame = pl.read_csv(HERE / f"{name}.csv")
    ref = json.loads((HERE / f"{name}.json").read_text())
    return frame, ref


def rel(a: Any, b: Any) -> float:
    """Largest relative difference ``|a - b| / max(|b|, 1e-8)`` (NaN entries of ``b`` ignored)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(b)
    if not ok.any():
        return float("nan")
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-8)))


def compare(name: str, structure: str, frame: pl.DataFrame, ref: dict[str, Any]) -> dict[str, float]:
    """Differences between one Python fit and its R reference."""
    formula, subject, group = SPECS[name]
    r = ref["fits"][structure]
    res = MMRM(formula, subject, "visit", covariance=structure, visit_levels=ref["visits"]).fit(frame).result_
    if res.coef_names != r["coef_names"]:
        raise AssertionError(f"coefficient names differ: {res.coef_names} vs {r['coef_names']}")
    emm = res.lsmeans().rename({"emmean": "estimate"})
    pairs = res.pairs(group, by="visit")
    df_ok = bool(r["apvar_matrix"])
    return {
        "beta": rel(res.beta, r["estimate"]),
        "se": rel(res.summary["se"], r["se"]),
        "sigma": rel(res.covariance, np.asarray(r["sigma"])),
        "loglik_abs": abs(res.loglik - r["loglik"]),
        "aic_abs": abs(res.aic - r["aic"]),
        "bic_abs": abs(res.bic - r["bic"]),
        "emm": rel(emm["estimate"], r["emmeans"]["estimate"]),
        "emm_se": rel(emm["se"], r["emmeans"]["se"]),
        "pairs": rel(pairs["estimate"], r["pairs"]["estimate"]),
        "df_coef": rel(res.summary["df"], r["df"]) if df_ok else float("nan"),
        "df_emm": rel(emm["df"], r["emmeans"]["df"]) if df_ok else float("nan"),
        "df_pairs": rel(pairs["df"], r["pairs"]["df"]) if df_ok else float("nan"),
        "df_lmer": rel(res.summary["df"], r["lmer"]["df"]) if "lmer" in r else float("nan"),
        "converged": float(res.converged),
    }


def main() -> None:
    rows = []
    for name in SPECS:
        frame, ref = load(name)
        for s in STRUCTURES:
            rows.append({"dataset": name, "cov": s, **compare(name, s, frame, ref)})
    table = pl.DataFrame(rows)
    cols = [c for c in table.columns if c not in ("dataset", "cov")]
    print(f"{'dataset':<10} {'cov':<6} " + " ".join(f"{c:>10}" for c in cols))
    for row in table.iter_rows(named=True):
        vals = " ".join(f"{row[c]:>10.1e}" for c in cols)
        print(f"{row['dataset']:<10} {row['cov']:<6} {vals}")
    print(f"{'max':<17} " + " ".join(f"{table[c].drop_nans().max():>10.1e}" for c in cols))


if __name__ == "__main__":
    main()
