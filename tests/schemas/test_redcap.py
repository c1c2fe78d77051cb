"""The shipped REDCap project against REDCap's documented data-dictionary rules, and its scores against ours.

The rules (REDCap data dictionary documentation, e.g. the "Data Dictionary Column Reference" knowledge-base
article, bdeveer.github.io/REDCap_KB_RAG RC-FD-08, and the data dictionary demonstration file of every
REDCap project): 18 columns in a fixed order; field names lower-case letters, digits and underscores,
starting with a letter, unique, at most 26 characters recommended (100 allowed); the record id first;
a known field type; text validation names from REDCap's list and only on text fields; choices as
``code, label | ...`` for dropdown/radio/checkbox with codes of letters, digits and underscores (or
integers); calculations with ``[field]`` references and REDCap's functions; branching logic as ``[field] op
'value'`` joined by ``and``/``or``, checkboxes as ``[field(code)]``; matrix groups of radio or checkbox
fields with one set of choices; a form's fields contiguous.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import polars as pl
import pytest

from sciatica_outcomes.schemas import TABLE_SPECS
from sciatica_outcomes.schemas.redcap import (
    DICTIONARY_COLUMNS,
    EVENTS,
    RECORD_ID,
    event_designations,
    redcap_dictionary,
    redcap_events,
    redcap_mapping,
    repeating_instruments,
)
from sciatica_outcomes.schemas.vocabulary import EXERCISE_CODES
from sciatica_outcomes.scoring.instruments import score_questionnaires
from sciatica_outcomes.synth import generate_cohort

FIELD_TYPES = {
    "text", "notes", "dropdown", "radio", "checkbox", "yesno", "truefalse", "calc", "file", "descriptive",
    "slider", "sql",
}  # fmt: skip
VALIDATIONS = {
    "date_ymd", "date_mdy", "date_dmy", "datetime_ymd", "datetime_mdy", "datetime_dmy",
    "datetime_seconds_ymd", "datetime_seconds_mdy", "datetime_seconds_dmy", "time", "time_mm_ss",
    "integer", "number", "number_1dp",
    "number_2dp", "number_3dp", "number_4dp", "number_comma_decimal", "number_1dp_comma_decimal",
    "number_2dp_comma_decimal", "email", "phone", "zipcode", "alpha_only", "mrn_10d", "vmrn", "postalcode_ca",
    "signature",
}  # fmt: skip
CALC_FUNCTIONS = {
    "if", "sum", "mean", "median", "min", "max", "round", "roundup", "rounddown", "abs", "sqrt",
    "exponential", "stdev", "datediff", "isnumber", "isinteger", "isblankormissingcode", "log",
}  # fmt: skip
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
CODE = re.compile(r"^(-?[0-9]+|[A-Za-z0-9_]+)$")
TOKEN = re.compile(
    r"\s*(?:(?P<field>\[[a-z][a-z0-9_]*(?:\([A-Za-z0-9_-]+\))?\])|(?P<str>'[^']*'|\"[^\"]*\")"
    r"|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|>|<)|(?P<arith>[-+*/^])|(?P<word>[a-z_]+)"
    r"|(?P<paren>[(),]))"
)
CHOICE_TYPES = {"dropdown", "radio", "checkbox"}
LABELS = dict(
    zip(redcap_dictionary()["Variable / Field Name"], redcap_dictionary()["Field Label"], strict=True)
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"cannot read {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _branching_problems(
    logic: str, choices: dict[str, set[str]], names: set[str], checkboxes: frozenset[str] = frozenset()
) -> list[str]:
    """Parse ``logic`` as REDCap branching logic: comparisons joined by and/or, with parentheses."""
    try:
        toks = _tokens(logic)
    except ValueError as exc:
        return [str(exc)]
    problems: list[str] = []
    i = 0

    def operand() -> tuple[str, str] | None:
        nonlocal i
        if i < len(toks) and toks[i][0] in ("field", "str", "num"):
            i += 1
            return toks[i - 1]
        return None

    def comparison() -> None:
        nonlocal i
        if i < len(toks) and toks[i] == ("paren", "("):
            i += 1
            expression()
            if i >= len(toks) or toks[i] != ("paren", ")"):
                problems.append("unbalanced parentheses")
            i += 1
            return
        left = operand()
        if left is None or i >= len(toks) or toks[i][0] != "op":
            problems.append(f"expected [field] op value at token {i}")
            i = len(toks)
            return
        i += 1
        right = operand()
        if right is None:
            problems.append(f"expected a value after the operator at token {i}")
            return
        if left[0] == "field":
            name = left[1].strip("[]")
            base, _, code = name.partition("(")
            if base not in names:
                problems.append(f"unknown field {base}")
            elif code:
                if base not in checkboxes:
                    problems.append(f"{base} is no checkbox: [field(code)] is for checkboxes")
                elif code.rstrip(")") not in choices.get(base, set()):
                    problems.append(f"{base} has no checkbox code {code.rstrip(')')}")
            elif base in choices and right[0] == "str" and right[1].strip("'\"") not in choices[base] | {""}:
                problems.append(f"{base} has no choice {right[1]}")

    def expression() -> None:
        nonlocal i
        comparison()
        while i < len(toks) and toks[i] in (("word", "and"), ("word", "or")):
            i += 1
            comparison()

    expression()
    if i < len(toks):
        problems.append(f"unexpected {toks[i][1]!r}")
    return problems


def _calc_problems(calc: str, names: set[str]) -> list[str]:
    try:
        toks = _tokens(calc)
    except ValueError as exc:
        return [str(exc)]
    problems: list[str] = []
    depth = 0
    for k, (kind, text) in enumerate(toks):
        if kind == "field" and text.strip("[]").split("(")[0] not in names:
            problems.append(f"unknown field {text}")
        elif kind == "word" and text not in ("and", "or"):
            if text not in CALC_FUNCTIONS:
                problems.append(f"unknown function {text}")
            elif k + 1 >= len(toks) or toks[k + 1] != ("paren", "("):
                problems.append(f"{text} is not called")
        elif text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
            if depth < 0:
                problems.append("unbalanced parentheses")
    if depth:
        problems.append("unbalanced parentheses")
    return problems


def _parse_choices(spec: str) -> list[tuple[str, str]]:
    return [(c.strip(), label.strip()) for c, _, label in (p.partition(",") for p in spec.split("|"))]


def dictionary_problems(d: pl.DataFrame) -> list[str]:
    """Every violation of REDCap's data-dictionary rules in ``d`` (one sentence each)."""
    problems: list[str] = []
    if tuple(d.columns) != DICTIONARY_COLUMNS:
        return [f"columns are {d.columns}, expected REDCap's 18 columns in order"]
    rows = list(d.fill_null("").iter_rows(named=True))
    names = [r["Variable / Field Name"] for r in rows]
    known = set(names)
    if not rows or names[0] != RECORD_ID:
        problems.append("the first field must be the record id")
    if len(known) != len(names):
        problems.append("field names are not unique")
    forms_seen: list[str] = []
    for r in rows:
        if not forms_seen or forms_seen[-1] != r["Form Name"]:
            if r["Form Name"] in forms_seen:
                problems.append(f"form {r['Form Name']} is split: its fields must be contiguous")
            forms_seen.append(r["Form Name"])
    choices = {
        r["Variable / Field Name"]: {
            c for c, _ in _parse_choices(r["Choices, Calculations, OR Slider Labels"])
        }
        for r in rows
        if r["Field Type"] in CHOICE_TYPES
    }
    choices |= {
        r["Variable / Field Name"]: {"0", "1"} for r in rows if r["Field Type"] in ("yesno", "truefalse")
    }
    checkboxes = frozenset(r["Variable / Field Name"] for r in rows if r["Field Type"] == "checkbox")
    labels: dict[str, str] = {}
    for r in rows:
        name, ftype = r["Variable / Field Name"], r["Field Type"]
        spec = r["Choices, Calculations, OR Slider Labels"]
        where = f"{name}:"
        if not NAME.match(name) or len(name) > 26 or "___" in name or name.startswith("redcap_"):
            problems.append(f"{where} not a valid field name (a-z0-9_, starting with a letter, <= 26 chars)")
        if name.endswith("_complete") or not NAME.match(r["Form Name"]):
            problems.append(f"{where} reserved name or invalid form name {r['Form Name']}")
        if ftype not in FIELD_TYPES:
            problems.append(f"{where} unknown field type {ftype}")
        if not r["Field Label"].strip():
            problems.append(f"{where} empty field label")
        elif ftype != "descriptive":
            if r["Field Label"] in labels:
                problems.append(
                    f"{where} label repeats {labels[r['Field Label']]} (label exports need it unique)"
                )
            labels[r["Field Label"]] = name
        v = r["Text Validation Type OR Show Slider Number"]
        if v and (ftype != "text" or v not in VALIDATIONS):
            problems.append(f"{where} validation {v!r} is not a REDCap text validation of a text field")
        lo, hi = r["Text Validation Min"], r["Text Validation Max"]
        if (lo or hi) and v not in ("integer", "number", "number_1dp", "number_2dp", "date_ymd"):
            problems.append(f"{where} min/max without a numeric or date validation")
        if lo and hi and v != "date_ymd" and float(lo) > float(hi):
            problems.append(f"{where} min {lo} above max {hi}")
        if ftype in CHOICE_TYPES:
            pairs = _parse_choices(spec)
            codes = [c for c, _ in pairs]
            if not spec or any(not CODE.match(c) or not label for c, label in pairs):
                problems.append(f"{where} choices must be 'code, label | ...' with codes of a-z, 0-9, _")
            if len(set(codes)) != len(codes) or len({lb for _, lb in pairs}) != len(pairs):
                problems.append(f"{where} choice codes or labels repeat")
        elif ftype == "calc":
            problems.extend(f"{where} calc: {p}" for p in _calc_problems(spec, known))
        elif spec and ftype != "slider":
            problems.append(f"{where} choices/calculation on a {ftype} field")
        if r["Branching Logic (Show field only if...)"]:
            problems.extend(
                f"{where} branching: {p}"
                for p in _branching_problems(
                    r["Branching Logic (Show field only if...)"], choices, known, checkboxes
                )
            )
        for col in ("Required Field?", "Identifier?", "Matrix Ranking?"):
            if r[col] not in ("", "y"):
                problems.append(f"{where} {col} must be 'y' or empty")
        if ftype == "descriptive":
            same_form = {x["Variable / Field Name"] for x in rows if x["Form Name"] == r["Form Name"]}
            for embedded in re.findall(r"\{([a-z][a-z0-9_]*)\}", r["Field Label"]):
                if embedded not in same_form:
                    problems.append(f"{where} embeds {embedded}, which is not a field of its form")
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        if r["Matrix Group Name"]:
            groups.setdefault(r["Matrix Group Name"], []).append(r)
    for g, members in groups.items():
        if not NAME.match(g):
            problems.append(f"matrix {g}: not a valid matrix group name (a-z0-9_, starting with a letter)")
        if {m["Field Type"] for m in members} - {"radio", "checkbox"} or len(
            {m["Field Type"] for m in members}
        ) > 1:
            problems.append(f"matrix {g}: members must all be radio or all checkbox")
        if len({m["Choices, Calculations, OR Slider Labels"] for m in members}) > 1:
            problems.append(f"matrix {g}: members must share one set of choices")
        positions = [names.index(m["Variable / Field Name"]) for m in members]
        if positions != list(range(positions[0], positions[0] + len(positions))):
            problems.append(f"matrix {g}: members must be contiguous")
    return problems


def test_the_shipped_dictionary_follows_redcaps_rules() -> None:
    d = redcap_dictionary()
    assert dictionary_problems(d) == []
    # the instruments the project promises, with their calculated totals
    forms = set(d["Form Name"])
    assert {
        "episode",
        "pain_tolerance",
        "odi",
        "rmdq",
        "sciatica",
        "psfs",
        "red_flags",
        "session_log",
    } <= forms
    calcs = set(d.filter(pl.col("Field Type") == "calc")["Variable / Field Name"])
    assert calcs == {"odi_score", "rmdq_score", "sbi_score", "sfi_score", "psfs_score"}


def _edit(name: str, column: str, value: str) -> pl.DataFrame:
    d = redcap_dictionary()
    return d.with_columns(
        pl.when(pl.col("Variable / Field Name") == name)
        .then(pl.lit(value))
        .otherwise(pl.col(column))
        .alias(column)
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _edit("t_nprs_leg", "Variable / Field Name", "NPRS-leg"), "not a valid field name"),
        (lambda: _edit("t_nprs_leg", "Variable / Field Name", "t_nprs_leg_average_last_week_x"), "<= 26"),
        (lambda: _edit("ep_age", "Text Validation Type OR Show Slider Number", "int"), "validation 'int'"),
        (lambda: _edit("ep_age", "Field Type", "textbox"), "unknown field type"),
        (
            lambda: _edit("t_walk_stop", "Branching Logic (Show field only if...)", "[t_walk_min] <> "),
            "expected a",
        ),
        (
            lambda: _edit("t_walk_stop", "Branching Logic (Show field only if...)", "t_walk_min <> ''"),
            "expected [field]",
        ),
        (
            lambda: _edit("ep_end_reason", "Branching Logic (Show field only if...)", "[ep_sex] = 'W'"),
            "no choice",
        ),
        (
            lambda: _edit("odi_score", "Choices, Calculations, OR Slider Labels", "sum([odi_pain], [odi_x])"),
            "unknown",
        ),
        (
            lambda: _edit("odi_score", "Choices, Calculations, OR Slider Labels", "total([odi_pain])"),
            "function",
        ),
        (
            lambda: _edit("ep_sex", "Choices, Calculations, OR Slider Labels", "F Female | M, Male"),
            "choices must",
        ),
        (lambda: _edit("odi_lifting", "Field Type", "dropdown"), "matrix odi_sections"),
        (
            lambda: _edit("rmdq_3", "Field Label", LABELS["rmdq_2"]),
            "label",
        ),
        (lambda: _edit("ep_age", "Form Name", "odi"), "split"),
        (lambda: redcap_dictionary().select(DICTIONARY_COLUMNS[:17]), "18 columns"),
        (lambda: redcap_dictionary().slice(1), "first field must be the record id"),
        (lambda: _edit("odi_pain", "Matrix Group Name", "ODI sections"), "not a valid matrix group name"),
        (lambda: _edit("x_matrix", "Field Label", "<table>{x_nordic_setz}</table>"), "embeds x_nordic_setz"),
        (lambda: _edit("ep_age", "Text Validation Min", "90"), "min 90 above max 89"),
        (lambda: _edit("ep_program", "Text Validation Max", "9"), "min/max without"),
        (lambda: _edit("ep_age", "Required Field?", "yes"), "must be 'y' or empty"),
        (
            lambda: _edit("rf_alert", "Branching Logic (Show field only if...)", "[rf_saddle(1)] = '1'"),
            "rf_saddle is no checkbox",
        ),
        (
            lambda: _edit(
                "rf_alert", "Branching Logic (Show field only if...)", "([rf_saddle] = '1' or [x] = 1"
            ),
            "unbalanced parentheses",
        ),
    ],
)
def test_the_checker_finds_each_planted_defect(make: Callable[[], pl.DataFrame], expected: str) -> None:
    problems = dictionary_problems(make())
    assert any(expected in p for p in problems), problems


def test_mapping_covers_every_canonical_column_from_a_field_of_the_dictionary() -> None:
    d = redcap_dictionary()
    m = redcap_mapping()
    fields = dict(zip(d["Variable / Field Name"], d["Form Name"], strict=True))
    assert set(m["field_name"]) <= set(fields)
    own = m.filter(pl.col("form_name") != "")
    assert (own["form_name"] == own["field_name"].replace_strict(fields)).all()
    for table, spec in TABLE_SPECS.items():
        mapped = set(m.filter(pl.col("table") == table)["column"])
        keyed = {
            k.split("=")[0].strip()
            for ks in m.filter(pl.col("table") == table)["keys"]
            for k in ks.split(";")
            if k
        }
        generated = set(spec.generated_key_columns)
        assert set(spec.columns) - generated <= mapped | keyed, table
    # descriptive fields carry no data and feed nothing
    descriptive = set(d.filter(pl.col("Field Type") == "descriptive")["Variable / Field Name"])
    assert descriptive and not descriptive & set(m["field_name"])
    # the exercise matrix has one fixed row per catalog exercise (not one instance per set)
    ex = m.filter(pl.col("table") == "session_exercises", pl.col("keys") != "")
    assert set(ex["keys"].str.strip_prefix("exercise=")) == set(EXERCISE_CODES)
    assert ex.group_by("keys").len()["len"].unique().to_list() == [7]


def test_choice_codes_are_the_canonical_codes_behind_plain_labels() -> None:
    d = redcap_dictionary()
    m = redcap_mapping().filter(pl.col("values") == "")
    spec = dict(zip(d["Variable / Field Name"], d["Choices, Calculations, OR Slider Labels"], strict=True))
    types = dict(zip(d["Variable / Field Name"], d["Field Type"], strict=True))
    checked = 0
    for field, table, column in m.select("field_name", "table", "column").iter_rows():
        col = TABLE_SPECS[table].schema.columns[column]
        allowed = next((c.statistics["allowed_values"] for c in col.checks if c.name == "isin"), None)
        if allowed is None or types[field] not in CHOICE_TYPES:
            continue
        pairs = _parse_choices(spec[field])
        assert [c for c, _ in pairs] == list(allowed), field
        # a plain label, not the code again (``below_knee`` shows as ``Below the knee``)
        assert all(label != code for code, label in pairs if "_" in code), field
        checked += 1
    assert checked >= 8


def test_events_designations_and_repeating_setup_fit_together() -> None:
    ev = redcap_events()
    des = event_designations()
    rep = repeating_instruments()
    d = redcap_dictionary()
    unique = ev["unique_event_name"]
    assert unique.str.contains(r"^[a-z][a-z0-9_]*_arm_1$").all() and unique.is_unique().all()
    # REDCap derives the unique name from the label: lower case, spaces to underscores
    assert (ev["event_name"].str.to_lowercase().str.replace_all(" ", "_") + "_arm_1" == unique).all()
    assert set(des["unique_event_name"]) <= set(unique)
    assert set(des["form"]) == set(d["Form Name"])
    assert rep.rows() == [("sessions_arm_1", "session_log", "[sess_date] [sess_status]")]
    assert ("sessions_arm_1", "session_log") in set(des.select("unique_event_name", "form").rows())
    # one visit event per scheduled week; every visit collects the pain, tolerance and red-flag forms
    visits = [e[0] for e in EVENTS if e[0].startswith(("baseline", "week_"))]
    for form in ("pain_tolerance", "red_flags"):
        assert sorted(des.filter(pl.col("form") == form)["unique_event_name"]) == sorted(
            f"{v}_arm_1" for v in visits
        )


# ----------------------------------------------------------------------------------- calculated scores


def _redcap_calc(calc: str, values: dict[str, float | str]) -> float | str:
    """Evaluate a REDCap calculation: blanks are '', sum/mean skip blanks, ``=`` compares, ``<>`` differs."""

    def _if(cond: object, yes: object, no: object) -> object:
        return yes if cond else no

    def _sum(*xs: object) -> object:
        nums = [float(x) for x in xs if x != ""]
        return sum(nums) if nums else ""

    def _mean(*xs: object) -> object:
        nums = [float(x) for x in xs if x != ""]
        return sum(nums) / len(nums) if nums else ""

    def _round(x: object, k: int = 0) -> object:
        return "" if x == "" else math.floor(float(x) * 10**k + 0.5) / 10**k

    code = re.sub(r"\[([a-z0-9_]+)\]", lambda m: repr(values.get(m.group(1), "")), calc)
    code = code.replace("<>", "!=")
    code = re.sub(r"(?<![<>!=])=(?!=)", "==", code)
    code = re.sub(r"\b(if|sum|mean|round)\(", r"_\1(", code)
    env = {"_if": _if, "_sum": _sum, "_mean": _mean, "_round": _round}
    return eval(code, {"__builtins__": {}}, env)


def test_calculated_totals_equal_the_toolkits_scores_on_a_synthetic_cohort() -> None:
    cohort = generate_cohort(n_patients=40, seed=3)
    items = cohort.tables["questionnaire_items"]
    ours = score_questionnaires(items).measures.select("episode_id", "assessed_on", "measure", "value")
    m = redcap_mapping().filter(pl.col("table") == "questionnaire_items", pl.col("keys") != "")
    keys = m.with_columns(
        pl.col("keys").str.extract(r"instrument=([a-z_]+)").alias("instrument"),
        pl.col("keys").str.extract(r"item=([a-z0-9_]+)").alias("item"),
    ).select("instrument", "item", "field_name")
    wide = items.join(keys, on=["instrument", "item"]).pivot(
        "field_name", index=["episode_id", "assessed_on", "instrument"], values="response"
    )
    d = redcap_dictionary().filter(pl.col("Field Type") == "calc")
    calc = dict(zip(d["Variable / Field Name"], d["Choices, Calculations, OR Slider Labels"], strict=True))
    rows = wide.to_dicts()
    got = pl.DataFrame(
        [
            (
                r["episode_id"],
                r["assessed_on"],
                r["instrument"],
                float(
                    _redcap_calc(
                        calc[f"{r['instrument']}_score"], {k: v for k, v in r.items() if v is not None}
                    )
                ),
            )
            for r in rows
        ],
        schema={"episode_id": pl.String, "assessed_on": pl.Date, "measure": pl.String, "calc": pl.Float64},
        orient="row",
    )
    both = got.join(ours, on=["episode_id", "assessed_on", "measure"], how="full", coalesce=True)
    assert both.height == got.height == ours.height and set(both["measure"]) == {"odi", "sbi", "psfs"}
    # REDCap rounds to 2 decimals; the toolkit keeps full precision
    assert (both["calc"] - both["value"]).abs().max() <= 0.005
    # the calcs agree with the stored measures of the cohort exactly (the cohort rounds like REDCap)
    stored = cohort.tables["measures"].join(got, on=["episode_id", "assessed_on", "measure"])
    assert stored.height == got.height
    assert (stored["calc"] - stored["value"]).abs().max() < 1e-9


def test_odi_calc_refuses_two_missing_sections_and_scores_the_modified_version() -> None:
    d = redcap_dictionary().filter(pl.col("Variable / Field Name") == "odi_score")
    calc = d["Choices, Calculations, OR Slider Labels"][0]
    nine = {
        f"odi_{s}": 2.0 for s in ("pain", "care", "lifting", "walking", "sitting", "standing", "sleeping")
    }
    nine |= {"odi_social_life": 3.0, "odi_travelling": 4.0}
    assert _redcap_calc(calc, nine) == round((14 + 7) / 45 * 100, 2)  # one section missing: 21/45
    eight = {k: v for k, v in nine.items() if k != "odi_travelling"}
    assert _redcap_calc(calc, eight) == ""
    modified = nine | {"odi_employment": 5.0}
    assert _redcap_calc(calc, modified) == 52.0  # 26/50


def test_item_labels_are_the_data_guides_neutral_topics() -> None:
    from sciatica_outcomes.schemas import redcap as module  # noqa: PLC0415
    from sciatica_outcomes.scoring.questionnaire_text import ITEM_TOPICS  # noqa: PLC0415

    assert module.ITEM_TOPICS is ITEM_TOPICS  # one mapping: the data guide's texts are the dictionary's
    m = redcap_mapping().filter(pl.col("table") == "questionnaire_items", pl.col("keys") != "")
    label = dict(
        zip(redcap_dictionary()["Variable / Field Name"], redcap_dictionary()["Field Label"], strict=True)
    )
    for field, keys in m.select("field_name", "keys").iter_rows():
        instrument, item = (part.split("=")[1] for part in keys.split("; "))
        if instrument in ITEM_TOPICS:
            assert label[field].endswith(ITEM_TOPICS[instrument][item]), field
