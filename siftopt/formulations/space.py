"""The pattern space of an instance: token classes, their budgets, slot tables, relevant nodes.

Everything about an instance's patterns that does not depend on prices (the overview of the
pattern formulation is in :mod:`siftopt.formulations.patterns`):

* **classes**: identical tokens (same experts, weights and ``ε_t``) share one class with an
  integer count;
* **which patterns may be kept** (:meth:`PatternSpace.fits`): a pattern of class g with
  degradation D is kept iff the per-token rule accepts D *exactly*
  (:meth:`siftopt.model.budgets.Budgets.token_ok` against the class's ``ε``; for L = 1 the
  mean budget is a per-token budget too, ``ε = min(ε_t, ε̄)``) and D is at most the class's
  **room**, :meth:`~siftopt.model.budgets.Budgets.token_caps` — the relaxation of the mean
  budget that every accepted decision meets. Deciding the per-token rule exactly matters
  because dominance depends on it: a set whose degradation the rule rejects must not
  dominate its supersets. Every degradation here is a sum over slots in slot order
  (:func:`~siftopt.model.budgets.token_degradation`), the same float the evaluator computes
  for the actions a pattern is recovered to;
* **the mean row** (:attr:`PatternSpace.mean_row`): the mean budget binds
  (:attr:`~siftopt.model.budgets.Budgets.mean_binds`); then dominance compares degradations
  (for L = 1 the decode rule needs no row, but the enumeration mode is the same);
* per class and slot the best local action and the best action on each remote node
  (:class:`SlotTable`), the nodes relevant to the class, and for classes that can reach a
  node with a non-monotone energy table every non-dominated pattern at once (the exact-use
  dynamic programme, :func:`exact_use_table`).

Past the limits of :class:`PatternOptions` the space raises :class:`PatternLimitError`;
callers fall back to the slot formulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from siftopt.model.budgets import Budgets
from siftopt.model.problem import ProblemData

#: Remote nodes representable in one pattern bitmask (bit m−1 = node m): a hard limit.
MASK_BITS = 64
#: Relevant nodes of a monotone class representable in an int64 local mask: a hard limit.
LOCAL_BITS = 62
#: Relative tolerance under which consecutive table increments count as equal.
LINEAR_RTOL = 1e-12

_ONE = np.uint64(1)


@dataclass(frozen=True)
class PatternOptions:
    """Limits of the pattern enumeration (counts; past them: :class:`PatternLimitError`).

    ``max_nodes``: remote nodes of an instance (at most 64, the bits of a mask);
    ``max_exact_use_nodes``: relevant nodes of a class with a non-monotone node (the exact-use
    DP has ``2^r`` states); ``max_local_bits``: relevant nodes of a monotone class (at most
    62); ``max_patterns``: patterns one enumeration may produce; ``batch``: extension
    candidates processed per numpy batch (memory about 150 bytes each).
    """

    max_nodes: int = MASK_BITS
    max_exact_use_nodes: int = 12
    max_local_bits: int = LOCAL_BITS
    max_patterns: int = 20_000_000
    batch: int = 1 << 19

    def __post_init__(self) -> None:
        if not 0 <= self.max_nodes <= MASK_BITS:
            raise ValueError(f"max_nodes must be in 0..{MASK_BITS}")
        if not 0 <= self.max_local_bits <= LOCAL_BITS:
            raise ValueError(f"max_local_bits must be in 0..{LOCAL_BITS}")
        if self.batch < 1:
            raise ValueError("batch must be positive")


class PatternLimitError(Exception):
    """The pattern enumeration would exceed a documented limit; use the slot formulation."""


@dataclass(frozen=True, eq=False)
class SlotTable:
    """Per class and slot: the best local action and the best action on each remote node.

    ``local[g, k]`` is the least degradation of slot k of class g's representative token
    without any remote node (keep of a local expert, a local replacement, or skip) and
    ``local_opt`` its option index; ``remote[g, k, m−1]`` / ``remote_opt`` the same restricted
    to reachable options on remote node m (``inf`` / −1 when there is none). Ties go to the
    lower option index (keep before replacements before skip).
    """

    local: np.ndarray  # (G, K)
    local_opt: np.ndarray  # (G, K)
    remote: np.ndarray  # (G, K, M)
    remote_opt: np.ndarray  # (G, K, M)


@dataclass(frozen=True, eq=False)
class Pricing:
    """A reduced-cost filter: ``rc = Σ_{m∈C} (node_price[m−1] + class_node_price[g, m−1]) +
    degradation_price·D − class_dual[g]``.

    Patterns with ``rc ≤ threshold[g]`` are returned; ``degradation_price`` must be ≥ 0.
    """

    class_dual: np.ndarray  # (G,) π_g
    node_price: np.ndarray  # (M,) μ_m
    degradation_price: float  # ν
    threshold: np.ndarray  # (G,)
    tighten: bool = False
    #: (G, M) extra price of node m for class g (the duals of the master's cuts), or None
    class_node_price: np.ndarray | None = None

    def reduced_cost(self, cls: np.ndarray, mask: np.ndarray, deg: np.ndarray) -> np.ndarray:
        rc = (mask_sums(mask, self.node_price) + self.degradation_price * deg
              - self.class_dual[cls])
        if self.class_node_price is not None and rc.size:
            pos, node = mask_bits(mask, self.node_price.size)
            rc = rc + np.bincount(pos, self.class_node_price[np.asarray(cls)[pos], node - 1],
                                  minlength=rc.size)
        return rc


@dataclass(frozen=True, eq=False)
class PatternSpace:
    """Everything about an instance's patterns that does not depend on prices.

    Monotone classes are described by their relevant nodes as bits: bit j of row i is node
    ``node_of_bit[i, j]`` of class ``mono_classes[i]``, with slot values ``values[i, j, k]``.
    """

    data: ProblemData
    token_class: np.ndarray  # (L,)
    class_rep: np.ndarray  # (G,) a representative token per class
    class_count: np.ndarray  # (G,)
    eps: np.ndarray  # (G,) per-token budget the rule checks exactly (largest float: none)
    room: np.ndarray  # (G,) largest D any accepted decision leaves the class (relaxation)
    mean_row: bool  # the mean budget needs a row of its own
    monotone_nodes: np.ndarray  # (M + 1,) bool
    slots: SlotTable
    relevant: np.ndarray  # (G, M) bool, node m−1 can appear in a pattern of the class
    general_classes: np.ndarray  # (G,) bool
    mono_classes: np.ndarray  # (G1,)
    node_of_bit: np.ndarray  # (G1, R)
    values: np.ndarray  # (G1, R, K)
    nbits: np.ndarray  # (G1,)
    suffix: np.ndarray  # (G1, R + 1, K) min of values over bits ≥ j
    general_patterns: tuple[np.ndarray, np.ndarray, np.ndarray]  # all (cls, mask, D)
    options: PatternOptions = field(default_factory=PatternOptions)

    @property
    def num_classes(self) -> int:
        return int(self.class_rep.size)

    def fits(self, degradation: np.ndarray, cls: np.ndarray) -> np.ndarray:
        """Whether patterns of classes ``cls`` with degradations ``degradation`` may be kept
        (same shapes): the per-token rule, exactly, and D within the class's room."""
        return fits(degradation, self.eps[cls], self.room[cls])


def fits(degradation: np.ndarray, eps: np.ndarray | float, room: np.ndarray | float
         ) -> np.ndarray:
    """``Budgets.token_ok(D)`` against ``eps`` and ``D ≤ room``, elementwise (``eps`` finite,
    see :func:`class_budgets`, so ``D = inf`` is never kept)."""
    d = np.asarray(degradation, dtype=float)
    eps = np.asarray(eps, dtype=float)
    if eps.shape != d.shape:
        eps = np.broadcast_to(eps, d.shape)
    rule = Budgets(eps_token=eps, eps_mean=None, num_tokens=d.size).token_ok(d)
    return rule & (d <= room)


@dataclass(frozen=True, eq=False)
class PatternSet:
    """Patterns ``(pattern_class, mask, degradation)`` sorted by class; bit m−1 = node m.

    ``reduced_cost`` is set when the set came from a :class:`Pricing`.
    """

    space: PatternSpace
    pattern_class: np.ndarray  # (P,)
    mask: np.ndarray  # (P,) uint64
    degradation: np.ndarray  # (P,)
    reduced_cost: np.ndarray | None = None

    @property
    def num_patterns(self) -> int:
        return int(self.mask.size)

    @property
    def start(self) -> np.ndarray:
        """CSR offsets: the patterns of class g are ``start[g]:start[g+1]``."""
        return np.searchsorted(self.pattern_class,
                               np.arange(self.space.num_classes + 1)).astype(np.int64)


# ---- token classes, budgets, slot tables ----------------------------------------------------


def token_classes(data: ProblemData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group identical tokens: same top-K experts and weights in order, same ``ε_t``.

    Returns ``(token_class (L,), representative (G,), count (G,))``; classes are numbered in
    order of their first token.
    """
    inst = data.inst
    eps = data.budgets.eps_token
    eps = np.zeros(inst.num_tokens) if eps is None else np.asarray(eps, dtype=float)
    rows = np.ascontiguousarray(np.concatenate(
        [inst.topk_experts.astype(float), inst.topk_weights, eps[:, None]], axis=1))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse, count = np.unique(keys, return_index=True, return_inverse=True,
                                         return_counts=True)
    order = np.argsort(first, kind="stable")  # renumber classes by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse.ravel()], first[order], count[order]


def class_budgets(data: ProblemData, rep: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(eps, room, mean_row)`` of the classes with representatives ``rep``.

    ``eps``: the per-token budget the rule checks exactly (the largest float without one,
    which accepts every finite D); for one token the mean budget is that token's budget too,
    and ``D − min(ε_t, ε̄) ≤ TOL`` is exactly ``Budgets.accepts([D])`` (floating-point
    subtraction is monotone). ``room``: :meth:`Budgets.token_caps` with the least
    degradation each token can reach. ``mean_row``: :attr:`Budgets.mean_binds`.
    """
    budgets = data.budgets
    eps = (np.full(rep.size, np.finfo(float).max) if budgets.eps_token is None
           else np.asarray(budgets.eps_token, dtype=float)[rep])
    mean_row = budgets.mean_binds
    if budgets.eps_mean is not None and data.num_tokens == 1:
        eps = np.minimum(eps, budgets.eps_mean)
    room = budgets.token_caps(data.least_degradation())[rep]
    return eps, room, mean_row


def slot_table(data: ProblemData, tokens: np.ndarray) -> SlotTable:
    """The :class:`SlotTable` of the given tokens (one row per token)."""
    k_slots, n_nodes = data.inst.top_k, data.num_nodes
    tokens = np.asarray(tokens, dtype=np.int64)
    slots = (tokens[:, None] * k_slots + np.arange(k_slots)).ravel()
    counts = data.slot_start[slots + 1] - data.slot_start[slots]
    row = np.repeat(np.arange(slots.size), counts)
    opts = np.repeat(data.slot_start[slots], counts) + (
        np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    keep = data.opt_reachable[opts]
    row, opts = row[keep], opts[keep]
    col = np.maximum(data.opt_node[opts], 0)  # skip and node 0 are both "local"
    deg = data.opt_degradation[opts]
    # per (row, col) cell the least degradation, then among its options with that degradation
    # the lowest index (ufunc.at: no sort of the options)
    cell = row * (n_nodes + 1) + col
    value = np.full(slots.size * (n_nodes + 1), np.inf)
    np.minimum.at(value, cell, deg)
    tie = np.flatnonzero(deg == value[cell])
    none = np.iinfo(np.int64).max
    best_opt = np.full(value.size, none, dtype=np.int64)
    np.minimum.at(best_opt, cell[tie], opts[tie])
    best_opt[best_opt == none] = -1
    value = value.reshape(slots.size, n_nodes + 1)
    best_opt = best_opt.reshape(slots.size, n_nodes + 1)
    shape = (tokens.size, k_slots)
    return SlotTable(local=value[:, 0].reshape(shape), local_opt=best_opt[:, 0].reshape(shape),
                     remote=value[:, 1:].reshape(*shape, n_nodes),
                     remote_opt=best_opt[:, 1:].reshape(*shape, n_nodes))


def monotone_nodes(data: ProblemData) -> np.ndarray:
    """``(M + 1,)`` bool: node m's energy table is non-decreasing on 0..cap (node 0: True)."""
    out = np.ones(data.num_nodes + 1, dtype=bool)
    for m, table in enumerate(data.tables, start=1):
        out[m] = bool(np.all(np.diff(table.energy_j) >= 0))
    return out


def mask_sums(mask: np.ndarray, price: np.ndarray) -> np.ndarray:
    """``Σ_{m ∈ C} price[m−1]`` for every mask (byte-wise lookup tables, vectorised)."""
    mask = np.asarray(mask, dtype=np.uint64)
    out = np.zeros(mask.size)
    byte_values = np.arange(256, dtype=np.int64)
    for b in range((price.size + 7) // 8):
        chunk = np.zeros(8)
        part = price[8 * b: 8 * b + 8]
        chunk[: part.size] = part
        on = ((byte_values[:, None] >> np.arange(8)) & 1).astype(bool)
        lookup = np.where(on, chunk, 0.0).sum(axis=1)
        out += lookup[((mask >> np.uint64(8 * b)) & np.uint64(255)).astype(np.int64)]
    return out


def mask_bits(mask: np.ndarray, num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(position, node)`` pairs of the nodes (1..M) in each mask."""
    mask = np.asarray(mask, dtype=np.uint64)
    rows, nodes = [], []
    for m in range(1, num_nodes + 1):
        hit = np.flatnonzero((mask >> np.uint64(m - 1)) & _ONE)
        rows.append(hit)
        nodes.append(np.full(hit.size, m, dtype=np.int64))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows), np.concatenate(nodes)


def mask_incidence(mask: np.ndarray, num_nodes: int) -> np.ndarray:
    """``(n, M)`` bool: ``[j, m−1]`` is whether mask j holds node m. The masks' bytes
    unpacked (little-endian bit order), about 3x faster than shifting the 64-bit words; past
    64 nodes (masks are 64-bit) the later columns are False."""
    if num_nodes > 64:
        bits = np.left_shift(_ONE, np.arange(num_nodes, dtype=np.uint64))
        return (np.asarray(mask, dtype=np.uint64)[:, None] & bits) != 0
    octets = np.ascontiguousarray(mask, dtype="<u8").view(np.uint8).reshape(-1, 8)
    return np.unpackbits(octets, axis=1, count=num_nodes, bitorder="little").astype(bool)


def to_global(local_mask: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Masks over the bits of ``nodes`` → masks over all remote nodes (bit m−1)."""
    out = np.zeros(local_mask.size, dtype=np.uint64)
    for j, m in enumerate(nodes):
        on = ((local_mask >> np.uint64(j)) & _ONE).astype(bool)
        out[on] |= _ONE << np.uint64(m - 1)
    return out


def segments(increments: np.ndarray) -> np.ndarray:
    """Boundaries of runs of equal increments (relative ``LINEAR_RTOL``), incl. 0 and n."""
    if increments.size == 0:
        return np.zeros(1, dtype=np.int64)
    ref = np.maximum(np.abs(increments[:-1]), np.abs(increments[1:]))
    change = np.abs(np.diff(increments)) > LINEAR_RTOL * np.maximum(ref, 1e-300)
    return np.concatenate(([0], np.flatnonzero(change) + 1, [increments.size]))


def is_linear(data: ProblemData, node: int) -> bool:
    """Whether node's table is linear in the load (one segment)."""
    table = data.tables[node - 1]
    return table.convex and segments(np.diff(table.energy_j)).size <= 2


# ---- exact-use degradations (classes with a non-monotone node) -------------------------------


def exact_use_table(values: np.ndarray, local: np.ndarray, with_choice: bool = False
                    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Least degradation of using *exactly* each subset S of r nodes: ``f[S]`` (inf if none).

    ``values[k, j]``: slot k's degradation on node bit j (inf: no option there); ``local[k]``:
    its local fallback. DP over slots: a slot goes local, or to a node of S (already covered
    by an earlier slot or not). Values are added in slot order, so ``f[S]`` is the least
    :func:`~siftopt.model.budgets.token_degradation` of the assignments using exactly S
    (floating-point addition is monotone). With ``with_choice`` also returns per slot the
    choice of every state: −1 local, ``j`` node j with S unchanged, ``r + j`` node j newly
    covered.
    """
    k_slots, r = values.shape
    size = 1 << r
    states = np.arange(size)
    f = np.full(size, np.inf)
    f[0] = 0.0
    choices: list[np.ndarray] = []
    for k in range(k_slots):
        g = f + local[k]
        choice = np.full(size, -1, dtype=np.int64)
        for j in range(r):
            with_j = states[(states >> j) & 1 == 1]
            stay = f[with_j] + values[k, j]
            new = f[with_j ^ (1 << j)] + values[k, j]
            cand = np.minimum(stay, new)
            better = cand < g[with_j]
            g[with_j[better]] = cand[better]
            if with_choice:
                choice[with_j[better]] = np.where(stay[better] <= new[better], j, r + j)
        f = g
        choices.append(choice)
    return f, (choices if with_choice else None)


def _general_class(values: np.ndarray, local: np.ndarray, monotone_bit: np.ndarray,
                   eps: float, room: float, mean_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """Non-dominated kept patterns of one class with a non-monotone node: (mask, D)."""
    r = values.shape[1]
    f, _ = exact_use_table(values, local)
    feasible = fits(f, eps, room)
    states = np.arange(1 << r)
    # sub[S] = min over subsets of S that drop only monotone bits of f (mean mode), or
    # 0 if one of them is kept (token mode)
    sub = f.copy() if mean_mode else np.where(feasible, 0.0, np.inf)
    for j in np.flatnonzero(monotone_bit):
        with_j = states[(states >> j) & 1 == 1]
        sub[with_j] = np.minimum(sub[with_j], sub[with_j ^ (1 << j)])
    keep = feasible.copy()
    for j in np.flatnonzero(monotone_bit):
        with_j = states[(states >> j) & 1 == 1]
        dominated = sub[with_j ^ (1 << j)] <= (f[with_j] if mean_mode else 0.0)
        keep[with_j[dominated]] = False
    kept = np.flatnonzero(keep)
    return kept.astype(np.uint64), f[kept]


# ---- the pattern space ---------------------------------------------------------------------


def pattern_space(data: ProblemData, options: PatternOptions | None = None) -> PatternSpace:
    """Classes, budgets, slot tables and relevant nodes of an instance (price independent).

    Raises :class:`PatternLimitError` past ``options.max_nodes`` remote nodes, when a
    monotone class has more than ``options.max_local_bits`` relevant nodes, or when a general
    class has more than ``options.max_exact_use_nodes``.
    """
    options = options or PatternOptions()
    n_nodes = data.num_nodes
    if n_nodes > options.max_nodes:
        raise PatternLimitError(f"{n_nodes} remote nodes (pattern limit {options.max_nodes})")
    token_class, rep, count = token_classes(data)
    eps, room, mean_mode = class_budgets(data, rep)
    table = slot_table(data, rep)
    mono = monotone_nodes(data)
    better = (table.remote < table.local[:, :, None]).any(axis=1)  # (G, M)
    usable = np.isfinite(table.remote).any(axis=1)
    relevant = np.where(mono[1:], better, usable)
    general = (relevant & ~mono[1:]).any(axis=1)

    mono_classes = np.flatnonzero(~general)
    rel = relevant[mono_classes]
    nbits = rel.sum(axis=1).astype(np.int64)
    r_max = max(int(nbits.max(initial=0)), 1)
    if r_max > options.max_local_bits:
        raise PatternLimitError(f"a token has {r_max} relevant nodes (limit "
                                f"{options.max_local_bits})")
    node_of_bit = np.zeros((mono_classes.size, r_max), dtype=np.int64)
    values = np.full((mono_classes.size, r_max, table.local.shape[1]), np.inf)
    rows, cols = np.nonzero(rel)
    pos = np.arange(rows.size) - np.searchsorted(rows, rows)
    node_of_bit[rows, pos] = cols + 1
    values[rows, pos, :] = table.remote[mono_classes[rows], :, cols]
    suffix = np.full((mono_classes.size, r_max + 1, table.local.shape[1]), np.inf)
    for j in range(r_max - 1, -1, -1):
        suffix[:, j] = np.minimum(suffix[:, j + 1], values[:, j])

    g_cls, g_mask, g_deg = [], [], []
    for g in np.flatnonzero(general):
        nodes = np.flatnonzero(relevant[g]) + 1
        if nodes.size > options.max_exact_use_nodes:
            raise PatternLimitError(
                f"token {int(rep[g])} has {nodes.size} relevant nodes including a "
                f"non-monotone one (exact-use limit {options.max_exact_use_nodes})")
        local_mask, deg = _general_class(table.remote[g][:, nodes - 1], table.local[g],
                                         mono[nodes], float(eps[g]), float(room[g]), mean_mode)
        g_cls.append(np.full(local_mask.size, g, dtype=np.int64))
        g_mask.append(to_global(local_mask, nodes))
        g_deg.append(deg)
    general_patterns = (np.concatenate(g_cls) if g_cls else np.zeros(0, np.int64),
                        np.concatenate(g_mask) if g_mask else np.zeros(0, np.uint64),
                        np.concatenate(g_deg) if g_deg else np.zeros(0))
    return PatternSpace(data=data, token_class=token_class, class_rep=rep, class_count=count,
                        eps=eps, room=room, mean_row=mean_mode, monotone_nodes=mono,
                        slots=table, relevant=relevant, general_classes=general,
                        mono_classes=mono_classes, node_of_bit=node_of_bit, values=values,
                        nbits=nbits, suffix=suffix, general_patterns=general_patterns,
                        options=options)


__all__ = ["LINEAR_RTOL", "PatternLimitError", "PatternOptions", "PatternSet", "PatternSpace",
           "Pricing", "SlotTable", "class_budgets", "exact_use_table", "fits", "is_linear",
           "mask_bits", "mask_sums", "monotone_nodes", "pattern_space", "segments",
           "slot_table", "to_global", "token_classes"]
