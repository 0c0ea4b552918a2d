"""Plots of a benchmark run (matplotlib, Agg backend), each written as PNG and SVG.

* ``energy-vs-<x>-<sweep>``: mean energy per method against the sweep's x parameter (accuracy
  budget, latency budget, nodes, tokens, ...), one panel per combination of the sweep's other
  varying parameters;
* ``saved-vs-<baseline>``: mean energy saved against the baseline per method and sweep;
* ``gap-distribution``: distribution of the policies' optimality gaps (feasible cells);
* ``time-vs-size``: solve time against problem size (slots = tokens × top-K) per method.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from siftopt.experiments.bench.config import BenchConfig, Sweep
from siftopt.experiments.bench.tables import solvable, sweep_frame, sweep_summary
from siftopt.solve import EXACT_METHODS

#: Axis labels of the generator parameters commonly swept.
AXIS_LABELS = {
    "accuracy": "accuracy budget (fraction of the skip-all degradation)",
    "latency_scale": "latency budget (x time of the median node for the batch)",
    "latency_s": "latency budget per layer (s)",
    "nodes": "remote nodes M",
    "tokens": "tokens L",
    "similarity": "expert similarity",
    "outage_max": "outage cap",
}
_MARKERS = "osD^v<>phX*"


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "siftopt", "figure.dpi": 100, "font.size": 9})
    return plt


def _null_formatter():  # noqa: ANN202 - a matplotlib Formatter
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def _save(fig, folder: Path, name: str) -> list[Path]:  # noqa: ANN001 - a matplotlib Figure
    paths = []
    for suffix in (".png", ".svg"):
        path = folder / f"{name}{suffix}"
        meta = {"Date": None} if suffix == ".svg" else {}
        fig.savefig(path, bbox_inches="tight", dpi=150, metadata=meta)
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _style(methods: list[str]) -> dict[str, tuple[str, str]]:
    colours = [f"C{i}" for i in range(10)]
    return {m: (colours[i % 10], _MARKERS[i % len(_MARKERS)]) for i, m in enumerate(methods)}


def energy_plot(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig, folder: Path
                ) -> list[Path]:
    """Mean energy (mJ) vs the sweep's x parameter, one line per method."""
    sub = sweep_frame(frame, sweep, bench)
    if sub.empty:
        return []
    plt = _pyplot()
    summary = sweep_summary(sub, sweep)
    others = [k for k in sweep.varying if k != sweep.x]
    panels = list(summary.groupby(others, sort=True)) if others else [((), summary)]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows + 0.4), squeeze=False,
                             layout="constrained")
    style = _style(list(sweep.methods))
    positive = summary["energy_mj"][summary["energy_mj"] > 0]
    log = bool(len(positive)) and positive.max() / positive.min() > 30
    for ax, (key, part) in zip(axes.flat, panels, strict=False):
        for method in sweep.methods:
            line = part[part["method"] == method].sort_values(sweep.x)
            if line.empty:
                continue
            colour, marker = style[method]
            exact = method in EXACT_METHODS  # drawn wide and pale: policies often lie on it
            ax.plot(line[sweep.x], line["energy_mj"], marker=marker, color=colour,
                    label=method, linewidth=3.0 if exact else 1.2, alpha=0.45 if exact else 1,
                    markersize=6 if exact else 4, zorder=1 if exact else 2)
        if log:
            ax.set_yscale("log")
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(others, key, strict=True)) or
                     sweep.name, fontsize=9)
        ax.set_xlabel(AXIS_LABELS.get(sweep.x, sweep.x), fontsize=8)
        ax.set_ylabel("mean energy per layer (mJ)", fontsize=8)
        ax.grid(alpha=0.3, which="both" if log else "major")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    note = " (log axis: 0 J is not drawn)" if log else ""
    fig.suptitle(f"Energy vs {sweep.x} ({sweep.name}){note}", fontsize=10)
    return _save(fig, folder, f"energy-vs-{sweep.x}-{sweep.name}")


def savings_plot(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Mean energy saved vs the baseline (%), grouped bars: methods × sweeps."""
    if bench.baseline is None:
        return []
    methods = [m for m in bench.methods if m != bench.baseline and m in set(frame["method"])]
    if not methods:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(11.0, 3.0 + 1.1 * len(methods)), 3.4),
                           layout="constrained")
    width = 0.8 / len(bench.sweeps)
    for j, sweep in enumerate(bench.sweeps):
        sub = solvable(sweep_frame(frame, sweep, bench))
        means = [100 * sub.loc[sub["method"] == m, "saved"].mean() for m in methods]
        ax.bar(np.arange(len(methods)) + (j - (len(bench.sweeps) - 1) / 2) * width, means,
               width, label=sweep.name)
    ok = solvable(frame)
    labels = [f"{m}\n({100 * ok.loc[ok['method'] == m, 'feasible'].mean():.0f}% feasible)"
              for m in methods]
    ax.set_xticks(np.arange(len(methods)), labels, fontsize=8)
    ax.set_ylabel(f"energy saved vs {bench.baseline} (%)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, folder, f"saved-vs-{bench.baseline}")


def gap_plot(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Empirical distribution (ECDF) of each policy's optimality gap over feasible cells."""
    sub = frame[frame["gap"].notna() & (frame["method"] != bench.reference)]
    if sub.empty:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
    style = _style(list(bench.methods))
    for method in [m for m in bench.methods if m in set(sub["method"])]:
        gaps = np.sort(100 * sub.loc[sub["method"] == method, "gap"].to_numpy(dtype=float))
        gaps = np.minimum(gaps, 1e4)  # an infinite gap (optimum 0 J) is drawn at the edge
        share = np.arange(1, gaps.size + 1) / gaps.size
        colour, _ = style[method]
        ax.step(np.concatenate(([0.0], gaps)), np.concatenate(([0.0], share)), where="post",
                color=colour, label=f"{method} (n={gaps.size})")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel(f"optimality gap vs {bench.reference} (%)")
    ax.set_ylabel("share of feasible cells")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, folder, "gap-distribution")


def time_plot(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Solve time (s) vs slots (log-log), one series per method (exact ones filled)."""
    sub = frame[frame["slots"].notna() & frame["time_s"].notna() & (frame["time_s"] > 0)]
    if sub.empty:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4), layout="constrained")
    style = _style(list(bench.methods))
    for method in [m for m in bench.methods if m in set(sub["method"])]:
        part = sub[sub["method"] == method]
        colour, marker = style[method]
        exact = part["kind"].iloc[0] == "exact"
        ax.scatter(part["slots"], part["time_s"], s=14, marker=marker, label=method,
                   facecolors=colour if exact else "none", edgecolors=colour, linewidths=0.8,
                   rasterized=True)  # thousands of points: a bitmap inside the SVG
        med = part.groupby("slots")["time_s"].median()
        ax.plot(med.index, med.to_numpy(), color=colour, linewidth=0.8, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(_null_formatter())
    ax.set_xlabel("problem size: slots = tokens x top-K")
    ax.set_ylabel("solve time (s)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, folder, "time-vs-size")


def all_plots(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Every plot of the run into ``folder``; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for sweep in bench.sweeps:
        paths += energy_plot(frame, sweep, bench, folder)
    paths += savings_plot(frame, bench, folder)
    paths += gap_plot(frame, bench, folder)
    paths += time_plot(frame, bench, folder)
    return paths
