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
from ortools.linear_solver import pywraplp
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
from siftopt.backends.cpsat.slots import slots_with_cuts
from siftopt.backends.options import ExactOptions
from siftopt.io.profiles import Profile
from siftopt.model.budgets import Budgets, token_degradation
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

#: Largest number of relevant nodes of one class (``2^r`` subsets are evaluated).
MAX_RELEVANT = 20
#: Largest number of subsets evaluated over all classes (``Σ_g 2^{r_g}``).
MAX_SUBSETS = 1 << 29
#: Subsets evaluated per numpy batch.
BATCH = 1 << 22
#: Largest number of (class, pattern) variables handed to CP-SAT.
MAX_CPSAT_VARIABLES = 1_000_000
#: Extra room of every fixing threshold, relative to the magnitude of the bound's terms.
FIX_MARGIN = 1e-9
#: First reduced-cost threshold, relative to |LB| (and at least this many energy units).
FIRST_TAU = (1e-6, 1e-3)
#: Column-generation rounds of the GLOP LP, and the reduced cost below which a column enters.
MAX_LP_ROUNDS = 200
PRICING_TOL = 1e-9
#: Share of the time left after enumeration that the GLOP rounds may use.
LP_SHARE = 0.5
#: Penalty per token of overflow (above any node's energy per token) in the GLOP LP.
OVERFLOW_FACTOR = 1e3


# ---- 1. classes and patterns ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Patterns:
    """Token classes and their kept patterns, sorted by class.

    ``token_class`` (L,), ``rep`` (G,) a representative token, ``count`` (G,);
    ``cls`` (P,), ``mask`` (P,) uint64 with bit m−1 = node m, ``deg`` (P,) the pattern's D;
    ``start`` (G+1,) CSR offsets; ``subsets``: subsets evaluated.
    """

    token_class: np.ndarray
    rep: np.ndarray
    count: np.ndarray
    cls: np.ndarray
    mask: np.ndarray
    deg: np.ndarray
    start: np.ndarray
    subsets: int

    @property
    def num_classes(self) -> int:
        return int(self.rep.size)


class TooLarge(Exception):
    """The subset enumeration would pass its limits."""


def classes_of(data: ProblemData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(token_class, rep, count)``: tokens with equal experts, weights and ``ε_t``."""
    inst = data.inst
    eps = data.budgets.eps_token
    eps = np.zeros(inst.num_tokens) if eps is None else np.asarray(eps, dtype=float)
    rows = np.concatenate([inst.topk_experts.astype(float), inst.topk_weights, eps[:, None]],
                          axis=1)
    _, rep, inverse, count = np.unique(rows, axis=0, return_index=True, return_inverse=True,
                                       return_counts=True)
    return inverse.ravel().astype(np.int64), rep.astype(np.int64), count.astype(np.int64)


def slot_values(data: ProblemData, rep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class and slot: ``local (G, K)``, the least degradation without remote nodes, and
    ``remote (G, K, M)``, the least degradation of a reachable option on each node (inf if
    none)."""
    top_k, n_nodes = data.inst.top_k, data.num_nodes
    slots = (rep[:, None] * top_k + np.arange(top_k)).ravel()
    row_of_slot = np.full(data.num_slots, -1, dtype=np.int64)
    row_of_slot[slots] = np.arange(slots.size)
    row = row_of_slot[data.opt_slot]
    use = (row >= 0) & data.opt_reachable
    col = np.maximum(data.opt_node, 0)  # skip (−1) and node 0 are local
    value = np.full((slots.size, n_nodes + 1), np.inf)
    np.minimum.at(value, (row[use], col[use]), data.opt_degradation[use])
    shape = (rep.size, top_k)
    return value[:, 0].reshape(shape), value[:, 1:].reshape(*shape, n_nodes)


def enumerate_classes(data: ProblemData, *, max_relevant: int = MAX_RELEVANT,
                      max_subsets: int = MAX_SUBSETS, batch: int = BATCH) -> Patterns:
    """Every kept pattern of every class (module docstring, step 1); raises
    :class:`TooLarge` past the limits."""
    token_class, rep, count = classes_of(data)
    local, remote = slot_values(data, rep)
    relevant = (remote < local[:, :, None]).any(axis=1)  # (G, M)
    r_of = relevant.sum(axis=1)
    if r_of.size and int(r_of.max()) > max_relevant:
        raise TooLarge(f"a token has {int(r_of.max())} relevant nodes (limit {max_relevant})")
    subsets = int(np.sum(np.left_shift(1, r_of.astype(np.int64))))
    if subsets > max_subsets:
        raise TooLarge(f"{subsets} node subsets to evaluate (limit {max_subsets})")
    budgets = data.budgets
    eps = None if budgets.eps_token is None else np.asarray(budgets.eps_token, float)[rep]
    room = budgets.token_caps(data.least_degradation())[rep]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for r in np.unique(r_of).tolist():
        group = np.flatnonzero(r_of == r)
        per = max(1, batch >> r)
        for lo in range(0, group.size, per):
            g = group[lo: lo + per]
            nodes = np.nonzero(relevant[g])[1].reshape(g.size, r)  # 0-based node index
            values = np.take_along_axis(remote[g], nodes[:, None, :], axis=2)  # (c, K, r)
            parts.append(_kept_subsets(g, nodes, local[g], values,
                                       None if eps is None else eps[g], room[g],
                                       data.num_tokens, budgets.mean_binds))
    cls = np.concatenate([p[0] for p in parts])
    order = np.argsort(cls, kind="stable")
    cls = cls[order]
    mask = np.concatenate([p[1] for p in parts])[order]
    deg = np.concatenate([p[2] for p in parts])[order]
    start = np.searchsorted(cls, np.arange(rep.size + 1)).astype(np.int64)
    return Patterns(token_class, rep, count, cls, mask, deg, start, subsets)


def _kept_subsets(g: np.ndarray, nodes: np.ndarray, local: np.ndarray, values: np.ndarray,
                  eps: np.ndarray | None, room: np.ndarray, num_tokens: int, mean_row: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kept subsets of classes ``g`` (same r): ``(class, global mask, D)``."""
    c, top_k, r = values.shape
    size = 1 << r
    deg = np.empty((c, size))
    val = np.empty((c, size))
    for k in range(top_k):
        val[:, 0] = local[:, k]
        for j in range(r):
            half = 1 << j
            np.minimum(val[:, :half], values[:, k, j, None], out=val[:, half: 2 * half])
        if k == 0:
            deg[:] = val
        else:
            np.add(deg, val, out=deg)  # slot order, as token_degradation sums
    keep = deg <= room[:, None]
    if eps is not None:
        rule = Budgets(eps_token=np.broadcast_to(eps[:, None], deg.shape), eps_mean=None,
                       num_tokens=num_tokens)
        keep &= rule.token_ok(deg)
    # dominance, viewing bit j as an axis of length 2: with a mean row every node must
    # strictly lower D; without one no subset one node smaller may be kept
    fit = None if mean_row else keep.copy()
    for j in range(r):
        shape = (c, size >> (j + 1), 2, 1 << j)
        on = keep.reshape(shape)[:, :, 1, :]
        if fit is None:
            d = deg.reshape(shape)
            on &= d[:, :, 0, :] > d[:, :, 1, :]
        else:
            on &= ~fit.reshape(shape)[:, :, 0, :]
    row, sub = np.nonzero(keep)
    mask = np.zeros(row.size, dtype=np.uint64)
    for j in range(r):
        bit = ((sub >> j) & 1).astype(bool)
        mask[bit] |= np.left_shift(np.uint64(1), nodes[row[bit], j].astype(np.uint64))
    return g[row], mask, deg[row, sub]


def mask_prices(mask: np.ndarray, price: np.ndarray) -> np.ndarray:
    """``Σ_{m∈C} price[m−1]`` for every mask (one 256-entry table per byte)."""
    out = np.zeros(mask.size)
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1
    for b in range((price.size + 7) // 8):
        chunk = np.zeros(8)
        part = price[8 * b: 8 * b + 8]
        chunk[: part.size] = part
        out += (bits @ chunk)[((mask >> np.uint64(8 * b)) & np.uint64(255)).astype(np.int64)]
    return out


def class_mask_prices(mask: np.ndarray, cls: np.ndarray, price: np.ndarray) -> np.ndarray:
    """``Σ_{m∈C} price[g, m−1]`` for every pattern (mask C, class g)."""
    out = np.zeros(mask.size)
    for m in range(price.shape[1]):
        on = ((mask >> np.uint64(m)) & np.uint64(1)).astype(bool)
        out[on] += price[cls[on], m]
    return out


def mask_nodes(mask: np.ndarray, num_nodes: int) -> np.ndarray:
    """``(P, M)`` bool: node m (column m−1) is in the pattern."""
    shifts = np.arange(num_nodes, dtype=np.uint64)
    return ((mask[:, None] >> shifts) & np.uint64(1)).astype(bool)


# ---- 2. the Lagrangian bound --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Bound:
    """``LB(d, ν)`` in energy units and what fixing needs: per pattern ``rc``, per node the
    reduced costs of its loads ``node_rc[m−1]`` (over loads 0..n̂_m; inf past its reach),
    the margin, and the prices ``d`` (G, M) and ``nu``."""

    value: float
    d: np.ndarray
    nu: float
    rc: np.ndarray
    node_rc: list[np.ndarray]
    margin: float


def usable_nodes(pats: Patterns, num_nodes: int) -> np.ndarray:
    """``(G, M)`` bool: some kept pattern of class g contains node m."""
    masks = np.bitwise_or.reduceat(pats.mask, pats.start[:-1]) if pats.mask.size else (
        np.zeros(pats.num_classes, dtype=np.uint64))
    return mask_nodes(masks, num_nodes)


def top_sums(values: np.ndarray, count: np.ndarray, upto: int) -> np.ndarray:
    """``[0, s_1, …, s_upto]``: s_k the largest sum of k tokens' values (``values`` per class,
    ``count`` tokens each)."""
    order = np.argsort(-values, kind="stable")
    per_token = np.repeat(values[order], count[order])
    return np.concatenate([[0.0], np.cumsum(per_token[:upto])])


def lagrangian(pats: Patterns, tables: list[np.ndarray], d: np.ndarray, nu: float,
               mean_cap: float) -> Bound:
    """:class:`Bound` at prices ``d ≥ 0`` (per class and node, per token; a vector of length
    M means the same price for every class) and ``nu ≥ 0`` (mean row)::

        LB(d, ν) = Σ_m min_{0≤k≤k̂_m} (E_m(k) − top_k(d[:, m])) + Σ_g count_g·min_{C∈P_g}
                   (Σ_{m∈C} d[g, m] + ν D_C) − ν R

    ``top_k`` is the largest sum of k tokens' prices among the tokens that can use m, and
    ``k̂_m`` the least of n̂_m and their number. For the tokens S_m that use m in a decision,
    ``E_m(|S_m|) − d_m(S_m) ≥ E_m(|S_m|) − top_{|S_m|}`` — exact for any table, monotone or
    not, convex or not — and summing over m regroups ``Σ_m d_m(S_m)`` token by token."""
    num_nodes = len(tables)
    d = np.maximum(np.asarray(d, dtype=float), 0.0)
    uniform = d.ndim == 1
    nu = max(float(nu), 0.0)
    usable = usable_nodes(pats, num_nodes)
    node_rc, node_part, size = [], 0.0, 0.0
    for m, table in enumerate(tables):
        users = np.flatnonzero(usable[:, m])
        reach = min(int(pats.count[users].sum()), table.size - 1)
        if uniform:
            top = d[m] * np.arange(reach + 1)
        else:
            top = top_sums(d[users, m], pats.count[users], reach)
        value = np.full(table.size, np.inf)
        value[: reach + 1] = table[: reach + 1] - top
        low = float(value[: reach + 1].min())
        node_rc.append(value - low)
        node_part += low
        size += float(np.abs(value[: reach + 1]).max())
    cost = mask_prices(pats.mask, d) if uniform else class_mask_prices(pats.mask, pats.cls, d)
    if nu > 0:
        cost = cost + nu * pats.deg
    best = np.minimum.reduceat(cost, pats.start[:-1])
    token_part = float(np.dot(pats.count, best))
    mean_part = nu * mean_cap if nu > 0 else 0.0
    value = node_part + token_part - mean_part
    size += float(np.dot(pats.count, np.abs(best))) + abs(mean_part)
    rc = cost - best[pats.cls]
    return Bound(value, d, nu, rc, node_rc, FIX_MARGIN * max(size, 1.0))


def hull_points(table: np.ndarray) -> np.ndarray:
    """Loads at the vertices of the lower convex hull of ``(n, table[n])``, from 0 to the
    last load."""
    hull = [0]
    for k in range(1, table.size):
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (table[j] - table[i]) * (k - i) >= (table[k] - table[i]) * (j - i):
                hull.pop()
            else:
                break
        hull.append(k)
    return np.array(hull, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Split:
    """Each table as ``E_m = A_m + B_m`` with ``B_m`` concave and ``B_m(0) = 0`` (for the LP
    only: :func:`lagrangian` uses the whole table).

    ``convex[m]``: ``A_m`` over loads 0..n̂_m. ``steps[m]``: ``ΔB_m(k)``, k = 1..L,
    non-increasing (past n̂_m the last step repeats), or None when ``B_m`` is linear (then
    ``A_m = E_m``). ``B(|S|)`` of a concave B is submodular in the token set S, so every
    point y of its base polytope satisfies ``Σ_{t∈S} y_t ≤ B(|S|)`` (Edmonds); the greedy
    vertex of an order of the tokens gives the k-th token ``ΔB(k)``. With ``b_m ≥ y·u_m`` for
    such y the LP holds the convex closure of ``B_m`` over the token-usage vector (its Lovász
    extension), exact at every integer usage, instead of the convex envelope of the table
    alone (a chord, far below a concave table between its ends).
    """

    convex: list[np.ndarray]
    steps: list[np.ndarray | None]


def split_tables(tables: list[np.ndarray], num_tokens: int) -> Split:
    """The :class:`Split` that puts the negative second differences of each table into B."""
    convex: list[np.ndarray] = []
    steps: list[np.ndarray | None] = []
    for table in tables:
        d = np.diff(table)
        if d.size < 2:
            convex.append(table)
            steps.append(None)
            continue
        up = np.concatenate([[0.0], np.cumsum(np.maximum(np.diff(d), 0.0))])
        step = np.minimum.accumulate(d - up)
        if step[0] - step[-1] <= 1e-12 * max(float(np.abs(d).max()), 1e-300):
            convex.append(table)
            steps.append(None)
            continue
        convex.append(table - np.concatenate([[0.0], np.cumsum(step)]))
        pad = max(num_tokens - step.size, 0)
        steps.append(np.concatenate([step, np.full(pad, step[-1])])[:max(num_tokens, 1)])
    return Split(convex, steps)


def greedy_point(cum: np.ndarray, count: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per class, per token: the greedy vertex of B's base polytope for the classes in
    ``order`` (``cum = [0, B(1), B(2), …]``), averaged over each class's tokens (a convex
    combination of vertices, so a point of the base polytope)."""
    cnt = count[order]
    ends = np.cumsum(cnt)
    out = np.empty(count.size)
    out[order] = (cum[ends] - cum[ends - cnt]) / cnt
    return out


def lp_prices(pats: Patterns, tables: list[np.ndarray], mean_cap: float | None,
              deadline: float | None, max_rounds: int = MAX_LP_ROUNDS
              ) -> tuple[Bound, dict[str, Any]]:
    """Prices from a column-generated pattern LP solved with GLOP; returns the best
    :class:`Bound` seen over the rounds (each evaluated by :func:`lagrangian` on the whole
    tables) and statistics.

    Node m's energy is ``a_m + b_m`` (:class:`Split`): ``a_m`` above lines of the lower hull
    of ``A_m`` in the load n_m (added when violated), ``b_m`` above greedy cuts of ``B_m`` in
    the token usage (added at the LP's usage when violated). The prices handed to the bound
    are ``d[g, m] = μ_m + y_m[g]``, μ the load row's dual and y_m the duals' average of node
    m's greedy points."""
    split = split_tables(tables, int(pats.count.sum()))
    parts = split.convex
    n_nodes = len(tables)
    num_classes = pats.num_classes
    lp = pywraplp.Solver.CreateSolver("GLOP")
    infinity = lp.infinity()
    objective = lp.Objective()
    loads = [lp.Constraint(-infinity, 0.0) for _ in range(n_nodes)]
    top = max((float(np.max(np.abs(np.diff(t)))) for t in tables if t.size > 1), default=1.0)
    penalty = OVERFLOW_FACTOR * max(top, 1.0)
    load_var, energy_var, hulls = [], [], []
    for m, table in enumerate(parts):
        n = lp.NumVar(0.0, float(table.size - 1), "")
        e = lp.NumVar(-infinity, infinity, "")
        over = lp.NumVar(0.0, infinity, "")
        loads[m].SetCoefficient(n, -1.0)
        loads[m].SetCoefficient(over, -1.0)
        objective.SetCoefficient(e, 1.0)
        objective.SetCoefficient(over, penalty)
        load_var.append(n)
        energy_var.append(e)
        hulls.append(hull_points(table))
    cut_in: list[set[int]] = [set() for _ in parts]

    def add_cut(m: int, segment: int) -> bool:
        if segment in cut_in[m]:
            return False
        points = hulls[m]
        i, j = int(points[segment]), int(points[segment + 1])
        slope = (parts[m][j] - parts[m][i]) / (j - i)
        row = lp.Constraint(float(parts[m][i] - slope * i), infinity)
        row.SetCoefficient(energy_var[m], 1.0)
        row.SetCoefficient(load_var[m], float(-slope))
        cut_in[m].add(segment)
        return True

    for m in range(n_nodes):
        segs = hulls[m].size - 1
        for segment in np.unique(np.linspace(0, max(segs - 1, 0), min(segs, 8)).astype(int)):
            add_cut(m, int(segment))
    mean_row = None
    if mean_cap is not None:
        mean_row = lp.Constraint(-infinity, float(mean_cap))
        over = lp.NumVar(0.0, infinity, "")
        mean_row.SetCoefficient(over, -1.0)
        objective.SetCoefficient(over, penalty * num_classes)
    classes = [lp.Constraint(float(c), float(c)) for c in pats.count.tolist()]
    added = np.zeros(pats.mask.size, dtype=bool)
    columns: list[int] = []
    x_var: list[Any] = []
    concave = [m for m in range(n_nodes) if split.steps[m] is not None]
    cum = {m: np.concatenate([[0.0], np.cumsum(split.steps[m])]) for m in concave}
    b_var = {}
    greedy: list[tuple[int, np.ndarray, Any]] = []
    for m in concave:
        b_var[m] = lp.NumVar(-infinity, infinity, "")
        objective.SetCoefficient(b_var[m], 1.0)

    def add_greedy(m: int, coef: np.ndarray) -> None:
        row = lp.Constraint(0.0, infinity)
        row.SetCoefficient(b_var[m], 1.0)
        for i, p in enumerate(columns):
            if (int(pats.mask[p]) >> m) & 1:
                row.SetCoefficient(x_var[i], float(-coef[pats.cls[p]]))
        greedy.append((m, coef, row))

    def add(new: np.ndarray) -> None:
        members = mask_nodes(pats.mask[new], n_nodes)
        for i, p in enumerate(new.tolist()):
            x = lp.NumVar(0.0, infinity, "")
            g = int(pats.cls[p])
            classes[g].SetCoefficient(x, 1.0)
            for m in np.flatnonzero(members[i]).tolist():
                loads[m].SetCoefficient(x, 1.0)
            if mean_row is not None:
                mean_row.SetCoefficient(x, float(pats.deg[p]))
            for m, coef, row in greedy:
                if members[i, m]:
                    row.SetCoefficient(x, float(-coef[g]))
            columns.append(p)
            x_var.append(x)
        added[new] = True

    # start: per class its least-degradation pattern and its cheapest at one-token prices
    first = lagrangian(pats, tables, np.array([t[1] if t.size > 1 else 0.0 for t in tables]),
                       0.0, 0.0)
    cheapest = _argmin_per_class(pats, first.rc)
    deg_first = np.minimum.reduceat(pats.deg, pats.start[:-1])
    start = np.unique(np.concatenate([cheapest,
                                      _argmin_per_class(pats, pats.deg - deg_first[pats.cls])]))
    add(start)
    start_use = mask_nodes(pats.mask[cheapest], n_nodes).astype(float)
    for m in concave:  # a first cut: the greedy point of the cheapest start patterns' usage
        add_greedy(m, greedy_point(cum[m], pats.count,
                                   np.argsort(-start_use[:, m], kind="stable")))
    best: Bound | None = None
    rounds, lp_s = 0, 0.0
    while rounds < max_rounds:
        rounds += 1
        if deadline is not None:
            lp.SetTimeLimit(int(max(remaining_s(deadline) or 0.0, 0.001) * 1000))
        objective.SetMinimization()
        tic = time.perf_counter()
        status = lp.Solve()
        lp_s += time.perf_counter() - tic
        if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
            break
        # read every value before the model changes
        mu = np.maximum([-c.dual_value() for c in loads], 0.0)
        nu = 0.0 if mean_row is None else -mean_row.dual_value()
        pi = np.array([c.dual_value() for c in classes])
        load_now = [v.solution_value() for v in load_var]
        energy_now = [v.solution_value() for v in energy_var]
        xs = np.array([v.solution_value() for v in x_var])
        b_now = {m: v.solution_value() for m, v in b_var.items()}
        raw = np.zeros((num_classes, n_nodes))
        weight = np.zeros(n_nodes)
        for m, coef, row in greedy:
            w = max(row.dual_value(), 0.0)
            raw[:, m] += w * coef
            weight[m] += w
        if concave:
            d = mu[None, :] + raw / np.where(weight > 0, weight, 1.0)[None, :]
            bound = lagrangian(pats, tables, d, nu, mean_cap or 0.0)
            cost = class_mask_prices(pats.mask, pats.cls, mu[None, :] + raw)
            cost = cost + nu * pats.deg if nu > 0 else cost
        else:
            bound = lagrangian(pats, tables, mu, nu, mean_cap or 0.0)
            cost = _cost(pats, bound)
        if best is None or bound.value > best.value:
            best = bound
        reduced = cost - pi[pats.cls]
        reduced[added] = np.inf
        enter = _argmin_per_class(pats, reduced)
        enter = enter[reduced[enter] < -PRICING_TOL]
        cuts = 0
        for m in range(n_nodes):
            points = hulls[m]
            if points.size < 2:
                continue
            load = min(max(load_now[m], 0.0), float(points[-1]))
            segment = min(int(np.searchsorted(points, load, side="right")) - 1, points.size - 2)
            i, j = int(points[segment]), int(points[segment + 1])
            hull_value = parts[m][i] + (parts[m][j] - parts[m][i]) * (load - i) / (j - i)
            if energy_now[m] < hull_value - PRICING_TOL * max(1.0, abs(hull_value)):
                cuts += add_cut(m, segment)
                if segment + 1 < points.size - 1:
                    cuts += add_cut(m, segment + 1)
                if segment > 0:
                    cuts += add_cut(m, segment - 1)
        if concave:
            cols = np.array(columns, dtype=np.int64)
            usage = np.zeros((num_classes, n_nodes))
            np.add.at(usage, pats.cls[cols], mask_nodes(pats.mask[cols], n_nodes) * xs[:, None])
            per_token = usage / pats.count[:, None]
            for m in concave:
                coef = greedy_point(cum[m], pats.count,
                                    np.argsort(-per_token[:, m], kind="stable"))
                value = float(coef @ usage[:, m])
                if b_now[m] < value - PRICING_TOL * max(1.0, abs(value)):
                    add_greedy(m, coef)
                    cuts += 1
        if (not enter.size and not cuts) or past(deadline):
            break
        if enter.size:
            add(enter)
    if best is None:
        best = lagrangian(pats, tables, np.zeros(n_nodes), 0.0, mean_cap or 0.0)
    return best, {"lp_rounds": rounds, "lp_columns": int(added.sum()),
                  "lp_energy_cuts": sum(len(c) for c in cut_in),
                  "lp_greedy_cuts": len(greedy), "glop_s": lp_s}


def _cost(pats: Patterns, bound: Bound) -> np.ndarray:
    prices = (mask_prices(pats.mask, bound.d) if bound.d.ndim == 1
              else class_mask_prices(pats.mask, pats.cls, bound.d))
    return prices + bound.nu * pats.deg


def _argmin_per_class(pats: Patterns, value: np.ndarray) -> np.ndarray:
    """Per class the index of its pattern of least ``value`` (the first of equals)."""
    least = np.minimum.reduceat(value, pats.start[:-1])
    hit = np.flatnonzero(value <= least[pats.cls])
    first = np.ones(hit.size, dtype=bool)
    first[1:] = pats.cls[hit][1:] != pats.cls[hit][:-1]
    return hit[first]


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
