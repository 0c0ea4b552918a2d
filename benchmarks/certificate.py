"""A second certificate at scale (issue 14, goal 5): cpsat/lagrange against the HiGHS master.

Usage (from the repository root):

    python benchmarks/certificate.py [--lengths 4096] [--nodes 16] [--power fixed,adaptive]
                                     [--time-limit 120] [--profile default] [--json PATH]

Instances: those of ``benchmarks/scale.py`` (``random_document``, seed 7, N = 64, K = 8,
4 candidates, per-token and mean budgets). Each is solved from scratch (derived-data caches
cleared, as in scale.py) by ``solve(inst, "cpsat", formulation="lagrange")`` and by
``solve(inst, "highs")``; a row agrees when both prove an optimum and the energies are equal
within docs/model.md §3.4's tolerance. Prints a Markdown table with the load average before
each row; ``--json`` also writes the rows (status, energy, bound, seconds, HiGHS energy,
agree, and the certificate's own statistics).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from scale import make

from siftopt.facade import solve
from siftopt.io.profiles import load_profile
from siftopt.model.evaluate import energies_equal
from siftopt.model.physics import energy_tables
from siftopt.model.problem import problem_data

#: Statistics of the certificate copied into each row (``details`` of the result).
STATS = ("token_classes", "patterns", "subsets", "enumerate_s", "lp_rounds", "lp_columns",
         "glop_s", "lagrangian_bound_j", "tau", "residual_patterns", "cpsat_solves", "fallback")


def run(inst, method: str, formulation: str, profile, time_limit: float):
    problem_data.cache_clear()
    energy_tables.cache_clear()
    started = time.perf_counter()
    result = solve(inst, method, formulation=formulation, profile=profile,
                   time_limit_s=time_limit)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="4096")
    parser.add_argument("--nodes", default="16")
    parser.add_argument("--power", default="fixed,adaptive")
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--profile", default=None, help="solver profile (default: default)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    rows = []
    for num_nodes in (int(m) for m in args.nodes.split(",")):
        for power in args.power.split(","):
            for length in (int(x) for x in args.lengths.split(",")):
                inst = make(length, num_nodes, power)
                load = os.getloadavg()[0]
                cert, cert_s = run(inst, "cpsat", "lagrange", profile, args.time_limit)
                highs, highs_s = run(inst, "highs", "auto", profile, args.time_limit)
                agree = (cert.status == highs.status == "optimal"
                         and energies_equal(cert.energy_j, highs.energy_j)) or (
                    cert.status == highs.status == "infeasible")
                row = {"L": length, "M": num_nodes, "power": power, "load_avg_1min": load,
                       "status": str(cert.status), "energy_j": cert.energy_j,
                       "bound_j": cert.dual_bound_j, "seconds": cert_s,
                       "highs_status": str(highs.status), "highs_energy_j": highs.energy_j,
                       "highs_seconds": highs_s, "agree": "yes" if agree else "no"}
                row.update({k: cert.solver_info.get(k) for k in STATS})
                rows.append(row)
                print(f"L={length} M={num_nodes} {power}: {cert.status} {cert_s:.1f} s, "
                      f"HiGHS {highs.status} {highs_s:.1f} s, agree {row['agree']}",
                      file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    print(f"<!-- {platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, profile {profile.name} ({profile.threads} thread(s)), "
          f"time limit {args.time_limit} s -->")
    print("| L | M | power | load avg | status | energy J | bound J | s | enumerate s | GLOP s "
          "| CP-SAT vars | HiGHS energy J | HiGHS s | agree |")
    print("|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['L']} | {r['M']} | {r['power']} | {r['load_avg_1min']:.1f} | {r['status']} "
              f"| {_g(r['energy_j'])} | {_g(r['bound_j'])} | {r['seconds']:.1f} "
              f"| {_f(r['enumerate_s'])} | {_f(r['glop_s'])} | {r['residual_patterns']} "
              f"| {_g(r['highs_energy_j'])} | {r['highs_seconds']:.1f} | {r['agree']} |")


def _g(value) -> str:
    return "–" if value is None else f"{value:.12g}"


def _f(value) -> str:
    return "–" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
