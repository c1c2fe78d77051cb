"""Validation reports: every issue as JSON, and a readable HTML page grouped by rule with exact counts."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from sciatica_outcomes.outputs import atomic_output
from sciatica_outcomes.schemas import SCHEMA_VERSION

if TYPE_CHECKING:
    from sciatica_outcomes.ingest.validate import ValidationResult

__all__ = ["RULE_DESCRIPTIONS", "report_dict", "write_html_report", "write_json_report"]

#: Plain-English meaning of every rule the engine reports.
RULE_DESCRIPTIONS: dict[str, str] = {
    "type": "The value is not of the column's type (whole number, number, YYYY-MM-DD date, true/false).",
    "integer": "A whole number was expected but the value has a fraction.",
    "required_value": "A required cell is empty.",
    "missing_column": "A required column is missing from the file; every row lacks it.",
    "range": "The value is outside the column's allowed range.",
    "allowed_values": "The value is not one of the column's allowed codes.",
    "format": "The code contains characters that are not allowed (spaces, accents, invisible characters).",
    "duplicate_key": "Two or more rows share the table's key; none of them is stored until one is removed.",
    "foreign_key": "The row points to an episode or session that is neither in this ingest nor in the store.",
    "outside_episode": "The date falls outside its episode (beyond the documented tolerance).",
    "end_before_start": "The episode ends before it starts.",
    "end_reason_without_end_date": "An end reason is given for an episode without an end date.",
    "dose_missing": "An exercise row has neither repetitions nor hold time.",
    "measure_range": "The value is outside the range of its measure (data/schemas/measures.csv).",
    "measure_integer": "The measure is scored in whole points but the value has a fraction.",
    "cap_not_applicable": "stopped_reason or cap_min is given for a measure that is not a capped test.",
    "above_cap": "A capped tolerance test exceeds its own cap.",
    "cap_mismatch": "A test stopped at the cap must have value equal to cap_min.",
    "unknown_version": "The instrument version is not one of the measure's known versions.",
    "response_range": "A questionnaire item response is outside the instrument's range.",
    "unknown_column": "A column that is not part of the table; it is not stored.",
    "blank_row": "Blank lines or rows were skipped.",
    "empty_file": "The file holds no data.",
    "encoding": "The file is not UTF-8; it was decoded with the detected encoding.",
    "generated_column": "A key column was filled in from the row order.",
    "not_checked": "A cross-table rule could not be checked because the referenced table is absent.",
    "skipped_file": "A file in a directory was skipped.",
    "skipped_sheet": "A workbook sheet was skipped.",
    "cell_outside_header": "Cells to the right of the last named column are not read.",
    "unmapped": "A source field has no mapping to a canonical column.",
    "fhir_shape": (
        "A FHIR entry has a value of the wrong JSON kind at the path shown (e.g. a string where an object "
        "belongs); the whole entry is quarantined."
    ),
    "identifier_value": (
        "A code column holds an identifier (SSN, phone number, e-mail, date, personal number or MRN), not a "
        "pseudonymous code; it is shown as a placeholder and never stored."
    ),
    "redacted": "Identifiers in a free-text column were replaced by placeholders before storing.",
}


def report_dict(result: ValidationResult) -> dict[str, Any]:
    """The JSON report as a dict: summary per source, counts per rule, and every issue."""
    issues = result.issues
    by_rule = (
        issues.group_by("severity", "rule", "table", "column")
        .len("count")
        .sort("severity", "count", "rule", "table", "column", descending=[False, True, False, False, False])
    )
    return {
        "generated_at_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "schema_version": SCHEMA_VERSION,
        "ok": result.ok,
        "summary": result.counts().to_dicts(),
        "by_rule": by_rule.to_dicts(),
        "issues": issues.to_dicts(),
    }


def write_json_report(result: ValidationResult, path: str | Path) -> Path:
    """Write every issue (not capped) with per-source and per-rule counts as JSON.

    The file is written atomically (:func:`~sciatica_outcomes.outputs.atomic_output`): a full disk leaves no
    empty or partial report.
    """
    path = Path(path)
    text = json.dumps(report_dict(result), ensure_ascii=False, indent=1, default=str)
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def _table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:80em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#f3f3f3}h2{margin-top:1.5em}.ok{color:#1a7f37}.bad{color:#b42318}.muted{color:#666}
"""


def write_html_report(result: ValidationResult, path: str | Path, *, max_examples: int = 20) -> Path:
    """Write a self-contained HTML page: per-source counts, then one section per rule with exact counts and
    at most ``max_examples`` example rows (written atomically, as the JSON report)."""
    path = Path(path)
    issues = result.issues
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Validation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Validation report</h1>",
        f"<p class='muted'>Schema version {html.escape(SCHEMA_VERSION)}; generated "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}.</p>",
    ]
    n_err = issues.filter(pl.col("severity") == "error").height
    status = (
        "<p class='ok'>Every row passed.</p>"
        if result.ok
        else f"<p class='bad'>{n_err:,} problem(s) found; the rows concerned are quarantined.</p>"
    )
    parts += [status, "<h2>Sources</h2>", _table(result.counts())]
    for severity, title in (("error", "Problems by rule"), ("warning", "Notices")):
        sub = issues.filter(pl.col("severity") == severity)
        if sub.is_empty():
            continue
        parts.append(f"<h2>{title}</h2>")
        counts = sub.group_by("rule").len("count").sort("count", "rule", descending=[True, False])
        for rule, count in counts.iter_rows():
            rows = sub.filter(pl.col("rule") == rule)
            desc = RULE_DESCRIPTIONS.get(rule, "")
            shown = min(count, max_examples)
            parts.append(f"<h3>{html.escape(rule)}: {count:,}</h3><p>{html.escape(desc)}</p>")
            per_col = rows.group_by("table", "column").len("count").sort("count", descending=True)
            parts.append(_table(per_col))
            parts.append(f"<p class='muted'>{shown:,} of {count:,} shown.</p>")
            parts.append(
                _table(rows.head(max_examples).select("file", "table", "row", "column", "value", "message"))
            )
    parts.append("</body></html>")
    with atomic_output(path) as tmp:
        tmp.write_text("".join(parts), encoding="utf-8")
    return path
