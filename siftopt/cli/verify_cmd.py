"""``siftopt verify PATH...``: compare policies with the exact optimum on many instances."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from siftopt.cli.common import emit, positive_float
from siftopt.cli.progress import Progress
from siftopt.errors import InputError
from siftopt.registry import exact_methods

if TYPE_CHECKING:
    from siftopt.analysis.verify import Report

DEFAULT_METHODS = ("topk", "local", "sift-decode", "sift-ratio", "sift-price")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify", help="compare policies with the exact optimum on many instances",
        description="Solve every instance exactly, run each method, and report per instance "
        "and method the energy, the optimum, the relative gap, whether the method is optimal "
        "and feasible, and its time; then a summary per method. Folders are searched "
        "recursively for *.json instance files (manifest.json and JSON files without a "
        "top-level siftopt_version are skipped). Exit status 0, or 1 when --expect-optimal "
        "fails, 2 for invalid input.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="instance files or folders")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), metavar="M1,M2,...",
                   help="comma-separated policies (or module.path:function plugins, or exact "
                   f"backends) to check (default: {','.join(DEFAULT_METHODS)})")
    p.add_argument("--exact", default="highs", choices=exact_methods(),
                   help="exact backend that provides the optimum (default: highs)")
    p.add_argument("--profile", default=None,
                   help="solver profile of the exact backend (name in solvers/ or .toml path)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                   help="wall-clock limit of each exact solve in seconds")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="output: aligned tables, one JSON object {rows, summary}, or the rows "
                   "as CSV (default: table)")
    p.add_argument("--save-counterexamples", default=None, metavar="DIR",
                   help="write every instance on which a method is feasible but suboptimal "
                   "to DIR, smallest first, with the gap in the file name")
    p.add_argument("--expect-optimal", default=None, metavar="METHOD",
                   help="exit with status 1 unless METHOD is optimal on every instance "
                   "(instances proved infeasible pass; unverified ones fail)")
    p.set_defaults(func=run)


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise InputError("give at least one method", path="--methods")
    return list(dict.fromkeys(methods))


def run(args: argparse.Namespace) -> int:
    from siftopt.analysis.verify import (
        expectation_failures,
        find_instance_files,
        save_counterexamples,
        verify,
    )
    from siftopt.io.profiles import load_profile

    methods = _methods(args.methods)
    if args.expect_optimal and args.expect_optimal not in methods:
        methods.append(args.expect_optimal)
    profile = load_profile(args.profile)
    files, skipped = find_instance_files(args.paths)
    progress = Progress("siftopt verify", unit="instances")
    report = verify(files, methods, exact=args.exact, profile=profile,
                    time_limit_s=args.time_limit, progress=progress)
    if skipped:
        print(f"siftopt verify: skipped {skipped} JSON file(s) that are not instances",
              file=sys.stderr)
    if args.save_counterexamples:
        written = save_counterexamples(report, args.save_counterexamples)
        print(f"siftopt verify: wrote {len(written)} counterexample(s) to "
              f"{args.save_counterexamples}", file=sys.stderr)
    if args.format == "json":
        emit(render_json(report))
    elif args.format == "csv":
        emit(render_csv(report))
    else:
        emit(render_table(report))
    if args.expect_optimal:
        failures = expectation_failures(report, args.expect_optimal)
        if failures:
            shown = "; ".join(f"{r.instance} ({r.verdict}"
                              + (f", gap {_percent(r.gap)} %" if r.gap is not None else "")
                              + ")"
                              for r in failures[:5])
            more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
            print(f"siftopt verify: {args.expect_optimal} is not optimal on "
                  f"{len(failures)} of {len(files)} instance(s): {shown}{more}",
                  file=sys.stderr)
            return 1
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(line[c]) for line in lines)) if lines else len(h)
              for c, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(s.rstrip() for s in out)


def _pct(value: float | None) -> float | None:
    """A fraction shown in percent (``None`` stays missing)."""
    return None if value is None else 100.0 * value


def _percent(value: float | None) -> str:
    """A gap in percent for display (the JSON and CSV keep the fraction in ``gap``)."""
    shown = _pct(value)
    if shown is None:
        return "-"
    return "0" if shown == 0 else f"{shown:.4g}"


#: Display columns of the rows: (header, field); ``gap_pct`` shows the fraction ``gap`` in %.
ROW_COLUMNS = (("instance", "instance"), ("method", "method"), ("energy_j", "energy_j"),
               ("optimum_j", "optimum_j"), ("gap_pct", "gap"), ("verdict", "verdict"),
               ("time_s", "time_s"))
#: Display columns of the summary: (header, field); ``*_gap_pct`` show fractions in %.
SUMMARY_COLUMNS = (("method", "method"), ("instances", "instances"), ("optimal", "optimal"),
                   ("pct_optimal", "pct_optimal"), ("mean_gap_pct", "mean_gap"),
                   ("max_gap_pct", "max_gap"), ("pct_infeasible", "pct_infeasible"),
                   ("refused", "refused"), ("inconsistent", "inconsistent"),
                   ("mean_time_s", "mean_time_s"), ("speedup", "speedup"))


def render_table(report: Report) -> str:
    """Rows, then the per-method summary, as aligned text tables (gaps in %, energies in J,
    times in s)."""
    def show(header: str, value: Any) -> str:
        return _percent(value) if header.endswith("gap_pct") else _fmt(value)

    header = [h for h, _ in ROW_COLUMNS]
    lines = [[show(h, getattr(r, f)) for h, f in ROW_COLUMNS] for r in report.rows]
    summary_header = [h for h, _ in SUMMARY_COLUMNS]
    summary = [[show(h, s[f]) for h, f in SUMMARY_COLUMNS] for s in report.summary]
    notes = [f"  {r.instance} / {r.method}: {r.note}" for r in report.rows
             if r.note and r.verdict not in ("optimal", "both_infeasible")]
    parts = [_table(header, lines), "", "summary (gaps in % of the optimum, over the instances "
             "where the method is feasible; % infeasible of the instances not proved "
             "infeasible; speed-up = exact time / method time)",
             _table(summary_header, summary)]
    if notes:
        parts += ["", "notes:", *notes]
    return "\n".join(parts)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def render_csv(report: Report) -> str:
    """The rows as CSV (one header line; the summary is in the table and JSON formats)."""
    import csv
    import dataclasses
    import io

    from siftopt.analysis.verify import Row

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = [f.name for f in dataclasses.fields(Row)]
    writer.writerow(fields)
    for r in report.rows:
        writer.writerow([_csv_cell(getattr(r, f)) for f in fields])
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=1, allow_nan=False)
