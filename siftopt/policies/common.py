"""Data shared by the policies: per-slot local fallbacks, per-token remote options, budgets.

Everything here is derived from :class:`~siftopt.model.problem.ProblemData` once per instance
(cached) and held in flat numpy arrays:

* the **fallback** of a slot is its least-degradation option that needs no remote node — a
  replacement by a local expert (node 0) or a skip; its degradation ``w·c_loc`` is the slot's
  **base** degradation;
* a **pair** is a (slot, remote node) combination: the least-degradation option of the slot
  hosted on that node (keep or replace), kept only if it is reachable (cap ≥ 1) and strictly
  better than the slot's base. Pairs are sorted by slot, hence by token.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from siftopt.model.budgets import TOL
from siftopt.model.instance import Instance
from siftopt.model.problem import ProblemData, problem_data


@dataclass(frozen=True, eq=False)
class PolicyData:
    """Per-instance arrays for the policies (see the module docstring)."""

    data: ProblemData
    base_deg: np.ndarray  # (S,) least degradation without a remote node (w·c_loc)
    base_opt: np.ndarray  # (S,) option index of that fallback
    keep_opt: np.ndarray  # (S,) option index of keep
    pair_start: np.ndarray  # (L + 1,) CSR offsets of each token's pairs
    pair_k: np.ndarray  # (P,) slot position 0..K-1 within the token
    pair_node: np.ndarray  # (P,) remote node 1..M
    pair_deg: np.ndarray  # (P,) degradation of the pair's option
    pair_opt: np.ndarray  # (P,) option index

    @property
    def inst(self) -> Instance:
        return self.data.inst

    def node_energy(self, node: int, load: int) -> float:
        """``E_m(load)`` of remote node ``node`` (1..M); ``inf`` above its cap."""
        table = self.data.tables[node - 1]
        return float(table.energy_j[load]) if load <= table.cap else float("inf")

    def marginal(self, node: int, load: int) -> float:
        """``E_m(load) − E_m(load − 1)`` for ``1 ≤ load ≤ cap`` (inf above the cap)."""
        return self.node_energy(node, load) - self.node_energy(node, load - 1)


def _first_per_group(keys: tuple[np.ndarray, ...], group: np.ndarray) -> np.ndarray:
    """Indices of the first element of each group after sorting by ``keys`` (last = primary).

    ``group`` must be the primary key; returns indices into the original arrays.
    """
    order = np.lexsort(keys)
    g = group[order]
    first = np.ones(g.size, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


@functools.lru_cache(maxsize=32)
def policy_data(inst: Instance) -> PolicyData:
    """Build (and cache per instance object) the :class:`PolicyData` of an instance."""
    data = problem_data(inst)
    n_opts = data.opt_target.size
    opt_index = np.arange(n_opts)
    local = data.opt_node <= 0  # node 0 or skip
    base_cost = np.where(local, data.opt_degradation, np.inf)
    base_opt = _first_per_group((opt_index, base_cost, data.opt_slot), data.opt_slot)
    base_deg = data.opt_degradation[base_opt]
    keep_opt = data.slot_start[:-1].copy()  # keep is every slot's first option

    remote = (data.opt_node >= 1) & data.opt_reachable
    idx = np.flatnonzero(remote)
    if idx.size:
        pair_key = data.opt_slot[idx] * (data.num_nodes + 1) + data.opt_node[idx]
        first = _first_per_group((idx, data.opt_degradation[idx], pair_key), pair_key)
        sel = idx[first]
        sel = sel[data.opt_degradation[sel] < base_deg[data.opt_slot[sel]]]
        sel = sel[np.lexsort((data.opt_node[sel], data.opt_slot[sel]))]
    else:
        sel = idx
    k = inst.top_k
    pair_slot = data.opt_slot[sel]
    pair_start = np.searchsorted(pair_slot // k, np.arange(inst.num_tokens + 1), side="left")
    return PolicyData(data=data, base_deg=base_deg, base_opt=base_opt, keep_opt=keep_opt,
                      pair_start=pair_start.astype(np.int64), pair_k=pair_slot % k,
                      pair_node=data.opt_node[sel], pair_deg=data.opt_degradation[sel],
                      pair_opt=sel)


def mean_budget_binds(inst: Instance) -> bool:
    """Whether a mean budget couples the tokens: L > 1 and it binds
    (:attr:`siftopt.model.budgets.Budgets.mean_binds`). The decode-based policies then handle
    it with a multiplier."""
    return inst.num_tokens > 1 and problem_data(inst).budgets.mean_binds


def token_budgets(inst: Instance) -> np.ndarray:
    """The hard per-token budgets ``b_t`` of the decode-based policies.

    ``b_t = ε_t`` (∞ when absent). For one token a mean budget is a per-token budget too:
    ``b_0 = min(ε_0, ε̄)``. When the mean budget binds (:func:`mean_budget_binds`) it is *not*
    folded in here; :func:`siftopt.policies.decode.decode_with_mean` prices it instead.
    """
    eps = (np.array(inst.eps_token, dtype=float) if inst.eps_token is not None
           else np.full(inst.num_tokens, np.inf))
    if inst.num_tokens == 1 and inst.eps_mean is not None:
        eps = np.minimum(eps, float(inst.eps_mean))
    return eps


def options_to_actions(data: ProblemData, options: np.ndarray) -> np.ndarray:
    """``(L, K)`` targets from one option index per slot."""
    return data.opt_target[np.asarray(options, dtype=np.int64)].reshape(
        data.inst.topk_experts.shape)


def fits(value: float | np.ndarray, budget: float | np.ndarray) -> bool | np.ndarray:
    """``value − budget ≤ TOL``: the rule of :mod:`siftopt.model.budgets` (docs/model.md §3.4)
    for a degradation and its budget (elementwise for arrays)."""
    return value - budget <= TOL


@dataclass(frozen=True, eq=False)
class PolicyAnswer:
    """What a policy may return instead of a bare ``(L, K)`` targets array: the targets and
    a lower bound on the optimum energy of (P) that the policy proved, in J (None: none).

    ``dual_bound_j`` must be valid for every instance the policy is run on: no feasible
    decision has a lower energy. A caller that finds the evaluated energy ``E`` of
    ``targets`` within the equality of docs/model.md §3.4 of the bound
    (``E − dual_bound_j ≤ 1e-6·E + 1e-15``) may report the answer as optimal.
    """

    targets: np.ndarray  # (L, K) targets: the expert (keep), another expert, or SKIP
    dual_bound_j: float | None = None

    def __array__(self, dtype: object = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(answer)`` is the targets, so a caller that expects an array (and
        ignores the bound) keeps working."""
        out = np.asarray(self.targets, dtype=dtype)
        return out.copy() if copy else out

    @property
    def shape(self) -> tuple[int, ...]:
        """The targets' shape ``(L, K)``."""
        return tuple(np.shape(self.targets))


def policy_targets(answer: np.ndarray | PolicyAnswer) -> np.ndarray:
    """The ``(L, K)`` targets of a policy's return value (an array or a :class:`PolicyAnswer`)."""
    return answer.targets if isinstance(answer, PolicyAnswer) else np.asarray(answer)
