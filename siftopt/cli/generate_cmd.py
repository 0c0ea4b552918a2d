"""``siftopt generate --preset P ... --out DIR``: realistic instances from named presets."""

from __future__ import annotations

import argparse
from typing import Any

from siftopt.cli.common import emit, nonnegative_int, positive_float, positive_int
from siftopt.cli.render import format_table
from siftopt.experiments.generate import (
    ARCHITECTURES,
    BUDGETS,
    PLACEMENTS,
    SCENARIOS,
    GeneratorConfig,
    check_parameter,
    config_from_mapping,
    write_instances,
)
from siftopt.model.instance import FADING_MODES, POWER_MODES

#: Options that map one to one onto generator parameters (option dest → parameter).
_PARAMETER_OPTIONS = ("preset", "scenario", "tokens", "nodes", "fading", "power_control",
                      "accuracy", "raise_budgets", "budget", "latency_scale", "latency_s",
                      "similarity", "placement", "router_entropy", "token_correlation",
                      "outage_max", "max_candidates", "bits_per_element")


def register(sub: argparse._SubParsersAction) -> None:
    d = GeneratorConfig(preset="mixtral-8x7b")
    p = sub.add_parser(
        "generate", help="write realistic instances from architecture and wireless presets",
        description="Generate instances from a MoE architecture preset (public configs) and a "
        "wireless scenario: 3GPP path loss 128.1 + 37.6 log10(d/km) dB with log-normal "
        "shadowing, thermal noise -174 dBm/Hz plus a noise figure, softmax gates with a "
        "temperature calibrated to a routing entropy and correlated neighbouring tokens, "
        "expert similarity bounds from synthetic expert weights (siftopt.similarity.bounds), and "
        "latency and accuracy budgets that keep the problem non-trivial and feasible. "
        "Reproducible: the same options and seed give the same files. Writes DIR/NAME.json "
        "(+ NAME.npz when arrays are large) per instance and DIR/manifest.json. "
        "Details: docs/benchmarks.md.")
    p.add_argument("--preset", required=True, choices=tuple(ARCHITECTURES),
                   help="MoE architecture")
    p.add_argument("--scenario", choices=tuple(SCENARIOS), default=d.scenario,
                   help=f"wireless scenario (default: {d.scenario})")
    p.add_argument("--tokens", type=positive_int, default=d.tokens, metavar="L",
                   help="tokens in the batch: 1 = decoding, > 1 = prefilling (default: 1)")
    p.add_argument("--nodes", type=positive_int, default=d.nodes, metavar="M",
                   help=f"remote nodes besides the source (default: {d.nodes})")
    p.add_argument("--fading", choices=FADING_MODES, default=d.fading,
                   help=f"channel model (default: {d.fading})")
    p.add_argument("--power-control", choices=POWER_MODES, default=d.power_control,
                   help=f"transmit power mode (default: {d.power_control})")
    p.add_argument("--count", type=positive_int, default=1, metavar="N",
                   help="instances to write, with seeds S, S+1, ..., S+N-1 (default: 1)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="seed of the first instance (default: 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    g = p.add_argument_group("budgets and realism knobs")
    g.add_argument("--accuracy", type=positive_float, default=d.accuracy, metavar="A",
                   help="accuracy budget as a fraction of the mean skip-everything degradation "
                   f"(default: {d.accuracy})")
    g.add_argument("--no-raise-budgets", dest="raise_budgets", action="store_false",
                   help="keep the budgets exactly at --accuracy, even if that makes the instance "
                   "infeasible (default: raise them to each token's least degradation on the "
                   "nodes that can carry the whole batch)")
    g.add_argument("--budget", choices=BUDGETS, default=d.budget,
                   help=f"per-token, mean or both budgets (default: {d.budget})")
    g.add_argument("--latency-scale", type=positive_float, default=d.latency_scale,
                   metavar="X", help="latency budget as a multiple of the time the median node "
                   f"needs for the whole batch (default: {d.latency_scale})")
    g.add_argument("--latency-s", type=positive_float, default=None, metavar="T",
                   help="absolute per-layer latency budget in s (overrides --latency-scale)")
    g.add_argument("--similarity", type=float, default=d.similarity, metavar="S",
                   help=f"expert similarity in [0, 1] (default: {d.similarity})")
    g.add_argument("--placement", choices=PLACEMENTS, default=d.placement,
                   help=f"expert placement strategy (default: {d.placement})")
    g.add_argument("--router-entropy", type=float, default=d.router_entropy, metavar="H",
                   help="mean routing entropy as a fraction of ln N, in (0, 1) "
                   f"(default: {d.router_entropy})")
    g.add_argument("--token-correlation", type=float, default=d.token_correlation,
                   metavar="R", help="correlation of neighbouring tokens' router logits "
                   f"(default: {d.token_correlation})")
    g.add_argument("--outage-max", type=float, default=d.outage_max, metavar="P",
                   help=f"outage cap under Rayleigh fading (default: {d.outage_max})")
    g.add_argument("--max-candidates", type=positive_int, default=None, metavar="R",
                   help="replacement candidates per expert (default: all useful ones)")
    g.add_argument("--bits-per-element", type=positive_int, default=d.bits_per_element,
                   metavar="B", help=f"bits per hidden-state element (default: "
                   f"{d.bits_per_element})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    values: dict[str, Any] = {k: getattr(args, k) for k in _PARAMETER_OPTIONS}
    for key, value in values.items():
        check_parameter(key, value, path="--" + key.replace("_", "-"))
    config = config_from_mapping(values)
    seeds = list(range(args.seed, args.seed + args.count))
    manifest = write_instances(config, seeds, args.out)
    rows = [[e["file"], e["latency_s"], e["reachable_nodes"], e["topk_energy_j"],
             e["trivial"], e["budgets_raised"]] for e in manifest["instances"]]
    emit(format_table(rows, ["file", "latency_s", "reachable", "topk_energy_j", "trivial",
                             "budgets_raised"]))
    emit(f"wrote {len(rows)} instance(s) and manifest.json to {args.out}")
    return 0
