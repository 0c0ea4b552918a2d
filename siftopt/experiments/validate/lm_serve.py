"""Inference of the trained language model with every MoE layer served by someone's decisions.

:class:`ServedLM` runs the model of :mod:`.lm` in float64 (on the stored float32 weights) in
two ways:

* :meth:`ServedLM.prefill`: whole sequences at once; each MoE layer of each sequence is one
  batch of T tokens (one instance of L = T);
* :meth:`ServedLM.decode`: token by token with a key/value cache; each MoE layer of each token
  is one batch of one token (L = 1). Later tokens attend to the served states of earlier ones.

At every MoE layer the router's top-K experts and weights go to a *serving hook*
``serve(layer, key, x, experts, weights) -> (actions, degradation)``, which returns for each
token and slot the served expert (the top-K expert itself = keep, another = replace, ``SKIP``)
and the token degradation D_t of docs/model.md §3.3. The layer then adds the **served**
output ``ŷ = Σ_k w_k Ê_k(x)`` to the residual stream, and the exact output y of the same layer
on the same x is kept for the bound check ``‖ŷ − y‖ ≤ ‖x‖·D_t``. Expert outputs come from
:func:`siftopt.similarity.experts.forward` on the :class:`~siftopt.similarity.ExpertWeights`
the bounds are computed from, so model and bounds see the same experts bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from siftopt.experiments.validate.lm import LMConfig, Params, layer_names, rmsnorm, topk_route
from siftopt.experiments.validate.tokens import moe_output
from siftopt.model.problem import SKIP
from siftopt.similarity import ExpertWeights
from siftopt.similarity.experts import forward as expert_map

#: ``serve(layer, key, x (L, d), experts (L, K), weights (L, K)) -> (actions (L, K),
#: degradation (L,))``; ``key`` names the batch: (sequence,) in prefill, (sequence, position)
#: in decode.
ServeHook = Callable[[int, tuple[int, ...], np.ndarray, np.ndarray, np.ndarray],
                     tuple[np.ndarray, np.ndarray]]


def keep_all(_layer: int, _key: tuple[int, ...], x: np.ndarray, experts: np.ndarray,
             _weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Top-K hook: every slot kept, degradation 0 (the trained model itself)."""
    return experts, np.zeros(x.shape[0])


@dataclass
class LayerLog:
    """Per-token records of one MoE layer, arrays (S, T): ‖x‖, ‖ŷ − y‖, D_t, and the router
    logits (S, T, N) and top-K experts (S, T, K) the layer saw."""

    x_norm: np.ndarray
    error: np.ndarray
    degradation: np.ndarray
    router_logits: np.ndarray
    experts: np.ndarray

    @classmethod
    def empty(cls, s: int, t: int, n: int, k: int) -> LayerLog:
        return cls(x_norm=np.zeros((s, t)), error=np.zeros((s, t)),
                   degradation=np.zeros((s, t)), router_logits=np.zeros((s, t, n)),
                   experts=np.zeros((s, t, k), dtype=np.int64))


@dataclass
class RunLog:
    """A served run over S sequences of T predicted bytes: the logits (S, T, V), the
    log-probability of each target byte (S, T) and one :class:`LayerLog` per MoE layer."""

    logits: np.ndarray
    target_logprob: np.ndarray
    layers: list[LayerLog]


def log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))


class ServedLM:
    """The trained model in float64, with MoE layers served through a hook."""

    def __init__(self, params: Params, cfg: LMConfig) -> None:
        self.cfg = cfg
        self.p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.experts = [self.expert_weights(params, cfg, layer) for layer in range(cfg.layers)]

    @staticmethod
    def expert_weights(params: Params, cfg: LMConfig, layer: int) -> ExpertWeights:
        """Layer ``layer``'s experts in the weight contract (w1 gate, w3 up, w2 down), as
        stored (float32)."""
        k = layer_names(layer)
        return ExpertWeights.from_arrays({"w1": params[k["w1"]], "w3": params[k["w3"]],
                                          "w2": params[k["w2"]]}, source=f"<lm layer {layer}>")

    # ---------------------------------------------------------------------------------------

    def _moe(self, layer: int, key: tuple[int, ...], x: np.ndarray, hook: ServeHook,
             log: LayerLog, where: tuple[int | slice, int | slice]) -> np.ndarray:
        """Serve one batch x (L, d) of layer ``layer``; returns ŷ (L, d) and fills ``log``."""
        k = layer_names(layer)
        logits = x @ self.p[k["wr"]].T
        _, experts, weights = topk_route(logits, self.cfg.top_k)
        actions, degradation = hook(layer, key, x, experts, weights)
        actions = np.asarray(actions, dtype=np.int64)
        outputs = np.zeros((self.cfg.num_experts, x.shape[0], x.shape[1]))
        for i in range(self.cfg.num_experts):
            rows = np.flatnonzero((experts == i).any(axis=1) | (actions == i).any(axis=1))
            if rows.size:
                outputs[i, rows] = expert_map(self.experts[layer], i, x[rows], "swiglu")
        y = moe_output(outputs, weights, experts)
        y_hat = moe_output(outputs, weights, np.where(actions == SKIP, SKIP, actions))
        log.x_norm[where] = np.linalg.norm(x, axis=1)
        log.error[where] = np.linalg.norm(y_hat - y, axis=1)
        log.degradation[where] = degradation
        log.router_logits[where] = logits
        log.experts[where] = experts
        return y_hat

    def _attention(self, layer: int, a: np.ndarray, mask: np.ndarray | None,
                   cache: tuple[np.ndarray, np.ndarray] | None = None, pos: int = 0
                   ) -> np.ndarray:
        """Causal multi-head attention of a (S, T, d); with ``cache`` (S, H, T_max, dh) keys and
        values, a holds the single position ``pos`` (S, 1, d)."""
        k = layer_names(layer)
        s, t, d = a.shape
        nh = self.cfg.heads
        dh = d // nh

        def heads(v: np.ndarray) -> np.ndarray:
            return v.reshape(s, t, nh, dh).transpose(0, 2, 1, 3)

        q, kk, v = (heads(a @ self.p[k[w]].T) for w in ("wq", "wk", "wv"))
        if cache is not None:
            cache[0][:, :, pos:pos + 1] = kk
            cache[1][:, :, pos:pos + 1] = v
            kk, v = cache[0][:, :, :pos + 1], cache[1][:, :, :pos + 1]
        scores = q @ kk.transpose(0, 1, 3, 2) / math.sqrt(dh)
        if mask is not None:
            scores = scores + mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        att = scores / scores.sum(axis=-1, keepdims=True)
        o = (att @ v).transpose(0, 2, 1, 3).reshape(s, t, d)
        return o @ self.p[k["wo"]].T

    def _head(self, h: np.ndarray) -> np.ndarray:
        z, _ = rmsnorm(h, self.p["lnf"])
        return z @ self.p["head"].T

    # ---------------------------------------------------------------------------------------

    def prefill(self, seqs: np.ndarray, hook: ServeHook = keep_all) -> RunLog:
        """Serve sequences ``seqs`` (S, T + 1) byte ids, predicting bytes 1..T from their
        prefixes; each (sequence, MoE layer) is one batch of T tokens."""
        cfg = self.cfg
        inp, tgt = seqs[:, :-1], seqs[:, 1:]
        s, t = inp.shape
        logs = [LayerLog.empty(s, t, cfg.num_experts, cfg.top_k) for _ in range(cfg.layers)]
        mask = np.triu(np.full((t, t), -np.inf), k=1)
        h = self.p["emb"][inp] + self.p["pos"][:t]
        for layer in range(cfg.layers):
            k = layer_names(layer)
            a, _ = rmsnorm(h, self.p[k["ln1"]])
            h = h + self._attention(layer, a, mask)
            x, _ = rmsnorm(h, self.p[k["ln2"]])
            for i in range(s):
                h[i] = h[i] + self._moe(layer, (i,), x[i], hook, logs[layer], (i, slice(None)))
        logits = self._head(h)
        return self._finish(logits, tgt, logs)

    def decode(self, seqs: np.ndarray, hook: ServeHook = keep_all) -> RunLog:
        """Serve sequences ``seqs`` (S, T + 1) token by token (all S sequences advance together,
        but every token of every sequence is its own batch of L = 1 at each MoE layer)."""
        cfg = self.cfg
        inp, tgt = seqs[:, :-1], seqs[:, 1:]
        s, t = inp.shape
        d, nh = cfg.model_dim, cfg.heads
        logs = [LayerLog.empty(s, t, cfg.num_experts, cfg.top_k) for _ in range(cfg.layers)]
        caches = [(np.zeros((s, nh, t, d // nh)), np.zeros((s, nh, t, d // nh)))
                  for _ in range(cfg.layers)]
        logits = np.zeros((s, t, cfg.vocab))
        for pos in range(t):
            h = (self.p["emb"][inp[:, pos]] + self.p["pos"][pos])[:, None, :]  # (S, 1, d)
            for layer in range(cfg.layers):
                k = layer_names(layer)
                a, _ = rmsnorm(h, self.p[k["ln1"]])
                h = h + self._attention(layer, a, None, caches[layer], pos)
                x, _ = rmsnorm(h, self.p[k["ln2"]])
                for i in range(s):
                    h[i] = h[i] + self._moe(layer, (i, pos), x[i], hook, logs[layer],
                                            (i, slice(pos, pos + 1)))
            logits[:, pos] = self._head(h[:, 0])
        return self._finish(logits, tgt, logs)

    @staticmethod
    def _finish(logits: np.ndarray, tgt: np.ndarray, logs: list[LayerLog]) -> RunLog:
        lp = log_softmax(logits)
        target = np.take_along_axis(lp, tgt[..., None], axis=-1)[..., 0]
        return RunLog(logits=logits, target_logprob=target, layers=logs)


__all__ = ["LayerLog", "RunLog", "ServeHook", "ServedLM", "keep_all", "log_softmax"]
