"""Serve one batch with one method and measure the real model: energy, accuracy, the bound check.

A token violates the bound of docs/model.md §4 iff ``‖ŷ − y‖ > ‖x‖·D_t`` beyond the tolerance
below; there must be none.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from siftopt.experiments.validate.moe import MoEParams, head
from siftopt.experiments.validate.tokens import TokenStates, moe_output
from siftopt.facade import solve
from siftopt.model.budgets import TOL as DEGRADATION_TOL
from siftopt.model.evaluate import Evaluation
from siftopt.model.instance import Instance

#: Bound check tolerance: a token violates the bound iff
#: ``‖ŷ − y‖ > ‖x‖·(D_t·(1 + BOUND_RTOL) + BOUND_ATOL)``.
BOUND_RTOL: float = 1e-9
BOUND_ATOL: float = 1e-12


@dataclass(frozen=True)
class BatchRecord:
    """One (ε, method, batch): the solver's verdict and per-token measurements (L tokens)."""

    eps_fraction: float
    method: str
    batch: int
    status: str
    feasible: bool
    energy_j: float
    solve_time_s: float
    degradation: np.ndarray  # (L,) D_t of the served actions
    error: np.ndarray  # (L,) ‖ŷ − y‖
    x_norm: np.ndarray  # (L,) ‖x‖
    correct: np.ndarray  # (L,) bool, served prediction == label
    certified_correct: np.ndarray  # (L,) bool, model correct and provably unchanged
    over_budget: np.ndarray  # (L,) bool, D_t > ε + tolerance
    violating: np.ndarray  # (L,) bool, ‖ŷ − y‖ > ‖x‖·D_t beyond tolerance


def bound_violations(error: np.ndarray, x_norm: np.ndarray, degradation: np.ndarray
                     ) -> np.ndarray:
    """Tokens where ``‖ŷ − y‖ > ‖x‖·(D_t·(1 + BOUND_RTOL) + BOUND_ATOL)`` (L,) bool."""
    return error > x_norm * (degradation * (1.0 + BOUND_RTOL) + BOUND_ATOL)


def certified_unchanged(logits: np.ndarray, wo: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Tokens whose top-1 class provably survives any change ‖Δy‖ ≤ radius of the MoE output.

    logits (L, C) of the exact model, wo (C, d) the head, radius (L,) = ‖x‖·D_t. Class a stays
    on top iff ``l_a − l_b > ‖wo_a − wo_b‖·radius`` for every b ≠ a (the logit difference moves
    by ``(wo_a − wo_b)·Δy``).
    """
    top = np.argmax(logits, axis=1)
    diff = wo[top][:, None, :] - wo[None, :, :]  # (L, C, d)
    spread = np.linalg.norm(diff, axis=2)
    margin = np.take_along_axis(logits, top[:, None], axis=1) - logits
    ok = margin > spread * radius[:, None]
    ok[np.arange(len(top)), top] = True
    return ok.all(axis=1)


def measure(params: MoEParams, states: TokenStates, labels: np.ndarray, evaluation: Evaluation,
            eps: float) -> dict[str, np.ndarray]:
    """Real forward pass with the evaluated actions; per-token arrays (L,) of
    :class:`BatchRecord`."""
    y_hat = moe_output(states.outputs, states.weights, evaluation.actions)
    error = np.linalg.norm(y_hat - states.y, axis=1)
    x_norm = np.linalg.norm(states.x, axis=1)
    degradation = evaluation.degradation
    model_correct = np.argmax(states.logits, axis=1) == labels
    return {
        "degradation": degradation,
        "error": error,
        "x_norm": x_norm,
        "correct": np.argmax(head(params, states.x, y_hat), axis=1) == labels,
        "certified_correct": model_correct & certified_unchanged(
            states.logits, params.wo, x_norm * degradation),
        "over_budget": degradation > eps + DEGRADATION_TOL,
        "violating": bound_violations(error, x_norm, degradation),
    }


def serve_batch(params: MoEParams, states: TokenStates, labels: np.ndarray, inst: Instance,
                method: str, eps_fraction: float, batch: int) -> BatchRecord:
    """Solve one batch instance with ``method`` and measure the served model."""
    started = time.perf_counter()
    result = solve(inst, method)
    elapsed = time.perf_counter() - started
    if result.evaluation is None:
        raise RuntimeError(f"{method} returned no actions for batch {batch} at "
                           f"eps fraction {eps_fraction}: {result.status} {result.message}")
    eps = float(inst.eps_token[0]) if inst.eps_token is not None else math.inf
    per_token = measure(params, states, labels, result.evaluation, eps)
    return BatchRecord(eps_fraction=eps_fraction, method=method, batch=batch,
                       status=result.status, feasible=result.evaluation.feasible,
                       energy_j=result.evaluation.energy_j, solve_time_s=elapsed, **per_token)
