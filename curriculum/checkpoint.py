"""Checkpoints: written atomically, read back without unpickling arbitrary objects.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and dicts:
model, optimizer and EMA state, the curriculum state (as JSON), RNG states, the step, the MLflow
run id and the config. It is written to a temporary file in the same directory, flushed to disk
and renamed into place, so a crash never leaves a half-written checkpoint under the real name.
Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import torch

from curriculum.atomic_file import atomic_write

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
FORMAT = "hrm-curriculum-checkpoint/1"
KEEP = 2  # newest checkpoints kept per run


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:09d}.pt"


def save_checkpoint(directory: Path, state: dict[str, Any], step: int, keep: int = KEEP) -> Path:
    """Write ``state`` as ``directory/checkpoint-<step>.pt`` atomically; prune older ones."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = atomic_write(directory / checkpoint_name(step),
                         lambda handle: torch.save({"format": FORMAT, "step": step, **state}, handle))
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoint files of a directory, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if CHECKPOINT_PATTERN.match(p.name))


def latest_checkpoint(directory: Path) -> Optional[Path]:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint; CheckpointError naming the file if it is missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {first_line}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this project (format {FORMAT})")
    return state
