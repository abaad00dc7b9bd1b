"""Where a run's params, metrics, tags and artifacts go: a small tracker interface and its plain implementations.

MLflow is deliberately not imported here: the training loop must also run on a machine without it. Such a run
logs to a ``FileTracker`` directory, and ``replay_into`` carries that directory into MLflow afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Protocol, Union, cast

from curriculum.adapters.atomic_file import atomic_write
from curriculum.core.outcome import TERMINAL_STATUSES, RunStatus

# MLflow rejects a param value longer than this (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH).
MAX_PARAM_VALUE_CHARS = 6000
TRUNCATION_MARKER = "...[truncated]"

ParamValue = Union[str, int, float, bool, None]


class Tracker(Protocol):
    """What the training loop logs to. ``timestamp`` (seconds since the epoch) is optional: only a replay sets it."""

    def log_params(self, params: dict[str, object]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: Optional[float] = None) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...

    def finish(self, status: RunStatus) -> None: ...


def check_status(status: str) -> RunStatus:
    """``status`` if it is one of FINISHED, FAILED, KILLED; a ValueError otherwise."""
    if status not in TERMINAL_STATUSES:
        raise ValueError(f"status must be one of {', '.join(TERMINAL_STATUSES)}, not {status!r}")
    return cast(RunStatus, status)


class NullTracker:
    """Logs nothing: what every rank but rank 0 gets."""

    def log_params(self, params: dict[str, object]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: Optional[float] = None) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        pass

    def finish(self, status: RunStatus) -> None:
        check_status(status)


class FileTracker:
    """Logs to ``run_dir/tracking/``: ``metrics.jsonl``, ``params.json``, ``tags.json``, ``artifacts/``,
    ``status.json``.

    Metric lines are appended and flushed one whole line per call, so a crash loses at most the line being
    written; the JSON files are replaced atomically, so a reader never sees half of one. A second tracker on
    the same directory (a resumed run) appends to the same history.
    """

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir) / "tracking"
        self.root.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.root / "metrics.jsonl"
        self.artifacts_dir = self.root / "artifacts"

    def log_params(self, params: dict[str, object]) -> None:
        self._merge_json("params.json", params)

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: Optional[float] = None) -> None:
        line = {
            "step": int(step),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "time": time.time() if timestamp is None else float(timestamp),
        }
        # One write of one full line in append mode: concurrent readers see whole lines only.
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()

    def set_tags(self, tags: dict[str, str]) -> None:
        self._merge_json("tags.json", {k: str(v) for k, v in tags.items()})

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        source = Path(path)
        target_dir = self.artifacts_dir / artifact_path if artifact_path else self.artifacts_dir
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / source.name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            # Copy beside the target, then rename: a half-copied artifact is never visible.
            tmp = target_dir / f".{source.name}.partial"
            shutil.copy2(source, tmp)
            os.replace(tmp, target)

    def finish(self, status: RunStatus) -> None:
        atomic_write_json(self.root / "status.json", {"status": check_status(status), "time": time.time()})

    def _merge_json(self, name: str, values: dict[str, object]) -> None:
        path = self.root / name
        current = read_json(path) or {}
        current.update(values)
        atomic_write_json(path, current)


def atomic_write_json(path: Path, value: object) -> None:
    """Write ``value`` as JSON, atomically (see ``curriculum.adapters.atomic_file``)."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def read_json(path: Path) -> Optional[dict]:
    """The JSON object in ``path``, or None when the file does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def replay_into(run_dir: Path, tracker: Tracker) -> int:
    """Re-log the ``FileTracker`` directory of ``run_dir`` into ``tracker``; returns the number of metric lines.

    Params, tags, every metric line at its step and original time, every artifact under its artifact path,
    then the final status. A run that never wrote ``status.json`` (its process died) is finished as KILLED.
    A torn last line (a crash in mid-write) is skipped with a warning; a torn line elsewhere is an error.
    """
    root = Path(run_dir) / "tracking"
    if not root.is_dir():
        raise FileNotFoundError(f"no tracking directory in {run_dir}")
    params = read_json(root / "params.json")
    if params:
        tracker.log_params(params)
    tags = read_json(root / "tags.json")
    if tags:
        tracker.set_tags(tags)

    count = 0
    metrics_path = root / "metrics.jsonl"
    lines = metrics_path.read_text(encoding="utf-8").splitlines() if metrics_path.exists() else []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            if number == len(lines):
                print(f"tracking: warning: skipped the torn last line of {metrics_path}", file=sys.stderr)
                break
            raise ValueError(f"{metrics_path}:{number}: not a JSON line") from None
        tracker.log_metrics(record["metrics"], int(record["step"]), timestamp=record.get("time"))
        count += 1

    artifacts = root / "artifacts"
    if artifacts.is_dir():
        for file in sorted(p for p in artifacts.rglob("*") if p.is_file() and not p.name.endswith(".partial")):
            parent = file.parent.relative_to(artifacts).as_posix()
            tracker.log_artifact(file, None if parent == "." else parent)

    status = read_json(root / "status.json")
    tracker.finish(check_status(status["status"]) if status else "KILLED")
    return count


def flatten_config(config: dict, prefix: str = "") -> dict[str, ParamValue]:
    """Nested dicts and lists as dotted keys (``train.lr``, ``curriculum.stages.0.gate.threshold``).

    Numbers, booleans, None and strings stay as they are; any other leaf becomes its ``str``. Strings longer
    than MLflow's param limit are cut and end with ``TRUNCATION_MARKER``. An empty dict or list stays visible
    as ``"{}"`` / ``"[]"`` instead of vanishing.
    """
    flat: dict[str, ParamValue] = {}
    items = config.items() if isinstance(config, dict) else enumerate(config)
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (dict, list, tuple)):
            if value:
                flat.update(flatten_config(value, name))
            else:
                flat[name] = "{}" if isinstance(value, dict) else "[]"
        elif value is None or isinstance(value, (bool, int, float)):
            flat[name] = value
        else:
            flat[name] = _fit_param(str(value))
    return flat


def _fit_param(text: str) -> str:
    if len(text) <= MAX_PARAM_VALUE_CHARS:
        return text
    return text[: MAX_PARAM_VALUE_CHARS - len(TRUNCATION_MARKER)] + TRUNCATION_MARKER


class MultiTracker:
    """Sends every call to each tracker in turn (e.g. MLflow and a file log).

    A tracker that raises does not keep the others from getting the call; the first error is raised after all
    of them have been called.
    """

    def __init__(self, *trackers: Tracker) -> None:
        self.trackers = trackers

    def log_params(self, params: dict[str, object]) -> None:
        self._each(lambda t: t.log_params(params))

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: Optional[float] = None) -> None:
        self._each(lambda t: t.log_metrics(metrics, step, timestamp=timestamp))

    def set_tags(self, tags: dict[str, str]) -> None:
        self._each(lambda t: t.set_tags(tags))

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        self._each(lambda t: t.log_artifact(path, artifact_path))

    def finish(self, status: RunStatus) -> None:
        check_status(status)
        self._each(lambda t: t.finish(status))

    def _each(self, call) -> None:
        first: Optional[BaseException] = None
        for tracker in self.trackers:
            try:
                call(tracker)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the other trackers
                first = first or exc
        if first is not None:
            raise first
