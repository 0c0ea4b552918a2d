"""Monte Carlo simulation of a decision under Rayleigh fast fading (docs/model.md §5).

``simulate(inst, method)`` solves the instance once with the method (exact backend or policy)
from the channel *statistics*, then draws channel realisations and applies the decision:

* every run draws ``X↑_m, X↓_m ~ Exp(1)`` for every remote node m (all nodes, used or not, so
  that every method and both CSI modes see the same channel for the same seed);
* a node m with load ``n_m > 0`` is **in outage** in a run when its uplink fails
  (``X↑ < x_th↑(n_m)``) or its downlink fails (``X↓ < x_th↓(n_m)``); the downlink is only used
  when the uplink arrived (:func:`siftopt.model.fading.realised_node_energy`);
* every slot served by a node in outage falls back to skip: its degradation becomes ``β_i``
  instead of its planned cost. A token sent to a node uses one round trip for all its slots on
  that node, so those slots fail together;
* the run's energy is ``Σ_m`` the realised node energy (J).

With ``csi="instantaneous"`` every realisation is also solved as a slow-fading instance with the
realised gains ``ḡ·X`` (which measures the value of channel knowledge); the statistical decision
is simulated on the very same draws for a paired comparison.

Every reported statistic, its confidence interval and its closed-form prediction are defined in
docs/fading.md §8 ("Monte Carlo validation"). Units: J for energies; degradations are in the
units of β and δ (relative output error); rates and shares are fractions in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from siftopt.errors import InputError
from siftopt.model import fading
from siftopt.model.evaluate import Evaluation
from siftopt.model.instance import CSI_MODES, Instance
from siftopt.model.physics import energy_tables
from siftopt.model.problem import DEGRADATION_TOL, SKIP
from siftopt.result import SolveResult
from siftopt.solve import solve

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: Two-sided 95% standard-normal quantile.
Z95 = 1.959963984540054
#: Realisations drawn per vectorised chunk. A constant, so that results depend only on the seed
#: and the number of runs (not on memory heuristics).
CHUNK_RUNS = 16_384
#: Default number of realisations per CSI mode (instantaneous CSI solves one instance per run).
DEFAULT_RUNS = {"statistical": 10_000, "instantaneous": 200}
#: The closed-form expectations of the non-linear degradation statistics (max, over-budget share,
#: violation rate) enumerate the ``2^u`` outage patterns of the u used nodes; above this many
#: used nodes they are not computed (reported as null).
MAX_PATTERN_NODES = 16
#: Realised gains are clamped below at ``ḡ·X_MIN`` so that a draw of exactly 0 cannot divide by
#: zero in the slow-fading rate formulas (such a node is unreachable either way).
X_MIN = 1e-300

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Estimates and confidence intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A simulated mean with its 95% confidence interval and the closed-form prediction.

    Attributes:
        value: the simulated mean (or frequency); None when no run qualified.
        low, high: the 95% confidence interval; equal to ``value`` when the quantity is
            deterministic; None when it cannot be computed (fewer than two samples).
        expected: the closed-form prediction, None when there is none.
        se: the standard error of ``value`` (sample standard deviation / √n), when defined.
    """

    value: float | None
    low: float | None
    high: float | None
    expected: float | None = None
    se: float | None = None

    @property
    def interval(self) -> list[float] | None:
        """``[low, high]`` or None."""
        if self.low is None or self.high is None:
            return None
        return [self.low, self.high]

    @classmethod
    def exact(cls, value: float) -> Estimate:
        """A deterministic quantity: its interval is the point itself."""
        return cls(value, value, value, value, 0.0)

    def with_expected(self, expected: float | None) -> Estimate:
        return dataclasses.replace(self, expected=expected)


def mean_estimate(samples: npt.ArrayLike, expected: float | None = None) -> Estimate:
    """Sample mean with the normal-approximation 95% interval ``mean ± 1.96·sd/√n``.

    ``sd`` is the sample standard deviation (ddof = 1). With one sample the interval is
    undefined (None); with none the value is None too.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return Estimate(None, None, None, expected, None)
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(mean, None, None, expected, None)
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    return Estimate(mean, mean - Z95 * se, mean + Z95 * se, expected, se)


def wilson_interval(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / trials``.

    ``successes`` may be fractional (a sum of per-run fractions in [0, 1]): the interval only
    uses the variance bound ``p(1 − p)/n``, which holds for any variable in [0, 1].
    """
    if trials <= 0:
        raise ValueError(f"trials must be >= 1, got {trials}")
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials))
    low = 0.0 if p == 0.0 else max(0.0, centre - half)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return low, high


def proportion_estimate(successes: float, trials: int, expected: float | None = None
                        ) -> Estimate:
    """A frequency with its Wilson 95% interval; ``se = √(p(1−p)/n)`` at the observed p."""
    if trials <= 0:
        return Estimate(None, None, None, expected, None)
    p = successes / trials
    low, high = wilson_interval(successes, trials)
    return Estimate(p, low, high, expected, math.sqrt(max(p * (1.0 - p), 0.0) / trials))


# --------------------------------------------------------------------------------------------
# The decision as the simulation sees it
# --------------------------------------------------------------------------------------------


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
    violated = np.zeros(d.shape[0], dtype=bool)
    over_share = None
    if plan.eps_token is not None:
        over = d > plan.eps_token + DEGRADATION_TOL
        over_share = over.mean(axis=1)
        violated |= over.any(axis=1)
    if plan.eps_mean is not None:
        violated |= mean > plan.eps_mean + DEGRADATION_TOL
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


# --------------------------------------------------------------------------------------------
# Drawing and applying the channel (statistical CSI)
# --------------------------------------------------------------------------------------------


def rayleigh_tables(inst: Instance) -> tuple[fading.RayleighNodeTable, ...]:
    """The :class:`~siftopt.model.fading.RayleighNodeTable` of every node (index m − 1 = node m).

    Built with exactly the parameters of :mod:`siftopt.model.physics`; cross-checked against
    :func:`siftopt.model.physics.energy_tables` (same caps, same expected energies).
    """
    out = []
    for table, node in zip(energy_tables(inst), inst.nodes, strict=True):
        rt = fading.rayleigh_node_table(
            bits_per_token=float(inst.payload_bits), n_max=inst.num_tokens,
            latency_s=inst.latency_s, compute_s_per_token=node.compute_s_per_token,
            compute_j_per_token=node.compute_j_per_token, bandwidth_hz=node.bandwidth_hz,
            gain_up_mean=node.gain_up, gain_down_mean=node.gain_down,
            power_up_w=node.power_up_w, power_down_w=node.power_down_w,
            noise_psd_w_per_hz=inst.noise_psd_w_per_hz, weight_up=inst.energy_weight_up,
            weight_down=inst.energy_weight_down, power_control=inst.power_control,
            outage_max=float(inst.outage_max or 0.0))
        if rt.cap != table.cap or not np.array_equal(rt.energy_j, table.energy_j):
            raise AssertionError(f"node {table.node}: fading table differs from physics table")
        out.append(rt)
    return tuple(out)


def draw_chunks(rng: np.random.Generator, runs: int, num_nodes: int
                ) -> Iterator[tuple[FloatArray, FloatArray]]:
    """Yield ``(X↑, X↓)`` chunks of shape ``(≤ CHUNK_RUNS, M)``, ``X ~ Exp(1)``, R rows in all.

    Draws through :func:`siftopt.model.fading.sample_link_success` (uplink block, then downlink
    block, per chunk), so a given seed and R always give the same channel.
    """
    zeros = np.zeros(num_nodes)
    done = 0
    while done < runs:
        size = min(CHUNK_RUNS, runs - done)
        sample = fading.sample_link_success(rng, zeros, zeros, size)
        yield sample.x_up, sample.x_down
        done += size


@dataclass(frozen=True, eq=False)
class ChunkOutcome:
    """The statistical decision applied to a chunk of realisations.

    Attributes:
        energy_j: ``(R,)`` realised energy per run (J).
        node_energy_j: ``(R, M)`` realised energy per node (J).
        outage: ``(R, M)`` node in outage (always False for unused nodes).
        degradation: per-run degradation summaries.
    """

    energy_j: FloatArray
    node_energy_j: FloatArray
    outage: BoolArray
    degradation: DegradationSummary


def apply_channel(plan: Plan, tables: tuple[fading.RayleighNodeTable, ...] | None,
                  x_up: FloatArray, x_down: FloatArray) -> ChunkOutcome:
    """Apply a decision to realised fading ``X↑, X↓`` of shape ``(R, M)``.

    With ``tables=None`` (slow fading) the channel is deterministic: no outage and the planned
    node energies in every run.
    """
    runs, m_nodes = x_up.shape
    outage = np.zeros((runs, m_nodes), dtype=bool)
    node_energy = np.zeros((runs, m_nodes))
    for m in np.flatnonzero(plan.used):
        n = int(plan.loads[m])
        if tables is None:
            node_energy[:, m] = plan.node_energy_j[m]
            continue
        table = tables[m]
        ok = (x_up[:, m] >= table.threshold_up[n]) & (x_down[:, m] >= table.threshold_down[n])
        outage[:, m] = ~ok
        node_energy[:, m] = fading.realised_node_energy(table, n, x_up[:, m], x_down[:, m])
    summary = summarise_degradation(plan, realised_degradation(plan, outage))
    return ChunkOutcome(node_energy.sum(axis=1), node_energy, outage, summary)


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NodeStats:
    """Per-node simulated and closed-form figures (node m, load in tokens, energies in J)."""

    node: int
    tokens: int
    outage: Estimate
    energy: Estimate


@dataclass(frozen=True, eq=False)
class CsiReport:
    """The statistics of one CSI mode over its runs.

    Attributes:
        runs: realisations simulated (0 when the channel is deterministic).
        energy: energy per run (J).
        outage: per node-use outage frequency: failed (run, used node) pairs / (runs · u).
        outage_trials: ``runs · u``, the number of node uses.
        outage_any: fraction of runs with at least one used node in outage.
        degradation_mean: mean over tokens of ``D_t``, per run.
        degradation_max: ``max_t D_t``, per run.
        degradation_max_observed: the largest ``D_t`` seen in any run and token.
        over_share: fraction of a run's tokens over their budget ``ε_t``, per run.
        violation: fraction of runs that break a budget (any token or the mean).
        nodes: per-node figures (statistical CSI only).
        energy_j: per-run energies (J); nan for runs without a feasible decision.
        violated: per-run budget-violation flags.
    """

    runs: int
    energy: Estimate
    outage: Estimate
    outage_trials: int
    outage_any: Estimate
    degradation_mean: Estimate
    degradation_max: Estimate
    degradation_max_observed: float | None
    over_share: Estimate | None
    violation: Estimate
    nodes: tuple[NodeStats, ...] = ()
    energy_j: FloatArray = field(default_factory=lambda: np.zeros(0))
    violated: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))


@dataclass(frozen=True, eq=False)
class InstantaneousExtras:
    """What only instantaneous CSI reports.

    Attributes:
        statuses: solve status of every realisation, counted.
        infeasible: fraction of runs whose realised instance got no feasible decision.
        saving: paired energy saving ``E_stat(r) − E_inst(r)`` (J) over the runs with a
            feasible instantaneous decision (None without a statistical decision). It can be
            negative: in a deep fade the statistical decision falls back to skip and breaks
            its budget cheaply, while the informed decision must meet the budget.
        relative_saving: ``saving / mean E_stat`` over the same runs.
        runs_compared: how many runs enter the saving.
        saving_within_budget: the same paired saving over the runs in which the statistical
            decision also met every budget (like for like in accuracy). For an exact method
            every such run has ``E_inst(r) ≤ E_stat(r)`` (docs/fading.md §8).
        runs_within_budget: how many runs enter ``saving_within_budget``.
    """

    statuses: dict[str, int]
    infeasible: Estimate
    infeasible_runs: int
    saving: Estimate | None
    relative_saving: float | None
    runs_compared: int
    saving_within_budget: Estimate | None = None
    runs_within_budget: int = 0


@dataclass(frozen=True, eq=False)
class SimulationReport:
    """The result of :func:`simulate`: the decision, and one report per CSI mode simulated."""

    instance: str
    method: str
    status: str
    message: str
    fading: str
    csi: str
    power_control: str
    outage_max: float | None
    seed: int
    runs: int
    deterministic: bool
    loads: IntArray | None
    statistical: CsiReport | None
    instantaneous: CsiReport | None = None
    extras: InstantaneousExtras | None = None
    elapsed_s: float = 0.0

    @property
    def primary(self) -> CsiReport | None:
        """The report of the requested CSI mode."""
        return self.instantaneous if self.csi == "instantaneous" else self.statistical


def _statistical_report(plan: Plan, outcomes: list[ChunkOutcome]) -> CsiReport:
    """Combine chunk outcomes into a :class:`CsiReport` with closed-form predictions."""
    exp = expectations(plan)
    energy = np.concatenate([o.energy_j for o in outcomes])
    node_energy = np.concatenate([o.node_energy_j for o in outcomes])
    outage = np.concatenate([o.outage for o in outcomes])
    deg = DegradationSummary(
        mean=np.concatenate([o.degradation.mean for o in outcomes]),
        max=np.concatenate([o.degradation.max for o in outcomes]),
        over_share=(None if plan.eps_token is None else
                    np.concatenate([o.degradation.over_share for o in outcomes])),  # type: ignore[misc]
        violated=np.concatenate([o.degradation.violated for o in outcomes]))
    runs = energy.size
    used = plan.used
    u = int(used.sum())
    failures = outage[:, used].sum(axis=1)
    nodes = tuple(
        NodeStats(node=m + 1, tokens=int(plan.loads[m]),
                  outage=proportion_estimate(float(outage[:, m].sum()), runs,
                                             float(plan.outage_prob[m])),
                  energy=mean_estimate(node_energy[:, m], float(plan.node_energy_j[m])))
        if used[m] else
        NodeStats(node=m + 1, tokens=0, outage=Estimate.exact(0.0), energy=Estimate.exact(0.0))
        for m in range(plan.loads.size))
    if u == 0:  # nothing can fail
        outage_est, any_est = Estimate.exact(0.0), Estimate.exact(0.0)
    else:
        outage_est = proportion_estimate(float(failures.sum()), runs * u, exp.outage)
        any_est = proportion_estimate(float((failures > 0).sum()), runs, exp.outage_any)
    over = None
    if deg.over_share is not None:
        over = proportion_estimate(float(deg.over_share.sum()), runs, exp.over_share)
    return CsiReport(
        runs=runs, energy=mean_estimate(energy, exp.energy_j), outage=outage_est,
        outage_trials=runs * u, outage_any=any_est,
        degradation_mean=mean_estimate(deg.mean, exp.degradation_mean),
        degradation_max=mean_estimate(deg.max, exp.degradation_max),
        degradation_max_observed=float(deg.max.max()), over_share=over,
        violation=proportion_estimate(float(deg.violated.sum()), runs, exp.violation),
        nodes=nodes, energy_j=energy, violated=deg.violated)


def _deterministic_report(plan: Plan) -> CsiReport:
    """Slow fading: nothing to draw; every figure is exact (interval = point)."""
    summary = summarise_degradation(plan, plan.base_degradation[None, :])
    nodes = tuple(NodeStats(node=m + 1, tokens=int(plan.loads[m]), outage=Estimate.exact(0.0),
                            energy=Estimate.exact(float(plan.node_energy_j[m])))
                  for m in range(plan.loads.size))
    over = None if summary.over_share is None else Estimate.exact(float(summary.over_share[0]))
    return CsiReport(
        runs=0, energy=Estimate.exact(plan.expected_energy_j), outage=Estimate.exact(0.0),
        outage_trials=0, outage_any=Estimate.exact(0.0),
        degradation_mean=Estimate.exact(float(summary.mean[0])),
        degradation_max=Estimate.exact(float(summary.max[0])),
        degradation_max_observed=float(summary.max[0]), over_share=over,
        violation=Estimate.exact(float(summary.violated[0])), nodes=nodes,
        energy_j=np.array([plan.expected_energy_j]), violated=summary.violated)


# --------------------------------------------------------------------------------------------
# Instantaneous CSI
# --------------------------------------------------------------------------------------------


def realised_instance(inst: Instance, x_up: FloatArray, x_down: FloatArray) -> Instance:
    """The slow-fading instance seen by a transmitter that knows the realised gains.

    Node m gets ``g↑ = ḡ↑·X↑_m`` and ``g↓ = ḡ↓·X↓_m`` (X clamped below at :data:`X_MIN`);
    ``fading = "slow"``, no outage cap. A new object, so no cache of ``inst`` is reused.
    """
    nodes = tuple(
        dataclasses.replace(node, gain_up=node.gain_up * max(float(xu), X_MIN),
                            gain_down=node.gain_down * max(float(xd), X_MIN),
                            gain_up_db=None, gain_down_db=None)
        for node, xu, xd in zip(inst.nodes, x_up, x_down, strict=True))
    return inst.replace(fading="slow", outage_max=None, csi="statistical", nodes=nodes)


@dataclass(frozen=True, eq=False)
class _InstantRun:
    status: str
    feasible: bool
    energy_j: float
    degradation: FloatArray | None


def _solve_realisation(inst: Instance, method: str, x_up: FloatArray, x_down: FloatArray,
                       time_limit_s: float | None) -> _InstantRun:
    result = solve(realised_instance(inst, x_up, x_down), method, time_limit_s=time_limit_s)
    ev = result.evaluation
    if ev is None or not result.feasible:
        return _InstantRun(result.status, False, math.nan, None)
    return _InstantRun(result.status, True, float(ev.energy_j), ev.degradation)


def _instantaneous_report(plan: Plan, runs: list[_InstantRun]) -> CsiReport:
    """Statistics of the instantaneous-CSI decisions over the runs that had one."""
    good = [r for r in runs if r.feasible]
    energy = np.array([r.energy_j for r in runs])
    violated = np.zeros(len(runs), dtype=bool)
    if good:
        d = np.stack([r.degradation for r in good])  # type: ignore[misc]
        summary = summarise_degradation(plan, d)
        violated[[i for i, r in enumerate(runs) if r.feasible]] = summary.violated
        over = (None if summary.over_share is None else
                proportion_estimate(float(summary.over_share.sum()), len(good)))
        violation = proportion_estimate(float(summary.violated.sum()), len(good))
        deg_mean, deg_max = mean_estimate(summary.mean), mean_estimate(summary.max)
        observed: float | None = float(summary.max.max())
    else:
        empty = Estimate(None, None, None)
        over = None if plan.eps_token is None else empty
        violation = deg_mean = deg_max = empty
        observed = None
    return CsiReport(
        runs=len(runs), energy=mean_estimate(energy[np.isfinite(energy)]),
        outage=Estimate.exact(0.0), outage_trials=0, outage_any=Estimate.exact(0.0),
        degradation_mean=deg_mean, degradation_max=deg_max, degradation_max_observed=observed,
        over_share=over, violation=violation, energy_j=energy, violated=violated)


def _extras(statistical: CsiReport | None, instantaneous: CsiReport,
            statuses: Counter[str]) -> InstantaneousExtras:
    energy_inst = instantaneous.energy_j
    feasible = np.isfinite(energy_inst)
    infeasible_runs = int((~feasible).sum())
    saving = relative = within = None
    compared = like = 0
    if statistical is not None:
        diff = statistical.energy_j - energy_inst
        compared = int(feasible.sum())
        saving = mean_estimate(diff[feasible])
        base = float(statistical.energy_j[feasible].mean()) if compared else 0.0
        relative = float(diff[feasible].mean()) / base if compared and base > 0 else None
        same = feasible & ~statistical.violated
        like = int(same.sum())
        within = mean_estimate(diff[same])
    return InstantaneousExtras(
        statuses=dict(sorted(statuses.items())),
        infeasible=proportion_estimate(float(infeasible_runs), max(instantaneous.runs, 1)),
        infeasible_runs=infeasible_runs, saving=saving, relative_saving=relative,
        runs_compared=compared, saving_within_budget=within, runs_within_budget=like)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _simulable(inst: Instance, result: SolveResult) -> str | None:
    """Why the statistical decision cannot be simulated, or None."""
    ev = result.evaluation
    if ev is None:
        return result.message or f"no decision to simulate (status {result.status})"
    over = np.flatnonzero(ev.loads > ev.caps)
    if over.size:
        m = int(over[0])
        limit = "outage cap" if inst.fading == "rayleigh" else "latency cap"
        return (f"the decision sends {int(ev.loads[m])} tokens to node {m + 1} above its "
                f"{limit} {int(ev.caps[m])}; nothing to simulate")
    return None


def check_options(runs: int, seed: int, csi: str) -> None:
    """Raise :class:`InputError` for a bad number of runs, seed or CSI mode."""
    if isinstance(runs, bool) or int(runs) != runs or runs < 1:
        raise InputError(f"runs must be an integer >= 1, got {runs!r}", path="--runs")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}", path="--seed")
    if csi not in CSI_MODES:
        raise InputError(f"csi must be one of {', '.join(CSI_MODES)}, got {csi!r}",
                         path="--csi")


def simulate(inst: Instance, method: str = "highs", *, runs: int | None = None, seed: int = 0,
             csi: str | None = None, time_limit_s: float | None = None,
             progress: Progress | None = None) -> SimulationReport:
    """Solve ``inst`` with ``method`` from the channel statistics and simulate the decision.

    Args:
        inst: the instance; its gains are mean gains under ``fading: rayleigh``.
        method: exact backend (``highs``, ``cpsat``, ``brute``) or policy name.
        runs: realisations R (default :data:`DEFAULT_RUNS` of the CSI mode).
        seed: seed of ``np.random.default_rng``; the same seed and R give the same channel.
        csi: ``statistical`` or ``instantaneous`` (default: the instance's ``csi``).
        time_limit_s: wall-clock limit of each solve (s), None for the profile default.
        progress: called as ``progress(done, total)`` after each instantaneous-CSI solve.

    Under slow fading the channel is deterministic: nothing is drawn (``runs = 0`` in the
    report) and every figure is exact; instantaneous CSI equals statistical CSI there.
    """
    started = time.perf_counter()
    csi = csi or inst.csi
    runs = DEFAULT_RUNS.get(csi, 1) if runs is None else runs
    check_options(runs, seed, csi)
    decided = inst if inst.csi == "statistical" else inst.replace(csi="statistical")
    result = solve(decided, method, time_limit_s=time_limit_s)
    reason = _simulable(inst, result)
    report = SimulationReport(
        instance=inst.name, method=method, status=result.status,
        message=reason or result.message, fading=inst.fading, csi=csi,
        power_control=inst.power_control, outage_max=inst.outage_max, seed=int(seed),
        runs=int(runs), deterministic=inst.fading != "rayleigh",
        loads=None if result.evaluation is None else result.evaluation.loads, statistical=None)
    plan = None if reason is not None else plan_from_evaluation(inst, result.evaluation)  # type: ignore[arg-type]
    if inst.fading != "rayleigh":
        if plan is not None:
            det = _deterministic_report(plan)
            report = dataclasses.replace(report, runs=0, statistical=det)
            if csi == "instantaneous":
                zero = Estimate.exact(0.0)
                extras = InstantaneousExtras(statuses={}, infeasible=zero, infeasible_runs=0,
                                             saving=zero, relative_saving=0.0,
                                             runs_compared=0, saving_within_budget=zero)
                report = dataclasses.replace(report, instantaneous=det, extras=extras)
        return dataclasses.replace(report, elapsed_s=time.perf_counter() - started)
    if plan is None and csi == "statistical":
        return dataclasses.replace(report, elapsed_s=time.perf_counter() - started)
    tables = rayleigh_tables(inst) if plan is not None else None
    rng = np.random.default_rng(seed)
    outcomes: list[ChunkOutcome] = []
    instant: list[_InstantRun] = []
    for x_up, x_down in draw_chunks(rng, runs, inst.num_nodes):
        if plan is not None:
            outcomes.append(apply_channel(plan, tables, x_up, x_down))
        if csi == "instantaneous":
            for r in range(x_up.shape[0]):
                instant.append(_solve_realisation(inst, method, x_up[r], x_down[r],
                                                  time_limit_s))
                if progress is not None:
                    progress(len(instant), runs)
    statistical = _statistical_report(plan, outcomes) if plan is not None else None
    report = dataclasses.replace(report, statistical=statistical)
    if csi == "instantaneous":
        inst_plan = plan or _budget_only_plan(inst)
        inst_report = _instantaneous_report(inst_plan, instant)
        extras = _extras(statistical, inst_report, Counter(r.status for r in instant))
        report = dataclasses.replace(report, instantaneous=inst_report, extras=extras)
    return dataclasses.replace(report, elapsed_s=time.perf_counter() - started)


def _budget_only_plan(inst: Instance) -> Plan:
    """A plan carrying only the budgets (to judge instantaneous decisions without a
    statistical one)."""
    m, n = inst.num_nodes, inst.num_tokens
    return Plan(loads=np.zeros(m, dtype=np.int64), outage_prob=np.zeros(m),
                node_energy_j=np.zeros(m), base_degradation=np.zeros(n),
                fallback_increase=np.zeros((m, n)), eps_token=inst.eps_token,
                eps_mean=inst.eps_mean)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _interval(est: Estimate | None) -> list[float] | None:
    if est is None or est.interval is None:
        return None
    return [float(v) for v in est.interval]


def _estimate_fields(prefix: str, value_key: str, est: Estimate | None, *, ci_key: str | None
                     = None, expected_key: str | None = None) -> dict[str, Any]:
    return {
        value_key: None if est is None else _num(est.value),
        (ci_key or f"{prefix}_ci"): _interval(est),
        (expected_key or f"{prefix}_expected"): None if est is None else _num(est.expected),
    }


def csi_report_json(rep: CsiReport | None) -> dict[str, Any]:
    """The statistics of one CSI mode as flat JSON fields (nulls when there are none)."""
    if rep is None:
        keys = ("energy_mean_j", "energy_ci_j", "energy_expected_j", "energy_se_j",
                "outage_rate", "outage_ci", "outage_expected", "outage_trials",
                "outage_any_rate", "outage_any_ci", "outage_any_expected",
                "degradation_mean", "degradation_mean_ci", "degradation_mean_expected",
                "degradation_max", "degradation_max_ci", "degradation_max_expected",
                "degradation_max_observed", "over_budget_share", "over_budget_share_ci",
                "over_budget_share_expected", "budget_violation_rate", "budget_violation_ci",
                "budget_violation_expected")
        return {k: None for k in keys} | {"nodes": []}
    out: dict[str, Any] = {}
    out |= _estimate_fields("energy", "energy_mean_j", rep.energy, ci_key="energy_ci_j",
                            expected_key="energy_expected_j")
    out["energy_se_j"] = _num(rep.energy.se)
    out |= _estimate_fields("outage", "outage_rate", rep.outage)
    out["outage_trials"] = rep.outage_trials
    out |= _estimate_fields("outage_any", "outage_any_rate", rep.outage_any)
    out |= _estimate_fields("degradation_mean", "degradation_mean", rep.degradation_mean)
    out |= _estimate_fields("degradation_max", "degradation_max", rep.degradation_max)
    out["degradation_max_observed"] = _num(rep.degradation_max_observed)
    out |= _estimate_fields("over_budget_share", "over_budget_share", rep.over_share)
    out |= _estimate_fields("budget_violation", "budget_violation_rate", rep.violation)
    out["nodes"] = [{"node": n.node, "tokens": n.tokens, "outage_rate": _num(n.outage.value),
                     "outage_ci": _interval(n.outage), "outage_expected": _num(n.outage.expected),
                     "energy_mean_j": _num(n.energy.value), "energy_ci_j": _interval(n.energy),
                     "energy_expected_j": _num(n.energy.expected)} for n in rep.nodes]
    return out


def report_json(rep: SimulationReport) -> dict[str, Any]:
    """The object printed by ``siftopt simulate --format json``.

    Top-level statistics are those of the requested CSI mode; with instantaneous CSI the
    statistical decision simulated on the same draws is under ``statistical`` and the paired
    comparison under ``value_of_csi``.
    """
    out: dict[str, Any] = {
        "instance": rep.instance, "method": rep.method, "status": rep.status,
        "message": rep.message, "fading": rep.fading, "csi": rep.csi,
        "power_control": rep.power_control, "outage_max": rep.outage_max, "seed": rep.seed,
        "runs": rep.runs, "deterministic": rep.deterministic,
        "loads": None if rep.loads is None else [int(n) for n in rep.loads],
    }
    out |= csi_report_json(rep.primary)
    ex = rep.extras
    if rep.csi == "instantaneous" and ex is not None:
        out["infeasible_runs"] = ex.infeasible_runs
        out["infeasible_rate"] = _num(ex.infeasible.value)
        out["infeasible_ci"] = _interval(ex.infeasible)
        out["run_statuses"] = ex.statuses
        out["statistical"] = csi_report_json(rep.statistical)
        out["value_of_csi"] = {
            "energy_saving_mean_j": None if ex.saving is None else _num(ex.saving.value),
            "energy_saving_ci_j": _interval(ex.saving),
            "relative_saving": _num(ex.relative_saving),
            "runs_compared": ex.runs_compared,
            "energy_saving_within_budget_mean_j": (None if ex.saving_within_budget is None
                                                   else _num(ex.saving_within_budget.value)),
            "energy_saving_within_budget_ci_j": _interval(ex.saving_within_budget),
            "runs_within_budget": ex.runs_within_budget,
        }
    out["elapsed_s"] = rep.elapsed_s
    return out


__all__ = [
    "CHUNK_RUNS", "DEFAULT_RUNS", "CsiReport", "Estimate", "Expectations", "Plan",
    "SimulationReport", "Z95", "apply_channel", "check_options", "csi_report_json",
    "draw_chunks", "expectations", "mean_estimate", "outage_patterns", "plan_from_evaluation",
    "proportion_estimate", "rayleigh_tables", "realised_degradation", "realised_instance",
    "report_json", "simulate", "slot_nodes", "summarise_degradation", "wilson_interval",
]
