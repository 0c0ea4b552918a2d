"""Instantaneous CSI: every realisation re-solved as a slow-fading instance with the realised
gains, and the paired value of that channel knowledge (docs/fading.md §8). Energies in J.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from siftopt.analysis.simulate.plan import Plan, summarise_degradation
from siftopt.analysis.simulate.report import CsiReport, InstantaneousExtras
from siftopt.analysis.simulate.stats import Estimate, mean_estimate, proportion_estimate
from siftopt.facade import solve
from siftopt.model.instance import Instance

FloatArray = npt.NDArray[np.float64]

#: Realised gains are clamped below at ``ḡ·X_MIN`` so that a draw of exactly 0 cannot divide by
#: zero in the slow-fading rate formulas (such a node is unreachable either way).
X_MIN = 1e-300


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
class InstantRun:
    status: str
    feasible: bool
    energy_j: float
    degradation: FloatArray | None


def solve_realisation(inst: Instance, method: str, x_up: FloatArray, x_down: FloatArray,
                       time_limit_s: float | None) -> InstantRun:
    result = solve(realised_instance(inst, x_up, x_down), method, time_limit_s=time_limit_s)
    ev = result.evaluation
    if ev is None or not result.feasible:
        return InstantRun(result.status, False, math.nan, None)
    return InstantRun(result.status, True, float(ev.energy_j), ev.degradation)


def instantaneous_report(plan: Plan, runs: list[InstantRun]) -> CsiReport:
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


def value_of_csi(statistical: CsiReport | None, instantaneous: CsiReport,
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


__all__ = [
    "X_MIN", "InstantRun", "instantaneous_report", "realised_instance", "solve_realisation",
    "value_of_csi",
]
