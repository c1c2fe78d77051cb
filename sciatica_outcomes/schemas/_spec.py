"""Table specifications: a pandera model plus the table-level facts pandera does not carry.

A :class:`TableSpec` bundles the pandera ``DataFrameModel`` of a canonical table (column types, ranges,
enumerations, nullability) with its primary key, foreign keys and date-within-episode rule. The ingest
engine compiles these into vectorised polars expressions; ``schemas export`` writes them as Frictionless
Table Schemas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import pandera.polars as pa
import polars as pl

__all__ = ["CODE_PATTERN", "SCHEMA_VERSION", "DateWindow", "ForeignKey", "TableSpec"]

#: Version of the canonical table schemas; stored with every ingest. Bump the minor version for added
#: optional columns or widened ranges, the major version for anything that can reject data accepted before.
SCHEMA_VERSION = "1.1.0"

#: Pseudonymous codes (episode, patient, clinic, therapist and session identifiers): ASCII letters, digits,
#: ``_``, ``-`` and ``.``, 1-64 characters. No spaces, no accents, no invisible characters.
CODE_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


@dataclass(frozen=True)
class ForeignKey:
    """``columns`` of this table must match ``ref_columns`` of a row of ``table``."""

    columns: tuple[str, ...]
    table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class DateWindow:
    """A date column that must fall inside its episode.

    ``date_column`` must lie in ``[start_date - days_before_start, end_date + days_after_end]`` of the
    episode it belongs to (open-ended when the episode has no ``end_date``).
    """

    date_column: str
    days_before_start: int
    days_after_end: int


@dataclass(frozen=True)
class TableSpec:
    """Everything known about one canonical table.

    Parameters
    ----------
    name : str
        Table name (also the file stem a source file must carry).
    model : type[pandera.polars.DataFrameModel]
        Column types, nullability and per-column checks.
    key : tuple of str
        Primary key; unique and non-null in a valid table.
    description : str
        One line for humans (exported into the Frictionless schema).
    foreign_keys : tuple of ForeignKey
        References to other canonical tables.
    date_window : DateWindow, optional
        Rule placing the table's date inside its episode.
    generated_key_columns : tuple of str
        Key columns ingest numbers from the row order when the source lacks them.
    not_before_start : tuple of str
        Date columns that must not be before their episode's ``start_date`` (rule ``before_start``), such as
        ``work.return_to_work_date``.
    """

    name: str
    model: type[pa.DataFrameModel]
    key: tuple[str, ...]
    description: str
    foreign_keys: tuple[ForeignKey, ...] = ()
    date_window: DateWindow | None = None
    generated_key_columns: tuple[str, ...] = field(default=())
    not_before_start: tuple[str, ...] = field(default=())

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera ``DataFrameSchema`` of the table."""
        return self.model.to_schema()

    @cached_property
    def dtypes(self) -> dict[str, pl.DataType]:
        """Canonical polars dtype of every column, in canonical column order."""
        out: dict[str, pl.DataType] = {}
        for name, col in self.schema.columns.items():
            dtype = col.dtype.type
            out[name] = dtype() if isinstance(dtype, type) else dtype
        return out

    @property
    def columns(self) -> tuple[str, ...]:
        """Canonical column order."""
        return tuple(self.dtypes)

    @cached_property
    def required_columns(self) -> tuple[str, ...]:
        """Columns a source file must contain (``generated_key_columns`` may be filled in by ingest)."""
        return tuple(
            name
            for name, col in self.schema.columns.items()
            if col.required and name not in self.generated_key_columns
        )

    def empty(self) -> pl.DataFrame:
        """An empty frame with the canonical columns and dtypes."""
        return pl.DataFrame(schema=self.dtypes)
