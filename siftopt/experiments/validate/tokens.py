"""The digits data and what the trained model computes on it: token states, expert outputs, the
served MoE output.

Expert outputs are computed once per test token with :func:`siftopt.similarity.expert_forward`
(the weight contract the bounds are proven for) and shared by the reference and the served
forward passes, so serving every slot by keep reproduces the model's logits exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.errors import InputError
from siftopt.experiments.validate.config import VALIDATE_EXTRA_HINT
from siftopt.experiments.validate.moe import MoEConfig, MoEParams, embed, gates, head, topk_route
from siftopt.model.problem import SKIP
from siftopt.similarity import ExpertWeights, expert_forward


@dataclass(frozen=True)
class Dataset:
    """Digits, pixels scaled to [0, 1]: x (n, 64) float, labels (n,) int in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int, test_fraction: float = 0.3,
                      max_test_tokens: int | None = None) -> Dataset:
    """scikit-learn's bundled digits (1797 images), split stratified by ``seed``."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise InputError(f"validate-accuracy needs scikit-learn; {VALIDATE_EXTRA_HINT}") from None
    x, labels = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        np.asarray(x, dtype=np.float64) / 16.0, np.asarray(labels, dtype=np.int64),
        test_size=test_fraction, stratify=labels, random_state=seed)
    if max_test_tokens is not None:
        x_te, y_te = x_te[:max_test_tokens], y_te[:max_test_tokens]
    return Dataset(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def expert_weights(params: MoEParams) -> ExpertWeights:
    """The experts in the weight contract of :mod:`siftopt.similarity.weights` (w1 (N, f, d), w2
    (N, d, f))."""
    return ExpertWeights.from_arrays({"w1": params.w1, "w2": params.w2}, source="<digits-moe>")


@dataclass(frozen=True)
class TokenStates:
    """What the trained model computes for a set of tokens (L of them).

    ``x`` (L, d) token states entering the MoE layer; ``experts``/``weights`` (L, K) the
    router's top-K and renormalised weights; ``outputs`` (N, L, d) every expert's output
    E_i(x_t); ``y`` (L, d) the exact MoE output; ``logits`` (L, C) the model's logits.
    """

    x: np.ndarray
    experts: np.ndarray
    weights: np.ndarray
    outputs: np.ndarray
    y: np.ndarray
    logits: np.ndarray

    def take(self, index: np.ndarray) -> TokenStates:
        """The same arrays restricted to tokens ``index`` (slices, no recomputation)."""
        return TokenStates(x=self.x[index], experts=self.experts[index],
                           weights=self.weights[index], outputs=self.outputs[:, index],
                           y=self.y[index], logits=self.logits[index])


def moe_output(outputs: np.ndarray, weights: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Served MoE output ``Σ_k w[t,k]·Ê_k(x_t)`` (L, d) from every expert's output ``outputs``
    (N, L, d), weights (L, K) and actions (L, K) (an expert index, or ``SKIP`` → 0).

    Slots are summed in order k = 0..K-1, so the keep-all actions reproduce the model exactly.
    """
    n_tokens = weights.shape[0]
    rows = np.arange(n_tokens)
    out = np.zeros((n_tokens, outputs.shape[2]))
    for k in range(weights.shape[1]):
        target = actions[:, k]
        kept = target != SKIP
        served = np.where(kept[:, None], outputs[np.where(kept, target, 0), rows], 0.0)
        out += weights[:, k, None] * served
    return out


def token_states(params: MoEParams, cfg: MoEConfig, x_in: np.ndarray) -> TokenStates:
    """Run the trained model on inputs x_in (L, p), keeping what serving needs."""
    x = embed(params, x_in)
    experts, weights = topk_route(gates(params, x), cfg.top_k)
    ew = expert_weights(params)
    outputs = np.stack([expert_forward(ew, i, x, cfg.activation)
                        for i in range(cfg.num_experts)])
    y = moe_output(outputs, weights, experts)
    return TokenStates(x=x, experts=experts, weights=weights, outputs=outputs, y=y,
                       logits=head(params, x, y))
