"""Extract the SAS PROC MIXED (and mmrm) reference values of the new covariance structures into JSON.

    .venv/bin/python tests/reference/mmrm/sas_listings.py /work/.mirror/openpharma+mmrm/repo

Reads, from a (bare) git clone of openpharma/mmrm (Apache-2.0) at ``MMRM_COMMIT``, the listings of its
``design/`` folder on ``fev_data`` (``fev_data.csv`` here) and writes ``fev_sas_structures.json``: per case
the model (SAS statement and the equivalent call of this package), the listing's -2 (Res) Log Likelihood of
the last iteration (8 decimals) and of the Fit Statistics (1 decimal), the covariance parameters in SAS's
order and parameterisation and the fixed effects (estimate, SE, df) -- every value as the string the listing
prints, so the tests know its printed precision; for the ``DDFM=KR`` cases (``design/ddfm_covtype``) the
LSMEANS difference TRT - PBO (full precision, from SAS's ODS output). ``ad`` has no SAS counterpart (SAS
ANTE(1) is heterogeneous); its reference is mmrm's own listing (``design/R/mmrm_ad_*.txt``).

CI has no copy of the repository: the tests read the JSON this script wrote.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

MMRM_COMMIT = "ec290b2695b25057b31bc98e27c39d3f498cd0d6"
HERE = Path(__file__).resolve().parent

#: case -> (listing, structure, group, coordinates, formula); the SAS statements are in design/SAS/*.R
CASES: dict[str, tuple[str, str, str | None, list[str], str]] = {
    **{f"adh_{m}": (f"design/SAS/sas_adh_{m}.txt", "adh", None, [], "FEV1 ~ 1") for m in ("reml", "ml")},
    **{
        f"sp_exp_{m}": (f"design/SAS/sas_sp_exp_{m}.txt", "sp_exp", None, ["VISITN"], "FEV1 ~ 1")
        for m in ("reml", "ml")
    },
    **{
        f"sp_exp2_{m}": (f"design/SAS/sas_sp_exp2_{m}.txt", "sp_exp", None, ["VISITN", "VISITN2"], "FEV1 ~ 1")
        for m in ("reml", "ml")
    },
    **{
        f"group_{s}_{m}": (f"design/SAS/sas_group_{s}_{m}.txt", s, "ARMCD", [], "FEV1 ~ 1")
        for s in ("adh", "ar1", "ar1h", "cs", "csh", "toeph")
        for m in ("reml", "ml")
    },
}
#: DDFM=KR cases of design/ddfm_covtype (FEV1 = ARMCD): case -> (listing stem, structure, coordinates)
KR_CASES: dict[str, tuple[str, str, list[str]]] = {
    "kr_adh": ("kr_adh", "adh", []),
    "kr1_adh": ("kr1_adh", "adh", []),
    # ddfm_covtype.R writes DDFM=KR to kr1_spexp and DDFM=KR(LINEAR) to kr_spexp (the names are swapped)
    "kr_spexp": ("kr1_spexp", "sp_exp", ["VISITN", "VISITN2"]),
    "kr1_spexp": ("kr_spexp", "sp_exp", ["VISITN", "VISITN2"]),
}
STATEMENTS = {
    "adh": "REPEATED AVISIT / subject=USUBJID type=ANTE(1)",
    "sp_exp": "REPEATED / subject=USUBJID type=sp(exp)(<coordinates>)",
    "group": "REPEATED AVISIT / subject=USUBJID type=<type> group=ARMCD",
}

_NUM = r"-?\d+(?:\.\d*)?(?:E[-+]\d+)?"
_PARM = re.compile(
    r"^\s*(?P<name>[A-Za-z]+(?:\(\w+\))?)\s+(?:USUBJID\s+)?(?:ARMCD (?P<group>\w+)\s+)?"
    rf"(?P<est>{_NUM})\s+0\.05\s"
)
_ITER = re.compile(rf"^\s*\d+\s+\d+\s+(?P<value>{_NUM})(?:\s+{_NUM})?\s*$")
_FIT = re.compile(rf"^\s*(?P<name>-2 (?:Res )?Log Likelihood|AICC|AIC|BIC)[^\d-]*(?P<value>{_NUM})\s*$")
_FIXED = re.compile(rf"^\s*Intercept\s+(?P<est>{_NUM})\s+(?P<se>{_NUM})\s+(?P<df>{_NUM})\s")


def show(repo: Path, path: str) -> str:
    """A file of the mmrm repository at ``MMRM_COMMIT``."""
    out = subprocess.run(
        ["git", f"--git-dir={repo}", "show", f"{MMRM_COMMIT}:{path}"],
        capture_output=True,
        check=True,
        text=True,
    )
    return out.stdout


def parse_listing(text: str) -> dict[str, Any]:
    """-2 log L (iterations, fit statistics), covariance parameters and the intercept of a SAS listing."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if "Iteration History" in ln)
    iters = [m["value"] for ln in lines[start:] if (m := _ITER.match(ln))]
    parms = []
    fit: dict[str, str] = {}
    fixed: dict[str, str] = {}
    section = ""
    for ln in lines:
        if "Covariance Parameter Estimates" in ln:
            section = "cov"
        elif "Fit Statistics" in ln:
            section = "fit"
        elif "Solution for Fixed Effects" in ln:
            section = "fixed"
        if section == "cov" and (m := _PARM.match(ln)):
            parms.append({"name": m["name"], "group": m["group"], "estimate": m["est"]})
        elif section == "fit" and (m := _FIT.match(ln)):
            fit[m["name"].split(" (")[0]] = m["value"]
        elif section == "fixed" and (m := _FIXED.match(ln)) and not fixed:
            fixed = {"estimate": m["est"], "se": m["se"], "df": m["df"]}
    return {
        "neg2loglik_iterations": iters[-1],
        "fit_statistics": fit,
        "covariance_parameters": parms,
        **fixed,
    }


def parse_mmrm_ad(text: str) -> dict[str, Any]:
    """mmrm's printout of ``FEV1 ~ ad(AVISIT | USUBJID)``: deviance, coefficient table, Sigma and theta."""
    coef = re.search(rf"\(Intercept\)\s+({_NUM})\s+({_NUM})\s+({_NUM})\s+{_NUM}", text)
    assert coef is not None
    rows = re.findall(rf"^VIS\d((?:\s+{_NUM}){{4}})\s*$", text, flags=re.M)
    theta = re.search(rf"theta_est\s*\n\[1\]((?:\s+{_NUM})+)", text)
    dev = re.search(rf"deviance\(result\)\s*\n\[1\]\s+({_NUM})", text)
    assert theta is not None and dev is not None
    return {
        "deviance": dev[1],
        "estimate": coef[1],
        "se": coef[2],
        "df": coef[3],
        "sigma": [r.split() for r in rows[:4]],
        "theta": theta[1].split(),
    }


def main(repo: Path) -> None:
    out: dict[str, Any] = {
        "source": (
            "openpharma/mmrm (Apache-2.0) design/SAS/*.txt and design/ddfm_covtype/*: SAS PROC MIXED "
            "listings on fev_data (fev_data.csv); design/R/mmrm_ad_*.txt: mmrm's own fit of ad; extracted by "
            "sas_listings.py"
        ),
        "mmrm_commit": MMRM_COMMIT,
        "statements": STATEMENTS,
        "cases": {},
        "kr": {},
        "mmrm_ad": {},
    }
    for name, (path, structure, group, coords, formula) in CASES.items():
        case = parse_listing(show(repo, path))
        method = "REML" if name.endswith("_reml") else "ML"
        out["cases"][name] = {
            "listing": path,
            "structure": structure,
            "group": group,
            "coordinates": coords,
            "formula": formula,
            "method": method,
            **case,
        }
    for name, (stem, structure, coords) in KR_CASES.items():
        listing = parse_listing(show(repo, f"design/ddfm_covtype/{stem}.txt"))
        row = next(csv.DictReader(io.StringIO(show(repo, f"design/ddfm_covtype/{stem}.csv"))))
        out["kr"][name] = {
            "listing": f"design/ddfm_covtype/{stem}.txt",
            "structure": structure,
            "coordinates": coords,
            "formula": "FEV1 ~ ARMCD",
            "ddfm": "KR(LINEAR)" if name.startswith("kr1") else "KR",
            "neg2loglik_iterations": listing["neg2loglik_iterations"],
            "covariance_parameters": listing["covariance_parameters"],
            "difference": {k: float(row[k]) for k in ("Estimate", "StdErr", "DF", "tValue")},
        }
    for method in ("reml", "ml"):
        out["mmrm_ad"][method] = parse_mmrm_ad(show(repo, f"design/R/mmrm_ad_{method}.txt"))
    (HERE / "fev_sas_structures.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
