"""Task streams: what each rank trains on at each step, and the fixed held-out set per stage.

Every batch is a pure function of (run seed, rank, stage, step), so a resumed or restarted run
sees exactly the tasks it would have seen, and no state beyond the step needs checkpointing.
Held-out sets come from their own seed, disjoint from every training stream.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

from curriculum.core.config import StageConfig
from oracle.dataset import concat
from oracle.embed import embed_tasks
from oracle.generator import TaskBatch, generate_tasks

_TRAIN, _REPLAY, _HELDOUT, _PLACEMENT = 1, 2, 3, 4


def stream_seed(seed: int, purpose: int, rank: int, stage: int) -> int:
    """A 63-bit seed per (run seed, purpose, rank, stage): independent streams from one run seed."""
    state = np.random.SeedSequence([seed, purpose, rank, stage]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


class TaskStream:
    """Training batches for one rank."""

    def __init__(self, stages: Sequence[StageConfig], seed: int, rank: int, batch_size: int) -> None:
        self.stages = list(stages)
        self.specs = [stage.task_spec() for stage in self.stages]
        self.seed, self.rank, self.batch_size = seed, rank, batch_size

    def replay_count(self, stage: int) -> int:
        """Samples of each batch replayed from earlier stages (none on the first stage)."""
        if stage == 0:
            return 0
        return int(round(self.batch_size * self.stages[stage].replay))

    def batch(self, stage: int, step: int) -> TaskBatch:
        """The batch this rank trains on at ``step`` while in ``stage``."""
        n_replay = self.replay_count(stage)
        fresh = self.batch_size - n_replay
        first = step * self.batch_size
        parts = [generate_tasks(self.specs[stage], fresh, stream_seed(self.seed, _TRAIN, self.rank, stage), first)]
        if n_replay:
            rng = np.random.default_rng([self.seed, _PLACEMENT, self.rank, stage, step])
            earlier = rng.integers(0, stage, n_replay)
            size = self.specs[stage].size
            for s in np.unique(earlier):
                count = int((earlier == s).sum())
                small = generate_tasks(self.specs[s], count, stream_seed(self.seed, _REPLAY, self.rank, int(s)), first)
                slack = size - small.size + 1
                parts.append(embed_tasks(small, size, rng.integers(0, slack, count), rng.integers(0, slack, count)))
        return concat(parts) if len(parts) > 1 else parts[0]


@lru_cache(maxsize=16)
def _heldout(spec_json: str, stage: int, seed: int, count: int) -> TaskBatch:
    from oracle.spec import TaskSpec

    return generate_tasks(TaskSpec.model_validate_json(spec_json), count, stream_seed(seed, _HELDOUT, 0, stage))


def heldout_tasks(stages: Sequence[StageConfig], stage: int, seed: int, count: int) -> TaskBatch:
    """The fixed evaluation set of ``stage`` (the same for every rank, every resume, every backend)."""
    return _heldout(stages[stage].task_spec().model_dump_json(), stage, seed, count)


def shard(tasks: TaskBatch, rank: int, world_size: int) -> TaskBatch:
    """This rank's share of a held-out set (every task on exactly one rank)."""
    from oracle.dataset import select

    return select(tasks, np.arange(rank, len(tasks), world_size))
