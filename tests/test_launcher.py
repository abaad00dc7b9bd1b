"""The one launcher of Ray Train runs: a worker's typed arguments survive the trip through
``train_loop_config``, the trainer is built from them, and the outcome comes back typed. No cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curriculum.adapters.checkpoint import KEEP
from curriculum.adapters.ray_backend import TrainJob, build_trainer, final_outcome
from curriculum.core.outcome import RunOutcome
from curriculum.core.overrides import build_config


def job(tmp_path: Path, **changes) -> TrainJob:
    fields = dict(
        config=build_config("smoke", None, ["train.seed=11", "scaling.cpus_per_worker=0.5"]),
        run_dir=tmp_path / "run",
        run_id="abc123",
        tracking_uri="sqlite:///mlflow.db",
        resume_from=tmp_path / "run" / "checkpoints" / "step-000040.pt",
        console=object(),
        stop_flag=object(),
    )
    return TrainJob(**{**fields, **changes})


def test_the_typed_args_survive_the_loop_config(tmp_path):
    original = job(tmp_path)
    loop_config = original.to_loop_config()
    assert TrainJob.from_loop_config(loop_config) == original
    assert TrainJob.from_loop_config(loop_config).config.train.seed == 11
    # Ray carries the mapping; all but the two Ray handles are plain values, the config as JSON.
    assert json.loads(loop_config["config"])["preset"] == "smoke"
    assert {k: v for k, v in loop_config.items() if k not in ("console", "stop")} == json.loads(
        json.dumps({k: v for k, v in loop_config.items() if k not in ("console", "stop")})
    )


def test_nothing_to_resume_and_no_tracking_also_survive(tmp_path):
    bare = TrainJob(config=build_config("smoke"), run_dir=tmp_path / "run")
    assert TrainJob.from_loop_config(bare.to_loop_config()) == bare
    assert bare.resume_from is None and bare.run_id is None and bare.console is None and bare.stop_flag is None


def test_the_run_dir_is_absolute_for_workers_in_other_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert job(tmp_path, run_dir=Path("runs/a")).run_dir == tmp_path / "runs" / "a"


def test_build_trainer_takes_resources_keep_count_and_failures_from_one_place(tmp_path):
    pytest.importorskip("ray.train.torch")
    from ray.train.torch import TorchTrainer

    one = job(tmp_path)
    trainer = build_trainer(one, name="trial-1", storage_path=str(tmp_path / "ray"), max_failures=3)
    assert isinstance(trainer, TorchTrainer)
    assert TrainJob.from_loop_config(trainer.train_loop_config) == one
    scaling = trainer.scaling_config
    assert (scaling.num_workers, scaling.use_gpu, scaling.resources_per_worker) == (1, False, {"CPU": 0.5})
    run = trainer.run_config
    assert (run.name, run.storage_path) == ("trial-1", str(tmp_path / "ray"))
    assert run.failure_config.max_failures == 3 and run.checkpoint_config.num_to_keep == KEEP
    assert run.callbacks == []

    gpu = job(tmp_path, config=build_config("smoke", None, ["scaling.use_gpu=true", "scaling.gpus_per_worker=0.5"]))
    resources = build_trainer(gpu, name="g", storage_path=str(tmp_path), max_failures=0).scaling_config
    assert resources.resources_per_worker == {"CPU": 1.0, "GPU": 0.5}


def test_the_final_report_becomes_the_outcome():
    outcome = RunOutcome(
        outcome="stalled",
        step=160,
        stage=0,
        transitions=[{"step": 160, "action": "stall"}],
        final_metrics={"eval/valid_route": 0.1},
        stage_seconds=[12.5],
        stage_steps=[160],
    )
    assert final_outcome({"final": True, **outcome.to_json()}) == outcome


@pytest.mark.parametrize(
    "metrics, says",
    [
        (None, "no report was seen"),
        ({}, "no report was seen"),
        ({"step": 40, "stage": 0, "eval/valid_route": 0.2}, "step 40"),  # an evaluation's report, not the last one
    ],
)
def test_a_missing_final_report_is_an_error_that_says_so(metrics, says):
    with pytest.raises(RuntimeError, match=f"without the workers' final report.*{says}"):
        final_outcome(metrics)


def test_a_final_report_with_an_unknown_outcome_is_refused():
    report = {
        "final": True,
        **RunOutcome(outcome="finished", step=1, stage=0, transitions=[], final_metrics={}).to_json(),
        "outcome": "failed",
    }
    with pytest.raises(ValueError, match="outcome must be one of"):
        final_outcome(report)
