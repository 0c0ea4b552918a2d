"""What a user checks before trusting a result: sizes, caps, energy tables, candidates, top-K
sets and the per-token feasibility pre-check (``siftopt inspect``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from siftopt.facade import infeasibility_reason
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data


def _db(x: float) -> float:
    return 10.0 * math.log10(x)


def describe(inst: Instance, *, table_entries: int = 8) -> dict[str, Any]:
    """A JSON-ready description of an instance and its derived data (SI units)."""
    data = problem_data(inst)
    least = data.least_degradation()
    nodes = []
    for table in data.tables:
        node = inst.nodes[table.node - 1]
        levels = list(range(min(table.cap, table_entries) + 1))
        nodes.append({
            "node": table.node,
            "experts": np.flatnonzero(inst.placement == table.node).tolist(),
            "bandwidth_hz": node.bandwidth_hz,
            "gain_up_db": _db(node.gain_up), "gain_down_db": _db(node.gain_down),
            "rate_up_bps": table.rate_up_bps, "rate_down_bps": table.rate_down_bps,
            "seconds_per_token": table.seconds_per_token,
            "cap": table.cap,
            "reachable": table.cap >= 1,
            "energy_table_j": {str(n): float(table.energy_j[n]) for n in levels},
            "energy_at_cap_j": float(table.energy_j[table.cap]),
            "convex": table.convex,
            "formulation": "incremental (convex table)" if table.convex
            else "level binaries (non-convex table)",
            "outage_at_cap": None if table.outage is None else float(table.outage[table.cap]),
        })
    experts = [{"expert": i, "node": int(inst.placement[i]), "beta": float(inst.beta[i]),
                "candidates": [{"expert": int(j), "delta": float(inst.delta[i, j]),
                                "node": int(inst.placement[j])} for j in data.candidates[i]]}
               for i in range(inst.num_experts)]
    tokens = []
    for t in range(inst.num_tokens):
        tokens.append({"token": t, "experts": inst.topk_experts[t].tolist(),
                       "weights": inst.topk_weights[t].tolist(),
                       "least_degradation": float(least[t]),
                       "budget": None if inst.eps_token is None else float(inst.eps_token[t])})
    return {
        "name": inst.name,
        "sizes": {"tokens": inst.num_tokens, "experts": inst.num_experts, "top_k": inst.top_k,
                  "nodes": inst.num_nodes, "slots": data.num_slots,
                  "options": int(data.opt_target.size)},
        "payload_bits": inst.payload_bits,
        "power_control": inst.power_control,
        "fading": inst.fading,
        "outage_max": inst.outage_max,
        "latency_s": inst.latency_s,
        "noise_psd_w_per_hz": inst.noise_psd_w_per_hz,
        "energy_weights": {"up": inst.energy_weight_up, "down": inst.energy_weight_down},
        "eps_mean": inst.eps_mean,
        "bounds_provenance": dict(inst.source.bounds_info) or None,
        "least_mean_degradation": float(least.mean()),
        "precheck": infeasibility_reason(data) or "no token is infeasible on its own",
        "nodes": nodes,
        "experts": experts,
        "tokens": tokens,
    }
