"""The CP-SAT backend against brute force, and its integer scaling at the edges.

The scaling promises (siftopt/backends/cpsat/common.py): integer rows are relaxations of the
budget rule, so ties at exactly a budget are accepted, and the budget-cut loop rejects a
solution over the budget by more than the rule's 1e-9; energies are certified, and huge
scaled row sums (google/or-tools#5293 territory) do not change the answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from siftopt.backends.brute import count_assignments, solve_brute
from siftopt.backends.cpsat.common import INT32_MAX
from siftopt.backends.cpsat.slots import solve_cpsat
from siftopt.errors import InputError
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve_exact
from siftopt.io.instance_file import instance_from_document
from siftopt.io.profiles import Profile, load_profile
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import SKIP, problem_data

BRUTE_LIMIT = 200_000
NODE = {"bandwidth_hz": 5e6, "gain_up_db": -100.0, "gain_down_db": -100.0, "power_up_w": 0.2,
        "power_down_w": 1.0, "compute_s_per_token": 0.0}


def document(*, placement: list[int], beta: list[float], delta: list[list[float | None]],
             experts: list[list[int]], weights: list[list[float]], accuracy: dict[str, Any],
             num_nodes: int = 1, latency_s: float = 1.0) -> dict[str, Any]:
    """A hand-made instance document: fixed power, identical nodes, ample latency."""
    return {
        "siftopt_version": 1, "name": "hand",
        "model": {"num_experts": len(placement), "top_k": len(experts[0]), "hidden_dim": 1024,
                  "bits_per_element": 16, "renormalize_topk": False},
        "placement": placement, "bounds": {"beta": beta, "delta": delta},
        "nodes": [dict(NODE) for _ in range(num_nodes)],
        "channel": {"noise_psd_dbm_per_hz": -174.0, "fading": "slow"},
        "power_control": "fixed", "latency_s": latency_s, "accuracy": accuracy,
        "tokens": {"topk_experts": experts, "topk_weights": weights},
    }


def build(**kwargs: Any) -> Instance:
    return instance_from_document(document(**kwargs), file="<test>")


def assert_sound(inst: Instance, result: Any) -> None:
    """CP-SAT's actions re-evaluate to the reported energy, are feasible, and respect the bound."""
    assert result.actions is not None
    again = evaluate(inst, result.actions)
    assert again.feasible, again.violations
    assert energies_equal(again.energy_j, result.energy_j)
    if "incumbent_policy" not in result.details:  # a policy's answer at a time limit has none
        assert energies_equal(again.energy_j, result.details["energy_model_j"])
    assert result.dual_bound_j is not None
    assert result.dual_bound_j <= again.energy_j * (1 + 1e-12) + 1e-300


def assert_matches_brute(inst: Instance, profile: Profile | None = None) -> Any:
    brute = solve_exact(inst, "brute")
    cpsat = solve_exact(inst, "cpsat", formulation="slots", profile=profile)
    assert cpsat.status == brute.status, (cpsat.message, brute.message)
    if brute.status == "optimal":
        assert energies_equal(cpsat.energy_j, brute.energy_j), (cpsat.energy_j, brute.energy_j)
        assert_sound(inst, cpsat)
    else:
        assert cpsat.actions is None
    return cpsat


# --------------------------------------------------------------------------------------------
# Random tiny instances: equal to brute force
# --------------------------------------------------------------------------------------------

@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(seed=st.integers(0, 2**31), tokens=st.integers(1, 3), experts=st.integers(4, 6),
       k=st.integers(1, 3), nodes=st.integers(1, 3),
       power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]),
       max_candidates=st.sampled_from([None, 1, 2]),
       eps_scale=st.sampled_from([0.05, 0.3, 0.8]),
       fading=st.sampled_from(["slow", "slow", "slow", "rayleigh"]))
def test_equals_brute_force_on_tiny_instances(seed: int, tokens: int, experts: int, k: int,
                                              nodes: int, power: str, budgets: str,
                                              max_candidates: int | None, eps_scale: float,
                                              fading: str) -> None:
    inst = random_instance(seed, num_tokens=tokens, num_experts=experts, top_k=k,
                           num_nodes=nodes, power_control=power, budgets=budgets,
                           max_candidates=max_candidates, eps_scale=eps_scale, fading=fading)
    assume(count_assignments(problem_data(inst)) <= BRUTE_LIMIT)
    assert_matches_brute(inst)


def test_capacity_infeasibility_is_proved_by_the_solver() -> None:
    """Each token can meet its budget alone, but both need node 1, which carries one."""
    probe = build(placement=[1, 0], beta=[5.0, 5.0], delta=[[0.0, None], [None, 0.0]],
                  experts=[[0], [0]], weights=[[0.5], [0.5]], accuracy={"eps_token": 0.1})
    per_token = problem_data(probe).tables[0].seconds_per_token
    inst = build(placement=[1, 0], beta=[5.0, 5.0], delta=[[0.0, None], [None, 0.0]],
                 experts=[[0], [0]], weights=[[0.5], [0.5]], accuracy={"eps_token": 0.1},
                 latency_s=1.5 * per_token)
    assert problem_data(inst).caps[1] == 1
    result = assert_matches_brute(inst)
    assert result.status == "infeasible"
    assert result.details.get("cpsat_status") == "INFEASIBLE"


# --------------------------------------------------------------------------------------------
# Budgets at the edge: ties accepted, excess rejected
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight, delta", [(0.7, 0.5), (0.3, 0.1)])
def test_tie_at_exactly_the_token_budget_is_accepted(weight: float, delta: float) -> None:
    """The only zero-energy solution replaces remote expert 0 by local expert 1 with
    ``D = w·δ = ε`` exactly (0.3·0.1 is even a hair above 0.03 in floating point)."""
    eps = round(weight * delta, 10)
    inst = build(placement=[1, 0], beta=[10.0, 10.0], delta=[[0.0, delta], [delta, 0.0]],
                 experts=[[0]], weights=[[weight]], accuracy={"eps_token": eps})
    result = assert_matches_brute(inst)
    assert result.status == "optimal"
    assert result.energy_j == 0.0
    assert result.actions.tolist() == [[1]]
    assert abs(result.evaluation.degradation[0] - eps) < 1e-15


def test_excess_beyond_the_tolerance_is_rejected() -> None:
    """With ε = w·δ − 2e-9 the replacement is infeasible: the token must be sent."""
    inst = build(placement=[1, 0], beta=[10.0, 10.0], delta=[[0.0, 0.5], [0.5, 0.0]],
                 experts=[[0]], weights=[[0.7]], accuracy={"eps_token": 0.35 - 2e-9})
    result = assert_matches_brute(inst)
    assert result.actions.tolist() == [[0]]
    assert result.energy_j > 0


# --------------------------------------------------------------------------------------------
# Large scaled coefficients: many tokens, one mean budget
# --------------------------------------------------------------------------------------------

def mean_budget_instance(weights: np.ndarray, replaced: int) -> Instance:
    """Every token's only expert 0 lives on node 1; local expert 1 replaces it at cost w_t
    (skipping costs 5·w_t). ``ε̄`` is set so that replacing exactly the ``replaced``
    lightest tokens meets the mean budget with equality."""
    eps_mean = float(np.sort(weights)[:replaced].sum()) / weights.size
    return build(placement=[1, 0], beta=[5.0, 5.0], delta=[[0.0, 1.0], [1.0, 0.0]],
                 experts=[[0]] * weights.size, weights=[[float(w)] for w in weights],
                 accuracy={"eps_mean": eps_mean})


NO_LIMIT = Profile(name="no-inclusion-limit", time_limit_s=60.0, threads=1,
                   cpsat={"relative_gap_limit": 0.0})


@pytest.mark.parametrize("profile", [None, NO_LIMIT], ids=["default", "no-limit"])
def test_large_coefficients_match_brute_force(profile: Profile | None) -> None:
    rng = np.random.default_rng(5)
    weights = np.round(rng.uniform(0.2, 1.0, size=10), 6)
    inst = mean_budget_instance(weights, replaced=4)
    assert count_assignments(problem_data(inst)) <= BRUTE_LIMIT
    result = assert_matches_brute(inst, profile)
    assert result.details["max_row_sum"] > INT32_MAX
    assert result.details["presolve_inclusion_work_limit"] == 0
    assert result.details["presolve_inclusion_forced"] is (profile is NO_LIMIT)
    assert abs(result.evaluation.mean_degradation - inst.eps_mean) < 1e-12  # a tie


def test_large_coefficients_match_the_hand_optimum() -> None:
    """200 tokens: the optimum replaces the 60 lightest tokens (a tie with the mean budget)
    and sends the other 140; with fixed power E_1 is linear, so E = 140·E_1(1)."""
    rng = np.random.default_rng(11)
    weights = rng.permutation(np.round(np.linspace(0.2, 0.95, 200), 6))
    inst = mean_budget_instance(weights, replaced=60)
    result = solve_exact(inst, "cpsat", formulation="slots", profile=NO_LIMIT)
    assert result.status == "optimal"
    assert result.details["max_row_sum"] > INT32_MAX
    assert result.details["presolve_inclusion_forced"] is True
    table = problem_data(inst).tables[0]
    assert table.cap == 200
    assert energies_equal(result.energy_j, float(table.energy_j[140]))
    lightest = np.argsort(weights)[:60]
    assert sorted(np.flatnonzero(result.actions[:, 0] == 1)) == sorted(lightest)
    assert_sound(inst, result)


# --------------------------------------------------------------------------------------------
# Non-monotone energy tables: u must be exactly the OR of the options
# --------------------------------------------------------------------------------------------

def test_u_cannot_be_switched_on_for_free() -> None:
    """Node 1's table is cheaper at load 2 than at load 1 (as under fast fading). Token 1
    has an option on node 1 that it cannot afford, so the true optimum is E(1); a model
    that let ``u[1,1]`` be 1 without an option on node 1 would report E(2)."""
    inst = build(placement=[1, 0, 0, 0, 2], beta=[10.0] * 5,
                 delta=[[0.0, None, None, None, None], [None, 0.0, None, None, None],
                        [None, None, 0.0, None, None], [0.6, None, None, 0.0, None],
                        [None, None, 0.6, None, 0.0]],
                 experts=[[0, 1], [3, 4]], weights=[[0.5, 0.5], [0.5, 0.5]],
                 accuracy={"eps_token": 0.4}, num_nodes=2)
    data = problem_data(inst)
    node1, node2 = data.tables
    tables = (dataclasses.replace(node1, cap=2, energy_j=np.array([0.0, 10e-6, 5e-6]),
                                  convex=False),
              dataclasses.replace(node2, cap=0, energy_j=np.array([0.0])))
    data = dataclasses.replace(data, tables=tables, caps=np.array([2, 2, 0]))
    profile = load_profile(None)
    cpsat = solve_cpsat(data, profile, time_limit_s=30.0, warm_start=None)
    brute = solve_brute(data)
    assert cpsat.status == brute.status == "optimal"
    assert cpsat.actions.tolist() == [[0, 1], [3, 2]]
    assert cpsat.details["energy_model_j"] == pytest.approx(10e-6, rel=1e-12)
    assert brute.dual_bound_j == pytest.approx(10e-6, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Warm start and profiles
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_warm_start_does_not_change_the_optimum(seed: int) -> None:
    inst = random_instance(seed, num_tokens=4, num_experts=6, top_k=2, num_nodes=3,
                           power_control="adaptive", budgets="both", max_candidates=2,
                           eps_scale=0.5)
    plain = solve_exact(inst, "cpsat", formulation="slots")
    assert plain.status in ("optimal", "infeasible")
    hints = [np.full(inst.topk_experts.shape, SKIP), np.array(inst.topk_experts),
             np.full(inst.topk_experts.shape, 999)]
    if plain.actions is not None:
        hints.append(plain.actions)
    for hint in hints:  # hints never change the verdict or the optimum
        hinted = solve_exact(inst, "cpsat", formulation="slots", warm_start=hint)
        assert hinted.status == plain.status
        if plain.status == "optimal":
            assert energies_equal(hinted.energy_j, plain.energy_j)


BOTH_FORMULATIONS = pytest.mark.parametrize("formulation", ["slots", "patterns"])


@BOTH_FORMULATIONS
def test_warm_start_of_the_wrong_shape_is_rejected(formulation: str) -> None:
    inst = random_instance(0, num_tokens=2, top_k=2)
    with pytest.raises(InputError, match="warm start"):
        solve_exact(inst, "cpsat", formulation=formulation,
                    warm_start=np.zeros((3, 2), dtype=np.int64))


@BOTH_FORMULATIONS
def test_unknown_cpsat_parameter_is_an_input_error(formulation: str) -> None:
    """Also for one token, where the pattern model needs no search at all."""
    inst = random_instance(1, num_tokens=1)
    profile = dataclasses.replace(load_profile(None), cpsat={"no_such_parameter": 1})
    with pytest.raises(InputError, match="unknown CP-SAT parameter 'no_such_parameter'") as err:
        solve_exact(inst, "cpsat", formulation=formulation, profile=profile)
    assert err.value.path == "cpsat.no_such_parameter"


@BOTH_FORMULATIONS
def test_bad_parameter_values_are_input_errors_and_enums_go_by_name(formulation: str) -> None:
    inst = random_instance(1, num_tokens=1)
    base = load_profile(None)
    for bad in ({"num_workers": "two"}, {"search_branching": "NO_SUCH_SEARCH"}):
        with pytest.raises(InputError, match="cpsat"):
            solve_exact(inst, "cpsat", formulation=formulation,
                        profile=dataclasses.replace(base, cpsat=bad))
    ok = dataclasses.replace(base, cpsat={**base.cpsat, "search_branching": "FIXED_SEARCH"})
    result = solve_exact(inst, "cpsat", formulation=formulation, profile=ok)
    assert result.status in ("optimal", "infeasible")


def test_time_limit_reports_without_claiming_optimality() -> None:
    inst = random_instance(2, num_tokens=64, num_experts=64, top_k=6, num_nodes=8,
                           max_candidates=4, budgets="both")
    result = solve_exact(inst, "cpsat", formulation="slots", time_limit_s=0.05)
    assert result.status in ("time_limit", "feasible")
    if result.status == "feasible":
        assert_sound(inst, result)
    else:
        assert result.actions is None


def test_optimal_only_when_the_bound_certifies_the_energy() -> None:
    """A loose gap limit makes CP-SAT stop with OPTIMAL early; the backend says ``optimal``
    only if the real dual bound meets the real energy within the §3.4 tolerance."""
    inst = random_instance(1, num_tokens=16, num_experts=64, top_k=6, num_nodes=8,
                           max_candidates=4, power_control="adaptive", budgets="both")
    loose = dataclasses.replace(load_profile(None), cpsat={"relative_gap_limit": 0.5,
                                                           "presolve_inclusion_work_limit": 0})
    result = solve_exact(inst, "cpsat", formulation="slots", profile=loose)
    assert result.status in ("optimal", "feasible")
    assert_sound(inst, result)
    certified = energies_equal(result.energy_j, result.dual_bound_j)
    assert (result.status == "optimal") == certified
    if not certified:
        assert "gap limit" in result.message
