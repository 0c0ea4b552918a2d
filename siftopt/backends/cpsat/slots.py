"""The OR-Tools CP-SAT slot model of (P) (docs/model.md §3.4–3.5).

Variables, named as in docs/model.md §3.5:

* ``a[o]`` — Boolean, option o (keep, replace→j or skip) of its slot is chosen; one per
  usable option; ``AddExactlyOne`` over the options of each slot.
* ``u[t,m]`` — Boolean, token t is sent to remote node m; only for pairs that some option of
  token t can use. ``u`` is exactly the OR of the token's options on m:
  ``a[o] ⇒ u[t,m]`` and ``u[t,m] ⇒ OR(a[o] on m)``. The second half matters: energy tables
  may be non-monotone (fast fading), so the solver must not switch a node on for free.
* ``n[m] = Σ_t u[t,m]`` with domain ``[0, n̂_m]`` (the latency or outage cap), and
  ``e[m] = table_m[n[m]]`` (:func:`siftopt.backends.cpsat.common.add_table_energy`).
* ``d[t]`` — the scaled degradation of token t. Objective: minimise ``Σ_m e[m]``.

**Budgets** (:mod:`siftopt.backends.cpsat.common`): coefficients
``Budgets.integer_coefficients(w·c, Q)`` (rounded down) with ``Q = degradation_scale(K)``,
rows ``d[t] ≤ integer_token_caps(Q)[t]`` and, when the mean binds,
``Σ_t d[t] ≤ integer_mean_cap(Q)`` — relaxations of the rule, so every decision it accepts
(ties at exactly a budget included) is feasible. A decision the rows let through but the
rule rejects (its D at most ``K/Q ≤ 1e-10`` above a row) is cut off by the budget-cut loop
(:func:`siftopt.backends.base.budget_cuts`): ``AddBoolOr`` of the negated literals of the
cut's options, and CP-SAT runs again. Options whose coefficient alone exceeds a cap cannot
be part of any accepted decision and get no variable.

**Energies** and **status**: integer units of ``Σ_m max E_m / 2^40``; ``optimal`` only when
the real dual bound certifies the real energy of the returned actions
(:func:`~siftopt.backends.cpsat.common.certified_status`). The energy reported to users is
always the evaluator's re-evaluation of the returned actions, never CP-SAT's objective.

**Parameters**: :func:`siftopt.backends.cpsat.common.new_solver` (with ``max_lp``: on random
prefill instances with L = 32 it proves optimality in about 1 s instead of > 20 s).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from siftopt.backends.base import (
    Cut,
    accepted_start,
    begin,
    budget_cuts,
    decision_energy_j,
    remaining_s,
)
from siftopt.backends.cpsat.common import (
    MAX_SCALED,
    CpsatTrace,
    add_table_energy,
    certified_status,
    degradation_scale,
    energy_unit,
    new_solver,
    real_bound_j,
)
from siftopt.backends.options import ExactOptions
from siftopt.errors import InputError
from siftopt.io.profiles import Profile
from siftopt.model.budgets import Budgets
from siftopt.model.problem import ProblemData
from siftopt.result import INFEASIBLE, TIME_LIMIT, BackendOutcome


def solve_cpsat(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                warm_start: np.ndarray | None = None,
                options: ExactOptions | None = None) -> BackendOutcome:
    """Solve (P) with the CP-SAT slot model; see the module docstring."""
    return slots_with_cuts(data, profile, time_limit_s=time_limit_s, warm_start=warm_start,
                           options=options)


def slots_with_cuts(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                    warm_start: np.ndarray | None = None, options: ExactOptions | None = None,
                    cuts: Sequence[Cut] = ()) -> BackendOutcome:
    """:func:`solve_cpsat` starting from ``cuts`` (a pattern model's rejected decision)."""
    options, started, deadline, warm = begin(data, time_limit_s, warm_start, options)
    model = SlotModel(data)
    if model.empty:
        s = model.empty[0]
        t, expert = int(data.slot_token[s]), int(data.slot_expert[s])
        return BackendOutcome(
            INFEASIBLE, None, None, time.perf_counter() - started, 0.0,
            details={"proved_by": "model build"},
            message=f"token {t}, expert {expert}: no reachable action fits the accuracy "
                    f"budget on its own ({len(model.empty)} such slot(s))")
    if warm is not None:
        model.hint(warm)
    built = [time.perf_counter() - started]

    def solve_once(all_cuts: tuple[Cut, ...]) -> BackendOutcome:
        return model.solve(all_cuts, profile, remaining_s(deadline), started,
                           built.pop() if built else 0.0)

    return budget_cuts(solve_once, data, options.max_cut_rounds, deadline=deadline, cuts=cuts,
                       known=accepted_start(data, warm))


class SlotModel:
    """The CP-SAT slot model of ``data`` (``model``: the ``CpModel``; ``a``, ``u``: its
    option and (token, node) literals; ``empty``: slots with no usable option, when the model
    was not built). :meth:`solve` adds no-good cuts and runs CP-SAT once; the budget-cut
    loop around it is :func:`slots_with_cuts`."""

    def __init__(self, data: ProblemData) -> None:
        self.data = data
        budgets = data.budgets
        n_tokens, top_k = data.inst.topk_experts.shape
        opt_token = data.slot_token[data.opt_slot]

        # ---- degradation scaling: floors throughout (relaxations of the rule) -------------
        scale = self.scale = degradation_scale(top_k)
        coef = _integer_coefficients(data.opt_degradation, scale)
        d_cap = np.full(n_tokens, MAX_SCALED, dtype=np.int64)
        if budgets.eps_token is not None:
            d_cap = np.minimum(d_cap, _integer_caps(budgets, scale))
        mean_rhs = None
        if budgets.mean_binds:
            mean_rhs = min(int(budgets.integer_mean_cap(scale)), MAX_SCALED)
            d_cap = np.minimum(d_cap, mean_rhs)
        usable = data.opt_reachable & (coef <= d_cap[opt_token])
        self.empty = [s for s in range(data.num_slots) if not usable[data.slot_options(s)].any()]
        if self.empty:
            return
        if int(coef[usable].max(initial=0)) >= MAX_SCALED:
            raise InputError("degradation constants too large for CP-SAT's integer scaling "
                             f"(largest w·c = {float(data.opt_degradation[usable].max()):.6g})",
                             path="bounds")

        model = self.model = cp_model.CpModel()
        # ---- a[o]: one action per slot ---------------------------------------------------
        a = self.a = {int(o): model.new_bool_var(f"a[{o}]") for o in np.flatnonzero(usable)}
        for s in range(data.num_slots):
            model.add_exactly_one(a[o] for o in data.slot_options(s) if o in a)

        # ---- u[t,m] = OR of the token's options on remote node m -------------------------
        uses: dict[tuple[int, int], list[int]] = {}
        for o in a:
            m = int(data.opt_node[o])
            if m >= 1:
                uses.setdefault((int(opt_token[o]), m), []).append(o)
        u = self.u = {}
        for (t, m), opts in sorted(uses.items()):
            u[t, m] = model.new_bool_var(f"u[{t},{m}]")
            for o in opts:
                model.add_implication(a[o], u[t, m])
            model.add_bool_or([a[o] for o in opts]).only_enforce_if(u[t, m])

        # ---- loads n[m] and energies e[m] = table_m[n[m]] --------------------------------
        senders: dict[int, list[cp_model.IntVar]] = {}
        for (_, m), var in u.items():
            senders.setdefault(m, []).append(var)
        self.used_nodes = used_nodes = sorted(senders)
        tables = {m: data.tables[m - 1].energy_j[: min(int(data.caps[m]), len(senders[m])) + 1]
                  for m in used_nodes}
        self.unit = energy_unit(list(tables.values()))
        e = []
        for m in used_nodes:
            table_int = [int(v) for v in np.rint(tables[m] / self.unit)]
            n = model.new_int_var(0, len(table_int) - 1, f"n[{m}]")
            model.add(n == sum(senders[m]))
            e.append(add_table_energy(model, n, table_int, f"e[{m}]"))
        model.minimize(sum(e))

        # ---- d[t]: scaled degradation of token t, and the budgets ------------------------
        row_sums: list[int] = []
        d: list[cp_model.IntVar] = []
        d_upper: list[int] = []
        for t in range(n_tokens):
            opts = [o for o in range(int(data.slot_start[t * top_k]),
                                     int(data.slot_start[(t + 1) * top_k])) if o in a]
            coefs = [int(coef[o]) for o in opts]
            most = sum(max(int(coef[o]) for o in data.slot_options(s) if o in a)
                       for s in range(t * top_k, (t + 1) * top_k))
            upper = min(most, int(d_cap[t]))
            d.append(model.new_int_var(0, upper, f"d[{t}]"))
            d_upper.append(upper)
            model.add(d[t] == cp_model.LinearExpr.weighted_sum([a[o] for o in opts], coefs))
            row_sums.append(sum(coefs) + upper)
        if mean_rhs is not None:
            model.add(sum(d) <= mean_rhs)
            row_sums.append(sum(d_upper))
        self.max_row_sum = max(row_sums, default=0)
        if self.max_row_sum >= MAX_SCALED:
            raise InputError("accuracy budgets too large for CP-SAT's integer scaling "
                             f"(scaled row sum {self.max_row_sum})", path="accuracy")
        self.cuts_added = 0

    def hint(self, warm_start: np.ndarray) -> None:
        """Hint ``a`` from an ``(L, K)`` targets array (``SKIP`` = −1), and ``u`` from them.

        A slot whose target is not one of its usable options gets no hint, nor do the ``u``
        of its token.
        """
        data, a, model = self.data, self.a, self.model
        targets = np.asarray(warm_start).reshape(-1)
        unhinted: set[int] = set()  # tokens with a slot that got no hint
        sent: set[tuple[int, int]] = set()
        for s in range(data.num_slots):
            t = int(data.slot_token[s])
            opts = [o for o in data.slot_options(s) if o in a]
            pick = [o for o in opts if data.opt_target[o] == targets[s]]
            if not pick:
                unhinted.add(t)
                continue
            for o in opts:
                model.add_hint(a[o], o == pick[0])
            if data.opt_node[pick[0]] >= 1:
                sent.add((t, int(data.opt_node[pick[0]])))
        for (t, m), var in self.u.items():
            if t not in unhinted:
                model.add_hint(var, (t, m) in sent)

    def solve(self, cuts: tuple[Cut, ...], profile: Profile, time_limit_s: float | None,
              started: float, build_s: float) -> BackendOutcome:
        """Add the cuts not added yet (``AddBoolOr`` of negated literals) and run CP-SAT."""
        began = time.perf_counter()
        for cut in cuts[self.cuts_added:]:
            self.model.add_bool_or([self.a[int(o)].Not() for o in cut.options])
        self.cuts_added = len(cuts)
        data = self.data
        solver, inclusion = new_solver(profile, time_limit_s, self.max_row_sum, max_lp=True)
        build_s += time.perf_counter() - began
        solve_started = time.perf_counter()
        progress = CpsatTrace(started, self.unit, len(self.used_nodes))
        status = solver.solve(self.model, progress)
        progress.finish(solver, status)
        solve_time = time.perf_counter() - solve_started
        details: dict[str, Any] = {
            "scale_degradation": self.scale, "energy_unit_j": self.unit,
            "num_booleans": len(self.a) + len(self.u), "num_options": len(self.a),
            "max_row_sum": self.max_row_sum, **inclusion,
            "cpsat_status": solver.status_name(status), "wall_time": solver.wall_time,
            "trace": progress.events}
        if status == cp_model.MODEL_INVALID:
            raise RuntimeError(f"CP-SAT rejected the model: {self.model.validate()}")
        bound_j = real_bound_j(solver, status, len(self.used_nodes), self.unit)
        if status == cp_model.INFEASIBLE:
            return BackendOutcome(INFEASIBLE, None, None, build_s, solve_time, details)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return BackendOutcome(TIME_LIMIT, None, bound_j, build_s, solve_time, details,
                                  message="stopped before finding a solution")
        chosen = np.array([next(o for o in data.slot_options(s)
                                if o in self.a and solver.value(self.a[o]))
                           for s in range(data.num_slots)], dtype=np.int64)
        actions = data.opt_target[chosen].reshape(data.inst.topk_experts.shape)
        energy_j = decision_energy_j(data, chosen)
        details.update(objective_scaled=solver.objective_value,
                       bound_scaled=solver.best_objective_bound, energy_model_j=energy_j)
        verdict, message = certified_status(solver, status, energy_j, bound_j, self.unit)
        return BackendOutcome(verdict, actions, bound_j, build_s, solve_time, details,
                              message=message)


def _integer_coefficients(degradation: np.ndarray, scale: int) -> np.ndarray:
    """:meth:`Budgets.integer_coefficients`, with ``MAX_SCALED`` for values out of range
    (options no budget row can afford; flagged if one is usable)."""
    in_range = np.asarray(degradation, dtype=float) * scale < MAX_SCALED
    coef = Budgets.integer_coefficients(np.where(in_range, degradation, 0.0), scale)
    return np.where(in_range, coef, MAX_SCALED)


def _integer_caps(budgets: Budgets, scale: int) -> np.ndarray:
    """:meth:`Budgets.integer_token_caps`, with ``MAX_SCALED`` (no cap) for budgets too large
    to scale."""
    in_range = budgets.token_row_upper() * scale < MAX_SCALED
    with np.errstate(invalid="ignore", over="ignore"):
        caps = budgets.integer_token_caps(scale)
    return np.where(in_range, caps, MAX_SCALED)


#: The old private name, still imported by siftopt.modeling.
_SlotModel = SlotModel

__all__ = ["SlotModel", "slots_with_cuts", "solve_cpsat"]
