"""The second certificate's own patterns (siftopt/backends/cpsat/lagrange.py, step 1):
identical tokens grouped into classes, every kept node subset of a class evaluated with numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.model.budgets import Budgets
from siftopt.model.problem import ProblemData

#: Largest number of relevant nodes of one class (``2^r`` subsets are evaluated).
MAX_RELEVANT = 20
#: Largest number of subsets evaluated over all classes (``Σ_g 2^{r_g}``).
MAX_SUBSETS = 1 << 29
#: Subsets evaluated per numpy batch.
BATCH = 1 << 22


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


