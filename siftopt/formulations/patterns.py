"""Per-token node-set patterns: the columns of the pattern (Dantzig–Wolfe) formulation of (P).

A **pattern** of token t is a set C of remote nodes together with the least degradation
``D_t(C)`` of the token when it is sent to exactly the nodes of C (docs/model.md §3.1): every
slot takes an action among its options on ``C ∪ {0}`` or skip, and every node of C serves at
least one slot. The pattern masters (``siftopt.backends.highs.master``, the Pyomo and CP-SAT
pattern models) choose one pattern per token; node loads are counts of the chosen patterns
that contain the node.

Only non-dominated patterns are kept, which keeps the master small and exact:

* C is **dominated** by a proper subset C' when ``D_t(C') ≤ D_t(C)`` and every node of
  ``C \\ C'`` has a non-decreasing energy table (taking the token off such nodes never raises
  the energy). Any solution can be turned into one that uses only non-dominated patterns
  without raising its energy or any degradation, so dropping dominated patterns is exact.
* Without a mean row, D only has to meet the per-token rule: C is dominated by any subset C'
  as above that is kept (the **minimal kept** sets remain).
* Every kept pattern meets the per-token rule of :mod:`siftopt.model.budgets` *exactly* and
  the room the mean budget leaves given every other token's least degradation (a
  relaxation; the mean row, and the backends' final check, enforce the mean).

The modules, one concern each:

* :mod:`.space` — classes, their budgets, slot tables, relevant nodes, the exact-use DP
  (:func:`pattern_space`, :class:`PatternSpace`, :class:`PatternOptions`);
* :mod:`.enumerate` — enumeration and pricing (:func:`enumerate_patterns`,
  :func:`cheapest_patterns`);
* :mod:`.recover` — chosen patterns → actions, actions → patterns;
* :mod:`.decode` — the decode rule (per-token cheapest patterns, no solver).

Identical tokens (same experts, weights and budget) share one **class** with an integer count.
Past the limits of :class:`PatternOptions` the enumeration raises
:class:`PatternLimitError`; callers fall back to the slot formulation.

Units: degradations are dimensionless (``w·c`` of docs/model.md §3.3); prices are in the
caller's energy unit (per token of load, per unit of degradation).
"""

from __future__ import annotations

from siftopt.formulations.decode import (
    decode_rule_applies,
    mask_loads,
    masks_energy_j,
    one_token_energy,
)
from siftopt.formulations.enumerate import cheapest_patterns, enumerate_patterns
from siftopt.formulations.recover import (
    actions_for_patterns,
    assign_patterns,
    options_for_patterns,
    pattern_of_actions,
)
from siftopt.formulations.space import (
    LINEAR_RTOL,
    PatternLimitError,
    PatternOptions,
    PatternSet,
    PatternSpace,
    Pricing,
    SlotTable,
    class_budgets,
    exact_use_table,
    is_linear,
    mask_bits,
    mask_sums,
    monotone_nodes,
    pattern_space,
    segments,
    slot_table,
    token_classes,
)

__all__ = ["LINEAR_RTOL", "PatternLimitError", "PatternOptions", "PatternSet", "PatternSpace",
           "Pricing", "SlotTable", "actions_for_patterns", "assign_patterns",
           "cheapest_patterns", "class_budgets", "decode_rule_applies", "enumerate_patterns",
           "exact_use_table", "is_linear", "mask_bits", "mask_loads", "mask_sums",
           "masks_energy_j", "monotone_nodes", "one_token_energy", "options_for_patterns",
           "pattern_of_actions", "pattern_space", "segments", "slot_table", "token_classes"]
