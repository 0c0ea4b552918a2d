"""Bounds over time for the exact backends: ``details["trace"]``.

Every event is a dict with ``t_s`` (seconds since the backend started), ``phase`` and,
where known, ``upper_bound_j`` (energy of the best solution so far, J) and
``lower_bound_j`` (a valid dual bound, J). The HiGHS pattern backend records its phases
(column generation, restricted and final MILPs); the direct HiGHS slot model and CP-SAT
record every improving solution through a solver callback
(:func:`siftopt.backends.highs.common.watch_highs`,
:class:`siftopt.backends.cpsat.common.CpsatTrace`). The Pyomo models have none. When a
backend cuts off decisions the budget rule rejects, their events keep their lower bounds
but carry no upper bound (:func:`siftopt.backends.base.budget_cuts`). :func:`gap` turns a
pair of bounds into the relative gap that ``siftopt solve`` prints.
"""

from __future__ import annotations

from typing import Any


def gap(upper_j: float | None, lower_j: float | None) -> float | None:
    """Relative gap ``(UB − LB) / UB`` (0 when both are 0), or None if a bound is missing."""
    if upper_j is None or lower_j is None:
        return None
    if upper_j <= 0.0:
        return 0.0
    return max(upper_j - lower_j, 0.0) / upper_j


def progress_lines(trace: list[dict[str, Any]], limit: int = 8) -> list[str]:
    """Human-readable lines ``t  phase  upper  lower  gap`` (the last ``limit`` events)."""
    lines = []
    for event in trace[-limit:]:
        upper, lower = event.get("upper_bound_j"), event.get("lower_bound_j")
        g = gap(upper, lower)
        parts = [f"{event['t_s']:8.3f} s  {event['phase']:<18}",
                 "upper " + ("-" if upper is None else f"{upper:.9g} J"),
                 "lower " + ("-" if lower is None else f"{lower:.9g} J")]
        if g is not None:
            parts.append(f"gap {100 * g:.3g} %")
        lines.append("  ".join(parts))
    if len(trace) > limit:
        lines.insert(0, f"({len(trace) - limit} earlier events in --format json)")
    return lines
