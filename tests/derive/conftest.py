"""Fixtures of the derive tests: derived frames of the shared synthetic cohorts, computed once."""

from __future__ import annotations

import pytest

from sciatica_outcomes.derive import Derived, derive_all
from sciatica_outcomes.synth import Cohort, generate_cohort


@pytest.fixture(scope="session")
def derived_3000(cohort_3000: Cohort) -> Derived:
    return derive_all(cohort_3000.tables, data_cut=cohort_3000.config.data_cut)


@pytest.fixture(scope="session")
def red_flag_cohort() -> Cohort:
    """A cohort with many planted red-flag screens (10 % of episodes), about 20 % of them unactioned."""
    return generate_cohort(n_patients=600, seed=21, red_flag_prob=0.10)
