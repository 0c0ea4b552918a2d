"""Time the exact backends (and the policies) on the performance anchor instances.

Usage (from the repository root):

    python benchmarks/core_timings.py [--repeat R] [--sizes decode,prefill128,prefill512]
                                      [--methods highs,cpsat,cpsat+patterns,topk,...]
                                      [--time-limit S]

``METHOD+FORMULATION`` (e.g. ``cpsat+patterns``) picks a formulation; plain names use ``auto``.

Prints a Markdown table: one row per instance × method with model build time, solve time,
total wall time (median of R runs), status and energy. Instances are synthetic
(`siftopt.experiments.synthetic.random_document`, seed 7, no null δ entries, 4 candidates).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np

from siftopt.facade import EXACT_METHODS, solve
from siftopt.io.instance_file import instance_from_document
from siftopt.model.physics import energy_tables
from siftopt.model.problem import problem_data

SIZES = {
    "decode": dict(num_tokens=1, num_experts=64, top_k=8, num_nodes=8),
    "prefill128": dict(num_tokens=128, num_experts=64, top_k=6, num_nodes=8),
    "prefill512": dict(num_tokens=512, num_experts=64, top_k=6, num_nodes=8),
    "prefill1024": dict(num_tokens=1024, num_experts=64, top_k=6, num_nodes=8),
}


def make(size: str, power_control: str, seed: int = 7):
    from siftopt.experiments.synthetic import random_document

    doc = random_document(np.random.default_rng(seed), name=f"{size}-{power_control}",
                          max_candidates=4, null_fraction=0.0, power_control=power_control,
                          budgets="both", **SIZES[size])
    return instance_from_document(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="decode,prefill128,prefill512")
    parser.add_argument("--methods", default="highs,cpsat")
    parser.add_argument("--power", default="fixed,adaptive")
    parser.add_argument("--time-limit", type=float, default=300.0)
    args = parser.parse_args()
    print(f"<!-- {platform.processor() or platform.machine()}, python {platform.python_version()}"
          f", repeat={args.repeat} -->")
    print("| instance | power | method | build s | solve s | total s | status | energy J |")
    print("|---|---|---|---:|---:|---:|---|---:|")
    for size in args.sizes.split(","):
        for power in args.power.split(","):
            inst = make(size, power)
            for method in args.methods.split(","):
                runs = []
                for _ in range(args.repeat):
                    problem_data.cache_clear()  # time the derived data too
                    energy_tables.cache_clear()
                    started = time.perf_counter()
                    name, _, formulation = method.partition("+")
                    result = solve(inst, name, time_limit_s=args.time_limit,
                                   formulation=formulation or "auto")
                    runs.append((time.perf_counter() - started, result))
                wall = statistics.median(r[0] for r in runs)
                result = runs[-1][1]
                build = statistics.median(r[1].build_time_s for r in runs)
                solve_s = statistics.median(r[1].solve_time_s for r in runs)
                energy = "-" if result.energy_j is None else f"{result.energy_j:.9g}"
                kind = "exact" if method.partition("+")[0] in EXACT_METHODS else "policy"
                print(f"| {size} (L={inst.num_tokens}) | {power} | {method} ({kind}) | "
                      f"{build:.3f} | {solve_s:.3f} | {wall:.3f} | {result.status} | {energy} |",
                      flush=True)


if __name__ == "__main__":
    main()
