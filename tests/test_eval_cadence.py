"""When a run evaluates: a stage's own ``eval_every`` (rarer evaluations where one costs most), and an
evaluation that spends the time budget ending the run instead of one more step and a second evaluation."""

from __future__ import annotations

import json
import time

from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint
from curriculum.adapters.tracking import FileTracker, NullTracker
from curriculum.core.overrides import build_config
from curriculum.core.stopwatch import Stopwatch
from curriculum.trainer.agreement import StepAgreement
from curriculum.trainer.context import WorkerContext, local_context
from curriculum.trainer.loop import run_curriculum

PROMOTE_AT_FIRST_EVALUATION = [
    "tracking.images_per_eval=0",
    "curriculum.stages.0.gate.threshold=0.01",
    "curriculum.stages.0.gate.guard_max_excess=null",
    "curriculum.stages.0.gate.patience=1",
    "curriculum.stages.1.gate.threshold=1.0",
]


def decisions(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "decisions" / "rank-0.jsonl").read_text().splitlines()]


def test_a_stage_with_its_own_eval_every_evaluates_and_checks_its_bar_on_that_cadence(tmp_path):
    config = build_config(
        "smoke",
        None,
        [
            *PROMOTE_AT_FIRST_EVALUATION,
            "train.eval_every=5",
            "train.max_steps=30",
            "train.eval_earlier_every=2",
            "curriculum.stages.1.eval_every=10",
        ],
    )
    shown = []
    ctx = WorkerContext(say=lambda line: None, show_progress=shown.append)
    outcome = run_curriculum(config, ctx, FileTracker(tmp_path), tmp_path)
    assert outcome.transitions[0]["step"] == 5 and outcome.step == 30
    # Stage 0 on train.eval_every (5), stage 1 on its own 10 from its first step on.
    assert [d["step"] for d in decisions(tmp_path)] == [5, 10, 20, 30]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir())[-1] == "checkpoint-000000030.pt"
    # The earlier stage is read every second of stage 1's own evaluations (step // 10 even): at 20 only.
    logged = {}
    for line in (tmp_path / "tracking" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key in record["metrics"]:
            logged.setdefault(key, []).append(record["step"])
    assert logged["heldout-8x8/valid_route"] == [5, 20]
    assert logged["heldout-10x10/valid_route"] == [10, 20, 30]
    # The live bar counts down to the stage's own next evaluation (shown at once after each one).
    countdown = {p.step: p.steps_to_eval for p in shown if p.step in (10, 20)}
    assert countdown == {10: 10, 20: 10}


def test_an_evaluation_that_spends_the_budget_ends_the_run_without_another_step(tmp_path, monkeypatch):
    import curriculum.trainer.loop as loop

    budget_minutes, evaluated = 0.05, []
    real_evaluate = loop.evaluate

    def slow_evaluate(learner, heldout, state, lap, train_means):
        record = real_evaluate(learner, heldout, state, lap, train_means)
        evaluated.append(state.step)
        # An evaluation as long as a 40x40 one: the budget runs out while it measures.
        time.sleep(max(0.0, 60 * budget_minutes - lap.elapsed) + 0.2)
        return record

    monkeypatch.setattr(loop, "evaluate", slow_evaluate)
    said = []
    config = build_config(
        "smoke",
        None,
        [
            "train.eval_every=5",
            "train.max_steps=200",
            "tracking.images_per_eval=0",
            f"train.max_minutes={budget_minutes}",
        ],
    )
    outcome = run_curriculum(config, local_context("cpu", say=said.append), NullTracker(), tmp_path)
    assert evaluated == [outcome.step], "one evaluation, and the run ends at its step"
    assert outcome.outcome == "budget" and outcome.step <= 5
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["step"] == outcome.step
    assert any("train.max_minutes=0.05 reached" in line for line in said), said


def test_no_time_for_a_step_forecasts_one_step_at_the_last_rate():
    now = [0.0]
    watch = Stopwatch(clock=lambda: now[0])
    agree = StepAgreement(WorkerContext(), watch, max_minutes=1.0)
    now[0] = 50.0
    assert not agree.no_time_for_a_step(steps_per_s=0.5)  # a 2-second step ends at 52 s, inside 60
    assert agree.no_time_for_a_step(steps_per_s=0.1)  # a 10-second step would end at 60 s
    assert not agree.no_time_for_a_step(steps_per_s=0.0)  # no rate yet: only a spent budget counts
    now[0] = 60.0
    assert agree.no_time_for_a_step(steps_per_s=0.0)
    assert not StepAgreement(WorkerContext(), watch, max_minutes=None).no_time_for_a_step(steps_per_s=0.01)
