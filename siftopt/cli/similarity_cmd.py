"""``siftopt similarity WEIGHTS --kind K --out BOUNDS.json``: β and δ from expert weights.

WEIGHTS is an ``.npz`` file of the weight contract (docs/bounds.md §1) or a published
checkpoint (``.safetensors`` file, or a folder with ``model.safetensors.index.json``) read
layer by layer by :mod:`siftopt.similarity.checkpoint` (``--layer L`` or ``--layer all``).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from siftopt.cli.common import emit, write_text
from siftopt.errors import InputError, UsageError

if TYPE_CHECKING:
    import numpy as np

    from siftopt.similarity import Bounds, ExpertWeights

#: Kinds and methods (as in siftopt.similarity; repeated so that the parser needs no numpy).
KINDS: tuple[str, ...] = ("relu", "gelu", "silu", "swiglu")
METHODS: tuple[str, ...] = ("analytic", "empirical")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similarity", help="skip and replacement constants β, δ from expert weights",
        description="Compute the constants of the accuracy bound (docs/bounds.md): β[i] with "
        "‖E_i(x)‖ <= β[i]‖x‖ and δ[i][j] with ‖E_i(x) − E_j(x)‖ <= δ[i][j]‖x‖, from the "
        "weights of one MoE layer (.npz with w1 (N, h, d), w2 (N, d, h), optional w3, b1, b2), "
        "and write the `bounds` block of an instance file. --method analytic gives proven "
        "upper bounds; --method empirical gives estimates (largest ratios seen), never bounds. "
        "WEIGHTS may also be a published checkpoint: a .safetensors file or a folder with "
        "model.safetensors.index.json (Mixtral and Qwen-MoE/OLMoE/DeepSeek-MoE tensor names, "
        "float32/float16/bfloat16), read one layer at a time (--layer L, or --layer all for "
        "one bounds block per MoE layer; docs/real-models.md).")
    p.add_argument("weights", metavar="WEIGHTS",
                   help="expert weights: .npz, or a checkpoint (.safetensors file or folder)")
    p.add_argument("--layer", metavar="L|all",
                   help="checkpoints only: the MoE layer to read, or all of them")
    p.add_argument("--kind", required=True, choices=KINDS,
                   help="expert type: plain FFN with relu/gelu/silu, or gated swiglu")
    p.add_argument("--method", choices=METHODS, default="analytic",
                   help="analytic (proven bounds, default) or empirical (estimates)")
    p.add_argument("--radius", metavar="R|auto",
                   help="bounds hold for ‖x‖ <= R (required for swiglu); with a checkpoint, "
                   "auto = √d·max|g| of the layer's RMSNorm gain g (certified)")
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
    import numpy as np

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
    import numpy as np

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


def _radius(text: str | None, checkpoint: bool) -> float | str | None:
    if text is None or (text == "auto" and checkpoint):
        return text
    if text == "auto":
        raise UsageError("--radius: auto needs a checkpoint (it reads the RMSNorm gain); "
                         "give a number for an .npz file")
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--radius: expected a number or auto, got {text!r}") from None


def summary_line(weights: ExpertWeights, bounds: Bounds) -> str:
    """One line per layer: sizes, radius, β range and useful replacement pairs."""
    import numpy as np

    n = weights.num_experts
    off = ~np.eye(n, dtype=bool)
    useful = int(np.count_nonzero((bounds.delta < bounds.beta[:, None]) & off))
    radius = "" if bounds.radius is None else f", ‖x‖ <= {bounds.radius:.6g}"
    return (f"{n} experts, d={weights.model_dim}, h={weights.ffn_dim}{radius}; beta "
            f"{bounds.beta.min():.4g}..{bounds.beta.max():.4g}; {useful} of {n * (n - 1)} "
            "ordered pairs with delta < beta")


def run(args: argparse.Namespace) -> int:
    from siftopt.similarity import compute_bounds, load_expert_weights
    from siftopt.similarity.checkpoint import is_checkpoint

    if args.method == "analytic" and args.calibration is not None:
        raise UsageError("--calibration: only used with --method empirical")
    exact = _exact_pairs(args.exact_pairs)
    checkpoint = is_checkpoint(args.weights)
    radius = _radius(args.radius, checkpoint)
    if checkpoint:
        return _run_checkpoint(args, radius, exact)
    if args.layer is not None:
        raise UsageError("--layer: only for checkpoints (.safetensors file or folder); an .npz "
                         "file holds one layer")
    weights = load_expert_weights(args.weights)
    calibration = _load_calibration(args.calibration)
    bounds = compute_bounds(weights, args.kind, args.method, radius=radius,  # type: ignore[arg-type]
                            min_radius=args.min_radius, calibration=calibration,
                            seed=args.seed, exact_pairs=exact,  # type: ignore[arg-type]
                            calibration_source=args.calibration or "calibration")
    text = json.dumps(bounds.to_json_dict(), allow_nan=False) + "\n"
    write_text(args.out, text)
    emit(summary(weights, bounds, args.out))
    return 0


def _run_checkpoint(args: argparse.Namespace, radius: float | str | None,
                    exact: int | str) -> int:
    """Bounds of one layer (a plain bounds block) or of every MoE layer (``{"checkpoint",
    "layout", "layers": {"L": block}}``) of a checkpoint."""
    from siftopt.similarity import compute_bounds
    from siftopt.similarity.checkpoint import (
        check_activation,
        layer_weights,
        open_checkpoint,
        parse_layer,
        rmsnorm_radius,
    )

    if args.layer is None:
        raise UsageError("--layer: required for a checkpoint (a layer index, or all)")
    layer = parse_layer(args.layer)
    ckpt = open_checkpoint(args.weights)
    check_activation(ckpt, args.kind)
    layers = ckpt.layers if layer is None else [ckpt.check_layer(layer)]
    if layer is None and args.calibration is not None:
        raise UsageError("--calibration: calibration states belong to one layer; use "
                         "--layer L, not all")
    calibration = _load_calibration(args.calibration)
    blocks: dict[str, Any] = {}
    lines: list[str] = []
    for index in layers:
        rho = rmsnorm_radius(ckpt, index) if radius == "auto" else radius
        weights = layer_weights(ckpt, index)
        bounds = compute_bounds(weights, args.kind, args.method, radius=rho,  # type: ignore[arg-type]
                                min_radius=args.min_radius, calibration=calibration,
                                seed=args.seed, exact_pairs=exact,  # type: ignore[arg-type]
                                calibration_source=args.calibration or "calibration")
        blocks[str(index)] = bounds.to_json_dict()
        if layer is not None:
            lines = summary(weights, bounds, args.out).splitlines()[:-1]
        else:
            lines.append(f"layer {index}: {summary_line(weights, bounds)}")
        del weights  # one layer in memory at a time
    doc = blocks[str(layers[0])] if layer is not None else {
        "checkpoint": args.weights, "layout": ckpt.layout.name, "layers": blocks}
    write_text(args.out, json.dumps(doc, allow_nan=False) + "\n")
    head = (f"similarity: checkpoint {args.weights} ({ckpt.layout.name} layout, "
            f"MoE layers {len(ckpt.layers)})")
    emit("\n".join([head, *lines, f"wrote {args.out}"]))
    return 0
