"""The OR-Tools CP-SAT model of (P) (docs/model.md §3.4–3.5).

Variables, named as in docs/model.md §3.5:

* ``a[o]`` — Boolean, option o (keep, replace→j or skip) of its slot is chosen; one per
  reachable option; ``AddExactlyOne`` over the options of each slot.
* ``u[t,m]`` — Boolean, token t is sent to remote node m; only for pairs that some option of
  token t can use. ``u`` is exactly the OR of the token's options on m:
  ``a[o] ⇒ u[t,m]`` and ``u[t,m] ⇒ OR(a[o] on m)``. The second half matters: energy tables
  may be non-monotone (fast fading), so the solver must not switch a node on for free.
* ``n[m] = Σ_t u[t,m]`` with domain ``[0, n̂_m]`` (the latency or outage cap), and
  ``e[m] = table_m[n[m]]`` through ``AddElement`` — exact for any table, convex or not.
* ``d[t]`` — the scaled degradation of token t (below). Objective: minimise ``Σ_m e[m]``.

**Degradations are scaled so that CP-SAT never accepts a solution the real-valued model
rejects, and never rejects one it accepts with room to spare.** With ``Q`` a power of two
(so ``x·Q`` is exact in floating point) and ``K`` = top_k:

* option coefficients ``ceil(w·c·Q)`` (rounded up),
* per-token budgets ``d[t] ≤ floor((ε_t + 0.5e-9)·Q)`` (rounded down),
* the mean budget ``Σ_t d[t] ≤ floor((L·ε̄ + L·0.5e-9)·Q)``,
* ``Q`` the least power of two with ``K/Q ≤ 0.25e-9``.

A token uses exactly K options, each coefficient overstates ``w·c·Q`` by less than 1, so
``Q·D_t ≤ d[t] < Q·D_t + K``. Hence every accepted solution has ``D_t ≤ ε_t + 0.5e-9`` and
mean ``≤ ε̄ + 0.5e-9``, inside the evaluator's ``ε + 1e-9``; and every real solution with
``D_t ≤ ε_t + 0.25e-9`` (mean ``≤ ε̄ + 0.25e-9``) is accepted — in particular ties at
exactly the budget. Only a solution whose ``D_t`` lies within (ε + 0.25e-9, ε + 1e-9] may
be judged differently by CP-SAT (possibly rejected) and by the evaluator (accepted); no
instance file with ordinary decimals lands there by accident. Options whose coefficient
alone exceeds a budget cannot be part of any feasible solution and get no variable.

**Energies** are integers in units of ``u_E = Σ_m max_n E_m(n) / 2^40`` (over the nodes in
the model), each table entry rounded to the nearest unit, so each ``e[m]`` is within
``u_E/2`` of the real ``E_m(n_m)``. With M' nodes in the objective, the real energy of the
CP-SAT optimum exceeds the true optimum by at most ``M'·u_E = M'·Σ_m max E_m / 2^40`` —
for realistic instances orders of magnitude below the 1e-6 relative equality tolerance of
docs/model.md §3.4. ``(BestObjectiveBound − M'/2)·u_E`` (clipped at 0) is a valid real
dual bound. The backend reports ``optimal`` only when that bound *certifies* the returned
energy within the §3.4 tolerance (and the scaled bound meets the scaled objective, which a
profile's gap limits may prevent); otherwise ``feasible``. The energy reported to users
is always the evaluator's re-evaluation of the returned actions, never CP-SAT's objective.

**Safety.** OR-Tools 9.15 presolve can certify a wrong optimum on all-linear models with
at-most-one structure and large coefficients (google/or-tools#5293; the reporter traced it
to inclusion detection / ``ProcessAtMostOneAndLinear``, and ``presolve_inclusion_work_limit
= 0`` fixes it while keeping the rest of presolve). Our rows are exactly that pattern, and
with ``Q ≥ 4e9·K`` their scaled sums nearly always pass 2^31. The built-in profiles set the
limit to 0; if a profile does not, and some scaled row sum exceeds 2^31 − 1, this backend
forces it to 0 and says so in ``details["presolve_inclusion_forced"]``.

**Parameters**, in this order: ``threads`` → ``num_workers``; ``linearization_level = 2``
and ``extra_subsolvers = ["max_lp"]`` (put the u–a links and the tables into the LP
relaxation, for one worker and for a portfolio; on random prefill instances with L = 32
this proves optimality in about 1 s instead of > 20 s); every key of the
profile's ``[cpsat]`` table → a field of ``SatParameters`` (enum values by name; it may
override the two before); the effective time limit (``--time-limit`` or the profile's
``time_limit_s``) → ``max_time_in_seconds``.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from siftopt.backends.progress import CpsatTrace
from siftopt.errors import InputError
from siftopt.io.profiles import Profile
from siftopt.model.evaluate import energies_equal
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

#: Headroom of the degradation scaling: ``K/Q ≤ SCALE_SLACK``; accepted rows have
#: ``D ≤ ε + 2·SCALE_SLACK`` (half the evaluator's 1e-9).
SCALE_SLACK = 0.25e-9
#: Integer energies: ``Σ_m max_n table_m(n) ≤ 2^ENERGY_BITS`` units.
ENERGY_BITS = 40
#: Scaled row sums above this may trigger google/or-tools#5293 in presolve.
INT32_MAX = 2**31 - 1
#: Largest coefficient or row activity we hand to CP-SAT (its sums must fit in int64).
MAX_SCALED = 2**62
INCLUSION_LIMIT = "presolve_inclusion_work_limit"


def degradation_scale(top_k: int) -> int:
    """``Q``: the least power of two with ``top_k / Q ≤ SCALE_SLACK``."""
    return 2 ** math.ceil(math.log2(top_k / SCALE_SLACK))


def _floor_budget(eps: float, count: int, scale: int) -> int:
    """``floor((count·ε + count·2·SCALE_SLACK)·Q)``: a budget row's right-hand side."""
    return math.floor((count * eps + count * 2 * SCALE_SLACK) * scale)


def solve_cpsat(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                warm_start: np.ndarray | None) -> BackendOutcome:
    """Solve (P) with CP-SAT; see the module docstring for the model and its scaling."""
    started = time.perf_counter()
    inst = data.inst
    n_tokens, top_k = inst.topk_experts.shape
    opt_token = data.slot_token[data.opt_slot]

    # ---- degradation scaling: coefficients up, budgets down ------------------------------
    scale = degradation_scale(top_k)
    coef = np.ceil(data.opt_degradation * scale)  # exact: Q is a power of two
    d_cap = np.full(n_tokens, np.inf)
    if inst.eps_token is not None:
        d_cap = np.minimum(d_cap, np.floor((np.asarray(inst.eps_token) + 2 * SCALE_SLACK)
                                           * scale))
    mean_rhs = None
    if inst.eps_mean is not None:
        mean_rhs = _floor_budget(float(inst.eps_mean), n_tokens, scale)
        d_cap = np.minimum(d_cap, float(mean_rhs))
    usable = data.opt_reachable & (coef <= d_cap[opt_token])

    empty = [s for s in range(data.num_slots) if not usable[data.slot_options(s)].any()]
    if empty:
        s = empty[0]
        t, expert = int(data.slot_token[s]), int(data.slot_expert[s])
        return BackendOutcome(
            INFEASIBLE, None, None, time.perf_counter() - started, 0.0,
            details={"proved_by": "model build"},
            message=f"token {t}, expert {expert}: no reachable action fits the accuracy "
                    f"budget on its own ({len(empty)} such slot(s))")
    if float(coef[usable].max(initial=0.0)) >= MAX_SCALED:
        raise InputError("degradation constants too large for CP-SAT's integer scaling "
                         f"(largest w·c = {float(data.opt_degradation[usable].max()):.6g})",
                         path="bounds")

    model = cp_model.CpModel()

    # ---- a[o]: one action per slot -------------------------------------------------------
    a: dict[int, cp_model.IntVar] = {int(o): model.new_bool_var(f"a[{o}]")
                                     for o in np.flatnonzero(usable)}
    for s in range(data.num_slots):
        model.add_exactly_one(a[o] for o in data.slot_options(s) if o in a)

    # ---- u[t,m] = OR of the token's options on remote node m -----------------------------
    uses: dict[tuple[int, int], list[int]] = {}
    for o in a:
        m = int(data.opt_node[o])
        if m >= 1:
            uses.setdefault((int(opt_token[o]), m), []).append(o)
    u: dict[tuple[int, int], cp_model.IntVar] = {}
    for (t, m), options in sorted(uses.items()):
        u[t, m] = model.new_bool_var(f"u[{t},{m}]")
        for o in options:
            model.add_implication(a[o], u[t, m])
        model.add_bool_or([a[o] for o in options]).only_enforce_if(u[t, m])

    # ---- loads n[m] and energies e[m] = table_m[n[m]] ------------------------------------
    senders: dict[int, list[cp_model.IntVar]] = {}
    for (_, m), var in u.items():
        senders.setdefault(m, []).append(var)
    used_nodes = sorted(senders)
    tables = {m: data.tables[m - 1].energy_j[: min(int(data.caps[m]), len(senders[m])) + 1]
              for m in used_nodes}
    total = sum(float(tables[m].max()) for m in used_nodes)
    energy_unit = total / 2**ENERGY_BITS if total > 0 else 1.0
    n: dict[int, cp_model.IntVar] = {}
    e: dict[int, cp_model.IntVar] = {}
    for m in used_nodes:
        table_int = [int(v) for v in np.rint(tables[m] / energy_unit)]
        n[m] = model.new_int_var(0, len(table_int) - 1, f"n[{m}]")
        model.add(n[m] == sum(senders[m]))
        e[m] = model.new_int_var(min(table_int), max(table_int), f"e[{m}]")
        model.add_element(n[m], table_int, e[m])
        # Redundant cuts for the LP relaxation: e[m] lies above the lower convex hull of
        # the table (exact integers, valid for any table; the hull itself when convex).
        for k1, k2 in itertools.pairwise(_lower_hull(table_int)):
            rise = table_int[k2] - table_int[k1]
            model.add((k2 - k1) * e[m] - rise * n[m] >= (k2 - k1) * table_int[k1] - rise * k1)
    model.minimize(sum(e.values()))

    # ---- d[t]: scaled degradation of token t, and the budgets ----------------------------
    row_sums: list[int] = []
    d: list[cp_model.IntVar] = []
    d_upper: list[int] = []
    for t in range(n_tokens):
        options = [o for o in range(int(data.slot_start[t * top_k]),
                                    int(data.slot_start[(t + 1) * top_k])) if o in a]
        coefs = [int(coef[o]) for o in options]
        most = sum(max(int(coef[o]) for o in data.slot_options(s) if o in a)
                   for s in range(t * top_k, (t + 1) * top_k))
        upper = min(most, int(d_cap[t])) if math.isfinite(d_cap[t]) else most
        d.append(model.new_int_var(0, upper, f"d[{t}]"))
        d_upper.append(upper)
        model.add(d[t] == cp_model.LinearExpr.weighted_sum([a[o] for o in options], coefs))
        row_sums.append(sum(coefs) + upper)
    if mean_rhs is not None:
        model.add(sum(d) <= mean_rhs)
        row_sums.append(sum(d_upper))
    max_row_sum = max(row_sums, default=0)
    if max_row_sum >= MAX_SCALED:
        raise InputError("accuracy budgets too large for CP-SAT's integer scaling "
                         f"(scaled row sum {max_row_sum})", path="accuracy")

    if warm_start is not None:
        _add_hints(data, model, a, u, warm_start)

    # ---- parameters -----------------------------------------------------------------------
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = profile.threads
    # Put the u–a linking and the table constraints into the LP relaxation too: without it
    # the dual bound of prefill stays far from the optimum (L = 32: > 20 s vs about 1 s).
    solver.parameters.linearization_level = 2
    # With several workers the portfolio's first full solver is ``default_lp`` (level 1);
    # make sure ``max_lp`` (level 2) runs too — with two workers it then takes that seat.
    solver.parameters.extra_subsolvers.append("max_lp")
    for key, value in profile.cpsat.items():
        _set_parameter(solver.parameters, key, value)
    forced = profile.cpsat.get(INCLUSION_LIMIT) != 0 and max_row_sum > INT32_MAX
    if forced:
        setattr(solver.parameters, INCLUSION_LIMIT, 0)
    if time_limit_s is not None:
        solver.parameters.max_time_in_seconds = float(time_limit_s)
    build_time = time.perf_counter() - started

    solve_started = time.perf_counter()
    progress = CpsatTrace(started, energy_unit, len(used_nodes))
    status = solver.solve(model, progress)
    progress.finish(solver, status)
    solve_time = time.perf_counter() - solve_started

    details: dict[str, Any] = {
        "scale_degradation": scale,
        "energy_unit_j": energy_unit,
        "num_booleans": len(a) + len(u),
        "num_options": len(a),
        "max_row_sum": max_row_sum,
        INCLUSION_LIMIT: getattr(solver.parameters, INCLUSION_LIMIT),
        "presolve_inclusion_forced": forced,
        "cpsat_status": solver.status_name(status),
        "wall_time": solver.wall_time,
        "trace": progress.events,
    }
    if status == cp_model.MODEL_INVALID:
        raise RuntimeError(f"CP-SAT rejected the model: {model.validate()}")
    bound_j = None
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE, cp_model.UNKNOWN):
        bound = solver.best_objective_bound
        if math.isfinite(bound):
            bound_j = max(0.0, (bound - len(used_nodes) / 2) * energy_unit)
    if status == cp_model.INFEASIBLE:
        return BackendOutcome(INFEASIBLE, None, None, build_time, solve_time, details)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return BackendOutcome(TIME_LIMIT, None, bound_j, build_time, solve_time, details,
                              message="stopped before finding a solution")

    chosen = np.array([next(o for o in data.slot_options(s) if o in a and solver.value(a[o]))
                       for s in range(data.num_slots)], dtype=np.int64)
    actions = data.opt_target[chosen].reshape(inst.topk_experts.shape)
    energy_j = _real_energy(data, chosen)
    objective, bound = solver.objective_value, solver.best_objective_bound
    details.update(objective_scaled=objective, bound_scaled=bound, energy_model_j=energy_j)
    # "optimal" means certified: the real dual bound meets the real energy within the
    # tolerance of docs/model.md §3.4. CP-SAT's own OPTIMAL is not enough (a profile's gap
    # limits stop with it, and energy rounding could leave a gap on extreme tables), and a
    # stop whose bound already meets the energy is optimal whatever CP-SAT calls it.
    if bound_j is not None and energies_equal(energy_j, bound_j):
        return BackendOutcome(OPTIMAL, actions, bound_j, build_time, solve_time, details)
    if status == cp_model.OPTIMAL and objective - bound < 0.5:  # the objective is integer
        message = (f"CP-SAT proved its scaled optimum, but the energy rounding (unit "
                   f"{energy_unit:.3g} J) leaves a gap: energy {energy_j:.9g} J, bound "
                   f"{bound_j} J")
    elif status == cp_model.OPTIMAL:
        message = "stopped at the profile's gap limit"
    else:
        message = "stopped before proving optimality"
    return BackendOutcome(FEASIBLE, actions, bound_j, build_time, solve_time, details,
                          message=message)


def _lower_hull(values: list[int]) -> list[int]:
    """Indices of the vertices of the lower convex hull of the points ``(k, values[k])``."""
    hull: list[int] = []
    for k, v in enumerate(values):
        # drop the last vertex while it lies on or above the segment from its predecessor to k
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (values[j] - values[i]) * (k - i) >= (v - values[i]) * (j - i):
                hull.pop()
            else:
                break
        hull.append(k)
    return hull


def _real_energy(data: ProblemData, chosen: np.ndarray) -> float:
    """``Σ_m E_m(n_m)`` in J of one chosen option per slot (the loads u make)."""
    nodes = data.opt_node[chosen]
    tokens = data.slot_token
    energy = 0.0
    for m in range(1, data.num_nodes + 1):
        load = np.unique(tokens[nodes == m]).size
        energy += data.tables[m - 1].energy(load)
    return energy


def _add_hints(data: ProblemData, model: cp_model.CpModel, a: dict[int, cp_model.IntVar],
               u: dict[tuple[int, int], cp_model.IntVar], warm_start: np.ndarray) -> None:
    """Hint ``a`` from an ``(L, K)`` targets array (``SKIP`` = −1), and ``u`` from them.

    A slot whose target is not one of its usable options gets no hint, nor do the ``u`` of
    its token.
    """
    targets = np.asarray(warm_start)
    if targets.shape != data.inst.topk_experts.shape:
        raise InputError(f"warm start must have shape {data.inst.topk_experts.shape}, got "
                         f"{targets.shape}", path="warm_start")
    targets = targets.reshape(-1)
    unhinted: set[int] = set()  # tokens with a slot that got no hint
    sent: set[tuple[int, int]] = set()
    for s in range(data.num_slots):
        t = int(data.slot_token[s])
        options = [o for o in data.slot_options(s) if o in a]
        pick = [o for o in options if data.opt_target[o] == targets[s]]
        if not pick:
            unhinted.add(t)
            continue
        for o in options:
            model.add_hint(a[o], o == pick[0])
        if data.opt_node[pick[0]] >= 1:
            sent.add((t, int(data.opt_node[pick[0]])))
    for (t, m), var in u.items():
        if t not in unhinted:
            model.add_hint(var, (t, m) in sent)


def check_cpsat_parameters(profile: Profile) -> None:
    """Raise InputError for an unknown CP-SAT parameter or bad value in the profile (also
    where no CP-SAT search runs, e.g. the decode rule)."""
    params = cp_model.CpSolver().parameters
    for key, value in profile.cpsat.items():
        _set_parameter(params, key, value)


def _set_parameter(params: Any, key: str, value: Any) -> None:
    """``params.key = value`` for a SatParameters field; enum values may be given by name."""
    known = (not key.startswith("_") and key[:1].islower() and hasattr(params, key)
             and not callable(getattr(params, key)))
    if not known:
        raise InputError(f"unknown CP-SAT parameter {key!r}", path=f"cpsat.{key}")
    current = getattr(params, key)
    members = getattr(type(current), "__members__", None)
    try:
        if members is not None and isinstance(value, str):
            if value not in members:
                raise InputError(f"unknown value {value!r} (allowed: {', '.join(members)})",
                                 path=f"cpsat.{key}")
            value = members[value]
        if hasattr(current, "extend") and isinstance(value, list):
            current.clear()
            current.extend(value)
        else:
            setattr(params, key, value)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"invalid value {value!r} for CP-SAT parameter {key!r}: "
                         f"{str(exc).splitlines()[0]}", path=f"cpsat.{key}") from None
