"""Writing output files safely: atomically, and CSV cells that a spreadsheet cannot run as formulas.

Every file the product writes for people (reports, CSV exports, the pseudonymization key) goes through
:func:`atomic_output`: the content is written to a temporary file beside the target and renamed over it only
when complete, so a full disk or a crash leaves either the previous file or none, never an empty or
truncated one. Every CSV goes through :func:`write_safe_csv`, which neutralises the cells a spreadsheet
would evaluate (OWASP "CSV injection"); :func:`restore_cells` undoes it for files the product reads back.

Examples
--------
>>> import polars as pl
>>> from sciatica_outcomes.outputs import neutralise_cell
>>> neutralise_cell("-1-1"), neutralise_cell("-1.5"), neutralise_cell("CL01")
("'-1-1", '-1.5', 'CL01')
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import polars as pl

__all__ = ["atomic_output", "neutralise_cell", "neutralise_frame", "restore_cells", "write_safe_csv"]

#: A cell a spreadsheet may evaluate: after any leading apostrophes and blanks, it starts with ``=``, ``+``,
#: ``-`` or ``@`` (or their full-width forms), or it starts with a tab, carriage return or line feed.
_EVALUATED = r"^(?:'*[ \t\r\n\u00a0\u3000]*[=+\-@\uff1d\uff0b\uff0d\uff20]|[\t\r\n])"
#: A plain decimal number (a spreadsheet reads it as that number, so it is left as written).
_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_EVALUATED_RE = re.compile(_EVALUATED)
_NUMBER_RE = re.compile(_NUMBER)
_TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum)


@contextmanager
def atomic_output(path: str | Path, *, mode: int = 0o666) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` if the body succeeds, else it is removed.

    Parameters
    ----------
    path : str or Path
        The file to write (its directory is created).
    mode : int
        Permission bits of the new file before the umask (``0o600``: readable by the owner only; the bits
        are set when the temporary file is created, before any content is written).

    Yields
    ------
    pathlib.Path
        An empty file to write the content to.

    Notes
    -----
    The rename is atomic on POSIX file systems and on Windows (``os.replace``): a reader sees the old file
    or the new one. On any error (``ENOSPC`` included) the temporary file is deleted and the error
    propagates, so no empty or partial output is left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    try:
        yield tmp
        if mode != 0o666:
            os.chmod(tmp, mode)  # a writer that recreated the file must not widen its permissions
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


def neutralise_cell(value: object) -> object:
    """Make one value safe to open in a spreadsheet (the rule of :func:`neutralise_frame`).

    Strings a spreadsheet would evaluate get a leading apostrophe (shown as text by Excel, LibreOffice and
    Google Sheets); plain decimal numbers and every non-string value are returned unchanged.
    """
    if isinstance(value, str) and _EVALUATED_RE.match(value) and not _NUMBER_RE.match(value):
        return "'" + value
    return value


def neutralise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Neutralise every text cell of a frame that a spreadsheet would evaluate as a formula.

    Parameters
    ----------
    frame : polars.DataFrame
        Any frame; String, Categorical and Enum columns are treated as text (and returned as String).

    Returns
    -------
    polars.DataFrame
        The same frame with a ``'`` put in front of every text cell that, after any leading apostrophes
        and blanks, starts with ``=``, ``+``, ``-`` or ``@`` (or a full-width form of them), or that starts
        with a tab, carriage return or line feed, such as ``=HYPERLINK(...)``, ``@SUM(A1)`` and ``-1-1``
        (which a spreadsheet evaluates to -2), unless the cell is a plain decimal number such as ``-1.5``
        or ``+3`` (a spreadsheet reads that as the same number). Number, date and Boolean columns are not
        touched, so negative numbers stay numbers.

    Notes
    -----
    Cells that already start with apostrophes followed by such a character get one more, which makes the
    rule reversible: :func:`restore_cells` gives back the original values exactly.
    """
    text = [c for c, t in frame.schema.items() if isinstance(t, _TEXT_TYPES)]
    if not text:
        return frame
    # categorical and enum values are text in the file too: neutralise them as strings
    frame = frame.with_columns(pl.col(text).cast(pl.String))
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(_EVALUATED) & ~pl.col(c).str.contains(_NUMBER))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def restore_cells(frame: pl.DataFrame) -> pl.DataFrame:
    """Undo :func:`neutralise_frame` on String columns read back from a file the product wrote.

    A cell loses its first apostrophe when the rest is a cell :func:`neutralise_frame` would have
    neutralised; every other cell is returned as read.
    """
    text = [c for c, t in frame.schema.items() if t == pl.String]
    return frame.with_columns(
        pl.when(
            pl.col(c).str.starts_with("'")
            & pl.col(c).str.slice(1).str.contains(_EVALUATED)
            & ~pl.col(c).str.slice(1).str.contains(_NUMBER)
        )
        .then(pl.col(c).str.slice(1))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def write_safe_csv(frame: pl.DataFrame, path: str | Path, *, mode: int = 0o666) -> Path:
    """Write a frame as CSV, atomically, with every text cell neutralised by :func:`neutralise_frame`.

    Column names are neutralised by the same rule (a header cell is a cell too).

    Parameters
    ----------
    frame : polars.DataFrame
        The table to write.
    path : str or Path
        The CSV file (its directory is created).
    mode : int
        Permission bits before the umask (see :func:`atomic_output`).

    Returns
    -------
    pathlib.Path
        The file written.
    """
    path = Path(path)
    safe = neutralise_frame(frame)
    safe = safe.rename({c: str(neutralise_cell(c)) for c in safe.columns if neutralise_cell(c) != c})
    with atomic_output(path, mode=mode) as tmp:
        safe.write_csv(tmp, quote_style="non_numeric")
    return path
