"""siftopt: energy-efficient expert selection for wireless distributed MoE inference.

The public API (docs/api.md); names are imported on first use, so ``import siftopt`` and the
command line start fast::

    import siftopt
    inst = siftopt.load("instances/prefill-adaptive-caps.json")
    res = siftopt.solve(inst, method="highs", time_limit=10)
    res.status, res.energy_j, res.decision.to_frame()

The normative model is ``docs/model.md``; the map of the package is ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from siftopt.version import __version__

#: Public name → the module that defines it.
_EXPORTS: dict[str, str] = {
    "load": "siftopt.api",
    "save": "siftopt.api",
    "solve": "siftopt.api",
    "evaluate": "siftopt.api",
    "methods": "siftopt.api",
    "verify": "siftopt.api",
    "generate": "siftopt.api",
    "build_model": "siftopt.modeling",
    "solve_model": "siftopt.modeling",
    "Status": "siftopt.result",
    "SolveResult": "siftopt.result",
    "InputError": "siftopt.errors",
    "Instance": "siftopt.model.instance",
    "Evaluation": "siftopt.model.evaluate",
    "Decision": "siftopt.model.decision",
    "Action": "siftopt.model.decision",
    "PolicyInput": "siftopt.policies.interface",
    "policy": "siftopt.policies.interface",
}

__all__ = ["Action", "Decision", "Evaluation", "InputError", "Instance", "PolicyInput",
           "SolveResult", "Status", "__version__", "build_model", "evaluate", "generate", "load",
           "methods", "policy", "save", "solve", "solve_model", "verify"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'siftopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from siftopt.api import evaluate, generate, load, methods, save, solve, verify
    from siftopt.errors import InputError
    from siftopt.model.decision import Action, Decision
    from siftopt.model.evaluate import Evaluation
    from siftopt.model.instance import Instance
    from siftopt.modeling import build_model, solve_model
    from siftopt.policies.interface import PolicyInput, policy
    from siftopt.result import SolveResult, Status
