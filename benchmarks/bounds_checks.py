"""The numbers of docs/bounds.md, re-measured (deterministic and seeded; times excepted).

Usage (from the repository root):

    python benchmarks/bounds_checks.py activations   # §2: activation constants, gelu forms (~1 s)
    python benchmarks/bounds_checks.py khatri-rao    # §5: (∞) against (c); (a), (b), (c) (~5 s)
    python benchmarks/bounds_checks.py norms         # §6: certified against exact norms (~3 s)
    python benchmarks/bounds_checks.py constants     # §6–§8: the code's parameters (<1 s)
    python benchmarks/bounds_checks.py timing        # §6: CPU time of both methods (~35 s CPU)
    python benchmarks/bounds_checks.py ratios        # §9: analytic / empirical (~10 s)

Random weights are Gaussian with entries of variance 1/(fan-in) (W1, W3: 1/d; W2: 1/h), drawn
from ``numpy.random.default_rng(seed)``; the seeds are fixed, so every number but the times is
reproducible. Every bound is computed by the package's public functions in
``siftopt.similarity`` except the forms (∞), (a), (b), (c) of docs/bounds.md §5, which the
package only combines: they are computed here with numpy's exact spectral norms, straight from
the formulas of the doc.
"""

from __future__ import annotations

import os

# single-threaded BLAS, so that the CPU times of `timing` are the times of one core
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import inspect  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402
from scipy.special import expit, ndtr  # noqa: E402

from siftopt.similarity import (  # noqa: E402
    GELU_ERF_LIP,
    GELU_TANH_LIP,
    SILU_LIP,
    ExpertWeights,
    analytic_bounds,
    empirical_bounds,
    spectral_norm_upper,
)

SQRT_2PI = math.sqrt(2.0 * math.pi)
TANH_SCALE = math.sqrt(2.0 / math.pi)


# --- §2 activations ---------------------------------------------------------------------------


def gelu_erf(t):
    return t * ndtr(t)


def gelu_tanh(t):
    return t * expit(2.0 * TANH_SCALE * (t + 0.044715 * t ** 3))


def gelu_erf_grad(t):
    return ndtr(t) + t * np.exp(-0.5 * t * t) / SQRT_2PI


def gelu_tanh_grad(t):
    z = 2.0 * TANH_SCALE * (t + 0.044715 * t ** 3)
    s = expit(z)
    return s + t * s * (1.0 - s) * 2.0 * TANH_SCALE * (1.0 + 3 * 0.044715 * t * t)


def silu_grad(t):
    s = expit(t)
    return s * (1.0 + t * (1.0 - s))


def _extremum(f, lo: float, hi: float, sign: float) -> tuple[float, float]:
    """(t, f(t)) at the maximum (sign 1) or minimum (sign −1) of f on [lo, hi]: a grid, then
    Brent's method on the bracket around the best grid point."""
    grid = np.linspace(lo, hi, 200_001)
    k = int(np.argmax(sign * f(grid)))
    step = grid[1] - grid[0]
    res = minimize_scalar(lambda t: -sign * float(f(np.float64(t))),
                          bounds=(grid[k] - step, grid[k] + step), method="bounded",
                          options={"xatol": 1e-14})
    return float(res.x), float(f(np.float64(res.x)))


def _outward(value: float, decimals: int) -> str:
    """``value`` rounded away from zero at ``decimals`` (an interval that contains it)."""
    scale = 10.0 ** decimals
    rounded = math.ceil(value * scale) / scale if value > 0 else math.floor(value * scale) / scale
    return f"{rounded:.{decimals}f}".replace("-", "−")


def _truncated(value: float) -> str:
    return f"{math.floor(value * 1e11) / 1e11:.11f}"


def activations() -> None:
    print("derivative ranges (rounded outward at 4 decimals):")
    for name, grads in (("gelu", (gelu_erf_grad, gelu_tanh_grad)), ("silu", (silu_grad,))):
        lo = min(_extremum(g, -8.0, 8.0, -1.0)[1] for g in grads)
        hi = max(_extremum(g, -8.0, 8.0, 1.0)[1] for g in grads)
        print(f"  {name}' ranges over [{_outward(lo, 4)}, {_outward(hi, 4)}]")
    print()
    print("| σ | t at the maximum of σ' | max σ' | rounded up (10th decimal) | package constant |")
    print("|---|---|---|---|---|")
    for label, grad, constant in (("gelu, exact (erf)", gelu_erf_grad, GELU_ERF_LIP),
                                  ("gelu, tanh approximation", gelu_tanh_grad, GELU_TANH_LIP),
                                  ("silu", silu_grad, SILU_LIP)):
        t, value = _extremum(grad, 0.0, 8.0, 1.0)
        up = math.ceil(value * 1e10) / 1e10
        print(f"| {label} | {t:.5f} | {_truncated(value)} | {up:.10f} | {constant:.10f} |")
    exact = 0.5 + 0.5 * math.erf(1.0) + math.exp(-1.0) / math.sqrt(math.pi)
    print(f"\ngelu (erf) at t = √2: ½ + ½erf(1) + e^(−1)/√π = {_truncated(exact)}")
    print("(max σ' and the closed form: 11 decimals, truncated)")
    t, gap = _extremum(lambda u: np.abs(gelu_erf(u) - gelu_tanh(u)), -8.0, 8.0, 1.0)
    print(f"largest |gelu_erf − gelu_tanh|: {gap:.1e} at t = {t:.2f}")
    print(f"gelu constant used / erf constant − 1: {GELU_TANH_LIP / GELU_ERF_LIP - 1:.1g}")


# --- random layers ----------------------------------------------------------------------------


def random_layer(rng: np.random.Generator, n: int, h: int, d: int, *, gated: bool,
                 b1: bool = False, uneven: bool = False) -> dict[str, np.ndarray]:
    """Gaussian weights, variance 1/(fan-in); ``b1``: a N(0, 1) first bias; ``uneven``: the rows
    of W1 and W3 (the hidden units) scaled by log-normal factors exp(N(0, 1))."""
    arrays = {"w1": rng.standard_normal((n, h, d)) / math.sqrt(d),
              "w2": rng.standard_normal((n, d, h)) / math.sqrt(h)}
    if gated:
        arrays["w3"] = rng.standard_normal((n, h, d)) / math.sqrt(d)
    if uneven:
        for key in ("w1", "w3"):
            if key in arrays:
                arrays[key] = arrays[key] * np.exp(rng.standard_normal((n, h, 1)))
    if b1:
        arrays["b1"] = rng.standard_normal((n, h))
    return arrays


# --- §5 the forms of the SwiGLU β ----------------------------------------------------------------


def _norm2(a: np.ndarray) -> float:
    return float(np.linalg.norm(a, 2))


def swiglu_forms(w1, w2, w3, b1, rho: float) -> dict[str, float]:
    """The bounds (∞), (a), (b) and (c) of docs/bounds.md §5 on ‖W2 g‖/‖x‖ for one expert, with
    exact spectral norms. K is formed explicitly (rows sym(w1_k ⊗ w3_k))."""
    h, d = w1.shape
    b1 = np.zeros(h) if b1 is None else np.abs(b1)
    r1 = np.linalg.norm(w1, axis=1)
    r3 = np.linalg.norm(w3, axis=1)
    a = r1 * rho + b1
    n1, n2, n3 = _norm2(w1), _norm2(w2), _norm2(w3)
    inf = n2 * min(a.max() * n3, (n1 * rho + np.linalg.norm(b1)) * r3.max())
    sa = np.sqrt(a)
    form_a = _norm2(w2 * sa) * _norm2(sa[:, None] * w3)
    bias = _norm2(w2 * np.sqrt(b1)) * _norm2(np.sqrt(b1)[:, None] * w3)
    s3 = np.sqrt(r3)
    form_b = rho * _norm2(w2 * s3) * _norm2(s3[:, None] * w1) + bias
    outer = np.einsum("ki,kj->kij", w1, w3)
    k = (0.5 * (outer + outer.transpose(0, 2, 1))).reshape(h, d * d)
    c2 = np.linalg.norm(w2, axis=0)
    rk = np.linalg.norm(k, axis=1)
    s = np.sqrt(c2 / rk)
    form_c = rho * min(n2 * _norm2(k), _norm2(w2 / s) * _norm2(s[:, None] * k)) + bias
    return {"inf": inf, "a": form_a, "b": form_b, "c": form_c}


def khatri_rao() -> None:
    d, n = 32, 16
    print(f"(∞) / (c) on random SwiGLU experts without biases, d = {d}, {n} experts per layer "
          "(seed 0; the ratio does not depend on ρ):\n")
    print("| d | h | experts | median (∞)/(c) | min | max |")
    print("|---:|---:|---:|---:|---:|---:|")
    for h in (32, 64, 128):
        rng = np.random.default_rng(0)
        lay = random_layer(rng, n, h, d, gated=True)
        ratios = []
        for i in range(n):
            f = swiglu_forms(lay["w1"][i], lay["w2"][i], lay["w3"][i], None, math.sqrt(d))
            ratios.append(f["inf"] / f["c"])
        print(f"| {d} | {h} | {n} | {np.median(ratios):.2f} | {min(ratios):.2f} | "
              f"{max(ratios):.2f} |")
    # (c) against (a) and (b): 4 variants × 45 layers, sizes drawn per layer
    rng = np.random.default_rng(1)
    print("\n(c) against (a) and (b) on random SwiGLU layers (4 experts, d in 8/16/32, "
          "h in 16/32/64, ρ = √d, seed 1):\n")
    print("| b1 | row scales | layers | (c) smallest for every expert | "
          "smallest min((a), (b)) / (c) |")
    print("|---|---|---:|---:|---:|")
    total = wins_total = 0
    for b1 in (False, True):
        for uneven in (False, True):
            wins, closest = 0, math.inf
            for _ in range(45):
                d_l = int(rng.choice([8, 16, 32]))
                h_l = int(rng.choice([16, 32, 64]))
                lay = random_layer(rng, 4, h_l, d_l, gated=True, b1=b1, uneven=uneven)
                ok = True
                for i in range(4):
                    f = swiglu_forms(lay["w1"][i], lay["w2"][i], lay["w3"][i],
                                     lay["b1"][i] if b1 else None, math.sqrt(d_l))
                    other = min(f["a"], f["b"])
                    closest = min(closest, other / f["c"])
                    ok &= f["c"] < other
                wins += ok
            total += 45
            wins_total += wins
            print(f"| {'yes' if b1 else 'no'} | {'uneven' if uneven else 'even'} | 45 | "
                  f"{wins} | {closest:.3f} |")
    print(f"\n(c) smallest for every expert in {wins_total} of {total} layers")


# --- §6 certified norms -------------------------------------------------------------------------


def norms() -> None:
    rng = np.random.default_rng(0)
    print("| m × k | matrices | median (certified − exact)/exact | largest |")
    print("|---|---:|---:|---:|")
    for m, k in ((64, 16), (64, 32), (128, 33), (256, 64), (512, 256), (1024, 256)):
        mats = rng.standard_normal((20, m, k))
        mats[10:] *= np.exp(rng.standard_normal((10, 1, k)))  # uneven column scales
        upper = spectral_norm_upper(mats)
        exact = np.linalg.norm(mats, 2, axis=(1, 2))
        assert np.all(upper >= exact)
        excess = upper / exact - 1
        print(f"| {m} × {k} | 20 | {np.median(excess):.1e} | {np.max(excess):.1e} |")


def constants() -> None:
    from siftopt.similarity import linalg
    from siftopt.similarity.checkpoint import F32_RADIUS_SLACK, LOW_PRECISION_RADIUS_SLACK

    steps = inspect.signature(linalg._lanczos_max).parameters["steps"].default
    n_random = inspect.signature(empirical_bounds).parameters["n_random"].default
    print(f"largest Gram matrix for the eigensolver: k <= {linalg._SMALL_GRAM}")
    print(f"Lanczos steps: {steps}")
    ladder = next(c for c in linalg.certify_lambda_max.__code__.co_consts
                  if isinstance(c, tuple) and c and all(isinstance(v, float) for v in c))
    print("relative margins ϱ tried by the Cholesky certificate: "
          + ", ".join(f"{v:g}" for v in ladder))
    print(f"pairs of 256 experts: {256 * 255 // 2}")
    print(f"Gaussian directions in the empirical pool: {n_random}")
    print(f"radius slack for bf16/f16: {LOW_PRECISION_RADIUS_SLACK}; "
          f"two roundings by 2^-8: {(1 + 2.0 ** -8) ** 2:.4f}")
    print(f"radius slack for float32: 1 + {F32_RADIUS_SLACK - 1:.0e}")


# --- §6 timing, §9 ratios -----------------------------------------------------------------------


TIMING = ((64, 512, 256, "relu"), (64, 256, 256, "swiglu"), (256, 256, 128, "relu"),
          (256, 256, 256, "swiglu"))


def timing() -> None:
    print("| experts, h, d, kind     | analytic (auto) | empirical |")
    print("|-------------------------|-----------------|-----------|")
    for n, h, d, kind in TIMING:
        rng = np.random.default_rng(0)
        weights = ExpertWeights.from_arrays(random_layer(rng, n, h, d, gated=kind == "swiglu"))
        radius = math.sqrt(d) if kind == "swiglu" else None
        seconds = []
        for method in (analytic_bounds, empirical_bounds):
            started = time.process_time()
            method(weights, kind, radius)
            seconds.append(time.process_time() - started)
        label = f"{n}, {h}, {d}, {kind}"
        ana, emp = (f"{value:.1f} s" for value in seconds)
        print(f"| {label:<23} | {ana:<15} | {emp:<9} |")


def ratios() -> None:
    print("analytic (exact_pairs='all') / empirical (seed 0) on random layers of 8 experts, "
          "weight seeds 0-2, ρ = √d for swiglu; over the 24 β and the 168 off-diagonal δ of "
          "each row\n")
    print("| kind | d | h | β: median | β: range | δ: median | δ: range |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    off = ~np.eye(8, dtype=bool)
    for kind in ("relu", "gelu", "silu", "swiglu"):
        for d, h in ((8, 32), (32, 64), (64, 256)):
            beta, delta = [], []
            for seed in range(3):
                rng = np.random.default_rng(seed)
                weights = ExpertWeights.from_arrays(random_layer(rng, 8, h, d,
                                                                 gated=kind == "swiglu"))
                radius = math.sqrt(d) if kind == "swiglu" else None
                ana = analytic_bounds(weights, kind, radius, exact_pairs="all")
                emp = empirical_bounds(weights, kind, radius, rng=0)
                beta.extend(np.asarray(ana.beta) / np.asarray(emp.beta))
                delta.extend(np.asarray(ana.delta)[off] / np.asarray(emp.delta)[off])
            print(f"| {kind} | {d} | {h} | {np.median(beta):.2f} | {min(beta):.2f}–"
                  f"{max(beta):.2f} | {np.median(delta):.2f} | {min(delta):.2f}–"
                  f"{max(delta):.2f} |")


COMMANDS = {"activations": activations, "khatri-rao": khatri_rao, "norms": norms,
            "constants": constants, "timing": timing, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    COMMANDS[parser.parse_args().command]()


if __name__ == "__main__":
    main()
