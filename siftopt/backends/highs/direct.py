"""HiGHS models of (P) assembled directly with numpy and passed to highspy (no Pyomo).

Two formulations, both exact (docs/model.md §3.5):

* **patterns** (:func:`solve_highs_patterns`): the master over the node-set patterns of
  :mod:`siftopt.formulations.patterns`. Columns ``x[g,p]`` (integer, ``0..count_g``) choose
  pattern p for
  that many tokens of class g; rows:

  - one choice per token: ``Σ_p x[g,p] = count_g``;
  - loads: ``Σ_{p ∋ m} x[g,p] − Σ_k k·θ[m,k] = 0`` and ``Σ_k θ[m,k] = 1``, with breakpoint
    columns ``θ[m,k]`` of cost ``E_m(k)`` (see :class:`Master`: continuous for convex tables,
    only where the increments change; binary at every load otherwise);
  - the mean budget, when binding: ``Σ D_p x[g,p] ≤ L(ε̄ + BUDGET_SLACK)``. Per-token budgets
    need no row: every pattern meets its token's.

  Objective: ``Σ_m E_m(n_m)`` in units of ``ProblemData.energy_scale_j``.

  Up to :data:`DIRECT_TOKENS` tokens the MILP gets every pattern and breakpoint at once.
  Beyond, it is solved by **column generation with reduced-cost fixing**, which is exact
  (:func:`solve_master`):

  1. the LP relaxation over a growing subset of columns, priced against *all* patterns (a
     pruned enumeration, :func:`siftopt.formulations.patterns.enumerate_patterns`) and
     breakpoints, until
     nothing has a negative reduced cost. Load and mean rows get penalised overflow columns,
     so every restricted LP is feasible; they only relax the LP, so ``z_LP`` (less the pricing
     tolerance) is a valid lower bound LB;
  2. an upper bound UB from the MILP over the columns of small reduced cost;
  3. a solution that uses a column of reduced cost rc costs at least ``LB + rc``, so one
     better than UB uses only columns with ``rc ≤ UB − LB``; those are enumerated and the
     MILP over them, started from UB, is the exact optimum.

* **slots** (:func:`solve_highs_slots`): the slot MILP of :mod:`siftopt.backends.highs.pyomo_slots`
  (same variables, rows and exactness rules) assembled directly; the patterns backend falls
  back to it past the enumeration limits of :mod:`siftopt.formulations.patterns`
  (``details["fallback"]``
  says why).

Decoding (L = 1), and prefill with linear tables (fixed power), no binding mean budget and
per-token choices that fit the caps, need no MILP: the cheapest feasible pattern per token is
optimal.

Exactness settings come from the profile (relative and absolute MIP gaps 0, feasibility
tolerances 1e-10 in the default profile); the LP phase takes the profile's non-MIP options.
HiGHS output is off; its banner (printed when the Python object is constructed) is
swallowed. Timings: ``solve_time_s`` is time in HiGHS plus pattern pricing (the column
generation subproblem); ``build_time_s`` is the rest (pattern space, model assembly,
recovery of the actions).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import highspy
import numpy as np
from pyomo.common.tee import capture_output

from siftopt.backends.highs.pyomo_slots import _check_highs_options, _use_threads
from siftopt.backends.pattern_common import no_pattern_outcome, remaining_s, slot_fallback
from siftopt.backends.progress import watch_highs
from siftopt.errors import InputError
from siftopt.formulations.patterns import (
    BUDGET_SLACK,
    PatternLimitError,
    PatternSet,
    PatternSpace,
    Pricing,
    actions_for_patterns,
    assign_patterns,
    cheapest_patterns,
    decode_rule_applies,
    enumerate_patterns,
    mask_bits,
    masks_energy_j,
    one_token_energy,
    pattern_of_actions,
    pattern_space,
    segments,
)
from siftopt.io.profiles import Profile
from siftopt.model.problem import SKIP, ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

#: Instances with at most this many tokens give the MILP every pattern at once (0: always
#: column generation, which measured faster at every size).
DIRECT_TOKENS = 0
#: When the restricted MILPs of column generation find no solution, the MILP over every
#: pattern is tried if there are at most this many, else the slot formulation.
ALL_PATTERNS_LIMIT = 50_000
#: Reduced costs below ``-PRICING_TOL`` (energy units) enter the LP.
PRICING_TOL = 1e-7
#: Largest number of column-generation rounds.
MAX_CG_ROUNDS = 1000
#: Patterns added per class and round (the most negative reduced costs).
COLUMNS_PER_CLASS = 2
#: Reduced-cost threshold (energy units) of the first restricted MILP, and the largest one
#: tried (×8 per step) before falling back to the slot formulation.
TAU, MAX_TAU = 0.1, 52.0
#: Overflow values above this count as used; an overflow's cost is raised ×10 at most
#: MAX_ESCALATIONS times before column generation gives up (exact fallback).
OVERFLOW_TOL, MAX_ESCALATIONS = 1e-9, 12
#: Extra room on the reduced-cost threshold of the fixing step (relative, absolute).
FIX_MARGIN = (1e-7, 1e-6)
INF = highspy.kHighsInf


# ---- HiGHS plumbing ---------------------------------------------------------------------------


def new_highs(profile: Profile, time_limit_s: float | None, *, lp_only: bool = False
              ) -> highspy.Highs:
    """A silent HiGHS object with the profile's options, threads and time limit (s)."""
    with capture_output(capture_fd=True):  # the constructor prints a banner
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    _use_threads(profile.threads)
    highs.setOptionValue("threads", profile.threads)
    for key, value in profile.highs.items():
        if lp_only and key.startswith("mip_"):
            continue
        if highs.setOptionValue(key, value) != highspy.HighsStatus.kOk:
            raise InputError(f"HiGHS rejects option {key} = {value!r}", path=f"highs.{key}")
    if time_limit_s is not None:
        highs.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
    return highs


@dataclass
class Columns:
    """Columns in CSC layout: cost, bounds, integrality and the matrix entries."""

    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integer: np.ndarray  # bool
    start: np.ndarray  # (n + 1,)
    index: np.ndarray  # row of each entry
    value: np.ndarray

    @property
    def size(self) -> int:
        return int(self.cost.size)

    @staticmethod
    def from_entries(cost: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     integer: np.ndarray, col: np.ndarray, row: np.ndarray,
                     value: np.ndarray) -> Columns:
        order = np.lexsort((row, col))
        start = np.searchsorted(col[order], np.arange(cost.size + 1))
        return Columns(np.asarray(cost, float), np.asarray(lower, float),
                       np.asarray(upper, float), np.asarray(integer, bool),
                       start.astype(np.int64), row[order].astype(np.int64),
                       value[order].astype(float))

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        starts, offset = [np.zeros(1, np.int64)], 0
        for part in parts:
            starts.append(part.start[1:] + offset)
            offset += int(part.start[-1])
        return Columns(np.concatenate([p.cost for p in parts]),
                       np.concatenate([p.lower for p in parts]),
                       np.concatenate([p.upper for p in parts]),
                       np.concatenate([p.integer for p in parts]),
                       np.concatenate(starts),
                       np.concatenate([p.index for p in parts]),
                       np.concatenate([p.value for p in parts]))


def pass_model(highs: highspy.Highs, cols: Columns, row_lower: np.ndarray,
               row_upper: np.ndarray, *, mip: bool) -> None:
    """``passModel`` of ``min cost·x`` s.t. ``row_lower ≤ A x ≤ row_upper``, bounds on x."""
    integrality = (cols.integer if mip else np.zeros(cols.size, bool)).astype(np.int32)
    status = highs.passModel(
        cols.size, row_lower.size, int(cols.start[-1]), 1, 1, 0.0,  # colwise, minimise
        cols.cost, cols.lower, cols.upper, np.asarray(row_lower, float),
        np.asarray(row_upper, float), cols.start.astype(np.int32),
        cols.index.astype(np.int32), cols.value, integrality)
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the model")


def add_columns(highs: highspy.Highs, cols: Columns) -> None:
    highs.addCols(cols.size, cols.cost, cols.lower, cols.upper, int(cols.start[-1]),
                  cols.start[:-1].astype(np.int32), cols.index.astype(np.int32), cols.value)


@dataclass
class MipResult:
    """What one HiGHS MILP run gave: status, values, objective and bound (energy units)."""

    status: str
    values: np.ndarray | None
    objective: float | None
    bound: float | None
    seconds: float
    nodes: int | None = None


def run_mip(highs: highspy.Highs, gaps_zero: bool) -> MipResult:
    """Run HiGHS on the passed MILP and map its status (``optimal`` = proved, gap 0)."""
    started = time.perf_counter()
    highs.run()
    seconds = time.perf_counter() - started
    model_status = highs.getModelStatus()
    info = highs.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    values = np.asarray(highs.getSolution().col_value) if has_solution else None
    objective = float(info.objective_function_value) if has_solution else None
    bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else None
    ms = highspy.HighsModelStatus
    if model_status == ms.kOptimal and has_solution:
        status = OPTIMAL
        if not gaps_zero and (bound is None or objective is None or bound < objective):
            status = FEASIBLE
    elif model_status == ms.kInfeasible:
        status = INFEASIBLE
    elif has_solution:
        status = FEASIBLE
    elif model_status in (ms.kTimeLimit, ms.kIterationLimit, ms.kInterrupt,
                          ms.kSolutionLimit):
        status = TIME_LIMIT
    else:
        raise RuntimeError(f"HiGHS ended with status {highs.modelStatusToString(model_status)}"
                           " and no solution")
    return MipResult(status, values, objective, bound, seconds,
                     int(info.mip_node_count) if info.mip_node_count >= 0 else None)


def _gaps_zero(profile: Profile) -> bool:
    return (profile.highs.get("mip_rel_gap", 0.0) == 0
            and profile.highs.get("mip_abs_gap", 0.0) == 0)


# ---- node energies ----------------------------------------------------------------------------


@dataclass
class EnergyBlock:
    """Energy columns of the remote nodes that carry load rows (energy units).

    ``load_row[i]`` is the row of node ``nodes[i]``; level rows (``Σ_k z ≤ 1``) follow the
    rows given at construction. ``fill(loads)`` gives the column values of integer loads.
    """

    nodes: np.ndarray
    cols: Columns
    row_lower: np.ndarray  # level rows
    row_upper: np.ndarray
    col_node: np.ndarray  # node of each energy column
    col_kind: np.ndarray  # 0 = λ segment, 1 = z level
    col_size: np.ndarray  # segment length (λ) or level (z)
    col_first: np.ndarray  # first load of the segment (λ)

    def fill(self, loads: np.ndarray) -> np.ndarray:
        """Column values for integer loads ``loads[m]`` (indexed by node 0..M)."""
        n = loads[self.col_node].astype(float)
        lam = np.clip(n - self.col_first, 0.0, self.col_size)
        z = (n == self.col_size).astype(float)
        return np.where(self.col_kind == 0, lam, z)


def energy_block(data: ProblemData, nodes: np.ndarray, node_cap: np.ndarray, load_row: np.ndarray,
                 first_level_row: int, scale: float) -> EnergyBlock:
    """λ segments for convex tables, z levels otherwise, for ``nodes`` up to ``node_cap``.

    ``load_row[m]`` is node m's load row; level rows are numbered from ``first_level_row``;
    costs are in units of ``scale`` J.
    """
    cost, upper, integer, col, row, value = [], [], [], [], [], []
    kinds, sizes, firsts, col_nodes = [], [], [], []
    level_rows = 0
    n_cols = 0
    for m, cap in zip(nodes, node_cap, strict=True):
        table = data.tables[m - 1]
        energy = table.energy_j[: int(cap) + 1] / scale
        if table.convex:
            inc = np.diff(energy)
            seg_start = segments(inc)
            for a, b in zip(seg_start[:-1], seg_start[1:], strict=True):
                cost.append(float(inc[a:b].mean()))
                upper.append(float(b - a))
                integer.append(False)
                col.append(n_cols)
                row.append(int(load_row[m]))
                value.append(-1.0)
                kinds.append(0)
                sizes.append(float(b - a))
                firsts.append(float(a))
                col_nodes.append(m)
                n_cols += 1
        else:
            lrow = first_level_row + level_rows
            level_rows += 1
            for level in range(1, int(cap) + 1):
                cost.append(float(energy[level]))
                upper.append(1.0)
                integer.append(True)
                col += [n_cols, n_cols]
                row += [int(load_row[m]), lrow]
                value += [-float(level), 1.0]
                kinds.append(1)
                sizes.append(float(level))
                firsts.append(0.0)
                col_nodes.append(m)
                n_cols += 1
    cols = Columns.from_entries(np.array(cost), np.zeros(n_cols), np.array(upper),
                                np.array(integer, bool), np.array(col, np.int64),
                                np.array(row, np.int64), np.array(value))
    return EnergyBlock(nodes=nodes, cols=cols, row_lower=np.full(level_rows, -INF),
                       row_upper=np.ones(level_rows), col_node=np.array(col_nodes, np.int64),
                       col_kind=np.array(kinds), col_size=np.array(sizes),
                       col_first=np.array(firsts))


# ---- the pattern master ---------------------------------------------------------------------


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

    def breakpoint_columns(self, bps: np.ndarray, *, lp: bool = False) -> Columns:
        """Columns ``θ`` of the given breakpoints."""
        bps = np.asarray(bps, dtype=np.int64)
        n = bps.size
        load = self.bp_load[bps]
        node = self.bp_node[bps]
        has_load = np.flatnonzero(load > 0)
        col = np.concatenate([np.arange(n), has_load])
        row = np.concatenate([self.conv_row[node], self.load_row[node[has_load]]])
        val = np.concatenate([np.ones(n), -load[has_load].astype(float)])
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
        upper = np.full(n, INF) if lp else self.space.class_count[cls].astype(float)
        return Columns.from_entries(np.zeros(n), np.zeros(n), upper, np.ones(n, bool),
                                    np.concatenate(cols), np.concatenate(rows),
                                    np.concatenate(vals))

    def pricing(self, row_dual: np.ndarray, threshold: float, tighten: bool) -> Pricing:
        """Pattern reduced costs at LP duals: ``rc = Σ_{m∈C} μ_m + ν·D − π_g`` with ``π_g`` the
        class row's dual, ``μ_m = −y_m`` the load row's, ``ν = −y_mean ≥ 0`` (pattern columns
        cost 0, so this is ``c − Aᵀy``)."""
        price = np.zeros(self.space.data.num_nodes)
        price[self.nodes - 1] = -row_dual[self.load_row[self.nodes]]
        nu = max(0.0, -float(row_dual[self.mean_row])) if self.mean_row >= 0 else 0.0
        return Pricing(class_dual=row_dual[: self.space.num_classes].copy(), node_price=price,
                       degradation_price=nu,
                       threshold=np.full(self.space.num_classes, threshold), tighten=tighten)

    def breakpoint_reduced_costs(self, row_dual: np.ndarray) -> np.ndarray:
        """``rc_b = E_m(k) + k·y_load − y_conv`` for every breakpoint."""
        return (self.bp_cost + self.bp_load * row_dual[self.load_row[self.bp_node]]
                - row_dual[self.conv_row[self.bp_node]])

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
    inst = data.inst
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
        row_upper.append(np.array([inst.num_tokens * (inst.eps_mean + BUDGET_SLACK)]))
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


# ---- solving the pattern master ---------------------------------------------------------------


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

    def price(self, space: PatternSpace, pricing: Pricing | None = None) -> PatternSet:
        """:func:`enumerate_patterns`, timed as pricing."""
        started = time.perf_counter()
        found = enumerate_patterns(space, pricing)
        self.pricing_s += time.perf_counter() - started
        return found

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
        self.add(phase, columns=int(columns), status=result.status,
                 objective=result.objective, bound=result.bound,
                 solve_s=round(result.seconds, 4), mip_nodes=result.nodes)


Chosen = tuple[np.ndarray, np.ndarray]  # (store indices, amounts)


def _mip_over(master: Master, bps: np.ndarray, patterns: np.ndarray, profile: Profile,
              deadline: float | None, start: Chosen | None) -> tuple[MipResult, Chosen | None]:
    """The master MILP over breakpoints ``bps`` and stored ``patterns`` (both sorted),
    optionally started from a solution whose patterns and load breakpoints are among them.
    Returns the result and its (patterns, amounts)."""
    if patterns.size == 0:  # every class row needs a pattern
        return MipResult(INFEASIBLE, None, None, None, 0.0), None
    highs = new_highs(profile, remaining_s(deadline))
    cols = Columns.concat([master.breakpoint_columns(bps), master.pattern_columns(patterns)])
    pass_model(highs, cols, master.row_lower, master.row_upper, mip=True)
    if start is not None:
        amounts = np.zeros(patterns.size)
        amounts[np.searchsorted(patterns, start[0])] = start[1]
        theta = master.theta(master.loads(*start), bps)
        values = np.concatenate([theta, amounts])
        highs.setSolution(values.size, np.arange(values.size, dtype=np.int32), values)
    result = run_mip(highs, _gaps_zero(profile))
    if result.values is None:
        return result, None
    amounts = np.rint(result.values[bps.size:])
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
                      initial: np.ndarray, initial_bps: np.ndarray, trace: Trace
                      ) -> ColumnGeneration:
    """The master's LP relaxation by column generation over *all* patterns and breakpoints.

    Each round adds, per class, the patterns of most negative reduced cost (best-first
    search, :data:`COLUMNS_PER_CLASS` of them) and, per node, the breakpoint of most negative
    reduced cost with its neighbours. At convergence nothing has ``rc < −PRICING_TOL``, so
    ``LB = z_LP − PRICING_TOL·(L + #nodes)`` bounds the optimum from below (each class row
    sums to its count, each convexity row to 1).
    """
    space = master.space
    highs = new_highs(profile, remaining_s(deadline), lp_only=True)
    overflow_cost = master.overflow.cost.copy()
    pats, bps = [np.asarray(initial, np.int64)], [np.asarray(initial_bps, np.int64)]
    cols = Columns.concat([master.overflow, master.breakpoint_columns(bps[0], lp=True),
                           master.pattern_columns(pats[0], lp=True)])
    pass_model(highs, cols, master.row_lower, master.row_upper, mip=False)
    known = set(pats[0].tolist())
    in_lp_bp = np.zeros(master.bp_node.size, dtype=bool)
    in_lp_bp[bps[0]] = True
    rounds, converged, z_lp, row_dual = 0, False, 0.0, None
    escalations = 0
    while rounds < MAX_CG_ROUNDS:
        rounds += 1
        if not _run_lp(highs, trace):
            if deadline is not None and time.perf_counter() > deadline:
                break
            raise ColumnGenerationError("HiGHS did not solve a restricted LP to optimality "
                                        f"({highs.modelStatusToString(highs.getModelStatus())})")
        z_lp = float(highs.getInfo().objective_function_value)
        solution = highs.getSolution()
        row_dual = np.asarray(solution.row_dual)
        found = trace.price(space, master.pricing(row_dual, -PRICING_TOL, True))
        pick = _best_per_class(found)
        idx = master.store.add(found.pattern_class[pick], found.mask[pick],
                               found.degradation[pick])
        new = np.array(sorted(set(idx.tolist()) - known), dtype=np.int64)
        new_bps = _new_breakpoints(master, row_dual, in_lp_bp)
        if new.size == 0 and new_bps.size == 0:
            used = np.asarray(solution.col_value)[: overflow_cost.size] > OVERFLOW_TOL
            if not used.any():
                converged = True
                break
            # an overflow is still in use: price it higher (its LP is a relaxation either way)
            escalations += 1
            if escalations > MAX_ESCALATIONS:
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
        add_columns(highs, Columns.concat([master.breakpoint_columns(new_bps, lp=True),
                                           master.pattern_columns(new, lp=True)]))
        if deadline is not None and time.perf_counter() > deadline:
            break
    if not converged and (deadline is None or time.perf_counter() <= deadline):
        raise ColumnGenerationError(f"no convergence in {MAX_CG_ROUNDS} rounds")
    bound = (z_lp - PRICING_TOL * (space.data.num_tokens + master.nodes.size)
             if converged else 0.0)
    if converged:
        trace.improve(lower=bound)
    trace.add("column generation", rounds=rounds, lp_patterns=len(known),
              lp_breakpoints=int(in_lp_bp.sum()), lp_objective=z_lp, lower_bound=bound,
              converged=converged)
    return ColumnGeneration(lower_bound=max(bound, 0.0),
                            row_dual=row_dual if converged else None,
                            lp_patterns=np.unique(np.concatenate(pats)),
                            lp_breakpoints=np.flatnonzero(in_lp_bp), rounds=rounds,
                            converged=converged)


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


def _new_breakpoints(master: Master, row_dual: np.ndarray, in_lp: np.ndarray) -> np.ndarray:
    """Per node with a negative reduced cost: the least one's breakpoint and those at
    distances 1, 2, 4, … from it (within the node's loads), if not in the LP yet."""
    rc = master.breakpoint_reduced_costs(row_dual)
    out = []
    for m in master.nodes:
        lo, hi = int(master.bp_start[m]), int(master.bp_end[m])
        b = lo + int(np.argmin(rc[lo:hi]))
        if rc[b] < -PRICING_TOL:
            steps = 2 ** np.arange(int(np.log2(max(hi - lo, 1))) + 1)
            near = np.concatenate([[b], b - steps, b + steps])
            out.append(near[(near >= lo) & (near < hi)])
    if not out:
        return np.zeros(0, np.int64)
    cand = np.unique(np.concatenate(out))
    return cand[~in_lp[cand]]


def _best_per_class(pset: PatternSet) -> np.ndarray:
    """Indices of up to COLUMNS_PER_CLASS patterns of least reduced cost per class."""
    order = np.lexsort((pset.reduced_cost, pset.pattern_class))
    cls = pset.pattern_class[order]
    rank = np.arange(order.size) - np.searchsorted(cls, cls)
    return order[rank < COLUMNS_PER_CLASS]


def _columns_below(master: Master, row_dual: np.ndarray, threshold: float, trace: Trace
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints and (stored) patterns with reduced cost ≤ threshold at ``row_dual``;
    breakpoints come with their neighbours (a load between two breakpoints uses both, and
    costs at least LB + the smaller reduced cost)."""
    low = master.breakpoint_reduced_costs(row_dual) <= threshold
    keep = low.copy()
    same_node = master.bp_node[1:] == master.bp_node[:-1]
    keep[1:] |= low[:-1] & same_node
    keep[:-1] |= low[1:] & same_node
    bps = np.flatnonzero(keep)
    found = trace.price(master.space, master.pricing(row_dual, threshold, False))
    return bps, np.unique(master.store.add_set(found))


def solve_master(space: PatternSpace, profile: Profile, deadline: float | None,
                 warm: tuple | None, first: PatternSet, trace: Trace
                 ) -> tuple[MipResult, Master, Chosen | None, dict[str, Any]]:
    """Exact optimum of the pattern master by column generation and reduced-cost fixing.

    1. LP bound LB by column generation (:func:`column_generation`);
    2. an upper bound UB: the MILP over the columns with reduced cost ≤ TAU (energy units;
       the LP's basis has 0), widened ×8 while that MILP is infeasible — past MAX_TAU the
       slot formulation takes over;
    3. any solution using a column of reduced cost rc costs at least LB + rc (the LP duals are
       feasible for the full dual), so a solution better than UB uses only columns with
       ``rc ≤ UB − LB``: patterns (by a pruned enumeration), and breakpoints — the true
       optimum's loads are among them, and other loads are over-estimated by the chords, never
       under-. The MILP over those columns, started from UB, is exact. When step 2 already
       contained them all and proved optimality, it is the answer.

    ``first``: starting patterns (the cheapest per class); ``warm``: a feasible solution as
    ``((class, mask, D), amounts)``. Returns the last MILP result, the master, the chosen
    (patterns, amounts) and details.
    """
    master = build_master(space)
    store = master.store
    gaps_zero = _gaps_zero(profile)
    details: dict[str, Any] = {"load_rows": int(master.nodes.size),
                               "mean_row": master.mean_row >= 0}
    priced = time.perf_counter()
    least_d = cheapest_patterns(space, np.zeros(space.data.num_nodes), degradation_price=1.0)
    trace.pricing_s += time.perf_counter() - priced
    initial = np.unique(np.concatenate([store.add_set(first), store.add_set(least_d)]))
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
                           np.unique(np.concatenate(start_bps)), trace)
    lb = cg.lower_bound
    details.update(cg_rounds=cg.rounds, cg_converged=cg.converged, lp_bound=lb)
    ub = master.energy_of(*incumbent) if incumbent is not None else np.inf
    if incumbent is not None:
        trace.improve(upper=ub)
        trace.add("warm start")

    tau = TAU
    while True:
        if cg.row_dual is not None:  # the LP's basis has rc = 0: included
            bps, pats = _columns_below(master, cg.row_dual, tau, trace)
        else:
            bps, pats = np.arange(master.bp_node.size), cg.lp_patterns
        if incumbent is not None:
            pats = np.union1d(pats, incumbent[0])
            bps = np.union1d(bps, master.load_breakpoints(master.loads(*incumbent)))
        result, chosen = _mip_over(master, bps, pats, profile, deadline, incumbent)
        trace.mip("restricted mip", result, bps.size + pats.size, bound_valid=False)
        if chosen is not None and result.objective < ub:
            ub, incumbent = result.objective, chosen
        if incumbent is not None or result.status == TIME_LIMIT:
            break
        if cg.row_dual is None or tau >= MAX_TAU:
            # the restricted MILPs are infeasible; that proves nothing about (P)
            raise NoIncumbentError("no feasible solution among the priced patterns")
        tau = max(8.0 * tau, 0.1)  # widen the restricted MILP (from any start)
    if incumbent is None:
        return result, master, None, details
    details["upper_bound_restricted"] = ub
    if cg.row_dual is None:  # no valid duals to fix with: a solution, optimality unproved
        details["mip_columns"] = int(bps.size + pats.size)
        result.status = FEASIBLE
        result.bound = lb if cg.converged else None
        return result, master, incumbent, details
    threshold = ub - lb + FIX_MARGIN[0] * abs(ub) + FIX_MARGIN[1]
    fixed_bps, fixed = _columns_below(master, cg.row_dual, threshold, trace)
    details["fixed_columns"] = int(fixed.size + fixed_bps.size)
    if (result.status == OPTIMAL and gaps_zero and chosen is not None
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
    if result.bound is not None:
        result.bound = max(result.bound, lb)
    if chosen is None or (result.objective is not None and result.objective > ub):
        chosen = incumbent  # keep the better known solution (time limit)
    return result, master, chosen, details


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


# ---- entry points ----------------------------------------------------------------------------


def solve_highs_patterns(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                         warm_start: np.ndarray | None = None) -> BackendOutcome:
    """Solve (P) exactly with the pattern formulation (see the module docstring)."""
    started = time.perf_counter()
    deadline = None if time_limit_s is None else started + time_limit_s
    trace = Trace(started, data.energy_scale_j())
    _check_highs_options(dict(profile.highs))  # even when no MILP is needed
    checked = time.perf_counter()
    try:
        space = pattern_space(data)
        one_token = one_token_energy(data)
        priced = time.perf_counter()
        first = cheapest_patterns(space, one_token[1:] / data.energy_scale_j())
        trace.pricing_s += time.perf_counter() - priced
    except PatternLimitError as exc:
        return slot_fallback(solve_highs_slots, data, profile, deadline, warm_start, exc)
    details: dict[str, Any] = {
        "formulation": "patterns", "interface": "highspy passModel",
        "token_classes": space.num_classes, "energy_unit_j": data.energy_scale_j()}
    infeasible = no_pattern_outcome(space, first.pattern_class, details, started)
    if infeasible is not None:
        return infeasible
    token_mask = first.mask[space.token_class]
    if decode_rule_applies(space, token_mask):
        details["method"] = "decode rule (no MILP)"
        actions = actions_for_patterns(space, token_mask)
        energy = masks_energy_j(data, token_mask)
        # no model is built: the rule (slot tables, pricing, recovery) is the solve
        return BackendOutcome(OPTIMAL, actions, energy, checked - started,
                              time.perf_counter() - checked, details)
    warm = _warm_patterns(space, warm_start)
    details["warm_start"] = warm is not None
    try:
        if data.num_tokens <= DIRECT_TOKENS:
            result, master, chosen, extra = _solve_all_patterns(space, profile, deadline,
                                                                warm, trace)
        else:
            try:
                result, master, chosen, extra = solve_master(space, profile, deadline, warm,
                                                             first, trace)
            except (NoIncumbentError, ColumnGenerationError) as exc:
                result, master, chosen, extra = _solve_all_patterns(space, profile, deadline,
                                                                    warm, trace)
                extra["note"] = f"column generation: {exc}; MILP over every pattern"
    except PatternLimitError as exc:
        return slot_fallback(solve_highs_slots, data, profile, deadline, warm_start, exc)
    details.update(extra)
    details["patterns_stored"] = len(master.store)
    details["trace"] = trace.events
    details["solver_s"] = trace.solver_s
    details["pricing_s"] = trace.pricing_s
    actions = None
    if chosen is not None:
        cls, mask, _ = master.store.arrays
        token_mask = assign_patterns(space, cls[chosen[0]], mask[chosen[0]], chosen[1])
        actions = actions_for_patterns(space, token_mask)
    status = result.status
    if status == TIME_LIMIT and actions is not None:
        status = FEASIBLE
    bound = None if result.bound is None else max(result.bound, 0.0) * data.energy_scale_j()
    message = "stopped before finding a solution" if actions is None and \
        status == TIME_LIMIT else ""
    solving = trace.solver_s + trace.pricing_s
    finished = time.perf_counter()
    return BackendOutcome(status, actions, bound, finished - started - solving, solving,
                          details, message=message)


def _solve_all_patterns(space: PatternSpace, profile: Profile, deadline: float | None,
                        warm: tuple | None, trace: Trace
                        ) -> tuple[MipResult, Master, Chosen | None, dict[str, Any]]:
    """:func:`solve_all` over the full enumeration, if it has at most ALL_PATTERNS_LIMIT."""
    pset = enumerate_patterns(space)
    if pset.num_patterns > ALL_PATTERNS_LIMIT:
        raise PatternLimitError(f"{pset.num_patterns} patterns (limit {ALL_PATTERNS_LIMIT} "
                                "for a MILP over all of them)")
    return solve_all(space, pset, profile, deadline, warm, trace)


def _warm_patterns(space: PatternSpace, warm_start: np.ndarray | None) -> Chosen | None:
    """A warm start as ``((class, mask, D), amounts)``, or None if absent or unusable."""
    if warm_start is None:
        return None
    actions = np.asarray(warm_start)
    if actions.shape != space.data.inst.topk_experts.shape:
        raise InputError(f"warm start must have shape {space.data.inst.topk_experts.shape}, "
                         f"got {actions.shape}", path="warm_start")
    mask, deg = pattern_of_actions(space, actions)
    inst = space.data.inst
    if not np.all(np.isfinite(deg)):
        return None
    if space.mean_row and deg.sum() > inst.num_tokens * (inst.eps_mean + BUDGET_SLACK):
        return None
    _, node = mask_bits(mask, space.data.num_nodes)
    if np.any(np.bincount(node, minlength=space.data.num_nodes + 1) > space.data.caps):
        return None
    keys = np.stack([space.token_class.astype(np.uint64), mask], axis=1)
    uniq, inverse, amounts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    deg_of = np.zeros(uniq.shape[0])
    deg_of[inverse.ravel()] = deg
    return (uniq[:, 0].astype(np.int64), uniq[:, 1], deg_of), amounts.astype(float)


# ---- the slot model, assembled directly -------------------------------------------------------


def solve_highs_slots(data: ProblemData, profile: Profile, *, time_limit_s: float | None,
                      warm_start: np.ndarray | None = None) -> BackendOutcome:
    """The slot MILP of docs/model.md §3.5 assembled with numpy and solved by HiGHS.

    Same model as :mod:`siftopt.backends.highs.pyomo_slots`: binaries ``a[o]`` for the reachable
    options (skip included), ``u[t,m]`` for the (token, node) pairs some option can use, with
    ``a[o] ≤ u[t,π]`` and ``u[t,m] ≤ Σ a[o on m]``, loads through λ or z columns, accuracy
    rows with ``BUDGET_SLACK``.
    """
    started = time.perf_counter()
    inst = data.inst
    scale = data.energy_scale_j()
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
    if inst.eps_token is not None:
        token_rows = row + np.arange(inst.num_tokens)
        row += inst.num_tokens
    mean_row = -1
    if inst.eps_mean is not None:
        mean_row = row
        row += 1
    users = np.bincount(u_node, minlength=data.num_nodes + 1)
    node_cap = np.minimum(data.caps[nodes], users[nodes])
    block = energy_block(data, nodes, node_cap, load_row,
                         row, scale)
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
    pair_rows = link_rows
    u_link_col = pair_of
    u_cols = Columns.from_entries(
        np.zeros(n_u), np.zeros(n_u), np.ones(n_u), np.ones(n_u, bool),
        np.concatenate([u_link_col, u_idx, u_idx]),
        np.concatenate([pair_rows, use_rows, load_row[u_node]]),
        np.concatenate([-np.ones(pair_rows.size), np.ones(n_u), np.ones(n_u)]))
    cols = Columns.concat([block.cols, a_cols, u_cols])
    lower = np.concatenate([np.ones(n_slots), np.full(link_rows.size, -INF),
                            np.full(n_u, -INF), np.zeros(nodes.size)])
    upper = np.concatenate([np.ones(n_slots), np.zeros(link_rows.size), np.zeros(n_u),
                            np.zeros(nodes.size)])
    if token_rows.size:
        lower = np.concatenate([lower, np.full(token_rows.size, -INF)])
        upper = np.concatenate([upper, np.asarray(inst.eps_token, float) + BUDGET_SLACK])
    if mean_row >= 0:
        lower = np.append(lower, -INF)
        upper = np.append(upper, inst.num_tokens * (inst.eps_mean + BUDGET_SLACK))
    lower = np.concatenate([lower, block.row_lower])
    upper = np.concatenate([upper, block.row_upper])

    highs = new_highs(profile, time_limit_s)
    pass_model(highs, cols, lower, upper, mip=True)
    if warm_start is not None:
        values = _slot_warm_values(data, opts, pairs, block, warm_start)
        if values is not None:
            highs.setSolution(values.size, np.arange(values.size, dtype=np.int32), values)
    trace: list[dict[str, Any]] = []
    watch_highs(highs, started, scale, trace)
    built = time.perf_counter()
    result = run_mip(highs, _gaps_zero(profile))
    if result.objective is not None:
        trace.append({"t_s": round(time.perf_counter() - started, 4),
                      "phase": f"end ({result.status})",
                      "upper_bound_j": result.objective * scale,
                      "lower_bound_j": None if result.bound is None
                      else max(result.bound, 0.0) * scale})
    actions = None
    if result.values is not None:
        a_val = result.values[block.cols.size: block.cols.size + n_a]
        order = np.lexsort((-a_val, o_slot))  # per slot, its largest value first
        first = np.ones(order.size, dtype=bool)
        first[1:] = o_slot[order][1:] != o_slot[order][:-1]
        chosen = opts[order[first]]
        actions = data.opt_target[chosen].reshape(inst.topk_experts.shape)
    bound = None if result.bound is None else max(result.bound, 0.0) * scale
    return BackendOutcome(
        result.status, actions, bound, built - started, result.seconds,
        {"formulation": "slots", "interface": "highspy passModel", "energy_unit_j": scale,
         "num_binaries": int(n_a + n_u + int(block.cols.integer.sum())),
         "mip_nodes": result.nodes, "trace": trace},
        message="" if result.status != TIME_LIMIT else "stopped before finding a solution")


def _slot_warm_values(data: ProblemData, opts: np.ndarray, pairs: np.ndarray,
                      block: EnergyBlock, warm_start: np.ndarray) -> np.ndarray | None:
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


__all__ = ["solve_highs_patterns", "solve_highs_slots", "SKIP"]
