"""The pattern formulation (siftopt/formulations/, backends/highs/direct.py, cpsat/patterns.py).

* the enumeration returns exactly the non-dominated feasible patterns of the definition,
  checked against every action assignment of each token (monotone and non-monotone tables);
* every pattern's actions use exactly its nodes with its degradation;
* patterns == slots == brute force on tiny random instances (HiGHS and CP-SAT, both power
  modes, all budget kinds, fast fading), and patterns == slots on larger ones;
* column generation, reduced-cost fixing and the fallbacks give the same optimum as the full
  pattern MILP and the slot models when forced down each path (through ``ExactOptions``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from siftopt.backends.brute import count_assignments, solve_brute
from siftopt.backends.cpsat.common import INT32_MAX
from siftopt.backends.cpsat.patterns import solve_cpsat_patterns
from siftopt.backends.highs import colgen
from siftopt.backends.highs.direct import solve_highs_patterns, solve_highs_slots
from siftopt.backends.highs.pyomo_patterns import solve_highs_pyomo_patterns
from siftopt.backends.options import ColumnGenerationOptions, ExactOptions
from siftopt.cli import main
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import infeasibility_reason, solve_exact
from siftopt.formulations import patterns as P
from siftopt.io.instance_file import save_instance
from siftopt.io.profiles import Profile, load_profile
from siftopt.model.budgets import token_degradation
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import ProblemData, problem_data

BRUTE_LIMIT = 40_000
PROFILE = load_profile(None)

tiny = st.fixed_dictionaries({
    "seed": st.integers(0, 10**6), "num_tokens": st.integers(1, 3),
    "num_experts": st.integers(3, 6), "top_k": st.integers(1, 3),
    "num_nodes": st.integers(1, 4), "power_control": st.sampled_from(["fixed", "adaptive"]),
    "budgets": st.sampled_from(["token", "mean", "both"]),
    "max_candidates": st.sampled_from([None, 0, 1, 2]),
    "eps_scale": st.sampled_from([0.05, 0.3, 0.8]),
    "fading": st.sampled_from(["slow", "slow", "rayleigh"]), "gates": st.booleans()})


def make(params: dict) -> Instance:
    params = dict(params)
    return random_instance(params.pop("seed"), **params)


def non_monotone(data: ProblemData, rng: np.random.Generator) -> ProblemData:
    """``data`` with some tables made non-monotone and non-convex (E(k≥2) scaled down)."""
    tables = []
    for table in data.tables:
        energy = table.energy_j.copy()
        if table.cap >= 2 and rng.random() < 0.7:
            energy[2:] *= rng.uniform(0.2, 0.6)
        tables.append(dataclasses.replace(table, energy_j=energy, convex=False))
    return dataclasses.replace(data, tables=tuple(tables))


def table_energy(data: ProblemData, actions: np.ndarray) -> float:
    """``Σ_m E_m(n_m)`` of actions by ``data``'s own tables (which may differ from the
    instance's, see :func:`non_monotone`)."""
    inst = data.inst
    skip = actions < 0
    node = np.where(skip, -1, inst.placement[np.where(skip, 0, actions)])
    energy = 0.0
    for m in range(1, data.num_nodes + 1):
        load = int(np.any(node == m, axis=1).sum())
        assert load <= data.caps[m]
        energy += float(data.tables[m - 1].energy_j[load])
    return energy


# ---- the enumeration against the definition ---------------------------------------------------


def reference_patterns(data: ProblemData) -> dict[int, dict[int, float]]:
    """Per token: kept pattern mask → D, straight from the definition (every assignment;
    D summed in slot order, kept by the per-token rule and the room of the mean budget)."""
    inst = data.inst
    k_slots = inst.top_k
    eps, room, mean_mode = P.class_budgets(data, np.arange(inst.num_tokens))
    mono = P.monotone_nodes(data)
    reach = data.opt_reachable
    out = {}
    for t in range(inst.num_tokens):
        options = [[o for o in data.slot_options(t * k_slots + k) if reach[o]]
                   for k in range(k_slots)]
        exact: dict[int, float] = {}
        for combo in itertools.product(*options):
            mask = 0
            for o in combo:
                if data.opt_node[o] >= 1:
                    mask |= 1 << (int(data.opt_node[o]) - 1)
            d = float(token_degradation(data.opt_degradation[list(combo)]))
            exact[mask] = min(exact.get(mask, np.inf), d)

        def keeps(d: float, t: int = t) -> bool:
            return d - eps[t] <= 1e-9 and d <= room[t]

        kept = {}
        for mask, d in exact.items():
            if not keeps(d):
                continue
            dominated = False
            for sub, d_sub in exact.items():
                if sub == mask or sub & ~mask:
                    continue
                if not all(mono[m + 1] for m in range(inst.num_nodes) if (mask & ~sub) >> m & 1):
                    continue
                if (d_sub <= d) if mean_mode else keeps(d_sub):
                    dominated = True
                    break
            if not dominated:
                kept[mask] = d
        out[t] = kept
    return out


def check_enumeration(data: ProblemData, engine: str = "auto") -> None:
    space = P.pattern_space(data)
    pset = P.enumerate_patterns(space, engine=engine)
    reference = reference_patterns(data)
    start = pset.start
    for t, kept in reference.items():
        g = int(space.token_class[t])
        got = {int(m): float(d) for m, d in zip(pset.mask[start[g]:start[g + 1]],
                                                pset.degradation[start[g]:start[g + 1]],
                                                strict=True)}
        assert set(got) == set(kept), (t, sorted(got), sorted(kept))
        for mask, d in kept.items():
            assert got[mask] == d  # the same sum in the same order: the same float
    # action recovery: exactly the pattern's nodes, with its degradation
    for p in range(pset.num_patterns):
        g = int(pset.pattern_class[p])
        t = int(space.class_rep[g])
        actions = data.inst.topk_experts.copy()
        actions[t] = P.actions_for_patterns(space, pset.mask[p:p + 1], np.array([t]))[0]
        again = evaluate(data.inst, actions)
        sent = sum(1 << m for m in range(data.num_nodes) if again.sent[t, m])
        assert sent == int(pset.mask[p])
        assert again.degradation[t] == pset.degradation[p]


@pytest.mark.parametrize("engine", ["compiled", "numpy"])
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(params=tiny)
def test_enumeration_is_the_definition(engine, params):
    data = problem_data(make(params))
    if count_assignments(data) <= BRUTE_LIMIT:
        check_enumeration(data, engine)


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(params=tiny, bump=st.integers(0, 1000))
def test_enumeration_with_non_monotone_tables(params, bump):
    data = non_monotone(problem_data(make(params)), np.random.default_rng(bump))
    if count_assignments(data) <= BRUTE_LIMIT:
        check_enumeration(data)


def test_identical_tokens_share_a_class():
    inst = random_instance(3, num_tokens=6, num_experts=8, top_k=2, num_nodes=3, max_candidates=1)
    rows = np.array([0, 1, 0, 2, 1, 0])
    inst = inst.replace(topk_experts=inst.topk_experts[rows], topk_weights=inst.topk_weights[rows],
                        eps_token=None if inst.eps_token is None else inst.eps_token[rows])
    token_class, rep, count = P.token_classes(problem_data(inst))
    assert token_class.tolist() == [0, 1, 0, 2, 1, 0]
    assert rep.tolist() == [0, 1, 3] and count.tolist() == [3, 2, 1]
    assert_same_optimum(inst, ("highs", "patterns"), ("highs", "slots"), ("brute", "auto"))


def test_mask_sums_and_bits():
    masks = np.array([0, 1, 0b1010, (1 << 63) | 1], dtype=np.uint64)
    price = np.arange(1.0, 65.0)
    assert P.mask_sums(masks, price).tolist() == [0.0, 1.0, 2.0 + 4.0, 64.0 + 1.0]
    pos, node = P.mask_bits(masks, 64)
    pairs = sorted(zip(pos.tolist(), node.tolist(), strict=True))
    assert pairs == [(1, 1), (2, 2), (2, 4), (3, 1), (3, 64)]


# ---- exact backends against each other and brute force ---------------------------------------


def assert_same_optimum(inst: Instance, *methods: tuple[str, ...]) -> dict:
    """Every (method, formulation[, interface]) reaches the same verdict and energy; actions
    re-evaluate."""
    results = {m: solve_exact(inst, m[0], formulation=m[1],
                              interface=m[2] if len(m) > 2 else "auto") for m in methods}
    first = next(iter(results.values()))
    for key, result in results.items():
        assert result.status == first.status, (key, result.status, first.status,
                                               result.message, result.details.get("fallback"))
        if result.status == "optimal":
            assert energies_equal(result.energy_j, first.energy_j), (key, result.energy_j,
                                                                     first.energy_j)
            again = evaluate(inst, result.actions)
            assert again.feasible and again.energy_j == result.energy_j
            assert result.dual_bound_j is not None
            assert result.dual_bound_j <= result.energy_j * (1 + 1e-9) + 1e-15
        else:
            assert result.actions is None and result.message
    return results


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(params=tiny)
def test_patterns_equal_slots_equal_brute_force(params):
    inst = make(params)
    assume(count_assignments(problem_data(inst)) <= BRUTE_LIMIT)  # counted, never silent
    assert_same_optimum(inst, ("brute", "auto"), ("highs", "patterns"), ("highs", "slots"),
                        ("cpsat", "patterns"), ("highs", "patterns", "pyomo"))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(params=tiny, bump=st.integers(0, 1000))
def test_non_monotone_tables_against_brute_force(params, bump):
    """Backends on data whose tables are non-monotone: exact-use patterns are needed."""
    data = non_monotone(problem_data(make(params)), np.random.default_rng(bump))
    assume(count_assignments(data) <= BRUTE_LIMIT and not infeasibility_reason(data))
    truth = solve_brute(data)
    for solver in (solve_highs_patterns, solve_highs_slots, solve_cpsat_patterns,
                   solve_highs_pyomo_patterns):
        got = solver(data, PROFILE, time_limit_s=None)
        assert got.status == truth.status, (solver.__name__, got.status, truth.status)
        if truth.status == "optimal":
            assert energies_equal(table_energy(data, got.actions), truth.dual_bound_j)


@pytest.mark.parametrize("power", ["fixed", "adaptive"])
@pytest.mark.parametrize("budgets", ["token", "mean", "both"])
@pytest.mark.parametrize("tokens", [16, 40])
def test_larger_instances_agree(power, budgets, tokens):
    inst = random_instance(100 + tokens, num_tokens=tokens, num_experts=16,
                           top_k=4, num_nodes=5, power_control=power, budgets=budgets,
                           max_candidates=3, null_fraction=0.1)
    methods = [("highs", "patterns"), ("highs", "slots"), ("cpsat", "patterns"),
               ("highs", "patterns", "pyomo"), ("highs", "slots", "direct")]
    if tokens <= 16:
        methods.append(("cpsat", "slots"))
    assert_same_optimum(inst, *methods)


@pytest.mark.parametrize("fading, power", [("rayleigh", "fixed"), ("rayleigh", "adaptive")])
def test_fast_fading_prefill_agrees(fading, power):
    for seed in range(3):
        inst = random_instance(seed, num_tokens=12, num_experts=10, top_k=3, num_nodes=4,
                               power_control=power, budgets="both", fading=fading)
        assert_same_optimum(inst, ("highs", "patterns"), ("highs", "slots"),
                            ("cpsat", "patterns"), ("highs", "patterns", "pyomo"))


def test_prefill_at_scale_matches_the_direct_slot_model():
    """L = 64 with 8 nodes: the pattern master against the slot MILP (both via highspy)."""
    inst = random_instance(5, num_tokens=64, num_experts=24, top_k=4, num_nodes=8,
                           power_control="adaptive", budgets="both", max_candidates=3,
                           null_fraction=0.0)
    data = problem_data(inst)
    pat = solve_highs_patterns(data, PROFILE, time_limit_s=120)
    slot = solve_highs_slots(data, PROFILE, time_limit_s=120)
    assert pat.status == slot.status == "optimal"
    assert energies_equal(evaluate(inst, pat.actions).energy_j,
                          evaluate(inst, slot.actions).energy_j)
    assert pat.details["cg_converged"]


# ---- every path of the pattern backend ---------------------------------------------------------


EXPECTED_EVIDENCE = {
    "all patterns": lambda d: any(e["phase"] == "mip" for e in d.get("trace", [])),
    "final mip": lambda d: any(e["phase"] == "final mip" for e in d.get("trace", [])),
    "no incumbent": lambda d: "note" in d or "fallback" in d,
    "slot fallback": lambda d: "fallback" in d,
    "exact-use fallback": lambda d: "fallback" in d,
}
PATH_OPTIONS = {
    "all patterns": ExactOptions(column_generation=ColumnGenerationOptions(direct_tokens=10**6)),
    # the restricted MILP sees only columns of reduced cost ≤ 0
    "final mip": ExactOptions(column_generation=ColumnGenerationOptions(tau=0.0)),
    # no restricted MILP has a column: MILP over all patterns
    "no incumbent": ExactOptions(column_generation=ColumnGenerationOptions(tau=-1.0,
                                                                           max_tau=-1.0)),
    "slot fallback": ExactOptions(patterns=P.PatternOptions(max_nodes=1)),
    "exact-use fallback": ExactOptions(patterns=P.PatternOptions(max_local_bits=0)),
}


def assert_backend_optimum(inst: Instance, options: ExactOptions) -> dict:
    """The direct pattern backend with ``options`` against the direct slot model: same
    verdict and energy, actions the evaluator accepts. Returns the pattern backend's
    details."""
    data = problem_data(inst)
    if infeasibility_reason(data):
        return {}
    got = solve_highs_patterns(data, PROFILE, time_limit_s=None, options=options)
    truth = solve_highs_slots(data, PROFILE, time_limit_s=None)
    assert got.status == truth.status, (got.status, truth.status, got.message)
    if truth.status == "optimal":
        again = evaluate(inst, got.actions)
        assert again.feasible
        assert energies_equal(again.energy_j, evaluate(inst, truth.actions).energy_j)
    return got.details


@pytest.mark.parametrize("path", list(EXPECTED_EVIDENCE))
def test_every_path_gives_the_optimum(path):
    evidence = 0
    for seed in range(6):
        for budgets in ("token", "both"):
            inst = random_instance(seed, num_tokens=20, num_experts=12, top_k=3, num_nodes=4,
                                   power_control="adaptive", budgets=budgets)
            details = assert_backend_optimum(inst, PATH_OPTIONS[path])
            evidence += EXPECTED_EVIDENCE[path](details)
    assert evidence > 0


def test_a_restricted_milp_stopped_at_its_gap_is_not_taken_as_the_proof():
    """Restricted MILPs stop at ``restricted_rel_gap`` (here 50 %, and with every column below
    a large ``tau``, so they hold every column that fixing keeps): their answer is an upper
    bound only, and the optimum must still be proved (by the final MILP)."""
    options = ExactOptions(column_generation=ColumnGenerationOptions(restricted_rel_gap=0.5,
                                                                     tau=1e3))
    stopped = 0
    for seed in range(4):
        inst = random_instance(seed, num_tokens=40, num_experts=16, top_k=4, num_nodes=6,
                               power_control="adaptive", budgets="mean")
        details = assert_backend_optimum(inst, options)
        stopped += any(e["phase"] == "restricted mip" and e.get("status") == "feasible"
                       for e in details.get("trace", []))
    assert stopped > 0


def test_no_column_generation_rounds_falls_back_to_an_exact_path():
    """Column generation that cannot converge (no rounds allowed) hands over to the MILP over
    every pattern, never to a merely feasible answer."""
    inst = random_instance(3, num_tokens=24, num_experts=12, top_k=3, num_nodes=4,
                           power_control="adaptive", budgets="both")
    options = ExactOptions(column_generation=ColumnGenerationOptions(max_rounds=0))
    details = assert_backend_optimum(inst, options)
    assert "column generation" in details.get("note", "") or "fallback" in details


def test_lp_failure_falls_back_to_an_exact_path(monkeypatch):
    """If an LP of column generation fails, the answer must still be exact (not a mere
    feasible point of the restricted columns). (A fault injected into the LP runner, not a
    tuning knob.)"""
    monkeypatch.setattr(colgen, "_run_lp", lambda highs, trace: False)
    inst = random_instance(3, num_tokens=24, num_experts=12, top_k=3, num_nodes=4,
                           power_control="adaptive", budgets="both")
    details = assert_backend_optimum(inst, ExactOptions())
    assert "column generation" in details.get("note", "") or "fallback" in details


def test_generated_instance_whose_overflow_priced_lp_failed():
    """Regression: qwen3-30b-a3b, L = 64, both budgets, adaptive, seed 2. With overflow costs
    of ~1e10 energy units the second restricted LP came back "Not Set" and the backend
    returned a feasible point 2× above the optimum."""
    from siftopt.experiments.generate.build import generate
    from siftopt.experiments.generate.config import GeneratorConfig

    inst = generate(GeneratorConfig(preset="qwen3-30b-a3b", tokens=64, budget="both",
                                    power_control="adaptive", fading="slow"), 2).instance
    results = assert_same_optimum(inst, ("highs", "patterns"), ("highs", "slots"))
    assert results[("highs", "patterns")].details["cg_converged"]


def test_warm_start_from_a_policy_is_used():
    from siftopt.policies import POLICIES

    inst = random_instance(2, num_tokens=48, num_experts=16, top_k=4, num_nodes=6,
                           power_control="adaptive", budgets="token")
    start = np.asarray(POLICIES["sift-ratio"](inst))
    assert evaluate(inst, start).feasible
    cold = solve_exact(inst, "highs", formulation="patterns")
    warm = solve_exact(inst, "highs", formulation="patterns", warm_start=start)
    assert warm.details["warm_start"] is True
    assert warm.status == cold.status == "optimal"
    assert energies_equal(warm.energy_j, cold.energy_j)
    hinted = solve_exact(inst, "cpsat", formulation="patterns", warm_start=start)
    assert energies_equal(hinted.energy_j, cold.energy_j)


def test_decode_needs_no_solver():
    inst = random_instance(1, num_tokens=1, num_experts=64, top_k=8, num_nodes=16,
                           power_control="adaptive", budgets="both", max_candidates=4)
    result = solve_exact(inst, "highs", formulation="patterns")
    assert result.details["formulation"] == "patterns"
    assert result.details["method"] == "decode rule (no MILP)"
    assert result.status == "optimal"
    assert energies_equal(result.energy_j, solve_exact(inst, "highs", formulation="slots").energy_j)


def test_decode_meets_a_mean_budget_within_the_evaluator_tolerance():
    """L = 1 with only a mean budget: the decode rule has no mean row, so the pattern cap must
    be the budget itself. Budgets 1.2e-9 below a pattern's D must not admit it."""
    bad = []
    for seed in range(40):
        inst = random_instance(seed, num_tokens=1, num_experts=6, top_k=3, num_nodes=3,
                               budgets="mean", max_candidates=2)
        loose = P.enumerate_patterns(problem_data(inst.replace(eps_mean=10.0)))
        for d in loose.degradation:
            edge = inst.replace(eps_mean=float(d) - 1.2e-9)
            result = solve_exact(edge, "highs", formulation="patterns")
            if result.actions is not None and not evaluate(edge, result.actions).feasible:
                bad.append((seed, float(d)))
    assert not bad


def test_time_limit_is_respected():
    inst = random_instance(9, num_tokens=200, num_experts=32, top_k=6, num_nodes=8,
                           power_control="adaptive", budgets="both", max_candidates=4)
    result = solve_exact(inst, "highs", formulation="patterns", time_limit_s=0.01)
    assert result.status in ("optimal", "feasible", "time_limit")
    if result.actions is not None:
        assert evaluate(inst, result.actions).feasible


# ---- CP-SAT scaling ----------------------------------------------------------------------------


def test_cpsat_patterns_with_huge_scaled_rows():
    """The mean row's scaled sum passes 2^31: presolve inclusion is forced off
    (google/or-tools#5293) unless the profile already does it, and the answer stands."""
    inst = random_instance(4, num_tokens=10, num_experts=8, top_k=3, num_nodes=3,
                           power_control="fixed", budgets="mean", eps_scale=0.5)
    no_limit = Profile(name="no-limit", time_limit_s=None, threads=1, highs=PROFILE.highs,
                       cpsat={"relative_gap_limit": 0.0, "absolute_gap_limit": 0.0})
    reference = solve_exact(inst, "highs", formulation="patterns")
    for profile in (PROFILE, no_limit):
        result = solve_exact(inst, "cpsat", formulation="patterns", profile=profile)
        assert result.status == reference.status
        if result.status == "optimal":
            assert energies_equal(result.energy_j, reference.energy_j)
        if "max_row_sum" in result.details:
            assert result.details["max_row_sum"] > INT32_MAX
            assert result.details["presolve_inclusion_work_limit"] == 0
            assert result.details["presolve_inclusion_forced"] is (profile is no_limit)


# ---- command line -----------------------------------------------------------------------------


def test_cli_formulation_flag(tmp_path, capsys):
    inst = random_instance(6, num_tokens=8, num_experts=8, top_k=2, num_nodes=3,
                           budgets="both")
    path = tmp_path / "inst.json"
    save_instance(inst, path)
    energies = []
    for formulation in ("slots", "patterns", "auto"):
        assert main(["solve", str(path), "--formulation", formulation, "--format", "json"]) == 0
        energies.append(json.loads(capsys.readouterr().out)["energy_j"])
    assert all(energies_equal(e, energies[0]) for e in energies)
    assert main(["solve", str(path), "--formulation", "columns"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(Exception, match="formulation"):
        solve_exact(inst, "highs", formulation="columns")


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), tokens=st.integers(2, 40), nodes=st.integers(2, 8))
def test_lp_bound_dominates_the_per_token_decode_bound(seed, tokens, nodes):
    """With convex tables (E(0) = 0, so E(n) ≥ n·E(1)) and per-token budgets only, the sum
    over tokens of each token's decode optimum is a valid lower bound; the pattern master's
    LP bound must be at least as strong (docs/performance.md, "Bounds"), and both at most
    the optimum."""
    inst = random_instance(seed, num_tokens=tokens, num_experts=12, top_k=3,
                           num_nodes=nodes, power_control="adaptive", budgets="token",
                           max_candidates=2)
    data = problem_data(inst)
    if not all(t.convex for t in data.tables):
        return
    result = solve_exact(inst, "highs", formulation="patterns")
    if result.status != "optimal" or "lp_bound" not in result.details:
        return
    space = P.pattern_space(data)
    one = P.one_token_energy(data)
    first = P.cheapest_patterns(space, one[1:] / data.energy_scale_j())
    _, node = P.mask_bits(first.mask[space.token_class], data.num_nodes)
    decode_bound_j = float(one[node].sum())
    lp_bound_j = result.details["lp_bound"] * data.energy_scale_j()
    assert decode_bound_j <= result.energy_j * (1 + 1e-9)
    assert lp_bound_j >= decode_bound_j * (1 - 1e-7) - 1e-6 * data.energy_scale_j()


def test_interface_choice(tmp_path, capsys):
    """--interface picks the Pyomo or the direct model for either formulation; all four give
    the same optimum, and the choice is an input error for the other backends."""
    inst = random_instance(4, num_tokens=20, num_experts=12, top_k=3, num_nodes=4,
                           power_control="adaptive", budgets="both", max_candidates=2)
    results = assert_same_optimum(
        inst, *[("highs", f, i) for f in ("slots", "patterns") for i in ("pyomo", "direct")])
    interfaces = {key: r.details.get("interface", "") for key, r in results.items()}
    assert interfaces[("highs", "patterns", "pyomo")].startswith("pyomo")
    assert interfaces[("highs", "slots", "direct")].startswith("highspy")
    with pytest.raises(Exception, match="interface"):
        solve_exact(inst, "cpsat", interface="direct")
    with pytest.raises(Exception, match="unknown interface"):
        solve_exact(inst, "highs", interface="gurobi")
    path = tmp_path / "inst.json"
    save_instance(inst, path)
    assert main(["solve", str(path), "--method", "cpsat", "--interface", "pyomo"]) == 2
    assert "highs method only" in capsys.readouterr().err
