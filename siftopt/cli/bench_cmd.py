"""``siftopt bench CONFIG.toml --out DIR``: a resumable benchmark sweep on Dask."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from siftopt.cli.common import emit, positive_int
from siftopt.cli.progress import Progress
from siftopt.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark sweep (generator x seeds x methods) on Dask",
        description="Run the sweep of CONFIG.toml: every grid point of generator parameters "
        "x seed is one instance (a cell), solved by every configured method (exact backends "
        "and policies, optional Monte Carlo under Rayleigh fading). Cells run in parallel on "
        "a local Dask cluster (processes, one thread each) or on an existing cluster "
        "(--scheduler). Results go to DIR/results.parquet as they arrive; a rerun skips the "
        "finished ones (cells are keyed by a hash of their configuration). Then writes "
        "tables (DIR/tables: Markdown, LaTeX, CSV), plots (DIR/plots: PNG, SVG) and "
        "DIR/report.md, and prints the energy per method. Format: docs/benchmarks.md.")
    p.add_argument("config", metavar="CONFIG.toml", help="benchmark configuration")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of an existing Dask scheduler, e.g. tcp://host:8786 "
                   "(default: start a local cluster)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: the CPUs available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


#: Columns of the headline table printed on the terminal (the full table is in DIR/tables).
TERMINAL_COLUMNS = ("method", "cells", "feasible %", "compared", "energy (mJ)", "optimum (mJ)",
                    "optimal %", "mean gap (%)", "max gap (%)", "saved vs", "optimum saves (%)",
                    "mean time (s)")


def run(args: argparse.Namespace) -> int:
    from siftopt.cli.render import format_table
    from siftopt.experiments.bench.config import load_bench_config
    from siftopt.experiments.bench.report import write_report
    from siftopt.experiments.bench.runner import check_scheduler_address, run_bench
    from siftopt.experiments.bench.tables import run_summary

    if args.scheduler and args.workers:
        raise InputError("--workers applies to the local cluster only; with --scheduler the "
                         "cluster's own workers are used", path="--workers")
    if args.scheduler:
        check_scheduler_address(args.scheduler)
    bench = load_bench_config(args.config)
    out = Path(args.out)
    created = _make_folder(out)
    try:
        run_info = run_bench(bench, out, scheduler=args.scheduler, workers=args.workers,
                             progress=Progress("siftopt bench", unit="cells",
                                               enabled=not args.quiet))
    except BaseException:
        if created is not None:
            _remove_if_empty(out, created)
        raise
    frame = run_info["frame"]
    if frame.empty:
        emit("no results")
        return 0
    command = "siftopt bench " + " ".join(shlex.quote(a) for a in _argv(args))
    tables, _ = write_report(frame, bench, out, run_info, command)
    headline = tables[0]
    what = run_summary(bench)
    emit(f"ran {what[0]}\n    {what[1]}\n    {what[2]} ({run_info['computed']} computed, "
         f"{run_info['skipped']} reused, {run_info['elapsed_s']:.1f} s)")
    emit(headline.title)
    keep = [i for i, h in enumerate(headline.header) if h.startswith(TERMINAL_COLUMNS)]
    emit(format_table([[row[i] for i in keep] for row in headline.rows],
                      [headline.header[i] for i in keep]))
    emit(f"* {headline.notes[0]}")
    emit(f"* {_cell_counts(headline.csv, bench.reference)}")
    same = next((table for table in tables if table.name == "same-cells"), None)
    if same is not None and same.rows:
        emit(same.title)
        emit(format_table(same.rows, same.header))
        for note in same.notes:
            emit(f"* {note}")
    emit(f"all columns and notes in {out / 'tables' / 'headline.md'}; tables, plots and "
         f"report.md in {out}")
    return 0


def _cell_counts(stats: Any, reference: str | None) -> str:
    """One line: cells proved infeasible or unproved, which enter no energy."""
    if reference is None or stats.empty or reference not in set(stats["method"]):
        return "no exact reference: no optimum, no comparison"
    row = stats.set_index("method").loc[reference]
    return (f"compared = cells where {reference} proved the optimum and the method's decision "
            f"is feasible; of {int(row['cells'])} cells, {int(row['proved_infeasible'])} "
            f"proved infeasible and {int(row['unproved'])} unproved enter no energy; "
            "feasible % is over the cells not proved infeasible")


def _make_folder(out: Path) -> Path | None:
    """Create the output folder (an error is exit 2); the topmost folder this call created,
    or None when ``out`` existed."""
    missing = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        missing = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder: {exc.strerror or exc}",
                         file=str(out)) from None
    return missing


def _remove_if_empty(out: Path, top: Path) -> None:
    """Remove the folders from ``out`` up to ``top`` that this run created, if still empty
    (a failed start leaves nothing behind)."""
    for folder in (out, *out.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return


def _argv(args: argparse.Namespace) -> list[str]:
    out = [args.config, "--out", args.out]
    if args.scheduler:
        out += ["--scheduler", args.scheduler]
    if args.workers:
        out += ["--workers", str(args.workers)]
    return out
