"""``sift-decode``: the exact subset rule for one token, applied token by token for L > 1.

For one token with budget ``b`` and non-negative node prices ``p_m`` (``E_m(1)`` for
``sift-decode``, the current marginal energies for ``sift-price``), the rule returns a set C of
remote nodes of least price ``Σ_{m∈C} p_m`` among those with
``D(C) = Σ_k min(base_k, min_{m∈C} A[k, m]) ≤ b``, where ``base_k`` is the slot's best option
without a remote node and ``A[k, m]`` its best option on node m (docs/policies.md §3). This is
"the first C in ascending price order that meets the budget"; ties in price go to the set of
least degradation, then to a fixed order of the sets. The slots then take their best option on
C ∪ {0} (or skip).

The search is exhaustive, vectorised over tokens, and skips only sets that cannot be optimal:

* nodes that improve no slot, nodes pricier than a greedy feasible set (an upper bound on the
  optimum), and dominated nodes (another node no pricier and no worse for any slot) are
  removed first;
* the remaining **relevant** nodes are decided one per level (priciest first); a partial set
  is dropped when its price exceeds the upper bound, when it cannot meet the budget even with
  every undecided node, or when the node just added improves none of its slots.

If more than :data:`MAX_DECODE_NODES` relevant nodes remain for a token, the policy refuses
(:class:`~siftopt.errors.PolicyRefusal`): the search is exponential in that number.

Mean budget: for L > 1 a mean budget that the per-token budgets do not imply is priced by a
multiplier λ — each token then minimises ``p(C) + λ·D(C)`` within its own budget — and λ is
searched by :func:`decode_with_mean`.

Load caps: for L > 1 the per-token choices may overload a node; :func:`_repair` then moves the
tokens that lose least by leaving it (see there). A token that cannot meet its budget even
with every reachable node keeps its least-degradation choice, which the evaluator then
reports as infeasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.errors import PolicyRefusal
from siftopt.model.instance import Instance
from siftopt.policies.common import (
    PolicyData,
    fits,
    mean_budget_binds,
    options_to_actions,
    policy_data,
    token_budgets,
)

#: Most relevant nodes (after pruning) of one token for which the exact search runs; its cost
#: is at most 2^MAX_DECODE_NODES partial sets of K degradations. Past it the policy refuses.
MAX_DECODE_NODES = 22
#: Partial sets processed at once (tokens are batched so that their worst cases fit).
MAX_LIVE_SETS = 1 << 22
#: Search of the mean-budget multiplier λ: growth factor of the bracketing, bisection steps
#: (geometric), and the relative bracket width at which the bisection stops.
LAMBDA_GROWTH = 4.0
LAMBDA_STEPS = 12
LAMBDA_RTOL = 1e-3
#: Doublings (and then bisection steps) of λ when the cap repair pushes the mean degradation
#: over its budget.
LAMBDA_REPAIR_TRIES = 4


@dataclass(frozen=True)
class Choices:
    """Decisions of a batch of rows (a row = a token with its own allowed nodes)."""

    options: np.ndarray  # (n, K) option indices
    used: np.ndarray  # (n, M + 1) bool: remote nodes used
    price: np.ndarray  # (n,) Σ p_m over the nodes used
    degradation: np.ndarray  # (n,)
    feasible: np.ndarray  # (n,) bool: degradation within the row's budget


def _within(value: np.ndarray, budget: np.ndarray) -> np.ndarray:
    return fits(value, budget)


def _rows(pd: PolicyData, tokens: np.ndarray, allowed: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of the given rows on allowed nodes: (row, k, node, degradation, option)."""
    starts, ends = pd.pair_start[tokens], pd.pair_start[tokens + 1]
    counts = ends - starts
    row = np.repeat(np.arange(tokens.size), counts)
    offsets = np.cumsum(counts) - counts
    idx = np.arange(int(counts.sum())) - np.repeat(offsets, counts) + np.repeat(starts, counts)
    node = pd.pair_node[idx]
    keep = allowed[row, node]
    idx, row, node = idx[keep], row[keep], node[keep]
    return row, pd.pair_k[idx], node, pd.pair_deg[idx], pd.pair_opt[idx]


def _greedy_sets(a: np.ndarray, base: np.ndarray, rel: np.ndarray, price: np.ndarray,
                 budget: np.ndarray) -> np.ndarray:
    """A feasible node set per row (rows must be feasible with every relevant node): add the
    node of largest degradation cut per unit price until the budget is met, then drop the
    priciest nodes that are not needed. Returns (n, M + 1) bool."""
    n, _, width = a.shape
    chosen = np.zeros((n, width), dtype=bool)
    current = base.copy()
    for _ in range(width):
        todo = np.flatnonzero(~_within(current.sum(axis=1), budget))
        if todo.size == 0:
            break
        cut = np.maximum(current[todo, :, None] - a[todo], 0.0).sum(axis=1)
        cut[~rel[todo] | chosen[todo]] = 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(price > 0, cut / price, np.where(cut > 0, np.inf, 0.0))
        pick = np.argmax(score, axis=1)
        chosen[todo, pick] |= cut[np.arange(todo.size), pick] > 0
        current[todo] = np.minimum(current[todo], a[todo, :, pick])
    for m in np.argsort(-price, kind="stable").tolist():
        rows = np.flatnonzero(chosen[:, m])
        if rows.size == 0:
            continue
        others = chosen[rows].copy()
        others[:, m] = False
        drop = _within(_set_degradation(a[rows], base[rows], others).sum(axis=1), budget[rows])
        chosen[rows[drop], m] = False
    return chosen


def _set_degradation(a: np.ndarray, base: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """Per-slot degradation (n, K) of each row's node set."""
    return np.minimum(np.where(sets[:, None, :], a, np.inf).min(axis=2), base)


def _lambda_local_search(a: np.ndarray, base: np.ndarray, rel: np.ndarray, price: np.ndarray,
                         budget: np.ndarray, chosen: np.ndarray, lam: float) -> np.ndarray:
    """Improve feasible sets for the objective ``price + λ·D``: add the node of largest
    objective decrease while there is one, then drop nodes whose removal lowers the
    objective and keeps the budget. Only an upper bound for the exact search."""
    chosen = chosen.copy()
    current = _set_degradation(a, base, chosen)
    for _ in range(price.size):
        gain = lam * np.maximum(current[:, :, None] - a, 0.0).sum(axis=1) - price[None, :]
        gain[~rel | chosen] = -np.inf
        pick = np.argmax(gain, axis=1)
        rows = np.flatnonzero(gain[np.arange(pick.size), pick] > 0)
        if rows.size == 0:
            break
        chosen[rows, pick[rows]] = True
        current[rows] = np.minimum(current[rows], a[rows, :, pick[rows]])
    for m in np.argsort(-price, kind="stable").tolist():
        rows = np.flatnonzero(chosen[:, m])
        if rows.size == 0:
            continue
        others = chosen[rows].copy()
        others[:, m] = False
        without = _set_degradation(a[rows], base[rows], others).sum(axis=1)
        with_m = _set_degradation(a[rows], base[rows], chosen[rows]).sum(axis=1)
        drop = _within(without, budget[rows]) & (lam * (without - with_m) < price[m])
        chosen[rows[drop], m] = False
    return chosen


def _undominated(a: np.ndarray, cand: np.ndarray, price: np.ndarray) -> np.ndarray:
    """``cand`` without the nodes that another candidate dominates (no pricier, no worse on
    every slot, and strictly better somewhere or of lower index)."""
    width = price.size
    le = np.all(a[:, :, :, None] <= a[:, :, None, :], axis=1)  # le[n, x, y]: x no worse than y
    lt = np.any(a[:, :, :, None] < a[:, :, None, :], axis=1)
    cheaper = price[:, None] <= price[None, :]
    strict = (price[:, None] < price[None, :]) | \
        (np.arange(width)[:, None] < np.arange(width)[None, :])
    dominates = le & cheaper & (lt | strict) & cand[:, :, None]
    dominates[:, np.arange(width), np.arange(width)] = False
    return cand & ~dominates.any(axis=1)


def _search(a: np.ndarray, base: np.ndarray, cand: np.ndarray, price: np.ndarray,
            budget: np.ndarray, upper: np.ndarray, lam: float) -> np.ndarray:
    """The exact best feasible subset of ``cand`` for every row — least ``price + λ·D`` (see
    the module docstring); rows must be feasible with their candidates, and ``upper`` bounds
    each row's optimum. Returns (n, M + 1) bool."""
    n, k, width = a.shape
    order = [int(m) for m in np.argsort(-price, kind="stable") if cand[:, m].any()]
    suffix = np.full((n, k, len(order) + 1), np.inf)
    for level in range(len(order) - 1, -1, -1):
        m = order[level]
        col = np.where(cand[:, m, None], a[:, :, m], np.inf)
        suffix[:, :, level] = np.minimum(suffix[:, :, level + 1], col)
    limit = upper * (1.0 + 1e-12)
    row = np.arange(n)
    deg = base.copy()
    cost = np.zeros(n)
    sets = np.zeros((n, width), dtype=bool)
    for level, m in enumerate(order):
        floor = np.minimum(deg, suffix[row, :, level]).sum(axis=1)
        reach = _within(floor, budget[row]) & (cost + lam * floor <= limit[row])
        if not reach.all():
            row, deg, cost, sets = row[reach], deg[reach], cost[reach], sets[reach]
        col = a[row, :, m]
        add = cand[row, m] & (cost + price[m] <= limit[row]) & np.any(col < deg, axis=1)
        if add.any():
            new_sets = sets[add]
            new_sets[:, m] = True
            row = np.concatenate((row, row[add]))
            deg = np.concatenate((deg, np.minimum(deg[add], col[add])))
            cost = np.concatenate((cost, cost[add] + price[m]))
            sets = np.concatenate((sets, new_sets))
    total = deg.sum(axis=1)
    ok = np.flatnonzero(_within(total, budget[row]))
    objective = cost[ok] + lam * total[ok]
    # least objective, then least degradation, then fewest nodes, then the lowest node ids
    node_key = (sets[ok] * (2.0 ** -np.arange(width))).sum(axis=1)
    pick = np.lexsort((-node_key, sets[ok].sum(axis=1), total[ok], objective, row[ok]))
    first = np.ones(pick.size, dtype=bool)
    first[1:] = row[ok][pick][1:] != row[ok][pick][:-1]
    best = ok[pick[first]]
    out = np.zeros((n, width), dtype=bool)
    out[row[best]] = sets[best]
    return out


def _batches(sizes: np.ndarray) -> list[np.ndarray]:
    """Split rows into batches whose worst-case number of partial sets fits MAX_LIVE_SETS."""
    batches, current, load = [], [], 0
    for r, size in enumerate(sizes.tolist()):
        worst = 1 << int(size)
        if current and load + worst > MAX_LIVE_SETS:
            batches.append(np.array(current))
            current, load = [], 0
        current.append(r)
        load += worst
    if current:
        batches.append(np.array(current))
    return batches


def decode_rows(pd: PolicyData, tokens: np.ndarray, prices: np.ndarray, budgets: np.ndarray,
                allowed: np.ndarray, lam: float = 0.0) -> Choices:
    """The exact subset rule for each row: token ``tokens[r]`` with allowed nodes
    ``allowed[r]`` (bool over 0..M) at non-negative ``prices`` (indexed by node 0..M);
    ``budgets`` is indexed by token. With ``lam > 0`` each row minimises
    ``price + lam·degradation`` within its budget instead of the price alone (the mean-budget
    multiplier of :func:`decode_with_mean`). Raises PolicyRefusal past MAX_DECODE_NODES."""
    inst = pd.inst
    tokens = np.asarray(tokens, dtype=np.int64)
    n, k, width = tokens.size, inst.top_k, inst.num_nodes + 1
    slots = tokens[:, None] * k + np.arange(k)
    base = pd.base_deg[slots]
    budget = budgets[tokens]
    p_row, p_k, p_node, p_deg, p_opt = _rows(pd, tokens, allowed)
    a = np.repeat(base[:, :, None], width, axis=2)
    a[p_row, p_k, p_node] = p_deg
    rel = np.zeros((n, width), dtype=bool)
    rel[p_row, p_node] = True
    used = np.zeros((n, width), dtype=bool)
    hopeless = ~_within(a.min(axis=2).sum(axis=1), budget)
    used[hopeless] = rel[hopeless]  # do the best we can: every useful node
    if lam > 0:
        search = np.flatnonzero(~hopeless & rel.any(axis=1))
    else:
        search = np.flatnonzero(~_within(base.sum(axis=1), budget) & ~hopeless)
    if search.size:
        used[search] = _exact_sets(a[search], base[search], rel[search], prices,
                                   budget[search], tokens[search], lam)
    return _assemble(pd, slots, base, (p_row, p_k, p_node, p_deg, p_opt), used, prices, budget)


def _exact_sets(a: np.ndarray, base: np.ndarray, rel: np.ndarray, price: np.ndarray,
                budget: np.ndarray, tokens: np.ndarray, lam: float) -> np.ndarray:
    """Prune (upper bound, dominance), check the size limit, then search batch by batch."""
    greedy = _greedy_sets(a, base, rel, price, budget)
    if lam > 0:
        greedy = _lambda_local_search(a, base, rel, price, budget, greedy, lam)
    upper = (greedy * price).sum(axis=1) + lam * _set_degradation(a, base, greedy).sum(axis=1)
    cand = rel & (price[None, :] <= upper[:, None] * (1.0 + 1e-12))
    cand = _undominated(a, cand, price)
    sizes = cand.sum(axis=1)
    if sizes.max() > MAX_DECODE_NODES:
        r = int(np.argmax(sizes))
        raise PolicyRefusal(
            f"token {int(tokens[r])} has {int(sizes[r])} relevant remote nodes after pruning, "
            f"more than the limit of {MAX_DECODE_NODES} of the exact subset search "
            f"(2^{int(sizes[r])} sets); use an exact backend (--method highs) or sift-ratio",
            path="--method")
    out = np.zeros_like(rel)
    for rows in _batches(sizes):
        out[rows] = _search(a[rows], base[rows], cand[rows], price, budget[rows], upper[rows],
                            lam)
    return out


def _assemble(pd: PolicyData, slots: np.ndarray, base: np.ndarray,
              pairs: tuple[np.ndarray, ...], used: np.ndarray, prices: np.ndarray,
              budget: np.ndarray) -> Choices:
    """Per slot the least-degradation option among its fallback and its pairs on the row's
    node set (ties: the lower option index)."""
    p_row, p_k, p_node, p_deg, p_opt = pairs
    options = pd.base_opt[slots].copy()
    best = base.copy()
    on = np.flatnonzero(used[p_row, p_node])
    if on.size:
        order = on[np.lexsort((p_opt[on], p_deg[on], p_k[on], p_row[on]))]
        first = np.ones(order.size, dtype=bool)
        key = p_row[order] * slots.shape[1] + p_k[order]
        first[1:] = key[1:] != key[:-1]
        win = order[first]
        options[p_row[win], p_k[win]] = p_opt[win]
        best[p_row[win], p_k[win]] = p_deg[win]
    node = pd.data.opt_node[options]
    actual = np.zeros_like(used)
    rows = np.repeat(np.arange(slots.shape[0]), slots.shape[1])
    remote = node.reshape(-1) >= 1
    actual[rows[remote], node.reshape(-1)[remote]] = True
    degradation = best.sum(axis=1)
    return Choices(options=options, used=actual, price=(actual * prices).sum(axis=1),
                   degradation=degradation, feasible=_within(degradation, budget))


def decode_all(pd: PolicyData, prices: np.ndarray, budgets: np.ndarray, lam: float = 0.0
               ) -> tuple[Choices, bool]:
    """Every token's exact choice at the given node prices (clamped at 0), then the cap
    repair. Returns the choices (one row per token) and whether a repair was needed."""
    prices = np.maximum(np.asarray(prices, dtype=float), 0.0)
    n_tokens, width = pd.inst.num_tokens, pd.inst.num_nodes + 1
    allowed = np.ones((n_tokens, width), dtype=bool)
    choices = decode_rows(pd, np.arange(n_tokens), prices, budgets, allowed, lam)
    return _repair(pd, prices, budgets, allowed, choices, lam)


def _replace_rows(choices: Choices, rows: np.ndarray, new: Choices, pick: np.ndarray) -> None:
    for name in ("options", "used", "price", "degradation", "feasible"):
        getattr(choices, name)[rows] = getattr(new, name)[pick]


def _repair(pd: PolicyData, prices: np.ndarray, budgets: np.ndarray, allowed: np.ndarray,
            choices: Choices, lam: float) -> tuple[Choices, bool]:
    """Move tokens off overloaded nodes, least regret first; edits ``choices`` in place.

    In each round, for every overloaded node m in turn, each of its users t (not yet moved
    this round) gets its alternative: its exact choice with m banned, and also every node that
    is full and not used by t (so that moving does not overload another node). The
    ``load − cap`` users of least regret (increase of price + λ·degradation; a token that
    misses its budget anyway
    gives way first, one whose alternative would miss its budget last; ties: lower token
    first) move to their alternative and keep those bans. Bans are permanent and every round
    adds one, so the repair ends after at most L·M rounds.
    """
    caps = pd.data.caps
    repaired = False
    while True:
        loads = choices.used.sum(axis=0)
        over = np.flatnonzero(loads > caps)
        if over.size == 0:
            return choices, repaired
        repaired = True
        full = loads >= caps
        moved = np.zeros(pd.inst.num_tokens, dtype=bool)
        for m in over.tolist():
            users = np.flatnonzero(choices.used[:, m] & ~moved)
            masks = allowed[users] & ~full[None, :]
            masks |= choices.used[users]
            masks[:, m] = False
            alt = decode_rows(pd, users, prices, budgets, masks, lam)
            current = choices.price[users] + lam * choices.degradation[users]
            regret = np.where(alt.feasible, alt.price + lam * alt.degradation - current, np.inf)
            regret = np.where(choices.feasible[users], regret, -np.inf)
            rank = np.lexsort((users, regret))[:int(loads[m] - caps[m])]
            movers = users[rank]
            allowed[movers] = masks[rank]
            moved[movers] = True
            _replace_rows(choices, movers, alt, rank)
            loads = choices.used.sum(axis=0)
            full = loads >= caps


def unit_prices(pd: PolicyData) -> np.ndarray:
    """``E_m(1)`` per node (index 0..M; 0 for the source and unreachable nodes)."""
    prices = np.zeros(pd.inst.num_nodes + 1)
    for table in pd.data.tables:
        if table.cap >= 1:
            prices[table.node] = float(table.energy_j[1])
    return prices


@dataclass(frozen=True)
class Decoded:
    """Per-token choices for a whole batch that account for every accuracy constraint."""

    choices: Choices
    repaired: bool  # the cap repair was needed
    lam: float  # multiplier of the mean budget (0 when it does not bind)


def _mean_ok(pd: PolicyData, choices: Choices) -> bool:
    return pd.data.budgets.mean_ok(choices.degradation)


def _lambda_scale(pd: PolicyData, prices: np.ndarray) -> float:
    """A first multiplier: the largest price per unit of the largest slot fallback."""
    top = float(pd.base_deg.max()) if pd.base_deg.size else 0.0
    return max(float(prices.max()), 1e-300) / max(top, 1e-300)


def decode_with_mean(pd: PolicyData, prices: np.ndarray, lam_hint: float | None = None,
                     steps: int = LAMBDA_STEPS) -> Decoded:
    """Every token's exact choice at ``prices`` with every accuracy constraint met.

    Per-token budgets are hard. A binding mean budget is priced: each token minimises
    ``price + λ·D_t`` (:func:`decode_rows`). λ is searched on the per-token choices before
    the cap repair, where the total degradation is non-increasing in λ: λ = 0 first, then
    growing by LAMBDA_GROWTH from ``lam_hint`` (or a scale) until the mean budget is met, then
    a geometric bisection of ``steps`` steps for the smallest such λ. The cap repair follows;
    should it push the mean over the budget, λ grows on the repaired choices (×2 for
    LAMBDA_REPAIR_TRIES times, then ×16) and is bisected back (LAMBDA_REPAIR_TRIES steps). If
    no λ meets the mean budget, the choices of the largest one tried are returned (infeasible).
    """
    inst = pd.inst
    budgets = token_budgets(inst)
    choices, repaired = decode_all(pd, prices, budgets)
    if not mean_budget_binds(inst) or _mean_ok(pd, choices):
        return Decoded(choices, repaired, 0.0)
    prices = np.maximum(np.asarray(prices, dtype=float), 0.0)
    tokens = np.arange(inst.num_tokens)
    allowed = np.ones((inst.num_tokens, inst.num_nodes + 1), dtype=bool)

    def meets(lam: float) -> bool:
        return _mean_ok(pd, decode_rows(pd, tokens, prices, budgets, allowed, lam))

    low, high = 0.0, (lam_hint if lam_hint else _lambda_scale(pd, prices))
    for _ in range(64):
        if meets(high):
            break
        low, high = high, high * LAMBDA_GROWTH
    for _ in range(steps):
        if low > 0 and high <= low * (1.0 + LAMBDA_RTOL):
            break
        mid = high / LAMBDA_GROWTH if low == 0 else float(np.sqrt(low * high))
        if meets(mid):
            high = mid
        else:
            low = mid
    choices, repaired = decode_all(pd, prices, budgets, high)
    if _mean_ok(pd, choices) or not repaired:
        return Decoded(choices, repaired, high)
    # The repair pushed the mean over: grow λ on the repaired choices, then bisect back.
    failed, best = high, None
    for attempt in range(64):
        high *= 2.0 if attempt < LAMBDA_REPAIR_TRIES else LAMBDA_GROWTH ** 2
        choices, repaired = decode_all(pd, prices, budgets, high)
        if _mean_ok(pd, choices):
            best = Decoded(choices, repaired, high)
            break
        failed = high
    if best is None:
        return Decoded(choices, repaired, high)
    for _ in range(LAMBDA_REPAIR_TRIES):
        mid = float(np.sqrt(failed * best.lam))
        choices, repaired = decode_all(pd, prices, budgets, mid)
        if _mean_ok(pd, choices):
            best = Decoded(choices, repaired, mid)
        else:
            failed = mid
    return best


def sift_decode(inst: Instance) -> np.ndarray:
    """``sift-decode`` (docs/model.md §6, docs/policies.md §3): the exact subset rule at prices
    ``E_m(1)`` for every token, a binding mean budget priced by a multiplier, and the greedy
    repair when load caps bind."""
    pd = policy_data(inst)
    decoded = decode_with_mean(pd, unit_prices(pd))
    return options_to_actions(pd.data, decoded.choices.options.reshape(-1))
