"""Checkpoints: written atomically, read back without unpickling arbitrary objects.

A checkpoint is one ``torch.save`` file holding only tensors, numbers, strings, lists and dicts:
model, optimizer and EMA state, the curriculum state (as JSON), RNG states, the step, the MLflow
run id and the config. It is written to a temporary file in the same directory, flushed to disk
and renamed into place, so a crash never leaves a half-written checkpoint under the real name; a
write that fails (a full disk) leaves the previous checkpoint as it was and raises ``CheckpointError``
naming both files. Temporary files a killed writer left behind are removed by the next save.
Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

import torch

from curriculum.adapters.atomic_file import atomic_write
from curriculum.core.run_location import CHECKPOINT_PATTERN

if TYPE_CHECKING:
    from hrm.config import ModelConfig

FORMAT = "hrm-curriculum-checkpoint/1"
KEEP = 2  # newest checkpoints kept per run


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file."""


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:09d}.pt"


def save_checkpoint(directory: Path, state: dict[str, Any], step: int, keep: int = KEEP) -> Path:
    """Write ``state`` as ``directory/checkpoint-<step>.pt`` atomically; prune older ones."""
    directory = Path(directory)
    target = directory / checkpoint_name(step)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        final = atomic_write(target, lambda handle: _torch_save({"format": FORMAT, "step": step, **state}, handle))
    except OSError as exc:
        previous = latest_checkpoint(directory)
        kept = f"the previous checkpoint {previous} is kept" if previous else "there is no earlier checkpoint"
        raise CheckpointError(f"cannot write checkpoint {target}: {exc.strerror or exc}; {kept}") from exc
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    _remove_leftovers(directory)
    return final


class _WriteErrors:
    """A file handle that remembers the OSError of a failed write: torch.save replaces it by an
    opaque RuntimeError ("unexpected pos ..."), and a full disk must be reported as what it is."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.error = handle, None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def _torch_save(state: dict[str, Any], handle: BinaryIO) -> None:
    recorder = _WriteErrors(handle)
    try:
        torch.save(state, recorder)
    except RuntimeError:
        if recorder.error is not None:
            raise recorder.error from None
        raise


def _remove_leftovers(directory: Path) -> None:
    """Temporary files (``.name.XXXX.tmp``) of a writer that was killed mid-write: never a checkpoint."""
    for path in directory.glob(".*.tmp"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


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
        with warnings.catch_warnings():  # torch warns about unusual pickles; the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first_line.startswith("Weights only load failed"):  # torch's advice (weights_only=False) is unsafe
            first_line = (
                "not a checkpoint of this project: it holds objects other than tensors and plain data, "
                "which are never unpickled"
            )
        raise CheckpointError(f"cannot load checkpoint {path}: {first_line}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this project (format {FORMAT})")
    return state


@contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Around restoring state read from ``path``: a missing entry or a shape that does not fit the model
    (a checkpoint of another run) becomes a ``CheckpointError`` naming the file."""
    try:
        yield
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        # torch's first line only says "Error(s) in loading state_dict"; the second names the tensor.
        text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])[:300]
        reason = f"no entry {text}" if isinstance(exc, KeyError) else text or type(exc).__name__
        raise CheckpointError(f"checkpoint {path} does not fit this run: {reason}") from None


def check_model_fits(path: Path, state: dict[str, Any], model_config: ModelConfig) -> None:
    """CheckpointError naming ``path`` unless its weights fit the model of ``model_config``.

    The model is built on the meta device: shapes only, no memory and no arithmetic, so a run can be
    checked before anything starts.
    """
    from hrm.model import HRM

    with torch.device("meta"):
        model = HRM(model_config)
    with restoring(path):
        model.load_state_dict(state["model"], assign=True)
