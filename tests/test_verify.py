"""``siftopt verify`` end to end through :func:`siftopt.cli.main`, on instances written to a
temporary folder. Every number in the report is recomputed here with the solver API."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from siftopt.cli import main
from siftopt.experiments.synthetic import random_instance
from siftopt.facade import solve_exact, solve_policy
from siftopt.io.instance_file import load_instance, save_instance
from siftopt.model.evaluate import energies_equal
from siftopt.model.instance import Instance

ROW_KEYS = {"instance", "method", "energy_j", "optimum_j", "gap", "optimal", "feasible",
            "time_s", "exact_status", "verdict", "note"}
SUMMARY_KEYS = {"method", "instances", "optimal", "pct_optimal", "mean_gap", "max_gap",
                "pct_infeasible", "refused", "speedup"}


def tiny(seed: int, name: str, **kwargs) -> Instance:
    params = {"num_tokens": 2, "num_experts": 4, "top_k": 2, "num_nodes": 2,
              "max_candidates": 2} | kwargs
    return random_instance(seed, **params).replace(name=name)


def write_folder(folder: Path, instances: list[Instance]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [save_instance(inst, folder / f"{inst.name}.json") for inst in instances]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    """Four tiny instances, a manifest and a JSON file that is not an instance."""
    root = tmp_path / "instances"
    write_folder(root, [tiny(s, f"inst-{s}", num_tokens=1 + s % 2, eps_scale=0.2 + 0.2 * s)
                        for s in range(4)])
    (root / "manifest.json").write_text('{"instances": []}', encoding="utf-8")
    (root / "notes.json").write_text('{"comment": "not an instance"}', encoding="utf-8")
    return root


def test_json_report_matches_the_solver_api(capsys, folder: Path) -> None:
    methods = ["topk", "local", "sift-decode", "sift-ratio", "sift-price"]
    status, out, _ = run(capsys, "verify", str(folder), "--exact", "brute",
                         "--methods", ",".join(methods), "--format", "json")
    assert status == 0
    report = json.loads(out)
    assert set(report) == {"rows", "summary"}
    assert len(report["rows"]) == 4 * len(methods)  # manifest and notes skipped
    for row in report["rows"]:
        assert set(row) >= ROW_KEYS
        inst = load_instance(row["file"])
        assert row["instance"] == inst.name
        truth = solve_exact(inst, "brute")
        got = solve_policy(inst, row["method"])
        assert row["feasible"] == got.feasible
        assert row["exact_status"] == truth.status
        if truth.status == "optimal":
            assert energies_equal(row["optimum_j"], truth.energy_j)
        else:
            assert row["optimum_j"] is None and row["optimal"] is None
        if got.feasible:
            assert energies_equal(row["energy_j"], got.energy_j)
            assert row["time_s"] >= 0
        else:
            assert row["energy_j"] is None and row["gap"] is None
        if row["optimal"]:
            assert row["gap"] == 0.0 and energies_equal(row["energy_j"], row["optimum_j"])
        if row["verdict"] == "suboptimal" and row["gap"] is not None:
            expected = (row["energy_j"] - row["optimum_j"]) / row["optimum_j"]
            assert row["gap"] == pytest.approx(expected)
    assert [s["method"] for s in report["summary"]] == methods
    for summary in report["summary"]:
        assert set(summary) >= SUMMARY_KEYS
        mine = [r for r in report["rows"] if r["method"] == summary["method"]]
        assert summary["instances"] == 4
        assert summary["optimal"] == sum(1 for r in mine if r["optimal"] is True)
        gaps = [r["gap"] for r in mine if r["gap"] is not None]
        assert summary["max_gap"] == (max(gaps) if gaps else None)


def test_csv_rows(capsys, folder: Path) -> None:
    status, out, _ = run(capsys, "verify", str(folder), "--exact", "brute",
                         "--methods", "topk,sift-decode", "--format", "csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8
    assert set(rows[0]) >= ROW_KEYS
    for row in rows:
        assert row["optimal"] in ("true", "false", "")
        assert row["feasible"] in ("true", "false")
        if row["feasible"] == "true":
            assert float(row["energy_j"]) >= 0


def test_table_shows_rows_and_summary(capsys, folder: Path) -> None:
    status, out, _ = run(capsys, "verify", str(folder / "inst-1.json"), "--exact", "brute",
                         "--methods", "sift-decode")
    assert status == 0
    assert "inst-1" in out and "summary" in out and "pct_optimal" in out


def test_table_shows_gaps_in_percent_json_keeps_fractions(capsys, tmp_path: Path) -> None:
    paths = write_folder(tmp_path / "in", [tiny(s, f"g{s}", eps_scale=0.6) for s in range(6)])
    argv = ["verify", *map(str, paths), "--exact", "brute", "--methods", "topk"]
    status, out, _ = run(capsys, *argv, "--format", "json")
    assert status == 0
    report = json.loads(out)
    row = next(r for r in report["rows"] if r["gap"])
    status, table, _ = run(capsys, *argv)
    assert status == 0
    lines = table.splitlines()
    header = lines[0].split()
    assert header[4] == "gap_pct" and "gap" not in header
    shown = next(line.split() for line in lines if line.startswith(row["instance"] + " "))
    assert float(shown[4]) == pytest.approx(100 * row["gap"], rel=1e-3)
    summary = lines[lines.index(next(ln for ln in lines if ln.startswith("method "))):]
    assert "mean_gap_pct" in summary[0] and "max_gap_pct" in summary[0]
    max_gap = float(summary[1].split()[summary[0].split().index("max_gap_pct")])
    assert max_gap == pytest.approx(100 * report["summary"][0]["max_gap"], rel=1e-3)


def test_brute_force_refusal_shows_a_short_count(capsys) -> None:
    path = Path(__file__).resolve().parent.parent / "instances" / "prefill-l128-n64-k6-m8.json"
    status, out, _ = run(capsys, "verify", str(path), "--exact", "brute", "--methods", "topk",
                         "--format", "json")
    assert status == 0
    note = json.loads(out)["rows"][0]["note"]
    assert re.search(r"enumerate \d\.\de\+\d{3} assignments", note), note
    assert not re.search(r"\d{12}", note)


def test_counterexamples_are_saved_smallest_first(capsys, tmp_path: Path) -> None:
    instances = [tiny(s, f"c{s}", num_tokens=2 - s % 2, eps_scale=0.5) for s in range(6)]
    write_folder(tmp_path / "in", instances)
    out_dir = tmp_path / "cex"
    status, out, err = run(capsys, "verify", str(tmp_path / "in"), "--exact", "brute",
                           "--methods", "topk", "--format", "json",
                           "--save-counterexamples", str(out_dir))
    assert status == 0
    rows = json.loads(out)["rows"]
    bad = [r for r in rows if r["verdict"] == "suboptimal"]
    assert bad, "topk should be suboptimal somewhere in this set"
    files = sorted(out_dir.glob("*.json"))
    assert len(files) == len(bad)
    assert f"wrote {len(bad)} counterexample" in err
    sizes = []
    for path in files:
        match = re.fullmatch(r"(\d{3})-topk-(.+)-gap(.+)\.json", path.name)
        assert match, path.name
        inst = load_instance(path)
        row = next(r for r in bad if r["instance"] == inst.name)
        shown = match.group(3)
        assert shown == ("inf" if row["gap"] is None else f"{row['gap']:.4g}")
        truth, got = solve_exact(inst, "brute"), solve_policy(inst, "topk")
        assert got.feasible and got.energy_j > truth.energy_j
        sizes.append(inst.num_tokens * inst.top_k)
    assert sizes == sorted(sizes)


def test_expect_optimal_exit_status(capsys, tmp_path: Path) -> None:
    decode_only = write_folder(tmp_path / "decode", [
        tiny(s, f"d{s}", num_tokens=1, num_nodes=3, eps_scale=0.3) for s in range(3)])
    status, _, err = run(capsys, "verify", *map(str, decode_only), "--exact", "brute",
                         "--methods", "topk", "--expect-optimal", "sift-decode")
    assert status == 0, err  # Theorem: sift-decode is exact for one token
    suboptimal = [tiny(s, f"s{s}", eps_scale=0.6) for s in range(8)]
    paths = write_folder(tmp_path / "mixed", suboptimal)
    status, out, err = run(capsys, "verify", *map(str, paths), "--exact", "brute",
                           "--methods", "sift-decode", "--expect-optimal", "topk",
                           "--format", "json")
    rows = [r for r in json.loads(out)["rows"] if r["method"] == "topk"]
    failing = [r for r in rows if r["verdict"] not in ("optimal", "both_infeasible")]
    assert failing
    assert status == 1
    assert "topk is not optimal on" in err


def test_refusal_is_a_row_not_a_crash(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("siftopt.policies.decode.MAX_DECODE_NODES", 0)
    inst = tiny(4, "refused", num_tokens=1, num_nodes=3, eps_scale=0.05)
    truth = solve_exact(inst, "brute")
    assert truth.status == "optimal" and truth.energy_j > 0  # needs a remote node
    path = save_instance(inst, tmp_path / "r.json")
    status, out, _ = run(capsys, "verify", str(path), "--exact", "brute",
                         "--methods", "sift-decode,sift-ratio", "--format", "json")
    assert status == 0
    row = json.loads(out)["rows"][0]
    assert row["verdict"] == "refused" and row["feasible"] is False
    assert row["energy_j"] is None and row["optimal"] is False
    assert "limit" in row["note"]
    summary = json.loads(out)["summary"][0]
    assert summary["refused"] == 1 and summary["pct_infeasible"] == 100.0


def test_plugin_policy(capsys, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "my_rules.py").write_text(
        "import numpy as np\n"
        "def skip_all(view):\n"
        "    return view.decision(np.full(view.topk_experts.shape, -1))\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    inst = tiny(1, "plug", eps_scale=5.0)
    path = save_instance(inst, tmp_path / "p.json")
    status, out, _ = run(capsys, "verify", str(path), "--exact", "brute",
                         "--methods", "my_rules:skip_all", "--format", "json")
    assert status == 0
    row = json.loads(out)["rows"][0]
    assert row["method"] == "my_rules:skip_all"
    assert row["feasible"] is True and row["energy_j"] == 0.0 and row["optimal"] is True


def test_exact_method_as_a_method(capsys, folder: Path) -> None:
    status, out, _ = run(capsys, "verify", str(folder / "inst-0.json"), "--exact", "brute",
                         "--methods", "brute", "--format", "json")
    assert status == 0
    row = json.loads(out)["rows"][0]
    assert row["verdict"] in ("optimal", "both_infeasible")


@pytest.mark.parametrize(("argv", "expected"), [
    (["verify", "does-not-exist.json", "--exact", "brute"], "does-not-exist.json"),
    (["verify", "{folder}", "--exact", "brute", "--methods", "no-such-policy"],
     "no-such-policy"),
    (["verify", "{folder}", "--exact", "brute", "--methods", "nowhere_module:f"],
     "nowhere_module"),
    (["verify", "{empty}", "--exact", "brute"], "no instance files"),
    (["verify", "{broken}", "--exact", "brute"], "bandwidth_hz"),
    (["verify", "{folder}", "--exact", "gurobi"], "gurobi"),
    (["verify", "{folder}", "--methods", ","], "at least one method"),
])
def test_bad_input_exits_2(capsys, tmp_path: Path, folder: Path, argv: list[str],
                           expected: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    broken_dir = tmp_path / "broken"
    broken_dir.mkdir()
    document = json.loads((folder / "inst-0.json").read_text(encoding="utf-8"))
    document["nodes"][0]["bandwidth_hz"] = -1
    (broken_dir / "bad.json").write_text(json.dumps(document), encoding="utf-8")
    argv = [a.format(folder=folder, empty=empty, broken=broken_dir) for a in argv]
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert err.startswith("siftopt: error:") and err.count("\n") == 1
    assert expected in err
    assert out == ""


def test_zero_optimum_has_no_relative_gap(capsys, tmp_path: Path) -> None:
    """When skipping everything is feasible the optimum is 0 J; topk's gap is undefined."""
    inst = tiny(2, "zero", eps_scale=50.0, latency_s=1.0)
    assert solve_exact(inst, "brute").energy_j == 0.0
    assert solve_policy(inst, "topk").energy_j > 0
    path = save_instance(inst, tmp_path / "z.json")
    status, out, _ = run(capsys, "verify", str(path), "--exact", "brute", "--methods", "topk",
                         "--format", "json", "--save-counterexamples", str(tmp_path / "cx"))
    assert status == 0
    row = json.loads(out)["rows"][0]
    assert row["verdict"] == "suboptimal" and row["gap"] is None and row["optimal"] is False
    assert "undefined" in row["note"]
    assert [p.name for p in (tmp_path / "cx").glob("*.json")] == ["001-topk-zero-gapinf.json"]
    assert np.isfinite(row["energy_j"])
