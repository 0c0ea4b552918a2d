"""``sift-prefill``: a Lagrangian prefill policy that certifies its own gap (docs/policies.md §6).

1. **Patterns.** Tokens are grouped into classes of identical tokens and described by their
   non-dominated patterns (:mod:`siftopt.formulations.patterns`); the pool starts with each
   class's least-degradation pattern (:mod:`siftopt.policies.prefill_pool`). Small instances
   (at most :data:`FULL_POOL` patterns) get every pattern at once: the pool is complete.
2. **Dual.** The Lagrangian dual ``g(p, ν)`` of the node loads and of a binding mean budget
   (:mod:`siftopt.policies.prefill_dual`) is maximised over the pool by coordinate sweeps and
   smoothed Newton steps (:mod:`siftopt.policies.prefill_newton`); unless the pool is
   complete, every class is then **priced exactly** at the maximiser (pruned enumeration below
   the pool's best cost) and cheaper patterns join the pool, until a pricing finds none or
   after :data:`MAX_ROUNDS`. Large batches first run the same loop on an evenly spaced sample
   of :data:`SAMPLE_CLASSES` classes with the fluid-scaled node terms, whose prices start the
   batch (a pricing at good prices prunes far more). ``g`` at every exactly priced point is a
   lower bound on (P); the best one is returned (in J, rounded down by :data:`BOUND_RTOL`).
3. **Primal.** The fractional choice of the last dual point is rounded and improved by a
   local search on the exact tables that also restores the caps and the mean budget
   (:mod:`siftopt.policies.prefill_primal`).

No MILP or LP solver runs. The answer is a :class:`~siftopt.policies.common.PolicyAnswer`;
:func:`sift_prefill_run` also returns the run's details (bound, rounds, times, certificate);
:func:`lagrangian_bound` evaluates ``g`` at any point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from siftopt.errors import PolicyRefusal
from siftopt.formulations.enumerate import enumerate_patterns
from siftopt.formulations.recover import options_for_patterns
from siftopt.formulations.space import PatternLimitError, PatternSpace, pattern_space
from siftopt.model.budgets import TOL
from siftopt.model.instance import Instance
from siftopt.model.problem import ProblemData, problem_data
from siftopt.policies.common import PolicyAnswer, options_to_actions
from siftopt.policies.prefill_dual import NodeTerms, PoolDual
from siftopt.policies.prefill_loads import load_dp
from siftopt.policies.prefill_newton import DUAL_RTOL, DualSolution, maximise
from siftopt.policies.prefill_pool import PatternPool, least_degradation_patterns, price
from siftopt.policies.prefill_primal import (
    MOVES_PER_TOKEN,
    Pool,
    candidates,
    recover,
    round_weights,
)

#: Exact pricing rounds of the whole batch (each followed by a dual maximisation).
MAX_ROUNDS = 8
#: Up to this many patterns (an upper bound: ``Σ_g 2^{relevant nodes of g}``) every pattern is
#: enumerated at once: the pool is complete, no pricing round is needed, and the primal
#: search may use any pattern.
FULL_POOL = 30_000
#: Classes of the sample that sets the starting prices of large batches (0: no sample).
SAMPLE_CLASSES = 128
#: Pricing rounds of the sample.
SAMPLE_ROUNDS = 4
#: Accuracy (relative to |g|) of the pool dual in the sample and in the rounds of the batch
#: (a polish to prefill_newton.DUAL_RTOL precedes the last pricing if that is tighter).
SAMPLE_RTOL = 1e-3
ROUND_RTOL = 1e-8
#: Up to this many (token, pattern) moves the search may move a token to any pool pattern of
#: its class; beyond, to its MOVES_PER_TOKEN cheapest at the final prices.
ALL_MOVES = 50_000
#: Small instances (at most RESTART_TOKENS tokens) under a binding mean budget also start the
#: local search from each class's cheapest pattern at these multiples of the dual's
#: degradation price ν.
RESTART_FACTORS = (0.5, 2.0)
RESTART_TOKENS = 256
#: Relative amount by which the reported bound is rounded down (sums over many classes).
BOUND_RTOL = 1e-11
#: Prices are at most this multiple of the largest marginal energy of any node (a box that
#: keeps the pool dual bounded while the pool cannot meet the caps).
PRICE_CAP = 100.0
#: Relative smoothing error of the first Newton stage (cold start) and of a warm restart.
COLD_START = 0.1
WARM_START = 1e-4
#: Relative smoothing error of the batch's first Newton stage after a sample (its prices
#: are already near the batch's).
BATCH_START = 1e-3
#: Newton iterations per maximisation of the sample (its first pools often cannot meet the
#: caps: the dual runs to the price box, tens of iterations for prices that only start the
#: next pricing). L=1024 M=16 adaptive: sample phase 70 -> 40 ms CPU with 10; 7 (with the
#: τ ceiling of _loop) takes another 4-5 ms off L = 512-1024 M = 16 adaptive, same answers.
SAMPLE_BUDGET: int | None = 7
#: Accuracy of the batch rounds: the first to FIRST_RTOL, each later one to ADAPT times the
#: relative amount by which the last pricing lowered the pool dual (the width of the bracket
#: [certified bound, pool maximum] on max g), at least ROUND_RTOL and at most FIRST_RTOL;
#: a polish to prefill_newton.DUAL_RTOL precedes the last pricing.
FIRST_RTOL = 1e-3
ADAPT: float | None = 0.01
#: A batch round whose adapted accuracy is within this factor of the final one maximises to
#: the final accuracy at once: if its pricing then finds nothing the loop ends without a
#: separate polish and pricing (None: always the adapted accuracy). L=1024 M=16 adaptive:
#: 5 -> 4 batch pricings, about 7 ms.
POLISH_WITHIN: float | None = 100.0
#: The batch loop ends (after its polish) once a pricing lowers the pool dual by at most this
#: much (relative): the certified bound then equals the pool maximum to that accuracy, and
#: the patterns it still finds cannot raise it measurably.
STOP_RTOL: float | None = 1e-10


@dataclass(frozen=True)
class PrefillRun:
    """One run of ``sift-prefill``: the answer, the energy of its loads (J), the bound (J),
    whether the bound closes the gap (docs/model.md §3.4), and how the run went."""

    answer: PolicyAnswer
    energy_j: float
    feasible: bool
    certified: bool
    rounds: int = 0
    sample_rounds: int = 0
    newton_iterations: int = 0
    patterns: int = 0
    note: str = ""
    times_s: dict[str, float] = field(default_factory=dict)

    @property
    def dual_bound_j(self) -> float | None:
        return self.answer.dual_bound_j


class _Model:
    """Everything the loop shares: pattern space, pool, node terms, box, energy unit."""

    def __init__(self, data: ProblemData, space: PatternSpace) -> None:
        self.data, self.space = data, space
        self.unit = data.energy_scale_j()
        self.nodes = NodeTerms.from_tables(
            [t.energy_j[: t.cap + 1] / self.unit for t in data.tables],
            [bool(t.convex) for t in data.tables])
        self.mean_rhs = data.budgets.mean_row_upper() if space.mean_row else None
        self.pool = PatternPool(space.num_classes, data.num_nodes)
        self._full: tuple[int, PoolDual] | None = None  # the dual of all classes, by pool size
        self._scaled: dict[float, NodeTerms] = {}  # the sample's node terms, by fraction
        m = data.num_nodes
        first = np.array([t.energy_j[1] / self.unit if t.cap >= 1 else 0.0
                          for t in data.tables])
        slopes = [float(np.max(np.diff(t.energy_j[: t.cap + 1]), initial=0.0)) / self.unit
                  for t in data.tables]
        price_cap = PRICE_CAP * max(max(slopes, default=0.0), float(first.max(initial=0.0)), 1e-12)
        self.start = first.copy()
        self.upper = np.full(m, price_cap)
        self.coord_unit = np.ones(m)
        if self.mean_rhs is not None:
            gain = space.slots.local[:, :, None] - space.slots.remote
            gain = gain[np.isfinite(gain) & (gain > 0)]
            step = float(np.median(gain)) if gain.size else 1.0
            positive = first[first > 0]
            self.start = np.append(first, (float(np.median(positive)) if positive.size
                                           else 1.0) / step)
            self.upper = np.append(self.upper, price_cap * max(m, 1) / max(
                float(gain.min()) if gain.size else 1.0, 1e-12))
            self.coord_unit = np.append(self.coord_unit, step)

    def split(self, y: np.ndarray) -> tuple[np.ndarray, float]:
        m = self.data.num_nodes
        return y[:m], (float(y[m]) if self.mean_rhs is not None else 0.0)

    def dual(self, classes: np.ndarray | None = None) -> tuple[PoolDual, np.ndarray]:
        """The pool dual of all classes (kept while the pool does not grow: the pool only
        grows), or of a sample (fluid-scaled); and the pool rows."""
        cls, mask, deg, inc, start = self.pool.arrays
        counts = self.space.class_count.astype(float)
        if classes is None:
            if self._full is None or self._full[0] != len(self.pool):
                dual = PoolDual(self.nodes, counts, self.mean_rhs)
                dual.set_pool(cls, inc, deg, start, mask)
                self._full = (len(self.pool), dual)
            return self._full[1], np.arange(cls.size)
        sizes = start[classes + 1] - start[classes]
        local = np.repeat(np.arange(classes.size), sizes)
        # the classes' pool rows, in class order: start[g] + 0..size−1 for each g
        rows = (np.arange(int(sizes.sum()), dtype=np.int64)
                + np.repeat(start[classes] - (np.cumsum(sizes) - sizes), sizes))
        fraction = float(counts[classes].sum()) / float(counts.sum())
        if fraction not in self._scaled:  # the same sample every round: built once
            self._scaled[fraction] = self.nodes.scaled(fraction)
        dual = PoolDual(self._scaled[fraction], counts[classes],
                        None if self.mean_rhs is None else self.mean_rhs * fraction)
        dual.set_pool(local, inc[rows], deg[rows],
                      np.searchsorted(local, np.arange(classes.size + 1)).astype(np.int64),
                      mask[rows])
        return dual, rows


def _tau(dual: PoolDual, y: np.ndarray, relative: float, change: float = 0.0,
         value: float | None = None) -> float:
    """The temperature whose smoothing error is ``relative`` of ``|g(y)|``, or a tenth of
    ``change`` (how much the last pricing lowered the pool dual) if that is larger.
    ``value``: ``g(y)`` if the caller has it."""
    if value is None:
        value = dual.value(y)
    scale = max(abs(value), float(dual.counts.sum()) * 1e-12, 1e-300)
    error = max(relative * scale, 0.1 * change)
    return error / max(float(dual.counts @ np.log(np.maximum(np.diff(dual.start), 2))),
                       1e-300)


def _loop(model: _Model, y: np.ndarray, classes: np.ndarray | None, rounds: int,
          record: list[float], rtol: float, final_rtol: float | None,
          cold: float = COLD_START, budget: int | None = None
          ) -> tuple[np.ndarray, DualSolution | None, int, int]:
    """Price, then maximise the pool dual to ``rtol``, while pricing finds new patterns (at
    most ``rounds`` pricings). With ``final_rtol`` (the batch) the accuracy follows the
    pricing's change (:data:`ADAPT`), the loop also settles once a pricing changes the pool
    dual by at most :data:`STOP_RTOL`, and when it settles at a looser accuracy than
    ``final_rtol`` the dual is polished to it and priced once more. ``budget``: Newton
    iterations per maximisation. Returns the last point, its dual solution, pricings and
    Newton iterations. ``record`` gets the certified bound of every pricing of all classes
    (energy units)."""
    solution = None
    iterations = 0
    reached = None  # the pool dual's value at the last maximiser
    ceiling = np.inf  # the loop's first cold-start τ: no later maximisation starts warmer
    tolerance = rtol if ADAPT is None or final_rtol is None else FIRST_RTOL
    done = 0
    while done < rounds:
        done += 1
        prices, nu = model.split(y)
        priced = price(model.space, model.pool, prices, nu, classes)
        if classes is None:
            full, _ = model.dual()
            record.append(full.value(y, priced.phi))
        dual, _ = model.dual(classes)
        here = dual.value(y)
        change = 0.0 if reached is None else max(reached - here, 0.0)
        if solution is not None:
            settled = priced.new == 0 or (
                STOP_RTOL is not None and change <= STOP_RTOL * max(abs(here), 1e-300))
            if settled:
                if final_rtol is None or tolerance <= final_rtol:
                    break
                tolerance = final_rtol
            elif ADAPT is not None and final_rtol is not None:
                tolerance = min(max(ADAPT * change / max(abs(here), 1e-300), rtol),
                                FIRST_RTOL)
                if POLISH_WITHIN is not None and tolerance <= POLISH_WITHIN * final_rtol:
                    tolerance = final_rtol
        if solution is None or reached is None:
            tau0 = _tau(dual, y, cold, value=here)
            ceiling = _tau(dual, y, COLD_START, value=here)
        else:
            tau0 = min(_tau(dual, y, WARM_START, change, value=here),
                       max(solution.tau, _tau(dual, y, 0.0, change, value=here)), ceiling)
        solution = maximise(dual, y, model.upper, tau0, tolerance, model.coord_unit,
                            budget=budget)
        iterations += solution.iterations
        y = solution.y
        reached = dual.value(y)
    return y, solution, done, iterations


def _pattern_estimate(space: PatternSpace) -> int:
    """An upper bound on the number of patterns: ``2^r`` per class with r relevant nodes."""
    bits = space.relevant.sum(axis=1)
    return int(np.sum(np.power(2.0, np.minimum(bits, 60))))


def _sample(num_classes: int) -> np.ndarray | None:
    if SAMPLE_CLASSES <= 0 or num_classes <= 2 * SAMPLE_CLASSES:
        return None
    return np.unique(np.linspace(0, num_classes - 1, SAMPLE_CLASSES).round().astype(np.int64))


def _mean_limit(data: ProblemData) -> float | None:
    """The largest Σ_t D_t the primal search allows: a little inside the rule."""
    if not (data.budgets.mean_binds and data.num_tokens > 1):
        return None
    eps = float(data.budgets.eps_mean)  # type: ignore[arg-type]
    n = data.num_tokens
    return n * (eps + TOL) - 1e-12 * n * max(1.0, abs(eps))


def _primal(model: _Model, y: np.ndarray, tau: float, bound_j: float | None,
            complete: bool = False) -> tuple[np.ndarray, bool, float, float | None]:
    """Round the softmax weights at ``(y, τ)`` and search; returns per-token masks,
    feasibility, energy (J) and the load search's bound (J; None if it did not run).
    Restarts (small instances, binding mean budget) and the load search (a complete pool
    of a small batch, :func:`~siftopt.policies.prefill_loads.load_dp`) only run when the
    answer is not already within the bound ``bound_j`` (J)."""
    cls, mask, deg, inc, start = model.pool.arrays
    dual, _ = model.dual()
    pool = Pool(cls=cls, inc=inc, deg=deg, start=start)
    weights = dual.weights(y, tau)
    token_class = model.space.token_class
    counts = model.space.class_count
    first = round_weights(pool, weights, counts, token_class)
    limit = _mean_limit(model.data)
    costs = dual.pattern_costs(y)
    per_token = int(np.diff(start).max())
    if float(np.diff(start) @ counts) > ALL_MOVES:
        per_token = MOVES_PER_TOKEN
    moves = candidates(pool, costs, per_token)
    outcome = recover(pool, model.nodes, token_class, first, limit, moves)
    if not outcome.feasible and per_token < int(np.diff(start).max()):
        outcome = recover(pool, model.nodes, token_class, outcome.pattern, limit,
                          candidates(pool, costs, int(np.diff(start).max())))
    feasible = outcome.feasible and model.data.budgets.accepts(deg[outcome.pattern])
    pattern, energy = outcome.pattern, _energy(model, outcome.loads)

    def closed() -> bool:
        return feasible and bound_j is not None and energy - bound_j <= 1e-6 * energy

    dp_bound = None
    if complete and not closed():
        # a small batch: the exact search over node loads, if its state space is small
        upper = energy / model.unit * (1.0 + 1e-9) if feasible else np.inf
        found = load_dp(pool, model.nodes.tables, token_class,
                        np.inf if limit is None else limit,
                        np.inf if model.mean_rhs is None else model.mean_rhs, upper,
                        *model.split(y))
        if found is not None:
            dp_bound = max(0.0, found.bound * model.unit * (1.0 - BOUND_RTOL))
            bound_j = dp_bound if bound_j is None else max(bound_j, dp_bound)
            if found.pattern is not None and model.data.budgets.accepts(deg[found.pattern]):
                dp_energy = _energy(model, found.loads)
                if not feasible or dp_energy < energy:
                    pattern, energy, feasible = found.pattern, dp_energy, True
    if (limit is not None and per_token == int(np.diff(start).max()) and not closed()
            and model.data.num_tokens <= RESTART_TOKENS):
        # a small instance under a binding mean budget, where the LP is often not tight:
        # also start from each class's cheapest pattern at other degradation prices
        for factor in RESTART_FACTORS:
            shifted = y.copy()
            shifted[-1] *= factor
            alt = recover(pool, model.nodes, token_class,
                          _cheapest(dual, shifted, token_class, deg), limit, moves)
            alt_feasible = alt.feasible and model.data.budgets.accepts(deg[alt.pattern])
            alt_energy = _energy(model, alt.loads)
            if (alt_feasible, -alt_energy) > (feasible, -energy):
                pattern, energy, feasible = alt.pattern, alt_energy, alt_feasible
    return mask[pattern], feasible, energy, dp_bound


def _energy(model: _Model, loads: np.ndarray) -> float:
    """``Σ_m E_m(n_m)`` in J."""
    return sum(float(t.energy(int(n))) for t, n in zip(model.data.tables, loads, strict=True))


def _cheapest(dual: PoolDual, y: np.ndarray, token_class: np.ndarray, deg: np.ndarray
              ) -> np.ndarray:
    """Per token its class's cheapest pool pattern at ``y`` (ties: the least degradation)."""
    cost = dual.pattern_costs(y)
    order = np.lexsort((deg, cost, dual.cls))
    first = order[dual.start[:-1]]
    return first[token_class]


def _targets(space: PatternSpace, token_mask: np.ndarray) -> np.ndarray:
    return options_to_actions(space.data, options_for_patterns(space, token_mask).reshape(-1))


def _fallback(data: ProblemData, note: str, started: float) -> PrefillRun:
    """No pattern space (past its limits) or an infeasible instance: ``sift-price``'s answer,
    or, should it refuse, every slot's least-degradation reachable option; no bound."""
    from siftopt.model.evaluate import evaluate
    from siftopt.policies.price import sift_price

    try:
        targets = np.asarray(sift_price(data.inst))
    except PolicyRefusal:
        cost = np.where(data.opt_reachable, data.opt_degradation, np.inf)
        order = np.lexsort((np.arange(cost.size), cost, data.opt_slot))
        first = order[np.searchsorted(data.opt_slot[order], np.arange(data.num_slots))]
        targets = options_to_actions(data, first)
    ev = evaluate(data.inst, targets)
    return PrefillRun(answer=PolicyAnswer(targets, None), energy_j=ev.energy_j,
                      feasible=ev.feasible, certified=False, note=note,
                      times_s={"total": time.perf_counter() - started})


def sift_prefill_run(inst: Instance) -> PrefillRun:
    """Run ``sift-prefill`` on an instance (see the module docstring)."""
    started = time.perf_counter()
    data = problem_data(inst)
    try:
        space = pattern_space(data)
    except PatternLimitError as exc:
        return _fallback(data, f"pattern space past its limits ({exc})", started)
    times = {"space": time.perf_counter() - started}
    model = _Model(data, space)
    model.pool.add(*least_degradation_patterns(space))
    cls, mask, deg, _, start = model.pool.arrays
    if len(model.pool) == 0 or np.any(np.diff(start) == 0):
        return _fallback(data, "a token cannot meet its budget", started)
    least = np.minimum.reduceat(deg, start[:-1])
    if model.mean_rhs is not None and float(space.class_count @ least) > model.mean_rhs:
        return _fallback(data, "the mean budget cannot be met", started)
    if not np.any(mask):  # no node can help any token: every pattern is local
        targets = _targets(space, np.zeros(data.num_tokens, dtype=np.uint64))
        return PrefillRun(answer=PolicyAnswer(targets, 0.0), energy_j=0.0, feasible=True,
                          certified=True, note="no remote node helps any token",
                          times_s={"total": time.perf_counter() - started})
    bounds: list[float] = []
    y = model.start.copy()
    sample_rounds = iterations = rounds = 0
    complete = _pattern_estimate(space) <= FULL_POOL
    if complete:  # every pattern at once: the pool dual is the dual
        every = enumerate_patterns(space)
        model.pool.add(every.pattern_class, every.mask, every.degradation)
        times["sample"] = 0.0
        dual, _ = model.dual()
        solution = maximise(dual, y, model.upper, _tau(dual, y, COLD_START), DUAL_RTOL,
                            model.coord_unit)
        y, iterations = solution.y, solution.iterations
        bounds.append(dual.value(y))
    else:
        sample = _sample(space.num_classes)
        if sample is not None:
            y, _, sample_rounds, iterations = _loop(model, y, sample, SAMPLE_ROUNDS, bounds,
                                                    SAMPLE_RTOL, None, budget=SAMPLE_BUDGET)
        times["sample"] = time.perf_counter() - started - times["space"]
        y, solution, rounds, more = _loop(model, y, None, MAX_ROUNDS, bounds, ROUND_RTOL,
                                          DUAL_RTOL, COLD_START if sample is None
                                          else BATCH_START)
        iterations += more
    times["dual"] = time.perf_counter() - started - times["space"] - times["sample"]
    tau = solution.tau if solution is not None else _tau(model.dual()[0], y, DUAL_RTOL)
    bound = max(0.0, max(bounds) * model.unit * (1.0 - BOUND_RTOL)) if bounds else None
    token_mask, feasible, energy, dp_bound = _primal(model, y, tau, bound, complete)
    if dp_bound is not None:
        bound = dp_bound if bound is None else max(bound, dp_bound)
    targets = _targets(space, token_mask)
    certified = bool(feasible and bound is not None
                     and energy - bound <= 1e-6 * energy + 1e-15)
    times["total"] = time.perf_counter() - started
    times["primal"] = times["total"] - times["space"] - times["sample"] - times["dual"]
    return PrefillRun(answer=PolicyAnswer(targets, bound), energy_j=energy, feasible=feasible,
                      certified=certified, rounds=rounds, sample_rounds=sample_rounds,
                      newton_iterations=iterations, patterns=len(model.pool),
                      times_s=times)


def lagrangian_bound(inst: Instance, prices_j: np.ndarray, nu_j: float = 0.0) -> float:
    """The Lagrangian dual function ``g(p, ν)`` of docs/policies.md §6 in J, priced exactly.

    ``prices_j[m−1] ≥ 0``: the price of node m in J per token of load; ``nu_j ≥ 0``: the
    multiplier of a binding mean budget in J per unit of degradation (ignored when the mean
    budget does not bind). Lemma 6.1: the value is a lower bound on the optimum energy of
    (P) for every such point. ``inf`` when some token cannot meet its budget at all ((P) is
    infeasible); PatternLimitError past the pattern space's limits."""
    data = problem_data(inst)
    space = pattern_space(data)
    model = _Model(data, space)
    model.pool.add(*least_degradation_patterns(space))
    if len(model.pool) == 0 or np.any(np.diff(model.pool.arrays[4]) == 0):
        return float("inf")
    y = np.maximum(np.asarray(prices_j, dtype=float), 0.0) / model.unit
    if model.mean_rhs is not None:
        y = np.append(y, max(float(nu_j), 0.0) / model.unit)
    prices, nu = model.split(y)
    priced = price(space, model.pool, prices, nu)
    dual, _ = model.dual()
    return dual.value(y, priced.phi) * model.unit


def sift_prefill(inst: Instance) -> PolicyAnswer:
    """``sift-prefill`` (docs/policies.md §6): targets and a certified lower bound (J)."""
    return sift_prefill_run(inst).answer


__all__ = ["BOUND_RTOL", "MAX_ROUNDS", "PrefillRun", "SAMPLE_CLASSES", "SAMPLE_ROUNDS",
           "lagrangian_bound", "sift_prefill", "sift_prefill_run"]
