"""``--resume DIR``: the run's saved config (with any overrides) and record, checked against its newest
checkpoint before anything starts, so that a resume that cannot work is one line and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from curriculum.adapters.checkpoint import CheckpointError, check_model_fits, latest_checkpoint, load_checkpoint
from curriculum.core.config import RunConfig
from curriculum.core.overrides import config_from_raw
from curriculum.core.resume_check import resume_mismatch
from curriculum.core.scheduler import SchedulerState
from oracle.cli_errors import UsageError


def resolve_resume(run_dir: Path, overrides: Sequence[str]) -> tuple[RunConfig, Path, dict]:
    """Config, run directory and run record of the run in ``run_dir``; UsageError naming what is wrong."""
    saved_config = run_dir / "config.json"
    record_path = run_dir / "run.json"
    for path in (saved_config, record_path):
        if not path.is_file():
            raise UsageError(f"--resume {run_dir}: missing {path.name} (not a run directory)")
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is None:
        raise UsageError(f"--resume {run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    try:
        saved = json.loads(saved_config.read_text())
    except ValueError:
        raise UsageError(f"--resume {run_dir}: {saved_config.name} is not valid JSON") from None
    config = config_from_raw(saved, overrides)
    try:  # a checkpoint copied in from another run is refused now, not by the workers later
        check_model_fits(checkpoint, state, config.model)
    except CheckpointError as exc:
        raise UsageError(str(exc)) from None
    try:  # an edited config.json or overrides that rewrite the ladder already trained
        problem = resume_mismatch(
            RunConfig.model_validate_json(state["config"]),
            config,
            SchedulerState.model_validate_json(state["scheduler"]),
        )
    except (KeyError, TypeError, ValueError):
        problem = None  # a checkpoint without that record: the loop's own checks apply
    if problem:
        raise UsageError(f"--resume {run_dir}: {problem}")
    return config, run_dir, _read_record(record_path)


def _read_record(path: Path) -> dict:
    """A run's ``run.json``: a mapping with its MLflow run id (None without MLflow) and tracking URI."""
    try:
        record = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"--resume {path.parent}: {path.name} is not valid JSON") from None
    if not isinstance(record, dict) or "run_id" not in record or "tracking_uri" not in record:
        raise UsageError(f"--resume {path.parent}: {path.name} is not a run record (no run_id and tracking_uri)")
    if not isinstance(record["run_id"], (str, type(None))) or not isinstance(record["tracking_uri"], (str, type(None))):
        raise UsageError(f"--resume {path.parent}: {path.name} holds a run_id or tracking_uri that is not text")
    return record
