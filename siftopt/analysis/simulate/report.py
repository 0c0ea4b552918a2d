"""What a simulation reports: per CSI mode, the statistics with their intervals and closed forms.

Definitions of every field: docs/fading.md §8. Energies in J; rates and shares in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from siftopt.analysis.simulate.channel import ChunkOutcome
from siftopt.analysis.simulate.plan import (
    DegradationSummary,
    Plan,
    expectations,
    summarise_degradation,
)
from siftopt.analysis.simulate.stats import Estimate, mean_estimate, proportion_estimate

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


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


def statistical_report(plan: Plan, outcomes: list[ChunkOutcome]) -> CsiReport:
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


def deterministic_report(plan: Plan) -> CsiReport:
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


__all__ = [
    "CsiReport", "InstantaneousExtras", "NodeStats", "SimulationReport", "deterministic_report",
    "statistical_report",
]
