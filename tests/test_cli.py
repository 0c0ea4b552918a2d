"""The command line: output contracts (docs/model.md §7) and exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from siftopt.cli import main
from siftopt.experiments.synthetic import random_instance
from siftopt.io.instance_file import load_instance, save_instance
from siftopt.model.evaluate import evaluate

ROOT = Path(__file__).resolve().parent.parent
DECODE = ROOT / "instances" / "example-decode-adaptive.json"
PREFILL = ROOT / "instances" / "example-prefill-fixed.json"


def run_json(capsys, *argv: str) -> dict:
    status = main([*argv, "--format", "json"])
    out = capsys.readouterr().out
    assert status == 0, out
    return json.loads(out)


@pytest.mark.parametrize("method", ["highs", "brute"])
def test_solve_json_contract(capsys, method):
    obj = run_json(capsys, "solve", str(DECODE), "--method", method)
    for key in ("status", "energy_j", "feasible", "nodes", "tokens", "dual_bound_j",
                "build_time_s", "solve_time_s"):
        assert key in obj
    assert obj["status"] == "optimal" and obj["feasible"] is True
    assert {"node", "tokens"} <= set(obj["nodes"][0])
    token = obj["tokens"][0]
    assert {"token", "degradation", "actions"} <= set(token)
    kinds = {a["action"] for a in token["actions"]}
    assert kinds <= {"keep", "replace", "skip"}
    for a in token["actions"]:
        assert {"expert", "action", "target"} <= set(a)
        assert (a["target"] is None) == (a["action"] != "replace")
    # loads in the JSON equal the number of tokens whose actions use the node
    inst = load_instance(DECODE)
    used = {int(inst.placement[a["target"] if a["action"] == "replace" else a["expert"]])
            for a in token["actions"] if a["action"] != "skip"}
    for node in obj["nodes"]:
        assert node["tokens"] == (1 if node["node"] in used else 0)


def test_out_file_re_evaluates_to_the_same_energy(tmp_path, capsys):
    out = tmp_path / "sol.json"
    assert main(["solve", str(PREFILL), "--method", "highs", "--out", str(out)]) == 0
    capsys.readouterr()
    solved = json.loads(out.read_text())
    again = run_json(capsys, "evaluate", str(PREFILL), str(out))
    assert again["energy_j"] == solved["energy_j"]
    assert again["feasible"] is True and again["status"] == "feasible"
    assert again["tokens"] == solved["tokens"]


def test_evaluate_reports_violations(tmp_path, capsys):
    inst = random_instance(2, num_tokens=3, latency_s=1e-6)
    path = save_instance(inst, tmp_path / "i.json")
    sol = {"tokens": [{"token": t, "actions": [
        {"expert": int(e), "action": "keep", "target": None} for e in inst.topk_experts[t]]}
        for t in range(3)]}
    (tmp_path / "s.json").write_text(json.dumps(sol))
    obj = run_json(capsys, "evaluate", str(path), str(tmp_path / "s.json"))
    assert obj["feasible"] is False and obj["status"] == "infeasible"
    assert any(v["kind"] == "latency" for v in obj["violations"])
    expected = evaluate(inst, np.array(inst.topk_experts))
    assert obj["energy_j"] == pytest.approx(expected.energy_j, rel=1e-15)


@pytest.mark.parametrize(("solution", "field"), [
    ({"tokens": []}, "tokens"),
    ({"tokens": [{"token": 0, "actions": [{"expert": 1, "action": "keep"}]}]},
     "tokens[0].actions"),
    ({"tokens": [{"token": 0, "actions": [{"expert": 1, "action": "drop"},
                                          {"expert": 3, "action": "keep"}]}]},
     "tokens[0].actions[0].action"),
    ({"tokens": [{"token": 0, "actions": [{"expert": 1, "action": "replace", "target": 4},
                                          {"expert": 3, "action": "keep"}]}]},
     "tokens[0].actions[0].target"),
    ({"tokens": [{"token": 0, "actions": [{"expert": 2, "action": "keep"},
                                          {"expert": 3, "action": "keep"}]}]},
     "tokens[0].actions[0].expert"),
])
def test_bad_solution_files(tmp_path, capsys, solution, field):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(solution))
    assert main(["evaluate", str(DECODE), str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {field}:" in err and err.count("\n") == 1


def test_infeasible_instance_exits_zero_with_reason(tmp_path, capsys):
    inst = random_instance(4, num_tokens=2).replace(eps_token=np.zeros(2), max_candidates=0,
                                                    latency_s=1e-7)
    path = save_instance(inst, tmp_path / "inf.json")
    obj = run_json(capsys, "solve", str(path), "--method", "highs")
    assert obj["status"] == "infeasible" and obj["energy_j"] is None
    assert obj["feasible"] is False and "token" in obj["message"]


@pytest.mark.parametrize("argv", [
    ["solve", str(DECODE), "--method", "nope"],
    ["solve", str(DECODE), "--time-limit", "-3"],
    ["solve", str(DECODE), "--time-limit", "abc"],
    ["solve", str(DECODE), "--profile", "no-such-profile"],
    ["solve", str(DECODE), "--format", "xml"],
    ["solve"],
    ["frobnicate"],
    ["solve", "/no/such/file.json"],
    ["solve", str(DECODE), "--method", "os:no_such_function"],
])
def test_usage_errors_exit_2_with_one_line(capsys, argv):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_bad_profile_contents(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[highs]\nmip_rel_gapp = 0\n")
    assert main(["solve", str(DECODE), "--profile", str(bad)]) == 2
    assert "highs.mip_rel_gapp" in capsys.readouterr().err
    bad.write_text("threads = 0\n")
    assert main(["solve", str(DECODE), "--profile", str(bad)]) == 2
    assert "threads" in capsys.readouterr().err


def test_a_solver_refusing_a_profile_option_names_the_profile_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[highs]\nmip_rel_gap = -5.0\n")
    prefill = DECODE.parent / "example-prefill-fixed.json"
    assert main(["solve", str(prefill), "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: highs.mip_rel_gap: HiGHS rejects" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["default", "parallel", "quick"])
def test_shipped_profiles_load_and_solve(capsys, name):
    obj = run_json(capsys, "solve", str(DECODE), "--profile", name)
    assert obj["energy_j"] == pytest.approx(5.925775767965322e-06, rel=1e-9)


def test_internal_error_exits_1(capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kaput")
    import siftopt.facade

    monkeypatch.setattr(siftopt.facade, "solve", boom)  # solve_cmd imports it when it runs
    assert main(["solve", str(DECODE)]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "kaput" in err and err.count("\n") == 1


def test_table_output_and_inspect(capsys):
    assert main(["solve", str(PREFILL)]) == 0
    out = capsys.readouterr().out
    assert "status    optimal" in out and "node" in out
    info = run_json(capsys, "inspect", str(PREFILL))
    assert info["sizes"]["tokens"] == 4 and len(info["nodes"]) == 3
    assert all(n["convex"] for n in info["nodes"])
    assert main(["inspect", str(DECODE)]) == 0
    assert "pre-check" in capsys.readouterr().out


def test_console_script_runs_as_a_process():
    proc = subprocess.run([sys.executable, "-m", "siftopt", "solve", str(DECODE), "--format",
                           "json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "optimal"
    proc = subprocess.run([sys.executable, "-m", "siftopt", "solve", "missing.json"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
