"""Validation engine: parse raw source tables, run every check, split good rows from quarantined ones.

The pandera models in :mod:`sciatica_outcomes.schemas` are the single statement of the rules. This module
compiles them (types, nullability, ``ge/le/gt/lt/in_range``, ``isin``, ``str_matches``) into polars
expressions that are evaluated together in one pass, adds the row rules a column check cannot express
(measure ranges from the catalog, capped tests, response ranges per instrument, end after start, dose
present) and the cross-table rules (duplicate keys, foreign keys, dates inside the episode), and reports
every failure of every row at once.

Parsing is strict: a value is accepted only if it is exactly of the column's type. ``"7/10"`` in a pain
column is an error (rule ``type``), not a 7 and not an empty value; ``"3.5"`` in a whole-number column is an
error (rule ``integer``); dates must be ``YYYY-MM-DD``. The only normalisations, all documented here, are:
surrounding spaces are ignored in numbers, dates and booleans; ``NA`` and an empty cell mean missing in
those columns; whole numbers written with a zero fraction (``"3.0"``, as spreadsheets store them) are whole
numbers; booleans accept ``true/false``, ``t/f``, ``yes/no``, ``y/n`` and ``1/0`` in any case. Text columns
are taken verbatim (an empty cell is missing).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from sciatica_outcomes.ingest.privacy import (
    free_text_redactions,
    identifier_value_kind,
    identifier_value_label,
    looks_like_identifier,
    redact_free_text,
    scrub_text_columns,
)
from sciatica_outcomes.ingest.sources import ROW, SHAPE, Notice, SourceTable
from sciatica_outcomes.schemas import CODE_PATTERN, TABLE_SPECS, TableSpec, measure_catalog
from sciatica_outcomes.schemas.questionnaire_items import INSTRUMENT_RESPONSE_RANGE
from sciatica_outcomes.schemas.store_tables import QUARANTINE_ROW_SCHEMA
from sciatica_outcomes.schemas.vocabulary import (
    AT_WORK_STATUSES,
    EMPLOYMENT_STATUSES,
    PAID_WORK_STATUSES,
    WORK_NOT_APPLICABLE,
    WORK_STATUSES,
)
from sciatica_outcomes.schemas.work import PAID_WORK_COLUMNS, WPAI_GATED_COLUMNS

__all__ = [
    "CASCADE_SCHEMA",
    "ISSUE_SCHEMA",
    "MISSING_MARKERS",
    "TableResult",
    "ValidationResult",
    "validate_sources",
]

#: Columns of an issue frame: one row per problem found.
ISSUE_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "table": pl.String(),
    "row": pl.Int64(),
    "column": pl.String(),
    "value": pl.String(),
    "rule": pl.String(),
    "message": pl.String(),
    "severity": pl.String(),
}

#: Columns of :attr:`ValidationResult.cascades`: one row per row rejected because the row it points to
#: (``parent_table`` at ``parent_file`` line ``parent_row``, key ``value``) was itself rejected.
CASCADE_SCHEMA: dict[str, pl.DataType] = {
    "file": pl.String(),
    "table": pl.String(),
    "row": pl.Int64(),
    "column": pl.String(),
    "value": pl.String(),
    "parent_table": pl.String(),
    "parent_file": pl.String(),
    "parent_row": pl.Int64(),
}


#: Cell contents meaning "missing" in number, date and boolean columns (after trimming spaces).
MISSING_MARKERS: tuple[str, ...] = ("", "NA")

_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_P = "__p__"  # prefix of parsed columns in the working frame
_BAD = "__bad__"
_RID = "__rid__"  # position of the row in its source frame (several rows may share a FHIR entry number)


def _p(column: str) -> str:
    return _P + column


@dataclass(frozen=True)
class _Check:
    rule: str
    column: str | None
    failed: pl.Expr
    value: pl.Expr
    message: pl.Expr


@dataclass
class TableResult:
    """Outcome of validating one source table.

    Attributes
    ----------
    source : SourceTable
        What was read.
    valid : polars.DataFrame
        Rows that passed every check, in canonical columns and dtypes.
    quarantine : polars.DataFrame
        Rejected rows (:data:`~sciatica_outcomes.schemas.store_tables.QUARANTINE_ROW_SCHEMA`).
    rejected_keys : polars.DataFrame or None
        The primary key of every rejected row whose key columns all parse (canonical dtypes): with the
        keys of ``valid`` these are the rows the source holds, which the store compares with what it has.
    n_valid : int or None
        Rows that passed, for a source validated in chunks (:mod:`sciatica_outcomes.ingest.chunked`), whose
        ``valid`` frame is empty: its valid rows were handed to the store chunk by chunk.
    """

    source: SourceTable
    valid: pl.DataFrame
    quarantine: pl.DataFrame
    rejected_keys: pl.DataFrame | None = None
    n_valid: int | None = None

    @property
    def rows_read(self) -> int:
        """Rows read from the source."""
        return self.source.rows_read

    @property
    def rows_valid(self) -> int:
        """Rows that passed (a source validated in chunks keeps no ``valid`` rows: they went to the store)."""
        return self.valid.height if self.n_valid is None else self.n_valid

    @property
    def rows_quarantined(self) -> int:
        """Rows rejected."""
        return self.quarantine.height


@dataclass
class ValidationResult:
    """Every problem of every source, the valid rows and the quarantined rows.

    Attributes
    ----------
    tables : list of TableResult
        One per source table, in input order.
    issues : polars.DataFrame
        One row per problem (:data:`ISSUE_SCHEMA`); ``severity`` is ``error`` (the row is quarantined) or
        ``warning`` (a file-level notice; rows are not affected).
    notices : list of Notice
        File-level findings.
    cascades : polars.DataFrame
        Rows rejected only because the row they point to was rejected in this ingest (rule
        ``parent_rejected``; :data:`CASCADE_SCHEMA`): each with the parent's table, file and line, so a
        report can show the parent's problem first and its dependants collapsed under it.
    """

    tables: list[TableResult]
    issues: pl.DataFrame
    notices: list[Notice] = field(default_factory=list)
    cascades: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=CASCADE_SCHEMA))

    @property
    def ok(self) -> bool:
        """True when no row failed."""
        return all(t.rows_quarantined == 0 for t in self.tables)

    @property
    def errors(self) -> pl.DataFrame:
        """Issues of severity ``error``."""
        return self.issues.filter(pl.col("severity") == "error")

    def counts(self) -> pl.DataFrame:
        """One row per source table: file, table, rows read, valid and quarantined, and errors found."""
        errs = self.errors.group_by("file", "table").len("errors")
        rows = pl.DataFrame(
            {
                "file": [t.source.path for t in self.tables],
                "table": [t.source.table for t in self.tables],
                "format": [t.source.fmt for t in self.tables],
                "rows_read": [t.rows_read for t in self.tables],
                "rows_valid": [t.rows_valid for t in self.tables],
                "rows_quarantined": [t.rows_quarantined for t in self.tables],
            },
            schema={
                "file": pl.String,
                "table": pl.String,
                "format": pl.String,
                "rows_read": pl.Int64,
                "rows_valid": pl.Int64,
                "rows_quarantined": pl.Int64,
            },
        )
        return rows.join(errs, on=["file", "table"], how="left").with_columns(
            pl.col("errors").fill_null(0).cast(pl.Int64)
        )


# ---------------------------------------------------------------------------------------------- parsing
def _missing(s: pl.Expr) -> pl.Expr:
    return s.is_null() | s.is_in(list(MISSING_MARKERS))


_TYPE_WORDS = {
    pl.Int64: "a whole number",
    pl.Float64: "a number (decimal point '.')",
    pl.Date: "a date written YYYY-MM-DD",
    pl.Boolean: "true or false (also yes/no, 1/0)",
}


def _parse(column: str, dtype: pl.DataType, raw_dtype: pl.DataType) -> tuple[pl.Expr, list[_Check]]:
    """Parsed expression of one column plus its type checks (evaluated on the raw column)."""
    raw = pl.col(column)
    base = dtype.base_type()
    value_str = raw.cast(pl.String)
    if raw_dtype in (dtype, pl.Null):
        if base == pl.Float64 and raw_dtype == dtype:
            return _finite(raw, column)
        return raw.cast(dtype), []
    if base == pl.String:
        return value_str, []
    # typed sources (Parquet) with another type than the canonical one
    if base == pl.Int64 and raw_dtype.is_integer():
        parsed = raw.cast(pl.Int64, strict=False)
        fail = raw.is_not_null() & parsed.is_null()
        return parsed, [
            _Check(
                "type", column, fail, value_str, _msg("'{}' does not fit a 64-bit whole number", value_str)
            )
        ]
    if base == pl.Int64 and raw_dtype.is_float():
        whole = raw.is_finite() & (raw.round(0) == raw) & (raw.abs() < 2**53)
        parsed = pl.when(whole).then(raw.cast(pl.Int64, strict=False))
        fail = raw.is_not_null() & ~whole.fill_null(False)
        return parsed, [
            _Check("integer", column, fail, value_str, _msg(_NOT_WHOLE, value_str, pl.lit(column)))
        ]
    if base == pl.Float64 and raw_dtype.is_numeric():
        return _finite(raw.cast(pl.Float64), column)
    if base == pl.Date and raw_dtype == pl.Datetime:
        midnight = raw.dt.time() == pl.time(0)
        parsed = pl.when(midnight).then(raw.dt.date())
        fail = raw.is_not_null() & ~midnight.fill_null(False)
        msg = _msg("'{}' has a time of day; {} takes a date", value_str, pl.lit(column))
        return parsed, [_Check("type", column, fail, value_str, msg)]
    return _parse_text(column, dtype)


_NOT_WHOLE = "'{}' is not a whole number; {} takes whole numbers"


def _msg(template: str, *args: pl.Expr) -> pl.Expr:
    return pl.format(template, *args)


#: Default number format of text sources: decimal point, no thousands separator.
_PLAIN = (".", None)

#: A decimal comma in a file read with the default decimal point (``7,5``): the message names the option.
_COMMA_DECIMAL = r"^[+-]?\d+,\d+$"


def _number_word(dtype: pl.DataType, fmt: tuple[str, str | None]) -> str:
    decimal, thousands = fmt
    if fmt == _PLAIN or dtype.base_type() not in (pl.Int64, pl.Float64):
        return _TYPE_WORDS[dtype.base_type()]
    what = "a whole number" if dtype.base_type() == pl.Int64 else "a number"
    sep = f", thousands separator {thousands!r}" if thousands is not None else ""
    return f"{what} (decimal mark {decimal!r}{sep})"


def _normalised_number(s: pl.Expr, fmt: tuple[str, str | None]) -> pl.Expr:
    """Number text in the ``decimal``/``thousands`` format of ``fmt`` rewritten with a decimal point.

    A cell that is not a number in that format (a ``.`` in a decimal-comma file without ``--thousands .``,
    misplaced thousands separators such as ``12.34`` with ``--thousands .``) becomes null, hence a ``type``
    error showing the cell as written: nothing is reinterpreted.
    """
    if fmt == _PLAIN:
        return s
    decimal, thousands = fmt
    d = re.escape(decimal)
    whole = r"\d+" if thousands is None else rf"(?:\d+|\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+)"
    pattern = rf"^[+-]?{whole}(?:{d}\d+)?(?:[eE][+-]?\d+)?$"
    out = s
    if thousands is not None:
        out = out.str.replace_all(thousands, "", literal=True)
    out = out.str.replace(decimal, ".", literal=True)
    return pl.when(s.str.contains(pattern)).then(out)


def _parse_text(
    column: str, dtype: pl.DataType, fmt: tuple[str, str | None] = _PLAIN
) -> tuple[pl.Expr, list[_Check]]:
    """Strict parse of a column read as text (any raw type is compared through its text).

    ``fmt`` is the ``(decimal, thousands)`` format of numbers in the source (``--decimal``, ``--thousands``).
    """
    value_str = pl.col(column).cast(pl.String)
    s = value_str.str.strip_chars()
    present = ~_missing(s)
    base = dtype.base_type()
    word = pl.lit(_number_word(dtype, fmt))
    number = _normalised_number(s, fmt)
    not_a = _msg("'{}' is not {}", value_str, word)
    if base in (pl.Int64, pl.Float64) and fmt == _PLAIN:
        hint = _msg(
            "'{}' is not {}: if the file writes decimal commas, pass --decimal , (and --delimiter ;)",
            value_str,
            word,
        )
        not_a = pl.when(s.str.contains(_COMMA_DECIMAL)).then(hint).otherwise(not_a)
    if base == pl.Int64:
        as_int = number.cast(pl.Int64, strict=False)
        as_float = number.cast(pl.Float64, strict=False)
        whole = as_float.is_finite() & (as_float.round(0) == as_float) & (as_float.abs() < 2**53)
        fallback = pl.when(whole).then(as_float.cast(pl.Int64, strict=False))
        parsed: pl.Expr = pl.when(present).then(pl.coalesce(as_int, fallback))
        not_whole = present & as_int.is_null() & as_float.is_not_null() & ~whole
        not_number = present & as_int.is_null() & as_float.is_null()
        return parsed, [
            _Check("integer", column, not_whole, value_str, _msg(_NOT_WHOLE, value_str, pl.lit(column))),
            _Check("type", column, not_number, value_str, not_a),
        ]
    if base == pl.Float64:
        as_float = number.cast(pl.Float64, strict=False)
        parsed = pl.when(present & as_float.is_finite()).then(as_float)
        not_number = present & as_float.is_null()
        return parsed, [
            _Check("type", column, not_number, value_str, not_a),
            _not_finite(column, pl.when(present).then(as_float), value_str),
        ]
    if base == pl.Date:
        iso = s.str.contains(r"^\d{4}-\d{2}-\d{2}$")
        parsed = pl.when(present & iso).then(s.str.to_date("%Y-%m-%d", strict=False))
        fail = present & parsed.is_null()
        return parsed, [_Check("type", column, fail, value_str, _msg("'{}' is not {}", value_str, word))]
    if base == pl.Boolean:
        low = s.str.to_lowercase()
        parsed = pl.when(low.is_in(list(_TRUE))).then(True).when(low.is_in(list(_FALSE))).then(False)
        fail = present & parsed.is_null()
        return parsed.cast(pl.Boolean), [
            _Check("type", column, fail, value_str, _msg("'{}' is not {}", value_str, word))
        ]
    raise NotImplementedError(f"no parser for {dtype} (column {column})")


def _fast_parse(column: str, dtype: pl.DataType, fmt: tuple[str, str | None] = _PLAIN) -> pl.Expr:
    """Cheap parse of a text column that accepts only what :func:`_parse_text` accepts unchanged.

    Cells it leaves empty although the source has text are "suspect" and go through the strict parser
    (which also handles spaces, ``NA``, ``3.0`` and the other boolean spellings); in clean files there are
    none, so the cost of a column is one cast.
    """
    raw = pl.col(column)
    base = dtype.base_type()
    if base == pl.String:
        return raw
    if base == pl.Int64:
        return _normalised_number(raw, fmt).cast(base, strict=False)
    if base == pl.Float64:
        # NaN and infinities become empty here, so the strict parser sees them and reports them
        as_float = _normalised_number(raw, fmt).cast(base, strict=False)
        return pl.when(as_float.is_finite()).then(as_float)
    if base == pl.Date:
        iso = raw.str.contains(r"^\d{4}-\d{2}-\d{2}$")
        return pl.when(iso).then(raw.str.to_date("%Y-%m-%d", strict=False))
    if base == pl.Boolean:
        return pl.when(raw == "true").then(True).when(raw == "false").then(False).cast(pl.Boolean)
    raise NotImplementedError(f"no parser for {dtype} (column {column})")


def _finite(values: pl.Expr, column: str) -> tuple[pl.Expr, list[_Check]]:
    """Typed decimal values: NaN and infinities are type errors (and empty after parsing), not numbers."""
    return pl.when(values.is_finite()).then(values), [_not_finite(column, values, values.cast(pl.String))]


def _not_finite(column: str, parsed: pl.Expr, value_str: pl.Expr) -> _Check:
    return _Check(
        "type",
        column,
        parsed.is_not_null() & ~parsed.is_finite().fill_null(True),
        value_str,
        pl.format("'{}' is not a finite number; {} takes a number", value_str, pl.lit(column)),
    )


# ------------------------------------------------------------------------------------ column checks
def _fmt_num(x: object) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _text(column: str, raw_columns: frozenset[str]) -> pl.Expr:
    """The cell as written in the source when the column was read, else the parsed value as text."""
    return pl.col(column if column in raw_columns else _p(column)).cast(pl.String)


#: Characters people cannot see in a message; shown as <U+XXXX> (the reported ``value`` keeps them as read).
_INVISIBLE = ("\u00a0", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\t", "\r", "\n")


def _visible(text: pl.Expr) -> pl.Expr:
    """Text with invisible and non-breaking characters spelled out, for messages."""
    for ch in _INVISIBLE:
        text = text.str.replace_all(ch, f"<U+{ord(ch):04X}>", literal=True)
    return text


def _column_checks(spec: TableSpec, column: str, raw_columns: frozenset[str] = frozenset()) -> list[_Check]:
    """Compile the pandera checks of one column into polars checks on the parsed values."""
    col = spec.schema.columns[column]
    v = pl.col(_p(column))
    shown = _text(column, raw_columns)
    out: list[_Check] = []
    for chk in col.checks:
        st = chk.statistics
        name = chk.name
        if name in ("greater_than_or_equal_to", "greater_than"):
            lo = st["min_value"]
            fail = v < lo if name == "greater_than_or_equal_to" else v <= lo
            word = "below the minimum" if name == "greater_than_or_equal_to" else "not above"
            out.append(
                _Check(
                    "range",
                    column,
                    fail,
                    shown,
                    pl.format(
                        "{} is {} {} for {}", shown, pl.lit(word), pl.lit(_fmt_num(lo)), pl.lit(column)
                    ),
                )
            )
        elif name in ("less_than_or_equal_to", "less_than"):
            hi = st["max_value"]
            fail = v > hi if name == "less_than_or_equal_to" else v >= hi
            word = "above the maximum" if name == "less_than_or_equal_to" else "not below"
            out.append(
                _Check(
                    "range",
                    column,
                    fail,
                    shown,
                    pl.format(
                        "{} is {} {} for {}", shown, pl.lit(word), pl.lit(_fmt_num(hi)), pl.lit(column)
                    ),
                )
            )
        elif name == "in_range":
            lo, hi = st["min_value"], st["max_value"]
            lo_fail = v < lo if st.get("include_min", True) else v <= lo
            hi_fail = v > hi if st.get("include_max", True) else v >= hi
            out.append(
                _Check(
                    "range",
                    column,
                    lo_fail | hi_fail,
                    shown,
                    pl.format(
                        "{} is outside {}-{} for {}",
                        shown,
                        pl.lit(_fmt_num(lo)),
                        pl.lit(_fmt_num(hi)),
                        pl.lit(column),
                    ),
                )
            )
        elif name == "isin":
            allowed = list(st["allowed_values"])
            listed = ", ".join(map(str, allowed))
            out.append(
                _Check(
                    "allowed_values",
                    column,
                    ~v.is_in(allowed),
                    shown,
                    pl.format(
                        "'{}' is not an allowed {}: expected one of {}",
                        _visible(shown),
                        pl.lit(column),
                        pl.lit(listed),
                    ),
                )
            )
        elif name == "str_matches":
            pattern = st["pattern"]
            pattern = pattern.pattern if hasattr(pattern, "pattern") else str(pattern)
            hint = (
                "use 1-64 letters, digits, '_', '-' or '.' (no spaces, accents or invisible characters)"
                if pattern == CODE_PATTERN
                else f"expected text matching {pattern}"
            )
            out.append(
                _Check(
                    "format",
                    column,
                    ~v.str.contains(pattern),
                    shown,
                    pl.format("'{}' is not a valid {}: {}", _visible(shown), pl.lit(column), pl.lit(hint)),
                )
            )
        else:  # pragma: no cover - every check of the shipped schemas is translated (tested)
            raise NotImplementedError(f"check {name!r} of {spec.name}.{column} has no polars translation")
    if not col.nullable:
        out.append(
            _Check(
                "required_value",
                column,
                v.is_null(),
                pl.lit(None, pl.String),
                pl.lit(f"{column} is empty; it is required"),
            )
        )
    return out


# --------------------------------------------------------------------------------------- row rules
_CATALOG_ROW = "__catalog_row__"


def _row_helpers(table: str) -> list[pl.Expr]:
    """Columns the row rules of ``table`` share, computed once before the rules run.

    ``measures`` and ``questionnaire_items`` look their measure or instrument up in a catalog; the position
    in the catalog (null when unknown) is computed once per row, and each rule gathers the fact it needs.
    """
    if table == "measures":
        codes = measure_catalog()["code"].to_list()
        key = pl.col(_p("measure"))
    elif table == "questionnaire_items":
        codes = list(INSTRUMENT_RESPONSE_RANGE)
        key = pl.col(_p("instrument"))
    else:
        return []
    at = key.replace_strict(codes, list(range(len(codes))), default=None, return_dtype=pl.UInt32)
    return [at.alias(_CATALOG_ROW)]


def _row_rules(table: str, raw_columns: frozenset[str] = frozenset()) -> list[_Check]:
    c = _p
    if table == "episodes":
        return [
            _Check(
                "end_before_start",
                "end_date",
                pl.col(c("end_date")) < pl.col(c("start_date")),
                _text("end_date", raw_columns),
                pl.format(
                    "end_date {} is before start_date {}", pl.col(c("end_date")), pl.col(c("start_date"))
                ),
            ),
            _Check(
                "end_reason_without_end_date",
                "end_reason",
                pl.col(c("end_reason")).is_not_null() & pl.col(c("end_date")).is_null(),
                pl.col(c("end_reason")),
                pl.format("end_reason '{}' is given but end_date is empty", pl.col(c("end_reason"))),
            ),
        ]
    if table == "session_exercises":
        return [
            _Check(
                "dose_missing",
                "reps",
                pl.col(c("reps")).is_null() & pl.col(c("hold_s")).is_null(),
                pl.lit(None, pl.String),
                pl.lit("neither reps nor hold_s is given: record the dose of the exercise"),
            )
        ]
    if table == "measures":
        cat = measure_catalog()
        codes = cat["code"].to_list()
        m = pl.col(c("measure"))
        val = pl.col(c("value"))
        # catalog facts gathered by the row's catalog position (:func:`_row_helpers`): one lookup per row
        at = pl.col(_CATALOG_ROW)
        lo = pl.lit(cat["min"].cast(pl.Float64)).gather(at)
        hi = pl.lit(cat["max"].cast(pl.Float64)).gather(at)
        integer = pl.lit(cat["integer"].cast(pl.Boolean)).gather(at).fill_null(False)
        capped = pl.lit(cat["cap_allowed"].cast(pl.Boolean)).gather(at).fill_null(False)
        known = at.is_not_null()
        pairs = [
            f"{code}|{ver}"
            for code, versions in zip(codes, cat["versions"].to_list(), strict=True)
            if versions
            for ver in versions.split(";")
        ]
        versioned = [
            code for code, versions in zip(codes, cat["versions"].to_list(), strict=True) if versions
        ]
        ver = pl.col(c("instrument_version"))
        cap = pl.col(c("cap_min"))
        stop = pl.col(c("stopped_reason"))
        shown = _text("value", raw_columns)
        return [
            _Check(
                "measure_range",
                "value",
                known & ((val < lo) | (val > hi)),
                shown,
                pl.format(
                    "{} is outside the range of {} ({} to {})",
                    shown,
                    m,
                    lo.cast(pl.String),
                    hi.cast(pl.String),
                ),
            ),
            _Check(
                "measure_range",
                "value",
                known & lo.is_not_null() & hi.is_null() & (val < lo),
                shown,
                pl.format("{} is below the minimum {} of {}", shown, lo.cast(pl.String), m),
            ),
            _Check(
                "measure_integer",
                "value",
                known & integer & (val.round(0) != val),
                shown,
                pl.format("{} is not a whole number; {} is scored in whole points", shown, m),
            ),
            _Check(
                "cap_not_applicable",
                "stopped_reason",
                known & ~capped & (stop.is_not_null() | cap.is_not_null()),
                pl.coalesce(_text("stopped_reason", raw_columns), _text("cap_min", raw_columns)),
                pl.format("{} is not a capped test: stopped_reason and cap_min must be empty", m),
            ),
            _Check(
                "above_cap",
                "value",
                capped & cap.is_not_null() & (val > cap),
                shown,
                pl.format("{} minutes is above the test's cap_min {}", shown, cap.cast(pl.String)),
            ),
            _Check(
                "cap_mismatch",
                "cap_min",
                (stop == "cap") & (cap.is_null() | (val != cap)),
                _text("cap_min", raw_columns),
                pl.format(
                    "stopped_reason is 'cap' but value {} does not equal cap_min {}",
                    shown,
                    cap.cast(pl.String).fill_null("(empty)"),
                ),
            ),
            _Check(
                "unknown_version",
                "instrument_version",
                ver.is_not_null() & m.is_in(versioned) & ~(pl.concat_str(m, pl.lit("|"), ver)).is_in(pairs),
                ver,
                pl.format("instrument_version '{}' is not a known version of {}", ver, m),
            ),
        ]
    if table == "work":
        return _work_rules(raw_columns)
    if table == "questionnaire_items":
        inst = pl.col(c("instrument"))
        resp = pl.col(c("response"))
        at = pl.col(_CATALOG_ROW)
        lo = pl.lit(pl.Series([r[0] for r in INSTRUMENT_RESPONSE_RANGE.values()], dtype=pl.Int64)).gather(at)
        hi = pl.lit(pl.Series([r[1] for r in INSTRUMENT_RESPONSE_RANGE.values()], dtype=pl.Int64)).gather(at)
        return [
            _Check(
                "response_range",
                "response",
                (resp < lo) | (resp > hi),
                _text("response", raw_columns),
                pl.format("response {} is outside {} to {} for {}", resp, lo, hi, inst),
            )
        ]
    return []


def _work_rules(raw_columns: frozenset[str]) -> list[_Check]:
    """Row rules of ``work`` (``schemas.work``): hours, paid work, work status, WPAI gating, return date."""
    c = _p
    emp = pl.col(c("employment_status"))
    status = pl.col(c("work_status"))
    paid = emp.is_in(list(PAID_WORK_STATUSES))
    # rules read the codes only when they are known codes (an unknown code is reported once, by its own rule)
    known = emp.is_in(list(EMPLOYMENT_STATUSES)) & status.is_in(list(WORK_STATUSES))
    worked, contracted = pl.col(c("hours_worked")), pl.col(c("hours_contracted"))
    q1 = pl.col(c("wpai_q1_employed"))
    rtw = pl.col(c("return_to_work_date"))
    paid_words = " or ".join(PAID_WORK_STATUSES)
    checks = [
        _Check(
            "hours_above_contracted",
            "hours_worked",
            worked > contracted,
            _text("hours_worked", raw_columns),
            pl.format(
                "hours_worked {} is above hours_contracted {}: record the hours actually worked per week "
                "(at most the contracted hours) or correct hours_contracted",
                worked,
                contracted,
            ),
        ),
        _Check(
            "work_status_employment",
            "work_status",
            known & ((paid & (status == WORK_NOT_APPLICABLE)) | (~paid & (status != WORK_NOT_APPLICABLE))),
            pl.col(c("work_status")),
            pl.when(paid)
            .then(
                pl.format(
                    "work_status is {} but employment_status is {}: give the work status of a person in "
                    "paid work (full_duties, modified_duties, off_work_back_leg or off_work_other)",
                    pl.lit(WORK_NOT_APPLICABLE),
                    emp,
                )
            )
            .otherwise(
                pl.format(
                    "work_status is {} but employment_status {} is not paid work: use {} (or correct "
                    "employment_status to {})",
                    status,
                    emp,
                    pl.lit(WORK_NOT_APPLICABLE),
                    pl.lit(paid_words),
                )
            ),
        ),
    ]
    checks += [
        _Check(
            "needs_paid_work",
            column,
            pl.col(c(column)).is_not_null() & emp.is_in(list(EMPLOYMENT_STATUSES)) & ~paid,
            _text(column, raw_columns),
            pl.format(
                "{} is given but employment_status {} is not paid work: leave {} empty (it applies only to "
                "{}) or correct employment_status",
                pl.lit(column),
                emp,
                pl.lit(column),
                pl.lit(paid_words),
            ),
        )
        for column in PAID_WORK_COLUMNS
    ]
    checks += [
        _Check(
            "wpai_needs_employed",
            column,
            pl.col(c(column)).is_not_null() & ~q1.fill_null(False),
            _text(column, raw_columns),
            pl.format(
                "{} is given but WPAI:SHP question 1 (wpai_q1_employed) is {}: questions 2-5 are asked only "
                "when question 1 is true; leave them empty or record wpai_q1_employed",
                pl.lit(column),
                q1.cast(pl.String).fill_null("empty"),
            ),
        )
        for column in WPAI_GATED_COLUMNS
    ]
    hours = [pl.col(c(x)) for x in WPAI_GATED_COLUMNS[:3]]
    total = pl.sum_horizontal(hours)
    checks += [
        _Check(
            "wpai_hours_above_week",
            "wpai_q4_hours_worked",
            total > 168,
            _text("wpai_q4_hours_worked", raw_columns),
            pl.format(
                "WPAI:SHP hours missed (health {}, other {}) plus hours worked ({}) add up to {}, more than "
                "the 168 hours of the 7-day recall: correct the hours",
                *[h.cast(pl.String).fill_null("empty") for h in hours],
                total,
            ),
        ),
        _Check(
            "return_while_off_work",
            "return_to_work_date",
            rtw.is_not_null() & status.is_in(list(WORK_STATUSES)) & ~status.is_in(list(AT_WORK_STATUSES)),
            _text("return_to_work_date", raw_columns),
            pl.format(
                "return_to_work_date {} is given but work_status is {}: a return date goes with "
                "full_duties or modified_duties; leave it empty while the patient is off work",
                rtw,
                status,
            ),
        ),
        _Check(
            "return_after_assessment",
            "return_to_work_date",
            rtw > pl.col(c("assessed_on")),
            _text("return_to_work_date", raw_columns),
            pl.format(
                "return_to_work_date {} is after assessed_on {}: record the date the patient went back to "
                "work (a planned date is not a return)",
                rtw,
                pl.col(c("assessed_on")),
            ),
        ),
    ]
    return checks


# ------------------------------------------------------------------------------- identifiers in values
def id_columns(spec: TableSpec) -> list[str]:
    """Columns of pseudonymous codes (matching the code pattern): ``episode_id``, ``patient_id``, ..."""
    return [
        c
        for c, col in spec.schema.columns.items()
        if any(
            ch.name == "str_matches"
            and str(getattr(ch.statistics["pattern"], "pattern", ch.statistics["pattern"])) == CODE_PATTERN
            for ch in col.checks
        )
    ]


def free_text_columns(spec: TableSpec) -> list[str]:
    """Text columns no check restricts (no allowed values or pattern): ``program``, ``instrument_version``."""
    return [
        c
        for c, dtype in spec.dtypes.items()
        if dtype == pl.String
        and not any(ch.name in ("isin", "str_matches") for ch in spec.schema.columns[c].checks)
    ]


def _identifier_value_check(column: str, path: str) -> _Check:
    """Rule ``identifier_value``: an id column holding an SSN, phone number, e-mail, date or labelled MRN."""
    raw = pl.col(_p(column))  # the parsed code: the text as read
    command = f"sciatica-outcomes pseudonymize {path} --column {column} --as {column} --key KEY.csv --out OUT"
    return _Check(
        "identifier_value",
        column,
        looks_like_identifier(raw),
        identifier_value_label(raw),
        pl.format(
            "{} {} looks like {}, not a pseudonymous code: identifiers must not enter the store; replace "
            "the column with random codes, e.g. `{}` (keep KEY.csv apart from the data)",
            pl.lit(column),
            identifier_value_label(raw),
            identifier_value_kind(raw),
            pl.lit(command),
        ),
    )


#: Per free-text column of a source validated in chunks: identifiers redacted per kind, and cells.
Redactions = dict[str, tuple[dict[str, int], int]]


def _redact_free_text(
    raw: pl.DataFrame, source: SourceTable, columns: list[str], tally: Redactions | None = None
) -> pl.DataFrame:
    """Redact identifiers in the free-text ``columns`` of ``raw``, with a notice per column that had any.

    With ``tally`` (a source validated in chunks) the counts are added to it instead, and
    :func:`redaction_notices` makes the notices once the whole source is read.
    """
    for column in columns:
        if column not in raw.columns or raw.schema[column] != pl.String:
            continue
        redacted, per_kind, cells = free_text_redactions(raw, column)
        if not per_kind:
            continue
        raw = raw.with_columns(redacted)
        if tally is None:
            source.notices.extend(redaction_notices(source, {column: (per_kind, cells)}))
            continue
        kinds, n = tally.get(column, ({}, 0))
        for kind, k in per_kind.items():
            kinds[kind] = kinds.get(kind, 0) + k
        tally[column] = (kinds, n + cells)
    return raw


def redaction_notices(source: SourceTable, tally: Redactions) -> list[Notice]:
    """The ``redacted`` notice of each column of ``tally`` (see :func:`_redact_free_text`)."""
    out: list[Notice] = []
    for column, (per_kind, cells) in tally.items():
        total = sum(per_kind.values())
        listed = ", ".join(f"{n} {kind}" for kind, n in per_kind.items())
        out.append(
            Notice(
                source.path,
                source.table,
                "redacted",
                f"{column}: {total} identifier{'s' if total > 1 else ''} ({listed}) redacted in {cells} "
                f"cell{'s' if cells > 1 else ''} before storing; keep names, phone numbers, e-mail "
                "addresses, dates of birth and record numbers out of free text at the source",
                column,
            )
        )
    return out


# ------------------------------------------------------------------------------------------- engine
@dataclass
class _Work:
    source: SourceTable
    frame: pl.DataFrame  # raw columns + ROW + parsed columns + _BAD
    issues: list[pl.DataFrame]
    runs_of: dict[str, tuple[pl.DataFrame, pl.Series]] = field(default_factory=dict)
    cascades: list[pl.DataFrame] = field(default_factory=list)

    def runs(self, column: str) -> tuple[pl.DataFrame, pl.Series]:
        """:func:`_runs` of a parsed column, computed once (the foreign key and window checks share it)."""
        if column not in self.runs_of:
            self.runs_of[column] = _runs(self.frame, column)
        return self.runs_of[column]


def _empty_issues(internal: bool = False) -> pl.DataFrame:
    schema = dict(ISSUE_SCHEMA)
    if internal:
        schema = {**schema, "row": pl.Int64(), _RID: pl.UInt32()}
        schema = {
            k: schema[k]
            for k in ("file", "table", "row", _RID, "column", "value", "rule", "message", "severity")
        }
    return pl.DataFrame(schema=schema)


def _all_false(name: str, n: int) -> pl.Series:
    """A Boolean series of ``n`` False values, built in polars (no Python list)."""
    return pl.repeat(False, n, dtype=pl.Boolean, eager=True).alias(name)


def _run_checks(
    work: pl.DataFrame, checks: Sequence[_Check], source: SourceTable
) -> tuple[pl.Series, list[pl.DataFrame]]:
    """Evaluate all checks in one pass; return the row failure mask and the issue frames."""
    if not checks or work.height == 0:
        return _all_false(_BAD, work.height), []
    flags = work.select([ch.failed.fill_null(False).alias(f"f{i}") for i, ch in enumerate(checks)])
    sums = flags.sum().row(0)
    issues: list[pl.DataFrame] = []
    for i, (ch, n) in enumerate(zip(checks, sums, strict=True)):
        if not n:
            continue
        issues.append(
            _rows(work, flags[f"f{i}"]).select(
                pl.lit(source.path, pl.String).alias("file"),
                pl.lit(source.table, pl.String).alias("table"),
                pl.col(ROW).cast(pl.Int64).alias("row"),
                pl.col(_RID),
                pl.lit(ch.column, pl.String).alias("column"),
                ch.value.cast(pl.String).alias("value"),
                pl.lit(ch.rule, pl.String).alias("rule"),
                ch.message.cast(pl.String).alias("message"),
                pl.lit("error", pl.String).alias("severity"),
            )
        )
    bad = (
        flags.select(pl.any_horizontal(pl.all()).alias(_BAD)).to_series()
        if any(sums)
        else _all_false(_BAD, work.height)
    )
    return bad, issues


def _first_pass(source: SourceTable, tally: Redactions | None = None) -> _Work:
    """Parse one source and run its column checks and row rules.

    Text columns are parsed in two steps: a cheap cast for every cell (:func:`_fast_parse`), then the
    strict parser (:func:`_parse_text`) only on rows with a cell the cast left empty. Both accept exactly the
    same values, so the result equals a strict parse of every cell. A chunk of a source read in chunks
    passes the source's redaction ``tally`` (see :func:`_redact_free_text`).
    """
    spec = TABLE_SPECS[source.table]
    fmt = (source.decimal, source.thousands)
    raw = _redact_free_text(source.raw.with_row_index(_RID), source, free_text_columns(spec), tally)
    present = set(raw.columns) - {ROW, _RID, SHAPE}
    exprs: list[pl.Expr] = []
    checks: list[_Check] = []
    text_cols: list[str] = []
    for column, dtype in spec.dtypes.items():
        if column in present:
            if raw.schema[column] == pl.String and dtype.base_type() != pl.String:
                exprs.append(_fast_parse(column, dtype, fmt).alias(_p(column)))
                text_cols.append(column)
            else:
                parsed, type_checks = _parse(column, dtype, raw.schema[column])
                exprs.append(parsed.cast(dtype).alias(_p(column)))
                checks.extend(type_checks)
        elif column in spec.generated_key_columns:
            others = [k for k in spec.key if k != column]
            exprs.append((pl.int_range(pl.len(), dtype=pl.Int64).over(others) + 1).alias(_p(column)))
            source.notices.append(
                Notice(
                    source.path,
                    source.table,
                    "generated_column",
                    f"{column} is not in the file: rows are numbered in file order within each "
                    f"{' + '.join(others)}",
                    column,
                )
            )
        else:
            exprs.append(pl.lit(None, dtype).alias(_p(column)))
            if column in spec.required_columns:
                checks.append(
                    _Check(
                        "missing_column",
                        column,
                        pl.lit(True),
                        pl.lit(None, pl.String),
                        pl.lit(f"required column {column} is missing from the file"),
                    )
                )
    for column in sorted(present - set(spec.dtypes)):
        close = difflib.get_close_matches(column.lower(), list(spec.dtypes), n=1, cutoff=0.75)
        hint = f" (did you mean {close[0]}?)" if close else ""
        source.notices.append(
            Notice(
                source.path,
                source.table,
                "unknown_column",
                f"column {column} is not part of {source.table} and is not stored{hint}",
                column,
                1 if source.fmt in ("csv", "excel", "redcap") else None,
            )
        )
    work = raw.with_columns(exprs)
    type_bad, issues = _run_checks(work, checks, source)
    type_failed: dict[str, pl.Series] = {}
    if text_cols:
        suspect = work.select(
            pl.any_horizontal([pl.col(c).is_not_null() & pl.col(_p(c)).is_null() for c in text_cols]).alias(
                "s"
            )
        ).to_series()
        if suspect.any():
            work, slow_bad, slow_issues, type_failed = _strict_parse(work, suspect, text_cols, spec, source)
            type_bad = type_bad | slow_bad
            issues = issues + slow_issues
    # value checks run only on parsed values; a cell that failed to parse is reported once (as type)
    raw_columns = frozenset(present)
    value_checks = [ch for column in spec.dtypes for ch in _column_checks(spec, column, raw_columns)]
    missing_required = {ch.column for ch in checks if ch.rule == "missing_column"}
    value_checks = [
        ch for ch in value_checks if not (ch.rule == "required_value" and ch.column in missing_required)
    ]
    typed_fail_cols = {ch.column for ch in checks if ch.rule in ("type", "integer")}
    codes = [c for c in id_columns(spec) if c in present]
    adjusted: list[_Check] = []
    for ch in value_checks:
        if ch.rule == "format" and ch.column in codes:
            # an identifier-shaped code is reported once, as identifier_value
            shaped = looks_like_identifier(pl.col(_p(ch.column)))
            adjusted.append(_Check(ch.rule, ch.column, ch.failed & ~shaped, ch.value, ch.message))
        elif ch.rule == "required_value" and ch.column in type_failed:
            # empty after parsing because the text was unparseable: already reported as type
            adjusted.append(
                _Check(ch.rule, ch.column, ch.failed & ~pl.lit(type_failed[ch.column]), ch.value, ch.message)
            )
        elif ch.rule == "required_value" and ch.column is not None and ch.column in typed_fail_cols:
            adjusted.append(
                _Check(ch.rule, ch.column, ch.failed & pl.col(ch.column).is_null(), ch.value, ch.message)
            )
        else:
            adjusted.append(ch)
    adjusted.extend(_identifier_value_check(c, source.path) for c in codes)
    # a foreign key's format depends on the code alone: check each run of equal codes once (child rows
    # come grouped by parent), and keep the runs for the foreign key and episode window checks
    runs: dict[str, tuple[pl.DataFrame, pl.Series]] = {}
    fk_columns = {fk.columns[0] for fk in spec.foreign_keys}
    for k, ch in enumerate(adjusted):
        if ch.rule in ("format", "identifier_value") and ch.column in fk_columns and work.height:
            parsed_col = _p(ch.column)
            if parsed_col not in runs:
                runs[parsed_col] = _runs(work, parsed_col)
            heads, run = runs[parsed_col]
            head_failed = heads.rename({"v": parsed_col}).select(ch.failed.fill_null(False).alias("f"))
            adjusted[k] = _Check(
                ch.rule, ch.column, pl.lit(head_failed.get_column("f").gather(run)), ch.value, ch.message
            )
    helpers = _row_helpers(source.table)
    if helpers:
        work = work.with_columns(helpers)
    bad2, issues2 = _run_checks(work, adjusted + _row_rules(source.table, raw_columns), source)
    bad = type_bad | bad2
    found = issues + issues2
    if SHAPE in raw.columns:
        # a record whose structure is wrong is reported by that problem alone (its empty cells would
        # otherwise repeat it as missing values)
        shape_check = _Check(
            "fhir_shape",
            None,
            pl.col(SHAPE).is_not_null(),
            pl.col(SHAPE).str.extract(r"^entry \d+: (\S+):"),
            pl.col(SHAPE),
        )
        shape_bad, shape_issues = _run_checks(work, [shape_check], source)
        if shape_bad.any():
            rids = work.filter(shape_bad).get_column(_RID).implode()
            found = [f.filter(~pl.col(_RID).is_in(rids)) for f in found] + shape_issues
            bad = bad | shape_bad
    work = work.with_columns(bad.alias(_BAD))
    if helpers:
        work = work.drop(_CATALOG_ROW)
    return _Work(source, work, found, runs)


def _strict_parse(
    work: pl.DataFrame, suspect: pl.Series, text_cols: list[str], spec: TableSpec, source: SourceTable
) -> tuple[pl.DataFrame, pl.Series, list[pl.DataFrame], dict[str, pl.Series]]:
    """Run the strict parser on the suspect rows and merge its values and type errors back."""
    sub = _rows(work, suspect)
    exprs: list[pl.Expr] = []
    checks: list[_Check] = []
    for column in text_cols:
        parsed, type_checks = _parse_text(column, spec.dtypes[column], (source.decimal, source.thousands))
        exprs.append(parsed.cast(spec.dtypes[column]).alias(_p(column)))
        checks.extend(type_checks)
    strict = sub.select(pl.col(_RID), *exprs)
    rids = strict[_RID]
    work = work.with_columns([work[_p(c)].scatter(rids, strict[_p(c)]) for c in text_cols])
    sub_bad, issues = _run_checks(sub, checks, source)
    n = work.height
    bad = _all_false(_BAD, n).scatter(rids.filter(sub_bad), True)
    failed: dict[str, pl.Series] = {}
    for frame in issues:
        for key, fr in frame.group_by("column"):
            col = str(key[0])
            base = failed.get(col, _all_false("t", n))
            failed[col] = base.scatter(fr[_RID], True)
    return work, bad, issues, failed


def _rows(frame: pl.DataFrame, mask: pl.Series | pl.Expr) -> pl.DataFrame:
    """Rows of ``frame`` where ``mask`` holds, in one chunk.

    The rechunk works around a polars 2.1 panic ("assertion failed: i < self.len()" in binview) when string
    expressions run on some filtered string-view columns; on the error path the frames are small.
    """
    return frame.filter(mask).rechunk()


def _flag(w: _Work, mask: pl.Series, checks_frame: pl.DataFrame) -> None:
    w.frame = w.frame.with_columns((pl.col(_BAD) | mask).alias(_BAD))
    if checks_frame.height:
        w.issues.append(checks_frame)


def _issue_rows(
    w: _Work, mask: pl.Series, rule: str, column: str, value: pl.Expr, message: pl.Expr
) -> pl.DataFrame:
    return _rows(w.frame, mask).select(
        pl.lit(w.source.path, pl.String).alias("file"),
        pl.lit(w.source.table, pl.String).alias("table"),
        pl.col(ROW).cast(pl.Int64).alias("row"),
        pl.col(_RID),
        pl.lit(column, pl.String).alias("column"),
        value.cast(pl.String).alias("value"),
        pl.lit(rule, pl.String).alias("rule"),
        message.cast(pl.String).alias("message"),
        pl.lit("error", pl.String).alias("severity"),
    )


def _check_duplicates(works: Sequence[_Work], spec: TableSpec) -> None:
    key = [_p(k) for k in spec.key]
    # hash first (one u64 per row, straight from each frame), then compare real keys only among rows whose
    # hashes collide; distinct hashes (the clean case) settle it without gathering the keys
    combined = pl.lit(0, pl.UInt64)
    for i, k in enumerate(key):
        combined = combined * pl.lit(1_000_003 + 2 * i, pl.UInt64) + pl.col(k).hash(seed=i)
    hashes = [w.frame.select(combined.alias("h")).to_series() for w in works]
    h = pl.concat(hashes) if len(hashes) > 1 else hashes[0]
    if h.n_unique() == h.len():
        return
    parts = [
        w.frame.select(*key, pl.col(ROW), pl.col(_RID), pl.lit(i, pl.Int64).alias("__src"))
        for i, w in enumerate(works)
    ]
    allk = pl.concat(parts)
    ok = allk.select(pl.all_horizontal(pl.col(key).is_not_null())).to_series()
    candidates = allk.filter(h.is_duplicated() & ok)
    if candidates.is_empty():
        return
    dup = candidates.filter(pl.struct(key).is_duplicated())
    if dup.is_empty():
        return
    if len(works) > 1:
        path_of = pl.col("__src").replace_strict(
            list(range(len(works))), [w.source.path for w in works], return_dtype=pl.String
        )
        where = dup.with_columns(pl.format("{} row {}", path_of, pl.col(ROW)).alias("__where"))
    else:
        where = dup.with_columns(pl.format("row {}", pl.col(ROW)).alias("__where"))
    groups = where.group_by(key).agg(pl.col("__where").str.join(", ").alias("__all"))
    where = where.join(groups, on=key, how="left", nulls_equal=True)
    for i, w in enumerate(works):
        mine = where.filter(pl.col("__src") == i).select(pl.col(_RID), "__all")
        if mine.is_empty():
            continue
        _flag_duplicates(w, spec, mine)


def _flag_duplicates(w: _Work, spec: TableSpec, mine: pl.DataFrame) -> None:
    """Rule ``duplicate_key`` on the rows of ``w`` listed in ``mine`` (``_RID`` and ``__all``, the list of
    every copy's place)."""
    flagged = w.frame.select(_RID).join(mine, on=_RID, how="left", maintain_order="left")
    mask = flagged["__all"].is_not_null()
    key_text = pl.concat_str(
        [pl.format("{}={}", pl.lit(k), pl.col(_p(k)).cast(pl.String)) for k in spec.key], separator=", "
    )
    frame = w.frame.with_columns(flagged["__all"].alias("__all"))
    issues = _rows(frame, mask).select(
        pl.lit(w.source.path, pl.String).alias("file"),
        pl.lit(w.source.table, pl.String).alias("table"),
        pl.col(ROW).cast(pl.Int64).alias("row"),
        pl.col(_RID),
        pl.lit(spec.key[-1], pl.String).alias("column"),
        key_text.alias("value"),
        pl.lit("duplicate_key", pl.String).alias("rule"),
        pl.format("key ({}) appears more than once: {}", key_text, pl.col("__all")).alias("message"),
        pl.lit("error", pl.String).alias("severity"),
    )
    _flag(w, mask, issues)


def _valid_rows(works: Sequence[_Work], columns: Sequence[str]) -> pl.DataFrame:
    frames = [w.frame.filter(~pl.col(_BAD)).select([pl.col(_p(c)).alias(c) for c in columns]) for w in works]
    return pl.concat(frames) if frames else pl.DataFrame()


def _runs(frame: pl.DataFrame, column: str) -> tuple[pl.DataFrame, pl.Series]:
    """Runs of equal consecutive values of ``column``: one row per run, and the run of every row.

    Child tables usually list the rows of one parent together (the exercises of a session, the sessions of
    an episode), so a lookup per run instead of per row (hash, probe, compare) does a fraction of the work;
    a run is found with one comparison of each value with the previous one. Exact for any row order.

    Returns
    -------
    tuple of (polars.DataFrame, polars.Series)
        ``heads`` (column ``v``: the value of each run, in order) and ``run`` (UInt32: the run of each row,
        for ``gather``).
    """
    # one contiguous copy of the column makes the neighbour comparison a single pass (a read file comes in
    # hundreds of chunks); comparing two slices avoids materialising a shifted copy
    s = frame.get_column(column).rechunk()
    n = s.len()
    if n == 0:
        return s.alias("v").to_frame(), pl.Series("run", [], dtype=pl.UInt32)
    starts = pl.concat([pl.Series([True]), s.slice(1).ne_missing(s.slice(0, n - 1))])
    heads = s.filter(starts).alias("v").to_frame()
    run = (starts.cum_sum().cast(pl.UInt32) - 1).alias("run")
    return heads, run


def _check_foreign_key(
    w: _Work,
    fk_col: str,
    parent_table: str,
    parent_keys: pl.Series | None,
    rejected: pl.DataFrame | None = None,
) -> None:
    """Rule ``foreign_key`` for keys in no valid parent row; ``parent_rejected`` for keys of a parent row of
    this ingest that was itself rejected (``rejected``: ``v, parent_file, parent_row``), which names that
    row: its own problem is the one to fix."""
    if parent_keys is None:
        return
    col = pl.col(_p(fk_col))
    heads, run = w.runs(_p(fk_col))
    # an anti join hashes the parent keys once (``is_in`` of an imploded list costs five times as much)
    parents = parent_keys.alias("v").to_frame()
    absent = (
        heads.with_row_index("__head").filter(pl.col("v").is_not_null()).join(parents, on="v", how="anti")
    )
    if absent.is_empty():
        return
    if rejected is not None and rejected.height:
        absent = absent.join(rejected, on="v", how="left", maintain_order="left")
    else:
        absent = absent.with_columns(
            pl.lit(None, pl.String).alias("parent_file"), pl.lit(None, pl.Int64).alias("parent_row")
        )
    missing = absent.filter(pl.col("parent_row").is_null()).get_column("__head")
    cascaded = absent.filter(pl.col("parent_row").is_not_null())
    mask = _all_false("m", heads.height).scatter(missing, True).gather(run)
    if missing.len():
        issues = _issue_rows(
            w,
            mask,
            "foreign_key",
            fk_col,
            col,
            pl.format(
                "{} '{}' is not in {} (neither among this ingest's valid rows nor in the store)",
                pl.lit(fk_col),
                col,
                pl.lit(parent_table),
            ),
        )
        _flag(w, mask, issues)
    if cascaded.is_empty():
        return
    # the parent's location, spread from its run to the run's rows
    at = (
        heads.with_row_index("__head")
        .select("__head")
        .join(cascaded.select("__head", "parent_file", "parent_row"), on="__head", how="left")
        .sort("__head")
    )
    frame = w.frame.with_columns(
        at["parent_file"].gather(run).alias("__pfile"), at["parent_row"].gather(run).alias("__prow")
    )
    cmask = frame.get_column("__prow").is_not_null()
    tmp = _Work(w.source, frame, [])
    issues = _issue_rows(
        tmp,
        cmask,
        "parent_rejected",
        fk_col,
        col,
        pl.format(
            "{} '{}' is in {} line {} but that row was rejected, so this row is rejected with it; fix "
            "that row (its own problem is reported there)",
            pl.lit(fk_col),
            col,
            pl.col("__pfile"),
            pl.col("__prow"),
        ),
    )
    _flag(w, cmask, issues)
    w.cascades.append(
        _rows(frame, cmask).select(
            pl.lit(w.source.path, pl.String).alias("file"),
            pl.lit(w.source.table, pl.String).alias("table"),
            pl.col(ROW).cast(pl.Int64).alias("row"),
            pl.lit(fk_col, pl.String).alias("column"),
            col.cast(pl.String).alias("value"),
            pl.lit(parent_table, pl.String).alias("parent_table"),
            pl.col("__pfile").cast(pl.String).alias("parent_file"),
            pl.col("__prow").cast(pl.Int64).alias("parent_row"),
        )
    )


def _rejected_keys(works: Sequence[_Work], key: str) -> pl.DataFrame:
    """Key, file and row of every rejected row of a parent table (the first row of a key given twice)."""
    frames = [
        w.frame.filter(pl.col(_BAD)).select(
            pl.col(_p(key)).cast(pl.String).alias("v"),
            pl.lit(w.source.path, pl.String).alias("parent_file"),
            pl.col(ROW).cast(pl.Int64).alias("parent_row"),
        )
        for w in works
    ]
    out = (
        pl.concat(frames)
        if frames
        else pl.DataFrame(schema={"v": pl.String, "parent_file": pl.String, "parent_row": pl.Int64})
    )
    return out.drop_nulls("v").unique("v", keep="first", maintain_order=True)


def _check_window(w: _Work, spec: TableSpec, episodes: pl.DataFrame | None) -> None:
    win = spec.date_window
    if win is None or episodes is None:
        return
    d = _p(win.date_column)
    # episode ids are unique in ``episodes``: look each run of one episode up once, then spread to its rows
    heads, run = w.runs(_p("episode_id"))
    bounds = heads.join(
        episodes.select(
            pl.col("episode_id").alias("v"),
            pl.col("start_date").alias("__start"),
            pl.col("end_date").alias("__end"),
        ),
        on="v",
        how="left",
        maintain_order="left",
    )
    joined = w.frame.select(pl.col(d)).with_columns(
        bounds["__start"].gather(run).alias("__start"), bounds["__end"].gather(run).alias("__end")
    )
    lo = pl.col("__start") - pl.duration(days=win.days_before_start)
    hi = pl.col("__end") + pl.duration(days=win.days_after_end)
    before = (pl.col(d) < lo).fill_null(False)
    after = (pl.col(d) > hi).fill_null(False)
    flags = joined.select(before.alias("b"), after.alias("a"))
    if not (flags["b"].any() or flags["a"].any()):
        return
    frame = w.frame.with_columns(joined["__start"], joined["__end"])
    tmp = _Work(w.source, frame, [])
    shown = pl.col(d).cast(pl.String)
    b = _issue_rows(
        tmp,
        flags["b"],
        "outside_episode",
        win.date_column,
        shown,
        pl.format(
            "{} {} is before the episode start {} (at most {} day(s) before are allowed)",
            pl.lit(win.date_column),
            shown,
            pl.col("__start"),
            pl.lit(win.days_before_start),
        ),
    )
    a = _issue_rows(
        tmp,
        flags["a"],
        "outside_episode",
        win.date_column,
        shown,
        pl.format(
            "{} {} is after the episode end {} (at most {} day(s) after are allowed)",
            pl.lit(win.date_column),
            shown,
            pl.col("__end"),
            pl.lit(win.days_after_end),
        ),
    )
    _flag(w, flags["b"] | flags["a"], pl.concat([b, a]))


def _check_not_before_start(w: _Work, spec: TableSpec, episodes: pl.DataFrame) -> None:
    """Rule ``before_start``: the ``not_before_start`` date columns of the spec are not before the episode
    start (the episode is looked up once per run of equal ``episode_id``, as in :func:`_check_window`)."""
    heads, run = w.runs(_p("episode_id"))
    bounds = heads.join(
        episodes.select(pl.col("episode_id").alias("v"), pl.col("start_date").alias("__start")),
        on="v",
        how="left",
        maintain_order="left",
    )
    start = bounds["__start"].gather(run)
    for column in spec.not_before_start:
        before = w.frame.select((pl.col(_p(column)) < pl.lit(start)).fill_null(False).alias("b"))["b"]
        if not before.any():
            continue
        frame = w.frame.with_columns(start.alias("__start"))
        shown = pl.col(_p(column)).cast(pl.String)
        issues = _issue_rows(
            _Work(w.source, frame, []),
            before,
            "before_start",
            column,
            shown,
            pl.format(
                "{} {} is before the episode start {}: correct the date or the episode's start_date",
                pl.lit(column),
                shown,
                pl.col("__start"),
            ),
        )
        _flag(w, before, issues)


def _quarantine(w: _Work, issues: pl.DataFrame) -> pl.DataFrame:
    bad = _rows(w.frame, pl.col(_BAD))
    if bad.is_empty():
        return pl.DataFrame(schema=QUARANTINE_ROW_SCHEMA)
    # only the table's own columns: a source's other columns are never stored, not even here
    spec = TABLE_SPECS[w.source.table]
    raw_cols = [c for c in w.source.raw.columns if c in spec.dtypes]
    codes = set(id_columns(spec))
    cells = [
        (
            pl.coalesce(identifier_value_label(pl.col(c)), pl.col(c).cast(pl.String))
            if c in codes
            else redact_free_text(pl.col(c))
        ).alias(c)
        for c in raw_cols
    ]
    record = (
        bad.select(pl.struct(cells).struct.json_encode().alias("record")).to_series()
        if raw_cols
        else pl.Series("record", ["{}"] * bad.height)
    )
    errs = (
        issues.group_by(_RID, maintain_order=True)
        .agg(pl.struct("column", "value", "rule", "message").alias("errors"))
        .select(
            pl.col(_RID),
            pl.struct("errors").struct.json_encode().str.slice(10).str.head(-1).alias("errors"),
        )
    )
    out = pl.DataFrame(
        {
            "source_path": pl.Series([w.source.path] * bad.height, dtype=pl.String),
            "sha256": pl.Series([w.source.sha256] * bad.height, dtype=pl.String),
            "table_name": pl.Series([w.source.table] * bad.height, dtype=pl.String),
            "row_number": bad[ROW].cast(pl.Int64),
            _RID: bad[_RID],
            "record": record,
        }
    )
    return out.join(errs, on=_RID, how="left").with_columns(pl.col("errors").fill_null("[]")).drop(_RID)


def _notice_issues(notices: Sequence[Notice]) -> pl.DataFrame:
    if not notices:
        return _empty_issues()
    return pl.DataFrame(
        {
            "file": [n.file for n in notices],
            "table": [n.table for n in notices],
            "row": [n.row for n in notices],
            "column": [n.column for n in notices],
            "value": [None] * len(notices),
            "rule": [n.rule for n in notices],
            "message": [n.message for n in notices],
            "severity": ["warning"] * len(notices),
        },
        schema=ISSUE_SCHEMA,
    )


def _table_pass(
    srcs: Sequence[SourceTable],
    table: str,
    spec: TableSpec,
    valid_parents: Mapping[str, pl.DataFrame],
    reference: Mapping[str, pl.DataFrame],
    rejected_parents: Mapping[str, pl.DataFrame] | None = None,
) -> tuple[list[_Work], list[Notice]]:
    """Every check of one table's sources: first pass, duplicate keys, foreign keys, episode windows."""
    notices: list[Notice] = []
    tw = [_first_pass(src) for src in srcs]
    _check_duplicates(tw, spec)
    for fk in spec.foreign_keys:
        parent = fk.table
        keys: list[pl.Series] = []
        if parent in valid_parents:
            keys.append(valid_parents[parent][fk.ref_columns[0]])
        if parent in reference:
            keys.append(reference[parent][fk.ref_columns[0]])
        if not keys:
            notices.extend(
                Notice(
                    w.source.path,
                    table,
                    "not_checked",
                    f"foreign key {fk.columns[0]} -> {parent} not checked: "
                    f"no {parent} in this ingest or the store",
                    fk.columns[0],
                )
                for w in tw
            )
            continue
        # membership does not need distinct keys: deduplicating would cost a hash pass of its own
        parent_keys = pl.concat(keys) if len(keys) > 1 else keys[0]
        for w in tw:
            _check_foreign_key(w, fk.columns[0], parent, parent_keys, (rejected_parents or {}).get(parent))
    if spec.date_window is not None:
        eps: list[pl.DataFrame] = []
        if "episodes" in valid_parents:
            eps.append(valid_parents["episodes"].select("episode_id", "start_date", "end_date"))
        if "episodes" in reference:
            ref = reference["episodes"].select("episode_id", "start_date", "end_date")
            if eps:
                ref = ref.join(eps[0].select("episode_id"), on="episode_id", how="anti")
            eps.append(ref)
        episodes = pl.concat(eps) if eps else None
        if episodes is None:
            notices.extend(
                Notice(
                    w.source.path,
                    table,
                    "not_checked",
                    f"{spec.date_window.date_column} inside the episode not checked: "
                    "no episodes in this ingest or the store",
                    spec.date_window.date_column,
                )
                for w in tw
            )
        for w in tw:
            _check_window(w, spec, episodes)
            if spec.not_before_start and episodes is not None:
                _check_not_before_start(w, spec, episodes)
    return tw, notices


def validate_sources(
    sources: Sequence[SourceTable],
    *,
    reference: Mapping[str, pl.DataFrame] | None = None,
    on_table: Callable[[int, TableResult], None] | None = None,
) -> ValidationResult:
    """Validate source tables: every check on every row, cross-table rules included.

    Parameters
    ----------
    sources : sequence of SourceTable
        Raw tables as read by the readers (several sources may feed one table).
    reference : mapping of str to polars.DataFrame, optional
        Rows already in the store that foreign keys and episode windows may point to: ``episodes`` with
        ``episode_id, start_date, end_date`` and ``sessions`` with ``session_id``. Without a reference and
        without the parent table among the sources, foreign keys and episode windows of that table are not
        checked; a warning says so.
    on_table : callable, optional
        Called as ``on_table(position, result)`` as soon as a source is final (tables finish in dependency
        order; ``position`` is the source's index in ``sources``). The ingest uses it to store a table while
        the next one is validated.

    Returns
    -------
    ValidationResult
        Valid rows and quarantined rows per source, and every issue. For each source
        ``rows_read == rows_valid + rows_quarantined``.

    Notes
    -----
    Order of evaluation: (1) parse every column and run the column checks and row rules of every row in one
    vectorised pass per source; (2) among rows still valid, keys duplicated within a table (across all its
    sources) reject every copy; (3) in dependency order (episodes, sessions, then the others), foreign keys
    must resolve to a valid row of this ingest or a stored row, and dated rows must fall inside their
    episode (``DateWindow`` of the table's spec). A row can collect several errors; it is quarantined once.
    The invariant is ``rows_read = rows_valid + rows_quarantined`` for every source.

    Validated against: pandera 0.35 ``DataFrameSchema.validate(frame, lazy=True)`` on the same typed frames
    flags exactly the same (column, row) cells for the column checks
    (``tests/ingest/test_validate.py::test_compiled_checks_agree_with_pandera_on_every_column_check``).
    """
    reference = reference or {}
    positions: dict[str, list[int]] = {}
    for i, src in enumerate(sources):
        positions.setdefault(src.table, []).append(i)
    notices: list[Notice] = []
    valid_parents: dict[str, pl.DataFrame] = {}
    rejected_parents: dict[str, pl.DataFrame] = {}
    cascades: list[pl.DataFrame] = []
    results: dict[int, TableResult] = {}
    issue_parts: dict[int, list[pl.DataFrame]] = {}
    for table, spec in TABLE_SPECS.items():
        if table not in positions:
            continue
        srcs = [sources[i] for i in positions[table]]
        read_notices = [len(src.notices) for src in srcs]
        tw, table_notices = _table_pass(srcs, table, spec, valid_parents, reference, rejected_parents)
        if any(w.source.reread is not None and w.issues for w in tw):
            # a fast typed read with problems: read those files as text and check the table again, so that
            # reports and quarantine show the cells as written (the same rows fail: the values are equal)
            for src, n in zip(srcs, read_notices, strict=True):
                del src.notices[n:]  # the first pass adds its notices again
            srcs = [w.source.reread() if w.source.reread is not None and w.issues else w.source for w in tw]
            tw, table_notices = _table_pass(srcs, table, spec, valid_parents, reference, rejected_parents)
        notices.extend(table_notices)
        if table in ("episodes", "sessions"):
            valid_parents[table] = _valid_rows(tw, spec.columns)
            rejected_parents[table] = _rejected_keys(tw, spec.key[0])
        cascades.extend(c for w in tw for c in w.cascades)
        for i, w in zip(positions[table], tw, strict=True):
            issues = pl.concat([_empty_issues(True), *w.issues]) if w.issues else _empty_issues(True)
            # a value or message quoting an identifier (an e-mail in a code column, ...) is redacted
            if w.source.source_columns is not None:  # a REDCap export or a reshaped wide sheet
                issues = _at_source_columns(issues, w.source.source_columns)
            issues = scrub_text_columns(
                issues.sort(_RID, "column", "rule", nulls_last=True), ["value", "message"]
            )
            valid = w.frame.filter(~pl.col(_BAD)).select([pl.col(_p(c)).alias(c) for c in spec.columns])
            rejected = (
                w.frame.filter(pl.col(_BAD)).select([pl.col(_p(c)).alias(c) for c in spec.key]).drop_nulls()
            )
            results[i] = TableResult(w.source, valid, _quarantine(w, issues), rejected)
            _decimal_comma_notice(w.source, issues)
            issue_parts[i] = [_notice_issues(w.source.notices), issues.drop(_RID)]
            if on_table is not None:
                on_table(i, results[i])
        del tw
    order = sorted(results)
    frames = [f for i in order for f in issue_parts[i]] + [_notice_issues(notices)]
    all_issues = pl.concat(frames) if frames else _empty_issues()
    file_notices = [n for i in order for n in results[i].source.notices]
    cascade = (
        scrub_text_columns(pl.concat(cascades), ["value"])
        if cascades
        else pl.DataFrame(schema=CASCADE_SCHEMA)
    )
    return ValidationResult([results[i] for i in order], all_issues, file_notices + notices, cascades=cascade)


def _decimal_comma_notice(source: SourceTable, issues: pl.DataFrame) -> None:
    """One notice for a text source read with a decimal point whose number cells hold decimal commas.

    The cells stay ``type`` errors (the format is never guessed); the notice says once, at the top of the
    report, how many there are and which option reads them.
    """
    if source.decimal != "." or source.fmt != "csv" or issues.is_empty():
        return
    commas = issues.filter((pl.col("rule") == "type") & pl.col("value").str.contains(_COMMA_DECIMAL))
    if commas.is_empty():
        return
    first = commas.row(0, named=True)
    source.notices.append(
        Notice(
            source.path,
            source.table,
            "decimal_comma",
            f"{commas.height:,} number cell(s) are written with a decimal comma (first: '{first['value']}' "
            f"at line {first['row']:,}, column {first['column']}); if the file uses decimal commas, pass "
            "--decimal , (and --delimiter ; if needed) and validate again",
            first["column"],
            first["row"],
        )
    )


def _at_source_columns(issues: pl.DataFrame, cells: pl.DataFrame) -> pl.DataFrame:
    """Issues with ``column`` set to the source header of each cell (``SourceTable.source_columns``)."""
    if issues.is_empty():
        return issues
    where = (
        cells.with_row_index(_RID)
        .unpivot(index=_RID, variable_name="column", value_name="__src")
        .filter(pl.col(_RID).is_in(issues.get_column(_RID).unique().implode()))
    )
    return (
        issues.join(where, on=[_RID, "column"], how="left", maintain_order="left")
        .with_columns(pl.coalesce("__src", "column").alias("column"))
        .drop("__src")
    )
