"""Exhaustive enumeration of every action assignment: the ground truth for tiny instances.

Enumerates the product of the slots' action sets (docs/model.md §3.1), vectorised over
chunks of assignments, and keeps the feasible one of least energy. Refuses (InputError)
past :data:`MAX_ASSIGNMENTS`.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from siftopt.errors import InputError
from siftopt.model.budgets import token_degradation
from siftopt.model.problem import ProblemData
from siftopt.result import FEASIBLE, INFEASIBLE, OPTIMAL, TIME_LIMIT, BackendOutcome

#: Largest number of assignments the brute-force backend will enumerate.
MAX_ASSIGNMENTS = 2_000_000


def count_assignments(data: ProblemData) -> int:
    sizes = np.diff(data.slot_start)
    return int(np.prod(sizes.astype(object))) if sizes.size else 1


def _scientific(n: int) -> str:
    """A count in scientific notation (``1.2e+600``): exact ints may exceed a float's range."""
    digits = str(n)
    if len(digits) <= 6:
        return digits
    mantissa = round(int(digits[:3]) / 100, 1)
    exponent = len(digits) - 1
    if mantissa >= 10:
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.1f}e+{exponent:02d}"


def solve_brute(data: ProblemData, profile: object = None, *, time_limit_s: float | None = None,
                warm_start: np.ndarray | None = None, options: object = None,
                chunk: int = 65536) -> BackendOutcome:
    """The exact optimum by enumeration (ties: the first assignment in enumeration order).

    ``profile``, ``warm_start`` and ``options`` are accepted for the common backend
    signature and unused.
    """
    del profile, warm_start, options
    started = time.perf_counter()
    total = count_assignments(data)
    if total > MAX_ASSIGNMENTS:
        raise InputError(f"brute force would enumerate {_scientific(total)} assignments "
                         f"(limit {MAX_ASSIGNMENTS:.0e}); use --method highs or cpsat",
                         path="--method")
    inst = data.inst
    n_slots, n_nodes = data.num_slots, inst.num_nodes
    sizes = [int(s) for s in np.diff(data.slot_start)]
    opt_node = data.opt_node
    tables = [np.concatenate((t.energy_j, np.full(inst.num_tokens + 1 - t.energy_j.size, np.inf)))
              for t in data.tables]
    best_energy, best_options = np.inf, None
    iterator = itertools.product(*[range(s) for s in sizes])
    while True:
        block = np.array(list(itertools.islice(iterator, chunk)), dtype=np.int64)
        if block.size == 0:
            break
        block = block.reshape(-1, n_slots)
        options = block + data.slot_start[:-1]  # (B, S) option indices
        degradation = data.opt_degradation[options].reshape(len(block), inst.num_tokens, -1)
        ok = data.budgets.accepts_batch(token_degradation(degradation))
        nodes = opt_node[options].reshape(len(block), inst.num_tokens, -1)
        energy = np.zeros(len(block))
        for m in range(1, n_nodes + 1):
            load = np.any(nodes == m, axis=2).sum(axis=1)
            energy += tables[m - 1][load]
        energy = np.where(ok, energy, np.inf)
        k = int(np.argmin(energy))
        if energy[k] < best_energy:
            best_energy, best_options = float(energy[k]), options[k]
        if time_limit_s is not None and time.perf_counter() - started > time_limit_s:
            # the best assignment so far (feasible, optimality unproved), bound 0 J (trivial)
            found = None if best_options is None else \
                data.opt_target[best_options].reshape(inst.topk_experts.shape)
            return BackendOutcome(TIME_LIMIT if found is None else FEASIBLE, found, 0.0, 0.0,
                                  time.perf_counter() - started, details={"assignments": total})
    elapsed = time.perf_counter() - started
    if best_options is None:
        return BackendOutcome(INFEASIBLE, None, None, 0.0, elapsed)
    actions = data.opt_target[best_options].reshape(inst.topk_experts.shape)
    return BackendOutcome(OPTIMAL, actions, best_energy, 0.0, elapsed,
                          details={"assignments": total})
