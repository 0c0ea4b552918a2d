"""Benchmark configuration files (TOML): parsing, strict validation, and the cells they define.

A configuration::

    description = "what this sweep shows"
    seeds = 3                      # instances per grid point: seeds 0..2 (or a list)
    methods = ["highs", "topk", "sift-decode"]
    time_limit_s = 60              # per exact solve (s)
    profile = "default"            # solver profile (a name, or a .toml path in this folder)
    formulation = "auto"           # exact model: auto, slots or patterns (siftopt solve)
    baseline = "topk"              # "energy saved vs" this method
    reference = "highs"            # exact method whose optimum defines the gaps
    simulate_runs = 0              # > 0: Monte Carlo of every decision under Rayleigh fading

    [defaults]                     # generator parameters shared by every sweep
    preset = "mixtral-8x7b"

    [[sweep]]
    name = "accuracy"
    x = "accuracy"                 # the parameter on the x axis of its table and plot
    seeds = 5                      # optional: this sweep's own seeds (methods likewise)
    accuracy = [0.05, 0.1, 0.2]    # a list is a grid axis; a scalar a fixed value
    preset = ["mixtral-8x7b", "qwen3-30b-a3b"]

A sweep (or ``[defaults]``) that sets ``trace = "TRACE.npz"`` and ``bounds = "BOUNDS.json"``
builds its instances from a real model's router trace and bounds instead of a preset
(:mod:`siftopt.experiments.generate.trace`; paths relative to the configuration file).
``layer`` picks the model layer and ``start`` the first token; seed s takes the trace's s-th
window of ``tokens`` tokens. ``trace``, ``bounds`` and ``layer`` may be lists (grid axes) like
any parameter. Such a sweep takes the radio and budget parameters; the preset-only ones
(``preset``, ``similarity``, ``router_entropy``, ``token_correlation``) are an error in the
sweep and ignored from ``[defaults]``.

A **cell** is one generated instance (parameters × seed); every method runs on it. Cells and
results are keyed by hashes of their configuration (for traces: of the trace and bounds files'
contents), so that a sweep is resumable and a cell shared by two sweeps is computed once.
Errors are one line naming the file and the key.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from siftopt.errors import InputError
from siftopt.experiments.generate.config import (
    PARAMETERS,
    GeneratorConfig,
    check_parameter,
    config_from_mapping,
)
from siftopt.experiments.generate.trace import (
    REPLACED_PARAMETERS,
    TRACE_PARAMETERS,
    TraceConfig,
    trace_config_from_mapping,
)
from siftopt.facade import EXACT_METHODS, FORMULATIONS
from siftopt.io.profiles import load_profile
from siftopt.io.reader import Reader

#: Bump when the generator's output for a given config and seed changes (invalidates cells).
GENERATOR_VERSION = 1
#: Bump when trace instances for a given config, seed and files change (invalidates cells).
TRACE_VERSION = 1
#: Every parameter a sweep or ``[defaults]`` may set: the generator's and the trace keys.
ALL_PARAMETERS: tuple[str, ...] = PARAMETERS + TRACE_PARAMETERS
#: Bump when the Monte Carlo of a cell changes (invalidates simulated results only).
SIMULATION_VERSION = 2
TOP_KEYS = ("description", "seeds", "methods", "time_limit_s", "profile", "formulation",
            "baseline", "reference", "simulate_runs", "defaults", "sweep")
SWEEP_KEYS = ("name", "x", "methods", "seeds", "description")
DEFAULT_TIME_LIMIT_S = 60.0
#: Accepted ranges: seeds (count, and each seed), the time limit (s), Monte Carlo runs.
MAX_SEEDS, MAX_SEED = 100_000, 2**63 - 1
MAX_TIME_LIMIT_S = 1e9
MAX_SIMULATE_RUNS = 10**9


@dataclass(frozen=True)
class Sweep:
    """One sweep: its grid points (generator configs) and the methods run on them."""

    name: str
    x: str
    description: str
    configs: tuple[GeneratorConfig | TraceConfig, ...]
    varying: tuple[str, ...]  # parameters with more than one value (x included)
    methods: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class BenchConfig:
    """A validated benchmark configuration (time in s)."""

    file: str
    description: str
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    time_limit_s: float
    profile: str | None
    formulation: str
    baseline: str | None
    reference: str | None
    simulate_runs: int
    sweeps: tuple[Sweep, ...]


@dataclass(frozen=True)
class Cell:
    """One instance to generate (config and seed) and the methods to run on it."""

    config: GeneratorConfig | TraceConfig
    seed: int
    methods: tuple[str, ...]

    @property
    def key(self) -> str:
        return instance_key(self.config, self.seed)


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def instance_key(config: GeneratorConfig | TraceConfig, seed: int) -> str:
    """Hash of everything that determines a generated instance (for a trace instance, the
    contents of its trace and bounds files too)."""
    if isinstance(config, TraceConfig):
        return _digest({"trace": TRACE_VERSION, "config": config.to_dict(), "seed": seed,
                        "files": config.fingerprint()})
    return _digest({"generator": GENERATOR_VERSION, "config": config.to_dict(), "seed": seed})


def result_key(instance: str, method: str, bench: BenchConfig, fading: str) -> str:
    """Hash of everything that determines one method's result on one instance."""
    sim = bench.simulate_runs if fading == "rayleigh" else 0
    settings = {"instance": instance, "method": method, "profile": bench.profile,
                "time_limit_s": bench.time_limit_s, "simulate_runs": sim}
    if sim:
        settings["simulation"] = SIMULATION_VERSION
    if method in EXACT_METHODS and bench.formulation != "auto":
        settings["formulation"] = bench.formulation
    return _digest(settings)


# ------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------


def known_methods() -> tuple[str, ...]:
    """Exact backends and registered policies."""
    from siftopt.policies import POLICIES
    return (*EXACT_METHODS, *POLICIES)


def _methods(r: Reader, value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value):
        raise r.fail(path, f"must be a non-empty list of method names, got {value!r}")
    known = known_methods()
    for k, m in enumerate(value):
        if m not in known:
            raise r.fail(f"{path}[{k}]", f"unknown method {m!r} (known: {', '.join(known)})")
    if len(set(value)) != len(value):
        raise r.fail(path, "lists a method twice")
    return tuple(value)


def _seeds(r: Reader, value: Any, path: str = "seeds") -> tuple[int, ...]:
    if type(value) is int and 1 <= value <= MAX_SEEDS:
        return tuple(range(value))
    if isinstance(value, list) and 0 < len(value) <= MAX_SEEDS \
            and all(type(s) is int and 0 <= s <= MAX_SEED for s in value) \
            and len(set(value)) == len(value):
        return tuple(value)
    raise r.fail(path, f"must be a count in 1..{MAX_SEEDS} or a list of distinct integers in "
                       f"0..{MAX_SEED}, got {r.describe(value)}")


def _number(r: Reader, raw: dict[str, Any], key: str, default: float, *, integer: bool,
            low: float, high: float) -> float:
    value = raw.get(key, default)
    ok = type(value) is int or (not integer and type(value) is float)
    if not ok or not low <= value <= high:  # NaN fails both
        kind = "an integer" if integer else "a number"
        raise r.fail(key, f"must be {kind} in [{low:g}, {high:g}], got {r.describe(value)}")
    return value


def _optional_method(r: Reader, raw: dict[str, Any], key: str, default: str | None,
                     methods: tuple[str, ...], *, exact: bool = False) -> str | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str) or value not in methods:
        raise r.fail(key, f"must be one of the configured methods {list(methods)}, "
                          f"got {value!r}")
    if exact and value not in EXACT_METHODS:
        raise r.fail(key, f"must be an exact method ({', '.join(EXACT_METHODS)}), "
                          f"got {value!r}")
    return value


def _sweep(r: Reader, raw: Any, index: int, defaults: dict[str, Any],
           methods: tuple[str, ...], seeds: tuple[int, ...]) -> Sweep:
    path = f"sweep[{index}]"
    r.obj(raw, path, (), SWEEP_KEYS + ALL_PARAMETERS)
    name = raw.get("name", f"sweep{index}")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise r.fail(f"{path}.name", f"must be a name of letters, digits, - and _, "
                                     f"got {name!r}")
    axes: dict[str, list[Any]] = {}
    for key in ALL_PARAMETERS:
        if key not in raw:
            continue
        values = raw[key] if isinstance(raw[key], list) else [raw[key]]
        if not values:
            raise r.fail(f"{path}.{key}", "must not be an empty list")
        for k, v in enumerate(values):
            where = f"{path}.{key}[{k}]" if isinstance(raw[key], list) else f"{path}.{key}"
            if key not in TRACE_PARAMETERS:
                check_parameter(key, v, file=r.file, path=where)
        axes[key] = values
    x = raw.get("x")
    if not isinstance(x, str) or x not in axes:
        raise r.fail(f"{path}.x", f"must name a parameter that the sweep sets, one of "
                                  f"{sorted(axes)}, got {x!r}")
    sweep_methods = _methods(r, raw["methods"], f"{path}.methods") if "methods" in raw \
        else methods
    grid = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    configs: list[GeneratorConfig | TraceConfig] = []
    for point in grid:
        values = {**defaults, **point}
        if "trace" in values:
            configs.append(_trace_config(r, raw, values, path))
            continue
        for key in TRACE_PARAMETERS:
            if key in values:
                where = f"{path}.{key}" if key in raw else f"defaults.{key}"
                raise r.fail(where, "only with trace = \"TRACE.npz\" (a real model's router "
                                    "trace)")
        if "preset" not in values:
            raise r.fail(f"{path}.preset", "missing: set preset in [defaults] or the sweep")
        configs.append(config_from_mapping(values, file=r.file, prefix=f"{path}."))
    varying = tuple(k for k, v in axes.items() if len(v) > 1)
    sweep_seeds = _seeds(r, raw["seeds"], f"{path}.seeds") if "seeds" in raw else seeds
    return Sweep(name=name, x=x, description=str(raw.get("description", "")),
                 configs=tuple(configs), varying=varying or (x,), methods=sweep_methods,
                 seeds=sweep_seeds)


def _trace_config(r: Reader, raw: dict[str, Any], values: dict[str, Any], path: str
                  ) -> TraceConfig:
    """A trace sweep's grid point: preset-only keys are an error in the sweep and dropped from
    ``[defaults]``; file paths are relative to the configuration file."""
    for key in REPLACED_PARAMETERS:
        if key in raw:
            raise r.fail(f"{path}.{key}", "not used with trace (the gates and the bounds come "
                                          "from the real model)")
    kept = {k: v for k, v in values.items() if k not in REPLACED_PARAMETERS}
    return trace_config_from_mapping(kept, file=r.file, prefix=f"{path}.",
                                     base_dir=Path(r.file).parent)


def parse_bench_config(raw: dict[str, Any], file: str) -> BenchConfig:
    """Validate a parsed TOML document (errors name ``file`` and the key)."""
    r = Reader(file, syntax="TOML", base_dir=Path(file).parent)
    r.obj(raw, "", (), TOP_KEYS)
    if "methods" not in raw:
        raise r.fail("methods", "missing required key (a list of methods)")
    methods = _methods(r, raw["methods"], "methods")
    seeds = _seeds(r, raw.get("seeds", 1))
    defaults = r.obj(raw.get("defaults", {}), "defaults", (), ALL_PARAMETERS)
    for key, value in defaults.items():
        if key not in TRACE_PARAMETERS:
            check_parameter(key, value, file=file, path=f"defaults.{key}")
    sweeps_raw = raw.get("sweep")
    if not isinstance(sweeps_raw, list) or not sweeps_raw:
        raise r.fail("sweep", "missing: give at least one [[sweep]] table")
    sweeps = tuple(_sweep(r, s, i, defaults, methods, seeds)
                   for i, s in enumerate(sweeps_raw))
    names = [s.name for s in sweeps]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise r.fail(f"sweep[{i}].name", f"duplicate sweep name {name!r}")
    all_methods = tuple(dict.fromkeys(m for s in sweeps for m in s.methods))
    profile = raw.get("profile")
    if profile is not None:
        if not isinstance(profile, str):
            raise r.fail("profile", f"must be a profile name or path, got {profile!r}")
        if profile.endswith(".toml") or "/" in profile:  # a path: inside this file's folder
            profile = str(r.confined(profile, "profile", what="profile").resolve())
        try:
            load_profile(profile)
        except InputError as exc:
            raise r.fail("profile", exc.detail) from None
    exact = [m for m in all_methods if m in EXACT_METHODS]
    formulation = raw.get("formulation", "auto")
    if formulation not in FORMULATIONS:
        raise r.fail("formulation", f"must be one of {', '.join(FORMULATIONS)}, "
                                    f"got {formulation!r}")
    return BenchConfig(
        file=file, description=str(raw.get("description", "")), seeds=seeds,
        methods=all_methods,
        time_limit_s=float(_number(r, raw, "time_limit_s", DEFAULT_TIME_LIMIT_S,
                                   integer=False, low=1e-3, high=MAX_TIME_LIMIT_S)),
        profile=profile, formulation=formulation,
        baseline=_optional_method(r, raw, "baseline", "topk" if "topk" in all_methods
                                  else None, all_methods),
        reference=_optional_method(r, raw, "reference", exact[0] if exact else None,
                                   all_methods, exact=True),
        simulate_runs=int(_number(r, raw, "simulate_runs", 0, integer=True, low=0,
                                  high=MAX_SIMULATE_RUNS)),
        sweeps=sweeps)


def load_bench_config(path: str | Path) -> BenchConfig:
    """Read and validate a benchmark configuration file."""
    file = str(path)
    raw = Reader(file, syntax="TOML").load(path, "a benchmark configuration .toml file")
    return parse_bench_config(raw, file)


def cells(bench: BenchConfig) -> list[Cell]:
    """The distinct cells of every sweep × seed, each with the union of its sweeps' methods
    (in configuration order)."""
    found: dict[tuple[str, int], tuple[GeneratorConfig | TraceConfig, list[str]]] = {}
    for sweep in bench.sweeps:
        for config in sweep.configs:
            for seed in sweep.seeds:
                key = (instance_key(config, seed), seed)
                entry = found.setdefault(key, (config, []))
                entry[1].extend(m for m in sweep.methods if m not in entry[1])
    return [Cell(config=c, seed=s, methods=tuple(ms)) for (_, s), (c, ms) in found.items()]
