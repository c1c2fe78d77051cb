"""An attacker who holds ``responders``, ``responders --by clinic_id`` and ``compare-clinics`` of one store.

The attacker parses the three files (CSV, CSV, JSON) and sets up the linear program the published numbers
allow, per clinic ``u``, visit ``v`` and responder definition ``d``: ``determined + undetermined = assessed``,
``responders + non-responders = determined``, every clinic column sums to the total that ``responders``
without ``--by`` prints, and (the strongest attacker: no case-mix value is missing in these data) the
comparison's n of a clinic is its n assessed at 12 weeks. For every withheld count the smallest and largest
feasible value are found (:func:`~sciatica_outcomes.reports.privacy.feasible_ranges`, HiGHS): a count that is
not 0 must be neither pinned nor narrowed into 0..10, no shown count may be 1-10, and the clinics withheld by
``compare-clinics`` are exactly those ``responders --by`` withholds whole.

Before ``reports.units`` the two commands withheld report by report: on the 300-patient store below the
smallest clinic's n assessed at 12 weeks (2) was the total (144) minus the three shown clinics, and a clinic
whose n the comparison withheld (24) was printed by ``responders --by``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.models.cli_trial import load_canonical_tables
from sciatica_outcomes.models.responders import RESPONDER_DEFINITIONS, observed_responders, responder_frame
from sciatica_outcomes.reports.privacy import feasible_ranges
from sciatica_outcomes.synth import generate_cohort, write_cohort

THRESHOLD = 10
NETWORK = ""
KINDS = ("determined", "undetermined", "responders", "non_responders")
runner = CliRunner()


def _run(args: list[str]) -> None:
    res = runner.invoke(app, [*args, "--quiet"])
    assert res.exit_code == 0, res.output


@pytest.fixture(
    scope="module",
    params=[
        pytest.param((300, 4, 3), id="300x4"),
        # 8 clinics of 1 to 126 episodes at 6 weeks: some clinics shown, some responder cells withheld
        pytest.param((700, 8, 6), id="700x8", marks=pytest.mark.slow),
    ],
)
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every file of the three commands on one synthetic store, and the true counts behind them."""
    n_patients, n_clinics, seed = request.param
    root = tmp_path_factory.mktemp(f"units{n_patients}")
    write_cohort(generate_cohort(n_patients=n_patients, n_clinics=n_clinics, seed=seed), root / "cohort")
    base = ["--tables", str(root / "cohort")]
    _run(["responders", *base, "--no-model", "--out", str(root / "all.csv")])
    _run(["responders", *base, "--no-model", "--by", "clinic_id", "--out", str(root / "by.csv")])
    _run(["compare-clinics", *base, "--out", str(root / "cmp.json")])
    frame = responder_frame(load_canonical_tables(root / "cohort", None), "odi")
    truth = observed_responders(frame, by="clinic_id")
    return {"root": root, "truth": truth}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _count(text: str) -> int | None:
    """A published count: its value, or None when withheld (``*``); never a formatted string."""
    if text == "*":
        return None
    assert text.isdigit(), text
    return int(text)


class Attacker:
    """Unknowns: per clinic (and the network) and visit ``assessed``, the four parts per definition, and the
    comparison's n; published counts are known, the rest bounded by the identities."""

    def __init__(self, clinics: list[str], visits: list[str]) -> None:
        columns = ["assessed", *(f"{d}:{k}" for d in RESPONDER_DEFINITIONS for k in KINDS)]
        keys = [(u, v, c) for u in [NETWORK, *clinics] for v in visits for c in columns]
        keys += [(u, "w12", "compare_n") for u in clinics]
        self.index = {key: i for i, key in enumerate(keys)}
        self.known: dict[int, float] = {}
        self.starred: set[tuple[str, str, str]] = set()
        self.rows: list[np.ndarray] = []
        self.clinics, self.visits = clinics, visits
        for u in [NETWORK, *clinics]:
            for v in visits:
                for d in RESPONDER_DEFINITIONS:
                    det, und = (u, v, f"{d}:determined"), (u, v, f"{d}:undetermined")
                    resp, non = (u, v, f"{d}:responders"), (u, v, f"{d}:non_responders")
                    self._eq({det: 1, und: 1, (u, v, "assessed"): -1})
                    self._eq({resp: 1, non: 1, det: -1})
        for u in clinics:
            self._eq({(u, "w12", "compare_n"): 1, (u, "w12", "assessed"): -1})
        for v in visits:  # the network (responders without --by) is the sum of its clinics
            for c in columns:
                self._eq({**{(u, v, c): 1.0 for u in clinics}, (NETWORK, v, c): -1.0})

    def _eq(self, coefs: dict[tuple[str, str, str], float]) -> None:
        row = np.zeros(len(self.index))
        for key, c in coefs.items():
            row[self.index[key]] = c
        self.rows.append(row)

    def shown(self, key: tuple[str, str, str], text: str) -> None:
        """One published cell: a count, or ``*``."""
        value = _count(text)
        if value is None:
            self.starred.add(key)
        else:
            assert not 1 <= value <= THRESHOLD, (key, value)
            self.known[self.index[key]] = float(value)

    def ranges(
        self, truth: dict[tuple[str, str, str], int]
    ) -> dict[tuple[str, str, str], tuple[float, float]]:
        """Smallest and largest feasible value of every withheld count."""
        values = np.array([float(truth[key]) for key in self.index])
        withheld = np.ones(len(self.index), dtype=bool)
        for i, v in self.known.items():
            withheld[i] = False
            assert values[i] == v, (list(self.index)[i], v)  # the files tell the truth
        lo, hi = feasible_ranges(values, withheld, np.vstack(self.rows))
        return {key: (lo[i], hi[i]) for key, i in self.index.items() if withheld[i]}


def _truth(frame: pl.DataFrame) -> dict[tuple[str, str, str], int]:
    out: dict[tuple[str, str, str], int] = {}
    for r in frame.iter_rows(named=True):
        u, v, d = r["clinic_id"], r["visit"], r["definition"]
        out[(u, v, "assessed")] = r["n_assessed"]
        out[(u, v, f"{d}:determined")] = r["n_determined"]
        out[(u, v, f"{d}:undetermined")] = r["n_undetermined"]
        out[(u, v, f"{d}:responders")] = r["n_responders"]
        out[(u, v, f"{d}:non_responders")] = r["n_determined"] - r["n_responders"]
    return out


def test_responders_by_clinic_and_compare_clinics_together_give_no_withheld_count_away(
    published: dict[str, Any],
) -> None:
    root, truth_frame = published["root"], published["truth"]
    clinics = sorted(truth_frame["clinic_id"].unique().to_list())
    visits = sorted(truth_frame["visit"].unique().to_list())
    truth = _truth(truth_frame)
    for u in clinics:  # a clinic without a row at a visit has 0 there (the file shows that, by no row)
        for v in visits:
            for kind in ["assessed", *(f"{d}:{k}" for d in RESPONDER_DEFINITIONS for k in KINDS)]:
                truth.setdefault((u, v, kind), 0)
        truth[(u, "w12", "compare_n")] = truth[(u, "w12", "assessed")]  # no case-mix value is missing
    for (_, v, kind), x in list(truth.items()):  # the network's counts are the clinics' sums
        if kind != "compare_n":
            truth[(NETWORK, v, kind)] = truth.get((NETWORK, v, kind), 0) + x
    attacker = Attacker(clinics, visits)
    # 1. the totals: responders without --by
    for r in _read_csv(root / "all.csv"):
        d, v = r["definition"], r["visit"]
        totals = {
            "assessed": r["n_assessed"],
            f"{d}:determined": r["n_determined"],
            f"{d}:undetermined": r["n_undetermined"],
            f"{d}:responders": r["n_responders"],
        }
        for kind, text in totals.items():
            attacker.shown((NETWORK, v, kind), text)
    # 2. responders --by clinic_id: every cell
    by_rows = _read_csv(root / "by.csv")
    whole: dict[str, bool] = {}
    for r in by_rows:
        u, d, v = r["clinic_id"], r["definition"], r["visit"]
        attacker.shown((u, v, "assessed"), r["n_assessed"])
        attacker.shown((u, v, f"{d}:determined"), r["n_determined"])
        attacker.shown((u, v, f"{d}:undetermined"), r["n_undetermined"])
        attacker.shown((u, v, f"{d}:responders"), r["n_responders"])
        if r["n_responders"] == "*":
            assert r["share"] == r["ci_low"] == r["ci_high"] == "", r  # no share or interval gives it back
        whole[u] = whole.get(u, True) and r["n_assessed"] == "*"
    present = {(r["clinic_id"], r["definition"], r["visit"]) for r in by_rows}
    for u in clinics:
        for v in visits:
            for d in RESPONDER_DEFINITIONS:
                if (u, d, v) not in present:  # no row: the attacker knows the clinic had no one there
                    attacker.shown((u, v, "assessed"), "0")
                    for k in KINDS:
                        attacker.shown((u, v, f"{d}:{k}"), "0")
    # a clinic is withheld whole or not at all: its n assessed at every visit
    assert all(
        whole[u] == any(r["n_assessed"] == "*" for r in by_rows if r["clinic_id"] == u) for u in clinics
    )
    # 3. compare-clinics: n per clinic, and nothing else of a withheld one
    payload = json.loads((root / "cmp.json").read_text(encoding="utf-8"))
    for row in payload["rows"]:
        attacker.shown((row["provider"], "w12", "compare_n"), row["n"])
        if row["n"] == "*":
            assert {k for k, val in row.items() if val is not None} == {"provider", "n"}
    withheld_cmp = {row["provider"] for row in payload["rows"] if row["n"] == "*"}
    assert withheld_cmp == {u for u, w in whole.items() if w}, "the same clinics are withheld by both"
    if withheld_cmp:
        assert payload["diagnostics"]["rows_used"] == "*"
    # the store has small cells for the attack to try: a clinic with a count of 1-10
    assert any(1 <= x <= THRESHOLD for x in truth.values())
    # 4. the attack
    found = attacker.ranges(truth)
    assert found, "something is withheld"
    for key, (lo, hi) in found.items():
        if truth[key] == 0:
            continue
        # a count never printed (non-responders, the comparison's n of a shown clinic) may follow from the
        # shown ones unless it is 1-10; a withheld one (*) may not follow at all
        if key in attacker.starred:
            assert hi - lo >= 0.5, f"{key} = {truth[key]} is pinned"
        assert hi > THRESHOLD + 0.5, f"{key} = {truth[key]} is narrowed to {lo:.1f}..{hi:.1f}"
    assert attacker.starred, "the outputs withhold something"
