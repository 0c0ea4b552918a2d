"""The public Python API (import siftopt): names, types, errors, and agreement with the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import siftopt
from siftopt.cli import main

ROOT = Path(__file__).resolve().parents[1]
PREFILL = ROOT / "instances" / "prefill-adaptive-caps.json"


def test_every_public_name_resolves_and_solve_stays_a_function() -> None:
    import siftopt.facade  # noqa: F401  (a submodule import must not shadow siftopt.solve)

    for name in siftopt.__all__:
        assert getattr(siftopt, name) is not None
    assert callable(siftopt.solve) and siftopt.solve.__module__ == "siftopt.api"
    with pytest.raises(AttributeError):
        _ = siftopt.no_such_name


def test_solve_from_a_path_a_dict_or_an_instance_agree() -> None:
    document = json.loads(PREFILL.read_text(encoding="utf-8"))
    inst = siftopt.load(PREFILL)
    results = [siftopt.solve(x, method="highs", profile="parallel", time_limit=30)
               for x in (PREFILL, str(PREFILL), document, inst)]
    assert {r.status for r in results} == {siftopt.Status.OPTIMAL}
    assert len({r.energy_j for r in results}) == 1
    res = results[-1]
    assert res.gap == 0.0 and res.dual_bound_j <= res.energy_j
    assert res.build_time_s >= 0 and res.solve_time_s >= 0
    assert isinstance(res.status, str) and res.status == "optimal"


def test_to_dict_is_exactly_what_the_cli_prints(capsys) -> None:
    res = siftopt.solve(PREFILL, "sift-price")
    assert main(["solve", str(PREFILL), "--method", "sift-price", "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    mine = res.to_dict()
    for volatile in ("build_time_s", "solve_time_s"):
        printed.pop(volatile), mine.pop(volatile)
    assert json.loads(json.dumps(mine)) == printed


def test_evaluate_takes_a_decision_a_result_or_an_array() -> None:
    res = siftopt.solve(PREFILL, "highs")
    by_result = siftopt.evaluate(PREFILL, res)
    by_decision = siftopt.evaluate(PREFILL, res.decision)
    by_array = siftopt.evaluate(PREFILL, np.asarray(res.decision.targets))
    assert by_result.energy_j == by_decision.energy_j == by_array.energy_j == res.energy_j
    frame = res.nodes_frame()
    assert list(frame.columns) == ["node", "tokens", "cap", "energy_j", "latency_s"]
    assert frame["energy_j"].sum() == pytest.approx(res.energy_j, rel=1e-12)


def test_errors_are_input_errors_with_the_cli_message() -> None:
    with pytest.raises(siftopt.InputError, match="no such file"):
        siftopt.load(ROOT / "nope.json")
    with pytest.raises(siftopt.InputError, match="unknown profile"):
        siftopt.solve(PREFILL, profile="fastest")
    with pytest.raises(siftopt.InputError, match="time_limit"):
        siftopt.solve(PREFILL, time_limit=-1)
    with pytest.raises(siftopt.InputError, match="unknown method"):
        siftopt.solve(PREFILL, method="gurobi")


def test_methods_verify_and_generate() -> None:
    table = siftopt.methods()
    assert {"highs/patterns/direct", "sift-decode"} <= set(table["name"])
    rows = siftopt.verify(PREFILL, methods=["sift-price", "topk"], exact="highs")
    assert list(rows["method"]) == ["sift-price", "topk"]
    assert rows["optimum_j"].notna().all()
    made = siftopt.generate("olmoe-1b-7b", tokens=8, nodes=3, seed=[1, 2])
    assert [i.num_tokens for i in made] == [8, 8] and made[0].name != made[1].name
    with pytest.raises(siftopt.InputError):
        siftopt.generate("no-such-model")


def test_a_policy_certificate_is_reported_and_never_beats_the_optimum() -> None:
    """sift-prefill returns its own lower bound: the facade reports it as dual_bound_j and
    calls the answer optimal only when the bound meets the evaluated energy (§3.4)."""
    for path in sorted((ROOT / "instances").glob("*.json")):
        if path.name == "manifest.json":
            continue
        exact = siftopt.solve(path, "highs")
        mine = siftopt.solve(path, "sift-prefill")
        if not exact.feasible:
            assert not mine.feasible
            continue
        assert mine.dual_bound_j is not None
        assert mine.dual_bound_j <= exact.energy_j * (1 + 1e-9) + 1e-15
        if mine.status == siftopt.Status.OPTIMAL:
            assert abs(mine.energy_j - exact.energy_j) <= 1e-6 * exact.energy_j + 1e-15
