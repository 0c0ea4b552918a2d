"""What the policies cost, and why `sift-price` averages its prices (docs/policies.md §5 and §7).

Usage (from the repository root):

    python benchmarks/policy_costs.py oscillation        # §5: plain vs averaged price update, ~10 s
    python benchmarks/policy_costs.py costs [--exact]    # §7: policy times (+ HiGHS with --exact)

Instances: ``random_instance(0, num_tokens=1024, num_experts=64, top_k=8, num_nodes=16, ...)``
from :mod:`siftopt.experiments.synthetic` (defaults: fixed power, per-token budgets, binding
caps), in the four variants of :data:`VARIANTS`. A policy's time is the best of ``--repeat``
runs after the shared per-instance data (candidates, energy tables) is built once, as a policy
inside a layer would see it; HiGHS (``siftopt.solve(inst, "highs")``, the default profile) is
timed from scratch, once. Energies are in J per layer.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import siftopt
from siftopt.experiments.synthetic import random_instance
from siftopt.model.evaluate import evaluate
from siftopt.model.problem import energy_tables, problem_data
from siftopt.policies.price import sift_price_run
from siftopt.registry import policy

POLICIES = ("topk", "local", "sift-decode", "sift-ratio", "sift-price", "sift-prefill")
BASE = {"num_tokens": 1024, "num_experts": 64, "top_k": 8, "num_nodes": 16}


@dataclass(frozen=True)
class Variant:
    label: str
    params: dict


VARIANTS = (
    Variant("defaults (fixed power, per-token budgets)", {}),
    Variant("adaptive power, `eps_scale=0.03`", {"power_control": "adaptive", "eps_scale": 0.03}),
    Variant("mean budget only (binds), `eps_scale=0.03`", {"budgets": "mean", "eps_scale": 0.03}),
    Variant("both budgets, adaptive, `eps_scale=0.1`",
            {"budgets": "both", "power_control": "adaptive", "eps_scale": 0.1}),
)


def oscillation() -> None:
    """Energy per iteration of the plain and the averaged price update, one instance."""
    inst = random_instance(0, **BASE, power_control="adaptive", eps_scale=0.1)
    plain = sift_price_run(inst, max_iterations=12, patience=12, averaged=False)
    averaged = sift_price_run(inst)
    print("| iteration | plain update: energy (J) | averaged update: energy (J) |")
    print("|---:|---:|---:|")
    for k in range(max(len(plain.iterates), len(averaged.iterates))):
        cells = [_energy(run.iterates[k].energy_j) if k < len(run.iterates) else "–"
                 for run in (plain, averaged)]
        print(f"| {k + 1} | {cells[0]} | {cells[1]} |")
    later = [it.energy_j for it in plain.iterates[1:]]
    print(f"\nplain update, iterations 2-{len(plain.iterates)}: "
          f"{min(later):.3g} J to {max(later):.3g} J")
    print(f"averaged update returns {averaged.iterates[averaged.best].energy_j:.3g} J "
          f"(stop: {averaged.stop})")


def _energy(value: float) -> str:
    return f"{value:.4g}" if value != float("inf") else "over a cap"


def _time(seconds: float) -> str:
    """Seconds with two significant digits, one unit throughout (so re-runs compare)."""
    return f"{seconds:.2g} s"


def policy_time(inst: siftopt.Instance, name: str, repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` run times with the shared data built, and the energy (inf: infeasible)."""
    function = policy(name).function
    problem_data(inst)
    function(inst)  # warm: the shared per-instance data and imports
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        actions = function(inst)
        best = min(best, time.perf_counter() - started)
    targets = getattr(actions, "targets", actions)  # a PolicyAnswer or bare targets
    report = evaluate(inst, targets)
    return best, (report.energy_j if report.feasible else float("inf"))


def costs(repeat: int, with_exact: bool) -> None:
    header = ["variant", *(f"`{name}`" for name in POLICIES)]
    if with_exact:
        header += ["HiGHS", "optimum (J)", "best policy (J)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for variant in VARIANTS:
        inst = random_instance(0, **BASE, **variant.params)
        measured = {name: policy_time(inst, name, repeat) for name in POLICIES}
        cells = [variant.label, *(_time(measured[name][0]) for name in POLICIES)]
        if with_exact:
            problem_data.cache_clear()
            energy_tables.cache_clear()
            started = time.perf_counter()
            result = siftopt.solve(inst, "highs")
            seconds = time.perf_counter() - started
            best = min(measured.values(), key=lambda pair: pair[1])
            best_names = "/".join(f"`{name}`" for name in POLICIES
                                  if measured[name][1] == best[1])
            cells += [f"{_time(seconds)} ({result.status})", f"{result.energy_j:.5g}",
                      f"{best[1]:.5g} ({best_names})"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=("oscillation", "costs"))
    parser.add_argument("--repeat", type=int, default=2, help="policy runs (best is kept)")
    parser.add_argument("--exact", action="store_true", help="also solve with HiGHS")
    args = parser.parse_args()
    if args.part == "oscillation":
        oscillation()
    else:
        costs(args.repeat, args.exact)


if __name__ == "__main__":
    main()
