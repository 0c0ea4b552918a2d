"""Every exact backend at a tiny time limit (issue 14, goal 4: never "no solution").

Usage (from the repository root; about a minute):

    python benchmarks/time_limits.py [--limits 0.05,1] [--json PATH]

Each registered exact backend (``tests/methods_under_test.py``) solves the frontier row
``qwen256`` (qwen3-30b-a3b, L = 256, M = 8, Rayleigh, fixed power, seed 5: its restricted MILPs
need ~18 s for a first incumbent) with ``siftopt.solve(inst, METHOD, formulation=...,
interface=..., time_limit=T)`` for each limit T; brute force, which refuses that instance
(2·10^1733 assignments), solves a random instance of 1.6 M assignments instead
(``random_instance(1, num_tokens=4, num_experts=6, top_k=2, num_nodes=3, eps_scale=0.1)``).
The Markdown table gives the status, the energy and bound in J, the policy whose answer was
returned (``incumbent_policy``) and the wall time of the call; ``--json PATH`` writes the rows
(with the 1-minute load average at the start of each) to PATH. A last line gives the overhead
of a HiGHS MILP run in the worker process (:mod:`siftopt.backends.highs.isolated`): the
median, over 5 runs of a 30-column MILP, of the wall time beyond HiGHS's own run, with a
freshly started worker and with the worker already running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import siftopt
from siftopt.experiments.synthetic import random_instance

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from frontier import ROWS, instance  # noqa: E402
from methods_under_test import EXACT_BACKENDS, backend_id  # noqa: E402


def _j(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="0.05,1", help="comma-separated seconds")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON to PATH")
    args = parser.parse_args()
    limits = [float(x) for x in args.limits.split(",")]
    rayleigh = instance(next(r for r in ROWS if r.name == "qwen256"))
    small = random_instance(1, num_tokens=4, num_experts=6, top_k=2, num_nodes=3,
                            power_control="fixed", budgets="token", eps_scale=0.1)
    print("| backend | instance | limit (s) | status | energy (J) | bound (J) | policy "
          "| wall (s) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for backend in EXACT_BACKENDS:
        method, formulation, interface = backend
        inst, name = (small, "random 1.6M") if method == "brute" else (rayleigh, "qwen256")
        for limit in limits:
            load = os.getloadavg()[0]
            started = time.perf_counter()
            result = siftopt.solve(inst, method, formulation=formulation, interface=interface,
                                   time_limit=limit)
            took = time.perf_counter() - started
            energy = result.energy_j if result.evaluation is not None else None
            policy = result.solver_info.get("incumbent_policy")
            print(f"| {backend_id(backend)} | {name} | {limit:g} | {result.status} "
                  f"| {_j(energy)} | {_j(result.dual_bound_j)} | {policy or '–'} "
                  f"| {took:.2f} |", flush=True)
            rows.append({"backend": backend_id(backend), "instance": name, "limit_s": limit,
                         "status": str(result.status), "energy_j": energy,
                         "bound_j": result.dual_bound_j, "incumbent_policy": policy,
                         "seconds": round(took, 3), "loadavg_1min": load})
            if args.json:
                with open(args.json, "w", encoding="utf-8") as out:
                    json.dump(rows, out, indent=1)

    print()
    first, reused = _worker_overhead()
    print(f"worker process overhead: {first:.3f} s with its start-up, {reused:.4f} s reused "
          "(median of 5 runs each of a 30-column MILP)")


def _worker_overhead(runs: int = 5) -> tuple[float, float]:
    """Median wall time a MILP run in the worker process costs beyond HiGHS's own run: with
    a fresh worker (its start-up included), and with the worker running."""
    import numpy as np

    from siftopt.backends.highs import common, isolated

    saved, common.ISOLATE_COLUMNS = common.ISOLATE_COLUMNS, 1
    try:
        first, reused = [], []
        for seed in range(2 * runs):
            if seed < runs:
                isolated.stop_worker()
            rng = np.random.default_rng(seed)
            n = 30
            weights = rng.integers(1, 20, size=(3, n)).astype(float)
            cols = common.Columns.from_entries(
                -rng.integers(1, 30, size=n).astype(float), np.zeros(n), np.ones(n),
                np.ones(n, bool), np.tile(np.arange(n), 3), np.repeat(np.arange(3), n),
                weights.reshape(-1))
            highs = common._silent_highs()
            common.pass_model(highs, cols, np.full(3, -common.INF), weights.sum(axis=1) / 3,
                              mip=True)
            result = common.run_mip(highs, True, deadline=time.perf_counter() + 60.0)
            assert result.isolated and not result.killed
            (first if seed < runs else reused).append(result.overhead_s)
        return float(np.median(first)), float(np.median(reused))
    finally:
        common.ISOLATE_COLUMNS = saved


if __name__ == "__main__":
    main()
