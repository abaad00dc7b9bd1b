"""Faults of a Ray run on a real local cluster: a worker process killed, the driver killed, the driver
terminated (SIGTERM). MLflow is the real SQLite store of each test's directory."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from curriculum.adapters.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

# Stage 0 (8x8) passes its gate at the first evaluation (step 20); stage 1 (10x10) can never pass.
PROMOTE_AT_20 = [
    "curriculum.stages.0.gate.threshold=0.05",
    "curriculum.stages.0.gate.patience=1",
    "curriculum.stages.1.gate.threshold=1.0",
    "tracking.images_per_eval=0",
]


def stage_history(client, run) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "curriculum/stage"))


def assert_each_step_once(client, run, run_dir) -> None:
    """After restarts every MLflow history and every decisions file holds each step once: the steps
    trained again from the last checkpoint are not logged twice."""
    for key in run.data.metrics:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        if not key.startswith("system/"):  # MLflow's own sampler counts its own steps
            assert len(steps) == len(set(steps)), f"{key}: steps logged twice {sorted(steps)}"
    for path in (run_dir / "decisions").glob("rank-*.jsonl"):
        steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
        assert steps == sorted(set(steps)), f"{path.name}: {steps}"


def registered_steps(run_dir) -> list[int]:
    """Steps of the checkpoints Ray Train has registered: it polls the workers' reports every 2 s, so the
    newest checkpoint file may not be one Ray can restart from yet."""
    try:
        snapshot = json.loads((run_dir / "ray" / "run" / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return []
    return sorted(result["metrics"]["step"] for result in snapshot["checkpoint_results"])


def test_a_killed_worker_is_restarted_from_the_last_checkpoint_in_the_same_run(
    ray_head, runs, find_processes, tmp_path
):
    run_dir = tmp_path / "run"
    with runs.driver(
        ["--preset", "smoke", "--address", ray_head.address, "--run-dir", "run", *PROMOTE_AT_20, "train.max_steps=80"],
        tmp_path,
        test_cluster=True,
    ) as proc:
        runs.wait_until(lambda: registered_steps(run_dir), proc, "a checkpoint registered by Ray")
        registered = registered_steps(run_dir)[-1]
        # Every Ray process of the test cluster descends from its head's ``ray start`` process.
        workers = find_processes(ray_head.process.pid, "RayTrainWorker")
        assert len(workers) == 1, workers
        os.kill(workers[0], signal.SIGKILL)  # the process dies mid-step, as in an out-of-memory kill
        assert runs.finish(proc) == 0, runs.output(proc)[-3000:]
    output = runs.output(proc)
    resumed = re.findall(r"resumed from \S+ at step (\d+), stage (\d+)", output)
    assert resumed, f"no restart from a checkpoint:\n{output[-3000:]}"
    step, stage = map(int, resumed[-1])
    assert step >= registered >= 20 and stage == 1, "the restart continues from the last checkpoint, in stage 1"

    outcome = runs.outcome(run_dir)
    assert outcome["step"] == 80 and outcome["stage"] == 1
    assert [(t["step"], t["action"]) for t in outcome["transitions"]] == [(20, "promote")], "promoted once, not again"
    client, run = runs.mlflow_run(run_dir)
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1, "one MLflow run, restarts included"
    history = stage_history(client, run)
    assert history[-1][0] == 80 and all(value == 1 for s, value in history if s > 20)
    assert_each_step_once(client, run, run_dir)


def settled_checkpoint(runs, run_dir, quiet_s: float = 8.0, limit_s: float = 90.0) -> int:
    """The newest checkpoint step once no new checkpoint has appeared for ``quiet_s`` seconds."""
    deadline, last, since = time.monotonic() + limit_s, None, time.monotonic()
    while time.monotonic() < deadline:
        steps = runs.checkpoint_steps(run_dir)
        if steps != last:
            last, since = steps, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(0.5)
    return last[-1]


def test_a_killed_driver_is_resumed_into_the_same_run(ray_head, runs, tmp_path):
    run_dir = tmp_path / "run"
    with runs.driver(
        ["--preset", "smoke", "--address", ray_head.address, "--run-dir", "run", *PROMOTE_AT_20, "train.max_steps=100"],
        tmp_path,
        test_cluster=True,
    ) as proc:
        runs.wait_for_checkpoint(run_dir, proc, at_least=60)
    # Leaving the block killed the driver (SIGKILL to its process group). Its workers, on the test's
    # own Ray cluster, may still write one checkpoint as they stop: wait until the run is quiet.
    killed_at = settled_checkpoint(runs, run_dir)
    # Written by rename: whatever the kill interrupted, every file under a checkpoint's name is whole.
    for step in runs.checkpoint_steps(run_dir):
        assert load_checkpoint(run_dir / "checkpoints" / f"checkpoint-{step:09d}.pt")["step"] == step
    client, run = runs.mlflow_run(run_dir)
    assert run.info.status == "RUNNING", "a killed driver leaves the run RUNNING"

    result = runs.run(["--resume", "run", "--address", ray_head.address], tmp_path, test_cluster=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "marked KILLED" in result.stdout and "resumed from" in result.stdout
    client, again = runs.mlflow_run(run_dir)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1
    after = [value for s, value in stage_history(client, again) if s > killed_at]
    assert after and min(after) == 1, "resuming never goes back a stage"
    assert runs.outcome(run_dir)["step"] == 100
    assert not list((run_dir / "checkpoints").glob(".*")), "no temporary file is left behind"
    # The resume took the newest checkpoint the run wrote, not an older one Ray had registered.
    assert re.search(rf"resumed from \S+ at step {killed_at},", result.stdout), result.stdout[-2000:]
    assert_each_step_once(client, again, run_dir)


def test_sigterm_stops_both_ranks_at_one_step_killed_with_a_checkpoint(ray_head, runs, tmp_path):
    # Ray's own SIGTERM handler would exit at once and leave the MLflow run RUNNING. With two ranks, a rank
    # that stopped alone would leave the other waiting in an all-reduce forever. (Ctrl-C on a Ray run:
    # test_safe_defaults, on a local instance as a user starts it.)
    with runs.driver(
        [
            "--preset",
            "smoke",
            "--address",
            ray_head.address,
            "--run-dir",
            "run",
            *PROMOTE_AT_20,
            "train.max_steps=100000",
            "curriculum.stages.1.max_steps=100000",
            "scaling.num_workers=2",
        ],
        tmp_path,
        test_cluster=True,
    ) as proc:
        runs.wait_for_checkpoint(tmp_path / "run", proc, at_least=20)
        assert runs.stop_cleanly(proc, tmp_path / "run", signal.SIGTERM)["step"] > 20
