"""Shared test helpers: an independent shortest-path reference (SciPy), not the oracle's A*."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

# Neighbour order of the documented canonical tie-break: up, left, down, right.
CANONICAL_ORDER = ((-1, 0), (0, -1), (1, 0), (0, 1))


def grid_graph(costs: np.ndarray, n: int) -> csr_matrix:
    """Directed 4-neighbour graph; the edge u->v weighs the cost of entering v."""
    rows, cols, weights = [], [], []
    r, c = np.divmod(np.arange(n * n), n)
    for dr, dc in CANONICAL_ORDER:
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n)
        u = np.flatnonzero(inside)
        v = rr[inside] * n + cc[inside]
        ok = np.isfinite(costs[u]) & np.isfinite(costs[v])
        rows.append(u[ok])
        cols.append(v[ok])
        weights.append(costs[v[ok]])
    return csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n, n * n))


def distances_from(costs: np.ndarray, n: int, start: int) -> np.ndarray:
    return dijkstra(grid_graph(np.asarray(costs, np.float64), n), indices=int(start))


def walk_back(costs, dist, n, start, end, order=CANONICAL_ORDER) -> np.ndarray:
    """Mask of the optimal path read backwards from ``end`` with the given neighbour order."""
    mask = np.zeros(n * n, bool)
    v = int(end)
    mask[v] = True
    while v != start:
        r, c = divmod(v, n)
        for dr, dc in order:
            rr, cc = r + dr, c + dc
            if 0 <= rr < n and 0 <= cc < n:
                u = rr * n + cc
                if np.isfinite(dist[u]) and dist[u] + costs[v] == dist[v]:
                    v = u
                    break
        else:
            raise AssertionError("no predecessor on an optimal path")
        mask[v] = True
    return mask


class Reference:
    distances_from = staticmethod(distances_from)
    walk_back = staticmethod(walk_back)
    canonical_order = CANONICAL_ORDER


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()
