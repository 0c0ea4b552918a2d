"""Resource limits that readers check before they allocate.

A file's declared sizes (an instance's N, L and K, an ``.npz`` member's header shape) say how
much memory reading and solving it will take; a reader that knows the estimate calls
:func:`check_memory` *before* it allocates, so that a file too large for the machine ends in a
one-line :class:`~siftopt.errors.InputError` with the estimate, not in an out-of-memory kill.

The limit is the machine's physical memory, or the container's (cgroup) limit when that is
lower. The environment variable ``SIFTOPT_MEMORY_LIMIT`` sets another one: a number of bytes,
optionally with a ``K``, ``M``, ``G`` or ``T`` suffix (powers of 1024), e.g. ``8G``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from siftopt.errors import InputError, UsageError

MEMORY_LIMIT_ENV = "SIFTOPT_MEMORY_LIMIT"
#: Bytes that parsing a JSON or TOML text may take per byte of text: the text itself and one
#: Python object (up to 32 bytes) for every number of a few characters.
TEXT_PARSE_FACTOR = 10
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_CGROUP_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def machine_memory_bytes() -> int | None:
    """Physical memory, or the cgroup limit when lower (bytes); None when unknown."""
    sizes = []
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    sizes += [n for n in map(_read_int, _CGROUP_FILES) if n is not None and n > 0]
    return min(sizes) if sizes else None


def memory_limit_bytes() -> int | None:
    """The memory a reader may plan for (bytes): ``SIFTOPT_MEMORY_LIMIT`` if set, else
    :func:`machine_memory_bytes`; None when neither is known (no check)."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not text:
        return machine_memory_bytes()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", text, flags=re.IGNORECASE)
    if not match:
        raise UsageError(f"{MEMORY_LIMIT_ENV}: expected a number of bytes with an optional "
                         f"K, M, G or T suffix, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def format_bytes(n: float) -> str:
    """``26.8 GiB`` (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_memory(need_bytes: int, what: str, *, file: str | None = None,
                 path: str | None = None) -> None:
    """InputError (naming ``file`` and ``path``) when ``need_bytes`` exceed the limit.

    ``what`` says what needs the memory, e.g. ``"bounds.delta (N² × 8 B) and its copies"``.
    """
    limit = memory_limit_bytes()
    if limit is None or need_bytes <= limit:
        return
    source = (f"{MEMORY_LIMIT_ENV}" if os.environ.get(MEMORY_LIMIT_ENV, "").strip()
              else "this machine's memory")
    raise InputError(f"{what} would need about {format_bytes(need_bytes)}, more than "
                     f"{source} ({format_bytes(limit)})", file=file, path=path)
