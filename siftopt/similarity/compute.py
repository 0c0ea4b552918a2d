"""One entry point over both methods: :func:`compute_bounds` (what ``siftopt similarity`` calls)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from siftopt.errors import UsageError
from siftopt.similarity.analytic import analytic_bounds
from siftopt.similarity.domain import Bounds
from siftopt.similarity.empirical import empirical_bounds
from siftopt.similarity.weights import ExpertWeights

METHODS: tuple[str, ...] = ("analytic", "empirical")


def compute_bounds(weights: ExpertWeights, kind: str, method: str = "analytic", *,
                   radius: float | None = None, min_radius: float | None = None,
                   calibration: np.ndarray | None = None, seed: int = 0,
                   exact_pairs: int | Literal["auto", "all"] = "auto",
                   calibration_source: str = "calibration") -> Bounds:
    """Dispatch to :func:`analytic_bounds` or :func:`empirical_bounds`."""
    if method == "analytic":
        if calibration is not None:
            raise UsageError("calibration: only used by --method empirical")
        return analytic_bounds(weights, kind, radius, min_radius=min_radius,
                               exact_pairs=exact_pairs)
    if method == "empirical":
        return empirical_bounds(weights, kind, radius, calibration, seed, min_radius=min_radius,
                                calibration_source=calibration_source)
    raise UsageError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
