"""models stage: lme4-style growth models (REML/ML), MMRM, GLMMs, Satterthwaite/KR inference, marginal means.

See DESIGN.md. ``GrowthModel``, ``MMRM`` and ``MixedGLM`` (binomial, Poisson, negative-binomial GLMMs) are
estimators with one contract, :class:`Estimator`
(``models/base.py``); ``WaldInference`` / ``satterthwaite_from_deviance`` are the estimator-independent
inference layer (reused by residual-covariance models).

Names are imported on first use (``sciatica_outcomes._lazy``), so importing this package or its ``cli``
module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sciatica_outcomes._lazy import keep_exports_over_submodules, lazy_exports

if TYPE_CHECKING:
    from sciatica_outcomes.models.base import Estimator
    from sciatica_outcomes.models.censored import CensoredGrowthModel, CensoredResult
    from sciatica_outcomes.models.compare import ProviderComparison, compare_providers, episode_outcomes
    from sciatica_outcomes.models.emmeans import (
        EmmeansResult,
        emmeans,
        marginal_means,
        parse_emmeans_spec,
        predictor_info,
    )
    from sciatica_outcomes.models.engine import LevelSpec, ProfiledDeviance
    from sciatica_outcomes.models.formula import Design, ModelFormula, RandomTerm, parse_formula
    from sciatica_outcomes.models.glmm import GLMMResult, MixedGLM
    from sciatica_outcomes.models.inference import (
        LikelihoodRatioTest,
        WaldInference,
        likelihood_ratio,
        numerical_hessian,
        numerical_jacobian,
        satterthwaite_from_deviance,
        vcov_varpar_from_hessian,
    )
    from sciatica_outcomes.models.lmm import (
        GrowthModel,
        fit_standard,
        likelihood_ratio_test,
        standard_formula,
    )
    from sciatica_outcomes.models.mmrm import COVARIANCE_STRUCTURES, MMRM, MMRMResult, fit_mmrm
    from sciatica_outcomes.models.responders import responder_analysis, responder_frame, wilson_interval
    from sciatica_outcomes.models.results import ConvergenceDiagnostics, FitResult
    from sciatica_outcomes.models.sandwich import VCOV_METHODS, EmpiricalInference
    from sciatica_outcomes.models.survival import KaplanMeierResult, kaplan_meier, time_to_improvement
    from sciatica_outcomes.models.work import (
        WorkStatusModel,
        work_status_frame,
        work_status_model,
        work_status_summary,
    )

_EXPORTS: dict[str, str] = {
    "COVARIANCE_STRUCTURES": "sciatica_outcomes.models.mmrm",
    "CensoredGrowthModel": "sciatica_outcomes.models.censored",
    "CensoredResult": "sciatica_outcomes.models.censored",
    "ConvergenceDiagnostics": "sciatica_outcomes.models.results",
    "Design": "sciatica_outcomes.models.formula",
    "Estimator": "sciatica_outcomes.models.base",
    "EmmeansResult": "sciatica_outcomes.models.emmeans",
    "EmpiricalInference": "sciatica_outcomes.models.sandwich",
    "FitResult": "sciatica_outcomes.models.results",
    "GrowthModel": "sciatica_outcomes.models.lmm",
    "KaplanMeierResult": "sciatica_outcomes.models.survival",
    "LevelSpec": "sciatica_outcomes.models.engine",
    "LikelihoodRatioTest": "sciatica_outcomes.models.inference",
    "GLMMResult": "sciatica_outcomes.models.glmm",
    "MixedGLM": "sciatica_outcomes.models.glmm",
    "MMRM": "sciatica_outcomes.models.mmrm",
    "MMRMResult": "sciatica_outcomes.models.mmrm",
    "ModelFormula": "sciatica_outcomes.models.formula",
    "ProfiledDeviance": "sciatica_outcomes.models.engine",
    "ProviderComparison": "sciatica_outcomes.models.compare",
    "RandomTerm": "sciatica_outcomes.models.formula",
    "VCOV_METHODS": "sciatica_outcomes.models.sandwich",
    "WaldInference": "sciatica_outcomes.models.inference",
    "compare_providers": "sciatica_outcomes.models.compare",
    "emmeans": "sciatica_outcomes.models.emmeans",
    "episode_outcomes": "sciatica_outcomes.models.compare",
    "fit_mmrm": "sciatica_outcomes.models.mmrm",
    "fit_standard": "sciatica_outcomes.models.lmm",
    "kaplan_meier": "sciatica_outcomes.models.survival",
    "likelihood_ratio": "sciatica_outcomes.models.inference",
    "likelihood_ratio_test": "sciatica_outcomes.models.lmm",
    "marginal_means": "sciatica_outcomes.models.emmeans",
    "numerical_hessian": "sciatica_outcomes.models.inference",
    "numerical_jacobian": "sciatica_outcomes.models.inference",
    "parse_emmeans_spec": "sciatica_outcomes.models.emmeans",
    "parse_formula": "sciatica_outcomes.models.formula",
    "predictor_info": "sciatica_outcomes.models.emmeans",
    "responder_analysis": "sciatica_outcomes.models.responders",
    "responder_frame": "sciatica_outcomes.models.responders",
    "satterthwaite_from_deviance": "sciatica_outcomes.models.inference",
    "standard_formula": "sciatica_outcomes.models.lmm",
    "time_to_improvement": "sciatica_outcomes.models.survival",
    "vcov_varpar_from_hessian": "sciatica_outcomes.models.inference",
    "wilson_interval": "sciatica_outcomes.models.responders",
    "WorkStatusModel": "sciatica_outcomes.models.work",
    "work_status_frame": "sciatica_outcomes.models.work",
    "work_status_model": "sciatica_outcomes.models.work",
    "work_status_summary": "sciatica_outcomes.models.work",
}

__all__ = [
    "COVARIANCE_STRUCTURES",
    "MMRM",
    "VCOV_METHODS",
    "CensoredGrowthModel",
    "CensoredResult",
    "ConvergenceDiagnostics",
    "Design",
    "EmmeansResult",
    "EmpiricalInference",
    "Estimator",
    "FitResult",
    "GLMMResult",
    "GrowthModel",
    "KaplanMeierResult",
    "LevelSpec",
    "LikelihoodRatioTest",
    "MMRMResult",
    "MixedGLM",
    "ModelFormula",
    "ProfiledDeviance",
    "ProviderComparison",
    "RandomTerm",
    "WaldInference",
    "WorkStatusModel",
    "compare_providers",
    "emmeans",
    "episode_outcomes",
    "fit_mmrm",
    "fit_standard",
    "kaplan_meier",
    "likelihood_ratio",
    "likelihood_ratio_test",
    "marginal_means",
    "numerical_hessian",
    "numerical_jacobian",
    "parse_emmeans_spec",
    "parse_formula",
    "predictor_info",
    "responder_analysis",
    "responder_frame",
    "satterthwaite_from_deviance",
    "standard_formula",
    "time_to_improvement",
    "vcov_varpar_from_hessian",
    "wilson_interval",
    "work_status_frame",
    "work_status_model",
    "work_status_summary",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
# ``models.emmeans`` is the entry-point function, also once the submodule ``models.emmeans`` is imported
keep_exports_over_submodules(__name__, _EXPORTS)
