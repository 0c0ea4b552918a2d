"""Closed-form and baseline selection policies (docs/model.md §6, docs/policies.md).

A policy maps an :class:`~siftopt.model.instance.Instance` to an ``(L, K)`` integer array of
targets (the top-K expert itself = keep, another expert = replace, ``SKIP`` = skip), which
the shared evaluator then scores. ``POLICIES`` maps the registered names to the functions;
``siftopt solve --method NAME`` and ``siftopt verify --methods`` use it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from siftopt.model.instance import Instance
from siftopt.policies.decode import MAX_DECODE_NODES, sift_decode
from siftopt.policies.price import MAX_PRICE_ITERATIONS, sift_price, sift_price_run
from siftopt.policies.ratio import sift_ratio
from siftopt.policies.simple import local, topk

POLICIES: dict[str, Callable[[Instance], np.ndarray]] = {
    "topk": topk,
    "local": local,
    "sift-decode": sift_decode,
    "sift-ratio": sift_ratio,
    "sift-price": sift_price,
}

__all__ = ["POLICIES", "MAX_DECODE_NODES", "MAX_PRICE_ITERATIONS", "local", "sift_decode",
           "sift_price", "sift_price_run", "sift_ratio", "topk"]
