"""The training loop's own state: everything besides the model, optimizer and EMA that a checkpoint
must hold for a resumed run to go on as if it had never stopped.

``state_dict`` / ``load_state_dict`` are the only way this state goes into and comes out of a
checkpoint. The keys are flat entries of the checkpoint file (``step``, ``elapsed``, ``stage_marks``,
``scheduler`` as JSON, ``rng``, and the skip counters), so a file stays readable by anything that
reads one of them alone (``python -m curriculum.evaluate`` reads only the model and the config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from curriculum.core.scheduler import Action, SchedulerState, count_steps


@dataclass
class TrainState:
    step: int = 0
    elapsed: float = 0.0  # wall-clock seconds of the run when it was last saved, summed over resumes
    stage_marks: list[tuple[int, float]] = field(default_factory=lambda: [(0, 0.0)])  # (step, elapsed) per change
    scheduler: SchedulerState = field(default_factory=SchedulerState)
    skipped_in_row: int = 0  # consecutive steps skipped for a non-finite loss
    skipped_total: int = 0
    rng: dict[str, Any] = field(default_factory=dict)  # RNG states as captured by the trainer (opaque here)

    def advance(self, skipped: bool) -> None:
        """One optimizer step taken (or skipped for a non-finite loss) in the current stage."""
        self.step += 1
        self.scheduler = count_steps(self.scheduler)
        self.skipped_in_row = self.skipped_in_row + 1 if skipped else 0
        self.skipped_total += int(skipped)

    def decided(self, action: Action, scheduler: SchedulerState, elapsed: float) -> None:
        """The scheduler's decision at this step; a change of stage (or the end) is marked at ``elapsed``."""
        self.scheduler = scheduler
        if action != Action.STAY:
            self.stage_marks.append((self.step, elapsed))

    def close(self, elapsed: float) -> None:
        """The run ends here: the last stage's time runs to ``elapsed``."""
        self.stage_marks.append((self.step, elapsed))

    @property
    def stage_seconds(self) -> list[float]:
        """Seconds between consecutive marks: time spent in each stage visited."""
        return [b[1] - a[1] for a, b in zip(self.stage_marks, self.stage_marks[1:])]

    @property
    def stage_steps(self) -> list[int]:
        return [b[0] - a[0] for a, b in zip(self.stage_marks, self.stage_marks[1:])]

    def state_dict(self) -> dict[str, Any]:
        """Plain data (numbers, strings, lists, the RNG tensors) that ``torch.load(weights_only=True)`` reads."""
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "stage_marks": [list(m) for m in self.stage_marks],
            "scheduler": self.scheduler.model_dump_json(),
            "skipped_in_row": self.skipped_in_row,
            "skipped_total": self.skipped_total,
            "rng": self.rng,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore from a checkpoint; a missing entry raises KeyError. Checkpoints written before the skip
        counters were saved resume with them at zero."""
        self.step, self.elapsed = int(saved["step"]), float(saved["elapsed"])
        self.stage_marks = [(int(m[0]), float(m[1])) for m in saved["stage_marks"]]
        self.scheduler = SchedulerState.model_validate_json(saved["scheduler"])
        self.skipped_in_row = int(saved.get("skipped_in_row", 0))
        self.skipped_total = int(saved.get("skipped_total", 0))
        self.rng = dict(saved["rng"])
