"""The polymatroid cuts of the HiGHS pattern master (siftopt/backends/highs/cuts.py).

A cut may never cut off a decision: at every integer point — ``y_g ≤ c_g`` tokens of class g
on the node, ``n = Σ_g y_g`` at most the cap — its slopes give ``Σ_g a_g·y_g ≤ C(n)``, the
table's concave part (``E − E(0) = C + V``, V convex), for any table (concave, convex,
non-monotone) and any LP point that orders the classes. For a concave table and singleton
classes the cut is tight at the greedy point (the polymatroid inequality). End to end: the
master proves the same optimum with and without cuts (here), and against brute force and
the slot model in tests/test_patterns.py (Rayleigh and non-monotone tables).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from siftopt.backends.highs.cuts import (
    SEPARATION_MIX,
    SeparationCentre,
    class_slopes,
    violated_cut,
)
from siftopt.model.physics import concave_part


@settings(max_examples=300, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), classes=st.integers(1, 8), cap=st.integers(1, 12),
       shape=st.sampled_from(["concave", "convex", "any"]))
def test_a_cut_never_cuts_off_an_integer_point(seed, classes, cap, shape):
    rng = np.random.default_rng(seed)
    steps = rng.exponential(1.0, cap)
    if shape == "concave":
        steps = np.sort(steps)[::-1]
    elif shape == "convex":
        steps = np.sort(steps)
    else:
        steps = rng.normal(0.0, 1.0, cap)
    costs = np.concatenate([[rng.normal()], steps]).cumsum()
    counts = rng.integers(1, 4, classes)
    lp_point = rng.random(classes) * counts
    a = class_slopes(costs, counts, lp_point)
    concave = concave_part(costs)
    for _ in range(200):
        y = rng.integers(0, counts + 1)
        n = int(y.sum())
        if n > cap:
            continue
        assert a @ y <= concave[n] + 1e-9 * (1 + np.abs(costs).max())


@settings(max_examples=200, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), cap=st.integers(1, 15))
def test_a_table_is_its_concave_part_plus_a_convex_rest(seed, cap):
    rng = np.random.default_rng(seed)
    costs = np.concatenate([[rng.normal()], rng.normal(0.0, 1.0, cap)]).cumsum()
    concave = concave_part(costs)
    rest = costs - costs[0] - concave
    tol = 1e-9 * (1 + np.abs(costs).max())
    assert concave[0] == 0.0 and abs(rest[0]) <= tol
    assert np.all(np.diff(concave, 2) <= tol)  # C concave
    assert np.all(np.diff(rest, 2) >= -tol)  # V convex
    assert np.all(np.diff(rest) >= np.diff(rest)[0] - tol)
    if np.all(np.diff(costs, 2) <= 0):  # a concave table is its own concave part
        assert np.allclose(concave, costs - costs[0], rtol=0, atol=tol)


def test_concave_table_singleton_classes_give_the_polymatroid_inequality():
    costs = np.array([0.0, 5.0, 8.0, 10.0, 11.0])  # increments 5, 3, 2, 1
    a = class_slopes(costs, np.ones(4, np.int64), np.array([0.2, 0.9, 0.5, 0.0]))
    assert a.tolist() == [2.0, 5.0, 3.0, 1.0]  # ordered by the LP point: classes 1, 2, 0, 3
    # tight at the greedy point's integer neighbours: the first k classes of the order
    order = [1, 2, 0, 3]
    for k in range(5):
        y = np.zeros(4)
        y[order[:k]] = 1
        assert a @ y == costs[k]


def test_blocks_of_larger_classes_take_their_least_slope():
    costs = np.array([0.0, 4.0, 7.0, 9.0, 10.0, 10.5])  # increments 4, 3, 2, 1, 0.5
    a = class_slopes(costs, np.array([2, 3]), np.array([2.0, 0.0]))
    assert a.tolist() == [3.0, 0.5]  # class 0: positions 1-2 (least 3), class 1: 3-5 (0.5)


def _one_node_master(costs: np.ndarray, counts: np.ndarray) -> SimpleNamespace:
    """What :func:`violated_cut` reads of a master: node 1's breakpoints ``0..cap`` and the
    class counts."""
    return SimpleNamespace(bp_start=np.array([0, 0]), bp_end=np.array([0, costs.size]),
                           bp_cost=costs, space=SimpleNamespace(class_count=counts))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), classes=st.integers(1, 8), cap=st.integers(1, 12),
       mix=st.floats(0.0, 1.0))
def test_stabilised_separation_finds_a_cut_exactly_when_the_lp_point_has_one(seed, classes,
                                                                             cap, mix):
    """A cut separated at any other point joins only if it cuts off the LP point; otherwise
    the LP point's greedy cut is tried, so the stabilised separation misses no violated cut
    and never returns one the LP point satisfies."""
    rng = np.random.default_rng(seed)
    costs = np.concatenate([[0.0], rng.exponential(1.0, cap)]).cumsum()
    counts = rng.integers(1, 4, classes)
    master = _one_node_master(costs, counts)
    y = rng.random(classes) * counts
    other = rng.random(classes) * counts
    lhs = float(rng.random() * concave_part(costs)[-1])
    plain = violated_cut(master, 1, lhs, y)
    stabilised = violated_cut(master, 1, lhs, y, mix * y + (1.0 - mix) * other)
    assert (plain is None) == (stabilised is None)
    if stabilised is not None:
        scale = float(np.abs(costs).max())
        assert stabilised @ y - lhs > 1e-6 * scale
        if np.all(counts == 1):  # Edmonds: the LP point's greedy cut is the deepest
            assert stabilised @ y <= plain @ y + 1e-9 * (1.0 + scale)


def test_the_separation_centre_moves_towards_each_lp_point():
    centre = SeparationCentre()
    first, second = np.array([2.0, 0.0]), np.array([0.0, 4.0])
    assert centre.point(1, first) is None
    centre.update(1, first)
    mixed = SEPARATION_MIX * second + (1.0 - SEPARATION_MIX) * first
    assert np.allclose(centre.point(1, second), mixed, rtol=0, atol=1e-15)
    centre.update(1, second)
    assert np.allclose(centre.average[1], mixed, rtol=0, atol=1e-15)
    assert centre.point(2, second) is None  # per node


def _rayleigh(seed: int, tokens: int, nodes: int, pc: str, budgets: str, eps: float,
              latency: float):
    from siftopt.experiments.synthetic import random_document
    from siftopt.io.instance_file import instance_from_document

    rng = np.random.default_rng(seed)
    doc = random_document(rng, num_tokens=tokens, num_experts=10, top_k=3, num_nodes=nodes,
                          power_control=pc, fading="rayleigh", budgets=budgets,
                          max_candidates=3, eps_scale=eps)
    doc["latency_s"] = float(doc["latency_s"] * latency)
    return instance_from_document(doc, file=f"<seed {seed}>")


def _with_and_without_cuts(inst):
    from siftopt.backends.options import ColumnGenerationOptions, ExactOptions
    from siftopt.facade import solve_exact

    cut = solve_exact(inst, "highs")
    plain = solve_exact(inst, "highs", options=ExactOptions(
        column_generation=ColumnGenerationOptions(polymatroid_rounds=0)))
    return cut, plain


def test_the_cut_duals_stay_aligned_with_the_cuts():
    """Regression: idle cuts left the LP after its last solve, so the duals used for
    reduced-cost fixing belonged to other cuts and the optimum's columns were fixed out
    (0.012177 J "optimal" against 0.0121193 J; found by test_prefill_policy)."""
    from siftopt.model.evaluate import energies_equal

    cut, plain = _with_and_without_cuts(_rayleigh(3, 21, 3, "fixed", "token", 0.1, 1.0))
    assert cut.status == plain.status == "optimal"
    assert energies_equal(cut.energy_j, plain.energy_j)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 10**6), tokens=st.integers(8, 40), nodes=st.integers(2, 6),
       pc=st.sampled_from(["fixed", "adaptive"]),
       budgets=st.sampled_from(["token", "mean", "both"]), eps=st.sampled_from([0.1, 0.3]),
       latency=st.sampled_from([0.5, 1.0]))
def test_the_master_with_cuts_finds_the_same_optimum(seed, tokens, nodes, pc, budgets, eps,
                                                      latency):
    """Rayleigh tables (non-convex): the master with polymatroid cuts and without them prove
    the same optimum (or both find the instance infeasible)."""
    from siftopt.model.evaluate import energies_equal

    cut, plain = _with_and_without_cuts(_rayleigh(seed, tokens, nodes, pc, budgets, eps,
                                                  latency))
    assert cut.status == plain.status
    if plain.status == "optimal":
        assert energies_equal(cut.energy_j, plain.energy_j), (cut.energy_j, plain.energy_j)
