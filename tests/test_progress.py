"""Bounds over time (details["trace"]) and warm starts from policies (``--warm-start``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from siftopt.backends.progress import gap, progress_lines
from siftopt.cli import main
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import best_policy_start, solve, solve_exact, solve_policy
from siftopt.io.instance_file import save_instance
from siftopt.model.evaluate import energies_equal

PREFILL = dict(num_tokens=40, num_experts=16, top_k=4, num_nodes=6, budgets="both",
               power_control="adaptive", max_candidates=3)


def _check_trace(trace: list[dict], energy_j: float, optimal: bool) -> None:
    assert trace, "an exact backend that searched must record its progress"
    times = [e["t_s"] for e in trace]
    assert times == sorted(times)
    uppers = [e["upper_bound_j"] for e in trace if e["upper_bound_j"] is not None]
    lowers = [e["lower_bound_j"] for e in trace if e["lower_bound_j"] is not None]
    assert uppers and lowers
    assert all(b <= a * (1 + 1e-12) for a, b in zip(uppers, uppers[1:], strict=False))
    assert all(b >= a * (1 - 1e-9) for a, b in zip(lowers, lowers[1:], strict=False))
    assert max(lowers) <= energy_j * (1 + 1e-9) + 1e-15  # a lower bound never passes the optimum
    assert energies_equal(uppers[-1], energy_j) or uppers[-1] >= energy_j
    if optimal:
        assert gap(uppers[-1], lowers[-1]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["highs", "cpsat"])
def test_trace_bounds_are_monotone_and_meet_at_the_optimum(method, seed):
    inst = random_instance(seed, **PREFILL)
    result = solve_exact(inst, method, formulation="patterns")
    assert result.status == "optimal"
    _check_trace(result.details["trace"], result.energy_j, optimal=True)


@pytest.mark.parametrize(("method", "interface"), [("cpsat", "auto"), ("highs", "direct")])
def test_slot_models_record_their_solutions(method, interface):
    inst = random_instance(3, num_tokens=24, num_experts=16, top_k=4, num_nodes=5,
                           budgets="both", power_control="adaptive")
    result = solve_exact(inst, method, formulation="slots", interface=interface)
    assert result.status == "optimal"
    _check_trace(result.details["trace"], result.energy_j, optimal=True)


def test_gap():
    assert gap(None, 1.0) is None and gap(1.0, None) is None
    assert gap(0.0, 0.0) == 0.0
    assert gap(2.0, 1.0) == pytest.approx(0.5)
    assert gap(1.0, 1.5) == 0.0  # rounding past the optimum is no negative gap


def test_progress_lines_keep_the_last_events():
    trace = [{"t_s": 0.1 * i, "phase": "solution", "upper_bound_j": 10.0 - i,
              "lower_bound_j": float(i)} for i in range(10)]
    lines = progress_lines(trace, limit=3)
    assert len(lines) == 4 and "7 earlier events" in lines[0]
    assert "gap 0 %" in lines[-1]
    assert "upper 1 J" in lines[-1] and "lower 9 J" in lines[-1]


# ---- warm starts ------------------------------------------------------------------------------


def test_best_policy_start_is_the_cheapest_feasible_policy():
    inst = random_instance(5, **PREFILL)
    names = ["topk", "local", "sift-decode", "sift-ratio", "sift-price"]
    best = best_policy_start(inst, names)
    feasible = {n: r for n in names if (r := solve_policy(inst, n)).feasible}
    if not feasible:
        assert best is None
        return
    assert best is not None
    assert best[1].energy_j == min(r.energy_j for r in feasible.values())


@pytest.mark.parametrize("method", ["highs", "cpsat"])
def test_warm_start_from_policies_keeps_the_optimum(method):
    for seed in range(3):
        inst = random_instance(seed, **PREFILL)
        cold = solve(inst, method)
        warm = solve(inst, method, warm_start=["sift-price", "sift-decode", "sift-ratio"])
        assert warm.status == cold.status == "optimal"
        assert energies_equal(warm.energy_j, cold.energy_j)
        assert "warm_start_policy" in warm.details
        if warm.details["warm_start_policy"] is not None and method == "highs":
            assert warm.details["warm_start"] is True


def test_cli_warm_start(tmp_path, capsys):
    inst = random_instance(1, **PREFILL)
    path = tmp_path / "inst.json"
    save_instance(inst, path)
    assert main(["solve", str(path), "--warm-start", "all", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "optimal"
    assert "warm_start_policy" in out["details"]
    assert main(["solve", str(path), "--warm-start", "sift-price"]) == 0
    text = capsys.readouterr().out
    assert "progress (bounds over time)" in text
    for bad in ("bogus", "highs", ","):
        assert main(["solve", str(path), "--warm-start", bad]) == 2
        err = capsys.readouterr().err
        assert "--warm-start" in err and "Traceback" not in err


def test_wrong_warm_start_shape_is_an_input_error_for_every_backend():
    inst = random_instance(0, num_tokens=3, num_experts=6, top_k=2, num_nodes=2)
    for method in ("highs", "cpsat"):
        for formulation in ("slots", "patterns"):
            with pytest.raises(Exception, match="warm start must have shape"):
                solve_exact(inst, method, formulation=formulation,
                            warm_start=np.zeros((2, 2), dtype=np.int64))
