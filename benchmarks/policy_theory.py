"""The numbers of docs/policies.md §0–§5 and §9: the counterexample files and the rules' constants.

Usage (from the repository root):

    python benchmarks/policy_theory.py counterexamples   # §4 and §9: the files in tests/data
    python benchmarks/policy_theory.py constants         # §0, §3, §5: the rules' parameters

``counterexamples`` prints, for each counterexample file, its slots (the degradation of each
slot's fallback, w·c_loc, and of its replacements, w·δ), its nodes (cap and one-token energy
E_m(1)), its budgets, and every policy's decision against the brute-force optimum
(``siftopt.solve(inst, "brute")``). Everything is deterministic; it runs in a few seconds.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import siftopt
from siftopt.model.problem import problem_data

ROOT = Path(__file__).resolve().parent.parent
FILES = ("ratio-binding-cap-twice-optimum.json", "remote-replacement-only.json",
         "decode-repair-misses.json")
METHODS = ("topk", "local", "sift-decode", "sift-ratio", "sift-price", "sift-prefill")


def _num(value: float) -> str:
    return "none" if value is None or not math.isfinite(value) else f"{value:.6g}"


def counterexamples() -> None:
    for file in FILES:
        inst = siftopt.load(str(ROOT / "tests" / "data" / file))
        data = problem_data(inst)
        budgets = ", ".join(_num(e) for e in inst.eps_token) if inst.eps_token is not None \
            else "none"
        print(f"== {file}: L = {inst.num_tokens}, K = {inst.top_k}, M = {inst.num_nodes}; "
              f"per-token budgets {budgets}; mean budget {_num(inst.eps_mean)}\n")
        print(f"slots of {file} (fallback = least degradation without a remote node):\n")
        print("| token | expert | node | weight | fallback | replacements (expert@node: w·δ) |")
        print("|---:|---:|---:|---:|---:|---|")
        local = inst.placement == 0
        items: dict[tuple[int, int], float] = {}
        for t in range(inst.num_tokens):
            for i, w in zip(inst.topk_experts[t], inst.topk_weights[t], strict=True):
                row = np.asarray(inst.delta[i], dtype=float)
                local_delta = [row[j] for j in range(inst.num_experts) if local[j] and j != i]
                c_loc = min([inst.beta[i], *local_delta])
                repl = [f"{j}@{inst.placement[j]}: {_num(w * row[j])}"
                        for j in range(inst.num_experts)
                        if j != i and math.isfinite(row[j])]
                fallback = 0.0 if local[i] else w * c_loc
                if not local[i]:
                    key = (t, int(inst.placement[i]))
                    items[key] = items.get(key, 0.0) + fallback
                print(f"| {t} | {i} | {inst.placement[i]} | {_num(w)} | {_num(fallback)} | "
                      f"{', '.join(repl) or '-'} |")
        print(f"\nitems of {file} (token t on remote node m; s = the fallbacks of t's slots "
              "on m):\n")
        print("| token | node | s | ε_t − s |")
        print("|---:|---:|---:|---:|")
        for (t, m), cost in items.items():
            eps = inst.eps_token[t] if inst.eps_token is not None else math.inf
            print(f"| {t} | {m} | {_num(cost)} | {_num(eps - cost)} |")
        print(f"\nnodes of {file}:\n")
        print("| node | Top-K load | cap | E_m(1) (J) |")
        print("|---:|---:|---:|---:|")
        for table in data.tables:
            e1 = table.energy_j[1] if len(table.energy_j) > 1 else math.nan
            load = sum(1 for t, m in items if m == table.node)
            print(f"| {table.node} | {load} | {table.cap} | {_num(e1)} |")
        truth = siftopt.solve(inst, "brute")
        print(f"\ndecisions on {file} (brute force: {truth.status}, "
              f"{_num(truth.energy_j)} J):\n")
        print("| method | feasible | energy (J) | energy / optimum |")
        print("|---|---|---:|---:|")
        for method in METHODS:
            got = siftopt.solve(inst, method)
            ratio = got.energy_j / truth.energy_j if got.feasible else math.nan
            print(f"| {method} | {'yes' if got.feasible else 'no'} | {_num(got.energy_j)} | "
                  f"{_num(ratio) if got.feasible else '-'} |")
        print()


def constants() -> None:
    from siftopt.model.budgets import TOL
    from siftopt.policies import decode, price

    print(f"budget tolerance (docs/model.md): {TOL:g}")
    print(f"sift-decode: most relevant nodes per token {decode.MAX_DECODE_NODES}; "
          f"λ grows ×{decode.LAMBDA_GROWTH:g}, then {decode.LAMBDA_STEPS} bisection steps")
    print(f"sift-price: patience {price.PATIENCE}, at most {price.MAX_PRICE_ITERATIONS} "
          f"iterations, certificate slack {price.CERTIFICATE_RTOL:g}, "
          f"λ bisection steps {price.LAMBDA_STEPS_FIRST} (first), "
          f"{price.LAMBDA_STEPS_LATER} (later)")


COMMANDS = {"counterexamples": counterexamples, "constants": constants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    COMMANDS[parser.parse_args().command]()


if __name__ == "__main__":
    main()
