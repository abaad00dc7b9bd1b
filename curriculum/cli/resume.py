"""``--resume DIR`` or ``--resume LOCATION``: the run's saved config (with any overrides), its record and its
newest checkpoint, checked before anything starts, so that a resume that cannot work is one line and
changes nothing.

DIR is a run directory; LOCATION is the run's storage location ``<scaling.storage>/<run name>`` (a path
every node sees, or a URI such as s3://), where the driver keeps ``config.json`` and ``run.json`` and
Ray Train the checkpoints. Either way the newest checkpoint is looked for in both places: on a cluster,
rank 0 wrote the run directory's checkpoints on its own node, which may not be this one. Resumed from its
storage location, the run goes on writing there, with a run directory ``runs/<run name>`` here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from curriculum.adapters.checkpoint import CheckpointError, check_model_fits, load_checkpoint
from curriculum.adapters.run_storage import RunStorageError, list_checkpoints, local_copy, read_text
from curriculum.cli.run_files import check_creatable
from curriculum.core.config import RunConfig
from curriculum.core.overrides import config_from_raw
from curriculum.core.resume_check import resume_mismatch
from curriculum.core.run_location import is_uri, newest_checkpoint, normal, run_places, split_location
from curriculum.core.scheduler import SchedulerState
from oracle.cli_errors import UsageError


@dataclass(frozen=True)
class Resumed:
    config: RunConfig
    run_dir: Path  # on this machine; created when the run was found in its storage location only
    record: dict  # run.json
    checkpoint: str  # the newest checkpoint, a path or a URI


def resolve_resume(given: str, overrides: Sequence[str], runs_root: Path = Path("runs")) -> Resumed:
    """The run found at ``given`` (a run directory or a storage location); UsageError naming what is wrong."""
    if not is_uri(given):
        check_creatable(Path(given), "--resume")
    try:
        texts = {name: read_text(given, name) for name in ("config.json", "run.json")}
    except RunStorageError as exc:
        raise UsageError(f"--resume {exc}") from None
    for name, text in texts.items():
        if text is None:
            raise UsageError(f"--resume {given}: missing {name} (not a run directory or a run's storage location)")
    record = _read_record(texts["run.json"], given)
    try:
        saved = json.loads(texts["config.json"])
    except ValueError:
        raise UsageError(f"--resume {given}: config.json is not valid JSON") from None
    places = run_places(given, record, runs_root)
    if places.from_storage:
        _check_local_dir(places.run_dir, record, given)
        # The run goes on writing where it was found (a bucket or share may be mounted elsewhere now).
        saved.setdefault("scaling", {})["storage"] = split_location(normal(given))[0]
    checkpoint = _newest(places.run_dir, places.storage, given)
    config = config_from_raw(saved, overrides)
    _check_checkpoint(checkpoint, config, given)
    return Resumed(config, places.run_dir, record, checkpoint)


def _newest(run_dir: Path, storage: Optional[str], given: str) -> str:
    """The newest checkpoint in the storage location and in the run directory (a tie goes to the storage
    location, which every node reads)."""
    found = []
    for location in (storage, str(run_dir) if run_dir.is_dir() else None):
        if location is None:
            continue
        try:
            found += list_checkpoints(location)
        except RunStorageError as exc:
            raise UsageError(f"--resume {given}: {exc}") from None
    newest = newest_checkpoint(found)
    if newest is None:
        places = " or ".join(f"{where}" for where in (storage, str(run_dir / "checkpoints")) if where is not None)
        raise UsageError(f"--resume {given}: no checkpoint in {places}")
    return newest


def _check_checkpoint(checkpoint: str, config: RunConfig, given: str) -> None:
    """The checkpoint loads, fits the model and was trained on the ladder the config keeps."""
    try:
        with local_copy(checkpoint) as path:
            try:
                state = load_checkpoint(path)
                # a checkpoint copied in from another run is refused now, not by the workers later
                check_model_fits(path, state, config.model)
            except CheckpointError as exc:
                raise UsageError(str(exc).replace(str(path), checkpoint)) from None
    except RunStorageError as exc:
        raise UsageError(f"--resume {given}: {exc}") from None
    try:  # an edited config.json or overrides that rewrite the ladder already trained
        problem = resume_mismatch(
            RunConfig.model_validate_json(state["config"]),
            config,
            SchedulerState.model_validate_json(state["scheduler"]),
        )
    except (KeyError, TypeError, ValueError):
        problem = None  # a checkpoint without that record: the loop's own checks apply
    if problem:
        raise UsageError(f"--resume {given}: {problem}")


def _check_local_dir(run_dir: Path, record: dict, given: str) -> None:
    """The run directory a run resumed from its storage location gets here: new, or this run's own."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--resume {given}: its run directory here, {run_dir}, is a file")
    here = run_dir / "run.json"
    if here.is_file():
        try:
            mine = json.loads(here.read_text()).get("run_id") == record["run_id"]
        except (ValueError, UnicodeDecodeError, AttributeError):
            mine = False
        if not mine:
            raise UsageError(f"--resume {given}: {run_dir} here holds another run; move it away first")
    elif run_dir.is_dir() and any(run_dir.iterdir()):
        raise UsageError(f"--resume {given}: {run_dir} here already holds files; move them away first")
    check_creatable(run_dir, f"--resume {given}: run directory")


def _read_record(text: str, given: str) -> dict:
    """A run's ``run.json``: a mapping with its MLflow run id (None without MLflow) and tracking URI, and,
    where it has one, its storage location."""
    try:
        record = json.loads(text)
    except ValueError:
        raise UsageError(f"--resume {given}: run.json is not valid JSON") from None
    if not isinstance(record, dict) or "run_id" not in record or "tracking_uri" not in record:
        raise UsageError(f"--resume {given}: run.json is not a run record (no run_id and tracking_uri)")
    for key in ("run_id", "tracking_uri", "storage", "run_dir"):
        if not isinstance(record.get(key), (str, type(None))):
            raise UsageError(f"--resume {given}: run.json holds a {key} that is not text")
    return record
