"""What determines a validation run: the methods, the budget grid, the model and the network.

Same configuration and seed → same numbers: :func:`.run.run_validation` is deterministic for a
configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from siftopt.errors import UsageError
from siftopt.experiments.validate.moe import ACTIVATIONS, MoEConfig, TrainConfig
from siftopt.model.physics import THERMAL_NOISE_DBM_PER_HZ

#: Methods compared, in table order: the baseline, two policies, the exact optimum.
METHODS: tuple[str, ...] = ("topk", "local", "sift-ratio", "highs")
#: Accuracy budgets ε as fractions of the mean skip-all degradation of the test tokens.
#: The smallest non-zero degradation a token can take (one slot replaced by its closest expert)
#: is already ~0.15-0.3 of its skip-all degradation here, so the grid is finest from 0.2 to 0.6.
FULL_EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75,
                                         1.0)
QUICK_EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.4, 0.75)
VALIDATE_EXTRA_HINT = "install the optional extra: pip install 'siftopt[validate]'"


@dataclass(frozen=True)
class NetworkConfig:
    """The simulated wireless side (SI units: m, Hz, W, dB, FLOP/s, s).

    Remote node m (1..M) sits at ``distances_m[m-1]`` from the source with the 3GPP urban path
    loss ``128.1 + 37.6·log10(d/km)`` dB on both links (no shadowing: a fixed, reproducible
    geometry). Expert i lives on node ``i mod (M+1)`` (node 0 = the source). The latency budget
    is ``latency_slack`` × the full-power time the slowest node needs for a full batch, so
    Top-K routing is always latency-feasible and the energy, not the deadline, is at stake.
    """

    distances_m: tuple[float, ...] = (40.0, 90.0, 160.0, 250.0)
    bandwidth_hz: float = 10e6
    power_up_w: float = 0.2
    power_down_w: float = 1.0
    noise_figure_db: float = 9.0
    node_flops: float = 1e12
    bits_per_element: int = 16
    latency_slack: float = 2.0
    power_control: str = "adaptive"

    @property
    def num_nodes(self) -> int:
        return len(self.distances_m)

    @property
    def noise_psd_dbm_per_hz(self) -> float:
        return THERMAL_NOISE_DBM_PER_HZ + self.noise_figure_db


@dataclass(frozen=True)
class ValidationConfig:
    """Everything that determines a validation run (same config and seed → same numbers)."""

    num_experts: int = 16
    top_k: int = 2
    seed: int = 0
    quick: bool = False
    activation: str = "relu"
    model_dim: int = 32
    ffn_dim: int = 64
    test_fraction: float = 0.3
    batch_tokens: int = 64
    max_test_tokens: int | None = None  # None: the whole test split
    eps_fractions: tuple[float, ...] = FULL_EPS_FRACTIONS
    methods: tuple[str, ...] = METHODS
    training: TrainConfig = field(default_factory=TrainConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)

    @classmethod
    def make(cls, *, experts: int = 16, top_k: int = 2, seed: int = 0, quick: bool = False,
             activation: str = "relu", batch_tokens: int = 64) -> ValidationConfig:
        """The command's configuration; ``quick`` trains less and serves 128 test tokens at
        3 budgets (the test suite's version)."""
        if experts < 2:
            raise UsageError(f"--experts: must be >= 2, got {experts}")
        if not 1 <= top_k <= experts:
            raise UsageError(f"--top-k: must be in 1..{experts} (the number of experts), "
                             f"got {top_k}")
        if activation not in ACTIVATIONS:
            raise UsageError(f"--activation: must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        if batch_tokens < 1:
            raise UsageError(f"--batch-tokens: must be >= 1, got {batch_tokens}")
        tc = TrainConfig(seed=seed)
        if quick:
            tc = replace(tc, dense_epochs=4, moe_epochs=10)
        return cls(num_experts=experts, top_k=top_k, seed=seed, quick=quick,
                   activation=activation, batch_tokens=batch_tokens,
                   max_test_tokens=128 if quick else None,
                   eps_fractions=QUICK_EPS_FRACTIONS if quick else FULL_EPS_FRACTIONS,
                   training=tc)

    def moe_config(self) -> MoEConfig:
        return MoEConfig(model_dim=self.model_dim, ffn_dim=self.ffn_dim,
                         num_experts=self.num_experts, top_k=self.top_k,
                         activation=self.activation)
