"""Seeded mutations of valid input files, for robustness tests and the fuzz campaign.

A mutation changes one place of a parsed document (JSON or TOML) or one array of an ``.npz``
archive into something hostile: an extreme number, NaN or infinity, a value of the wrong type,
a resized, emptied or reshaped array, a hostile file name, or nothing at all (the key is
deleted). :func:`mutate_document` and :func:`mutate_arrays` apply 1–3 of them;
:func:`mutate_bytes` damages the file itself (truncation, stray bytes, deep nesting).
Every reader must answer each mutated file with a value or an
:class:`~siftopt.errors.InputError` (docs/model.md §6); ``tests/test_fuzz_inputs.py`` and
``benchmarks/fuzz_campaign.py`` check that they do.

Randomness comes from a :class:`random.Random`, so that a seed names one mutation (the
campaign) and hypothesis can drive and shrink one (the tests, through ``st.randoms()``).
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import re
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: A place in a document: dict keys and list indices from the top.
DocPath = tuple[str | int, ...]


@dataclass(frozen=True)
class RawNumber:
    """A JSON number written as given (``1e400`` parses to infinity, ``1e-400`` to 0)."""

    text: str


#: Numbers at and beyond the edges of what a field can mean (Python ints beyond int64 and
#: beyond a double included).
EXTREME_NUMBERS: tuple[Any, ...] = (
    0, -1, 1, 2, 0.5, -0.0, 1e-300, 5e-324, -5e-324, 1e-30, 1e30, -1e30, 1e308, -1e308,
    1.7976931348623157e308, 2**31, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), 10**400,
)
RAW_JSON_NUMBERS: tuple[RawNumber, ...] = (RawNumber("1e400"), RawNumber("-1e400"),
                                           RawNumber("1e-400"), RawNumber("-0"))
NON_FINITE: tuple[float, ...] = (math.nan, math.inf, -math.inf)
#: Values of the wrong type for most fields (``None`` has no TOML form and is left out there).
WRONG_TYPES: tuple[Any, ...] = ("x", "", "1.0", True, False, None, [], {}, [[]], [None], ["x"],
                                {"npz": "x"}, [1e308, 1e308], [[0.1, 0.2], [0.3]])
#: File names that point outside a document's folder, or at nothing a reader may open.
HOSTILE_NAMES: tuple[str, ...] = ("", ".", "..", "/", "/etc/hostname", "/dev/zero",
                                  "../x.npz", "a/../../x.npz", "..\\x.npz", "C:\\x.npz",
                                  "nul\x00.npz", "~/x.npz", "x" * 300)
SCALES: tuple[float, ...] = (-1.0, 0.0, 1e-300, 1e-30, 1e30, 1e300, 10.0, 0.1)


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


def show_path(path: DocPath) -> str:
    """``a.b[2].c`` for the path ``("a", "b", 2, "c")`` (``(top level)`` for ``()``)."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(top level)"


def _children(node: Any) -> list[str | int]:
    if isinstance(node, dict):
        return list(node)
    if isinstance(node, list):
        return list(range(len(node)))
    return []


def pick_path(doc: Any, rng: random.Random, *, descend: float = 0.7) -> DocPath:
    """A random place: walk down from the top, stopping with probability ``1 − descend`` at
    each container (so short paths, i.e. whole fields, are as likely as array entries)."""
    path: list[str | int] = []
    node = doc
    while True:
        keys = _children(node)
        if not keys:
            break
        key = rng.choice(keys)
        path.append(key)
        node = node[key]  # type: ignore[index]
        if not _children(node) or rng.random() > descend:
            break
    return tuple(path)


def get_at(doc: Any, path: DocPath) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _set_at(doc: Any, path: DocPath, value: Any) -> None:
    get_at(doc, path[:-1])[path[-1]] = value


def _delete_at(doc: Any, path: DocPath) -> None:
    del get_at(doc, path[:-1])[path[-1]]


def _show(value: Any) -> str:
    if isinstance(value, RawNumber):
        return value.text
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _replacement(value: Any, rng: random.Random, syntax: str, names: Sequence[str]
                 ) -> tuple[str, Any]:
    """A kind of change for ``value`` and the new value (``_DELETE`` to delete)."""
    kinds = ["extreme", "nonfinite", "wrong_type", "delete"]
    if isinstance(value, int | float) and not isinstance(value, bool):
        kinds += ["scale", "scale", "extreme"]
    if isinstance(value, list):
        kinds += ["resize", "resize"]
    if isinstance(value, str):
        kinds += ["name", "name"]
    kind = rng.choice(kinds)
    if kind == "extreme":
        pool = EXTREME_NUMBERS + (RAW_JSON_NUMBERS if syntax == "JSON" else ())
        return kind, rng.choice(pool)
    if kind == "nonfinite":
        return kind, rng.choice(NON_FINITE)
    if kind == "wrong_type":
        pool = WRONG_TYPES if syntax == "JSON" else tuple(v for v in WRONG_TYPES if v is not None
                                                          and v != [None])
        return kind, copy.deepcopy(rng.choice(pool))
    if kind == "scale":
        factor = rng.choice(SCALES)
        if isinstance(value, int) and rng.random() < 0.5:
            return kind, value + rng.choice((-1, 1, -value, 10**6))
        try:
            return kind, value * factor
        except OverflowError:  # an int beyond a double, from an earlier mutation
            return kind, -value
    if kind == "resize":
        how = rng.choice(("empty", "drop", "duplicate", "wrap", "append"))
        if how == "empty" or not value:
            return "resize", []
        if how == "drop":
            return "resize", value[:-1]
        if how == "duplicate":
            return "resize", [*value, copy.deepcopy(value[-1])]
        if how == "wrap":
            return "resize", [value]
        return "resize", [*value, rng.choice(EXTREME_NUMBERS)]
    if kind == "name":
        return kind, rng.choice(tuple(names) + HOSTILE_NAMES)
    return "delete", _DELETE


_DELETE = object()


def mutate_document(doc: Any, rng: random.Random, *, syntax: str = "JSON",
                    count: int | None = None, names: Sequence[str] = ()
                    ) -> tuple[Any, list[str]]:
    """A deep copy of ``doc`` with ``count`` (default 1–3) random mutations, and a note per
    mutation (``nodes[2].gain_down_db = 1e+30``, ``delete tokens.gates``).

    ``syntax`` is ``"JSON"`` or ``"TOML"`` (TOML has no null). ``names`` are extra strings to
    try where a string is (file names the caller cares about, e.g. an absolute path).
    """
    doc = copy.deepcopy(doc)
    notes = []
    for _ in range(rng.randint(1, 3) if count is None else count):
        path = pick_path(doc, rng)
        if not path:
            notes.append("(empty document: nothing to change)")
            continue
        kind, value = _replacement(get_at(doc, path), rng, syntax, names)
        if value is _DELETE:
            _delete_at(doc, path)
            notes.append(f"delete {show_path(path)}")
        else:
            _set_at(doc, path, value)
            notes.append(f"{show_path(path)} = {_show(value)}")
    return doc, notes


def dump_json(doc: Any) -> str:
    """JSON text of a (mutated) document: NaN and Infinity as those tokens, :class:`RawNumber`
    as its text."""
    raws: dict[str, str] = {}

    def default(obj: Any) -> Any:
        if isinstance(obj, RawNumber):
            key = f"\x00raw{len(raws)}\x00"
            raws[json.dumps(key)] = obj.text
            return key
        raise TypeError(type(obj).__name__)

    text = json.dumps(doc, allow_nan=True, default=default, indent=1)
    for placeholder, raw in raws.items():
        text = text.replace(placeholder, raw)
    return text


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) \
            + "}"
    if value is None:
        return '"null"'
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dump_toml(doc: dict[str, Any]) -> str:
    """TOML text of a (mutated) document: scalars and arrays first, then ``[tables]`` and
    ``[[arrays of tables]]``; deeper tables are inline. Integers beyond 64 bits are written as
    they are (invalid TOML, which is what a mutation wants)."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append(f"\n[{_toml_key(key)}]")
            tables += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"\n[[{_toml_key(key)}]]")
                tables += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"


# --------------------------------------------------------------------------------------------
# Bytes
# --------------------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """The file itself damaged: truncated, a byte flipped, invalid UTF-8, a byte-order mark,
    deep nesting, or empty."""
    kind = rng.choice(("truncate", "flip", "utf8", "bom", "nest", "empty", "nul"))
    if kind == "truncate" and data:
        cut = rng.randrange(len(data))
        return data[:cut], f"truncated at byte {cut}"
    if kind == "flip" and data:
        at = rng.randrange(len(data))
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:], \
            f"bit flipped at byte {at}"
    if kind == "utf8":
        at = rng.randrange(len(data) + 1)
        return data[:at] + b"\xff\xfe" + data[at:], f"invalid UTF-8 at byte {at}"
    if kind == "bom":
        return b"\xef\xbb\xbf" + data, "byte-order mark"
    if kind == "nest":
        depth = rng.choice((1000, 100_000))
        return b"[" * depth + b"]" * depth, f"lists nested {depth} deep"
    if kind == "nul":
        return data.replace(b'"', b'"\x00', 1), "NUL byte in a string"
    return b"", "empty file"


# --------------------------------------------------------------------------------------------
# .npz archives
# --------------------------------------------------------------------------------------------


def _reshaped(arr: np.ndarray, rng: random.Random) -> tuple[np.ndarray, str]:
    how = rng.choice(("transpose", "drop", "extra", "flatten", "empty", "scalar", "axis",
                      "grow"))
    if how == "transpose" and arr.ndim >= 2:
        return arr.T.copy(), "transposed"
    if how == "drop" and arr.ndim >= 1 and arr.shape[0] > 0:
        axis = rng.randrange(arr.ndim)
        return np.delete(arr, -1, axis=axis), f"last entry dropped along axis {axis}"
    if how == "extra":
        return arr[..., None].copy(), "extra axis"
    if how == "flatten":
        return arr.ravel().copy(), "flattened"
    if how == "empty":
        return np.zeros((0, *arr.shape[1:]), dtype=arr.dtype), "no rows"
    if how == "scalar":
        return np.asarray(arr.ravel()[0] if arr.size else 0, dtype=arr.dtype), "0-d"
    if how == "grow" and arr.ndim >= 1:
        return np.concatenate([arr, arr], axis=0), "rows doubled"
    return np.stack([arr, arr]), "stacked twice"


def mutate_arrays(arrays: dict[str, np.ndarray], rng: random.Random, *,
                  count: int | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """A copy of ``arrays`` with ``count`` (default 1–3) random mutations of one array each:
    an element set to NaN, ±inf or an extreme value, the array scaled, its dtype changed
    (object and string dtypes included), reshaped or emptied, or the key deleted, renamed or
    joined by an unknown one."""
    out = {k: np.array(v) for k, v in arrays.items()}
    notes = []
    for _ in range(rng.randint(1, 3) if count is None else count):
        if not out:
            out["x"] = np.zeros(2)
            notes.append("added x")
            continue
        key = rng.choice(sorted(out))
        arr = np.asarray(out[key])  # arithmetic on a 0-d array gives a numpy scalar
        kind = rng.choice(("element", "element", "scale", "dtype", "shape", "shape",
                           "delete", "rename", "add"))
        if kind in ("element", "scale") and arr.dtype.kind not in "biuf":
            kind = "shape"  # no arithmetic on strings, objects or complex numbers
        if kind == "element" and arr.size:
            value = rng.choice((*NON_FINITE, 1e308, -1e308, 1e30, -1.0, 0.0, 2.0**63, 5e-324))
            arr = arr.astype(np.float64) if not np.isfinite(value) or value != int(value) \
                or abs(value) >= 2**62 else arr.copy()
            index = tuple(rng.randrange(s) for s in arr.shape)
            arr[index] = value
            out[key] = arr
            notes.append(f"{key}{list(index)} = {value!r}")
        elif kind == "scale":
            factor = rng.choice(SCALES)
            with np.errstate(all="ignore"):
                out[key] = np.asarray(arr * factor)
            notes.append(f"{key} *= {factor!r}")
        elif kind == "dtype":
            dtype = rng.choice(("float32", "float16", "int8", "uint8", "int64", "bool",
                                "complex128", "U3", "S3", "object"))
            try:
                with np.errstate(all="ignore"):
                    out[key] = arr.astype(dtype)
            except (ValueError, TypeError, OverflowError):  # e.g. "0.6" as int8
                out[key] = arr.astype("U8")
                dtype = "U8"
            notes.append(f"{key} as {dtype}")
        elif kind == "shape":
            out[key], how = _reshaped(arr, rng)
            notes.append(f"{key} {how} -> shape {out[key].shape}")
        elif kind == "delete":
            del out[key]
            notes.append(f"delete {key}")
        elif kind == "rename":
            out[key + "_"] = out.pop(key)
            notes.append(f"rename {key} -> {key}_")
        else:
            out["extra"] = np.ones(3)
            notes.append("added an unknown array 'extra'")
    return out, notes


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` (object arrays are pickled, as numpy does; readers must refuse them)."""
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def npy_with_header(shape: tuple[int, ...], dtype: str = "<f8", payload: bytes = b"\0" * 16
                    ) -> bytes:
    """A ``.npy`` member whose header declares ``shape`` but whose data is ``payload`` (a
    few bytes): what a decompression bomb or a forged header looks like to a reader."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    pad = 64 - (10 + len(header) + 1) % 64
    text = (header + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + payload


def forged_npz(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> bytes:
    """An ``.npz`` with ``arrays``, except that ``key`` has a forged header declaring
    ``shape`` (float64) over a few bytes of data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, arr in arrays.items():
            if name == key:
                archive.writestr(f"{name}.npy", npy_with_header(shape))
            else:
                member = io.BytesIO()
                np.save(member, arr)
                archive.writestr(f"{name}.npy", member.getvalue())
        if key not in arrays:
            archive.writestr(f"{key}.npy", npy_with_header(shape))
    return buffer.getvalue()


#: Shapes a forged header may declare: impossible, machine-filling, and merely wrong.
FORGED_SHAPES: tuple[tuple[int, ...], ...] = (
    (10**6, 10**6), (2**62,), (60_000, 60_000), (3, 2**40), (0, 10**9), (-1, 3), (8, 8, 8),
)
