"""Replay that remembers: shortfall-weighted earlier stages, native-size replay steps, and every earlier
stage's held-out set measured and logged per size."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from curriculum.adapters.tracking import FileTracker
from curriculum.core.config import ReplayConfig
from curriculum.core.overrides import build_config
from curriculum.core.replay import choose_stage, is_native_step, replay_weights
from curriculum.core.scheduler import SchedulerState, record_readings
from curriculum.core.streams import TaskStream
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.loop import run_curriculum

SHORTFALL = ReplayConfig(weighting="shortfall", floor=0.1)


def stages():
    return build_config("tiny", None, []).curriculum.stages  # every gate's threshold is 0.8 but the last (0.5)


def test_uniform_replay_has_no_weights_and_draws_as_before():
    assert replay_weights(stages(), 2, {0: 0.1, 1: 0.9}, ReplayConfig()) is None
    assert replay_weights(stages(), 0, {}, SHORTFALL) is None
    a = choose_stage(np.random.default_rng(3), 3, None, 50)
    b = np.random.default_rng(3).integers(0, 3, 50)
    assert np.array_equal(a, b)


def test_shortfall_weights_favour_the_stage_that_fell_furthest():
    weights = replay_weights(stages(), 3, {0: 0.30, 1: 0.85, 2: 0.70}, SHORTFALL)
    assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0)
    # shortfalls 0.625, 0 and 0.125 of the 0.8 gate, each plus the floor 0.1
    np.testing.assert_allclose(weights, np.array([0.725, 0.1, 0.225]) / 1.05)
    assert weights[0] > weights[2] > weights[1] > 0  # a stage above its gate keeps the floor


def test_an_unmeasured_stage_counts_as_forgotten():
    weights = replay_weights(stages(), 2, {1: 0.8}, SHORTFALL)
    np.testing.assert_allclose(weights, np.array([1.1, 0.1]) / 1.2)


def test_draws_follow_the_weights():
    weights = np.array([0.7, 0.1, 0.2])
    drawn = choose_stage(np.random.default_rng(0), 3, weights, 20_000)
    np.testing.assert_allclose(np.bincount(drawn, minlength=3) / 20_000, weights, atol=0.02)


def test_native_steps_come_every_n_steps_after_the_first_stage():
    replay = ReplayConfig(native_every=4)
    assert [s for s in range(12) if is_native_step(s, 1, replay)] == [3, 7, 11]
    assert not any(is_native_step(s, 0, replay) for s in range(12))
    assert not any(is_native_step(s, 2, ReplayConfig()) for s in range(12))


def test_native_batches_keep_their_own_size_and_the_same_stage_on_every_rank():
    ladder = stages()
    streams = [TaskStream.of_run(ladder, 5, rank, 8) for rank in (0, 1)]
    weights = np.array([0.0, 0.0, 1.0])
    for step in range(6):
        (s0, b0), (s1, b1) = (stream.native_batch(3, step, weights) for stream in streams)
        assert s0 == s1 == 2 and b0.size == b1.size == 30 and len(b0) == 8
        assert not np.array_equal(b0.inputs, b1.inputs), "ranks draw different tasks"
        again = streams[0].native_batch(3, step, weights)[1]
        assert again.inputs.tobytes() == b0.inputs.tobytes(), "a pure function of (seed, rank, stage, step)"
    seen = {streams[0].native_batch(2, step)[0] for step in range(40)}
    assert seen == {0, 1}


def test_weighted_embedded_replay_draws_from_the_weighted_stage():
    stream = TaskStream.of_run(stages(), 1, 0, 40)  # tiny replays 10% = 4 tasks per batch
    only_first = np.array([1.0, 0.0])
    for step in range(3):
        batch = stream.batch(2, step, only_first)
        # Tasks of 10x10 embedded in 30x30: every replayed row is obstacle outside its 10x10 window.
        replayed = batch.inputs[-4:]
        assert ((replayed != replayed[:, :1]).sum(1) < 100 + 1).all()


def test_readings_keep_the_latest_finite_gate_metric_per_stage():
    # tiny's 10x10 gates on optimal, its 20x20 on valid_route: each stage keeps its own gate's metric
    first = {0: {"optimal": 0.5, "valid_route": 0.9}, 1: {"optimal": 0.2, "valid_route": float("nan")}}
    state = record_readings(SchedulerState(), stages(), first)
    assert state.readings == {0: 0.5}
    state = record_readings(state, stages(), {1: {"valid_route": 0.7, "optimal": 0.3}, 0: {"optimal": 0.4}})
    assert state.readings == {0: 0.4, 1: 0.7}
    assert SchedulerState.model_validate_json(state.model_dump_json()).readings == {0: 0.4, 1: 0.7}


def test_a_run_measures_and_logs_every_earlier_stage_and_trains_native_replay_steps(tmp_path, monkeypatch):
    native_steps = []
    original = TaskStream.native_batch

    def spy(self, stage, step, weights=None):
        native_steps.append((stage, step, None if weights is None else weights.tolist()))
        return original(self, stage, step, weights)

    monkeypatch.setattr(TaskStream, "native_batch", spy)
    config = build_config(
        "smoke",
        None,
        [
            "train.eval_every=10",
            "train.max_steps=40",
            "tracking.images_per_eval=0",
            "curriculum.stages.0.gate.threshold=0.01",  # promote at the first evaluation
            "curriculum.stages.0.gate.guard_max_excess=null",
            "curriculum.stages.0.gate.patience=1",
            "curriculum.stages.1.gate.threshold=1.0",
            "train.eval_earlier_every=1",
            "curriculum.replay.weighting=shortfall",
            "curriculum.replay.native_every=2",
        ],
    )
    said = []
    ctx = WorkerContext(say=said.append)
    outcome = run_curriculum(config, ctx, FileTracker(tmp_path), tmp_path)
    assert outcome.transitions and outcome.transitions[0]["to_stage"] == 1 and outcome.step == 40
    # the progress lines name each earlier stage's connected and cheapest-route shares
    earlier = [line for line in said if "earlier stages |" in line]
    assert earlier and all(re.search(r"8x8 valid_route \d\.\d{3} optimal \d\.\d{3}", line) for line in earlier)
    lines = [json.loads(line) for line in (tmp_path / "tracking" / "metrics.jsonl").read_text().splitlines()]
    logged = {}
    for line in lines:
        for key in line["metrics"]:
            logged.setdefault(key, []).append(line["step"])
    # Before the promotion only 8x8 is measured; afterwards 10x10 (current) and 8x8 (earlier) at every evaluation.
    assert logged["heldout-8x8/valid_route"] == [10, 20, 30, 40]
    assert logged["heldout-10x10/valid_route"] == [20, 30, 40]
    assert "heldout-8x8/optimal" in logged and "eval/valid_route" in logged
    # Stage 1 from step 10: every second step trains on 8x8 tasks at their own size, weighted by shortfall.
    assert [step for _, step, _ in native_steps] == list(range(11, 40, 2))
    assert all(stage == 1 and weights == [1.0] for stage, _, weights in native_steps)


def test_a_run_trains_each_stage_on_its_own_batch_size_and_native_replay_on_the_earlier_one(tmp_path, monkeypatch):
    import curriculum.trainer.loop as loop

    trained = []
    original = loop.task_tensors

    def spy(tasks, device):
        trained.append((tasks.size, len(tasks)))
        return original(tasks, device)

    monkeypatch.setattr(loop, "task_tensors", spy)
    config = build_config(
        "smoke",
        None,
        [
            "train.eval_every=5",
            "train.max_steps=12",
            "tracking.images_per_eval=0",
            "curriculum.stages.0.gate.threshold=0.01",
            "curriculum.stages.0.gate.guard_max_excess=null",
            "curriculum.stages.0.gate.patience=1",
            "curriculum.stages.1.gate.threshold=1.0",
            "curriculum.stages.1.batch_size=5",
            "curriculum.stages.1.replay=0.4",
            "curriculum.replay.native_every=2",
        ],
    )
    outcome = run_curriculum(config, WorkerContext(say=lambda line: None), FileTracker(tmp_path), tmp_path)
    assert outcome.transitions and outcome.transitions[0]["step"] == 5 and outcome.step == 12
    batch = config.train.batch_size
    assert trained[:5] == [(8, batch)] * 5, "the first stage trains on train.batch_size"
    # after the promotion: the second stage's own 5 tasks (2 of them replayed), native steps at 8x8 keep 16
    assert set(trained[5:]) == {(10, 5), (8, batch)} and trained[5:].count((8, batch)) >= 2
