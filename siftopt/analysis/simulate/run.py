"""``simulate(inst, method)``: solve once from the channel statistics, then simulate.

The steps of one run, the reported statistics and their closed forms: docs/fading.md §8.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from siftopt.analysis.simulate.channel import (
    ChunkOutcome,
    apply_channel,
    draw_chunks,
    rayleigh_tables,
)
from siftopt.analysis.simulate.instantaneous import (
    InstantRun,
    instantaneous_report,
    solve_realisation,
    value_of_csi,
)
from siftopt.analysis.simulate.plan import budget_only_plan, plan_from_evaluation
from siftopt.analysis.simulate.report import (
    InstantaneousExtras,
    SimulationReport,
    deterministic_report,
    statistical_report,
)
from siftopt.analysis.simulate.stats import Estimate
from siftopt.errors import InputError
from siftopt.facade import solve
from siftopt.model.instance import CSI_MODES, Instance
from siftopt.result import SolveResult

#: Default number of realisations per CSI mode (instantaneous CSI solves one instance per run).
DEFAULT_RUNS = {"statistical": 10_000, "instantaneous": 200}

Progress = Callable[[int, int], None]


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
            det = deterministic_report(plan)
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
    instant: list[InstantRun] = []
    for x_up, x_down in draw_chunks(rng, runs, inst.num_nodes):
        if plan is not None:
            outcomes.append(apply_channel(plan, tables, x_up, x_down))
        if csi == "instantaneous":
            for r in range(x_up.shape[0]):
                instant.append(solve_realisation(inst, method, x_up[r], x_down[r],
                                                  time_limit_s))
                if progress is not None:
                    progress(len(instant), runs)
    statistical = statistical_report(plan, outcomes) if plan is not None else None
    report = dataclasses.replace(report, statistical=statistical)
    if csi == "instantaneous":
        inst_plan = plan or budget_only_plan(inst)
        inst_report = instantaneous_report(inst_plan, instant)
        extras = value_of_csi(statistical, inst_report, Counter(r.status for r in instant))
        report = dataclasses.replace(report, instantaneous=inst_report, extras=extras)
    return dataclasses.replace(report, elapsed_s=time.perf_counter() - started)


__all__ = ["DEFAULT_RUNS", "Progress", "check_options", "simulate"]
