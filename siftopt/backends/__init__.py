"""Exact backends: Pyomo + HiGHS (:mod:`.highs_pyomo`), OR-Tools CP-SAT (:mod:`.cpsat`) and
exhaustive enumeration for tiny instances (:mod:`.brute`). Each takes a
:class:`~siftopt.model.problem.ProblemData` and returns a
:class:`~siftopt.result.BackendOutcome`."""
