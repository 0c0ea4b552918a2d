"""The compiled kernels of sift-prefill's dual agree with their numpy references, and small
instances run the numpy path without loading numba."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from siftopt.experiments.synthetic import random_document
from siftopt.io.instance_file import instance_from_document
from siftopt.model.problem import problem_data
from siftopt.policies import prefill, prefill_dual, prefill_newton


def _duals(num_tokens: int, power: str) -> list[tuple]:
    doc = random_document(np.random.default_rng(7), num_tokens=num_tokens, num_experts=64,
                          top_k=8, num_nodes=8, power_control=power, budgets="both",
                          max_candidates=4, null_fraction=0.0, name="speed")
    inst = instance_from_document(doc)
    problem_data(inst)
    seen = []
    original = prefill.maximise

    def spy(dual, y0, upper, tau0, rtol=prefill_newton.DUAL_RTOL, unit=None, **options):
        out = original(dual, y0, upper, tau0, rtol, unit, **options)
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
                fast, ref = dual.smooth_compiled(y, tau), dual.smooth_numpy(y, tau)
                scale = 1.0 + abs(ref[0])
                assert abs(fast[0] - ref[0]) <= 1e-12 * scale
                assert np.allclose(fast[1], ref[1], rtol=1e-7, atol=1e-9 * scale)
                # the closed-form variance cancels badly near its series: both are noisy
                assert np.allclose(fast[2], ref[2], rtol=1e-5,
                                   atol=1e-5 * np.abs(ref[2]).max())
            exact = (float(dual.nodes.value_numpy(y[:m]).sum())
                     + float(dual.counts @ dual.class_minima(y))
                     - (float(y[m]) * dual.mean_rhs if dual.mean_rhs is not None else 0.0))
            for engine in ("compiled", "numpy"):
                dual.engine = engine
                assert abs(dual.value(y) - exact) <= 1e-12 * (1.0 + abs(exact))
            dual.engine = "auto"
            assert np.allclose(dual.nodes.value(y[:m], compiled=True),
                               dual.nodes.value_numpy(y[:m]), rtol=1e-12, atol=1e-12)
            fast_y = prefill_newton.coordinate_sweep_compiled(dual, y, upper)
            ref_y = prefill_newton.coordinate_sweep_numpy(dual, y, upper)
            assert np.allclose(fast_y, ref_y, rtol=1e-9, atol=1e-12)


def test_engine_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    dual, _, _, _ = _duals(96, "adaptive")[-1]
    monkeypatch.setattr(prefill_dual, "COMPILED_ABOVE", dual.size - 1)
    assert dual.compiled
    monkeypatch.setattr(prefill_dual, "COMPILED_ABOVE", dual.size)
    assert not dual.compiled
    dual.engine = "compiled"
    assert dual.compiled
    dual.engine = "fast"
    with pytest.raises(ValueError):
        _ = dual.compiled


def test_numpy_path_runs_without_numba() -> None:
    """A small instance runs on numpy and never imports numba; forcing the compiled path on
    the same instance gives the same energy and a bound equal to float rounding."""
    code = """
import sys
import siftopt
from siftopt.policies import prefill, prefill_dual
assert "numba" not in sys.modules
inst = siftopt.generate("mixtral-8x7b", seed=0, tokens=16, nodes=4)[0]
run = prefill.sift_prefill_run(inst)
assert "numba" not in sys.modules, "the numpy path imported numba"
prefill_dual.COMPILED_ABOVE = -1
forced = prefill.sift_prefill_run(inst)
assert "numba" in sys.modules
assert forced.energy_j == run.energy_j and forced.certified == run.certified
assert abs(forced.dual_bound_j - run.dual_bound_j) <= 1e-9 * abs(run.dual_bound_j)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def test_pool_packed_keys_match_the_set_of_pairs() -> None:
    """PatternPool.add dedupes by sorted packed keys; the set-of-pairs path (keys past 64
    bits) keeps the same patterns in the same order."""
    from siftopt.policies.prefill_pool import PatternPool

    rng = np.random.default_rng(3)
    packed, pairs = PatternPool(50, 6), PatternPool(50, 6)
    pairs._packed = False
    for _ in range(5):
        cls = rng.integers(0, 50, 80)
        mask = rng.integers(0, 64, 80).astype(np.uint64)
        deg = rng.random(80)
        assert packed.add(cls, mask, deg) == pairs.add(cls, mask, deg)
    assert len(packed) == len(pairs)
    for a, b in zip(packed.arrays, pairs.arrays, strict=True):
        assert np.array_equal(a, b)
    cls, mask = packed.arrays[:2]  # the keys stay sorted, one per pattern
    assert np.array_equal(packed._keys, np.sort((cls.astype(np.uint64) << np.uint64(6)) | mask))


def _slot_table_by_sort(data, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference of space.slot_table: sort the options by (row, node, degradation,
    index) and take the first of each (row, node) cell; returns (value, option) (S, M + 1)."""
    k_slots, n_nodes = data.inst.top_k, data.num_nodes
    slots = (np.asarray(tokens, dtype=np.int64)[:, None] * k_slots + np.arange(k_slots)).ravel()
    rows, opts = [], []
    for r, s in enumerate(slots):
        o = np.arange(data.slot_start[s], data.slot_start[s + 1])
        o = o[data.opt_reachable[o]]
        rows.append(np.full(o.size, r))
        opts.append(o)
    row, opt = np.concatenate(rows), np.concatenate(opts)
    col = np.maximum(data.opt_node[opt], 0)
    deg = data.opt_degradation[opt]
    order = np.lexsort((opt, deg, col, row))
    row, col, deg, opt = row[order], col[order], deg[order], opt[order]
    first = np.r_[True, (row[1:] != row[:-1]) | (col[1:] != col[:-1])]
    value = np.full((slots.size, n_nodes + 1), np.inf)
    best = np.full((slots.size, n_nodes + 1), -1, dtype=np.int64)
    value[row[first], col[first]] = deg[first]
    best[row[first], col[first]] = opt[first]
    return value, best


@pytest.mark.parametrize("seed,tokens,nodes,power", [(0, 64, 8, "adaptive"), (1, 200, 16, "fixed"),
                                                     (2, 5, 4, "adaptive")])
def test_slot_table_matches_the_sorted_reference(seed: int, tokens: int, nodes: int,
                                                 power: str) -> None:
    """space.slot_table (per-cell minima by ufunc.at) equals the sort-based reference,
    bit for bit, for token lists in any order and with repeats."""
    from siftopt.formulations.space import slot_table

    doc = random_document(np.random.default_rng(seed), num_tokens=tokens, num_experts=64,
                          top_k=8, num_nodes=nodes, power_control=power, budgets="both",
                          max_candidates=4, null_fraction=0.3, name="slots")
    data = problem_data(instance_from_document(doc))
    rng = np.random.default_rng(seed)
    for toks in (np.arange(tokens), rng.permutation(tokens), rng.integers(0, tokens, 7)):
        value, best = _slot_table_by_sort(data, toks)
        got = slot_table(data, toks)
        shape = (toks.size, data.inst.top_k)
        assert np.array_equal(got.local, value[:, 0].reshape(shape))
        assert np.array_equal(got.local_opt, best[:, 0].reshape(shape))
        assert np.array_equal(got.remote, value[:, 1:].reshape(*shape, nodes))
        assert np.array_equal(got.remote_opt, best[:, 1:].reshape(*shape, nodes))


def test_unit_segment_kernel_matches_the_general_one() -> None:
    """geometric_unit (one exp, one log1p) gives log(1 + e^x), σ(x) and σ(1 − σ) to float
    rounding (to the series' 1e-9 in its band |x| < 5e-5), across both signs and underflow,
    and so does geometric_one at length 1 (its variance to 1e-7)."""
    from siftopt.policies.prefill_kernels import geometric_one, geometric_unit

    xs = np.concatenate([np.linspace(-60, 60, 241), [0.0, 1e-6, -1e-6, 4.9e-5, -5.1e-5,
                                                     -1e-3, 2e-3, -800.0, 800.0]])
    sigma = np.exp(-np.logaddexp(0.0, -xs))
    exact = (np.logaddexp(0.0, xs), sigma, sigma * np.exp(-np.logaddexp(0.0, xs)))
    for i, x in enumerate(xs):
        fast, general = geometric_unit(float(x)), geometric_one(float(x), 1.0)
        band = 1e-9 if abs(x) < 5e-5 else 1e-12
        for a, c in zip(fast, (e[i] for e in exact), strict=True):
            assert abs(a - c) <= band * max(1.0, abs(c))
        for a, b in zip(fast, general, strict=True):
            assert abs(a - b) <= 1e-7 * max(1.0, abs(b))


def _geometric_by_sum(x: float, length: int) -> tuple[float, float, float]:
    """log Σ_{k≤ℓ} e^{kx}, mean and variance of k by direct summation (no cancellation)."""
    k = np.arange(length + 1.0)
    shift = max(0.0, length * x)
    w = np.exp(k * x - shift)
    total = float(w.sum())
    mean = float(k @ w) / total
    return np.log(total) + shift, mean, float(((k - mean) ** 2) @ w) / total


@pytest.mark.parametrize("length", [1, 2, 3, 7, 40])
def test_truncated_geometric_near_zero(length: int) -> None:
    """Both truncated-geometric forms (numpy and geometric_one) agree with a direct sum for
    |x| just outside the series band, where ``1 − e^x`` lost digits: the variance (Newton's
    curvature) was off by up to 2.6 % there; now 1e-6 relative at most."""
    from siftopt.policies.prefill_kernels import geometric_one

    xs = np.geomspace(1e-7, 30.0, 200)
    xs = np.concatenate([xs, -xs])
    lengths = np.full(xs.size, float(length))
    numpy_form = prefill_dual._truncated_geometric(xs, lengths)
    for i, x in enumerate(xs):
        exact = _geometric_by_sum(float(x), length)
        kernel = geometric_one(float(x), float(length))
        for j, tol in enumerate((1e-9, 1e-9, 1e-6)):
            for got in (numpy_form[j][i], kernel[j]):
                assert abs(got - exact[j]) <= tol * max(1.0, abs(exact[j])), (x, j)


def test_compiled_global_masks_match_numpy() -> None:
    """enumerate_kernel.rows_to_global (the compiled search's local → global masks) equals
    enumerate._rows_to_global bit for bit, up to 16 relevant nodes per row."""
    from siftopt.formulations import enumerate as enum
    from siftopt.formulations.enumerate_kernel import rows_to_global
    from siftopt.formulations.space import pattern_space

    doc = random_document(np.random.default_rng(3), num_tokens=120, num_experts=64, top_k=8,
                          num_nodes=16, power_control="adaptive", budgets="both",
                          max_candidates=4, null_fraction=0.0, name="masks")
    space = pattern_space(problem_data(instance_from_document(doc)))
    rng = np.random.default_rng(3)
    row = rng.integers(0, space.nbits.size, 3000)
    local = rng.integers(0, 1 << 16, 3000) & ((np.int64(1) << space.nbits[row]) - 1)
    local[:5] = 0
    want = enum._rows_to_global(space, row, local)
    got = rows_to_global(row, local, np.ascontiguousarray(space.node_of_bit, dtype=np.int64))
    assert got.dtype == np.uint64 and np.array_equal(got, want)
    assert int(space.nbits.max()) > 1


@pytest.mark.parametrize("width", [0, 1, 5, 16, 63, 64, 65, 130])
def test_node_sets_match_packed_bytes(width: int) -> None:
    """prefill_primal._node_sets (the batch step's node sets) equals the little-endian
    packbits integers it replaced, for any number of nodes."""
    from siftopt.policies.prefill_primal import _node_sets

    changed = np.random.default_rng(width).random((200, width)) < 0.3
    packed = np.packbits(changed, axis=1, bitorder="little")
    assert _node_sets(changed) == [int.from_bytes(r.tobytes(), "little") for r in packed]


def test_cheapest_per_class_matches_the_lexsort() -> None:
    """prefill_pool._cheapest_per_class (a selection) picks what the lexsort by (class, cost)
    truncated to k per class picked, in the same order, with ties and infinite costs."""
    from siftopt.policies.prefill_pool import _cheapest_per_class

    rng = np.random.default_rng(5)
    for trial in range(600):
        n = int(rng.integers(0, 60))
        cls = np.sort(rng.integers(0, 8, n))
        cost = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.random(n)
        if trial % 7 == 0 and n:
            cost[rng.integers(0, n)] = np.inf
        order = np.lexsort((cost, cls))
        rank = np.arange(n) - np.searchsorted(cls[order], cls[order])
        for k in (1, 2, 3):
            assert np.array_equal(_cheapest_per_class(cls, cost, k), order[rank < k])


def test_fused_smooth_kernel_matches_its_parts() -> None:
    """prefill_kernels.dual_smooth (class and node terms in one call) returns bit for bit
    what pool_smooth and node_smooth return separately, added as PoolDual adds them."""
    from siftopt.policies.prefill_kernels import dual_smooth, node_smooth, pool_smooth

    for dual, _, upper, out in _duals(300, "adaptive"):
        nodes, m = dual.nodes, dual.nodes.num_nodes
        y = np.ascontiguousarray(np.clip(out.y, 0.0, upper), dtype=float)
        for tau, hessian in ((out.tau, True), (10 * out.tau, False), (0.0, False)):
            args = (dual._start, dual._nptr, dual._nidx, dual._deg, dual.counts, y, tau,
                    hessian, prefill_dual.CUTOFF)
            node_args = (nodes.slope, nodes.length, nodes.seg_start, nodes.cum_len,
                         nodes.cum_len_slope, float(nodes.weight))
            value, grad, hess, h_val = dual_smooth(*args, *node_args)
            ref_value, ref_grad, ref_hess = pool_smooth(*args)
            ref_h = node_smooth(*node_args, y[:m], tau, prefill_dual.CUTOFF)
            ref_grad[:m] += ref_h[1]
            if hessian:
                ref_hess[np.arange(m), np.arange(m)] += ref_h[2]
            assert value == ref_value
            assert np.array_equal(h_val, ref_h[0])
            assert np.array_equal(grad, ref_grad)
            assert np.array_equal(hess, ref_hess)


def test_sweep_arrays_match_the_cumulative_reference() -> None:
    """PoolDual.sweep_arrays (per node the classes with a pattern through it, by an OR per
    class run) equals the prefix-sum reference, also for a pool with an empty class."""
    def reference(dual: prefill_dual.PoolDual) -> tuple[np.ndarray, np.ndarray]:
        m = dual.nodes.num_nodes
        on = dual.columns[:, :m] > 0
        cum = np.concatenate([np.zeros((1, m), np.int64), np.cumsum(on, axis=0)])
        has = (cum[dual.start[1:]] - cum[dual.start[:-1]]).T > 0
        rows, cols = np.divmod(np.flatnonzero(has), max(has.shape[1], 1))
        return np.searchsorted(rows, np.arange(m + 1)), cols

    dual, _, _, _ = _duals(96, "adaptive")[-1]
    assert dual._mask is not None  # the run's pools pass their node words
    _, ptr, cls = dual.sweep_arrays()
    want_ptr, want_cls = reference(dual)
    assert np.array_equal(ptr, want_ptr) and np.array_equal(cls, want_cls)
    # the same pool without its words (an OR per class run of the table)
    plain = prefill_dual.PoolDual(dual.nodes, dual.counts, dual.mean_rhs)
    m = dual.nodes.num_nodes
    plain.set_pool(dual.cls, dual.columns[:, :m],
                   dual.columns[:, -1] if dual.mean_rhs is not None else np.zeros(0),
                   dual.start)
    assert np.array_equal(plain._nptr, dual._nptr) and np.array_equal(plain._nidx, dual._nidx)
    _, ptr, cls = plain.sweep_arrays()
    assert np.array_equal(ptr, want_ptr) and np.array_equal(cls, want_cls)
    # class 1 emptied: its patterns go to class 0 (the OR per run no longer applies)
    start = dual.start.copy()
    start[1] = start[2]
    holed = prefill_dual.PoolDual(dual.nodes, dual.counts, dual.mean_rhs)
    inc = dual.columns[:, : dual.nodes.num_nodes]
    deg = dual.columns[:, -1] if dual.mean_rhs is not None else np.zeros(inc.shape[0])
    holed.set_pool(np.searchsorted(start, np.arange(inc.shape[0]), side="right") - 1, inc,
                   deg, start)
    _, ptr, cls = holed.sweep_arrays()
    want_ptr, want_cls = reference(holed)
    assert np.array_equal(ptr, want_ptr) and np.array_equal(cls, want_cls)
    assert 1 not in cls.tolist()


@pytest.mark.parametrize("power", ["fixed", "adaptive"])
def test_node_term_sums_match_the_per_node_loop(power: str) -> None:
    """NodeTerms' padded slopes, prefix sums and supply (vectorised over nodes) equal the
    per-node cumsum / searchsorted they replaced, bit for bit, with scaled weights, an empty
    node and tied slopes."""
    def reference(nodes: prefill_dual.NodeTerms) -> list[np.ndarray]:
        parts = [slice(int(a), int(b)) for a, b in zip(nodes.seg_start[:-1],
                                                       nodes.seg_start[1:], strict=True)]
        padded = np.full(nodes.padded.shape, np.inf)
        cl, cs, cum, at = [], [], [], []
        for m, part in enumerate(parts):
            padded[m, : part.stop - part.start] = nodes.slope[part]
            cl.append(np.concatenate([[0.0], np.cumsum(nodes.length[part])]))
            cs.append(np.concatenate([[0.0], np.cumsum(nodes.length[part]
                                                       * nodes.slope[part])]))
            c = np.concatenate([[0.0], np.cumsum(nodes.length[part] * nodes.weight)])
            cum.append(c)
            at.append(c[np.searchsorted(nodes.slope[part], nodes.slope[part], side="right")])
        return [padded, *(np.concatenate(x) for x in (cl, cs, cum, at))]

    doc = random_document(np.random.default_rng(11), num_tokens=40, num_experts=64, top_k=8,
                          num_nodes=6, power_control=power, budgets="both", max_candidates=4,
                          null_fraction=0.0, name="terms")
    data = problem_data(instance_from_document(doc))
    tables = [t.energy_j[: t.cap + 1] for t in data.tables]
    tables += [np.array([0.0]), np.array([0.0, 2.0, 4.0, 6.0, 7.0])]  # no load; ties
    for convex in ([bool(t.convex) for t in data.tables] + [True, True], None):
        for weight in (1.0, 0.3):
            nodes = prefill_dual.NodeTerms.from_tables(tables, convex).scaled(weight)
            got = [nodes.padded, nodes.cum_len, nodes.cum_len_slope, *nodes.supply]
            for a, b in zip(got, reference(nodes), strict=True):
                assert np.array_equal(a, b)


def test_vectorised_batch_step_matches_the_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The primal batch step finding each next move by a vectorised test (up to 64 nodes)
    makes the same moves as the candidate-by-candidate scan: same tokens' patterns, loads
    and energy on a batch large enough for multi-move steps."""
    from siftopt.policies import prefill_primal

    doc = random_document(np.random.default_rng(2), num_tokens=600, num_experts=64, top_k=8,
                          num_nodes=8, power_control="adaptive", budgets="both",
                          max_candidates=4, null_fraction=0.0, name="batch")
    inst = instance_from_document(doc)
    problem_data(inst)
    made: list[int] = []
    original = prefill_primal._Search._apply_batch

    def counting(self, cand, delta, d_energy, d_deg):  # type: ignore[no-untyped-def]
        before = self.moves
        original(self, cand, delta, d_energy, d_deg)
        made.append(self.moves - before)

    monkeypatch.setattr(prefill_primal._Search, "_apply_batch", counting)
    fast = prefill.sift_prefill_run(inst)
    assert max(made) > 1  # some step made several moves

    def scan(self, cand, delta, d_energy, d_deg):  # type: ignore[no-untyped-def]
        self._apply_batch_scan(cand[np.argsort(d_energy[cand], kind="stable")]
                               [: prefill_primal.BATCH_SCAN], delta, d_deg)

    monkeypatch.setattr(prefill_primal._Search, "_apply_batch", scan)
    slow = prefill.sift_prefill_run(inst)
    assert np.array_equal(np.asarray(fast.answer.targets), np.asarray(slow.answer.targets))
    assert fast.energy_j == slow.energy_j and fast.feasible == slow.feasible


@pytest.mark.parametrize("weights", ["given", "ones", "mixed"])
def test_compiled_sweep_with_equal_and_unequal_class_counts(weights: str) -> None:
    """The compiled sweep sorts the breaks by value alone where they all weigh the same and
    by index otherwise: both agree with the numpy sweep (class counts all one, as given, or
    mixed), and it moves only the costs of the patterns through each node."""
    rng = np.random.default_rng(4)
    for dual, y0, upper, out in _duals(300, "adaptive")[-3:]:
        if weights == "ones":
            dual.counts = np.ones_like(dual.counts)
        elif weights == "mixed":
            dual.counts = rng.integers(1, 4, dual.counts.size).astype(float)
        # node_rows() caches the class counts of the numpy sweep: a pool the run already
        # swept keeps the old ones (this, not the kernels, made the last pool differ)
        dual._node_rows = None
        ptr, idx = dual.node_patterns()
        uses = dual.sweep_arrays()[0]
        for m in range(uses.shape[0]):
            assert np.array_equal(idx[ptr[m]: ptr[m + 1]], np.flatnonzero(uses[m]))
        for y in (y0, out.y):
            y = np.clip(y, 0.0, upper)
            fast = prefill_newton.coordinate_sweep_compiled(dual, y, upper)
            ref = prefill_newton.coordinate_sweep_numpy(dual, y, upper)
            assert np.allclose(fast, ref, rtol=1e-9, atol=1e-12)


def test_slice_reductions_match_numpy() -> None:
    """prefill_pool's slice-by-slice reductions of (G, R, K) tables (the least-degradation
    start patterns) equal numpy's min / any / sum over the same axes, bit for bit."""
    from siftopt.policies.prefill_pool import _any_slot, _count_over_bits, _min_over_bits

    rng = np.random.default_rng(8)
    vals = rng.integers(0, 5, (50, 7, 3)).astype(float)
    vals[rng.random(vals.shape) < 0.3] = np.inf
    table = vals == vals.min(axis=1)[:, None, :]
    assert np.array_equal(_min_over_bits(vals), vals.min(axis=1))
    assert np.array_equal(_any_slot(table), table.any(axis=2))
    assert np.array_equal(_count_over_bits(table), table.sum(axis=1))


def test_sorted_increments_match_np_sort() -> None:
    """prefill_dual._sorted (no sort for increments already in order) returns what np.sort
    returns, bit for bit, also with ties, −0.0 and NaN."""
    from siftopt.policies.prefill_dual import _sorted

    rng = np.random.default_rng(9)
    for trial in range(400):
        n = int(rng.integers(0, 12))
        values = rng.integers(-3, 3, n).astype(float)
        if trial % 2:
            values = np.sort(values)
        if trial % 5 == 0 and n:
            values[rng.integers(0, n)] = -0.0
        if trial % 7 == 0 and n:
            values[rng.integers(0, n)] = np.nan
        got, want = _sorted(values), np.sort(values)
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def test_blocked_moves_with_and_without_full_nodes() -> None:
    """_Search.evaluate marks a move blocked iff it adds a token to a node at its cap, with
    and without nodes at their caps (no product in the second case); _Search._set_rows
    finds a token set's moves as np.isin does."""
    from siftopt.formulations.space import pattern_space
    from siftopt.policies import prefill_primal
    from siftopt.policies.prefill_pool import least_degradation_patterns

    doc = random_document(np.random.default_rng(6), num_tokens=60, num_experts=64, top_k=8,
                          num_nodes=6, power_control="adaptive", budgets="both",
                          max_candidates=4, null_fraction=0.0, name="blocked")
    data = problem_data(instance_from_document(doc))
    space = pattern_space(data)
    model = prefill._Model(data, space)
    model.pool.add(*least_degradation_patterns(space))
    cls, _, deg, inc, start = model.pool.arrays
    pool = prefill_primal.Pool(cls=cls, inc=inc, deg=deg, start=start)
    moves = prefill_primal.candidates(pool, deg, 4)
    first = start[space.token_class]  # each token on its class's first pattern
    search = prefill_primal._Search(pool, model.nodes, space.token_class, first, None, moves)
    for loads in (np.zeros_like(search.loads), search.caps.copy(), search.caps // 2):
        search.loads = loads
        want = search.plus @ (loads + 1 > search.caps).astype(float) > 0
        assert np.array_equal(search.evaluate()[3], want)
    # a token set's move rows (contiguous per token) are those np.isin finds
    for tokens in ({0}, {3, 17, 59}, set()):
        flags = np.ones(search.move_token.size, dtype=bool)
        search._set_rows(flags, tokens, False)
        assert np.array_equal(flags, ~np.isin(search.move_token, list(tokens)))


def test_pool_arrays_between_adds_and_incidence() -> None:
    """PatternPool.arrays read between adds equal those of a pool built at once, and the
    incidence (unpacked mask bytes) equals the shifted-bit reference for 0-70 nodes."""
    from siftopt.formulations.space import mask_incidence
    from siftopt.policies.prefill_pool import PatternPool

    words = np.random.default_rng(13).integers(0, 2**63, 300, dtype=np.uint64)
    words[::3] |= np.uint64(1) << np.uint64(63)
    for nodes in (0, 1, 7, 16, 33, 64, 70):
        bits = np.left_shift(np.uint64(1), np.arange(nodes, dtype=np.uint64))
        assert np.array_equal(mask_incidence(words, nodes), (words[:, None] & bits) != 0)

    rng = np.random.default_rng(12)
    stepwise, once = PatternPool(30, 7), PatternPool(30, 7)
    for _ in range(6):
        cls = rng.integers(0, 30, 50)
        mask = rng.integers(0, 128, 50).astype(np.uint64)
        deg = rng.random(50)
        stepwise.add(cls, mask, deg)
        once.add(cls, mask, deg)
        _ = stepwise.arrays
    for a, b in zip(stepwise.arrays, once.arrays, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
