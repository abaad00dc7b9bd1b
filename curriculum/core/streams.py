"""Task streams: what each rank trains on at each step, and the fixed held-out set per stage.

Every batch is a pure function of (run seed, rank, stage, step), so a resumed or restarted run
sees exactly the tasks it would have seen, and no state beyond the step needs checkpointing.
Held-out sets come from their own seed, disjoint from every training stream, and so do the fresh
tasks of ``python -m curriculum.evaluate``: every stream's purpose id is in ``Stream``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from functools import lru_cache
from typing import Optional

import numpy as np

from curriculum.core.config import StageConfig
from curriculum.core.replay import choose_stage
from oracle.dataset import concat
from oracle.embed import embed_tasks
from oracle.generator import TaskBatch, generate_tasks
from oracle.spec import TaskSpec


class Stream(IntEnum):
    """What a stream of tasks is for; part of its seed, so no two purposes ever share tasks."""

    TRAIN = 1  # a rank's fresh tasks of its current stage
    REPLAY = 2  # a rank's tasks of earlier stages, replayed in later ones
    HELDOUT = 3  # each stage's fixed evaluation set during training
    PLACEMENT = 4  # where replayed smaller grids sit inside the current one
    EVALUATE = 5  # the evaluation CLI's fresh tasks per grid size
    NATIVE = 6  # a rank's tasks of earlier stages, replayed at their own grid size


def stream_seed(seed: int, purpose: Stream, rank: int, stage: int) -> int:
    """A 63-bit seed per (run seed, purpose, rank, stage): independent streams from one run seed."""
    state = np.random.SeedSequence([seed, int(purpose), rank, stage]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


class TaskStream:
    """Training batches for one rank; ``batch_size`` is the run's, which a stage's own ``batch_size`` overrides.

    Step ``step`` of a stage with batch size ``b`` takes tasks ``step * b`` onward of that stage's stream, so
    no two steps share a task whatever the batch size.
    """

    def __init__(self, stages: Sequence[StageConfig], seed: int, rank: int, batch_size: int) -> None:
        self.stages = list(stages)
        self.specs = [stage.task_spec() for stage in self.stages]
        self.seed, self.rank, self.batch_size = seed, rank, batch_size

    @classmethod
    def of_run(cls, stages: Sequence[StageConfig], run_seed: int, rank: int, batch_size: int) -> TaskStream:
        """The training stream of a run: seeded with the run seed + 1 (an offset every past run used,
        kept so that a seed still means the same tasks)."""
        return cls(stages, run_seed + 1, rank, batch_size)

    def replay_count(self, stage: int) -> int:
        """Samples of each batch replayed from earlier stages (none on the first stage)."""
        if stage == 0:
            return 0
        return self.stages[stage].replay_count(self.batch_size)

    def samples_per_step(self, stage: int) -> int:
        """Samples of every batch of ``stage``."""
        return self.stages[stage].samples_per_step(self.batch_size)

    def batch(self, stage: int, step: int, weights: Optional[np.ndarray] = None) -> TaskBatch:
        """The batch this rank trains on at ``step`` while in ``stage``; replayed tasks come from the earlier
        stages with probabilities ``weights`` (uniform when None, see ``curriculum.core.replay``)."""
        n_replay, batch_size = self.replay_count(stage), self.samples_per_step(stage)
        fresh = batch_size - n_replay
        first = step * batch_size
        own = stream_seed(self.seed, Stream.TRAIN, self.rank, stage)
        parts = [generate_tasks(self.specs[stage], fresh, own, first)]
        if n_replay:
            rng = np.random.default_rng([self.seed, int(Stream.PLACEMENT), self.rank, stage, step])
            earlier = choose_stage(rng, stage, weights, n_replay)
            size = self.specs[stage].size
            for s in np.unique(earlier):
                count = int((earlier == s).sum())
                replayed = stream_seed(self.seed, Stream.REPLAY, self.rank, int(s))
                small = generate_tasks(self.specs[s], count, replayed, first)
                slack = size - small.size + 1
                parts.append(embed_tasks(small, size, rng.integers(0, slack, count), rng.integers(0, slack, count)))
        return concat(parts) if len(parts) > 1 else parts[0]

    def native_batch(self, stage: int, step: int, weights: Optional[np.ndarray] = None) -> tuple[int, TaskBatch]:
        """A whole batch of one earlier stage's tasks at that stage's own size and batch size, for step ``step``
        in ``stage``.

        The earlier stage is drawn without the rank, so every rank trains on the same grid size at this step.
        """
        rng = np.random.default_rng([self.seed, int(Stream.NATIVE), stage, step])
        earlier = int(choose_stage(rng, stage, weights, 1)[0])
        seed = stream_seed(self.seed, Stream.NATIVE, self.rank, earlier)
        batch_size = self.samples_per_step(earlier)
        return earlier, generate_tasks(self.specs[earlier], batch_size, seed, step * batch_size)


@lru_cache(maxsize=16)
def _heldout(spec_json: str, stage: int, seed: int, count: int) -> TaskBatch:
    return generate_tasks(TaskSpec.model_validate_json(spec_json), count, stream_seed(seed, Stream.HELDOUT, 0, stage))


def heldout_tasks(stages: Sequence[StageConfig], stage: int, seed: int, count: int) -> TaskBatch:
    """The fixed evaluation set of ``stage`` (the same for every rank, every resume, every backend)."""
    return _heldout(stages[stage].task_spec().model_dump_json(), stage, seed, count)


def evaluation_tasks(spec: TaskSpec, seed: int, count: int) -> TaskBatch:
    """Fresh tasks of ``spec`` for evaluating a trained model, from a stream no training run draws from."""
    return generate_tasks(spec, count, stream_seed(seed, Stream.EVALUATE, 0, spec.size))


def shard(tasks: TaskBatch, rank: int, world_size: int) -> TaskBatch:
    """This rank's share of a held-out set (every task on exactly one rank)."""
    from oracle.dataset import select

    return select(tasks, np.arange(rank, len(tasks), world_size))
