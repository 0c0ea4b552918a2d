"""The second certificate (cpsat/lagrange, siftopt/backends/cpsat/lagrange.py) against brute
force on tiny instances and against the HiGHS pattern master on medium ones.

It shares no code with the HiGHS master, so these tests compare two independent answers:
its own pattern enumeration against the pattern space of siftopt.formulations, its
Lagrangian bound against brute-force optima at arbitrary prices, its reduced-cost fixing
(forced through many thresholds, or none) against the optimum.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siftopt.backends.cpsat import lagrange
from siftopt.backends.cpsat.lagrange import solve_cpsat_lagrange
from siftopt.backends.cpsat.lagrange_bound import lagrangian
from siftopt.backends.cpsat.lagrange_patterns import enumerate_classes
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve
from siftopt.formulations.enumerate import enumerate_patterns
from siftopt.io.profiles import load_profile
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.problem import problem_data

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_same_answer(inst, got, truth) -> None:
    """Same status; for an optimum the same energy, feasible actions and a bound below."""
    assert got.status == truth.status, (got.status, truth.status, got.message)
    if truth.status != "optimal":
        return
    again = evaluate(inst, got.actions)
    assert again.feasible, again.violations
    assert energies_equal(again.energy_j, truth.energy_j), (again.energy_j, truth.energy_j)
    assert got.dual_bound_j is not None
    assert got.dual_bound_j <= again.energy_j * (1 + 1e-12) + 1e-300


@SETTINGS
@given(seed=st.integers(0, 2**31), tokens=st.integers(1, 3), nodes=st.integers(1, 3),
       top_k=st.integers(1, 2), power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]),
       max_candidates=st.sampled_from([None, 0, 1, 2]), eps_scale=st.sampled_from([0.1, 0.3, 1.0]),
       fading=st.sampled_from(["slow", "slow", "slow", "rayleigh"]))
def test_equals_brute_force_on_tiny_instances(seed, tokens, nodes, top_k, power, budgets,
                                              max_candidates, eps_scale, fading) -> None:
    inst = random_instance(seed, num_tokens=tokens, num_experts=5, top_k=top_k,
                           num_nodes=nodes, power_control=power, budgets=budgets,
                           max_candidates=max_candidates, eps_scale=eps_scale, fading=fading)
    truth = solve(inst, "brute")
    got = solve(inst, "cpsat", formulation="lagrange")
    assert got.backend == "cpsat/lagrange"
    assert_same_answer(inst, got, truth)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), tokens=st.sampled_from([16, 48]),
       nodes=st.sampled_from([4, 8]), power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]))
def test_agrees_with_the_highs_master_on_medium_instances(seed, tokens, nodes, power,
                                                          budgets) -> None:
    inst = random_instance(seed, num_tokens=tokens, num_experts=16, top_k=4, num_nodes=nodes,
                           power_control=power, budgets=budgets, max_candidates=3)
    truth = solve(inst, "highs")
    got = solve(inst, "cpsat", formulation="lagrange")
    assert truth.status in ("optimal", "infeasible")
    assert_same_answer(inst, got, truth)
    if truth.status == "optimal":
        assert got.solver_info.get("fallback") is None
        assert truth.energy_j >= got.solver_info["lagrangian_bound_j"] * (1 - 1e-9)


@pytest.mark.parametrize("power", ["fixed", "adaptive"])
@pytest.mark.parametrize("budgets", ["token", "mean", "both"])
def test_own_patterns_are_the_pattern_space(power, budgets) -> None:
    """The certificate enumerates patterns itself; they are exactly those of
    siftopt.formulations (same masks and the same floats D), token by token."""
    inst = random_instance(3, num_tokens=40, num_experts=16, top_k=4, num_nodes=8,
                           power_control=power, budgets=budgets, max_candidates=3)
    data = problem_data(inst)
    mine = enumerate_classes(data)
    theirs = enumerate_patterns(data)
    space = theirs.space
    for t in range(data.num_tokens):
        g, h = int(mine.token_class[t]), int(space.token_class[t])
        a = mine.start[g], mine.start[g + 1]
        ours = set(zip(mine.mask[a[0]:a[1]].tolist(), mine.deg[a[0]:a[1]].tolist(),
                       strict=True))
        keep = theirs.pattern_class == h
        other = set(zip(theirs.mask[keep].tolist(), theirs.degradation[keep].tolist(),
                        strict=True))
        assert ours == other, t


@SETTINGS
@given(seed=st.integers(0, 2**31), power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]), prices=st.integers(0, 2**31))
def test_the_lagrangian_bound_holds_at_any_prices(seed, power, budgets, prices) -> None:
    """LB(μ, ν) ≤ the brute-force optimum for random non-negative prices."""
    inst = random_instance(seed, num_tokens=3, num_experts=5, top_k=2, num_nodes=3,
                           power_control=power, budgets=budgets)
    truth = solve(inst, "brute")
    if truth.status != "optimal":
        return
    data = problem_data(inst)
    pats = enumerate_classes(data)
    scale = data.energy_scale_j()
    tables = [t.energy_j / scale for t in data.tables]
    rng = np.random.default_rng(prices)
    mu = rng.exponential(2.0, size=data.num_nodes) * rng.integers(0, 2, size=data.num_nodes)
    nu = float(rng.exponential(5.0)) if data.budgets.mean_binds else 0.0
    mean_cap = data.budgets.mean_row_upper() if data.budgets.mean_binds else 0.0
    bound = lagrangian(pats, tables, mu, nu, mean_cap)
    assert bound.value * scale <= truth.energy_j * (1 + 1e-12) + 1e-300
    assert np.all(bound.rc >= 0)


@pytest.mark.parametrize("first_tau", [(0.0, 1e-12), (1e9, 1e9)])
@pytest.mark.parametrize("power", ["fixed", "adaptive"])
def test_any_first_threshold_gives_the_optimum(monkeypatch, first_tau, power) -> None:
    """A first threshold that fixes nearly everything (so CP-SAT must run again with a
    larger one) or nothing (the whole model) ends at the same optimum as HiGHS."""
    monkeypatch.setattr(lagrange, "FIRST_TAU", first_tau)
    inst = random_instance(11, num_tokens=24, num_experts=12, top_k=3, num_nodes=4,
                           power_control=power, budgets="both", max_candidates=3)
    truth = solve(inst, "highs")
    got = solve(inst, "cpsat", formulation="lagrange")
    assert_same_answer(inst, got, truth)


def test_warm_start_and_fallback() -> None:
    """A policy's decision as warm start changes nothing; fast fading goes to the slot
    model and says so."""
    inst = random_instance(5, num_tokens=12, num_experts=8, top_k=2, num_nodes=3,
                           power_control="adaptive", budgets="both")
    truth = solve(inst, "highs")
    got = solve(inst, "cpsat", formulation="lagrange", warm_start=["sift-price"])
    assert_same_answer(inst, got, truth)
    fast = random_instance(5, num_tokens=3, num_experts=5, top_k=2, num_nodes=2,
                           fading="rayleigh", budgets="token")
    data = problem_data(fast)
    if all(np.all(np.diff(t.energy_j) >= 0) for t in data.tables):
        return  # no decreasing table drawn: nothing to fall back from
    out = solve_cpsat_lagrange(data, load_profile(None), time_limit_s=30)
    assert "slot formulation" in out.details["fallback"]


# ---- fast fading (Rayleigh): tables concave, S-shaped or decreasing ------------------------


def _monotone(data) -> bool:
    return all(bool(np.all(np.diff(t.energy_j) >= 0)) for t in data.tables)


@SETTINGS
@given(seed=st.integers(0, 2**31), tokens=st.integers(1, 4), nodes=st.integers(1, 3),
       top_k=st.integers(1, 2), power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]),
       eps_scale=st.sampled_from([0.1, 0.3, 1.0]))
def test_rayleigh_equals_brute_force(seed, tokens, nodes, top_k, power, budgets,
                                     eps_scale) -> None:
    """Rayleigh tables (concave at low loads in both power modes) through the greedy cuts
    and the per-class prices; decreasing tables still go to the slot model."""
    inst = random_instance(seed, num_tokens=tokens, num_experts=5, top_k=top_k,
                           num_nodes=nodes, power_control=power, budgets=budgets,
                           eps_scale=eps_scale, fading="rayleigh")
    truth = solve(inst, "brute")
    got = solve(inst, "cpsat", formulation="lagrange")
    assert_same_answer(inst, got, truth)
    if _monotone(problem_data(inst)) and got.status == "optimal":
        assert got.solver_info.get("fallback") is None


@SETTINGS
@given(seed=st.integers(0, 2**31), power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]), prices=st.integers(0, 2**31),
       fading=st.sampled_from(["slow", "rayleigh"]))
def test_the_bound_holds_at_any_class_prices(seed, power, budgets, prices, fading) -> None:
    """LB(d, ν) ≤ the brute-force optimum for random per-class node prices d (the node term
    min_k E(k) − top_k(d) is exact for any table, convex or not)."""
    inst = random_instance(seed, num_tokens=4, num_experts=5, top_k=2, num_nodes=3,
                           power_control=power, budgets=budgets, fading=fading)
    data = problem_data(inst)
    if not _monotone(data):
        return  # the pattern set assumes non-decreasing tables
    truth = solve(inst, "brute")
    if truth.status != "optimal":
        return
    pats = enumerate_classes(data)
    scale = data.energy_scale_j()
    tables = [t.energy_j / scale for t in data.tables]
    rng = np.random.default_rng(prices)
    per_token = max(float(t[-1]) / max(t.size - 1, 1) for t in tables)
    d = rng.exponential(per_token * rng.choice([0.5, 2.0, 8.0]),
                        size=(pats.num_classes, data.num_nodes))
    d *= rng.integers(0, 2, size=d.shape)
    nu = float(rng.exponential(5.0)) if data.budgets.mean_binds else 0.0
    mean_cap = data.budgets.mean_row_upper() if data.budgets.mean_binds else 0.0
    bound = lagrangian(pats, tables, d, nu, mean_cap)
    assert bound.value * scale <= truth.energy_j * (1 + 1e-12) + 1e-300
    assert np.all(bound.rc >= 0)


def test_greedy_points_are_below_the_concave_part() -> None:
    """Every greedy point y of B's base polytope has y(S) ≤ B(|S|) for every token set S
    (checked over all subsets of 7 tokens in 3 classes), and E = A + B."""
    from itertools import combinations

    from siftopt.backends.cpsat.lagrange_bound import greedy_point, split_tables

    table = np.array([0.0, 5.0, 8.0, 10.0, 11.5, 13.5, 16.5, 20.0])  # concave, then convex
    split = split_tables([table], 7)
    step = split.steps[0]
    assert step is not None and np.all(np.diff(step) <= 0)
    b = np.concatenate([[0.0], np.cumsum(step)])
    assert np.allclose(split.convex[0] + b[: table.size], table)
    assert np.all(np.diff(split.convex[0], 2) >= -1e-12)
    count = np.array([3, 2, 2])
    token_class = np.repeat(np.arange(3), count)
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        y = greedy_point(b, count, np.array(order))
        for k in range(8):
            for subset in combinations(range(7), k):
                assert y[token_class[list(subset)]].sum() <= b[k] + 1e-12


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), tokens=st.sampled_from([12, 24]),
       power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "both"]))
def test_rayleigh_agrees_with_the_level_binary_slot_model(seed, tokens, power,
                                                          budgets) -> None:
    """Medium Rayleigh instances: the same optimum as HiGHS's slot MILP (level binaries for
    tables that are not convex)."""
    inst = random_instance(seed, num_tokens=tokens, num_experts=12, top_k=3, num_nodes=4,
                           power_control=power, budgets=budgets, max_candidates=3,
                           fading="rayleigh")
    truth = solve(inst, "highs", formulation="slots", time_limit_s=120)
    if truth.status not in ("optimal", "infeasible"):
        return
    got = solve(inst, "cpsat", formulation="lagrange", time_limit_s=120)
    assert_same_answer(inst, got, truth)
