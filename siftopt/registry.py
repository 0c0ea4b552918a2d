"""The method registry: every exact backend and every policy, registered once with what it can do.

An **exact backend** is one (method, formulation, interface) triple — e.g. ``highs`` solving
the ``patterns`` formulation assembled ``direct``\\ ly with highspy — with the function that
solves a :class:`~siftopt.model.problem.ProblemData` (imported only when it runs, so listing
methods stays cheap). A **policy** is a function from an instance to actions. Both carry
:class:`Capabilities`; :func:`siftopt.facade.solve` picks the entry through :func:`exact_backend`
and :func:`policy`, ``siftopt methods`` lists :func:`methods`, and the tests are parametrised
from :func:`exact_backends` (one list, with a test that it covers the registry).

Adding a backend: write its solve function in its solver family's folder and add one
:func:`register_backend` line below. Adding a built-in policy: write it in
:mod:`siftopt.policies` and add one :func:`_builtin_policy` line below; a user's policy is
registered at run time with ``@siftopt.policy(name)``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from siftopt.errors import InputError


class MethodKind(StrEnum):
    """What a method promises: ``exact`` (proved optimum or a bound) or ``policy`` (a rule)."""

    EXACT = "exact"
    POLICY = "policy"


@dataclass(frozen=True)
class Capabilities:
    """What a method can take. ``fading``/``power``: the modes it handles; ``max_tokens``:
    the largest L (None: no limit); ``limits``: other documented limits, in words."""

    exact: bool
    fading: tuple[str, ...] = ("slow", "rayleigh")
    power: tuple[str, ...] = ("fixed", "adaptive")
    max_tokens: int | None = None
    warm_start: bool = False
    limits: str = ""


@dataclass(frozen=True)
class BackendEntry:
    """One exact backend: ``method`` × ``formulation`` × ``interface`` and where it lives."""

    method: str
    formulation: str
    interface: str
    target: str  # "module.path:function": (data, profile, *, time_limit_s, warm_start, options)
    requires: str  # the Python package it needs
    summary: str
    capabilities: Capabilities

    @property
    def name(self) -> str:
        """``method/formulation/interface`` (interface omitted where there is one)."""
        parts = [self.method, self.formulation]
        if self.interface != "native":
            parts.append(self.interface)
        return "/".join(parts)

    def available(self) -> bool:
        """Whether the package this backend needs is installed."""
        return importlib.util.find_spec(self.requires) is not None

    def load(self) -> Callable[..., Any]:
        """The solve function (imported now)."""
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)


@dataclass(frozen=True)
class PolicyEntry:
    """One policy: ``Instance → (L, K) actions``, imported from ``target`` when it runs (the
    built-in rules) or given as ``rule`` (a policy registered at run time)."""

    name: str
    summary: str
    capabilities: Capabilities
    target: str = ""  # "module.path:function" of a built-in rule
    rule: Callable[..., Any] | None = None

    @property
    def function(self) -> Callable[..., Any]:
        if self.rule is not None:
            return self.rule
        module, _, func = self.target.partition(":")
        return getattr(importlib.import_module(module), func)

    def available(self) -> bool:
        return True


#: ``--formulation`` values: ``auto`` (patterns for HiGHS and CP-SAT) or a registered one.
FORMULATIONS = ("auto", "slots", "patterns", "lagrange")
#: ``--interface`` values (HiGHS only): ``auto`` (direct for patterns, pyomo for slots) or one.
INTERFACES = ("auto", "pyomo", "direct")

_BACKENDS: dict[tuple[str, str, str], BackendEntry] = {}
_POLICIES: dict[str, PolicyEntry] = {}
#: ``auto`` choices: the formulation of each method, and the interface of each formulation.
_AUTO_FORMULATION = {"highs": "patterns", "cpsat": "patterns", "brute": "enumeration"}
_AUTO_INTERFACE = {("highs", "patterns"): "direct", ("highs", "slots"): "pyomo"}


def register_backend(entry: BackendEntry) -> BackendEntry:
    """Add an exact backend (once per triple)."""
    key = (entry.method, entry.formulation, entry.interface)
    if key in _BACKENDS:
        raise ValueError(f"backend {entry.name} registered twice")
    _BACKENDS[key] = entry
    return entry


def register_policy(name: str, *, summary: str, capabilities: Capabilities | None = None
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a policy under ``name`` (usable by solve, verify and bench)."""

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        _add_policy(PolicyEntry(name=name, summary=summary, rule=function,
                                capabilities=capabilities or Capabilities(exact=False)))
        return function

    return wrap


# ---- look-ups --------------------------------------------------------------------------------


def exact_methods() -> tuple[str, ...]:
    """Names of the exact methods (``highs``, ``cpsat``, ``brute``)."""
    return tuple(dict.fromkeys(method for method, _, _ in _BACKENDS))


def formulations(method: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for m, f, _ in _BACKENDS if m == method))


def interfaces(method: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for m, _, i in _BACKENDS if m == method))


def exact_backends() -> tuple[BackendEntry, ...]:
    """Every registered exact backend, in registration order."""
    return tuple(_BACKENDS.values())


def exact_backend(method: str, formulation: str = "auto", interface: str = "auto"
                  ) -> BackendEntry:
    """The backend ``method`` uses for ``formulation`` and ``interface`` (``auto`` resolved:
    patterns for HiGHS and CP-SAT; for HiGHS, ``direct`` for patterns and ``pyomo`` for
    slots). InputError names the option that has no backend."""
    if method not in exact_methods():
        raise InputError(f"unknown exact method {method!r} (known: "
                         f"{', '.join(exact_methods())})", path="--method")
    known_f = formulations(method)
    if formulation == "auto" or method == "brute":
        formulation = _AUTO_FORMULATION[method]
    elif formulation not in known_f:
        raise InputError(f"unknown formulation {formulation!r} for {method} (known: auto, "
                         f"{', '.join(known_f)})", path="--formulation")
    known_i = interfaces(method)
    if interface == "auto":
        interface = _AUTO_INTERFACE.get((method, formulation), known_i[0])
    elif interface not in known_i:
        if known_i == ("native",):
            raise InputError(f"interface {interface!r} applies to the highs method only",
                             path="--interface")
        raise InputError(f"unknown interface {interface!r} (known: auto, "
                         f"{', '.join(known_i)})", path="--interface")
    return _BACKENDS[(method, formulation, interface)]


def _add_policy(entry: PolicyEntry) -> None:
    if entry.name in _POLICIES or entry.name in exact_methods():
        raise ValueError(f"method {entry.name!r} registered twice")
    _POLICIES[entry.name] = entry


def policies() -> dict[str, PolicyEntry]:
    """Every registered policy by name: the built-in rules, then those registered at run time
    (:func:`register_policy`, ``siftopt.policy``)."""
    return dict(_POLICIES)


def policy(name: str) -> PolicyEntry:
    """A registered policy; InputError listing every method when unknown."""
    known = policies()
    if name not in known:
        raise InputError(f"unknown method {name!r} (known: "
                         f"{', '.join([*exact_methods(), *known])}; or module.path:function "
                         "for a policy of your own)", path="--method")
    return known[name]


def methods() -> list[dict[str, Any]]:
    """One row per exact backend and policy: name, kind, capabilities, availability."""
    rows: list[dict[str, Any]] = []
    for entry in exact_backends():
        rows.append(_row(entry.name, MethodKind.EXACT, entry.summary, entry.capabilities,
                         entry.available()))
    for rule in policies().values():
        rows.append(_row(rule.name, MethodKind.POLICY, rule.summary, rule.capabilities,
                         rule.available()))
    return rows


def _row(name: str, kind: MethodKind, summary: str, caps: Capabilities, available: bool
         ) -> dict[str, Any]:
    return {"name": name, "kind": str(kind), "exact": caps.exact, "fading": list(caps.fading),
            "power": list(caps.power), "max_tokens": caps.max_tokens,
            "warm_start": caps.warm_start, "limits": caps.limits, "available": available,
            "summary": summary}


# ---- the exact backends --------------------------------------------------------------------

_EXACT = Capabilities(exact=True)
_PATTERN_LIMITS = ("pattern space past its limits (many remote nodes, huge L·patterns): "
                   "falls back to the slot model on its own")
register_backend(BackendEntry(
    "highs", "patterns", "direct", "siftopt.backends.highs.direct:solve_highs_patterns",
    "highspy", "pattern master assembled with numpy, column generation, HiGHS MIP; the "
    "default (decode: the no-MILP rule)",
    Capabilities(exact=True, warm_start=True, limits=_PATTERN_LIMITS)))
register_backend(BackendEntry(
    "highs", "patterns", "pyomo", "siftopt.backends.highs.pyomo_patterns:"
    "solve_highs_pyomo_patterns", "pyomo", "the pattern model declared in Pyomo, every "
    "pattern at once (the readable reference of the direct master)",
    Capabilities(exact=True, limits=_PATTERN_LIMITS)))
register_backend(BackendEntry(
    "highs", "slots", "pyomo", "siftopt.backends.highs.pyomo_slots:solve_highs", "pyomo",
    "the slot MILP of docs/model.md §3.5 declared in Pyomo", _EXACT))
register_backend(BackendEntry(
    "highs", "slots", "direct", "siftopt.backends.highs.direct_slots:solve_highs_slots", "highspy",
    "the slot MILP assembled with numpy (highspy passModel)",
    Capabilities(exact=True, warm_start=True)))
register_backend(BackendEntry(
    "cpsat", "patterns", "native", "siftopt.backends.cpsat.patterns:solve_cpsat_patterns",
    "ortools", "the pattern model in CP-SAT with integer-scaled energies and degradations",
    Capabilities(exact=True, warm_start=True, limits=_PATTERN_LIMITS)))
register_backend(BackendEntry(
    "cpsat", "slots", "native", "siftopt.backends.cpsat.slots:solve_cpsat", "ortools",
    "the slot model in CP-SAT (element energies: exact for any table)",
    Capabilities(exact=True, warm_start=True)))
register_backend(BackendEntry(
    "cpsat", "lagrange", "native", "siftopt.backends.cpsat.lagrange:solve_cpsat_lagrange",
    "ortools", "a second certificate: its own Lagrangian bound (GLOP prices), reduced-cost "
    "fixing, CP-SAT on the patterns left; shares no code with the HiGHS master",
    Capabilities(exact=True, warm_start=True, limits="slow fading (non-decreasing tables) "
                 "and at most 20 relevant nodes per token: else the CP-SAT slot model")))
register_backend(BackendEntry(
    "brute", "enumeration", "native", "siftopt.backends.brute:solve_brute", "numpy",
    "every assignment enumerated and evaluated: ground truth for tiny instances",
    Capabilities(exact=True, limits="at most 2,000,000 assignments")))


# ---- the built-in policies -------------------------------------------------------------------


def _builtin_policy(name: str, target: str, summary: str, limits: str) -> None:
    _add_policy(PolicyEntry(name=name, summary=summary, target=target,
                            capabilities=Capabilities(exact=False, limits=limits)))


_builtin_policy("topk", "siftopt.policies.simple:topk",
                "keep every slot (conventional Top-K routing)",
                "may violate latency and never saves energy")
_builtin_policy("local", "siftopt.policies.simple:local",
                "every remote slot takes its cheapest free fallback (local replacement or skip)",
                "may violate the accuracy budgets")
_builtin_policy("sift-decode", "siftopt.policies.decode:sift_decode",
                "the exact decode rule: cheapest node set that meets the budget (optimal for "
                "one token, Theorem 3); token by token for L > 1",
                "refuses past MAX_DECODE_NODES relevant nodes of a token (docs/policies.md); "
                "heuristic for L > 1 (may miss feasibility when caps bind)")
_builtin_policy("sift-ratio", "siftopt.policies.ratio:sift_ratio",
                "threshold rule: drop (token, node) items by energy saved per unit of "
                "degradation", "heuristic; optimal under the conditions of docs/policies.md")
_builtin_policy("sift-price", "siftopt.policies.price:sift_price",
                "prefill prices: each token decodes at marginal node prices, prices updated to "
                "a fixed point", "heuristic; at most MAX_PRICE_ITERATIONS price rounds")
_builtin_policy("sift-prefill", "siftopt.policies.prefill:sift_prefill",
                "prefill by Lagrangian relaxation of the node loads: exactly priced pattern "
                "pools, a primal local search, and a certified lower bound on the optimum",
                "heuristic with a certificate (docs/policies.md §6); falls back to sift-price "
                "past the pattern space's limits")
