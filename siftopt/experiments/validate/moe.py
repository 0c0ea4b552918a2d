"""A small Mixture-of-Experts classifier in plain numpy: forward pass, manual gradients, Adam.

Used by :mod:`siftopt.experiments.validate` to check on a real trained model that the accuracy
constraint of docs/model.md §4 holds. The network, for an input batch ``X`` of shape (B, p):

* embedding ``h = X·Weᵀ + be`` (B, d) — ``h`` is the token state x of docs/model.md §4;
* router ``g = softmax(h·Wrᵀ)`` (B, N); top-K set ``𝒦`` = the K largest gates (ties toward the
  lower expert index, as :func:`siftopt.model.instance.topk_from_gates`), weights renormalised over
  the top-K: ``w_k = g_{i_k} / Σ_{k'} g_{i_k'}`` (Mixtral style);
* MoE output ``y = Σ_k w_k·E_{i_k}(h)`` (B, d) with FFN experts ``E_i(x) = W2_i σ(W1_i x)``
  (``w1`` (N, f, d), ``w2`` (N, d, f), no biases: the weight contract of
  :mod:`siftopt.similarity.weights`, for which the analytic β/δ hold for every x);
* residual and head: ``logits = (h + y)·Woᵀ + bo`` (B, C).

Training (:func:`train`) minimises the cross-entropy plus a Switch-style load-balancing loss
``α·N·Σ_i f_i·P_i`` (f_i: fraction of top-K slots routed to i, P_i: mean gate of i), with
Adam and decoupled weight decay, on minibatches drawn from a seeded generator: the same seed
gives the same weights. The MoE starts from a briefly trained dense model whose FFN is copied
into every expert with a small perturbation (*sparse upcycling*), which is how many real MoEs
are initialised and which makes experts similar enough for replacement to matter.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

ACTIVATIONS: tuple[str, ...] = ("relu", "gelu")
_SQRT_2PI = math.sqrt(2.0 * math.pi)

#: Parameter names and their roles (shapes in :class:`MoEConfig` terms).
PARAM_NAMES: tuple[str, ...] = ("we", "be", "wr", "w1", "w2", "wo", "bo")


@dataclass(frozen=True)
class MoEConfig:
    """Sizes of the network: p inputs, d model dim, f expert hidden dim, N experts, C classes."""

    input_dim: int = 64
    model_dim: int = 32
    ffn_dim: int = 64
    num_experts: int = 16
    top_k: int = 2
    num_classes: int = 10
    activation: str = "relu"

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"top_k must be in 1..{self.num_experts}, got {self.top_k}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Epochs are passes over the training set."""

    dense_epochs: int = 15
    moe_epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    aux_weight: float = 0.1
    upcycle_noise: float = 0.05  # perturbation of the copied FFN, relative to its RMS entry
    seed: int = 0


@dataclass
class MoEParams:
    """The weights. Shapes: we (d, p), be (d,), wr (N, d), w1 (N, f, d), w2 (N, d, f),
    wo (C, d), bo (C,)."""

    we: np.ndarray
    be: np.ndarray
    wr: np.ndarray
    w1: np.ndarray
    w2: np.ndarray
    wo: np.ndarray
    bo: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def copy(self) -> MoEParams:
        return MoEParams(**{k: v.copy() for k, v in self.arrays().items()})


@dataclass
class TrainLog:
    """Per-epoch mean training loss (cross-entropy + auxiliary) of both phases."""

    dense_loss: list[float] = field(default_factory=list)
    moe_loss: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Activations and routing
# --------------------------------------------------------------------------------------------


def activation(kind: str, u: np.ndarray) -> np.ndarray:
    """σ(u) elementwise: relu, or the exact (erf) gelu ``u·Φ(u)`` as in
    :mod:`siftopt.similarity.experts`."""
    if kind == "relu":
        return np.maximum(u, 0.0)
    return u * ndtr(u)


def activation_grad(kind: str, u: np.ndarray) -> np.ndarray:
    """σ'(u) elementwise (relu: 1 for u > 0, else 0)."""
    if kind == "relu":
        return (u > 0).astype(u.dtype)
    return ndtr(u) + u * np.exp(-0.5 * u * u) / _SQRT_2PI


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, n) logits."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def gates(params: MoEParams, h: np.ndarray) -> np.ndarray:
    """Router probabilities ``softmax(h·Wrᵀ)``: h (B, d) -> (B, N)."""
    return softmax(h @ params.wr.T)


def topk_route(g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-K experts (B, K) int64 in descending gate order (ties: lower index) and their
    renormalised weights (B, K), exactly as :func:`siftopt.model.instance.topk_from_gates`."""
    order = np.argsort(-g, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(g, order, axis=1)
    return order.astype(np.int64), chosen / chosen.sum(axis=1, keepdims=True)


def embed(params: MoEParams, x: np.ndarray) -> np.ndarray:
    """Token states ``h = X·Weᵀ + be``: X (B, p) -> (B, d)."""
    return x @ params.we.T + params.be


def head(params: MoEParams, h: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logits of the residual stream: ``(h + y)·Woᵀ + bo``; h, y (B, d) -> (B, C)."""
    return (h + y) @ params.wo.T + params.bo


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def _glorot(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_out, fan_in = shape[-2], shape[-1]
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def init_params(cfg: MoEConfig, rng: np.random.Generator) -> MoEParams:
    """Random weights (Glorot normal, zero biases, small router). Every expert starts equal
    to expert 0; :func:`upcycle` perturbs them after the dense phase."""
    n, d, f = cfg.num_experts, cfg.model_dim, cfg.ffn_dim
    w1 = _glorot(rng, (f, d))
    w2 = _glorot(rng, (d, f)) * 0.5
    return MoEParams(
        we=_glorot(rng, (d, cfg.input_dim)), be=np.zeros(d),
        wr=rng.normal(0.0, 0.01, size=(n, d)),
        w1=np.repeat(w1[None], n, axis=0), w2=np.repeat(w2[None], n, axis=0),
        wo=_glorot(rng, (cfg.num_classes, d)), bo=np.zeros(cfg.num_classes),
    )


def upcycle(params: MoEParams, rng: np.random.Generator, noise: float) -> MoEParams:
    """Copy expert 0 (the trained dense FFN) into every expert, each perturbed by Gaussian
    noise of standard deviation ``noise`` × the RMS entry of the copied matrix."""
    out = params.copy()
    n = params.w1.shape[0]
    for name in ("w1", "w2"):
        base = getattr(params, name)[0]
        scale = noise * float(np.sqrt(np.mean(base * base)))
        setattr(out, name, base[None] + rng.normal(0.0, scale, size=(n, *base.shape)))
    return out


# --------------------------------------------------------------------------------------------
# Training forward/backward
# --------------------------------------------------------------------------------------------


@dataclass
class _Cache:
    x: np.ndarray  # (B, p)
    h: np.ndarray  # (B, d)
    g: np.ndarray  # (B, N) router probabilities
    topk: np.ndarray  # (B, K)
    gate_mat: np.ndarray  # (B, N) renormalised top-K weight of each expert, 0 elsewhere
    u: np.ndarray  # (N, B, f) pre-activations
    a: np.ndarray  # (N, B, f) activations
    e: np.ndarray  # (N, B, d) expert outputs
    z: np.ndarray  # (B, d) residual stream after the MoE
    probs: np.ndarray  # (B, C)


def _forward_train(params: MoEParams, cfg: MoEConfig, x: np.ndarray, dense: bool) -> _Cache:
    """Forward pass keeping intermediates. ``dense``: expert 0 alone with weight 1."""
    h = embed(params, x)
    b = h.shape[0]
    g = gates(params, h)
    gate_mat = np.zeros_like(g)
    if dense:
        topk = np.zeros((b, 1), dtype=np.int64)
        gate_mat[:, 0] = 1.0
        w1, w2 = params.w1[:1], params.w2[:1]
    else:
        topk, weights = topk_route(g, cfg.top_k)
        np.put_along_axis(gate_mat, topk, weights, axis=1)
        w1, w2 = params.w1, params.w2
    u = np.einsum("bd,nfd->nbf", h, w1)
    a = activation(cfg.activation, u)
    e = np.einsum("nbf,ndf->nbd", a, w2)
    y = np.einsum("bn,nbd->bd", gate_mat[:, : e.shape[0]], e)
    z = h + y
    probs = softmax(z @ params.wo.T + params.bo)
    return _Cache(x=x, h=h, g=g, topk=topk, gate_mat=gate_mat, u=u, a=a, e=e, z=z, probs=probs)


def loss_and_grads(params: MoEParams, cfg: MoEConfig, x: np.ndarray, labels: np.ndarray,
                   aux_weight: float, dense: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy (+ load-balancing loss unless ``dense``) of a batch and its exact
    gradients with respect to every parameter (same shapes as the parameters).

    x (B, p) float, labels (B,) int. In the dense phase only expert 0 is used (weight 1) and
    the router is untouched.
    """
    c = _forward_train(params, cfg, x, dense)
    b = x.shape[0]
    n = cfg.num_experts
    loss = -float(np.mean(np.log(c.probs[np.arange(b), labels] + 1e-300)))
    dlogits = c.probs.copy()
    dlogits[np.arange(b), labels] -= 1.0
    dlogits /= b
    grads = {name: np.zeros_like(v) for name, v in params.arrays().items()}
    grads["wo"] = dlogits.T @ c.z
    grads["bo"] = dlogits.sum(axis=0)
    dz = dlogits @ params.wo  # (B, d): gradient of the residual stream
    used = c.e.shape[0]
    de = c.gate_mat[:, :used].T[:, :, None] * dz[None]  # (n_used, B, d)
    grads["w2"][:used] = np.einsum("nbd,nbf->ndf", de, c.a)
    du = np.einsum("nbd,ndf->nbf", de, params.w2[:used]) * activation_grad(cfg.activation, c.u)
    grads["w1"][:used] = np.einsum("nbf,bd->nfd", du, c.h)
    dh = dz + np.einsum("nbf,nfd->bd", du, params.w1[:used])
    if not dense:
        dgate = np.einsum("bd,nbd->bn", dz, c.e)  # ∂L/∂(gate weight of expert n)
        sel = np.take_along_axis(c.g, c.topk, axis=1)
        total = sel.sum(axis=1, keepdims=True)
        wts = sel / total
        dsel = np.take_along_axis(dgate, c.topk, axis=1)
        dg = np.zeros_like(c.g)
        inner = (dsel * wts).sum(axis=1, keepdims=True)
        np.put_along_axis(dg, c.topk, (dsel - inner) / total, axis=1)
        frac = np.bincount(c.topk.ravel(), minlength=n) / c.topk.size
        loss += aux_weight * n * float(np.dot(frac, c.g.mean(axis=0)))
        dg += aux_weight * n * frac[None, :] / b
        dr = c.g * (dg - (dg * c.g).sum(axis=1, keepdims=True))  # softmax backward
        grads["wr"] = dr.T @ c.h
        dh += dr @ params.wr
    grads["we"] = dh.T @ c.x
    grads["be"] = dh.sum(axis=0)
    return loss, grads


# --------------------------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------------------------


class Adam:
    """Adam with decoupled weight decay (AdamW) on the weight matrices (not the biases)."""

    def __init__(self, params: MoEParams, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.lr, self.wd, self.betas, self.eps = lr, weight_decay, betas, eps
        self.m = {k: np.zeros_like(v) for k, v in params.arrays().items()}
        self.v = {k: np.zeros_like(v) for k, v in params.arrays().items()}
        self.t = 0

    def step(self, params: MoEParams, grads: dict[str, np.ndarray], lr: float | None = None
             ) -> None:
        """One in-place update of ``params``."""
        self.t += 1
        b1, b2 = self.betas
        rate = self.lr if lr is None else lr
        for name in PARAM_NAMES:
            p, gr = getattr(params, name), grads[name]
            self.m[name] = b1 * self.m[name] + (1 - b1) * gr
            self.v[name] = b2 * self.v[name] + (1 - b2) * gr * gr
            mhat = self.m[name] / (1 - b1**self.t)
            vhat = self.v[name] / (1 - b2**self.t)
            if not name.startswith("b"):
                p *= 1.0 - rate * self.wd
            p -= rate * mhat / (np.sqrt(vhat) + self.eps)


def _minibatches(rng: np.random.Generator, n: int, size: int) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for s in range(0, n, size):
        yield order[s:s + size]


def _run_phase(params: MoEParams, cfg: MoEConfig, tc: TrainConfig, x: np.ndarray,
               labels: np.ndarray, rng: np.random.Generator, epochs: int, dense: bool
               ) -> list[float]:
    opt = Adam(params, tc.learning_rate, tc.weight_decay)
    steps = epochs * math.ceil(len(x) / tc.batch_size)
    history: list[float] = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for idx in _minibatches(rng, len(x), tc.batch_size):
            lr = tc.learning_rate * 0.5 * (1 + math.cos(math.pi * opt.t / max(steps, 1)))
            loss, grads = loss_and_grads(params, cfg, x[idx], labels[idx], tc.aux_weight,
                                         dense=dense)
            opt.step(params, grads, lr)
            total += loss * len(idx)
            count += len(idx)
        history.append(total / count)
    return history


def train(cfg: MoEConfig, tc: TrainConfig, x: np.ndarray, labels: np.ndarray
          ) -> tuple[MoEParams, TrainLog]:
    """Train on x (n, p) float, labels (n,) int in 0..C-1: a dense phase (expert 0 only),
    upcycling into N experts, then the MoE phase. Deterministic for a given ``tc.seed``."""
    rng = np.random.default_rng(tc.seed)
    params = init_params(cfg, rng)
    log = TrainLog()
    log.dense_loss = _run_phase(params, cfg, tc, x, labels, rng, tc.dense_epochs, dense=True)
    params = upcycle(params, rng, tc.upcycle_noise)
    log.moe_loss = _run_phase(params, cfg, tc, x, labels, rng, tc.moe_epochs, dense=False)
    return params, log


__all__ = ["ACTIVATIONS", "Adam", "MoEConfig", "MoEParams", "TrainConfig", "TrainLog",
           "activation", "activation_grad", "embed", "gates", "head", "init_params",
           "loss_and_grads", "softmax", "topk_route", "train", "upcycle"]
