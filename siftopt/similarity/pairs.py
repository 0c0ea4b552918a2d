"""Norms of the weight differences of expert pairs: cheap estimates, then exact refinement.

The δ bounds need ‖W_i − W_j‖₂ for every pair (docs/bounds.md §6). :func:`cheap_pair_norms`
bounds all N² pairs with the triangle inequality and one Frobenius Gram matrix; the most
promising pairs (:func:`select_pairs`) then get certified exact spectral norms
(:func:`refine_pairs`) within a work budget (:func:`pair_work` per pair).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.similarity.linalg import (
    CHUNK,
    U,
    equal_pairs,
    f64,
    kr_sym_norm,
    norms_of_block,
    pairwise_frobenius_upper,
    pairwise_rowmax_upper,
    row_norms_up,
)
from siftopt.similarity.weights import ExpertWeights


@dataclass
class PairNorms:
    """Symmetric (N, N) upper bounds on norms of differences of the experts' arrays."""

    d1: np.ndarray  # ‖W1_i − W1_j‖₂
    d2: np.ndarray  # ‖W2_i − W2_j‖₂
    d3: np.ndarray | None  # ‖W3_i − W3_j‖₂ (gated)
    r1: np.ndarray | None  # max_k ‖(W1_i − W1_j)[k, :]‖ (gated)
    r3: np.ndarray | None  # max_k ‖(W3_i − W3_j)[k, :]‖ (gated)
    exact: np.ndarray  # bool: spectral norms of this pair computed exactly (not estimated)
    # gated, refined pairs only (inf elsewhere): ‖K(W1_i − W1_j, W3_row)‖ and
    # ‖K(W1_row, W3_i − W3_j)‖ where "row" is the expert of the row index (docs/bounds.md §5)
    ka: np.ndarray | None = None
    kv: np.ndarray | None = None


def cheap_pair_norms(weights: ExpertWeights, n1: np.ndarray, n2: np.ndarray,
                     n3: np.ndarray | None = None, row1: np.ndarray | None = None,
                     row3: np.ndarray | None = None) -> PairNorms:
    """Triangle/Frobenius estimates for every pair: O(N²·h·d) work with BLAS, no eigensolver.

    ``n1``, ``n2``, ``n3`` (N,) bound the experts' ‖W1‖₂, ‖W2‖₂, ‖W3‖₂; ``row1``, ``row3``
    (N, h) the row norms of W1 and W3 (gated experts only).
    """

    def spectral(a: np.ndarray, norms: np.ndarray) -> np.ndarray:
        est = np.minimum(norms[:, None] + norms[None, :], pairwise_frobenius_upper(a))
        est[equal_pairs(a)] = 0.0
        return est

    d1 = spectral(weights.w1, n1)
    d2 = spectral(weights.w2, n2)
    d3 = r1 = r3 = None
    if weights.w3 is not None:
        assert n3 is not None and row1 is not None and row3 is not None
        d3 = spectral(weights.w3, n3)
        m1, m3 = row1.max(axis=1), row3.max(axis=1)
        r1 = np.minimum(np.minimum(pairwise_rowmax_upper(weights.w1), d1),
                        m1[:, None] + m1[None, :])
        r3 = np.minimum(np.minimum(pairwise_rowmax_upper(weights.w3), d3),
                        m3[:, None] + m3[None, :])
    n = weights.num_experts
    ka = kv = None
    if weights.w3 is not None:
        ka, kv = np.full((n, n), np.inf), np.full((n, n), np.inf)
    return PairNorms(d1=d1, d2=d2, d3=d3, r1=r1, r3=r3, exact=np.eye(n, dtype=bool), ka=ka,
                     kv=kv)


def pair_work(weights: ExpertWeights) -> float:
    """Estimated work (flop-like units) of the exact spectral norms of one pair."""
    h, d = weights.ffn_dim, weights.model_dim
    k, big = min(h, d), max(h, d)
    per = big * k * k + 2.0 * k ** 3 + 4.0 * h * d
    if not weights.gated:
        return 2 * per
    return 3 * per + 4 * (3.0 * h * h * d + 2.0 * h ** 3)  # + four Khatri–Rao norms


def refine_pairs(weights: ExpertWeights, pn: PairNorms, pairs: np.ndarray) -> None:
    """Replace the estimates of ``pairs`` (P, 2) by certified exact spectral norms, in place."""
    h, d = weights.ffn_dim, weights.model_dim
    per = max(1, CHUNK // max(1, h * d + min(h, d) ** 2))
    mats: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = [
        (weights.w1, pn.d1, pn.r1), (weights.w2, pn.d2, None)]
    if weights.w3 is not None:
        assert pn.d3 is not None
        mats.append((weights.w3, pn.d3, pn.r3))
    # the computed difference has entrywise relative error ≤ u, so its norms are inflated by
    # (1 + 2(k+4)u) (spectral, ‖ΔA‖₂ ≤ u‖A‖_F ≤ u√k‖A‖₂), (1 + 2(h+4)u) (Khatri–Rao, same
    # argument on the rows of K) and (1 + 4u) (row norms)
    grow_k = 1.0 + 2.0 * (min(h, d) + 4) * U
    grow_h = 1.0 + 2.0 * (h + 4) * U
    for s in range(0, len(pairs), per):
        pi, pj = pairs[s:s + per, 0], pairs[s:s + per, 1]
        for arr, dst, rowdst in mats:
            diff = f64(arr[pi]) - f64(arr[pj])
            val = np.minimum(norms_of_block(diff) * grow_k, dst[pi, pj])
            dst[pi, pj] = dst[pj, pi] = val
            if rowdst is not None:
                rmax = row_norms_up(diff, axis=2).max(axis=1) * (1.0 + 4.0 * U)
                rowdst[pi, pj] = rowdst[pj, pi] = np.minimum(rmax, rowdst[pi, pj])
        if weights.w3 is not None:
            assert pn.ka is not None and pn.kv is not None
            dw1 = f64(weights.w1[pi]) - f64(weights.w1[pj])
            dw3 = f64(weights.w3[pi]) - f64(weights.w3[pj])
            pn.ka[pi, pj] = kr_sym_norm(dw1, weights.w3[pi]) * grow_h
            pn.ka[pj, pi] = kr_sym_norm(dw1, weights.w3[pj]) * grow_h
            pn.kv[pi, pj] = kr_sym_norm(weights.w1[pi], dw3) * grow_h
            pn.kv[pj, pi] = kr_sym_norm(weights.w1[pj], dw3) * grow_h
        pn.exact[pi, pj] = pn.exact[pj, pi] = True


def select_pairs(delta: np.ndarray, beta: np.ndarray, pn: PairNorms, budget_pairs: int
                 ) -> np.ndarray:
    """Pairs (i < j) to refine, most promising first: smallest δ_ij / min(β_i, β_j)."""
    iu, ju = np.triu_indices(delta.shape[0], k=1)
    todo = (~pn.exact[iu, ju]) & (delta[iu, ju] > 0)
    iu, ju = iu[todo], ju[todo]
    if budget_pairs <= 0 or iu.size == 0:
        return np.zeros((0, 2), dtype=np.intp)
    scale = np.maximum(np.minimum(beta[iu], beta[ju]), np.finfo(float).tiny)
    order = np.argsort(delta[iu, ju] / scale, kind="stable")[:budget_pairs]
    return np.stack([iu[order], ju[order]], axis=1)
