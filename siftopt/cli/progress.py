"""The one progress reporter of the command line (stderr), for every long run.

On a terminal it redraws one line at most five times a second; when stderr is not a terminal
(CI logs, ``2> file``, a batch system) it prints a plain line at every tenth of the work and
at least every ``interval_s`` seconds, so a long run is never silent. Logic modules take a
``progress(done, total, note)`` callback and never print; the CLI passes a :class:`Progress`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``progress(done, total, note)``: report ``done`` of ``total`` units of ``label``."""

    def __init__(self, label: str, *, unit: str = "", stream: TextIO | None = None,
                 enabled: bool = True, interval_s: float = 10.0) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = interval_s
        self.started = time.perf_counter()
        self._last_print = 0.0
        self._last_tenth = 0

    def __call__(self, done: int, total: int, note: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter() - self.started
        finished = done >= total
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.label}: {done}/{total}{unit} ({now:.1f} s)" + (f" {note}" if note else "")
        if self.tty:
            if finished or now - self._last_print >= 0.2:
                self._last_print = now
                self.stream.write(f"\r{text[:110]:<110}" + ("\n" if finished else ""))
                self.stream.flush()
            return
        tenth = (10 * done) // max(total, 1)
        if finished or tenth > self._last_tenth or now - self._last_print >= self.interval_s:
            self._last_tenth, self._last_print = tenth, now
            self.stream.write(text + "\n")
            self.stream.flush()
