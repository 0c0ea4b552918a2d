"""Strict reading of user files: every rejection is one line naming the file and the field.

One :class:`Reader` walks one document (JSON or TOML) with field paths such as
``nodes[0].bandwidth_hz`` and raises :class:`~siftopt.errors.InputError`s whose message reads
``file: path: what is wrong``. It owns the checks every reader shares: reading and parsing
the file (strict JSON: no NaN/Infinity, no duplicate keys), objects with required and optional
keys (unknown keys get a suggestion), numbers with bounds, integers, booleans, choices, and
numeric arrays of a given shape from JSON lists or from an ``.npz`` sidecar (``{"npz": key}``).
What a particular file means is its own module's business (instance_file, solution, profiles,
the benchmark configuration).

Hostile input (docs/model.md §6) ends here too: numbers that parse to infinity (``1e400``),
integers beyond 64 bits or beyond a double, nesting deeper than the parser's stack, texts too
large to parse in memory, ``.npz`` members whose headers declare shapes that do not match the
field or would not fit in memory (checked before anything is read), and file names that leave
the folder of the file naming them (:meth:`Reader.confined`).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from siftopt.errors import InputError
from siftopt.io.limits import TEXT_PARSE_FACTOR, check_memory

#: Integers a typed integer array may hold (int64).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is beyond the range of a double")
    return value


def parse_json_text(text: str, file: str) -> Any:
    """Strict JSON: no NaN/Infinity (nor numbers such as ``1e400`` that overflow to it), no
    duplicate keys, nesting within the parser's stack. Errors name the file and position."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                          object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                         file=file) from None
    except ValueError as exc:
        raise InputError(f"invalid JSON: {_first_line(exc)}", file=file) from None
    except RecursionError:
        raise InputError("invalid JSON: lists or objects nested too deeply", file=file) from None


def parse_toml_text(text: str, file: str) -> dict[str, Any]:
    """A TOML document; a syntax error names the file."""
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, and integers of more than 4300 digits
        raise InputError(f"invalid TOML: {_first_line(exc)}", file=file) from None
    except RecursionError:
        raise InputError("invalid TOML: arrays or tables nested too deeply", file=file) from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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
    if type(x) is int and abs(x) >= 10**16:
        return f"an integer of {len(str(abs(x)))} digits"
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


def as_double(x: int | float) -> float | None:
    """``float(x)`` for a number, None when an integer is beyond the range of a double."""
    try:
        return float(x)
    except OverflowError:
        return None


def show(x: float) -> str:
    """A bound in a message: ``1e+15``, ``0``, ``-250``."""
    return f"{x:g}"


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
# The .npz sidecar: headers first, arrays on demand
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` member's header declares: shape and dtype (nothing read yet)."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def size(self) -> int:
        """Number of entries (a Python int: never overflows)."""
        return math.prod(self.shape)


def read_npz_headers(file: str | os.PathLike[str]) -> dict[str, NpyHeader | str]:
    """The header of every member of an ``.npz`` archive, by key, without reading any data.

    A member that is not a readable ``.npy`` array maps to a string saying why. Raises
    ``OSError``, ``zipfile.BadZipFile`` or ``ValueError`` when the archive itself is unreadable.
    """
    out: dict[str, NpyHeader | str] = {}
    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if not name.endswith(".npy"):
                out[key] = "is not a .npy array"
                continue
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        out[key] = f"has an unsupported .npy format version {version}"
                        continue
            except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile,
                    NotImplementedError) as exc:
                out[key] = f"has an unreadable .npy header ({_first_line(exc)})"
                continue
            if not all(type(n) is int and n >= 0 for n in shape):
                out[key] = f"declares an invalid shape {shape}"
                continue
            out[key] = NpyHeader(tuple(shape), np.dtype(dtype))
    return out


def check_npz_memory(file: str | os.PathLike[str], *, bytes_per_entry: int = 16) -> None:
    """InputError when the shapes an ``.npz`` archive's headers declare would need more memory
    than there is (``bytes_per_entry`` per entry: a double and a copy by default). Checked
    before any array is read; an archive whose headers cannot be read is left to the loader."""
    try:
        headers = read_npz_headers(file)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError):
        return
    entries = sum(h.size for h in headers.values() if isinstance(h, NpyHeader))
    check_memory(bytes_per_entry * entries, f"the arrays' declared shapes ({entries:,} entries "
                                            f"of {bytes_per_entry} bytes)", file=str(file))


class Sidecar:
    """An opened ``.npz`` sidecar: every member's header is known; arrays are read one at a
    time, when a field refers to them and after their header has been checked."""

    def __init__(self, file: Path, name: str) -> None:
        self.file = file
        self.name = name
        self.headers = read_npz_headers(file)

    def keys(self) -> list[str]:
        return sorted(self.headers)

    def read(self, key: str) -> np.ndarray:
        """The array of member ``key`` (raises what numpy raises for a bad member)."""
        with np.load(self.file, allow_pickle=False) as data:
            return np.asarray(data[key])


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


class Reader:
    """Walks one document with field paths, raising one-line :class:`InputError`s.

    ``syntax`` is ``"JSON"`` or ``"TOML"``: it decides how the file is parsed, whether a
    mapping is called an object or a table, and how a wrong value is shown (a JSON
    description, or the TOML value's type). ``base_dir`` is the folder of the document: the
    files it names (an ``.npz`` sidecar, a profile) must lie inside it (:meth:`confined`).
    """

    def __init__(self, file: str, *, syntax: str = "JSON",
                 base_dir: str | os.PathLike[str] = ".") -> None:
        if syntax not in ("JSON", "TOML"):
            raise ValueError(f"unknown syntax {syntax!r}")
        self.file = file
        self.syntax = syntax
        self.base_dir = Path(base_dir)
        self.sidecar: Sidecar | None = None
        #: (field path, npz key) of every array read from the sidecar, in reading order.
        self.npz_fields: list[tuple[str, str]] = []

    @property
    def npz_name(self) -> str | None:
        """The sidecar's name as the document wrote it (None without one)."""
        return None if self.sidecar is None else self.sidecar.name

    def fail(self, path: str, message: str) -> InputError:
        """The error to raise for field ``path`` ("" = the file as a whole)."""
        return InputError(message, file=self.file, path=path or None)

    def describe(self, value: Any) -> str:
        """A wrong value for a message: JSON shows it; TOML shows numbers and booleans, and
        the type of anything else."""
        if self.syntax == "JSON" or isinstance(value, int | float):
            return describe(value)
        return type(value).__name__

    # the file ------------------------------------------------------------------------------
    def read_text(self, path: str | os.PathLike[str], expected: str) -> str:
        """The text of a file (UTF-8); ``expected`` says what it should be, for a folder.

        A file whose parsing could not fit in memory (about
        :data:`~siftopt.io.limits.TEXT_PARSE_FACTOR` bytes per byte of text) is refused
        before it is read."""
        try:
            info = Path(path).stat()
        except FileNotFoundError:
            raise self.fail("", "no such file") from None
        except OSError as exc:
            raise self.fail("", f"cannot read: {exc.strerror or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            raise self.fail("", f"is a directory, expected {expected}")
        if not stat.S_ISREG(info.st_mode):  # a device or a pipe might never end
            raise self.fail("", f"is not a regular file, expected {expected}")
        size = info.st_size
        check_memory(size * TEXT_PARSE_FACTOR,
                     f"parsing this {size:,}-byte text (about {TEXT_PARSE_FACTOR} bytes per "
                     "byte of text)", file=self.file)
        try:
            return Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise self.fail("", "no such file") from None
        except IsADirectoryError:
            raise self.fail("", f"is a directory, expected {expected}") from None
        except UnicodeDecodeError as exc:
            raise self.fail("", f"cannot read: not UTF-8 text ({exc.reason} at byte "
                                f"{exc.start})") from None
        except OSError as exc:
            raise self.fail("", f"cannot read: {exc.strerror or exc}") from None

    def parse(self, text: str) -> Any:
        """The document in ``text`` (strict JSON, or TOML)."""
        if self.syntax == "JSON":
            return parse_json_text(text, self.file)
        return parse_toml_text(text, self.file)

    def load(self, path: str | os.PathLike[str], expected: str) -> Any:
        """Read and parse a file."""
        return self.parse(self.read_text(path, expected))

    def confined(self, name: Any, path: str, *, what: str = "file") -> Path:
        """The file that field ``path`` names (``name``), which must lie in :attr:`base_dir`.

        The name must be a non-empty relative path without ``..`` parts, backslashes, a drive
        or NUL bytes, and must not resolve (symbolic links followed) outside the folder. Only
        the name is checked: whether the file exists is the caller's business.
        """
        if not isinstance(name, str) or not name.strip():
            raise self.fail(path, f"must be a {what} name, got {self.describe(name)}")
        folder = self.base_dir
        rule = (f"must name a {what} inside the folder of {self.file} (a relative path "
                f"without '..')")
        if "\x00" in name or "\\" in name or PureWindowsPath(name).drive \
                or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
            raise self.fail(path, f"{rule}, got {name[:80]!r}")
        target = folder / name
        try:
            inside = target.resolve().is_relative_to(folder.resolve())
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
            raise self.fail(path, f"cannot resolve {name!r}: {_first_line(exc)}") from None
        if not inside:
            raise self.fail(path, f"{name!r} resolves to {target.resolve()}, outside the "
                                  f"folder of {self.file} (a symbolic link?)")
        return target

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
        """A finite number within the given bounds (a float)."""
        if not is_number(value):
            raise self.fail(path, f"must be a number, got {self.describe(value)}")
        x = as_double(value)
        if x is None:
            raise self.fail(path, f"must be a number within the range of a double, got "
                                  f"{describe(value)}")
        shown = describe(value)
        if gt is not None and not x > gt:
            raise self.fail(path, f"must be > {show(gt)}, got {shown}")
        if ge is not None and not x >= ge:
            raise self.fail(path, f"must be >= {show(ge)}, got {shown}")
        if lt is not None and not x < lt:
            raise self.fail(path, f"must be < {show(lt)}, got {shown}")
        if le is not None and not x <= le:
            raise self.fail(path, f"must be <= {show(le)}, got {shown}")
        return x

    def integer(self, value: Any, path: str, *, ge: int | None = None,
                le: int | None = None) -> int:
        """An integer (not a boolean, not a float) within the given bounds."""
        if type(value) is not int:
            raise self.fail(path, f"must be an integer, got {self.describe(value)}")
        if ge is not None and value < ge:
            raise self.fail(path, f"must be >= {ge}, got {describe(value)}")
        if le is not None and value > le:
            raise self.fail(path, f"must be <= {le}, got {describe(value)}")
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
        if not isinstance(value, str) or value not in options:
            raise self.fail(path, f"must be one of {', '.join(map(repr, options))}, "
                                  f"got {self.describe(value)}")
        return value

    # arrays --------------------------------------------------------------------------------
    def array(self, value: Any, path: str, shape: tuple[int | None, ...], *, integer: bool = False,
              allow_null: bool = False) -> np.ndarray:
        """A numeric array of the given shape (None = any length) from lists or the npz.

        Nulls (when allowed) become +inf. Integers must be JSON integers within int64; other
        numbers must be finite doubles. An ``.npz`` member's header is checked against
        ``shape`` (and the memory it needs) before its data is read.
        """
        if isinstance(value, dict):
            return self._npz_array(value, path, shape, integer=integer, allow_inf=allow_null)
        rows = self._walk(value, path, len(shape), integer, allow_null)
        arr = np.array(rows, dtype=np.int64 if integer else np.float64)
        if arr.ndim != len(shape):  # only when some list is empty: [] or [[], []]
            if arr.size:
                raise self.fail(path, f"must be {len(shape)}-dimensional, got shape {arr.shape}")
            arr = arr.reshape(arr.shape + tuple(0 if e is None else e
                                                for e in shape[arr.ndim:]))
        self._check_shape(arr.shape, shape, path)
        return arr

    def within(self, arr: np.ndarray, path: str, *, ge: float | None = None,
               gt: float | None = None, le: float | None = None, inf_ok: bool = False,
               what: str = "a finite number") -> None:
        """Every entry of ``arr`` finite (``+inf`` too when ``inf_ok``) and within bounds; the
        message names the first entry that is not, e.g. ``bounds.beta[3]``."""
        with np.errstate(invalid="ignore"):
            bad = np.isnan(arr) | (np.isinf(arr) & ~(inf_ok & (arr > 0)))
            finite = np.isfinite(arr)
            if ge is not None:
                bad |= finite & ~(arr >= ge)
            if gt is not None:
                bad |= finite & ~(arr > gt)
            if le is not None:
                bad |= finite & ~(arr <= le)
        if bad.any():
            where = first_true(bad)
            low = gt if gt is not None else ge
            if low is not None and le is not None:
                bounds = f" in {'(' if gt is not None else '['}{show(low)}, {show(le)}]"
            elif low is not None:
                bounds = f" {'>' if gt is not None else '>='} {show(low)}"
            else:
                bounds = f" <= {show(le)}" if le is not None else ""
            extra = " or null" if inf_ok else ""
            raise self.fail(index_path(path, where), f"must be {what}{bounds}{extra}, "
                                                     f"got {arr[where].item()!r}")

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
        for k, x in enumerate(value):
            if x is None and allow_null:
                continue
            if type(x) not in ok_types:
                kind = "an integer" if integer else "a number"
                extra = " or null" if allow_null else ""
                raise self.fail(f"{path}[{k}]",
                                f"must be {kind}{extra}, got {self.describe(x)}")
            if type(x) is int and not INT64_MIN <= x <= INT64_MAX and (
                    integer or as_double(x) is None):
                raise self.fail(f"{path}[{k}]", f"is out of range: {describe(x)}")
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
        """Open the sidecar named by field ``path``: a file inside the document's folder
        (:meth:`confined`). Only the member headers are read here."""
        file = self.confined(name, path, what=".npz file")
        try:
            found = file.is_file()
        except OSError as exc:  # e.g. a name too long for the file system
            raise self.fail(path, f"cannot open {name[:80]!r}: {exc.strerror}") from None
        if not found:
            raise self.fail(path, f"file {name!r} not found next to the instance "
                                  f"(looked for {file})")
        try:
            self.sidecar = Sidecar(file, name)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
            raise self.fail(path, f"cannot read {name!r} as .npz: {_first_line(exc)}") from None

    def npz_rows(self, value: Any) -> int | None:
        """The first dimension an ``{"npz": key}`` field's header declares (None if unknown)."""
        key = value.get("npz") if isinstance(value, dict) else None
        if not isinstance(key, str) or self.sidecar is None:  # checked when the field is read
            return None
        header = self.sidecar.headers.get(key)
        if isinstance(header, NpyHeader) and header.shape:
            return header.shape[0]
        return None

    def _npz_array(self, value: dict, path: str, shape: tuple[int | None, ...], *,
                   integer: bool, allow_inf: bool) -> np.ndarray:
        self.obj(value, path, ("npz",))
        key = value["npz"]
        if not isinstance(key, str):
            raise self.fail(f"{path}.npz", f"must be a string key, got {self.describe(key)}")
        if self.sidecar is None:
            raise self.fail(path, "refers to an .npz array, but the instance has no 'arrays' "
                                  "field naming the .npz file")
        sidecar = self.sidecar
        if key not in sidecar.headers:
            keys = ", ".join(sidecar.keys()) or "none"
            raise self.fail(f"{path}.npz", f"key {key!r} not in {sidecar.name} "
                                           f"(keys: {keys})")
        header = sidecar.headers[key]
        member = f"{sidecar.name}[{key!r}]"
        if isinstance(header, str):
            raise self.fail(path, f"{member} {header}")
        kinds = "iu" if integer else "iuf"
        if header.dtype.kind not in kinds:
            what = "integers" if integer else "numbers"
            raise self.fail(path, f"{member} must hold {what}, got dtype {header.dtype}")
        self._check_shape(header.shape, shape, path)
        check_memory(2 * 8 * header.size, f"{member} ({header.size:,} entries of 8 bytes, "
                                           "held twice while loading)",
                     file=self.file, path=path)
        try:
            arr = sidecar.read(key)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
            raise self.fail(path, f"cannot read {member}: {_first_line(exc)}") from None
        if arr.shape != header.shape or arr.dtype.kind not in kinds:
            raise self.fail(path, f"{member} changed while it was read")
        self.npz_fields.append((path, key))
        if integer:
            if arr.dtype == np.uint64 and arr.size and int(arr.max()) > INT64_MAX:
                where = first_true(arr > INT64_MAX)
                raise self.fail(index_path(path, where),
                                f"{member} holds {arr[where].item()!r}, beyond int64")
            return arr.astype(np.int64)
        arr = arr.astype(np.float64)
        bad = np.isnan(arr) | (np.isinf(arr) & ~(allow_inf & (arr > 0)))
        if bad.any():
            where = first_true(bad)
            raise self.fail(index_path(path, where),
                            f"{member} holds {arr[where].item()!r}; NaN/Infinity are rejected")
        return arr
