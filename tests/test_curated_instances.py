"""The curated instances in instances/ and their recorded optima (instances/manifest.json).

The optima were computed by brute force where the manifest says so; here every exact backend
re-solves each file and must reproduce the recorded verdict and energy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siftopt.backends.brute import count_assignments
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


@pytest.mark.parametrize(("method", "formulation"),
                         [("highs", "slots"), ("highs", "patterns"), ("cpsat", "slots"),
                          ("cpsat", "patterns"), ("brute", "auto")])
@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_recorded_optimum_is_reproduced(entry, method, formulation):
    inst = load_instance(FOLDER / entry["file"])
    assert inst.name == entry["name"]
    if method == "brute" and count_assignments(problem_data(inst)) > 200_000:
        pytest.skip("too large for brute force in the test suite")
    if (method, formulation) == ("cpsat", "slots") and inst.num_tokens > 16:
        pytest.skip("CP-SAT's slot model needs minutes at L = 128 (docs/performance.md)")
    result = solve_exact(inst, method, formulation=formulation)
    assert result.status == entry["status"], result.message
    if entry["status"] == "optimal":
        assert energies_equal(result.energy_j, entry["optimum_j"])
        assert evaluate(inst, result.actions).feasible
    else:
        assert result.message
