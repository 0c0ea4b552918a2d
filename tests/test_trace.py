"""Instances from router traces and real bounds: ``siftopt generate --trace`` and bench sweeps
over traces (siftopt.experiments.generate.trace)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import siftopt.cli as cli
from siftopt.errors import InputError
from siftopt.experiments.bench.cells import run_cell
from siftopt.experiments.bench.config import cells, instance_key, load_bench_config
from siftopt.experiments.generate import GeneratorConfig, generate
from siftopt.experiments.generate.trace import (
    TraceConfig,
    generate_from_trace,
    load_trace,
    write_trace,
)
from siftopt.facade import solve
from siftopt.io.instance_file import load_instance
from siftopt.model.instance import topk_from_gates

N, K, T, D, H = 6, 2, 40, 32, 48
OUR_COMMANDS = ("siftopt.cli.generate_cmd", "siftopt.cli.bench_cmd")


@pytest.fixture
def main(monkeypatch):
    extra = tuple(m for m in OUR_COMMANDS if m not in cli.SUBCOMMAND_MODULES)
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", cli.SUBCOMMAND_MODULES + extra)
    return cli.main


def _bounds_block(rng: np.random.Generator) -> dict:
    beta = rng.uniform(2.0, 4.0, N)
    delta = rng.uniform(0.3, 1.5, (N, N)) * beta[:, None]
    np.fill_diagonal(delta, 0.0)
    return {"beta": beta.tolist(), "delta": delta.tolist(), "kind": "swiglu",
            "method": "analytic", "radius": 5.0}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """A two-layer trace (layers 3 and 5) and its per-layer bounds."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.5, (2, T, N))
    trace = write_trace(tmp_path / "trace.npz", logits, top_k=K, hidden_dim=D, ffn_dim=H,
                        layers=[3, 5])
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"layers": {"3": _bounds_block(rng),
                                             "5": _bounds_block(rng)}}))
    return trace, bounds, logits


def test_windows_gates_bounds_and_radio_follow_the_generator(files) -> None:
    trace, bounds, logits = files
    config = TraceConfig(trace=str(trace), bounds=str(bounds), layer=5, tokens=8, start=4)
    item = generate_from_trace(config, 2)
    inst = item.instance
    window = logits[1, 4 + 16:4 + 24]
    gates = np.exp(window - window.max(axis=1, keepdims=True))
    gates /= gates.sum(axis=1, keepdims=True)
    assert np.array_equal(inst.gates, gates)
    experts, weights = topk_from_gates(gates, K, True)
    assert np.array_equal(inst.topk_experts, experts)
    assert np.array_equal(inst.topk_weights, weights)
    doc = json.loads(bounds.read_text())["layers"]["5"]
    assert inst.beta.tolist() == doc["beta"]
    raw = np.asarray(doc["delta"])
    useful = raw < np.asarray(doc["beta"])[:, None]
    assert np.array_equal(np.isfinite(inst.delta), useful | np.eye(N, dtype=bool))
    assert np.array_equal(inst.delta[useful], raw[useful])
    assert inst.hidden_dim == D and inst.num_tokens == 8 and inst.top_k == K
    # the same radio as a preset instance with the same seed and options
    preset = generate(GeneratorConfig(preset="qwen3-30b-a3b", tokens=8), 2).instance
    assert [n.gain_up for n in inst.nodes] == [n.gain_up for n in preset.nodes]
    assert item.facts["first_token"] == 20 and item.facts["layer"] == 5
    # deterministic, and every method solves it
    assert generate_from_trace(config, 2).instance.equals(inst)
    assert solve(inst, "highs").status == "optimal"


@pytest.mark.parametrize("placement", ["round-robin", "random", "cluster", "memory"])
def test_placements(files, placement) -> None:
    trace, bounds, _ = files
    config = TraceConfig(trace=str(trace), bounds=str(bounds), layer=3, nodes=2,
                         placement=placement)
    inst = generate_from_trace(config, 0).instance
    assert inst.placement.shape == (N,) and inst.placement.max() <= 2


def test_probabilities_and_single_block_bounds(tmp_path) -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(N), size=(1, T))
    np.savez(tmp_path / "p.npz", router_probs=probs, top_k=np.int64(K),
             hidden_dim=np.int64(D), ffn_dim=np.int64(H), renormalize_topk=np.bool_(False))
    (tmp_path / "b.json").write_text(json.dumps(_bounds_block(rng)))
    config = TraceConfig(trace=str(tmp_path / "p.npz"), bounds=str(tmp_path / "b.json"),
                         tokens=4)
    inst = generate_from_trace(config, 0).instance
    assert np.array_equal(inst.gates, probs[0, :4]) and not inst.renormalize_topk


def _bad(tmp_path: Path, **arrays) -> str:
    base = {"router_logits": np.zeros((1, 4, N)), "top_k": np.int64(K),
            "hidden_dim": np.int64(D), "ffn_dim": np.int64(H)}
    base.update(arrays)
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in base.items() if v is not None})
    with pytest.raises(InputError) as info:
        load_trace(str(tmp_path / "bad.npz"))
    message = str(info.value)
    assert "\n" not in message and "bad.npz" in message
    return message


def test_bad_traces_are_one_line_errors(tmp_path) -> None:
    assert "router_logits" in _bad(tmp_path, router_logits=np.zeros((4, N)))
    assert "router_logits" in _bad(tmp_path, router_probs=np.ones((1, 4, N)))
    assert "top_k" in _bad(tmp_path, top_k=np.int64(N + 1))
    assert "ffn_dim" in _bad(tmp_path, ffn_dim=None)
    assert "layers" in _bad(tmp_path, layers=np.array([1, 2]))
    assert "extra" in _bad(tmp_path, extra=np.zeros(2))
    nan = np.zeros((1, 4, N))
    nan[0, 1, 2] = np.nan
    assert "[0, 1, 2]" in _bad(tmp_path, router_logits=nan)
    assert "router_probs" in _bad(tmp_path, router_logits=None,
                                  router_probs=-np.ones((1, 4, N)))
    with pytest.raises(InputError, match="no such file"):
        load_trace(str(tmp_path / "missing.npz"))


def test_cli_generate_from_trace_and_its_errors(main, files, tmp_path, capsys) -> None:
    trace, bounds, _ = files
    out = tmp_path / "out"
    argv = ["generate", "--trace", str(trace), "--bounds", str(bounds), "--layer", "3",
            "--tokens", "10", "--count", "4", "--nodes", "3", "--fading", "rayleigh",
            "--out", str(out)]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["instances"]) == 4
    for entry in manifest["instances"]:
        inst = load_instance(out / entry["file"])
        assert inst.num_tokens == 10 and inst.fading == "rayleigh"
        assert entry["bounds_method"] == "analytic"
    cases = [
        (argv[:-2] + ["--count", "5", "--out", str(out)], "has 40 tokens"),  # past the end
        (["generate", "--trace", str(trace), "--bounds", str(bounds), "--out", str(out)],
         "choose one with --layer"),
        (["generate", "--trace", str(trace), "--bounds", str(bounds), "--layer", "4",
          "--out", str(out)], "no layer 4"),
        (["generate", "--trace", str(trace), "--layer", "3", "--out", str(out)], "--bounds"),
        (["generate", "--trace", str(trace), "--bounds", str(bounds), "--layer", "3",
          "--preset", "mixtral-8x7b", "--out", str(out)], "--preset"),
        (["generate", "--trace", str(trace), "--bounds", str(bounds), "--layer", "3",
          "--similarity", "0.5", "--out", str(out)], "--similarity"),
        (["generate", "--preset", "mixtral-8x7b", "--layer", "3", "--out", str(out)],
         "--layer: only with --trace"),
        (["generate", "--out", str(out)], "--preset"),
    ]
    for args, text in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and text in err, (args, err)
    (tmp_path / "short.json").write_text(json.dumps({"beta": [1.0], "delta": [[0.0]]}))
    bad = ["generate", "--trace", str(trace), "--bounds", str(tmp_path / "short.json"),
           "--layer", "3", "--out", str(out)]
    assert main(bad) == 2
    assert "short.json: beta" in capsys.readouterr().err


BENCH = """
methods = ["highs", "topk", "sift-ratio"]
seeds = 2
time_limit_s = 30

[defaults]
preset = "mixtral-8x7b"      # ignored by the trace sweep
tokens = 4

[[sweep]]
name = "preset"
x = "accuracy"
accuracy = [0.2]

[[sweep]]
name = "real"
x = "layer"
trace = "trace.npz"
bounds = "bounds.json"
layer = [3, 5]
accuracy = 0.3
"""


def test_bench_sweeps_over_trace_instances(files, tmp_path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(BENCH)
    bench = load_bench_config(config)
    real = bench.sweeps[1]
    assert [c.layer for c in real.configs] == [3, 5]
    assert all(isinstance(c, TraceConfig) and Path(c.trace).is_absolute() for c in real.configs)
    assert len(cells(bench)) == 6
    from siftopt.experiments.bench.tables import run_summary
    assert "trace:trace/layer 3" in "\n".join(run_summary(bench))
    key = instance_key(real.configs[0], 0)
    cell = next(c for c in cells(bench) if c.key == key)
    spec = {"config": cell.config.to_dict(), "seed": 1, "instance_key": key,
            "methods": [[m, m] for m in cell.methods], "time_limit_s": 30, "profile": None,
            "formulation": "auto", "simulate_runs": 0}
    rows = run_cell(spec)
    frame = pd.DataFrame(rows)
    assert set(frame["method"]) == {"highs", "topk", "sift-ratio"}
    assert (frame["status"] != "error").all(), frame["message"].tolist()
    assert (frame.loc[frame["method"] == "highs", "status"] == "optimal").all()
    assert (frame["layer"] == 3).all() and (frame["tokens"] == 4).all()
    # the key follows the files' contents
    Path(real.configs[0].bounds).write_text(json.dumps(
        {"layers": {"3": _bounds_block(np.random.default_rng(7)),
                    "5": _bounds_block(np.random.default_rng(8))}}))
    assert instance_key(real.configs[0], 0) != key


@pytest.mark.parametrize(("text", "where"), [
    ('layer = [3, 5]\naccuracy = 0.3\nsimilarity = 0.5', "sweep[1].similarity"),
    ('layer = -1', "sweep[1].layer"),
    ('layer = 3\nbogus = 1', "sweep[1].bogus"),
])
def test_bad_trace_sweeps_name_the_key(files, tmp_path, text, where) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(BENCH.replace("layer = [3, 5]\naccuracy = 0.3", text))
    with pytest.raises(InputError) as info:
        load_bench_config(config)
    assert where in str(info.value) and "bench.toml" in str(info.value)


def test_trace_keys_need_a_trace(tmp_path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(BENCH.replace('trace = "trace.npz"\n', ""))
    with pytest.raises(InputError, match="only with trace"):
        load_bench_config(config)
