"""The controlled vocabularies of the canonical tables, defined once.

Every stage that needs one of these lists (the pandera models, the synthetic cohort, derivation, reports)
imports it from here; nothing else spells the list out. ``tests/schemas/test_vocabulary.py`` checks that the
catalog CSVs (``schemas/data/*.csv``), the pandera models and the Frictionless export agree with these
constants, so a code added in one place and not the other fails the tests.

Order is meaningful where it is stated (symptom extents proximal to distal, bands lightest to heaviest, tables
in dependency order); elsewhere it is the display order.
"""

from __future__ import annotations

__all__ = [
    "ACTIONS",
    "ACTION_NONE",
    "AT_WORK_STATUSES",
    "BANDS",
    "CANONICAL_TABLES",
    "DOSE_TYPES",
    "EMPLOYMENT_STATUSES",
    "END_REASONS",
    "EXERCISE_CATEGORIES",
    "EXERCISE_CODES",
    "INGEST_LOG_TABLE",
    "INSTRUMENT_CODES",
    "MEASURE_CODES",
    "MEASURE_KINDS",
    "MINOR_EMPLOYMENT_STATUSES",
    "MODIFIED_ODI_SECTIONS",
    "MUSCLE_GROUPS",
    "ODI_SECTIONS",
    "OFF_WORK_BACK_LEG",
    "PAID_WORK_STATUSES",
    "QUARANTINE_TABLE",
    "RED_FLAG_COLUMNS",
    "RMDQ_ITEMS",
    "SCIATICA_ITEMS",
    "SESSION_STATUSES",
    "SEXES",
    "SIDES",
    "STOPPED_REASONS",
    "STORE_META_TABLE",
    "STORE_TABLES",
    "SYMPTOM_EXTENTS",
    "WORK_NOT_APPLICABLE",
    "WORK_STATUSES",
]

# --- table names --------------------------------------------------------------------------------------

#: The seven canonical tables, in dependency order (a table's foreign keys point only to tables before it).
CANONICAL_TABLES: tuple[str, ...] = (
    "episodes",
    "sessions",
    "session_exercises",
    "measures",
    "questionnaire_items",
    "symptom_checks",
    "work",
)
#: The store's log of ingests: one row per source table per ingest (``schemas.store_tables``).
INGEST_LOG_TABLE = "ingest_log"
#: The store's rejected rows, with their raw values and errors (``schemas.store_tables``).
QUARANTINE_TABLE = "quarantine"
#: The store's own key-value metadata (schema version).
STORE_META_TABLE = "store_meta"
#: Tables of the store besides the canonical ones.
STORE_TABLES: tuple[str, ...] = (INGEST_LOG_TABLE, QUARANTINE_TABLE, STORE_META_TABLE)

# --- episodes -----------------------------------------------------------------------------------------

#: ``episodes.end_reason``, in display order.
END_REASONS: tuple[str, ...] = ("completed", "dropped_out", "referred", "surgery", "injection", "other")
#: ``episodes.sex``: F, M, or X (other or not stated).
SEXES: tuple[str, ...] = ("F", "M", "X")
#: ``episodes.affected_side``.
SIDES: tuple[str, ...] = ("left", "right", "bilateral")

# --- sessions and exercises ---------------------------------------------------------------------------

#: ``sessions.status``.
SESSION_STATUSES: tuple[str, ...] = ("completed", "missed", "cancelled")
#: ``sessions.symptom_extent``: most distal extent of symptoms, proximal to distal (Albert et al., Eur Spine J
#: 2012;21:630).
SYMPTOM_EXTENTS: tuple[str, ...] = ("back_only", "buttock", "thigh", "below_knee", "foot")
#: ``session_exercises.band``: resistance band colours, lightest to heaviest (the common Thera-Band sequence).
BANDS: tuple[str, ...] = ("yellow", "red", "green", "blue", "black", "silver", "gold")
#: ``session_exercises.exercise``: the codes of the exercise catalog (``schemas/data/exercises.csv``), in
#: catalog order.
EXERCISE_CODES: tuple[str, ...] = (
    "pelvic_tilt",
    "abdominal_bracing",
    "bird_dog",
    "bird_dog_reach",
    "glute_bridge",
    "single_leg_bridge",
    "banded_hip_thrust",
    "kb_deadlift",
    "clamshell",
    "lateral_band_walk",
    "nordic_regression",
    "hamstring_stretch",
    "neural_glide_slider",
    "neural_glide_tensioner",
)
#: Exercise catalog ``category``.
EXERCISE_CATEGORIES: tuple[str, ...] = ("stability", "strength", "mobility", "neural")
#: Exercise catalog ``muscle_group`` (DESIGN: core = transverse abdominis and multifidus).
MUSCLE_GROUPS: tuple[str, ...] = ("core", "gluteus_maximus", "gluteus_medius", "hamstrings", "neural")
#: Exercise catalog ``dose_type``: how the dose of an exercise is recorded.
DOSE_TYPES: tuple[str, ...] = ("reps", "hold", "load", "band")

# --- measures and questionnaires ----------------------------------------------------------------------

#: ``measures.measure``: the codes of the measure catalog (``schemas/data/measures.csv``), in catalog order.
MEASURE_CODES: tuple[str, ...] = (
    "walk_tolerance_min",
    "sit_tolerance_min",
    "nprs_leg",
    "nprs_back",
    "odi",
    "rmdq",
    "sbi",
    "sfi",
    "psfs",
    "promis_pf",
    "promis_pi",
    "grc",
    "pgic",
    "satisfaction",
    "was",
    "eq5d_index",
    "eq5d_vas",
)
#: Measure catalog ``kind``: a performance test or a patient-reported outcome measure.
MEASURE_KINDS: tuple[str, ...] = ("performance", "prom")
#: ``measures.stopped_reason``: why a tolerance test stopped (symptom limit, fatigue, or the test's time cap,
#: which makes the value censored).
STOPPED_REASONS: tuple[str, ...] = ("symptom", "fatigue", "cap")
#: ``questionnaire_items.instrument``: questionnaires whose item answers the store accepts.
INSTRUMENT_CODES: tuple[str, ...] = ("odi", "rmdq", "sbi", "sfi", "psfs", "promis_pf", "promis_pi")
#: ``questionnaire_items.item`` of the ODI 1.0, 2.0 and 2.1a (Fairbank & Pynsent, Spine 2000;25:2940).
ODI_SECTIONS: tuple[str, ...] = (
    "pain_intensity",
    "personal_care",
    "lifting",
    "walking",
    "sitting",
    "standing",
    "sleeping",
    "sex_life",
    "social_life",
    "travelling",
)
#: Modified ODI (Fritz & Irrgang, Phys Ther 2001;81:776): employment/homemaking replaces sex life.
MODIFIED_ODI_SECTIONS: tuple[str, ...] = tuple(
    "employment_homemaking" if s == "sex_life" else s for s in ODI_SECTIONS
)
#: Items of the Sciatica Bothersomeness and Frequency Indexes (Patrick et al., Spine 1995;20:1899).
SCIATICA_ITEMS: tuple[str, ...] = ("leg_pain", "numbness_tingling", "weakness", "pain_sitting")
#: Items of the RMDQ-24, numbered 1-24 (Roland & Morris, Spine 1983;8:141).
RMDQ_ITEMS: tuple[str, ...] = tuple(str(i) for i in range(1, 25))

# --- symptom checks -----------------------------------------------------------------------------------

#: ``symptom_checks`` red-flag questions; each must be answered explicitly (NICE CKS sciatica: patients may
#: not volunteer them).
RED_FLAG_COLUMNS: tuple[str, ...] = (
    "saddle_numbness",
    "bladder_bowel_change",
    "progressive_weakness",
    "bilateral_symptoms",
    "new_numbness",
)
#: ``symptom_checks.action_taken``.
ACTIONS: tuple[str, ...] = ("none", "referred_urgent", "referred_routine")
#: The action meaning that nothing was done (an alert with it, or with no action, is unactioned).
ACTION_NONE = "none"

# --- work ----------------------------------------------------------------------------------------------

#: ``work.employment_status``: the patient's employment at the assessment (at enrolment on the baseline row).
#: ICHOM low-back-pain standard set work status; not in paid work = student, homemaker, unemployed, retired
#: (domain.md §8). ``other`` is any other situation outside paid work (e.g. a disability pension).
EMPLOYMENT_STATUSES: tuple[str, ...] = (
    "employed",
    "self_employed",
    "student",
    "homemaker",
    "unemployed",
    "retired",
    "other",
)
#: Employment situations outside paid work that are rare in a sciatica cohort (Table 1 merges them into one
#: level when one is small under the audience rule); unemployed and retired are common and stay apart.
MINOR_EMPLOYMENT_STATUSES: tuple[str, ...] = ("student", "homemaker", "other")
#: Employment statuses that are paid work: only these have a work status other than ``not_applicable``,
#: hours, sick leave or absenteeism.
PAID_WORK_STATUSES: tuple[str, ...] = ("employed", "self_employed")
#: ``work.work_status``: what the patient does at work now (domain.md §8: full duties; modified duties or
#: reduced hours; off work because of back/leg pain, full or partial sick leave; off work for other reasons;
#: not in paid work). In display order, best first.
WORK_STATUSES: tuple[str, ...] = (
    "full_duties",
    "modified_duties",
    "off_work_back_leg",
    "off_work_other",
    "not_applicable",
)
#: Work statuses that count as "at work" (returned to work: full or modified duties).
AT_WORK_STATUSES: tuple[str, ...] = ("full_duties", "modified_duties")
#: The work status of people off work because of their back or leg pain (the return-to-work population).
OFF_WORK_BACK_LEG = "off_work_back_leg"
#: The work status of people not in paid work.
WORK_NOT_APPLICABLE = "not_applicable"
