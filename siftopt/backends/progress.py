"""Bounds over time for the exact backends: ``details["trace"]``.

Every event is a dict with ``t_s`` (seconds since the backend started), ``phase`` and,
where known, ``upper_bound_j`` (energy of the best solution so far, J) and
``lower_bound_j`` (a valid dual bound, J). The HiGHS pattern backend records its phases
(column generation, restricted and final MILPs); the direct HiGHS slot model and CP-SAT
record every improving solution through a solver callback. The Pyomo models have none.
:func:`gap` turns a pair of bounds into the relative gap that ``siftopt solve`` prints.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ortools.sat.python import cp_model


def gap(upper_j: float | None, lower_j: float | None) -> float | None:
    """Relative gap ``(UB − LB) / UB`` (0 when both are 0), or None if a bound is missing."""
    if upper_j is None or lower_j is None:
        return None
    if upper_j <= 0.0:
        return 0.0
    return max(upper_j - lower_j, 0.0) / upper_j


class CpsatTrace(cp_model.CpSolverSolutionCallback):
    """Records ``(t, upper, lower)`` at every improving CP-SAT solution.

    ``unit_j``: J per integer energy unit; ``rounding``: the number of rounded energy terms
    (each may be up to half a unit too high), so the dual bound in J is
    ``(bound − rounding/2)·unit_j``, as in the final answer.
    """

    def __init__(self, started: float, unit_j: float, rounding: int) -> None:
        super().__init__()
        self.started, self.unit_j, self.rounding = started, unit_j, rounding
        self.events: list[dict[str, Any]] = []

    def on_solution_callback(self) -> None:
        self._record("solution", self.objective_value, self.best_objective_bound)

    def finish(self, solver: cp_model.CpSolver, status: int) -> None:
        """The bounds at the end of the search (if it found a solution)."""
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            self._record(f"end ({solver.status_name(status).lower()})",
                         solver.objective_value, solver.best_objective_bound)

    def _record(self, phase: str, objective: float, bound: float) -> None:
        lower = (max(0.0, (bound - self.rounding / 2) * self.unit_j)
                 if math.isfinite(bound) else None)
        self.events.append({"t_s": round(time.perf_counter() - self.started, 4),
                            "phase": phase, "upper_bound_j": objective * self.unit_j,
                            "lower_bound_j": lower})


def watch_highs(highs: Any, started: float, unit_j: float, events: list[dict[str, Any]]
                ) -> None:
    """Append an event at every improving MILP solution HiGHS finds (highspy callback
    ``cbMipImprovingSolution``); objective and bound in energy units of ``unit_j`` J. Only
    for models whose MILP bound is a bound on (P) (the direct slot model)."""

    def on_improving(event: Any) -> None:
        out = event.data_out
        bound = out.mip_dual_bound
        events.append({"t_s": round(time.perf_counter() - started, 4), "phase": "solution",
                       "upper_bound_j": out.objective_function_value * unit_j,
                       "lower_bound_j": max(bound, 0.0) * unit_j if math.isfinite(bound)
                       else None})

    highs.cbMipImprovingSolution.subscribe(on_improving)


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
