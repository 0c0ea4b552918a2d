"""A second certificate: a Lagrangian bound of its own, reduced-cost fixing, CP-SAT on the rest.

An exact method for slow-fading prefill that shares no code with the HiGHS pattern master
(docs/model.md §5 lists what the two share). It works on **patterns** — the set C of remote
nodes a token is sent to — but enumerates, prices and decodes them itself:

1. **Classes and patterns** (:func:`enumerate_classes`). Identical tokens (same experts,
   weights and ``ε_t``) form a class with a count. For each class every subset S of its
   *relevant* nodes (nodes where some slot has an option better than its local fallback) is
   evaluated at once with numpy: per slot the least degradation over its local options and
   its options on nodes of S, summed in slot order — the float
   :func:`~siftopt.model.budgets.token_degradation` gives the decision the pattern decodes
   to. A subset is kept iff the per-token rule accepts D (:meth:`Budgets.token_ok`), D is at
   most the class's room (:meth:`Budgets.token_caps`, a relaxation of the mean budget) and
   it is not dominated: with a mean row every node of S strictly lowers D (else the subset
   without it has the same D and loads that are not larger: with non-decreasing tables it is
   at least as good); without one, no subset one node smaller is kept (D no longer matters
   once the rule accepts it, and a kept subset of a set is reached by dropping nodes one at a
   time, since D never falls when a node is dropped). ``2^r`` subsets
   per class with r relevant nodes: past :data:`MAX_RELEVANT` nodes, or non-monotone tables
   (fast fading), the CP-SAT slot model answers instead (``details["fallback"]``).
2. **A Lagrangian bound** (:func:`lagrangian`). For per-class node prices ``d ≥ 0`` (a
   token of class g pays ``d[g, m]`` on node m) and ``ν ≥ 0`` on the mean row
   (``Σ_t D_t ≤ R``, ``R = Budgets.mean_row_upper``, which every accepted decision meets)::

       LB(d, ν) = Σ_m min_{0≤k≤k̂_m} (E_m(k) − top_k(d[:, m]))
                  + Σ_g count_g·min_{C∈P_g} (Σ_{m∈C} d[g, m] + ν D_C) − ν R

   is a lower bound on (P) for *any* such prices and any tables (``top_k``: the largest sum
   of k tokens' prices on m) — it is evaluated here directly from the tables and the
   patterns, whoever proposed the prices. The prices come from the duals of a restricted
   pattern LP solved with GLOP (OR-Tools' simplex; columns priced by the same formula; node
   m's energy by the segments of the lower convex hull of the convex part of its table and
   by greedy cuts of its concave part, :class:`Split`).
3. **Reduced-cost fixing.** For every decision x of energy f(x) that meets the budgets,
   ``f(x) ≥ LB + Σ_t rc_t + Σ_m rn_m(n_m)`` with ``rc_t = μ(C_t) + ν D_t − min_C(…) ≥ 0``
   and ``rn_m(n) = E_m(n) − μ_m n − min(…) ≥ 0``. So every decision with ``f(x) ≤ U`` uses
   only patterns with ``rc ≤ U − LB``, at most ``(U − LB)/rc`` tokens of a class on one such
   pattern, and node loads with ``rn_m(n) ≤ U − LB``.
4. **CP-SAT on what is left.** A CP-SAT model over the patterns with ``rc ≤ τ`` (integer
   counts per class and pattern, loads, ``AddElement`` energies on the load window, the mean
   row with floored integer coefficients — a relaxation), solved to optimality with its own
   bound. Start with a small τ; once CP-SAT has a decision of energy U that the budget rule
   accepts and ``U − LB ≤ τ``, the model holds every decision that could beat U, so its
   optimum is the optimum of (P) and its bound a bound of (P); otherwise τ grows to
   ``U − LB`` (or ×8 without a decision) and CP-SAT runs again. A decision the mean rule
   rejects (integer rounding) is cut off with a no-good on its counts and CP-SAT runs again.

Floating point: every fixing threshold gets :data:`FIX_MARGIN` (relative to the size of the
terms summed) of extra room, far above the rounding of the sums, so no decision that
could beat U is fixed away. The reported bound is CP-SAT's (in J, corrected for the energy
rounding, :func:`~siftopt.backends.cpsat.common.real_bound_j`) when the final model was
complete in the sense above, else ``LB``; ``optimal`` only when it certifies the evaluated
energy within docs/model.md §3.4's tolerance.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from siftopt.backends.base import (
    accepted_start,
    begin,
    decision_degradation,
    decision_options,
    past,
    remaining_s,
    slot_fallback,
)
from siftopt.backends.cpsat.common import (
    MAX_SCALED,
    CpsatTrace,
    add_table_energy,
    check_cpsat_parameters,
    degradation_scale,
    energy_unit,
    new_solver,
    real_bound_j,
)
from siftopt.backends.cpsat.lagrange_bound import (
    Bound,
    lp_prices,
)
from siftopt.backends.cpsat.lagrange_patterns import (
    Patterns,
    TooLarge,
    enumerate_classes,
    mask_nodes,
)
from siftopt.backends.cpsat.slots import slots_with_cuts
from siftopt.backends.options import ExactOptions
from siftopt.io.profiles import Profile
from siftopt.model.budgets import Budgets, token_degradation
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

#: Largest number of (class, pattern) variables handed to CP-SAT.
MAX_CPSAT_VARIABLES = 1_000_000
#: First reduced-cost threshold, relative to |LB| (and at least this many energy units).
FIRST_TAU = (1e-6, 1e-3)
#: Share of the time left after enumeration that the GLOP rounds may use.
LP_SHARE = 0.5


# ---- 3. and 4. fixing and CP-SAT ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Residual:
    """The CP-SAT model of the patterns with ``rc ≤ tau`` (module docstring, step 4).

    ``cols``: the pattern of each variable; ``x``: its count variable; ``base``: per node the
    load of the classes fixed to one pattern; ``fixed``: per class its only pattern or −1."""

    model: cp_model.CpModel
    cols: np.ndarray
    x: list
    n_energy: int
    unit_j: float
    max_row_sum: int
    fixed: np.ndarray


def residual_model(data: ProblemData, pats: Patterns, bound: Bound, tau: float
                   ) -> Residual | None:
    """The model, or None when some class keeps no pattern or a node no load (then no
    decision has energy ≤ LB + tau)."""
    limit = tau + bound.margin
    rc = bound.rc
    kept = np.flatnonzero(rc <= limit)
    per_class = np.bincount(pats.cls[kept], minlength=pats.num_classes)
    if np.any(per_class == 0):
        return None
    if kept.size > MAX_CPSAT_VARIABLES:
        raise TooLarge(f"{kept.size} patterns within the reduced-cost threshold "
                       f"(limit {MAX_CPSAT_VARIABLES})")
    count = pats.count[pats.cls[kept]]
    with np.errstate(divide="ignore", invalid="ignore"):
        most = np.where(rc[kept] > 0, np.floor(limit / rc[kept]), count)
    upper = np.minimum(count, most).astype(np.int64)
    single = per_class == 1
    fixed = np.full(pats.num_classes, -1, dtype=np.int64)
    fixed[pats.cls[kept][single[pats.cls[kept]]]] = kept[single[pats.cls[kept]]]
    free = ~single[pats.cls[kept]]
    cols = kept[free]
    upper = upper[free]

    n_nodes = data.num_nodes
    model = cp_model.CpModel()
    x = [model.new_int_var(0, int(u), f"x[{p}]") for p, u in zip(cols.tolist(), upper.tolist(),
                                                                 strict=True)]
    col_cls = pats.cls[cols]
    order = np.argsort(col_cls, kind="stable")
    bounds_ = np.searchsorted(col_cls[order], np.arange(pats.num_classes + 1))
    for g in np.flatnonzero(~single).tolist():
        members = order[bounds_[g]: bounds_[g + 1]]
        model.add(sum(x[i] for i in members.tolist()) == int(pats.count[g]))

    fixed_cls = np.flatnonzero(single)
    fixed_nodes = mask_nodes(pats.mask[fixed[fixed_cls]], n_nodes)
    base = (pats.count[fixed_cls][:, None] * fixed_nodes).sum(axis=0)
    free_nodes = mask_nodes(pats.mask[cols], n_nodes)
    windows = []
    for m in range(n_nodes):
        table = data.tables[m].energy_j
        allowed = np.flatnonzero(bound.node_rc[m] <= limit)
        users = np.flatnonzero(free_nodes[:, m])
        reach = int(base[m] + upper[users].sum())
        lo, hi = max(int(allowed.min()), int(base[m])), min(int(allowed.max()), reach)
        if lo > hi:
            return None
        windows.append((lo, hi, users, table[lo: hi + 1]))
    unit = energy_unit([w[3] for w in windows])
    energies = []
    for m, (lo, hi, users, table) in enumerate(windows):
        table_int = [int(v) for v in np.rint(table / unit)]
        shift = model.new_int_var(0, hi - lo, f"n[{m + 1}]-{lo}")
        model.add(shift == sum(x[i] for i in users.tolist()) + int(base[m]) - lo)
        energies.append(add_table_energy(model, shift, table_int, f"e[{m + 1}]"))
    model.minimize(sum(energies))

    max_row_sum = 0
    budgets = data.budgets
    if budgets.mean_binds:
        q = degradation_scale(1)
        if float(pats.deg.max(initial=0.0)) * q >= MAX_SCALED:
            raise TooLarge("degradation constants too large for CP-SAT's integer scaling")
        coef = Budgets.integer_coefficients(pats.deg[cols], q)
        fixed_sum = int((Budgets.integer_coefficients(pats.deg[fixed[fixed_cls]], q)
                         * pats.count[fixed_cls]).sum())
        rhs = int(budgets.integer_mean_cap(q)) - fixed_sum
        max_row_sum = int((coef * upper).sum()) + fixed_sum
        if max_row_sum >= MAX_SCALED:
            raise TooLarge(f"scaled mean row sum {max_row_sum} too large for CP-SAT")
        model.add(cp_model.LinearExpr.weighted_sum(x, coef.tolist()) <= rhs)
    return Residual(model, cols, x, len(energies), unit, max_row_sum, fixed)


def decode(data: ProblemData, token_mask: np.ndarray) -> np.ndarray:
    """``(L, K)`` targets of per-token node masks: each slot takes its option of least
    degradation among the local ones and those on nodes of its token's mask (the first of
    equals), the option whose degradation the pattern's D sums."""
    opt_token = data.slot_token[data.opt_slot]
    node = data.opt_node
    bit = np.left_shift(np.uint64(1), np.maximum(node - 1, 0).astype(np.uint64))
    on = (token_mask[opt_token] & bit) != 0
    allowed = data.opt_reachable & ((node <= 0) | on)
    cost = np.where(allowed, data.opt_degradation, np.inf)
    least = np.minimum.reduceat(cost, data.slot_start[:-1])
    hit = np.flatnonzero(cost <= least[data.opt_slot])
    first = np.ones(hit.size, dtype=bool)
    first[1:] = data.opt_slot[hit][1:] != data.opt_slot[hit][:-1]
    chosen = hit[first]
    return data.opt_target[chosen].reshape(data.inst.topk_experts.shape)


def token_masks(pats: Patterns, res: Residual, amounts: np.ndarray) -> np.ndarray:
    """Per token the mask of its pattern: classes fixed to one pattern take it; the tokens of
    a free class take its patterns in variable order, ``amounts`` of each."""
    per_class_masks: dict[int, list[int]] = {}
    for p, a in zip(res.cols.tolist(), amounts.tolist(), strict=True):
        if a:
            per_class_masks.setdefault(int(pats.cls[p]), []).extend([int(pats.mask[p])] * a)
    out = np.zeros(pats.token_class.size, dtype=np.uint64)
    order = np.argsort(pats.token_class, kind="stable")
    cls_sorted = pats.token_class[order]
    starts = np.searchsorted(cls_sorted, np.arange(pats.num_classes + 1))
    for g in range(pats.num_classes):
        tokens = order[starts[g]: starts[g + 1]]
        if res.fixed[g] >= 0:
            out[tokens] = pats.mask[res.fixed[g]]
        else:
            out[tokens] = np.array(per_class_masks[g], dtype=np.uint64)
    return out


def masks_of_actions(data: ProblemData, pats: Patterns, actions: np.ndarray
                     ) -> np.ndarray | None:
    """Per-class counts of pattern indices for a decision (a warm start), mapped to the
    kept pattern each token's node set dominates; None if some token has none."""
    options = decision_options(data, actions)
    if options is None:
        return None
    node = data.opt_node[options]
    token = data.slot_token
    bits = np.where(node >= 1, np.left_shift(np.uint64(1), np.maximum(node - 1, 0)
                                             .astype(np.uint64)), np.uint64(0))
    used = np.zeros(data.num_tokens, dtype=np.uint64)
    np.bitwise_or.at(used, token, bits)
    deg = token_degradation(data.opt_degradation[options].reshape(data.inst.topk_experts.shape))
    choice = np.full(data.num_tokens, -1, dtype=np.int64)
    for t in range(data.num_tokens):
        g = int(pats.token_class[t])
        lo, hi = int(pats.start[g]), int(pats.start[g + 1])
        masks = pats.mask[lo:hi]
        inside = ((masks & ~used[t]) == 0) & (pats.deg[lo:hi] <= deg[t])
        hits = np.flatnonzero(inside)
        if not hits.size:
            return None
        choice[t] = lo + int(hits[np.argmin(pats.deg[lo:hi][hits])])
    return choice


def solve_cpsat_lagrange(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                         warm_start: np.ndarray | None = None,
                         options: ExactOptions | None = None) -> BackendOutcome:
    """Solve (P) by the method of the module docstring."""
    options, started, deadline, warm_start = begin(data, time_limit_s, warm_start, options)
    check_cpsat_parameters(profile)
    details: dict[str, Any] = {"formulation": "lagrange"}

    def to_slots(reason: str) -> BackendOutcome:
        return slot_fallback(slots_with_cuts, data, profile, deadline, warm_start, reason,
                             options)

    if not all(bool(np.all(np.diff(t.energy_j) >= 0)) for t in data.tables):
        return to_slots("a node's energy table decreases somewhere (the Lagrangian model "
                        "needs non-decreasing tables)")
    try:
        pats = enumerate_classes(data)
    except TooLarge as exc:
        return to_slots(str(exc))
    details.update(token_classes=pats.num_classes, patterns=int(pats.mask.size),
                   subsets=pats.subsets, enumerate_s=time.perf_counter() - started)
    missing = np.flatnonzero(np.diff(pats.start) == 0)
    if missing.size:
        t = int(pats.rep[missing[0]])
        return BackendOutcome(INFEASIBLE, None, None, time.perf_counter() - started, 0.0,
                              details, message=f"token {t} cannot meet its accuracy budget "
                              "with any set of reachable nodes")
    scale = data.energy_scale_j()
    tables = [t.energy_j / scale for t in data.tables]
    budgets = data.budgets
    mean_cap = budgets.mean_row_upper() if budgets.mean_binds else None
    # the LP may use half of the time left: CP-SAT needs the rest to find a decision
    left = remaining_s(deadline)
    lp_deadline = None if left is None else time.perf_counter() + LP_SHARE * left
    bound, stats = lp_prices(pats, tables, mean_cap, lp_deadline)
    details.update(stats, lagrangian_bound_j=bound.value * scale)
    build_time = time.perf_counter() - started
    events: list[dict[str, Any]] = [{"t_s": round(build_time, 4), "phase": "lagrangian bound",
                                     "upper_bound_j": None,
                                     "lower_bound_j": max(bound.value * scale, 0.0)}]
    search = _Search(data, pats, bound, scale, profile, deadline, started, events)
    known = accepted_start(data, warm_start)
    if known is not None:
        search.offer(known[0], known[1])
    outcome = search.run(options.max_cut_rounds)
    details.update(search.details)
    details["trace"] = events
    solve_time = time.perf_counter() - started - build_time
    return BackendOutcome(outcome[0], outcome[1], outcome[2], build_time, solve_time, details,
                          message=outcome[3])


class _Search:
    """Step 4: CP-SAT on growing reduced-cost thresholds until the bound meets the best
    decision (the module docstring)."""

    def __init__(self, data: ProblemData, pats: Patterns, bound: Bound, scale: float,
                 profile: Profile, deadline: float | None, started: float,
                 events: list[dict[str, Any]]) -> None:
        self.data, self.pats, self.bound, self.scale = data, pats, bound, scale
        self.profile, self.deadline, self.started, self.events = (profile, deadline, started,
                                                                  events)
        self.best_actions: np.ndarray | None = None
        self.best_j = math.inf
        self.lower_j = max(bound.value * scale, 0.0)
        self.cuts: list[dict[int, int]] = []
        self.details: dict[str, Any] = {}
        self.full_tau = max(float(bound.rc.max(initial=0.0)),
                            max(float(r[np.isfinite(r)].max(initial=0.0))
                                for r in bound.node_rc) if bound.node_rc else 0.0)

    def offer(self, actions: np.ndarray, energy_j: float) -> None:
        if energy_j < self.best_j:
            self.best_actions, self.best_j = np.asarray(actions), float(energy_j)

    def run(self, max_cut_rounds: int) -> tuple[Any, np.ndarray | None, float | None, str]:
        lb = self.bound.value
        tau = (max(FIRST_TAU[0] * abs(lb), FIRST_TAU[1]) if not math.isfinite(self.best_j)
               else max(self.best_j / self.scale - lb, 0.0))
        solves = 0
        message = ""
        while True:
            full = tau >= self.full_tau
            if full:  # every pattern, count and load
                tau = math.inf
            res = residual_model(self.data, self.pats, self.bound, tau)
            self.details.update(tau=None if full else tau,
                                residual_patterns=0 if res is None else len(res.x),
                                cpsat_solves=solves)
            if res is None:
                status, cp_bound_j = cp_model.INFEASIBLE, math.inf
            else:
                status, cp_bound_j, message = self._solve(res, max_cut_rounds)
                solves += 1
                self.details["cpsat_solves"] = solves
            if status == cp_model.INFEASIBLE:
                cp_bound_j = math.inf
            # every decision of energy ≤ LB + tau is in the model (and not cut: cuts remove
            # only decisions the rule rejects)
            # (with every pattern and load in the model: every decision)
            reach_j = math.inf if full else (lb + tau) * self.scale
            if cp_bound_j is not None:
                self.lower_j = max(self.lower_j, min(reach_j, cp_bound_j))
            if self.best_actions is not None and (
                    self.lower_j >= self.best_j
                    or _equal(self.best_j, self.lower_j)):
                return (OPTIMAL, self.best_actions, min(self.lower_j, self.best_j), "")
            if status == cp_model.INFEASIBLE and full and self.best_actions is None:
                return (INFEASIBLE, None, None, "")
            complete = self.best_j / self.scale - lb <= tau
            if full or past(self.deadline) or status == cp_model.UNKNOWN or (
                    complete and status in (cp_model.OPTIMAL, cp_model.FEASIBLE)):
                break
            tau = self.best_j / self.scale - lb if math.isfinite(self.best_j) else tau * 8
        if self.best_actions is None:
            return (TIME_LIMIT, None, self.lower_j, message or "stopped before finding a "
                    "solution")
        return (FEASIBLE, self.best_actions, self.lower_j,
                message or "stopped before proving optimality")

    def _solve(self, res: Residual, max_cut_rounds: int) -> tuple[int, float | None, str]:
        """CP-SAT on ``res`` (with the cuts so far, and the best decision as hint) until the
        rule accepts its answer; returns its last status, real bound in J and a message."""
        data, pats = self.data, self.pats
        index = {int(p): i for i, p in enumerate(res.cols.tolist())}
        for cut in self.cuts:
            _add_cut(res, index, cut, pats)
        if self.best_actions is not None:
            choice = masks_of_actions(data, pats, self.best_actions)
            if choice is not None:
                counts = np.bincount(choice, minlength=pats.mask.size)
                for i, p in enumerate(res.cols.tolist()):
                    res.model.add_hint(res.x[i], int(counts[p]))
        message = ""
        for _ in range(max(max_cut_rounds, 1)):
            solver, _ = new_solver(self.profile, remaining_s(self.deadline), res.max_row_sum,
                                   max_lp=False)
            trace = CpsatTrace(self.started, res.unit_j, res.n_energy)
            status = solver.solve(res.model, trace)
            trace.finish(solver, status)
            self.events.extend(trace.events)
            if status == cp_model.MODEL_INVALID:
                raise RuntimeError("CP-SAT rejected the Lagrangian residual model")
            bound_j = real_bound_j(solver, status, res.n_energy, res.unit_j)
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                return status, bound_j, message
            amounts = np.array([solver.value(v) for v in res.x], dtype=np.int64)
            masks = token_masks(pats, res, amounts)
            actions = decode(data, masks)
            options = decision_options(data, actions)
            if data.budgets.accepts(decision_degradation(data, options)):
                loads = np.array([np.count_nonzero(masks & (np.uint64(1) << np.uint64(m)))
                                  for m in range(data.num_nodes)])
                energy = float(sum(t.energy(int(n)) for t, n in zip(data.tables, loads,
                                                                    strict=True)))
                self.offer(actions, energy)
                return status, bound_j, ""
            cut = {int(p): int(a) for p, a in zip(res.cols.tolist(), amounts.tolist(),
                                                  strict=True)}
            self.cuts.append(cut)
            _add_cut(res, index, cut, pats)
            self.details["budget_cuts"] = len(self.cuts)
            message = "the budget rule rejected CP-SAT's decisions"
        return cp_model.UNKNOWN, None, message


def _add_cut(res: Residual, index: dict[int, int], cut: dict[int, int], pats: Patterns
             ) -> None:
    """Forbid the counts ``cut`` (pattern → count of the free classes of the model it came
    from) in ``res``; nothing when some counted pattern is not a variable here."""
    if any(p not in index for p, a in cut.items() if a):
        return
    literals = []
    for p, a in cut.items():
        if p not in index:
            continue
        var = res.x[index[p]]
        same = res.model.new_bool_var("")
        res.model.add(var == a).only_enforce_if(same)
        res.model.add(var != a).only_enforce_if(~same)
        literals.append(~same)
    res.model.add_bool_or(literals)
    del pats


def _equal(a: float, b: float) -> bool:
    from siftopt.model.evaluate import energies_equal

    return energies_equal(a, b)


__all__ = ["solve_cpsat_lagrange"]
