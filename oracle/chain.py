"""The most probable legal chain: a route read from per-cell path probabilities, not from the true costs.

Given, per cell, the model's probability p that the cell is on the route, the chain from start to end
through cells the vehicle may enter that maximises the product of p (minimises the sum of -log p) is
a shortest path with non-negative float weights: Dijkstra over a binary heap, one task per loop
iteration in fixed chunks (byte-identical on any thread count). The true entry costs are used only to
know which cells are legal, as the input shows them; never to rank routes. Ties go to the cell
settled first, which depends only on the weights.

For training targets, ``most_probable_optimal_routes`` runs the same search on the shortest-path DAG
of the true costs (the oracle's fields), so it returns the optimal route the model finds most probable.
"""

from __future__ import annotations

import heapq

import numpy as np
from numba import njit, prange

from oracle.astar import neighbour
from oracle.fields import on_optimal_route
from oracle.spec import grid_side

_CHUNK = 16


@njit(cache=True)
def _chain(weight, legal, n, start, end, dist, prev, done, out, cost, from_start, restrict):
    cells = n * n
    for v in range(cells):
        dist[v] = np.inf
        prev[v] = -1
        done[v] = 0
        out[v] = 0
    if not legal[start] or not legal[end]:
        return False
    dist[start] = weight[start]
    heap = [(weight[start], start)]
    while heap:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = 1
        if u == end:
            break
        for k in range(4):
            v = neighbour(u, k, n)
            if v < 0:
                continue
            if not legal[v] or done[v]:
                continue
            # Optimal routes only: every step must lie on the shortest-path DAG of the true costs (the
            # caller's mask holds the cells of optimal routes), so any start->end chain is an optimal route.
            if restrict and from_start[v] != from_start[u] + cost[v]:
                continue
            nd = d + weight[v]
            if nd < dist[v]:
                dist[v] = nd
                prev[v] = u
                heapq.heappush(heap, (nd, v))
    if not done[end]:
        return False
    v = end
    while v != -1:
        out[v] = 1
        v = prev[v]
    return True


@njit(cache=True, parallel=True)
def _chains_kernel(weights, legal, starts, ends, n, costs, from_start, restrict, out, found):
    count, cells = weights.shape
    for chunk in prange((count + _CHUNK - 1) // _CHUNK):
        dist = np.empty(cells, np.float64)
        prev = np.empty(cells, np.int64)
        done = np.empty(cells, np.uint8)
        for i in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            found[i] = _chain(
                weights[i], legal[i], n, starts[i], ends[i], dist, prev, done, out[i], costs[i], from_start[i], restrict
            )


def most_probable_chains(
    path_prob: np.ndarray, legal: np.ndarray, start: np.ndarray, end: np.ndarray, floor: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, found)``: per task the cells of the legal start->end chain with the largest product of
    ``path_prob`` (bool [n, N*N]), and whether a legal chain exists at all (bool [n]).

    ``path_prob``: float [n, N*N] probabilities (clipped below at ``floor``); ``legal``: bool [n, N*N].
    """
    path_prob = np.asarray(path_prob, np.float64)
    if path_prob.ndim != 2 or path_prob.shape != np.shape(legal):
        raise ValueError(f"path_prob {path_prob.shape} and legal {np.shape(legal)} must both be [tasks, cells]")
    count, cells = path_prob.shape
    n = grid_side(cells)
    weights = -np.log(np.clip(path_prob, floor, 1.0))
    return _run(weights, legal, start, end, n, np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32), False)


def most_probable_optimal_routes(
    path_prob: np.ndarray,
    costs: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    from_start: np.ndarray,
    to_end: np.ndarray,
    optimal_cost: np.ndarray,
    floor: float = 1e-12,
) -> np.ndarray:
    """bool [n, N*N]: per task the optimal route (by the true costs) with the largest product of ``path_prob``.

    Among the task's several optimal routes, the one the model already leans to: a training target that
    never asks the model to learn an arbitrary tie-break. ``from_start``/``to_end``: ``oracle.fields``.
    """
    path_prob = np.asarray(path_prob, np.float64)
    n = grid_side(path_prob.shape[1])
    on_optimal = on_optimal_route(from_start, to_end, optimal_cost)
    weights = -np.log(np.clip(path_prob, floor, 1.0))
    mask, found = _run(weights, on_optimal, start, end, n, costs, from_start, True)
    if not found.all():
        raise ValueError("a task has no optimal route inside its own optimal set: inconsistent fields")
    return mask


def _run(weights, legal, start, end, n, costs, from_start, restrict) -> tuple[np.ndarray, np.ndarray]:
    count, cells = weights.shape
    out = np.zeros((count, cells), np.uint8)
    found = np.zeros(count, np.bool_)
    if count:
        _chains_kernel(
            np.ascontiguousarray(weights),
            np.ascontiguousarray(legal, np.bool_),
            np.ascontiguousarray(start, np.int64),
            np.ascontiguousarray(end, np.int64),
            n,
            np.ascontiguousarray(costs, np.float32),
            np.ascontiguousarray(from_start, np.float32),
            restrict,
            out,
            found,
        )
    return out.astype(bool), found


__all__ = ["most_probable_chains", "most_probable_optimal_routes"]
