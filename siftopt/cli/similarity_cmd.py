"""``siftopt similarity WEIGHTS.npz --kind K --out BOUNDS.json``: β and δ from expert weights."""

from __future__ import annotations

import argparse
import json

import numpy as np

from siftopt.cli.common import emit, write_text
from siftopt.errors import InputError, UsageError
from siftopt.similarity import (
    KINDS,
    METHODS,
    Bounds,
    ExpertWeights,
    compute_bounds,
    load_expert_weights,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similarity", help="skip and replacement constants β, δ from expert weights",
        description="Compute the constants of the accuracy bound (docs/bounds.md): β[i] with "
        "‖E_i(x)‖ <= β[i]‖x‖ and δ[i][j] with ‖E_i(x) − E_j(x)‖ <= δ[i][j]‖x‖, from the "
        "weights of one MoE layer (.npz with w1 (N, h, d), w2 (N, d, h), optional w3, b1, b2), "
        "and write the `bounds` block of an instance file. --method analytic gives proven "
        "upper bounds; --method empirical gives estimates (largest ratios seen), never bounds.")
    p.add_argument("weights", metavar="WEIGHTS.npz", help="expert weights (.npz)")
    p.add_argument("--kind", required=True, choices=KINDS,
                   help="expert type: plain FFN with relu/gelu/silu, or gated swiglu")
    p.add_argument("--method", choices=METHODS, default="analytic",
                   help="analytic (proven bounds, default) or empirical (estimates)")
    p.add_argument("--radius", type=float, metavar="R",
                   help="bounds hold for ‖x‖ <= R (required for swiglu)")
    p.add_argument("--min-radius", type=float, metavar="R0",
                   help="bounds hold for ‖x‖ >= R0 (required when biases make E(0) != 0)")
    p.add_argument("--calibration", metavar="X.npy",
                   help="empirical only: calibration token states, an (n, d) array")
    p.add_argument("--seed", type=int, default=0, help="empirical only: random seed (default 0)")
    p.add_argument("--exact-pairs", default="auto", metavar="auto|all|COUNT",
                   help="analytic only: how many expert pairs get exact spectral norms of "
                   "their weight differences (default auto: as many as fit in a few seconds)")
    p.add_argument("--out", required=True, metavar="BOUNDS.json", help="output file")
    p.set_defaults(func=run)


def _exact_pairs(text: str) -> int | str:
    if text in ("auto", "all"):
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"--exact-pairs: expected auto, all or a count >= 0, got {text!r}")
    return value


def _load_calibration(path: str | None) -> np.ndarray | None:
    if path is None:
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("no such file", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except (ValueError, EOFError):
        raise InputError("not a NumPy .npy array", file=path) from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise InputError("is a .npz archive, expected a single .npy array (n, d)", file=path)
    return arr


def summary(weights: ExpertWeights, bounds: Bounds, out: str) -> str:
    """A few human lines: sizes, method and domain, β and δ ranges."""
    n = weights.num_experts
    biases = [k for k in ("b1", "b2") if getattr(weights, k) is not None]
    lines = [f"similarity: {n} experts, d={weights.model_dim}, h={weights.ffn_dim}, "
             f"kind {bounds.kind}" + (f", biases {'+'.join(biases)}" if biases else "")]
    domain = []
    if bounds.min_radius is not None:
        domain.append(f"‖x‖ >= {bounds.min_radius:g}")
    if bounds.radius is not None:
        domain.append(f"‖x‖ <= {bounds.radius:g}")
    where = " and ".join(domain) if domain else "every x"
    if bounds.is_bound:
        lines.append(f"method: analytic: proven upper bounds, valid for {where}")
    else:
        lines.append(f"method: empirical: ESTIMATE, NOT A BOUND (largest ratios observed for "
                     f"{where}); use --method analytic for certified constants")
    b = bounds.beta
    lines.append(f"beta:  min {b.min():.6g}  median {np.median(b):.6g}  max {b.max():.6g}")
    if n > 1:
        off = bounds.delta[~np.eye(n, dtype=bool)]
        useful = int(np.count_nonzero((bounds.delta < bounds.beta[:, None])
                                      & ~np.eye(n, dtype=bool)))
        lines.append(f"delta: min {off.min():.6g}  median {np.median(off):.6g}  "
                     f"max {off.max():.6g} (off-diagonal)")
        lines.append(f"       {useful} of {n * (n - 1)} ordered pairs have "
                     "delta[i][j] < beta[i] (replacement can beat skipping)")
    lines.extend(f"note: {note}" for note in bounds.notes)
    lines.append(f"wrote {out}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    weights = load_expert_weights(args.weights)
    if args.method == "analytic" and args.calibration is not None:
        raise UsageError("--calibration: only used with --method empirical")
    exact = _exact_pairs(args.exact_pairs)
    calibration = _load_calibration(args.calibration)
    bounds = compute_bounds(weights, args.kind, args.method, radius=args.radius,
                            min_radius=args.min_radius, calibration=calibration,
                            seed=args.seed, exact_pairs=exact,  # type: ignore[arg-type]
                            calibration_source=args.calibration or "calibration")
    text = json.dumps(bounds.to_json_dict(), allow_nan=False) + "\n"
    write_text(args.out, text)
    emit(summary(weights, bounds, args.out))
    return 0
