"""The decode rule: when per-token cheapest patterns are optimal, and what they cost.

For one token (decoding) the cheapest kept pattern at ``E_m(1)`` per node is the optimum —
the pattern space decides the budgets of a single token exactly
(:func:`siftopt.formulations.space.class_budgets`). For L > 1 the same holds when every
relevant node's table is linear, the mean budget needs no row and the per-token choices fit
the caps: the energy is then a sum of per-token energies, each at its least.
"""

from __future__ import annotations

import numpy as np

from siftopt.formulations.space import PatternSpace, is_linear, mask_bits
from siftopt.model.problem import ProblemData


def one_token_energy(data: ProblemData) -> np.ndarray:
    """``E_m(1)`` per node (index m; 0 for unreachable nodes, which no pattern uses), J."""
    out = np.zeros(data.num_nodes + 1)
    for m, table in enumerate(data.tables, start=1):
        if table.cap >= 1:
            out[m] = table.energy_j[1]
    return out


def decode_rule_applies(space: PatternSpace, token_mask: np.ndarray) -> bool:
    """Whether per-token cheapest patterns (``token_mask``, at ``E_m(1)`` per node) are
    optimal (see the module docstring)."""
    data = space.data
    if data.num_tokens == 1:
        return True
    if space.mean_row:
        return False
    nodes = np.flatnonzero(space.relevant.any(axis=0)) + 1
    if not all(is_linear(data, int(m)) for m in nodes):
        return False
    return bool(np.all(mask_loads(data, token_mask)[1:] <= data.caps[1:]))


def mask_loads(data: ProblemData, token_mask: np.ndarray) -> np.ndarray:
    """``(M + 1,)`` node loads of per-token node masks."""
    _, node = mask_bits(token_mask, data.num_nodes)
    return np.bincount(node, minlength=data.num_nodes + 1)


def masks_energy_j(data: ProblemData, token_mask: np.ndarray) -> float:
    """``Σ_m E_m(n_m)`` in J for per-token node masks."""
    loads = mask_loads(data, token_mask)
    return float(sum(data.tables[m - 1].energy(int(loads[m]))
                     for m in range(1, data.num_nodes + 1)))


__all__ = ["decode_rule_applies", "mask_loads", "masks_energy_j", "one_token_energy"]
