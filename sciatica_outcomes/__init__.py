"""sciatica-outcomes: outcomes analytics for strength-training programs in chronic sciatica.

The public API is re-exported here and imported on first use (PEP 562), so that ``import sciatica_outcomes``
and the command line start at once: each stage's libraries (polars, DuckDB, pandera, SciPy, the report
stack) load only when a name that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sciatica_outcomes._lazy import lazy_exports
from sciatica_outcomes._version import __version__

if TYPE_CHECKING:  # the names below, for type checkers and IDEs
    from sciatica_outcomes.config import ClinicalConfig
    from sciatica_outcomes.derive import analysis_frame, derive_all, episode_summary
    from sciatica_outcomes.ingest import ingest_paths, validate_paths
    from sciatica_outcomes.models import GrowthModel, fit_standard
    from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog
    from sciatica_outcomes.scoring import score_questionnaires
    from sciatica_outcomes.store import Store
    from sciatica_outcomes.synth import Cohort, SynthConfig, generate_cohort, write_cohort

_EXPORTS: dict[str, str] = {
    "ClinicalConfig": "sciatica_outcomes.config",
    "Cohort": "sciatica_outcomes.synth",
    "GrowthModel": "sciatica_outcomes.models",
    "Store": "sciatica_outcomes.store",
    "SynthConfig": "sciatica_outcomes.synth",
    "analysis_frame": "sciatica_outcomes.derive",
    "derive_all": "sciatica_outcomes.derive",
    "episode_summary": "sciatica_outcomes.derive",
    "exercise_catalog": "sciatica_outcomes.schemas.catalogs",
    "fit_standard": "sciatica_outcomes.models",
    "generate_cohort": "sciatica_outcomes.synth",
    "ingest_paths": "sciatica_outcomes.ingest",
    "measure_catalog": "sciatica_outcomes.schemas.catalogs",
    "score_questionnaires": "sciatica_outcomes.scoring",
    "validate_paths": "sciatica_outcomes.ingest",
    "write_cohort": "sciatica_outcomes.synth",
}

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
