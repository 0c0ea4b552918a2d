"""Assemble a realistic instance from a :class:`GeneratorConfig` and a seed.

The recipe (each step documented in its module):

1. similarity clusters, synthetic expert weights, β and δ (:mod:`.experts`);
2. the placement of the experts on nodes 0..M (:mod:`.experts`);
3. node distances, gains, compute and memory (:mod:`.wireless`);
4. router gates with a calibrated temperature (:mod:`.routing`);
5. the per-layer latency budget (:func:`.wireless.latency_budget_s`);
6. the accuracy budgets (:func:`accuracy_budgets`), relative to the degradation of skipping
   every slot and raised, where needed, to each token's least degradation on the nodes that
   can carry the whole batch (:func:`batch_least_degradation`), so that every generated
   instance is feasible (unless ``raise_budgets`` is off); the manifest counts the raised
   budgets.

The document goes through the strict loader like any file, so a generated instance is valid
by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siftopt.experiments.generate import experts, routing, wireless
from siftopt.experiments.generate.config import GeneratorConfig
from siftopt.experiments.generate.presets import ARCHITECTURES, SCENARIOS
from siftopt.io.instance_file import instance_from_document
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data

#: Placeholder mean budget of the draft instance used to compute least degradations.
_NO_BUDGET = 1e300


@dataclass(frozen=True, eq=False)
class Generated:
    """A generated instance with the facts the manifest records about it."""

    config: GeneratorConfig
    seed: int
    instance: Instance
    facts: dict[str, Any] = field(default_factory=dict)


def instance_name(config: GeneratorConfig, seed: int) -> str:
    """``preset-scenario-L<tokens>-M<nodes>-<fading>-<power>-s<seed>``."""
    return (f"{config.preset}-{config.scenario}-L{config.tokens}-M{config.nodes}-"
            f"{config.fading}-{config.power_control}-s{seed}")


def _round_budget(value: float) -> float:
    """Round a budget up to 6 significant digits (never below the value)."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value)) - 5
    return math.ceil(value / 10.0**exponent) * 10.0**exponent


def accuracy_budgets(config: GeneratorConfig, skip_all: np.ndarray, least: np.ndarray
                     ) -> tuple[dict[str, Any], int]:
    """The ``accuracy`` block and how many budgets (per-token ones and the mean one) were
    raised to feasibility.

    ``skip_all[t] = Σ_k w[t,k]·β[k]`` and ``least[t]`` (the least achievable ``D_t``) are
    dimensionless degradations; ``least`` is ignored unless ``config.raise_budgets``.
    """
    reference = float(skip_all.mean())
    mean_budget = config.accuracy * reference
    token_budget = mean_budget * (2.0 if config.budget == "both" else 1.0)
    out: dict[str, Any] = {}
    raised = 0
    if not config.raise_budgets:
        least = np.zeros_like(least)
    if config.budget in ("token", "both"):
        eps = np.maximum(token_budget, least)
        raised = int(np.count_nonzero(least > token_budget))
        out["eps_token"] = (_round_budget(token_budget) if raised == 0 else
                            [_round_budget(float(e)) for e in eps])
    if config.budget in ("mean", "both"):
        out["eps_mean"] = _round_budget(max(mean_budget, float(least.mean())))
        raised += int(float(least.mean()) > mean_budget)
    return out, raised


def batch_least_degradation(inst: Instance) -> np.ndarray:
    """Each token's least degradation using only the source and the nodes that can carry the
    whole batch (cap ≥ L). Budgets at least this large make the instance feasible: every
    token taking its least-degradation actions on those nodes respects every load cap."""
    data = problem_data(inst)
    allowed = data.caps >= inst.num_tokens
    allowed[0] = True
    return data.least_degradation(allowed)


def instance_document(config: GeneratorConfig, *, name: str, model: dict[str, Any],
                      nodes: list[dict[str, Any]], placement: np.ndarray, beta: np.ndarray,
                      delta: np.ndarray, gates: np.ndarray, latency_s: float,
                      accuracy: dict[str, Any]) -> dict[str, Any]:
    """The instance file of a generated instance (docs/model.md §6): the scenario's channel,
    the bounds (δ = inf written as null), gates and the given parts. ``model`` is the file's
    ``model`` block (N, K, d, b, renormalisation)."""
    scn = SCENARIOS[config.scenario]
    channel: dict[str, Any] = {"noise_psd_dbm_per_hz": wireless.noise_psd_dbm_per_hz(scn),
                               "fading": config.fading}
    if config.fading == "rayleigh":
        channel["outage_max"] = config.outage_max
    bounds: dict[str, Any] = {
        "beta": beta.tolist(),
        "delta": [[None if math.isinf(v) else v for v in row] for row in delta.tolist()]}
    if config.max_candidates is not None:
        bounds["max_candidates"] = config.max_candidates
    return {"siftopt_version": 1, "name": name, "model": model,
            "placement": placement.tolist(), "bounds": bounds, "nodes": nodes,
            "channel": channel, "power_control": config.power_control,
            "latency_s": latency_s, "accuracy": accuracy, "tokens": {"gates": gates.tolist()}}


def _document(config: GeneratorConfig, seed: int, nodes: list[dict[str, Any]],
              placement: np.ndarray, beta: np.ndarray, delta: np.ndarray, gates: np.ndarray,
              latency_s: float, accuracy: dict[str, Any]) -> dict[str, Any]:
    arch = ARCHITECTURES[config.preset]
    model = {"num_experts": arch.num_experts, "top_k": arch.top_k,
             "hidden_dim": arch.hidden_dim, "bits_per_element": config.bits_per_element,
             "renormalize_topk": arch.renormalize_topk}
    return instance_document(config, name=instance_name(config, seed), model=model,
                             nodes=nodes, placement=placement, beta=beta, delta=delta,
                             gates=gates, latency_s=latency_s, accuracy=accuracy)


def generate(config: GeneratorConfig, seed: int) -> Generated:
    """The instance of ``config`` with ``seed`` (deterministic), and its manifest facts."""
    arch = ARCHITECTURES[config.preset]
    scn = SCENARIOS[config.scenario]
    labels, beta, delta = experts.similarity_constants(arch, config.similarity, seed)
    memory = experts.node_memory_gb(scn, config.nodes, seed)
    placement = experts.placement(config.placement, labels, config.nodes, memory, seed)
    draws = [wireless.draw_node(scn, seed, m) for m in range(1, config.nodes + 1)]
    nodes = [wireless.node_document(arch, scn, d) for d in draws]
    gates, tau, entropy = routing.router_gates(arch, labels, config.tokens,
                                               config.token_correlation, config.router_entropy,
                                               seed)
    bits = float(arch.hidden_dim * config.bits_per_element)
    latency = config.latency_s
    if latency is None:
        latency = wireless.latency_budget_s(nodes, bits, config.tokens,
                                            wireless.noise_psd_dbm_per_hz(scn), config.fading,
                                            config.outage_max, config.latency_scale)
    draft = instance_from_document(
        _document(config, seed, nodes, placement, beta, delta, gates, latency,
                  {"eps_mean": _NO_BUDGET}), file="<generated>")
    skip_all = (draft.topk_weights * draft.beta[draft.topk_experts]).sum(axis=1)
    least = batch_least_degradation(draft)
    accuracy, raised = accuracy_budgets(config, skip_all, least)
    doc = _document(config, seed, nodes, placement, beta, delta, gates, latency, accuracy)
    inst = instance_from_document(doc, file="<generated>")
    facts = {"temperature": tau, "router_entropy": entropy, "budgets_raised": raised,
             "distances_m": [round(d.distance_m, 1) for d in draws],
             "shadowing_db": [round(d.shadowing_db, 2) for d in draws],
             "memory_gb": [round(float(x), 1) for x in memory],
             "clusters": labels.tolist(),
             "useful_pairs": int(np.isfinite(delta).sum() - arch.num_experts)}
    return Generated(config=config, seed=seed, instance=inst, facts=facts)
