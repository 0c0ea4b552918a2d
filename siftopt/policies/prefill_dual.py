"""The Lagrangian dual of prefill (P) over a pattern pool, and how ``sift-prefill`` maximises it.

Relaxing the node loads ``n_m = Σ_t u[t,m]`` with prices ``p_m ≥ 0`` and a binding mean budget
``Σ_t D_t ≤ R`` with a multiplier ``ν ≥ 0`` (``R`` = :meth:`~siftopt.model.budgets.Budgets.
mean_row_upper`, a relaxation of the rule) separates (P) into one term per node and one per
token class (docs/policies.md §6)::

    g(p, ν) = Σ_m h_m(p_m) + Σ_g c_g·φ_g(p, ν) − ν·R,
    h_m(p)  = min_{0 ≤ n ≤ n̂_m} [E_m(n) − p·n],
    φ_g     = min over the kept patterns C of class g of [Σ_{m∈C} p_m + ν·D_g(C)].

Every ``g(p, ν)`` with ``p, ν ≥ 0`` is a lower bound on the optimum of (P); ``h_m`` takes the
minimum over the table itself, so it equals the same minimum over the table's lower convex
envelope and no convexity is assumed. The concave function ``g`` is maximised here over a
**pool** of patterns (``φ_g`` restricted to the pool is an *upper* bound on ``φ_g``; only an
exact pricing of every class, :mod:`siftopt.policies.prefill_pool`, turns a point into a
certified bound).

The pool dual is maximised by **entropic smoothing and damped Newton steps**: each ``min`` is
replaced by its soft minimum ``−τ log Σ exp(−·/τ)`` (over the pool patterns of a class, over the
loads ``0..n̂_m`` of a node), which is smooth, concave, below the minimum by at most
``τ·log(#terms)``, and whose gradient and Hessian are the mean and covariance of the softmax
weights; its maximiser over the box ``0 ≤ y ≤ upper`` is found by projected Newton steps with
Levenberg–Marquardt damping (every accepted step raises the smoothed value), and ``τ`` is
lowered by :data:`TAU_FACTOR` until the smoothing error ``τ·Σ log(#terms)`` is below
:data:`DUAL_RTOL` of ``|g|``. The softmax weights of the last ``τ`` are a fractional primal
solution (the pool LP's, up to the smoothing), which the primal recovery rounds.

Units: energies in the energy unit of :meth:`~siftopt.model.problem.ProblemData.
energy_scale_j` (J per unit), prices per token of load, ``ν`` per unit of degradation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Relative accuracy (of ``|g|``) at which the smoothed pool dual stops: smoothing error and
#: Newton decrement both below it.
DUAL_RTOL = 1e-8
#: Factor by which the smoothing temperature drops between Newton stages.
TAU_FACTOR = 0.1
#: Newton iterations per stage (a safeguard; stages usually need 2–6).
STAGE_ITERATIONS = 60
#: A stage (but the last) stops once the Newton decrement is this fraction of its
#: smoothing error.
STAGE_STOP = 0.3
#: Exact coordinate sweeps (prices, then ν) before the first Newton stage, while they raise
#: the smoothed value (one before each later stage).
SWEEPS = 4
#: Softmax weights below ``exp(−CUTOFF)`` count as zero (they are below 1e-17).
CUTOFF = 40.0


def lower_hull(energy: np.ndarray) -> np.ndarray:
    """Loads of the vertices of the lower convex envelope of ``(n, energy[n])``, n = 0..cap
    (the monotone-chain algorithm; the first vertex is 0, the last the cap)."""
    vertices: list[int] = []
    for i in range(energy.size):
        while len(vertices) >= 2:
            a, b = vertices[-2], vertices[-1]
            if (energy[b] - energy[a]) * (i - a) >= (energy[i] - energy[a]) * (b - a):
                vertices.pop()
            else:
                break
        vertices.append(i)
    return np.array(vertices, dtype=np.int64)


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
        is described by its increments, sorted (the same function when it is convex, and a
        convex minorant below it otherwise, so ``h_m`` stays a lower bound either way);
        any other by the segments of its lower convex envelope."""
        slopes, lengths, sizes = [], [], []
        for m, table in enumerate(tables):
            table = np.asarray(table, dtype=float)
            if convex is not None and convex[m]:
                slope = np.sort(np.diff(table))
                length = np.ones(slope.size)
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
        lo, _ = self._split(p, 0.0)
        length, length_slope = self._below(p, lo)
        return -(p * length - length_slope) * self.weight

    def smooth(self, p: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed values, derivatives (minus the soft load) and second derivatives."""
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

    def set_pool(self, cls: np.ndarray, inc: np.ndarray, deg: np.ndarray, start: np.ndarray
                 ) -> None:
        """Use the pool ``(cls, inc, D)`` (sorted by class, CSR offsets ``start``)."""
        self.cls, self.start = cls, start
        self.columns = (np.concatenate([inc, deg[:, None]], axis=1)
                        if self.mean_rhs is not None else inc)

    def pattern_costs(self, y: np.ndarray) -> np.ndarray:
        """``Σ_{m∈C} p_m + ν·D`` of every pool pattern."""
        return self.columns @ y

    def class_minima(self, y: np.ndarray) -> np.ndarray:
        """``φ_g`` over the pool, per class."""
        return np.minimum.reduceat(self.pattern_costs(y), self.start[:-1])

    def value(self, y: np.ndarray, phi: np.ndarray | None = None) -> float:
        """``g(y)`` with the class minima ``phi`` (default: over the pool)."""
        if phi is None:
            phi = self.class_minima(y)
        m = self.nodes.num_nodes
        total = float(self.nodes.value(y[:m]).sum()) + float(self.counts @ phi)
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
        """Smoothed value, gradient and (optionally) Hessian at ``y``."""
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
        h_val, h_grad, h_curv = self.nodes.smooth(y[:m], tau)
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


@dataclass(frozen=True)
class DualSolution:
    """Where the smoothed pool dual stopped: the point, the last τ, Newton iterations."""

    y: np.ndarray
    tau: float
    iterations: int


def coordinate_sweep(dual: PoolDual, y: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """One sweep of exact coordinate ascent over the node prices on the (non-smooth) pool dual.

    Along price ``p_m`` with the other coordinates fixed, class g costs
    ``min(A_g + p_m, B_g)`` (``A_g``: its best pattern through m without p_m, ``B_g``: its
    best pattern avoiding m), so its demand for m is ``c_g`` below ``B_g − A_g`` and 0 above;
    the node supplies ``Σ ℓ`` over its envelope segments with slope below ``p_m``. ``g`` is
    concave along the coordinate with slope demand − supply, and the sweep moves ``p_m`` to
    where that slope changes sign (within ``[0, upper]``). This crosses in one step the long
    stretches where ``g`` is linear, which Newton steps on the smoothed dual would cross one
    kink at a time.
    """
    y = y.copy()
    nodes = dual.nodes
    first = dual.start[:-1]
    weight = nodes.weight
    cost = dual.pattern_costs(y)
    for m in range(nodes.num_nodes):
        uses = dual.columns[:, m] > 0
        fixed = 0.0 if dual.fixed is None else float(dual.fixed[m])
        if not uses.any() and fixed == 0.0:
            continue
        breaks, demand_w = np.zeros(0), np.zeros(0)
        old = float(y[m])
        if uses.any():
            a = np.minimum.reduceat(np.where(uses, cost - y[m], np.inf), first)
            b = np.minimum.reduceat(np.where(uses, np.inf, cost), first)
            live = np.isfinite(a)
            breaks = np.where(np.isfinite(b), b - a, np.inf)[live]
            demand_w = dual.counts[live]
        order = np.argsort(breaks)
        breaks, demand_w = breaks[order], demand_w[order]
        # demand(q) = Σ c over breaks > q; supply(q) = weight·Σ ℓ over slopes < q
        lo, hi = int(nodes.seg_start[m]), int(nodes.seg_start[m + 1])
        slopes, lengths = nodes.slope[lo:hi], nodes.length[lo:hi] * weight
        cand = np.unique(np.concatenate([[0.0], breaks[np.isfinite(breaks)], slopes,
                                         [upper[m]]]))
        cand = cand[(cand >= 0.0) & (cand <= upper[m])]
        tail = np.concatenate([np.cumsum(demand_w[::-1])[::-1], [0.0]])
        demand = tail[np.searchsorted(breaks, cand, side="right")] + fixed  # breaks > q
        cum = np.concatenate([[0.0], np.cumsum(lengths)])
        supply = cum[np.searchsorted(slopes, cand, side="right")]  # slopes ≤ q
        # slope of g just above q is demand(q⁺) − supply(q⁺): the first q where it is ≤ 0
        stop = np.flatnonzero(demand - supply <= 0)
        y[m] = float(cand[stop[0]]) if stop.size else float(upper[m])
        cost = cost + (y[m] - old) * dual.columns[:, m]
    if dual.mean_rhs is not None:
        y[-1] = _best_multiplier(dual, y, float(upper[-1]))
    return y


def _best_multiplier(dual: PoolDual, y: np.ndarray, upper: float) -> float:
    """The maximiser of ``g`` along ν (prices fixed): the least ν at which the classes' total
    degradation ``Σ_g c_g·D_g(ν)`` (each at its cheapest pattern) is within ``R`` — it is
    non-increasing in ν, and ``g``'s slope along ν is that total minus ``R``. Found by
    bisection (geometric, then linear) to a relative ``1e-12``."""
    m = dual.nodes.num_nodes
    base = dual.columns[:, :m] @ y[:m]
    deg = dual.columns[:, m]
    first = dual.start[:-1]

    def total(nu: float) -> float:
        cost = base + nu * deg
        low = np.minimum.reduceat(cost, first)
        at = cost <= low[dual.cls]
        least = np.minimum.reduceat(np.where(at, deg, np.inf), first)  # ties: least D
        return float(dual.counts @ least) + (0.0 if dual.fixed is None else float(dual.fixed[m]))

    rhs = float(dual.mean_rhs)  # type: ignore[arg-type]
    if total(0.0) <= rhs:
        return 0.0
    high = max(float(y[m]), 1e-12)
    while total(high) > rhs and high < upper:
        high = min(high * 4.0, upper)
    if total(high) > rhs:
        return upper
    low = 0.0
    for _ in range(200):
        mid = np.sqrt(low * high) if low > 0 and high / low > 4.0 else 0.5 * (low + high)
        if total(mid) <= rhs:
            high = mid
        else:
            low = mid
        if high - low <= 1e-12 * high:
            break
    return high


def _bounded_step(matrix: np.ndarray, grad: np.ndarray, y: np.ndarray, upper: np.ndarray
                  ) -> np.ndarray:
    """Solve ``matrix·s = grad`` (scaled coordinates), then hold at its bound every
    coordinate the step would carry past one and solve again for the others (at most as many
    times as there are coordinates): the step stays in the box without being cut short."""
    step = np.zeros(grad.size)
    free = np.ones(grad.size, dtype=bool)
    for _ in range(grad.size):
        idx = np.flatnonzero(free)
        rest = np.flatnonzero(~free)
        rhs = grad[idx] - matrix[np.ix_(idx, rest)] @ step[rest]
        step[idx] = np.linalg.solve(matrix[np.ix_(idx, idx)], rhs)
        low = free & (y + step < 0.0)
        high = free & (y + step > upper)
        if not (low.any() or high.any()):
            break
        step[low] = -y[low]
        step[high] = upper[high] - y[high]
        free &= ~(low | high)
        if not free.any():
            break
    return step


def _newton_stage(dual: PoolDual, y: np.ndarray, upper: np.ndarray, tau: float, stop: float,
                  floor: np.ndarray, damping: float) -> tuple[np.ndarray, int, float]:
    """Projected Newton ascent on the smoothed dual at one τ until the Newton decrement is at
    most ``stop``, with Levenberg–Marquardt damping (a trust region).

    On the free coordinates (those the gradient does not hold at a bound) the step solves
    ``(−H + μ·D) s = ∇`` with ``D`` the curvature diagonal floored at ``floor`` (a coordinate
    where the smoothed function is locally linear gets a step the floor allows), coordinates
    the step would carry out of the box held at their bound (:func:`_bounded_step`); it is
    accepted when the smoothed value rises. ``μ`` shrinks after a step that rises as the
    quadratic model predicts and grows after a poor or failed one. Returns the point, the
    iterations and the ``μ`` of the stage's first accepted step (where the next stage starts).
    """
    its = 0
    first_damping = damping
    for its in range(1, STAGE_ITERATIONS + 1):
        value, grad, hess = dual.smooth(y, tau)
        assert hess is not None
        slack = 1e-12 * (1.0 + np.abs(y))
        at_upper = np.isfinite(upper) & (y >= upper - slack)
        free = np.flatnonzero(~(((y <= slack) & (grad < 0)) | (at_upper & (grad > 0))))
        if free.size == 0:
            break
        neg = -hess[np.ix_(free, free)]
        diag = np.maximum(np.diag(neg), floor[free])
        scale = np.sqrt(diag)
        scaled = neg / scale[:, None] / scale[None, :]
        scaled[np.diag_indices_from(scaled)] = np.maximum(np.diag(scaled), 1.0)
        g_scaled = grad[free] / scale
        y_scaled, up_scaled = y[free] * scale, upper[free] * scale
        newton = np.linalg.solve(scaled + 1e-9 * np.eye(free.size), g_scaled)
        if float(g_scaled @ newton) <= stop:
            break
        moved = False
        for _ in range(60):
            step = _bounded_step(scaled + damping * np.eye(free.size), g_scaled, y_scaled,
                                 up_scaled)
            trial = y.copy()
            trial[free] = np.clip(y[free] + step / scale, 0.0, upper[free])
            delta = (trial[free] - y[free]) * scale
            predicted = float(g_scaled @ delta) - 0.5 * float(delta @ scaled @ delta)
            actual = dual.smooth(trial, tau, hessian=False)[0] - value
            if predicted > 0 and actual > 0:
                ratio = actual / predicted
                if not moved and its == 1:
                    first_damping = damping
                damping = damping / 10.0 if ratio > 0.75 else (
                    damping * 4.0 if ratio < 0.25 else damping)
                damping = max(damping, 1e-12)
                y, moved = trial, True
                break
            damping = max(damping * 10.0, 1e-6)
            if damping > 1e12:
                break
        if not moved:
            break
    return y, its, first_damping


def maximise(dual: PoolDual, y0: np.ndarray, upper: np.ndarray, tau0: float,
             rtol: float = DUAL_RTOL, unit: np.ndarray | None = None) -> DualSolution:
    """Maximise the pool dual over ``0 ≤ y ≤ upper`` from ``y0`` (see the module docstring).

    Stages at ``τ0, τ0·TAU_FACTOR, …``; each starts with exact coordinate sweeps
    (:func:`coordinate_sweep`, kept while they raise the smoothed value) and runs Newton
    steps until the decrement is :data:`STAGE_STOP` of ``τ·log 2·Σ_g c_g`` (the smoothing of
    one two-way tie per token: the scale at which the stage's maximiser is defined).
    The run ends after a stage whose point has a smoothing gap within ``rtol`` of ``|g|``
    and a decrement below ``rtol·|g|/100`` (a stationary point of the smoothed function
    where the smoothing barely matters is near a maximiser of ``g``). ``unit``: a typical
    size of each coordinate's column entries (1 for prices, a typical degradation for ν),
    which sets the curvature floor ``1e-6·Σc·unit²/τ``."""
    y = np.clip(np.asarray(y0, dtype=float), 0.0, upper)
    if unit is None:
        unit = np.ones(y.size)
    weight = 1e-6 * float(dual.counts.sum()) * np.asarray(unit, dtype=float) ** 2
    tau = tau0
    total = 0
    damping = 1e-3
    final = False
    sweeps = SWEEPS
    while True:
        current = dual.smooth(y, tau, hessian=False)[0]
        for _ in range(sweeps):
            swept = coordinate_sweep(dual, y, upper)
            value = dual.smooth(swept, tau, hessian=False)[0]
            if value <= current:
                break
            y, current = swept, value
        scale = max(abs(dual.value(y)), 1e-300)
        tight = rtol * scale * 1e-2
        typical = tau * float(np.log(2.0)) * float(dual.counts.sum())
        stop = tight if final else max(STAGE_STOP * typical, tight)
        y, its, damping = _newton_stage(dual, y, upper, tau, stop, weight / tau, damping)
        total += its
        sweeps = 1
        if final or tau < 1e-300:
            return DualSolution(y=y, tau=tau, iterations=total)
        if dual.smoothing_gap(y, tau) <= rtol * max(abs(dual.value(y)), 1e-300):
            final = True  # one more stage at this τ, to the tight decrement
        else:
            tau *= TAU_FACTOR


__all__ = ["CUTOFF", "DUAL_RTOL", "DualSolution", "NodeTerms", "PoolDual", "STAGE_STOP",
           "TAU_FACTOR", "coordinate_sweep", "lower_hull", "maximise"]
