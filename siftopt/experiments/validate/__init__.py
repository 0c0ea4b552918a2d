"""Real accuracy validation: a trained MoE served under the accuracy constraint (issue 6, part 2).

``siftopt validate-accuracy`` (:mod:`siftopt.cli.validate_cmd`) runs :func:`run_validation`:

1. train the small numpy MoE classifier of :mod:`.moe` on scikit-learn's bundled digits data
   (8×8 images, 10 classes; no download) and measure its test accuracy;
2. compute the analytic β/δ of its experts with :func:`siftopt.similarity.analytic_bounds`
   (proven bounds for every token state x: the experts are bias-free FFNs);
3. place the experts on simulated wireless nodes (the source hosts every (M+1)-th expert,
   M remote nodes at increasing distances host the rest; payload S = d·16 bits);
4. for each accuracy budget ε (a fraction of the mean skip-all degradation) and each method
   (Top-K, ``local``, ``sift-ratio``, the exact optimum ``highs``), serve the whole test set in
   prefill batches (one instance per batch, gates from the trained router), run the real
   forward pass with the served actions (keep → E_i, replace → E_j, skip → 0) and measure the
   radio energy, the real test accuracy, the output error ``‖ŷ − y‖/‖x‖`` and the tokens where
   the bound ``‖ŷ − y‖ ≤ ‖x‖·D_t`` of docs/model.md §4 fails (there must be none).

Here x is the token state entering the MoE layer (the embedding h), y the exact MoE output and
ŷ the served one; the residual adds h to both, so the logits move by ``(ŷ − y)·Woᵀ``.

Modules, from the bottom up (each imports only those above it):

* :mod:`.moe` — the numpy MoE classifier: forward pass, manual gradients, Adam, training;
* :mod:`.config` — what determines a run: methods, budget grid, model sizes, the network;
* :mod:`.tokens` — the digits data and what the trained model computes on it (token states,
  every expert's output, the served MoE output);
* :mod:`.scenario` — the wireless nodes, the placement, the latency budget and the instance of
  each batch (rates and caps come from :mod:`siftopt.model.physics`);
* :mod:`.serve` — serve one batch with one method and measure it (energy, accuracy, the bound
  check, the certified accuracy);
* :mod:`.run` — the whole run and the summary rows;
* :mod:`.output` — results.csv, results.md, summary.json and the plot.

``siftopt validate-accuracy --model lm`` runs the same check on a byte-level MoE language
model trained on real text (:func:`.lm_run.run_lm_validation`, docs/accuracy.md), in modules
that the digits run does not import:

* :mod:`.lm` — the model (attention, two MoE layers of SwiGLU experts), manual gradients,
  AdamW, training with upcycling;
* :mod:`.lm_data` — the text (Python's help topics), the held-out split, the weight cache as a
  ``.safetensors`` checkpoint;
* :mod:`.lm_serve` — float64 inference with every MoE layer served through a hook, in prefill
  (a sequence per batch) and decode (a token per batch, key/value cache);
* :mod:`.lm_run` — the run: bounds read back from the checkpoint, budgets, the sweep over modes,
  budgets and methods, the bound check on every token of every layer, summary rows;
* :mod:`.lm_output` — results, plot, and the router trace with its bounds.
"""

from siftopt.experiments.validate.config import (
    FULL_EPS_FRACTIONS,
    METHODS,
    QUICK_EPS_FRACTIONS,
    NetworkConfig,
    ValidationConfig,
)
from siftopt.experiments.validate.moe import ACTIVATIONS
from siftopt.experiments.validate.output import markdown_table, prepare_out_dir, write_outputs
from siftopt.experiments.validate.run import ValidationResult, exact_not_worse, run_validation
from siftopt.experiments.validate.scenario import make_scenario
from siftopt.experiments.validate.serve import (
    BOUND_ATOL,
    BOUND_RTOL,
    bound_violations,
    certified_unchanged,
)
from siftopt.experiments.validate.tokens import load_digits_split, moe_output, token_states

__all__ = [
    "ACTIVATIONS", "BOUND_ATOL", "BOUND_RTOL", "FULL_EPS_FRACTIONS", "METHODS",
    "QUICK_EPS_FRACTIONS", "NetworkConfig", "ValidationConfig", "ValidationResult",
    "bound_violations", "certified_unchanged", "exact_not_worse", "load_digits_split",
    "make_scenario", "markdown_table", "moe_output", "prepare_out_dir", "run_validation",
    "token_states", "write_outputs",
]
