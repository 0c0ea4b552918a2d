"""The pattern formulation of (P) in OR-Tools CP-SAT (small and medium instances).

The same master as :mod:`siftopt.backends.highs.direct` over *every* non-dominated pattern of
:mod:`siftopt.formulations.patterns` (no column generation: CP-SAT has no LP duals to price with):

* ``x[p]`` — integer ``0..count_g``: how many tokens of class g take pattern p;
  ``Σ_p x[p] = count_g`` per class;
* ``n[m] = Σ_{p ∋ m} x[p]`` with domain ``[0, n̂_m]`` and ``e[m] = table_m[n[m]]``
  (``AddElement``, exact for any table) plus the lower-hull cuts of the slot model;
* the mean budget, when binding: ``Σ_p ceil(D_p·Q)·x[p] ≤ floor(L(ε̄ + 2·SCALE_SLACK)·Q)``.

Integer scaling follows :mod:`siftopt.backends.cpsat.slots` (docs/model.md §3.5): degradation
coefficients rounded up, the budget down, energies in units of ``Σ_m max E_m / 2^40``. Here a
whole pattern's D is rounded once, so each token overstates ``D·Q`` by less than 1, and
``Q = degradation_scale(2)`` (``2/Q ≤ SCALE_SLACK``) keeps the promise of the slot model:
every accepted solution has mean ``≤ ε̄ + 0.5e-9`` and every solution with mean
``≤ ε̄ + 0.25e-9`` is accepted. Per-token budgets are met by every pattern
(``D ≤ ε_t + 0.5e-9``). Scaled row sums pass 2^31 as soon as L·Q does, so unless the profile
already sets ``presolve_inclusion_work_limit = 0`` it is forced to 0 (google/or-tools#5293),
as the slot backend does; ``details["presolve_inclusion_forced"]`` says so.

Decoding (and the other cases of :func:`siftopt.formulations.patterns.decode_rule_applies`) needs no
solver. Past :data:`MAX_CPSAT_PATTERNS` patterns, or past the enumeration limits, the CP-SAT
slot model is used instead (``details["fallback"]``).
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from siftopt.backends.cpsat.slots import (
    ENERGY_BITS,
    INCLUSION_LIMIT,
    INT32_MAX,
    MAX_SCALED,
    SCALE_SLACK,
    _lower_hull,
    _set_parameter,
    check_cpsat_parameters,
    degradation_scale,
    solve_cpsat,
)
from siftopt.backends.pattern_common import (
    every_pattern,
    no_pattern_outcome,
    remaining_s,
    slot_fallback,
)
from siftopt.backends.progress import CpsatTrace
from siftopt.errors import InputError
from siftopt.formulations.patterns import (
    PatternLimitError,
    actions_for_patterns,
    assign_patterns,
    cheapest_patterns,
    decode_rule_applies,
    mask_bits,
    masks_energy_j,
    one_token_energy,
    pattern_of_actions,
    pattern_space,
)
from siftopt.io.profiles import Profile
from siftopt.model.evaluate import energies_equal
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

#: Largest number of patterns handed to CP-SAT.
MAX_CPSAT_PATTERNS = 200_000


def solve_cpsat_patterns(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                         warm_start: np.ndarray | None = None) -> BackendOutcome:
    """Solve (P) with the CP-SAT pattern model (see the module docstring)."""
    started = time.perf_counter()
    deadline = None if time_limit_s is None else started + time_limit_s
    check_cpsat_parameters(profile)
    try:
        space = pattern_space(data)
        first = cheapest_patterns(space, one_token_energy(data)[1:] / data.energy_scale_j())
        details: dict[str, Any] = {"formulation": "patterns",
                                   "token_classes": space.num_classes}
        infeasible = no_pattern_outcome(space, first.pattern_class, details, started)
        if infeasible is not None:
            return infeasible
        pset = every_pattern(space, MAX_CPSAT_PATTERNS, "CP-SAT pattern")
    except PatternLimitError as exc:
        return slot_fallback(solve_cpsat, data, profile, deadline, warm_start, exc)
    token_mask = first.mask[space.token_class]
    if decode_rule_applies(space, token_mask):
        details["method"] = "decode rule (no solver)"
        # no model is built: the rule (slot tables, pricing, recovery) is the solve
        return BackendOutcome(OPTIMAL, actions_for_patterns(space, token_mask),
                              masks_energy_j(data, token_mask), 0.0,
                              time.perf_counter() - started, details)

    model, x, e, scaling = _build(space, pset)
    details.update(patterns=pset.num_patterns, **scaling)
    if warm_start is not None:
        _add_hints(space, pset, model, x, warm_start)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = profile.threads
    solver.parameters.linearization_level = 2
    for key, value in profile.cpsat.items():
        _set_parameter(solver.parameters, key, value)
    forced = profile.cpsat.get(INCLUSION_LIMIT) != 0 and scaling["max_row_sum"] > INT32_MAX
    if forced:
        setattr(solver.parameters, INCLUSION_LIMIT, 0)
    details["presolve_inclusion_forced"] = forced
    details[INCLUSION_LIMIT] = getattr(solver.parameters, INCLUSION_LIMIT)
    if deadline is not None:
        solver.parameters.max_time_in_seconds = remaining_s(deadline)
    build_time = time.perf_counter() - started
    progress = CpsatTrace(started, scaling["energy_unit_j"], len(e))
    status = solver.solve(model, progress)
    progress.finish(solver, status)
    solve_time = time.perf_counter() - started - build_time
    details["cpsat_status"] = solver.status_name(status)
    details["trace"] = progress.events
    return _outcome(space, pset, solver, status, x, len(e), scaling["energy_unit_j"],
                    build_time, solve_time, details)


def _build(space: Any, pset: Any) -> tuple[cp_model.CpModel, list, dict, dict[str, Any]]:
    """The CP-SAT model: x per pattern, loads, element energies, the mean row."""
    data = space.data
    inst = data.inst
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
    total = sum(float(t.max()) for t in tables.values())
    unit = total / 2**ENERGY_BITS if total > 0 else 1.0
    e: dict[int, cp_model.IntVar] = {}
    for m, ps in sorted(users.items()):
        table_int = [int(v) for v in np.rint(tables[m] / unit)]
        n = model.new_int_var(0, len(table_int) - 1, f"n[{m}]")
        model.add(n == sum(x[p] for p in ps))
        e[m] = model.new_int_var(min(table_int), max(table_int), f"e[{m}]")
        model.add_element(n, table_int, e[m])
        for k1, k2 in itertools.pairwise(_lower_hull(table_int)):
            rise = table_int[k2] - table_int[k1]
            model.add((k2 - k1) * e[m] - rise * n >= (k2 - k1) * table_int[k1] - rise * k1)
    model.minimize(sum(e.values()))

    scale = degradation_scale(2)
    max_row_sum = 0
    if space.mean_row:
        coef = np.ceil(pset.degradation * scale).astype(np.int64)  # exact: Q is 2^k
        rhs = math.floor((inst.num_tokens * inst.eps_mean
                          + inst.num_tokens * 2 * SCALE_SLACK) * scale)
        max_row_sum = int((coef * count).sum())
        if max_row_sum >= MAX_SCALED or rhs >= MAX_SCALED:
            raise InputError("accuracy budgets too large for CP-SAT's integer scaling "
                             f"(scaled row sum {max_row_sum})", path="accuracy")
        model.add(cp_model.LinearExpr.weighted_sum(x, coef.tolist()) <= rhs)
    return model, x, e, {"scale_degradation": scale, "energy_unit_j": unit,
                         "max_row_sum": max_row_sum}


def _outcome(space: Any, pset: Any, solver: cp_model.CpSolver, status: int, x: list,
             n_energy: int, unit: float, build_time: float, solve_time: float,
             details: dict[str, Any]) -> BackendOutcome:
    """Map CP-SAT's answer; ``optimal`` only when the real bound certifies the real energy."""
    if status == cp_model.MODEL_INVALID:
        raise RuntimeError("CP-SAT rejected the pattern model")
    bound_j = None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
        bound = solver.best_objective_bound
        if math.isfinite(bound):
            bound_j = max(0.0, (bound - n_energy / 2) * unit)
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
    if bound_j is not None and energies_equal(energy_j, bound_j):
        return BackendOutcome(OPTIMAL, actions, bound_j, build_time, solve_time, details)
    message = ("stopped at the profile's gap limit" if status == cp_model.OPTIMAL
               else "stopped before proving optimality")
    return BackendOutcome(FEASIBLE, actions, bound_j, build_time, solve_time, details,
                          message=message)


def _add_hints(space: Any, pset: Any, model: cp_model.CpModel, x: list,
               warm_start: np.ndarray) -> None:
    """Hint x from an (L, K) targets array (mapped to kept patterns); ignored if unusable."""
    actions = np.asarray(warm_start)
    if actions.shape != space.data.inst.topk_experts.shape:
        raise InputError(f"warm start must have shape {space.data.inst.topk_experts.shape}, "
                         f"got {actions.shape}", path="warm_start")
    mask, deg = pattern_of_actions(space, actions)
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
