"""``siftopt bench``: configuration checks, a tiny sweep on a local Dask cluster, resuming,
tables and plots."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import siftopt.cli as cli
from siftopt.errors import InputError
from siftopt.experiments.bench.config import (
    cells,
    instance_key,
    load_bench_config,
    parse_bench_config,
)
from siftopt.experiments.bench.plots import energy_plot
from siftopt.experiments.bench.report import record_runs, report_markdown
from siftopt.experiments.bench.runner import RESULTS_FILE
from siftopt.experiments.bench.tables import (
    BelowOptimumError,
    check_not_below_optimum,
    headline_table,
    sweep_stats,
    sweep_table,
    with_derived,
)
from siftopt.experiments.bench.writers import to_latex, to_markdown
from siftopt.experiments.generate import GeneratorConfig

ROOT = Path(__file__).resolve().parent.parent
OUR_COMMANDS = ("siftopt.cli.generate_cmd", "siftopt.cli.bench_cmd")

TINY = """
description = "tiny"
seeds = {seeds}
methods = ["highs", "topk", "sift-decode"]
time_limit_s = 30
simulate_runs = 200

[defaults]
preset = "mixtral-8x7b"
tokens = 1

[[sweep]]
name = "acc"
x = "accuracy"
accuracy = [0.1, 0.3]
fading = ["slow", "rayleigh"]
"""


@pytest.fixture
def main(monkeypatch):
    """``siftopt.cli.main`` with the generate and bench subcommands registered."""
    extra = tuple(m for m in OUR_COMMANDS if m not in cli.SUBCOMMAND_MODULES)
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", cli.SUBCOMMAND_MODULES + extra)
    return cli.main


@pytest.fixture(scope="module")
def scheduler():
    """One local Dask cluster (2 processes) shared by the resume tests."""
    distributed = pytest.importorskip("distributed")
    import logging
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR)
    yield cluster.scheduler_address
    cluster.close()


def _write(tmp_path: Path, text: str, name: str = "bench.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "where"), [
    (('seeds = {seeds}', 'seedz = 2'), "seedz"),
    (('accuracy = [0.1, 0.3]', 'accuracy = [0.1, -1]'), "sweep[0].accuracy[1]"),
    (('accuracy = [0.1, 0.3]', 'acuracy = [0.1]'), "sweep[0].acuracy"),
    (('x = "accuracy"', 'x = "tokens"'), "sweep[0].x"),
    (('"sift-decode"]', '"sift-decoder"]'), "methods[2]"),
    (('preset = "mixtral-8x7b"', 'preset = "mixtral"'), "defaults.preset"),
    (('tokens = 1', 'tokens = 1.5'), "defaults.tokens"),
    (('time_limit_s = 30', 'time_limit_s = "long"'), "time_limit_s"),
    (('[defaults]', '[defaults'), "invalid TOML"),
])
def test_bad_config_exits_2_naming_file_and_key(main, tmp_path, capsys, change, where):
    text = TINY.replace("{seeds}", "1").replace(change[0].replace("{seeds}", "1"), change[1])
    path = _write(tmp_path, text)
    assert main(["bench", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"siftopt: error: {path}") and where in err


def test_config_cells_are_deduplicated_and_keyed(tmp_path):
    text = TINY.replace("{seeds}", "2") + """
[[sweep]]
name = "again"
x = "accuracy"
accuracy = [0.3]
fading = "slow"
methods = ["highs", "local"]
seeds = [1, 5]
"""
    bench = load_bench_config(_write(tmp_path, text))
    found = cells(bench)
    assert len(found) == 4 * 2 + 1  # (0.3, slow, seed 1) is shared; seed 5 is new
    shared = [c for c in found if c.config.accuracy == 0.3 and c.config.fading == "slow"
              and c.seed == 1]
    assert shared[0].methods == ("highs", "topk", "sift-decode", "local")
    config = GeneratorConfig(preset="mixtral-8x7b", accuracy=0.3)
    assert instance_key(config, 1) == instance_key(config.replace(accuracy=0.3), 1)
    assert instance_key(config, 1) != instance_key(config, 2)
    assert bench.reference == "highs" and bench.baseline == "topk"


def test_parse_rejects_missing_sweep():
    with pytest.raises(InputError, match="x.toml: sweep: missing"):
        parse_bench_config({"methods": ["topk"]}, "x.toml")


def test_shipped_configs_are_valid():
    for name in ("quick.toml", "paper.toml"):
        bench = load_bench_config(ROOT / "benchmarks" / name)
        assert bench.reference == "highs" and cells(bench)
    assert len(cells(load_bench_config(ROOT / "benchmarks" / "quick.toml"))) <= 48


# ------------------------------------------------------------------------------------------
# Tables (no cluster)
# ------------------------------------------------------------------------------------------


def test_gaps_savings_and_formats(tmp_path):
    bench = load_bench_config(_write(tmp_path, TINY.replace("{seeds}", "1")))
    rows = []
    for key, opt, policy in (("a", 2.0, 3.0), ("b", 0.0, 1.0), ("c", 1.0, 1.0)):
        rows.append({"key": key + "h", "instance_key": key, "method": "highs",
                     "status": "optimal", "feasible": True, "energy_j": opt, "time_s": 0.1})
        rows.append({"key": key + "t", "instance_key": key, "method": "topk",
                     "status": "feasible", "feasible": True, "energy_j": 4.0, "time_s": 0.0})
        rows.append({"key": key + "s", "instance_key": key, "method": "sift-decode",
                     "status": "feasible", "feasible": True, "energy_j": policy,
                     "time_s": 0.01})
    derived = with_derived(pd.DataFrame(rows), bench)
    sift = derived[derived["method"] == "sift-decode"].set_index("instance_key")
    assert sift.loc["a", "gap"] == pytest.approx(0.5) and math.isinf(sift.loc["b", "gap"])
    assert sift.loc["c", "gap"] == 0 and sift.loc["c", "optimal"] == 1.0
    assert sift.loc["a", "saved"] == pytest.approx(0.25)
    assert sift.loc["a", "optimum_saved"] == pytest.approx(0.5)
    table = headline_table(derived, bench)
    md, tex = to_markdown(table), to_latex(table)
    assert "| sift-decode |" in md and r"\toprule" in tex and r"feasible \%" in tex
    row = dict(zip(table.header, next(r for r in table.rows if r[0] == "sift-decode"),
                   strict=True))
    assert row["mean gap (%)"] == "25" and row["max gap (%)"] == "inf"  # mean of finite gaps


# ------------------------------------------------------------------------------------------
# Common ground (no cluster): synthetic results on the cells of TINY
# ------------------------------------------------------------------------------------------


def _synthetic(bench, outcome) -> pd.DataFrame:
    """One row per cell x method of ``bench``; ``outcome(method, config, seed)`` gives
    ``(status, feasible, energy_j)``."""
    rows = []
    for sweep in bench.sweeps:
        for config in sweep.configs:
            for seed in sweep.seeds:
                ikey = instance_key(config, seed)
                for method in sweep.methods:
                    status, feasible, energy = outcome(method, config, seed)
                    rows.append({**config.to_dict(), "seed": seed, "instance_key": ikey,
                                 "key": f"{ikey}-{method}", "method": method,
                                 "kind": "exact" if method == "highs" else "policy",
                                 "status": status, "feasible": feasible, "energy_j": energy,
                                 "time_s": 0.01, "slots": 2 * config.tokens})
    return pd.DataFrame(rows).drop_duplicates("key").reset_index(drop=True)


def _ground_outcome(method, config, seed):
    """highs: 1 mJ everywhere, but proved infeasible on (0.3, rayleigh, seed 1) and unproved
    (time limit) on (0.3, slow, seed 1); sift-decode: 1.2 mJ on seed 0, a cheap *infeasible*
    0.1 mJ on seed 1; topk: 2 mJ and feasible only at accuracy 0.1."""
    hard = config.accuracy == 0.3 and seed == 1
    if method == "highs":
        if hard and config.fading == "rayleigh":
            return "infeasible", False, None
        if hard:
            return "time_limit", True, 0.9e-3
        return "optimal", True, 1e-3
    if method == "sift-decode":
        return ("feasible", True, 1.2e-3) if seed == 0 else ("infeasible", False, 1e-4)
    return ("feasible", True, 2e-3) if config.accuracy == 0.1 else ("infeasible", False, 5e-3)


def test_comparisons_are_on_common_ground(tmp_path):
    bench = load_bench_config(_write(tmp_path, TINY.replace("{seeds}", "2")))
    derived = with_derived(_synthetic(bench, _ground_outcome), bench)
    table = headline_table(derived, bench)
    rows = {r[0]: dict(zip(table.header, r, strict=True)) for r in table.rows}
    sift, top, exact = rows["sift-decode"], rows["topk"], rows["highs"]
    # 8 cells: 1 proved infeasible, 1 unproved; the infeasible 0.1 mJ decisions are not averaged
    assert (sift["cells"], sift["proved infeasible"], sift["unproved"]) == (8, 1, 1)
    assert sift["compared"] == 4 and sift["energy (mJ)"] == "1.2"
    assert sift["optimum (mJ)"] == "1" and sift["feasible %"] == "57.1"  # 4 of 7 open cells
    assert exact["compared"] == 6 and exact["energy (mJ)"] == "1"
    # saved vs topk: only where topk is feasible too (accuracy 0.1, seed 0 for sift-decode)
    assert sift["saved vs topk (%)"] == "40" and sift["optimum saves (%)"] == "50"
    assert top["compared"] == 4 and top["saved vs topk (%)"] == "0"
    assert any("common ground" in note for note in table.notes)
    stats = sweep_stats(derived, bench.sweeps[0], bench)
    drawn = stats.dropna(subset=["energy_mj"])
    assert len(drawn) == 10 and (drawn["energy_mj"] >= drawn["optimum_mj"] - 1e-12).all()
    point = stats[(stats["method"] == "sift-decode") & (stats["accuracy"] == 0.3)
                  & (stats["fading"] == "slow")].iloc[0]
    assert point["compared"] == 1 and point["ratio"] == pytest.approx(1.2)
    sweep = sweep_table(derived, bench.sweeps[0], bench)
    assert "+20 [50%]" in [c for r in sweep.rows for c in r]
    assert sweep.header[-2:] == ["topk", "sift-decode"] and "unproved" in sweep.header


def test_plots_never_draw_a_method_below_the_optimum(tmp_path):
    """A feasible decision cheaper than the proved optimum (a wrong exact answer) stops the
    plot instead of being drawn below the optimum; on common ground nothing is below it."""
    bench = load_bench_config(_write(tmp_path, TINY.replace("{seeds}", "2")))
    derived = with_derived(_synthetic(bench, _ground_outcome), bench)
    assert energy_plot(derived, bench.sweeps[0], bench, tmp_path)  # drawn, no error

    def wrong(method, config, seed):
        if method == "sift-decode":
            return "feasible", True, 0.5e-3  # "better" than the proved optimum
        return _ground_outcome(method, config, seed)

    bad = with_derived(_synthetic(bench, wrong), bench)
    with pytest.raises(BelowOptimumError, match="sift-decode"):
        energy_plot(bad, bench.sweeps[0], bench, tmp_path)
    with pytest.raises(BelowOptimumError):
        check_not_below_optimum(sweep_stats(bad, bench.sweeps[0], bench), "test")


def test_report_keeps_the_command_that_computed_the_results(tmp_path):
    bench = load_bench_config(_write(tmp_path, TINY.replace("{seeds}", "1")))
    first = {"computed": 12, "skipped": 0, "elapsed_s": 3.0}
    runs = record_runs(tmp_path, bench, first, "siftopt bench first")
    (tmp_path / "bench.json").write_text(json.dumps({"runs": runs}), encoding="utf-8")
    again = {"computed": 0, "skipped": 12, "elapsed_s": 0.1}
    runs = record_runs(tmp_path, bench, again, "siftopt bench again")
    assert [r["command"] for r in runs] == ["siftopt bench first"]
    text = report_markdown([], [], bench, tmp_path, again, "siftopt bench again", runs)
    assert "`siftopt bench first`: computed 12" in text
    assert "regenerated by `siftopt bench again` (nothing recomputed)" in text


# ------------------------------------------------------------------------------------------
# End to end on Dask
# ------------------------------------------------------------------------------------------


def test_tiny_sweep_end_to_end_on_a_local_cluster(main, tmp_path, capsys):
    config = _write(tmp_path, TINY.replace("{seeds}", "2"))
    out = tmp_path / "out"
    assert main(["bench", str(config), "--out", str(out), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    stdout = captured.out
    for method in ("highs", "topk", "sift-decode"):
        assert method in stdout
    assert "24 computed, 0 reused" in stdout
    # the headline says what ran and the rule it follows
    assert "ran bench.toml: 1 sweep(s) (acc); 8 cells: 8 decode (L = 1)" in stdout
    assert "presets mixtral-8x7b; rayleigh and slow fading" in stdout
    assert "common ground" in stdout and "compared" in stdout
    # stderr is not a terminal here: plain progress lines
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("siftopt bench: ")]
    assert lines and lines[-1].startswith("siftopt bench: 8/8 cells")
    meta = json.loads((out / "bench.json").read_text())
    assert meta["command"].startswith("siftopt bench ") and meta["computed"] == 24
    frame = pd.read_parquet(out / RESULTS_FILE)
    assert len(frame) == 24 and set(frame["status"]) <= {"optimal", "feasible", "infeasible"}
    assert (frame.loc[frame["method"] == "highs", "status"] == "optimal").all()
    rayleigh = frame[(frame["fading"] == "rayleigh") & frame["feasible"].astype(bool)]
    assert rayleigh["sim_energy_j"].notna().any()
    for name in ("headline", "modes", "sweep-acc", "gaps", "times", "simulation"):
        for suffix in (".md", ".tex", ".csv"):
            assert (out / "tables" / f"{name}{suffix}").stat().st_size > 0
    for name in ("energy-vs-accuracy-acc", "saved-vs-topk", "gap-distribution",
                 "time-vs-size"):
        assert (out / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert "<svg" in (out / "plots" / f"{name}.svg").read_text()
    report = (out / "report.md").read_text()
    assert "plots/energy-vs-accuracy-acc.png" in report and "| highs |" in report


def test_resume_skips_finished_cells(main, tmp_path, capsys, scheduler):
    config = _write(tmp_path, TINY.replace("{seeds}", "1"))
    out = tmp_path / "out"
    argv = ["bench", str(config), "--out", str(out), "--scheduler", scheduler, "--quiet"]
    assert main(argv) == 0
    assert "12 computed, 0 reused" in capsys.readouterr().out
    first = pd.read_parquet(out / RESULTS_FILE).set_index("key")
    assert main(argv) == 0
    assert "0 computed, 12 reused" in capsys.readouterr().out
    again = pd.read_parquet(out / RESULTS_FILE).set_index("key")
    assert np.array_equal(again.loc[first.index, "time_s"].to_numpy(),
                          first["time_s"].to_numpy())
    config.write_text(TINY.replace("{seeds}", "[0, 1]"), encoding="utf-8")
    assert main(argv) == 0
    assert "12 computed, 12 reused" in capsys.readouterr().out
    grown = pd.read_parquet(out / RESULTS_FILE).set_index("key")
    assert len(grown) == 24
    assert np.array_equal(grown.loc[first.index, "time_s"].to_numpy(),
                          first["time_s"].to_numpy())


def test_error_rows_are_retried(main, tmp_path, capsys, scheduler):
    config = _write(tmp_path, TINY.replace("{seeds}", "1"))
    out = tmp_path / "out"
    argv = ["bench", str(config), "--out", str(out), "--scheduler", scheduler, "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    frame = pd.read_parquet(out / RESULTS_FILE)
    frame.loc[0, "status"] = "error"
    frame.to_parquet(out / RESULTS_FILE, index=False)
    assert main(argv) == 0
    assert "1 computed, 11 reused" in capsys.readouterr().out


def _bench_argv(tmp_path: Path, scheduler: str) -> tuple[list[str], Path]:
    config = _write(tmp_path, TINY.replace("{seeds}", "1"))
    out = tmp_path / "new" / "out"
    return ["bench", str(config), "--out", str(out), "--scheduler", scheduler, "--quiet"], out


@pytest.mark.parametrize(("address", "expected"), [
    ("tcp://127.0.0.1:9", "cannot reach the Dask scheduler"),
    ("http://127.0.0.1:8787", "not a Dask scheduler address"),
    ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
])
def test_bad_scheduler_address_is_exit_2_quickly(main, tmp_path, capsys, address, expected):
    argv, out = _bench_argv(tmp_path, address)
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--scheduler" in err and expected in err
    assert not (tmp_path / "new").exists()  # no empty --out folder left behind


def test_a_server_that_is_not_a_scheduler_is_exit_2(main, tmp_path, capsys, monkeypatch):
    """Something accepts the connection but never speaks Dask's protocol: exit 2 within the
    handshake's deadline instead of waiting forever."""
    import socket
    import threading

    import siftopt.experiments.bench.runner as runner
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 1.0)
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    try:
        argv, _ = _bench_argv(tmp_path, f"tcp://127.0.0.1:{server.getsockname()[1]}")
        started = time.monotonic()
        assert main(argv) == 2
        assert time.monotonic() - started < 10
    finally:
        for conn in held:
            conn.close()
        server.close()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--scheduler" in err
    assert "does not speak Dask's protocol" in err or "cannot connect" in err
    assert not (tmp_path / "new").exists()


def test_scheduler_without_workers_is_exit_2(main, tmp_path, capsys, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import logging

    import siftopt.experiments.bench.runner as runner
    monkeypatch.setattr(runner, "WORKERS_TIMEOUT_S", 1.0)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        argv, out = _bench_argv(tmp_path, cluster.scheduler_address)
        started = time.monotonic()
        assert main(argv) == 2
        assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip()
    assert "has no workers" in err and "dask worker" in err and "\n" not in err
    assert not (tmp_path / "new").exists()


def test_same_cells_rows_share_their_cells_and_leave_out_a_method_that_would_halve_them():
    import pandas as pd

    from siftopt.experiments.bench.tables import same_cells

    # 10 proved cells; a feasible everywhere, b on 0-7, c on 2-9, d on 0-2 only
    feasible = {"a": range(10), "b": range(8), "c": range(2, 10), "d": range(3)}
    rows = [{"method": m, "instance_key": k, "proved": True, "compared": k in cells}
            for m, cells in feasible.items() for k in range(10)]
    rows += [{"method": m, "instance_key": 10, "proved": False, "compared": False}
             for m in feasible]
    chosen, common, left_out = same_cells(pd.DataFrame(rows), ["a", "b", "c", "d"])
    assert chosen == ["a", "b", "c"] and left_out == ["d"]
    assert common == set(range(2, 8))  # 6 of 10 proved cells: at least half kept
    for method in chosen:
        assert common <= set(feasible[method])
