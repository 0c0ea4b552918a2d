"""Problem data derived from an instance: candidates, slots, their actions, caps and tables.

This is the data every model and policy shares (docs/model.md §2–3), computed once and held
in flat numpy arrays:

* a **slot** is a (token t, position k) pair, ``slot = t·K + k``, serving expert
  ``i = topk_experts[t, k]`` with weight ``w[t, i]``;
* an **option** is one action of a slot: keep (target = i), replace→j (target = j), or skip
  (target = ``SKIP`` = −1), with its node (``π(target)``, −1 for skip) and its degradation
  ``w·c`` (0, ``w·δ[i][j]``, ``w·β[i]``).

Actions of a whole instance are an ``(L, K)`` integer array of targets (``SKIP`` for skip).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from siftopt.model.budgets import Budgets, budgets_of, token_degradation
from siftopt.model.decision import SKIP
from siftopt.model.instance import Instance
from siftopt.model.physics import NodeEnergyTable, energy_tables

NO_NODE = -1


def candidates(delta: np.ndarray, max_candidates: int | None) -> tuple[np.ndarray, ...]:
    """``cand(i)``: the first R experts j ≠ i with finite ``δ[i][j]``, by ``(δ[i][j], j)``."""
    out = []
    n = delta.shape[0]
    for i in range(n):
        row = delta[i]
        js = np.array([j for j in range(n) if j != i and math.isfinite(row[j])], dtype=np.int64)
        order = np.lexsort((js, row[js])) if js.size else js
        js = js[order]
        if max_candidates is not None:
            js = js[:max_candidates]
        out.append(js)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class ProblemData:
    """Flat arrays of slots and options of an instance, plus node caps and energy tables."""

    inst: Instance
    tables: tuple[NodeEnergyTable, ...]
    candidates: tuple[np.ndarray, ...]
    caps: np.ndarray  # (M + 1,) feasible load of each node; caps[0] = L (the source is free)
    slot_token: np.ndarray  # (S,)
    slot_expert: np.ndarray  # (S,)
    slot_weight: np.ndarray  # (S,)
    slot_start: np.ndarray  # (S + 1,) CSR offsets into the option arrays
    opt_slot: np.ndarray  # (O,)
    opt_target: np.ndarray  # (O,) expert, or SKIP
    opt_node: np.ndarray  # (O,) node 0..M, or NO_NODE for skip
    opt_cost: np.ndarray  # (O,) c: 0 keep, δ replace, β skip
    opt_degradation: np.ndarray  # (O,) w·c
    budgets: Budgets  # the accuracy budgets and the one rule that decides them

    @property
    def num_slots(self) -> int:
        return int(self.slot_token.size)

    @property
    def num_tokens(self) -> int:
        return self.inst.num_tokens

    @property
    def num_nodes(self) -> int:
        return self.inst.num_nodes

    @property
    def opt_reachable(self) -> np.ndarray:
        """Options whose node can carry at least one token (skip and local always can)."""
        node = np.maximum(self.opt_node, 0)
        return (self.opt_node <= 0) | (self.caps[node] >= 1)

    def slot_options(self, slot: int) -> range:
        return range(int(self.slot_start[slot]), int(self.slot_start[slot + 1]))

    def least_degradation(self, nodes_allowed: np.ndarray | None = None) -> np.ndarray:
        """Per-token least possible ``D_t`` using only allowed nodes (default: reachable ones).

        ``nodes_allowed`` is a boolean array over nodes 0..M; skip is always allowed.
        """
        if nodes_allowed is None:
            allowed = self.opt_reachable
        else:
            allowed = (self.opt_node < 0) | nodes_allowed[np.maximum(self.opt_node, 0)]
        cost = np.where(allowed, self.opt_degradation, np.inf)
        per_slot = np.minimum.reduceat(cost, self.slot_start[:-1])
        return token_degradation(per_slot.reshape(self.num_tokens, self.inst.top_k))

    def energy_scale_j(self) -> float:
        """A typical energy: the smallest positive one-token energy of any node, in J.

        Solver models divide energies by it so that objective values are O(1)..O(L·M).
        """
        firsts = [t.energy_j[1] for t in self.tables if t.cap >= 1 and t.energy_j[1] > 0]
        return float(min(firsts)) if firsts else 1.0


@functools.lru_cache(maxsize=64)
def problem_data(inst: Instance) -> ProblemData:
    """Build (and cache per instance object) the :class:`ProblemData` of an instance."""
    tables = energy_tables(inst)
    cands = candidates(inst.delta, inst.max_candidates)
    caps = np.array([inst.num_tokens] + [t.cap for t in tables], dtype=np.int64)
    n_tokens, k = inst.topk_experts.shape
    slot_token = np.repeat(np.arange(n_tokens), k)
    slot_expert = inst.topk_experts.reshape(-1)
    slot_weight = inst.topk_weights.reshape(-1)
    # options per expert: keep, replacements, skip
    per_expert_targets = [np.concatenate(([i], cands[i], [SKIP])) for i in range(inst.num_experts)]
    counts = np.array([per_expert_targets[i].size for i in slot_expert], dtype=np.int64)
    slot_start = np.zeros(slot_expert.size + 1, dtype=np.int64)
    np.cumsum(counts, out=slot_start[1:])
    opt_slot = np.repeat(np.arange(slot_expert.size), counts)
    opt_target = (np.concatenate([per_expert_targets[i] for i in slot_expert])
                  if slot_expert.size else np.zeros(0, dtype=np.int64))
    opt_expert = slot_expert[opt_slot]
    is_skip = opt_target == SKIP
    safe_target = np.where(is_skip, 0, opt_target)
    opt_node = np.where(is_skip, NO_NODE, inst.placement[safe_target])
    opt_cost = np.where(is_skip, inst.beta[opt_expert], inst.delta[opt_expert, safe_target])
    opt_degradation = slot_weight[opt_slot] * opt_cost
    return ProblemData(inst=inst, tables=tables, candidates=cands, caps=caps,
                       slot_token=slot_token, slot_expert=slot_expert, slot_weight=slot_weight,
                       slot_start=slot_start, opt_slot=opt_slot, opt_target=opt_target,
                       opt_node=opt_node.astype(np.int64), opt_cost=opt_cost,
                       opt_degradation=opt_degradation,
                       budgets=budgets_of(inst.eps_token, inst.eps_mean, inst.num_tokens))


def keep_all(inst: Instance) -> np.ndarray:
    """Actions that keep every slot (conventional Top-K routing)."""
    return np.array(inst.topk_experts, dtype=np.int64)


def skip_all(inst: Instance) -> np.ndarray:
    """Actions that skip every slot."""
    return np.full(inst.topk_experts.shape, SKIP, dtype=np.int64)
