"""The pattern formulation of (P) as a declarative Pyomo model, solved by HiGHS: the readable
reference for the fast pattern master of :mod:`siftopt.backends.highs.direct`.

Symbols (docs/performance.md, "The pattern formulation"):

* ``G``: token classes (identical tokens), ``count[g]`` tokens each;
* ``P``: every non-dominated pattern p — a set ``C_p`` of remote nodes for a token of class
  ``g(p)``, with least degradation ``D_p``
  (:func:`siftopt.formulations.patterns.enumerate_patterns`);
* ``x[p] ∈ {0, …, count[g(p)]}``: how many tokens of class g(p) are sent to exactly ``C_p``;
* ``n[m]``: the load of node m, ``0 ≤ n[m] ≤ n̂_m``; energies as in the slot model
  (:func:`siftopt.backends.highs.pyomo_slots.node_energy`).

    minimise   Σ_m E_m(n[m])
    subject to Σ_{p: g(p) = g} x[p] = count[g]          for every class g
               n[m] = Σ_{p: m ∈ C_p} x[p]               for every remote node m
               Σ_p D_p x[p] ≤ Budgets.mean_row_upper()   if the mean budget has a row

Per-token budgets need no row: every kept pattern meets its token's rule exactly. A decision
the mean rule rejects (the row is a relaxation) goes to the Pyomo slot model with its cut
(:func:`siftopt.backends.base.checked_pattern_answer`). The model
holds every pattern, so it is meant for small and medium instances (the benchmark lists it as
``highs/patterns`` with ``interface = pyomo``); the direct master prices patterns lazily.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyomo.environ as pyo

from siftopt.backends.base import (
    Cut,
    begin,
    checked_pattern_answer,
    every_pattern,
    no_pattern_outcome,
    remaining_s,
    slot_fallback,
)
from siftopt.backends.highs.pyomo_slots import dual_bound_j, node_energy, run_highs, slots_with_cuts
from siftopt.backends.options import ExactOptions
from siftopt.formulations.recover import actions_for_patterns, assign_patterns
from siftopt.formulations.space import (
    PatternLimitError,
    PatternSet,
    PatternSpace,
    mask_bits,
    pattern_space,
)
from siftopt.io.profiles import Profile
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, OPTIMAL, BackendOutcome


def build_pattern_model(space: PatternSpace, pset: PatternSet) -> pyo.ConcreteModel:
    """The Pyomo pattern model over every pattern of ``pset`` (see the module docstring)."""
    data = space.data
    inst = data.inst
    count = space.class_count
    cls = pset.pattern_class
    position, node = mask_bits(pset.mask, data.num_nodes)
    patterns_on: dict[int, list[int]] = {}
    for p, m in zip(position.tolist(), node.tolist(), strict=True):
        patterns_on.setdefault(m, []).append(p)
    remote = sorted(patterns_on)  # a node with cap 0 gets n[m] ≤ 0, so no pattern on it
    start = pset.start

    model = pyo.ConcreteModel(name=f"{inst.name} (patterns)")
    model.G = pyo.RangeSet(0, space.num_classes - 1)
    model.P = pyo.RangeSet(0, pset.num_patterns - 1)
    model.M = pyo.Set(initialize=remote, ordered=True)
    model.x = pyo.Var(model.P, domain=pyo.NonNegativeIntegers,
                      bounds=lambda _, p: (0, int(count[cls[p]])))
    model.n = pyo.Var(model.M, domain=pyo.NonNegativeReals,
                      bounds=lambda _, m: (0, int(data.caps[m])))
    model.one_pattern_per_token = pyo.Constraint(
        model.G, rule=lambda mdl, g: sum(mdl.x[p] for p in range(start[g], start[g + 1]))
        == int(count[g]))
    model.load_count = pyo.Constraint(
        model.M, rule=lambda mdl, m: mdl.n[m] == sum(mdl.x[p] for p in patterns_on[m]))
    model.energy = pyo.Objective(expr=node_energy(model, data, remote), sense=pyo.minimize)
    if space.mean_row:
        model.accuracy_mean = pyo.Constraint(
            expr=sum(float(pset.degradation[p]) * model.x[p] for p in model.P)
            <= data.budgets.mean_row_upper())
    model.energy_scale_j = data.energy_scale_j()
    return model


def solve_highs_pyomo_patterns(data: ProblemData, profile: Profile, *,
                               time_limit_s: float | None,
                               warm_start: np.ndarray | None = None,
                               options: ExactOptions | None = None) -> BackendOutcome:
    """Solve (P) with the Pyomo pattern model; past ``options.max_pyomo_patterns`` patterns
    (or the enumeration limits) the Pyomo slot model solves it (``details["fallback"]``).
    The Pyomo HiGHS interface takes no MIP start: the warm start goes to the slot model
    only."""
    options, started, deadline, warm_start = begin(data, time_limit_s, warm_start, options)

    def to_slots(reason: str, cuts: tuple[Cut, ...] = ()) -> BackendOutcome:
        return slot_fallback(slots_with_cuts, data, profile, deadline, warm_start, reason,
                             options, cuts)

    try:
        space = pattern_space(data, options.patterns)
        pset = every_pattern(space, options.max_pyomo_patterns, "Pyomo pattern model",
                             deadline)
    except PatternLimitError as exc:
        return to_slots(str(exc))
    details: dict[str, Any] = {"formulation": "patterns",
                               "interface": "pyomo.contrib.solver Highs",
                               "patterns": pset.num_patterns, "token_classes": space.num_classes,
                               "energy_unit_j": data.energy_scale_j()}
    infeasible = no_pattern_outcome(space, pset.pattern_class, details, started)
    if infeasible is not None:
        return infeasible
    model = build_pattern_model(space, pset)
    built = time.perf_counter()
    run = run_highs(model, profile, remaining_s(deadline))
    actions = None
    if run.status in (OPTIMAL, FEASIBLE):
        amounts = np.rint([model.x[p].value or 0.0 for p in model.P])
        token_mask = assign_patterns(space, pset.pattern_class, pset.mask, amounts)
        actions = actions_for_patterns(space, token_mask)
    outcome = BackendOutcome(run.status, actions, dual_bound_j(run, model.energy_scale_j),
                             (built - started) + run.overhead_s, run.highs_s, details)
    return checked_pattern_answer(outcome, data, lambda cuts, why: to_slots(why, cuts))


__all__ = ["build_pattern_model", "solve_highs_pyomo_patterns"]
