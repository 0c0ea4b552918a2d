"""Polymatroid cuts for the non-convex energy tables of the pattern master's LP.

A node whose energy table ``E_m`` is not convex enters the master through level binaries
``θ_mk`` (:mod:`siftopt.backends.highs.master`); the LP relaxation only sees the table's
convex envelope — the chord of a concave (fixed-power Rayleigh) table — and its bound starts
far below the optimum (11 % on the frontier's qwen256 row), so reduced-cost fixing keeps
almost every pattern and the final MILP proves the rest by branching.

**The inequality.** Let ``ΔE(i) = E(i) − E(i−1)`` and ``d(i) = min_{j ≤ i} ΔE(j)`` (the
prefix minimum, extended past the cap by its last value), a non-increasing sequence with
``Σ_{i ≤ n} d(i) ≤ E(n) − E(0)``. Order the classes (any order σ) and give class g, of
``c_g`` tokens, the consecutive positions ``s_g .. s_g + c_g − 1``; let ``a_g = d(s_g + c_g
− 1)``, the least ``d`` of its positions. With ``y_gm = Σ_{p∋m} x_gp`` the tokens of class g
on node m and ``n = Σ_g y_gm``::

    Σ_k (E(k) − E(0))·θ_mk − Σ_g a_g·y_gm  ≥  0

holds at every integer point of the master: ``Σ_g a_g·y_gm`` is at most the sum, over the
classes, of the ``y_gm`` largest ``d`` of g's block, so at most the sum of the n largest ``d``
of all positions, ``Σ_{i ≤ n} d(i) ≤ E(n) − E(0)``, the left side's first term. For a
concave table (``d = ΔE``) these are the polymatroid inequalities of the submodular
function ``S ↦ E(|S|)``, whose family describes its convex closure; for any other table
they stay valid and get weaker. No decision is cut off, so the master's optimum is the same
and its LP bound can only rise.

**Separation** (:func:`violated_cut`): at an LP point, classes are ordered by ``y_gm / c_g``
(largest first): for singleton classes this is Edmonds' greedy rule, which finds the most
violated inequality of the family.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from siftopt.formulations.space import mask_bits

if TYPE_CHECKING:
    from siftopt.backends.highs.master import Master

#: A cut joins the LP when the point violates it by more than this, relative to the node's
#: largest table entry.
VIOLATION_RTOL = 1e-6


def cut_nodes(master: Master) -> np.ndarray:
    """Nodes with rows whose table is not convex (level binaries): where cuts can help."""
    tables = master.space.data.tables
    return np.array([m for m in master.nodes if not tables[m - 1].convex], dtype=np.int64)


def concave_part(costs: np.ndarray) -> np.ndarray:
    """``C(0..cap)`` with ``C(0) = 0`` and non-increasing increments ``ΔC_i = ΔE_i − ΔV_i``,
    where ``ΔV_i = Σ_{2 ≤ j ≤ i} max(0, ΔE_j − ΔE_{j−1})`` collects every rise of the
    increments (``V`` convex, ``E − E(0) = C + V``). A concave table is its own concave part
    (``V = 0``); a convex one keeps only its first increment."""
    inc = np.diff(np.asarray(costs, dtype=float))
    rises = np.concatenate([[0.0], np.maximum(np.diff(inc), 0.0)]).cumsum()
    return np.concatenate([[0.0], (inc - rises).cumsum()])


def class_slopes(costs: np.ndarray, counts: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The slopes ``a_g`` of the cut for a table ``costs = E(0..cap)`` (cap ≥ 1), classes
    of ``counts`` tokens ordered by ``y / counts`` (largest first; ties by class): ``a_g =
    d(last position of g's block)`` with ``d`` the increments of :func:`concave_part`
    (non-increasing, extended past the cap by the last one)."""
    slopes = np.diff(concave_part(costs))
    counts = np.asarray(counts, dtype=np.int64)
    order = np.lexsort((np.arange(counts.size), -np.asarray(y, dtype=float) / counts))
    last = np.cumsum(counts[order]) - 1  # 0-based last position of each class's block
    a = np.empty(counts.size)
    a[order] = slopes[np.minimum(last, slopes.size - 1)]
    return a


def violated_cut(master: Master, m: int, theta: np.ndarray, bps: np.ndarray,
                 patterns: np.ndarray, amounts: np.ndarray) -> np.ndarray | None:
    """The class slopes ``a`` (G,) of node m's most violated cut at the LP point given by
    the values ``theta`` of breakpoints ``bps`` and ``amounts`` of stored ``patterns``, or
    None when it is not violated by more than :data:`VIOLATION_RTOL`."""
    lo, hi = int(master.bp_start[m]), int(master.bp_end[m])
    if hi - lo < 2:
        return None
    cls_all, mask_all, _ = master.store.arrays
    pos, node = mask_bits(mask_all[patterns], master.space.data.num_nodes)
    on = pos[node == m]
    counts = master.space.class_count.astype(np.int64)
    y = np.bincount(cls_all[patterns[on]], amounts[on], minlength=counts.size)
    a = class_slopes(master.bp_cost[lo:hi], counts, y)
    mine = master.bp_node[bps] == m
    lhs = float(master.cut_costs(m)[master.bp_load[bps[mine]]] @ theta[mine])
    scale = max(float(np.abs(master.bp_cost[master.bp_start[m]:master.bp_end[m]]).max()),
                1e-300)
    if float(a @ y) - lhs <= VIOLATION_RTOL * scale:
        return None
    return a


__all__ = ["VIOLATION_RTOL", "class_slopes", "concave_part", "cut_nodes", "violated_cut"]
