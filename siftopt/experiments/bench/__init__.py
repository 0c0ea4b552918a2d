"""Benchmark sweeps (``siftopt bench``): generator parameters × seeds × methods on Dask.

* :mod:`.config` — the TOML configuration, its validation and its cells (hash-keyed);
* :mod:`.cells` — :func:`run_cell`, the task a worker runs (generate, solve, simulate);
* :mod:`.runner` — the Dask cluster, the resumable Parquet store;
* :mod:`.tables`, :mod:`.plots`, :mod:`.report` — Markdown/LaTeX/CSV tables, PNG/SVG plots.
"""

from siftopt.experiments.bench.config import BenchConfig, Cell, Sweep, cells, load_bench_config
from siftopt.experiments.bench.runner import RESULTS_FILE, run_bench

__all__ = ["RESULTS_FILE", "BenchConfig", "Cell", "Sweep", "cells", "load_bench_config",
           "run_bench"]
