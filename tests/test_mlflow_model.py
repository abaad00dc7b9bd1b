"""The trained router as an MLflow model, for real: a smoke run logs it (local backend and Ray), a fresh
process loads it with ``mlflow.pyfunc.load_model`` and routes as ``predict_tokens`` does,
``curriculum.evaluate --register`` registers it, and ``mlflow models serve`` answers with routes.

Every test here trains, loads or serves in subprocesses against a SQLite store of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from curriculum.adapters.checkpoint import latest_checkpoint, load_checkpoint
from curriculum.core.config import RunConfig
from hrm.ema import EMA
from hrm.model import HRM
from oracle import TaskSpec, generate_tasks, vocab
from routing.batch import task_tensors
from routing.training import predict_tokens

pytestmark = pytest.mark.slow  # training, model loading and a model server in subprocesses

SMOKE = ["--preset", "smoke", "--run-dir", "run", "train.max_steps=20", "model.ema_decay=0.9"]
MODEL_LINE = re.compile(r"MLflow model (models:/m-[0-9a-f]+): the EMA's weights at step (\d+)")


def env_for(cwd: Path) -> dict[str, str]:
    return dict(
        os.environ,
        MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlflow.db'}",
        RAY_AUTH_MODE="disabled",
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
        PYTHONUNBUFFERED="1",
    )


def python(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env_for(cwd), timeout=timeout
    )


def train(cwd: Path, *extra: str) -> tuple[str, subprocess.CompletedProcess]:
    result = python(["-m", "curriculum.run", *SMOKE, *extra], cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    found = MODEL_LINE.search(result.stdout)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return found.group(1), result


def expected_routes(run_dir: Path, tasks, segments=None) -> tuple[list[list[int]], np.ndarray]:
    """predict_tokens' routes and sigmoid(q_halt) of the run's final checkpoint, with its EMA, as evaluation runs."""
    saved = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    config = RunConfig.model_validate_json(saved["config"])
    model = HRM(config.model.model_copy(update={"max_grid": 64}))
    model.load_state_dict(saved["model"])
    ema = EMA(model, config.model.ema_decay)
    ema.load_state_dict(saved["ema"])
    segments = segments or config.train.eval_segments
    batch = task_tensors(tasks)
    tokens = predict_tokens(model, batch, ema, segments).numpy()
    with ema.average_weights(model):
        _, outputs = model.predict(batch, segments)
    return [np.flatnonzero(row == vocab.PATH).tolist() for row in tokens], torch.sigmoid(
        outputs["q_halt_logits"]
    ).numpy()


def model_dir(location: str) -> Path:
    """The local folder of a logged model's artifact location (a file:// URI or a path)."""
    return Path(urlparse(location).path)


def logged_weights(cwd: Path, model_uri: str) -> dict[str, torch.Tensor]:
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    return torch.load(model_dir(model.artifact_location) / "artifacts" / "weights.pt", weights_only=True)


def assert_weights_are_the_final_ema(run_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    saved = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert set(weights) == set(saved["model"])
    for name, value in saved["ema"]["shadow"].items():
        assert torch.equal(weights[name], value), name
    assert any(not torch.equal(weights[n], saved["model"][n]) for n in saved["ema"]["shadow"]), "not the live weights"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("served")
    model_uri, result = train(cwd, "--backend", "local")
    return cwd, cwd / "run", model_uri, result


LOAD_AND_ROUTE = """
import json, sys
import mlflow, numpy as np, pandas as pd
from mlflow.exceptions import MlflowException
from oracle import TaskSpec, generate_tasks

model = mlflow.pyfunc.load_model(sys.argv[1])
answer = {"signature": model.metadata.signature.to_dict(), "sizes": {}}
for size in (8, 10):
    tasks = generate_tasks(TaskSpec(size=size), count=64, seed=size)
    table = pd.DataFrame({"inputs": [row.tolist() for row in tasks.inputs], "vehicle": tasks.vehicle.tolist()})
    out = model.predict(table)
    answer["sizes"][size] = {"route": [list(map(int, r)) for r in out["route"]],
                             "halt": out["halt_confidence"].tolist()}
tokens = generate_tasks(TaskSpec(size=8), count=1, seed=8).inputs[0].tolist()
answer["segments1"] = [list(map(int, r)) for r in model.predict(pd.DataFrame({"inputs": [tokens]}),
                                                                 params={"segments": 1})["route"]]
answer["errors"] = []
for bad in (tokens[:-1], tokens[:3] + [99] + tokens[4:]):
    try:
        model.predict(pd.DataFrame({"inputs": [bad]}))
        answer["errors"].append(None)
    except MlflowException as exc:
        answer["errors"].append(exc.message)
print(json.dumps(answer))
"""


def test_the_run_logs_its_final_ema_weights_as_an_mlflow_model(local_run):
    cwd, run_dir, model_uri, result = local_run
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    run = client.get_run(json.loads((run_dir / "run.json").read_text())["run_id"])
    model = client.get_logged_model(model_uri.removeprefix("models:/"))
    assert model.source_run_id == run.info.run_id and model.experiment_id == run.info.experiment_id
    assert [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert model_dir(model.artifact_location).is_relative_to(cwd / "mlartifacts"), "beside the store, not ./mlruns"
    artifacts = model_dir(model.artifact_location)
    assert sorted(p.name for p in (artifacts / "artifacts").iterdir()) == ["router.json", "weights.pt"]
    assert not list(artifacts.rglob("*.pkl")), "nothing pickled: code, a state dict and JSON"
    mlmodel = (artifacts / "MLmodel").read_text()
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel
    assert (artifacts / "mlflow_model_code.py").is_file()
    assert_weights_are_the_final_ema(run_dir, logged_weights(cwd, model_uri))
    router = json.loads((artifacts / "artifacts" / "router.json").read_text())
    assert router["source"] == {"run_id": run.info.run_id, "step": 20, "weights": "ema"}
    assert router["model"]["ema_decay"] == 0.9 and router["vocab"]["PATH"] == vocab.PATH


def test_a_fresh_process_loads_the_model_and_routes_as_predict_tokens(local_run):
    cwd, run_dir, model_uri, _ = local_run
    started = time.monotonic()
    result = python(["-c", LOAD_AND_ROUTE, model_uri], cwd, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    signature = answer["signature"]
    assert [c["name"] for c in json.loads(signature["inputs"])] == ["inputs", "vehicle"]
    assert [c["name"] for c in json.loads(signature["outputs"])] == ["route", "halt_confidence"]
    assert json.loads(signature["params"])[0]["name"] == "segments"
    for size in (8, 10):
        tasks = generate_tasks(TaskSpec(size=size), count=64, seed=size)
        routes, halts = expected_routes(run_dir, tasks)
        assert answer["sizes"][str(size)]["route"] == routes, size
        assert np.allclose(answer["sizes"][str(size)]["halt"], halts, atol=1e-6)
    one = generate_tasks(TaskSpec(size=8), count=1, seed=8)
    assert answer["segments1"] == expected_routes(run_dir, one, segments=1)[0]
    short, out_of_vocab = answer["errors"]
    assert short == "task 0: 63 tokens is not an N x N grid with N in 8..64 (64 to 4096 tokens, a square)"
    assert out_of_vocab == "task 0: token 99 at cell 3 is outside the vocabulary 0..41"
    print(f"load and route in a fresh process: {time.monotonic() - started:.1f} s")


def post(port: int, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def serve(cwd: Path, model: str, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local"]
        + ["-h", "127.0.0.1", "-p", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env_for(cwd),
        start_new_session=True,  # its own process group: the server's workers end with it
    )


def test_evaluate_registers_the_model_and_mlflow_serves_it(local_run, mlflow_server):
    cwd, run_dir, _, _ = local_run
    registered, logged = [], []
    for _ in range(2):  # the same name again is a new version
        result = python(
            ["-m", "curriculum.evaluate", "run", "--sizes", "8", "--count", "16", "--register", "router"], cwd
        )
        assert result.returncode == 0, result.stderr[-3000:]
        registered.append(re.search(r"registered: models:/router/(\d+)", result.stdout).group(1))
        logged.append(
            re.search(
                r"MLflow model: (models:/m-[0-9a-f]+) \(ema weights of checkpoint-000000020.pt\)", result.stdout
            ).group(1)
        )
    assert registered == ["1", "2"]
    client = MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}")
    version = client.get_model_version("router", "1")
    assert version.run_id == json.loads((run_dir / "run.json").read_text())["run_id"]
    assert version.source == logged[0] and logged[0] != logged[1]
    assert_weights_are_the_final_ema(run_dir, logged_weights(cwd, version.source))

    port, log = mlflow_server.free_port(), cwd / "serve.log"
    server = serve(cwd, "models:/router/1", port, log)
    try:
        mlflow_server.wait(server, port, log, limit_s=120.0, path="/ping")
        tasks = generate_tasks(TaskSpec(size=10), count=8, seed=21)
        records = [{"inputs": row.tolist(), "vehicle": int(v)} for row, v in zip(tasks.inputs, tasks.vehicle)]
        status, answer = post(port, {"dataframe_records": records})
        assert status == 200, answer
        routes, halts = expected_routes(run_dir, tasks)
        assert [p["route"] for p in answer["predictions"]] == routes
        assert np.allclose([p["halt_confidence"] for p in answer["predictions"]], halts, atol=1e-6)
        # Bad input: a 400 whose message ends with the one line naming what is wrong.
        bad = tasks.inputs[0].tolist()
        bad[17] = 57
        status, answer = post(port, {"dataframe_records": [{"inputs": bad}]})
        assert status == 400
        assert (
            answer["message"].splitlines()[-1] == "Error: task 0: token 57 at cell 17 is outside the vocabulary 0..41"
        )
        status, answer = post(port, {"dataframe_records": [{"inputs": bad[:50]}]})
        assert status == 400 and answer["message"].splitlines()[-1].startswith("Error: task 0: 50 tokens is not an N")
        wrong = int(tasks.vehicle[0]) ^ 1
        status, answer = post(port, {"dataframe_records": [{"inputs": records[0]["inputs"], "vehicle": wrong}]})
        assert status == 400 and "differs from the START token's" in answer["message"].splitlines()[-1]
    finally:
        mlflow_server.stop(server)
    assert server.poll() is not None


def test_register_with_an_invalid_name_is_one_line_and_exit_2_before_any_evaluation(local_run):
    cwd, _, _, _ = local_run
    result = python(["-m", "curriculum.evaluate", "run", "--register", "a/b"], cwd, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--register: 'a/b' is not a registered model name" in lines[0]
    assert "grid" not in result.stdout, "refused before evaluating"


def test_a_run_on_ray_logs_its_final_ema_weights_too(ray_address, tmp_path):
    model_uri, result = train(tmp_path, "--address", ray_address)
    assert_weights_are_the_final_ema(tmp_path / "run", logged_weights(tmp_path, model_uri))
