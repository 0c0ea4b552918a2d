"""Pattern pools of ``sift-prefill``: storage, a cheap first pattern per class, exact pricing.

A **pattern** of a token class is a set C of remote nodes with the least degradation ``D(C)``
the class reaches on ``C ∪ {0}`` (docs/model.md §3.1; :mod:`siftopt.formulations.patterns`
defines them, keeps only non-dominated ones, and decides the per-token budgets exactly). The
pool holds the patterns the dual and the primal recovery know; it grows by **exact pricing**:
the pruned enumeration of :func:`siftopt.formulations.enumerate.enumerate_patterns` returns,
per class, every pattern whose cost ``Σ_{m∈C} p_m + ν·D`` is at most the class's best pool
cost (thresholds tightened as better ones are found). Since that enumeration is exhaustive
below the threshold, the least cost it finds, or the pool's when it finds none, is the class's
exact ``φ_g`` — what makes ``g`` a certified bound (:mod:`siftopt.policies.prefill_dual`).
Classes can be left out of a pricing (threshold −inf prunes them at the root).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.formulations.enumerate import enumerate_patterns
from siftopt.formulations.space import PatternSpace, Pricing, mask_incidence
from siftopt.model.budgets import token_degradation

_ONE = np.uint64(1)
#: Relative slack of the pricing thresholds above the pool's best cost (rounding of sums).
THRESHOLD_RTOL = 1e-12
#: Whether pricing also prunes with the enumeration's cover bound (a pruning test only; at
#: the policy's prices the price bound alone prunes well and the cover bound costs more
#: than it saves: 21 against 38 ms per pricing of all classes at L = 1024, M = 16).
COVER_BOUND = False
#: Patterns per class a pricing adds to the pool at most (those of least cost): the search
#: tightens each class's threshold pattern by pattern, so it returns a chain of ever cheaper
#: patterns, most of them far above the class's least cost.
PER_CLASS = 2


class PatternPool:
    """Patterns ``(class, mask, D)`` known so far, each once; arrays sorted by class.

    ``mask`` bit m−1 is node m; ``inc[j, m−1]`` is 1.0 when pattern j uses node m.
    """

    def __init__(self, num_classes: int, num_nodes: int) -> None:
        self.num_classes = num_classes
        self.num_nodes = num_nodes
        # known patterns as sorted keys ``class·2^M + mask`` (vectorised membership) when
        # they fit 64 bits, else as a set of pairs
        self._packed = num_nodes + max(int(num_classes), 1).bit_length() <= 64
        self._keys = np.zeros(0, dtype=np.uint64)
        self._seen: set[tuple[int, int]] = set()
        self._count = 0
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._arrays: tuple[np.ndarray, ...] | None = None

    def __len__(self) -> int:
        return self._count

    def add(self, cls: np.ndarray, mask: np.ndarray, deg: np.ndarray) -> int:
        """Add patterns (duplicates of known ones are ignored); returns how many were new."""
        cls = np.asarray(cls, dtype=np.int64)
        mask = np.asarray(mask, dtype=np.uint64)
        if self._packed:
            keys = (cls.astype(np.uint64) << np.uint64(self.num_nodes)) | mask
            fresh, first = np.unique(keys, return_index=True)  # sorted, first occurrences
            if self._keys.size:
                at = np.minimum(np.searchsorted(self._keys, fresh), self._keys.size - 1)
                new = self._keys[at] != fresh
                fresh, first = fresh[new], first[new]
            sel = np.sort(first)  # in the given order
            if sel.size:  # merged into the sorted keys (a sort of the union was 5x slower)
                self._keys = np.insert(self._keys, np.searchsorted(self._keys, fresh), fresh)
        else:
            fresh = []
            for i, key in enumerate(zip(cls.tolist(), mask.tolist(), strict=True)):
                if key not in self._seen:
                    self._seen.add(key)
                    fresh.append(i)
            sel = np.array(fresh, dtype=np.int64)
        if sel.size:
            self._parts.append((cls[sel], mask[sel], np.asarray(deg, dtype=float)[sel]))
            self._arrays = None
            self._count += int(sel.size)
        return int(sel.size)

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(cls, mask, D, inc, start)``: sorted by class, ``start`` the (G + 1,) offsets."""
        if self._arrays is None:
            parts = self._parts or [(np.zeros(0, np.int64), np.zeros(0, np.uint64),
                                     np.zeros(0))]
            cls = np.concatenate([p[0] for p in parts])
            mask = np.concatenate([p[1] for p in parts])
            deg = np.concatenate([p[2] for p in parts])
            order = np.argsort(cls, kind="stable")
            cls, mask, deg = cls[order], mask[order], deg[order]
            self._parts = [(cls, mask, deg)]
            start = np.searchsorted(cls, np.arange(self.num_classes + 1)).astype(np.int64)
            self._arrays = (cls, mask, deg,
                            mask_incidence(mask, self.num_nodes).astype(float), start)
        return self._arrays


def least_degradation_patterns(space: PatternSpace) -> tuple[np.ndarray, np.ndarray,
                                                              np.ndarray]:
    """Per class a kept pattern of least degradation, as ``(class, mask, D)``.

    Monotone classes: every relevant node, then nodes that own no slot dropped (D unchanged):
    those that attain no slot's best at once, then tied ones one at a time, lowest bit first;
    classes that cannot meet their budget get none. General classes: every
    pattern of the space (they were enumerated with it).
    """
    rows = space.mono_classes
    parts = []
    if rows.size:
        values = space.values
        local = space.slots.local[rows]
        width = values.shape[1]
        bits = np.arange(width)
        member = bits[None, :] < space.nbits[:, None]
        # nodes that attain no slot's best below the local fallback own no slot now and
        # never will (removing idle nodes changes no slot's best): drop them all at once;
        # the loop below then only settles ties (one node at a time, lowest bit first)
        vals = np.where(member[:, :, None], values, np.inf)
        best = _min_over_bits(vals)
        attains = (vals == best[:, None, :]) & (best < local)[:, None, :]
        member &= _any_slot(attains)
        # the kept nodes still attain every best below the fallback, so the slots' bests
        # (hence D) are final, and a node owns a slot iff it is that slot's only attainer
        sole = attains & (_count_over_bits(attains) == 1)[:, None, :]
        idle = member & ~_any_slot(sole)
        for _ in range(width + 1 if idle.any() else 0):  # ties: one node at a time
            vals = np.where(member[:, :, None], values, np.inf)
            best = vals.min(axis=1)
            unique = (vals == best[:, None, :]).sum(axis=1) == 1
            owner = np.where(unique & (best < local), vals.argmin(axis=1), -1)
            owns = np.zeros_like(member)
            r, k = np.nonzero(owner >= 0)
            owns[r, owner[r, k]] = True
            idle = member & ~owns
            if not idle.any():
                break
            rows_idle = np.flatnonzero(idle.any(axis=1))
            member[rows_idle, idle[rows_idle].argmax(axis=1)] = False
        deg = token_degradation(np.minimum(local, best))
        keep = np.flatnonzero(space.fits(deg, rows))
        mask = np.zeros(keep.size, dtype=np.uint64)
        node_bit = _ONE << (np.maximum(space.node_of_bit[keep], 1) - 1).astype(np.uint64)
        kept_member = member[keep]
        for j in range(width):
            mask |= np.where(kept_member[:, j], node_bit[:, j], np.uint64(0))
        parts.append((rows[keep], mask, deg[keep]))
    g_cls, g_mask, g_deg = space.general_patterns
    if g_cls.size:
        parts.append((g_cls, g_mask, g_deg))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


# (G, R, K) reductions over the small axes one slice at a time: numpy's reductions over a
# middle or short last axis of these tables were 2-4x slower (min, any, counts are exact in
# any order)


def _min_over_bits(vals: np.ndarray) -> np.ndarray:
    """``vals.min(axis=1)`` of a (G, R, K) table."""
    if vals.shape[1] == 0:
        return vals.min(axis=1)
    out = vals[:, 0, :].copy()
    for j in range(1, vals.shape[1]):
        np.minimum(out, vals[:, j, :], out=out)
    return out


def _any_slot(table: np.ndarray) -> np.ndarray:
    """``table.any(axis=2)`` of a (G, R, K) bool table."""
    out = np.zeros(table.shape[:2], dtype=bool)
    for k in range(table.shape[2]):
        out |= table[:, :, k]
    return out


def _count_over_bits(table: np.ndarray) -> np.ndarray:
    """``table.sum(axis=1)`` of a (G, R, K) bool table."""
    out = np.zeros((table.shape[0], table.shape[2]), dtype=np.int64)
    for j in range(table.shape[1]):
        out += table[:, j, :]
    return out


def _cheapest_per_class(cls: np.ndarray, cost: np.ndarray, per_class: int) -> np.ndarray:
    """Positions of the ``per_class`` cheapest entries of each class, in the order of
    ``np.lexsort((cost, cls))`` truncated to that many per class (ties: the earlier entry);
    ``cls`` must be sorted. A selection by per-class minima (a pass per rank), not a sort:
    the pricing's first batch returns about 10k patterns, where the lexsort took 1.2 ms."""
    n = cls.size
    if n == 0 or per_class <= 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    seg = np.cumsum(np.r_[True, cls[1:] != cls[:-1]]) - 1
    taken = np.zeros(n, dtype=bool)
    picks = []
    for _ in range(min(per_class, n)):
        live = np.where(taken, np.inf, cost)
        low = np.minimum.reduceat(live, edges)
        hit = np.flatnonzero(~taken & (live == low[seg]))
        if hit.size == 0:
            break
        first = hit[np.r_[True, seg[hit[1:]] != seg[hit[:-1]]]]  # earliest per class
        taken[first] = True
        picks.append(first)
    out = np.concatenate(picks)
    return out[np.argsort(seg[out], kind="stable")]


@dataclass(frozen=True)
class Priced:
    """An exact pricing: ``phi[g]`` the least cost of class g (``nan`` where not priced) and
    how many new patterns entered the pool."""

    phi: np.ndarray
    new: int


def price(space: PatternSpace, pool: PatternPool, prices: np.ndarray, nu: float,
          classes: np.ndarray | None = None) -> Priced:
    """Exact pricing at node prices ``prices[m−1] ≥ 0`` and ``ν ≥ 0`` of the given classes
    (default: all); patterns cheaper than the pool's best enter the pool (the
    :data:`PER_CLASS` cheapest of each class)."""
    cls, mask, deg, inc, start = pool.arrays
    cost = inc @ prices + nu * deg
    best = np.full(space.num_classes, np.inf)
    np.minimum.at(best, cls, cost)
    threshold = best + THRESHOLD_RTOL * np.abs(best)
    if classes is not None:
        skip = np.ones(space.num_classes, dtype=bool)
        skip[classes] = False
        threshold[skip] = -np.inf
    found = enumerate_patterns(space, Pricing(
        class_dual=np.zeros(space.num_classes), node_price=np.asarray(prices, dtype=float),
        degradation_price=float(nu), threshold=threshold, tighten=True), cover=COVER_BOUND)
    phi = best.copy()
    new = 0
    if found.num_patterns:
        rc = np.asarray(found.reduced_cost)
        np.minimum.at(phi, found.pattern_class, rc)
        order = np.flatnonzero(rc < best[found.pattern_class])
        pick = order[_cheapest_per_class(found.pattern_class[order], rc[order], PER_CLASS)]
        if pick.size:
            new = pool.add(found.pattern_class[pick], found.mask[pick],
                           found.degradation[pick])
    if classes is not None:
        phi[skip] = np.nan
    return Priced(phi=phi, new=new)


__all__ = ["PER_CLASS", "PatternPool", "Priced", "THRESHOLD_RTOL", "least_degradation_patterns",
           "price"]
