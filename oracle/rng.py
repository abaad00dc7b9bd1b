"""A counter-based random stream for Numba kernels.

Each task draws from its own SplitMix64 stream seeded from (seed, task index), so a task's bytes
depend only on those two numbers: never on thread count, chunking or scheduling.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def next_u64(state: np.ndarray) -> np.uint64:
    """SplitMix64: advance ``state[0]`` and return 64 well-mixed bits."""
    state[0] += _GOLDEN
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def uniform(state: np.ndarray) -> float:
    """A float in [0, 1) with 53 random bits."""
    return np.float64(next_u64(state) >> np.uint64(11)) * _INV_2_53


@njit(cache=True, inline="always")
def randint(state: np.ndarray, n: int) -> int:
    """An integer in [0, n), n >= 1."""
    return int(uniform(state) * n)


@njit(cache=True)
def seed_stream(state: np.ndarray, seed: int, index: int) -> None:
    """Point ``state`` at the stream of task ``index`` under ``seed``."""
    state[0] = np.uint64(seed) * _MIX1 + np.uint64(index) * _GOLDEN
    next_u64(state)
    state[0] ^= np.uint64(index)
    next_u64(state)
