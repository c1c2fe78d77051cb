"""sciatica-outcomes: outcomes analytics for strength-training programs in chronic sciatica."""

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive import analysis_frame, derive_all, episode_summary
from sciatica_outcomes.ingest import ingest_paths, validate_paths
from sciatica_outcomes.models import GrowthModel, fit_standard
from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog
from sciatica_outcomes.scoring import score_questionnaires
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import Cohort, SynthConfig, generate_cohort, write_cohort

__version__ = "0.1.0"

__all__ = [
    "ClinicalConfig",
    "Cohort",
    "GrowthModel",
    "Store",
    "SynthConfig",
    "__version__",
    "analysis_frame",
    "derive_all",
    "episode_summary",
    "exercise_catalog",
    "fit_standard",
    "generate_cohort",
    "ingest_paths",
    "measure_catalog",
    "score_questionnaires",
    "validate_paths",
    "write_cohort",
]
