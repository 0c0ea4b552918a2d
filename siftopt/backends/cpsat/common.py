"""CP-SAT plumbing both CP-SAT models share (slot model and pattern model).

* **Integer degradations** (:func:`degradation_scale`): CP-SAT needs integer coefficients.
  Degradations are scaled by ``Q``, a power of two (so ``x·Q`` is exact in floating point),
  and written with :meth:`siftopt.model.budgets.Budgets.integer_coefficients` (rounded down)
  against :meth:`~siftopt.model.budgets.Budgets.integer_token_caps` /
  :meth:`~siftopt.model.budgets.Budgets.integer_mean_cap` (the relaxed rows, rounded down).
  Since ``Σ floor(x_i) ≤ floor(Σ x_i)``, every decision the budget rule accepts satisfies
  the integer rows; a row of n rounded terms lets through at most ``n/Q`` of extra
  degradation, which the budget-cut loop removes. ``Q`` is the least power of two with
  ``n/Q ≤ DEGRADATION_RESOLUTION`` (n = top_k for a token of the slot model, 1 for a
  pattern).
* **Integer energies** (:func:`energy_unit`, :func:`add_table_energy`): units of
  ``Σ_m max_n E_m(n) / 2^ENERGY_BITS``, each table entry rounded to the nearest unit, with
  ``e[m] = table_m[n[m]]`` by ``AddElement`` (exact for any table) and the lower convex
  hull of the table as redundant cuts for the LP relaxation. With M' nodes in the objective
  the real energy of the CP-SAT optimum exceeds the true optimum by at most ``M'·u_E``, and
  ``(BestObjectiveBound − M'/2)·u_E`` (clipped at 0) is a valid real dual bound
  (:func:`real_bound_j`).
* **Parameters** (:func:`new_solver`), in this order: ``threads`` → ``num_workers``;
  ``linearization_level = 2`` (and for the slot model ``extra_subsolvers = ["max_lp"]``);
  every key of the profile's ``[cpsat]`` table → a field of ``SatParameters`` (enum values
  by name; it may override the ones before); the time limit → ``max_time_in_seconds``.
  OR-Tools 9.15 presolve can certify a wrong optimum on all-linear models with at-most-one
  structure and large coefficients (google/or-tools#5293; ``presolve_inclusion_work_limit
  = 0`` fixes it): the built-in profiles set it, and if a profile does not and some scaled
  row sum exceeds 2^31 − 1 it is forced to 0 (``details["presolve_inclusion_forced"]``).
* **Status** (:func:`certified_status`): ``optimal`` only when the real dual bound certifies
  the real energy within docs/model.md §3.4's tolerance.
* **Bounds over time** (:class:`CpsatTrace`).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from siftopt.errors import InputError
from siftopt.io.profiles import Profile
from siftopt.model.evaluate import energies_equal
from siftopt.model.physics import lower_hull
from siftopt.result import FEASIBLE, OPTIMAL, Status

#: Largest degradation (dimensionless) a row of integer coefficients may let through above
#: its real-valued row: ``n/Q`` for n rounded terms.
DEGRADATION_RESOLUTION = 1e-10
#: Integer energies: ``Σ_m max_n table_m(n) ≤ 2^ENERGY_BITS`` units.
ENERGY_BITS = 40
#: Scaled row sums above this may trigger google/or-tools#5293 in presolve.
INT32_MAX = 2**31 - 1
#: Largest coefficient or row activity we hand to CP-SAT (its sums must fit in int64).
MAX_SCALED = 2**62
INCLUSION_LIMIT = "presolve_inclusion_work_limit"


def degradation_scale(terms: int) -> int:
    """``Q``: the least power of two with ``terms / Q ≤ DEGRADATION_RESOLUTION``."""
    return 2 ** math.ceil(math.log2(max(terms, 1) / DEGRADATION_RESOLUTION))


def energy_unit(tables: list[np.ndarray]) -> float:
    """J per integer energy unit: ``Σ_m max table_m / 2^ENERGY_BITS`` (1 if all are 0)."""
    total = sum(float(t.max()) for t in tables)
    return total / 2**ENERGY_BITS if total > 0 else 1.0


def add_table_energy(model: cp_model.CpModel, load: cp_model.IntVar, table_int: list[int],
                     name: str) -> cp_model.IntVar:
    """``e = table_int[load]`` (``AddElement``) plus the lower convex hull of the table as
    redundant cuts ``e ≥ chord`` (exact integers, valid for any table; the hull itself when
    convex). Returns ``e``."""
    e = model.new_int_var(min(table_int), max(table_int), name)
    model.add_element(load, table_int, e)
    for k1, k2 in itertools.pairwise(lower_hull(table_int)):
        rise = table_int[k2] - table_int[k1]
        model.add((k2 - k1) * e - rise * load >= (k2 - k1) * table_int[k1] - rise * k1)
    return e




def set_parameter(params: Any, key: str, value: Any) -> None:
    """``params.key = value`` for a SatParameters field; enum values may be given by name."""
    known = (not key.startswith("_") and key[:1].islower() and hasattr(params, key)
             and not callable(getattr(params, key)))
    if not known:
        raise InputError(f"unknown CP-SAT parameter {key!r}", path=f"cpsat.{key}")
    current = getattr(params, key)
    members = getattr(type(current), "__members__", None)
    try:
        if members is not None and isinstance(value, str):
            if value not in members:
                raise InputError(f"unknown value {value!r} (allowed: {', '.join(members)})",
                                 path=f"cpsat.{key}")
            value = members[value]
        if hasattr(current, "extend") and isinstance(value, list):
            current.clear()
            current.extend(value)
        else:
            setattr(params, key, value)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"invalid value {value!r} for CP-SAT parameter {key!r}: "
                         f"{str(exc).splitlines()[0]}", path=f"cpsat.{key}") from None


def check_cpsat_parameters(profile: Profile) -> None:
    """Raise InputError for an unknown CP-SAT parameter or bad value in the profile (also
    where no CP-SAT search runs, e.g. the decode rule)."""
    params = cp_model.CpSolver().parameters
    for key, value in profile.cpsat.items():
        set_parameter(params, key, value)


def new_solver(profile: Profile, time_limit_s: float | None, max_row_sum: int, *,
               max_lp: bool) -> tuple[cp_model.CpSolver, dict[str, Any]]:
    """A CP-SAT solver with the parameters of the module docstring; returns it and the
    ``details`` entries about presolve inclusion."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = profile.threads
    # Put the u–a linking and the table constraints into the LP relaxation too: without it
    # the dual bound of prefill stays far from the optimum (L = 32: > 20 s vs about 1 s).
    solver.parameters.linearization_level = 2
    if max_lp:
        # With several workers the portfolio's first full solver is ``default_lp`` (level
        # 1); make sure ``max_lp`` (level 2) runs too — with two workers it takes that seat.
        solver.parameters.extra_subsolvers.append("max_lp")
    for key, value in profile.cpsat.items():
        set_parameter(solver.parameters, key, value)
    forced = profile.cpsat.get(INCLUSION_LIMIT) != 0 and max_row_sum > INT32_MAX
    if forced:
        setattr(solver.parameters, INCLUSION_LIMIT, 0)
    if time_limit_s is not None:
        solver.parameters.max_time_in_seconds = float(time_limit_s)
    return solver, {INCLUSION_LIMIT: getattr(solver.parameters, INCLUSION_LIMIT),
                    "presolve_inclusion_forced": forced}


def real_bound_j(solver: cp_model.CpSolver, status: int, rounded_terms: int, unit: float
                 ) -> float | None:
    """A valid dual bound in J: ``(bound − rounded_terms/2)·unit`` clipped at 0, or None."""
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
        return None
    bound = solver.best_objective_bound
    if not math.isfinite(bound):
        return None
    return max(0.0, (bound - rounded_terms / 2) * unit)


def certified_status(solver: cp_model.CpSolver, status: int, energy_j: float,
                     bound_j: float | None, unit: float) -> tuple[Status, str]:
    """``optimal`` when the real dual bound meets the real energy within the tolerance of
    docs/model.md §3.4; else ``feasible`` with the reason. CP-SAT's own OPTIMAL is not
    enough (a profile's gap limits stop with it, and energy rounding could leave a gap on
    extreme tables), and a stop whose bound already meets the energy is optimal whatever
    CP-SAT calls it."""
    if bound_j is not None and energies_equal(energy_j, bound_j):
        return OPTIMAL, ""
    objective, bound = solver.objective_value, solver.best_objective_bound
    if status == cp_model.OPTIMAL and objective - bound < 0.5:  # the objective is integer
        return FEASIBLE, (f"CP-SAT proved its scaled optimum, but the energy rounding (unit "
                          f"{unit:.3g} J) leaves a gap: energy {energy_j:.9g} J, bound "
                          f"{bound_j} J")
    if status == cp_model.OPTIMAL:
        return FEASIBLE, "stopped at the profile's gap limit"
    return FEASIBLE, "stopped before proving optimality"


class CpsatTrace(cp_model.CpSolverSolutionCallback):
    """Records ``(t, upper, lower)`` at every improving CP-SAT solution (events of
    :mod:`siftopt.backends.progress`).

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


__all__ = ["DEGRADATION_RESOLUTION", "ENERGY_BITS", "INCLUSION_LIMIT", "INT32_MAX",
           "MAX_SCALED", "CpsatTrace", "add_table_energy", "certified_status",
           "check_cpsat_parameters", "degradation_scale", "energy_unit", "lower_hull",
           "new_solver", "real_bound_j", "set_parameter"]
