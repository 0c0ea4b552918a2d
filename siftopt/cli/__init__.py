"""The ``siftopt`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (a callable taking
the parsed namespace and returning the exit status). Exit statuses follow docs/model.md §7:
0 when a verdict was reached, 2 for invalid input or usage (one line on stderr, no traceback),
1 for an internal error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from siftopt.errors import InputError
from siftopt.version import __version__

#: Subcommand modules, in the order they appear in ``siftopt --help``.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "siftopt.cli.solve_cmd",
    "siftopt.cli.evaluate_cmd",
    "siftopt.cli.inspect_cmd",
    "siftopt.cli.methods_cmd",
    "siftopt.cli.verify_cmd",
    "siftopt.cli.simulate_cmd",
    "siftopt.cli.similarity_cmd",
    "siftopt.cli.validate_cmd",
    "siftopt.cli.generate_cmd",
    "siftopt.cli.bench_cmd",
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="siftopt",
        description="Energy-efficient expert selection for wireless distributed MoE inference: "
        "exact solving (HiGHS, CP-SAT), closed-form policies and their verification.",
    )
    parser.add_argument("--version", action="version", version=f"siftopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a subcommand not built yet
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a console script, exits with) the status."""
    debug = bool(os.environ.get("SIFTOPT_DEBUG"))
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return int(args.func(args))
    except InputError as exc:
        print(f"siftopt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("siftopt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            raise
        print(
            f"siftopt: internal error: {type(exc).__name__}: {exc} "
            "(set SIFTOPT_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


def run() -> None:  # pragma: no cover - console-script shim
    sys.exit(main())
