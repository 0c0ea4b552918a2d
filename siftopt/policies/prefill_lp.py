"""The pool master LP of ``sift-prefill``, for pools small enough that an LP beats Newton.

The LP whose dual is the pool dual of :mod:`siftopt.policies.prefill_dual` (docs/policies.md
§6): choose for each class a fractional mix of its pool patterns, pay each node's load on the
segments of its table's lower convex envelope::

    min  Σ_seg slope·σ_seg + BIG·(Σ_m o_m + o_mean)
    s.t. Σ_{j∈g} x_j = c_g                                    (every class)
         Σ_j inc_{j,m}·x_j − Σ_{seg∈m} σ_seg − o_m = 0         (every remote node)
         Σ_j D_j·x_j − o_mean ≤ R                              (a binding mean budget)
         x ≥ 0,  0 ≤ σ_seg ≤ ℓ_seg,  o ≥ 0.

The overflow columns ``o`` (cost far above any marginal energy) keep it feasible when the
pool cannot meet the caps or the budget; they bound the duals, like the price box of the
Newton solver. Its duals are prices ``p_m`` (minus the load rows' marginals) and ``ν`` (minus
the mean row's), clipped at 0; its basic solution splits at most ``M + 1`` classes.

Solved by HiGHS's dual simplex through :func:`scipy.optimize.linprog` (SciPy's own copy of
HiGHS, so runs here never touch the solver state of the exact backends). Used when the pool
holds every pattern of a small instance: there the smoothed Newton iterations cost tens of
milliseconds in interpreter overhead while this LP solves in a few (docs/policies.md §6).
Energies in the node terms' unit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from siftopt.policies.prefill_dual import NodeTerms


@dataclass(frozen=True)
class LpSolution:
    """Duals ``y = (p_1..p_M[, ν])`` (clipped at 0), the pattern amounts ``x`` (a basic
    solution), and the LP value (energy units)."""

    y: np.ndarray
    x: np.ndarray
    value: float


def solve_pool_lp(nodes: NodeTerms, cls: np.ndarray, inc: np.ndarray, deg: np.ndarray,
                  counts: np.ndarray, mean_rhs: float | None, big: np.ndarray
                  ) -> LpSolution | None:
    """Solve the master LP over the pool ``(cls, inc, D)``; ``big`` holds the overflow costs
    (per node, then the mean row's). None if HiGHS did not solve it (the caller falls back to
    the Newton solver)."""
    patterns, num_nodes = inc.shape
    segments = nodes.slope.size
    seg_node = np.repeat(np.arange(num_nodes), np.diff(nodes.seg_start))
    n_classes = counts.size
    has_mean = mean_rhs is not None
    n_vars = patterns + segments + num_nodes + int(has_mean)
    cost = np.concatenate([np.zeros(patterns), nodes.slope * nodes.weight,
                           np.asarray(big, dtype=float)[: num_nodes + int(has_mean)]])
    upper = np.concatenate([np.full(patterns, np.inf), nodes.length,
                            np.full(num_nodes + int(has_mean), np.inf)])
    pos, node = np.nonzero(inc)
    rows = np.concatenate([cls, n_classes + node, n_classes + seg_node,
                           n_classes + np.arange(num_nodes)])
    cols = np.concatenate([np.arange(patterns), pos, patterns + np.arange(segments),
                           patterns + segments + np.arange(num_nodes)])
    vals = np.concatenate([np.ones(patterns), np.ones(pos.size), -np.ones(segments),
                           -np.ones(num_nodes)])
    a_eq = coo_matrix((vals, (rows, cols)), shape=(n_classes + num_nodes, n_vars)).tocsr()
    b_eq = np.concatenate([np.asarray(counts, dtype=float), np.zeros(num_nodes)])
    extra = {}
    if has_mean:
        a_ub = coo_matrix((np.concatenate([deg, [-1.0]]),
                           (np.zeros(patterns + 1, dtype=np.int64),
                            np.concatenate([np.arange(patterns), [n_vars - 1]]))),
                          shape=(1, n_vars)).tocsr()
        extra = {"A_ub": a_ub, "b_ub": np.array([float(mean_rhs)])}  # type: ignore[arg-type]
    result = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=np.column_stack(
        [np.zeros(n_vars), upper]), method="highs-ds", **extra)
    if result.status != 0:
        return None
    prices = np.maximum(-np.asarray(result.eqlin.marginals)[n_classes:], 0.0)
    y = prices
    if has_mean:
        y = np.append(prices, max(-float(result.ineqlin.marginals[0]), 0.0))
    return LpSolution(y=y, x=np.asarray(result.x)[:patterns], value=float(result.fun))


__all__ = ["LpSolution", "solve_pool_lp"]
