"""Solving the HiGHS pattern master exactly: column generation and reduced-cost fixing.

Up to ``ColumnGenerationOptions.direct_tokens`` tokens the MILP gets every pattern and
breakpoint at once (:func:`solve_all`). Beyond, :func:`solve_master`:

1. the LP relaxation over a growing subset of columns, priced against *all* patterns (a
   pruned enumeration, :func:`siftopt.formulations.patterns.enumerate_patterns`) and
   breakpoints, until nothing has a negative reduced cost. Load and mean rows get penalised
   overflow columns, so every restricted LP is feasible; they only relax the LP, so ``z_LP``
   (less the pricing tolerance) is a valid lower bound LB. With non-convex tables,
   polymatroid cuts (:mod:`siftopt.backends.highs.cuts`, valid inequalities) join the LP
   whenever pricing finds nothing, and pricing resumes at the new duals;
2. an upper bound UB from the MILP over the columns of small reduced cost;
3. a solution that uses a column of reduced cost rc costs at least ``LB + rc``, so one
   better than UB uses only columns with ``rc ≤ UB − LB``; those are enumerated and the
   MILP over them, started from UB, is the exact optimum.

Energies are in the master's energy unit (``ProblemData.energy_scale_j``). :class:`Trace`
keeps the bounds over time and the time spent in HiGHS and in pricing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import highspy
import numpy as np

from siftopt.backends.base import remaining_s
from siftopt.backends.highs.common import (
    Columns,
    MipResult,
    add_columns,
    gaps_zero,
    new_highs,
    pass_model,
    run_mip,
)
from siftopt.backends.highs.cuts import (
    SeparationCentre,
    add_cuts,
    cut_nodes,
    cuts_stalled,
    drop_idle_cuts,
)
from siftopt.backends.highs.isolated import prestart
from siftopt.backends.highs.master import Master, build_master
from siftopt.backends.options import ColumnGenerationOptions
from siftopt.formulations.enumerate import (
    PricingTimeout,
    cheapest_patterns,
    engine_for,
    enumerate_patterns,
)
from siftopt.formulations.space import (
    PatternLimitError,
    PatternSet,
    PatternSpace,
    Pricing,
)
from siftopt.io.profiles import Profile
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT

#: HiGHS's ``simplex_strategy`` values of the dual and the primal simplex method.
DUAL_SIMPLEX = 1
PRIMAL_SIMPLEX = 4


class NoIncumbentError(Exception):
    """Column generation's restricted MILPs found no solution (which proves nothing)."""


class ColumnGenerationError(Exception):
    """The LP phase failed (an LP not solved, no convergence): an exact fallback is used."""


@dataclass
class Trace:
    """Bounds over time (s since the start, energy units) and counters for ``details``."""

    started: float
    unit_j: float = 1.0  # J per energy unit
    events: list[dict[str, Any]] = field(default_factory=list)
    solver_s: float = 0.0  # time spent inside HiGHS runs
    pricing_s: float = 0.0  # time spent pricing patterns (the column-generation subproblem)
    upper: float = np.inf  # best solution so far (energy units)
    lower: float = 0.0  # best valid lower bound so far (energy units)

    def price(self, space: PatternSpace, pricing: Pricing | None = None,
              deadline: float | None = None) -> PatternSet:
        """:func:`enumerate_patterns`, timed as pricing (:class:`PricingTimeout` past the
        deadline)."""
        started = time.perf_counter()
        try:
            return enumerate_patterns(space, pricing, deadline=deadline)
        finally:
            self.pricing_s += time.perf_counter() - started

    def add(self, phase: str, **values: Any) -> None:
        """An event with the global bounds so far in J (see :mod:`siftopt.backends.progress`)."""
        self.events.append({
            "t_s": round(time.perf_counter() - self.started, 4), "phase": phase,
            "upper_bound_j": self.upper * self.unit_j if np.isfinite(self.upper) else None,
            "lower_bound_j": max(self.lower, 0.0) * self.unit_j, **values})

    def improve(self, *, upper: float | None = None, lower: float | None = None) -> None:
        """Record a solution's energy or a valid lower bound (energy units)."""
        if upper is not None:
            self.upper = min(self.upper, upper)
        if lower is not None:
            self.lower = max(self.lower, lower)

    def mip(self, phase: str, result: MipResult, columns: int, *, bound_valid: bool) -> None:
        """A MILP over some columns; its bound is global only if ``bound_valid``."""
        self.solver_s += result.seconds
        if result.values is not None and result.objective is not None:
            self.improve(upper=result.objective)
        if bound_valid and result.bound is not None:
            self.improve(lower=result.bound)
        extra: dict[str, Any] = {}
        if result.isolated:
            extra["child_process"] = "killed at the deadline" if result.killed else True
            extra["child_overhead_s"] = round(result.overhead_s, 4)
        self.add(phase, columns=int(columns), status=result.status,
                 objective=result.objective, bound=result.bound,
                 solve_s=round(result.seconds, 4), mip_nodes=result.nodes, **extra)


Chosen = tuple[np.ndarray, np.ndarray]  # (store indices, amounts)


def _mip_over(master: Master, bps: np.ndarray, patterns: np.ndarray, profile: Profile,
              deadline: float | None, start: Chosen | None) -> tuple[MipResult, Chosen | None]:
    """The master MILP over breakpoints ``bps`` and stored ``patterns`` (both sorted),
    optionally started from a solution whose patterns and load breakpoints are among them.
    Returns the result and its (patterns, amounts)."""
    if patterns.size == 0:  # every class row needs a pattern
        return MipResult(INFEASIBLE, None, None, None, 0.0), None
    highs = new_highs(profile, remaining_s(deadline))
    cols = Columns.concat([master.breakpoint_columns(bps), master.pattern_columns(patterns),
                           master.load_columns()])
    row_lower, row_upper = master.mip_rows()
    pass_model(highs, cols, row_lower, row_upper, mip=True)
    values = None
    if start is not None:
        amounts = np.zeros(patterns.size)
        amounts[np.searchsorted(patterns, start[0])] = start[1]
        loads = master.loads(*start)
        theta = master.theta(loads, bps)
        values = np.concatenate([theta, amounts, loads[master.nodes].astype(float)])
    result = run_mip(highs, gaps_zero(profile), start=values, deadline=deadline)
    if result.values is None:
        return result, None
    amounts = np.rint(result.values[bps.size: bps.size + patterns.size])
    used = amounts > 0
    return result, (patterns[used], amounts[used])


@dataclass
class ColumnGeneration:
    """Outcome of the LP phase: a valid lower bound, the final duals, the LP's columns."""

    lower_bound: float
    row_dual: np.ndarray | None
    lp_patterns: np.ndarray
    lp_breakpoints: np.ndarray
    rounds: int
    converged: bool


def column_generation(master: Master, profile: Profile, deadline: float | None,
                      initial: np.ndarray, initial_bps: np.ndarray, trace: Trace,
                      options: ColumnGenerationOptions) -> ColumnGeneration:
    """The master's LP relaxation by column generation over *all* patterns and breakpoints.

    Each round adds, per class, the patterns of most negative reduced cost (best-first
    search, ``options.columns_per_class`` of them) and, per node, the breakpoint of most negative
    reduced cost with its neighbours. At convergence nothing has ``rc < −pricing_tol``, so
    ``LB = z_LP − pricing_tol·(L + #nodes)`` bounds the optimum from below (each class row
    sums to its count, each convexity row to 1).
    """
    space = master.space
    highs = new_highs(profile, remaining_s(deadline), lp_only=True)
    # columns join a solved LP, so its basis stays primal feasible: primal simplex resumes
    # from it (the L = 32768 row: 8.8 s in HiGHS against 26.5 s with the default dual
    # simplex, docs/performance.md); after cuts (rows) the basis stays dual feasible: dual
    # simplex. A profile's simplex_strategy is kept.
    own_strategy = "simplex_strategy" not in profile.highs
    if own_strategy:
        highs.setOptionValue("simplex_strategy", PRIMAL_SIMPLEX)
    overflow_cost = master.overflow.cost.copy()
    pats, bps = [np.asarray(initial, np.int64)], [np.asarray(initial_bps, np.int64)]
    cols = Columns.concat([master.overflow, master.breakpoint_columns(bps[0], lp=True),
                           master.pattern_columns(pats[0], lp=True)])
    pass_model(highs, cols, master.row_lower, master.row_upper, mip=False)
    # the LP's columns after the overflow ones, in order: ("bp" | "pat", indices) chunks
    chunks: list[tuple[str, np.ndarray]] = [("bp", bps[0]), ("pat", pats[0])]
    cut_rounds, cutting = 0, cut_nodes(master)
    cut_age = np.zeros(0, np.int64)  # rounds since each cut last had a positive dual
    cut_objective: list[float] = []  # z_LP at each separation
    centre = SeparationCentre()
    cg_started = time.perf_counter()
    known = set(pats[0].tolist())
    in_lp_bp = np.zeros(master.bp_node.size, dtype=bool)
    in_lp_bp[bps[0]] = True
    rounds, converged, z_lp, row_dual = 0, False, 0.0, None
    escalations, lagrangian, quiet = 0, 0.0, False
    while rounds < options.max_rounds:
        rounds += 1
        _limit_lp(highs, deadline)
        if not _run_lp(highs, trace):
            if deadline is not None and time.perf_counter() > deadline:
                break
            raise ColumnGenerationError("HiGHS did not solve a restricted LP to optimality "
                                        f"({highs.modelStatusToString(highs.getModelStatus())})")
        z_lp = float(highs.getInfo().objective_function_value)
        solution = highs.getSolution()
        row_dual = np.asarray(solution.row_dual)
        new_bps = _new_breakpoints(master, row_dual, in_lp_bp, options.pricing_tol)
        if quiet and new_bps.size:
            # the last pattern pricing found nothing: settle the breakpoints (cheap) before
            # pricing every class again
            in_lp_bp[new_bps] = True
            bps.append(new_bps)
            chunks.append(("bp", new_bps))
            add_columns(highs, master.breakpoint_columns(new_bps, lp=True))
            if deadline is not None and time.perf_counter() > deadline:
                break
            continue
        try:
            found = trace.price(space, master.pricing(row_dual, -options.pricing_tol, True),
                                deadline)
        except PricingTimeout:
            break
        lagrangian = max(lagrangian, _lagrangian_bound(master, z_lp, row_dual, found,
                                                       options.pricing_tol))
        trace.improve(lower=lagrangian)
        pick = _best_per_class(found, options.columns_per_class)
        idx = master.store.add(found.pattern_class[pick], found.mask[pick],
                               found.degradation[pick])
        new = np.array(sorted(set(idx.tolist()) - known), dtype=np.int64)
        quiet = new.size == 0
        if new.size == 0 and new_bps.size == 0:
            used = np.asarray(solution.col_value)[: overflow_cost.size] > options.overflow_tol
            if not used.any():
                if cutting.size:
                    cut_objective.append(z_lp)
                old_cuts = len(master.cut_node)
                if (cutting.size and cut_rounds < options.polymatroid_rounds
                        and not cuts_stalled(cut_objective, cg_started, deadline)
                        and add_cuts(master, highs, chunks, overflow_cost.size,
                                      np.asarray(solution.col_value), cutting, centre)):
                    # only now, with an LP solve to come, may idle cuts leave: the duals
                    # of the final LP must match master's cuts row for row
                    cut_age = drop_idle_cuts(master, highs, cut_age, row_dual, old_cuts)
                    cut_rounds += 1  # a tighter LP: price again at its duals
                    quiet = False
                    if own_strategy:
                        highs.setOptionValue("simplex_strategy", DUAL_SIMPLEX)
                    continue
                converged = True
                break
            # an overflow is still in use: price it higher (its LP is a relaxation either way)
            escalations += 1
            if escalations > options.max_escalations:
                raise ColumnGenerationError("the LP keeps needing overflow on a load or the "
                                            "mean row")
            overflow_cost[used] *= 10.0
            for j in np.flatnonzero(used):
                highs.changeColCost(int(j), float(overflow_cost[j]))
            continue
        known.update(new.tolist())
        in_lp_bp[new_bps] = True
        pats.append(new)
        bps.append(new_bps)
        chunks += [("bp", new_bps), ("pat", new)]
        add_columns(highs, Columns.concat([master.breakpoint_columns(new_bps, lp=True),
                                           master.pattern_columns(new, lp=True)]))
        if own_strategy:
            highs.setOptionValue("simplex_strategy", PRIMAL_SIMPLEX)
        if deadline is not None and time.perf_counter() > deadline:
            break
    if not converged and (deadline is None or time.perf_counter() <= deadline):
        raise ColumnGenerationError(f"no convergence in {options.max_rounds} rounds")
    bound = (z_lp - options.pricing_tol * (space.data.num_tokens + master.nodes.size)
             if converged else lagrangian)
    if converged:
        trace.improve(lower=bound)
    trace.add("column generation", rounds=rounds, lp_patterns=len(known), cut_rounds=cut_rounds,
              cuts=len(master.cut_node),
              lp_breakpoints=int(in_lp_bp.sum()), lp_objective=z_lp, lower_bound=bound,
              converged=converged)
    return ColumnGeneration(lower_bound=max(bound, 0.0),
                            row_dual=row_dual if converged else None,
                            lp_patterns=np.unique(np.concatenate(pats)),
                            lp_breakpoints=np.flatnonzero(in_lp_bp), rounds=rounds,
                            converged=converged)


def _lagrangian_bound(master: Master, z_lp: float, row_dual: np.ndarray, found: PatternSet,
                      pricing_tol: float) -> float:
    """A valid lower bound on the master's LP (so on (P)) from any round's duals:
    ``z_LP + Σ_g count_g·min(−tol, rc*_g) + Σ_m min(−tol, min_k rc_mk)``.

    Each class row sums to its count and each convexity row to 1, so no column of the full
    LP can lower the objective by more. ``found`` is the round's pricing with tightening: it
    holds the pattern of least reduced cost of every class that has one below −tol.
    """
    counts = master.space.class_count.astype(float)
    least = np.full(counts.size, -pricing_tol)
    if found.reduced_cost is not None and found.reduced_cost.size:
        np.minimum.at(least, found.pattern_class, found.reduced_cost)
    rc_bp = master.breakpoint_reduced_costs(row_dual)
    per_node = np.minimum.reduceat(rc_bp, master.bp_start[master.nodes]) \
        if master.nodes.size else np.zeros(0)
    return float(z_lp + counts @ least + np.minimum(per_node, -pricing_tol).sum())


def _limit_lp(highs: highspy.Highs, deadline: float | None) -> None:
    """HiGHS's time limit counts the run time of every run of one object, not the time spent
    outside it (pricing): before each run it is set to that run time plus the time left."""
    if deadline is not None:
        highs.setOptionValue("time_limit",
                             highs.getRunTime() + max(deadline - time.perf_counter(), 1e-3))


def _run_lp(highs: highspy.Highs, trace: Trace) -> bool:
    """Run the LP; on a failure other than optimality, once more from a fresh factorisation.
    Returns whether it is optimal."""
    for attempt in range(2):
        if attempt:
            highs.clearSolver()
        started = time.perf_counter()
        highs.run()
        trace.solver_s += time.perf_counter() - started
        if highs.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            return True
    return False


def _new_breakpoints(master: Master, row_dual: np.ndarray, in_lp: np.ndarray,
                     pricing_tol: float) -> np.ndarray:
    """Per node with a negative reduced cost: the least one's breakpoint and those at
    distances 1, 2, 4, … from it (within the node's loads), if not in the LP yet."""
    rc = master.breakpoint_reduced_costs(row_dual)
    out = []
    for m in master.nodes:
        lo, hi = int(master.bp_start[m]), int(master.bp_end[m])
        b = lo + int(np.argmin(rc[lo:hi]))
        if rc[b] < -pricing_tol:
            steps = 2 ** np.arange(int(np.log2(max(hi - lo, 1))) + 1)
            near = np.concatenate([[b], b - steps, b + steps])
            out.append(near[(near >= lo) & (near < hi)])
    if not out:
        return np.zeros(0, np.int64)
    cand = np.unique(np.concatenate(out))
    return cand[~in_lp[cand]]


def _best_per_class(pset: PatternSet, per_class: int) -> np.ndarray:
    """Indices of up to ``per_class`` patterns of least reduced cost per class."""
    order = np.lexsort((pset.reduced_cost, pset.pattern_class))
    cls = pset.pattern_class[order]
    rank = np.arange(order.size) - np.searchsorted(cls, cls)
    return order[rank < per_class]


def _columns_below(master: Master, row_dual: np.ndarray, threshold: float, trace: Trace,
                   deadline: float | None = None, *, stored: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints and (stored) patterns with reduced cost ≤ threshold at ``row_dual``;
    breakpoints come with their neighbours (a load between two breakpoints uses both, and
    costs at least LB + the smaller reduced cost). Patterns: all of them (an enumeration,
    :class:`PricingTimeout` past ``deadline``), or with ``stored`` only those the master
    already holds (no enumeration: enough for a restricted MILP, not for fixing)."""
    low = master.breakpoint_reduced_costs(row_dual) <= threshold
    keep = low.copy()
    same_node = master.bp_node[1:] == master.bp_node[:-1]
    keep[1:] |= low[:-1] & same_node
    keep[:-1] |= low[1:] & same_node
    bps = np.flatnonzero(keep)
    pricing = master.pricing(row_dual, threshold, False)
    if stored:
        cls, mask, deg = master.store.arrays
        return bps, np.flatnonzero(pricing.reduced_cost(cls, mask, deg) <= threshold)
    found = trace.price(master.space, pricing, deadline)
    return bps, np.unique(master.store.add_set(found))


def solve_master(space: PatternSpace, profile: Profile, deadline: float | None,
                 warm: tuple | None, first: PatternSet, trace: Trace,
                 options: ColumnGenerationOptions,
                 known: Callable[[], tuple | None] | None = None
                 ) -> tuple[MipResult, Master, Chosen | None, dict[str, Any]]:
    """Exact optimum of the pattern master by column generation and reduced-cost fixing.

    1. LP bound LB by column generation (:func:`column_generation`);
    2. an upper bound UB: the MILP over the columns with reduced cost ≤ ``tau`` (energy units;
       the LP's basis has 0), widened ×8 while that MILP is infeasible — past ``max_tau`` the
       slot formulation takes over;
    3. any solution using a column of reduced cost rc costs at least LB + rc (the LP duals are
       feasible for the full dual), so a solution better than UB uses only columns with
       ``rc ≤ UB − LB``: patterns (by a pruned enumeration), and breakpoints — the true
       optimum's loads are among them, and other loads are over-estimated by the chords, never
       under-. The MILP over those columns, started from UB, is exact. When step 2 already
       contained them all and proved optimality, it is the answer.

    ``first``: starting patterns (the cheapest per class); ``warm``: a feasible solution as
    ``((class, mask, D), amounts)``; ``known``: called once, when the first restricted MILP
    has no solution and there is no ``warm``, for a feasible solution in that form (e.g. a
    policy's answer) — with it the restricted MILPs are feasible and fixing can start (not
    with a negative ``tau``, which disables the restricted MILPs to force the fallback).
    Returns the last MILP result, the master, the chosen
    (patterns, amounts) and details.
    """
    if deadline is not None:  # the worker for large MILPs starts while the LP phase runs
        prestart()
    master = build_master(space)
    store = master.store
    exact_gaps = gaps_zero(profile)
    details: dict[str, Any] = {"load_rows": int(master.nodes.size),
                               "mean_row": master.mean_row >= 0}
    initial = np.unique(store.add_set(first))
    if space.mean_row:
        # the least-degradation pattern per class helps the first LPs meet the mean row; it
        # is a search without node prices (slow: ~60 % of the master's time at L = 4096)
        # and, without a mean row, nothing needs it (overflow keeps the LP feasible)
        priced = time.perf_counter()
        least_d = cheapest_patterns(space, np.zeros(space.data.num_nodes),
                                    degradation_price=1.0, engine=engine_for(deadline))
        trace.pricing_s += time.perf_counter() - priced
        initial = np.union1d(initial, store.add_set(least_d))
    incumbent = None
    if warm is not None:
        incumbent = (store.add(*warm[0]), warm[1])
        initial = np.union1d(initial, incumbent[0])
    first_amounts = space.class_count[store.arrays[0][initial]].astype(float)
    caps = _node_caps(master)
    start_bps = [master.bp_start[master.nodes], master.bp_end[master.nodes] - 1,
                 master.load_breakpoints(master.loads(initial, first_amounts).clip(max=caps))]
    if incumbent is not None:
        start_bps.append(master.load_breakpoints(master.loads(*incumbent)))
    cg = column_generation(master, profile, deadline, initial,
                           np.unique(np.concatenate(start_bps)), trace, options)
    lb = cg.lower_bound
    details.update(cg_rounds=cg.rounds, cg_converged=cg.converged, lp_bound=lb)
    ub = master.energy_of(*incumbent) if incumbent is not None else np.inf
    if incumbent is not None:
        trace.improve(upper=ub)
        trace.add("warm start")

    tau, stored = options.tau, True
    restricted = _restricted_profile(profile, options) if master.mean_row >= 0 else profile
    while True:
        if cg.row_dual is not None:  # the LP's basis has rc = 0: included
            try:  # first the patterns priced so far, then every pattern below tau
                bps, pats = _columns_below(master, cg.row_dual, tau, trace, deadline,
                                           stored=stored)
            except PricingTimeout:
                bps, pats = np.arange(master.bp_node.size), cg.lp_patterns
        else:
            bps, pats = np.arange(master.bp_node.size), cg.lp_patterns
        if incumbent is not None:
            pats = np.union1d(pats, incumbent[0])
            bps = np.union1d(bps, master.load_breakpoints(master.loads(*incumbent)))
        result, chosen = _mip_over(master, bps, pats, restricted, deadline, incumbent)
        trace.mip("restricted mip", result, bps.size + pats.size, bound_valid=False)
        if chosen is not None and result.objective < ub:
            ub, incumbent = result.objective, chosen
        if incumbent is None and known is not None and options.tau >= 0:
            found, known = known(), None
            if found is not None:
                incumbent = (store.add(*found[0]), found[1])
                ub = master.energy_of(*incumbent)
                trace.improve(upper=ub)
                trace.add("policy incumbent")
                details["incumbent_from_policy"] = True
                if result.status != TIME_LIMIT:
                    continue  # the same restricted MILP, now with the incumbent's columns
        if incumbent is not None or result.status == TIME_LIMIT:
            break
        if cg.row_dual is None or tau >= options.max_tau:
            # the restricted MILPs are infeasible; that proves nothing about (P)
            raise NoIncumbentError("no feasible solution among the priced patterns")
        if stored:
            stored = False  # every pattern below tau, then wider
        else:
            tau = max(8.0 * tau, 0.1)  # widen the restricted MILP (from any start)
    if incumbent is None:  # time limit: the restricted MILP's bound is not valid for (P)
        result.bound = lb
        return result, master, None, details
    details["upper_bound_restricted"] = ub
    if cg.row_dual is None:  # no valid duals to fix with: a solution, optimality unproved
        details["mip_columns"] = int(bps.size + pats.size)
        result.status = FEASIBLE
        result.bound = lb  # converged LP bound, or the best Lagrangian bound
        return result, master, incumbent, details
    threshold = ub - lb + options.fix_margin[0] * abs(ub) + options.fix_margin[1]
    try:
        fixed_bps, fixed = _columns_below(master, cg.row_dual, threshold, trace, deadline)
    except PricingTimeout:  # the best solution so far, optimality unproved
        details["mip_columns"] = int(bps.size + pats.size)
        result.status = FEASIBLE
        result.bound = lb
        trace.add("fixing stopped at the time limit")
        return result, master, incumbent, details
    details["fixed_columns"] = int(fixed.size + fixed_bps.size)
    if (result.status == OPTIMAL and exact_gaps and chosen is not None
            and result.objective <= ub and np.isin(fixed, pats).all()
            and np.isin(fixed_bps, bps).all()):
        details["mip_columns"] = int(bps.size + pats.size)
        trace.improve(lower=result.objective)
        trace.add("proof by fixing", fixed_columns=details["fixed_columns"])
        return result, master, incumbent, details
    pats = np.union1d(fixed, incumbent[0])
    bps = np.union1d(fixed_bps, master.load_breakpoints(master.loads(*incumbent)))
    result, chosen = _mip_over(master, bps, pats, profile, deadline, incumbent)
    trace.mip("final mip", result, bps.size + pats.size, bound_valid=True)
    details["mip_columns"] = int(bps.size + pats.size)
    result.bound = lb if result.bound is None else max(result.bound, lb)
    if chosen is None or (result.objective is not None and result.objective > ub):
        chosen = incumbent  # keep the better known solution (time limit)
    return result, master, chosen, details


def _restricted_profile(profile: Profile, options: ColumnGenerationOptions) -> Profile:
    """The profile of the restricted MILPs under a mean row: the relative gap raised to
    ``options.restricted_rel_gap``. They only give the upper bound for fixing, and a proved
    optimum of theirs is used only when it is proved with gap 0 (its bound meets its
    solution); the final MILP proves with ``profile``'s own gaps. (Without a mean row a
    restricted MILP mostly closes at its root, and its proof often saves the final MILP.)"""
    gap = max(float(profile.highs.get("mip_rel_gap", 0.0)), options.restricted_rel_gap)
    return replace(profile, highs={**profile.highs, "mip_rel_gap": gap})


def _node_caps(master: Master) -> np.ndarray:
    """``(M + 1,)`` largest breakpoint load of each node (0 for nodes without rows)."""
    caps = np.zeros(master.space.data.num_nodes + 1, dtype=np.int64)
    caps[master.nodes] = master.bp_load[master.bp_end[master.nodes] - 1]
    return caps


def solve_all(space: PatternSpace, pset: PatternSet, profile: Profile,
              deadline: float | None, warm: tuple | None, trace: Trace
              ) -> tuple[MipResult, Master, Chosen | None, dict[str, Any]]:
    """The master MILP over every pattern of ``pset`` and every breakpoint (small instances)."""
    master = build_master(space)
    everything = np.unique(master.store.add_set(pset))
    start = None
    if warm is not None:
        start = (master.store.add(*warm[0]), warm[1])
        everything = np.union1d(everything, start[0])
    bps = np.arange(master.bp_node.size)
    result, chosen = _mip_over(master, bps, everything, profile, deadline, start)
    trace.mip("mip", result, everything.size + bps.size, bound_valid=True)
    return result, master, chosen, {"load_rows": int(master.nodes.size),
                                    "mean_row": master.mean_row >= 0,
                                    "mip_columns": int(everything.size + bps.size)}


def solve_every_pattern(space: PatternSpace, profile: Profile, deadline: float | None,
                        warm: tuple | None, trace: Trace, options: ColumnGenerationOptions
                        ) -> tuple[MipResult, Master, Chosen | None, dict[str, Any]]:
    """:func:`solve_all` over the full enumeration, if it has at most
    ``options.all_patterns_limit`` patterns (else :class:`PatternLimitError`)."""
    pset = enumerate_patterns(space, engine=engine_for(deadline))
    if pset.num_patterns > options.all_patterns_limit:
        raise PatternLimitError(f"{pset.num_patterns} patterns (limit "
                                f"{options.all_patterns_limit} for a MILP over all of them)")
    return solve_all(space, pset, profile, deadline, warm, trace)


__all__ = ["ColumnGenerationError", "NoIncumbentError", "Trace", "solve_all", "solve_master",
           "solve_every_pattern"]
