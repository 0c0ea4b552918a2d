"""``siftopt inspect FILE``: the derived data a user checks before trusting a result."""

from __future__ import annotations

import argparse

from siftopt.cli.common import add_format_option, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="show caps, energy tables, candidates and top-K sets of an instance",
        description="Validate an instance and show what the solvers will see: node rates, "
        "load caps n̂_m, energy tables E_m(n) (and whether they are convex, which decides the "
        "formulation), replacement candidates, top-K sets with weights, and each token's "
        "least possible degradation against its budget.")
    p.add_argument("file", metavar="FILE", help="instance file (.json)")
    p.add_argument("--tokens", type=int, default=10, metavar="N",
                   help="show at most N tokens in the table view (default 10)")
    add_format_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from siftopt.analysis.summary import describe
    from siftopt.cli.render import format_table
    from siftopt.io.instance_file import load_instance
    from siftopt.io.solution import dumps

    inst = load_instance(args.file)
    info = describe(inst)
    if args.format == "json":
        emit(dumps(info))
        return 0
    s = info["sizes"]
    out = [f"instance {info['name']}: L={s['tokens']} tokens, N={s['experts']} experts, "
           f"K={s['top_k']}, M={s['nodes']} remote nodes; "
           f"payload {info['payload_bits']} bits/token",
           f"{info['power_control']} power, {info['fading']} fading, latency budget "
           f"{info['latency_s']:g} s, eps_mean={info['eps_mean']}", ""]
    out.append(format_table(
        [[n["node"], ",".join(map(str, n["experts"])) or "-", n["rate_up_bps"],
          n["rate_down_bps"], n["cap"], n["energy_table_j"].get("1"), n["energy_at_cap_j"],
          n["convex"], n["formulation"].split(" ")[0]] for n in info["nodes"]],
        ["node", "experts", "rate_up_bps", "rate_down_bps", "cap", "E(1)_j", "E(cap)_j",
         "convex", "formulation"]))
    out.append("")
    out.append(format_table(
        [[e["expert"], e["node"], e["beta"],
          " ".join(f"{c['expert']}@{c['node']}:{c['delta']:.4g}" for c in e["candidates"]) or "-"]
         for e in info["experts"]],
        ["expert", "node", "beta", "candidates (expert@node:delta)"]))
    out.append("")
    shown = info["tokens"][: args.tokens]
    out.append(format_table(
        [[t["token"], " ".join(f"{e}({w:.3g})" for e, w in zip(t["experts"], t["weights"],
                                                              strict=True)),
          t["least_degradation"], t["budget"]] for t in shown],
        ["token", "top-K experts (weight)", "least_D", "budget"]))
    if len(info["tokens"]) > len(shown):
        out.append(f"... {len(info['tokens']) - len(shown)} more tokens")
    provenance = info["bounds_provenance"]
    if provenance:
        label = ("ESTIMATES, NOT BOUNDS: the accuracy budget is not certified"
                 if provenance.get("method") == "empirical" else "proven bounds")
        out += ["", f"beta/delta: {provenance} ({label})"]
    out += ["", f"pre-check: {info['precheck']}"]
    emit("\n".join(out))
    return 0
