"""The compiled kernels of sift-prefill's dual agree with their numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from siftopt.experiments.synthetic import random_document
from siftopt.io.instance_file import instance_from_document
from siftopt.model.problem import problem_data
from siftopt.policies import prefill, prefill_newton


def _duals(num_tokens: int, power: str) -> list[tuple]:
    doc = random_document(np.random.default_rng(7), num_tokens=num_tokens, num_experts=64,
                          top_k=8, num_nodes=8, power_control=power, budgets="both",
                          max_candidates=4, null_fraction=0.0, name="speed")
    inst = instance_from_document(doc)
    problem_data(inst)
    seen = []
    original = prefill.maximise

    def spy(dual, y0, upper, tau0, rtol=prefill_newton.DUAL_RTOL, unit=None):
        out = original(dual, y0, upper, tau0, rtol, unit)
        seen.append((dual, np.asarray(y0, dtype=float), upper, out))
        return out

    prefill.maximise = spy
    try:
        prefill.sift_prefill_run(inst)
    finally:
        prefill.maximise = original
    return seen


@pytest.mark.parametrize("num_tokens,power", [(96, "adaptive"), (300, "fixed"),
                                              (300, "adaptive")])
def test_compiled_dual_matches_numpy(num_tokens: int, power: str) -> None:
    rng = np.random.default_rng(0)
    for dual, y0, upper, out in _duals(num_tokens, power):
        m = dual.nodes.num_nodes
        for y in (y0, out.y, out.y * rng.uniform(0.5, 1.5, out.y.size)):
            y = np.clip(y, 0.0, upper)
            for tau in (out.tau, 100 * out.tau):
                fast, ref = dual.smooth(y, tau), dual.smooth_numpy(y, tau)
                scale = 1.0 + abs(ref[0])
                assert abs(fast[0] - ref[0]) <= 1e-12 * scale
                assert np.allclose(fast[1], ref[1], rtol=1e-7, atol=1e-9 * scale)
                # the closed-form variance cancels badly near its series: both are noisy
                assert np.allclose(fast[2], ref[2], rtol=1e-5,
                                   atol=1e-5 * np.abs(ref[2]).max())
            exact = (float(dual.nodes.value_numpy(y[:m]).sum())
                     + float(dual.counts @ dual.class_minima(y))
                     - (float(y[m]) * dual.mean_rhs if dual.mean_rhs is not None else 0.0))
            assert abs(dual.value(y) - exact) <= 1e-12 * (1.0 + abs(exact))
            fast_y = prefill_newton.coordinate_sweep(dual, y, upper)
            ref_y = prefill_newton.coordinate_sweep_numpy(dual, y, upper)
            assert np.allclose(fast_y, ref_y, rtol=1e-9, atol=1e-12)
