"""A* on a 4-connected grid with integer entry costs, and the canonical optimal path.

Costs: ``cost[v]`` is the integer cost of entering cell v (>= 1), or -1 where the vehicle may not
go. The start cell is free: a route's cost is the sum of ``cost`` over its cells except the start.

Heuristic: Manhattan distance × the cheapest entry cost on the grid. Every step costs at least
that much and changes the Manhattan distance by exactly one, so the heuristic is consistent
(hence admissible): cells leave the queue in non-decreasing f = g + h with their exact distance g.

The open list is a bucket queue (Dial): f values are integers and a relaxation raises f by at
most 2·max cost, so a ring of ``RING`` buckets holds every live f value. Stale entries are skipped.

Canonical tie-break (87% of tasks have several optimal paths, so the label must name one): the
search keeps expanding until every cell with f <= C* (the optimal cost) is settled, which settles
every cell of every optimal path with its exact distance g. The canonical path is then read
backwards from the end: at cell v, step to the first neighbour u in the order
up (row−1), left (col−1), down (row+1), right (col+1) that is settled and has
g[u] + cost[v] == g[v]. It depends only on the exact distances, not on the search order, so
any correct shortest-path solver that applies the same rule yields the same bytes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

INF = 1 << 30
RING = 32  # > 2 · max cell cost (12), a power of two for a cheap modulo
NO_ROUTE = -1


@njit(cache=True, inline="always")
def neighbour(u, k, n):
    """The k-th 4-neighbour of cell u on an n x n grid (0 up, 1 left, 2 down, 3 right), or -1 off the grid."""
    r, c = u // n, u % n
    if k == 0:
        return u - n if r > 0 else -1
    if k == 1:
        return u - 1 if c > 0 else -1
    if k == 2:
        return u + n if r < n - 1 else -1
    return u + 1 if c < n - 1 else -1


@njit(cache=True)
def make_workspace(cells: int) -> tuple[np.ndarray, ...]:
    """Buffers for ``solve`` on grids of up to ``cells`` cells (reused across tasks).

    Compiled, so the parallel kernels allocate one per work unit with it; callable from Python too.
    The entry arrays hold every push: each cell is pushed at most once per in-neighbour (4).
    """
    return (
        np.empty(cells, np.int32),  # g
        np.empty(cells, np.uint8),  # settled
        np.empty(RING, np.int32),  # bucket heads
        np.empty(4 * cells + 8, np.int32),  # entry -> cell
        np.empty(4 * cells + 8, np.int32),  # entry -> next entry in its bucket
    )


@njit(cache=True)
def solve(cost, n, start, end, g, settled, heads, entry_cell, entry_next):
    """Optimal route cost from ``start`` to ``end`` (NO_ROUTE if none); fills g and settled."""
    cells = n * n
    min_cost = INF
    for v in range(cells):
        g[v] = INF
        settled[v] = 0
        c = cost[v]
        if 0 <= c < min_cost:
            min_cost = c
    if cost[start] < 0 or cost[end] < 0:
        return NO_ROUTE
    heads[:] = -1
    er, ec = end // n, end % n

    g[start] = 0
    f0 = min_cost * (abs(start // n - er) + abs(start % n - ec))
    entry_cell[0] = start
    entry_next[0] = -1
    heads[f0 & (RING - 1)] = 0
    entries = 1
    live = 1
    f = f0
    best = INF
    while live > 0:
        b = f & (RING - 1)
        e = heads[b]
        if e < 0:
            f += 1
            continue
        heads[b] = entry_next[e]
        live -= 1
        u = entry_cell[e]
        if settled[u]:
            continue
        gu = g[u]
        hu = min_cost * (abs(u // n - er) + abs(u % n - ec))
        if gu + hu != f:  # stale entry: u was re-pushed with a smaller f
            continue
        if f > best:
            break  # every cell with f <= C* is settled
        settled[u] = 1
        if u == end:
            best = gu
        for k in range(4):
            v = neighbour(u, k, n)
            if v < 0:
                continue
            cv = cost[v]
            if cv < 0 or settled[v]:
                continue
            ng = gu + cv
            if ng < g[v]:
                g[v] = ng
                fv = ng + min_cost * (abs(v // n - er) + abs(v % n - ec))
                slot = fv & (RING - 1)
                entry_cell[entries] = v
                entry_next[entries] = heads[slot]
                heads[slot] = entries
                entries += 1
                live += 1
    return best if best < INF else NO_ROUTE


@njit(cache=True)
def mark_canonical_path(cost, n, start, end, g, settled, out, mark):
    """Write ``mark`` into ``out`` on every cell of the canonical path (after a successful solve).

    Returns the number of cells marked, start and end included.
    """
    v = end
    out[v] = mark
    length = 1
    while v != start:
        r, c = v // n, v % n
        need = g[v] - cost[v]
        if r > 0 and settled[v - n] and g[v - n] == need:
            v = v - n
        elif c > 0 and settled[v - 1] and g[v - 1] == need:
            v = v - 1
        elif r < n - 1 and settled[v + n] and g[v + n] == need:
            v = v + n
        elif c < n - 1 and settled[v + 1] and g[v + 1] == need:
            v = v + 1
        else:  # unreachable after a successful solve; never loop forever on bad input
            return -1
        out[v] = mark
        length += 1
    return length
