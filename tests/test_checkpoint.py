"""Reading expert weights from published checkpoints (siftopt.similarity.checkpoint).

Tiny checkpoints are written here with ``safetensors.numpy.save_file`` in both layouts (Mixtral
and the Qwen-MoE/OLMoE/DeepSeek ``mlp.experts`` family), as one file and sharded with an
index, in float32, float16 and bfloat16. The bounds from a checkpoint must equal, bit for bit,
the bounds from an ``.npz`` file holding the same (float32, or bf16-rounded) weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from siftopt.cli import main
from siftopt.errors import InputError
from siftopt.similarity import analytic_bounds, load_expert_weights
from siftopt.similarity.checkpoint import layer_weights, open_checkpoint, rmsnorm_radius

N, H, D = 4, 6, 5
NAMES = {"mixtral": ("model.layers.{L}.block_sparse_moe.experts.{i}.{p}.weight",
                     {"gate": "w1", "up": "w3", "down": "w2"}),
         "mlp-experts": ("model.layers.{L}.mlp.experts.{i}.{p}.weight",
                         {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"})}
BF16 = ml_dtypes.bfloat16


def make_layer(seed: int) -> dict[str, np.ndarray]:
    """Similar SwiGLU experts (shared base + 20 % individual part), float32."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in (("w1", (H, D)), ("w3", (H, D)), ("w2", (D, H))):
        base = rng.standard_normal(shape)
        out[key] = (base + 0.2 * rng.standard_normal((N, *shape))).astype(np.float32)
    return out


def tensors(layout: str, layers: dict[int, dict[str, np.ndarray]], dtype: object
            ) -> dict[str, np.ndarray]:
    template, proj = NAMES[layout]
    out: dict[str, np.ndarray] = {}
    for layer, arrays in layers.items():
        for i in range(N):
            for role, key in (("gate", "w1"), ("up", "w3"), ("down", "w2")):
                out[template.format(L=layer, i=i, p=proj[role])] = arrays[key][i].astype(dtype)
        gain = np.linspace(0.5, 1.5, D).astype(dtype)
        out[f"model.layers.{layer}.post_attention_layernorm.weight"] = gain
        out[f"model.layers.{layer}.self_attn.q_proj.weight"] = np.eye(D, dtype=dtype)
    out["model.embed_tokens.weight"] = np.ones((7, D), dtype=dtype)
    return out


def write(folder: Path, layout: str, layers: dict[int, dict[str, np.ndarray]], dtype: object,
          *, sharded: bool, config: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    all_t = tensors(layout, layers, dtype)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    if not sharded:
        save_file(all_t, str(folder / "model.safetensors"))
        return folder
    names = sorted(all_t)
    shards = [names[0::2], names[1::2]]
    weight_map = {}
    for k, part in enumerate(shards, start=1):
        file = f"model-{k:05d}-of-00002.safetensors"
        save_file({n: all_t[n] for n in part}, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def npz_bounds(tmp: Path, arrays: dict[str, np.ndarray], radius: float) -> dict:
    path = tmp / "ref.npz"
    np.savez(path, **arrays)
    return analytic_bounds(load_expert_weights(str(path)), "swiglu", radius,
                           exact_pairs="all").to_json_dict()


@pytest.mark.parametrize("layout", ["mixtral", "mlp-experts"])
@pytest.mark.parametrize("sharded", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_checkpoint_bounds_equal_npz_bounds(tmp_path: Path, layout: str, sharded: bool,
                                            dtype: str) -> None:
    layers = {1: make_layer(1), 2: make_layer(2)}
    np_dtype = {"float32": np.float32, "bfloat16": BF16, "float16": np.float16}[dtype]
    ckpt_dir = write(tmp_path / "ckpt", layout, layers, np_dtype, sharded=sharded)
    ckpt = open_checkpoint(str(ckpt_dir))
    assert ckpt.layout.name == layout and ckpt.layers == [1, 2]
    for layer, arrays in layers.items():
        rounded = {k: v.astype(np_dtype).astype(np.float32) for k, v in arrays.items()}
        weights = layer_weights(ckpt, layer)
        for key in ("w1", "w2", "w3"):
            got = getattr(weights, key)
            assert got.dtype == np.float32 and np.array_equal(got, rounded[key])
        if dtype == "float32":
            assert all(np.array_equal(rounded[k], arrays[k]) for k in arrays)
    # the command, on every layer, against the .npz path of the same (rounded) weights
    out = tmp_path / "bounds.json"
    assert main([ "similarity", str(ckpt_dir), "--layer", "all", "--kind", "swiglu",
                 "--radius", "2.5", "--exact-pairs", "all", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["layout"] == layout and sorted(doc["layers"]) == ["1", "2"]
    for layer, arrays in layers.items():
        rounded = {k: v.astype(np_dtype).astype(np.float32) for k, v in arrays.items()}
        assert doc["layers"][str(layer)] == npz_bounds(tmp_path, rounded, 2.5)
    one = tmp_path / "one.json"
    assert main(["similarity", str(ckpt_dir), "--layer", "2", "--kind", "swiglu", "--radius",
                 "2.5", "--exact-pairs", "all", "--out", str(one)]) == 0
    assert json.loads(one.read_text()) == doc["layers"]["2"]


def test_single_file_and_auto_radius(tmp_path: Path) -> None:
    arrays = make_layer(3)
    folder = write(tmp_path / "c", "mixtral", {0: arrays}, BF16, sharded=False)
    file = folder / "model.safetensors"
    ckpt = open_checkpoint(str(file))
    gain = np.linspace(0.5, 1.5, D).astype(BF16).astype(np.float64)
    expected = np.sqrt(D) * np.abs(gain).max() * 1.01
    assert rmsnorm_radius(ckpt, 0) == pytest.approx(expected, rel=1e-15)
    assert rmsnorm_radius(ckpt, 0) >= expected
    out = tmp_path / "b.json"
    assert main(["similarity", str(file), "--layer", "0", "--kind", "swiglu", "--radius",
                 "auto", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["radius"] == rmsnorm_radius(ckpt, 0)


def test_config_json_is_checked(tmp_path: Path) -> None:
    layers = {0: make_layer(4)}
    good = {"model_type": "qwen3_moe", "num_experts": N, "hidden_size": D,
            "hidden_act": "silu"}
    ckpt = open_checkpoint(str(write(tmp_path / "ok", "mlp-experts", layers, np.float32,
                                     sharded=True, config=good)))
    assert layer_weights(ckpt, 0).num_experts == N
    cases = [({**good, "num_experts": N + 1}, "num_experts"),
             ({**good, "model_type": "mixtral"}, "model_type")]
    for k, (config, field) in enumerate(cases):
        folder = write(tmp_path / f"bad{k}", "mlp-experts", layers, np.float32, sharded=False,
                       config=config)
        with pytest.raises(InputError, match=f"config.json: {field}:"):
            open_checkpoint(str(folder))
    folder = write(tmp_path / "dim", "mlp-experts", layers, np.float32, sharded=False,
                   config={**good, "hidden_size": D + 1})
    with pytest.raises(InputError, match="config.json: hidden_size:"):
        layer_weights(open_checkpoint(str(folder)), 0)


def _run(capsys: pytest.CaptureFixture[str], path: Path | str, *extra: str) -> str:
    args = ["similarity", str(path), "--kind", "swiglu", "--radius", "1", "--out",
            "/dev/null", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_bad_checkpoints_are_one_line_errors(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    arrays = make_layer(5)
    t = tensors("mixtral", {0: arrays}, np.float32)
    name = "model.layers.0.block_sparse_moe.experts.1.w3.weight"
    # a missing projection
    part = {k: v for k, v in t.items() if k != name}
    save_file(part, str(tmp_path / "missing.safetensors"))
    assert name in _run(capsys, tmp_path / "missing.safetensors", "--layer", "0")
    # a wrong shape
    save_file({**t, name: np.ones((H + 1, D), np.float32)}, str(tmp_path / "shape.safetensors"))
    err = _run(capsys, tmp_path / "shape.safetensors", "--layer", "0")
    assert name in err and "shape" in err
    # NaN
    bad = t[name].copy()
    bad[0, 0] = np.nan
    save_file({**t, name: bad}, str(tmp_path / "nan.safetensors"))
    assert "nan" in _run(capsys, tmp_path / "nan.safetensors", "--layer", "0")
    bad[0, 0] = 3e38  # finite in float32, but norms of such weights overflow
    save_file({**t, name: bad}, str(tmp_path / "huge.safetensors"))
    assert "within" in _run(capsys, tmp_path / "huge.safetensors", "--layer", "0")
    # an unsupported dtype
    save_file({**t, name: t[name].astype(np.float64)}, str(tmp_path / "f64.safetensors"))
    assert "F64" in _run(capsys, tmp_path / "f64.safetensors", "--layer", "0")
    # no experts at all, a layer without experts, garbage, a missing shard, a bad index
    save_file({"model.embed_tokens.weight": np.ones((2, 2), np.float32)},
              str(tmp_path / "dense.safetensors"))
    assert "no routed-expert tensors" in _run(capsys, tmp_path / "dense.safetensors",
                                              "--layer", "0")
    save_file(t, str(tmp_path / "ok.safetensors"))
    assert "layer 7 has no routed experts" in _run(capsys, tmp_path / "ok.safetensors",
                                                   "--layer", "7")
    assert "--layer" in _run(capsys, tmp_path / "ok.safetensors", "--layer", "x")
    assert "--layer: required" in _run(capsys, tmp_path / "ok.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    assert "junk.safetensors" in _run(capsys, tmp_path / "junk.safetensors", "--layer", "0")
    folder = write(tmp_path / "sh", "mixtral", {0: arrays}, np.float32, sharded=True)
    (folder / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors" in _run(capsys, folder, "--layer", "0")
    (folder / "model.safetensors.index.json").write_text("{")
    assert "model.safetensors.index.json" in _run(capsys, folder, "--layer", "0")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    assert "weight_map" in _run(capsys, folder, "--layer", "0")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "model.safetensors" in _run(capsys, empty, "--layer", "0")
    # --layer with an .npz file, --radius auto without a checkpoint
    np.savez(tmp_path / "w.npz", **arrays)
    assert "--layer" in _run(capsys, tmp_path / "w.npz", "--layer", "0")
    assert main(["similarity", str(tmp_path / "w.npz"), "--kind", "swiglu", "--radius", "auto",
                 "--out", "/dev/null"]) == 2
    assert "auto" in capsys.readouterr().err
