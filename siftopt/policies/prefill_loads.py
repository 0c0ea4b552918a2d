"""The load search of ``sift-prefill`` (docs/policies.md §6 step 6, Theorem 6.4): an exact
search over node loads for small batches, token by token over the states of the loads of the
nodes the pool can use. It returns a decision of least energy among the pool's patterns (when
the states stay within :data:`DP_WORK`) and a lower bound from the same states.

Units: energies in the unit of the node tables, degradations dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.policies.prefill_primal import Pool

#: Largest number of candidate states (state × pattern pairs) :func:`load_dp` generates in
#: one token step and in all; past either it gives up (no answer, no bound).
DP_STEP = 1_000_000
DP_WORK = 4_000_000


@dataclass(frozen=True)
class LoadDP:
    """What :func:`load_dp` found: per token a pool pattern (None if no state meets the
    limit), its loads, its sequential ``Σ_t D_t``, and the lower bound (energy units)."""

    pattern: np.ndarray | None
    loads: np.ndarray | None
    degradation: float
    bound: float


def _floor(table: np.ndarray) -> np.ndarray:
    """``Ē(n) = min_{n ≤ n' ≤ n̂} E(n')``: non-decreasing and at most ``E``."""
    return np.minimum.accumulate(np.asarray(table, dtype=float)[::-1])[::-1]


def load_dp(pool: Pool, tables: tuple[np.ndarray, ...], token_class: np.ndarray,
            limit: float, bound_limit: float, upper: float = np.inf,
            prices: np.ndarray | None = None, nu: float = 0.0) -> LoadDP | None:
    """Exact search over node loads (docs/policies.md §6, Theorem 6.4), for small batches.

    ``V_t(n)``: the least sequential sum ``Σ_{t'<t} D`` over pattern choices of the first t
    tokens whose loads are ``n ≤ n̂``, by dynamic programming over the tokens,
    ``V_{t+1}(n) = min_C V_t(n − u_C) + D_C``, on the reachable states only. The answer is
    the loads of least ``Σ_m E_m(n_m)`` with ``V_L(n) ≤ limit`` (backtracked to patterns);
    the bound is the least ``Σ_m Ē_m(n_m)`` with ``V_L(n) ≤ bound_limit`` (``Ē`` as in
    :func:`_floor`). ``tables[m]`` is ``E_m(0..n̂_m)``; the pool must hold every kept pattern
    of every class for the bound to be valid.

    Prunings keep the states few. With ``upper`` (the energy of a known decision), a state
    goes when a lower bound on the ``Σ_m Ē_m`` of every completion exceeds ``upper`` (the
    bound is then at most ``upper`` as well): ``Σ_m Ē_m(n_m)`` (loads only grow, ``Ē`` is
    non-decreasing), and, with prices ``p ≥ 0`` and ``ν ≥ 0`` (any; the dual's are best),
    the Lagrangian completion bound ``Σ_m H_m(n_m) + ν·(V − R) + Σ_{t' ≥ t} φ_{t'}(p, ν)``
    with ``H_m(n) = min_{n ≤ n' ≤ n̂_m} [Ē_m(n') − p_m·(n' − n)]`` and ``R = bound_limit``
    (Lemma 6.1 applied to the tokens still to come). A state also goes when ``V`` plus the
    least degradations of the tokens still to come exceeds ``R``. Returns None past
    :data:`DP_STEP` candidate states in a step, or as soon as the work so far plus this
    step's candidates for every token still to come exceeds :data:`DP_WORK`."""
    m_all = len(tables)
    caps = np.array([t.size - 1 for t in tables], dtype=np.int64)
    floors = [_floor(t) for t in tables]
    usable = ~(pool.inc[:, caps == 0] > 0).any(axis=1)
    nodes = np.flatnonzero((pool.inc[usable] > 0).any(axis=0))
    radix = caps[nodes] + 1
    if float(np.prod(radix.astype(float))) >= 2.0 ** 62:
        return None
    stride = np.cumprod(np.concatenate([[1], radix]))[:-1].astype(np.int64)
    inc = pool.inc[:, nodes] > 0
    offset = inc.astype(np.int64) @ stride
    width = max(int(radix.max(initial=1)), 1)
    step_floor = np.zeros((nodes.size, width))  # Ē(n + 1) − Ē(n) (0 at the cap)
    for k, m in enumerate(nodes.tolist()):
        f = floors[m]
        step_floor[k, : f.size - 1] = np.diff(f)
    least = np.minimum.reduceat(np.where(usable, pool.deg, np.inf), pool.start[:-1])
    rest = np.concatenate([np.cumsum(least[token_class][::-1])[::-1], [0.0]])
    cut = bound_limit + 1e-12 * max(abs(bound_limit), 1.0) if np.isfinite(bound_limit) \
        else np.inf
    # the Lagrangian completion bound: H_m steps, per-token φ, and what is still to come
    nu = float(nu) if np.isfinite(bound_limit) else 0.0
    price = np.zeros(m_all) if prices is None else np.maximum(np.asarray(prices, float), 0.0)
    step_h = np.zeros((nodes.size, width))
    h0 = 0.0
    for k, m in enumerate(nodes.tolist()):
        n = np.arange(floors[m].size)
        best = np.minimum.accumulate((floors[m] - price[m] * n)[::-1])[::-1]
        h = best + price[m] * n
        h0 += float(h[0])
        step_h[k, : h.size - 1] = np.diff(h)
    cost = pool.inc @ price + nu * pool.deg
    phi = np.minimum.reduceat(np.where(usable, cost, np.inf), pool.start[:-1])
    phi_rest = np.concatenate([np.cumsum(phi[token_class][::-1])[::-1], [0.0]])
    slack = 1e-9 * max(abs(upper), 1e-300) if np.isfinite(upper) else 0.0
    nu_r = nu * bound_limit if nu > 0 else 0.0
    codes, values, floor_sum = np.zeros(1, np.int64), np.zeros(1), np.zeros(1)
    h_sum = np.full(1, h0)
    history = [(codes, values)]
    work = 0
    for t, g in enumerate(token_class.tolist()):
        rows = np.arange(int(pool.start[g]), int(pool.start[g + 1]))
        rows = rows[usable[rows]]
        digits = (codes[:, None] // stride[None, :]) % radix[None, :]
        rise = step_floor[np.arange(nodes.size)[None, :], digits]  # (S, M')
        use = inc[rows].astype(float)  # (P, M')
        grow = rise @ use.T
        grow_h = step_h[np.arange(nodes.size)[None, :], digits] @ use.T
        full = (digits >= radix[None, :] - 1).astype(float) @ use.T > 0  # a cap passed
        work += grow.size
        if grow.size > DP_STEP or work + grow.size * (token_class.size - t - 1) > DP_WORK:
            return None  # past the limits, or on course to pass DP_WORK at this step's size
        new_floor = floor_sum[:, None] + grow
        new_h = h_sum[:, None] + grow_h
        new_value = values[:, None] + pool.deg[rows][None, :]
        completion = new_h + nu * new_value - nu_r + phi_rest[t + 1]
        keep = (~full & (new_floor <= upper) & (completion <= upper + slack)
                & (new_value + rest[t + 1] <= cut))
        s_idx, p_idx = np.nonzero(keep)
        cand = codes[s_idx] + offset[rows][p_idx]
        order = np.argsort(cand, kind="stable")
        cand = cand[order]
        first = np.flatnonzero(np.concatenate([[True], cand[1:] != cand[:-1]])) \
            if cand.size else np.zeros(0, np.int64)
        codes = cand[first]
        values = (np.minimum.reduceat(new_value[s_idx, p_idx][order], first) if first.size
                  else np.zeros(0))
        floor_sum = new_floor[s_idx, p_idx][order][first]  # functions of the loads alone
        h_sum = new_h[s_idx, p_idx][order][first]
        history.append((codes, values))
    capped = upper if np.isfinite(upper) else np.inf
    if codes.size == 0:
        return LoadDP(pattern=None, loads=None, degradation=np.inf, bound=capped)
    digits = (codes[:, None] // stride[None, :]) % radix[None, :]
    energy = np.zeros(codes.size)
    for k, m in enumerate(nodes.tolist()):
        energy += np.asarray(tables[m], dtype=float)[digits[:, k]]
    reach = values <= bound_limit
    bound = min(float(floor_sum[reach].min()) if reach.any() else np.inf, capped)
    ok = values <= limit
    if not ok.any():
        return LoadDP(pattern=None, loads=None, degradation=np.inf, bound=bound)
    key = np.where(ok, energy, np.inf)
    best = np.flatnonzero(key == key.min())
    at = int(best[np.argmin(values[best])])
    code, degradation = int(codes[at]), float(values[at])
    pattern = np.empty(token_class.size, dtype=np.int64)
    for t in range(token_class.size - 1, -1, -1):
        g = int(token_class[t])
        here = float(history[t + 1][1][np.searchsorted(history[t + 1][0], code)])
        prev_codes, prev_values = history[t]
        for j in range(int(pool.start[g]), int(pool.start[g + 1])):
            if not usable[j]:
                continue
            prev = code - int(offset[j])
            i = int(np.searchsorted(prev_codes, prev))
            if (i < prev_codes.size and int(prev_codes[i]) == prev
                    and float(prev_values[i]) + float(pool.deg[j]) == here):
                pattern[t] = j
                code = prev
                break
        else:  # pragma: no cover - every kept state has a predecessor
            raise AssertionError("load_dp: no predecessor")
    loads = np.zeros(m_all, dtype=np.int64)
    loads[nodes] = inc[pattern].sum(axis=0)
    return LoadDP(pattern=pattern, loads=loads, degradation=degradation, bound=bound)


__all__ = ["DP_STEP", "DP_WORK", "LoadDP", "load_dp"]
