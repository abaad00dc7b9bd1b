"""Random city maps and traffic, drawn per task inside Numba kernels.

A city is a street plan scaled to N: major lines (2-wide avenues or 1-wide streets, both large
roads) at jittered spacing in both directions, small side streets inside the blocks between them,
one 2-wide diagonal avenue drawn as a 4-connected staircase at a random offset, and parks
(rectangles of obstacles) laid over the plan. Everything else is building blocks (obstacles).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from oracle.rng import randint, uniform
from oracle.vocab import CLOSED, DIAGONAL, JAM, LARGE, OBSTACLE, SMALL

# Hour of day -> jam intensity i: rush hours, lunch, and the quiet rest of the day.
JAM_INTENSITY = np.array(
    [0.10] * 7 + [0.40] * 3 + [0.10] * 2 + [0.25] * 2 + [0.10] * 3 + [0.45] * 3 + [0.10] * 4, dtype=np.float64
)
SMALL_ROAD_JAM_FACTOR = 0.3  # small roads jam at 0.3·i
NIGHT_LAST_HOUR = 5  # 0–5h: construction closures on large and diagonal roads
CLOSURE_PROBABILITY = 0.05


@njit(cache=True)
def _mark_major_lines(st, n, gap_lo, gap_hi, avenue_share, is_major):
    """Mark rows (or columns) that carry a major line; return how many lines were drawn."""
    is_major[:] = False
    lines = 0
    p = randint(st, gap_hi + 1)
    while p < n:
        width = 2 if (uniform(st) < avenue_share and p + 1 < n) else 1
        for k in range(width):
            is_major[p + k] = True
        lines += 1
        p += width + gap_lo + randint(st, gap_hi - gap_lo + 1)
    return lines


@njit(cache=True)
def _side_streets(st, n, side_share, across, along, terrain, transpose):
    """Small streets inside the gaps of ``across`` lines, one block segment of ``along`` at a time."""
    a = 0
    while a < n:
        if across[a]:
            a += 1
            continue
        b = a
        while b + 1 < n and not across[b + 1]:
            b += 1
        if b - a + 1 >= 3:  # room for a street with a building on each side
            line = a + 1 + randint(st, b - a - 1)
            c0 = 0
            while c0 < n:
                if along[c0]:
                    c0 += 1
                    continue
                c1 = c0
                while c1 + 1 < n and not along[c1 + 1]:
                    c1 += 1
                if uniform(st) < side_share:
                    for c in range(c0, c1 + 1):
                        cell = c * n + line if transpose else line * n + c
                        if terrain[cell] == OBSTACLE:
                            terrain[cell] = SMALL
                c0 = c1 + 1
        a = b + 1


@njit(cache=True)
def draw_city(
    st, n, gap_lo, gap_hi, avenue_share, side_share, park_density, park_lo, park_hi, is_major_row, is_major_col, terrain
):
    """Fill ``terrain`` (uint8[n*n]) with a fresh random city."""
    terrain[:] = OBSTACLE
    _mark_major_lines(st, n, gap_lo, gap_hi, avenue_share, is_major_row)
    _mark_major_lines(st, n, gap_lo, gap_hi, avenue_share, is_major_col)
    for r in range(n):
        for c in range(n):
            if is_major_row[r] or is_major_col[c]:
                terrain[r * n + c] = LARGE
    _side_streets(st, n, side_share, is_major_row, is_major_col, terrain, False)
    _side_streets(st, n, side_share, is_major_col, is_major_row, terrain, True)

    # Diagonal avenue: two cells per row, shifted by one each row, so it is 4-connected.
    direction = 1 if uniform(st) < 0.5 else -1
    offset = randint(st, n) - n // 2
    for r in range(n):
        c = (r if direction == 1 else n - 1 - r) + offset
        for k in range(2):
            cc = c + k * direction
            if 0 <= cc < n and terrain[r * n + cc] != LARGE:
                terrain[r * n + cc] = DIAGONAL

    # Parks: obstacles over the plan until they cover the requested share of the area.
    target = park_density * n * n
    area = 0
    tries = 0
    while area < target and tries < 64:
        h = park_lo + randint(st, park_hi - park_lo + 1)
        w = park_lo + randint(st, park_hi - park_lo + 1)
        r0 = randint(st, n - h + 1)
        c0 = randint(st, n - w + 1)
        for r in range(r0, r0 + h):
            for c in range(c0, c0 + w):
                terrain[r * n + c] = OBSTACLE
        area += h * w
        tries += 1


@njit(cache=True)
def draw_traffic(st, n, terrain, traffic_scale, traffic):
    """Fill ``traffic`` (uint8[n*n]) for a random hour; return the hour (0–23)."""
    hour = randint(st, 24)
    intensity = JAM_INTENSITY[hour]
    night = hour <= NIGHT_LAST_HOUR
    p_close = min(1.0, CLOSURE_PROBABILITY * traffic_scale)
    p_jam_major = min(1.0, intensity * traffic_scale)
    p_jam_small = min(1.0, SMALL_ROAD_JAM_FACTOR * intensity * traffic_scale)
    for cell in range(n * n):
        t = terrain[cell]
        traffic[cell] = 0
        if t == OBSTACLE:
            continue
        if t == SMALL:
            if uniform(st) < p_jam_small:
                traffic[cell] = JAM
        else:
            if night and uniform(st) < p_close:
                traffic[cell] = CLOSED
            elif uniform(st) < p_jam_major:
                traffic[cell] = JAM
    return hour
