"""The curriculum training loop: one plain function of (config, worker context, tracker, run dir).

Per step: this rank's batch from its task stream (current stage, plus replayed earlier stages; every
``curriculum.replay.native_every`` steps a whole batch of an earlier stage at its own size), one ACT
training step, whose one collective makes every rank agree on skipping it, on a stop and on
the budget. Every ``eval_every`` steps (the stage's own, else the run's): evaluate the stage's fixed
held-out set and decide (the same decision on every rank, so all switch stage at the same step),
then emit the one record that results: logged on rank 0, reported to Ray with a checkpoint; an
evaluation that leaves no time in the budget for another step ends the run. Between evaluations
rank 0 shows its progress (``ctx.show_progress``) and logs the training means every
``tracking.metrics_every_s`` seconds. The same function runs in-process (``--backend local``) and in
Ray Train workers.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

from curriculum.adapters.checkpoint import latest_checkpoint
from curriculum.adapters.tracking import Tracker, flatten_config
from curriculum.core.config import RunConfig, TrainConfig
from curriculum.core.evaluation import Evaluation
from curriculum.core.outcome import Outcome, RunOutcome
from curriculum.core.replay import is_native_step, replay_weights
from curriculum.core.stopwatch import Stopwatch
from curriculum.core.streams import TaskStream
from curriculum.core.train_state import TrainState
from curriculum.trainer.agreement import StepAgreement, StepFlags
from curriculum.trainer.averages import TrainAverages
from curriculum.trainer.checkpointing import Checkpoints
from curriculum.trainer.context import WorkerContext
from curriculum.trainer.evaluation import HeldOut, evaluate
from curriculum.trainer.learner import Learner, use_worker_cpus
from curriculum.trainer.live import LiveReport
from curriculum.trainer.reporting import (
    drop_decisions_after,
    log_evaluation,
    log_routes,
    log_timeline,
    record_decision,
    report_metrics,
)
from curriculum.trainer.step import NonFiniteLossError, train_step
from routing.batch import task_tensors
from routing.served_model import final_weights


def run_curriculum(
    config: RunConfig, ctx: WorkerContext, tracker: Tracker, run_dir: Path, run_id: Optional[str] = None
) -> RunOutcome:
    """Train through the curriculum until it finishes, stalls, runs out of steps or is stopped."""
    train, run_dir = config.train, Path(run_dir)
    use_worker_cpus(config)
    learner = Learner(config, ctx.device)
    checkpoints = Checkpoints(config, ctx, run_dir, run_id)
    state = _start(config, ctx, tracker, learner, checkpoints, run_dir)
    learner.wrap(ctx.wrap_model)
    watch = Stopwatch(state.elapsed, state.step)
    live = LiveReport(config, ctx, tracker, watch)
    stream = TaskStream.of_run(config.curriculum.stages, train.seed, ctx.rank, train.batch_size)
    heldout, averages, agree = HeldOut(config, ctx), TrainAverages(), StepAgreement(ctx, watch, train.max_minutes)
    flags, last = StepFlags(), None
    live.show(state, last, force=True)

    while (outcome := _ending(state, flags, train)) is None:
        stage, task_stage = state.scheduler.stage, None
        weights = replay_weights(config.curriculum.stages, stage, state.scheduler.readings, config.curriculum.replay)
        if is_native_step(state.step, stage, config.curriculum.replay):
            task_stage, tasks = stream.native_batch(stage, state.step, weights)
        else:
            tasks = stream.batch(stage, state.step, weights)
        flags, logs, metrics = train_step(
            learner, task_tensors(tasks, ctx.device), state.step, stage, agree, task_stage
        )
        state.advance(skipped=flags.nonfinite)
        if flags.nonfinite:
            _check_skips(state, train, ctx, tracker, run_dir)
        elif task_stage is None:  # the training means describe the current stage's own tasks
            averages.add(logs, metrics)
        # A spent budget ends the run at once, with an evaluation and a checkpoint: a 40x40 step
        # can take seconds, so waiting for the next scheduled evaluation could overrun it badly.
        every = config.curriculum.stages[stage].eval_interval(train.eval_every)
        if state.step % every and state.step < train.max_steps and not flags.over_budget:
            live.after_step(state, last, averages)
            continue
        last = evaluate(learner, heldout, state, watch.pause(state.step), averages.pop_evaluation())
        state.decided(last.action, last.scheduler, last.lap.elapsed)
        _log(last, config, ctx, tracker, run_dir, learner, heldout)
        ctx.report(report_metrics(last, config), checkpoints.save(learner, state, watch))
        # An evaluation that used up the budget ends the run: one more step would end past it, and
        # then evaluate again (minutes on 40x40) only to read what this evaluation just read.
        flags = replace(flags, over_budget=flags.over_budget or agree.no_time_for_a_step(last.lap.steps_per_s))
        watch.resume(state.step)
        live.show(state, last, force=True)

    if outcome == "killed":
        saved = checkpoints.save(learner, state, watch)
        if saved is not None:
            ctx.say(f"stopped at step {state.step}; checkpoint {saved}")
    elif outcome == "budget" and flags.over_budget:
        ctx.say(
            f"step {state.step}: train.max_minutes={train.max_minutes:g} reached; the checkpoint above ends the run"
        )
    return _finish(outcome, state, watch, last, config, ctx, tracker, run_dir, learner)


def _start(
    config: RunConfig,
    ctx: WorkerContext,
    tracker: Tracker,
    learner: Learner,
    checkpoints: Checkpoints,
    run_dir: Path,
) -> TrainState:
    """A fresh state (and the run's parameters logged), or the state of the checkpoint to restore."""
    if ctx.restore_from is None:
        if ctx.is_main:
            tracker.log_params(flatten_config(config.model_dump(mode="json")))
        return TrainState()
    state = checkpoints.restore(ctx.restore_from, learner)
    drop_decisions_after(run_dir, ctx.rank, state.step)
    if ctx.is_main:
        ctx.say(f"resumed from {ctx.restore_from} at step {state.step}, stage {state.scheduler.stage}")
    return state


def _ending(state: TrainState, flags: StepFlags, train: TrainConfig) -> Optional[Outcome]:
    """Why the run ends before another step, or None. Every input is the same on every rank."""
    status = state.scheduler.status
    if status != "running":
        return "finished" if status == "finished" else "stalled"
    if flags.over_budget or state.step >= train.max_steps:
        return "budget"
    if flags.stop:
        return "killed"
    return None


def _check_skips(state: TrainState, train: TrainConfig, ctx: WorkerContext, tracker: Tracker, run_dir: Path) -> None:
    """Too many skipped steps in a row end the run, naming the checkpoint to resume from."""
    if state.skipped_in_row < train.max_skipped_steps:
        return
    if ctx.is_main:
        tracker.log_metrics({"train/skipped_steps": state.skipped_total}, state.step)
    last = latest_checkpoint(run_dir / "checkpoints")
    kept = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    raise NonFiniteLossError(
        f"{state.skipped_in_row} consecutive non-finite losses (train.max_skipped_steps) at step {state.step}; {kept}"
    )


def _log(
    record: Evaluation,
    config: RunConfig,
    ctx: WorkerContext,
    tracker: Tracker,
    run_dir: Path,
    learner: Learner,
    heldout: HeldOut,
) -> None:
    """An evaluation's record to this rank's decisions file and, on rank 0, to the tracker and the console."""
    record_decision(run_dir, ctx.rank, record)
    if not ctx.is_main:
        return
    log_evaluation(record, config, tracker, ctx.say)
    if config.tracking.images_per_eval:
        first = heldout.batches(record.evaluated)[0]
        log_routes(record, learner, first, tracker, run_dir, config.tracking.images_per_eval)


def _finish(
    outcome: Outcome,
    state: TrainState,
    watch: Stopwatch,
    last: Optional[Evaluation],
    config: RunConfig,
    ctx: WorkerContext,
    tracker: Tracker,
    run_dir: Path,
    learner: Learner,
) -> RunOutcome:
    state.close(watch.elapsed())
    result = RunOutcome(
        outcome=outcome,
        step=state.step,
        stage=state.scheduler.stage,
        transitions=[t.model_dump(mode="json") for t in state.scheduler.transitions],
        final_metrics=last.eval_metrics if last is not None else {},
        stage_seconds=state.stage_seconds,
        stage_steps=state.stage_steps,
    )
    if ctx.is_main:
        tracker.set_tags({"curriculum.outcome": outcome, "curriculum.final_stage": str(state.scheduler.stage)})
        (run_dir / "outcome.json").write_text(json.dumps(result.to_json(), indent=2))
        log_timeline(config, tracker, run_dir, state.scheduler, state.step)
        # A stopped run is resumed later (and a batch scheduler's grace period is short): no model yet.
        if config.tracking.log_model and ctx.log_model is not None and outcome != "killed":
            ctx.say(ctx.log_model(final_weights(learner.model, learner.ema), config, state.step))
    return result
