"""``siftopt solve FILE --method METHOD``: solve an instance exactly or with a policy."""

from __future__ import annotations

import argparse

from siftopt.cli.common import add_format_option, emit, positive_float, positive_int, write_text
from siftopt.errors import InputError
from siftopt.registry import FORMULATIONS, INTERFACES, exact_methods


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "solve", help="solve an instance (exact backend or policy)",
        description="Solve an instance file. Exact methods: highs (HiGHS; by default the "
        "pattern master assembled directly, the Pyomo models on request), cpsat (OR-Tools "
        "CP-SAT), brute (enumeration, tiny instances). Any policy name "
        "(topk, local, sift-decode, sift-ratio, sift-price) or module.path:function runs "
        "that policy. Exit status 0 when a verdict was reached (infeasible included).")
    p.add_argument("file", metavar="FILE", help="instance file (.json)")
    p.add_argument("--method", default="highs",
                   help=f"exact backend ({', '.join(exact_methods())}) or policy (default: highs)")
    p.add_argument("--profile", default=None,
                   help="solver profile: a name in solvers/ (default, parallel, quick) or a "
                   ".toml path (default: the built-in exact profile)")
    p.add_argument("--formulation", choices=FORMULATIONS, default="auto",
                   help="exact model: slots (one binary per slot action; Pyomo for highs), "
                   "patterns (one choice of node set per token; highspy directly for highs), "
                   "lagrange (cpsat only: its own patterns, a Lagrangian bound and CP-SAT on "
                   "what reduced-cost fixing leaves; the second certificate at scale), "
                   "auto (the default: patterns, which fall back to slots on their own when "
                   "the pattern space is too large)")
    p.add_argument("--interface", choices=INTERFACES, default="auto",
                   help="how a highs model reaches HiGHS: pyomo (the declarative reference "
                   "models), direct (assembled with numpy, highspy passModel), auto (the "
                   "default: pyomo for slots, direct for patterns)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                   help="wall-clock limit of the solve in seconds (overrides the profile)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads / CP-SAT workers (overrides the profile)")
    p.add_argument("--warm-start", default=None, metavar="POLICIES",
                   help="comma-separated policies (or 'all' for every built-in one): the exact "
                   "backend starts from the best feasible of their answers (HiGHS direct "
                   "models: setSolution; CP-SAT: hints; the Pyomo models cannot use it)")
    add_format_option(p)
    p.add_argument("--out", default=None, metavar="SOLUTION.json",
                   help="also write the result object (JSON) to this file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from siftopt.cli.render import result_table
    from siftopt.facade import solve
    from siftopt.io.instance_file import load_instance
    from siftopt.io.profiles import load_profile
    from siftopt.io.solution import dumps, result_json

    inst = load_instance(args.file)
    profile = load_profile(args.profile)
    if args.threads is not None:
        profile = type(profile)(name=profile.name, time_limit_s=profile.time_limit_s,
                                threads=args.threads, highs=profile.highs, cpsat=profile.cpsat)
    result = solve(inst, args.method, profile=profile, time_limit_s=args.time_limit,
                   formulation=args.formulation, warm_start=warm_start_policies(args.warm_start),
                   interface=args.interface)
    obj = result_json(inst, result)
    if args.out:
        write_text(args.out, dumps(obj) + "\n")
    emit(dumps(obj) if args.format == "json" else result_table(inst, result))
    return 0


def warm_start_policies(text: str | None) -> list[str] | None:
    """``--warm-start``: None, ``all`` (every registered policy) or a comma-separated list
    (checked: unknown names are an InputError naming ``--warm-start``)."""
    if text is None:
        return None
    from siftopt.facade import resolve_policy
    from siftopt.policies import POLICIES

    names = list(POLICIES) if text == "all" else [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name in exact_methods():
            raise InputError(f"{name!r} is an exact method, not a policy", path="--warm-start")
        try:
            resolve_policy(name)
        except InputError as exc:
            raise InputError(exc.detail, path="--warm-start") from None
    if not names:
        raise InputError("no policy named", path="--warm-start")
    return names
