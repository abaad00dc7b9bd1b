"""What one evaluation produced: the single record that logging, the Ray report and the checkpoint
all read, so none of them recomputes or restates any of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

from curriculum.core.scheduler import Action, SchedulerState, Transition
from curriculum.core.stopwatch import Lap


class HeldOutSet(NamedTuple):
    """A fixed held-out set: the one of ``stage``, at its grid size."""

    stage: int
    size: int


@dataclass(frozen=True)
class Evaluation:
    step: int
    evaluated: HeldOutSet  # the current stage's set: its metrics are what the scheduler decided on
    metrics: dict[HeldOutSet, dict[str, float]]  # metric means per held-out set measured
    action: Action
    scheduler: SchedulerState  # after the decision
    lap: Lap  # training since the previous evaluation
    train: dict[str, float]  # training means since the previous evaluation ("train/..." names)
    skipped_steps: int  # steps of the run skipped for a non-finite loss, so far

    @property
    def stage(self) -> int:
        return self.evaluated.stage

    @property
    def current(self) -> dict[str, float]:
        return self.metrics[self.evaluated]

    @property
    def eval_metrics(self) -> dict[str, float]:
        """The current set's means as ``eval/<name>`` (NaN included, e.g. cost_ratio with no route connected)."""
        return {f"eval/{name}": value for name, value in self.current.items()}

    @property
    def transition(self) -> Optional[Transition]:
        """The stage change (or end) this evaluation decided, if any."""
        return self.scheduler.transitions[-1] if self.action != Action.STAY else None
