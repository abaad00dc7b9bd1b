"""The curriculum service end to end: real Ray (one local cluster for the module), real SQLite MLflow."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hrm.metrics import METRIC_NAMES

EVAL_METRICS = [m for m in METRIC_NAMES]  # every metric of DESIGN.md's table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory):
    """A local 2-CPU Ray cluster on loopback, token authentication off (test cluster only)."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    subprocess.run(["ray", "start", "--head", "--num-cpus", "2", "--num-gpus", "0", f"--port={port}",
                    "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
                    f"--temp-dir={temp}"], env=env, check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def cli_env():
    return dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")


def run_cli(args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "curriculum.run", *args], capture_output=True, text=True,
                          cwd=cwd, env=cli_env(), timeout=timeout)


def mlflow_run(cwd: Path, run_dir: Path):
    record = json.loads((run_dir / "run.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    return client, client.get_run(record["run_id"])


def transitions(run_dir: Path):
    outcome = json.loads((run_dir / "outcome.json").read_text())
    return [(t["step"], t["action"], t["from_stage"], t["to_stage"]) for t in outcome["transitions"]]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("local")
    result = run_cli(["--preset", "smoke", "--backend", "local", "--run-dir", "run"], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, cwd / "run", result


def test_local_smoke_run_promotes_and_logs_everything(local_run):
    cwd, run_dir, result = local_run
    assert (cwd / "mlflow.db").is_file(), "default tracking store is ./mlflow.db"
    client, run = mlflow_run(cwd, run_dir)
    assert run.info.status == "FINISHED"
    assert "promoted" in result.stdout and "outcome:" in result.stdout and "mlflow ui" in result.stdout
    metrics = run.data.metrics
    for name in EVAL_METRICS:
        assert f"eval/{name}" in metrics, name
    for name in ("train/loss", "train/ce", "train/q_halt", "curriculum/stage", "curriculum/grid_size",
                 "perf/steps_per_s", "train/skipped_steps"):
        assert name in metrics, name
    stages = [m.value for m in client.get_metric_history(run.info.run_id, "curriculum/stage")]
    assert max(stages) >= 1, "at least one promotion"
    assert any(k.startswith("curriculum.transition.") for k in run.data.tags)
    assert run.data.tags["curriculum.outcome"] in ("finished", "stalled", "budget")
    assert run.data.params["train.batch_size"] == "16"
    assert run.data.params["curriculum.stages.1.size"] == "10"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "routes")}
    assert artifacts and all(p.endswith(".png") for p in artifacts)
    assert any(a.path.endswith("timeline.png") for a in client.list_artifacts(run.info.run_id, "timeline"))
    assert (run_dir / "checkpoints").is_dir() and list((run_dir / "checkpoints").glob("checkpoint-*.pt"))


def test_ray_two_workers_switch_stage_at_the_same_step(ray_address, tmp_path):
    result = run_cli(["--preset", "smoke", "--address", ray_address, "--run-dir", "run", "scaling.num_workers=2"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    client, run = mlflow_run(tmp_path, run_dir)
    assert run.info.status == "FINISHED"
    assert "eval/valid_route" in run.data.metrics
    rank0 = (run_dir / "decisions" / "rank-0.jsonl").read_text().splitlines()
    rank1 = (run_dir / "decisions" / "rank-1.jsonl").read_text().splitlines()
    assert rank0 == rank1 and len(rank0) >= 2
    assert any(json.loads(line)["action"] == "promote" for line in rank0)
    assert "promoted" in result.stdout


def test_local_backend_takes_the_same_decisions_as_ray_with_one_worker(local_run, ray_address, tmp_path):
    result = run_cli(["--preset", "smoke", "--address", ray_address, "--run-dir", "run"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _, local_dir, _ = local_run
    assert transitions(tmp_path / "run") == transitions(local_dir)
    local_rank0 = (local_dir / "decisions" / "rank-0.jsonl").read_text()
    assert (tmp_path / "run" / "decisions" / "rank-0.jsonl").read_text() == local_rank0


def test_kill_9_then_resume_finishes_the_same_run(ray_address, tmp_path):
    # A long stage 1 (unreachable gate) so the run is still going when it is killed.
    args = ["--preset", "smoke", "--address", ray_address, "--run-dir", "run",
            "curriculum.stages.1.gate.threshold=1.0", "curriculum.stages.1.max_steps=200", "train.eval_every=20"]
    proc = subprocess.Popen([sys.executable, "-m", "curriculum.run", *args], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run_dir = tmp_path / "run"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*.pt"))
            if checkpoints and int(checkpoints[-1].stem.split("-")[1]) >= 120:
                break
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail("no checkpoint in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = int(sorted((run_dir / "checkpoints").glob("checkpoint-*.pt"))[-1].stem.split("-")[1])
    client, run = mlflow_run(tmp_path, run_dir)
    assert run.info.status == "RUNNING", "a killed driver leaves the run RUNNING"
    stage_before = max(m.value for m in client.get_metric_history(run.info.run_id, "curriculum/stage"))

    result = run_cli(["--resume", "run", "--address", ray_address], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "marked KILLED" in result.stdout and f"resumed from" in result.stdout
    client, again = mlflow_run(tmp_path, run_dir)
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "curriculum/stage")
    after = [m.value for m in history if m.step > killed_at]
    assert after and min(after) >= stage_before, "resuming never goes back a stage"
    assert json.loads((run_dir / "outcome.json").read_text())["step"] > killed_at
