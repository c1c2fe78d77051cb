"""Golden cases of the growth model (tests/reference/lmm): the case list and data loader.

The tolerances of every comparison with these R values are in ``tolerances.py`` (``GOLDEN_*``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "lmm"
CASES: list[dict[str, Any]] = json.loads((REFERENCE / "cases.json").read_text(encoding="utf-8"))
CASE_NAMES = [c["name"] for c in CASES]


def load_data(case: dict[str, Any]) -> pl.DataFrame:
    """The committed CSV of a case."""
    return pl.read_csv(REFERENCE / case["data"])
