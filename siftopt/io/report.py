"""Solution objects as JSON (docs/model.md §7) and as human-readable tables; solution files.

The JSON object of a result has at least ``status``, ``energy_j`` (null when undefined),
``feasible``, ``nodes[]{node, tokens}`` (``tokens`` = the load: how many tokens are sent to
the node) and ``tokens[]{token, degradation, actions[]{expert, action, target}}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from siftopt.backends.progress import progress_lines
from siftopt.errors import InputError
from siftopt.model.evaluate import Evaluation
from siftopt.model.instance import Instance, parse_json_text
from siftopt.model.problem import SKIP
from siftopt.result import SolveResult


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def evaluation_json(inst: Instance, ev: Evaluation) -> dict[str, Any]:
    """The per-node and per-token part of the result object."""
    nodes = [{"node": m + 1, "tokens": int(ev.loads[m]), "cap": int(ev.caps[m]),
              "energy_j": _num(ev.node_energy_j[m]), "latency_s": _num(ev.node_latency_s[m])}
             for m in range(inst.num_nodes)]
    tokens = []
    for t in range(inst.num_tokens):
        actions = []
        for k in range(inst.top_k):
            expert, target = int(inst.topk_experts[t, k]), int(ev.actions[t, k])
            if target == SKIP:
                kind, shown = "skip", None
            elif target == expert:
                kind, shown = "keep", None
            else:
                kind, shown = "replace", target
            actions.append({"expert": expert, "weight": float(inst.topk_weights[t, k]),
                            "action": kind, "target": shown})
        entry: dict[str, Any] = {"token": t, "degradation": float(ev.degradation[t])}
        if inst.eps_token is not None:
            entry["budget"] = float(inst.eps_token[t])
        entry["actions"] = actions
        tokens.append(entry)
    return {"nodes": nodes, "mean_degradation": ev.mean_degradation, "tokens": tokens,
            "violations": [v.to_json() for v in ev.violations]}


def result_json(inst: Instance, result: SolveResult) -> dict[str, Any]:
    """The JSON object printed by ``siftopt solve --format json`` and ``siftopt evaluate``."""
    out: dict[str, Any] = {
        "instance": inst.name,
        "method": result.method,
        "status": result.status,
        "energy_j": _num(result.energy_j),
        "feasible": result.feasible,
        "dual_bound_j": _num(result.dual_bound_j),
        "build_time_s": result.build_time_s,
        "solve_time_s": result.solve_time_s,
        "message": result.message,
    }
    if result.evaluation is not None:
        out.update(evaluation_json(inst, result.evaluation))
    else:
        out.update({"nodes": [], "mean_degradation": None, "tokens": [], "violations": []})
    out["details"] = {k: v for k, v in result.details.items() if _jsonable(v)}
    return out


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, allow_nan=False)


# ------------------------------------------------------------------------------------------
# Reading solution files
# ------------------------------------------------------------------------------------------


def read_solution(path: str | Path, inst: Instance) -> np.ndarray:
    """Actions ``(L, K)`` from a solution JSON (as written by ``solve --out``).

    Every token of the instance must appear once, with one action per top-K expert;
    ``action`` is keep, replace (with ``target``) or skip. Errors name the field path.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", file=file) from None
    doc = parse_json_text(text, file)
    if not isinstance(doc, dict) or "tokens" not in doc:
        raise InputError("missing field 'tokens' (a solution object as printed by "
                         "`siftopt solve --format json`)", file=file, path="tokens")
    rows = doc["tokens"]
    if not isinstance(rows, list):
        raise InputError("must be a list", file=file, path="tokens")
    if len(rows) != inst.num_tokens:
        raise InputError(f"has {len(rows)} entries, the instance has {inst.num_tokens} tokens",
                         file=file, path="tokens")
    actions = np.array(inst.topk_experts, dtype=np.int64)
    seen: set[int] = set()
    for idx, row in enumerate(rows):
        p = f"tokens[{idx}]"
        if not isinstance(row, dict) or "actions" not in row:
            raise InputError("must be an object with 'token' and 'actions'", file=file, path=p)
        t = row.get("token", idx)
        if type(t) is not int or not 0 <= t < inst.num_tokens or t in seen:
            raise InputError(f"token must be a distinct integer in 0..{inst.num_tokens - 1}, "
                             f"got {t!r}", file=file, path=f"{p}.token")
        seen.add(t)
        _read_token_actions(row["actions"], inst, t, actions, file, f"{p}.actions")
    return actions


def _read_token_actions(raw: Any, inst: Instance, t: int, actions: np.ndarray, file: str,
                        path: str) -> None:
    experts = [int(e) for e in inst.topk_experts[t]]
    if not isinstance(raw, list) or len(raw) != len(experts):
        raise InputError(f"must list one action for each of the {len(experts)} top-K experts "
                         f"{experts}", file=file, path=path)
    done: set[int] = set()
    for k, entry in enumerate(raw):
        p = f"{path}[{k}]"
        if not isinstance(entry, dict):
            raise InputError("must be an object {expert, action, target}", file=file, path=p)
        expert = entry.get("expert")
        if expert not in experts or expert in done:
            raise InputError(f"expert must be one of the token's top-K experts {experts} (each "
                             f"once), got {expert!r}", file=file, path=f"{p}.expert")
        done.add(expert)
        slot = experts.index(expert)
        kind, target = entry.get("action"), entry.get("target")
        if kind == "keep":
            actions[t, slot] = expert
        elif kind == "skip":
            actions[t, slot] = SKIP
        elif kind == "replace":
            if type(target) is not int or not 0 <= target < inst.num_experts:
                raise InputError(f"replace needs an expert index target, got {target!r}",
                                 file=file, path=f"{p}.target")
            actions[t, slot] = target
        else:
            raise InputError(f"action must be 'keep', 'replace' or 'skip', got {kind!r}",
                             file=file, path=f"{p}.action")


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


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
