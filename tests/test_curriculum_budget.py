"""train.max_minutes: a wall-clock budget ends the run at an evaluation, with a checkpoint."""

import json

from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint
from curriculum.adapters.tracking import NullTracker
from curriculum.core.overrides import build_config
from curriculum.trainer.context import local_context
from curriculum.trainer.loop import run_curriculum


def _run(tmp_path, *overrides):
    config = build_config(
        "smoke", None, ["train.eval_every=5", "train.max_steps=200", "tracking.images_per_eval=0", *overrides]
    )
    return run_curriculum(config, local_context("cpu"), NullTracker(), tmp_path)


def test_spent_budget_stops_after_the_step_with_an_evaluation_and_a_checkpoint(tmp_path):
    outcome = _run(tmp_path, "train.max_minutes=1e-6")  # spent during the first step, not at step 5
    assert (outcome.outcome, outcome.step) == ("budget", 1)
    assert "eval/valid_route" in outcome.final_metrics  # the held-out set was measured before stopping
    saved = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert saved["step"] == 1 and saved["elapsed"] > 0
    assert json.loads((tmp_path / "outcome.json").read_text())["outcome"] == "budget"
    # The recorded time covers the whole run, evaluations included.
    assert sum(outcome.stage_seconds) >= saved["elapsed"]


def test_without_a_budget_the_step_cap_ends_the_run(tmp_path):
    outcome = _run(tmp_path, "train.max_steps=15", "curriculum.stages.0.gate.threshold=1.0")
    assert (outcome.outcome, outcome.step) == ("budget", 15)
