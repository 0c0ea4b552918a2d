"""Instances from a real model: recorded router outputs (a *trace*) and real bounds.

Where :mod:`.build` draws gates and expert similarity from presets, this module takes them
from a model: the router outputs it produced on real text (a trace ``.npz``), and β/δ from its
expert weights (the JSON of ``siftopt similarity``). The wireless side — node draws,
placement, latency and accuracy budgets — is the generator's, from the same seed streams
(:mod:`.wireless`, :mod:`.experts`, :func:`.build.accuracy_budgets`), so a trace instance and
a preset instance with the same seed and radio options see the same network.

**Trace file** (``.npz``; arrays, no pickles):

=====================  ===========  =====================================================
key                    shape        meaning
=====================  ===========  =====================================================
``router_logits``      (R, T, N)    router logits of T tokens at R MoE layers (softmax
                                    gives the gates), **or**
``router_probs``       (R, T, N)    router probabilities / scores (≥ 0), used as given
``top_k``              ()           experts per token K
``hidden_dim``         ()           model dimension d (payload S = d·b bits)
``ffn_dim``            ()           expert hidden dimension h (compute 6·d·h FLOP/token)
``layers``             (R,)         optional: the model layer of each row (default 0..R-1)
``renormalize_topk``   ()           optional bool: Mixtral-style top-K weights (default
                                    true)
=====================  ===========  =====================================================

**Bounds file**: one ``bounds`` block (``{"beta", "delta", ...}``, for a one-layer trace or
``--layer``), or the per-layer document of ``siftopt similarity --layer all``
(``{"layers": {"L": block, ...}}``).

**Which tokens.** The instance of seed s holds tokens ``start + s·L … start + (s+1)·L − 1``
of the chosen layer: consecutive windows, so seeds 0, 1, 2, … walk through the trace.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError
from siftopt.experiments.generate import experts, wireless
from siftopt.experiments.generate.build import (
    _NO_BUDGET,
    Generated,
    accuracy_budgets,
    batch_least_degradation,
    instance_document,
)
from siftopt.experiments.generate.config import CHECKS, check_parameter
from siftopt.experiments.generate.presets import SCENARIOS, Architecture
from siftopt.experiments.generate.routing import softmax
from siftopt.io.instance_file import instance_from_document

#: Generator parameters that apply to trace instances (the radio side and the budgets).
SHARED_PARAMETERS: tuple[str, ...] = (
    "scenario", "tokens", "nodes", "fading", "power_control", "accuracy", "raise_budgets",
    "budget", "latency_scale", "latency_s", "placement", "outage_max", "max_candidates",
    "bits_per_element")
#: Generator parameters that a trace replaces (architecture, similarity, routing).
REPLACED_PARAMETERS: tuple[str, ...] = ("preset", "similarity", "router_entropy",
                                        "token_correlation")
TRACE_PARAMETERS: tuple[str, ...] = ("trace", "bounds", "layer", "start")
TRACE_KEYS: tuple[str, ...] = ("router_logits", "router_probs", "top_k", "hidden_dim",
                               "ffn_dim", "layers", "renormalize_topk")


@dataclass(frozen=True)
class TraceConfig:
    """Everything that determines a trace instance, together with its seed.

    ``trace`` and ``bounds`` are file paths; ``layer`` the model layer (None: the trace's
    only layer); ``start`` the first token of seed 0's window. The other attributes are
    :class:`~siftopt.experiments.generate.config.GeneratorConfig`'s, same units and defaults.
    """

    trace: str
    bounds: str
    layer: int | None = None
    start: int = 0
    scenario: str = "urban"
    tokens: int = 1
    nodes: int = 4
    fading: str = "slow"
    power_control: str = "adaptive"
    accuracy: float = 0.2
    raise_budgets: bool = True
    budget: str = "token"
    latency_scale: float = 1.5
    latency_s: float | None = None
    placement: str = "round-robin"
    outage_max: float = 0.1
    max_candidates: int | None = None
    bits_per_element: int = 16

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def preset(self) -> str:
        """A label in place of a preset name (for summaries): ``trace:<file stem>[/layer L]``."""
        layer = "" if self.layer is None else f"/layer {self.layer}"
        return f"trace:{Path(self.trace).stem}{layer}"

    def fingerprint(self) -> str:
        """SHA-256 of the trace and bounds files' contents (so results follow the data)."""
        return _digest(self.trace) + _digest(self.bounds)


def _digest(path: str) -> str:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    return hashlib.sha256(data).hexdigest()[:16]


def trace_config_from_mapping(values: dict[str, Any], *, file: str | None = None,
                              prefix: str = "", base_dir: Path | None = None) -> TraceConfig:
    """A validated :class:`TraceConfig`; paths relative to ``base_dir`` when given."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key in ("trace", "bounds"):
            if not isinstance(value, str) or not value:
                raise InputError(f"must be a file path, got {value!r}", file=file, path=where)
            path = Path(value)
            out[key] = str(base_dir / path if base_dir is not None and not path.is_absolute()
                           else path)
        elif key in ("layer", "start"):
            if value is not None and (type(value) is not int or value < 0):
                raise InputError(f"must be an integer >= 0, got {value!r}", file=file,
                                 path=where)
            if value is not None or key == "layer":
                out[key] = value
        elif key in SHARED_PARAMETERS:
            check_parameter(key, value, file=file, path=where)
            out[key] = float(value) if isinstance(value, int) and key in (
                "accuracy", "latency_scale", "latency_s", "outage_max") else value
        else:
            raise InputError(f"not a trace-instance parameter (allowed: "
                             f"{', '.join(TRACE_PARAMETERS + SHARED_PARAMETERS)})",
                             file=file, path=where)
    for key in ("trace", "bounds"):
        if key not in out:
            raise InputError("missing required parameter", file=file, path=f"{prefix}{key}")
    assert set(CHECKS) >= set(SHARED_PARAMETERS)
    return TraceConfig(**out)


# ------------------------------------------------------------------------------------------
# Reading traces and bounds
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Trace:
    """A validated trace: gates (R, T, N) ≥ 0 and the model facts."""

    file: str
    gates: np.ndarray
    layers: tuple[int, ...]
    top_k: int
    hidden_dim: int
    ffn_dim: int
    renormalize_topk: bool

    def row(self, layer: int | None) -> int:
        """The row of model layer ``layer`` (None: the only one)."""
        if layer is None:
            if len(self.layers) != 1:
                raise InputError(f"holds layers {list(self.layers)}: choose one with --layer "
                                 "(bench: layer)", file=self.file, path="layers")
            return 0
        if layer not in self.layers:
            raise InputError(f"has no layer {layer} (layers: {list(self.layers)})",
                             file=self.file, path="layers")
        return self.layers.index(layer)


def _scalar_int(arrays: dict[str, np.ndarray], key: str, file: str, low: int = 1) -> int:
    a = arrays[key]
    if a.shape != () or a.dtype.kind not in "iu" or int(a) < low:
        raise InputError(f"must be an integer scalar >= {low}, got {a!r}", file=file, path=key)
    return int(a)


@lru_cache(maxsize=8)
def _load_trace_cached(file: str, _mtime: float, _size: int) -> Trace:
    try:
        archive = np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        raise InputError("not a NumPy .npz archive", file=file) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise InputError("is a single .npy array, expected a trace .npz archive", file=file)
    from siftopt.io.reader import check_npz_memory

    check_npz_memory(file)  # the declared shapes, before any array is read
    with archive:
        try:
            arrays = {k: archive[k] for k in archive.files}
        except (ValueError, OSError, zipfile.BadZipFile, MemoryError) as exc:
            raise InputError(f"cannot read an array: {exc}", file=file) from None
    unknown = sorted(set(arrays) - set(TRACE_KEYS))
    if unknown:
        raise InputError(f"unknown array (allowed: {', '.join(TRACE_KEYS)})", file=file,
                         path=unknown[0])
    given = [k for k in ("router_logits", "router_probs") if k in arrays]
    if len(given) != 1:
        raise InputError("give exactly one of router_logits and router_probs (R, T, N)",
                         file=file, path="router_logits")
    for key in ("top_k", "hidden_dim", "ffn_dim"):
        if key not in arrays:
            raise InputError("missing (an integer scalar)", file=file, path=key)
    key = given[0]
    z = arrays[key]
    if z.ndim != 3 or 0 in z.shape or z.dtype.kind != "f":
        raise InputError(f"must be a float array (R layers, T tokens, N experts), got "
                         f"{z.dtype} {z.shape}", file=file, path=key)
    z = z.astype(np.float64)
    if not np.isfinite(z).all():
        where = [int(i) for i in np.argwhere(~np.isfinite(z))[0]]
        raise InputError(f"contains {z[tuple(where)]!r} at index {where}; all entries must be "
                         "finite", file=file, path=key)
    if key == "router_probs" and (z < 0).any():
        where = [int(i) for i in np.argwhere(z < 0)[0]]
        raise InputError(f"must be >= 0, got {z[tuple(where)]!r} at index {where}",
                         file=file, path=key)
    r, _, n = z.shape
    top_k = _scalar_int(arrays, "top_k", file)
    if top_k > n:
        raise InputError(f"must be <= the number of experts N = {n}, got {top_k}", file=file,
                         path="top_k")
    layers = tuple(range(r))
    if "layers" in arrays:
        la = arrays["layers"]
        if la.shape != (r,) or la.dtype.kind not in "iu" or (la < 0).any() \
                or len(set(la.tolist())) != r:
            raise InputError(f"must be {r} distinct layer indices >= 0, got {la!r}",
                             file=file, path="layers")
        layers = tuple(int(v) for v in la)
    renorm = True
    if "renormalize_topk" in arrays:
        rn = arrays["renormalize_topk"]
        if rn.shape != () or rn.dtype.kind != "b":
            raise InputError(f"must be a boolean scalar, got {rn!r}", file=file,
                             path="renormalize_topk")
        renorm = bool(rn)
    gates = softmax(z.reshape(-1, n)).reshape(z.shape) if key == "router_logits" else z
    gates.setflags(write=False)
    return Trace(file=file, gates=gates, layers=layers, top_k=top_k,
                 hidden_dim=_scalar_int(arrays, "hidden_dim", file),
                 ffn_dim=_scalar_int(arrays, "ffn_dim", file), renormalize_topk=renorm)


def load_trace(file: str) -> Trace:
    """Read and validate a trace (cached per file version)."""
    p = Path(file)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    return _load_trace_cached(file, st.st_mtime, st.st_size)


def load_layer_bounds(file: str, layer: int, num_experts: int) -> tuple[np.ndarray, np.ndarray,
                                                                         dict[str, Any]]:
    """(β (N,), δ (N, N) with inf = not replaceable, facts) of ``layer`` from a bounds file."""
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}", file=file) from None
    if not isinstance(doc, dict):
        raise InputError("must be a JSON object (a bounds block or {\"layers\": ...})",
                         file=file)
    where = ""
    if "layers" in doc:
        layers = doc["layers"]
        if not isinstance(layers, dict) or str(layer) not in layers:
            known = sorted(layers, key=lambda s: int(s) if s.isdigit() else -1) \
                if isinstance(layers, dict) else []
            raise InputError(f"has no bounds for layer {layer} (layers: {known})", file=file,
                             path="layers")
        doc, where = layers[str(layer)], f"layers.{layer}."
    if not isinstance(doc, dict) or "beta" not in doc or "delta" not in doc:
        raise InputError("missing beta and delta", file=file, path=where.rstrip(".") or None)
    try:
        beta = np.asarray(doc["beta"], dtype=np.float64)
        delta = np.asarray([[np.inf if v is None else v for v in row] for row in doc["delta"]],
                           dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("must be numbers (delta: null = not replaceable)", file=file,
                         path=f"{where}beta") from None
    if beta.shape != (num_experts,) or not np.isfinite(beta).all() or (beta < 0).any():
        raise InputError(f"must be {num_experts} finite numbers >= 0 (the trace has "
                         f"{num_experts} experts), got shape {beta.shape}", file=file,
                         path=f"{where}beta")
    if delta.shape != (num_experts, num_experts) or np.isnan(delta).any() or (delta < 0).any():
        raise InputError(f"must be an {num_experts}x{num_experts} matrix of numbers >= 0 or "
                         f"null, got shape {delta.shape}", file=file, path=f"{where}delta")
    facts = {k: doc.get(k) for k in ("kind", "method", "radius", "min_radius") if k in doc}
    return beta, delta, facts


def expert_clusters(beta: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Similarity clusters for the ``cluster`` placement: average-linkage clustering of the
    symmetrised relative dissimilarity ``min(δ_ij, δ_ji)/min(β_i, β_j)`` into about
    :data:`experts.CLUSTER_SIZE` experts per cluster (at least 2 clusters)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = beta.size
    count = max(2, round(n / experts.CLUSTER_SIZE))
    if n <= count:
        return np.arange(n, dtype=np.int64)
    sym = np.minimum(delta, delta.T)
    scale = np.maximum(np.minimum(beta[:, None], beta[None, :]), 1e-300)
    dist = np.where(np.isfinite(sym), sym / scale, 1e6)
    np.fill_diagonal(dist, 0.0)
    labels = fcluster(linkage(squareform(dist, checks=False), "average"), count, "maxclust")
    return (labels - 1).astype(np.int64)


# ------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------


def trace_name(config: TraceConfig, seed: int, layer: int) -> str:
    stem = Path(config.trace).stem
    return (f"{stem}-layer{layer}-{config.scenario}-L{config.tokens}-M{config.nodes}-"
            f"{config.fading}-{config.power_control}-s{seed}")


def generate_from_trace(config: TraceConfig, seed: int) -> Generated:
    """The instance of ``config`` with ``seed`` (deterministic) and its manifest facts."""
    trace = load_trace(config.trace)
    row = trace.row(config.layer)
    layer = trace.layers[row]
    total, n = trace.gates.shape[1], trace.gates.shape[2]
    first = config.start + seed * config.tokens
    if first + config.tokens > total:
        raise InputError(f"has {total} tokens; seed {seed} with {config.tokens} tokens from "
                         f"start {config.start} needs tokens {first}..{first + config.tokens - 1}"
                         f" (at most {max(0, (total - config.start) // config.tokens)} seeds)",
                         file=config.trace, path="router_logits")
    gates = trace.gates[row, first:first + config.tokens]
    beta, delta, bound_facts = load_layer_bounds(config.bounds, layer, n)
    delta = delta.copy()
    delta[delta >= beta[:, None]] = np.inf  # dominated by skipping: not replaceable
    np.fill_diagonal(delta, 0.0)
    arch = Architecture(name=f"trace:{Path(config.trace).name}", hf_id=config.trace,
                        num_experts=n, shared_experts=0, top_k=trace.top_k,
                        hidden_dim=trace.hidden_dim, ffn_dim=trace.ffn_dim, num_layers=1,
                        renormalize_topk=trace.renormalize_topk)
    scn = SCENARIOS[config.scenario]
    labels = expert_clusters(beta, delta)
    memory = experts.node_memory_gb(scn, config.nodes, seed)
    placement = experts.placement(config.placement, labels, config.nodes, memory, seed)
    draws = [wireless.draw_node(scn, seed, m) for m in range(1, config.nodes + 1)]
    nodes = [wireless.node_document(arch, scn, d) for d in draws]
    bits = float(arch.hidden_dim * config.bits_per_element)
    latency = config.latency_s
    if latency is None:
        latency = wireless.latency_budget_s(nodes, bits, config.tokens,
                                            wireless.noise_psd_dbm_per_hz(scn), config.fading,
                                            config.outage_max, config.latency_scale)
    name = trace_name(config, seed, layer)

    def document(accuracy: dict[str, Any]) -> dict[str, Any]:
        model = {"num_experts": n, "top_k": trace.top_k, "hidden_dim": trace.hidden_dim,
                 "bits_per_element": config.bits_per_element,
                 "renormalize_topk": trace.renormalize_topk}
        return instance_document(config, name=name, model=model, nodes=nodes,
                                 placement=placement, beta=beta, delta=delta, gates=gates,
                                 latency_s=latency, accuracy=accuracy)

    draft = instance_from_document(document({"eps_mean": _NO_BUDGET}), file=config.trace)
    skip_all = (draft.topk_weights * draft.beta[draft.topk_experts]).sum(axis=1)
    least = batch_least_degradation(draft)
    accuracy, raised = accuracy_budgets(config, skip_all, least)  # type: ignore[arg-type]
    inst = instance_from_document(document(accuracy), file=config.trace)
    facts = {"trace": config.trace, "bounds": config.bounds, "layer": layer,
             "first_token": first, "budgets_raised": raised,
             "bounds_kind": bound_facts.get("kind"), "bounds_method": bound_facts.get("method"),
             "distances_m": [round(d.distance_m, 1) for d in draws],
             "shadowing_db": [round(d.shadowing_db, 2) for d in draws],
             "memory_gb": [round(float(x), 1) for x in memory], "clusters": labels.tolist(),
             "useful_pairs": int(np.isfinite(delta).sum() - n)}
    return Generated(config=config, seed=seed, instance=inst, facts=facts)  # type: ignore[arg-type]


def write_trace_instances(config: TraceConfig, seeds: list[int], out_dir: str | Path
                          ) -> dict[str, Any]:
    """Generate and write one instance per seed into ``out_dir`` with ``manifest.json``
    (same files as ``siftopt generate`` with a preset); returns the manifest."""
    import time

    from siftopt.experiments.generate.output import SIDECAR_THRESHOLD, quick_checks
    from siftopt.io.instance_file import large_array_fields, save_instance
    from siftopt.version import __version__

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}",
                         file=str(out)) from None
    started = time.perf_counter()
    entries = []
    for seed in seeds:
        item = generate_from_trace(config, seed)
        inst = item.instance
        path = out / f"{inst.name}.json"
        large = large_array_fields(inst, SIDECAR_THRESHOLD)
        save_instance(inst, path, npz_fields=large or None)
        entry: dict[str, Any] = {"file": path.name, "name": inst.name, "seed": seed,
                                 "config": config.to_dict()}
        if large:
            entry["arrays"] = path.with_suffix(".npz").name
        entry.update(quick_checks(inst))
        entry.update(item.facts)
        entries.append(entry)
    manifest = {
        "description": "Instances written by `siftopt generate --trace`: gates from a recorded "
                       "router trace, bounds from the model's expert weights; every figure in "
                       "SI units (s, J, m, dB).",
        "generator": {"siftopt_version": __version__, "config": config.to_dict(),
                      "seeds": list(seeds),
                      "elapsed_s": round(time.perf_counter() - started, 3)},
        "instances": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n",
                                       encoding="utf-8")
    return manifest


def write_trace(path: str | Path, router_logits: np.ndarray, *, top_k: int, hidden_dim: int,
                ffn_dim: int, layers: list[int] | None = None, renormalize_topk: bool = True
                ) -> Path:
    """Write a trace file in the format above (router logits kept as float64)."""
    arrays: dict[str, Any] = {
        "router_logits": np.asarray(router_logits, dtype=np.float64),
        "top_k": np.int64(top_k), "hidden_dim": np.int64(hidden_dim),
        "ffn_dim": np.int64(ffn_dim), "renormalize_topk": np.bool_(renormalize_topk)}
    if layers is not None:
        arrays["layers"] = np.asarray(layers, dtype=np.int64)
    target = Path(path)
    try:
        with target.open("wb") as fh:
            np.savez(fh, **arrays)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", file=str(target)) from None
    return target


__all__ = ["REPLACED_PARAMETERS", "SHARED_PARAMETERS", "TRACE_KEYS", "TRACE_PARAMETERS",
           "Trace", "TraceConfig", "expert_clusters", "generate_from_trace", "load_layer_bounds",
           "load_trace", "trace_config_from_mapping", "trace_name", "write_trace",
           "write_trace_instances"]
