"""Property tests of the policies and of the optimality theorems of docs/policies.md.

Each theorem has one test: random tiny instances built to satisfy its conditions, and the
policy's energy must equal the brute-force optimum (or both must be infeasible). Arbitrary
instances check the contract every policy keeps: valid actions, never below the optimum, and
never feasible when the instance is not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from siftopt.errors import PolicyRefusal
from siftopt.experiments.synthetic import random_document
from siftopt.facade import solve_exact, solve_policy
from siftopt.io.instance_file import instance_from_document, load_instance
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data
from siftopt.policies import MAX_DECODE_NODES, POLICIES, sift_price_run
from siftopt.policies.common import policy_data, token_budgets
from siftopt.policies.decode import decode_all, decode_with_mean, unit_prices
from siftopt.result import SolveResult

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
WIDE_LATENCY_S = 10.0  # every node can carry every token of these tiny batches

Edit = Callable[[dict[str, Any], np.random.Generator], None]


def build(seed: int, *, tokens: int, experts: int, k: int, nodes: int, pc: str = "fixed",
          fading: str = "slow", budgets: str = "token", max_cand: int | None = 2,
          eps_scale: float = 0.3, wide: bool = False, edit: Edit | None = None) -> Instance:
    """A random tiny instance; ``wide`` lifts every load cap to L; ``edit`` changes the
    document before validation."""
    rng = np.random.default_rng(seed)
    doc = random_document(rng, num_tokens=tokens, num_experts=experts, top_k=k,
                          num_nodes=nodes, power_control=pc, fading=fading, budgets=budgets,
                          max_candidates=max_cand, eps_scale=eps_scale)
    if wide:
        doc["latency_s"] = WIDE_LATENCY_S
    if edit is not None:
        edit(doc, rng)
    return instance_from_document(doc, file=f"<seed {seed}>")


def exact(inst: Instance) -> SolveResult:
    return solve_exact(inst, "brute")


def assert_matches_optimum(inst: Instance, got: SolveResult, truth: SolveResult) -> None:
    if truth.status == "infeasible":
        assert not got.feasible, "policy feasible on an infeasible instance"
        return
    assert truth.status == "optimal"
    assert got.feasible, (got.message, truth.energy_j)
    assert energies_equal(got.energy_j, truth.energy_j), (got.energy_j, truth.energy_j)


def restrict_to_local_or_own_node(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """Condition C1: a replacement candidate is local or on the replaced expert's own node."""
    del rng
    placement = doc["placement"]
    delta = doc["bounds"]["delta"]
    for i, row in enumerate(delta):
        for j in range(len(row)):
            if placement[j] >= 1 and placement[j] != placement[i]:
                row[j] = None


def identical_nodes(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """Every remote node a copy of the first one: equal link energies E_m(1)."""
    del rng
    doc["nodes"] = [dict(doc["nodes"][0]) for _ in doc["nodes"]]


def only_mean_budget(doc: dict[str, Any], rng: np.random.Generator) -> None:
    eps = doc["accuracy"].get("eps_token", doc["accuracy"].get("eps_mean"))
    doc["accuracy"] = {"eps_mean": float(eps * rng.uniform(0.2, 1.5))}


def only_token_budgets(doc: dict[str, Any], rng: np.random.Generator) -> None:
    eps = doc["accuracy"].get("eps_token", doc["accuracy"].get("eps_mean"))
    n = len(doc["tokens"]["topk_experts"])
    doc["accuracy"] = {"eps_token": [float(eps * rng.uniform(0.2, 1.5)) for _ in range(n)]}


def random_latency(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """Scale the latency budget so that caps range from unreachable to wide."""
    doc["latency_s"] = float(doc["latency_s"] * rng.choice([0.3, 0.7, 1.0, 1.5, 3.0]))


def chain(*edits: Edit) -> Edit:
    def run(doc: dict[str, Any], rng: np.random.Generator) -> None:
        for e in edits:
            e(doc, rng)
    return run


# --------------------------------------------------------------------------------------------
# The contract of every policy, on arbitrary instances
# --------------------------------------------------------------------------------------------

arbitrary = st.builds(
    lambda seed, tokens, experts, k, nodes, pc, fading, budgets, max_cand, eps: build(
        seed, tokens=tokens, experts=experts, k=k, nodes=nodes, pc=pc, fading=fading,
        budgets=budgets, max_cand=max_cand, eps_scale=eps, edit=random_latency),
    seed=st.integers(0, 10**6), tokens=st.integers(1, 3), experts=st.integers(3, 5),
    k=st.integers(1, 2), nodes=st.integers(1, 3), pc=st.sampled_from(["fixed", "adaptive"]),
    fading=st.sampled_from(["slow", "slow", "rayleigh"]),
    budgets=st.sampled_from(["token", "mean", "both"]), max_cand=st.sampled_from([None, 1, 2]),
    eps=st.sampled_from([0.05, 0.3, 1.0]))


@pytest.mark.parametrize("method", list(POLICIES))
@SETTINGS
@given(inst=arbitrary)
def test_policy_is_valid_and_never_beats_the_optimum(method: str, inst: Instance) -> None:
    got = solve_policy(inst, method)  # evaluates: raises if an action is outside A(i)
    truth = exact(inst)
    assert got.actions.shape == inst.topk_experts.shape
    if truth.status == "infeasible":
        assert not got.feasible
    elif got.feasible:
        floor = truth.energy_j
        assert got.energy_j >= floor or energies_equal(got.energy_j, floor), (got.energy_j, floor)


@SETTINGS
@given(inst=arbitrary)
def test_sift_price_never_worse_than_sift_decode(inst: Instance) -> None:
    """sift-price starts from sift-decode's iterate and returns its best iterate."""
    decode = solve_policy(inst, "sift-decode")
    price = solve_policy(inst, "sift-price")
    if decode.feasible:
        assert price.feasible
        assert price.energy_j <= decode.energy_j or energies_equal(price.energy_j,
                                                                   decode.energy_j)


# --------------------------------------------------------------------------------------------
# Theorem 1 (local) and Theorem 2 (topk)
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(1, 3), nodes=st.integers(1, 3),
       pc=st.sampled_from(["fixed", "adaptive"]), fading=st.sampled_from(["slow", "rayleigh"]),
       budgets=st.sampled_from(["token", "mean", "both"]))
def test_theorem_local_optimal_whenever_feasible(seed, tokens, nodes, pc, fading, budgets):
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc=pc, fading=fading,
                 budgets=budgets, eps_scale=1.2, edit=random_latency)
    got = solve_policy(inst, "local")
    assume(got.feasible)
    assert got.energy_j == 0.0
    assert_matches_optimum(inst, got, exact(inst))


def pin_every_used_node(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """Per-token budgets just below what freeing any (token, node) of Top-K would cost."""
    del rng
    weights = np.maximum(np.array(doc["tokens"]["topk_weights"]), 0.05)
    doc["tokens"]["topk_weights"] = weights.tolist()
    inst = instance_from_document(doc)
    data = problem_data(inst)
    budgets = []
    for t in range(inst.num_tokens):
        pins = []
        for m in set(inst.placement[inst.topk_experts[t]].tolist()) - {0}:
            strongest = 0.0
            for kk in range(inst.top_k):
                slot = t * inst.top_k + kk
                if inst.placement[inst.topk_experts[t, kk]] != m:
                    continue
                opts = data.slot_options(slot)
                away = [data.opt_degradation[o] for o in opts if data.opt_node[o] != m]
                strongest = max(strongest, min(away))
            pins.append(strongest)
        budgets.append(0.9 * min(pins) if pins else 0.5)
    doc["accuracy"] = {"eps_token": [float(b) for b in budgets]}


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(1, 3), nodes=st.integers(1, 3),
       pc=st.sampled_from(["fixed", "adaptive"]))
def test_theorem_topk_optimal_when_every_used_node_is_pinned(seed, tokens, nodes, pc):
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc=pc, wide=True,
                 edit=pin_every_used_node)
    got = solve_policy(inst, "topk")
    assert got.feasible  # wide caps and zero degradation
    assert_matches_optimum(inst, got, exact(inst))


# --------------------------------------------------------------------------------------------
# Theorem 3 (sift-decode, L = 1) and Theorem 4 (token-wise separability)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sift-decode", "sift-price"])
@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), experts=st.integers(3, 7), k=st.integers(1, 4),
       nodes=st.integers(1, 5), pc=st.sampled_from(["fixed", "adaptive"]),
       fading=st.sampled_from(["slow", "rayleigh"]),
       budgets=st.sampled_from(["token", "mean", "both"]),
       max_cand=st.sampled_from([None, 0, 1, 2]), eps=st.sampled_from([0.05, 0.2, 0.5]))
def test_theorem_decode_optimal_for_one_token(method, seed, experts, k, nodes, pc, fading,
                                              budgets, max_cand, eps):
    k = min(k, experts)
    inst = build(seed, tokens=1, experts=experts, k=k, nodes=nodes, pc=pc, fading=fading,
                 budgets=budgets, max_cand=max_cand, eps_scale=eps, edit=random_latency)
    assert_matches_optimum(inst, solve_policy(inst, method), exact(inst))


def implied_mean_budget(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """Per-token budgets, plus (sometimes) a mean budget they imply."""
    only_token_budgets(doc, rng)
    if rng.random() < 0.5:
        doc["accuracy"]["eps_mean"] = float(np.mean(doc["accuracy"]["eps_token"]) * 1.01)


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(2, 3), nodes=st.integers(1, 3),
       wide=st.booleans())
def test_theorem_decode_optimal_per_token_under_fixed_power(seed, tokens, nodes, wide):
    """Linear tables + per-token budgets: separable; optimal whenever no cap binds."""
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc="fixed", wide=wide,
                 edit=chain(implied_mean_budget, random_latency) if not wide
                 else implied_mean_budget)
    pd = policy_data(inst)
    _, repaired = decode_all(pd, unit_prices(pd), token_budgets(inst))
    if wide:
        assert not repaired  # caps = L never bind
    assume(not repaired)
    assert_matches_optimum(inst, solve_policy(inst, "sift-decode"), exact(inst))


def binding_mean_budget(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """A mean budget, sometimes with looser per-token budgets that do not imply it."""
    eps = doc["accuracy"].get("eps_token", doc["accuracy"].get("eps_mean"))
    accuracy: dict[str, Any] = {"eps_mean": float(eps * rng.uniform(0.2, 1.2))}
    if rng.random() < 0.5:
        accuracy["eps_token"] = float(accuracy["eps_mean"] * rng.uniform(1.2, 3.0))
    doc["accuracy"] = accuracy


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(2, 3), nodes=st.integers(1, 3))
def test_theorem_decode_mean_multiplier_bound(seed, tokens, nodes):
    """Linear tables, wide caps, binding mean budget: E ≤ OPT + λ·(unused mean budget)."""
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc="fixed", wide=True,
                 edit=binding_mean_budget)
    pd = policy_data(inst)
    decoded = decode_with_mean(pd, unit_prices(pd))
    assert not decoded.repaired
    got = solve_policy(inst, "sift-decode")
    truth = exact(inst)
    if truth.status == "infeasible":
        assert not got.feasible
        return
    assert got.feasible, "a feasible instance was missed (λ can grow to ∞ with wide caps)"
    slack = inst.num_tokens * (inst.eps_mean + 1e-9) - float(got.evaluation.degradation.sum())
    bound = truth.energy_j + decoded.lam * max(slack, 0.0)
    assert got.energy_j <= bound or energies_equal(got.energy_j, bound)
    assert got.energy_j >= truth.energy_j or energies_equal(got.energy_j, truth.energy_j)
    if decoded.lam == 0.0:
        assert energies_equal(got.energy_j, truth.energy_j)


# --------------------------------------------------------------------------------------------
# Theorem 5 (sift-price certificate)
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(2, 3), nodes=st.integers(1, 3),
       pc=st.sampled_from(["fixed", "adaptive"]), wide=st.booleans())
def test_theorem_price_certificate_implies_optimality(seed, tokens, nodes, pc, wide):
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc=pc, wide=wide,
                 edit=implied_mean_budget)
    run = sift_price_run(inst)
    assume(run.certified)
    got = solve_policy(inst, "sift-price")
    assert np.array_equal(got.actions, run.actions)
    assert_matches_optimum(inst, got, exact(inst))


def test_price_certificate_is_reached_on_convex_instances() -> None:
    """Non-vacuity of Theorem 5: adaptive-power instances do get certified (and optimal)."""
    certified = 0
    for seed in range(40):
        inst = build(seed, tokens=3, experts=5, k=2, nodes=2, pc="adaptive", wide=True,
                     edit=implied_mean_budget)
        run = sift_price_run(inst)
        assert run.stop in ("certified", "fixed_point", "no_improvement", "iteration_cap")
        if run.certified:
            certified += 1
            assert_matches_optimum(inst, solve_policy(inst, "sift-price"), exact(inst))
    assert certified >= 10


# --------------------------------------------------------------------------------------------
# Theorems 6–9 (sift-ratio)
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(1, 4), k=st.integers(1, 2),
       pc=st.sampled_from(["fixed", "adaptive"]), fading=st.sampled_from(["slow", "rayleigh"]),
       budgets=st.sampled_from(["token", "mean", "both"]), eps=st.sampled_from([0.1, 0.3, 0.8]))
def test_theorem_ratio_optimal_with_one_remote_node(seed, tokens, k, pc, fading, budgets, eps):
    """Any strictly increasing table (Rayleigh ones included), any budgets, any cap."""
    inst = build(seed, tokens=tokens, experts=5, k=k, nodes=1, pc=pc, fading=fading,
                 budgets=budgets, eps_scale=eps, max_cand=None if tokens * k <= 4 else 1,
                 edit=random_latency)
    table = problem_data(inst).tables[0]
    assume(table.cap == 0 or np.all(np.diff(table.energy_j) > 0))
    assert_matches_optimum(inst, solve_policy(inst, "sift-ratio"), exact(inst))


def unreachable_nodes(mask: int) -> Edit:
    """Nodes whose bit is set in ``mask`` cannot meet the latency budget (cap 0); their
    energy is unchanged (compute time costs no energy)."""
    def run(doc: dict[str, Any], rng: np.random.Generator) -> None:
        del rng
        for m, node in enumerate(doc["nodes"]):
            if mask >> m & 1:
                node["compute_s_per_token"] = 2 * doc["latency_s"]
    return run


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(1, 3), nodes=st.integers(2, 3),
       mean_only=st.booleans(), cap0=st.integers(0, 7))
def test_theorem_ratio_optimal_with_equal_link_energies(seed, tokens, nodes, mean_only, cap0):
    """Equal E_m(1), fixed power, C1; mean budget only (any caps) or per-token budgets only
    (caps wide, or 0 for the nodes in ``cap0``)."""
    edits = [identical_nodes, restrict_to_local_or_own_node]
    edits += [only_mean_budget, random_latency] if mean_only else [only_token_budgets]
    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc="fixed",
                 wide=not mean_only, edit=chain(*edits, unreachable_nodes(cap0)))
    caps = [t.cap for t in problem_data(inst).tables]
    assert all(c == 0 for c, m in zip(caps, range(nodes), strict=True) if cap0 >> m & 1)
    if not mean_only:  # the condition of (b): every cap is the Top-K load or more, or 0
        assert all(c in (0, inst.num_tokens) for c in caps)
    assert_matches_optimum(inst, solve_policy(inst, "sift-ratio"), exact(inst))


def equal_item_costs(doc: dict[str, Any], rng: np.random.Generator) -> None:
    """Every item costs the same s = w·β: equal weights and skip constants, no local
    candidates (candidates on other remote nodes removed too: C1), and each token's top-K
    experts on distinct nodes (local ones aside), so that an item is one slot."""
    n, k = doc["model"]["num_experts"], doc["model"]["top_k"]
    doc["bounds"]["beta"] = [1.0] * n
    placement = doc["placement"]
    for i, row in enumerate(doc["bounds"]["delta"]):
        for j in range(n):
            if j != i and (placement[j] == 0 or placement[j] != placement[i]):
                row[j] = None
    experts = []
    for _ in doc["tokens"]["topk_experts"]:
        chosen: list[int] = []
        for i in rng.permutation(n).tolist():
            if placement[i] == 0 or placement[i] not in {placement[c] for c in chosen}:
                chosen.append(i)
        assert len(chosen) >= k  # every remote node hosts an expert, and K ≤ M
        experts.append(chosen[:k])
    doc["tokens"]["topk_experts"] = experts
    doc["tokens"]["topk_weights"] = [[0.5] * k for _ in experts]


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(2, 6), k=st.integers(1, 3),
       nodes=st.integers(2, 3), pc=st.sampled_from(["fixed", "adaptive"]),
       mean_only=st.booleans(), eps=st.sampled_from([0.3, 0.5, 0.8, 1.2]),
       cap0=st.integers(0, 7))
def test_theorem_ratio_optimal_with_equal_degradations(seed, tokens, k, nodes, pc, mean_only,
                                                       eps, cap0):
    """Equal item costs, K = 1..3; mean budget only with any caps and convex tables, or
    per-token budgets only with linear tables and caps wide or 0 (nodes in ``cap0``)."""
    k = min(k, nodes)
    tokens = min(tokens, 6 // k)  # at most 6 slots: brute force stays small
    if mean_only:
        budget: Edit = lambda doc, rng: doc.update(  # noqa: E731
            accuracy={"eps_mean": float(rng.uniform(0.05, 0.6) * k)})
        edit = chain(equal_item_costs, budget, random_latency)
    else:
        pc = "fixed"
        budget = lambda doc, rng: doc.update(  # noqa: E731
            accuracy={"eps_token": [float(rng.choice([0.0, 0.6, 1.1])) for _ in range(tokens)]})
        edit = chain(equal_item_costs, budget, unreachable_nodes(cap0))
    inst = build(seed, tokens=tokens, experts=6, k=k, nodes=nodes, pc=pc, eps_scale=eps,
                 max_cand=None, wide=not mean_only, edit=edit)
    for row in inst.topk_experts:  # one slot per item, so every item costs 0.5·1
        nodes_used = [int(m) for m in inst.placement[row] if m > 0]
        assert len(nodes_used) == len(set(nodes_used))
    tables = problem_data(inst).tables
    assume(all(t.cap == 0 or np.all(np.diff(t.energy_j) > 0) for t in tables))
    assert_matches_optimum(inst, solve_policy(inst, "sift-ratio"), exact(inst))


def ratio_lp(inst: Instance) -> tuple[float, float, float] | None:
    """The LP relaxation of the local-fallback problem (built here, independently of the
    policy) under linear tables and a mean budget: (E_LP, E_topk, largest item energy).
    None when even the forced drops exceed the budget."""
    data = problem_data(inst)
    e = {t.node: (float(t.energy_j[1]) if t.cap >= 1 else 0.0) for t in data.tables}
    cap0 = {t.node for t in data.tables if t.cap == 0}
    items: dict[tuple[int, int], float] = {}
    for t in range(inst.num_tokens):
        for kk, i in enumerate(inst.topk_experts[t].tolist()):
            m = int(inst.placement[i])
            if m == 0:
                continue
            local = [inst.delta[i, j] for j in data.candidates[i] if inst.placement[j] == 0]
            c_loc = min([inst.beta[i], *local])
            items[t, m] = items.get((t, m), 0.0) + float(inst.topk_weights[t, kk] * c_loc)
    keys = list(items)
    saving = np.array([e[m] for _, m in keys], dtype=float)
    cost = np.array([items[x] for x in keys], dtype=float)
    forced = np.array([m in cap0 for _, m in keys], dtype=bool)
    budget = inst.num_tokens * (inst.eps_mean + 1e-9) - cost[forced].sum()
    if budget < 0:
        return None
    e_topk = float(saving.sum())
    free = ~forced
    if free.any():
        lp = linprog(-saving[free], A_ub=cost[free][None, :], b_ub=[budget],
                     bounds=[(0, 1)] * int(free.sum()), method="highs")
        assert lp.status == 0
        saved = -lp.fun
    else:
        saved = 0.0
    biggest = float(saving.max()) if keys else 0.0
    return e_topk - saved, e_topk, biggest


@SETTINGS
@given(seed=st.integers(0, 10**6), tokens=st.integers(1, 3), nodes=st.integers(1, 3),
       unreachable=st.booleans())
def test_theorem_ratio_lp_bound_and_integrality_gap(seed, tokens, nodes, unreachable):
    """Linear tables, C1, mean budget only, caps ≥ Top-K loads or 0:
    E_LP ≤ OPT ≤ E_ratio ≤ E_LP + max item energy."""
    def caps(doc: dict[str, Any], rng: np.random.Generator) -> None:
        if unreachable:  # node 1 out of reach, the others wide
            doc["nodes"][0]["compute_s_per_token"] = WIDE_LATENCY_S * 2

    inst = build(seed, tokens=tokens, experts=5, k=2, nodes=nodes, pc="fixed", wide=True,
                 edit=chain(restrict_to_local_or_own_node, only_mean_budget, caps))
    lp = ratio_lp(inst)
    truth = exact(inst)
    got = solve_policy(inst, "sift-ratio")
    if lp is None:
        assert truth.status == "infeasible" and not got.feasible
        return
    e_lp, _, biggest = lp
    assert truth.status == "optimal" and got.feasible
    tol = 1e-9 * max(lp[1], 1e-12)
    assert e_lp <= truth.energy_j + tol
    assert got.energy_j <= e_lp + biggest + tol
    assert got.energy_j >= truth.energy_j - tol


# --------------------------------------------------------------------------------------------
# Counterexamples (tests/data): the Theorem 7 one, and policies that miss feasibility
# --------------------------------------------------------------------------------------------

DATA = Path(__file__).resolve().parent / "data"


def test_theorem7_counterexample_ratio_spends_twice_the_optimum() -> None:
    """docs/policies.md §4: binding caps with per-token budgets and equal link energies
    (outside Theorem 7 (a)/(b)); sift-ratio is feasible and spends twice the optimum."""
    inst = load_instance(DATA / "ratio-binding-cap-twice-optimum.json")
    data = problem_data(inst)
    reachable = [t for t in data.tables if t.cap >= 1]
    e = float(reachable[0].energy_j[1])
    for t in reachable:  # linear tables, one unit energy e: the setting of Theorem 7
        np.testing.assert_allclose(t.energy_j, e * np.arange(t.cap + 1), rtol=1e-12)
    loads = [int(np.sum(np.any(inst.placement[inst.topk_experts] == t.node, axis=1)))
             for t in data.tables]
    assert inst.eps_mean is None and inst.eps_token is not None  # per-token budgets only
    assert any(0 < t.cap < n for t, n in zip(data.tables, loads, strict=True))  # not (b)
    got = solve_policy(inst, "sift-ratio")
    truth = exact(inst)
    assert truth.status == "optimal" and got.feasible
    assert energies_equal(got.energy_j, 2.0 * truth.energy_j), (got.energy_j, truth.energy_j)
    assert energies_equal(truth.energy_j, e)  # the optimum keeps one item


#: docs/policies.md §9: for each policy that can miss feasibility, an instance on which
#: brute force finds a feasible decision and the policy's decision is infeasible.
MISSES = {
    "topk": "remote-replacement-only.json",
    "local": "remote-replacement-only.json",
    "sift-ratio": "remote-replacement-only.json",
    "sift-decode": "decode-repair-misses.json",
    "sift-price": "decode-repair-misses.json",
}


@pytest.mark.parametrize(("method", "file"), MISSES.items())
def test_policy_misses_a_feasible_instance(method: str, file: str) -> None:
    inst = load_instance(DATA / file)
    truth = exact(inst)
    assert truth.status == "optimal"
    assert evaluate(inst, truth.actions).feasible
    actions = solve_policy(inst, method).actions
    assert actions is not None
    assert not evaluate(inst, actions).feasible


# --------------------------------------------------------------------------------------------
# The size limit of sift-decode
# --------------------------------------------------------------------------------------------


def many_node_document(num_nodes: int) -> dict[str, Any]:
    """One token whose K = M slots each live on their own remote node; only keeping all of
    them meets the budget, so no node can be pruned."""
    rng = np.random.default_rng(0)
    doc = random_document(rng, num_tokens=1, num_experts=num_nodes, top_k=num_nodes,
                          num_nodes=num_nodes, null_fraction=1.0)
    doc["placement"] = list(range(1, num_nodes + 1))
    doc["bounds"]["delta"] = [[0.0 if i == j else None for j in range(num_nodes)]
                              for i in range(num_nodes)]
    doc["bounds"]["beta"] = [1.0] * num_nodes
    doc["tokens"] = {"topk_experts": [list(range(num_nodes))],
                     "topk_weights": [[1.0 / num_nodes] * num_nodes]}
    doc["accuracy"] = {"eps_token": 0.5 / num_nodes}
    doc["latency_s"] = WIDE_LATENCY_S
    return doc


def test_sift_decode_refuses_past_its_limit() -> None:
    inst = instance_from_document(many_node_document(MAX_DECODE_NODES + 1))
    with pytest.raises(PolicyRefusal, match=f"limit of {MAX_DECODE_NODES}"):
        solve_policy(inst, "sift-decode")
    assert solve_policy(inst, "sift-ratio").feasible  # the ratio rule has no such limit


def test_sift_decode_at_its_limit_is_exact() -> None:
    """At the limit the search still runs: only keeping every slot meets the budget."""
    inst = instance_from_document(many_node_document(MAX_DECODE_NODES))
    got = solve_policy(inst, "sift-decode")
    assert got.feasible
    assert np.array_equal(got.actions, inst.topk_experts)


def test_policies_handle_a_large_batch() -> None:
    """Every policy returns valid actions for L = 256, N = 32, K = 4, M = 8."""
    inst = build(3, tokens=256, experts=32, k=4, nodes=8, pc="adaptive", max_cand=None,
                 eps_scale=0.1)
    for name, policy in POLICIES.items():
        actions = policy(inst)
        ev = evaluate(inst, actions)
        assert actions.shape == (256, 4), name
        assert np.isfinite(ev.energy_j), name
