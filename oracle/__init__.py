"""Oracle: random city-routing tasks, the A* oracle, the path verifier and dataset I/O (numpy + numba)."""

from oracle.dataset import GENERATOR_VERSION, DatasetError, DatasetSplit, draw_splits, load_dataset, save_dataset
from oracle.generator import TaskBatch, generate_tasks
from oracle.spec import TaskSpec
from oracle.verify import PathVerdict, optimal_costs, verify_paths

__all__ = [
    "DatasetError",
    "DatasetSplit",
    "GENERATOR_VERSION",
    "PathVerdict",
    "TaskBatch",
    "TaskSpec",
    "draw_splits",
    "generate_tasks",
    "load_dataset",
    "optimal_costs",
    "save_dataset",
    "verify_paths",
]
