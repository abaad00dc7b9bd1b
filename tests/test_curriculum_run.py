"""The curriculum service end to end: real Ray (one local cluster for the module), real SQLite MLflow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from routing.metric_names import METRIC_NAMES

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

EVAL_METRICS = [m for m in METRIC_NAMES]  # every metric of DESIGN.md's table


def cli_env():
    return dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", PYTHONUNBUFFERED="1")


def run_cli(args, cwd, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "curriculum.run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(),
        timeout=timeout,
    )


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
    # MLflow's own variable: system metrics every second, so a run of seconds has several points.
    env = dict(cli_env(), MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="1")
    result = subprocess.run(
        [sys.executable, "-m", "curriculum.run", "--preset", "smoke", "--backend", "local", "--run-dir", "run"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return cwd, cwd / "run", result


def test_local_smoke_run_promotes_and_logs_everything(local_run):
    cwd, run_dir, result = local_run
    assert (cwd / "mlflow.db").is_file(), "default tracking store is ./mlflow.db"
    client, run = mlflow_run(cwd, run_dir)
    assert run.info.status == "FINISHED"
    assert "promoted" in result.stdout and "outcome:" in result.stdout and "mlflow ui" in result.stdout
    assert run.info.run_name == "smoke", "named by its preset and overrides (none here)"
    link = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning"
    assert link in result.stdout, "a link that opens the UI on the training runs, not the GenAI overview"
    assert run.data.tags["mlflow.source.name"] == "python -m curriculum.run"
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    metrics = run.data.metrics
    for name in EVAL_METRICS:
        assert f"eval/{name}" in metrics, name
    for name in (
        "train/loss",
        "train/ce",
        "train/q_halt",
        "curriculum/stage",
        "curriculum/grid_size",
        "perf/steps_per_s",
        "train/skipped_steps",
    ):
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


def test_the_run_page_shows_system_metrics_and_the_stages_as_datasets(local_run):
    cwd, run_dir, _ = local_run
    client, run = mlflow_run(cwd, run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    for name in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        history = client.get_metric_history(run.info.run_id, name)
        assert len(history) >= 2, name
        assert [m.step for m in history] == list(range(len(history))), "one point per sampling step, in order"
    cpu = client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert all(0 <= m.value <= 100 for m in cpu) and any(m.value > 0 for m in cpu)
    # Sampled while the run trained: every point lies between the run's start and end.
    assert all(run.info.start_time <= m.timestamp <= run.info.end_time for m in cpu)
    datasets = run.inputs.dataset_inputs
    sizes = [stage["size"] for stage in config["curriculum"]["stages"]]
    assert [d.dataset.name for d in datasets] == [f"stage {i}: {n}x{n}" for i, n in enumerate(sizes)]
    for inp, stage in zip(datasets, config["curriculum"]["stages"]):
        assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
        source = json.loads(inp.dataset.source)
        assert json.loads(source["tags"]["task_spec"])["size"] == stage["size"]
        assert source["tags"]["run_seed"] == str(config["train"]["seed"])
        schema = json.loads(inp.dataset.schema)["mlflow_colspec"]
        assert schema[0]["tensor-spec"]["shape"] == [-1, stage["size"] ** 2]


def test_ray_two_workers_switch_stage_at_the_same_step(ray_address, tmp_path):
    result = run_cli(
        ["--preset", "smoke", "--address", ray_address, "--run-dir", "run", "scaling.num_workers=2"]
        + ["model.ema_decay=0.8"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    # The weight average follows the weights trained under DDP (it once matched no `module.` name and
    # stayed at the initial weights): it lies far closer to the trained weights than to the initial ones.
    import torch

    from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint
    from curriculum.core.config import RunConfig
    from hrm.model import HRM

    saved = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    config = RunConfig.model_validate_json(saved["config"])
    torch.manual_seed(config.train.seed)  # the learner's initial weights
    initial = HRM(config.model).state_dict()
    shadow, trained = saved["ema"]["shadow"], saved["model"]
    assert saved["ema"]["num_updates"] == saved["step"] - saved["skipped_total"]
    lag = sum((shadow[k] - trained[k]).norm() ** 2 for k in shadow) ** 0.5
    moved = sum((initial[k] - trained[k]).norm() ** 2 for k in shadow) ** 0.5
    assert moved > 0 and lag < 0.5 * moved, (float(lag), float(moved))
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


def test_evaluate_cli_prints_a_table_per_size_and_writes_pictures(local_run):
    cwd, run_dir, _ = local_run
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "curriculum.evaluate",
            str(run_dir),
            "--sizes",
            "8,12",
            "--count",
            "24",
            "--pictures",
            str(cwd / "eval-pics"),
            "--errors",
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith(("8x8", "12x12"))]
    assert len(rows) == 4  # the metrics table, then the errors table
    rows = rows[:2]
    assert all("24" in row for row in rows)
    assert "connectivity" in result.stdout and "valid_route" in result.stdout
    # 8 is the run's stage 0; 12 is outside its ladder, and the table says so.
    assert "| stage 0" in rows[0] and "| default" in rows[1] and "outside the run's ladder" in result.stdout
    client, run = mlflow_run(cwd, run_dir)
    assert "not logged" not in result.stderr
    for size in (8, 12):
        for name in ("valid_route", "fewest_cells_optimal", "errors/missing", "errors/wrong_6_or_more"):
            assert f"evaluate/{size}/{name}" in run.data.metrics, (size, name)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluate")}
    assert any(p.endswith(".txt") for p in logged) and any(p.endswith(".json") for p in logged)
    assert sorted(p.name for p in (cwd / "eval-pics").iterdir()) == ["evaluate-12x12.png", "evaluate-8x8.png"]
    bad = subprocess.run(
        [sys.executable, "-m", "curriculum.evaluate", str(run_dir), "--sizes", "8,65"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert bad.returncode == 2 and "--sizes" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_compare_cli_lists_the_run(local_run):
    cwd, run_dir, _ = local_run
    record = json.loads((run_dir / "run.json").read_text())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "curriculum.compare",
            "--experiment",
            "hrm-curriculum",
            "--tracking-uri",
            record["tracking_uri"],
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "8-10" in result.stdout and "FINISHED" in result.stdout


def test_resume_of_a_finished_run_is_refused_or_finishes_at_once(local_run):
    cwd, run_dir, _ = local_run
    outcome = json.loads((run_dir / "outcome.json").read_text())
    result = run_cli(["--resume", str(run_dir), "--backend", "local"], cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((run_dir / "outcome.json").read_text())["step"] == outcome["step"]


# a bare GPU box: neither MLflow nor Ray can be imported
BARE_BOX = (
    "import sys, runpy\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('mlflow', 'ray'): raise ImportError('not on a bare GPU box')\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = ['curriculum.run'] + sys.argv[1:]\n"
    "runpy.run_module('curriculum.run', run_name='__main__')\n"
)


def test_runs_without_mlflow_or_ray_then_replays_into_mlflow(tmp_path):
    args = ["--preset", "smoke", "--backend", "local", "--run-dir", "run", "train.max_steps=40"]
    result = subprocess.run(
        [sys.executable, "-c", BARE_BOX, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MLflow is not installed" in result.stdout
    assert not (tmp_path / "mlflow.db").exists()
    lines = (tmp_path / "run" / "tracking" / "metrics.jsonl").read_text().splitlines()
    evaluations = [line for line in lines if "eval/valid_route" in json.loads(line)["metrics"]]
    assert len(evaluations) == 2 and len(lines) >= 2

    replay = subprocess.run(
        [sys.executable, "-m", "curriculum.replay", "run"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr
    client, run = mlflow_run(tmp_path, tmp_path / "run")
    assert run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "eval/valid_route")]
    assert steps == [20, 40]
    assert run.data.params["train.batch_size"] == "16"
