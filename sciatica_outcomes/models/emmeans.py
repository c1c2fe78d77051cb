"""Estimated marginal means and their contrasts: emmeans' reference grid and weights, Satterthwaite df.

The df are Satterthwaite's for every mean and contrast, as R's ``emmeans(m, ..., lmer.df = "satterthwaite",
lmerTest.limit = Inf)``; emmeans' own default for an ``lmer`` fit is Kenward-Roger (pbkrtest installed, at
most ``pbkrtest.limit`` observations), which gives other df and SEs (``tests/reference/lmm/emmeans_df.R``).

The reference grid holds every categorical predictor at all its levels and every numeric predictor at its
mean over the fitted rows, unless ``at`` gives values. The marginal mean of a combination of ``specs`` (and
``by``) levels averages the grid's predictions over the other factors with equal weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.errors import ModelSpecificationError
from sciatica_outcomes.models.formula import Design
from sciatica_outcomes.models.inference import WaldInference

__all__ = ["EmmeansResult", "emmeans", "marginal_means", "parse_emmeans_spec", "predictor_info"]


class FixedDesign(Protocol):
    """A fixed-effects design: a :class:`~sciatica_outcomes.models.formula.Design` or a view of one."""

    def matrix(self, frame: pl.DataFrame) -> FloatArray:
        """The fixed-effects design matrix of ``frame``'s rows."""
        ...


class FittedModel(Protocol):
    """What :func:`emmeans` reads from a fitted model (a ``GrowthModel`` or an MMRM's view)."""

    @property
    def design_(self) -> FixedDesign:
        """The fixed-effects design."""
        ...

    @property
    def column_info_(self) -> Mapping[str, tuple[str, Any]]:
        """Reference-grid defaults of the predictors (:func:`predictor_info`)."""
        ...

    @property
    def inference_(self) -> WaldInference:
        """Satterthwaite inference of the fixed effects."""
        ...

    def _fitted(self) -> None:
        """Raise unless fitted."""
        ...


def _label(col: str, value: Any, numeric: bool) -> str:
    if numeric:
        v = float(value)
        return f"{col}{int(v) if v.is_integer() else v:g}" if v.is_integer() else f"{col}{v:g}"
    return str(value)


@dataclass(frozen=True)
class EmmeansResult:
    """Marginal means (``means``) and the contrast machinery behind them."""

    means: pl.DataFrame
    specs: tuple[str, ...]
    by: tuple[str, ...]
    weights: FloatArray  # (rows of means, p): the linear functions of beta
    inference: WaldInference
    level: float
    numeric: tuple[str, ...]

    def contrasts(self, method: str = "pairwise", adjust: str | None = None) -> pl.DataFrame:
        """Contrasts of the marginal means within each ``by`` group.

        Parameters
        ----------
        method : {"pairwise", "revpairwise", "trt.vs.ctrl"}
            ``pairwise``: ``a - b`` for every earlier ``a`` and later ``b`` (``pairs()``); ``revpairwise``:
            ``b - a``; ``trt.vs.ctrl``: each level minus the first.
        adjust : {"tukey", "bonferroni", "holm", "none"}, optional
            Multiplicity adjustment of ``p``; default ``tukey`` for (rev)pairwise as in emmeans and
            ``none`` for ``trt.vs.ctrl`` (emmeans would use ``dunnettx``).

        Returns
        -------
        polars.DataFrame
            ``by`` columns, ``contrast, estimate, se, df, t, p, p_adjusted``.

        Notes
        -----
        Tukey: ``p = P(Q_{k, df} > sqrt(2) |t|)`` with ``k`` means in the family (``ptukey``).

        Validated against emmeans 1.8.4 ``pairs(emmeans(m, ~ week | group, at = ...))``.
        """
        if method not in ("pairwise", "revpairwise", "trt.vs.ctrl"):
            raise ModelSpecificationError(
                f"contrast method {method!r} is not supported; use pairwise, revpairwise or trt.vs.ctrl"
            )
        adjust = adjust or ("none" if method == "trt.vs.ctrl" else "tukey")
        if adjust not in ("tukey", "bonferroni", "holm", "none"):
            raise ModelSpecificationError(f"adjust {adjust!r} is not one of tukey, bonferroni, holm, none")
        means = self.means.with_row_index("__i")
        labels = [
            " ".join(_label(c, r[c], c in self.numeric) for c in self.specs)
            for r in means.select(self.specs).iter_rows(named=True)
        ]
        frames = []
        keys = means.select(self.by).unique(maintain_order=True) if self.by else pl.DataFrame({"__all": [0]})
        for key in keys.iter_rows(named=True):
            part = means
            for c in self.by:
                part = part.filter(pl.col(c) == key[c])
            idx = part["__i"].to_list()
            if method == "pairwise":
                pairs = list(itertools.combinations(idx, 2))
            elif method == "revpairwise":
                pairs = [(b, a) for a, b in itertools.combinations(idx, 2)]
            else:
                pairs = [(b, idx[0]) for b in idx[1:]]
            if not pairs:
                continue
            mat = np.array([self.weights[a] - self.weights[b] for a, b in pairs])
            tab = self.inference.contrast(
                mat, level=self.level, labels=[f"{labels[a]} - {labels[b]}" for a, b in pairs]
            )
            k = len(idx)
            t, df, p = tab["t"].to_numpy(), tab["df"].to_numpy(), tab["p"].to_numpy()
            if adjust == "tukey":
                from scipy import stats  # noqa: PLC0415 - 0.8 s to import; only Tukey's test needs it

                padj = stats.studentized_range.sf(np.sqrt(2) * np.abs(t), k, df) if k > 2 else p
            elif adjust == "bonferroni":
                padj = np.minimum(p * len(pairs), 1.0)
            elif adjust == "holm":
                order = np.argsort(p)
                adj = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
                padj = np.empty_like(p)
                padj[order] = np.minimum(adj, 1.0)
            else:
                padj = p
            tab = tab.rename({"term": "contrast"}).with_columns(
                pl.Series("p_adjusted", np.asarray(padj, dtype=float))
            )
            for c in reversed(self.by):
                tab = tab.insert_column(0, pl.Series(c, [key[c]] * tab.height))
            frames.append(tab.drop("ci_low", "ci_high"))
        return pl.concat(frames) if frames else pl.DataFrame()

    def to_dict(self) -> list[dict[str, Any]]:
        """Rows of ``means`` as plain data."""
        return self.means.to_dicts()


def emmeans(
    model: FittedModel,
    specs: str | Sequence[str],
    by: str | Sequence[str] | None = None,
    at: Mapping[str, Sequence[Any]] | None = None,
    level: float | None = None,
) -> EmmeansResult:
    """Estimated marginal means of a fitted model (``GrowthModel`` or ``MMRM``).

    The one emmeans entry point: ``GrowthModel.emmeans``, ``MMRM.emmeans`` and ``MMRMResult.emmeans`` take
    the same arguments in the same order, ``(specs, by=None, at=None, level=None)``.

    Parameters
    ----------
    model : GrowthModel or MMRM
        A fitted model (anything with ``design_``, ``column_info_``, ``inference_`` and ``_fitted``).
    specs : str or sequence of str
        Predictors whose combinations get a mean (e.g. ``"week"`` or ``["week", "group"]``).
    by : str or sequence of str, optional
        Predictors to condition on (means and contrasts within each level).
    at : mapping, optional
        Values of predictors in the reference grid, e.g. ``{"week": [0, 6, 12, 26]}``.
    level : float, optional
        Confidence level; default the model's ``level`` if it has one, else 0.95.

    Returns
    -------
    EmmeansResult
        ``means`` has the spec/by columns and ``emmean, se, df, t, p, ci_low, ci_high``.

    Notes
    -----
    Grid row ``g`` has design row ``x_g``; the mean of cell ``c`` is ``l_c' beta`` with
    ``l_c = mean_{g in c} x_g`` (equal weights), ``se = sqrt(l_c' V l_c)``, Satterthwaite df per cell.

    Validated against emmeans 1.8.4 ``emmeans(m, ~ week, at = list(week = c(0, 6, 12, 26)),
    lmer.df = "satterthwaite")`` (``tests/reference``).
    """
    model._fitted()
    if level is None:
        level = float(getattr(model, "level", 0.95))
    return marginal_means(
        model.design_, model.column_info_, model.inference_, specs, by=by, at=at, level=level
    )


def predictor_info(design: Design, frame: pl.DataFrame) -> dict[str, tuple[str, Any]]:
    """Reference-grid defaults of every data column of the fixed part: factor levels or the numeric mean.

    Parameters
    ----------
    design : Design
        A design built (``Design.build``) on ``frame``.
    frame : polars.DataFrame
        The rows the model was fitted to (after dropping incomplete rows).
    """
    info: dict[str, tuple[str, Any]] = {}
    for var in design.formula.variables.values():
        for col in var.columns:
            if var.kind == "factor":
                info[col] = ("factor", list(var.levels))
            elif col not in info:
                info[col] = ("numeric", _column_mean(frame, col))
    return info


def _column_mean(frame: pl.DataFrame, col: str) -> float:
    """Mean of a numeric column over the fitted rows (the reference-grid default of a covariate)."""
    mean = frame[col].cast(pl.Float64).mean()
    if not isinstance(mean, float):  # no row has a value: the fitted rows are complete, so never in a fit
        raise ModelSpecificationError(f"column {col!r} has no value to average for the reference grid")
    return mean


def marginal_means(
    design: FixedDesign,
    info: Mapping[str, tuple[str, Any]],
    inference: WaldInference,
    specs: str | Sequence[str],
    by: str | Sequence[str] | None = None,
    at: Mapping[str, Sequence[Any]] | None = None,
    level: float = 0.95,
) -> EmmeansResult:
    """Marginal means for any estimator with a fixed-effects :class:`Design` and a :class:`WaldInference`.

    This is the estimator-independent core of :func:`emmeans` (a residual-covariance model supplies its own
    design, :func:`predictor_info` and inference). Arguments and result as :func:`emmeans`.
    """
    specs = [specs] if isinstance(specs, str) else list(specs)
    by_ = [] if by is None else ([by] if isinstance(by, str) else list(by))
    at = dict(at or {})
    for col in [*specs, *by_, *at]:
        if col not in info:
            raise ModelSpecificationError(
                f"{col!r} is not a predictor of the fixed part; predictors are {sorted(info)}"
            )
    cols = list(info)
    values: dict[str, list[Any]] = {}
    for col in cols:
        kind, val = info[col]
        if col in at:
            vals = list(at[col])
            if kind == "factor":
                bad = [v for v in vals if str(v) not in val]
                if bad:
                    raise ModelSpecificationError(f"levels {bad} of {col!r} are not in the data ({val})")
                vals = [str(v) for v in vals]
            else:
                vals = [float(v) for v in vals]
            values[col] = vals
        else:
            values[col] = list(val) if kind == "factor" else [val]
    combos = list(itertools.product(*(values[c] for c in cols)))
    grid = pl.DataFrame(
        {c: [row[i] for row in combos] for i, c in enumerate(cols)},
        schema={c: (pl.String if info[c][0] == "factor" else pl.Float64) for c in cols},
    )
    x = design.matrix(grid)
    keys = [*by_, *[s for s in specs if s not in by_]]
    cell = grid.select(keys).with_columns(
        pl.struct(keys).rank("dense").cast(pl.Int64).alias("__cell") if keys else pl.lit(1).alias("__cell")
    )
    cell_idx = cell["__cell"].to_numpy() - 1
    n_cells = int(cell_idx.max()) + 1
    counts = np.bincount(cell_idx, minlength=n_cells)
    weights = np.zeros((n_cells, x.shape[1]))
    np.add.at(weights, cell_idx, x)
    weights /= counts[:, None]
    first = cell.with_row_index("__r").unique("__cell", keep="first").sort("__cell")
    table = first.select(keys)
    # order as emmeans prints: by groups, then specs, in grid (level) order
    order_keys = []
    for c in keys:
        kind, _ = info[c]
        pos = {v: i for i, v in enumerate(values[c])}
        order_keys.append(np.array([pos[v] for v in table[c].to_list()]))
    order = np.lexsort(order_keys[::-1]) if order_keys else np.arange(n_cells)
    table = table[order.tolist()]
    weights = weights[order]
    tab = inference.contrast(weights, level=level)
    means = pl.concat([table, tab.drop("term").rename({"estimate": "emmean"})], how="horizontal")
    numeric = tuple(c for c in keys if info[c][0] == "numeric")
    return EmmeansResult(means, tuple(specs), tuple(by_), weights, inference, level, numeric)


def parse_emmeans_spec(text: str) -> tuple[list[str], dict[str, list[float | str]], list[str]]:
    """Parse the CLI form into specs, ``at`` values and ``by`` predictors.

    ``"week=0,6,12,26"`` -> means at those weeks; ``"group|week=0,12"`` -> means of each group by week at
    weeks 0 and 12; several predictors on one side are separated by ``;``.

    Raises
    ------
    ModelSpecificationError
        When the text is not ``name[=v1,v2,...][;name...][|name[=...];...]``.
    """
    main, _, by_txt = text.partition("|")
    at: dict[str, list[float | str]] = {}

    def side(part_text: str) -> list[str]:
        names: list[str] = []
        for part in filter(None, (p.strip() for p in part_text.split(";"))):
            name, eq, vals = part.partition("=")
            name = name.strip()
            if not name.isidentifier():
                raise ModelSpecificationError(
                    f"emmeans spec {text!r}: expected 'name=v1,v2,...' (e.g. 'week=0,6,12,26'), got {part!r}"
                )
            names.append(name)
            if eq:
                parsed: list[float | str] = []
                for v in (v.strip() for v in vals.split(",") if v.strip()):
                    try:
                        parsed.append(float(v))
                    except ValueError:
                        parsed.append(v)
                at[name] = parsed
        return names

    specs = side(main)
    by = side(by_txt)
    if not specs:
        raise ModelSpecificationError(f"emmeans spec {text!r} names no predictor")
    return specs, at, by
