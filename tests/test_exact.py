"""Exact backends against brute-force enumeration on tiny random instances.

Brute force enumerates every action assignment (``siftopt.backends.brute``) and evaluates each
with numpy, independently of any MILP; the exact backends must reach the same optimum energy
(docs/model.md §3.4 tolerance) and the same verdict (optimal / infeasible).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from siftopt.backends.brute import count_assignments
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve_exact
from siftopt.io.profiles import load_profile
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.problem import problem_data

BRUTE_LIMIT = 60_000


def tiny_instance(seed: int, tokens: int, experts: int, k: int, nodes: int, pc: str,
                  budgets: str, max_cand: int | None, fading: str = "slow", gates: bool = False):
    return random_instance(seed, num_tokens=tokens, num_experts=experts, top_k=k,
                           num_nodes=nodes, power_control=pc, budgets=budgets,
                           max_candidates=max_cand, fading=fading, gates=gates)


tiny = st.builds(
    tiny_instance,
    seed=st.integers(0, 10**6), tokens=st.integers(1, 3), experts=st.integers(3, 6),
    k=st.integers(1, 3), nodes=st.integers(1, 3), pc=st.sampled_from(["fixed", "adaptive"]),
    budgets=st.sampled_from(["token", "mean", "both"]),
    max_cand=st.sampled_from([None, 0, 1, 2]), fading=st.sampled_from(["slow", "slow", "rayleigh"]),
    gates=st.booleans())


def _check_against_brute(inst, method: str, formulation: str = "auto") -> None:
    data = problem_data(inst)
    assume(count_assignments(data) <= BRUTE_LIMIT)  # counted by hypothesis, never silent
    truth = solve_exact(inst, "brute")
    got = solve_exact(inst, method, formulation=formulation)
    assert got.status == truth.status, (got.status, truth.status, got.message)
    if truth.status == "optimal":
        assert energies_equal(got.energy_j, truth.energy_j), (got.energy_j, truth.energy_j)
        again = evaluate(inst, got.actions)
        assert again.feasible and again.energy_j == got.energy_j
        assert got.dual_bound_j is not None
        assert got.dual_bound_j <= got.energy_j * (1 + 1e-9) + 1e-15
    else:
        assert got.actions is None and got.message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(inst=tiny)
def test_highs_equals_brute_force(inst):
    """The default (auto = patterns) and the Pyomo slot model, on fast fading too."""
    _check_against_brute(inst, "highs")
    _check_against_brute(inst, "highs", "slots")


def _tie_instance():
    """A decode instance whose only zero-energy solution has D exactly equal to ε."""
    inst = random_instance(11, num_tokens=1, num_experts=4, top_k=2, num_nodes=2,
                           max_candidates=0, latency_s=1.0)
    # every expert remote, so keeping costs energy; skipping slot 1 costs exactly w1·β1,
    # skipping slot 0 costs far more
    placement = np.array([1, 2, 1, 2])
    w = inst.topk_weights[0]
    i0, i1 = (int(i) for i in inst.topk_experts[0])
    beta = np.array(inst.beta)
    beta[i0], beta[i1] = 3.0, 0.7
    eps = float(w[1] * beta[i1])
    return inst.replace(placement=placement, beta=beta, eps_token=np.array([eps]),
                        eps_mean=None)


@pytest.mark.parametrize("method", ["highs", "brute"])
def test_ties_at_exactly_the_budget_are_feasible(method):
    inst = _tie_instance()
    result = solve_exact(inst, method)
    assert result.status == "optimal"
    d = result.evaluation.degradation[0]
    # the optimum skips the second slot: degradation exactly the budget
    assert d <= inst.eps_token[0] + 1e-9
    assert result.actions[0, 1] == -1


def test_infeasible_instance_says_why():
    inst = random_instance(4, num_tokens=2, eps_scale=0.3, budgets="token")
    inst = inst.replace(eps_token=np.zeros(2), max_candidates=0, latency_s=1e-7)
    for method in ("highs", "brute"):
        result = solve_exact(inst, method)
        assert result.status == "infeasible"
        assert "token" in result.message and "least possible degradation" in result.message


def test_capacity_infeasibility_is_explained():
    """Each token alone is fine, but the latency cap of the only useful node binds."""
    for seed in range(200):
        inst = random_instance(seed, num_tokens=3, num_nodes=2, budgets="token")
        if count_assignments(problem_data(inst)) > BRUTE_LIMIT:
            continue
        truth = solve_exact(inst, "brute")
        got = solve_exact(inst, "highs")
        if truth.status == "infeasible" and "caps" in got.message:
            assert got.status == "infeasible"
            return
    pytest.fail("no capacity-infeasible instance among 200 seeds")


def test_profile_with_gap_is_not_called_optimal_without_proof(tmp_path):
    path = tmp_path / "gap.toml"
    path.write_text("[highs]\nmip_rel_gap = 0.5\n")
    inst = random_instance(7, num_tokens=3)
    result = solve_exact(inst, "highs", profile=load_profile(str(path)))
    exact = solve_exact(inst, "highs")
    if result.status == "optimal":
        assert energies_equal(result.energy_j, exact.energy_j)
    else:
        assert result.status == "feasible"


def test_level_binary_regression_highs_equals_cpsat():
    """A generated Rayleigh prefill (L=64, non-convex tables, level binaries) on which HiGHS
    with a 1e-10 MIP feasibility tolerance proved a wrong optimum (0.0202 J vs 0.0195 J)."""
    from pathlib import Path

    from siftopt.io.instance_file import load_instance

    inst = load_instance(Path(__file__).parent / "data" /
                         "deepseek-v3-urban-L64-M4-rayleigh-adaptive-s1.json")
    slots = solve_exact(inst, "highs", formulation="slots")
    cpsat = solve_exact(inst, "cpsat")
    assert slots.status == cpsat.status == "optimal"
    assert energies_equal(slots.energy_j, cpsat.energy_j)
