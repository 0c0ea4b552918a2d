"""What every exact backend shares, whatever its solver: time left, the warm-start check, the
budget rule on a decision and the budget-cut loop, and the set-up of the pattern models
(their decode rule, their verdict when a token has no pattern, their hand-over to a slot
model).

**Budget rows are relaxations; the rule decides.** Every model writes its accuracy rows from
:class:`siftopt.model.budgets.Budgets` so that each decision the rule accepts satisfies
them. A solver may still return a decision whose degradation lies a hair above the rule
(row margins, feasibility tolerances, integer rounding), so no backend reports a decision
before the rule has accepted it: the slot models run :func:`budget_cuts`, which re-solves
with no-good cuts until the rule accepts the model's optimum, and the pattern models hand a
rejected decision to their slot model with its cuts (:func:`checked_pattern_answer`). A cut
removes only decisions the rule rejects, so every model stays a relaxation of (P): its
optimum accepted by the rule is an optimum of (P), and the bound of any round is a valid
lower bound.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from siftopt.backends.options import ExactOptions
from siftopt.errors import InputError
from siftopt.formulations.decode import decode_rule_applies, masks_energy_j, one_token_energy
from siftopt.formulations.enumerate import (
    cheapest_patterns,
    engine_for,
    enumerate_patterns,
)
from siftopt.formulations.recover import options_for_patterns
from siftopt.formulations.space import (
    PatternLimitError,
    PatternOptions,
    PatternSet,
    PatternSpace,
    pattern_space,
)
from siftopt.io.profiles import Profile
from siftopt.model.budgets import token_degradation
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

# ---- time and warm starts ---------------------------------------------------------------------


def deadline_of(started: float, time_limit_s: float | None) -> float | None:
    """The ``time.perf_counter`` instant a backend started at ``started`` must stop."""
    return None if time_limit_s is None else started + time_limit_s


def remaining_s(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (``time.perf_counter`` clock; at least 1 ms), or
    None without a deadline."""
    return None if deadline is None else max(deadline - time.perf_counter(), 1e-3)


def past(deadline: float | None) -> bool:
    return deadline is not None and time.perf_counter() > deadline


def begin(data: ProblemData, time_limit_s: float | None, warm_start: np.ndarray | None,
          options: ExactOptions | None
          ) -> tuple[ExactOptions, float, float | None, np.ndarray | None]:
    """What every backend does first: ``(options or the defaults, start instant, deadline,
    checked warm start)`` (``time.perf_counter`` clock)."""
    started = time.perf_counter()
    return (options or ExactOptions(), started, deadline_of(started, time_limit_s),
            check_warm_start(data, warm_start))


def check_warm_start(data: ProblemData, warm_start: np.ndarray | None) -> np.ndarray | None:
    """The warm start as an array; InputError unless it has the ``(L, K)`` shape of actions.
    Its values are not checked here: a target outside a slot's actions only makes the
    start unusable."""
    if warm_start is None:
        return None
    actions = np.asarray(warm_start)
    shape = data.inst.topk_experts.shape
    if actions.shape != shape:
        raise InputError(f"warm start must have shape {shape}, got {actions.shape}",
                         path="warm_start")
    return actions


# ---- the budget rule on a decision --------------------------------------------------------------


def decision_options(data: ProblemData, actions: np.ndarray) -> np.ndarray | None:
    """The option index of every slot of an ``(L, K)`` targets array, or None when some
    target is not one of its slot's actions. (Within a slot targets are distinct.)"""
    targets = np.asarray(actions).reshape(-1)
    if targets.size != data.num_slots:
        return None
    counts = np.diff(data.slot_start)
    hit = np.flatnonzero(data.opt_target == np.repeat(targets, counts))
    return hit if hit.size == data.num_slots else None


def decision_degradation(data: ProblemData, options: np.ndarray) -> np.ndarray:
    """``(L,)`` degradations of one option per slot: ``w·c`` summed in slot order by
    :func:`~siftopt.model.budgets.token_degradation`, the evaluator's own floats."""
    shape = data.inst.topk_experts.shape
    return token_degradation(data.opt_degradation[np.asarray(options)].reshape(shape))


def decision_loads(data: ProblemData, options: np.ndarray) -> np.ndarray:
    """``(M + 1,)`` node loads (tokens sent to each node) of one option per slot."""
    node = data.opt_node[np.asarray(options)]
    remote = node >= 1
    pairs = np.unique(data.slot_token[remote] * (data.num_nodes + 1) + node[remote])
    return np.bincount(pairs % (data.num_nodes + 1), minlength=data.num_nodes + 1)


def decision_energy_j(data: ProblemData, options: np.ndarray) -> float:
    """``Σ_m E_m(n_m)`` in J of one option per slot, by ``data``'s tables."""
    loads = decision_loads(data, options)
    return float(sum(data.tables[m - 1].energy(int(loads[m]))
                     for m in range(1, data.num_nodes + 1)))


@dataclass(frozen=True)
class Cut:
    """A no-good cut: the given options (at most one per slot) are never all chosen."""

    options: tuple[int, ...]


def rule_cuts(data: ProblemData, options: np.ndarray) -> tuple[Cut, ...]:
    """Cuts that remove a decision the budget rule rejects; ``()`` when the rule accepts it.

    Tokens over their own budget: one cut per token, forbidding its exact combination of
    actions (every decision with that combination gives the token the same degradation, so
    the cut is valid for every decision). Otherwise, a decision over the mean budget only:
    one cut forbidding the whole decision.
    """
    budgets = data.budgets
    degradation = decision_degradation(data, options)
    k = data.inst.top_k
    per_token = np.asarray(options).reshape(-1, k)
    bad = np.flatnonzero(~budgets.token_ok(degradation))
    if bad.size:
        return tuple(Cut(tuple(int(o) for o in per_token[t])) for t in bad)
    if not budgets.mean_ok(degradation):
        return (Cut(tuple(int(o) for o in np.asarray(options))),)
    return ()


def accepted_start(data: ProblemData, warm_start: np.ndarray | None
                   ) -> tuple[np.ndarray, float] | None:
    """A warm start as ``(actions, energy J)`` if it is a decision within the load caps that
    the budget rule accepts, else None."""
    if warm_start is None:
        return None
    options = decision_options(data, warm_start)
    if options is None or rule_cuts(data, options):
        return None
    if np.any(decision_loads(data, options)[1:] > data.caps[1:]):
        return None
    return np.asarray(warm_start, dtype=np.int64), decision_energy_j(data, options)


# ---- goal 4 of issue 14: never "no solution" at a time limit ---------------------------------


def policy_incumbent(data: ProblemData, deadline: float | None = None
                     ) -> tuple[np.ndarray, float, str] | None:
    """The accepted decision (:func:`accepted_start`) of least energy among the answers of
    ``sift-decode`` and ``sift-price``, as ``(actions, energy J, policy)``, or None.

    Bounded by ``deadline`` (``time.perf_counter`` instant): ``sift-decode`` (one pass of the
    exact per-token rule) always runs, even past the deadline — it is the slack of a
    time-limited answer (0.02–0.8 s up to L = 1024, M = 16); ``sift-price`` then runs as many
    price iterations (each about one decode pass, :func:`~siftopt.policies.price.sift_price_run`)
    as fit in the time left, none when none fits. Without a deadline both run in full. A
    policy that refuses the instance is skipped (the price iteration uses the same per-token
    rule, so a refused decode skips both).
    """
    from siftopt.errors import PolicyRefusal
    from siftopt.policies.common import policy_targets
    from siftopt.policies.decode import sift_decode
    from siftopt.policies.price import MAX_PRICE_ITERATIONS, sift_price_run

    best = None

    def consider(targets: np.ndarray, method: str) -> None:
        nonlocal best
        known = accepted_start(data, policy_targets(targets))
        if known is not None and (best is None or known[1] < best[1]):
            best = (known[0], known[1], method)

    began = time.perf_counter()
    try:
        consider(sift_decode(data.inst), "sift-decode")
    except PolicyRefusal:
        return None
    one_pass = max(time.perf_counter() - began, 1e-6)
    iterations = MAX_PRICE_ITERATIONS
    if deadline is not None:
        iterations = min(iterations, int((deadline - time.perf_counter()) / one_pass))
    if iterations >= 1:
        with contextlib.suppress(PolicyRefusal):
            consider(sift_price_run(data.inst, max_iterations=iterations).actions, "sift-price")
    return best


def at_time_limit(outcome: BackendOutcome, data: ProblemData, deadline: float | None
                  ) -> BackendOutcome:
    """Any backend's answer, completed so that a time limit never leaves "no solution".

    An outcome stopped at its limit (``time_limit``, or ``feasible`` with optimality
    unproved) returns the best decision known: the backend's, or the policies' best accepted
    answer (:func:`policy_incumbent`, bounded by ``deadline``) if it is cheaper or the
    backend has none (``details["incumbent_policy"]``), as ``feasible``; ``time_limit``
    stays only when neither has one. Its bound is the backend's, or 0 J, the trivial bound
    (energies are non-negative), when it gave none. Other outcomes are returned unchanged.
    """
    if outcome.status not in (TIME_LIMIT, FEASIBLE):
        return outcome
    bound = outcome.dual_bound_j if outcome.dual_bound_j is not None else 0.0
    known = policy_incumbent(data, deadline)
    if outcome.actions is not None:
        mine = decision_options(data, outcome.actions)
        if known is None or mine is None or decision_energy_j(data, mine) <= known[1]:
            return dataclasses.replace(outcome, status=FEASIBLE, dual_bound_j=bound)
    elif known is None:
        return dataclasses.replace(outcome, status=TIME_LIMIT, dual_bound_j=bound)
    assert known is not None
    details = dict(outcome.details)
    details["incumbent_policy"] = known[2]
    reason = outcome.message or ("stopped before finding a solution" if outcome.actions is None
                                 else "stopped before proving optimality")
    return dataclasses.replace(outcome, status=FEASIBLE, actions=known[0], dual_bound_j=bound,
                               details=details,
                               message=f"{reason}; returning the best policy answer ({known[2]})")


#: One solve of a model with the given cuts added: ``solve_once(cuts) -> BackendOutcome``.
SolveOnce = Callable[[tuple[Cut, ...]], BackendOutcome]


def budget_cuts(solve_once: SolveOnce, data: ProblemData, max_rounds: int, *,
                deadline: float | None = None, cuts: Sequence[Cut] = (),
                known: tuple[np.ndarray, float] | None = None) -> BackendOutcome:
    """Solve until the budget rule accepts the model's answer; never ``optimal`` otherwise.

    Each round solves the model with every cut so far (``cuts`` to start with). An answer
    the rule accepts is returned with its status. A rejected one gets :func:`rule_cuts` and
    the model is solved again, while rounds and time remain. The model with cuts stays a
    relaxation of (P), so a rejected optimum's energy, and every round's bound, is a valid
    lower bound (``dual_bound_j`` is the best of them); and an infeasible round proves (P)
    infeasible. If no round gives an accepted decision: ``feasible`` with ``known`` (an
    accepted decision, e.g. the warm start from :func:`accepted_start`) if there is one,
    else ``time_limit`` with no actions. Times add up over the rounds; ``details`` are the
    last round's, with ``budget_cuts`` (the number of cuts) when there were any and a
    ``trace`` in which rejected answers carry no upper bound.
    """
    cuts = list(cuts)
    seen = {cut.options for cut in cuts}
    lower: float | None = None
    build = solve = 0.0
    traces: list[tuple[list[dict[str, Any]], bool]] = []
    reason = f"the budget rule rejected the answer of each of {max_rounds} rounds"
    last: BackendOutcome | None = None
    for _ in range(max(max_rounds, 1)):
        last = solve_once(tuple(cuts))
        build += last.build_time_s
        solve += last.solve_time_s
        if last.status != INFEASIBLE and last.dual_bound_j is not None:
            lower = last.dual_bound_j if lower is None else max(lower, last.dual_bound_j)
        if last.actions is None:
            traces.append((last.details.get("trace", []), True))
            if last.status == INFEASIBLE:
                if cuts and not last.message:
                    last = dataclasses.replace(
                        last, message="no decision meets the accuracy budgets within the load "
                        f"caps ({len(cuts)} cut(s) removed decisions over a budget by more "
                        "than its tolerance)")
                return _with_rounds(last, cuts, traces, build, solve, None)
            reason = last.message or "stopped before finding a solution"
            break
        options = decision_options(data, last.actions)
        new = rule_cuts(data, options) if options is not None else ()
        traces.append((last.details.get("trace", []), not new))
        if not new:
            return _with_rounds(last, cuts, traces, build, solve, lower)
        fresh = [cut for cut in new if cut.options not in seen]
        if not fresh:
            reason = "the solver returned a decision that its cuts forbid"
            break
        cuts += fresh
        seen.update(cut.options for cut in fresh)
        if past(deadline):
            reason = "time ran out while cutting off decisions the budget rule rejects"
            break
    assert last is not None
    if known is not None:
        done = dataclasses.replace(last, status=FEASIBLE, actions=known[0],
                                   message=f"{reason}; returning the warm start")
    else:
        done = dataclasses.replace(last, status=TIME_LIMIT, actions=None, message=reason)
    return _with_rounds(done, cuts, traces, build, solve, lower)


def _with_rounds(outcome: BackendOutcome, cuts: list[Cut],
                 traces: list[tuple[list[dict[str, Any]], bool]], build: float, solve: float,
                 lower: float | None) -> BackendOutcome:
    """The loop's outcome: summed times, the best bound, the cut count and merged trace."""
    if not cuts:
        return dataclasses.replace(outcome, build_time_s=build, solve_time_s=solve)
    details = dict(outcome.details)
    details["budget_cuts"] = len(cuts)
    details["budget_cut_rounds"] = len(traces)
    details["trace"] = _merged_trace(traces)
    bound = outcome.dual_bound_j
    if outcome.status != INFEASIBLE and lower is not None:
        bound = lower if bound is None else max(bound, lower)
    return dataclasses.replace(outcome, dual_bound_j=bound, build_time_s=build,
                               solve_time_s=solve, details=details)


def _merged_trace(traces: list[tuple[list[dict[str, Any]], bool]]) -> list[dict[str, Any]]:
    """Events of every round in order; a rejected round's solutions are no upper bounds, and
    lower bounds never fall (each round's bound is valid for (P))."""
    out, best = [], None
    for events, accepted in traces:
        for event in events:
            event = dict(event)
            if not accepted:
                event["upper_bound_j"] = None
            low = event.get("lower_bound_j")
            if low is not None:
                best = low if best is None else max(best, low)
                event["lower_bound_j"] = best
            out.append(event)
    return out


# ---- the pattern models ----------------------------------------------------------------------

#: A slot model with cuts: ``(data, profile, *, time_limit_s, warm_start, options, cuts)``.
SlotSolver = Callable[..., BackendOutcome]


def every_pattern(space: PatternSpace, limit: int, model: str,
                  deadline: float | None = None) -> PatternSet:
    """All non-dominated patterns, for a model that holds every one of them; raises
    :class:`PatternLimitError` past ``limit`` of them (``model`` names the model).
    ``deadline`` only chooses the enumeration engine (:func:`engine_for`)."""
    pset = enumerate_patterns(space, engine=engine_for(deadline))
    if pset.num_patterns > limit:
        raise PatternLimitError(f"{pset.num_patterns} patterns ({model} limit {limit})")
    return pset


def no_pattern_outcome(space: PatternSpace, pattern_class: np.ndarray, details: dict[str, Any],
                       started: float) -> BackendOutcome | None:
    """``infeasible`` naming a token whose class has none of the patterns (no set of
    reachable nodes meets its budget), or None when every class has one."""
    missing = np.setdiff1d(np.arange(space.num_classes), pattern_class)
    if not missing.size:
        return None
    t = int(space.class_rep[missing[0]])
    return BackendOutcome(INFEASIBLE, None, None, time.perf_counter() - started, 0.0, details,
                          message=f"token {t} cannot meet its accuracy budget with any set "
                          "of reachable nodes")


@dataclass(frozen=True, eq=False)
class PatternStart:
    """A pattern space ready for a master: the cheapest pattern per class at ``E_m(1)`` per
    node (energy units of ``ProblemData.energy_scale_j``) and the time that pricing took."""

    space: PatternSpace
    first: PatternSet
    pricing_s: float


def pattern_start(data: ProblemData, options: PatternOptions, details: dict[str, Any],
                  started: float, build_s: float, method: str,
                  deadline: float | None = None) -> PatternStart | BackendOutcome:
    """The set-up every pattern backend shares, or its final answer.

    Builds the pattern space and the cheapest pattern of each class; ``infeasible`` when a
    class has none; when the decode rule applies (one token, or linear tables without a mean
    row — :func:`~siftopt.formulations.decode.decode_rule_applies`) and the budget rule
    accepts its decision, ``optimal`` with no solver (``details["method"] = method``; time
    after ``build_s`` counts as solve time). Raises :class:`PatternLimitError` past the
    pattern limits.
    """
    space = pattern_space(data, options)
    priced = time.perf_counter()
    first = cheapest_patterns(space, one_token_energy(data)[1:] / data.energy_scale_j(),
                              engine=engine_for(deadline))
    pricing_s = time.perf_counter() - priced
    details["token_classes"] = space.num_classes
    infeasible = no_pattern_outcome(space, first.pattern_class, details, started)
    if infeasible is not None:
        return infeasible
    token_mask = first.mask[space.token_class]
    if decode_rule_applies(space, token_mask):
        chosen = options_for_patterns(space, token_mask).reshape(-1)
        if not rule_cuts(data, chosen):
            details["method"] = method
            # no model is built: the rule (slot tables, pricing, recovery) is the solve
            actions = data.opt_target[chosen].reshape(data.inst.topk_experts.shape)
            return BackendOutcome(OPTIMAL, actions, masks_energy_j(data, token_mask), build_s,
                                  time.perf_counter() - started - build_s, details)
    return PatternStart(space=space, first=first, pricing_s=pricing_s)


def slot_fallback(solve_slots: SlotSolver, data: ProblemData, profile: Profile,
                  deadline: float | None, warm_start: np.ndarray | None, reason: str,
                  options: Any, cuts: Sequence[Cut] = ()) -> BackendOutcome:
    """Solve with a slot model (and ``cuts``) in the time left; ``details["fallback"]``
    says why."""
    outcome = solve_slots(data, profile, time_limit_s=remaining_s(deadline),
                          warm_start=warm_start, options=options, cuts=tuple(cuts))
    outcome.details["fallback"] = f"slot formulation: {reason}"
    return outcome


def checked_pattern_answer(outcome: BackendOutcome, data: ProblemData,
                           fallback: Callable[[tuple[Cut, ...], str], BackendOutcome]
                           ) -> BackendOutcome:
    """A pattern model's answer once the budget rule has seen it.

    Kept patterns meet the per-token rule exactly, so only the mean budget (a relaxed row)
    can reject the decision; then ``fallback(cuts, reason)`` — the slot model with the cut
    of this decision — answers, with the pattern model's times added and the better of the
    two bounds (the pattern master is a relaxation of (P) as well).
    """
    if outcome.actions is None:
        return outcome
    options = decision_options(data, outcome.actions)
    cuts = rule_cuts(data, options) if options is not None else ()
    if not cuts:
        return outcome
    excess = data.budgets.mean_excess(decision_degradation(data, options))
    got = fallback(cuts, "the pattern model's decision breaks the budget rule (mean "
                         f"degradation {excess:+.3g} over the budget)")
    bound = got.dual_bound_j
    if got.status != INFEASIBLE and outcome.dual_bound_j is not None:
        bound = outcome.dual_bound_j if bound is None else max(bound, outcome.dual_bound_j)
    return dataclasses.replace(got, dual_bound_j=bound,
                               build_time_s=got.build_time_s + outcome.build_time_s,
                               solve_time_s=got.solve_time_s + outcome.solve_time_s)


__all__ = ["Cut", "PatternStart", "SlotSolver", "SolveOnce", "accepted_start", "at_time_limit",
           "budget_cuts",
           "check_warm_start", "checked_pattern_answer", "deadline_of", "decision_degradation",
           "decision_energy_j", "decision_loads", "decision_options", "every_pattern",
           "no_pattern_outcome", "past", "pattern_start", "policy_incumbent", "remaining_s",
           "rule_cuts", "slot_fallback"]
