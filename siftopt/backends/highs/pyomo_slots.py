"""The slot-level MILP of docs/model.md §3.5 as a declarative Pyomo model, solved by HiGHS.

Names follow the model: ``a[t,k,j]`` (slot k of token t served by expert j; j = the slot's own
expert means keep), ``s[t,k]`` (skip), ``u[t,m]`` (token t is sent to remote node m),
``n[m]`` (load), and either ``lam[m,l]`` (convex energy table, incremental form) or
``z[m,l]`` (any table, one binary per load level).

Exactness:

* relative and absolute MIP gaps are 0 (profile ``default``);
* the objective is in units of the smallest one-token node energy (``ProblemData.
  energy_scale_j``), so objective values are O(1) and HiGHS's absolute tolerances (1e-6 and
  below) are far below any energy difference that matters (docs/model.md §3.4);
* accuracy rows are written from :class:`~siftopt.model.budgets.Budgets`:
  ``D_t ≤ token_row_upper`` and, when the mean binds, ``Σ_t D_t ≤ mean_row_upper`` —
  relaxations of the rule, so ties at exactly ε (and anything the rule accepts up to
  ε + 1e-9) stay feasible. HiGHS's MIP feasibility tolerance (1e-9 in the default profile; a
  tolerance of 1e-10 made HiGHS 1.16 prove wrong optima on instances with level binaries —
  e.g. ``siftopt generate --preset deepseek-v3 --tokens 64 --fading rayleigh --seed 1``
  gave 0.0202 J "optimal" against a true 0.0195 J; tests/test_exact.py keeps that case) can
  let through a decision a hair above the rule: the model is solved in the budget-cut loop
  (:func:`siftopt.backends.base.budget_cuts`), each rejected decision cut off by a row of the
  ``ConstraintList`` ``budget_cuts``;
* binaries are rounded and the actions re-evaluated by :func:`siftopt.model.evaluate.evaluate`.

The Pyomo interface is ``pyomo.contrib.solver``'s ``Highs`` (the one ``SolverFactory('highs')``
returns in Pyomo 6.10); non-optimal results do not raise: the termination condition and
solution status are mapped to siftopt statuses here.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

from siftopt.backends.base import (
    Cut,
    accepted_start,
    begin,
    budget_cuts,
    remaining_s,
)
from siftopt.backends.highs.common import check_highs_options, use_threads
from siftopt.backends.options import ExactOptions
from siftopt.io.profiles import Profile
from siftopt.model.problem import SKIP, ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome


def build_model(data: ProblemData) -> pyo.ConcreteModel:
    """The Pyomo model of (P) for ``data`` (reachable options only)."""
    inst = data.inst
    k_slots = inst.top_k
    reachable = data.opt_reachable
    scale = data.energy_scale_j()
    model = pyo.ConcreteModel(name=inst.name)

    # Index sets --------------------------------------------------------------------------
    keep_or_replace = []  # (t, k, j)
    skips = []  # (t, k)
    option_var: dict[int, tuple] = {}  # option -> ("a", t, k, j) or ("s", t, k)
    slot_row: dict[tuple[int, int], list] = defaultdict(list)
    node_users: dict[tuple[int, int], list] = defaultdict(list)  # (t, m) -> [(t, k, j)]
    degradation: dict = {}
    for o in np.flatnonzero(reachable):
        slot = int(data.opt_slot[o])
        t, k = divmod(slot, k_slots)
        j = int(data.opt_target[o])
        if j == SKIP:
            skips.append((t, k))
            degradation[("s", t, k)] = float(data.opt_degradation[o])
            option_var[int(o)] = ("s", t, k)
            continue
        keep_or_replace.append((t, k, j))
        option_var[int(o)] = ("a", t, k, j)
        slot_row[(t, k)].append((t, k, j))
        degradation[("a", t, k, j)] = float(data.opt_degradation[o])
        m = int(data.opt_node[o])
        if m >= 1:
            node_users[(t, m)].append((t, k, j))
    remote = [m for m in range(1, inst.num_nodes + 1) if data.caps[m] >= 1]

    model.A = pyo.Set(initialize=keep_or_replace, dimen=3, ordered=True)
    model.SLOTS = pyo.Set(initialize=skips, dimen=2, ordered=True)
    model.TU = pyo.Set(initialize=sorted(node_users), dimen=2, ordered=True)
    model.M = pyo.Set(initialize=remote, ordered=True)
    model.a = pyo.Var(model.A, domain=pyo.Binary)
    model.s = pyo.Var(model.SLOTS, domain=pyo.Binary)
    model.u = pyo.Var(model.TU, domain=pyo.Binary)
    model.n = pyo.Var(model.M, domain=pyo.NonNegativeReals,
                      bounds=lambda _, m: (0, int(data.caps[m])))

    # One action per slot; an action on node m needs the token sent to m, and vice versa.
    model.one_action = pyo.Constraint(
        model.SLOTS, rule=lambda mdl, t, k: sum(mdl.a[x] for x in slot_row[(t, k)])
        + mdl.s[t, k] == 1)
    model.sent_if_used = pyo.Constraint(
        model.A, rule=lambda mdl, t, k, j: mdl.a[t, k, j] <= mdl.u[t, int(inst.placement[j])]
        if inst.placement[j] >= 1 else pyo.Constraint.Skip)
    model.used_if_sent = pyo.Constraint(
        model.TU, rule=lambda mdl, t, m: mdl.u[t, m] <= sum(mdl.a[x] for x in node_users[(t, m)]))
    tokens_of = defaultdict(list)
    for t, m in node_users:
        tokens_of[m].append(t)
    model.load_count = pyo.Constraint(
        model.M, rule=lambda mdl, m: mdl.n[m] == sum(mdl.u[t, m] for t in tokens_of[m]))

    model.energy = pyo.Objective(expr=node_energy(model, data, remote), sense=pyo.minimize)

    # Accuracy: relaxations of D_t − ε_t ≤ TOL and mean(D) − ε̄ ≤ TOL (siftopt.model.budgets).
    def token_degradation(mdl: pyo.ConcreteModel, t: int) -> pyo.Expression:
        return (sum(degradation[("a", *x)] * mdl.a[x] for k in range(k_slots)
                    for x in slot_row[(t, k)])
                + sum(degradation[("s", t, k)] * mdl.s[t, k] for k in range(k_slots)))

    tokens = range(inst.num_tokens)
    budgets = data.budgets
    model.D = pyo.Expression(tokens, rule=token_degradation)
    if budgets.eps_token is not None:
        upper = budgets.token_row_upper()
        model.accuracy_token = pyo.Constraint(
            tokens, rule=lambda mdl, t: mdl.D[t] <= float(upper[t]))
    if budgets.mean_binds:
        model.accuracy_mean = pyo.Constraint(
            expr=sum(model.D[t] for t in tokens) <= budgets.mean_row_upper())
    model.budget_cuts = pyo.ConstraintList()
    model.option_var = option_var
    model.energy_scale_j = scale
    return model


def add_cuts(model: pyo.ConcreteModel, cuts: Sequence[Cut]) -> None:
    """One row ``Σ_{o ∈ cut} (its a or s) ≤ |cut| − 1`` per no-good cut, in
    ``model.budget_cuts``."""
    for cut in cuts:
        terms = []
        for o in cut.options:
            kind, *index = model.option_var[int(o)]
            terms.append((model.a if kind == "a" else model.s)[tuple(index)])
        model.budget_cuts.add(sum(terms) <= len(terms) - 1)


def node_energy(model: pyo.ConcreteModel, data: ProblemData, remote: list[int]
                ) -> pyo.Expression:
    """``Σ_m E_m(n_m)`` in units of ``data.energy_scale_j()`` for the load variables
    ``model.n[m]`` (m in ``remote``, each bounded by its cap n̂_m).

    Convex tables: incremental form, ``n[m] = Σ_l lam[m,l]`` with ``lam ∈ [0, 1]`` and cost
    ``E_m(l) − E_m(l−1)`` (increasing, so the LP fills the levels in order). Other tables:
    one binary ``z[m,l]`` per load level, ``Σ_l z ≤ 1``, ``n[m] = Σ_l l·z[m,l]``.
    """
    scale = data.energy_scale_j()
    convex_nodes = [m for m in remote if data.tables[m - 1].convex]
    level_nodes = [m for m in remote if not data.tables[m - 1].convex]
    lam_index = [(m, level) for m in convex_nodes for level in range(1, data.caps[m] + 1)]
    z_index = [(m, level) for m in level_nodes for level in range(1, data.caps[m] + 1)]
    model.lam = pyo.Var(lam_index, domain=pyo.UnitInterval)
    model.z = pyo.Var(z_index, domain=pyo.Binary)
    model.load_incremental = pyo.Constraint(
        convex_nodes, rule=lambda mdl, m: mdl.n[m] == sum(
            mdl.lam[m, level] for level in range(1, data.caps[m] + 1)))
    model.one_level = pyo.Constraint(
        level_nodes, rule=lambda mdl, m: sum(
            mdl.z[m, level] for level in range(1, data.caps[m] + 1)) <= 1)
    model.load_levels = pyo.Constraint(
        level_nodes, rule=lambda mdl, m: mdl.n[m] == sum(
            level * mdl.z[m, level] for level in range(1, data.caps[m] + 1)))
    terms = []
    for m in convex_nodes:
        increments = np.diff(data.tables[m - 1].energy_j) / scale
        terms += [float(inc) * model.lam[m, lv] for lv, inc in enumerate(increments, 1)]
    for m in level_nodes:
        table = data.tables[m - 1].energy_j / scale
        terms += [float(table[lv]) * model.z[m, lv] for lv in range(1, data.caps[m] + 1)]
    return sum(terms)


def extract_actions(model: pyo.ConcreteModel, data: ProblemData) -> np.ndarray:
    """(L, K) targets from the model's variable values (each slot: its largest variable)."""
    inst = data.inst
    best = np.full(inst.topk_experts.shape, -np.inf)
    actions = np.full(inst.topk_experts.shape, SKIP, dtype=np.int64)
    for (t, k), var in model.s.items():
        best[t, k] = var.value if var.value is not None else 0.0
    for (t, k, j), var in model.a.items():
        value = var.value if var.value is not None else 0.0
        if value > best[t, k]:
            best[t, k], actions[t, k] = value, j
    return actions


def _map_status(results: object) -> str:
    term = results.termination_condition
    has_solution = results.solution_status in (SolutionStatus.optimal, SolutionStatus.feasible)
    if term == TerminationCondition.convergenceCriteriaSatisfied and has_solution:
        return OPTIMAL
    if term in (TerminationCondition.provenInfeasible,
                TerminationCondition.infeasibleOrUnbounded):
        return INFEASIBLE
    if has_solution:
        return FEASIBLE
    if term in (TerminationCondition.maxTimeLimit, TerminationCondition.iterationLimit,
                TerminationCondition.interrupted):
        return TIME_LIMIT
    raise RuntimeError(f"HiGHS ended with termination condition {term} and no solution")


@dataclass
class PyomoRun:
    """A Pyomo model solved by HiGHS: status, results, and times (s)."""

    status: str
    results: Any
    highs_s: float  # time inside HiGHS
    overhead_s: float  # Pyomo's translation and result loading


def run_highs(model: pyo.ConcreteModel, profile: Profile, time_limit_s: float | None
              ) -> PyomoRun:
    """Solve a Pyomo model with HiGHS under ``profile``; loads the variable values when
    there is a solution. ``optimal`` with a non-zero gap in the profile only when the bound
    meets the incumbent."""
    options = dict(profile.highs)
    check_highs_options(options)
    use_threads(profile.threads)
    started = time.perf_counter()
    results = Highs().solve(
        model, tee=False, load_solutions=False, raise_exception_on_nonoptimal_result=False,
        time_limit=time_limit_s, threads=profile.threads, solver_options=options)
    finished = time.perf_counter()
    highs_time = float(getattr(results.timing_info, "highs_time", finished - started))
    status = _map_status(results)
    if status in (OPTIMAL, FEASIBLE):
        results.solution_loader.load_vars()
    if status == OPTIMAL and (options.get("mip_rel_gap", 0.0) > 0
                              or options.get("mip_abs_gap", 0.0) > 0):
        # a non-zero gap proves only near-optimality unless the bound meets the incumbent
        bound, incumbent = results.objective_bound, results.incumbent_objective
        if bound is None or incumbent is None or bound < incumbent:
            status = FEASIBLE
    return PyomoRun(status, results, highs_time, max(0.0, (finished - started) - highs_time))


def dual_bound_j(run: PyomoRun, scale: float) -> float | None:
    """HiGHS's objective bound in J (None when infeasible or unknown)."""
    bound = run.results.objective_bound
    return None if bound is None or run.status == INFEASIBLE else max(0.0, bound) * scale


def solve_highs(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                warm_start: np.ndarray | None = None,
                options: ExactOptions | None = None) -> BackendOutcome:
    """Solve ``data`` exactly with the Pyomo model and HiGHS under ``profile`` (the Pyomo
    HiGHS interface takes no MIP start: a warm start only serves as the answer of last resort
    of the budget-cut loop)."""
    return slots_with_cuts(data, profile, time_limit_s=time_limit_s, warm_start=warm_start,
                           options=options)


def slots_with_cuts(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                    warm_start: np.ndarray | None = None, options: ExactOptions | None = None,
                    cuts: Sequence[Cut] = ()) -> BackendOutcome:
    """:func:`solve_highs` starting from ``cuts`` (a pattern model's rejected decision)."""
    options, started, deadline, warm = begin(data, time_limit_s, warm_start, options)
    model = build_model(data)
    built = [time.perf_counter() - started]
    added = [0]

    def solve_once(all_cuts: tuple[Cut, ...]) -> BackendOutcome:
        began = time.perf_counter()
        add_cuts(model, all_cuts[added[0]:])
        added[0] = len(all_cuts)
        build_s = (built.pop() if built else 0.0) + time.perf_counter() - began
        run = run_highs(model, profile, remaining_s(deadline))
        actions = extract_actions(model, data) if run.status in (OPTIMAL, FEASIBLE) else None
        return BackendOutcome(
            status=run.status, actions=actions,
            dual_bound_j=dual_bound_j(run, model.energy_scale_j),
            build_time_s=build_s + run.overhead_s, solve_time_s=run.highs_s,
            details={"formulation": "slots", "interface": "pyomo.contrib.solver Highs",
                     "energy_unit_j": model.energy_scale_j,
                     "num_binaries": len(model.a) + len(model.s) + len(model.u) + len(model.z),
                     "mip_nodes": getattr(run.results.extra_info, "mip_node_count", None)})

    return budget_cuts(solve_once, data, options.max_cut_rounds, deadline=deadline, cuts=cuts,
                       known=accepted_start(data, warm))


__all__ = ["build_model", "dual_bound_j", "extract_actions", "node_energy", "run_highs",
           "slots_with_cuts", "solve_highs"]
