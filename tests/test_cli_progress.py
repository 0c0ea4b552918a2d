"""The command line's one progress reporter: never silent off a terminal, quiet when asked."""

from __future__ import annotations

import io

from siftopt.cli.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_prints_a_line_per_tenth_and_the_end() -> None:
    stream = io.StringIO()
    report = Progress("siftopt bench", unit="cells", stream=stream)
    for done in range(1, 101):
        report(done, 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ..., 100 %
    assert lines[-1].startswith("siftopt bench: 100/100 cells")
    assert "\r" not in stream.getvalue()


def test_not_a_terminal_prints_at_least_every_interval() -> None:
    stream = io.StringIO()
    report = Progress("verify", stream=stream, interval_s=0.0)
    for done in range(1, 6):
        report(done, 1000)
    assert len(stream.getvalue().splitlines()) == 5


def test_terminal_redraws_one_line() -> None:
    stream = _Tty()
    report = Progress("verify", stream=stream)
    for done in range(1, 51):
        report(done, 50, "instance-a")
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and "\r" in text
    assert "50/50" in text and "instance-a" in text


def test_disabled_prints_nothing() -> None:
    stream = io.StringIO()
    Progress("bench", stream=stream, enabled=False)(1, 1)
    assert stream.getvalue() == ""
