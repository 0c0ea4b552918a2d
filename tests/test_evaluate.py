"""Evaluator invariants (docs/model.md §3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siftopt.errors import InputError
from siftopt.experiments.synthetic import random_instance
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.physics import energy_tables
from siftopt.model.problem import SKIP, keep_all, problem_data, skip_all

instances = st.builds(
    lambda seed, tokens, k, pc, budgets: random_instance(
        seed, num_tokens=tokens, top_k=k, power_control=pc, budgets=budgets),
    seed=st.integers(0, 100_000), tokens=st.integers(1, 6), k=st.integers(1, 3),
    pc=st.sampled_from(["fixed", "adaptive"]), budgets=st.sampled_from(["token", "mean", "both"]))


@settings(max_examples=60, deadline=None)
@given(inst=instances)
def test_keep_all_has_zero_degradation(inst):
    ev = evaluate(inst, keep_all(inst))
    assert np.all(ev.degradation == 0)
    assert all(v.kind == "latency" for v in ev.violations)


@settings(max_examples=60, deadline=None)
@given(inst=instances)
def test_skip_all_has_zero_energy_and_beta_degradation(inst):
    ev = evaluate(inst, skip_all(inst))
    assert ev.energy_j == 0 and np.all(ev.loads == 0)
    expected = (inst.topk_weights * inst.beta[inst.topk_experts]).sum(axis=1)
    assert np.allclose(ev.degradation, expected, rtol=1e-15, atol=0)


@settings(max_examples=80, deadline=None)
@given(inst=instances, data=st.data())
def test_random_actions_match_a_direct_computation(inst, data):
    pdata = problem_data(inst)
    choice = [data.draw(st.sampled_from(list(pdata.slot_options(s))))
              for s in range(pdata.num_slots)]
    actions = pdata.opt_target[choice].reshape(inst.topk_experts.shape)
    ev = evaluate(inst, actions)
    tables = energy_tables(inst)
    energy = 0.0
    for m in range(1, inst.num_nodes + 1):
        load = sum(any(a != SKIP and inst.placement[a] == m for a in actions[t])
                   for t in range(inst.num_tokens))
        assert ev.loads[m - 1] == load
        energy += tables[m - 1].energy(load)
    assert energies_equal(ev.energy_j, energy)
    for t in range(inst.num_tokens):
        d = 0.0
        for k, a in enumerate(actions[t]):
            i = inst.topk_experts[t, k]
            c = inst.beta[i] if a == SKIP else 0.0 if a == i else inst.delta[i, a]
            d += inst.topk_weights[t, k] * c
        assert d == pytest.approx(ev.degradation[t], rel=1e-12, abs=1e-15)
    feasible = all(ev.loads <= ev.caps)
    if inst.eps_token is not None:
        feasible &= bool(np.all(ev.degradation <= inst.eps_token + 1e-9))
    if inst.eps_mean is not None:
        feasible &= bool(ev.degradation.mean() <= inst.eps_mean + 1e-9)
    assert ev.feasible == feasible


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), pc=st.sampled_from(["fixed", "adaptive"]),
       draw=st.integers(0, 2**32 - 1))
def test_energy_is_monotone_in_sent_tokens(seed, pc, draw):
    """Under slow fading every table increases: keeping one more skipped slot never lowers a
    node's load or the energy, and raises the energy exactly when a load grows."""
    inst = random_instance(seed, num_tokens=4, power_control=pc, latency_s=1.0)
    rng = np.random.default_rng(draw)
    actions = np.where(rng.random(inst.topk_experts.shape) < 0.5, SKIP, inst.topk_experts)
    skipped = np.argwhere(actions == SKIP)
    if skipped.size == 0:
        actions[0, 0], skipped = SKIP, np.array([[0, 0]])
    t, k = skipped[rng.integers(len(skipped))]
    more = actions.copy()
    more[t, k] = inst.topk_experts[t, k]
    before, after = evaluate(inst, actions), evaluate(inst, more)
    assert np.all(after.loads >= before.loads)
    if np.array_equal(after.loads, before.loads):
        assert after.energy_j == before.energy_j
    else:
        assert after.energy_j > before.energy_j


def test_latency_violation_is_reported_with_amount():
    inst = random_instance(2, num_tokens=6, latency_s=1e-6)
    ev = evaluate(inst, keep_all(inst))
    lat = [v for v in ev.violations if v.kind == "latency"]
    assert lat and all(v.amount >= 1 for v in lat)
    assert not ev.feasible


def test_invalid_target_is_an_input_error():
    inst = random_instance(0, num_tokens=1, max_candidates=1)
    actions = keep_all(inst)
    i = int(inst.topk_experts[0, 0])
    cands = set(problem_data(inst).candidates[i].tolist())
    bad = next(j for j in range(inst.num_experts) if j != i and j not in cands)
    actions[0, 0] = bad
    with pytest.raises(InputError, match=r"tokens\[0\]\.actions\[0\]\.target"):
        evaluate(inst, actions)
    with pytest.raises(InputError, match="shape"):
        evaluate(inst, actions[:, :1])


def test_energies_equal_tolerance():
    assert energies_equal(1.0, 1.0 + 5e-7)
    assert not energies_equal(1.0, 1.0 + 2e-6)
    assert energies_equal(0.0, 1e-16)
