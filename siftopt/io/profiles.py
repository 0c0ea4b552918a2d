"""Solver profiles: TOML parameter sets per backend, selected with ``--profile``.

A profile is a TOML file with up to three tables::

    time_limit_s = 600      # top level: wall-clock limit of one solve, s
    threads = 1             # top level: threads / workers for either backend
    [highs]                 # options passed verbatim to HiGHS
    mip_rel_gap = 0.0
    [cpsat]                 # fields of the CP-SAT SatParameters message
    presolve_inclusion_work_limit = 0

``--profile NAME`` looks for ``NAME.toml`` in ``./solvers/`` and in the ``solvers/`` folder
of the source tree; ``--profile PATH.toml`` reads that file. Without ``--profile`` the
built-in ``default`` profile is used (the same settings as ``solvers/default.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from siftopt.errors import InputError
from siftopt.io.reader import Reader

#: The exactness settings; solvers/default.toml repeats them for users to copy.
DEFAULT_PROFILE: dict[str, Any] = {
    "time_limit_s": 600.0,
    "threads": 1,
    "highs": {
        "mip_rel_gap": 0.0,
        "mip_abs_gap": 0.0,
        "mip_feasibility_tolerance": 1e-9,
        "primal_feasibility_tolerance": 1e-10,
        "presolve": "on",
    },
    "cpsat": {
        "relative_gap_limit": 0.0,
        "absolute_gap_limit": 0.0,
        "presolve_inclusion_work_limit": 0,
    },
}

_TOP_KEYS = ("time_limit_s", "threads", "highs", "cpsat", "description")


@dataclass(frozen=True)
class Profile:
    """A parsed solver profile."""

    name: str
    time_limit_s: float | None
    threads: int
    highs: dict[str, Any] = field(default_factory=dict)
    cpsat: dict[str, Any] = field(default_factory=dict)


def _source_tree_solvers() -> Path:
    return Path(__file__).resolve().parent.parent / "solvers"


def find_profile(name: str) -> Path:
    """The file of a profile given by name or path; raises InputError if there is none."""
    candidate = Path(name)
    if candidate.suffix == ".toml" or "/" in name:
        if candidate.is_file():
            return candidate
        raise InputError("profile file not found", file=name)
    for folder in (Path.cwd() / "solvers", _source_tree_solvers()):
        path = folder / f"{name}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for folder in (Path.cwd() / "solvers", _source_tree_solvers())
                    if folder.is_dir() for p in folder.glob("*.toml")})
    raise InputError(f"unknown profile {name!r} (known: {', '.join(known) or 'none'}; "
                     "or give a path to a .toml file)", path="--profile")


def load_profile(name: str | None) -> Profile:
    """Load a profile by name or path (``None`` = the built-in default)."""
    if name is None:
        return _profile_from_dict("default", DEFAULT_PROFILE, "<built-in default>")
    path = find_profile(name)
    raw = Reader(str(path), syntax="TOML").load(path, "a profile .toml file")
    return _profile_from_dict(path.stem, raw, str(path))


def _profile_from_dict(name: str, raw: dict[str, Any], file: str) -> Profile:
    r = Reader(file, syntax="TOML")
    for key in raw:
        if key not in _TOP_KEYS:
            raise r.fail(key, f"unknown key {key!r} (allowed: {', '.join(_TOP_KEYS)})")
    limit = raw.get("time_limit_s")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int | float)
                              or limit <= 0):
        raise r.fail("time_limit_s", f"must be a positive number of seconds, got {limit!r}")
    threads = raw.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise r.fail("threads", f"must be a positive integer, got {threads!r}")
    for section in ("highs", "cpsat"):
        if not isinstance(raw.get(section, {}), dict):
            raise r.fail(section, "must be a table")
    return Profile(name=name, time_limit_s=None if limit is None else float(limit),
                   threads=threads, highs=dict(raw.get("highs", {})),
                   cpsat=dict(raw.get("cpsat", {})))
