"""The Lagrangian dual of prefill (P) over a pattern pool (docs/policies.md §6).

Relaxing the node loads ``n_m = Σ_t u[t,m]`` with prices ``p_m ≥ 0`` and a binding mean budget
``Σ_t D_t ≤ R`` with a multiplier ``ν ≥ 0`` (``R`` = :meth:`~siftopt.model.budgets.Budgets.
mean_row_upper`, a relaxation of the rule) separates (P) into one term per node and one per
token class::

    g(p, ν) = Σ_m h_m(p_m) + Σ_g c_g·φ_g(p, ν) − ν·R,
    h_m(p)  = min_{0 ≤ n ≤ n̂_m} [E_m(n) − p·n],
    φ_g     = min over the kept patterns C of class g of [Σ_{m∈C} p_m + ν·D_g(C)].

Every ``g(p, ν)`` with ``p, ν ≥ 0`` is a lower bound on the optimum of (P) (Lemma 6.1).
``h_m`` is computed on the segments of the table's lower convex envelope (the same minimum,
so no convexity is assumed; :class:`NodeTerms`). Here ``φ_g`` is taken over a **pool** of
patterns (:class:`PoolDual`), an *upper* bound on the true ``φ_g``; only an exact pricing of
every class (:mod:`siftopt.policies.prefill_pool`) turns a point into a certified bound.

For the Newton solver (:mod:`siftopt.policies.prefill_newton`) each minimum is also smoothed:
a class's minimum over its patterns by its soft minimum ``−τ log Σ e^{−cost/τ}`` (at most
``τ·log(#patterns)`` lower), a node segment's minimum over its loads by the soft minimum of a
truncated geometric sum (at most ``τ·log(ℓ+1)`` lower). The smoothed function is concave and
smooth; its gradient and Hessian are the mean and covariance of the softmax weights, which
are also a fractional primal solution.

Two engines compute the same numbers (to float rounding): numpy (the ``*_numpy`` methods) and
numba kernels (:mod:`siftopt.policies.prefill_kernels`, the ``*_compiled`` methods). Loading
numba costs about 0.6 s per process, so a pool takes the compiled path only past
:data:`COMPILED_ABOVE` entries (``PoolDual.engine``, ``"auto"`` by default); the kernels'
module, and numba, are imported only then.

Units: energies in the energy unit of :meth:`~siftopt.model.problem.ProblemData.
energy_scale_j` (J per unit), prices per token of load, ``ν`` per unit of degradation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from siftopt.formulations.space import mask_incidence
from siftopt.model.physics import lower_hull as physics_lower_hull

#: Softmax weights below ``exp(−CUTOFF)`` count as zero (they are below 1e-17), and node
#: segments farther than ``CUTOFF·τ`` from the price are taken exactly.
CUTOFF = 40.0
#: Consecutive sorted increments of a convex table this close (relatively) form one segment.
MERGE_RTOL = 1e-12
#: ``PoolDual.engine="auto"`` runs the numba kernels when the pool has more than this many
#: entries (patterns × dimension, scaled to the batch: ``PoolDual.size``), numpy otherwise.
#: Measured (process_time, best of 3, one core; scale.make instances L 16..4096, M 4/8/16,
#: and siftopt.generate mixtral/deepseek/qwen3 at 16..256 tokens): loading numba and the
#: cached kernels costs 0.52 s per process; per run (warm) numpy/compiled is 0.005/0.003 s
#: (generate, 16 tokens, pools of 124-208 entries), 0.05/0.03 s (generate qwen3, 256 tokens,
#: 6.1k), 0.28/0.13 s (L16 M16 adaptive, 1.9k), 0.36/0.23 s (L1024 M16 adaptive, 65k),
#: 1.77/0.93 s (L4096 M16 adaptive, 243k). So numpy below 10k entries (every generated
#: instance up to 256 tokens, L ≤ 64 at M = 16: at most 0.15 s lost, well under the load);
#: above, mostly runs whose pricing loads numba anyway (enumeration past its own threshold:
#: L ≥ 128 at M = 8 or 16), where the compiled path is free and 1.2-2x faster. The
#: exceptions, full pools of 10-65k entries at L 256-1024 M 4 or L 16-64 M 8, pay the load
#: in a fresh process for 0.01-0.02 s.
COMPILED_ABOVE = 10_000
#: The engines a :class:`PoolDual` accepts.
ENGINES = ("auto", "compiled", "numpy")
#: ``np.bitwise_count`` (numpy ≥ 2.0), else None (nonzeros are then counted in the table).
_BITWISE_COUNT = getattr(np, "bitwise_count", None)


def lower_hull(energy: np.ndarray) -> np.ndarray:
    """Loads of the vertices of the lower convex envelope of ``(n, energy[n])``, n = 0..cap
    (the monotone-chain algorithm; the first vertex is 0, the last the cap)."""
    return np.array(physics_lower_hull(energy), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class NodeTerms:
    """The node terms ``h_m(p) = min_{0≤n≤n̂_m} E_m(n) − p·n`` of the remote nodes m = 1..M.

    With the segments of the lower convex envelope of ``E_m`` (slopes ``s`` increasing,
    lengths ``ℓ`` in tokens), ``h_m(p) = −Σ_seg ℓ·max(0, p − s)``: a token of load is worth
    taking at price p exactly while the envelope's increment is below p. Smoothing replaces
    ``max(0, x)`` by ``τ·log(1 + e^{x/τ})`` (at most ``τ·log 2`` more per segment, and only
    for segments within ``CUTOFF·τ`` of p; farther ones are exact). Segments of all nodes
    are concatenated (``seg_start`` offsets), with prefix sums of ``ℓ`` and ``ℓ·s``.
    ``tables[m−1]`` keeps ``E_m(0..n̂_m)`` (energy units) for the primal recovery.
    """

    tables: tuple[np.ndarray, ...]
    slope: np.ndarray  # (S,) envelope slopes, increasing within a node
    length: np.ndarray  # (S,) tokens per segment (float: a sample scales them)
    seg_start: np.ndarray  # (M + 1,)
    weight: float = 1.0  # share of the batch these terms stand for (a sample: < 1)
    cum_len: np.ndarray = field(init=False)  # (S + M,) per node: 0, ℓ1, ℓ1+ℓ2, ...
    cum_len_slope: np.ndarray = field(init=False)
    padded: np.ndarray = field(init=False)  # (M, most segments) slopes, +inf padded

    def __post_init__(self) -> None:
        sizes = np.diff(self.seg_start)
        padded = np.full((self.num_nodes, max(int(sizes.max(initial=0)), 1)), np.inf)
        padded[np.arange(padded.shape[1])[None, :] < sizes[:, None]] = self.slope
        object.__setattr__(self, "padded", padded)
        object.__setattr__(self, "cum_len", _node_prefix_sums(self.length, self.seg_start))
        object.__setattr__(self, "cum_len_slope",
                           _node_prefix_sums(self.length * self.slope, self.seg_start))

    @staticmethod
    def from_tables(tables: list[np.ndarray], convex: list[bool] | None = None) -> NodeTerms:
        """From per-node tables ``E_m(0..n̂_m)`` (energy units). A table flagged ``convex``
        is described by its increments, sorted, runs of equal ones merged (the same function
        when it is convex, and a convex minorant below it otherwise, so ``h_m`` stays a lower
        bound either way); any other by the segments of its lower convex envelope."""
        slopes, lengths, sizes = [], [], []
        for m, table in enumerate(tables):
            table = np.asarray(table, dtype=float)
            if convex is not None and convex[m]:
                slope, length = _merged(_sorted(np.diff(table)))
            else:
                v = lower_hull(table)
                slope = np.diff(table[v]) / np.diff(v)
                length = np.diff(v).astype(float)
            slopes.append(slope)
            lengths.append(length)
            sizes.append(slope.size)
        start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return NodeTerms(tables=tuple(np.asarray(t, dtype=float) for t in tables),
                         slope=np.concatenate(slopes) if slopes else np.zeros(0),
                         length=np.concatenate(lengths) if lengths else np.zeros(0),
                         seg_start=start)

    @property
    def num_nodes(self) -> int:
        return len(self.tables)

    @cached_property
    def supply(self) -> tuple[np.ndarray, np.ndarray]:
        """Per node the weighted supply ``weight·Σ ℓ`` below each load: ``cum`` (S + M,)
        (per node 0, then after each segment) and ``at`` (S,), the supply at each segment's
        own slope (ties of equal slopes included), for the coordinate sweeps."""
        cum = _node_prefix_sums(self.length * self.weight, self.seg_start)
        return cum, cum[_run_ends(self.slope, self.seg_start)]

    @property
    def caps(self) -> np.ndarray:
        """``n̂_m`` per node."""
        return np.array([t.size - 1 for t in self.tables], dtype=np.int64)

    def scaled(self, fraction: float) -> NodeTerms:
        """The fluid model of a sample of ``fraction`` of the batch: segment lengths scaled by
        it, so that ``h_S(p) = fraction·h(p)`` and the sample's marginal prices are the
        batch's. The segments, their prefix sums and the padded slopes do not depend on the
        weight and are shared (not recomputed); the weighted supply is computed anew."""
        out = copy.copy(self)
        object.__setattr__(out, "weight", self.weight * fraction)
        out.__dict__.pop("supply", None)  # cached with the old weight
        return out

    def _split(self, p: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
        """Per node the first segment with slope ≥ p − width and the first with slope
        > p + width (global indices)."""
        lo = (self.padded < (p - width)[:, None]).sum(axis=1)
        hi = lo if width == 0.0 else (self.padded <= (p + width)[:, None]).sum(axis=1)
        return self.seg_start[:-1] + lo, self.seg_start[:-1] + hi

    def _below(self, p: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Σ ℓ`` and ``Σ ℓ·s`` over each node's segments before ``lo``."""
        at = lo + np.arange(self.num_nodes)  # cum arrays carry one extra entry per node
        return self.cum_len[at], self.cum_len_slope[at]

    def value(self, p: np.ndarray, compiled: bool = False) -> np.ndarray:
        """``h_m(p_m)`` per node (exact; ``compiled``: by the numba kernel)."""
        return self.smooth_compiled(p, 0.0)[0] if compiled else self.value_numpy(p)

    def smooth(self, p: np.ndarray, tau: float, compiled: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed values, derivatives (minus the soft load) and second derivatives
        (:meth:`smooth_numpy`, or with ``compiled`` :meth:`smooth_compiled`). ``τ = 0``:
        the exact values."""
        return self.smooth_compiled(p, tau) if compiled else self.smooth_numpy(p, tau)

    def smooth_compiled(self, p: np.ndarray, tau: float
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`smooth` by the numba kernel (imports numba)."""
        from siftopt.policies.prefill_kernels import node_smooth

        return node_smooth(self.slope, self.length, self.seg_start, self.cum_len,
                           self.cum_len_slope, float(self.weight),
                           np.ascontiguousarray(p, dtype=float), float(tau), CUTOFF)

    def value_numpy(self, p: np.ndarray) -> np.ndarray:
        """:meth:`value` with numpy."""
        lo, _ = self._split(p, 0.0)
        length, length_slope = self._below(p, lo)
        return -(p * length - length_slope) * self.weight

    def smooth_numpy(self, p: np.ndarray, tau: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`smooth` with numpy (the reference of the kernel)."""
        lo, hi = self._split(p, CUTOFF * tau)
        length, length_slope = self._below(p, lo)
        value = -(p * length - length_slope) * self.weight
        deriv = -length * self.weight
        curv = np.zeros(self.num_nodes)
        count = hi - lo
        if count.sum():
            node = np.repeat(np.arange(self.num_nodes), count)
            idx = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
            idx += np.repeat(lo, count)
            log_sum, mean, var = _truncated_geometric((p[node] - self.slope[idx]) / tau,
                                                      self.length[idx])
            value -= self.weight * np.bincount(node, tau * log_sum, self.num_nodes)
            deriv -= self.weight * np.bincount(node, mean, self.num_nodes)
            curv -= self.weight * np.bincount(node, var, self.num_nodes) / tau
        return value, deriv, curv


def _node_prefix_sums(values: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Per node ``0, v1, v1+v2, …`` over its segments (``seg_start`` offsets), concatenated:
    (S + M,). Each node's sums run left to right, as ``np.cumsum`` of its part (written into
    one buffer, without a concatenation per node)."""
    out = np.zeros(values.size + seg_start.size - 1)
    for m in range(seg_start.size - 1):
        lo, hi = int(seg_start[m]), int(seg_start[m + 1])
        np.cumsum(values[lo:hi], out=out[lo + m + 1: hi + m + 1])
    return out


def _run_ends(slope: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Per segment the index into a :func:`_node_prefix_sums` array just past its run of equal
    slopes: ``seg_start[m] + m + searchsorted(slopes of m, slope, "right")`` (slopes sorted
    within each node)."""
    node = np.repeat(np.arange(seg_start.size - 1), np.diff(seg_start))
    last = np.ones(slope.size, dtype=bool)  # the last segment of its run of equal slopes
    last[:-1] = (slope[1:] != slope[:-1]) | (node[1:] != node[:-1])
    # each segment's run end: the first last-of-run at or after it
    end = np.minimum.accumulate(np.where(last, np.arange(slope.size), slope.size)[::-1])[::-1]
    return end + 1 + node


def _sorted(values: np.ndarray) -> np.ndarray:
    """``np.sort(values)``, without the sort when they are already in order (a convex table's
    increments) and hold no NaN or −0.0 (then every sort returns these very values)."""
    if values.size > 1 and bool(np.all(values[1:] >= values[:-1])) and not bool(
            np.any(np.signbit(values) & (values == 0.0))):
        return values
    return np.sort(values)


def _merged(slopes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unit increments as segments: runs that agree to ``MERGE_RTOL`` become one
    segment with the run's least slope (so ``h`` can only get lower: still a bound)."""
    if slopes.size == 0:
        return slopes, slopes
    scale = np.maximum(np.abs(slopes[1:]), np.abs(slopes[:-1]))
    new_run = np.concatenate([[True], slopes[1:] - slopes[:-1] > MERGE_RTOL * scale])
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.concatenate([starts, [slopes.size]])).astype(float)
    return slopes[starts], lengths


def _truncated_geometric(x: np.ndarray, length: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``k ∈ {0..ℓ}`` with weights ``e^{k·x}``: ``log Σ e^{kx}``, the mean and the
    variance of k (closed forms; the series near ``x = 0``; ``x > 0`` by symmetry)."""
    flip = x > 0
    z = np.where(flip, -x, x)  # ≤ 0
    n1 = length + 1.0
    small = z * n1 > -1e-4
    zs = np.where(small, -1.0, z)
    q = np.exp(zs)
    qn = np.exp(n1 * zs)
    # 1 − q by expm1: ``1.0 − exp(z)`` loses digits as |z| → 0, and var, a difference of
    # two terms of order 1/z², lost all of them (absolute error 4e-4 at |z| ≈ 1e-4)
    rest, rest_n = -np.expm1(zs), -np.expm1(n1 * zs)
    log_sum = np.log(rest_n) - np.log(rest)
    mean = q / rest - n1 * qn / rest_n
    var = q / rest ** 2 - n1 ** 2 * qn / rest_n ** 2
    # series where z·(ℓ+1) ≈ 0: log(ℓ+1) + zℓ/2, mean ℓ/2 + zℓ(ℓ+2)/12, var ℓ(ℓ+2)/12
    ser = length * (length + 2.0) / 12.0
    log_sum = np.where(small, np.log(n1) + z * length / 2.0, log_sum)
    mean = np.where(small, length / 2.0 + z * ser, mean)
    var = np.where(small, ser, np.maximum(var, 0.0))
    log_sum = np.where(flip, log_sum - z * length, log_sum)  # Σ e^{kx} = e^{ℓx} Σ e^{−kx}
    mean = np.where(flip, length - mean, mean)
    return log_sum, mean, var


@dataclass(eq=False)
class PoolDual:
    """``g`` restricted to a pool: ``columns[j] = (inc_j, D_j)`` (``D`` only with a mean row),
    ``cls[j]`` its class (sorted), ``start`` the CSR offsets of the classes, ``counts`` the
    class sizes, ``mean_rhs`` the ``R`` of a binding mean budget (None: no ν). ``fixed`` is
    the summed column ``Σ c_g·a_g`` of classes held at one pattern (their term is linear).
    ``engine``: ``"numpy"``, ``"compiled"`` (numba kernels) or ``"auto"`` (compiled past
    :data:`COMPILED_ABOVE` pool entries; see :attr:`compiled`)."""

    nodes: NodeTerms
    counts: np.ndarray  # (G,)
    mean_rhs: float | None
    columns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (P, d)
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    start: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    fixed: np.ndarray | None = None  # (d,)
    engine: str = "auto"

    @property
    def compiled(self) -> bool:
        """Whether :meth:`smooth`, :meth:`value` and the coordinate sweeps run the numba
        kernels (:mod:`siftopt.policies.prefill_kernels`) for the current pool."""
        if self.engine == "auto":
            return self.size > COMPILED_ABOVE
        if self.engine not in ENGINES:
            raise ValueError(f"unknown pool dual engine {self.engine!r} (auto, compiled, numpy)")
        return self.engine == "compiled"

    @property
    def size(self) -> float:
        """The pool's entries (patterns × :attr:`dim`) per share of the batch: a sample's pool
        is scaled to its batch, so that a run's sample and batch take the same path."""
        return self.columns.size / self.nodes.weight

    @property
    def dim(self) -> int:
        """``M`` prices, plus ν when there is a mean row."""
        return self.nodes.num_nodes + (self.mean_rhs is not None)

    _node_rows: list | None = field(default=None, init=False, repr=False)
    _sweep: tuple | None = field(default=None, init=False, repr=False)
    _node_patterns: tuple | None = field(default=None, init=False, repr=False)
    _mask: np.ndarray | None = field(default=None, init=False, repr=False)
    _nptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64), init=False,
                              repr=False)
    _nidx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), init=False,
                              repr=False)
    _deg: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)
    _start: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64), init=False,
                               repr=False)

    def set_pool(self, cls: np.ndarray, inc: np.ndarray, deg: np.ndarray, start: np.ndarray,
                 mask: np.ndarray | None = None) -> None:
        """Use the pool ``(cls, inc, D)`` (sorted by class, CSR offsets ``start``).
        ``mask``: the patterns' node sets as uint64 words (bit j: column j of ``inc``), if
        the caller has them (they count the nonzeros and give the sweeps' class node sets
        without passes over the ``P × M`` table)."""
        self.cls, self.start = cls, start
        self.columns = (np.concatenate([inc, deg[:, None]], axis=1)
                        if self.mean_rhs is not None else inc)
        self._node_rows = self._sweep = self._node_patterns = None
        on = np.asarray(inc) > 0
        self._mask = None if mask is None else np.asarray(mask, dtype=np.uint64)
        count = (_BITWISE_COUNT(self._mask) if self._mask is not None and _BITWISE_COUNT
                 else on.sum(axis=1))
        self._nptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
        # the column of each nonzero, row by row (a flat nonzero: 2-d np.nonzero is ~8x slower)
        self._nidx = (np.flatnonzero(on) % max(on.shape[1], 1)).astype(np.int64)
        self._deg = (np.ascontiguousarray(deg, dtype=float) if self.mean_rhs is not None
                     else np.zeros(0))
        self._start = np.ascontiguousarray(start, dtype=np.int64)

    def sweep_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the compiled sweeps (kept while the pool is): ``uses[m, j]`` (pattern j uses
        node m; node-major, as the sweep reads a node's patterns class by class) and per node
        the classes with such a pattern (CSR ``ptr``, ``cls``)."""
        if self._sweep is None:
            m = self.nodes.num_nodes
            on = self.columns[:, :m] > 0
            uses = np.ascontiguousarray(on.T)
            every_class = self.start.size > 1 and bool(np.all(np.diff(self.start) > 0))
            if every_class and self._mask is not None:
                # each class's node set: an OR of its patterns' words
                words = np.bitwise_or.reduceat(self._mask, self.start[:-1])
                has = mask_incidence(words, m).T  # (M, G)
            elif every_class:
                # an OR per class run (a cumsum over the P × M table was 7x slower)
                has = np.logical_or.reduceat(on, self.start[:-1], axis=0).T
            else:
                cum = np.concatenate([np.zeros((1, m), np.int64), np.cumsum(on, axis=0)])
                has = (cum[self.start[1:]] - cum[self.start[:-1]]).T > 0
            rows, cols = np.divmod(np.flatnonzero(has), max(has.shape[1], 1))
            ptr = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
            self._sweep = (uses, ptr, cols.astype(np.int64))
        return self._sweep

    def node_patterns(self) -> tuple[np.ndarray, np.ndarray]:
        """For the compiled sweeps (kept while the pool is): per node m the patterns through
        it, in increasing order (CSR ``ptr``, ``idx``), whose costs move with ``p_m``."""
        if self._node_patterns is None:
            uses = self.sweep_arrays()[0]
            node, pattern = np.divmod(np.flatnonzero(uses), max(uses.shape[1], 1))
            ptr = np.searchsorted(node, np.arange(uses.shape[0] + 1)).astype(np.int64)
            self._node_patterns = (ptr, pattern.astype(np.int64))
        return self._node_patterns

    def node_rows(self) -> list[tuple[np.ndarray, ...]]:
        """Per node m (kept while the pool is): ``(uses, first_u, cls_u, avoids, first_a,
        cls_a, weight_u)`` — the patterns through m and the others, each with the offsets
        and classes of its class runs — and the counts of the classes in ``cls_u``."""
        if self._node_rows is None:
            rows = []
            for m in range(self.nodes.num_nodes):
                on = self.columns[:, m] > 0
                parts: list[np.ndarray] = []
                for sel in (np.flatnonzero(on), np.flatnonzero(~on)):
                    c = self.cls[sel]
                    first = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if c.size else \
                        np.zeros(0, np.int64)
                    parts += [sel, first, c[first]]
                rows.append((*parts, self.counts[parts[2]]))
            self._node_rows = rows
        return self._node_rows

    def pattern_costs(self, y: np.ndarray) -> np.ndarray:
        """``Σ_{m∈C} p_m + ν·D`` of every pool pattern."""
        return self.columns @ y

    def class_minima(self, y: np.ndarray) -> np.ndarray:
        """``φ_g`` over the pool, per class."""
        return np.minimum.reduceat(self.pattern_costs(y), self.start[:-1])

    def value(self, y: np.ndarray, phi: np.ndarray | None = None) -> float:
        """``g(y)`` with the class minima ``phi`` (default: over the pool)."""
        y = np.ascontiguousarray(y, dtype=float)
        m = self.nodes.num_nodes
        compiled = self.compiled
        if phi is not None:
            classes = float(self.counts @ phi)
        elif compiled:
            from siftopt.policies.prefill_kernels import pool_smooth

            classes = pool_smooth(self._start, self._nptr, self._nidx, self._deg, self.counts,
                                  y, 0.0, False, CUTOFF)[0]
        else:
            classes = float(self.counts @ self.class_minima(y))
        total = float(self.nodes.value(y[:m], compiled).sum()) + classes
        if self.fixed is not None:
            total += float(self.fixed @ y)
        if self.mean_rhs is not None:
            total -= float(y[m]) * self.mean_rhs
        return total

    def weights(self, y: np.ndarray, tau: float) -> np.ndarray:
        """Softmax weights of the pool patterns within their class at temperature τ."""
        v = self.pattern_costs(y)
        low = np.minimum.reduceat(v, self.start[:-1])
        z = (v - low[self.cls]) / tau
        w = np.where(z < CUTOFF, np.exp(-np.minimum(z, CUTOFF)), 0.0)
        return w / np.add.reduceat(w, self.start[:-1])[self.cls]

    def smooth(self, y: np.ndarray, tau: float, hessian: bool = True
               ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Smoothed value, gradient and (optionally) Hessian at ``y``: :meth:`smooth_compiled`
        or :meth:`smooth_numpy` (see :attr:`compiled`)."""
        if self.compiled:
            return self.smooth_compiled(y, tau, hessian)
        return self.smooth_numpy(y, tau, hessian)

    def smooth_compiled(self, y: np.ndarray, tau: float, hessian: bool = True
                        ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """:meth:`smooth` by the numba kernels (imports numba): the class and node terms in
        one call (:func:`~siftopt.policies.prefill_kernels.dual_smooth`)."""
        from siftopt.policies.prefill_kernels import dual_smooth

        y = np.ascontiguousarray(y, dtype=float)
        nodes = self.nodes
        value, grad, hess, h_val = dual_smooth(
            self._start, self._nptr, self._nidx, self._deg, self.counts, y, float(tau),
            hessian, CUTOFF, nodes.slope, nodes.length, nodes.seg_start, nodes.cum_len,
            nodes.cum_len_slope, float(nodes.weight))
        value += float(h_val.sum())
        return self._with_fixed_terms(y, value, grad, hess if hessian else None)

    def smooth_numpy(self, y: np.ndarray, tau: float, hessian: bool = True
                     ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """:meth:`smooth` with numpy (the reference of the kernels)."""
        v = self.pattern_costs(y)
        first = self.start[:-1]
        low = np.minimum.reduceat(v, first)
        z = (v - low[self.cls]) / tau
        w = np.exp(-np.minimum(z, CUTOFF))
        w[z >= CUTOFF] = 0.0
        total = np.add.reduceat(w, first)
        pi = w / total[self.cls]
        value = float(self.counts @ (low - tau * np.log(total)))
        weight = pi * self.counts[self.cls]
        grad = weight @ self.columns
        hess = None
        if hessian:
            hess = np.zeros((self.dim, self.dim))
            live = np.add.reduceat((w > 0).astype(np.int64), first)
            multi = np.flatnonzero(live[self.cls] > 1)
            if multi.size:
                sub = self.columns[multi]
                hess -= (sub * weight[multi, None]).T @ sub
                cls = self.cls[multi]
                edges = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
                mean = np.add.reduceat(sub * pi[multi, None], edges, axis=0)
                hess += (mean * self.counts[cls[edges], None]).T @ mean
                hess /= tau
        node_terms = self.nodes.smooth_numpy(y[: self.nodes.num_nodes], tau)
        return self._with_other_terms(y, value, grad, hess, node_terms)

    def _with_other_terms(self, y: np.ndarray, value: float, grad: np.ndarray,
                          hess: np.ndarray | None,
                          node_terms: tuple[np.ndarray, np.ndarray, np.ndarray]
                          ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """The classes' smoothed terms plus the node terms (smoothed values, derivatives,
        curvatures), the fixed column and ``−ν·R``."""
        m = self.nodes.num_nodes
        h_val, h_grad, h_curv = node_terms
        value += float(h_val.sum())
        grad[:m] += h_grad
        if hess is not None:
            hess[np.arange(m), np.arange(m)] += h_curv
        return self._with_fixed_terms(y, value, grad, hess)

    def _with_fixed_terms(self, y: np.ndarray, value: float, grad: np.ndarray,
                          hess: np.ndarray | None) -> tuple[float, np.ndarray, np.ndarray | None]:
        """The value, gradient and Hessian plus the fixed column and ``−ν·R``."""
        m = self.nodes.num_nodes
        if self.fixed is not None:
            value += float(self.fixed @ y)
            grad += self.fixed
        if self.mean_rhs is not None:
            value -= float(y[m]) * self.mean_rhs
            grad[m] -= self.mean_rhs
        return value, grad, hess

    def smoothing_gap(self, y: np.ndarray, tau: float, *, value: float | None = None,
                      smoothed: float | None = None) -> float:
        """``g(y) − g_τ(y) ≥ 0``: how much the smoothing lowers the value at ``y``; ``value``
        and ``smoothed``: ``g(y)`` and ``g_τ(y)`` if the caller has them."""
        if value is None:
            value = self.value(y)
        if smoothed is None:
            smoothed = self.smooth(y, tau, hessian=False)[0]
        return max(value - smoothed, 0.0)


__all__ = ["COMPILED_ABOVE", "CUTOFF", "ENGINES", "MERGE_RTOL", "NodeTerms", "PoolDual",
           "lower_hull"]
