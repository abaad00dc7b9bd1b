"""A tuner trial that crashes: the search goes on, the trial's MLflow run ends FAILED, a best config comes out.

The crash is real: the first trial's Ray Train worker process is killed (SIGKILL) on the test's own
cluster, and a trial is not retried (its trainer runs with ``max_failures=0``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # real Ray, MLflow or training subprocesses: outside the inner loop


def test_a_crashed_trial_is_marked_failed_and_the_search_still_yields_a_best_config(
    ray_head, runs, find_processes, tmp_path
):
    out = tmp_path / "out"
    with (tmp_path / "tuner.log").open("w") as log:
        tuner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuners.penalties",
                "--preset",
                "smoke",
                "--trials",
                "2",
                "--budget-steps",
                "40",
                "--grace-steps",
                "20",
                "--address",
                ray_head.address,
                "--out",
                "out",
                "tracking.images_per_eval=0",
            ],
            cwd=tmp_path,
            env=runs.env(test_cluster=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    tuner.log = tmp_path / "tuner.log"
    try:
        # A trial's worker records its node as it starts: the first one to do so is the trial to crash.
        def started():
            return sorted((out / "trials").glob("*/decisions/rank-0.node")) if (out / "trials").is_dir() else []

        runs.wait_until(started, tuner, "a trial's worker")
        crashed = started()[0].parent.parent.name
        workers = find_processes(ray_head.process.pid, "RayTrainWorker")
        assert len(workers) == 1, workers  # two CPUs: one trial at a time
        os.kill(workers[0], signal.SIGKILL)
        assert runs.finish(tuner, timeout=300) == 0, runs.output(tuner)[-4000:]
    finally:
        if tuner.poll() is None:
            os.killpg(tuner.pid, signal.SIGKILL)
    output = runs.output(tuner)
    rows = {
        line.split(" | ")[1].strip(): line.split(" | ")[2].strip()
        for line in output.splitlines()
        if line.count(" | ") >= 3 and line[:3].strip().isdigit()
    }
    assert rows.pop(crashed) == "error" and list(rows.values()) == ["completed"], "the table shows both trials"

    search = json.loads((out / "search.json").read_text())
    client = MlflowClient(search["tracking_uri"])
    assert client.get_run(search["parent_run_id"]).info.status == "FINISHED"
    children = client.search_runs(
        [client.get_run(search["parent_run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{search['parent_run_id']}'",
    )
    status = {child.data.tags["tune.trial_id"]: child.info.status for child in children}
    assert len(status) == 2 and status.pop(crashed) == "FAILED"
    assert list(status.values()) == ["FINISHED"], "the other trial ran to its end"

    assert f"best config: {out / 'best_config.yaml'}" in output
    best = yaml.safe_load((out / "best_config.yaml").read_text())
    assert best["preset"] == "smoke" and best["train"]["max_steps"] == 40
    assert f"best trial {crashed}" not in output
