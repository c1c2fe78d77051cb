"""Ingest of the ``work`` table: every cross-field and cross-table rule, and round trips through each format.

Each rule is tested on a row that breaks only that rule (next to a clean row that must pass), so a rule that
fires too widely or not at all fails here; the rows are quarantined whole and never coerced.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.ingest import ingest_paths, validate_paths
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.store import Store
from tests.ingest.conftest import write_workbook

EPISODES = pl.DataFrame(
    {
        "episode_id": ["E1", "E2"],
        "patient_id": ["P1", "P2"],
        "clinic_id": ["C1", "C1"],
        "start_date": ["2026-03-02", "2026-03-09"],
        "end_date": ["2026-09-01", None],
        "end_reason": ["completed", None],
        "age_at_start": ["45", "52"],
        "sex": ["F", "M"],
    }
)

#: A clean row: employed, on modified duties, every column filled in consistently.
CLEAN: dict[str, str | None] = {
    "episode_id": "E1",
    "assessed_on": "2026-04-13",
    "employment_status": "employed",
    "work_status": "modified_duties",
    "hours_contracted": "37.5",
    "hours_worked": "20",
    "sick_leave_days_4wk": "3",
    "wpai_q1_employed": "yes",
    "wpai_q2_hours_missed_health": "8",
    "wpai_q3_hours_missed_other": "0",
    "wpai_q4_hours_worked": "20",
    "wpai_q5_work_impairment": "4",
    "wpai_q6_activity_impairment": "5",
    "return_to_work_date": "2026-04-06",
}
#: A clean row of a retired patient: only the WPAI activity question applies.
RETIRED: dict[str, str | None] = {
    **dict.fromkeys(CLEAN),
    "episode_id": "E2",
    "assessed_on": "2026-03-09",
    "employment_status": "retired",
    "work_status": "not_applicable",
    "wpai_q1_employed": "no",
    "wpai_q6_activity_impairment": "7",
}


def _row(base: dict[str, str | None], day: str, **changes: str | None) -> dict[str, str | None]:
    return {**base, "assessed_on": day, **changes}


#: (row, the one rule it must break, the column reported)
BROKEN: list[tuple[dict[str, str | None], str, str]] = [
    (_row(CLEAN, "2026-04-14", hours_worked="40"), "hours_above_contracted", "hours_worked"),
    (
        _row(CLEAN, "2026-04-15", work_status="not_applicable", return_to_work_date=None),
        "work_status_employment",
        "work_status",
    ),
    (_row(RETIRED, "2026-03-10", work_status="off_work_other"), "work_status_employment", "work_status"),
    (_row(RETIRED, "2026-03-11", sick_leave_days_4wk="0"), "needs_paid_work", "sick_leave_days_4wk"),
    (_row(RETIRED, "2026-03-12", hours_contracted="30"), "needs_paid_work", "hours_contracted"),
    (_row(RETIRED, "2026-03-13", hours_worked="10"), "needs_paid_work", "hours_worked"),
    (
        _row(RETIRED, "2026-03-14", wpai_q2_hours_missed_health="2"),
        "wpai_needs_employed",
        "wpai_q2_hours_missed_health",
    ),
    (_row(CLEAN, "2026-04-16", wpai_q1_employed=None), "wpai_needs_employed", "wpai_q5_work_impairment"),
    (_row(CLEAN, "2026-04-17", wpai_q4_hours_worked="161"), "wpai_hours_above_week", "wpai_q4_hours_worked"),
    (
        _row(CLEAN, "2026-04-18", work_status="off_work_back_leg"),
        "return_while_off_work",
        "return_to_work_date",
    ),
    (
        _row(CLEAN, "2026-04-19", return_to_work_date="2026-04-20"),
        "return_after_assessment",
        "return_to_work_date",
    ),
    (_row(CLEAN, "2026-04-20", return_to_work_date="2026-02-27"), "before_start", "return_to_work_date"),
    (_row(CLEAN, "2026-04-21", employment_status="freelance"), "allowed_values", "employment_status"),
    (_row(CLEAN, "2026-04-22", wpai_q5_work_impairment="11"), "range", "wpai_q5_work_impairment"),
    (_row(CLEAN, "2026-04-23", sick_leave_days_4wk="29"), "range", "sick_leave_days_4wk"),
    (_row(CLEAN, "2026-04-24", work_status=None), "required_value", "work_status"),
]


def _write(tmp_path: Path, rows: list[dict[str, str | None]]) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    EPISODES.write_csv(src / "episodes.csv")
    pl.DataFrame(rows, schema=dict.fromkeys(CLEAN, pl.String)).write_csv(src / "work.csv")
    return src


def test_clean_rows_pass(tmp_path: Path) -> None:
    result = validate_paths(_write(tmp_path, [CLEAN, RETIRED]))
    assert result.ok, result.errors
    work = next(t for t in result.tables if t.source.table == "work")
    assert work.valid["hours_contracted"].to_list() == [37.5, None]
    assert work.valid["wpai_q1_employed"].to_list() == [True, False]


def test_each_rule_is_reported_on_its_row_and_column_and_quarantines_the_row(tmp_path: Path) -> None:
    rows = [CLEAN, RETIRED] + [r for r, _, _ in BROKEN]
    result = validate_paths(_write(tmp_path, rows))
    work = next(t for t in result.tables if t.source.table == "work")
    assert (work.rows_read, work.rows_valid, work.rows_quarantined) == (len(rows), 2, len(BROKEN))
    errors = result.errors.filter(pl.col("table") == "work")
    for i, (_, rule, column) in enumerate(BROKEN):
        line = i + 4  # header is line 1, the two clean rows lines 2-3
        found = errors.filter(pl.col("row") == line)
        assert found.select("rule", "column").rows() == [(rule, column)] or (
            # a missing question 1 gates all four WPAI questions 2-5: one error each
            rule == "wpai_needs_employed" and set(found["rule"]) == {rule} and column in set(found["column"])
        ), (line, found.select("rule", "column", "message").rows())
        assert found["message"].str.len_chars().min() > 30  # a sentence naming the problem and the fix
    q1 = errors.filter(pl.col("row") == 4 + 7)
    assert q1.height == 4 and q1["message"][0].endswith("or record wpai_q1_employed")
    assert "question 1 (wpai_q1_employed) is empty" in q1["message"][0]


def test_messages_name_values_and_fixes(tmp_path: Path) -> None:
    result = validate_paths(_write(tmp_path, [r for r, _, _ in BROKEN[:4]]))
    msg = dict(zip(result.errors["rule"], result.errors["message"], strict=False))
    assert msg["hours_above_contracted"].startswith("hours_worked 40.0 is above hours_contracted 37.5")
    assert "employment_status retired is not paid work: use not_applicable" in msg["work_status_employment"]
    assert msg["needs_paid_work"].startswith("sick_leave_days_4wk is given but employment_status retired")


def test_return_date_before_start_needs_the_episode_and_uses_the_store(tmp_path: Path) -> None:
    src = _write(tmp_path, [_row(CLEAN, "2026-04-20", return_to_work_date="2026-02-27")])
    alone = validate_paths([src / "work.csv"])
    assert alone.ok and "not_checked" in alone.issues["rule"].to_list()
    db = tmp_path / "s.duckdb"
    ingest_paths(src / "episodes.csv", db=db)
    with_store = validate_paths([src / "work.csv"], db=db)
    err = with_store.errors.row(0, named=True)
    assert (err["row"], err["column"], err["rule"], err["value"]) == (
        2,
        "return_to_work_date",
        "before_start",
        "2026-02-27",
    )
    assert "before the episode start 2026-03-02" in err["message"]


def _frames() -> dict[str, pl.DataFrame]:
    spec = TABLE_SPECS["work"]
    raw = pl.DataFrame([CLEAN, RETIRED], schema=dict.fromkeys(CLEAN, pl.String))
    work = raw.with_columns(
        pl.col("wpai_q1_employed").replace_strict({"yes": True, "no": False}, return_dtype=pl.Boolean),
        *[
            pl.col(c).str.to_date() if dt == pl.Date else pl.col(c).cast(dt)
            for c, dt in spec.dtypes.items()
            if c != "wpai_q1_employed" and dt != pl.String
        ],
    )
    episodes = EPISODES.with_columns(
        pl.col("start_date", "end_date").str.to_date(), pl.col("age_at_start").cast(pl.Int64)
    )
    return {"episodes": episodes, "work": work}


@pytest.mark.parametrize("fmt", ["csv", "parquet", "excel"])
def test_round_trip_through_each_format(tmp_path: Path, fmt: str) -> None:
    frames = _frames()
    src = tmp_path / "src"
    src.mkdir()
    if fmt == "excel":
        paths = [write_workbook(frames, src / "clinic.xlsx")]
    else:
        paths = []
        for name, frame in frames.items():
            path = src / f"{name}.{fmt}"
            frame.write_csv(path) if fmt == "csv" else frame.write_parquet(path)
            paths.append(path)
    db = tmp_path / "s.duckdb"
    result = ingest_paths(paths, db=db)
    assert result.summary()["rows_quarantined"].sum() == 0
    with Store(db, read_only=True) as store:
        stored = store.read("work")
    expected = frames["work"].select(TABLE_SPECS["work"].columns).sort("episode_id", "assessed_on")
    assert stored.equals(expected), (stored, expected)
    # the same file again changes nothing
    again = ingest_paths(paths, db=db)
    assert again.summary().filter(pl.col("table") == "work")["unchanged"].to_list() == [2]
