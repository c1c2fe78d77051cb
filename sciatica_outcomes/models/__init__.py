"""models stage: lme4-style growth models (REML/ML), Satterthwaite inference and marginal means.

See DESIGN.md. ``GrowthModel`` is the estimator; ``WaldInference`` / ``satterthwaite_from_deviance`` are the
estimator-independent inference layer (reused by residual-covariance models).
"""

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
from sciatica_outcomes.models.inference import (
    LikelihoodRatioTest,
    WaldInference,
    likelihood_ratio,
    numerical_hessian,
    numerical_jacobian,
    satterthwaite_from_deviance,
    vcov_varpar_from_hessian,
)
from sciatica_outcomes.models.lmm import GrowthModel, fit_standard, likelihood_ratio_test, standard_formula
from sciatica_outcomes.models.mmrm import COVARIANCE_STRUCTURES, MMRM, MMRMResult, fit_mmrm
from sciatica_outcomes.models.responders import responder_analysis, responder_frame, wilson_interval
from sciatica_outcomes.models.results import ConvergenceDiagnostics, FitResult
from sciatica_outcomes.models.survival import KaplanMeierResult, kaplan_meier, time_to_improvement

__all__ = [
    "COVARIANCE_STRUCTURES",
    "MMRM",
    "ConvergenceDiagnostics",
    "Design",
    "EmmeansResult",
    "FitResult",
    "GrowthModel",
    "KaplanMeierResult",
    "LevelSpec",
    "LikelihoodRatioTest",
    "MMRMResult",
    "ModelFormula",
    "ProfiledDeviance",
    "ProviderComparison",
    "RandomTerm",
    "WaldInference",
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
]
