"""The curated instances in instances/ and their recorded optima (instances/manifest.json).

Every exact backend re-solves each file and must reproduce the recorded verdict and energy;
the manifest's ``verified_by`` names only methods that do so here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from methods_under_test import EXACT_BACKENDS

from siftopt.backends.brute import MAX_ASSIGNMENTS, count_assignments
from siftopt.facade import solve_exact
from siftopt.io.instance_file import load_instance
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.problem import problem_data

FOLDER = Path(__file__).resolve().parent.parent / "instances"
MANIFEST = json.loads((FOLDER / "manifest.json").read_text())["instances"]


def test_manifest_lists_every_instance_file():
    listed = {e["file"] for e in MANIFEST}
    on_disk = {p.name for p in FOLDER.glob("*.json") if p.name != "manifest.json"}
    assert listed == on_disk


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_instance_name_is_its_file_stem(entry):
    """What verify and solve print (the instance's name) is the file name without .json."""
    path = FOLDER / entry["file"]
    assert entry["name"] == path.stem
    assert json.loads(path.read_text())["name"] == path.stem


BRUTE_LIMIT = MAX_ASSIGNMENTS  # brute force runs wherever it can (a few seconds at most)


def _cases() -> list[tuple[dict, str, str]]:
    """Every curated instance × every exact backend that fits it in the suite's time: brute
    force where it enumerates at most BRUTE_LIMIT assignments, CP-SAT's slot model up to 16
    tokens (it needs minutes at L = 128, docs/performance.md), every other backend always."""
    cases = []
    for entry in MANIFEST:
        inst = load_instance(FOLDER / entry["file"])
        for method, formulation, interface in EXACT_BACKENDS:
            if method == "brute" and count_assignments(problem_data(inst)) > BRUTE_LIMIT:
                continue
            if (method, formulation) == ("cpsat", "slots") and inst.num_tokens > 16:
                continue
            cases.append((entry, method, f"{formulation}:{interface}"))
    return cases


CASES = _cases()


def test_every_optimum_is_checked_by_two_independent_solvers():
    """HiGHS and CP-SAT, which share no solver code, on every file; brute force too wherever
    it fits (all but the L = 128 file)."""
    for entry in MANIFEST:
        methods = {m for e, m, _ in CASES if e is entry}
        assert {"highs", "cpsat"} <= methods, entry["file"]
        assert "brute" in methods or entry["tokens"] >= 128, entry["file"]


def test_manifest_names_only_the_methods_checked_here():
    """``verified_by`` is a claim: each method it names re-solves the file in this suite."""
    for entry in MANIFEST:
        methods = {m for e, m, _ in CASES if e is entry}
        assert entry["verified_by"] and set(entry["verified_by"]) <= methods, entry["file"]


@pytest.mark.parametrize(("entry", "method", "variant"), CASES,
                         ids=[f"{e['file']}-{m}-{v}" for e, m, v in CASES])
def test_recorded_optimum_is_reproduced(entry, method, variant):
    formulation, interface = variant.split(":")
    inst = load_instance(FOLDER / entry["file"])
    assert inst.name == entry["name"]
    result = solve_exact(inst, method, formulation=formulation, interface=interface)
    assert result.status == entry["status"], result.message
    if entry["status"] == "optimal":
        assert energies_equal(result.energy_j, entry["optimum_j"])
        assert evaluate(inst, result.actions).feasible
    else:
        assert result.message
