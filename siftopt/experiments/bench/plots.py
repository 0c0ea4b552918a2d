"""Plots of a benchmark run (matplotlib, Agg backend), each written as PNG and SVG.

Every plot follows the common-ground rule of :mod:`.tables`: a method is drawn over the cells
where the reference exact method proved the optimum and the method's decision is feasible, next
to the optimum over the same cells; infeasible decisions are never averaged, and points averaged
over part of the cells or over none are marked. Before drawing, each plot checks that no method's
mean lies below the optimum's mean on the same cells (:func:`.tables.check_not_below_optimum`).

* ``energy-vs-<x>-<sweep>``: one panel per combination of the sweep's other varying parameters,
  three rows each: the optimum's mean energy (mJ), each method's energy relative to the optimum
  on its compared cells, and each method's feasible share with the share of cells proved
  infeasible or unproved;
* ``saved-vs-<baseline>``: mean energy saved against the baseline per method and sweep, with the
  optimum's saving over the same cells;
* ``gap-distribution``: distribution (ECDF) of each method's optimality gap on its compared
  cells, infinite gaps drawn at a separate ∞ position;
* ``time-vs-size``: solve time against problem size (slots = tokens × top-K) per method.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from siftopt.experiments.bench.config import BenchConfig, Sweep
from siftopt.experiments.bench.tables import (
    BelowOptimumError,
    check_not_below_optimum,
    compare,
    method_order,
    sweep_frame,
    sweep_stats,
)
from siftopt.facade import EXACT_METHODS

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
#: Tolerance of "the method's saving is at most the optimum's" (percentage points).
SAVED_TOL_PCT = 1e-4


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "siftopt", "figure.dpi": 100, "font.size": 9})
    return plt


def _save(fig: Any, folder: Path, name: str) -> list[Path]:
    paths = []
    for suffix in (".png", ".svg"):
        path = folder / f"{name}{suffix}"
        meta = {"Date": None} if suffix == ".svg" else {}
        fig.savefig(path, bbox_inches="tight", dpi=130, metadata=meta)
        paths.append(path)
    _pyplot().close(fig)
    return paths


def _style(methods: list[str]) -> dict[str, tuple[str, str]]:
    colours = [f"C{i}" for i in range(10)]
    return {m: (colours[i % 10], _MARKERS[i % len(_MARKERS)]) for i, m in enumerate(methods)}


def _plain_log_ticks(axis: Any, subs: tuple[float, ...] = (1.0, 2.0, 5.0)) -> None:
    """Major ticks at ``subs`` × 10^k labelled as plain numbers, no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


#: Tick values of a log ratio axis, most important first (kept if not crowded).
_RATIO_TICKS = (1, 10, 100, 1e3, 1e4, 1e5, 1e6, 2, 5, 20, 50, 200, 500, 2e3, 5e3, 3, 1.5,
                1.2, 1.1, 30, 300)


def _ratio_ticks(ax: Any) -> None:
    """Plain-number ticks (1, 1.5, 2, 5, 10, ...) on a log ratio axis, each at least an
    eighth of the axis (in log) away from the others."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    lo, hi = ax.get_ylim()
    span = math.log10(hi / lo)
    ticks: list[float] = []
    for t in _RATIO_TICKS:
        if lo <= t <= hi and all(abs(math.log10(t / u)) >= span / 8 for u in ticks):
            ticks.append(t)
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())


def _x_axis(ax: Any, values: list[float], label: str, *, show: bool) -> None:
    """The sweep's x values as ticks (log axis when they span a factor 8 or more)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    numeric = [float(v) for v in values]
    if numeric and min(numeric) > 0 and max(numeric) / min(numeric) >= 8:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(numeric))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    if show:
        ax.tick_params(labelbottom=True)
        ax.set_xticklabels([f"{v:g}" for v in numeric], fontsize=7)
        ax.set_xlabel(label, fontsize=7)
    else:
        ax.tick_params(labelbottom=False)


# ------------------------------------------------------------------------------------------
# Energy against the sweep's parameter
# ------------------------------------------------------------------------------------------


def energy_plot(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig, folder: Path
                ) -> list[Path]:
    """Per panel: the optimum (mJ), each method's energy relative to the optimum on common
    cells, and the feasible shares, against the sweep's x parameter."""
    stats = sweep_stats(frame, sweep, bench)
    if stats.empty:
        return []
    check_not_below_optimum(stats, f"sweep {sweep.name}")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    plt = _pyplot()
    ref = bench.reference if bench.reference in set(stats["method"]) else None
    others = [k for k in sweep.varying if k != sweep.x]
    panels = list(stats.groupby(others, sort=True)) if others else [((), stats)]
    methods = [m for m in sweep.methods if m in set(stats["method"]) and m != ref]
    cols = min(4, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(3 * nrows, cols, figsize=(3.5 * cols + 2.6, 4.6 * nrows),
                             squeeze=False, sharex="col", layout="constrained",
                             gridspec_kw={"height_ratios": [1.0, 1.5, 0.9] * nrows})
    style = _style(list(bench.methods))
    x_values = sorted(stats[sweep.x].dropna().unique().tolist())
    flags = {"partial": False, "none": False, "inf": False, "ref_partial": False}
    ratios = stats.loc[(stats["method"] != ref) & np.isfinite(stats["ratio"]), "ratio"]
    log_ratio = bool(len(ratios)) and ratios.max() > 3
    for p, (key, part) in enumerate(panels):
        r, c = divmod(p, cols)
        top, mid, low = axes[3 * r, c], axes[3 * r + 1, c], axes[3 * r + 2, c]
        key = key if isinstance(key, tuple) else (key,)
        title = ", ".join(f"{k}={v}" for k, v in zip(others, key, strict=True)) or sweep.name
        top.set_title(title, fontsize=9)
        bottom_of_top = blended_transform_factory(top.transData, top.transAxes)
        top_of_mid = blended_transform_factory(mid.transData, mid.transAxes)
        if ref is not None:
            line = part[part["method"] == ref].sort_values(sweep.x)
            colour, marker = style[ref]
            shown = line[line["compared"] > 0]
            full = shown["compared"] == shown["cells"]
            top.plot(shown[sweep.x], shown["energy_mj"], color=colour, linewidth=1.2)
            top.scatter(shown.loc[full, sweep.x], shown.loc[full, "energy_mj"], marker=marker,
                        color=colour, s=22, zorder=3)
            top.scatter(shown.loc[~full, sweep.x], shown.loc[~full, "energy_mj"],
                        marker=marker, facecolors="white", edgecolors=colour, s=22, zorder=3)
            flags["ref_partial"] |= bool((~full).any())
            none = line[line["compared"] == 0]
            top.scatter(none[sweep.x], [0.04] * len(none), marker="x", color=colour, s=24,
                        transform=bottom_of_top, clip_on=False, zorder=3)
            flags["none"] |= not none.empty
            positive = shown["energy_mj"][shown["energy_mj"] > 0]
            if len(positive) and positive.max() / positive.min() > 30:
                if len(positive) == len(shown):
                    top.set_yscale("log")
                else:  # 0 mJ points stay visible on the linear part of a symlog axis
                    top.set_yscale("symlog", linthresh=float(positive.min()))
                _plain_log_ticks(top.yaxis)
            mid.axhline(1.0, color=colour, linewidth=2.5, alpha=0.5, zorder=1)
        top.set_ylabel("optimum\n(mJ)", fontsize=7)
        for method in methods:
            line = part[part["method"] == method].sort_values(sweep.x)
            if line.empty:
                continue
            colour, marker = style[method]
            shown = line[(line["compared"] > 0) & np.isfinite(line["ratio"])]
            proved = line["cells"] - line["proved_infeasible"] - line["unproved"]
            full = (line["compared"] == proved).loc[shown.index]
            mid.plot(shown[sweep.x], shown["ratio"], color=colour, linewidth=1.1, zorder=2)
            mid.scatter(shown.loc[full, sweep.x], shown.loc[full, "ratio"], marker=marker,
                        color=colour, s=20, zorder=3)
            mid.scatter(shown.loc[~full, sweep.x], shown.loc[~full, "ratio"], marker=marker,
                        facecolors="white", edgecolors=colour, s=20, zorder=3)
            flags["partial"] |= bool((~full).any())
            inf = line[np.isinf(line["ratio"])]
            mid.scatter(inf[sweep.x], [0.96] * len(inf), marker="^", color=colour, s=24,
                        transform=top_of_mid, clip_on=False, zorder=3)
            flags["inf"] |= not inf.empty
            never = (line["feasible"] == 0) & (line["open"] > 0)
            low.plot(line[sweep.x], line["feasible_pct"], color=colour, linewidth=0.9)
            low.scatter(line.loc[~never, sweep.x], line.loc[~never, "feasible_pct"],
                        marker=marker, color=colour, s=9, zorder=3)
            low.scatter(line.loc[never, sweep.x], line.loc[never, "feasible_pct"],
                        marker="x", color=colour, s=30, zorder=3)
            flags["none"] |= bool(never.any())
        if log_ratio:
            mid.set_yscale("log")
        lo, hi = mid.get_ylim()
        mid.set_ylim(min(lo, 0.98) if not log_ratio else 0.9, max(hi, 1.05))
        if log_ratio:
            _ratio_ticks(mid)
        mid.set_ylabel("energy / optimum\n(same cells)", fontsize=7)
        first = part.drop_duplicates(sweep.x).sort_values(sweep.x)
        infeasible = 100 * first["proved_infeasible"] / first["cells"]
        unproved = 100 * first["unproved"] / first["cells"]
        low.vlines(first[sweep.x], 0, infeasible, color="0.55", linewidth=7, alpha=0.6)
        low.vlines(first[sweep.x], infeasible, infeasible + unproved, color="0.8",
                   linewidth=7, alpha=0.8)
        low.set_ylim(-5, 108)
        low.set_yticks([0, 50, 100])
        low.set_ylabel("feasible %\n(of the rest)", fontsize=7)
        for ax in (top, mid, low):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            _x_axis(ax, x_values, AXIS_LABELS.get(sweep.x, sweep.x), show=ax is low)
    for p in range(len(panels), nrows * cols):
        r, c = divmod(p, cols)
        for i in range(3):
            axes[3 * r + i, c].set_visible(False)
    handles: list[Any] = []
    if ref is not None:
        colour, marker = style[ref]
        handles.append(Line2D([], [], color=colour, marker=marker, label=f"optimum ({ref})"))
    handles += [Line2D([], [], color=style[m][0], marker=style[m][1], label=m) for m in methods]
    handles.append(Line2D([], [], linestyle="none", marker="o", color="0.3",
                          label="filled: every cell with a proved optimum"))
    if flags["partial"] or flags["ref_partial"]:
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="white",
                              color="0.3", label="hollow: part of them (mean over those)"))
    if flags["none"]:
        handles.append(Line2D([], [], linestyle="none", marker="x", color="0.3",
                              label="x: no feasible decision (optimum row: no proved optimum)"))
    if flags["inf"]:
        handles.append(Line2D([], [], linestyle="none", marker="^", color="0.3",
                              label="^ at top: optimum 0 J, method > 0 (ratio infinite)"))
    handles += [Patch(color="0.55", alpha=0.6, label="cells proved infeasible (% of all)"),
                Patch(color="0.8", alpha=0.8, label="cells unproved (% of all)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)),
               fontsize=7, frameon=False)
    fig.suptitle(f"{sweep.name}: energy vs {sweep.x} — each method over the cells where "
                 f"{ref or 'the exact method'} proved the optimum and its decision is feasible",
                 fontsize=9)
    return _save(fig, folder, f"energy-vs-{sweep.x}-{sweep.name}")


# ------------------------------------------------------------------------------------------
# Savings, gaps, times
# ------------------------------------------------------------------------------------------


def savings_plot(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Mean energy saved vs the baseline (%) per method and sweep, on the compared cells where
    the baseline is feasible too; a black tick marks the optimum's saving on the same cells."""
    if bench.baseline is None:
        return []
    methods = [m for m in method_order(frame, bench) if m != bench.baseline]
    if not methods:
        return []
    from matplotlib.lines import Line2D

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(12.0, 3.0 + 1.3 * len(methods)), 3.6),
                           layout="constrained")
    width = 0.8 / len(bench.sweeps)
    empty = False
    for j, sweep in enumerate(bench.sweeps):
        sub = sweep_frame(frame, sweep, bench)
        stats = compare(sub, [], methods).set_index("method") if not sub.empty \
            else pd.DataFrame()
        xs = np.arange(len(methods)) + (j - (len(bench.sweeps) - 1) / 2) * width
        means = [stats.loc[m, "saved_pct"] if m in stats.index else np.nan for m in methods]
        best = [stats.loc[m, "optimum_saved_pct"] if m in stats.index else np.nan
                for m in methods]
        for m, mean, opt in zip(methods, means, best, strict=True):
            if np.isfinite(mean) and np.isfinite(opt) and mean > opt + SAVED_TOL_PCT:
                raise BelowOptimumError(f"sweep {sweep.name}: {m} saves {mean:.6g} % vs "
                                        f"{bench.baseline}, more than the optimum's {opt:.6g} "
                                        "% on the same cells")
        ax.bar(xs, means, width, label=f"sweep {sweep.name}", color=f"C{j % 10}", alpha=0.85)
        ax.scatter(xs, best, marker="_", color="black", s=160 * width, linewidths=1.6,
                   zorder=3)
        ran = [m in stats.index for m in methods]
        missing = [x for x, mean, r in zip(xs, means, ran, strict=True)
                   if r and not np.isfinite(mean)]
        ax.scatter(missing, [0] * len(missing), marker="x", color=f"C{j % 10}", s=28, zorder=3)
        empty |= bool(missing)
    overall = compare(frame, [], methods).set_index("method")
    labels = [f"{m}\n({overall.loc[m, 'feasible_pct']:.0f}% feasible)" for m in methods]
    ax.set_xticks(np.arange(len(methods)), labels, fontsize=8)
    ax.set_ylabel(f"energy saved vs {bench.baseline} (%)")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 105)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], linestyle="none", marker="_", color="black", markersize=12,
                          label="optimum, same cells"))
    if empty:
        handles.append(Line2D([], [], linestyle="none", marker="x", color="0.3",
                              label="x: no cell where both are feasible"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    ax.set_title(f"Energy saved vs {bench.baseline}: each bar over the cells where "
                 f"{bench.reference or 'the exact method'} proved the optimum and both the "
                 f"method's and {bench.baseline}'s decisions are feasible", fontsize=8)
    return _save(fig, folder, f"saved-vs-{bench.baseline}")


def gap_plot(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Empirical distribution (ECDF) of each method's optimality gap (%) on its compared
    cells; infinite gaps (optimum 0 J, method > 0) at a separate ∞ position, nothing capped."""
    sub = frame[frame["gap"].notna() & (frame["method"] != bench.reference)]
    if sub.empty:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    style = _style(list(bench.methods))
    gaps_pct = 100 * sub["gap"].to_numpy(dtype=float)
    finite_max = float(np.max(gaps_pct[np.isfinite(gaps_pct)], initial=0.0))
    top = 10 ** math.ceil(math.log10(max(finite_max, 1.0)) + 1e-9)
    inf_at = top * 10
    any_inf = bool(np.isinf(gaps_pct).any())
    for method in [m for m in bench.methods if m in set(sub["method"])]:
        gaps = np.sort(100 * sub.loc[sub["method"] == method, "gap"].to_numpy(dtype=float))
        n_inf = int(np.isinf(gaps).sum())
        drawn = np.where(np.isinf(gaps), inf_at, gaps)
        share = np.arange(1, gaps.size + 1) / gaps.size
        colour, _ = style[method]
        extra = f", {n_inf} infinite" if n_inf else ""
        ax.step(np.concatenate(([0.0], drawn)), np.concatenate(([0.0], share)), where="post",
                color=colour, label=f"{method} (n={gaps.size}{extra})")
    ax.set_xscale("symlog", linthresh=0.1)
    ticks = [0.0] + [10.0 ** k for k in range(-1, int(round(math.log10(top))) + 1)]
    labels = [f"{t:g}" for t in ticks]
    if any_inf:
        ticks.append(inf_at)
        labels.append("∞")
        ax.axvspan(top * 2.5, inf_at * 1.5, color="0.9", zorder=0)
    ax.set_xticks(ticks, labels, fontsize=7)
    ax.set_xlim(-0.02, inf_at * 1.5 if any_inf else top)
    ax.set_xlabel(f"optimality gap vs {bench.reference} (%), symlog axis, nothing capped"
                  + ("; ∞: optimum 0 J and the method's energy > 0" if any_inf else ""),
                  fontsize=8)
    ax.set_ylabel("share of compared cells")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"Each method over the cells where {bench.reference} proved the optimum and "
                 "its decision is feasible", fontsize=8)
    return _save(fig, folder, "gap-distribution")


def time_plot(frame: pd.DataFrame, bench: BenchConfig, folder: Path) -> list[Path]:
    """Solve time (s) vs slots (log-log), one series per method (exact ones filled), with the
    median per size as a line."""
    sub = frame[frame["slots"].notna() & frame["time_s"].notna() & (frame["time_s"] > 0)]
    if sub.empty:
        return []
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), layout="constrained")
    style = _style(list(bench.methods))
    for method in [m for m in bench.methods if m in set(sub["method"])]:
        part = sub[sub["method"] == method]
        colour, marker = style[method]
        exact = method in EXACT_METHODS
        ax.scatter(part["slots"], part["time_s"], s=14, marker=marker, label=method,
                   facecolors=colour if exact else "none", edgecolors=colour, linewidths=0.8,
                   rasterized=True)  # thousands of points: a bitmap inside the SVG
        med = part.groupby("slots")["time_s"].median()
        ax.plot(med.index, med.to_numpy(), color=colour, linewidth=0.8, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    slots = sorted(sub["slots"].unique().tolist())
    if len(slots) <= 10:
        from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

        ax.xaxis.set_major_locator(FixedLocator([float(s) for s in slots]))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticklabels([f"{s:g}" for s in slots])
    else:
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("problem size: slots = tokens x top-K")
    ax.set_ylabel("solve time (s)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              title="filled: exact", title_fontsize=7)
    ax.set_title("Every cell each method ran on (lines: median per size)", fontsize=8)
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
