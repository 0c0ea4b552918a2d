"""``sift-price``: prefill price iteration over the exact per-token rule.

Prices start at ``p_m = E_m(1)``. Each iteration solves every token's decode problem at the
current prices (:func:`~siftopt.policies.decode.decode_with_mean`: the exact per-token rule, a
binding mean budget priced by a multiplier, and the cap repair). The **target** prices are the
marginal energies of the new loads, ``E_m(n_m) − E_m(n_m − 1)`` (``E_m(1)`` when ``n_m = 0``;
negative marginals are clamped to 0), and the next prices are the running average of all
targets so far (the first update is the plain one; plain updates cycle on convex tables, see
docs/policies.md §5). The run stops at a certified iterate, at a fixed point (the target equals
the current prices), when the best iterate is :data:`PATIENCE` iterations old, or after
:data:`MAX_PRICE_ITERATIONS`, and returns the best iterate: feasible before infeasible, then
least energy (``Σ_m E_m(n_m)``), then the earliest.

An iterate is **certified** (docs/policies.md Theorem 5) when no cap repair was needed, the
mean budget (if any) does not bind, and every price is a subgradient of its node's table at the
iterate's load: ``E_m(n) − p_m n`` is least at ``n = n_m`` over ``0..cap``. A certified
iterate is optimal (Lagrangian sufficiency).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from siftopt.model.instance import Instance
from siftopt.policies.common import PolicyData, mean_budget_binds, options_to_actions, policy_data
from siftopt.policies.decode import Choices, decode_with_mean, unit_prices

#: Iteration cap of the price update.
MAX_PRICE_ITERATIONS = 12
#: Stop when the best iterate is this many iterations old.
PATIENCE = 4
#: Relative slack of the subgradient test of the certificate.
CERTIFICATE_RTOL = 1e-12
#: Bisection steps of the mean-budget multiplier: first iteration, later ones (warm start).
LAMBDA_STEPS_FIRST = 12
LAMBDA_STEPS_LATER = 4


@dataclass(frozen=True)
class PriceIterate:
    """One iteration: its prices, loads, energy and flags."""

    prices: np.ndarray  # (M + 1,)
    loads: np.ndarray  # (M + 1,)
    energy_j: float  # Σ_m E_m(n_m) (inf if a load exceeds its cap)
    feasible: bool  # every token within its budget and every load within its cap
    repaired: bool
    certified: bool
    lam: float = 0.0  # multiplier of a binding mean budget


@dataclass(frozen=True)
class PriceRun:
    """The whole run: iterates, why it stopped, and the returned actions."""

    actions: np.ndarray
    iterates: list[PriceIterate] = field(default_factory=list)
    best: int = 0  # index of the returned iterate
    stop: str = ""  # fixed_point | cycle | certified | iteration_cap

    @property
    def certified(self) -> bool:
        """Whether the returned iterate carries the optimality certificate."""
        return self.iterates[self.best].certified


def marginal_prices(pd: PolicyData, loads: np.ndarray) -> np.ndarray:
    """``E_m(n_m) − E_m(n_m − 1)`` per node (``E_m(1)`` at load 0), clamped at 0."""
    prices = unit_prices(pd)
    for table in pd.data.tables:
        n = min(int(loads[table.node]), table.cap)
        if n >= 1:
            prices[table.node] = float(table.energy_j[n] - table.energy_j[n - 1])
    return np.maximum(prices, 0.0)


def _is_subgradient(pd: PolicyData, prices: np.ndarray, loads: np.ndarray) -> bool:
    """Whether ``n_m`` minimises ``E_m(n) − p_m n`` over ``n = 0..cap`` for every node."""
    for table in pd.data.tables:
        n = int(loads[table.node])
        if n > table.cap:
            return False
        levels = np.arange(table.cap + 1)
        values = table.energy_j - prices[table.node] * levels
        scale = float(np.max(np.abs(table.energy_j))) if table.energy_j.size else 0.0
        if values[n] > values.min() + CERTIFICATE_RTOL * max(scale, 1e-300):
            return False
    return True


def _iterate(pd: PolicyData, prices: np.ndarray, lam_hint: float | None, per_token_only: bool
             ) -> tuple[Choices, PriceIterate]:
    decoded = decode_with_mean(pd, prices, lam_hint,
                               steps=LAMBDA_STEPS_LATER if lam_hint else LAMBDA_STEPS_FIRST)
    choices = decoded.choices
    loads = choices.used.sum(axis=0)
    energy = float(sum(pd.node_energy(t.node, int(loads[t.node])) for t in pd.data.tables))
    mean_ok = pd.data.budgets.mean_ok(choices.degradation)
    feasible = bool(choices.feasible.all() and mean_ok and np.all(loads <= pd.data.caps))
    certified = (per_token_only and feasible and not decoded.repaired
                 and _is_subgradient(pd, prices, loads))
    return choices, PriceIterate(prices=prices, loads=loads, energy_j=energy, feasible=feasible,
                                 repaired=decoded.repaired, certified=certified,
                                 lam=decoded.lam)


def sift_price_run(inst: Instance, max_iterations: int = MAX_PRICE_ITERATIONS,
                   patience: int = PATIENCE, averaged: bool = True) -> PriceRun:
    """Run the price iteration and keep its history (see the module docstring).

    ``averaged=False`` is the plain update "prices := the new marginals", which the policy does
    not use: it cycles on convex tables (docs/policies.md §5 measures it); it is here so that
    the measurement can be re-run.
    """
    pd = policy_data(inst)
    per_token_only = not mean_budget_binds(inst)
    prices = unit_prices(pd)
    marginal_sum = np.zeros_like(prices)
    iterates: list[PriceIterate] = []
    outcomes: list[Choices] = []
    stop = "iteration_cap"
    best = 0
    lam_hint: float | None = None
    for k in range(max_iterations):
        outcome, it = _iterate(pd, prices, lam_hint, per_token_only)
        iterates.append(it)
        outcomes.append(outcome)
        lam_hint = it.lam or lam_hint
        if _rank(it, k) < _rank(iterates[best], best):
            best = k
        if it.certified:
            best, stop = k, "certified"
            break
        new = marginal_prices(pd, it.loads)
        if np.array_equal(new, prices):
            stop = "fixed_point"
            break
        if k - best >= patience:
            stop = "no_improvement"
            break
        marginal_sum += new
        prices = marginal_sum / (k + 1) if averaged else new
    actions = options_to_actions(pd.data, outcomes[best].options.reshape(-1))
    return PriceRun(actions=actions, iterates=iterates, best=best, stop=stop)


def _rank(it: PriceIterate, k: int) -> tuple[bool, float, int]:
    """Order of iterates: feasible first, then least energy, then earliest."""
    return (not it.feasible, it.energy_j, k)


def sift_price(inst: Instance) -> np.ndarray:
    """``sift-price`` (docs/model.md §6, docs/policies.md §5)."""
    return sift_price_run(inst).actions
