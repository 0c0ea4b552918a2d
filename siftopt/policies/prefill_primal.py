"""Primal recovery of ``sift-prefill``: round the dual's fractional choice, then local search.

The state is one pool pattern per token (:mod:`siftopt.policies.prefill_pool`); the node loads
``n_m`` and the total degradation follow from it. Energies are the tables themselves
(``E_m(n)``, not their envelope), so the search is exact for any table, convex or not.

1. **Rounding.** Each class's tokens are split over its patterns in proportion to the dual's
   softmax weights (largest remainders).
2. **Repair.** While a load exceeds its cap, the move (one token to another of its class's
   patterns) that removes overload at the least energy per token removed is made; then,
   while the mean budget is exceeded, the moves that give back degradation at the least
   energy per unit (on large batches up to :data:`REPAIR_BATCH` tokens per step, until they
   cover the excess).
3. **Descent.** Moves that improve ``(energy, then total degradation)`` and keep every
   constraint are made, best first (several per round when they touch disjoint nodes and fit
   the mean slack together). When
   none is left, **exchanges** of two tokens are tried: a move that would save energy but
   breaks the mean budget or a cap, together with the best partner move of another token that
   makes the pair feasible (energies of the pair evaluated exactly). Then **ejection chains**:
   such a move followed by the repair of step 2 over the other tokens; or a move that gives
   back degradation at an energy cost, followed by the energy-saving moves of other tokens
   that the freed mean slack allows — each kept when the whole chain saves energy (under a
   mean budget one token often has to use a costly node so that several others can leave
   theirs, or the reverse). Every accepted step lowers ``(energy, total degradation)``
   lexicographically, so the search ends; chains stop after a budget of move evaluations
   (:data:`CHAIN_WORK`).

Units: energies in the unit of the node tables (:class:`~siftopt.policies.prefill_dual.
NodeTerms`), degradations dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siftopt.policies.prefill_dual import NodeTerms

#: Relative energy decrease a move must bring to be made (of the current total).
IMPROVE_RTOL = 1e-12
#: Moves of a token considered: its class's pool patterns of least reduced cost, at most this many.
MOVES_PER_TOKEN = 12
#: Infeasible-alone moves tried as the first half of an exchange, per round (and first moves
#: of chains: the most saving ones; of the degradation-freeing ones, the most per unit of
#: energy and the largest).
EXCHANGE_CANDIDATES = 24
#: Least decrease of the total degradation (relative to the mean limit) that counts as an
#: improvement at equal energy.
DEGRADATION_STEP = 1e-12
#: Moves (of distinct tokens) made per step when restoring the mean budget outside a chain,
#: in batches of more than REPAIR_BATCH_TOKENS tokens (smaller ones move one token a step:
#: the search's start matters more there than its time).
REPAIR_BATCH = 32
REPAIR_BATCH_TOKENS = 256
#: Improving moves scanned per round for a batch of independent ones.
BATCH_SCAN = 256
#: Rounds of the search (a safeguard; each round makes at least one move).
MAX_ROUNDS = 5000
#: Repair moves of one ejection chain, and the move evaluations (rows) after which no new
#: chain starts (chains are the expensive part; large batches rarely need them).
CHAIN_STEPS = 32
CHAIN_WORK = 2_000_000


@dataclass(frozen=True)
class Pool:
    """What the search needs of the pool: class of each pattern (sorted), its node
    incidence (0/1), degradation, and the (G + 1,) class offsets."""

    cls: np.ndarray
    inc: np.ndarray
    deg: np.ndarray
    start: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """The pattern of every token, the loads and total degradation they give, and whether
    they meet the caps and the mean limit."""

    pattern: np.ndarray  # (L,) pool index per token
    loads: np.ndarray  # (M,)
    degradation: float  # Σ_t D_t
    feasible: bool
    moves: int


def round_weights(pool: Pool, weights: np.ndarray, counts: np.ndarray,
                  token_class: np.ndarray) -> np.ndarray:
    """Per token a pool pattern: each class's count split over its patterns by largest
    remainders of ``count·weight``; tokens of a class take them in token order."""
    share = weights * counts[pool.cls]
    base = np.floor(share + 1e-9).astype(np.int64)
    missing = counts - np.add.reduceat(base, pool.start[:-1])
    order = np.lexsort((-(share - base), pool.cls))
    rank = np.arange(order.size) - pool.start[pool.cls[order]]
    base[order] += (rank < missing[pool.cls[order]]).astype(np.int64)
    chosen = np.repeat(np.arange(pool.cls.size), base)  # grouped by class
    out = np.empty(token_class.size, dtype=np.int64)
    out[np.argsort(token_class, kind="stable")] = chosen
    return out


class _Search:
    """Moves, marginals and the state of the local search."""

    def __init__(self, pool: Pool, nodes: NodeTerms, token_class: np.ndarray,
                 pattern: np.ndarray, mean_limit: float | None, candidates: np.ndarray
                 ) -> None:
        self.pool = pool
        width = max(t.size for t in nodes.tables)
        self.table = np.full((nodes.num_nodes, width), np.inf)
        for m, t in enumerate(nodes.tables):
            self.table[m, : t.size] = t
        self.caps = nodes.caps
        self.mean_limit = np.inf if mean_limit is None else mean_limit
        self.pattern = pattern.copy()
        incb = pool.inc.astype(np.int64)
        self.incb = incb
        self.loads = incb[pattern].sum(axis=0)
        self.total_d = float(pool.deg[pattern].sum())
        # moves: every token × its class's candidate patterns (grouped by token)
        per = np.diff(candidates.start)[token_class]
        self.move_token = np.repeat(np.arange(token_class.size), per)
        self.token_start = np.concatenate([[0], np.cumsum(per)]).astype(np.int64)
        offset = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
        self.move_pattern = candidates.index[candidates.start[token_class][self.move_token]
                                             + offset]
        # per move, cached: node changes, as 0/1 floats for the products, and D change
        self.delta = incb[self.move_pattern] - incb[self.pattern[self.move_token]]
        self.plus = (self.delta > 0).astype(float)
        self.minus = (self.delta < 0).astype(float)
        self.d_deg = pool.deg[self.move_pattern] - pool.deg[self.pattern[self.move_token]]
        self.moves = 0
        self.work = 0  # move evaluations so far (rows of the move table)

    def _refresh(self, token: int) -> None:
        """Recompute the cached rows of one token's moves (after its pattern changed)."""
        rows = slice(int(self.token_start[token]), int(self.token_start[token + 1]))
        now = int(self.pattern[token])
        self.delta[rows] = self.incb[self.move_pattern[rows]] - self.incb[now]
        self.plus[rows] = self.delta[rows] > 0
        self.minus[rows] = self.delta[rows] < 0
        self.d_deg[rows] = self.pool.deg[self.move_pattern[rows]] - self.pool.deg[now]

    def _set_rows(self, table: np.ndarray, tokens: set[int], value: float | bool) -> None:
        """Set the move rows of the given tokens to ``value`` (the rows of a token are
        contiguous: ``token_start``), as ``table[np.isin(move_token, tokens)] = value``."""
        for token in tokens:
            table[int(self.token_start[token]): int(self.token_start[token + 1])] = value

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, float, int]:
        return self.pattern.copy(), self.loads.copy(), self.total_d, self.moves

    def restore(self, saved: tuple[np.ndarray, np.ndarray, float, int]) -> None:
        pattern, loads, total_d, moves = saved
        changed = np.flatnonzero(pattern != self.pattern)
        self.pattern = pattern.copy()
        for token in changed.tolist():
            self._refresh(token)
        self.loads, self.total_d, self.moves = loads.copy(), total_d, moves

    def energy(self, loads: np.ndarray) -> float:
        width = self.table.shape[1]
        idx = np.minimum(loads, width - 1)
        values = self.table[np.arange(loads.size), idx]
        return float(np.where(loads < width, values, np.inf).sum())

    def marginals(self) -> tuple[np.ndarray, np.ndarray]:
        """Energy of one more and one less token per node (``up`` uses the table past the
        cap as the cap's last increment: such moves are marked blocked separately)."""
        m = np.arange(self.loads.size)
        n = self.loads
        width = self.table.shape[1]
        with np.errstate(invalid="ignore"):  # inf − inf past a cap: replaced below
            return self._marginals(m, n, width)

    def _marginals(self, m: np.ndarray, n: np.ndarray, width: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        here = self.table[m, np.minimum(n, width - 1)]
        above = self.table[m, np.minimum(n + 1, width - 1)]
        below = self.table[m, np.minimum(np.maximum(n - 1, 0), width - 1)]
        last = self.table[m, np.minimum(self.caps, width - 1)] - self.table[
            m, np.maximum(np.minimum(self.caps, width - 1) - 1, 0)]
        up = np.where(n + 1 <= self.caps, above - here, last)
        down = np.where(n >= 1, here - below, 0.0)
        up = np.where(np.isfinite(up), up, last)
        down = np.where(np.isfinite(down), down, last)
        return up, down

    def evaluate(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per move: node changes (−1/0/+1), energy change, degradation change, and whether a
        cap blocks it."""
        up, down = self.marginals()
        d_energy = self.plus @ up - self.minus @ down
        full = self.loads + 1 > self.caps
        # no node at its cap (the usual case): nothing is blocked, without the product
        blocked = (self.plus @ full.astype(float) > 0 if full.any()
                   else np.zeros(self.plus.shape[0], dtype=bool))
        return self.delta, d_energy, self.d_deg, blocked

    def apply(self, move: int, delta_row: np.ndarray, d_deg: float) -> None:
        token = int(self.move_token[move])
        self.pattern[token] = self.move_pattern[move]
        self.loads = self.loads + delta_row
        self.total_d += d_deg
        self.moves += 1
        self._refresh(token)

    # -- phases -------------------------------------------------------------------------------

    def violation(self) -> tuple[int, float]:
        """Tokens over the caps, and the degradation over the mean limit (≥ 0 each)."""
        over = int(np.maximum(self.loads - self.caps, 0).sum())
        return over, max(self.total_d - self.mean_limit, 0.0)

    def repair(self, frozen: set[int] | None = None, steps: int = MAX_ROUNDS,
               ceiling: float = np.inf) -> bool:
        """Lower the cap overload, then the mean excess, one move at a time: the move of a
        token not in ``frozen`` that removes a unit of violation at the least energy (a moved
        token joins ``frozen`` when it is given). Gives up once the energy passes
        ``ceiling``. Returns whether the state is feasible."""
        for _ in range(steps):
            over, excess = self.violation()
            if over == 0 and excess <= 0:
                return True
            if self.energy(self.loads) > ceiling:
                return False
            delta, d_energy, d_deg, _ = self.evaluate()
            self.work += delta.size
            new_over = np.maximum(self.loads[None, :] + delta - self.caps[None, :], 0).sum(1)
            gain_over = over - new_over
            if over:
                ok = gain_over > 0
                key = np.where(ok, d_energy / np.maximum(gain_over, 1), np.inf)
            else:
                ok = (gain_over >= 0) & (d_deg < 0)
                key = np.where(ok, d_energy / np.where(ok, np.minimum(-d_deg, excess), 1.0),
                               np.inf)
            if frozen:
                self._set_rows(key, frozen, np.inf)
            order = np.lexsort((d_deg, key))  # ties: the move that frees the most
            if not np.isfinite(key[order[0]]):
                return False
            if over or frozen is not None or self.move_token[-1] < REPAIR_BATCH_TOKENS:
                order = order[:1]  # caps, chains and small batches: one move at a time
            self._repair_batch(order, key, delta, d_deg, excess, frozen)
        return self.violation() == (0, 0.0)

    def _repair_batch(self, order: np.ndarray, key: np.ndarray, delta: np.ndarray,
                      d_deg: np.ndarray, excess: float, frozen: set[int] | None) -> None:
        """Make the moves of ``order`` (best first; distinct tokens, at most
        :data:`REPAIR_BATCH`) until they cover the mean ``excess``."""
        tokens: set[int] = set()
        freed = 0.0
        for move in order[:4 * REPAIR_BATCH].tolist():
            if not np.isfinite(key[move]) or len(tokens) >= REPAIR_BATCH:
                break
            token = int(self.move_token[move])
            if token in tokens:
                continue
            tokens.add(token)
            if frozen is not None:
                frozen.add(token)
            freed -= float(d_deg[move])
            self.apply(move, delta[move].copy(), float(d_deg[move]))
            if freed >= excess:
                break

    def _better(self, d_energy: np.ndarray, d_deg: np.ndarray, tol: float) -> np.ndarray:
        """Whether changes improve ``(energy, then total degradation)``: energy lower by more
        than ``tol``, or equal within it and degradation lower (under a mean budget only —
        slack a later move may use; the pair (E, ΣD) decreases, so the search ends)."""
        better = d_energy < -tol
        if np.isfinite(self.mean_limit):
            better |= (d_energy <= tol) & (d_deg < -DEGRADATION_STEP * max(
                1.0, abs(self.mean_limit)))
        return better

    def descend(self) -> None:
        """Improving single moves, several per round when independent; then exchanges of
        two tokens; then chains (one energy-saving move and the repair it needs)."""
        for _ in range(MAX_ROUNDS):
            total = self.energy(self.loads)
            tol = IMPROVE_RTOL * max(abs(total), 1e-300)
            delta, d_energy, d_deg, blocked = self.evaluate()
            self.work += delta.size
            slack = self.mean_limit - self.total_d
            ok = ~blocked & (d_deg <= slack) & self._better(d_energy, d_deg, tol)
            if ok.any():
                self._apply_batch(np.flatnonzero(ok), delta, d_energy, d_deg)
                continue
            if self._exchange(delta, d_energy, d_deg, blocked, slack, total, tol):
                continue
            if not self._chain(delta, d_energy, d_deg, blocked, slack, total, tol):
                return

    def _chain(self, delta: np.ndarray, d_energy: np.ndarray, d_deg: np.ndarray,
               blocked: np.ndarray, slack: float, total: float, tol: float) -> bool:
        """Ejection chains, kept if the whole chain lowers the energy, undone otherwise:

        * an energy-saving move that breaks a cap or the mean budget, then the repair
          (:meth:`repair`, its token frozen), then the energy-saving moves of other tokens
          that the slack left over allows (:meth:`_spend`);
        * a move that gives back degradation (at an energy cost), then the energy-saving
          moves of other tokens that the freed slack allows.

        Tried for the most promising first moves while the work budget lasts."""
        keep = EXCHANGE_CANDIDATES
        gain = np.flatnonzero((d_energy < -tol) & (blocked | (d_deg > slack)))
        gain = gain[np.argsort(d_energy[gain], kind="stable")[:keep]]
        pay = np.flatnonzero(~blocked & (d_deg < 0))
        if np.isfinite(self.mean_limit):
            ratio = -d_deg[pay] / np.maximum(d_energy[pay], tol)
            by_ratio = pay[np.argsort(-ratio, kind="stable")[:keep]]
            by_size = pay[np.argsort(d_deg[pay], kind="stable")[:keep]]
            pay = np.concatenate([by_ratio, by_size[~np.isin(by_size, by_ratio)]])
        else:
            pay = pay[:0]
        for kind, first in (("gain", gain), ("pay", pay)):
            for a in first.tolist():
                if self.work > CHAIN_WORK:
                    return False
                saved = self.snapshot()
                self.apply(a, delta[a].copy(), float(d_deg[a]))
                frozen = {int(self.move_token[a])}
                # a repair costing more than twice the first move's saving is given up
                ok = (self.repair(frozen, CHAIN_STEPS, total - 2.0 * float(d_energy[a]))
                      if kind == "gain" else True)
                if ok:
                    self._spend(frozen, CHAIN_STEPS)
                if ok and self.energy(self.loads) < total - tol:
                    return True
                self.restore(saved)
        return False

    def _spend(self, frozen: set[int], steps: int) -> bool:
        """Energy-saving moves of tokens not in ``frozen`` that keep every constraint, one at
        a time, the most energy saved per unit of mean slack used first (moves that use none
        before all; each moved token joins ``frozen``). Always feasible."""
        for _ in range(steps):
            delta, d_energy, d_deg, blocked = self.evaluate()
            self.work += delta.size
            ok = ~blocked & (d_deg <= self.mean_limit - self.total_d) & (d_energy < 0)
            self._set_rows(ok, frozen, False)
            if not ok.any():
                break
            # energy saved per unit of slack used (free moves first), then the most saved
            key = np.where(d_deg > 0, d_energy / np.maximum(d_deg, 1e-300), -np.inf)
            cand = np.flatnonzero(ok)
            best = int(cand[np.lexsort((d_energy[cand], key[cand]))[0]])
            frozen.add(int(self.move_token[best]))
            self.apply(best, delta[best].copy(), float(d_deg[best]))
        return True

    def _apply_batch(self, cand: np.ndarray, delta: np.ndarray, d_energy: np.ndarray,
                     d_deg: np.ndarray) -> None:
        """Make improving moves best first, skipping those that touch a node or token an
        earlier one did or that no longer fit the mean slack (the first is always made);
        at most :data:`BATCH_SCAN` are scanned. Nodes are tracked as bit sets: up to 64
        nodes as uint64 words, the next move found by one vectorised test of the rest (a
        batch usually makes one or two moves of the 256 it scans), else as Python ints."""
        cand = cand[np.argsort(d_energy[cand], kind="stable")][:BATCH_SCAN]
        if self.loads.size > 64:
            self._apply_batch_scan(cand, delta, d_deg)
            return
        every = (1 << self.loads.size) - 1
        if cand.size == 0 or every == 0:
            return
        sets = _node_words(delta[cand] != 0)
        token, dd = self.move_token[cand], d_deg[cand]
        touched = 0
        other = np.ones(cand.size, dtype=bool)  # of a token no move was made for
        slack = self.mean_limit - self.total_d
        i = 0
        while True:
            move, change = int(cand[i]), float(dd[i])
            touched |= int(sets[i])
            other &= token != token[i]
            slack -= change
            self.apply(move, delta[move].copy(), change)
            if touched == every:
                return
            rest = slice(i + 1, None)
            ok = (((sets[rest] & np.uint64(touched)) == 0) & ~(dd[rest] > slack)
                  & other[rest])
            following = np.flatnonzero(ok)
            if following.size == 0:
                return
            i += 1 + int(following[0])

    def _apply_batch_scan(self, cand: np.ndarray, delta: np.ndarray, d_deg: np.ndarray
                          ) -> None:
        """:meth:`_apply_batch` (``cand`` sorted) one candidate at a time, nodes as Python
        ints (any number of nodes)."""
        every = (1 << self.loads.size) - 1
        touched = 0
        tokens: set[int] = set()
        slack = self.mean_limit - self.total_d
        for i, (move, token, dd, changed) in enumerate(zip(
                cand.tolist(), self.move_token[cand].tolist(), d_deg[cand].tolist(),
                _node_sets(delta[cand] != 0), strict=True)):
            if touched == every:
                break
            if i and (touched & changed or token in tokens or dd > slack):
                continue
            touched |= changed
            tokens.add(token)
            slack -= dd
            self.apply(move, delta[move].copy(), dd)

    def _exchange(self, delta: np.ndarray, d_energy: np.ndarray, d_deg: np.ndarray,
                  blocked: np.ndarray, slack: float, total: float, tol: float) -> bool:
        """The best feasible pair (an energy-saving move infeasible alone, and a partner)."""
        first = np.flatnonzero((d_energy < -tol) & (blocked | (d_deg > slack)))
        if first.size == 0:
            return False
        first = first[np.argsort(d_energy[first], kind="stable")[:EXCHANGE_CANDIDATES]]
        nodes = np.arange(self.loads.size)
        width = self.table.shape[1]
        for a in first.tolist():
            joint = self.loads[None, :] + delta[a][None, :] + delta
            self.work += delta.size
            feasible = ((joint <= self.caps[None, :]).all(axis=1) & (joint >= 0).all(axis=1)
                        & (d_deg[a] + d_deg <= slack)
                        & (self.move_token != self.move_token[a]))
            idx = np.flatnonzero(feasible)
            if idx.size == 0:
                continue
            energy = self.table[nodes[None, :], np.minimum(joint[idx], width - 1)].sum(axis=1)
            change = energy - total
            key = np.where(change < -tol, change, np.where(change <= tol, 0.0, np.inf))
            k = int(np.lexsort((d_deg[idx], key))[0])  # least energy, then least degradation
            if self._better(np.array([change[k]]), np.array([d_deg[a] + d_deg[idx[k]]]),
                            tol)[0]:
                b = int(idx[k])
                self.apply(a, delta[a].copy(), float(d_deg[a]))
                self.apply(b, delta[b].copy(), float(d_deg[b]))
                return True
        return False


def _node_words(changed: np.ndarray) -> np.ndarray:
    """Per row of a (moves, M ≤ 64) bool array the set of its True columns as a uint64 word
    (bit m is column m)."""
    bits = np.left_shift(np.uint64(1), np.arange(changed.shape[1], dtype=np.uint64))
    return np.bitwise_or.reduce(np.where(changed, bits, np.uint64(0)), axis=1,
                                initial=np.uint64(0))


def _node_sets(changed: np.ndarray) -> list[int]:
    """Per row of a (moves, M) bool array the set of its True columns as a Python int (bit m
    is column m; in 64-bit words, so any M)."""
    words = [_node_words(changed[:, lo: lo + 64]).tolist()
             for lo in range(0, changed.shape[1], 64)]
    if not words:
        return [0] * changed.shape[0]
    if len(words) == 1:
        return words[0]
    return [sum(w << (64 * k) for k, w in enumerate(ws)) for ws in zip(*words, strict=True)]


@dataclass(frozen=True)
class Candidates:
    """Per class the pool patterns the search may move its tokens to (CSR: ``index``)."""

    index: np.ndarray
    start: np.ndarray


def candidates(pool: Pool, costs: np.ndarray, limit: int = MOVES_PER_TOKEN) -> Candidates:
    """Per class its pool patterns of least cost at the final prices, at most ``limit``."""
    order = np.lexsort((costs, pool.cls))
    rank = np.arange(order.size) - pool.start[pool.cls[order]]
    keep = order[rank < limit]
    keep = keep[np.argsort(pool.cls[keep], kind="stable")]
    start = np.searchsorted(pool.cls[keep], np.arange(pool.start.size)).astype(np.int64)
    return Candidates(index=keep, start=start)


def recover(pool: Pool, nodes: NodeTerms, token_class: np.ndarray, pattern: np.ndarray,
            mean_limit: float | None, moves: Candidates) -> Outcome:
    """Repair and descent (module docstring) from the token patterns ``pattern``;
    ``mean_limit`` bounds Σ_t D_t (None: no mean budget)."""
    search = _Search(pool, nodes, token_class, pattern, mean_limit, moves)
    search.repair()
    search.descend()
    feasible = bool((search.loads <= nodes.caps).all()
                    and search.total_d <= search.mean_limit)
    return Outcome(pattern=search.pattern, loads=search.loads, degradation=search.total_d,
                   feasible=feasible, moves=search.moves)


__all__ = ["CHAIN_STEPS", "CHAIN_WORK", "Candidates", "EXCHANGE_CANDIDATES", "IMPROVE_RTOL",
           "MAX_ROUNDS", "MOVES_PER_TOKEN", "Outcome", "Pool", "candidates", "recover",
           "round_weights"]
