"""HiGHS plumbing every HiGHS model shares (direct highspy and Pyomo alike).

* options: the profile's ``[highs]`` table checked once (:func:`check_highs_options`), the
  process-wide thread scheduler kept in step with the profile (:func:`use_threads`), a
  silent ``Highs`` object with the profile's options and the time limit (:func:`new_highs`);
* models in CSC layout (:class:`Columns`, :func:`pass_model`, :func:`add_columns`) and
  no-good cut rows (:func:`add_cut_rows`);
* a MILP run and its status (:func:`run_mip`: ``optimal`` means proved with the profile's
  gaps at 0, or a bound that meets the incumbent); with a deadline, a large MILP runs in a
  worker process killed at the deadline (:mod:`siftopt.backends.highs.isolated`);
* bounds over time from HiGHS's improving-solution callback (:func:`watch_highs`).

HiGHS prints a banner when a ``Highs`` object is constructed; it is swallowed here.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import highspy
import numpy as np

from siftopt.backends.base import Cut
from siftopt.errors import InputError
from siftopt.io.profiles import Profile
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT

INF = highspy.kHighsInf

_scheduler_threads: int | None = None


def use_threads(threads: int) -> None:
    """HiGHS keeps one global thread scheduler per process, sized by the first run; a later
    run asking for another size fails unless the scheduler is reset first."""
    global _scheduler_threads
    if _scheduler_threads is not None and _scheduler_threads != threads:
        highspy.Highs.resetGlobalScheduler(True)
    _scheduler_threads = threads


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null for the block (HiGHS prints from C++)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _silent_highs() -> highspy.Highs:
    with _quiet_stdout():  # the constructor prints a banner
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    return highs


#: Option tables HiGHS accepted (checking one constructs a HiGHS object, about 1 ms).
_accepted_options: set[tuple[tuple[str, Any], ...]] = set()


def check_highs_options(options: dict[str, Any]) -> None:
    """InputError naming the first option of a profile's ``[highs]`` table HiGHS rejects
    (also where no HiGHS run follows, e.g. the decode rule). A table accepted once is not
    checked again in the same process."""
    try:
        table: tuple[tuple[str, Any], ...] | None = tuple(sorted(options.items()))
        hash(table)
    except TypeError:  # an unhashable value: check every time
        table = None
    if table is not None and table in _accepted_options:
        return
    with _quiet_stdout():  # and any complaint about an option
        probe = highspy.Highs()
        probe.setOptionValue("output_flag", False)
        statuses = {key: probe.setOptionValue(key, value) for key, value in options.items()}
    for key, value in options.items():
        if statuses[key] != highspy.HighsStatus.kOk:
            raise InputError(f"HiGHS rejects option {key} = {value!r}", path=f"highs.{key}")
    if table is not None:
        _accepted_options.add(table)


def new_highs(profile: Profile, time_limit_s: float | None, *, lp_only: bool = False
              ) -> highspy.Highs:
    """A silent HiGHS object with the profile's options, threads and time limit (s);
    ``lp_only`` leaves out the ``mip_*`` options."""
    highs = _silent_highs()
    use_threads(profile.threads)
    highs.setOptionValue("threads", profile.threads)
    for key, value in profile.highs.items():
        if lp_only and key.startswith("mip_"):
            continue
        if highs.setOptionValue(key, value) != highspy.HighsStatus.kOk:
            raise InputError(f"HiGHS rejects option {key} = {value!r}", path=f"highs.{key}")
    if time_limit_s is not None:
        highs.setOptionValue("time_limit", max(float(time_limit_s), 1e-3))
    return highs


def gaps_zero(profile: Profile) -> bool:
    """Whether the profile asks HiGHS for a proved optimum (relative and absolute gaps 0)."""
    return (profile.highs.get("mip_rel_gap", 0.0) == 0
            and profile.highs.get("mip_abs_gap", 0.0) == 0)


@dataclass
class Columns:
    """Columns in CSC layout: cost, bounds, integrality and the matrix entries."""

    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integer: np.ndarray  # bool
    start: np.ndarray  # (n + 1,)
    index: np.ndarray  # row of each entry
    value: np.ndarray

    @property
    def size(self) -> int:
        return int(self.cost.size)

    @staticmethod
    def from_entries(cost: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     integer: np.ndarray, col: np.ndarray, row: np.ndarray,
                     value: np.ndarray) -> Columns:
        order = np.lexsort((row, col))
        start = np.searchsorted(col[order], np.arange(cost.size + 1))
        return Columns(np.asarray(cost, float), np.asarray(lower, float),
                       np.asarray(upper, float), np.asarray(integer, bool),
                       start.astype(np.int64), row[order].astype(np.int64),
                       value[order].astype(float))

    @staticmethod
    def concat(parts: list[Columns]) -> Columns:
        starts, offset = [np.zeros(1, np.int64)], 0
        for part in parts:
            starts.append(part.start[1:] + offset)
            offset += int(part.start[-1])
        return Columns(np.concatenate([p.cost for p in parts]),
                       np.concatenate([p.lower for p in parts]),
                       np.concatenate([p.upper for p in parts]),
                       np.concatenate([p.integer for p in parts]),
                       np.concatenate(starts),
                       np.concatenate([p.index for p in parts]),
                       np.concatenate([p.value for p in parts]))


def pass_model(highs: highspy.Highs, cols: Columns, row_lower: np.ndarray,
               row_upper: np.ndarray, *, mip: bool) -> None:
    """``passModel`` of ``min cost·x`` s.t. ``row_lower ≤ A x ≤ row_upper``, bounds on x."""
    integrality = (cols.integer if mip else np.zeros(cols.size, bool)).astype(np.int32)
    status = highs.passModel(
        cols.size, row_lower.size, int(cols.start[-1]), 1, 1, 0.0,  # colwise, minimise
        cols.cost, cols.lower, cols.upper, np.asarray(row_lower, float),
        np.asarray(row_upper, float), cols.start.astype(np.int32),
        cols.index.astype(np.int32), cols.value, integrality)
    if status == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the model")


def add_columns(highs: highspy.Highs, cols: Columns) -> None:
    highs.addCols(cols.size, cols.cost, cols.lower, cols.upper, int(cols.start[-1]),
                  cols.start[:-1].astype(np.int32), cols.index.astype(np.int32), cols.value)


def add_cut_rows(highs: highspy.Highs, cuts: Sequence[Cut], column_of_option: np.ndarray
                 ) -> None:
    """One row ``Σ_{o ∈ cut} a[o] ≤ |cut| − 1`` per no-good cut (binary option columns)."""
    for cut in cuts:
        cols = column_of_option[np.asarray(cut.options, dtype=np.int64)].astype(np.int32)
        highs.addRow(-INF, float(cols.size - 1), cols.size, cols, np.ones(cols.size))


@dataclass
class MipResult:
    """What one HiGHS MILP run gave: status, values, objective and bound (energy units);
    ``isolated``: run in a child process, ``killed``: stopped there at the deadline."""

    status: str
    values: np.ndarray | None
    objective: float | None
    bound: float | None
    seconds: float
    nodes: int | None = None
    isolated: bool = False
    killed: bool = False
    overhead_s: float = 0.0  # of a child run: start-up, copying the model and the answer


#: With a deadline, MILPs of at least this many columns run in a worker process that is killed
#: at the deadline (:mod:`siftopt.backends.highs.isolated`); smaller ones, and every MILP
#: without a deadline, run in this process. (HiGHS overran a 1 s limit by 8 s on a MILP of
#: 3709 columns and by over 6 minutes on one of 43 162; docs/performance.md.)
ISOLATE_COLUMNS = 1_000


def run_mip(highs: highspy.Highs, gaps_are_zero: bool, *, start: np.ndarray | None = None,
            deadline: float | None = None) -> MipResult:
    """Run HiGHS on the passed MILP, started from ``start`` (column values) if given, and map
    its status (``optimal`` = proved, gap 0).

    With a ``deadline`` (``time.perf_counter`` instant) a MILP of at least
    :data:`ISOLATE_COLUMNS` columns runs in a worker process killed at the deadline plus
    :data:`~siftopt.backends.highs.isolated.KILL_GRACE_S` (HiGHS does not check its time
    limit inside some root heuristics); a killed run keeps the best bound and solution HiGHS
    reported before (``feasible`` with that solution, else ``time_limit``, bound None if
    none). A run asked for past the deadline is ``time_limit`` with nothing (HiGHS is not
    called). The values
    of a worker's run are not loaded back into ``highs``.
    """
    if deadline is not None and time.perf_counter() >= deadline:  # no time left: no run
        return MipResult(TIME_LIMIT, None, None, None, 0.0)
    if start is not None:
        highs.setSolution(start.size, np.arange(start.size, dtype=np.int32), start)
    if deadline is not None and highs.getNumCol() >= ISOLATE_COLUMNS:
        from siftopt.backends.highs.isolated import run_isolated

        raw = run_isolated(highs, start, deadline)
        if raw is not None and raw.get("killed"):  # with what its progress gave
            values = raw["col_value"]
            return MipResult(TIME_LIMIT if values is None else FEASIBLE, values,
                             raw["objective"], raw["mip_dual_bound"], raw["seconds"],
                             isolated=True, killed=True)
        if raw is not None:
            result = _mip_result(highspy.HighsModelStatus(raw["model_status"]),
                                 raw["solution_status"] == 2, raw["col_value"],
                                 raw["objective"], raw["mip_dual_bound"],
                                 raw["mip_node_count"], raw["seconds"] + raw["overhead_s"],
                                 gaps_are_zero, highs)
            result.isolated, result.overhead_s = True, raw["overhead_s"]
            return result
    started = time.perf_counter()
    highs.run()
    seconds = time.perf_counter() - started
    info = highs.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    return _mip_result(highs.getModelStatus(), has_solution,
                       np.asarray(highs.getSolution().col_value) if has_solution else None,
                       float(info.objective_function_value) if has_solution else None,
                       float(info.mip_dual_bound), int(info.mip_node_count), seconds,
                       gaps_are_zero, highs)


def _mip_result(model_status: Any, has_solution: bool, values: np.ndarray | None,
                objective: float | None, dual_bound: float, nodes: int, seconds: float,
                gaps_are_zero: bool, highs: highspy.Highs) -> MipResult:
    """A run's :class:`MipResult` from HiGHS's model status and info."""
    bound = dual_bound if np.isfinite(dual_bound) else None
    ms = highspy.HighsModelStatus
    if model_status == ms.kOptimal and has_solution:
        status = OPTIMAL
        if not gaps_are_zero and (bound is None or objective is None or bound < objective):
            status = FEASIBLE
    elif model_status == ms.kInfeasible:
        status = INFEASIBLE
    elif has_solution:
        status = FEASIBLE
    elif model_status in (ms.kTimeLimit, ms.kIterationLimit, ms.kInterrupt,
                          ms.kSolutionLimit):
        status = TIME_LIMIT
    else:
        raise RuntimeError(f"HiGHS ended with status {highs.modelStatusToString(model_status)}"
                           " and no solution")
    return MipResult(status, values, objective, bound, seconds,
                     nodes if nodes >= 0 else None)


def watch_highs(highs: Any, started: float, unit_j: float, events: list[dict[str, Any]]
                ) -> None:
    """Append an event at every improving MILP solution HiGHS finds (highspy callback
    ``cbMipImprovingSolution``); objective and bound in energy units of ``unit_j`` J. Only
    for models whose MILP bound is a bound on (P) (the direct slot model); events are
    those of :mod:`siftopt.backends.progress`."""

    def on_improving(event: Any) -> None:
        out = event.data_out
        bound = out.mip_dual_bound
        events.append({"t_s": round(time.perf_counter() - started, 4), "phase": "solution",
                       "upper_bound_j": out.objective_function_value * unit_j,
                       "lower_bound_j": max(bound, 0.0) * unit_j if math.isfinite(bound)
                       else None})

    highs.cbMipImprovingSolution.subscribe(on_improving)


__all__ = ["INF", "ISOLATE_COLUMNS", "Columns", "MipResult", "add_columns", "add_cut_rows",
           "check_highs_options", "gaps_zero", "new_highs", "pass_model", "run_mip",
           "use_threads", "watch_highs"]
