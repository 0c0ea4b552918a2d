"""``siftopt generate``: validity, determinism and realism of the preset-driven generator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import siftopt.cli as cli
from siftopt.experiments.generate import (
    ARCHITECTURES,
    PLACEMENTS,
    SCENARIOS,
    GeneratorConfig,
    experts,
    generate,
    routing,
    wireless,
)
from siftopt.experiments.generate.build import instance_name
from siftopt.facade import solve
from siftopt.io.instance_file import instance_to_document, load_instance
from siftopt.io.solution import read_solution
from siftopt.model.evaluate import energies_equal, evaluate
from siftopt.model.problem import problem_data

OUR_COMMANDS = ("siftopt.cli.generate_cmd", "siftopt.cli.bench_cmd")


@pytest.fixture
def main(monkeypatch):
    """``siftopt.cli.main`` with the generate and bench subcommands registered."""
    extra = tuple(m for m in OUR_COMMANDS if m not in cli.SUBCOMMAND_MODULES)
    monkeypatch.setattr(cli, "SUBCOMMAND_MODULES", cli.SUBCOMMAND_MODULES + extra)
    return cli.main


def _doc(inst):
    return json.dumps(instance_to_document(inst)[0], sort_keys=True)


@pytest.mark.parametrize("preset", sorted(ARCHITECTURES))
def test_every_preset_is_valid_and_deterministic(preset):
    arch = ARCHITECTURES[preset]
    config = GeneratorConfig(preset=preset, tokens=3, nodes=3)
    a, b = generate(config, 5), generate(config, 5)
    inst = a.instance
    assert a.instance.equals(b.instance) and _doc(a.instance) == _doc(b.instance)
    assert not generate(config, 6).instance.equals(inst)
    # routed experts only: shared experts run at the source and are not in the problem
    assert (inst.num_experts, inst.top_k, inst.hidden_dim) == \
        (arch.num_experts, arch.top_k, arch.hidden_dim)
    assert inst.renormalize_topk == arch.renormalize_topk
    assert inst.placement.min() >= 0 and inst.placement.max() <= 3
    assert inst.gates is not None and inst.gates.shape == (3, arch.num_experts)
    assert np.all(inst.beta > 0) and np.all(np.diag(inst.delta) == 0)
    finite = np.isfinite(inst.delta) & ~np.eye(arch.num_experts, dtype=bool)
    assert finite.any(), "some replacements must be useful at the default similarity"
    assert np.all(inst.delta[finite] < inst.beta[np.nonzero(finite)[0]] * (1 + 1e-5))
    assert inst.name == instance_name(config, 5)
    assert math.isclose(a.facts["router_entropy"], config.router_entropy, abs_tol=0.02)


def test_group_limited_routing_of_deepseek_v3():
    inst = generate(GeneratorConfig(preset="deepseek-v3", tokens=4), 0).instance
    arch = ARCHITECTURES["deepseek-v3"]
    size = arch.num_experts // arch.expert_groups
    for row in inst.gates:
        groups = {int(i) // size for i in np.flatnonzero(row > 0)}
        assert len(groups) == arch.topk_groups


@pytest.mark.parametrize(("preset", "tokens", "fading", "power"), [
    ("mixtral-8x7b", 1, "slow", "adaptive"), ("qwen3-30b-a3b", 1, "rayleigh", "fixed"),
    ("deepseek-moe-16b", 8, "slow", "fixed"), ("olmoe-1b-7b", 8, "rayleigh", "adaptive")])
def test_generated_instances_are_feasible_and_non_trivial(preset, tokens, fading, power):
    for seed in range(3):
        inst = generate(GeneratorConfig(preset=preset, tokens=tokens, fading=fading,
                                        power_control=power), seed).instance
        result = solve(inst, "highs")
        assert result.status == "optimal", result.message
    topk = evaluate(inst, inst.topk_experts)
    assert topk.energy_j > 0


def test_cli_generate_mixtral_decode_is_accepted_by_exact_backends_and_evaluator(
        main, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", "--preset", "mixtral-8x7b", "--tokens", "1", "--seed", "3",
                 "--out", str(out)]) == 0
    assert "wrote 1 instance" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    (entry,) = manifest["instances"]
    assert entry["seed"] == 3 and entry["config"]["preset"] == "mixtral-8x7b"
    path = out / entry["file"]
    inst = load_instance(path)
    energies = []
    for method in ("highs", "cpsat"):
        solution = tmp_path / f"{method}.json"
        assert main(["solve", str(path), "--method", method, "--out", str(solution)]) == 0
        capsys.readouterr()
        obj = json.loads(solution.read_text())
        assert obj["status"] == "optimal"
        energies.append(obj["energy_j"])
        assert main(["evaluate", str(path), str(solution), "--format", "json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        assert evaluated["feasible"] and energies_equal(evaluated["energy_j"], obj["energy_j"])
        assert evaluate(inst, read_solution(solution, inst)).feasible
    assert energies_equal(*energies)


def test_cli_count_seeds_and_files_are_reproducible(main, tmp_path, capsys):
    args = ["generate", "--preset", "olmoe-1b-7b", "--tokens", "2", "--count", "2", "--seed",
            "7", "--fading", "rayleigh", "--power-control", "fixed"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    names = sorted(p.name for p in (tmp_path / "a").glob("*.json"))
    assert names == sorted(p.name for p in (tmp_path / "b").glob("*.json"))
    assert len(names) == 3 and "-s7.json" in names[0] + names[1]
    for name in names:
        if name != "manifest.json":
            assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_large_arrays_go_to_an_npz_sidecar(main, tmp_path, capsys):
    assert main(["generate", "--preset", "deepseek-v3", "--tokens", "32", "--out",
                 str(tmp_path)]) == 0
    capsys.readouterr()
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["instances"]
    assert (tmp_path / entry["arrays"]).is_file()
    doc = json.loads((tmp_path / entry["file"]).read_text())
    assert doc["bounds"]["delta"] == {"npz": "bounds.delta"}
    assert load_instance(tmp_path / entry["file"]).num_tokens == 32


def test_generating_into_a_folder_merges_its_manifest(main, tmp_path, capsys):
    """A second run keeps the first run's instances listed; writing an instance again replaces
    its entry; a manifest not written by the generator is refused before anything is
    written."""
    out = tmp_path / "gen"
    base = ["generate", "--out", str(out), "--tokens", "1"]
    assert main([*base, "--preset", "mixtral-8x7b", "--count", "2"]) == 0
    assert main([*base, "--preset", "qwen3-30b-a3b"]) == 0
    assert main([*base, "--preset", "mixtral-8x7b", "--seed", "1"]) == 0
    assert "wrote 1 instance(s) and manifest.json to" in capsys.readouterr().out
    assert main([*base, "--preset", "mixtral-8x7b", "--seed", "1"]) == 0  # again: no duplicate
    assert "(it lists 3, earlier runs' included)" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    files = [e["file"] for e in manifest["instances"]]
    on_disk = sorted(p.name for p in out.glob("*.json") if p.name != "manifest.json")
    assert sorted(files) == on_disk and len(files) == 3  # every file listed, once
    assert files[-1].startswith("mixtral-8x7b") and files[-1].endswith("-s1.json")
    assert manifest["generator"]["config"]["preset"] == "mixtral-8x7b"
    assert [r["config"]["preset"] for r in manifest["earlier_runs"]] == \
        ["mixtral-8x7b", "qwen3-30b-a3b", "mixtral-8x7b"]
    foreign = tmp_path / "curated"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"instances": []}', encoding="utf-8")
    assert main(["generate", "--preset", "mixtral-8x7b", "--out", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert "not written by `siftopt generate`" in err and err.count("\n") == 1
    assert sorted(p.name for p in foreign.iterdir()) == ["manifest.json"]


def test_an_instance_given_as_a_solution_is_named_as_such(main, tmp_path, capsys):
    assert main(["generate", "--preset", "mixtral-8x7b", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["instances"]
    path = str(tmp_path / entry["file"])
    assert main(["evaluate", path, path]) == 2
    err = capsys.readouterr().err
    assert "not a solution file: this is an instance" in err and err.count("\n") == 1


@pytest.mark.parametrize(("option", "value"), [
    ("--similarity", "1.5"), ("--router-entropy", "1"), ("--outage-max", "0"),
    ("--preset", "gpt-4"), ("--tokens", "0")])
def test_cli_bad_option_is_one_line_exit_2(main, tmp_path, capsys, option, value):
    argv = ["generate", "--preset", "mixtral-8x7b", "--out", str(tmp_path), option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("siftopt: error:")
    assert option in err


def test_streams_keep_nodes_and_tokens_when_the_instance_grows():
    small = generate(GeneratorConfig(preset="qwen3-30b-a3b", tokens=2, nodes=2), 1)
    large = generate(GeneratorConfig(preset="qwen3-30b-a3b", tokens=5, nodes=4), 1)
    assert large.instance.nodes[:2] == small.instance.nodes
    assert np.array_equal(large.instance.gates[:2], small.instance.gates)
    assert np.array_equal(large.instance.beta, small.instance.beta)


def test_neighbouring_tokens_are_correlated_in_prefill():
    def lag_one(correlation: float) -> float:
        config = GeneratorConfig(preset="olmoe-1b-7b", tokens=200, token_correlation=correlation)
        logp = np.log(generate(config, 2).instance.gates)
        return float(np.mean([np.corrcoef(logp[t], logp[t + 1])[0, 1] for t in range(199)]))
    assert lag_one(0.9) > lag_one(0.0) + 0.3


def test_similarity_knob_controls_useful_replacements():
    useful = [generate(GeneratorConfig(preset="deepseek-moe-16b", similarity=s), 0)
              .facts["useful_pairs"] for s in (0.0, 0.5, 0.9)]
    assert useful[0] < useful[1] < useful[2]


@pytest.mark.parametrize("strategy", PLACEMENTS)
def test_placement_strategies(strategy):
    config = GeneratorConfig(preset="deepseek-moe-16b", nodes=3, placement=strategy)
    generated = generate(config, 4)
    placement = generated.instance.placement
    counts = np.bincount(placement, minlength=4)
    assert counts.sum() == 64 and placement.max() <= 3
    if strategy in ("round-robin", "random"):
        assert counts.max() - counts.min() <= 1
    if strategy == "cluster":
        labels = np.array(generated.facts["clusters"])
        for c in np.unique(labels):
            assert len(set(placement[labels == c].tolist())) == 1
    if strategy == "memory":
        memory = np.array(generated.facts["memory_gb"])
        assert np.all(np.abs(counts - memory / memory.sum() * 64) < 1.0)


def test_placement_helpers_directly():
    assert experts.place_round_robin(5, 2).tolist() == [0, 1, 2, 0, 1]
    labels = np.array([0, 0, 1, 1, 2])
    placed = experts.place_by_cluster(labels, 1)
    assert placed[0] == placed[1] and placed[2] == placed[3]


def test_latency_budget_lets_the_median_node_carry_the_batch():
    config = GeneratorConfig(preset="mixtral-8x7b", tokens=8, nodes=5, latency_scale=1.0)
    data = problem_data(generate(config, 0).instance)
    assert int((data.caps[1:] >= 8).sum()) >= 3
    tight = problem_data(generate(config.replace(latency_scale=0.25), 0).instance)
    assert int((tight.caps[1:] >= 8).sum()) == 0


def test_rayleigh_latency_calibration_meets_the_outage_cap():
    node = {"bandwidth_hz": 1e7, "gain_up_db": -100.0, "gain_down_db": -100.0,
            "power_up_w": 0.2, "power_down_w": 1.0, "compute_s_per_token": 1e-5}
    noise = 10 ** ((-165.0 - 30.0) / 10.0)
    t = wireless.rayleigh_time_s(node, 65536.0, 4, noise, 0.1)
    assert wireless.rayleigh_outage(node, 65536.0, 4, t, noise) <= 0.1
    assert wireless.rayleigh_outage(node, 65536.0, 4, t * 0.999, noise) > 0.1
    assert t > wireless.slow_time_s(node, 65536.0, 4, noise)


def test_path_loss_and_noise():
    assert math.isclose(wireless.path_loss_db(1000.0), 128.1)
    assert math.isclose(wireless.path_loss_db(100.0), 128.1 - 37.6)
    assert wireless.noise_psd_dbm_per_hz(SCENARIOS["urban"]) == -174.0 + 9.0


def test_temperature_calibration_hits_the_entropy_target():
    labels = np.arange(64) % 8
    rng = np.random.default_rng(0)
    tau, entropy = routing.calibrate_temperature(np.zeros(64), labels, 0.6, rng)
    assert tau > 0 and abs(entropy - 0.6) < 1e-6
