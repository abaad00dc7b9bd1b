"""The curriculum as MLflow dataset inputs: one per stage, so the runs table's Datasets column shows it.

A stage's tasks are drawn on the fly by the oracle, so there is no file to point at: each stage is a
metadata-only dataset (``MetaDataset``) whose source records the generator, the stage's task settings
and the run seed, and whose schema is the task as the model reads it. Two runs with the same stage
distribution get the same digest, which is what the MLflow UI compares.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from curriculum.core.config import RunConfig

TRAINING_CONTEXT = "training"


def stage_descriptions(config: RunConfig) -> list[dict[str, Any]]:
    """Name, source tags and grid side of every stage's task distribution, in ladder order."""
    described = []
    for index, stage in enumerate(config.curriculum.stages):
        spec = stage.task_spec().model_dump(mode="json")
        described.append(
            {
                "name": f"stage {index}: {stage.size}x{stage.size}",
                "size": stage.size,
                "source": {
                    "generator": "oracle.generator.generate_tasks",
                    "run_seed": str(config.train.seed),
                    "task_spec": json.dumps(spec, sort_keys=True),
                    "heldout_tasks": str(config.train.eval_size),
                },
            }
        )
    return described


def log_curriculum_inputs(uri: str, run_id: str, config: RunConfig) -> int:
    """Log each stage's task distribution as a dataset input of ``run_id`` (context ``training``);
    returns how many were logged. They describe the run and train nothing, so a store that refuses
    them costs a warning, not the run."""
    import numpy as np
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import Schema, TensorSpec
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from curriculum.adapters.mlflow_store import make_client

    inputs = []
    for stage in stage_descriptions(config):
        cells = stage["size"] * stage["size"]
        schema = Schema(
            [
                TensorSpec(np.dtype(np.int32), (-1, cells), "inputs"),
                TensorSpec(np.dtype(np.int64), (-1,), "vehicle"),
            ]
        )
        dataset = MetaDataset(CodeDatasetSource(stage["source"]), name=stage["name"], schema=schema)
        inputs.append(
            DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, TRAINING_CONTEXT)])
        )
    try:
        make_client(uri).log_inputs(run_id, datasets=inputs)
    except Exception as exc:  # noqa: BLE001 - e.g. a server outage at the start of the run
        print(f"warning: the stages were not logged as MLflow datasets: {exc}".splitlines()[0], file=sys.stderr)
        return 0
    return len(inputs)
