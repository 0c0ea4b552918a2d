"""What the three pattern backends (HiGHS direct, Pyomo, CP-SAT) share: the verdict when a
token class has no pattern at all, and the hand-over to a slot model past the pattern limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from siftopt.formulations.patterns import (
    PatternLimitError,
    PatternSet,
    PatternSpace,
    enumerate_patterns,
)
from siftopt.io.profiles import Profile
from siftopt.model.problem import ProblemData
from siftopt.result import INFEASIBLE, BackendOutcome

#: A slot-model backend: ``(data, profile, *, time_limit_s, warm_start) -> BackendOutcome``.
SlotSolver = Callable[..., BackendOutcome]


def remaining_s(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (``time.perf_counter`` clock; at least 1 ms), or
    None without a deadline."""
    return None if deadline is None else max(deadline - time.perf_counter(), 1e-3)


def every_pattern(space: PatternSpace, limit: int, model: str) -> PatternSet:
    """All non-dominated patterns, for a model that holds every one of them; raises
    :class:`PatternLimitError` past ``limit`` of them (``model`` names the model)."""
    pset = enumerate_patterns(space)
    if pset.num_patterns > limit:
        raise PatternLimitError(f"{pset.num_patterns} patterns ({model} limit {limit})")
    return pset


def no_pattern_outcome(space: PatternSpace, pattern_class: np.ndarray, details: dict[str, Any],
                       started: float) -> BackendOutcome | None:
    """``infeasible`` naming a token whose class has none of the patterns (no set of
    reachable nodes meets its budget), or None when every class has one."""
    missing = np.setdiff1d(np.arange(space.num_classes), pattern_class)
    if not missing.size:
        return None
    t = int(space.class_rep[missing[0]])
    return BackendOutcome(INFEASIBLE, None, None, time.perf_counter() - started, 0.0, details,
                          message=f"token {t} cannot meet its accuracy budget with any set "
                          "of reachable nodes")


def slot_fallback(solve_slots: SlotSolver, data: ProblemData, profile: Profile,
                  deadline: float | None, warm_start: np.ndarray | None,
                  exc: PatternLimitError) -> BackendOutcome:
    """Solve with a slot model in the time left; ``details["fallback"]`` says why."""
    outcome = solve_slots(data, profile, time_limit_s=remaining_s(deadline),
                          warm_start=warm_start)
    outcome.details["fallback"] = f"slot formulation: {exc}"
    return outcome
