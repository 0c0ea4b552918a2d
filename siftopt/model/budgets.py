"""The accuracy budgets of (P): the one owner of "does a decision meet them".

docs/model.md §3.3–3.4.

Every module that decides feasibility of degradations asks this one — the evaluator, brute
force, the policies, the simulator, and every exact model when it writes its budget rows:

* **The rule** (:meth:`Budgets.token_ok`, :meth:`Budgets.mean_ok`): a token meets its budget
  iff ``D_t − ε_t ≤ TOL`` and the batch meets the mean budget iff ``mean(D) − ε̄ ≤ TOL``, with
  ``TOL = 1e-9`` and both differences computed in floating point exactly as written here.
  ``D_t`` is :func:`token_degradation` (slots summed left to right), the mean is
  :func:`mean_degradation` (a correctly rounded sum, so it does not depend on the order).
* **Rows that are relaxations** (:meth:`Budgets.token_row_upper`, :meth:`Budgets.mean_row_upper`,
  and their integer forms for CP-SAT): every decision the rule accepts satisfies them, so no
  model can cut off a decision the evaluator accepts. The other direction is not promised by a
  row (solver feasibility tolerances and integer rounding can let through a decision whose
  ``D`` lies up to ``ROW_MARGIN`` + the solver's tolerance above the rule): an exact backend
  checks its answer with the rule and cuts off a rejected decision before it may call
  anything optimal (``siftopt.backends.base.budget_cuts``).
* **Whether the mean budget binds** (:attr:`Budgets.mean_binds`): it is given and the
  per-token budgets do not imply it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Feasibility tolerance of degradation budgets: ``D ≤ ε + TOL`` (docs/model.md §3.4).
TOL = 1e-9
#: Extra room of a budget row over the rule, per unit of degradation budget: covers the
#: rounding of sums computed in another order (a few ulps), far below ``TOL``.
ROW_MARGIN = 1e-12
#: Integer right-hand sides are capped here (2^62): a budget that large never binds, and the
#: cap keeps huge budgets (ε up to 1e300 is a valid file) from overflowing int64.
INTEGER_CAP = float(2**62)


def token_degradation(weighted_cost: np.ndarray) -> np.ndarray:
    """``D_t = Σ_k w[t,k]·c(t,k)`` over the last axis, summed left to right in slot order.

    ``weighted_cost``: shape ``(..., K)``, dimensionless. Every caller that needs a token's
    degradation uses this one function so that the same decision always gives the same float.
    """
    wc = np.asarray(weighted_cost, dtype=float)
    if wc.shape[-1] == 0:
        return np.zeros(wc.shape[:-1])
    total = wc[..., 0].copy()
    for k in range(1, wc.shape[-1]):
        np.add(total, wc[..., k], out=total)
    return total


def mean_degradation(degradation: np.ndarray) -> float:
    """``(1/L)·Σ_t D_t`` with a correctly rounded sum (independent of the tokens' order)."""
    d = np.asarray(degradation, dtype=float).ravel()
    return math.fsum(d.tolist()) / d.size if d.size else 0.0


@dataclass(frozen=True, eq=False)
class Budgets:
    """The accuracy budgets of an instance and the rule that decides them.

    ``eps_token``: ``(L,)`` per-token budgets ``ε_t`` or None; ``eps_mean``: ``ε̄`` or None
    (at least one is given); ``num_tokens``: L. Degradations are dimensionless.
    """

    eps_token: np.ndarray | None
    eps_mean: float | None
    num_tokens: int

    # ---- the rule ------------------------------------------------------------------------

    def token_excess(self, degradation: np.ndarray) -> np.ndarray:
        """``D_t − ε_t`` per token (``−inf`` without per-token budgets); shape of ``D``."""
        d = np.asarray(degradation, dtype=float)
        if self.eps_token is None:
            return np.full(d.shape, -np.inf)
        return d - self.eps_token

    def token_ok(self, degradation: np.ndarray) -> np.ndarray:
        """Per token (any leading batch axes): ``D_t − ε_t ≤ TOL``."""
        return self.token_excess(degradation) <= TOL

    def mean_excess(self, degradation: np.ndarray) -> float:
        """``mean(D) − ε̄`` (``−inf`` without a mean budget)."""
        if self.eps_mean is None:
            return -math.inf
        return mean_degradation(degradation) - self.eps_mean

    def mean_ok(self, degradation: np.ndarray) -> bool:
        """``mean(D) − ε̄ ≤ TOL`` for one decision's ``(L,)`` degradations."""
        return self.mean_excess(degradation) <= TOL

    def accepts(self, degradation: np.ndarray) -> bool:
        """Whether one decision's ``(L,)`` degradations meet every budget."""
        return bool(np.all(self.token_ok(degradation))) and self.mean_ok(degradation)

    def accepts_batch(self, degradation: np.ndarray) -> np.ndarray:
        """:meth:`accepts` for a batch ``(B, L)`` of decisions; ``(B,)`` bools."""
        d = np.asarray(degradation, dtype=float)
        ok = np.all(self.token_ok(d), axis=-1)
        if self.eps_mean is not None:
            ok &= np.array([self.mean_ok(row) for row in d.reshape(-1, d.shape[-1])]
                           ).reshape(ok.shape)
        return ok

    # ---- structure -------------------------------------------------------------------------

    @property
    def mean_binds(self) -> bool:
        """Whether the mean budget needs a row of its own: it is given and the per-token
        budgets do not imply it. They imply it when ``mean(ε_t) ≤ ε̄`` with a margin that
        covers the rounding of the rule (then ``D_t − ε_t ≤ TOL`` for all t gives
        ``mean(D) − ε̄ ≤ TOL``)."""
        if self.eps_mean is None:
            return False
        if self.eps_token is None:
            return True
        slack = ROW_MARGIN * max(1.0, abs(self.eps_mean))
        return not mean_degradation(self.eps_token) + slack <= self.eps_mean

    # ---- rows: relaxations of the rule -------------------------------------------------------

    def token_row_upper(self) -> np.ndarray:
        """``(L,)`` right-hand sides ``ε_t + TOL + margin`` (``inf`` without per-token budgets):
        every ``D_t`` the rule accepts is at most this."""
        if self.eps_token is None:
            return np.full(self.num_tokens, np.inf)
        eps = np.asarray(self.eps_token, dtype=float)
        return eps + TOL + ROW_MARGIN * np.maximum(1.0, np.abs(eps))

    def mean_row_upper(self) -> float:
        """Right-hand side of ``Σ_t D_t ≤ L·(ε̄ + TOL) + margin`` (``inf`` without a mean budget):
        every decision the rule accepts satisfies it."""
        if self.eps_mean is None:
            return math.inf
        n = self.num_tokens
        return n * (self.eps_mean + TOL) + n * ROW_MARGIN * max(1.0, abs(self.eps_mean))

    def token_caps(self, least: np.ndarray) -> np.ndarray:
        """Per token: the largest ``D_t`` any accepted decision can give it (a relaxation).

        ``least``: ``(L,)`` the least degradation each token can reach. The mean row leaves
        token t at most ``mean_row_upper − Σ_{t'≠t} least_{t'}``.
        """
        caps = self.token_row_upper()
        if self.eps_mean is not None:
            least = np.asarray(least, dtype=float)
            room = self.mean_row_upper() - (least.sum() - least)
            caps = np.minimum(caps, room + ROW_MARGIN * max(1.0, float(np.abs(least).sum())))
        return caps

    # ---- integer rows (CP-SAT) ---------------------------------------------------------------

    @staticmethod
    def integer_coefficients(degradation: np.ndarray, scale: int) -> np.ndarray:
        """``floor(w·c·Q)`` as int64: rounded down, so integer rows stay relaxations."""
        return np.floor(np.asarray(degradation, dtype=float) * scale).astype(np.int64)

    def integer_token_caps(self, scale: int) -> np.ndarray | None:
        """``floor(token_row_upper·Q)`` per token, or None without per-token budgets.

        With :meth:`integer_coefficients`, ``Σ floor(x_i) ≤ floor(Σ x_i)``: every accepted
        decision satisfies the integer row."""
        if self.eps_token is None:
            return None
        with np.errstate(over="ignore"):  # inf for a huge budget, then capped
            capped = np.minimum(self.token_row_upper() * scale, INTEGER_CAP)
        return np.floor(capped).astype(np.int64)

    def integer_mean_cap(self, scale: int) -> int | None:
        """``floor(mean_row_upper·Q)``, or None without a mean budget."""
        if self.eps_mean is None:
            return None
        return int(math.floor(min(self.mean_row_upper() * scale, INTEGER_CAP)))


def budgets_of(eps_token: np.ndarray | None, eps_mean: float | None, num_tokens: int
               ) -> Budgets:
    """The :class:`Budgets` of given budget values (see :attr:`ProblemData.budgets`)."""
    token = None if eps_token is None else np.asarray(eps_token, dtype=float)
    return Budgets(eps_token=token, eps_mean=None if eps_mean is None else float(eps_mean),
                   num_tokens=int(num_tokens))


__all__ = ["ROW_MARGIN", "TOL", "Budgets", "budgets_of", "mean_degradation",
           "token_degradation"]
