"""The method registry: one list of backends for the tests, capabilities, ``siftopt methods``."""

from __future__ import annotations

import json

import pytest
from methods_under_test import EXACT_BACKENDS, SEARCH_BACKENDS, backend_id

from siftopt import registry
from siftopt.cli import main
from siftopt.errors import InputError
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve
from siftopt.model.evaluate import energies_equal


def test_the_test_list_covers_the_registry_exactly() -> None:
    resolved = {registry.exact_backend(*b).name for b in EXACT_BACKENDS}
    assert resolved == {entry.name for entry in registry.exact_backends()}
    assert len(resolved) == len(EXACT_BACKENDS)


def test_auto_picks_the_documented_defaults() -> None:
    assert registry.exact_backend("highs").name == "highs/patterns/direct"
    assert registry.exact_backend("highs", "slots").name == "highs/slots/pyomo"
    assert registry.exact_backend("cpsat").name == "cpsat/patterns"


@pytest.mark.parametrize(("method", "formulation", "interface", "path"), [
    ("gurobi", "auto", "auto", "--method"),
    ("highs", "columns", "auto", "--formulation"),
    ("highs", "slots", "ampl", "--interface"),
    ("cpsat", "slots", "direct", "--interface"),
])
def test_unknown_choices_name_their_option(method, formulation, interface, path) -> None:
    with pytest.raises(InputError) as err:
        registry.exact_backend(method, formulation, interface)
    assert err.value.path == path


@pytest.mark.parametrize("backend", SEARCH_BACKENDS, ids=backend_id)
def test_every_backend_answers_through_the_facade_with_its_registry_name(backend) -> None:
    inst = random_instance(7, num_tokens=2, num_experts=4, top_k=2, num_nodes=2,
                           power_control="adaptive", budgets="both")
    truth = solve(inst, "brute")
    method, formulation, interface = backend
    got = solve(inst, method, formulation=formulation, interface=interface)
    assert got.backend == registry.exact_backend(*backend).name
    assert got.status == truth.status
    if truth.feasible:
        assert energies_equal(got.energy_j, truth.energy_j)


def test_policies_are_registered_once_with_their_limits() -> None:
    names = list(registry.policies())
    assert names[:5] == ["topk", "local", "sift-decode", "sift-ratio", "sift-price"]
    assert all(not registry.policy(n).capabilities.exact for n in names)
    with pytest.raises(ValueError):
        registry.register_policy("topk", summary="again")(lambda inst: None)


def test_methods_command_lists_every_method(capsys) -> None:
    assert main(["methods", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["name"] for r in rows}
    assert {e.name for e in registry.exact_backends()} <= names
    assert set(registry.policies()) <= names
    assert all(r["available"] for r in rows)  # every dependency is installed in the test env
    assert main(["methods"]) == 0
    assert "highs/patterns/direct" in capsys.readouterr().out
