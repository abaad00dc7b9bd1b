"""The MLflow server goes away mid-run and comes back: training goes on, and what was logged meanwhile is
delivered once the server answers again (or counted as lost), never a crash."""

from __future__ import annotations

import json
import signal

import pytest

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop


def file_log_steps(run_dir) -> list[int]:
    """Steps the run logged evaluations at, from its own file log (``tracking/metrics.jsonl``), whatever MLflow
    received (training metrics between evaluations have lines of their own)."""
    path = run_dir / "tracking" / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    records = [json.loads(line) for line in lines if line.endswith("}")]
    return [r["step"] for r in records if "eval/valid_route" in r["metrics"]]


def test_training_goes_on_while_the_tracking_server_is_down(runs, mlflow_server, tmp_path):
    (tmp_path / "server").mkdir()
    db, log, port = tmp_path / "server" / "mlflow.db", tmp_path / "server.log", mlflow_server.free_port()
    servers = [mlflow_server.start(db, port, log)]
    run_dir = tmp_path / "run"
    try:
        mlflow_server.wait(servers[0], port, log)
        with runs.driver(
            [
                "--preset",
                "smoke",
                "--backend",
                "local",
                "--run-dir",
                "run",
                *runs.ENDLESS,
                f"tracking.mlflow_uri=http://127.0.0.1:{port}",
            ],
            tmp_path,
        ) as proc:
            runs.wait_until(lambda: file_log_steps(run_dir), proc, "a first evaluation")
            mlflow_server.stop(servers[0])
            logged = len(file_log_steps(run_dir))
            runs.wait_until(
                lambda: len(file_log_steps(run_dir)) >= logged + 2, proc, "two evaluations while MLflow is down"
            )
            servers.append(mlflow_server.start(db, port, log))
            mlflow_server.wait(servers[-1], port, log)
            runs.wait_until(
                lambda: "reachable again" in runs.output(proc), proc, "delivery after the outage", timeout=120
            )
            runs.stop_cleanly(proc, run_dir, signal.SIGINT)  # exit 130, KILLED in MLflow: it was reachable

        output = runs.output(proc)
        assert "unreachable" in output and "Traceback" not in output
        client, run = runs.mlflow_run(run_dir)
        delivered = sorted(m.step for m in client.get_metric_history(run.info.run_id, "eval/valid_route"))
        assert delivered == file_log_steps(run_dir), "every evaluation logged during the outage arrived later"
        assert "tracking.lost_metrics" not in run.data.tags
    finally:
        for server in servers:
            mlflow_server.stop(server)
