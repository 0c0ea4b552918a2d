"""Instance files: the strict JSON (+ ``.npz``) reader and the writer of :class:`Instance`.

The format is docs/model.md §7 (``siftopt_version: 1``). Every validation error is an
:class:`~siftopt.errors.InputError` whose message is one line naming the file and the field
path, e.g. ``inst.json: nodes[0].bandwidth_hz: must be > 0, got -1``; the checks shared
with other files are :class:`~siftopt.io.reader.Reader`'s. How the file wrote things is kept
in :class:`~siftopt.model.instance.FileFormat`, so that :func:`save_instance` reproduces it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.io.reader import Reader, first_true, is_number
from siftopt.model.instance import (
    CSI_MODES,
    FADING_MODES,
    POWER_MODES,
    FileFormat,
    Instance,
    Node,
    topk_from_gates,
)
from siftopt.model.physics import db_to_linear, dbm_per_hz_to_w_per_hz

SCHEMA_VERSION = 1
TOP_KEYS_REQUIRED = ("siftopt_version", "name", "model", "placement", "bounds", "nodes",
                     "channel", "power_control", "latency_s", "accuracy", "tokens")
TOP_KEYS_OPTIONAL = ("energy_weights", "arrays")
NODE_KEYS_REQUIRED = ("bandwidth_hz", "power_up_w", "power_down_w", "compute_s_per_token")
NODE_KEYS_OPTIONAL = ("gain_up", "gain_up_db", "gain_down", "gain_down_db",
                      "compute_j_per_token")
#: Optional provenance keys of the bounds block (written by ``siftopt similarity``).
BOUNDS_INFO_KEYS = ("kind", "method", "radius", "min_radius")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load_instance(path: str | os.PathLike[str]) -> Instance:
    """Read and validate an instance file (JSON, with an optional ``.npz`` sidecar)."""
    path = Path(path)
    r = Reader(str(path), base_dir=path.parent)
    document = r.load(path, "an instance .json file")
    return _instance(r, document)


def instance_from_document(document: Any, *, file: str = "<instance>",
                           base_dir: str | os.PathLike[str] = ".") -> Instance:
    """Validate a parsed JSON document and build the :class:`Instance`."""
    return _instance(Reader(file, base_dir=base_dir), document)


def _instance(r: Reader, document: Any) -> Instance:
    doc = r.obj(document, "", TOP_KEYS_REQUIRED, TOP_KEYS_OPTIONAL)
    version = doc["siftopt_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise r.fail("siftopt_version", f"must be {SCHEMA_VERSION}, got {r.describe(version)}")
    name = r.string(doc["name"], "name", nonempty=True)
    if "arrays" in doc:
        r.load_npz(doc["arrays"])

    model = r.obj(doc["model"], "model",
                  ("num_experts", "top_k", "hidden_dim", "bits_per_element", "renormalize_topk"))
    n_experts = r.integer(model["num_experts"], "model.num_experts", ge=1)
    top_k = r.integer(model["top_k"], "model.top_k", ge=1)
    if top_k > n_experts:
        raise r.fail("model.top_k", f"must be <= model.num_experts ({n_experts}), got {top_k}")
    hidden_dim = r.integer(model["hidden_dim"], "model.hidden_dim", ge=1)
    bits = r.integer(model["bits_per_element"], "model.bits_per_element", ge=1)
    renormalize = r.boolean(model["renormalize_topk"], "model.renormalize_topk")

    nodes = _read_nodes(r, doc["nodes"])
    n_nodes = len(nodes)

    placement = r.array(doc["placement"], "placement", (n_experts,), integer=True)
    bad = (placement < 0) | (placement > n_nodes)
    if bad.any():
        i = first_true(bad)[0]
        raise r.fail(f"placement[{i}]", f"node {placement[i]} does not exist "
                                        f"(nodes are 0..{n_nodes}, 0 = source)")

    beta, delta, max_candidates = _read_bounds(r, doc["bounds"], n_experts)
    bounds_info = _read_bounds_info(r, doc["bounds"])
    noise, noise_dbm, fading, outage_max, csi, csi_given = _read_channel(r, doc["channel"])
    power_control = r.choice(doc["power_control"], "power_control", POWER_MODES)
    latency = r.number(doc["latency_s"], "latency_s", gt=0)
    weights_given = "energy_weights" in doc
    w_up, w_down = 1.0, 1.0
    if weights_given:
        ew = r.obj(doc["energy_weights"], "energy_weights", ("up", "down"))
        w_up = r.number(ew["up"], "energy_weights.up", ge=0)
        w_down = r.number(ew["down"], "energy_weights.down", ge=0)

    topk_experts, topk_weights, gates = _read_tokens(r, doc["tokens"], n_experts, top_k,
                                                     renormalize)
    n_tokens = topk_experts.shape[0]
    eps_token, eps_scalar, eps_mean = _read_accuracy(r, doc["accuracy"], n_tokens)

    return Instance(
        name=name, num_experts=n_experts, top_k=top_k, hidden_dim=hidden_dim,
        bits_per_element=bits, renormalize_topk=renormalize, placement=placement, beta=beta,
        delta=delta, max_candidates=max_candidates, nodes=nodes, noise_psd_w_per_hz=noise,
        fading=fading, outage_max=outage_max, csi=csi, power_control=power_control,
        latency_s=latency, eps_token=eps_token, eps_mean=eps_mean, energy_weight_up=w_up,
        energy_weight_down=w_down, topk_experts=topk_experts, topk_weights=topk_weights,
        gates=gates,
        source=FileFormat(
            noise_psd_dbm_per_hz=noise_dbm, eps_token_scalar=eps_scalar, csi_given=csi_given,
            energy_weights_given=weights_given, arrays_file=doc.get("arrays"),
            npz_fields=tuple(r.npz_fields), bounds_info=bounds_info),
    )


def _read_nodes(r: Reader, value: Any) -> tuple[Node, ...]:
    if not isinstance(value, list):
        raise r.fail("nodes", f"must be a list of node objects, got {r.describe(value)}")
    nodes = []
    for m, raw in enumerate(value):
        p = f"nodes[{m}]"
        obj = r.obj(raw, p, NODE_KEYS_REQUIRED, NODE_KEYS_OPTIONAL)
        gains = {}
        for direction in ("up", "down"):
            lin, db = f"gain_{direction}", f"gain_{direction}_db"
            if lin in obj and db in obj:
                raise r.fail(f"{p}.{db}", f"give either {lin} or {db}, not both")
            if lin in obj:
                gains[direction] = (r.number(obj[lin], f"{p}.{lin}", gt=0), None)
            elif db in obj:
                g_db = r.number(obj[db], f"{p}.{db}")
                gain = db_to_linear(g_db)
                if not gain > 0 or not math.isfinite(gain):
                    raise r.fail(f"{p}.{db}", f"gives a linear gain of {gain!r}; out of range")
                gains[direction] = (gain, g_db)
            else:
                raise r.fail(f"{p}.{lin}", f"missing required field (or give {db})")
        nodes.append(Node(
            bandwidth_hz=r.number(obj["bandwidth_hz"], f"{p}.bandwidth_hz", gt=0),
            gain_up=gains["up"][0], gain_down=gains["down"][0],
            power_up_w=r.number(obj["power_up_w"], f"{p}.power_up_w", gt=0),
            power_down_w=r.number(obj["power_down_w"], f"{p}.power_down_w", gt=0),
            compute_s_per_token=r.number(obj["compute_s_per_token"],
                                         f"{p}.compute_s_per_token", ge=0),
            compute_j_per_token=r.number(obj.get("compute_j_per_token", 0.0),
                                         f"{p}.compute_j_per_token", ge=0),
            gain_up_db=gains["up"][1], gain_down_db=gains["down"][1],
            compute_j_given="compute_j_per_token" in obj,
        ))
    return tuple(nodes)


def _read_bounds(r: Reader, value: Any, n: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    obj = r.obj(value, "bounds", ("beta", "delta"), ("max_candidates", *BOUNDS_INFO_KEYS))
    beta = r.array(obj["beta"], "bounds.beta", (n,))
    bad = ~(beta >= 0) | ~np.isfinite(beta)
    if bad.any():
        i = first_true(bad)[0]
        raise r.fail(f"bounds.beta[{i}]", f"must be a finite number >= 0, got {beta[i]!r}")
    delta = r.array(obj["delta"], "bounds.delta", (n, n), allow_null=True)
    bad = ~(delta >= 0)
    if bad.any():
        i, j = first_true(bad)
        raise r.fail(f"bounds.delta[{i}][{j}]", f"must be >= 0 or null, got {delta[i, j]!r}")
    diag = np.diagonal(delta)
    if (diag != 0).any():
        i = int(np.flatnonzero(diag != 0)[0])
        shown = "null" if math.isinf(diag[i]) else repr(float(diag[i]))
        raise r.fail(f"bounds.delta[{i}][{i}]", f"the diagonal must be 0, got {shown}")
    max_candidates = None
    if "max_candidates" in obj:
        max_candidates = r.integer(obj["max_candidates"], "bounds.max_candidates", ge=0)
    return beta, delta, max_candidates


def _read_bounds_info(r: Reader, value: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    info = []
    for key in BOUNDS_INFO_KEYS:
        if key not in value:
            continue
        raw = value[key]
        path = f"bounds.{key}"
        if key in ("kind", "method"):
            r.string(raw, path)
        elif raw is not None:
            raw = r.number(raw, path, gt=0) if key == "radius" else r.number(raw, path, ge=0)
        info.append((key, raw))
    return tuple(info)


def _read_channel(r: Reader, value: Any) -> tuple[float, float | None, str, float | None, str,
                                                   bool]:
    obj = r.obj(value, "channel", ("fading",),
                ("noise_psd_w_per_hz", "noise_psd_dbm_per_hz", "outage_max", "csi"))
    if "noise_psd_w_per_hz" in obj and "noise_psd_dbm_per_hz" in obj:
        raise r.fail("channel.noise_psd_dbm_per_hz",
                     "give either noise_psd_w_per_hz or noise_psd_dbm_per_hz, not both")
    dbm = None
    if "noise_psd_w_per_hz" in obj:
        noise = r.number(obj["noise_psd_w_per_hz"], "channel.noise_psd_w_per_hz", gt=0)
    elif "noise_psd_dbm_per_hz" in obj:
        dbm = r.number(obj["noise_psd_dbm_per_hz"], "channel.noise_psd_dbm_per_hz")
        noise = dbm_per_hz_to_w_per_hz(dbm)
        if not (noise > 0 and math.isfinite(noise)):
            raise r.fail("channel.noise_psd_dbm_per_hz", f"gives {noise!r} W/Hz; out of range")
    else:
        raise r.fail("channel.noise_psd_w_per_hz",
                     "missing required field (or give noise_psd_dbm_per_hz)")
    fading = r.choice(obj["fading"], "channel.fading", FADING_MODES)
    outage_max = None
    if "outage_max" in obj:
        outage_max = r.number(obj["outage_max"], "channel.outage_max", gt=0, lt=1)
    elif fading == "rayleigh":
        raise r.fail("channel.outage_max", "required when fading is 'rayleigh' (a number in "
                                           "(0, 1))")
    csi = "statistical"
    if "csi" in obj:
        csi = r.choice(obj["csi"], "channel.csi", CSI_MODES)
    return noise, dbm, fading, outage_max, csi, "csi" in obj


def _read_tokens(r: Reader, value: Any, n: int, k: int, renormalize: bool
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    obj = r.obj(value, "tokens", (), ("gates", "topk_experts", "topk_weights"))
    if "gates" in obj:
        for other in ("topk_experts", "topk_weights"):
            if other in obj:
                raise r.fail(f"tokens.{other}", "give either gates or topk_experts + "
                                                "topk_weights, not both")
        gates = r.array(obj["gates"], "tokens.gates", (None, n))
        if gates.shape[0] == 0:
            raise r.fail("tokens.gates", "must hold at least one token")
        bad = ~(gates >= 0) | ~np.isfinite(gates)
        if bad.any():
            t, i = first_true(bad)
            raise r.fail(f"tokens.gates[{t}][{i}]", f"must be a finite number >= 0, "
                                                   f"got {gates[t, i]!r}")
        experts, weights = topk_from_gates(gates, k, renormalize)
        if renormalize and not np.isfinite(weights).all():
            t = int(np.flatnonzero(~np.isfinite(weights).all(axis=1))[0])
            raise r.fail(f"tokens.gates[{t}]", "the top-K gates sum to 0, so they cannot be "
                                               "renormalised")
        return experts, weights, gates
    if "topk_experts" not in obj:
        raise r.fail("tokens.gates", "missing: give gates, or topk_experts + topk_weights")
    if "topk_weights" not in obj:
        raise r.fail("tokens.topk_weights", "missing required field (topk_experts needs it)")
    experts = r.array(obj["topk_experts"], "tokens.topk_experts", (None, k), integer=True)
    if experts.shape[0] == 0:
        raise r.fail("tokens.topk_experts", "must hold at least one token")
    bad = (experts < 0) | (experts >= n)
    if bad.any():
        t, s = first_true(bad)
        raise r.fail(f"tokens.topk_experts[{t}][{s}]", f"expert {experts[t, s]} does not "
                                                       f"exist (experts are 0..{n - 1})")
    sorted_rows = np.sort(experts, axis=1)
    dup = (sorted_rows[:, 1:] == sorted_rows[:, :-1]).any(axis=1)
    if dup.any():
        t = int(np.flatnonzero(dup)[0])
        raise r.fail(f"tokens.topk_experts[{t}]", f"duplicate expert indices in "
                                                  f"{experts[t].tolist()}")
    weights = r.array(obj["topk_weights"], "tokens.topk_weights", (experts.shape[0], k))
    bad = ~(weights >= 0) | ~np.isfinite(weights)
    if bad.any():
        t, s = first_true(bad)
        raise r.fail(f"tokens.topk_weights[{t}][{s}]", f"must be a finite number >= 0, "
                                                       f"got {weights[t, s]!r}")
    return experts, weights, None


def _read_accuracy(r: Reader, value: Any, n_tokens: int
                   ) -> tuple[np.ndarray | None, bool, float | None]:
    obj = r.obj(value, "accuracy", (), ("eps_token", "eps_mean"))
    if "eps_token" not in obj and "eps_mean" not in obj:
        raise r.fail("accuracy", "give eps_token, eps_mean or both (at least one budget)")
    eps_token, scalar = None, False
    if "eps_token" in obj:
        raw = obj["eps_token"]
        if is_number(raw):
            scalar = True
            eps_token = np.full(n_tokens, r.number(raw, "accuracy.eps_token", ge=0))
        else:
            eps_token = r.array(raw, "accuracy.eps_token", (n_tokens,))
            bad = ~(eps_token >= 0) | ~np.isfinite(eps_token)
            if bad.any():
                t = first_true(bad)[0]
                raise r.fail(f"accuracy.eps_token[{t}]", f"must be a finite number >= 0, "
                                                         f"got {eps_token[t]!r}")
    eps_mean = None
    if "eps_mean" in obj:
        eps_mean = r.number(obj["eps_mean"], "accuracy.eps_mean", ge=0)
    return eps_token, scalar, eps_mean


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def instance_to_document(inst: Instance, *, npz_fields: tuple[str, ...] | None = None
                         ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document of an instance, and the arrays that go to its ``.npz`` sidecar.

    ``npz_fields`` lists the field paths written as ``{"npz": key}`` with the path as key,
    e.g. ``"tokens.gates"`` (default: the fields and keys the instance was read with).
    """
    fmt = inst.source
    keys = dict(fmt.npz_fields) if npz_fields is None else {p: p for p in npz_fields}
    arrays: dict[str, np.ndarray] = {}

    def arr(path: str, a: np.ndarray, nullable: bool = False) -> Any:
        if path in keys:
            arrays[keys[path]] = np.array(a)
            return {"npz": keys[path]}
        if nullable:
            return [[None if math.isinf(x) else float(x) for x in row] for row in a.tolist()]
        return a.tolist()

    doc: dict[str, Any] = {"siftopt_version": SCHEMA_VERSION, "name": inst.name}
    doc["model"] = {"num_experts": inst.num_experts, "top_k": inst.top_k,
                    "hidden_dim": inst.hidden_dim, "bits_per_element": inst.bits_per_element,
                    "renormalize_topk": inst.renormalize_topk}
    doc["placement"] = arr("placement", inst.placement)
    bounds: dict[str, Any] = {"beta": arr("bounds.beta", inst.beta),
                              "delta": arr("bounds.delta", inst.delta, nullable=True)}
    if inst.max_candidates is not None:
        bounds["max_candidates"] = inst.max_candidates
    bounds.update(dict(fmt.bounds_info))
    doc["bounds"] = bounds
    doc["nodes"] = [_node_document(node) for node in inst.nodes]
    channel: dict[str, Any] = {}
    if fmt.noise_psd_dbm_per_hz is not None:
        channel["noise_psd_dbm_per_hz"] = fmt.noise_psd_dbm_per_hz
    else:
        channel["noise_psd_w_per_hz"] = inst.noise_psd_w_per_hz
    channel["fading"] = inst.fading
    if inst.outage_max is not None:
        channel["outage_max"] = inst.outage_max
    if fmt.csi_given or inst.csi != "statistical":
        channel["csi"] = inst.csi
    doc["channel"] = channel
    doc["power_control"] = inst.power_control
    doc["latency_s"] = inst.latency_s
    accuracy: dict[str, Any] = {}
    if inst.eps_token is not None:
        if fmt.eps_token_scalar and np.all(inst.eps_token == inst.eps_token[0]):
            accuracy["eps_token"] = float(inst.eps_token[0])
        else:
            accuracy["eps_token"] = arr("accuracy.eps_token", inst.eps_token)
    if inst.eps_mean is not None:
        accuracy["eps_mean"] = inst.eps_mean
    doc["accuracy"] = accuracy
    if fmt.energy_weights_given or (inst.energy_weight_up, inst.energy_weight_down) != (1, 1):
        doc["energy_weights"] = {"up": inst.energy_weight_up, "down": inst.energy_weight_down}
    if inst.gates is not None:
        doc["tokens"] = {"gates": arr("tokens.gates", inst.gates)}
    else:
        doc["tokens"] = {"topk_experts": arr("tokens.topk_experts", inst.topk_experts),
                         "topk_weights": arr("tokens.topk_weights", inst.topk_weights)}
    return doc, arrays


def _node_document(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"bandwidth_hz": node.bandwidth_hz}
    if node.gain_up_db is not None:
        out["gain_up_db"] = node.gain_up_db
    else:
        out["gain_up"] = node.gain_up
    if node.gain_down_db is not None:
        out["gain_down_db"] = node.gain_down_db
    else:
        out["gain_down"] = node.gain_down
    out["power_up_w"] = node.power_up_w
    out["power_down_w"] = node.power_down_w
    out["compute_s_per_token"] = node.compute_s_per_token
    if node.compute_j_given or node.compute_j_per_token != 0:
        out["compute_j_per_token"] = node.compute_j_per_token
    return out


def save_instance(inst: Instance, path: str | os.PathLike[str], *,
                  npz_fields: tuple[str, ...] | None = None) -> Path:
    """Write an instance file (and its ``.npz`` sidecar when some fields go there).

    The sidecar is named after the JSON file (``x.json`` → ``x.npz``). Returns the JSON path.
    """
    path = Path(path)
    doc, arrays = instance_to_document(inst, npz_fields=npz_fields)
    if arrays:
        arrays_file = inst.source.arrays_file
        sidecar = path.with_suffix(".npz") if npz_fields is not None or not arrays_file \
            else path.parent / arrays_file
        np.savez_compressed(sidecar, **arrays)
        doc = {**doc, "arrays": sidecar.name}
        # keep "arrays" right after "name" for readability
        doc = {k: doc[k] for k in ("siftopt_version", "name", "arrays")} | {
            k: v for k, v in doc.items() if k not in ("siftopt_version", "name", "arrays")}
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def large_array_fields(inst: Instance, threshold: int = 4096) -> tuple[str, ...]:
    """Field paths of arrays with more than ``threshold`` entries (candidates for a sidecar)."""
    fields = {"bounds.delta": inst.delta, "tokens.topk_experts": inst.topk_experts,
              "tokens.topk_weights": inst.topk_weights}
    if inst.gates is not None:
        fields = {"bounds.delta": inst.delta, "tokens.gates": inst.gates}
    return tuple(k for k, v in fields.items() if v.size > threshold)
