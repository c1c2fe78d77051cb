"""The data guide comes from the schemas, lists everything they accept, and its committed copies are fresh."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.reports.data_guide import (
    _MAX_MISSING,
    GUIDE_HTML,
    GUIDE_MARKDOWN,
    REGENERATE,
    _scoring_rule,
    guide_blocks,
    render_html,
    render_markdown,
    shipped_guide,
)
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.documentation import coded_columns, value_labels
from sciatica_outcomes.schemas.vocabulary import INSTRUMENT_CODES
from sciatica_outcomes.scoring import INSTRUMENTS, score_questionnaires
from sciatica_outcomes.scoring.questionnaire_text import ITEM_TOPICS

REPO = Path(__file__).resolve().parents[2]
REPO_COMMAND = f"`{REGENERATE}` (or `make guide`)"
runner = CliRunner()


@pytest.fixture(scope="module")
def markdown() -> str:
    return render_markdown(guide_blocks())


@pytest.mark.parametrize("committed", [GUIDE_MARKDOWN, GUIDE_HTML], ids=str)
def test_committed_guide_is_fresh(committed: Path) -> None:
    blocks = guide_blocks()
    fresh = render_markdown(blocks) if committed.suffix == ".md" else render_html(blocks)
    text = (REPO / committed).read_text(encoding="utf-8")
    assert text == fresh, f"{committed} is stale: run {REPO_COMMAND} from the repository root"


def test_the_package_ships_the_html_guide() -> None:
    assert shipped_guide().read_text(encoding="utf-8") == render_html(guide_blocks())


def _section(markdown: str, anchor: str) -> str:
    start = markdown.index(f'<a id="{anchor}"></a>')
    nxt = markdown.find("\n## ", start)
    return markdown[start : nxt if nxt > 0 else None]


@pytest.mark.parametrize("table", list(TABLE_SPECS))
def test_every_column_is_a_row_of_its_table_with_type_and_requirement(markdown: str, table: str) -> None:
    section = _section(markdown, f"table-{table}")
    rows = {
        m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", section, flags=re.MULTILINE)
    }
    spec = TABLE_SPECS[table]
    assert list(rows) == list(spec.columns)
    for column in spec.columns:
        cells = [c.strip() for c in rows[column].strip("|").split(" | ")]
        assert len(cells) == 7, rows[column]
        required = column in spec.required_columns and not spec.schema.columns[column].nullable
        assert (cells[5] == "required") == required, (column, cells[5])


@pytest.mark.parametrize(
    ("table", "column"), [(t, c) for t in TABLE_SPECS for c in coded_columns(t)], ids=str
)
def test_every_code_appears_with_its_label(markdown: str, table: str, column: str) -> None:
    labels = value_labels(table, column)
    where = {"exercise": "exercise-catalog", "measure": "measure-catalog"}.get(column, f"table-{table}")
    section = _section(markdown, where)
    for code, label in labels.items():
        assert f"`{code}` {label}" in section or f"| `{code}` | {label} |" in section, (column, code)


@pytest.mark.parametrize("instrument", INSTRUMENT_CODES)
def test_every_questionnaire_item_is_listed_with_its_topic(markdown: str, instrument: str) -> None:
    section = markdown[markdown.index(f'<a id="instrument-{instrument}"></a>') :]
    section = section[: section.find("\n### ", 1)] if "\n### " in section else section
    assert "Responses: " in section
    inst = INSTRUMENTS.get(instrument)
    if inst is None or inst.items is None:
        assert "| Item |" not in section
        return
    for version, items in inst.items.items():
        for item in items:
            row = re.search(rf"^\| `{re.escape(item)}` \| (.+) \| (.+) \|$", section, flags=re.MULTILINE)
            assert row is not None, item
            assert row.group(1) == ITEM_TOPICS[instrument][item]
            assert version in row.group(2).split(", ")


def test_html_is_self_contained_and_escaped() -> None:
    page = render_html(guide_blocks())
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert '"89 or over"' not in page and "&quot;89 or over&quot;" in page  # text is escaped
    assert 'id="table-session_exercises"' in page and 'href="#table-episodes"' in page
    # every table cell carries its header for the phone layout
    assert page.count("<td ") == page.count('<td data-label="')


def test_cli_writes_both_files(tmp_path: Path) -> None:
    res = runner.invoke(app, ["schemas", "guide", "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    blocks = guide_blocks()
    assert (tmp_path / "g" / "data-guide.md").read_text(encoding="utf-8") == render_markdown(blocks)
    assert (tmp_path / "g" / "data-guide.html").read_text(encoding="utf-8") == render_html(blocks)


def test_cli_outside_a_checkout_exits_2_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["schemas", "guide"])
    assert res.exit_code == 2
    assert "pass --out DIR" in res.output and "Traceback" not in res.output
    assert str(shipped_guide()) in res.output
    assert not (tmp_path / "docs").exists()


@pytest.mark.parametrize("code", ["odi", "rmdq", "sbi", "sfi"])
def test_missing_item_limit_quoted_by_the_guide_is_the_one_scoring_applies(code: str) -> None:
    """The guide names a ClinicalConfig field per instrument; scoring must refuse exactly past that limit."""
    config = ClinicalConfig()
    limit = getattr(config, _MAX_MISSING[code])
    inst = INSTRUMENTS[code]
    assert inst.items is not None
    items = inst.items[inst.default_version]
    assert f"`ClinicalConfig.{_MAX_MISSING[code]}`" in _scoring_rule(inst, config)

    def score(missing: int) -> bool:
        frame = pl.DataFrame(
            {
                "episode_id": "E1",
                "assessed_on": date(2026, 1, 5),
                "instrument": code,
                "item": list(items),
                "response": [None] * missing + [inst.item_max] * (len(items) - missing),
            },
            schema_overrides={"response": pl.Int64},
        )
        return score_questionnaires(frame, config).ok

    assert score(limit)
    assert not score(limit + 1)
