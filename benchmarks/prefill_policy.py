"""``sift-prefill`` against the proved optimum (HiGHS) on three instance sets.

Usage (from the repository root):

    python benchmarks/prefill_policy.py [--sets paper,scale,generated] [--repeat R]
                                        [--time-limit S] [--cache FILE] [--csv FILE]
                                        [--compare sift-price] [--limit N]
                                        [--json PATH]

Sets:

* ``paper`` — the prefill cells (L > 1) of ``benchmarks/paper.toml``, generated exactly as
  ``siftopt bench`` does (:func:`siftopt.experiments.bench.config.cells`);
* ``scale`` — the rows of ``benchmarks/scale.py`` with L ≥ 128: L ∈ {128, 512, 1024, 4096},
  M ∈ {8, 16}, fixed and adaptive power (N = 64, K = 8, both budgets);
* ``generated`` — ``siftopt generate`` instances (urban): every preset × budget
  (token, mean, both) × fading (slow, rayleigh) × L ∈ {16, 64} × M ∈ {4, 8}, seeds 0 and 1.

For every instance: the exact optimum (``solve(inst, "highs")``), the policy's energy, its
feasibility (by the evaluator), its gap ``(E − OPT)/OPT``, its certified bound (checked
against the optimum) and whether it certified its own answer optimal, and times. Times: the
policy alone (shared per-instance problem data already built, as in docs/policies.md §6;
best of ``--repeat`` runs) and both methods from scratch (problem-data and energy-table
caches cleared, like ``benchmarks/scale.py``). ``--cache`` keeps the exact results between
runs (JSON, keyed by set and instance name). Prints one Markdown summary row per set.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import make  # noqa: E402  (the scale benchmark's instances)

import siftopt  # noqa: E402
from siftopt.experiments.bench.config import cells, load_bench_config  # noqa: E402
from siftopt.experiments.generate.build import generate  # noqa: E402
from siftopt.experiments.generate.config import GeneratorConfig  # noqa: E402
from siftopt.experiments.generate.presets import ARCHITECTURES  # noqa: E402
from siftopt.model.evaluate import evaluate  # noqa: E402
from siftopt.model.instance import Instance  # noqa: E402
from siftopt.model.physics import energy_tables  # noqa: E402
from siftopt.model.problem import problem_data  # noqa: E402
from siftopt.policies.prefill import sift_prefill_run  # noqa: E402

PAPER = Path(__file__).resolve().parent / "paper.toml"
SCALE_ROWS = [(length, nodes, power) for nodes in (8, 16) for power in ("fixed", "adaptive")
              for length in (128, 512, 1024, 4096)]
#: Equality of energies (docs/model.md §3.4): gaps below it count as optimal.
EQUAL_RTOL = 1e-6
CSV_FIELDS = ("set", "name", "L", "M", "exact_status", "optimum_j", "exact_s", "energy_j",
              "feasible", "gap", "bound_j", "bound_ok", "certified", "policy_s", "policy_total_s",
              "compare_energy_j", "compare_gap", "compare_s")


def paper_instances(limit: int | None) -> Iterator[tuple[str, Instance]]:
    bench = load_bench_config(PAPER)
    found = [c for c in cells(bench) if c.config.tokens > 1]
    for cell in found[:limit]:
        inst = generate(cell.config, cell.seed).instance
        yield f"{cell.key}-{inst.name}", inst


def scale_instances(limit: int | None) -> Iterator[tuple[str, Instance]]:
    for length, nodes, power in SCALE_ROWS[:limit]:
        yield f"L{length}-M{nodes}-{power}", make(length, nodes, power)


def generated_instances(limit: int | None) -> Iterator[tuple[str, Instance]]:
    count = 0
    for preset in ARCHITECTURES:
        for budget in ("token", "mean", "both"):
            for fading in ("slow", "rayleigh"):
                for tokens in (16, 64):
                    for nodes in (4, 8):
                        for seed in (0, 1):
                            if limit is not None and count >= limit:
                                return
                            count += 1
                            config = GeneratorConfig(preset=preset, tokens=tokens, nodes=nodes,
                                                     fading=fading, budget=budget)
                            inst = generate(config, seed).instance
                            yield f"{inst.name}-{budget}", inst


SETS = {"paper": paper_instances, "scale": scale_instances, "generated": generated_instances}


def _fresh() -> None:
    problem_data.cache_clear()
    energy_tables.cache_clear()


def exact(inst: Instance, time_limit_s: float) -> dict:
    """HiGHS from scratch: status, energy (J) and wall time (s)."""
    _fresh()
    started = time.perf_counter()
    result = siftopt.solve(inst, "highs", time_limit=time_limit_s)
    return {"status": str(result.status), "energy_j": result.energy_j,
            "time_s": time.perf_counter() - started}


def policy(inst: Instance, repeat: int) -> dict:
    """``sift-prefill``: its run, the best core time over ``repeat`` runs (problem data
    cached) and one run from scratch."""
    _fresh()
    started = time.perf_counter()
    run = sift_prefill_run(inst)
    total = time.perf_counter() - started
    core = []
    for _ in range(repeat):
        started = time.perf_counter()
        sift_prefill_run(inst)
        core.append(time.perf_counter() - started)
    return {"run": run, "core_s": min(core), "total_s": total}


def compare(inst: Instance, method: str) -> dict:
    """Another policy (e.g. ``sift-price``), problem data cached: energy and time."""
    from siftopt.facade import solve_policy

    result = solve_policy(inst, method)
    return {"energy_j": result.energy_j if result.feasible else None,
            "time_s": result.solve_time_s}


def gap(energy: float | None, optimum: float | None) -> float | None:
    """``(E − OPT)/OPT`` (0 when both are 0, inf when only OPT is), None if undefined."""
    if energy is None or optimum is None:
        return None
    if optimum <= 0:
        return 0.0 if energy <= 0 else math.inf
    return (energy - optimum) / optimum


def measure(args: argparse.Namespace) -> list[dict]:
    cache: dict[str, dict] = {}
    if args.cache and os.path.exists(args.cache):
        with open(args.cache) as handle:
            cache = json.load(handle)
    rows = []
    # imports and first-call costs stay out of the numbers: large enough that both methods
    # load their numba-compiled code (about 0.5 s once per process)
    warm = make(128, 8, "adaptive")
    sift_prefill_run(warm)
    siftopt.solve(warm, "highs")
    for set_name in args.sets.split(","):
        for name, inst in SETS[set_name](args.limit):
            key = f"{set_name}/{name}"
            cached = key in cache
            if not cached:
                cache[key] = exact(inst, args.time_limit)
                if args.cache:
                    with open(args.cache, "w") as handle:
                        json.dump(cache, handle)
            ex = cache[key]
            got = policy(inst, args.repeat)
            run = got["run"]
            ev = evaluate(inst, run.answer.targets)
            optimum = ex["energy_j"] if ex["status"] == "optimal" else None
            bound = run.dual_bound_j
            row = {"set": set_name, "name": name, "L": inst.num_tokens, "M": inst.num_nodes,
                   "exact_status": ex["status"], "optimum_j": ex["energy_j"],
                   "exact_s": ex["time_s"], "exact_cached": cached,
                   "energy_j": ev.energy_j, "feasible": ev.feasible,
                   "gap": gap(ev.energy_j, optimum) if ev.feasible else None,
                   "bound_j": bound,
                   "bound_ok": (None if bound is None or optimum is None else
                                bound <= optimum * (1 + EQUAL_RTOL) + 1e-15),
                   "certified": run.certified, "policy_s": got["core_s"],
                   "policy_total_s": got["total_s"]}
            if args.compare:
                other = compare(inst, args.compare)
                row.update(compare_energy_j=other["energy_j"],
                           compare_gap=gap(other["energy_j"], optimum),
                           compare_s=other["time_s"])
            rows.append(row)
            print(f"{key}: gap {row['gap']} feasible {ev.feasible} certified {run.certified} "
                  f"policy {got['core_s']:.4f} s exact {ex['time_s']:.3f} s",
                  file=sys.stderr, flush=True)
    return rows


def summarise(rows: list[dict], compare_name: str | None) -> dict:
    """The summary numbers the docs quote: per set (instances, exact optimal, feasible of
    feasible, optimal, certified, mean and max gap in %, bounds at most the optimum, median
    policy/exact time ratio, the compared policy's mean and max gap) and per scale row (gap,
    certified, times, ratio)."""
    out: dict = {"sets": {}, "scale_rows": []}
    for set_name in dict.fromkeys(r["set"] for r in rows):
        part = [r for r in rows if r["set"] == set_name]
        decided = [r for r in part if r["exact_status"] == "optimal"]
        feasible_opt = [r for r in decided if r["optimum_j"] is not None]
        ok = [r for r in feasible_opt if r["feasible"]]
        gaps = [r["gap"] for r in ok]
        ratio = [r["policy_s"] / r["exact_s"] for r in part if r["exact_s"] > 0]
        bounds = [r["bound_ok"] for r in decided if r["bound_ok"] is not None]
        entry = {"instances": len(part), "exact_optimal": len(decided),
                 "feasible": len(ok), "feasible_of": len(feasible_opt),
                 "optimal": sum(g <= EQUAL_RTOL for g in gaps),
                 "certified": sum(bool(r["certified"]) for r in part),
                 "mean_gap_pct": 100 * statistics.fmean(gaps) if gaps else None,
                 "max_gap_pct": 100 * max(gaps) if gaps else None,
                 "bound_ok": sum(bool(b) for b in bounds), "bound_of": len(bounds),
                 "median_time_ratio": statistics.median(ratio) if ratio else None}
        if compare_name:
            other = [r["compare_gap"] for r in decided if r.get("compare_gap") is not None]
            entry["compare"] = compare_name
            entry["compare_mean_gap_pct"] = 100 * statistics.fmean(other) if other else None
            entry["compare_max_gap_pct"] = 100 * max(other) if other else None
        out["sets"][set_name] = entry
    for r in rows:
        if r["set"] != "scale":
            continue
        row = {"L": r["L"], "M": r["M"], "power": r["name"].rsplit("-", 1)[1],
               "gap_pct": None if r["gap"] is None else 100 * r["gap"],
               "certified": bool(r["certified"]), "policy_s": r["policy_s"],
               "policy_total_s": r["policy_total_s"], "exact_s": r["exact_s"],
               "ratio": r["policy_s"] / r["exact_s"] if r["exact_s"] > 0 else None,
               "exact_from_cache": bool(r.get("exact_cached"))}
        if compare_name:
            row["compare_gap_pct"] = (None if r.get("compare_gap") is None
                                      else 100 * r["compare_gap"])
            row["compare_s"] = r.get("compare_s")
        out["scale_rows"].append(row)
    return out


def summary(rows: list[dict], compare_name: str | None) -> dict:
    """Print one Markdown row per set (and per scale row); return :func:`summarise`."""
    numbers = summarise(rows, compare_name)
    head = ("| set | instances | exact optimal | feasible (of feasible) | optimal (gap ≤ 1e-6) "
            "| certified | mean gap | max gap | bound ≤ OPT | median policy/exact time |")
    if compare_name:
        head += f" {compare_name} mean / max gap |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for set_name, e in numbers["sets"].items():
        ratio = e["median_time_ratio"]
        line = (f"| {set_name} | {e['instances']} | {e['exact_optimal']} "
                f"| {e['feasible']}/{e['feasible_of']} | {e['optimal']} | {e['certified']} "
                f"| {_pct_of(e['mean_gap_pct'])} | {_pct_of(e['max_gap_pct'])} "
                f"| {e['bound_ok']}/{e['bound_of']} "
                f"| {'-' if ratio is None else f'{ratio:.3f}'} |")
        if compare_name:
            line += (f" {_pct_of(e['compare_mean_gap_pct'])} / "
                     f"{_pct_of(e['compare_max_gap_pct'])} |")
        print(line)
    if numbers["scale_rows"]:
        print()
        print("| L | M | power | gap | certified | sift-prefill s (core / from scratch) "
              "| exact s | ratio |" + (f" {compare_name} gap, s |" if compare_name else ""))
        print("|---:|---:|---|---|---|---|---|---|" + ("---|" if compare_name else ""))
        for r in numbers["scale_rows"]:
            line = (f"| {r['L']} | {r['M']} | {r['power']} | {_pct_of(r['gap_pct'])} "
                    f"| {r['certified']} | {r['policy_s']:.4f} / {r['policy_total_s']:.4f} "
                    f"| {r['exact_s']:.3f} | {r['ratio']:.3f} |")
            if compare_name:
                line += f" {_pct_of(r.get('compare_gap_pct'))}, {r.get('compare_s') or 0:.3f} |"
            print(line)
    return numbers


def _pct_of(percent: float | None) -> str:
    return "infeasible" if percent is None else _pct(percent / 100)


def _pct(value: float | None) -> str:
    if value is None:
        return "infeasible"
    if math.isinf(value):
        return "inf"
    return f"{100 * value:.3g} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="paper,scale,generated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--time-limit", type=float, default=300.0)
    parser.add_argument("--cache", default=None, metavar="FILE",
                        help="JSON file keeping the exact results between runs")
    parser.add_argument("--csv", default=None, metavar="FILE")
    parser.add_argument("--compare", default=None, metavar="POLICY",
                        help="also run this policy (e.g. sift-price) for its gaps")
    parser.add_argument("--limit", type=int, default=None,
                        help="at most this many instances per set")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="write the summary numbers (per set and per scale row) as JSON")
    args = parser.parse_args()
    args.load_start = _loadavg()
    rows = measure(args)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    load = _loadavg()
    print(f"<!-- {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, repeat={args.repeat}, load average {load} -->")
    numbers = summary(rows, args.compare)
    if args.json:
        numbers.update(command=" ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                       repeat=args.repeat, cores=os.cpu_count(), load_average=load,
                       load_average_start=args.load_start)
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=1)


def _loadavg() -> str | None:
    """``/proc/loadavg``'s three averages (None where there is none)."""
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return None


if __name__ == "__main__":
    main()
