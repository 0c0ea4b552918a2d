"""The numbers of docs/fading.md, accuracy.md and real-models.md, re-derived by the package.

Usage (from the repository root), one subcommand per group of documented numbers:

    python benchmarks/fading_accuracy.py limits        # fading §1/§3: overflow, tail, underflow
    python benchmarks/fading_accuracy.py adaptive      # fading §2: closed form vs quadrature
    python benchmarks/fading_accuracy.py fixed         # fading §3: integral vs Gauss–Legendre
    python benchmarks/fading_accuracy.py tables        # fading §6: the example tables
    python benchmarks/fading_accuracy.py mc-seeds      # fading §7: samplers over 60 seeds
    python benchmarks/fading_accuracy.py csi           # fading §8: a negative value of CSI
    python benchmarks/fading_accuracy.py closed-forms  # fading §8: simulation vs closed forms
    python benchmarks/fading_accuracy.py timing        # fading §8: simulation speed
    python benchmarks/fading_accuracy.py digits --out results/accuracy   # docs/accuracy.md
    python benchmarks/fading_accuracy.py lm --out results/lm             # docs/accuracy.md (lm)
    python benchmarks/fading_accuracy.py reader         # docs/real-models.md §1, §3 constants
    python benchmarks/fading_accuracy.py lm-bench --lm results/lm --out results/lm-bench
                                                       # docs/real-models.md §4 (trace bench)

Every random draw is seeded, so every number but the times is the same on every run. Each
number is printed on a line ``label: value``; ``benchmarks/reproduce.py`` (claims in
``benchmarks/claims/fading.toml``, ``accuracy.toml`` and ``real-models.toml``) re-runs these
commands and compares the printed numbers with the documents.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

LN2 = math.log(2.0)
N0 = 10 ** (-17.4) * 1e-3  # -174 dBm/Hz in W/Hz
S = 4096 * 16  # bits per token per direction (docs/fading.md §6)
ROOT = Path(__file__).resolve().parent.parent


def say(label: str, value: object) -> None:
    print(f"{label}: {value}", flush=True)


def db(x: float) -> float:
    return 10 ** (x / 10)


def log_uniform(rng: np.random.Generator, lo: float, hi: float, size: int) -> np.ndarray:
    return 10.0 ** rng.uniform(math.log10(lo), math.log10(hi), size)


def node(**overrides: object) -> dict[str, object]:
    """The keyword arguments of ``rayleigh_node_table`` for one node (the tests' defaults)."""
    from siftopt.model.physics import shannon_rate_bps

    base: dict[str, object] = dict(
        bits_per_token=S, n_max=6, latency_s=0.03, compute_s_per_token=2e-4,
        compute_j_per_token=0.0, bandwidth_hz=5e6, gain_up_mean=db(-105),
        gain_down_mean=db(-103), power_up_w=0.2, power_down_w=1.0, noise_psd_w_per_hz=N0,
        weight_up=1.0, weight_down=1.0, power_control="adaptive", outage_max=0.1)
    base.update(overrides)
    for d in ("up", "down"):
        base[f"rate_{d}_bps"] = shannon_rate_bps(base["bandwidth_hz"], base[f"power_{d}_w"],
                                                 base[f"gain_{d}_mean"], N0)
    return base


def bits_for_threshold(x_th: float, window: float, b: float, g: float, p: float) -> float:
    """The payload (bits) whose full-power threshold is x_th."""
    return window * b * math.log1p(x_th * p * g / (N0 * b)) / LN2


# --- fading §1, §3: limits ----------------------------------------------------------------------


def bisect(ok: Callable[[float], bool], lo: float, hi: float, steps: int = 200) -> float:
    """The boundary between ``ok(lo)`` true and ``ok(hi)`` false."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def cmd_limits(_args: argparse.Namespace) -> None:
    from siftopt.model.fading import direction_threshold, fixed_power_integral

    b, window = 1e6, 1.0
    # mean SNR a = 1 (P g = N0 B): the threshold is expm1(ln2·R/B) itself
    finite = bisect(lambda rb: math.isfinite(direction_threshold(rb * b * window, window, b,
                                                                 N0 * b, 1.0, N0)), 1.0, 2000.0)
    say("threshold finite up to R/B (bit/s/Hz)", f"{finite:.0f}")
    tail = math.exp(-40.0) / (1.0 - math.exp(-1.0))
    say("neglected tail share e^-40/(1-e^-1)", f"{tail:.0e}")
    under = [bisect(lambda x, a=a: fixed_power_integral(x, a) > 0.0, 1.0, 2000.0)
             for a in (1e-8, 1e-3, 1.0, 1e6, 1e15)]
    say("fixed-power integral underflows to 0 beyond x_th (a in [1e-8, 1e15])",
        f"{min(under):.0f}–{max(under):.0f}")
    from siftopt.analysis.simulate import CHUNK_RUNS, DEFAULT_RUNS, MAX_PATTERN_NODES, X_MIN

    say("simulate: default runs, statistical CSI", DEFAULT_RUNS["statistical"])
    say("simulate: default runs, instantaneous CSI", DEFAULT_RUNS["instantaneous"])
    say("simulate: runs per chunk", CHUNK_RUNS)
    say("simulate: exact degradation expectations up to used nodes", MAX_PATTERN_NODES)
    say("simulate: realised fading clamped below at", f"{X_MIN:g}")


# --- fading §2: the adaptive closed form ----------------------------------------------------------


def cmd_adaptive(args: argparse.Namespace) -> None:
    from scipy import integrate

    from siftopt.model.fading import direction_threshold, expected_energy_adaptive

    rng = np.random.default_rng(args.seed)
    b, g = 5e6, 1e-10
    thresholds = log_uniform(rng, 1e-12, 500.0, args.count)
    windows = log_uniform(rng, 1e-4, 1e-1, args.count)
    powers = log_uniform(rng, 0.01, 10.0, args.count)
    worst = 0.0
    for x_th, window, p in zip(thresholds, windows, powers, strict=True):
        bits = bits_for_threshold(float(x_th), float(window), b, g, float(p))
        got = expected_energy_adaptive(bits, float(window), b, g, float(p), N0)
        x = direction_threshold(bits, float(window), b, g, float(p), N0)

        def f(t: float, x: float = x, window: float = float(window), p: float = float(p)) -> float:
            return window * p * x / t * math.exp(-t)

        head, _ = integrate.quad(f, x, x + 1.0, epsabs=0, epsrel=1e-13, limit=200)
        tail, _ = integrate.quad(f, x + 1.0, math.inf, epsabs=0, epsrel=1e-13, limit=200)
        worst = max(worst, abs(got - (head + tail)) / (head + tail))
    say("random thresholds (log-uniform in [1e-12, 500])", args.count)
    say("largest relative difference, closed form vs quadrature", f"{worst:.1e}")


# --- fading §3: the fixed-power integral ----------------------------------------------------------

_GL_X, _GL_W = np.polynomial.legendre.leggauss(40)


def gauss_legendre_fixed_integral(x_th: float, a: float) -> float:
    """∫_{x_th}^∞ e^{-x}/log2(1 + a x) dx by composite 40-point Gauss–Legendre in u = x − x_th,
    panels growing by 1.5 from x_th·1e-6 to u = 60 (the reference of tests/test_fading.py)."""
    count = int(math.ceil(math.log(60.0 / (x_th * 1e-6)) / math.log(1.5))) if x_th < 6e7 else 0
    inner = x_th * 1e-6 * 1.5 ** np.arange(count)
    edges = np.concatenate([[0.0], inner[inner < 60.0], [60.0]])
    lo, hi = edges[:-1, None], edges[1:, None]
    u = 0.5 * (hi - lo) * _GL_X + 0.5 * (hi + lo)
    x = x_th + u
    values = np.exp(-x) * LN2 / np.log1p(a * x)
    return float(np.sum(0.5 * (hi - lo)[:, 0] * (values @ _GL_W)))


def cmd_fixed(args: argparse.Namespace) -> None:
    from siftopt.model.fading import FIXED_INTEGRAL_RTOL, fixed_power_integral

    rng = np.random.default_rng(args.seed)
    thresholds = log_uniform(rng, 1e-300, 700.0, args.count)
    snrs = log_uniform(rng, 1e-8, 1e15, args.count)
    worst, costs = 0.0, []
    fixed_power_integral(1.0, 1.0)  # warm up
    for x_th, a in zip(thresholds, snrs, strict=True):
        started = time.perf_counter()
        got = fixed_power_integral(float(x_th), float(a))
        costs.append(time.perf_counter() - started)
        ref = gauss_legendre_fixed_integral(float(x_th), float(a))
        worst = max(worst, abs(got - ref) / ref)
    say("random pairs (x_th in [1e-300, 700], a in [1e-8, 1e15], log-uniform)", args.count)
    say("largest relative difference, integral vs Gauss-Legendre", f"{worst:.1e}")
    say("documented guarantee FIXED_INTEGRAL_RTOL", f"{FIXED_INTEGRAL_RTOL:g}")
    say("median cost per integral (us)", f"{1e6 * float(np.median(costs)):.0f}")


# --- fading §6: the example tables ----------------------------------------------------------------

TABLE_CASES = [
    ("fixed, concave",
     "B = 5 MHz, ḡ↑ = −95 dB, ḡ↓ = −103 dB, T = 10 ms, c = 0.2 ms, outage_max = 0.1",
     dict(power_control="fixed", gain_up_mean=db(-95), latency_s=0.01)),
    ("adaptive, concave",
     "B = 20 MHz, ḡ = −110 dB both, T = 100 ms, c = 0, outage_max = 0.1",
     dict(gain_up_mean=db(-110), gain_down_mean=db(-110), bandwidth_hz=2e7, latency_s=0.1,
          compute_s_per_token=0.0, n_max=6)),
    ("adaptive, convex",
     "B = 5 MHz, ḡ = −95 dB both, T = 10 ms, c = 0.2 ms, outage_max = 0.1",
     dict(gain_up_mean=db(-95), gain_down_mean=db(-95), latency_s=0.01, n_max=4)),
    ("fixed, **decreasing**",
     "B = 20 MHz, ḡ = −102 dB both, T = 30 ms, c = 3 ms, outage_max = 0.2",
     dict(power_control="fixed", bandwidth_hz=2e7, gain_up_mean=db(-102),
          gain_down_mean=db(-102), compute_s_per_token=3e-3, n_max=7, outage_max=0.2)),
]


def cmd_tables(_args: argparse.Namespace) -> None:
    from siftopt.model.fading import rayleigh_node_table
    from siftopt.model.physics import is_convex

    print("| case | parameters | Ē(n), µJ, n = 0.. | p(cap) |")
    print("|---|---|---|---|")
    last = None
    for name, text, overrides in TABLE_CASES:
        table = rayleigh_node_table(**node(**overrides))
        energies = [1e6 * float(e) for e in table.energy_j[: table.cap + 1]]
        cells = [f"**{e:.2f}**" if i and e < energies[i - 1] else f"{e:.2f}" if e else "0"
                 for i, e in enumerate(energies)]
        print(f"| {name} | {text} | {', '.join(cells)} | {table.outage[table.cap]:.3f} |")
        last = table
        assert is_convex(np.asarray(table.energy_j[: table.cap + 1])) == (name ==
                                                                          "adaptive, convex")
    assert last is not None
    cap = last.cap
    say("last row: the last token lowers the expected energy by (%)",
        f"{100 * (1 - last.energy_j[cap] / last.energy_j[cap - 1]):.1f}")
    say("last row: outage before the last token (%)", f"{100 * last.outage[cap - 1]:.1f}")
    say("last row: outage with the last token (%)", f"{100 * last.outage[cap]:.1f}")


# --- fading §7: the samplers against the closed forms, over many seeds ---------------------------


def sampler_deviations(seed: int) -> list[float]:
    """|simulated − closed form| / standard error of every Monte Carlo check of
    tests/test_fading.py, with the random generator seeded by ``seed``."""
    from siftopt.analysis.simulate import (
        realised_direction_energy,
        realised_node_energy,
        sample_link_success,
    )
    from siftopt.model.fading import (
        expected_energy_adaptive,
        expected_energy_fixed,
        rayleigh_node_table,
    )

    rng = np.random.default_rng(seed)
    out: list[float] = []

    def z(samples: np.ndarray, expected: float) -> float:
        se = float(samples.std(ddof=1)) / math.sqrt(samples.size)
        return abs(float(samples.mean()) - expected) / se if se > 0 else 0.0

    b, p = 5e6, 0.2
    for mode in ("fixed", "adaptive"):  # per direction, 400 000 draws
        fn = expected_energy_fixed if mode == "fixed" else expected_energy_adaptive
        for x_th, window, g in ((1e-4, 3e-2, db(-95)), (0.09, 2e-3, db(-100)),
                                (0.7, 5e-3, db(-110)), (2.0, 1e-2, db(-112))):
            bits = bits_for_threshold(x_th, window, b, g, p)
            x = rng.standard_exponential(400_000)
            e = realised_direction_energy(x, bits=bits, window_s=window, bandwidth_hz=b,
                                          mean_gain=g, power_max_w=p, noise_psd_w_per_hz=N0,
                                          power_control=mode)
            out.append(z(e, fn(bits, window, b, g, p, N0)))
    # outage frequency per load, 200 000 draws
    t = rayleigh_node_table(**node(outage_max=0.5, n_max=8, gain_up_mean=db(-110)))
    s = sample_link_success(rng, t.threshold_up, t.threshold_down, 200_000)
    freq = 1.0 - s.success.mean(axis=0)
    for n in range(1, t.cap + 1):
        se = math.sqrt(t.outage[n] * (1 - t.outage[n]) / 200_000)
        out.append(abs(freq[n] - t.outage[n]) / se)
    # node energy per load, both modes, 200 000 draws
    for mode in ("adaptive", "fixed"):
        kw = node(power_control=mode, weight_up=0.5, weight_down=2.0, compute_j_per_token=1e-5,
                  outage_max=0.3, gain_up_mean=db(-110))
        t = rayleigh_node_table(**kw)
        draws = sample_link_success(rng, 0.0, 0.0, 200_000)
        for n in range(1, t.cap + 1):
            out.append(z(realised_node_energy(t, n, draws.x_up, draws.x_down), t.energy_j[n]))
    # the decreasing table: the paired difference Ē(6) − Ē(7)
    t = rayleigh_node_table(**node(power_control="fixed", bandwidth_hz=2e7,
                                   gain_up_mean=db(-102), gain_down_mean=db(-102),
                                   compute_s_per_token=3e-3, n_max=7, outage_max=0.2))
    draws = sample_link_success(rng, 0.0, 0.0, 200_000)
    diff = (realised_node_energy(t, 6, draws.x_up, draws.x_down)
            - realised_node_energy(t, 7, draws.x_up, draws.x_down))
    out.append(z(diff, t.energy_j[6] - t.energy_j[7]))
    # compute energy charged only when the uplink arrived
    t = rayleigh_node_table(**node(compute_j_per_token=2e-3, outage_max=0.4,
                                   gain_up_mean=db(-112), n_max=4))
    draws = sample_link_success(rng, 0.0, 0.0, 200_000)
    out.append(z(realised_node_energy(t, t.cap, draws.x_up, draws.x_down), t.energy_j[t.cap]))
    return out


def cmd_mc_seeds(args: argparse.Namespace) -> None:
    deviations = [sampler_deviations(seed) for seed in range(args.first, args.first + args.seeds)]
    flat = [d for per_seed in deviations for d in per_seed]
    say("draws per direction", 400_000)
    say("draws per node", 200_000)
    say("seeds", args.seeds)
    say("comparisons per seed", len(deviations[0]))
    say("largest deviation (standard errors)", f"{max(flat):.1f}")


# --- fading §8: value of CSI, simulation against closed forms, speed ------------------------------


def cmd_csi(_args: argparse.Namespace) -> None:
    from siftopt.analysis.simulate import simulate
    from siftopt.experiments.synthetic import random_instance

    inst = random_instance(9, fading="rayleigh", power_control="fixed", num_tokens=2)
    rep = simulate(inst, "brute", runs=300, seed=5, csi="instantaneous")
    st, ins, ex = rep.statistical, rep.instantaneous, rep.extras
    used = [node for node in st.nodes if node.tokens]
    say("runs", st.runs)
    say("nodes used", len(used))
    say("outage of the used node", f"{used[0].outage.expected:.3f}")
    say("unconditional saving (J)", f"{ex.saving.value:.1e}")
    say("unconditional saving, CI high (J)", f"{ex.saving.high:.1e}")
    say("unconditional saving (%)", f"{100 * ex.relative_saving:.0f}")
    ok = np.isfinite(ins.energy_j) & ~st.violated
    within = ex.saving_within_budget.value / float(np.mean(st.energy_j[ok]))
    say("saving over the runs within budget (%)", f"{100 * within:+.0f}")


def closed_form_deviations(inst, method: str, runs: int, seed: int) -> list[float] | None:
    """|simulated − closed form| / standard error of every statistic of ``simulate`` (as in
    tests/test_simulate.py), None when the decision uses no remote node."""
    from siftopt.analysis.simulate import (
        outage_patterns,
        plan_from_evaluation,
        realised_degradation,
        simulate,
        summarise_degradation,
    )
    from siftopt.facade import solve

    rep = simulate(inst, method, runs=runs, seed=seed)
    st = rep.statistical
    if st is None or rep.status not in ("optimal", "feasible"):
        return None
    plan = plan_from_evaluation(inst, solve(inst, method).evaluation)
    if not plan.used.any():
        return None
    out: list[float] = []

    def add(value: float, expected: float, se: float) -> None:
        if se > 0:
            out.append(abs(value - expected) / se)
        elif value != expected:
            out.append(math.inf)

    patterns, prob = outage_patterns(plan)
    summary = summarise_degradation(plan, realised_degradation(plan, patterns))

    def moments(values: np.ndarray) -> tuple[float, float]:
        mu = float(prob @ values)
        return mu, math.sqrt(float(prob @ (values - mu) ** 2) / runs)

    add(st.energy.value, st.energy.expected, st.energy.se)
    p = plan.outage_prob[plan.used]
    u = int(plan.used.sum())
    add(st.outage.value, float(p.mean()), math.sqrt(float((p * (1 - p)).sum()) * runs) / (runs * u))
    q = 1.0 - float(np.prod(1.0 - p))
    add(st.outage_any.value, q, math.sqrt(q * (1 - q) / runs))
    for est, values in ((st.degradation_mean, summary.mean), (st.degradation_max, summary.max),
                        (st.violation, summary.violated.astype(float))):
        add(est.value, *moments(values))
    if st.over_share is not None:
        add(st.over_share.value, *moments(summary.over_share))
    for node_stats in st.nodes:
        if node_stats.tokens:
            pm = node_stats.outage.expected
            add(node_stats.outage.value, pm, math.sqrt(pm * (1 - pm) / runs))
            add(node_stats.energy.value, node_stats.energy.expected, node_stats.energy.se)
    return out


def cmd_closed_forms(args: argparse.Namespace) -> None:
    from siftopt.experiments.synthetic import random_instance
    from siftopt.io.instance_file import load_instance

    example = load_instance(ROOT / "instances" / "example-decode-rayleigh.json")
    cases = [(random_instance(seed, fading="rayleigh", power_control=power,
                              num_tokens=1 + seed % 4), 20_000)
             for seed in range(40) for power in ("fixed", "adaptive")]
    deviations: list[float] = []
    used_instances = set()
    for k in range(args.seeds):
        for index, (inst, runs) in enumerate([*cases, (example, 100_000)]):
            found = closed_form_deviations(inst, "highs", runs, seed=1000 * k + index)
            if found is not None:
                used_instances.add(index)
                deviations.extend(found)
    say("random instances with a decision that uses a remote node",
        len(used_instances - {len(cases)}))
    say("the shipped example uses a remote node", len(cases) in used_instances)
    say("runs per random instance", 20_000)
    say("runs of the example", 100_000)
    say("simulation seeds per instance", args.seeds)
    say("comparisons", len(deviations))
    say("largest deviation (standard errors)", f"{max(deviations):.2f}")


def cmd_timing(_args: argparse.Namespace) -> None:
    from siftopt.analysis.simulate import simulate
    from siftopt.facade import solve
    from siftopt.io.instance_file import load_instance

    inst = load_instance(ROOT / "instances" / "example-decode-rayleigh.json")
    simulate(inst, "brute", runs=10)  # warm up

    def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        return min(times)

    solve_s = best_of(lambda: solve(inst, "brute"))
    for runs in (100_000, 1_000_000):
        seconds = best_of(lambda runs=runs: simulate(inst, "brute", runs=runs)) - solve_s
        say(f"{runs} realisations after the solve (s)", f"{seconds:.2g}")
    for method in ("highs", "brute"):
        simulate(inst, method, runs=2, csi="instantaneous")  # warm up
        seconds = best_of(lambda method=method: simulate(inst, method, runs=100,
                                                        csi="instantaneous"), repeat=1)
        say(f"instantaneous CSI, {method}, per realisation (ms)", f"{1e3 * seconds / 100:.0f}")


# --- docs/accuracy.md ---------------------------------------------------------------------------


def fmt_range(low: float, high: float, digits: int = 2) -> str:
    return f"{low:.{digits}f}–{high:.{digits}f}"


def cmd_digits(args: argparse.Namespace) -> None:
    from siftopt.experiments.validate import (
        ValidationConfig,
        markdown_table,
        run_validation,
        write_outputs,
    )
    from siftopt.experiments.validate.scenario import make_scenario
    from siftopt.model.physics import shannon_rate_bps

    cfg = ValidationConfig.make(seed=0, quick=False, experts=16, top_k=2, activation="relu",
                                batch_tokens=64)
    res = run_validation(cfg, progress=lambda m: print(f"digits: {m}", file=sys.stderr))
    write_outputs(args.out, res)
    rows = res.rows
    print("## The full table (results.md)\n")
    print(markdown_table(rows))
    by = {(r["eps_fraction"], r["method"]): r for r in rows}
    fracs = list(cfg.eps_fractions)
    print("\n## Headline\n")
    print("| ε / ε_skip | ε | sift-ratio: saved | sift-ratio: accuracy | exact: saved "
          "| exact: accuracy | exact: certified ≥ |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for f in fracs:
        s, e = by[(f, "sift-ratio")], by[(f, "highs")]
        print(f"| {f:g} | {f * res.eps_base:.3g} | {s['saved_vs_topk_pct']:.1f} % "
              f"| {100 * s['accuracy']:.2f} % | {e['saved_vs_topk_pct']:.1f} % "
              f"| {100 * e['accuracy']:.2f} % | {100 * e['certified_accuracy']:.2f} % |")
    print("\n## Numbers\n")
    tokens = res.num_test
    blocks = math.ceil(tokens / cfg.batch_tokens)
    tr = cfg.training
    say("experts", cfg.num_experts)
    say("top-k", cfg.top_k)
    say("model dim d", cfg.model_dim)
    say("expert hidden dim", cfg.ffn_dim)
    say("load-balancing loss weight", f"{tr.aux_weight:g}")
    say("weight decay", f"{tr.weight_decay:g}")
    say("learning rate", f"{tr.learning_rate:g}")
    say("minibatch", tr.batch_size)
    say("dense epochs", tr.dense_epochs)
    say("upcycling noise (% of the RMS weight)", f"{100 * tr.upcycle_noise:g}")
    say("MoE epochs", tr.moe_epochs)
    quick = ValidationConfig.make(seed=0, quick=True)
    say("--quick: test tokens", quick.max_test_tokens)
    say("--quick: budgets", len(quick.eps_fractions))
    say("digits images in all", res.num_train + res.num_test)
    say("training images", res.num_train)
    say("test images", res.num_test)
    say("trained test accuracy (%)", f"{100 * res.model_accuracy:.2f}")
    say("right answers on the test set", round(res.model_accuracy * tokens))
    beta, delta = res.bounds.beta, res.bounds.delta.copy()
    np.fill_diagonal(delta, np.inf)
    closest = delta.min(axis=1) / beta
    say("closest other expert's delta / beta, per expert", fmt_range(closest.min(), closest.max()))
    say("beta range", fmt_range(beta.min(), beta.max()))
    t = res.tightness
    say("beta ratio median", f"{t['beta_ratio_median']:.2f}")
    say("beta ratio max", f"{t['beta_ratio_max']:.2f}")
    say("delta ratio median", f"{t['delta_ratio_median']:.2f}")
    say("delta ratio max", f"{t['delta_ratio_max']:.2f}")
    scenario = make_scenario(cfg, res.bounds)
    print("\n| node | distance | gain (3GPP UMa, no shadowing) | full-power rate ↑ / ↓ |")
    print("|---:|---:|---:|---:|")
    noise = scenario.base["channel"]["noise_psd_dbm_per_hz"]
    for m, (dist, doc) in enumerate(zip(cfg.network.distances_m, scenario.base["nodes"],
                                        strict=True), start=1):
        n0 = 10 ** (noise / 10) * 1e-3
        up = shannon_rate_bps(doc["bandwidth_hz"], doc["power_up_w"], db(doc["gain_up_db"]), n0)
        down = shannon_rate_bps(doc["bandwidth_hz"], doc["power_down_w"], db(doc["gain_down_db"]),
                                n0)
        gain = f"{doc['gain_up_db']:.2f}".replace("-", "−")
        print(f"| {m} | {dist:.0f} m | {gain} dB | {up / 1e6:.0f} / {down / 1e6:.0f} Mbit/s |")
    print()
    say("bandwidth (MHz)", f"{cfg.network.bandwidth_hz / 1e6:g}")
    say("power up (W)", f"{cfg.network.power_up_w:g}")
    say("power down (W)", f"{cfg.network.power_down_w:g}")
    say("noise figure (dB)", f"{cfg.network.noise_figure_db:g}")
    say("noise PSD (dBm/Hz)", f"{noise:g}")
    say("payload bits per token", cfg.model_dim * cfg.network.bits_per_element)
    say("latency budget (ms)", f"{1e3 * res.latency_s:.3g}")
    say("batches", blocks)
    say("tokens in the last batch", tokens - (blocks - 1) * cfg.batch_tokens)
    say("budgets in the sweep", len(fracs))
    say("methods served", len(cfg.methods))
    say("solves", len(fracs) * len(cfg.methods) * blocks)
    say("served tokens", len(fracs) * len(cfg.methods) * tokens)
    say("eps_skip", f"{res.eps_base:.4g}")
    say("violating tokens", sum(r["violating_tokens"] for r in rows))
    from siftopt.experiments.validate import BOUND_ATOL, BOUND_RTOL

    say("bound check rtol", f"{BOUND_RTOL:g}")
    say("bound check atol per unit norm", f"{BOUND_ATOL:g}")
    say("beta above the data by (median)", f"{1 / t['beta_ratio_median']:.1f}")
    say("delta above the data by (median)", f"{1 / t['delta_ratio_median']:.1f}")
    worst = max(r["max_error_over_bound"] for r in rows if r["max_error_over_bound"] == r[
        "max_error_over_bound"])
    say("largest error / bound", f"{worst:.3f}")
    say("bound conservative by at least a factor", f"{1 / worst:.1f}")
    means = [r["mean_error_over_bound"] for r in rows
             if r["method"] in ("sift-ratio", "highs") and r["mean_error_over_bound"] ==
             r["mean_error_over_bound"]]
    say("mean error / bound, budgeted methods", fmt_range(min(means), max(means)))
    d = res.deviation
    say("cheapest remote deviation q10-q90", fmt_range(d["q10"], d["q90"]))
    say("cheapest remote deviation median", f"{d['median']:.2f}")
    say("cheapest remote deviation min", f"{d['min']:.2f}")
    model = 100 * res.model_accuracy
    e04 = by[(0.4, "highs")]
    say("exact at 0.4: points below the model", f"{model - 100 * e04['accuracy']:.2f}")
    late = [f for f in fracs if f >= 0.5]
    gaps = [abs(by[(f, "highs")]["saved_vs_topk_pct"] - by[(f, "sift-ratio")]["saved_vs_topk_pct"])
            for f in late]
    say("from 0.5 on, largest savings gap exact vs sift-ratio (points)", f"{max(gaps):.1f}")
    lower = [100 * (by[(f, "sift-ratio")]["accuracy"] - by[(f, "highs")]["accuracy"])
             for f in late if by[(f, "sift-ratio")]["accuracy"] > by[(f, "highs")]["accuracy"]]
    say("from 0.5 on, exact below sift-ratio in accuracy (points)", fmt_range(min(lower),
                                                                                max(lower), 1))
    band = [f for f in fracs if 0.35 <= f <= 0.5]
    loss = [model - 100 * by[(f, "highs")]["accuracy"] for f in band]
    saved = [by[(f, "highs")]["saved_vs_topk_pct"] for f in band]
    say("exact at 0.35-0.5: accuracy loss (points)", fmt_range(min(loss), max(loss), 1))
    say("exact at 0.35-0.5: saved (%)", fmt_range(min(saved), max(saved), 0))
    for key in ("train", "bounds", "sweep", "total"):
        say(f"time {key} (s)", f"{res.timings_s[key]:.2g}")


def cmd_lm(args: argparse.Namespace) -> None:
    import pydoc_data.topics

    from siftopt.experiments.validate.lm_data import corpus_bytes, split
    from siftopt.experiments.validate.lm_output import markdown_table, reference_metrics
    from siftopt.experiments.validate.lm_output import write_outputs as write_lm_outputs
    from siftopt.experiments.validate.lm_run import LMValidationConfig, run_lm_validation

    cfg = LMValidationConfig.make(seed=0)
    res = run_lm_validation(cfg, Path(args.cache) if args.cache else None,
                            progress=lambda m: print(f"lm: {m}", file=sys.stderr, flush=True))
    write_lm_outputs(args.out, res)
    print("## The full table (results.md)\n")
    print(markdown_table(res.rows))
    print("\n## Numbers\n")
    t = res.timings_s
    say("weights trained in this run", res.trained_now)
    for key in ("total", "train_or_load", "bounds", "sweep"):
        say(f"time {key} (s)", f"{t[key]:.3g}")
    say("time without training (s)", f"{t['total'] - t['train_or_load']:.3g}")
    quick = LMValidationConfig.make(seed=0, quick=True)
    say("--quick: steps of training", quick.training.dense_steps + quick.training.moe_steps)
    say("--quick: number of budgets", len(quick.eps_fractions))
    data = corpus_bytes()
    train_bytes, held = split(data, cfg.held_out_fraction)
    mc, tc = cfg.model, cfg.training
    say("help topics", len(pydoc_data.topics.topics))
    say("text bytes", f"{data.size:,}")
    say("training text (%)", f"{100 * (1 - cfg.held_out_fraction):g}")
    say("training bytes", f"{train_bytes.size:,}")
    say("held-out text (%)", f"{100 * cfg.held_out_fraction:g}")
    say("held-out windows", cfg.prefill_sequences)
    say("window bytes", mc.context + 1)
    say("predicted bytes in prefill", cfg.prefill_sequences * mc.context)
    say("decode windows", cfg.decode_sequences)
    say("predicted bytes in decode", cfg.decode_sequences * mc.context)
    for name, value in (("model dim d", mc.model_dim), ("context", mc.context),
                        ("blocks", mc.layers), ("heads", mc.heads),
                        ("experts", mc.num_experts), ("top-k", mc.top_k),
                        ("expert hidden dim h", mc.ffn_dim), ("dense steps", tc.dense_steps),
                        ("upcycling noise (%)", f"{100 * tc.upcycle_noise:g}"),
                        ("MoE steps", tc.moe_steps), ("training steps", tc.dense_steps
                                                      + tc.moe_steps),
                        ("load-balancing loss weight", f"{tc.aux_weight:g}"),
                        ("batch windows", tc.batch), ("learning rate", f"{tc.learning_rate:g}"),
                        ("weight decay", f"{tc.weight_decay:g}"), ("seed", tc.seed)):
        say(name, value)
    say("final training loss (nats/byte)", f"{res.train_meta['moe_loss'][-1]:.2f}")
    ref = reference_metrics(res)
    for mode in ("prefill", "decode"):
        say(f"{mode} accuracy (%)", f"{100 * ref[mode]['accuracy']:.2f}")
        say(f"{mode} perplexity", f"{ref[mode]['perplexity']:.3f}")
    say("prefill bits per byte", f"{ref['prefill']['bits_per_byte']:.2f}")
    p = ref["decode"]["accuracy"]
    say("decode accuracy standard error (points)",
        f"{100 * math.sqrt(p * (1 - p) / ref['decode']['tokens']):.0f}")
    for layer, (b, tight) in enumerate(zip(res.bounds, res.tightness, strict=True)):
        useful = int(np.count_nonzero((b.delta < b.beta[:, None])
                                      & ~np.eye(b.beta.size, dtype=bool)))
        say(f"layer {layer} radius", f"{b.radius:.2f}")
        say(f"layer {layer} largest held-out x over radius",
            f"{tight['x_norm_max_over_radius']:.2f}")
        say(f"layer {layer} beta range", f"{b.beta.min():.1f}–{b.beta.max():.1f}")
        say(f"layer {layer} useful replacement pairs", useful)
        say(f"layer {layer} eps_skip", f"{res.eps_base[layer]:.2f}")
    tight = res.tightness
    delta = [v for x in tight for v in (x["delta_ratio_median"], x["delta_ratio_max"])]
    beta = [v for x in tight for v in (x["beta_ratio_median"], x["beta_ratio_max"])]
    say("delta ratio, medians to maxima", f"{min(delta):.2f}–{max(delta):.2f}")
    say("beta ratio, medians to maxima", f"{min(beta):.2f}–{max(beta):.2f}")
    say("beta above the data by", f"{1 / max(beta):.0f}–{1 / min(beta):.0f}")
    say("remote nodes", len(cfg.network.distances_m))
    say("nearest node (m)", f"{min(cfg.network.distances_m):g}")
    say("farthest node (m)", f"{max(cfg.network.distances_m):g}")
    say("payload bits per token", mc.model_dim * cfg.network.bits_per_element)
    say("latency budget prefill (ms)", f"{1e3 * res.latency_s['prefill']:.2g}")
    say("latency budget decode (us)", f"{1e6 * res.latency_s['decode']:.3g}")
    say("decode instances per run", cfg.decode_sequences * mc.context * mc.layers)
    q = res.ratio_quantiles
    say("served token-layers with D_t > 0", f"{q['count']:,}")
    say("token-layers per run", (cfg.prefill_sequences + cfg.decode_sequences) * mc.context
        * mc.layers)
    say("violating tokens", sum(r["violating_tokens"] for r in res.rows))
    say("budgets in the sweep", len(cfg.eps_fractions))
    say("error / bound max", f"{q['max']:.3f}")
    say("error / bound median", f"{q['median']:.3f}")
    say("error / bound q99", f"{q['q99']:.3f}")
    say("bound loose by at least a factor", f"{1 / q['max']:.0f}")
    by = {(r["mode"], r["eps_fraction"], r["method"]): r for r in res.rows}
    for frac in cfg.eps_fractions:
        for mode in ("prefill", "decode"):
            e, k = by[(mode, frac, "highs")], by[(mode, frac, "topk")]
            say(f"{mode} {frac:g}: exact saves (%)", f"{e['saved_vs_topk_pct']:.0f}")
            say(f"{mode} {frac:g}: perplexity change (%)",
                f"{100 * (e['perplexity'] / k['perplexity'] - 1):+.1f}")
            say(f"{mode} {frac:g}: accuracy change (points)",
                f"{100 * (e['accuracy'] - k['accuracy']):+.1f}")
    local = by[("prefill", 0.0, "local")]
    topk0 = by[("prefill", 0.0, "topk")]
    say("local: perplexity over Top-K", f"{local['perplexity'] / topk0['perplexity']:.1f}")
    say("prefill token-layers", local["layer_tokens"])
    same = [f for f in cfg.eps_fractions
            if all(abs(by[(m, f, "sift-ratio")]["energy_j"] / by[(m, f, "highs")]["energy_j"] - 1)
                   < 1e-9 if by[(m, f, "highs")]["energy_j"] > 0 else True
                   for m in ("prefill", "decode"))]
    say("budgets where sift-ratio's energy equals the optimum's",
        ", ".join(f"{f:g}" for f in same))


def cmd_lm_bench(args: argparse.Namespace) -> None:
    """docs/real-models.md §4: bench the language model's trace (benchmarks/lm-trace.toml)."""
    import tempfile
    import tomllib

    import pandas as pd

    from siftopt.cli import main as siftopt_main
    from siftopt.model.evaluate import energies_equal

    lm = Path(args.lm)
    if not ((lm / "trace.npz").exists() and (lm / "bounds.json").exists()):
        print(f"lm-bench: no trace in {lm}: running validate-accuracy --model lm",
              file=sys.stderr, flush=True)
        status = siftopt_main(["validate-accuracy", "--model", "lm", "--out", str(lm),
                               *(["--cache", args.cache] if args.cache else [])])
        if status:
            raise SystemExit(status)
    config = ROOT / "benchmarks" / "lm-trace.toml"
    text = config.read_text()
    with config.open("rb") as handle:
        tomllib.load(handle)  # the shipped file is valid as it is
    text = (text.replace('"../results/lm/trace.npz"', f'"{(lm / "trace.npz").resolve()}"')
                .replace('"../results/lm/bounds.json"', f'"{(lm / "bounds.json").resolve()}"'))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "lm-trace.toml"
        copy.write_text(text)
        started = time.perf_counter()
        status = siftopt_main(["bench", str(copy), "--out", args.out, "--workers", "2",
                               "--quiet"])
        seconds = time.perf_counter() - started
    if status:
        raise SystemExit(status)
    df = pd.read_parquet(Path(args.out) / "results.parquet")
    say("lm-bench: cells in all", len(df) // df["method"].nunique())
    say("lm-bench: methods", df["method"].nunique())
    say("bench time (s)", f"{seconds:.2g}")
    opt = df[df["method"] == "highs"].set_index("instance_key")
    trace = df[df["trace"].notna()] if "trace" in df else df.iloc[0:0]
    prefill = trace[trace["tokens"] > 1]
    decode = trace[trace["tokens"] == 1]
    po = opt.loc[prefill["instance_key"].unique()]
    say("prefill cells", len(po))
    say("prefill optimum, least (mJ)", f"{1e3 * po['energy_j'].min():.3f}")
    say("prefill optimum, largest (mJ)", f"{1e3 * po['energy_j'].max():.3f}")

    def verdicts(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.copy()
        best = opt.loc[rows["instance_key"], "energy_j"].to_numpy()
        rows["opt"] = best
        rows["optimal"] = [bool(f) and energies_equal(e, b)
                           for f, e, b in zip(rows["feasible"], rows["energy_j"], best,
                                              strict=True)]
        rows["gap_pct"] = 100 * (rows["energy_j"] / rows["opt"] - 1)
        return rows

    for method in ("sift-price", "sift-ratio", "topk", "local"):
        rows = verdicts(prefill[prefill["method"] == method])
        say(f"prefill {method}: optimal cells", int(rows["optimal"].sum()))
        say(f"prefill {method}: infeasible cells", int((~rows["feasible"].astype(bool)).sum()))
        for layer in (0, 1):
            at = rows[(rows["layer"] == layer) & rows["feasible"].astype(bool)]
            say(f"prefill {method} layer {layer}: optimal cells",
                f"{int(at['optimal'].sum())} of {int((rows['layer'] == layer).sum())}")
            if len(at):
                say(f"prefill {method} layer {layer}: gap range (%)",
                    f"{at['gap_pct'].min():.2f}–{at['gap_pct'].max():.2f}")
        feasible = rows[rows["feasible"].astype(bool)]
        if len(feasible):
            say(f"prefill {method}: gap range over feasible cells (%)",
                f"{feasible['gap_pct'].min():.0f}–{feasible['gap_pct'].max():.0f}")
        at = feasible[(feasible["layer"] == 0) & (feasible["accuracy"] == 0.3)]
        if len(at):
            say(f"prefill {method} layer 0, accuracy 0.3: mean gap (%)",
                f"{at['gap_pct'].mean():.2f}")
    for method in ("sift-price", "sift-ratio"):
        rows = verdicts(decode[decode["method"] == method])
        say(f"decode {method}: optimal cells", f"{int(rows['optimal'].sum())} of {len(rows)}")


def cmd_reader(_args: argparse.Namespace) -> None:
    """docs/real-models.md §1: the checkpoint reader's radius allowances and a layer's memory."""
    from siftopt.similarity.checkpoint import F32_RADIUS_SLACK, LOW_PRECISION_RADIUS_SLACK

    say("radius factor, float16/bfloat16", f"{LOW_PRECISION_RADIUS_SLACK:g}")
    say("radius factor minus 1, float32", f"{F32_RADIUS_SLACK - 1:.0e}")
    from siftopt.experiments.generate.experts import CLUSTER_SIZE

    say("trace placement: experts per similarity cluster", CLUSTER_SIZE)
    experts, matrices, d, h = 8, 3, 4096, 14336  # Mixtral-8x7B's config.json
    say("Mixtral-8x7B layer experts in float32 (GB)", f"{experts * matrices * d * h * 4 / 1e9:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("limits").set_defaults(run=cmd_limits)
    p = sub.add_parser("adaptive")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(run=cmd_adaptive)
    p = sub.add_parser("fixed")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--seed", type=int, default=2)
    p.set_defaults(run=cmd_fixed)
    sub.add_parser("tables").set_defaults(run=cmd_tables)
    p = sub.add_parser("mc-seeds")
    p.add_argument("--seeds", type=int, default=60)
    p.add_argument("--first", type=int, default=1000)
    p.set_defaults(run=cmd_mc_seeds)
    sub.add_parser("csi").set_defaults(run=cmd_csi)
    p = sub.add_parser("closed-forms")
    p.add_argument("--seeds", type=int, default=5)
    p.set_defaults(run=cmd_closed_forms)
    sub.add_parser("timing").set_defaults(run=cmd_timing)
    p = sub.add_parser("digits")
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_digits)
    p = sub.add_parser("lm")
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default=None, help="weight cache folder (default: the user's)")
    p.set_defaults(run=cmd_lm)
    sub.add_parser("reader").set_defaults(run=cmd_reader)
    p = sub.add_parser("lm-bench")
    p.add_argument("--lm", required=True, help="the folder of validate-accuracy --model lm")
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default=None, help="weight cache folder (default: the user's)")
    p.set_defaults(run=cmd_lm_bench)
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
