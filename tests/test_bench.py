"""``siftopt bench``: configuration checks, a tiny sweep on a local Dask cluster, resuming,
tables and plots."""

from __future__ import annotations

import math
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
from siftopt.experiments.bench.runner import RESULTS_FILE
from siftopt.experiments.bench.tables import headline_table, to_latex, to_markdown, with_derived
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
    table = headline_table(derived, bench)
    md, tex = to_markdown(table), to_latex(table)
    assert "| sift-decode |" in md and r"\toprule" in tex and r"feasible \%" in tex
    row = next(r for r in table.rows if r[0] == "sift-decode")
    assert row[6] == "25" and row[7] == "inf"  # mean over finite gaps; the max is infinite


# ------------------------------------------------------------------------------------------
# End to end on Dask
# ------------------------------------------------------------------------------------------


def test_tiny_sweep_end_to_end_on_a_local_cluster(main, tmp_path, capsys):
    config = _write(tmp_path, TINY.replace("{seeds}", "2"))
    out = tmp_path / "out"
    assert main(["bench", str(config), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    stdout = capsys.readouterr().out
    for method in ("highs", "topk", "sift-decode"):
        assert method in stdout
    assert "24 computed, 0 reused" in stdout
    frame = pd.read_parquet(out / RESULTS_FILE)
    assert len(frame) == 24 and set(frame["status"]) <= {"optimal", "feasible", "infeasible"}
    assert (frame.loc[frame["method"] == "highs", "status"] == "optimal").all()
    rayleigh = frame[(frame["fading"] == "rayleigh") & frame["feasible"].astype(bool)]
    assert rayleigh["sim_energy_j"].notna().any()
    for name in ("headline", "sweep-acc", "gaps", "times", "simulation"):
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


def test_bad_scheduler_address_is_exit_2(main, tmp_path, capsys, monkeypatch):
    import siftopt.experiments.bench.runner as runner
    monkeypatch.setattr(runner, "CONNECT_TIMEOUT_S", 1)
    config = _write(tmp_path, TINY.replace("{seeds}", "1"))
    argv = ["bench", str(config), "--out", str(tmp_path / "o"), "--scheduler",
            "tcp://127.0.0.1:9", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--scheduler" in err
