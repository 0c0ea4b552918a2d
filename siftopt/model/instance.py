"""The typed, immutable :class:`Instance` (docs/model.md §1) and the top-K rule of §2.1.

Pure data: reading and writing instance files is :mod:`siftopt.io.instance_file`.

Conventions of the in-memory object:

* ``delta[i, j] = inf`` means "j cannot replace i" (``null`` in JSON, ``inf`` in an ``.npz``).
* ``topk_experts[t]`` lists the K experts of token t in router order (descending gate, ties
  toward the lower expert index when derived from gates); ``topk_weights[t]`` their weights.
* Gains and noise are kept in linear SI units (gain as a power ratio, noise in W/Hz). How the
  file wrote things (dB, dBm, a scalar budget, optional fields spelled out, the ``.npz``
  sidecar, the provenance of the bounds) is kept apart in :class:`FileFormat`, so that
  writing the instance back out reproduces the file; it never changes the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FADING_MODES = ("slow", "rayleigh")
CSI_MODES = ("statistical", "instantaneous")
POWER_MODES = ("fixed", "adaptive")


@dataclass(frozen=True)
class Node:
    """A remote edge node (node ids are 1..M in list order).

    Units: bandwidth in Hz, gains as linear power ratios, powers in W, compute time in s per
    token, compute energy in J per token.
    """

    bandwidth_hz: float
    gain_up: float
    gain_down: float
    power_up_w: float
    power_down_w: float
    compute_s_per_token: float
    compute_j_per_token: float = 0.0
    gain_up_db: float | None = None  # as written in the file, if given in dB
    gain_down_db: float | None = None
    compute_j_given: bool = False  # whether the file wrote compute_j_per_token


@dataclass(frozen=True)
class FileFormat:
    """How an instance file wrote its instance-level fields (no effect on the model)."""

    #: The noise as written in dBm/Hz, when the file gave it so.
    noise_psd_dbm_per_hz: float | None = None
    #: Whether ``accuracy.eps_token`` was one number for every token.
    eps_token_scalar: bool = False
    #: Whether ``channel.csi`` and ``energy_weights`` were written although optional.
    csi_given: bool = False
    energy_weights_given: bool = False
    #: The ``.npz`` sidecar, and the (field path, npz key) of each array read from it.
    arrays_file: str | None = None
    npz_fields: tuple[tuple[str, str], ...] = ()
    #: Provenance of β/δ as written by ``siftopt similarity`` (kind, method, radius, ...).
    bounds_info: tuple[tuple[str, Any], ...] = ()


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Instance:
    """A validated siftopt instance (docs/model.md §1 and §7). Immutable."""

    name: str
    num_experts: int
    top_k: int
    hidden_dim: int
    bits_per_element: int
    renormalize_topk: bool
    placement: np.ndarray  # (N,) int, node of each expert, 0 = source
    beta: np.ndarray  # (N,) skip constants
    delta: np.ndarray  # (N, N) dissimilarity constants, inf = not replaceable
    max_candidates: int | None
    nodes: tuple[Node, ...]
    noise_psd_w_per_hz: float
    fading: str
    outage_max: float | None
    csi: str
    power_control: str
    latency_s: float
    eps_token: np.ndarray | None  # (L,) per-token budgets
    eps_mean: float | None
    energy_weight_up: float
    energy_weight_down: float
    topk_experts: np.ndarray  # (L, K) int
    topk_weights: np.ndarray  # (L, K) float
    gates: np.ndarray | None = None  # (L, N), when the file gave full gate rows
    #: How the file wrote things, so that writing back out round-trips exactly.
    source: FileFormat = field(default=FileFormat())

    def __post_init__(self) -> None:
        for name in ("placement", "beta", "delta", "topk_experts", "topk_weights"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("eps_token", "gates"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _frozen(getattr(self, name)))

    # Sizes ---------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """L, the number of tokens in the batch (1 = decoding)."""
        return int(self.topk_experts.shape[0])

    @property
    def num_nodes(self) -> int:
        """M, the number of remote nodes."""
        return len(self.nodes)

    @property
    def payload_bits(self) -> int:
        """S = d·b, bits per token per direction."""
        return self.hidden_dim * self.bits_per_element

    def equals(self, other: Instance) -> bool:
        """Field-by-field equality (arrays compared exactly, inf == inf)."""
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape:
                    return False
                if not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True

    def replace(self, **changes: Any) -> Instance:
        """A copy with some fields changed (validation is the caller's business)."""
        return dataclasses.replace(self, **changes)


def topk_from_gates(gates: np.ndarray, k: int, renormalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-K sets and weights from full gate rows (docs/model.md §2.1).

    The K largest entries, ties broken toward the lower expert index; weights renormalised
    over the top-K when ``renormalize`` (a zero top-K sum gives non-finite weights).
    """
    order = np.argsort(-gates, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(gates, order, axis=1)
    if renormalize:
        with np.errstate(divide="ignore", invalid="ignore"):
            chosen = chosen / chosen.sum(axis=1, keepdims=True)
    return order.astype(np.int64), chosen
