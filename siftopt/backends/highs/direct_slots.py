"""The slot MILP of docs/model.md §3.5 assembled with numpy and solved by HiGHS (highspy).

Same model as :mod:`siftopt.backends.highs.pyomo_slots`: binaries ``a[o]`` for the reachable
options (skip included), ``u[t,m]`` for the (token, node) pairs some option can use, with
``a[o] ≤ u[t,π]`` and ``u[t,m] ≤ Σ a[o on m]``, loads through λ or z columns
(:mod:`siftopt.backends.highs.energy`). Accuracy rows are written from
:class:`~siftopt.model.budgets.Budgets`: ``D_t ≤ token_row_upper`` per token and, when the
mean binds, ``Σ_t D_t ≤ mean_row_upper`` — relaxations of the rule. The model is solved in
the budget-cut loop (:func:`siftopt.backends.base.budget_cuts`): a decision the rule
rejects gets a no-good row ``Σ_{o∈cut} a[o] ≤ |cut| − 1`` (``addRow``) and HiGHS runs again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from siftopt.backends.base import (
    Cut,
    accepted_start,
    begin,
    budget_cuts,
    remaining_s,
)
from siftopt.backends.highs.common import (
    INF,
    Columns,
    add_cut_rows,
    gaps_zero,
    new_highs,
    pass_model,
    run_mip,
    watch_highs,
)
from siftopt.backends.highs.energy import EnergyBlock, energy_block
from siftopt.backends.options import ExactOptions
from siftopt.io.profiles import Profile
from siftopt.model.problem import ProblemData
from siftopt.result import TIME_LIMIT, BackendOutcome


def solve_highs_slots(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                      warm_start: np.ndarray | None = None,
                      options: ExactOptions | None = None) -> BackendOutcome:
    """Solve (P) exactly with the direct slot MILP (see the module docstring)."""
    return slots_with_cuts(data, profile, time_limit_s=time_limit_s, warm_start=warm_start,
                           options=options)


def slots_with_cuts(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                    warm_start: np.ndarray | None = None, options: ExactOptions | None = None,
                    cuts: Sequence[Cut] = ()) -> BackendOutcome:
    """:func:`solve_highs_slots` starting from ``cuts`` (a pattern model's rejected decision)."""
    options, started, deadline, warm = begin(data, time_limit_s, warm_start, options)
    model = _SlotModel(data, profile, started, warm)
    return budget_cuts(lambda all_cuts: model.run(all_cuts, remaining_s(deadline)), data,
                       options.max_cut_rounds, deadline=deadline, cuts=cuts,
                       known=accepted_start(data, warm))


class _SlotModel:
    """The direct slot MILP in one highspy object; :meth:`run` adds cuts and solves."""

    def __init__(self, data: ProblemData, profile: Profile, started: float,
                 warm_start: np.ndarray | None) -> None:
        self.data, self.profile, self.started = data, profile, started
        self.scale = scale = data.energy_scale_j()
        budgets = data.budgets
        opts = np.flatnonzero(data.opt_reachable)
        n_a = opts.size
        o_slot, o_node = data.opt_slot[opts], data.opt_node[opts]
        o_token = data.slot_token[o_slot]
        remote = o_node >= 1
        pair_key = o_token[remote] * (data.num_nodes + 1) + o_node[remote]
        pairs, pair_of = np.unique(pair_key, return_inverse=True)
        n_u = pairs.size
        u_node = pairs % (data.num_nodes + 1)

        n_slots = data.num_slots
        row = 0
        slot_rows = np.arange(n_slots)
        row += n_slots
        link_rows = row + np.arange(remote.sum())  # a[o] − u ≤ 0
        row += link_rows.size
        use_rows = row + np.arange(n_u)  # u − Σ a ≤ 0
        row += n_u
        nodes = np.unique(u_node)
        load_row = np.full(data.num_nodes + 1, -1, dtype=np.int64)
        load_row[nodes] = row + np.arange(nodes.size)
        row += nodes.size
        token_rows = np.zeros(0, np.int64)
        if budgets.eps_token is not None:
            token_rows = row + np.arange(data.num_tokens)
            row += data.num_tokens
        mean_row = -1
        if budgets.mean_binds:
            mean_row = row
            row += 1
        users = np.bincount(u_node, minlength=data.num_nodes + 1)
        node_cap = np.minimum(data.caps[nodes], users[nodes])
        block = energy_block(data, nodes, node_cap, load_row, row, scale)
        row += block.row_lower.size

        # a columns
        a_idx = np.arange(n_a)
        rem_idx = np.flatnonzero(remote)
        deg = data.opt_degradation[opts]
        col = [a_idx, rem_idx, rem_idx]
        rows = [slot_rows[o_slot], link_rows, use_rows[pair_of]]
        vals = [np.ones(n_a), np.ones(rem_idx.size), -np.ones(rem_idx.size)]
        if token_rows.size:
            col.append(a_idx)
            rows.append(token_rows[o_token])
            vals.append(deg)
        if mean_row >= 0:
            col.append(a_idx)
            rows.append(np.full(n_a, mean_row))
            vals.append(deg)
        a_cols = Columns.from_entries(np.zeros(n_a), np.zeros(n_a), np.ones(n_a),
                                      np.ones(n_a, bool), np.concatenate(col),
                                      np.concatenate(rows), np.concatenate(vals))
        # u columns
        u_idx = np.arange(n_u)
        u_cols = Columns.from_entries(
            np.zeros(n_u), np.zeros(n_u), np.ones(n_u), np.ones(n_u, bool),
            np.concatenate([pair_of, u_idx, u_idx]),
            np.concatenate([link_rows, use_rows, load_row[u_node]]),
            np.concatenate([-np.ones(link_rows.size), np.ones(n_u), np.ones(n_u)]))
        cols = Columns.concat([block.cols, a_cols, u_cols])
        lower = [np.ones(n_slots), np.full(link_rows.size, -INF), np.full(n_u, -INF),
                 np.zeros(nodes.size)]
        upper = [np.ones(n_slots), np.zeros(link_rows.size), np.zeros(n_u),
                 np.zeros(nodes.size)]
        if token_rows.size:
            lower.append(np.full(token_rows.size, -INF))
            upper.append(budgets.token_row_upper())
        if mean_row >= 0:
            lower.append(np.array([-INF]))
            upper.append(np.array([budgets.mean_row_upper()]))
        lower.append(block.row_lower)
        upper.append(block.row_upper)

        self.opts, self.block = opts, block
        self.num_binaries = int(n_a + n_u + int(block.cols.integer.sum()))
        self.column_of_option = np.full(data.opt_target.size, -1, dtype=np.int64)
        self.column_of_option[opts] = block.cols.size + a_idx
        self.highs = new_highs(profile, None)
        pass_model(self.highs, cols, np.concatenate(lower), np.concatenate(upper), mip=True)
        self.start = None if warm_start is None else _warm_values(data, opts, pairs, block,
                                                                 warm_start)
        self.events: list[dict[str, Any]] = []
        watch_highs(self.highs, started, scale, self.events)
        self.cuts_added = 0
        self.built = time.perf_counter()

    def run(self, cuts: tuple[Cut, ...], time_limit_s: float | None) -> BackendOutcome:
        """Solve with ``cuts`` (those not added yet are added as rows)."""
        began = time.perf_counter()
        add_cut_rows(self.highs, cuts[self.cuts_added:], self.column_of_option)
        self.cuts_added = len(cuts)
        self.highs.setOptionValue("time_limit", INF if time_limit_s is None
                                  else max(float(time_limit_s), 1e-3))
        self.events.clear()
        build_s = (self.built if self.built is not None else began) - self.started
        self.built = None  # later rounds: only the cut rows count as building
        build_s += time.perf_counter() - began
        result = run_mip(self.highs, gaps_zero(self.profile), start=self.start,
                         deadline=None if time_limit_s is None else began + time_limit_s)
        scale, data = self.scale, self.data
        events = list(self.events)
        if result.objective is not None:
            events.append({"t_s": round(time.perf_counter() - self.started, 4),
                           "phase": f"end ({result.status})",
                           "upper_bound_j": result.objective * scale,
                           "lower_bound_j": None if result.bound is None
                           else max(result.bound, 0.0) * scale})
        actions = None
        if result.values is not None:
            o_slot = data.opt_slot[self.opts]
            a_val = result.values[self.block.cols.size: self.block.cols.size + self.opts.size]
            order = np.lexsort((-a_val, o_slot))  # per slot, its largest value first
            first = np.ones(order.size, dtype=bool)
            first[1:] = o_slot[order][1:] != o_slot[order][:-1]
            chosen = self.opts[order[first]]
            actions = data.opt_target[chosen].reshape(data.inst.topk_experts.shape)
        bound = None if result.bound is None else max(result.bound, 0.0) * scale
        return BackendOutcome(
            result.status, actions, bound, build_s, result.seconds,
            {"formulation": "slots", "interface": "highspy passModel", "energy_unit_j": scale,
             "num_binaries": self.num_binaries, "mip_nodes": result.nodes, "trace": events,
             **({"child_process": "killed at the deadline" if result.killed else True}
                if result.isolated else {})},
            message="" if result.status != TIME_LIMIT else "stopped before finding a solution")


def _warm_values(data: ProblemData, opts: np.ndarray, pairs: np.ndarray, block: EnergyBlock,
                 warm_start: np.ndarray) -> np.ndarray | None:
    """Column values of an (L, K) targets array in the direct slot model, or None."""
    targets = np.asarray(warm_start).reshape(-1)
    if targets.size != data.num_slots:
        return None
    o_slot = data.opt_slot[opts]
    pick = data.opt_target[opts] == targets[o_slot]
    if not np.all(np.bincount(o_slot[pick], minlength=data.num_slots) == 1):
        return None
    a = pick.astype(float)
    node = data.opt_node[opts]
    sent = np.unique(data.slot_token[o_slot[pick & (node >= 1)]] * (data.num_nodes + 1)
                     + node[pick & (node >= 1)])
    u = np.isin(pairs, sent).astype(float)
    loads = np.bincount(sent % (data.num_nodes + 1), minlength=data.num_nodes + 1)
    if np.any(loads[1:] > data.caps[1:]):
        return None
    return np.concatenate([block.fill(loads.astype(float)), a, u])


__all__ = ["slots_with_cuts", "solve_highs_slots"]
