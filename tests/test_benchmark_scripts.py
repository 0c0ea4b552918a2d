"""The benchmark scripts behind docs/performance.md still run and print what the doc shows.

Tiny sizes only: these check the commands and the table layout, never a timing.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from siftopt.model.evaluate import energies_equal

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def test_scale_script_writes_csv_and_tables(tmp_path):
    out = tmp_path / "scale.csv"
    methods = ("highs/patterns,highs/patterns-pyomo,highs/slots,highs/slots-direct,"
               "cpsat/patterns,highs/patterns+warm,sift-price,topk")
    done = _run("benchmarks/scale.py", "--lengths", "1,6", "--nodes", "3", "--power",
                "adaptive", "--repeat", "1", "--time-limit", "30", "--methods", methods,
                "--csv", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * len(methods.split(","))
    exact = [r for r in rows if "/" in r["method"]]
    assert all(r["status"] in ("optimal", "infeasible") for r in exact), exact
    for length in ("1", "6"):  # every exact method, every interface: one optimum
        energies = [float(r["energy_j"]) for r in exact if r["L"] == length and r["energy_j"]]
        assert energies and all(energies_equal(e, energies[0]) for e in energies), energies
    assert "Exact methods" in done.stdout and "Policies" in done.stdout
    again = _run("benchmarks/scale.py", "--tables-from", str(out))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() in done.stdout
    assert "| 6 | 3 | adaptive |" in again.stdout


def test_core_timings_script_runs():
    done = _run("benchmarks/core_timings.py", "--repeat", "1", "--sizes", "decode",
                "--methods", "highs,highs+slots,sift-decode")
    assert done.returncode == 0, done.stderr
    assert "decode" in done.stdout and "optimal" in done.stdout


def test_stress_script_runs_one_seed_per_corpus():
    for corpus in ("random", "generated"):
        done = _run("benchmarks/stress.py", corpus, "--count", "1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("0 of 1 disagree"), done.stdout


def test_known_limits_script_counts_non_monotone_tables():
    done = _run("benchmarks/known_limits.py", "--only", "monotone")
    assert done.returncode == 0, done.stderr
    assert "Rayleigh tables" in done.stdout
