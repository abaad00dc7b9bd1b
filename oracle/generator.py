"""Batch task generation: random city, traffic, vehicle, endpoints, then the A* label.

``generate_tasks(spec, count, seed)`` runs one Numba kernel that splits the batch into fixed
chunks across threads (prange). Every task seeds its own random stream from (seed, index), and
the chunking does not depend on the thread count, so the output is byte-identical on 1 or N
threads. A draw with no legal route is redrawn (new city, traffic and endpoints; the vehicle is
kept so the vehicle mix is exact), never relaxed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from oracle.astar import make_workspace, mark_canonical_path, solve
from oracle.city import draw_city, draw_traffic
from oracle.fields import route_fields
from oracle.rng import randint, seed_stream, uniform
from oracle.spec import TaskSpec
from oracle.vocab import (
    ACCESS,
    BASE_COST,
    CLOSED,
    END_TOKEN_BASE,
    JAM,
    JAM_MULTIPLIER,
    OBSTACLE,
    OBSTACLE_TOKEN,
    PATH,
    ROAD_TOKEN_BASE,
    START_TOKEN_BASE,
)

CHUNK = 32  # tasks per work unit: fixed, so results never depend on the thread count
MAX_ATTEMPTS = 1000


@dataclass
class TaskBatch:
    """A batch of routing tasks on one N×N grid; every array is indexed by task first."""

    size: int
    inputs: np.ndarray  # uint8 [n, N*N] tokens
    labels: np.ndarray  # uint8 [n, N*N] input with the canonical path set to PATH
    costs: np.ndarray  # float32 [n, N*N] entry cost for the task's vehicle, +inf where forbidden
    start: np.ndarray  # int32 [n] flat index
    end: np.ndarray  # int32 [n] flat index
    vehicle: np.ndarray  # uint8 [n] 0 bike, 1 car, 2 van, 3 truck
    optimal_cost: np.ndarray  # float32 [n]
    hour: np.ndarray  # uint8 [n] hour of day the traffic was drawn for

    def __len__(self) -> int:
        return len(self.inputs)

    def route_fields(self) -> tuple[np.ndarray, np.ndarray]:
        """``(from_start, to_end)``: the cheapest route cost from the start to every cell and from every
        cell to the end, float32 [n, N*N], +inf where unreachable (see ``oracle.fields``)."""
        return route_fields(self.costs, self.start, self.end)


@njit(cache=True)
def _build_costs(terrain, traffic, vehicle, cost, enterable):
    """Integer entry costs for ``vehicle`` (-1 = forbidden); returns the number of enterable cells."""
    m = 0
    for cell in range(terrain.shape[0]):
        t = terrain[cell]
        if t == OBSTACLE or traffic[cell] == CLOSED or not ACCESS[vehicle, t]:
            cost[cell] = -1
        else:
            c = BASE_COST[t]
            if traffic[cell] == JAM:
                c *= JAM_MULTIPLIER[vehicle]
            cost[cell] = c
            enterable[m] = cell
            m += 1
    return m


@njit(cache=True)
def _draw_endpoints(st, n, dmin, dmax, enterable, m):
    """Uniform start among enterable cells, uniform end among those within the distance range."""
    s = enterable[randint(st, m)]
    sr, sc = s // n, s % n
    k = 0
    for j in range(m):
        e = enterable[j]
        d = abs(e // n - sr) + abs(e % n - sc)
        if dmin <= d <= dmax:
            k += 1
    if k == 0:
        return s, -1
    pick = randint(st, k)
    for j in range(m):
        e = enterable[j]
        d = abs(e // n - sr) + abs(e % n - sc)
        if dmin <= d <= dmax:
            if pick == 0:
                return s, e
            pick -= 1
    return s, -1


@njit(cache=True, parallel=True)
def _generate_kernel(
    seed,
    first_index,
    n,
    dmin,
    dmax,
    traffic_scale,
    vehicle_cum,
    gap_lo,
    gap_hi,
    avenue_share,
    side_share,
    park_density,
    park_lo,
    park_hi,
    max_attempts,
    inputs,
    labels,
    costs,
    starts,
    ends,
    vehicles,
    optimal,
    hours,
    attempts,
):
    count = inputs.shape[0]
    cells = n * n
    chunks = (count + CHUNK - 1) // CHUNK
    for chunk in prange(chunks):
        terrain = np.empty(cells, np.uint8)
        traffic = np.empty(cells, np.uint8)
        cost = np.empty(cells, np.int32)
        enterable = np.empty(cells, np.int32)
        is_major_row = np.empty(n, np.bool_)
        is_major_col = np.empty(n, np.bool_)
        g, settled, heads, entry_cell, entry_next = make_workspace(cells)
        st = np.empty(1, np.uint64)
        for i in range(chunk * CHUNK, min(count, (chunk + 1) * CHUNK)):
            seed_stream(st, seed, first_index + i)
            u = uniform(st)
            vehicle = 0
            while vehicle < 3 and u >= vehicle_cum[vehicle]:
                vehicle += 1
            attempts[i] = -1
            for attempt in range(max_attempts):
                draw_city(
                    st,
                    n,
                    gap_lo,
                    gap_hi,
                    avenue_share,
                    side_share,
                    park_density,
                    park_lo,
                    park_hi,
                    is_major_row,
                    is_major_col,
                    terrain,
                )
                hour = draw_traffic(st, n, terrain, traffic_scale, traffic)
                m = _build_costs(terrain, traffic, vehicle, cost, enterable)
                if m < 2:
                    continue
                s, e = _draw_endpoints(st, n, dmin, dmax, enterable, m)
                if e < 0:
                    continue
                best = solve(cost, n, s, e, g, settled, heads, entry_cell, entry_next)
                if best < 0:
                    continue
                for cell in range(cells):
                    t = terrain[cell]
                    token = OBSTACLE_TOKEN if t == OBSTACLE else ROAD_TOKEN_BASE + 3 * (t - 1) + traffic[cell]
                    inputs[i, cell] = token
                    labels[i, cell] = token
                    costs[i, cell] = np.float32(cost[cell]) if cost[cell] >= 0 else np.float32(np.inf)
                inputs[i, s] = START_TOKEN_BASE + 6 * vehicle + 2 * (terrain[s] - 1) + traffic[s]
                inputs[i, e] = END_TOKEN_BASE + 2 * (terrain[e] - 1) + traffic[e]
                labels[i, s] = inputs[i, s]
                labels[i, e] = inputs[i, e]
                mark_canonical_path(cost, n, s, e, g, settled, labels[i], PATH)
                starts[i], ends[i], vehicles[i] = s, e, vehicle
                optimal[i] = best
                hours[i] = hour
                attempts[i] = attempt + 1
                break


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return int(seed)


def generate_tasks(spec: TaskSpec, count: int, seed: int, first_index: int = 0) -> TaskBatch:
    """Draw ``count`` tasks from ``spec``; task i is a pure function of (spec, seed, first_index + i)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    seed = _check_seed(seed)
    if not isinstance(first_index, (int, np.integer)) or first_index < 0:
        raise ValueError(f"first_index must be a non-negative integer, got {first_index!r}")
    n, cells = spec.size, spec.size * spec.size
    weights = np.asarray(spec.vehicle_mix, dtype=np.float64)
    vehicle_cum = np.cumsum(weights / weights.sum())
    vehicle_cum[-1] = 1.0
    gap_lo, gap_hi = spec.block_gap
    park_lo, park_hi = spec.park_side
    batch = TaskBatch(
        size=n,
        inputs=np.zeros((count, cells), np.uint8),
        labels=np.zeros((count, cells), np.uint8),
        costs=np.zeros((count, cells), np.float32),
        start=np.zeros(count, np.int32),
        end=np.zeros(count, np.int32),
        vehicle=np.zeros(count, np.uint8),
        optimal_cost=np.zeros(count, np.float32),
        hour=np.zeros(count, np.uint8),
    )
    attempts = np.zeros(count, np.int32)
    _generate_kernel(
        np.uint64(seed),
        np.uint64(first_index),
        n,
        spec.resolved_min_distance,
        spec.resolved_max_distance,
        float(spec.traffic_scale),
        vehicle_cum,
        gap_lo,
        gap_hi,
        float(spec.avenue_share),
        float(spec.side_street_share),
        float(spec.obstacle_density),
        park_lo,
        park_hi,
        MAX_ATTEMPTS,
        batch.inputs,
        batch.labels,
        batch.costs,
        batch.start,
        batch.end,
        batch.vehicle,
        batch.optimal_cost,
        batch.hour,
        attempts,
    )
    failed = np.flatnonzero(attempts < 0)
    if failed.size:
        raise ValueError(
            f"could not draw a routable task in {MAX_ATTEMPTS} attempts for {failed.size} of {count} tasks "
            f"(size {n}, distance {spec.resolved_min_distance}-{spec.resolved_max_distance}): "
            "the distance range or vehicle mix is too demanding for this city"
        )
    return batch


__all__ = ["TaskBatch", "generate_tasks"]
