"""Tuning knobs of the exact backends, with their documented defaults and units.

Every backend entry function takes ``options: ExactOptions | None`` (None: the defaults)
and hands the parts down to where they are used; nothing reads a module global. The
defaults are what docs/performance.md measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from siftopt.formulations.space import PatternOptions


@dataclass(frozen=True)
class ColumnGenerationOptions:
    """The HiGHS pattern master's column generation and reduced-cost fixing
    (:mod:`siftopt.backends.highs.colgen`). Energies are in the master's energy unit
    (``ProblemData.energy_scale_j``, the smallest one-token energy).

    * ``direct_tokens``: instances with at most this many tokens give the MILP every pattern
      at once (0: always column generation, which measured faster at every size);
    * ``all_patterns_limit``: when the restricted MILPs find no solution, the MILP over every
      pattern is tried if there are at most this many, else the slot formulation;
    * ``pricing_tol``: reduced costs below ``−pricing_tol`` (energy units) enter the LP;
    * ``max_rounds``: largest number of column-generation rounds;
    * ``columns_per_class``: patterns added per class and round (least reduced costs);
    * ``tau``, ``max_tau``: reduced-cost threshold (energy units) of the first restricted
      MILP, and the largest one tried (×8 per step) before the exact fallbacks;
    * ``overflow_tol``: overflow column values above this count as used;
      ``max_escalations``: how often an overflow's cost is raised ×10 before column
      generation gives up (exact fallback);
    * ``fix_margin``: extra room (relative, absolute in energy units) on the reduced-cost
      threshold of the fixing step;
    * ``polymatroid_rounds``: rounds of polymatroid cuts of non-convex tables added to the LP
      once pricing finds nothing (:mod:`siftopt.backends.highs.cuts`; 0: none);
    * ``restricted_rel_gap``: relative MIP gap at which a restricted MILP stops when a mean
      row couples the tokens (at least the profile's). Restricted MILPs only supply the
      upper bound for fixing; the final MILP proves with the profile's gaps, so this trades
      a slightly worse upper bound (a few more fixed columns) for not proving a restricted
      MILP's optimum first, which under a mean row can take most of the solve.
    """

    direct_tokens: int = 0
    all_patterns_limit: int = 50_000
    pricing_tol: float = 1e-7
    max_rounds: int = 1000
    columns_per_class: int = 2
    tau: float = 0.1
    max_tau: float = 52.0
    overflow_tol: float = 1e-9
    max_escalations: int = 12
    fix_margin: tuple[float, float] = (1e-7, 1e-6)
    polymatroid_rounds: int = 300
    restricted_rel_gap: float = 1e-5


@dataclass(frozen=True)
class ExactOptions:
    """Options of every exact backend.

    * ``patterns``: limits of the pattern enumeration (:class:`PatternOptions`);
    * ``column_generation``: the HiGHS master (:class:`ColumnGenerationOptions`);
    * ``max_cut_rounds``: solves of a slot model in its budget-cut loop
      (:func:`siftopt.backends.base.budget_cuts`): each round cuts off decisions the budget
      rule rejects; past it the best accepted decision (or none) is returned, never
      ``optimal``;
    * ``max_pyomo_patterns``, ``max_cpsat_patterns``: patterns the Pyomo and CP-SAT pattern
      models hold at once (past them: the slot model of the same solver).
    """

    patterns: PatternOptions = field(default_factory=PatternOptions)
    column_generation: ColumnGenerationOptions = field(default_factory=ColumnGenerationOptions)
    max_cut_rounds: int = 50
    max_pyomo_patterns: int = 200_000
    max_cpsat_patterns: int = 200_000


__all__ = ["ColumnGenerationOptions", "ExactOptions", "PatternOptions"]
