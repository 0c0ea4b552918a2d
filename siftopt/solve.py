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

from siftopt.errors import InputError, PolicyRefusal
from siftopt.io.profiles import Profile, load_profile
from siftopt.model.evaluate import evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import DEGRADATION_TOL, ProblemData, problem_data
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome, SolveResult

EXACT_METHODS = ("highs", "cpsat", "brute")
#: ``slots``: the slot MILP (Pyomo + HiGHS, or CP-SAT); ``patterns``: the pattern master
#: (siftopt.formulations.patterns; HiGHS through highspy directly, or CP-SAT); ``auto``: see
#: :func:`choose_formulation`.
FORMULATIONS = ("auto", "slots", "patterns")
#: How a HiGHS model reaches the solver: ``pyomo`` (the declarative reference models),
#: ``direct`` (assembled with numpy, highspy ``passModel``), ``auto`` (``pyomo`` for slots,
#: ``direct`` for patterns). CP-SAT has one interface.
INTERFACES = ("auto", "pyomo", "direct")

#: A policy maps an instance to an (L, K) array of targets (docs/model.md §6).
Policy = Callable[[Instance], np.ndarray]


def infeasibility_reason(data: ProblemData) -> str | None:
    """A reason why (P) is infeasible that needs no search, or None.

    Checks each token's least possible degradation with every reachable node (loads
    ignored), and the mean budget against the mean of those least degradations.
    """
    inst = data.inst
    least = data.least_degradation()
    unreachable = [m for m in range(1, inst.num_nodes + 1) if data.caps[m] < 1]
    note = f" (unreachable nodes: {unreachable})" if unreachable else ""
    if inst.eps_token is not None:
        excess = least - inst.eps_token
        bad = np.flatnonzero(excess > DEGRADATION_TOL)
        if bad.size:
            t = int(bad[np.argmax(excess[bad])])
            return (f"token {t} cannot meet its budget eps_token={inst.eps_token[t]:.6g} even "
                    f"with every reachable node: its least possible degradation is "
                    f"{least[t]:.6g}{note}; {bad.size} token(s) in all")
    if inst.eps_mean is not None and least.mean() - inst.eps_mean > DEGRADATION_TOL:
        return (f"the mean budget eps_mean={inst.eps_mean:.6g} cannot be met even with every "
                f"reachable node: the least possible mean degradation is {least.mean():.6g}"
                f"{note}")
    return None


def capacity_reason(data: ProblemData) -> str:
    """Explanation for an infeasibility proved by a solver once :func:`infeasibility_reason`
    found nothing: the budgets need more tokens on some nodes than their caps allow."""
    caps = ", ".join(f"node {m}: {int(data.caps[m])}" for m in range(1, data.num_nodes + 1))
    limit = "outage" if data.inst.fading == "rayleigh" else "latency"
    return ("every token can meet its budget on its own, but not all at once: the "
            f"{limit} caps on the node loads ({caps}) leave no assignment that meets the "
            "accuracy budgets")


def choose_formulation(method: str, formulation: str) -> str:
    """The formulation ``formulation`` means for ``method``.

    ``auto`` is ``patterns`` for HiGHS and CP-SAT: for one token (decoding) it picks the
    cheapest feasible node set directly, with no MILP; for prefill its master is far tighter
    than the slot MILP (docs/performance.md: L = 1024 in well under a second with HiGHS where
    the slot model does not finish in 120 s). Both pattern backends fall back to the slot
    model on their own when the pattern space is too large (``details["fallback"]``). Brute
    force ignores the choice.
    """
    if formulation not in FORMULATIONS:
        raise InputError(f"unknown formulation {formulation!r} (known: "
                         f"{', '.join(FORMULATIONS)})", path="--formulation")
    if formulation != "auto":
        return formulation
    return "patterns" if method in ("highs", "cpsat") else "slots"


def check_interface(method: str, interface: str) -> None:
    """InputError for an unknown interface, or one other than ``auto`` for a method without
    a choice (only HiGHS has two)."""
    if interface not in INTERFACES:
        raise InputError(f"unknown interface {interface!r} (known: {', '.join(INTERFACES)})",
                         path="--interface")
    if interface != "auto" and method != "highs":
        raise InputError(f"interface {interface!r} applies to the highs method only",
                         path="--interface")


def run_backend(method: str, data: ProblemData, profile: Profile, time_limit_s: float | None,
                warm_start: np.ndarray | None, formulation: str = "slots",
                interface: str = "auto") -> BackendOutcome:
    formulation = choose_formulation(method, formulation)
    if method == "highs":
        return _run_highs(data, profile, time_limit_s, warm_start, formulation, interface)
    if method == "cpsat" and formulation == "patterns":
        from siftopt.backends.cpsat.patterns import solve_cpsat_patterns
        return solve_cpsat_patterns(data, profile, time_limit_s=time_limit_s,
                                    warm_start=warm_start)
    if method == "cpsat":
        from siftopt.backends.cpsat.slots import solve_cpsat
        return solve_cpsat(data, profile, time_limit_s=time_limit_s, warm_start=warm_start)
    if method == "brute":
        from siftopt.backends.brute import solve_brute
        return solve_brute(data, time_limit_s=time_limit_s)
    raise InputError(f"unknown exact method {method!r}", path="--method")


def _run_highs(data: ProblemData, profile: Profile, time_limit_s: float | None,
               warm_start: np.ndarray | None, formulation: str, interface: str
               ) -> BackendOutcome:
    """The HiGHS backend for a formulation and an interface (see :data:`INTERFACES`)."""
    if interface == "auto":
        interface = "direct" if formulation == "patterns" else "pyomo"
    if formulation == "patterns" and interface == "direct":
        from siftopt.backends.highs.direct import solve_highs_patterns as backend
    elif formulation == "patterns":
        from siftopt.backends.highs.pyomo_patterns import solve_highs_pyomo_patterns as backend
    elif interface == "direct":
        from siftopt.backends.highs.direct import solve_highs_slots as backend
    else:
        from siftopt.backends.highs.pyomo_slots import solve_highs as backend
    return backend(data, profile, time_limit_s=time_limit_s, warm_start=warm_start)


def solve_exact(inst: Instance, method: str = "highs", *, profile: Profile | None = None,
                time_limit_s: float | None = None,
                warm_start: np.ndarray | None = None, formulation: str = "auto",
                interface: str = "auto") -> SolveResult:
    """Solve (P) exactly with ``highs``, ``cpsat`` or ``brute`` (tiny instances only), in the
    given formulation (``auto``, ``slots``, ``patterns``; :func:`choose_formulation`) and,
    for HiGHS, through the given interface (:data:`INTERFACES`)."""
    profile = profile or load_profile(None)
    limit = time_limit_s if time_limit_s is not None else profile.time_limit_s
    started = time.perf_counter()
    data = problem_data(inst)
    choose_formulation(method, formulation)  # reject unknown names early
    check_interface(method, interface)
    if warm_start is not None and np.shape(warm_start) != inst.topk_experts.shape:
        raise InputError(f"warm start must have shape {inst.topk_experts.shape}, got "
                         f"{np.shape(warm_start)}", path="warm_start")
    reason = infeasibility_reason(data)
    if reason is not None:
        return SolveResult(method=method, status=INFEASIBLE, evaluation=None, dual_bound_j=None,
                           build_time_s=time.perf_counter() - started, solve_time_s=0.0,
                           message=reason, details={"proved_by": "per-token bound"})
    outcome = run_backend(method, data, profile, limit, warm_start, formulation, interface)
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
    return SolveResult(method=method, status=status, evaluation=evaluation, dual_bound_j=dual,
                       build_time_s=outcome.build_time_s, solve_time_s=outcome.solve_time_s,
                       message=message, details=outcome.details)


def resolve_policy(method: str) -> Policy:
    """A policy by registered name or ``module.path:function``; InputError if unknown."""
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
        return func
    try:
        from siftopt.policies import POLICIES
    except ModuleNotFoundError:
        POLICIES = {}  # noqa: N806
    if method not in POLICIES:
        known = ", ".join([*EXACT_METHODS, *POLICIES])
        raise InputError(f"unknown method {method!r} (known: {known}; or module.path:function "
                         "for a policy of your own)", path="--method")
    return POLICIES[method]


def solve_policy(inst: Instance, method: str) -> SolveResult:
    """Run a policy and evaluate its actions. Status: ``feasible`` or ``infeasible``.

    A policy may raise :class:`PolicyRefusal` (e.g. past its size limit); that is reported
    as an InputError naming the method.
    """
    policy = resolve_policy(method)
    started = time.perf_counter()
    actions = policy(inst)
    elapsed = time.perf_counter() - started
    evaluation = evaluate(inst, np.asarray(actions))
    status = FEASIBLE if evaluation.feasible else INFEASIBLE
    message = "" if evaluation.feasible else "; ".join(v.message for v in evaluation.violations)
    return SolveResult(method=method, status=status, evaluation=evaluation, dual_bound_j=None,
                       build_time_s=0.0, solve_time_s=elapsed, message=message)


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
          warm_start: list[str] | None = None, interface: str = "auto") -> SolveResult:
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
                         formulation=formulation, warm_start=start, interface=interface)
    if warm_start:
        result.details["warm_start_policy"] = None if best is None else best[0]
        result = dataclasses.replace(result, build_time_s=result.build_time_s + spent)
    return result


__all__ = ["EXACT_METHODS", "FORMULATIONS", "INTERFACES", "TIME_LIMIT", "best_policy_start",
           "check_interface", "choose_formulation", "infeasibility_reason", "resolve_policy",
           "solve", "solve_exact", "solve_policy"]
