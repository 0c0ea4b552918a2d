"""The whole run: train, bound, place, sweep the budgets, and summarise the batch records."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from siftopt.experiments.validate.config import ValidationConfig
from siftopt.experiments.validate.moe import MoEParams, train
from siftopt.experiments.validate.scenario import make_scenario, placement
from siftopt.experiments.validate.serve import BatchRecord, serve_batch
from siftopt.experiments.validate.tokens import (
    TokenStates,
    expert_weights,
    load_digits_split,
    token_states,
)
from siftopt.model.evaluate import energies_equal
from siftopt.similarity import Bounds, analytic_bounds


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
