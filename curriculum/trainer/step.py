"""One training step of the loop: the loss, the step's agreement across ranks, then backward or a skip."""

from __future__ import annotations

from collections.abc import Callable

import torch

from curriculum.trainer.agreement import StepFlags
from curriculum.trainer.learner import Learner
from routing.training import apply_update, forward_loss

Logs = dict[str, torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """Too many consecutive non-finite losses."""


def train_step(
    learner: Learner, batch: dict[str, torch.Tensor], step: int, stage: int, agree: Callable[[bool], StepFlags]
) -> tuple[StepFlags, Logs, Logs]:
    """Optimizer step ``step`` (0-based) in ``stage``: the agreed flags, the loss terms and the per-sample metrics.

    The update is skipped on every rank when any rank's loss is not finite.
    """
    config = learner.config
    carry, loss, logs, metrics = forward_loss(
        learner.trained, learner.carry(stage, batch), batch, config.curriculum.stages[stage].penalties
    )
    learner.keep_carry(carry)
    flags = agree(not bool(torch.isfinite(loss)))
    if not flags.nonfinite:
        apply_update(learner.trained, loss, learner.optimizer, learner.lr(step), learner.ema, config.train.grad_clip)
    return flags, logs, metrics
