"""Dense oracle fields: the cheapest route cost from the start to every cell, and from every cell to the end.

``from_start[v]``: the cheapest cost of a legal route from the start to v (entry costs of every cell
after the start, v included); ``to_end[v]``: the cheapest cost from v to the end (entry costs of the
cells after v, the end included). Both are +inf where no legal route exists, and on every cell the
vehicle may not enter.

A cell lies on some optimal route exactly when ``from_start[v] + to_end[v] == optimal_cost``; the
difference ``from_start[v] + to_end[v] - optimal_cost`` is the least extra cost of any route through v
(its detour). Costs are small integers, so these identities are exact in float32.

Each field is one Dijkstra over a bucket queue (integer costs, at most 12 per cell), one task per
loop iteration in fixed chunks: the output is a pure function of the inputs on any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from oracle.astar import INF, RING, make_workspace, neighbour
from oracle.spec import grid_side

_CHUNK = 32


@njit(cache=True)
def _spread(cost, n, source, backward, g, settled, heads, entry_cell, entry_next):
    """Dijkstra from ``source`` over cells with cost >= 0; fills g (INF = unreachable).

    Forward: stepping u -> v costs cost[v]. Backward (distances *to* the source): v -> u costs cost[u].
    """
    cells = n * n
    for v in range(cells):
        g[v] = INF
        settled[v] = 0
    if cost[source] < 0:
        return
    heads[:] = -1
    g[source] = 0
    entry_cell[0] = source
    entry_next[0] = -1
    heads[0] = 0
    entries = 1
    live = 1
    d = 0
    while live > 0:
        b = d & (RING - 1)
        e = heads[b]
        if e < 0:
            d += 1
            continue
        heads[b] = entry_next[e]
        live -= 1
        u = entry_cell[e]
        if settled[u] or g[u] != d:  # settled already, or a stale entry of a later improvement
            continue
        settled[u] = 1
        for k in range(4):
            v = neighbour(u, k, n)
            if v < 0:
                continue
            if cost[v] < 0 or settled[v]:
                continue
            nd = d + (cost[u] if backward else cost[v])
            if nd < g[v]:
                g[v] = nd
                slot = nd & (RING - 1)
                entry_cell[entries] = v
                entry_next[entries] = heads[slot]
                heads[slot] = entries
                entries += 1
                live += 1


@njit(cache=True, parallel=True)
def _fields_kernel(costs, starts, ends, n, from_start, to_end):
    count, cells = costs.shape
    for chunk in prange((count + _CHUNK - 1) // _CHUNK):
        cost = np.empty(cells, np.int32)
        g, settled, heads, entry_cell, entry_next = make_workspace(cells)
        for i in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            for v in range(cells):
                x = costs[i, v]
                cost[v] = np.int32(x) if np.isfinite(x) else -1
            for direction in range(2):
                source = starts[i] if direction == 0 else ends[i]
                _spread(cost, n, source, direction == 1, g, settled, heads, entry_cell, entry_next)
                out = from_start if direction == 0 else to_end
                for v in range(cells):
                    out[i, v] = np.float32(g[v]) if g[v] < INF else np.float32(np.inf)


def route_fields(costs: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(from_start, to_end)``, float32 [n, N*N] each, for tasks given by their entry costs and endpoints.

    ``costs``: float [n, N*N] entry costs (+inf where the vehicle may not go); ``start``/``end``: [n] flat indices.
    """
    costs = np.ascontiguousarray(costs, dtype=np.float32)
    if costs.ndim != 2:
        raise ValueError(f"costs must be [tasks, cells], got shape {costs.shape}")
    count, cells = costs.shape
    n = grid_side(cells)
    start = np.ascontiguousarray(start, dtype=np.int64)
    end = np.ascontiguousarray(end, dtype=np.int64)
    if start.shape != (count,) or end.shape != (count,):
        raise ValueError(f"need one start and one end per task ({count})")
    if count and ((start < 0).any() or (start >= cells).any() or (end < 0).any() or (end >= cells).any()):
        raise ValueError(f"start and end must be cells 0..{cells - 1}")
    from_start = np.empty((count, cells), np.float32)
    to_end = np.empty((count, cells), np.float32)
    if count:
        _fields_kernel(costs, start, end, n, from_start, to_end)
    return from_start, to_end


def on_optimal_route(from_start: np.ndarray, to_end: np.ndarray, optimal_cost: np.ndarray) -> np.ndarray:
    """bool [n, N*N]: the cells that lie on at least one optimal route."""
    return (from_start + to_end) == np.asarray(optimal_cost, np.float32)[:, None]


__all__ = ["on_optimal_route", "route_fields"]
