"""Task streams and held-out sets: deterministic, replay embedded correctly, held-out disjoint."""

import numpy as np
import pytest

from curriculum.core.overrides import build_config
from curriculum.core.streams import TaskStream, heldout_tasks, shard
from oracle import verify_paths
from oracle.vocab import OBSTACLE_TOKEN, PATH


@pytest.fixture(scope="module")
def stages():
    return build_config("smoke", None, ["curriculum.stages.1.replay=0.5"]).curriculum.stages


def test_batches_are_a_pure_function_of_seed_rank_stage_step(stages):
    a, b = TaskStream(stages, 3, 0, 16), TaskStream(stages, 3, 0, 16)
    np.testing.assert_array_equal(a.batch(1, 7).inputs, b.batch(1, 7).inputs)
    assert not np.array_equal(a.batch(1, 7).inputs, a.batch(1, 8).inputs)
    assert not np.array_equal(a.batch(0, 7).inputs, TaskStream(stages, 3, 1, 16).batch(0, 7).inputs)
    assert not np.array_equal(a.batch(0, 7).inputs, TaskStream(stages, 4, 0, 16).batch(0, 7).inputs)


def test_replayed_tasks_are_earlier_stage_tasks_embedded_in_the_current_grid(stages):
    stream = TaskStream(stages, 0, 0, 16)
    batch = stream.batch(1, 3)
    assert batch.size == 10 and len(batch) == 16 and stream.replay_count(1) == 8
    verdict = verify_paths(batch.labels == PATH, batch.costs, batch.start, batch.end, batch.optimal_cost)
    assert verdict.optimal.all(), "embedding keeps every label an optimal route"
    grids = batch.inputs.reshape(16, 10, 10)
    # The replayed 8x8 cities leave at least two full obstacle rows and two obstacle columns.
    framed = [(np.sum((g == OBSTACLE_TOKEN).all(1)) >= 2 and np.sum((g == OBSTACLE_TOKEN).all(0)) >= 2) for g in grids]
    assert sum(framed[8:]) == 8 and sum(framed[:8]) < 8
    assert stream.replay_count(0) == 0 and len(stream.batch(0, 3)) == 16


def test_a_stage_with_its_own_batch_size_draws_that_many_tasks_and_no_task_twice(stages):
    own = build_config("smoke", None, ["curriculum.stages.1.replay=0.5", "curriculum.stages.1.batch_size=6"])
    stream = TaskStream(own.curriculum.stages, 0, 0, 16)
    assert stream.samples_per_step(1) == 6 and stream.replay_count(1) == 3
    assert len(stream.batch(1, 0)) == 6 and len(stream.batch(0, 0)) == 16
    fresh = [stream.batch(1, step).inputs[:3] for step in range(20)]
    assert len({row.tobytes() for rows in fresh for row in rows}) == 60, "consecutive steps share no task"
    # the earlier stage keeps its own batch size when replayed at its own grid size
    earlier, native = stream.native_batch(1, 5)
    assert (earlier, native.size, len(native)) == (0, 8, 16)
    # left unset, the stage draws what train.batch_size draws
    same = build_config("smoke", None, ["curriculum.stages.1.replay=0.5", "curriculum.stages.1.batch_size=16"])
    plain = TaskStream(stages, 0, 0, 16)
    np.testing.assert_array_equal(
        plain.batch(1, 4).inputs, TaskStream(same.curriculum.stages, 0, 0, 16).batch(1, 4).inputs
    )
    assert plain.samples_per_step(1) == 16


def test_heldout_set_is_fixed_and_disjoint_from_training(stages):
    held = heldout_tasks(stages, 0, seed=0, count=64)
    again = heldout_tasks(stages, 0, seed=0, count=64)
    np.testing.assert_array_equal(held.inputs, again.inputs)
    stream = TaskStream(stages, 1, 0, 16)
    seen = {row.tobytes() for step in range(200) for row in stream.batch(0, step).inputs}
    # 8x8 with distances 1-2 repeats cities rarely; held-out tasks must not come from the training stream.
    overlap = sum(row.tobytes() in seen for row in held.inputs)
    assert overlap <= 1


def test_shards_cover_the_heldout_set_once(stages):
    held = heldout_tasks(stages, 1, seed=0, count=30)
    parts = [shard(held, r, 4) for r in range(4)]
    assert sum(len(p) for p in parts) == 30
    rows = np.concatenate([p.inputs for p in parts])
    assert len({r.tobytes() for r in rows}) == len({r.tobytes() for r in held.inputs})
