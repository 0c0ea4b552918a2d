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
in-process ``Highs`` object to a child process (a new interpreter that imports only this
module, numpy and highspy), which runs HiGHS with the time left before the deadline and
sends back what :func:`siftopt.backends.highs.common.run_mip` reads from a run. At the
deadline plus :data:`KILL_GRACE_S` the parent kills the child and reports that nothing
came back; the caller keeps its own incumbent and bound. HiGHS's improving-solution
callbacks do not reach the parent from the child.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Seconds a child MILP may run past the deadline (its own HiGHS time limit is the time left;
#: this is the allowance for HiGHS's own overshoot and for the start-up of the child).
KILL_GRACE_S = 2.0

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


def run_isolated(highs: Any, start: np.ndarray | None, deadline: float) -> dict[str, Any] | None:
    """Run the MILP passed to ``highs`` in a child process until ``deadline``
    (``time.perf_counter`` instant), started from ``start`` (column values) if given.

    Returns the run as a dict (``model_status``, ``solution_status``, ``col_value``,
    ``objective``, ``mip_dual_bound``, ``mip_node_count``, ``seconds`` in HiGHS and
    ``overhead_s``, the rest of the wall time; ``killed`` True and the ``seconds`` when
    the child was killed at the deadline plus :data:`KILL_GRACE_S`), or None when the child
    failed to run (the caller runs HiGHS in process instead).

    The child is ``python -m siftopt.backends.highs.isolated`` (a plain subprocess, not
    :mod:`multiprocessing`, which would import the caller's main script again); the job and
    the answer are pickled through its standard input and output.
    """
    began = time.perf_counter()
    job = {"model": _model_arrays(highs), "options": _changed_options(highs),
           "start": None if start is None else np.asarray(start, float),
           # CLOCK_MONOTONIC is one clock for every process of the machine
           "deadline": time.monotonic() + (deadline - time.perf_counter())}
    package_root = str(Path(__file__).resolve().parents[3])  # the folder holding siftopt/
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"))
                                        if p)
    try:
        child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    except OSError:
        return None
    try:
        wait = max(deadline - time.perf_counter(), 0.0) + KILL_GRACE_S
        out, _ = child.communicate(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL),
                                   timeout=wait)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return {"killed": True, "seconds": time.perf_counter() - began}
    except OSError:
        child.kill()
        child.communicate()
        return None
    if child.returncode != 0 or not out:
        return None
    answer: dict[str, Any] = pickle.loads(out)
    # the cost of the child: start-up, copying the model there and the answer back
    answer["overhead_s"] = time.perf_counter() - began - answer["seconds"]
    return answer


def _child_main() -> None:
    """The child: read the job from standard input, run HiGHS silently, write the run to
    standard output."""
    answer_to = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_WRONLY)  # HiGHS prints from C++ (banner, options)
    os.dup2(null, 1)
    import highspy

    job = pickle.load(sys.stdin.buffer)
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
    pickle.dump({"model_status": int(highs.getModelStatus()),
                 "solution_status": int(info.primal_solution_status),
                 "col_value": np.asarray(highs.getSolution().col_value) if feasible else None,
                 "objective": float(info.objective_function_value) if feasible else None,
                 "mip_dual_bound": float(info.mip_dual_bound),
                 "mip_node_count": int(info.mip_node_count), "seconds": seconds},
                answer_to, protocol=pickle.HIGHEST_PROTOCOL)
    answer_to.close()


__all__ = ["KILL_GRACE_S", "run_isolated"]

if __name__ == "__main__":
    _child_main()
