"""Shared fixtures: synthetic cohorts generated once per test session."""

from __future__ import annotations

import pytest

from sciatica_outcomes.synth import Cohort, generate_cohort


@pytest.fixture(scope="session")
def cohort_1000() -> Cohort:
    """The default-calibrated cohort of 1,000 episodes (seed 11)."""
    return generate_cohort(n_patients=1000, seed=11)


@pytest.fixture(scope="session")
def cohort_3000() -> Cohort:
    """A larger default cohort (seed 5) for checks of realised rates against truth."""
    return generate_cohort(n_patients=3000, seed=5)
