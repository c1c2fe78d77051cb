"""The ``fit --family`` branch: a generalised linear mixed model, ``MixedGLM``.

Python equivalent::

    from sciatica_outcomes.models import MixedGLM
    m = MixedGLM("flares ~ week + (1 | patient)", family="poisson", offset="log_sessions").fit(frame)
    m.summary, m.ratios(), m.variance_components
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.models.cli import varcorr_table

if TYPE_CHECKING:
    import polars as pl

__all__ = ["fit_glmm_command"]


def fit_glmm_command(
    frame: pl.DataFrame,
    formula: str,
    family: str,
    offset: str | None,
    trials: str | None,
    nagq: int,
    reference: Mapping[str, Any],
    emmeans: str | None,
    json_out: Path | None,
    quiet: bool,
) -> None:
    """Fit a :class:`MixedGLM`, print its tables and write ``--json``.

    The JSON holds ``fixed_effects`` (one row per coefficient: ``estimate, se, z, p``, the interval, and
    ``ratio`` = ``exp(estimate)``: odds ratio for binomial, rate ratio for Poisson and negative binomial),
    ``random_effects`` (``VarCorr``), ``loglik``, ``aic``, ``bic``, the family, link and approximation
    (``Laplace`` or adaptive Gauss-Hermite with ``nagq`` nodes).

    Raises
    ------
    SciaticaOutcomesError
        A bad model specification or data (the caller turns it into exit 2 with the message).
    """
    from rich.console import Console

    from sciatica_outcomes.models.emmeans import parse_emmeans_spec
    from sciatica_outcomes.models.glmm import MixedGLM

    fitted = MixedGLM(
        formula, family=family, trials=trials, offset=offset, nagq=nagq, reference=dict(reference)
    ).fit(frame)
    out = fitted.to_dict()
    ratios = fitted.ratios()
    for row, ratio in zip(out["fixed_effects"], ratios["ratio"].to_list(), strict=True):
        row["z"] = row["t"]  # glmer's name for the Wald statistic ("z value")
        row["ratio"] = ratio
    em = None
    if emmeans:
        specs, at, by = parse_emmeans_spec(emmeans)
        em = fitted.response_means(specs, at=at, by=by or None)
        out["response_means"] = em.to_dicts()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    if not quiet:
        console = Console()
        r = fitted.result_
        kind = "odds ratio" if family == "binomial" else "rate ratio"
        console.print(
            f"[bold]{formula}[/]  family={family} ({r.link} link)  {r.method}  n_obs={r.n_obs:,}  "
            f"groups={r.n_groups}"
            + (f"  offset={offset}" if offset else "")
            + (f"  trials={trials}" if trials else "")
        )
        rows = [
            (
                fe["term"],
                f"{fe['estimate']:.5g}",
                f"{fe['se']:.4g}",
                f"{fe['t']:.2f}",
                "< 0.001" if fe["p"] < 0.001 else f"{fe['p']:.3f}",
                f"{rt:.4g}",
                f"[{lo:.4g}, {hi:.4g}]",
            )
            for fe, rt, lo, hi in zip(
                fitted.summary.iter_rows(named=True),
                ratios["ratio"].to_list(),
                ratios["ci_low"].to_list(),
                ratios["ci_high"].to_list(),
                strict=True,
            )
        ]
        header = ("term", "estimate", "se", "z", "p", kind, f"{kind} 95% CI")
        print_table(console, make_table("Fixed effects (Wald z)", header, rows, width=console.width))
        print_table(console, varcorr_table(fitted.variance_components, console.width))
        size = f"  size {r.size:.5g}" if r.size is not None else ""
        console.print(
            f"logLik {r.loglik:.4f}  AIC {r.aic:.2f}  BIC {r.bic:.2f}{size}  converged {r.converged}  "
            f"({r.diagnostics.n_evaluations} evaluations)"
        )
        for msg in r.diagnostics.messages:  # a separation message is already a warning
            console.print(msg if msg.startswith("warning:") else f"note: {msg}")
        if em is not None:
            cols = [
                c
                for c in em.columns
                if c not in ("conditional", "conditional_low", "conditional_high", "population")
            ]
            scale = "probability" if family == "binomial" else "rate"
            em_rows = [
                (
                    *(f"{r[c]:g}" if isinstance(r[c], float) else str(r[c]) for c in cols),
                    f"{r['conditional']:.4g}",
                    f"[{r['conditional_low']:.4g}, {r['conditional_high']:.4g}]",
                    f"{r['population']:.4g}",
                )
                for r in em.iter_rows(named=True)
            ]
            em_header = (*cols, f"{scale} at b = 0", "95% CI", "population-averaged")
            print_table(console, make_table(f"Marginal {scale}s", em_header, em_rows, width=console.width))
        if json_out is not None:
            console.print(f"Wrote {json_out}")
    if not fitted.result_.converged:
        sys.stderr.write("warning: the optimizer's convergence checks failed; see diagnostics\n")
