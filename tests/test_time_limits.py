"""Issue 14, goal 4 ("never no solution"): every exact backend stopped by a tiny time limit on
a non-trivial instance returns without raising, and either ``feasible`` with a decision the
evaluator accepts and a valid dual bound, or ``time_limit`` with a bound and no decision, or
(if it finishes) ``optimal`` with a gap of 0. The times themselves are not asserted (the
machine is shared); docs/performance.md, "Time limits (goal 4)", measures them.

Also the pieces: the policy incumbent bounded by a deadline, the completion of a
time-limited outcome (:func:`siftopt.backends.base.at_time_limit`), and a HiGHS MILP run in a
worker process (:mod:`siftopt.backends.highs.isolated`): the same answer as in process, the
worker reused, and killed at the deadline.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from methods_under_test import EXACT_BACKENDS, SEARCH_BACKENDS, backend_id

import siftopt
from siftopt.backends import base
from siftopt.backends.highs import common, isolated
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve_exact
from siftopt.model.problem import problem_data
from siftopt.result import FEASIBLE, TIME_LIMIT, BackendOutcome

# optimal energy of the Rayleigh row (docs/performance.md, "Frontier (issue 14)"; 6 digits)
OPTIMUM_J = 0.342772


@pytest.fixture(scope="module")
def rayleigh():
    # L = 256, M = 8, Rayleigh, fixed power: the restricted MILPs need ~18 s for an incumbent
    return siftopt.generate("qwen3-30b-a3b", seed=5, tokens=256, nodes=8, fading="rayleigh",
                            power_control="fixed")[0]


@pytest.fixture(scope="module")
def brute_sized():
    # 1.6 M assignments (under brute force's 2 M), a few seconds to enumerate; optimum > 0
    return random_instance(1, num_tokens=4, num_experts=6, top_k=2, num_nodes=3,
                           power_control="fixed", budgets="token", eps_scale=0.1)


def _check_contract(result, optimum_j: float | None) -> None:
    assert result.status in ("optimal", "feasible", "time_limit"), result.message
    assert result.dual_bound_j is not None and result.dual_bound_j >= 0.0
    if optimum_j is not None:
        assert result.dual_bound_j <= optimum_j * (1 + 1e-5)
    if result.status == "time_limit":
        assert result.evaluation is None
        return
    assert result.evaluation is not None and result.evaluation.feasible
    assert result.dual_bound_j <= result.energy_j * (1 + 1e-9)
    if result.status == "optimal":
        assert result.dual_bound_j >= result.energy_j * (1 - 1e-9)  # relative gap 0


@pytest.mark.parametrize("backend", SEARCH_BACKENDS, ids=backend_id)
def test_tiny_time_limit_gives_a_decision_and_a_bound(backend, rayleigh):
    method, formulation, interface = backend
    result = siftopt.solve(rayleigh, method, formulation=formulation, interface=interface,
                           time_limit=0.05)
    _check_contract(result, OPTIMUM_J)
    # sift-decode accepts this instance, so no backend may answer without a decision
    assert result.status in ("optimal", "feasible")


def test_brute_force_at_its_time_limit_keeps_its_best_assignment(brute_sized):
    assert ("brute", "auto", "auto") in EXACT_BACKENDS
    optimum = solve_exact(brute_sized, "highs")
    assert optimum.status == "optimal" and optimum.energy_j > 0
    result = solve_exact(brute_sized, "brute", time_limit_s=0.01)
    _check_contract(result, optimum.energy_j)
    assert result.status in ("optimal", "feasible")


def test_time_limit_without_a_decision_takes_the_policy_answer(rayleigh):
    data = problem_data(rayleigh)
    stopped = BackendOutcome(TIME_LIMIT, None, None, 0.0, 0.0, {})
    done = base.at_time_limit(stopped, data, time.perf_counter())  # no time left
    assert done.status == FEASIBLE and done.actions is not None
    assert done.dual_bound_j == 0.0  # the trivial bound, as no backend bound was given
    # at the deadline only sift-decode runs (no sift-price iteration fits)
    assert done.details["incumbent_policy"] == "sift-decode"
    assert siftopt.evaluate(rayleigh, done.actions).feasible


def test_a_cheaper_policy_answer_replaces_a_time_limited_decision(rayleigh):
    data = problem_data(rayleigh)
    decode = base.policy_incumbent(data, time.perf_counter())  # sift-decode only
    best = base.policy_incumbent(data)  # sift-price too: cheaper here
    assert decode is not None and best is not None and best[1] < decode[1]
    worse = BackendOutcome(FEASIBLE, decode[0], 0.3, 0.0, 0.0, {})
    done = base.at_time_limit(worse, data, None)
    assert done.status == FEASIBLE and done.details["incumbent_policy"] == "sift-price"
    assert np.array_equal(done.actions, best[0]) and done.dual_bound_j == 0.3
    as_good = BackendOutcome(FEASIBLE, best[0], 0.3, 0.0, 0.0, {"mine": True})
    kept = base.at_time_limit(as_good, data, None)
    assert kept.details == {"mine": True} and np.array_equal(kept.actions, best[0])


def test_time_limit_without_any_policy_answer_keeps_a_bound(rayleigh, monkeypatch):
    data = problem_data(rayleigh)
    monkeypatch.setattr(base, "policy_incumbent", lambda data, deadline: None)
    stopped = BackendOutcome(TIME_LIMIT, None, 0.25, 0.0, 0.0, {})
    done = base.at_time_limit(stopped, data, None)
    assert done.status == TIME_LIMIT and done.actions is None and done.dual_bound_j == 0.25
    bare = base.at_time_limit(BackendOutcome(TIME_LIMIT, None, None, 0.0, 0.0, {}), data, None)
    assert bare.status == TIME_LIMIT and bare.dual_bound_j == 0.0


def test_policy_incumbent_with_time_left_runs_the_price_iteration(rayleigh):
    data = problem_data(rayleigh)
    unbounded = base.policy_incumbent(data)
    with_time = base.policy_incumbent(data, time.perf_counter() + 60.0)
    at_deadline = base.policy_incumbent(data, time.perf_counter())
    assert unbounded is not None and with_time is not None and at_deadline is not None
    assert with_time[1] == pytest.approx(unbounded[1], rel=1e-12)
    assert at_deadline[2] == "sift-decode"
    assert unbounded[1] <= at_deadline[1]


def _small_milp(seed: int = 0):
    """A knapsack-like MILP (30 binaries, 3 rows) with a known optimum by HiGHS in process."""
    rng = np.random.default_rng(seed)
    n = 30
    highs = common._silent_highs()
    highs.setOptionValue("mip_rel_gap", 0.0)
    weights = rng.integers(1, 20, size=(3, n)).astype(float)
    cols = common.Columns.from_entries(
        -rng.integers(1, 30, size=n).astype(float), np.zeros(n), np.ones(n), np.ones(n, bool),
        np.tile(np.arange(n), 3), np.repeat(np.arange(3), n), weights.reshape(-1))
    common.pass_model(highs, cols, np.full(3, -common.INF), weights.sum(axis=1) / 3, mip=True)
    return highs


def test_milp_in_a_child_process_matches_the_run_in_process(monkeypatch):
    here = common.run_mip(_small_milp(), True, deadline=time.perf_counter() + 60)
    assert not here.isolated and here.status == "optimal"
    monkeypatch.setattr(common, "ISOLATE_COLUMNS", 1)
    start = np.zeros(30)  # a feasible start (take nothing)
    there = common.run_mip(_small_milp(), True, start=start, deadline=time.perf_counter() + 60)
    assert there.isolated and not there.killed
    assert there.status == "optimal"
    assert there.objective == pytest.approx(here.objective, abs=1e-9)
    assert np.allclose(there.values, here.values)
    # the worker process is reused
    pid = isolated._worker.pid
    again = common.run_mip(_small_milp(1), True, deadline=time.perf_counter() + 60)
    assert again.isolated and isolated._worker.pid == pid
    # without a deadline the run stays in process
    assert not common.run_mip(_small_milp(), True).isolated


def test_milp_child_is_killed_at_the_deadline(monkeypatch):
    monkeypatch.setattr(common, "ISOLATE_COLUMNS", 1)
    # a negative grace moves the kill before any answer can come back
    monkeypatch.setattr(isolated, "KILL_GRACE_S", -120.0)
    isolated.prestart()
    result = common.run_mip(_small_milp(), True, deadline=time.perf_counter() + 60.0)
    assert result.isolated and result.killed
    # what the worker reported before the kill, if anything (its start: take nothing)
    if result.values is None:
        assert result.status == TIME_LIMIT and result.objective is None
    else:
        assert result.status == FEASIBLE and result.objective <= 0.0
    assert isolated._worker is None  # killed; the next run starts a new worker
    monkeypatch.setattr(isolated, "KILL_GRACE_S", 2.0)
    after = common.run_mip(_small_milp(), True, deadline=time.perf_counter() + 60)
    assert after.isolated and not after.killed and after.status == "optimal"


def test_no_milp_run_past_the_deadline():
    result = common.run_mip(_small_milp(), True, start=np.zeros(30),
                            deadline=time.perf_counter() - 1.0)
    assert result.status == TIME_LIMIT and result.values is None and not result.isolated


def test_a_killed_worker_keeps_the_bound_and_solution_it_reported(monkeypatch):
    # HiGHS reports progress from its callbacks; a kill right after the run ends keeps it
    monkeypatch.setattr(common, "ISOLATE_COLUMNS", 1)
    reference = common.run_mip(_small_milp(), True)
    sent = []
    real = isolated._read_message

    def final_lost(fd, until):  # the final answer never arrives: as if HiGHS hung
        message = real(fd, time.perf_counter() + 30.0)
        if message is not None and message["kind"] == "final":
            return None
        sent.append(message)
        return message

    monkeypatch.setattr(isolated, "_read_message", final_lost)
    result = common.run_mip(_small_milp(), True, start=np.zeros(30),
                            deadline=time.perf_counter() + 60)
    assert result.isolated and result.killed and sent
    assert result.status == FEASIBLE
    assert result.objective == pytest.approx(reference.objective, abs=1e-9)
    assert result.bound is not None and result.bound <= result.objective + 1e-9


def test_a_reported_solution_must_fit_the_model():
    highs = _small_milp()
    model = isolated._model_arrays(highs)
    assert isolated._solution_fits(model, np.zeros(30))
    assert not isolated._solution_fits(model, np.ones(30))  # over the rows' capacity
    assert not isolated._solution_fits(model, np.full(30, 0.5))  # fractional
    assert not isolated._solution_fits(model, np.zeros(29))
