"""One optimizer for the estimators: L-BFGS-B, projected Newton polishing, optimality checks and restarts.

:class:`BoundedNewton` minimises a smooth criterion ``f(x)`` (a deviance ``-2 log L``, or the REML criterion)
with an analytic gradient over a box ``x >= lower`` (lower bounds may be ``-inf``):

1. L-BFGS-B in scaled coordinates ``x / scale`` brings ``x`` into Newton's basin;
2. projected Newton steps on the Hessian (central differences of the gradient, or the estimator's own)
   until the projected gradient vanishes; steps are accepted on ``f`` while the predicted decrease is
   resolvable and on the projected gradient once it is below ``f``'s rounding level;
3. :meth:`BoundedNewton.check`: converged when the Newton decrement ``lambda = sqrt(g' H^-1 g)`` over the free
   coordinates is below ``gradient_tol`` (1e-5, i.e. ``lambda^2 < 1e-10``), the free Hessian is positive
   definite and no bound is left where the criterion falls into the interior. A coordinate at its bound is
   active when ``f`` rises into the interior at first order, or, when the gradient vanishes there (a
   standard deviation at 0 is a stationary point by symmetry), at second order;
4. otherwise a restart from a lower point along a direction of negative curvature or inward from a bound
   (:meth:`BoundedNewton.escape`), at most ``max_restarts`` times.

``lambda^2 < 1e-10`` bounds the distance to the optimum: ``f`` within ``lambda^2 / 2`` of its minimum and any
smooth function of ``x`` within ``lambda / sqrt(2)`` of its standard error through ``x``
(``tests/models/tolerances.py``).

Used by :class:`~sciatica_outcomes.models.GrowthModel` (the profiled deviance in ``theta``) and
:class:`~sciatica_outcomes.models.MixedGLM` (the Laplace or quadrature deviance in ``(theta, beta)``). The
MMRM keeps its BFGS + Newton (``mmrm._optimise``): its covariance parameters are unconstrained (log SDs,
correlations on a tanh-like scale), and on a boundary fit L-BFGS-B follows the flat criterion out to where
it overflows, while BFGS stops where the Hessian is still finite (``test_boundary_fit_reported_as_data``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np
from scipy import optimize

from sciatica_outcomes._typing import BoolArray, FloatArray

__all__ = ["BoundedNewton", "Optimum", "OptimumCheck", "central_hessian"]


class OptimumCheck(TypedDict):
    """First- and second-order optimality checks at a point (:meth:`BoundedNewton.check`)."""

    ok: bool
    decrement: float
    grad_norm: float
    pd: bool
    min_eig: float
    hessian: FloatArray
    free: BoolArray
    inward: BoolArray


@dataclass
class Optimum:
    """Where :meth:`BoundedNewton.minimise` stopped and how good the point is."""

    x: FloatArray
    check: OptimumCheck
    restarts: int
    messages: list[str] = field(default_factory=list)


def central_hessian(gradient: Callable[[FloatArray], FloatArray], x: FloatArray) -> FloatArray:
    """Symmetrised central differences of an analytic gradient, step ``1e-5 max(|x_j|, 1e-2)``."""
    k = x.shape[0]
    h = np.empty((k, k))
    for j in range(k):  # k gradient pairs (k: the few variance and fixed-effect parameters)
        e = np.zeros(k)
        e[j] = 1e-5 * max(abs(float(x[j])), 1e-2)
        h[j] = (gradient(x + e) - gradient(x - e)) / (2 * e[j])
    return 0.5 * (h + h.T)


class BoundedNewton:
    """Minimise ``f`` over ``x >= lower`` (see the module docstring).

    Parameters
    ----------
    fg : callable
        ``x -> (f(x), grad f(x))``.
    lower : numpy.ndarray
        Lower bounds (``-inf`` for a free coordinate).
    scale : numpy.ndarray
        Typical size of each coordinate (L-BFGS-B works on ``x / scale``; escape directions use it).
    gradient_tol : float
        Convergence tolerance on the Newton decrement ``lambda = sqrt(g' H^-1 g)``.
    max_restarts : int
        Restarts allowed after a failed check.
    hessian : callable, optional
        ``x -> H(x)``; default central differences of the gradient (:func:`central_hessian`).
    """

    def __init__(
        self,
        fg: Callable[[FloatArray], tuple[float, FloatArray]],
        lower: FloatArray,
        scale: FloatArray,
        gradient_tol: float = 1e-5,
        max_restarts: int = 2,
        hessian: Callable[[FloatArray], FloatArray] | None = None,
    ) -> None:
        self.fg = fg
        self.lower = np.asarray(lower, dtype=float)
        self.scale = np.asarray(scale, dtype=float)
        self.gradient_tol = gradient_tol
        self.max_restarts = max_restarts
        self._hessian_fn = hessian
        self._h_cache: tuple[FloatArray, FloatArray] | None = None
        #: L-BFGS-B iterations and accepted Newton steps so far (reported by the estimators)
        self.iterations = 0
        self.newton_steps = 0

    def hessian(self, x: FloatArray) -> FloatArray:
        """The Hessian at ``x`` (the estimator's, or central differences of the gradient)."""
        if self._hessian_fn is not None:
            return self._hessian_fn(x)
        return central_hessian(lambda v: self.fg(v)[1], x)

    def run(self, start: FloatArray, scale: FloatArray | None = None) -> FloatArray:
        """L-BFGS-B in scaled coordinates ``x = theta / scale``, then projected Newton polishing."""
        sc = self.scale if scale is None else scale
        lower = self.lower
        bounds = [(None if not np.isfinite(lo) else lo / s, None) for lo, s in zip(lower, sc, strict=True)]

        def fg(z: FloatArray) -> tuple[float, FloatArray]:
            f, g = self.fg(z * sc)
            return f, g * sc

        # L-BFGS-B only has to bring x into Newton's basin: the projected Newton steps that follow decide
        # convergence (projected gradient below 1e-12, then `check`). Tighter L-BFGS-B tolerances (ftol 1e-15,
        # gtol 1e-10) spent 48 instead of 20 deviance evaluations of the growth model at 100,000 patients
        # wandering at the deviance's rounding level, and ended at a larger gradient.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            res = optimize.minimize(
                fg,
                start / sc,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-7, "maxcor": 20},
            )
        self.iterations += int(res.nit)
        return self.newton(np.maximum(res.x * sc, lower))

    def newton(self, x: FloatArray, max_iter: int = 12) -> FloatArray:
        """Projected Newton steps until the projected gradient vanishes.

        Steps are accepted on ``f`` while the predicted decrease is resolvable, and on the projected gradient
        norm once it is below ``f``'s rounding level (where a line search cannot tell).
        """
        lower = self.lower
        f, g = self.fg(x)
        h_full: FloatArray | None = None
        for _ in range(max_iter):
            free = ~((x <= lower) & (g > 0))
            pg = np.where(free, g, 0.0)
            if not free.any() or np.abs(pg).max() < 1e-12:
                break
            if h_full is None:
                h_full = self.hessian(x)
                self._h_cache = (x.copy(), h_full)
            if not np.all(np.isfinite(h_full)):  # far out on a flat criterion: no Newton step
                break
            h = h_full[np.ix_(free, free)]
            vals, vecs = np.linalg.eigh(h)
            vals = np.maximum(vals, 1e-8 * max(vals.max(), 1.0))
            step = np.zeros_like(x)
            step[free] = -(vecs / vals) @ (vecs.T @ g[free])
            pred = float(-(g @ step))
            if pred <= 0.0 or np.abs(step).max() < 1e-10 * max(1.0, float(np.abs(x).max())):
                break
            noise_level = pred < 1e-9 * max(1.0, abs(f))
            t = 1.0
            accepted: tuple[FloatArray, float, FloatArray] | None = None
            for _ in range(30):
                cand = np.maximum(x + t * step, lower)
                fc, gc = self.fg(cand)
                pgc = np.where(~((cand <= lower) & (gc > 0)), gc, 0.0)
                if fc <= f - 1e-4 * t * pred or (noise_level and np.abs(pgc).max() < np.abs(pg).max()):
                    accepted = (cand, fc, gc)
                    break
                t *= 0.5
            if accepted is None:
                break
            x, f, g = accepted
            self.newton_steps += 1
        return x

    def check(self, x: FloatArray) -> OptimumCheck:
        """First- and second-order optimality checks at ``x`` (bound constraints respected)."""
        lower = self.lower
        f, g = self.fg(x)
        cached = self._h_cache
        if cached is not None and np.allclose(cached[0], x, rtol=1e-4, atol=1e-4 * self.scale.min()):
            h = cached[1]  # Hessian from the last Newton step, a negligible distance away
        else:
            h = self.hessian(x)
        at_bound = x <= lower + 1e-12
        if not (np.all(np.isfinite(h)) and np.all(np.isfinite(g)) and math.isfinite(f)):
            none = np.zeros_like(at_bound)
            return {
                "ok": False,
                "decrement": math.inf,
                "grad_norm": float(np.max(np.abs(g))) if g.size else math.nan,
                "pd": False,
                "min_eig": math.nan,
                "hessian": h,
                "free": ~none,
                "inward": none,
            }
        g_tol = 1e-8 * max(1.0, abs(f))
        # a bound is active when f rises into the interior (first or, if flat, second order)
        active = at_bound & ((g > g_tol) | ((np.abs(g) <= g_tol) & (np.diag(h) >= 0)))
        inward = at_bound & ~active
        free = ~active
        pg = np.where(free, g, 0.0)
        hf = h[np.ix_(free, free)]
        vals = np.linalg.eigvalsh(hf) if free.any() else np.array([np.inf])
        pd_ = bool(vals.min() > 0)
        if pd_ and free.any():
            dec = float(math.sqrt(max(float(pg[free] @ np.linalg.solve(hf, pg[free])), 0.0)))
        else:
            dec = float(np.abs(pg).max())
        return {
            "ok": dec < self.gradient_tol and pd_ and not inward.any(),
            "decrement": dec,
            "grad_norm": float(np.abs(pg).max()),
            "pd": pd_,
            "min_eig": float(vals.min()),
            "hessian": h,
            "free": free,
            "inward": inward,
        }

    def escape(self, x: FloatArray, check: OptimumCheck) -> FloatArray | None:
        """A lower start along a direction of negative curvature (interior, or inward from a bound)."""
        h, free, lower = check["hessian"], check["free"], self.lower
        directions: list[FloatArray] = []
        for j in np.flatnonzero(check["inward"]):
            e = np.zeros_like(x)
            e[j] = self.scale[j]
            directions.append(e)
        if free.any() and np.all(np.isfinite(h)):
            vals, vecs = np.linalg.eigh(h[np.ix_(free, free)])
            if vals[0] < 0:
                v = np.zeros_like(x)
                v[free] = vecs[:, 0] * self.scale[free] / np.abs(vecs[:, 0] * self.scale[free]).max()
                directions += [v, -v]
        f0 = self.fg(x)[0]
        best, best_f = None, f0
        for d in directions:
            for a in (1.0, 0.3, 0.1, 0.03, 0.01, 0.003):
                cand = np.maximum(x + a * d, lower)
                fc = self.fg(cand)[0]
                if fc < best_f - 1e-10 * max(1.0, abs(f0)):
                    best, best_f = cand, fc
        return best

    def minimise(self, start: FloatArray, perturbation: FloatArray) -> Optimum:
        """:meth:`run` from ``start``, then checks and restarts.

        Parameters
        ----------
        start : numpy.ndarray
            Starting point (feasible).
        perturbation : numpy.ndarray
            Displacement of a restart when no lower point is found along the escape directions.

        Returns
        -------
        Optimum
        """
        messages: list[str] = []
        x = self.run(start)
        restarts = 0
        check = self.check(x)
        while restarts < self.max_restarts and not check["ok"]:
            restarts += 1
            new_start = self.escape(x, check)
            messages.append(
                f"restart {restarts}: "
                + (
                    "left a saddle point or boundary maximum"
                    if new_start is not None
                    else "decrement above tolerance"
                )
            )
            # restart preconditioned by the Hessian diagonal (flat directions such as a clinic SD get steps of
            # their own size)
            hd = np.abs(np.diag(check["hessian"]))
            if np.all(np.isfinite(hd)):
                pre = 1.0 / np.sqrt(np.maximum(hd, 1e-12 * max(hd.max(), 1.0)))
                pre *= self.scale.max() / pre.max()
            else:
                pre = self.scale
            if new_start is not None:
                # near the optimum already: Newton steps first, L-BFGS-B only if they do not settle
                x = self.newton(new_start, max_iter=30)
                check = self.check(x)
                if check["ok"]:
                    break
            else:
                new_start = np.maximum(x + perturbation, self.lower)
            x = self.run(new_start, pre)
            check = self.check(x)
        return Optimum(x, check, restarts, messages)
