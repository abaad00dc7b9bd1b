"""Oracle: random city-routing tasks, the A* oracle, the path verifier and dataset I/O (numpy + numba).

The names below load their module on first use (PEP 562), so importing a light submodule such as
``oracle.spec`` (a run config does) does not compile or load the Numba kernels.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "GENERATOR_VERSION": "oracle.dataset",
    "DatasetError": "oracle.dataset",
    "DatasetSplit": "oracle.dataset",
    "draw_splits": "oracle.dataset",
    "load_dataset": "oracle.dataset",
    "save_dataset": "oracle.dataset",
    "TaskBatch": "oracle.generator",
    "generate_tasks": "oracle.generator",
    "TaskSpec": "oracle.spec",
    "PathVerdict": "oracle.verify",
    "optimal_costs": "oracle.verify",
    "verify_paths": "oracle.verify",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'oracle' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
