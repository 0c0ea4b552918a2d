"""Real accuracy validation: a trained MoE served under the accuracy constraint (issue 6, part 2).

``siftopt validate-accuracy`` (:mod:`siftopt.cli.validate_cmd`) runs :func:`run_validation`:

1. train the small numpy MoE classifier of :mod:`siftopt.experiments.moe_numpy` on scikit-learn's
bundled
   digits data (8×8 images, 10 classes; no download) and measure its test accuracy;
2. compute the analytic β/δ of its experts with :func:`siftopt.similarity.bounds.analytic_bounds`
(proven
   bounds for every token state x: the experts are bias-free FFNs);
3. place the experts on simulated wireless nodes (the source hosts every (M+1)-th expert,
   M remote nodes at increasing distances host the rest; payload S = d·16 bits);
4. for each accuracy budget ε (a fraction of the mean skip-all degradation) and each method
   (Top-K, ``local``, ``sift-ratio``, the exact optimum ``highs``), serve the whole test set in
   prefill batches (one instance per batch, gates from the trained router), run the real
   forward pass with the served actions (keep → E_i, replace → E_j, skip → 0) and measure the
   radio energy, the real test accuracy, the output error ``‖ŷ − y‖/‖x‖`` and the tokens where
   the bound ``‖ŷ − y‖ ≤ ‖x‖·D_t`` of docs/model.md §4 fails (there must be none).

Here x is the token state entering the MoE layer (the embedding h), y the exact MoE output and
ŷ the served one; the residual adds h to both, so the logits move by ``(ŷ − y)·Woᵀ``.

The top-K experts and weights written into each instance are the arrays the model itself uses
(renormalised top-K softmax), passed as ``topk_experts``/``topk_weights``; the serving code
reads them back from the validated instance, so model and optimiser see the same weights bit
for bit. Expert outputs are computed once per test token with
:func:`siftopt.similarity.bounds.expert_forward` (the weight contract the bounds are proven for) and
shared by the reference and the served forward passes, so serving every slot by keep
reproduces the model's logits exactly.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError, UsageError
from siftopt.experiments.moe_numpy import (
    ACTIVATIONS,
    MoEConfig,
    MoEParams,
    TrainConfig,
    embed,
    gates,
    head,
    topk_route,
    train,
)
from siftopt.model.evaluate import Evaluation, energies_equal
from siftopt.model.instance import Instance, instance_from_document
from siftopt.model.problem import DEGRADATION_TOL, SKIP
from siftopt.similarity import Bounds, ExpertWeights, analytic_bounds, expert_forward
from siftopt.solve import solve

#: Methods compared, in table order: the baseline, two policies, the exact optimum.
METHODS: tuple[str, ...] = ("topk", "local", "sift-ratio", "highs")
METHOD_LABELS: dict[str, str] = {"topk": "Top-K", "local": "local", "sift-ratio": "sift-ratio",
                                 "highs": "exact (highs)"}
#: Accuracy budgets ε as fractions of the mean skip-all degradation of the test tokens.
#: The smallest non-zero degradation a token can take (one slot replaced by its closest expert)
#: is already ~0.15-0.3 of its skip-all degradation here, so the grid is finest from 0.2 to 0.6.
FULL_EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75,
                                         1.0)
QUICK_EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.4, 0.75)
#: Bound check tolerance: a token violates the bound iff
#: ``‖ŷ − y‖ > ‖x‖·(D_t·(1 + BOUND_RTOL) + BOUND_ATOL)``.
BOUND_RTOL: float = 1e-9
BOUND_ATOL: float = 1e-12
#: Thermal noise PSD at 290 K, dBm/Hz.
THERMAL_NOISE_DBM_PER_HZ: float = -174.0
VALIDATE_EXTRA_HINT = "install the optional extra: pip install 'siftopt[validate]'"


# ============================================================================================
# Configuration
# ============================================================================================


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


# ============================================================================================
# Data and model
# ============================================================================================


@dataclass(frozen=True)
class Dataset:
    """Digits, pixels scaled to [0, 1]: x (n, 64) float, labels (n,) int in 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(seed: int, test_fraction: float = 0.3,
                      max_test_tokens: int | None = None) -> Dataset:
    """scikit-learn's bundled digits (1797 images), split stratified by ``seed``."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise InputError(f"validate-accuracy needs scikit-learn; {VALIDATE_EXTRA_HINT}") from None
    x, labels = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        np.asarray(x, dtype=np.float64) / 16.0, np.asarray(labels, dtype=np.int64),
        test_size=test_fraction, stratify=labels, random_state=seed)
    if max_test_tokens is not None:
        x_te, y_te = x_te[:max_test_tokens], y_te[:max_test_tokens]
    return Dataset(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)


def expert_weights(params: MoEParams) -> ExpertWeights:
    """The experts in the weight contract of :mod:`siftopt.similarity.bounds` (w1 (N, f, d), w2
    (N, d, f))."""
    return ExpertWeights.from_arrays({"w1": params.w1, "w2": params.w2}, source="<digits-moe>")


@dataclass(frozen=True)
class TokenStates:
    """What the trained model computes for a set of tokens (L of them).

    ``x`` (L, d) token states entering the MoE layer; ``experts``/``weights`` (L, K) the
    router's top-K and renormalised weights; ``outputs`` (N, L, d) every expert's output
    E_i(x_t); ``y`` (L, d) the exact MoE output; ``logits`` (L, C) the model's logits.
    """

    x: np.ndarray
    experts: np.ndarray
    weights: np.ndarray
    outputs: np.ndarray
    y: np.ndarray
    logits: np.ndarray

    def take(self, index: np.ndarray) -> TokenStates:
        """The same arrays restricted to tokens ``index`` (slices, no recomputation)."""
        return TokenStates(x=self.x[index], experts=self.experts[index],
                           weights=self.weights[index], outputs=self.outputs[:, index],
                           y=self.y[index], logits=self.logits[index])


def moe_output(outputs: np.ndarray, weights: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Served MoE output ``Σ_k w[t,k]·Ê_k(x_t)`` (L, d) from every expert's output ``outputs``
    (N, L, d), weights (L, K) and actions (L, K) (an expert index, or ``SKIP`` → 0).

    Slots are summed in order k = 0..K-1, so the keep-all actions reproduce the model exactly.
    """
    n_tokens = weights.shape[0]
    rows = np.arange(n_tokens)
    out = np.zeros((n_tokens, outputs.shape[2]))
    for k in range(weights.shape[1]):
        target = actions[:, k]
        kept = target != SKIP
        served = np.where(kept[:, None], outputs[np.where(kept, target, 0), rows], 0.0)
        out += weights[:, k, None] * served
    return out


def token_states(params: MoEParams, cfg: MoEConfig, x_in: np.ndarray) -> TokenStates:
    """Run the trained model on inputs x_in (L, p), keeping what serving needs."""
    x = embed(params, x_in)
    experts, weights = topk_route(gates(params, x), cfg.top_k)
    ew = expert_weights(params)
    outputs = np.stack([expert_forward(ew, i, x, cfg.activation)
                        for i in range(cfg.num_experts)])
    y = moe_output(outputs, weights, experts)
    return TokenStates(x=x, experts=experts, weights=weights, outputs=outputs, y=y,
                       logits=head(params, x, y))


# ============================================================================================
# Wireless nodes and instances
# ============================================================================================


def path_loss_db(distance_m: float) -> float:
    """3GPP urban macro path loss ``128.1 + 37.6·log10(d/km)`` (dB)."""
    return 128.1 + 37.6 * math.log10(distance_m / 1000.0)


def placement(num_experts: int, num_nodes: int) -> list[int]:
    """Node of each expert: ``i mod (M+1)`` (every (M+1)-th expert is local on the source)."""
    return [i % (num_nodes + 1) for i in range(num_experts)]


def _rate_bps(net: NetworkConfig, power_w: float, gain_db: float) -> float:
    noise_w = 10.0 ** ((net.noise_psd_dbm_per_hz - 30.0) / 10.0) * net.bandwidth_hz
    return net.bandwidth_hz * math.log2(1.0 + power_w * 10.0 ** (gain_db / 10.0) / noise_w)


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


def latency_budget_s(net: NetworkConfig, nodes: list[dict[str, Any]], model_dim: int,
                     batch_tokens: int) -> float:
    """``latency_slack`` × the slowest node's full-power time for a full batch (s, 3 digits)."""
    bits = model_dim * net.bits_per_element
    worst = max(bits / _rate_bps(net, n["power_up_w"], n["gain_up_db"])
                + bits / _rate_bps(net, n["power_down_w"], n["gain_down_db"])
                + n["compute_s_per_token"] for n in nodes)
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
    base = {
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
        "latency_s": latency_budget_s(net, nodes, cfg.model_dim, cfg.batch_tokens),
    }
    return Scenario(base=base)


# ============================================================================================
# Serving and measuring
# ============================================================================================


@dataclass(frozen=True)
class BatchRecord:
    """One (ε, method, batch): the solver's verdict and per-token measurements (L tokens)."""

    eps_fraction: float
    method: str
    batch: int
    status: str
    feasible: bool
    energy_j: float
    solve_time_s: float
    degradation: np.ndarray  # (L,) D_t of the served actions
    error: np.ndarray  # (L,) ‖ŷ − y‖
    x_norm: np.ndarray  # (L,) ‖x‖
    correct: np.ndarray  # (L,) bool, served prediction == label
    certified_correct: np.ndarray  # (L,) bool, model correct and provably unchanged
    over_budget: np.ndarray  # (L,) bool, D_t > ε + tolerance
    violating: np.ndarray  # (L,) bool, ‖ŷ − y‖ > ‖x‖·D_t beyond tolerance


def bound_violations(error: np.ndarray, x_norm: np.ndarray, degradation: np.ndarray
                     ) -> np.ndarray:
    """Tokens where ``‖ŷ − y‖ > ‖x‖·(D_t·(1 + BOUND_RTOL) + BOUND_ATOL)`` (L,) bool."""
    return error > x_norm * (degradation * (1.0 + BOUND_RTOL) + BOUND_ATOL)


def certified_unchanged(logits: np.ndarray, wo: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Tokens whose top-1 class provably survives any change ‖Δy‖ ≤ radius of the MoE output.

    logits (L, C) of the exact model, wo (C, d) the head, radius (L,) = ‖x‖·D_t. Class a stays
    on top iff ``l_a − l_b > ‖wo_a − wo_b‖·radius`` for every b ≠ a (the logit difference moves
    by ``(wo_a − wo_b)·Δy``).
    """
    top = np.argmax(logits, axis=1)
    diff = wo[top][:, None, :] - wo[None, :, :]  # (L, C, d)
    spread = np.linalg.norm(diff, axis=2)
    margin = np.take_along_axis(logits, top[:, None], axis=1) - logits
    ok = margin > spread * radius[:, None]
    ok[np.arange(len(top)), top] = True
    return ok.all(axis=1)


def measure(params: MoEParams, states: TokenStates, labels: np.ndarray, evaluation: Evaluation,
            eps: float) -> dict[str, np.ndarray]:
    """Real forward pass with the evaluated actions; per-token arrays (L,) of
    :class:`BatchRecord`."""
    y_hat = moe_output(states.outputs, states.weights, evaluation.actions)
    error = np.linalg.norm(y_hat - states.y, axis=1)
    x_norm = np.linalg.norm(states.x, axis=1)
    degradation = evaluation.degradation
    model_correct = np.argmax(states.logits, axis=1) == labels
    return {
        "degradation": degradation,
        "error": error,
        "x_norm": x_norm,
        "correct": np.argmax(head(params, states.x, y_hat), axis=1) == labels,
        "certified_correct": model_correct & certified_unchanged(
            states.logits, params.wo, x_norm * degradation),
        "over_budget": degradation > eps + DEGRADATION_TOL,
        "violating": bound_violations(error, x_norm, degradation),
    }


def serve_batch(params: MoEParams, states: TokenStates, labels: np.ndarray, inst: Instance,
                method: str, eps_fraction: float, batch: int) -> BatchRecord:
    """Solve one batch instance with ``method`` and measure the served model."""
    started = time.perf_counter()
    result = solve(inst, method)
    elapsed = time.perf_counter() - started
    if result.evaluation is None:
        raise RuntimeError(f"{method} returned no actions for batch {batch} at "
                           f"eps fraction {eps_fraction}: {result.status} {result.message}")
    eps = float(inst.eps_token[0]) if inst.eps_token is not None else math.inf
    per_token = measure(params, states, labels, result.evaluation, eps)
    return BatchRecord(eps_fraction=eps_fraction, method=method, batch=batch,
                       status=result.status, feasible=result.evaluation.feasible,
                       energy_j=result.evaluation.energy_j, solve_time_s=elapsed, **per_token)


# ============================================================================================
# The whole run
# ============================================================================================


@dataclass
class ValidationResult:
    """A finished run: the model, its bounds, every batch record and the summary rows."""

    config: ValidationConfig
    params: MoEParams
    bounds: Bounds
    model_accuracy: float
    eps_base: float  # mean skip-all degradation Σ_k w·β of the test tokens (dimensionless)
    latency_s: float
    records: list[BatchRecord]
    rows: list[dict[str, Any]]
    tightness: dict[str, float]
    deviation: dict[str, float]  # cheapest_remote_deviation, in units of eps_base
    timings_s: dict[str, float]
    num_train: int
    num_test: int
    train_loss: list[float]


def batches(num_tokens: int, size: int) -> list[np.ndarray]:
    """Consecutive token index blocks of ``size`` (the last may be shorter)."""
    return [np.arange(s, min(s + size, num_tokens)) for s in range(0, num_tokens, size)]


def bound_tightness(states: TokenStates, bounds: Bounds) -> dict[str, float]:
    """How close the proven constants are to what the test tokens show.

    For each expert the largest ``‖E_i(x)‖/‖x‖`` over the test tokens divided by β_i, and for
    each pair i ≠ j the largest ``‖E_i(x) − E_j(x)‖/‖x‖`` divided by δ_ij; returns the median
    and maximum of those ratios (≤ 1: the bounds hold on the data).
    """
    x_norm = np.linalg.norm(states.x, axis=1)
    beta_seen = (np.linalg.norm(states.outputs, axis=2) / x_norm).max(axis=1)
    n = states.outputs.shape[0]
    iu, ju = np.triu_indices(n, k=1)
    out = {"beta_ratio_median": float(np.median(beta_seen / bounds.beta)),
           "beta_ratio_max": float(np.max(beta_seen / bounds.beta))}
    if iu.size:
        diff = np.linalg.norm(states.outputs[iu] - states.outputs[ju], axis=2) / x_norm
        ratio = diff.max(axis=1) / bounds.delta[iu, ju]
        out.update(delta_ratio_median=float(np.median(ratio)),
                   delta_ratio_max=float(np.max(ratio)))
    return out


def cheapest_remote_deviation(states: TokenStates, bounds: Bounds, nodes: Sequence[int],
                              eps_base: float) -> dict[str, float]:
    """Quantiles over the test tokens of the least degradation that frees one remote slot.

    Per token: ``min`` over its remote slots of ``w·min(β_i, min_j δ_ij)``, in units of
    ``eps_base``; tokens without a remote slot are left out. Below the minimum no budget can
    save any energy.
    """
    delta = bounds.delta.copy()
    np.fill_diagonal(delta, np.inf)
    cheap = np.minimum(delta.min(axis=1), bounds.beta)
    remote = np.asarray(nodes)[states.experts] > 0
    cost = np.where(remote, states.weights * cheap[states.experts], np.inf).min(axis=1)
    cost = cost[np.isfinite(cost)] / eps_base
    if cost.size == 0:
        return {}
    q = np.quantile(cost, [0.0, 0.1, 0.5, 0.9])
    return {"min": float(q[0]), "q10": float(q[1]), "median": float(q[2]), "q90": float(q[3])}


def run_validation(cfg: ValidationConfig,
                   progress: Callable[[str], None] | None = None) -> ValidationResult:
    """Train, bound, place and sweep (module docstring); deterministic for a config."""
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    data = load_digits_split(cfg.seed, cfg.test_fraction, cfg.max_test_tokens)
    mcfg = cfg.moe_config()
    params, log = train(mcfg, cfg.training, data.x_train, data.y_train)
    states = token_states(params, mcfg, data.x_test)
    model_acc = float(np.mean(np.argmax(states.logits, axis=1) == data.y_test))
    t1 = time.perf_counter()
    say(f"trained on {len(data.x_train)} images in {t1 - t0:.1f} s: test accuracy "
        f"{model_acc:.4f} on {len(data.x_test)} images")
    bounds = analytic_bounds(expert_weights(params), cfg.activation, exact_pairs="all")
    scenario = make_scenario(cfg, bounds)
    t2 = time.perf_counter()
    eps_base = float(np.mean((states.weights * bounds.beta[states.experts]).sum(axis=1)))
    blocks = batches(len(data.x_test), cfg.batch_tokens)
    records: list[BatchRecord] = []
    for frac in cfg.eps_fractions:
        for b, index in enumerate(blocks):
            sub = states.take(index)
            inst = scenario.instance(sub, frac * eps_base, f"digits-moe-b{b}-eps{frac:g}")
            for method in cfg.methods:
                records.append(serve_batch(params, sub, data.y_test[index], inst, method,
                                           frac, b))
        say(f"eps = {frac:g} x {eps_base:.4g}: {len(blocks)} batches served by "
            f"{len(cfg.methods)} methods")
    t3 = time.perf_counter()
    rows = summary_rows(records, eps_base, cfg.methods, cfg.eps_fractions)
    return ValidationResult(
        config=cfg, params=params, bounds=bounds, model_accuracy=model_acc, eps_base=eps_base,
        latency_s=float(scenario.base["latency_s"]), records=records, rows=rows,
        tightness=bound_tightness(states, bounds),
        deviation=cheapest_remote_deviation(
            states, bounds, placement(cfg.num_experts, cfg.network.num_nodes), eps_base),
        timings_s={"train": t1 - t0, "bounds": t2 - t1, "sweep": t3 - t2, "total": t3 - t0},
        num_train=len(data.x_train), num_test=len(data.x_test), train_loss=log.moe_loss)


def _ratio_stats(recs: Sequence[BatchRecord]) -> tuple[float, float]:
    """Mean and max of ‖ŷ − y‖/(‖x‖·D_t) over tokens with D_t > 0 (nan when none)."""
    deg = np.concatenate([r.degradation for r in recs])
    err = np.concatenate([r.error for r in recs])
    xn = np.concatenate([r.x_norm for r in recs])
    mask = deg > 0
    if not mask.any():
        return math.nan, math.nan
    ratio = err[mask] / (xn[mask] * deg[mask])
    return float(ratio.mean()), float(ratio.max())


def summary_rows(records: Sequence[BatchRecord], eps_base: float, methods: Sequence[str],
                 eps_fractions: Sequence[float]) -> list[dict[str, Any]]:
    """One row per (ε, method): totals over the batches (energy in J) and token averages."""
    rows: list[dict[str, Any]] = []
    for frac in eps_fractions:
        topk_energy = sum(r.energy_j for r in records
                          if r.eps_fraction == frac and r.method == "topk")
        for method in methods:
            recs = [r for r in records if r.eps_fraction == frac and r.method == method]
            energy = float(sum(r.energy_j for r in recs))
            cat = {k: np.concatenate([getattr(r, k) for r in recs])
                   for k in ("error", "x_norm", "correct", "certified_correct",
                             "over_budget", "violating", "degradation")}
            rel = cat["error"] / cat["x_norm"]
            ratio_mean, ratio_max = _ratio_stats(recs)
            statuses = sorted({r.status for r in recs})
            rows.append({
                "eps_fraction": frac,
                "eps": frac * eps_base,
                "method": method,
                "batches": len(recs),
                "feasible_batches": sum(r.feasible for r in recs),
                "status": "/".join(statuses),
                "energy_j": energy,
                "saved_vs_topk_pct": (100.0 * (1.0 - energy / topk_energy)
                                      if topk_energy > 0 else math.nan),
                "accuracy": float(cat["correct"].mean()),
                "certified_accuracy": float(cat["certified_correct"].mean()),
                "mean_rel_error": float(rel.mean()),
                "max_rel_error": float(rel.max()),
                "mean_degradation": float(cat["degradation"].mean()),
                "mean_error_over_bound": ratio_mean,
                "max_error_over_bound": ratio_max,
                "tokens": int(cat["correct"].size),
                "tokens_over_budget": int(cat["over_budget"].sum()),
                "violating_tokens": int(cat["violating"].sum()),
                "solve_time_s": float(sum(r.solve_time_s for r in recs)),
            })
    return rows


def exact_not_worse(records: Sequence[BatchRecord], exact: str = "highs") -> list[str]:
    """Batches where a feasible policy used less energy than the exact optimum (should be
    none); each entry describes one such batch."""
    best = {(r.eps_fraction, r.batch): r for r in records if r.method == exact}
    bad = []
    for r in records:
        opt = best.get((r.eps_fraction, r.batch))
        if r.method == exact or opt is None or not r.feasible:
            continue
        if r.energy_j < opt.energy_j and not energies_equal(r.energy_j, opt.energy_j):
            bad.append(f"eps {r.eps_fraction:g} batch {r.batch}: {r.method} {r.energy_j:.6g} J "
                       f"< {exact} {opt.energy_j:.6g} J")
    return bad


# ============================================================================================
# Outputs
# ============================================================================================

CSV_COLUMNS: tuple[str, ...] = (
    "eps_fraction", "eps", "method", "batches", "feasible_batches", "status", "energy_j",
    "saved_vs_topk_pct", "accuracy", "certified_accuracy", "mean_rel_error", "max_rel_error",
    "mean_degradation", "mean_error_over_bound", "max_error_over_bound", "tokens",
    "tokens_over_budget", "violating_tokens", "solve_time_s")


def _fmt(value: float, spec: str) -> str:
    return "–" if isinstance(value, float) and math.isnan(value) else format(value, spec)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (energy in J, accuracies in %, errors dimensionless)."""
    head_ = ("| ε / ε_skip | ε | method | energy (J) | saved vs Top-K | test accuracy "
             "| certified ≥ | mean ‖ŷ−y‖/‖x‖ | max error/bound | tokens over ε "
             "| violating tokens |")
    lines = [head_, "|---:|---:|:---|" + "---:|" * 8]
    for r in rows:
        label = METHOD_LABELS.get(r["method"], r["method"])
        lines.append(
            f"| {r['eps_fraction']:g} | {r['eps']:.4g} | {label} "
            f"| {r['energy_j']:.4g} | {_fmt(r['saved_vs_topk_pct'], '.1f')} % "
            f"| {100 * r['accuracy']:.2f} % | {100 * r['certified_accuracy']:.2f} % "
            f"| {r['mean_rel_error']:.4f} | {_fmt(r['max_error_over_bound'], '.3f')} "
            f"| {r['tokens_over_budget']} | {r['violating_tokens']} |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (repr(r[k]) if isinstance(r[k], float) else r[k])
                             for k in CSV_COLUMNS})


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def summary_json(res: ValidationResult) -> dict[str, Any]:
    """The JSON summary: configuration, model, bounds, network, rows and timings."""
    cfg = res.config
    return _json_safe({
        "config": asdict(cfg),
        "dataset": {"name": "scikit-learn digits (8x8, 10 classes)", "train": res.num_train,
                    "test": res.num_test},
        "model": {"test_accuracy": res.model_accuracy,
                  "final_train_loss": res.train_loss[-1] if res.train_loss else None},
        "bounds": {"kind": res.bounds.kind, "method": res.bounds.method,
                   "beta_min": float(res.bounds.beta.min()),
                   "beta_max": float(res.bounds.beta.max()),
                   "notes": list(res.bounds.notes), "tightness_on_test_tokens": res.tightness},
        "network": {"placement": placement(cfg.num_experts, cfg.network.num_nodes),
                    "latency_s": res.latency_s,
                    "payload_bits": cfg.model_dim * cfg.network.bits_per_element},
        "eps_base": res.eps_base,
        "cheapest_remote_deviation_over_eps_base": res.deviation,
        "bound_check": {"rtol": BOUND_RTOL, "atol_per_unit_norm": BOUND_ATOL,
                        "violating_tokens": sum(r["violating_tokens"] for r in res.rows)},
        "exact_beaten_by_policy": exact_not_worse(res.records),
        "rows": res.rows,
        "timings_s": res.timings_s,
    })


def write_plot(path: Path, res: ValidationResult) -> None:
    """accuracy vs energy (one curve per method over ε) and energy saved vs ε, PNG."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"validate-accuracy needs matplotlib; {VALIDATE_EXTRA_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = dict(zip(METHODS, "osD^", strict=True))
    for method in res.config.methods:
        rows = [r for r in res.rows if r["method"] == method]
        label = METHOD_LABELS.get(method, method) + (" (ignores ε)" if method == "local" else "")
        marker = markers.get(method, "o")
        ax1.plot([1e6 * r["energy_j"] for r in rows], [100 * r["accuracy"] for r in rows],
                 marker=marker, label=label)
        ax2.plot([r["eps_fraction"] for r in rows], [r["saved_vs_topk_pct"] for r in rows],
                 marker=marker, label=label)
    ax1.axhline(100 * res.model_accuracy, color="grey", ls=":", lw=1, label="trained model")
    ax1.set_xlabel("radio energy for the test set (µJ)")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("accuracy vs energy (points: accuracy budgets ε)")
    ax2.set_xlabel("accuracy budget ε / mean skip-all degradation")
    ax2.set_ylabel("energy saved vs Top-K (%)")
    ax2.set_title("energy saved")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create the output directory (and parents); InputError if that is impossible."""
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output directory: {exc.strerror or exc}",
                         file=str(folder)) from None
    return folder


def write_outputs(out_dir: str | Path, res: ValidationResult) -> dict[str, Path]:
    """results.csv, results.md, summary.json and accuracy_vs_energy.png in ``out_dir``."""
    folder = prepare_out_dir(out_dir)
    paths = {"csv": folder / "results.csv", "md": folder / "results.md",
             "json": folder / "summary.json", "png": folder / "accuracy_vs_energy.png"}
    write_csv(paths["csv"], res.rows)
    paths["md"].write_text(results_markdown(res), encoding="utf-8")
    paths["json"].write_text(json.dumps(summary_json(res), indent=2) + "\n", encoding="utf-8")
    write_plot(paths["png"], res)
    return paths


def results_markdown(res: ValidationResult) -> str:
    """results.md: a header line about the run, then :func:`markdown_table`."""
    cfg = res.config
    return (f"Digits MoE: N = {cfg.num_experts} experts ({cfg.activation}), top-{cfg.top_k}, "
            f"d = {cfg.model_dim}, seed {cfg.seed}{' (quick)' if cfg.quick else ''}; trained "
            f"test accuracy {100 * res.model_accuracy:.2f} % on {res.num_test} test images; "
            f"ε_skip = {res.eps_base:.4g}; batches of {cfg.batch_tokens} tokens.\n\n"
            + markdown_table(res.rows))


__all__ = ["BOUND_ATOL", "BOUND_RTOL", "METHODS", "NetworkConfig", "ValidationConfig",
           "ValidationResult", "bound_violations", "certified_unchanged", "exact_not_worse",
           "load_digits_split", "markdown_table", "moe_output", "prepare_out_dir", "run_validation",
           "token_states", "write_outputs"]
