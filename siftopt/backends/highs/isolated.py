"""A HiGHS MILP run in a child process, so that a time limit holds even where HiGHS does not
check it.

HiGHS 1.16 checks neither its time limit nor its interrupt callbacks inside some root-node
primal heuristics (central rounding: ``evaluateRootNode → linesearchRounding →
tryRoundedPoint → HighsDomain::propagate``; upstream ERGO-Code/HiGHS#885, #1278). On the final
MILP of the pattern master at L = 1024, M = 16 under Rayleigh fading (about 43 000 binary
columns) one such call ran for over 6 minutes past a 120 s limit, and no HiGHS option turns
it off reliably (docs/performance.md, "Time limits (goal 4)"). A thread cannot be stopped
from outside; a process can.

:func:`run_isolated` copies the model, the non-default options and the MIP start of an
in-process ``Highs`` object to a worker process (a new interpreter that imports only this
module, numpy and highspy; started once per process, :func:`prestart` starts it ahead, and
reused for every such MILP), which runs HiGHS with the time left before the deadline and
sends back what :func:`siftopt.backends.highs.common.run_mip` reads from a run. At the
deadline plus :data:`KILL_GRACE_S` the parent kills the worker and reports that nothing
came back; the caller keeps its own incumbent and bound, and the next such MILP starts a new
worker. HiGHS's improving-solution callbacks do not reach the parent from the worker.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pickle
import select
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Seconds a MILP in the worker may run past the deadline (its own HiGHS time limit is the time
#: left; this allows for HiGHS's usual small overshoot, after which its bound would be lost).
KILL_GRACE_S = 0.5

#: Options that never go to the child (it is silent, and its time limit is the time left).
_NOT_COPIED = frozenset({"output_flag", "log_to_console", "log_file", "time_limit"})


def _changed_options(highs: Any) -> dict[str, Any]:
    """The options of ``highs`` that differ from HiGHS's defaults, by name."""
    import highspy

    mine, default = highs.getOptions(), highspy.HighsOptions()
    out = {}
    for name in dir(mine):
        if name.startswith("_") or name in _NOT_COPIED:
            continue
        value = getattr(mine, name)
        if callable(value) or not isinstance(value, (bool, int, float, str)):
            continue
        if value != getattr(default, name, value):
            out[name] = value
    return out


def _model_arrays(highs: Any) -> dict[str, Any]:
    """The passed model of ``highs`` as numpy arrays, column-wise."""
    import highspy

    lp = highs.getLp()
    num_col, num_row = int(lp.num_col_), int(lp.num_row_)
    matrix = lp.a_matrix_
    start = np.asarray(matrix.start_, dtype=np.int64)
    index = np.asarray(matrix.index_, dtype=np.int64)
    value = np.asarray(matrix.value_, dtype=float)
    if matrix.format_ != highspy.MatrixFormat.kColwise:  # row-wise: transpose
        row = np.repeat(np.arange(num_row), np.diff(start))
        order = np.lexsort((row, index))
        start = np.searchsorted(index[order], np.arange(num_col + 1)).astype(np.int64)
        index, value = row[order], value[order]
    integrality = (np.array([int(v) for v in lp.integrality_], dtype=np.int32)
                   if len(lp.integrality_) else np.zeros(num_col, np.int32))
    return {"num_col": num_col, "num_row": num_row, "sense": int(lp.sense_),
            "offset": float(lp.offset_), "cost": np.asarray(lp.col_cost_, float),
            "col_lower": np.asarray(lp.col_lower_, float),
            "col_upper": np.asarray(lp.col_upper_, float),
            "row_lower": np.asarray(lp.row_lower_, float),
            "row_upper": np.asarray(lp.row_upper_, float),
            "start": start, "index": index, "value": value, "integrality": integrality}


_worker: subprocess.Popen | None = None  # the worker of this process, if started


def _start_worker() -> subprocess.Popen:
    """The worker process (started now if there is none or it has exited)."""
    global _worker
    if _worker is None or _worker.poll() is not None:
        package_root = str(Path(__file__).resolve().parents[3])  # the folder holding siftopt/
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                            if p)
        _worker = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    return _worker


def prestart() -> None:
    """Start the worker now (it imports highspy while the caller works), if none runs."""
    with contextlib.suppress(OSError):
        _start_worker()


def stop_worker() -> None:
    """Kill the worker, if one runs (the next isolated run starts a new one)."""
    global _worker
    worker, _worker = _worker, None
    if worker is None:
        return
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    for stream in (worker.stdin, worker.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


atexit.register(stop_worker)


def _read_exactly(fd: int, size: int, until: float) -> bytes | None:
    """``size`` bytes from ``fd``, or None at EOF or when ``until`` (``time.perf_counter``)
    passes first."""
    chunks, left = [], size
    while left:
        ready, _, _ = select.select([fd], [], [], max(until - time.perf_counter(), 0.0))
        if not ready:
            return None
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def run_isolated(highs: Any, start: np.ndarray | None, deadline: float) -> dict[str, Any] | None:
    """Run the MILP passed to ``highs`` in the worker process until ``deadline``
    (``time.perf_counter`` instant), started from ``start`` (column values) if given.

    Returns the run as a dict (``model_status``, ``solution_status``, ``col_value``,
    ``objective``, ``mip_dual_bound``, ``mip_node_count``, ``seconds`` in HiGHS and
    ``overhead_s``, the rest of the wall time; ``killed`` True and the ``seconds`` when
    the worker was killed at the deadline plus :data:`KILL_GRACE_S`), or None when the
    worker failed (the caller runs HiGHS in process instead).

    The worker is ``python -m siftopt.backends.highs.isolated`` (a plain subprocess, not
    :mod:`multiprocessing`, which would import the caller's main script again), started once
    per process and reused; jobs and answers are pickled through its standard input and
    output with a length prefix.
    """
    began = time.perf_counter()
    job = {"model": _model_arrays(highs), "options": _changed_options(highs),
           "start": None if start is None else np.asarray(start, float),
           # CLOCK_MONOTONIC is one clock for every process of the machine
           "deadline": time.monotonic() + (deadline - time.perf_counter())}
    payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    try:
        worker = _start_worker()
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(struct.pack("<Q", len(payload)) + payload)
        worker.stdin.flush()
        fd = worker.stdout.fileno()
        header = _read_exactly(fd, 8, deadline + KILL_GRACE_S)
        if header is None and worker.poll() is None:  # still running at the deadline
            stop_worker()
            return {"killed": True, "seconds": time.perf_counter() - began}
        body = None if header is None else \
            _read_exactly(fd, struct.unpack("<Q", header)[0], time.perf_counter() + 60.0)
    except OSError:
        body = None
    if body is None:  # the worker died or garbled its answer
        stop_worker()
        return None
    answer: dict[str, Any] = pickle.loads(body)
    # the cost of the worker: copying the model there and the answer back (and its start-up
    # if it was not running yet)
    answer["overhead_s"] = time.perf_counter() - began - answer["seconds"]
    return answer


def _solve(highspy: Any, job: dict[str, Any]) -> dict[str, Any]:
    """One job in the worker: HiGHS on the job's model, options and start."""
    model, start = job["model"], job["start"]
    highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    for name, value in job["options"].items():
        highs.setOptionValue(name, value)
    highs.passModel(model["num_col"], model["num_row"], int(model["start"][-1]), 1,
                    model["sense"], model["offset"], model["cost"], model["col_lower"],
                    model["col_upper"], model["row_lower"], model["row_upper"],
                    model["start"].astype(np.int32), model["index"].astype(np.int32),
                    model["value"], model["integrality"])
    if start is not None:
        highs.setSolution(start.size, np.arange(start.size, dtype=np.int32), start)
    started = time.perf_counter()
    highs.setOptionValue("time_limit", max(job["deadline"] - time.monotonic(), 1e-3))
    highs.run()
    seconds = time.perf_counter() - started
    info = highs.getInfo()
    feasible = info.primal_solution_status == 2
    return {"model_status": int(highs.getModelStatus()),
            "solution_status": int(info.primal_solution_status),
            "col_value": np.asarray(highs.getSolution().col_value) if feasible else None,
            "objective": float(info.objective_function_value) if feasible else None,
            "mip_dual_bound": float(info.mip_dual_bound),
            "mip_node_count": int(info.mip_node_count), "seconds": seconds}


def _worker_main() -> None:
    """The worker: jobs from standard input, answers to standard output, until EOF."""
    answer_to = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_WRONLY)  # HiGHS prints from C++ (banner, options)
    os.dup2(null, 1)
    import highspy

    source = sys.stdin.buffer
    threads = None
    while True:
        header = source.read(8)
        if len(header) < 8:
            return
        job = pickle.loads(source.read(struct.unpack("<Q", header)[0]))
        wanted = job["options"].get("threads", 0)
        if threads is not None and wanted != threads:  # one global scheduler per process
            highspy.Highs.resetGlobalScheduler(True)
        threads = wanted
        payload = pickle.dumps(_solve(highspy, job), protocol=pickle.HIGHEST_PROTOCOL)
        answer_to.write(struct.pack("<Q", len(payload)) + payload)
        answer_to.flush()


__all__ = ["KILL_GRACE_S", "prestart", "run_isolated", "stop_worker"]

if __name__ == "__main__":
    _worker_main()
