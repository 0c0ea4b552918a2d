"""The physical model: link rates, load caps ``n̂_m`` and per-node energy tables ``E_m(n)``.

Implements docs/model.md §2.3 (slow fading, both power modes). Fast fading (§5) tables come
from :mod:`siftopt.model.fading` through the same :class:`NodeEnergyTable`, so that the evaluator,
the exact backends and the policies never care which channel model produced a table.

Units: bits, seconds, hertz, watts, joules.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from siftopt.model.instance import Instance, Node

LN2 = math.log(2.0)
#: Relative tolerance of the adaptive-power time split (docs/model.md asks for 1e-10).
SPLIT_RTOL = 1e-13
#: Relative tolerance of the numerical convexity check of an energy table.
CONVEXITY_RTOL = 1e-9


@dataclass(frozen=True, eq=False)
class NodeEnergyTable:
    """Energy and feasibility of one remote node as a function of its load n (tokens).

    ``energy_j[n]`` is ``E_m(n)`` in joules for ``n = 0..cap`` (``energy_j[0] = 0``); loads
    above ``cap`` violate the latency budget (slow fading) or the outage cap (fast fading).
    """

    node: int  # 1..M
    cap: int  # n̂_m: the largest feasible load
    energy_j: np.ndarray  # (cap + 1,)
    convex: bool  # second differences >= 0 up to CONVEXITY_RTOL
    rate_up_bps: float  # full-power rate (at the mean gain under fast fading)
    rate_down_bps: float
    seconds_per_token: float  # S/r↑ + S/r↓ + c_m: full-power time per token
    full_power_j_per_token: float  # n·S(ω↑P↑/r↑ + ω↓P↓/r↓) + κ n per token
    outage: np.ndarray | None = None  # (cap + 1,) outage probability, fast fading only

    def energy(self, load: int) -> float:
        """``E_m(load)``; above the cap, the full-power energy (the load is infeasible)."""
        if load <= self.cap:
            return float(self.energy_j[load])
        return self.full_power_j_per_token * load



#: Thermal noise power spectral density at 290 K, dBm/Hz.
THERMAL_NOISE_DBM_PER_HZ = -174.0


def db_to_linear(value_db: float) -> float:
    """A power ratio in dB as a linear factor: ``10^(x/10)``."""
    return 10.0 ** (value_db / 10.0)


def dbm_per_hz_to_w_per_hz(psd_dbm_per_hz: float) -> float:
    """A noise PSD in dBm/Hz as W/Hz: ``10^((x − 30)/10)``."""
    return 10.0 ** ((psd_dbm_per_hz - 30.0) / 10.0)


def shannon_rate_bps(bandwidth_hz: float, power_w: float, gain: float,
                     noise_psd_w_per_hz: float) -> float:
    """``B log2(1 + P g / (N0 B))`` in bit/s (scalars, or numpy arrays that broadcast)."""
    snr = np.asarray(power_w * gain / (noise_psd_w_per_hz * bandwidth_hz), dtype=float)
    rate = bandwidth_hz * np.log1p(snr) / LN2
    return float(rate) if rate.ndim == 0 else rate


def seconds_per_token(payload_bits: float, rate_up_bps: float, rate_down_bps: float,
                      compute_s_per_token: float) -> float:
    """Full-power time one token costs a node: ``S/r↑ + S/r↓ + c`` in s (docs/model.md §2.3)."""
    return payload_bits / rate_up_bps + payload_bits / rate_down_bps + compute_s_per_token


def node_rates(inst: Instance, node: Node) -> tuple[float, float]:
    """Full-power uplink and downlink rates of a node, bit/s."""
    n0 = inst.noise_psd_w_per_hz
    return (shannon_rate_bps(node.bandwidth_hz, node.power_up_w, node.gain_up, n0),
            shannon_rate_bps(node.bandwidth_hz, node.power_down_w, node.gain_down, n0))


def slow_fading_cap(inst: Instance, node: Node) -> int:
    """``n̂_m = min(L, ⌊T / (S/r↑ + S/r↓ + c_m)⌋)`` (docs/model.md §2.3)."""
    r_up, r_down = node_rates(inst, node)
    per_token = seconds_per_token(inst.payload_bits, r_up, r_down, node.compute_s_per_token)
    return int(min(inst.num_tokens, math.floor(inst.latency_s / per_token)))


def fixed_power_table(inst: Instance, node: Node, cap: int) -> np.ndarray:
    """``E_m(n) = n S (ω↑P↑/r↑ + ω↓P↓/r↓) + κ n`` for n = 0..cap, in J."""
    return np.arange(cap + 1, dtype=float) * _full_power_j_per_token(inst, node)


def _full_power_j_per_token(inst: Instance, node: Node) -> float:
    r_up, r_down = node_rates(inst, node)
    s = inst.payload_bits
    return (s * (inst.energy_weight_up * node.power_up_w / r_up
                 + inst.energy_weight_down * node.power_down_w / r_down)
            + node.compute_j_per_token)


def link_energy_j(bits: np.ndarray, window_s: np.ndarray, gain: float, bandwidth_hz: float,
                  noise_psd_w_per_hz: float) -> np.ndarray:
    """``e(D, τ, g, B) = τ (N0 B / g)(2^{D/(Bτ)} − 1)``: least energy to send D bits in τ s."""
    x = bits / (bandwidth_hz * window_s)
    return window_s * (noise_psd_w_per_hz * bandwidth_hz / gain) * np.expm1(x * LN2)


def _link_energy_slope(bits: np.ndarray, window_s: np.ndarray, gain: float, bandwidth_hz: float,
                       noise_psd_w_per_hz: float) -> np.ndarray:
    """``∂e/∂τ = (N0 B/g)(2^x − 1 − x ln2 · 2^x)`` with ``x = D/(Bτ)`` (always ≤ 0)."""
    x = bits / (bandwidth_hz * window_s)
    return (noise_psd_w_per_hz * bandwidth_hz / gain) * (np.expm1(x * LN2) - x * LN2 * np.exp2(x))


def adaptive_splits(inst: Instance, nodes: list[Node], loads: list[np.ndarray]
                    ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Optimal uplink windows ``τ↑`` (s) and the resulting radio energies (J) of several
    nodes' loads, in one bisection over every (node, load) pair, which is what makes decoding
    tables cheap (one bisection, not one per node).

    Minimises ``ω↑ e(D, τ↑) + ω↓ e(D, τ − τ↑)`` over ``τ↑ ∈ [D/r↑, τ − D/r↓]`` (power caps),
    ``τ = T − c n``. The objective is convex in ``τ↑``, so its derivative is increasing and
    the minimiser is found by bisection on the derivative to relative ``SPLIT_RTOL``.
    Loads must be feasible (``n ≤ n̂_m``) and positive.

    Each pair stops on its own once its bracket is within ``SPLIT_RTOL``, so a pair's result
    does not depend on which other pairs share the call.
    """
    sizes = [np.asarray(x).size for x in loads]
    if sum(sizes) == 0:
        return [(np.zeros(0), np.zeros(0)) for _ in nodes]
    load = np.concatenate([np.asarray(x, dtype=float).ravel() for x in loads])

    def per_pair(values: list[float]) -> np.ndarray:
        return np.repeat(np.asarray(values, dtype=float), sizes)

    rates = [node_rates(inst, node) for node in nodes]
    r_up, r_down = per_pair([r[0] for r in rates]), per_pair([r[1] for r in rates])
    g_up = per_pair([node.gain_up for node in nodes])
    g_down = per_pair([node.gain_down for node in nodes])
    bw = per_pair([node.bandwidth_hz for node in nodes])
    compute_s = per_pair([node.compute_s_per_token for node in nodes])
    n0, w_up, w_dn = inst.noise_psd_w_per_hz, inst.energy_weight_up, inst.energy_weight_down
    bits = load * inst.payload_bits
    window = inst.latency_s - compute_s * load
    lo = bits / r_up
    hi = np.maximum(window - bits / r_down, lo)  # equal only at the cap, up to rounding

    def radio_j(tau_up: np.ndarray) -> np.ndarray:
        return (w_up * link_energy_j(bits, tau_up, g_up, bw, n0)
                + w_dn * link_energy_j(bits, np.maximum(window - tau_up, bits / r_down),
                                       g_down, bw, n0))

    a, b = lo.copy(), hi.copy()
    active = b - a > SPLIT_RTOL * np.maximum(b, 1e-300)
    for _ in range(200):
        if not active.any():
            break
        idx = np.flatnonzero(active)
        mid = 0.5 * (a[idx] + b[idx])
        slope = (w_up * _link_energy_slope(bits[idx], mid, g_up[idx], bw[idx], n0)
                 - w_dn * _link_energy_slope(bits[idx], np.maximum(window[idx] - mid, 1e-300),
                                             g_down[idx], bw[idx], n0))
        positive = slope > 0
        b[idx] = np.where(positive, mid, b[idx])
        a[idx] = np.where(positive, a[idx], mid)
        active[idx] = b[idx] - a[idx] > SPLIT_RTOL * np.maximum(b[idx], 1e-300)
    tau_up = np.clip(0.5 * (a + b), lo, hi)
    energy = radio_j(tau_up)
    # The bisection brackets the minimiser; the bracket ends are candidates too.
    for edge in (lo, hi):
        e_edge = radio_j(edge)
        better = e_edge < energy
        tau_up = np.where(better, edge, tau_up)
        energy = np.where(better, e_edge, energy)
    bounds = np.cumsum([0, *sizes])
    return [(tau_up[i:j], energy[i:j]) for i, j in itertools.pairwise(bounds)]


def adaptive_power_table(inst: Instance, node: Node, cap: int) -> np.ndarray:
    """``E_m(n)`` for n = 0..cap under adaptive power (docs/model.md §2.3), in J."""
    return adaptive_power_tables(inst, [node], [cap])[0]


def adaptive_power_tables(inst: Instance, nodes: list[Node], caps: list[int]
                          ) -> list[np.ndarray]:
    """:func:`adaptive_power_table` for several nodes with one bisection."""
    loads = [np.arange(1, cap + 1, dtype=float) for cap in caps]
    tables = []
    for node, load, (_, radio) in zip(nodes, loads, adaptive_splits(inst, nodes, loads),
                                      strict=True):
        table = np.zeros(load.size + 1)
        table[1:] = radio + node.compute_j_per_token * load
        tables.append(table)
    return tables


def concave_part(costs: np.ndarray) -> np.ndarray:
    """``C(0..cap)`` with ``C(0) = 0`` and non-increasing increments ``ΔC_i = ΔE_i − ΔV_i``,
    where ``ΔV_i = Σ_{2 ≤ j ≤ i} max(0, ΔE_j − ΔE_{j−1})`` collects every rise of the
    increments (``V`` convex, ``E − E(0) = C + V``). A concave table is its own concave part
    (``V = 0``); a convex one keeps only its first increment."""
    inc = np.diff(np.asarray(costs, dtype=float))
    rises = np.concatenate([[0.0], np.maximum(np.diff(inc), 0.0)]).cumsum()
    return np.concatenate([[0.0], (inc - rises).cumsum()])


def is_convex(table: np.ndarray, rtol: float = CONVEXITY_RTOL) -> bool:
    """Whether ``table[n]`` has non-negative second differences up to ``rtol·max|table|``."""
    if table.size < 3:
        return True
    second = np.diff(table, 2)
    return bool(np.all(second >= -rtol * max(float(np.max(np.abs(table))), 1e-300)))


def lower_hull(values: Sequence[float] | np.ndarray) -> list[int]:
    """Indices (loads) of the vertices of the lower convex hull of the points
    ``(k, values[k])``, the first and the last included (the monotone chain). Exact for
    Python ints, so CP-SAT's integer tables use it as they are."""
    hull: list[int] = []
    for k, v in enumerate(values):
        # drop the last vertex while it lies on or above the segment from its predecessor to k
        while len(hull) >= 2:
            i, j = hull[-2], hull[-1]
            if (values[j] - values[i]) * (k - i) >= (v - values[i]) * (j - i):
                hull.pop()
            else:
                break
        hull.append(k)
    return hull


def _slow_fading_tables(inst: Instance) -> tuple[NodeEnergyTable, ...]:
    nodes = list(inst.nodes)
    caps = [slow_fading_cap(inst, node) for node in nodes]
    if inst.power_control == "fixed":
        energies = [fixed_power_table(inst, node, cap) for node, cap in zip(nodes, caps,
                                                                             strict=True)]
    else:
        energies = adaptive_power_tables(inst, nodes, caps)
    return tuple(_slow_fading_table(inst, m, node, cap, energy) for m, (node, cap, energy)
                 in enumerate(zip(nodes, caps, energies, strict=True), start=1))


def _slow_fading_table(inst: Instance, m: int, node: Node, cap: int, energy: np.ndarray
                       ) -> NodeEnergyTable:
    r_up, r_down = node_rates(inst, node)
    per_token = seconds_per_token(inst.payload_bits, r_up, r_down, node.compute_s_per_token)
    return NodeEnergyTable(node=m, cap=cap, energy_j=energy, convex=is_convex(energy),
                           rate_up_bps=r_up, rate_down_bps=r_down, seconds_per_token=per_token,
                           full_power_j_per_token=_full_power_j_per_token(inst, node))


def _rayleigh_table(inst: Instance, m: int, node: Node) -> NodeEnergyTable:
    from siftopt.model import fading  # local import: fast fading is optional machinery

    r_up, r_down = node_rates(inst, node)
    table = fading.node_table(inst, node, r_up, r_down)
    energy = np.asarray(table.energy_j, dtype=float)
    per_token = seconds_per_token(inst.payload_bits, r_up, r_down, node.compute_s_per_token)
    return NodeEnergyTable(node=m, cap=int(table.cap), energy_j=energy, convex=is_convex(energy),
                           rate_up_bps=r_up, rate_down_bps=r_down, seconds_per_token=per_token,
                           full_power_j_per_token=_full_power_j_per_token(inst, node),
                           outage=np.asarray(table.outage, dtype=float))


@functools.lru_cache(maxsize=64)
def energy_tables(inst: Instance) -> tuple[NodeEnergyTable, ...]:
    """One :class:`NodeEnergyTable` per remote node (index m−1 holds node m). Cached."""
    if inst.fading != "rayleigh":
        return _slow_fading_tables(inst)
    return tuple(_rayleigh_table(inst, m, node) for m, node in enumerate(inst.nodes, start=1))
