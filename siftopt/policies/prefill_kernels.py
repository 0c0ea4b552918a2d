"""The numba kernels of sift-prefill's pool dual (the compiled path).

Each kernel computes what a numpy reference computes, on the same data, to float rounding
(tests/test_prefill_speed.py checks them against each other):

* :func:`node_smooth` — the node terms ``h_m(p_m)`` of the dual, smoothed at temperature τ
  (values, derivatives, second derivatives; ``τ = 0``: exact), as
  :meth:`~siftopt.policies.prefill_dual.NodeTerms.smooth_numpy`; :func:`geometric_one` is
  ``prefill_dual._truncated_geometric`` of one envelope segment.
* :func:`pool_smooth` — the class terms ``Σ_g c_g·(soft) minimum over the pool`` with their
  gradient and Hessian, as the class part of
  :meth:`~siftopt.policies.prefill_dual.PoolDual.smooth_numpy` (``τ = 0``: the exact
  ``Σ_g c_g·φ_g``, as ``counts @ class_minima``).
* :func:`sweep_prices` — the node prices of one exact coordinate-ascent sweep, as
  :func:`~siftopt.policies.prefill_newton.coordinate_sweep_numpy`, with :func:`line_maximum`
  (``prefill_newton._line_maximum``) per node; :func:`best_multiplier` — the ν of the sweep,
  as ``prefill_newton._best_multiplier_numpy``.

The pool is passed as sparse rows (no BLAS: dense ``P × d`` products ran OpenBLAS threads):
pattern j uses the nodes ``nidx[nptr[j]:nptr[j+1]]`` (0-based), has degradation ``deg[j]``
(``deg`` empty: no mean row, no ν), and the patterns of class g are ``start[g]:start[g+1]``
with ``counts[g]`` tokens. Units as in :mod:`~siftopt.policies.prefill_dual`: energies in the
energy unit of the instance (J per unit), prices per token of load, ν per unit of
degradation, τ in energy units.

Importing this module loads numba (about 0.6 s per process with the on-disk cache), so the
dual modules import it only when they take the compiled path.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def geometric_one(x: float, length: float) -> tuple[float, float, float]:
    """``prefill_dual._truncated_geometric`` of one segment of ``length`` tokens at
    ``x = (p − slope)/τ``: ``log Σ_{k≤ℓ} e^{kx}``, the mean and the variance of k."""
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
        rest = -np.expm1(z)  # 1 − q to full relative accuracy (see _truncated_geometric)
        rest_n = -np.expm1(n1 * z)
        log_sum = np.log(rest_n) - np.log(rest)
        mean = q / rest - n1 * qn / rest_n
        var = max(q / rest ** 2 - n1 ** 2 * qn / rest_n ** 2, 0.0)
    if flip:
        log_sum = log_sum - z * length
        mean = length - mean
    return log_sum, mean, var


@njit(cache=True)
def geometric_unit(x: float) -> tuple[float, float, float]:
    """:func:`geometric_one` of a one-token segment (``k ∈ {0, 1}``): ``log(1 + e^x)``,
    the mean ``σ(x)`` and the variance ``σ(1 − σ)`` with one ``exp`` and one ``log1p``
    (the same series near ``x = 0``)."""
    flip = x > 0
    z = -x if flip else x
    if z * 2.0 > -1e-4:
        log_sum = np.log(2.0) + z / 2.0
        mean = 0.5 + z * 0.25
        var = 0.25
    else:
        q = np.exp(z)
        log_sum = np.log1p(q)
        mean = q / (1.0 + q)
        var = mean / (1.0 + q)
    if flip:
        log_sum = log_sum - z
        mean = 1.0 - mean
    return log_sum, mean, var


@njit(cache=True)
def node_smooth(slope: np.ndarray, length: np.ndarray, seg_start: np.ndarray,
                cum_len: np.ndarray, cum_len_slope: np.ndarray, weight: float, p: np.ndarray,
                tau: float, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``NodeTerms.smooth_numpy`` (``τ = 0``: exact values, zero curvature): per node the
    smoothed ``h_m``, its derivative (minus the soft load) and second derivative."""
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
            if length[i] == 1.0:
                a, b, c = geometric_unit((p[m] - slope[i]) / tau)
            else:
                a, b, c = geometric_one((p[m] - slope[i]) / tau, length[i])
            log_sum += tau * a
            mean += b
            var += c
        value[m] = -(p[m] * below - below_slope) * weight - weight * log_sum
        deriv[m] = -below * weight - weight * mean
        if hi > lo:
            curv[m] = -weight * var / tau
    return value, deriv, curv


@njit(cache=True)
def pattern_costs(nptr: np.ndarray, nidx: np.ndarray, deg: np.ndarray, y: np.ndarray
                  ) -> np.ndarray:
    """``Σ_{m∈C} y_m (+ ν·D)`` of every pattern (``PoolDual.pattern_costs``): pattern j uses
    the nodes ``nidx[nptr[j]:nptr[j+1]]``; ``deg`` empty when ``y`` has no ν (its last
    entry otherwise)."""
    num_pat = nptr.size - 1
    cost = np.empty(num_pat)
    for j in range(num_pat):
        total = 0.0
        for k in range(nptr[j], nptr[j + 1]):
            total += y[nidx[k]]
        if deg.size:
            total += y[y.size - 1] * deg[j]
        cost[j] = total
    return cost


@njit(cache=True)
def pool_smooth(start: np.ndarray, nptr: np.ndarray, nidx: np.ndarray, deg: np.ndarray,
                counts: np.ndarray, y: np.ndarray, tau: float, hessian: bool,
                cutoff: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The class terms of ``PoolDual.smooth_numpy``: ``Σ_g c_g·(soft minimum)``, its gradient
    and Hessian (``τ = 0``: the exact ``Σ c_g·φ_g``, no derivatives). Pattern j uses the
    nodes ``nidx[nptr[j]:nptr[j+1]]`` (0-based); ``deg[j]`` is its degradation when there is
    a ν (the last entry of ``y``; ``deg`` empty: none)."""
    dim = y.size
    has_nu = deg.size > 0
    m = dim - 1
    num_pat = nptr.size - 1
    cost = pattern_costs(nptr, nidx, deg, y)
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


@njit(cache=True)
def dual_smooth(start: np.ndarray, nptr: np.ndarray, nidx: np.ndarray, deg: np.ndarray,
                counts: np.ndarray, y: np.ndarray, tau: float, hessian: bool, cutoff: float,
                slope: np.ndarray, length: np.ndarray, seg_start: np.ndarray,
                cum_len: np.ndarray, cum_len_slope: np.ndarray, weight: float
                ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`pool_smooth` and :func:`node_smooth` in one call (``PoolDual.smooth_compiled``
    runs it about 120 times per L = 1024 batch): the class terms' value, their gradient and
    Hessian with the node terms' derivatives and curvatures added (the Hessian's diagonal
    only when ``hessian``), and the node terms' values per node (the caller sums them)."""
    value, grad, hess = pool_smooth(start, nptr, nidx, deg, counts, y, tau, hessian, cutoff)
    num = seg_start.size - 1
    h_val, h_grad, h_curv = node_smooth(slope, length, seg_start, cum_len, cum_len_slope,
                                        weight, y[:num], tau, cutoff)
    for m in range(num):
        grad[m] += h_grad[m]
        if hessian:
            hess[m, m] += h_curv[m]
    return value, grad, hess, h_val


@njit(cache=True)
def line_maximum(breaks: np.ndarray, tail: np.ndarray, fixed: float,
                 slopes: np.ndarray, cum: np.ndarray, at: np.ndarray,
                 upper: float) -> float:
    """``prefill_newton._line_maximum``, compiled: demand minus supply is non-increasing,
    so the first qualifying break and slope are found by bisection."""
    if not upper >= 0.0:
        return upper
    if tail[np.searchsorted(breaks, 0.0, side="right")] + fixed <= \
            cum[np.searchsorted(slopes, 0.0, side="right")]:
        return 0.0
    best = upper
    lo = np.searchsorted(breaks, 0.0, side="right")
    hi = np.searchsorted(breaks, upper, side="right")
    while hi > lo and not np.isfinite(breaks[hi - 1]):
        hi -= 1
    end = hi
    while lo < hi:  # the first break that qualifies, if any
        mid = (lo + hi) // 2
        q = breaks[mid]
        if tail[np.searchsorted(breaks, q, side="right")] + fixed <= \
                cum[np.searchsorted(slopes, q, side="right")]:
            hi = mid
        else:
            lo = mid + 1
    if lo < end:
        best = breaks[lo]
    lo = np.searchsorted(slopes, 0.0, side="right")
    hi = np.searchsorted(slopes, best, side="left")
    end = hi
    while lo < hi:  # the first slope below it that qualifies, if any
        mid = (lo + hi) // 2
        if tail[np.searchsorted(breaks, slopes[mid], side="right")] + fixed <= at[mid]:
            hi = mid
        else:
            lo = mid + 1
    if lo < end:
        best = slopes[lo]
    return best


@njit(cache=True)
def sweep_prices(start: np.ndarray, nptr: np.ndarray, nidx: np.ndarray, deg: np.ndarray,
                 uses: np.ndarray, node_ptr: np.ndarray, node_cls: np.ndarray,
                 counts: np.ndarray, y: np.ndarray, upper: np.ndarray, fixed: np.ndarray,
                 slope: np.ndarray, seg_start: np.ndarray, supply_cum: np.ndarray,
                 supply_at: np.ndarray, pattern_ptr: np.ndarray, pattern_idx: np.ndarray
                 ) -> None:
    """The node prices of ``prefill_newton.coordinate_sweep_numpy``, in place in ``y``
    (``uses[m, j]``: pattern j uses node m; ``node_cls[node_ptr[m]:node_ptr[m+1]]``: the
    classes with such a pattern; ``pattern_idx[pattern_ptr[m]:pattern_ptr[m+1]]``: those
    patterns; ``deg``: the degradations when ``y`` ends with ν, else empty).

    The demand's tail sums add class counts (whole numbers: exact in any order), so where
    all breaks of a node weigh the same (every class one token, as at L = 1024) the breaks
    are sorted by value alone, without the index sort."""
    cost = pattern_costs(nptr, nidx, deg, y)
    breaks = np.empty(node_cls.size)
    weight = np.empty(node_cls.size)
    for m in range(seg_start.size - 1):
        n = node_ptr[m + 1] - node_ptr[m]
        if n == 0 and fixed[m] == 0.0:
            continue
        # only breaks in (0, upper] are candidates and change the demand on [0, upper]:
        # those at most 0 never count, larger ones (or inf) always do (their weight joins the
        # fixed demand), so only the others are sorted
        always = fixed[m]
        kept = 0
        uniform = True  # every kept break has the first one's weight
        for i in range(n):
            g = node_cls[node_ptr[m] + i]
            a = np.inf
            b = np.inf
            for j in range(start[g], start[g + 1]):
                if uses[m, j]:
                    a = min(a, cost[j])
                else:
                    b = min(b, cost[j])
            q = b - (a - y[m])
            if q > upper[m]:
                always += counts[g]
            elif q > 0.0:
                breaks[kept] = q
                weight[kept] = counts[g]
                uniform = uniform and counts[g] == weight[0]
                kept += 1
        tail = np.zeros(kept + 1)
        if uniform:
            br = np.sort(breaks[:kept])
            for i in range(kept - 1, -1, -1):
                tail[i] = tail[i + 1] + weight[0]
        else:
            order = np.argsort(breaks[:kept])
            br = breaks[:kept][order]
            for i in range(kept - 1, -1, -1):
                tail[i] = tail[i + 1] + weight[order[i]]
        lo, hi = seg_start[m], seg_start[m + 1]
        old = y[m]
        y[m] = line_maximum(br, tail, always, slope[lo:hi], supply_cum[lo + m: hi + m + 1],
                            supply_at[lo:hi], upper[m])
        delta = y[m] - old
        if delta != 0.0:
            for k in range(pattern_ptr[m], pattern_ptr[m + 1]):
                cost[pattern_idx[k]] += delta


@njit(cache=True)
def best_multiplier(start: np.ndarray, nptr: np.ndarray, nidx: np.ndarray, deg: np.ndarray,
                    counts: np.ndarray, y: np.ndarray, upper: float, fixed: float,
                    rhs: float) -> float:
    """``prefill_newton._best_multiplier_numpy``, compiled; a class whose cheapest pattern
    is the same at both ends of the bracket keeps it inside (a minimum of lines), so only the
    others are evaluated as the bracket shrinks."""
    m = y.size - 1
    num_cls = start.size - 1
    base = np.empty(deg.size)
    for j in range(deg.size):
        total = 0.0
        for k in range(nptr[j], nptr[j + 1]):
            total += y[nidx[k]]
        base[j] = total

    def cheapest(g: int, nu: float) -> int:
        best = -1
        low = np.inf
        for j in range(start[g], start[g + 1]):
            c = base[j] + nu * deg[j]
            if c < low or (c == low and deg[j] < deg[best]):
                low = c
                best = j
        return best

    arg_low = np.empty(num_cls, np.int64)
    arg_high = np.empty(num_cls, np.int64)
    total = fixed
    for g in range(num_cls):
        arg_low[g] = cheapest(g, 0.0)
        total += counts[g] * deg[arg_low[g]]
    if total <= rhs:
        return 0.0
    high = max(y[m], 1e-12)
    while True:
        total = fixed
        for g in range(num_cls):
            arg_high[g] = cheapest(g, high)
            total += counts[g] * deg[arg_high[g]]
        if total <= rhs or high >= upper:
            break
        high = min(high * 4.0, upper)
    if total > rhs:
        return upper
    low = 0.0
    active = np.empty(num_cls, np.int64)
    na = 0
    frozen = fixed
    for g in range(num_cls):
        if arg_low[g] == arg_high[g]:
            frozen += counts[g] * deg[arg_low[g]]
        else:
            active[na] = g
            na += 1
    arg_mid = np.empty(num_cls, np.int64)
    for _ in range(200):
        mid = np.sqrt(low * high) if low > 0 and high / low > 4.0 else 0.5 * (low + high)
        total = frozen
        for i in range(na):
            g = active[i]
            arg_mid[g] = cheapest(g, mid)
            total += counts[g] * deg[arg_mid[g]]
        below = total <= rhs
        if below:
            high = mid
        else:
            low = mid
        keep = 0
        for i in range(na):
            g = active[i]
            if below:
                arg_high[g] = arg_mid[g]
            else:
                arg_low[g] = arg_mid[g]
            if arg_low[g] == arg_high[g]:
                frozen += counts[g] * deg[arg_low[g]]
            else:
                active[keep] = g
                keep += 1
        na = keep
        if high - low <= 1e-12 * high:
            break
    return high


__all__ = ["best_multiplier", "dual_smooth", "geometric_one", "geometric_unit", "line_maximum",
           "node_smooth", "pool_smooth", "sweep_prices"]
