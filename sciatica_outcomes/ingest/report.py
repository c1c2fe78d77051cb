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
from sciatica_outcomes.schemas.vocabulary import CANONICAL_TABLES

if TYPE_CHECKING:
    from sciatica_outcomes.ingest.validate import ValidationResult

__all__ = [
    "MAX_VALUES",
    "RULE_DESCRIPTIONS",
    "RULE_FIXES",
    "RULE_TITLES",
    "report_dict",
    "write_html_report",
    "write_json_report",
]

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
    "parent_rejected": (
        "The row points to a session or episode that is in this ingest but was itself rejected; it is "
        "rejected with it."
    ),
    "reshaped": "A wide visit sheet was reshaped into the long measures and questionnaire_items tables.",
    "no_values": "Lines of a wide visit sheet hold no measure or item value; nothing is stored from them.",
    "decimal_comma": (
        "Number cells of a file read with a decimal point are written with a decimal comma (7,5); they are "
        "type errors, the format is never guessed."
    ),
}

#: Plain headings of the rules in the HTML report (the rule code follows in brackets).
RULE_TITLES: dict[str, str] = {
    "type": "Value of the wrong type",
    "integer": "Fraction in a whole-number column",
    "required_value": "Required cell empty",
    "missing_column": "Required column missing",
    "range": "Value out of range",
    "allowed_values": "Code not allowed",
    "format": "Code with characters that are not allowed",
    "duplicate_key": "Same key on several rows",
    "foreign_key": "Points to a row that does not exist",
    "outside_episode": "Date outside its episode",
    "end_before_start": "Episode ends before it starts",
    "end_reason_without_end_date": "End reason without an end date",
    "dose_missing": "Exercise without a dose",
    "measure_range": "Measure value out of its range",
    "measure_integer": "Fraction in a whole-point measure",
    "cap_not_applicable": "Cap given for a test without a cap",
    "above_cap": "Tolerance test above its cap",
    "cap_mismatch": "Test stopped at the cap, value not the cap",
    "unknown_version": "Unknown instrument version",
    "response_range": "Item response out of range",
    "unknown_column": "Column not part of the table",
    "blank_row": "Blank lines skipped",
    "empty_file": "Empty file",
    "encoding": "File not in UTF-8",
    "generated_column": "Key column filled in from the row order",
    "not_checked": "Cross-table rule not checked",
    "skipped_file": "File skipped",
    "skipped_sheet": "Sheet skipped",
    "cell_outside_header": "Cells right of the header not read",
    "unmapped": "Field without a mapping",
    "fhir_shape": "FHIR entry of the wrong shape",
    "identifier_value": "Identifier in a code column",
    "redacted": "Identifiers redacted in free text",
    "parent_rejected": "Rejected with the row it depends on",
    "reshaped": "Wide visit sheet reshaped",
    "no_values": "Visit lines without values",
    "decimal_comma": "Decimal commas in a file read with decimal points",
}

#: One "how to fix" line per rule, shown under its heading in the HTML report.
RULE_FIXES: dict[str, str] = {
    "type": (
        "Write the value in the column's type: whole numbers, numbers with a decimal point (or pass "
        "--decimal , for decimal commas), dates as YYYY-MM-DD, true/false."
    ),
    "integer": (
        "Round the value to a whole number at the source, or check whether it belongs in another column."
    ),
    "required_value": (
        "Fill in the cell; if the value is unknown the row cannot be stored, so remove or complete it."
    ),
    "missing_column": (
        "Add the column (check its spelling in the header); a wide visit sheet needs --layout visits-wide."
    ),
    "range": "Correct the value; the allowed range is in the message and in data/schemas.",
    "allowed_values": "Use one of the codes listed in the message (check spelling and case).",
    "format": (
        "Rewrite the code with letters, digits, '_', '-' or '.' only (no spaces, accents or "
        "invisible characters)."
    ),
    "duplicate_key": "Keep one row per key: remove the extra copies or correct the key of the wrong ones.",
    "foreign_key": (
        "Correct the code, or add the episode or session it names to this ingest (or ingest it first)."
    ),
    "outside_episode": "Correct the date or the episode's start and end dates.",
    "end_before_start": "Correct the start or end date of the episode.",
    "end_reason_without_end_date": (
        "Add the end date, or leave the end reason empty while the episode is open."
    ),
    "dose_missing": "Record the repetitions (reps) or the hold time (hold_s) of the exercise.",
    "measure_range": "Correct the value; the measure's range is in data/schemas/measures.csv.",
    "measure_integer": "Enter the score in whole points as the instrument scores it.",
    "cap_not_applicable": "Leave stopped_reason and cap_min empty for measures that are not capped tests.",
    "above_cap": "Correct the value or the cap: a capped test cannot last longer than its cap.",
    "cap_mismatch": "A test stopped at the cap has value equal to cap_min: correct one of them.",
    "unknown_version": "Use one of the versions listed in data/schemas/measures.csv.",
    "response_range": "Correct the item response to the instrument's range.",
    "unknown_column": (
        "Rename the column to its canonical name if it should be stored, else ignore this notice."
    ),
    "blank_row": "Nothing to do; remove the blank lines to silence this notice.",
    "empty_file": "Export the table again, or remove the empty file.",
    "encoding": "Save the file as CSV (UTF-8) to be sure every character is read as written.",
    "generated_column": "Add the key column to the file if the row order is not the intended numbering.",
    "not_checked": "Ingest the referenced table in the same run (or into the same store first).",
    "skipped_file": "Name the file after a table (or pass --table) if it should be ingested.",
    "skipped_sheet": "Name the sheet after a table if it should be ingested.",
    "cell_outside_header": "Give the column a header, or delete the stray cells.",
    "unmapped": "Add the field to the mapping if it should be stored.",
    "fhir_shape": (
        "Export the bundle again from the FHIR server; the path in the message shows the broken value."
    ),
    "identifier_value": "Replace the column with pseudonymous codes (sciatica-outcomes pseudonymize).",
    "redacted": "Keep names, phone numbers, e-mail addresses and record numbers out of free text.",
    "parent_rejected": "Fix the row it depends on (its line is shown); this row is then stored with it.",
    "reshaped": "Nothing to do.",
    "no_values": "Nothing to do, unless values are missing from those lines.",
    "decimal_comma": "Pass --decimal , (and --delimiter ; if the fields are separated by semicolons).",
}

#: Distinct offending values listed per rule in the HTML report (counts stay exact; the JSON lists all).
MAX_VALUES = 1_000


def report_dict(result: ValidationResult) -> dict[str, Any]:
    """The JSON report as a dict: summary per source, counts per rule, cascades and every issue.

    ``cascades`` has one entry per rejected parent row (table, file, line, key) and dependent table with
    the number of rows rejected with it (rule ``parent_rejected``).
    """
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
        "cascades": (
            result.cascades.group_by(
                "parent_table", "parent_file", "parent_row", "value", "table", maintain_order=True
            )
            .len("rows")
            .to_dicts()
        ),
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


def _cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return html.escape(str(v))


def _table(frame: pl.DataFrame, labels: dict[str, str] | None = None) -> str:
    """A table that stacks into labelled cards at phone width (``data-label`` per cell)."""
    names = [(labels or {}).get(c, c.replace("_", " ")) for c in frame.columns]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td data-label='{html.escape(n)}'>{_cell(v)}</td>" for n, v in zip(names, row, strict=True)
        )
        + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:1.5em auto;padding:0 1em;max-width:72em;color:#222;
line-height:1.4}
table{border-collapse:collapse;margin:.5em 0 1.2em;width:100%}
td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f3f3f3}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{margin:1.4em 0 .3em}
.ok{color:#1a7f37}.bad{color:#b42318}.muted{color:#666}.fix{background:#f6f8fa;border-left:4px solid #0969da;
padding:.4em .6em}.root{border-left:4px solid #b42318;padding-left:.6em;margin:.8em 0}
code{overflow-wrap:anywhere}
@media (max-width:640px){
body{margin:.5em auto;padding:0 .6em;font-size:15px}
table,thead,tbody,tr,td,th{display:block;width:100%}
thead{position:absolute;left:-9999px;top:-9999px}
tr{border:1px solid #ccc;border-radius:6px;margin:0 0 .6em;padding:.3em .4em}
td{border:none;padding:.15em 0;overflow-wrap:anywhere}
td::before{content:attr(data-label) ": ";font-weight:600;color:#555}
}
"""

_TABLE_ORDER = CANONICAL_TABLES  # dependency order: parents first
_PARENT_WORD = {"sessions": "session", "episodes": "episode"}
#: Notices shown first ("Start here"): one cause of many row problems.
_LEAD_RULES = ("decimal_comma",)


def _rule_section(
    rule: str, rows: pl.DataFrame, max_examples: int, max_values: int, dependants: pl.DataFrame
) -> list[str]:
    """One rule: heading, description, how to fix, and every distinct offending value.

    ``dependants`` (``file, row, n``) counts, per rejected parent row, the rows rejected with it: the
    value table then tells how many rows each value takes down with it.
    """
    count = rows.height
    title = RULE_TITLES.get(rule, rule)
    parts = [
        f"<section class='rule'><h3>{html.escape(title)} ({html.escape(rule)}): {count:,}</h3>",
        f"<p>{html.escape(RULE_DESCRIPTIONS.get(rule, ''))}</p>",
        f"<p class='fix'><strong>How to fix:</strong> {html.escape(RULE_FIXES.get(rule, ''))}</p>",
    ]
    k = max_examples
    if not dependants.is_empty():
        rows = rows.join(dependants, on=["file", "row"], how="left", maintain_order="left")
        # a parent row with several problems takes its dependants down once: count them at its first problem
        first = pl.int_range(pl.len()).over("file", "row") == 0
        rows = rows.with_columns(pl.when(first).then(pl.col("n")).fill_null(0).alias("n"))
    else:
        rows = rows.with_columns(pl.lit(0, pl.Int64).alias("n"))
    values = (
        rows.with_columns(pl.col("value").fill_null("(empty)"))
        .group_by("table", "file", "column", "value", maintain_order=True)
        .agg(
            pl.len().alias("rows"),
            pl.col("row").min().alias("__first"),
            pl.col("message").first().alias("message"),
            # a line of a wide visit sheet can hold several rows with the value: each line is listed once
            pl.col("row")
            .drop_nulls()
            .unique()
            .sort()
            .head(k)
            .cast(pl.String)
            .str.join(", ")
            .alias("__lines"),
            pl.col("row").drop_nulls().n_unique().alias("__n_lines"),
            pl.col("n").sum().cast(pl.Int64).alias("rejected_with_them"),
        )
        .sort("rows", "__first", descending=[True, False], nulls_last=True)
    )
    n_values = values.height
    more = pl.when(pl.col("__n_lines") > k).then(pl.format(" ... and {} more", pl.col("__n_lines") - k))
    table = values.head(max_values).select(
        "table",
        "column",
        "value",
        "rows",
        pl.when(pl.col("__lines") != "")
        .then(pl.format("{} line {}{}", pl.col("file"), pl.col("__lines"), more.otherwise(pl.lit(""))))
        .otherwise(pl.col("file"))
        .alias("where"),
        "message",
        *(["rejected_with_them"] if not dependants.is_empty() else []),
    )
    parts.append(
        f"<p class='muted'>{n_values:,} distinct value(s) in {count:,} row(s); up to {max_examples:,} "
        "lines shown per value.</p>"
    )
    labels = {
        "value": "value as written",
        "where": "where (file and lines)",
        "rejected_with_them": "dependent rows rejected with them",
    }
    parts.append(_table(table, labels))
    if n_values > max_values:
        parts.append(
            f"<p class='muted'>{n_values - max_values:,} more distinct value(s) are listed in the JSON "
            "report.</p>"
        )
    parts.append("</section>")
    return parts


def _cascade_section(result: ValidationResult, max_examples: int, max_values: int) -> list[str]:
    cascades = result.cascades
    if cascades.is_empty():
        return []
    errors = result.errors
    own = (
        errors.group_by("file", "row", maintain_order=True)
        .agg(
            pl.format("{} {} '{}'", pl.col("rule"), pl.col("column"), pl.col("value").fill_null(""))
            .str.join("; ")
            .alias("problem")
        )
        .rename({"file": "parent_file", "row": "parent_row"})
    )
    order = {t: i for i, t in enumerate(_TABLE_ORDER)}
    groups = (
        cascades.group_by("parent_table", "parent_file", "parent_row", "value", "table", maintain_order=True)
        .agg(pl.len().alias("rows"), pl.col("file").first().alias("file"), pl.col("row").sort().alias("row"))
        .join(own, on=["parent_file", "parent_row"], how="left", maintain_order="left")
        .with_columns(
            pl.col("parent_table").replace_strict(order, default=99, return_dtype=pl.Int64).alias("__o")
        )
        .sort("__o", "parent_file", "parent_row")
    )
    total = cascades.height
    parts = [
        "<h2>Rows rejected with the row they depend on</h2>",
        f"<p>{total:,} row(s) were rejected only because the session or episode they point to was rejected "
        f"({groups.height:,} parent row(s)). Fix the parent row's own problem (listed above) and they are "
        "stored with it.</p>",
        f"<p class='fix'><strong>How to fix:</strong> {html.escape(RULE_FIXES['parent_rejected'])}</p>",
    ]
    for g in groups.head(max_values).iter_rows(named=True):
        word = _PARENT_WORD.get(g["parent_table"], g["parent_table"])
        lines = ", ".join(f"{r:,}" for r in g["row"][:max_examples])
        more = len(g["row"]) - min(len(g["row"]), max_examples)
        lines += f" ... and {more:,} more" if more else ""
        problem = g["problem"] or "see the parent row"
        parts.append(
            "<div class='root'>"
            f"<p><strong>{html.escape(g['parent_file'])} line {g['parent_row']:,}</strong> "
            f"({html.escape(g['parent_table'])} {html.escape(str(g['value']))}): {html.escape(problem)}</p>"
            f"<p>{g['rows']:,} dependent {html.escape(g['table'])} row(s) rejected because their {word} was "
            f"rejected ({html.escape(g['file'])} line {lines}).</p></div>"
        )
    if groups.height > max_values:
        parts.append(
            f"<p class='muted'>{groups.height - max_values:,} more parent row(s) are in the JSON report.</p>"
        )
    return parts


def write_html_report(
    result: ValidationResult,
    path: str | Path,
    *,
    max_examples: int = 20,
    max_values: int = MAX_VALUES,
) -> Path:
    """Write a self-contained HTML page that leads to the root cause of every problem.

    Parameters
    ----------
    result : ValidationResult
        What validation found.
    path : str or Path
        The page (written atomically, as the JSON report).
    max_examples : int
        Lines shown per distinct offending value (counts are always exact).
    max_values : int
        Distinct offending values listed per rule (the JSON report lists every issue).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Order: per-source counts; the problems at their source, one section per rule (tables in dependency
    order: episodes and sessions first), each with a plain heading, its description, a "how to fix" line
    and every distinct offending value with its exact count and example lines; then the rows rejected only
    because the session or episode they point to was rejected (rule ``parent_rejected``), collapsed under
    each parent's line and problem; then the notices. Numbers carry thousands separators; tables stack into
    labelled cards below 640 px, so the page reads on a phone.
    """
    path = Path(path)
    issues = result.issues
    errors = issues.filter(pl.col("severity") == "error")
    roots = errors.filter(pl.col("rule") != "parent_rejected")
    n_cascade = errors.height - roots.height
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>Validation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Validation report</h1>",
        f"<p class='muted'>Schema version {html.escape(SCHEMA_VERSION)}; generated "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}.</p>",
    ]
    quarantined = sum(t.rows_quarantined for t in result.tables)
    if result.ok:
        status = "<p class='ok'>Every row passed.</p>"
    else:
        status = (
            f"<p class='bad'>{roots.height:,} problem(s) found at their source; {quarantined:,} row(s) are "
            "quarantined"
            + (f", {n_cascade:,} of them only because a row they depend on was rejected" if n_cascade else "")
            + ".</p>"
        )
    parts.append(status)
    # file-level findings that explain many problems at once come before everything else
    lead = issues.filter(pl.col("rule").is_in(list(_LEAD_RULES)))
    if not lead.is_empty():
        parts.append("<h2>Start here</h2>")
        parts += [
            f"<p class='fix'><strong>{html.escape(RULE_TITLES.get(r, r))}:</strong> {html.escape(m)}</p>"
            for r, m in lead.select("rule", "message").iter_rows()
        ]
    parts += ["<h2>Sources</h2>", _table(result.counts())]
    if not roots.is_empty():
        parts.append("<h2>Problems at their source</h2>")
        order = {t: i for i, t in enumerate(_TABLE_ORDER)}
        ranked = (
            roots.group_by("rule")
            .agg(
                pl.col("table").replace_strict(order, default=99, return_dtype=pl.Int64).min().alias("o"),
                pl.len().alias("n"),
            )
            .sort("o", "n", "rule", descending=[False, True, False])
        )
        dependants = (
            result.cascades.group_by("parent_file", "parent_row")
            .len("n")
            .select(
                pl.col("parent_file").alias("file"),
                pl.col("parent_row").alias("row"),
                pl.col("n").cast(pl.Int64),
            )
        )
        for rule in ranked["rule"]:
            rule_rows = roots.filter(pl.col("rule") == rule)
            parts += _rule_section(rule, rule_rows, max_examples, max_values, dependants)
    parts += _cascade_section(result, max_examples, max_values)
    notices = issues.filter(pl.col("severity") == "warning")
    if not notices.is_empty():
        parts.append("<h2>Notices</h2><p>These reject no row.</p>")
        counts = notices.group_by("rule").len("count").sort("count", "rule", descending=[True, False])
        for rule, count in counts.iter_rows():
            rows = notices.filter(pl.col("rule") == rule)
            parts += [
                f"<h3>{html.escape(RULE_TITLES.get(rule, rule))} ({html.escape(rule)}): {count:,}</h3>",
                f"<p>{html.escape(RULE_DESCRIPTIONS.get(rule, ''))}</p>",
                f"<p class='fix'><strong>How to fix:</strong> {html.escape(RULE_FIXES.get(rule, ''))}</p>",
                _table(rows.head(max_values).select("file", "table", "column", "message")),
            ]
    parts.append("</body></html>")
    with atomic_output(path) as tmp:
        tmp.write_text("".join(parts), encoding="utf-8")
    return path
