"""The command line loads only what the command it runs needs (fast start, issue 12).

Import sets, not wall-clock times, are asserted here: times are measured by
benchmarks/startup.py and reported in docs/performance.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECODE = ROOT / "instances" / "example-decode-adaptive.json"
HEAVY = ("numpy", "pandas", "scipy", "ortools", "dask", "distributed", "matplotlib",
         "pyomo.environ", "pyarrow", "highspy")

PROBE = """
import contextlib, io, json, sys
from siftopt.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    main(sys.argv[1:])
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""


def _loaded(*argv: str) -> set[str]:
    probe = PROBE.replace("{heavy}", repr(HEAVY))
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True,
                          text=True, check=True, cwd=ROOT)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("argv", [("--help",), ("--version",), ("solve", "--help"),
                                  ("bench", "--help"), ("verify", "--help")])
def test_help_loads_no_heavy_library(argv) -> None:
    assert _loaded(*argv) == set()


def test_decoding_solve_loads_only_numpy_and_highs() -> None:
    assert _loaded("solve", str(DECODE)) <= {"numpy", "highspy"}


def test_import_siftopt_is_light() -> None:
    probe = f"import sys, siftopt; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
