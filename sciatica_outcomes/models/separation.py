"""Complete and quasi-complete separation of a binomial outcome by the fixed-effects design, found formally.

A binomial (logistic) likelihood has no finite maximum when some direction ``d != 0`` of the coefficients
never lowers any observation's fit: ``x_i' d >= 0`` where every trial succeeded, ``x_i' d <= 0`` where none
did, and ``x_i' d = 0`` where some but not all did. Moving ``beta`` along ``d`` then raises the likelihood
without bound (Albert and Anderson 1984), also in a GLMM (at fixed random effects every conditional
likelihood rises, so the marginal one does). Konis (2007, the linear program behind R's ``detectseparation``
and ``safeBinaryRegression``) finds such a direction by linear programming:

* separation exists iff ``max sum_i s_i x_i' d`` over ``{d : s_i x_i' d >= 0, x_k' d = 0 for the mixed
  rows, -1 <= d <= 1}`` is positive (``s_i = +1`` for all successes, ``-1`` for none);
* it is *complete* (the outcome is predicted exactly) iff moreover some ``d`` gives ``s_i x_i' d > 0`` on
  every row (no mixed rows, ``max t`` with ``s_i x_i' d >= t`` positive); otherwise *quasi-complete*;
* the coefficients whose estimates are infinite are those ``k`` with ``d_k != 0`` for some direction of that
  cone: ``max d_k`` and ``min d_k`` over it, two linear programs per coefficient (only when separated).

The columns of ``X`` are scaled to a maximum absolute value of 1 (``scipy.optimize.linprog``, HiGHS; the
tolerance on the scaled problem is ``1e-7``). Each LP is solved by constraint generation: on a working set
of rows (2,000 to start, a fixed pseudo-random choice), adding the rows its solution violates until none is;
a subset of the rows only enlarges the cone, so a working set without separation already proves there is
none. A million rows take a fraction of a second when not separated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog

from sciatica_outcomes._typing import FloatArray

__all__ = ["SeparationCheck", "detect_separation"]

_TOL = 1e-7  # a direction's component or objective counted as non-zero (scaled problem)
_FEAS = 1e-9  # a row outside the working set counted as violated
_BLOCK = 2_000  # rows of each kind added per round of constraint generation


@dataclass(frozen=True)
class SeparationCheck:
    """Whether the fixed-effects design separates a binomial outcome, as data.

    Attributes
    ----------
    separated : bool
        A direction of infinite likelihood exists: the maximum-likelihood estimate is not finite.
    kind : str
        ``"none"``, ``"complete"`` or ``"quasi-complete"``.
    infinite : dict of str to str
        Per coefficient whose estimate is infinite, ``"+inf"``, ``"-inf"`` or ``"+inf or -inf"`` (directions
        of both signs exist), as ``detectseparation`` reports ``Inf``/``-Inf``; empty when not separated.
    method : str
        The method (Konis 2007 linear program).
    """

    separated: bool
    kind: str
    infinite: dict[str, str]
    method: str = "linear program of Konis (2007), as R detectseparation"

    def message(self) -> str | None:
        """The warning sentence for a summary, or ``None`` when the outcome is not separated."""
        if not self.separated:
            return None
        terms = ", ".join(f"{k} ({v})" for k, v in self.infinite.items())
        return (
            f"warning: {self.kind} separation of the outcome by the fixed-effects design ({self.method}): "
            f"the maximum-likelihood estimates of {terms} are infinite; the reported values and SEs are "
            "where the optimizer stopped. Remove or merge the separating terms, or use a penalised fit"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        return {
            "separated": self.separated,
            "kind": self.kind,
            "infinite": dict(self.infinite),
            "method": self.method,
        }


def detect_separation(
    x: FloatArray, y: FloatArray, trials: FloatArray | None = None, names: Sequence[str] | None = None
) -> SeparationCheck:
    """Detect complete or quasi-complete separation of a binomial outcome by the design ``x``.

    Parameters
    ----------
    x : numpy.ndarray
        ``(n, p)`` fixed-effects design of full column rank.
    y : numpy.ndarray
        Successes per row (0/1 for a binary outcome).
    trials : numpy.ndarray, optional
        Trials per row (1 when omitted).
    names : sequence of str, optional
        Coefficient names (``x0, x1, ...`` when omitted).

    Returns
    -------
    SeparationCheck
        Whether the outcome is separated, how, and which coefficients are infinite.

    Notes
    -----
    See the module docstring for the linear programs. A rank-deficient ``x`` has directions with ``x d = 0``;
    the caller refuses such a design before this check.
    """
    x = np.asarray(x, dtype=np.float64)
    n, p = x.shape
    labels = list(names) if names is not None else [f"x{k}" for k in range(p)]
    t = np.ones(n) if trials is None else np.asarray(trials, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    sign = np.where(yy >= t, 1.0, np.where(yy <= 0, -1.0, 0.0))
    colmax = np.max(np.abs(x), axis=0) if n else np.ones(p)
    xs = x / np.where(colmax > 0, colmax, 1.0)
    ineq = -(sign[sign != 0, None] * xs[sign != 0])  # -s x'd <= 0
    eq = xs[sign == 0]  # x'd = 0
    order_i = np.random.default_rng(0).permutation(ineq.shape[0])
    order_e = np.random.default_rng(1).permutation(eq.shape[0])

    def solve(c: FloatArray, strict: bool = False) -> FloatArray | None:
        """``min c'd`` over the cone (``strict``: also ``t <= 1`` with ``-s x'd + t <= 0``), box ``|d| <= 1``.

        Constraint generation: solved on a working set of rows (2,000 of each kind to start) to which the
        rows its solution violates are added (the most violated 2,000 of each kind per round) until it
        satisfies every row, when it is the optimum over all of them.
        """
        a_ub = np.c_[ineq, np.ones(ineq.shape[0])] if strict else ineq
        a_eq = np.c_[eq, np.zeros(eq.shape[0])] if strict else eq
        bounds = [(-1.0, 1.0)] * p + ([(None, 1.0)] if strict else [])
        work_i, work_e = np.sort(order_i[:_BLOCK]), np.sort(order_e[:_BLOCK])
        for _ in range(200):  # rounds of constraint generation (each adds rows, so this ends)
            res = linprog(
                c,
                A_ub=a_ub[work_i] if work_i.size else None,
                b_ub=np.zeros(work_i.size) if work_i.size else None,
                A_eq=a_eq[work_e] if work_e.size else None,
                b_eq=np.zeros(work_e.size) if work_e.size else None,
                bounds=bounds,
                method="highs",
            )
            if res.status != 0:
                return None
            sol = np.asarray(res.x, dtype=np.float64)
            vi = a_ub @ sol
            ve = np.abs(a_eq @ sol)
            vi[work_i] = 0.0
            ve[work_e] = 0.0
            bad_i, bad_e = np.flatnonzero(vi > _FEAS), np.flatnonzero(ve > _FEAS)
            if not bad_i.size and not bad_e.size:
                return sol
            work_i = np.union1d(work_i, bad_i[np.argsort(-vi[bad_i])[:_BLOCK]])
            work_e = np.union1d(work_e, bad_e[np.argsort(-ve[bad_e])[:_BLOCK]])
        return None

    first = np.sort(order_i[:_BLOCK])
    if first.size < ineq.shape[0]:  # a subset without separation proves there is none (the common case)
        res = linprog(
            np.sum(ineq[first], axis=0),
            A_ub=ineq[first],
            b_ub=np.zeros(first.size),
            bounds=[(-1.0, 1.0)] * p,
            method="highs",
        )
        if res.status == 0 and -float(np.sum(ineq[first] @ res.x)) <= _TOL:
            return SeparationCheck(False, "none", {})
    total = solve(np.sum(ineq, axis=0))  # minimise -sum s x'd, i.e. maximise sum s x'd
    if total is None or -float(np.sum(ineq @ total)) <= _TOL:
        return SeparationCheck(False, "none", {})
    kind = "quasi-complete"
    if not eq.size:
        # max t subject to s x'd >= t: positive iff some direction is strict on every row
        strict = solve(np.r_[np.zeros(p), -1.0], strict=True)
        if strict is not None and strict[-1] > _TOL:
            kind = "complete"
    infinite: dict[str, str] = {}
    for k in range(p):  # 2 linear programs per coefficient, only for a separated design
        e = np.zeros(p)
        e[k] = 1.0
        hi = solve(-e)
        lo = solve(e)
        up = hi is not None and hi[k] > _TOL
        down = lo is not None and lo[k] < -_TOL
        if up or down:
            infinite[labels[k]] = "+inf or -inf" if up and down else ("+inf" if up else "-inf")
    return SeparationCheck(True, kind, infinite)
