"""FHIR R4 Bundles: Observations into ``measures`` and ``work``, QuestionnaireResponses into items.

Conventions (domain brief §6):

- The episode is the standard R4 extension ``workflow-episodeOfCare`` (``valueReference.reference =
  "EpisodeOfCare/<episode_id>"``) on the Observation or QuestionnaireResponse.
- Observation ``code.coding``: the local code system :data:`MEASURE_SYSTEM` (code = measure code) is
  authoritative; without it a LOINC code that names exactly one measure is used (ODI 97909-6, PROMIS PF
  T-score 91721-1, PROMIS PI T-score 77865-4). LOINC 72514-3 (pain NRS) serves leg and back pain alike and
  needs ``bodySite.text`` ``leg`` or ``back``.
- ``effectiveDateTime`` gives ``assessed_on`` (a dateTime keeps its calendar date as written);
  ``valueQuantity.value`` (or ``valueInteger``) gives ``value``; components coded in :data:`COMPONENT_SYSTEM`
  carry ``stopped_reason`` (``valueCodeableConcept``), ``cap_min`` (``valueQuantity``) and
  ``instrument_version`` (``valueString``).
- QuestionnaireResponse ``questionnaire`` is a canonical URL whose last segment is the instrument and whose
  ``|version`` suffix is the version (``urn:sciatica-outcomes:questionnaire:odi|2.1a``); ``authored`` gives
  ``assessed_on``; each answered ``item.linkId`` is one row; the response is ``valueInteger``,
  ``valueDecimal``, or a ``valueCoding`` scored by its ``ordinalValue`` or ``itemWeight`` extension (both
  occur in published examples) or else its code.

- **Work** (``work`` table, ``schemas/work.py``): an Observation whose code is a column of ``work`` in
  :data:`WORK_SYSTEM` (``work_status``, ``hours_worked``, ``wpai_q2_hours_missed_health``, ...) is one cell;
  the Observations of one episode and ``effectiveDateTime`` date make one ``work`` row (a column given twice
  for one date starts a second row, which the key rule reports: nothing is overwritten). A coded value is
  ``valueCodeableConcept`` with a code of the vocabulary (system :data:`WORK_VALUE_PREFIX` + column, e.g.
  ``...:work:work_status|off_work_back_leg``), hours and days ``valueQuantity`` (UCUM ``h/wk``, ``h``, ``d``:
  :data:`WORK_UNITS`), WPAI question 1 ``valueBoolean``, the return-to-work date ``valueDateTime``. The row
  number is the row's first entry and each cell is reported under ``<column> (entry N)``, the Observation that
  holds it; a JSON shape problem in one Observation rejects its whole row. Employment status is also read from
  LOINC **67875-5** "Employment status - current" (US Core STU7 example Observation
  ``PRAPARE-item-example-67875-5``, hl7.org/fhir/us/core; HL7 SDOH Clinical Care IG example
  ``SDOHCC-ObservationResponsePRAPAREEmploymentStatusExample``). Its PRAPARE answers (LA30136-8 full-time
  work, LA30138-4 part-time or temporary work, LA17956-6 unemployed, "otherwise unemployed but not seeking
  work (retired, student, disabled, caregiver)") do not separate self-employed, student, homemaker or retired,
  so the value must be a project code; a LOINC answer code is reported as not allowed, not guessed. No LOINC
  code for the Work Ability Score, the WPAI:SHP items or scores, work status, hours, sick-leave days or the
  return-to-work date was found in the stored sources searched (loinc.org pages, HL7 FHIR IGs, public FHIR
  repositories; 2026-12-02): they use the project's systems until one is verified at loinc.org. The Work
  Ability Score, PGIC, satisfaction and EQ-5D are measures (:data:`MEASURE_SYSTEM` codes ``was``, ``pgic``,
  ``satisfaction``, ``eq5d_index``, ``eq5d_vas``); EQ-5D has SNOMED CT codes (736534008 5L index, 736535009
  VAS; MII PRO IG) that are not read, since the index code is specific to the 5L version. WPAI:SHP scores (a
  :data:`WORK_SYSTEM` code of ``scoring.work.WPAI_SCORES``, e.g. ``wpai_absenteeism_pct``) are not stored,
  since the toolkit computes them from the answers (ingest may not import scoring, so they are not compared
  here): a notice (rule ``wpai_scores_not_stored``) counts them and names the first whose episode and date
  have no WPAI answers in the Bundle.

Values are passed to validation as text, exactly as they appear in the JSON: a string ``"7/10"`` where a
number belongs is reported, not converted. The row number of a problem is the Bundle entry (counted from 1).
The JSON tree is walked resource by resource (the JSON parser yields Python objects, so this reader is
bounded by parsing, not by the walk); tables are assembled column-wise.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.sources import ROW, SHAPE, Notice, SourceTable
from sciatica_outcomes.schemas import TABLE_SPECS, measure_catalog

__all__ = [
    "COMPONENT_SYSTEM",
    "EMPLOYMENT_LOINC",
    "EPISODE_EXTENSION",
    "LOINC_SYSTEM",
    "MEASURE_SYSTEM",
    "QUESTIONNAIRE_PREFIX",
    "WORK_SYSTEM",
    "WORK_UNITS",
    "WORK_VALUE_PREFIX",
    "read_fhir_bundle",
    "write_fhir_bundle",
]

MEASURE_SYSTEM = "urn:sciatica-outcomes:measure"
COMPONENT_SYSTEM = "urn:sciatica-outcomes:component"
#: Observation code system of the ``work`` table: the code is a column of ``work`` (``work_status``,
#: ``wpai_q2_hours_missed_health``, ...).
WORK_SYSTEM = "urn:sciatica-outcomes:work"
#: Code system of a coded ``work`` value: this prefix plus the column (``...:work:work_status``).
WORK_VALUE_PREFIX = "urn:sciatica-outcomes:work:"
QUESTIONNAIRE_PREFIX = "urn:sciatica-outcomes:questionnaire:"
EPISODE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"
LOINC_SYSTEM = "http://loinc.org"
ORDINAL_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
)
_NRS_LOINC = "72514-3"
#: LOINC 67875-5 "Employment status - current" (US Core PRAPARE item example; HL7 SDOH Clinical Care
#: IG): the code of ``work.employment_status``. Its LOINC answer list (LL1901-9) has no self-employed,
#: student or homemaker answer, so the value is a code of the project (:data:`WORK_VALUE_PREFIX`).
EMPLOYMENT_LOINC = "67875-5"
_WORK_LOINC = {EMPLOYMENT_LOINC: "employment_status"}
#: UCUM units of the numeric ``work`` columns (hours per week, hours in 7 days, days, 0-10 points).
WORK_UNITS: dict[str, tuple[str, str]] = {
    "hours_contracted": ("h/wk", "hours per week"),
    "hours_worked": ("h/wk", "hours per week"),
    "sick_leave_days_4wk": ("d", "days"),
    "wpai_q2_hours_missed_health": ("h", "hours"),
    "wpai_q3_hours_missed_other": ("h", "hours"),
    "wpai_q4_hours_worked": ("h", "hours"),
    "wpai_q5_work_impairment": ("{score}", "points"),
    "wpai_q6_activity_impairment": ("{score}", "points"),
}
_UCUM = "http://unitsofmeasure.org"
_WORK_KEY = ("episode_id", "assessed_on")


def _text(value: Any) -> str | None:
    """JSON scalar as the text validation sees (numbers as written, strings verbatim)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _ShapeError(Exception):
    """A JSON value of the wrong kind (an array where an object belongs, ...) at a JSON path."""

    def __init__(self, path: str, expected: str, value: Any) -> None:
        self.path = path
        super().__init__(f"{path}: expected {expected}, got {_kind(value)}")


def _kind(value: Any) -> str:
    """What a JSON value is, in words; a string is quoted (shortened), containers are not shown."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({json.dumps(shown)})"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


def _obj(value: Any, path: str) -> dict[str, Any]:
    """An optional JSON object (absent or null: empty)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise _ShapeError(path, "an object", value)


def _objs(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects of an optional JSON array, each with its path."""
    if value is None:
        return
    if not isinstance(value, list):
        raise _ShapeError(path, "an array", value)
    for i, v in enumerate(value):
        yield f"{path}[{i}]", _obj(v, f"{path}[{i}]")


def _scalar(value: Any, path: str) -> str | None:
    """A JSON text, number or true/false as text (null: None); an array or object is a shape problem."""
    if isinstance(value, dict | list):
        raise _ShapeError(path, "a single value (text or number)", value)
    return _text(value)


def _loinc_measures() -> dict[str, str]:
    cat = measure_catalog().filter(pl.col("loinc").is_not_null())
    counts = Counter(cat["loinc"].to_list())
    return {code: m for m, code in zip(cat["code"], cat["loinc"], strict=True) if counts[code] == 1}


def _episode(resource: dict[str, Any], path: str) -> str | None:
    for p, ext in _objs(resource.get("extension"), f"{path}.extension"):
        if _scalar(ext.get("url"), f"{p}.url") == EPISODE_EXTENSION:
            where = f"{p}.valueReference"
            ref = _obj(ext.get("valueReference"), where).get("reference")
            _scalar(ref, f"{where}.reference")
            if isinstance(ref, str):
                return ref.split("/", 1)[1] if ref.startswith("EpisodeOfCare/") else ref
    return None


def _date(value: Any, path: str) -> str | None:
    if isinstance(value, str) and len(value) > 10 and value[10] == "T":
        return value[:10]
    return _scalar(value, path)


def _codings(holder: dict[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    where = f"{path}.{key}"
    return list(_objs(_obj(holder.get(key), where).get("coding"), f"{where}.coding"))


def _measure(resource: dict[str, Any], path: str, loinc: dict[str, str]) -> str | None:
    codings = _codings(resource, "code", path)
    systems = [(p, _scalar(c.get("system"), f"{p}.system"), c) for p, c in codings]
    local = next((_scalar(c.get("code"), f"{p}.code") for p, s, c in systems if s == MEASURE_SYSTEM), None)
    if local is not None:
        return local
    for p, system, c in systems:
        if system == WORK_SYSTEM:
            return f"work {_scalar(c.get('code'), f'{p}.code')} (no such column of the work table)"
        if system == LOINC_SYSTEM:
            code = _scalar(c.get("code"), f"{p}.code")
            if code in loinc:
                return loinc[code]
            if code == _NRS_LOINC:
                site_path = f"{path}.bodySite"
                site = (
                    _scalar(_obj(resource.get("bodySite"), site_path).get("text"), f"{site_path}.text")
                ) or ""
                site = site.strip().lower()
                if site in ("leg", "back"):
                    return f"nprs_{site}"
                return f"loinc {code} (pain NRS: give bodySite.text leg or back)"
            return f"loinc {code}"
    return None


def _components(resource: dict[str, Any], path: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {"stopped_reason": None, "cap_min": None, "instrument_version": None}
    for p, comp in _objs(resource.get("component"), f"{path}.component"):
        codings = _codings(comp, "code", p)
        code = next(
            (
                _scalar(c.get("code"), f"{q}.code")
                for q, c in codings
                if _scalar(c.get("system"), f"{q}.system") == COMPONENT_SYSTEM
            ),
            None,
        )
        if code == "stopped_reason":
            if "valueCodeableConcept" in comp:
                cc = _codings(comp, "valueCodeableConcept", p)
                out[code] = _scalar(cc[0][1].get("code"), f"{cc[0][0]}.code") if cc else None
            else:
                out[code] = _scalar(comp.get("valueString"), f"{p}.valueString")
        elif code == "cap_min":
            where = f"{p}.valueQuantity"
            out[code] = _scalar(_obj(comp.get("valueQuantity"), where).get("value"), f"{where}.value")
        elif code == "instrument_version":
            out[code] = _scalar(comp.get("valueString"), f"{p}.valueString")
    return out


def _work_column(resource: dict[str, Any], path: str, columns: frozenset[str]) -> str | None:
    """The ``work`` column an Observation holds: a :data:`WORK_SYSTEM` code naming one, or LOINC 67875-5."""
    for p, c in _codings(resource, "code", path):
        system = _scalar(c.get("system"), f"{p}.system")
        code = _scalar(c.get("code"), f"{p}.code")
        if system == WORK_SYSTEM and code in columns:
            return code
        if system == LOINC_SYSTEM and code in _WORK_LOINC:
            return _WORK_LOINC[code]
    return None


#: Codes of WPAI:SHP score Observations in :data:`WORK_SYSTEM` (``wpai_absenteeism_pct``, ...: the names of
#: ``scoring.work.WPAI_SCORES``, which the ingest stage may not import; a test checks that they match).
WPAI_SCORE_CODE = r"^wpai_[a-z_]+_pct$"


def _wpai_score(resource: dict[str, Any], path: str) -> str | None:
    """The WPAI:SHP score an Observation reports (a :data:`WORK_SYSTEM` code of :data:`WPAI_SCORE_CODE`)."""
    for p, c in _codings(resource, "code", path):
        code = _scalar(c.get("code"), f"{p}.code")
        system = _scalar(c.get("system"), f"{p}.system")
        if system == WORK_SYSTEM and code is not None and re.match(WPAI_SCORE_CODE, code):
            return code
    return None


def _score_notice(scores: dict[str, list[Any]], work: pl.DataFrame | None, shown: str) -> Notice:
    """What became of the WPAI:SHP score Observations: not stored, since the toolkit scores the answers.

    The notice counts the scores whose episode and date have WPAI answers in the same Bundle (so the
    toolkit's own scores exist for them) and names the first that has none (its score would be lost).
    """
    given = pl.DataFrame(
        scores, schema={"episode_id": pl.String, "assessed_on": pl.String, "score": pl.String,
                        "value": pl.String, ROW: pl.Int64},
    )  # fmt: skip
    answered = pl.DataFrame(schema={"episode_id": pl.String, "assessed_on": pl.String})
    if work is not None:
        items = [c for c in work.columns if c.startswith("wpai_q")]
        answered = (
            work.filter(pl.any_horizontal(pl.col(items).is_not_null())).select(*_WORK_KEY).unique()
            if items
            else answered
        )
    lost = given.join(answered, on=list(_WORK_KEY), how="anti", maintain_order="left")
    text = (
        f"{given.height} WPAI:SHP score Observation(s) are not stored: the toolkit computes the scores from "
        f"the answers (questions 1-6), which the Bundle holds for {given.height - lost.height} of them"
    )
    if lost.height:
        text += (
            f"; {lost.height} have no answers for their episode and date (first: entry {lost[ROW][0]}): send "
            "questions 1-6 as work Observations"
        )
    return Notice(shown, "work", "wpai_scores_not_stored", text)


def _value(resource: dict[str, Any], path: str, column: str) -> str | None:
    """An Observation's ``value[x]`` as text, as written.

    ``valueQuantity.value``, ``valueInteger``, ``valueBoolean``, ``valueString``, the calendar date of
    ``valueDateTime``, or the code of ``valueCodeableConcept`` (the coding of the column's own system
    :data:`WORK_VALUE_PREFIX` when there is one, else the first coding, else the concept's ``text``).
    """
    if "valueQuantity" in resource:
        where = f"{path}.valueQuantity"
        return _scalar(_obj(resource["valueQuantity"], where).get("value"), f"{where}.value")
    for key in ("valueInteger", "valueBoolean", "valueString"):
        if key in resource:
            return _scalar(resource[key], f"{path}.{key}")
    if "valueDateTime" in resource:
        return _date(resource["valueDateTime"], f"{path}.valueDateTime")
    if "valueCodeableConcept" in resource:
        codings = _codings(resource, "valueCodeableConcept", path)
        system = WORK_VALUE_PREFIX + column
        own = [(p, c) for p, c in codings if _scalar(c.get("system"), f"{p}.system") == system]
        for p, c in own or codings[:1]:
            return _scalar(c.get("code"), f"{p}.code")
        where = f"{path}.valueCodeableConcept"
        return _scalar(_obj(resource["valueCodeableConcept"], where).get("text"), f"{where}.text")
    return None


def _work_cell(res: dict[str, Any], path: str, column: str) -> tuple[dict[str, str | None], str | None]:
    """One ``work`` cell of an Observation and its JSON shape problem (None: well formed).

    A problem in the value keeps the cell's episode, date and column, so that the whole ``work`` row it
    belongs to is rejected, not stored without it.
    """
    cell: dict[str, str | None] = dict.fromkeys(_W_COLS)
    cell["column"] = column
    try:
        cell["episode_id"] = _episode(res, path)
        cell["assessed_on"] = _date(res.get("effectiveDateTime"), f"{path}.effectiveDateTime")
        cell["value"] = _value(res, path, column)
    except _ShapeError as exc:
        return cell, str(exc)
    return cell, None


def _work_table(cells: dict[str, list[Any]], columns: tuple[str, ...]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``work`` rows from its cells: one row per episode, date and repetition of a column.

    The Observations of one episode and date make one row; a column given twice for one episode and date
    starts a second row (which the key rule then reports). :data:`ROW` is the first entry of the row; the
    source column of each cell names its entry (``work_status (entry 7)``), so a problem is reported at the
    Observation that holds it. The row's first JSON shape problem rejects the row.
    """
    frame = pl.DataFrame(cells, schema={**dict.fromkeys(_W_COLS, pl.String), SHAPE: pl.String, ROW: pl.Int64})
    frame = frame.with_columns(pl.int_range(pl.len()).over([*_WORK_KEY, "column"]).alias("__k"))
    at = pl.col("column")
    data = [c for c in columns if c not in _WORK_KEY]
    rows = (
        frame.group_by([*_WORK_KEY, "__k"], maintain_order=True)
        .agg(
            *(pl.col("value").filter(at == c).first().alias(c) for c in data),
            *(pl.col(ROW).filter(at == c).first().alias(f"__e_{c}") for c in data),
            pl.col(SHAPE).drop_nulls().first().alias(SHAPE),
            pl.col(ROW).min().alias(ROW),
        )
        .sort(ROW, maintain_order=True)
    )
    origin = rows.select(
        *(pl.lit(None, pl.String).alias(c) for c in _WORK_KEY),
        *(
            pl.when(pl.col(f"__e_{c}").is_not_null())
            .then(pl.format(f"{c} (entry {{}})", pl.col(f"__e_{c}")))
            .alias(c)
            for c in data
        ),
    )
    raw = rows.select(*columns, SHAPE, ROW)
    if raw[SHAPE].null_count() == raw.height:
        raw = raw.drop(SHAPE)
    return raw, origin


def _answers(item: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    return list(_objs(item.get("answer"), f"{path}.answer"))


def _answer(answers: list[tuple[str, dict[str, Any]]]) -> str | None:
    if not answers:
        return None
    p, a = answers[0]
    for key in ("valueInteger", "valueDecimal"):
        if key in a:
            return _scalar(a[key], f"{p}.{key}")
    if "valueQuantity" in a:
        where = f"{p}.valueQuantity"
        return _scalar(_obj(a["valueQuantity"], where).get("value"), f"{where}.value")
    if "valueCoding" in a:
        where = f"{p}.valueCoding"
        coding = _obj(a["valueCoding"], where)
        for holder, hp in ((coding, where), (a, p)):
            for q, ext in _objs(holder.get("extension"), f"{hp}.extension"):
                if _scalar(ext.get("url"), f"{q}.url") in ORDINAL_EXTENSIONS:
                    k = next((k for k in ("valueDecimal", "valueInteger") if k in ext), None)
                    v = _scalar(ext[k], f"{q}.{k}") if k is not None else None
                    if v is not None:
                        return v
        return _scalar(coding.get("code"), f"{where}.code")
    if "valueString" in a:
        return _scalar(a["valueString"], f"{p}.valueString")
    return None


def _items(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any], list[tuple[str, dict[str, Any]]]]]:
    """Answered items in document order (an item, then its sub-items), walked without recursion."""
    stack: list[Iterator[tuple[str, dict[str, Any]]]] = [_objs(value, path)]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            continue
        p, it = nxt
        answers = _answers(it, p)
        if answers:
            yield p, it, answers
        if it.get("item"):
            stack.append(_objs(it["item"], f"{p}.item"))


_M_COLS = ("episode_id", "assessed_on", "measure", "value", "stopped_reason", "cap_min", "instrument_version")
_Q_COLS = ("episode_id", "assessed_on", "instrument", "item", "response", "instrument_version")
_W_COLS = ("episode_id", "assessed_on", "column", "value")


def _observation_row(res: dict[str, Any], path: str, loinc: dict[str, str]) -> dict[str, str | None]:
    if "valueQuantity" in res:
        where = f"{path}.valueQuantity"
        value = _scalar(_obj(res["valueQuantity"], where).get("value"), f"{where}.value")
    else:
        value = _scalar(res.get("valueInteger"), f"{path}.valueInteger")
    comps = _components(res, path)
    return {
        "episode_id": _episode(res, path),
        "assessed_on": _date(res.get("effectiveDateTime"), f"{path}.effectiveDateTime"),
        "measure": _measure(res, path, loinc),
        "value": value,
        **comps,
    }


def _response_rows(res: dict[str, Any], path: str) -> tuple[list[dict[str, str | None]], int]:
    canonical = _scalar(res.get("questionnaire"), f"{path}.questionnaire") or ""
    url, _, version = canonical.partition("|")
    instrument = url.removeprefix(QUESTIONNAIRE_PREFIX).rstrip("/").rsplit("/", 1)[-1] or None
    episode, authored = _episode(res, path), _date(res.get("authored"), f"{path}.authored")
    rows: list[dict[str, str | None]] = []
    extra = 0
    for p, it, answers in _items(res.get("item"), f"{path}.item"):
        extra += len(answers) > 1
        rows.append(
            {
                "episode_id": episode,
                "assessed_on": authored,
                "instrument": instrument,
                "item": _scalar(it.get("linkId"), f"{p}.linkId"),
                "response": _answer(answers),
                "instrument_version": version or None,
            }
        )
    return rows, extra


def _load_json(path: str | Path) -> Any:
    shown = str(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except RecursionError:
        raise UnusableInputError(
            f"{shown}: the JSON nests arrays or objects more than about {sys.getrecursionlimit()} levels "
            "deep, which no FHIR resource does; nothing was read: check how the file was produced"
        ) from None
    except (OSError, ValueError) as exc:
        raise UnusableInputError(f"{shown}: cannot read as JSON: {exc}") from exc


def read_fhir_bundle(path: str | Path, sha256: str) -> list[SourceTable]:
    """Read a FHIR R4 Bundle (JSON) into raw ``measures`` and ``questionnaire_items`` tables.

    Parameters
    ----------
    path : str or Path
        The Bundle.
    sha256 : str
        Hash of the file.

    Returns
    -------
    list of SourceTable
        ``measures`` from Observations and ``questionnaire_items`` from QuestionnaireResponses (each only if
        present); :data:`ROW` = Bundle entry number. Other resource types are skipped with a notice. An
        entry with a value of the wrong JSON kind (a string where an object belongs, an object where an
        array belongs, ...) becomes one row whose :data:`~sciatica_outcomes.ingest.sources.SHAPE` names
        the JSON path (``entry[3].resource.valueQuantity: expected an object, got a string ("7")``):
        validation rejects it (rule ``fhir_shape``) and quarantines the entry. Such an entry counts in
        its resource's table; one whose resource type cannot be read (the resource is not an object, or
        its ``resourceType`` is not text) counts in ``measures``.

    Raises
    ------
    UnusableInputError
        Invalid JSON, JSON nested deeper than Python's recursion limit, not a Bundle, or a Bundle whose
        ``entry`` is not an array.
    """
    shown = str(path)
    bundle = _load_json(path)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise UnusableInputError(f"{shown}: expected a FHIR Bundle (resourceType 'Bundle')")
    entries = bundle.get("entry")
    if entries is not None and not isinstance(entries, list):
        raise UnusableInputError(
            f"{shown}: entry: expected an array of entries, got {_kind(entries)}; nothing was read: "
            'a Bundle lists its resources as "entry": [{"resource": ...}, ...]'
        )
    loinc = _loinc_measures()
    work_table = TABLE_SPECS["work"].columns
    work_columns = frozenset(work_table) - set(_WORK_KEY)
    m_cols: dict[str, list[Any]] = {k: [] for k in (*_M_COLS, SHAPE, ROW)}
    q_cols: dict[str, list[Any]] = {k: [] for k in (*_Q_COLS, SHAPE, ROW)}
    w_cols: dict[str, list[Any]] = {k: [] for k in (*_W_COLS, SHAPE, ROW)}
    s_cols: dict[str, list[Any]] = {k: [] for k in ("episode_id", "assessed_on", "score", "value", ROW)}
    skipped: Counter[str] = Counter()
    extra_answers = 0
    names: tuple[str, ...]
    for n, entry in enumerate(entries or [], start=1):
        where = f"entry[{n - 1}]"
        cols, names = m_cols, _M_COLS
        problem: str | None = None
        try:
            res = _obj(_obj(entry, where).get("resource"), f"{where}.resource")
            kind = res.get("resourceType")
            if kind is not None and not isinstance(kind, str):
                raise _ShapeError(f"{where}.resource.resourceType", "text", kind)
            score = _wpai_score(res, f"{where}.resource") if kind == "Observation" else None
            column = _work_column(res, f"{where}.resource", work_columns) if kind == "Observation" else None
            if score is not None:
                cell, shape = _work_cell(res, f"{where}.resource", score)
                for k, v in (*cell.items(), (ROW, n)):
                    s_cols["score" if k == "column" else k].append(v)
                continue
            if column is not None:
                cols, names = w_cols, _W_COLS
                cell, shape = _work_cell(res, f"{where}.resource", column)
                rows = [cell]
                problem = None if shape is None else f"entry {n}: {shape}"
            elif kind == "Observation":
                rows = [_observation_row(res, f"{where}.resource", loinc)]
            elif kind == "QuestionnaireResponse":
                cols, names = q_cols, _Q_COLS
                rows, extra = _response_rows(res, f"{where}.resource")
                extra_answers += extra
            else:
                skipped[str(kind)] += 1
                continue
        except _ShapeError as exc:
            rows = [dict.fromkeys(names)]
            problem = f"entry {n}: {exc}"
        for row in rows:
            for k in names:
                cols[k].append(row[k])
            cols[SHAPE].append(problem)
            cols[ROW].append(n)
    notices: list[Notice] = []
    if skipped:
        listed = ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items()))
        notices.append(
            Notice(shown, None, "skipped_resource", f"resources not read (not measures or items): {listed}")
        )
    if extra_answers:
        notices.append(
            Notice(
                shown,
                "questionnaire_items",
                "extra_answers",
                f"{extra_answers} item(s) have several answers; the first is read",
            )
        )
    out: list[SourceTable] = []
    for table, cols in (("measures", m_cols), ("questionnaire_items", q_cols)):
        if cols[ROW]:
            if all(v is None for v in cols[SHAPE]):
                del cols[SHAPE]
            schema = {k: (pl.Int64 if k == ROW else pl.String) for k in cols}
            out.append(
                SourceTable(table, f"{shown}#{table}", "fhir", sha256, pl.DataFrame(cols, schema=schema))
            )
    work_raw = None
    if w_cols[ROW]:
        work_raw, origin = _work_table(w_cols, work_table)
        out.append(SourceTable("work", f"{shown}#work", "fhir", sha256, work_raw, source_columns=origin))
    if s_cols[ROW]:
        notices.append(_score_notice(s_cols, work_raw, shown))
    if not out and s_cols[ROW]:
        raise UnusableInputError(
            f"{shown}: the Bundle holds only WPAI:SHP scores, which are not stored (the toolkit computes "
            "them from the answers): send questions 1-6 as work Observations"
        )
    if not out:
        raise UnusableInputError(f"{shown}: the Bundle holds no Observation or QuestionnaireResponse")
    out[0].notices.extend(notices)
    return out


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def _episode_extension(episode_id: str) -> list[dict[str, Any]]:
    return [{"url": EPISODE_EXTENSION, "valueReference": {"reference": f"EpisodeOfCare/{episode_id}"}}]


def _work_observations(work: pl.DataFrame) -> list[dict[str, Any]]:
    """One Observation per filled cell of ``work`` (its episode and date on every one).

    The code is the column in :data:`WORK_SYSTEM` (``employment_status`` also LOINC 67875-5); the value is
    ``valueCodeableConcept`` for a code (system :data:`WORK_VALUE_PREFIX` + column), ``valueBoolean``,
    ``valueDateTime`` for a date, or ``valueQuantity`` with the UCUM unit of :data:`WORK_UNITS`. Category
    ``survey`` for the WPAI:SHP answers, ``social-history`` for the rest.
    """
    dtypes = TABLE_SPECS["work"].dtypes
    data = [c for c in dtypes if c not in _WORK_KEY]
    entries: list[dict[str, Any]] = []
    for r in work.select(*_WORK_KEY, *data).to_dicts():
        for column in data:
            value = r[column]
            if value is None:
                continue
            coding = [_coding(WORK_SYSTEM, column)]
            if column == "employment_status":
                coding.append(_coding(LOINC_SYSTEM, EMPLOYMENT_LOINC))
            category = "survey" if column.startswith("wpai_") else "social-history"
            obs: dict[str, Any] = {
                "resourceType": "Observation",
                "status": "final",
                "extension": _episode_extension(r["episode_id"]),
                "category": [
                    {
                        "coding": [
                            _coding("http://terminology.hl7.org/CodeSystem/observation-category", category)
                        ]
                    }
                ],
                "code": {"coding": coding},
                "effectiveDateTime": r["assessed_on"].isoformat(),
            }
            dtype = dtypes[column]
            if dtype == pl.String:
                obs["valueCodeableConcept"] = {"coding": [_coding(WORK_VALUE_PREFIX + column, value)]}
            elif dtype == pl.Boolean:
                obs["valueBoolean"] = value
            elif dtype == pl.Date:
                obs["valueDateTime"] = value.isoformat()
            else:
                ucum, unit = WORK_UNITS[column]
                obs["valueQuantity"] = {"value": value, "unit": unit, "system": _UCUM, "code": ucum}
            entries.append({"resource": obs})
    return entries


def write_fhir_bundle(
    measures: pl.DataFrame, items: pl.DataFrame, path: str | Path, *, work: pl.DataFrame | None = None
) -> Path:
    """Write canonical ``measures``, ``questionnaire_items`` and ``work`` as a FHIR R4 collection Bundle.

    One Observation per measure row (local code plus LOINC where the catalog has one; nprs with
    ``bodySite.text``), one QuestionnaireResponse per episode, date, instrument and version with one item per
    answered item, and one Observation per filled ``work`` cell (:func:`_work_observations`). Used for
    round-trip tests and to hand data to FHIR tooling.

    Parameters
    ----------
    measures, items : polars.DataFrame
        Canonical ``measures`` and ``questionnaire_items``.
    path : str or Path
        The Bundle to write (JSON).
    work : polars.DataFrame, optional
        Canonical ``work`` rows.

    Returns
    -------
    Path
        The file written.
    """
    cat = measure_catalog()
    loinc = dict(zip(cat["code"], cat["loinc"], strict=True))
    units = dict(zip(cat["code"], cat["unit"], strict=True))
    kinds = dict(zip(cat["code"], cat["kind"], strict=True))
    entries: list[dict[str, Any]] = []
    for r in measures.to_dicts():
        coding = [_coding(MEASURE_SYSTEM, r["measure"])]
        if loinc.get(r["measure"]):
            coding.append(_coding(LOINC_SYSTEM, loinc[r["measure"]]))
        obs: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "extension": [
                {
                    "url": EPISODE_EXTENSION,
                    "valueReference": {"reference": f"EpisodeOfCare/{r['episode_id']}"},
                }
            ],
            "category": [
                {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/observation-category",
                            "survey" if kinds.get(r["measure"]) == "prom" else "exam",
                        )
                    ]
                }
            ],
            "code": {"coding": coding},
            "effectiveDateTime": r["assessed_on"].isoformat(),
            "valueQuantity": {"value": r["value"], "unit": units.get(r["measure"]) or ""},
        }
        if r["measure"] in ("nprs_leg", "nprs_back"):
            obs["bodySite"] = {"text": r["measure"].removeprefix("nprs_")}
        comps: list[dict[str, object]] = []
        if r.get("stopped_reason") is not None:
            comps.append(
                {
                    "code": {"coding": [_coding(COMPONENT_SYSTEM, "stopped_reason")]},
                    "valueCodeableConcept": {"coding": [_coding(COMPONENT_SYSTEM, r["stopped_reason"])]},
                }
            )
        if r.get("cap_min") is not None:
            comps.append(
                {
                    "code": {"coding": [_coding(COMPONENT_SYSTEM, "cap_min")]},
                    "valueQuantity": {"value": r["cap_min"], "unit": "min"},
                }
            )
        if r.get("instrument_version") is not None:
            comps.append(
                {
                    "code": {"coding": [_coding(COMPONENT_SYSTEM, "instrument_version")]},
                    "valueString": r["instrument_version"],
                }
            )
        if comps:
            obs["component"] = comps
        entries.append({"resource": obs})
    group_cols = ["episode_id", "assessed_on", "instrument", "instrument_version"]
    grouped = items.group_by(group_cols, maintain_order=True).agg("item", "response")
    for r in grouped.to_dicts():
        version = f"|{r['instrument_version']}" if r["instrument_version"] is not None else ""
        entries.append(
            {
                "resource": {
                    "resourceType": "QuestionnaireResponse",
                    "status": "completed",
                    "extension": [
                        {
                            "url": EPISODE_EXTENSION,
                            "valueReference": {"reference": f"EpisodeOfCare/{r['episode_id']}"},
                        }
                    ],
                    "questionnaire": f"{QUESTIONNAIRE_PREFIX}{r['instrument']}{version}",
                    "authored": r["assessed_on"].isoformat(),
                    "item": [
                        {"linkId": i, "answer": [{"valueInteger": v}]}
                        for i, v in zip(r["item"], r["response"], strict=True)
                    ],
                }
            }
        )
    if work is not None:
        entries.extend(_work_observations(work))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}), encoding="utf-8"
    )
    return path
