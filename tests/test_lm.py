"""The byte-level MoE language model and its validation run (``validate-accuracy --model lm``).

The suite runs the ``--quick`` version only (a tiny model trained for a few dozen steps): it
checks the plumbing and the safety claim — zero bound violations on every token of every
layer, in prefill and in decode — not the accuracy numbers of docs/accuracy.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from siftopt.cli import main
from siftopt.experiments.generate.trace import TraceConfig, generate_from_trace, load_trace
from siftopt.experiments.validate import lm
from siftopt.experiments.validate.lm_data import (
    checkpoint_tensors,
    corpus_bytes,
    params_from_tensors,
    split,
)
from siftopt.experiments.validate.lm_run import (
    LMValidationConfig,
    load_or_train,
    run_lm_validation,
)
from siftopt.experiments.validate.lm_serve import ServedLM
from siftopt.similarity.checkpoint import layer_weights, open_checkpoint


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("lm-cache")
    cfg = LMValidationConfig.make(quick=True)
    return cfg, cache, run_lm_validation(cfg, cache)


def test_gradients_match_finite_differences() -> None:
    cfg = lm.LMConfig(vocab=11, context=5, model_dim=8, heads=2, ffn_dim=6, num_experts=4,
                      top_k=2, layers=2)
    rng = np.random.default_rng(1)
    p = lm.upcycle(lm.init_params(cfg, rng, dtype=np.float64), cfg, rng, 0.5)
    for key in p:
        if key.endswith("wr"):
            p[key] = rng.standard_normal(p[key].shape)
        if ".ln" in key or key == "lnf":
            p[key] = 1 + 0.3 * rng.standard_normal(p[key].shape)
    tokens = rng.integers(0, cfg.vocab, (3, cfg.context + 1))
    for dense in (False, True):
        _, _, grads = lm.loss_and_grads(p, cfg, tokens, 0.1, dense=dense)
        for name, value in p.items():
            for _ in range(3):
                idx = tuple(int(rng.integers(0, s)) for s in value.shape)
                old = value[idx]
                value[idx] = old + 1e-6
                up = lm.loss_and_grads(p, cfg, tokens, 0.1, dense=dense)[1]
                value[idx] = old - 1e-6
                down = lm.loss_and_grads(p, cfg, tokens, 0.1, dense=dense)[1]
                value[idx] = old
                numeric = (up - down) / 2e-6
                assert grads[name][idx] == pytest.approx(numeric, rel=1e-4, abs=1e-8), name


def test_corpus_is_the_python_help_text_and_the_split_is_disjoint() -> None:
    data = corpus_bytes()
    train, held = split(data, 0.1)
    assert data.size > 400_000 and train.size + held.size == data.size
    assert b"lambda" in data.tobytes() and abs(held.size / data.size - 0.1) < 1e-3


def test_quick_run_bound_holds_everywhere(quick_run) -> None:
    cfg, _, res = quick_run
    assert res.rows and all(r["violating_tokens"] == 0 for r in res.rows)
    assert res.exact_beaten == []
    assert res.ratio_quantiles["count"] > 0 and res.ratio_quantiles["max"] <= 1.0
    modes = {r["mode"] for r in res.rows}
    assert modes == {"prefill", "decode"}
    for r in res.rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["perplexity"] > 1.0
        if r["method"] == "topk":  # the trained model itself: no degradation, no error
            assert r["mean_degradation"] == 0.0 and r["mean_rel_error"] == 0.0
        if r["method"] in ("sift-ratio", "highs"):
            assert r["tokens_over_budget"] == 0
    for t in res.tightness:  # the certified radius holds on real states
        assert t["x_norm_max_over_radius"] <= 1.0 and t["beta_ratio_max"] <= 1.0
        assert t["delta_ratio_max"] <= 1.0
    # every layer-token of every served run was checked
    per_mode = {"prefill": cfg.prefill_sequences, "decode": cfg.decode_sequences}
    for r in res.rows:
        assert r["layer_tokens"] == per_mode[r["mode"]] * cfg.model.context * cfg.model.layers


def test_checkpoint_round_trip_and_bounds_from_the_saved_model(quick_run, tmp_path) -> None:
    cfg, _, res = quick_run
    folder = res.cache_folder
    params = params_from_tensors(checkpoint_tensors(_params(res), cfg.model), cfg.model)
    ckpt = open_checkpoint(str(folder))
    assert ckpt.layout.name == "mlp-experts" and ckpt.layers == list(range(cfg.model.layers))
    model = ServedLM(params, cfg.model)
    for layer in range(cfg.model.layers):
        w = layer_weights(ckpt, layer)
        for key in ("w1", "w2", "w3"):
            assert np.array_equal(getattr(w, key), getattr(model.experts[layer], key))
    out = tmp_path / "bounds.json"
    assert main(["similarity", str(folder), "--layer", "all", "--kind", "swiglu", "--radius",
                 "auto", "--exact-pairs", "all", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    for layer, bounds in enumerate(res.bounds):
        assert doc["layers"][str(layer)] == bounds.to_json_dict()


def _params(res) -> lm.Params:
    from siftopt.experiments.validate.lm_data import load_weights

    loaded = load_weights(res.cache_folder, res.config.model)
    assert loaded is not None
    return loaded[0]


def test_cache_is_reused(quick_run) -> None:
    cfg, cache, res = quick_run
    params, _, folder, trained = load_or_train(cfg, cache, lambda _m: None)
    assert not trained and folder == res.cache_folder
    fresh = _params(res)
    assert all(np.array_equal(params[k], fresh[k]) for k in fresh)


def _strip(rows: list[dict]) -> str:
    """Rows as JSON without the solve times (which vary; NaN compares equal as JSON)."""
    return json.dumps([{k: v for k, v in r.items() if k != "solve_time_s"} for r in rows])


def test_cli_writes_trace_that_generate_reproduces(quick_run, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["validate-accuracy", "--model", "lm", "--quick", "--cache", str(tmp_path / "c"),
            "--out", str(out)]
    assert main(argv) == 0
    for name in ("results.csv", "results.md", "summary.json", "lm_accuracy_vs_energy.png",
                 "trace.npz", "bounds.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bound_check"]["violating_tokens"] == 0
    # trained afresh in another cache folder: the same seed gives the same numbers
    assert summary["weights"]["trained_now"]
    assert _strip(summary["rows"]) == _strip(json.loads(json.dumps(
        quick_run[2].rows, default=float).replace("NaN", "null")))
    cfg = LMValidationConfig.make(quick=True)
    trace = load_trace(str(out / "trace.npz"))
    t = cfg.model.context
    assert trace.gates.shape == (cfg.model.layers, cfg.prefill_sequences * t,
                                 cfg.model.num_experts)
    # the instance of layer 1, seed 2 holds sequence 2's tokens with the model's own routing
    tc = TraceConfig(trace=str(out / "trace.npz"), bounds=str(out / "bounds.json"), layer=1,
                     tokens=t)
    inst = generate_from_trace(tc, 2).instance
    raw = np.load(out / "trace.npz")["router_logits"][1, 2 * t:3 * t]
    _, experts, weights = lm.topk_route(raw, cfg.model.top_k)
    assert np.array_equal(inst.topk_experts, experts)
    assert np.array_equal(inst.topk_weights, weights)
    bounds = json.loads((out / "bounds.json").read_text())["layers"]["1"]
    assert inst.beta.tolist() == bounds["beta"]
    gen = tmp_path / "gen"
    assert main(["generate", "--trace", str(out / "trace.npz"), "--bounds",
                 str(out / "bounds.json"), "--layer", "0", "--tokens", "4", "--count", "3",
                 "--out", str(gen)]) == 0
    manifest = json.loads((gen / "manifest.json").read_text())
    assert [e["first_token"] for e in manifest["instances"]] == [0, 4, 8]


def test_lm_rejects_digits_options(tmp_path, capsys) -> None:
    assert main(["validate-accuracy", "--model", "lm", "--experts", "4", "--out",
                 str(tmp_path)]) == 2
    assert "--experts" in capsys.readouterr().err
    assert main(["validate-accuracy", "--cache", str(tmp_path), "--out", str(tmp_path)]) == 2
