"""Out-of-core derive: :func:`~sciatica_outcomes.derive.derive_all` of a store, one range of episodes at once.

Every derived figure of an episode depends on that episode's rows only (its sessions and their exercise rows,
measures, questionnaire items, symptom checks), apart from three facts of the whole store, which are read
first with one SQL query each: the data cut (the latest date of any table), the measures that have a capped
test (they get ``_censored`` columns) and, for ``scoring_problems``, the position of the range's first
questionnaire row in the whole table (problems cite the row). The episodes are split, in ``episode_id``
order, into ranges of :data:`DEFAULT_EPISODES_PER_BATCH`; each range's rows are read from the store
(DuckDB filters them, within :data:`DUCKDB_MEMORY_LIMIT`) and derived in memory, so the peak memory is that
of one range, not of the store.

The frames are the same as :func:`~sciatica_outcomes.derive.derive_all`'s, row for row and column for column
(``tests/derive/test_batched.py`` compares every frame on a synthetic cohort): the ranges' frames are
concatenated in ``episode_id`` order (which is the order of every derived frame but the alerts, which are
sorted again), and a column a range lacks (a measure none of its episodes has) is added as nulls.

:func:`write_derived_batched` writes the files of ``sciatica-outcomes derive`` without holding the derived
frames in memory: each range's frames go to Parquet parts, which are then streamed into the final files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.derive._common import TABLE_NAMES, load_tables
from sciatica_outcomes.derive.frames import Derived, _ordered_measures, derive_tables
from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.store import Store

__all__ = [
    "DEFAULT_EPISODES_PER_BATCH",
    "DUCKDB_MEMORY_LIMIT",
    "derive_all_batched",
    "derive_batches",
    "write_derived_batched",
]

#: Episodes derived together (the memory budget of the batched derive): the in-memory derive needs about
#: 0.8 GB per 10,000 episodes of a synthetic cohort (~200 input rows each); the batched one needs that of
#: one range plus DuckDB's :data:`DUCKDB_MEMORY_LIMIT`, whatever the size of the store.
DEFAULT_EPISODES_PER_BATCH = 10_000

#: DuckDB's memory limit while the batched derive reads the store (its buffer pool would otherwise keep up
#: to 80 % of the machine's memory of cached table pages, growing with the store).
DUCKDB_MEMORY_LIMIT = "1GB"

#: Date columns whose latest value is the default data cut (as :func:`resolve_data_cut`).
_CUT_COLUMNS = (
    ("sessions", "session_date"),
    ("measures", "assessed_on"),
    ("symptom_checks", "checked_on"),
    ("episodes", "start_date"),
    ("episodes", "end_date"),
)

#: Leading columns of the analysis frame and its trailing covariates (the measure columns lie between).
_ANALYSIS_HEAD = (
    "episode_id",
    "patient_id",
    "clinic_id",
    "therapist_id",
    "assessed_on",
    "day",
    "week",
    "visit",
)
_ANALYSIS_TAIL = (
    "age",
    "sex",
    "symptom_duration_weeks",
    "affected_side",
    "prescribed_sessions_per_week",
    "adherence_so_far",
    "adherence_overall",
)
_SUMMARY_MEASURE_COLUMNS = ("baseline_{}", "{}_last_visit", "{}_change", "{}_responder_mcid")


def _open(source: Store | str | Path) -> tuple[Store, bool]:
    if isinstance(source, Store):
        return source, False
    if not Path(source).exists():
        raise UnusableInputError(f"{source}: no such store; ingest data first (sciatica-outcomes ingest)")
    return Store(source, read_only=True), True


def _data_cut(store: Store, existing: set[str]) -> date | None:
    dates = [
        row[0]
        for table, col in _CUT_COLUMNS
        if table in existing
        for row in store.query(f'SELECT max("{col}") FROM "{table}"')
    ]
    found = [d for d in dates if isinstance(d, date)]
    return max(found) if found else None


def _capped_measures(store: Store, existing: set[str]) -> list[str]:
    if "measures" not in existing:
        return []
    rows = store.query(
        "SELECT DISTINCT measure FROM measures WHERE stopped_reason IS NOT NULL "
        "AND episode_id IN (SELECT episode_id FROM episodes) ORDER BY measure"
    )
    return [str(r[0]) for r in rows]


def _bounds(store: Store, per_batch: int) -> list[str]:
    """First ``episode_id`` of every range of ``per_batch`` episodes, in order."""
    rows = store.query(
        "SELECT episode_id FROM (SELECT episode_id, row_number() OVER (ORDER BY episode_id) - 1 AS i "
        "FROM episodes) WHERE i % ? = 0 ORDER BY episode_id",
        [per_batch],
    )
    return [str(r[0]) for r in rows]


def _where(lo: str | None, hi: str | None, column: str = "episode_id") -> tuple[str, list[str]]:
    """SQL condition ``lo <= column < hi`` (open ends when None) and its parameters."""
    parts, params = [], []
    if lo is not None:
        parts.append(f"{column} >= ?")
        params.append(lo)
    if hi is not None:
        parts.append(f"{column} < ?")
        params.append(hi)
    return " AND ".join(parts) or "TRUE", params


def _range_tables(
    store: Store, existing: set[str], lo: str | None, hi: str | None
) -> dict[str, pl.DataFrame]:
    where, params = _where(lo, hi)
    tables: dict[str, pl.DataFrame] = {}
    for name in TABLE_NAMES:
        if name not in existing:
            continue
        if name == "session_exercises":
            # exercise rows carry no episode: those of the range's sessions
            sub, sub_params = f"session_id IN (SELECT session_id FROM sessions WHERE {where})", params
        else:
            sub, sub_params = where, params
        tables[name] = store.read(name, where=sub, params=sub_params)
    return tables


def derive_batches(
    source: Store | str | Path,
    config: ClinicalConfig | None = None,
    data_cut: date | None = None,
    *,
    episodes_per_batch: int = DEFAULT_EPISODES_PER_BATCH,
) -> Iterator[Derived]:
    """Derive a store one range of episodes at a time.

    Parameters
    ----------
    source : Store, str or Path
        The store (or its path).
    config : ClinicalConfig, optional
        Thresholds (defaults to ``ClinicalConfig()``).
    data_cut : date, optional
        Last date the data cover; defaults to the latest date of the whole store.
    episodes_per_batch : int
        Episodes per range (:data:`DEFAULT_EPISODES_PER_BATCH`): the memory budget.

    Yields
    ------
    Derived
        The frames of one range of episodes (``episode_id`` order); ``scoring_problems.row`` counts the
        questionnaire rows of the whole store, as :func:`~sciatica_outcomes.derive.derive_all` does.

    Raises
    ------
    UnusableInputError
        No such store, no episodes table, or ``episodes_per_batch`` below 1.
    """
    if episodes_per_batch < 1:
        raise UnusableInputError(f"episodes per batch must be at least 1, got {episodes_per_batch}")
    config = config or ClinicalConfig()
    store, close = _open(source)
    limit = store.query("SELECT current_setting('memory_limit')")[0][0]
    store.query(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    try:
        existing = {str(r[0]) for r in store.query("SELECT table_name FROM duckdb_tables()")}
        if "episodes" not in existing:
            raise UnusableInputError("the episodes table is required for derivation and was not supplied")
        cut = data_cut if data_cut is not None else _data_cut(store, existing)
        capped = _capped_measures(store, existing)
        starts: list[str | None] = [*_bounds(store, episodes_per_batch)] or [None]
        # open ends: rows whose episode sorts before the first or after the last episode are derived too
        ranges = [
            (None if i == 0 else lo, starts[i + 1] if i + 1 < len(starts) else None)
            for i, lo in enumerate(starts)
        ]
        item_offset = 0
        for lo, hi in ranges:
            tables = load_tables(_range_tables(store, existing, lo, hi))
            derived = derive_tables(tables, config, cut, capped)
            problems = derived.scoring_problems
            if item_offset and problems.height:
                problems = problems.with_columns(pl.col("row") + item_offset)
                derived = replace(derived, scoring_problems=problems)
            item_offset += tables["questionnaire_items"].height
            del tables
            yield derived
    finally:
        if close:
            store.close()
        else:
            store.query(f"SET memory_limit = '{limit}'")


def _measures_of(columns: Sequence[str]) -> list[str]:
    """The measures of an analysis frame's columns (those with a ``_change`` or ``baseline_`` column)."""
    found = {c.removeprefix("baseline_") for c in columns if c.startswith("baseline_")}
    found |= {c.removesuffix("_change") for c in columns if c.endswith("_change")}
    return sorted(found)


def _analysis_order(columns: Sequence[str], measures: Sequence[str]) -> list[str]:
    """The analysis frame's column order (:func:`~sciatica_outcomes.derive.analysis_frame`) of ``columns``."""
    have = set(columns)
    middle = [
        name
        for pattern in ("{}", "{}_censored", "{}_change", "baseline_{}")
        for m in measures
        if (name := pattern.format(m)) in have
    ]
    ordered = [c for c in _ANALYSIS_HEAD if c in have] + middle + [c for c in _ANALYSIS_TAIL if c in have]
    return ordered + [c for c in columns if c not in set(ordered)]


def _summary_order(columns: Sequence[str], measures: Sequence[str]) -> list[str]:
    """The episode summary's column order: fixed columns, then four columns per measure in measure order."""
    per_measure = {p.format(m) for m in measures for p in _SUMMARY_MEASURE_COLUMNS}
    head = [c for c in columns if c not in per_measure]
    have = set(columns)
    tail = [p.format(m) for m in measures for p in _SUMMARY_MEASURE_COLUMNS if p.format(m) in have]
    return head + tail


def _aligned(
    frames: Sequence[pl.LazyFrame], order: Sequence[str], schema: dict[str, pl.DataType]
) -> pl.LazyFrame:
    """The frames concatenated with the columns ``order`` (a column a frame lacks is null)."""
    parts = []
    for lf in frames:
        have = lf.collect_schema()
        parts.append(
            lf.select(
                [pl.col(c).cast(schema[c]) if c in have else pl.lit(None, schema[c]).alias(c) for c in order]
            )
        )
    return pl.concat(parts, how="vertical")


def _union_schema(schemas: Sequence[pl.Schema]) -> tuple[list[str], dict[str, pl.DataType]]:
    """Columns in order of first appearance, and each one's dtype (the first that is not Null)."""
    order: list[str] = []
    types: dict[str, pl.DataType] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            if name not in types:
                order.append(name)
                types[name] = dtype
            elif types[name] == pl.Null:
                types[name] = dtype
    return order, types


def _measures(schemas: Sequence[pl.Schema]) -> list[str]:
    return _ordered_measures(sorted({m for s in schemas for m in _measures_of(list(s))}))


def _combine(parts: dict[str, list[pl.LazyFrame]]) -> dict[str, pl.LazyFrame]:
    """One lazy frame per derived frame, from the ranges' frames."""
    out: dict[str, pl.LazyFrame] = {}
    for name, frames in parts.items():
        schemas = [f.collect_schema() for f in frames]
        columns, types = _union_schema(schemas)
        if name == "analysis_frame":
            columns = _analysis_order(columns, _measures(schemas))
        elif name == "episode_summary":
            columns = _summary_order(columns, _measures(schemas))
        combined = _aligned(frames, columns, types)
        if name == "alerts":
            combined = combined.sort(
                [pl.col("unactioned").fill_null(False), pl.col("kind") != "red_flag", "date", "episode_id"],
                descending=[True, False, False, False],
                maintain_order=True,
            )
        out[name] = combined
    return out


_FRAMES = (
    "analysis_frame",
    "episode_summary",
    "alerts",
    "outcomes",
    "scored_measures",
    "scoring_problems",
    "work_assessments",
    "return_to_work",
    "work_episodes",
)
#: The frames ``sciatica-outcomes derive`` writes.
_WRITTEN = (
    "analysis_frame",
    "episode_summary",
    "alerts",
    "scored_measures",
    "scoring_problems",
    "work_episodes",
    "return_to_work",
)


def derive_all_batched(
    source: Store | str | Path,
    config: ClinicalConfig | None = None,
    data_cut: date | None = None,
    *,
    episodes_per_batch: int = DEFAULT_EPISODES_PER_BATCH,
) -> Derived:
    """:func:`~sciatica_outcomes.derive.derive_all` of a store, derived one range of episodes at a time.

    The result equals ``derive_all(store, config, data_cut)``; the peak memory is that of one range plus the
    derived frames (use :func:`write_derived_batched` to keep those out of memory too).

    Parameters
    ----------
    source : Store, str or Path
        The store (or its path).
    config : ClinicalConfig, optional
        Thresholds.
    data_cut : date, optional
        Last date the data cover; defaults to the latest date of the store.
    episodes_per_batch : int
        Episodes per range (:data:`DEFAULT_EPISODES_PER_BATCH`).

    Returns
    -------
    Derived
        The same frames as :func:`~sciatica_outcomes.derive.derive_all`.
    """
    config = config or ClinicalConfig()
    parts: dict[str, list[pl.LazyFrame]] = {name: [] for name in _FRAMES}
    cut: date | None = data_cut
    for derived in derive_batches(source, config, data_cut, episodes_per_batch=episodes_per_batch):
        cut = derived.data_cut
        for name in _FRAMES:
            parts[name].append(getattr(derived, name).lazy())
    frames = {name: lf.collect() for name, lf in _combine(parts).items()}
    return Derived(**frames, data_cut=cut, config=config)


def write_derived_batched(
    source: Store | str | Path,
    out: Path,
    config: ClinicalConfig | None = None,
    data_cut: date | None = None,
    *,
    episodes_per_batch: int = DEFAULT_EPISODES_PER_BATCH,
) -> dict[str, Path]:
    """Write the files of ``sciatica-outcomes derive`` with bounded memory.

    Each range's frames are written to Parquet parts in a temporary folder inside ``out``; the parts are then
    streamed into the files :func:`~sciatica_outcomes.derive.cli.write_derived` writes (same names, same
    content), and removed.

    Parameters
    ----------
    source : Store, str or Path
        The store (or its path).
    out : Path
        Folder for the derived files.
    config : ClinicalConfig, optional
        Thresholds.
    data_cut : date, optional
        Last date the data cover; defaults to the latest date of the store.
    episodes_per_batch : int
        Episodes per range (:data:`DEFAULT_EPISODES_PER_BATCH`).

    Returns
    -------
    dict of str to Path
        The files written, keyed as by :func:`~sciatica_outcomes.derive.cli.write_derived`.
    """
    import json  # noqa: PLC0415

    from sciatica_outcomes.outputs import write_safe_csv  # noqa: PLC0415

    config = config or ClinicalConfig()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".derive_parts_", dir=out))
    try:
        parts: dict[str, list[pl.LazyFrame]] = {name: [] for name in _WRITTEN}
        cut: date | None = data_cut
        batches = derive_batches(source, config, data_cut, episodes_per_batch=episodes_per_batch)
        for k, derived in enumerate(batches):
            cut = derived.data_cut
            for name in _WRITTEN:
                path = scratch / f"{name}_{k:06d}.parquet"
                getattr(derived, name).write_parquet(path)
                parts[name].append(pl.scan_parquet(path))
            del derived
        combined = _combine(parts)
        paths = {
            "analysis_frame": out / "analysis_frame.parquet",
            "episode_summary": out / "episode_summary.parquet",
            "alerts": out / "alerts.csv",
            "scored_measures": out / "scored_measures.parquet",
            "scoring_problems": out / "scoring_problems.csv",
            "work_episodes": out / "work_episodes.parquet",
            "return_to_work": out / "return_to_work.parquet",
            "provenance": out / "derive_provenance.json",
        }
        rows: dict[str, int] = {}
        for name in (
            "analysis_frame",
            "episode_summary",
            "scored_measures",
            "work_episodes",
            "return_to_work",
        ):
            combined[name].sink_parquet(paths[name])
            rows[name] = pl.scan_parquet(paths[name]).select(pl.len()).collect().item()
        alerts = combined["alerts"].collect()
        problems = combined["scoring_problems"].collect()
        write_safe_csv(alerts, paths["alerts"])
        write_safe_csv(problems, paths["scoring_problems"])
        provenance = {
            "source": str(source.path if isinstance(source, Store) else source),
            "data_cut": cut.isoformat() if cut else None,
            "config": config.to_dict(),
            "rows": {
                "analysis_frame": rows["analysis_frame"],
                "episode_summary": rows["episode_summary"],
                "alerts": alerts.height,
                "unactioned_red_flags": int(alerts["unactioned"].fill_null(False).sum()),
                "scored_measures": rows["scored_measures"],
                "scoring_problems": problems.height,
                "work_episodes": rows["work_episodes"],
                "return_to_work": rows["return_to_work"],
            },
        }
        paths["provenance"].write_text(json.dumps(provenance, indent=1, default=str) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return paths
