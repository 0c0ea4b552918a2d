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

Units: energies in the energy unit of :meth:`~siftopt.model.problem.ProblemData.
energy_scale_j` (J per unit), prices per token of load, ``ν`` per unit of degradation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from numba import njit

from siftopt.model.physics import lower_hull as physics_lower_hull

#: Softmax weights below ``exp(−CUTOFF)`` count as zero (they are below 1e-17), and node
#: segments farther than ``CUTOFF·τ`` from the price are taken exactly.
CUTOFF = 40.0
#: Consecutive sorted increments of a convex table this close (relatively) form one segment.
MERGE_RTOL = 1e-12


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
        for m in range(self.num_nodes):
            padded[m, : sizes[m]] = self.slope[self.seg_start[m]: self.seg_start[m + 1]]
        object.__setattr__(self, "padded", padded)
        cl, cs = [], []
        for m in range(self.num_nodes):
            part = slice(int(self.seg_start[m]), int(self.seg_start[m + 1]))
            cl.append(np.concatenate([[0.0], np.cumsum(self.length[part])]))
            cs.append(np.concatenate([[0.0], np.cumsum(self.length[part] * self.slope[part])]))
        object.__setattr__(self, "cum_len", np.concatenate(cl) if cl else np.zeros(0))
        object.__setattr__(self, "cum_len_slope", np.concatenate(cs) if cs else np.zeros(0))

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
                slope, length = _merged(np.sort(np.diff(table)))
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
        cum, at = [], []
        for m in range(self.num_nodes):
            part = slice(int(self.seg_start[m]), int(self.seg_start[m + 1]))
            c = np.concatenate([[0.0], np.cumsum(self.length[part] * self.weight)])
            cum.append(c)
            at.append(c[np.searchsorted(self.slope[part], self.slope[part], side="right")])
        return (np.concatenate(cum) if cum else np.zeros(0),
                np.concatenate(at) if at else np.zeros(0))

    @property
    def caps(self) -> np.ndarray:
        """``n̂_m`` per node."""
        return np.array([t.size - 1 for t in self.tables], dtype=np.int64)

    def scaled(self, fraction: float) -> NodeTerms:
        """The fluid model of a sample of ``fraction`` of the batch: segment lengths scaled by
        it, so that ``h_S(p) = fraction·h(p)`` and the sample's marginal prices are the
        batch's."""
        return NodeTerms(tables=self.tables, slope=self.slope, length=self.length,
                         seg_start=self.seg_start, weight=self.weight * fraction)

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

    def value(self, p: np.ndarray) -> np.ndarray:
        """``h_m(p_m)`` per node (exact)."""
        return self.smooth(p, 0.0)[0]

    def smooth(self, p: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed values, derivatives (minus the soft load) and second derivatives
        (compiled; :meth:`smooth_numpy` is the reference). ``τ = 0``: the exact values."""
        return _node_smooth(self.slope, self.length, self.seg_start, self.cum_len,
                            self.cum_len_slope, float(self.weight),
                            np.ascontiguousarray(p, dtype=float), float(tau), CUTOFF)

    def value_numpy(self, p: np.ndarray) -> np.ndarray:
        """:meth:`value` with numpy (the reference)."""
        lo, _ = self._split(p, 0.0)
        length, length_slope = self._below(p, lo)
        return -(p * length - length_slope) * self.weight

    def smooth_numpy(self, p: np.ndarray, tau: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`smooth` with numpy (the reference)."""
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
    log_sum = np.log1p(-qn) - np.log1p(-q)
    mean = q / (1.0 - q) - n1 * qn / (1.0 - qn)
    var = q / (1.0 - q) ** 2 - n1 ** 2 * qn / (1.0 - qn) ** 2
    # series where z·(ℓ+1) ≈ 0: log(ℓ+1) + zℓ/2, mean ℓ/2 + zℓ(ℓ+2)/12, var ℓ(ℓ+2)/12
    ser = length * (length + 2.0) / 12.0
    log_sum = np.where(small, np.log(n1) + z * length / 2.0, log_sum)
    mean = np.where(small, length / 2.0 + z * ser, mean)
    var = np.where(small, ser, np.maximum(var, 0.0))
    log_sum = np.where(flip, log_sum - z * length, log_sum)  # Σ e^{kx} = e^{ℓx} Σ e^{−kx}
    mean = np.where(flip, length - mean, mean)
    return log_sum, mean, var


@njit(cache=True)
def _geometric_one(x: float, length: float) -> tuple[float, float, float]:
    """:func:`_truncated_geometric` of one segment."""
    flip = x > 0
    z = -x if flip else x
    n1 = length + 1.0
    if z * n1 > -1e-4:
        ser = length * (length + 2.0) / 12.0
        log_sum = np.log(n1) + z * length / 2.0
        mean = length / 2.0 + z * ser
        var = ser
    else:
        q = np.exp(z)
        qn = np.exp(n1 * z)
        log_sum = np.log1p(-qn) - np.log1p(-q)
        mean = q / (1.0 - q) - n1 * qn / (1.0 - qn)
        var = max(q / (1.0 - q) ** 2 - n1 ** 2 * qn / (1.0 - qn) ** 2, 0.0)
    if flip:
        log_sum = log_sum - z * length
        mean = length - mean
    return log_sum, mean, var


@njit(cache=True)
def _node_smooth(slope: np.ndarray, length: np.ndarray, seg_start: np.ndarray,
                 cum_len: np.ndarray, cum_len_slope: np.ndarray, weight: float, p: np.ndarray,
                 tau: float, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`NodeTerms.smooth` (``τ = 0``: exact values, zero curvature)."""
    num = seg_start.size - 1
    value = np.empty(num)
    deriv = np.empty(num)
    curv = np.zeros(num)
    width = cutoff * tau
    for m in range(num):
        s0, s1 = seg_start[m], seg_start[m + 1]
        lo = s0 + np.searchsorted(slope[s0:s1], p[m] - width, side="left")
        hi = lo if width == 0.0 else s0 + np.searchsorted(slope[s0:s1], p[m] + width,
                                                          side="right")
        below, below_slope = cum_len[lo + m], cum_len_slope[lo + m]
        log_sum = mean = var = 0.0
        for i in range(lo, hi):
            a, b, c = _geometric_one((p[m] - slope[i]) / tau, length[i])
            log_sum += tau * a
            mean += b
            var += c
        value[m] = -(p[m] * below - below_slope) * weight - weight * log_sum
        deriv[m] = -below * weight - weight * mean
        if hi > lo:
            curv[m] = -weight * var / tau
    return value, deriv, curv


@njit(cache=True)
def _pool_smooth(start: np.ndarray, nptr: np.ndarray, nidx: np.ndarray, deg: np.ndarray,
                 counts: np.ndarray, y: np.ndarray, tau: float, hessian: bool,
                 cutoff: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The class terms of :meth:`PoolDual.smooth`: ``Σ_g c_g·(soft minimum)``, its gradient
    and Hessian (``τ = 0``: the exact ``Σ c_g·φ_g``, no derivatives). Pattern j uses the
    nodes ``nidx[nptr[j]:nptr[j+1]]`` (0-based); ``deg[j]`` is its degradation when there is
    a ν (the last entry of ``y``; ``deg`` empty: none)."""
    dim = y.size
    has_nu = deg.size > 0
    m = dim - 1
    num_pat = nptr.size - 1
    cost = np.empty(num_pat)
    for j in range(num_pat):
        total = 0.0
        for k in range(nptr[j], nptr[j + 1]):
            total += y[nidx[k]]
        if has_nu:
            total += y[m] * deg[j]
        cost[j] = total
    grad = np.zeros(dim)
    hess = np.zeros((dim, dim))
    mu = np.zeros(dim)
    touched = np.empty(dim, np.int64)
    value = 0.0
    w = np.empty(num_pat)
    for g in range(start.size - 1):
        a, b = start[g], start[g + 1]
        low = np.inf
        for j in range(a, b):
            low = min(low, cost[j])
        c = counts[g]
        if tau == 0.0:
            value += c * low
            continue
        total = 0.0
        live = 0
        for j in range(a, b):
            z = (cost[j] - low) / tau
            if z < cutoff:
                w[j] = np.exp(-z)
                live += 1
            else:
                w[j] = 0.0
            total += w[j]
        value += c * (low - tau * np.log(total))
        second = hessian and live > 1  # a single live pattern: no curvature
        nt = 0
        for j in range(a, b):
            if w[j] == 0.0:
                continue
            pi = w[j] / total
            cw = c * pi
            dj = deg[j] if has_nu else 0.0
            for k in range(nptr[j], nptr[j + 1]):
                grad[nidx[k]] += cw
            if has_nu:
                grad[m] += cw * dj
            if not second:
                continue
            for k in range(nptr[j], nptr[j + 1]):  # −c·π·a aᵀ, and μ = Σ π·a
                u = nidx[k]
                if mu[u] == 0.0:
                    touched[nt] = u
                    nt += 1
                mu[u] += pi
                for k2 in range(nptr[j], nptr[j + 1]):
                    hess[u, nidx[k2]] -= cw
                if has_nu:
                    hess[u, m] -= cw * dj
                    hess[m, u] -= cw * dj
            if has_nu and dj != 0.0:
                if mu[m] == 0.0:
                    touched[nt] = m
                    nt += 1
                mu[m] += pi * dj
                hess[m, m] -= cw * dj * dj
        for i in range(nt):  # + c·μ μᵀ
            u = touched[i]
            for i2 in range(nt):
                hess[u, touched[i2]] += c * mu[u] * mu[touched[i2]]
        for i in range(nt):
            mu[touched[i]] = 0.0
    if hessian:
        for u in range(dim):
            for v in range(dim):
                hess[u, v] /= tau
    return value, grad, hess


@dataclass(eq=False)
class PoolDual:
    """``g`` restricted to a pool: ``columns[j] = (inc_j, D_j)`` (``D`` only with a mean row),
    ``cls[j]`` its class (sorted), ``start`` the CSR offsets of the classes, ``counts`` the
    class sizes, ``mean_rhs`` the ``R`` of a binding mean budget (None: no ν). ``fixed`` is
    the summed column ``Σ c_g·a_g`` of classes held at one pattern (their term is linear)."""

    nodes: NodeTerms
    counts: np.ndarray  # (G,)
    mean_rhs: float | None
    columns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (P, d)
    cls: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    start: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    fixed: np.ndarray | None = None  # (d,)

    @property
    def dim(self) -> int:
        """``M`` prices, plus ν when there is a mean row."""
        return self.nodes.num_nodes + (self.mean_rhs is not None)

    _node_rows: list | None = field(default=None, init=False, repr=False)
    _sweep: tuple | None = field(default=None, init=False, repr=False)
    _nptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64), init=False,
                              repr=False)
    _nidx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), init=False,
                              repr=False)
    _deg: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False, repr=False)
    _start: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64), init=False,
                               repr=False)

    def set_pool(self, cls: np.ndarray, inc: np.ndarray, deg: np.ndarray, start: np.ndarray
                 ) -> None:
        """Use the pool ``(cls, inc, D)`` (sorted by class, CSR offsets ``start``)."""
        self.cls, self.start = cls, start
        self.columns = (np.concatenate([inc, deg[:, None]], axis=1)
                        if self.mean_rhs is not None else inc)
        self._node_rows = self._sweep = None
        on = np.asarray(inc) > 0
        self._nptr = np.concatenate([[0], np.cumsum(on.sum(axis=1))]).astype(np.int64)
        self._nidx = np.ascontiguousarray(np.nonzero(on)[1], dtype=np.int64)
        self._deg = (np.ascontiguousarray(deg, dtype=float) if self.mean_rhs is not None
                     else np.zeros(0))
        self._start = np.ascontiguousarray(start, dtype=np.int64)

    def sweep_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the compiled sweeps (kept while the pool is): ``uses[j, m]`` (pattern j uses
        node m) and per node the classes with such a pattern (CSR ``ptr``, ``cls``)."""
        if self._sweep is None:
            m = self.nodes.num_nodes
            uses = np.ascontiguousarray(self.columns[:, :m] > 0)
            cum = np.concatenate([np.zeros((1, m), np.int64), np.cumsum(uses, axis=0)])
            rows, cols = np.nonzero((cum[self.start[1:]] - cum[self.start[:-1]]).T > 0)
            ptr = np.searchsorted(rows, np.arange(m + 1)).astype(np.int64)
            self._sweep = (uses, ptr, cols.astype(np.int64))
        return self._sweep

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
        if phi is None:
            classes = _pool_smooth(self._start, self._nptr, self._nidx, self._deg,
                                   self.counts, y, 0.0, False, CUTOFF)[0]
        else:
            classes = float(self.counts @ phi)
        total = float(self.nodes.value(y[:m]).sum()) + classes
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
        """Smoothed value, gradient and (optionally) Hessian at ``y`` (compiled;
        :meth:`smooth_numpy` is the reference)."""
        y = np.ascontiguousarray(y, dtype=float)
        value, grad, hess = _pool_smooth(self._start, self._nptr, self._nidx, self._deg,
                                         self.counts, y, float(tau), hessian, CUTOFF)
        m = self.nodes.num_nodes
        h_val, h_grad, h_curv = self.nodes.smooth(y[:m], tau)
        value += float(h_val.sum())
        grad[:m] += h_grad
        if hessian:
            hess[np.arange(m), np.arange(m)] += h_curv
        if self.fixed is not None:
            value += float(self.fixed @ y)
            grad += self.fixed
        if self.mean_rhs is not None:
            value -= float(y[m]) * self.mean_rhs
            grad[m] -= self.mean_rhs
        return value, grad, (hess if hessian else None)

    def smooth_numpy(self, y: np.ndarray, tau: float, hessian: bool = True
                     ) -> tuple[float, np.ndarray, np.ndarray | None]:
        """:meth:`smooth` with numpy (the reference)."""
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
        m = self.nodes.num_nodes
        h_val, h_grad, h_curv = self.nodes.smooth_numpy(y[:m], tau)
        value += float(h_val.sum())
        grad[:m] += h_grad
        if hess is not None:
            hess[np.arange(m), np.arange(m)] += h_curv
        if self.fixed is not None:
            value += float(self.fixed @ y)
            grad += self.fixed
        if self.mean_rhs is not None:
            value -= float(y[m]) * self.mean_rhs
            grad[m] -= self.mean_rhs
        return value, grad, hess

    def smoothing_gap(self, y: np.ndarray, tau: float) -> float:
        """``g(y) − g_τ(y) ≥ 0``: how much the smoothing lowers the value at ``y``."""
        return max(self.value(y) - self.smooth(y, tau, hessian=False)[0], 0.0)


__all__ = ["CUTOFF", "MERGE_RTOL", "NodeTerms", "PoolDual", "lower_hull"]
