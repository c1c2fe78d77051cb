"""The ``fit --censored-at`` branch: a censored (Tobit) growth model, ``CensoredGrowthModel``.

Python equivalent::

    from sciatica_outcomes.models import CensoredGrowthModel
    m = CensoredGrowthModel("log(walk) ~ week + (week | patient)", upper="log_cap", nagq=5).fit(frame)
    m.summary, m.variance_components, m.result_.diagnostics
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sciatica_outcomes._terminal import make_table, print_table
from sciatica_outcomes.models.cli import varcorr_table

if TYPE_CHECKING:
    import polars as pl

__all__ = ["censoring_limit", "fit_censored_command"]


def censoring_limit(text: str) -> float | str:
    """``--censored-at`` as a number (a constant cap) or a column name (per-row caps).

    Parameters
    ----------
    text : str
        The option's value, e.g. ``"30"`` or ``"walk_cap"``.

    Returns
    -------
    float or str
        A finite number, or the text as a column name.
    """
    try:
        value = float(text)
    except ValueError:
        return text.strip()
    return value if math.isfinite(value) else text.strip()


def fit_censored_command(
    frame: pl.DataFrame,
    formula: str,
    censored_at: str,
    nagq: int,
    reference: Mapping[str, Any],
    emmeans: str | None,
    json_out: Path | None,
    quiet: bool,
) -> None:
    """Fit a :class:`CensoredGrowthModel` right-censored at ``censored_at``; print the tables, write JSON.

    The JSON is ``CensoredResult.to_dict()``: ``fixed_effects`` (``estimate, se, z, p`` and the Wald interval
    of the latent outcome), ``random_effects``, ``sigma``, ``loglik``, ``aic``, ``bic``, ``quadrature``
    (``nagq``, nodes per patient, the check with ``nagq + 4`` nodes and the quadrature error) and
    ``censoring`` (rows at the cap, their share); with ``--emmeans`` the latent means.

    Raises
    ------
    SciaticaOutcomesError
        A bad model specification or data (the caller turns it into exit 2 with the message).
    """
    from rich.console import Console

    from sciatica_outcomes.models.censored import CensoredGrowthModel
    from sciatica_outcomes.models.emmeans import parse_emmeans_spec

    limit = censoring_limit(censored_at)
    fitted = CensoredGrowthModel(formula, upper=limit, nagq=nagq, reference=dict(reference)).fit(frame)
    out = fitted.to_dict()
    for row in out["fixed_effects"]:
        row["z"] = row["t"]  # the Wald statistic's name in a likelihood fit
    em = None
    if emmeans:
        specs, at, by = parse_emmeans_spec(emmeans)
        em = fitted.emmeans(specs, at=at, by=by or None)
        out["latent_means"] = em.to_dict()
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    if not quiet:
        console = Console()
        r = fitted.result_
        d = r.diagnostics
        console.print(
            f"[bold]{formula}[/]  censored at {limit!r}  {r.method}  n_obs={r.n_obs:,}  groups={r.n_groups}  "
            f"at the cap: {d.n_censored_right:,} ({d.share_censored:.1%})"
        )
        rows = [
            (
                fe["term"],
                f"{fe['estimate']:.5g}",
                f"{fe['se']:.4g}",
                f"{fe['t']:.2f}",
                "< 0.001" if fe["p"] < 0.001 else f"{fe['p']:.3f}",
                f"[{fe['ci_low']:.4g}, {fe['ci_high']:.4g}]",
            )
            for fe in fitted.summary.iter_rows(named=True)
        ]
        header = ("term", "estimate", "se", "z", "p", "95% CI")
        print_table(
            console, make_table("Fixed effects, latent outcome (Wald z)", header, rows, width=console.width)
        )
        print_table(console, varcorr_table(fitted.variance_components, console.width))
        console.print(
            f"logLik {r.loglik:.4f}  AIC {r.aic:.2f}  BIC {r.bic:.2f}  sigma {r.sigma:.5g}  converged "
            f"{r.converged}  quadrature error {d.quadrature_error:.2g} (nAGQ {d.nagq} vs {d.nagq_check})  "
            f"({d.n_evaluations} evaluations, {d.fit_seconds:.2f} s)"
        )
        for msg in d.messages:
            console.print(f"note: {msg}")
        if em is not None:
            console.print("Latent means (the uncensored outcome):")
            console.print(em.means)
        if json_out is not None:
            console.print(f"Wrote {json_out}")
    if not fitted.result_.converged:
        sys.stderr.write("warning: the optimizer's convergence checks failed; see diagnostics\n")
