"""The run's two clocks: wall-clock time (what a budget and the stage timeline count, evaluations
and checkpoints included) and training time (what the steps-per-second rate counts, without them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Lap:
    """Training between two evaluations, read when the second one begins."""

    elapsed: float  # the run's wall-clock seconds at that moment
    steps_per_s: float  # steps of the lap over its training seconds


class Stopwatch:
    """Started when the loop starts; ``elapsed`` carries over the seconds of earlier attempts (a resume)."""

    def __init__(self, elapsed: float = 0.0, step: int = 0, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._before = elapsed
        self._start = clock()
        self._lap_start, self._lap_step = self._start, step

    def elapsed(self) -> float:
        """Wall-clock seconds of the run so far."""
        return self._before + self._clock() - self._start

    def over(self, max_minutes: Optional[float], after_seconds: float = 0.0) -> bool:
        """Whether a budget of ``max_minutes`` (None: no budget) is spent, or will be ``after_seconds`` from now."""
        return max_minutes is not None and self.elapsed() + after_seconds >= 60.0 * max_minutes

    def pause(self, step: int) -> Lap:
        """Training stops at ``step`` (an evaluation begins): the lap since the last ``resume``."""
        now = self._clock()
        rate = (step - self._lap_step) / max(now - self._lap_start, 1e-9)
        return Lap(elapsed=self._before + now - self._start, steps_per_s=rate)

    def rate(self, step: int) -> float:
        """Steps per second of the lap so far, without ending it (0 before its first step)."""
        seconds = self._clock() - self._lap_start
        return (step - self._lap_step) / seconds if step > self._lap_step and seconds > 0 else 0.0

    def resume(self, step: int) -> None:
        """Training goes on from ``step``: the next lap starts now."""
        self._lap_start, self._lap_step = self._clock(), step
