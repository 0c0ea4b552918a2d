"""``siftopt validate-accuracy --out DIR``: serve a trained MoE under the accuracy constraint.

Trains a small MoE classifier on scikit-learn's bundled digits data, bounds its experts
(siftopt.similarity, analytic), places them on simulated wireless nodes, sweeps the accuracy
budget and, for Top-K, ``local``, ``sift-ratio`` and the exact optimum, measures the radio
energy, the real test accuracy and the bound ``‖ŷ − y‖ ≤ ‖x‖·D_t`` token by token
(siftopt.experiments.validate).
Needs the optional extra ``validate`` (scikit-learn, matplotlib).
"""

from __future__ import annotations

import argparse
import sys

from siftopt.cli.common import emit, positive_int
from siftopt.experiments.validate import (
    ACTIVATIONS,
    ValidationConfig,
    exact_not_worse,
    markdown_table,
    prepare_out_dir,
    run_validation,
    write_outputs,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate-accuracy", help="check the accuracy bound on a real trained MoE",
        description="Train a small MoE classifier (numpy) on scikit-learn's bundled digits "
        "data, compute its β/δ with the analytic bounds, place the experts on simulated "
        "wireless nodes, then sweep the accuracy budget and serve the test set with Top-K, "
        "local, sift-ratio and the exact optimum (highs). Writes results.csv, results.md, "
        "summary.json and accuracy_vs_energy.png into DIR and prints the table. Needs "
        "pip install 'siftopt[validate]'.")
    p.add_argument("--experts", type=positive_int, default=16, metavar="N",
                   help="number of experts N (>= 2; default 16)")
    p.add_argument("--top-k", type=positive_int, default=2, metavar="K",
                   help="experts per token (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split, the initialisation and the minibatches "
                   "(default 0)")
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                   help="expert activation (default relu)")
    p.add_argument("--batch-tokens", type=positive_int, default=64, metavar="L",
                   help="tokens per prefill batch, one instance each (default 64)")
    p.add_argument("--quick", action="store_true",
                   help="short run: less training, 128 test tokens, 3 budgets")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def _progress(message: str) -> None:
    print(f"validate-accuracy: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    cfg = ValidationConfig.make(experts=args.experts, top_k=args.top_k, seed=args.seed,
                                quick=args.quick, activation=args.activation,
                                batch_tokens=args.batch_tokens)
    prepare_out_dir(args.out)  # fail before training, not after
    result = run_validation(cfg, progress=_progress)
    paths = write_outputs(args.out, result)
    emit(markdown_table(result.rows))
    violating = sum(r["violating_tokens"] for r in result.rows)
    _progress(f"trained test accuracy {100 * result.model_accuracy:.2f} %; violating tokens "
              f"{violating}; {result.timings_s['total']:.1f} s; wrote "
              f"{', '.join(str(p) for p in paths.values())}")
    beaten = exact_not_worse(result.records)
    if violating or beaten:
        # A proven bound failed or a policy beat the exact optimum: a bug, exit status 1.
        problems = [f"{violating} token(s) violate ‖ŷ − y‖ <= ‖x‖·D_t"] if violating else []
        print(f"siftopt: internal error: {'; '.join(problems + beaten)}", file=sys.stderr)
        return 1
    return 0
