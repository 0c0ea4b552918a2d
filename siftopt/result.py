"""Results of solving an instance with an exact backend or a policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siftopt.model.evaluate import Evaluation

#: Statuses of docs/model.md §7.
OPTIMAL, FEASIBLE, INFEASIBLE, TIME_LIMIT = "optimal", "feasible", "infeasible", "time_limit"
STATUSES = (OPTIMAL, FEASIBLE, INFEASIBLE, TIME_LIMIT)


@dataclass(frozen=True, eq=False)
class BackendOutcome:
    """What an exact backend returns before evaluation.

    ``status``: ``optimal`` (proved, relative gap 0), ``feasible`` (a solution, optimality not
    proved), ``infeasible`` (proved), ``time_limit`` (stopped without any solution).
    ``dual_bound_j``: a proven lower bound on the optimum energy in J (None if unknown).
    """

    status: str
    actions: np.ndarray | None
    dual_bound_j: float | None
    build_time_s: float
    solve_time_s: float
    details: dict[str, Any] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True, eq=False)
class SolveResult:
    """An evaluated answer: status, actions and their evaluation, bounds and timings."""

    method: str
    status: str
    evaluation: Evaluation | None
    dual_bound_j: float | None
    build_time_s: float
    solve_time_s: float
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

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
