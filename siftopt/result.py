"""Results of solving an instance with an exact backend or a policy.

Two types: :class:`BackendOutcome`, what an exact backend hands back before evaluation, and
:class:`SolveResult`, the evaluated answer every method returns (the object behind
``siftopt solve --format json``, the Python API and bench). Statuses are :class:`Status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from siftopt.model.evaluate import Evaluation


class Status(StrEnum):
    """docs/model.md §7: ``optimal`` (proved, relative gap 0 at the §3.4 tolerance),
    ``feasible`` (a decision the evaluator accepts, optimality not proved), ``infeasible``
    (proved, or a policy's decision that the evaluator rejects), ``time_limit`` (stopped with
    no accepted decision)."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    INFEASIBLE = "infeasible"
    TIME_LIMIT = "time_limit"


OPTIMAL, FEASIBLE, INFEASIBLE, TIME_LIMIT = (Status.OPTIMAL, Status.FEASIBLE, Status.INFEASIBLE,
                                             Status.TIME_LIMIT)
STATUSES = tuple(Status)


@dataclass(frozen=True, eq=False)
class BackendOutcome:
    """What an exact backend returns before evaluation.

    ``actions``: ``(L, K)`` targets or None; ``dual_bound_j``: a proven lower bound on the
    optimum energy in J (None if unknown); times in s; ``details``: the solver's own
    statistics (``trace``: bounds over time; ``fallback``: why another model answered).
    """

    status: Status
    actions: np.ndarray | None
    dual_bound_j: float | None
    build_time_s: float
    solve_time_s: float
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))


@dataclass(frozen=True, eq=False)
class SolveResult:
    """An evaluated answer: status, actions and their evaluation, bound, timings, trace.

    ``backend``: the registry name of the exact backend that answered
    (``highs/patterns/direct``, ...) or None for a policy; ``proved_by``: how an infeasibility
    was proved without a search; ``warm_start_policy``: the policy whose decision started the
    search (None: none of the requested policies was feasible); ``trace``: bound/incumbent
    events over time (J, s); ``solver_info``: the solver's own statistics (columns, fixed
    columns, fallback reason, ...).
    """

    method: str
    status: Status
    evaluation: Evaluation | None
    dual_bound_j: float | None
    build_time_s: float
    solve_time_s: float
    message: str = ""
    backend: str | None = None
    proved_by: str | None = None
    warm_start_requested: bool = False
    warm_start_policy: str | None = None
    trace: tuple[dict[str, Any], ...] = ()
    solver_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))

    @property
    def actions(self) -> np.ndarray | None:
        return None if self.evaluation is None else self.evaluation.actions

    @property
    def energy_j(self) -> float | None:
        return None if self.evaluation is None else self.evaluation.energy_j

    @property
    def feasible(self) -> bool:
        return self.evaluation is not None and self.evaluation.feasible

    @property
    def total_time_s(self) -> float:
        return self.build_time_s + self.solve_time_s

    @property
    def gap(self) -> float | None:
        """``(E − bound)/E`` of a feasible answer with a bound (0 when optimal), else None."""
        if not self.feasible or self.dual_bound_j is None:
            return None
        energy = float(self.energy_j or 0.0)
        return 0.0 if energy <= 0 else max(0.0, (energy - self.dual_bound_j) / energy)

    @property
    def details(self) -> dict[str, Any]:
        """The JSON view of the extras: ``solver_info`` plus the typed fields that are set."""
        out = dict(self.solver_info)
        if self.backend is not None:
            out["backend"] = self.backend
        if self.warm_start_requested:
            out["warm_start_policy"] = self.warm_start_policy
        if self.proved_by is not None:
            out["proved_by"] = self.proved_by
        if self.trace:
            out["trace"] = list(self.trace)
        return out

