"""The second certificate's Lagrangian bound and its GLOP prices
(siftopt/backends/cpsat/lagrange.py, step 2)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.linear_solver import pywraplp

from siftopt.backends.base import (
    past,
    remaining_s,
)
from siftopt.backends.cpsat.lagrange_patterns import (
    Patterns,
    class_mask_prices,
    mask_nodes,
    mask_prices,
)
from siftopt.model.physics import lower_hull

#: Extra room of every fixing threshold, relative to the magnitude of the bound's terms.
FIX_MARGIN = 1e-9
#: Column-generation rounds of the GLOP LP, and the reduced cost below which a column enters.
MAX_LP_ROUNDS = 200
PRICING_TOL = 1e-9
#: Penalty per token of overflow (above any node's energy per token) in the GLOP LP.
OVERFLOW_FACTOR = 1e3
#: Greedy cuts are separated in the order of ``GREEDY_MIX·usage + (1 − GREEDY_MIX)·centre``
#: (centre: that point of the round before), kept if violated at the LP's usage, else the
#: usage's own order is tried (in-out stabilisation; 1 = the LP point alone).
GREEDY_MIX = 0.5


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
    return np.array(lower_hull(table), dtype=np.int64)


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
    centre: np.ndarray | None = None  # (G, M) running average of the LP's per-token usage
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
            # stabilised: order at a point between the LP's usage and the running average
            # of the earlier rounds' (cuts of the LP point alone zigzag: many more rounds)
            first = centre is None  # no earlier point: the usage's own order only
            centre = per_token if first else (
                GREEDY_MIX * per_token + (1.0 - GREEDY_MIX) * centre)
            for m in concave:
                for point in ((per_token[:, m],) if first else (centre[:, m], per_token[:, m])):
                    coef = greedy_point(cum[m], pats.count,
                                        np.argsort(-point, kind="stable"))
                    value = float(coef @ usage[:, m])
                    if b_now[m] < value - PRICING_TOL * max(1.0, abs(value)):
                        add_greedy(m, coef)
                        cuts += 1
                        break
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


