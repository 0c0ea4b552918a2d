"""Property tests of ``sift-prefill`` and of the statements of docs/policies.md §6.

* Lemma 6.1 (weak duality): ``g(p, ν)`` at any ``p, ν ≥ 0`` is at most the optimum — checked
  at random points against brute force;
* Theorem 6.2 (validity): every bound the policy reports is at most the optimum — brute force
  on tiny instances, HiGHS on larger ones;
* Theorem 6.2 (certificate): an answer the policy certifies is optimal;
* Corollary 6.3 (no duality gap): one token, and linear tables with per-token budgets and
  caps that do not bind — the certificate closes;
* the contract: a run that claims feasibility gives a decision the evaluator accepts, with
  the energy it reports; it is never feasible on an infeasible instance;
* the status rule proposed for ``solve_policy`` (bound within the equality of docs/model.md
  §3.4 → ``optimal``).

Energies are compared with the tolerance of docs/model.md §3.4.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siftopt.experiments.synthetic import random_document
from siftopt.facade import solve_exact
from siftopt.formulations.enumerate import enumerate_patterns
from siftopt.formulations.space import PatternLimitError, pattern_space
from siftopt.io.instance_file import instance_from_document
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data
from siftopt.policies import prefill
from siftopt.policies.common import PolicyAnswer, policy_targets
from siftopt.policies.prefill import lagrangian_bound, sift_prefill, sift_prefill_run
from siftopt.policies.prefill_loads import LoadDP, load_dp
from siftopt.policies.prefill_primal import Pool
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, SolveResult

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
FEW = settings(max_examples=12, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow])

Edit = Callable[[dict[str, Any], np.random.Generator], None]


def build(seed: int, *, tokens: int, experts: int, k: int, nodes: int, pc: str = "adaptive",
          fading: str = "slow", budgets: str = "both", max_cand: int | None = 2,
          eps_scale: float = 0.3, latency_factor: float = 1.0, edit: Edit | None = None
          ) -> Instance:
    """A random instance; ``latency_factor`` scales the latency budget (caps)."""
    rng = np.random.default_rng(seed)
    doc = random_document(rng, num_tokens=tokens, num_experts=experts, top_k=k,
                          num_nodes=nodes, power_control=pc, fading=fading, budgets=budgets,
                          max_candidates=max_cand, eps_scale=eps_scale)
    doc["latency_s"] = float(doc["latency_s"] * latency_factor)
    if edit is not None:
        edit(doc, rng)
    return instance_from_document(doc, file=f"<seed {seed}>")


def at_most(bound: float | None, optimum: float) -> bool:
    """``bound ≤ optimum`` up to the equality of docs/model.md §3.4."""
    return bound is None or bound <= optimum or energies_equal(bound, optimum)


tiny = st.builds(
    lambda seed, tokens, k, nodes, pc, fading, budgets, eps, lat: build(
        seed, tokens=tokens, experts=5, k=k, nodes=nodes, pc=pc, fading=fading,
        budgets=budgets, eps_scale=eps, latency_factor=lat),
    seed=st.integers(0, 10**6), tokens=st.integers(1, 3), k=st.integers(1, 2),
    nodes=st.integers(1, 3), pc=st.sampled_from(["fixed", "adaptive"]),
    fading=st.sampled_from(["slow", "slow", "rayleigh"]),
    budgets=st.sampled_from(["token", "mean", "both"]), eps=st.sampled_from([0.05, 0.3, 1.0]),
    lat=st.sampled_from([0.4, 1.0, 3.0]))


# --------------------------------------------------------------------------------------------
# Lemma 6.1 and Theorem 6.2: every bound is at most the optimum
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(inst=tiny, scale=st.floats(0.0, 4.0), nu=st.floats(0.0, 1e3), data=st.data())
def test_lemma_lagrangian_value_is_a_lower_bound(inst: Instance, scale: float, nu: float,
                                                 data: st.DataObject) -> None:
    """g(p, ν) ≤ OPT at random prices around E_m(1) and random ν (brute force)."""
    tables = problem_data(inst).tables
    unit = np.array([t.energy_j[1] if t.cap >= 1 else 0.0 for t in tables])
    factors = data.draw(st.lists(st.floats(0.0, 3.0), min_size=unit.size,
                                 max_size=unit.size))
    prices = unit * scale * np.asarray(factors)
    value = lagrangian_bound(inst, prices, nu * float(unit.max(initial=0.0)))
    truth = solve_exact(inst, "brute")
    if truth.status == INFEASIBLE:
        return
    assert truth.status == OPTIMAL
    assert at_most(value, truth.energy_j), (value, truth.energy_j)


@SETTINGS
@given(inst=tiny)
def test_theorem_bound_and_certificate_against_brute_force(inst: Instance) -> None:
    """Every reported bound is at most the optimum; a certified answer is optimal; a run
    claiming feasibility is accepted by the evaluator with the energy it reports."""
    run = sift_prefill_run(inst)
    ev = evaluate(inst, run.answer.targets)
    truth = solve_exact(inst, "brute")
    if run.feasible:
        assert ev.feasible, [v.message for v in ev.violations]
        assert energies_equal(ev.energy_j, run.energy_j)
    if truth.status == INFEASIBLE:
        assert not ev.feasible
        return
    assert truth.status == OPTIMAL
    assert at_most(run.dual_bound_j, truth.energy_j), (run.dual_bound_j, truth.energy_j)
    if ev.feasible:
        assert ev.energy_j >= truth.energy_j or energies_equal(ev.energy_j, truth.energy_j)
    if run.certified:
        assert ev.feasible and energies_equal(ev.energy_j, truth.energy_j)


medium = st.builds(
    lambda seed, tokens, nodes, pc, fading, budgets, eps, lat: build(
        seed, tokens=tokens, experts=10, k=3, nodes=nodes, pc=pc, fading=fading,
        budgets=budgets, max_cand=3, eps_scale=eps, latency_factor=lat),
    seed=st.integers(0, 10**6), tokens=st.integers(8, 40), nodes=st.integers(3, 6),
    pc=st.sampled_from(["fixed", "adaptive"]), fading=st.sampled_from(["slow", "rayleigh"]),
    budgets=st.sampled_from(["token", "mean", "both"]), eps=st.sampled_from([0.1, 0.3]),
    lat=st.sampled_from([0.5, 1.0]))


@FEW
@given(inst=medium)
def test_theorem_bound_against_highs(inst: Instance) -> None:
    """On larger instances the bound stays below HiGHS's proved optimum, and a certified
    answer matches it."""
    run = sift_prefill_run(inst)
    truth = solve_exact(inst, "highs")
    ev = evaluate(inst, run.answer.targets)
    if run.feasible:
        assert ev.feasible
    if truth.status == INFEASIBLE:
        assert not ev.feasible
        return
    assert truth.status == OPTIMAL
    assert at_most(run.dual_bound_j, truth.energy_j), (run.dual_bound_j, truth.energy_j)
    if run.certified:
        assert energies_equal(ev.energy_j, truth.energy_j)


def test_large_batch_with_sample_and_pricing_rounds() -> None:
    """A batch past the complete-pool size runs the sampled start and exact pricing rounds;
    its bound is below HiGHS's optimum and its answer is feasible."""
    inst = build(11, tokens=320, experts=24, k=4, nodes=10, max_cand=4, eps_scale=0.2)
    run = sift_prefill_run(inst)
    assert run.rounds >= 1 and run.sample_rounds >= 1
    truth = solve_exact(inst, "highs")
    assert truth.status == OPTIMAL
    assert run.feasible and evaluate(inst, run.answer.targets).feasible
    assert at_most(run.dual_bound_j, truth.energy_j)
    assert run.energy_j <= truth.energy_j * 1.02


def test_no_maximisation_starts_warmer_than_the_loops_cold_start() -> None:
    """Within the sample and within the batch loop, every maximisation starts at a τ at
    most the loop's first cold-start τ (a pricing that moves a dual whose prices sat at the
    box by 1e8 does not restart the smoothing at 1e7)."""
    from siftopt.policies import prefill

    inst = build(11, tokens=320, experts=24, k=4, nodes=10, max_cand=4, eps_scale=0.2)
    seen: list[tuple[int, float, float]] = []
    original_tau, original_max = prefill._tau, prefill.maximise

    def spy_tau(dual: Any, y: np.ndarray, relative: float, change: float = 0.0,
                **kwargs: Any) -> float:
        if relative == prefill.COLD_START and change == 0.0:
            seen.append((dual.counts.size, -1.0, original_tau(dual, y, relative)))
        return original_tau(dual, y, relative, change, **kwargs)

    def spy_max(dual: Any, y0: np.ndarray, upper: np.ndarray, tau0: float,
                *args: Any, **kwargs: Any) -> Any:
        seen.append((dual.counts.size, tau0, 0.0))
        return original_max(dual, y0, upper, tau0, *args, **kwargs)

    prefill._tau, prefill.maximise = spy_tau, spy_max
    try:
        run = sift_prefill_run(inst)
    finally:
        prefill._tau, prefill.maximise = original_tau, original_max
    assert run.sample_rounds >= 2
    ceilings: dict[int, float] = {}
    for size, tau0, cold in seen:
        if tau0 < 0:
            ceilings.setdefault(size, cold)
        else:
            assert tau0 <= ceilings[size] * (1 + 1e-12)
    assert len(ceilings) == 2  # the sample's loop and the batch's


def test_batch_rounds_near_the_final_accuracy_go_to_it() -> None:
    """A batch round whose adapted accuracy is within POLISH_WITHIN of the final one
    maximises to the final accuracy (no separate polish follows it; on 13f9dda this
    instance ran a round to 5e-8, then a polish to 1e-8 and one more pricing)."""
    from siftopt.policies import prefill, prefill_newton

    inst = build(12, tokens=320, experts=24, k=4, nodes=10, max_cand=4, eps_scale=0.2)
    rtols: list[float] = []
    original = prefill.maximise

    def spy(dual: Any, y0: np.ndarray, upper: np.ndarray, tau0: float, rtol: float,
            *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("budget") is None:
            rtols.append(rtol)
        return original(dual, y0, upper, tau0, rtol, *args, **kwargs)

    prefill.maximise = spy
    try:
        sift_prefill_run(inst)
    finally:
        prefill.maximise = original
    assert prefill.POLISH_WITHIN is not None
    final = prefill_newton.DUAL_RTOL
    assert rtols and rtols[-1] == final
    assert not any(final < r <= prefill.POLISH_WITHIN * final for r in rtols)


# --------------------------------------------------------------------------------------------
# Corollary 6.3: when the certificate closes
# --------------------------------------------------------------------------------------------

@SETTINGS
@given(seed=st.integers(0, 10**6), experts=st.integers(3, 7), k=st.integers(1, 3),
       nodes=st.integers(1, 4), pc=st.sampled_from(["fixed", "adaptive"]),
       fading=st.sampled_from(["slow", "rayleigh"]),
       budgets=st.sampled_from(["token", "mean", "both"]))
def test_corollary_one_token_is_certified(seed: int, experts: int, k: int, nodes: int, pc: str,
                                          fading: str, budgets: str) -> None:
    """L = 1: the relaxation has no gap, so every feasible instance is certified optimal."""
    inst = build(seed, tokens=1, experts=experts, k=min(k, experts), nodes=nodes, pc=pc,
                 fading=fading, budgets=budgets, max_cand=None)
    run = sift_prefill_run(inst)
    truth = solve_exact(inst, "brute")
    if truth.status == INFEASIBLE:
        assert not run.feasible
        return
    assert run.certified, (run.energy_j, run.dual_bound_j, truth.energy_j)
    assert energies_equal(run.energy_j, truth.energy_j)


def per_token_only(doc: dict[str, Any], rng: np.random.Generator) -> None:
    eps = doc["accuracy"].get("eps_token", doc["accuracy"].get("eps_mean"))
    n = len(doc["tokens"]["topk_experts"])
    eps = float(np.mean(eps)) if isinstance(eps, list) else float(eps)
    doc["accuracy"] = {"eps_token": [eps * float(rng.uniform(0.3, 1.5)) for _ in range(n)]}
    doc["latency_s"] = 10.0  # every node can carry the whole batch


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(2, 3), nodes=st.integers(1, 3))
def test_corollary_linear_tables_per_token_budgets_are_certified(seed: int, tokens: int,
                                                                 nodes: int) -> None:
    """Fixed power (linear tables), per-token budgets, caps that do not bind: (P) separates
    by token, the dual closes, and the answer is certified optimal."""
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc="fixed",
                 edit=per_token_only)
    run = sift_prefill_run(inst)
    truth = solve_exact(inst, "brute")
    if truth.status == INFEASIBLE:
        assert not run.feasible
        return
    assert run.certified and energies_equal(run.energy_j, truth.energy_j)


# --------------------------------------------------------------------------------------------
# The answer type and the status rule proposed for solve_policy
# --------------------------------------------------------------------------------------------

def solve_policy_with_bound(inst: Instance, policy: Callable[[Instance], Any]) -> SolveResult:
    """``solve_policy`` with the proposed change: a PolicyAnswer's bound becomes the
    result's ``dual_bound_j`` and makes the status ``optimal`` when it meets the energy."""
    answer = policy(inst)
    evaluation = evaluate(inst, policy_targets(answer))
    bound = getattr(answer, "dual_bound_j", None)
    status = FEASIBLE if evaluation.feasible else INFEASIBLE
    if (evaluation.feasible and bound is not None
            and evaluation.energy_j - bound <= 1e-6 * evaluation.energy_j + 1e-15):
        status = OPTIMAL
    return SolveResult(method="sift-prefill", status=status, evaluation=evaluation,
                       dual_bound_j=bound, build_time_s=0.0, solve_time_s=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_policy_answer_feeds_the_status_rule(seed: int) -> None:
    inst = build(seed, tokens=2, experts=5, k=2, nodes=2, pc="fixed", edit=per_token_only)
    answer = sift_prefill(inst)
    assert isinstance(answer, PolicyAnswer)
    assert np.array_equal(np.asarray(answer), answer.targets)
    assert answer.shape == inst.topk_experts.shape
    result = solve_policy_with_bound(inst, sift_prefill)
    truth = solve_exact(inst, "brute")
    if truth.status == INFEASIBLE:
        assert result.status == INFEASIBLE
        return
    assert result.status == OPTIMAL and energies_equal(result.energy_j, truth.energy_j)
    assert result.gap == 0.0 or result.gap <= 1e-6


# --------------------------------------------------------------------------------------------
# Theorem 6.4: the exact search over node loads of small batches
# --------------------------------------------------------------------------------------------

def load_search(inst: Instance, upper_j: float = np.inf, price_scale: float | None = None,
                nu_scale: float = 0.0) -> tuple[LoadDP, Any]:
    """``load_dp`` on the complete pool of ``inst`` (every kept pattern), as the policy runs
    it, at prices ``price_scale·E_m(1)`` and ``ν = nu_scale·max E_m(1)`` (None: no prices);
    returns its result and the policy's model (pool, tables, unit)."""
    data = problem_data(inst)
    model = prefill._Model(data, pattern_space(data))
    every = enumerate_patterns(model.space)
    model.pool.add(every.pattern_class, every.mask, every.degradation)
    cls, _, deg, inc, start = model.pool.arrays
    pool = Pool(cls=cls, inc=inc, deg=deg, start=start)
    limit = prefill._mean_limit(data)
    unit = np.array([t[1] if t.size > 1 else 0.0 for t in model.nodes.tables])
    prices = None if price_scale is None else unit * price_scale
    found = load_dp(pool, model.nodes.tables, model.space.token_class,
                    np.inf if limit is None else limit,
                    np.inf if model.mean_rhs is None else model.mean_rhs,
                    upper_j / model.unit, prices, nu_scale * float(unit.max(initial=0.0)))
    assert found is not None  # tiny instances stay within the work limits
    return found, model


@SETTINGS
@given(inst=tiny, slack=st.sampled_from([None, 1.000001, 1.3]),
       price_scale=st.sampled_from([None, 0.0, 0.5, 1.0, 3.0]),
       nu_scale=st.sampled_from([0.0, 1.0, 30.0]))
def test_theorem_load_search_bound_and_answer(inst: Instance, slack: float | None,
                                              price_scale: float | None,
                                              nu_scale: float) -> None:
    """Theorem 6.4: the load search's bound is at most the optimum (with or without a known
    energy, at any prices of its completion bound), and with non-decreasing tables its
    answer is accepted by the evaluator and optimal (brute force)."""
    truth = solve_exact(inst, "brute")
    if truth.status == INFEASIBLE:
        return
    try:
        upper = np.inf if slack is None else truth.energy_j * slack
        found, model = load_search(inst, upper, price_scale, nu_scale)
    except PatternLimitError:
        return
    assert truth.status == OPTIMAL
    bound_j = found.bound * model.unit
    assert at_most(bound_j, truth.energy_j), (bound_j, truth.energy_j)
    monotone = all(np.all(np.diff(t.energy_j[: t.cap + 1]) >= 0) for t in model.data.tables)
    if not monotone:
        return
    assert found.pattern is not None
    _, mask, _, _, _ = model.pool.arrays
    targets = prefill._targets(model.space, mask[found.pattern])
    ev = evaluate(inst, targets)
    assert ev.feasible, [v.message for v in ev.violations]
    assert energies_equal(ev.energy_j, truth.energy_j), (ev.energy_j, truth.energy_j)
    assert energies_equal(prefill._energy(model, found.loads), ev.energy_j)


small_batch = st.builds(
    lambda seed, tokens, nodes, pc, fading, budgets, eps, lat: build(
        seed, tokens=tokens, experts=8, k=2, nodes=nodes, pc=pc, fading=fading,
        budgets=budgets, max_cand=2, eps_scale=eps, latency_factor=lat),
    seed=st.integers(0, 10**6), tokens=st.integers(6, 14), nodes=st.integers(2, 4),
    pc=st.sampled_from(["fixed", "adaptive"]), fading=st.sampled_from(["slow", "rayleigh"]),
    budgets=st.sampled_from(["mean", "both"]), eps=st.sampled_from([0.1, 0.2]),
    lat=st.sampled_from([0.6, 1.0]))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(inst=small_batch, slack=st.sampled_from([1.00001, 1.001, 1.05]),
       price_scale=st.sampled_from([0.5, 1.0, 2.0]),
       nu_scale=st.sampled_from([1.0, 10.0, 100.0]))
def test_theorem_load_search_against_highs(inst: Instance, slack: float, price_scale: float,
                                           nu_scale: float) -> None:
    """Theorem 6.4 on batches of 6–14 tokens under a binding mean budget, where the
    completion bound prunes: the bound stays below HiGHS's proved optimum, and with
    non-decreasing tables the answer reaches it."""
    truth = solve_exact(inst, "highs")
    if truth.status == INFEASIBLE:
        return
    assert truth.status == OPTIMAL
    found, model = load_search(inst, truth.energy_j * slack, price_scale, nu_scale)
    assert at_most(found.bound * model.unit, truth.energy_j), (found.bound * model.unit,
                                                                truth.energy_j)
    monotone = all(np.all(np.diff(t.energy_j[: t.cap + 1]) >= 0) for t in model.data.tables)
    if monotone:
        assert found.pattern is not None
        assert energies_equal(prefill._energy(model, found.loads), truth.energy_j)


# --------------------------------------------------------------------------------------------
# Speed-ups that must not change what is computed
# --------------------------------------------------------------------------------------------

pricing_case = st.builds(
    lambda seed, tokens, nodes, pc, budgets, eps: build(
        seed, tokens=tokens, experts=12, k=4, nodes=nodes, pc=pc, fading="slow",
        budgets=budgets, max_cand=3, eps_scale=eps),
    seed=st.integers(0, 10**6), tokens=st.integers(4, 24), nodes=st.integers(3, 8),
    pc=st.sampled_from(["fixed", "adaptive"]), budgets=st.sampled_from(["token", "mean", "both"]),
    eps=st.sampled_from([0.05, 0.1, 0.3]))


@SETTINGS
@given(inst=pricing_case, data=st.data())
def test_pricing_without_cover_bound_returns_the_same_patterns(inst: Instance,
                                                               data: st.DataObject) -> None:
    """The cover bound only prunes: without it (``cover=False``, what the policy's pricing
    uses) the enumeration returns exactly the same patterns at any prices and finite
    thresholds, and with tightening the same least reduced cost per class."""
    from siftopt.formulations.space import Pricing

    space = pattern_space(problem_data(inst))
    m, g = space.data.num_nodes, space.num_classes
    prices = np.asarray(data.draw(st.lists(st.floats(-0.5, 3.0), min_size=m, max_size=m)))
    nu = data.draw(st.floats(0.0, 20.0))
    every = enumerate_patterns(space, Pricing(np.zeros(g), prices, nu, np.full(g, np.inf)))
    rc = np.asarray(every.reduced_cost)
    # thresholds around the per-class costs (some prune everything, some nothing), with the
    # pricing's relative slack (the cover bound may round above a cost lying exactly on
    # its threshold)
    q = data.draw(st.floats(0.0, 1.0))
    threshold = np.full(g, -np.inf)
    for c in range(g):
        costs = rc[every.pattern_class == c]
        if costs.size:
            at = float(np.quantile(costs, q))
            threshold[c] = at + 1e-9 * max(abs(at), 1.0)
    for tighten in (False, True):
        out = []
        for cover in (True, False):
            found = enumerate_patterns(space, Pricing(np.zeros(g), prices, nu, threshold.copy(),
                                                      tighten=tighten), cover=cover)
            out.append(found)
        a, b = out
        if not tighten:
            assert (sorted(zip(a.pattern_class.tolist(), a.mask.tolist(), strict=True))
                    == sorted(zip(b.pattern_class.tolist(), b.mask.tolist(), strict=True)))
        least = []
        for found in out:
            best = np.full(g, np.inf)
            np.minimum.at(best, found.pattern_class, np.asarray(found.reduced_cost))
            least.append(best)
        assert np.array_equal(least[0], least[1])


@SETTINGS
@given(inst=pricing_case)
def test_least_degradation_patterns_are_least_and_non_dominated(inst: Instance) -> None:
    """Per monotone class with a kept pattern the pool's first pattern reaches the least
    degradation of the class (that of every relevant node), and every node in it is needed:
    removing any one raises D (non-dominated); classes without kept patterns get none."""
    from siftopt.model.budgets import token_degradation
    from siftopt.policies.prefill_pool import least_degradation_patterns

    space = pattern_space(problem_data(inst))
    every = enumerate_patterns(space)
    cls, mask, deg = least_degradation_patterns(space)
    rows = {c: i for i, c in enumerate(space.mono_classes.tolist())}
    got = {c: (mk, d) for c, mk, d in zip(cls.tolist(), mask.tolist(), deg.tolist(),
                                          strict=True) if c in rows}
    assert sorted(got) == sorted(c for c in set(every.pattern_class.tolist()) if c in rows)

    def degradation(row: int, bits: list[int]) -> float:
        vals = space.values[row, bits].min(axis=0) if bits else np.inf
        return float(token_degradation(np.minimum(space.slots.local[row], vals)[None])[0])

    for c, (mk, d) in got.items():
        row = rows[c]
        nodes = space.node_of_bit[row, : space.nbits[row]].tolist()
        bits = [j for j, node in enumerate(nodes) if (mk >> (node - 1)) & 1]
        assert sum(1 << (nodes[j] - 1) for j in bits) == mk  # only relevant nodes
        assert d == degradation(row, bits) == degradation(row, list(range(len(nodes))))
        for j in bits:
            assert degradation(row, [b for b in bits if b != j]) > d
