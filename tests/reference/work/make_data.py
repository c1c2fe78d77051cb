"""Write the work-status GLMM reference data set (fixed seed) from the synthetic cohort.

Run from this folder: ``python make_data.py`` (with the package importable); then
``Rscript make_work_reference.R`` writes ``work_reference.json`` (lme4 ``glmer`` with ``nAGQ = 1`` and ``9``,
glmmTMB's exact Laplace fit), which ``tests/models/test_work.py`` reads. The data are the analysis frame of
:func:`sciatica_outcomes.models.work.work_status_frame` for a 400-episode synthetic cohort (seed 7): one row
per work assessment of a patient in paid work at enrolment, with the planted random-intercept logistic model
of ``truth["work"]["glmm"]``.
"""

from __future__ import annotations

from pathlib import Path

from sciatica_outcomes.derive import derive_all
from sciatica_outcomes.models.work import work_status_frame
from sciatica_outcomes.synth import generate_cohort

HERE = Path(__file__).resolve().parent


def main() -> None:
    cohort = generate_cohort(n_patients=400, seed=7)
    derived = derive_all(cohort.tables)
    frame, _ = work_status_frame(derived.work_assessments, derived.outcomes, derived.episode_summary)
    frame.drop_nulls(["odi_10", "adherence_10"]).select(
        "episode_id", "clinic_id", "week", "odi_10", "adherence_10", "at_work"
    ).write_csv(HERE / "work_status.csv")


if __name__ == "__main__":
    main()
