"""REDCap exports of the clinic project -> canonical tables; and the export itself, for round-trip tests.

A REDCap "CSV (raw data)" export of a longitudinal project has one row per record x event (x repeat instance
for a repeating instrument): ``record_id``, ``redcap_event_name``, ``redcap_repeat_instrument`` (empty
outside a repeating instrument), ``redcap_repeat_instance``, every field of the project (empty outside the
row's instruments) and ``<form>_complete``. A "CSV (labels)" export, REDCap's default, has the field labels
as header and the choice labels as values; it is translated back to the raw export through the data
dictionary (header by the labels in dictionary order, values by each field's choices) and then read the same
way, so both exports land the same canonical rows.

The mapping (``data/schemas/redcap/mapping.csv``, see :mod:`sciatica_outcomes.schemas.redcap`) says which
field feeds which canonical column. A wide table (episodes, sessions, symptom checks) gets one row per export
row of its form holding any of its fields; a long table gets one row per export row and key group (the
ODI score is one ``measures`` row, each ODI section one ``questionnaire_items`` row, each exercise-matrix
row one ``session_exercises`` row) whose fields hold any value; shared fields (the form's date and version,
``record_id``) are copied onto every row of their form. Every canonical cell remembers the export column it
came from, so a validation problem is reported at the export's line and column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.privacy import check_identifiers
from sciatica_outcomes.ingest.readers import read_csv_raw
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable, redcap_export_kind
from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.redcap import (
    EVENTS,
    RECORD_ID,
    REDCAP_SYSTEM_COLUMNS,
    event_designations,
    redcap_dictionary,
    redcap_mapping,
)

__all__ = ["REDCAP_SYSTEM_COLUMNS", "read_redcap_export", "redcap_export_frame", "write_redcap_export"]

_EVENT = "redcap_event_name"
_INSTRUMENT = "redcap_repeat_instrument"
_INSTANCE = "redcap_repeat_instance"
_NAME = "Variable / Field Name"
_FORM = "Form Name"
_TYPE = "Field Type"
_LABEL = "Field Label"
_CHOICES = "Choices, Calculations, OR Slider Labels"
#: Header labels of REDCap's own export columns in a label export.
_SYSTEM_LABELS: dict[str, str] = {
    "redcap_event_name": "Event Name",
    "redcap_repeat_instrument": "Repeat Instrument",
    "redcap_repeat_instance": "Repeat Instance",
    "redcap_data_access_group": "Data Access Group",
    "redcap_survey_identifier": "Survey Identifier",
}
_COMPLETE_LABELS = {"0": "Incomplete", "1": "Unverified", "2": "Complete"}
_SRC = "__src_"


def _load(path: str | Path | None, default: pl.DataFrame, what: str) -> pl.DataFrame:
    if path is None:
        return default
    try:
        return pl.read_csv(path, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnusableInputError(f"{path}: cannot read the REDCap {what}: {exc}") from exc


def _checked_mapping(map_frame: pl.DataFrame, dict_frame: pl.DataFrame) -> pl.DataFrame:
    for col in ("field_name", "form_name", "table", "column"):
        if col not in map_frame.columns:
            raise UnusableInputError(
                f"REDCap mapping lacks column {col!r}: expected field_name, form_name, table, column "
                "(and optionally keys, values)"
            )
    for col in ("keys", "values"):
        if col not in map_frame.columns:
            map_frame = map_frame.with_columns(pl.lit("").alias(col))
    map_frame = map_frame.with_columns(pl.col("form_name", "keys", "values").fill_null(""))
    if _NAME not in dict_frame.columns or _FORM not in dict_frame.columns:
        raise UnusableInputError(
            f"the REDCap data dictionary lacks {_NAME!r} or {_FORM!r}: give the project's data dictionary "
            "as downloaded from REDCap (Project Setup, Data Dictionary)"
        )
    unknown = sorted(set(map_frame["field_name"].to_list()) - set(dict_frame[_NAME].to_list()))
    if unknown:
        raise UnusableInputError(
            f"REDCap mapping refers to field(s) not in the data dictionary: {', '.join(unknown)}; "
            "give the dictionary of the project the export comes from"
        )
    bad = sorted(
        f"{t}.{c}"
        for t, c in set(map_frame.select("table", "column").iter_rows())
        if t not in TABLE_SPECS or c not in TABLE_SPECS[t].columns
    )
    if bad:
        raise UnusableInputError(f"REDCap mapping names unknown table column(s): {', '.join(bad)}")
    return map_frame


def _pairs(text: str, sep: str) -> dict[str, str]:
    """``"a=b; c=d"`` (sep ``=``) or ``"1, Yes | 0, No"`` (sep ``,``) as a dict."""
    splitter = ";" if sep == "=" else "|"
    out: dict[str, str] = {}
    for part in (text or "").split(splitter):
        if sep in part:
            k, v = part.split(sep, 1)
            out[k.strip()] = v.strip()
    return out


def _keys(text: str) -> dict[str, str]:
    return _pairs(text, "=")


# --------------------------------------------------------------------------------------- label exports


def _label_of_choices(dict_frame: pl.DataFrame) -> dict[str, dict[str, str]]:
    """Choice label -> code of every field whose export value is a label (including yes/no, checkboxes)."""
    out: dict[str, dict[str, str]] = {}
    for name, ftype, spec in dict_frame.select(_NAME, _TYPE, _CHOICES).iter_rows():
        if ftype in ("dropdown", "radio"):
            out[name] = {label: code for code, label in _pairs(spec, ",").items()}
        elif ftype == "yesno":
            out[name] = {"Yes": "1", "No": "0"}
        elif ftype == "truefalse":
            out[name] = {"True": "1", "False": "0"}
        elif ftype == "checkbox":
            for code in _pairs(spec, ","):
                out[f"{name}___{code}"] = {"Checked": "1", "Unchecked": "0"}
    return out


def _export_columns(dict_frame: pl.DataFrame) -> list[tuple[str, str]]:
    """``(raw header, label header)`` of every column of a full export, in REDCap's order.

    REDCap writes a field label into a label export's header without its HTML tags.
    """
    rows = (
        dict_frame.select(_NAME, _FORM, _TYPE, pl.col(_LABEL).str.replace_all(r"<[^>]*>", ""), _CHOICES)
        .fill_null("")
        .rows()
    )
    if not rows:
        return []
    out: list[tuple[str, str]] = [(rows[0][0], rows[0][3].strip()), *_SYSTEM_LABELS.items()]
    form = rows[0][1]
    for name, f, ftype, label, spec in rows[1:]:
        if f != form:
            out.append((f"{form}_complete", "Complete?"))
            form = f
        if ftype == "descriptive":
            continue
        if ftype == "checkbox":
            out.extend(
                (f"{name}___{c}", f"{label.strip()} (choice={lb})") for c, lb in _pairs(spec, ",").items()
            )
        else:
            out.append((name, label.strip()))
    out.append((f"{form}_complete", "Complete?"))
    return out


def _header_names(header: list[str], dict_frame: pl.DataFrame) -> list[str]:
    """Field names of a label export's header: each label matched, in order, to the next such column."""
    expected = _export_columns(dict_frame)
    names: list[str] = []
    j = 0
    for cell in header:
        label = cell.strip()
        k = next((i for i in range(j, len(expected)) if expected[i][1] == label), None)
        if k is None:
            names.append(label)  # not a column of this project: kept, reported as unmapped
        else:
            names.append(expected[k][0])
            j = k + 1
    return names


def _relabelled_bytes(data: bytes, names: list[str]) -> bytes:
    """The export's bytes with its header line replaced by ``names`` (line numbers unchanged)."""
    body = data.removeprefix(b"\xef\xbb\xbf")
    cut = body.find(b"\n")
    rest = body[cut + 1 :] if cut >= 0 else b""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(names)
    return out.getvalue().encode("utf-8") + rest


def _first_line(data: bytes) -> list[str]:
    text = data[: 1 << 20].decode("utf-8", errors="replace").lstrip("\ufeff")
    line = text.split("\n", 1)[0].rstrip("\r")
    try:
        return next(csv.reader(io.StringIO(line)), [])
    except csv.Error:
        return []


def _codes_from_labels(
    raw: pl.DataFrame, dict_frame: pl.DataFrame, header_of: Mapping[str, str], shown: str
) -> pl.DataFrame:
    """Choice labels to codes, event and instrument labels to names; a label not in the dictionary refused."""
    choices = _label_of_choices(dict_frame)
    cols = [c for c in raw.columns if c in choices]
    # one pass codes every choice column; a second counts the cells whose label is no choice
    coded = raw.select(
        pl.col(c).str.strip_chars().replace_strict(choices[c], default=None).alias(c) for c in cols
    )
    failed = pl.DataFrame([raw[c].is_not_null() & coded[c].is_null() for c in cols]) if cols else None
    if failed is not None and (counts := failed.sum().row(0)) and any(counts):
        firsts = [
            (int(failed[c].arg_true()[0]), k) for k, (c, n) in enumerate(zip(cols, counts, strict=True)) if n
        ]
        at, k = min(firsts)
        name = cols[k]
        raise UnusableInputError(
            f"{shown}: line {raw[ROW][at]}, column {header_of.get(name, name)!r}: {raw[name][at]!r} is not a "
            f"choice label of field {name} in the data dictionary ({sum(counts)} such cell(s)); export again "
            "from the project the dictionary belongs to, or give that project's data dictionary"
        )
    if cols:
        raw = raw.with_columns(coded)
    exprs: list[pl.Expr] = []
    forms = {f.replace("_", " ").lower(): f for f in dict_frame[_FORM].unique().to_list()}
    events = {label: f"{name}_arm_1" for name, label, _ in EVENTS}
    if _INSTRUMENT in raw.columns:
        lowered = pl.col(_INSTRUMENT).str.strip_chars().str.to_lowercase()
        exprs.append(lowered.replace_strict(forms, default=pl.col(_INSTRUMENT)).alias(_INSTRUMENT))
    if _EVENT in raw.columns:
        exprs.append(pl.col(_EVENT).replace(events).alias(_EVENT))
    return raw.with_columns(exprs) if exprs else raw


# ------------------------------------------------------------------------------------------- reading


def _values(field: str, translation: str) -> pl.Expr:
    e = pl.col(field)
    table = _pairs(translation, "=")
    return e.replace(table) if table else e


def _split(
    raw: pl.DataFrame, map_frame: pl.DataFrame, header_of: Mapping[str, str]
) -> dict[str, list[pl.DataFrame]]:
    """Canonical row groups per table: data columns, :data:`ROW` and the source header of every column."""
    instrument = pl.col(_INSTRUMENT)
    repeating = set(raw[_INSTRUMENT].drop_nulls().unique().to_list())
    plans: list[tuple[str, pl.LazyFrame]] = []
    source = raw.lazy()
    everywhere = map_frame.filter(pl.col("form_name") == "")
    for (table_key, form_key), rows in map_frame.filter(pl.col("form_name") != "").group_by(
        "table", "form_name", maintain_order=True
    ):
        table, form = str(table_key), str(form_key)
        mine = pl.concat([everywhere.filter(pl.col("table") == table), rows])
        shared = mine.filter(pl.col("keys") == "")
        keyed = mine.filter(pl.col("keys") != "")
        on_form = instrument == form if form in repeating else instrument.is_null()
        groups: list[tuple[dict[str, str], pl.DataFrame]]
        if keyed.height:
            groups = [(_keys(str(k)), g) for (k,), g in keyed.group_by("keys", maintain_order=True)]
        else:
            groups = [({}, shared.filter(pl.col("form_name") != ""))]
        for constants, group in groups:
            present = [f for f in group["field_name"].to_list() if f in raw.columns]
            if not present:
                continue
            fields = pl.concat([shared, group]) if constants else shared
            exprs: list[pl.Expr] = []
            for field, column, translation in fields.select("field_name", "column", "values").iter_rows():
                if field in raw.columns:
                    exprs.append(_values(field, translation).alias(column))
                    exprs.append(pl.lit(header_of.get(field, field)).alias(_SRC + column))
            exprs.extend(pl.lit(v).alias(k) for k, v in constants.items())
            keep = on_form & pl.any_horizontal(pl.col(present).is_not_null())
            plans.append((table, source.filter(keep).select(*exprs, pl.col(ROW))))
    # the groups are independent: one parallel collection, each reading only its own columns
    parts: dict[str, list[pl.DataFrame]] = {}
    for (table, _), frame in zip(plans, pl.collect_all([p for _, p in plans]), strict=True):
        parts.setdefault(table, []).append(frame)
    return parts


def _stray_notices(raw: pl.DataFrame, dict_frame: pl.DataFrame, mapped: set[str], shown: str) -> list[Notice]:
    """Values of a form's fields on export rows of another instrument: reported, not read."""
    repeating = set(raw[_INSTRUMENT].drop_nulls().unique().to_list())
    notices: list[Notice] = []
    for (form,), rows in dict_frame.group_by(_FORM, maintain_order=True):
        fields = [f for f in rows[_NAME].to_list() if f in raw.columns and f in mapped and f != RECORD_ID]
        if not fields:
            continue
        off = pl.col(_INSTRUMENT).is_null() | (pl.col(_INSTRUMENT) != form)
        if form not in repeating:
            off = pl.col(_INSTRUMENT).is_not_null()
        stray = raw.filter(off & pl.any_horizontal(pl.col(fields).is_not_null()))
        if stray.height:
            notices.append(
                Notice(
                    shown,
                    None,
                    "unmapped",
                    f"{stray.height} export row(s) of another instrument hold values in fields of form "
                    f"{form} (first: line {stray[ROW][0]}); those values are not read",
                )
            )
    return notices


def read_redcap_export(
    path: str | Path,
    sha256: str,
    *,
    dictionary: str | Path | None = None,
    mapping: str | Path | None = None,
) -> list[SourceTable]:
    """Split a REDCap export (raw or labels) into canonical source tables.

    Parameters
    ----------
    path : str or Path
        The export: REDCap "CSV (raw data)" or "CSV (labels)", recognised from its header.
    sha256 : str
        Hash of the file.
    dictionary, mapping : str or Path, optional
        The project's data dictionary and the field mapping (default: the shipped project,
        ``data/schemas/redcap/``).

    Returns
    -------
    list of SourceTable
        One per canonical table with rows in the export, ``path`` suffixed ``#table``; :data:`ROW` is the
        export's CSV line and ``source_columns`` the export header each cell came from.

    Raises
    ------
    UnusableInputError
        Mapping fields missing from the dictionary, an export without the record id, or a label export
        holding a value that is no choice label of its field (the message names line, column and value).
    """
    shown = str(path)
    dict_frame = _load(dictionary, redcap_dictionary(), "data dictionary")
    map_frame = _checked_mapping(_load(mapping, redcap_mapping(), "mapping"), dict_frame)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UnusableInputError(f"{shown}: cannot read the file: {exc.strerror or exc}") from exc
    header = _first_line(data)
    labels = redcap_export_kind(header, dict_frame) == "labels"
    if labels:
        names = _header_names(header, dict_frame)
        header_of = dict(zip(names, (h.strip() for h in header), strict=True))
        raw, notices = read_csv_raw(path, data=_relabelled_bytes(data, names))
    else:
        raw, notices = read_csv_raw(path, data=data)
        header_of = {c: c for c in raw.columns}
    check_identifiers(raw.drop(ROW), shown)
    if RECORD_ID not in raw.columns:
        first = dict_frame[_LABEL][0] if labels and dict_frame.height else RECORD_ID
        raise UnusableInputError(
            f"{shown}: a REDCap export needs the record id column ({first!r}) first; export all fields "
            "of the project, or at least the record id with the instruments wanted"
        )
    if labels:
        raw = _codes_from_labels(raw, dict_frame, header_of, shown)
    if _INSTRUMENT not in raw.columns:
        raw = raw.with_columns(pl.lit(None, pl.String).alias(_INSTRUMENT))
    mapped = set(map_frame["field_name"].to_list())
    forms = set(dict_frame[_FORM].to_list())
    complete_cols = {f"{f}_complete" for f in forms}
    for c in raw.columns:
        if c in mapped or c in REDCAP_SYSTEM_COLUMNS or c in complete_cols or c == ROW:
            continue
        n = raw[c].drop_nulls().len()
        notices.append(
            Notice(
                shown,
                None,
                "unmapped",
                f"export column {header_of.get(c, c)} is not in the mapping; its {n} value(s) are not read",
                header_of.get(c, c),
                1,
            )
        )
    unknown_forms = sorted(set(raw[_INSTRUMENT].drop_nulls().unique().to_list()) - forms)
    if unknown_forms:
        rows = raw.filter(pl.col(_INSTRUMENT).is_in(unknown_forms))
        notices.append(
            Notice(
                shown,
                None,
                "unmapped",
                f"{rows.height} row(s) of repeating instrument(s) {', '.join(unknown_forms)}, which the data "
                f"dictionary does not have, are not read (first: line {rows[ROW][0]})",
            )
        )
    notices.extend(_stray_notices(raw, dict_frame, mapped, shown))
    data_fields = [c for c in raw.columns if c in mapped and c != RECORD_ID]
    empty = raw.filter(~pl.any_horizontal(pl.col(data_fields).is_not_null())) if data_fields else raw
    if empty.height:
        notices.append(
            Notice(
                shown,
                None,
                "blank_row",
                f"{empty.height} export row(s) hold no value of a mapped field "
                f"(first: line {empty[ROW][0]}); nothing to read",
            )
        )
    out: list[SourceTable] = []
    split = _split(raw, map_frame, header_of)
    for table in TABLE_SPECS:
        parts = split.get(table)
        if not parts:
            continue
        frame = pl.concat(parts, how="diagonal").sort(ROW, maintain_order=True)
        src_cols = [c for c in frame.columns if c.startswith(_SRC)]
        origin = frame.select(pl.col(c).alias(c.removeprefix(_SRC)) for c in src_cols)
        out.append(
            SourceTable(
                table,
                f"{shown}#{table}",
                "redcap",
                sha256,
                frame.drop(src_cols),
                [],
                source_columns=origin,
            )
        )
    if out:
        out[0].notices.extend(notices)
    else:
        raise UnusableInputError(
            f"{shown}: no row of the REDCap export maps to a canonical table; export the project's records "
            "with the instruments of data/schemas/redcap/mapping.csv"
        )
    return out


# ------------------------------------------------------------------------------------------- writing


def _cell_text(column: str, dtype: pl.DataType) -> pl.Expr:
    """A canonical cell as REDCap writes it: yes/no as 1/0, whole numbers without a decimal point."""
    x = pl.col(column)
    if dtype == pl.Boolean:
        return x.cast(pl.Int8).cast(pl.String)
    if dtype.is_float():
        whole = x.is_finite() & (x == x.round())
        return (
            pl.when(whole).then(x.cast(pl.Int64).cast(pl.String)).otherwise(x.cast(pl.String)).alias(column)
        )
    return x.cast(pl.String)


def _text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(_cell_text(c, t) for c, t in frame.schema.items())


def _inverse(translation: str) -> dict[str, str]:
    return {v: k for k, v in _pairs(translation, "=").items()}


def _match(constants: Mapping[str, str]) -> pl.Expr:
    return pl.all_horizontal(pl.col(c).cast(pl.String) == v for c, v in constants.items())


def _check_representable(tables: Mapping[str, pl.DataFrame], m: pl.DataFrame) -> None:
    """Refuse canonical values the project has no field for (a round trip would lose them).

    A row of a long table must match a key group of the mapping (a measure, item or exercise of the
    project), and every non-empty cell of it must be fed by a field of that group's form; a generated key
    (``set_index``) must be 1, since the matrix holds one row per exercise and session.
    """
    for (name,), rows in m.group_by("table", maintain_order=True):
        table = str(name)
        if table not in tables or tables[table].is_empty():
            continue
        frame = tables[table]
        spec = TABLE_SPECS[table]
        keyed = rows.filter(pl.col("keys") != "")
        groups: list[tuple[pl.Expr, set[str], str]] = []
        if keyed.height:
            held = pl.any_horizontal(_match(_keys(k)) for k in keyed["keys"].unique().to_list())
            left = frame.filter(~held)
            if left.height:
                raise UnusableInputError(
                    f"{table}: {left.height} row(s) are no measure, item or exercise of the REDCap project "
                    f"(first: {left.row(0)}); add a field for them to the project and the mapping"
                )
            for (k, form), group in keyed.group_by("keys", "form_name", maintain_order=True):
                constants = _keys(str(k))
                shared = rows.filter(pl.col("keys") == "", pl.col("form_name").is_in(["", str(form)]))
                fed = set(shared["column"]) | set(group["column"]) | set(constants)
                groups.append((_match(constants), fed, str(k)))
        else:
            groups.append((pl.lit(True), set(rows["column"]), "every row"))
        for match, fed, what in groups:
            for column in frame.columns:
                if column in fed:
                    continue
                bad = pl.col(column).is_not_null()
                if column in spec.generated_key_columns:
                    bad = bad & (pl.col(column) != 1)
                n = frame.filter(match & bad).height
                if n:
                    raise UnusableInputError(
                        f"{table}.{column} has {n} value(s) for {what} that no field of the REDCap project "
                        "holds; add a field for them to the project and the mapping"
                    )


def _form_frame(tables: Mapping[str, pl.DataFrame], form: str, rows: pl.DataFrame) -> pl.DataFrame | None:
    """Canonical rows of every table a form feeds, as one row per form instance (fields as columns)."""
    everywhere = redcap_mapping().filter(pl.col("form_name") == "")
    frames: list[pl.DataFrame] = []
    for (name,), trows in rows.group_by("table", maintain_order=True):
        table = str(name)
        if table not in tables or tables[table].is_empty():
            continue
        canon = _text(tables[table])
        mine = pl.concat([everywhere.filter(pl.col("table") == table), trows])
        shared = mine.filter(pl.col("keys") == "")
        keyed = mine.filter(pl.col("keys") != "")
        on = [f for f in shared["field_name"].to_list() if f]

        def pick(frame: pl.DataFrame, fields: pl.DataFrame) -> pl.DataFrame:
            return frame.select(
                pl.col(c).replace(_inverse(v)).alias(f)
                for f, c, v in fields.select("field_name", "column", "values").iter_rows()
            )

        if not keyed.height:
            frames.append(pick(canon, shared))
            continue
        parts: list[pl.DataFrame] = []
        for (k,), group in keyed.group_by("keys", maintain_order=True):
            constants = _keys(str(k))
            sub = canon.filter(_match(constants))
            if sub.is_empty():
                continue
            sub_frame = pick(sub, pl.concat([shared, group]))
            if sub_frame.select(on).is_duplicated().any():
                raise UnusableInputError(f"{table}: two rows for one {form} form instance ({constants})")
            parts.append(sub_frame)
        if parts:
            merged = parts[0]
            for p in parts[1:]:
                merged = merged.join(p, on=on, how="full", coalesce=True, nulls_equal=True)
            frames.append(merged)
    if not frames:
        return None
    out = frames[0]
    for f in frames[1:]:
        common = [c for c in out.columns if c in f.columns]
        out = out.join(f, on=common, how="full", coalesce=True, nulls_equal=True)
    return out


def redcap_export_frame(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Canonical tables as the raw ("CSV (raw data)") export of the shipped REDCap project.

    Parameters
    ----------
    tables : mapping of str to polars.DataFrame
        Canonical frames; ``episodes`` is needed to place visit dates on the events.

    Returns
    -------
    polars.DataFrame
        All columns String: one row per record and event (per instance in the session log), each dated row
        on the visit event nearest to its day since the episode start, ``<form>_complete = 2`` where the
        form holds data.

    Raises
    ------
    UnusableInputError
        Data the project cannot hold: two dates of one form on one visit event, a form on an event it is
        not designated to, an exercise twice in one session, a measure or item with no field.
    """
    d = redcap_dictionary()
    m = redcap_mapping()
    forms = d[_FORM].unique(maintain_order=True).to_list()
    designated = set(event_designations().select("unique_event_name", "form").iter_rows())
    _check_representable(tables, m)
    starts = tables["episodes"].select(pl.col("episode_id").alias(RECORD_ID), "start_date")
    visit_days = [(f"{n}_arm_1", day) for n, _, day in EVENTS if n not in ("enrolment", "sessions")]
    event_order = {f"{n}_arm_1": i for i, (n, _, _) in enumerate(EVENTS)}
    visit_frames: list[pl.DataFrame] = []
    pieces: list[pl.DataFrame] = []
    for form in forms:
        rows = m.filter(pl.col("form_name") == form)
        frame = _form_frame(tables, form, rows)
        if frame is None or frame.is_empty():
            continue
        if form == "episode":
            pieces.append(frame.with_columns(pl.lit("enrolment_arm_1").alias(_EVENT)))
            continue
        if form == "session_log":
            frame = frame.filter(pl.col("sess_date").is_not_null() | pl.col("sess_status").is_not_null())
            if frame["sess_id"].is_duplicated().any():
                raise UnusableInputError("session_exercises: an exercise appears twice in one session")
            frame = frame.sort(RECORD_ID, "sess_date", "sess_id").with_columns(
                pl.lit("sessions_arm_1").alias(_EVENT),
                pl.lit("session_log").alias(_INSTRUMENT),
                (pl.int_range(pl.len()).over(RECORD_ID) + 1).cast(pl.String).alias(_INSTANCE),
            )
            pieces.append(frame)
            continue
        date_field = rows.filter(pl.col("keys") == "", pl.col("column").is_in(["assessed_on", "checked_on"]))
        date = date_field["field_name"][0]
        day = (pl.col(date).str.to_date() - pl.col("start_date")).dt.total_days()
        nearest = pl.lit(visit_days[0][0])
        best = (day - visit_days[0][1]).abs()
        for name, target in visit_days[1:]:
            dist = (day - target).abs()
            nearest = pl.when(dist < best).then(pl.lit(name)).otherwise(nearest)
            best = pl.min_horizontal(best, dist)
        frame = (
            frame.join(starts, on=RECORD_ID, how="left")
            .with_columns(nearest.alias(_EVENT))
            .drop("start_date")
        )
        clash = frame.filter(pl.struct(RECORD_ID, _EVENT).is_duplicated())
        if clash.height:
            raise UnusableInputError(
                f"{form}: two dates of record {clash[RECORD_ID][0]} fall on one visit event"
            )
        wrong = frame.filter(~pl.col(_EVENT).is_in([e for e, f in designated if f == form]))
        if wrong.height:
            raise UnusableInputError(f"{form}: not designated to event {wrong[_EVENT][0]}")
        visit_frames.append(frame)
    if visit_frames:
        visits = visit_frames[0]
        for f in visit_frames[1:]:
            visits = visits.join(f, on=[RECORD_ID, _EVENT], how="full", coalesce=True)
        pieces.append(visits)
    flat = pl.concat(pieces, how="diagonal")
    columns: list[str] = [RECORD_ID, _EVENT, _INSTRUMENT, _INSTANCE]
    completes: list[pl.Expr] = []
    for form in forms:
        fields = d.filter(pl.col(_FORM) == form, pl.col(_TYPE) != "descriptive")[_NAME].to_list()
        fields = [f for f in fields if f != RECORD_ID]
        have = [f for f in fields if f in flat.columns]
        for f in fields:
            if f not in flat.columns:
                flat = flat.with_columns(pl.lit(None, pl.String).alias(f))
        completes.append(
            pl.when(pl.any_horizontal(pl.col(have).is_not_null()) if have else pl.lit(False))
            .then(pl.lit("2"))
            .otherwise(pl.lit(None, pl.String))
            .alias(f"{form}_complete")
        )
        columns += [*fields, f"{form}_complete"]
    for c in (_INSTRUMENT, _INSTANCE):
        if c not in flat.columns:
            flat = flat.with_columns(pl.lit(None, pl.String).alias(c))
    flat = flat.with_columns(completes)
    order = pl.col(_EVENT).replace_strict(event_order, return_dtype=pl.Int32)
    return (
        flat.with_columns(order.alias("__e"), pl.col(_INSTANCE).cast(pl.Int32).alias("__i"))
        .sort(RECORD_ID, "__e", "__i", nulls_last=False)
        .select(columns)
    )


def _as_labels(flat: pl.DataFrame) -> pl.DataFrame:
    """A raw export frame as REDCap's "CSV (labels)": choice labels as values, field labels as header."""
    d = redcap_dictionary()
    code_to_label = {f: {v: k for k, v in table.items()} for f, table in _label_of_choices(d).items()}
    events = {f"{name}_arm_1": label for name, label, _ in EVENTS}
    exprs = [pl.col(c).replace(code_to_label[c]) for c in flat.columns if c in code_to_label]
    exprs.append(pl.col(_EVENT).replace(events))
    exprs.append(pl.col(_INSTRUMENT).str.replace_all("_", " ").str.to_titlecase())
    exprs += [pl.col(c).replace(_COMPLETE_LABELS) for c in flat.columns if c.endswith("_complete")]
    return flat.with_columns(exprs)


def write_redcap_export(
    tables: Mapping[str, pl.DataFrame], path: str | Path, *, labels: bool = False
) -> Path:
    """Write canonical tables as a REDCap export of the shipped project.

    Parameters
    ----------
    tables : mapping of str to polars.DataFrame
        Canonical frames (see :func:`redcap_export_frame`).
    path : str or Path
        Output CSV.
    labels : bool, default False
        Write REDCap's "CSV (labels)" (field labels as header, choice labels as values) instead of
        "CSV (raw data)".

    Returns
    -------
    Path
        The file written.
    """
    flat = redcap_export_frame(tables)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not labels:
        flat.write_csv(path)
        return path
    labelled = _as_labels(flat)
    # field labels may repeat (``Complete?``): write the header by hand
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([dict(_export_columns(redcap_dictionary())).get(c, c) for c in flat.columns])
    body = labelled.write_csv(include_header=False)
    path.write_text(out.getvalue() + body, encoding="utf-8")
    return path
