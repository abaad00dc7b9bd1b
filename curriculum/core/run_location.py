"""Where a run's state lives: its run directory on the driver's machine and, with ``scaling.storage`` set,
its storage location ``<storage>/<run name>`` that every node reaches (a shared path or a URI such as
s3://). Pure logic over location strings; the I/O is ``curriculum.adapters.run_storage``.

In a storage location the driver keeps ``config.json``, ``run.json`` and ``outcome.json``, and Ray Train
keeps the checkpoints it was given, one directory per report: ``checkpoint_<time>/checkpoint-<step>.pt``.
A run directory keeps its checkpoints in ``checkpoints/``, on the node where rank 0 ran.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d{9})\.pt$")
RAY_CHECKPOINT_DIR = re.compile(r"^checkpoint_")  # Ray Train's name for a reported checkpoint's directory
# "s3://bucket/x", "gs://...", "file:///x"; a one-letter scheme is a Windows drive ("C:\\runs").
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+)://(?P<rest>.*)$")


def is_uri(location: str) -> bool:
    """True for ``scheme://...`` (``file://`` included), False for a plain path."""
    return _URI.match(location) is not None


def _strip(location: str) -> str:
    """``location`` without trailing slashes (a bare ``/`` or ``s3://`` root kept as it is)."""
    stripped = location.rstrip("/")
    return stripped if stripped and not stripped.endswith(":") else location


def join(location: str, *names: str) -> str:
    """``location/name/...`` for a path or a URI alike (a URI keeps its scheme and its ``//``)."""
    return posixpath.join(_strip(location), *names) if names else location


def split_location(location: str) -> tuple[str, str]:
    """``(storage, run name)`` of a storage location ``<storage>/<run name>``; ValueError without a name."""
    stripped = _strip(location)
    match = _URI.match(stripped)
    rest = match.group("rest") if match else stripped
    parent, _, name = rest.rpartition("/")
    if not name or name in (".", "..") or (match and not parent):
        raise ValueError(f"{location} names no run: expected <storage>/<run name>")
    if match:
        return f"{match.group('scheme')}://{parent}", name
    return (parent or ("/" if stripped.startswith("/") else ".")), name


def normal(location: str, cwd: Optional[Path] = None) -> str:
    """A comparable form: URIs without trailing slashes and with the scheme in lower case; plain paths made
    absolute against ``cwd`` (default: the current directory) and normalised."""
    match = _URI.match(location)
    if match:
        return f"{match.group('scheme').lower()}://{_strip(match.group('rest'))}"
    base = Path(cwd) if cwd is not None else Path.cwd()
    return posixpath.normpath(str(base / location))


def same_location(a: Optional[str], b: Optional[str], cwd: Optional[Path] = None) -> bool:
    return a is not None and b is not None and normal(a, cwd) == normal(b, cwd)


def checkpoint_step(location: str) -> Optional[int]:
    """The step in a checkpoint's file name (``.../checkpoint-000000040.pt`` -> 40), or None."""
    match = CHECKPOINT_PATTERN.match(posixpath.basename(_strip(location)))
    return int(match.group(1)) if match else None


def newest_checkpoint(candidates: Iterable[Optional[str]]) -> Optional[str]:
    """The checkpoint of the highest step; on a tie the first given wins. None and names that are not
    checkpoints are skipped."""
    best, best_step = None, -1
    for candidate in candidates:
        step = checkpoint_step(str(candidate)) if candidate is not None else None
        if step is not None and step > best_step:
            best, best_step = str(candidate), step
    return best


def checkpoints_in_listing(location: str, entries: Iterable[tuple[str, bool]]) -> list[str]:
    """Which entries of a recursive listing of ``location`` (``(relative path, is a directory)``) are the
    run's checkpoints: ``checkpoints/<file>`` of a run directory, ``checkpoint_*/<file>`` of Ray Train."""
    found = []
    for relative, is_dir in entries:
        parts = relative.strip("/").split("/")
        if is_dir or len(parts) != 2 or not CHECKPOINT_PATTERN.match(parts[1]):
            continue
        if parts[0] == "checkpoints" or RAY_CHECKPOINT_DIR.match(parts[0]):
            found.append(join(location, *parts))
    return found


@dataclass(frozen=True)
class RunPlaces:
    """Where a resumed run lives: ``run_dir`` on this machine (its lock and the driver's files; created
    when missing) and ``storage``, its storage location (None: the run has none)."""

    run_dir: Path
    storage: Optional[str]
    from_storage: bool  # --resume named the storage location, not a run directory


def run_places(given: str, record: Mapping[str, Any], runs_root: Path, cwd: Optional[Path] = None) -> RunPlaces:
    """Where the run found at ``given`` (its ``run.json`` is ``record``) goes on.

    A URI, or the path the record names as the run's storage location (and not as its run directory), is
    the storage location: the run goes on there, with a run directory ``runs_root/<run name>`` on this
    machine. Anything else is a run directory, whose storage location is the one its record names.
    """
    recorded = record.get("storage")
    if is_uri(given) or (same_location(given, recorded, cwd) and not same_location(given, record.get("run_dir"), cwd)):
        return RunPlaces(Path(runs_root) / split_location(given)[1], given, True)
    return RunPlaces(Path(given), recorded if isinstance(recorded, str) else None, False)
