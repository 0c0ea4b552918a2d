"""The report of a benchmark run: tables, plots, ``report.md`` and ``bench.json`` in DIR."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import pandas as pd

from siftopt.experiments.bench.config import BenchConfig, cells
from siftopt.experiments.bench.plots import all_plots
from siftopt.experiments.bench.tables import (
    Table,
    all_tables,
    to_markdown,
    with_derived,
    write_tables,
)
from siftopt.version import __version__


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"siftopt": __version__, "python": platform.python_version()}
    for name in ("numpy", "pandas", "highspy", "ortools", "dask", "distributed", "pyarrow",
                 "matplotlib"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def report_markdown(tables: list[Table], plots: list[Path], bench: BenchConfig,
                    out_dir: Path, run: dict[str, Any], command: str) -> str:
    """``report.md``: how it was made, every table, every plot (PNG links relative to DIR)."""
    lines = [f"# Benchmark: {Path(bench.file).name}", ""]
    if bench.description:
        lines += [bench.description, ""]
    lines += [f"Command: `{command}`", "",
              f"{len(cells(bench))} cells (instances); methods {', '.join(bench.methods)}; "
              f"{len(bench.seeds)} seed(s) per grid point unless a sweep sets its own; exact "
              f"time limit {bench.time_limit_s:g} s. "
              f"This run computed {run['computed']} result(s) and reused {run['skipped']} "
              f"in {run['elapsed_s']:.1f} s.", ""]
    for table in tables:
        lines += [f"## {table.title}", "", to_markdown(table).rstrip(), ""]
        lines += [f"*{note}*" for note in table.notes] + [""]
    pngs = [p for p in plots if p.suffix == ".png"]
    if pngs:
        lines += ["## Plots", ""]
        for path in pngs:
            rel = path.relative_to(out_dir).as_posix()
            lines += [f"![{path.stem}]({rel})", ""]
    return "\n".join(lines)


def write_report(frame: pd.DataFrame, bench: BenchConfig, out_dir: Path, run: dict[str, Any],
                 command: str) -> tuple[list[Table], list[Path]]:
    """Write tables (``tables/``), plots (``plots/``), ``report.md`` and ``bench.json``."""
    derived = with_derived(frame, bench)
    tables = all_tables(derived, bench)
    written = write_tables(tables, out_dir / "tables")
    plots = all_plots(derived, bench, out_dir / "plots")
    text = report_markdown(tables, plots, bench, out_dir, run, command)
    (out_dir / "report.md").write_text(text + "\n", encoding="utf-8")
    meta = {"config": bench.file, "command": command, "cells": len(cells(bench)),
            "rows": len(frame), "computed": run["computed"], "skipped": run["skipped"],
            "elapsed_s": round(run["elapsed_s"], 3), "versions": _versions(),
            "tables": [p.relative_to(out_dir).as_posix() for p in written],
            "plots": [p.relative_to(out_dir).as_posix() for p in plots]}
    (out_dir / "bench.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return tables, plots
