"""Text for the terminal: aligned tables and the human-readable summary of a result."""

from __future__ import annotations

from typing import Any

from siftopt.backends.progress import progress_lines
from siftopt.model.instance import Instance
from siftopt.model.problem import SKIP
from siftopt.result import SolveResult


def format_table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[_cell(x) for x in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                      for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(x.rstrip() for x in out)


def _cell(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def result_table(inst: Instance, result: SolveResult, *, max_tokens: int = 20) -> str:
    """A human-readable summary of a result (the default output of ``siftopt solve``)."""
    energy = "-" if result.energy_j is None else f"{result.energy_j:.9g} J"
    bound = "-" if result.dual_bound_j is None else f"{result.dual_bound_j:.9g} J"
    lines = [f"instance  {inst.name}  (L={inst.num_tokens}, N={inst.num_experts}, "
             f"K={inst.top_k}, M={inst.num_nodes}, {inst.power_control} power, "
             f"{inst.fading} fading)",
             f"method    {result.method}",
             f"status    {result.status}",
             f"energy    {energy}   (dual bound {bound})",
             f"time      build {result.build_time_s:.3f} s, solve {result.solve_time_s:.3f} s"]
    if result.message:
        lines.append(f"note      {result.message}")
    if "warm_start_policy" in result.details:
        policy = result.details["warm_start_policy"]
        start = "no feasible policy answer" if policy is None else f"from policy {policy}"
        if policy is not None and result.details.get("warm_start") is False:
            start += " (not usable here)"
        lines.append(f"start     {start}")
    trace = result.details.get("trace")
    if trace:
        lines += ["", "progress (bounds over time)", *progress_lines(trace)]
    ev = result.evaluation
    if ev is None:
        return "\n".join(lines)
    lines += ["", format_table(
        [[m + 1, int(ev.loads[m]), int(ev.caps[m]), float(ev.node_energy_j[m]),
          float(ev.node_latency_s[m])] for m in range(inst.num_nodes)],
        ["node", "tokens", "cap", "energy_j", "latency_s"])]
    rows = []
    for t in range(min(inst.num_tokens, max_tokens)):
        acts = []
        for k in range(inst.top_k):
            e, a = int(inst.topk_experts[t, k]), int(ev.actions[t, k])
            acts.append(f"{e}:keep" if a == e else f"{e}:skip" if a == SKIP else f"{e}->{a}")
        budget = None if inst.eps_token is None else float(inst.eps_token[t])
        rows.append([t, float(ev.degradation[t]), budget, " ".join(acts)])
    lines += ["", format_table(rows, ["token", "degradation", "budget", "actions"])]
    if inst.num_tokens > max_tokens:
        lines.append(f"... {inst.num_tokens - max_tokens} more tokens (use --format json)")
    if inst.eps_mean is not None:
        lines.append(f"mean degradation {ev.mean_degradation:.6g} (budget {inst.eps_mean:.6g})")
    for v in ev.violations:
        lines.append(f"VIOLATION {v.kind}: {v.message}")
    return "\n".join(lines)
