"""The MLflow store: tracking URIs, clients, and the life cycle of a run (create, find, reopen, mark killed).

MLflow is imported only inside functions, so importing this costs nothing and works where MLflow is not
installed. Every call goes through an explicit ``MlflowClient`` (never the fluent ``mlflow.start_run``
global state): one process may handle several runs (tests, the tuner).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlparse

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

# A training step must not wait minutes on a dead server (MLflow's defaults: 120 s timeout, 7 retries);
# the tracker retries with a short backoff instead, and then queues the points.
# MLflow's own "View run at" lines are not printed: they repeat the link the run prints, with any
# credentials the URI holds (the run's own link never has them).
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}

# The MLflow UI opens an experiment of this kind on its runs table; an untagged one it may take for a
# GenAI experiment and open on the traces overview, which a training service never writes.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"


def resolve_tracking_uri(configured: Optional[str]) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<absolute path of ./mlflow.db>``.

    A relative SQLite path is made absolute, so that Ray workers in other working directories write to the
    same file. The ``./mlruns`` file store (a ``file:`` URI or a plain directory path) is refused.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return "sqlite:///" + str(Path("mlflow.db").absolute())
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        raise ValueError(
            f"{uri!r} is a file store, which is not supported with MLflow 3; "
            "use sqlite:///path/to/mlflow.db or http(s)://host:port"
        )
    if scheme == "sqlite":
        path, sep, query = uri[len("sqlite:///") :].partition("?")
        if uri.startswith("sqlite:///") and path and not path.startswith("/"):
            return "sqlite:///" + str(Path(path).absolute()) + sep + query
    return uri


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (None for other URIs and in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].partition("?")[0]
    return Path(path) if path else None


def make_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` for ``uri``; for http(s) with short timeouts unless the environment sets them."""
    if urlparse(uri).scheme in ("http", "https"):
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def create_run(uri: str, experiment: str, run_name: Optional[str], tags: Optional[dict[str, str]] = None) -> str:
    """Create a RUNNING run in ``experiment`` (created if missing, and marked as a training experiment) and
    return its id."""
    from mlflow.exceptions import MlflowException

    client = _client_on_ready_store(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = client.create_experiment(experiment, artifact_location=_artifact_location(uri))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another process created it meanwhile
                raise
            experiment_id = client.get_experiment_by_name(experiment).experiment_id
    elif found.lifecycle_stage == "deleted":
        raise ValueError(f"MLflow experiment {experiment!r} is deleted; restore it or choose another name")
    else:
        experiment_id = found.experiment_id
    if found is None or EXPERIMENT_KIND_TAG not in found.tags:  # a kind someone chose in the UI is kept
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()})
    return run.info.run_id


def _client_on_ready_store(uri: str) -> MlflowClient:
    """A client whose store is open; opening a SQLite store is serialised across processes.

    Opening a new ``mlflow.db`` creates its tables and runs MLflow's schema migrations. Two runs
    started at once would both do it, and the loser fails ("table ... already exists", "duplicate
    column name") or leaves a store that never opens again. An exclusive lock on ``mlflow.db.lock``
    (a separate file: closing any descriptor of the database itself would drop SQLite's own locks)
    lets one process create the schema while the others wait and then find it complete.
    """
    db = sqlite_path(uri)
    if db is None:
        return make_client(uri)
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        client = make_client(uri)
        client.search_experiments(max_results=1)
    return client


def _artifact_location(uri: str) -> Optional[str]:
    # MLflow's default artifact root for a SQLite store is ./mlruns of whichever process opened the store
    # first; put artifacts beside the database so that every process (and `mlflow ui`) finds them.
    db = sqlite_path(uri)
    return (db.absolute().parent / "mlartifacts").as_uri() if db is not None else None


def find_run(uri: str, run_id: str) -> Optional[Run]:
    """The run, or None when the store has no run with that id."""
    from mlflow.exceptions import MlflowException

    try:
        return make_client(uri).get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def run_status(uri: str, run_id: str) -> str:
    """RUNNING, FINISHED, FAILED, KILLED or SCHEDULED; LookupError for an unknown run."""
    run = find_run(uri, run_id)
    if run is None:
        raise LookupError(f"no MLflow run {run_id} at {uri}")
    return run.info.status


def mark_killed_if_orphaned(uri: str, run_id: str) -> bool:
    """Call only when the run's driver is known to be gone: a run still RUNNING is set KILLED (True)."""
    run = find_run(uri, run_id)
    if run is None or run.info.status != "RUNNING":
        return False
    client = make_client(uri)
    if "curriculum.outcome" not in run.data.tags:
        client.set_tag(run_id, "curriculum.outcome", "killed")
    client.set_terminated(run_id, "KILLED")
    return True


def reopen_run(uri: str, run_id: str) -> None:
    """Set a run back to RUNNING (a resumed run logs into the same MLflow run)."""
    make_client(uri).update_run(run_id, status="RUNNING")
