"""Proven β and δ from spectral norms: plain FFN experts, biases, SwiGLU on a ball.

Per-expert terms (β and the norms δ is built from, docs/bounds.md §3–§5), the assembly of δ from
the pair norms of :mod:`siftopt.similarity.pairs`, and :func:`analytic_bounds`, which spends
about :data:`AUTO_PAIR_WORK` on exact pair norms before assembling δ again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from siftopt.errors import UsageError
from siftopt.similarity.domain import Bounds, check_domain
from siftopt.similarity.experts import act_variants, growth_constant, lipschitz_constant
from siftopt.similarity.linalg import (
    U,
    f64,
    kr_sym_norm,
    pairwise_vec_norms,
    row_norms_up,
    spectral_norm_upper,
    vec_norm_up,
)
from siftopt.similarity.pairs import (
    PairNorms,
    cheap_pair_norms,
    pair_work,
    refine_pairs,
    select_pairs,
)
from siftopt.similarity.weights import GATED_KINDS, ExpertWeights, check_kind

#: Work allowed for exact pairwise spectral norms under ``exact_pairs="auto"`` (flop-like
#: units, ≈ a few seconds on two cores).
AUTO_PAIR_WORK: float = 6e10


@dataclass
class _ExpertTerms:
    """Per-expert upper bounds (arrays of shape (N,) unless noted); see docs/bounds.md §3–§5."""

    beta: np.ndarray
    n1: np.ndarray  # ‖W1_i‖₂
    n2: np.ndarray  # ‖W2_i‖₂
    n3: np.ndarray | None  # ‖W3_i‖₂ (gated)
    sig: np.ndarray  # plain: ‖σ(u_i)‖ ≤ sig_i‖x‖; gated: ‖σ(u_i) ⊙ v_i‖ ≤ sig_i‖x‖
    row1: np.ndarray | None = None  # (N, h) row norms of W1 (gated)
    row3: np.ndarray | None = None  # (N, h) row norms of W3 (gated)
    u_inf: np.ndarray | None = None  # gated: ‖u_i‖_∞ ≤ u_inf_i on the ball
    u_2: np.ndarray | None = None  # gated: ‖u_i‖₂ ≤ u_2_i on the ball
    b1_inf: np.ndarray | None = None  # gated: ‖b1_i‖_∞


def _up_inv(r: float | None) -> float:
    """An upper bound on 1/r (0 when r is None: the matching constants are then 0)."""
    return 0.0 if r is None else float(np.nextafter(1.0 / r, np.inf))


def _balanced_scales(w2: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal rescaling s (N, h) of the hidden units balancing ‖W2[:, k]‖/s_k and s_k‖W1[k, :]‖.

    Returns (col_scale for W2, row_scale for W1); units with a zero column or row contribute
    nothing to W2 diag(c) W1 and get scale 0 in both.
    """
    c2 = np.sqrt(np.sum(np.square(f64(w2)), axis=1))  # (N, h) column norms of W2
    r1 = np.sqrt(np.sum(np.square(f64(w1)), axis=2))  # (N, h) row norms of W1
    live = (c2 > 0) & (r1 > 0)
    s = np.where(live, np.sqrt(np.where(live, c2, 1.0) / np.where(live, r1, 1.0)), 0.0)
    inv = np.where(live, 1.0 / np.where(live, s, 1.0), 0.0)
    return inv, s


def _plain_terms(weights: ExpertWeights, kind: str, r: float | None) -> _ExpertTerms:
    lip, grow, inv_r = lipschitz_constant(kind), growth_constant(kind), _up_inv(r)
    n1 = spectral_norm_upper(weights.w1)
    n2 = spectral_norm_upper(weights.w2)
    cs, rs = _balanced_scales(weights.w2, weights.w1)
    bal = spectral_norm_upper(weights.w2, col_scale=cs) * spectral_norm_upper(weights.w1,
                                                                               row_scale=rs)
    prod = np.minimum(n2 * n1, bal)  # ≥ max over diagonal C with |C| ≤ 1 of ‖W2 C W1‖₂
    n, h = weights.num_experts, weights.ffn_dim
    if weights.has_b1 or weights.has_b2:
        b1 = f64(weights.b1) if weights.b1 is not None else np.zeros((n, h))
        b2 = f64(weights.b2) if weights.b2 is not None else np.zeros((n, weights.model_dim))
        b1n, b2n = vec_norm_up(b1), vec_norm_up(b2)
        col2 = row_norms_up(weights.w2, axis=1)  # (N, h)
        w2b1 = np.minimum(n2 * b1n, np.sum(np.abs(b1) * col2, axis=1) * (1 + (h + 2) * U))
        c_growth = grow * w2b1 + b2n  # ‖E(x)‖ ≤ G·P‖x‖ + c_growth
        f2 = np.sqrt(np.sum(np.square(f64(weights.w2)), axis=(1, 2)))
        c_lip, sb1n = np.zeros(n), np.zeros(n)
        for sb1 in act_variants(kind, b1):  # gelu: ‖E(0)‖ and ‖σ(b1)‖ of both forms
            e0 = np.einsum("ndh,nh->nd", f64(weights.w2), sb1) + b2
            err = 4.0 * (h + 8) * U * (f2 * vec_norm_up(sb1) + b2n)
            c_lip = np.maximum(c_lip, (vec_norm_up(e0) + err) * (1 + 4 * U))  # ≥ ‖E(0)‖
            sb1n = np.maximum(sb1n, vec_norm_up(sb1) * (1 + 16 * U))  # ≥ ‖σ(b1)‖
        beta = np.minimum(grow * prod + c_growth * inv_r, lip * prod + c_lip * inv_r)
        sig = np.minimum(grow * (n1 + b1n * inv_r), lip * n1 + sb1n * inv_r)
    else:
        beta = grow * prod
        sig = grow * n1
    return _ExpertTerms(beta=beta, n1=n1, n2=n2, n3=None, sig=sig)


def _gated_terms(weights: ExpertWeights, rho: float, r: float | None) -> _ExpertTerms:
    assert weights.w3 is not None
    n, h = weights.num_experts, weights.ffn_dim
    inv_r = _up_inv(r)
    n1, n2, n3 = (spectral_norm_upper(w) for w in (weights.w1, weights.w2, weights.w3))
    row1 = row_norms_up(weights.w1, axis=2)  # (N, h)
    row3 = row_norms_up(weights.w3, axis=2)
    b1 = np.abs(f64(weights.b1)) if weights.has_b1 else np.zeros((n, h))  # type: ignore[arg-type]
    b1_2 = vec_norm_up(b1)
    b1_inf = b1.max(axis=1) * (1.0 + 2.0 * U)
    u_inf = (row1 * rho + b1).max(axis=1)  # ‖u‖_∞ = max_k |w1_k·x + b1_k| on the ball
    u_2 = n1 * rho + b1_2
    # (c) σ(u) ⊙ v = diag(c)·K(W1, W3)(x ⊗ x) + diag(c ⊙ b1) W3 x with c = σ(u)/u ∈ [0, 1]
    kr = kr_sym_norm(weights.w1, weights.w3)
    bias_w3 = b1_inf * n3  # ‖b1 ⊙ (W3 x)‖ ≤ ‖b1‖_∞‖W3‖‖x‖
    sig = np.minimum(np.minimum(u_inf * n3, u_2 * row3.max(axis=1)), rho * kr + bias_w3)
    # (c) with the hidden units rescaled to balance W2's columns against K's rows
    w1r, w3r = f64(weights.w1), f64(weights.w3)
    krow = np.sqrt(0.5 * (row1**2 * row3**2 + np.einsum("nkd,nkd->nk", w1r, w3r) ** 2))
    cs, s_k = _balanced_scales(weights.w2, krow[:, :, None])  # krow as one-column "W1"
    form_c = rho * np.minimum(n2 * kr, spectral_norm_upper(weights.w2, col_scale=cs)
                              * kr_sym_norm(weights.w1, weights.w3, scale=s_k))
    if weights.has_b1:  # + W2 diag(c ⊙ b1) W3 x, with |c_k b1_k| ≤ |b1_k|
        form_c = form_c + (spectral_norm_upper(weights.w2, col_scale=np.sqrt(b1))
                           * spectral_norm_upper(weights.w3, row_scale=np.sqrt(b1)))
    b2n = vec_norm_up(f64(weights.b2)) if weights.has_b2 else np.zeros(n)  # type: ignore[arg-type]
    beta = np.minimum(n2 * sig, form_c) + b2n * inv_r
    return _ExpertTerms(beta=beta, n1=n1, n2=n2, n3=n3, sig=sig, row1=row1, row3=row3,
                        u_inf=u_inf, u_2=u_2, b1_inf=b1_inf)


def _bias_diffs(weights: ExpertWeights, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(‖Δb1‖₂, ‖Δb1‖_∞, ‖Δb2‖₂) for all pairs, zeros where there are no biases."""
    n = weights.num_experts
    z = np.zeros((n, n))
    db1 = pairwise_vec_norms(weights.b1) if weights.has_b1 else z  # type: ignore[arg-type]
    db1i = (pairwise_vec_norms(weights.b1, ord_inf=True)  # type: ignore[arg-type]
            if weights.has_b1 else z)
    db2 = pairwise_vec_norms(weights.b2) if weights.has_b2 else z  # type: ignore[arg-type]
    return db1, db1i, db2


def _delta_plain(t: _ExpertTerms, pn: PairNorms, lip: float, inv_r: float,
                 db1: np.ndarray, db2: np.ndarray) -> np.ndarray:
    """E_i − E_j = ΔW2 σ(u_i) + W2_j(σ(u_i) − σ(u_j)) + Δb2, and the mirror split."""
    dsig = lip * (pn.d1 + db1 * inv_r)  # ‖σ(u_i) − σ(u_j)‖ ≤ dsig‖x‖
    split1 = pn.d2 * t.sig[:, None] + t.n2[None, :] * dsig
    split2 = pn.d2 * t.sig[None, :] + t.n2[:, None] * dsig
    return np.minimum(split1, split2) + db2 * inv_r


def _delta_gated(t: _ExpertTerms, pn: PairNorms, lip: float, rho: float, inv_r: float,
                 db1: np.ndarray, db1i: np.ndarray, db2: np.ndarray) -> np.ndarray:
    """Telescoping over (W2, σ(u), v) in four orders; see docs/bounds.md §5."""
    assert t.n3 is not None and t.row3 is not None and t.u_inf is not None and t.u_2 is not None
    assert pn.d3 is not None and pn.r1 is not None and pn.r3 is not None
    v_inf, v_2 = t.row3.max(axis=1), t.n3
    du_inf = pn.r1 * rho + db1i  # ‖u_i − u_j‖_∞ ≤ du_inf
    du_2 = pn.d1 * rho + db1
    # ‖(σ(u_i) − σ(u_j)) ⊙ v_k‖ ≤ dsig_k‖x‖ and ‖σ(u_k) ⊙ (v_i − v_j)‖ ≤ dv_k‖x‖, k = i (row) or j
    assert pn.ka is not None and pn.kv is not None and t.b1_inf is not None
    # Khatri–Rao forms (refined pairs): (Δu) ⊙ v_k = K(ΔW1, W3_k)(x ⊗ x) + Δb1 ⊙ v_k, and
    # σ(u_k) ⊙ Δv = diag(c) K(W1_k, ΔW3)(x ⊗ x) + diag(c ⊙ b1_k) ΔW3 x
    kr_sig = rho * pn.ka + db1i * v_2[:, None]  # row expert i: its W3
    kr_v = rho * pn.kv + t.b1_inf[:, None] * pn.d3
    dsig_i = lip * np.minimum(np.minimum(du_inf * v_2[:, None], du_2 * v_inf[:, None]), kr_sig)
    dsig_j = lip * np.minimum(np.minimum(du_inf * v_2[None, :], du_2 * v_inf[None, :]),
                              kr_sig.T)
    dv_i = np.minimum(np.minimum(t.u_inf[:, None] * pn.d3, t.u_2[:, None] * pn.r3), kr_v)
    dv_j = np.minimum(np.minimum(t.u_inf[None, :] * pn.d3, t.u_2[None, :] * pn.r3), kr_v.T)
    inner = np.minimum(dsig_i + dv_j, dsig_j + dv_i)  # ‖g_i − g_j‖ ≤ inner‖x‖
    outer1 = pn.d2 * t.sig[:, None] + t.n2[None, :] * inner
    outer2 = pn.d2 * t.sig[None, :] + t.n2[:, None] * inner
    return np.minimum(outer1, outer2) + db2 * inv_r


def _assemble_delta(weights: ExpertWeights, kind: str, t: _ExpertTerms, pn: PairNorms,
                    rho: float | None, inv_r: float,
                    diffs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    lip = lipschitz_constant(kind)
    db1, db1i, db2 = diffs
    if kind in GATED_KINDS:
        assert rho is not None
        delta = _delta_gated(t, pn, lip, rho, inv_r, db1, db1i, db2)
    else:
        delta = _delta_plain(t, pn, lip, inv_r, db1, db2)
    delta = np.minimum(delta, t.beta[:, None] + t.beta[None, :])  # ‖E_i − E_j‖ ≤ ‖E_i‖ + ‖E_j‖
    np.fill_diagonal(delta, 0.0)
    return delta


def analytic_bounds(weights: ExpertWeights, kind: str, radius: float | None = None, *,
                    min_radius: float | None = None,
                    exact_pairs: int | Literal["auto", "all"] = "auto") -> Bounds:
    """Proven upper bounds β (N,) and δ (N, N) for the experts in ``weights``.

    ``radius`` (required for gated kinds) and ``min_radius`` (required when E(0) ≠ 0) set the
    domain ‖x‖ ≤ radius, ‖x‖ ≥ min_radius on which the bounds hold (units of ‖x‖).
    ``exact_pairs`` bounds how many expert pairs get certified exact spectral norms of their
    weight differences (most promising first); the others use min(triangle, Frobenius).
    ``"auto"`` spends about :data:`AUTO_PAIR_WORK`; ``"all"`` refines every pair. The choice
    affects tightness only, never validity.
    """
    kind = check_kind(weights, kind)
    rho, r, notes = check_domain(weights, kind, radius, min_radius)
    if not (exact_pairs in ("auto", "all") or (
            isinstance(exact_pairs, int | np.integer) and not isinstance(exact_pairs, bool)
            and exact_pairs >= 0)):
        raise UsageError(f"exact_pairs: must be 'auto', 'all' or a count >= 0, "
                         f"got {exact_pairs!r}")
    inv_r = _up_inv(r)
    if kind in GATED_KINDS:
        assert rho is not None
        terms = _gated_terms(weights, rho, r)
    else:
        terms = _plain_terms(weights, kind, r)
    n = weights.num_experts
    if n == 1:
        delta = np.zeros((1, 1))
    else:
        pn = cheap_pair_norms(weights, terms.n1, terms.n2, terms.n3, terms.row1, terms.row3)
        diffs = _bias_diffs(weights, kind)
        delta = _assemble_delta(weights, kind, terms, pn, rho, inv_r, diffs)
        total = n * (n - 1) // 2
        if exact_pairs == "all":
            budget = total
        elif exact_pairs == "auto":
            budget = int(AUTO_PAIR_WORK // pair_work(weights))
        else:
            budget = int(exact_pairs)
        pairs = select_pairs(delta, terms.beta, pn, budget)
        if len(pairs):
            refine_pairs(weights, pn, pairs)
            delta = _assemble_delta(weights, kind, terms, pn, rho, inv_r, diffs)
        iu, ju = np.triu_indices(n, k=1)
        estimated = int(np.count_nonzero(~pn.exact[iu, ju] & (delta[iu, ju] > 0)))
        if estimated:
            notes.append(f"{estimated} of {total} expert pairs use the triangle/Frobenius "
                         "estimate of ‖ΔW‖₂ (still a proven bound, looser); --exact-pairs all "
                         "(exact_pairs='all') computes every pair exactly")
    grow = 1.0 + 64.0 * U  # covers the rounding of the few operations combining the terms
    beta = terms.beta * grow
    delta = delta * grow
    np.fill_diagonal(delta, 0.0)
    return Bounds(beta=beta, delta=delta, kind=kind, method="analytic",
                  radius=rho if kind in GATED_KINDS else None, min_radius=r, notes=tuple(notes))
