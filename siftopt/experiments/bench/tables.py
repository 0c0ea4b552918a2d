"""Tables of a benchmark run: headline, one per sweep, optimality gaps and solve times.

Every table is written as Markdown, LaTeX (booktabs) and CSV. Definitions (per cell, i.e. per
generated instance, then averaged over cells):

* energy: the evaluator's energy of the method's decision in mJ, whether or not the decision
  is feasible (``feasible %`` says how often it is);
* saved vs baseline: ``1 − E_method / E_baseline`` in %, over cells with ``E_baseline > 0``
  where the method's decision is feasible (an infeasible decision saves nothing real);
* gap: ``(E_method − E_opt) / E_opt`` in %, over cells where the reference exact method proved
  the optimum and the method's decision is feasible (``inf`` when ``E_opt = 0 < E_method``);
* optimal %: share of those cells where the method's energy equals the optimum
  (docs/model.md §3.4 tolerance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from siftopt.experiments.bench.config import BenchConfig, Sweep

#: Relative and absolute tolerance of "equal energies" (docs/model.md §3.4).
ENERGY_RTOL, ENERGY_ATOL = 1e-6, 1e-15
#: Size buckets (slots = tokens × top-K) of the solve-time table.
SIZE_BUCKETS = (1, 8, 64, 512, 4096, 32768)


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
    """Add ``energy_mj``, ``optimum_j``, ``gap`` (relative), ``optimal``, ``saved`` and
    ``instance_infeasible`` (the reference exact method proved the instance infeasible)."""
    out = frame.copy()
    for column in ("energy_j", "time_s", "dual_bound_j"):
        if column not in out:
            out[column] = np.nan
        out[column] = pd.to_numeric(out[column], errors="coerce")
    out["feasible"] = out["feasible"].fillna(False).astype(bool)
    out["energy_mj"] = out["energy_j"] * 1e3
    out["optimum_j"] = _per_instance(out, bench.reference, optimal_only=True)
    out["baseline_j"] = _per_instance(out, bench.baseline, optimal_only=False)
    known = out["optimum_j"].notna() & out["feasible"] & out["energy_j"].notna()
    diff = out["energy_j"] - out["optimum_j"]
    tol = ENERGY_RTOL * np.maximum(out["energy_j"].abs(), out["optimum_j"].abs()) + ENERGY_ATOL
    out["optimal"] = np.where(known, diff.abs() <= tol, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(diff.abs() <= tol, 0.0, diff / out["optimum_j"])
    out["gap"] = np.where(known, gap, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        saved = 1.0 - out["energy_j"] / out["baseline_j"]
    out["saved"] = np.where((out["baseline_j"] > 0) & out["feasible"], saved, np.nan)
    out["instance_infeasible"] = False
    if bench.reference is not None:
        ref = out[out["method"] == bench.reference].drop_duplicates("instance_key", keep="last")
        status = ref.set_index("instance_key")["status"]
        out["instance_infeasible"] = out["instance_key"].map(status).eq("infeasible")
    return out


def solvable(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of instances not proved infeasible (the energy statistics are taken over these,
    so that every method is averaged over the same instances)."""
    return frame[~frame["instance_infeasible"].astype(bool)]


def _per_instance(frame: pd.DataFrame, method: str | None, *, optimal_only: bool) -> pd.Series:
    """The energy of ``method`` on each row's instance (NaN when unknown)."""
    if method is None:
        return pd.Series(np.nan, index=frame.index)
    ref = frame[frame["method"] == method]
    if optimal_only:
        ref = ref[ref["status"] == "optimal"]
    energy = ref.drop_duplicates("instance_key", keep="last").set_index("instance_key")
    return frame["instance_key"].map(energy["energy_j"]).astype(float)


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
            return "inf"
        return f"{float(x):.{digits}g}"
    return str(x)


def _pct(x: float) -> float:
    return float(x) * 100.0


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
    """Energy per method over every cell, with feasibility, savings and gaps."""
    base = bench.baseline or "-"
    header = ["method", "cells", "feasible %", "mean energy (mJ)", f"saved vs {base} (%)",
              "optimal %", "mean gap (%)", "max gap (%)", "mean time (s)"]
    rows, records = [], []
    infeasible = frame.loc[frame["instance_infeasible"].astype(bool), "instance_key"].nunique()
    for method in method_order(frame, bench):
        sub = solvable(frame[frame["method"] == method])
        gaps = sub["gap"].dropna()
        finite = gaps[np.isfinite(gaps)]
        rec = {"method": method, "cells": len(sub),
               "feasible_pct": _pct(sub["feasible"].mean()),
               "energy_mj": sub["energy_mj"].mean(), "saved_pct": _pct(sub["saved"].mean()),
               "optimal_pct": _pct(pd.to_numeric(sub["optimal"]).mean()) if len(gaps)
               else np.nan,
               "gap_mean_pct": _pct(finite.mean()) if len(finite) else np.nan,
               "gap_max_pct": _pct(gaps.max()) if len(gaps) else np.nan,
               "time_mean_s": sub["time_s"].mean()}
        records.append(rec)
        rows.append([method, rec["cells"], fmt(rec["feasible_pct"], 3), fmt(rec["energy_mj"]),
                     fmt(rec["saved_pct"], 3), fmt(rec["optimal_pct"], 3),
                     fmt(rec["gap_mean_pct"], 3), fmt(rec["gap_max_pct"], 3),
                     fmt(rec["time_mean_s"], 3)])
    notes = ["energies include infeasible decisions; 'feasible %' says how often a method "
             "met every constraint", f"gaps are relative to the optimum proved by "
             f"{bench.reference or '(no exact method)'}, over cells where the method is "
             "feasible; the mean is over finite gaps (a gap is infinite when the optimum is "
             "0 J and the method's energy is not)"]
    if infeasible:
        notes.append(f"{infeasible} instance(s) proved infeasible by {bench.reference} are "
                     "left out of every column")
    return Table("headline", "Energy per method (all cells)", header, rows,
                 pd.DataFrame(records), notes)


def _group_columns(sweep: Sweep) -> list[str]:
    return [k for k in sweep.varying if k != sweep.x] + [sweep.x]


def sweep_frame(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig) -> pd.DataFrame:
    """Rows of ``frame`` that belong to the sweep (its configs × its seeds)."""
    from siftopt.experiments.bench.config import instance_key

    keys = {instance_key(c, s) for c in sweep.configs for s in sweep.seeds}
    sub = frame[frame["instance_key"].isin(keys) & frame["method"].isin(sweep.methods)]
    return sub


def sweep_summary(frame: pd.DataFrame, sweep: Sweep) -> pd.DataFrame:
    """Mean energy (mJ), feasible share, saving and cell count per group × method, over the
    instances not proved infeasible."""
    groups = _group_columns(sweep)
    agg = solvable(frame).groupby([*groups, "method"], sort=True, dropna=False).agg(
        energy_mj=("energy_mj", "mean"), feasible=("feasible", "mean"),
        saved=("saved", "mean"), gap=("gap", "mean"), cells=("energy_mj", "size"))
    return agg.reset_index()


def sweep_table(frame: pd.DataFrame, sweep: Sweep, bench: BenchConfig) -> Table:
    """Mean energy (mJ) per grid point (rows) and method (columns); the feasible share is
    shown in parentheses when below 100 %."""
    sub = sweep_frame(frame, sweep, bench)
    summary = sweep_summary(sub, sweep) if not sub.empty else pd.DataFrame()
    groups = _group_columns(sweep)
    methods = [m for m in sweep.methods if not summary.empty and m in set(summary["method"])]
    share = _infeasible_share(sub, groups)
    rows = []
    if not summary.empty:
        for key, part in summary.groupby(groups, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            by_method = part.set_index("method")
            row = [fmt(k) for k in key]
            for m in methods:
                if m not in by_method.index:
                    row.append("-")
                    continue
                e, f = by_method.loc[m, "energy_mj"], by_method.loc[m, "feasible"]
                row.append(fmt(e) + ("" if f >= 1 else f" ({_pct(f):.0f}%)"))
            if share is not None:
                row.append(f"{_pct(share.get(key, 0.0)):.0f}")
            rows.append(row)
    extra = [] if share is None else ["infeasible instances %"]
    title = f"Sweep {sweep.name}: mean energy (mJ) vs {sweep.x}"
    notes = [sweep.description] if sweep.description else []
    notes.append(f"{len(sweep.seeds)} seed(s) per point; (x%) = share of feasible decisions "
                 "when below 100%")
    if share is not None:
        notes.append("energies are averaged over the instances not proved infeasible; the last "
                     "column is the share proved infeasible")
    return Table(f"sweep-{sweep.name}", title, [*groups, *methods, *extra], rows, summary,
                 notes)


def _infeasible_share(frame: pd.DataFrame, groups: list[str]) -> dict[tuple, float] | None:
    """Share of instances proved infeasible per grid point, or None when there are none."""
    if frame.empty or not frame["instance_infeasible"].astype(bool).any():
        return None
    per = frame.drop_duplicates("instance_key").groupby(groups, sort=True, dropna=False)
    share = per["instance_infeasible"].mean()
    return {(k if isinstance(k, tuple) else (k,)): float(v) for k, v in share.items()}


def gap_table(frame: pd.DataFrame, bench: BenchConfig) -> Table:
    """Optimality gaps per method against the reference exact method."""
    header = ["method", "cells with optimum", "feasible", "optimal %", "median gap (%)",
              "p95 gap (%)", "max gap (%)", "infeasible", "refused", "below optimum"]
    rows, records = [], []
    has_opt = frame["optimum_j"].notna()
    for method in method_order(frame, bench):
        if method == bench.reference:
            continue
        sub = frame[(frame["method"] == method) & has_opt]
        gaps = sub["gap"].dropna()
        rec = {"method": method, "cells": len(sub), "feasible": int(sub["feasible"].sum()),
               "optimal_pct": _pct(pd.to_numeric(sub["optimal"]).mean()) if len(gaps)
               else np.nan,
               "gap_median_pct": _pct(quantile(gaps, 0.5)) if len(gaps) else np.nan,
               "gap_p95_pct": _pct(quantile(gaps, 0.95)) if len(gaps) else np.nan,
               "gap_max_pct": _pct(gaps.max()) if len(gaps) else np.nan,
               "infeasible": int((~sub["feasible"] & (sub["status"] != "refused")).sum()),
               "refused": int((sub["status"] == "refused").sum()),
               "below_optimum": int((gaps < 0).sum())}
        records.append(rec)
        rows.append([method, rec["cells"], rec["feasible"], fmt(rec["optimal_pct"], 3),
                     fmt(rec["gap_median_pct"], 3), fmt(rec["gap_p95_pct"], 3),
                     fmt(rec["gap_max_pct"], 3), rec["infeasible"], rec["refused"],
                     rec["below_optimum"]])
    return Table("gaps", f"Optimality gaps against {bench.reference or '-'}", header, rows,
                 pd.DataFrame(records),
                 ["gap = (E - E_opt) / E_opt over cells where the method is feasible",
                  "below optimum: feasible decisions cheaper than the proven optimum, i.e. "
                  "a wrong optimum of the exact solver (should be 0)"])


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
    med = sub.groupby(["size_order", "size", "method"])["time_s"].median().reset_index()
    rows = []
    for (_, size), part in med.groupby(["size_order", "size"], sort=True):
        by = part.set_index("method")["time_s"]
        rows.append([size, *[fmt(by.get(m, np.nan), 3) for m in methods]])
    return Table("times", "Median solve time (s) vs size (slots = tokens x top-K)",
                 ["slots", *methods], rows, med.drop(columns="size_order"))


def simulation_table(frame: pd.DataFrame, bench: BenchConfig) -> Table | None:
    """Monte Carlo under Rayleigh fading, per method: planned (closed-form) vs simulated mean
    energy (mJ), share of runs with an outage, realised degradation and budget violations."""
    if "sim_energy_j" not in frame:
        return None
    sub = solvable(frame[frame["sim_energy_j"].notna()])
    if sub.empty:
        return None
    header = ["method", "cells", "planned energy (mJ)", "simulated energy (mJ)",
              "runs with outage %", "mean degradation", "runs over budget %"]
    rows, records = [], []
    for method in method_order(sub, bench):
        part = sub[sub["method"] == method]
        rec = {"method": method, "cells": len(part), "energy_mj": part["energy_mj"].mean(),
               "sim_energy_mj": 1e3 * part["sim_energy_j"].mean(),
               "outage_pct": _pct(part["sim_outage_any"].mean()),
               "degradation": part["sim_degradation_mean"].mean(),
               "violation_pct": _pct(part["sim_violation_rate"].mean())}
        records.append(rec)
        rows.append([method, rec["cells"], fmt(rec["energy_mj"]), fmt(rec["sim_energy_mj"]),
                     fmt(rec["outage_pct"], 3), fmt(rec["degradation"]),
                     fmt(rec["violation_pct"], 3)])
    runs = int(sub["sim_runs"].max())
    return Table("simulation", "Monte Carlo under Rayleigh fading (feasible-load decisions)",
                 header, rows, pd.DataFrame(records),
                 [f"{runs} channel realisations per cell; slots served by a node in outage "
                  "fall back to skip (docs/model.md §5)"])


def all_tables(frame: pd.DataFrame, bench: BenchConfig) -> list[Table]:
    """Headline, one table per sweep, gaps (when an exact reference ran), Monte Carlo (when
    simulated) and times."""
    tables = [headline_table(frame, bench)]
    tables += [sweep_table(frame, s, bench) for s in bench.sweeps]
    if bench.reference is not None:
        tables.append(gap_table(frame, bench))
    sim = simulation_table(frame, bench)
    if sim is not None:
        tables.append(sim)
    tables.append(time_table(frame, bench))
    return tables


# ------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned)."""
    def esc(x: Any) -> str:
        return str(x).replace("|", "\\|")
    align = ["---:" if _numeric_column(table, i) else "---" for i in range(len(table.header))]
    lines = ["| " + " | ".join(esc(h) for h in table.header) + " |",
             "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def _numeric_column(table: Table, i: int) -> bool:
    cells = [str(r[i]).split(" ")[0] for r in table.rows if str(r[i]) not in ("-", "")]
    if not cells:
        return False
    try:
        [float(c) for c in cells]
    except ValueError:
        return False
    return True


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def latex_escape(text: Any) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    spec = "".join("r" if _numeric_column(table, i) else "l" for i in range(len(table.header)))
    lines = [r"\begin{table}[ht]", r"\centering", f"\\caption{{{latex_escape(table.title)}}}",
             f"\\label{{tab:{table.name}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(tables: list[Table], folder: Path) -> list[Path]:
    """Write each table as ``NAME.md``, ``NAME.tex`` and ``NAME.csv``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in tables:
        for suffix, text in ((".md", to_markdown(t)), (".tex", to_latex(t))):
            path = folder / f"{t.name}{suffix}"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        path = folder / f"{t.name}.csv"
        t.csv.to_csv(path, index=False)
        paths.append(path)
    return paths
