"""Risk-adjusted comparison of clinics or therapists: observed minus expected, funnel limits, shrinkage.

The idea of FOTO's predicted outcome and MIPS 220 (domain.md §4): each episode's improvement is compared
with the improvement expected from its case mix; a provider's mean residual (observed - expected) is
plotted against its volume inside funnel control limits, and ranked only after shrinkage so that a clinic
with 12 patients is not ranked on noise (between-therapist ICC 0.08-0.30, Verburg et al. 2021).

Case-mix model (documented and configurable, :data:`DEFAULT_CASE_MIX`)::

    improvement ~ baseline + age_at_start + log(symptom_duration_weeks) + sex + affected_side

``improvement`` is the change from baseline signed so that positive = better (ODI 50 -> 38 is +12), at one
follow-up visit, as :func:`~sciatica_outcomes.scoring.change_from_baseline` computes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import stats

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.defaults import DEFAULT_CASE_MIX
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.formula import Design, ModelFormula, parse_formula
from sciatica_outcomes.models.lmm import GrowthModel
from sciatica_outcomes.models.responders import responder_frame

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DEFAULT_CASE_MIX",
    "FUNNEL_LEVELS",
    "ProviderComparison",
    "case_mix_complete",
    "compare_clinics_and_therapists",
    "compare_providers",
    "episode_outcomes",
]

#: Two-sided levels of the funnel's control limits, with the column suffix they carry: 95 % and 99.8 %
#: (Spiegelhalter, Stat Med 2005;24:1185: "2 and 3 sigma" limits).
FUNNEL_LEVELS: tuple[tuple[float, str], ...] = ((0.95, "95"), (0.998, "998"))

#: Default case-mix formula: baseline severity, age, symptom duration, sex and affected side.


def episode_outcomes(
    tables: Mapping[str, pl.DataFrame], measure: str, visit: str = "w12", config: ClinicalConfig | None = None
) -> pl.DataFrame:
    """One row per episode with the improvement at ``visit`` and the episode's case-mix columns.

    Parameters
    ----------
    tables : mapping
        Canonical tables (``episodes``, ``measures``).
    measure : str
        Outcome measure, e.g. ``"odi"``.
    visit : str
        Follow-up visit label (``ClinicalConfig.visit_windows``).
    config : ClinicalConfig, optional
        Visit windows.

    Returns
    -------
    polars.DataFrame
        ``episode_id, clinic_id, therapist_id, ..., baseline, value, improvement, censored`` for episodes
        assessed at the visit (capped tolerance tests keep ``censored = true``; see
        :func:`compare_providers`).
    """
    frame = responder_frame(tables, measure, config)
    out = frame.filter(pl.col("visit") == visit)
    if out.height == 0:
        raise UnusableInputError(
            f"no {measure} assessment at visit {visit!r}; visits present: "
            f"{sorted(frame['visit'].unique().to_list())}"
        )
    return out


@dataclass(frozen=True)
class ProviderComparison:
    """Observed minus expected by provider, with funnel limits and shrunken estimates.

    Attributes
    ----------
    providers : polars.DataFrame
        One row per provider: ``provider, n, observed, expected, o_minus_e, se, z, limit95, limit998, band,
        shrunken, shrunken_sd, shrunken_low, shrunken_high, rank_shrunken``.
    case_mix : polars.DataFrame
        Case-mix coefficients (``term, estimate, se``) of the OLS model giving the expected improvement.
    residual_sd : float
        Residual SD of the case-mix model (the funnel's within-provider SD).
    between_sd : float
        Between-provider SD of the random-intercept model used for shrinkage.
    diagnostics : dict
        Rows used and dropped (with reasons), case-mix formula, level, convergence of the shrinkage model.
    """

    level: str
    providers: pl.DataFrame
    case_mix: pl.DataFrame
    residual_sd: float
    between_sd: float
    diagnostics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {
            "level": self.level,
            "providers": self.providers.to_dicts(),
            "case_mix": self.case_mix.to_dicts(),
            "residual_sd": self.residual_sd,
            "between_sd": self.between_sd,
            "diagnostics": self.diagnostics,
        }

    def funnel_limits(self, n: Sequence[float] | FloatArray) -> pl.DataFrame:
        """The funnel's control limits at the given volumes.

        Returns
        -------
        polars.DataFrame
            ``n, lo95, hi95, lo998, hi998``: ``+- z * residual_sd / sqrt(n)`` with ``z`` the standard normal
            quantile of each two-sided level of :data:`FUNNEL_LEVELS` (1.96 and 3.09).
        """
        frame = pl.DataFrame({"n": np.asarray(n, dtype=np.float64)})
        half_width = self.residual_sd / pl.col("n").sqrt()
        return frame.with_columns(
            expr
            for level, suffix in FUNNEL_LEVELS
            for expr in (
                (-float(stats.norm.ppf(0.5 + level / 2)) * half_width).alias(f"lo{suffix}"),
                (float(stats.norm.ppf(0.5 + level / 2)) * half_width).alias(f"hi{suffix}"),
            )
        )

    def funnel(self, ax: Axes | None = None) -> Axes:
        """Funnel plot: O - E against volume with 95 % and 99.8 % limits; returns the axes."""
        import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        p = self.providers
        n_max = max(int(p["n"].to_numpy().max()), 2)
        limits = self.funnel_limits(np.linspace(1, n_max * 1.05, 200))
        for (_, suffix), style in zip(FUNNEL_LEVELS, ("--", ":"), strict=True):
            ax.plot(limits["n"], limits[f"hi{suffix}"], "k" + style, lw=1)
            ax.plot(limits["n"], limits[f"lo{suffix}"], "k" + style, lw=1)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.scatter(p["n"], p["o_minus_e"], zorder=3)
        ax.set_xlabel("episodes")
        ax.set_ylabel("observed - expected improvement")
        return ax


def _band(z: FloatArray) -> FloatArray:
    z95, z998 = stats.norm.ppf(0.975), stats.norm.ppf(0.999)
    return np.select(
        [z > z998, z > z95, z < -z998, z < -z95],
        ["above 99.8%", "above 95%", "below 99.8%", "below 95%"],
        "within 95%",
    )


def _case_mix_design(
    formula: ModelFormula, data: pl.DataFrame
) -> tuple[Design, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Design, X, response and the mask of complete rows (finite response and covariates) of a case mix."""
    design, x = Design.build(formula, data)
    y = design.response(data)
    ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
    return design, x, y, ok


def case_mix_complete(frame: pl.DataFrame, case_mix: str = DEFAULT_CASE_MIX) -> npt.NDArray[np.bool_]:
    """Which rows :func:`compare_providers` uses: a finite improvement and every case-mix covariate.

    Parameters
    ----------
    frame : polars.DataFrame
        Rows with the case-mix formula's columns (e.g. :func:`episode_outcomes`, or
        :func:`~sciatica_outcomes.models.responders.responder_frame` at any visit).
    case_mix : str
        Case-mix formula (R syntax).

    Returns
    -------
    numpy.ndarray of bool
        True where the row enters the comparison (its provider aside): the count behind a unit's ``n``.

    Raises
    ------
    UnusableInputError
        When the formula needs a column the frame does not have.
    """
    formula = parse_formula(case_mix)
    missing = [c for c in formula.columns() if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"case-mix formula {case_mix!r} needs columns {missing} the data do not have"
        )
    return _case_mix_design(formula, frame)[3]


def compare_providers(
    frame: pl.DataFrame,
    level: str = "clinic_id",
    case_mix: str = DEFAULT_CASE_MIX,
    min_n: int = 1,
    shrinkage_level: float = 0.95,
) -> ProviderComparison:
    """Risk-adjusted comparison of providers (clinics or therapists).

    Parameters
    ----------
    frame : polars.DataFrame
        One row per episode (e.g. :func:`episode_outcomes`) with the case-mix formula's columns and
        ``level``.
    level : str
        Provider column (``clinic_id`` or ``therapist_id``).
    case_mix : str
        Case-mix formula (R syntax, response = improvement); see :data:`DEFAULT_CASE_MIX`.
    min_n : int
        Providers with fewer episodes are kept in the table but not given a funnel band (``band`` =
        ``"n < min_n"``).
    shrinkage_level : float
        Level of the interval of the shrunken estimate.

    Returns
    -------
    ProviderComparison

    Notes
    -----
    Expected improvement ``E_i = x_i' b`` from OLS of the case-mix model over all episodes; residual
    ``r_i = O_i - E_i``, ``s^2 = sum r_i^2 / (n - p)``. Provider ``j``: ``O - E = mean_j r_i``, ``se_j =
    s / sqrt(n_j)``, ``z_j = (O - E) / se_j``; funnel limits ``+- 1.96 s / sqrt(n)`` (95 %) and ``+- 3.09 s
    / sqrt(n)`` (99.8 %). Shrinkage: the random-intercept model ``improvement ~ case mix + (1 | provider)``
    (REML); the shrunken effect is its BLUP ``b_j = tau^2 / (tau^2 + sigma^2 / n_j) x mean_j(y - X beta)``
    with conditional SD ``sqrt(tau^2 sigma^2 / (sigma^2 + n_j tau^2))``; providers are ranked on it.
    Capped (censored) tolerance outcomes are refused: their improvement is a bound, not a value.

    Validated against: the growth-model engine's ``lme4::lmer(y ~ x + (1 | g))`` BLUPs and conditional SDs
    (``ranef(condVar = TRUE)``); recovery of known provider effects in ``tests/models/test_compare.py``.
    """
    if level not in frame.columns:
        raise UnusableInputError(f"provider column {level!r} is not in the data; available: {frame.columns}")
    if "censored" in frame.columns and frame["censored"].fill_null(False).any():
        raise ModelSpecificationError(
            "the outcome has capped (censored) tests; their improvement is a lower bound, so observed - "
            "expected would be biased. Compare a questionnaire or pain outcome instead"
        )
    formula = parse_formula(case_mix)
    if formula.random:
        raise ModelSpecificationError(f"case-mix formula {case_mix!r} must not have random terms")
    missing = [c for c in formula.columns() if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"case-mix formula {case_mix!r} needs columns {missing} the data do not have"
        )
    n_in = frame.height
    data = frame.filter(pl.col(level).is_not_null())
    no_provider = n_in - data.height
    design, x, y, ok = _case_mix_design(formula, data)
    data, x, y = data.filter(pl.Series(ok)), x[ok], y[ok]
    n, p = x.shape
    if n <= p:
        raise UnusableInputError(f"{n} complete episodes for {p} case-mix coefficients; need more episodes")
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    expected = x @ beta
    resid = y - expected
    s2 = float(resid @ resid / (n - p))
    xtx_inv = np.linalg.pinv(x.T @ x)
    case_tab = pl.DataFrame(
        {"term": design.column_names, "estimate": beta, "se": np.sqrt(np.diag(xtx_inv) * s2)}
    )
    per = (
        data.select(pl.col(level).cast(pl.String).alias("provider"))
        .with_columns(pl.Series("obs", y), pl.Series("exp", expected), pl.Series("res", resid))
        .group_by("provider")
        .agg(
            pl.len().alias("n"),
            pl.col("obs").mean().alias("observed"),
            pl.col("exp").mean().alias("expected"),
            pl.col("res").mean().alias("o_minus_e"),
        )
        .sort("provider")
    )
    sd = np.sqrt(s2)
    nj = per["n"].to_numpy().astype(float)
    oe = per["o_minus_e"].to_numpy()
    se = sd / np.sqrt(nj)
    z = oe / se
    band = np.where(nj >= min_n, _band(z), f"n < {min_n}")
    # shrinkage: random intercept per provider on top of the case mix (REML)
    rhs = case_mix.split("~", 1)[1]
    shrink_frame = data.with_columns(pl.col(level).cast(pl.String).alias("__provider"))
    gm = GrowthModel(f"{formula.response_label} ~ {rhs} + (1 | __provider)").fit(shrink_frame)
    blup = gm.ranef()["__provider"].rename({"__provider": "provider"})
    blup = blup.select(
        "provider",
        pl.col("(Intercept)").alias("shrunken"),
        pl.col("(Intercept)__cond_sd").alias("shrunken_sd"),
    )
    vc = gm.variance_components
    between = float(vc.filter(pl.col("group") == "__provider")["sd"][0])
    zq = stats.norm.ppf(0.5 + shrinkage_level / 2)
    out = (
        per.with_columns(
            pl.Series("se", se),
            pl.Series("z", z),
            pl.Series("limit95", stats.norm.ppf(0.975) * se),
            pl.Series("limit998", stats.norm.ppf(0.999) * se),
            pl.Series("band", band),
        )
        .join(blup, on="provider", how="left")
        .with_columns(
            (pl.col("shrunken") - zq * pl.col("shrunken_sd")).alias("shrunken_low"),
            (pl.col("shrunken") + zq * pl.col("shrunken_sd")).alias("shrunken_high"),
        )
        .with_columns(
            pl.col("shrunken").rank("ordinal", descending=True).cast(pl.Int64).alias("rank_shrunken")
        )
        .sort("rank_shrunken")
    )
    diagnostics = {
        "case_mix": case_mix,
        "level": level,
        "rows_in": n_in,
        "rows_used": n,
        "dropped_missing_provider": no_provider,
        "dropped_missing_case_mix": int((~ok).sum()),
        "shrinkage_model": gm.result_.formula,
        "shrinkage_converged": gm.result_.converged,
        "shrinkage_messages": list(gm.result_.diagnostics.messages),
    }
    return ProviderComparison(level, out, case_tab, sd, between, diagnostics)


def compare_clinics_and_therapists(
    frame: pl.DataFrame,
    case_mix: str = DEFAULT_CASE_MIX,
    levels: Sequence[str] = ("clinic_id", "therapist_id"),
) -> dict[str, ProviderComparison]:
    """:func:`compare_providers` at each level present in ``frame`` (clinic, therapist)."""
    return {lv: compare_providers(frame, lv, case_mix) for lv in levels if lv in frame.columns}
