"""Canonical table schemas and the exercise and measure catalogs."""

from sciatica_outcomes.schemas.catalogs import exercise_catalog, measure_catalog

__all__ = ["exercise_catalog", "measure_catalog"]
