"""Rates, load caps and energy tables against hand computation and independent minimisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from siftopt.experiments.synthetic import random_instance
from siftopt.model.instance import Node
from siftopt.model.physics import (
    adaptive_power_table,
    energy_tables,
    fixed_power_table,
    is_convex,
    link_energy_j,
    node_rates,
    slow_fading_cap,
)


def _instance(power_control: str = "fixed", latency_s: float = 0.02, tokens: int = 4):
    inst = random_instance(3, num_tokens=tokens, power_control=power_control,
                           latency_s=latency_s)
    node = Node(bandwidth_hz=1e6, gain_up=1e-10, gain_down=2e-10, power_up_w=0.1,
                power_down_w=0.5, compute_s_per_token=1e-4, compute_j_per_token=2e-6)
    return inst.replace(nodes=(node,), placement=np.minimum(inst.placement, 1),
                        noise_psd_w_per_hz=4e-21, hidden_dim=1000, bits_per_element=8,
                        energy_weight_up=1.0, energy_weight_down=0.5), node


def test_rates_by_hand():
    inst, node = _instance()
    r_up, r_down = node_rates(inst, node)
    # SNR up = 0.1 * 1e-10 / (4e-21 * 1e6) = 2500; down = 0.5 * 2e-10 / 4e-15 = 25000
    assert r_up == pytest.approx(1e6 * math.log2(2501), rel=1e-14)
    assert r_down == pytest.approx(1e6 * math.log2(25001), rel=1e-14)


def test_cap_by_hand():
    inst, node = _instance(latency_s=0.004, tokens=10)
    s = 8000
    per_token = s / (1e6 * math.log2(2501)) + s / (1e6 * math.log2(25001)) + 1e-4
    assert slow_fading_cap(inst, node) == min(10, math.floor(0.004 / per_token))
    assert slow_fading_cap(inst.replace(latency_s=1.0), node) == 10  # capped by L


def test_fixed_table_by_hand():
    inst, node = _instance()
    s = 8000
    per_token = (s * (1.0 * 0.1 / (1e6 * math.log2(2501)) + 0.5 * 0.5 / (1e6 * math.log2(25001)))
                 + 2e-6)
    table = fixed_power_table(inst, node, 3)
    assert table.tolist() == pytest.approx([0, per_token, 2 * per_token, 3 * per_token],
                                           rel=1e-13)


def _independent_adaptive(inst, node, n: int) -> float:
    """E_m(n) by bounded scalar minimisation with scipy (an independent method)."""
    r_up, r_down = node_rates(inst, node)
    bits = n * inst.payload_bits
    tau = inst.latency_s - node.compute_s_per_token * n
    lo, hi = bits / r_up, tau - bits / r_down

    def f(tau_up: float) -> float:
        return (inst.energy_weight_up * link_energy_j(np.array(bits), np.array(tau_up),
                                                      node.gain_up, node.bandwidth_hz,
                                                      inst.noise_psd_w_per_hz)
                + inst.energy_weight_down * link_energy_j(np.array(bits), np.array(tau - tau_up),
                                                          node.gain_down, node.bandwidth_hz,
                                                          inst.noise_psd_w_per_hz))

    res = minimize_scalar(f, bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-14 * hi, "maxiter": 2000})
    best = min(float(res.fun), float(f(lo)), float(f(hi)))
    return best + node.compute_j_per_token * n


@pytest.mark.parametrize("latency_s", [0.004, 0.01, 0.05])
def test_adaptive_table_matches_independent_minimisation(latency_s):
    inst, node = _instance("adaptive", latency_s=latency_s, tokens=8)
    cap = slow_fading_cap(inst, node)
    table = adaptive_power_table(inst, node, cap)
    assert table[0] == 0.0
    for n in range(1, cap + 1):
        assert table[n] == pytest.approx(_independent_adaptive(inst, node, n), rel=1e-9)
        # never above the fixed-power energy of the same load, never below zero
        assert 0 < table[n] <= fixed_power_table(inst, node, cap)[n] * (1 + 1e-12)


def test_adaptive_at_cap_uses_full_power_when_the_window_is_tight():
    inst, node = _instance("adaptive", latency_s=0.004, tokens=50)
    cap = slow_fading_cap(inst, node)
    r_up, r_down = node_rates(inst, node)
    per_token = inst.payload_bits / r_up + inst.payload_bits / r_down + node.compute_s_per_token
    tight = inst.replace(latency_s=cap * per_token * (1 + 1e-12))
    table = adaptive_power_table(tight, node, cap)
    assert table[cap] == pytest.approx(fixed_power_table(tight, node, cap)[cap], rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), tokens=st.integers(1, 40))
def test_adaptive_tables_are_convex_and_increasing(seed, tokens):
    inst = random_instance(seed, num_tokens=tokens, power_control="adaptive", num_nodes=3)
    for table in energy_tables(inst):
        assert table.energy_j[0] == 0
        assert is_convex(table.energy_j)
        assert np.all(np.diff(table.energy_j) > 0)


def test_is_convex_detects_a_dent():
    assert is_convex(np.array([0.0, 1.0, 2.0, 3.5]))
    assert not is_convex(np.array([0.0, 1.0, 1.5, 3.5, 4.0]))


def test_unreachable_node_has_cap_zero():
    inst, node = _instance(latency_s=1e-5)
    assert slow_fading_cap(inst, node) == 0
    assert energy_tables(inst)[0].cap == 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 100_000), tokens=st.integers(1, 60), nodes=st.integers(1, 8))
def test_batched_adaptive_tables_equal_one_node_at_a_time(seed, tokens, nodes):
    """energy_tables runs one bisection over every node; each (node, load) pair stops on its
    own, so the tables are bit-for-bit those of one node at a time."""
    inst = random_instance(seed, num_tokens=tokens, power_control="adaptive", num_nodes=nodes)
    energy_tables.cache_clear()
    for table, node in zip(energy_tables(inst), inst.nodes, strict=True):
        alone = adaptive_power_table(inst, node, table.cap)
        assert np.array_equal(table.energy_j, alone)
