"""Trial-grade commands: ``fit --model mmrm``, and the readers and writers of ``responders`` and
``compare-clinics``.

``responders`` and ``compare-clinics`` are in :mod:`sciatica_outcomes.reports.cli_compare`: what they print
follows the audience's suppression rule, which belongs to the report stage.

Python equivalents::

    from sciatica_outcomes.models import MMRM, responder_frame, responder_analysis, episode_outcomes
    res = MMRM("odi ~ visit * group + baseline", subject="episode_id", visit="visit", covariance="us")
    res.fit(frame).result_.to_dict()
    responder_analysis(responder_frame(tables, "odi"))
    compare_providers(episode_outcomes(tables, "odi", "w12"), level="clinic_id")
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.errors import UnusableInputError

if TYPE_CHECKING:
    import polars as pl
    from rich.console import Console

    from sciatica_outcomes.config import ClinicalConfig
    from sciatica_outcomes.models.mmrm import MMRMResult

# Only typer and light modules load at import; each command imports the models it runs.

__all__ = ["fit_mmrm_command", "load_canonical_tables", "load_config", "print_frame", "write_frame"]

_TABLES = ("episodes", "measures")


def load_canonical_tables(tables_dir: Path | None, db: Path | None) -> dict[str, pl.DataFrame]:
    """Canonical tables from a directory of CSV/Parquet files (as ``synth`` writes) or a DuckDB store.

    Raises
    ------
    UnusableInputError
        Neither or both sources given, a missing directory or table, or an unreadable file.
    """
    import polars as pl

    if (tables_dir is None) == (db is None):
        raise UnusableInputError("give exactly one of --tables DIR or --db STORE")
    if db is not None:
        if not db.exists():
            raise UnusableInputError(
                f"store {str(db)!r} does not exist; create it with `sciatica-outcomes ingest`"
            )
        from sciatica_outcomes.store import Store

        with Store(db, read_only=True) as store:
            return dict(store.tables())
    if tables_dir is None or not tables_dir.is_dir():
        raise UnusableInputError(f"--tables {str(tables_dir)!r} is not a directory")
    out: dict[str, pl.DataFrame] = {}
    for name in _TABLES:
        for suffix in (".parquet", ".csv"):
            path = tables_dir / f"{name}{suffix}"
            if path.exists():
                try:
                    out[name] = (
                        pl.read_parquet(path)
                        if suffix == ".parquet"
                        else pl.read_csv(path, infer_schema_length=10000, try_parse_dates=True)
                    )
                except (pl.exceptions.PolarsError, OSError) as exc:
                    raise UnusableInputError(f"cannot read {str(path)!r}: {exc}") from exc
                break
        else:
            raise UnusableInputError(f"{str(tables_dir)!r} has no {name}.csv or {name}.parquet")
    return out


def load_config(path: Path | None) -> ClinicalConfig:
    """The clinical configuration of a TOML file, or the documented defaults."""
    from sciatica_outcomes.config import ClinicalConfig

    return ClinicalConfig.from_toml(path) if path is not None else ClinicalConfig()


def write_frame(frame: pl.DataFrame, out: Path | None, extra: Mapping[str, Any] | None = None) -> None:
    """Write a result frame as spreadsheet-safe CSV, or as JSON ``{"rows": [...], **extra}`` for ``.json``."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".json":
        payload: dict[str, Any] = {"rows": frame.to_dicts()}
        payload.update(extra or {})
        out.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    else:
        from sciatica_outcomes.outputs import write_safe_csv

        # a provider code such as -1-1 is a valid code and a formula to a spreadsheet
        write_safe_csv(frame, out)


def print_frame(console: Console, frame: pl.DataFrame, title: str, cols: list[str]) -> None:
    """Print the columns ``cols`` of a frame as one terminal table."""
    import polars as pl

    rows = [
        ["" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row]
        for row in frame.select(cols).iter_rows()
    ]
    numeric = [j for j, c in enumerate(cols) if frame.schema[c] != pl.String]
    print_table(console, make_table(title, cols, rows, numeric=numeric, width=console.width))


# ---------------------------------------------------------------------------------------------------
# fit --model mmrm
# ---------------------------------------------------------------------------------------------------


def fit_mmrm_command(
    frame: pl.DataFrame | str | Path,
    formula: str,
    subject: str,
    visit: str,
    covariance: str = "us",
    reml: bool = True,
    reference: Mapping[str, Any] | None = None,
    emmeans: str | None = None,
    json_out: Path | None = None,
    quiet: bool = False,
    ddf: str = "satterthwaite",
    group: str | None = None,
    coordinates: Sequence[str] | None = None,
    vcov: str = "asymptotic",
    weights: str | None = None,
    table: str | None = None,
) -> MMRMResult:
    """Fit an MMRM for ``sciatica-outcomes fit --model mmrm`` and print / write its results.

    The JSON has the growth model's conventions (``fixed_effects`` with R coefficient names, ``loglik``,
    ``aic``, ``bic``, ``diagnostics``) plus ``covariance: {structure, visits, matrix, ...}``, ``lsmeans``,
    ``ddf_method``, ``vcov``, ``weights`` and ``type3`` (SAS-style Type III tests with the chosen df).
    ``group`` fits one covariance per level of that column, ``coordinates`` are sp_exp's coordinate columns.
    ``frame`` may be a source path instead of rows (``--engine duckdb``; with ``table`` for a DuckDB file):
    :meth:`MMRM.fit_from` then computes the pattern statistics where the data are.
    """
    import polars as pl
    from rich.console import Console

    from sciatica_outcomes.models.emmeans import parse_emmeans_spec
    from sciatica_outcomes.models.mmrm import COVARIANCE_STRUCTURES, MMRM, _jsonable

    if covariance not in COVARIANCE_STRUCTURES:
        raise UnusableInputError(
            f"--covariance must be one of {', '.join(COVARIANCE_STRUCTURES)}; got {covariance!r}"
        )
    res = MMRM(
        formula,
        subject,
        visit,
        covariance=covariance,
        reml=reml,
        reference=dict(reference or {}),
        ddf=ddf,
        group=group,
        coordinates=list(coordinates) if coordinates else None,
        weights=weights,
        vcov=vcov,
    )
    result = (res.fit(frame) if isinstance(frame, pl.DataFrame) else res.fit_from(frame, table=table)).result_
    out = result.to_dict()
    type3 = result.anova(type=3)
    out["type3"] = type3.to_dicts()
    em = None
    if emmeans:
        specs, at, by = parse_emmeans_spec(emmeans)
        em = result.emmeans(specs, by=by or None, at=at or None)
        out["emmeans"] = em.to_dict()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(_jsonable(out), indent=1) + "\n")
    if not quiet:
        console = Console()
        console.print(
            f"[bold]{formula}[/]  MMRM {covariance} ({'REML' if reml else 'ML'})  n_obs={result.n_obs:,}  "
            f"subjects={result.n_subjects:,}  patterns={result.diagnostics['n_patterns']}"
        )
        se_kind = "model-based SE" if vcov == "asymptotic" else f"{vcov} SE"
        print_frame(
            console, result.summary, f"Fixed effects ({ddf} df, {se_kind})", list(result.summary.columns)
        )
        if type3.height:
            print_frame(console, type3, "Type III tests", list(type3.columns))
        labels = result.covariance_labels
        what = f"{covariance}" + (f", one matrix per {group}" if group else "")
        if len(labels) <= 12:
            cov = pl.DataFrame(result.covariance, schema=labels).insert_column(
                0, pl.Series(visit if group is None and not coordinates else "position", labels)
            )
            print_frame(console, cov, f"Covariance of the visits ({what})", list(cov.columns))
        print_frame(
            console, result.variance_parameters, f"Covariance parameters ({what})", ["name", "estimate"]
        )
        print_frame(console, result.lsmeans(), "LS means by visit", list(result.lsmeans().columns))
        if em is not None:
            console.print(em.means)
        d = result.diagnostics
        console.print(
            f"logLik {result.loglik:.4f}  AIC {result.aic:.2f}  BIC {result.bic:.2f}  "
            f"converged {d['converged']}"
            f"  (|grad| {d['gradient_norm']:.1e}, {d['fit_seconds']:.2f} s)  {d['message']}"
        )
        if json_out is not None:
            console.print(f"Wrote {json_out}")
    if not result.converged:
        sys.stderr.write("warning: the MMRM's convergence checks failed; see diagnostics\n")
    return result
