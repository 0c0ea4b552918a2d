"""The Python API: what the command line does, as functions for scripts and notebooks.

Import it as ``import siftopt``; every name here is re-exported (lazily) by the package::

    inst = siftopt.load("instances/prefill-adaptive-caps.json")
    res = siftopt.solve(inst, method="highs", time_limit=10, profile="parallel")
    res.status, res.energy_j, res.dual_bound_j, res.gap
    res.decision.to_frame()
    siftopt.evaluate(inst, res.decision)

Bad input raises :class:`siftopt.InputError` with the same one-line message as the CLI.
docs/api.md documents every name with types and units.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from siftopt.errors import InputError
from siftopt.model.decision import Decision
from siftopt.model.instance import Instance

if TYPE_CHECKING:
    import pandas as pd

    from siftopt.io.profiles import Profile
    from siftopt.model.evaluate import Evaluation
    from siftopt.result import SolveResult

InstanceLike = Instance | str | os.PathLike[str] | Mapping[str, Any]


def load(source: InstanceLike) -> Instance:
    """An instance from a file path (``.json``, with its ``.npz`` sidecar), a parsed JSON
    document (a dict in the file format of docs/model.md §6), or an Instance (returned as is)."""
    if isinstance(source, Instance):
        return source
    from siftopt.io.instance_file import instance_from_document, load_instance

    if isinstance(source, Mapping):
        return instance_from_document(dict(source), file="<dict>")
    if isinstance(source, str | os.PathLike):
        return load_instance(source)
    raise InputError(f"cannot load an instance from a {type(source).__name__} (give a path, "
                     "a dict or an Instance)", path="instance")


def _profile(profile: str | Profile | None) -> Profile:
    from siftopt.io.profiles import Profile, load_profile

    if isinstance(profile, Profile):
        return profile
    return load_profile(profile)


def solve(instance: InstanceLike, method: str = "highs", *, time_limit: float | None = None,
          profile: str | Profile | None = None, formulation: str = "auto",
          interface: str = "auto", warm_start: Sequence[str] | None = None) -> SolveResult:
    """Solve ``instance`` with an exact backend (``highs``, ``cpsat``, ``brute``) or a policy
    (a registered name, or ``module.path:function``).

    ``time_limit``: seconds (default: the profile's); ``profile``: ``default``, ``parallel``,
    ``quick``, a ``.toml`` path or a :class:`~siftopt.io.profiles.Profile`;
    ``formulation``/``interface``: see ``siftopt methods``; ``warm_start``: policy names whose
    best feasible answer starts the exact search. The result's energy was computed by the
    evaluator; ``res.status`` is a :class:`siftopt.Status`.
    """
    from siftopt.facade import solve as run

    inst = load(instance)
    if time_limit is not None and not (float(time_limit) > 0 and np.isfinite(time_limit)):
        raise InputError(f"time_limit must be a positive number of seconds, got {time_limit!r}",
                         path="time_limit")
    return run(inst, method, profile=_profile(profile), time_limit_s=time_limit,
               formulation=formulation, interface=interface,
               warm_start=None if warm_start is None else list(warm_start))


def evaluate(instance: InstanceLike, decision: Decision | SolveResult | np.ndarray
             ) -> Evaluation:
    """Energy (J), loads, latency (s), degradations and violations of a decision — a
    :class:`Decision`, a result, or an ``(L, K)`` array of served experts (−1 = skip)."""
    from siftopt.model.evaluate import evaluate as run
    from siftopt.result import SolveResult

    inst = load(instance)
    if isinstance(decision, SolveResult):
        if decision.evaluation is None:
            raise InputError(f"the result has no decision (status {decision.status})",
                             path="decision")
        targets = decision.evaluation.actions
    elif isinstance(decision, Decision):
        targets = decision.targets
    else:
        targets = Decision.from_targets(inst, np.asarray(decision)).targets
    return run(inst, targets)


def methods() -> pd.DataFrame:
    """Every registered exact backend and policy with its capabilities (one row each)."""
    import pandas as pd

    from siftopt import registry

    return pd.DataFrame(registry.methods())


def verify(paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
           methods: Sequence[str], *, exact: str = "highs", profile: str | Profile | None = None,
           time_limit: float | None = None) -> pd.DataFrame:
    """Solve each instance under ``paths`` (files or folders) exactly with ``exact`` and compare
    each of ``methods``: one row per instance × method (``energy_j``, ``optimum_j``, ``gap`` as
    a fraction, ``optimal``, ``feasible``, ``time_s``, ``verdict``, ...), as ``siftopt verify``."""
    import pandas as pd

    from siftopt.analysis.verify import find_instance_files
    from siftopt.analysis.verify import verify as run

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files, _ = find_instance_files([str(p) for p in paths])
    report = run(files, list(methods), exact=exact, profile=_profile(profile),
                 time_limit_s=time_limit)
    return pd.DataFrame([vars(row) for row in report.rows])


def generate(preset: str, *, seed: Sequence[int] | int = 0, **parameters: Any) -> list[Instance]:
    """Instances from an architecture preset (``siftopt generate``), one per seed (an int or
    a sequence of ints).

    ``parameters`` are the generator's (``tokens``, ``nodes``, ``fading``, ``power_control``,
    ``scenario``, ``budget``, ``accuracy``, ...; docs/benchmarks.md), validated with the same
    messages as the CLI, e.g. ``siftopt.generate("mixtral-8x7b", tokens=64, seed=3)``.
    """
    from siftopt.experiments.generate import config_from_mapping
    from siftopt.experiments.generate import generate as run

    config = config_from_mapping({"preset": preset, **parameters})
    seed_list = [seed] if isinstance(seed, int) else list(seed)
    return [run(config, int(seed)).instance for seed in seed_list]


def save(instance: Instance, path: str | os.PathLike[str]) -> Path:
    """Write an instance file (large arrays into an ``.npz`` beside it); returns the path."""
    from siftopt.io.instance_file import save_instance

    return Path(save_instance(instance, path))


__all__ = ["InstanceLike", "evaluate", "generate", "load", "methods", "save", "solve",
           "verify"]
