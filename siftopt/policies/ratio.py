"""``sift-ratio``: the threshold (ratio) rule with local fallbacks only.

Start from Top-K routing (every slot kept). Each (token t, remote node m) pair that Top-K
uses is an **item**; dropping it moves every slot of t hosted on m to its fallback (the best
local replacement or a skip, :mod:`siftopt.policies.common`), which saves the node's marginal
energy and costs ``s[t,m] = Σ_{i∈𝒦_t, π(i)=m} w[t,i]·c_loc(i)`` degradation.

1. **Forced drops** (load caps): a node whose Top-K load exceeds its cap must lose the
   excess; items of over-cap nodes are taken in ascending ``s`` (the cheapest drops), skipping
   those that do not fit the budgets; if that is not enough, the cheapest remaining items are
   dropped anyway (the evaluator then reports the budget violation).
2. **Ratio drops**: repeatedly drop the item of largest marginal energy saved per unit of
   degradation, ``(E_m(n_m) − E_m(n_m − 1)) / s[t,m]`` (``s = 0``: first), skipping items
   that do not fit the per-token or mean budget, until no item saves energy or fits.

Within one node the best next item is the cheapest, so a heap over nodes (keyed by the
ratio of each node's next item, refreshed lazily) gives O(I log I) for I ≤ L·K items.
"""

from __future__ import annotations

import heapq

import numpy as np

from siftopt.model.budgets import TOL
from siftopt.model.instance import Instance
from siftopt.policies.common import PolicyData, fits, options_to_actions, policy_data


def ratio_items(pd: PolicyData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items of Top-K routing: (token, node, s) arrays, sorted by (node, s, token)."""
    inst, data = pd.inst, pd.data
    slot_node = inst.placement[data.slot_expert]
    remote = np.flatnonzero(slot_node >= 1)
    key = data.slot_token[remote] * (inst.num_nodes + 1) + slot_node[remote]
    keys, inverse = np.unique(key, return_inverse=True)
    cost = np.bincount(inverse, weights=pd.base_deg[remote], minlength=keys.size)
    token, node = keys // (inst.num_nodes + 1), keys % (inst.num_nodes + 1)
    order = np.lexsort((token, cost, node))
    return token[order], node[order], cost[order]


class _Budgets:
    """Remaining per-token and mean slack, with the model's tolerance."""

    def __init__(self, inst: Instance) -> None:
        n = inst.num_tokens
        self.token = (np.array(inst.eps_token, dtype=float) if inst.eps_token is not None
                      else np.full(n, np.inf))
        self.used = np.zeros(n)
        self.total = np.inf if inst.eps_mean is None else \
            n * (inst.eps_mean + TOL)
        self.total_used = 0.0

    def token_fits(self, t: int, s: float) -> bool:
        return fits(self.used[t] + s, self.token[t])

    def mean_fits(self, s: float) -> bool:
        return self.total_used + s <= self.total

    def take(self, t: int, s: float) -> None:
        self.used[t] += s
        self.total_used += s


def _forced_drops(pd: PolicyData, token: np.ndarray, node: np.ndarray, cost: np.ndarray,
                  budgets: _Budgets, dropped: np.ndarray, loads: np.ndarray) -> None:
    """Drop the cheapest items of every over-cap node until its load fits its cap."""
    caps = pd.data.caps
    need = np.maximum(loads - caps, 0)
    need[0] = 0
    if not need.any():
        return
    cand = np.flatnonzero(need[node] > 0)
    cand = cand[np.lexsort((token[cand], cost[cand]))]
    for strict in (True, False):
        for x in cand.tolist():
            m, t, s = int(node[x]), int(token[x]), float(cost[x])
            if dropped[x] or need[m] == 0:
                continue
            if strict and not (budgets.token_fits(t, s) and budgets.mean_fits(s)):
                continue
            dropped[x] = True
            budgets.take(t, s)
            need[m] -= 1
            loads[m] -= 1


def _ratio_drops(pd: PolicyData, token: np.ndarray, node: np.ndarray, cost: np.ndarray,
                 budgets: _Budgets, dropped: np.ndarray, loads: np.ndarray) -> None:
    """Drop items in descending saved-energy-per-degradation order while they fit."""
    queues: dict[int, list[int]] = {}
    for x in np.flatnonzero(~dropped).tolist():  # items are sorted by (node, s, token)
        queues.setdefault(int(node[x]), []).append(x)
    heads = dict.fromkeys(queues, 0)

    def key(m: int) -> tuple[float, float, int] | None:
        """Heap key of node m's next droppable item, or None when the node is done."""
        queue = queues[m]
        while heads[m] < len(queue):
            x = queue[heads[m]]
            s = float(cost[x])
            if not budgets.mean_fits(s):  # later items of m cost at least as much
                return None
            if budgets.token_fits(int(token[x]), s):
                saving = pd.marginal(m, int(loads[m]))
                if s == 0.0:
                    return (-np.inf, 0.0, m) if saving >= 0 else None
                return (-saving / s, s, m) if saving > 0 else None
            heads[m] += 1  # a token's slack only shrinks: this item will never fit
        return None

    heap = [k for m in queues if (k := key(m)) is not None]
    heapq.heapify(heap)
    while heap:
        entry = heapq.heappop(heap)
        m = entry[2]
        fresh = key(m)
        if fresh is None:
            continue
        if fresh != entry:  # stale: the node's marginal or next item changed
            heapq.heappush(heap, fresh)
            continue
        x = queues[m][heads[m]]
        heads[m] += 1
        dropped[x] = True
        budgets.take(int(token[x]), float(cost[x]))
        loads[m] -= 1
        if (k := key(m)) is not None:
            heapq.heappush(heap, k)


def sift_ratio(inst: Instance) -> np.ndarray:
    """``sift-ratio`` (docs/model.md §6, docs/policies.md §4)."""
    pd = policy_data(inst)
    token, node, cost = ratio_items(pd)
    loads = np.bincount(node, minlength=inst.num_nodes + 1).astype(np.int64)
    budgets = _Budgets(inst)
    dropped = np.zeros(token.size, dtype=bool)
    _forced_drops(pd, token, node, cost, budgets, dropped, loads)
    _ratio_drops(pd, token, node, cost, budgets, dropped, loads)
    options = pd.keep_opt.copy()
    if dropped.any():
        k = inst.top_k
        slot_node = inst.placement[pd.data.slot_expert]
        drop_key = np.zeros((inst.num_tokens, inst.num_nodes + 1), dtype=bool)
        drop_key[token[dropped], node[dropped]] = True
        slots = np.flatnonzero((slot_node >= 1) &
                               drop_key[np.arange(options.size) // k, slot_node])
        options[slots] = pd.base_opt[slots]
    return options_to_actions(pd.data, options)
