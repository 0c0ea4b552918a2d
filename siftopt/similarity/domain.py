"""What the constants claim, and where: :class:`Bounds` and its validity domain.

Validity domain of the returned constants (recorded in :class:`Bounds`):

* plain experts without biases: every x ∈ ℝ^d;
* gated experts: the ball ‖x‖ ≤ ``radius`` (the map is quadratic, no global β exists);
* experts whose output at x = 0 may be non-zero (biases): ‖x‖ ≥ ``min_radius`` (no bound of the
  form ‖E(x)‖ ≤ β‖x‖ can hold near x = 0 when E(0) ≠ 0).

:func:`check_domain` validates the radii a caller asks for against these rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from siftopt.errors import UsageError
from siftopt.similarity.weights import GATED_KINDS, ExpertWeights


@dataclass(frozen=True, eq=False)
class Bounds:
    """β (N,) and δ (N, N) with the kind, method and validity domain they were computed for.

    ``radius``: the constants hold for ‖x‖ ≤ radius (None: no upper limit). ``min_radius``: they
    hold for ‖x‖ ≥ min_radius (None: no lower limit). ``method == "empirical"`` means the numbers
    are estimates, not bounds. ``notes`` are human remarks (not part of the JSON contract).
    """

    beta: np.ndarray
    delta: np.ndarray
    kind: str
    method: str
    radius: float | None
    min_radius: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def is_bound(self) -> bool:
        return self.method == "analytic"

    def to_json_dict(self) -> dict[str, Any]:
        """The ``bounds`` block of an instance file (``min_radius`` only when it is set)."""
        out: dict[str, Any] = {
            "beta": [float(b) for b in self.beta],
            "delta": [[float(v) for v in row] for row in self.delta],
            "kind": self.kind,
            "method": self.method,
            "radius": None if self.radius is None else float(self.radius),
        }
        if self.min_radius is not None:
            out["min_radius"] = float(self.min_radius)
        return out


def _needs_min_radius(weights: ExpertWeights, kind: str) -> bool:
    """Whether E(0) can be non-zero, so that bounds need ‖x‖ ≥ min_radius."""
    if kind in GATED_KINDS:
        return weights.has_b2  # E(0) = b2 for gated experts
    return weights.has_b1 or weights.has_b2  # E(0) = w2 σ(b1) + b2


def _positive(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise UsageError(f"{name}: must be a positive finite number, got {value!r}")
    return v


def check_domain(weights: ExpertWeights, kind: str, radius: float | None,
                 min_radius: float | None) -> tuple[float | None, float | None, list[str]]:
    """Validate the radii; return (rho, r, notes) with the radii the bounds depend on."""
    rho = _positive(radius, "radius")
    r = _positive(min_radius, "min_radius")
    notes: list[str] = []
    if rho is not None and r is not None and r > rho:
        raise UsageError(f"min_radius: must be <= radius ({rho}), got {r}")
    if kind in GATED_KINDS and rho is None:
        raise UsageError(f"radius: required for kind {kind}: a gated expert is quadratic in x, "
                         "so its bounds hold only on a ball ‖x‖ <= radius")
    if _needs_min_radius(weights, kind):
        if r is None:
            raise UsageError(
                "min_radius: required because the biases make E(0) != 0, and no bound "
                "‖E(x)‖ <= β‖x‖ holds near x = 0; bounds then hold for ‖x‖ >= min_radius")
    elif r is not None:
        notes.append("min_radius ignored: E(0) = 0, the bounds hold down to x = 0")
        r = None
    if kind not in GATED_KINDS and rho is not None:
        notes.append(f"radius ignored: bounds for kind {kind} hold for every ‖x‖")
        rho = None
    return rho, r, notes
