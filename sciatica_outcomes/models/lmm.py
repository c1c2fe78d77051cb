"""Linear mixed growth models (lme4-type) fitted by the profiled REML/ML deviance.

:class:`GrowthModel` parses an lme4 formula, computes per-patient sufficient statistics in one pass, finds
the optimum of the profiled deviance over the relative covariance factor with an analytic gradient
(L-BFGS-B, then projected Newton steps, restarts when a check fails) and reports fixed effects with
Satterthwaite inference, variance components, fit statistics, convergence diagnostics, marginal means and
predictions.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self, TypedDict

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray, IntArray
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models._dist import t_ppf
from sciatica_outcomes.models.base import Estimator, FrameLike, complete_rows
from sciatica_outcomes.models.emmeans import EmmeansResult, emmeans, predictor_info
from sciatica_outcomes.models.engine import LevelSpec, ProfiledDeviance, RandomEffectModes
from sciatica_outcomes.models.formula import Design, ModelFormula, RandomTerm, parse_formula
from sciatica_outcomes.models.inference import (
    LMM_DDF_METHODS,
    FTest,
    KenwardRogerInference,
    LikelihoodRatioTest,
    check_ddf,
    kenward_roger,
    likelihood_ratio,
    satterthwaite_from_deviance,
    with_kenward_roger,
)
from sciatica_outcomes.models.optimize import BoundedNewton, OptimumCheck
from sciatica_outcomes.models.results import ConvergenceDiagnostics, FitResult, varcorr_frame, varcorr_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from sciatica_outcomes.models.outofcore import DataSource


__all__ = ["FrameLike", "GrowthModel", "fit_standard", "likelihood_ratio_test", "standard_formula"]

SINGULAR_TOL = 1e-4  # lme4::isSingular default


class _FitState(TypedDict):
    """How the optimum was reached (:meth:`GrowthModel._optimise`), for the diagnostics."""

    reml: bool
    check: OptimumCheck
    restarts: int
    messages: list[str]
    singular: bool
    n_evals: int


def _to_polars(data: object) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    pandas = sys.modules.get("pandas")  # a pandas frame exists only if pandas was imported
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return pl.from_pandas(data)
    raise UnusableInputError(f"expected a polars or pandas DataFrame, got {type(data).__name__}")


class _Structure:
    """Random-effects structure: grouping levels, terms and theta layout (lme4 order)."""

    def __init__(self, formula: ModelFormula) -> None:
        groups = formula.groups
        if not groups:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has no random-effects term such as (week | patient); "
                "fit a fixed-effects model with statsmodels OLS instead"
            )
        if len(groups) > 2:
            raise ModelSpecificationError(
                f"formula {formula.text!r} has {len(groups)} grouping factors ({', '.join(groups)}); "
                "this engine fits one grouping factor or two nested ones (patients within clinics)"
            )
        self.groups = groups
        self.terms = formula.random

    def layout(self, inner: str) -> None:
        """Order terms as lme4 does (inner, i.e. more levels, first) and assign theta positions."""
        self.inner = inner
        self.outer = next((g for g in self.groups if g != inner), None)
        ordered: list[RandomTerm] = [t for t in self.terms if t.group == inner]
        ordered += [t for t in self.terms if t.group != inner]
        self.ordered = ordered
        idx = 0
        self.specs: dict[str, LevelSpec] = {}
        self.term_slices: list[tuple[RandomTerm, int, int, list[int]]] = []  # term, q offset, k, theta ids
        self.diag_theta: list[int] = []
        for grp in (inner, self.outer):
            if grp is None:
                continue
            rows: list[int] = []
            cols: list[int] = []
            index: list[int] = []
            off = 0
            for t in (t for t in ordered if t.group == grp):
                k = len(t.variables)
                ids: list[int] = []
                for j in range(k):
                    for i in range(j, k):
                        rows.append(off + i)
                        cols.append(off + j)
                        index.append(idx)
                        ids.append(idx)
                        if i == j:
                            self.diag_theta.append(idx)
                        idx += 1
                self.term_slices.append((t, off, k, ids))
                off += k
            self.specs[grp] = LevelSpec(off, np.array(rows), np.array(cols), np.array(index))
        self.n_theta = idx

    def theta0(self) -> FloatArray:
        """lme4's start: identity relative covariance factor."""
        th = np.zeros(self.n_theta)
        th[self.diag_theta] = 1.0
        return th

    def lower(self) -> FloatArray:
        lo = np.full(self.n_theta, -np.inf)
        lo[self.diag_theta] = 0.0
        return lo

    def group_labels(self) -> list[str]:
        """Group names as ``VarCorr`` prints them (``patient``, ``patient.1`` for a second term)."""
        seen: dict[str, int] = {}
        out = []
        for t, *_ in self.term_slices:
            n = seen.get(t.group, 0)
            out.append(t.group if n == 0 else f"{t.group}.{n}")
            seen[t.group] = n + 1
        return out


class GrowthModel(Estimator):
    """Linear mixed model for growth curves, specified in lme4 syntax.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"walk ~ week * adherence + age + (1 | clinic) + (week | patient)"``.
    reml : bool
        REML (default) or maximum likelihood.
    reference : mapping, optional
        Reference level per categorical column (treatment coding), e.g. ``{"group": "control"}``.
    time : str
        Name of the time column used by the plots (default ``"week"``).
    gradient_tol : float
        Convergence tolerance on the Newton decrement ``sqrt(g' H^-1 g)`` of the deviance.
    max_restarts : int
        Extra optimizer runs allowed when a final check fails.
    ddf : {"satterthwaite", "kenward-roger", "kenward-roger-linear"}
        Denominator df (and, for Kenward-Roger, the adjusted covariance of beta) of every t- and F-test,
        marginal mean and prediction interval of the fit. Kenward-Roger needs a REML fit; the covariance is
        linear in pbkrtest's parameters (``VarCorr`` elements, ``sigma^2``), so "kenward-roger-linear" gives
        the same numbers (and names itself in the results).

    Attributes
    ----------
    result_ : FitResult
        Frozen result (fixed effects, variance components, fit statistics, diagnostics).
    inference_ : WaldInference
        Satterthwaite (or :class:`KenwardRogerInference`) machinery for contrasts, marginal means and
        predictions.
    vcov_adjusted_ : numpy.ndarray
        Kenward-Roger adjusted covariance of beta (``ddf="kenward-roger"`` only).
    beta_, theta_, sigma_ : fitted parameters.

    Notes
    -----
    ``y = X beta + Z b + e``, ``b = Lambda(theta) u``, ``u ~ N(0, sigma^2 I)``, ``e ~ N(0, sigma^2 I)``.
    The profiled deviance over ``theta`` (Bates et al. 2015, J Stat Softw 67(1), eq. 34 and 41) is
    minimised; ``beta`` and ``sigma`` follow in closed form. Satterthwaite df as ``lmerTest``.

    Validated against lme4 1.1-31 ``lmer(..., control = lmerControl(optimizer = "bobyqa"))``, lmerTest 3.1-3
    ``summary`` and emmeans 1.8.4 (``tests/reference/*.R``).
    """

    def __init__(
        self,
        formula: str,
        reml: bool = True,
        reference: Mapping[str, Any] | None = None,
        time: str = "week",
        gradient_tol: float = 1e-5,
        max_restarts: int = 2,
        ddf: str = "satterthwaite",
    ) -> None:
        # stored unchanged (get_params); checked by _validate_params at fit
        self.formula = formula
        self.reml = reml
        self.reference = reference
        self.time = time
        self.gradient_tol = gradient_tol
        self.max_restarts = max_restarts
        self.ddf = ddf

    def _validate_params(self) -> None:
        """Check ``ddf`` against ``reml`` and the formula's random structure (called by :meth:`fit`)."""
        check_ddf(self.ddf, self.reml, LMM_DDF_METHODS)
        _Structure(parse_formula(self.formula))  # a bad formula fails before the data are touched

    # ------------------------------------------------------------------------------------------------
    def _prepare(self, data: FrameLike) -> pl.DataFrame:
        self.formula_ = parse_formula(self.formula)
        self.structure_ = _Structure(self.formula_)
        frame = _to_polars(data)
        cols = self.formula_.columns()
        frame, self.n_dropped_ = complete_rows(frame, cols, f"formula {self.formula!r}")
        groups = self.structure_.groups
        counts = {g: frame[g].n_unique() for g in groups}
        inner = max(groups, key=lambda g: (counts[g], -groups.index(g)))
        if len(groups) == 2:
            outer = next(g for g in groups if g != inner)
            pairs = frame.select(inner, outer).unique().height
            if pairs != counts[inner]:
                shared = (
                    frame.select(inner, outer)
                    .unique()
                    .group_by(inner)
                    .len()
                    .filter(pl.col("len") > 1)
                    .get_column(inner)
                    .head(3)
                    .to_list()
                )
                raise ModelSpecificationError(
                    f"grouping factors {inner!r} and {outer!r} are crossed, not nested: {inner} "
                    f"{shared} appear(s) in more than one {outer}. This engine fits nested designs exactly, "
                    "not crossed ones; give each patient a code unique across clinics, or fit in lme4"
                )
            frame = frame.sort([outer, inner], maintain_order=True)
            frame = frame.with_columns(
                pl.col(inner).rle_id().alias("__g1"), pl.col(outer).rle_id().alias("__g2")
            )
        else:
            frame = frame.sort(inner, maintain_order=True).with_columns(pl.col(inner).rle_id().alias("__g1"))
        self.structure_.layout(inner)
        self.n_groups_ = {g: counts[g] for g in (inner, self.structure_.outer) if g is not None}
        return frame

    def _check_finite(self, frame: pl.DataFrame, x: FloatArray, y: FloatArray, names: list[str]) -> None:
        bad_y = ~np.isfinite(y)
        if bad_y.any():
            i = int(np.flatnonzero(bad_y)[0])
            raise ModelSpecificationError(
                f"response {self.formula_.response_label!r} is not finite in {int(bad_y.sum())} row(s), "
                f"first "
                f"at data row {int(frame['__row'][i])} ({self._row_text(frame, i)}); "
                "check the transformation and the values"
            )
        bad = ~np.isfinite(x)
        if bad.any():
            i, j = (int(v[0]) for v in np.nonzero(bad))
            raise ModelSpecificationError(
                f"fixed-effect column {names[j]!r} is not finite in {int(bad.any(axis=1).sum())} row(s), "
                f"first "
                f"at data row {int(frame['__row'][i])} ({self._row_text(frame, i)})"
            )

    @staticmethod
    def _row_text(frame: pl.DataFrame, i: int) -> str:
        row = frame.select([c for c in frame.columns if not c.startswith("__")]).row(i, named=True)
        return ", ".join(f"{k}={v!r}" for k, v in row.items())

    def fit(self, data: FrameLike) -> Self:
        """Fit the model.

        Parameters
        ----------
        data : polars.DataFrame or pandas.DataFrame
            One row per observation; rows missing any model variable are dropped and counted in
            ``result_.diagnostics.n_dropped_incomplete``.

        Returns
        -------
        GrowthModel
            ``self``, fitted.

        Raises
        ------
        ModelSpecificationError
            An unknown ``ddf``, Kenward-Roger with ML, a bad formula, unknown columns, a rank-deficient
            design (checked here, not in ``__init__``).
        """
        t0 = time.perf_counter()
        self._validate_params()
        frame = self._prepare(data)
        design, x = Design.build(self.formula_, frame, dict(self.reference or {}))
        y = design.response(frame)
        self._check_finite(frame, x, y, design.column_names)
        n, p = x.shape
        rank = np.linalg.matrix_rank(x.T @ x) if p else 0
        if rank < p:
            _, r = np.linalg.qr(x)
            aliased = [
                design.column_names[j] for j in np.flatnonzero(np.abs(np.diag(r)) < 1e-7 * np.abs(r).max())
            ]
            raise ModelSpecificationError(
                f"the fixed-effects design is rank deficient (rank {rank} of {p} columns); columns "
                f"{aliased or design.column_names} are combinations of others: remove them"
            )
        if n <= p:
            raise ModelSpecificationError(
                f"{n} complete rows for {p} fixed effects: need more rows than effects"
            )
        st = self.structure_
        zs: dict[str, list[FloatArray]] = {grp: [] for grp in st.specs}
        for t, *_ in st.term_slices:
            zs[t.group].append(design.random_matrix(frame, t))
        z1 = np.column_stack(zs[st.inner])
        g1: IntArray = frame["__g1"].to_numpy()
        z_all = [z1]
        if st.outer is not None:
            z2 = np.column_stack(zs[st.outer])
            z_all.append(z2)
            g2: IntArray = frame["__g2"].to_numpy()
            engine = ProfiledDeviance(x, y, z1, g1, st.specs[st.inner], z2, g2, st.specs[st.outer])
            if self.ddf.startswith(
                "kenward-roger"
            ):  # the nested KR blocks are sums over the rows (no n x n matrix)
                self._kr_rows = (x, z1, z2, g1, g2)
        else:
            engine = ProfiledDeviance(x, y, z1, g1, st.specs[st.inner])
        for z in z_all:
            if not np.all(np.isfinite(z)):
                raise ModelSpecificationError(
                    f"a random-effects column of {self.formula!r} has non-finite values"
                )
        self.design_ = design
        self.engine_ = engine
        rms: dict[str, FloatArray] = {st.inner: np.sqrt(np.mean(z1**2, axis=0))}
        if st.outer is not None:
            rms[st.outer] = np.sqrt(np.mean(z_all[1] ** 2, axis=0))
        scale = np.ones(st.n_theta)
        for grp, spec in st.specs.items():
            scale[spec.index] = 1.0 / np.maximum(rms[grp][spec.rows], 1e-12)
        self._theta_scale = scale
        self._column_info(frame)
        self.group_levels_ = {
            st.inner: frame.select("__g1", st.inner).unique("__g1", keep="first").sort("__g1")[st.inner],
        }
        if st.outer is not None:
            self.group_levels_[st.outer] = (
                frame.select("__g2", st.outer).unique("__g2", keep="first").sort("__g2")[st.outer]
            )
        self._optimise(self.reml)
        self._finish(time.perf_counter() - t0)
        return self

    def fit_from(
        self, source: DataSource, table: str | None = None, duckdb_config: Mapping[str, Any] | None = None
    ) -> Self:
        """Fit from where the data live: the per-patient sufficient statistics computed by DuckDB.

        Parameters
        ----------
        source : duckdb.DuckDBPyRelation, str or pathlib.Path
            A DuckDB relation; a Parquet file, a directory of Parquet files or a glob
            (``"visits/*.parquet"``); a ``.csv`` file; or a DuckDB database file (the store) with
            ``table`` (:func:`~sciatica_outcomes.models.outofcore.open_source`).
        table : str, optional
            Table of a DuckDB database file.
        duckdb_config : mapping, optional
            Settings of the DuckDB connection opened for a path, e.g. ``{"memory_limit": "3GB", "threads":
            2}`` (ignored for a relation, which has its connection). The connection is closed after the
            statistics pass, which frees DuckDB's memory before the optimiser runs.

        Returns
        -------
        GrowthModel
            ``self``, fitted: the same estimates, standard errors, Satterthwaite df, variance components
            and log-likelihood as :meth:`fit` on the same rows (to rounding), with
            ``result_.extras["statistics_seconds"]`` the time of the statistics passes.

        Raises
        ------
        ModelSpecificationError
            As :meth:`fit`; also a term SQL cannot evaluate (orthogonal ``poly()``, ``scale()``; the message
            names it) and Kenward-Roger for nested models (its blocks need the rows).
        UnusableInputError
            A missing or unreadable source.

        Notes
        -----
        The rows never reach Python: a ``GROUP BY`` patient (clinic and patient when nested) returns
        ``Z'Z``, ``Z'[X y]`` and ``n_i`` per patient and a second pass the totals ``[X y]'[X y]``
        (:mod:`~sciatica_outcomes.models.sqlstats` writes the SQL). Memory grows with the patients, not
        the rows. Satterthwaite df and single-level Kenward-Roger need only these statistics. Predictions,
        marginal means and BLUPs work as after :meth:`fit`.
        """
        from sciatica_outcomes.models.outofcore import (  # noqa: PLC0415
            check_gram_rank,
            compute_statistics,
            open_owned,
        )

        t0 = time.perf_counter()
        self._validate_params()
        self.formula_ = parse_formula(self.formula)
        self.structure_ = _Structure(self.formula_)
        st = self.structure_
        if len(st.groups) == 2 and self.ddf.startswith("kenward-roger"):
            raise ModelSpecificationError(
                "Kenward-Roger for patients nested in clinics sums over the rows, which an out-of-core fit "
                "does not hold: use ddf='satterthwaite' or fit in memory"
            )
        rel, con = open_owned(source, table, duckdb_config)

        # the inner level is known after the counts; lme4 orders the inner level's terms first
        def z_terms(inner: str) -> dict[str, list[tuple[str | None, ...]]]:
            out: dict[str, list[tuple[str | None, ...]]] = {g: [] for g in st.groups}
            for t in [t for t in st.terms if t.group == inner] + [t for t in st.terms if t.group != inner]:
                out[t.group].append(t.variables)
            return out

        try:
            stats, inner = compute_statistics(
                rel, self.formula_, st.groups, z_terms, dict(self.reference or {}), self.time
            )
        finally:
            if con is not None:  # opened here: close it, so DuckDB's buffers are freed before the optimiser
                con.close()
        self.n_dropped_ = stats.n_dropped
        st.layout(inner)
        design = stats.design
        p = len(design.column_names)
        n = stats.n
        check_gram_rank(stats.wtw[:p, :p], design.column_names)
        if n <= p:
            raise ModelSpecificationError(
                f"{n} complete rows for {p} fixed effects: need more rows than effects"
            )
        nested = None
        if st.outer is not None and stats.nested is not None:
            parent, c12, c22, f2 = stats.nested
            nested = (st.specs[st.outer], parent, c12, c22, f2)
        engine = ProfiledDeviance.from_statistics(n, stats.c11, stats.f1, stats.wtw, st.specs[inner], nested)
        self.design_ = design
        self.engine_ = engine
        rms: dict[str, FloatArray] = {inner: np.sqrt(np.einsum("iim->i", stats.c11) / n)}
        if st.outer is not None and stats.nested is not None:
            rms[st.outer] = np.sqrt(np.einsum("iim->i", stats.nested[2]) / n)
        scale = np.ones(st.n_theta)
        for grp, spec in st.specs.items():
            scale[spec.index] = 1.0 / np.maximum(rms[grp][spec.rows], 1e-12)
        self._theta_scale = scale
        self.column_info_ = stats.column_info
        self._time_bounds = stats.time_bounds
        self.n_groups_ = {inner: stats.inner_levels.len()}
        self.group_levels_ = {inner: stats.inner_levels}
        if st.outer is not None and stats.outer_levels is not None:
            self.n_groups_[st.outer] = stats.outer_levels.len()
            self.group_levels_[st.outer] = stats.outer_levels
        self._fit_extras = {"engine": "duckdb", "statistics_seconds": stats.seconds}
        self._optimise(self.reml)
        self._finish(time.perf_counter() - t0)
        return self

    def _column_info(self, frame: pl.DataFrame) -> None:
        info = predictor_info(self.design_, frame)
        self.column_info_ = info
        if self.time in frame.columns and frame[self.time].dtype.is_numeric():
            t = frame[self.time].cast(pl.Float64).to_numpy()  # complete rows only: no nulls, not empty
            self._time_bounds = (float(t.min()), float(t.max()))
        else:
            self._time_bounds = (0.0, 1.0)

    # ------------------------------------------------------------------------------------------------
    def _minimiser(self, reml: bool) -> BoundedNewton:
        """The shared optimizer (:mod:`~sciatica_outcomes.models.optimize`) on the profiled deviance."""
        return BoundedNewton(
            lambda theta: self._fg(theta, reml),
            self.structure_.lower(),
            self._theta_scale,
            gradient_tol=self.gradient_tol,
            max_restarts=self.max_restarts,
        )

    def _optimise(self, reml: bool) -> None:
        eng, st = self.engine_, self.structure_
        n_start = eng.n_evals
        scale = self._theta_scale
        opt = self._minimiser(reml).minimise(st.theta0() * scale, 0.05 * st.theta0() * scale)
        theta, messages = opt.x, opt.messages
        diag = np.asarray(st.diag_theta)
        singular = bool((theta[diag] < SINGULAR_TOL).any())
        if singular:
            messages.append("boundary (singular) fit: a random-effect SD is estimated as (nearly) zero")
        self.theta_ = theta
        self._fit_state: _FitState = {
            "reml": reml,
            "check": opt.check,
            "restarts": opt.restarts,
            "messages": messages,
            "singular": singular,
            "n_evals": eng.n_evals - n_start,
        }

    def _escape(
        self, theta: FloatArray, check: OptimumCheck, lower: FloatArray, reml: bool
    ) -> FloatArray | None:
        """A lower start along a direction of negative curvature (:meth:`BoundedNewton.escape`)."""
        return self._minimiser(reml).escape(theta, check)

    def _fg(self, theta: FloatArray, reml: bool) -> tuple[float, FloatArray]:
        f, g = self.engine_.deviance(theta, reml, grad=True)
        if g is None:
            raise RuntimeError("the deviance engine returned no gradient")
        return f, g

    def _check(self, theta: FloatArray, lower: FloatArray, reml: bool) -> OptimumCheck:
        """First- and second-order optimality checks at ``theta`` (:meth:`BoundedNewton.check`)."""
        return self._minimiser(reml).check(theta)

    # ------------------------------------------------------------------------------------------------
    def _finish(self, seconds: float) -> None:
        eng, st = self.engine_, self.structure_
        reml = self._fit_state["reml"]
        theta = self.theta_
        fx = eng.fixed(theta, reml)
        beta, sigma = np.asarray(fx["beta"]), float(fx["sigma"])
        self.beta_, self.sigma_ = beta, sigma
        dev = eng.deviance(theta, reml)[0]
        names = self.design_.column_names
        varpar = np.r_[theta, sigma]

        def grad_vp(vp: FloatArray) -> FloatArray:
            return eng.deviance_vp(vp, reml, grad=True)[1]  # type: ignore[return-value]

        self.inference_ = satterthwaite_from_deviance(names, beta, varpar, eng.covbeta, gradient=grad_vp)
        if self.ddf.startswith("kenward-roger") and reml:
            self.inference_ = self._kenward_roger(theta, sigma)
            self.vcov_adjusted_ = self.inference_.vcov_adjusted
        fixed = self.inference_.contrast(np.eye(len(names)), labels=names)
        n = eng.n
        n_par = len(names) + st.n_theta + 1
        loglik = -dev / 2.0
        check = self._fit_state["check"]
        messages = list(self._fit_state["messages"])
        if self.n_dropped_:
            messages.append(f"{self.n_dropped_} row(s) with a missing model variable were dropped")
        converged = bool(
            check["ok"] or (self._fit_state["singular"] and check["decrement"] < self.gradient_tol)
        )
        if not converged:
            messages.append(
                f"not converged: Newton decrement {check['decrement']:.2e}, "
                f"Hessian positive definite {check['pd']}"
            )
        diagnostics = ConvergenceDiagnostics(
            optimizer="L-BFGS-B (analytic gradient) + projected Newton",
            n_evaluations=int(self._fit_state["n_evals"]),
            n_restarts=int(self._fit_state["restarts"]),
            gradient_norm=float(check["grad_norm"]),
            hessian_positive_definite=bool(check["pd"]),
            hessian_min_eigenvalue=float(check["min_eig"]),
            singular=bool(self._fit_state["singular"]),
            converged=converged,
            messages=tuple(messages),
            n_dropped_incomplete=int(self.n_dropped_),
            fit_seconds=float(seconds),
        )
        self.result_ = FitResult(
            formula=self.formula,
            reml=reml,
            fixed_effects=fixed,
            random_effects=self._varcorr(theta, sigma),
            sigma=sigma,
            loglik=loglik,
            deviance=dev,
            aic=-2 * loglik + 2 * n_par,
            bic=-2 * loglik + math.log(n) * n_par,
            n_obs=n,
            n_groups=dict(self.n_groups_),
            theta=tuple(float(v) for v in theta),
            diagnostics=diagnostics,
            extras={"ddf_method": self.inference_.ddf_method, **self.__dict__.get("_fit_extras", {})},
        )

    def _kenward_roger(self, theta: FloatArray, sigma: float) -> KenwardRogerInference:
        """Kenward-Roger inference at ``(theta, sigma)`` in pbkrtest's parametrisation (``VarCorr``
        elements of each term and ``sigma^2``) from the engine's per-patient blocks."""
        st = self.structure_
        e_mats: dict[str, list[FloatArray]] = {grp: [] for grp in st.specs}
        for t, off, k, _ in st.term_slices:
            q = st.specs[t.group].q
            for j in range(k):
                for i in range(j, k):
                    e = np.zeros((q, q))
                    e[off + i, off + j] = e[off + j, off + i] = 1.0
                    e_mats[t.group].append(e)
        if st.outer is None:
            blocks = self.engine_.kenward_roger_blocks(theta, sigma, np.stack(e_mats[st.inner]))
        else:
            e_pair = (np.stack(e_mats[st.inner]), np.stack(e_mats[st.outer]))
            blocks = self.engine_.kenward_roger_blocks_nested(theta, sigma, e_pair, self._kr_rows)
        kr = kenward_roger(blocks["phi_inv"], blocks["p_mats"], blocks["q_mats"], blocks["ktrace"])
        return with_kenward_roger(self.inference_, kr, self.ddf)

    def _varcorr(self, theta: FloatArray, sigma: float) -> pl.DataFrame:
        st = self.structure_
        rows: list[dict[str, Any]] = []
        for label, (t, off, k, _) in zip(st.group_labels(), st.term_slices, strict=True):
            lam = st.specs[t.group].template(theta)[off : off + k, off : off + k]
            names = ["(Intercept)" if v is None else v for v in t.variables]
            rows += varcorr_rows(label, names, sigma**2 * lam @ lam.T)
        return varcorr_frame(rows, sigma)

    # ------------------------------------------------------------------------------------------------
    @property
    def variance_components(self) -> pl.DataFrame:
        """Variance components as ``as.data.frame(VarCorr(m))``: group, term1, term2, variance, sd, corr."""
        self._check_fitted()
        return self.result_.random_effects

    def contrast(
        self, contrast: FloatArray | Sequence[float] | dict[str, float], rhs: float = 0.0, level: float = 0.95
    ) -> pl.DataFrame:
        """t-test of ``L beta = rhs`` per row of ``L`` (or a ``{coefficient: weight}`` mapping)."""
        self._check_fitted()
        return self.inference_.contrast(contrast, rhs=rhs, level=level)

    def f_test(self, contrast: FloatArray, rhs: float = 0.0) -> FTest:
        """Joint F-test of ``L beta = rhs`` with Satterthwaite denominator df."""
        self._check_fitted()
        return self.inference_.f_test(contrast, rhs)

    def emmeans(
        self,
        specs: str | Sequence[str],
        by: str | Sequence[str] | None = None,
        at: Mapping[str, Sequence[Any]] | None = None,
        level: float | None = None,
    ) -> EmmeansResult:
        """Estimated marginal means (see :func:`sciatica_outcomes.models.emmeans.emmeans`).

        Parameters
        ----------
        specs : str or sequence of str
            Predictors whose combinations get a mean.
        by : str or sequence of str, optional
            Predictors to condition on.
        at : mapping, optional
            Values of predictors in the reference grid.
        level : float, optional
            Confidence level (default 0.95).

        Returns
        -------
        EmmeansResult
            ``means`` and ``contrasts(method, adjust)``.
        """
        return emmeans(self, specs, by=by, at=at, level=0.95 if level is None else level)

    def refit(self, reml: bool) -> GrowthModel:
        """The same model refitted with REML or ML on the stored sufficient statistics."""
        self._check_fitted()
        clone = object.__new__(GrowthModel)
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("_fit_state", "_h_cache")})
        clone.reml = reml
        if not reml:
            clone.ddf = "satterthwaite"  # Kenward-Roger is defined for REML fits only
        clone._optimise(reml)
        clone._finish(0.0)
        return clone

    def ranef(self) -> dict[str, pl.DataFrame]:
        """Conditional modes (BLUPs) per grouping factor with conditional SDs (``ranef(condVar=TRUE)``)."""
        self._check_fitted()
        st = self.structure_
        re = self.engine_.random_effects(self.theta_, self.beta_)
        out: dict[str, pl.DataFrame] = {}
        for grp, b, cov1 in self._levels(re):
            names = []
            for t, *_ in st.term_slices:
                if t.group == grp:
                    names += ["(Intercept)" if v is None else v for v in t.variables]
            cov = cov1 * self.sigma_**2
            cols: dict[str, Any] = {grp: self.group_levels_[grp]}
            for j, nm in enumerate(names):
                cols[nm] = b[:, j]
                cols[f"{nm}__cond_sd"] = np.sqrt(cov[:, j, j])
            out[grp] = pl.DataFrame(cols)
        return out

    def _levels(self, re: RandomEffectModes) -> list[tuple[str, FloatArray, FloatArray]]:
        """Grouping column, conditional modes and covariances over sigma^2 of each level, inner first."""
        st = self.structure_
        out = [(st.inner, re["b1"], re["cov1"])]
        if st.outer is not None and "b2" in re and "cov2" in re:
            out.append((st.outer, re["b2"], re["cov2"]))
        return out

    def predict(self, data: FrameLike, include_random: bool = False, level: float = 0.95) -> pl.DataFrame:
        """Predictions with confidence intervals.

        Parameters
        ----------
        data : polars or pandas DataFrame
            New rows with the fixed-effects columns (and grouping columns when ``include_random``).
        include_random : bool
            Add the patient's (and clinic's) BLUPs; unknown groups get the population curve.
        level : float
            Confidence level.

        Returns
        -------
        polars.DataFrame
            The input with ``fit, se, df, ci_low, ci_high`` (population) and, with ``include_random``,
            ``fit_conditional, se_conditional, known_group``.

        Notes
        -----
        Population: ``x' beta`` with ``se = sqrt(x' V x)`` and Satterthwaite df. Conditional:
        ``x' beta + z' b`` with ``se^2 = x' V x + z' Var(b | y) z`` (``Var(b | y) = sigma^2 Lambda A^-1
        Lambda'``), which ignores the covariance of ``beta`` and ``b`` (as ``ranef(condVar = TRUE)``).
        """
        self._check_fitted()
        frame = _to_polars(data)
        x = self.design_.matrix(frame)
        fit = x @ self.beta_
        var, df = self.inference_.variance_and_df(np.nan_to_num(x))
        se = np.sqrt(var)
        q = t_ppf(0.5 + level / 2, df)
        out = frame.with_columns(
            pl.Series("fit", fit),
            pl.Series("se", se),
            pl.Series("df", df),
            pl.Series("ci_low", fit - q * se),
            pl.Series("ci_high", fit + q * se),
        )
        if not include_random:
            return out
        st = self.structure_
        re = self.engine_.random_effects(self.theta_, self.beta_)
        cond = fit.copy()
        cvar = var.copy()
        known = np.ones(frame.height, dtype=bool)
        for grp, b_all, cov_all in self._levels(re):
            if grp not in frame.columns:
                raise ModelSpecificationError(
                    f"include_random=True needs the grouping column {grp!r} in the data"
                )
            z = np.column_stack(
                [self.design_.random_matrix(frame, t) for t, *_ in st.term_slices if t.group == grp]
            )
            lut = pl.DataFrame({grp: self.group_levels_[grp], "__i": np.arange(len(self.group_levels_[grp]))})
            idx = frame.select(pl.col(grp).cast(lut[grp].dtype)).join(
                lut, on=grp, how="left", maintain_order="left"
            )["__i"]
            found = idx.is_not_null().to_numpy()
            ii = idx.fill_null(0).to_numpy()
            b = b_all[ii]
            cov = cov_all[ii] * self.sigma_**2
            cond += np.where(found, np.einsum("ij,ij->i", z, b), 0.0)
            cvar += np.where(found, np.einsum("ij,ijk,ik->i", z, cov, z), 0.0)
            if grp == st.inner:
                known = found
        return out.with_columns(
            pl.Series("fit_conditional", cond),
            pl.Series("se_conditional", np.sqrt(cvar)),
            pl.Series("known_group", known),
        )

    # ------------------------------------------------------------------------------------------------
    def plot(self, ax: Axes | None = None, by: str | None = None) -> Axes:
        """The standard figure; returns the axes.

        The population trajectory with its CI band (:meth:`plot_trajectory`, one line per level of ``by``)
        when ``time`` is a numeric predictor of the fixed part, otherwise the forest plot of the fixed
        effects (:meth:`plot_fixed_effects`; ``by`` unused).
        """
        self._check_fitted()
        if self.column_info_.get(self.time, ("",))[0] == "numeric":
            return self.plot_trajectory(ax=ax, by=by)
        return self.plot_fixed_effects(ax=ax)

    def plot_trajectory(
        self, ax: Axes | None = None, weeks: Sequence[float] | None = None, by: str | None = None
    ) -> Axes:
        """Population trajectory (marginal means over ``time``) with 95% CI band; returns the axes."""
        import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

        self._check_fitted()
        if self.time not in self.column_info_:
            raise ModelSpecificationError(
                f"time column {self.time!r} is not a fixed-effect variable of the model"
            )
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        if weeks is None:
            lo, hi = self._time_range
            weeks = np.linspace(lo, hi, 40).tolist()
        em = self.emmeans([self.time], at={self.time: list(weeks)}, by=by).means
        groups = [None] if by is None else em[by].unique(maintain_order=True).to_list()
        for g in groups:
            part = em if by is None else em.filter(pl.col(by) == g)
            t = part[self.time].to_numpy()
            ax.plot(t, part["emmean"].to_numpy(), label=None if g is None else str(g))
            ax.fill_between(t, part["ci_low"].to_numpy(), part["ci_high"].to_numpy(), alpha=0.2)
        ax.set_xlabel(self.time)
        ax.set_ylabel(self.formula_.response_label)
        if by is not None:
            ax.legend(title=by)
        return ax

    @property
    def _time_range(self) -> tuple[float, float]:
        return self._time_bounds

    def plot_fixed_effects(self, ax: Axes | None = None) -> Axes:
        """Forest plot of the fixed effects (estimate and 95% CI); returns the axes."""
        self._check_fitted()
        return self.result_.plot(ax)


def likelihood_ratio_test(small: GrowthModel, large: GrowthModel) -> LikelihoodRatioTest:
    """Likelihood-ratio test of nested growth models, refitting REML fits with ML (as ``anova(m0, m1)``).

    Parameters
    ----------
    small, large : GrowthModel
        Fitted models on the same rows; ``small`` nested in ``large``.

    Returns
    -------
    LikelihoodRatioTest
    """
    for m in (small, large):
        m._check_fitted()
    if small.result_.n_obs != large.result_.n_obs:
        raise ModelSpecificationError(
            f"models were fitted to different numbers of rows ({small.result_.n_obs} vs "
            f"{large.result_.n_obs}); "
            "a likelihood-ratio test needs the same rows"
        )
    refit = small.reml or large.reml
    a = small.refit(False) if small.reml else small
    b = large.refit(False) if large.reml else large

    def npar(m: GrowthModel) -> int:
        return len(m.beta_) + m.structure_.n_theta + 1

    return likelihood_ratio(a.result_.loglik, b.result_.loglik, npar(a), npar(b), refit)


def standard_formula(outcome: str, n_clinics: int) -> str:
    """The standard growth model of an outcome on the derived analysis frame.

    ``outcome ~ week * adherence_overall + age + (week | episode_id)``, with ``(1 | clinic_id)`` added
    when the data hold more than one clinic (episodes nested in clinics).
    """
    clinic = "(1 | clinic_id) + " if n_clinics > 1 else ""
    return f"{outcome} ~ week * adherence_overall + age + {clinic}(week | episode_id)"


def fit_standard(frame: FrameLike, outcome: str, reml: bool = True) -> GrowthModel:
    """Fit the standard growth model of one outcome on the analysis frame (``derive.analysis_frame``).

    Parameters
    ----------
    frame : polars.DataFrame
        The analysis frame (one row per episode and assessment, one column per measure).
    outcome : str
        Measure column, e.g. ``"odi"`` or ``"walk_tolerance_min"``.
    reml : bool
        REML (default) or ML.

    Returns
    -------
    GrowthModel
        Fitted; e.g. ``fit_standard(af, "odi").emmeans("week", at={"week": [0, 6, 12, 26]}).means``.
    """
    frame = _to_polars(frame)
    if outcome not in frame.columns:
        raise UnusableInputError(f"outcome {outcome!r} is not a column of the analysis frame")
    n_clinics = frame["clinic_id"].n_unique() if "clinic_id" in frame.columns else 1
    return GrowthModel(standard_formula(outcome, n_clinics), reml=reml).fit(frame)
