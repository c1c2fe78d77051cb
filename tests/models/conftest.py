"""Fixtures of the models tests: the golden cases fitted once per session."""

from __future__ import annotations

import json
from typing import Any

import pytest
from lmm_golden import CASES, REFERENCE, load_data

from sciatica_outcomes.models import GrowthModel


@pytest.fixture(scope="session")
def golden() -> dict[str, tuple[dict[str, Any], dict[str, Any], GrowthModel]]:
    """case name -> (case, R output, fitted model)."""
    out = {}
    for case in CASES:
        expected = json.loads((REFERENCE / f"{case['name']}.json").read_text(encoding="utf-8"))
        model = GrowthModel(case["formula"], reml=case["reml"], reference=case.get("reference"))
        out[case["name"]] = (case, expected, model.fit(load_data(case)))
    return out
