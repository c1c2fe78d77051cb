"""The clinical configuration: defaults with sources, TOML overrides, validation, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sciatica_outcomes.config import ClinicalConfig, Mcid, VisitWindow
from sciatica_outcomes.errors import ConfigError


def test_defaults_match_domain_brief() -> None:
    c = ClinicalConfig()
    assert c.odi_max_missing == 1
    assert (c.mcid["odi"].absolute, c.mcid["odi"].relative) == (10.0, 0.30)
    assert c.mcid["nprs_leg"].absolute == 2.0 and c.mcid["rmdq"].absolute == 5.0
    assert (c.pain_safe_max, c.pain_acceptable_max, c.flare_rise_points, c.settle_hours) == (2, 5, 2, 48)
    assert c.program_days == 84


def test_every_field_documents_a_source() -> None:
    rows = ClinicalConfig.describe()
    assert {r["name"] for r in rows} >= {"odi_max_missing", "mcid", "visit_windows", "dropout_gap_weeks"}
    assert all(r["source"] and r["doc"] for r in rows)


def test_toml_overrides_merge_tables(tmp_path: Path) -> None:
    path = tmp_path / "clinic.toml"
    path.write_text(
        "odi_max_missing = 0\ndropout_gap_weeks = 3\n"
        "[mcid.odi]\nabsolute = 8\n"
        "[visit_windows.w52]\ntarget_week = 52\nbefore_days = 28\nafter_days = 28\n"
    )
    c = ClinicalConfig.from_toml(path)
    assert c.odi_max_missing == 0 and c.dropout_gap_weeks == 3.0
    assert c.mcid["odi"] == Mcid(8, 0.30, None, ClinicalConfig().mcid["odi"].source)
    assert c.mcid["nprs_leg"] == ClinicalConfig().mcid["nprs_leg"]
    assert c.visit_windows["w52"] == VisitWindow(52, 28, 28) and "w12" in c.visit_windows


def test_round_trip_to_json() -> None:
    data = json.loads(json.dumps(ClinicalConfig().to_dict()))
    assert data["values"]["mcid"]["odi"]["absolute"] == 10.0
    assert "Ostelo" in data["sources"]["mcid"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("odi_max_missing = -1\n", "non-negative integer"),
        ("odi_max_missing = 1.5\n", "must be an integer"),
        ("flare_rise = 2\n", "unknown configuration key"),
        ("pain_safe_max = 6\n", "pain bands"),
        ("[mcid.odi]\nrelative = 30\n", r"relative must lie in \(0, 1\]"),
        ("[mcid.new_measure]\nabsolute = 1\n", "is new and needs"),
        ("[visit_windows.w6]\nafter_days = 60\n", "overlap"),
        ("odi_max_missing = \n", "not valid TOML"),
        ("end_window_days = -3\n", "non-negative integer"),
        ("end_window_days = 7.5\n", "must be an integer"),
    ],
)
def test_invalid_values_are_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        ClinicalConfig.from_toml(path)


def test_missing_file_and_replace() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ClinicalConfig.from_toml("/nonexistent/c.toml")
    assert ClinicalConfig().replace(program_weeks=8).program_days == 56
    with pytest.raises(ConfigError, match="unknown"):
        ClinicalConfig().replace(nope=1)


def test_end_of_episode_window_is_a_documented_field(tmp_path: Path) -> None:
    (field,) = [d for d in ClinicalConfig.describe() if d["name"] == "end_window_days"]
    assert field["default"] == "14" and "discharge" in field["doc"] and "domain.md" in field["source"]
    path = tmp_path / "c.toml"
    path.write_text("end_window_days = 7\n")
    assert ClinicalConfig.from_toml(path).end_window_days == 7
