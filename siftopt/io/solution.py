"""The result and solution documents of docs/model.md §7, as JSON.

A result (``siftopt solve --format json``, ``siftopt evaluate``) is one JSON object with at
least ``status``, ``energy_j`` (null when undefined), ``feasible``, ``nodes[]{node, tokens}``
(``tokens`` = the load: how many tokens are sent to the node) and ``tokens[]{token,
degradation, actions[]{expert, action, target}}``. :func:`read_solution` reads such an object
back into the actions it describes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from siftopt.io.reader import Reader
from siftopt.model.evaluate import Evaluation
from siftopt.model.instance import Instance
from siftopt.model.problem import SKIP


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


class ResultLike(Protocol):
    """What :func:`result_json` reads of a result (:class:`siftopt.result.SolveResult`)."""

    @property
    def method(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def energy_j(self) -> float | None: ...
    @property
    def feasible(self) -> bool: ...
    @property
    def dual_bound_j(self) -> float | None: ...
    @property
    def build_time_s(self) -> float: ...
    @property
    def solve_time_s(self) -> float: ...
    @property
    def message(self) -> str: ...
    @property
    def evaluation(self) -> Evaluation | None: ...
    @property
    def details(self) -> dict[str, Any]: ...


def result_json(inst: Instance, result: ResultLike) -> dict[str, Any]:
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
    """A JSON document as printed and written (one-space indent, no NaN)."""
    return json.dumps(obj, indent=1, allow_nan=False)


# ------------------------------------------------------------------------------------------
# Reading solution files
# ------------------------------------------------------------------------------------------


def read_solution(path: str | Path, inst: Instance) -> np.ndarray:
    """Actions ``(L, K)`` from a solution JSON (as written by ``solve --out``).

    Every token of the instance must appear once, with one action per top-K expert;
    ``action`` is keep, replace (with ``target``) or skip. Errors name the field path.
    """
    r = Reader(str(path))
    doc = r.load(path, "a solution .json file")
    if isinstance(doc, dict) and "siftopt_version" in doc:
        raise r.fail("", "not a solution file: this is an instance (it has siftopt_version); "
                         "give a result of `siftopt solve FILE --out SOLUTION.json` or "
                         "`--format json`")
    if not isinstance(doc, dict) or "tokens" not in doc:
        raise r.fail("tokens", "missing field 'tokens' (a solution object as printed by "
                               "`siftopt solve --format json`)")
    rows = doc["tokens"]
    if not isinstance(rows, list):
        raise r.fail("tokens", "must be a list")
    if len(rows) != inst.num_tokens:
        raise r.fail("tokens", f"has {len(rows)} entries, the instance has {inst.num_tokens} "
                               "tokens")
    actions = np.array(inst.topk_experts, dtype=np.int64)
    seen: set[int] = set()
    for idx, row in enumerate(rows):
        p = f"tokens[{idx}]"
        if not isinstance(row, dict) or "actions" not in row:
            raise r.fail(p, "must be an object with 'token' and 'actions'")
        t = row.get("token", idx)
        if type(t) is not int or not 0 <= t < inst.num_tokens or t in seen:
            raise r.fail(f"{p}.token", f"token must be a distinct integer in "
                                       f"0..{inst.num_tokens - 1}, got {t!r}")
        seen.add(t)
        _read_token_actions(r, row["actions"], inst, t, actions, f"{p}.actions")
    return actions


def _read_token_actions(r: Reader, raw: Any, inst: Instance, t: int, actions: np.ndarray,
                        path: str) -> None:
    experts = [int(e) for e in inst.topk_experts[t]]
    if not isinstance(raw, list) or len(raw) != len(experts):
        raise r.fail(path, f"must list one action for each of the {len(experts)} top-K "
                           f"experts {experts}")
    done: set[int] = set()
    for k, entry in enumerate(raw):
        p = f"{path}[{k}]"
        if not isinstance(entry, dict):
            raise r.fail(p, "must be an object {expert, action, target}")
        expert = entry.get("expert")
        if expert not in experts or expert in done:
            raise r.fail(f"{p}.expert", f"expert must be one of the token's top-K experts "
                                        f"{experts} (each once), got {expert!r}")
        done.add(expert)
        slot = experts.index(expert)
        kind, target = entry.get("action"), entry.get("target")
        if kind == "keep":
            actions[t, slot] = expert
        elif kind == "skip":
            actions[t, slot] = SKIP
        elif kind == "replace":
            if type(target) is not int or not 0 <= target < inst.num_experts:
                raise r.fail(f"{p}.target", f"replace needs an expert index target, "
                                            f"got {target!r}")
            actions[t, slot] = target
        else:
            raise r.fail(f"{p}.action", f"action must be 'keep', 'replace' or 'skip', "
                                        f"got {kind!r}")
