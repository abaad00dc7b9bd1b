"""The code of the router's MLflow model ("models from code"): MLflow copies this file into the logged
model and runs it when the model is loaded (``mlflow.pyfunc.load_model``, ``mlflow models serve``).

It holds no weights and pickles nothing: ``load_context`` reads the model's two artifacts,
``weights.pt`` (a state dict, ``torch.load(weights_only=True)``) and ``router.json``, through
``routing.served_model.Router``, so the environment that loads it needs this project installed.

No ``from __future__ import annotations`` here: MLflow reads the type hint of ``predict`` as a type.

Input: a DataFrame (or the JSON a server receives) with a column ``inputs``, each a flat row-major
list of N*N input tokens, and an optional column ``vehicle`` (0 bike, 1 car, 2 van, 3 truck; it
must match the START token). Param ``segments``: ACT segments to run. Output: one row per task,
``route`` (the flat indices of the cells marked PATH) and ``halt_confidence``.
"""

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel


class RouterModel(PythonModel):
    def load_context(self, context):
        from routing.served_model import Router

        self.router = Router.from_files(context.artifacts["weights"], context.artifacts["config"])

    def predict(self, context, model_input: pd.DataFrame, params=None):
        from routing.served_model import RouteInputError

        inputs, vehicle = _columns(model_input)
        segments = (params or {}).get("segments")
        try:
            routes = self.router.predict(inputs, vehicle, segments)
        except RouteInputError as exc:  # a one-line error; the server answers 400 with it
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return pd.DataFrame(
            {
                "route": [route.cells.tolist() for route in routes],
                "halt_confidence": [route.halt_confidence for route in routes],
            }
        )


def _columns(model_input):
    """(grids, vehicles or None) from a DataFrame or a dict of columns."""
    if isinstance(model_input, pd.DataFrame):
        columns = {name: model_input[name].tolist() for name in model_input.columns}
    elif isinstance(model_input, dict):
        columns = {name: list(value) for name, value in model_input.items()}
    else:
        raise MlflowException(
            f"expected a table with a column 'inputs' (and optionally 'vehicle'), got {type(model_input).__name__}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    unknown = sorted(set(columns) - {"inputs", "vehicle"})
    if "inputs" not in columns or unknown:
        raise MlflowException(
            f"expected the columns 'inputs' and optionally 'vehicle', got {sorted(columns)}",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return columns["inputs"], columns.get("vehicle")


mlflow.models.set_model(RouterModel())
