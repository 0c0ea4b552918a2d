"""Real accuracy validation (siftopt.experiments.validate, ``siftopt validate-accuracy
--quick``)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from siftopt.cli import SUBCOMMAND_MODULES, main, validate_cmd  # noqa: E402
from siftopt.errors import InputError  # noqa: E402
from siftopt.experiments.validate import (  # noqa: E402
    METHODS,
    QUICK_EPS_FRACTIONS,
    ValidationConfig,
    ValidationResult,
    bound_violations,
    certified_unchanged,
    exact_not_worse,
    load_digits_split,
    make_scenario,
    moe_output,
    run_validation,
    token_states,
)
from siftopt.experiments.validate.moe import (  # noqa: E402
    MoEConfig,
    MoEParams,
    activation,
    init_params,
    loss_and_grads,
    topk_route,
    upcycle,
)
from siftopt.model.instance import topk_from_gates  # noqa: E402
from siftopt.similarity import ExpertWeights, expert_forward  # noqa: E402


@pytest.fixture(scope="module")
def quick() -> ValidationResult:
    return run_validation(ValidationConfig.make(quick=True, seed=0))


def _run_cli(argv: list[str]) -> int:
    """Run the subcommand through its own parser (independent of SUBCOMMAND_MODULES)."""
    parser = argparse.ArgumentParser(prog="siftopt")
    sub = parser.add_subparsers()
    validate_cmd.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def _ref_act(kind: str, u: float) -> float:
    """σ(u) for one number, written here (relu, or gelu through math.erf)."""
    if kind == "relu":
        return u if u > 0.0 else 0.0
    return 0.5 * u * (1.0 + math.erf(u / math.sqrt(2.0)))


def _ref_moe(params: MoEParams, kind: str, x: np.ndarray, weights: np.ndarray,
             actions: np.ndarray) -> np.ndarray:
    """The served MoE output Σ_k w[t,k]·E_a(x_t) by plain loops over tokens, slots and
    hidden units, straight from the weights (a = the slot's action; SKIP (-1) serves 0)."""
    out = np.zeros((x.shape[0], params.w2.shape[1]))
    for t in range(x.shape[0]):
        for k in range(actions.shape[1]):
            a = int(actions[t, k])
            if a == -1:
                continue
            for f in range(params.w1.shape[1]):
                hidden = _ref_act(kind, float(np.dot(params.w1[a, f], x[t])))
                out[t] += weights[t, k] * hidden * params.w2[a, :, f]
    return out


def _ref_model(params: MoEParams, kind: str, top_k: int, x_in: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The trained model, written here: token states, router top-K (descending gate, ties to
    the lower index) with renormalised weights, MoE output and logits."""
    x = x_in @ params.we.T + params.be
    experts = np.zeros((len(x), top_k), dtype=np.int64)
    weights = np.zeros((len(x), top_k))
    for t in range(len(x)):
        z = params.wr @ x[t]
        g = np.exp(z - z.max())
        g /= g.sum()
        order = sorted(range(len(g)), key=lambda i: (-g[i], i))[:top_k]
        experts[t] = order
        weights[t] = g[order] / g[order].sum()
    y = _ref_moe(params, kind, x, weights, experts)
    logits = (x + y) @ params.wo.T + params.bo
    return x, experts, weights, y, logits


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# ------------------------------------------------------------------------------------------
# The quick run end to end
# ------------------------------------------------------------------------------------------


def test_quick_cli_writes_files_and_is_reproducible(tmp_path: Path, quick: ValidationResult,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "val"
    assert _run_cli(["validate-accuracy", "--quick", "--seed", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| ε / ε_skip |" in printed and "exact (highs)" in printed
    for name in ("results.csv", "results.md", "summary.json", "accuracy_vs_energy.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy_vs_energy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(QUICK_EPS_FRACTIONS) * len(METHODS)
    assert {r["method"] for r in rows} == set(METHODS)
    md = (out / "results.md").read_text()
    assert md.count("\n| ") == len(rows) + 1  # header + one line per row
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bound_check"]["violating_tokens"] == 0
    assert summary["exact_beaten_by_policy"] == []
    # Same seed, same numbers: the CLI run reproduces the fixture's run exactly.
    assert summary["model"]["test_accuracy"] == quick.model_accuracy
    assert len(summary["rows"]) == len(quick.rows)
    for got, want in zip(summary["rows"], quick.rows, strict=True):
        for key in ("energy_j", "accuracy", "mean_rel_error", "violating_tokens",
                    "tokens_over_budget", "certified_accuracy"):
            assert got[key] == want[key], (key, got, want)


def test_same_seed_same_numbers(quick: ValidationResult) -> None:
    again = run_validation(ValidationConfig.make(quick=True, seed=0))
    for name, arr in quick.params.arrays().items():
        assert np.array_equal(arr, again.params.arrays()[name]), name
    assert np.array_equal(quick.bounds.beta, again.bounds.beta)
    assert np.array_equal(quick.bounds.delta, again.bounds.delta)
    for a, b in zip(quick.rows, again.rows, strict=True):
        for key in a:
            if key != "solve_time_s":
                assert _same(a[key], b[key]), (key, a, b)


def test_zero_violating_tokens_for_every_method_and_eps(quick: ValidationResult) -> None:
    assert len(quick.rows) == len(QUICK_EPS_FRACTIONS) * len(METHODS)
    for row in quick.rows:
        assert row["violating_tokens"] == 0, row
        assert row["max_error_over_bound"] != row["max_error_over_bound"] \
            or row["max_error_over_bound"] <= 1.0 + 1e-9
    for rec in quick.records:
        assert not rec.violating.any()


def test_bounds_are_analytic_and_hold_on_the_test_tokens(quick: ValidationResult) -> None:
    assert quick.bounds.method == "analytic" and quick.bounds.is_bound
    assert quick.bounds.radius is None and quick.bounds.min_radius is None
    for key, value in quick.tightness.items():
        assert 0.0 < value <= 1.0, key


def test_exact_optimum_is_never_beaten_by_a_feasible_policy(quick: ValidationResult) -> None:
    assert exact_not_worse(quick.records) == []
    exact = {(r.eps_fraction, r.batch): r for r in quick.records if r.method == "highs"}
    assert all(r.status == "optimal" and r.feasible for r in exact.values())
    for r in quick.records:
        if r.feasible:
            opt = exact[(r.eps_fraction, r.batch)]
            assert opt.energy_j <= r.energy_j * (1 + 1e-6) + 1e-15, (r.method, r.eps_fraction)


def test_budget_respecting_methods_meet_every_token_budget(quick: ValidationResult) -> None:
    for row in quick.rows:
        if row["method"] in ("sift-ratio", "highs", "topk"):
            assert row["tokens_over_budget"] == 0, row
            assert row["feasible_batches"] == row["batches"], row


def test_topk_is_the_trained_model(quick: ValidationResult) -> None:
    """Top-K serving has the accuracy of the trained model, recomputed here by a separate
    loop implementation of the network from its weights."""
    cfg = quick.config
    data = load_digits_split(cfg.seed, cfg.test_fraction, cfg.max_test_tokens)
    *_, logits = _ref_model(quick.params, cfg.activation, cfg.top_k, data.x_test)
    accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
    assert quick.model_accuracy == accuracy
    rows = [row for row in quick.rows if row["method"] == "topk"]
    assert rows
    for row in rows:
        assert row["accuracy"] == accuracy
        assert row["mean_rel_error"] == 0.0 and row["saved_vs_topk_pct"] == 0.0
    assert 0.85 < accuracy <= 1.0


def test_served_accuracy_is_at_least_the_certified_accuracy(quick: ValidationResult) -> None:
    for row in quick.rows:
        assert row["accuracy"] >= row["certified_accuracy"], row


def test_energy_saved_grows_with_the_budget(quick: ValidationResult) -> None:
    exact = [r for r in quick.rows if r["method"] == "highs"]
    energies = [r["energy_j"] for r in exact]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(energies, energies[1:], strict=False))
    assert exact[0]["saved_vs_topk_pct"] == pytest.approx(0.0, abs=1e-9)  # ε = 0: keep all
    assert exact[-1]["saved_vs_topk_pct"] > 10.0


# ------------------------------------------------------------------------------------------
# Pieces
# ------------------------------------------------------------------------------------------


def _small_model(seed: int = 3) -> tuple[MoEConfig, MoEParams]:
    cfg = MoEConfig(input_dim=64, model_dim=8, ffn_dim=12, num_experts=5, top_k=2)
    rng = np.random.default_rng(seed)
    return cfg, upcycle(init_params(cfg, rng), rng, 0.5)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("kind", ["relu", "gelu"])
def test_gradients_match_finite_differences(dense: bool, kind: str) -> None:
    cfg, params = _small_model()
    cfg = dataclasses.replace(cfg, activation=kind)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 1, size=(24, 64))
    labels = rng.integers(0, 10, size=24)
    _, grads = loss_and_grads(params, cfg, x, labels, 0.1, dense=dense)
    h = 1e-6
    for name, arr in params.arrays().items():
        for _ in range(4):
            idx = tuple(int(rng.integers(0, s)) for s in arr.shape)
            old = arr[idx]
            arr[idx] = old + h
            up, _ = loss_and_grads(params, cfg, x, labels, 0.1, dense=dense)
            arr[idx] = old - h
            down, _ = loss_and_grads(params, cfg, x, labels, 0.1, dense=dense)
            arr[idx] = old
            assert grads[name][idx] == pytest.approx((up - down) / (2 * h), rel=1e-4,
                                                     abs=1e-7), (name, idx)


def test_routing_matches_the_instance_convention() -> None:
    rng = np.random.default_rng(0)
    g = rng.dirichlet(np.ones(6), size=50)
    g[0] = [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]  # ties: the lower index wins
    experts, weights = topk_route(g, 3)
    ref_e, ref_w = topk_from_gates(g, 3, renormalize=True)
    assert np.array_equal(experts, ref_e) and np.array_equal(weights, ref_w)
    assert experts[0].tolist() == [0, 1, 2]


def test_expert_outputs_follow_the_bounds_weight_contract() -> None:
    cfg, params = _small_model()
    x = np.random.default_rng(1).normal(size=(10, cfg.model_dim))
    ew = ExpertWeights.from_arrays({"w1": params.w1, "w2": params.w2})
    for i in range(cfg.num_experts):
        mine = activation("relu", x @ params.w1[i].T) @ params.w2[i].T
        assert np.allclose(mine, expert_forward(ew, i, x, "relu"), rtol=1e-12, atol=1e-12)


def test_instances_carry_the_model_weights_bit_for_bit(quick: ValidationResult) -> None:
    data = load_digits_split(0, max_test_tokens=16)
    cfg = quick.config
    states = token_states(quick.params, cfg.moe_config(), data.x_test)
    inst = make_scenario(cfg, quick.bounds).instance(states, 0.5, "t")
    assert np.array_equal(inst.topk_experts, states.experts)
    assert np.array_equal(inst.topk_weights, states.weights)
    assert inst.hidden_dim == cfg.model_dim and inst.payload_bits == 16 * cfg.model_dim
    assert np.array_equal(inst.beta, quick.bounds.beta)
    # the states are the model's, recomputed here by a separate loop implementation
    x, experts, weights, y, logits = _ref_model(quick.params, cfg.activation, cfg.top_k,
                                                data.x_test)
    np.testing.assert_allclose(states.x, x, rtol=1e-12, atol=1e-12)
    assert np.array_equal(states.experts, experts)
    np.testing.assert_allclose(states.weights, weights, rtol=1e-12, atol=0)
    np.testing.assert_allclose(states.y, y, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(states.logits, logits, rtol=1e-10, atol=1e-12)
    # served output of arbitrary actions (keeps, replacements, skips) against the loops
    rng = np.random.default_rng(5)
    actions = np.where(rng.random(states.experts.shape) < 0.3, -1,
                       rng.integers(0, cfg.num_experts, states.experts.shape))
    np.testing.assert_allclose(moe_output(states.outputs, states.weights, actions),
                               _ref_moe(quick.params, cfg.activation, states.x, states.weights,
                                        actions), rtol=1e-10, atol=1e-12)
    skip_all = np.full_like(states.experts, -1)
    assert not moe_output(states.outputs, states.weights, skip_all).any()


def test_bound_check_and_certificate_helpers() -> None:
    err = np.array([0.0, 1.0, 1.0 + 1e-12, 1.1])
    xn = np.ones(4)
    deg = np.array([0.0, 1.0, 1.0, 1.0])
    assert bound_violations(err, xn, deg).tolist() == [False, False, False, True]
    logits = np.array([[3.0, 1.0], [1.0, 1.5]])
    wo = np.array([[1.0, 0.0], [0.0, 1.0]])  # ‖wo_0 − wo_1‖ = √2
    assert certified_unchanged(logits, wo, np.array([1.0, 0.0])).tolist() == [True, True]
    assert certified_unchanged(logits, wo, np.array([2.0 / math.sqrt(2) + 1e-9, 1.0])
                               ).tolist() == [False, False]


def test_bad_options_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--top-k"):
        _run_cli(["validate-accuracy", "--experts", "4", "--top-k", "5",
                  "--out", str(tmp_path)])
    with pytest.raises(InputError, match="--experts"):
        ValidationConfig.make(experts=1, top_k=1)


def test_cli_exit_status_2_on_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import siftopt.cli

    if "siftopt.cli.validate_cmd" not in SUBCOMMAND_MODULES:  # until the lead registers it
        monkeypatch.setattr(siftopt.cli, "SUBCOMMAND_MODULES",
                            (*SUBCOMMAND_MODULES, "siftopt.cli.validate_cmd"))
    assert main(["validate-accuracy", "--experts", "3", "--top-k", "4",
                 "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--top-k" in err[0]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["validate-accuracy", "--quick", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the output directory" in err[0]
