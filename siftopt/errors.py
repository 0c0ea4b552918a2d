"""Error types that the command line turns into one-line messages with exit status 2."""

from __future__ import annotations


class InputError(Exception):
    """Invalid user input (instance file, solution file, profile, option).

    The message is a single line that names the file and the field path, e.g.
    ``inst.json: nodes[0].bandwidth_hz: must be > 0, got -1``. Readers of files raise it
    through :class:`siftopt.io.reader.Reader`.
    """

    def __init__(self, message: str, *, file: str | None = None, path: str | None = None):
        self.file = file
        self.path = path
        self.detail = message
        parts = [p for p in (file, path) if p]
        super().__init__(": ".join([*parts, message]))


class UsageError(InputError):
    """A command-line usage problem (bad option value, incompatible options)."""


class PolicyRefusal(InputError):
    """A policy declines an instance it cannot handle (e.g. past its documented size limit)."""
