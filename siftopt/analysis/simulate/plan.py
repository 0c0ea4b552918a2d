"""The decision as the simulation sees it: loads, outage probabilities, the fallback to skip,
and the closed-form expectations of every degradation statistic (docs/fading.md §8).

Degradations are in the units of β and δ (relative output error).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from siftopt.model.budgets import budgets_of
from siftopt.model.decision import SKIP
from siftopt.model.evaluate import Evaluation
from siftopt.model.instance import Instance
from siftopt.model.physics import energy_tables

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: The closed-form expectations of the non-linear degradation statistics (max, over-budget share,
#: violation rate) enumerate the ``2^u`` outage patterns of the u used nodes; above this many
#: used nodes they are not computed (reported as null).
MAX_PATTERN_NODES = 16


@dataclass(frozen=True, eq=False)
class Plan:
    """What the simulation needs from an evaluated decision (M nodes, L tokens).

    Attributes:
        loads: ``n_m`` (tokens) of nodes 1..M (index m − 1).
        outage_prob: ``p_m(n_m)`` (0 for unused nodes and under slow fading).
        node_energy_j: closed-form expected energy ``Ē_m(n_m)`` of each node (J).
        base_degradation: planned ``D_t`` of each token (no outage).
        fallback_increase: ``(M, L)``; ``Δ[m, t] = Σ_{slots of t on node m} w·(β_i − c)``, the
            change of ``D_t`` when node m is in outage (may be negative if some ``δ > β``).
        eps_token: per-token budgets ``ε_t`` or None.
        eps_mean: mean budget ``ε̄`` or None.
    """

    loads: IntArray
    outage_prob: FloatArray
    node_energy_j: FloatArray
    base_degradation: FloatArray
    fallback_increase: FloatArray
    eps_token: FloatArray | None
    eps_mean: float | None

    @property
    def used(self) -> BoolArray:
        """Nodes with a positive load."""
        return self.loads > 0

    @property
    def expected_energy_j(self) -> float:
        """``Σ_m Ē_m(n_m)`` (J), the evaluator's energy of the decision."""
        return float(self.node_energy_j.sum())


def slot_nodes(inst: Instance, actions: np.ndarray) -> IntArray:
    """``(L, K)`` node serving each slot: 0 = source, 1..M remote, −1 = skip."""
    actions = np.asarray(actions, dtype=np.int64)
    skip = actions == SKIP
    return np.where(skip, -1, inst.placement[np.where(skip, 0, actions)]).astype(np.int64)


def plan_from_evaluation(inst: Instance, ev: Evaluation) -> Plan:
    """The :class:`Plan` of an evaluated decision whose loads are within the node caps."""
    nodes = slot_nodes(inst, ev.actions)
    skip_cost = inst.beta[inst.topk_experts]
    change = inst.topk_weights * (skip_cost - ev.slot_cost)  # (L, K): w·(β − c)
    increase = np.zeros((inst.num_nodes, inst.num_tokens))
    for m in range(1, inst.num_nodes + 1):
        increase[m - 1] = np.where(nodes == m, change, 0.0).sum(axis=1)
    tables = energy_tables(inst)
    prob = np.zeros(inst.num_nodes)
    for m, (table, n) in enumerate(zip(tables, ev.loads, strict=True)):
        if table.outage is not None and n > 0:
            prob[m] = float(table.outage[int(n)])
    return Plan(loads=np.asarray(ev.loads, dtype=np.int64), outage_prob=prob,
                node_energy_j=np.asarray(ev.node_energy_j, dtype=np.float64),
                base_degradation=np.asarray(ev.degradation, dtype=np.float64),
                fallback_increase=increase, eps_token=inst.eps_token, eps_mean=inst.eps_mean)


def realised_degradation(plan: Plan, outage: BoolArray) -> FloatArray:
    """Token degradations ``(R, L)`` when the nodes in ``outage`` (``(R, M)`` bool) fail.

    ``D_t = D_t^plan + Σ_m 1{m in outage}·Δ[m, t]``: every slot served by a failed node falls
    back to skip. Outage flags of unused nodes are ignored (``Δ = 0`` there).
    """
    out = np.asarray(outage, dtype=np.float64) @ plan.fallback_increase
    return out + plan.base_degradation


@dataclass(frozen=True, eq=False)
class DegradationSummary:
    """Per-run summaries of token degradations ``D`` of shape ``(R, L)``.

    Attributes:
        mean: ``(1/L)·Σ_t D_t`` per run.
        max: ``max_t D_t`` per run.
        over_share: fraction of the run's tokens with ``D_t > ε_t + 1e-9`` (None without
            per-token budgets).
        violated: whether the run breaks any budget (a token over ``ε_t`` or the mean over
            ``ε̄``, each with the 1e-9 tolerance of docs/model.md §3.4).
    """

    mean: FloatArray
    max: FloatArray
    over_share: FloatArray | None
    violated: BoolArray


def summarise_degradation(plan: Plan, degradation: FloatArray) -> DegradationSummary:
    """:class:`DegradationSummary` of token degradations ``(R, L)`` against the plan's budgets."""
    d = np.asarray(degradation, dtype=np.float64)
    mean = d.mean(axis=1)
    budgets = budgets_of(plan.eps_token, plan.eps_mean, d.shape[1])
    violated = ~budgets.accepts_batch(d)
    over_share = None
    if plan.eps_token is not None:
        over_share = (~budgets.token_ok(d)).mean(axis=1)
    return DegradationSummary(mean=mean, max=d.max(axis=1), over_share=over_share,
                              violated=violated)


def outage_patterns(plan: Plan) -> tuple[BoolArray, FloatArray] | None:
    """Every outage pattern of the used nodes with its probability.

    Returns ``(patterns (2^u, M) bool, probability (2^u,))`` with independent outages of
    probability ``p_m(n_m)``, or None when more than :data:`MAX_PATTERN_NODES` nodes are used.
    """
    used = np.flatnonzero(plan.used)
    u = used.size
    if u > MAX_PATTERN_NODES:
        return None
    bits = ((np.arange(2**u)[:, None] >> np.arange(u)[None, :]) & 1).astype(bool)
    p = plan.outage_prob[used]
    prob = np.prod(np.where(bits, p, 1.0 - p), axis=1)
    patterns = np.zeros((2**u, plan.loads.size), dtype=bool)
    patterns[:, used] = bits
    return patterns, prob


@dataclass(frozen=True)
class Expectations:
    """Closed-form predictions of a plan (None where not computed)."""

    energy_j: float
    outage: float  # mean of p_m(n_m) over used nodes (0 if none)
    outage_any: float  # 1 − Π(1 − p_m)
    degradation_mean: float  # (1/L) Σ_t (D_t^plan + Σ_m p_m Δ[m, t])
    degradation_max: float | None
    over_share: float | None
    violation: float | None


def expectations(plan: Plan) -> Expectations:
    """Closed-form predictions of every statistic the simulator reports.

    Mean degradation is linear in the outage indicators, hence ``Σ_t`` of the planned cost
    weighted by ``(1 − p)`` plus ``β`` weighted by ``p`` per slot. The max, the over-budget
    share and the violation rate are exact expectations over the ``2^u`` outage patterns.
    """
    used = plan.used
    p = plan.outage_prob[used]
    mean = float((plan.base_degradation + plan.outage_prob @ plan.fallback_increase).mean())
    degradation_max = over = violation = None
    enumerated = outage_patterns(plan)
    if enumerated is not None:
        patterns, prob = enumerated
        summary = summarise_degradation(plan, realised_degradation(plan, patterns))
        degradation_max = float(prob @ summary.max)
        if summary.over_share is not None:
            over = float(prob @ summary.over_share)
        violation = float(prob @ summary.violated)
    return Expectations(energy_j=plan.expected_energy_j,
                        outage=float(p.mean()) if p.size else 0.0,
                        outage_any=float(-np.expm1(np.log1p(-p).sum())) if p.size else 0.0,
                        degradation_mean=mean, degradation_max=degradation_max,
                        over_share=over, violation=violation)


def budget_only_plan(inst: Instance) -> Plan:
    """A plan carrying only the budgets (to judge instantaneous decisions without a
    statistical one)."""
    m, n = inst.num_nodes, inst.num_tokens
    return Plan(loads=np.zeros(m, dtype=np.int64), outage_prob=np.zeros(m),
                node_energy_j=np.zeros(m), base_degradation=np.zeros(n),
                fallback_increase=np.zeros((m, n)), eps_token=inst.eps_token,
                eps_mean=inst.eps_mean)


__all__ = [
    "MAX_PATTERN_NODES", "DegradationSummary", "Expectations", "Plan", "budget_only_plan",
    "expectations", "outage_patterns", "plan_from_evaluation", "realised_degradation",
    "slot_nodes", "summarise_degradation",
]
