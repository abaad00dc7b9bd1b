"""One ACT training step and a full-halting evaluation: the model-side core of any training loop.

A training step runs one ACT segment for every slot of the batch carry (HRM's scheme: a slot that
halted is refilled with the next sample), scores the prediction with the batched path metrics,
uses "valid and optimal route" as the q_halt target, and takes one optimizer step. It comes in two
halves, ``forward_loss`` and ``apply_update``, so that a loop over several ranks can agree on
skipping a non-finite loss in between; ``train_step`` joins them for a single process.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch

from hrm.ema import EMA
from hrm.model import HRM, HRMCarry
from oracle.vocab import PATH
from routing.decode import decode_routes, fewest_cell_routes
from routing.losses import act_loss, log_stablemax
from routing.metric_names import CHAIN_METRICS
from routing.metrics import metric_sums, path_metrics
from routing.penalties import PenaltyWeights
from routing.route_errors import route_errors


def score(
    outputs: dict[str, torch.Tensor], data: dict[str, torch.Tensor], steps: Optional[torch.Tensor] = None
) -> dict[str, torch.Tensor]:
    """Per-sample path metrics of the model's argmax prediction for ``data``."""
    with torch.no_grad():
        return path_metrics(
            outputs["logits"].argmax(-1),
            data["labels"],
            data["costs"],
            data["start"],
            data["end"],
            data["optimal_cost"],
            q_halt_logits=outputs["q_halt_logits"],
            steps=steps,
        )


def _chain_scores(route: torch.Tensor, data: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Per-sample ``<prefix>_<metric>`` (``routing.metric_names.CHAIN_METRICS``) of a single-chain ``route``
    for ``data``."""
    scored = path_metrics(route, data["labels"], data["costs"], data["start"], data["end"], data["optimal_cost"])
    # A legal chain always exists (every task is routable), so the cost ratio averages over all samples.
    return {f"{prefix}_{name}": scored[name] for name in CHAIN_METRICS}


def decoded_scores(outputs: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-sample ``decoded_*`` metrics of the decoded route (``routing.decode``), beside the argmax's."""
    return _chain_scores(decode_routes(outputs["logits"], data), data, "decoded")


def fewest_cells_scores(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-sample ``fewest_cells_*`` metrics of the cost-blind fewest-cell route (``routing.decode``)."""
    return _chain_scores(fewest_cell_routes(data), data, "fewest_cells")


def forward_loss(
    model: HRM,
    carry: HRMCarry,
    batch: dict[str, torch.Tensor],
    weights: PenaltyWeights,
) -> tuple[HRMCarry, torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One ACT segment in training mode and its loss: the first half of a training step.

    Returns the new carry, the loss (with its graph), the loss terms (detached scalars) and the
    per-sample metrics of the samples the segment ran on.
    """
    model.train()
    carry, outputs = model(carry, batch)
    data = carry.current_data
    metrics = score(outputs, data, carry.steps)
    loss, logs = act_loss(outputs, data, metrics["optimal"].bool(), weights)
    return carry, loss, logs, metrics


def apply_update(
    model: HRM,
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    lr: float,
    ema: Optional[EMA] = None,
    grad_clip: Optional[float] = 1.0,
) -> None:
    """Backward, clipping and one optimizer step at ``lr``: the second half of a training step.

    Under data parallelism every rank must call it or none (backward all-reduces gradients), so a
    loop over several ranks agrees on skipping a non-finite loss before it gets here.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    if ema is not None:
        ema.update(model)


def train_step(
    model: HRM,
    carry: HRMCarry,
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    weights: PenaltyWeights,
    lr: float,
    ema: Optional[EMA] = None,
    grad_clip: Optional[float] = 1.0,
) -> tuple[HRMCarry, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One segment, loss, backward and optimizer step, in a single process.

    Returns the new carry, the loss terms (detached scalars) and the per-sample metrics of the
    samples the step trained on. A non-finite loss skips the update (``logs["skipped"] = 1``).
    """
    carry, loss, logs, metrics = forward_loss(model, carry, batch, weights)
    finite = bool(torch.isfinite(loss))
    logs["skipped"] = torch.tensor(0.0 if finite else 1.0)
    if finite:
        apply_update(model, loss, optimizer, lr, ema, grad_clip)
    return carry, logs, metrics


@torch.no_grad()
def evaluate(
    model: HRM,
    batches: list[dict[str, torch.Tensor]],
    ema: Optional[EMA] = None,
    segments: Optional[int] = None,
    errors: Optional[list[dict[str, torch.Tensor]]] = None,
) -> dict[str, torch.Tensor]:
    """Summed metrics (see ``routing.metrics.metric_sums``) over ``batches``, every sample run for ``segments``
    ACT segments (default: the model's halt_max_steps). Given a list ``errors``, each batch's argmax error
    breakdown (``routing.route_errors``) is appended to it."""
    totals: dict[str, torch.Tensor] = {}
    with ema.average_weights(model) if ema is not None else nullcontext():
        for batch in batches:
            carry, outputs = model.predict(batch, segments)
            data = carry.current_data
            per_sample = score(outputs, data, carry.steps)
            per_sample.update(decoded_scores(outputs, data))
            per_sample.update(fewest_cells_scores(data))
            if errors is not None:
                path_probability = log_stablemax(outputs["logits"], dim=-1)[..., PATH].exp().float()
                pred = outputs["logits"].argmax(-1)
                errors.append(route_errors(pred, data, path_probability, per_sample["optimal"]))
            sums = metric_sums(per_sample)
            for name, value in sums.items():
                totals[name] = totals.get(name, 0) + value
    return totals


@torch.no_grad()
def predict_tokens(
    model: HRM, batch: dict[str, torch.Tensor], ema: Optional[EMA] = None, segments: Optional[int] = None
) -> torch.Tensor:
    """Argmax tokens [B, N*N] after ``segments`` segments (for pictures and the evaluation CLI)."""
    return predict_logits(model, batch, ema, segments).argmax(-1)


@torch.no_grad()
def predict_logits(
    model: HRM, batch: dict[str, torch.Tensor], ema: Optional[EMA] = None, segments: Optional[int] = None
) -> torch.Tensor:
    """Output logits [B, N*N, V] after ``segments`` segments, under the EMA's weights when given."""
    with ema.average_weights(model) if ema is not None else nullcontext():
        _, outputs = model.predict(batch, segments)
    return outputs["logits"]
