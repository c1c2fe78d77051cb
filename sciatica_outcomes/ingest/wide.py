"""Wide visit spreadsheets: one row per episode x visit, a column per measure (and per questionnaire item).

Clinics often keep outcomes as one spreadsheet row per visit::

    episode_id,assessed_on,odi,odi.instrument_version,nprs_leg,walk_tolerance_min,walk_tolerance_min.stopped_reason
    EP01,2026-01-05,42,2.1a,7,12,symptom

Declared with ``--layout visits-wide`` (or a ``--mapping`` file), such a file is reshaped (one polars
``unpivot`` per kind of column) into the canonical long tables ``measures`` and ``questionnaire_items``. Every
reshaped row keeps the line it came from and, per canonical column, the name of the source column that holds
its cell (:attr:`~sciatica_outcomes.ingest.sources.SourceTable.source_columns`), so a problem is reported at
its source line and column. A bad cell rejects only the long row it became: the good measures of the same
visit are stored.

Column names (the *targets*; a mapping file gives them to columns with other names):

- ``episode_id`` and ``assessed_on`` (required: the visit).
- a measure code of ``data/schemas/measures.csv`` (``odi``, ``nprs_leg``, ``walk_tolerance_min``, ...): the
  measure's value; ``MEASURE.stopped_reason``, ``MEASURE.cap_min`` and ``MEASURE.instrument_version``: its
  optional columns.
- ``INSTRUMENT.ITEM`` (``odi.lifting``, ``rmdq.7``): one questionnaire item's response;
  ``INSTRUMENT.instrument_version`` is the version of the instrument's items (and of its score, if the
  instrument is also a measure).

Any other column is reported as ``unknown_column`` and not stored. An empty cell is a measure not taken at
that visit: it produces no row. A row with a stopped reason or a cap but no value does produce one, whose
empty value is reported.

Mapping file (``--mapping``), TOML::

    [columns]
    "Episode" = "episode_id"
    "Visit date" = "assessed_on"
    "Oswestry %" = "odi"
    "ODI version" = "odi.instrument_version"
    "Leg pain" = "nprs_leg"
    "ODI Q3" = "odi.lifting"

or CSV with a header ``column,target`` and one line per source column. Columns the mapping does not name
are read by their own name.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable
from sciatica_outcomes.schemas.vocabulary import INSTRUMENT_CODES, MEASURE_CODES

__all__ = [
    "LAYOUTS",
    "MEASURE_ATTRIBUTES",
    "WIDE_TABLES",
    "VisitsMapping",
    "looks_wide",
    "read_mapping",
    "reshape_visits",
]

#: Layouts a source may be declared in: ``long`` (one file per canonical table, the default) and
#: ``visits-wide`` (one row per episode x visit, reshaped into ``measures`` and ``questionnaire_items``).
LAYOUTS: tuple[str, ...] = ("long", "visits-wide")
#: Tables a wide visit spreadsheet is reshaped into.
WIDE_TABLES: tuple[str, ...] = ("measures", "questionnaire_items")
#: Optional per-measure columns of a wide sheet, written ``MEASURE.ATTRIBUTE``.
MEASURE_ATTRIBUTES: tuple[str, ...] = ("stopped_reason", "cap_min", "instrument_version")

_KEYS = ("episode_id", "assessed_on")
_ITEM = re.compile(r"^[a-z0-9_]{1,64}$")
_LINE = "__line"
_KEY = "__key"
_SRC = "__src"


@dataclass(frozen=True)
class VisitsMapping:
    """Source column name -> target (see the module docstring), read from a mapping file.

    Attributes
    ----------
    columns : mapping of str to str
        Source column -> target (``episode_id``, ``assessed_on``, a measure code, ``MEASURE.ATTRIBUTE`` or
        ``INSTRUMENT.ITEM``).
    path : str
        Where the mapping was read (for messages); empty when built in code.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    path: str = ""


def _target(name: str) -> tuple[str, str, str] | None:
    """Role of a target name: ``(kind, code, part)`` or None when it is no target.

    ``("key", column, "")``, ``("measure", code, "value" | attribute)`` or ``("item", instrument, item)``;
    ``("version", instrument, "instrument_version")`` for the version of an instrument that is not a measure.
    """
    if name in _KEYS:
        return ("key", name, "")
    if name in MEASURE_CODES:
        return ("measure", name, "value")
    code, dot, part = name.partition(".")
    if not dot:
        return None
    if code in MEASURE_CODES and part in MEASURE_ATTRIBUTES:
        return ("measure", code, part)
    if code in INSTRUMENT_CODES and part == "instrument_version":
        return ("version", code, part)
    if code in INSTRUMENT_CODES and _ITEM.match(part) and part not in MEASURE_ATTRIBUTES:
        return ("item", code, part)
    return None


def looks_wide(columns: list[str]) -> list[str]:
    """Columns of a header that are wide-layout value columns (a measure code or ``INSTRUMENT.ITEM``).

    A ``measures`` or ``questionnaire_items`` file with such columns and without its long columns
    (``measure``/``value``, ``instrument``/``item``/``response``) is a wide visit sheet read as long.
    """
    out: list[str] = []
    for c in columns:
        role = _target(c.strip())
        if role is not None and (role[0] == "item" or (role[0] == "measure" and role[2] == "value")):
            out.append(c)
    return out


_TARGET_HELP = (
    "episode_id, assessed_on, a measure code (" + ", ".join(MEASURE_CODES) + "), MEASURE.stopped_reason, "
    "MEASURE.cap_min, MEASURE.instrument_version or INSTRUMENT.ITEM (instruments: "
    + ", ".join(INSTRUMENT_CODES)
    + ")"
)


def read_mapping(path: str | Path) -> VisitsMapping:
    """Read a mapping file (TOML with a ``[columns]`` table, or CSV with columns ``column,target``).

    Parameters
    ----------
    path : str or Path
        The mapping file; ``.toml`` is read as TOML, anything else as CSV.

    Returns
    -------
    VisitsMapping
        Source column -> target.

    Raises
    ------
    UnusableInputError
        If the file cannot be read, is malformed, names a target that does not exist, or maps two
        columns to one target.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnusableInputError(f"{p}: cannot read the mapping file ({exc})") from exc
    pairs: list[tuple[str, str, int | None]] = []
    if p.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UnusableInputError(
                f"{p}: not valid TOML ({exc}); see the mapping format in the README"
            ) from exc
        cols = doc.get("columns")
        if not isinstance(cols, dict) or not all(isinstance(v, str) for v in cols.values()):
            raise UnusableInputError(
                f'{p}: expected a [columns] table of "source column" = "target" strings; see the mapping '
                "format in the README"
            )
        pairs = [(str(k), v, None) for k, v in cols.items()]
    else:
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or [c.strip().lower() for c in rows[0][:2]] != ["column", "target"]:
            raise UnusableInputError(f"{p}: a CSV mapping needs the header 'column,target' on line 1")
        for i, r in enumerate(rows[1:], start=2):
            if not any(c.strip() for c in r):
                continue
            if len(r) != 2:
                raise UnusableInputError(f"{p}: line {i} has {len(r)} fields; expected 'column,target'")
            pairs.append((r[0].strip(), r[1].strip(), i))
    seen: dict[str, str] = {}
    for column, target, line in pairs:
        where = f"line {line}: " if line is not None else ""
        if _target(target) is None:
            raise UnusableInputError(
                f"{p}: {where}column {column!r} is mapped to {target!r}, which is not a target; use "
                + _TARGET_HELP
            )
        if target in seen:
            raise UnusableInputError(
                f"{p}: {where}columns {seen[target]!r} and {column!r} are both mapped to {target!r}; map "
                "one column per target"
            )
        seen[target] = column
    return VisitsMapping({c: t for c, t, _ in pairs}, str(p))


def _unpivot(
    frame: pl.DataFrame, columns: Mapping[str, tuple[str, ...]], value: str, codes: tuple[str, ...]
) -> pl.DataFrame:
    """Non-empty cells of ``columns`` as long rows, in sheet order (line by line, columns left to right).

    ``columns`` maps each source column to its codes (one per name in ``codes``, e.g. the measure, or the
    instrument and the item). Returns ``__line, __key, *codes, value, __src<value>``. One ``unpivot``
    stacks the columns; a cell's line and column follow from its position (``k % lines``, ``k // lines``),
    so codes and source names are gathered from small lists instead of hashing a string per cell.
    """
    srcs = list(columns)
    n = frame.height
    schema = {_LINE: pl.UInt32, _KEY: pl.UInt64, "__col": pl.UInt32, **dict.fromkeys(codes, pl.String)}
    schema |= {value: pl.String, _SRC + value: pl.String}
    if not srcs or n == 0:
        return pl.DataFrame(schema=schema)
    k = pl.int_range(pl.len(), dtype=pl.UInt64)
    long = (
        frame.select([pl.col(c).cast(pl.String) for c in srcs])
        .unpivot(value_name=value)
        .select(value, (k % n).cast(pl.UInt32).alias(_LINE), (k // n).cast(pl.UInt32).alias("__col"))
        .filter(pl.col(value).is_not_null())
    )
    at = pl.col("__col")
    named = [
        pl.lit(pl.Series([columns[c][i] for c in srcs], dtype=pl.String)).gather(at).alias(name)
        for i, name in enumerate(codes)
    ]
    return long.select(
        _LINE,
        (pl.col(_LINE).cast(pl.UInt64) * len(srcs) + at).alias(_KEY),
        at,
        *named,
        value,
        pl.lit(pl.Series(srcs, dtype=pl.String)).gather(at).alias(_SRC + value),
    )


def _with_visit(long: pl.DataFrame, base: pl.DataFrame) -> pl.DataFrame:
    """The visit's ``ROW``, ``episode_id`` and ``assessed_on`` of every long row, gathered by its line."""
    lines = long.get_column(_LINE)
    return long.with_columns(base.get_column(c).gather(lines) for c in base.columns)


def reshape_visits(source: SourceTable, mapping: VisitsMapping | None = None) -> list[SourceTable]:
    """Reshape a wide visit sheet (raw text frame plus :data:`ROW`) into ``measures`` and item sources.

    Parameters
    ----------
    source : SourceTable
        The sheet as read (any ``table``; its ``raw`` columns are the sheet's header).
    mapping : VisitsMapping, optional
        Names of the sheet's columns (columns it does not name are read by their own name).

    Returns
    -------
    list of SourceTable
        A ``measures`` source when the sheet has measure columns and a ``questionnaire_items`` source when
        it has item columns, each with :attr:`~SourceTable.source_columns` naming the source column of every
        cell and :data:`ROW` the sheet line of every row; file-level notices on the first.

    Raises
    ------
    UnusableInputError
        If the sheet has no ``episode_id`` or ``assessed_on`` column (after mapping), or no measure or item
        column at all.
    """
    names = mapping.columns if mapping is not None else {}
    raw = source.raw
    columns = [c for c in raw.columns if c != ROW]
    role = {c: _target(names.get(c, c)) for c in columns}
    notices = list(source.notices)
    if mapping is not None:
        absent = sorted(set(names) - set(columns))
        if absent:
            notices.append(
                Notice(
                    source.path,
                    None,
                    "unmapped",
                    f"mapped column(s) {', '.join(repr(a) for a in absent)} of "
                    f"{mapping.path or 'the mapping'} are not in the sheet",
                )
            )
    by_target: dict[str, str] = {}
    for c in columns:
        r = role[c]
        if r is None:
            continue
        target = names.get(c, c)
        if target in by_target:
            raise UnusableInputError(
                f"{source.path}: columns {by_target[target]!r} and {c!r} both hold {target!r}; keep one "
                "or map them to different targets"
            )
        by_target[target] = c
    for k in _KEYS:
        if k not in by_target:
            raise UnusableInputError(
                f"{source.path}: a visits-wide sheet needs a {k} column (one row per episode x visit); "
                f"name the column {k} or map it in --mapping"
            )
    values = {c: r[1] for c, r in role.items() if r is not None and r[0] == "measure" and r[2] == "value"}
    items = {c: (r[1], r[2]) for c, r in role.items() if r is not None and r[0] == "item"}
    if not values and not items:
        raise UnusableInputError(
            f"{source.path}: no measure or questionnaire-item column in the sheet; name them by measure code "
            f"({', '.join(MEASURE_CODES)}) or INSTRUMENT.ITEM, or map them in --mapping"
        )
    unknown = [c for c in columns if role[c] is None]
    for c in unknown:
        notices.append(
            Notice(
                source.path,
                None,
                "unknown_column",
                f"column {c} is not a visits-wide column ({_TARGET_HELP}) and is not stored",
                c,
                1,
            )
        )
    ep_col, date_col = by_target["episode_id"], by_target["assessed_on"]
    base = raw.select(
        pl.col(ROW),
        pl.col(ep_col).cast(pl.String).alias("episode_id"),
        pl.col(date_col).cast(pl.String).alias("assessed_on"),
    )
    origin = {"episode_id": pl.lit(ep_col), "assessed_on": pl.lit(date_col)}
    out: list[SourceTable] = []
    if values:
        long = _unpivot(raw, {c: (m,) for c, m in values.items()}, "value", ("measure",))
        for attr in MEASURE_ATTRIBUTES:
            cols = {
                c: (r[1],)
                for c, r in role.items()
                if r is not None and r[0] == "measure" and r[2] == attr and r[1] in values.values()
            }
            if not cols:
                long = long.with_columns(pl.lit(None, pl.String).alias(a) for a in (attr, _SRC + attr))
                continue
            part = _unpivot(raw, cols, attr, ("measure",)).drop(_KEY, "__col")
            # a stopped reason or cap without a value still makes a row (its empty value is reported, the
            # row goes last in its line); a version alone does not (it also dates the instrument's items)
            if attr == "instrument_version":
                long = long.join(part, on=[_LINE, "measure"], how="left")
            else:
                long = long.join(part, on=[_LINE, "measure"], how="full", coalesce=True)
        measures = list(values.values())
        if long.get_column("__col").null_count():
            # rows made by a stopped reason or cap alone: their measure's value column, last in the line
            position = {m: i for i, m in enumerate(measures)}
            at = pl.col("measure").replace_strict(position, return_dtype=pl.UInt32)
            key = pl.col(_LINE).cast(pl.UInt64) * len(measures) + len(measures)
            long = long.with_columns(
                pl.coalesce("__col", at).alias("__col"), pl.coalesce(_KEY, key).alias(_KEY)
            )
        long = _with_visit(long.sort(_KEY), base)
        raw_m = long.select("episode_id", "assessed_on", "measure", "value", *MEASURE_ATTRIBUTES, ROW)
        # the source column of every cell follows from its measure's value column (``__col``): the value
        # column itself, or the measure's attribute column (named as the column to add when absent)
        attr_source = {
            a: {r[1]: c for c, r in role.items() if r is not None and r[0] == "measure" and r[2] == a}
            for a in MEASURE_ATTRIBUTES
        }
        by_col = {"measure": list(values), "value": list(values)} | {
            a: [attr_source[a].get(m, f"{m}.{a}") for m in measures] for a in MEASURE_ATTRIBUTES
        }
        cells = long.select(
            *[v.alias(k) for k, v in origin.items()],
            *[
                pl.lit(pl.Series(names, dtype=pl.String)).gather("__col").alias(k)
                for k, names in by_col.items()
            ],
        )
        out.append(_source(source, "measures", raw_m, cells))
    if items:
        long = _unpivot(raw, items, "response", ("instrument", "item")).sort(_KEY)
        versions = {c: (r[1],) for c, r in role.items() if r is not None and r[2] == "instrument_version"}
        if versions:
            ver = _unpivot(raw, versions, "instrument_version", ("instrument",)).select(
                _LINE, "instrument", "instrument_version"
            )
            long = long.join(ver, on=[_LINE, "instrument"], how="left", maintain_order="left")
        else:
            long = long.with_columns(pl.lit(None, pl.String).alias("instrument_version"))
        long = _with_visit(long, base)
        raw_q = long.select(
            "episode_id", "assessed_on", "instrument", "item", "response", "instrument_version", ROW
        )
        version_of = {code[0]: c for c, code in versions.items()}
        item_cols = list(items)
        item_version = [version_of.get(items[c][0], f"{items[c][0]}.instrument_version") for c in item_cols]
        cells = long.select(
            *[v.alias(k) for k, v in origin.items()],
            *[pl.col(_SRC + "response").alias(k) for k in ("instrument", "item", "response")],
            pl.lit(pl.Series(item_version, dtype=pl.String)).gather("__col").alias("instrument_version"),
        )
        out.append(_source(source, "questionnaire_items", raw_q, cells))
    lines = raw.height
    reshaped = ", ".join(f"{t.rows_read:,} {t.table} rows" for t in out)
    notices.append(
        Notice(
            source.path,
            None,
            "reshaped",
            f"visits-wide sheet: {lines:,} line(s) reshaped into {reshaped} "
            f"({len(values)} measure and {len(items)} item column(s))",
        )
    )
    empty = raw.select(
        pl.col(ROW), pl.all_horizontal([pl.col(c).is_null() for c in [*values, *items]]).alias("e")
    ).filter("e")
    if empty.height:
        shown = ", ".join(str(r) for r in empty[ROW].head(10).to_list()) + (
            " ..." if empty.height > 10 else ""
        )
        notices.append(
            Notice(
                source.path,
                None,
                "no_values",
                f"{empty.height:,} line(s) hold no measure or item value (line {shown}): nothing to store "
                "from them",
            )
        )
    out[0].notices.extend(notices)
    return out


def _source(source: SourceTable, table: str, raw: pl.DataFrame, cells: pl.DataFrame) -> SourceTable:
    """A reshaped source of ``table`` with the sheet's path, format, hash and number format."""
    return SourceTable(
        table,
        source.path,
        source.fmt,
        source.sha256,
        raw,
        [],
        source_columns=cells,
        decimal=source.decimal,
        thousands=source.thousands,
    )
