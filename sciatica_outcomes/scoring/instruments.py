"""Scoring of questionnaire items into measures: ODI, RMDQ-24, SBI, SFI, PSFS and NPRS.

Each instrument is a frozen :class:`Instrument` definition (items, item range, direction, scoring rule,
versions, source). :func:`score_questionnaires` scores every questionnaire (one ``episode_id`` x
``assessed_on`` x ``instrument``) of a ``questionnaire_items`` frame in one vectorised pass and returns the
scores as ``measures`` rows with their provenance, plus every refused questionnaire as a problem row that
names the row, column, value and rule. Nothing is dropped silently: every questionnaire is either scored or
listed as a problem.

PROMIS short forms are not scored here: their raw-to-T-score tables are form- and version-specific and must
come from the official HealthMeasures manuals (domain.md §1); supply T-scores directly as ``promis_pf`` /
``promis_pi`` measures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import polars as pl

from sciatica_outcomes.config import ClinicalConfig
from sciatica_outcomes.errors import DataValidationError, UnusableInputError
from sciatica_outcomes.schemas.vocabulary import (
    MODIFIED_ODI_SECTIONS,
    ODI_SECTIONS,
    RMDQ_ITEMS,
    SCIATICA_ITEMS,
)

__all__ = [
    "INSTRUMENTS",
    "ODI_BANDS",
    "Instrument",
    "ScoredQuestionnaires",
    "odi_band",
    "score_questionnaires",
]

Rule = Literal["percent_of_answered", "sum", "mean", "each"]


@dataclass(frozen=True)
class Instrument:
    """Definition of one questionnaire and its scoring rule.

    Parameters
    ----------
    code : str
        Instrument code used in ``questionnaire_items.instrument``.
    measure : str
        Measure code of the score (``each`` instruments store item ``x`` as measure ``{measure}_{x}``).
    items : dict[str, tuple[str, ...]] or None
        Item codes per version; ``None`` when the patient names the items (PSFS activities).
    item_min, item_max : int
        Range of one item response.
    higher_is_better : bool
        Direction of the score; every downstream function honours it.
    rule : {"percent_of_answered", "sum", "mean", "each"}
        Scoring rule (see :func:`score_questionnaires`).
    default_version : str
        Version assumed when items carry none (ODI: ``ClinicalConfig.odi_default_version``).
    source : str
        Published scoring rule.
    """

    code: str
    measure: str
    items: Mapping[str, tuple[str, ...]] | None
    item_min: int
    item_max: int
    higher_is_better: bool
    rule: Rule
    default_version: str
    source: str


INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType(
    {
        "odi": Instrument(
            "odi",
            "odi",
            MappingProxyType(
                {
                    "1.0": ODI_SECTIONS,
                    "2.0": ODI_SECTIONS,
                    "2.1a": ODI_SECTIONS,
                    "modified": MODIFIED_ODI_SECTIONS,
                }
            ),
            0,
            5,
            False,
            "percent_of_answered",
            "2.1a",
            "Fairbank & Pynsent, Spine 2000;25:2940: sum / (5 x sections answered) x 100",
        ),
        "rmdq": Instrument(
            "rmdq",
            "rmdq",
            MappingProxyType({"24": RMDQ_ITEMS}),
            0,
            1,
            False,
            "sum",
            "24",
            "Roland & Morris, Spine 1983;8:141: number of items ticked, 0-24",
        ),
        "sbi": Instrument(
            "sbi",
            "sbi",
            MappingProxyType({"1": SCIATICA_ITEMS}),
            0,
            6,
            False,
            "sum",
            "1",
            "Patrick et al., Spine 1995;20:1899; Grovle 2010, PMC2899809: sum of 4 items 0-6, 0-24",
        ),
        "sfi": Instrument(
            "sfi",
            "sfi",
            MappingProxyType({"1": SCIATICA_ITEMS}),
            0,
            6,
            False,
            "sum",
            "1",
            "Patrick et al., Spine 1995;20:1899; Grovle 2010, PMC2899809: sum of 4 items 0-6, 0-24",
        ),
        "psfs": Instrument(
            "psfs",
            "psfs",
            None,
            0,
            10,
            True,
            "mean",
            "1",
            "Stratford et al., Physiother Can 1995;47:258: mean of 3-5 activities 0-10, higher is better",
        ),
        "nprs": Instrument(
            "nprs",
            "nprs",
            MappingProxyType({"1": ("leg", "back")}),
            0,
            10,
            False,
            "each",
            "1",
            "NPRS 0-10 (LOINC 72514-3); leg and back pain kept apart (ICHOM LBP, Hahne et al.)",
        ),
    }
)

#: Columns of the problems frame returned by :func:`score_questionnaires`.
PROBLEM_COLUMNS: tuple[str, ...] = (
    "table",
    "row",
    "episode_id",
    "assessed_on",
    "instrument",
    "column",
    "value",
    "rule",
    "message",
)


@dataclass(frozen=True)
class ScoredQuestionnaires:
    """Result of :func:`score_questionnaires`.

    Attributes
    ----------
    measures : polars.DataFrame
        One row per scored questionnaire (per item for NPRS) in the ``measures`` layout: ``episode_id,
        assessed_on, measure, value, stopped_reason, cap_min, instrument_version`` plus provenance columns
        ``items_answered, items_missing, version_assumed, derived_from``.
    problems : polars.DataFrame
        One row per refusal (columns :data:`PROBLEM_COLUMNS`); ``row`` is the 1-based row of the input
        frame (``null`` when the refusal concerns the whole questionnaire).
    """

    measures: pl.DataFrame
    problems: pl.DataFrame

    @property
    def ok(self) -> bool:
        """True when every questionnaire was scored."""
        return self.problems.height == 0


#: ODI disability bands (Fairbank & Pynsent 2000): highest score of the band, band name, display label in
#: the wording of Fairbank & Pynsent's interpretation (minimal disability, moderate disability, severe
#: disability, crippling back pain, bed-bound). A band holds the scores above the previous band's highest
#: score, up to its own; the bands are in order, lightest first.
ODI_BANDS: tuple[tuple[float, str, str], ...] = (
    (20.0, "minimal", "minimal disability (0-20)"),
    (40.0, "moderate", "moderate disability (21-40)"),
    (60.0, "severe", "severe disability (41-60)"),
    (80.0, "crippling", "crippling back pain (61-80)"),
    (100.0, "bed-bound", "bed-bound (81-100)"),
)


def odi_band(score: pl.Expr, *, label: bool = False) -> pl.Expr:
    """Disability band of an ODI percent score.

    Parameters
    ----------
    score : polars.Expr
        ODI percent scores (0-100).
    label : bool
        Return the display label (``"moderate disability (21-40)"``) instead of the band name
        (``"moderate"``).

    Returns
    -------
    polars.Expr
        String band per score; null where the score is null.

    Notes
    -----
    0-20 minimal disability, 21-40 moderate disability, 41-60 severe disability, 61-80 crippling back pain,
    81-100 bed-bound (:data:`ODI_BANDS`, in that order). The cut
    points are ``<= 20``, ``<= 40``, ``<= 60``, ``<= 80``: a score above a cut point belongs to the next band,
    so 20.4 (possible when a score is recorded rather than computed from 10 sections) is moderate.

    Validated against: Fairbank & Pynsent 2000 bands as reproduced in the awell-score oswestry README.
    """
    which = 2 if label else 1
    # from the top band down: each cut point overrides what lies at or below it
    expr: pl.Expr = pl.lit(ODI_BANDS[-1][which])
    for upper, *names in reversed(ODI_BANDS[:-1]):
        expr = pl.when(score <= upper).then(pl.lit(names[which - 1])).otherwise(expr)
    return pl.when(score.is_null()).then(None).otherwise(expr)


_REQUIRED = ("episode_id", "assessed_on", "instrument", "item", "response")
_KEY = ("episode_id", "assessed_on", "instrument")


def _item_table(config: ClinicalConfig) -> pl.DataFrame:
    """Known (instrument, version, item) triples, with the instrument's item count and missing limit."""
    max_missing = {
        "odi": config.odi_max_missing,
        "rmdq": config.rmdq_max_missing,
        "sbi": config.sbi_max_missing,
        "sfi": config.sbi_max_missing,
        "nprs": 2,
    }
    rows = [
        (inst.code, version, item, len(items), max_missing[inst.code])
        for inst in INSTRUMENTS.values()
        if inst.items is not None
        for version, items in inst.items.items()
        for item in items
    ]
    return pl.DataFrame(
        rows,
        schema={
            "instrument": pl.String,
            "instrument_version": pl.String,
            "item": pl.String,
            "n_items": pl.Int64,
            "max_missing": pl.Int64,
        },
        orient="row",
    )


def _problems(frame: pl.DataFrame, column: str, value: pl.Expr, rule: str, message: pl.Expr) -> pl.DataFrame:
    return frame.select(
        pl.lit("questionnaire_items").alias("table"),
        (pl.col("_row").cast(pl.Int64) if "_row" in frame.columns else pl.lit(None, pl.Int64)).alias("row"),
        pl.col("episode_id").cast(pl.String),
        pl.col("assessed_on").cast(pl.Date),
        pl.col("instrument").cast(pl.String),
        pl.lit(column).alias("column"),
        value.cast(pl.String).alias("value"),
        pl.lit(rule).alias("rule"),
        message.alias("message"),
    )


def _empty_problems() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "table": pl.String,
            "row": pl.Int64,
            "episode_id": pl.String,
            "assessed_on": pl.Date,
            "instrument": pl.String,
            "column": pl.String,
            "value": pl.String,
            "rule": pl.String,
            "message": pl.String,
        }
    )


def score_questionnaires(
    items: pl.DataFrame,
    config: ClinicalConfig | None = None,
    *,
    strict: bool = False,
) -> ScoredQuestionnaires:
    """Score every questionnaire in a ``questionnaire_items`` frame.

    Parameters
    ----------
    items : polars.DataFrame
        Columns ``episode_id, assessed_on, instrument, item, response`` and optionally
        ``instrument_version``. Instruments: ``odi`` (items = the ten section codes of
        :data:`ODI_SECTIONS`, or of :data:`MODIFIED_ODI_SECTIONS` for version ``modified``), ``rmdq``
        (items ``1``..``24``; ``item_7`` or ``q07`` are read as 7), ``sbi`` / ``sfi`` (items
        :data:`SCIATICA_ITEMS`), ``psfs`` (any 3-5 activity codes) and ``nprs`` (items ``leg``, ``back``).
        A null response is a missing item.
    config : ClinicalConfig, optional
        Missing-item limits and the default ODI version; defaults to ``ClinicalConfig()``.
    strict : bool
        Raise :class:`~sciatica_outcomes.errors.DataValidationError` listing the problems instead of
        returning them.

    Returns
    -------
    ScoredQuestionnaires
        ``measures`` (scores with provenance) and ``problems`` (refusals).

    Notes
    -----
    - ODI (all versions, 0-100 %, higher = worse): ``100 * sum(items) / (5 * answered)``; refused when more
      than ``odi_max_missing`` sections are missing (default 1), so one missing section gives denominator 45.
    - RMDQ-24 (0-24, higher = worse): number of items ticked (response 1); refused when more than
      ``rmdq_max_missing`` items are missing (default 0: record unticked and not-applicable items as 0).
    - SBI / SFI (0-24, higher = worse): sum of the four items 0-6; ``sbi_max_missing`` (default 0).
    - PSFS (0-10, higher = better): mean of the answered activities; refused unless ``psfs_min_items`` to
      ``psfs_max_items`` (3-5) activities are answered.
    - NPRS (0-10, higher = worse): items ``leg`` and ``back`` become ``nprs_leg`` and ``nprs_back``.

    A questionnaire is refused as a whole (with one problem row per cause) when: its items carry more than
    one ``instrument_version`` (versions are not interchangeable); its version is unknown; an item code is
    unknown for the version; an item occurs twice; a response is outside the item range or not an integer;
    too many items are missing.

    Validated against: hand-worked examples of the published rules (``tests/scoring/test_instruments.py``):
    Fairbank & Pynsent 2000 (ODI, e.g. 16/45 = 35.6 %), Roland & Morris 1983, Patrick et al. 1995,
    Stratford et al. 1995.
    """
    config = config or ClinicalConfig()
    missing = [c for c in _REQUIRED if c not in items.columns]
    if missing:
        raise UnusableInputError(
            f"questionnaire_items lacks required columns {missing}; expected {list(_REQUIRED)} "
            "(and optionally instrument_version)"
        )
    frame = items.with_row_index("_row", offset=1).with_columns(
        pl.col("instrument").cast(pl.String).str.strip_chars().str.to_lowercase(),
        pl.col("item").cast(pl.String).str.strip_chars().str.to_lowercase(),
        pl.col("response").cast(pl.Float64, strict=False).alias("_response"),
        pl.col("response").cast(pl.String).alias("_response_text"),
        (
            pl.col("instrument_version").cast(pl.String).str.strip_chars()
            if "instrument_version" in items.columns
            else pl.lit(None, pl.String)
        ).alias("_given_version"),
    )
    # RMDQ item codes: "item_7", "q07", "7" -> "7"
    frame = frame.with_columns(
        pl.when(pl.col("instrument") == "rmdq")
        .then(pl.col("item").str.extract(r"(\d+)$").cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(pl.col("item"))
        .fill_null(pl.col("item"))
        .alias("item")
    )
    default_version = {code: inst.default_version for code, inst in INSTRUMENTS.items()}
    default_version["odi"] = config.odi_default_version
    frame = frame.with_columns(
        pl.col("_given_version").is_null().alias("version_assumed"),
        pl.coalesce(
            pl.col("_given_version"), pl.col("instrument").replace_strict(default_version, default=None)
        ).alias("instrument_version"),
    )
    problems: list[pl.DataFrame] = []

    # ---- row-level checks ------------------------------------------------------------------------
    known = pl.col("instrument").is_in(list(INSTRUMENTS))
    promis = pl.col("instrument").str.starts_with("promis")
    bad = frame.filter(~known)
    problems.append(
        _problems(
            bad,
            "instrument",
            pl.col("instrument"),
            "known instrument",
            pl.when(promis)
            .then(
                pl.format(
                    "instrument '{}': PROMIS short forms need the official HealthMeasures raw-to-T table; "
                    "supply T-scores as promis_pf / promis_pi measures instead",
                    pl.col("instrument"),
                )
            )
            .otherwise(
                pl.format(
                    "unknown instrument {}; expected one of {}",
                    pl.col("instrument"),
                    pl.lit(", ".join(INSTRUMENTS)),
                )
            ),
        )
    )
    frame = frame.filter(known)
    item_table = _item_table(config)
    frame = frame.join(item_table, on=["instrument", "instrument_version", "item"], how="left")
    versions = item_table.select("instrument", "instrument_version").unique()
    frame = frame.join(
        versions.with_columns(pl.lit(True).alias("_version_known")),
        on=["instrument", "instrument_version"],
        how="left",
    ).with_columns(
        (pl.col("_version_known").fill_null(False) | (pl.col("instrument") == "psfs")).alias("_version_known")
    )
    lo = pl.col("instrument").replace_strict({k: v.item_min for k, v in INSTRUMENTS.items()}, default=None)
    hi = pl.col("instrument").replace_strict({k: v.item_max for k, v in INSTRUMENTS.items()}, default=None)
    frame = frame.with_columns(
        (~pl.col("_version_known")).alias("_bad_version"),
        (pl.col("_version_known") & (pl.col("instrument") != "psfs") & pl.col("n_items").is_null()).alias(
            "_bad_item"
        ),
        (
            pl.col("_response_text").is_not_null()
            & (
                pl.col("_response").is_null()
                | (pl.col("_response") != pl.col("_response").round(0))
                | (pl.col("_response") < lo)
                | (pl.col("_response") > hi)
            )
        ).alias("_bad_response"),
        pl.len().over([*_KEY, "item"]).alias("_dup"),
    )
    problems.append(
        _problems(
            frame.filter(pl.col("_bad_version")),
            "instrument_version",
            pl.col("instrument_version"),
            "known instrument version",
            pl.format(
                "{} version '{}' is not supported (versions are not interchangeable); supported: {}",
                pl.col("instrument"),
                pl.col("instrument_version"),
                pl.col("instrument").replace_strict(
                    {k: ", ".join(v.items) if v.items else "any" for k, v in INSTRUMENTS.items()},
                    default="",
                ),
            ),
        )
    )
    problems.append(
        _problems(
            frame.filter(pl.col("_bad_item")),
            "item",
            pl.col("item"),
            "known item",
            pl.format(
                "item '{}' is not an item of {} version {}",
                pl.col("item"),
                pl.col("instrument"),
                pl.col("instrument_version"),
            ),
        )
    )
    problems.append(
        _problems(
            frame.filter(pl.col("_bad_response")),
            "response",
            pl.col("_response_text"),
            "integer response within the item range",
            pl.format(
                "response {} of {} item '{}' must be an integer from {} to {}",
                pl.col("_response_text"),
                pl.col("instrument"),
                pl.col("item"),
                lo.cast(pl.String),
                hi.cast(pl.String),
            ),
        )
    )
    problems.append(
        _problems(
            frame.filter(pl.col("_dup") > 1),
            "item",
            pl.col("item"),
            "one answer per item",
            pl.format("item '{}' is answered {} times in one questionnaire", pl.col("item"), pl.col("_dup")),
        )
    )

    # ---- questionnaire-level aggregation -----------------------------------------------------------
    answered = pl.col("_response").is_not_null() & ~pl.col("_bad_response")
    grouped = frame.group_by(list(_KEY)).agg(
        pl.col("instrument_version").n_unique().alias("_n_versions"),
        pl.col("instrument_version").unique().sort().str.join(", ").alias("_versions"),
        pl.col("instrument_version").first(),
        pl.col("version_assumed").all(),
        (
            pl.col("_bad_version").any()
            | pl.col("_bad_item").any()
            | pl.col("_bad_response").any()
            | (pl.col("_dup") > 1).any()
        ).alias("_row_problem"),
        answered.sum().cast(pl.Int64).alias("items_answered"),
        pl.col("n_items").first(),
        pl.col("max_missing").first(),
        pl.col("_response").filter(answered).sum().alias("_sum"),
    )
    grouped = grouped.with_columns(
        pl.when(pl.col("instrument") == "psfs")
        .then(pl.lit(0, pl.Int64))
        .otherwise(pl.col("n_items") - pl.col("items_answered"))
        .alias("items_missing")
    )
    mixed = grouped.filter(pl.col("_n_versions") > 1)
    problems.append(
        _problems(
            mixed,
            "instrument_version",
            pl.col("_versions"),
            "one version per questionnaire",
            pl.format(
                "{} items carry versions {}; versions are not interchangeable, so the score is refused",
                pl.col("instrument"),
                pl.col("_versions"),
            ),
        )
    )
    is_psfs = pl.col("instrument") == "psfs"
    too_many_missing = (
        (pl.col("_n_versions") == 1)
        & ~pl.col("_row_problem")
        & ~is_psfs
        & (pl.col("instrument") != "nprs")
        & (pl.col("items_missing") > pl.col("max_missing"))
    )
    problems.append(
        _problems(
            grouped.filter(too_many_missing),
            "response",
            pl.col("items_missing").cast(pl.String),
            "missing items within the configured limit",
            pl.format(
                "{} has {} of {} items missing; at most {} may be missing (configured limit)",
                pl.col("instrument"),
                pl.col("items_missing"),
                pl.col("n_items"),
                pl.col("max_missing"),
            ),
        )
    )
    psfs_count = (
        (pl.col("_n_versions") == 1)
        & ~pl.col("_row_problem")
        & is_psfs
        & ~pl.col("items_answered").is_between(config.psfs_min_items, config.psfs_max_items)
    )
    problems.append(
        _problems(
            grouped.filter(psfs_count),
            "response",
            pl.col("items_answered").cast(pl.String),
            "PSFS activity count",
            pl.format(
                "PSFS has {} answered activities; a score needs {} to {}",
                pl.col("items_answered"),
                pl.lit(config.psfs_min_items),
                pl.lit(config.psfs_max_items),
            ),
        )
    )
    good = grouped.filter(
        (pl.col("_n_versions") == 1) & ~pl.col("_row_problem") & ~too_many_missing & ~psfs_count
    )

    # ---- scores ----------------------------------------------------------------------------------------
    score = (
        pl.when(pl.col("instrument") == "odi")
        .then(100.0 * pl.col("_sum") / (5.0 * pl.col("items_answered")))
        .when(is_psfs)
        .then(pl.col("_sum") / pl.col("items_answered"))
        .otherwise(pl.col("_sum"))
    )
    rule_text = (
        pl.when(pl.col("instrument") == "odi")
        .then(
            pl.format("ODI {}: 100 x sum / (5 x {} answered)", pl.col("instrument_version"), "items_answered")
        )
        .when(is_psfs)
        .then(pl.format("PSFS: mean of {} activities", pl.col("items_answered")))
        .otherwise(pl.format("{} {}: sum of {} items", pl.col("instrument"), "instrument_version", "n_items"))
    )
    main = good.filter(pl.col("instrument") != "nprs").select(
        "episode_id",
        "assessed_on",
        pl.col("instrument").alias("measure"),
        score.cast(pl.Float64).alias("value"),
        "instrument_version",
        "items_answered",
        "items_missing",
        "version_assumed",
        rule_text.alias("derived_from"),
    )
    nprs_ok = good.filter(pl.col("instrument") == "nprs").select(*_KEY)
    nprs = (
        frame.filter((pl.col("instrument") == "nprs") & answered)
        .join(nprs_ok, on=list(_KEY), how="semi")
        .select(
            "episode_id",
            "assessed_on",
            pl.format("nprs_{}", pl.col("item")).alias("measure"),
            pl.col("_response").alias("value"),
            "instrument_version",
            pl.lit(1, pl.Int64).alias("items_answered"),
            pl.lit(0, pl.Int64).alias("items_missing"),
            "version_assumed",
            pl.lit("NPRS item as recorded").alias("derived_from"),
        )
    )
    scored = (
        pl.concat([main, nprs], how="vertical_relaxed")
        .with_columns(
            pl.lit(None, pl.String).alias("stopped_reason"),
            pl.lit(None, pl.Float64).alias("cap_min"),
            pl.format("questionnaire_items; {}", pl.col("derived_from")).alias("derived_from"),
        )
        .select(
            "episode_id",
            "assessed_on",
            "measure",
            "value",
            "stopped_reason",
            "cap_min",
            "instrument_version",
            "items_answered",
            "items_missing",
            "version_assumed",
            "derived_from",
        )
        .sort("episode_id", "assessed_on", "measure")
    )
    problem_frame = pl.concat([_empty_problems(), *problems], how="vertical_relaxed").sort(
        "episode_id", "assessed_on", "instrument", "row", nulls_last=True
    )
    if strict and problem_frame.height:
        head = "\n".join(
            f"  row {r['row']}: {r['episode_id']} {r['assessed_on']} {r['instrument']} column {r['column']} "
            f"value {r['value']!r} [{r['rule']}] {r['message']}"
            for r in problem_frame.head(20).iter_rows(named=True)
        )
        raise DataValidationError(
            f"questionnaire_items: {problem_frame.height} scoring problems (first 20):\n{head}"
        )
    return ScoredQuestionnaires(measures=scored, problems=problem_frame)
