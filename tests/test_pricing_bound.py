"""Pricing with the cover bound (issue 14) is exhaustive below its threshold.

``enumerate_patterns`` with a :class:`Pricing` prunes search branches with the per-slot
Lagrangian cover bound of :func:`siftopt.formulations.enumerate._cover_bound`; an invalid
bound would silently drop columns that column generation and reduced-cost fixing need. These
tests compare priced enumerations with the full enumeration filtered by reduced cost, on
random instances and random prices (negative node prices and a degradation price included),
and check that a passed deadline stops pricing. Both search engines are tested: the compiled
depth-first search (the default) and the level-wise numpy reference, and they are compared
with each other on larger generated instances.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siftopt.experiments.synthetic import random_instance
from siftopt.formulations.enumerate import PricingTimeout, enumerate_patterns
from siftopt.formulations.space import PatternSet, Pricing, pattern_space
from siftopt.model.problem import problem_data

small = st.fixed_dictionaries({
    "seed": st.integers(0, 10**6), "num_tokens": st.integers(1, 6),
    "num_experts": st.integers(4, 16), "top_k": st.integers(1, 4),
    "num_nodes": st.integers(2, 8), "power_control": st.sampled_from(["fixed", "adaptive"]),
    "budgets": st.sampled_from(["token", "mean", "both"]),
    "max_candidates": st.sampled_from([None, 1, 3]),
    "eps_scale": st.sampled_from([0.05, 0.3, 0.8]), "gates": st.booleans()})


def _keys(pset: PatternSet) -> set[tuple[int, int]]:
    return set(zip(pset.pattern_class.tolist(), pset.mask.tolist(), strict=True))


ENGINES = ("compiled", "numpy")


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(params=small, price_seed=st.integers(0, 10**6), nu=st.sampled_from([0.0, 0.0, 0.5, 3.0]),
       spread=st.sampled_from([0.0, 0.5, 2.0]))
def test_priced_enumeration_is_the_filtered_full_one(engine, params, price_seed, nu, spread):
    params = dict(params)
    data = problem_data(random_instance(params.pop("seed"), **params))
    space = pattern_space(data)
    full = enumerate_patterns(space, engine=engine)
    rng = np.random.default_rng(price_seed)
    node_price = rng.exponential(1.0, data.num_nodes) - 0.2 * rng.random(data.num_nodes)
    class_dual = rng.exponential(2.0, space.num_classes)
    threshold = rng.normal(0.0, spread, space.num_classes) if spread else \
        np.zeros(space.num_classes)
    # per-class node prices (the duals of the master's cuts) on every other example
    class_node_price = (rng.exponential(0.5, (space.num_classes, data.num_nodes))
                        if price_seed % 2 else None)
    pricing = Pricing(class_dual=class_dual, node_price=node_price, degradation_price=nu,
                      threshold=threshold, tighten=False, class_node_price=class_node_price)
    rc = pricing.reduced_cost(full.pattern_class, full.mask, full.degradation)
    want = full.pattern_class[rc <= threshold[full.pattern_class]], \
        full.mask[rc <= threshold[full.pattern_class]]
    got = enumerate_patterns(space, pricing, engine=engine)
    assert _keys(got) == set(zip(want[0].tolist(), want[1].tolist(), strict=True))

    # best-first (tightened): the least reduced cost of every class below its threshold
    tight = enumerate_patterns(space, Pricing(class_dual=class_dual, node_price=node_price,
                                              degradation_price=nu,
                                              threshold=threshold.copy(), tighten=True,
                                              class_node_price=class_node_price),
                               engine=engine)
    best = np.full(space.num_classes, np.inf)
    np.minimum.at(best, full.pattern_class, rc)
    found = np.full(space.num_classes, np.inf)
    if tight.num_patterns:
        np.minimum.at(found, tight.pattern_class, tight.reduced_cost)
    has = best <= threshold
    assert np.array_equal(np.isfinite(found), has)
    assert np.allclose(found[has], best[has], rtol=0, atol=1e-12)


@pytest.mark.parametrize("preset, tokens, nodes, budget", [
    ("qwen3-30b-a3b", 64, 8, "token"), ("deepseek-v3", 32, 16, "token"),
    ("olmoe-1b-7b", 64, 8, "mean"), ("mixtral-8x7b", 64, 4, "both")])
def test_the_engines_agree_on_generated_instances(preset, tokens, nodes, budget):
    """The same patterns from both engines: all of them, and priced at random prices without
    tightening; with tightening the same least reduced cost per class."""
    import siftopt

    inst = siftopt.generate(preset, seed=1, tokens=tokens, nodes=nodes, budget=budget)[0]
    space = pattern_space(problem_data(inst))
    full = {e: enumerate_patterns(space, engine=e) for e in ENGINES}
    assert full["compiled"].num_patterns > 0
    assert _with_d(full["compiled"]) == _with_d(full["numpy"])
    rng = np.random.default_rng(7)
    for _ in range(3):
        node_price = rng.exponential(1.0, space.data.num_nodes)
        class_dual = rng.exponential(3.0, space.num_classes)
        nu = float(rng.choice([0.0, 1.0]))
        for tighten in (False, True):
            got = {e: enumerate_patterns(space, Pricing(
                class_dual=class_dual, node_price=node_price, degradation_price=nu,
                threshold=np.zeros(space.num_classes), tighten=tighten), engine=e)
                for e in ENGINES}
            if not tighten:
                assert _with_d(got["compiled"]) == _with_d(got["numpy"])
                continue
            least = {}
            for e, pset in got.items():
                least[e] = np.full(space.num_classes, np.inf)
                np.minimum.at(least[e], pset.pattern_class, pset.reduced_cost)
            assert np.array_equal(least["compiled"], least["numpy"])


def _with_d(pset: PatternSet) -> set[tuple[int, int, float]]:
    return set(zip(pset.pattern_class.tolist(), pset.mask.tolist(),
                   pset.degradation.tolist(), strict=True))


def test_an_unknown_engine_is_refused():
    space = pattern_space(problem_data(random_instance(1, num_tokens=2, num_experts=4,
                                                       top_k=2, num_nodes=2)))
    with pytest.raises(ValueError, match="engine"):
        enumerate_patterns(space, engine="fortran")


@pytest.mark.parametrize("engine", ENGINES)
def test_pricing_stops_at_its_deadline(engine):
    data = problem_data(random_instance(3, num_tokens=6, num_experts=16, top_k=4, num_nodes=8))
    space = pattern_space(data)
    pricing = Pricing(class_dual=np.full(space.num_classes, 10.0),
                      node_price=np.ones(data.num_nodes), degradation_price=0.0,
                      threshold=np.zeros(space.num_classes))
    with pytest.raises(PricingTimeout):
        enumerate_patterns(space, pricing, deadline=time.perf_counter() - 1.0, engine=engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_pattern_limit_stops_both_engines(engine):
    """Past ``PatternOptions.max_patterns`` patterns an enumeration raises PatternLimitError
    (the compiled search stops inside a chunk of rows, the numpy one after a batch)."""
    from siftopt.formulations.space import PatternLimitError, PatternOptions

    data = problem_data(random_instance(5, num_tokens=12, num_experts=16, top_k=4,
                                        num_nodes=8))
    every = enumerate_patterns(pattern_space(data), engine=engine).num_patterns
    assert every > 20
    limited = pattern_space(data, PatternOptions(max_patterns=every // 2))
    with pytest.raises(PatternLimitError, match="more than"):
        enumerate_patterns(limited, engine=engine)
    roomy = pattern_space(data, PatternOptions(max_patterns=every))
    assert enumerate_patterns(roomy, engine=engine).num_patterns == every


def test_a_short_deadline_never_waits_for_the_compiler(monkeypatch):
    """Compiling the numba search takes seconds and cannot be interrupted: under a deadline
    closer than COMPILE_BUDGET_S, ``engine="auto"`` uses numpy until the kernel is ready."""
    import sys

    from siftopt.formulations import enumerate as enum

    monkeypatch.delitem(sys.modules, "siftopt.formulations.enumerate_kernel", raising=False)
    assert enum.engine_for(time.perf_counter() + 1.0) == "numpy"
    assert enum.engine_for(time.perf_counter() + 2 * enum.COMPILE_BUDGET_S) == "auto"
    assert enum.engine_for(None) == "auto"
