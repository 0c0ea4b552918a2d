"""The numbers behind "Known limits" and "How it is solved at scale" in docs/performance.md.

Usage (from the repository root; about 10 minutes, most of it 60–120 s time limits):

    python benchmarks/known_limits.py [--only patterns,monotone,hard,rayleigh,rayleigh16]

* ``patterns``: non-dominated patterns of the scale benchmark's M = 16 instances;
* ``monotone``: share of non-monotone node tables under Rayleigh fading, random instances
  with L ≤ 40;
* ``hard``: the tight mean-budget instance (seed 522) — HiGHS pattern master with its B&B
  nodes and LP gap, and CP-SAT's pattern model;
* ``rayleigh``: L = 128, M = 8 under Rayleigh fading, both power modes, three exact methods,
  60 s each;
* ``rayleigh16``: L = 512, M = 16, Rayleigh, fixed power, 120 s (the exact-use fallback).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve_exact
from siftopt.formulations import patterns as P
from siftopt.model.problem import problem_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make  # noqa: E402  (the scale benchmark's instances)


def pattern_counts() -> None:
    for length in (512, 1024):
        space = P.pattern_space(problem_data(make(length, 16, "adaptive")))
        found = P.enumerate_patterns(space)
        print(f"patterns: L={length} M=16 adaptive: {found.num_patterns} non-dominated "
              f"patterns, mean row binding: {space.mean_row}")


def monotone_share(count: int = 300) -> None:
    tables = non_monotone = 0
    for seed in range(count):
        length = 1 + seed % 40
        inst = random_instance(seed, num_tokens=length, num_nodes=4, fading="rayleigh",
                               power_control=("fixed", "adaptive")[seed % 2])
        for table in problem_data(inst).tables:
            tables += 1
            non_monotone += bool(np.any(np.diff(table.energy_j) < 0))
    print(f"monotone: {non_monotone} of {tables} Rayleigh tables "
          f"({100 * non_monotone / tables:.1f} %) decrease somewhere (L = 1..40)")


def _line(name: str, result, seconds: float) -> str:
    gap = None
    if result.energy_j is not None and result.dual_bound_j is not None and result.energy_j > 0:
        gap = (result.energy_j - result.dual_bound_j) / result.energy_j
    shown = "-" if gap is None else f"{100 * gap:.3g} %"
    return (f"  {name}: {result.status}, {seconds:.1f} s, energy {result.energy_j}, "
            f"gap {shown}" + (f", {result.details['fallback']}"
                              if result.details.get("fallback") else ""))


def hard_instance() -> None:
    inst = random_instance(522, num_tokens=128, num_experts=64, top_k=8, num_nodes=8,
                           budgets="mean", power_control="adaptive", eps_scale=0.05,
                           max_candidates=4)
    print("hard: random_instance(522, L=128, M=8, mean budget, adaptive, eps_scale=0.05)")
    started = time.perf_counter()
    result = solve_exact(inst, "highs", time_limit_s=120)
    print(_line("highs/patterns", result, time.perf_counter() - started))
    unit = result.details["energy_unit_j"]
    lp = result.details["lp_bound"] * unit
    print(f"  LP bound {lp:.9g} J, LP gap {100 * (result.energy_j - lp) / result.energy_j:.3g} %"
          f", columns of the last MILP {result.details.get('mip_columns')}, B&B nodes "
          f"{[e.get('mip_nodes') for e in result.details['trace'] if 'mip_nodes' in e]}")
    started = time.perf_counter()
    result = solve_exact(inst, "cpsat", formulation="patterns", time_limit_s=120)
    print(_line("cpsat/patterns", result, time.perf_counter() - started))


def rayleigh(length: int = 128, nodes: int = 8, powers: tuple[str, ...] = ("fixed", "adaptive"),
             methods: tuple[tuple[str, str], ...] = (("highs", "patterns"), ("highs", "slots"),
                                                     ("cpsat", "patterns")),
             limit: float = 60.0) -> None:
    """One line per method, then the Markdown table docs/performance.md shows."""
    table = []
    for power in powers:
        inst = random_instance(11, num_tokens=length, num_experts=64, top_k=8, num_nodes=nodes,
                               budgets="both", power_control=power, fading="rayleigh",
                               max_candidates=4)
        tables = problem_data(inst).tables
        concave = sum(bool(np.all(np.diff(t.energy_j, 2) <= 0)) for t in tables)
        convex = sum(t.convex for t in tables)
        print(f"rayleigh: L={length} M={nodes} {power}: {convex} of "
              f"{len(tables)} tables convex, {concave} concave")
        kind = (f"{len(tables)} concave tables" if concave == len(tables) else
                f"{len(tables)} non-convex tables" if convex == 0 else
                f"{convex} of {len(tables)} tables convex")
        cells = [f"{power} ({kind})"]
        for method, formulation in methods:
            started = time.perf_counter()
            result = solve_exact(inst, method, formulation=formulation, time_limit_s=limit)
            seconds = time.perf_counter() - started
            print(_line(f"{method}/{formulation}", result, seconds), flush=True)
            cells.append(_cell(result, seconds))
        table.append(cells)
    print(f"\nrayleigh table: L={length} M={nodes}, {limit:g} s\n")
    print("| power | " + " | ".join(f"{m}/{f}" for m, f in methods) + " |")
    print("|---|" + "---|" * len(methods))
    for cells in table:
        print("| " + " | ".join(cells) + " |")


def _cell(result, seconds: float) -> str:
    """``**optimal**, 14.5 s``, ``feasible, gap 12.6 %`` or the status."""
    if result.status == "optimal":
        return f"**optimal**, {seconds:.1f} s"
    if result.energy_j is not None and result.dual_bound_j is not None and result.energy_j > 0:
        gap = (result.energy_j - result.dual_bound_j) / result.energy_j
        return f"{result.status}, gap {100 * gap:.3g} %"
    return str(result.status).replace("_", " ") + (", no solution" if result.energy_j is None
                                                    else ", no bound")


PARTS = {"patterns": pattern_counts, "monotone": monotone_share, "hard": hard_instance,
         "rayleigh": rayleigh,
         "rayleigh16": lambda: rayleigh(512, 16, ("fixed",), (("highs", "patterns"),), 120.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(PARTS))
    args = parser.parse_args()
    for name in args.only.split(","):
        PARTS[name]()


if __name__ == "__main__":
    main()
