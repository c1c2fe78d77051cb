"""Print the agreement of :class:`sciatica_outcomes.models.MMRM` with the committed R and SAS references.

    .venv/bin/python tests/reference/mmrm/agreement.py

1. ``nlme::gls`` / emmeans (``gls_reference.R``): one row per dataset x covariance structure, the largest
   difference of the fixed effects (relative to ``max(|b|, se)``), standard errors, covariance matrix of the
   visits (correlation scale), LS means and pairs, the absolute difference of the log-likelihood, AIC and
   BIC, and the largest relative difference of the Satterthwaite df from emmeans' (nlme's ``fdHess`` apVar)
   and lmerTest's (cs); the last line is the golden tolerance of each column (``tests/models/tolerances.py``)
   and exactly what ``tests/models/test_mmrm.py`` asserts.
2. SAS PROC MIXED listings (``fev_sas_structures.json``): ad, adh, sp_exp, group-specific structures; every
   compared value with ours, SAS's, the absolute and relative difference and the tolerance
   (``tests/models/mmrm_sas.py``, asserted by ``tests/models/test_mmrm_structures.py``).
3. Kenward-Roger (``DDFM=KR`` and ``KR(FIRSTORDER)``/``KR(LINEAR)``) of every structure SAS has.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sciatica_outcomes.models.mmrm import MMRM

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "models"))  # tolerances.py and mmrm_sas.py of the tests

import mmrm_sas  # noqa: E402
from tolerances import (  # noqa: E402
    GOLDEN_DEVIANCE,
    GOLDEN_DF,
    GOLDEN_DF_APVAR,
    GOLDEN_ESTIMATE,
    GOLDEN_LOGLIK,
    GOLDEN_SE,
    covariance_rel,
)
from tolerances import rel as rel_floor  # noqa: E402

#: dataset -> (formula, subject, group factor)
SPECS: dict[str, tuple[str, str, str]] = {
    "synth_odi": ("odi ~ visit * group + baseline_odi + visit:baseline_odi", "episode_id", "group"),
    "mar5": ("y ~ visit * arm + base", "id", "arm"),
    "small4": ("y ~ visit + arm + visit:arm + sex + age", "id", "arm"),
    "hetero6": ("y ~ visit * trt", "id", "trt"),
}
STRUCTURES = ("us", "cs", "csh", "ar1", "ar1h", "toep", "toeph")  # the structures nlme::gls has


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
        "beta": rel_floor(res.beta, r["estimate"], np.asarray(r["se"])),
        "se": rel(res.summary["se"], r["se"]),
        "sigma": covariance_rel(res.covariance, np.asarray(r["sigma"])),
        "loglik_abs": abs(res.loglik - r["loglik"]),
        "aic_abs": abs(res.aic - r["aic"]),
        "bic_abs": abs(res.bic - r["bic"]),
        "emm": rel_floor(emm["estimate"], r["emmeans"]["estimate"], np.asarray(r["emmeans"]["se"])),
        "emm_se": rel(emm["se"], r["emmeans"]["se"]),
        "pairs": rel_floor(pairs["estimate"], r["pairs"]["estimate"], np.asarray(r["pairs"]["se"])),
        "df_coef": rel(res.summary["df"], r["df"]) if df_ok else float("nan"),
        "df_emm": rel(emm["df"], r["emmeans"]["df"]) if df_ok else float("nan"),
        "df_pairs": rel(pairs["df"], r["pairs"]["df"]) if df_ok else float("nan"),
        "df_lmer": rel(res.summary["df"], r["lmer"]["df"]) if "lmer" in r else float("nan"),
        "converged": float(res.converged),
    }


#: golden tolerance of each column of the gls table (``test_mmrm.py``)
TOLERANCE = {
    "beta": GOLDEN_ESTIMATE,
    "se": GOLDEN_SE,
    "sigma": GOLDEN_SE,
    "loglik_abs": GOLDEN_LOGLIK,
    "aic_abs": GOLDEN_DEVIANCE,
    "bic_abs": GOLDEN_DEVIANCE,
    "emm": GOLDEN_ESTIMATE,
    "emm_se": GOLDEN_SE,
    "pairs": GOLDEN_ESTIMATE,
    "df_coef": float(
        "nan"
    ),  # not asserted: emmeans' df of the coefficients themselves (printed for reference)
    "df_emm": GOLDEN_DF_APVAR,
    "df_pairs": GOLDEN_DF_APVAR,
    "df_lmer": GOLDEN_DF,
    "converged": 1.0,
}


def main() -> None:
    rows = []
    for name in SPECS:
        frame, ref = load(name)
        for s in STRUCTURES:
            rows.append({"dataset": name, "cov": s, **compare(name, s, frame, ref)})
    table = pl.DataFrame(rows)
    cols = [c for c in table.columns if c not in ("dataset", "cov")]
    print("1. nlme::gls / emmeans / lmerTest (small4 us is a boundary fit, not a golden case)")
    print(f"{'dataset':<10} {'cov':<6} " + " ".join(f"{c:>10}" for c in cols))
    for row in table.iter_rows(named=True):
        vals = " ".join(f"{row[c]:>10.1e}" for c in cols)
        print(f"{row['dataset']:<10} {row['cov']:<6} {vals}")
    golden = table.filter(~((pl.col("dataset") == "small4") & (pl.col("cov") == "us")))
    print(f"{'max':<17} " + " ".join(f"{golden[c].drop_nans().max():>10.1e}" for c in cols))
    print(f"{'tolerance':<17} " + " ".join(f"{TOLERANCE[c]:>10.1e}" for c in cols))

    fev = mmrm_sas.fev()
    listing = [r for name in mmrm_sas.SAS["cases"] for r in mmrm_sas.listing_rows(name, fev)[1]]
    mmrm_sas.print_rows("2. SAS PROC MIXED listings (fev_data): ad(h), sp_exp, group-specific", listing)
    ad = [r for method in ("reml", "ml") for r in mmrm_sas.mmrm_ad_rows(method, fev)]
    mmrm_sas.print_rows("2b. mmrm's ad (SAS has no homogeneous ante-dependence)", ad)
    mmrm_sas.print_rows("3. Kenward-Roger: SAS DDFM=KR, KR(FIRSTORDER) / KR(LINEAR)", mmrm_sas.kr_rows(fev))


if __name__ == "__main__":
    main()
