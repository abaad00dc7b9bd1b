"""What a researcher watches while a run trains: a progress snapshot, its one-line rendering, and the
wall-clock cadence at which snapshots and training metrics go out.

Pure logic: the training loop builds a ``Progress`` on rank 0, and whichever console shows it (a bar
in this process, or on the Ray driver at the other end of a queue) only renders it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Progress:
    """Where the run stands after a step; plain values, so it travels through a Ray queue."""

    step: int
    stage: int
    size: int  # the stage's grid side
    steps_in_stage: int
    stage_max_steps: int
    steps_per_s: float  # training steps per second since the last evaluation (0: not known yet)
    gate_metric: str
    gate_value: Optional[float]  # the stage's gate metric at its last evaluation (None: none yet)
    gate_threshold: float
    steps_to_eval: int  # steps until the next evaluation

    @property
    def eta_eval_s(self) -> Optional[float]:
        """Seconds until the next evaluation at the current rate (None while the rate is unknown)."""
        return self.steps_to_eval / self.steps_per_s if self.steps_per_s > 0 else None


def steps_to_eval(step: int, eval_every: int, max_steps: int) -> int:
    """Steps from ``step`` to the next evaluation (every ``eval_every`` steps, and at ``max_steps``)."""
    return min(eval_every - step % eval_every, max(max_steps - step, 0))


def format_duration(seconds: Optional[float]) -> str:
    """``42s``, ``5m07s``, ``2h03m``; ``?`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_progress(progress: Progress) -> str:
    """The bar's text after the stage counter: step, rate, last gate reading, time to the next evaluation."""
    rate = f"{progress.steps_per_s:.2f} steps/s" if progress.steps_per_s > 0 else "? steps/s"
    gate = "-" if progress.gate_value is None else f"{progress.gate_value:.3f}"
    return (
        f"step {progress.step} | {rate} | {progress.gate_metric} {gate}/{progress.gate_threshold:g}"
        f" | eval in {progress.steps_to_eval} ~{format_duration(progress.eta_eval_s)}"
    )


class Cadence:
    """Due at the first ask, then once ``every_s`` seconds have passed since it was last due."""

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self._clock = every_s, clock
        self._last: Optional[float] = None

    def due(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True
