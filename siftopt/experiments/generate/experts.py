"""Expert similarity (β, δ) from synthetic expert weights, and expert placement.

Synthetic SwiGLU experts are drawn in similarity clusters: every weight matrix of expert i is

    W_i = s_i · (√(1 − e_i²)·C_{c(i)} + e_i·Z_i) / √fan_in,

with a cluster matrix ``C_c`` shared by the experts of cluster c, an individual matrix ``Z_i``
(standard normal entries), an individual share ``e_i = SPREAD·(1 − similarity)·u_i`` (``u_i``
log-normal around 1, so that pairs differ) and a per-expert output scale ``s_i`` (log-normal,
on ``w2`` only, so that the skip constants β differ). β and δ are then the proven analytic bounds
of :func:`siftopt.similarity.bounds.analytic_bounds` on the ball ‖x‖ ≤ 1 (a SwiGLU expert is
quadratic,
so its constants need a radius; the budgets are relative to β, so the radius drops out),
computed cluster by cluster with every pair refined exactly (:func:`cluster_bounds`).

The synthetic weights are small (``SIM_DIM × SIM_FFN`` per matrix) so that 256 experts take
a fraction of a second; the real hidden size d only sets the radio payload. Experts of
different clusters are independent draws, so their bound exceeds β; such pairs, and every
replacement whose bound is no better than skipping (``δ_ij ≥ β_i``), are dominated by skip and
written as not replaceable (``null``). That keeps the candidate lists short without changing
any optimum.
"""

from __future__ import annotations

import functools

import numpy as np

from siftopt.experiments.generate.presets import Architecture, Scenario
from siftopt.experiments.generate.streams import model_salt, stream
from siftopt.similarity import ExpertWeights, analytic_bounds

#: Model and expert hidden size of the synthetic weights (not the real d and h).
SIM_DIM = 24
SIM_FFN = 24
#: Experts per similarity cluster (about).
CLUSTER_SIZE = 8
#: Individual share at similarity 0 (δ/β > 1 inside a cluster: hardly any useful replacement).
SPREAD = 0.3
#: Log-normal deviations of the individual share and of the output scale.
SHARE_SIGMA = 0.3
SCALE_SIGMA = 0.25
#: Radius of the ball on which the SwiGLU constants hold (units of ‖x‖).
RADIUS = 1.0


def cluster_labels(num_experts: int, rng: np.random.Generator) -> np.ndarray:
    """Balanced random cluster ids (about :data:`CLUSTER_SIZE` experts each, at least 2)."""
    count = max(2, round(num_experts / CLUSTER_SIZE))
    labels = np.arange(num_experts) % count
    return rng.permutation(labels).astype(np.int64)


def synthetic_weights(num_experts: int, labels: np.ndarray, similarity: float,
                      rng: np.random.Generator) -> ExpertWeights:
    """Clustered synthetic SwiGLU expert weights (see the module docstring)."""
    count = int(labels.max()) + 1
    shapes = {"w1": (SIM_FFN, SIM_DIM), "w3": (SIM_FFN, SIM_DIM), "w2": (SIM_DIM, SIM_FFN)}
    share = SPREAD * (1.0 - similarity) * rng.lognormal(0.0, SHARE_SIGMA, num_experts)
    share = np.minimum(share, 1.0)[:, None, None]
    scale = rng.lognormal(0.0, SCALE_SIGMA, num_experts)[:, None, None]
    arrays = {}
    for key, shape in shapes.items():
        common = rng.standard_normal((count, *shape))[labels]
        own = rng.standard_normal((num_experts, *shape))
        w = (np.sqrt(1.0 - share**2) * common + share * own) / np.sqrt(shape[1])
        arrays[key] = w * scale if key == "w2" else w
    return ExpertWeights.from_arrays(arrays, source="<synthetic experts>")


def cluster_bounds(weights: ExpertWeights, labels: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """β (N,) and δ (N, N) with every pair of the same cluster bounded exactly
    (``exact_pairs="all"`` per cluster) and pairs of different clusters set to inf.

    Across clusters the weights are independent draws, so the bound exceeds β and replacing
    would be dominated by skipping; not computing those pairs keeps 256 experts fast.
    """
    n = labels.size
    beta = np.zeros(n)
    delta = np.full((n, n), np.inf)
    arrays = {"w1": weights.w1, "w2": weights.w2, "w3": weights.w3}
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == c)
        sub = ExpertWeights.from_arrays({k: v[members] for k, v in arrays.items()},
                                        source="<synthetic experts>")
        bounds = analytic_bounds(sub, "swiglu", RADIUS, exact_pairs="all")
        beta[members] = bounds.beta
        delta[np.ix_(members, members)] = bounds.delta
    return beta, delta


@functools.lru_cache(maxsize=32)
def _similarity_cached(preset: str, num_experts: int, similarity: float, seed: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = stream(seed, "experts", model_salt(preset))
    labels = cluster_labels(num_experts, rng)
    weights = synthetic_weights(num_experts, labels, similarity, rng)
    beta, delta = cluster_bounds(weights, labels)
    delta[delta >= beta[:, None]] = np.inf
    np.fill_diagonal(delta, 0.0)
    out = (labels, _round_up(beta), _round_up(delta))
    for a in out:
        a.setflags(write=False)
    return out


def similarity_constants(arch: Architecture, similarity: float, seed: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, β, δ)`` for the architecture; δ = inf where replacing is not useful.

    Cached per process (a sweep over budgets, tokens or nodes reuses them); read-only arrays.
    """
    return _similarity_cached(arch.name, arch.num_experts, float(similarity), int(seed))


def _round_up(a: np.ndarray, digits: int = 6) -> np.ndarray:
    """Round up to ``digits`` significant digits (bounds stay bounds); inf and 0 unchanged."""
    out = np.array(a, dtype=np.float64)
    finite = np.isfinite(out) & (out > 0)
    exponent = np.floor(np.log10(out[finite])) - (digits - 1)
    out[finite] = np.ceil(out[finite] / 10.0**exponent) * 10.0**exponent
    return out


# ------------------------------------------------------------------------------------------
# Placement: the node 0..M of every expert
# ------------------------------------------------------------------------------------------


def place_round_robin(num_experts: int, num_nodes: int) -> np.ndarray:
    """Expert i on node ``i mod (M + 1)`` (node 0 is the source)."""
    return np.arange(num_experts, dtype=np.int64) % (num_nodes + 1)


def place_random(num_experts: int, num_nodes: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of the round-robin placement (equal counts, random experts)."""
    return rng.permutation(place_round_robin(num_experts, num_nodes))


def place_by_cluster(labels: np.ndarray, num_nodes: int) -> np.ndarray:
    """Each similarity cluster on one node: largest cluster first onto the emptiest node."""
    placement = np.zeros(labels.size, dtype=np.int64)
    load = np.zeros(num_nodes + 1, dtype=np.int64)
    sizes = np.bincount(labels)
    for c in np.argsort(-sizes, kind="stable"):
        node = int(np.argmin(load))
        placement[labels == c] = node
        load[node] += sizes[c]
    return placement


def place_by_memory(num_experts: int, memory_gb: np.ndarray, rng: np.random.Generator
                    ) -> np.ndarray:
    """Experts per node proportional to node memory (largest remainder), random experts.

    ``memory_gb`` holds the memory of nodes 0..M (GB).
    """
    share = memory_gb / memory_gb.sum() * num_experts
    counts = np.floor(share).astype(np.int64)
    remainder = num_experts - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:remainder]] += 1
    return rng.permutation(np.repeat(np.arange(memory_gb.size), counts)).astype(np.int64)


def node_memory_gb(scn: Scenario, num_nodes: int, seed: int) -> np.ndarray:
    """Memory of nodes 0..M in GB: the source's from the scenario, the others drawn."""
    low, high = scn.node_memory_gb
    remote = [float(stream(seed, "node", m, 1).uniform(low, high))
              for m in range(1, num_nodes + 1)]
    return np.array([scn.source_memory_gb, *remote])


def placement(strategy: str, labels: np.ndarray, num_nodes: int, memory_gb: np.ndarray,
              seed: int) -> np.ndarray:
    """The placement of the given strategy (``round-robin``, ``random``, ``cluster``,
    ``memory``)."""
    n = labels.size
    if strategy == "round-robin":
        return place_round_robin(n, num_nodes)
    if strategy == "random":
        return place_random(n, num_nodes, stream(seed, "placement"))
    if strategy == "cluster":
        return place_by_cluster(labels, num_nodes)
    if strategy == "memory":
        return place_by_memory(n, memory_gb, stream(seed, "placement"))
    raise ValueError(f"unknown placement {strategy!r}")
