"""The MLflow adapter against a real MLflow: a SQLite store under tmp, and a real `mlflow server` for the outage."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from curriculum.adapters.mlflow_store import (
    HTTP_DEFAULTS,
    create_run,
    find_run,
    make_client,
    mark_killed_if_orphaned,
    reopen_run,
    resolve_tracking_uri,
    run_status,
)
from curriculum.adapters.mlflow_tracker import LOST_METRICS_TAG, MlflowTracker
from curriculum.adapters.tracking import FileTracker, flatten_config, replay_into

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Path]:
    """One SQLite store for the module: creating its tables is the slow part."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{db}"
    create_run(uri, "warm-up", "warm-up")
    return uri, db


@pytest.fixture(scope="module")
def client(store):
    return make_client(store[0])


# ------------------------------------------------------------------ tracking URIs


def test_resolve_tracking_uri_prefers_config_then_environment_then_absolute_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_tracking_uri(None) == "http://tracking:5000"
    assert resolve_tracking_uri("https://mlflow.example") == "https://mlflow.example"
    # A relative SQLite path is pinned to this directory for workers elsewhere; an absolute one is kept.
    assert resolve_tracking_uri("sqlite:///runs/m.db") == f"sqlite:///{tmp_path}/runs/m.db"
    assert resolve_tracking_uri("sqlite:////data/m.db?timeout=30") == "sqlite:////data/m.db?timeout=30"


@pytest.mark.parametrize("uri", ["./mlruns", "mlruns", "/abs/mlruns", "file:///tmp/mlruns", "file:./mlruns"])
def test_the_file_store_is_refused(uri, monkeypatch):
    with pytest.raises(ValueError, match="file store.*not supported.*sqlite:///.*http"):
        resolve_tracking_uri(uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ValueError, match="file store"):
        resolve_tracking_uri(None)


def test_http_clients_get_short_timeouts_unless_the_environment_sets_them(store, monkeypatch):
    for name in HTTP_DEFAULTS:
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores "unset" afterwards
        monkeypatch.delenv(name)
    make_client(store[0])
    assert not any(name in os.environ for name in HTTP_DEFAULTS)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    make_client("http://127.0.0.1:1")
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == HTTP_DEFAULTS["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]


# ------------------------------------------------------------------ runs


def test_create_run_makes_a_running_run_and_reuses_the_experiment(store, client):
    uri, db = store
    first = create_run(uri, "curricula", "first", {"curriculum.preset": "tiny"})
    second = create_run(uri, "curricula", "second", {})
    a, b = client.get_run(first), client.get_run(second)
    assert a.info.status == b.info.status == "RUNNING"
    assert a.info.experiment_id == b.info.experiment_id
    assert a.info.run_name == "first" and a.data.tags["curriculum.preset"] == "tiny"
    # Artifacts live beside the database, not in ./mlruns of whichever process opened the store.
    assert a.info.artifact_uri.startswith((db.parent / "mlartifacts").as_uri())


def test_create_run_refuses_a_deleted_experiment(store, client):
    uri, _ = store
    create_run(uri, "to-delete", "r")
    client.delete_experiment(client.get_experiment_by_name("to-delete").experiment_id)
    with pytest.raises(ValueError, match="deleted"):
        create_run(uri, "to-delete", "again")


def test_tracker_logs_params_metrics_tags_and_artifacts(store, client, tmp_path):
    uri, _ = store
    run_id = create_run(uri, "curricula", "logged")
    tracker = MlflowTracker(uri, run_id)
    params = {f"p.{i}": i for i in range(250)}  # more than one batch of params
    params["train.grad_clip"] = None
    tracker.log_params(params)
    tracker.log_metrics({f"m/{i}": float(i) for i in range(2500)}, step=0)  # more than one batch of metrics
    for step, stage in ((0, 0), (100, 1), (200, 1), (300, 2)):
        tracker.log_metrics({"curriculum/stage": stage, "train/loss": 1.0 / (step + 1)}, step)
    tracker.log_metrics({"train/loss": 5.0}, 400, timestamp=1_700_000_000.25)
    tracker.set_tags({"curriculum.outcome": "finished", "curriculum.transition.1": "step 100: promoted"})
    picture = tmp_path / "routes-step0000100.png"
    picture.write_bytes(b"\x89PNG fake")
    tracker.log_artifact(picture, "routes")
    folder = tmp_path / "timeline"
    folder.mkdir()
    (folder / "t.txt").write_text("t")
    tracker.log_artifact(folder)
    tracker.finish("FINISHED")

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len([k for k in run.data.params if k.startswith("p.")]) == 250
    assert run.data.params["p.7"] == "7" and run.data.params["train.grad_clip"] == "None"
    assert len([k for k in run.data.metrics if k.startswith("m/")]) == 2500
    stage = client.get_metric_history(run_id, "curriculum/stage")
    assert sorted((m.step, m.value) for m in stage) == [(0, 0.0), (100, 1.0), (200, 1.0), (300, 2.0)]
    replayed = [m for m in client.get_metric_history(run_id, "train/loss") if m.step == 400]
    assert [(m.value, m.timestamp) for m in replayed] == [(5.0, 1_700_000_000_250)]
    assert run.data.tags["curriculum.transition.1"] == "step 100: promoted"
    assert LOST_METRICS_TAG not in run.data.tags
    assert [a.path for a in client.list_artifacts(run_id, "routes")] == ["routes/routes-step0000100.png"]
    assert [a.path for a in client.list_artifacts(run_id)] == ["routes", "t.txt"]
    assert tracker.lost_metrics == 0


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_finish_sets_the_terminal_status(store, status):
    uri, _ = store
    run_id = create_run(uri, "curricula", f"ends-{status.lower()}")
    MlflowTracker(uri, run_id).finish(status)
    assert run_status(uri, run_id) == status


def test_finish_refuses_an_unknown_status(store):
    uri, _ = store
    run_id = create_run(uri, "curricula", "bad-status")
    with pytest.raises(ValueError):
        MlflowTracker(uri, run_id).finish("DONE")
    assert run_status(uri, run_id) == "RUNNING"


def test_a_rejected_call_warns_instead_of_raising(store, client, capsys):
    uri, _ = store
    run_id = create_run(uri, "curricula", "rejected")
    tracker = MlflowTracker(uri, run_id)
    tracker.log_params({"train.lr": 0.1})
    tracker.log_params({"train.lr": 0.2})  # MLflow params are immutable
    tracker.log_metrics({"train/loss": 1.0}, 1)
    assert "refused" in capsys.readouterr().err
    assert client.get_run(run_id).data.params["train.lr"] == "0.1"
    assert client.get_run(run_id).data.metrics["train/loss"] == 1.0


def test_find_run_and_run_status_of_an_unknown_run(store):
    uri, _ = store
    assert find_run(uri, "0" * 32) is None
    with pytest.raises(LookupError):
        run_status(uri, "0" * 32)


def test_mark_killed_if_orphaned_only_touches_running_runs(store, client):
    uri, _ = store
    orphan = create_run(uri, "curricula", "orphan")
    done = create_run(uri, "curricula", "done")
    MlflowTracker(uri, done).finish("FINISHED")

    assert mark_killed_if_orphaned(uri, orphan) is True
    assert run_status(uri, orphan) == "KILLED"
    assert client.get_run(orphan).data.tags["curriculum.outcome"] == "killed"
    assert mark_killed_if_orphaned(uri, orphan) is False
    assert mark_killed_if_orphaned(uri, done) is False
    assert run_status(uri, done) == "FINISHED"
    assert mark_killed_if_orphaned(uri, "0" * 32) is False

    reopen_run(uri, orphan)
    assert run_status(uri, orphan) == "RUNNING"


# ------------------------------------------------------------------ an unreachable server


def test_an_unreachable_server_queues_counts_losses_and_delivers_later(store, client, tmp_path, capsys, mlflow_server):
    uri, db = store
    run_id = create_run(uri, "curricula", "offline")
    port = mlflow_server.free_port()
    tracker = MlflowTracker(
        f"http://127.0.0.1:{port}", run_id, attempts=2, backoff_s=0.01, retry_interval_s=0.0, max_queued=5
    )

    started = time.monotonic()
    tracker.log_params({"train.lr": 0.5})
    tracker.set_tags({"curriculum.preset": "offline"})
    for step in range(4):  # 8 points; the queue keeps the newest 5
        tracker.log_metrics({"train/loss": float(step), "eval/valid_route": step / 10}, step)
    assert time.monotonic() - started < 10, "a dead server must not block training"
    assert tracker.lost_metrics == 3
    assert tracker.queued_metrics == 5
    err = capsys.readouterr().err
    assert "unreachable" in err and "lost" in err

    proc = mlflow_server.start(db, port, tmp_path / "server.log")
    try:
        mlflow_server.wait(proc, port, tmp_path / "server.log")
        tracker.log_metrics({"train/loss": 9.0}, 9)  # the next call delivers the queue first
        assert tracker.queued_metrics == 0
        tracker.finish("FINISHED")
    finally:
        mlflow_server.stop(proc)

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.5"
    assert run.data.tags["curriculum.preset"] == "offline"
    assert run.data.tags[LOST_METRICS_TAG] == "3"
    # The three oldest points were dropped: step 0 (both metrics) and step 1's train/loss.
    assert sorted(m.step for m in client.get_metric_history(run_id, "train/loss")) == [2, 3, 9]
    assert sorted(m.step for m in client.get_metric_history(run_id, "eval/valid_route")) == [1, 2, 3]
    assert "reachable again" in capsys.readouterr().err


def test_points_still_queued_at_finish_are_reported_lost(store, capsys, mlflow_server):
    uri, _ = store
    run_id = create_run(uri, "curricula", "never-delivered")
    tracker = MlflowTracker(f"http://127.0.0.1:{mlflow_server.free_port()}", run_id, attempts=1, backoff_s=0.0)
    tracker.log_metrics({"train/loss": 1.0, "eval/optimal": 0.0}, 1)
    tracker.finish("FINISHED")  # nothing listens: must not raise
    assert tracker.lost_metrics == 2 and tracker.queued_metrics == 0
    err = capsys.readouterr().err
    assert "still queued" in err and "stays RUNNING" in err
    assert run_status(uri, run_id) == "RUNNING"  # left for mark_killed_if_orphaned


def test_a_file_tracker_run_replays_into_mlflow(store, client, tmp_path):
    uri, _ = store
    offline = FileTracker(tmp_path / "gpu-run")
    offline.log_params(flatten_config({"train": {"lr": 0.001}, "curriculum": {"stages": [{"size": 10}]}}))
    for step in (10, 20, 30):
        offline.log_metrics(
            {"curriculum/stage": step // 20, "eval/valid_route": step / 100}, step, timestamp=1_600_000_000 + step
        )
    offline.set_tags({"curriculum.outcome": "budget"})
    (tmp_path / "timeline.png").write_bytes(b"png")
    offline.log_artifact(tmp_path / "timeline.png", "timeline")
    offline.finish("FAILED")

    run_id = create_run(uri, "replayed", "gpu-run")
    assert replay_into(tmp_path / "gpu-run", MlflowTracker(uri, run_id)) == 3

    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.params["curriculum.stages.0.size"] == "10" and run.data.params["train.lr"] == "0.001"
    assert run.data.tags["curriculum.outcome"] == "budget"
    history = client.get_metric_history(run_id, "eval/valid_route")
    assert sorted((m.step, m.value, m.timestamp) for m in history) == [
        (10, 0.1, 1_600_000_010_000),
        (20, 0.2, 1_600_000_020_000),
        (30, 0.3, 1_600_000_030_000),
    ]
    assert [a.path for a in client.list_artifacts(run_id, "timeline")] == ["timeline/timeline.png"]
