"""Start-up time of the command line, measured as whole processes (issue 12's fast start).

Usage (from the repository root):

    python benchmarks/startup.py [--runs R]

Times ``siftopt --help`` and ``siftopt solve instances/example-decode-adaptive.json`` (the
pattern master's no-MILP decode rule: ~3 ms of work) over R runs after one warm-up, as
separate processes, and prints min / median / max wall seconds per command in a Markdown table,
next to ``python -c pass`` (the interpreter alone) for scale.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DECODE = ROOT / "instances" / "example-decode-adaptive.json"


def commands() -> dict[str, list[str]]:
    siftopt = shutil.which("siftopt") or ""
    cli = [siftopt] if siftopt else [sys.executable, "-m", "siftopt"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "siftopt --help": [*cli, "--help"],
        "siftopt solve example-decode-adaptive.json": [*cli, "solve", str(DECODE)],
    }


def wall_times(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, check=True, capture_output=True)  # warm-up: file caches
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print("| command | min s | median s | max s |")
    print("|---|---:|---:|---:|")
    for name, argv in commands().items():
        times = wall_times(argv, args.runs)
        print(f"| `{name}` | {min(times):.3f} | {statistics.median(times):.3f} | "
              f"{max(times):.3f} |")


if __name__ == "__main__":
    main()
