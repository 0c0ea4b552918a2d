"""Random synthetic instances for tests, property checks and benchmarks.

These are *not* the realistic presets of ``siftopt generate``; they are compact random
instances whose every feature (local experts, non-replaceable pairs, unreachable or
load-capped nodes, both budget kinds, both power modes, both fadings) can be switched on, and
which go through the same strict loader as a file would.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from siftopt.io.instance_file import instance_from_document
from siftopt.model.instance import Instance
from siftopt.model.physics import (
    THERMAL_NOISE_DBM_PER_HZ,
    db_to_linear,
    dbm_per_hz_to_w_per_hz,
    seconds_per_token,
    shannon_rate_bps,
)


def random_document(
    rng: np.random.Generator,
    *,
    num_tokens: int = 1,
    num_experts: int = 6,
    top_k: int = 2,
    num_nodes: int = 3,
    hidden_dim: int = 1024,
    power_control: str = "fixed",
    fading: str = "slow",
    budgets: str = "token",  # token | mean | both
    eps_scale: float = 0.3,
    max_candidates: int | None = None,
    null_fraction: float = 0.2,
    latency_s: float | None = None,
    gates: bool = False,
    name: str = "synthetic",
) -> dict[str, Any]:
    """A random instance document (JSON-ready). ``eps_scale`` ∈ (0, 1]: budget tightness.

    Budgets are drawn relative to the mean skip cost so that a mix of keep, replace and skip
    decisions is typically optimal; the latency budget defaults to a value that lets most
    nodes carry part of the batch, so load caps bind in prefill.
    """
    n, k, m = num_experts, top_k, num_nodes
    placement = rng.integers(0, m + 1, size=n)
    if m >= 1:  # make sure remote nodes host something
        placement[: min(n, m)] = np.arange(1, min(n, m) + 1)
        rng.shuffle(placement)
    beta = np.round(rng.uniform(0.5, 2.0, size=n), 4)
    delta = np.round(rng.uniform(0.1, 1.5, size=(n, n)), 4)
    delta = np.minimum(delta, delta.T) if rng.random() < 0.5 else delta
    np.fill_diagonal(delta, 0.0)
    delta_doc: list[list[float | None]] = delta.tolist()
    for i in range(n):
        for j in range(n):
            if i != j and rng.random() < null_fraction:
                delta_doc[i][j] = None
    nodes = []
    for _ in range(m):
        nodes.append({
            "bandwidth_hz": float(rng.choice([1e6, 2e6, 5e6, 10e6])),
            "gain_up_db": float(np.round(rng.uniform(-120.0, -95.0), 2)),
            "gain_down_db": float(np.round(rng.uniform(-120.0, -95.0), 2)),
            "power_up_w": 0.2,
            "power_down_w": 1.0,
            "compute_s_per_token": float(rng.choice([0.0, 1e-4, 2e-4])),
            "compute_j_per_token": float(rng.choice([0.0, 0.0, 1e-6])),
        })
    if latency_s is None:
        latency_s = _latency_for_caps(rng, nodes, hidden_dim * 16, num_tokens)
    raw = rng.dirichlet(np.full(n, 0.6), size=num_tokens)
    tokens: dict[str, Any]
    if gates:
        tokens = {"gates": np.round(raw, 6).tolist()}
        weights = np.sort(np.round(raw, 6), axis=1)[:, ::-1][:, :k]
    else:
        order = np.argsort(-raw, axis=1)[:, :k]
        weights = np.round(np.take_along_axis(raw, order, axis=1), 6)
        tokens = {"topk_experts": order.tolist(), "topk_weights": weights.tolist()}
    typical = float(np.mean(weights.sum(axis=1))) * float(beta.mean())
    accuracy: dict[str, Any] = {}
    if budgets in ("token", "both"):
        accuracy["eps_token"] = float(np.round(eps_scale * typical, 4))
    if budgets in ("mean", "both"):
        accuracy["eps_mean"] = float(np.round(eps_scale * typical * 0.8, 4))
    channel: dict[str, Any] = {"noise_psd_dbm_per_hz": THERMAL_NOISE_DBM_PER_HZ,
                               "fading": fading}
    if fading == "rayleigh":
        channel["outage_max"] = 0.2
    bounds: dict[str, Any] = {"beta": beta.tolist(), "delta": delta_doc}
    if max_candidates is not None:
        bounds["max_candidates"] = max_candidates
    return {
        "siftopt_version": 1,
        "name": name,
        "model": {"num_experts": n, "top_k": k, "hidden_dim": hidden_dim,
                  "bits_per_element": 16, "renormalize_topk": gates},
        "placement": placement.tolist(),
        "bounds": bounds,
        "nodes": nodes,
        "channel": channel,
        "power_control": power_control,
        "latency_s": latency_s,
        "accuracy": accuracy,
        "tokens": tokens,
    }


def _latency_for_caps(rng: np.random.Generator, nodes: list[dict[str, Any]], bits: int,
                      num_tokens: int) -> float:
    """A latency budget under which the median node carries about 30–100 % of the batch."""
    if not nodes:
        return 0.01
    noise = dbm_per_hz_to_w_per_hz(THERMAL_NOISE_DBM_PER_HZ)
    per_token = []
    for node in nodes:
        r_up, r_down = (shannon_rate_bps(node["bandwidth_hz"], node[f"power_{way}_w"],
                                         db_to_linear(node[f"gain_{way}_db"]), noise)
                        for way in ("up", "down"))
        per_token.append(seconds_per_token(bits, r_up, r_down, node["compute_s_per_token"]))
    target = max(1.0, rng.uniform(0.3, 1.0) * num_tokens) + 0.5
    return float(np.round(float(np.median(per_token)) * target, 7))


def random_instance(seed: int | np.random.Generator = 0, **kwargs: Any) -> Instance:
    """A validated random :class:`Instance`; keyword arguments as :func:`random_document`."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return instance_from_document(random_document(rng, **kwargs), file="<synthetic>")
