"""Results of solving an instance with an exact backend or a policy.

Two types: :class:`BackendOutcome`, what an exact backend hands back before evaluation, and
:class:`SolveResult`, the evaluated answer every method returns (the object behind
``siftopt solve --format json``, the Python API and bench). Statuses are :class:`Status`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from siftopt.model.decision import Decision
from siftopt.model.evaluate import Evaluation
from siftopt.model.instance import Instance


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
    instance: Instance | None = field(default=None, repr=False)

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
    def decision(self) -> Decision | None:
        """The answer as a :class:`~siftopt.model.decision.Decision` (None without one)."""
        if self.evaluation is None or self.instance is None:
            return None
        return Decision.from_targets(self.instance, self.evaluation.actions)

    def to_dict(self) -> dict[str, Any]:
        """Exactly the object ``siftopt solve --format json`` prints (docs/model.md §7)."""
        from siftopt.io.solution import result_json

        return result_json(self._instance(), self)

    def nodes_frame(self) -> pd.DataFrame:
        """One row per remote node: ``node, tokens, cap, energy_j, latency_s`` (J, s)."""
        import pandas as pd

        inst = self._instance()
        ev = self.evaluation
        if ev is None:
            return pd.DataFrame(columns=["node", "tokens", "cap", "energy_j", "latency_s"])
        return pd.DataFrame({"node": range(1, inst.num_nodes + 1), "tokens": ev.loads,
                             "cap": ev.caps, "energy_j": ev.node_energy_j,
                             "latency_s": ev.node_latency_s})

    def _instance(self) -> Instance:
        if self.instance is None:
            raise ValueError("this result was built without its instance")
        return self.instance

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

