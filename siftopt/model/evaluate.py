"""The evaluator: the single source of truth for energy, latency and degradation of actions.

Every solver, policy and command reports through :func:`evaluate` (docs/model.md §3). Actions
are an ``(L, K)`` integer array: ``actions[t, k]`` is the expert that serves slot k of token t
(``topk_experts[t, k]`` itself = keep, another expert = replace, ``SKIP`` = −1 = skip).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.errors import InputError
from siftopt.model.budgets import Budgets, mean_degradation, token_degradation
from siftopt.model.instance import Instance
from siftopt.model.problem import SKIP, ProblemData, problem_data


@dataclass(frozen=True)
class Violation:
    """One broken constraint: ``kind`` is ``latency``, ``accuracy_token`` or ``accuracy_mean``.

    ``where`` names the node (``node 2``) or token (``token 7``); ``amount`` is by how much
    the constraint is exceeded, in its own unit (tokens for latency, degradation otherwise).
    """

    kind: str
    where: str
    amount: float
    message: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "where": self.where, "amount": self.amount,
                "message": self.message}


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Energy, loads, latency and degradation of an action set, with its violations."""

    actions: np.ndarray  # (L, K) targets
    energy_j: float  # Σ_m E_m(n_m); above a cap the full-power energy is used
    loads: np.ndarray  # (M,) n_m, tokens sent to node m = index + 1
    caps: np.ndarray  # (M,) n̂_m
    node_energy_j: np.ndarray  # (M,)
    node_latency_s: np.ndarray  # (M,) full-power air time + compute of the load
    sent: np.ndarray  # (L, M) bool, u[t, m]
    slot_cost: np.ndarray  # (L, K) c(t, i): 0 keep, δ replace, β skip
    degradation: np.ndarray  # (L,) D_t
    violations: tuple[Violation, ...]

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def mean_degradation(self) -> float:
        return mean_degradation(self.degradation)


def check_actions(data: ProblemData, actions: np.ndarray, *, file: str | None = None) -> np.ndarray:
    """Validate that every action is in its slot's action set ``A(i)``; return an int array."""
    inst = data.inst
    actions = np.asarray(actions)
    if actions.shape != inst.topk_experts.shape:
        raise InputError(f"actions must have shape {inst.topk_experts.shape} (tokens × top_k), "
                         f"got {actions.shape}", file=file, path="tokens")
    actions = actions.astype(np.int64)
    for t, k in zip(*np.nonzero(actions != inst.topk_experts), strict=True):
        target, expert = int(actions[t, k]), int(inst.topk_experts[t, k])
        if target == SKIP:
            continue
        if target not in data.candidates[expert]:
            cands = data.candidates[expert].tolist()
            raise InputError(f"expert {target} is not a replacement candidate of expert "
                             f"{expert} (candidates: {cands})", file=file,
                             path=f"tokens[{t}].actions[{k}].target")
    return actions


def evaluate(inst: Instance, actions: np.ndarray, *, file: str | None = None) -> Evaluation:
    """Evaluate an action set on an instance (docs/model.md §3.1–3.3)."""
    data = problem_data(inst)
    actions = check_actions(data, actions, file=file)
    experts = inst.topk_experts
    skip = actions == SKIP
    safe = np.where(skip, 0, actions)
    node = np.where(skip, -1, inst.placement[safe])
    n_nodes = inst.num_nodes
    sent = np.zeros((inst.num_tokens, n_nodes), dtype=bool)
    rows, cols = np.nonzero(node >= 1)
    sent[rows, node[rows, cols] - 1] = True
    loads = sent.sum(axis=0).astype(np.int64)
    caps = np.array([t.cap for t in data.tables], dtype=np.int64)
    node_energy = np.array([t.energy(int(n)) for t, n in zip(data.tables, loads, strict=True)])
    node_latency = np.array([t.seconds_per_token * n for t, n in
                             zip(data.tables, loads, strict=True)])
    cost = np.where(skip, inst.beta[experts], inst.delta[experts, safe])
    cost = np.where(actions == experts, 0.0, cost)
    degradation = token_degradation(inst.topk_weights * cost)
    violations = _violations(inst.fading, loads, caps, degradation, data.budgets)
    return Evaluation(actions=actions, energy_j=float(node_energy.sum()), loads=loads, caps=caps,
                      node_energy_j=node_energy, node_latency_s=node_latency, sent=sent,
                      slot_cost=cost, degradation=degradation, violations=tuple(violations))


def _violations(fading: str, loads: np.ndarray, caps: np.ndarray, degradation: np.ndarray,
                budgets: Budgets) -> list[Violation]:
    out: list[Violation] = []
    limit = "outage cap" if fading == "rayleigh" else "latency budget"
    for m in np.flatnonzero(loads > caps):
        n, cap = int(loads[m]), int(caps[m])
        out.append(Violation("latency", f"node {m + 1}", float(n - cap),
                             f"node {m + 1} carries {n} tokens but its {limit} allows {cap}"))
    excess = budgets.token_excess(degradation)
    for t in np.flatnonzero(~budgets.token_ok(degradation)):
        out.append(Violation("accuracy_token", f"token {t}", float(excess[t]),
                             f"token {t} has degradation {degradation[t]:.6g} > budget "
                             f"{budgets.eps_token[t]:.6g}"))
    if not budgets.mean_ok(degradation):
        mean = budgets.mean_excess(degradation) + budgets.eps_mean
        out.append(Violation("accuracy_mean", "all tokens", budgets.mean_excess(degradation),
                             f"mean degradation {mean:.6g} > budget {budgets.eps_mean:.6g}"))
    return out


def energies_equal(a: float, b: float) -> bool:
    """Equality of energies as docs/model.md §3.4 defines it."""
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-15
