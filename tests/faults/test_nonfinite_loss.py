"""A NaN loss is skipped and counted; too many in a row stop the run with a clear error and a last good
checkpoint, from which the run resumes. The NaNs are injected by ``nonfinite_driver.py``, which runs the
real CLI with the model's logits made NaN at chosen steps."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from curriculum.adapters.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # real training subprocesses: outside the inner loop

DRIVER = Path(__file__).with_name("nonfinite_driver.py")


def run_with_nan_steps(runs, steps: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DRIVER), steps, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=runs.env(),
        timeout=300,
    )


def test_nonfinite_steps_are_skipped_counted_and_a_streak_stops_the_run_at_a_good_checkpoint(runs, tmp_path):
    run_dir = tmp_path / "run"
    result = run_with_nan_steps(
        runs,
        "3,4,5,25-60",
        ["--preset", "smoke", "--backend", "local", "--run-dir", "run", *runs.ENDLESS, "train.max_skipped_steps=5"],
        tmp_path,
    )
    # Steps 3-5 are skipped and the run goes on; steps 25-29 are five in a row: the run stops at step 29.
    assert result.returncode == 1, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]  # above it, only MLflow's own notes on creating its tables
    assert error.startswith("python -m curriculum.run: error: NonFiniteLossError: 5 consecutive non-finite losses")
    assert "train.max_skipped_steps" in error and "at step 29" in error
    good = "run/checkpoints/checkpoint-000000020.pt"  # as given: --run-dir run
    assert f"the last good checkpoint is {good}" in error
    assert runs.checkpoint_steps(run_dir) == [20]
    saved = load_checkpoint(tmp_path / good)
    assert all(bool(tensor.isfinite().all()) for tensor in saved["model"].values())

    client, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FAILED"
    skipped = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/skipped_steps")}
    # At the evaluation (step 20) and at the stop (step 29); the wall-clock cadence also logs step 1 (none yet).
    assert {step: skipped[step] for step in (20, 29)} == {20: 3.0, 29: 8.0} and skipped.get(1, 0.0) == 0.0
    assert math.isfinite(run.data.metrics["train/loss"]), "skipped steps stay out of the loss average"

    resumed = runs.run(["--resume", "run", "--backend", "local", "train.max_steps=40"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {good} at step 20" in resumed.stdout
    _, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FINISHED" and runs.outcome(run_dir)["step"] == 40
