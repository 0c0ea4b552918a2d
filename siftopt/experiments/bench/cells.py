"""Running one benchmark cell on a worker: generate the instance, run every method on it.

A cell whose configuration has a ``trace`` key is built from a real model's router trace
(:func:`siftopt.experiments.generate.trace.generate_from_trace`), any other from the presets.

:func:`run_cell` takes and returns plain data (dicts), so that it travels to any Dask worker
that has siftopt installed. Every energy comes from the shared evaluator (through
:func:`siftopt.facade.solve`). Units: J for energies, s for times.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from siftopt.errors import PolicyRefusal
from siftopt.experiments.generate import GeneratorConfig, generate
from siftopt.experiments.generate.output import quick_checks
from siftopt.experiments.generate.trace import TraceConfig, generate_from_trace
from siftopt.facade import EXACT_METHODS, solve
from siftopt.io.profiles import load_profile
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data
from siftopt.result import SolveResult


def simulation_seed(instance_key: str) -> int:
    """Seed of a cell's Monte Carlo channel draws: the same channel for every method of the
    cell (paired comparison), independent channels across cells."""
    return int(instance_key[:12], 16)


def cell_facts(inst: Instance, facts: dict[str, Any]) -> dict[str, Any]:
    """Columns that describe the instance (sizes, budgets, reachability)."""
    data = problem_data(inst)
    checks = quick_checks(inst)
    eps_token = None if inst.eps_token is None else float(np.mean(inst.eps_token))
    return {"instance": inst.name, "num_experts": inst.num_experts, "top_k": inst.top_k,
            "slots": inst.num_tokens * inst.top_k, "options": int(data.opt_target.size),
            "latency_budget_s": inst.latency_s, "eps_token_mean": eps_token,
            "eps_mean_budget": inst.eps_mean, "reachable_nodes": checks["reachable_nodes"],
            "trivial": bool(checks["trivial"]), "budgets_raised": int(facts["budgets_raised"])}


def result_columns(result: SolveResult) -> dict[str, Any]:
    """Columns of one solve result (energy in J, times in s)."""
    ev = result.evaluation
    return {"status": result.status, "feasible": result.feasible,
            "energy_j": None if ev is None else float(ev.energy_j),
            "dual_bound_j": result.dual_bound_j,
            "mean_degradation": None if ev is None else float(ev.mean_degradation),
            "build_time_s": result.build_time_s, "solve_time_s": result.solve_time_s,
            "time_s": result.total_time_s, "message": result.message[:500]}


def simulate_columns(inst: Instance, result: SolveResult, runs: int, seed: int
                     ) -> dict[str, Any]:
    """Monte Carlo of a decision under Rayleigh fading (docs/model.md §5): mean realised
    energy (J), share of runs with an outage, mean realised degradation and share of runs
    breaking a budget. Empty when there is nothing to simulate."""
    from siftopt.analysis import simulate as sim

    ev = result.evaluation
    if runs <= 0 or inst.fading != "rayleigh" or ev is None or (ev.loads > ev.caps).any():
        return {}
    plan = sim.plan_from_evaluation(inst, ev)
    tables = sim.rayleigh_tables(inst)
    rng = np.random.default_rng(seed)
    chunks = [sim.apply_channel(plan, tables, up, down)
              for up, down in sim.draw_chunks(rng, runs, inst.num_nodes)]
    used = plan.used
    return {
        "sim_runs": runs,
        "sim_energy_j": float(np.concatenate([c.energy_j for c in chunks]).mean()),
        "sim_outage_any": float(np.concatenate([c.outage[:, used].any(axis=1)
                                                for c in chunks]).mean()),
        "sim_degradation_mean": float(np.concatenate([c.degradation.mean
                                                      for c in chunks]).mean()),
        "sim_violation_rate": float(np.concatenate([c.degradation.violated
                                                    for c in chunks]).mean()),
    }


def _run_method(inst: Instance, method: str, spec: dict[str, Any]) -> dict[str, Any]:
    profile = load_profile(spec.get("profile"))
    started = time.perf_counter()
    try:
        result = solve(inst, method, profile=profile, time_limit_s=spec["time_limit_s"],
                       formulation=spec.get("formulation", "auto"))
    except PolicyRefusal as exc:
        return {"status": "refused", "feasible": False, "message": str(exc)[:500],
                "time_s": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - a failing method must not lose the cell
        return {"status": "error", "feasible": False, "time_s": time.perf_counter() - started,
                "message": f"{type(exc).__name__}: {exc}"[:500]}
    seed = simulation_seed(spec["instance_key"])
    return {**result_columns(result),
            **simulate_columns(inst, result, spec["simulate_runs"], seed)}


def run_cell(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Generate the cell's instance and run its methods; one row per method.

    ``spec``: ``config`` (generator parameters), ``seed``, ``instance_key``, ``methods``
    (``[[method, result_key], ...]``), ``time_limit_s``, ``profile``, ``formulation``,
    ``simulate_runs``.
    A generation failure gives ``error`` rows for every method (with the message).
    """
    trace = "trace" in spec["config"]
    config = TraceConfig(**spec["config"]) if trace else GeneratorConfig(**spec["config"])
    base = {**config.to_dict(), "seed": spec["seed"], "instance_key": spec["instance_key"]}
    started = time.perf_counter()
    try:
        generated = (generate_from_trace(config, spec["seed"]) if trace  # type: ignore[arg-type]
                     else generate(config, spec["seed"]))  # type: ignore[arg-type]
        inst = generated.instance
        base.update(cell_facts(inst, generated.facts))
    except Exception as exc:  # noqa: BLE001 - reported per row, the sweep goes on
        message = f"generation failed: {type(exc).__name__}: {exc}"
        detail = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return [{**base, "key": key, "method": method, "kind": _kind(method),
                 "status": "error", "feasible": False, "message": f"{message} ({detail})"[:500]}
                for method, key in spec["methods"]]
    base["generate_time_s"] = time.perf_counter() - started
    rows = []
    for method, key in spec["methods"]:
        row = {**base, "key": key, "method": method, "kind": _kind(method)}
        row.update(_run_method(inst, method, spec))
        rows.append(row)
    return rows


def _kind(method: str) -> str:
    return "exact" if method in EXACT_METHODS else "policy"
