"""Every quarter from the first enrolment to the data cut, for all clinics and each clinic, on a tiny store.

Found by rendering the demo's quarters one by one: clinic CL01's own (internal) reports of 2025Q2 and 2025Q3
failed (exit 1, a TypeError in the notebook) because the therapist funnel's caption formatted the O - E of a
therapist with one episode, whose statistics the table leaves empty. The fast test runs the comparison and
the caption for every quarter and unit; the slow test renders every report.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sciatica_outcomes.errors import ReportParameterError
from sciatica_outcomes.models.responders import responder_frame
from sciatica_outcomes.reports import quarterly as q
from sciatica_outcomes.reports.cli import render_quarterly
from sciatica_outcomes.reports.figures import drawable_units
from sciatica_outcomes.store import Store
from sciatica_outcomes.synth import generate_cohort


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """90 patients in 2 clinics (one too small for a report in most quarters), a therapist of one episode."""
    cohort = generate_cohort(n_patients=90, n_clinics=2, seed=4)
    ep = cohort.tables["episodes"]
    # the larger clinic's earliest episode with a 12-week ODI goes to a therapist of its own: one episode
    larger = ep.group_by("clinic_id").len().sort("len", "clinic_id", descending=True)["clinic_id"][0]
    w12 = responder_frame(cohort.tables, "odi").filter(
        (pl.col("visit") == "w12") & (pl.col("clinic_id") == larger)
    )
    single = w12.sort("start_date", "episode_id")["episode_id"][0]
    ep = ep.with_columns(
        pl.when(pl.col("episode_id") == single)
        .then(pl.lit("TH0999"))
        .otherwise(pl.col("therapist_id"))
        .alias("therapist_id")
    )
    db = tmp_path_factory.mktemp("tiny") / "outcomes.duckdb"
    with Store(db) as store:
        for name, frame in {**cohort.tables, "episodes": ep}.items():
            store.write(name, frame, source="synthetic")
    first, cut = ep["start_date"].min(), max(ep["start_date"].max(), ep["end_date"].max())
    assert isinstance(first, date) and isinstance(cut, date)
    quarters, qt = [], q.Quarter(first.year, (first.month - 1) // 3 + 1)
    while qt.start <= cut:
        quarters.append(qt.label)
        qt = qt.shift(1)
    return {
        "db": db,
        "quarters": quarters,
        "clinics": sorted(ep["clinic_id"].unique().to_list()),
        "episodes": ep,
    }


def _active(ep: pl.DataFrame, label: str, clinic: str) -> int:
    qt = q.Quarter.parse(label)
    mine = ep.filter(pl.col("clinic_id") == clinic)
    return mine.filter(
        (pl.col("start_date") <= qt.end) & (pl.col("end_date").is_null() | (pl.col("end_date") >= qt.start))
    ).height


def _reportable(tiny: dict[str, Any], label: str, clinic: str | None) -> bool:
    """validate_parameters refuses a clinic exactly when it has 10 or fewer active episodes."""
    params = {"db": str(tiny["db"]), "quarter": label, "clinic": clinic or ""}
    try:
        q.validate_parameters(params)
    except ReportParameterError as exc:
        message = str(exc)
        assert "\n" not in message and "active in" in message, message
        assert clinic is not None and _active(tiny["episodes"], label, clinic) <= 10
        return False
    assert clinic is None or _active(tiny["episodes"], label, clinic) > 10
    return True


def test_every_quarter_and_unit_has_a_comparison_view_its_caption_can_state(tiny: dict[str, Any]) -> None:
    assert len(tiny["quarters"]) >= 6
    views = singles = 0
    for label in tiny["quarters"]:
        for clinic in [None, *tiny["clinics"]]:
            if not _reportable(tiny, label, clinic):
                continue
            rule = q.report_rule(None, None, clinic)
            view = q.provider_comparison(q.load_inputs(tiny["db"], label, clinic, rule=rule))
            if view is None:
                continue
            views += 1
            drawn = drawable_units(view["providers"], rule)
            # the notebook's caption: every drawn unit has an O - E and a band
            caption = "; ".join(
                f"{u} {v:+.1f} points ({b})"
                for u, v, b in zip(drawn["unit"], drawn["o_minus_e"], drawn["band"], strict=True)
            )
            assert "None" not in caption
            shown = view["providers"].filter(pl.col("n") != "*")
            one = shown.filter(pl.col("n").cast(pl.Int64) < rule.min_group)
            assert one.select("o_minus_e", "shrunken").null_count().row(0) == (one.height, one.height)
            singles += one.height
    assert views >= 3  # the one-clinic reports compare therapists from the second quarter on
    assert singles >= 1  # the therapist of one episode is in the internal tables, without statistics


@pytest.mark.slow
def test_every_quarter_renders_for_all_clinics_and_for_each_clinic(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    rendered = refused = 0
    for label in tiny["quarters"]:
        for clinic in [None, *tiny["clinics"]]:
            if not _reportable(tiny, label, clinic):
                refused += 1
                continue
            result = render_quarterly(
                tiny["db"], label, tmp_path / f"{label}-{clinic or 'all'}", clinic=clinic
            )
            page = result.html.read_text(encoding="utf-8")
            text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
            assert "Traceback" not in text and "Error" not in text.replace("Standard error", "")
            audience = "internal" if clinic else "network"
            assert f"Audience: {audience}." in text
            rendered += 1
    assert rendered >= len(tiny["quarters"]) + 1 and refused >= 1
