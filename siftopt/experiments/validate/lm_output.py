"""What the language-model run writes: results.csv, results.md, summary.json, the plot
lm_accuracy_vs_energy.png, and the model's router trace (trace.npz) with its bounds
(bounds.json) for ``siftopt generate --trace``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError
from siftopt.experiments.validate.config import METHODS, VALIDATE_EXTRA_HINT
from siftopt.experiments.validate.lm_run import LMResult
from siftopt.experiments.validate.output import METHOD_LABELS, prepare_out_dir
from siftopt.experiments.validate.serve import BOUND_ATOL, BOUND_RTOL

CSV_COLUMNS: tuple[str, ...] = (
    "mode", "eps_fraction", "method", "batches", "feasible_batches", "energy_j",
    "energy_per_token_uj", "saved_vs_topk_pct", "accuracy", "perplexity", "mean_degradation",
    "mean_rel_error", "mean_error_over_bound", "median_error_over_bound",
    "max_error_over_bound", "layer_tokens", "tokens_over_budget", "violating_tokens",
    "solve_time_s")


def _fmt(value: float, spec: str) -> str:
    return "–" if isinstance(value, float) and math.isnan(value) else format(value, spec)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as Markdown (energy in µJ per predicted byte, accuracy in %)."""
    lines = ["| mode | ε / ε_skip | method | energy (µJ/token) | saved vs Top-K | accuracy "
             "| perplexity | mean ‖ŷ−y‖/‖x‖ | median / max error/bound | tokens over ε "
             "| violating |",
             "|:---|---:|:---|" + "---:|" * 8]
    for r in rows:
        label = METHOD_LABELS.get(r["method"], r["method"])
        lines.append(
            f"| {r['mode']} | {r['eps_fraction']:g} | {label} "
            f"| {r['energy_per_token_uj']:.4g} | {_fmt(r['saved_vs_topk_pct'], '.1f')} % "
            f"| {100 * r['accuracy']:.2f} % | {r['perplexity']:.3f} "
            f"| {r['mean_rel_error']:.4f} | {_fmt(r['median_error_over_bound'], '.3f')} / "
            f"{_fmt(r['max_error_over_bound'], '.3f')} | {r['tokens_over_budget']} "
            f"| {r['violating_tokens']} |")
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def reference_metrics(res: LMResult) -> dict[str, Any]:
    """The trained model's own held-out accuracy and perplexity (Top-K, both modes)."""
    seqs = _sequences(res)
    out = {"prefill": _metrics(res.reference.logits, res.reference.target_logprob, seqs)}
    if res.reference_decode is not None:
        d = seqs[:res.config.decode_sequences]
        out["decode"] = _metrics(res.reference_decode.logits,
                                 res.reference_decode.target_logprob, d)
    return out


def _metrics(logits: np.ndarray, logprob: np.ndarray, seqs: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(np.mean(np.argmax(logits, axis=-1) == seqs[:, 1:])),
            "perplexity": float(np.exp(-np.mean(logprob))),
            "bits_per_byte": float(-np.mean(logprob) / math.log(2.0)),
            "tokens": int(seqs[:, 1:].size)}


def _sequences(res: LMResult) -> np.ndarray:
    from siftopt.experiments.validate.lm_data import corpus_bytes, held_out_sequences, split

    cfg = res.config
    _, held = split(corpus_bytes(), cfg.held_out_fraction)
    return held_out_sequences(held, cfg.prefill_sequences, cfg.model.context)


def summary_json(res: LMResult) -> dict[str, Any]:
    """Configuration, model, bounds, network, bound check and tightness, rows and timings."""
    cfg = res.config
    return _json_safe({
        "config": asdict(cfg),
        "text": {"source": "Python standard library pydoc_data.topics (help topics), UTF-8 "
                           "bytes; the last held_out_fraction is held out",
                 "prefill_sequences": cfg.prefill_sequences,
                 "decode_sequences": cfg.decode_sequences},
        "weights": {"cache_folder": str(res.cache_folder), "trained_now": res.trained_now,
                    **res.train_meta},
        "model": reference_metrics(res),
        "bounds": [{"layer": i, "kind": b.kind, "method": b.method, "radius": b.radius,
                    "beta_min": float(b.beta.min()), "beta_max": float(b.beta.max()),
                    "useful_pairs": int(np.count_nonzero(
                        (b.delta < b.beta[:, None]) & ~np.eye(b.beta.size, dtype=bool))),
                    "tightness_on_held_out_states": res.tightness[i]}
                   for i, b in enumerate(res.bounds)],
        "eps_base_by_layer": res.eps_base,
        "network": {"latency_s": res.latency_s,
                    "payload_bits": cfg.model.model_dim * cfg.network.bits_per_element},
        "bound_check": {"rtol": BOUND_RTOL, "atol_per_unit_norm": BOUND_ATOL,
                        "violating_tokens": sum(r["violating_tokens"] for r in res.rows),
                        "error_over_bound_quantiles": res.ratio_quantiles},
        "exact_beaten_by_policy": res.exact_beaten,
        "rows": res.rows,
        "timings_s": res.timings_s,
    })


def write_plot(path: Path, res: LMResult) -> None:
    """Change of accuracy (points) and of perplexity (%) against the energy saved vs Top-K, per
    mode and method (each mode against its own Top-K run, so that prefill and decode, which
    serve different numbers of sequences, compare), and the distribution of
    ‖ŷ − y‖/(‖x‖·D_t) over every served token with D_t > 0."""
    try:
        import matplotlib
    except ImportError:
        raise InputError(f"validate-accuracy needs matplotlib; {VALIDATE_EXTRA_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    markers = dict(zip(METHODS, "osD^", strict=True))
    for mode, style in (("prefill", "-"), ("decode", "--")):
        top = [r for r in res.rows if r["mode"] == mode and r["method"] == "topk"]
        if not top:
            continue
        base_acc, base_ppl = top[0]["accuracy"], top[0]["perplexity"]
        for method in res.config.methods:
            rows = [r for r in res.rows if r["mode"] == mode and r["method"] == method]
            label = f"{METHOD_LABELS.get(method, method)} ({mode})"
            saved = [r["saved_vs_topk_pct"] for r in rows]
            kw = {"marker": markers.get(method, "o"), "ls": style, "label": label, "ms": 4}
            axes[0].plot(saved, [100 * (r["accuracy"] - base_acc) for r in rows], **kw)
            axes[1].plot(saved, [100 * (r["perplexity"] / base_ppl - 1) for r in rows], **kw)
    axes[0].set_ylabel("held-out accuracy − Top-K's (points)")
    axes[1].set_ylabel("held-out perplexity vs Top-K's (%)")
    axes[1].set_yscale("symlog", linthresh=10)
    for ax in axes[:2]:
        ax.set_xlabel("radio energy saved vs Top-K (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[0].set_title("accuracy vs energy saved (points: budgets ε)")
    axes[1].set_title("perplexity vs energy saved")
    if res.ratios.size:
        axes[2].hist(res.ratios, bins=50, range=(0.0, 1.0), color="C2")
    axes[2].axvline(1.0, color="red", lw=1)
    axes[2].set_xlabel("‖ŷ − y‖ / (‖x‖·D_t)  (≤ 1: the bound holds)")
    axes[2].set_ylabel("served tokens × layers")
    axes[2].set_title("how tight the bound is")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_trace_files(folder: Path, res: LMResult) -> tuple[Path, Path]:
    """trace.npz (router logits of the held-out prefill sequences, every layer) and
    bounds.json (the per-layer document of ``siftopt similarity --layer all``)."""
    from siftopt.experiments.generate.trace import write_trace

    mc = res.config.model
    logits = np.stack([lg.router_logits.reshape(-1, mc.num_experts)
                       for lg in res.reference.layers])
    trace = write_trace(folder / "trace.npz", logits, top_k=mc.top_k,
                        hidden_dim=mc.model_dim, ffn_dim=mc.ffn_dim,
                        layers=list(range(mc.layers)), renormalize_topk=True)
    doc = {"checkpoint": str(res.cache_folder), "layout": "mlp-experts",
           "layers": {str(i): b.to_json_dict() for i, b in enumerate(res.bounds)}}
    bounds = folder / "bounds.json"
    bounds.write_text(json.dumps(doc, allow_nan=False) + "\n", encoding="utf-8")
    return trace, bounds


def write_outputs(out_dir: str | Path, res: LMResult) -> dict[str, Path]:
    """Every file of the run into ``out_dir``."""
    folder = prepare_out_dir(out_dir)
    paths = {"csv": folder / "results.csv", "md": folder / "results.md",
             "json": folder / "summary.json", "png": folder / "lm_accuracy_vs_energy.png"}
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for r in res.rows:
            writer.writerow({k: (repr(r[k]) if isinstance(r[k], float) else r[k])
                             for k in CSV_COLUMNS})
    paths["md"].write_text(results_markdown(res), encoding="utf-8")
    paths["json"].write_text(json.dumps(summary_json(res), indent=2) + "\n", encoding="utf-8")
    write_plot(paths["png"], res)
    paths["trace"], paths["bounds"] = write_trace_files(folder, res)
    return paths


def results_markdown(res: LMResult) -> str:
    """A header line about the run, then :func:`markdown_table`."""
    cfg, mc = res.config, res.config.model
    ref = reference_metrics(res)["prefill"]
    eps = ", ".join(f"{e:.4g}" for e in res.eps_base)
    return (f"Byte-level MoE LM: {mc.layers} MoE layers of N = {mc.num_experts} SwiGLU experts, "
            f"top-{mc.top_k}, d = {mc.model_dim}, h = {mc.ffn_dim}, context {mc.context}, seed "
            f"{cfg.seed}{' (quick)' if cfg.quick else ''}; held-out accuracy "
            f"{100 * ref['accuracy']:.2f} %, perplexity {ref['perplexity']:.3f} on "
            f"{ref['tokens']} bytes (prefill; decode uses the first {cfg.decode_sequences} "
            f"sequences); ε_skip per layer {eps}.\n\n" + markdown_table(res.rows))


__all__ = ["CSV_COLUMNS", "markdown_table", "reference_metrics", "results_markdown",
           "summary_json", "write_outputs", "write_plot", "write_trace_files"]
