"""The trained router as an MLflow model: logged into a run, registered under a name.

The model is a pyfunc "from code": ``mlflow_model_code.py`` is the model's code, logged as a file,
and its two artifacts are ``weights.pt`` (a plain state dict, the EMA's averages where the run keeps
an EMA) and ``router.json`` (``routing.served_model``). Nothing is pickled. The signature says what
a server accepts: a column ``inputs`` (a flat row-major list of N*N input tokens per task) and an
optional ``vehicle``, a param ``segments``; and what it answers: ``route`` (the flat indices of the
cells marked PATH) and ``halt_confidence``.

MLflow is imported only inside functions, so the training loop can hold a logger built here on a
machine without MLflow (``final_model_logger`` then returns None).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

if TYPE_CHECKING:
    import torch
    from mlflow.models import ModelSignature

    from curriculum.core.config import RunConfig
    from hrm.config import ModelConfig

MODEL_NAME = "router"  # the logged model's name in its run
CODE_FILE = Path(__file__).with_name("mlflow_model_code.py")
# Letters, digits, '_', '.', '-': a name that fits in models:/NAME/VERSION and a URL as it is.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
PROGRESS_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
NAME_RULE = "1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit"

# What the training loop calls on rank 0 at the end of a run: (weights, config, step) -> a console line.
FinalModelLogger = Callable[["dict[str, torch.Tensor]", "RunConfig", int], str]


class LoggedRouter(NamedTuple):
    model_uri: str  # models:/<model id>
    model_id: str


def check_model_name(name: str) -> str:
    """``name`` if it can name a registered model; ValueError saying why not."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a registered model name: {NAME_RULE}")
    return name


def router_signature(segments: int) -> ModelSignature:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(Array("long"), "inputs"), ColSpec("long", "vehicle", required=False)]),
        outputs=Schema([ColSpec(Array("long"), "route"), ColSpec("double", "halt_confidence")]),
        params=ParamSchema([ParamSpec("segments", "long", int(segments))]),
    )


def example_input(size: int) -> Any:
    """One task of ``size`` as the model takes it: a table with its tokens and vehicle."""
    import pandas as pd

    from oracle import TaskSpec, generate_tasks

    task = generate_tasks(TaskSpec(size=size), count=1, seed=0)
    return pd.DataFrame({"inputs": [task.inputs[0].astype(int).tolist()], "vehicle": [int(task.vehicle[0])]})


def requirements() -> list[str]:
    """What the model's environment needs (given, so MLflow does not load the model to guess them)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("hrm-curriculum", "torch", "numpy", "numba", "pydantic", "pandas", "mlflow"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging and registration read the global tracking URI: set it for the block only
    (and keep MLflow's artifact progress bars off the console meanwhile)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, bars = utils._tracking_uri, os.environ.get(PROGRESS_BARS)
    mlflow.set_tracking_uri(uri)
    os.environ[PROGRESS_BARS] = "false"
    try:
        yield
    finally:
        utils._tracking_uri = previous
        if bars is None:
            os.environ.pop(PROGRESS_BARS, None)
        else:
            os.environ[PROGRESS_BARS] = bars


def log_router(
    uri: str,
    run_id: str,
    weights: dict[str, torch.Tensor],
    model_config: ModelConfig,
    segments: Optional[int],
    step: int,
    source: Optional[dict[str, Any]] = None,
    example_size: int = 10,
) -> LoggedRouter:
    """Log the weights as the run's MLflow model ``router`` at ``step``, with one ``example_size`` task as
    its input example (which MLflow also runs through the logged model once, as a check)."""
    import mlflow
    from mlflow.models import Model

    from curriculum.adapters.mlflow_store import make_client
    from routing.served_model import write_router

    segments = model_config.halt_max_steps if segments is None else segments
    client = make_client(uri)
    run = client.get_run(run_id)
    # Created here, in the run's experiment: left to Model.log, it lands in the default experiment, whose
    # artifacts go to ./mlruns of whichever directory the process runs in.
    logged = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        params=dict(run.data.params),
        tags={"hrm.weights": (source or {}).get("weights", "model"), "hrm.step": str(step)},
    )
    with tempfile.TemporaryDirectory(prefix="router-") as tmp:
        weights_path, config_path = write_router(Path(tmp), weights, model_config, segments, source)
        with _tracking_uri(uri):
            info = Model.log(
                None,  # artifact_path: deprecated in favour of name, but still a positional parameter
                name=MODEL_NAME,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged.model_id,
                step=step,
                python_model=str(CODE_FILE),
                artifacts={"weights": str(weights_path), "config": str(config_path)},
                signature=router_signature(segments),
                pip_requirements=requirements(),
                input_example=example_input(example_size),
            )
    return LoggedRouter(info.model_uri, info.model_id)


def register_router(uri: str, model_uri: str, name: str) -> str:
    """Register ``model_uri`` under ``name`` (created if new); the new version number."""
    import mlflow

    check_model_name(name)
    with _tracking_uri(uri):
        version = mlflow.register_model(model_uri, name)
    return str(version.version)


def final_model_logger(uri: Optional[str], run_id: Optional[str]) -> Optional[FinalModelLogger]:
    """What logs a run's final weights as its MLflow model, or None where there is no MLflow run or no MLflow.

    Logging is best effort: a store that refuses costs one console line saying so, never the run's outcome.
    """
    if uri is None or run_id is None:
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return None

    def log_final(weights: dict[str, torch.Tensor], config: RunConfig, step: int) -> str:
        kind = "ema" if config.model.ema_decay else "model"
        source = {"run_id": run_id, "step": step, "weights": kind}
        try:
            size = config.curriculum.stages[0].size
            logged = log_router(uri, run_id, weights, config.model, config.train.eval_segments, step, source, size)
        except Exception as exc:  # noqa: BLE001 - the run itself succeeded; say what was not logged
            text = str(exc).strip()
            reason = text.splitlines()[0][:300] if text else type(exc).__name__
            return f"final weights not logged as an MLflow model: {reason}"
        weights_kind = "the EMA's weights" if kind == "ema" else "the trained weights"
        return f"MLflow model {logged.model_uri}: {weights_kind} at step {step}"

    return log_final
