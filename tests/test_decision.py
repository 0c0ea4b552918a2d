"""Decisions (keep/replace/skip views of the targets array) and the user-policy interface."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siftopt import registry
from siftopt.errors import InputError
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve
from siftopt.model.decision import SKIP, Decision
from siftopt.model.problem import problem_data
from siftopt.policies.interface import PolicyInput, policy


def _inst(seed: int = 3):
    return random_instance(seed, num_tokens=3, num_experts=5, top_k=2, num_nodes=2,
                           power_control="fixed", budgets="token")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10_000), draw=st.integers(0, 2**32 - 1))
def test_actions_round_trip_through_targets(seed: int, draw: int) -> None:
    inst = _inst(seed)
    data = problem_data(inst)
    rng = np.random.default_rng(draw)
    # a random valid target per slot: keep, a candidate, or skip
    targets = np.empty(inst.topk_experts.shape, dtype=np.int64)
    for (t, k), expert in np.ndenumerate(inst.topk_experts):
        options = [int(expert), SKIP, *data.candidates[int(expert)].tolist()]
        targets[t, k] = options[rng.integers(len(options))]
    decision = Decision.from_targets(inst, targets)
    again = Decision.from_actions(inst, decision.action, decision.target)
    assert np.array_equal(again.targets, targets)
    assert set(decision.action.ravel()) <= {"keep", "replace", "skip"}
    kept = decision.action == "keep"
    assert np.array_equal(targets[kept], inst.topk_experts[kept])
    assert np.all(decision.target[decision.action != "replace"] == SKIP)


def test_frame_has_one_row_per_slot_with_nodes() -> None:
    inst = _inst()
    targets = np.array(inst.topk_experts)
    targets[0, 0] = SKIP
    frame = Decision.from_targets(inst, targets).to_frame()
    assert list(frame.columns) == ["token", "slot", "expert", "weight", "action", "target",
                                   "node"]
    assert len(frame) == inst.topk_experts.size
    assert frame.loc[0, "action"] == "skip" and frame["node"].isna().iloc[0]
    kept = frame[frame["action"] == "keep"]
    assert (kept["node"].to_numpy() == inst.placement[kept["expert"].to_numpy()]).all()


@pytest.mark.parametrize(("action", "target", "path"), [
    ([["keep", "jump"]] * 3, None, "action[0][1]"),
    ([["replace", "keep"]] * 3, None, "target[0][0]"),
    ([["keep", "keep"]] * 3, [[4, -1]] * 3, "target[0][0]"),
])
def test_bad_actions_name_the_entry(action, target, path) -> None:
    with pytest.raises(InputError) as err:
        Decision.from_actions(_inst(), np.array(action), None if target is None
                              else np.array(target))
    assert err.value.path == path


def test_targets_are_checked() -> None:
    inst = _inst()
    with pytest.raises(InputError, match="shape"):
        Decision.from_targets(inst, np.zeros((1, 1), dtype=int))
    with pytest.raises(InputError, match="expert id"):
        Decision.from_targets(inst, np.full(inst.topk_experts.shape, 99))


def test_a_registered_user_policy_runs_by_name_and_matches_the_builtin() -> None:
    name = "test-skip-remote"

    @policy(name)
    def skip_remote(view: PolicyInput):
        """Skip every slot served remotely."""
        remote = view.placement[view.topk_experts] >= 1
        return view.decision(np.where(remote, SKIP, view.topk_experts))

    assert registry.policy(name).summary == "Skip every slot served remotely."
    inst = random_instance(5, num_tokens=2, num_experts=4, top_k=2, num_nodes=2,
                           power_control="adaptive", budgets="token", eps_scale=50.0)
    result = solve(inst, name)
    assert result.energy_j == 0.0
    assert result.feasible == (result.evaluation.degradation <= inst.eps_token + 1e-9).all()
    view = PolicyInput(inst)
    assert len(view.energy_tables) == inst.num_nodes and view.caps[0] == inst.num_tokens


def test_a_policy_must_return_a_decision() -> None:
    @policy("test-returns-array")
    def bad(view: PolicyInput):
        return view.topk_experts

    with pytest.raises(InputError, match="not a siftopt.Decision"):
        solve(_inst(), "test-returns-array")
