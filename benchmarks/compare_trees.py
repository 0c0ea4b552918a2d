"""Run benchmarks/scale.py in this tree and in another checkout, alternating, and print the
total times side by side (how docs/performance.md compares the code before and after a change).

Usage (from the repository root):

    git worktree add /tmp/pre-redesign 0196a7f
    python benchmarks/compare_trees.py /tmp/pre-redesign --rounds 2 --labels after,before \\
        -- --lengths 1,1024,4096 --nodes 16 --power fixed,adaptive --methods highs/patterns \\
        --repeat 3 --time-limit 60

Each round runs ``python benchmarks/scale.py ARGS --csv FILE`` first in this tree, then in the
other one (its own scale.py, with ``PYTHONPATH`` set to it), so both see the same machine
load. Prints one Markdown row per instance and method: the total seconds of each round in
either tree and the per-round ratios (this tree / the other).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_scale(tree: Path, args: list[str], csv_path: Path) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, "benchmarks/scale.py", *args, "--csv", str(csv_path)],
                   cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    with csv_path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("other", help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--labels", default="this tree,other tree",
                        help="names of this tree and the other one, comma-separated")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    scale_args = argv[split + 1:]  # after --: the arguments of benchmarks/scale.py
    mine_label, other_label = args.labels.split(",")
    totals: dict[tuple, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for index, tree in enumerate((ROOT, Path(args.other).resolve())):
                rows = run_scale(tree, scale_args, Path(tmp) / f"{round_}-{index}.csv")
                for row in rows:
                    key = (row["L"], row["M"], row["power"], row["method"])
                    totals.setdefault(key, ([], []))[index].append(float(row["total_s"]))
    rounds = ", ".join(str(r + 1) for r in range(args.rounds))
    print(f"| L | M | power | method | total s, {mine_label} (rounds {rounds}) | total s, "
          f"{other_label} (rounds {rounds}) | {mine_label} / {other_label} |")
    print("|---:|---:|---|---|---|---|---|")
    for (length, nodes, power, method), (mine, theirs) in totals.items():
        ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(mine, theirs, strict=True))
        print(f"| {length} | {nodes} | {power} | {method} | "
              + ", ".join(f"{t:.3g}" for t in mine) + " | "
              + ", ".join(f"{t:.3g}" for t in theirs) + f" | {ratios} |")


if __name__ == "__main__":
    main()
