"""One entry point for every method: exact backends and policies.

``solve(inst, method)`` runs an exact backend (``highs``, ``cpsat``, ``brute``) or a policy
(a name registered in :mod:`siftopt.policies`, or ``module.path:function`` for a user's own)
and returns a :class:`~siftopt.result.SolveResult` whose actions were evaluated by
:func:`siftopt.model.evaluate.evaluate` — no method reports its own energy.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Callable

import numpy as np

from siftopt import registry
from siftopt.backends.base import at_time_limit, check_warm_start, deadline_of
from siftopt.backends.options import ExactOptions
from siftopt.errors import InputError, PolicyRefusal
from siftopt.io.profiles import Profile, load_profile
from siftopt.model.budgets import mean_degradation
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import ProblemData, problem_data
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, SolveResult

#: The exact methods (from :mod:`siftopt.registry`).
EXACT_METHODS = registry.exact_methods()
FORMULATIONS = registry.FORMULATIONS
INTERFACES = registry.INTERFACES

#: A policy maps an instance to an (L, K) array of targets (docs/model.md §6).
Policy = Callable[[Instance], np.ndarray]


def infeasibility_reason(data: ProblemData) -> str | None:
    """A reason why (P) is infeasible that needs no search, or None.

    Checks each token's least possible degradation with every reachable node (loads
    ignored), and the mean budget against the mean of those least degradations.
    """
    inst = data.inst
    budgets = data.budgets
    least = data.least_degradation()
    unreachable = [m for m in range(1, inst.num_nodes + 1) if data.caps[m] < 1]
    note = f" (unreachable nodes: {unreachable})" if unreachable else ""
    # The decision that takes every slot's least option has exactly these degradations, and
    # every other decision has at least them (float sums are monotone): the rule on `least`
    # decides infeasibility exactly.
    bad = np.flatnonzero(~budgets.token_ok(least))
    if bad.size:
        excess = budgets.token_excess(least)
        t = int(bad[np.argmax(excess[bad])])
        return (f"token {t} cannot meet its budget eps_token={inst.eps_token[t]:.6g} even "
                f"with every reachable node: its least possible degradation is "
                f"{least[t]:.6g}{note}; {bad.size} token(s) in all")
    if not budgets.mean_ok(least):
        return (f"the mean budget eps_mean={inst.eps_mean:.6g} cannot be met even with every "
                f"reachable node: the least possible mean degradation is "
                f"{mean_degradation(least):.6g}{note}")
    return None


def capacity_reason(data: ProblemData) -> str:
    """Explanation for an infeasibility proved by a solver once :func:`infeasibility_reason`
    found nothing: the budgets need more tokens on some nodes than their caps allow."""
    caps = ", ".join(f"node {m}: {int(data.caps[m])}" for m in range(1, data.num_nodes + 1))
    limit = "outage" if data.inst.fading == "rayleigh" else "latency"
    return ("every token can meet its budget on its own, but not all at once: the "
            f"{limit} caps on the node loads ({caps}) leave no assignment that meets the "
            "accuracy budgets")


def solve_exact(inst: Instance, method: str = "highs", *, profile: Profile | None = None,
                time_limit_s: float | None = None,
                warm_start: np.ndarray | None = None, formulation: str = "auto",
                interface: str = "auto", options: ExactOptions | None = None) -> SolveResult:
    """Solve (P) exactly with ``highs``, ``cpsat`` or ``brute`` (tiny instances only), in the
    given formulation (``auto``, ``slots``, ``patterns``) and, for HiGHS, through the given
    interface (:data:`INTERFACES`); the registry resolves ``auto``
    (:func:`siftopt.registry.exact_backend`). ``options``: the backends' tuning knobs
    (:class:`~siftopt.backends.options.ExactOptions`; default: their documented defaults)."""
    profile = profile or load_profile(None)
    limit = time_limit_s if time_limit_s is not None else profile.time_limit_s
    started = time.perf_counter()
    data = problem_data(inst)
    backend = registry.exact_backend(method, formulation, interface)
    check_warm_start(data, warm_start)  # also where the pre-check below answers
    reason = infeasibility_reason(data)
    if reason is not None:
        return SolveResult(method=method, status=INFEASIBLE, evaluation=None, dual_bound_j=None,
                           build_time_s=time.perf_counter() - started, solve_time_s=0.0,
                           message=reason, backend=backend.name, proved_by="per-token bound",
                           instance=inst)
    try:
        outcome = backend.load()(data, profile, time_limit_s=limit, warm_start=warm_start,
                                 options=options)
    except InputError as error:  # a solver rejects a profile option: name the profile's file
        if error.file is None and (error.path or "").startswith(("highs.", "cpsat.")):
            raise InputError(error.detail, file=profile.file or f"profile {profile.name}",
                             path=error.path) from None
        raise
    # issue 14, goal 4: a time limit never leaves "no solution" (the policies' best answer)
    outcome = at_time_limit(outcome, data, deadline_of(started, limit))
    evaluation = None if outcome.actions is None else evaluate(inst, outcome.actions)
    status, message = outcome.status, outcome.message
    if status == INFEASIBLE and not message:
        message = capacity_reason(data)
    if evaluation is not None and not evaluation.feasible:
        # Solver tolerances let through a point the exact evaluator rejects: say so loudly.
        kinds = "; ".join(v.message for v in evaluation.violations)
        message = f"solver returned actions that violate the model: {kinds}"
        status = FEASIBLE if status == OPTIMAL else status
    dual = outcome.dual_bound_j
    if status == OPTIMAL and evaluation is not None:
        dual = evaluation.energy_j if dual is None else min(dual, evaluation.energy_j)
    info = dict(outcome.details)
    trace = tuple(info.pop("trace", ()) or ())
    return SolveResult(method=method, status=status, evaluation=evaluation, dual_bound_j=dual,
                       build_time_s=outcome.build_time_s, solve_time_s=outcome.solve_time_s,
                       message=message, backend=backend.name, trace=trace, solver_info=info,
                       instance=inst)


def resolve_policy(method: str) -> Policy:
    """A policy by registered name or ``module.path:function``; InputError if unknown.

    A ``module.path:function`` is a user policy ``function(view: PolicyInput) -> Decision``
    (:mod:`siftopt.policies.interface`)."""
    if ":" in method:
        module_name, _, func_name = method.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"cannot import policy module {module_name!r}: {exc}",
                             path="--method") from None
        func = getattr(module, func_name, None)
        if not callable(func):
            raise InputError(f"module {module_name!r} has no function {func_name!r}",
                             path="--method")
        from siftopt.policies.interface import as_targets_policy

        return as_targets_policy(func, method)
    return registry.policy(method).function


def solve_policy(inst: Instance, method: str) -> SolveResult:
    """Run a policy and evaluate its actions. Status: ``feasible`` or ``infeasible`` — or
    ``optimal`` when the policy also returned a lower bound
    (:class:`~siftopt.policies.common.PolicyAnswer`) that meets the evaluated energy within
    the equality of docs/model.md §3.4 (a certificate, as sift-prefill gives).

    A policy may raise :class:`PolicyRefusal` (e.g. past its size limit); that is reported
    as an InputError naming the method.
    """
    from siftopt.policies.common import policy_targets

    policy = resolve_policy(method)
    started = time.perf_counter()
    answer = policy(inst)
    elapsed = time.perf_counter() - started
    evaluation = evaluate(inst, policy_targets(answer))
    bound = getattr(answer, "dual_bound_j", None)
    status = FEASIBLE if evaluation.feasible else INFEASIBLE
    if evaluation.feasible and bound is not None and (
            bound >= evaluation.energy_j or energies_equal(float(bound), evaluation.energy_j)):
        status = OPTIMAL
    message = "" if evaluation.feasible else "; ".join(v.message for v in evaluation.violations)
    return SolveResult(method=method, status=status, evaluation=evaluation,
                       dual_bound_j=None if bound is None else float(bound),
                       build_time_s=0.0, solve_time_s=elapsed, message=message, instance=inst)


def best_policy_start(inst: Instance, methods: list[str]) -> tuple[str, SolveResult] | None:
    """The feasible result of least energy among the given policies, or None if none is
    feasible: a warm start for the exact backends. Policies that refuse are skipped."""
    best: tuple[str, SolveResult] | None = None
    for method in methods:
        try:
            result = solve_policy(inst, method)
        except PolicyRefusal:
            continue  # a policy past its documented size limit
        if result.feasible and (best is None or result.energy_j < best[1].energy_j):
            best = (method, result)
    return best


def solve(inst: Instance, method: str = "highs", *, profile: Profile | None = None,
          time_limit_s: float | None = None, formulation: str = "auto",
          warm_start: list[str] | None = None, interface: str = "auto",
          options: ExactOptions | None = None) -> SolveResult:
    """Solve an instance with any method (exact backend or policy); ``formulation`` applies
    to the exact backends. ``warm_start``: policy names; an exact backend starts from the
    best feasible one (:func:`best_policy_start`; ``details["warm_start_policy"]``), and its
    time counts in the build time."""
    if method not in EXACT_METHODS:
        return solve_policy(inst, method)
    start, started = None, time.perf_counter()
    if warm_start:
        best = best_policy_start(inst, warm_start)
        start = None if best is None else best[1].actions
    spent = time.perf_counter() - started
    result = solve_exact(inst, method, profile=profile, time_limit_s=time_limit_s,
                         formulation=formulation, warm_start=start, interface=interface,
                         options=options)
    if warm_start:
        result = dataclasses.replace(result, build_time_s=result.build_time_s + spent,
                                     warm_start_requested=True,
                                     warm_start_policy=None if best is None else best[0])
    return result


__all__ = ["EXACT_METHODS", "FORMULATIONS", "INTERFACES", "TIME_LIMIT", "best_policy_start",
           "infeasibility_reason", "resolve_policy", "solve", "solve_exact", "solve_policy"]
