"""Every estimator through the same checks of the estimator contract (``sciatica_outcomes.models.base``).

One :class:`Case` per estimator in :data:`CASES`; a new model family (censored growth model, GLMM) is one more
line there. All cases are fitted to the same data (``tests/reference/mmrm/mar5.csv``: 150 subjects, 5 visits,
two arms, a baseline covariate), so one ``emmeans`` call is valid for every estimator.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import pytest
from matplotlib.axes import Axes
from tolerances import NEWTON_RADIUS, growth_model_se_theta, mmrm_se_theta

from sciatica_outcomes.errors import ModelSpecificationError, NotFittedError
from sciatica_outcomes.models import MMRM, CensoredGrowthModel, Estimator, GrowthModel, MixedGLM, emmeans
from sciatica_outcomes.models.base import COMMON_KEYS, SUMMARY_COLUMNS
from sciatica_outcomes.models.results import ModelResult

matplotlib.use("Agg")

DATA = Path(__file__).resolve().parents[1] / "reference" / "mmrm" / "mar5.csv"
FIXED = "y ~ visit * arm + base"
#: one emmeans call for every estimator: arm means within each visit at baseline 40
EMMEANS: dict[str, Any] = {"specs": "arm", "by": "visit", "at": {"base": [40.0]}}
#: the censored growth model's cap: about 15 % of the shared data's values are at or above it
CAP = float(pl.read_csv(DATA)["y"].drop_nulls().quantile(0.85) or 0.0)
MEANS_COLUMNS = ["visit", "arm", "emmean", "se", "df", "t", "p", "ci_low", "ci_high"]


@dataclass(frozen=True)
class Case:
    """An estimator under the contract.

    ``make`` builds it unfitted; ``invalid`` holds constructor arguments that must be refused at ``fit``
    (not at construction) with a message matching the pattern; ``se_theta_beta`` gives ``SE_theta`` of
    the fixed effects of a fit (the scale of the stopping-rule radius, ``tests/models/tolerances.py``).
    """

    name: str
    family: str
    make: Callable[..., Estimator]
    invalid: tuple[tuple[dict[str, Any], str], ...]
    se_theta_beta: Callable[[Any, pl.DataFrame], np.ndarray]
    #: the case's data from the shared frame (a GLMM needs a binary or count response)
    prepare: Callable[[pl.DataFrame], pl.DataFrame] = lambda frame: frame
    #: ``to_dict()["method"]`` and ``["ddf_method"]`` of a fit; None: from ``reml`` and ``ddf``
    method: str | None = None
    ddf_method: str | None = None


def _glmm_se_theta_beta(model: Any, _data: pl.DataFrame) -> np.ndarray:
    """``SE_theta`` of beta of a GLMM: theta and beta are optimised jointly, so the stopping-rule radius is
    on the joint parameter; the fixed effects' own SEs bound it (Cauchy-Schwarz in the Hessian metric)."""
    return np.sqrt(np.diag(model.vcov_))


def _binary(frame: pl.DataFrame) -> pl.DataFrame:
    """``y`` above its median as a 0/1 response (the same rows and predictors as the other cases)."""
    return frame.with_columns((pl.col("y") > pl.col("y").median()).cast(pl.Int64).alias("y"))


CASES = [
    Case(
        "growth_model",
        "lmm",
        lambda **kw: GrowthModel(**{"formula": f"{FIXED} + (1 | id)", **kw}),
        (
            ({"ddf": "KR"}, "is not a method; use one of satterthwaite"),
            ({"reml": False, "ddf": "kenward-roger"}, "needs a REML fit"),
            ({"formula": "y ~ visit + (1 | )"}, r"unexpected '\)'"),
            ({"formula": FIXED}, "has no random-effects term"),
        ),
        lambda m, _data: growth_model_se_theta(m)[1],
    ),
    Case(
        "mmrm",
        "mmrm",
        lambda **kw: MMRM(
            **{"formula": FIXED, "subject": "id", "visit": "visit", "covariance": "toep", **kw}
        ),
        (
            ({"ddf": "KR"}, "is not a method; use one of satterthwaite"),
            ({"reml": False, "ddf": "kenward-roger"}, "needs a REML fit"),
            ({"covariance": "unstructured"}, "covariance must be one of us, cs"),
            ({"level": 2.0}, r"level must lie in \(0, 1\)"),
            ({"formula": "y ~ visit + (1 | id)"}, "has random terms"),
        ),
        lambda m, data: mmrm_se_theta(m, data)[1],
    ),
    Case(
        "mixed_glm",
        "glmm",
        lambda **kw: MixedGLM(**{"formula": f"{FIXED} + (1 | id)", "family": "binomial", **kw}),
        (
            ({"family": "gaussian"}, "family 'gaussian' is not supported"),
            ({"nagq": 0}, "nagq must be an integer from 1 to 100"),
            ({"formula": "y ~ visit + (1 | )"}, r"unexpected '\)'"),
            ({"formula": FIXED}, "has no random-effects term"),
        ),
        _glmm_se_theta_beta,
        prepare=_binary,
        method="ML",
        ddf_method="asymptotic",
    ),
]
CASES.append(
    Case(
        "censored_growth_model",
        "censored",
        lambda **kw: CensoredGrowthModel(**{"formula": f"{FIXED} + (1 | id)", "upper": CAP, **kw}),
        (
            ({"nagq": 0}, "nagq must be an integer from 1 to 50"),
            ({"upper": None}, "no censoring given"),
            ({"upper": "no_such"}, "upper column 'no_such' is not in the data"),
            ({"formula": "y ~ visit + (1 | )"}, r"unexpected '\)'"),
            ({"formula": FIXED}, "has no random-effects term"),
        ),
        _glmm_se_theta_beta,  # joint optimisation of all parameters, as the GLMM
        method="ML",
        ddf_method="asymptotic",
    )
)
IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return pl.read_csv(DATA)


@pytest.fixture(scope="module")
def fits(data: pl.DataFrame) -> dict[str, Estimator]:
    return {c.name: c.make().fit(c.prepare(data)) for c in CASES}


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fit_returns_self(case: Case, data: pl.DataFrame) -> None:
    model = case.make()
    assert not model.is_fitted
    assert model.fit(case.prepare(data)) is model
    assert model.is_fitted
    assert model.summary["term"].to_list()[0] == "(Intercept)"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_get_params_round_trips(case: Case, fits: dict[str, Estimator], data: pl.DataFrame) -> None:
    fitted = fits[case.name]
    params = fitted.get_params()
    init = [p for p in inspect.signature(type(fitted).__init__).parameters if p != "self"]
    assert list(params) == init  # every constructor argument, in order
    clone = type(fitted)(**params)
    assert clone.get_params() == params
    assert not clone.is_fitted  # configuration only: no fitted state is copied
    clone.fit(case.prepare(data))
    # two fits that both stopped: within the sum of their stopping radii (NEWTON_RADIUS SE_theta each)
    a, b = fitted.summary["estimate"].to_numpy(), clone.summary["estimate"].to_numpy()
    radius = NEWTON_RADIUS * (case.se_theta_beta(fitted, data) + case.se_theta_beta(clone, data))
    assert np.all(np.abs(a - b) <= radius)
    assert clone.summary["term"].to_list() == fitted.summary["term"].to_list()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fitted_only_attributes_raise_before_fit(case: Case, fits: dict[str, Estimator]) -> None:
    fitted = fits[case.name]
    unfitted = case.make()
    # every public name ending in _ that a fit sets (instance attributes and properties), and summary
    attributes = sorted(
        {a for a in vars(fitted) if a.endswith("_") and not a.startswith("_")}
        | {a for a in dir(type(fitted)) if a.endswith("_") and not a.startswith("_")}
        | {"summary"}
    )
    assert "result_" in attributes
    for attr in attributes:
        with pytest.raises(NotFittedError, match=rf"{type(unfitted).__name__}\.{attr} needs a fitted model"):
            getattr(unfitted, attr)
    for call in (unfitted.to_dict, unfitted.plot, lambda: unfitted.emmeans(**EMMEANS)):
        with pytest.raises(NotFittedError, match=r"not fitted yet: call \.fit\(frame\) first"):
            call()
    assert issubclass(NotFittedError, ModelSpecificationError)
    assert not hasattr(unfitted, "result_")  # an AttributeError too: hasattr answers, does not raise
    # a name no fit sets is an ordinary AttributeError, fitted or not
    for model in (unfitted, fitted):
        with pytest.raises(AttributeError) as err:
            _ = model.no_such_thing_  # type: ignore[attr-defined]
        assert isinstance(err.value, NotFittedError) is (model is unfitted)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_configuration_is_validated_at_fit(case: Case, data: pl.DataFrame) -> None:
    for overrides, message in case.invalid:
        model = case.make(**overrides)  # construction stores, does not check
        for key, value in overrides.items():
            assert model.get_params()[key] == value
        with pytest.raises(ModelSpecificationError, match=message):
            model.fit(case.prepare(data))
        assert not model.is_fitted


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_summary_has_the_fixed_columns(case: Case, fits: dict[str, Estimator]) -> None:
    summary = fits[case.name].summary
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert summary["term"].dtype == pl.String
    numbers = summary.select(c for c in SUMMARY_COLUMNS[1:] if c != "df").to_numpy()
    assert np.isfinite(numbers).all()
    df = summary["df"].to_numpy()
    assert np.all(df > 0)  # finite, or infinite for the asymptotic (Wald z) tests of a GLMM
    assert np.isfinite(df).all() or case.ddf_method == "asymptotic"
    est, se, t = summary["estimate"].to_numpy(), summary["se"].to_numpy(), summary["t"].to_numpy()
    np.testing.assert_allclose(t, est / se, rtol=1e-12)
    inside = (summary["ci_low"] < summary["estimate"]) & (summary["estimate"] < summary["ci_high"])
    assert inside.all()


def test_summary_terms_are_the_same_for_the_same_fixed_formula(fits: dict[str, Estimator]) -> None:
    terms = {name: m.summary["term"].to_list() for name, m in fits.items()}
    first = next(iter(terms.values()))
    assert len(first) == 1 + 4 + 1 + 1 + 4  # intercept, visit, arm, base, visit:arm
    assert all(t == first for t in terms.values()), terms


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_to_dict_is_json_and_has_the_common_keys(case: Case, fits: dict[str, Estimator]) -> None:
    model = fits[case.name]
    out = model.to_dict()
    text = json.dumps(out, allow_nan=False)  # plain JSON: no numpy scalars, no NaN
    back = json.loads(text)
    assert set(COMMON_KEYS) <= set(back)
    assert back["model"] == case.family
    assert back["formula"] == model.get_params()["formula"]
    params = model.get_params()
    assert back["method"] == (case.method or ("REML" if params["reml"] else "ML"))
    assert back["ddf_method"] == (case.ddf_method or params["ddf"])
    assert back["converged"] is True
    assert back["n_obs"] == pl.read_csv(DATA).drop_nulls().height  # complete rows
    # the rows of summary (an infinite df, not JSON, is null)
    rows = [
        {k: (None if k == "df" and v == float("inf") else v) for k, v in r.items()}
        for r in model.summary.to_dicts()
    ]
    assert back["fixed_effects"] == json.loads(json.dumps(rows))
    assert back["aic"] > -2 * back["loglik"]


def test_every_estimator_has_one_family_name(fits: dict[str, Estimator]) -> None:
    families = [m.to_dict()["model"] for m in fits.values()]
    assert len(set(families)) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_emmeans_same_call_same_order(case: Case, fits: dict[str, Estimator]) -> None:
    model = fits[case.name]
    em = model.emmeans(**EMMEANS).means
    assert em.columns == MEANS_COLUMNS
    visits = sorted(pl.read_csv(DATA)["visit"].unique().to_list())
    assert em["visit"].to_list() == [v for v in visits for _ in range(2)]  # by first, then specs
    assert em["arm"].to_list() == sorted(pl.read_csv(DATA)["arm"].unique().to_list()) * len(visits)
    at = EMMEANS["at"]
    positional = model.emmeans("arm", "visit", at).means  # (specs, by, at) positionally
    old_keywords = model.emmeans("arm", at=at, by="visit").means
    # the package's entry point is the function, though the submodule models.emmeans is imported
    assert "sciatica_outcomes.models.emmeans" in sys.modules
    assert inspect.isfunction(emmeans)
    entry_point = emmeans(model, "arm", by="visit", at=at).means
    for other in (positional, old_keywords, entry_point):
        assert other.equals(em)
    # at is applied: another baseline moves every mean by the baseline slope times the difference
    slope = float(model.summary.filter(pl.col("term") == "base")["estimate"][0])
    moved = model.emmeans("arm", by="visit", at={"base": [50.0]}).means
    np.testing.assert_allclose(moved["emmean"] - em["emmean"], 10.0 * slope, rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_plot_returns_axes(case: Case, fits: dict[str, Estimator]) -> None:
    model = fits[case.name]
    ax = model.plot()
    assert isinstance(ax, Axes)
    assert ax.lines or ax.collections  # something was drawn
    _, given = plt.subplots()
    assert model.plot(ax=given) is given


def test_growth_model_plot_is_the_trajectory_over_numeric_time_else_the_forest_plot(
    fits: dict[str, Estimator], golden: dict[str, tuple[dict[str, Any], dict[str, Any], GrowthModel]]
) -> None:
    over_weeks = golden["balanced_ml"][2]  # y ~ week * adherence + (week | patient): numeric week
    ax = over_weeks.plot()
    assert ax.get_xlabel() == "week"
    assert len(ax.lines) == 1 and len(ax.lines[0].get_xdata()) == 40
    by_visit = fits["growth_model"]  # visit is a factor: no trajectory, the forest plot
    ax = by_visit.plot()
    terms = by_visit.summary["term"].to_list()[1:]
    assert [t.get_text() for t in ax.get_yticklabels()] == terms


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_result_is_a_frozen_model_result(case: Case, fits: dict[str, Estimator]) -> None:
    model = fits[case.name]
    res = model.result_  # type: ignore[attr-defined]
    assert isinstance(res, ModelResult)
    assert dataclasses.is_dataclass(res)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.fixed_effects = res.fixed_effects  # frozen: a result is never changed after the fit
    assert res.summary.equals(model.summary)
    assert res.converged is True
    back = json.loads(res.to_json())
    assert set(COMMON_KEYS) <= set(back) and back == json.loads(json.dumps(model.to_dict()))
    ax = res.plot()
    assert isinstance(ax, Axes) and (ax.lines or ax.collections)
    if type(res).plot is ModelResult.plot:  # the shared forest plot, intercept left out
        assert len(ax.get_yticks()) == res.summary.height - 1
