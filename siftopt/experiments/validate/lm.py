"""A small byte-level Mixture-of-Experts language model in plain numpy: forward pass, manual
gradients, Adam.

The network reads B sequences of T bytes (token ids 0..255) and predicts the next byte at every
position. With d the model dimension (units: none, every quantity is a real number):

* embedding ``h = emb[byte] + pos[t]`` (B, T, d);
* ``layers`` pre-norm blocks, each

  - attention: ``a = rmsnorm(h; ln1)``, causal multi-head softmax attention of ``heads``
    heads, ``h ← h + attn(a)·woᵀ``;
  - MoE: ``x = rmsnorm(h; ln2)`` — the token state x of docs/model.md §4 — router
    ``softmax(x·wrᵀ)`` over N experts, top-K with weights renormalised over the top-K
    (Mixtral style, ties toward the lower index), SwiGLU experts
    ``E_i(x) = w2_i (silu(w1_i x) ⊙ (w3_i x))`` without biases (the weight contract of
    :mod:`siftopt.similarity.weights`), ``h ← h + Σ_k w_k E_{i_k}(x)``;

* head ``logits = rmsnorm(h; lnf)·headᵀ`` (B, T, 256).

``rmsnorm(v; g) = g ⊙ v / sqrt(mean(v²) + RMS_EPS)``, so ``‖x‖ ≤ √d·max|ln2|`` for every input:
the certified radius on which the SwiGLU bounds of docs/bounds.md §5 hold.

Training (:func:`train`) minimises the next-byte cross-entropy plus a Switch-style
load-balancing loss per MoE layer, with AdamW, a cosine learning rate and seeded minibatches
of random windows (same seed → same weights). A dense phase (expert 0 alone, weight 1) comes
first; its FFN is then copied into every expert with a small perturbation (*sparse
upcycling*, as many real MoEs start), and the MoE phase follows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: ε of the RMSNorm (added to the mean square).
RMS_EPS: float = 1e-6
Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class LMConfig:
    """Sizes: vocabulary V (bytes), context T, model dim d, heads, expert hidden dim h,
    N experts, top-K, MoE layers."""

    vocab: int = 256
    context: int = 64
    model_dim: int = 64
    heads: int = 4
    ffn_dim: int = 128
    num_experts: int = 8
    top_k: int = 2
    layers: int = 2

    def __post_init__(self) -> None:
        if self.model_dim % self.heads:
            raise ValueError(f"model_dim {self.model_dim} must be a multiple of heads")
        if not 1 <= self.top_k <= self.num_experts:
            raise ValueError(f"top_k must be in 1..{self.num_experts}, got {self.top_k}")
        if self.layers < 1:
            raise ValueError("layers must be >= 1")


@dataclass(frozen=True)
class LMTrainConfig:
    """Optimisation settings; steps are minibatches of ``batch`` windows of T + 1 bytes."""

    dense_steps: int = 250
    moe_steps: int = 750
    batch: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    aux_weight: float = 0.02
    upcycle_noise: float = 0.1  # perturbation of the copied FFN, relative to its RMS entry
    seed: int = 0


@dataclass
class LMTrainLog:
    """Mean training loss (nats per byte, cross-entropy only) per block of 50 steps."""

    dense_loss: list[float] = field(default_factory=list)
    moe_loss: list[float] = field(default_factory=list)


def layer_names(layer: int) -> dict[str, str]:
    """Parameter keys of one block."""
    return {k: f"layers.{layer}.{k}" for k in
            ("ln1", "wq", "wk", "wv", "wo", "ln2", "wr", "w1", "w3", "w2")}


def init_params(cfg: LMConfig, rng: np.random.Generator, dtype: Any = np.float32) -> Params:
    """Random weights (normal, std 1/√fan_in; RMSNorm gains 1; small router). Every expert
    starts equal to expert 0; :func:`upcycle` perturbs them after the dense phase."""
    d, h, n = cfg.model_dim, cfg.ffn_dim, cfg.num_experts

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale / math.sqrt(shape[-1])).astype(dtype)

    p: Params = {"emb": normal(cfg.vocab, d, scale=math.sqrt(d)) * 0.5,
                 "pos": normal(cfg.context, d, scale=math.sqrt(d)) * 0.1}
    for layer in range(cfg.layers):
        k = layer_names(layer)
        p[k["ln1"]] = np.ones(d, dtype)
        for w in ("wq", "wk", "wv"):
            p[k[w]] = normal(d, d)
        p[k["wo"]] = normal(d, d, scale=0.5)
        p[k["ln2"]] = np.ones(d, dtype)
        p[k["wr"]] = normal(n, d, scale=0.01)
        p[k["w1"]] = np.repeat(normal(1, h, d), n, axis=0)
        p[k["w3"]] = np.repeat(normal(1, h, d), n, axis=0)
        p[k["w2"]] = np.repeat(normal(1, d, h, scale=0.5), n, axis=0)
    p["lnf"] = np.ones(d, dtype)
    p["head"] = normal(cfg.vocab, d)
    return p


def upcycle(p: Params, cfg: LMConfig, rng: np.random.Generator, noise: float) -> Params:
    """Copy expert 0 of every layer into all experts, each perturbed by Gaussian noise of
    standard deviation ``noise`` × the RMS entry of the copied matrix."""
    out = {k: v.copy() for k, v in p.items()}
    for layer in range(cfg.layers):
        for w in ("w1", "w3", "w2"):
            key = layer_names(layer)[w]
            base = p[key][0]
            scale = noise * float(np.sqrt(np.mean(base.astype(np.float64) ** 2)))
            out[key] = (base[None] + rng.normal(0.0, scale, (cfg.num_experts, *base.shape))
                        ).astype(base.dtype)
    return out


# --------------------------------------------------------------------------------------------
# Building blocks (forward and backward)
# --------------------------------------------------------------------------------------------


def silu(u: np.ndarray) -> np.ndarray:
    return u / (1.0 + np.exp(-u))


def silu_grad(u: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-u))
    return s * (1.0 + u * (1.0 - s))


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rmsnorm(v: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``g ⊙ v / r`` and r = sqrt(mean(v²) + RMS_EPS) over the last axis (kept as (..., 1))."""
    r = np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + RMS_EPS)
    return g * (v / r), r


def rmsnorm_back(dy: np.ndarray, v: np.ndarray, r: np.ndarray, g: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (dv, dg) of :func:`rmsnorm` for the upstream gradient dy."""
    gd = dy * g
    d = v.shape[-1]
    dv = gd / r - v * (np.sum(gd * v, axis=-1, keepdims=True) / (d * r**3))
    dg = np.sum((dy * (v / r)).reshape(-1, d), axis=0)
    return dv, dg


def topk_route(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Router over the last axis: probabilities, top-K experts (descending, ties toward the
    lower index, as :func:`siftopt.model.instance.topk_from_gates`) and renormalised weights."""
    g = softmax(logits)
    flat = g.reshape(-1, g.shape[-1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(flat, order, axis=1)
    weights = chosen / chosen.sum(axis=1, keepdims=True)
    shape = (*g.shape[:-1], k)
    return g, order.reshape(shape).astype(np.int64), weights.reshape(shape)


def causal_mask(t: int) -> np.ndarray:
    """(t, t) additive mask: 0 on and below the diagonal, a large negative number above."""
    return np.triu(np.full((t, t), -1e30), k=1)


def _heads(v: np.ndarray, heads: int) -> np.ndarray:
    b, t, d = v.shape
    return v.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def _merge(v: np.ndarray) -> np.ndarray:
    b, hh, t, dh = v.shape
    return v.transpose(0, 2, 1, 3).reshape(b, t, hh * dh)


# --------------------------------------------------------------------------------------------
# Training forward / backward
# --------------------------------------------------------------------------------------------


def _moe_forward(p: Params, k: dict[str, str], x2: np.ndarray, topk: np.ndarray,
                 weights: np.ndarray, used: int) -> tuple[np.ndarray, list[Any], np.ndarray]:
    """Sparse MoE on flattened states x2 (n, d): returns y (n, d), per-expert caches and the
    (n, N) matrix of each token's weight on each expert."""
    n = x2.shape[0]
    gate = np.zeros((n, p[k["wr"]].shape[0]), dtype=x2.dtype)
    np.put_along_axis(gate, topk, weights.astype(x2.dtype), axis=1)
    y = np.zeros_like(x2)
    caches = []
    for i in range(used):
        idx = np.flatnonzero((topk == i).any(axis=1))
        if idx.size == 0:
            caches.append(None)
            continue
        xi = x2[idx]
        u1, u3 = xi @ p[k["w1"]][i].T, xi @ p[k["w3"]][i].T
        s = silu(u1)
        a = s * u3
        e = a @ p[k["w2"]][i].T
        y[idx] += gate[idx, i, None] * e
        caches.append((idx, xi, u1, u3, s, a, e))
    return y, caches, gate


def loss_and_grads(p: Params, cfg: LMConfig, tokens: np.ndarray, aux_weight: float,
                   dense: bool = False) -> tuple[float, float, Params]:
    """Cross-entropy (nats per predicted byte) and total loss (+ load balancing unless
    ``dense``) of windows ``tokens`` (B, T + 1), and the exact gradients of the total loss.

    In the dense phase expert 0 alone serves every token with weight 1 and the routers get no
    gradient.
    """
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    b, t = inp.shape
    d, nh = cfg.model_dim, cfg.heads
    dh = d // nh
    h = p["emb"][inp] + p["pos"][:t]
    mask = causal_mask(t).astype(h.dtype)
    caches = []
    aux_total = 0.0
    for layer in range(cfg.layers):
        k = layer_names(layer)
        a, r1 = rmsnorm(h, p[k["ln1"]])
        q, kk, v = (_heads(a @ p[k[w]].T, nh) for w in ("wq", "wk", "wv"))
        att = softmax(q @ kk.transpose(0, 1, 3, 2) / math.sqrt(dh) + mask)
        o = _merge(att @ v)
        h_mid = h + o @ p[k["wo"]].T
        x, r2 = rmsnorm(h_mid, p[k["ln2"]])
        x2 = x.reshape(-1, d)
        if dense:
            topk = np.zeros((x2.shape[0], 1), dtype=np.int64)
            weights = np.ones((x2.shape[0], 1))
            g = None
            used = 1
        else:
            g, topk, weights = topk_route(x2 @ p[k["wr"]].T, cfg.top_k)
            used = cfg.num_experts
        y, ecache, gate = _moe_forward(p, k, x2, topk, weights, used)
        caches.append((h, a, r1, q, kk, v, att, o, h_mid, x, r2, g, topk, gate, ecache))
        h = h_mid + y.reshape(b, t, d)
    z, rf = rmsnorm(h, p["lnf"])
    probs = softmax(z @ p["head"].T)
    flat = probs.reshape(-1, cfg.vocab)
    rows = np.arange(flat.shape[0])
    ce = -float(np.mean(np.log(flat[rows, tgt.ravel()].astype(np.float64) + 1e-300)))
    grads = {name: np.zeros_like(v) for name, v in p.items()}
    dlog = probs.copy().reshape(-1, cfg.vocab)
    dlog[rows, tgt.ravel()] -= 1.0
    dlog = (dlog / flat.shape[0]).reshape(b, t, cfg.vocab)
    grads["head"] = dlog.reshape(-1, cfg.vocab).T @ z.reshape(-1, d)
    dh_, grads["lnf"] = rmsnorm_back(dlog @ p["head"], h, rf, p["lnf"])
    n_tok = b * t
    for layer in reversed(range(cfg.layers)):
        k = layer_names(layer)
        (h_in, a, r1, q, kk, v, att, o, h_mid, x, r2, g, topk, gate, ecache) = caches[layer]
        dy = dh_.reshape(-1, d)
        dx = np.zeros_like(dy)
        dgate = np.zeros_like(gate)
        for i, c in enumerate(ecache):
            if c is None:
                continue
            idx, xi, u1, u3, s, a_e, e = c
            de = gate[idx, i, None] * dy[idx]
            grads[k["w2"]][i] = de.T @ a_e
            da = de @ p[k["w2"]][i]
            du3 = da * s
            du1 = da * u3 * silu_grad(u1)
            grads[k["w1"]][i] = du1.T @ xi
            grads[k["w3"]][i] = du3.T @ xi
            dx[idx] += du1 @ p[k["w1"]][i] + du3 @ p[k["w3"]][i]
            dgate[idx, i] = np.sum(dy[idx] * e, axis=1)
        if g is not None:
            sel = np.take_along_axis(g, topk, axis=1)
            total = sel.sum(axis=1, keepdims=True)
            dsel = np.take_along_axis(dgate, topk, axis=1)
            inner = (dsel * (sel / total)).sum(axis=1, keepdims=True)
            dg = np.zeros_like(g)
            np.put_along_axis(dg, topk, (dsel - inner) / total, axis=1)
            frac = np.bincount(topk.ravel(), minlength=cfg.num_experts) / topk.size
            aux_total += aux_weight * cfg.num_experts * float(np.dot(frac, g.mean(axis=0)))
            dg += (aux_weight * cfg.num_experts * frac / n_tok)[None, :].astype(dg.dtype)
            dr = g * (dg - (dg * g).sum(axis=1, keepdims=True))
            grads[k["wr"]] = dr.T @ x.reshape(-1, d)
            dx += dr @ p[k["wr"]]
        dmid, grads[k["ln2"]] = rmsnorm_back(dx.reshape(b, t, d), h_mid, r2, p[k["ln2"]])
        dmid = dmid + dh_
        grads[k["wo"]] = dmid.reshape(-1, d).T @ o.reshape(-1, d)
        do = _heads(dmid @ p[k["wo"]], nh)
        datt = do @ v.transpose(0, 1, 3, 2)
        dv = att.transpose(0, 1, 3, 2) @ do
        ds = att * (datt - np.sum(datt * att, axis=-1, keepdims=True)) / math.sqrt(dh)
        dq, dk = ds @ kk, ds.transpose(0, 1, 3, 2) @ q
        da_ = np.zeros_like(a)
        for w, dw in (("wq", dq), ("wk", dk), ("wv", dv)):
            dflat = _merge(dw)
            grads[k[w]] = dflat.reshape(-1, d).T @ a.reshape(-1, d)
            da_ += dflat @ p[k[w]]
        dpre, grads[k["ln1"]] = rmsnorm_back(da_, h_in, r1, p[k["ln1"]])
        dh_ = dmid + dpre
    np.add.at(grads["emb"], inp.ravel(), dh_.reshape(-1, d))
    grads["pos"][:t] = dh_.sum(axis=0)
    return ce, ce + aux_total, grads


# --------------------------------------------------------------------------------------------
# Adam and training
# --------------------------------------------------------------------------------------------


class AdamW:
    """Adam with decoupled weight decay on the matrices (not on gains and embeddings)."""

    def __init__(self, p: Params, lr: float, weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.98), eps: float = 1e-8) -> None:
        self.lr, self.wd, self.betas, self.eps = lr, weight_decay, betas, eps
        self.m = {k: np.zeros_like(v) for k, v in p.items()}
        self.v = {k: np.zeros_like(v) for k, v in p.items()}
        self.t = 0

    def step(self, p: Params, grads: Params, lr: float, frozen: frozenset[str] = frozenset()
             ) -> None:
        """One in-place update of ``p`` (names in ``frozen`` are left unchanged)."""
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for name, value in p.items():
            if name in frozen:
                continue
            gr = grads[name]
            self.m[name] = b1 * self.m[name] + (1 - b1) * gr
            self.v[name] = b2 * self.v[name] + (1 - b2) * gr * gr
            if value.ndim >= 2 and name not in ("emb", "pos"):
                value *= 1.0 - lr * self.wd
            value -= (lr * (self.m[name] / c1) / (np.sqrt(self.v[name] / c2) + self.eps)
                      ).astype(value.dtype)


def windows(data: np.ndarray, rng: np.random.Generator, batch: int, length: int
            ) -> np.ndarray:
    """``batch`` random windows of ``length`` consecutive bytes of ``data`` (batch, length)."""
    starts = rng.integers(0, data.size - length, size=batch)
    return data[starts[:, None] + np.arange(length)[None, :]]


def _phase(p: Params, cfg: LMConfig, tc: LMTrainConfig, data: np.ndarray,
           rng: np.random.Generator, steps: int, dense: bool, log: list[float],
           say: Callable[[str], None]) -> None:
    opt = AdamW(p, tc.learning_rate, tc.weight_decay)
    frozen = frozenset(layer_names(i)["wr"] for i in range(cfg.layers)) if dense \
        else frozenset()
    warm = max(1, steps // 20)
    block: list[float] = []
    for step in range(steps):
        lr = tc.learning_rate * min(1.0, (step + 1) / warm) * 0.5 * (
            1 + math.cos(math.pi * step / max(steps, 1)))
        batch = windows(data, rng, tc.batch, cfg.context + 1)
        ce, _, grads = loss_and_grads(p, cfg, batch, tc.aux_weight, dense=dense)
        opt.step(p, grads, lr, frozen)
        block.append(ce)
        if len(block) == 50 or step == steps - 1:
            log.append(float(np.mean(block)))
            block = []
            say(f"{'dense' if dense else 'MoE'} step {step + 1}/{steps}: "
                f"loss {log[-1]:.3f} nats/byte")


def train(cfg: LMConfig, tc: LMTrainConfig, data: np.ndarray,
          progress: Callable[[str], None] | None = None) -> tuple[Params, LMTrainLog]:
    """Train on the byte array ``data`` (uint8): the dense phase (expert 0 only), upcycling,
    then the MoE phase. Float32 weights; deterministic for a given ``tc.seed``."""
    say = progress or (lambda _m: None)
    rng = np.random.default_rng(tc.seed)
    p = init_params(cfg, rng)
    log = LMTrainLog()
    _phase(p, cfg, tc, data, rng, tc.dense_steps, True, log.dense_loss, say)
    p = upcycle(p, cfg, rng, tc.upcycle_noise)
    _phase(p, cfg, tc, data, rng, tc.moe_steps, False, log.moe_loss, say)
    return p, log


__all__ = ["RMS_EPS", "AdamW", "LMConfig", "LMTrainConfig", "LMTrainLog", "Params",
           "causal_mask", "init_params", "layer_names", "loss_and_grads", "rmsnorm",
           "rmsnorm_back", "silu", "softmax", "topk_route", "train", "upcycle", "windows"]
