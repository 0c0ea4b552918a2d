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
    for corpus in ("random", "generated", "rayleigh", "rayleigh-small"):
        done = _run("benchmarks/stress.py", corpus, "--count", "1")
        assert done.returncode == 0, done.stderr
        assert "\n0 of 1 disagree\nagree on 1 of 1 (" in done.stdout, done.stdout


def test_known_limits_script_counts_non_monotone_tables():
    done = _run("benchmarks/known_limits.py", "--only", "monotone")
    assert done.returncode == 0, done.stderr
    assert "Rayleigh tables" in done.stdout


def test_compare_trees_prints_one_row_per_instance_with_both_trees():
    """This tree against itself: the layout docs/performance.md shows (times never checked)."""
    done = _run("benchmarks/compare_trees.py", str(ROOT), "--rounds", "1", "--labels",
                "after,before", "--", "--lengths", "1", "--nodes", "3", "--power", "fixed",
                "--methods", "highs/patterns", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == ("| L | M | power | method | total s, after (rounds 1) | total s, "
                        "before (rounds 1) | after / before |")
    assert lines[2].startswith("| 1 | 3 | fixed | highs/patterns | ") and len(lines) == 3


def test_doc_blocks_runs_the_python_blocks_of_a_page_in_order(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 2\n```\ntext\n```python\nprint('x is', x + 1)\n```\n")
    done = _run("benchmarks/doc_blocks.py", str(page))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "x is 3\n"


def test_frontier_goal3_samples_take_power_and_seed():
    """`frontier.py --goal3 --power/--seed` build the issue's set with that power mode and
    seed (names say so, every other field as the default sample); elsewhere the flags are an
    error (exit 2), not silently ignored."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from frontier import goal3_rows
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    base, other = goal3_rows(), goal3_rows("fixed", 1)
    assert len(base) == len(other) == 54
    for a, b in zip(base, other, strict=True):
        assert (b.power, b.seed, b.name) == ("fixed", 1, a.name + "-fixed-s1")
        assert (a.preset, a.tokens, a.nodes, a.budget) == (b.preset, b.tokens, b.nodes, b.budget)
    wrong = _run("benchmarks/frontier.py", "--only", "qwen256", "--seed", "1")
    assert wrong.returncode == 2 and "apply to --goal3" in wrong.stderr


def test_frontier_against_counts_equal_energies_and_joint_proofs(tmp_path):
    """`frontier.py --against OTHER.json`: equal within docs/model.md §3.4's tolerance counts,
    a larger difference, a row missing from the other file or a row without an energy does
    not; "proved optimal by both" needs both statuses optimal."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from frontier import against
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import json

    other = [{"name": "a", "status": "optimal", "energy_j": 1.0},
             {"name": "b", "status": "feasible", "energy_j": 2.0},
             {"name": "c", "status": "optimal", "energy_j": 3.0},
             {"name": "d", "status": "time_limit", "energy_j": None}]
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    rows = [{"name": "a", "status": "optimal", "energy_j": 1.0 + 5e-7},  # equal (1e-6 rel.)
            {"name": "b", "status": "optimal", "energy_j": 2.0},  # equal, one proof
            {"name": "c", "status": "optimal", "energy_j": 3.0 * (1 + 1e-5)},  # different
            {"name": "d", "status": "optimal", "energy_j": 4.0},  # no energy there
            {"name": "e", "status": "optimal", "energy_j": 5.0}]  # not there
    line = against(rows, str(path))
    assert line.strip() == ("energies equal to those of other.json: 2 of 5; "
                            "proved optimal by both: 2 of 5")
