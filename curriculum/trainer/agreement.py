"""What all ranks must agree on at every step, in one collective.

Ranks that disagree hang: a rank skipping backward leaves the others waiting in DDP's gradient
all-reduce, and a rank stopping alone leaves them waiting in the next one. So each step, between
the loss and backward, every rank contributes three flags (its loss is not finite, it was asked to
stop, its clock passed the budget) to one all-reduce of a small vector, and all act on the sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from curriculum.core.stopwatch import Stopwatch
from curriculum.trainer.context import WorkerContext


@dataclass(frozen=True)
class StepFlags:
    """What every rank agreed on at one step; each holds when it held on any rank."""

    nonfinite: bool = False  # a loss is NaN or inf: every rank skips this step's update
    stop: bool = False  # a stop was requested: the run ends once this step is done, with a checkpoint
    over_budget: bool = False  # train.max_minutes is spent: this step ends with an evaluation, and the run


class StepAgreement:
    def __init__(self, ctx: WorkerContext, watch: Stopwatch, max_minutes: Optional[float]) -> None:
        self.ctx, self.watch, self.max_minutes = ctx, watch, max_minutes

    def __call__(self, nonfinite: bool) -> StepFlags:
        """The agreed flags, given this rank's verdict on its loss."""
        return StepFlags(*self._any((nonfinite, self.ctx.stop_requested(), self.watch.over(self.max_minutes))))

    def no_time_for_a_step(self, steps_per_s: float) -> bool:
        """Whether, on any rank, the budget is spent or would be before one more step at ``steps_per_s`` ends."""
        if self.max_minutes is None:
            return False
        step_seconds = 1.0 / steps_per_s if steps_per_s > 0 else 0.0
        return self._any((self.watch.over(self.max_minutes, after_seconds=step_seconds),))[0]

    def _any(self, local: tuple[bool, ...]) -> tuple[bool, ...]:
        """Each of this rank's flags ORed over every rank, in one collective."""
        if self.ctx.world_size == 1:
            return local
        votes = self.ctx.all_reduce_sum(torch.tensor(local, dtype=torch.float32, device=self.ctx.device))
        return tuple(count > 0 for count in votes.tolist())
