"""``siftopt methods``: every registered exact backend and policy with what it can do."""

from __future__ import annotations

import argparse
import json

from siftopt import registry
from siftopt.cli.common import add_format_option, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "methods", help="list the exact backends and policies with their capabilities",
        description="List every registered method: exact backends as method/formulation"
        "[/interface] (what --method, --formulation and --interface of `siftopt solve` "
        "select) and policies, with the fading and power modes they take, their limits and "
        "whether they can run here.")
    add_format_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = registry.methods()
    if args.format == "json":
        emit(json.dumps(rows, indent=2))
        return 0
    emit(render_methods(rows))
    return 0


def render_methods(rows: list[dict]) -> str:
    """A text table: name, kind, modes, availability, then the summary and limits."""
    width = max(len(r["name"]) for r in rows)
    lines = [f"{'method':<{width}}  {'kind':<6}  {'fading':<14}  {'power':<14}  here",
             "-" * (width + 46)]
    for r in rows:
        lines.append(f"{r['name']:<{width}}  {r['kind']:<6}  {','.join(r['fading']):<14}  "
                     f"{','.join(r['power']):<14}  {'yes' if r['available'] else 'no'}")
        lines.append(f"{'':<{width}}  {r['summary']}")
        if r["limits"]:
            lines.append(f"{'':<{width}}  limits: {r['limits']}")
    lines.append("")
    lines.append("exact backends: siftopt solve FILE --method METHOD --formulation FORMULATION "
                 "[--interface INTERFACE]; auto = highs/patterns/direct and cpsat/patterns")
    return "\n".join(lines)
