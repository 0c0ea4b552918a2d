"""Stress corpora: the default exact path (HiGHS, pattern master) against an independent one.

Usage (from the repository root):

    python benchmarks/stress.py random              # 60 instances, seeds 0..59
    python benchmarks/stress.py generated           # 80 instances, seeds 0..79
    python benchmarks/stress.py large               # 30 instances, seeds 500..529
    python benchmarks/stress.py rayleigh            # 40 instances, seeds 0..39
    python benchmarks/stress.py rayleigh-small      # 100 instances, seeds 0..99
    python benchmarks/stress.py large --start 522 --count 1   # one instance

Corpora (each instance's parameters are drawn from ``numpy.random.default_rng(seed)``, so a
seed names one instance):

* ``random``: ``random_instance``, L ∈ {16, 32, 64}, M ∈ {4, 8, 16}, N = 64, K = 8,
  4 candidates, every budget kind, both power modes, ``eps_scale`` ∈ {0.05, 0.1, 0.3, 1};
  reference: the Pyomo slot model.
* ``generated``: ``siftopt generate`` with one of the six presets, L ∈ {8, 32, 64}, slow or
  Rayleigh fading, every budget kind, accuracy ∈ {0.3, 0.5, 0.8}; reference: the Pyomo slot
  model.
* ``large``: ``random_instance``, L ∈ {64, 128, 256}, M ∈ {8, 16}, mean budgets (alone or
  with per-token ones); reference: the CP-SAT pattern model (every pattern, no column
  generation).
* ``rayleigh``: ``random_instance`` under Rayleigh fading (non-convex, possibly non-monotone
  tables), L ∈ {4, 16, 32, 64}, M ∈ {4, 8}, N = 32, K = 4, 3 candidates, every budget kind and
  power mode; reference: the Pyomo slot model (its level binaries take any table exactly).
* ``rayleigh-small``: the same under Rayleigh fading with L ≤ 3, K = 2, M ≤ 3; reference:
  brute force.

Each method gets ``--time-limit`` seconds. One line per instance; ``BAD`` marks a
disagreement: different verdicts where both proved one, different energies where both
claim optimality, the default path not proving optimality, or the reference below it.
The last line counts them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve_exact
from siftopt.model.evaluate import energies_equal
from siftopt.model.instance import Instance
from siftopt.result import SolveResult

PRESETS = ("mixtral-8x7b", "deepseek-moe-16b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b",
           "olmoe-1b-7b", "deepseek-v3")
CORPORA = {"random": (0, 60), "generated": (0, 80), "large": (500, 30), "rayleigh": (0, 40),
           "rayleigh-small": (0, 100)}


def random_case(seed: int) -> tuple[Instance, str]:
    rng = np.random.default_rng(seed)
    length, nodes = int(rng.choice([16, 32, 64])), int(rng.choice([4, 8, 16]))
    budgets = str(rng.choice(["mean", "both", "token"]))
    power = str(rng.choice(["fixed", "adaptive"]))
    eps = float(rng.choice([0.05, 0.1, 0.3, 1.0]))
    inst = random_instance(seed, num_tokens=length, num_experts=64, top_k=8, num_nodes=nodes,
                           budgets=budgets, power_control=power, eps_scale=eps,
                           max_candidates=4)
    return inst, f"L={length} M={nodes} {budgets} {power} eps_scale={eps}"


def generated_case(seed: int) -> tuple[Instance, str]:
    from siftopt.experiments.generate.build import generate
    from siftopt.experiments.generate.config import GeneratorConfig

    rng = np.random.default_rng(1000 + seed)
    cfg = GeneratorConfig(preset=str(rng.choice(PRESETS)), tokens=int(rng.choice([8, 32, 64])),
                          budget=str(rng.choice(["mean", "both", "token"])),
                          power_control=str(rng.choice(["fixed", "adaptive"])),
                          fading=str(rng.choice(["slow", "slow", "rayleigh"])),
                          accuracy=float(rng.choice([0.3, 0.5, 0.8])))
    return generate(cfg, seed).instance, (
        f"{cfg.preset} L={cfg.tokens} {cfg.budget} {cfg.power_control} {cfg.fading} "
        f"accuracy={cfg.accuracy}")


def large_case(seed: int) -> tuple[Instance, str]:
    rng = np.random.default_rng(seed)
    length, nodes = int(rng.choice([64, 128, 256])), int(rng.choice([8, 16]))
    budgets, power = str(rng.choice(["mean", "both"])), str(rng.choice(["fixed", "adaptive"]))
    eps = float(rng.choice([0.05, 0.1, 0.3]))
    inst = random_instance(seed, num_tokens=length, num_experts=64, top_k=8, num_nodes=nodes,
                           budgets=budgets, power_control=power, eps_scale=eps,
                           max_candidates=4)
    return inst, f"L={length} M={nodes} {budgets} {power} eps_scale={eps}"


def _rayleigh(seed: int, draw_seed: int, lengths: list[int], nodes: list[int], experts: int,
              top_k: int, candidates: int) -> tuple[Instance, str]:
    """A random instance (``seed``) under Rayleigh fading, its parameters drawn from
    ``default_rng(draw_seed)``."""
    rng = np.random.default_rng(draw_seed)
    length, num_nodes = int(rng.choice(lengths)), int(rng.choice(nodes))
    budgets = str(rng.choice(["mean", "both", "token"]))
    power = str(rng.choice(["fixed", "adaptive"]))
    eps = float(rng.choice([0.05, 0.1, 0.3, 1.0]))
    inst = random_instance(seed, num_tokens=length, num_experts=experts, top_k=top_k,
                           num_nodes=num_nodes, budgets=budgets, power_control=power,
                           eps_scale=eps, max_candidates=candidates, fading="rayleigh")
    return inst, f"rayleigh L={length} M={num_nodes} {budgets} {power} eps_scale={eps}"


def rayleigh_case(seed: int) -> tuple[Instance, str]:
    """Rayleigh fading (non-convex, possibly non-monotone tables), L ≤ 64: against the slot MILP,
    whose level binaries model any table exactly."""
    return _rayleigh(seed, 2000 + seed, [4, 16, 32, 64], [4, 8], experts=32, top_k=4, candidates=3)


def rayleigh_small_case(seed: int) -> tuple[Instance, str]:
    """Rayleigh fading small enough for brute force (L ≤ 3, K = 2, M ≤ 3)."""
    return _rayleigh(seed, 3000 + seed, [1, 2, 3], [2, 3], experts=6, top_k=2, candidates=2)


CASES = {"random": (random_case, ("highs", "slots")),
         "rayleigh": (rayleigh_case, ("highs", "slots")),
         "rayleigh-small": (rayleigh_small_case, ("brute", "enumeration")),
         "generated": (generated_case, ("highs", "slots")),
         "large": (large_case, ("cpsat", "patterns"))}


def disagree(default: SolveResult, reference: SolveResult) -> bool:
    """Whether the pair shows a bug or a default path without a proof (see the docstring)."""
    if default.status not in ("optimal", "infeasible"):
        return True
    if reference.status in ("optimal", "infeasible") and reference.status != default.status:
        return True
    if default.status == "optimal" and reference.energy_j is not None:
        if reference.status == "optimal":
            return not energies_equal(default.energy_j, reference.energy_j)
        return reference.energy_j < default.energy_j and not energies_equal(
            default.energy_j, reference.energy_j)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", choices=sorted(CORPORA))
    parser.add_argument("--start", type=int, default=None, help="first seed")
    parser.add_argument("--count", type=int, default=None, help="number of seeds")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per method (default: 60, large: 120)")
    args = parser.parse_args()
    start, count = CORPORA[args.corpus]
    start = start if args.start is None else args.start
    count = count if args.count is None else args.count
    limit = args.time_limit or (120.0 if args.corpus == "large" else 60.0)
    make, (ref_method, ref_formulation) = CASES[args.corpus]
    bad = 0
    statuses: dict[str, int] = {}
    references: dict[str, int] = {}
    for seed in range(start, start + count):
        inst, label = make(seed)
        began = time.perf_counter()
        default = solve_exact(inst, "highs", time_limit_s=limit)
        mid = time.perf_counter()
        reference = solve_exact(inst, ref_method, formulation=ref_formulation,
                                time_limit_s=limit)
        done = time.perf_counter()
        flag = disagree(default, reference)
        statuses[str(default.status)] = statuses.get(str(default.status), 0) + 1
        references[str(reference.status)] = references.get(str(reference.status), 0) + 1
        bad += flag
        fallback = reference.details.get("fallback", "") or default.details.get("fallback", "")
        print(f"{seed} {label} | highs/patterns {default.status} {default.energy_j} "
              f"{mid - began:.2f} s | {ref_method}/{ref_formulation} {reference.status} "
              f"{reference.energy_j} {done - mid:.2f} s"
              + (f" | {fallback}" if fallback else "") + (" BAD" if flag else ""), flush=True)
    print(f"{bad} of {count} disagree")
    print(f"agree on {count - bad} of {count} ({statuses.get('optimal', 0)} optimal, "
          f"{statuses.get('infeasible', 0)} infeasible by the default path)")
    print(f"reference {ref_method}/{ref_formulation}: "
          + ", ".join(f"{references.get(status, 0)} {status}"
                      for status in ("optimal", "infeasible", "feasible", "time_limit")))


if __name__ == "__main__":
    main()
