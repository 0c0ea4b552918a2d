"""Exact backends at the tolerance edge of the accuracy budgets (MODEL.md v2 §3.4–3.5).

A decision is feasible iff the budget rule of ``siftopt.model.budgets`` accepts it
(``D − ε ≤ 1e-9`` per token, ``mean(D) − ε̄ ≤ 1e-9``). Budgets placed within ±2e-9 of some
decision's degradations make the rule, not a model's rows, decide: every backend ×
formulation × interface must reach brute force's verdict and energy, with a decision the
evaluator accepts — never ``optimal`` at a dearer decision because its own rows were
tighter, never a decision the evaluator rejects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from methods_under_test import SEARCH_BACKENDS, backend_id

from siftopt.backends.highs.direct_slots import solve_highs_slots
from siftopt.backends.options import ExactOptions
from siftopt.experiments.synthetic import random_document
from siftopt.facade import solve
from siftopt.io.instance_file import instance_from_document
from siftopt.io.profiles import load_profile
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data

#: Every exact backend but brute force: (method, formulation, interface).
BACKENDS = SEARCH_BACKENDS
#: Offsets of a budget from a decision's degradation: the rule's tolerance and either side.
EDGES = [-2e-9, -1.5e-9, -1.1e-9, -1e-9, -7e-10, -1e-10, 0.0, 1e-10, 7e-10, 1e-9, 2e-9]
offsets = st.one_of(st.sampled_from(EDGES), st.floats(-2e-9, 2e-9, allow_nan=False))

NODE = {"bandwidth_hz": 5e6, "gain_up_db": -100.0, "gain_down_db": -100.0, "power_up_w": 0.2,
        "power_down_w": 1.0, "compute_s_per_token": 0.0}


def assert_matches_brute_force(inst: Instance) -> None:
    """Every backend: brute force's status and energy, and an accepted decision."""
    truth = solve(inst, "brute")
    for method, formulation, interface in BACKENDS:
        got = solve(inst, method, formulation=formulation, interface=interface)
        where = (method, formulation, interface, got.message, got.details.get("fallback"))
        assert got.status == truth.status, (*where, got.status, truth.status)
        if truth.status == "optimal":
            assert energies_equal(got.energy_j, truth.energy_j), (*where, got.energy_j,
                                                                  truth.energy_j)
            again = evaluate(inst, got.actions)
            assert again.feasible, (*where, again.violations)
            assert got.dual_bound_j is not None
            assert got.dual_bound_j <= got.energy_j * (1 + 1e-9) + 1e-15
        else:
            assert got.actions is None


# ---- property: budgets at some decision's degradation ------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), tokens=st.integers(1, 3), experts=st.integers(2, 4),
       k=st.integers(1, 2), nodes=st.integers(1, 2), power=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]),
       max_candidates=st.sampled_from([None, 0, 1]), pick=st.integers(0, 2**32 - 1),
       token_offsets=st.lists(offsets, min_size=3, max_size=3), mean_offset=offsets)
def test_budgets_at_a_decision_degradation(seed: int, tokens: int, experts: int, k: int,
                                           nodes: int, power: str, budgets: str,
                                           max_candidates: int | None, pick: int,
                                           token_offsets: list[float],
                                           mean_offset: float) -> None:
    k = min(k, experts)
    doc = random_document(np.random.default_rng(seed), num_tokens=tokens, num_experts=experts,
                          top_k=k, num_nodes=nodes, power_control=power, budgets=budgets,
                          max_candidates=max_candidates)
    probe = instance_from_document(doc)
    degradation, mean = _some_decision(probe, np.random.default_rng(pick))
    accuracy: dict[str, Any] = {}
    if budgets in ("token", "both"):
        accuracy["eps_token"] = [max(0.0, float(d) + off)
                                 for d, off in zip(degradation, token_offsets, strict=False)]
    if budgets in ("mean", "both"):
        accuracy["eps_mean"] = max(0.0, mean + mean_offset)
    doc["accuracy"] = accuracy
    assert_matches_brute_force(instance_from_document(doc))


def _some_decision(inst: Instance, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Per-token and mean degradation (the evaluator's floats) of a random decision: each
    slot a random reachable action, local ones twice as likely (cheap decisions are the ones
    an optimum sits on)."""
    data = problem_data(inst)
    chosen = []
    for s in range(data.num_slots):
        options = [o for o in data.slot_options(s) if data.opt_reachable[o]]
        weight = np.array([2.0 if data.opt_node[o] <= 0 else 1.0 for o in options])
        chosen.append(rng.choice(options, p=weight / weight.sum()))
    actions = data.opt_target[np.array(chosen)].reshape(inst.topk_experts.shape)
    evaluation = evaluate(inst, actions)
    return evaluation.degradation, evaluation.mean_degradation


# ---- the measured regressions ------------------------------------------------------------------


def document(experts: list[list[int]], weights: list[list[float]], accuracy: dict[str, Any]
             ) -> dict[str, Any]:
    """Two experts with β = 0.5, both on the one remote node, not replaceable; fixed power."""
    return {
        "siftopt_version": 1, "name": "edge",
        "model": {"num_experts": 2, "top_k": len(experts[0]), "hidden_dim": 1024,
                  "bits_per_element": 16, "renormalize_topk": False},
        "placement": [1, 1], "bounds": {"beta": [0.5, 0.5], "delta": [[0.0, None], [None, 0.0]]},
        "nodes": [dict(NODE)],
        "channel": {"noise_psd_dbm_per_hz": -174.0, "fading": "slow"},
        "power_control": "fixed", "latency_s": 1.0, "accuracy": accuracy,
        "tokens": {"topk_experts": experts, "topk_weights": weights},
    }


@pytest.mark.parametrize(("method", "formulation", "interface"), BACKENDS, ids=backend_id)
def test_skipping_within_the_tolerance_costs_nothing(method: str, formulation: str,
                                                     interface: str) -> None:
    """L = 1, K = 1, β = 0.5, ε = 0.5 − 7e-10: skipping degrades by ε + 7e-10 ≤ ε + 1e-9,
    so it is feasible and the optimum is 0 J (the pattern and CP-SAT backends once returned
    ``optimal`` at the cost of sending the token)."""
    inst = instance_from_document(document([[0]], [[1.0]], {"eps_token": 0.5 - 7e-10}))
    result = solve(inst, method, formulation=formulation, interface=interface)
    assert result.status == "optimal"
    assert result.energy_j == 0.0
    assert result.actions.tolist() == [[-1]]
    assert evaluate(inst, result.actions).feasible


@pytest.mark.parametrize(("method", "formulation", "interface"), BACKENDS, ids=backend_id)
def test_mean_budget_within_the_tolerance(method: str, formulation: str, interface: str
                                          ) -> None:
    """Two tokens, only a mean budget ε̄ = 0.5 − 7e-10: skipping both gives mean 0.5, feasible
    at 0 J (the HiGHS slot model and CP-SAT once returned ``optimal`` at a dearer one)."""
    inst = instance_from_document(document([[0], [1]], [[1.0], [1.0]],
                                           {"eps_mean": 0.5 - 7e-10}))
    result = solve(inst, method, formulation=formulation, interface=interface)
    assert result.status == "optimal"
    assert result.energy_j == 0.0
    assert evaluate(inst, result.actions).feasible


@pytest.mark.parametrize("offset", EDGES)
@pytest.mark.parametrize("kind", ["token", "mean", "both"])
def test_hand_made_edges(kind: str, offset: float) -> None:
    """One or two tokens whose skip sits exactly at each edge offset."""
    if kind == "token":
        doc = document([[0]], [[1.0]], {"eps_token": 0.5 + offset})
    elif kind == "mean":
        doc = document([[0], [1]], [[1.0], [1.0]], {"eps_mean": 0.5 + offset})
    else:
        doc = document([[0], [1]], [[1.0], [0.7]], {"eps_token": [0.5 + offset, 0.35 + offset],
                                                    "eps_mean": 0.4 + offset})
    assert_matches_brute_force(instance_from_document(doc))


# ---- the budget-cut loop when its rounds run out -----------------------------------------------


def test_out_of_rounds_is_never_optimal() -> None:
    """ε = 0.5 − 2e-9: HiGHS's rows (and feasibility tolerance) let the skip through, the rule
    rejects it. With one round the slot model has no accepted decision: ``time_limit`` with a
    valid bound, or ``feasible`` with an accepted warm start; with the default rounds the
    optimum (sending the token)."""
    inst = instance_from_document(document([[0]], [[1.0]], {"eps_token": 0.5 - 2e-9}))
    data = problem_data(inst)
    profile = load_profile(None)
    truth = solve(inst, "brute")
    one_round = ExactOptions(max_cut_rounds=1)
    cut_short = solve_highs_slots(data, profile, time_limit_s=None, options=one_round)
    if cut_short.details.get("budget_cuts"):  # the first answer was rejected
        assert cut_short.status == "time_limit" and cut_short.actions is None
        assert cut_short.dual_bound_j is not None
        assert cut_short.dual_bound_j <= truth.energy_j * (1 + 1e-9)
        warm = solve_highs_slots(data, profile, time_limit_s=None, options=one_round,
                                 warm_start=truth.actions)
        assert warm.status == "feasible" and warm.actions.tolist() == truth.actions.tolist()
    full = solve_highs_slots(data, profile, time_limit_s=None)
    assert full.status == "optimal"
    assert energies_equal(evaluate(inst, full.actions).energy_j, truth.energy_j)
