"""Credentials in a tracking URI are used, and never printed or stored: not on the console, not in any
file of the run (Ray's own included), not in MLflow. A real ``mlflow server`` on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from curriculum.core.uris import redact_uri, usable_uri

pytestmark = pytest.mark.slow  # a real MLflow server and training subprocesses

PHRASE = "s3cr3t-Pa55"


def test_redaction_is_pure_and_resumable():
    uri = "http://" + f"alice:{PHRASE}@127.0.0.1:5000"
    assert redact_uri(uri) == "http://***@127.0.0.1:5000" and redact_uri("sqlite:////a.db") == "sqlite:////a.db"
    assert usable_uri("http://***@127.0.0.1:5000", {"MLFLOW_TRACKING_URI": uri}) == uri
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_URI"):
        usable_uri("http://***@127.0.0.1:5000", {"MLFLOW_TRACKING_URI": "http://" + "bob:x@10.0.0.9:5000"})


def test_a_password_in_the_tracking_uri_is_used_and_never_printed_or_stored(mlflow_server, tmp_path):
    port = mlflow_server.free_port()
    server = mlflow_server.start(tmp_path / "server.db", port, tmp_path / "server.log")
    try:
        mlflow_server.wait(server, port, tmp_path / "server.log")
        uri = "http://" + f"alice:{PHRASE}@127.0.0.1:{port}"
        env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
        work = tmp_path / "work"
        work.mkdir()

        def run(*args, environ=env):
            return subprocess.run(
                [sys.executable, "-m", "curriculum.run", *args],
                capture_output=True,
                text=True,
                cwd=work,
                env=environ,
                timeout=300,
            )

        first = run("--preset", "smoke", "--backend", "local", "--run-dir", "run", "train.max_steps=20")
        assert first.returncode == 0, first.stderr[-3000:]
        assert PHRASE not in first.stdout + first.stderr and f"127.0.0.1:{port}" in first.stdout
        again = run("--resume", "run", "--backend", "local", "train.max_steps=40")
        assert again.returncode == 0 and "resumed from" in again.stdout, again.stderr[-3000:]
        assert PHRASE not in again.stdout + again.stderr
        # Without the URI that holds them, the stored run cannot be tracked: one line says how to give them.
        bare = {k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"}
        refused = run("--resume", "run", "--backend", "local", "train.max_steps=60", environ=bare)
        assert refused.returncode == 2 and "MLFLOW_TRACKING_URI" in refused.stderr, refused.stderr
        assert PHRASE not in refused.stderr
        for path in work.rglob("*"):
            if path.is_file():
                assert PHRASE.encode() not in path.read_bytes(), path
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"http://127.0.0.1:{port}")
        (run_info,) = client.search_runs([client.get_experiment_by_name("hrm-curriculum").experiment_id])
        assert run_info.info.status == "FINISHED" and int(run_info.data.metrics["curriculum/stage"]) >= 0
        assert PHRASE not in repr(run_info.data.params) + repr(run_info.data.tags)
        # The config refuses a password: it would be stored in config.json, checkpoints and MLflow params.
        in_config = run("--preset", "smoke", "--backend", "local", f"tracking.mlflow_uri={uri}")
        assert in_config.returncode == 2 and "tracking.mlflow_uri" in in_config.stderr
        assert PHRASE not in in_config.stderr
    finally:
        mlflow_server.stop(server)
