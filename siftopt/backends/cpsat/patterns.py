"""The pattern formulation of (P) in OR-Tools CP-SAT (small and medium instances).

The same master as :mod:`siftopt.backends.highs.master` over *every* non-dominated pattern of
:mod:`siftopt.formulations.patterns` (no column generation: CP-SAT has no LP duals to price
with):

* ``x[p]`` — integer ``0..count_g``: how many tokens of class g take pattern p;
  ``Σ_p x[p] = count_g`` per class;
* ``n[m] = Σ_{p ∋ m} x[p]`` with domain ``[0, n̂_m]`` and ``e[m] = table_m[n[m]]``
  (:func:`siftopt.backends.cpsat.common.add_table_energy`);
* the mean budget, when it has a row: ``Σ_p floor(D_p·Q)·x[p] ≤ integer_mean_cap(Q)``
  (:meth:`siftopt.model.budgets.Budgets.integer_coefficients`, a relaxation), with
  ``Q = degradation_scale(1)``: a whole pattern's D is rounded once.

Kept patterns meet the per-token rule exactly; a decision the mean rule rejects goes to the
CP-SAT slot model with its cut (:func:`siftopt.backends.base.checked_pattern_answer`).
Scaled row sums pass 2^31 as soon as L·Q does, so unless the profile already sets
``presolve_inclusion_work_limit = 0`` it is forced to 0 (google/or-tools#5293), as in the
slot model; ``details["presolve_inclusion_forced"]`` says so.

Decoding (and the other cases of :func:`siftopt.formulations.decode.decode_rule_applies`)
needs no solver. Past ``ExactOptions.max_cpsat_patterns`` patterns, or past the enumeration
limits, the CP-SAT slot model is used instead (``details["fallback"]``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from siftopt.backends.base import (
    Cut,
    begin,
    checked_pattern_answer,
    decision_options,
    every_pattern,
    pattern_start,
    remaining_s,
    slot_fallback,
)
from siftopt.backends.cpsat.common import (
    MAX_SCALED,
    CpsatTrace,
    add_table_energy,
    certified_status,
    check_cpsat_parameters,
    degradation_scale,
    energy_unit,
    new_solver,
    real_bound_j,
)
from siftopt.backends.cpsat.slots import slots_with_cuts
from siftopt.backends.options import ExactOptions
from siftopt.errors import InputError
from siftopt.formulations.decode import masks_energy_j
from siftopt.formulations.recover import actions_for_patterns, assign_patterns, pattern_of_actions
from siftopt.formulations.space import PatternLimitError, PatternSet, PatternSpace, mask_bits
from siftopt.io.profiles import Profile
from siftopt.model.budgets import Budgets
from siftopt.model.problem import ProblemData
from siftopt.result import INFEASIBLE, TIME_LIMIT, BackendOutcome


def solve_cpsat_patterns(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                         warm_start: np.ndarray | None = None,
                         options: ExactOptions | None = None) -> BackendOutcome:
    """Solve (P) with the CP-SAT pattern model (see the module docstring)."""
    options, started, deadline, warm_start = begin(data, time_limit_s, warm_start, options)
    check_cpsat_parameters(profile)

    def to_slots(reason: str, cuts: tuple[Cut, ...] = ()) -> BackendOutcome:
        return slot_fallback(slots_with_cuts, data, profile, deadline, warm_start, reason,
                             options, cuts)

    details: dict[str, Any] = {"formulation": "patterns"}
    try:
        start = pattern_start(data, options.patterns, details, started,
                              time.perf_counter() - started, "decode rule (no solver)",
                              deadline)
        if isinstance(start, BackendOutcome):
            return start
        pset = every_pattern(start.space, options.max_cpsat_patterns, "CP-SAT pattern",
                             deadline)
    except PatternLimitError as exc:
        return to_slots(str(exc))
    space = start.space
    model, x, n_energy, scaling = _build(space, pset)
    details.update(patterns=pset.num_patterns, **scaling)
    if warm_start is not None:
        _add_hints(space, pset, model, x, warm_start)
    solver, inclusion = new_solver(profile, remaining_s(deadline), scaling["max_row_sum"],
                                   max_lp=False)
    details.update(inclusion)
    build_time = time.perf_counter() - started
    progress = CpsatTrace(started, scaling["energy_unit_j"], n_energy)
    status = solver.solve(model, progress)
    progress.finish(solver, status)
    solve_time = time.perf_counter() - started - build_time
    details["cpsat_status"] = solver.status_name(status)
    details["trace"] = progress.events
    outcome = _outcome(space, pset, solver, status, x, n_energy, scaling["energy_unit_j"],
                       build_time, solve_time, details)
    return checked_pattern_answer(outcome, data, lambda cuts, why: to_slots(why, cuts))


def _build(space: PatternSpace, pset: PatternSet
           ) -> tuple[cp_model.CpModel, list, int, dict[str, Any]]:
    """The CP-SAT model: x per pattern, loads, element energies, the mean row. Returns the
    model, x, the number of energy terms and the scaling details."""
    data = space.data
    model = cp_model.CpModel()
    count = space.class_count[pset.pattern_class]
    x = [model.new_int_var(0, int(c), f"x[{p}]") for p, c in enumerate(count)]
    for g in range(space.num_classes):
        lo, hi = int(pset.start[g]), int(pset.start[g + 1])
        model.add(sum(x[lo:hi]) == int(space.class_count[g]))

    pos, node = mask_bits(pset.mask, data.num_nodes)
    users: dict[int, list[int]] = {}
    for p, m in zip(pos.tolist(), node.tolist(), strict=True):
        users.setdefault(m, []).append(p)
    tables = {}
    for m, ps in users.items():
        most = int(space.class_count[np.unique(pset.pattern_class[ps])].sum())
        tables[m] = data.tables[m - 1].energy_j[: min(int(data.caps[m]), most) + 1]
    unit = energy_unit(list(tables.values()))
    e = []
    for m, ps in sorted(users.items()):
        table_int = [int(v) for v in np.rint(tables[m] / unit)]
        n = model.new_int_var(0, len(table_int) - 1, f"n[{m}]")
        model.add(n == sum(x[p] for p in ps))
        e.append(add_table_energy(model, n, table_int, f"e[{m}]"))
    model.minimize(sum(e))

    scale = degradation_scale(1)
    max_row_sum = 0
    if space.mean_row:
        if float(pset.degradation.max(initial=0.0)) * scale >= MAX_SCALED:
            raise InputError("degradation constants too large for CP-SAT's integer scaling",
                             path="bounds")
        coef = Budgets.integer_coefficients(pset.degradation, scale)
        rhs = data.budgets.integer_mean_cap(scale)
        max_row_sum = int((coef * count).sum())
        if max_row_sum >= MAX_SCALED or rhs >= MAX_SCALED:
            raise InputError("accuracy budgets too large for CP-SAT's integer scaling "
                             f"(scaled row sum {max_row_sum})", path="accuracy")
        model.add(cp_model.LinearExpr.weighted_sum(x, coef.tolist()) <= rhs)
    return model, x, len(e), {"scale_degradation": scale, "energy_unit_j": unit,
                              "max_row_sum": max_row_sum}


def _outcome(space: PatternSpace, pset: PatternSet, solver: cp_model.CpSolver, status: int,
             x: list, n_energy: int, unit: float, build_time: float, solve_time: float,
             details: dict[str, Any]) -> BackendOutcome:
    """Map CP-SAT's answer; ``optimal`` only when the real bound certifies the real energy."""
    if status == cp_model.MODEL_INVALID:
        raise RuntimeError("CP-SAT rejected the pattern model")
    bound_j = real_bound_j(solver, status, n_energy, unit)
    if status == cp_model.INFEASIBLE:
        return BackendOutcome(INFEASIBLE, None, None, build_time, solve_time, details)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return BackendOutcome(TIME_LIMIT, None, bound_j, build_time, solve_time, details,
                              message="stopped before finding a solution")
    amounts = np.array([solver.value(v) for v in x], dtype=float)
    token_mask = assign_patterns(space, pset.pattern_class, pset.mask, amounts)
    actions = actions_for_patterns(space, token_mask)
    energy_j = masks_energy_j(space.data, token_mask)
    details.update(energy_model_j=energy_j, objective_scaled=solver.objective_value,
                   bound_scaled=solver.best_objective_bound)
    verdict, message = certified_status(solver, status, energy_j, bound_j, unit)
    return BackendOutcome(verdict, actions, bound_j, build_time, solve_time, details,
                          message=message)


def _add_hints(space: PatternSpace, pset: PatternSet, model: cp_model.CpModel, x: list,
               warm_start: np.ndarray) -> None:
    """Hint x from an (L, K) targets array (mapped to kept patterns); ignored if unusable."""
    if decision_options(space.data, warm_start) is None:
        return
    mask, deg = pattern_of_actions(space, warm_start)
    if not np.all(np.isfinite(deg)):
        return
    index = {(int(c), int(m)): p for p, (c, m) in
             enumerate(zip(pset.pattern_class, pset.mask, strict=True))}
    amounts = np.zeros(pset.num_patterns, dtype=np.int64)
    for t, m in enumerate(mask.tolist()):
        p = index.get((int(space.token_class[t]), int(m)))
        if p is None:
            return
        amounts[p] += 1
    for var, value in zip(x, amounts.tolist(), strict=True):
        model.add_hint(var, value)


__all__ = ["solve_cpsat_patterns"]
