"""The generator's parameters: :class:`GeneratorConfig`, with strict validation.

The same parameters are set by ``siftopt generate`` options and by the keys of a benchmark
configuration (``siftopt bench``), so both report a bad value the same way: one line naming the
file (if any) and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from siftopt.errors import InputError
from siftopt.experiments.generate.presets import ARCHITECTURES, SCENARIOS
from siftopt.model.instance import FADING_MODES, POWER_MODES

PLACEMENTS = ("round-robin", "random", "cluster", "memory")
BUDGETS = ("token", "mean", "both")


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines a generated instance, together with its seed.

    Attributes:
        preset: architecture preset (:data:`~siftopt.experiments.generate.presets.ARCHITECTURES`).
        scenario: wireless scenario (:data:`~siftopt.experiments.generate.presets.SCENARIOS`).
        tokens: batch size L (1 = decoding, > 1 = prefilling).
        nodes: remote nodes M (the source, node 0, comes in addition).
        fading: ``slow`` or ``rayleigh``; under Rayleigh fading the gains are mean gains.
        power_control: ``fixed`` or ``adaptive``.
        accuracy: accuracy budget as a fraction of the mean skip-everything degradation
            ``mean_t Σ_k w[t,k]·β[k]`` (dimensionless, in [1e-9, 10)).
        raise_budgets: raise each budget, where needed, to the least degradation achievable on
            the nodes that can carry the whole batch, so that the instance is feasible
            (default). Off: the budgets are exactly ``accuracy`` and (P) may be infeasible.
        budget: which budgets the instance carries: ``token`` (ε_t), ``mean`` (ε̄) or ``both``
            (ε̄ at ``accuracy``, ε_t at twice that).
        latency_scale: per-layer latency budget T as a multiple of the time the median node
            needs to serve the whole batch at full power (within its outage cap under Rayleigh
            fading). Dimensionless, in [1e-9, 1000).
        latency_s: an absolute per-layer budget T in s, in [1e-9, 10); overrides
            ``latency_scale``.
        similarity: expert-similarity knob in [0, 1]: 0 = unrelated experts within a cluster
            (no useful replacement), 1 = identical experts within a cluster.
        placement: ``round-robin``, ``random``, ``cluster`` (each similarity cluster on one
            node) or ``memory`` (experts per node proportional to node memory).
        router_entropy: target mean routing entropy as a fraction of ``ln N``, in (0, 1); the
            softmax temperature is calibrated to it.
        token_correlation: AR(1) correlation of the router logits of neighbouring tokens, in
            [0, 1) (prefill only).
        outage_max: chance-constraint level of Rayleigh instances, in [1e-6, 1) (smaller
            levels calibrate latency budgets beyond what an instance file accepts).
        max_candidates: replacement candidates kept per expert, 1..65536 (None = all useful
            ones).
        bits_per_element: bits b per element of the hidden state sent over the air.
    """

    preset: str
    scenario: str = "urban"
    tokens: int = 1
    nodes: int = 4
    fading: str = "slow"
    power_control: str = "adaptive"
    accuracy: float = 0.2
    raise_budgets: bool = True
    budget: str = "token"
    latency_scale: float = 1.5
    latency_s: float | None = None
    similarity: float = 0.6
    placement: str = "round-robin"
    router_entropy: float = 0.75
    token_correlation: float = 0.6
    outage_max: float = 0.1
    max_candidates: int | None = None
    bits_per_element: int = 16

    def to_dict(self) -> dict[str, Any]:
        """All parameters, defaults included (JSON-ready, stable key order)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> GeneratorConfig:
        """A copy with some parameters changed (validated)."""
        return config_from_mapping({**self.to_dict(), **changes})


# ------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # returns an error message, or None when the value is valid


def _choice(options: tuple[str, ...] | Any) -> Check:
    def check(v: Any) -> str | None:
        if v in tuple(options):
            return None
        return f"must be one of {', '.join(map(repr, tuple(options)))}, got {v!r}"
    return check


def _finite(v: Any) -> bool:
    """A number that is a finite double (not a boolean, not an integer beyond a double)."""
    if type(v) is float:
        return math.isfinite(v)
    return type(v) is int and abs(v) <= sys.float_info.max


def _show(v: Any) -> str:
    """A value for a message (a huge integer by its number of digits)."""
    return f"an integer of {len(str(abs(v)))} digits" if type(v) is int and abs(v) >= 10**16 \
        else repr(v)


def _integer(low: int, high: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if type(v) is not int:
            return f"must be an integer, got {v!r}"
        if v < low or (high is not None and v > high):
            top = "" if high is None else f" and <= {high}"
            return f"must be >= {low}{top}, got {_show(v)}"
        return None
    return check


def _real(low: float, high: float, *, low_open: bool = True, high_open: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if not _finite(v):
            return f"must be a finite number, got {_show(v)}"
        bad_low = v <= low if low_open else v < low
        bad_high = v >= high if high_open else v > high
        if bad_low or bad_high:
            lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
            return f"must be in {lo}{low:g}, {high:g}{hi}, got {v!r}"
        return None
    return check


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def _optional(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


CHECKS: dict[str, Check] = {
    "preset": _choice(ARCHITECTURES),
    "scenario": _choice(SCENARIOS),
    "tokens": _integer(1, 32_768),  # up to 32k-token prompts (issue 14)
    "nodes": _integer(1, 64),
    "fading": _choice(FADING_MODES),
    "power_control": _choice(POWER_MODES),
    "accuracy": _real(1e-9, 10.0, low_open=False),
    "raise_budgets": _boolean,
    "budget": _choice(BUDGETS),
    "latency_scale": _real(1e-9, 1e3, low_open=False),
    "latency_s": _optional(_real(1e-9, 10.0, low_open=False)),
    "similarity": _real(0.0, 1.0, low_open=False, high_open=False),
    "placement": _choice(PLACEMENTS),
    "router_entropy": _real(0.0, 1.0),
    "token_correlation": _real(0.0, 1.0, low_open=False),
    "outage_max": _real(1e-6, 1.0, low_open=False),
    "max_candidates": _optional(_integer(1, 65_536)),
    "bits_per_element": _integer(1, 64),
}
PARAMETERS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GeneratorConfig))
BOOLEAN_PARAMETERS = frozenset({"raise_budgets"})
#: Parameters stored as floats (an integer value is converted, so that 1 and 1.0 hash alike).
FLOAT_PARAMETERS = frozenset({"accuracy", "latency_scale", "latency_s", "similarity",
                              "router_entropy", "token_correlation", "outage_max"})


def unknown_key_message(key: str, allowed: tuple[str, ...]) -> str:
    """``unknown key 'x'; did you mean 'y'?`` (or the list of allowed keys)."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
    return f"unknown key {key!r}{hint}"


def check_parameter(key: str, value: Any, *, file: str | None = None,
                    path: str | None = None) -> None:
    """Raise a one-line InputError unless ``value`` is valid for generator parameter ``key``."""
    where = path or key
    if key not in CHECKS:
        raise InputError(unknown_key_message(key, PARAMETERS), file=file, path=where)
    if isinstance(value, bool) and key not in BOOLEAN_PARAMETERS:
        raise InputError(f"must not be a boolean, got {value!r}", file=file, path=where)
    problem = CHECKS[key](value)
    if problem:
        raise InputError(problem, file=file, path=where)


def config_from_mapping(values: Mapping[str, Any], *, file: str | None = None,
                        prefix: str = "") -> GeneratorConfig:
    """A validated :class:`GeneratorConfig`; errors name ``file`` and ``prefix.key``."""
    for key, value in values.items():
        check_parameter(key, value, file=file, path=f"{prefix}{key}")
    if "preset" not in values:
        raise InputError("missing required parameter", file=file, path=f"{prefix}preset")
    return GeneratorConfig(**{k: float(v) if k in FLOAT_PARAMETERS and v is not None else v
                              for k, v in values.items()})
