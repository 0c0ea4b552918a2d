"""Instance files: the typed, immutable :class:`Instance` and its strict JSON (+ ``.npz``) loader.

The format is docs/model.md §7 (``siftopt_version: 1``). Every validation error is an
:class:`~siftopt.errors.InputError` whose message is one line naming the file and the field
path, e.g. ``inst.json: nodes[0].bandwidth_hz: must be > 0, got -1``.

Conventions of the in-memory object:

* ``delta[i, j] = inf`` means "j cannot replace i" (``null`` in JSON, ``inf`` in an ``.npz``).
* ``topk_experts[t]`` lists the K experts of token t in router order (descending gate, ties
  toward the lower expert index when derived from gates); ``topk_weights[t]`` their weights.
* Gains and noise are kept in linear SI units (gain as a power ratio, noise in W/Hz); the
  ``*_db`` fields remember how the file wrote them, so that writing the instance back out
  reproduces the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError

SCHEMA_VERSION = 1
FADING_MODES = ("slow", "rayleigh")
CSI_MODES = ("statistical", "instantaneous")
POWER_MODES = ("fixed", "adaptive")


# --------------------------------------------------------------------------------------------
# The instance object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A remote edge node (node ids are 1..M in list order).

    Units: bandwidth in Hz, gains as linear power ratios, powers in W, compute time in s per
    token, compute energy in J per token.
    """

    bandwidth_hz: float
    gain_up: float
    gain_down: float
    power_up_w: float
    power_down_w: float
    compute_s_per_token: float
    compute_j_per_token: float = 0.0
    gain_up_db: float | None = None  # as written in the file, if given in dB
    gain_down_db: float | None = None
    compute_j_given: bool = False  # whether the file wrote compute_j_per_token


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Instance:
    """A validated siftopt instance (docs/model.md §1 and §7). Immutable."""

    name: str
    num_experts: int
    top_k: int
    hidden_dim: int
    bits_per_element: int
    renormalize_topk: bool
    placement: np.ndarray  # (N,) int, node of each expert, 0 = source
    beta: np.ndarray  # (N,) skip constants
    delta: np.ndarray  # (N, N) dissimilarity constants, inf = not replaceable
    max_candidates: int | None
    nodes: tuple[Node, ...]
    noise_psd_w_per_hz: float
    fading: str
    outage_max: float | None
    csi: str
    power_control: str
    latency_s: float
    eps_token: np.ndarray | None  # (L,) per-token budgets
    eps_mean: float | None
    energy_weight_up: float
    energy_weight_down: float
    topk_experts: np.ndarray  # (L, K) int
    topk_weights: np.ndarray  # (L, K) float
    gates: np.ndarray | None = None  # (L, N), when the file gave full gate rows
    # How the file wrote things, so that writing back out round-trips exactly.
    noise_psd_dbm_per_hz: float | None = None
    eps_token_scalar: bool = False
    csi_given: bool = False
    energy_weights_given: bool = False
    arrays_file: str | None = None
    npz_fields: tuple[tuple[str, str], ...] = field(default=())  # (path, npz key)
    #: Provenance of β/δ as written by ``siftopt similarity`` (kind, method, radius, ...).
    bounds_info: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        for name in ("placement", "beta", "delta", "topk_experts", "topk_weights"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("eps_token", "gates"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _frozen(getattr(self, name)))

    # Sizes ---------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """L, the number of tokens in the batch (1 = decoding)."""
        return int(self.topk_experts.shape[0])

    @property
    def num_nodes(self) -> int:
        """M, the number of remote nodes."""
        return len(self.nodes)

    @property
    def payload_bits(self) -> int:
        """S = d·b, bits per token per direction."""
        return self.hidden_dim * self.bits_per_element

    def equals(self, other: Instance) -> bool:
        """Field-by-field equality (arrays compared exactly, inf == inf)."""
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape:
                    return False
                if not np.array_equal(a, b, equal_nan=True):
                    return False
            elif a != b:
                return False
        return True

    def replace(self, **changes: Any) -> Instance:
        """A copy with some fields changed (validation is the caller's business)."""
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------
# Parsing helpers
# --------------------------------------------------------------------------------------------


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed (NaN and Infinity are rejected)")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json_text(text: str, file: str) -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys. Errors name the file and position."""
    try:
        return json.loads(text, parse_constant=_reject_constant,
                          object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                         file=file) from None
    except ValueError as exc:
        raise InputError(f"invalid JSON: {exc}", file=file) from None


def _is_number(x: Any) -> bool:
    return (type(x) is int or type(x) is float) and not (type(x) is float and not math.isfinite(x))


def _describe(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return f"string {x!r}"[:60]
    if isinstance(x, list):
        return f"a list of length {len(x)}"
    if isinstance(x, dict):
        return "an object"
    return repr(x)


class _Reader:
    """Walks a JSON document with field paths, raising one-line :class:`InputError`s."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.npz: Mapping[str, np.ndarray] | None = None
        self.npz_name: str | None = None
        self.npz_fields: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> InputError:
        return InputError(message, file=self.file, path=path)

    # objects -------------------------------------------------------------------------------
    def obj(self, value: Any, path: str, required: tuple[str, ...],
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path or "(top level)", f"must be an object, got {_describe(value)}")
        allowed = required + optional
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else \
                    f"; allowed keys: {', '.join(allowed)}"
                raise self.fail(_join(path, key), f"unknown key {key!r}{hint}")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "missing required field")
        return value

    # scalars -------------------------------------------------------------------------------
    def number(self, value: Any, path: str, *, gt: float | None = None, ge: float | None = None,
               lt: float | None = None, le: float | None = None) -> float:
        if not _is_number(value):
            raise self.fail(path, f"must be a number, got {_describe(value)}")
        x = float(value)
        if gt is not None and not x > gt:
            raise self.fail(path, f"must be > {gt:g}, got {value!r}")
        if ge is not None and not x >= ge:
            raise self.fail(path, f"must be >= {ge:g}, got {value!r}")
        if lt is not None and not x < lt:
            raise self.fail(path, f"must be < {lt:g}, got {value!r}")
        if le is not None and not x <= le:
            raise self.fail(path, f"must be <= {le:g}, got {value!r}")
        return x

    def integer(self, value: Any, path: str, *, ge: int | None = None) -> int:
        if type(value) is not int:
            raise self.fail(path, f"must be an integer, got {_describe(value)}")
        if ge is not None and value < ge:
            raise self.fail(path, f"must be >= {ge}, got {value}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {_describe(value)}")
        return value

    def choice(self, value: Any, path: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(path, f"must be one of {', '.join(map(repr, options))}, "
                                  f"got {_describe(value)}")
        return value

    # arrays --------------------------------------------------------------------------------
    def array(self, value: Any, path: str, shape: tuple[int | None, ...], *, integer: bool = False,
              allow_null: bool = False) -> np.ndarray:
        """A numeric array of the given shape (None = any length) from JSON lists or the npz.

        Nulls (when allowed) become +inf. Integers must be JSON integers.
        """
        if isinstance(value, dict):
            arr = self._npz_array(value, path, integer=integer, allow_inf=allow_null)
            _check_shape(self, arr.shape, shape, path)
            return arr
        rows = self._walk(value, path, len(shape), integer, allow_null)
        arr = np.array(rows, dtype=np.int64 if integer else np.float64)
        if arr.ndim != len(shape):  # only when a dimension is empty
            arr = arr.reshape([0 if s is None else s for s in shape])
        _check_shape(self, arr.shape, shape, path)
        return arr

    def _walk(self, value: Any, path: str, ndim: int, integer: bool, allow_null: bool) -> list:
        if not isinstance(value, list):
            what = "a list" if ndim == 1 else f"a {ndim}-dimensional list of lists"
            raise self.fail(path, f"must be {what}, got {_describe(value)}")
        if ndim > 1:
            out = [self._walk(v, f"{path}[{k}]", ndim - 1, integer, allow_null)
                   for k, v in enumerate(value)]
            lengths = {len(r) for r in out}
            if len(lengths) > 1:
                first = len(out[0])
                for k, r in enumerate(out):
                    if len(r) != first:
                        raise self.fail(f"{path}[{k}]", f"has length {len(r)}, but "
                                        f"{path}[0] has length {first} (rows must be equal)")
            return out
        ok_types = (int,) if integer else (int, float)
        if all(type(x) in ok_types for x in value):
            return value
        for k, x in enumerate(value):
            if x is None and allow_null:
                continue
            if type(x) not in ok_types:
                kind = "an integer" if integer else "a number"
                extra = " or null" if allow_null else ""
                raise self.fail(f"{path}[{k}]", f"must be {kind}{extra}, got {_describe(x)}")
        return [math.inf if x is None else x for x in value]

    def _npz_array(self, value: dict, path: str, *, integer: bool, allow_inf: bool) -> np.ndarray:
        self.obj(value, path, ("npz",))
        key = value["npz"]
        if not isinstance(key, str):
            raise self.fail(f"{path}.npz", f"must be a string key, got {_describe(key)}")
        if self.npz is None:
            raise self.fail(path, "refers to an .npz array, but the instance has no 'arrays' "
                                  "field naming the .npz file")
        if key not in self.npz:
            keys = ", ".join(sorted(self.npz)) or "none"
            raise self.fail(f"{path}.npz", f"key {key!r} not in {self.npz_name} "
                                           f"(keys: {keys})")
        arr = np.asarray(self.npz[key])
        self.npz_fields.append((path, key))
        if integer:
            if arr.dtype.kind not in "iu":
                raise self.fail(path, f"{self.npz_name}[{key!r}] must hold integers, "
                                      f"got dtype {arr.dtype}")
            return arr.astype(np.int64)
        if arr.dtype.kind not in "iuf":
            raise self.fail(path, f"{self.npz_name}[{key!r}] must be numeric, "
                                  f"got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        bad = np.isnan(arr) | (np.isinf(arr) & ~(allow_inf & (arr > 0)))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise self.fail(_index_path(path, where), f"{self.npz_name}[{key!r}] holds "
                                                     f"{arr[where]!r}; NaN/Infinity are rejected")
        return arr

    def load_npz(self, name: Any) -> None:
        if not isinstance(name, str) or not name:
            raise self.fail("arrays", f"must be a file name, got {_describe(name)}")
        path = self.base_dir / name
        if not path.is_file():
            raise self.fail("arrays", f"file {name!r} not found next to the instance "
                                      f"(looked for {path})")
        try:
            with np.load(path, allow_pickle=False) as data:
                self.npz = {k: np.array(data[k]) for k in data.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
            raise self.fail("arrays", f"cannot read {name!r} as .npz: {exc}") from None
        self.npz_name = name


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _index_path(path: str, index: tuple[int, ...]) -> str:
    return path + "".join(f"[{i}]" for i in index)


def _check_shape(reader: _Reader, actual: tuple[int, ...], expected: tuple[int | None, ...],
                 path: str) -> None:
    if len(actual) != len(expected):
        raise reader.fail(path, f"must be {len(expected)}-dimensional, got shape {actual}")
    for axis, (a, e) in enumerate(zip(actual, expected, strict=True)):
        if e is not None and a != e:
            where = path if axis == 0 else path + "[0]" * axis
            what = "entries" if axis == len(expected) - 1 else "rows"
            raise reader.fail(where, f"must have {e} {what}, got {a}")


def _first_bad(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

TOP_KEYS_REQUIRED = ("siftopt_version", "name", "model", "placement", "bounds", "nodes",
                     "channel", "power_control", "latency_s", "accuracy", "tokens")
TOP_KEYS_OPTIONAL = ("energy_weights", "arrays")


def load_instance(path: str | os.PathLike[str]) -> Instance:
    """Read and validate an instance file (JSON, with an optional ``.npz`` sidecar)."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such file", file=file) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected an instance .json file", file=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=file) from None
    document = parse_json_text(text, file)
    return instance_from_document(document, file=file, base_dir=path.parent)


def instance_from_document(document: Any, *, file: str = "<instance>",
                           base_dir: str | os.PathLike[str] = ".") -> Instance:
    """Validate a parsed JSON document and build the :class:`Instance`."""
    r = _Reader(file, Path(base_dir))
    doc = r.obj(document, "", TOP_KEYS_REQUIRED, TOP_KEYS_OPTIONAL)
    version = doc["siftopt_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise r.fail("siftopt_version", f"must be {SCHEMA_VERSION}, got {_describe(version)}")
    name = doc["name"]
    if not isinstance(name, str) or not name.strip():
        raise r.fail("name", f"must be a non-empty string, got {_describe(name)}")
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
        i = _first_bad(bad)[0]
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
        gates=gates, noise_psd_dbm_per_hz=noise_dbm, eps_token_scalar=eps_scalar,
        csi_given=csi_given, energy_weights_given=weights_given,
        arrays_file=doc.get("arrays"), npz_fields=tuple(r.npz_fields), bounds_info=bounds_info,
    )


NODE_KEYS = ("bandwidth_hz", "gain_up", "gain_up_db", "gain_down", "gain_down_db",
             "power_up_w", "power_down_w", "compute_s_per_token", "compute_j_per_token")


def _read_nodes(r: _Reader, value: Any) -> tuple[Node, ...]:
    if not isinstance(value, list):
        raise r.fail("nodes", f"must be a list of node objects, got {_describe(value)}")
    nodes = []
    for m, raw in enumerate(value):
        p = f"nodes[{m}]"
        obj = r.obj(raw, p, ("bandwidth_hz", "power_up_w", "power_down_w",
                             "compute_s_per_token"),
                    ("gain_up", "gain_up_db", "gain_down", "gain_down_db", "compute_j_per_token"))
        gains = {}
        for direction in ("up", "down"):
            lin, db = f"gain_{direction}", f"gain_{direction}_db"
            if lin in obj and db in obj:
                raise r.fail(f"{p}.{db}", f"give either {lin} or {db}, not both")
            if lin in obj:
                gains[direction] = (r.number(obj[lin], f"{p}.{lin}", gt=0), None)
            elif db in obj:
                g_db = r.number(obj[db], f"{p}.{db}")
                gain = 10.0 ** (g_db / 10.0)
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


def _read_bounds(r: _Reader, value: Any, n: int) -> tuple[np.ndarray, np.ndarray, int | None]:
    obj = r.obj(value, "bounds", ("beta", "delta"), ("max_candidates", *BOUNDS_INFO_KEYS))
    beta = r.array(obj["beta"], "bounds.beta", (n,))
    bad = ~(beta >= 0) | ~np.isfinite(beta)
    if bad.any():
        i = _first_bad(bad)[0]
        raise r.fail(f"bounds.beta[{i}]", f"must be a finite number >= 0, got {beta[i]!r}")
    delta = r.array(obj["delta"], "bounds.delta", (n, n), allow_null=True)
    bad = ~(delta >= 0)
    if bad.any():
        i, j = _first_bad(bad)
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


#: Optional provenance keys of the bounds block (written by ``siftopt similarity``).
BOUNDS_INFO_KEYS = ("kind", "method", "radius", "min_radius")


def _read_bounds_info(r: _Reader, value: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    info = []
    for key in BOUNDS_INFO_KEYS:
        if key not in value:
            continue
        raw = value[key]
        path = f"bounds.{key}"
        if key in ("kind", "method"):
            if not isinstance(raw, str):
                raise r.fail(path, f"must be a string, got {_describe(raw)}")
        elif raw is not None:
            raw = r.number(raw, path, gt=0) if key == "radius" else r.number(raw, path, ge=0)
        info.append((key, raw))
    return tuple(info)


def _read_channel(r: _Reader, value: Any) -> tuple[float, float | None, str, float | None, str,
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
        noise = 10.0 ** ((dbm - 30.0) / 10.0)
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


def _read_tokens(r: _Reader, value: Any, n: int, k: int, renormalize: bool
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
            t, i = _first_bad(bad)
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
        t, s = _first_bad(bad)
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
        t, s = _first_bad(bad)
        raise r.fail(f"tokens.topk_weights[{t}][{s}]", f"must be a finite number >= 0, "
                                                       f"got {weights[t, s]!r}")
    return experts, weights, None


def topk_from_gates(gates: np.ndarray, k: int, renormalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-K sets and weights from full gate rows (docs/model.md §2.1).

    The K largest entries, ties broken toward the lower expert index; weights renormalised
    over the top-K when ``renormalize`` (a zero top-K sum gives non-finite weights).
    """
    order = np.argsort(-gates, axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(gates, order, axis=1)
    if renormalize:
        with np.errstate(divide="ignore", invalid="ignore"):
            chosen = chosen / chosen.sum(axis=1, keepdims=True)
    return order.astype(np.int64), chosen


def _read_accuracy(r: _Reader, value: Any, n_tokens: int
                   ) -> tuple[np.ndarray | None, bool, float | None]:
    obj = r.obj(value, "accuracy", (), ("eps_token", "eps_mean"))
    if "eps_token" not in obj and "eps_mean" not in obj:
        raise r.fail("accuracy", "give eps_token, eps_mean or both (at least one budget)")
    eps_token, scalar = None, False
    if "eps_token" in obj:
        raw = obj["eps_token"]
        if _is_number(raw):
            scalar = True
            eps_token = np.full(n_tokens, r.number(raw, "accuracy.eps_token", ge=0))
        else:
            eps_token = r.array(raw, "accuracy.eps_token", (n_tokens,))
            bad = ~(eps_token >= 0) | ~np.isfinite(eps_token)
            if bad.any():
                t = _first_bad(bad)[0]
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
    keys = dict(inst.npz_fields) if npz_fields is None else {p: p for p in npz_fields}
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
    bounds.update(dict(inst.bounds_info))
    doc["bounds"] = bounds
    doc["nodes"] = [_node_document(node) for node in inst.nodes]
    channel: dict[str, Any] = {}
    if inst.noise_psd_dbm_per_hz is not None:
        channel["noise_psd_dbm_per_hz"] = inst.noise_psd_dbm_per_hz
    else:
        channel["noise_psd_w_per_hz"] = inst.noise_psd_w_per_hz
    channel["fading"] = inst.fading
    if inst.outage_max is not None:
        channel["outage_max"] = inst.outage_max
    if inst.csi_given or inst.csi != "statistical":
        channel["csi"] = inst.csi
    doc["channel"] = channel
    doc["power_control"] = inst.power_control
    doc["latency_s"] = inst.latency_s
    accuracy: dict[str, Any] = {}
    if inst.eps_token is not None:
        if inst.eps_token_scalar and np.all(inst.eps_token == inst.eps_token[0]):
            accuracy["eps_token"] = float(inst.eps_token[0])
        else:
            accuracy["eps_token"] = arr("accuracy.eps_token", inst.eps_token)
    if inst.eps_mean is not None:
        accuracy["eps_mean"] = inst.eps_mean
    doc["accuracy"] = accuracy
    if inst.energy_weights_given or (inst.energy_weight_up, inst.energy_weight_down) != (1, 1):
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
        sidecar = path.with_suffix(".npz") if npz_fields is not None or not inst.arrays_file \
            else path.parent / inst.arrays_file
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
