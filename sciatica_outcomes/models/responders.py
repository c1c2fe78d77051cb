"""Responder analysis: the share of patients reaching a clinically important improvement at each visit.

Two estimates are reported side by side, each with its assumption stated in the output:

- **observed**: responders among patients assessed at the visit, with Wilson score intervals (valid if the
  patients assessed are representative of all patients: missing completely at random);
- **model-based**: the share among *all* patients with a baseline, from an MMRM of the change from
  baseline (``change ~ visit * baseline``, unstructured covariance): each patient's change at the visit is
  normal with the model's mean and visit variance, so ``P(responder) = Phi((d m_iv - c_i) / s_v)``,
  averaged over patients (valid under missing at random and multivariate normal changes).

Responder thresholds come from :class:`~sciatica_outcomes.config.ClinicalConfig` (MCID absolute points and
relative 30 %); calls on capped tolerance tests follow
:func:`~sciatica_outcomes.scoring.change_from_baseline`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy import special, stats

from sciatica_outcomes._typing import FloatArray
from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import ModelSpecificationError, UnusableInputError
from sciatica_outcomes.models.mmrm import MMRM, _sigma
from sciatica_outcomes.schemas.catalogs import measure_catalog
from sciatica_outcomes.scoring import BASELINE_LABEL, assign_visits, change_from_baseline

__all__ = [
    "GLMM_ASSUMPTION",
    "MODEL_ASSUMPTION",
    "OBSERVED_ASSUMPTION",
    "RESPONDER_DEFINITIONS",
    "glmm_responders",
    "model_based_responders",
    "observed_responders",
    "responder_analysis",
    "responder_frame",
    "wilson_interval",
]

OBSERVED_ASSUMPTION = (
    "observed: responders among patients assessed at the visit; represents all patients only if missed "
    "assessments are unrelated to outcome (missing completely at random)"
)
MODEL_ASSUMPTION = (
    "model-based: MMRM of change ~ visit * baseline (unstructured covariance, REML) over all patients with a "
    "baseline; assumes missing at random given baseline and earlier observed changes, and multivariate "
    "normal changes"
)

GLMM_ASSUMPTION = (
    "model-based (GLMM): logistic mixed model of the responder call ~ visit + baseline with a random "
    "intercept per episode (adaptive Gauss-Hermite, 9 nodes), averaged over all patients with a baseline; "
    "assumes missing at random given baseline and the episode's other observed calls (a sensitivity analysis "
    "to the MMRM, which uses the continuous changes)"
)

#: The two responder definitions and the column of their call in :func:`responder_frame`'s output.
RESPONDER_DEFINITIONS: Mapping[str, str] = {"mcid": "responder_mcid", "relative": "responder_relative"}


def wilson_interval(successes: Any, trials: Any, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval of binomial proportions (vectorised).

    Parameters
    ----------
    successes, trials : array_like
        Counts (``trials`` > 0 gives a finite interval; 0 gives NaN).
    level : float
        Confidence level.

    Returns
    -------
    low, high : numpy.ndarray

    Notes
    -----
    With ``p = k / n`` and ``z = Phi^-1(1 - a/2)``::

        centre = (p + z^2 / 2n) / (1 + z^2 / n),  half = z sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)

    Validated against: ``prop.test(k, n, correct = FALSE)$conf.int`` (R stats).
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = stats.norm.ppf(0.5 + level / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def responder_frame(
    tables: Mapping[str, pl.DataFrame], measure: str, config: ClinicalConfig | None = None
) -> pl.DataFrame:
    """Visits, baseline, change and responder calls of one measure, from the canonical tables.

    Parameters
    ----------
    tables : mapping
        Needs ``episodes`` (``episode_id, start_date``) and ``measures``; other episode columns (clinic,
        therapist, covariates) are carried along.
    measure : str
        Measure code, e.g. ``"odi"``.
    config : ClinicalConfig, optional
        Visit windows and MCIDs.

    Returns
    -------
    polars.DataFrame
        Rows of the measure at a labelled visit, with the columns of
        :func:`~sciatica_outcomes.scoring.change_from_baseline` and the episode columns.
    """
    for name in ("episodes", "measures"):
        if name not in tables:
            raise UnusableInputError(f"responder analysis needs the {name!r} table; got {sorted(tables)}")
    meas = tables["measures"].filter(pl.col("measure") == measure)
    if meas.height == 0:
        raise UnusableInputError(f"no rows of measure {measure!r} in the measures table")
    ep = tables["episodes"]
    long = assign_visits(meas.join(ep.select("episode_id", "start_date"), on="episode_id"), config)
    long = change_from_baseline(long.filter(pl.col("visit").is_not_null()), config)
    return long.join(ep.drop("start_date"), on="episode_id", how="left")


def _check(frame: pl.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise UnusableInputError(
            f"responder analysis needs columns {list(cols)}; missing {missing} (build the frame with "
            "responder_frame() or scoring.change_from_baseline())"
        )


def observed_responders(
    frame: pl.DataFrame, by: str | Sequence[str] | None = None, level: float = 0.95
) -> pl.DataFrame:
    """Share of responders among patients assessed at each follow-up visit, with Wilson intervals.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`responder_frame` (one measure).
    by : str or sequence of str, optional
        Extra grouping columns (e.g. ``"clinic_id"``).
    level : float
        Confidence level.

    Returns
    -------
    polars.DataFrame
        ``measure, definition, [by], visit, n_assessed, n_determined, n_undetermined, n_responders, share,
        ci_low, ci_high, method, assumption``. ``definition`` is ``mcid`` (absolute MCID points) or
        ``relative`` (e.g. 30 % of baseline). ``n_undetermined`` counts calls that cannot be made (a capped
        test whose bound does not reach the threshold, a missing baseline); the share is over
        ``n_determined``.

    Notes
    -----
    ``share = responders / determined``; Wilson interval (see :func:`wilson_interval`).
    Validated against: ``prop.test(k, n, correct = FALSE)`` for the intervals; hand-counted responders in
    ``tests/models/test_responders.py``.
    """
    by_l = [] if by is None else [by] if isinstance(by, str) else list(by)
    _check(frame, ["measure", "visit", *RESPONDER_DEFINITIONS.values(), *by_l])
    follow = frame.filter(pl.col("visit") != BASELINE_LABEL)
    parts = []
    for definition, col in RESPONDER_DEFINITIONS.items():  # loop over the two responder definitions
        parts.append(
            follow.group_by(["measure", *by_l, "visit"])
            .agg(
                pl.len().alias("n_assessed"),
                pl.col(col).is_not_null().sum().alias("n_determined"),
                pl.col(col).is_null().sum().alias("n_undetermined"),
                pl.col(col).fill_null(False).sum().alias("n_responders"),
            )
            .with_columns(pl.lit(definition).alias("definition"))
        )
    out = pl.concat(parts).with_columns(pl.col(c).cast(pl.Int64) for c in ("n_assessed", "n_determined"))
    out = out.with_columns(pl.col("n_undetermined", "n_responders").cast(pl.Int64))
    k, n = out["n_responders"].to_numpy(), out["n_determined"].to_numpy()
    low, high = wilson_interval(k, n, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    out = out.with_columns(
        pl.Series("share", share).fill_nan(None),
        pl.Series("ci_low", low).fill_nan(None),
        pl.Series("ci_high", high).fill_nan(None),
        pl.lit("observed (Wilson)").alias("method"),
        pl.lit(OBSERVED_ASSUMPTION).alias("assumption"),
    )
    order = _visit_order(out["visit"].unique().to_list())
    out = out.with_columns(pl.col("visit").replace_strict(order, list(range(len(order)))).alias("__o"))
    cols = ["measure", "definition", *by_l, "visit", "n_assessed", "n_determined", "n_undetermined"]
    cols += ["n_responders", "share", "ci_low", "ci_high", "method", "assumption"]
    return out.sort(["definition", *by_l, "__o"]).select(cols)


def _visit_order(labels: list[str]) -> list[str]:
    def key(s: str) -> tuple[float, str]:
        digits = "".join(ch for ch in s if ch.isdigit() or ch == ".")
        try:
            return float(digits), s
        except ValueError:
            return float("inf"), s

    return sorted(labels, key=key)


def model_based_responders(
    frame: pl.DataFrame,
    config: ClinicalConfig | None = None,
    covariance: str = "us",
    level: float = 0.95,
    n_draws: int = 2000,
    seed: int = 0,
) -> pl.DataFrame:
    """Model-based responder shares over all patients with a baseline (MMRM of the change).

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`responder_frame` (one measure; needs ``episode_id, visit, value, baseline, change``).
    config : ClinicalConfig, optional
        MCIDs (absolute and relative) of the measure.
    covariance : str
        MMRM covariance structure.
    level : float
        Confidence level of the simulation interval.
    n_draws : int
        Draws of ``(beta, theta)`` from their asymptotic normal distribution for the interval.
    seed : int
        Seed of the draws.

    Returns
    -------
    polars.DataFrame
        ``measure, definition, visit, n_patients, share, ci_low, ci_high, method, assumption``; the fitted
        MMRM's convergence flag is in ``converged``.

    Notes
    -----
    Model: ``change_iv = b0 + a_v + (g + g_v) baseline_i + e_iv``, ``e_i ~ N(0, Sigma)`` (REML). With
    direction ``d`` (+1 when higher is better) and threshold ``c_i`` (MCID, or ``relative x |baseline_i|``),
    ``share_v = mean_i Phi((d m_iv - c_i) / sqrt(Sigma_vv))``. Interval: percentiles of the share over draws
    of ``beta ~ N(beta-hat, V)`` and ``theta ~ N(theta-hat, Cov(theta))``. Capped tolerance tests are not
    normal and are refused here (use the observed shares or :mod:`~sciatica_outcomes.models.survival`).

    Validated against: recovery of the true responder share on simulated data with missing-at-random
    dropout (``tests/models/test_responders.py``); the MMRM itself against ``nlme::gls``.
    """
    config = config or ClinicalConfig()
    _check(frame, ["episode_id", "measure", "visit", "value", "baseline", "change"])
    measures = frame["measure"].unique().to_list()
    if len(measures) != 1:
        raise ModelSpecificationError(f"model-based responders need one measure at a time, got {measures}")
    measure = measures[0]
    if "censored" in frame.columns and frame["censored"].fill_null(False).any():
        raise ModelSpecificationError(
            f"{measure} has capped (right-censored) tests; a normal model of the change would treat the cap "
            "as the true value. Use observed_responders() or models.survival for this measure"
        )
    mcid = config.mcid.get(measure)
    if mcid is None or (mcid.absolute is None and mcid.relative is None):
        raise ModelSpecificationError(
            f"no MCID is configured for {measure!r}; add [mcid.{measure}] to the config"
        )
    better = measure_catalog().filter(pl.col("code") == measure)["higher_is_better"]
    direction = 1.0 if (better.len() and bool(better[0])) else -1.0
    data = frame.filter((pl.col("visit") != BASELINE_LABEL) & pl.col("baseline").is_not_null()).select(
        "episode_id", "visit", "change", "baseline"
    )
    fit = MMRM("change ~ visit * baseline", "episode_id", "visit", covariance=covariance, level=level).fit(
        data
    )
    res = fit.result_
    patients = (
        frame.filter(pl.col("baseline").is_not_null()).select("episode_id", "baseline").unique("episode_id")
    )
    base = patients["baseline"].to_numpy()
    grid = pl.DataFrame(
        {
            "visit": np.repeat(res.visits, base.shape[0]),
            "baseline": np.tile(base, len(res.visits)),
            "change": np.zeros(base.shape[0] * len(res.visits)),
        }
    )
    xg = res.design_matrix(grid).reshape(len(res.visits), base.shape[0], -1)
    thresholds = {}
    if mcid.absolute is not None:
        thresholds["mcid"] = np.full(base.shape[0], float(mcid.absolute))
    if mcid.relative is not None:
        thresholds["relative"] = float(mcid.relative) * np.abs(base)

    def shares(beta: FloatArray, sd: FloatArray, thr: FloatArray) -> FloatArray:
        mean = xg @ beta  # (visits, patients)
        share: FloatArray = stats.norm.cdf((direction * mean - thr[None, :]) / sd[:, None]).mean(axis=1)
        return share

    rng = np.random.default_rng(seed)
    betas = rng.multivariate_normal(res.beta, res.vcov, n_draws)
    thetas = rng.multivariate_normal(res.theta, res.theta_cov, n_draws)
    sds = np.sqrt(
        np.stack([np.diag(_sigma(th, res.structure, len(res.visits))) for th in thetas])
    )  # loop over draws of the few variance parameters
    sd_hat = np.sqrt(np.diag(res.covariance))
    rows = []
    for definition, thr in thresholds.items():  # loop over the two definitions
        point = shares(res.beta, sd_hat, thr)
        draws = np.stack([shares(b, s, thr) for b, s in zip(betas, sds, strict=True)])
        lo, hi = np.quantile(draws, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        for j, visit in enumerate(res.visits):
            rows.append((measure, definition, visit, base.shape[0], point[j], lo[j], hi[j]))
    out = pl.DataFrame(
        rows,
        schema=["measure", "definition", "visit", "n_patients", "share", "ci_low", "ci_high"],
        orient="row",
    )
    return out.with_columns(
        pl.lit("model-based (MMRM)").alias("method"),
        pl.lit(MODEL_ASSUMPTION).alias("assumption"),
        pl.lit(res.converged).alias("converged"),
    )


def responder_analysis(
    frame: pl.DataFrame,
    config: ClinicalConfig | None = None,
    by: str | Sequence[str] | None = None,
    model: bool = True,
    level: float = 0.95,
    seed: int = 0,
) -> pl.DataFrame:
    """Observed (Wilson) and, where the measure allows it, model-based responder shares in one tidy frame.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`responder_frame`.
    config : ClinicalConfig, optional
        MCIDs.
    by : str or sequence of str, optional
        Grouping of the observed shares (the model-based share is overall).
    model : bool
        Add the model-based estimate (skipped, with the reason in ``note``, for capped tests or measures
        without an MCID).
    level : float
        Confidence level.
    seed : int
        Seed of the model-based interval.

    Returns
    -------
    polars.DataFrame
        Rows of :func:`observed_responders` and :func:`model_based_responders` stacked; ``note`` explains a
        skipped model-based estimate.
    """
    obs = observed_responders(frame, by=by, level=level).with_columns(pl.lit(None, pl.String).alias("note"))
    if not model:
        return obs
    try:
        mod = model_based_responders(frame, config, level=level, seed=seed)
    except ModelSpecificationError as exc:
        return obs.with_columns(pl.lit(f"model-based estimate not computed: {exc}").alias("note"))
    mod = mod.with_columns(
        pl.lit(None, pl.Int64).alias("n_assessed"),
        pl.col("n_patients").alias("n_determined"),
        pl.lit(None, pl.Int64).alias("n_undetermined"),
        pl.lit(None, pl.Int64).alias("n_responders"),
        pl.when(pl.col("converged"))
        .then(pl.lit(None, pl.String))
        .otherwise(pl.lit("MMRM did not meet its convergence checks"))
        .alias("note"),
    )
    for c in obs.columns:
        if c not in mod.columns:
            mod = mod.with_columns(pl.lit(None, obs.schema[c]).alias(c))
    return pl.concat([obs, mod.select(obs.columns).cast(obs.schema)])


def glmm_responders(
    frame: pl.DataFrame,
    level: float = 0.95,
    nagq: int = 9,
    n_draws: int = 1000,
    seed: int = 0,
) -> pl.DataFrame:
    """Responder shares from a logistic GLMM of the responder calls: the sensitivity analysis to the MMRM.

    Parameters
    ----------
    frame : polars.DataFrame
        Output of :func:`responder_frame` (one measure).
    level : float
        Confidence level of the simulation interval.
    nagq : int
        Quadrature nodes of the random intercept (1 = Laplace).
    n_draws : int
        Draws of ``(theta, beta)`` from their asymptotic normal distribution for the interval.
    seed : int
        Seed of the draws.

    Returns
    -------
    polars.DataFrame
        ``measure, definition, visit, n_patients, share, ci_low, ci_high, method, assumption, converged``
        (the columns of :func:`model_based_responders`).

    Notes
    -----
    Model per definition: ``logit P(responder_iv) = a_v + g baseline_i + b_i``, ``b_i ~ N(0, s^2)``, fitted to
    the determined calls (:class:`~sciatica_outcomes.models.MixedGLM`); with a ``clinic_id`` column of at
    least 5 clinics where Laplace is adequate, ``b_i = b_patient + b_clinic`` (patients nested in clinics,
    Laplace; ``s^2`` the sum of the two variances;
    :func:`~sciatica_outcomes.models.glmm.fit_patients_in_clinics`). The share at a visit is
    population-averaged over all ``N`` patients with a baseline: ``share_v = mean_i E_b[expit(a_v + g
    baseline_i + b)]`` (Gauss-Hermite over ``b``, 20 nodes). Interval: percentiles over draws of ``(s, a, g) ~
    N(estimate, 2 H^-1)`` with ``H`` the Hessian of the deviance at the optimum.

    Validated against: the true responder share of simulated data with missing-at-random dropout, where it
    lies between the observed (completers) share and the truth (``tests/models/test_responders.py``); the
    GLMM itself against glmer and glmmTMB (``tests/models/test_glmm.py``).
    """
    from sciatica_outcomes.models.glmm import fit_patients_in_clinics  # noqa: PLC0415 - the GLMM only when used

    _check(frame, ["episode_id", "measure", "visit", "baseline", *RESPONDER_DEFINITIONS.values()])
    measures = frame["measure"].unique().to_list()
    if len(measures) != 1:
        raise ModelSpecificationError(f"GLMM responders need one measure at a time, got {measures}")
    measure = measures[0]
    follow = frame.filter((pl.col("visit") != BASELINE_LABEL) & pl.col("baseline").is_not_null())
    order = _visit_order(follow["visit"].unique().to_list())
    patients = frame.filter(pl.col("baseline").is_not_null()).unique("episode_id").select("baseline")
    base = patients["baseline"].cast(pl.Float64).to_numpy()
    z_k, w_k = np.polynomial.hermite.hermgauss(20)
    rng = np.random.default_rng(seed)
    rows = []
    for definition, col in RESPONDER_DEFINITIONS.items():  # loop over the two responder definitions
        data = follow.filter(pl.col(col).is_not_null()).select(
            "episode_id",
            *([pl.col("clinic_id").cast(pl.String)] if "clinic_id" in follow.columns else []),
            pl.col("visit").cast(pl.String),
            pl.col("baseline").cast(pl.Float64),
            pl.col(col).cast(pl.Int64).alias("__responder"),
        )
        if data.height == 0 or data["__responder"].n_unique() < 2:
            continue
        fit, _ = fit_patients_in_clinics(
            "__responder ~ visit + baseline",
            "(1 | episode_id)",
            data,
            nagq=nagq,
            family="binomial",
            reference={"visit": order[0]},
            level=level,
        )
        n_theta = fit.engine_.n_theta  # 1, or 2 with the clinic intercept: b = b_episode + b_clinic
        grid = pl.DataFrame(
            {
                "visit": np.repeat(order, base.shape[0]),
                "baseline": np.tile(base, len(order)),
                "__responder": np.zeros(base.shape[0] * len(order), dtype=np.int64),
            }
        )
        xg = fit.design_.matrix(grid).reshape(len(order), base.shape[0], -1)
        check = fit.optimum_.check
        free = check["free"]
        cov = np.zeros((free.shape[0], free.shape[0]))
        cov[np.ix_(free, free)] = np.linalg.pinv(check["hessian"][np.ix_(free, free)] / 2.0)
        draws = rng.multivariate_normal(fit.par_, cov, n_draws)

        def shares(sd: FloatArray, beta: FloatArray, xg: FloatArray = xg) -> FloatArray:
            """Population-averaged shares per visit for each row of ``(sd, beta)`` (draws x visits)."""
            eta = np.einsum("vnp,dp->dvn", xg, beta)  # (draws, visits, patients)
            inner = eta[..., None] + math.sqrt(2.0) * np.abs(sd)[:, None, None, None] * z_k
            share: FloatArray = (w_k * special.expit(inner)).sum(axis=-1).mean(axis=-1) / math.sqrt(math.pi)
            return share

        def total_sd(theta: FloatArray) -> FloatArray:
            """SD of the sum of the (independent) intercepts per row of ``theta``."""
            sd: FloatArray = np.sqrt(np.sum(theta**2, axis=1))
            return sd

        point = shares(total_sd(fit.par_[None, :n_theta]), fit.beta_[None, :])[0]
        chunks = [
            shares(total_sd(d[:, :n_theta]), d[:, n_theta:])
            for d in np.array_split(draws, max(1, n_draws // 100))
        ]
        lo, hi = np.quantile(np.concatenate(chunks), [0.5 - level / 2, 0.5 + level / 2], axis=0)
        for j, visit in enumerate(order):
            rows.append(
                (measure, definition, visit, base.shape[0], point[j], lo[j], hi[j], fit.result_.converged)
            )
    out = pl.DataFrame(
        rows,
        schema=["measure", "definition", "visit", "n_patients", "share", "ci_low", "ci_high", "converged"],
        orient="row",
    )
    return out.with_columns(
        pl.lit("model-based (GLMM)").alias("method"), pl.lit(GLMM_ASSUMPTION).alias("assumption")
    ).select(
        "measure",
        "definition",
        "visit",
        "n_patients",
        "share",
        "ci_low",
        "ci_high",
        "method",
        "assumption",
        "converged",
    )
