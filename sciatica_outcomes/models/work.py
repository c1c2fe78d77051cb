"""Work status over time: a GLMM of "working full or modified duties" among those in paid work at enrolment.

The question a clinic asks of the Work section: are more patients back at work as the program goes on, and
does that follow their disability and their attendance? The model is a random-intercept logistic
regression (:class:`~sciatica_outcomes.models.glmm.MixedGLM`, binomial, logit link) fitted to every work
assessment of the patients in paid work (employed or self-employed) at enrolment::

    at_work ~ week + odi_10 + adherence_10 + (1 | episode_id)

    logit P(at work_ij | b_i) = beta_0 + beta_week week_ij + beta_odi (ODI_ij - 42) / 10
                                + beta_adh 10 (A_i - 0.8) + b_i,     b_i ~ N(0, sigma^2)

- ``at_work``: 1 at full duties or modified duties / reduced hours, 0 off work because of back or leg pain.
  Assessments "off work for other reasons" (holiday, another illness) say nothing about the back and are
  left out (counted in :attr:`WorkStatusModel.n_off_work_other`); so are ``not_applicable`` rows.
- ``week``: days since the episode start / 7 (:func:`~sciatica_outcomes.derive.work.work_assessments`).
- ``odi_10``: the most recent Oswestry Disability Index recorded on or before the assessment (the baseline
  ODI until the next questionnaire), per 10 points above 42 (the calibrated baseline mean).
- ``adherence_10``: the episode's completed share of its recorded sessions (``n_completed / n_scheduled``
  of :func:`~sciatica_outcomes.derive.episode_summary`), per 10 percentage points above 80 %.

Rows missing a covariate are left out and counted. With episodes from at least
:data:`~sciatica_outcomes.models.glmm.MIN_CLINICS_RANDOM` (5) clinics, episodes are nested in clinics,
``(1 | clinic_id) + (1 | episode_id)`` (Laplace), where the Laplace approximation is adequate for the data;
otherwise the clinic is omitted and the model is the episodes-only one by adaptive Gauss-Hermite
quadrature (9 nodes) (:func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics`). Which one answered is
stated in :attr:`WorkStatusModel.clinic_note` and the Methods sentence.

Conditional and marginal scales. The odds ratios are *conditional* (subject-specific): they compare two
assessments of the same patient (same ``b_i``), e.g. one week later with the same ODI. The share of patients
at work is a *population-averaged* quantity, and the population-averaged odds ratios are closer to 1 (about
``beta / sqrt(1 + 0.346 sigma^2)``; Zeger, Liang & Albert, Biometrics 1988;44:1049). The predicted share at a
visit is therefore integrated over the random effects: for the model rows ``j`` at visit ``v``,

``share_v = mean_j  integral expit(x_j' beta + b) phi(b; 0, s^2) db``

by Gauss-Hermite quadrature (20 nodes; ``s^2`` the sum of the episode and clinic variances), averaged over
the covariates of the patients assessed at that visit (so it is comparable with the observed share). Its
interval is the 2.5 and 97.5 percentiles over draws of ``(theta, beta) ~ N(estimate, 2 H^-1)``, ``H`` the
Hessian of the deviance at the optimum.

Validated against: lme4 1.1-31 ``glmer(at_work ~ week + odi_10 + adherence_10 + (1 | episode_id),
family = binomial, nAGQ = 1 and 9)`` on a committed synthetic data set (``tests/reference/work/``), and
parameter recovery against the synthetic cohort's planted GLMM (``truth["work"]["glmm"]``,
``tests/models/test_work.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl
from scipy import special

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.glmm import MIN_CLINICS_RANDOM, MixedGLM, fit_patients_in_clinics
from sciatica_outcomes.schemas.catalogs import label_for
from sciatica_outcomes.schemas.vocabulary import AT_WORK_STATUSES, OFF_WORK_BACK_LEG, PAID_WORK_STATUSES

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from sciatica_outcomes.derive import Derived

__all__ = [
    "ADHERENCE_CENTRE",
    "ODI_CENTRE",
    "WORK_STATUS_COLUMNS",
    "WORK_STATUS_FIXED",
    "WorkStatusModel",
    "work_status_frame",
    "work_status_model",
    "work_status_summary",
]

#: the ODI is centred at the calibrated baseline mean (domain.md §7, SPORT nonoperative 40.6-43.5)
ODI_CENTRE = 42.0
#: adherence is centred at 80 % of the recorded sessions completed
ADHERENCE_CENTRE = 0.8
#: response and fixed part of the model
WORK_STATUS_FIXED = "at_work ~ week + odi_10 + adherence_10"
#: the patients' random term
_PATIENT_TERM = "(1 | episode_id)"
#: columns of :func:`work_status_frame`
WORK_STATUS_COLUMNS: tuple[str, ...] = (
    "episode_id",
    "clinic_id",
    "assessed_on",
    "visit",
    "week",
    "at_work",
    "odi",
    "odi_10",
    "adherence",
    "adherence_10",
)
#: odds ratios are shown per this many weeks in the display table
PER_WEEKS = 4
#: Gauss-Hermite nodes of the population-averaged share
_GH_NODES = 20


def _term_labels(per_weeks: int = 1) -> dict[str, str]:
    """Words for the model's terms (the ODI's name from the measure catalog), time per ``per_weeks`` weeks."""
    return {
        "week": "Time since the start of the program ("
        + ("per week" if per_weeks == 1 else f"per {per_weeks} weeks")
        + ")",
        "odi_10": f"{label_for('measure', 'odi')}, most recent (per 10 points)",
        "adherence_10": "Sessions completed (per 10 percentage points)",
    }


def _outcome_label() -> str:
    """'Full duties or modified duties ...' from the work-status labels of the data guide."""
    return " or ".join(label_for("work_status", s).lower() for s in AT_WORK_STATUSES)


def work_status_frame(
    assessments: pl.DataFrame,
    outcomes: pl.DataFrame,
    episode_summary: pl.DataFrame,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The analysis frame of the work-status GLMM: one row per work assessment of a paid worker.

    Parameters
    ----------
    assessments : polars.DataFrame
        :func:`~sciatica_outcomes.derive.work.work_assessments` (``Derived.work_assessments``).
    outcomes : polars.DataFrame
        The long outcome table (``Derived.outcomes``); its ``odi`` rows give the most recent ODI.
    episode_summary : polars.DataFrame
        ``Derived.episode_summary``; ``n_completed / n_scheduled`` is the adherence.

    Returns
    -------
    frame : polars.DataFrame
        :data:`WORK_STATUS_COLUMNS`, sorted by episode and date; ``at_work`` is 0/1, ``odi`` and
        ``adherence`` may be null (the model leaves those rows out and counts them).
    counts : dict
        ``n_paid_episodes``, ``n_off_work_other`` and ``n_not_applicable`` (rows left out by status).

    Notes
    -----
    The population is the episodes whose first work assessment (the baseline one when there is one) finds
    the patient in paid work (employed or self-employed).
    """
    for name, frame, cols in (
        (
            "work assessments",
            assessments,
            ("episode_id", "clinic_id", "assessed_on", "week", "employment_status", "work_status"),
        ),
        ("outcomes", outcomes, ("episode_id", "assessed_on", "measure", "value")),
        ("episode summary", episode_summary, ("episode_id", "n_completed", "n_scheduled")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise UnusableInputError(f"the work-status model needs {name} with columns {missing}")
    first = (
        assessments.sort("episode_id", "assessed_on")
        .group_by("episode_id", maintain_order=True)
        .agg(pl.col("employment_status").first().is_in(list(PAID_WORK_STATUSES)).alias("_paid"))
        .filter(pl.col("_paid"))
        .select("episode_id")
    )
    rows = assessments.join(first, on="episode_id", how="semi")
    counts = {
        "n_paid_episodes": first.height,
        "n_off_work_other": rows.filter(pl.col("work_status") == "off_work_other").height,
        "n_not_applicable": rows.filter(
            ~pl.col("work_status").is_in([*AT_WORK_STATUSES, OFF_WORK_BACK_LEG, "off_work_other"])
        ).height,
    }
    rows = rows.filter(pl.col("work_status").is_in([*AT_WORK_STATUSES, OFF_WORK_BACK_LEG])).select(
        "episode_id",
        pl.col("clinic_id").cast(pl.String),
        pl.col("assessed_on").cast(pl.Date),
        pl.col("visit") if "visit" in assessments.columns else pl.lit(None, pl.String).alias("visit"),
        pl.col("week").cast(pl.Float64),
        pl.col("work_status").is_in(list(AT_WORK_STATUSES)).cast(pl.Int64).alias("at_work"),
    )
    odi = (
        outcomes.filter(pl.col("measure") == "odi", pl.col("value").is_not_null())
        .select(
            "episode_id", pl.col("assessed_on").cast(pl.Date), pl.col("value").cast(pl.Float64).alias("odi")
        )
        .unique(["episode_id", "assessed_on"], keep="first")
        .sort("assessed_on")
    )
    adherence = episode_summary.select(
        "episode_id",
        pl.when(pl.col("n_scheduled") > 0)
        .then(pl.col("n_completed") / pl.col("n_scheduled"))
        .cast(pl.Float64)
        .alias("adherence"),
    )
    out = (
        rows.sort("assessed_on")
        .join_asof(odi, on="assessed_on", by="episode_id", strategy="backward", check_sortedness=False)
        .join(adherence, on="episode_id", how="left")
        .with_columns(
            ((pl.col("odi") - ODI_CENTRE) / 10.0).alias("odi_10"),
            (10.0 * (pl.col("adherence") - ADHERENCE_CENTRE)).alias("adherence_10"),
        )
        .sort("episode_id", "assessed_on")
    )
    return out.select(WORK_STATUS_COLUMNS), counts


@dataclass(frozen=True)
class WorkStatusModel:
    """The work-status GLMM as data: odds ratios, the predicted share at work by visit, diagnostics.

    Attributes
    ----------
    status : {"estimated", "not_yet_estimable", "not_recorded"}
        Fitted; too few data (``reason`` says which); or no work assessments of paid workers.
    reason : str
        Why the model was not fitted (empty when it was).
    odds_ratios : polars.DataFrame
        ``term, label, estimate, se, odds_ratio, ci_low, ci_high, p`` (conditional odds ratios per unit of
        the term: per week, per 10 ODI points, per 10 percentage points of sessions completed) without the
        intercept.
    fixed_effects, variance_components : polars.DataFrame
        :class:`~sciatica_outcomes.models.glmm.GLMMResult` ``fixed_effects`` (log odds) and ``VarCorr``.
    shares : polars.DataFrame
        ``visit, target_week, n_assessments, observed_share, predicted_share, ci_low, ci_high``:
        population-averaged predicted share at work among the paid workers assessed at each visit.
    diagnostics : dict
        ``converged, singular, separation, separated_terms, gradient_norm, n_evaluations, messages,
        approximation, with_clinics``.
    formula, clinic_note : str
        The model fitted, and a sentence on how clinics entered it.
    n_episodes, n_assessments, n_off_work_other, n_missing_covariate : int
        Episodes and rows in the model; rows left out as off work for other reasons or for a missing ODI
        or adherence.
    rows : polars.DataFrame
        The model's rows (:func:`work_status_frame` columns, complete cases): episode-level data, for
        checks and further models, never for display.
    model : MixedGLM or None
        The fitted estimator.
    """

    status: Literal["estimated", "not_yet_estimable", "not_recorded"]
    reason: str
    odds_ratios: pl.DataFrame
    fixed_effects: pl.DataFrame
    variance_components: pl.DataFrame
    shares: pl.DataFrame
    diagnostics: dict[str, Any]
    formula: str
    clinic_note: str
    n_episodes: int
    n_assessments: int
    n_off_work_other: int
    n_missing_covariate: int
    rows: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)
    model: MixedGLM | None = field(default=None, repr=False, compare=False)

    def plot(self, ax: Axes | None = None, shares: pl.DataFrame | None = None) -> Axes:
        """Share at work by visit: the population-averaged prediction with its interval, and the observed.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Where to draw (a new figure otherwise).
        shares : polars.DataFrame, optional
            The shares to draw, e.g. after an audience's suppression (an observed share that is null is not
            drawn); defaults to :attr:`shares`.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt  # noqa: PLC0415 - plotting is optional at import time

        s = self.shares if shares is None else shares
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        week = s["target_week"].to_numpy()
        pred = s["predicted_share"].to_numpy()
        ax.fill_between(
            week, s["ci_low"].to_numpy(), s["ci_high"].to_numpy(), alpha=0.25, label="model 95% CI"
        )
        ax.plot(week, pred, marker="o", label="model (population-averaged)")
        obs = s.filter(pl.col("observed_share").is_not_null())
        ax.scatter(
            obs["target_week"].to_numpy(),
            obs["observed_share"].to_numpy(),
            marker="x",
            color="black",
            label="observed",
            zorder=3,
        )
        ax.set_xlabel("weeks since the start of the program")
        ax.set_ylabel("share at work (full or modified duties)")
        ax.set_ylim(0.0, 1.0)
        ax.legend(loc="lower right", frameon=False)
        return ax

    def methods(self) -> str:
        """One sentence of Methods text for a report (no counts: those go through the audience rule)."""
        if self.status != "estimated":
            return (
                "Work status over time was to be modelled with a mixed-effects logistic regression; "
                f"it was not fitted: {self.reason}."
            )
        approx = self.diagnostics["approximation"]
        nested = " nested in clinics" if self.diagnostics["with_clinics"] else ""
        off = label_for("work_status", OFF_WORK_BACK_LEG).lower()
        return (
            f"Work status ({_outcome_label()}, against {off}) "
            "of patients in paid work at enrolment was modelled with a mixed-effects logistic regression on "
            "time since the start, the most recent Oswestry Disability Index and the share of sessions "
            f"completed, with a random intercept per episode{nested} ({approx}; {self.clinic_note}); odds "
            "ratios are conditional on the patient, and the predicted shares at work are averaged over "
            "patients by Gauss-Hermite quadrature over the random effects"
            + (
                "."
                if self.diagnostics["converged"]
                else "; the optimizer's convergence checks failed, so the estimates are provisional."
            )
        )


def _empty(
    status: Literal["not_yet_estimable", "not_recorded"],
    reason: str,
    counts: dict[str, int],
    n_episodes: int,
    n_rows: int,
    n_missing: int,
) -> WorkStatusModel:
    return WorkStatusModel(
        status=status,
        reason=reason,
        odds_ratios=pl.DataFrame(
            schema={
                "term": pl.String,
                "label": pl.String,
                "estimate": pl.Float64,
                "se": pl.Float64,
                "odds_ratio": pl.Float64,
                "ci_low": pl.Float64,
                "ci_high": pl.Float64,
                "p": pl.Float64,
            }
        ),
        fixed_effects=pl.DataFrame(),
        variance_components=pl.DataFrame(),
        shares=pl.DataFrame(
            schema={
                "visit": pl.String,
                "target_week": pl.Float64,
                "n_assessments": pl.Int64,
                "observed_share": pl.Float64,
                "predicted_share": pl.Float64,
                "ci_low": pl.Float64,
                "ci_high": pl.Float64,
            }
        ),
        diagnostics={},
        formula=f"{WORK_STATUS_FIXED} + {_PATIENT_TERM}",
        clinic_note="",
        n_episodes=n_episodes,
        n_assessments=n_rows,
        n_off_work_other=counts.get("n_off_work_other", 0),
        n_missing_covariate=n_missing,
    )


def work_status_model(
    frame: pl.DataFrame,
    *,
    counts: Mapping[str, int] | None = None,
    clinics: bool = True,
    nagq: int = 9,
    level: float = 0.95,
    n_draws: int = 400,
    seed: int = 0,
    config: ClinicalConfig | None = None,
) -> WorkStatusModel:
    """Fit the work-status GLMM to :func:`work_status_frame` and return its answer as data.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`work_status_frame` (:data:`WORK_STATUS_COLUMNS`).
    counts : mapping, optional
        The counts :func:`work_status_frame` returned (for ``n_off_work_other``).
    clinics : bool
        Nest episodes in clinics where :func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics`
        allows (False: always the episodes-only model).
    nagq : int
        Quadrature nodes of the episodes-only model (1 = Laplace).
    level : float
        Confidence level of the odds-ratio intervals and of the predicted shares.
    n_draws, seed : int
        Draws of the parameters for the interval of the predicted shares, and their seed.
    config : ClinicalConfig, optional
        ``min_episodes_followed``: fewest episodes for a fit.

    Returns
    -------
    WorkStatusModel
        ``status = "not_recorded"`` without rows, ``"not_yet_estimable"`` with fewer than
        ``min_episodes_followed`` episodes or without both outcomes (everyone at work or everyone off);
        otherwise the fit, with convergence and separation diagnostics as data.

    Notes
    -----
    ``logit P(at work_ij | b_i) = x_ij' beta + b_i`` (module docstring). ``predicted_share_v = mean_j
    sum_k w_k expit(x_j' beta + sqrt(2) s z_k) / sqrt(pi)`` over the rows ``j`` at visit ``v`` (Gauss-Hermite
    nodes ``z_k``, weights ``w_k``; ``s^2`` the total random-intercept variance).

    Validated against lme4 1.1-31 ``glmer(..., family = binomial, nAGQ = 1, 9)`` (``tests/reference/work/``)
    and recovery of the synthetic cohort's planted parameters (``tests/models/test_work.py``).
    """
    config = config or ClinicalConfig()
    counts = dict(counts or {})
    missing = [c for c in WORK_STATUS_COLUMNS if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"work_status_model needs the columns of work_status_frame; missing {missing}"
        )
    complete = frame.drop_nulls(["at_work", "week", "odi_10", "adherence_10"])
    n_missing = frame.height - complete.height
    n_ep = complete["episode_id"].n_unique()
    if frame.height == 0:
        return _empty(
            "not_recorded", "no work assessments of patients in paid work at enrolment", counts, 0, 0, 0
        )
    if n_ep < config.min_episodes_followed:
        return _empty(
            "not_yet_estimable",
            f"fewer than {config.min_episodes_followed} episodes have a work assessment with an ODI and "
            "session records",
            counts,
            n_ep,
            complete.height,
            n_missing,
        )
    if complete["at_work"].n_unique() < 2:
        return _empty(
            "not_yet_estimable",
            "every assessment has the same work status, so there is nothing to model",
            counts,
            n_ep,
            complete.height,
            n_missing,
        )
    no_clinic = complete["clinic_id"].null_count()
    use_clinics = clinics and no_clinic == 0
    data = complete if use_clinics else complete.drop("clinic_id")
    try:
        model, with_clinics = fit_patients_in_clinics(
            WORK_STATUS_FIXED,
            _PATIENT_TERM,
            data,
            clinic="clinic_id",
            nagq=nagq,
            family="binomial",
            level=level,
        )
    except ModelSpecificationError as exc:  # e.g. every patient with the same adherence: a data answer
        return _empty("not_yet_estimable", str(exc), counts, n_ep, complete.height, n_missing)
    n_clinics = complete["clinic_id"].n_unique()
    if with_clinics:
        clinic_note = f"episodes nested in {n_clinics} clinics, each with its own random intercept"
    elif not clinics:
        clinic_note = "clinics not modelled (by request)"
    elif no_clinic:
        clinic_note = f"clinic omitted: {no_clinic} assessment(s) have no clinic"
    elif n_clinics < MIN_CLINICS_RANDOM:
        clinic_note = (
            f"clinic omitted: {n_clinics} clinic(s), and a clinic random intercept needs at least "
            f"{MIN_CLINICS_RANDOM}"
        )
    else:
        clinic_note = (
            "clinic omitted: the Laplace approximation a model with clinics needs does not agree with "
            "quadrature on these data, or that model did not converge"
        )
    r = model.result_
    fixed = r.fixed_effects
    labels = _term_labels()
    odds = fixed.filter(pl.col("term") != "(Intercept)").select(
        "term",
        pl.col("term").replace_strict(labels, default=pl.col("term")).alias("label"),
        "estimate",
        "se",
        pl.col("estimate").exp().alias("odds_ratio"),
        pl.col("ci_low").exp(),
        pl.col("ci_high").exp(),
        "p",
    )
    sep = r.separation
    diagnostics = {
        "converged": r.converged,
        "singular": r.diagnostics.singular,
        "separation": bool(sep is not None and sep.separated),
        "separated_terms": sorted(sep.infinite) if sep is not None and sep.separated else [],
        "gradient_norm": r.diagnostics.gradient_norm,
        "n_evaluations": r.diagnostics.n_evaluations,
        "messages": list(r.diagnostics.messages),
        "approximation": r.method,
        "with_clinics": with_clinics,
    }
    shares = _shares(model, complete, level, n_draws, seed)
    return WorkStatusModel(
        status="estimated",
        reason="",
        odds_ratios=odds,
        fixed_effects=fixed,
        variance_components=r.random_effects,
        shares=shares,
        diagnostics=diagnostics,
        formula=r.formula,
        clinic_note=clinic_note,
        n_episodes=n_ep,
        n_assessments=complete.height,
        n_off_work_other=counts.get("n_off_work_other", 0),
        n_missing_covariate=n_missing,
        rows=complete,
        model=model,
    )


def _shares(model: MixedGLM, data: pl.DataFrame, level: float, n_draws: int, seed: int) -> pl.DataFrame:
    """Observed and population-averaged predicted share at work per visit, with a simulation interval."""
    rows = data.filter(pl.col("visit").is_not_null())
    if rows.height == 0:
        rows = data.with_columns(pl.col("week").round(0).cast(pl.Int64).cast(pl.String).alias("visit"))
    x = model.design_.matrix(rows)
    n_theta = model.engine_.n_theta
    par = model.par_
    check = model.optimum_.check
    free = check["free"]
    cov = np.zeros((free.shape[0], free.shape[0]))
    cov[np.ix_(free, free)] = np.linalg.pinv(check["hessian"][np.ix_(free, free)] / 2.0)
    draws = np.random.default_rng(seed).multivariate_normal(par, cov, n_draws)
    z_k, w_k = np.polynomial.hermite.hermgauss(_GH_NODES)

    def predicted(theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(draws, rows) population-averaged probabilities for each row of ``(theta, beta)``."""
        sd = np.sqrt(np.sum(theta**2, axis=1))  # total SD of the random intercepts (Lambda = diag(theta))
        eta = beta @ x.T
        nodes = eta[:, :, None] + math.sqrt(2.0) * sd[:, None, None] * z_k[None, None, :]
        out: np.ndarray = (special.expit(nodes) * w_k).sum(axis=2) / math.sqrt(math.pi)
        return out

    order = (
        rows.group_by("visit")
        .agg(pl.col("week").median().alias("_median"))
        .with_columns(
            pl.col("visit").str.extract(r"^w(\d+(?:\.\d+)?)$").cast(pl.Float64).alias("_target"),
        )
        .with_columns(pl.coalesce("_target", "_median").alias("target_week"))
        .sort("target_week")
    )
    visits = order["visit"].to_list()
    k = len(visits)
    g = rows["visit"].replace_strict(visits, list(range(k)), return_dtype=pl.Int64).to_numpy()
    n_v = np.bincount(g, minlength=k).astype(np.float64)
    onehot = (g[None, :] == np.arange(k)[:, None]).astype(np.float64)  # visits x rows

    def visit_means(theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """(draws, visits) mean predicted share, in chunks of draws so that memory stays bounded."""
        out = np.empty((beta.shape[0], k))
        step = max(1, 4_000_000 // max(x.shape[0] * _GH_NODES, 1))
        for a in range(0, beta.shape[0], step):  # chunks of draws, each vectorised over rows and nodes
            out[a : a + step] = predicted(theta[a : a + step], beta[a : a + step]) @ onehot.T / n_v
        return out

    pred = visit_means(par[None, :n_theta], par[None, n_theta:])[0]
    pred_d = visit_means(np.abs(draws[:, :n_theta]), draws[:, n_theta:])
    alpha = (1.0 - level) / 2.0
    obs = np.bincount(g, weights=rows["at_work"].cast(pl.Float64).to_numpy(), minlength=k) / n_v
    target = order["target_week"].to_list()
    return pl.DataFrame(
        {
            "visit": visits,
            "target_week": target,
            "n_assessments": n_v.astype(np.int64),
            "observed_share": obs,
            "predicted_share": pred,
            "ci_low": np.quantile(pred_d, alpha, axis=0),
            "ci_high": np.quantile(pred_d, 1.0 - alpha, axis=0),
        }
    )


def work_status_summary(
    source: Derived | Mapping[str, pl.DataFrame] | str | Path,
    *,
    config: ClinicalConfig | None = None,
    clinics: bool = True,
    nagq: int = 9,
) -> tuple[pl.DataFrame, str, WorkStatusModel]:
    """The cohort report's entry point: a display-ready table of the work-status GLMM and its Methods text.

    Parameters
    ----------
    source : Derived, mapping of canonical tables, or str / Path of a DuckDB store
        Derived frames (``derive_all``), or what ``derive_all`` accepts.
    config : ClinicalConfig, optional
        Passed to ``derive_all`` and the model.
    clinics : bool
        Nest episodes in clinics where the rule allows.
    nagq : int
        Quadrature nodes of the episodes-only model (1 = Laplace).

    Returns
    -------
    table : polars.DataFrame
        ``Term, Odds ratio, 95% CI, p``: one row per term with words from the catalogs (time per
        :data:`PER_WEEKS` weeks: ``exp(4 beta_week)``), then the episode SD on the log-odds scale; empty
        when the model was not fitted. No counts (the report shows them through its audience rule from
        ``model.n_episodes`` and ``model.n_assessments``).
    methods : str
        One sentence for the Methods section (or why the model was not fitted).
    model : WorkStatusModel
        The full answer (shares by visit, diagnostics).
    """
    from sciatica_outcomes.derive import Derived, derive_all  # noqa: PLC0415 - derive only when called

    derived = source if isinstance(source, Derived) else derive_all(source, config)
    frame, counts = work_status_frame(derived.work_assessments, derived.outcomes, derived.episode_summary)
    fitted = work_status_model(
        frame, counts=counts, clinics=clinics, nagq=nagq, config=config or derived.config
    )
    pct = f"{fitted.model.level:.0%}" if fitted.model is not None else "95%"
    header = ("Term", "Odds ratio", f"{pct} CI", "p")
    if fitted.status != "estimated":
        return pl.DataFrame(schema=dict.fromkeys(header, pl.String)), fitted.methods(), fitted
    scale = pl.when(pl.col("term") == "week").then(float(PER_WEEKS)).otherwise(1.0)
    rows = fitted.odds_ratios.select(
        pl.col("term").replace_strict(_term_labels(PER_WEEKS), default=pl.col("label")).alias("label"),
        (pl.col("estimate") * scale).exp().alias("or"),
        (pl.col("ci_low").log() * scale).exp().alias("lo"),
        (pl.col("ci_high").log() * scale).exp().alias("hi"),
        "p",
    )
    sd = fitted.variance_components.filter(pl.col("group") == "episode_id")["sd"][0]
    table = rows.select(
        pl.col("label").alias(header[0]),
        pl.col("or").map_elements(lambda v: f"{v:.2f}", return_dtype=pl.String).alias(header[1]),
        pl.format("{} to {}", pl.col("lo").round(2), pl.col("hi").round(2)).alias(header[2]),
        pl.when(pl.col("p") < 0.001)
        .then(pl.lit("< 0.001"))
        .otherwise(pl.col("p").round(3).cast(pl.String))
        .alias(header[3]),
    )
    extra = pl.DataFrame(
        {
            header[0]: ["Between-patient SD (log odds)"],
            header[1]: [f"{sd:.2f}"],
            header[2]: [""],
            header[3]: [""],
        }
    )
    return pl.concat([table, extra]), fitted.methods(), fitted
