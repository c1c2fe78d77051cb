"""The REDCap project a clinic enters its data in: data dictionary, events, designations, mapping.

Design
------
The project is **longitudinal**: one record per episode (``record_id`` = ``episode_id``) and one event per
scheduled visit (baseline, weeks 2, 4, 6, 8, 10, 12, 26 and 52, after the synthetic cohort's schedule and the
analysis windows of :class:`~sciatica_outcomes.config.ClinicalConfig`), plus an ``enrolment`` event for the
episode form and a ``sessions`` event for the session log. Events rather than a visit field because that is
how REDCap schedules visits (the record home page shows one column per visit, each questionnaire once per
visit, no repeating visit instruments); the only repeating instrument is the session log, which REDCap users
expect to repeat. Every visit instrument has its own date field, so a questionnaire filled in on another
day than the walking test keeps its own date.

Instruments: ``episode``; ``pain_tolerance`` (NPRS leg and back, walking and sitting tolerance; the stopped
reason and the cap are shown through branching logic only once a test time is entered); ``odi`` (10 sections
as a radio matrix, version, calculated score); ``rmdq`` (24 items, calculated score); ``sciatica`` (SBI and
SFI items, calculated totals); ``psfs`` (up to 5 activities, calculated mean); ``global_change`` (GRC, PGIC,
satisfaction); ``promis`` (T-scores as reported by the scoring service); ``eq5d`` (index and VAS as given);
``work`` (one ``work`` row and the Work Ability Score, at every visit so that a return to work is seen when it
happens: employment and work status, hours and sick leave shown only in paid work, the return-to-work date
only at full or modified duties, WPAI:SHP questions 2-5 only after a yes to question 1, the branching asking
exactly what the ingest rules of ``schemas.work`` allow); ``red_flags`` (the explicit screen, with an
urgent-referral banner shown when any flag is ticked); ``session_log`` (session fields and the exercise
matrix: one fixed row per exercise of ``schemas/data/exercises.csv`` with sets, reps, hold, load, band, pain
and modified columns, laid out with REDCap field embedding).

Choices are plain labels with the canonical codes behind them (``below_knee, Below the knee``), so a raw
export needs no recoding and a label export is recoded through the dictionary. ODI and RMDQ wording is
licensed: item labels are neutral paraphrases naming the section or the content of the item, and the ODI
anchors refer to the statement numbers of the licensed form (Fairbank & Pynsent, Spine 2000;25:2940; Roland &
Morris, Spine 1983;8:141).

The mapping (``mapping.csv``: ``field_name, form_name, table, column, keys, values``) says which field feeds
which canonical column. ``keys`` holds the constant columns of a long table's row (``measure=odi``,
``instrument=odi; item=lifting``, ``exercise=glute_bridge``); fields of one form with the same keys make one
canonical row, fields without keys (the date, the version, ``record_id``) are shared by every row of their
form. ``values`` translates REDCap codes that cannot spell a canonical value (``v2_1a=2.1a``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

import polars as pl

from sciatica_outcomes.schemas.catalogs import exercise_catalog
from sciatica_outcomes.schemas.item_topics import ITEM_TOPICS
from sciatica_outcomes.schemas.vocabulary import (
    AT_WORK_STATUSES,
    BANDS,
    MODIFIED_ODI_SECTIONS,
    ODI_SECTIONS,
    PAID_WORK_STATUSES,
    RMDQ_ITEMS,
    SCIATICA_ITEMS,
)

__all__ = [
    "DICTIONARY_COLUMNS",
    "EVENTS",
    "EXERCISE_FIELD_COLUMNS",
    "RECORD_ID",
    "REDCAP_SYSTEM_COLUMNS",
    "RedcapField",
    "event_designations",
    "redcap_dictionary",
    "redcap_events",
    "redcap_fields",
    "redcap_mapping",
    "repeating_instruments",
]

#: Column headers of a REDCap data dictionary, in REDCap's order.
DICTIONARY_COLUMNS: tuple[str, ...] = (
    "Variable / Field Name",
    "Form Name",
    "Section Header",
    "Field Type",
    "Field Label",
    "Choices, Calculations, OR Slider Labels",
    "Field Note",
    "Text Validation Type OR Show Slider Number",
    "Text Validation Min",
    "Text Validation Max",
    "Identifier?",
    "Branching Logic (Show field only if...)",
    "Required Field?",
    "Custom Alignment",
    "Question Number (surveys only)",
    "Matrix Group Name",
    "Matrix Ranking?",
    "Field Annotation",
)

#: Columns REDCap adds to raw exports (before the project's fields), in REDCap's order.
REDCAP_SYSTEM_COLUMNS: tuple[str, ...] = (
    "redcap_event_name",
    "redcap_repeat_instrument",
    "redcap_repeat_instance",
    "redcap_data_access_group",
    "redcap_survey_identifier",
)

RECORD_ID = "record_id"

#: Events of the project: ``(name, label, day offset)``; the unique event name is ``{name}_arm_1``.
EVENTS: tuple[tuple[str, str, int], ...] = (
    ("enrolment", "Enrolment", 0),
    ("baseline", "Baseline", 0),
    ("week_2", "Week 2", 14),
    ("week_4", "Week 4", 28),
    ("week_6", "Week 6", 42),
    ("week_8", "Week 8", 56),
    ("week_10", "Week 10", 70),
    ("week_12", "Week 12", 84),
    ("week_26", "Week 26", 182),
    ("week_52", "Week 52", 364),
    ("sessions", "Sessions", 0),
)
_VISITS = tuple(e[0] for e in EVENTS if e[0] not in ("enrolment", "sessions"))
_QUESTIONNAIRE_VISITS = ("baseline", "week_6", "week_12", "week_26", "week_52")

#: Forms and the events they are designated to (``sessions`` holds the repeating session log).
_DESIGNATIONS: dict[str, tuple[str, ...]] = {
    "episode": ("enrolment",),
    "pain_tolerance": _VISITS,
    "odi": _QUESTIONNAIRE_VISITS,
    "rmdq": _QUESTIONNAIRE_VISITS,
    "sciatica": _QUESTIONNAIRE_VISITS,
    "psfs": _QUESTIONNAIRE_VISITS,
    "global_change": ("week_6", "week_12", "week_26", "week_52"),
    "promis": _QUESTIONNAIRE_VISITS,
    "eq5d": _QUESTIONNAIRE_VISITS,
    "work": _VISITS,
    "red_flags": _VISITS,
    "session_log": ("sessions",),
}
_REPEATING = {"session_log": ("sessions", "[sess_date] [sess_status]")}

#: Columns of the exercise matrix: ``(suffix, canonical column, label, field type, validation, min, max)``.
EXERCISE_FIELD_COLUMNS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("sets", "sets", "sets", "text", "integer", "1", "20"),
    ("reps", "reps", "reps per set", "text", "integer", "1", "200"),
    ("hold", "hold_s", "hold (s)", "text", "integer", "1", "600"),
    ("load", "load_kg", "load (kg, empty = bodyweight)", "text", "number", "0", "300"),
    ("band", "band", "band colour", "dropdown", "", "", ""),
    ("pain", "pain_during", "pain during (0-10)", "text", "integer", "0", "10"),
    ("mod", "modified", "modified for symptoms", "yesno", "", "", ""),
)

#: Short field-name stem of every exercise of the catalog (field names stay within 26 characters).
_EXERCISE_STEM: dict[str, str] = {
    "pelvic_tilt": "ptilt",
    "abdominal_bracing": "brace",
    "bird_dog": "bdog",
    "bird_dog_reach": "bdogreach",
    "glute_bridge": "bridge",
    "single_leg_bridge": "slbridge",
    "banded_hip_thrust": "hipthrust",
    "kb_deadlift": "kbdeadlift",
    "clamshell": "clam",
    "lateral_band_walk": "bandwalk",
    "nordic_regression": "nordic",
    "hamstring_stretch": "hamstretch",
    "neural_glide_slider": "slider",
    "neural_glide_tensioner": "tensioner",
}


@dataclass(frozen=True)
class RedcapField:
    """One field of the project and the canonical columns it feeds.

    Attributes
    ----------
    name, form, ftype, label : str
        Variable name, form (instrument) name, REDCap field type and field label.
    choices, note, validation, vmin, vmax, branching, header, matrix, annotation : str
        The data-dictionary columns of the same meaning (empty when unused).
    required : bool
        ``Required Field? = y``.
    targets : tuple of (table, column, keys)
        Canonical columns the field feeds; ``keys`` is empty for a shared field.
    values : str
        Translation of REDCap codes to canonical values (``code=value; ...``).
    """

    name: str
    form: str
    ftype: str
    label: str
    choices: str = ""
    note: str = ""
    validation: str = ""
    vmin: str = ""
    vmax: str = ""
    branching: str = ""
    required: bool = False
    header: str = ""
    matrix: str = ""
    annotation: str = ""
    targets: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)
    values: str = ""


def _choices(pairs: list[tuple[str, str]]) -> str:
    return " | ".join(f"{code}, {label}" for code, label in pairs)


def _answered(fields: list[str]) -> str:
    """REDCap calc of the number of answered fields: ``(if([a] <> '', 1, 0) + ...)``."""
    return "(" + " + ".join(f"if({x} <> '', 1, 0)" for x in fields) + ")"


def _scale(lo: int, hi: int, low_label: str, high_label: str) -> str:
    """Choices ``lo..hi`` with the anchors on the end points (``0, 0 - No pain``)."""
    labels = {lo: f"{lo} - {low_label}", hi: f"{hi} - {high_label}"}
    return _choices([(str(v), labels.get(v, str(v))) for v in range(lo, hi + 1)])


_NPRS = _scale(0, 10, "No pain", "Worst pain imaginable")
_ODI_CHOICES = _scale(0, 5, "first statement (least limitation)", "last statement (most limitation)")
_SBI_CHOICES = _scale(0, 6, "Not bothersome", "Extremely bothersome")
_SFI_CHOICES = _scale(0, 6, "Never", "Always")
_PSFS_CHOICES = _scale(0, 10, "Unable to perform", "Able to perform at the level before the problem")
_YES_NO_RADIO = _choices([("1", "Yes, applies today"), ("0", "No")])
_BANDS = _choices([(b, b.capitalize()) for b in BANDS])

_ODI_STEM = {"pain_intensity": "pain", "personal_care": "care", "employment_homemaking": "employment"}
_SCIATICA_STEM = {"leg_pain": "leg", "numbness_tingling": "numb", "weakness": "weak", "pain_sitting": "sit"}

_BOTH = ("measures", "questionnaire_items")
_SESSION_DONE = "[sess_status] = 'completed'"


def _date(form: str, name: str, label: str, tables: tuple[str, ...], column: str) -> RedcapField:
    return RedcapField(
        name,
        form,
        "text",
        label,
        validation="date_ymd",
        required=True,
        note="YYYY-MM-DD",
        targets=tuple((t, column, "") for t in tables),
    )


def _episode() -> list[RedcapField]:
    f = "episode"
    ep = "episodes"
    return [
        RedcapField(
            RECORD_ID,
            f,
            "text",
            "Episode code (pseudonymous)",
            note="A code that does not identify the patient, e.g. EP000123",
            required=True,
            targets=tuple(
                (t, "episode_id", "")
                for t in ("episodes", "sessions", "measures", "questionnaire_items", "symptom_checks", "work")
            ),
        ),
        RedcapField(
            "ep_patient_id",
            f,
            "text",
            "Patient code (pseudonymous)",
            note="The same code for every episode of one patient; never a name or record number",
            required=True,
            targets=((ep, "patient_id", ""),),
        ),
        RedcapField(
            "ep_clinic_id", f, "text", "Clinic code", required=True, targets=((ep, "clinic_id", ""),),
        ),
        RedcapField("ep_therapist_id", f, "text", "Therapist code", targets=((ep, "therapist_id", ""),)),
        RedcapField(
            "ep_program", f, "text", "Program name or version", note="e.g. strength_v1",
            targets=((ep, "program", ""),),
        ),
        RedcapField(
            "ep_start_date", f, "text", "First day of the program", validation="date_ymd", required=True,
            note="YYYY-MM-DD", targets=((ep, "start_date", ""),),
        ),
        RedcapField(
            "ep_age", f, "text", "Age at the start (years)", validation="integer", vmin="16", vmax="89",
            required=True, note="Enter 89 for 89 or older", targets=((ep, "age_at_start", ""),),
        ),
        RedcapField(
            "ep_sex", f, "radio", "Sex",
            choices=_choices([("F", "Female"), ("M", "Male"), ("X", "Other or not stated")]),
            required=True, targets=((ep, "sex", ""),),
        ),
        RedcapField(
            "ep_symptom_weeks", f, "text", "Weeks with symptoms before the program", validation="integer",
            vmin="0", vmax="5200", targets=((ep, "symptom_duration_weeks", ""),),
        ),
        RedcapField(
            "ep_side", f, "radio", "Side of the leg symptoms",
            choices=_choices([("left", "Left"), ("right", "Right"), ("bilateral", "Both legs")]),
            targets=((ep, "affected_side", ""),),
        ),
        RedcapField(
            "ep_sessions_per_week", f, "text", "Prescribed supervised sessions per week",
            validation="integer", vmin="1", vmax="7", note="Usually 2 or 3",
            targets=((ep, "prescribed_sessions_per_week", ""),),
        ),
        RedcapField(
            "ep_end_date", f, "text", "Last day of the program", validation="date_ymd",
            note="Leave empty while the episode is ongoing", header="Discharge",
            targets=((ep, "end_date", ""),),
        ),
        RedcapField(
            "ep_end_reason", f, "dropdown", "Why the episode ended",
            choices=_choices(
                [
                    ("completed", "Completed the program"),
                    ("dropped_out", "Dropped out"),
                    ("referred", "Referred on"),
                    ("surgery", "Had surgery"),
                    ("injection", "Had an injection"),
                    ("other", "Other reason"),
                ]
            ),
            branching="[ep_end_date] <> ''", targets=((ep, "end_reason", ""),),
        ),
    ]  # fmt: skip


def _tolerance(test: str, measure: str, what: str, cap_note: str) -> list[RedcapField]:
    f = "pain_tolerance"
    shown = f"[t_{test}_min] <> ''"
    return [
        RedcapField(
            f"t_{test}_min", f, "text", f"{what} tolerance (minutes)", validation="number_1dp", vmin="0",
            vmax="1440", note="Time until the test stopped; leave empty if the test was not done",
            targets=(("measures", "value", f"measure={measure}"),),
        ),
        RedcapField(
            f"t_{test}_stop", f, "radio", f"{what} test: why it stopped",
            choices=_choices(
                [("symptom", "Leg or back symptoms"), ("fatigue", "Fatigue"), ("cap", "Reached the time cap")]
            ),
            branching=shown, targets=(("measures", "stopped_reason", f"measure={measure}"),),
        ),
        RedcapField(
            f"t_{test}_cap", f, "text", f"{what} test: time cap (minutes)", validation="number", vmin="0",
            vmax="1440", note=cap_note, branching=shown,
            targets=(("measures", "cap_min", f"measure={measure}"),),
        ),
    ]  # fmt: skip


def _pain_tolerance() -> list[RedcapField]:
    f = "pain_tolerance"
    out = [
        _date(f, "t_date", "Date of the pain ratings and tolerance tests", ("measures",), "assessed_on"),
        RedcapField(
            "t_nprs_leg", f, "radio", "Leg pain, average over the last week (0-10)", choices=_NPRS,
            header="Pain (NPRS 0-10; Ostelo et al. Spine 2008;33:90)",
            targets=(("measures", "value", "measure=nprs_leg"),),
        ),
        RedcapField(
            "t_nprs_back", f, "radio", "Back pain, average over the last week (0-10)", choices=_NPRS,
            targets=(("measures", "value", "measure=nprs_back"),),
        ),
    ]  # fmt: skip
    walk = _tolerance(
        "walk", "walk_tolerance_min", "Walking", "30 for the 30-minute protocol (Rainville 2012)"
    )
    sit = _tolerance("sit", "sit_tolerance_min", "Sitting", "The clinic's cap, e.g. 90")
    walk[0] = replace(
        walk[0], header="Self-paced walking test (level ground, own speed, stop at symptom limit)"
    )
    sit[0] = replace(sit[0], header="Timed sitting test (stop at symptom limit)")
    return out + walk + sit


def _odi_number(section: str) -> int:
    """Position of an ODI section on its form (the modified ODI's employment section is number 8)."""
    order = ODI_SECTIONS if section in ODI_SECTIONS else MODIFIED_ODI_SECTIONS
    return order.index(section) + 1


def _odi() -> list[RedcapField]:
    f = "odi"
    out = [
        _date(f, "odi_date", "Date the ODI was completed", _BOTH, "assessed_on"),
        RedcapField(
            "odi_version", f, "dropdown", "ODI version",
            choices=_choices(
                [("v2_1a", "ODI 2.1a"), ("v2_0", "ODI 2.0"), ("v1_0", "ODI 1.0"),
                 ("modified", "Modified ODI (Fritz & Irrgang 2001)")]
            ),
            required=True, annotation="@DEFAULT='v2_1a'",
            values="v2_1a=2.1a; v2_0=2.0; v1_0=1.0; modified=modified",
            targets=tuple((t, "instrument_version", "") for t in _BOTH),
        ),
    ]  # fmt: skip
    sections = list(dict.fromkeys(ODI_SECTIONS + MODIFIED_ODI_SECTIONS))
    sections.insert(sections.index("social_life"), sections.pop(sections.index("employment_homemaking")))
    for i, s in enumerate(sections):
        branching = ""
        if s == "sex_life":
            branching = "[odi_version] <> 'modified'"
        elif s == "employment_homemaking":
            branching = "[odi_version] = 'modified'"
        out.append(
            RedcapField(
                f"odi_{_ODI_STEM.get(s, s)}",
                f,
                "radio",
                f"ODI section {_odi_number(s)}: {ITEM_TOPICS['odi'][s]}",
                choices=_ODI_CHOICES,
                note="Number of the statement ticked on the licensed form (0 = first, 5 = last); "
                "if two are ticked, enter the higher",
                header=(
                    "Oswestry Disability Index: enter the statement number ticked in each section "
                    "(Fairbank & Pynsent, Spine 2000;25:2940; wording licensed via Mapi Research Trust)"
                )
                if i == 0
                else "",
                matrix="odi_sections",
                branching=branching,
                targets=(("questionnaire_items", "response", f"instrument=odi; item={s}"),),
            )
        )
    items = [f"[odi_{_ODI_STEM.get(s, s)}]" for s in sections]
    answered = _answered(items)
    out.append(
        RedcapField(
            "odi_score",
            f,
            "calc",
            "ODI score (%)",
            choices=f"if({answered} >= 9, round(sum({', '.join(items)}) / (5 * {answered}) * 100, 2), '')",
            note="Sum / (5 x sections answered) x 100; empty when more than one section is missing",
            targets=(("measures", "value", "measure=odi"),),
        )
    )
    return out


def _rmdq() -> list[RedcapField]:
    f = "rmdq"
    out = [
        _date(
            f, "rmdq_date", "Date the RMDQ was completed", ("measures", "questionnaire_items"), "assessed_on"
        )
    ]
    for item in RMDQ_ITEMS:
        text = ITEM_TOPICS["rmdq"][item]
        out.append(
            RedcapField(
                f"rmdq_{item}",
                f,
                "radio",
                f"RMDQ item {item}: {text}",
                choices=_YES_NO_RADIO,
                header=(
                    "Roland-Morris Disability Questionnaire (24 items; Roland & Morris, Spine 1983;8:141): "
                    "Yes for each statement the patient ticked today"
                )
                if item == "1"
                else "",
                matrix="rmdq_items",
                targets=(("questionnaire_items", "response", f"instrument=rmdq; item={item}"),),
            )
        )
    items = ", ".join(f"[rmdq_{i}]" for i in RMDQ_ITEMS)
    out.append(
        RedcapField(
            "rmdq_score", f, "calc", "RMDQ score (0-24)", choices=f"sum({items})",
            note="Number of statements ticked", targets=(("measures", "value", "measure=rmdq"),),
        )
    )  # fmt: skip
    return out


def _sciatica() -> list[RedcapField]:
    f = "sciatica"
    out = [
        _date(f, "sci_date", "Date the sciatica indexes were completed", ("measures", "questionnaire_items"),
              "assessed_on"),
    ]  # fmt: skip
    for index, choices, what in (
        ("sbi", _SBI_CHOICES, "How bothersome in the last week"),
        ("sfi", _SFI_CHOICES, "How often in the last week"),
    ):
        for i, item in enumerate(SCIATICA_ITEMS):
            out.append(
                RedcapField(
                    f"{index}_{_SCIATICA_STEM[item]}",
                    f,
                    "radio",
                    f"{index.upper()}: {ITEM_TOPICS[index][item]}",
                    choices=choices,
                    header=(
                        f"Sciatica {'Bothersomeness' if index == 'sbi' else 'Frequency'} Index: {what} "
                        "(Patrick et al., Spine 1995;20:1899)"
                    )
                    if i == 0
                    else "",
                    matrix=f"{index}_items",
                    targets=(("questionnaire_items", "response", f"instrument={index}; item={item}"),),
                )
            )
        names = [f"[{index}_{_SCIATICA_STEM[i]}]" for i in SCIATICA_ITEMS]
        fields = ", ".join(names)
        out.append(
            RedcapField(
                f"{index}_score", f, "calc", f"{index.upper()} total (0-24)",
                choices=f"if({_answered(names)} = 4, sum({fields}), '')",
                note="Sum of the four items; empty unless all four are answered",
                targets=(("measures", "value", f"measure={index}"),),
            )
        )  # fmt: skip
    return out


def _psfs() -> list[RedcapField]:
    f = "psfs"
    out = [
        _date(
            f, "psfs_date", "Date the PSFS was completed", ("measures", "questionnaire_items"), "assessed_on"
        )
    ]
    for k in range(1, 6):
        out.append(
            RedcapField(
                f"psfs_act{k}",
                f,
                "radio",
                f"PSFS activity {k}",
                choices=_PSFS_CHOICES,
                header=(
                    "Patient-Specific Functional Scale (Stratford et al., Physiother Can 1995;47:258): the "
                    "patient names 3-5 activities at baseline and rates the same ones at every visit"
                )
                if k == 1
                else "",
                matrix="psfs_activities",
                note="Keep the activity names on the patient's PSFS sheet",
                targets=(("questionnaire_items", "response", f"instrument=psfs; item=activity_{k}"),),
            )
        )
    names = [f"[psfs_act{k}]" for k in range(1, 6)]
    fields = ", ".join(names)
    out.append(
        RedcapField(
            "psfs_score", f, "calc", "PSFS score (mean, 0-10)",
            choices=f"if({_answered(names)} >= 1, round(mean({fields}), 2), '')",
            note="Mean of the activities rated; higher is better",
            targets=(("measures", "value", "measure=psfs"),),
        )
    )  # fmt: skip
    return out


def _global_change() -> list[RedcapField]:
    f = "global_change"
    anchors = {-7: "A very great deal worse", 0: "About the same", 7: "A very great deal better"}
    return [
        _date(f, "grc_date", "Date of the global rating of change", ("measures",), "assessed_on"),
        RedcapField(
            "grc", f, "radio", "Global rating of change since the start of the program",
            choices=_choices([(str(v), f"{v:+d} - {anchors[v]}" if v in anchors else f"{v:+d}")
                              for v in range(-7, 8)]),
            note="-7 to +7 (Kamper et al., J Man Manip Ther 2009;17:163); higher is better",
            targets=(("measures", "value", "measure=grc"),),
        ),
        RedcapField(
            "pgic", f, "radio", "Patient's global impression of change since the start of the program",
            choices=_scale(1, 7, "Completely recovered", "Worse than ever"),
            note="1 to 7, lower is better; success = 1 or 2 (completely recovered or much better)",
            targets=(("measures", "value", "measure=pgic"),),
        ),
        RedcapField(
            "satisfaction", f, "radio", "Satisfaction with the treatment",
            choices=_scale(1, 5, "Very dissatisfied", "Very satisfied"),
            note="1 to 5, higher is better", targets=(("measures", "value", "measure=satisfaction"),),
        ),
    ]  # fmt: skip


#: Employment statuses that are paid work, as REDCap branching logic on the employment field.
_PAID_WORK = " or ".join(f"[work_employment] = '{s}'" for s in PAID_WORK_STATUSES)
_AT_WORK = " or ".join(f"[work_status] = '{s}'" for s in AT_WORK_STATUSES)
_WPAI_YES = "[wpai_q1] = '1'"


def _work() -> list[RedcapField]:
    """The work instrument: employment and work status, hours, sick leave, return to work, WAS, WPAI:SHP.

    One form, because its fields are one row of ``work`` (plus the WAS ``measures`` row); the branching
    logic asks only what applies (hours and sick leave in paid work, WPAI questions 2-5 after a "yes" to
    question 1, the return-to-work date once back at work), which is what the ingest rules of ``work``
    require of the data.
    """
    # the data guide's labels, so a code reads the same in REDCap as in the guide (imported here:
    # schemas.documentation imports the Frictionless export, which imports this module)
    from sciatica_outcomes.schemas.documentation import value_labels  # noqa: PLC0415

    f = "work"
    w = "work"
    hours = "Hours per week; decimals allowed (37.5)"
    wpai_hours = "Hours in the last 7 days, not counting today"
    return [
        _date(f, "work_date", "Date of the work assessment", ("work", "measures"), "assessed_on"),
        RedcapField(
            "work_employment", f, "radio", "Employment status",
            choices=_choices(list(value_labels(w, "employment_status").items())), required=True,
            header="Work (ICHOM low back pain standard set, Clement et al. 2015; NORspine sick-leave status)",
            note="At enrolment on the baseline visit; the current status at later visits",
            targets=((w, "employment_status", ""),),
        ),
        RedcapField(
            "work_status", f, "radio", "Current work status",
            choices=_choices(list(value_labels(w, "work_status").items())), required=True,
            note="Not in paid work exactly when the employment status is not employed or self-employed",
            targets=((w, "work_status", ""),),
        ),
        RedcapField(
            "work_hours_contracted", f, "text", "Contracted (or usual) working hours per week",
            validation="number", vmin="0", vmax="100", note=f"{hours}; more than 0", branching=_PAID_WORK,
            targets=((w, "hours_contracted", ""),),
        ),
        RedcapField(
            "work_hours_worked", f, "text", "Hours actually worked per week now", validation="number",
            vmin="0", vmax="100", note=f"{hours}; at most the contracted hours", branching=_PAID_WORK,
            targets=((w, "hours_worked", ""),),
        ),
        RedcapField(
            "work_sick_days", f, "text", "Days on sick leave because of back or leg pain, last 4 weeks",
            validation="integer", vmin="0", vmax="28", branching=_PAID_WORK,
            targets=((w, "sick_leave_days_4wk", ""),),
        ),
        RedcapField(
            "work_return_date", f, "text", "Day back at full or modified duties after being off work",
            validation="date_ymd", note="YYYY-MM-DD; leave empty if the patient was not off work",
            branching=_AT_WORK, targets=((w, "return_to_work_date", ""),),
        ),
        RedcapField(
            "was", f, "radio", "Work Ability Score: current work ability compared with the lifetime best",
            choices=_scale(0, 10, "Cannot work at all", "Work ability at its lifetime best"),
            header="Work Ability Score, the first item of the Work Ability Index (Ilmarinen, Occup Med "
            "2007;57:160; Ahlstrom et al. 2010)",
            note="0 to 10, higher is better", targets=(("measures", "value", "measure=was"),),
        ),
        RedcapField(
            "wpai_q1", f, "yesno", "WPAI:SHP 1: currently employed (working for pay)",
            header="Work Productivity and Activity Impairment, specific health problem (WPAI:SHP; Reilly et "
            "al., PharmacoEconomics 1993;4:353): the last 7 days, not counting today",
            targets=((w, "wpai_q1_employed", ""),),
        ),
        RedcapField(
            "wpai_q2", f, "text", "WPAI:SHP 2: work hours missed because of the back or leg problem",
            validation="number", vmin="0", vmax="168", note=wpai_hours, branching=_WPAI_YES,
            targets=((w, "wpai_q2_hours_missed_health", ""),),
        ),
        RedcapField(
            "wpai_q3", f, "text", "WPAI:SHP 3: work hours missed for any other reason",
            validation="number", vmin="0", vmax="168", note=wpai_hours, branching=_WPAI_YES,
            targets=((w, "wpai_q3_hours_missed_other", ""),),
        ),
        RedcapField(
            "wpai_q4", f, "text", "WPAI:SHP 4: hours actually worked", validation="number", vmin="0",
            vmax="168", note=f"{wpai_hours}; questions 2 + 3 + 4 at most 168", branching=_WPAI_YES,
            targets=((w, "wpai_q4_hours_worked", ""),),
        ),
        RedcapField(
            "wpai_q5", f, "radio", "WPAI:SHP 5: how much the problem affected productivity while working",
            choices=_scale(0, 10, "No effect on work", "Completely prevented working"),
            branching=_WPAI_YES, targets=((w, "wpai_q5_work_impairment", ""),),
        ),
        RedcapField(
            "wpai_q6", f, "radio", "WPAI:SHP 6: how much the problem affected regular daily activities",
            choices=_scale(0, 10, "No effect on daily activities", "Completely prevented daily activities"),
            targets=((w, "wpai_q6_activity_impairment", ""),),
        ),
    ]  # fmt: skip


def _eq5d() -> list[RedcapField]:
    f = "eq5d"
    return [
        _date(f, "eq5d_date", "Date the EQ-5D was completed", ("measures",), "assessed_on"),
        RedcapField(
            "eq5d_index", f, "text", "EQ-5D index value", validation="number", vmin="-1", vmax="1",
            header="EQ-5D (EuroQol Group; licensed): enter the index from the clinic's licensed value set "
            "and the VAS as scored; the toolkit ships no value set",
            note="As given by the clinic's value set (e.g. -0.148 to 0.949); 1 = full health",
            targets=(("measures", "value", "measure=eq5d_index"),),
        ),
        RedcapField(
            "eq5d_vas", f, "text", "EQ VAS: health today (0-100)", validation="integer", vmin="0",
            vmax="100", note="0 worst, 100 best health the patient can imagine",
            targets=(("measures", "value", "measure=eq5d_vas"),),
        ),
    ]  # fmt: skip


def _promis() -> list[RedcapField]:
    f = "promis"
    return [
        _date(f, "promis_date", "Date of the PROMIS short forms", ("measures",), "assessed_on"),
        RedcapField(
            "promis_pf", f, "text", "PROMIS Physical Function T-score", validation="number_1dp", vmin="10",
            vmax="90", note="T-score from the HealthMeasures scoring service or manual; higher is better",
            targets=(("measures", "value", "measure=promis_pf"),),
        ),
        RedcapField(
            "promis_pi", f, "text", "PROMIS Pain Interference T-score", validation="number_1dp", vmin="30",
            vmax="90", note="T-score from the HealthMeasures scoring service or manual; higher is worse",
            targets=(("measures", "value", "measure=promis_pi"),),
        ),
    ]  # fmt: skip


_RED_FLAGS: tuple[tuple[str, str, str], ...] = (
    (
        "rf_saddle",
        "saddle_numbness",
        "New numbness in the saddle area (between the legs, buttocks, genitals)",
    ),
    ("rf_bladder_bowel", "bladder_bowel_change", "New change in bladder or bowel control"),
    ("rf_weakness", "progressive_weakness", "Leg weakness that is getting worse (e.g. foot drop)"),
    ("rf_bilateral", "bilateral_symptoms", "Symptoms in both legs (new or alternating)"),
    ("rf_new_numbness", "new_numbness", "New or spreading numbness in the leg or foot"),
)


def _red_flags() -> list[RedcapField]:
    f = "red_flags"
    st = "symptom_checks"
    out = [
        RedcapField(
            "rf_date", f, "text", "Date of the red-flag screen", validation="date_ymd", required=True,
            note="YYYY-MM-DD", targets=((st, "checked_on", ""),),
        )
    ]  # fmt: skip
    for i, (name, column, label) in enumerate(_RED_FLAGS):
        out.append(
            RedcapField(
                name,
                f,
                "yesno",
                label,
                required=True,
                header="Ask every question explicitly: patients may not volunteer these (NICE CKS sciatica)"
                if i == 0
                else "",
                targets=((st, column, ""),),
            )
        )
    any_flag = " or ".join(f"[{n}] = '1'" for n, _, _ in _RED_FLAGS)
    out.append(
        RedcapField(
            "rf_alert",
            f,
            "descriptive",
            "A red flag is ticked: stop the session and refer the patient today "
            "(suspected cauda equina: emergency department; BMJ Best Practice).",
            branching=any_flag,
        )
    )
    out.append(
        RedcapField(
            "rf_action", f, "radio", "Action taken after the screen",
            choices=_choices([("none", "None needed"), ("referred_urgent", "Referred urgently (same day)"),
                              ("referred_routine", "Referred routinely")]),
            targets=((st, "action_taken", ""),),
        )
    )  # fmt: skip
    return out


def _exercise_table(stems: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{c[2]}</th>" for c in EXERCISE_FIELD_COLUMNS)
    rows = "".join(
        f"<tr><td>{name}</td>"
        + "".join(f"<td>{{x_{stem}_{c[0]}}}</td>" for c in EXERCISE_FIELD_COLUMNS)
        + "</tr>"
        for stem, name in stems
    )
    return (
        "<table class='exercise-matrix'><tr><th>Exercise (leave the row empty if not done)</th>"
        f"{head}</tr>{rows}</table>"
    )


def _session_log() -> list[RedcapField]:
    f = "session_log"
    s = "sessions"
    out = [
        RedcapField(
            "sess_id", f, "text", "Session code", required=True,
            note="Unique in the project: filled in as the episode code and the session number (EP000123-S7)",
            annotation="@DEFAULT='[record_id]-S[current-instance]'",
            targets=((s, "session_id", ""), ("session_exercises", "session_id", "")),
        ),
        RedcapField(
            "sess_date", f, "text", "Session date", validation="date_ymd", required=True, note="YYYY-MM-DD",
            targets=((s, "session_date", ""),),
        ),
        RedcapField(
            "sess_status", f, "radio", "Session status", required=True,
            choices=_choices([("completed", "Attended"), ("missed", "Missed (did not attend)"),
                              ("cancelled", "Cancelled in advance")]),
            targets=((s, "status", ""),),
        ),
        RedcapField(
            "sess_duration", f, "text", "Session length (minutes)", validation="integer", vmin="1",
            vmax="240", branching=_SESSION_DONE, targets=((s, "duration_min", ""),),
        ),
        RedcapField(
            "sess_glides", f, "yesno", "Neural glides in the warm-up", branching=_SESSION_DONE,
            targets=((s, "warmup_neural_glides", ""),),
        ),
        RedcapField(
            "sess_pain_before", f, "text", "Leg pain before the session (0-10)", validation="integer",
            vmin="0", vmax="10", branching=_SESSION_DONE, targets=((s, "pain_before", ""),),
        ),
        RedcapField(
            "sess_pain_after", f, "text", "Leg pain after the session (0-10)", validation="integer",
            vmin="0", vmax="10", branching=_SESSION_DONE, targets=((s, "pain_after", ""),),
        ),
        RedcapField(
            "sess_pain_next_day", f, "text", "Leg pain the next morning (0-10)", validation="integer",
            vmin="0", vmax="10", branching=_SESSION_DONE,
            note="Ask at the next contact; pain should settle by the next morning (Thomee 1997)",
            targets=((s, "pain_next_day", ""),),
        ),
        RedcapField(
            "sess_rpe", f, "text", "Rating of perceived exertion (0-10)", validation="integer", vmin="0",
            vmax="10", branching=_SESSION_DONE, targets=((s, "rpe", ""),),
        ),
        RedcapField(
            "sess_extent", f, "radio", "Most distant point of the symptoms today",
            choices=_choices([("back_only", "Back only"), ("buttock", "Buttock"), ("thigh", "Thigh"),
                              ("below_knee", "Below the knee"), ("foot", "Foot")]),
            branching=_SESSION_DONE, note="Centralisation moves this up the leg (Albert et al. 2012)",
            targets=((s, "symptom_extent", ""),),
        ),
    ]  # fmt: skip
    catalog = exercise_catalog()
    stems = [(_EXERCISE_STEM[c], n) for c, n in catalog.select("code", "name").iter_rows()]
    out.append(
        RedcapField(
            "x_matrix",
            f,
            "descriptive",
            _exercise_table(stems),
            header="Exercises (one row per exercise of the program; schemas/data/exercises.csv)",
            branching=_SESSION_DONE,
        )
    )
    for code, name in catalog.select("code", "name").iter_rows():
        stem = _EXERCISE_STEM[code]
        for suffix, column, what, ftype, validation, lo, hi in EXERCISE_FIELD_COLUMNS:
            out.append(
                RedcapField(
                    f"x_{stem}_{suffix}",
                    f,
                    ftype,
                    f"{name}: {what}",
                    choices=_BANDS if suffix == "band" else "",
                    validation=validation,
                    vmin=lo,
                    vmax=hi,
                    branching=_SESSION_DONE,
                    targets=(("session_exercises", column, f"exercise={code}"),),
                )
            )
    return out


@cache
def _all_fields() -> tuple[RedcapField, ...]:
    return tuple(
        _episode()
        + _pain_tolerance()
        + _odi()
        + _rmdq()
        + _sciatica()
        + _psfs()
        + _global_change()
        + _promis()
        + _eq5d()
        + _work()
        + _red_flags()
        + _session_log()
    )


def redcap_fields() -> tuple[RedcapField, ...]:
    """Every field of the project, in data-dictionary order.

    Returns
    -------
    tuple of RedcapField
        The fields with their canonical targets (descriptive fields have none).
    """
    return _all_fields()


def _annotation(f: RedcapField) -> str:
    """The field's action tags and the canonical columns it feeds (for the project's data managers)."""
    feeds = "; ".join(f"{t}.{c}" + (f" ({k})" if k else "") for t, c, k in f.targets)
    parts = [p for p in (f.annotation, f"canonical: {feeds}" if feeds else "") if p]
    return " ".join(parts)


def redcap_dictionary() -> pl.DataFrame:
    """The REDCap data dictionary of the project (all columns String, REDCap's header).

    Returns
    -------
    polars.DataFrame
        One row per field, the 18 columns of :data:`DICTIONARY_COLUMNS`.
    """
    rows = [
        (
            f.name,
            f.form,
            f.header,
            f.ftype,
            f.label,
            f.choices,
            f.note,
            f.validation,
            f.vmin,
            f.vmax,
            "",
            f.branching,
            "y" if f.required else "",
            "",
            "",
            f.matrix,
            "",
            _annotation(f),
        )
        for f in redcap_fields()
    ]
    return pl.DataFrame(rows, schema=dict.fromkeys(DICTIONARY_COLUMNS, pl.String), orient="row")


def redcap_mapping() -> pl.DataFrame:
    """Mapping of REDCap fields to canonical columns.

    Returns
    -------
    polars.DataFrame
        Columns ``field_name, form_name, table, column, keys, values`` (String), one row per field and
        target. ``keys`` is empty for a field shared by every row of its form (the date, ``record_id``).
        ``record_id`` is listed once per table it feeds, with an empty ``form_name`` (every form).
    """
    rows = [
        (f.name, "" if f.name == RECORD_ID else f.form, t, c, k, f.values)
        for f in redcap_fields()
        for t, c, k in f.targets
    ]
    return pl.DataFrame(
        rows,
        schema=dict.fromkeys(("field_name", "form_name", "table", "column", "keys", "values"), pl.String),
        orient="row",
    )


def redcap_events() -> pl.DataFrame:
    """The events of the project, in REDCap's events upload format (arm 1).

    Returns
    -------
    polars.DataFrame
        ``event_name, arm_num, day_offset, offset_min, offset_max, unique_event_name, custom_event_label``.
    """
    return pl.DataFrame(
        {
            "event_name": [e[1] for e in EVENTS],
            "arm_num": ["1"] * len(EVENTS),
            "day_offset": [str(e[2]) for e in EVENTS],
            "offset_min": ["0"] * len(EVENTS),
            "offset_max": ["0"] * len(EVENTS),
            "unique_event_name": [f"{e[0]}_arm_1" for e in EVENTS],
            "custom_event_label": [""] * len(EVENTS),
        }
    )


def event_designations() -> pl.DataFrame:
    """Which instrument is collected at which event (REDCap's instrument-event mapping upload format).

    Returns
    -------
    polars.DataFrame
        ``arm_num, unique_event_name, form`` in event order.
    """
    rows = [
        ("1", f"{name}_arm_1", form)
        for name, _, _ in EVENTS
        for form, events in _DESIGNATIONS.items()
        if name in events
    ]
    return pl.DataFrame(rows, schema=["arm_num", "unique_event_name", "form"], orient="row")


def repeating_instruments() -> pl.DataFrame:
    """Repeating-instrument setup of the project (REDCap's upload format for a longitudinal project).

    Returns
    -------
    polars.DataFrame
        ``event_name, form_name, custom_form_label``: the session log repeats in the ``sessions`` event.
    """
    return pl.DataFrame(
        [(f"{event}_arm_1", form, label) for form, (event, label) in _REPEATING.items()],
        schema=["event_name", "form_name", "custom_form_label"],
        orient="row",
    )
