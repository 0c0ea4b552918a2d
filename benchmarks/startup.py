"""Start-up time of the command line, measured as whole processes (issue 12's fast start).

Usage (from the repository root):

    python benchmarks/startup.py [--runs R] [--compare-with SOURCE_TREE [--label NAME]]

Times ``siftopt --help`` and ``siftopt solve instances/example-decode-adaptive.json`` (the
pattern master's no-MILP decode rule: ~3 ms of work) as separate processes
(``python -m siftopt``, with this interpreter), R runs after one warm-up, next to
``python -c pass`` (the interpreter alone) for scale, and prints min / median / max wall
seconds per command in a Markdown table. ``--compare-with DIR`` also runs each command with
``PYTHONPATH=DIR`` (another checkout, e.g. ``git worktree add /tmp/old 0196a7f``), alternating
the two run by run, and adds the median of the per-pair ratios (this tree / DIR); ``--label``
names DIR in the table's header (default ``other tree``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECODE = ROOT / "instances" / "example-decode-adaptive.json"


def commands() -> dict[str, list[str]]:
    cli = [sys.executable, "-m", "siftopt"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "siftopt --help": [*cli, "--help"],
        "siftopt solve example-decode-adaptive.json": [*cli, "solve", str(DECODE)],
    }


def wall_s(argv: list[str], pythonpath: str | None = None) -> float:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    started = time.perf_counter()
    # outside any source tree, so that `-m siftopt` finds the tree PYTHONPATH names (or the
    # installed one), not the working directory
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=tempfile.gettempdir())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compare-with", default=None, metavar="SOURCE_TREE")
    parser.add_argument("--label", default="other tree",
                        help="what SOURCE_TREE is, for the table header")
    args = parser.parse_args()
    other = args.compare_with
    header = "| command | min s | median s | max s |"
    rule = "|---|---:|---:|---:|"
    if other:
        header += f" {args.label} median s | ratio (median of pairs) |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    for name, argv in commands().items():
        wall_s(argv)  # warm-up: file caches
        if other:
            wall_s(argv, other)
        mine, theirs = [], []
        for _ in range(args.runs):
            mine.append(wall_s(argv))
            if other:
                theirs.append(wall_s(argv, other))
        row = (f"| `{name}` | {min(mine):.3f} | {statistics.median(mine):.3f} | "
               f"{max(mine):.3f} |")
        if other:
            ratios = [a / b for a, b in zip(mine, theirs, strict=True)]
            row += f" {statistics.median(theirs):.3f} | {statistics.median(ratios):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
