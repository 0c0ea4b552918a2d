"""Hostile input: mutations of valid files end in a result or an InputError, never another
exception (docs/model.md §6).

Every reader gets random mutations of valid files (:mod:`siftopt.io.fuzz`: values replaced by
extreme numbers, NaN, infinity, wrong types or hostile file names, lists resized, keys deleted,
arrays reshaped or retyped, forged ``.npz`` headers, damaged bytes): instance JSON and its
``.npz`` sidecar, solution files, benchmark TOML, generator options (``config_from_mapping``),
solver profiles and expert weight files. What loads goes on: instances through
``problem_data`` and ``evaluate`` (keep all, skip all, and random actions), solutions through
``evaluate``, profiles through a solve, weights through the analytic bounds. An InputError
must be one line that names the file.

The default is a seeded smoke run for CI (a fixed set of examples, the same every run, about
10 s on an idle machine). A longer run by hand draws fresh examples each time:

    SIFTOPT_FUZZ_EXAMPLES=2000 python -m pytest -p no:cacheprovider tests/test_fuzz_inputs.py

``benchmarks/fuzz_campaign.py`` runs the same mutations through the command line and counts
the outcomes.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siftopt import api
from siftopt.errors import InputError
from siftopt.experiments.bench.config import load_bench_config
from siftopt.experiments.generate.config import config_from_mapping
from siftopt.io import fuzz
from siftopt.io.instance_file import load_instance
from siftopt.io.profiles import load_profile
from siftopt.io.solution import read_solution, result_json
from siftopt.model.evaluate import evaluate
from siftopt.model.problem import keep_all, problem_data, skip_all
from siftopt.similarity import compute_bounds, load_expert_weights
from siftopt.similarity.weights import check_kind

ROOT = Path(__file__).resolve().parent.parent
INSTANCES = ROOT / "instances"
EXAMPLES = ("example-decode-adaptive.json", "example-decode-rayleigh.json",
            "example-prefill-fixed.json")
SIDECAR = "prefill-fixed.npz"

LONG_RUN = int(os.environ.get("SIFTOPT_FUZZ_EXAMPLES", "0"))


def fuzz_settings(smoke_examples: int) -> Any:
    """``smoke_examples`` derandomized examples, or SIFTOPT_FUZZ_EXAMPLES fresh ones."""
    return settings(max_examples=LONG_RUN or smoke_examples, derandomize=not LONG_RUN,
                    database=None, deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


RANDOMS = st.randoms(use_true_random=False)


def assert_one_line(exc: InputError, file: str | None) -> None:
    text = str(exc)
    assert "\n" not in text, text
    assert "Traceback" not in text
    if file is not None:
        assert file in text, text


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch folder with the example instances and the sidecar."""
    work = tmp_path_factory.mktemp("fuzz")
    for name in (*EXAMPLES, SIDECAR):
        shutil.copy(INSTANCES / name, work / name)
    return work


def write_mutated_json(rng: random.Random, doc: Any, target: Path, *,
                       names: tuple[str, ...] = ()) -> None:
    if rng.random() < 0.1:
        data, _ = fuzz.mutate_bytes(json.dumps(doc).encode(), rng)
        target.write_bytes(data)
    else:
        mutated, _ = fuzz.mutate_document(doc, rng, names=names)
        target.write_text(fuzz.dump_json(mutated), encoding="utf-8")


def exercise_instance(path: Path, rng: random.Random) -> None:
    """Load; what loads goes through problem_data and evaluate. InputError is fine."""
    try:
        inst = load_instance(path)
    except InputError as exc:
        assert_one_line(exc, str(path))
        return
    data = problem_data(inst)
    for actions in (keep_all(inst), skip_all(inst)):
        assert np.isfinite(evaluate(inst, actions).energy_j)
    picks = [int(data.opt_target[rng.choice(data.slot_options(s))])
             for s in range(data.num_slots)]
    evaluate(inst, np.array(picks, dtype=np.int64).reshape(inst.topk_experts.shape))


# --------------------------------------------------------------------------------------------
# Instances and their sidecar
# --------------------------------------------------------------------------------------------


@fuzz_settings(800)
@given(rng=RANDOMS)
def test_instance_mutations(folder, rng):
    name = rng.choice(EXAMPLES)
    doc = json.loads((INSTANCES / name).read_text())
    target = folder / f"mutated-{name}"
    write_mutated_json(rng, doc, target, names=(str(folder / SIDECAR), SIDECAR))
    exercise_instance(target, rng)


@fuzz_settings(300)
@given(rng=RANDOMS)
def test_sidecar_mutations(folder, rng):
    doc = json.loads((INSTANCES / "example-prefill-fixed.json").read_text())
    doc["arrays"] = "mutated.npz"
    arrays = dict(np.load(INSTANCES / SIDECAR))
    sidecar = folder / "mutated.npz"
    roll = rng.random()
    if roll < 0.15:
        sidecar.write_bytes(fuzz.forged_npz(arrays, rng.choice(sorted(arrays)),
                                            rng.choice(fuzz.FORGED_SHAPES)))
    elif roll < 0.25:
        data, _ = fuzz.mutate_bytes((INSTANCES / SIDECAR).read_bytes(), rng)
        sidecar.write_bytes(data)
    else:
        fuzz.save_arrays(sidecar, fuzz.mutate_arrays(arrays, rng)[0])
    target = folder / "with-mutated-sidecar.json"
    target.write_text(json.dumps(doc), encoding="utf-8")
    exercise_instance(target, rng)


def _instance_naming(tmp_path: Path, arrays: str) -> Path:
    doc = json.loads((INSTANCES / "example-prefill-fixed.json").read_text())
    doc["arrays"] = arrays
    path = tmp_path / "inst" / "x.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "inner-dotdot", "backslash"])
def test_sidecar_outside_the_instance_folder_is_refused(tmp_path, kind):
    outside = tmp_path / SIDECAR
    shutil.copy(INSTANCES / SIDECAR, outside)  # a valid sidecar, one folder up
    folder = tmp_path / "inst"
    folder.mkdir()
    shutil.copy(INSTANCES / SIDECAR, folder / SIDECAR)
    names = {"absolute": str(folder / SIDECAR), "dotdot": f"../{SIDECAR}",
             "symlink": "link.npz", "inner-dotdot": f"sub/../../{SIDECAR}",
             "backslash": f"..\\{SIDECAR}"}
    (folder / "link.npz").symlink_to(outside)
    path = _instance_naming(tmp_path, names[kind])
    with pytest.raises(InputError, match=r"x\.json: arrays: ") as caught:
        load_instance(path)
    assert_one_line(caught.value, str(path))


def test_sidecar_in_a_subfolder_is_fine(tmp_path):
    (tmp_path / "inst" / "data").mkdir(parents=True)
    shutil.copy(INSTANCES / SIDECAR, tmp_path / "inst" / "data" / SIDECAR)
    inst = load_instance(_instance_naming(tmp_path, f"data/{SIDECAR}"))
    assert inst.num_tokens == 4


def test_forged_header_is_refused_before_anything_is_read(tmp_path, monkeypatch):
    arrays = dict(np.load(INSTANCES / SIDECAR))
    folder = tmp_path / "inst"
    folder.mkdir()
    (folder / SIDECAR).write_bytes(fuzz.forged_npz(arrays, "delta", (60_000, 60_000)))
    path = _instance_naming(tmp_path, SIDECAR)
    with pytest.raises(InputError, match=r"bounds\.delta: must have 8 rows, got 60000"):
        load_instance(path)
    # the right shape, but more than the memory there is: refused with the estimate
    (folder / SIDECAR).write_bytes(fuzz.forged_npz(arrays, "topk_experts", (10**9, 2)))
    monkeypatch.setenv("SIFTOPT_MEMORY_LIMIT", "1G")
    with pytest.raises(InputError, match=r"would need about .* GiB, more than "
                                         r"SIFTOPT_MEMORY_LIMIT \(1\.0 GiB\)"):
        load_instance(path)


def test_declared_sizes_beyond_memory_are_refused_up_front(tmp_path, monkeypatch):
    doc = json.loads((INSTANCES / "example-decode-adaptive.json").read_text())
    doc["model"]["num_experts"] = 60_000  # δ alone: 60 000² doubles = 26.8 GiB
    path = tmp_path / "big.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("SIFTOPT_MEMORY_LIMIT", "16G")
    with pytest.raises(InputError, match=r"big\.json: model\.num_experts: N = 60000 experts.*"
                                         r"would need about .* GiB, more than"):
        load_instance(path)
    monkeypatch.setenv("SIFTOPT_MEMORY_LIMIT", "1K")  # the text itself is too large to parse
    with pytest.raises(InputError, match=r"big\.json: parsing this .*-byte text"):
        load_instance(path)


# --------------------------------------------------------------------------------------------
# Solution files
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def solutions(folder: Path) -> dict[str, Any]:
    """A valid solution object (sift-ratio's) of each example."""
    out = {}
    for name in EXAMPLES:
        inst = load_instance(folder / name)
        out[name] = json.loads(json.dumps(result_json(inst, api.solve(inst, "sift-ratio"))))
    return out


@fuzz_settings(400)
@given(rng=RANDOMS)
def test_solution_mutations(folder, solutions, rng):
    name = rng.choice(EXAMPLES)
    inst = load_instance(folder / name)
    target = folder / "solution.json"
    write_mutated_json(rng, solutions[name], target)
    try:
        actions = read_solution(target, inst)
        evaluate(inst, actions, file=str(target))
    except InputError as exc:
        assert_one_line(exc, str(target))


# --------------------------------------------------------------------------------------------
# Benchmark configurations, generator options, solver profiles
# --------------------------------------------------------------------------------------------


def write_mutated_toml(rng: random.Random, source: Path, target: Path,
                       names: tuple[str, ...] = ()) -> None:
    if rng.random() < 0.1:
        data, _ = fuzz.mutate_bytes(source.read_bytes(), rng)
        target.write_bytes(data)
        return
    doc = tomllib.loads(source.read_text(encoding="utf-8"))
    mutated, _ = fuzz.mutate_document(doc, rng, syntax="TOML", names=names)
    target.write_text(fuzz.dump_toml(mutated), encoding="utf-8")


@fuzz_settings(300)
@given(rng=RANDOMS)
def test_bench_config_mutations(folder, rng):
    source = ROOT / "benchmarks" / rng.choice(("quick.toml", "paper.toml"))
    target = folder / "bench.toml"
    profile = str(ROOT / "solvers" / "quick.toml")
    write_mutated_toml(rng, source, target, (profile, "../solvers/quick.toml", "quick"))
    try:
        bench = load_bench_config(target)
    except InputError as exc:
        assert_one_line(exc, str(target))
        return
    assert bench.profile is None or not bench.profile.endswith(".toml") \
        or Path(bench.profile).resolve().is_relative_to(folder.resolve())


def test_bench_profile_path_must_stay_in_the_folder(tmp_path):
    base = (ROOT / "benchmarks" / "quick.toml").read_text()
    (tmp_path / "mine.toml").write_text("threads = 1\n")
    for profile, ok in (("mine.toml", True), ("quick", True),
                        (str(ROOT / "solvers" / "quick.toml"), False),
                        ("../x/quick.toml", False)):
        (tmp_path / "b.toml").write_text(f'profile = "{profile}"\n' + base)
        if ok:
            load_bench_config(tmp_path / "b.toml")
        else:
            with pytest.raises(InputError, match=r"b\.toml: profile: must name a profile "
                                                 r"inside the folder"):
                load_bench_config(tmp_path / "b.toml")


GENERATOR_BASES = (
    {"preset": "mixtral-8x7b", "tokens": 4, "nodes": 3},
    {"preset": "qwen3-30b-a3b", "fading": "rayleigh", "outage_max": 0.1, "latency_s": 0.05,
     "max_candidates": 3, "budget": "both", "similarity": 0.9, "raise_budgets": False},
)


@fuzz_settings(600)
@given(rng=RANDOMS)
def test_generator_option_mutations(rng):
    mapping, _ = fuzz.mutate_document(dict(rng.choice(GENERATOR_BASES)), rng)
    try:
        config = config_from_mapping(mapping, file="options", prefix="--")
    except InputError as exc:
        assert_one_line(exc, "options")
        return
    json.dumps(config.to_dict(), allow_nan=False)  # what the bench hashes


@fuzz_settings(100)
@given(rng=RANDOMS)
def test_profile_mutations(folder, rng):
    source = ROOT / "solvers" / rng.choice(("default.toml", "quick.toml", "parallel.toml"))
    target = folder / "profile.toml"
    write_mutated_toml(rng, source, target)
    try:
        profile = load_profile(str(target))
        api.solve(folder / "example-prefill-fixed.json", rng.choice(("highs", "cpsat")),
                  profile=profile, time_limit=10)
    except InputError as exc:
        assert_one_line(exc, str(target))  # a solver's refusal too names the profile's file


@pytest.mark.parametrize(("text", "field"), [
    ("time_limit_s = nan", "time_limit_s"), ("time_limit_s = inf", "time_limit_s"),
    ("threads = 1000000", "threads"), ("[highs]\nmip_rel_gap = nan", "highs.mip_rel_gap"),
    ("[highs]\npresolve = []", "highs.presolve"),
    ("[cpsat]\nrelative_gap_limit = -inf", "cpsat.relative_gap_limit"),
    ("[cpsat]\nmax_time_in_seconds = {a = 1}", "cpsat.max_time_in_seconds"),
    ("[highs]\nmip_feasibility_tolerance = 1e30", "highs.mip_feasibility_tolerance"),
    ("[highs]\nprimal_feasibility_tolerance = 0.0", "highs.primal_feasibility_tolerance"),
])
def test_profile_values_out_of_range(tmp_path, text, field):
    path = tmp_path / "p.toml"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=rf"p\.toml: {field}: "):
        load_profile(str(path))


# --------------------------------------------------------------------------------------------
# Expert weight files
# --------------------------------------------------------------------------------------------


def _weights() -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
    gen = np.random.default_rng(0)
    n, h, d = 3, 5, 4

    def w(*shape: int) -> np.ndarray:
        return gen.normal(size=shape) / np.sqrt(shape[-1])

    return {
        "relu": ({"w1": w(n, h, d), "w2": w(n, d, h)}, {}),
        "swiglu": ({"w1": w(n, h, d), "w2": w(n, d, h), "w3": w(n, h, d)}, {"radius": 2.0}),
        "gelu": ({"w1": w(n, h, d), "w2": w(n, d, h), "b1": w(n, h), "b2": w(n, d)},
                 {"min_radius": 0.5}),
    }


WEIGHTS = _weights()


@fuzz_settings(300)
@given(rng=RANDOMS)
def test_weight_file_mutations(folder, rng):
    kind = rng.choice(sorted(WEIGHTS))
    arrays, options = WEIGHTS[kind]
    target = folder / "weights.npz"
    roll = rng.random()
    if roll < 0.1:
        target.write_bytes(fuzz.forged_npz(arrays, rng.choice(sorted(arrays)),
                                           rng.choice(fuzz.FORGED_SHAPES)))
    elif roll < 0.2:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        target.write_bytes(fuzz.mutate_bytes(buffer.getvalue(), rng)[0])
    else:
        fuzz.save_arrays(target, fuzz.mutate_arrays(arrays, rng)[0])
    try:
        weights = load_expert_weights(str(target))
        bounds = compute_bounds(weights, check_kind(weights, kind), "analytic",
                                exact_pairs=0, **options)
    except InputError as exc:
        assert_one_line(exc, None)
        return
    json.dumps(bounds.to_json_dict(), allow_nan=False)
