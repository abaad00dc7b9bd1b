"""The files a driver keeps for its run: ``config.json`` and ``run.json`` in the run directory and, when
``scaling.storage`` is set on Ray, the same two (and ``outcome.json`` at the end) in the run's storage
location ``<storage>/<run name>``, beside the checkpoints Ray Train keeps there. On a cluster, rank 0 may
train on another node than the driver's, and writes the run directory's checkpoints there; the storage
location is the one place that holds everything ``--resume`` needs, whichever node the driver runs on.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

from curriculum.adapters.run_storage import RunStorageError, read_text, write_text
from curriculum.core.config import RunConfig
from curriculum.core.outcome import RunOutcome
from curriculum.core.run_location import join, normal
from oracle.cli_errors import UsageError


def check_creatable(path: Path, option: str) -> None:
    """Refuse, before Ray, MLflow or any file exists, a directory this process cannot create or write."""
    existing = path.absolute()
    while not existing.exists():  # the nearest ancestor that exists: where mkdir would write
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is not a directory")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise UsageError(f"{option} {path}: {existing} is on a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {existing} is not writable")


def storage_location(config: RunConfig, storage_path: Optional[str], run_dir: Path) -> Optional[str]:
    """The run's storage location, ``<storage>/<run name>`` (the directory Ray Train writes checkpoints to),
    when ``scaling.storage`` is set and the run trains on Ray (``storage_path``); None otherwise."""
    if config.scaling.storage is None or storage_path is None:
        return None
    return normal(join(storage_path, run_dir.name))


def claim_location(location: str, config: RunConfig, *, new_run: bool) -> None:
    """Before anything else is created: a new run refuses a location that holds another run (Ray Train would
    restore that run's checkpoints into it), and the run's config is written there, which also proves the
    location writable. UsageError naming the location otherwise."""
    try:
        if new_run and read_text(location, "run.json") is not None:
            raise UsageError(
                f"scaling.storage: {location} already holds a run (resume it with --resume {location}, "
                "or give this run another name with --run-dir)"
            )
        write_text(location, "config.json", config.model_dump_json(indent=2))
    except RunStorageError as exc:
        raise UsageError(f"scaling.storage: {exc}") from None


def save_run_files(run_dir: Path, config: RunConfig, record: dict, location: Optional[str]) -> dict:
    """``config.json`` and ``run.json`` into the run directory and the storage location; returns the record
    as written (it names both places, so ``--resume`` of either finds the other)."""
    # A resume on the local backend keeps the storage location the run had on Ray.
    record = {**record, "run_dir": str(run_dir.absolute()), "storage": location or record.get("storage")}
    (run_dir / "config.json").write_text(config.model_dump_json(indent=2))
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))
    if location is not None:
        _to_storage(location, "run.json", json.dumps(record, indent=2))
    return record


def save_outcome(location: Optional[str], outcome: RunOutcome) -> None:
    if location is not None:
        _to_storage(location, "outcome.json", json.dumps(outcome.to_json(), indent=2))


def _to_storage(location: str, name: str, text: str) -> None:
    """A write that must not end a run that is training or has trained: a warning line if it fails."""
    try:
        write_text(location, name, text)
    except RunStorageError as exc:
        print(f"warning: {exc}; --resume {location} will not find it", file=sys.stderr)
