"""Comparisons of the MMRM with SAS PROC MIXED on openpharma/mmrm's fev_data, one row per compared value.

Used by ``test_mmrm_structures.py`` (each row's ``abs_diff <= tolerance`` is asserted) and printed by
``tests/reference/mmrm/agreement.py``, so the agreement table is exactly what the tests check.

References: ``tests/reference/mmrm/fev_sas_structures.json`` (``sas_listings.py``: ad, adh, sp_exp,
group-specific structures, KR of adh and sp_exp; mmrm's listing of ad) and ``fev_kr_sas.json`` (KR of the
other structures, from mmrm's tests).

Tolerances (``tolerances.py``): SAS prints estimates rounded (:func:`~tolerances.sas_printed`, half a unit of
the last printed digit) and stops its optimizer a gap ``G`` below the maximum log-likelihood, measured from
the 8-decimal -2 log L of its last iteration against ours; every smooth ``q(theta)`` of SAS's fit is then
within ``sqrt(2 G) SE_theta(q)`` of ours plus this fit's own Newton radius
(:func:`~tolerances.optimizer_gap_radius`). Satterthwaite df, printed as integers: half a unit plus
``GOLDEN_DF``. Kenward-Roger SE and df depend on SAS's own second derivatives (``W``): ``GOLDEN_DF``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from tolerances import (
    GOLDEN_DEVIANCE,
    GOLDEN_DF,
    optimizer_gap_radius,
    printed,
    sas_printed,
    se_through_theta,
)

from sciatica_outcomes.models import MMRM, numerical_jacobian
from sciatica_outcomes.models.mmrm import _CovSpec, _Criterion, _Evaluation, _sas_gamma

REF = Path(__file__).resolve().parents[1] / "reference" / "mmrm"
SAS: dict[str, Any] = json.loads((REF / "fev_sas_structures.json").read_text(encoding="utf-8"))
SAS_KR_OTHER: dict[str, Any] = json.loads((REF / "fev_kr_sas.json").read_text(encoding="utf-8"))
#: our SAS parameter order per block vs the listing's: CS prints Variance (residual part) before CS
LISTING_ORDER = {"cs": [1, 0]}
KR_METHODS = {"KR": "kenward-roger", "KR(LINEAR)": "kenward-roger-linear"}


class Row(NamedTuple):
    """One compared value."""

    case: str
    quantity: str
    ours: float
    reference: float
    abs_diff: float
    rel_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.abs_diff <= self.tolerance


def row(case: str, quantity: str, ours: float, reference: float, tolerance: float) -> Row:
    d = abs(ours - reference)
    return Row(case, quantity, float(ours), float(reference), d, d / max(abs(reference), 1e-300), tolerance)


def fev() -> pl.DataFrame:
    """openpharma/mmrm's fev_data (NA = missing FEV1)."""
    return pl.read_csv(REF / "fev_data.csv", null_values="NA")


def model_of(case: dict[str, Any], **kw: Any) -> MMRM:
    """The MMRM of a reference case (``formula``, ``structure``, ``method``, ``group``, ``coordinates``)."""
    return MMRM(
        case["formula"],
        "USUBJID",
        "AVISIT",
        covariance=case["structure"],
        reml=case.get("method", "REML") == "REML",
        group=case.get("group"),
        coordinates=case.get("coordinates") or None,
        **kw,
    )


def criterion_of(model: MMRM, frame: pl.DataFrame) -> tuple[_Criterion, Any, int]:
    """The fitted model's criterion rebuilt from its data, its structure and number of positions."""
    pats, struct, _ = model._patterns(model._prepare(frame))
    return _Criterion(pats, struct, model.reml), struct, pats.t


def se_theta(
    model: MMRM, frame: pl.DataFrame, fn: Callable[[np.ndarray, _Evaluation], np.ndarray]
) -> np.ndarray:
    """``SE_theta`` of ``fn(theta, evaluation)`` (delta method through the fit's ``Cov(theta)``)."""
    crit, _, _ = criterion_of(model, frame)
    res = model.result_

    def q(theta: np.ndarray) -> np.ndarray:
        ev = crit.evaluate(theta)
        assert ev is not None
        return np.asarray(fn(theta, ev), dtype=float)

    return se_through_theta(numerical_jacobian(q, res.theta), res.theta_cov)


def sas_parameters(model: MMRM, frame: pl.DataFrame) -> Callable[[np.ndarray, _Evaluation], np.ndarray]:
    """``(theta, evaluation) -> SAS's covariance parameters`` in the listing's order."""
    _, struct, t = criterion_of(model, frame)
    n_groups = struct.n_groups if isinstance(struct, _CovSpec) else 1
    order = LISTING_ORDER.get(model.covariance)

    def gamma(_theta: np.ndarray, ev: _Evaluation) -> np.ndarray:
        g = _sas_gamma(ev.sigma, struct, t)
        if order is not None:
            g = g.reshape(n_groups, -1)[:, order].reshape(-1)
        return g

    return gamma


def listing_rows(name: str, frame: pl.DataFrame) -> tuple[MMRM, list[Row]]:
    """A SAS listing case: -2 log L (last iteration and fit statistics), covariance parameters, intercept."""
    case = SAS["cases"][name]
    model = model_of(case).fit(frame)
    res = model.result_
    ours = -2.0 * res.loglik
    sas = float(case["neg2loglik_iterations"])
    stat = "-2 Res Log Likelihood" if case["method"] == "REML" else "-2 Log Likelihood"
    rows = [
        row(name, "-2logL (last iteration)", ours, sas, GOLDEN_DEVIANCE),
        row(
            name,
            "-2logL (fit statistics)",
            ours,
            float(case["fit_statistics"][stat]),
            sas_printed(case["fit_statistics"][stat]),
        ),
    ]
    radius = optimizer_gap_radius((sas - ours) / 2.0)
    gamma_fn = sas_parameters(model, frame)
    crit, _, _ = criterion_of(model, frame)
    ev = crit.evaluate(res.theta)
    assert ev is not None
    gamma = gamma_fn(res.theta, ev)
    se_gamma = se_theta(model, frame, gamma_fn)
    listed = case["covariance_parameters"]
    if len(gamma) != len(listed):
        raise AssertionError(f"{name}: {len(gamma)} parameters vs the listing's {len(listed)}")
    for g, se, par in zip(gamma, se_gamma, listed, strict=True):
        label = par["name"] + (f" {par['group']}" if par["group"] else "")
        rows.append(row(name, label, g, float(par["estimate"]), sas_printed(par["estimate"]) + radius * se))
    fe = res.summary.row(0, named=True)
    se_beta = se_theta(model, frame, lambda _t, e: e.beta)[0]
    se_se = se_theta(model, frame, lambda _t, e: np.sqrt(np.diag(e.a_inv)))[0]
    rows += [
        row(
            name,
            "Intercept",
            fe["estimate"],
            float(case["estimate"]),
            sas_printed(case["estimate"]) + radius * se_beta,
        ),
        row(name, "SE(Intercept)", fe["se"], float(case["se"]), sas_printed(case["se"]) + radius * se_se),
        row(
            name,
            "df (Satterthwaite)",
            fe["df"],
            float(case["df"]),
            sas_printed(case["df"]) + GOLDEN_DF * fe["df"],
        ),
    ]
    return model, rows


def mmrm_ad_rows(method: str, frame: pl.DataFrame) -> list[Row]:
    """mmrm's ``FEV1 ~ ad(AVISIT | USUBJID)``: deviance, theta (as correlations), Sigma, estimate, SE, df.

    mmrm prints its deviance to 4 decimals: its gap below our maximum is bounded by that rounding.
    """
    r = SAS["mmrm_ad"][method]
    name = f"mmrm ad {method}"
    model = MMRM("FEV1 ~ 1", "USUBJID", "AVISIT", covariance="ad", reml=method == "reml").fit(frame)
    res = model.result_
    ours = -2.0 * res.loglik
    dev = float(r["deviance"])
    rows = [row(name, "deviance", ours, dev, sas_printed(r["deviance"]))]
    radius = optimizer_gap_radius((dev + sas_printed(r["deviance"]) - ours) / 2.0)
    se_th = np.sqrt(np.diag(res.theta_cov))
    rows.append(
        row(
            name,
            "theta log sd",
            res.theta[0],
            float(r["theta"][0]),
            sas_printed(r["theta"][0]) + radius * se_th[0],
        )
    )
    # mmrm's correlation parameters: rho = x / sqrt(1 + x^2); ours atanh(rho)
    for k, x in enumerate(r["theta"][1:], start=1):
        rho_mm = float(x) / np.sqrt(1.0 + float(x) ** 2)
        rho = float(np.tanh(res.theta[k]))
        rows.append(row(name, f"rho{k}", rho, rho_mm, 1e-7 + radius * se_th[k] * (1.0 - rho**2)))
    se_sigma = se_theta(model, frame, lambda _t, e: e.sigma)
    for i, j in ((0, 0), (0, 1), (0, 3), (2, 3)):
        text = r["sigma"][i][j]
        rows.append(
            row(
                name,
                f"Sigma[{i + 1},{j + 1}]",
                res.covariance[i, j],
                float(text),
                sas_printed(text) + radius * se_sigma[i, j],
            )
        )
    fe = res.summary.row(0, named=True)
    se_beta = se_theta(model, frame, lambda _t, e: e.beta)[0]
    rows += [
        row(
            name,
            "Intercept",
            fe["estimate"],
            float(r["estimate"]),
            sas_printed(r["estimate"]) + radius * se_beta,
        ),
        row(name, "SE(Intercept)", fe["se"], float(r["se"]), sas_printed(r["se"])),
        row(name, "df (Satterthwaite)", fe["df"], float(r["df"]), GOLDEN_DF * float(r["df"])),
    ]
    return rows


def kr_rows(frame: pl.DataFrame, fits: dict[str, MMRM] | None = None, others: bool = True) -> list[Row]:
    """SE and df of ARMCD TRT - PBO under DDFM=KR and KR(LINEAR)/KR(FIRSTORDER), every structure SAS has.

    ``fits``: already fitted models of ``SAS["kr"]`` by case name; ``others=False`` leaves out the
    structures of ``fev_kr_sas.json`` (``test_mmrm.py`` checks those).
    """
    rows = []
    for name, c in SAS["kr"].items():
        model = fits[name] if fits is not None else model_of(c, ddf=KR_METHODS[c["ddfm"]]).fit(frame)
        res = model.result_
        fe = res.summary.row(1, named=True)
        ref = c["difference"]
        label = f"{c['structure']} {c['ddfm']}"
        rows += [
            row(label, "estimate", fe["estimate"], ref["Estimate"], GOLDEN_DF * fe["se"]),
            row(label, "SE", fe["se"], ref["StdErr"], GOLDEN_DF * ref["StdErr"]),
            row(label, "df", fe["df"], ref["DF"], GOLDEN_DF * ref["DF"]),
        ]
    if not others:
        return rows
    for cov, sas in SAS_KR_OTHER["structures"].items():
        for ddf, key, method in (
            ("kenward-roger", "se_kr", "KR"),
            ("kenward-roger-linear", "se_kr_linear", "KR(FIRSTORDER)"),
        ):
            res = MMRM("FEV1 ~ ARMCD", "USUBJID", "AVISIT", covariance=cov, ddf=ddf).fit(frame).result_
            fe = res.summary.row(1, named=True)
            se_tol = printed(4) if cov == "cs" and key == "se_kr" else GOLDEN_DF * sas[key]
            rows += [
                row(f"{cov} {method}", "SE", fe["se"], sas[key], se_tol),
                row(f"{cov} {method}", "df", fe["df"], sas["df"], GOLDEN_DF * sas["df"]),
            ]
    return rows


def print_rows(title: str, rows: list[Row]) -> None:
    """One agreement table: case, quantity, ours, reference, |diff|, relative diff, tolerance, ok."""
    print(f"\n{title}")
    head = (
        f"{'case':<22} {'quantity':<24} {'ours':>16} {'reference':>16} {'|diff|':>9} {'rel':>9} {'tol':>9} ok"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.case:<22} {r.quantity:<24} {r.ours:>16.10g} {r.reference:>16.10g} {r.abs_diff:>9.2e} "
            f"{r.rel_diff:>9.2e} {r.tolerance:>9.2e} {'yes' if r.ok else 'NO'}"
        )
    print(
        f"{len(rows)} values, {sum(not r.ok for r in rows)} outside tolerance; max |diff|/tol "
        f"{max(r.abs_diff / r.tolerance for r in rows):.3f}"
    )
