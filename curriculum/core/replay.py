"""Which earlier stage a replayed task comes from: pure functions over the latest held-out readings.

``uniform`` draws every earlier stage alike. ``shortfall`` weighs each earlier stage by how far its
latest held-out gate metric has fallen below that stage's own gate threshold, plus a floor so that
no stage is ever dropped: the stages the model is forgetting are replayed most (learning-progress
sampling in the spirit of Prioritized Level Replay, Jiang et al. 2021). A stage not measured yet
counts as fully forgotten. Every rank holds the same all-reduced readings, so every rank draws from
the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from curriculum.core.config import ReplayConfig, StageConfig


def replay_weights(
    stages: Sequence[StageConfig], stage: int, readings: Mapping[int, float], replay: ReplayConfig
) -> Optional[np.ndarray]:
    """Probabilities over stages 0..stage-1 (None for uniform draws or when there is nothing to replay)."""
    if stage == 0 or replay.weighting == "uniform":
        return None
    shortfall = []
    for s in range(stage):
        threshold = stages[s].gate.threshold
        value = readings.get(s)
        if value is None or not math.isfinite(value):
            shortfall.append(1.0)
        else:
            shortfall.append(max(threshold - value, 0.0) / threshold)
    weights = np.asarray(shortfall, np.float64) + replay.floor
    return weights / weights.sum()


def is_native_step(step: int, stage: int, replay: ReplayConfig) -> bool:
    """Whether optimizer step ``step`` trains on an earlier stage's tasks at their own grid size."""
    return stage > 0 and replay.native_every > 0 and step % replay.native_every == replay.native_every - 1


def choose_stage(rng: np.random.Generator, stage: int, weights: Optional[np.ndarray], count: int) -> np.ndarray:
    """``count`` earlier stages drawn with ``weights`` (uniform when None)."""
    if weights is None:
        return rng.integers(0, stage, count)  # the draw every run before weighted replay made
    return rng.choice(stage, size=count, p=weights)
