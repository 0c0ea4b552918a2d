"""``siftopt validate-accuracy --out DIR``: serve a trained MoE under the accuracy constraint.

``--model digits`` (default): trains a small MoE classifier on scikit-learn's bundled digits
data, bounds its experts (siftopt.similarity, analytic), places them on simulated wireless
nodes, sweeps the accuracy budget and, for Top-K, ``local``, ``sift-ratio`` and the exact
optimum, measures the radio energy, the real test accuracy and the bound
``‖ŷ − y‖ ≤ ‖x‖·D_t`` token by token (siftopt.experiments.validate). Needs the optional extra
``validate`` (scikit-learn, matplotlib).

``--model lm``: the same for a byte-level MoE language model trained on the Python help
topics (two MoE layers of SwiGLU experts), served in prefill and in decode; it also writes the
model's router trace and bounds for ``siftopt generate --trace`` (docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from siftopt.cli.common import emit, positive_int
from siftopt.errors import UsageError

MODELS: tuple[str, ...] = ("digits", "lm")
#: Digits-only options (dest) and their defaults.
_DIGITS_OPTIONS: dict[str, object] = {"experts": 16, "top_k": 2, "activation": "relu",
                                      "batch_tokens": 64}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate-accuracy", help="check the accuracy bound on a real trained MoE",
        description="Train a small MoE model (numpy), compute its β/δ with the analytic "
        "bounds, place the experts on simulated wireless nodes, then sweep the accuracy budget "
        "and serve held-out data with Top-K, local, sift-ratio and the exact optimum (highs), "
        "running the real forward pass with the served experts. --model digits (default): a "
        "classifier on scikit-learn's bundled digits; --model lm: a byte-level MoE language "
        "model on the Python help topics, served in prefill and decode, which also writes its "
        "router trace and bounds. Writes results.csv, results.md, summary.json and a plot into "
        "DIR and prints the table. Needs pip install 'siftopt[validate]'.")
    p.add_argument("--model", choices=MODELS, default="digits",
                   help="digits classifier (default) or byte-level language model")
    p.add_argument("--experts", type=positive_int, metavar="N",
                   help="digits: number of experts N (>= 2; default 16)")
    p.add_argument("--top-k", type=positive_int, metavar="K",
                   help="digits: experts per token (default 2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split or windows, the initialisation and the "
                   "minibatches (default 0)")
    p.add_argument("--activation", choices=("relu", "gelu"),
                   help="digits: expert activation (default relu)")
    p.add_argument("--batch-tokens", type=positive_int, metavar="L",
                   help="digits: tokens per prefill batch, one instance each (default 64)")
    p.add_argument("--cache", metavar="DIR",
                   help="lm: folder of cached trained weights (default ~/.cache/siftopt/lm)")
    p.add_argument("--quick", action="store_true",
                   help="short run (the test suite's): less training, fewer tokens, 3 budgets")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def _progress(message: str) -> None:
    print(f"validate-accuracy: {message}", file=sys.stderr, flush=True)


def _fail(violating: int, beaten: list[str]) -> int:
    if violating or beaten:
        # A proven bound failed or a policy beat the exact optimum: a bug, exit status 1.
        problems = [f"{violating} token(s) violate ‖ŷ − y‖ <= ‖x‖·D_t"] if violating else []
        print(f"siftopt: internal error: {'; '.join(problems + beaten)}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.model == "lm":
        return _run_lm(args)
    if args.cache is not None:
        raise UsageError("--cache: only with --model lm")
    from siftopt.experiments.validate import (
        ValidationConfig,
        exact_not_worse,
        markdown_table,
        prepare_out_dir,
        run_validation,
        write_outputs,
    )

    opts = {k: (v if (v := getattr(args, k)) is not None else d)
            for k, d in _DIGITS_OPTIONS.items()}
    cfg = ValidationConfig.make(seed=args.seed, quick=args.quick, **opts)  # type: ignore[arg-type]
    prepare_out_dir(args.out)  # fail before training, not after
    result = run_validation(cfg, progress=_progress)
    paths = write_outputs(args.out, result)
    emit(markdown_table(result.rows))
    violating = sum(r["violating_tokens"] for r in result.rows)
    _progress(f"trained test accuracy {100 * result.model_accuracy:.2f} %; violating tokens "
              f"{violating}; {result.timings_s['total']:.1f} s; wrote "
              f"{', '.join(str(p) for p in paths.values())}")
    return _fail(violating, exact_not_worse(result.records))


def _run_lm(args: argparse.Namespace) -> int:
    given = [k for k in _DIGITS_OPTIONS if getattr(args, k) is not None]
    if given:
        raise UsageError(f"--{given[0].replace('_', '-')}: only with --model digits (the "
                         "language model's sizes are fixed; docs/accuracy.md)")
    from siftopt.experiments.validate.lm_output import markdown_table, write_outputs
    from siftopt.experiments.validate.lm_run import LMValidationConfig, run_lm_validation
    from siftopt.experiments.validate.output import prepare_out_dir

    cfg = LMValidationConfig.make(seed=args.seed, quick=args.quick)
    prepare_out_dir(args.out)
    result = run_lm_validation(cfg, Path(args.cache) if args.cache else None,
                               progress=_progress)
    paths = write_outputs(args.out, result)
    emit(markdown_table(result.rows))
    violating = sum(r["violating_tokens"] for r in result.rows)
    q = result.ratio_quantiles
    _progress(f"violating tokens {violating}; error/bound median {q['median']:.3g}, max "
              f"{q['max']:.3g}; {result.timings_s['total']:.1f} s; wrote "
              f"{', '.join(str(p) for p in paths.values())}")
    return _fail(violating, result.exact_beaten)
