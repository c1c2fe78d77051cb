"""One configuration object holding every clinical threshold used by scoring and derivation.

Each threshold is a named field of :class:`ClinicalConfig` with a documented default and its source (from
``shared/domain.md``; "convention" marks practice conventions that have no published standard). A TOML file
can override any field (:meth:`ClinicalConfig.from_toml`); :meth:`ClinicalConfig.to_dict` returns the whole
configuration, sources included, for the provenance block of every report.

Example TOML::

    odi_max_missing = 0
    dropout_gap_weeks = 3

    [mcid.odi]
    absolute = 8.0          # German ODI 2.1 surgical "good outcome" (Mannion 2006)

    [visit_windows.w52]
    target_week = 52
    before_days = 21
    after_days = 21
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sciatica_outcomes.errors import ConfigError
from sciatica_outcomes.schemas.vocabulary import RED_FLAG_COLUMNS

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T")
_Table = TypeVar("_Table", bound="DataclassInstance")

__all__ = ["ClinicalConfig", "Mcid", "VisitWindow", "default_config"]


@dataclass(frozen=True)
class Mcid:
    """Responder thresholds of one outcome.

    Parameters
    ----------
    absolute : float or None
        Minimal clinically important improvement in the outcome's own units (points, %), or ``None`` when no
        sourced value exists.
    relative : float or None
        Minimal important improvement as a fraction of the baseline value (0.30 = 30 %), or ``None``.
    recovered : float or None
        Threshold of the "recovered" state on the outcome's scale: at or below it when higher is worse, at
        or above it when higher is better; ``None`` when undefined.
    source : str
        Where the values come from.
    """

    absolute: float | None
    relative: float | None
    recovered: float | None
    source: str


@dataclass(frozen=True)
class VisitWindow:
    """A follow-up visit window around a target week since episode start.

    Parameters
    ----------
    target_week : float
        Nominal week of the visit.
    before_days, after_days : int
        The window is ``[7 * target_week - before_days, 7 * target_week + after_days]`` days since start; the
        assessment closest to the target inside the window is the visit (ties go to the later one).
    """

    target_week: float
    before_days: int
    after_days: int

    @property
    def bounds_days(self) -> tuple[float, float]:
        """Inclusive window bounds in days since episode start."""
        centre = 7.0 * self.target_week
        return centre - self.before_days, centre + self.after_days


_OSTELO = "Ostelo et al., Spine 2008;33:90 (domain.md §1)"


def _default_mcid() -> dict[str, Mcid]:
    return {
        "odi": Mcid(10.0, 0.30, None, _OSTELO),
        "rmdq": Mcid(5.0, 0.30, 2.0, f"{_OSTELO}; recovered RMDQ <= 2: Kamper 2010, PMC2989296"),
        "nprs_leg": Mcid(2.0, 0.30, 0.0, f"{_OSTELO}; recovered NRS = 0: Kamper 2010, PMC2989296"),
        "nprs_back": Mcid(2.0, 0.30, 0.0, f"{_OSTELO}; recovered NRS = 0: Kamper 2010, PMC2989296"),
        "sbi": Mcid(
            None,
            None,
            6.5,
            "No sourced MCID; success SBI <= 6.5 at 12 months: Haugen 2011, PMC3175874",
        ),
        "psfs": Mcid(
            2.0,
            None,
            None,
            "MDC90 of the mean score, 2 points (Stratford et al., Physiother Can 1995;47:258); MCID varies "
            "by study (domain.md §1: VERIFY)",
        ),
        "promis_pf": Mcid(3.6, None, None, "Chronic LBP PROMIS-29 MID (cuir.car.chula.ac.th 69391)"),
        "promis_pi": Mcid(4.85, None, None, "Chronic LBP PROMIS-29 MID (cuir.car.chula.ac.th 69391)"),
        "was": Mcid(
            1.92,
            None,
            None,
            "Work Ability Score smallest detectable change 1.92 (ICC 0.89) in sick-listed chronic "
            "musculoskeletal pain (domain.md §8: VERIFY, thesis source); responders improve by at least it",
        ),
    }


def _default_windows() -> dict[str, VisitWindow]:
    return {
        "w6": VisitWindow(6, 7, 7),
        "w12": VisitWindow(12, 10, 14),
        "w26": VisitWindow(26, 21, 21),
    }


def _f(default: _T, source: str, doc: str) -> _T:
    """A documented config field (default, source, one-line meaning)."""
    return field(default=default, metadata={"source": source, "doc": doc})


@dataclass(frozen=True)
class ClinicalConfig:
    """Every clinical threshold of scoring and derivation, with its source.

    Construct with defaults (``ClinicalConfig()``), from TOML (:meth:`from_toml`), or with overrides
    (:meth:`replace`). Instances are immutable; fields are documented in ``metadata`` (``source``, ``doc``)
    and listed by :meth:`describe`.
    """

    # --- instruments ------------------------------------------------------------------------------------
    odi_max_missing: int = _f(
        1,
        "awell-score oswestry README refuses > 1 missing section; soapnote.org scores any number "
        "(domain.md §1)",
        "ODI sections that may be missing before a score is refused",
    )
    odi_default_version: str = _f(
        "2.1a",
        "Chiarotto et al., Pain 2018;159:481 (core outcome set: ODI 2.1a)",
        "ODI version assumed when items carry no instrument_version (recorded as assumed)",
    )
    rmdq_max_missing: int = _f(
        0,
        "Roland & Morris, Spine 1983;8:141: unticked and 'not applicable' items count 0, so none is missing",
        "RMDQ-24 items that may be missing before a score is refused",
    )
    sbi_max_missing: int = _f(
        0,
        "Patrick et al., Spine 1995;20:1899: total of all four items (domain.md §1)",
        "SBI/SFI items that may be missing before a score is refused",
    )
    psfs_min_items: int = _f(
        3,
        "Stratford et al., Physiother Can 1995;47:258: the patient names 3-5 activities",
        "fewest PSFS activities for a score",
    )
    psfs_max_items: int = _f(5, "Stratford et al. 1995", "most PSFS activities for a score")
    # --- visits and change ----------------------------------------------------------------------------
    baseline_before_days: int = _f(
        14,
        "convention; matches the store's tolerance for measures before episode start (schemas.measures)",
        "baseline window starts this many days before episode start",
    )
    baseline_after_days: int = _f(
        7, "convention (protocol choice)", "baseline window ends this many days after episode start"
    )
    end_window_days: int = _f(
        14,
        "convention (protocol choice): discharge measures are taken in the last two weeks of the episode; "
        "registries report PROM capture at intake and at discharge (APTA registry, FOTO; domain.md §4)",
        "an assessment this many days or fewer before an episode's end date is an end-of-episode "
        "(discharge) assessment",
    )
    visit_windows: dict[str, VisitWindow] = field(
        default_factory=_default_windows,
        metadata={
            "source": "convention; visit weeks after Hahne et al. subgroup RCT (5/10/26/52 wk) and the "
            "12-week program",
            "doc": "follow-up visit windows (label -> target week and days before/after)",
        },
    )
    mcid: dict[str, Mcid] = field(
        default_factory=_default_mcid,
        metadata={
            "source": _OSTELO,
            "doc": "responder thresholds per outcome (absolute, relative to baseline, recovered)",
        },
    )
    # --- adherence and dropout ------------------------------------------------------------------------
    program_weeks: int = _f(12, "program definition (README: 12-week program)", "length of the program phase")
    default_sessions_per_week: float = _f(
        2.0,
        "DESIGN.md canonical tables: prescribed_sessions_per_week default 2-3 (lower bound)",
        "prescribed sessions per week when an episode does not record it",
    )
    adherence_high_min: float = _f(
        0.8,
        "convention (protocol choice): no published adherence standard for supervised sciatica programs",
        "adherence ratio (completed / prescribed sessions) from which an episode is in the high-adherence "
        "group of the cohort analysis",
    )
    dropout_gap_weeks: float = _f(
        2.0,
        "convention: 4-6 prescribed sessions missed in a row; no published standard",
        "weeks without a completed session, before the end of the program phase, that mark a dropout",
    )
    # --- dose and progression ------------------------------------------------------------------------
    progression_guideline_weeks: float = _f(
        2.0,
        "README / issue 4: load progressed every 1-2 weeks (upper bound)",
        "longest interval between progressions that is still within the guideline",
    )
    progression_stall_weeks: float = _f(
        4.0,
        "convention: twice the 2-week guideline, so a single slow (3-week) step is not flagged",
        "a stretch without progression longer than this, while tolerated, is a stalled progression",
    )
    # --- pain monitoring and flares ------------------------------------------------------------------
    pain_safe_max: float = _f(
        2.0,
        "Thomee, Phys Ther 1997;77:1690; Silbernagel et al., AJSM 2007;35:897 (domain.md §3)",
        "activity pain at or below this is 'safe'",
    )
    pain_acceptable_max: float = _f(
        5.0,
        "Thomee 1997; Silbernagel 2007 (domain.md §3)",
        "activity pain at or below this is 'acceptable'; above it is 'high risk'",
    )
    flare_rise_points: float = _f(
        2.0,
        "issue 4 flare rule: pain after or next day >= 2 points above pre-session pain",
        "rise over pre-session pain that makes a pain spike",
    )
    settle_hours: float = _f(
        48.0,
        "practice convention, not a validated standard (domain.md §3: '24-48 h')",
        "a spike must settle within this many hours (next day or next session) or it is a flare",
    )
    weekly_rise_points: float = _f(
        1.0,
        "Thomee 1997: pain must not rise week to week (threshold on weekly means is a convention)",
        "rise of the weekly mean pre-session pain that flags a week-to-week increase",
    )
    # --- tolerance tests ------------------------------------------------------------------------------
    censor_reasons: tuple[str, ...] = _f(
        ("cap",),
        "Rainville et al., Spine J 2012;12:101: capped tests are right-censored (domain.md §2)",
        "stopped_reason values that mark a censored (capped) tolerance test",
    )
    # --- reporting of model-based estimates -----------------------------------------------------------
    min_episodes_followed: int = _f(
        20,
        "convention (protocol choice): the quarterly report's existing floor of 20 episodes for fitting a "
        "growth model, applied per week; no published standard",
        "fewest episodes observed at or beyond a week for a model-based trajectory or change at that week; "
        "later weeks are reported as not yet estimable",
    )
    # --- red flags ------------------------------------------------------------------------------------
    red_flag_fields: tuple[str, ...] = _f(
        RED_FLAG_COLUMNS,
        "BMJ Best Practice CES; NHS Lothian RefHelp; NICE CKS sciatica (domain.md §3)",
        "symptom-check (or session) booleans that raise a red-flag alert",
    )
    peripheralisation_levels: int = _f(
        2,
        "Albert et al., Eur Spine J 2012;21:630 (peripheralisation); level count is a convention",
        "symptom-extent levels more distal than the episode's first session that count as spread",
    )
    peripheralisation_sessions: int = _f(
        3,
        "convention: 'sustained' = this many consecutive completed sessions",
        "consecutive sessions of distal spread that raise a session alert",
    )

    # --- work and the global verdict ------------------------------------------------------------------
    pgic_success_max: int = _f(
        2,
        "Haugen et al. 2011, PMC3175874: success = 'completely recovered' or 'much better' on the 7-point "
        "scale (domain.md §1, §8)",
        "a patient global impression of change (pgic, 1 = completely recovered) at or below this is success",
    )

    def __post_init__(self) -> None:
        ints = (
            "odi_max_missing",
            "rmdq_max_missing",
            "sbi_max_missing",
            "psfs_min_items",
            "psfs_max_items",
            "end_window_days",
            "min_episodes_followed",
            "pgic_success_max",
        )
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
        if self.min_episodes_followed < 1:
            raise ConfigError(f"min_episodes_followed must be at least 1, got {self.min_episodes_followed}")
        if not 1 <= self.psfs_min_items <= self.psfs_max_items:
            raise ConfigError(
                f"psfs_min_items ({self.psfs_min_items}) must be >= 1 and <= psfs_max_items "
                f"({self.psfs_max_items})"
            )
        positive = (
            "program_weeks",
            "default_sessions_per_week",
            "adherence_high_min",
            "dropout_gap_weeks",
            "progression_guideline_weeks",
            "progression_stall_weeks",
            "settle_hours",
            "flare_rise_points",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not 0 <= self.pain_safe_max <= self.pain_acceptable_max <= 10:
            raise ConfigError(
                "pain bands must satisfy 0 <= pain_safe_max <= pain_acceptable_max <= 10, got "
                f"{self.pain_safe_max} and {self.pain_acceptable_max}"
            )
        if self.baseline_before_days < 0 or self.baseline_after_days < 0:
            raise ConfigError("baseline_before_days and baseline_after_days must be >= 0")
        for label, win in self.visit_windows.items():
            if not isinstance(win, VisitWindow):
                raise ConfigError(f"visit_windows[{label!r}] must be a VisitWindow, got {win!r}")
            for part in ("target_week", "before_days", "after_days"):
                v = getattr(win, part)
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ConfigError(f"visit_windows[{label!r}].{part} must be a number, got {v!r}")
            if win.before_days < 0 or win.after_days < 0:
                raise ConfigError(f"visit_windows[{label!r}]: before_days and after_days must be >= 0")
        spans = sorted(w.bounds_days for w in self.visit_windows.values())
        for (_, hi), (lo, _) in itertools.pairwise(spans):
            if lo <= hi:
                raise ConfigError(f"visit windows overlap: {spans}; make them disjoint")
        for measure, m in self.mcid.items():
            if not isinstance(m, Mcid):
                raise ConfigError(f"mcid[{measure!r}] must be an Mcid, got {m!r}")
            for part in ("absolute", "relative", "recovered"):
                v = getattr(m, part)
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise ConfigError(f"mcid[{measure!r}].{part} must be a number or absent, got {v!r}")
            if m.relative is not None and not 0 < m.relative <= 1:
                raise ConfigError(f"mcid[{measure!r}].relative must lie in (0, 1], got {m.relative}")
            if m.absolute is not None and not m.absolute > 0:
                raise ConfigError(f"mcid[{measure!r}].absolute must be > 0, got {m.absolute}")

    # ------------------------------------------------------------------------------------------------
    @property
    def program_days(self) -> int:
        """Length of the program phase in days (``7 * program_weeks``)."""
        return math.ceil(7 * self.program_weeks)

    def replace(self, **changes: Any) -> ClinicalConfig:
        """Return a copy with the given fields changed (validated like the constructor)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown configuration keys {sorted(unknown)}; see ClinicalConfig.describe()")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], base: ClinicalConfig | None = None) -> ClinicalConfig:
        """Build a configuration from plain data (as read from TOML), overriding ``base`` (the defaults).

        Tables ``mcid`` and ``visit_windows`` merge per key: ``[mcid.odi] absolute = 8`` changes only the
        ODI absolute threshold. Unknown keys and wrong types raise :class:`ConfigError`.
        """
        base = base or cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in data.items():
            if key not in fields:
                raise ConfigError(
                    f"unknown configuration key {key!r}; known keys: {', '.join(sorted(fields))}"
                )
            current = getattr(base, key)
            if key == "mcid":
                changes[key] = _merge_tables(key, current, value, Mcid)
            elif key == "visit_windows":
                changes[key] = _merge_tables(key, current, value, VisitWindow)
            elif isinstance(current, tuple):
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise ConfigError(f"{key} must be a list of strings, got {value!r}")
                changes[key] = tuple(value)
            elif isinstance(current, str):
                if not isinstance(value, str):
                    raise ConfigError(f"{key} must be a string, got {value!r}")
                changes[key] = value
            elif isinstance(current, int) and not isinstance(current, bool) and fields[key].type == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{key} must be an integer, got {value!r}")
                changes[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{key} must be a number, got {value!r}")
                changes[key] = float(value)
        return dataclasses.replace(base, **changes)

    @classmethod
    def from_toml(cls, path: str | Path) -> ClinicalConfig:
        """Read overrides of the defaults from a TOML file (see the module docstring for an example)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc
        try:
            return cls.from_mapping(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-ready data: ``{"values": ..., "sources": ...}``."""
        values = dataclasses.asdict(self)
        values["censor_reasons"] = list(self.censor_reasons)
        values["red_flag_fields"] = list(self.red_flag_fields)
        sources = {f.name: f.metadata["source"] for f in dataclasses.fields(self)}
        return {"values": values, "sources": sources}

    @classmethod
    def describe(cls) -> list[dict[str, str]]:
        """One record per field: name, default (as text), meaning and source."""
        default = cls()
        return [
            {
                "name": f.name,
                "default": repr(getattr(default, f.name)),
                "doc": f.metadata["doc"],
                "source": f.metadata["source"],
            }
            for f in dataclasses.fields(cls)
        ]


def _merge_tables(
    key: str, current: Mapping[str, _Table], value: object, kind: type[_Table]
) -> dict[str, _Table]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a table of tables, got {value!r}")
    merged = dict(current)
    names = {f.name for f in dataclasses.fields(kind)}
    for name, entry in value.items():
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{key}.{name} must be a table, got {entry!r}")
        unknown = set(entry) - names
        if unknown:
            raise ConfigError(f"{key}.{name}: unknown keys {sorted(unknown)}; allowed: {sorted(names)}")
        old = merged.get(name)
        base = dataclasses.asdict(old) if old is not None else {}
        base.update(entry)
        missing = names - set(base)
        if missing:
            raise ConfigError(f"{key}.{name} is new and needs {sorted(missing)}")
        try:
            merged[name] = kind(**base)
        except TypeError as exc:
            raise ConfigError(f"{key}.{name}: {exc}") from exc
    return merged


def default_config() -> ClinicalConfig:
    """Return the default configuration (a new immutable instance)."""
    return ClinicalConfig()
