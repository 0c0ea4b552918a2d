"""The one owner of the accuracy-budget rule (siftopt.model.budgets)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from siftopt.model.budgets import TOL, budgets_of, mean_degradation, token_degradation

budget = st.floats(0.0, 10.0, allow_nan=False)
offset = st.sampled_from([-2e-9, -1e-9, -7e-10, 0.0, 7e-10, 1e-9, 2e-9]) | st.floats(-2e-9, 2e-9)


@settings(max_examples=300, derandomize=True)
@given(eps=budget, off=offset)
def test_the_rule_is_d_minus_eps_at_most_tol(eps, off) -> None:
    b = budgets_of([eps], eps, 1)
    d = np.array([eps + off])
    assert bool(b.token_ok(d)[0]) == (d[0] - eps <= TOL)
    assert b.mean_ok(d) == (math.fsum(d) - eps <= TOL)
    # every decision the rule accepts satisfies the relaxed rows
    if b.accepts(d):
        assert d[0] <= b.token_row_upper()[0] and d.sum() <= b.mean_row_upper()


@settings(max_examples=200, derandomize=True)
@given(w=st.lists(st.floats(0, 1), min_size=1, max_size=8),
       c=st.lists(st.floats(0, 5), min_size=8, max_size=8), scale=st.sampled_from([2**30, 2**40]))
def test_integer_rows_are_relaxations(w, c, scale) -> None:
    """floor(w·c·Q) summed never exceeds floor(cap·Q) for any D the rule accepts."""
    wc = np.array(w) * np.array(c[: len(w)])
    d = float(token_degradation(wc[None, :])[0])
    b = budgets_of([d - 0.9e-9], None, 1)  # the rule accepts d (d − ε = 0.9e-9 ≤ 1e-9)
    assert b.accepts(np.array([d]))
    coef = b.integer_coefficients(wc, scale)
    assert coef.sum() <= b.integer_token_caps(scale)[0]


def test_order_of_tokens_does_not_change_the_mean_verdict() -> None:
    d = np.array([0.1, 0.2, 0.3, 1e-17, 0.4])
    assert mean_degradation(d) == mean_degradation(d[::-1])


def test_mean_binds_only_when_the_token_budgets_do_not_imply_it() -> None:
    assert not budgets_of([0.1, 0.2], 0.15 + 1e-9, 2).mean_binds
    assert budgets_of([0.1, 0.2], 0.15, 2).mean_binds  # within the rounding margin: keep it
    assert budgets_of(None, 0.15, 2).mean_binds
    assert not budgets_of([0.1, 0.2], None, 2).mean_binds


def test_huge_budgets_give_capped_integer_rows() -> None:
    b = budgets_of([1e300, 1e300], 1e300, 2)
    assert b.integer_mean_cap(2**40) == 2**62
    assert (b.integer_token_caps(2**40) == 2**62).all()
