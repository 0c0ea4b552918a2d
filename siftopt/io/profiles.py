"""Solver profiles: TOML parameter sets per backend, selected with ``--profile``.

A profile is a TOML file with up to three tables::

    time_limit_s = 600      # top level: wall-clock limit of one solve, s
    threads = 1             # top level: threads / workers for either backend
    [highs]                 # options passed verbatim to HiGHS
    mip_rel_gap = 0.0
    [cpsat]                 # fields of the CP-SAT SatParameters message
    presolve_inclusion_work_limit = 0

``--profile NAME`` looks for ``NAME.toml`` in ``./solvers/`` and then among the profiles that
ship inside the package (``siftopt/solvers/``: ``default``, ``parallel``, ``quick``), so it
works from any directory after any install; ``--profile PATH.toml`` reads that file. Without
``--profile`` the shipped ``default`` profile is used (the exactness settings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from siftopt.errors import InputError
from siftopt.io.reader import INT64_MAX, INT64_MIN, Reader, is_number

_TOP_KEYS = ("time_limit_s", "threads", "highs", "cpsat", "description")
#: Accepted ranges: the time limit of one solve (s) and the threads / CP-SAT workers.
MAX_TIME_LIMIT_S = 1e9
MAX_THREADS = 1024
#: Largest HiGHS ``*_tolerance`` option accepted: looser tolerances let HiGHS return values
#: that are not integral or not within the rows, which no exact answer can be built from.
MAX_HIGHS_TOLERANCE = 1e-4


def _check_option(r: Reader, path: str, value: Any, *, lists: bool) -> None:
    """A solver option's value: a boolean, an int64, a finite number or a string (CP-SAT's
    repeated fields also take a list of those). Whether the solver knows the option and
    accepts the value is the backend's check."""
    if isinstance(value, list) and lists:
        for k, item in enumerate(value):
            _check_option(r, f"{path}[{k}]", item, lists=False)
        return
    if isinstance(value, bool | str):
        return
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return
    if type(value) is float and math.isfinite(value):
        return
    kinds = "a boolean, an integer, a finite number, a string" + (" or a list of those"
                                                                  if lists else "")
    raise r.fail(path, f"must be {kinds}, got {value!r}"[:200])


@dataclass(frozen=True)
class Profile:
    """A parsed solver profile."""

    name: str
    time_limit_s: float | None
    threads: int
    highs: dict[str, Any] = field(default_factory=dict)
    cpsat: dict[str, Any] = field(default_factory=dict)
    file: str = ""  # where it was read from (error messages)


def _shipped_profiles() -> dict[str, Traversable]:
    """The profiles that ship inside the package (``siftopt/solvers/*.toml``), by name."""
    folder = resources.files("siftopt.solvers")
    return {entry.name[:-5]: entry for entry in folder.iterdir()
            if entry.name.endswith(".toml") and entry.is_file()}


def _local_profiles() -> dict[str, Path]:
    """Profiles in ``./solvers/`` of the working directory (they take precedence)."""
    folder = Path.cwd() / "solvers"
    return {p.stem: p for p in folder.glob("*.toml")} if folder.is_dir() else {}


def find_profile(name: str) -> Path | Traversable:
    """The file of a profile given by name or path; raises InputError if there is none.

    A name is looked up in ``./solvers/`` first, then among the profiles shipped with the
    package (``default``, ``parallel``, ``quick``), so it works from any directory."""
    candidate = Path(name)
    if candidate.suffix == ".toml" or "/" in name:
        try:
            if candidate.is_file():
                return candidate
        except OSError as exc:  # e.g. a name too long for the file system
            raise InputError(f"cannot open: {exc.strerror}", file=name[:200]) from None
        raise InputError("profile file not found", file=name)
    local, shipped = _local_profiles(), _shipped_profiles()
    if name in local:
        return local[name]
    if name in shipped:
        return shipped[name]
    known = sorted({*local, *shipped})
    raise InputError(f"unknown profile {name!r} (known: {', '.join(known) or 'none'}; "
                     "or give a path to a .toml file)", path="--profile")


def load_profile(name: str | None) -> Profile:
    """Load a profile by name or path (``None`` = the built-in default)."""
    path = _shipped_profiles()["default"] if name is None else find_profile(name)
    if isinstance(path, Path):
        raw = Reader(str(path), syntax="TOML").load(path, "a profile .toml file")
        return _profile_from_dict(path.stem, raw, str(path))
    file = f"<siftopt>/solvers/{path.name}"
    raw = Reader(file, syntax="TOML").parse(path.read_text(encoding="utf-8"))
    return _profile_from_dict(path.name[:-5], raw, file)


def _profile_from_dict(name: str, raw: dict[str, Any], file: str) -> Profile:
    r = Reader(file, syntax="TOML")
    for key in raw:
        if key not in _TOP_KEYS:
            raise r.fail(key, f"unknown key {key!r} (allowed: {', '.join(_TOP_KEYS)})")
    if "description" in raw:
        r.string(raw["description"], "description")
    limit = raw.get("time_limit_s")
    if limit is not None and not (is_number(limit) and 0 < limit <= MAX_TIME_LIMIT_S):
        raise r.fail("time_limit_s", f"must be a number of seconds in (0, {MAX_TIME_LIMIT_S:g}], "
                                     f"got {limit!r}")
    threads = raw.get("threads", 1)
    if type(threads) is not int or not 1 <= threads <= MAX_THREADS:
        raise r.fail("threads", f"must be an integer in 1..{MAX_THREADS}, got {threads!r}")
    for section in ("highs", "cpsat"):
        if not isinstance(raw.get(section, {}), dict):
            raise r.fail(section, "must be a table")
        for key, value in raw.get(section, {}).items():
            _check_option(r, f"{section}.{key}", value, lists=section == "cpsat")
    for key, value in raw.get("highs", {}).items():
        if key.endswith("_tolerance") and is_number(value) and not (
                0 < value <= MAX_HIGHS_TOLERANCE):
            raise r.fail(f"highs.{key}", f"must be in (0, {MAX_HIGHS_TOLERANCE:g}] (an exact "
                         f"answer needs tight tolerances), got {value!r}")
    return Profile(name=name, time_limit_s=None if limit is None else float(limit),
                   threads=threads, highs=dict(raw.get("highs", {})),
                   cpsat=dict(raw.get("cpsat", {})), file=file)
