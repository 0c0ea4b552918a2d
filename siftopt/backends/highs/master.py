"""The pattern master of (P) for HiGHS: its rows, its column families and the patterns it knows.

Columns ``x[g,p]`` (integer, ``0..count_g``) choose pattern p for that many tokens of class
g (:mod:`siftopt.formulations.patterns`); rows:

* one choice per token: ``Σ_p x[g,p] = count_g``;
* loads: ``Σ_{p ∋ m} x[g,p] − Σ_k k·θ[m,k] = 0`` and ``Σ_k θ[m,k] = 1``, with breakpoint
  columns ``θ[m,k]`` of cost ``E_m(k)`` (see :class:`Master`: continuous for convex tables,
  only where the increments change; binary at every load otherwise);
* the mean budget, when it needs a row: ``Σ D_p x[g,p] ≤ Budgets.mean_row_upper()`` (a
  relaxation of the rule). Per-token budgets need no row: every kept pattern meets its
  token's rule exactly.

Objective: ``Σ_m E_m(n_m)`` in units of ``ProblemData.energy_scale_j``. How it is solved:
:mod:`siftopt.backends.highs.colgen`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from siftopt.backends.highs.common import INF, Columns
from siftopt.formulations.space import (
    PatternSet,
    PatternSpace,
    Pricing,
    mask_bits,
    segments,
)
from siftopt.model.physics import concave_part
from siftopt.model.problem import ProblemData


class PatternStore:
    """The patterns known to the master, as (class, mask, D), each once, in insertion order."""

    def __init__(self) -> None:
        self._index: dict[tuple[int, int], int] = {}
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._index)

    def add(self, cls: np.ndarray, mask: np.ndarray, deg: np.ndarray) -> np.ndarray:
        """Store patterns (new ones are appended); returns their store indices."""
        out = np.empty(len(cls), dtype=np.int64)
        new = []
        for i, key in enumerate(zip(np.asarray(cls).tolist(), np.asarray(mask).tolist(),
                                    strict=True)):
            at = self._index.get(key)
            if at is None:
                at = self._index[key] = len(self._index)
                new.append(i)
            out[i] = at
        if new:
            sel = np.array(new, dtype=np.int64)
            self._parts.append((np.asarray(cls)[sel], np.asarray(mask)[sel],
                                np.asarray(deg)[sel]))
            self._arrays = None
        return out

    def add_set(self, pset: PatternSet) -> np.ndarray:
        return self.add(pset.pattern_class, pset.mask, pset.degradation)

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(pattern_class, mask, degradation)`` of every stored pattern."""
        if self._arrays is None:
            if self._parts:
                self._parts = [tuple(np.concatenate(x) for x in zip(*self._parts,
                                                                     strict=True))]
                self._arrays = self._parts[0]
            else:
                self._arrays = (np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0))
        return self._arrays


@dataclass
class Master:
    """Rows and column families of the pattern master of one pattern space.

    Rows: one per class (``Σ_p x = count``), a load row per node (``Σ_{p∋m} x − Σ_k k·θ_mk =
    0``), a convexity row per node (``Σ_k θ_mk = 1``), and the mean row if binding.
    Energy columns are **breakpoints** ``θ_mk`` (load k of node m, cost ``E_m(k)``): for a
    convex table the loads where its increments change (every load of an adaptive-power
    table, only 0 and the cap of a linear one) — the λ model of docs/model.md §3.5 in
    convex-combination form, exact at integer loads; for any other table every load, with
    binary θ (the level model). Column generation and the MILPs use only the breakpoints that
    can matter (see :func:`solve_master`). Breakpoint b is ``(bp_node[b], bp_load[b])``; the
    breakpoints of node m are ``bp_start[m]:bp_end[m]``, by increasing load.
    """

    space: PatternSpace
    store: PatternStore
    scale: float  # J per energy unit
    nodes: np.ndarray  # remote nodes with rows
    load_row: np.ndarray  # (M + 1,) row of node m, −1 if none
    conv_row: np.ndarray  # (M + 1,) convexity row of node m, −1 if none
    mean_row: int  # −1 if none
    row_lower: np.ndarray
    row_upper: np.ndarray
    bp_node: np.ndarray  # (B,) node of each breakpoint
    bp_load: np.ndarray  # (B,) its load k
    bp_cost: np.ndarray  # (B,) E_m(k) in energy units
    bp_integer: np.ndarray  # (B,) binary (non-convex table)
    bp_start: np.ndarray  # (M + 1,) first breakpoint of node m (its k = 0)
    bp_end: np.ndarray  # (M + 1,)
    overflow: Columns  # LP-only penalised slack of load and mean rows
    #: polymatroid cuts of non-convex tables in the column-generation LP (rows after the
    #: master's rows, in order; see siftopt.backends.highs.cuts): node and per-class slope
    cut_node: list[int] = field(default_factory=list)
    cut_slope: list[np.ndarray] = field(default_factory=list)

    def breakpoint_columns(self, bps: np.ndarray, *, lp: bool = False) -> Columns:
        """Columns ``θ`` of the given breakpoints (in a MILP also in the link rows of
        :meth:`mip_rows`)."""
        bps = np.asarray(bps, dtype=np.int64)
        n = bps.size
        load = self.bp_load[bps]
        node = self.bp_node[bps]
        has_load = np.flatnonzero(load > 0)
        col = np.concatenate([np.arange(n), has_load])
        row = np.concatenate([self.conv_row[node], self.load_row[node[has_load]]])
        val = np.concatenate([np.ones(n), -load[has_load].astype(float)])
        if not lp:
            col = np.concatenate([col, has_load])
            row = np.concatenate([row, self.link_row[node[has_load]]])
            val = np.concatenate([val, -load[has_load].astype(float)])
        for r, m in enumerate(self.cut_node if lp else []):  # C_m(k)·θ_mk in cut r
            on = np.flatnonzero(node == m)
            col = np.concatenate([col, on])
            row = np.concatenate([row, np.full(on.size, self.row_lower.size + r)])
            val = np.concatenate([val, self.cut_costs(m)[self.bp_load[bps[on]]]])
        integer = np.zeros(n, bool) if lp else self.bp_integer[bps]
        return Columns.from_entries(self.bp_cost[bps], np.zeros(n), np.ones(n), integer, col,
                                    row, val)

    def pattern_columns(self, patterns: np.ndarray, *, lp: bool = False) -> Columns:
        """Columns ``x[g,p]`` of stored patterns (integer, ``0..count_g``).

        In the LP (``lp``) they have no upper bound (the class row bounds them): a column at
        an explicit upper bound could carry a negative reduced cost and weaken the bound.
        """
        cls_all, mask_all, deg_all = self.store.arrays
        patterns = np.asarray(patterns, dtype=np.int64)
        n = patterns.size
        cls = cls_all[patterns]
        pos, node = mask_bits(mask_all[patterns], self.space.data.num_nodes)
        cols = [np.arange(n), pos]
        rows = [cls, self.load_row[node]]
        vals = [np.ones(n), np.ones(pos.size)]
        if self.mean_row >= 0:
            cols.append(np.arange(n))
            rows.append(np.full(n, self.mean_row))
            vals.append(deg_all[patterns])
        if lp:
            for r, (m, slope) in enumerate(zip(self.cut_node, self.cut_slope, strict=True)):
                on = pos[node == m]  # − a_g·x[g,p] in cut r
                cols.append(on)
                rows.append(np.full(on.size, self.row_lower.size + r))
                vals.append(-slope[cls[on]])
        upper = np.full(n, INF) if lp else self.space.class_count[cls].astype(float)
        return Columns.from_entries(np.zeros(n), np.zeros(n), upper, np.ones(n, bool),
                                    np.concatenate(cols), np.concatenate(rows),
                                    np.concatenate(vals))

    @property
    def link_row(self) -> np.ndarray:
        """``(M + 1,)`` MILP row ``n_m − Σ_k k·θ_mk = 0`` of node m (−1 if none): after the
        rows of the LP."""
        out = np.full(self.load_row.size, -1, dtype=np.int64)
        out[self.nodes] = self.row_lower.size + np.arange(self.nodes.size)
        return out

    def mip_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Row bounds of a MILP: the LP's rows and one link row per node with a load row."""
        zeros = np.zeros(self.nodes.size)
        return (np.concatenate([self.row_lower, zeros]),
                np.concatenate([self.row_upper, zeros]))

    def load_columns(self) -> Columns:
        """MILP columns ``n_m`` (integer, ``0..`` the node's largest breakpoint load), one per
        node with rows, in ``nodes`` order: the node loads as integer variables. They are
        implied integer (``n_m`` is a sum of integer pattern amounts), so they cut off no
        solution; HiGHS branching on them (more balanced than on single patterns) proves
        optimality with far fewer nodes when a mean row couples the tokens."""
        n = self.nodes.size
        cap = self.bp_load[self.bp_end[self.nodes] - 1].astype(float)
        return Columns.from_entries(np.zeros(n), np.zeros(n), cap, np.ones(n, bool),
                                    np.arange(n), self.link_row[self.nodes], np.ones(n))

    def pricing(self, row_dual: np.ndarray, threshold: float, tighten: bool) -> Pricing:
        """Pattern reduced costs at LP duals: ``rc = Σ_{m∈C} μ_m + ν·D − π_g`` with ``π_g`` the
        class row's dual, ``μ_m = −y_m`` the load row's, ``ν = −y_mean ≥ 0`` (pattern columns
        cost 0, so this is ``c − Aᵀy``)."""
        price = np.zeros(self.space.data.num_nodes)
        price[self.nodes - 1] = -row_dual[self.load_row[self.nodes]]
        nu = max(0.0, -float(row_dual[self.mean_row])) if self.mean_row >= 0 else 0.0
        class_node = None
        if self.cut_node:  # a cut's dual κ ≥ 0 prices node m at a_g·κ for class g
            class_node = np.zeros((self.space.num_classes, self.space.data.num_nodes))
            for m, slope, kappa in zip(self.cut_node, self.cut_slope, self.cut_duals(row_dual),
                                       strict=True):
                class_node[:, m - 1] += slope * kappa
        return Pricing(class_dual=row_dual[: self.space.num_classes].copy(), node_price=price,
                       degradation_price=nu,
                       threshold=np.full(self.space.num_classes, threshold), tighten=tighten,
                       class_node_price=class_node)

    def cut_duals(self, row_dual: np.ndarray, count: int | None = None) -> np.ndarray:
        """``κ_r ≥ 0``: the duals of the cut rows (``≥`` rows of a minimisation; rounding
        below 0 is clipped, which keeps every reduced cost a valid Lagrangian one); of the
        first ``count`` cuts (default: all), those of the LP that gave ``row_dual``."""
        rows = self.row_lower.size + np.arange(len(self.cut_node) if count is None else count)
        return np.maximum(np.asarray(row_dual)[rows], 0.0) if rows.size else np.zeros(0)

    def breakpoint_reduced_costs(self, row_dual: np.ndarray) -> np.ndarray:
        """``rc_b = E_m(k) + k·y_load − y_conv`` for every breakpoint."""
        rc = (self.bp_cost + self.bp_load * row_dual[self.load_row[self.bp_node]]
              - row_dual[self.conv_row[self.bp_node]])
        for m, kappa in zip(self.cut_node, self.cut_duals(row_dual), strict=True):
            lo, hi = int(self.bp_start[m]), int(self.bp_end[m])
            rc[lo:hi] -= kappa * self.cut_costs(m)
        return rc

    def cut_costs(self, m: int) -> np.ndarray:
        """``C_m(0..cap)``: the concave part of node m's table (every load is a breakpoint
        of a non-convex table), the θ coefficients of its cuts."""
        return concave_part(self.bp_cost[self.bp_start[m]: self.bp_end[m]])

    def loads(self, patterns: np.ndarray, amounts: np.ndarray) -> np.ndarray:
        """``(M + 1,)`` node loads of chosen stored patterns and amounts."""
        loads = np.zeros(self.space.data.num_nodes + 1, dtype=np.int64)
        pos, node = mask_bits(self.store.arrays[1][patterns], self.space.data.num_nodes)
        np.add.at(loads, node, np.rint(amounts[pos]).astype(np.int64))
        return loads

    def bracket(self, loads: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per node with rows: the breakpoints ``a ≤ n < b`` (or ``a = b = n`` at a
        breakpoint) around its load n, and the weight of b (``θ_a = 1 − w``, ``θ_b = w``)."""
        lo_out, hi_out, w_out = [], [], []
        for m in self.nodes:
            lo, hi = int(self.bp_start[m]), int(self.bp_end[m])
            n = min(int(loads[m]), int(self.bp_load[hi - 1]))
            at = lo + int(np.searchsorted(self.bp_load[lo:hi], n, side="right")) - 1
            if self.bp_load[at] == n:
                lo_out.append(at)
                hi_out.append(at)
                w_out.append(0.0)
            else:
                a, b = self.bp_load[at], self.bp_load[at + 1]
                lo_out.append(at)
                hi_out.append(at + 1)
                w_out.append((n - a) / (b - a))
        return np.array(lo_out, np.int64), np.array(hi_out, np.int64), np.array(w_out)

    def load_breakpoints(self, loads: np.ndarray) -> np.ndarray:
        """The breakpoints needed to represent the loads (see :meth:`bracket`)."""
        lo, hi, _ = self.bracket(loads)
        return np.union1d(lo, hi)

    def theta(self, loads: np.ndarray, bps: np.ndarray) -> np.ndarray:
        """Values of the (sorted) breakpoint columns ``bps`` that represent the loads."""
        lo, hi, w = self.bracket(loads)
        out = np.zeros(bps.size)
        np.add.at(out, np.searchsorted(bps, lo), 1.0 - w)
        np.add.at(out, np.searchsorted(bps, hi), w)
        return out

    def energy_of(self, patterns: np.ndarray, amounts: np.ndarray) -> float:
        """Objective (energy units) of chosen stored patterns and amounts."""
        lo, hi, w = self.bracket(self.loads(patterns, amounts))
        return float(((1.0 - w) * self.bp_cost[lo] + w * self.bp_cost[hi]).sum())


def build_master(space: PatternSpace) -> Master:
    """Rows, breakpoints and overflow columns of the pattern master."""
    data = space.data
    scale = data.energy_scale_j()
    n_classes = space.num_classes
    # a node's load cannot exceed the tokens of the classes it is relevant to
    users = np.concatenate([[0.0], space.class_count @ space.relevant])
    nodes = np.flatnonzero(users[1:] > 0) + 1
    node_cap = np.minimum(data.caps[nodes], users[nodes]).astype(np.int64)
    load_row = np.full(data.num_nodes + 1, -1, dtype=np.int64)
    conv_row = np.full(data.num_nodes + 1, -1, dtype=np.int64)
    load_row[nodes] = n_classes + np.arange(nodes.size)
    conv_row[nodes] = n_classes + nodes.size + np.arange(nodes.size)
    mean_row = -1
    counts = space.class_count.astype(float)
    row_lower = [counts, np.zeros(nodes.size), np.ones(nodes.size)]
    row_upper = [counts, np.zeros(nodes.size), np.ones(nodes.size)]
    if space.mean_row:
        mean_row = n_classes + 2 * nodes.size
        row_lower.append(np.array([-INF]))
        row_upper.append(np.array([data.budgets.mean_row_upper()]))
    loads = [_breakpoint_loads(data, int(m), int(c)) for m, c in
             zip(nodes, node_cap, strict=True)]
    sizes = np.array([x.size for x in loads], dtype=np.int64)
    bp_start = np.zeros(data.num_nodes + 1, dtype=np.int64)
    bp_end = np.zeros(data.num_nodes + 1, dtype=np.int64)
    bp_end[nodes] = np.cumsum(sizes)
    bp_start[nodes] = bp_end[nodes] - sizes
    bp_node = np.repeat(nodes, sizes)
    bp_load = np.concatenate(loads) if loads else np.zeros(0, np.int64)
    bp_cost = (np.concatenate([data.tables[m - 1].energy_j[x] / scale
                               for m, x in zip(nodes, loads, strict=True)])
               if loads else np.zeros(0))
    convex = np.array([data.tables[m - 1].convex for m in range(1, data.num_nodes + 1)])
    bp_integer = ~convex[bp_node - 1] if nodes.size else np.zeros(0, bool)
    # overflow: one more unit of load above any marginal energy, of degradation at that price
    # per typical degradation step; raised ×10 while the LP optimum still uses it
    big = 2.0 * max((float(np.max(np.diff(data.tables[m - 1].energy_j[: c + 1]),
                                  initial=0.0)) / scale for m, c in
                     zip(nodes, node_cap, strict=True)), default=0.0) + 1.0
    o_rows = list(load_row[nodes])
    o_cost = [big] * nodes.size
    if mean_row >= 0:
        o_rows.append(mean_row)
        o_cost.append(big / _degradation_step(space))
    n_o = len(o_rows)
    overflow = Columns.from_entries(np.array(o_cost), np.zeros(n_o), np.full(n_o, INF),
                                    np.zeros(n_o, bool), np.arange(n_o),
                                    np.array(o_rows, np.int64), -np.ones(n_o))
    return Master(space=space, store=PatternStore(), scale=scale, nodes=nodes,
                  load_row=load_row, conv_row=conv_row, mean_row=mean_row,
                  row_lower=np.concatenate(row_lower), row_upper=np.concatenate(row_upper),
                  bp_node=bp_node, bp_load=bp_load, bp_cost=bp_cost, bp_integer=bp_integer,
                  bp_start=bp_start, bp_end=bp_end, overflow=overflow)


def _breakpoint_loads(data: ProblemData, node: int, cap: int) -> np.ndarray:
    """Loads of node's breakpoints up to ``cap``: where a convex table's increments change
    (relative ``LINEAR_RTOL``), every load of a non-convex one."""
    table = data.tables[node - 1]
    if not table.convex:
        return np.arange(cap + 1, dtype=np.int64)
    return segments(np.diff(table.energy_j[: cap + 1])).astype(np.int64)


def _degradation_step(space: PatternSpace) -> float:
    """The median positive gain of a remote option over its slot's local fallback (at least
    1e-6): a unit for pricing the mean row's overflow."""
    gain = space.slots.local[:, :, None] - space.slots.remote
    gain = gain[np.isfinite(gain) & (gain > 0)]
    return float(max(np.median(gain), 1e-6)) if gain.size else 1.0


__all__ = ["Master", "PatternStore", "build_master"]
