"""Ctrl-C on an in-process run; a second driver for a run whose driver is alive is refused."""

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
