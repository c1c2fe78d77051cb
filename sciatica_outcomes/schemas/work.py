"""Schema of ``work``: one row per episode x assessment date of the patient's work situation.

Data model (why a table, and why some work outcomes are measures instead)
--------------------------------------------------------------------------
Work capacity is recorded in two places, by the shape of the data:

- **this table** holds what is *categorical or only meaningful together*: employment status and current work
  status (codes, not numbers: ``measures.value`` is a number on a scale, and a status has no scale), hours
  contracted and worked, sick-leave days, the six WPAI:SHP answers and the return-to-work date. These values
  constrain each other within one assessment (hours worked at most contracted; WPAI questions 2-5 only when
  question 1 is "yes"; sick leave only for people in paid work; work status ``not_applicable`` exactly when
  the patient is not in paid work), so they are one row, and the ingest engine checks those rules on the row.
  The WPAI:SHP scores (absenteeism, presenteeism, overall work impairment, activity impairment) are computed
  from the row by :func:`sciatica_outcomes.scoring.work.wpai_scores`, never stored, so a score cannot
  disagree with its answers.
- **``measures``** holds the single-number scores that behave like every other PROM: the Work Ability Score
  (``was``, 0-10, higher better), the patient's global impression of change (``pgic``, 7-point, 1 = completely
  recovered; ``grc`` the -7..+7 global rating of change was already there), satisfaction with treatment
  (``satisfaction``, 1-5) and EQ-5D (``eq5d_index`` as given from the clinic's licensed value set,
  ``eq5d_vas`` 0-100). As measures they get visits, baseline, change, responders and the growth model with no
  new code.

One row per ``episode_id`` + ``assessed_on``. ``employment_status`` is the status *at that assessment*; on the
baseline row it is the employment status at enrolment (derive reads it there), and it may change later (a
patient retires). ``return_to_work_date`` is the day the patient went back to full or modified duties after
being off work, recorded on the first assessment that finds them back (and may be repeated later).

Rules checked by the ingest engine, each reported with file, row, column, value, rule and a fix, the row
quarantined (never coerced):

- ``hours_above_contracted``: ``hours_worked <= hours_contracted``;
- ``needs_paid_work``: ``hours_contracted``, ``hours_worked`` and ``sick_leave_days_4wk`` (absenteeism) only
  when ``employment_status`` is paid work (``employed``, ``self_employed``);
- ``work_status_employment``: ``work_status`` is ``not_applicable`` if and only if the patient is not in paid
  work;
- ``wpai_needs_employed``: WPAI:SHP questions 2-5 only when question 1 (currently employed) is ``true``;
- ``wpai_hours_above_week``: questions 2 + 3 + 4 (hours in the last 7 days) at most 168;
- ``return_while_off_work``: a ``return_to_work_date`` only with work status ``full_duties`` or
  ``modified_duties``;
- ``return_after_assessment``: ``return_to_work_date`` not after ``assessed_on`` (a return is a fact at
  the assessment, not a plan);
- ``return_before_start``: ``return_to_work_date`` not before the episode's ``start_date`` (cross-table).

WPAI question 1 is not checked against ``employment_status``: a student with a paid job answers "yes".

Sources: ICHOM low-back-pain standard set work status (Clement et al., Acta Orthop 2015;86:523); NORspine
sick-leave status (Mikkelsen et al., Eur Spine J 2023); WPAI:SHP (Reilly et al., PharmacoEconomics
1993;4:353); return to work (Asher et al., J Neurosurg Spine 2017;27:370); domain.md §8.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
from pandera.typing.polars import Series

from sciatica_outcomes.schemas._spec import CODE_PATTERN, DateWindow, ForeignKey, TableSpec
from sciatica_outcomes.schemas.vocabulary import EMPLOYMENT_STATUSES, WORK_STATUSES

__all__ = ["EMPLOYMENT_STATUSES", "WORK", "WORK_STATUSES", "WPAI_GATED_COLUMNS", "WorkModel"]

#: WPAI:SHP questions 2-5: asked only when question 1 (currently employed) is answered "yes".
WPAI_GATED_COLUMNS: tuple[str, ...] = (
    "wpai_q2_hours_missed_health",
    "wpai_q3_hours_missed_other",
    "wpai_q4_hours_worked",
    "wpai_q5_work_impairment",
)
#: Columns that only people in paid work can have.
PAID_WORK_COLUMNS: tuple[str, ...] = ("hours_contracted", "hours_worked", "sick_leave_days_4wk")


class WorkModel(pa.DataFrameModel):
    """Columns of ``work``. Hours and sick leave are only for people in paid work (employed or self-employed),
    whose work status is then not ``not_applicable``; WPAI questions 2-5 only after a yes to question 1; a
    return-to-work date only at full or modified duties. These row rules are checked by the ingest engine.
    """

    episode_id: Series[pl.String] = pa.Field(str_matches=CODE_PATTERN, description="Episode code")
    assessed_on: Series[pl.Date] = pa.Field(description="Date of the assessment")
    employment_status: Series[pl.String] = pa.Field(
        isin=list(EMPLOYMENT_STATUSES), description="Employment at the assessment (at enrolment on baseline)"
    )
    work_status: Series[pl.String] = pa.Field(
        isin=list(WORK_STATUSES), description="Current work status (not_applicable when not in paid work)"
    )
    hours_contracted: Series[pl.Float64] | None = pa.Field(
        nullable=True, gt=0, le=100, description="Contracted (or usual) working hours per week"
    )
    hours_worked: Series[pl.Float64] | None = pa.Field(
        nullable=True, ge=0, le=100, description="Hours actually worked per week now"
    )
    sick_leave_days_4wk: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=0, le=28, description="Days on sick leave because of back or leg pain, last 4 weeks"
    )
    wpai_q1_employed: Series[pl.Boolean] | None = pa.Field(
        nullable=True, description="WPAI:SHP Q1: currently employed (working for pay)"
    )
    wpai_q2_hours_missed_health: Series[pl.Float64] | None = pa.Field(
        nullable=True, ge=0, le=168, description="WPAI:SHP Q2: work hours missed for the problem, 7 days"
    )
    wpai_q3_hours_missed_other: Series[pl.Float64] | None = pa.Field(
        nullable=True, ge=0, le=168, description="WPAI:SHP Q3: work hours missed for other reasons, 7 days"
    )
    wpai_q4_hours_worked: Series[pl.Float64] | None = pa.Field(
        nullable=True, ge=0, le=168, description="WPAI:SHP Q4: hours actually worked, last 7 days"
    )
    wpai_q5_work_impairment: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=0, le=10, description="WPAI:SHP Q5: effect on productivity while working (0-10)"
    )
    wpai_q6_activity_impairment: Series[pl.Int64] | None = pa.Field(
        nullable=True, ge=0, le=10, description="WPAI:SHP Q6: effect on regular daily activities (0-10)"
    )
    return_to_work_date: Series[pl.Date] | None = pa.Field(
        nullable=True, description="Day back at full or modified duties after being off work"
    )


WORK = TableSpec(
    name="work",
    model=WorkModel,
    key=("episode_id", "assessed_on"),
    description="One row per work assessment: employment, work status, hours, sick leave, WPAI:SHP answers.",
    foreign_keys=(ForeignKey(("episode_id",), "episodes", ("episode_id",)),),
    date_window=DateWindow("assessed_on", days_before_start=14, days_after_end=7),
    not_before_start=("return_to_work_date",),
)
