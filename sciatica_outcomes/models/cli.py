"""``sciatica-outcomes fit``: fit a growth model from a file or the store and print / save its results.

Python equivalent::

    from sciatica_outcomes.models import GrowthModel
    m = GrowthModel("walk ~ week * adherence + (week | patient)").fit(pl.read_csv("frame.csv"))
    m.summary, m.variance_components, m.emmeans("week", at={"week": [0, 6, 12, 26]}).means
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.errors import SciaticaOutcomesError, UnusableInputError

if TYPE_CHECKING:
    import polars as pl
    from rich.table import Table

    from sciatica_outcomes.models.lmm import GrowthModel

# Only typer and light modules load at import. `fit` imports polars, NumPy, SciPy and the model code, and
# neither pandera nor DuckDB nor the report stack when it reads a file (tests/test_cli_startup.py).

__all__ = ["DdfMethod", "Engine", "ModelKind", "fit_command", "read_frame"]


class ModelKind(StrEnum):
    """Estimators the ``fit`` command can run."""

    lmm = "lmm"
    mmrm = "mmrm"  # mixed model for repeated measures (models/mmrm.py, run by models/cli_trial.py)


class Engine(StrEnum):
    """Where the growth model's sufficient statistics are computed (``fit --engine``)."""

    memory = "memory"  # rows read into polars (any model)
    duckdb = "duckdb"  # GROUP BY patient (lmm) or pattern (mmrm) in DuckDB; only statistics reach Python


class DdfMethod(StrEnum):
    """Denominator-df methods of the fixed-effects tests (``GrowthModel(ddf=...)``, ``MMRM(ddf=...)``)."""

    satterthwaite = "satterthwaite"
    kenward_roger = "kenward-roger"
    kenward_roger_linear = "kenward-roger-linear"
    between_within = "between-within"  # MMRM only (SAS DDFM=BW)
    residual = "residual"  # MMRM only (SAS DDFM=RESIDUAL)


class VcovMethod(StrEnum):
    """Covariance of the MMRM's fixed effects (``MMRM(vcov=...)``)."""

    asymptotic = "asymptotic"
    empirical = "empirical"
    empirical_jackknife = "empirical-jackknife"
    empirical_bias_reduced = "empirical-bias-reduced"


_DDF_TITLE = {
    "satterthwaite": "Satterthwaite df",
    "kenward-roger": "Kenward-Roger df and SE",
    "kenward-roger-linear": "Kenward-Roger (linear) df and SE",
    "between-within": "between-within df",
    "residual": "residual df",
}


def read_frame(path: Path) -> pl.DataFrame:
    """Read a CSV or Parquet analysis frame.

    Raises
    ------
    UnusableInputError
        When the file is missing, unreadable or not ``.csv`` / ``.parquet``.
    """
    import polars as pl

    if not path.exists():
        raise UnusableInputError(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pl.read_csv(path, infer_schema_length=10000)
        if suffix in (".parquet", ".pq"):
            return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise UnusableInputError(f"cannot read {str(path)!r}: {exc}") from exc
    raise UnusableInputError(f"data file {str(path)!r}: expected a .csv or .parquet file, got {suffix!r}")


def _read_any(path: Path) -> pl.DataFrame:
    """:func:`read_frame`, and also a directory (read recursively) or glob of Parquet files, in memory."""
    import polars as pl

    text = str(path)
    if any(ch in text for ch in "*?[") or path.is_dir():
        pattern = text if not path.is_dir() else str(path / "**" / "*.parquet")
        try:
            return pl.read_parquet(pattern)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UnusableInputError(f"cannot read Parquet files {pattern!r}: {exc}") from exc
    return read_frame(path)


def _read_table(db: Path, table: str) -> pl.DataFrame:
    """A table of a DuckDB file (the store or any other) read into memory."""
    from sciatica_outcomes.models.outofcore import open_source

    frame: pl.DataFrame = open_source(db, table).pl()
    return frame


def _from_db(db: Path, outcome: str | None) -> pl.DataFrame:
    from sciatica_outcomes.derive import analysis_frame

    if not db.exists():
        raise UnusableInputError(
            f"store {str(db)!r} does not exist; create it with `sciatica-outcomes ingest`"
        )
    frame = analysis_frame(db)
    if outcome is not None and outcome not in frame.columns:
        measures = [c for c in frame.columns if f"baseline_{c}" in frame.columns]
        raise UnusableInputError(
            f"outcome {outcome!r} is not in the analysis frame; measures present: {measures}"
        )
    return frame


def _fixed_table(model: GrowthModel, width: int | None = None) -> Table:
    rows = [
        (
            r["term"],
            f"{r['estimate']:.5g}",
            f"{r['se']:.4g}",
            f"{r['df']:.1f}",
            f"{r['t']:.2f}",
            f"{r['p']:.3g}",
            f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]",
        )
        for r in model.summary.iter_rows(named=True)
    ]
    method = _DDF_TITLE[model.inference_.ddf_method]
    title = f"Fixed effects ({'REML' if model.reml else 'ML'}, {method})"
    return make_table(title, ("term", "estimate", "se", "df", "t", "p", "95% CI"), rows, width=width)


def varcorr_table(components: pl.DataFrame, width: int | None = None) -> Table:
    """The terminal table of a model's ``variance_components``: group, term, variance, sd, corr."""
    rows = []
    for r in components.iter_rows(named=True):
        term = r["term1"] or ""
        if r["term2"]:
            term = f"{term} ~ {r['term2']}"
        rows.append(
            (
                r["group"],
                term,
                f"{r['variance']:.5g}",
                "" if r["sd"] is None else f"{r['sd']:.5g}",
                "" if r["corr"] is None else f"{r['corr']:.3f}",
            )
        )
    header = ("group", "term", "variance", "sd", "corr")
    return make_table("Random effects (VarCorr)", header, rows, numeric=(2, 3, 4), width=width)


def fit_command(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="One row per observation: a .csv or .parquet file, a directory or a glob of .parquet files.",
        ),
    ] = None,
    formula: Annotated[
        str | None,
        typer.Option("--formula", help='lme4 formula, e.g. "walk ~ week * adherence + (week | patient)".'),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", help="DuckDB store: fit on the derived analysis frame (or on --table of any DuckDB file)."
        ),
    ] = None,
    table: Annotated[
        str | None, typer.Option("--table", help="With --db: the table to fit on (one row per observation).")
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="memory (read the rows) or duckdb (statistics computed by DuckDB from the Parquet/CSV files "
            "or the table, for data larger than memory: per patient for growth models, per missingness "
            "pattern for --model mmrm; GLMM and censored models need the rows).",
        ),
    ] = Engine.memory,
    outcome: Annotated[
        str | None, typer.Option("--outcome", help="Measure for the standard growth model (with --db).")
    ] = None,
    ml: Annotated[bool, typer.Option("--ml", help="Maximum likelihood instead of REML.")] = False,
    emmeans: Annotated[
        str | None,
        typer.Option("--emmeans", help='Marginal means, e.g. "week=0,6,12,26" or "group|week=0,12".'),
    ] = None,
    reference: Annotated[
        list[str] | None, typer.Option("--reference", help="Reference level, COLUMN=LEVEL (repeatable).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON here.")] = None,
    model: Annotated[ModelKind, typer.Option("--model", help="Estimator.")] = ModelKind.lmm,
    subject: Annotated[str | None, typer.Option("--subject", help="MMRM: subject column.")] = None,
    visit: Annotated[str | None, typer.Option("--visit", help="MMRM: visit column (a factor).")] = None,
    covariance: Annotated[
        str,
        typer.Option(
            "--covariance",
            help="MMRM: us, cs, csh, ar1, ar1h, toep, toeph, ad, adh (ante-dependence) or sp_exp (spatial "
            "exponential on --coordinates).",
        ),
    ] = "us",
    covariance_group: Annotated[
        str | None,
        typer.Option(
            "--covariance-group",
            help="MMRM: one covariance matrix per level of this column (constant within subject, e.g. "
            "the arm; SAS REPEATED / GROUP=).",
        ),
    ] = None,
    coordinates: Annotated[
        list[str] | None,
        typer.Option(
            "--coordinates",
            help="MMRM sp_exp: numeric column of each observation's time or position, e.g. study_day "
            "(repeatable for several dimensions; Euclidean distance).",
        ),
    ] = None,
    ddf: Annotated[
        DdfMethod,
        typer.Option(
            "--ddf",
            help="Denominator df of the t- and F-tests: satterthwaite, kenward-roger or kenward-roger-linear "
            "(REML, adjusted SE); MMRM also between-within (SAS DDFM=BW) or residual (N - rank X).",
        ),
    ] = DdfMethod.satterthwaite,
    vcov: Annotated[
        VcovMethod,
        typer.Option(
            "--vcov",
            help="MMRM: covariance of the fixed effects: asymptotic (model-based), empirical (sandwich, SAS "
            "EMPIRICAL), empirical-jackknife or empirical-bias-reduced (mmrm's small-sample variants).",
        ),
    ] = VcovMethod.asymptotic,
    weights: Annotated[
        str | None,
        typer.Option("--weights", help="MMRM: column of observation weights (SAS WEIGHT statement)."),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            help="Generalised linear mixed model: binomial (logit), poisson (log) or negbin2 (log; "
            "Var = mu + mu^2/k). Without it, a linear model.",
        ),
    ] = None,
    offset: Annotated[
        str | None,
        typer.Option("--offset", help="GLMM: column added to the linear predictor (e.g. log sessions)."),
    ] = None,
    trials: Annotated[
        str | None,
        typer.Option("--trials", help="GLMM binomial: column of trials (the response counts successes)."),
    ] = None,
    nagq: Annotated[
        int | None,
        typer.Option(
            "--nagq",
            help="GLMM: quadrature nodes (default 1 = Laplace; > 1 needs one scalar random effect); "
            "--censored-at: nodes per random effect (default 5).",
        ),
    ] = None,
    censored_at: Annotated[
        str | None,
        typer.Option(
            "--censored-at",
            help="Censored (Tobit) growth model: values at or above this cap are right-censored; a number "
            "or a column of per-row caps, on the response's scale (models/cli_censored.py).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not print tables.")] = False,
) -> None:
    """Fit a mixed-effects growth model (lme4 formula, REML, Satterthwaite or Kenward-Roger df) and report it.

    With ``--family`` the model is a GLMM (binomial, Poisson, negative binomial; Laplace or adaptive
    Gauss-Hermite) with Wald z tests, odds or rate ratios (``models/cli_glmm.py``). With ``--censored-at`` it
    is a censored (Tobit) growth model of a test stopped at a cap (``models/cli_censored.py``).

    The ``--json`` output keeps one row per coefficient (``estimate, se, df, t, p``, CI) for the chosen
    method and names it in ``"ddf_method"``.
    """
    from rich.console import Console

    from sciatica_outcomes.models.emmeans import parse_emmeans_spec
    from sciatica_outcomes.models.lmm import GrowthModel, standard_formula

    console = Console()
    try:
        if engine is Engine.duckdb:
            if family is not None:
                raise UnusableInputError(
                    "--engine duckdb does not fit GLMMs: their likelihood (Laplace or quadrature) needs a "
                    "per-row pass at every iteration (the working weights change with the linear "
                    "predictor), not sufficient statistics computed once; fit them with --engine memory"
                )
            if censored_at is not None:
                raise UnusableInputError(
                    "--engine duckdb does not fit censored models: censored rows enter the likelihood "
                    "through normal tail probabilities at quadrature nodes, evaluated per row at every "
                    "iteration (only patients without a censored row reduce to sufficient statistics); fit "
                    "them with --engine memory"
                )
            if formula is None:
                raise UnusableInputError("--engine duckdb needs --formula")
            if (data is None) == (db is None):
                raise UnusableInputError("give exactly one of --data PATH or --db FILE --table TABLE")
            if db is not None and table is None:
                raise UnusableInputError(
                    "--engine duckdb with --db needs --table (the table with one row per observation)"
                )
            frame = None
        elif data is not None and db is None:
            if formula is None:
                raise UnusableInputError("--data needs --formula")
            if table is not None:
                raise UnusableInputError("--table applies to --db FILE; drop it or use --db")
            frame = _read_any(data)
        elif db is not None and data is None and table is not None:
            if formula is None:
                raise UnusableInputError("--db with --table needs --formula")
            frame = _read_table(db, table)
        elif db is not None and data is None:
            if outcome is None and formula is None:
                raise UnusableInputError("--db needs --outcome (standard growth model) or --formula")
            frame = _from_db(db, outcome)
            if formula is None and outcome is not None:
                n_clinics = frame["clinic_id"].n_unique() if "clinic_id" in frame.columns else 1
                formula = standard_formula(outcome, n_clinics)
        else:
            raise UnusableInputError("give exactly one of --data FILE or --db STORE")
        if formula is None:
            raise UnusableInputError("no formula given")
        refs: dict[str, Any] = {}
        for item in reference or []:
            col, eq, level = item.partition("=")
            if not eq or not col or not level:
                raise UnusableInputError(f"--reference {item!r}: expected COLUMN=LEVEL, e.g. group=control")
            refs[col.strip()] = level.strip()
        if frame is None and (family is not None or censored_at is not None):  # pragma: no cover
            raise UnusableInputError("--engine duckdb fits growth models and MMRMs only")  # refused above
        if censored_at is not None and frame is not None:  # --- censored: models/cli_censored.py ---
            from sciatica_outcomes.models.cli_censored import fit_censored_command

            mmrm_only = weights is not None or vcov is not VcovMethod.asymptotic
            glmm_only = family is not None or offset is not None or trials is not None
            if (
                model is not ModelKind.lmm
                or ml
                or ddf is not DdfMethod.satterthwaite
                or mmrm_only
                or glmm_only
            ):
                raise UnusableInputError(
                    "--censored-at fits a censored growth model by maximum likelihood with Wald z tests: "
                    "drop --model, --ml, --ddf, --vcov, --weights, --family, --offset and --trials"
                )
            fit_censored_command(
                frame, formula, censored_at, 5 if nagq is None else nagq, refs, emmeans, json_out, quiet
            )
            return
        if family is not None and frame is not None:  # --- GLMM branch: implemented in models/cli_glmm.py ---
            from sciatica_outcomes.models.cli_glmm import fit_glmm_command

            mmrm_only = weights is not None or vcov is not VcovMethod.asymptotic
            if model is not ModelKind.lmm or ml or ddf is not DdfMethod.satterthwaite or mmrm_only:
                raise UnusableInputError(
                    "--family fits a GLMM by maximum likelihood with Wald z tests: "
                    "drop --model, --ml, --ddf, --vcov and --weights"
                )
            glmm_nagq = 1 if nagq is None else nagq
            fit_glmm_command(
                frame, formula, family, offset, trials, glmm_nagq, refs, emmeans, json_out, quiet
            )
            return
        if offset is not None or trials is not None:
            raise UnusableInputError("--offset, --trials and --nagq apply to a GLMM: add --family")
        if nagq is not None:
            raise UnusableInputError(
                "--nagq applies to a GLMM or a censored model: add --family or --censored-at"
            )
        if model is ModelKind.mmrm:  # --- MMRM branch: implemented in models/cli_trial.py ---
            from sciatica_outcomes.models.cli_trial import fit_mmrm_command

            if subject is None or visit is None:
                raise UnusableInputError("--model mmrm needs --subject and --visit")
            # --engine duckdb: the pattern statistics are computed by DuckDB where the data are
            source = frame if frame is not None else data if data is not None else db
            if source is None:  # pragma: no cover - one of them was required above
                raise UnusableInputError("give --data or --db")
            fit_mmrm_command(
                source,
                formula,
                subject,
                visit,
                covariance,
                not ml,
                refs,
                emmeans,
                json_out,
                quiet,
                ddf.value,
                group=covariance_group,
                coordinates=coordinates or None,
                vcov=vcov.value,
                weights=weights,
                table=table,
            )
            return
        if vcov is not VcovMethod.asymptotic or weights is not None:
            raise UnusableInputError("--vcov and --weights apply to --model mmrm only")
        if model is not ModelKind.lmm:  # pragma: no cover - only lmm exists yet
            raise UnusableInputError(f"--model {model.value!r} is not available")
        if ddf is not DdfMethod.satterthwaite and ml:
            raise UnusableInputError(
                f"--ddf {ddf.value} needs a REML fit: drop --ml or use --ddf satterthwaite"
            )
        growth = GrowthModel(formula, reml=not ml, reference=refs, ddf=ddf.value)
        if frame is None:  # --engine duckdb: per-patient statistics computed by DuckDB where the data are
            fitted = growth.fit_from(data if data is not None else db, table=table)
        else:
            fitted = growth.fit(frame)
        out = fitted.to_dict()
        em_result = None
        if emmeans:
            specs, at, by = parse_emmeans_spec(emmeans)
            em_result = fitted.emmeans(specs, at=at, by=by or None)
            out["emmeans"] = em_result.to_dict()
    except SciaticaOutcomesError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    if not quiet:
        console.print(f"[bold]{formula}[/]  n_obs={fitted.result_.n_obs:,}  groups={fitted.result_.n_groups}")
        print_table(console, _fixed_table(fitted, console.width))
        print_table(console, varcorr_table(fitted.variance_components, console.width))
        r = fitted.result_
        console.print(
            f"logLik {r.loglik:.4f}  AIC {r.aic:.2f}  BIC {r.bic:.2f}  sigma {r.sigma:.5g}  "
            f"converged {r.converged}  ({r.diagnostics.n_evaluations} evaluations, "
            f"|grad| {r.diagnostics.gradient_norm:.1e}, {r.diagnostics.fit_seconds:.2f} s)"
        )
        for msg in r.diagnostics.messages:
            console.print(f"note: {msg}")
        if em_result is not None:
            console.print(em_result.means)
        if json_out is not None:
            console.print(f"Wrote {json_out}")
    if not fitted.result_.converged:
        sys.stderr.write("warning: the optimizer's convergence checks failed; see diagnostics\n")
