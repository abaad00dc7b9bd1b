"""Console progress for the main rank: a bar per stage on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Optional

from curriculum.core.config import StageConfig


class StageProgress:
    """One progress bar per stage (only when stderr is a terminal); lines printed above it."""

    def __init__(self, stages: list[StageConfig], say: Callable[[str], None], enabled: bool) -> None:
        self.stages, self._say = stages, say
        self.enabled = enabled and sys.stderr.isatty()
        self._bar = None
        self._stage: Optional[int] = None

    def update(self, stage: int, steps_in_stage: int) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            from tqdm import tqdm

            self.close()
            size = self.stages[stage].size
            self._bar = tqdm(
                total=self.stages[stage].max_steps,
                desc=f"stage {stage} {size}x{size}",
                unit="step",
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
            self._stage = stage
        self._bar.n = steps_in_stage
        self._bar.refresh() if steps_in_stage % 10 == 0 else None

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line)
        else:
            self._say(line)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar, self._stage = None, None
