"""From chosen patterns back to actions, and from actions (a warm start) to kept patterns.

* :func:`assign_patterns`: integer amounts of (class, pattern) choices → one mask per token;
* :func:`options_for_patterns` / :func:`actions_for_patterns`: masks → the option of every
  slot that sends each token to exactly its pattern's nodes with exactly the pattern's
  degradation (the same per-slot values, summed in the same order, as the enumeration);
* :func:`pattern_of_actions`: an action set → per token a kept pattern at least as good.
"""

from __future__ import annotations

import numpy as np

from siftopt.formulations.space import PatternSpace, exact_use_table, mask_incidence
from siftopt.model.budgets import token_degradation

_ONE = np.uint64(1)


def assign_patterns(space: PatternSpace, pattern_class: np.ndarray, mask: np.ndarray,
                    amount: np.ndarray) -> np.ndarray:
    """One pattern mask per token from integer amounts of (class, mask) choices.

    The amounts of each class must sum to its count; tokens of a class take the patterns in
    the given order. Returns ``(L,)`` masks.
    """
    amount = np.rint(np.asarray(amount)).astype(np.int64)
    keep = amount > 0
    pattern_class, mask, amount = (np.asarray(pattern_class)[keep], np.asarray(mask)[keep],
                                   amount[keep])
    order = np.argsort(pattern_class, kind="stable")
    pattern_class, mask, amount = pattern_class[order], mask[order], amount[order]
    per_class = np.bincount(pattern_class, weights=amount, minlength=space.num_classes)
    if not np.array_equal(per_class.astype(np.int64), space.class_count):
        raise RuntimeError("pattern amounts do not add up to the token classes")
    chosen = np.repeat(mask, amount)  # grouped by class
    tokens = np.argsort(space.token_class, kind="stable")  # tokens grouped by class too
    out = np.empty(space.data.num_tokens, dtype=np.uint64)
    out[tokens] = chosen
    return out


def options_for_patterns(space: PatternSpace, token_mask: np.ndarray,
                         tokens: np.ndarray | None = None) -> np.ndarray:
    """Option indices that send each token to exactly the nodes of its pattern with the
    pattern's degradation: ``(L, K)``, or ``(len(tokens), K)`` for the given tokens only (then
    ``token_mask`` holds their masks, in the same order).

    Monotone classes: each slot takes its best option on ``C ∪ {0}`` (the local one on ties);
    since every node of a kept pattern owns a slot, every node is used. General classes: the
    exact-use DP restricted to the pattern's nodes, traced back.
    """
    data = space.data
    masks = np.asarray(token_mask, dtype=np.uint64)
    tokens = np.arange(data.num_tokens) if tokens is None else np.asarray(tokens, np.int64)
    cls = space.token_class[tokens]
    in_set = mask_incidence(masks, data.num_nodes)  # (T, M)
    remote = np.where(in_set[:, None, :], space.slots.remote[cls], np.inf)  # (T, K, M)
    node = np.argmin(remote, axis=2)
    best_remote = np.take_along_axis(remote, node[:, :, None], axis=2)[:, :, 0]
    use_remote = best_remote < space.slots.local[cls]
    opt = np.where(use_remote,
                   np.take_along_axis(space.slots.remote_opt[cls], node[:, :, None],
                                      axis=2)[:, :, 0],
                   space.slots.local_opt[cls])
    for i in np.flatnonzero(space.general_classes[cls]):
        opt[i] = _exact_use_options(space, int(cls[i]), int(masks[i]))
    return opt


def actions_for_patterns(space: PatternSpace, token_mask: np.ndarray,
                         tokens: np.ndarray | None = None) -> np.ndarray:
    """Targets (``(L, K)``, or one row per given token) of :func:`options_for_patterns`."""
    return space.data.opt_target[options_for_patterns(space, token_mask, tokens)]


def _exact_use_options(space: PatternSpace, g: int, mask: int) -> np.ndarray:
    """Option per slot of class g using exactly the nodes of ``mask`` (exact-use DP)."""
    nodes = np.array([m for m in range(1, space.data.num_nodes + 1) if mask >> (m - 1) & 1],
                     dtype=np.int64)
    values = space.slots.remote[g][:, nodes - 1]
    local = space.slots.local[g]
    f, choices = exact_use_table(values, local, with_choice=True)
    state = (1 << nodes.size) - 1
    if not np.isfinite(f[state]):
        raise RuntimeError("pattern cannot be served with exactly its nodes")
    r = nodes.size
    out = np.empty(local.size, dtype=np.int64)
    for k in range(local.size - 1, -1, -1):
        c = int(choices[k][state])
        if c < 0:
            out[k] = space.slots.local_opt[g, k]
            continue
        j = c % r
        out[k] = space.slots.remote_opt[g, k, nodes[j] - 1]
        if c >= r:
            state ^= 1 << j
    return out


def pattern_of_actions(space: PatternSpace, actions: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For an action set: per token a kept pattern at least as good for it, as (mask, D).

    The pattern is a subset of the token's sent set C that differs from it only by monotone
    nodes, with degradation at most the token's (mean row) or kept by the rule (no mean row).
    Monotone classes: drop nodes that own no slot one at a time (D unchanged), then, without
    a mean row, drop nodes while the pattern stays kept. General classes: the least-D such
    pattern. Tokens without one get mask 0 and D = inf.

    Degradations are sums in slot order throughout, so a pattern's D never exceeds the D of
    actions that use its nodes (per-slot values are at most theirs).
    """
    data = space.data
    inst = data.inst
    actions = np.asarray(actions, dtype=np.int64)
    skip = actions < 0
    safe = np.where(skip, 0, actions)
    node = np.where(skip, -1, inst.placement[safe])
    sent = np.zeros(inst.num_tokens, dtype=np.uint64)
    for k in range(inst.top_k):
        on = node[:, k] >= 1
        sent[on] |= _ONE << (node[on, k] - 1).astype(np.uint64)
    cost = np.where(skip, inst.beta[inst.topk_experts], inst.delta[inst.topk_experts, safe])
    cost = np.where(actions == inst.topk_experts, 0.0, cost)
    degradation = token_degradation(inst.topk_weights * cost)
    out_mask = np.zeros(inst.num_tokens, dtype=np.uint64)
    out_deg = np.full(inst.num_tokens, np.inf)
    g_cls, g_mask, g_deg = space.general_patterns
    non_mono = np.uint64(0)
    for m in np.flatnonzero(~space.monotone_nodes[1:]):
        non_mono |= _ONE << np.uint64(m)
    for t in range(inst.num_tokens):
        g = int(space.token_class[t])
        if space.general_classes[g]:
            ok = ((g_cls == g) & ((g_mask & ~sent[t]) == 0)
                  & ((g_mask & non_mono) == (sent[t] & non_mono)))
            if space.mean_row:
                ok &= g_deg <= degradation[t]
            if ok.any():
                i = np.flatnonzero(ok)[np.argmin(g_deg[ok])]
                out_mask[t], out_deg[t] = g_mask[i], g_deg[i]
            continue
        mask, deg = _shrink(space, g, int(sent[t]) & _relevant_mask(space, g))
        if space.fits(np.array([deg]), np.array([g]))[0]:
            out_mask[t], out_deg[t] = mask, deg
    return out_mask, out_deg


def _relevant_mask(space: PatternSpace, g: int) -> int:
    return sum(1 << int(m) for m in np.flatnonzero(space.relevant[g]))


def _shrink(space: PatternSpace, g: int, mask: int) -> tuple[int, float]:
    """A non-dominated pattern inside ``mask`` for monotone class g with D ≤ D(mask) (see
    :func:`pattern_of_actions`)."""
    remote, local = space.slots.remote[g], space.slots.local[g]

    def degradation(m: int) -> float:
        nodes = [i for i in range(remote.shape[1]) if m >> i & 1]
        best = np.minimum(local, remote[:, nodes].min(axis=1)) if nodes else local
        return float(token_degradation(best))

    def kept(m: int) -> bool:
        return bool(space.fits(np.array([degradation(m)]), np.array([g]))[0])

    def owners(m: int) -> int:
        nodes = [i for i in range(remote.shape[1]) if m >> i & 1]
        if not nodes:
            return 0
        vals = np.concatenate([local[:, None], remote[:, nodes]], axis=1)
        best = vals.min(axis=1, keepdims=True)
        unique = (vals == best).sum(axis=1) == 1
        arg = vals.argmin(axis=1)
        own = 0
        for k in np.flatnonzero(unique & (arg > 0)):
            own |= 1 << nodes[arg[k] - 1]
        return own

    while True:
        idle = mask & ~owners(mask)
        if not idle:
            break
        mask &= ~(idle & -idle)  # drop the lowest idle node
    if not space.mean_row:
        for i in range(remote.shape[1]):
            if mask >> i & 1 and kept(mask & ~(1 << i)):
                mask &= ~(1 << i)
    return mask, degradation(mask)


__all__ = ["actions_for_patterns", "assign_patterns", "options_for_patterns",
           "pattern_of_actions"]
