"""The validation report leads to the root cause: roots first, cascades collapsed, every value visible."""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest

from sciatica_outcomes.ingest import validate_paths, write_html_report, write_json_report
from sciatica_outcomes.ingest.report import RULE_DESCRIPTIONS, RULE_FIXES, RULE_TITLES
from sciatica_outcomes.synth import Cohort, write_cohort


def _set(path: Path, line: int, column: str, value: str) -> None:
    """Set one cell of a CSV file (line = file line, header = 1), keeping every other byte."""
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory, tiny_cohort: Cohort) -> Path:
    out = tmp_path_factory.mktemp("bad")
    write_cohort(tiny_cohort, out)
    (out / "truth.json").unlink()
    _set(out / "sessions.csv", 3, "pain_before", "7/10")  # a rejected session with exercise rows
    _set(out / "measures.csv", 6, "episode_id", "EP_PLANTED")  # an unknown episode id
    for line in range(10, 40):  # 30 distinct bad values of one rule, more than max_examples
        _set(out / "sessions.csv", line, "rpe", f"r{line}")
    for line in range(50, 110):  # one bad value 60 times
        _set(out / "sessions.csv", line, "status", "done")
    return out


@pytest.fixture(scope="module")
def report(bad_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    res = validate_paths([bad_dir])
    out = tmp_path_factory.mktemp("report")
    page = write_html_report(res, out / "r.html", max_examples=5)
    data = json.loads(write_json_report(res, out / "r.json").read_text())
    return page.read_text(), data, page


def _text(page: str) -> str:
    """The page's visible text (tags dropped, entities decoded, spaces collapsed)."""
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_root_first_and_the_cascade_collapsed_under_its_parents_line(bad_dir: Path, report: tuple) -> None:
    page, data, _ = report
    text = _text(page)
    session = pl.read_csv(bad_dir / "sessions.csv", infer_schema=False).row(1, named=True)["session_id"]
    exercises = pl.read_csv(bad_dir / "session_exercises.csv", infer_schema=False)
    n_dep = exercises.filter(pl.col("session_id") == session).height
    assert n_dep > 1
    root_at = text.index("Problems at their source")
    cascade_at = text.index("Rows rejected with the row they depend on")
    assert root_at < text.index("7/10") < cascade_at
    collapsed = (
        f"sessions.csv line 3 (sessions {session}): type pain_before '7/10' {n_dep} dependent "
        "session_exercises row(s) rejected because their session was rejected"
    )
    assert collapsed in text
    # the cascade is not listed row by row among the problems, nor as a rule of its own
    assert "(parent_rejected):" not in text[:cascade_at]
    assert text.count(f"'{session}' is in") == 0
    entry = next(c for c in data["cascades"] if c["parent_row"] == 3 and c["parent_table"] == "sessions")
    assert entry["rows"] == n_dep and entry["table"] == "session_exercises"


def test_every_distinct_value_and_kind_is_visible_with_exact_counts(report: tuple) -> None:
    page, data, _ = report
    text = _text(page)
    assert "EP_PLANTED" in text  # the planted unknown episode id is in the HTML, not only in the JSON
    for line in range(10, 40):
        assert f"r{line}" in text  # 30 distinct values, with max_examples=5
    # one value 60 times: the exact count, 5 example lines and how many more
    assert re.search(r"done 60 \S+sessions\.csv line 50, 51, 52, 53, 54 \.\.\. and 55 more", text)
    kinds = {i["rule"] for i in data["issues"] if i["severity"] == "error"} - {"parent_rejected"}
    assert kinds >= {"type", "allowed_values", "foreign_key"}
    for rule in kinds:
        assert f"{RULE_TITLES[rule]} ({rule}): " in text
        assert f"How to fix: {RULE_FIXES[rule]}" in text


def test_every_rule_has_a_title_and_a_fix() -> None:
    assert set(RULE_TITLES) == set(RULE_DESCRIPTIONS) == set(RULE_FIXES)
    assert all(RULE_FIXES.values()) and all(RULE_TITLES.values())


def test_counts_carry_thousands_separators(report: tuple, bad_dir: Path) -> None:
    page, _, _ = report
    n = pl.read_csv(bad_dir / "session_exercises.csv", infer_schema=False).height
    assert n >= 1000
    assert f">{n:,}<" in page and f">{n}<" not in page


def test_cascades_chain_through_a_rejected_episode(tmp_path: Path, bad_dir: Path) -> None:
    d = tmp_path / "d"
    shutil.copytree(bad_dir, d)
    _set(d / "episodes.csv", 2, "age_at_start", "forty")
    episode = pl.read_csv(d / "episodes.csv", infer_schema=False)["episode_id"][0]
    res = validate_paths([d])
    c = res.cascades
    sessions = pl.read_csv(d / "sessions.csv", infer_schema=False)
    mine = sessions.with_row_index("i").filter(pl.col("episode_id") == episode)
    via_episode = c.filter(pl.col("table") == "sessions")
    assert set(via_episode["row"]) == set((mine["i"] + 2).to_list())
    assert set(via_episode["parent_row"]) == {2}
    # their exercises point to the session's line (not to the episode): each level names its own parent
    first_session_line = int(mine["i"][0]) + 2
    ex = c.filter((pl.col("table") == "session_exercises") & (pl.col("parent_row") == first_session_line))
    assert ex.height > 0 and set(ex["parent_table"]) == {"sessions"}


_PROBE = """<!doctype html><html><body style="margin:0">
<iframe id="f" src="{src}" style="width:{w}px;height:2400px;border:0"></iframe>
<script>document.getElementById('f').onload=function(){{var d=this.contentDocument.documentElement;
document.body.setAttribute('data-sw',String(d.scrollWidth));
document.body.setAttribute('data-cw',String(d.clientWidth));}};</script></body></html>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium")
def test_the_page_fits_a_phone_without_horizontal_scrolling(report: tuple, tmp_path: Path) -> None:
    _, _, page = report
    for width in (390, 1280):
        probe = page.parent / f"probe_{width}.html"
        probe.write_text(_PROBE.format(src=page.name, w=width))
        out = subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-file-access-from-files",
                "--virtual-time-budget=3000",
                "--window-size=1400,2400",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        got = re.search(r'data-sw="(\d+)" data-cw="(\d+)"', out)
        assert got is not None, out[-500:]
        scroll, client = map(int, got.groups())
        assert client <= width and scroll <= client, (width, scroll, client)


def test_a_wide_line_with_several_bad_measures_is_listed_once(tmp_path: Path) -> None:
    (tmp_path / "v.csv").write_text("episode_id,assessed_on,odi,nprs_leg,nprs_back\nEP 1,2026-01-01,30,5,4\n")
    res = validate_paths([tmp_path / "v.csv"], layout="visits-wide")
    text = _text(write_html_report(res, tmp_path / "r.html").read_text())
    assert re.search(r"EP 1 3 \S*v\.csv line 2 ", text), text
