"""Scale-out: ``cluster.yaml`` passes ``ray up``'s own validation offline, and a run spans two Ray nodes.

The multi-node tests start their own cluster on loopback: a head and a second node, each with one CPU,
on ports and temp dirs of their own. Each node is a ``ray start --block`` process, so terminating it
stops exactly that node (``ray stop`` would stop every Ray node on the machine).
"""

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"


def load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_up_checks(config: dict) -> dict:
    """What ``ray up`` does to the file before it talks to AWS: fill in defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("cluster.yaml validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---------------------------------------------------------------- cluster.yaml


def test_cluster_yaml_passes_ray_validation_offline(offline):
    prepared = ray_up_checks(load_cluster())
    assert prepared["provider"]["type"] == "aws"
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    workers = [t for name, t in types.items() if name != prepared["head_node_type"]]
    assert head["resources"]["GPU"] == 0 and "CPU" in head["resources"]
    assert workers and all(t["resources"]["GPU"] >= 1 and t["resources"]["CPU"] >= 1 for t in workers)
    assert all(t["min_workers"] == 0 and t["max_workers"] >= 1 for t in workers), "GPU workers autoscale"
    assert "gpu" in prepared["docker"]["image"] or "cu1" in prepared["docker"]["image"]
    assert "." in prepared["file_mounts"].values()
    assert any("pip install" in cmd and "hrm-curriculum" in cmd for cmd in prepared["setup_commands"])
    mlflow = " ".join(prepared["head_start_ray_commands"])
    assert "mlflow server" in mlflow and "--artifacts-destination" in mlflow and "--host 0.0.0.0" in mlflow
    head_setup = " ".join(prepared["head_setup_commands"])
    assert "s3://" in head_setup and "MLFLOW_TRACKING_URI" in head_setup


def test_cluster_yaml_holds_no_secrets():
    text = CLUSTER_YAML.read_text()
    for pattern in (
        r"AKIA[0-9A-Z]{16}",
        r"(?i)aws_secret_access_key",
        r"(?i)aws_session_token",
        r"-----BEGIN",
        r"(?i)password\s*[:=]\s*\S",
        r"postgresql://[^@\s]*:[^@\s]*@",
    ):
        assert not re.search(pattern, text), pattern
    config = load_cluster()
    key = config["auth"]["ssh_private_key"]
    assert key.endswith(".pem") and "\n" not in key, "the SSH key is named by path"
    assert all(
        "IamInstanceProfile" in t["node_config"] or name == config["head_node_type"]
        for name, t in config["available_node_types"].items()
    ), "workers reach S3 through a profile"


def test_every_cluster_command_is_valid_shell():
    config = ray_up_checks(load_cluster())
    commands = [
        *config["initialization_commands"],
        *config["head_setup_commands"],
        *config["worker_setup_commands"],
        *config["head_start_ray_commands"],
        *config["worker_start_ray_commands"],
    ]
    for node_type in config["available_node_types"].values():
        commands += node_type.get("initialization_commands", [])
    for command in commands:
        checked = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
        assert checked.returncode == 0, f"{command!r}: {checked.stderr}"


@pytest.mark.parametrize("mistake", ["max_worker", "node type min_worker", "docker imag", "auth not a mapping"])
def test_a_mistake_in_cluster_yaml_fails_validation(mistake, offline):
    import jsonschema

    config = load_cluster()
    if mistake == "max_worker":
        config["max_worker"] = config.pop("max_workers")
    elif mistake == "node type min_worker":
        worker = next(name for name in config["available_node_types"] if name != config["head_node_type"])
        config["available_node_types"][worker]["min_worker"] = config["available_node_types"][worker].pop("min_workers")
    elif mistake == "docker imag":
        config["docker"]["imag"] = config["docker"].pop("image")
    else:
        config["auth"] = "ubuntu"
    # The schema rejects most mistakes; Ray's docker check (an assert) catches a missing image first.
    with pytest.raises((jsonschema.ValidationError, AssertionError)):
        ray_up_checks(config)


# ---------------------------------------------------------------- a two-node cluster on this machine


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, ray_nodes):
    """A head and a second node, both on 127.0.0.1 (one host), one CPU each."""
    base = tmp_path_factory.mktemp("two-nodes")
    # Ray's socket paths (temp dir + session name + sockets/...) must stay under 108 characters.
    short = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    port = ray_nodes.free_port()
    address = f"127.0.0.1:{port}"
    logs = [base / "head.log", base / "second.log"]
    head = ray_nodes.start(
        [
            "--head",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--dashboard-port={ray_nodes.free_port()}",
        ],
        short / "h",
        logs[0],
    )
    nodes = [head]
    try:
        ray_nodes.wait(address, 1, nodes, logs[:1])
        nodes.append(
            ray_nodes.start(
                [f"--address={address}", "--node-ip-address=127.0.0.1", '--resources={"second_node": 1}'],
                short / "s",
                logs[1],
            )
        )
        ray_nodes.wait(address, 2, nodes, logs)
        yield address, base, short
    finally:
        for node in reversed(nodes):
            ray_nodes.stop(node)
        shutil.rmtree(short, ignore_errors=True)


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "curriculum.run", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_smoke_run_spans_two_nodes_with_shared_storage(two_nodes, tmp_path, ray_nodes):
    address, _, _ = two_nodes
    shared = tmp_path / "shared"
    result = run_cli(
        [
            "--preset",
            "smoke",
            "--address",
            address,
            "--run-dir",
            "run",
            "scaling.num_workers=2",
            "scaling.cpus_per_worker=1",
            f"scaling.storage={shared}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"

    record = json.loads((run_dir / "run.json").read_text())
    run = MlflowClient(record["tracking_uri"]).get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    assert "eval/valid_route" in run.data.metrics

    decisions = run_dir / "decisions"
    rank0 = (decisions / "rank-0.jsonl").read_text().splitlines()
    assert rank0 and rank0 == (decisions / "rank-1.jsonl").read_text().splitlines()

    # One worker per node: each node has one CPU and each worker asks for one.
    placed = [(decisions / f"rank-{rank}.node").read_text().strip() for rank in (0, 1)]
    nodes = ray_nodes.active(address)
    assert placed[0] != placed[1] and set(placed) == nodes, (placed, nodes)

    checkpoints = list((shared / "run").glob("checkpoint_*/checkpoint-*.pt"))
    assert checkpoints, f"no Ray checkpoint under {shared}"


def test_workers_that_need_nodes_yet_to_join_refuse_local_storage(two_nodes, tmp_path):
    # Three 1-CPU workers do not fit two 1-CPU nodes: they wait for nodes an autoscaler would add.
    address, _, _ = two_nodes
    result = run_cli(
        [
            "--preset",
            "smoke",
            "--address",
            address,
            "--run-dir",
            "run",
            "scaling.num_workers=3",
            "scaling.cpus_per_worker=1",
            f"scaling.storage={tmp_path / 'local'}",
        ],
        tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "scaling.storage" in lines[0] and "s3://" in lines[0], result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists(), "nothing is created"


def test_a_second_host_refuses_a_local_path(two_nodes, tmp_path, ray_nodes):
    # 127.0.0.2 is still loopback, but Ray sees it as another host with a disk of its own.
    address, base, short = two_nodes
    log = base / "other-host.log"
    other = ray_nodes.start([f"--address={address}", "--node-ip-address=127.0.0.2"], short / "o", log)
    try:
        ray_nodes.wait(address, 3, [other], [log])
        result = run_cli(
            ["--preset", "smoke", "--address", address, "--run-dir", "run", f"scaling.storage={tmp_path / 'local'}"],
            tmp_path,
            timeout=120,
        )
    finally:
        ray_nodes.stop(other)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "scaling.storage" in lines[0] and "2 host(s)" in lines[0], result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "mlflow.db").exists(), "nothing is created"


def test_a_run_resumes_from_its_storage_location_without_its_run_directory(two_nodes, tmp_path):
    """The run's state lives in its storage location, so ``--resume`` needs nothing rank 0 wrote on its node.

    Both nodes and the driver share this machine's disk, and the workers write the run directory at the
    driver's absolute path, so different working directories for the nodes would hide nothing. What the
    workers wrote is removed instead, in two steps. First everything but the driver's own files
    (``config.json``, ``run.json``, ``driver.lock``): what the head holds on a real cluster when rank 0
    trained on another node, where ``--resume DIR`` once found no checkpoint. Then the whole first working
    directory, and the run is resumed from its storage location alone, from a directory that never held it.
    Each resume must go on from the step the previous part ended at, in the same MLflow run.
    """
    address, _, _ = two_nodes
    shared, first, second = tmp_path / "shared", tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"  # outside both working directories
    workers = ["scaling.num_workers=2", "scaling.cpus_per_worker=1", "tracking.images_per_eval=0"]
    started = run_cli(
        ["--preset", "smoke", "--address", address, "--run-dir", "run", f"scaling.storage={shared}"]
        + [*workers, "train.max_steps=20", f"tracking.mlflow_uri={store}"],
        first,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    location = shared / "run"
    record = json.loads((location / "run.json").read_text())
    assert record["storage"] == str(location) and record["run_dir"] == str(first / "run")
    assert json.loads((location / "outcome.json").read_text())["step"] == 20
    assert json.loads((location / "config.json").read_text())["train"]["max_steps"] == 20

    for path in (first / "run").iterdir():  # the head's view: only what the driver wrote stays
        if path.name not in ("config.json", "run.json", "driver.lock"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    again = run_cli(["--resume", "run", "--address", address, "train.max_steps=40"], first)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(
        rf"resumed from {re.escape(str(location))}/checkpoint_[^/]+/checkpoint-000000020\.pt", again.stdout
    )
    assert "at step 20" in again.stdout, again.stdout[-3000:]

    shutil.rmtree(first)
    last = run_cli(["--resume", str(location), "--address", address, "train.max_steps=60"], second)
    assert last.returncode == 0, last.stderr[-3000:]
    assert re.search(rf"resumed from {re.escape(str(location))}/checkpoint_[^/]+/checkpoint-000000040\.pt", last.stdout)
    assert "at step 40" in last.stdout, last.stdout[-3000:]
    assert not first.exists(), "nothing is written where the run began"

    here = second / "runs" / "run"
    assert json.loads((here / "run.json").read_text())["run_id"] == record["run_id"], "the same MLflow run"
    assert json.loads((location / "run.json").read_text())["run_dir"] == str(here)
    assert json.loads((location / "outcome.json").read_text())["step"] == 60
    client = MlflowClient(store)
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED"
    steps = [point.step for point in client.get_metric_history(record["run_id"], "eval/valid_route")]
    assert steps == [20, 40, 60], "each evaluation logged once, across three drivers"
