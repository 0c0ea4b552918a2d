"""The two baselines: ``topk`` (conventional Top-K routing) and ``local`` (no radio at all)."""

from __future__ import annotations

import numpy as np

from siftopt.model.instance import Instance
from siftopt.model.problem import keep_all
from siftopt.policies.common import options_to_actions, policy_data


def topk(inst: Instance) -> np.ndarray:
    """Keep every slot. Energy ``Σ_m E_m(n_m)`` with every top-K node used; may violate the
    latency (cap) constraint."""
    return keep_all(inst)


def local(inst: Instance) -> np.ndarray:
    """Every slot takes its least-degradation option without a remote node: keep for a
    local expert, else the best local replacement or a skip (ties: the earlier option,
    i.e. the replacement of lower δ, then skip). Energy 0."""
    pd = policy_data(inst)
    return options_to_actions(pd.data, pd.base_opt)
