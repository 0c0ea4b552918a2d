"""A decision: one action for every slot of an instance (docs/model.md §3.1).

Internally a decision is an ``(L, K)`` integer array of **targets**: ``targets[t, k]`` is the
expert that serves slot k of token t — the slot's own top-K expert (keep), another expert
(replace), or ``SKIP`` = −1 (skip). :class:`Decision` wraps that array with its instance so
that users never have to compare it with ``topk_experts`` themselves: ``action`` says
``keep``/``replace``/``skip``, ``target`` the replacement expert (−1 where there is none), and
:meth:`Decision.to_frame` gives one row per slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from siftopt.errors import InputError
from siftopt.model.instance import Instance

if TYPE_CHECKING:
    import pandas as pd

SKIP = -1


class Action(StrEnum):
    """What happens to one slot."""

    KEEP = "keep"
    REPLACE = "replace"
    SKIP = "skip"


@dataclass(frozen=True, eq=False)
class Decision:
    """The actions of every slot of ``instance``; ``targets``: ``(L, K)`` int64 (see module)."""

    instance: Instance
    targets: np.ndarray

    @classmethod
    def from_targets(cls, instance: Instance, targets: np.ndarray, *,
                     path: str = "decision") -> Decision:
        """A decision from an ``(L, K)`` integer array of served experts (−1 = skip)."""
        arr = np.asarray(targets)
        shape = instance.topk_experts.shape
        if arr.shape != shape:
            raise InputError(f"targets must have shape {shape} (tokens × top_k), got "
                             f"{arr.shape}", path=path)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"targets must be integers (expert ids, -1 = skip), got dtype "
                             f"{arr.dtype}", path=path)
        arr = arr.astype(np.int64)
        bad = (arr < SKIP) | (arr >= instance.num_experts)
        if bad.any():
            t, k = (int(x) for x in np.argwhere(bad)[0])
            raise InputError(f"target {int(arr[t, k])} is not an expert id in 0.."
                             f"{instance.num_experts - 1} or -1 (skip)", path=f"{path}[{t}][{k}]")
        arr.setflags(write=False)
        return cls(instance=instance, targets=arr)

    @classmethod
    def from_actions(cls, instance: Instance, action: np.ndarray, target: np.ndarray | None = None
                     ) -> Decision:
        """A decision from ``action``, an ``(L, K)`` array of ``"keep"``/``"replace"``/``"skip"``,
        and ``target``, an ``(L, K)`` integer array of replacement experts (−1 where the action
        is not a replacement; may be omitted when nothing is replaced). InputError names the
        first bad entry; whether a replacement is a candidate is checked by the evaluator."""
        act = np.asarray(action, dtype=object)
        shape = instance.topk_experts.shape
        if act.shape != shape:
            raise InputError(f"action must have shape {shape} (tokens × top_k), got "
                             f"{act.shape}", path="action")
        tgt = np.full(shape, SKIP, dtype=np.int64) if target is None else np.asarray(target)
        if tgt.shape != shape:
            raise InputError(f"target must have shape {shape}, got {tgt.shape}", path="target")
        known = {a.value for a in Action}
        out = np.array(instance.topk_experts, dtype=np.int64)
        for (t, k), value in np.ndenumerate(act):
            if value not in known:
                raise InputError(f"unknown action {value!r} (known: keep, replace, skip)",
                                 path=f"action[{t}][{k}]")
            j = int(tgt[t, k])
            if value == Action.REPLACE:
                if j == SKIP or j == out[t, k]:
                    raise InputError("a replacement needs a target expert other than the "
                                     "slot's own", path=f"target[{t}][{k}]")
                out[t, k] = j
            elif j != SKIP:
                raise InputError(f"target must be -1 where the action is {value!r}",
                                 path=f"target[{t}][{k}]")
            elif value == Action.SKIP:
                out[t, k] = SKIP
        return cls.from_targets(instance, out)

    # ---- views ---------------------------------------------------------------------------

    @property
    def action(self) -> np.ndarray:
        """``(L, K)`` array of ``"keep"``, ``"replace"``, ``"skip"``."""
        out = np.full(self.targets.shape, Action.REPLACE.value, dtype=object)
        out[self.targets == self.instance.topk_experts] = Action.KEEP.value
        out[self.targets == SKIP] = Action.SKIP.value
        return out

    @property
    def target(self) -> np.ndarray:
        """``(L, K)`` replacement experts, −1 where the slot is kept or skipped."""
        replaced = (self.targets != self.instance.topk_experts) & (self.targets != SKIP)
        return np.where(replaced, self.targets, SKIP)

    def to_frame(self) -> pd.DataFrame:
        """One row per slot: ``token, slot, expert, weight, action, target, node``.

        ``target`` is the replacement expert (<NA> unless replaced); ``node`` is the node that
        serves the slot (0 = source, <NA> for a skip)."""
        import pandas as pd

        inst = self.instance
        n_tokens, k = self.targets.shape
        served = self.targets.ravel()
        node = np.where(served == SKIP, -1, inst.placement[np.maximum(served, 0)])
        target = self.target.ravel()
        return pd.DataFrame({
            "token": np.repeat(np.arange(n_tokens), k),
            "slot": np.tile(np.arange(k), n_tokens),
            "expert": inst.topk_experts.ravel(),
            "weight": inst.topk_weights.ravel(),
            "action": pd.Categorical(self.action.ravel(), categories=[a.value for a in Action]),
            "target": pd.array([None if v == SKIP else int(v) for v in target], dtype="Int64"),
            "node": pd.array([None if v < 0 else int(v) for v in node], dtype="Int64"),
        })
