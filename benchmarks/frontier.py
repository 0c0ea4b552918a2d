"""The frontier instances of issue 14, solved by the default exact backend (HiGHS pattern master).

Usage (from the repository root; about 8 minutes with the default 120 s limit):

    python benchmarks/frontier.py [--only NAME[,NAME...]] [--time-limit 120] [--all] \
        [--goal1 | --goal3 [--power fixed] [--seed S]] [--json PATH] \
        [--method highs|cpsat/lagrange|...] [--against OTHER.json] [--no-child]

Each row is generated with the Python API (``siftopt.generate``, urban scenario, the default
profile) and solved with ``siftopt.solve(inst, "highs", time_limit=T)`` (or ``--method``,
``METHOD/FORMULATION``); the Markdown table
(instance, status, energy, bound, gap, time) is printed row by row. ``--all`` adds the
L = 32768 row (a single 32768-token batch from the generator; the issue's row was eight
4096-token prompts, which the generator has no option for). Mean-budget rows use seed 0 (the
issue gives none). ``--json PATH`` also writes every row (name, instance, status, energy and
bound in J, relative gap, seconds, load average at the start, the MILPs run in a child process,
whether one was killed at the deadline and their overhead in s, the policy whose answer was
returned) to PATH, rewritten after each; ``--against OTHER.json`` then compares the
energies with another such file of the same rows (e.g. another method's). ``--no-child`` runs
every HiGHS MILP in process (by default, with a time limit, MILPs of at least
``ISOLATE_COLUMNS`` columns run in a child process killed at the deadline:
:mod:`siftopt.backends.highs.isolated`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import siftopt
from siftopt.model.evaluate import energies_equal


@dataclass(frozen=True)
class Row:
    name: str
    preset: str
    tokens: int
    nodes: int
    fading: str
    power: str
    seed: int
    budget: str = "token"
    accuracy: float | None = None
    large: bool = False  # only with --all

    def label(self) -> str:
        budget = (f", {self.budget} {self.accuracy:g}" if self.budget in ("mean", "both")
                  else "")
        return (f"{self.preset}, L={self.tokens}, M={self.nodes}, {self.fading}, {self.power}"
                f"{budget}, seed {self.seed}")


ROWS = (
    Row("qwen256", "qwen3-30b-a3b", 256, 8, "rayleigh", "fixed", 5),
    Row("olmoe256", "olmoe-1b-7b", 256, 8, "rayleigh", "fixed", 9),
    Row("qwen1024a", "qwen3-30b-a3b", 1024, 16, "rayleigh", "adaptive", 6),
    Row("qwen1024f", "qwen3-30b-a3b", 1024, 16, "rayleigh", "fixed", 5),
    Row("deepseek4096", "deepseek-v3", 4096, 32, "slow", "adaptive", 3),
    Row("qwen32768", "qwen3-30b-a3b", 32768, 16, "slow", "adaptive", 0, large=True),
    Row("mean-qwen128", "qwen3-30b-a3b", 128, 8, "slow", "adaptive", 0, "mean", 0.3),
    Row("mean-mixtral512", "mixtral-8x7b", 512, 4, "slow", "fixed", 0, "mean", 0.2),
    Row("mean-olmoe1024", "olmoe-1b-7b", 1024, 8, "slow", "adaptive", 0, "mean", 0.2),
    Row("both-qwen1024", "qwen3-30b-a3b", 1024, 16, "slow", "adaptive", 0, "both", 0.2),
)


PRESETS = ("mixtral-8x7b", "deepseek-moe-16b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b",
           "olmoe-1b-7b", "deepseek-v3")


def goal3_rows(power: str = "adaptive", seed: int = 0) -> tuple[Row, ...]:
    """Goal 3's set, sampled: every preset × per-token, mean and both budgets (accuracy 0.2)
    × (L, M) ∈ {(256, 8), (1024, 16), (2048, 16)}, slow fading, adaptive power, seed 0 (or
    the given power mode and seed; row names then end in ``-fixed`` / ``-s<seed>``)."""
    tail = ("" if power == "adaptive" else f"-{power}") + ("" if seed == 0 else f"-s{seed}")
    return tuple(Row(f"{budget}-{preset}-{tokens}{tail}", preset, tokens, nodes, "slow", power,
                     seed, budget, 0.2)
                 for preset in PRESETS for budget in ("token", "mean", "both")
                 for tokens, nodes in ((256, 8), (1024, 16), (2048, 16)))


def goal1_rows() -> tuple[Row, ...]:
    """Goal 1's set, sampled: qwen3-30b-a3b (N = 128, K = 8), Rayleigh fading, both power
    modes × (L, M) ∈ {(256, 8), (1024, 16)} × seeds 0–4 (per-token budgets)."""
    return tuple(Row(f"rayleigh-{power}-{tokens}-{seed}", "qwen3-30b-a3b", tokens, nodes,
                     "rayleigh", power, seed)
                 for tokens, nodes in ((256, 8), (1024, 16)) for power in ("fixed", "adaptive")
                 for seed in range(5))


def goal_seconds(row: Row, goal1: bool) -> float:
    """The issue's time target of a sampled row: goal 1 5 s at L = 256 and 10 s at
    L = 1024, goal 3 5 s."""
    return 10.0 if goal1 and row.tokens > 256 else 5.0


def instance(row: Row) -> siftopt.Instance:
    params = {"tokens": row.tokens, "nodes": row.nodes, "fading": row.fading,
              "power_control": row.power, "budget": row.budget}
    if row.accuracy is not None:
        params["accuracy"] = row.accuracy
    return siftopt.generate(row.preset, seed=row.seed, **params)[0]


def against(rows: list[dict[str, object]], path: str) -> str:
    """One line: how many of ``rows`` have an energy equal (docs/model.md §3.4) to that of the
    row of the same name in the ``--json`` file at ``path``, and on how many both runs
    proved optimality. Rows missing there, or without an energy in either run, count as
    different."""
    with open(path, encoding="utf-8") as src:
        other = {r["name"]: r for r in json.load(src)}
    same = both = 0
    for row in rows:
        there = other.get(str(row["name"]))
        if there is None:
            continue
        a, b = row["energy_j"], there["energy_j"]
        if a is not None and b is not None and energies_equal(float(a), float(b)):
            same += 1
        both += row["status"] == there["status"] == "optimal"
    return (f"\nenergies equal to those of {os.path.basename(path)}: {same} of {len(rows)}; "
            f"proved optimal by both: {both} of {len(rows)}")


def _j(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated row names: "
                        + ", ".join(r.name for r in ROWS))
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--all", action="store_true", help="include the L = 32768 row")
    parser.add_argument("--goal3", action="store_true",
                        help="instead of the rows above: goal 3's sampled set (54 generated "
                        "instances, see goal3_rows) and a summary line")
    parser.add_argument("--power", choices=("adaptive", "fixed"), default="adaptive",
                        help="with --goal3: the power mode of its instances (default adaptive)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --goal3: the generator seed of its instances (default 0)")
    parser.add_argument("--goal1", action="store_true",
                        help="instead of the rows above: goal 1's sampled set (20 generated "
                        "Rayleigh instances, see goal1_rows) and a summary line")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON to PATH")
    parser.add_argument("--method", default="highs",
                        help="METHOD or METHOD/FORMULATION, e.g. cpsat/lagrange (default highs)")
    parser.add_argument("--against", metavar="PATH",
                        help="the --json file of another run of the same rows (e.g. another "
                        "method): print how many energies equal its energies (docs/model.md "
                        "§3.4) and how many rows both proved optimal")
    parser.add_argument("--no-child", action="store_true",
                        help="run every HiGHS MILP in this process (no child process that is "
                        "killed at the deadline): to measure the child's overhead")
    args = parser.parse_args()
    if args.no_child:
        from siftopt.backends.highs import common

        common.ISOLATE_COLUMNS = 2**62
    if args.goal1 and args.goal3:
        parser.error("--goal1 and --goal3 are two runs")
    sampled = args.goal1 or args.goal3
    if not args.goal3 and (args.power != "adaptive" or args.seed != 0):
        parser.error("--power and --seed apply to --goal3")
    table = (goal1_rows() if args.goal1 else goal3_rows(args.power, args.seed) if args.goal3
             else ROWS)
    wanted = set(args.only.split(",")) if args.only else None
    unknown = (wanted or set()) - {r.name for r in table}
    if unknown:
        sys.exit(f"unknown rows: {', '.join(sorted(unknown))}")
    print("| instance | status | energy (J) | bound (J) | gap | time (s) |")
    print("|---|---|---|---|---|---|", flush=True)
    rows: list[dict[str, object]] = []
    for row in table:
        if wanted is not None and row.name not in wanted:
            continue
        if wanted is None and row.large and not args.all:
            continue
        inst = instance(row)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        method, _, formulation = args.method.partition("/")
        result = siftopt.solve(inst, method, time_limit=args.time_limit,
                               formulation=formulation or "auto")
        took = time.perf_counter() - started
        energy = result.energy_j if result.evaluation is not None else None
        bound = result.dual_bound_j
        gap = "–"
        rel_gap = None
        if energy is not None and bound is not None and energy > 0:
            rel_gap = max(energy - bound, 0.0) / energy
            gap = f"{rel_gap:.2%}"
        print(f"| {row.label()} | {result.status} | {_j(energy)} | {_j(bound)} | {gap} "
              f"| {took:.1f} |", flush=True)
        rows.append({"name": row.name, "instance": row.label(), "status": str(result.status),
                     "energy_j": energy, "bound_j": bound, "gap": rel_gap,
                     "seconds": round(took, 3), "time_limit_s": args.time_limit,
                     "loadavg_1min": load,
                     # MILPs run in a child process (True, or "killed at the deadline")
                     "mip_child_processes": [e["child_process"] for e in result.trace
                                             if "child_process" in e],
                     "mip_child_overhead_s": round(sum(e.get("child_overhead_s", 0.0)
                                                       for e in result.trace), 4),
                     "incumbent_policy": result.solver_info.get("incumbent_policy")})
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(rows, out, indent=1)
    if args.against and rows:
        print(against(rows, args.against))
    if sampled and rows:
        target = {r.name: goal_seconds(r, args.goal1) for r in table}
        within = sum(r["status"] == "optimal" and float(r["seconds"]) <= target[r["name"]]
                     for r in rows)
        slowest = max(rows, key=lambda r: float(r["seconds"]))
        limit = "the target (5 s at L = 256, 10 s at L = 1024)" if args.goal1 else "5 s"
        print(f"\nproved optimal within {limit}: {within} of {len(rows)}; "
              f"proved optimal: {sum(r['status'] == 'optimal' for r in rows)} of {len(rows)}; "
              f"slowest: {slowest['instance']} {slowest['seconds']} s ({slowest['status']})")


if __name__ == "__main__":
    main()
