"""Ctrl-C on an in-process run; a second driver for a run whose driver is alive is refused; SIGTERM to the
whole process group of a run on its own local Ray, as ``timeout`` and batch schedulers send it."""

from __future__ import annotations

import signal

import pytest

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop


def test_ctrl_c_finishes_the_step_checkpoints_and_ends_killed_and_a_live_run_is_never_taken_over(runs, tmp_path):
    run_dir = tmp_path / "run"
    with runs.driver(["--preset", "smoke", "--backend", "local", "--run-dir", "run", *runs.ENDLESS], tmp_path) as proc:
        runs.wait_for_checkpoint(run_dir, proc, at_least=20)
        # The driver is alive: a resume must neither start a second writer nor mark the run KILLED.
        second = runs.run(["--resume", "run", "--backend", "local"], tmp_path, timeout=120)
        assert second.returncode == 2, second.stderr[-2000:]
        assert "live driver" in runs.one_line(second.stderr)
        # Nor is a new run in the same directory told to --resume it: the run is not stopped.
        fresh = runs.run(["--preset", "smoke", "--backend", "local", "--run-dir", "run"], tmp_path, timeout=120)
        assert fresh.returncode == 2 and "--resume" not in fresh.stderr, fresh.stderr[-2000:]
        assert "is being trained by a live driver (pid" in runs.one_line(fresh.stderr)
        assert runs.mlflow_run(run_dir)[1].info.status == "RUNNING"
        outcome = runs.stop_cleanly(proc, run_dir, signal.SIGINT)
    assert f"stopped at step {outcome['step']}" in runs.output(proc)

    # The driver is gone, so its lock is too: the run resumes from that checkpoint, in the same MLflow run.
    stop = outcome["step"]
    again = runs.run(["--resume", "run", "--backend", "local", f"train.max_steps={stop + 20}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at step {stop}" in again.stdout and "marked KILLED" not in again.stdout, "KILLED already, not orphaned"
    _, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FINISHED" and runs.outcome(run_dir)["step"] == stop + 20


def test_sigterm_to_the_whole_group_under_timeout_checkpoints_on_local_ray_and_resumes(runs, tmp_path):
    run_dir = tmp_path / "run"
    # GNU timeout leads the group and passes SIGTERM on to the driver, and to the group: the driver gets
    # it twice, and the local Ray instance's processes would get it too, unless spared.
    wrapper = ("timeout", "--preserve-status", "900")
    with runs.driver(["--preset", "smoke", "--run-dir", "run", *runs.ENDLESS], tmp_path, wrapper=wrapper) as proc:
        runs.wait_for_checkpoint(run_dir, proc, at_least=20)
        outcome = runs.stop_cleanly(proc, run_dir, signal.SIGTERM)  # killpg: timeout, the driver, Ray
    output = runs.output(proc)
    assert output.count("SIGTERM: finishing the current step") == 1 and "aborted" not in output, output[-3000:]
    assert f"stopped at step {outcome['step']}" in output
    assert not list(run_dir.rglob(".report-*.tmp")), "no half-reported checkpoint is left"

    stop = outcome["step"]
    again = runs.run(["--resume", "run", f"train.max_steps={stop + 20}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at step {stop}" in again.stdout
    _, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FINISHED" and runs.outcome(run_dir)["step"] == stop + 20
