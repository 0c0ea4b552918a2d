"""Models users can extend (siftopt.build_model / solve_model): the declared models reproduce
the exact optimum, and an added constraint changes it exactly as brute force says."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import siftopt
from siftopt.experiments.synthetic import random_instance
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.problem import problem_data

ROOT = Path(__file__).resolve().parents[1]
PREFILL = ROOT / "instances" / "prefill-adaptive-caps.json"


def _brute_with_node_ceiling(inst, node: int, ceiling: int) -> float | None:
    """Least evaluator energy over every decision whose load on ``node`` is ≤ ``ceiling``."""
    data = problem_data(inst)
    choices = [data.opt_target[list(data.slot_options(s))] for s in range(data.num_slots)]
    best = None
    for pick in itertools.product(*choices):
        ev = evaluate(inst, np.array(pick).reshape(inst.topk_experts.shape))
        if ev.feasible and ev.loads[node - 1] <= ceiling and (best is None
                                                               or ev.energy_j < best):
            best = ev.energy_j
    return best


def _ceiling(model, node: int, ceiling: int) -> None:
    if isinstance(model, pyo.ConcreteModel):
        if node in model.M:
            model.ceiling = pyo.Constraint(expr=model.n[node] <= ceiling)
    else:
        senders = [v for (_, m), v in model.u.items() if m == node]
        if senders:
            model.add(sum(senders) <= ceiling)


@pytest.mark.parametrize(("backend", "formulation"),
                         [("pyomo", "slots"), ("pyomo", "patterns"), ("cpsat", "slots")])
def test_declared_models_reproduce_the_optimum(backend, formulation) -> None:
    exact = siftopt.solve(PREFILL, "highs")
    got = siftopt.solve_model(siftopt.build_model(PREFILL, backend, formulation))
    assert got.status == siftopt.Status.OPTIMAL
    assert energies_equal(got.energy_j, exact.energy_j)


@pytest.mark.parametrize(("backend", "formulation"),
                         [("pyomo", "slots"), ("pyomo", "patterns"), ("cpsat", "slots")])
def test_a_ceiling_on_one_node_changes_the_optimum_in_every_model(backend, formulation) -> None:
    base = siftopt.solve(PREFILL, "highs")
    assert base.nodes_frame().set_index("node").loc[3, "tokens"] == 2
    model = siftopt.build_model(PREFILL, backend, formulation)
    _ceiling(model, 3, 1)
    got = siftopt.solve_model(model)
    assert got.status == siftopt.Status.OPTIMAL and got.feasible
    assert got.nodes_frame().set_index("node").loc[3, "tokens"] <= 1
    assert got.energy_j > base.energy_j * (1 + 1e-6)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), pc=st.sampled_from(["fixed", "adaptive"]),
       backend=st.sampled_from([("pyomo", "slots"), ("pyomo", "patterns"), ("cpsat", "slots")]))
def test_extended_models_equal_brute_force(seed, pc, backend) -> None:
    inst = random_instance(seed, num_tokens=3, num_experts=4, top_k=1, num_nodes=2,
                           power_control=pc, budgets="token", max_candidates=1)
    truth = _brute_with_node_ceiling(inst, node=1, ceiling=1)
    try:
        model = siftopt.build_model(inst, *backend)
    except siftopt.InputError:  # infeasible before any search (CP-SAT says so up front)
        assert truth is None
        return
    _ceiling(model, 1, 1)
    got = siftopt.solve_model(model)
    if truth is None:
        assert got.status == siftopt.Status.INFEASIBLE
    else:
        assert got.status == siftopt.Status.OPTIMAL and energies_equal(got.energy_j, truth)


def test_bad_choices_are_input_errors() -> None:
    with pytest.raises(siftopt.InputError, match="backend"):
        siftopt.build_model(PREFILL, backend="gurobi")
    with pytest.raises(siftopt.InputError, match="formulation"):
        siftopt.build_model(PREFILL, backend="cpsat", formulation="patterns")
    with pytest.raises(siftopt.InputError, match="not a model"):
        siftopt.solve_model(pyo.ConcreteModel())
