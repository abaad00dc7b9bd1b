"""The tensor form of a batch of routing tasks: the dict the model, loss and metrics read."""

from __future__ import annotations

import numpy as np
import torch

from oracle.generator import TaskBatch


def task_tensors(tasks: TaskBatch, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Tensors on ``device``: int32 tokens, int64 vehicle/start/end, float32 costs (+inf forbidden), and the
    oracle's dense fields ``from_start`` / ``to_end`` (float32 [B, N*N], +inf where unreachable)."""
    from_start, to_end = tasks.route_fields()
    arrays = {
        "inputs": tasks.inputs.astype(np.int32),
        "labels": tasks.labels.astype(np.int32),
        "vehicle": tasks.vehicle.astype(np.int64),
        "costs": tasks.costs,
        "start": tasks.start.astype(np.int64),
        "end": tasks.end.astype(np.int64),
        "optimal_cost": tasks.optimal_cost,
        "from_start": from_start,
        "to_end": to_end,
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v)).to(device, non_blocking=True) for k, v in arrays.items()}
