"""Print the agreement of the MMRM's weights, empirical covariances, Type III tests and conditional
predictions with the committed SAS and R references (fev_sas_listings.json, fev_sandwich.json).

    PYTHONPATH=. .venv/bin/python tests/reference/mmrm/agreement_inference.py

Each line gives the largest difference over the reference's values: covariances of beta on the correlation
scale, SEs and df relative, -2 log L absolute. The golden tests (tests/models/test_sandwich.py,
test_mmrm_inference.py) assert these against the golden tolerances of tests/models/tolerances.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from sciatica_outcomes.models.mmrm import MMRM

HERE = Path(__file__).resolve().parent
SAS = json.loads((HERE / "fev_sas_listings.json").read_text(encoding="utf-8"))
CLUB = json.loads((HERE / "fev_sandwich.json").read_text(encoding="utf-8"))
FEV = pl.read_csv(HERE / "fev_data.csv", null_values="NA")
KINDS = {"CR0": "empirical", "CR3": "empirical-jackknife", "CR2": "empirical-bias-reduced"}


def cov_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference of two covariance matrices on the correlation scale of ``b``."""
    sd = np.sqrt(np.diag(b))
    return float(np.max(np.abs(a - b) / np.outer(sd, sd)))


def fit(formula: str, cov: str, **kw: object) -> MMRM:
    """An MMRM of fev_data."""
    return MMRM(formula, subject="USUBJID", visit="AVISIT", covariance=cov, **kw).fit(FEV)  # type: ignore[arg-type]


def main() -> None:
    """Print the tables."""
    print("SAS EMPIRICAL, FEV1 = ARMCD: covb (corr. scale) | SE(TRT-PBO) rel | -2 l_R (ours - SAS) | BW df")
    for key, ref in SAS["empirical"]["fits"].items():
        res = fit(
            "FEV1 ~ ARMCD",
            key.removesuffix("_weighted"),
            weights="WEIGHT" if ref["weighted"] else None,
            vcov="empirical",
            ddf="between-within",
        ).result_
        se = res.summary["se"][1]
        print(
            f"  {key:15s} {cov_rel(res.inference.vcov_beta, np.array(ref['covb'])):.1e} | "
            f"{abs(se / ref['trt_minus_pbo']['se'] - 1):.1e} | {-2 * res.loglik - ref['minus2_reml']:+.1e} | "
            f"{res.summary['df'].to_list()} vs SAS {[ref['intercept_df'], ref['trt_minus_pbo']['df']]}"
        )
    print(
        "gls + clubSandwich, FEV1 ~ ARMCD * AVISIT: logLik | CR0 vcov, df | CR3 vcov, df | CR2 df | "
        "mmrm BR vcov"
    )
    for key, ref in CLUB["fits"].items():
        w = "WEIGHT" if ref["weighted"] else None
        out = [f"  {key:13s}"]
        base = fit("FEV1 ~ ARMCD * AVISIT", ref["structure"], weights=w).result_
        out.append(f"{base.loglik - ref['loglik']:+.1e}")
        for cr, kind in KINDS.items():
            res = fit("FEV1 ~ ARMCD * AVISIT", ref["structure"], weights=w, vcov=kind).result_
            df = float(np.max(np.abs(res.summary["df"].to_numpy() / np.array(ref[cr]["df"]) - 1)))
            if cr == "CR2":
                out.append(f"{df:.1e} | {cov_rel(res.inference.vcov_beta, np.array(ref['mmrm_br'])):.1e}")
            else:
                out.append(f"{cov_rel(res.inference.vcov_beta, np.array(ref[cr]['vcov'])):.1e}, {df:.1e}")
        print(" | ".join(out))
    print("SAS htype=3 (ar(1), Satterthwaite): max |F| rel | den df rel | p rel")
    models = {
        "test3_1": "FEV1 ~ ARMCD * FEV1_BL",
        "test3_2": "FEV1 ~ ARMCD + SEX + ARMCD:SEX + ARMCD:FEV1_BL",
    }
    for name, formula in models.items():
        tab = fit(formula, "ar1").result_.anova(type=3)
        got = {
            frozenset(t.split(":")): r for t, r in zip(tab["term"], tab.iter_rows(named=True), strict=True)
        }
        errs = np.array(
            [
                [
                    abs(got[frozenset(r["effect"].split("*"))][k] / r[j] - 1)
                    for k, j in (("F", "f"), ("den_df", "den_df"), ("p", "p"))
                ]
                for r in SAS["type3"]["tables"][name]
            ]
        )
        print(f"  {name}: {errs[:, 0].max():.1e} | {errs[:, 1].max():.1e} | {errs[:, 2].max():.1e}")
    print(
        "SAS OUTP= / OUTPM=, FEV1 = ARMCD: conditional fit (max abs / PSD) | PSD rel | marginal SE rel "
        "(under KR SAS adjusts the conditional PSD differently; us/kenward-roger-linear is SAS's "
        "Satterthwaite run, see make_sas_fixtures.py)"
    )
    for key, ref in SAS["predict"]["fits"].items():
        cov, _, ddf = key.partition("/")
        res = fit("FEV1 ~ ARMCD", cov, ddf=ddf or "satterthwaite").result_
        pred, marg = res.predict(FEV), res.predict(FEV, conditional=False)
        p_ref, psd = np.array(ref["P"], dtype=float), np.array(ref["PSD"], dtype=float)
        e_fit = np.max(np.abs(pred["fit"].to_numpy() - p_ref) / psd)
        e_se = np.max(np.abs(pred["se_prediction"].to_numpy() / psd - 1))
        e_m = np.max(np.abs(marg["se"].to_numpy() / np.array(ref["PMSD"], dtype=float) - 1))
        print(f"  {key:23s} {e_fit:.1e} | {e_se:.1e} | {e_m:.1e}")


if __name__ == "__main__":
    main()
