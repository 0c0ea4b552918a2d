"""Strict reading of user files: every rejection is one line naming the file and the field.

One :class:`Reader` walks one document (JSON or TOML) with field paths such as
``nodes[0].bandwidth_hz`` and raises :class:`~siftopt.errors.InputError`s whose message reads
``file: path: what is wrong``. It owns the checks every reader shares: reading and parsing
the file (strict JSON: no NaN/Infinity, no duplicate keys), objects with required and optional
keys (unknown keys get a suggestion), numbers with bounds, integers, booleans, choices, and
numeric arrays of a given shape from JSON lists or from an ``.npz`` sidecar (``{"npz": key}``).
What a particular file means is its own module's business (instance_file, solution, profiles,
the benchmark configuration).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.errors import InputError

# --------------------------------------------------------------------------------------------
# Text
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


def parse_toml_text(text: str, file: str) -> dict[str, Any]:
    """A TOML document; a syntax error names the file."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", file=file) from None


# --------------------------------------------------------------------------------------------
# Wording
# --------------------------------------------------------------------------------------------


def describe(x: Any) -> str:
    """A short description of a JSON value for "got ..." in error messages."""
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


def unknown_key_message(key: str, allowed: tuple[str, ...]) -> str:
    """``unknown key 'x'; did you mean 'y'?`` (or the list of allowed keys)."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
    return f"unknown key {key!r}{hint}"


def is_number(x: Any) -> bool:
    """A JSON number (int or finite float; booleans are not numbers)."""
    return (type(x) is int or type(x) is float) and not (type(x) is float and not math.isfinite(x))


def join_path(path: str, key: str) -> str:
    """``path.key`` (just ``key`` at the top level)."""
    return f"{path}.{key}" if path else key


def index_path(path: str, index: tuple[int, ...]) -> str:
    """``path[i][j]``."""
    return path + "".join(f"[{i}]" for i in index)


def first_true(mask: np.ndarray) -> tuple[int, ...]:
    """The index of the first true entry of a boolean array (row-major)."""
    return tuple(int(i) for i in np.argwhere(mask)[0])


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


class Reader:
    """Walks one document with field paths, raising one-line :class:`InputError`s.

    ``syntax`` is ``"JSON"`` or ``"TOML"``: it decides how the file is parsed, whether a
    mapping is called an object or a table, and how a wrong value is shown (a JSON
    description, or the TOML value's type). ``base_dir`` is where an ``.npz`` sidecar is
    looked for.
    """

    def __init__(self, file: str, *, syntax: str = "JSON",
                 base_dir: str | os.PathLike[str] = ".") -> None:
        if syntax not in ("JSON", "TOML"):
            raise ValueError(f"unknown syntax {syntax!r}")
        self.file = file
        self.syntax = syntax
        self.base_dir = Path(base_dir)
        self.npz: Mapping[str, np.ndarray] | None = None
        self.npz_name: str | None = None
        #: (field path, npz key) of every array read from the sidecar, in reading order.
        self.npz_fields: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> InputError:
        """The error to raise for field ``path`` ("" = the file as a whole)."""
        return InputError(message, file=self.file, path=path or None)

    def describe(self, value: Any) -> str:
        return describe(value) if self.syntax == "JSON" else type(value).__name__

    # the file ------------------------------------------------------------------------------
    def read_text(self, path: str | os.PathLike[str], expected: str) -> str:
        """The text of a file (UTF-8); ``expected`` says what it should be, for a folder."""
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.fail("", "no such file") from None
        except IsADirectoryError:
            raise self.fail("", f"is a directory, expected {expected}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail("", f"cannot read: {exc}") from None

    def parse(self, text: str) -> Any:
        """The document in ``text`` (strict JSON, or TOML)."""
        if self.syntax == "JSON":
            return parse_json_text(text, self.file)
        return parse_toml_text(text, self.file)

    def load(self, path: str | os.PathLike[str], expected: str) -> Any:
        """Read and parse a file."""
        return self.parse(self.read_text(path, expected))

    # objects -------------------------------------------------------------------------------
    def obj(self, value: Any, path: str, required: tuple[str, ...] = (),
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
        """A mapping with all ``required`` keys and no key outside ``required + optional``."""
        if not isinstance(value, dict):
            noun = "an object" if self.syntax == "JSON" else "a table"
            raise self.fail(path or "(top level)", f"must be {noun}, got {self.describe(value)}")
        allowed = required + optional
        for key in value:
            if key not in allowed:
                raise self.fail(join_path(path, key), unknown_key_message(key, allowed))
        for key in required:
            if key not in value:
                raise self.fail(join_path(path, key), "missing required field")
        return value

    # scalars -------------------------------------------------------------------------------
    def number(self, value: Any, path: str, *, gt: float | None = None, ge: float | None = None,
               lt: float | None = None, le: float | None = None) -> float:
        if not is_number(value):
            raise self.fail(path, f"must be a number, got {self.describe(value)}")
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
            raise self.fail(path, f"must be an integer, got {self.describe(value)}")
        if ge is not None and value < ge:
            raise self.fail(path, f"must be >= {ge}, got {value}")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {self.describe(value)}")
        return value

    def string(self, value: Any, path: str, *, nonempty: bool = False) -> str:
        if not isinstance(value, str) or (nonempty and not value.strip()):
            what = "a non-empty string" if nonempty else "a string"
            raise self.fail(path, f"must be {what}, got {self.describe(value)}")
        return value

    def choice(self, value: Any, path: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(path, f"must be one of {', '.join(map(repr, options))}, "
                                  f"got {self.describe(value)}")
        return value

    # arrays --------------------------------------------------------------------------------
    def array(self, value: Any, path: str, shape: tuple[int | None, ...], *, integer: bool = False,
              allow_null: bool = False) -> np.ndarray:
        """A numeric array of the given shape (None = any length) from lists or the npz.

        Nulls (when allowed) become +inf. Integers must be JSON integers.
        """
        if isinstance(value, dict):
            arr = self._npz_array(value, path, integer=integer, allow_inf=allow_null)
            self._check_shape(arr.shape, shape, path)
            return arr
        rows = self._walk(value, path, len(shape), integer, allow_null)
        arr = np.array(rows, dtype=np.int64 if integer else np.float64)
        if arr.ndim != len(shape):  # only when a dimension is empty
            arr = arr.reshape([0 if s is None else s for s in shape])
        self._check_shape(arr.shape, shape, path)
        return arr

    def _walk(self, value: Any, path: str, ndim: int, integer: bool, allow_null: bool) -> list:
        if not isinstance(value, list):
            what = "a list" if ndim == 1 else f"a {ndim}-dimensional list of lists"
            raise self.fail(path, f"must be {what}, got {self.describe(value)}")
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
                raise self.fail(f"{path}[{k}]",
                                f"must be {kind}{extra}, got {self.describe(x)}")
        return [math.inf if x is None else x for x in value]

    def _check_shape(self, actual: tuple[int, ...], expected: tuple[int | None, ...],
                     path: str) -> None:
        if len(actual) != len(expected):
            raise self.fail(path, f"must be {len(expected)}-dimensional, got shape {actual}")
        for axis, (a, e) in enumerate(zip(actual, expected, strict=True)):
            if e is not None and a != e:
                where = path if axis == 0 else path + "[0]" * axis
                what = "entries" if axis == len(expected) - 1 else "rows"
                raise self.fail(where, f"must have {e} {what}, got {a}")

    # the .npz sidecar ----------------------------------------------------------------------
    def load_npz(self, name: Any, path: str = "arrays") -> None:
        """Open the sidecar named by field ``path`` (a file beside the document)."""
        if not isinstance(name, str) or not name:
            raise self.fail(path, f"must be a file name, got {self.describe(name)}")
        file = self.base_dir / name
        if not file.is_file():
            raise self.fail(path, f"file {name!r} not found next to the instance "
                                  f"(looked for {file})")
        try:
            with np.load(file, allow_pickle=False) as data:
                self.npz = {k: np.array(data[k]) for k in data.files}
        except Exception as exc:  # noqa: BLE001 - any unreadable file is an input error
            raise self.fail(path, f"cannot read {name!r} as .npz: {exc}") from None
        self.npz_name = name

    def _npz_array(self, value: dict, path: str, *, integer: bool, allow_inf: bool) -> np.ndarray:
        self.obj(value, path, ("npz",))
        key = value["npz"]
        if not isinstance(key, str):
            raise self.fail(f"{path}.npz", f"must be a string key, got {self.describe(key)}")
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
            where = first_true(bad)
            raise self.fail(index_path(path, where), f"{self.npz_name}[{key!r}] holds "
                                                     f"{arr[where]!r}; NaN/Infinity are rejected")
        return arr
