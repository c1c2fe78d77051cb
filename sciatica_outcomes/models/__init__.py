"""models stage: lme4-style growth models (REML/ML), Satterthwaite inference and marginal means.

See DESIGN.md. ``GrowthModel`` is the estimator; ``WaldInference`` / ``satterthwaite_from_deviance`` are the
estimator-independent inference layer (reused by residual-covariance models).
"""

from sciatica_outcomes.models.emmeans import EmmeansResult, emmeans, parse_emmeans_spec
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
from sciatica_outcomes.models.lmm import GrowthModel, likelihood_ratio_test
from sciatica_outcomes.models.mmrm import COVARIANCE_STRUCTURES, MMRM, MMRMResult, fit_mmrm
from sciatica_outcomes.models.results import ConvergenceDiagnostics, FitResult

__all__ = [
    "COVARIANCE_STRUCTURES",
    "MMRM",
    "ConvergenceDiagnostics",
    "Design",
    "EmmeansResult",
    "FitResult",
    "GrowthModel",
    "LevelSpec",
    "LikelihoodRatioTest",
    "MMRMResult",
    "ModelFormula",
    "ProfiledDeviance",
    "RandomTerm",
    "WaldInference",
    "emmeans",
    "fit_mmrm",
    "likelihood_ratio",
    "likelihood_ratio_test",
    "numerical_hessian",
    "numerical_jacobian",
    "parse_emmeans_spec",
    "parse_formula",
    "satterthwaite_from_deviance",
    "vcov_varpar_from_hessian",
]
