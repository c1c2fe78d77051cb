"""FHIR R4 Bundles: Observations into ``measures``, QuestionnaireResponses into ``questionnaire_items``.

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

Values are passed to validation as text, exactly as they appear in the JSON: a string ``"7/10"`` where a
number belongs is reported, not converted. The row number of a problem is the Bundle entry (counted from 1).
The JSON tree is walked resource by resource (the JSON parser yields Python objects, so this reader is
bounded by parsing, not by the walk); tables are assembled column-wise.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from sciatica_outcomes.errors import UnusableInputError
from sciatica_outcomes.ingest.sources import ROW, Notice, SourceTable
from sciatica_outcomes.schemas import measure_catalog

__all__ = [
    "COMPONENT_SYSTEM",
    "EPISODE_EXTENSION",
    "LOINC_SYSTEM",
    "MEASURE_SYSTEM",
    "QUESTIONNAIRE_PREFIX",
    "read_fhir_bundle",
    "write_fhir_bundle",
]

MEASURE_SYSTEM = "urn:sciatica-outcomes:measure"
COMPONENT_SYSTEM = "urn:sciatica-outcomes:component"
QUESTIONNAIRE_PREFIX = "urn:sciatica-outcomes:questionnaire:"
EPISODE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-episodeOfCare"
LOINC_SYSTEM = "http://loinc.org"
ORDINAL_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
)
_NRS_LOINC = "72514-3"


def _text(value: Any) -> str | None:
    """JSON scalar as the text validation sees (numbers as written, strings verbatim)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _loinc_measures() -> dict[str, str]:
    cat = measure_catalog().filter(pl.col("loinc").is_not_null())
    counts = Counter(cat["loinc"].to_list())
    return {code: m for m, code in zip(cat["code"], cat["loinc"], strict=True) if counts[code] == 1}


def _episode(resource: dict[str, Any]) -> str | None:
    for ext in resource.get("extension") or []:
        if ext.get("url") == EPISODE_EXTENSION:
            ref = (ext.get("valueReference") or {}).get("reference")
            if isinstance(ref, str):
                return ref.split("/", 1)[1] if ref.startswith("EpisodeOfCare/") else ref
    return None


def _date(value: Any) -> str | None:
    if isinstance(value, str) and len(value) > 10 and value[10] == "T":
        return value[:10]
    return _text(value)


def _measure(resource: dict[str, Any], loinc: dict[str, str]) -> str | None:
    codings = (resource.get("code") or {}).get("coding") or []
    local = next((c.get("code") for c in codings if c.get("system") == MEASURE_SYSTEM), None)
    if local is not None:
        return _text(local)
    for c in codings:
        if c.get("system") == LOINC_SYSTEM:
            code = c.get("code")
            if code in loinc:
                return loinc[code]
            if code == _NRS_LOINC:
                site = ((resource.get("bodySite") or {}).get("text") or "").strip().lower()
                if site in ("leg", "back"):
                    return f"nprs_{site}"
                return f"loinc {code} (pain NRS: give bodySite.text leg or back)"
            return f"loinc {code}"
    return None


def _components(resource: dict[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {"stopped_reason": None, "cap_min": None, "instrument_version": None}
    for comp in resource.get("component") or []:
        codings = (comp.get("code") or {}).get("coding") or []
        code = next((c.get("code") for c in codings if c.get("system") == COMPONENT_SYSTEM), None)
        if code == "stopped_reason":
            cc = (comp.get("valueCodeableConcept") or {}).get("coding") or [{}]
            out[code] = (
                _text(cc[0].get("code")) if "valueCodeableConcept" in comp else _text(comp.get("valueString"))
            )
        elif code == "cap_min":
            out[code] = _text((comp.get("valueQuantity") or {}).get("value"))
        elif code == "instrument_version":
            out[code] = _text(comp.get("valueString"))
    return out


def _answer(item: dict[str, Any]) -> str | None:
    answers = item.get("answer") or []
    if not answers:
        return None
    a = answers[0]
    for key in ("valueInteger", "valueDecimal"):
        if key in a:
            return _text(a[key])
    if "valueCoding" in a:
        coding = a["valueCoding"] or {}
        for holder in (coding, a):
            for ext in holder.get("extension") or []:
                if ext.get("url") in ORDINAL_EXTENSIONS:
                    v = next((ext[k] for k in ("valueDecimal", "valueInteger") if k in ext), None)
                    if v is not None:
                        return _text(v)
        return _text(coding.get("code"))
    if "valueString" in a:
        return _text(a["valueString"])
    return None


def _items(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for it in items:
        if it.get("answer"):
            yield it
        if it.get("item"):
            yield from _items(it["item"])


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
        present); :data:`ROW` = Bundle entry number. Other resource types are skipped with a notice.

    Raises
    ------
    UnusableInputError
        Invalid JSON or not a Bundle.
    """
    shown = str(path)
    try:
        bundle = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise UnusableInputError(f"{shown}: cannot read as JSON: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise UnusableInputError(f"{shown}: expected a FHIR Bundle (resourceType 'Bundle')")
    loinc = _loinc_measures()
    m_cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "episode_id",
            "assessed_on",
            "measure",
            "value",
            "stopped_reason",
            "cap_min",
            "instrument_version",
            ROW,
        )
    }
    q_cols: dict[str, list[Any]] = {
        k: []
        for k in ("episode_id", "assessed_on", "instrument", "item", "response", "instrument_version", ROW)
    }
    skipped: Counter[str] = Counter()
    extra_answers = 0
    for n, entry in enumerate(bundle.get("entry") or [], start=1):
        res = (entry or {}).get("resource") or {}
        kind = res.get("resourceType")
        if kind == "Observation":
            value = (
                res.get("valueQuantity", {}).get("value")
                if "valueQuantity" in res
                else res.get("valueInteger")
            )
            comps = _components(res)
            for k, v in (
                ("episode_id", _episode(res)),
                ("assessed_on", _date(res.get("effectiveDateTime"))),
                ("measure", _measure(res, loinc)),
                ("value", _text(value)),
                ("stopped_reason", comps["stopped_reason"]),
                ("cap_min", comps["cap_min"]),
                ("instrument_version", comps["instrument_version"]),
                (ROW, n),
            ):
                m_cols[k].append(v)
        elif kind == "QuestionnaireResponse":
            canonical = str(res.get("questionnaire") or "")
            url, _, version = canonical.partition("|")
            instrument = url.removeprefix(QUESTIONNAIRE_PREFIX).rstrip("/").rsplit("/", 1)[-1] or None
            episode, authored = _episode(res), _date(res.get("authored"))
            for it in _items(res.get("item") or []):
                extra_answers += len(it.get("answer") or []) > 1
                for k, v in (
                    ("episode_id", episode),
                    ("assessed_on", authored),
                    ("instrument", instrument),
                    ("item", _text(it.get("linkId"))),
                    ("response", _answer(it)),
                    ("instrument_version", version or None),
                    (ROW, n),
                ):
                    q_cols[k].append(v)
        else:
            skipped[str(kind)] += 1
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
            schema = {k: (pl.Int64 if k == ROW else pl.String) for k in cols}
            out.append(
                SourceTable(table, f"{shown}#{table}", "fhir", sha256, pl.DataFrame(cols, schema=schema))
            )
    if not out:
        raise UnusableInputError(f"{shown}: the Bundle holds no Observation or QuestionnaireResponse")
    out[0].notices.extend(notices)
    return out


def _coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def write_fhir_bundle(measures: pl.DataFrame, items: pl.DataFrame, path: str | Path) -> Path:
    """Write canonical ``measures`` and ``questionnaire_items`` as a FHIR R4 collection Bundle.

    One Observation per measure row (local code plus LOINC where the catalog has one; nprs with
    ``bodySite.text``), one QuestionnaireResponse per episode, date, instrument and version with one item per
    answered item. Used for round-trip tests and to hand data to FHIR tooling.
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}), encoding="utf-8"
    )
    return path
