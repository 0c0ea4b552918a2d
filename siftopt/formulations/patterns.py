"""Per-token node-set patterns: the columns of the pattern (Dantzig–Wolfe) formulation of (P).

A **pattern** of token t is a set C of remote nodes together with the least degradation
``D_t(C)`` of the token when it is sent to exactly the nodes of C (docs/model.md §3.1): every
slot takes an action among its options on ``C ∪ {0}`` or skip, and every node of C serves at
least one slot. The pattern master (``siftopt.backends.highs.direct``) chooses one pattern per
token; node loads are counts of the chosen patterns that contain the node.

Only non-dominated patterns are kept, which keeps the master small and exact:

* C is **dominated** by a proper subset C' when ``D_t(C') ≤ D_t(C)`` and every node of
  ``C \\ C'`` has a non-decreasing energy table (taking the token off such nodes never raises
  the energy). Any solution can be turned into one that uses only non-dominated patterns
  without raising its energy or any degradation, so dropping dominated patterns is exact.
* Without a binding mean budget, D only has to meet ``ε_t``: C is dominated by any subset C'
  as above that meets the token's cap (the **minimal feasible** sets remain).
* Every kept pattern meets the per-token cap: ``ε_t + BUDGET_SLACK`` (the model's accuracy
  row) and the room the mean budget leaves given every other token's least degradation.

Enumeration (all tokens at once, numpy):

* **monotone** tokens (no non-monotone node can serve them — every slow-fading instance):
  only nodes that beat some slot's local fallback are relevant, and a set is non-dominated iff
  each of its nodes is the strict best option of at least one slot ("owns" it). That property
  is inherited by subsets, so sets are grown one node at a time in increasing bit order, each
  extension checked with per-slot best / second-best / owner arrays, and branches pruned when
  even all remaining nodes cannot meet the cap. ``D_t(C)`` is the sum of the per-slot bests.
* **general** tokens (fast fading with a non-monotone table among the token's nodes): the
  exact-use degradation of every subset of relevant nodes by dynamic programming over slots
  and covered subsets (``2^r`` states, r ≤ :data:`MAX_EXACT_USE_NODES`), then the dominance
  rule above by a subset-minimum transform over the monotone bits. Done once per instance.

**Pricing.** Given prices (the duals of the master's LP), :func:`enumerate_patterns` returns
only the patterns whose reduced cost ``rc(C) = Σ_{m∈C} μ_m + ν·D(C) − π_g`` is at most a
per-class threshold; branches whose bound ``Σ_{m∈S} μ_m + Σ_{later m} min(0, μ_m) +
ν·D_lower − π_g`` exceeds it are pruned (``ν ≥ 0``). The search is exhaustive below the
threshold, which column generation and reduced-cost fixing rely on. With ``tighten`` the
threshold of a class drops to the best reduced cost found so far (best-first pricing).

Identical tokens (same experts, weights and budget) share one **class** with an integer count.
Past the limits (:data:`MAX_NODES`, :data:`MAX_EXACT_USE_NODES`, :data:`MAX_PATTERNS`) the
enumeration raises :class:`PatternLimitError`; callers fall back to the slot formulation.

Units: degradations are dimensionless (``w·c`` of docs/model.md §3.3); prices are in the
caller's energy unit (per token of load, per unit of degradation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.model.problem import ProblemData

#: Slack on accuracy budgets, as in the slot models (the evaluator allows 1e-9).
BUDGET_SLACK = 0.5e-9
#: Remote nodes representable in one pattern bitmask (bit m−1 = node m).
MAX_NODES = 64
#: Largest number of relevant nodes of a token with a non-monotone node (2^r DP states).
MAX_EXACT_USE_NODES = 12
#: Largest number of relevant nodes of a monotone token (bits of an int64 local mask).
MAX_LOCAL_BITS = 62
#: Largest number of patterns one enumeration will produce.
MAX_PATTERNS = 20_000_000
#: Relative tolerance under which consecutive table increments count as equal.
LINEAR_RTOL = 1e-12
#: Extension candidates processed per numpy batch (memory: ~150 bytes each).
BATCH = 1 << 19

_ONE = np.uint64(1)


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
    """A reduced-cost filter: ``rc = Σ_{m∈C} node_price[m−1] + degradation_price·D − class_dual``.

    Patterns with ``rc ≤ threshold[g]`` are returned; ``degradation_price`` must be ≥ 0.
    """

    class_dual: np.ndarray  # (G,) π_g
    node_price: np.ndarray  # (M,) μ_m
    degradation_price: float  # ν
    threshold: np.ndarray  # (G,)
    tighten: bool = False

    def reduced_cost(self, cls: np.ndarray, mask: np.ndarray, deg: np.ndarray) -> np.ndarray:
        return (mask_sums(mask, self.node_price) + self.degradation_price * deg
                - self.class_dual[cls])


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
    cap: np.ndarray  # (G,) largest degradation a pattern of the class may have
    mean_row: bool  # the mean budget is binding
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

    @property
    def num_classes(self) -> int:
        return int(self.class_rep.size)


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
    eps = (np.zeros(inst.num_tokens) if inst.eps_token is None
           else np.asarray(inst.eps_token, dtype=float))
    rows = np.ascontiguousarray(np.concatenate(
        [inst.topk_experts.astype(float), inst.topk_weights, eps[:, None]], axis=1))
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, first, inverse, count = np.unique(keys, return_index=True, return_inverse=True,
                                         return_counts=True)
    order = np.argsort(first, kind="stable")  # renumber classes by first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse.ravel()], first[order], count[order]


def mean_budget_binding(data: ProblemData) -> bool:
    """Whether the mean budget needs its own row: it is given and the per-token budgets do not
    imply it (``Σ_t ε_t ≤ L·ε̄`` implies it, since every pattern meets its ``ε_t``)."""
    inst = data.inst
    if inst.eps_mean is None:
        return False
    if inst.eps_token is None:
        return True
    return not float(np.sum(inst.eps_token)) <= inst.num_tokens * inst.eps_mean * (1 - 1e-12)


def degradation_caps(data: ProblemData) -> np.ndarray:
    """Per token: the largest degradation any feasible solution can give it.

    ``min(ε_t + BUDGET_SLACK, L(ε̄ + BUDGET_SLACK) − Σ_{t'≠t} Dmin_{t'})`` where ``Dmin`` is
    the least degradation with every reachable node. For L > 1 the second term gets 1e-9 of
    extra room so that rounding can never cut a feasible pattern (the mean row enforces the
    budget); for L = 1 it *is* the mean budget (``ε̄ + BUDGET_SLACK``, no extra room), as the
    decode rule has no mean row.
    """
    inst = data.inst
    cap = np.full(inst.num_tokens, np.inf)
    if inst.eps_token is not None:
        cap = np.asarray(inst.eps_token, dtype=float) + BUDGET_SLACK
    if inst.eps_mean is not None:
        least = data.least_degradation()
        room = inst.num_tokens * (inst.eps_mean + BUDGET_SLACK) - (least.sum() - least)
        if inst.num_tokens == 1:
            room = np.array([inst.eps_mean + BUDGET_SLACK])
        cap = np.minimum(cap, room + (1e-9 if inst.num_tokens > 1 else 0.0))
    return cap


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
    order = np.lexsort((opts, deg, col, row))  # first per (row, col): least deg, lowest index
    row, col, deg, opts = row[order], col[order], deg[order], opts[order]
    first = np.ones(row.size, dtype=bool)
    first[1:] = (row[1:] != row[:-1]) | (col[1:] != col[:-1])
    value = np.full((slots.size, n_nodes + 1), np.inf)
    best_opt = np.full((slots.size, n_nodes + 1), -1, dtype=np.int64)
    value[row[first], col[first]] = deg[first]
    best_opt[row[first], col[first]] = opts[first]
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


# ---- the pattern space ---------------------------------------------------------------------


def pattern_space(data: ProblemData) -> PatternSpace:
    """Classes, caps, slot tables and relevant nodes of an instance (price independent).

    Raises :class:`PatternLimitError` past :data:`MAX_NODES` remote nodes or when a general
    class has more than :data:`MAX_EXACT_USE_NODES` relevant nodes.
    """
    n_nodes = data.num_nodes
    if n_nodes > MAX_NODES:
        raise PatternLimitError(f"{n_nodes} remote nodes (pattern limit {MAX_NODES})")
    token_class, rep, count = token_classes(data)
    caps = degradation_caps(data)[rep]
    mean_mode = mean_budget_binding(data)
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
    if r_max > MAX_LOCAL_BITS:
        raise PatternLimitError(f"a token has {r_max} relevant nodes (limit {MAX_LOCAL_BITS})")
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
        if nodes.size > MAX_EXACT_USE_NODES:
            raise PatternLimitError(
                f"token {int(rep[g])} has {nodes.size} relevant nodes including a "
                f"non-monotone one (exact-use limit {MAX_EXACT_USE_NODES})")
        local_mask, deg = _general_class(table.remote[g][:, nodes - 1], table.local[g],
                                         mono[nodes], float(caps[g]), mean_mode)
        g_cls.append(np.full(local_mask.size, g, dtype=np.int64))
        g_mask.append(_to_global(local_mask, nodes))
        g_deg.append(deg)
    general_patterns = (np.concatenate(g_cls) if g_cls else np.zeros(0, np.int64),
                        np.concatenate(g_mask) if g_mask else np.zeros(0, np.uint64),
                        np.concatenate(g_deg) if g_deg else np.zeros(0))
    return PatternSpace(data=data, token_class=token_class, class_rep=rep, class_count=count,
                        cap=caps, mean_row=mean_mode, monotone_nodes=mono, slots=table,
                        relevant=relevant, general_classes=general, mono_classes=mono_classes,
                        node_of_bit=node_of_bit, values=values, nbits=nbits, suffix=suffix,
                        general_patterns=general_patterns)


def enumerate_patterns(space: PatternSpace | ProblemData, pricing: Pricing | None = None
                       ) -> PatternSet:
    """The non-dominated feasible patterns of every class — all of them, or with ``pricing``
    those with reduced cost at most the class's threshold (see the module docstring)."""
    if isinstance(space, ProblemData):
        space = pattern_space(space)
    threshold = None if pricing is None else np.array(pricing.threshold, dtype=float)
    parts = []
    if space.mono_classes.size:
        parts.append(_grow(space, pricing, threshold))
    cls, mask, deg = space.general_patterns
    if cls.size:
        if pricing is not None:
            rc = pricing.reduced_cost(cls, mask, deg)
            if pricing.tighten:
                np.minimum.at(threshold, cls, rc)
            keep = rc <= threshold[cls]
            cls, mask, deg = cls[keep], mask[keep], deg[keep]
        parts.append((cls, mask, deg))
    cls = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    mask = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.uint64)
    deg = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    order = np.argsort(cls, kind="stable")
    cls, mask, deg = cls[order], mask[order], deg[order]
    rc = None if pricing is None else pricing.reduced_cost(cls, mask, deg)
    return PatternSet(space=space, pattern_class=cls, mask=mask, degradation=deg,
                      reduced_cost=rc)


def cheapest_patterns(space: PatternSpace, node_price: np.ndarray,
                      degradation_price: float = 0.0) -> PatternSet:
    """Per class the pattern of least ``Σ_{m∈C} node_price[m−1] + degradation_price·D``
    (ties: the lower degradation, then the lower mask); classes without patterns get none."""
    pricing = Pricing(class_dual=np.zeros(space.num_classes), node_price=node_price,
                      degradation_price=degradation_price,
                      threshold=np.full(space.num_classes, np.inf), tighten=True)
    pset = enumerate_patterns(space, pricing)
    order = np.lexsort((pset.mask, pset.degradation, pset.reduced_cost, pset.pattern_class))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pset.pattern_class[order][1:] != pset.pattern_class[order][:-1]
    pick = order[first]
    return PatternSet(space=space, pattern_class=pset.pattern_class[pick],
                      mask=pset.mask[pick], degradation=pset.degradation[pick],
                      reduced_cost=pset.reduced_cost[pick])


# ---- enumeration: monotone classes (level-wise growth) --------------------------------------


@dataclass
class _Frontier:
    """Sets still to be extended (rows index ``space.mono_classes``): local bitmask (int64),
    next bit, per-slot best / second best (token mode only) / owner (bit, −1 for local or a
    tie; int8), node price sum."""

    row: np.ndarray
    mask: np.ndarray
    nxt: np.ndarray
    best: np.ndarray  # (n, K)
    second: np.ndarray | None  # (n, K)
    owner: np.ndarray  # (n, K)
    price: np.ndarray  # (n,)

    def __len__(self) -> int:
        return int(self.row.size)

    def take(self, idx: np.ndarray | slice) -> _Frontier:
        return _Frontier(self.row[idx], self.mask[idx], self.nxt[idx], self.best[idx],
                         None if self.second is None else self.second[idx], self.owner[idx],
                         self.price[idx])


@dataclass
class _Prices:
    """Pricing restated per monotone row and bit."""

    dual: np.ndarray  # (G1,) π
    bit_price: np.ndarray  # (G1, R) μ of each bit's node
    neg_suffix: np.ndarray  # (G1, R + 1) Σ_{bits ≥ j} min(0, μ)
    nu: float
    threshold: np.ndarray  # (G1,) (tightened in place)
    tighten: bool


_BIT = np.concatenate([[0], np.left_shift(1, np.arange(MAX_LOCAL_BITS + 1))]).astype(np.int64)


def _grow(space: PatternSpace, pricing: Pricing | None, threshold: np.ndarray | None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-dominated patterns of the monotone classes as (class, global mask, D)."""
    rows_n, k_slots = space.values.shape[0], space.values.shape[2]
    local = space.slots.local[space.mono_classes]
    cap = space.cap[space.mono_classes]
    prices = None
    if pricing is not None:
        bit_price = np.where(space.node_of_bit > 0,
                             pricing.node_price[np.maximum(space.node_of_bit - 1, 0)], 0.0)
        neg = np.zeros((rows_n, bit_price.shape[1] + 1))
        neg[:, :-1] = np.cumsum(np.minimum(bit_price, 0.0)[:, ::-1], axis=1)[:, ::-1]
        prices = _Prices(dual=pricing.class_dual[space.mono_classes], bit_price=bit_price,
                         neg_suffix=neg, nu=float(pricing.degradation_price),
                         threshold=threshold[space.mono_classes], tighten=pricing.tighten)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    root = _Frontier(np.arange(rows_n), np.zeros(rows_n, np.int64), np.zeros(rows_n, np.int64),
                     local.copy(),
                     None if space.mean_row else np.full((rows_n, k_slots), np.inf),
                     np.full((rows_n, k_slots), -1, dtype=np.int8), np.zeros(rows_n))
    root_d = local.sum(axis=1)
    emit = root_d <= cap
    if prices is not None:
        rc = prices.nu * root_d - prices.dual
        emit[emit] = _accept(prices, root.row[emit], rc[emit])
    out.append((root.row[emit], root.mask[emit], root_d[emit]))
    grow = np.ones(rows_n, bool) if space.mean_row else root_d > cap
    stack = [root.take(np.flatnonzero(grow))]
    total = 0
    while stack:
        front = stack.pop()
        if not len(front):
            continue
        count = _extension_count(space, front, cap, prices)
        if int(count.sum()) > BATCH and len(front) > 1:
            half = len(front) // 2
            stack += [front.take(slice(0, half)), front.take(slice(half, None))]
            continue
        grown = _extend(space, front, count, cap, prices)
        if grown is None:
            continue
        children, emitted = grown
        out.append(emitted)
        total += emitted[0].size
        if total > MAX_PATTERNS:
            raise PatternLimitError(f"more than {MAX_PATTERNS} patterns")
        stack.append(children)
    row = np.concatenate([o[0] for o in out])
    local_mask = np.concatenate([o[1] for o in out])
    deg = np.concatenate([o[2] for o in out])
    if prices is not None and pricing.tighten:
        threshold[space.mono_classes] = prices.threshold
    return space.mono_classes[row], _rows_to_global(space, row, local_mask), deg


def _accept(prices: _Prices, row: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Whether reduced costs pass their rows' thresholds (tightening them first if asked)."""
    if prices.tighten and rc.size:
        np.minimum.at(prices.threshold, row, rc)
    return rc <= prices.threshold[row]


def _extension_count(space: PatternSpace, front: _Frontier, cap: np.ndarray,
                     prices: _Prices | None) -> np.ndarray:
    """Number of bits each frontier set may still be extended by (0 when pruned)."""
    lower_d = np.minimum(front.best, space.suffix[front.row, front.nxt]).sum(axis=1)
    alive = lower_d <= cap[front.row]
    if prices is not None:
        bound = (front.price + prices.neg_suffix[front.row, front.nxt]
                 + prices.nu * lower_d - prices.dual[front.row])
        alive &= bound <= prices.threshold[front.row]
    return np.where(alive, np.maximum(space.nbits[front.row] - front.nxt, 0), 0)


def _extend(space: PatternSpace, front: _Frontier, count: np.ndarray, cap: np.ndarray,
            prices: _Prices | None
            ) -> tuple[_Frontier, tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """All one-bit extensions of a frontier batch that stay non-dominated.

    Returns the sets to extend further and the (row, local mask, D) of those to emit, or None
    when there is no extension.
    """
    n_pairs = int(count.sum())
    if n_pairs == 0:
        return None
    parent = np.repeat(np.arange(len(front)), count)
    bit = front.nxt[parent] + (np.arange(n_pairs) - np.repeat(np.cumsum(count) - count, count))
    row = front.row[parent]
    v = space.values[row, bit]  # (n_pairs, K)
    best, owner = front.best[parent], front.owner[parent]
    lt = v < best
    eq = v == best
    second = None
    if front.second is not None:
        prev = front.second[parent]
        second = np.where(lt, best, np.where(eq | (v < prev), v, prev))
    best = np.where(lt, v, best)
    owner = np.where(lt, bit.astype(np.int8)[:, None], np.where(eq, np.int8(-1), owner))
    owned = _BIT[owner[:, 0] + 1].copy()
    for k in range(1, owner.shape[1]):
        owned |= _BIT[owner[:, k] + 1]
    mask = front.mask[parent] | _BIT[bit + 1]
    keep = np.flatnonzero(owned == mask)  # every node owns a slot: non-dominated
    parent, bit, row, mask = parent[keep], bit[keep], row[keep], mask[keep]
    best, owner = best[keep], owner[keep]
    second = None if second is None else second[keep]
    price = front.price[parent]
    if prices is not None:
        price = price + prices.bit_price[row, bit]
    deg = best.sum(axis=1)
    feasible = deg <= cap[row]
    emit = feasible.copy()
    if second is not None and feasible.any():
        emit[feasible] = _no_feasible_subset(best[feasible], second[feasible], owner[feasible],
                                             mask[feasible], cap[row[feasible]])
    if prices is not None:
        rc = price + prices.nu * deg - prices.dual[row]
        emit[emit] = _accept(prices, row[emit], rc[emit])
    if space.mean_row:
        children = _Frontier(row, mask, bit + 1, best, None, owner, price)
    else:
        ext = ~feasible
        children = _Frontier(row[ext], mask[ext], bit[ext] + 1, best[ext], second[ext],
                             owner[ext], price[ext])
    return children, (row[emit], mask[emit], deg[emit])


def _no_feasible_subset(best: np.ndarray, second: np.ndarray, owner: np.ndarray,
                        mask: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """For feasible non-dominated sets: whether every one-node-smaller subset exceeds the cap.

    ``D(C \\ {m})`` is the sum over slots of the second best where m owns the slot, else the
    best — the same per-slot values and summation the enumeration uses for that subset.
    """
    ok = np.ones(best.shape[0], dtype=bool)
    top = int(np.max(owner, initial=-1))
    for j in range(top + 1):
        has = ((mask >> j) & 1).astype(bool)
        if not has.any():
            continue
        sub = np.where(owner[has] == j, second[has], best[has]).sum(axis=1)
        ok[has] &= sub > cap[has]
    return ok


def _rows_to_global(space: PatternSpace, row: np.ndarray, local_mask: np.ndarray
                    ) -> np.ndarray:
    """Local masks (bits over a class's relevant nodes) → masks over all remote nodes."""
    mask = np.zeros(row.size, dtype=np.uint64)
    for j in range(space.node_of_bit.shape[1]):
        on = np.flatnonzero((local_mask >> j) & 1)
        if on.size:
            node = space.node_of_bit[row[on], j]
            mask[on] |= _ONE << (node - 1).astype(np.uint64)
    return mask


def _to_global(local_mask: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Masks over the bits of ``nodes`` → masks over all remote nodes (bit m−1)."""
    out = np.zeros(local_mask.size, dtype=np.uint64)
    for j, m in enumerate(nodes):
        on = ((local_mask >> np.uint64(j)) & _ONE).astype(bool)
        out[on] |= _ONE << np.uint64(m - 1)
    return out


# ---- enumeration: general classes (exact-use dynamic programming) ---------------------------


def exact_use_table(values: np.ndarray, local: np.ndarray, with_choice: bool = False
                    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Least degradation of using *exactly* each subset S of r nodes: ``f[S]`` (inf if none).

    ``values[k, j]``: slot k's degradation on node bit j (inf: no option there); ``local[k]``:
    its local fallback. DP over slots: a slot goes local, or to a node of S (already covered
    by an earlier slot or not). With ``with_choice`` also returns per slot the choice of every
    state: −1 local, ``j`` node j with S unchanged, ``r + j`` node j newly covered.
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
                   cap: float, mean_mode: bool) -> tuple[np.ndarray, np.ndarray]:
    """Non-dominated feasible patterns of one class with a non-monotone node: (mask, D)."""
    r = values.shape[1]
    f, _ = exact_use_table(values, local)
    feasible = f <= cap
    states = np.arange(1 << r)
    # sub[S] = min over subsets of S that drop only monotone bits of f (mean mode), or
    # 0 if one of them is feasible (token mode)
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


# ---- from chosen patterns back to actions ----------------------------------------------------


def assign_patterns(space: PatternSpace, pattern_class: np.ndarray, mask: np.ndarray,
                    amount: np.ndarray) -> np.ndarray:
    """One pattern mask per token from integer amounts of (class, mask) choices.

    The amounts of each class must sum to its count; tokens of a class take the patterns in
    the given order. Returns ``(L,)`` masks.
    """
    amount = np.rint(np.asarray(amount)).astype(np.int64)
    keep = amount > 0
    pattern_class, mask, amount = (np.asarray(pattern_class)[keep], np.asarray(mask)[keep],
                                   amount[keep])
    order = np.argsort(pattern_class, kind="stable")
    pattern_class, mask, amount = pattern_class[order], mask[order], amount[order]
    per_class = np.bincount(pattern_class, weights=amount, minlength=space.num_classes)
    if not np.array_equal(per_class.astype(np.int64), space.class_count):
        raise RuntimeError("pattern amounts do not add up to the token classes")
    chosen = np.repeat(mask, amount)  # grouped by class
    tokens = np.argsort(space.token_class, kind="stable")  # tokens grouped by class too
    out = np.empty(space.data.num_tokens, dtype=np.uint64)
    out[tokens] = chosen
    return out


def actions_for_patterns(space: PatternSpace, token_mask: np.ndarray,
                         tokens: np.ndarray | None = None) -> np.ndarray:
    """Targets that send each token to exactly the nodes of its pattern with the pattern's
    degradation: ``(L, K)``, or ``(len(tokens), K)`` for the given tokens only (then
    ``token_mask`` holds their masks, in the same order).

    Monotone classes: each slot takes its best option on ``C ∪ {0}`` (the local one on ties);
    since every node of a kept pattern owns a slot, every node is used. General classes: the
    exact-use DP restricted to the pattern's nodes, traced back.
    """
    data = space.data
    masks = np.asarray(token_mask, dtype=np.uint64)
    tokens = np.arange(data.num_tokens) if tokens is None else np.asarray(tokens, np.int64)
    cls = space.token_class[tokens]
    in_set = ((masks[:, None] >> np.arange(data.num_nodes, dtype=np.uint64)) & _ONE
              ).astype(bool)  # (T, M)
    remote = np.where(in_set[:, None, :], space.slots.remote[cls], np.inf)  # (T, K, M)
    node = np.argmin(remote, axis=2)
    best_remote = np.take_along_axis(remote, node[:, :, None], axis=2)[:, :, 0]
    use_remote = best_remote < space.slots.local[cls]
    opt = np.where(use_remote,
                   np.take_along_axis(space.slots.remote_opt[cls], node[:, :, None],
                                      axis=2)[:, :, 0],
                   space.slots.local_opt[cls])
    for i in np.flatnonzero(space.general_classes[cls]):
        opt[i] = _exact_use_options(space, int(cls[i]), int(masks[i]))
    return data.opt_target[opt]


def _exact_use_options(space: PatternSpace, g: int, mask: int) -> np.ndarray:
    """Option per slot of class g using exactly the nodes of ``mask`` (exact-use DP)."""
    nodes = np.array([m for m in range(1, space.data.num_nodes + 1) if mask >> (m - 1) & 1],
                     dtype=np.int64)
    values = space.slots.remote[g][:, nodes - 1]
    local = space.slots.local[g]
    f, choices = exact_use_table(values, local, with_choice=True)
    state = (1 << nodes.size) - 1
    if not np.isfinite(f[state]):
        raise RuntimeError("pattern cannot be served with exactly its nodes")
    r = nodes.size
    out = np.empty(local.size, dtype=np.int64)
    for k in range(local.size - 1, -1, -1):
        c = int(choices[k][state])
        if c < 0:
            out[k] = space.slots.local_opt[g, k]
            continue
        j = c % r
        out[k] = space.slots.remote_opt[g, k, nodes[j] - 1]
        if c >= r:
            state ^= 1 << j
    return out


def pattern_of_actions(space: PatternSpace, actions: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For an action set: per token a kept pattern at least as good for it, as (mask, D).

    The pattern is a subset of the token's sent set C that differs from it only by monotone
    nodes, with degradation at most the token's (mean budget binding) or within its cap.
    Monotone classes: drop nodes that own no slot one at a time (D unchanged), then, without
    a binding mean budget, drop nodes while the cap still holds. General classes: the least-D
    such pattern. Tokens without one get mask 0 and D = inf.
    """
    data = space.data
    inst = data.inst
    actions = np.asarray(actions, dtype=np.int64)
    skip = actions < 0
    safe = np.where(skip, 0, actions)
    node = np.where(skip, -1, inst.placement[safe])
    sent = np.zeros(inst.num_tokens, dtype=np.uint64)
    for k in range(inst.top_k):
        on = node[:, k] >= 1
        sent[on] |= _ONE << (node[on, k] - 1).astype(np.uint64)
    cost = np.where(skip, inst.beta[inst.topk_experts], inst.delta[inst.topk_experts, safe])
    cost = np.where(actions == inst.topk_experts, 0.0, cost)
    degradation = (inst.topk_weights * cost).sum(axis=1)
    out_mask = np.zeros(inst.num_tokens, dtype=np.uint64)
    out_deg = np.full(inst.num_tokens, np.inf)
    g_cls, g_mask, g_deg = space.general_patterns
    non_mono = np.uint64(0)
    for m in np.flatnonzero(~space.monotone_nodes[1:]):
        non_mono |= _ONE << np.uint64(m)
    for t in range(inst.num_tokens):
        g = int(space.token_class[t])
        limit = degradation[t] + 1e-12 if space.mean_row else space.cap[g]
        if space.general_classes[g]:
            ok = ((g_cls == g) & ((g_mask & ~sent[t]) == 0)
                  & ((g_mask & non_mono) == (sent[t] & non_mono)) & (g_deg <= limit))
            if ok.any():
                i = np.flatnonzero(ok)[np.argmin(g_deg[ok])]
                out_mask[t], out_deg[t] = g_mask[i], g_deg[i]
            continue
        mask, deg = _shrink(space, g, int(sent[t]) & _relevant_mask(space, g))
        if deg <= min(limit, space.cap[g]):
            out_mask[t], out_deg[t] = mask, deg
    return out_mask, out_deg


def _relevant_mask(space: PatternSpace, g: int) -> int:
    return sum(1 << int(m) for m in np.flatnonzero(space.relevant[g]))


def _shrink(space: PatternSpace, g: int, mask: int) -> tuple[int, float]:
    """A kept pattern inside ``mask`` for monotone class g with D ≤ D(mask) (see
    :func:`pattern_of_actions`)."""
    remote, local = space.slots.remote[g], space.slots.local[g]

    def degradation(m: int) -> float:
        nodes = [i for i in range(remote.shape[1]) if m >> i & 1]
        best = np.minimum(local, remote[:, nodes].min(axis=1)) if nodes else local
        return float(best.sum())

    def owners(m: int) -> int:
        nodes = [i for i in range(remote.shape[1]) if m >> i & 1]
        if not nodes:
            return 0
        vals = np.concatenate([local[:, None], remote[:, nodes]], axis=1)
        best = vals.min(axis=1, keepdims=True)
        unique = (vals == best).sum(axis=1) == 1
        arg = vals.argmin(axis=1)
        own = 0
        for k in np.flatnonzero(unique & (arg > 0)):
            own |= 1 << nodes[arg[k] - 1]
        return own

    while True:
        idle = mask & ~owners(mask)
        if not idle:
            break
        mask &= ~(idle & -idle)  # drop the lowest idle node
    if not space.mean_row:
        for i in range(remote.shape[1]):
            if mask >> i & 1 and degradation(mask & ~(1 << i)) <= space.cap[g]:
                mask &= ~(1 << i)
    return mask, degradation(mask)


# ---- the decode rule --------------------------------------------------------------------------


def one_token_energy(data: ProblemData) -> np.ndarray:
    """``E_m(1)`` per node (index m; 0 for unreachable nodes, which no pattern uses), J."""
    out = np.zeros(data.num_nodes + 1)
    for m, table in enumerate(data.tables, start=1):
        if table.cap >= 1:
            out[m] = table.energy_j[1]
    return out


def decode_rule_applies(space: PatternSpace, token_mask: np.ndarray) -> bool:
    """Whether per-token cheapest patterns (``token_mask``, at ``E_m(1)`` per node) are
    optimal: for L = 1 always; for L > 1 when every relevant node's table is linear, the mean
    budget is not binding and the resulting loads fit the caps (the energy is then a sum of
    per-token energies, each at its least)."""
    data = space.data
    if data.num_tokens == 1:
        return True
    if space.mean_row:
        return False
    nodes = np.flatnonzero(space.relevant.any(axis=0)) + 1
    if not all(is_linear(data, int(m)) for m in nodes):
        return False
    _, node = mask_bits(token_mask, data.num_nodes)
    loads = np.bincount(node, minlength=data.num_nodes + 1)
    return bool(np.all(loads[1:] <= data.caps[1:]))


def masks_energy_j(data: ProblemData, token_mask: np.ndarray) -> float:
    """``Σ_m E_m(n_m)`` in J for per-token node masks."""
    _, node = mask_bits(token_mask, data.num_nodes)
    loads = np.bincount(node, minlength=data.num_nodes + 1)
    return float(sum(data.tables[m - 1].energy(int(loads[m]))
                     for m in range(1, data.num_nodes + 1)))
