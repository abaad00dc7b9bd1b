"""Place small-grid tasks inside a larger grid, so earlier stages can be replayed in later batches.

The small city keeps its cells; everything around it becomes obstacle (cost +inf), so routes,
costs and labels are unchanged and a batch keeps one grid size (a stage pays for its own N² tokens).
"""

from __future__ import annotations

import numpy as np

from oracle.generator import TaskBatch
from oracle.vocab import OBSTACLE_TOKEN


def embed_tasks(batch: TaskBatch, size: int, rows: np.ndarray, cols: np.ndarray) -> TaskBatch:
    """Each task i of ``batch`` placed with its top-left corner at (rows[i], cols[i]) in a size×size grid."""
    small = batch.size
    count = len(batch)
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    if size < small:
        raise ValueError(f"cannot embed {small}x{small} tasks into a smaller {size}x{size} grid")
    if rows.shape != (count,) or cols.shape != (count,):
        raise ValueError(f"need one row and one column offset per task ({count})")
    if (rows < 0).any() or (cols < 0).any() or (rows + small > size).any() or (cols + small > size).any():
        raise ValueError(f"offsets must keep the {small}x{small} task inside the {size}x{size} grid")
    # Flat index of every small cell in the large grid, per task: [count, small*small].
    r_small, c_small = np.divmod(np.arange(small * small), small)
    target = (rows[:, None] + r_small[None, :]) * size + cols[:, None] + c_small[None, :]
    task = np.arange(count)[:, None]

    def place(values: np.ndarray, fill) -> np.ndarray:
        out = np.full((count, size * size), fill, dtype=values.dtype)
        out[task, target] = values
        return out

    start_r, start_c = np.divmod(batch.start.astype(np.int64), small)
    end_r, end_c = np.divmod(batch.end.astype(np.int64), small)
    return TaskBatch(
        size=size,
        inputs=place(batch.inputs, OBSTACLE_TOKEN),
        labels=place(batch.labels, OBSTACLE_TOKEN),
        costs=place(batch.costs, np.float32(np.inf)),
        start=((rows + start_r) * size + cols + start_c).astype(np.int32),
        end=((rows + end_r) * size + cols + end_c).astype(np.int32),
        vehicle=batch.vehicle.copy(),
        optimal_cost=batch.optimal_cost.copy(),
        hour=batch.hour.copy(),
    )
