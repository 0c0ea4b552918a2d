"""Instance files: the strict JSON (+ ``.npz``) reader and the writer of :class:`Instance`.

The format is docs/model.md §7 (``siftopt_version: 1``). Every validation error is an
:class:`~siftopt.errors.InputError` whose message is one line naming the file and the field
path, e.g. ``inst.json: nodes[0].bandwidth_hz: must be > 0, got -1``; the checks shared
with other files are :class:`~siftopt.io.reader.Reader`'s. How the file wrote things is kept
in :class:`~siftopt.model.instance.FileFormat`, so that :func:`save_instance` reproduces it.

Hostile input: every number must lie in the accepted range below (docs/model.md §6 has the
table), chosen wide enough for any deployment and narrow enough that link rates, load caps and
energy tables are finite doubles; the declared sizes are checked against the machine's memory
before any large array is read (:func:`instance_memory_bytes`); and the energy tables are
computed once at load (they are cached for the solvers), so that a combination of values that
still overflows is reported here, naming the node, and not later as an internal error.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.io.limits import check_memory
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
from siftopt.model.physics import db_to_linear, dbm_per_hz_to_w_per_hz, energy_tables

SCHEMA_VERSION = 1
TOP_KEYS_REQUIRED = ("siftopt_version", "name", "model", "placement", "bounds", "nodes",
                     "channel", "power_control", "latency_s", "accuracy", "tokens")
TOP_KEYS_OPTIONAL = ("energy_weights", "arrays")
NODE_KEYS_REQUIRED = ("bandwidth_hz", "power_up_w", "power_down_w", "compute_s_per_token")
NODE_KEYS_OPTIONAL = ("gain_up", "gain_up_db", "gain_down", "gain_down_db",
                      "compute_j_per_token")
#: Optional provenance keys of the bounds block (written by ``siftopt similarity``).
BOUNDS_INFO_KEYS = ("kind", "method", "radius", "min_radius")

# Accepted ranges (docs/model.md §6). Units: Hz, W, W/Hz, s, J; gains are power ratios.
MAX_EXPERTS = 65_536
MAX_HIDDEN_DIM = 2**24
MAX_BITS_PER_ELEMENT = 64
BANDWIDTH_HZ = (1.0, 1e12)
GAIN = (1e-25, 1e5)  # linear power gain
GAIN_DB = (-250.0, 50.0)
NOISE_W_PER_HZ = (1e-28, 1e-13)
NOISE_DBM_PER_HZ = (-250.0, -100.0)
POWER_W = (1e-15, 1e6)
MAX_COMPUTE_S_PER_TOKEN = 1e6
MAX_COMPUTE_J_PER_TOKEN = 1e6
MAX_LATENCY_S = 1e6
MAX_ENERGY_WEIGHT = 1e6
#: β and δ (dimensionless; analytic bounds of real experts are O(1)..O(100)).
MAX_CONSTANT = 1e6
#: Gate values and top-K weights (dimensionless; softmax or scaled sigmoid scores are O(1)).
#: With MAX_CONSTANT, a slot's degradation w·c stays below 1e9, well inside what the exact
#: backends accept as a coefficient (HiGHS refuses matrix values above 1e15).
MAX_GATE = 1e3
#: Accuracy budgets ε_t, ε̄ (dimensionless). Far above any reachable degradation (at most
#: K·MAX_GATE·MAX_CONSTANT); the generator writes 1e300 as "no budget" into its drafts.
MAX_BUDGET = 1e300


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
    n_experts = r.integer(model["num_experts"], "model.num_experts", ge=1, le=MAX_EXPERTS)
    top_k = r.integer(model["top_k"], "model.top_k", ge=1)
    if top_k > n_experts:
        raise r.fail("model.top_k", f"must be <= model.num_experts ({n_experts}), got {top_k}")
    hidden_dim = r.integer(model["hidden_dim"], "model.hidden_dim", ge=1, le=MAX_HIDDEN_DIM)
    bits = r.integer(model["bits_per_element"], "model.bits_per_element", ge=1,
                     le=MAX_BITS_PER_ELEMENT)
    renormalize = r.boolean(model["renormalize_topk"], "model.renormalize_topk")
    _check_memory(r, doc, n_experts, top_k)

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
    latency = r.number(doc["latency_s"], "latency_s", gt=0, le=MAX_LATENCY_S)
    weights_given = "energy_weights" in doc
    w_up, w_down = 1.0, 1.0
    if weights_given:
        ew = r.obj(doc["energy_weights"], "energy_weights", ("up", "down"))
        w_up = r.number(ew["up"], "energy_weights.up", ge=0, le=MAX_ENERGY_WEIGHT)
        w_down = r.number(ew["down"], "energy_weights.down", ge=0, le=MAX_ENERGY_WEIGHT)

    topk_experts, topk_weights, gates = _read_tokens(r, doc["tokens"], n_experts, top_k,
                                                     renormalize)
    n_tokens = topk_experts.shape[0]
    eps_token, eps_scalar, eps_mean = _read_accuracy(r, doc["accuracy"], n_tokens)

    inst = Instance(
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
    _check_derived(r, inst)
    return inst


def instance_memory_bytes(num_experts: int, top_k: int, num_tokens: int, num_nodes: int, *,
                          gates: bool, max_candidates: int | None = None
                          ) -> dict[str, int]:
    """Bytes that reading an instance of these sizes and deriving its problem data need, by
    what needs them (an estimate from the declared sizes, made before anything large is read).

    * ``bounds.delta``: N² doubles, three times (the array read, the instance's copy, a
      temporary of a check);
    * ``tokens.gates``: L·N doubles, three times (when the file gives gate rows);
    * ``tokens``: the top-K experts and weights, L·K·16 bytes, twice;
    * ``options``: the problem data's actions, L·K·(R + 2) options of 7 arrays of 8 bytes,
      with R = ``max_candidates`` (default N − 1) replacement candidates;
    * ``nodes``: energy tables and loads, (L + 1)·M·25 bytes.
    """
    n, k, length, m = num_experts, top_k, num_tokens, num_nodes
    r = n - 1 if max_candidates is None else min(max_candidates, n - 1)
    return {"bounds.delta": 3 * 8 * n * n, "tokens.gates": 3 * 8 * length * n if gates else 0,
            "tokens": 2 * 16 * length * k, "options": 56 * length * k * (r + 2) + 8 * n * r,
            "nodes": 25 * (length + 1) * m}


def _check_memory(r: Reader, doc: dict[str, Any], n: int, k: int) -> None:
    """Refuse, before reading any large array, an instance whose declared sizes (N, K, and
    L as the token rows or their ``.npz`` header say) need more memory than there is."""
    tokens = doc["tokens"] if isinstance(doc["tokens"], dict) else {}
    length = 0
    for key in ("gates", "topk_experts", "topk_weights"):
        value = tokens.get(key)
        rows = len(value) if isinstance(value, list) else r.npz_rows(value)
        if rows is not None:
            length = rows
            break
    bounds = doc["bounds"] if isinstance(doc["bounds"], dict) else {}
    r_max = bounds.get("max_candidates")
    nodes = len(doc["nodes"]) if isinstance(doc["nodes"], list) else 0
    need = instance_memory_bytes(n, k, length, nodes, gates="gates" in tokens,
                                 max_candidates=r_max if type(r_max) is int and r_max >= 0
                                 else None)
    largest = max(need, key=need.__getitem__)
    sizes = f"N = {n} experts, K = {k}, L = {length} tokens, M = {nodes} nodes"
    where = {"bounds.delta": "model.num_experts", "tokens.gates": "tokens.gates",
             "tokens": "tokens", "options": "tokens", "nodes": "nodes"}[largest]
    check_memory(sum(need.values()), f"{sizes}: the arrays and derived data (most of it "
                                     f"{largest})", file=r.file, path=where)


def _node_values(inst: Instance, m: int) -> str:
    node = inst.nodes[m]
    return (f"bandwidth_hz={node.bandwidth_hz:g}, gain_up={node.gain_up:g}, "
            f"gain_down={node.gain_down:g}, power_up_w={node.power_up_w:g}, "
            f"power_down_w={node.power_down_w:g}, compute_s_per_token="
            f"{node.compute_s_per_token:g} with channel noise {inst.noise_psd_w_per_hz:g} W/Hz, "
            f"latency_s={inst.latency_s:g}, payload {inst.payload_bits} bits")


def _check_derived(r: Reader, inst: Instance) -> None:
    """Compute the energy tables now (cached for the solvers): a computation that overflows,
    or a rate, time or energy that is not a finite double, is an InputError naming the node
    and its fields."""
    try:
        with np.errstate(all="ignore"):
            tables = energy_tables(inst)
    except (ArithmeticError, ValueError, AssertionError) as exc:
        failing, reason = 0, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for m, node in enumerate(inst.nodes):
            try:
                with np.errstate(all="ignore"):
                    energy_tables(inst.replace(nodes=(node,)))
            except (ArithmeticError, ValueError, AssertionError):
                failing = m
                break
        raise r.fail(f"nodes[{failing}]", f"the energy table cannot be computed from "
                                          f"{_node_values(inst, failing)}: {reason}") from None
    for m, table in enumerate(tables):
        checks = {"uplink rate": table.rate_up_bps, "downlink rate": table.rate_down_bps,
                  "time per token": table.seconds_per_token,
                  "full-power energy per token": table.full_power_j_per_token,
                  "largest table energy": float(np.max(table.energy_j, initial=0.0))}
        if not (checks["uplink rate"] > 0 and checks["downlink rate"] > 0
                and checks["time per token"] > 0):
            checks = {k: v if v > 0 else math.nan for k, v in checks.items()}
        for what, value in checks.items():
            if not math.isfinite(value):
                raise r.fail(f"nodes[{m}]", f"the {what} is {value!r}, out of range, for "
                                            f"{_node_values(inst, m)}")


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
                gains[direction] = (r.number(obj[lin], f"{p}.{lin}", ge=GAIN[0], le=GAIN[1]),
                                    None)
            elif db in obj:
                g_db = r.number(obj[db], f"{p}.{db}", ge=GAIN_DB[0], le=GAIN_DB[1])
                gain = db_to_linear(g_db)
                if not gain > 0 or not math.isfinite(gain):
                    raise r.fail(f"{p}.{db}", f"gives a linear gain of {gain!r}; out of range")
                gains[direction] = (gain, g_db)
            else:
                raise r.fail(f"{p}.{lin}", f"missing required field (or give {db})")
        nodes.append(Node(
            bandwidth_hz=r.number(obj["bandwidth_hz"], f"{p}.bandwidth_hz",
                                  ge=BANDWIDTH_HZ[0], le=BANDWIDTH_HZ[1]),
            gain_up=gains["up"][0], gain_down=gains["down"][0],
            power_up_w=r.number(obj["power_up_w"], f"{p}.power_up_w", ge=POWER_W[0],
                                le=POWER_W[1]),
            power_down_w=r.number(obj["power_down_w"], f"{p}.power_down_w", ge=POWER_W[0],
                                  le=POWER_W[1]),
            compute_s_per_token=r.number(obj["compute_s_per_token"],
                                         f"{p}.compute_s_per_token", ge=0,
                                         le=MAX_COMPUTE_S_PER_TOKEN),
            compute_j_per_token=r.number(obj.get("compute_j_per_token", 0.0),
                                         f"{p}.compute_j_per_token", ge=0,
                                         le=MAX_COMPUTE_J_PER_TOKEN),
            gain_up_db=gains["up"][1], gain_down_db=gains["down"][1],
            compute_j_given="compute_j_per_token" in obj,
        ))
    return tuple(nodes)


def _read_bounds(r: Reader, value: Any, n: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    obj = r.obj(value, "bounds", ("beta", "delta"), ("max_candidates", *BOUNDS_INFO_KEYS))
    beta = r.array(obj["beta"], "bounds.beta", (n,))
    r.within(beta, "bounds.beta", ge=0, le=MAX_CONSTANT)
    delta = r.array(obj["delta"], "bounds.delta", (n, n), allow_null=True)
    r.within(delta, "bounds.delta", ge=0, le=MAX_CONSTANT, inf_ok=True)
    diag = np.diagonal(delta)
    if (diag != 0).any():
        i = int(np.flatnonzero(diag != 0)[0])
        shown = "null" if math.isinf(diag[i]) else repr(float(diag[i]))
        raise r.fail(f"bounds.delta[{i}][{i}]", f"the diagonal must be 0, got {shown}")
    max_candidates = None
    if "max_candidates" in obj:
        max_candidates = r.integer(obj["max_candidates"], "bounds.max_candidates", ge=0,
                                   le=MAX_EXPERTS)
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
        noise = r.number(obj["noise_psd_w_per_hz"], "channel.noise_psd_w_per_hz",
                         ge=NOISE_W_PER_HZ[0], le=NOISE_W_PER_HZ[1])
    elif "noise_psd_dbm_per_hz" in obj:
        dbm = r.number(obj["noise_psd_dbm_per_hz"], "channel.noise_psd_dbm_per_hz",
                       ge=NOISE_DBM_PER_HZ[0], le=NOISE_DBM_PER_HZ[1])
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
        r.within(gates, "tokens.gates", ge=0, le=MAX_GATE)
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
    r.within(weights, "tokens.topk_weights", ge=0, le=MAX_GATE)
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
            eps_token = np.full(n_tokens, r.number(raw, "accuracy.eps_token", ge=0,
                                                   le=MAX_BUDGET))
        else:
            eps_token = r.array(raw, "accuracy.eps_token", (n_tokens,))
            r.within(eps_token, "accuracy.eps_token", ge=0, le=MAX_BUDGET)
    eps_mean = None
    if "eps_mean" in obj:
        eps_mean = r.number(obj["eps_mean"], "accuracy.eps_mean", ge=0, le=MAX_BUDGET)
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
        sidecar.parent.mkdir(parents=True, exist_ok=True)  # the sidecar may be in a subfolder
        np.savez_compressed(sidecar, **arrays)
        doc = {**doc, "arrays": sidecar.relative_to(path.parent).as_posix()}
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
