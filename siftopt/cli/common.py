"""Helpers shared by the subcommands: output writing and common options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from siftopt.errors import InputError


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_format_option(parser: argparse.ArgumentParser, choices: tuple[str, ...] = ("table", "json")
                      ) -> None:
    parser.add_argument("--format", choices=choices, default=choices[0],
                        help=f"output format (default: {choices[0]})")


def write_text(path: str, text: str) -> None:
    """Write an output file, turning OS errors into one-line input errors."""
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", file=path) from None


def emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
