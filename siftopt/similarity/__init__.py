"""Expert-similarity constants β (skip) and δ (replace) from expert weights.

The accuracy constraint of docs/model.md §4 is certified when, for the token states x that reach
the layer,

    ‖E_i(x)‖ ≤ β[i]·‖x‖        and        ‖E_i(x) − E_j(x)‖ ≤ δ[i][j]·‖x‖.

β and δ are dimensionless (output norm per unit of input norm, Euclidean norms in ℝ^d). This
package computes them from the expert weights of one MoE layer, by one of two methods:

* ``analytic``: proven upper bounds from spectral norms (docs/bounds.md has every proof);
* ``empirical``: the largest ratio seen over calibration, random and adversarial inputs. An
  *estimate* of the true constants from below, never a bound.

Modules, from the bottom up (each imports only those above it):

* :mod:`~siftopt.similarity.linalg` — certified linear algebra: spectral, Khatri–Rao, row and
  pairwise-difference norms that are never below the exact value (numpy and scipy only);
* :mod:`~siftopt.similarity.weights` — the expert-weight contract: :class:`ExpertWeights`,
  :func:`load_expert_weights` (``.npz``), the kinds;
* :mod:`~siftopt.similarity.checkpoint` — the same contract read from published checkpoints
  (``.safetensors``, sharded or not; Mixtral and Qwen-MoE/OLMoE/DeepSeek-MoE tensor names),
  one layer at a time: :func:`open_checkpoint`, :func:`layer_weights`, the certified RMSNorm
  radius :func:`rmsnorm_radius`;
* :mod:`~siftopt.similarity.domain` — :class:`Bounds` and its validity domain (``radius``,
  ``min_radius``);
* :mod:`~siftopt.similarity.experts` — the expert maps: activations with their Lipschitz and
  growth constants, :func:`expert_forward`, Jacobian products;
* :mod:`~siftopt.similarity.pairs` — norms of the weight differences of expert pairs: cheap
  estimates for all pairs, certified exact norms for the most promising ones;
* :mod:`~siftopt.similarity.analytic` — proven β/δ (:func:`analytic_bounds`): plain FFN
  experts, biases, SwiGLU on a ball;
* :mod:`~siftopt.similarity.empirical` — labelled estimates (:func:`empirical_bounds`);
* :mod:`~siftopt.similarity.compute` — :func:`compute_bounds`, one entry point over both
  methods (what ``siftopt similarity`` calls).
"""

from siftopt.similarity.analytic import AUTO_PAIR_WORK, analytic_bounds
from siftopt.similarity.checkpoint import layer_weights, open_checkpoint, rmsnorm_radius
from siftopt.similarity.compute import METHODS, compute_bounds
from siftopt.similarity.domain import Bounds
from siftopt.similarity.empirical import EMPIRICAL_WORK, empirical_bounds
from siftopt.similarity.experts import (
    GELU_ERF_LIP,
    GELU_TANH_LIP,
    RELU_LIP,
    SILU_LIP,
    expert_forward,
    growth_constant,
    lipschitz_constant,
)
from siftopt.similarity.linalg import spectral_norm_upper
from siftopt.similarity.weights import (
    GATED_KINDS,
    KINDS,
    WEIGHT_KEYS,
    ExpertWeights,
    load_expert_weights,
)

__all__ = [
    "AUTO_PAIR_WORK", "EMPIRICAL_WORK", "GATED_KINDS", "GELU_ERF_LIP", "GELU_TANH_LIP", "KINDS",
    "METHODS", "RELU_LIP", "SILU_LIP", "WEIGHT_KEYS", "Bounds", "ExpertWeights",
    "analytic_bounds", "compute_bounds", "empirical_bounds", "expert_forward",
    "growth_constant", "layer_weights", "lipschitz_constant", "load_expert_weights",
    "open_checkpoint", "rmsnorm_radius", "spectral_norm_upper",
]
