"""Tables printed by the command line: numbers are never cut, whatever the terminal's width.

Rich shrinks a table that is wider than the terminal by cutting cells (``13.8…``). Here a number column never
wraps and is at least as wide as its widest value; a text column folds onto more lines. If even that does not
fit, the table is printed at its own minimum width (the terminal then wraps the lines) rather than cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

#: Narrowest a text column is folded to (characters) when a table must shrink to the terminal's width.
TEXT_FLOOR = 12
#: Narrowest a number column's header is folded to (characters); the numbers themselves never fold.
HEADER_FLOOR = 8


def make_table(
    title: str | None,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Iterable[int] | None = None,
    width: int | None = None,
) -> Table:
    """A rich table whose numeric columns (indices in ``numeric``) are right-aligned and never cut.

    Parameters
    ----------
    title
        Table title (``None`` for none).
    header
        Column names.
    rows
        Rows of already formatted cells (strings), one per row.
    numeric
        Indices of the columns that hold numbers; default: every column but the first.
    width
        Width to fit (default: no limit). Text columns fold first, sharing what the number columns leave in
        proportion to their widest cell, never below :data:`TEXT_FLOOR` characters; then the headers of
        number columns fold, never below the widest value or :data:`HEADER_FLOOR` characters. When that
        does not fit, the table is wider than ``width`` rather than cut (:func:`print_table`).
    """
    cells = [[str(c) for c in row] for row in rows]
    numbers = set(range(1, len(header)) if numeric is None else numeric)
    values = [max((len(r[j]) for r in cells), default=1) for j in range(len(header))]
    sizes = [max(values[j], len(name)) for j, name in enumerate(header)]
    overhead = 3 * len(header) + 1  # padding either side of every cell, the column separators and edges
    text = [j for j in range(len(header)) if j not in numbers]
    if width is not None and sum(sizes) + overhead > width:
        # first, text columns fold: they share what the number columns leave, down to their floors
        room = width - overhead - sum(sizes[j] for j in numbers)
        share = sum(sizes[j] for j in text) or 1
        for j in text:
            floor = min(sizes[j], TEXT_FLOOR)
            sizes[j] = min(sizes[j], max(floor, room * sizes[j] // share if room > 0 else 0))
    if width is not None and sum(sizes) + overhead > width:
        # then a number column's long header folds, down to the widest value or HEADER_FLOOR characters
        for j in numbers:
            sizes[j] = max(values[j], min(len(header[j]), HEADER_FLOOR))
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for j, name in enumerate(header):
        justify: Literal["right", "left"] = "right" if j in numbers else "left"
        # a number fits its column on one line; only a header longer than the column folds
        table.add_column(name, justify=justify, overflow="fold", width=sizes[j])
    for row in cells:
        table.add_row(*row)
    return table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` without cutting a cell: at the terminal's width if it fits, else at its own width."""
    unbounded = console.options.update(max_width=100_000)
    needed = Measurement.get(console, unbounded, table).maximum
    if needed <= console.width:
        console.print(table)
        return
    terminal = console.width  # console.print(width=) cannot exceed the console's own width
    console.width = needed
    try:
        console.print(table, crop=False)
    finally:
        console.width = terminal
