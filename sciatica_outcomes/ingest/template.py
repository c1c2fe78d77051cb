"""Blank input templates generated from the schemas: one Excel workbook, or one CSV file per table.

The workbook (:data:`TEMPLATE_XLSX`) has one sheet per canonical table with the canonical header, a comment
on every header cell (meaning, type, unit, allowed values, required or not, example), drop-down lists for
coded columns (codes on a hidden sheet, :data:`LISTS_SHEET`), range checks for numbers, date checks for
dates, and one filled example row per sheet; the example rows belong together (episode ``E0001``, session
``S0001``: ``schemas.documentation.EXAMPLE_ROWS``). A filled template is read by ``validate`` and ``ingest``
like any workbook with a sheet per table; its ``README`` and lists sheets are skipped with a notice.

Excel's checks only help while typing; ``sciatica-outcomes validate`` is what decides.
"""

from __future__ import annotations

import csv
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.schemas.documentation import ColumnDoc, column_docs, value_labels
from sciatica_outcomes.schemas.registry import TABLE_SPECS

if TYPE_CHECKING:
    from openpyxl.worksheet.datavalidation import DataValidation

__all__ = ["LISTS_SHEET", "README_SHEET", "TEMPLATE_XLSX", "write_template"]

#: File name of the Excel template.
TEMPLATE_XLSX = "sciatica-outcomes-template.xlsx"
#: Hidden sheet holding the codes of the drop-down lists (one column per coded column).
LISTS_SHEET = "_lists"
#: First sheet: how to fill in the workbook.
README_SHEET = "README"
#: Last row the column checks cover (Excel's last row).
_LAST_ROW = 1_048_576
#: Header fill of required columns (light blue), and of optional ones (light grey).
_REQUIRED_FILL = "BDD7EE"
_OPTIONAL_FILL = "EDEDED"

_README = (
    "sciatica-outcomes input template",
    "",
    "One sheet per table. Enter one record per row below the header; do not rename sheets or headers.",
    "Row 2 of every sheet is a filled example (episode E0001, session S0001): overwrite or delete it before "
    "you store your data.",
    "Blue headers are required columns, grey ones optional (leave a cell empty when not recorded). Point "
    "at a header to read its comment: meaning, type, unit, allowed values and an example.",
    "Coded columns offer a drop-down list; numbers and dates are checked as you type. Dates: YYYY-MM-DD.",
    "Check the workbook:     sciatica-outcomes validate sciatica-outcomes-template.xlsx",
    "Store it:               sciatica-outcomes ingest sciatica-outcomes-template.xlsx --db outcomes.duckdb",
    "Every column and code:  the data guide (sciatica-outcomes schemas guide --out DIR).",
    f"The {README_SHEET} and {LISTS_SHEET} sheets are not data: validate notes that it skips them.",
)


def _plain(text: str) -> str:
    """Guide text without Markdown code spans."""
    return re.sub(r"`([^`]*)`", r"\1", text)


def _typed(doc: ColumnDoc) -> Any:
    """The example value as the cell type Excel would hold (number, date, boolean or text)."""
    value = doc.example
    if value is None:
        return None
    kind = doc.field["type"]
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "boolean":
        return value == "true"
    return value


def _comment_text(doc: ColumnDoc, labels: dict[str, str] | None) -> str:
    lines = [doc.meaning or doc.name, f"Type: {doc.type}" + (f"; unit: {doc.unit}" if doc.unit else "")]
    if labels is not None and len(labels) <= 8:
        lines.append("Codes: " + "; ".join(f"{c} = {lab}" for c, lab in labels.items()))
    else:
        lines.append(f"Allowed: {_plain(doc.allowed)}")
    lines.append(doc.required.capitalize())
    lines.append(f"Example: {doc.example if doc.example is not None else '(empty)'}")
    return "\n".join(lines)


def _validation(doc: ColumnDoc, letter: str, list_range: str | None) -> DataValidation | None:
    from openpyxl.worksheet.datavalidation import DataValidation  # noqa: PLC0415

    cons = doc.field.get("constraints", {})
    kind = doc.field["type"]
    cell = f"{letter}2"
    dv: DataValidation | None = None
    message = ""
    if list_range is not None:
        dv = DataValidation(type="list", formula1=list_range)
        message = "choose a code from the list (the header's comment says what each means)"
    elif kind == "boolean":
        dv = DataValidation(type="list", formula1='"true,false"')
        message = "true or false"
    elif kind in ("integer", "number"):
        lo, hi, xlo = cons.get("minimum"), cons.get("maximum"), cons.get("exclusiveMinimum")
        whole = "whole" if kind == "integer" else "decimal"
        if xlo is not None:
            terms = [f"ISNUMBER({cell})", f"{cell}>{xlo}"] + ([f"{cell}<={hi}"] if hi is not None else [])
            dv = DataValidation(type="custom", formula1=f"AND({','.join(terms)})")
        elif lo is not None and hi is not None:
            dv = DataValidation(type=whole, operator="between", formula1=str(lo), formula2=str(hi))
        elif lo is not None:
            dv = DataValidation(type=whole, operator="greaterThanOrEqual", formula1=str(lo))
        elif hi is not None:
            dv = DataValidation(type=whole, operator="lessThanOrEqual", formula1=str(hi))
        else:
            dv = DataValidation(type="custom", formula1=f"ISNUMBER({cell})")
        message = _plain(doc.allowed)
    elif kind == "date":
        # serials 1 and 2958465 are 1900-01-01 and 9999-12-31: "any date", typed text is refused
        dv = DataValidation(type="date", operator="between", formula1="1", formula2="2958465")
        message = "a date, typed as YYYY-MM-DD"
    elif "pattern" in cons:
        dv = DataValidation(
            type="custom", formula1=f'AND(LEN({cell})>=1,LEN({cell})<=64,ISERROR(FIND(" ",{cell})))'
        )
        message = _plain(doc.allowed)
    if dv is None:
        return None
    dv.allow_blank = True
    dv.showErrorMessage = True
    dv.errorTitle = doc.name[:32]
    dv.error = f"{doc.name}: {message}"[:225]
    dv.showInputMessage = True
    dv.promptTitle = doc.name[:32]
    dv.prompt = (doc.meaning or doc.name)[:255]
    dv.add(f"{letter}2:{letter}{_LAST_ROW}")
    return dv


def _write_xlsx(path: Path) -> None:
    from openpyxl import Workbook  # noqa: PLC0415 - loaded only when a template is written
    from openpyxl.comments import Comment  # noqa: PLC0415
    from openpyxl.styles import Font, PatternFill  # noqa: PLC0415
    from openpyxl.utils import get_column_letter  # noqa: PLC0415

    wb = Workbook()
    readme = wb.active
    readme.title = README_SHEET
    for i, line in enumerate(_README, start=1):
        readme.cell(row=i, column=1, value=line)
    readme["A1"].font = Font(bold=True, size=14)
    readme.column_dimensions["A"].width = 110
    sheets = {table: wb.create_sheet(table) for table in TABLE_SPECS}
    lists = wb.create_sheet(LISTS_SHEET)
    lists.sheet_state = "hidden"
    list_col = 0
    for table, ws in sheets.items():
        for j, doc in enumerate(column_docs(table), start=1):
            letter = get_column_letter(j)
            labels: dict[str, str] | None = None
            list_range = None
            if "enum" in doc.field.get("constraints", {}):
                labels = value_labels(table, doc.name)
                list_col += 1
                lcol = get_column_letter(list_col)
                lists.cell(row=1, column=list_col, value=f"{table}.{doc.name}")
                for k, code in enumerate(labels, start=2):
                    lists.cell(row=k, column=list_col, value=code)
                list_range = f"'{LISTS_SHEET}'!${lcol}$2:${lcol}${len(labels) + 1}"
            head = ws.cell(row=1, column=j, value=doc.name)
            head.font = Font(bold=True)
            required = doc.required == "required"
            head.fill = PatternFill("solid", fgColor=_REQUIRED_FILL if required else _OPTIONAL_FILL)
            comment = Comment(_comment_text(doc, labels), "sciatica-outcomes")
            comment.width, comment.height = 360, 190
            head.comment = comment
            example = ws.cell(row=2, column=j, value=_typed(doc))
            if doc.field["type"] == "date":
                example.number_format = "yyyy-mm-dd"
                ws.column_dimensions[letter].number_format = "yyyy-mm-dd"
            dv = _validation(doc, letter, list_range)
            if dv is not None:
                ws.add_data_validation(dv)
            width = max(len(doc.name), len(doc.example or "")) + 3
            ws.column_dimensions[letter].width = min(max(width, 10), 40)
        ws.freeze_panes = "A2"
    wb.active = 0
    wb.save(path)


def _write_csv(path: Path, table: str) -> None:
    docs = column_docs(table)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow([d.name for d in docs])
        writer.writerow(["" if d.example is None else d.example for d in docs])


def write_template(out: str | Path, fmt: Literal["xlsx", "csv"] = "xlsx") -> list[Path]:
    """Write an input template for the canonical tables into the directory ``out``.

    Parameters
    ----------
    out : str or Path
        Directory (created if missing).
    fmt : {"xlsx", "csv"}
        ``xlsx``: one workbook (:data:`TEMPLATE_XLSX`) with a sheet per table, header comments, drop-down
        lists, range and date checks. ``csv``: one ``<table>.csv`` per table (header and example row).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    UnusableInputError
        If ``fmt`` is unknown or a file to be written already exists (a filled template is never
        overwritten).
    """
    out = Path(out)
    if fmt == "xlsx":
        targets = [out / TEMPLATE_XLSX]
    elif fmt == "csv":
        targets = [out / f"{table}.csv" for table in TABLE_SPECS]
    else:
        raise UnusableInputError(f"unknown template format {fmt!r}: use xlsx or csv")
    existing = [p for p in targets if p.exists()]
    if existing:
        raise UnusableInputError(
            f"{existing[0]} already exists and may hold data: choose another --out directory or move the "
            "file away"
        )
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "xlsx":
        _write_xlsx(targets[0])
    else:
        for table, path in zip(TABLE_SPECS, targets, strict=True):
            _write_csv(path, table)
    return targets
