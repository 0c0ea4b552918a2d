"""``siftopt simulate FILE --method M``: Monte Carlo validation of a decision under fast fading."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from siftopt.analysis.simulate import (
    DEFAULT_RUNS,
    CsiReport,
    Estimate,
    Progress,
    SimulationReport,
    report_json,
    simulate,
)
from siftopt.cli.common import (
    add_format_option,
    emit,
    nonnegative_int,
    positive_float,
    positive_int,
)
from siftopt.cli.render import format_table
from siftopt.facade import EXACT_METHODS
from siftopt.io.instance_file import load_instance
from siftopt.io.solution import dumps
from siftopt.model.instance import CSI_MODES, Instance


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="Monte Carlo simulation of a decision under Rayleigh fading",
        description="Solve FILE once with METHOD from the channel statistics, draw RUNS "
        "Rayleigh channel realisations, apply the decision (slots served by a node in "
        "outage fall back to skip) and report the mean energy, outage frequency and "
        "realised degradation with 95% confidence intervals next to the closed-form "
        "predictions. --csi instantaneous also re-solves every realisation as a slow-fading "
        "instance with the realised gains (value of channel knowledge). Slow-fading "
        "instances have a deterministic channel: nothing is drawn and every figure is exact. "
        "Definitions: docs/fading.md §8.")
    p.add_argument("file", metavar="FILE", help="instance file (.json)")
    p.add_argument("--method", default="highs",
                   help=f"exact backend ({', '.join(EXACT_METHODS)}) or policy (default: highs)")
    p.add_argument("--runs", type=positive_int, default=None, metavar="R",
                   help=f"channel realisations (default: {DEFAULT_RUNS['statistical']} with "
                   f"statistical CSI, {DEFAULT_RUNS['instantaneous']} with instantaneous CSI)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="seed of the channel draws (default: 0)")
    p.add_argument("--csi", choices=CSI_MODES, default=None,
                   help="channel knowledge of the decision (default: the instance's csi)")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="S",
                   help="wall-clock limit of each solve in seconds")
    p.add_argument("--quiet", action="store_true",
                   help="no progress indication on stderr (instantaneous CSI)")
    add_format_option(p)
    p.set_defaults(func=run)


def stderr_progress() -> Progress:
    """A progress printer for stderr: a self-overwriting line on a terminal, else a line per
    10% of the runs."""
    started = time.perf_counter()
    tty = sys.stderr.isatty()
    state = {"last": -1.0, "decile": -1}

    def report(done: int, total: int) -> None:
        now = time.perf_counter() - started
        text = f"simulate: {done}/{total} realisations solved ({now:.1f} s)"
        if tty:
            if done == total or now - state["last"] >= 0.2:
                state["last"] = now
                end = "\n" if done == total else ""
                print(f"\r{text}", end=end, file=sys.stderr, flush=True)
            return
        decile = (10 * done) // total
        if decile > state["decile"]:
            state["decile"] = decile
            print(text, file=sys.stderr, flush=True)

    return report


def run(args: argparse.Namespace) -> int:
    inst = load_instance(args.file)
    csi = args.csi or inst.csi
    progress = None if args.quiet or csi != "instantaneous" else stderr_progress()
    report = simulate(inst, args.method, runs=args.runs, seed=args.seed, csi=csi,
                      time_limit_s=args.time_limit, progress=progress)
    emit(dumps(report_json(report)) if args.format == "json" else report_table(inst, report))
    return 0


# --------------------------------------------------------------------------------------------
# The human-readable table
# --------------------------------------------------------------------------------------------

_ROWS = (
    ("energy per layer (J)", "energy"),
    ("outage per node use", "outage"),
    ("runs with any node in outage", "outage_any"),
    ("mean token degradation", "degradation_mean"),
    ("max token degradation", "degradation_max"),
    ("share of tokens over budget", "over_share"),
    ("runs breaking a budget", "violation"),
)


def _ci(est: Estimate | None) -> str | None:
    if est is None or est.interval is None:
        return None
    low, high = est.interval
    return f"[{low:.6g}, {high:.6g}]"


def _value(est: Estimate | None) -> Any:
    return None if est is None else est.value


def _header(inst: Instance, rep: SimulationReport) -> list[str]:
    cap = f", outage_max {rep.outage_max:g}" if rep.outage_max is not None else ""
    lines = [f"instance  {inst.name}  (L={inst.num_tokens}, M={inst.num_nodes}, "
             f"{inst.power_control} power, {inst.fading} fading{cap})",
             f"method    {rep.method}  (status {rep.status})"]
    if rep.deterministic:
        lines.append("channel   deterministic (slow fading): nothing drawn, figures exact")
    else:
        lines.append(f"channel   {rep.csi} CSI, {rep.runs} realisations, seed {rep.seed}")
    if rep.loads is not None:
        lines.append("loads     " + ", ".join(f"node {m + 1}: {int(n)}"
                                              for m, n in enumerate(rep.loads)))
    if rep.message:
        lines.append(f"note      {rep.message}")
    return lines


def _statistical_rows(st: CsiReport) -> list[list[Any]]:
    return [[label, getattr(st, key).expected if getattr(st, key) else None,
             _value(getattr(st, key)), _ci(getattr(st, key))] for label, key in _ROWS]


def _instantaneous_rows(st: CsiReport | None, ins: CsiReport) -> list[list[Any]]:
    rows = []
    for label, key in _ROWS:
        s_est = None if st is None else getattr(st, key)
        i_est = getattr(ins, key)
        rows.append([label, None if s_est is None else s_est.expected, _value(s_est), _ci(s_est),
                     _value(i_est), _ci(i_est)])
    return rows


def _value_of_csi_lines(rep: SimulationReport) -> list[str]:
    ex, ins = rep.extras, rep.instantaneous
    if ex is None or ins is None:
        return []
    if rep.deterministic:
        return ["slow fading: the decision already knows the channel, so instantaneous CSI "
                "changes nothing (saving 0)"]
    lines = [f"realisations without a feasible decision: {ex.infeasible_runs} of {ins.runs} "
             "(statuses: " + ", ".join(f"{k} {v}" for k, v in ex.statuses.items()) + ")"]
    if ex.saving is not None and ex.saving.value is not None:
        rel = ("" if ex.relative_saving is None
               else f", {100 * ex.relative_saving:.3g}% of the statistical energy")
        lines.append(f"value of CSI: energy saving {ex.saving.value:.6g} J "
                     f"{_ci(ex.saving) or ''} per layer{rel}, paired over "
                     f"{ex.runs_compared} runs")
    within = ex.saving_within_budget
    if within is not None and within.value is not None:
        lines.append(f"  over the {ex.runs_within_budget} runs where the statistical decision "
                     f"met its budgets: {within.value:.6g} J {_ci(within) or ''}")
    return lines


def report_table(inst: Instance, rep: SimulationReport) -> str:
    """The default output of ``siftopt simulate``."""
    lines = _header(inst, rep)
    st, ins = rep.statistical, rep.instantaneous
    if rep.csi == "instantaneous" and ins is not None:
        lines += ["", format_table(_instantaneous_rows(st, ins),
                                   ["quantity", "closed form", "statistical CSI", "95% CI",
                                    "instantaneous CSI", "95% CI"])]
        lines += _value_of_csi_lines(rep)
    elif st is not None:
        lines += ["", format_table(_statistical_rows(st),
                                   ["quantity", "closed form", "simulated", "95% CI"])]
        lines += ["", format_table(
            [[n.node, n.tokens, n.outage.expected, n.outage.value, n.energy.expected,
              n.energy.value] for n in st.nodes],
            ["node", "tokens", "outage_expected", "outage_rate", "energy_expected_j",
             "energy_mean_j"])]
    lines.append(f"elapsed   {rep.elapsed_s:.3f} s")
    return "\n".join(lines)
