"""Out-of-core MMRM fits (models/mmrm_outofcore.py): the pattern statistics computed by DuckDB.

Identity with the in-memory fit is checked in two layers, as for the growth model (test_outofcore.py):

- the statistics: per missingness pattern its visits, subject count and ``M_k[s, t] = sum_i z_is z_it'``
  (``z = [x, y]``) are sums of the same products in another order, equal to ``STATS_RTOL`` (n eps of the
  sum of magnitudes);
- the fits: the same code (``MMRM._fit_patterns``) from the same start on those statistics. BFGS amplifies
  their rounding along its path, and each fit stops where its Newton decrement ``g' H^-1 g`` is below
  1e-10, i.e. within ``NEWTON_RADIUS`` = 7.1e-6 ``SE_theta`` of the optimum (tests/models/tolerances.py).
  So ``theta``, ``beta``, SE and ``Sigma`` agree to ``2 NEWTON_RADIUS SE_theta(q)`` (delta method through
  the criterion), the log-likelihood to ``2 LOGLIK_STOP + ROUNDING |l|``, the Satterthwaite and
  Kenward-Roger df and the Type III F to ``DF_REL`` = 2 NEWTON_RADIUS + 1e-6 relative (smooth in ``theta``
  plus the central differences of the Hessian). Measured over the 8 cases: statistics <= 3.1e-16 of their
  largest entry; beta <= 0.2 of its bound (fev_us_kr), SE <= 1.1e-7, df <= 3.5e-7, Type III F <= 3.1e-7
  relative, log-likelihood <= 8.6e-11 absolute (the fits that take the same optimiser steps agree to 1e-13).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from tolerances import GOLDEN_DF, LOGLIK_STOP, NEWTON_RADIUS, ROUNDING, rel, se_through_theta
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models import MMRM, numerical_jacobian
from sciatica_outcomes.models.mmrm import _Criterion, _sigma
from sciatica_outcomes.models.mmrm_outofcore import mmrm_statistics, pattern_queries
from sciatica_outcomes.models.sqlstats import DesignSql

REF = Path(__file__).resolve().parents[1] / "reference" / "mmrm"
STATS_RTOL = 1e-12
DF_REL = 2 * NEWTON_RADIUS + 1e-6
FEV = pl.read_csv(REF / "fev_data.csv", null_values="NA")
FEV_KR_SAS = json.loads((REF / "fev_kr_sas.json").read_text(encoding="utf-8"))


def _golden(name: str) -> tuple[pl.DataFrame, list[str]]:
    return pl.read_csv(REF / f"{name}.csv"), json.loads((REF / f"{name}.json").read_text())["visits"]


# name -> data, formula, subject, structure, MMRM options: unstructured and other structures, factor x visit
# interactions, numeric covariates and their interaction with the visit, missing visits in several patterns
# (mar5: 5 visits, monotone and intermittent dropout), weights, group-specific covariance, KR and residual df
CASES: dict[str, tuple[str, str, str, str, dict[str, Any]]] = {
    "mar5_us": ("mar5", "y ~ visit * arm + base", "id", "us", {}),
    "small4_ar1": ("small4", "y ~ visit + arm + visit:arm + sex + age", "id", "ar1", {}),
    "hetero6_toeph": ("hetero6", "y ~ visit * trt", "id", "toeph", {}),
    "synth_odi_cs": (
        "synth_odi",
        "odi ~ visit * group + baseline_odi + visit:baseline_odi",
        "episode_id",
        "cs",
        {},
    ),
    "fev_us_kr": ("fev", "FEV1 ~ ARMCD * AVISIT + RACE + FEV1_BL", "USUBJID", "us", {"ddf": "kenward-roger"}),
    "fev_adh_group": ("fev", "FEV1 ~ ARMCD * AVISIT + SEX", "USUBJID", "adh", {"group": "ARMCD"}),
    "fev_ar1h_kr": ("fev", "FEV1 ~ ARMCD * AVISIT", "USUBJID", "ar1h", {"ddf": "kenward-roger"}),
    "fev_cs_weighted_residual": (
        "fev",
        "FEV1 ~ ARMCD + AVISIT + log(FEV1_BL)",
        "USUBJID",
        "cs",
        {"weights": "WEIGHT", "ddf": "residual", "reml": False},
    ),
}


def _data(name: str) -> tuple[pl.DataFrame, dict[str, Any]]:
    if name == "fev":
        return FEV, {}
    frame, visits = _golden(name)
    return frame, {"visit_levels": visits}


def _visit(name: str) -> str:
    return "AVISIT" if name == "fev" else "visit"


def _models(case: str) -> tuple[MMRM, MMRM, pl.DataFrame]:
    name, formula, subject, cov, kw = CASES[case]
    frame, extra = _data(name)
    args = (formula, subject, _visit(name))
    return MMRM(*args, covariance=cov, **extra, **kw), MMRM(*args, covariance=cov, **extra, **kw), frame


def _se_theta(model: MMRM, frame: pl.DataFrame) -> dict[str, np.ndarray]:
    """``SE_theta`` of theta, beta, the SE of beta and Sigma at the fit (delta method, Cov = the fit's)."""
    res = model.result_
    pats, struct, _ = model._patterns(model._prepare(frame))
    crit = _Criterion(pats, struct, res.reml)

    def ev(theta: np.ndarray) -> Any:
        out = crit.evaluate(theta)
        assert out is not None
        return out

    fns = {
        "theta": lambda t: t,
        "beta": lambda t: ev(t).beta,
        "se": lambda t: np.sqrt(np.diag(ev(t).a_inv)),
        "sigma": lambda t: _sigma(t, struct, pats.t),
    }
    return {k: se_through_theta(numerical_jacobian(fn, res.theta), res.theta_cov) for k, fn in fns.items()}


# hetero6_toeph (the slowest, 6 visits x 11 parameters) runs in the slow job; the other structures cover CI
@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c == "hetero6_toeph" else c for c in CASES]
)
def test_out_of_core_fit_equals_in_memory_fit(case: str, tmp_path: Path) -> None:
    mem, ooc, frame = _models(case)
    path = tmp_path / "rows.parquet"
    frame.write_parquet(path)
    # layer 1: the pattern statistics
    pats_mem, struct_mem, labels_mem = mem._patterns(mem._prepare(frame))
    with duckdb.connect() as con:
        stats = mmrm_statistics(ooc, con.read_parquet(str(path)))
    pats = stats.patterns
    assert stats.labels == labels_mem
    assert repr(stats.structure) == repr(struct_mem) or stats.structure == struct_mem
    assert (pats.n_obs, pats.p, pats.t) == (pats_mem.n_obs, pats_mem.p, pats_mem.t)
    assert [v.tolist() for v in pats.visit_sets] == [v.tolist() for v in pats_mem.visit_sets]
    assert pats.counts.tolist() == pats_mem.counts.tolist()
    assert len(pats.visit_sets) >= 2  # missing visits: several patterns
    for got, want in zip(pats.tensors, pats_mem.tensors, strict=True):
        np.testing.assert_allclose(got, want, rtol=STATS_RTOL, atol=STATS_RTOL * np.abs(want).max())
    # layer 2: the fits
    a = mem.fit(frame).result_
    b = ooc.fit_from(path).result_
    assert a.converged and b.converged
    assert b.diagnostics["engine"] == "duckdb" and a.diagnostics["engine"] == "memory"
    assert b.diagnostics["rows_dropped"] == a.diagnostics["rows_dropped"]
    assert (b.n_obs, b.n_subjects, b.visits) == (a.n_obs, a.n_subjects, a.visits)
    assert b.coef_names == a.coef_names
    assert b.patterns.equals(a.patterns)
    se_t = _se_theta(mem, frame)
    for key, qa, qb in (
        ("theta", a.theta, b.theta),
        ("beta", a.beta, b.beta),
        ("se", np.sqrt(np.diag(a.vcov)), np.sqrt(np.diag(b.vcov))),
        ("sigma", a.covariance, b.covariance),
    ):
        bound = 2 * NEWTON_RADIUS * se_t[key] + STATS_RTOL * np.abs(qa)
        assert np.all(np.abs(qb - qa) <= bound), (key, np.max(np.abs(qb - qa) / bound))
    sa, sb = a.summary, b.summary
    assert rel(sb["se"], sa["se"]) < 2 * NEWTON_RADIUS  # the reported SE (KR-adjusted under KR)
    assert rel(sb["df"], sa["df"]) < DF_REL
    assert abs(b.loglik - a.loglik) <= 2 * LOGLIK_STOP + ROUNDING * abs(a.loglik)
    t3a, t3b = a.anova(type=3), b.anova(type=3)
    assert t3b["term"].to_list() == t3a["term"].to_list()
    assert rel(t3b["F"], t3a["F"]) < DF_REL and rel(t3b["den_df"], t3a["den_df"]) < DF_REL
    ea, eb = a.lsmeans(), b.lsmeans()
    assert rel(eb["emmean"], ea["emmean"], floor=ea["se"]) < 2 * NEWTON_RADIUS
    assert rel(eb["se"], ea["se"]) < 2 * NEWTON_RADIUS


@pytest.mark.parametrize("cov", ["us", "ar1h"])
def test_out_of_core_kenward_roger_matches_sas(cov: str, tmp_path: Path) -> None:
    """fev_data ``FEV1 ~ ARMCD``, SAS PROC MIXED ``DDFM=KR`` (openpharma/mmrm's listings, as
    test_mmrm.py checks the in-memory fit): SE and df of ARMCDTRT at ``GOLDEN_DF``, from a DuckDB file."""
    db = tmp_path / "fev.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("frame", FEV.to_arrow())
        con.execute("CREATE TABLE visits AS SELECT * FROM frame")
    model = MMRM("FEV1 ~ ARMCD", "USUBJID", "AVISIT", covariance=cov, ddf="kenward-roger")
    row = model.fit_from(db, table="visits").result_.summary.row(1, named=True)
    sas = FEV_KR_SAS["structures"][cov]
    assert row["term"] == "ARMCDTRT"
    assert rel(row["se"], sas["se_kr"]) < GOLDEN_DF
    assert rel(row["df"], sas["df"]) < GOLDEN_DF


def test_ns_spline_and_raw_poly_out_of_core(tmp_path: Path) -> None:
    """``ns()`` knots by SQL quantiles and ``poly(raw = TRUE)``: same design, same fit."""
    formula = "FEV1 ~ ARMCD * AVISIT + ns(FEV1_BL, df = 3) + poly(VISITN2, 2, raw = TRUE)"
    path = tmp_path / "fev.csv"
    FEV.write_csv(path, null_value="")
    a = MMRM(formula, "USUBJID", "AVISIT", covariance="ar1").fit(FEV).result_
    b = MMRM(formula, "USUBJID", "AVISIT", covariance="ar1").fit_from(path).result_
    assert b.coef_names == a.coef_names
    assert rel(b.beta, a.beta, floor=np.sqrt(np.diag(a.vcov))) < 1e-4
    assert abs(b.loglik - a.loglik) <= 2 * LOGLIK_STOP + 1e-9 * abs(a.loglik)


def test_dropped_rows_are_counted_and_refusals_name_the_fix(tmp_path: Path) -> None:
    frame = FEV.with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("FEV1_BL")).alias("FEV1_BL"),
        pl.when(pl.int_range(pl.len()) == 5).then(None).otherwise(pl.col("USUBJID")).alias("USUBJID"),
    )
    path = tmp_path / "fev.parquet"
    frame.write_parquet(path)
    formula = "FEV1 ~ ARMCD + AVISIT + FEV1_BL"
    a = MMRM(formula, "USUBJID", "AVISIT", covariance="cs").fit(frame).result_
    b = MMRM(formula, "USUBJID", "AVISIT", covariance="cs").fit_from(path).result_
    dropped = b.diagnostics["rows_dropped"]
    assert dropped == a.diagnostics["rows_dropped"]
    assert dropped["missing_subject_or_visit"] == 1 and dropped["missing_covariate"] > 0
    assert dropped["rows_in"] == frame.height
    assert b.n_obs == frame.height - sum(v for k, v in dropped.items() if k != "rows_in")
    refusals = [
        ({"vcov": "empirical"}, "quartic"),
        ({"ddf": "between-within"}, "vary within a subject"),
        ({"covariance": "sp_exp", "coordinates": "VISITN"}, "sp_exp out of core"),
    ]
    for kw, match in refusals:
        with pytest.raises(ModelSpecificationError, match=match):
            MMRM(formula, "USUBJID", "AVISIT", **kw).fit_from(path)
    with pytest.raises(ModelSpecificationError, match=r"orthogonal 'poly\(FEV1_BL, 2\)'"):
        MMRM("FEV1 ~ poly(FEV1_BL, 2)", "USUBJID", "AVISIT").fit_from(path)
    zero = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 3).then(0.0).otherwise(pl.col("WEIGHT")).alias("WEIGHT")
    )
    zero.write_parquet(path)
    with pytest.raises(ModelSpecificationError, match="1 rows with a response have a missing, zero"):
        MMRM(formula, "USUBJID", "AVISIT", weights="WEIGHT").fit_from(path)
    dup = pl.concat([frame, frame.head(2)])
    dup.write_parquet(path)
    with pytest.raises(ModelSpecificationError, match=r"2 rows repeat a \(USUBJID, AVISIT\) pair"):
        MMRM(formula, "USUBJID", "AVISIT").fit_from(path)


def test_pattern_query_is_engine_neutral_sql() -> None:
    """The query uses a window sum and a self-join on the subject, no DuckDB-only syntax."""
    d = DesignSql(x=["1.0"], y='CAST("y" AS DOUBLE)', z1=[], z2=[], inner='"id"', outer=None, where="TRUE")
    sql = pattern_queries(d, '"id"', '"pos"', None, "t")
    assert "OVER (PARTITION BY r.s)" in sql and "JOIN rp AS b ON a.s = b.s AND a.pos <= b.pos" in sql
    assert "m_1_1" in sql and "m_2_0" not in sql


def test_cli_fit_mmrm_engine_duckdb(tmp_path: Path) -> None:
    path = tmp_path / "fev.parquet"
    FEV.write_parquet(path)
    out = tmp_path / "fit.json"
    args = ["fit", "--model", "mmrm", "--subject", "USUBJID", "--visit", "AVISIT", "--formula"]
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            *args,
            "FEV1 ~ ARMCD * AVISIT",
            "--covariance",
            "ar1",
            "--engine",
            "duckdb",
            "--data",
            str(path),
            "--json",
            str(out),
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    got = json.loads(out.read_text())
    want = MMRM("FEV1 ~ ARMCD * AVISIT", "USUBJID", "AVISIT", covariance="ar1").fit(FEV).result_
    assert got["diagnostics"]["engine"] == "duckdb"
    est = np.array([r["estimate"] for r in got["fixed_effects"]])
    assert rel(est, want.beta, floor=np.sqrt(np.diag(want.vcov))) < 2 * NEWTON_RADIUS
    assert [r["term"] for r in got["type3"]] == want.anova(type=3)["term"].to_list()
    db = tmp_path / "fev.duckdb"  # the same from a table of a DuckDB file
    with duckdb.connect(str(db)) as con:
        con.execute(f"CREATE TABLE visits AS SELECT * FROM read_parquet('{path}')")
    tail = ["--covariance", "ar1", "--engine", "duckdb", "--db", str(db), "--table", "visits", "--quiet"]
    res = runner.invoke(app, [*args, "FEV1 ~ ARMCD * AVISIT", *tail, "--json", str(out)])
    assert res.exit_code == 0, res.output
    est = np.array([r["estimate"] for r in json.loads(out.read_text())["fixed_effects"]])
    assert rel(est, want.beta, floor=np.sqrt(np.diag(want.vcov))) < 2 * NEWTON_RADIUS
    res = runner.invoke(
        app, [*args, "FEV1 ~ ARMCD", "--engine", "duckdb", "--data", str(path), "--vcov", "empirical"]
    )
    assert res.exit_code == 2
    assert "vcov='empirical' needs each subject's residual cross products" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(
        app,
        [
            "fit",
            "--formula",
            "FEV1 ~ ARMCD + (1 | USUBJID)",
            "--engine",
            "duckdb",
            "--data",
            str(path),
            "--family",
            "poisson",
        ],
    )
    assert res.exit_code == 2 and "per-row pass at every iteration" in res.output
    res = runner.invoke(
        app,
        [
            "fit",
            "--formula",
            "FEV1 ~ ARMCD + (1 | USUBJID)",
            "--engine",
            "duckdb",
            "--data",
            str(path),
            "--censored-at",
            "60",
        ],
    )
    assert res.exit_code == 2 and "quadrature nodes" in res.output
