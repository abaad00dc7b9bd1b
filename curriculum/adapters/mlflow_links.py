"""Links into the MLflow UI that open on what a training service writes: the experiment's runs table.

MLflow 3's UI keeps a GenAI / model-training mode of its own (in the browser, GenAI by default) and
opens an experiment on the GenAI overview in GenAI mode, whatever the experiment's kind tag says.
The ``workflowType=machine_learning`` query switches it to model training, on the runs table.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlparse

from curriculum.core.uris import HIDDEN, redact_uri

# Where ``mlflow ui`` / ``mlflow server`` listen unless told otherwise.
DEFAULT_UI = "http://127.0.0.1:5000"


def ui_base(uri: str) -> str:
    """The UI's address: the tracking server itself, or the default ``mlflow ui`` address for a SQLite store."""
    # A link is printed and shared: never with the URI's credentials.
    return (
        redact_uri(uri).replace(f"{HIDDEN}@", "").rstrip("/")
        if urlparse(uri).scheme in ("http", "https")
        else DEFAULT_UI
    )


def runs_table_link(uri: str, experiment_id: str, run_id: Optional[str] = None) -> str:
    """The experiment's runs table (or one run's page) in the model-training mode of the UI."""
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{ui_base(uri)}/{page}?workflowType=machine_learning"


def run_link(uri: str, run_id: str) -> Optional[str]:
    """The run's page, or None when the store cannot be asked (the link is a convenience, never an error)."""
    from curriculum.adapters.mlflow_store import make_client

    try:
        experiment_id = make_client(uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - an unreachable server must not fail the run for a link
        return None
    return runs_table_link(uri, experiment_id, run_id)
