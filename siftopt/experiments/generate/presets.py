"""Named presets of ``siftopt generate``: MoE architectures and wireless scenarios.

Architectures are taken from the models' public configuration files (Hugging Face
``config.json``); only the fields that enter the problem or the realism of the generator are
kept. Shared experts always run at the source, so they never enter the problem; they are
recorded for the manifest only.

Scenarios describe the radio side. Distances are in m, bandwidths in Hz, powers in W, the
receiver noise figure and the shadowing deviation in dB, node compute throughput in FLOP/s and
node memory in GB.
"""

from __future__ import annotations

from dataclasses import dataclass

from siftopt.errors import InputError


@dataclass(frozen=True)
class Architecture:
    """One MoE architecture (per MoE layer; sizes are the real ones of the public config).

    Attributes:
        name: preset name (``--preset``).
        hf_id: the model's repository id, for reference.
        num_experts: routed experts N per MoE layer.
        shared_experts: shared (always active) experts; they run at the source.
        top_k: routed experts per token K.
        hidden_dim: model dimension d (the token state that travels over the air).
        ffn_dim: hidden dimension of one routed expert (``moe_intermediate_size``).
        num_layers: transformer layers (for the memory footprint of an expert across layers).
        renormalize_topk: whether the top-K gate weights are renormalised to sum to 1
            (``norm_topk_prob``).
        expert_groups: router groups for group-limited routing (1 = none).
        topk_groups: groups a token may route to under group-limited routing.
    """

    name: str
    hf_id: str
    num_experts: int
    shared_experts: int
    top_k: int
    hidden_dim: int
    ffn_dim: int
    num_layers: int
    renormalize_topk: bool
    expert_groups: int = 1
    topk_groups: int = 1

    def expert_flops_per_token(self) -> float:
        """FLOPs of one SwiGLU expert on one token: three d×h matrix products, 2 FLOP each."""
        return 6.0 * self.hidden_dim * self.ffn_dim

    def expert_bytes(self, bytes_per_weight: float = 2.0) -> float:
        """Bytes of one expert index across all layers (bf16 weights by default)."""
        return 3.0 * self.hidden_dim * self.ffn_dim * bytes_per_weight * self.num_layers


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1", num_experts=8,
                 shared_experts=0, top_k=2, hidden_dim=4096, ffn_dim=14336, num_layers=32,
                 renormalize_topk=True),
    Architecture("deepseek-moe-16b", "deepseek-ai/deepseek-moe-16b-base", num_experts=64,
                 shared_experts=2, top_k=6, hidden_dim=2048, ffn_dim=1408, num_layers=28,
                 renormalize_topk=False),
    Architecture("qwen1.5-moe-a2.7b", "Qwen/Qwen1.5-MoE-A2.7B", num_experts=60,
                 shared_experts=1, top_k=4, hidden_dim=2048, ffn_dim=1408, num_layers=24,
                 renormalize_topk=False),
    Architecture("qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", num_experts=128, shared_experts=0,
                 top_k=8, hidden_dim=2048, ffn_dim=768, num_layers=48,
                 renormalize_topk=True),
    Architecture("olmoe-1b-7b", "allenai/OLMoE-1B-7B-0924", num_experts=64, shared_experts=0,
                 top_k=8, hidden_dim=2048, ffn_dim=1024, num_layers=16,
                 renormalize_topk=False),
    Architecture("deepseek-v3", "deepseek-ai/DeepSeek-V3", num_experts=256, shared_experts=1,
                 top_k=8, hidden_dim=7168, ffn_dim=2048, num_layers=61,
                 renormalize_topk=True, expert_groups=8, topk_groups=4),
)}


@dataclass(frozen=True)
class Scenario:
    """A wireless deployment (SI units unless the name says otherwise).

    Path loss is ``128.1 + 37.6·log10(d/km)`` dB (3GPP TR 36.814 urban macro) plus log-normal
    shadowing of ``shadowing_db`` standard deviation; the noise PSD is
    ``−174 dBm/Hz + noise_figure_db``. Each remote node gets its own orthogonal band of
    ``bandwidth_hz``. ``power_up_w`` is the source device's transmit power, ``power_down_w`` the
    node's. Node compute throughput is drawn log-uniformly from ``node_flops``; node memory
    uniformly from ``node_memory_gb`` (used by the ``memory`` placement).
    """

    name: str
    description: str
    distance_m: tuple[float, float]
    shadowing_db: float
    bandwidth_hz: float
    power_up_w: float
    power_down_w: float
    noise_figure_db: float
    node_flops: tuple[float, float]
    node_memory_gb: tuple[float, float]
    source_memory_gb: float


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("indoor", "indoor edge cluster (office/factory): peer devices 10-60 m away",
             distance_m=(10.0, 60.0), shadowing_db=4.0, bandwidth_hz=20e6, power_up_w=0.2,
             power_down_w=0.2, noise_figure_db=7.0, node_flops=(5e12, 20e12),
             node_memory_gb=(8.0, 32.0), source_memory_gb=16.0),
    Scenario("urban", "urban small cell: edge servers behind access points 50-250 m away",
             distance_m=(50.0, 250.0), shadowing_db=8.0, bandwidth_hz=10e6, power_up_w=0.2,
             power_down_w=1.0, noise_figure_db=9.0, node_flops=(20e12, 100e12),
             node_memory_gb=(16.0, 64.0), source_memory_gb=16.0),
    Scenario("rural", "rural macro cell: base-station edge servers 200-800 m away",
             distance_m=(200.0, 800.0), shadowing_db=8.0, bandwidth_hz=5e6, power_up_w=0.2,
             power_down_w=10.0, noise_figure_db=5.0, node_flops=(50e12, 200e12),
             node_memory_gb=(32.0, 128.0), source_memory_gb=16.0),
)}


def architecture(name: str, *, path: str = "preset", file: str | None = None) -> Architecture:
    """The architecture preset ``name``; InputError naming the known presets otherwise."""
    if name not in ARCHITECTURES:
        raise InputError(f"unknown preset {name!r} (known: {', '.join(ARCHITECTURES)})",
                         file=file, path=path)
    return ARCHITECTURES[name]


def scenario(name: str, *, path: str = "scenario", file: str | None = None) -> Scenario:
    """The scenario preset ``name``; InputError naming the known scenarios otherwise."""
    if name not in SCENARIOS:
        raise InputError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})",
                         file=file, path=path)
    return SCENARIOS[name]
