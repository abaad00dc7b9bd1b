"""The loop's checkpoints: the learner's state dicts beside the ``TrainState``, the run id and the config.

Rank 0 writes (atomically, ``curriculum.adapters.checkpoint``); every rank restores from the same file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from curriculum.adapters.checkpoint import load_checkpoint, restoring, save_checkpoint
from curriculum.core.config import RunConfig
from curriculum.core.stopwatch import Stopwatch
from curriculum.core.train_state import TrainState
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.learner import Learner


def capture_rng(device: torch.device) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"].cpu())
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)


class Checkpoints:
    def __init__(self, config: RunConfig, ctx: WorkerContext, run_dir: Path, run_id: Optional[str]) -> None:
        self.config, self.ctx, self.run_id = config, ctx, run_id
        self.directory = run_dir / "checkpoints"

    def save(self, learner: Learner, state: TrainState, watch: Stopwatch) -> Optional[Path]:
        """Rank 0 writes the checkpoint of this moment and returns its path; other ranks return None."""
        if not self.ctx.is_main:
            return None
        state.elapsed, state.rng = watch.elapsed(), capture_rng(self.ctx.device)
        return save_checkpoint(
            self.directory,
            {
                **learner.state_dicts(),
                **state.state_dict(),
                "run_id": self.run_id or "",
                "config": self.config.model_dump_json(),
            },
            state.step,
        )

    def restore(self, path: Path, learner: Learner) -> TrainState:
        """The learner's weights and the loop's state from ``path``; a checkpoint of another model raises a
        ``CheckpointError`` naming the file."""
        saved = load_checkpoint(path, map_location=self.ctx.device)
        state = TrainState()
        with restoring(path):
            learner.load_state_dicts(saved)
            state.load_state_dict(saved)
            restore_rng(state.rng, self.ctx.device)
        return state
