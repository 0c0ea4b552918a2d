"""Closed-form and baseline selection policies (docs/model.md §6, docs/policies.md).

A policy maps an :class:`~siftopt.model.instance.Instance` to an ``(L, K)`` integer array of
targets (the top-K expert itself = keep, another expert = replace, ``SKIP`` = skip), which
the shared evaluator then scores. The built-in rules are registered (by module path, with
their capabilities) in :mod:`siftopt.registry`; ``POLICIES`` maps their names to the
functions. A user's policy is written against :mod:`siftopt.policies.interface`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from siftopt.model.instance import Instance
from siftopt.policies.decode import MAX_DECODE_NODES, sift_decode
from siftopt.policies.price import MAX_PRICE_ITERATIONS, sift_price, sift_price_run
from siftopt.policies.ratio import sift_ratio
from siftopt.policies.simple import local, topk
from siftopt.registry import policies

#: The built-in rules by name (the registry's entries with a module path).
POLICIES: dict[str, Callable[[Instance], np.ndarray]] = {
    name: entry.function for name, entry in policies().items() if entry.target}

__all__ = ["MAX_DECODE_NODES", "MAX_PRICE_ITERATIONS", "POLICIES", "local", "sift_decode",
           "sift_price", "sift_price_run", "sift_ratio", "topk"]
