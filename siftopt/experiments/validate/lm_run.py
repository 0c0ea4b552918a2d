"""The language-model run: train (or load), bound, place, and serve held-out text.

:func:`run_lm_validation` does, deterministically for a configuration:

1. train the byte-level MoE language model of :mod:`.lm` on the Python help topics
   (:mod:`.lm_data`), or load it from the weight cache;
2. read its experts back **from the saved checkpoint** with
   :mod:`siftopt.similarity.checkpoint` and compute proven SwiGLU β/δ per MoE layer on the
   certified ball ‖x‖ ≤ √d·max|g| of the RMSNorm in front of the layer;
3. run the trained model (Top-K) on held-out sequences: next-byte accuracy and perplexity,
   the skip-all degradation that scales the budgets, how tight β/δ are on real states, and
   the router outputs written as a trace (:mod:`siftopt.experiments.generate.trace`);
4. for each serving mode (``prefill``: a whole sequence per instance; ``decode``: one token
   per instance), accuracy budget ε (a fraction of each layer's mean skip-all degradation) and
   method, serve every MoE layer with the method's decisions (:mod:`.lm_serve`) and measure the
   radio energy, the held-out accuracy and perplexity, and ``‖ŷ − y‖ ≤ ‖x‖·D_t`` on every
   token of every layer.

The decisions of ``topk`` and ``local`` do not depend on ε; each is served once per mode and
its rows for every ε are computed from that run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.experiments.validate.config import METHODS, NetworkConfig, ValidationConfig
from siftopt.experiments.validate.lm import LMConfig, LMTrainConfig, Params, train
from siftopt.experiments.validate.lm_data import (
    cache_key,
    corpus_bytes,
    default_cache_dir,
    held_out_sequences,
    load_weights,
    save_weights,
    split,
)
from siftopt.experiments.validate.lm_serve import RunLog, ServedLM
from siftopt.experiments.validate.scenario import Scenario, make_scenario
from siftopt.experiments.validate.serve import bound_violations
from siftopt.model.budgets import TOL as DEGRADATION_TOL
from siftopt.model.evaluate import energies_equal
from siftopt.similarity import Bounds, analytic_bounds

MODES: tuple[str, ...] = ("prefill", "decode")
#: Budgets as fractions of each layer's mean skip-all degradation.
LM_EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 1.0)
QUICK_LM_EPS_FRACTIONS: tuple[float, ...] = (0.0, 0.3, 1.0)
#: Methods whose decisions ignore ε (served once per mode).
EPS_FREE: frozenset[str] = frozenset({"topk", "local"})


@dataclass(frozen=True)
class LMValidationConfig:
    """Everything that determines a language-model run (same config → same numbers)."""

    seed: int = 0
    quick: bool = False
    model: LMConfig = field(default_factory=LMConfig)
    training: LMTrainConfig = field(default_factory=LMTrainConfig)
    held_out_fraction: float = 0.1
    prefill_sequences: int = 32
    decode_sequences: int = 4
    eps_fractions: tuple[float, ...] = LM_EPS_FRACTIONS
    methods: tuple[str, ...] = METHODS
    modes: tuple[str, ...] = MODES
    network: NetworkConfig = field(default_factory=NetworkConfig)

    @classmethod
    def make(cls, *, seed: int = 0, quick: bool = False) -> LMValidationConfig:
        """The command's configuration; ``quick`` is a tiny model trained for a few steps (the
        test suite's plumbing check, not a measurement)."""
        if not quick:
            return cls(seed=seed, training=LMTrainConfig(seed=seed))
        return cls(seed=seed, quick=True,
                   model=LMConfig(context=16, model_dim=16, heads=2, ffn_dim=32, num_experts=6,
                                  top_k=2, layers=2),
                   training=LMTrainConfig(dense_steps=15, moe_steps=25, batch=8, seed=seed),
                   prefill_sequences=3, decode_sequences=2,
                   eps_fractions=QUICK_LM_EPS_FRACTIONS)


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """One BLAS thread while the block runs (small matrices: threads only add contention on a
    busy machine); a no-op without ``threadpoolctl``."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@dataclass
class Routed:
    """Top-K experts (L, K) and weights (L, K) of one batch, as :class:`Scenario` wants them."""

    experts: np.ndarray
    weights: np.ndarray


@dataclass
class ServedRun:
    """One served pass of a mode with a method (at one ε, or every ε for :data:`EPS_FREE`)."""

    mode: str
    method: str
    eps_fraction: float | None
    log: RunLog
    energy_j: float
    solve_time_s: float
    #: per batch: (layer, key, energy J, latency ok, largest D_t)
    batches: list[tuple[int, tuple[int, ...], float, bool, float]]


class SolveHook:
    """The serving hook of one run: builds each batch's instance, solves it with ``method``
    and returns the evaluated actions and degradations."""

    def __init__(self, scenarios: list[Scenario], eps: list[float], method: str, tag: str
                 ) -> None:
        from siftopt.facade import solve

        self._solve = solve
        self.scenarios, self.eps, self.method, self.tag = scenarios, eps, method, tag
        self.energy = 0.0
        self.solve_time = 0.0
        self.batches: list[tuple[int, tuple[int, ...], float, bool, float]] = []

    def __call__(self, layer: int, key: tuple[int, ...], x: np.ndarray, experts: np.ndarray,
                 weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        name = f"lm-{self.tag}-layer{layer}-" + "-".join(map(str, key))
        inst = self.scenarios[layer].instance(Routed(experts, weights), self.eps[layer], name)
        started = time.perf_counter()
        result = self._solve(inst, self.method)
        self.solve_time += time.perf_counter() - started
        ev = result.evaluation
        if ev is None:
            raise RuntimeError(f"{self.method} returned no actions for {name}: "
                               f"{result.status} {result.message}")
        self.energy += ev.energy_j
        latency_ok = bool((ev.loads <= ev.caps).all())
        self.batches.append((layer, key, float(ev.energy_j), latency_ok,
                             float(ev.degradation.max())))
        return ev.actions, ev.degradation


@dataclass
class LMResult:
    """A finished language-model run (energies in J, times in s)."""

    config: LMValidationConfig
    cache_folder: Path
    trained_now: bool
    train_meta: dict[str, Any]
    bounds: list[Bounds]
    eps_base: list[float]
    reference: RunLog
    reference_decode: RunLog | None
    tightness: list[dict[str, float]]
    runs: list[ServedRun]
    rows: list[dict[str, Any]]
    ratio_quantiles: dict[str, float]
    ratios: np.ndarray
    exact_beaten: list[str]
    latency_s: dict[str, float]
    timings_s: dict[str, float]


def _capture_hook(store: dict[int, list[np.ndarray]]) -> Callable[..., Any]:
    def hook(layer: int, _key: tuple[int, ...], x: np.ndarray, experts: np.ndarray,
             _w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        store.setdefault(layer, []).append(x.copy())
        return experts, np.zeros(x.shape[0])
    return hook


def constant_tightness(model: ServedLM, layer: int, x: np.ndarray, bounds: Bounds
                       ) -> dict[str, float]:
    """Largest ``‖E_i(x)‖/‖x‖`` over the states x (n, d) per expert, over β_i, and largest
    ``‖E_i(x) − E_j(x)‖/‖x‖`` per pair over δ_ij: median and maximum of those ratios."""
    from siftopt.similarity.experts import forward

    n = model.cfg.num_experts
    outs = np.stack([forward(model.experts[layer], i, x, "swiglu") for i in range(n)])
    xn = np.linalg.norm(x, axis=1)
    beta_seen = (np.linalg.norm(outs, axis=2) / xn).max(axis=1) / bounds.beta
    iu, ju = np.triu_indices(n, k=1)
    delta_seen = (np.linalg.norm(outs[iu] - outs[ju], axis=2) / xn).max(axis=1) \
        / bounds.delta[iu, ju]
    return {"beta_ratio_median": float(np.median(beta_seen)),
            "beta_ratio_max": float(beta_seen.max()),
            "delta_ratio_median": float(np.median(delta_seen)),
            "delta_ratio_max": float(delta_seen.max()),
            "x_norm_max_over_radius": float(xn.max() / (bounds.radius or math.inf))}


def load_or_train(cfg: LMValidationConfig, cache_dir: Path | None,
                  say: Callable[[str], None]) -> tuple[Params, dict[str, Any], Path, bool]:
    """(weights, meta, cache folder, trained now): the cached weights of this configuration,
    or freshly trained ones (then cached)."""
    data = corpus_bytes()
    train_bytes, _ = split(data, cfg.held_out_fraction)
    folder = (cache_dir or default_cache_dir()) / cache_key(cfg.model, cfg.training, train_bytes)
    cached = load_weights(folder, cfg.model)
    if cached is not None:
        say(f"loaded cached weights from {folder}")
        return cached[0], cached[1], folder, False
    started = time.perf_counter()
    say(f"training on {train_bytes.size} bytes (cache: {folder})")
    params, log = train(cfg.model, cfg.training, train_bytes, progress=say)
    meta = {"train_bytes": int(train_bytes.size), "train_time_s": time.perf_counter() - started,
            "dense_loss": log.dense_loss, "moe_loss": log.moe_loss}
    save_weights(folder, params, cfg.model, meta)
    return params, meta, folder, True


def layer_bounds(folder: Path, layers: int) -> list[Bounds]:
    """Proven β/δ of every MoE layer, read back from the saved checkpoint (as a user would
    with ``siftopt similarity FOLDER --layer all --kind swiglu --radius auto``)."""
    from siftopt.similarity.checkpoint import layer_weights, open_checkpoint, rmsnorm_radius

    ckpt = open_checkpoint(str(folder))
    return [analytic_bounds(layer_weights(ckpt, layer), "swiglu", rmsnorm_radius(ckpt, layer),
                            exact_pairs="all") for layer in range(layers)]


def run_lm_validation(cfg: LMValidationConfig, cache_dir: Path | None = None,
                      progress: Callable[[str], None] | None = None) -> LMResult:
    """The whole run (module docstring)."""
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    with single_blas_thread():
        params, meta, folder, trained = load_or_train(cfg, cache_dir, say)
        t1 = time.perf_counter()
        mc = cfg.model
        bounds = layer_bounds(folder, mc.layers)
        t2 = time.perf_counter()
        _, held = split(corpus_bytes(), cfg.held_out_fraction)
        seqs = held_out_sequences(held, cfg.prefill_sequences, mc.context)
        model = ServedLM(params, mc)
        states: dict[int, list[np.ndarray]] = {}
        reference = model.prefill(seqs, _capture_hook(states))
        ref_decode = model.decode(seqs[:cfg.decode_sequences]) if "decode" in cfg.modes else None
        eps_base, tight = [], []
        for layer in range(mc.layers):
            lg = reference.layers[layer]
            w = _topk_weights(lg.router_logits, mc.top_k)
            eps_base.append(float(np.mean((w * bounds[layer].beta[lg.experts]).sum(axis=-1))))
            tight.append(constant_tightness(model, layer, np.concatenate(states[layer]),
                                            bounds[layer]))
        say(f"held-out next-byte accuracy {_accuracy(reference, seqs):.4f}, perplexity "
            f"{_perplexity(reference):.3f}; skip-all degradation per layer "
            f"{', '.join(f'{e:.4g}' for e in eps_base)}")
        runs, latency = _sweep(cfg, model, bounds, eps_base, seqs, say)
        t3 = time.perf_counter()
    rows = summary_rows(cfg, runs, eps_base, seqs)
    ratios = _all_ratios(runs)
    q = np.quantile(ratios, [0.5, 0.9, 0.99, 1.0]) if ratios.size else np.full(4, np.nan)
    return LMResult(
        config=cfg, cache_folder=folder, trained_now=trained, train_meta=meta, bounds=bounds,
        eps_base=eps_base, reference=reference, reference_decode=ref_decode, tightness=tight,
        runs=runs, rows=rows, ratios=ratios,
        ratio_quantiles={"median": float(q[0]), "q90": float(q[1]), "q99": float(q[2]),
                         "max": float(q[3]), "count": int(ratios.size)},
        exact_beaten=exact_not_worse(runs, cfg, eps_base), latency_s=latency,
        timings_s={"train_or_load": t1 - t0, "bounds": t2 - t1, "sweep": t3 - t2,
                   "total": t3 - t0})


def _topk_weights(logits: np.ndarray, k: int) -> np.ndarray:
    from siftopt.experiments.validate.lm import topk_route

    return topk_route(logits, k)[2]


def _sweep(cfg: LMValidationConfig, model: ServedLM, bounds: list[Bounds],
           eps_base: list[float], seqs: np.ndarray, say: Callable[[str], None]
           ) -> tuple[list[ServedRun], dict[str, float]]:
    mc = cfg.model
    runs: list[ServedRun] = []
    latency: dict[str, float] = {}
    for mode in cfg.modes:
        tokens = mc.context if mode == "prefill" else 1
        vcfg = ValidationConfig(num_experts=mc.num_experts, top_k=mc.top_k,
                                model_dim=mc.model_dim, ffn_dim=mc.ffn_dim,
                                batch_tokens=tokens, network=cfg.network)
        scenarios = [make_scenario(vcfg, b) for b in bounds]
        latency[mode] = float(scenarios[0].base["latency_s"])
        data = seqs if mode == "prefill" else seqs[:cfg.decode_sequences]
        for method in cfg.methods:
            fracs: list[float | None] = [None] if method in EPS_FREE else list(cfg.eps_fractions)
            for frac in fracs:
                eps = [(frac or 0.0) * e for e in eps_base]
                hook = SolveHook(scenarios, eps, method, f"{mode}-{method}-{frac}")
                log = model.prefill(data, hook) if mode == "prefill" else model.decode(data, hook)
                runs.append(ServedRun(mode=mode, method=method, eps_fraction=frac, log=log,
                                      energy_j=hook.energy, solve_time_s=hook.solve_time,
                                      batches=hook.batches))
            say(f"{mode}: {method} served at {len(fracs)} budget(s)")
    return runs, latency


def _accuracy(log: RunLog, seqs: np.ndarray) -> float:
    return float(np.mean(np.argmax(log.logits, axis=-1) == seqs[:, 1:]))


def _perplexity(log: RunLog) -> float:
    return float(np.exp(-np.mean(log.target_logprob)))


def _runs_for(runs: list[ServedRun], mode: str, method: str, frac: float) -> ServedRun:
    for r in runs:
        if r.mode == mode and r.method == method and r.eps_fraction in (None, frac):
            return r
    raise KeyError((mode, method, frac))


def _ratios(run: ServedRun) -> np.ndarray:
    """‖ŷ − y‖/(‖x‖·D_t) over the tokens and layers of a run with D_t > 0."""
    out = []
    for lg in run.log.layers:
        mask = lg.degradation > 0
        out.append(lg.error[mask] / (lg.x_norm[mask] * lg.degradation[mask]))
    return np.concatenate(out)


def _all_ratios(runs: list[ServedRun]) -> np.ndarray:
    return np.concatenate([_ratios(r) for r in runs]) if runs else np.zeros(0)


def summary_rows(cfg: LMValidationConfig, runs: list[ServedRun], eps_base: list[float],
                 seqs: np.ndarray) -> list[dict[str, Any]]:
    """One row per (mode, ε, method): energy (J, and µJ per token), savings vs Top-K,
    held-out accuracy and perplexity, degradation, the bound check and its tightness."""
    rows: list[dict[str, Any]] = []
    for mode in cfg.modes:
        data = seqs if mode == "prefill" else seqs[:cfg.decode_sequences]
        for frac in cfg.eps_fractions:
            eps = [frac * e for e in eps_base]
            topk_energy = _runs_for(runs, mode, "topk", frac).energy_j
            for method in cfg.methods:
                r = _runs_for(runs, mode, method, frac)
                layers = r.log.layers
                deg = np.stack([lg.degradation for lg in layers])
                err = np.stack([lg.error for lg in layers])
                xn = np.stack([lg.x_norm for lg in layers])
                over = sum(int(np.count_nonzero(lg.degradation > e + DEGRADATION_TOL))
                           for lg, e in zip(layers, eps, strict=True))
                feasible = sum(ok and mx <= eps[layer] + DEGRADATION_TOL
                               for layer, _, _, ok, mx in r.batches)
                ratio = _ratios(r)
                rows.append({
                    "mode": mode, "eps_fraction": frac, "method": method,
                    "batches": len(r.batches), "feasible_batches": int(feasible),
                    "energy_j": r.energy_j,
                    "energy_per_token_uj": 1e6 * r.energy_j / data[:, 1:].size,
                    "saved_vs_topk_pct": (100.0 * (1.0 - r.energy_j / topk_energy)
                                          if topk_energy > 0 else math.nan),
                    "accuracy": _accuracy(r.log, data), "perplexity": _perplexity(r.log),
                    "mean_degradation": float(deg.mean()),
                    "mean_rel_error": float((err / xn).mean()),
                    "mean_error_over_bound": float(ratio.mean()) if ratio.size else math.nan,
                    "median_error_over_bound": float(np.median(ratio)) if ratio.size
                    else math.nan,
                    "max_error_over_bound": float(ratio.max()) if ratio.size else math.nan,
                    "layer_tokens": int(deg.size), "tokens_over_budget": over,
                    "violating_tokens": int(bound_violations(err, xn, deg).sum()),
                    "solve_time_s": r.solve_time_s,
                })
    return rows


def exact_not_worse(runs: list[ServedRun], cfg: LMValidationConfig, eps_base: list[float],
                    exact: str = "highs") -> list[str]:
    """Layer-0 batches (the same instance for every method: layer 0's input does not depend on
    any served output) where a feasible policy used less energy than the exact optimum."""
    bad: list[str] = []
    if exact not in cfg.methods:
        return bad
    for mode in cfg.modes:
        for frac in cfg.eps_fractions:
            budget = frac * eps_base[0] + DEGRADATION_TOL
            opt = {key: e for layer, key, e, _, _ in
                   _runs_for(runs, mode, exact, frac).batches if layer == 0}
            for method in cfg.methods:
                if method == exact:
                    continue
                for layer, key, e, ok, mx in _runs_for(runs, mode, method, frac).batches:
                    if layer or not (ok and mx <= budget) or key not in opt:
                        continue
                    if e < opt[key] and not energies_equal(e, opt[key]):
                        bad.append(f"{mode} eps {frac:g} batch {key}: {method} {e:.6g} J < "
                                   f"{exact} {opt[key]:.6g} J")
    return bad


__all__ = ["EPS_FREE", "LM_EPS_FRACTIONS", "MODES", "QUICK_LM_EPS_FRACTIONS", "LMResult",
           "LMValidationConfig", "ServedRun", "SolveHook", "constant_tightness",
           "exact_not_worse", "layer_bounds", "load_or_train", "run_lm_validation",
           "single_blas_thread", "summary_rows"]
