"""The reference path verifier: is a predicted set of cells a connected, legal, optimal route?

Definitions (per sample; ``mask`` marks the cells predicted as PATH):

- legal: every predicted cell is one the vehicle may enter (finite cost).
- connected: start and end are joined by a 4-connected chain of predicted cells the vehicle may
  enter (start and end must themselves be predicted).
- cost: the cheapest route inside those cells (sum of entry costs, start excluded); +inf when not
  connected.
- optimal: the predicted cells are exactly one optimal route. Any optimal route counts, not only
  the label: connected, legal, and the entry costs of all predicted cells but the start add up to
  the optimal cost. (The cheapest route inside already costs that much, and every cell costs >= 1,
  so no predicted cell can lie off that route.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from numba import njit, prange

from oracle.astar import make_workspace, solve
from oracle.spec import grid_side

_CHUNK = 64


@dataclass
class PathVerdict:
    """Per-sample verdicts; every array has one entry per sample."""

    connected: np.ndarray  # bool
    legal: np.ndarray  # bool
    cost: np.ndarray  # float64, +inf where not connected
    optimal: np.ndarray  # bool
    path_cells: np.ndarray  # int64, predicted cells
    legal_cells: np.ndarray  # int64, predicted cells the vehicle may enter


@njit(cache=True, parallel=True)
def _verify_kernel(cost, mask, starts, ends, n, route_cost, mask_cost, path_cells, legal_cells):
    count, cells = cost.shape
    for chunk in prange((count + _CHUNK - 1) // _CHUNK):
        inside = np.empty(cells, np.int32)
        g, settled, heads, entry_cell, entry_next = make_workspace(cells)
        for i in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            total = 0
            n_path = 0
            n_legal = 0
            for v in range(cells):
                inside[v] = -1
                if mask[i, v]:
                    n_path += 1
                    if cost[i, v] >= 0:
                        n_legal += 1
                        inside[v] = cost[i, v]
                        if v != starts[i]:
                            total += cost[i, v]
            path_cells[i] = n_path
            legal_cells[i] = n_legal
            mask_cost[i] = total
            route_cost[i] = solve(inside, n, starts[i], ends[i], g, settled, heads, entry_cell, entry_next)


@njit(cache=True, parallel=True)
def _optimal_kernel(cost, starts, ends, n, out):
    count, cells = cost.shape
    for chunk in prange((count + _CHUNK - 1) // _CHUNK):
        g, settled, heads, entry_cell, entry_next = make_workspace(cells)
        for i in range(chunk * _CHUNK, min(count, (chunk + 1) * _CHUNK)):
            out[i] = solve(cost[i], n, starts[i], ends[i], g, settled, heads, entry_cell, entry_next)


def _integer_costs(costs: np.ndarray) -> np.ndarray:
    costs = np.asarray(costs, dtype=np.float64)
    finite = np.isfinite(costs)
    if np.any(costs[finite] < 1) or np.any(costs[finite] != np.round(costs[finite])):
        raise ValueError("costs must be whole numbers >= 1 (or +inf where the vehicle may not go)")
    return np.where(finite, costs, -1).astype(np.int32)


def route_costs(allowed: np.ndarray, costs: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Cheapest route cost per sample using only ``allowed`` cells (float32, +inf where none)."""
    allowed = np.atleast_2d(allowed)
    costs = np.atleast_2d(costs)
    icost = np.where(allowed & np.isfinite(costs), costs, -1).astype(np.int32)
    out = np.empty(len(icost), np.int64)
    _optimal_kernel(icost, np.asarray(start, np.int64), np.asarray(end, np.int64), grid_side(icost.shape[1]), out)
    return np.where(out >= 0, out, np.inf).astype(np.float32)


def optimal_costs(costs: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Optimal route cost per sample (+inf where no route exists)."""
    icost = _integer_costs(np.atleast_2d(costs))
    out = np.empty(len(icost), np.int64)
    _optimal_kernel(icost, np.asarray(start, np.int64), np.asarray(end, np.int64), grid_side(icost.shape[1]), out)
    return np.where(out >= 0, out, np.inf).astype(np.float64)


def verify_paths(
    pred_mask: np.ndarray,
    costs: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    optimal_cost: Optional[np.ndarray] = None,
) -> PathVerdict:
    """Check predicted paths against the task; see the module docstring for the definitions.

    pred_mask: bool [n, N*N] predicted PATH cells; costs: float [n, N*N] entry costs (+inf where
    forbidden; ``oracle.vocab.costs_from_inputs`` recomputes them from input tokens); start/end:
    [n] flat indices; optimal_cost: [n], solved here when not given.
    """
    mask = np.atleast_2d(np.asarray(pred_mask)).astype(np.bool_)
    icost = _integer_costs(np.atleast_2d(costs))
    if mask.shape != icost.shape:
        raise ValueError(f"pred_mask shape {mask.shape} does not match costs shape {icost.shape}")
    start = np.asarray(start, np.int64).reshape(-1)
    end = np.asarray(end, np.int64).reshape(-1)
    count = len(mask)
    if len(start) != count or len(end) != count:
        raise ValueError(f"start/end need one entry per sample ({count})")
    route = np.empty(count, np.int64)
    mask_cost = np.empty(count, np.int64)
    path_cells = np.empty(count, np.int64)
    legal_cells = np.empty(count, np.int64)
    _verify_kernel(icost, mask, start, end, grid_side(icost.shape[1]), route, mask_cost, path_cells, legal_cells)
    if optimal_cost is None:
        optimal_cost = optimal_costs(costs, start, end)
    optimal_cost = np.asarray(optimal_cost, np.float64).reshape(-1)
    connected = route >= 0
    legal = legal_cells == path_cells
    return PathVerdict(
        connected=connected,
        legal=legal,
        cost=np.where(connected, route, np.inf).astype(np.float64),
        optimal=connected & legal & (mask_cost == optimal_cost),
        path_cells=path_cells,
        legal_cells=legal_cells,
    )
