"""What the training loop needs from its surroundings, so the same loop runs in-process or in Ray.

``WorkerContext`` bundles this worker's rank and device, how to sum tensors across ranks, how to
wrap the model for data parallelism, where to report evaluations (Ray Train's ``report``), a
checkpoint to restore, and how to tell the loop to stop. ``local_context`` is the single-process
version with no Ray import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from curriculum.core.progress import Progress


@dataclass
class WorkerContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    wrap_model: Callable[[nn.Module], nn.Module] = lambda m: m
    report: Callable[[dict, Optional[Path]], None] = lambda metrics, checkpoint: None
    restore_from: Optional[Path] = None
    stop_requested: Callable[[], bool] = lambda: False
    say: Callable[[str], None] = print  # console lines (rank 0)
    show_progress: Callable[[Progress], None] = lambda progress: None  # the live bar (rank 0)
    # Rank 0 at the end of a run: log (final weights, config, step) as the run's model; returns a console line.
    log_model: Optional[Callable[[dict[str, torch.Tensor], Any, int], str]] = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(requested: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available (use train.device=cpu)")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def local_context(
    device: str = "auto",
    restore_from: Optional[Path] = None,
    stop_requested: Callable[[], bool] = lambda: False,
    say: Callable[[str], None] = print,
    show_progress: Callable[[Progress], None] = lambda progress: None,
    log_model: Optional[Callable[[dict[str, torch.Tensor], Any, int], str]] = None,
) -> WorkerContext:
    """One in-process worker."""
    return WorkerContext(
        device=pick_device(device),
        restore_from=restore_from,
        stop_requested=stop_requested,
        say=say,
        show_progress=show_progress,
        log_model=log_model,
    )
