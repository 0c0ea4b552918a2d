"""Empirical β and δ: the largest ratios observed over calibration, random and adversarial inputs.

An *estimate* of the true constants from below, never a bound (docs/bounds.md §7); the
:class:`~siftopt.similarity.domain.Bounds` it returns says so (``method == "empirical"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from siftopt.errors import InputError
from siftopt.similarity.domain import Bounds, check_domain
from siftopt.similarity.experts import forward, vjp
from siftopt.similarity.linalg import CHUNK, f64
from siftopt.similarity.weights import GATED_KINDS, ExpertWeights, check_kind

#: Work allowed for the adversarial ascent of the empirical method (flops, ≈ seconds).
EMPIRICAL_WORK: float = 2e10


def _check_calibration(weights: ExpertWeights, calibration: np.ndarray | None,
                       rho: float | None, r: float | None, source: str) -> np.ndarray:
    d = weights.model_dim
    if calibration is None:
        return np.zeros((0, d))
    x = np.asarray(calibration)
    if x.dtype.kind not in "fiu":
        raise InputError(f"must be a real numeric array, got dtype {x.dtype}", file=source)
    x = f64(x)
    if x.ndim == 1 and x.shape[0] == d:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != d:
        raise InputError(f"must have shape (n, d) with d = {d}, got {x.shape}", file=source)
    if not np.all(np.isfinite(x)):
        raise InputError("contains NaN or inf", file=source)
    norms = np.linalg.norm(x, axis=1)
    if rho is not None and np.any(norms > rho * (1 + 1e-12)):
        k = int(np.argmax(norms))
        raise InputError(f"row {k} has norm {norms[k]:.6g} > radius {rho:.6g}; the estimate "
                         "must use inputs inside the domain", file=source)
    if r is not None and np.any(norms < r * (1 - 1e-12)):
        k = int(np.argmin(norms))
        raise InputError(f"row {k} has norm {norms[k]:.6g} < min_radius {r:.6g}; the estimate "
                         "must use inputs inside the domain", file=source)
    return x[norms > 0]


def _probe_norms(weights: ExpertWeights, kind: str, rho: float | None, r: float | None
                 ) -> np.ndarray:
    """Input norms to probe: around the scale where pre-activations are O(1), inside the domain."""
    rows = np.sqrt(np.mean(np.square(f64(weights.w1))) * weights.model_dim)
    base = math.sqrt(weights.model_dim) / float(rows) if rows > 0 else 1.0  # |w1_k·x| ≈ 1
    if kind == "relu" and r is None:
        return np.array([base])  # positively homogeneous: the ratio does not depend on ‖x‖
    cand = base * np.array([0.1, 1.0, 10.0, 100.0])
    lo = r if r is not None else 0.0
    hi = rho if rho is not None else np.inf
    cand = np.clip(cand, lo, hi)
    extra = [v for v in (r, rho) if v is not None]
    return np.unique(np.concatenate([cand, np.array(extra, dtype=float)]))


def _top_right_singular(w: np.ndarray, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Approximate top right singular vectors (N, d) of a stack (N, h, d) by power iteration."""
    n, _, d = w.shape
    v = rng.standard_normal((n, d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(iters):
        nxt = np.einsum("nhd,nh->nd", f64(w), np.einsum("nhd,nd->nh", f64(w), v))
        nn = np.linalg.norm(nxt, axis=1, keepdims=True)
        v = np.where(nn > 0, nxt / np.where(nn > 0, nn, 1.0), v)  # keep v where W v = 0
    return v


def _grouped(weights: ExpertWeights, kind: str, x: np.ndarray, expert: np.ndarray,
             cot: np.ndarray | None = None) -> np.ndarray:
    """Row p -> E_{expert[p]}(x[p]) (or J_{expert[p]}(x[p])ᵀ cot[p] when ``cot`` is given)."""
    out = np.empty_like(x)
    order = np.argsort(expert, kind="stable")
    cuts = np.searchsorted(expert[order], np.arange(weights.num_experts + 1))
    for k in range(weights.num_experts):
        idx = order[cuts[k]:cuts[k + 1]]
        if idx.size:
            out[idx] = (forward(weights, k, x[idx], kind) if cot is None
                        else vjp(weights, k, x[idx], kind, cot[idx]))
    return out


def _ascend(weights: ExpertWeights, kind: str, x0: np.ndarray, left: np.ndarray,
            right: np.ndarray | None, steps: int) -> np.ndarray:
    """Max over a norm-preserving power-type ascent of ‖E_l(x) − E_r(x)‖/‖x‖ for each row.

    Each step moves x to ‖x‖·Jᵀg/‖Jᵀg‖ with g = E_l(x) − E_r(x) (E_r = 0 when ``right`` is None);
    for a linear map this is power iteration towards the top singular vector.
    """
    x = x0.copy()
    nx = np.linalg.norm(x, axis=1)
    best = np.zeros(len(x))
    for it in range(steps + 1):
        g = _grouped(weights, kind, x, left)
        if right is not None:
            g -= _grouped(weights, kind, x, right)
        # the ratio always uses the actual norm of the evaluated x
        best = np.maximum(best, np.linalg.norm(g, axis=1) / np.linalg.norm(x, axis=1))
        if it == steps:
            break
        grad = _grouped(weights, kind, x, left, g)
        if right is not None:
            grad -= _grouped(weights, kind, x, right, g)
        # rescale before normalising: a gradient near underflow has no reliable direction
        scale = np.abs(grad).max(axis=1)
        ok = scale > 1e-250
        u = grad[ok] / scale[ok, None]
        x[ok] = u * (nx[ok] / np.linalg.norm(u, axis=1))[:, None]
    return best


def _pool(weights: ExpertWeights, calib: np.ndarray, norms: np.ndarray, n_random: int,
          rng: np.random.Generator) -> np.ndarray:
    d = weights.model_dim
    g = rng.standard_normal((n_random, d))
    g *= (norms[np.arange(n_random) % len(norms)] / np.linalg.norm(g, axis=1))[:, None]
    parts = [calib, g]
    per_expert = 2 * len(norms) * (2 if weights.gated else 1)
    if weights.num_experts * per_expert <= 256:  # singular directions of every expert
        dirs = [_top_right_singular(weights.w1, rng)]
        if weights.w3 is not None:
            dirs.append(_top_right_singular(weights.w3, rng))
        v = np.concatenate(dirs + [-u for u in dirs])
        parts.append((v[None, :, :] * norms[:, None, None]).reshape(-1, d))
    return np.concatenate(parts)


def _merge_top(vals: np.ndarray, idx: np.ndarray, new_vals: np.ndarray, new_idx: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``len(vals)`` largest values (and their pool rows) along axis 0."""
    top = len(vals)
    all_v = np.concatenate([vals, new_vals])
    all_i = np.concatenate([idx, np.broadcast_to(new_idx, new_vals.shape)])
    order = np.argsort(-all_v, axis=0, kind="stable")[:top]
    return np.take_along_axis(all_v, order, axis=0), np.take_along_axis(all_i, order, axis=0)


@dataclass
class _PoolScan:
    """Exact ratios over the input pool: maxima and the rows achieving the ``top`` largest."""

    beta: np.ndarray  # (N,)
    beta_rows: np.ndarray  # (top, N)
    delta: np.ndarray  # (N, N), upper triangle filled
    delta_rows: np.ndarray  # (top, N, N)


def _scan_pool(weights: ExpertWeights, kind: str, pool: np.ndarray, top: int) -> _PoolScan:
    """Ratios ‖E_i(x)‖/‖x‖ and ‖E_i(x) − E_j(x)‖/‖x‖ for every pool row, in blocks of rows.

    Differences are formed explicitly (no Gram identity), so identical experts give exactly 0.
    """
    n, d = weights.num_experts, weights.model_dim
    b_val, b_idx = np.full((top, n), -np.inf), np.zeros((top, n), dtype=np.intp)
    d_val, d_idx = np.full((top, n, n), -np.inf), np.zeros((top, n, n), dtype=np.intp)
    per = max(1, CHUNK // max(1, n * max(n, d)))
    for s in range(0, len(pool), per):
        xb = pool[s:s + per]
        rows = np.arange(s, s + len(xb))
        nx = np.linalg.norm(xb, axis=1)
        y = np.stack([forward(weights, k, xb, kind) for k in range(n)], axis=1)  # (b, N, d)
        ratio_b = np.sqrt(np.einsum("bnd,bnd->bn", y, y)) / nx[:, None]
        b_val, b_idx = _merge_top(b_val, b_idx, ratio_b, rows[:, None])
        ratio_d = np.full((len(xb), n, n), -np.inf)
        for i in range(n - 1):
            diff = y[:, i:i + 1, :] - y[:, i + 1:, :]
            ratio_d[:, i, i + 1:] = np.sqrt(np.einsum("bnd,bnd->bn", diff, diff)) / nx[:, None]
        d_val, d_idx = _merge_top(d_val, d_idx, ratio_d, rows[:, None, None])
    delta = np.where(np.isfinite(d_val[0]), d_val[0], 0.0)
    return _PoolScan(beta=np.maximum(b_val[0], 0.0), beta_rows=b_idx, delta=delta,
                     delta_rows=d_idx)


def empirical_bounds(weights: ExpertWeights, kind: str, radius: float | None = None,
                     calibration: np.ndarray | None = None,
                     rng: np.random.Generator | int | None = None, *,
                     min_radius: float | None = None, n_random: int = 64, steps: int = 8,
                     starts: int = 3, calibration_source: str = "calibration") -> Bounds:
    """Empirical β, δ: the largest ratios ‖E_i(x)‖/‖x‖, ‖E_i(x) − E_j(x)‖/‖x‖ observed.

    Inputs: the rows of ``calibration`` (n, d) (which must lie in the domain), ``n_random``
    Gaussian directions at several norms and the experts' top singular directions; then, for
    every expert and pair, a ``steps``-step adversarial ascent from its ``starts`` best inputs
    (one start per pair beyond 16 experts; fewer steps when the work would exceed
    :data:`EMPIRICAL_WORK`). The result is an ESTIMATE from below of the true constants, never
    a bound. ``rng``: a Generator or a seed (None means seed 0, so runs are reproducible).
    """
    kind = check_kind(weights, kind)
    rho, r, notes = check_domain(weights, kind, radius, min_radius)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(
        0 if rng is None else rng)
    calib = _check_calibration(weights, calibration, rho, r, calibration_source)
    norms = _probe_norms(weights, kind, rho, r)
    pool = _pool(weights, calib, norms, n_random, gen)
    n = weights.num_experts
    top = max(1, min(starts, len(pool)))
    scan = _scan_pool(weights, kind, pool, top)
    flops_row = 2.0 * weights.ffn_dim * weights.model_dim * (3 if weights.gated else 2)
    # --- β: ascent from the best pool rows and the expert's own singular directions ---------
    own = _top_right_singular(weights.w1, gen)
    blocks, owners = [], []
    for k in range(n):
        block = np.concatenate([pool[scan.beta_rows[:, k]], own[k][None] * norms[:, None],
                                -own[k][None] * norms[:, None]])
        blocks.append(block)
        owners.append(np.full(len(block), k))
    xs, es = np.concatenate(blocks), np.concatenate(owners)
    beta_steps = int(min(steps, EMPIRICAL_WORK / 3 // (3 * len(xs) * flops_row)))
    beta = scan.beta.copy()
    np.maximum.at(beta, es, _ascend(weights, kind, xs, es, None, max(beta_steps, 0)))
    # --- δ: ascent from the best pool rows of each pair ------------------------------------
    delta = np.zeros((n, n))
    if n > 1:
        iu, ju = np.triu_indices(n, k=1)
        best = scan.delta[iu, ju]
        per_pair = top if n <= 16 else 1
        cost = 6.0 * len(iu) * per_pair * flops_row
        pair_steps = int(min(steps, (EMPIRICAL_WORK * 2 / 3) // cost))
        if pair_steps > 0:
            rows = scan.delta_rows[:per_pair, iu, ju].T.reshape(-1)
            left, right = np.repeat(iu, per_pair), np.repeat(ju, per_pair)
            vals = _ascend(weights, kind, pool[rows], left, right, pair_steps)
            best = np.maximum(best, vals.reshape(len(iu), per_pair).max(axis=1))
        if pair_steps < steps:
            notes.append(f"adversarial ascent for expert pairs limited to {pair_steps} step(s) "
                         "by the work budget")
        delta[iu, ju] = delta[ju, iu] = best
    np.fill_diagonal(delta, 0.0)
    return Bounds(beta=beta, delta=delta, kind=kind, method="empirical",
                  radius=rho if kind in GATED_KINDS else None, min_radius=r, notes=tuple(notes))
