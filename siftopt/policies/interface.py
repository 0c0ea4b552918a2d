"""The interface users write policies against: :class:`PolicyInput` in, a Decision out.

A policy of one's own is a function ``rule(view: PolicyInput) -> Decision``; register it with
:func:`policy` to use it by name in :func:`siftopt.solve`, ``siftopt verify`` and bench, or
pass ``module.path:function`` to ``--method``. Every array is read-only numpy with the shape
and unit written next to it (docs/api.md shows a worked example).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from siftopt.errors import InputError
from siftopt.model.decision import SKIP, Decision
from siftopt.model.instance import Instance
from siftopt.model.problem import problem_data
from siftopt.registry import Capabilities, register_policy


@dataclass(frozen=True, eq=False)
class PolicyInput:
    """What a policy sees of an instance (docs/model.md §1–3), as numpy arrays.

    Shapes: L tokens, K slots per token, N experts, M remote nodes (node 0 is the source).
    """

    instance: Instance

    @property
    def num_tokens(self) -> int:
        """L."""
        return self.instance.num_tokens

    @property
    def top_k(self) -> int:
        """K."""
        return self.instance.top_k

    @property
    def num_nodes(self) -> int:
        """M, the number of remote nodes."""
        return self.instance.num_nodes

    @property
    def topk_experts(self) -> np.ndarray:
        """``(L, K)`` int: each token's top-K experts."""
        return self.instance.topk_experts

    @property
    def topk_weights(self) -> np.ndarray:
        """``(L, K)`` float: their gate weights ``w[t, i]``."""
        return self.instance.topk_weights

    @property
    def beta(self) -> np.ndarray:
        """``(N,)`` skip constants β (dimensionless)."""
        return self.instance.beta

    @property
    def delta(self) -> np.ndarray:
        """``(N, N)`` dissimilarity constants δ; ``inf`` where not replaceable."""
        return self.instance.delta

    @property
    def placement(self) -> np.ndarray:
        """``(N,)`` int: the node hosting each expert (0 = source)."""
        return self.instance.placement

    @cached_property
    def candidates(self) -> tuple[np.ndarray, ...]:
        """Per expert i: the replacement candidates ``cand(i)`` in order (docs/model.md §2.2)."""
        return problem_data(self.instance).candidates

    @cached_property
    def caps(self) -> np.ndarray:
        """``(M + 1,)`` int: the largest feasible load of each node (``caps[0] = L``)."""
        return problem_data(self.instance).caps

    @cached_property
    def energy_tables(self) -> tuple[np.ndarray, ...]:
        """Per remote node m = 1..M (index m − 1): ``E_m(n)`` in J for n = 0..caps[m]."""
        return tuple(t.energy_j for t in problem_data(self.instance).tables)

    @property
    def eps_token(self) -> np.ndarray | None:
        """``(L,)`` per-token budgets ε_t, or None."""
        return self.instance.eps_token

    @property
    def eps_mean(self) -> float | None:
        """The mean budget ε̄, or None."""
        return self.instance.eps_mean

    def decision(self, targets: np.ndarray) -> Decision:
        """A :class:`Decision` from an ``(L, K)`` array of served experts (−1 = skip)."""
        return Decision.from_targets(self.instance, targets)

    def from_actions(self, action: np.ndarray, target: np.ndarray | None = None) -> Decision:
        """:meth:`Decision.from_actions` on this instance."""
        return Decision.from_actions(self.instance, action, target)


#: A user policy: ``rule(view) -> Decision``.
UserPolicy = Callable[[PolicyInput], Decision]


def as_targets_policy(rule: UserPolicy, name: str) -> Callable[[Instance], np.ndarray]:
    """Wrap ``rule`` as the registry's ``Instance → (L, K) targets`` function, checking that
    it returns a :class:`Decision` of the right instance."""

    def run(inst: Instance) -> np.ndarray:
        out = rule(PolicyInput(inst))
        if not isinstance(out, Decision):
            raise InputError(f"policy {name!r} returned {type(out).__name__}, not a "
                             "siftopt.Decision (build one with view.decision(targets) or "
                             "view.from_actions(action, target))", path="--method")
        if out.instance is not inst and out.targets.shape != inst.topk_experts.shape:
            raise InputError(f"policy {name!r} returned a decision of another instance",
                             path="--method")
        return out.targets

    run.__name__ = getattr(rule, "__name__", name)
    run.__doc__ = rule.__doc__
    return run


def policy(name: str, *, summary: str = "", limits: str = "heuristic (user policy)"
           ) -> Callable[[UserPolicy], UserPolicy]:
    """Decorator: register ``rule(view: PolicyInput) -> Decision`` as policy ``name``.

    It can then be used by name in :func:`siftopt.solve`, :func:`siftopt.verify` and bench.
    Returns the rule unchanged."""

    def wrap(rule: UserPolicy) -> UserPolicy:
        register_policy(name, summary=summary or (rule.__doc__ or name).strip().splitlines()[0],
                        capabilities=Capabilities(exact=False, limits=limits)
                        )(as_targets_policy(rule, name))
        return rule

    return wrap


__all__ = ["SKIP", "PolicyInput", "UserPolicy", "as_targets_policy", "policy"]
