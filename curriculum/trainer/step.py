"""One training step of the loop: the loss, the step's agreement across ranks, then backward or a skip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch

from curriculum.trainer.agreement import StepFlags
from curriculum.trainer.learner import Learner
from routing.training import apply_update, forward_loss

Logs = dict[str, torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses."""


def train_step(
    learner: Learner,
    batch: dict[str, torch.Tensor],
    step: int,
    stage: int,
    agree: Callable[[bool], StepFlags],
    task_stage: Optional[int] = None,
) -> tuple[StepFlags, Logs, Logs]:
    """Optimizer step ``step`` (0-based) in ``stage``: the agreed flags, the loss terms and the per-sample metrics.

    ``task_stage``: the stage the batch's tasks come from when it is not ``stage`` (native-size replay); its
    penalties apply, and its ACT carry is kept apart. The update is skipped on every rank when any rank's
    loss is not finite.
    """
    config = learner.config
    source = stage if task_stage is None else task_stage
    carry, loss, logs, metrics = forward_loss(
        learner.trained, learner.carry(source, batch), batch, config.curriculum.stages[source].penalties
    )
    learner.keep_carry(source, carry)
    flags = agree(not bool(torch.isfinite(loss)))
    if not flags.nonfinite:
        apply_update(learner.trained, loss, learner.optimizer, learner.lr(step), learner.ema, config.train.grad_clip)
    return flags, logs, metrics
