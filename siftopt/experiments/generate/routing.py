"""Router gates: softmax of logits with a calibrated temperature, correlated across tokens.

The logit of expert i for token t is

    z[t, i] = b_i + u[t, i],   u[t] = ρ·u[t−1] + √(1 − ρ²)·ξ[t],
    ξ[t, i] = √c·η[t, cluster(i)] + √(1 − c)·ν[t, i],

with an expert popularity ``b_i ~ N(0, POPULARITY²)``, an AR(1) correlation ρ between
neighbouring tokens (prefill), and a co-activation share c of the expert's similarity cluster
(similar experts tend to be selected together). Gates are ``softmax(z[t]/τ)``; the temperature τ
is chosen by bisection so that the mean routing entropy of independent tokens is the target
fraction of ``ln N`` (the largest possible entropy). Group-limited routing (DeepSeek-V3) keeps,
for each token, the ``topk_groups`` groups with the largest sum of their two best gates, and
zeroes the gates of the other groups.
"""

from __future__ import annotations

import numpy as np

from siftopt.experiments.generate.presets import Architecture
from siftopt.experiments.generate.streams import model_salt, stream

#: Standard deviation of the expert popularity term of the logits.
POPULARITY = 0.5
#: Share of a logit's token noise that is common to the expert's similarity cluster.
COACTIVATION = 0.3
#: Independent tokens drawn to calibrate the temperature.
CALIBRATION_TOKENS = 256
#: Bisection steps on log τ.
CALIBRATION_STEPS = 60


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits ``z`` (L, N)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def normalised_entropy(p: np.ndarray) -> np.ndarray:
    """Entropy of each row of ``p`` divided by ``ln N`` (in [0, 1])."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1) / np.log(p.shape[1])


def popularity(arch: Architecture, seed: int) -> np.ndarray:
    """The popularity term ``b`` of the logits (independent of L and of the placement)."""
    rng = stream(seed, "routing-bias", model_salt(arch.name))
    return rng.normal(0.0, POPULARITY, arch.num_experts)


def token_noise(labels: np.ndarray, tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Independent unit-variance noise ``ξ`` (L, N) with cluster co-activation.

    Drawn row by row (cluster terms, then expert terms), so the first rows do not depend on L.
    """
    clusters = int(labels.max()) + 1
    draws = rng.standard_normal((tokens, clusters + labels.size))
    common = draws[:, :clusters][:, labels]
    own = draws[:, clusters:]
    return np.sqrt(COACTIVATION) * common + np.sqrt(1.0 - COACTIVATION) * own


def correlated_noise(labels: np.ndarray, tokens: int, correlation: float,
                     rng: np.random.Generator) -> np.ndarray:
    """AR(1) noise ``u`` (L, N): stationary, unit variance, lag-one correlation ρ."""
    xi = token_noise(labels, tokens, rng)
    u = np.empty_like(xi)
    u[0] = xi[0]
    keep = np.sqrt(1.0 - correlation**2)
    for t in range(1, tokens):
        u[t] = correlation * u[t - 1] + keep * xi[t]
    return u


def calibrate_temperature(bias: np.ndarray, labels: np.ndarray, target: float,
                          rng: np.random.Generator) -> tuple[float, float]:
    """``(τ, achieved mean normalised entropy)`` for the target fraction of ``ln N``, on
    :data:`CALIBRATION_TOKENS` independent tokens drawn from ``rng``."""
    z = bias + token_noise(labels, CALIBRATION_TOKENS, rng)
    low, high = np.log(1e-3), np.log(1e3)
    for _ in range(CALIBRATION_STEPS):
        mid = 0.5 * (low + high)
        if normalised_entropy(softmax(z / np.exp(mid))).mean() < target:
            low = mid
        else:
            high = mid
    tau = float(np.exp(0.5 * (low + high)))
    return tau, float(normalised_entropy(softmax(z / tau)).mean())


def group_limit(gates: np.ndarray, groups: int, keep: int) -> np.ndarray:
    """Zero the gates outside each token's ``keep`` best groups (group score: sum of the two
    largest gates in the group; experts are grouped in contiguous blocks)."""
    if groups <= 1:
        return gates
    tokens, n = gates.shape
    blocks = gates.reshape(tokens, groups, n // groups)
    score = np.sort(blocks, axis=2)[:, :, -2:].sum(axis=2)
    best = np.argsort(-score, axis=1, kind="stable")[:, :keep]
    mask = np.zeros((tokens, groups), dtype=bool)
    np.put_along_axis(mask, best, True, axis=1)
    return np.where(np.repeat(mask, n // groups, axis=1), gates, 0.0)


def router_gates(arch: Architecture, labels: np.ndarray, tokens: int, correlation: float,
                 target_entropy: float, seed: int) -> tuple[np.ndarray, float, float]:
    """``(gates (L, N), temperature τ, achieved normalised entropy)`` for L tokens.

    The first tokens of a longer batch are the same as those of a shorter one (same seed).
    """
    salt = model_salt(arch.name)
    bias = popularity(arch, seed)
    tau, entropy = calibrate_temperature(bias, labels, target_entropy,
                                         stream(seed, "routing-calibration", salt))
    noise = correlated_noise(labels, tokens, correlation, stream(seed, "routing-tokens", salt))
    gates = group_limit(softmax((bias + noise) / tau), arch.expert_groups, arch.topk_groups)
    return gates, tau, entropy
