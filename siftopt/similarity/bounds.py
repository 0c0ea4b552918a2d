"""Expert-similarity constants β (skip) and δ (replace) from expert weights.

The accuracy constraint of docs/model.md §4 is certified when, for the token states x that reach
the layer,

    ‖E_i(x)‖ ≤ β[i]·‖x‖        and        ‖E_i(x) − E_j(x)‖ ≤ δ[i][j]·‖x‖.

β and δ are dimensionless (output norm per unit of input norm, Euclidean norms in ℝ^d). This
module computes them from the expert weights of one MoE layer:

* ``analytic``: proven upper bounds from spectral norms (docs/bounds.md has every proof);
* ``empirical``: the largest ratio seen over calibration, random and adversarial inputs. An
  *estimate* of the true constants from below, never a bound.

Expert weights (``.npz``, :func:`load_expert_weights`): ``w1`` (N, h, d), ``w2`` (N, d, h),
optional ``w3`` (N, h, d) for gated experts, optional biases ``b1`` (N, h) and ``b2`` (N, d).
With d the model (token-state) dimension and h the expert's hidden dimension:

* plain kinds ``relu``, ``gelu``, ``silu``: ``E(x) = w2 σ(w1 x + b1) + b2``;
* gated kind ``swiglu``: ``E(x) = w2 (silu(w1 x + b1) ⊙ (w3 x)) + b2`` (Mixtral naming: w1 gate,
  w3 up, w2 down).

Validity domain of the returned constants (recorded in :class:`Bounds`):

* plain experts without biases: every x ∈ ℝ^d;
* gated experts: the ball ‖x‖ ≤ ``radius`` (the map is quadratic, no global β exists);
* experts whose output at x = 0 may be non-zero (biases): ‖x‖ ≥ ``min_radius`` (no bound of the
  form ‖E(x)‖ ≤ β‖x‖ can hold near x = 0 when E(0) ≠ 0).
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.linalg.blas import dsyrk as _dsyrk
from scipy.linalg.lapack import dpotrf as _dpotrf
from scipy.special import expit, ndtr

from siftopt.errors import InputError, UsageError

KINDS: tuple[str, ...] = ("relu", "gelu", "silu", "swiglu")
METHODS: tuple[str, ...] = ("analytic", "empirical")
GATED_KINDS: frozenset[str] = frozenset({"swiglu"})
WEIGHT_KEYS: tuple[str, ...] = ("w1", "w2", "w3", "b1", "b2")

# --- activation constants ------------------------------------------------------------------
# Lipschitz constants sup_t |σ'(t)|, computed to ~1e-15 and rounded UP at the 10th decimal
# (docs/bounds.md §2; tests/test_bounds.py recomputes them):
#   gelu (erf):  maximum of Φ(t) + tφ(t) at t = √2:  1/2 + erf(1)/2 + e^{-1}/√π = 1.12890414518515…
#   gelu (tanh approximation of PyTorch/JAX):  max at t ≈ 1.41850:              1.12899306865877…
#   silu:        maximum of s(t)(1 + t(1 − s(t))) at t·tanh(t/2) = 2, t ≈ 2.39936: 1.09983932012887…
# Both common gelu implementations are covered: the constant used for ``gelu`` is the larger one.
RELU_LIP: float = 1.0
GELU_ERF_LIP: float = 1.1289041452
GELU_TANH_LIP: float = 1.1289930687
SILU_LIP: float = 1.0998393202
_LIPSCHITZ: dict[str, float] = {
    "relu": RELU_LIP,
    "gelu": max(GELU_ERF_LIP, GELU_TANH_LIP),
    "silu": SILU_LIP,
    "swiglu": SILU_LIP,
}

# --- floating-point and work parameters -----------------------------------------------------
_U: float = float(np.finfo(np.float64).eps) / 2.0  # unit roundoff of float64
_SMALL_GRAM = 32  # Gram matrices up to this size: symmetric eigensolver; above: Lanczos
#                   estimate certified by a Cholesky factorisation
_CHUNK = 1 << 22  # elements per temporary array (~32 MiB of float64)
#: Work allowed for exact pairwise spectral norms under ``exact_pairs="auto"`` (flop-like
#: units, ≈ a few seconds on two cores).
AUTO_PAIR_WORK: float = 6e10
#: Work allowed for the adversarial ascent of the empirical method (flops, ≈ seconds).
EMPIRICAL_WORK: float = 2e10


# ============================================================================================
# Data types
# ============================================================================================


@dataclass(frozen=True, eq=False)
class ExpertWeights:
    """Validated weights of the N experts of one MoE layer (arrays are not copied; never modified).

    Shapes: ``w1`` (N, h, d), ``w2`` (N, d, h), ``w3`` (N, h, d) or None, ``b1`` (N, h) or None,
    ``b2`` (N, d) or None; d is the token-state dimension, h the expert hidden dimension.
    ``source`` names the file (or ``<arrays>``) in error messages.
    """

    w1: np.ndarray
    w2: np.ndarray
    w3: np.ndarray | None = None
    b1: np.ndarray | None = None
    b2: np.ndarray | None = None
    source: str = "<arrays>"

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], *, source: str = "<arrays>") -> ExpertWeights:
        """Validate a mapping of the contract's arrays (same checks as the file loader)."""
        return _validate_arrays(arrays, source)

    @property
    def num_experts(self) -> int:
        return int(self.w1.shape[0])

    @property
    def ffn_dim(self) -> int:
        """h, the hidden dimension of each expert."""
        return int(self.w1.shape[1])

    @property
    def model_dim(self) -> int:
        """d, the token-state dimension."""
        return int(self.w1.shape[2])

    @property
    def gated(self) -> bool:
        return self.w3 is not None

    @property
    def has_b1(self) -> bool:
        return self.b1 is not None and bool(np.any(self.b1 != 0))

    @property
    def has_b2(self) -> bool:
        return self.b2 is not None and bool(np.any(self.b2 != 0))


@dataclass(frozen=True, eq=False)
class Bounds:
    """β (N,) and δ (N, N) with the kind, method and validity domain they were computed for.

    ``radius``: the constants hold for ‖x‖ ≤ radius (None: no upper limit). ``min_radius``: they
    hold for ‖x‖ ≥ min_radius (None: no lower limit). ``method == "empirical"`` means the numbers
    are estimates, not bounds. ``notes`` are human remarks (not part of the JSON contract).
    """

    beta: np.ndarray
    delta: np.ndarray
    kind: str
    method: str
    radius: float | None
    min_radius: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_bound(self) -> bool:
        return self.method == "analytic"

    def to_json_dict(self) -> dict[str, Any]:
        """The ``bounds`` block of an instance file (``min_radius`` only when it is set)."""
        out: dict[str, Any] = {
            "beta": [float(b) for b in self.beta],
            "delta": [[float(v) for v in row] for row in self.delta],
            "kind": self.kind,
            "method": self.method,
            "radius": None if self.radius is None else float(self.radius),
        }
        if self.min_radius is not None:
            out["min_radius"] = float(self.min_radius)
        return out


# ============================================================================================
# Loading and validation
# ============================================================================================


def load_expert_weights(path: str) -> ExpertWeights:
    """Read and validate an expert-weight ``.npz`` file (see the module docstring).

    Raises :class:`InputError` with a one-line message naming the file and the array for a
    missing or unreadable file, missing or unknown arrays, wrong dtypes or shapes, NaN or inf.
    """
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("no such file", file=path) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a .npz file", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a NumPy .npz archive", file=path) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError("is a single .npy array, expected a .npz archive with arrays "
                         "w1, w2 (and optionally w3, b1, b2)", file=path)
    arrays: dict[str, Any] = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                reason = "object arrays are not allowed" if "pickle" in str(exc) else str(exc)
                raise InputError(f"cannot read array: {reason}", file=path, path=key) from None
    return _validate_arrays(arrays, path)


def _validate_arrays(arrays: Mapping[str, Any], source: str) -> ExpertWeights:
    unknown = sorted(k for k in arrays if k not in WEIGHT_KEYS)
    if unknown:
        raise InputError(f"unknown array (allowed: {', '.join(WEIGHT_KEYS)})",
                         file=source, path=unknown[0])
    for key in ("w1", "w2"):
        if key not in arrays:
            raise InputError("missing (required: w1 (N, h, d) and w2 (N, d, h))",
                             file=source, path=key)
    checked = {k: _as_real_array(arrays[k], source, k) for k in WEIGHT_KEYS if k in arrays}
    w1 = checked["w1"]
    if w1.ndim != 3 or 0 in w1.shape:
        raise InputError(f"must have shape (N, h, d) with N, h, d >= 1, got {w1.shape}",
                         file=source, path="w1")
    n, h, d = w1.shape
    expected = {"w2": (n, d, h), "w3": (n, h, d), "b1": (n, h), "b2": (n, d)}
    names = {"w2": "(N, d, h)", "w3": "(N, h, d)", "b1": "(N, h)", "b2": "(N, d)"}
    for key, shape in expected.items():
        if key in checked and checked[key].shape != shape:
            raise InputError(f"must have shape {names[key]} = {shape} to match w1 {w1.shape}, "
                             f"got {checked[key].shape}", file=source, path=key)
    for key, arr in checked.items():
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InputError(f"contains {arr[where]!r} at index {list(where)}; all entries "
                             "must be finite", file=source, path=key)
    return ExpertWeights(w1=w1, w2=checked["w2"], w3=checked.get("w3"), b1=checked.get("b1"),
                         b2=checked.get("b2"), source=source)


def _as_real_array(value: Any, source: str, key: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise InputError(f"must be a real numeric array, got dtype {arr.dtype}",
                         file=source, path=key)
    if arr.dtype.kind == "f" and arr.dtype.itemsize >= 4:
        return arr  # float32 / float64 kept as stored; computations upcast per slice
    return arr.astype(np.float64)


def _check_kind(weights: ExpertWeights, kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in GATED_KINDS and not weights.gated:
        raise InputError(f"missing: kind {kind} needs the up projection w3 (N, h, d)",
                         file=weights.source, path="w3")
    if kind not in GATED_KINDS and weights.gated:
        raise InputError(f"present, so the experts are gated; kind {kind} is a plain FFN "
                         "(use --kind swiglu)", file=weights.source, path="w3")
    return kind


def _needs_min_radius(weights: ExpertWeights, kind: str) -> bool:
    """Whether E(0) can be non-zero, so that bounds need ‖x‖ ≥ min_radius."""
    if kind in GATED_KINDS:
        return weights.has_b2  # E(0) = b2 for gated experts
    return weights.has_b1 or weights.has_b2  # E(0) = w2 σ(b1) + b2


def _positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise UsageError(f"{name}: must be a positive finite number, got {value!r}")
    return v


def _check_domain(weights: ExpertWeights, kind: str, radius: float | None,
                  min_radius: float | None) -> tuple[float | None, float | None, list[str]]:
    """Validate the radii; return (rho, r, notes) with the radii the bounds depend on."""
    rho = _positive(radius, "radius")
    r = _positive(min_radius, "min_radius")
    notes: list[str] = []
    if rho is not None and r is not None and r > rho:
        raise UsageError(f"min_radius: must be <= radius ({rho}), got {r}")
    if kind in GATED_KINDS and rho is None:
        raise UsageError(f"radius: required for kind {kind}: a gated expert is quadratic in x, "
                         "so its bounds hold only on a ball ‖x‖ <= radius")
    if _needs_min_radius(weights, kind):
        if r is None:
            raise UsageError(
                "min_radius: required because the biases make E(0) != 0, and no bound "
                "‖E(x)‖ <= β‖x‖ holds near x = 0; bounds then hold for ‖x‖ >= min_radius")
    elif r is not None:
        notes.append("min_radius ignored: E(0) = 0, the bounds hold down to x = 0")
        r = None
    if kind not in GATED_KINDS and rho is not None:
        notes.append(f"radius ignored: bounds for kind {kind} hold for every ‖x‖")
        rho = None
    return rho, r, notes


# ============================================================================================
# Activations
# ============================================================================================


def lipschitz_constant(kind: str) -> float:
    """Lip(σ) = sup_t |σ'(t)| (rounded up) of the activation of ``kind`` (swiglu: silu)."""
    if kind not in _LIPSCHITZ:
        raise UsageError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    return _LIPSCHITZ[kind]


def growth_constant(kind: str) -> float:
    """sup_{t≠0} |σ(t)/t|: 1 for relu, gelu and silu (σ(t) = t·c(t) with c(t) ∈ [0, 1])."""
    lipschitz_constant(kind)  # validates the kind
    return 1.0


def _act(kind: str, u: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return np.maximum(u, 0.0)
    if kind == "gelu":
        return u * ndtr(u)
    return u * expit(u)  # silu, swiglu


def _act_grad(kind: str, u: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return (u > 0).astype(np.float64)
    if kind == "gelu":
        return ndtr(u) + u * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    s = expit(u)
    return s * (1.0 + u * (1.0 - s))


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def expert_forward(weights: ExpertWeights, i: int, x: np.ndarray, kind: str) -> np.ndarray:
    """Outputs E_i(x) of expert ``i`` for a batch ``x`` of shape (B, d) (or (d,)) -> same shape."""
    _check_kind(weights, kind)
    if not 0 <= i < weights.num_experts:
        raise IndexError(f"expert {i} out of range 0..{weights.num_experts - 1}")
    xa = _f64(x)
    single = xa.ndim == 1
    xb = xa[None, :] if single else xa
    if xb.ndim != 2 or xb.shape[1] != weights.model_dim:
        raise ValueError(f"x must have shape (B, {weights.model_dim}), got {xa.shape}")
    y = _forward(weights, i, xb, kind)
    return y[0] if single else y


def _pre(weights: ExpertWeights, k: int, x: np.ndarray) -> np.ndarray:
    u = x @ _f64(weights.w1[k]).T
    if weights.b1 is not None:
        u += _f64(weights.b1[k])
    return u


def _forward(weights: ExpertWeights, k: int, x: np.ndarray, kind: str) -> np.ndarray:
    """E_k(x) for x (B, d) -> (B, d)."""
    a = _act(kind, _pre(weights, k, x))
    if weights.w3 is not None:
        a = a * (x @ _f64(weights.w3[k]).T)
    y = a @ _f64(weights.w2[k]).T
    if weights.b2 is not None:
        y += _f64(weights.b2[k])
    return y


def _vjp(weights: ExpertWeights, k: int, x: np.ndarray, kind: str, cot: np.ndarray
         ) -> np.ndarray:
    """J_k(x)ᵀ·cot for each row: x (B, d), cot (B, d) -> (B, d)."""
    u = _pre(weights, k, x)
    z = cot @ _f64(weights.w2[k])  # (B, h) = W2ᵀ cot
    w1 = _f64(weights.w1[k])
    if weights.w3 is None:
        return (_act_grad(kind, u) * z) @ w1
    w3 = _f64(weights.w3[k])
    v = x @ w3.T
    return (_act_grad(kind, u) * v * z) @ w1 + (_act(kind, u) * z) @ w3


# ============================================================================================
# Certified spectral norms
# ============================================================================================


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
    per = max(1, _CHUNK // max(1, m * n + min(m, n) ** 2))
    for s in range(0, nb, per):
        blk = _f64(a[s:s + per]).copy()
        if row_scale is not None:
            blk *= _f64(row_scale[s:s + per])[:, :, None]
        if col_scale is not None:
            blk *= _f64(col_scale[s:s + per])[:, None, :]
        out[s:s + per] = _norms_of_block(blk)
    if row_scale is not None or col_scale is not None:
        # rounding of the scaled entries (‖ΔA‖₂ ≤ 2u‖A‖_F ≤ 2u√k‖A‖₂) and of s versus 1/s
        out *= 1.0 + 2.0 * (min(m, n) + 4) * _U
    return out


def _norms_of_block(blk: np.ndarray) -> np.ndarray:
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
    lam = np.array([_certify_lambda_max(g, t) for g, t in zip(gram, theta, strict=True)])
    return _finish_norm(lam, f2, big, k)


def _finish_norm(lam: np.ndarray, f2: np.ndarray, m: int, k: int) -> np.ndarray:
    """√ of an upper bound on λ_max(AᵀA) from λ ≥ λ_max(Ĝ) and ‖A‖_F² (docs/bounds.md §6).

    Ĝ, the computed k×k Gram matrix of A (m ≥ k), differs from AᵀA by at most γ_m‖A‖_F² in
    2-norm; for the small-k eigensolver path λ̂ errs by at most p(k)·u·‖Ĝ‖₂ with p(k) ≤ 16k.
    Both are added; ‖A‖₂² ≤ ‖A‖_F² is used when smaller.
    """
    f2_up = f2 * (1.0 + 2.0 * (m * k + 2) * _U)
    lam_up = np.maximum(lam, 0.0) + 2.0 * (m + 16 * k + 16) * _U * f2_up
    return np.sqrt(np.minimum(lam_up, f2_up)) * (1.0 + 4.0 * _U)


def _lanczos_max(gram: np.ndarray, steps: int = 32) -> np.ndarray:
    """Lanczos estimates (B,) of λ_max for a stack of symmetric matrices (B, k, k).

    An estimate only (usually within 1e-6 relative for 32 steps); it seeds the Cholesky
    certificate of :func:`_certify_lambda_max`, which decides the bound.
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


def _certify_lambda_max(g: np.ndarray, theta: float) -> float:
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
        shift = 2.0 * (k + 2) * _U * ((k + 1) * tau + tr)
        h = -g
        h[diag] += tau - shift
        _, info = _dpotrf(h, lower=0, clean=0, overwrite_a=1)
        if info == 0:
            return tau
    return float(np.linalg.eigvalsh(g)[-1]) + 2.0 * (16 * k + 16) * _U * tr


def _psd_lambda_max_upper(k: np.ndarray) -> np.ndarray:
    """Certified upper bounds (B,) on λ_max of a stack (B, h, h) of computed symmetric matrices
    with non-negative diagonals (as given, rounding of their entries not included)."""
    h = k.shape[1]
    if h <= _SMALL_GRAM:
        fro = np.sqrt(np.einsum("bij,bij->b", k, k))
        return np.linalg.eigvalsh(k)[:, -1] + 2.0 * (16 * h + 16) * _U * fro
    theta = _lanczos_max(k)
    return np.array([_certify_lambda_max(g, t) for g, t in zip(k, theta, strict=True)])


def _kr_sym_norm(a: np.ndarray, b: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Upper bounds (B,) on ‖diag(s)·K(A_b, B_b)‖₂, K = rows sym(a_k ⊗ b_k) (docs/bounds.md §5).

    For x ∈ ℝ^d, (A x) ⊙ (B x) = K (x ⊗ x) with ‖x ⊗ x‖ = ‖x‖², so ‖(Ax) ⊙ (Bx)‖ ≤ ‖K‖·‖x‖².
    K Kᵀ = ½(AAᵀ ⊙ BBᵀ + ABᵀ ⊙ BAᵀ) is h×h: no d²-sized matrix is formed. Inputs (B, h, d).
    """
    nb, h, d = a.shape
    out = np.empty(nb)
    per = max(1, _CHUNK // max(1, 4 * h * h + 2 * h * d))
    for s0 in range(0, nb, per):
        aa, bb = _f64(a[s0:s0 + per]), _f64(b[s0:s0 + per])
        gab = np.matmul(aa, bb.transpose(0, 2, 1))
        k = 0.5 * (np.matmul(aa, aa.transpose(0, 2, 1)) * np.matmul(bb, bb.transpose(0, 2, 1))
                   + gab * gab.transpose(0, 2, 1))
        p = np.sqrt(np.einsum("bkd,bkd->bk", aa, aa) * np.einsum("bkd,bkd->bk", bb, bb))
        if scale is not None:
            sc = _f64(scale[s0:s0 + per])
            k *= sc[:, :, None] * sc[:, None, :]
            p = p * np.abs(sc)
        # entrywise error of the computed k is at most (2γ_d + 3u)·p_k·p_l
        lam = _psd_lambda_max_upper(k) + 6.0 * (d + 4) * _U * np.sum(p * p, axis=1)
        out[s0:s0 + per] = np.sqrt(np.maximum(lam, 0.0)) * (1.0 + 4.0 * _U)
    return out


def _row_norms_up(a: np.ndarray, axis: int) -> np.ndarray:
    """Upper bounds on the Euclidean norms along ``axis`` (one rounding-error margin)."""
    n = a.shape[axis]
    return np.sqrt(np.sum(np.square(_f64(a)), axis=axis)) * (1.0 + (n + 4) * _U)


def _vec_norm_up(a: np.ndarray) -> np.ndarray:
    """Upper bounds on the 2-norms of the rows of a 2-D array."""
    return _row_norms_up(a, axis=-1)


# ============================================================================================
# Pairwise norms of differences
# ============================================================================================


def _equal_pairs(a: np.ndarray) -> np.ndarray:
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


def _pairwise_frobenius_upper(a: np.ndarray) -> np.ndarray:
    """(N, N) upper bounds on ‖A_i − A_j‖_F via one Gram matrix of the flattened experts.

    ‖A_i − A_j‖_F² = f_i + f_j − 2⟨A_i, A_j⟩ is computed with absolute error at most
    3γ_n(f_i + f_j) (n entries per expert), which is added before the square root.
    """
    n = a.shape[0]
    flat = a.reshape(n, -1)
    size = flat.shape[1]
    gram = np.zeros((n, n))
    step = max(1, _CHUNK // max(1, n))
    for s in range(0, size, step):
        blk = _f64(flat[:, s:s + step])
        gram += blk @ blk.T
    sq = np.diag(gram).copy()
    tot = sq[:, None] + sq[None, :]
    d2 = tot - 2.0 * gram + 3.0 * (size + 4) * _U * tot * 2.0
    return np.sqrt(np.maximum(d2, 0.0)) * (1.0 + 4.0 * _U)


def _pairwise_rowmax_upper(a: np.ndarray) -> np.ndarray:
    """(N, N) upper bounds on max_k ‖A_i[k, :] − A_j[k, :]‖ for a stack (N, h, d)."""
    n, h, d = a.shape
    best = np.zeros((n, n))
    per = max(1, _CHUNK // max(1, n * max(n, d)))
    for s in range(0, h, per):
        rows = _f64(a[:, s:s + per, :]).transpose(1, 0, 2)  # (hb, N, d)
        gram = np.matmul(rows, rows.transpose(0, 2, 1))  # (hb, N, N)
        sq = np.einsum("kij,kij->ki", rows, rows)
        tot = sq[:, :, None] + sq[:, None, :]
        d2 = tot - 2.0 * gram + 6.0 * (d + 4) * _U * tot
        best = np.maximum(best, d2.max(axis=0))
    return np.sqrt(np.maximum(best, 0.0)) * (1.0 + 4.0 * _U)


def _pairwise_vec_norms(v: np.ndarray, ord_inf: bool = False) -> np.ndarray:
    """(N, N) upper bounds on ‖v_i − v_j‖₂ (or ‖·‖_∞) for rows of v (N, n)."""
    n = v.shape[0]
    out = np.empty((n, n))
    vv = _f64(v)
    for i in range(n):
        diff = vv[i][None, :] - vv
        if ord_inf:
            out[i] = np.abs(diff).max(axis=1) * (1.0 + 2.0 * _U)
        else:
            out[i] = _vec_norm_up(diff)
    return out


@dataclass
class _PairNorms:
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


def _cheap_pair_norms(weights: ExpertWeights, terms: _ExpertTerms) -> _PairNorms:
    """Triangle/Frobenius estimates for every pair: O(N²·h·d) work with BLAS, no eigensolver."""

    def spectral(a: np.ndarray, norms: np.ndarray) -> np.ndarray:
        est = np.minimum(norms[:, None] + norms[None, :], _pairwise_frobenius_upper(a))
        est[_equal_pairs(a)] = 0.0
        return est

    d1 = spectral(weights.w1, terms.n1)
    d2 = spectral(weights.w2, terms.n2)
    d3 = r1 = r3 = None
    if weights.w3 is not None:
        assert terms.n3 is not None and terms.row1 is not None and terms.row3 is not None
        d3 = spectral(weights.w3, terms.n3)
        m1, m3 = terms.row1.max(axis=1), terms.row3.max(axis=1)
        r1 = np.minimum(np.minimum(_pairwise_rowmax_upper(weights.w1), d1),
                        m1[:, None] + m1[None, :])
        r3 = np.minimum(np.minimum(_pairwise_rowmax_upper(weights.w3), d3),
                        m3[:, None] + m3[None, :])
    n = weights.num_experts
    ka = kv = None
    if weights.w3 is not None:
        ka, kv = np.full((n, n), np.inf), np.full((n, n), np.inf)
    return _PairNorms(d1=d1, d2=d2, d3=d3, r1=r1, r3=r3, exact=np.eye(n, dtype=bool), ka=ka,
                      kv=kv)


def _pair_work(weights: ExpertWeights) -> float:
    """Estimated work (flop-like units) of the exact spectral norms of one pair."""
    h, d = weights.ffn_dim, weights.model_dim
    k, big = min(h, d), max(h, d)
    per = big * k * k + 2.0 * k ** 3 + 4.0 * h * d
    if not weights.gated:
        return 2 * per
    return 3 * per + 4 * (3.0 * h * h * d + 2.0 * h ** 3)  # + four Khatri–Rao norms


def _refine_pairs(weights: ExpertWeights, pn: _PairNorms, pairs: np.ndarray) -> None:
    """Replace the estimates of ``pairs`` (P, 2) by certified exact spectral norms, in place."""
    h, d = weights.ffn_dim, weights.model_dim
    per = max(1, _CHUNK // max(1, h * d + min(h, d) ** 2))
    mats: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = [
        (weights.w1, pn.d1, pn.r1), (weights.w2, pn.d2, None)]
    if weights.w3 is not None:
        assert pn.d3 is not None
        mats.append((weights.w3, pn.d3, pn.r3))
    # the computed difference has entrywise relative error ≤ u, so its norms are inflated by
    # (1 + 2(k+4)u) (spectral, ‖ΔA‖₂ ≤ u‖A‖_F ≤ u√k‖A‖₂), (1 + 2(h+4)u) (Khatri–Rao, same
    # argument on the rows of K) and (1 + 4u) (row norms)
    grow_k = 1.0 + 2.0 * (min(h, d) + 4) * _U
    grow_h = 1.0 + 2.0 * (h + 4) * _U
    for s in range(0, len(pairs), per):
        pi, pj = pairs[s:s + per, 0], pairs[s:s + per, 1]
        for arr, dst, rowdst in mats:
            diff = _f64(arr[pi]) - _f64(arr[pj])
            val = np.minimum(_norms_of_block(diff) * grow_k, dst[pi, pj])
            dst[pi, pj] = dst[pj, pi] = val
            if rowdst is not None:
                rmax = _row_norms_up(diff, axis=2).max(axis=1) * (1.0 + 4.0 * _U)
                rowdst[pi, pj] = rowdst[pj, pi] = np.minimum(rmax, rowdst[pi, pj])
        if weights.w3 is not None:
            assert pn.ka is not None and pn.kv is not None
            dw1 = _f64(weights.w1[pi]) - _f64(weights.w1[pj])
            dw3 = _f64(weights.w3[pi]) - _f64(weights.w3[pj])
            pn.ka[pi, pj] = _kr_sym_norm(dw1, weights.w3[pi]) * grow_h
            pn.ka[pj, pi] = _kr_sym_norm(dw1, weights.w3[pj]) * grow_h
            pn.kv[pi, pj] = _kr_sym_norm(weights.w1[pi], dw3) * grow_h
            pn.kv[pj, pi] = _kr_sym_norm(weights.w1[pj], dw3) * grow_h
        pn.exact[pi, pj] = pn.exact[pj, pi] = True


# ============================================================================================
# Analytic bounds
# ============================================================================================


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
    c2 = np.sqrt(np.sum(np.square(_f64(w2)), axis=1))  # (N, h) column norms of W2
    r1 = np.sqrt(np.sum(np.square(_f64(w1)), axis=2))  # (N, h) row norms of W1
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
        b1 = _f64(weights.b1) if weights.b1 is not None else np.zeros((n, h))
        b2 = _f64(weights.b2) if weights.b2 is not None else np.zeros((n, weights.model_dim))
        b1n, b2n = _vec_norm_up(b1), _vec_norm_up(b2)
        col2 = _row_norms_up(weights.w2, axis=1)  # (N, h)
        w2b1 = np.minimum(n2 * b1n, np.sum(np.abs(b1) * col2, axis=1) * (1 + (h + 2) * _U))
        c_growth = grow * w2b1 + b2n  # ‖E(x)‖ ≤ G·P‖x‖ + c_growth
        sb1 = _act(kind, b1)
        e0 = np.einsum("ndh,nh->nd", _f64(weights.w2), sb1) + b2
        f2 = np.sqrt(np.sum(np.square(_f64(weights.w2)), axis=(1, 2)))
        err = 4.0 * (h + 8) * _U * (f2 * _vec_norm_up(sb1) + b2n)
        c_lip = (_vec_norm_up(e0) + err) * (1 + 4 * _U)  # ≥ ‖E(0)‖
        beta = np.minimum(grow * prod + c_growth * inv_r, lip * prod + c_lip * inv_r)
        sb1n = _vec_norm_up(sb1) * (1 + 16 * _U)
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
    row1 = _row_norms_up(weights.w1, axis=2)  # (N, h)
    row3 = _row_norms_up(weights.w3, axis=2)
    b1 = np.abs(_f64(weights.b1)) if weights.has_b1 else np.zeros((n, h))  # type: ignore[arg-type]
    b1_2 = _vec_norm_up(b1)
    b1_inf = b1.max(axis=1) * (1.0 + 2.0 * _U)
    u_inf = (row1 * rho + b1).max(axis=1)  # ‖u‖_∞ = max_k |w1_k·x + b1_k| on the ball
    u_2 = n1 * rho + b1_2
    # (c) σ(u) ⊙ v = diag(c)·K(W1, W3)(x ⊗ x) + diag(c ⊙ b1) W3 x with c = σ(u)/u ∈ [0, 1]
    kr = _kr_sym_norm(weights.w1, weights.w3)
    bias_w3 = b1_inf * n3  # ‖b1 ⊙ (W3 x)‖ ≤ ‖b1‖_∞‖W3‖‖x‖
    sig = np.minimum(np.minimum(u_inf * n3, u_2 * row3.max(axis=1)), rho * kr + bias_w3)
    # (c) with the hidden units rescaled to balance W2's columns against K's rows
    w1r, w3r = _f64(weights.w1), _f64(weights.w3)
    krow = np.sqrt(0.5 * (row1**2 * row3**2 + np.einsum("nkd,nkd->nk", w1r, w3r) ** 2))
    cs, s_k = _balanced_scales(weights.w2, krow[:, :, None])  # krow as one-column "W1"
    form_c = rho * np.minimum(n2 * kr, spectral_norm_upper(weights.w2, col_scale=cs)
                              * _kr_sym_norm(weights.w1, weights.w3, scale=s_k))
    if weights.has_b1:  # + W2 diag(c ⊙ b1) W3 x, with |c_k b1_k| ≤ |b1_k|
        form_c = form_c + (spectral_norm_upper(weights.w2, col_scale=np.sqrt(b1))
                           * spectral_norm_upper(weights.w3, row_scale=np.sqrt(b1)))
    b2n = _vec_norm_up(_f64(weights.b2)) if weights.has_b2 else np.zeros(n)  # type: ignore[arg-type]
    beta = np.minimum(n2 * sig, form_c) + b2n * inv_r
    return _ExpertTerms(beta=beta, n1=n1, n2=n2, n3=n3, sig=sig, row1=row1, row3=row3,
                        u_inf=u_inf, u_2=u_2, b1_inf=b1_inf)


def _bias_diffs(weights: ExpertWeights, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(‖Δb1‖₂, ‖Δb1‖_∞, ‖Δb2‖₂) for all pairs, zeros where there are no biases."""
    n = weights.num_experts
    z = np.zeros((n, n))
    db1 = _pairwise_vec_norms(weights.b1) if weights.has_b1 else z  # type: ignore[arg-type]
    db1i = (_pairwise_vec_norms(weights.b1, ord_inf=True)  # type: ignore[arg-type]
            if weights.has_b1 else z)
    db2 = _pairwise_vec_norms(weights.b2) if weights.has_b2 else z  # type: ignore[arg-type]
    return db1, db1i, db2


def _delta_plain(t: _ExpertTerms, pn: _PairNorms, lip: float, inv_r: float,
                 db1: np.ndarray, db2: np.ndarray) -> np.ndarray:
    """E_i − E_j = ΔW2 σ(u_i) + W2_j(σ(u_i) − σ(u_j)) + Δb2, and the mirror split."""
    dsig = lip * (pn.d1 + db1 * inv_r)  # ‖σ(u_i) − σ(u_j)‖ ≤ dsig‖x‖
    split1 = pn.d2 * t.sig[:, None] + t.n2[None, :] * dsig
    split2 = pn.d2 * t.sig[None, :] + t.n2[:, None] * dsig
    return np.minimum(split1, split2) + db2 * inv_r


def _delta_gated(t: _ExpertTerms, pn: _PairNorms, lip: float, rho: float, inv_r: float,
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


def _assemble_delta(weights: ExpertWeights, kind: str, t: _ExpertTerms, pn: _PairNorms,
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


def _select_pairs(delta: np.ndarray, beta: np.ndarray, pn: _PairNorms, budget_pairs: int
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
    kind = _check_kind(weights, kind)
    rho, r, notes = _check_domain(weights, kind, radius, min_radius)
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
        pn = _cheap_pair_norms(weights, terms)
        diffs = _bias_diffs(weights, kind)
        delta = _assemble_delta(weights, kind, terms, pn, rho, inv_r, diffs)
        total = n * (n - 1) // 2
        if exact_pairs == "all":
            budget = total
        elif exact_pairs == "auto":
            budget = int(AUTO_PAIR_WORK // _pair_work(weights))
        else:
            budget = int(exact_pairs)
        pairs = _select_pairs(delta, terms.beta, pn, budget)
        if len(pairs):
            _refine_pairs(weights, pn, pairs)
            delta = _assemble_delta(weights, kind, terms, pn, rho, inv_r, diffs)
        iu, ju = np.triu_indices(n, k=1)
        estimated = int(np.count_nonzero(~pn.exact[iu, ju] & (delta[iu, ju] > 0)))
        if estimated:
            notes.append(f"{estimated} of {total} expert pairs use the triangle/Frobenius "
                         "estimate of ‖ΔW‖₂ (still a proven bound, looser); --exact-pairs all "
                         "(exact_pairs='all') computes every pair exactly")
    grow = 1.0 + 64.0 * _U  # covers the rounding of the few operations combining the terms
    beta = terms.beta * grow
    delta = delta * grow
    np.fill_diagonal(delta, 0.0)
    return Bounds(beta=beta, delta=delta, kind=kind, method="analytic",
                  radius=rho if kind in GATED_KINDS else None, min_radius=r, notes=tuple(notes))


# ============================================================================================
# Empirical estimates
# ============================================================================================


def _check_calibration(weights: ExpertWeights, calibration: np.ndarray | None,
                       rho: float | None, r: float | None, source: str) -> np.ndarray:
    d = weights.model_dim
    if calibration is None:
        return np.zeros((0, d))
    x = np.asarray(calibration)
    if x.dtype.kind not in "fiu":
        raise InputError(f"must be a real numeric array, got dtype {x.dtype}", file=source)
    x = _f64(x)
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
    rows = np.sqrt(np.mean(np.square(_f64(weights.w1))) * weights.model_dim)
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
        nxt = np.einsum("nhd,nh->nd", _f64(w), np.einsum("nhd,nd->nh", _f64(w), v))
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
            out[idx] = (_forward(weights, k, x[idx], kind) if cot is None
                        else _vjp(weights, k, x[idx], kind, cot[idx]))
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
    per = max(1, _CHUNK // max(1, n * max(n, d)))
    for s in range(0, len(pool), per):
        xb = pool[s:s + per]
        rows = np.arange(s, s + len(xb))
        nx = np.linalg.norm(xb, axis=1)
        y = np.stack([_forward(weights, k, xb, kind) for k in range(n)], axis=1)  # (b, N, d)
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
    kind = _check_kind(weights, kind)
    rho, r, notes = _check_domain(weights, kind, radius, min_radius)
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


def compute_bounds(weights: ExpertWeights, kind: str, method: str = "analytic", *,
                   radius: float | None = None, min_radius: float | None = None,
                   calibration: np.ndarray | None = None, seed: int = 0,
                   exact_pairs: int | Literal["auto", "all"] = "auto",
                   calibration_source: str = "calibration") -> Bounds:
    """Dispatch to :func:`analytic_bounds` or :func:`empirical_bounds`."""
    if method == "analytic":
        if calibration is not None:
            raise UsageError("calibration: only used by --method empirical")
        return analytic_bounds(weights, kind, radius, min_radius=min_radius,
                               exact_pairs=exact_pairs)
    if method == "empirical":
        return empirical_bounds(weights, kind, radius, calibration, seed, min_radius=min_radius,
                                calibration_source=calibration_source)
    raise UsageError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
