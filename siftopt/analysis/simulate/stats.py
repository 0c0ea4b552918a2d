"""Monte Carlo statistics: a simulated mean or frequency with its 95% confidence interval.

The intervals and why they are sound are in docs/fading.md §8.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Two-sided 95% standard-normal quantile.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A simulated mean with its 95% confidence interval and the closed-form prediction.

    Attributes:
        value: the simulated mean (or frequency); None when no run qualified.
        low, high: the 95% confidence interval; equal to ``value`` when the quantity is
            deterministic; None when it cannot be computed (fewer than two samples).
        expected: the closed-form prediction, None when there is none.
        se: the standard error of ``value`` (sample standard deviation / √n), when defined.
    """

    value: float | None
    low: float | None
    high: float | None
    expected: float | None = None
    se: float | None = None

    @property
    def interval(self) -> list[float] | None:
        """``[low, high]`` or None."""
        if self.low is None or self.high is None:
            return None
        return [self.low, self.high]

    @classmethod
    def exact(cls, value: float) -> Estimate:
        """A deterministic quantity: its interval is the point itself."""
        return cls(value, value, value, value, 0.0)

    def with_expected(self, expected: float | None) -> Estimate:
        return dataclasses.replace(self, expected=expected)


def mean_estimate(samples: npt.ArrayLike, expected: float | None = None) -> Estimate:
    """Sample mean with the normal-approximation 95% interval ``mean ± 1.96·sd/√n``.

    ``sd`` is the sample standard deviation (ddof = 1). With one sample the interval is
    undefined (None); with none the value is None too.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return Estimate(None, None, None, expected, None)
    mean = float(x.mean())
    if x.size < 2:
        return Estimate(mean, None, None, expected, None)
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    return Estimate(mean, mean - Z95 * se, mean + Z95 * se, expected, se)


def wilson_interval(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / trials``.

    ``successes`` may be fractional (a sum of per-run fractions in [0, 1]): the interval only
    uses the variance bound ``p(1 − p)/n``, which holds for any variable in [0, 1].
    """
    if trials <= 0:
        raise ValueError(f"trials must be >= 1, got {trials}")
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / trials + z2 / (4.0 * trials * trials))
    low = 0.0 if p == 0.0 else max(0.0, centre - half)
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return low, high


def proportion_estimate(successes: float, trials: int, expected: float | None = None
                        ) -> Estimate:
    """A frequency with its Wilson 95% interval; ``se = √(p(1−p)/n)`` at the observed p."""
    if trials <= 0:
        return Estimate(None, None, None, expected, None)
    p = successes / trials
    low, high = wilson_interval(successes, trials)
    return Estimate(p, low, high, expected, math.sqrt(max(p * (1.0 - p), 0.0) / trials))


__all__ = ["Z95", "Estimate", "mean_estimate", "proportion_estimate", "wilson_interval"]
