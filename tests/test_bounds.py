"""Tests of siftopt.similarity and `siftopt similarity`.

The central property: no analytic β or δ is ever exceeded, on random inputs and on inputs found
by an independent adversarial search (scipy optimisation of the ratio from several starts).
Expected values are computed here independently (own forward pass, numpy SVDs, scipy root
finding), never hard-coded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize, minimize_scalar
from scipy.special import erf

from siftopt import similarity as S
from siftopt.cli import main
from siftopt.errors import InputError
from siftopt.similarity import linalg

PLAIN = ("relu", "gelu", "silu")
RTOL = 1e-9  # floating-point slack when comparing a ratio computed here with a bound


# --------------------------------------------------------------------------------------------
# Independent reference implementation of the experts
# --------------------------------------------------------------------------------------------


def ref_act(kind: str, u: np.ndarray) -> np.ndarray:
    """σ(u); ``gelu_tanh`` is the tanh approximation of gelu, which kind ``gelu`` covers too."""
    if kind == "relu":
        return np.where(u > 0, u, 0.0)
    if kind == "gelu":
        return 0.5 * u * (1.0 + erf(u / math.sqrt(2.0)))
    if kind == "gelu_tanh":  # PyTorch's approximate="tanh", written as PyTorch writes it
        return 0.5 * u * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u**3)))
    return u * 0.5 * (1.0 + np.tanh(0.5 * u))  # silu: sigmoid(u) = (1 + tanh(u/2))/2


def ref_forward(arrays: dict[str, np.ndarray], i: int, x: np.ndarray, kind: str) -> np.ndarray:
    """E_i(x) for a batch x (B, d), straight from the contract's formula."""
    u = x @ arrays["w1"][i].T + (arrays["b1"][i] if "b1" in arrays else 0.0)
    a = ref_act(kind, u)
    if kind == "swiglu":
        a = a * (x @ arrays["w3"][i].T)
    return a @ arrays["w2"][i].T + (arrays["b2"][i] if "b2" in arrays else 0.0)


def make_arrays(rng: np.random.Generator, n: int, h: int, d: int, kind: str, *,
                b1: bool = False, b2: bool = False, similar: float | None = None,
                duplicate: bool = False, scale: float = 1.0) -> dict[str, np.ndarray]:
    def stack(shape: tuple[int, ...]) -> np.ndarray:
        if similar is None:
            return scale * rng.standard_normal((n, *shape))
        base = rng.standard_normal((1, *shape))
        return scale * (base + similar * rng.standard_normal((n, *shape)))

    arrays = {"w1": stack((h, d)), "w2": stack((d, h))}
    if kind == "swiglu":
        arrays["w3"] = stack((h, d))
    if b1:
        arrays["b1"] = rng.standard_normal((n, h))
    if b2:
        arrays["b2"] = rng.standard_normal((n, d))
    if duplicate and n > 1:
        for value in arrays.values():
            value[1] = value[0]
    return arrays


def domain(kind: str, arrays: dict[str, np.ndarray], radius: float | None,
           min_radius: float | None) -> tuple[float, float]:
    """(lo, hi) of the input norms on which the bounds are claimed."""
    lo = min_radius if min_radius is not None else 0.0
    hi = radius if kind == "swiglu" else math.inf
    return lo, hi


def ratio_fn(arrays, kind, i, j):
    """x (B, d) -> ‖E_i(x)‖/‖x‖ (j None) or ‖E_i(x) − E_j(x)‖/‖x‖."""

    def f(x: np.ndarray) -> np.ndarray:
        y = ref_forward(arrays, i, x, kind)
        if j is not None:
            y = y - ref_forward(arrays, j, x, kind)
        return np.linalg.norm(y, axis=1) / np.linalg.norm(x, axis=1)

    return f


def random_inputs(rng, d: int, lo: float, hi: float, count: int = 300) -> np.ndarray:
    """Gaussian directions with norms log-spread over the domain, boundary norms included."""
    a = max(lo, 1e-3)
    b = hi if math.isfinite(hi) else max(a, 1.0) * 1e3
    norms = np.exp(rng.uniform(math.log(a), math.log(b), count))
    norms[:4] = [a, b, a, b]
    if lo == 0.0:
        norms[4] = 1e-6
    v = rng.standard_normal((count, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True) * norms[:, None]


def adversarial_max(f, starts: list[np.ndarray], lo: float, hi: float) -> float:
    """Maximise f over the domain from each start with Nelder–Mead on (direction, log-norm)."""
    best = 0.0
    for x0 in starts:
        d = len(x0)
        n0 = float(np.linalg.norm(x0))

        def point(z: np.ndarray, d: int = d) -> np.ndarray | None:
            u = z[:d]
            nu = float(np.linalg.norm(u))
            if nu == 0.0:
                return None
            if math.isfinite(hi):  # norm in [lo, hi] through a sigmoid
                t = lo + (hi - lo) / (1.0 + math.exp(-float(np.clip(z[d], -40, 40))))
                t = min(max(t, lo), hi)
            else:  # norm in [lo, ∞) (lo may be 0): lo + exp
                t = lo + math.exp(float(np.clip(z[d], -20, 12)))
            return (u / nu * t)[None, :]

        def obj(z: np.ndarray) -> float:
            x = point(z)
            return 0.0 if x is None or not np.linalg.norm(x) > 0 else -float(f(x)[0])

        if math.isfinite(hi):
            frac = min(max((n0 - lo) / max(hi - lo, 1e-300), 1e-6), 1 - 1e-6)
            zt = math.log(frac / (1.0 - frac))
        else:
            zt = math.log(max(n0 - lo, 1e-9))
        res = minimize(obj, np.concatenate([x0, [zt]]), method="Nelder-Mead",
                       options={"maxiter": 120 * (d + 1), "xatol": 1e-9, "fatol": 1e-12})
        best = max(best, -float(res.fun), -obj(np.concatenate([x0, [zt]])))
    return best


def top_right_singular(a: np.ndarray) -> np.ndarray:
    return np.linalg.svd(a)[2][0]


def assert_never_violated(arrays, kind, bounds, rng, lo, hi) -> None:
    n, _, d = arrays["w1"].shape
    for i in range(n):
        for j in [None, *range(i + 1, n)]:
            bound = bounds.beta[i] if j is None else bounds.delta[i, j]
            f = ratio_fn(arrays, kind, i, j)
            x = random_inputs(rng, d, lo, hi)
            vals = f(x)
            seen = float(vals.max())
            assert seen <= bound * (1 + RTOL) + 1e-12, (kind, i, j, seen, bound)
            w = arrays["w1"][i] if j is None else arrays["w1"][i] - arrays["w1"][j]
            starts = [x[int(np.argmax(vals))]]
            if np.any(w):
                v = top_right_singular(w)
                nrm = float(np.linalg.norm(starts[0]))
                starts += [v * nrm, -v * nrm]
            adv = adversarial_max(f, starts, lo, hi)
            assert adv <= bound * (1 + RTOL) + 1e-12, (kind, i, j, adv, bound)


# --------------------------------------------------------------------------------------------
# The main property: analytic bounds hold; empirical estimates stay below them
# --------------------------------------------------------------------------------------------


@st.composite
def cases(draw):
    kind = draw(st.sampled_from(S.KINDS))
    n = draw(st.integers(1, 3))
    h = draw(st.integers(1, 4))
    d = draw(st.integers(1, 4))
    b1 = draw(st.booleans())
    b2 = draw(st.booleans())
    similar = draw(st.sampled_from([None, 0.05, 1e-3]))
    duplicate = draw(st.booleans())
    scale = draw(st.sampled_from([0.2, 1.0, 3.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    radius = draw(st.floats(0.1, 4.0)) if kind == "swiglu" else None
    rng = np.random.default_rng(seed)
    arrays = make_arrays(rng, n, h, d, kind, b1=b1, b2=b2, similar=similar,
                         duplicate=duplicate, scale=scale)
    needs_r = b2 or (b1 and kind != "swiglu")
    min_radius = None
    if needs_r:
        top = radius if radius is not None else 3.0
        min_radius = draw(st.floats(0.05, 1.0)) * top
    return kind, arrays, radius, min_radius, seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_analytic_bounds_never_violated_and_empirical_below(case):
    kind, arrays, radius, min_radius, seed = case
    weights = S.ExpertWeights.from_arrays(arrays)
    analytic = S.analytic_bounds(weights, kind, radius, min_radius=min_radius,
                                 exact_pairs="all")
    rng = np.random.default_rng(seed ^ 0x5EED)
    lo, hi = domain(kind, arrays, radius, min_radius)
    assert_never_violated(arrays, kind, analytic, rng, lo, hi)
    if kind == "gelu":  # the bounds of kind gelu hold for experts with either gelu
        assert_never_violated(arrays, "gelu_tanh", analytic, rng, lo, hi)
    empirical = S.empirical_bounds(weights, kind, radius, rng=seed, min_radius=min_radius,
                                   n_random=32, steps=4)
    assert np.all(empirical.beta <= analytic.beta * (1 + RTOL))
    assert np.all(empirical.delta <= analytic.delta * (1 + RTOL) + 1e-15)
    for b in (analytic, empirical):
        assert np.all(np.diag(b.delta) == 0.0)
        assert np.all(np.isfinite(b.beta)) and np.all(b.beta >= 0)
        np.testing.assert_array_equal(b.delta, b.delta.T)


@pytest.mark.parametrize("kind", PLAIN)
def test_triangle_bound_of_model_is_dominated(kind):
    """The analytic δ is never above MODEL §4's triangle bound with exact numpy norms."""
    rng = np.random.default_rng(7)
    arrays = make_arrays(rng, 4, 6, 5, kind, similar=0.1)
    weights = S.ExpertWeights.from_arrays(arrays)
    got = S.analytic_bounds(weights, kind, exact_pairs="all")
    lip = S.lipschitz_constant(kind)
    w1, w2 = arrays["w1"], arrays["w2"]
    norm = lambda a: np.linalg.norm(a, 2)  # noqa: E731
    for i in range(4):
        for j in range(4):
            if i == j:
                continue
            tri = lip * (norm(w2[i] - w2[j]) * norm(w1[i]) + norm(w2[j]) * norm(w1[i] - w1[j]))
            assert got.delta[i, j] <= tri * (1 + 1e-6)
        assert got.beta[i] <= lip * norm(w2[i]) * norm(w1[i]) * (1 + 1e-6)


def test_gated_bounds_hold_on_wider_dims():
    """A slightly larger SwiGLU case (Lanczos/Cholesky path, k > 32) checked adversarially."""
    rng = np.random.default_rng(3)
    arrays = make_arrays(rng, 3, 40, 36, "swiglu", similar=0.05, scale=0.2)
    weights = S.ExpertWeights.from_arrays(arrays)
    bounds = S.analytic_bounds(weights, "swiglu", 2.0, exact_pairs="all")
    f = ratio_fn(arrays, "swiglu", 0, 1)
    x = random_inputs(rng, 36, 0.0, 2.0, count=400)
    assert f(x).max() <= bounds.delta[0, 1]
    emp = S.empirical_bounds(weights, "swiglu", 2.0, steps=6)
    assert np.all(emp.beta <= bounds.beta) and np.all(emp.delta <= bounds.delta)


# --------------------------------------------------------------------------------------------
# Closed-form cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", S.KINDS)
@pytest.mark.parametrize("bias", [False, True])
def test_identical_experts_have_zero_delta(kind, bias):
    rng = np.random.default_rng(11)
    arrays = make_arrays(rng, 3, 5, 4, kind, b1=bias, b2=bias)
    for value in arrays.values():
        value[2] = value[0]
    weights = S.ExpertWeights.from_arrays(arrays)
    radius = 2.0 if kind == "swiglu" else None
    min_radius = 0.5 if bias else None
    for method in S.METHODS:
        got = S.compute_bounds(weights, kind, method, radius=radius, min_radius=min_radius)
        assert got.delta[0, 2] == 0.0 and got.delta[2, 0] == 0.0
        assert got.delta[0, 1] > 0.0
        if method == "analytic":
            assert got.beta[0] == got.beta[2]
        else:  # an estimate from different random starts: equal up to the search's accuracy
            assert got.beta[0] == pytest.approx(got.beta[2], rel=1e-6)


@pytest.mark.parametrize("kind", S.KINDS)
@pytest.mark.parametrize("c", [-2.5, 0.3, 4.0])
def test_scaling_w2_scales_beta(kind, c):
    rng = np.random.default_rng(5)
    arrays = make_arrays(rng, 2, 5, 4, kind)
    scaled = {k: v.copy() for k, v in arrays.items()}
    scaled["w2"] = c * scaled["w2"]
    radius = 1.7 if kind == "swiglu" else None
    base = S.analytic_bounds(S.ExpertWeights.from_arrays(arrays), kind, radius)
    got = S.analytic_bounds(S.ExpertWeights.from_arrays(scaled), kind, radius)
    np.testing.assert_allclose(got.beta, abs(c) * base.beta, rtol=1e-6)
    np.testing.assert_allclose(got.delta, abs(c) * base.delta, rtol=1e-6)
    emp_base = S.empirical_bounds(S.ExpertWeights.from_arrays(arrays), kind, radius)
    emp = S.empirical_bounds(S.ExpertWeights.from_arrays(scaled), kind, radius)
    np.testing.assert_allclose(emp.beta, abs(c) * emp_base.beta, rtol=1e-9)


@pytest.mark.parametrize("kind", PLAIN)
@pytest.mark.parametrize("c", [-1.0, 0.5, 3.0])
def test_scaled_copy_delta(kind, c):
    """E_1 = c·E_0 (w2 scaled): E_0 − E_1 = (1 − c)E_0, and the bound is |1 − c|·‖W2‖‖W1‖."""
    rng = np.random.default_rng(9)
    arrays = make_arrays(rng, 1, 6, 5, kind)
    arrays = {"w1": np.concatenate([arrays["w1"]] * 2),
              "w2": np.concatenate([arrays["w2"], c * arrays["w2"]])}
    got = S.analytic_bounds(S.ExpertWeights.from_arrays(arrays), kind)
    expected = abs(1 - c) * np.linalg.norm(arrays["w2"][0], 2) * np.linalg.norm(
        arrays["w1"][0], 2)
    assert got.delta[0, 1] <= expected * (1 + 1e-6)
    emp = S.empirical_bounds(S.ExpertWeights.from_arrays(arrays), kind)
    assert emp.delta[0, 1] <= got.delta[0, 1]
    # the estimate sees E_0 − E_1 = (1 − c)·E_0 on the same inputs as E_0
    assert emp.delta[0, 1] >= abs(1 - c) * emp.beta[0] * (1 - 1e-9) or c < 0


def test_relu_single_hidden_unit_is_exact():
    """E(x) = w2·relu(w1·x): sup ‖E(x)‖/‖x‖ = ‖w2‖‖w1‖ (at x = w1); same-w1 pair: ‖Δw2‖‖w1‖."""
    rng = np.random.default_rng(21)
    d = 5
    w1 = rng.standard_normal((1, d))
    w2s = rng.standard_normal((3, d, 1))
    arrays = {"w1": np.stack([w1, w1, rng.standard_normal((1, d))]), "w2": w2s}
    weights = S.ExpertWeights.from_arrays(arrays)
    got = S.analytic_bounds(weights, "relu")
    emp = S.empirical_bounds(weights, "relu")
    for i in range(3):
        exact = np.linalg.norm(w2s[i]) * np.linalg.norm(arrays["w1"][i])
        assert exact <= got.beta[i] <= exact * (1 + 1e-9)
        assert emp.beta[i] >= exact * (1 - 1e-9)
    exact01 = np.linalg.norm(w2s[0] - w2s[1]) * np.linalg.norm(w1)
    assert exact01 <= got.delta[0, 1] <= exact01 * (1 + 1e-9)
    assert emp.delta[0, 1] >= exact01 * (1 - 1e-6)


def test_gelu_bounds_with_biases_hold_for_tanh_gelu_experts():
    """With biases, β and δ use values of σ: ‖E(0)‖ = ‖W2σ(b1) + b2‖ and ‖σ(b1)‖. Kind gelu
    must bound experts with the tanh approximation too, whose values differ from the erf
    form's by up to 4.7e-4 per unit. Expert 0 has b1 where tanh-gelu exceeds erf-gelu most
    (t ≈ −2.699) and b2 = −W2·gelu_erf(b1), so its erf-form E(0) is 0 while its tanh-form E(0)
    is not; experts 1 and 2 differ only in W2 (E_1 − E_2 = ΔW2·σ(b1)) at t ≈ −1.3645, where
    |tanh-gelu| exceeds |erf-gelu|. W1 is tiny, so E is nearly constant and the bounds at
    ‖x‖ = r are driven by these values alone."""
    rng = np.random.default_rng(7)
    d, r = 3, 1.0
    t_beta = minimize_scalar(lambda t: ref_act("gelu", t) - ref_act("gelu_tanh", t),
                             bounds=(-4.0, -2.0), method="bounded").x
    t_delta = minimize_scalar(lambda t: abs(ref_act("gelu", t)) - abs(ref_act("gelu_tanh", t)),
                              bounds=(-2.0, -0.5), method="bounded").x
    w2 = rng.standard_normal((3, d, 1))
    w2[2] = -2.0 * w2[1]
    b1 = np.array([[t_beta], [t_delta], [t_delta]])
    b2 = np.zeros((3, d))
    b2[0] = -w2[0, :, 0] * ref_act("gelu", b1[0])
    arrays = {"w1": 1e-9 * rng.standard_normal((3, 1, d)), "w2": w2, "b1": b1, "b2": b2}
    got = S.analytic_bounds(S.ExpertWeights.from_arrays(arrays), "gelu", min_radius=r,
                            exact_pairs="all")
    # the tanh-form values the bounds must cover, at x = 0 (E is constant up to 1e-9)
    e0_tanh = np.linalg.norm(w2[0, :, 0] * (ref_act("gelu_tanh", b1[0]) - ref_act("gelu", b1[0])))
    assert e0_tanh > 4e-4 * np.linalg.norm(w2[0])  # the case discriminates the two forms
    assert got.beta[0] * r >= e0_tanh
    diff12 = np.linalg.norm(w2[1] - w2[2]) * abs(ref_act("gelu_tanh", b1[1, 0]))
    assert got.delta[1, 2] * r >= diff12
    # and empirically, on sampled inputs with ‖x‖ ≥ r
    for kind in ("gelu_tanh", "gelu"):
        x = random_inputs(rng, d, r, 10 * r)
        for i, j in [(0, None), (1, None), (2, None), (1, 2), (0, 1), (0, 2)]:
            bound = got.beta[i] if j is None else got.delta[i, j]
            seen = float(ratio_fn(arrays, kind, i, j)(x).max())
            assert seen <= bound * (1 + RTOL), (kind, i, j, seen, bound)


# --------------------------------------------------------------------------------------------
# Constants and numerical building blocks
# --------------------------------------------------------------------------------------------


def _max_derivative(fprime, lo: float, hi: float) -> float:
    grid = np.linspace(lo, hi, 200_001)
    vals = fprime(grid)
    k = int(np.argmax(vals))
    res = minimize_scalar(lambda t: -fprime(np.array([t]))[0],
                          bounds=(grid[max(k - 2, 0)], grid[min(k + 2, len(grid) - 1)]),
                          method="bounded", options={"xatol": 1e-13})
    return max(float(vals[k]), -float(res.fun))


def test_lipschitz_constants_are_tight_upper_bounds():
    phi = lambda t: np.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    gelu_erf = _max_derivative(lambda t: 0.5 * (1 + erf(t / math.sqrt(2))) + t * phi(t), -8, 8)
    c = math.sqrt(2 / math.pi)

    def gelu_tanh_prime(t):
        th = np.tanh(c * (t + 0.044715 * t**3))
        return 0.5 * (1 + th) + 0.5 * t * (1 - th**2) * c * (1 + 3 * 0.044715 * t**2)

    gelu_tanh = _max_derivative(gelu_tanh_prime, -8, 8)
    sig = lambda t: 0.5 * (1 + np.tanh(t / 2))  # noqa: E731
    silu = _max_derivative(lambda t: sig(t) * (1 + t * (1 - sig(t))), -20, 20)
    t_star = brentq(lambda t: t * math.tanh(t / 2) - 2, 1, 4)  # silu'' = 0
    silu_root = float(sig(np.array(t_star)) * (1 + t_star * (1 - sig(np.array(t_star)))))
    for const, true in [(S.GELU_ERF_LIP, gelu_erf), (S.GELU_TANH_LIP, gelu_tanh),
                        (S.SILU_LIP, silu), (S.SILU_LIP, silu_root)]:
        assert true <= const < true + 1e-9
    assert S.lipschitz_constant("gelu") >= max(gelu_erf, gelu_tanh)
    assert S.lipschitz_constant("relu") == 1.0
    assert S.lipschitz_constant("swiglu") == S.SILU_LIP
    # the minimum slope is also within [-L, L] (used by the mean-value argument)
    for kind in PLAIN:
        t = np.linspace(-30, 30, 400_001)
        slope = np.diff(ref_act(kind, t)) / np.diff(t)
        assert slope.min() >= -S.lipschitz_constant(kind)
        ratio = ref_act(kind, t[t != 0]) / t[t != 0]  # σ(t) = t·c(t), c ∈ [0, 1]
        assert ratio.min() >= 0.0 and ratio.max() <= S.growth_constant(kind)


@pytest.mark.parametrize("shape", [(6, 3, 5), (5, 8, 3), (4, 70, 40), (4, 40, 90)])
def test_spectral_norm_upper_is_certified_and_tight(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.standard_normal(shape)
    a[0] = 0.0
    a[1] = np.outer(rng.standard_normal(shape[1]), rng.standard_normal(shape[2]))
    a[2] *= np.geomspace(1, 1e-9, shape[2])
    exact = np.linalg.norm(a, 2, axis=(1, 2))
    got = S.spectral_norm_upper(a)
    assert got[0] == 0.0
    assert np.all(got >= exact)
    assert np.all(got <= exact * (1 + 1e-4) + 1e-300)


def test_cholesky_certificate_recovers_from_a_bad_estimate():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((60, 50))
    g = a.T @ a
    lam = float(np.linalg.eigvalsh(g)[-1])
    for theta in (0.0, 0.2 * lam, 0.99 * lam, lam):
        tau = linalg.certify_lambda_max(g.copy(), theta)
        assert tau >= lam
    assert linalg.certify_lambda_max(np.zeros((40, 40)), 0.0) == 0.0


def test_expert_forward_matches_reference():
    rng = np.random.default_rng(4)
    for kind in S.KINDS:
        arrays = make_arrays(rng, 2, 5, 3, kind, b1=True, b2=True)
        weights = S.ExpertWeights.from_arrays(arrays)
        x = rng.standard_normal((7, 3)) * 3
        for i in range(2):
            np.testing.assert_allclose(S.expert_forward(weights, i, x, kind),
                                       ref_forward(arrays, i, x, kind), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(S.expert_forward(weights, 1, x[0], kind),
                                   ref_forward(arrays, 1, x[:1], kind)[0], rtol=1e-12)


def test_exact_pairs_budget_only_changes_tightness():
    rng = np.random.default_rng(8)
    arrays = make_arrays(rng, 5, 40, 36, "gelu", similar=0.05)
    weights = S.ExpertWeights.from_arrays(arrays)
    none = S.analytic_bounds(weights, "gelu", exact_pairs=0)
    some = S.analytic_bounds(weights, "gelu", exact_pairs=3)
    full = S.analytic_bounds(weights, "gelu", exact_pairs="all")
    assert np.all(full.delta <= some.delta) and np.all(some.delta <= none.delta)
    assert np.any(full.delta < none.delta)
    assert any("estimate" in note for note in none.notes) and not full.notes
    emp = S.empirical_bounds(weights, "gelu")
    assert np.all(emp.delta <= full.delta)
    with pytest.raises(InputError):
        S.analytic_bounds(weights, "gelu", exact_pairs=-1)


def test_domain_rules():
    rng = np.random.default_rng(6)
    relu_b = S.ExpertWeights.from_arrays(make_arrays(rng, 2, 3, 3, "relu", b1=True))
    with pytest.raises(InputError, match="min_radius"):
        S.analytic_bounds(relu_b, "relu")
    got = S.analytic_bounds(relu_b, "relu", 5.0, min_radius=0.5)
    assert got.min_radius == 0.5 and got.radius is None and got.notes
    assert got.to_json_dict()["min_radius"] == 0.5
    gated_b1 = S.ExpertWeights.from_arrays(make_arrays(rng, 2, 3, 3, "swiglu", b1=True))
    got = S.analytic_bounds(gated_b1, "swiglu", 2.0)  # E(0) = 0: no lower radius needed
    assert got.min_radius is None and "min_radius" not in got.to_json_dict()
    with pytest.raises(InputError, match="radius"):
        S.analytic_bounds(gated_b1, "swiglu")
    with pytest.raises(InputError, match="min_radius"):
        S.analytic_bounds(gated_b1, "swiglu", 1.0, min_radius=2.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InputError, match="radius"):
            S.analytic_bounds(gated_b1, "swiglu", bad)
    plain = S.ExpertWeights.from_arrays(make_arrays(rng, 2, 3, 3, "silu"))
    got = S.analytic_bounds(plain, "silu", 3.0, min_radius=1.0)
    assert got.radius is None and got.min_radius is None and len(got.notes) == 2
    with pytest.raises(InputError, match="w3"):
        S.analytic_bounds(plain, "swiglu", 1.0)
    with pytest.raises(InputError, match="w3"):
        S.analytic_bounds(gated_b1, "relu")
    with pytest.raises(InputError, match="kind"):
        S.analytic_bounds(plain, "tanh")


def test_bounds_json_dict():
    rng = np.random.default_rng(1)
    weights = S.ExpertWeights.from_arrays(make_arrays(rng, 3, 4, 3, "swiglu"))
    got = S.analytic_bounds(weights, "swiglu", 1.25).to_json_dict()
    assert list(got) == ["beta", "delta", "kind", "method", "radius"]
    assert got["kind"] == "swiglu" and got["method"] == "analytic" and got["radius"] == 1.25
    assert len(got["beta"]) == 3 and all(len(row) == 3 for row in got["delta"])
    assert all(got["delta"][i][i] == 0.0 for i in range(3))
    json.dumps(got, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _save(path: Path, arrays: dict[str, np.ndarray]) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_cli_round_trip_analytic(tmp_path, capsys):
    rng = np.random.default_rng(12)
    arrays = make_arrays(rng, 4, 6, 5, "swiglu", similar=0.1)
    src = _save(tmp_path / "w.npz", arrays)
    out = tmp_path / "bounds.json"
    code = main(["similarity", src, "--kind", "swiglu", "--radius", "2.5", "--out", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    expected = S.analytic_bounds(S.load_expert_weights(src), "swiglu", 2.5).to_json_dict()
    assert doc == expected
    text = capsys.readouterr().out
    assert "analytic" in text and "proven upper bounds" in text and str(out) in text


def test_cli_round_trip_empirical_with_calibration(tmp_path, capsys):
    rng = np.random.default_rng(13)
    arrays = make_arrays(rng, 3, 6, 5, "relu", b1=True)
    src = _save(tmp_path / "w.npz", arrays)
    calib = rng.standard_normal((50, 5))
    calib *= (2.0 / np.linalg.norm(calib, axis=1))[:, None]
    np.save(tmp_path / "x.npy", calib)
    out = tmp_path / "b.json"
    args = ["similarity", src, "--kind", "relu", "--method", "empirical", "--min-radius", "1",
            "--calibration", str(tmp_path / "x.npy"), "--seed", "3", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert doc["method"] == "empirical" and doc["min_radius"] == 1.0
    text = capsys.readouterr().out
    assert "ESTIMATE, NOT A BOUND" in text
    analytic = S.analytic_bounds(S.load_expert_weights(src), "relu", min_radius=1.0)
    assert np.all(np.array(doc["beta"]) <= analytic.beta)
    assert np.all(np.array(doc["delta"]) <= analytic.delta)
    # every calibration row is part of the estimate
    f = ratio_fn(arrays, "relu", 0, None)
    assert doc["beta"][0] >= f(calib).max() * (1 - 1e-12)
    assert main(args) == 0 and json.loads(out.read_text()) == doc  # reproducible by seed


def _bad_npz_cases() -> dict[str, object]:
    ok = make_arrays(np.random.default_rng(0), 2, 3, 4, "relu")

    def with_(**changes):
        def write(path: Path) -> str:
            arrays = {**ok, **changes}
            arrays = {k: v for k, v in arrays.items() if v is not None}
            np.savez(path, **arrays)
            return str(path)
        return write

    def raw(content: bytes):
        def write(path: Path) -> str:
            path.write_bytes(content)
            return str(path)
        return write

    def npy(path: Path) -> str:
        np.save(path.with_suffix(".npy"), ok["w1"])
        return str(path.with_suffix(".npy"))

    def truncated(path: Path) -> str:
        np.savez(path, **ok)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return str(path)

    def directory(path: Path) -> str:
        path.mkdir()
        return str(path)

    nan_w1 = ok["w1"].copy()
    nan_w1[1, 2, 3] = np.nan
    inf_b2 = np.zeros((2, 4))
    inf_b2[0, 1] = np.inf
    return {
        "missing file": lambda path: str(path.with_name("nope.npz")),
        "directory": directory,
        "not npz": raw(b"hello, this is not an archive"),
        "single npy": npy,
        "truncated": truncated,
        "missing w1": with_(w1=None),
        "missing w2": with_(w2=None),
        "unknown key": with_(w4=ok["w1"]),
        "w1 ndim": with_(w1=ok["w1"][0]),
        "w1 empty": with_(w1=np.zeros((0, 3, 4)), w2=np.zeros((0, 4, 3))),
        "w2 shape": with_(w2=ok["w2"][:, :3]),
        "w3 shape": with_(w3=ok["w1"][:, :2]),
        "b1 shape": with_(b1=np.zeros((2, 4))),
        "b2 shape": with_(b2=np.zeros((3, 4))),
        "nan": with_(w1=nan_w1),
        "inf": with_(b2=inf_b2),
        "complex": with_(w2=ok["w2"].astype(complex)),
        "bool": with_(w1=ok["w1"] > 0),
        "object": with_(w2=np.array([None, 1], dtype=object)),
    }


@pytest.mark.parametrize("case", sorted(_bad_npz_cases()))
def test_cli_weight_loader_errors_exit_2(case, tmp_path, capsys):
    path = _bad_npz_cases()[case](tmp_path / "w.npz")
    code = main(["similarity", path, "--kind", "relu", "--out", str(tmp_path / "o.json")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("siftopt: error:") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(InputError):
        S.load_expert_weights(path)


def test_cli_option_errors_exit_2(tmp_path, capsys):
    rng = np.random.default_rng(14)
    plain = _save(tmp_path / "p.npz", make_arrays(rng, 2, 3, 4, "relu"))
    gated = _save(tmp_path / "g.npz", make_arrays(rng, 2, 3, 4, "swiglu"))
    biased = _save(tmp_path / "b.npz", make_arrays(rng, 2, 3, 4, "gelu", b2=True))
    np.save(tmp_path / "far.npy", np.full((3, 4), 10.0))
    np.save(tmp_path / "wide.npy", np.ones((3, 5)))
    np.save(tmp_path / "nan.npy", np.full((3, 4), np.nan))
    out = str(tmp_path / "o.json")
    bad = [
        [gated, "--kind", "swiglu"],  # no radius
        [gated, "--kind", "relu"],  # w3 with a plain kind
        [plain, "--kind", "swiglu", "--radius", "1"],  # no w3
        [plain, "--kind", "tanh"],
        [plain, "--kind", "relu", "--method", "exact"],
        [gated, "--kind", "swiglu", "--radius", "-1"],
        [gated, "--kind", "swiglu", "--radius", "nan"],
        [biased, "--kind", "gelu"],  # biases need --min-radius
        [plain, "--kind", "relu", "--exact-pairs", "some"],
        [plain, "--kind", "relu", "--calibration", str(tmp_path / "wide.npy")],  # analytic
        [gated, "--kind", "swiglu", "--radius", "1", "--method", "empirical",
         "--calibration", str(tmp_path / "far.npy")],
        [plain, "--kind", "relu", "--method", "empirical",
         "--calibration", str(tmp_path / "wide.npy")],
        [plain, "--kind", "relu", "--method", "empirical",
         "--calibration", str(tmp_path / "nan.npy")],
        [plain, "--kind", "relu", "--method", "empirical",
         "--calibration", str(tmp_path / "missing.npy")],
    ]
    for args in bad:
        assert main(["similarity", *args, "--out", out]) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("siftopt: error:") and "\n" not in err, (args, err)
    assert main(["similarity", plain, "--kind", "relu", "--out",
                 str(tmp_path / "no" / "dir" / "o.json")]) == 2
