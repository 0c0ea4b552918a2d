"""The compiled depth-first search behind ``enumerate.enumerate_patterns``.

The same enumeration as the level-wise numpy search of :mod:`siftopt.formulations.enumerate`
(its module docstring states the rules), compiled with numba and run depth first, one class
row at a time:

* a set's extensions by bit ``b`` are tried in increasing ``b``; before each, the set is
  pruned with the bounds of the numpy search taken at ``nxt = b`` (per-slot suffix minima for
  ``D``, the price bound). Both only grow with ``b``, so the first failing bit ends the set;
  the price bound plus bit ``b``'s own price (every set below the extension by ``b`` pays it;
  not monotone in ``b``) only skips ``b``. A skipped subtree holds no pattern at or below the
  threshold, so it neither emits nor tightens: the same patterns in the same order;
* with ``tighten`` a class's threshold drops to each accepted reduced cost at once, so later
  branches of the same class are pruned against the best pattern found so far (the numpy
  search tightens once per batch). Without ``tighten`` the two searches return the same
  patterns; with it both return every pattern of least reduced cost of each class (and the
  numpy search may return more patterns above that least cost);
* every floating-point value is computed as in the numpy search — ``D`` summed over slots
  left to right (:func:`~siftopt.model.budgets.token_degradation`), the budget rule
  ``D − ε ≤ TOL`` and ``D ≤ room`` (:func:`~siftopt.formulations.space.fits`), price sums
  in increasing bit order — so both searches decide every set alike.

The search works on ``chunk`` rows per call, so that the caller can check its deadline and
the pattern limit between calls. Arrays are passed as they are stored in the
:class:`~siftopt.formulations.space.PatternSpace`; local masks are int64 bit sets over a
row's relevant nodes (bit j = ``node_of_bit[row, j]``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from siftopt.model.budgets import TOL

#: Status codes of :func:`grow_rows`.
DONE = 0
OVER_LIMIT = 1


@njit(cache=True, inline="always")
def _degradation(vals: np.ndarray) -> float:
    """``Σ_k vals[k]`` left to right (token_degradation's order)."""
    total = vals[0]
    for k in range(1, vals.size):
        total += vals[k]
    return total


@njit(cache=True, inline="always")
def _fits(d: float, eps: float, room: float) -> bool:
    return (d - eps) <= TOL and d <= room


@njit(cache=True)
def grow_rows(lo: int, hi: int, values: np.ndarray, suffix: np.ndarray, local: np.ndarray,
              nbits: np.ndarray, eps: np.ndarray, room: np.ndarray, token_mode: bool,
              priced: bool, bit_price: np.ndarray, neg_suffix: np.ndarray, nu: float,
              dual: np.ndarray, threshold: np.ndarray, tighten: bool, limit: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The kept non-dominated patterns of rows ``lo..hi−1`` as ``(row, local mask, D)`` and a
    status (:data:`OVER_LIMIT` once more than ``limit`` patterns were found; the arrays are
    then incomplete). ``eps``, ``room``, ``dual``, ``threshold`` are per row (``threshold``
    is tightened in place); with ``priced`` false the price arguments are ignored."""
    k_slots = values.shape[2]
    r_max = values.shape[1]
    out_row = np.empty(1024, np.int64)
    out_mask = np.empty(1024, np.int64)
    out_deg = np.empty(1024, np.float64)
    n_out = 0
    depth_max = min(r_max, k_slots) + 2
    st_mask = np.zeros(depth_max, np.int64)
    st_next = np.zeros(depth_max, np.int64)
    st_price = np.zeros(depth_max, np.float64)
    st_best = np.empty((depth_max, k_slots), np.float64)
    st_second = np.empty((depth_max, k_slots), np.float64)
    st_owner = np.empty((depth_max, k_slots), np.int64)
    tmp = np.empty(k_slots, np.float64)
    child_best = np.empty(k_slots, np.float64)
    child_second = np.empty(k_slots, np.float64)
    child_owner = np.empty(k_slots, np.int64)
    for row in range(lo, hi):
        e, rm = eps[row], room[row]
        nb = nbits[row]
        for k in range(k_slots):
            st_best[0, k] = local[row, k]
            st_second[0, k] = np.inf
            st_owner[0, k] = -1
        st_mask[0] = 0
        st_next[0] = 0
        st_price[0] = 0.0
        d = _degradation(st_best[0])
        fit = _fits(d, e, rm)
        if fit and (not priced or _accept(nu * d - dual[row], row, threshold, tighten)):
            out_row, out_mask, out_deg = _room(out_row, out_mask, out_deg, n_out)
            out_row[n_out] = row
            out_mask[n_out] = 0
            out_deg[n_out] = d
            n_out += 1
        if token_mode and fit:
            continue
        depth = 0
        while depth >= 0:
            b = st_next[depth]
            if b >= nb:
                depth -= 1
                continue
            # prune: no extension by bits ≥ b can be kept (or priced below the threshold)
            for k in range(k_slots):
                tmp[k] = min(st_best[depth, k], suffix[row, b, k])
            lower_d = _degradation(tmp)
            alive = _fits(lower_d, e, rm)
            if alive and priced:
                bound = (st_price[depth] + neg_suffix[row, b] + nu * lower_d - dual[row])
                alive = bound <= threshold[row]
            if not alive:
                depth -= 1
                continue
            st_next[depth] = b + 1
            # the extension by b and every set below it also pay bit b's price: skip b when
            # that bound fails (it is not monotone in b), and the bits after it while it
            # fails with this lower_d (at most theirs: the suffix minima only grow); the
            # loop then checks the first bit left with its own. Only where no later bit has a
            # negative price, so that the bound is summed like the sets' reduced costs and
            # float rounding cannot lift it above one of them
            if priced:
                skip = b
                while skip < nb and bit_price[row, skip] > 0.0 and \
                        neg_suffix[row, skip + 1] == 0.0 and (
                        (st_price[depth] + bit_price[row, skip]) + nu * lower_d - dual[row]
                        > threshold[row]):
                    skip += 1
                if skip > b:
                    st_next[depth] = skip
                    continue
            # the extension by bit b
            mask = st_mask[depth] | (np.int64(1) << b)
            owned = np.int64(0)
            for k in range(k_slots):
                v = values[row, b, k]
                best = st_best[depth, k]
                owner = st_owner[depth, k]
                if token_mode:
                    prev = st_second[depth, k]
                    if v < best:
                        child_second[k] = best
                    elif v == best or v < prev:
                        child_second[k] = v
                    else:
                        child_second[k] = prev
                if v < best:
                    child_best[k] = v
                    child_owner[k] = b
                elif v == best:
                    child_best[k] = best
                    child_owner[k] = -1
                else:
                    child_best[k] = best
                    child_owner[k] = owner
                if child_owner[k] >= 0:
                    owned |= np.int64(1) << child_owner[k]
            if owned != mask:  # some node owns no slot: dominated, and so are supersets
                continue
            price = st_price[depth]
            if priced:
                price = price + bit_price[row, b]
            d = _degradation(child_best)
            fit = _fits(d, e, rm)
            emit = fit
            if token_mode and fit:
                # no kept one-node-smaller subset (then no kept proper subset at all)
                for j in range(b + 1):
                    if (mask >> j) & 1:
                        for k in range(k_slots):
                            tmp[k] = child_second[k] if child_owner[k] == j else child_best[k]
                        if _fits(_degradation(tmp), e, rm):
                            emit = False
                            break
            if emit and priced:
                emit = _accept(price + nu * d - dual[row], row, threshold, tighten)
            if emit:
                out_row, out_mask, out_deg = _room(out_row, out_mask, out_deg, n_out)
                out_row[n_out] = row
                out_mask[n_out] = mask
                out_deg[n_out] = d
                n_out += 1
                if n_out > limit:
                    return out_row[:n_out], out_mask[:n_out], out_deg[:n_out], OVER_LIMIT
            if (token_mode and fit) or b + 1 >= nb:
                continue
            depth += 1
            st_mask[depth] = mask
            st_next[depth] = b + 1
            st_price[depth] = price
            for k in range(k_slots):
                st_best[depth, k] = child_best[k]
                st_second[depth, k] = child_second[k] if token_mode else np.inf
                st_owner[depth, k] = child_owner[k]
    return out_row[:n_out], out_mask[:n_out], out_deg[:n_out], DONE


@njit(cache=True, inline="always")
def _accept(rc: float, row: int, threshold: np.ndarray, tighten: bool) -> bool:
    """Whether a reduced cost passes its row's threshold (tightened to it first if asked)."""
    if tighten and rc < threshold[row]:
        threshold[row] = rc
    return rc <= threshold[row]


@njit(cache=True)
def _room(out_row: np.ndarray, out_mask: np.ndarray, out_deg: np.ndarray, used: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The output arrays, doubled when all ``used`` entries are taken."""
    if used < out_row.size:
        return out_row, out_mask, out_deg
    size = 2 * out_row.size
    row, mask, deg = np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size)
    row[:used], mask[:used], deg[:used] = out_row, out_mask, out_deg
    return row, mask, deg


@njit(cache=True)
def rows_to_global(row: np.ndarray, local_mask: np.ndarray, node_of_bit: np.ndarray
                   ) -> np.ndarray:
    """Local masks (int64, bit j = node ``node_of_bit[row, j]``) as masks over all remote
    nodes (uint64, bit m−1 = node m): ``enumerate._rows_to_global``, compiled."""
    out = np.zeros(row.size, np.uint64)
    one = np.uint64(1)
    for i in range(row.size):
        local = local_mask[i]
        total = np.uint64(0)
        j = 0
        while local != 0:
            if local & 1:
                total |= one << np.uint64(node_of_bit[row[i], j] - 1)
            local >>= 1
            j += 1
        out[i] = total
    return out


__all__ = ["DONE", "OVER_LIMIT", "grow_rows", "rows_to_global"]
