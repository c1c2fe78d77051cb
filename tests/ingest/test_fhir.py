"""Malformed FHIR Bundles: each wrong JSON shape is a located problem and a quarantined entry, no crash."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sciatica_outcomes.cli import app
from sciatica_outcomes.errors import SciaticaOutcomesError, UnusableInputError
from sciatica_outcomes.ingest import validate_paths
from sciatica_outcomes.ingest.fhir import (
    EMPLOYMENT_LOINC,
    EPISODE_EXTENSION,
    MEASURE_SYSTEM,
    ORDINAL_EXTENSIONS,
    WORK_SYSTEM,
    WORK_VALUE_PREFIX,
    WPAI_SCORE_CODE,
    read_fhir_bundle,
)
from sciatica_outcomes.ingest.validate import validate_sources
from sciatica_outcomes.scoring.work import WPAI_SCORES

_EXT = [{"url": EPISODE_EXTENSION, "valueReference": {"reference": "EpisodeOfCare/E0001"}}]


def _bundle() -> dict[str, Any]:
    """Two well-formed entries: an Observation (entry[0]) and a QuestionnaireResponse (entry[1])."""
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "extension": copy.deepcopy(_EXT),
        "code": {"coding": [{"system": MEASURE_SYSTEM, "code": "odi"}]},
        "effectiveDateTime": "2024-03-01",
        "valueQuantity": {"value": 34},
        "component": [
            {
                "code": {
                    "coding": [{"system": "urn:sciatica-outcomes:component", "code": "instrument_version"}]
                },
                "valueString": "2.1a",
            }
        ],
    }
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "extension": copy.deepcopy(_EXT),
        "questionnaire": "urn:sciatica-outcomes:questionnaire:odi|2.1a",
        "authored": "2024-03-01",
        "item": [
            {
                "linkId": "pain",
                "answer": [
                    {
                        "valueCoding": {
                            "code": "a",
                            "extension": [{"url": ORDINAL_EXTENSIONS[0], "valueInteger": 1}],
                        }
                    }
                ],
            },
            {"linkId": "walking", "answer": [{"valueInteger": 2}]},
        ],
    }
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": obs}, {"resource": qr}]}


def _set(doc: Any, path: list[str | int], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _write(tmp_path: Path, doc: Any, name: str = "b.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


# (path of the replaced value, replacement, the JSON path the message must name)
_WRONG = [
    (["entry", 0, "resource", "code", "coding", 0], "odi", "entry[0].resource.code.coding[0]"),
    (["entry", 0, "resource"], "Observation", "entry[0].resource"),
    (["entry", 1, "resource", "item", 0], "pain", "entry[1].resource.item[0]"),
    (["entry", 1, "resource", "item", 0], [{"linkId": "pain"}], "entry[1].resource.item[0]"),
    (["entry", 0, "resource", "valueQuantity"], "34", "entry[0].resource.valueQuantity"),
    (
        ["entry", 1, "resource", "item", 1, "answer", 0],
        {"valueQuantity": "2"},
        "entry[1].resource.item[1].answer[0].valueQuantity",
    ),
    (["entry", 0, "resource", "extension"], _EXT[0], "entry[0].resource.extension"),
    (
        ["entry", 1, "resource", "extension", 0, "valueReference"],
        ["E0001"],
        "entry[1].resource.extension[0].valueReference",
    ),
    (
        ["entry", 0, "resource", "effectiveDateTime"],
        {"start": "2024-03-01"},
        "entry[0].resource.effectiveDateTime",
    ),
    (
        ["entry", 1, "resource", "item", 0, "answer", 0, "valueCoding", "extension", 0, "url"],
        [],
        "entry[1].resource.item[0].answer[0].valueCoding.extension[0].url",
    ),
    (["entry", 0, "resource", "resourceType"], {"a": 1}, "entry[0].resource.resourceType"),
    (["entry", 1], "QuestionnaireResponse", "entry[1]"),
    # 900 levels: parses (under the recursion limit) and is reported at its place
    (
        ["entry", 0, "resource", "valueQuantity", "value"],
        json.loads("[" * 900 + "]" * 900),
        "entry[0].resource.valueQuantity.value",
    ),
]


@pytest.mark.parametrize(("where", "value", "located"), _WRONG, ids=[w[2] for w in _WRONG])
def test_a_wrong_shape_is_located_and_quarantines_its_entry_alone(
    tmp_path: Path, where: list[str | int], value: Any, located: str
) -> None:
    doc = _bundle()
    _set(doc, where, value)
    # a third, well-formed Observation must still pass
    third = copy.deepcopy(_bundle()["entry"][0])
    third["resource"]["effectiveDateTime"] = "2024-03-08"
    doc["entry"].append(third)
    res = validate_paths([_write(tmp_path, doc)])
    errors = res.errors
    assert errors["rule"].to_list() == ["fhir_shape"], errors
    entry = int(located.removeprefix("entry[").split("]", maxsplit=1)[0])
    problem = errors.row(0, named=True)
    assert problem["row"] == entry + 1
    assert problem["value"] == located
    assert problem["message"].startswith(f"entry {entry + 1}: {located}: expected ")
    assert sum(t.rows_quarantined for t in res.tables) == 1
    assert sum(t.rows_read for t in res.tables) == sum(t.rows_valid + t.rows_quarantined for t in res.tables)
    assert sum(t.rows_valid for t in res.tables) >= 2  # the other entries are read


def test_an_entry_list_given_as_an_object_and_deep_nesting_are_refused(tmp_path: Path) -> None:
    doc = _bundle()
    doc["entry"] = doc["entry"][0]
    with pytest.raises(UnusableInputError, match=r"entry: expected an array of entries, got an object"):
        read_fhir_bundle(_write(tmp_path, doc), "")
    deep = tmp_path / "deep.json"
    deep.write_text('{"resourceType": "Bundle", "entry": ' + "[" * 5000 + "]" * 5000 + "}")
    with pytest.raises(UnusableInputError, match="nests arrays or objects more than"):
        read_fhir_bundle(deep, "")
    for path in (tmp_path / "b.json", deep):
        res = CliRunner().invoke(app, ["validate", str(path)])
        assert res.exit_code == 2, res.output
        assert "Traceback" not in res.output


def test_cli_reports_the_json_path_of_a_malformed_entry(tmp_path: Path) -> None:
    doc = _bundle()
    _set(doc, ["entry", 0, "resource", "valueQuantity"], "34")
    report = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["validate", str(_write(tmp_path, doc)), "--report", str(report)])
    assert res.exit_code == 1, res.output
    issues = [i for i in json.loads(report.read_text())["issues"] if i["severity"] == "error"]
    assert [(i["row"], i["rule"], i["value"]) for i in issues] == [
        (1, "fhir_shape", "entry[0].resource.valueQuantity")
    ]


def _paths(doc: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value of ``doc`` (objects' keys and arrays' positions), depth first."""
    out: list[tuple[str | int, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


_FIELDS = _paths(_bundle())
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=3),
    values=st.lists(_JSON, min_size=3, max_size=3),
)
def test_no_json_shape_in_any_field_raises_anything_but_the_projects_errors(
    tmp_path: Path, where: list[tuple[str | int, ...]], values: list[Any]
) -> None:
    doc = _bundle()
    for path, value in zip(where, values, strict=False):
        try:
            _set(doc, list(path), value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed the place
    try:
        sources = read_fhir_bundle(_write(tmp_path, doc), "")
        res = validate_sources(sources)
    except SciaticaOutcomesError:
        return
    assert sum(t.rows_read for t in res.tables) == sum(t.rows_valid + t.rows_quarantined for t in res.tables)
    shape = res.errors.filter(res.errors["rule"] == "fhir_shape")
    assert shape["value"].str.starts_with("entry[").all()


# ------------------------------------------------------------------------------------------- work table


def _work_obs(code: str, value: dict[str, Any], day: str = "2024-03-01", episode: str = "E0001") -> Any:
    """A work Observation: ``code`` a column of ``work`` in the project's work code system."""
    ext = [{"url": EPISODE_EXTENSION, "valueReference": {"reference": f"EpisodeOfCare/{episode}"}}]
    return {
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "extension": ext,
            "code": {"coding": [{"system": WORK_SYSTEM, "code": code}]},
            "effectiveDateTime": day,
            **value,
        }
    }


def _coded(column: str, code: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"coding": [{"system": WORK_VALUE_PREFIX + column, "code": code}]}}


def _work_bundle() -> dict[str, Any]:
    """One work assessment of E0001 in seven Observations (employment status by LOINC only)."""
    employment = _work_obs("employment_status", _coded("employment_status", "employed"))
    employment["resource"]["code"] = {"coding": [{"system": "http://loinc.org", "code": EMPLOYMENT_LOINC}]}
    entries = [
        employment,
        _work_obs("work_status", _coded("work_status", "modified_duties")),
        _work_obs("hours_contracted", {"valueQuantity": {"value": 37.5, "unit": "h/wk"}}),
        _work_obs("hours_worked", {"valueQuantity": {"value": 20}}),
        _work_obs("wpai_q1_employed", {"valueBoolean": True}),
        _work_obs("wpai_q6_activity_impairment", {"valueInteger": 5}),
        _work_obs("return_to_work_date", {"valueDateTime": "2024-02-26T08:00:00Z"}),
    ]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def test_work_observations_of_one_episode_and_date_are_one_row_with_values_as_written(
    tmp_path: Path,
) -> None:
    (work,) = read_fhir_bundle(_write(tmp_path, _work_bundle()), "")
    assert work.table == "work" and work.raw.height == 1
    row = work.raw.row(0, named=True)
    assert row["__row"] == 1  # the row's first entry
    assert {k: row[k] for k in ("employment_status", "work_status", "hours_contracted", "hours_worked")} == {
        "employment_status": "employed",
        "work_status": "modified_duties",
        "hours_contracted": "37.5",
        "hours_worked": "20",
    }
    assert (row["wpai_q1_employed"], row["wpai_q6_activity_impairment"]) == ("true", "5")
    assert row["return_to_work_date"] == "2024-02-26"  # a dateTime keeps its calendar date
    assert row["sick_leave_days_4wk"] is None and row["wpai_q2_hours_missed_health"] is None
    res = validate_paths([_write(tmp_path, _work_bundle())])
    assert res.ok, res.errors


def test_a_bad_work_value_is_reported_at_its_entry_and_quarantines_the_whole_row(tmp_path: Path) -> None:
    doc = _work_bundle()
    doc["entry"][1] = _work_obs("work_status", _coded("work_status", "on_holiday"))
    doc["entry"][3] = _work_obs("hours_worked", {"valueQuantity": {"value": "twenty"}})
    other = _work_obs("work_status", _coded("work_status", "full_duties"), day="2024-03-08")
    doc["entry"].append(other)  # entry 8: another date, on its own row, which must pass
    doc["entry"].append(_work_obs("employment_status", _coded("employment_status", "employed"), "2024-03-08"))
    res = validate_paths([_write(tmp_path, doc)])
    got = {(r["row"], r["column"], r["value"], r["rule"]) for r in res.errors.iter_rows(named=True)}
    assert got == {
        (1, "work_status (entry 2)", "on_holiday", "allowed_values"),
        (1, "hours_worked (entry 4)", "twenty", "type"),
    }
    (work,) = res.tables
    assert (work.rows_read, work.rows_valid, work.rows_quarantined) == (2, 1, 1)
    assert work.valid["work_status"].to_list() == ["full_duties"]


def test_a_work_column_given_twice_for_one_date_is_a_duplicate_key_not_a_silent_overwrite(
    tmp_path: Path,
) -> None:
    doc = _work_bundle()
    doc["entry"].append(_work_obs("work_status", _coded("work_status", "full_duties")))
    res = validate_paths([_write(tmp_path, doc)])
    (work,) = res.tables
    assert work.rows_read == 2 and work.rows_valid == 0
    assert "duplicate_key" in set(res.errors["rule"]), res.errors


def test_a_malformed_work_observation_rejects_its_row_and_an_unknown_work_code_is_refused(
    tmp_path: Path,
) -> None:
    doc = _work_bundle()
    doc["entry"][2]["resource"]["valueQuantity"] = "37.5"  # an object belongs here
    doc["entry"].append(_work_obs("overtime_hours", {"valueQuantity": {"value": 3}}))
    res = validate_paths([_write(tmp_path, doc)])
    rules = res.errors.select("table", "row", "rule").rows()
    assert ("work", 1, "fhir_shape") in rules
    assert ("measures", 8, "allowed_values") in rules
    assert "entry 3: entry[2].resource.valueQuantity: expected an object" in " ".join(res.errors["message"])
    assert sum(t.rows_valid for t in res.tables) == 0  # the row of the malformed entry is not stored in part


_WORK_FIELDS = _paths(_work_bundle())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.lists(st.sampled_from(_WORK_FIELDS), min_size=1, max_size=3),
    values=st.lists(_JSON, min_size=3, max_size=3),
)
def test_no_json_shape_in_a_work_observation_raises_anything_but_the_projects_errors(
    tmp_path: Path, where: list[tuple[str | int, ...]], values: list[Any]
) -> None:
    doc = _work_bundle()
    for path, value in zip(where, values, strict=False):
        try:
            _set(doc, list(path), value)
        except (KeyError, IndexError, TypeError):
            continue
    try:
        res = validate_sources(read_fhir_bundle(_write(tmp_path, doc), ""))
    except SciaticaOutcomesError:
        return
    assert sum(t.rows_read for t in res.tables) == sum(t.rows_valid + t.rows_quarantined for t in res.tables)


def test_wpai_score_observations_are_not_stored_and_counted_in_a_notice(tmp_path: Path) -> None:
    doc = _work_bundle()
    q2 = _work_obs("wpai_q2_hours_missed_health", {"valueQuantity": {"value": 4, "unit": "h"}})
    doc["entry"].append(q2)

    def score(code: str, pct: float, day: str = "2024-03-01") -> Any:
        return _work_obs(code, {"valueQuantity": {"value": pct, "unit": "%"}}, day=day)

    doc["entry"] += [
        score("wpai_absenteeism_pct", 20),  # entry 9: answers on that day
        score("wpai_activity_impairment_pct", 50, day="2024-03-08"),  # entry 10: no answers that day
    ]
    sources = read_fhir_bundle(_write(tmp_path, doc), "")
    assert [s.table for s in sources] == ["work"] and sources[0].raw.height == 1
    (notice,) = [n for s in sources for n in s.notices if n.rule == "wpai_scores_not_stored"]
    assert notice.message == (
        "2 WPAI:SHP score Observation(s) are not stored: the toolkit computes the scores from the answers "
        "(questions 1-6), which the Bundle holds for 1 of them; 1 have no answers for their episode and date "
        "(first: entry 10): send questions 1-6 as work Observations"
    )
    res = validate_sources(sources)
    assert res.ok and "wpai_scores_not_stored" in set(res.issues["rule"])
    only = {"resourceType": "Bundle", "entry": [score("wpai_absenteeism_pct", 20)]}
    with pytest.raises(UnusableInputError, match="holds only WPAI:SHP scores, which are not stored"):
        read_fhir_bundle(_write(tmp_path, only), "")


def test_the_score_codes_the_reader_knows_are_the_scoring_stages_names() -> None:
    assert all(re.match(WPAI_SCORE_CODE, name) for name in WPAI_SCORES)
    assert not re.match(WPAI_SCORE_CODE, "wpai_q2_hours_missed_health")
