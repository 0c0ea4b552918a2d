"""Certified linear algebra: upper bounds on norms that are never below the exact value.

Spectral norms of stacks of matrices (a symmetric eigensolver for small Gram matrices, above
that a Lanczos estimate certified by a Cholesky factorisation), the Khatri–Rao norm of the
gated experts, row and vector norms, and norms of the differences of all pairs in a stack. Every
result is inflated by the floating-point error bounds of docs/bounds.md §6. Only numpy and
scipy; nothing here knows about experts.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.linalg.blas import dsyrk as _dsyrk
from scipy.linalg.lapack import dpotrf as _dpotrf

# --- floating-point parameters -------------------------------------------------------------
U: float = float(np.finfo(np.float64).eps) / 2.0  # unit roundoff of float64
_SMALL_GRAM = 32  # Gram matrices up to this size: symmetric eigensolver; above: Lanczos
#                   estimate certified by a Cholesky factorisation
CHUNK = 1 << 22  # elements per temporary array (~32 MiB of float64)


def f64(a: np.ndarray) -> np.ndarray:
    """``a`` as a float64 array (no copy when it already is one)."""
    return np.asarray(a, dtype=np.float64)


def spectral_norm_upper(mats: np.ndarray, *, row_scale: np.ndarray | None = None,
                        col_scale: np.ndarray | None = None) -> np.ndarray:
    """Certified upper bounds on ‖A_b‖₂ for a stack ``mats`` (B, m, n) -> (B,) (or 2-D -> float).

    Optional ``row_scale`` (B, m) / ``col_scale`` (B, n) bound ‖diag(r) A_b diag(c)‖₂ instead
    (applied chunk by chunk, no full scaled copy). The 2-norm is √λ_max of the k×k Gram matrix
    (k = min(m, n)): a symmetric eigensolver for k ≤ 32, above it a Lanczos estimate certified
    by a Cholesky factorisation (within ~1e-4 relative of the exact norm). The result is
    inflated by the floating-point error bounds of docs/bounds.md §6, so it is never below the
    exact norm.
    """
    a = np.asarray(mats)
    if a.ndim == 2:
        rs = None if row_scale is None else np.asarray(row_scale)[None]
        cs = None if col_scale is None else np.asarray(col_scale)[None]
        return spectral_norm_upper(a[None], row_scale=rs, col_scale=cs)[0]
    if a.ndim != 3:
        raise ValueError(f"expected a (B, m, n) stack, got shape {a.shape}")
    nb, m, n = a.shape
    out = np.empty(nb)
    per = max(1, CHUNK // max(1, m * n + min(m, n) ** 2))
    for s in range(0, nb, per):
        blk = f64(a[s:s + per]).copy()
        if row_scale is not None:
            blk *= f64(row_scale[s:s + per])[:, :, None]
        if col_scale is not None:
            blk *= f64(col_scale[s:s + per])[:, None, :]
        out[s:s + per] = norms_of_block(blk)
    if row_scale is not None or col_scale is not None:
        # rounding of the scaled entries (‖ΔA‖₂ ≤ 2u‖A‖_F ≤ 2u√k‖A‖₂) and of s versus 1/s
        out *= 1.0 + 2.0 * (min(m, n) + 4) * U
    return out


def norms_of_block(blk: np.ndarray) -> np.ndarray:
    """Certified ‖·‖₂ of each matrix in a C-contiguous float64 block (B, m, n)."""
    nb, m, n = blk.shape
    k, big = min(m, n), max(m, n)
    f2 = np.einsum("bij,bij->b", blk, blk)
    if k <= _SMALL_GRAM:
        small = blk if n <= m else blk.transpose(0, 2, 1)
        lam = np.linalg.eigvalsh(np.matmul(small.transpose(0, 2, 1), small))[:, -1]
        return _finish_norm(lam, f2, big, k)
    gram = np.empty((nb, k, k))
    trans = 0 if n <= m else 1
    for b in range(nb):
        # blk[b].T is Fortran-contiguous (n, m): syrk gives AᵀA (trans 0) or AAᵀ (trans 1)
        g = _dsyrk(1.0, blk[b].T, trans=trans, lower=0)
        gram[b] = g + np.triu(g, 1).T
    theta = _lanczos_max(gram)
    lam = np.array([certify_lambda_max(g, t) for g, t in zip(gram, theta, strict=True)])
    return _finish_norm(lam, f2, big, k)


def _finish_norm(lam: np.ndarray, f2: np.ndarray, m: int, k: int) -> np.ndarray:
    """√ of an upper bound on λ_max(AᵀA) from λ ≥ λ_max(Ĝ) and ‖A‖_F² (docs/bounds.md §6).

    Ĝ, the computed k×k Gram matrix of A (m ≥ k), differs from AᵀA by at most γ_m‖A‖_F² in
    2-norm; for the small-k eigensolver path λ̂ errs by at most p(k)·u·‖Ĝ‖₂ with p(k) ≤ 16k.
    Both are added; ‖A‖₂² ≤ ‖A‖_F² is used when smaller.
    """
    f2_up = f2 * (1.0 + 2.0 * (m * k + 2) * U)
    lam_up = np.maximum(lam, 0.0) + 2.0 * (m + 16 * k + 16) * U * f2_up
    return np.sqrt(np.minimum(lam_up, f2_up)) * (1.0 + 4.0 * U)


def _lanczos_max(gram: np.ndarray, steps: int = 32) -> np.ndarray:
    """Lanczos estimates (B,) of λ_max for a stack of symmetric matrices (B, k, k).

    An estimate only (usually within 1e-6 relative for 32 steps); it seeds the Cholesky
    certificate of :func:`certify_lambda_max`, which decides the bound.
    """
    nb, k, _ = gram.shape
    q = min(k, steps)
    basis = np.zeros((nb, q, k))
    v = np.random.default_rng(12345).standard_normal(k)  # fixed: results are reproducible
    basis[:, 0] = v / np.linalg.norm(v)
    alpha, beta = np.zeros((nb, q)), np.zeros((nb, q))
    for j in range(q):
        w = np.matmul(gram, basis[:, j, :, None])[..., 0]
        alpha[:, j] = np.einsum("bk,bk->b", w, basis[:, j])
        for _ in range(2):  # full re-orthogonalisation, twice
            c = np.einsum("bqk,bk->bq", basis[:, :j + 1], w)
            w -= np.einsum("bqk,bq->bk", basis[:, :j + 1], c)
        if j + 1 < q:
            nw = np.linalg.norm(w, axis=1)
            live = nw > 1e-12 * np.maximum(np.abs(alpha[:, :j + 1]).max(axis=1), 1e-300)
            beta[:, j] = np.where(live, nw, 0.0)
            basis[live, j + 1] = w[live] / nw[live, None]
    tri = np.zeros((nb, q, q))
    idx = np.arange(q)
    tri[:, idx, idx] = alpha
    tri[:, idx[:-1], idx[1:]] = beta[:, :q - 1]
    tri[:, idx[1:], idx[:-1]] = beta[:, :q - 1]
    return np.linalg.eigvalsh(tri)[:, -1]


def certify_lambda_max(g: np.ndarray, theta: float) -> float:
    """τ with λ_max(g) ≤ τ for a symmetric PSD float64 matrix g (k, k), certified by Cholesky.

    If the floating-point Cholesky factorisation of (τ − s)I − g succeeds with the shift
    s = 2(k+2)u·((k+1)τ + tr g), then τI − g is positive semidefinite (the backward-error bound
    of Cholesky, |ΔH| ≤ γ_{k+1}|Rᵀ||R|, plus the rounding of the diagonal; docs/bounds.md §6),
    so λ_max(g) ≤ τ. τ = θ(1 + rel) for a ladder of rel; an exact eigensolver is the fallback.
    """
    k = g.shape[0]
    tr = float(np.trace(g))
    if tr <= 0.0:
        return 0.0  # g is PSD with zero trace: g = 0
    base = max(float(theta), tr / k)  # the mean eigenvalue is ≤ λ_max
    diag = np.diag_indices(k)
    for rel in (1e-4, 3e-3, 0.1, 1.0):
        tau = base * (1.0 + rel)
        shift = 2.0 * (k + 2) * U * ((k + 1) * tau + tr)
        h = -g
        h[diag] += tau - shift
        _, info = _dpotrf(h, lower=0, clean=0, overwrite_a=1)
        if info == 0:
            return tau
    return float(np.linalg.eigvalsh(g)[-1]) + 2.0 * (16 * k + 16) * U * tr


def _psd_lambda_max_upper(k: np.ndarray) -> np.ndarray:
    """Certified upper bounds (B,) on λ_max of a stack (B, h, h) of computed symmetric matrices
    with non-negative diagonals (as given, rounding of their entries not included)."""
    h = k.shape[1]
    if h <= _SMALL_GRAM:
        fro = np.sqrt(np.einsum("bij,bij->b", k, k))
        return np.linalg.eigvalsh(k)[:, -1] + 2.0 * (16 * h + 16) * U * fro
    theta = _lanczos_max(k)
    return np.array([certify_lambda_max(g, t) for g, t in zip(k, theta, strict=True)])


def kr_sym_norm(a: np.ndarray, b: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Upper bounds (B,) on ‖diag(s)·K(A_b, B_b)‖₂, K = rows sym(a_k ⊗ b_k) (docs/bounds.md §5).

    For x ∈ ℝ^d, (A x) ⊙ (B x) = K (x ⊗ x) with ‖x ⊗ x‖ = ‖x‖², so ‖(Ax) ⊙ (Bx)‖ ≤ ‖K‖·‖x‖².
    K Kᵀ = ½(AAᵀ ⊙ BBᵀ + ABᵀ ⊙ BAᵀ) is h×h: no d²-sized matrix is formed. Inputs (B, h, d).
    """
    nb, h, d = a.shape
    out = np.empty(nb)
    per = max(1, CHUNK // max(1, 4 * h * h + 2 * h * d))
    for s0 in range(0, nb, per):
        aa, bb = f64(a[s0:s0 + per]), f64(b[s0:s0 + per])
        gab = np.matmul(aa, bb.transpose(0, 2, 1))
        k = 0.5 * (np.matmul(aa, aa.transpose(0, 2, 1)) * np.matmul(bb, bb.transpose(0, 2, 1))
                   + gab * gab.transpose(0, 2, 1))
        p = np.sqrt(np.einsum("bkd,bkd->bk", aa, aa) * np.einsum("bkd,bkd->bk", bb, bb))
        if scale is not None:
            sc = f64(scale[s0:s0 + per])
            k *= sc[:, :, None] * sc[:, None, :]
            p = p * np.abs(sc)
        # entrywise error of the computed k is at most (2γ_d + 3u)·p_k·p_l
        lam = _psd_lambda_max_upper(k) + 6.0 * (d + 4) * U * np.sum(p * p, axis=1)
        out[s0:s0 + per] = np.sqrt(np.maximum(lam, 0.0)) * (1.0 + 4.0 * U)
    return out


def row_norms_up(a: np.ndarray, axis: int) -> np.ndarray:
    """Upper bounds on the Euclidean norms along ``axis`` (one rounding-error margin)."""
    n = a.shape[axis]
    return np.sqrt(np.sum(np.square(f64(a)), axis=axis)) * (1.0 + (n + 4) * U)


def vec_norm_up(a: np.ndarray) -> np.ndarray:
    """Upper bounds on the 2-norms of the rows of a 2-D array."""
    return row_norms_up(a, axis=-1)


def equal_pairs(a: np.ndarray) -> np.ndarray:
    """(N, N) bool: experts whose arrays are bitwise identical (so their difference is 0)."""
    n = a.shape[0]
    groups: dict[bytes, list[int]] = {}
    for i in range(n):
        key = hashlib.blake2b(np.ascontiguousarray(a[i]).tobytes(), digest_size=16).digest()
        groups.setdefault(key, []).append(i)
    eq = np.eye(n, dtype=bool)
    for members in groups.values():
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if np.array_equal(a[i], a[j]):
                    eq[i, j] = eq[j, i] = True
    return eq


def pairwise_frobenius_upper(a: np.ndarray) -> np.ndarray:
    """(N, N) upper bounds on ‖A_i − A_j‖_F via one Gram matrix of the flattened experts.

    ‖A_i − A_j‖_F² = f_i + f_j − 2⟨A_i, A_j⟩ is computed with absolute error at most
    3γ_n(f_i + f_j) (n entries per expert), which is added before the square root.
    """
    n = a.shape[0]
    flat = a.reshape(n, -1)
    size = flat.shape[1]
    gram = np.zeros((n, n))
    step = max(1, CHUNK // max(1, n))
    for s in range(0, size, step):
        blk = f64(flat[:, s:s + step])
        gram += blk @ blk.T
    sq = np.diag(gram).copy()
    tot = sq[:, None] + sq[None, :]
    d2 = tot - 2.0 * gram + 3.0 * (size + 4) * U * tot * 2.0
    return np.sqrt(np.maximum(d2, 0.0)) * (1.0 + 4.0 * U)


def pairwise_rowmax_upper(a: np.ndarray) -> np.ndarray:
    """(N, N) upper bounds on max_k ‖A_i[k, :] − A_j[k, :]‖ for a stack (N, h, d)."""
    n, h, d = a.shape
    best = np.zeros((n, n))
    per = max(1, CHUNK // max(1, n * max(n, d)))
    for s in range(0, h, per):
        rows = f64(a[:, s:s + per, :]).transpose(1, 0, 2)  # (hb, N, d)
        gram = np.matmul(rows, rows.transpose(0, 2, 1))  # (hb, N, N)
        sq = np.einsum("kij,kij->ki", rows, rows)
        tot = sq[:, :, None] + sq[:, None, :]
        d2 = tot - 2.0 * gram + 6.0 * (d + 4) * U * tot
        best = np.maximum(best, d2.max(axis=0))
    return np.sqrt(np.maximum(best, 0.0)) * (1.0 + 4.0 * U)


def pairwise_vec_norms(v: np.ndarray, ord_inf: bool = False) -> np.ndarray:
    """(N, N) upper bounds on ‖v_i − v_j‖₂ (or ‖·‖_∞) for rows of v (N, n)."""
    n = v.shape[0]
    out = np.empty((n, n))
    vv = f64(v)
    for i in range(n):
        diff = vv[i][None, :] - vv
        if ord_inf:
            out[i] = np.abs(diff).max(axis=1) * (1.0 + 2.0 * U)
        else:
            out[i] = vec_norm_up(diff)
    return out
