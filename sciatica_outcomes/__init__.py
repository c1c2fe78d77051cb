"""sciatica-outcomes: outcomes analytics for strength-training programs in chronic sciatica."""

from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog
from sciatica_outcomes.synth import Cohort, SynthConfig, generate_cohort, write_cohort

__version__ = "0.1.0"

__all__ = [
    "Cohort",
    "SynthConfig",
    "__version__",
    "exercise_catalog",
    "generate_cohort",
    "measure_catalog",
    "write_cohort",
]
