"""Maximising the pool dual of :mod:`siftopt.policies.prefill_dual` without an LP solver.

The concave, piecewise-linear pool dual is maximised through its smoothed versions ``g_τ``
(docs/policies.md §6): stages at ``τ0, τ0·TAU_FACTOR, …``, each started with exact
**coordinate sweeps** on the non-smooth ``g`` (:func:`coordinate_sweep`: along one price ``g``
is concave and piecewise linear, and its maximiser is where demand meets supply; along ν where
the classes' total degradation meets ``R``) and continued with **projected Newton steps** on
``g_τ`` with Levenberg–Marquardt damping (each accepted step raises ``g_τ``). A stage stops at
a small Newton decrement; the run stops after a stage whose point has a smoothing gap
``g(y) − g_τ(y)`` within ``rtol`` of ``|g|`` (a stationary point of ``g_τ`` where the
smoothing barely matters is near a maximiser of ``g``).

Nothing here needs to converge for the bound to be valid: the caller prices the point it
gets exactly and reports ``g`` there. The sweeps cross in one step the long stretches where
``g`` is linear along a coordinate, which Newton steps would cross one kink at a time.

The sweeps, like the dual's values and derivatives, run in numpy or, for pools past
:data:`~siftopt.policies.prefill_dual.COMPILED_ABOVE` entries, in numba
(:mod:`siftopt.policies.prefill_kernels`, imported only then): ``PoolDual.compiled``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.policies.prefill_dual import PoolDual

#: Relative accuracy (of ``|g|``) at which the smoothed pool dual stops.
DUAL_RTOL = 1e-8
#: Factor by which the smoothing temperature drops between Newton stages.
TAU_FACTOR = 0.1
#: Newton iterations per stage (a safeguard; stages usually need 2–10).
STAGE_ITERATIONS = 60
#: A stage (but the last) stops once the Newton decrement is this fraction of
#: ``τ·log 2·Σ_g c_g``.
STAGE_STOP = 0.3
#: Exact coordinate sweeps (prices, then ν) before the first Newton stage, while they raise
#: the smoothed value, and before each later stage.
SWEEPS = 4
LATER_SWEEPS = 1


@dataclass(frozen=True)
class DualSolution:
    """Where the smoothed pool dual stopped: the point, the last τ, Newton iterations."""

    y: np.ndarray
    tau: float
    iterations: int


def coordinate_sweep(dual: PoolDual, y: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """One sweep of exact coordinate ascent over the node prices (then ν) on the
    (non-smooth) pool dual: :func:`coordinate_sweep_compiled` or
    :func:`coordinate_sweep_numpy`, as ``dual.compiled`` says."""
    if dual.compiled:
        return coordinate_sweep_compiled(dual, y, upper)
    return coordinate_sweep_numpy(dual, y, upper)


def coordinate_sweep_compiled(dual: PoolDual, y: np.ndarray, upper: np.ndarray
                              ) -> np.ndarray:
    """:func:`coordinate_sweep_numpy` by the numba kernels (imports numba)."""
    from siftopt.policies.prefill_kernels import best_multiplier, sweep_prices

    nodes = dual.nodes
    supply_cum, supply_at = nodes.supply
    uses, node_ptr, node_cls = dual.sweep_arrays()
    pattern_ptr, pattern_idx = dual.node_patterns()
    m = nodes.num_nodes
    fixed = np.zeros(dual.dim) if dual.fixed is None else np.asarray(dual.fixed, dtype=float)
    y = np.array(y, dtype=float)
    sweep_prices(dual._start, dual._nptr, dual._nidx, dual._deg, uses, node_ptr, node_cls,
                 dual.counts, y, np.asarray(upper, dtype=float), fixed, nodes.slope,
                 nodes.seg_start, supply_cum, supply_at, pattern_ptr, pattern_idx)
    if dual.mean_rhs is not None:
        y[m] = best_multiplier(dual._start, dual._nptr, dual._nidx, dual._deg, dual.counts,
                               y, float(upper[m]), float(fixed[m]), float(dual.mean_rhs))
    return y


def coordinate_sweep_numpy(dual: PoolDual, y: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """One sweep of exact coordinate ascent over the node prices on the (non-smooth) pool dual.

    Along price ``p_m`` with the other coordinates fixed, class g costs
    ``min(A_g + p_m, B_g)`` (``A_g``: its best pattern through m without p_m, ``B_g``: its
    best pattern avoiding m), so its demand for m is ``c_g`` below ``B_g − A_g`` and 0 above;
    the node supplies ``Σ ℓ`` over its envelope segments with slope below ``p_m``. ``g`` is
    concave along the coordinate with slope demand − supply, and the sweep moves ``p_m`` to
    where that slope changes sign (within ``[0, upper]``). This crosses in one step the long
    stretches where ``g`` is linear, which Newton steps on the smoothed dual would cross one
    kink at a time. (The numpy path of :func:`coordinate_sweep`, and the reference of the
    kernels.)
    """
    y = y.copy()
    nodes = dual.nodes
    supply_cum, supply_at = nodes.supply
    cost = dual.pattern_costs(y)
    num_classes = dual.counts.size
    for m, (uses, first_u, cls_u, avoids, first_a, cls_a, weight_u) in enumerate(
            dual.node_rows()):
        fixed = 0.0 if dual.fixed is None else float(dual.fixed[m])
        if uses.size == 0 and fixed == 0.0:
            continue
        old = float(y[m])
        if uses.size:
            a = np.minimum.reduceat(cost[uses], first_u) - y[m]
            b = np.full(num_classes, np.inf)
            if avoids.size:
                b[cls_a] = np.minimum.reduceat(cost[avoids], first_a)
            breaks = b[cls_u] - a  # inf where the class has no pattern avoiding m
            order = np.argsort(breaks, kind="stable")
            breaks = breaks[order]
            tail = np.concatenate([np.cumsum(weight_u[order][::-1])[::-1], [0.0]])
        else:
            breaks, tail = np.zeros(0), np.zeros(1)
        lo, hi = int(nodes.seg_start[m]), int(nodes.seg_start[m + 1])
        y[m] = _line_maximum(breaks, tail, fixed, nodes.slope[lo:hi],
                             supply_cum[lo + m: hi + m + 1], supply_at[lo:hi], float(upper[m]))
        if uses.size and y[m] != old:
            cost[uses] += y[m] - old
    if dual.mean_rhs is not None:
        y[-1] = _best_multiplier_numpy(dual, y, float(upper[-1]))
    return y


def _line_maximum(breaks: np.ndarray, tail: np.ndarray, fixed: float, slopes: np.ndarray,
                  cum: np.ndarray, at: np.ndarray, upper: float) -> float:
    """The least ``q`` among 0, the breaks and the slopes in ``[0, upper]`` where the demand
    ``tail[#breaks ≤ q] + fixed`` (``breaks`` sorted) is at most the supply ``cum[#slopes ≤
    q]`` (``at``: the supply at each slope), else ``upper``. Demand minus supply is
    non-increasing in q, so in each group of candidates the first that qualifies is found
    at once."""
    def demand(q: np.ndarray | float) -> np.ndarray:
        return tail[np.searchsorted(breaks, q, side="right")] + fixed

    if not upper >= 0.0:
        return upper
    if demand(0.0) <= cum[np.searchsorted(slopes, 0.0, side="right")]:
        return 0.0
    best = upper
    q = breaks[np.searchsorted(breaks, 0.0, side="right"):
               np.searchsorted(breaks, upper, side="right")]
    q = q[np.isfinite(q)]
    if q.size:
        ok = demand(q) <= cum[np.searchsorted(slopes, q, side="right")]
        k = int(np.argmax(ok))
        if ok[k]:
            best = float(q[k])
    j0 = int(np.searchsorted(slopes, 0.0, side="right"))
    j1 = int(np.searchsorted(slopes, best, side="left"))
    if j1 > j0:
        ok = demand(slopes[j0:j1]) <= at[j0:j1]
        k = int(np.argmax(ok))
        if ok[k]:
            best = float(slopes[j0 + k])
    return best


def _best_multiplier_numpy(dual: PoolDual, y: np.ndarray, upper: float) -> float:
    """The maximiser of ``g`` along ν (prices fixed): the least ν at which the classes' total
    degradation ``Σ_g c_g·D_g(ν)`` (each at its cheapest pattern) is within ``R`` — it is
    non-increasing in ν, and ``g``'s slope along ν is that total minus ``R``. Found by
    bisection (geometric, then linear) to a relative ``1e-12``."""
    m = dual.nodes.num_nodes
    base = dual.columns[:, :m] @ y[:m]
    deg = dual.columns[:, m]
    first = dual.start[:-1]

    def total(nu: float) -> float:
        cost = base + nu * deg
        low = np.minimum.reduceat(cost, first)
        at = cost <= low[dual.cls]
        least = np.minimum.reduceat(np.where(at, deg, np.inf), first)  # ties: least D
        return float(dual.counts @ least) + (0.0 if dual.fixed is None else float(dual.fixed[m]))

    rhs = float(dual.mean_rhs)  # type: ignore[arg-type]
    if total(0.0) <= rhs:
        return 0.0
    high = max(float(y[m]), 1e-12)
    while total(high) > rhs and high < upper:
        high = min(high * 4.0, upper)
    if total(high) > rhs:
        return upper
    low = 0.0
    for _ in range(200):
        mid = np.sqrt(low * high) if low > 0 and high / low > 4.0 else 0.5 * (low + high)
        if total(mid) <= rhs:
            high = mid
        else:
            low = mid
        if high - low <= 1e-12 * high:
            break
    return high


def _bounded_step(matrix: np.ndarray, grad: np.ndarray, y: np.ndarray, upper: np.ndarray
                  ) -> np.ndarray:
    """Solve ``matrix·s = grad`` (scaled coordinates), then hold at its bound every
    coordinate the step would carry past one and solve again for the others (at most as many
    times as there are coordinates): the step stays in the box without being cut short."""
    step = np.linalg.solve(matrix, grad)  # every coordinate free (the usual case)
    end = y + step
    if not ((end < 0.0).any() or (end > upper).any()):
        return step  # inside the box (what the loop's first pass finds, without its masks)
    free = np.ones(grad.size, dtype=bool)
    for i in range(grad.size):
        if i:
            idx = np.flatnonzero(free)
            rest = np.flatnonzero(~free)
            rhs = grad[idx] - matrix[np.ix_(idx, rest)] @ step[rest]
            step[idx] = np.linalg.solve(matrix[np.ix_(idx, idx)], rhs)
        low = free & (y + step < 0.0)
        high = free & (y + step > upper)
        if not (low.any() or high.any()):
            break
        step[low] = -y[low]
        step[high] = upper[high] - y[high]
        free &= ~(low | high)
        if not free.any():
            break
    return step


def _newton_stage(dual: PoolDual, y: np.ndarray, upper: np.ndarray, tau: float, stop: float,
                  floor: np.ndarray, damping: float, limit: int = STAGE_ITERATIONS,
                  start: tuple[float, np.ndarray, np.ndarray | None] | None = None
                  ) -> tuple[np.ndarray, int, float, tuple[float, np.ndarray, np.ndarray | None]]:
    """Projected Newton ascent on the smoothed dual at one τ until the Newton decrement is at
    most ``stop``, with Levenberg–Marquardt damping (a trust region).

    On the free coordinates (those the gradient does not hold at a bound) the step solves
    ``(−H + μ·D) s = ∇`` with ``D`` the curvature diagonal floored at ``floor`` (a coordinate
    where the smoothed function is locally linear gets a step the floor allows), coordinates
    the step would carry out of the box held at their bound (:func:`_bounded_step`); it is
    accepted when the smoothed value rises. ``μ`` shrinks after a step that rises as the
    quadratic model predicts and grows after a poor or failed one. Returns the point, the
    iterations, the ``μ`` of the stage's first accepted step (where the next stage starts)
    and ``dual.smooth`` at the point. ``start``: ``dual.smooth(y, tau)`` if the caller has it.
    """
    its = 0
    first_damping = damping
    accepted = start  # the smoothed value, gradient and Hessian at y, if known
    here = start
    bounded = np.isfinite(upper)
    for its in range(1, limit + 1):
        here = accepted if accepted is not None else dual.smooth(y, tau)
        value, grad, hess = here
        accepted = None
        assert hess is not None
        slack = 1e-12 * (1.0 + np.abs(y))
        at_upper = bounded & (y >= upper - slack)
        free = np.flatnonzero(~(((y <= slack) & (grad < 0)) | (at_upper & (grad > 0))))
        if free.size == 0:
            break
        neg = -(hess if free.size == y.size else hess[free][:, free])
        diag = np.maximum(np.diag(neg), floor[free])
        scale = np.sqrt(diag)
        scaled = neg / scale[:, None] / scale[None, :]
        np.fill_diagonal(scaled, np.maximum(scaled.diagonal(), 1.0))
        g_scaled = grad[free] / scale
        y_scaled, up_scaled = y[free] * scale, upper[free] * scale
        eye = np.eye(free.size)
        newton = np.linalg.solve(scaled + 1e-9 * eye, g_scaled)
        if float(g_scaled @ newton) <= stop:
            break
        moved = False
        for _ in range(60):
            step = _bounded_step(scaled + damping * eye, g_scaled, y_scaled, up_scaled)
            trial = y.copy()
            trial[free] = np.clip(y[free] + step / scale, 0.0, upper[free])
            delta = (trial[free] - y[free]) * scale
            predicted = float(g_scaled @ delta) - 0.5 * float(delta @ scaled @ delta)
            # with the Hessian (about 20 % more work): if the step is accepted the next
            # iteration starts from it instead of evaluating the same point again
            at_trial = dual.smooth(trial, tau)
            actual = at_trial[0] - value
            if predicted > 0 and actual > 0:
                accepted = at_trial
                ratio = actual / predicted
                if not moved and its == 1:
                    first_damping = damping
                damping = damping / 10.0 if ratio > 0.75 else (
                    damping * 4.0 if ratio < 0.25 else damping)
                damping = max(damping, 1e-12)
                y, moved = trial, True
                break
            damping = max(damping * 10.0, 1e-6)
            if damping > 1e12:
                break
        if not moved:
            break
    if accepted is not None:  # the last iteration moved
        here = accepted
    if here is None:
        here = dual.smooth(y, tau)
    return y, its, first_damping, here


def maximise(dual: PoolDual, y0: np.ndarray, upper: np.ndarray, tau0: float,
             rtol: float = DUAL_RTOL, unit: np.ndarray | None = None,
             budget: int | None = None) -> DualSolution:
    """Maximise the pool dual over ``0 ≤ y ≤ upper`` from ``y0`` (see the module docstring).

    Stages at ``τ0, τ0·TAU_FACTOR, …``; each starts with exact coordinate sweeps
    (:func:`coordinate_sweep`, kept while they raise the smoothed value) and runs Newton
    steps until the decrement is :data:`STAGE_STOP` of ``τ·log 2·Σ_g c_g`` (the smoothing of
    one two-way tie per token: the scale at which the stage's maximiser is defined).
    The run ends after a stage whose point has a smoothing gap within ``rtol`` of ``|g|``
    and a decrement below ``rtol·|g|/100`` (a stationary point of the smoothed function
    where the smoothing barely matters is near a maximiser of ``g``). ``unit``: a typical
    size of each coordinate's column entries (1 for prices, a typical degradation for ν),
    which sets the curvature floor ``1e-6·Σc·unit²/τ``."""
    y = np.clip(np.asarray(y0, dtype=float), 0.0, upper)
    if unit is None:
        unit = np.ones(y.size)
    weight = 1e-6 * float(dual.counts.sum()) * np.asarray(unit, dtype=float) ** 2
    tau = tau0
    total = 0
    damping = 1e-3
    final = False
    sweeps = SWEEPS
    exact = None  # g(y) at the current y, once known
    at_y = None  # dual.smooth(y, τ) at the current y and τ, once known
    while True:
        if at_y is None:
            at_y = dual.smooth(y, tau)
        for _ in range(sweeps):
            swept = coordinate_sweep(dual, y, upper)
            at_swept = dual.smooth(swept, tau)  # with the Hessian: the stage may start there
            if at_swept[0] <= at_y[0]:
                break
            y, at_y, exact = swept, at_swept, None
        if exact is None:
            exact = dual.value(y)
        scale = max(abs(exact), 1e-300)
        tight = rtol * scale * 1e-2
        typical = tau * float(np.log(2.0)) * float(dual.counts.sum())
        stop = tight if final else max(STAGE_STOP * typical, tight)
        limit = STAGE_ITERATIONS if budget is None else max(min(STAGE_ITERATIONS,
                                                                 budget - total), 1)
        y, its, damping, at_y = _newton_stage(dual, y, upper, tau, stop, weight / tau,
                                              damping, limit, at_y)
        total += its
        sweeps = LATER_SWEEPS
        if final or tau < 1e-300 or (budget is not None and total >= budget):
            return DualSolution(y=y, tau=tau, iterations=total)
        exact = dual.value(y)
        if (dual.smoothing_gap(y, tau, value=exact, smoothed=at_y[0])
                <= rtol * max(abs(exact), 1e-300)):
            final = True  # one more stage at this τ, to the tight decrement
        else:
            tau *= TAU_FACTOR
            at_y = None


__all__ = ["DUAL_RTOL", "DualSolution", "LATER_SWEEPS", "STAGE_ITERATIONS", "STAGE_STOP",
           "SWEEPS", "TAU_FACTOR", "coordinate_sweep", "coordinate_sweep_compiled",
           "coordinate_sweep_numpy", "maximise"]
