"""Out-of-core growth-model fits (models/outofcore.py): the statistics computed by DuckDB, not in Python.

Identity with the in-memory fit is checked in two layers. The statistics (``Z'Z``, ``Z'[X y]`` per patient,
per clinic, ``[X y]'[X y]``) are sums of the same products in another order: equal to ``STATS_RTOL`` (sums
of ``n`` rounded products, n eps ~ 1e-13 of the sum of magnitudes here). The fits then start from the same
point and take the same steps up to that rounding: estimates, standard errors and variance components agree
to ``FIT_REL`` = 1e-10 (issue 18; measured <= 4e-11 over the golden cases), the log-likelihood to
``2 ROUNDING |D| + 2 LOGLIK_STOP`` (tolerances.py: each fit's deviance evaluation carries its own rounding,
measured up to 1.1e-12 |D| here, and each fit stops within its own radius), the Satterthwaite df to
``DF_REL``: they are central differences of the analytic gradient at a relative step of 1e-3 or more, so
the rounding of the gradient is divided by the step (measured <= 5.3e-8).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from lmm_golden import CASE_NAMES, CASES, load_data
from tolerances import LOGLIK_STOP, ROUNDING, rel

from sciatica_outcomes.derive import analysis_frame
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models import GrowthModel
from sciatica_outcomes.models.lmm import standard_formula
from sciatica_outcomes.synth import generate_cohort

STATS_RTOL = 1e-12
FIT_REL = 1e-10
DF_REL = 1e-6


def _case(name: str) -> dict[str, Any]:
    return next(c for c in CASES if c["name"] == name)


def _engine_arrays(m: GrowthModel) -> list[np.ndarray]:
    eng = m.engine_
    out = [eng.c11, eng.f1, eng.wtw]
    if eng._outer is not None:
        out += [eng._outer.c12, eng._outer.c22, eng._outer.f2, eng._outer.parent.astype(float)]
    return out


def assert_same_fit(a: GrowthModel, b: GrowthModel) -> None:
    """``b`` (out of core) equals ``a`` (in memory) to the tolerances of the module docstring."""
    assert b.result_.n_obs == a.result_.n_obs
    assert b.result_.n_groups == a.result_.n_groups
    assert b.n_dropped_ == a.n_dropped_
    for x, y in zip(_engine_arrays(a), _engine_arrays(b), strict=True):
        assert x.shape == y.shape
        scale = np.max(np.abs(x)) if x.size else 1.0
        np.testing.assert_allclose(y, x, rtol=STATS_RTOL, atol=STATS_RTOL * scale)
    sa, sb = a.summary, b.summary
    assert sb["term"].to_list() == sa["term"].to_list()
    se = sa["se"].to_numpy()
    assert rel(sb["estimate"], sa["estimate"], floor=se) < FIT_REL
    assert rel(sb["se"], se) < FIT_REL
    assert rel(sb["df"], sa["df"]) < DF_REL
    va, vb = a.variance_components, b.variance_components
    assert rel(vb["variance"], va["variance"], floor=va["variance"].max() * 1e-12) < FIT_REL
    dev = abs(2 * a.result_.loglik)
    assert abs(b.result_.loglik - a.result_.loglik) < 2 * ROUNDING * dev + 2 * LOGLIK_STOP
    assert b.result_.converged == a.result_.converged
    for grp, levels in a.group_levels_.items():
        assert b.group_levels_[grp].to_list() == levels.to_list()
    for col, (kind, val) in a.column_info_.items():
        kb, vb_ = b.column_info_[col]
        assert kb == kind
        if kind == "numeric":
            assert vb_ == pytest.approx(val, rel=1e-13)
        else:
            assert vb_ == val


@pytest.mark.parametrize("name", CASE_NAMES)
def test_golden_cases_from_parquet_equal_the_in_memory_fit(name: str, tmp_path: Path) -> None:
    case = _case(name)
    frame = load_data(case)
    path = tmp_path / "data.parquet"
    frame.write_parquet(path)
    kw = {"reml": case["reml"], "reference": case.get("reference")}
    a = GrowthModel(case["formula"], **kw).fit(frame)
    b = GrowthModel(case["formula"], **kw).fit_from(path)
    assert_same_fit(a, b)
    assert b.result_.extras["engine"] == "duckdb"
    assert b.result_.extras["statistics_seconds"] > 0


def test_every_source_kind_gives_the_same_fit(tmp_path: Path) -> None:
    case = _case("nested_clinic")
    frame = load_data(case)
    formula = case["formula"]
    a = GrowthModel(formula).fit(frame)
    # a directory of Parquet shards (split by clinic) and a glob over them
    shards = tmp_path / "shards"
    shards.mkdir()
    for i, part in enumerate(frame.partition_by("clinic")):
        part.write_parquet(shards / f"part{i}.parquet")
    csv = tmp_path / "data.csv"
    frame.write_csv(csv)
    db = tmp_path / "store.duckdb"
    with duckdb.connect(str(db)) as con:
        con.register("f", frame.to_arrow())
        con.execute("CREATE TABLE visits AS SELECT * FROM f")
    con = duckdb.connect()
    con.register("f", frame.to_arrow())
    sources: list[tuple[Any, str | None]] = [
        (shards, None),
        (str(shards / "*.parquet"), None),
        (csv, None),
        (db, "visits"),
        (con.sql("SELECT * FROM f"), None),
    ]
    for source, table in sources:
        assert_same_fit(a, GrowthModel(formula).fit_from(source, table=table))


def test_incomplete_rows_are_dropped_and_counted_as_in_memory(tmp_path: Path) -> None:
    case = _case("unbalanced_missing")
    frame = load_data(case).with_row_index("__i")
    frame = frame.with_columns(
        pl.when(pl.col("__i") % 17 == 0).then(None).otherwise(pl.col("y")).alias("y"),
        pl.when(pl.col("__i") % 23 == 0)
        .then(float("nan"))
        .otherwise(pl.col("age").cast(pl.Float64))
        .alias("age"),
    ).drop("__i")
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    a = GrowthModel(case["formula"]).fit(frame)
    b = GrowthModel(case["formula"]).fit_from(path)
    assert a.n_dropped_ > 40
    assert_same_fit(a, b)
    assert any("dropped" in m for m in b.result_.diagnostics.messages)


def test_factors_boolean_numeric_and_raw_poly_terms(tmp_path: Path) -> None:
    frame = load_data(_case("factor_interaction"))
    frame = frame.with_columns(
        (pl.col("sex") == pl.col("sex").max()).alias("flag"), (pl.col("week") // 4).alias("block")
    )
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    for formula, ref in (
        ("y ~ week * group + flag + (week | patient)", {"group": "strength"}),
        (
            "y ~ factor(block) + poly(week, 2, raw = TRUE) + relevel(group, ref = 'strength') "
            "+ (1 | patient)",
            None,
        ),
        ("y ~ 0 + group + week:group + I(week^2) + (week || patient)", None),
        ("y ~ ns(week, knots = c(4, 12)) * flag + (week | patient)", None),
    ):
        a = GrowthModel(formula, reference=ref).fit(frame)
        b = GrowthModel(formula, reference=ref).fit_from(path)
        assert_same_fit(a, b)


def test_predictions_marginal_means_and_blups_after_an_out_of_core_fit(tmp_path: Path) -> None:
    case = _case("spline_time")
    frame = load_data(case)
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    a = GrowthModel(case["formula"]).fit(frame)
    b = GrowthModel(case["formula"]).fit_from(path)
    at = {"week": [0.0, 6.0, 12.0, 26.0]}
    ea, eb = a.emmeans("week", at=at).means, b.emmeans("week", at=at).means
    assert rel(eb["emmean"], ea["emmean"]) < FIT_REL
    assert rel(eb["se"], ea["se"]) < FIT_REL
    new = frame.head(20).with_columns(pl.col("week") + 30.0)  # beyond the boundary knot: linear part
    pa, pb = a.predict(new, include_random=True), b.predict(new, include_random=True)
    assert rel(pb["fit_conditional"], pa["fit_conditional"]) < FIT_REL
    ra, rb = a.ranef()["patient"], b.ranef()["patient"]
    assert rb["patient"].to_list() == ra["patient"].to_list()
    sd = ra["(Intercept)__cond_sd"].to_numpy()
    # BLUPs are judged against their conditional SD (a tenth of the patient SD here), 10x FIT_REL
    assert rel(rb["(Intercept)"], ra["(Intercept)"], floor=sd) < 10 * FIT_REL


def test_kenward_roger_single_level_from_the_statistics(tmp_path: Path) -> None:
    case = _case("unbalanced_missing")
    frame = load_data(case)
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    a = GrowthModel(case["formula"], ddf="kenward-roger").fit(frame)
    b = GrowthModel(case["formula"], ddf="kenward-roger").fit_from(path)
    assert b.inference_.ddf_method == "kenward-roger"
    assert rel(b.summary["se"], a.summary["se"]) < FIT_REL
    assert rel(b.summary["df"], a.summary["df"]) < DF_REL


def test_the_standard_model_on_the_derived_analysis_frame(tmp_path: Path) -> None:
    cohort = generate_cohort(n_patients=150, n_clinics=3, seed=31)
    af = analysis_frame(cohort.tables)
    path = tmp_path / "af.parquet"
    af.write_parquet(path)
    formula = standard_formula("odi", af["clinic_id"].n_unique())
    assert_same_fit(GrowthModel(formula).fit(af), GrowthModel(formula).fit_from(path))


@pytest.mark.parametrize(
    ("formula", "kw", "match"),
    [
        ("y ~ poly(week, 2) + (1 | patient)", {}, "orthogonal 'poly\\(week, 2\\)'.*raw = TRUE"),
        ("y ~ scale(age) + (1 | patient)", {}, "'scale\\(age\\)' is not supported out of core"),
        (
            "y ~ week + (1 | clinic) + (week | patient)",
            {"ddf": "kenward-roger"},
            "Kenward-Roger for patients",
        ),
        ("y ~ week + dose + (1 | patient)", {}, "column\\(s\\) \\['dose'\\] that the data do not have"),
        ("y ~ log(week) + (1 | patient)", {}, "'log\\(week\\)' is not finite in"),
        ("log(y - 1000) ~ week + (1 | patient)", {}, "response 'log\\(y - 1000\\)' is not finite"),
        ("y ~ week + adherence + I(2 * week) + (1 | patient)", {}, "rank deficient.*I\\(2 \\* week\\)"),
        ("y ~ week + (1 | patient)", {"reference": {"week": 1}}, "not factors of the formula"),
    ],
)
def test_refusals_name_the_problem(formula: str, kw: dict[str, Any], match: str, tmp_path: Path) -> None:
    frame = load_data(_case("nested_clinic"))
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    with pytest.raises(ModelSpecificationError, match=match):
        GrowthModel(formula, **kw).fit_from(path)


def test_crossed_groups_are_refused_as_in_memory(tmp_path: Path) -> None:
    frame = load_data(_case("nested_clinic"))
    frame = frame.with_columns((pl.col("patient").rank("dense") % 5).cast(pl.Int64).alias("patient"))
    path = tmp_path / "d.parquet"
    frame.write_parquet(path)
    formula = "y ~ week + (1 | clinic) + (1 | patient)"
    with pytest.raises(ModelSpecificationError, match="crossed, not nested"):
        GrowthModel(formula).fit(frame)
    with pytest.raises(ModelSpecificationError, match="crossed, not nested"):
        GrowthModel(formula).fit_from(path)


def test_bad_sources_are_refused_with_a_sentence(tmp_path: Path) -> None:
    m = GrowthModel("y ~ week + (1 | patient)")
    with pytest.raises(UnusableInputError, match="does not exist"):
        m.fit_from(tmp_path / "nope.parquet")
    with pytest.raises(UnusableInputError, match="no file matches"):
        m.fit_from(str(tmp_path / "*.parquet"))
    with pytest.raises(UnusableInputError, match=r"holds no \.parquet file"):
        m.fit_from(tmp_path)
    (tmp_path / "x.txt").write_text("a")
    with pytest.raises(UnusableInputError, match=r"expected a \.parquet, \.csv or DuckDB file"):
        m.fit_from(tmp_path / "x.txt")
    db = tmp_path / "s.duckdb"
    duckdb.connect(str(db)).close()
    with pytest.raises(UnusableInputError, match="name the table"):
        m.fit_from(db)
    with pytest.raises(UnusableInputError, match="has no table 'visits'"):
        m.fit_from(db, table="visits")
    with pytest.raises(UnusableInputError, match="expected a DuckDB relation or a path"):
        m.fit_from(3)
