"""The expert maps E_i of the weight contract: activations, forward pass, Jacobian products.

The activation facts the analytic bounds rest on (docs/bounds.md §2) live here too: the
Lipschitz constant sup_t |σ'(t)| and the growth constant sup_{t≠0} |σ(t)/t| of each kind.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit, ndtr

from siftopt.errors import UsageError
from siftopt.similarity.linalg import f64
from siftopt.similarity.weights import KINDS, ExpertWeights, check_kind

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


def lipschitz_constant(kind: str) -> float:
    """Lip(σ) = sup_t |σ'(t)| (rounded up) of the activation of ``kind`` (swiglu: silu)."""
    if kind not in _LIPSCHITZ:
        raise UsageError(f"kind: must be one of {', '.join(KINDS)}, got {kind!r}")
    return _LIPSCHITZ[kind]


def growth_constant(kind: str) -> float:
    """sup_{t≠0} |σ(t)/t|: 1 for relu, gelu and silu (σ(t) = t·c(t) with c(t) ∈ [0, 1])."""
    lipschitz_constant(kind)  # validates the kind
    return 1.0


def act(kind: str, u: np.ndarray) -> np.ndarray:
    """σ(u) as the forward pass computes it (kind ``gelu``: the exact, erf form)."""
    if kind == "relu":
        return np.maximum(u, 0.0)
    if kind == "gelu":
        return u * ndtr(u)
    return u * expit(u)  # silu, swiglu


#: √(2/π), the scale of the tanh approximation of gelu.
_GELU_TANH_SCALE = math.sqrt(2.0 / math.pi)


def gelu_tanh(u: np.ndarray) -> np.ndarray:
    """The tanh approximation of gelu (PyTorch ``approximate="tanh"``, JAX's default),
    ``½u(1 + tanh(√(2/π)(u + 0.044715u³)))``, evaluated as ``u·expit(2√(2/π)(u + 0.044715u³))``
    (the same function: ``½(1 + tanh z) = expit(2z)``) so that it keeps a small relative
    error where ``1 + tanh`` would cancel."""
    return u * expit(2.0 * _GELU_TANH_SCALE * (u + 0.044715 * u * u * u))


def act_variants(kind: str, u: np.ndarray) -> tuple[np.ndarray, ...]:
    """σ(u) for every implementation that ``kind`` covers: for ``gelu`` the erf form and the
    tanh approximation (a bound that uses values of σ, such as ‖E(0)‖ = ‖W2σ(b1) + b2‖, must
    hold for both, docs/bounds.md §2 and §4); one array for the other kinds."""
    if kind == "gelu":
        return act(kind, u), gelu_tanh(u)
    return (act(kind, u),)


def act_grad(kind: str, u: np.ndarray) -> np.ndarray:
    if kind == "relu":
        return (u > 0).astype(np.float64)
    if kind == "gelu":
        return ndtr(u) + u * np.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)
    s = expit(u)
    return s * (1.0 + u * (1.0 - s))


def expert_forward(weights: ExpertWeights, i: int, x: np.ndarray, kind: str) -> np.ndarray:
    """Outputs E_i(x) of expert ``i`` for a batch ``x`` of shape (B, d) (or (d,)) -> same shape."""
    check_kind(weights, kind)
    if not 0 <= i < weights.num_experts:
        raise IndexError(f"expert {i} out of range 0..{weights.num_experts - 1}")
    xa = f64(x)
    single = xa.ndim == 1
    xb = xa[None, :] if single else xa
    if xb.ndim != 2 or xb.shape[1] != weights.model_dim:
        raise ValueError(f"x must have shape (B, {weights.model_dim}), got {xa.shape}")
    y = forward(weights, i, xb, kind)
    return y[0] if single else y


def _pre(weights: ExpertWeights, k: int, x: np.ndarray) -> np.ndarray:
    u = x @ f64(weights.w1[k]).T
    if weights.b1 is not None:
        u += f64(weights.b1[k])
    return u


def forward(weights: ExpertWeights, k: int, x: np.ndarray, kind: str) -> np.ndarray:
    """E_k(x) for x (B, d) -> (B, d)."""
    a = act(kind, _pre(weights, k, x))
    if weights.w3 is not None:
        a = a * (x @ f64(weights.w3[k]).T)
    y = a @ f64(weights.w2[k]).T
    if weights.b2 is not None:
        y += f64(weights.b2[k])
    return y


def vjp(weights: ExpertWeights, k: int, x: np.ndarray, kind: str, cot: np.ndarray
        ) -> np.ndarray:
    """J_k(x)ᵀ·cot for each row: x (B, d), cot (B, d) -> (B, d)."""
    u = _pre(weights, k, x)
    z = cot @ f64(weights.w2[k])  # (B, h) = W2ᵀ cot
    w1 = f64(weights.w1[k])
    if weights.w3 is None:
        return (act_grad(kind, u) * z) @ w1
    w3 = f64(weights.w3[k])
    v = x @ w3.T
    return (act_grad(kind, u) * v * z) @ w1 + (act(kind, u) * z) @ w3
