"""The radio side of a generated instance: node positions, gains, noise and the latency budget.

Units: m, dB, Hz, W, s, FLOP/s. Gains are written in dB (negative: a loss), uplink and
downlink alike (a reciprocal channel: same distance and shadowing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from siftopt.experiments.generate.presets import Architecture, Scenario
from siftopt.experiments.generate.streams import stream
from siftopt.model import fading
from siftopt.model.physics import (
    THERMAL_NOISE_DBM_PER_HZ,
    db_to_linear,
    dbm_per_hz_to_w_per_hz,
    seconds_per_token,
    shannon_rate_bps,
)

#: Bisection steps of the Rayleigh latency calibration (relative precision ≈ 2^-60).
BISECTION_STEPS = 80


@dataclass(frozen=True)
class NodeDraw:
    """The random draws of one remote node.

    Attributes:
        distance_m: distance from the source (m), uniform over the annulus area.
        shadowing_db: log-normal shadowing (dB), zero-mean normal in dB.
        path_loss_db: ``128.1 + 37.6·log10(d/km) + shadowing`` (dB).
        flops: compute throughput (FLOP/s), log-uniform in the scenario's range.
    """

    distance_m: float
    shadowing_db: float
    path_loss_db: float
    flops: float


def path_loss_db(distance_m: float) -> float:
    """3GPP urban macro path loss ``128.1 + 37.6·log10(d/km)`` in dB."""
    return 128.1 + 37.6 * math.log10(distance_m / 1000.0)


def noise_psd_dbm_per_hz(scn: Scenario) -> float:
    """Receiver noise PSD ``−174 dBm/Hz + noise figure`` in dBm/Hz."""
    return THERMAL_NOISE_DBM_PER_HZ + scn.noise_figure_db


def draw_node(scn: Scenario, seed: int, m: int) -> NodeDraw:
    """Draws of remote node m (1..M) from its own stream (adding nodes keeps these)."""
    rng = stream(seed, "node", m, 0)
    low, high = scn.distance_m
    distance = math.sqrt(rng.uniform(low**2, high**2))
    shadowing = float(rng.normal(0.0, scn.shadowing_db))
    flops = math.exp(rng.uniform(math.log(scn.node_flops[0]), math.log(scn.node_flops[1])))
    return NodeDraw(distance_m=distance, shadowing_db=shadowing,
                    path_loss_db=path_loss_db(distance) + shadowing, flops=flops)


def node_document(arch: Architecture, scn: Scenario, draw: NodeDraw) -> dict[str, Any]:
    """The instance-file entry of a node (gains in dB rounded to 0.01 dB).

    Compute time per token is one expert's FLOPs over the node's throughput (s).
    """
    gain_db = round(-draw.path_loss_db, 2)
    compute_s = float(f"{arch.expert_flops_per_token() / draw.flops:.4g}")
    return {"bandwidth_hz": scn.bandwidth_hz, "gain_up_db": gain_db, "gain_down_db": gain_db,
            "power_up_w": scn.power_up_w, "power_down_w": scn.power_down_w,
            "compute_s_per_token": compute_s}


# ------------------------------------------------------------------------------------------
# Latency budget
# ------------------------------------------------------------------------------------------


def _rates_bps(node: dict[str, Any], noise_w_per_hz: float) -> tuple[float, float]:
    """Full-power uplink and downlink rates of a node document (bit/s), from physics."""
    return tuple(  # type: ignore[return-value]
        shannon_rate_bps(node["bandwidth_hz"], node[f"power_{way}_w"],
                         db_to_linear(node[f"gain_{way}_db"]), noise_w_per_hz)
        for way in ("up", "down"))


def slow_time_s(node: dict[str, Any], bits: float, load: int, noise_w_per_hz: float) -> float:
    """Least T (s) at which the node carries ``load`` tokens under slow fading:
    ``n·(S/r↑ + S/r↓ + c)`` (docs/model.md §2.3)."""
    r_up, r_down = _rates_bps(node, noise_w_per_hz)
    return load * seconds_per_token(bits, r_up, r_down, node["compute_s_per_token"])


def rayleigh_outage(node: dict[str, Any], bits: float, load: int, latency_s: float,
                    noise_w_per_hz: float) -> float:
    """Outage probability ``1 − e^{−x↑−x↓}`` of the node with ``load`` tokens (docs §5), with
    the window split and thresholds of :mod:`siftopt.model.fading`."""
    window = latency_s - node["compute_s_per_token"] * load
    if window <= 0:
        return 1.0
    r_up, r_down = _rates_bps(node, noise_w_per_hz)
    tau_up, tau_down = fading.window_split(window, r_up, r_down)
    total = 0.0
    for way, tau in (("up", tau_up), ("down", tau_down)):
        total += fading.direction_threshold(load * bits, float(tau), node["bandwidth_hz"],
                                            db_to_linear(node[f"gain_{way}_db"]),
                                            node[f"power_{way}_w"], noise_w_per_hz)
    return -math.expm1(-total)


def rayleigh_time_s(node: dict[str, Any], bits: float, load: int, noise_w_per_hz: float,
                    outage_max: float) -> float:
    """Least T (s) at which the node carries ``load`` tokens within the outage cap (bisection;
    the outage decreases as T grows)."""
    low = slow_time_s(node, bits, load, noise_w_per_hz)  # never enough: outage > 0 there
    high = 2.0 * low
    while rayleigh_outage(node, bits, load, high, noise_w_per_hz) > outage_max:
        low, high = high, 2.0 * high
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        if rayleigh_outage(node, bits, load, mid, noise_w_per_hz) > outage_max:
            low = mid
        else:
            high = mid
    return high


def node_time_s(node: dict[str, Any], bits: float, load: int, noise_w_per_hz: float,
                fading: str, outage_max: float) -> float:
    """Least per-layer budget T (s) at which the node can carry ``load`` tokens."""
    if fading == "rayleigh":
        return rayleigh_time_s(node, bits, load, noise_w_per_hz, outage_max)
    return slow_time_s(node, bits, load, noise_w_per_hz)


def latency_budget_s(nodes: list[dict[str, Any]], bits: float, tokens: int,
                     noise_dbm_per_hz: float, fading: str, outage_max: float,
                     scale: float) -> float:
    """``T = scale × median_m T_m(L)``: a multiple of the time the median node needs to serve
    the whole batch of L tokens. Rounded up to 6 significant digits (s)."""
    noise = dbm_per_hz_to_w_per_hz(noise_dbm_per_hz)
    times = [node_time_s(n, bits, tokens, noise, fading, outage_max) for n in nodes]
    value = scale * float(np.median(times)) * (1.0 + 1e-9)
    exponent = math.floor(math.log10(value)) - 5
    return math.ceil(value / 10.0**exponent) * 10.0**exponent
