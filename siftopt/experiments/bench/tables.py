"""Tables of a benchmark run: headline, one per sweep, optimality gaps, Monte Carlo and times.

Every table is written as Markdown, LaTeX (booktabs) and CSV. **Common ground**: every number
that compares methods is taken over the cells (generated instances) where each compared method's
decision is feasible and the reference exact method proved the optimum; an infeasible decision
is never averaged into an energy. For a method ``m`` the *compared cells* are those where the
reference proved the optimum and ``m``'s decision is feasible; the optimum is averaged over the
same cells, so that a mean of ``m`` is never set against a mean over other cells. Cells the
reference proved infeasible, cells where it proved nothing (``unproved``: time limit, error)
and infeasible decisions are counted in their own columns. Definitions:

* energy: the evaluator's energy of a feasible decision (mJ per layer);
* gap: ``(E − E_opt)/E_opt`` per compared cell (a fraction in the CSV column ``gap`` of the
  derived frame, displayed in %; ``inf`` when ``E_opt = 0 < E``);
* energy above the optimum: ``mean E / mean E_opt − 1`` over the compared cells (%);
* saved vs baseline: ``1 − E/E_baseline`` per cell (%), over the compared cells where the
  baseline's decision is feasible too and ``E_baseline > 0``; the optimum's saving over the
  same cells is shown beside it;
* optimal %: share of compared cells with ``E = E_opt`` (docs/model.md §3.4 tolerance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from siftopt.experiments.bench.config import BenchConfig, Sweep, cells

#: Relative and absolute tolerance of "equal energies" (docs/model.md §3.4), energies in J.
ENERGY_RTOL, ENERGY_ATOL = 1e-6, 1e-15
#: Size buckets (slots = tokens × top-K) of the solve-time table.
SIZE_BUCKETS = (1, 8, 64, 512, 4096, 32768)


class BelowOptimumError(AssertionError):
    """A method's mean energy on common cells is below the proved optimum's mean on the same
    cells: the exact solver returned a wrong optimum (or the comparison is on unequal cells)."""


@dataclass(frozen=True)
class Table:
    """A titled table: display header and rows, plus a numeric frame for the CSV."""

    name: str
    title: str
    header: list[str]
    rows: list[list[Any]]
    csv: pd.DataFrame
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Derived columns
# ------------------------------------------------------------------------------------------


def with_derived(frame: pd.DataFrame, bench: BenchConfig) -> pd.DataFrame:
    """Add per-row columns: ``energy_mj``; ``ref_status`` (the reference's status on the
    row's instance), ``optimum_j`` (its energy when it proved the optimum), ``proved``,
    ``instance_infeasible`` (proved infeasible), ``unproved`` (neither); ``compared`` (optimum
    proved and this decision feasible), ``optimal``, ``gap`` (a fraction); ``baseline_j`` (the
    baseline's energy when its decision is feasible), ``saved`` and ``optimum_saved``
    (fractions, on compared cells where the baseline is feasible and ``E_baseline > 0``)."""
    out = frame.copy()
    for column in ("energy_j", "time_s", "dual_bound_j"):
        if column not in out:
            out[column] = np.nan
        out[column] = pd.to_numeric(out[column], errors="coerce")
    out["feasible"] = out["feasible"].fillna(False).astype(bool)
    out["energy_mj"] = out["energy_j"] * 1e3
    ref_status = pd.Series(np.nan, index=out.index, dtype=object)
    if bench.reference is not None:
        ref = out[out["method"] == bench.reference].drop_duplicates("instance_key", keep="last")
        ref_status = out["instance_key"].map(ref.set_index("instance_key")["status"])
    out["ref_status"] = ref_status
    out["instance_infeasible"] = out["ref_status"].eq("infeasible")
    out["optimum_j"] = _per_instance(out, bench.reference, optimal_only=True)
    out["proved"] = out["optimum_j"].notna()
    out["unproved"] = ~out["proved"] & ~out["instance_infeasible"]
    out["compared"] = out["proved"] & out["feasible"] & out["energy_j"].notna()
    diff = out["energy_j"] - out["optimum_j"]
    tol = ENERGY_RTOL * np.maximum(out["energy_j"].abs(), out["optimum_j"].abs()) + ENERGY_ATOL
    out["optimal"] = np.where(out["compared"], diff.abs() <= tol, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(diff.abs() <= tol, 0.0, diff / out["optimum_j"])
    out["gap"] = np.where(out["compared"], gap, np.nan)
    out["baseline_j"] = _per_instance(out, bench.baseline, optimal_only=False,
                                      feasible_only=True)
    with_base = out["compared"] & (out["baseline_j"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        saved = 1.0 - out["energy_j"] / out["baseline_j"]
        optimum_saved = 1.0 - out["optimum_j"] / out["baseline_j"]
    out["saved"] = np.where(with_base, saved, np.nan)
    out["optimum_saved"] = np.where(with_base, optimum_saved, np.nan)
    return out


def _per_instance(frame: pd.DataFrame, method: str | None, *, optimal_only: bool,
                  feasible_only: bool = False) -> pd.Series:
    """The energy (J) of ``method`` on each row's instance (NaN when unknown, or when the
    method did not prove the optimum / its decision is infeasible, as asked)."""
    if method is None:
        return pd.Series(np.nan, index=frame.index)
    ref = frame[frame["method"] == method]
    if optimal_only:
        ref = ref[ref["status"] == "optimal"]
    if feasible_only:
        ref = ref[ref["feasible"]]
    energy = ref.drop_duplicates("instance_key", keep="last").set_index("instance_key")
    return frame["instance_key"].map(energy["energy_j"]).astype(float)


def solvable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of instances not proved infeasible."""
    return frame[~frame["instance_infeasible"].astype(bool)]


# ------------------------------------------------------------------------------------------
# Common-ground statistics
# ------------------------------------------------------------------------------------------


def _ratio(energy_j: float, optimum_j: float) -> float:
    """``energy / optimum`` of two sums over the same cells (1 when both are 0 J within the
    tolerance, ``inf`` when only the optimum is)."""
    if abs(energy_j - optimum_j) <= ENERGY_RTOL * max(abs(energy_j), abs(optimum_j)) \
            + ENERGY_ATOL:
        return 1.0
    if optimum_j <= 0:
        return math.inf
    return energy_j / optimum_j


def method_stats(rows: pd.DataFrame) -> dict[str, Any]:
    """Statistics of one method on a set of cells (rows of :func:`with_derived`, one per cell).

    Counts: ``cells``, ``proved_infeasible``, ``unproved``, ``open`` (cells not proved
    infeasible), ``feasible`` and ``infeasible`` decisions on the open cells (``refused``:
    refusals and errors among the infeasible), ``compared``; on the compared cells: mean
    ``energy_mj`` and ``optimum_mj``, ``ratio`` (energy / optimum), ``optimal_pct``, gap
    statistics in %, ``below_optimum`` (cells with a negative gap: a wrong optimum);
    ``saved_cells``, ``saved_pct`` and ``optimum_saved_pct``; mean and median time (s) over
    every cell the method ran on."""
    open_rows = rows[~rows["instance_infeasible"].astype(bool)]
    comp = rows[rows["compared"].astype(bool)]
    gaps = comp["gap"].astype(float)
    finite = gaps[np.isfinite(gaps)]
    saved = rows["saved"].dropna()
    n_open = len(open_rows)
    n_feasible = int(open_rows["feasible"].sum())
    stats: dict[str, Any] = {
        "cells": len(rows),
        "proved_infeasible": int(rows["instance_infeasible"].sum()),
        "unproved": int(rows["unproved"].sum()),
        "open": n_open,
        "feasible": n_feasible,
        "feasible_pct": 100.0 * n_feasible / n_open if n_open else np.nan,
        "infeasible": n_open - n_feasible,
        "refused": int(open_rows["status"].isin(("refused", "error")).sum()),
        "compared": len(comp),
        "energy_mj": comp["energy_mj"].mean() if len(comp) else np.nan,
        "optimum_mj": 1e3 * comp["optimum_j"].mean() if len(comp) else np.nan,
        "ratio": _ratio(float(comp["energy_j"].sum()), float(comp["optimum_j"].sum()))
        if len(comp) else np.nan,
        "optimal_pct": 100.0 * pd.to_numeric(comp["optimal"]).mean() if len(comp) else np.nan,
        "gap_mean_pct": 100.0 * finite.mean() if len(finite) else np.nan,
        "gap_median_pct": 100.0 * quantile(gaps, 0.5) if len(gaps) else np.nan,
        "gap_p95_pct": 100.0 * quantile(gaps, 0.95) if len(gaps) else np.nan,
        "gap_max_pct": 100.0 * gaps.max() if len(gaps) else np.nan,
        "infinite_gaps": int(np.isinf(gaps).sum()),
        "below_optimum": int((gaps < 0).sum()),
        "saved_cells": len(saved),
        "saved_pct": 100.0 * saved.mean() if len(saved) else np.nan,
        "optimum_saved_pct": 100.0 * rows["optimum_saved"].dropna().mean() if len(saved)
        else np.nan,
        "time_mean_s": rows["time_s"].mean(),
        "time_median_s": rows["time_s"].median(),
    }
    stats["above_pct"] = 100.0 * (stats["ratio"] - 1.0) if len(comp) else np.nan
    return stats


def compare(frame: pd.DataFrame, groups: list[str], methods: list[str]) -> pd.DataFrame:
    """:func:`method_stats` per group (values of ``groups``) and method, one row each, in the
    order of the groups (sorted) and of ``methods``."""
    records = []
    parts = frame.groupby(groups, sort=True, dropna=False) if groups else [((), frame)]
    for key, part in parts:
        key = key if isinstance(key, tuple) else (key,)
        for method in methods:
            rows = part[part["method"] == method].drop_duplicates("instance_key", keep="last")
            if rows.empty:
                continue
            records.append({**dict(zip(groups, key, strict=True)), "method": method,
                            **method_stats(rows)})
    return pd.DataFrame(records)


def check_not_below_optimum(stats: pd.DataFrame, where: str) -> None:
    """Raise :class:`BelowOptimumError` if a method's mean energy on its compared cells is
    below the optimum's mean on the same cells beyond the energy tolerance."""
    if stats.empty:
        return
    for _, row in stats.iterrows():
        energy, optimum = row["energy_mj"], row["optimum_mj"]
        if not (np.isfinite(energy) and np.isfinite(optimum)):
            continue
        if energy < optimum - (ENERGY_RTOL * abs(optimum) + 1e3 * ENERGY_ATOL):
            raise BelowOptimumError(
                f"{where}: {row['method']}'s mean energy {energy:.6g} mJ on its "
                f"{row['compared']} compared cell(s) is below the optimum's {optimum:.6g} mJ "
                "on the same cells (a wrong optimum: see the gaps table's 'below optimum')")


def common_ground_rule(bench: BenchConfig) -> str:
    """The rule that every comparison follows, one sentence (printed under each table)."""
    ref = bench.reference or "the exact method"
    base = f" ('saved vs {bench.baseline}': {bench.baseline}'s too)" if bench.baseline else ""
    return (f"common ground: each method is compared with the optimum over the cells where "
            f"{ref} proved it and the method's decision is feasible{base}, the optimum "
            "averaged over the same cells; an infeasible decision is never averaged into an "
            "energy")


def run_summary(bench: BenchConfig) -> list[str]:
    """What the configuration computes, as three lines: sweeps and cells by mode (decode
    L = 1, prefill), presets with channel and power modes, methods and result count."""
    found = cells(bench)
    decode = sum(1 for c in found if c.config.tokens == 1)
    prefill = sorted({c.config.tokens for c in found if c.config.tokens > 1})
    modes = []
    if decode:
        modes.append(f"{decode} decode (L = 1)")
    if prefill:
        lengths = f"{prefill[0]}" if len(prefill) == 1 else f"{prefill[0]}-{prefill[-1]}"
        modes.append(f"{len(found) - decode} prefill (L = {lengths})")
    presets = sorted({c.config.preset for c in found})
    fading = sorted({c.config.fading for c in found})
    power = sorted({c.config.power_control for c in found})
    results = sum(len(c.methods) for c in found)
    return [f"{Path(bench.file).name}: {len(bench.sweeps)} sweep(s) "
            f"({', '.join(s.name for s in bench.sweeps)}); {len(found)} cells: "
            f"{', '.join(modes)}",
            f"presets {', '.join(presets)}; {' and '.join(fading)} fading; "
            f"{' and '.join(power)} power",
            f"methods {', '.join(bench.methods)}: {results} results"]


# ------------------------------------------------------------------------------------------
# Formatting helpers
# ------------------------------------------------------------------------------------------


def fmt(x: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; ``-`` for missing, ``inf`` kept."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{float(x):.{digits}g}"
    return str(x)


def quantile(values: pd.Series, q: float) -> float:
    """An order statistic (no interpolation, so that infinite gaps stay meaningful)."""
    return float(np.quantile(values.to_numpy(dtype=float), q, method="inverted_cdf"))


def method_order(frame: pd.DataFrame, bench: BenchConfig) -> list[str]:
    present = set(frame["method"]) if not frame.empty else set()
    return [m for m in bench.methods if m in present]


# ------------------------------------------------------------------------------------------
# The tables
# ------------------------------------------------------------------------------------------


def headline_table(frame: pd.DataFrame, bench: BenchConfig) -> Table:
    """Per method, over every cell it ran on: counts (proved infeasible, unproved, feasible,
    infeasible, compared) and, on its compared cells, energy against the optimum, gaps and
    savings."""
    base = bench.baseline or "-"
    ref = bench.reference or "-"
    header = ["method", "cells", "proved infeasible", "unproved", "feasible %", "infeasible",
              "compared", "energy (mJ)", "optimum (mJ)", "optimal %", "mean gap (%)",
              "max gap (%)", f"saved vs {base} (%)", "optimum saves (%)", "mean time (s)"]
    stats = compare(frame, [], method_order(frame, bench))
    rows = [[s["method"], int(s["cells"]), int(s["proved_infeasible"]), int(s["unproved"]),
             fmt(s["feasible_pct"], 3), int(s["infeasible"]), int(s["compared"]),
             fmt(s["energy_mj"]),
             fmt(s["optimum_mj"]), fmt(s["optimal_pct"], 3), fmt(s["gap_mean_pct"], 3),
             fmt(s["gap_max_pct"], 3), fmt(s["saved_pct"], 3), fmt(s["optimum_saved_pct"], 3),
             fmt(s["time_mean_s"], 3)] for _, s in stats.iterrows()]
    notes = [common_ground_rule(bench),
             f"compared: cells where {ref} proved the optimum and the method's decision is "
             f"feasible; energy and optimum (mJ per layer) are means over them; proved "
             f"infeasible / unproved: cells where {ref} proved that no decision is feasible / "
             "proved neither (time limit, error); feasible % and infeasible (decisions, "
             "refusals and errors included) are over the cells not proved infeasible",
             "gap = (E - E_opt) / E_opt per compared cell; the mean is over finite gaps (a gap "
             "is infinite when the optimum is 0 J and the method's energy is not)",
             f"saved vs {base}: mean of 1 - E/E_{base} over the compared cells where {base}'s "
             f"decision is feasible too (with E_{base} > 0); optimum saves: the optimum's "
             "saving over the same cells (cell counts in the CSV)"]
    return Table("headline", f"Energy per method against the optimum ({ref}), on common "
                 "ground", header, rows, stats, notes)


def same_cells(frame: pd.DataFrame, methods: list[str]) -> tuple[list[str], set, list[str]]:
    """The methods compared on one common set of cells, that set, and the methods left out.

    The cells start as those where the reference proved the optimum; methods join in order of
    how many of them they are feasible on (most first, then configuration order), each one
    narrowing the cells to where it is feasible too, unless that would leave fewer than half
    of the proved cells — then it is left out (and listed). Deterministic, and every row of
    the resulting table is over exactly the same cells."""
    proved = frame[frame["proved"].astype(bool)]
    feasible_on: dict[str, set] = {}
    for method in methods:
        rows = proved[(proved["method"] == method) & proved["compared"].astype(bool)]
        feasible_on[method] = set(rows["instance_key"])
    all_proved = set(proved["instance_key"])
    order = sorted(methods, key=lambda m: (-len(feasible_on[m]), methods.index(m)))
    chosen: list[str] = []
    left_out: list[str] = []
    common = set(all_proved)
    for method in order:
        narrowed = common & feasible_on[method]
        if narrowed and 2 * len(narrowed) >= len(all_proved):
            chosen.append(method)
            common = narrowed
        else:
            left_out.append(method)
    return [m for m in methods if m in chosen], common, [m for m in methods if m in left_out]


def same_cells_table(frame: pd.DataFrame, bench: BenchConfig) -> Table:
    """Every row over the same cells: where the optimum is proved and every listed method's
    decision is feasible (methods that would halve the cells are left out, :func:`same_cells`)."""
    ref = bench.reference or "-"
    methods = method_order(frame, bench)
    chosen, common, left_out = same_cells(frame, methods)
    header = ["method", "cells", "energy (mJ)", "optimum (mJ)", "energy / optimum",
              "optimal %", "mean gap (%)", "max gap (%)", "mean time (s)"]
    records = []
    for method in chosen:
        rows = frame[(frame["method"] == method) & frame["instance_key"].isin(common)]
        rows = rows.drop_duplicates("instance_key", keep="last")
        records.append({"method": method, **method_stats(rows)})
    stats = pd.DataFrame(records)
    rows_out = [[s["method"], int(s["compared"]), fmt(s["energy_mj"]), fmt(s["optimum_mj"]),
                 fmt(s["ratio"], 4), fmt(s["optimal_pct"], 3), fmt(s["gap_mean_pct"], 3),
                 fmt(s["gap_max_pct"], 3), fmt(s["time_mean_s"], 3)]
                for _, s in stats.iterrows()]
    proved = int(frame.loc[frame["proved"].astype(bool), "instance_key"].nunique())
    notes = [f"same cells: every row is over the same {len(common)} of the {proved} cells where "
             f"{ref} proved the optimum, those where every listed method's decision is "
             "feasible; methods join in order of their feasible cells unless they would leave "
             "fewer than half of the proved cells"]
    if left_out:
        compared = frame[frame["compared"].astype(bool)]
        counts = ", ".join(
            f"{m} ({compared.loc[compared['method'] == m, 'instance_key'].nunique()} "
            "compared cells)" for m in left_out)
        notes.append(f"left out (see the headline table for their own cells): {counts}")
    return Table("same-cells", f"Methods on the same cells (optimum by {ref})", header,
                 rows_out, stats, notes)


def mode_table(frame: pd.DataFrame, bench: BenchConfig) -> Table:
    """The headline's comparison split by mode: decoding (L = 1) and prefilling (L > 1)."""
    base = bench.baseline or "-"
    sub = frame.assign(mode=np.where(pd.to_numeric(frame["tokens"]) > 1, "prefill", "decode"))
    stats = compare(sub, ["mode"], method_order(frame, bench))
    header = ["mode", "method", "cells", "proved infeasible", "unproved", "feasible %",
              "compared", "energy (mJ)", "optimum (mJ)", "optimal %", "mean gap (%)",
              "max gap (%)", f"saved vs {base} (%)", "optimum saves (%)"]
    rows = [[s["mode"], s["method"], int(s["cells"]), int(s["proved_infeasible"]),
             int(s["unproved"]), fmt(s["feasible_pct"], 3), int(s["compared"]),
             fmt(s["energy_mj"]),
             fmt(s["optimum_mj"]), fmt(s["optimal_pct"], 3), fmt(s["gap_mean_pct"], 3),
             fmt(s["gap_max_pct"], 3), fmt(s["saved_pct"], 3), fmt(s["optimum_saved_pct"], 3)]
            for _, s in stats.iterrows()]
    return Table("modes", "Decoding (L = 1) and prefilling (L > 1), on common ground", header,
                 rows, stats, [common_ground_rule(bench),
                               "columns as in the headline table, per mode"])


def _group_columns(sweep: Sweep) -> list[str]:
    return [k for k in sweep.varying if k != sweep.x] + [sweep.x]


def sweep_frame(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig) -> pd.DataFrame:
    """Rows of ``frame`` that belong to the sweep (its configs × its seeds × its methods)."""
    from siftopt.experiments.bench.config import instance_key

    del bench
    keys = {instance_key(c, s) for c in sweep.configs for s in sweep.seeds}
    return frame[frame["instance_key"].isin(keys) & frame["method"].isin(sweep.methods)]


def sweep_stats(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig) -> pd.DataFrame:
    """:func:`compare` per grid point and method of the sweep."""
    sub = sweep_frame(frame, sweep, bench)
    if sub.empty:
        return pd.DataFrame()
    return compare(sub, _group_columns(sweep), [m for m in sweep.methods
                                                 if m in set(sub["method"])])


def _point_entry(s: pd.Series) -> str:
    """A method's entry in a sweep table: energy above the optimum (%) on its compared cells,
    with its feasible share in brackets when below 100 %."""
    share = s["feasible_pct"]
    partial = f" [{share:.0f}%]" if np.isfinite(share) and share < 100 else ""
    if s["compared"] == 0:
        return "infeasible" if s["feasible"] == 0 and s["open"] > 0 else "-" + partial
    above = s["above_pct"]
    text = "inf" if math.isinf(above) else f"+{above:.3g}" if above >= 0 else f"{above:.3g}"
    return text + partial


def sweep_table(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig) -> Table:
    """Per grid point: cells, proved infeasible, unproved, the optimum (mJ) over the cells
    where it is proved, and per method the energy above the optimum (%) on its compared
    cells."""
    stats = sweep_stats(frame, sweep, bench)
    groups = _group_columns(sweep)
    ref = bench.reference
    methods = [m for m in sweep.methods if not stats.empty and m in set(stats["method"])
               and m != ref]
    rows = []
    if not stats.empty:
        for key, part in stats.groupby(groups, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            by = part.set_index("method")
            first = by.loc[ref] if ref in by.index else part.iloc[0]
            optimum = by.loc[ref, "energy_mj"] if ref in by.index else np.nan
            row = [*(fmt(k) for k in key), int(first["cells"]),
                   int(first["proved_infeasible"]), int(first["unproved"]), fmt(optimum)]
            row += [_point_entry(by.loc[m]) if m in by.index else "-" for m in methods]
            rows.append(row)
    title = f"Sweep {sweep.name}: energy above the optimum (%) vs {sweep.x}"
    notes = [sweep.description] if sweep.description else []
    notes += [f"{len(sweep.seeds)} seed(s) per point; optimum (mJ per layer): mean energy of "
              f"{ref} over the cells where it proved the optimum",
              f"method columns: 100 (mean E / mean E_opt - 1) over the cells where {ref} "
              "proved the optimum and the method's decision is feasible, the optimum averaged "
              "over the same cells; [x%]: the method's decisions are feasible on x % of the cells "
              "not proved infeasible (shown when below 100 %); infeasible: on none of them",
              common_ground_rule(bench)]
    header = [*groups, "cells", "proved infeasible", "unproved", "optimum (mJ)", *methods]
    return Table(f"sweep-{sweep.name}", title, header, rows, stats, notes)


def gap_table(frame: pd.DataFrame, bench: BenchConfig) -> Table:
    """Optimality gaps (%) per method against the reference exact method, over each method's
    compared cells."""
    header = ["method", "cells", "proved infeasible", "unproved", "compared", "optimal %",
              "median gap (%)", "p95 gap (%)", "max gap (%)", "infinite gaps", "infeasible",
              "refused or failed", "below optimum"]
    methods = [m for m in method_order(frame, bench) if m != bench.reference]
    stats = compare(frame, [], methods)
    counts = ("cells", "proved_infeasible", "unproved", "compared")
    rows = [[s["method"], *(int(s[c]) for c in counts), fmt(s["optimal_pct"], 3),
             fmt(s["gap_median_pct"], 3), fmt(s["gap_p95_pct"], 3), fmt(s["gap_max_pct"], 3),
             *(int(s[c]) for c in ("infinite_gaps", "infeasible", "refused", "below_optimum"))]
            for _, s in stats.iterrows()]
    return Table("gaps", f"Optimality gaps against {bench.reference or '-'}", header, rows,
                 stats,
                 [f"gap = (E - E_opt) / E_opt in %, over the compared cells ({bench.reference} "
                  "proved the optimum, the method's decision is feasible); infinite when the "
                  "optimum is 0 J and the method's energy is not",
                  "infeasible: decisions that break a constraint on cells not proved "
                  "infeasible (refusals and errors included, also counted on their own)",
                  "below optimum: feasible decisions cheaper than the proved optimum, i.e. a "
                  "wrong optimum of the exact solver (should be 0)"])


def size_bucket(slots: float) -> str:
    """The label of the :data:`SIZE_BUCKETS` range holding ``slots``."""
    for low, high in zip(SIZE_BUCKETS, SIZE_BUCKETS[1:], strict=False):
        if slots <= high:
            return f"{low if low == 1 else low + 1}-{high}"
    return f">{SIZE_BUCKETS[-1]}"


def time_table(frame: pd.DataFrame, bench: BenchConfig) -> Table:
    """Median solve time (s) per method and problem size (slots = tokens × top-K)."""
    sub = frame[frame["slots"].notna() & frame["time_s"].notna()].copy()
    methods = method_order(sub, bench)
    if sub.empty:
        return Table("times", "Median solve time (s) vs size", ["slots"], [], pd.DataFrame())
    sub["size"] = sub["slots"].map(size_bucket)
    sub["size_order"] = sub["slots"].map(lambda s: next(
        (i for i, h in enumerate(SIZE_BUCKETS[1:]) if s <= h), len(SIZE_BUCKETS)))
    med = sub.groupby(["size_order", "size", "method"])["time_s"].agg(
        time_s="median", cells="size").reset_index()
    rows = []
    for (_, size), part in med.groupby(["size_order", "size"], sort=True):
        by = part.set_index("method")["time_s"]
        rows.append([size, *[fmt(by.get(m, np.nan), 3) for m in methods]])
    return Table("times", "Median solve time (s) vs size (slots = tokens x top-K)",
                 ["slots", *methods], rows, med.drop(columns="size_order"),
                 ["median over every cell the method ran on in the size range, feasible or "
                  "not (cell counts in the CSV); methods that run in fewer sweeps (e.g. only "
                  "the scaling sweep) have fewer cells per range"])


def simulation_table(frame: pd.DataFrame, bench: BenchConfig) -> Table | None:
    """Monte Carlo under Rayleigh fading, per method, over the cells where its decision is
    feasible: planned (closed-form) vs simulated mean energy (mJ), share of runs with an
    outage, realised degradation and budget violations."""
    if "sim_energy_j" not in frame:
        return None
    sub = frame[frame["sim_energy_j"].notna() & frame["feasible"]]
    if sub.empty:
        return None
    header = ["method", "cells", "planned energy (mJ)", "simulated energy (mJ)",
              "runs with outage %", "mean degradation", "runs over budget %"]
    rows, records = [], []
    for method in method_order(sub, bench):
        part = sub[sub["method"] == method]
        rec = {"method": method, "cells": len(part), "energy_mj": part["energy_mj"].mean(),
               "sim_energy_mj": 1e3 * part["sim_energy_j"].mean(),
               "outage_pct": 100.0 * part["sim_outage_any"].mean(),
               "degradation": part["sim_degradation_mean"].mean(),
               "violation_pct": 100.0 * part["sim_violation_rate"].mean()}
        records.append(rec)
        rows.append([method, rec["cells"], fmt(rec["energy_mj"]), fmt(rec["sim_energy_mj"]),
                     fmt(rec["outage_pct"], 3), fmt(rec["degradation"]),
                     fmt(rec["violation_pct"], 3)])
    runs = int(sub["sim_runs"].max())
    return Table("simulation", "Monte Carlo under Rayleigh fading (feasible decisions)",
                 header, rows, pd.DataFrame(records),
                 [f"{runs} channel realisations per cell; each row is over the cells where "
                  "the method's decision is feasible (closed form), planned and simulated "
                  "energies of the same decisions; rows are not compared with each other",
                  "slots served by a node in outage fall back to skip (docs/model.md §5)"])


def all_tables(frame: pd.DataFrame, bench: BenchConfig) -> list[Table]:
    """Headline, per mode (decode, prefill), one table per sweep, gaps (when an exact reference
    ran), Monte Carlo (when simulated) and times."""
    tables = [headline_table(frame, bench)]
    if bench.reference is not None:
        tables.append(same_cells_table(frame, bench))
    if "tokens" in frame and frame["tokens"].notna().any():
        tables.append(mode_table(frame, bench))
    tables += [sweep_table(frame, s, bench) for s in bench.sweeps]
    if bench.reference is not None:
        tables.append(gap_table(frame, bench))
    sim = simulation_table(frame, bench)
    if sim is not None:
        tables.append(sim)
    tables.append(time_table(frame, bench))
    return tables
