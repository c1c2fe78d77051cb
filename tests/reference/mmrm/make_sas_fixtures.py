"""Collect the SAS PROC MIXED values of openpharma/mmrm's design folder into ``fev_sas_listings.json``.

Run from the repository root with the openpharma/mmrm git directory (Apache-2.0) as the argument::

    python tests/reference/mmrm/make_sas_fixtures.py /work/.mirror/openpharma+mmrm/repo

Reads, at the snapshot's HEAD:

- ``design/Robust/empirical_<cov>{,_weighted}{_covb.csv,_lsmean.csv,.txt}``: ``PROC MIXED empirical
  method=reml; MODEL FEV1 = ARMCD / covb; REPEATED AVISIT / subject=USUBJID type=<cov>; [WEIGHT WEIGHT;]``
  (``Fixed Effects SE Method Empirical``, ``Degrees of Freedom Method Between-Within``): the empirical
  covariance of (Intercept, ARMCDTRT), the TRT - PBO difference (estimate, SE, df) and the intercept's df
  from ``Solution for Fixed Effects``, and -2 Res Log Like of the last iteration;
- ``design/SAS/sas_weighted.txt``: ``MODEL FEV1 = RACE SEX ARMCD AVISIT ARMCD*AVISIT / ddfm=satterthwaite;
  REPEATED AVISIT / subject=USUBJID type=un; WEIGHT WEIGHT;``: -2 Res Log Like of the last iteration, the UN
  parameters, the fixed effects (estimate, SE, df as printed) and the Type 3 tests;
- ``design/R/R_weighted_mmrm.txt``: mmrm's own ``summary(mmrm(FEV1 ~ RACE + SEX + ARMCD * AVISIT +
  us(AVISIT | USUBJID), weights = WEIGHT))`` (AVISIT releveled to VIS4): coefficient estimate, SE, df (printed
  to 4 and 2 decimals) and the covariance estimate (4 decimals), for the Satterthwaite df with weights;
- ``design/anova/test3_1.csv``, ``test3_2.csv``: ``Type 3 Tests of Fixed Effects`` (``ddfm=satterthwaite``,
  ar(1));
- ``design/predict_interval/<cov>_<ddfm>.csv``: ``outpm=`` (marginal, ``PM``, ``PMSD``) and ``outp=``
  (conditional, ``P``, ``PSD``) predictions of ``MODEL FEV1 = ARMCD`` for every row of fev_data.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SAS_COV = {
    "us": "us",
    "cs": "cs",
    "ar1": "ar1",
    "ar1h": "arh1",
    "csh": "csh",
    "toep": "toep",
    "toeph": "toeph",
}
PREDICT = {
    "us": "un_satterthwaite",
    "cs": "cs_satterthwaite",
    "ar1": "ar(1)_satterthwaite",
    "toep": "toep_satterthwaite",
    "us/kenward-roger-linear": "un_kenwardroger_linear",
    "cs/kenward-roger": "cs_kenwardroger",
    "ar1/kenward-roger": "ar(1)_kenwardroger",
    "toep/kenward-roger": "toep_kenwardroger",
}


def show(git_dir: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"HEAD:{path}"], check=True, capture_output=True, text=True
    ).stdout


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def num(v: str) -> float | None:
    return None if v in ("NA", "NaN", "") else float(v)


def main(git_dir: str) -> None:
    commit = subprocess.run(
        ["git", "--git-dir", git_dir, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    empirical: dict[str, object] = {}
    for ours, sas in SAS_COV.items():
        for suffix in ("", "_weighted"):
            base = f"design/Robust/empirical_{sas}{suffix}"
            covb = rows(show(git_dir, base + "_covb.csv"))
            mat = [[float(r["Col1"]), float(r["Col2"])] for r in covb[:2]]
            diff = rows(show(git_dir, base + "_lsmean.csv"))[0]
            listing = show(git_dir, base + ".txt")
            hist = listing.split("Iteration History")[1].split("Convergence criteria met")[0]
            last = [ln.split() for ln in hist.splitlines() if re.match(r"^\s+\d+\s+\d+\s+\d", ln)][-1]
            intercept = re.search(r"Intercept\s+(\S+)\s+(\S+)\s+(\d+)", listing)
            assert intercept is not None
            empirical[ours + suffix] = {
                "sas_type": sas,
                "weighted": bool(suffix),
                "covb": mat,
                "trt_minus_pbo": {
                    "estimate": float(diff["Estimate"]),
                    "se": float(diff["StdErr"]),
                    "df": float(diff["DF"]),
                },
                "intercept_df": float(intercept.group(3)),
                "minus2_reml": float(last[2]),
            }
    listing = show(git_dir, "design/SAS/sas_weighted.txt")
    hist = listing.split("Iteration History")[1].split("Convergence criteria met")[0]
    last = [ln.split() for ln in hist.splitlines() if re.match(r"^\s+\d+\s+\d+\s+\d", ln)][-1]
    un = {m.group(1): float(m.group(2)) for m in re.finditer(r"(UN\(\d,\d\))\s+USUBJID\s+(\S+)", listing)}
    sol = listing.split("Solution for Fixed Effects")[1].split("Type 3 Tests")[0]
    fixed = []
    for ln in sol.splitlines():
        m = re.search(r"\s(-?\d+\.\d{4})\s+(\d+\.\d{4})\s+(\d+)\s+(-?\d+\.\d+)\s+\S+\s*$", ln)
        if m:
            fixed.append(
                {
                    "label": " ".join(ln[: m.start()].split()),
                    "estimate": float(m.group(1)),
                    "se": float(m.group(2)),
                    "df": float(m.group(3)),
                }
            )
    t3 = listing.split("Type 3 Tests of Fixed Effects")[1].split("The SAS System")[0]
    type3_w = [
        {
            "effect": m.group(1),
            "num_df": float(m.group(2)),
            "den_df": float(m.group(3)),
            "f": float(m.group(5)),
        }
        for m in re.finditer(r"^\s+(\S+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s*$", t3, re.M)
    ]
    weighted = {
        "model": "FEV1 ~ RACE + SEX + ARMCD * AVISIT, us, REML, WEIGHT WEIGHT; references Asian, Male, "
        "PBO, VIS4; fixed effects in SAS's order (Intercept, RACE Black, RACE White, SEX Female, ARMCD TRT, "
        "AVISIT VIS1-3, AVISIT*ARMCD VIS1-3 TRT), printed to 4 decimals (df as integers)",
        "minus2_reml": float(last[2]),
        "un": un,
        "fixed": fixed,
        "type3": type3_w,
    }
    mm = show(git_dir, "design/R/R_weighted_mmrm.txt")
    coefs = mm.split("Coefficients:")[1].split("---")[0]
    mm_fixed = [
        {
            "term": m.group(1).strip(),
            "estimate": float(m.group(2)),
            "se": float(m.group(3)),
            "df": float(m.group(4)),
        }
        for m in re.finditer(r"^(\S.*?)\s+(-?\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)\s+-?\d", coefs, re.M)
    ]
    cov_txt = mm.split("Covariance estimate:")[1].split("$emmeans")[0].strip().splitlines()
    mm_cov = {ln.split()[0]: [float(v) for v in ln.split()[1:]] for ln in cov_txt[1:] if ln.strip()}
    mmrm_weighted = {"fixed": mm_fixed, "covariance_order": cov_txt[0].split(), "covariance": mm_cov}
    type3 = {}
    for name in ("test3_1", "test3_2"):
        type3[name] = [
            {
                "effect": r["Effect"],
                "num_df": float(r["NumDF"]),
                "den_df": float(r["DenDF"]),
                "f": float(r["FValue"]),
                "p": float(r["ProbF"]),
            }
            for r in rows(show(git_dir, f"design/anova/{name}.csv"))
        ]
    predict = {}
    for ours, name in PREDICT.items():
        got = rows(show(git_dir, f"design/predict_interval/{name}.csv"))
        predict[ours] = {k: [num(r[k]) for r in got] for k in ("PM", "PMSD", "P", "PSD")}
    out = {
        "source": "openpharma/mmrm (Apache-2.0) design/Robust, design/anova, design/predict_interval: SAS "
        "PROC MIXED output on its fev_data (fev_data.csv); written by make_sas_fixtures.py",
        "mmrm_commit": commit,
        "empirical": {
            "model": "FEV1 ~ ARMCD, REML, empirical (SAS EMPIRICAL = mmrm 'Empirical'), DDFM=BW (SAS's "
            "default with EMPIRICAL); WEIGHT WEIGHT for the _weighted fits",
            "fits": empirical,
        },
        "weighted_us": weighted,
        "mmrm_weighted_us": mmrm_weighted,
        "type3": {
            "test3_1": "MODEL FEV1 = ARMCD FEV1_BL ARMCD*FEV1_BL / ddfm=satterthwaite htype=3; type=ar(1)",
            "test3_2": "MODEL FEV1 = ARMCD SEX ARMCD*SEX ARMCD*FEV1_BL / ddfm=satterthwaite htype=3; "
            "type=ar(1)",
            "tables": type3,
        },
        "predict": {
            "model": "MODEL FEV1 = ARMCD / ddfm=<satterthwaite|kenwardroger> outpm=predm outp=pred; "
            "REPEATED AVISIT / subject=USUBJID type=<cov> (keys <cov> or <cov>/<ddf>); one value per "
            "fev_data row (PM, PMSD: marginal prediction and its SE; P, PSD: conditional prediction given "
            "the subject's observed FEV1 and its SE). us/kenward-roger-linear is identical to us (the design "
            "script's ddfm=kenwardroger_linear did not take effect)",
            "fits": predict,
        },
    }
    (HERE / "fev_sas_listings.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
