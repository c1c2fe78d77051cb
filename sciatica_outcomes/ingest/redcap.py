"""REDCap flat exports: read them through a data dictionary and a mapping; write one for round-trip tests.

A flat (raw, "records") export has one row per record and repeat instance: ``record_id``,
``redcap_repeat_instrument`` (empty on the record's base row), ``redcap_repeat_instance``, every field of the
project (empty outside the row's instrument) and ``<form>_complete``. The mapping file
(``data/schemas/redcap/mapping.csv``: ``form_name, field_name, table, column``) says which field feeds which
canonical column; the data dictionary supplies the fields' choices, so a *label* export ("Completed") is
recoded to the choice code ("completed") by the dictionary rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.privacy import check_identifiers
from sciatica_outcomes.ingest.readers import read_csv_raw
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.redcap import RECORD_ID, redcap_dictionary, redcap_field_names, redcap_mapping

__all__ = ["REDCAP_SYSTEM_COLUMNS", "read_redcap_export", "write_redcap_export"]

#: Columns REDCap adds to exports that carry no canonical data.
REDCAP_SYSTEM_COLUMNS: tuple[str, ...] = (
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_event_name",
    "redcap_data_access_group",
    "redcap_survey_identifier",
)
_INSTRUMENT = "redcap_repeat_instrument"
_INSTANCE = "redcap_repeat_instance"


def _load(path: str | Path | None, default: pl.DataFrame, what: str) -> pl.DataFrame:
    if path is None:
        return default
    try:
        return pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnusableInputError(f"{path}: cannot read the REDCap {what}: {exc}") from exc


def _choices(dictionary: pl.DataFrame) -> dict[str, dict[str, str]]:
    """Label -> code per dropdown/radio field (only labels that differ from every code)."""
    out: dict[str, dict[str, str]] = {}
    sub = dictionary.filter(pl.col("Field Type").is_in(["dropdown", "radio"]))
    for name, spec in sub.select(
        "Variable / Field Name", "Choices, Calculations, OR Slider Labels"
    ).iter_rows():
        pairs = [p.split(",", 1) for p in (spec or "").split("|") if "," in p]
        codes = {c.strip() for c, _ in pairs}
        labels = {label.strip(): c.strip() for c, label in pairs if label.strip() not in codes}
        if labels:
            out[name] = labels
    return out


def read_redcap_export(
    path: str | Path,
    sha256: str,
    *,
    dictionary: str | Path | None = None,
    mapping: str | Path | None = None,
) -> list[SourceTable]:
    """Split a REDCap flat export into canonical source tables.

    Parameters
    ----------
    path : str or Path
        The export (CSV, raw or label values).
    sha256 : str
        Hash of the file.
    dictionary, mapping : str or Path, optional
        The project's data dictionary and the field mapping (default: those generated from the canonical
        schemas, shipped in ``data/schemas/redcap/``).

    Returns
    -------
    list of SourceTable
        One per mapped form present in the export, ``path`` suffixed ``#form``; :data:`ROW` is the export's
        CSV line. Every export row lands in exactly one table (base rows in the non-repeating form).

    Raises
    ------
    UnusableInputError
        Mapping fields missing from the dictionary, or an export without ``record_id``.
    """
    shown = str(path)
    dict_frame = _load(dictionary, redcap_dictionary(), "data dictionary")
    map_frame = _load(mapping, redcap_mapping(), "mapping")
    for col in ("form_name", "field_name", "table", "column"):
        if col not in map_frame.columns:
            raise UnusableInputError(
                f"REDCap mapping lacks column {col!r}: expected form_name, field_name, table, column"
            )
    known = set(dict_frame["Variable / Field Name"].to_list())
    unknown = sorted(set(map_frame["field_name"].to_list()) - known)
    if unknown:
        raise UnusableInputError(
            f"REDCap mapping refers to field(s) not in the data dictionary: {', '.join(unknown)}"
        )
    bad_tables = sorted(set(map_frame["table"].to_list()) - set(TABLE_SPECS))
    if bad_tables:
        raise UnusableInputError(f"REDCap mapping names unknown table(s): {', '.join(bad_tables)}")
    raw, notices = read_csv_raw(path)
    check_identifiers(raw.drop(ROW), shown)
    if RECORD_ID not in raw.columns:
        raise UnusableInputError(f"{shown}: a REDCap export needs a {RECORD_ID} column")
    if _INSTRUMENT not in raw.columns:
        raw = raw.with_columns(pl.lit(None, pl.String).alias(_INSTRUMENT))
    forms = map_frame["form_name"].unique(maintain_order=True).to_list()
    repeating = set(raw[_INSTRUMENT].drop_nulls().unique().to_list())
    base_forms = [f for f in forms if f not in repeating]
    form_of_field = dict(zip(dict_frame["Variable / Field Name"], dict_frame["Form Name"], strict=True))
    complete_cols = {f"{f}_complete" for f in set(dict_frame["Form Name"].to_list())}
    mapped_fields = set(map_frame["field_name"].to_list())
    extra = [
        c
        for c in raw.columns
        if c not in mapped_fields and c not in REDCAP_SYSTEM_COLUMNS and c not in complete_cols and c != ROW
    ]
    for c in extra:
        n = raw[c].drop_nulls().len()
        notices.append(
            Notice(
                shown,
                None,
                "unmapped",
                f"export column {c} is not in the mapping; its {n} value(s) are not read",
                c,
                1,
            )
        )
    unknown_forms = sorted(repeating - set(forms))
    if unknown_forms:
        rows = raw.filter(pl.col(_INSTRUMENT).is_in(unknown_forms))
        notices.append(
            Notice(
                shown,
                None,
                "unmapped",
                f"{rows.height} row(s) of unmapped repeating instrument(s) {', '.join(unknown_forms)} "
                f"are not read (first: line {rows[ROW][0]})",
            )
        )
    choices = _choices(dict_frame)
    out: list[SourceTable] = []
    for form in forms:
        fmap = map_frame.filter(pl.col("form_name") == form)
        table = fmap["table"][0]
        fields = [f for f in fmap["field_name"].to_list() if f in raw.columns]
        if form in repeating:
            rows = raw.filter(pl.col(_INSTRUMENT) == form)
        elif form in base_forms:
            own = [f for f in fields if f != RECORD_ID and form_of_field.get(f) == form]
            present = pl.any_horizontal(pl.col(own).is_not_null()) if own else pl.lit(False)
            rows = raw.filter(pl.col(_INSTRUMENT).is_null() & present)
        else:
            continue
        if rows.is_empty() and form in base_forms:
            continue
        # values in fields of other forms would be lost: report them
        others = [
            c
            for c in raw.columns
            if c in form_of_field and c != RECORD_ID and form_of_field[c] != form and c in mapped_fields
        ]
        if others and not rows.is_empty():
            stray = rows.select(pl.any_horizontal(pl.col(others).is_not_null()).sum()).item()
            if stray:
                notices.append(
                    Notice(
                        f"{shown}#{form}",
                        table,
                        "unmapped",
                        f"{stray} row(s) of form {form} carry values in fields of other forms; "
                        "those values are not read",
                    )
                )
        exprs = []
        for field, column in fmap.select("field_name", "column").iter_rows():
            if field not in raw.columns:
                continue
            e = pl.col(field)
            if field in choices:
                e = e.replace(choices[field])
            exprs.append(e.alias(column))
        sub = rows.select(*exprs, pl.col(ROW))
        out.append(SourceTable(table, f"{shown}#{form}", "redcap", sha256, sub, []))
    base_rows = raw.filter(pl.col(_INSTRUMENT).is_null())
    if base_forms and base_rows.height:
        own_all = [
            f for f in raw.columns if f in form_of_field and form_of_field[f] in base_forms and f != RECORD_ID
        ]
        empty = base_rows.filter(~pl.any_horizontal(pl.col(own_all).is_not_null())) if own_all else base_rows
        if empty.height:
            notices.append(
                Notice(
                    shown,
                    None,
                    "blank_row",
                    f"{empty.height} record base row(s) hold no data of a non-repeating form "
                    f"(first: line {empty[ROW][0]}); nothing to read",
                )
            )
    if out:
        out[0].notices.extend(notices)
    elif notices:
        raise UnusableInputError(f"{shown}: no row of the export maps to a canonical table")
    return out


def _redcap_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        [
            pl.col(c).cast(pl.Int8).cast(pl.String) if t == pl.Boolean else pl.col(c).cast(pl.String)
            for c, t in frame.schema.items()
        ]
    )


def write_redcap_export(tables: Mapping[str, pl.DataFrame], path: str | Path) -> Path:
    """Write canonical tables as the flat raw export of the shipped REDCap project.

    Parameters
    ----------
    tables : mapping of str to polars.DataFrame
        Canonical frames (``session_exercises`` needs ``sessions`` to find its record).
    path : str or Path
        Output CSV.

    Returns
    -------
    Path
        The file written: base rows for episodes, one repeat instance per row of every other table, fields
        outside the row's form empty, ``<form>_complete = 2``.
    """
    parts: list[pl.DataFrame] = []
    order = {t: i for i, t in enumerate(TABLE_SPECS)}
    for table, frame in tables.items():
        names = redcap_field_names(table)
        f = frame
        if "episode_id" not in f.columns and table == "session_exercises":
            f = f.join(tables["sessions"].select("session_id", "episode_id"), on="session_id", how="left")
        f = _redcap_text(f).rename(
            {c: names[c] for c in frame.columns if c in names} | {"episode_id": RECORD_ID}
        )
        f = f.select(RECORD_ID, *[names[c] for c in frame.columns if c != "episode_id"])
        if table == "episodes":
            f = f.with_columns(
                pl.lit(None, pl.String).alias(_INSTRUMENT), pl.lit(None, pl.String).alias(_INSTANCE)
            )
        else:
            f = f.with_columns(
                pl.lit(table).alias(_INSTRUMENT),
                (pl.int_range(pl.len()).over(RECORD_ID) + 1).cast(pl.String).alias(_INSTANCE),
            )
        f = f.with_columns(pl.lit("2").alias(f"{table}_complete"), pl.lit(order[table]).alias("__order"))
        parts.append(f)
    flat = pl.concat(parts, how="diagonal").sort(RECORD_ID, "__order", maintain_order=True).drop("__order")
    fields = [
        c
        for c in redcap_dictionary()["Variable / Field Name"].to_list()
        if c in flat.columns and c != RECORD_ID
    ]
    completes = [c for c in flat.columns if re.match(r".+_complete$", c)]
    flat = flat.select(RECORD_ID, _INSTRUMENT, _INSTANCE, *fields, *completes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat.write_csv(path)
    return path
