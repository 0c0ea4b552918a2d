"""Exact backends: each takes a :class:`~siftopt.model.problem.ProblemData` and returns a
:class:`~siftopt.result.BackendOutcome`.

* :mod:`.base` — what every backend shares (time left, the warm-start check, the budget rule
  on a decision and the budget-cut loop, the pattern models' set-up and decode rule);
  :mod:`.options` — the tuning knobs (:class:`~.options.ExactOptions`);
* :mod:`.highs` — HiGHS: :mod:`.highs.common` (plumbing), :mod:`.highs.direct` (pattern
  master, highspy) over :mod:`.highs.master` and :mod:`.highs.colgen`,
  :mod:`.highs.direct_slots` (slot MILP, highspy) with :mod:`.highs.energy`, the Pyomo
  models :mod:`.highs.pyomo_slots` and :mod:`.highs.pyomo_patterns`, and
  :mod:`.highs.isolated` (large MILPs under a deadline in a worker process killed at it);
* :mod:`.cpsat` — OR-Tools CP-SAT: :mod:`.cpsat.common` (scaling, parameters, status),
  :mod:`.cpsat.slots`, :mod:`.cpsat.patterns`;
* :mod:`.brute` — exhaustive enumeration for tiny instances (the ground truth of the tests);
* :mod:`.progress` — bounds over time (``details["trace"]``).
"""
