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

**Stabilised separation** (:class:`SeparationCentre`, the in-out idea of Ben-Ameur and Neto,
2007): cutting the LP point alone zigzags — each cut moves the LP point to another vertex and
the bound creeps up (the frontier's qwen1024f row: 300 rounds, 58 s, still 0.13 % below the
optimum). Instead the order comes from a point between the LP point and a running average of
the earlier LP points (:data:`SEPARATION_MIX`); its cut is valid like any other and joins
the LP if it also cuts off the LP point, else the LP point's own greedy cut does. Same
qwen1024f row: 19 rounds, 1.4 s, the bound within 1e-7 of the optimum.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import highspy
import numpy as np

from siftopt.backends.highs.common import INF
from siftopt.formulations.space import mask_bits
from siftopt.model.physics import concave_part

if TYPE_CHECKING:
    from siftopt.backends.highs.master import Master

#: A cut joins the LP when the point violates it by more than this, relative to the node's
#: largest table entry.
VIOLATION_RTOL = 1e-6


def cut_nodes(master: Master) -> np.ndarray:
    """Nodes with rows whose table is not convex (level binaries): where cuts can help."""
    tables = master.space.data.tables
    return np.array([m for m in master.nodes if not tables[m - 1].convex], dtype=np.int64)


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


#: Weight of the LP point in the separation point (the rest: the running average of the
#: earlier LP points). 0.3, 0.5 and 0.7 all gave 9–18 rounds on the frontier's Rayleigh
#: rows against 150–300 for 1 (the LP point alone).
SEPARATION_MIX = 0.5


@dataclass
class SeparationCentre:
    """Per node, the running average ``ȳ_m`` (G,) of the LP points' class usage: the
    stabilisation centre of the separation (module docstring)."""

    average: dict[int, np.ndarray] = field(default_factory=dict)

    def point(self, m: int, y: np.ndarray) -> np.ndarray | None:
        """The separation point ``α·y + (1 − α)·ȳ_m`` (None before node m's first LP point)."""
        if m not in self.average:
            return None
        return SEPARATION_MIX * y + (1.0 - SEPARATION_MIX) * self.average[m]

    def update(self, m: int, y: np.ndarray) -> np.ndarray | None:
        """Move the centre towards the LP point ``y``; returns the separation point
        (:meth:`point` before the move), which is where the centre moves."""
        mixed = self.point(m, y)
        self.average[m] = y.copy() if mixed is None else mixed
        return mixed


def violated_cut(master: Master, m: int, lhs: float, y: np.ndarray,
                 order_by: np.ndarray | None = None) -> np.ndarray | None:
    """The class slopes ``a`` (G,) of a cut of node m violated at an LP point where
    ``Σ_k C_m(k)·θ_mk = lhs`` and class g has ``y[g]`` tokens on m, or None when no cut is
    violated there by more than :data:`VIOLATION_RTOL`. The classes are ordered by
    ``order_by`` (a separation point) if its cut is violated at the LP point, else by ``y``
    (the most violated cut)."""
    lo, hi = int(master.bp_start[m]), int(master.bp_end[m])
    if hi - lo < 2:
        return None
    scale = max(float(np.abs(master.bp_cost[lo:hi]).max()), 1e-300)
    for point in ((order_by, y) if order_by is not None else (y,)):
        a = class_slopes(master.bp_cost[lo:hi], master.space.class_count, point)
        if float(a @ y) - lhs > VIOLATION_RTOL * scale:
            return a
    return None


#: A cut whose dual stayed 0 for this many separation rounds leaves the LP (it only slows
#: the LP down; the LP stays a relaxation of (P) without it).
CUT_IDLE_ROUNDS = 5


#: Cutting stops when the last CUT_WINDOW separations raised z_LP by at most CUT_STALL_RTOL
#: (relative) in all, or after CUT_TIME_SHARE of the time the deadline left column
#: generation (the MILPs need the rest).
CUT_WINDOW = 10
CUT_STALL_RTOL = 1e-5
CUT_TIME_SHARE = 0.5


def cuts_stalled(objective: list[float], started: float, deadline: float | None) -> bool:
    """Whether to stop adding cuts (see :data:`CUT_WINDOW`)."""
    now = time.perf_counter()
    if deadline is not None and now - started > CUT_TIME_SHARE * (deadline - started):
        return True
    if len(objective) <= CUT_WINDOW:
        return False
    gain = objective[-1] - objective[-1 - CUT_WINDOW]
    return gain <= CUT_STALL_RTOL * max(abs(objective[-1]), 1e-300)


def drop_idle_cuts(master: Master, highs: highspy.Highs, age: np.ndarray,
                    row_dual: np.ndarray, old: int) -> np.ndarray:
    """Age the first ``old`` cuts (those of the LP that gave ``row_dual``) at its duals,
    delete those idle for :data:`CUT_IDLE_ROUNDS` from the LP and from ``master`` (rows
    after the master's, in the same order), and return the ages of the cuts kept, the
    newer ones (added after that LP) at 0."""
    age = np.where(master.cut_duals(row_dual, old) > 0.0, 0, age[:old] + 1)
    idle = np.flatnonzero(age >= CUT_IDLE_ROUNDS)
    if idle.size:
        gone = (master.row_lower.size + idle).astype(np.int32)
        highs.deleteRows(int(gone.size), gone)
        for r in idle[::-1]:
            del master.cut_node[r]
            del master.cut_slope[r]
        age = np.delete(age, idle)
    return np.concatenate([age, np.zeros(len(master.cut_node) - age.size, np.int64)])


def add_cuts(master: Master, highs: highspy.Highs, chunks: list[tuple[str, np.ndarray]],
              first_col: int, values: np.ndarray, nodes: np.ndarray,
              centre: SeparationCentre | None = None) -> int:
    """Add to the LP (and to ``master``) a polymatroid cut of each node in ``nodes``
    violated at the LP point ``values``, separated at ``centre``'s point if given (and the
    centre moved); returns how many. ``chunks``: the LP's columns after the first
    ``first_col`` (overflow), in order."""
    kinds, cols, at = [], [], first_col
    for kind, idx in chunks:
        kinds.append(np.full(idx.size, kind == "bp"))
        cols.append(np.arange(at, at + idx.size))
        at += idx.size
    is_bp = np.concatenate(kinds)
    col = np.concatenate(cols)
    index = np.concatenate([idx for _, idx in chunks])
    bps, bp_col = index[is_bp], col[is_bp]
    pats, pat_col = index[~is_bp], col[~is_bp]
    theta, amounts = values[bp_col], values[pat_col]
    cls_all, mask_all, _ = master.store.arrays
    pos, node = mask_bits(mask_all[pats], master.space.data.num_nodes)
    num_classes = master.space.num_classes
    added = 0
    for m in nodes:
        mine = np.flatnonzero(master.bp_node[bps] == m)
        on = pos[node == m]
        theta_coef = master.cut_costs(int(m))[master.bp_load[bps[mine]]]
        y = np.bincount(cls_all[pats[on]], amounts[on], minlength=num_classes)
        order_by = centre.update(int(m), y) if centre is not None else None
        slope = violated_cut(master, int(m), float(theta_coef @ theta[mine]), y, order_by)
        if slope is None:
            continue
        idx = np.concatenate([bp_col[mine], pat_col[on]]).astype(np.int32)
        val = np.concatenate([theta_coef, -slope[cls_all[pats[on]]]])
        highs.addRow(0.0, INF, int(idx.size), idx, val)
        master.cut_node.append(int(m))
        master.cut_slope.append(slope)
        added += 1
    return added


__all__ = ["CUT_IDLE_ROUNDS", "CUT_STALL_RTOL", "CUT_TIME_SHARE", "CUT_WINDOW", "SEPARATION_MIX",
           "VIOLATION_RTOL", "SeparationCentre", "add_cuts", "class_slopes", "cut_nodes",
           "cuts_stalled", "drop_idle_cuts", "violated_cut"]
