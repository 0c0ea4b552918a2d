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

#: Subcommands in the order of ``siftopt --help``: name → (module, one-line help). Only the
#: module of the command that runs is imported, so ``siftopt --help`` and each command start
#: without loading the others (numpy, pandas, solvers, Dask, ...).
COMMANDS: dict[str, tuple[str, str]] = {
    "solve": ("siftopt.cli.solve_cmd", "solve an instance (exact backend or policy)"),
    "evaluate": ("siftopt.cli.evaluate_cmd", "re-evaluate a solution's actions on an instance"),
    "inspect": ("siftopt.cli.inspect_cmd",
                "show caps, energy tables, candidates and top-K sets of an instance"),
    "methods": ("siftopt.cli.methods_cmd",
                "list the exact backends and policies with their capabilities"),
    "verify": ("siftopt.cli.verify_cmd",
               "compare policies with the exact optimum on many instances"),
    "simulate": ("siftopt.cli.simulate_cmd",
                 "Monte Carlo simulation of a decision under Rayleigh fading"),
    "similarity": ("siftopt.cli.similarity_cmd",
                   "skip and replacement constants β, δ from expert weights"),
    "validate-accuracy": ("siftopt.cli.validate_cmd",
                          "check the accuracy bound on a real trained MoE"),
    "generate": ("siftopt.cli.generate_cmd",
                 "write realistic instances from architecture and wireless presets"),
    "bench": ("siftopt.cli.bench_cmd",
              "run a benchmark sweep (generator x seeds x methods) on Dask"),
}
#: The subcommand modules (tests may add their own).
SUBCOMMAND_MODULES: tuple[str, ...] = tuple(module for module, _ in COMMANDS.values())


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message} (see --help)")


def _chosen_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on the command line (its first non-option word), if any."""
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None, *, load_all: bool = False
                 ) -> argparse.ArgumentParser:
    """The parser; only the module of the command in ``argv`` is imported (every module with
    ``load_all``), the others appear in ``--help`` by name and help line."""
    parser = _Parser(
        prog="siftopt",
        description="Energy-efficient expert selection for wireless distributed MoE inference: "
        "exact solving (HiGHS, CP-SAT), closed-form policies and their verification.",
    )
    parser.add_argument("--version", action="version", version=f"siftopt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = _chosen_command(argv)
    helps = {module: text for module, text in COMMANDS.values()}
    for module_name in SUBCOMMAND_MODULES:
        command = next((c for c, (m, _) in COMMANDS.items() if m == module_name), None)
        if load_all or command is None or command == chosen:
            module = importlib.import_module(module_name)
            module.register(sub)
        else:
            sub.add_parser(command, help=helps[module_name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns (and, as a console script, exits with) the status."""
    debug = bool(os.environ.get("SIFTOPT_DEBUG"))
    try:
        parser = build_parser(argv)
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
