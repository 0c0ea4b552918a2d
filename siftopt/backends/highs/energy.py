"""Node energies as HiGHS columns for the direct slot model (docs/model.md §3.5).

For each remote node with a load row: λ segments for a convex table (one continuous column
per run of equal increments, cost the increment, so the LP fills them in order), binary
level columns ``z`` for any other table (one per load, ``Σ_k z ≤ 1``). Exact at integer
loads either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.backends.highs.common import INF, Columns
from siftopt.formulations.space import segments
from siftopt.model.problem import ProblemData


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


__all__ = ["EnergyBlock", "energy_block"]
