"""Evaluate, then decide: the held-out metrics every rank agrees on, and the scheduler's decision on them.

Each rank measures its shard of a held-out set; the metric sums are all-reduced in one collective,
so every rank sees the same means and the scheduler takes the same decision on each of them.
"""

from __future__ import annotations

import numpy as np
import torch

from curriculum.core.config import RunConfig
from curriculum.core.evaluation import Evaluation, HeldOutSet
from curriculum.core.scheduler import decide, record_readings
from curriculum.core.stopwatch import Lap
from curriculum.core.streams import heldout_tasks, shard
from curriculum.core.train_state import TrainState
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.learner import Learner
from oracle.dataset import select
from routing.batch import task_tensors
from routing.metric_names import METRIC_NAMES
from routing.metrics import means_from_sums, metric_sums
from routing.training import evaluate as evaluate_batches

# Every sum ``metric_sums`` yields for a full set of metrics (each metric and the counts behind the means),
# in one order on every rank, so the ranks' vectors line up in the all-reduce.
SUM_NAMES: tuple[str, ...] = tuple(metric_sums(dict.fromkeys(METRIC_NAMES, torch.zeros(1))))

Batches = list[dict[str, torch.Tensor]]


class HeldOut:
    """This rank's shard of the held-out sets, as batches on its device (each built once, when first measured)."""

    def __init__(self, config: RunConfig, ctx: WorkerContext) -> None:
        self.config, self.ctx = config, ctx
        self._built: dict[HeldOutSet, Batches] = {}

    def key(self, stage: int) -> HeldOutSet:
        return HeldOutSet(stage, self.config.curriculum.stages[stage].size)

    def batches(self, key: HeldOutSet) -> Batches:
        if key not in self._built:
            train = self.config.train
            tasks = shard(
                heldout_tasks(self.config.curriculum.stages, key.stage, train.seed, train.eval_size),
                self.ctx.rank,
                self.ctx.world_size,
            )
            size = train.eval_batch_size
            self._built[key] = [
                task_tensors(select(tasks, np.arange(i, min(i + size, len(tasks)))), self.ctx.device)
                for i in range(0, len(tasks), size)
            ]
        return self._built[key]

    def measure(self, learner: Learner, key: HeldOutSet) -> dict[str, float]:
        """Metric means over the whole set (every rank's shard)."""
        sums = evaluate_batches(learner.model, self.batches(key), learner.ema, self.config.train.eval_segments)
        device = self.ctx.device
        vector = torch.stack(
            [torch.as_tensor(sums.get(name, 0.0), dtype=torch.float64, device=device).reshape(()) for name in SUM_NAMES]
        )
        vector = self.ctx.all_reduce_sum(vector)
        return means_from_sums({name: vector[i] for i, name in enumerate(SUM_NAMES)})


def evaluate(
    learner: Learner, heldout: HeldOut, state: TrainState, lap: Lap, train_means: dict[str, float]
) -> Evaluation:
    """Measure the current stage's held-out set (and, every ``train.eval_earlier_every`` evaluations, every
    earlier stage's) and let the scheduler decide on the current one."""
    config = learner.config
    stages, stage = config.curriculum.stages, state.scheduler.stage
    key = heldout.key(stage)
    metrics = {key: heldout.measure(learner, key)}
    every = config.train.eval_earlier_every
    if every and (state.step // stages[stage].eval_interval(config.train.eval_every)) % every == 0:
        for earlier in range(stage):
            metrics[heldout.key(earlier)] = heldout.measure(learner, heldout.key(earlier))
    scheduler = record_readings(state.scheduler, stages, {k.stage: v for k, v in metrics.items()})
    action, scheduler = decide(scheduler, stages, metrics[key], state.step, config.curriculum.backoff)
    return Evaluation(
        step=state.step,
        evaluated=key,
        metrics=metrics,
        action=action,
        scheduler=scheduler,
        lap=lap,
        train=train_means,
        skipped_steps=state.skipped_total,
    )
