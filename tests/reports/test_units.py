"""reports.units: which units (clinics, therapists) an audience sees nothing of, across the outputs."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl

from sciatica_outcomes.models.responders import responder_frame
from sciatica_outcomes.reports.privacy import feasible_ranges, rule_for
from sciatica_outcomes.reports.units import unit_counts, withheld_responder_cells, withheld_units

NETWORK = rule_for("network")


def _counts(**columns: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"clinic_id": ["A", "B", "C", "D"], **columns})


def test_a_small_unit_is_withheld_whole_with_the_smallest_complement() -> None:
    # C has 5 at w12: withheld; the total minus the others would give it, so B (the smallest shown) too
    counts = _counts(**{"w12:assessed": [50, 30, 5, 40], "w6:assessed": [80, 45, 20, 60]})
    assert withheld_units(counts, "clinic_id", NETWORK) == ["B", "C"]
    assert withheld_units(counts, "clinic_id", rule_for("internal")) == []


def test_the_complement_keeps_every_columns_withheld_sum_above_the_threshold() -> None:
    # C (4) and D (3) at w26 sum to 7: a third unit is needed there, although each is withheld already
    counts = _counts(**{"w26:assessed": [50, 30, 4, 3], "w6:assessed": [80, 45, 20, 60]})
    hidden = withheld_units(counts, "clinic_id", NETWORK)
    assert hidden == ["B", "C", "D"]
    values = counts.drop("clinic_id").to_numpy()
    mask = counts["clinic_id"].is_in(hidden).to_numpy()
    assert (values[mask].sum(axis=0) > 10).all()


def test_responder_cells_of_shown_units_leave_no_count_pinned_or_narrowed() -> None:
    # D's 4 non-responders are withheld, and another unit's responder cell with them; no unit is hidden
    assessed = [60, 45, 30, 40]
    responders = [30, 20, 15, 36]
    counts = _counts(
        **{
            "w12:assessed": assessed,
            "w12:complete": assessed,
            "w12:mcid:determined": assessed,
            "w12:mcid:undetermined": [0, 0, 0, 0],
            "w12:mcid:responders": responders,
            "w12:mcid:non_responders": [a - r for a, r in zip(assessed, responders, strict=True)],
        }
    )
    assert withheld_units(counts, "clinic_id", NETWORK) == []
    cells = withheld_responder_cells(counts.drop("w12:complete"), "clinic_id", [], NETWORK)
    withheld = {u for (u, d, v) in cells}
    assert "D" in withheld and len(withheld) >= 2
    assert all(level == "responders" for level in cells.values())
    # the attacker: r + c = d per unit (d shown), and the sums R, C published
    u = 4
    r, c = np.array(responders, float), np.array(assessed, float) - np.array(responders, float)
    values = np.concatenate([r, c, [r.sum(), c.sum()]])
    hide = np.array([x in withheld for x in ["A", "B", "C", "D"]])
    mask = np.concatenate([hide, hide, [False, False]])
    ident = np.zeros((u + 2, 2 * u + 2))
    for i in range(u):  # r_i + c_i = d_i (shown): fold d into a known constant column pair
        ident[i, i] = ident[i, u + i] = 1.0
    ident[u, :u] = 1.0
    ident[u, 2 * u] = -1.0
    ident[u + 1, u : 2 * u] = 1.0
    ident[u + 1, 2 * u + 1] = -1.0
    # r_i + c_i - d_i = 0 with d_i known: append d as shown variables
    d = np.array(assessed, float)
    values = np.concatenate([values, d])
    mask = np.concatenate([mask, np.zeros(u, dtype=bool)])
    ident = np.hstack([ident, np.zeros((u + 2, u))])
    ident[np.arange(u), 2 * u + 2 + np.arange(u)] = -1.0
    lo, hi = feasible_ranges(values, mask, ident)
    for j in np.flatnonzero(mask & (values > 0)):
        assert hi[j] - lo[j] >= 0.5 and hi[j] > 10.5, (j, values[j], lo[j], hi[j])


def test_unit_counts_are_the_counts_of_the_responder_frame() -> None:
    # two clinics; ODI at baseline and 12 weeks; CL02's second episode has no 12-week ODI
    start = date(2026, 1, 5)
    episodes = pl.DataFrame(
        {
            "episode_id": ["E1", "E2", "E3", "E4"],
            "clinic_id": ["CL01", "CL01", "CL02", "CL02"],
            "start_date": [start] * 4,
            "age_at_start": [40, 50, 60, 45],
            "sex": ["F", "M", "F", "M"],
            "symptom_duration_weeks": [20, 30, 40, 25],
            "affected_side": ["left", "right", "left", "both"],
        }
    )
    base = [50.0, 40.0, 60.0, 30.0]
    end = [30.0, 38.0, 45.0]  # improvements 20, 2, 15
    measures = pl.DataFrame(
        {
            "episode_id": ["E1", "E2", "E3", "E4", "E1", "E2", "E3"],
            "measure": ["odi"] * 7,
            "assessed_on": [start] * 4 + [start + timedelta(days=84)] * 3,
            "value": base + end,
        }
    )
    frame = responder_frame({"episodes": episodes, "measures": measures}, "odi")
    counts = unit_counts(frame, "clinic_id")
    assert counts["clinic_id"].to_list() == ["CL01", "CL02"]
    assert counts["w12:assessed"].to_list() == [2, 1] and counts["w12:complete"].to_list() == [2, 1]
    assert counts["w12:mcid:responders"].to_list() == [1, 1]  # 20 and 15 points; 2 is below the MCID
    assert counts["w12:mcid:non_responders"].to_list() == [1, 0]
