"""The simulated wireless side and the instance of each served batch.

Remote nodes at fixed distances with the 3GPP urban path loss, experts placed round-robin
(every (M+1)-th on the source), and the latency budget from the per-token times the physics
model computes for these nodes (:func:`siftopt.model.physics.energy_tables`). The top-K experts
and weights written into each instance are the arrays the model itself uses, so model and
optimiser see the same weights bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from siftopt.experiments.validate.config import NetworkConfig, ValidationConfig
from siftopt.experiments.validate.tokens import TokenStates
from siftopt.io.instance_file import instance_from_document
from siftopt.model.instance import Instance
from siftopt.model.physics import energy_tables
from siftopt.similarity import Bounds


def path_loss_db(distance_m: float) -> float:
    """3GPP urban macro path loss ``128.1 + 37.6·log10(d/km)`` (dB)."""
    return 128.1 + 37.6 * math.log10(distance_m / 1000.0)


def placement(num_experts: int, num_nodes: int) -> list[int]:
    """Node of each expert: ``i mod (M+1)`` (every (M+1)-th expert is local on the source)."""
    return [i % (num_nodes + 1) for i in range(num_experts)]


def node_documents(net: NetworkConfig, model_dim: int, ffn_dim: int) -> list[dict[str, Any]]:
    """The ``nodes`` entries; compute time per token = one expert's FLOPs (4·d·f) / node_flops."""
    compute_s = float(f"{4.0 * model_dim * ffn_dim / net.node_flops:.4g}")
    out = []
    for dist in net.distances_m:
        gain_db = round(-path_loss_db(dist), 2)
        out.append({"bandwidth_hz": net.bandwidth_hz, "gain_up_db": gain_db,
                    "gain_down_db": gain_db, "power_up_w": net.power_up_w,
                    "power_down_w": net.power_down_w, "compute_s_per_token": compute_s})
    return out


def latency_budget_s(net: NetworkConfig, base: dict[str, Any], batch_tokens: int) -> float:
    """``latency_slack`` × the slowest node's full-power time for a full batch (s, 3 digits).

    The full-power time per token ``S/r↑ + S/r↓ + c_m`` is the one the instances' load caps are
    computed from: :func:`siftopt.model.physics.energy_tables` of a one-token probe instance
    with the model, nodes and channel of ``base`` (its placeholder latency and budget change no
    rate).
    """
    k = base["model"]["top_k"]
    probe = instance_from_document(
        {**base, "name": "latency-probe", "latency_s": 1.0, "accuracy": {"eps_token": 0.0},
         "tokens": {"topk_experts": [list(range(k))], "topk_weights": [[1.0 / k] * k]}},
        file="<latency-probe>")
    worst = max(table.seconds_per_token for table in energy_tables(probe))
    return float(f"{net.latency_slack * batch_tokens * worst:.3g}")


@dataclass(frozen=True)
class Scenario:
    """The fixed parts of every instance: model block, placement, bounds, nodes, channel."""

    base: dict[str, Any]

    def instance(self, states: TokenStates, eps: float, name: str) -> Instance:
        """The validated instance of one batch with per-token budget ``eps`` for every token."""
        doc = dict(self.base)
        doc["name"] = name
        doc["accuracy"] = {"eps_token": float(eps)}
        doc["tokens"] = {"topk_experts": states.experts.tolist(),
                         "topk_weights": states.weights.tolist()}
        inst = instance_from_document(doc, file=f"<{name}>")
        if not (np.array_equal(inst.topk_experts, states.experts)
                and np.array_equal(inst.topk_weights, states.weights)):
            raise RuntimeError("the instance's top-K weights differ from the model's")
        return inst


def make_scenario(cfg: ValidationConfig, bounds: Bounds) -> Scenario:
    """Everything of the instance documents that does not depend on the batch or ε."""
    net = cfg.network
    nodes = node_documents(net, cfg.model_dim, cfg.ffn_dim)
    base: dict[str, Any] = {
        "siftopt_version": 1,
        "model": {"num_experts": cfg.num_experts, "top_k": cfg.top_k,
                  "hidden_dim": cfg.model_dim, "bits_per_element": net.bits_per_element,
                  "renormalize_topk": True},
        "placement": placement(cfg.num_experts, net.num_nodes),
        "bounds": {"beta": [float(b) for b in bounds.beta],
                   "delta": [[float(v) for v in row] for row in bounds.delta]},
        "nodes": nodes,
        "channel": {"noise_psd_dbm_per_hz": net.noise_psd_dbm_per_hz, "fading": "slow"},
        "power_control": net.power_control,
    }
    base["latency_s"] = latency_budget_s(net, base, cfg.batch_tokens)
    return Scenario(base=base)
