"""HiGHS models of (P) assembled directly with numpy and passed to highspy (no Pyomo).

Two formulations, both exact (docs/model.md §3.5):

* **patterns** (:func:`solve_highs_patterns`, here): the master over the node-set patterns
  of :mod:`siftopt.formulations.patterns` (:mod:`siftopt.backends.highs.master`), solved by
  column generation and reduced-cost fixing (:mod:`siftopt.backends.highs.colgen`). Decoding
  (L = 1), and prefill with linear tables, no mean row and per-token choices that fit the
  caps, need no MILP: the cheapest kept pattern per token is optimal
  (:func:`siftopt.backends.base.pattern_start`). Kept patterns meet the per-token budget
  rule exactly; a decision the mean rule rejects goes to the slot model with its cut
  (:func:`siftopt.backends.base.checked_pattern_answer`), as does an instance past the
  pattern limits (``details["fallback"]`` says why);
* **slots** (:func:`solve_highs_slots`, :mod:`siftopt.backends.highs.direct_slots`).

Exactness settings come from the profile (relative and absolute MIP gaps 0, feasibility
tolerances 1e-10 in the default profile); the LP phase takes the profile's non-MIP options.
Timings: ``solve_time_s`` is time in HiGHS plus pattern pricing (the column generation
subproblem); ``build_time_s`` is the rest (pattern space, model assembly, recovery of the
actions).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from siftopt.backends.base import (
    Cut,
    PatternStart,
    begin,
    checked_pattern_answer,
    decision_options,
    pattern_start,
    policy_incumbent,
    slot_fallback,
)
from siftopt.backends.highs.colgen import (
    ColumnGenerationError,
    NoIncumbentError,
    Trace,
    solve_every_pattern,
    solve_master,
)
from siftopt.backends.highs.common import check_highs_options
from siftopt.backends.highs.direct_slots import slots_with_cuts, solve_highs_slots
from siftopt.backends.options import ExactOptions
from siftopt.formulations.decode import mask_loads
from siftopt.formulations.recover import actions_for_patterns, assign_patterns, pattern_of_actions
from siftopt.formulations.space import PatternLimitError, PatternSpace
from siftopt.io.profiles import Profile
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, TIME_LIMIT, BackendOutcome

Chosen = tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def solve_highs_patterns(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                         warm_start: np.ndarray | None = None,
                         options: ExactOptions | None = None) -> BackendOutcome:
    """Solve (P) exactly with the pattern formulation (see the module docstring)."""
    options, started, deadline, warm_start = begin(data, time_limit_s, warm_start, options)
    check_highs_options(dict(profile.highs))  # even when no MILP is needed

    def to_slots(reason: str, cuts: tuple[Cut, ...] = ()) -> BackendOutcome:
        return slot_fallback(slots_with_cuts, data, profile, deadline, warm_start, reason,
                             options, cuts)

    details: dict[str, Any] = {"formulation": "patterns", "interface": "highspy passModel",
                               "energy_unit_j": data.energy_scale_j()}
    try:
        start = pattern_start(data, options.patterns, details, started,
                              time.perf_counter() - started, "decode rule (no MILP)",
                              deadline)
    except PatternLimitError as exc:
        return to_slots(str(exc))
    if isinstance(start, BackendOutcome):
        return start
    try:
        outcome = _solve(start, profile, deadline, warm_start, options, details, started)
    except PatternLimitError as exc:
        return to_slots(str(exc))
    return checked_pattern_answer(outcome, data, lambda cuts, why: to_slots(why, cuts))


def _solve(start: PatternStart, profile: Profile, deadline: float | None,
           warm_start: np.ndarray | None, options: ExactOptions, details: dict[str, Any],
           started: float) -> BackendOutcome:
    """The master's answer (column generation, or every pattern at once)."""
    space, data = start.space, start.space.data
    colgen = options.column_generation
    trace = Trace(started, data.energy_scale_j())
    trace.pricing_s += start.pricing_s
    warm = _warm_patterns(space, warm_start)
    details["warm_start"] = warm is not None
    if data.num_tokens <= colgen.direct_tokens:
        result, master, chosen, extra = solve_every_pattern(space, profile, deadline, warm,
                                                            trace, colgen)
    else:
        try:
            def known() -> Chosen | None:
                found = policy_incumbent(data, deadline)
                if found is None:
                    return None
                details["incumbent_policy"] = found[2]
                return _warm_patterns(space, found[0])

            result, master, chosen, extra = solve_master(space, profile, deadline, warm,
                                                         start.first, trace, colgen, known)
        except (NoIncumbentError, ColumnGenerationError) as exc:
            result, master, chosen, extra = solve_every_pattern(space, profile, deadline,
                                                                warm, trace, colgen)
            extra["note"] = f"column generation: {exc}; MILP over every pattern"
    details.update(extra)
    details["patterns_stored"] = len(master.store)
    details["trace"] = trace.events
    details["solver_s"] = trace.solver_s
    details["pricing_s"] = trace.pricing_s
    actions = None
    if chosen is not None:
        cls, mask, _ = master.store.arrays
        token_mask = assign_patterns(space, cls[chosen[0]], mask[chosen[0]], chosen[1])
        actions = actions_for_patterns(space, token_mask)
    status = result.status
    bound = None if result.bound is None else max(result.bound, 0.0) * data.energy_scale_j()
    message = ""
    if status == TIME_LIMIT and actions is None:
        known = policy_incumbent(data, deadline)
        if known is not None:
            actions = known[0]
            details["incumbent_policy"] = known[2]
            trace.improve(upper=known[1] / data.energy_scale_j())
            trace.add("policy incumbent", policy=known[2])
            message = f"time limit: the best feasible policy answer ({known[2]})"
            if bound is None:
                bound = max(trace.lower, 0.0) * data.energy_scale_j()
        else:
            message = "stopped before finding a solution"
    if status == TIME_LIMIT and actions is not None:
        status = FEASIBLE
        if bound is None:  # the best valid bound known (LP or Lagrangian)
            bound = max(trace.lower, 0.0) * data.energy_scale_j()
    solving = trace.solver_s + trace.pricing_s
    finished = time.perf_counter()
    return BackendOutcome(status, actions, bound, finished - started - solving, solving,
                          details, message=message)


def _warm_patterns(space: PatternSpace, warm_start: np.ndarray | None) -> Chosen | None:
    """A warm start as ``((class, mask, D), amounts)``, or None if absent or unusable."""
    data = space.data
    if warm_start is None or decision_options(data, warm_start) is None:
        return None
    mask, deg = pattern_of_actions(space, warm_start)
    if not np.all(np.isfinite(deg)):
        return None
    if space.mean_row and math.fsum(deg.tolist()) > data.budgets.mean_row_upper():
        return None
    if np.any(mask_loads(data, mask) > data.caps):
        return None
    keys = np.stack([space.token_class.astype(np.uint64), mask], axis=1)
    uniq, inverse, amounts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    deg_of = np.zeros(uniq.shape[0])
    deg_of[inverse.ravel()] = deg
    return (uniq[:, 0].astype(np.int64), uniq[:, 1], deg_of), amounts.astype(float)


__all__ = ["solve_highs_patterns", "solve_highs_slots"]
