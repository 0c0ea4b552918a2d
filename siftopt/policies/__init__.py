"""Closed-form and baseline selection policies (docs/model.md §6, docs/policies.md).

A policy maps an :class:`~siftopt.model.instance.Instance` to an ``(L, K)`` integer array of
targets (the top-K expert itself = keep, another expert = replace, ``SKIP`` = skip), which
the shared evaluator then scores. Each is registered once in :mod:`siftopt.registry` with what
it can do; ``POLICIES`` maps the registered names to the functions.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from siftopt.model.instance import Instance
from siftopt.policies.decode import MAX_DECODE_NODES, sift_decode
from siftopt.policies.price import MAX_PRICE_ITERATIONS, sift_price, sift_price_run
from siftopt.policies.ratio import sift_ratio
from siftopt.policies.simple import local, topk
from siftopt.registry import Capabilities, register_policy

_RULES: tuple[tuple[str, Callable[[Instance], np.ndarray], str, str], ...] = (
    ("topk", topk, "keep every slot (conventional Top-K routing)",
     "may violate latency and never saves energy"),
    ("local", local, "every remote slot takes its cheapest free fallback (local replacement "
     "or skip)", "may violate the accuracy budgets"),
    ("sift-decode", sift_decode, "the exact decode rule: cheapest node set that meets the "
     "budget (optimal for one token, Theorem 3); token by token for L > 1",
     f"refuses past {MAX_DECODE_NODES} relevant nodes of a token; heuristic for L > 1 "
     "(may miss feasibility when caps bind)"),
    ("sift-ratio", sift_ratio, "threshold rule: drop (token, node) items by energy saved per "
     "unit of degradation", "heuristic; optimal under the conditions of docs/policies.md"),
    ("sift-price", sift_price, "prefill prices: each token decodes at marginal node prices, "
     "prices updated to a fixed point",
     f"heuristic; at most {MAX_PRICE_ITERATIONS} price rounds"),
)
for _name, _function, _summary, _limits in _RULES:
    register_policy(_name, summary=_summary,
                    capabilities=Capabilities(exact=False, limits=_limits))(_function)

#: Registered name → policy function (the built-in rules above).
POLICIES: dict[str, Callable[[Instance], np.ndarray]] = {name: f for name, f, _, _ in _RULES}

__all__ = ["MAX_DECODE_NODES", "MAX_PRICE_ITERATIONS", "POLICIES", "local", "sift_decode",
           "sift_price", "sift_price_run", "sift_ratio", "topk"]
