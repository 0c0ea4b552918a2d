"""What a run writes: results.csv, results.md, summary.json and accuracy_vs_energy.png."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from siftopt.errors import InputError
from siftopt.experiments.validate.config import METHODS, VALIDATE_EXTRA_HINT
from siftopt.experiments.validate.run import ValidationResult, exact_not_worse
from siftopt.experiments.validate.scenario import placement
from siftopt.experiments.validate.serve import BOUND_ATOL, BOUND_RTOL

METHOD_LABELS: dict[str, str] = {"topk": "Top-K", "local": "local", "sift-ratio": "sift-ratio",
                                 "highs": "exact (highs)"}
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
