"""``siftopt generate --preset P ... --out DIR``: realistic instances from named presets.

With ``--trace TRACE.npz --bounds BOUNDS.json`` the gates come from a recorded router trace and
β/δ from a real model's expert weights instead of a preset (siftopt.experiments.generate.trace,
docs/real-models.md); the radio side, placement and budgets are the generator's.
"""

from __future__ import annotations

import argparse
from typing import Any

from siftopt.cli.common import emit, nonnegative_int, positive_float, positive_int
from siftopt.errors import UsageError

#: Options that map one to one onto generator parameters (option dest → parameter).
_PARAMETER_OPTIONS = ("preset", "scenario", "tokens", "nodes", "fading", "power_control",
                      "accuracy", "raise_budgets", "budget", "latency_scale", "latency_s",
                      "similarity", "placement", "router_entropy", "token_correlation",
                      "outage_max", "max_candidates", "bits_per_element")
#: Options of trace instances only (option dest).
_TRACE_OPTIONS = ("bounds", "layer", "start")


def register(sub: argparse._SubParsersAction) -> None:
    # Defaults are those of GeneratorConfig (applied in run(); None here means "not given").
    p = sub.add_parser(
        "generate", help="write realistic instances from architecture and wireless presets",
        description="Generate instances from a MoE architecture preset (public configs) and a "
        "wireless scenario: 3GPP path loss 128.1 + 37.6 log10(d/km) dB with log-normal "
        "shadowing, thermal noise -174 dBm/Hz plus a noise figure, softmax gates with a "
        "temperature calibrated to a routing entropy and correlated neighbouring tokens, "
        "expert similarity bounds from synthetic expert weights (siftopt.similarity.bounds), and "
        "latency and accuracy budgets that keep the problem non-trivial and feasible. "
        "Or, with --trace and --bounds, from a real model: gates from its recorded router "
        "outputs and β/δ from its expert weights (docs/real-models.md). "
        "Reproducible: the same options and seed give the same files. Writes DIR/NAME.json "
        "(+ NAME.npz when arrays are large) per instance and DIR/manifest.json. "
        "Details: docs/benchmarks.md.")
    p.add_argument("--preset", metavar="P",
                   help="MoE architecture (mixtral-8x7b, deepseek-moe-16b, qwen1.5-moe-a2.7b, "
                   "qwen3-30b-a3b, olmoe-1b-7b, deepseek-v3); required unless --trace")
    p.add_argument("--scenario", metavar="S",
                   help="wireless scenario: indoor, urban or rural (default: urban)")
    p.add_argument("--tokens", type=positive_int, metavar="L",
                   help="tokens in the batch: 1 = decoding, > 1 = prefilling (default: 1)")
    p.add_argument("--nodes", type=positive_int, metavar="M",
                   help="remote nodes besides the source (default: 4)")
    p.add_argument("--fading", metavar="slow|rayleigh", help="channel model (default: slow)")
    p.add_argument("--power-control", metavar="fixed|adaptive",
                   help="transmit power mode (default: adaptive)")
    p.add_argument("--count", type=count_of_instances, default=1, metavar="N",
                   help="instances to write, with seeds S, S+1, ..., S+N-1 (1..1000; "
                   "default: 1)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="seed of the first instance (default: 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    t = p.add_argument_group("instances from a real model (docs/real-models.md)")
    t.add_argument("--trace", metavar="TRACE.npz",
                   help="recorded router outputs (router_logits or router_probs (R, T, N), "
                   "top_k, hidden_dim, ffn_dim); replaces --preset")
    t.add_argument("--bounds", metavar="BOUNDS.json",
                   help="with --trace: β/δ from `siftopt similarity` (one block, or --layer all)")
    t.add_argument("--layer", type=nonnegative_int, metavar="L",
                   help="with --trace: the model layer (needed when the trace has several)")
    t.add_argument("--start", type=nonnegative_int, metavar="T0",
                   help="with --trace: first token of seed 0; seed s takes tokens "
                   "T0 + s·L .. T0 + (s+1)·L - 1 (default: 0)")
    g = p.add_argument_group("budgets and realism knobs")
    g.add_argument("--accuracy", type=positive_float, metavar="A",
                   help="accuracy budget as a fraction of the mean skip-everything degradation "
                   "(default: 0.2)")
    g.add_argument("--no-raise-budgets", dest="raise_budgets", action="store_const",
                   const=False, help="keep the budgets exactly at --accuracy, even if that "
                   "makes the instance infeasible (default: raise them to each token's least "
                   "degradation on the nodes that can carry the whole batch)")
    g.add_argument("--budget", metavar="token|mean|both",
                   help="per-token, mean or both budgets (default: token)")
    g.add_argument("--latency-scale", type=positive_float, metavar="X",
                   help="latency budget as a multiple of the time the median node needs for "
                   "the whole batch (default: 1.5)")
    g.add_argument("--latency-s", type=positive_float, metavar="T",
                   help="absolute per-layer latency budget in s (overrides --latency-scale)")
    g.add_argument("--similarity", type=float, metavar="S",
                   help="expert similarity in [0, 1] (default: 0.6; presets only)")
    g.add_argument("--placement", metavar="P",
                   help="expert placement strategy: round-robin, random, cluster or memory "
                   "(default: round-robin)")
    g.add_argument("--router-entropy", type=float, metavar="H",
                   help="mean routing entropy as a fraction of ln N, in (0, 1) "
                   "(default: 0.75; presets only)")
    g.add_argument("--token-correlation", type=float, metavar="R",
                   help="correlation of neighbouring tokens' router logits (default: 0.6; "
                   "presets only)")
    g.add_argument("--outage-max", type=float, metavar="P",
                   help="outage cap under Rayleigh fading (default: 0.1)")
    g.add_argument("--max-candidates", type=positive_int, metavar="R",
                   help="replacement candidates per expert (default: all useful ones)")
    g.add_argument("--bits-per-element", type=positive_int, metavar="B",
                   help="bits per hidden-state element (default: 16)")
    p.set_defaults(func=run)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    from siftopt.cli.render import format_table
    from siftopt.experiments.generate import check_parameter, config_from_mapping, write_instances

    values: dict[str, Any] = {k: getattr(args, k) for k in _PARAMETER_OPTIONS
                              if getattr(args, k) is not None}
    seeds = list(range(args.seed, args.seed + args.count))
    if args.trace is not None:
        from siftopt.experiments.generate.trace import (
            REPLACED_PARAMETERS,
            trace_config_from_mapping,
            write_trace_instances,
        )

        for key in REPLACED_PARAMETERS:
            if key in values:
                raise UsageError(f"{_option(key)}: not used with --trace (the trace and the "
                                 "bounds come from the real model)")
        if args.bounds is None:
            raise UsageError("--bounds: required with --trace (β/δ of the traced model)")
        for key, value in values.items():
            check_parameter(key, value, path=_option(key))
        values.update({"trace": args.trace, "bounds": args.bounds, "layer": args.layer,
                       "start": args.start})
        config = trace_config_from_mapping(values)
        manifest = write_trace_instances(config, seeds, args.out)
    else:
        for key in _TRACE_OPTIONS:
            if getattr(args, key) is not None:
                raise UsageError(f"{_option(key)}: only with --trace")
        if "preset" not in values:
            raise UsageError("--preset: required (or --trace with --bounds for a real model)")
        for key, value in values.items():
            check_parameter(key, value, path=_option(key))
        manifest = write_instances(config_from_mapping(values), seeds, args.out)
    rows = [[e["file"], e["latency_s"], e["reachable_nodes"], e["topk_energy_j"],
             e["trivial"], e["budgets_raised"]] for e in manifest["instances"]]
    emit(format_table(rows, ["file", "latency_s", "reachable", "topk_energy_j", "trivial",
                             "budgets_raised"]))
    listed = manifest.get("listed", len(rows))  # earlier runs' instances are kept listed
    merged = f" (it lists {listed}, earlier runs' included)" if listed != len(rows) else ""
    emit(f"wrote {len(rows)} instance(s) and manifest.json to {args.out}{merged}")
    return 0


def count_of_instances(text: str) -> int:
    """``--count``: 1..1000 instances (a larger batch belongs in a bench sweep)."""
    value = positive_int(text)
    if value > 1000:
        shown = text if len(text) < 20 else f"an integer of {len(text)} digits"
        raise argparse.ArgumentTypeError(f"must be at most 1000, got {shown} (for more, "
                                         "sweep with siftopt bench)")
    return value
