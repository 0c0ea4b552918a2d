"""Drawing the channel and applying a decision to it (statistical CSI, MODEL.md §5).

Every realisation draws ``X↑_m, X↓_m ~ Exp(1)`` for every remote node; a node with load n is in
outage when ``X↑ < x_th↑(n)`` or ``X↓ < x_th↓(n)``. What each direction then spends, and what the
node spends, is defined here; their means are the closed forms of :mod:`siftopt.model.fading`,
whose tables (thresholds, windows, parameters) are the very objects the energy tables of
:mod:`siftopt.model.physics` were built from. Units: bits, s, Hz, W, J; ``X`` is dimensionless.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from siftopt.analysis.simulate.plan import (
    DegradationSummary,
    Plan,
    realised_degradation,
    summarise_degradation,
)
from siftopt.model import fading
from siftopt.model.instance import Instance
from siftopt.model.physics import node_rates, shannon_rate_bps

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Realisations drawn per vectorised chunk. A constant, so that results depend only on the seed
#: and the number of runs (not on memory heuristics).
CHUNK_RUNS = 16_384


# --------------------------------------------------------------------------------------------
# One node: realised fading and the energy it costs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LinkSample:
    """Realised fading of many independent realisations.

    Arrays have shape ``(size, *thresholds.shape)``.

    Attributes:
        x_up, x_down: realised ``X↑, X↓ ~ Exp(1)`` (dimensionless).
        uplink_ok: ``X↑ ≥ x_th↑``.
        downlink_ok: ``X↓ ≥ x_th↓`` (whether the downlink *would* succeed if used).
        success: ``uplink_ok & downlink_ok``; the node is in outage where this is false.
    """

    x_up: FloatArray
    x_down: FloatArray
    uplink_ok: BoolArray
    downlink_ok: BoolArray
    success: BoolArray


def sample_link_success(
    rng: np.random.Generator,
    thresholds_up: npt.ArrayLike,
    thresholds_down: npt.ArrayLike,
    size: int,
) -> LinkSample:
    """Draw ``size`` independent realisations of ``X↑, X↓ ~ Exp(1)`` per threshold entry.

    Args:
        rng: the generator (seed it for reproducibility).
        thresholds_up, thresholds_down: ``x_th`` per node (or any shape, broadcast together).
        size: number of realisations (leading axis of every returned array).
    """
    th_up, th_down = np.broadcast_arrays(
        np.asarray(thresholds_up, dtype=np.float64), np.asarray(thresholds_down, dtype=np.float64)
    )
    shape = (int(size), *th_up.shape)
    x_up = rng.standard_exponential(shape)
    x_down = rng.standard_exponential(shape)
    up_ok = x_up >= th_up
    down_ok = x_down >= th_down
    return LinkSample(x_up, x_down, up_ok, down_ok, up_ok & down_ok)


def realised_direction_energy(
    x: npt.ArrayLike,
    *,
    bits: npt.ArrayLike,
    window_s: npt.ArrayLike,
    bandwidth_hz: float,
    mean_gain: float,
    power_max_w: float,
    noise_psd_w_per_hz: float,
    power_control: str,
) -> FloatArray:
    """Energy (J) one direction actually spends for realised fading ``x`` (vectorised).

    * adaptive: ``τ·P_max·x_th/X`` if ``X ≥ x_th`` (power ``P_max·x_th/X`` for the whole window);
    * fixed: ``P_max·D/(B·log2(1 + P_max ḡ X/(N0 B)))`` if ``X ≥ x_th``;
    * 0 otherwise (no transmission in outage) and 0 for ``D = 0``.

    ``bits`` and ``window_s`` broadcast against ``x``.
    """
    x_a = np.asarray(x, dtype=np.float64)
    bits_a = np.broadcast_to(np.asarray(bits, dtype=np.float64), x_a.shape)
    window_a = np.broadcast_to(np.asarray(window_s, dtype=np.float64), x_a.shape)
    x_th = fading.thresholds(
        bits_a, window_a, bandwidth_hz, mean_gain, power_max_w, noise_psd_w_per_hz
    )
    sends = (x_a >= x_th) & (bits_a > 0)
    safe_x = np.where(sends, x_a, 1.0)
    if power_control == "adaptive":
        safe_th = np.where(sends, x_th, 0.0)
        energy = window_a * power_max_w * safe_th / safe_x
    elif power_control == "fixed":
        rate = shannon_rate_bps(bandwidth_hz, power_max_w, mean_gain * safe_x, noise_psd_w_per_hz)
        energy = power_max_w * bits_a / rate
    else:
        raise ValueError(f"power_control must be 'fixed' or 'adaptive', got {power_control!r}")
    return np.where(sends, energy, 0.0)


def realised_energy(
    x_up: npt.ArrayLike,
    x_down: npt.ArrayLike,
    *,
    bits: npt.ArrayLike,
    window_up_s: npt.ArrayLike,
    window_down_s: npt.ArrayLike,
    bandwidth_hz: float,
    gain_up_mean: float,
    gain_down_mean: float,
    power_up_w: float,
    power_down_w: float,
    noise_psd_w_per_hz: float,
    power_control: str,
) -> tuple[FloatArray, FloatArray]:
    """Realised uplink and downlink energies (J, unweighted) of one node, vectorised.

    The downlink transmits only if the uplink succeeded (the node cannot answer a token state it
    never received), so the downlink energy is 0 wherever ``X↑ < x_th↑``.

    Returns:
        ``(energy_up_j, energy_down_j)`` with the broadcast shape of the inputs.
    """
    e_up = realised_direction_energy(
        x_up,
        bits=bits,
        window_s=window_up_s,
        bandwidth_hz=bandwidth_hz,
        mean_gain=gain_up_mean,
        power_max_w=power_up_w,
        noise_psd_w_per_hz=noise_psd_w_per_hz,
        power_control=power_control,
    )
    e_down = realised_direction_energy(
        x_down,
        bits=bits,
        window_s=window_down_s,
        bandwidth_hz=bandwidth_hz,
        mean_gain=gain_down_mean,
        power_max_w=power_down_w,
        noise_psd_w_per_hz=noise_psd_w_per_hz,
        power_control=power_control,
    )
    x_th_up = fading.thresholds(
        np.broadcast_to(np.asarray(bits, dtype=np.float64), e_up.shape),
        np.broadcast_to(np.asarray(window_up_s, dtype=np.float64), e_up.shape),
        bandwidth_hz,
        gain_up_mean,
        power_up_w,
        noise_psd_w_per_hz,
    )
    uplink_ok = np.asarray(x_up, dtype=np.float64) >= x_th_up
    return e_up, np.where(uplink_ok, e_down, 0.0)


def realised_node_energy(
    table: fading.RayleighNodeTable, load: int, x_up: npt.ArrayLike, x_down: npt.ArrayLike
) -> FloatArray:
    """Realised weighted node energy (J) at load n, vectorised over X.

    ``ω↑E↑ + 1{X↑ ≥ x_th↑}·(ω↓E↓ + κ·n)``: a node whose uplink failed received nothing, so it
    computes nothing and sends nothing back (MODEL.md v2 §5). Its mean over
    ``X↑, X↓ ~ Exp(1)`` is ``table.energy_j[load]``.

    Raises:
        ValueError: if ``load`` is not in ``0..table.cap``.
    """
    if not 0 <= load <= table.cap:
        raise ValueError(f"load must be in 0..{table.cap}, got {load}")
    p = table.params
    shape = np.broadcast_shapes(np.shape(x_up), np.shape(x_down))
    if load == 0:
        return np.zeros(shape)
    e_up, e_down = realised_energy(
        x_up,
        x_down,
        bits=load * p.bits_per_token,
        window_up_s=float(table.window_up_s[load]),
        window_down_s=float(table.window_down_s[load]),
        bandwidth_hz=p.bandwidth_hz,
        gain_up_mean=p.gain_up_mean,
        gain_down_mean=p.gain_down_mean,
        power_up_w=p.power_up_w,
        power_down_w=p.power_down_w,
        noise_psd_w_per_hz=p.noise_psd_w_per_hz,
        power_control=p.power_control,
    )
    arrived = np.broadcast_to(np.asarray(x_up, dtype=np.float64), shape) >= table.threshold_up[load]
    compute = np.where(arrived, p.compute_j_per_token * load, 0.0)
    return p.weight_up * e_up + p.weight_down * e_down + compute


# --------------------------------------------------------------------------------------------
# A decision on many realisations
# --------------------------------------------------------------------------------------------


def rayleigh_tables(inst: Instance) -> tuple[fading.RayleighNodeTable, ...]:
    """The :class:`~siftopt.model.fading.RayleighNodeTable` of every node (index m − 1 = node m).

    The same (cached) objects that :func:`siftopt.model.physics.energy_tables` was built from,
    so the caps and expected energies are those of the evaluator by construction.
    """
    return tuple(fading.node_table(inst, node, *node_rates(inst, node)) for node in inst.nodes)


def draw_chunks(rng: np.random.Generator, runs: int, num_nodes: int
                ) -> Iterator[tuple[FloatArray, FloatArray]]:
    """Yield ``(X↑, X↓)`` chunks of shape ``(≤ CHUNK_RUNS, M)``, ``X ~ Exp(1)``, R rows in all.

    Draws through :func:`sample_link_success` (uplink block, then downlink
    block, per chunk), so a given seed and R always give the same channel.
    """
    zeros = np.zeros(num_nodes)
    done = 0
    while done < runs:
        size = min(CHUNK_RUNS, runs - done)
        sample = sample_link_success(rng, zeros, zeros, size)
        yield sample.x_up, sample.x_down
        done += size


@dataclass(frozen=True, eq=False)
class ChunkOutcome:
    """The statistical decision applied to a chunk of realisations.

    Attributes:
        energy_j: ``(R,)`` realised energy per run (J).
        node_energy_j: ``(R, M)`` realised energy per node (J).
        outage: ``(R, M)`` node in outage (always False for unused nodes).
        degradation: per-run degradation summaries.
    """

    energy_j: FloatArray
    node_energy_j: FloatArray
    outage: BoolArray
    degradation: DegradationSummary


def apply_channel(plan: Plan, tables: tuple[fading.RayleighNodeTable, ...] | None,
                  x_up: FloatArray, x_down: FloatArray) -> ChunkOutcome:
    """Apply a decision to realised fading ``X↑, X↓`` of shape ``(R, M)``.

    With ``tables=None`` (slow fading) the channel is deterministic: no outage and the planned
    node energies in every run.
    """
    runs, m_nodes = x_up.shape
    outage = np.zeros((runs, m_nodes), dtype=bool)
    node_energy = np.zeros((runs, m_nodes))
    for m in np.flatnonzero(plan.used):
        n = int(plan.loads[m])
        if tables is None:
            node_energy[:, m] = plan.node_energy_j[m]
            continue
        table = tables[m]
        ok = (x_up[:, m] >= table.threshold_up[n]) & (x_down[:, m] >= table.threshold_down[n])
        outage[:, m] = ~ok
        node_energy[:, m] = realised_node_energy(table, n, x_up[:, m], x_down[:, m])
    summary = summarise_degradation(plan, realised_degradation(plan, outage))
    return ChunkOutcome(node_energy.sum(axis=1), node_energy, outage, summary)


__all__ = [
    "CHUNK_RUNS", "ChunkOutcome", "LinkSample", "apply_channel", "draw_chunks",
    "rayleigh_tables", "realised_direction_energy", "realised_energy", "realised_node_energy",
    "sample_link_success",
]
