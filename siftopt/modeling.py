"""Models users can extend: build siftopt's exact model, add a constraint, solve it exactly.

:func:`build_model` returns the solver's own model object — a Pyomo ``ConcreteModel`` or an
OR-Tools ``CpModel`` — whose components carry the names of docs/model.md §5 (MODEL.md §3.5):

Pyomo, ``formulation="slots"``
    ``a[t,k,j]`` (binary: slot k of token t served by expert j; j = its own expert = keep),
    ``s[t,k]`` (binary: skip), ``u[t,m]`` (binary: token t sent to remote node m), ``n[m]``
    (load of node m, tokens), ``D[t]`` (expression: degradation of token t), ``energy``
    (objective, in units of ``model.energy_scale_j`` J), constraints ``one_action``,
    ``sent_if_used``, ``used_if_sent``, ``load_count``, ``accuracy_token``, ``accuracy_mean``;
    sets ``A`` (the (t,k,j) of a), ``SLOTS``, ``TU``, ``M`` (remote nodes that can be used).
Pyomo, ``formulation="patterns"``
    ``x[p]`` (integer: tokens of pattern p's class that use node set p), ``n[m]``, ``energy``,
    ``one_pattern_per_token``, ``load_count``, ``accuracy_mean``; ``model.patterns`` holds the
    pattern set (class, node mask, least degradation of each p).
CP-SAT, ``formulation="slots"``
    ``model.a[o]`` (bool per slot option o of :class:`~siftopt.model.problem.ProblemData`),
    ``model.u[t, m]`` (bool), degradations scaled to integers; ``model.problem`` is the
    ProblemData that indexes the options.

:func:`solve_model` solves such a model with siftopt's exact settings (a profile), maps the
answer back to a :class:`~siftopt.model.decision.Decision` and evaluates it with the one
evaluator. Added constraints only shrink the feasible set, so an accepted answer is feasible
for (P); the status says whether it is optimal *for the extended model*.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from siftopt.api import InstanceLike, _profile, load
from siftopt.errors import InputError
from siftopt.io.profiles import Profile
from siftopt.model.evaluate import evaluate
from siftopt.model.problem import problem_data
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, SolveResult, Status

BACKENDS = ("pyomo", "cpsat")
FORMULATIONS = {"pyomo": ("slots", "patterns"), "cpsat": ("slots",)}


def build_model(instance: InstanceLike, backend: str = "pyomo", formulation: str = "slots"
                ) -> Any:
    """siftopt's exact model of ``instance`` as a Pyomo ``ConcreteModel`` (``backend="pyomo"``)
    or a CP-SAT ``CpModel`` (``"cpsat"``), in the ``slots`` or (Pyomo) ``patterns``
    formulation, with the component names of the module docstring."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})",
                         path="backend")
    if formulation not in FORMULATIONS[backend]:
        raise InputError(f"formulation {formulation!r} is not available for {backend} "
                         f"(known: {', '.join(FORMULATIONS[backend])})", path="formulation")
    inst = load(instance)
    data = problem_data(inst)
    if backend == "cpsat":
        return _cpsat_slots(data)
    if formulation == "slots":
        from siftopt.backends.highs.pyomo_slots import build_model as build

        model = build(data)
    else:
        model = _pyomo_patterns(data)
    model.siftopt_formulation = formulation
    model.siftopt_data = data
    return model


def _pyomo_patterns(data: Any) -> Any:
    from siftopt.backends.base import every_pattern
    from siftopt.backends.highs.pyomo_patterns import build_pattern_model
    from siftopt.formulations.space import PatternLimitError, pattern_space

    try:
        space = pattern_space(data)
        pset = every_pattern(space, 200_000, "Pyomo pattern model")
    except PatternLimitError as exc:
        raise InputError(f"the pattern model is too large to declare: {exc} (use "
                         "formulation='slots')", path="formulation") from None
    model = build_pattern_model(space, pset)
    model.patterns = pset
    model.pattern_space = space
    return model


def _cpsat_slots(data: Any) -> Any:
    from siftopt.backends.cpsat.slots import SlotModel

    built = SlotModel(data)
    if built.empty:
        raise InputError("the instance is infeasible before any search: some slot has no "
                         "action within its budget", path="instance")
    model: Any = built.model  # the CpModel, with its variables attached by name
    model.a, model.u, model.problem, model.siftopt_slot_model = built.a, built.u, data, built
    return model


def solve_model(model: Any, *, profile: str | Profile | None = None,
                time_limit: float | None = None) -> SolveResult:
    """Solve a model from :func:`build_model` (possibly extended) with the exact settings of
    ``profile`` (default: the ``default`` profile) and return an evaluated
    :class:`~siftopt.result.SolveResult` (``method`` = ``model:<backend>/<formulation>``)."""
    prof = _profile(profile)
    limit = time_limit if time_limit is not None else prof.time_limit_s
    if hasattr(model, "siftopt_slot_model"):
        return _solve_cpsat(model, prof, limit)
    data = getattr(model, "siftopt_data", None)
    if data is None:
        raise InputError("not a model built by siftopt.build_model", path="model")
    if model.siftopt_formulation == "slots":
        return _solve_pyomo_slots(model, data, prof, limit)
    return _solve_pyomo_patterns(model, data, prof, limit)


def _solve_pyomo_slots(model: Any, data: Any, profile: Profile, limit: float | None
                       ) -> SolveResult:
    """The budget-cut loop of the slot backends, on the user's (extended) model."""
    from siftopt.backends.base import budget_cuts, deadline_of, remaining_s
    from siftopt.backends.highs.pyomo_slots import (
        add_cuts,
        dual_bound_j,
        extract_actions,
        run_highs,
    )
    from siftopt.backends.options import ExactOptions
    from siftopt.result import BackendOutcome

    deadline = deadline_of(time.perf_counter(), limit)
    added = [0]  # cuts of this loop already in model.budget_cuts

    def solve_once(cuts: tuple[Any, ...]) -> BackendOutcome:
        add_cuts(model, cuts[added[0]:])
        added[0] = len(cuts)
        run = run_highs(model, profile, remaining_s(deadline))
        actions = extract_actions(model, data) if run.status in (OPTIMAL, FEASIBLE) else None
        return BackendOutcome(Status(run.status), actions, dual_bound_j(run, model.energy_scale_j),
                              run.overhead_s, run.highs_s)

    out = budget_cuts(solve_once, data, ExactOptions().max_cut_rounds, deadline=deadline)
    return _result(data, "model:pyomo/slots", out.status, out.actions, out.dual_bound_j,
                   out.build_time_s, out.solve_time_s, out.message)


def _solve_pyomo_patterns(model: Any, data: Any, profile: Profile, limit: float | None
                          ) -> SolveResult:
    """The pattern model decides per-token budgets exactly (patterns are enumerated by the
    rule); an answer the mean rule rejects (only within 1e-9 of the budget) is reported as
    such, never as optimal."""
    from siftopt.backends.highs.pyomo_slots import dual_bound_j, run_highs
    from siftopt.formulations.recover import actions_for_patterns, assign_patterns

    run = run_highs(model, profile, limit)
    actions = None
    if run.status in (OPTIMAL, FEASIBLE):
        pset, space = model.patterns, model.pattern_space
        amounts = np.rint([model.x[p].value or 0.0 for p in model.P])
        actions = actions_for_patterns(
            space, assign_patterns(space, pset.pattern_class, pset.mask, amounts))
    return _result(data, "model:pyomo/patterns", run.status, actions,
                   dual_bound_j(run, model.energy_scale_j), run.overhead_s, run.highs_s)


def _solve_cpsat(model: Any, profile: Profile, limit: float | None) -> SolveResult:
    from siftopt.backends.base import budget_cuts, deadline_of, remaining_s
    from siftopt.backends.options import ExactOptions

    built = model.siftopt_slot_model
    started = time.perf_counter()
    deadline = deadline_of(started, limit)
    out = budget_cuts(lambda cuts: built.solve(cuts, profile, remaining_s(deadline), started,
                                               0.0),
                      built.data, ExactOptions().max_cut_rounds, deadline=deadline)
    return _result(built.data, "model:cpsat/slots", out.status, out.actions,
                   out.dual_bound_j, out.build_time_s, out.solve_time_s, out.message)


def _result(data: Any, method: str, status: Status | str, actions: np.ndarray | None,
            bound: float | None, build_s: float, solve_s: float, message: str = ""
            ) -> SolveResult:
    inst = data.inst
    evaluation = None if actions is None else evaluate(inst, actions)
    if evaluation is not None and not evaluation.feasible:
        message = ("the solver's answer violates (P): "
                   + "; ".join(v.message for v in evaluation.violations))
        status = FEASIBLE if status == OPTIMAL else status
    if status == OPTIMAL and evaluation is not None:
        bound = evaluation.energy_j if bound is None else min(bound, evaluation.energy_j)
    if status == INFEASIBLE:
        message = message or "the (extended) model has no feasible decision"
    if status == TIME_LIMIT and not message:
        message = "stopped before finding a solution"
    return SolveResult(method=method, status=Status(status), evaluation=evaluation,
                       dual_bound_j=bound, build_time_s=max(0.0, build_s), solve_time_s=solve_s,
                       message=message, instance=inst)


__all__ = ["build_model", "solve_model"]
