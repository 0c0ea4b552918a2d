"""Exact solvers at scale: every backend × formulation, and the policies, over batch sizes.

Usage (from the repository root):

    python benchmarks/scale.py [--lengths 1,128,512,1024,4096] [--nodes 8,16]
                               [--power fixed,adaptive] [--methods ...] [--repeat R]
                               [--time-limit S] [--skip-after S]

Instances: ``siftopt.experiments.synthetic.random_document`` with seed 7, N = 64 experts, top-K = 8,
4 replacement candidates, no null δ entries, both budget kinds (per-token and mean), M nodes.
Prints a Markdown table: one row per instance × method with model build time, solve time,
total wall time (derived data — candidates, energy tables — included; median of R runs for
runs under 5 s, else one run), status, energy and its excess over the best energy found.

A method that ran out of time (or took longer than ``--skip-after`` seconds) on an instance
is not run on the larger instances of the same M and power mode; its rows then say so.
Methods: ``BACKEND/FORMULATION[-INTERFACE][+warm]`` — ``highs/patterns`` (direct),
``highs/patterns-pyomo`` (the Pyomo reference pattern model), ``highs/slots`` (Pyomo),
``highs/slots-direct`` (the same slot MILP assembled with numpy and passed to highspy),
``cpsat/patterns``, ``cpsat/slots`` — and any policy name. ``+warm`` (e.g.
``highs/patterns+warm``) starts the exact backend from the best of :data:`WARM_POLICIES`
(their run time counts as build time).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from siftopt.errors import InputError
from siftopt.experiments.synthetic import random_document
from siftopt.facade import solve, solve_policy
from siftopt.io.instance_file import instance_from_document
from siftopt.model.instance import Instance
from siftopt.model.physics import energy_tables
from siftopt.model.problem import problem_data

#: Policies whose best feasible answer starts a ``+warm`` method (its time counts as build).
WARM_POLICIES = ("sift-decode", "sift-ratio", "sift-price")
DEFAULT_METHODS = ("highs/patterns,highs/patterns-pyomo,highs/slots,highs/slots-direct,"
                   "cpsat/patterns,cpsat/slots,"
                   "topk,local,sift-decode,sift-ratio,sift-price")


def make(num_tokens: int, num_nodes: int, power_control: str, seed: int = 7) -> Instance:
    """The benchmark instance: N = 64, K = 8, 4 candidates, both budgets."""
    doc = random_document(np.random.default_rng(seed), num_tokens=num_tokens, num_experts=64,
                          top_k=8, num_nodes=num_nodes, power_control=power_control,
                          budgets="both", max_candidates=4, null_fraction=0.0,
                          name=f"L{num_tokens}-M{num_nodes}-{power_control}")
    return instance_from_document(doc)


@dataclass
class Run:
    """One timed run: times in s, status, energy in J (None if none), message."""

    build_s: float
    solve_s: float
    wall_s: float
    status: str
    energy_j: float | None
    note: str = ""


def run_once(inst: Instance, method: str, time_limit_s: float) -> Run:
    """Solve ``inst`` with ``method`` from scratch (cached derived data cleared)."""
    problem_data.cache_clear()
    energy_tables.cache_clear()
    started = time.perf_counter()
    if "/" in method:
        backend, formulation = method.split("/")
        formulation, warm, _ = formulation.partition("+warm")
        formulation, _, interface = formulation.partition("-")
        result = solve(inst, backend, formulation=formulation, time_limit_s=time_limit_s,
                       warm_start=list(WARM_POLICIES) if warm else None,
                       interface=interface or "auto")
        note = result.details.get("fallback", "") or result.details.get("method", "")
    else:
        try:
            result = solve_policy(inst, method)
        except InputError as exc:  # e.g. a policy past its documented size limit
            return Run(0.0, 0.0, time.perf_counter() - started, "refused", None,
                       str(exc)[:60])
        note = result.message.split(";")[0][:60] if not result.feasible else ""
    wall = time.perf_counter() - started
    return Run(result.build_time_s, result.solve_time_s, wall, result.status, result.energy_j,
               note)


def timed(inst: Instance, method: str, repeat: int, time_limit_s: float) -> Run:
    """Median of ``repeat`` runs (one run when the first takes 5 s or more)."""
    runs = [run_once(inst, method, time_limit_s)]
    while len(runs) < repeat and runs[0].wall_s < 5.0:
        runs.append(run_once(inst, method, time_limit_s))
    last = runs[-1]
    return Run(statistics.median(r.build_s for r in runs),
               statistics.median(r.solve_s for r in runs),
               statistics.median(r.wall_s for r in runs), last.status, last.energy_j, last.note)


EXACT_COLUMNS = ("highs/patterns", "highs/patterns-pyomo", "highs/slots", "highs/slots-direct",
                 "cpsat/patterns", "cpsat/slots")
CSV_FIELDS = ("L", "M", "power", "method", "build_s", "solve_s", "total_s", "status", "note",
              "energy_j", "excess_pct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="1,128,512,1024,4096")
    parser.add_argument("--nodes", default="8,16")
    parser.add_argument("--power", default="fixed,adaptive")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--skip-after", type=float, default=120.0,
                        help="skip a method on larger L once it took this long (s)")
    parser.add_argument("--csv", default=None, metavar="FILE",
                        help="also write one row per instance and method to FILE")
    parser.add_argument("--tables-from", default=None, metavar="FILE",
                        help="only print the tables of a CSV written by --csv")
    args = parser.parse_args()
    if args.tables_from:
        with open(args.tables_from, newline="") as handle:
            print_tables(list(csv.DictReader(handle)))
        return
    rows = measure(args)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    print(f"<!-- {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, repeat={args.repeat}, time limit {args.time_limit} s"
          " -->")
    print_tables(rows)


def measure(args: argparse.Namespace) -> list[dict]:
    """Run every method on every instance; one dict per (instance, method) (CSV_FIELDS).
    Progress goes to stderr."""
    methods = args.methods.split(",")
    warm_up = make(2, 2, "fixed")  # imports and first-call costs stay out of the table
    for method in methods:
        run_once(warm_up, method, args.time_limit)
    out = []
    for num_nodes in (int(m) for m in args.nodes.split(",")):
        for power in args.power.split(","):
            given_up: dict[str, str] = {}
            for length in (int(x) for x in args.lengths.split(",")):
                inst = make(length, num_nodes, power)
                runs: dict[str, Run] = {}
                for method in methods:
                    if method in given_up:
                        runs[method] = Run(math.nan, math.nan, math.nan, "not run",
                                           None, given_up[method])
                        continue
                    run = timed(inst, method, args.repeat, args.time_limit)
                    runs[method] = run
                    print(f"L={length} M={num_nodes} {power} {method}: {run.wall_s:.3f} s "
                          f"{run.status}", file=sys.stderr, flush=True)
                    if run.status == "time_limit" or run.wall_s >= args.skip_after or (
                            run.status == "feasible" and "/" in method):
                        given_up[method] = f"{run.status} after {run.wall_s:.0f} s at L={length}"
                best = min((r.energy_j for r in runs.values() if r.energy_j is not None
                            and r.status in ("optimal", "feasible")), default=None)
                for method, run in runs.items():
                    excess = _excess_pct(run, best)
                    out.append({"L": length, "M": num_nodes, "power": power, "method": method,
                                "build_s": run.build_s, "solve_s": run.solve_s,
                                "total_s": run.wall_s, "status": run.status,
                                "note": run.note, "energy_j": run.energy_j,
                                "excess_pct": excess})
    return out


def _excess_pct(run: Run, best: float | None) -> float | None:
    """100·(E − E_best)/E_best for a feasible answer (0 when both are 0), else None."""
    if run.energy_j is None or best is None or run.status not in ("optimal", "feasible"):
        return None
    if best == 0:
        return 0.0 if run.energy_j == 0 else math.inf
    return 100 * (run.energy_j - best) / best


def print_tables(rows: list[dict]) -> None:
    """Two Markdown tables: exact methods (``build / solve / total`` s per cell) and
    policies (``total s`` and excess over the best energy found)."""
    by_instance: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        key = (int(row["L"]), int(row["M"]), row["power"])
        by_instance.setdefault(key, {})[row["method"]] = row
    methods = list(dict.fromkeys(row["method"] for row in rows))
    exact = [m for m in methods if "/" in m]
    policies = [m for m in methods if "/" not in m]
    for title, cols, cell in (("Exact methods: build / solve / total (s)", exact, _exact_cell),
                              ("Policies: total (s), excess over the optimum", policies,
                               _policy_cell)):
        if not cols:
            continue
        print(f"\n{title}\n")
        print("| L | M | power | " + " | ".join(cols) + " |")
        print("|---:|---:|---|" + "---|" * len(cols))
        for (length, num_nodes, power), got in by_instance.items():
            cells = [cell(got[m]) if m in got else "" for m in cols]
            print(f"| {length} | {num_nodes} | {power} | " + " | ".join(cells) + " |")


def _num(value: object) -> float | None:
    if value is None or value == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _exact_cell(row: dict) -> str:
    if row["status"] == "not run":
        return "skipped (gave up at L=" + row["note"].rsplit("L=", 1)[-1] + ")"
    times = " / ".join(_seconds(_num(row[k])) for k in ("build_s", "solve_s", "total_s"))
    status = row["status"]
    if status == "optimal":
        mark = "**opt**" + (" (decode rule)" if "decode rule" in row["note"] else "")
    elif status == "feasible":
        mark = ("feasible (the optimum, unproved)" if _num(row["excess_pct"]) == 0
                else f"feasible, {_excess(row)} above")
    else:
        mark = status.replace("_", " ")
    if "slot formulation" in row["note"]:
        mark += " (fell back to slots)"
    return f"{times} {mark}"


def _policy_cell(row: dict) -> str:
    if row["status"] != "feasible":
        return f"{_seconds(_num(row['total_s']))} {row['status']}"
    return f"{_seconds(_num(row['total_s']))}, +{_excess(row)}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _excess(row: dict) -> str:
    value = _num(row["excess_pct"])
    return "?" if value is None else f"{value:.3g} %"


if __name__ == "__main__":
    main()
