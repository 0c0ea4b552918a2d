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
import math
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


def _read_message(fd: int, until: float) -> dict[str, Any] | None:
    """One length-prefixed pickled message from ``fd``, or None at EOF or when ``until``
    passes before it starts (once started, its body gets 60 s more)."""
    header = _read_exactly(fd, 8, until)
    if header is None:
        return None
    body = _read_exactly(fd, struct.unpack("<Q", header)[0], time.perf_counter() + 60.0)
    return None if body is None else pickle.loads(body)


def _solution_fits(model: dict[str, Any], values: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether ``values`` is a point of the model: column bounds, integrality and rows."""
    if values.shape != (model["num_col"],) or not np.all(np.isfinite(values)):
        return False
    if np.any(values < model["col_lower"] - tol) or np.any(values > model["col_upper"] + tol):
        return False
    integer = model["integrality"] == 1
    if np.any(np.abs(values[integer] - np.rint(values[integer])) > tol):
        return False
    col = np.repeat(np.arange(model["num_col"]), np.diff(model["start"]))
    rows = np.bincount(model["index"], weights=model["value"] * values[col],
                       minlength=model["num_row"])
    return bool(np.all(rows >= model["row_lower"] - tol) and
                np.all(rows <= model["row_upper"] + tol))


def run_isolated(highs: Any, start: np.ndarray | None, deadline: float) -> dict[str, Any] | None:
    """Run the MILP passed to ``highs`` in the worker process until ``deadline``
    (``time.perf_counter`` instant), started from ``start`` (column values) if given.

    Returns the run as a dict (``model_status``, ``solution_status``, ``col_value``,
    ``objective``, ``mip_dual_bound``, ``mip_node_count``, ``seconds`` in HiGHS and
    ``overhead_s``, the rest of the wall time), or None when the worker failed (the caller
    runs HiGHS in process instead). When the worker is killed at the deadline plus
    :data:`KILL_GRACE_S`: ``killed`` True, the ``seconds``, and what its progress messages
    gave: the best ``mip_dual_bound`` (or None) and the best improving solution as
    ``col_value`` and ``objective`` (or None; kept only if it satisfies the model's bounds,
    integrality and rows within 1e-6).

    The worker is ``python -m siftopt.backends.highs.isolated`` (a plain subprocess, not
    :mod:`multiprocessing`, which would import the caller's main script again), started once
    per process and reused; jobs and answers are pickled through its standard input and
    output with a length prefix. While HiGHS runs, the worker sends a progress message at
    each improving solution and whenever HiGHS's dual bound has risen (at its limit checks
    during the root node, then at each line of its MIP progress table), so a killed run
    still leaves the bound and the solution HiGHS had before it stalled.
    """
    began = time.perf_counter()
    model = _model_arrays(highs)
    job = {"model": model, "options": _changed_options(highs),
           "start": None if start is None else np.asarray(start, float),
           # CLOCK_MONOTONIC is one clock for every process of the machine
           "deadline": time.monotonic() + (deadline - time.perf_counter())}
    payload = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    bound, objective, values = None, None, None
    try:
        worker = _start_worker()
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.write(struct.pack("<Q", len(payload)) + payload)
        worker.stdin.flush()
        fd = worker.stdout.fileno()
        while True:
            message = _read_message(fd, deadline + KILL_GRACE_S)
            if message is None:
                break
            if message["kind"] == "final":
                answer: dict[str, Any] = message
                # the cost of the worker: copying the model there and the answer back (and
                # its start-up if it was not running yet)
                answer["overhead_s"] = time.perf_counter() - began - answer["seconds"]
                return answer
            if message.get("bound") is not None and math.isfinite(message["bound"]):
                bound = message["bound"] if bound is None else max(bound, message["bound"])
            got = message.get("values")
            if (got is not None and (objective is None or message["objective"] < objective)
                    and _solution_fits(model, got)):
                objective, values = message["objective"], got
        alive = worker.poll() is None
    except OSError:
        alive = False
    stop_worker()
    if not alive:  # the worker died or garbled its answer
        return None
    return {"killed": True, "seconds": time.perf_counter() - began, "mip_dual_bound": bound,
            "objective": objective, "col_value": values}


def _solve(highspy: Any, job: dict[str, Any], send: Any) -> dict[str, Any]:
    """One job in the worker: HiGHS on the job's model, options and start; progress goes
    to ``send`` (see :func:`run_isolated`)."""
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
    best = [-math.inf]

    def on_bound(event: Any) -> None:
        bound = event.data_out.mip_dual_bound
        if math.isfinite(bound) and bound > best[0]:
            best[0] = bound
            send({"kind": "progress", "bound": float(bound)})

    def at_root(event: Any) -> None:  # HiGHS's limit checks, until the root node is done
        on_bound(event)
        if event.data_out.mip_node_count >= 1:
            highs.cbMipInterrupt.unsubscribe(at_root)

    def on_improving(event: Any) -> None:
        out = event.data_out
        send({"kind": "progress", "bound": float(out.mip_dual_bound),
              "objective": float(out.objective_function_value),
              "values": np.array(out.mip_solution, dtype=float)})

    # the bound: at HiGHS's limit checks during the root node (where the long stalls were),
    # then at each line of its MIP progress table — the interrupt callback runs at every
    # limit check, which in the tree cost ~15 % of the run (highspy dispatches in Python);
    # the logging callback fires only with output on (to nowhere: no console, no file)
    highs.setOptionValue("output_flag", True)
    highs.setOptionValue("log_to_console", False)
    highs.cbMipInterrupt.subscribe(at_root)
    highs.cbMipLogging.subscribe(on_bound)
    highs.cbMipImprovingSolution.subscribe(on_improving)
    started = time.perf_counter()
    highs.setOptionValue("time_limit", max(job["deadline"] - time.monotonic(), 1e-3))
    highs.run()
    seconds = time.perf_counter() - started
    info = highs.getInfo()
    feasible = info.primal_solution_status == 2
    return {"kind": "final", "model_status": int(highs.getModelStatus()),
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

    def send(message: dict[str, Any]) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        answer_to.write(struct.pack("<Q", len(payload)) + payload)
        answer_to.flush()

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
        send(_solve(highspy, job, send))


__all__ = ["KILL_GRACE_S", "prestart", "run_isolated", "stop_worker"]

if __name__ == "__main__":
    _worker_main()
