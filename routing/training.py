"""One ACT training step and a full-halting evaluation: the model-side core of any training loop.

A training step runs one ACT segment for every slot of the batch carry (HRM's scheme: a slot that
halted is refilled with the next sample), scores the prediction with the batched path metrics,
uses "valid and optimal route" as the q_halt target, and takes one optimizer step.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Optional

import torch

from hrm.ema import EMA
from routing.losses import PenaltyWeights, act_loss
from routing.metrics import metric_sums, path_metrics
from hrm.model import HRM, HRMCarry


def score(outputs: dict[str, torch.Tensor], data: dict[str, torch.Tensor],
          steps: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Per-sample path metrics of the model's argmax prediction for ``data``."""
    with torch.no_grad():
        return path_metrics(
            outputs["logits"].argmax(-1), data["labels"], data["costs"], data["start"], data["end"],
            data["optimal_cost"], q_halt_logits=outputs["q_halt_logits"], steps=steps,
        )


def train_step(
    model: HRM,
    carry: HRMCarry,
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    weights: PenaltyWeights,
    lr: float,
    ema: Optional[EMA] = None,
    grad_clip: Optional[float] = 1.0,
    all_finite: Optional[Callable[[bool], bool]] = None,
    force_nonfinite: bool = False,
) -> tuple[HRMCarry, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One segment, loss, backward and optimizer step.

    Returns the new carry, the loss terms (detached scalars) and the per-sample metrics of the
    samples the step trained on. A non-finite loss skips the update (``logs["skipped"] = 1``);
    under data parallelism ``all_finite`` turns the local verdict into the verdict of every rank,
    so all ranks skip together (a lone skip would leave the others waiting in backward).
    ``force_nonfinite`` (fault injection) turns the loss into NaN, so that path runs for real.
    """
    model.train()
    carry, outputs = model(carry, batch)
    data = carry.current_data
    metrics = score(outputs, data, carry.steps)
    loss, logs = act_loss(outputs, data, metrics["optimal"].bool(), weights)
    if force_nonfinite:
        loss = loss * float("nan")
        logs["total"] = loss.detach().float()
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if all_finite is not None:
        finite = all_finite(finite)
    logs["skipped"] = torch.tensor(0.0 if finite else 1.0)
    if finite:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        if ema is not None:
            ema.update(model)
    return carry, logs, metrics


@torch.no_grad()
def evaluate(model: HRM, batches: list[dict[str, torch.Tensor]], ema: Optional[EMA] = None) -> dict[str, torch.Tensor]:
    """Summed metrics (see ``routing.metrics.metric_sums``) over ``batches``, every sample run to the last segment."""
    totals: dict[str, torch.Tensor] = {}
    with ema.average_weights(model) if ema is not None else nullcontext():
        for batch in batches:
            carry, outputs = model.predict(batch)
            sums = metric_sums(score(outputs, carry.current_data, carry.steps))
            for name, value in sums.items():
                totals[name] = totals.get(name, 0) + value
    return totals


@torch.no_grad()
def predict_tokens(model: HRM, batch: dict[str, torch.Tensor], ema: Optional[EMA] = None) -> torch.Tensor:
    """Argmax tokens [B, N*N] after every segment (for pictures and the evaluation CLI)."""
    with ema.average_weights(model) if ema is not None else nullcontext():
        _, outputs = model.predict(batch)
    return outputs["logits"].argmax(-1)
