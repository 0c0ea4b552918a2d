"""``siftopt evaluate FILE SOLUTION.json``: re-evaluate an action set with the evaluator."""

from __future__ import annotations

import argparse

from siftopt.cli.common import add_format_option, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="re-evaluate a solution's actions on an instance",
        description="Re-evaluate the actions of SOLUTION.json (as written by `siftopt solve "
        "--out` or printed with --format json) on FILE with the same evaluator every method "
        "uses, and print the same result object. Status: feasible or infeasible "
        "(with the violations).")
    p.add_argument("file", metavar="FILE", help="instance file (.json)")
    p.add_argument("solution", metavar="SOLUTION.json", help="solution file")
    add_format_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from siftopt.cli.render import result_table
    from siftopt.io.instance_file import load_instance
    from siftopt.io.solution import dumps, read_solution, result_json
    from siftopt.model.evaluate import evaluate
    from siftopt.result import FEASIBLE, INFEASIBLE, SolveResult

    inst = load_instance(args.file)
    actions = read_solution(args.solution, inst)
    ev = evaluate(inst, actions, file=args.solution)
    message = "; ".join(v.message for v in ev.violations)
    result = SolveResult(method="evaluate", status=FEASIBLE if ev.feasible else INFEASIBLE,
                         evaluation=ev, dual_bound_j=None, build_time_s=0.0, solve_time_s=0.0,
                         message=message)
    emit(dumps(result_json(inst, result)) if args.format == "json"
         else result_table(inst, result))
    return 0
