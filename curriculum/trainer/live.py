"""Between evaluations: the live progress rank 0 shows, and the training metrics it logs on a wall-clock
cadence, so a run says how it is doing from its first step rather than from its first evaluation."""

from __future__ import annotations

from typing import Optional

from curriculum.adapters.tracking import Tracker
from curriculum.core.config import RunConfig
from curriculum.core.evaluation import Evaluation
from curriculum.core.progress import Cadence, Progress, steps_to_eval
from curriculum.core.stopwatch import Stopwatch
from curriculum.core.train_state import TrainState
from curriculum.trainer.averages import TrainAverages
from curriculum.trainer.context import WorkerContext

# Often enough for a bar to look alive, rarely enough that a Ray queue carries next to nothing.
PROGRESS_EVERY_S = 0.5


class LiveReport:
    """Rank 0's progress snapshots (``ctx.show_progress``) and cadenced ``train/*`` points; a no-op elsewhere."""

    def __init__(self, config: RunConfig, ctx: WorkerContext, tracker: Tracker, watch: Stopwatch) -> None:
        self.config, self.ctx, self.tracker, self.watch = config, ctx, tracker, watch
        self.active = ctx.is_main
        self._show = Cadence(PROGRESS_EVERY_S)
        self._log = Cadence(config.tracking.metrics_every_s)

    def show(self, state: TrainState, last: Optional[Evaluation], force: bool = False) -> None:
        """A progress snapshot, when one is due (or ``force``)."""
        if self.active and (self._show.due() or force):
            self.ctx.show_progress(self.progress(state, last))

    def after_step(self, state: TrainState, last: Optional[Evaluation], averages: TrainAverages) -> None:
        """After a step that is not followed by an evaluation (which logs the training means itself)."""
        if not self.active:
            return
        if self._log.due():
            stage = state.scheduler.stage
            metrics = {
                **averages.pop(),
                "perf/steps_per_s": self.watch.rate(state.step),
                "curriculum/stage": stage,
                "curriculum/grid_size": self.config.curriculum.stages[stage].size,
                "train/skipped_steps": state.skipped_total,
            }
            self.tracker.log_metrics(metrics, state.step)
        self.show(state, last)

    def progress(self, state: TrainState, last: Optional[Evaluation]) -> Progress:
        stage_index = state.scheduler.stage
        stage, train = self.config.curriculum.stages[stage_index], self.config.train
        # The last reading of this stage's gate; an evaluation of the previous stage says nothing about it.
        gate_value = last.current.get(stage.gate.metric) if last is not None and last.stage == stage_index else None
        return Progress(
            step=state.step,
            stage=stage_index,
            size=stage.size,
            steps_in_stage=state.scheduler.steps_in_stage,
            stage_max_steps=stage.max_steps,
            steps_per_s=self.watch.rate(state.step),
            gate_metric=stage.gate.metric,
            gate_value=gate_value,
            gate_threshold=stage.gate.threshold,
            steps_to_eval=steps_to_eval(state.step, stage.eval_interval(train.eval_every), train.max_steps),
        )
