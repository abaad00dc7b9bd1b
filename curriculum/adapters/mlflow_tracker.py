"""The MLflow Tracker: metrics, params, tags and artifacts of one run, surviving an unreachable server.

MLflow is imported only inside functions, so importing this costs nothing and works where MLflow is not
installed. Tracking URIs and the run's life cycle live in ``curriculum.adapters.mlflow_store``.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from curriculum.adapters.mlflow_store import make_client
from curriculum.adapters.tracking import check_status
from curriculum.core.outcome import RunStatus

if TYPE_CHECKING:
    pass

# MLflow's batch limits (mlflow.utils.validation): metrics, and params or tags, per log_batch call.
METRICS_PER_BATCH = 1000
PARAMS_PER_BATCH = 100

LOST_METRICS_TAG = "tracking.lost_metrics"

# Errors the server answers with for a request that will never succeed: retrying them is pointless.
_PERMANENT_ERRORS = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_DOES_NOT_EXIST",
    "RESOURCE_ALREADY_EXISTS",
    "INVALID_STATE",
    "BAD_REQUEST",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "CUSTOMER_UNAUTHORIZED",
}


class MlflowTracker:
    """A Tracker that logs into one MLflow run and never lets an unreachable server stop training.

    A call that fails for a transient reason (connection refused, timeout, 5xx, a locked database) is retried
    ``attempts`` times with a doubling backoff from ``backoff_s``; then it is queued and the tracker is
    *degraded*: each later call first retries the queue (at most once per ``retry_interval_s``), and
    ``finish`` retries it once more. The queue holds at most ``max_queued`` metric points; older points are
    dropped beyond that. Dropped points, points rejected by the server and points still queued at ``finish``
    are counted in ``lost_metrics``, reported as the run tag ``tracking.lost_metrics`` and on stderr.
    """

    def __init__(
        self,
        uri: str,
        run_id: str,
        *,
        attempts: int = 3,
        backoff_s: float = 0.25,
        retry_interval_s: float = 10.0,
        max_queued: int = 100_000,
    ) -> None:
        self.uri, self.run_id = uri, run_id
        self.attempts, self.backoff_s = max(1, attempts), backoff_s
        self.retry_interval_s, self.max_queued = retry_interval_s, max_queued
        self.client = make_client(uri)
        self.lost_metrics = 0
        self._reported_lost = 0
        # Pending calls in order: (kind, payload, metric points); kind is metrics, params, tags or artifact.
        self._queue: deque[tuple[str, object, int]] = deque()
        self._degraded_since: Optional[float] = None
        self._last_try = 0.0
        self._system_metrics = None
        self._logged_through: dict[str, int] = {}  # per key: the last step the run held when it resumed

    def skip_logged_steps(self) -> None:
        """Log no point at a step the run already holds for that key.

        A restart (a worker, or the driver with ``--resume``) goes on from the last checkpoint, so it
        trains again the steps between that checkpoint and the crash, which the run logged once
        already; MLflow keeps every point it is sent, and its charts would hold those steps twice.
        """
        try:
            run = self.client.get_run(self.run_id)
        except Exception as exc:  # noqa: BLE001 - unreachable now: the queue copes, at worst a step twice
            _warn(f"could not read run {self.run_id}'s last steps: {_first_line(exc)}")
            return
        self._logged_through = {m.key: m.step for m in run.data._metric_objs}

    def start_system_metrics(self, every_s: float, node: Optional[str] = None) -> None:
        """Log MLflow's system metrics (``system/*``) every ``every_s`` seconds from a thread until ``finish``.

        They continue the run's ``system/`` steps on a resume. Best effort: without psutil, or when the
        store refuses, the run goes on without them (one warning).
        """
        if every_s <= 0 or self._system_metrics is not None:
            return
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(
                self.run_id, sampling_interval=every_s, resume_logging=True, node_id=node, tracking_uri=self.uri
            )
        except Exception as exc:  # noqa: BLE001 - e.g. psutil missing, or the store unreachable
            _warn(f"no system metrics for run {self.run_id}: {_first_line(exc)}")
            return
        monitor.start()
        self._system_metrics = monitor

    @property
    def queued_metrics(self) -> int:
        """Metric points waiting for the server."""
        return sum(points for _, _, points in self._queue)

    # ------------------------------------------------------------------ Tracker

    def log_params(self, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), "None" if v is None else str(v)) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._queue.append(("params", items[i : i + PARAMS_PER_BATCH], 0))
        self._deliver()

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: Optional[float] = None) -> None:
        from mlflow.entities import Metric

        millis = int((time.time() if timestamp is None else timestamp) * 1000)
        items = [
            Metric(str(k), float(v), millis, int(step))
            for k, v in metrics.items()
            if int(step) > self._logged_through.get(str(k), -1)
        ]
        for i in range(0, len(items), METRICS_PER_BATCH):
            chunk = items[i : i + METRICS_PER_BATCH]
            self._queue.append(("metrics", chunk, len(chunk)))
        self._deliver()
        self._trim_queue()  # only what could not be delivered counts against the limit

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(k), str(v)) for k, v in tags.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._queue.append(("tags", items[i : i + PARAMS_PER_BATCH], 0))
        self._deliver()

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        # A queued artifact is read when it is delivered, not now: it must not be deleted meanwhile.
        self._queue.append(("artifact", (str(path), artifact_path), 0))
        self._deliver()

    def finish(self, status: RunStatus) -> None:
        """Deliver what is queued, report lost points, and set the run's terminal status."""
        check_status(status)
        if self._system_metrics is not None:  # its last points go in before the run is closed
            self._system_metrics.finish()
            self._system_metrics = None
        self._deliver(force=True)
        if self._queue:
            others = [kind for kind, _, _ in self._queue if kind != "metrics"]
            if others:
                _warn(f"lost {len(others)} queued params/tags/artifact calls at the end of the run")
            self._drop(self.queued_metrics, "still queued at the end of the run")
            self._queue.clear()
        if self.lost_metrics > self._reported_lost:
            self._report_lost()
        if not self._call(lambda: self.client.set_terminated(self.run_id, status), "set the run status"):
            _warn(f"run {self.run_id} could not be marked {status}; it stays RUNNING in MLflow")

    # ------------------------------------------------------------------ delivery

    def _deliver(self, force: bool = False) -> None:
        """Send queued calls in order; stop at the first transient failure, keeping it and the rest queued."""
        if self._degraded_since is not None and not force:
            if time.monotonic() - self._last_try < self.retry_interval_s:
                return
        was_degraded = self._degraded_since is not None
        delivered = 0
        while self._queue:
            kind, payload, points = self._queue[0]
            # Degraded: one probe per call, so a dead server costs one timeout, not attempts x timeout.
            tries = 1 if self._degraded_since is not None and not force else self.attempts
            outcome = self._send(kind, payload, tries)
            if outcome == "retry":
                if self._degraded_since is None:
                    self._degraded_since = time.monotonic()
                    _warn(f"MLflow at {self.uri} is unreachable; queuing tracking calls and retrying later")
                return
            self._queue.popleft()
            if outcome == "rejected":
                self._drop(points, f"rejected by MLflow ({kind})")
            else:
                delivered += points
        self._degraded_since = None
        if was_degraded:
            _warn(f"MLflow at {self.uri} is reachable again; delivered {delivered} queued metric points")
        if self.lost_metrics > self._reported_lost:
            self._report_lost()

    def _send(self, kind: str, payload: object, tries: int) -> str:
        """``ok``, ``rejected`` (permanent error, dropped) or ``retry`` (transient error, keep queued)."""

        def call() -> None:
            if kind == "metrics":
                self.client.log_batch(self.run_id, metrics=payload, synchronous=True)
            elif kind == "params":
                self.client.log_batch(self.run_id, params=payload, synchronous=True)
            elif kind == "tags":
                self.client.log_batch(self.run_id, tags=payload, synchronous=True)
            else:
                path, artifact_path = payload
                if Path(path).is_dir():
                    self.client.log_artifacts(self.run_id, path, artifact_path)
                else:
                    self.client.log_artifact(self.run_id, path, artifact_path)

        for attempt in range(tries):
            self._last_try = time.monotonic()
            try:
                call()
                return "ok"
            except Exception as exc:  # noqa: BLE001 - logging must never stop training
                if _is_permanent(exc):
                    _warn(f"MLflow refused to log {kind}: {_first_line(exc)}")
                    return "rejected"
                if attempt + 1 < tries:
                    time.sleep(self.backoff_s * 2**attempt)
        return "retry"

    def _call(self, fn: Callable[[], object], what: str) -> bool:
        """Run one request with the retry policy; True when it went through."""
        for attempt in range(self.attempts):
            try:
                fn()
                return True
            except Exception as exc:  # noqa: BLE001 - logging must never stop training
                if _is_permanent(exc) or attempt + 1 == self.attempts:
                    _warn(f"could not {what} in MLflow: {_first_line(exc)}")
                    return False
                time.sleep(self.backoff_s * 2**attempt)
        return False

    def _trim_queue(self) -> None:
        """Drop the oldest metric chunks (never params, tags or artifacts) beyond ``max_queued`` points."""
        excess = self.queued_metrics - self.max_queued
        if excess <= 0:
            return
        kept: deque[tuple[str, object, int]] = deque()
        dropped = 0
        for item in self._queue:
            kind, payload, points = item
            if kind == "metrics" and excess > 0:
                cut = min(points, excess)
                excess -= cut
                dropped += cut
                if cut < points:
                    kept.append((kind, payload[cut:], points - cut))
            else:
                kept.append(item)
        self._queue = kept
        self._drop(dropped, f"over the queue limit of {self.max_queued} points")

    def _drop(self, points: int, why: str) -> None:
        if points:
            self.lost_metrics += points
            _warn(f"lost {points} metric points ({why}); {self.lost_metrics} lost in this run so far")

    def _report_lost(self) -> None:
        if self._call(
            lambda: self.client.set_tag(self.run_id, LOST_METRICS_TAG, str(self.lost_metrics)),
            f"set the tag {LOST_METRICS_TAG}",
        ):
            self._reported_lost = self.lost_metrics


def run_tracker(run_dir: Path, uri: Optional[str], run_id: Optional[str], system_metrics_every_s: float = 0.0):
    """The tracker of a training process: the run directory's file log, and MLflow (with system metrics)
    when the run has an MLflow run."""
    from curriculum.adapters.tracking import FileTracker, MultiTracker

    trackers = [FileTracker(run_dir)]
    if run_id is not None and uri is not None:
        mlflow_tracker = MlflowTracker(uri, run_id)
        mlflow_tracker.skip_logged_steps()
        mlflow_tracker.start_system_metrics(system_metrics_every_s)
        trackers.insert(0, mlflow_tracker)
    return MultiTracker(*trackers)


def _is_permanent(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _PERMANENT_ERRORS
    return isinstance(exc, (FileNotFoundError, IsADirectoryError, TypeError, ValueError))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _warn(message: str) -> None:
    print(f"tracking: warning: {message}", file=sys.stderr, flush=True)
