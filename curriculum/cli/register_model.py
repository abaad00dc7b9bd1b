"""``curriculum.evaluate --register NAME``: log a checkpoint's weights as an MLflow model of its run and register it.

Checked before any evaluation (a name MLflow accepts, MLflow importable, a run to log into), done after it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from curriculum.adapters.checkpoint import restoring
from curriculum.core.config import RunConfig
from curriculum.core.uris import usable_uri
from oracle.cli_errors import UsageError


def check_register(args) -> None:
    """A name MLflow can register, and an MLflow to register with: checked before any evaluation."""
    from curriculum.adapters.mlflow_model import check_model_name

    try:
        check_model_name(args.register)
    except ValueError as exc:
        raise UsageError(f"--register: {exc}") from None
    if args.no_mlflow:
        raise UsageError("--register logs into the run's MLflow run; it cannot go with --no-mlflow")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise UsageError("--register needs MLflow, which is not installed here") from None


def registry_run(run_dir: Path) -> dict[str, str]:
    """The run's MLflow run id and usable tracking URI (run.json), or a UsageError."""
    record_path = run_dir / "run.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or not record.get("run_id") or not record.get("tracking_uri"):
        raise UsageError(f"--register: {record_path} names no MLflow run to log the model into")
    try:
        uri = usable_uri(record["tracking_uri"], os.environ)
    except ValueError as exc:
        raise UsageError(f"{record_path}: {exc}") from None
    return {"run_id": record["run_id"], "uri": uri}


def register(path: Path, saved: dict, config: RunConfig, record: dict[str, str], name: str) -> int:
    """Log the checkpoint's weights as the run's MLflow model and register it as ``name``; the exit code."""
    from curriculum.adapters.mlflow_model import log_router, register_router
    from curriculum.cli.evaluate import PROG  # the command this belongs to; imported late, it imports this module
    from routing.served_model import checkpoint_weights

    step = int(saved.get("step", 0))
    with restoring(path):
        weights, averaged = checkpoint_weights(saved, config.model)
    source = {
        "run_id": record["run_id"],
        "step": step,
        "weights": "ema" if averaged else "model",
        "checkpoint": path.name,
    }
    size = config.curriculum.stages[0].size
    try:
        logged = log_router(
            record["uri"], record["run_id"], weights, config.model, config.train.eval_segments, step, source, size
        )
        print(f"MLflow model: {logged.model_uri} ({source['weights']} weights of {path.name})")
        version = register_router(record["uri"], logged.model_uri, name)
    except Exception as exc:  # noqa: BLE001 - MLflow raises many types; one line says which
        text = str(exc).strip()
        print(
            f"{PROG}: error: --register {name}: {text.splitlines()[0][:300] if text else type(exc).__name__}",
            file=sys.stderr,
        )
        return 1
    print(f"registered: models:/{name}/{version} (model {name}, version {version})")
    return 0
