"""Enumeration and pricing of the non-dominated kept patterns of a :class:`PatternSpace`.

* **monotone** classes (no non-monotone node can serve them — every slow-fading instance):
  only nodes that beat some slot's local fallback are relevant, and a set is non-dominated iff
  each of its nodes is the strict best option of at least one slot ("owns" it). That property
  is inherited by subsets, so sets are grown one node at a time in increasing bit order, each
  extension checked with per-slot best / second-best / owner arrays, and branches pruned when
  even all remaining nodes cannot give a kept pattern. ``D_t(C)`` is the sum of the per-slot
  bests in slot order (:func:`~siftopt.model.budgets.token_degradation`).
* **general** classes: their patterns were enumerated once with the space (exact-use DP);
  here they are only priced.

**Pricing.** Given prices (the duals of the master's LP), :func:`enumerate_patterns` returns
only the patterns whose reduced cost ``rc(C) = Σ_{m∈C} μ_m + ν·D(C) − π_g`` is at most a
per-class threshold; branches whose bound ``Σ_{m∈S} μ_m + Σ_{later m} min(0, μ_m) +
ν·D_lower − π_g`` exceeds it are pruned (``ν ≥ 0``). The search is exhaustive below the
threshold, which column generation and reduced-cost fixing rely on. With ``tighten`` the
threshold of a class drops to the best reduced cost found so far (best-first pricing).
Past ``options.max_patterns`` patterns it raises :class:`PatternLimitError`.
"""

from __future__ import annotations

import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from siftopt.formulations.space import (
    LOCAL_BITS,
    PatternLimitError,
    PatternSet,
    PatternSpace,
    Pricing,
    fits,
    pattern_space,
)
from siftopt.model.budgets import TOL, token_degradation
from siftopt.model.problem import ProblemData

_ONE = np.uint64(1)
#: Relative allowance for the rounding of degradation sums in pruning bounds.
_MARGIN = 1e-12
_BIT = np.concatenate([[0], np.left_shift(1, np.arange(LOCAL_BITS + 1))]).astype(np.int64)

#: ``fit(D, row)``: whether monotone rows ``row`` may keep patterns of degradation ``D``.
_Fit = Callable[[np.ndarray, np.ndarray], np.ndarray]


class PricingTimeout(Exception):
    """The enumeration passed its deadline (nothing it found so far is returned)."""


def enumerate_patterns(space: PatternSpace | ProblemData, pricing: Pricing | None = None, *,
                       deadline: float | None = None, cover: bool = True,
                       engine: str = "auto") -> PatternSet:
    """The non-dominated kept patterns of every class — all of them, or with ``pricing``
    those with reduced cost at most the class's threshold (see the module docstring).
    ``deadline`` (``time.perf_counter`` clock): checked between batches; past it
    :class:`PricingTimeout` is raised. ``engine``: ``"compiled"`` (a depth-first search
    compiled with numba, :mod:`siftopt.formulations.enumerate_kernel`), ``"numpy"`` (the
    level-wise reference search) or ``"auto"`` (compiled past :data:`COMPILED_ABOVE` sets,
    where it pays for loading numba, about 0.6 s once per process, and not under a deadline
    closer than :data:`COMPILE_BUDGET_S` before the kernel is ready); both return the same
    patterns without ``pricing.tighten``, and every pattern of least reduced cost per class
    with it.
    ``cover=False`` skips the numpy search's cover bound (a pruning test only: the same
    patterns are returned; cheaper when the price bound already prunes most sets, as at
    near-optimal prices)."""
    if isinstance(space, ProblemData):
        space = pattern_space(space)
    threshold = None if pricing is None else np.array(pricing.threshold, dtype=float)
    parts = []
    if space.mono_classes.size:
        parts.append(_grow(space, pricing, threshold, deadline, cover, engine))
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
    if np.any(cls[1:] < cls[:-1]):  # (the compiled search returns them sorted)
        order = np.argsort(cls, kind="stable")
        cls, mask, deg = cls[order], mask[order], deg[order]
    rc = None if pricing is None else pricing.reduced_cost(cls, mask, deg)
    return PatternSet(space=space, pattern_class=cls, mask=mask, degradation=deg,
                      reduced_cost=rc)


def engine_for(deadline: float | None) -> str:
    """The enumeration engine for a search that must end by ``deadline`` without being
    stopped by it (no :class:`PricingTimeout`): ``"auto"``, or ``"numpy"`` when the
    compiled search is not ready and there is no time to compile it."""
    return "auto" if _compiled_in_time(deadline) else "numpy"


def cheapest_patterns(space: PatternSpace, node_price: np.ndarray,
                      degradation_price: float = 0.0, *, engine: str = "auto") -> PatternSet:
    """Per class the pattern of least ``Σ_{m∈C} node_price[m−1] + degradation_price·D``
    (ties: the lower degradation, then the lower mask); classes without patterns get none.
    ``engine``: as for :func:`enumerate_patterns` (see :func:`engine_for`)."""
    pricing = Pricing(class_dual=np.zeros(space.num_classes), node_price=node_price,
                      degradation_price=degradation_price,
                      threshold=np.full(space.num_classes, np.inf), tighten=True)
    # no cover bound: with thresholds that start infinite and tighten as patterns are found it
    # prunes little and costs about four extensions per set (3× the whole pricing at L = 1024)
    pset = enumerate_patterns(space, pricing, cover=False, engine=engine)
    order = np.lexsort((pset.mask, pset.degradation, pset.reduced_cost, pset.pattern_class))
    first = np.ones(order.size, dtype=bool)
    first[1:] = pset.pattern_class[order][1:] != pset.pattern_class[order][:-1]
    pick = order[first]
    return PatternSet(space=space, pattern_class=pset.pattern_class[pick],
                      mask=pset.mask[pick], degradation=pset.degradation[pick],
                      reduced_cost=pset.reduced_cost[pick])


# ---- monotone classes: level-wise growth ------------------------------------------------------


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
    cap: np.ndarray  # (G1,) at least the largest D a kept pattern of the row can have


@dataclass(frozen=True)
class _RowConstants:
    """What the searches take from a space on every call, restated per monotone row (kept
    per space: none of it depends on the prices). ``node``: each bit's node index into the
    prices (0 for unused bits), ``used``: whether the bit is a node; ``cap`` as in
    :class:`_Prices`; the others the space's arrays by monotone row, contiguous (float)."""

    node: np.ndarray  # (G1, R) int64
    used: np.ndarray  # (G1, R) bool
    cap: np.ndarray  # (G1,)
    eps: np.ndarray  # (G1,)
    room: np.ndarray  # (G1,)
    local: np.ndarray  # (G1, K)
    values: np.ndarray  # (G1, R, K)
    suffix: np.ndarray  # (G1, R + 1, K)
    nbits: np.ndarray  # (G1,) int64


_ROW_CONSTANTS: weakref.WeakKeyDictionary[PatternSpace, _RowConstants] = \
    weakref.WeakKeyDictionary()


def _row_constants(space: PatternSpace) -> _RowConstants:
    """The space's :class:`_RowConstants` (computed on the first call per space)."""
    known = _ROW_CONSTANTS.get(space)
    if known is None:
        eps, room = space.eps[space.mono_classes], space.room[space.mono_classes]
        with np.errstate(over="ignore"):
            cap = np.minimum(eps + TOL, room)
            cap = cap + _MARGIN * np.maximum(1.0, np.abs(cap))
        known = _RowConstants(
            node=np.maximum(space.node_of_bit - 1, 0), used=space.node_of_bit > 0, cap=cap,
            eps=np.ascontiguousarray(eps, dtype=float),
            room=np.ascontiguousarray(room, dtype=float),
            local=np.ascontiguousarray(space.slots.local[space.mono_classes], dtype=float),
            values=np.ascontiguousarray(space.values, dtype=float),
            suffix=np.ascontiguousarray(space.suffix, dtype=float),
            nbits=np.ascontiguousarray(space.nbits, dtype=np.int64))
        _ROW_CONSTANTS[space] = known
    return known


def _row_prices(space: PatternSpace, pricing: Pricing | None, threshold: np.ndarray | None
                ) -> _Prices | None:
    """The pricing restated per monotone row and bit (None without pricing)."""
    if pricing is None or threshold is None:
        return None
    const = _row_constants(space)
    if pricing.class_node_price is None:
        # a leading 0.0 for the bits that are no node (node_of_bit 0): one gather
        bit_price = np.concatenate([[0.0], np.asarray(pricing.node_price, dtype=float)])[
            space.node_of_bit]
    else:
        bit_price = pricing.node_price[const.node]
        bit_price = bit_price + pricing.class_node_price[space.mono_classes[:, None],
                                                         const.node]
        bit_price = np.where(const.used, bit_price, 0.0)
    neg = np.zeros((space.values.shape[0], bit_price.shape[1] + 1))
    if np.any(bit_price < 0.0):  # (none at the node prices ≥ 0 of a Lagrangian pricing)
        neg[:, :-1] = np.cumsum(np.minimum(bit_price, 0.0)[:, ::-1], axis=1)[:, ::-1]
    return _Prices(dual=pricing.class_dual[space.mono_classes], bit_price=bit_price,
                   neg_suffix=neg, nu=float(pricing.degradation_price),
                   threshold=threshold[space.mono_classes], tighten=pricing.tighten,
                   cap=const.cap)


#: Class rows per call of the compiled search (the deadline is checked between calls).
KERNEL_ROWS = 256
#: ``engine="auto"`` compiles past this many candidate sets (``Σ_rows 2^{min(bits, K)}``).
COMPILED_ABOVE = 20_000


#: ``engine="auto"`` under a deadline compiles (or loads) the numba search only with at
#: least this much time left (s): compiling it takes about 5–8 s on a fresh machine and
#: cannot be interrupted; loading it from numba's cache about 0.5 s.
COMPILE_BUDGET_S = 30.0


def _compiled_in_time(deadline: float | None) -> bool:
    """Whether the compiled search may run before ``deadline``: it is ready in this
    process, or there is time to compile it."""
    if deadline is None or deadline - time.perf_counter() >= COMPILE_BUDGET_S:
        return True
    kernel = sys.modules.get("siftopt.formulations.enumerate_kernel")
    return kernel is not None and bool(kernel.grow_rows.signatures)


def _auto_engine(space: PatternSpace) -> str:
    """The engine ``"auto"`` stands for (see :func:`enumerate_patterns`)."""
    sets = np.power(2.0, np.minimum(space.nbits, space.values.shape[2])).sum()
    return "compiled" if sets > COMPILED_ABOVE else "numpy"


def _grow(space: PatternSpace, pricing: Pricing | None, threshold: np.ndarray | None,
          deadline: float | None = None, cover: bool = True, engine: str = "auto"
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-dominated patterns of the monotone classes as (class, global mask, D): by the
    compiled depth-first search (:mod:`siftopt.formulations.enumerate_kernel`), or with
    ``engine="numpy"`` by the level-wise numpy search below (the reference the compiled
    one is tested against; it alone uses the cover bound)."""
    if engine == "auto":
        engine = _auto_engine(space)
        if engine == "compiled" and not _compiled_in_time(deadline):
            engine = "numpy"
    if engine == "compiled":
        return _grow_compiled(space, pricing, threshold, deadline)
    if engine != "numpy":
        raise ValueError(f"unknown enumeration engine {engine!r} (auto, compiled, numpy)")
    rows_n, k_slots = space.values.shape[0], space.values.shape[2]
    local = space.slots.local[space.mono_classes]

    eps, room = space.eps[space.mono_classes], space.room[space.mono_classes]

    def fit(deg: np.ndarray, row: np.ndarray) -> np.ndarray:  # PatternSpace.fits, by row
        return fits(deg, eps[row], room[row])

    prices = _row_prices(space, pricing, threshold)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    root = _Frontier(np.arange(rows_n), np.zeros(rows_n, np.int64), np.zeros(rows_n, np.int64),
                     local.copy(),
                     None if space.mean_row else np.full((rows_n, k_slots), np.inf),
                     np.full((rows_n, k_slots), -1, dtype=np.int8), np.zeros(rows_n))
    root_d = token_degradation(local)
    root_fits = fit(root_d, root.row)
    emit = root_fits.copy()
    if prices is not None:
        rc = prices.nu * root_d - prices.dual
        emit[emit] = _accept(prices, root.row[emit], rc[emit])
    out.append((root.row[emit], root.mask[emit], root_d[emit]))
    grow = np.ones(rows_n, bool) if space.mean_row else ~root_fits
    stack = [root.take(np.flatnonzero(grow))]
    total = 0
    limits = space.options
    while stack:
        if deadline is not None and time.perf_counter() > deadline:
            raise PricingTimeout("pricing stopped at the deadline")
        front = stack.pop()
        if not len(front):
            continue
        count = _extension_count(space, front, fit, prices, cover)
        if int(count.sum()) > limits.batch and len(front) > 1:
            half = len(front) // 2
            stack += [front.take(slice(0, half)), front.take(slice(half, None))]
            continue
        grown = _extend(space, front, count, fit, prices)
        if grown is None:
            continue
        children, emitted = grown
        out.append(emitted)
        total += emitted[0].size
        if total > limits.max_patterns:
            raise PatternLimitError(f"more than {limits.max_patterns} patterns")
        stack.append(children)
    row = np.concatenate([o[0] for o in out])
    local_mask = np.concatenate([o[1] for o in out])
    deg = np.concatenate([o[2] for o in out])
    if prices is not None and pricing.tighten:
        threshold[space.mono_classes] = prices.threshold
    return space.mono_classes[row], _rows_to_global(space, row, local_mask), deg


def _grow_compiled(space: PatternSpace, pricing: Pricing | None,
                   threshold: np.ndarray | None, deadline: float | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_grow` by the compiled search, :data:`KERNEL_ROWS` rows per call."""
    from siftopt.formulations.enumerate_kernel import OVER_LIMIT, grow_rows, rows_to_global

    rows_n = space.values.shape[0]
    prices = _row_prices(space, pricing, threshold)
    const = _row_constants(space)
    if prices is None:
        priced = (False, np.zeros((1, 1)), np.zeros((1, 1)), 0.0, np.zeros(1), np.zeros(1),
                  False)
    else:
        priced = (True, np.ascontiguousarray(prices.bit_price, dtype=float),
                  np.ascontiguousarray(prices.neg_suffix, dtype=float), prices.nu,
                  np.ascontiguousarray(prices.dual, dtype=float),
                  np.ascontiguousarray(prices.threshold, dtype=float), bool(prices.tighten))
    values, suffix, local, eps, room = (const.values, const.suffix, const.local, const.eps,
                                        const.room)
    nbits = const.nbits
    limit = space.options.max_patterns
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    for lo in range(0, rows_n, KERNEL_ROWS):
        if deadline is not None and time.perf_counter() > deadline:
            raise PricingTimeout("pricing stopped at the deadline")
        row, mask, deg, status = grow_rows(
            lo, min(lo + KERNEL_ROWS, rows_n), values, suffix, local, nbits, eps, room,
            not space.mean_row, priced[0], priced[1], priced[2], priced[3], priced[4],
            priced[5], priced[6], limit - total)
        total += row.size
        if status == OVER_LIMIT or total > limit:
            raise PatternLimitError(f"more than {limit} patterns")
        out.append((row, mask, deg))
    if prices is not None and threshold is not None and prices.tighten:
        threshold[space.mono_classes] = priced[5]
    row = np.concatenate([o[0] for o in out]) if out else np.zeros(0, np.int64)
    local_mask = np.concatenate([o[1] for o in out]) if out else np.zeros(0, np.int64)
    deg = np.concatenate([o[2] for o in out]) if out else np.zeros(0)
    node_of_bit = np.ascontiguousarray(space.node_of_bit, dtype=np.int64)
    return space.mono_classes[row], rows_to_global(row, local_mask, node_of_bit), deg


def _accept(prices: _Prices, row: np.ndarray, rc: np.ndarray) -> np.ndarray:
    """Whether reduced costs pass their rows' thresholds (tightening them first if asked)."""
    if prices.tighten and rc.size:
        np.minimum.at(prices.threshold, row, rc)
    return rc <= prices.threshold[row]


def _extension_count(space: PatternSpace, front: _Frontier, fit: _Fit,
                     prices: _Prices | None, cover: bool = True) -> np.ndarray:
    """Number of bits each frontier set may still be extended by (0 when pruned).

    ``lower_d`` sums, in slot order, per-slot values no larger than any extension's, so it is
    at most every extension's D (floating-point addition is monotone), and a set is pruned
    only when no extension can be kept."""
    lower_d = token_degradation(np.minimum(front.best, space.suffix[front.row, front.nxt]))
    alive = fit(lower_d, front.row)
    if prices is not None:
        bound = (front.price + prices.neg_suffix[front.row, front.nxt]
                 + prices.nu * lower_d - prices.dual[front.row])
        alive &= bound <= prices.threshold[front.row]
        # the cover bound costs about four extensions of a set: only where a finite
        # threshold can prune
        idx = np.flatnonzero(alive & np.isfinite(prices.threshold[front.row]))
        if cover and idx.size:
            alive[idx] = (_cover_bound(space, front.take(idx), prices)
                          <= prices.threshold[front.row[idx]])
    return np.where(alive, np.maximum(space.nbits[front.row] - front.nxt, 0), 0)


def _cover_bound(space: PatternSpace, front: _Frontier, prices: _Prices) -> np.ndarray:
    """A lower bound on the reduced cost of every kept extension ``S ∪ A`` of each frontier
    set S by bits ≥ ``nxt`` (A may be empty), in chunks of ``_CHUNK`` sets.

    Bit j lowers slot k by at most ``drop_jk = max(0, best_k − v_jk)`` (``best``: S's slot
    values), so ``D(S) − D(S ∪ A) = Σ_k max_{j∈A} drop_jk =: drop(A)``. A kept extension has
    ``D(S ∪ A) ≤ cap``, i.e. ``drop(A) ≥ need = D(S) − cap``, and reduced cost
    ``price(S) + μ(A) + ν·(D(S) − drop(A)) − π``. For any ``λ ≥ 0`` (a Lagrange multiplier
    of ``drop(A) ≥ need``) and ``Λ = λ + ν``:

        μ(A) − ν·drop(A) ≥ λ·need + Σ_j min(0, μ_j) − max_A [Λ·drop(A) − μ⁺(A)]

    and splitting each ``μ⁺_j`` over the slots in proportion to ``drop_jk`` (shares summing
    to ``μ⁺_j`` where ``g_j = Σ_k drop_jk > 0``) bounds the maximum by
    ``Σ_k max_j drop_jk·(Λ − μ⁺_j / g_j)⁺``. The bound is taken at a few λ (0 and ratios
    ``μ⁺_j / g_j`` at and after the critical one of the fractional knapsack over the
    ``g_j``, see ``_STEPS``),
    each valid; ``need`` is lowered by a relative ``_MARGIN`` for the rounding of sums.
    """
    n = len(front)
    out = np.empty(n)
    for lo in range(0, n, _CHUNK):
        out[lo: lo + _CHUNK] = _cover_chunk(space, front.take(slice(lo, lo + _CHUNK)), prices)
    return out


#: Frontier sets per chunk of :func:`_cover_bound` (memory about ``R·K·8`` bytes each).
_CHUNK = 4096
#: Multipliers tried by :func:`_cover_bound`: −1 is λ = 0, s ≥ 0 the s-th ratio after the
#: critical one.
_STEPS = (0, 3)


def _cover_chunk(space: PatternSpace, front: _Frontier, prices: _Prices) -> np.ndarray:
    n, r_max = len(front), space.values.shape[1]
    d_now = token_degradation(front.best)
    need = d_now - prices.cap[front.row] - _MARGIN * (1.0 + np.abs(d_now))
    bits = np.arange(r_max)
    usable = ((bits[None, :] >= front.nxt[:, None])
              & (bits[None, :] < space.nbits[front.row, None]))
    drop = np.maximum(front.best[:, None, :] - space.values[front.row], 0.0)  # (n, R, K)
    drop[~usable] = 0.0
    gain = drop.sum(axis=2)
    mu = np.where(usable, prices.bit_price[front.row], 0.0)
    negative = np.minimum(mu, 0.0).sum(axis=1)
    mu_pos = np.maximum(mu, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(gain > 0.0, mu_pos / gain, np.inf)
    # the fractional knapsack's critical ratio: where the gains, by increasing ratio, first
    # cover the need
    order = np.argsort(ratio, axis=1)
    r_sorted = np.take_along_axis(ratio, order, axis=1)
    cum = np.cumsum(np.take_along_axis(gain, order, axis=1), axis=1)
    first = np.minimum((cum < np.maximum(need, 0.0)[:, None]).sum(axis=1), r_max - 1)
    rows = np.arange(n)
    base = front.price + prices.nu * d_now - prices.dual[front.row] + negative
    best = np.full(n, -np.inf)
    for step in _STEPS:
        if step < 0:
            lam = np.zeros(n)
        else:
            lam = r_sorted[rows, np.minimum(first + step, r_max - 1)]
            lam = np.where(np.isfinite(lam) & (need > 0.0), lam, 0.0)
        big = lam + prices.nu
        term = (drop * np.maximum(big[:, None] - ratio, 0.0)[:, :, None]).max(axis=1)
        best = np.maximum(best, base + lam * need - term.sum(axis=1))
    return best


def _extend(space: PatternSpace, front: _Frontier, count: np.ndarray, fit: _Fit,
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
    deg = token_degradation(best)
    feasible = fit(deg, row)
    emit = feasible.copy()
    if second is not None and feasible.any():
        emit[feasible] = _no_kept_subset(best[feasible], second[feasible], owner[feasible],
                                         mask[feasible], row[feasible], fit)
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


def _no_kept_subset(best: np.ndarray, second: np.ndarray, owner: np.ndarray,
                    mask: np.ndarray, row: np.ndarray, fit: _Fit) -> np.ndarray:
    """For kept non-dominated sets (token mode): whether no one-node-smaller subset is kept.

    ``D(C \\ {m})`` sums over slots the second best where m owns the slot, else the best —
    the same per-slot values and summation the enumeration uses for that subset. A kept
    proper subset exists iff a kept one-node-smaller one does (more nodes never raise D).
    """
    ok = np.ones(best.shape[0], dtype=bool)
    top = int(np.max(owner, initial=-1))
    for j in range(top + 1):
        has = ((mask >> j) & 1).astype(bool)
        if not has.any():
            continue
        sub = token_degradation(np.where(owner[has] == j, second[has], best[has]))
        ok[has] &= ~fit(sub, row[has])
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


__all__ = ["COMPILED_ABOVE", "COMPILE_BUDGET_S", "PricingTimeout", "cheapest_patterns",
           "engine_for", "enumerate_patterns"]
