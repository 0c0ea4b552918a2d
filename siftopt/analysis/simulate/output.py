"""The JSON object printed by ``siftopt simulate --format json`` (docs/fading.md §8)."""

from __future__ import annotations

import math
from typing import Any

from siftopt.analysis.simulate.report import CsiReport, SimulationReport
from siftopt.analysis.simulate.stats import Estimate


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


__all__ = ["csi_report_json", "report_json"]
