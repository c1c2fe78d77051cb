"""Malformed FHIR Bundles: each wrong JSON shape is a located problem and a quarantined entry, no crash."""

from __future__ import annotations

import copy
import json
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
    EPISODE_EXTENSION,
    MEASURE_SYSTEM,
    ORDINAL_EXTENSIONS,
    read_fhir_bundle,
)
from sciatica_outcomes.ingest.validate import validate_sources

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
