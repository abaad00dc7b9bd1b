"""The training loop's parts: its state through a checkpoint, its clocks, and one collective per step."""

from __future__ import annotations

import io
import math

import torch

from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint
from curriculum.adapters.tracking import NullTracker
from curriculum.core.overrides import build_config
from curriculum.core.scheduler import Action, SchedulerState, Transition
from curriculum.core.stopwatch import Stopwatch
from curriculum.core.train_state import TrainState
from curriculum.trainer.averages import TrainAverages
from curriculum.trainer.checkpointing import Checkpoints
from curriculum.trainer.context import WorkerContext, local_context
from curriculum.trainer.evaluation import SUM_NAMES
from curriculum.trainer.learner import Learner
from curriculum.trainer.loop import run_curriculum
from routing.metric_names import METRIC_NAMES


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def busy_state() -> TrainState:
    transition = Transition(step=40, action=Action.PROMOTE, from_stage=0, to_stage=1, metric="valid_route", value=0.75)
    scheduler = SchedulerState(stage=1, steps_in_stage=17, streak=1, collapse_streak=0, transitions=[transition])
    return TrainState(
        step=57,
        elapsed=12.5,
        stage_marks=[(0, 0.0), (40, 9.25)],
        scheduler=scheduler,
        skipped_in_row=2,
        skipped_total=6,
        rng={"torch": torch.get_rng_state(), "cuda": None},
    )


def assert_same_state(a: TrainState, b: TrainState) -> None:
    assert (a.step, a.elapsed, a.stage_marks, a.scheduler) == (b.step, b.elapsed, b.stage_marks, b.scheduler)
    assert (a.skipped_in_row, a.skipped_total) == (b.skipped_in_row, b.skipped_total)
    assert a.rng.keys() == b.rng.keys() and torch.equal(a.rng["torch"], b.rng["torch"]) and b.rng["cuda"] is None


def test_train_state_round_trips_through_a_weights_only_file():
    state = busy_state()
    buffer = io.BytesIO()
    torch.save(state.state_dict(), buffer)
    buffer.seek(0)
    restored = TrainState()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert_same_state(restored, state)
    assert restored.stage_seconds == [9.25] and restored.stage_steps == [40]


def test_train_state_counts_steps_skips_and_stage_marks():
    state = TrainState()
    for skipped in (False, True, True, False, True):
        state.advance(skipped)
    assert (state.step, state.scheduler.steps_in_stage, state.skipped_in_row, state.skipped_total) == (5, 5, 1, 3)
    state.decided(Action.STAY, state.scheduler, elapsed=3.0)
    assert state.stage_marks == [(0, 0.0)], "staying is no change of stage"
    state.decided(Action.PROMOTE, state.scheduler.model_copy(update={"stage": 1, "steps_in_stage": 0}), elapsed=4.0)
    state.advance(False)
    state.close(elapsed=6.5)
    assert state.stage_marks == [(0, 0.0), (5, 4.0), (6, 6.5)]
    assert (state.stage_steps, state.stage_seconds) == ([5, 1], [4.0, 2.5])


def test_a_checkpoint_restores_the_state_the_weights_and_the_random_stream(tmp_path):
    config = build_config("smoke", None, [])
    ctx = local_context("cpu")
    clock = FakeClock()
    learner, state, watch = Learner(config, ctx.device), busy_state(), Stopwatch(12.5, 57, clock)
    clock.now += 3.0
    path = Checkpoints(config, ctx, tmp_path, "run-1").save(learner, state, watch)
    following = torch.rand(4)  # what the run draws next, from the state the checkpoint captured
    assert load_checkpoint(path)["run_id"] == "run-1"

    torch.manual_seed(12345)
    other = Learner(build_config("smoke", None, ["train.seed=7"]), ctx.device)
    restored = Checkpoints(config, ctx, tmp_path, "run-1").restore(path, other)
    assert restored.elapsed == 15.5, "elapsed at the moment of saving"
    assert_same_state(restored, state)
    assert torch.equal(torch.rand(4), following)
    for name, value in learner.model.state_dict().items():
        assert torch.equal(other.model.state_dict()[name], value), name


def test_a_checkpoint_written_before_the_skip_counters_resumes_with_them_at_zero():
    saved = busy_state().state_dict()
    del saved["skipped_in_row"], saved["skipped_total"]
    state = TrainState()
    state.load_state_dict(saved)
    assert (state.step, state.skipped_in_row, state.skipped_total) == (57, 0, 0)


def test_stopwatch_counts_wall_clock_across_resumes_and_training_time_between_evaluations():
    clock = FakeClock()
    watch = Stopwatch(elapsed=30.0, step=100, clock=clock)
    clock.now += 10.0  # 20 steps in 10 s of training
    lap = watch.pause(120)
    assert (lap.elapsed, lap.steps_per_s) == (40.0, 2.0)
    clock.now += 50.0  # an evaluation and a checkpoint: wall clock, not training
    watch.resume(120)
    clock.now += 5.0
    lap = watch.pause(140)
    assert (lap.elapsed, lap.steps_per_s) == (95.0, 4.0)
    assert watch.elapsed() == 95.0
    assert not watch.over(None) and not watch.over(95.1 / 60) and watch.over(95.0 / 60)


def one_step(loss: float, connected: list[float]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A step's loss terms and per-sample metrics, as ``routing.training`` returns them."""
    per_sample = torch.tensor(connected)
    return {"total": torch.tensor(loss)}, {"connectivity": per_sample, "valid_route": per_sample}


def test_an_evaluation_gets_the_means_since_the_last_evaluation_whatever_the_cadence_logged():
    averages = TrainAverages()
    averages.add(*one_step(3.0, [1.0, 0.0]))
    assert averages.pop() == {"train/loss": 3.0, "train/connectivity": 0.5, "train/valid_route": 0.5}
    averages.add(*one_step(1.0, [1.0, 1.0]))
    assert averages.pop()["train/loss"] == 1.0
    # The cadence emptied its own window just before the evaluation: the evaluation still gets both steps.
    assert averages.pop() == {}
    assert averages.pop_evaluation() == {"train/loss": 2.0, "train/connectivity": 0.75, "train/valid_route": 0.75}
    assert averages.pop_evaluation() == {} and averages.pop() == {}
    averages.add(*one_step(5.0, [0.0, 0.0]))
    averages.pop_evaluation()
    assert averages.pop() == {}  # the cadence's window starts over at an evaluation too


class TwoRanks:
    """``all_reduce_sum`` of rank 0 of two, the other rank's contribution made up: the same as this rank's,
    plus its own votes on the per-step flags."""

    def __init__(self, other_votes=lambda call: (0.0, 0.0, 0.0)) -> None:
        self.other_votes, self.step_calls, self.eval_calls = other_votes, 0, 0

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.shape == (3,):
            self.step_calls += 1
            return tensor + torch.tensor(self.other_votes(self.step_calls), dtype=tensor.dtype)
        assert tensor.shape == (len(SUM_NAMES),)
        self.eval_calls += 1
        return tensor * 2


def run_as_rank_0_of_2(tmp_path, reduce: TwoRanks, *overrides: str):
    config = build_config(
        "smoke",
        None,
        ["train.eval_every=5", "tracking.images_per_eval=0", "curriculum.stages.0.gate.threshold=1.0", *overrides],
    )
    ctx = WorkerContext(rank=0, world_size=2, all_reduce_sum=reduce, say=lambda line: None)
    return run_curriculum(config, ctx, NullTracker(), tmp_path)


def test_each_step_takes_one_collective_and_each_evaluation_one(tmp_path):
    reduce = TwoRanks()
    outcome = run_as_rank_0_of_2(tmp_path, reduce, "train.max_steps=7")
    assert (outcome.outcome, outcome.step) == ("budget", 7)
    assert (reduce.step_calls, reduce.eval_calls) == (7, 2)  # evaluations at steps 5 and 7
    assert all(math.isfinite(outcome.final_metrics[f"eval/{name}"]) for name in METRIC_NAMES if name != "cost_ratio")


def test_a_single_process_takes_no_collective(tmp_path):
    calls = []
    config = build_config("smoke", None, ["train.eval_every=5", "train.max_steps=5", "tracking.images_per_eval=0"])
    ctx = WorkerContext(all_reduce_sum=lambda t: calls.append(t.shape) or t, say=lambda line: None)
    run_curriculum(config, ctx, NullTracker(), tmp_path)
    assert calls == [(len(SUM_NAMES),)], "the evaluation's sums only"


def test_a_stop_requested_on_the_other_rank_stops_this_one_after_the_same_step(tmp_path):
    reduce = TwoRanks(lambda call: (0.0, 1.0 if call == 3 else 0.0, 0.0))
    outcome = run_as_rank_0_of_2(tmp_path, reduce, "train.max_steps=100")
    assert (outcome.outcome, outcome.step, reduce.step_calls) == ("killed", 3, 3)
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["step"] == 3


def test_a_non_finite_loss_on_the_other_rank_skips_the_step_here(tmp_path):
    reduce = TwoRanks(lambda call: (1.0 if call in (2, 3) else 0.0, 0.0, 0.0))
    outcome = run_as_rank_0_of_2(tmp_path, reduce, "train.max_steps=5")
    assert outcome.step == 5
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["skipped_total"] == 2


def test_a_budget_spent_on_the_other_rank_ends_the_run_here_with_an_evaluation(tmp_path):
    reduce = TwoRanks(lambda call: (0.0, 0.0, 1.0 if call == 2 else 0.0))
    outcome = run_as_rank_0_of_2(tmp_path, reduce, "train.max_steps=100", "train.max_minutes=600")
    assert (outcome.outcome, outcome.step, reduce.eval_calls) == ("budget", 2, 1)
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["step"] == 2
